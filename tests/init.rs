//! `crew init` end to end: a fresh clone of the emulator's repository gets crew.toml, the
//! `crew:*` labels and (with `--actions`) the workflows, then doctor runs; a second init writes
//! nothing; an edited crew.toml is kept unless `--force`; missing board options are named.

use std::path::Path;
use std::process::Output;

use crew::settings::DEFAULT_CONFIG;
use serde_json::Value;

use crate::support::sandbox::{Sandbox, requests, text};
use crate::support::{BOT, Control, TestResult};

const SCRIPT: &str = "exit 0";

/// `crew -R acme/widgets <args>` in the sandbox's clone, reading settings from the clone (no
/// `--config`, unlike [`Sandbox::command`]).
async fn init(sandbox: &Sandbox, args: &[&str]) -> TestResult<Output> {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_crew"));
    command
        .args(["-R", "acme/widgets"])
        .args(args)
        .current_dir(&sandbox.clone)
        .env_clear()
        .env("CREW_API_URL", &sandbox.base_url)
        .env("HOME", sandbox.dir.path().join("home"))
        .env("CREW_CACHE_DIR", sandbox.dir.path().join("cache"))
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("NO_COLOR", "1")
        .env("CREW_HOST", "laptop")
        .env("GH_TOKEN", BOT)
        .env("GIT_TERMINAL_PROMPT", "0");
    Ok(command.output().await?)
}

async fn crew_labels(sandbox: &Sandbox) -> TestResult<Vec<String>> {
    let mut names: Vec<String> = sandbox
        .github
        .repo_labels(&sandbox.repo)
        .await?
        .into_iter()
        .map(|label| label.name)
        .filter(|name| name.starts_with("crew:"))
        .collect();
    names.sort();
    Ok(names)
}

fn actions<'a>(values: &'a Value, key: &str) -> Vec<&'a str> {
    values[key]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item["action"].as_str())
                .collect()
        })
        .unwrap_or_default()
}

fn read(path: &Path) -> TestResult<String> {
    Ok(std::fs::read_to_string(path)?)
}

#[tokio::test]
async fn init_sets_up_a_fresh_clone_and_a_second_run_writes_nothing() -> TestResult {
    let sandbox = Sandbox::new(SCRIPT).await?;
    let control = Control::new(&sandbox.emulator)?;
    assert!(crew_labels(&sandbox).await?.is_empty());

    let first = init(&sandbox, &["init", "--actions", "--json"]).await?;
    let (stdout, stderr) = text(&first);
    assert!(first.status.success(), "{stdout}\n{stderr}");
    let view: Value = serde_json::from_str(&stdout)?;
    assert_eq!(view["config"]["path"], "crew.toml");
    assert_eq!(view["config"]["action"], "created");
    assert_eq!(read(&sandbox.clone.join("crew.toml"))?, DEFAULT_CONFIG);
    assert_eq!(actions(&view, "files"), ["created", "created"]);
    assert!(
        sandbox
            .clone
            .join(".github/workflows/crew-worker.yml")
            .is_file()
    );
    assert_eq!(view["labels"]["mirrored"], true);
    assert_eq!(actions(&view["labels"], "labels"), ["created"; 4]);
    assert_eq!(
        crew_labels(&sandbox).await?,
        [
            "crew:blocked",
            "crew:needs-human",
            "crew:review",
            "crew:working"
        ]
    );
    assert_eq!(view["board"]["project"], Value::Null);
    assert_eq!(view["changed"], true);
    assert_eq!(view["doctor"]["ok"], true, "{stdout}");
    assert!(
        view["doctor"]["checks"]
            .as_array()
            .is_some_and(|c| !c.is_empty())
    );

    // Again: nothing to write, and it says so; doctor still runs.
    let written = std::fs::metadata(sandbox.clone.join("crew.toml"))?.modified()?;
    control.reset_stats().await?;
    let second = init(&sandbox, &["init", "--actions"]).await?;
    let (stdout, stderr) = text(&second);
    assert!(second.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("unchanged:  crew.toml"), "{stdout}");
    assert_eq!(
        stdout.matches("present:    label crew:").count(),
        4,
        "{stdout}"
    );
    assert_eq!(stdout.matches("unchanged:  .github/workflows/").count(), 2);
    assert!(stderr.contains("nothing changed"), "{stderr}");
    assert!(stdout.contains("lease_refs"), "doctor's report: {stdout}");
    assert_eq!(
        std::fs::metadata(sandbox.clone.join("crew.toml"))?.modified()?,
        written
    );
    // The only writes are doctor's lease probe (commits and a ref it creates, moves and
    // deletes under refs/crew/leases/); init itself wrote nothing.
    let writes: Vec<(String, u64)> = requests(&control)
        .await?
        .into_iter()
        .filter(|(route, _)| !route.starts_with("GET "))
        .collect();
    assert!(!writes.is_empty(), "doctor ran its probe");
    assert!(
        writes
            .iter()
            .all(|(route, _)| route.contains("/git/commits") || route.contains("/git/refs")),
        "{writes:?}"
    );
    Ok(())
}

#[tokio::test]
async fn init_keeps_an_edited_crew_toml_unless_forced_and_dry_run_writes_nothing() -> TestResult {
    let sandbox = Sandbox::new(SCRIPT).await?;
    let config = sandbox.clone.join("crew.toml");

    let dry = init(&sandbox, &["init", "--dry-run", "--json"]).await?;
    let (stdout, stderr) = text(&dry);
    assert!(dry.status.success(), "{stdout}\n{stderr}");
    let view: Value = serde_json::from_str(&stdout)?;
    assert_eq!(view["config"]["action"], "would_create");
    assert_eq!(actions(&view["labels"], "labels"), ["would_create"; 4]);
    assert_eq!(view["doctor"], Value::Null);
    assert!(!config.exists());
    assert!(crew_labels(&sandbox).await?.is_empty());

    let edited = format!("{DEFAULT_CONFIG}\n# tuned for this repository\n");
    std::fs::write(&config, &edited)?;
    let kept = init(&sandbox, &["init"]).await?;
    let (stdout, stderr) = text(&kept);
    assert!(kept.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("kept, differs from the defaults"),
        "{stdout}"
    );
    assert_eq!(read(&config)?, edited);

    let forced = init(&sandbox, &["init", "--force"]).await?;
    let (stdout, stderr) = text(&forced);
    assert!(forced.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("overwritten: crew.toml"), "{stdout}");
    assert_eq!(read(&config)?, DEFAULT_CONFIG);
    Ok(())
}

#[tokio::test]
async fn init_names_the_board_options_it_cannot_add() -> TestResult {
    let sandbox = Sandbox::build(
        |world| {
            if let Some(project) = world.projects.first_mut() {
                project.status_options = ["Todo", "In Progress", "Done"].map(String::from).to_vec();
            }
        },
        SCRIPT,
        "",
    )
    .await?;
    std::fs::write(sandbox.clone.join("crew.toml"), "[project]\nnumber = 1\n")?;

    let output = init(&sandbox, &["init", "--json"]).await?;
    let (stdout, stderr) = text(&output);
    // Doctor fails on the same missing options, so init does too.
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    let view: Value = serde_json::from_str(&stdout)?;
    assert_eq!(view["board"]["project"], 1);
    assert_eq!(
        view["board"]["missing"],
        serde_json::json!(["In Review", "Blocked"])
    );
    assert_eq!(view["labels"]["mirrored"], false);
    assert!(crew_labels(&sandbox).await?.is_empty());
    assert_eq!(view["doctor"]["ok"], false);

    let output = init(&sandbox, &["init"]).await?;
    let (stdout, stderr) = text(&output);
    assert!(
        stdout.contains("missing:    board #1: `Status` lacks In Review, Blocked"),
        "{stdout}"
    );
    assert!(stderr.contains("\"In Review\", \"Blocked\""), "{stderr}");
    assert!(stderr.contains("add each option"), "{stderr}");
    Ok(())
}
