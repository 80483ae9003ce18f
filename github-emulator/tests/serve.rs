//! The `github-emulator` binary: prints its base URL as the first stdout line, loads `--world`,
//! keeps `--state-dir` across restarts, and stops on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::json;

struct Served {
    child: Child,
    base_url: String,
}

impl Served {
    fn start(args: &[&str]) -> Served {
        let mut child = Command::new(env!("CARGO_BIN_EXE_github-emulator"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("github-emulator starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut first = String::new();
        BufReader::new(stdout)
            .read_line(&mut first)
            .expect("first line");
        let base_url = first.trim().to_string();
        assert!(
            base_url.starts_with("http://127.0.0.1:"),
            "first stdout line is the base URL: {base_url:?}"
        );
        Served { child, base_url }
    }

    async fn get(&self, token: &str, path: &str) -> (u16, serde_json::Value) {
        let client = octocrab::Octocrab::builder()
            .base_uri(self.base_url.as_str())
            .unwrap()
            .personal_token(token.to_string())
            .build()
            .unwrap();
        let response = client
            ._get(format!("{}{path}", self.base_url))
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        (
            status,
            serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
        )
    }

    fn stop(mut self) {
        // SIGTERM, as a service manager would; the emulator shuts down gracefully.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let status = self.child.wait().expect("exits");
        assert!(status.success(), "clean exit on SIGTERM: {status:?}");
    }
}

#[tokio::test]
async fn serves_a_world_file_and_keeps_state_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let world_path = dir.path().join("world.json");
    let world = json!({
        "users": [{"login": "alice", "token": "tok-alice"}],
        "repos": [{"owner": "alice", "name": "gadgets", "default_branch": "trunk",
                   "issues": [{"title": "First", "comments": [{"author": "alice", "body": "hello"}]}]}],
    });
    std::fs::write(&world_path, world.to_string()).unwrap();
    let state_dir = dir.path().join("state");
    let args = [
        "--world",
        world_path.to_str().unwrap(),
        "--state-dir",
        state_dir.to_str().unwrap(),
    ];

    let served = Served::start(&args);
    let (status, repo) = served.get("tok-alice", "/repos/alice/gadgets").await;
    assert_eq!(status, 200);
    assert_eq!(repo["default_branch"], "trunk");
    assert_eq!(repo["owner"]["login"], "alice");
    let (status, _) = served.get("emu-bot", "/user").await;
    assert_eq!(
        status, 401,
        "the default world's tokens are not in this world"
    );
    served.stop();

    // Restarted on the same state dir: the world file is not re-applied, state is kept.
    let changed = world.to_string().replace("trunk", "other");
    std::fs::write(&world_path, changed).unwrap();
    let served = Served::start(&args);
    let (status, repo) = served.get("tok-alice", "/repos/alice/gadgets").await;
    assert_eq!(status, 200);
    assert_eq!(repo["default_branch"], "trunk");
    served.stop();
}

#[test]
fn a_broken_world_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let world_path = dir.path().join("world.json");
    std::fs::write(&world_path, r#"{"users": [], "repoz": []}"#).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_github-emulator"))
        .args(["--world", world_path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("invalid world file"), "{stderr}");
    assert!(stderr.contains("repoz"), "names the unknown key: {stderr}");
    assert!(
        output.stdout.is_empty(),
        "no base URL printed for a failed start"
    );
}
