//! `crew emulator serve`: the base URL is the first stdout line, the default world is served, and
//! SIGTERM stops it cleanly.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[tokio::test]
async fn crew_emulator_serve_prints_its_url_first_and_serves_the_default_world() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_crew"))
        .args(["emulator", "serve"])
        .env_remove("GH_TOKEN")
        .env_remove("GITHUB_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("crew starts");
    let mut first = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .expect("first line");
    let base_url = first.trim().to_string();
    assert!(base_url.starts_with("http://127.0.0.1:"), "{base_url:?}");

    let client = octocrab::Octocrab::builder()
        .base_uri(base_url.as_str())
        .expect("base uri")
        .personal_token("emu-bot".to_string())
        .build()
        .expect("client");
    let repo = client
        .repos("acme", "widgets")
        .get()
        .await
        .expect("acme/widgets is served");
    assert_eq!(repo.default_branch.as_deref(), Some("main"));
    let me = client.current().user().await.expect("GET /user");
    assert_eq!(me.login, "crew-bot");

    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let status = child.wait().expect("exits");
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
}
