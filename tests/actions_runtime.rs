//! Runtime `actions` as the real binary against the emulator: `crew dispatch --runtime actions`
//! leases, announces and asks GitHub for one run of crew-worker.yml (and nothing more on a
//! re-run); the emulator's runner then runs that job as `crew run-worker` in a second clone (the
//! runner's checkout), whose agent's work lands on the branch with a salvage handover; a
//! superseded attempt's run-worker exits 4 having written nothing; `crew init --actions` writes
//! the workflows idempotently; and both workflows validate against GitHub's workflow schema.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crew::protocol::lease::LeaseState;
use serde_json::{Value, json};

use crate::support::sandbox::{PREFIX, Sandbox, origin_file, text};
use crate::support::{TestResult, git};

/// The agent: leaves work behind and exits without `done`/`handover`.
const SCRIPT: &str = "echo spun > spin.txt; exit 0";

/// `/_emulator/` calls this file needs beyond `support::Control`'s.
async fn control(
    sandbox: &Sandbox,
    method: http::Method,
    path: &str,
    body: Option<Value>,
) -> TestResult<Value> {
    let octocrab = octocrab::Octocrab::builder()
        .base_uri(sandbox.base_url.as_str())?
        .build()?;
    let mut builder = http::Request::builder().method(method.clone()).uri(path);
    if body.is_some() {
        builder = builder.header(http::header::CONTENT_TYPE, "application/json");
    }
    let request = octocrab.build_request(builder, body.as_ref())?;
    let response = octocrab.execute(request).await?;
    let status = response.status();
    let text = octocrab.body_to_string(response).await?;
    if !status.is_success() {
        return Err(format!("{method} {path}: {status}: {text}").into());
    }
    Ok(if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text)?
    })
}

async fn dispatches(sandbox: &Sandbox) -> TestResult<Vec<Value>> {
    let list = control(sandbox, http::Method::GET, "/_emulator/dispatches", None).await?;
    Ok(list.as_array().cloned().unwrap_or_default())
}

/// The lease of `issue`: (attempt, worker, runtime, state).
async fn lease(
    sandbox: &Sandbox,
    issue: u64,
) -> TestResult<Option<(u32, String, String, LeaseState)>> {
    Ok(sandbox
        .github
        .leases(&sandbox.repo, PREFIX)
        .await?
        .into_iter()
        .find(|observed| observed.issue == issue)
        .and_then(|observed| observed.lease.ok())
        .map(|lease| (lease.attempt, lease.worker, lease.runtime, lease.state)))
}

/// A second clone, standing for the runner's checkout of the repository.
fn runner_checkout(sandbox: &Sandbox) -> TestResult<PathBuf> {
    let root = sandbox.dir.path().join("runner");
    std::fs::create_dir_all(root.join("cache"))?;
    let url = format!("file://{}", sandbox.bare.display());
    git(&root, &["clone", "--quiet", &url, "widgets"])?;
    Ok(root.join("widgets").canonicalize()?)
}

/// The sandbox's `crew ARGS` command line and environment, run in `checkout` as host `runner`
/// with its own cache: the job a runner would run.
fn runner_job(sandbox: &Sandbox, checkout: &Path, args: &[&str]) -> Value {
    let command = sandbox.command(args);
    let argv: Vec<String> = std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|arg| arg.to_string_lossy().into_owned())
        .collect();
    let mut env: serde_json::Map<String, Value> = command
        .get_envs()
        .filter_map(|(key, value)| {
            Some((
                key.to_string_lossy().into_owned(),
                json!(value?.to_string_lossy()),
            ))
        })
        .collect();
    env.insert("CREW_HOST".into(), json!("runner"));
    env.insert(
        "CREW_CACHE_DIR".into(),
        json!(sandbox.dir.path().join("runner").join("cache")),
    );
    json!({
        "command": argv,
        "cwd": checkout,
        "env": env,
        "clear_env": true,
        "workflow": "crew-worker.yml",
        "log": sandbox.dir.path().join("runner").join("job.log"),
    })
}

/// The runner's runs once `count` have ended.
async fn ended_runs(sandbox: &Sandbox, count: usize) -> TestResult<Vec<Value>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = control(
            sandbox,
            http::Method::GET,
            "/_emulator/actions/runner",
            None,
        )
        .await?;
        let runs = answer["runs"].as_array().cloned().unwrap_or_default();
        if runs.iter().filter(|run| run["status"] == "exited").count() >= count {
            return Ok(runs);
        }
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(sandbox.dir.path().join("runner/job.log"))
                .unwrap_or_default();
            return Err(format!("the jobs did not end: {runs:?}\n{log}").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn dispatch_actions_leases_announces_and_dispatches_the_worker_workflow_once() -> TestResult {
    let sandbox = Sandbox::new(SCRIPT).await?;
    let output = sandbox
        .crew(&["dispatch", "1", "--runtime", "actions", "--json"])
        .await?;
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let views: Value = serde_json::from_str(&stdout)?;
    assert_eq!(views[0]["attempt"], 1);
    let worker = views[0]["worker"].as_str().ok_or("no worker")?.to_owned();

    let recorded = dispatches(&sandbox).await?;
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(recorded[0]["workflow_id"], "crew-worker.yml");
    assert_eq!(recorded[0]["ref"], "main");
    assert_eq!(
        recorded[0]["inputs"],
        json!({"issue": "1", "attempt": "1", "profile": "code", "agent": "script"})
    );
    assert_eq!(
        lease(&sandbox, 1).await?,
        Some((1, worker.clone(), "actions".to_owned(), LeaseState::Held))
    );
    let comments = sandbox.comments(1).await?;
    assert_eq!(comments.len(), 1, "{comments:?}");
    assert!(comments[0].1.contains("\"kind\":\"assigned\""));
    assert!(
        comments[0].1.contains("\"host\":\"laptop\""),
        "{}",
        comments[0].1
    );
    assert!(
        comments[0].1.contains("GitHub Actions"),
        "{}",
        comments[0].1
    );
    // Nothing local: no worktree, no process.
    assert!(!sandbox.dir.path().join("widgets-worker-1").exists());

    // A re-run: the worker is placed; exit 4 and nothing more is sent or posted.
    let again = sandbox
        .crew(&["dispatch", "1", "--runtime", "actions"])
        .await?;
    let (stdout, stderr) = text(&again);
    assert_eq!(again.status.code(), Some(4), "{stdout}\n{stderr}");
    assert_eq!(dispatches(&sandbox).await?.len(), 1);
    assert_eq!(sandbox.comments(1).await?.len(), 1);
    // A closed issue is refused with nothing sent.
    let closed = sandbox
        .crew(&["dispatch", "2", "--runtime", "actions"])
        .await?;
    assert_eq!(closed.status.code(), Some(1));
    assert_eq!(dispatches(&sandbox).await?.len(), 1);
    Ok(())
}

/// The worker of an actions dispatch runs on a runner: a local dispatch of the same issue on the
/// dispatching host must not take the live lease for an interrupted local dispatch of its own.
#[tokio::test]
async fn a_local_dispatch_leaves_an_actions_worker_alone() -> TestResult {
    let sandbox = Sandbox::new(SCRIPT).await?;
    let output = sandbox
        .crew(&["dispatch", "1", "--runtime", "actions"])
        .await?;
    assert!(output.status.success(), "{:?}", text(&output));
    let local = sandbox.crew(&["dispatch", "1"]).await?;
    let (stdout, stderr) = text(&local);
    assert_eq!(local.status.code(), Some(4), "{stdout}\n{stderr}");
    assert!(!sandbox.dir.path().join("widgets-worker-1").exists());
    assert_eq!(sandbox.comments(1).await?.len(), 1);
    Ok(())
}

#[tokio::test]
async fn an_interrupted_actions_dispatch_is_finished_by_the_next_one_and_only_once() -> TestResult {
    let sandbox = Sandbox::new(SCRIPT).await?;
    // A dispatch of this host ("laptop") that died right after taking the lease.
    sandbox
        .github
        .acquire_lease(
            &sandbox.repo,
            PREFIX,
            5,
            crew::github::LeaseRequest {
                base: "main".to_owned(),
                worker: "worker-1-dead-5".to_owned(),
                host: "laptop".to_owned(),
                runtime: "actions".to_owned(),
                ttl: chrono::TimeDelta::minutes(30),
                now: chrono::Utc::now(),
            },
        )
        .await?;
    let output = sandbox
        .crew(&["dispatch", "5", "--runtime", "actions", "--json"])
        .await?;
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let views: Value = serde_json::from_str(&stdout)?;
    assert_eq!(views[0]["worker"], "worker-1-dead-5");
    assert_eq!(views[0]["resumed"], true);
    let recorded = dispatches(&sandbox).await?;
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0]["inputs"]["attempt"], "1");
    assert_eq!(sandbox.assigned(5).await?.len(), 1);
    // Once finished, a re-run is a placed worker: exit 4, nothing sent.
    let again = sandbox
        .crew(&["dispatch", "5", "--runtime", "actions"])
        .await?;
    assert_eq!(again.status.code(), Some(4), "{:?}", text(&again));
    assert_eq!(dispatches(&sandbox).await?.len(), 1);
    assert_eq!(sandbox.assigned(5).await?.len(), 1);
    Ok(())
}

#[tokio::test]
async fn the_dispatched_job_runs_the_agent_and_its_work_lands_on_the_branch() -> TestResult {
    let sandbox = Sandbox::new(SCRIPT).await?;
    let checkout = runner_checkout(&sandbox)?;
    let job = runner_job(
        &sandbox,
        &checkout,
        &[
            "run-worker",
            "--issue",
            "{issue}",
            "--attempt",
            "{attempt}",
            "--profile",
            "{profile}",
            "--agent",
            "{agent}",
        ],
    );
    control(
        &sandbox,
        http::Method::POST,
        "/_emulator/actions/runner",
        Some(job),
    )
    .await?;

    let output = sandbox
        .crew(&["dispatch", "4", "--runtime", "actions", "--json"])
        .await?;
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let views: Value = serde_json::from_str(&stdout)?;
    let branch = views[0]["branch"].as_str().ok_or("no branch")?.to_owned();

    let runs = ended_runs(&sandbox, 1).await?;
    let log = std::fs::read_to_string(sandbox.dir.path().join("runner/job.log"))?;
    // The agent exited without finishing: salvaged and handed over, and the job says so (1).
    assert_eq!(runs[0]["exit_code"], 1, "{log}");
    assert!(log.contains("handed over"), "{log}");
    assert_eq!(
        origin_file(&sandbox.bare, &branch, "spin.txt").as_deref(),
        Some("spun\n"),
        "{log}"
    );
    let comments = sandbox.comments(4).await?;
    let kinds: Vec<&str> = comments
        .iter()
        .filter_map(|(_, body)| {
            ["assigned", "started", "handover"]
                .into_iter()
                .find(|kind| body.contains(&format!("\"kind\":\"{kind}\"")))
        })
        .collect();
    assert_eq!(kinds.first(), Some(&"assigned"), "{comments:?}");
    assert_eq!(kinds.last(), Some(&"handover"), "{comments:?}");
    // The worktree was made beside the runner's checkout, not the laptop's clone.
    assert!(
        sandbox
            .dir
            .path()
            .join("runner/widgets-worker-4/.crew/context.json")
            .is_file()
    );
    assert!(!sandbox.dir.path().join("widgets-worker-4").exists());
    // The handover released the lease.
    let (attempt, _, runtime, state) = lease(&sandbox, 4).await?.ok_or("no lease")?;
    assert_eq!(
        (attempt, runtime.as_str(), state),
        (1, "actions", LeaseState::Released)
    );
    Ok(())
}

#[tokio::test]
async fn a_superseded_attempts_job_exits_4_and_writes_nothing() -> TestResult {
    let sandbox = Sandbox::new(SCRIPT).await?;
    let checkout = runner_checkout(&sandbox)?;
    // Attempt 1 is dispatched (its job never runs), then released and attempt 2 dispatched.
    let first = sandbox
        .crew(&["dispatch", "3", "--runtime", "actions"])
        .await?;
    assert!(first.status.success(), "{:?}", text(&first));
    let (_, worker, _, _) = lease(&sandbox, 3).await?.ok_or("no lease")?;
    let held = sandbox
        .github
        .reclaim_lease(&sandbox.repo, PREFIX, 3, &worker, 1)
        .await?;
    sandbox
        .github
        .release_lease(&sandbox.repo, &held, chrono::Utc::now())
        .await?;
    let second = sandbox
        .crew(&["dispatch", "3", "--runtime", "actions"])
        .await?;
    assert!(second.status.success(), "{:?}", text(&second));
    assert_eq!(lease(&sandbox, 3).await?.map(|lease| lease.0), Some(2));
    let comments = sandbox.comments(3).await?.len();

    // Attempt 1's job starts late: it finds the lease at attempt 2.
    let mut command = sandbox.command(&["run-worker", "--issue", "3", "--attempt", "1"]);
    command.current_dir(&checkout).env("CREW_HOST", "runner");
    let output = tokio::process::Command::from(command).output().await?;
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(4), "{stdout}\n{stderr}");
    assert!(stderr.contains("superseded"), "{stderr}");
    assert_eq!(sandbox.comments(3).await?.len(), comments);
    assert_eq!(lease(&sandbox, 3).await?.map(|lease| lease.0), Some(2));
    assert!(!sandbox.dir.path().join("runner/widgets-worker-3").exists());
    assert_eq!(git(&checkout, &["status", "--porcelain"])?, "");
    Ok(())
}

#[tokio::test]
async fn init_actions_writes_the_workflows_once_and_never_clobbers() -> TestResult {
    let sandbox = Sandbox::new(SCRIPT).await?;
    let workflows = sandbox.clone.join(".github/workflows");
    let first = sandbox.crew(&["init", "--actions", "--json"]).await?;
    let (stdout, stderr) = text(&first);
    assert!(first.status.success(), "{stdout}\n{stderr}");
    let view: Value = serde_json::from_str(&stdout)?;
    let actions: Vec<&str> = view["files"]
        .as_array()
        .ok_or("no files")?
        .iter()
        .filter_map(|file| file["action"].as_str())
        .collect();
    assert_eq!(actions, ["created", "created"]);
    let worker = std::fs::read_to_string(workflows.join("crew-worker.yml"))?;
    assert_eq!(worker, crew::runtime_actions::WORKER_WORKFLOW_TEXT);
    let fill = std::fs::read_to_string(workflows.join("crew-fill.yml"))?;
    assert_eq!(fill, crew::runtime_actions::FILL_WORKFLOW_TEXT);

    let second = sandbox.crew(&["init", "--actions"]).await?;
    let (stdout, stderr) = text(&second);
    assert!(second.status.success(), "{stdout}\n{stderr}");
    assert_eq!(stdout.matches("unchanged").count(), 2, "{stdout}");

    // An edited workflow is kept (exit 1, saying so) unless --force.
    std::fs::write(workflows.join("crew-fill.yml"), "# mine\n")?;
    let kept = sandbox.crew(&["init", "--actions"]).await?;
    let (stdout, stderr) = text(&kept);
    assert_eq!(kept.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("--force"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(workflows.join("crew-fill.yml"))?,
        "# mine\n"
    );
    let forced = sandbox.crew(&["init", "--actions", "--force"]).await?;
    let (stdout, _) = text(&forced);
    assert!(forced.status.success());
    assert!(stdout.contains("overwritten"), "{stdout}");
    assert_eq!(
        std::fs::read_to_string(workflows.join("crew-fill.yml"))?,
        fill
    );
    Ok(())
}

/// Both workflow templates validate against GitHub's workflow schema, with
/// `@actions/workflow-parser` (tests/workflows/). Fails, never skips, without node and npm.
#[test]
fn the_workflow_templates_validate_against_githubs_schema() -> TestResult {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/workflows");
    let missing = |tool: &str| {
        format!(
            "`{tool}` is needed to validate the workflow templates (@actions/workflow-parser); \
             install Node.js 20+ and npm"
        )
    };
    if !dir.join("node_modules/@actions/workflow-parser").is_dir() {
        let npm = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .output()
            .map_err(|_| missing("npm"))?;
        assert!(
            npm.status.success(),
            "npm ci in tests/workflows failed:\n{}",
            String::from_utf8_lossy(&npm.stderr)
        );
    }
    let templates = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates/workflows");
    let validate = |files: &[PathBuf]| -> TestResult<std::process::Output> {
        Ok(std::process::Command::new("node")
            .arg("validate.mjs")
            .args(files)
            .current_dir(&dir)
            .output()
            .map_err(|_| missing("node"))?)
    };
    let output = validate(&[
        templates.join("crew-fill.yml"),
        templates.join("crew-worker.yml"),
    ])?;
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert_eq!(stdout.matches("ok ").count(), 2, "{stdout}");

    // The validator does reject a broken workflow (an unknown key; and, once the schema is met,
    // a bad cron expression).
    let scratch = tempfile::tempdir()?;
    let broken = scratch.path().join("broken.yml");
    std::fs::write(
        &broken,
        "on:\n  schedule:\n    - cron: \"99 * * * *\"\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo\n        bogus: 1\n",
    )?;
    let bad_cron = scratch.path().join("bad-cron.yml");
    std::fs::write(
        &bad_cron,
        "on:\n  schedule:\n    - cron: \"99 * * * *\"\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo\n",
    )?;
    let output = validate(&[broken, bad_cron])?;
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(!stdout.contains("ok "), "{stdout}");
    assert!(
        stderr.contains("bogus") && stderr.contains("cron"),
        "{stderr}"
    );
    Ok(())
}
