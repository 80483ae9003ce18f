//! Agent-side commands (`start`, `heartbeat`, `progress`, `blocked`, `handover`, `done`,
//! `fail`) as the real binary, inside a worktree prepared by a real `crew dispatch`, against the
//! emulator and a real clone: straight through to an open pull request; a handover that pushes
//! its WIP; the fence (a superseded attempt writes nothing, exit 4); outside a worktree; a
//! heartbeat that renews at most once per interval; a re-run of `done` that reuses its PR; a
//! rebase conflict that posts nothing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use crew::github::LeaseRequest;
use crew::protocol::lease::LeaseState;
use crew::protocol::{Event, EventBody, Marker};
use serde_json::{Value, json};

use crate::support::sandbox::{PREFIX, Sandbox, origin_file, requests, text};
use crate::support::{BOT, Control, TestResult, git};

/// An agent the test drives: it says it runs, then waits (at most 20 s) for an agent-side
/// command to finish the attempt.
const WAITING_AGENT: &str = "touch .crew/agent-started; i=0; \
    while [ ! -f .crew/finished ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i+1)); done";

/// One dispatched worker.
struct Dispatched {
    worktree: PathBuf,
    worker: String,
    branch: String,
}

async fn dispatch(sandbox: &Sandbox, issue: u64) -> TestResult<Dispatched> {
    dispatch_with(sandbox, issue, &[]).await
}

async fn dispatch_with(sandbox: &Sandbox, issue: u64, extra: &[&str]) -> TestResult<Dispatched> {
    let number = issue.to_string();
    let mut args = vec!["dispatch", number.as_str(), "--json"];
    args.extend_from_slice(extra);
    let output = sandbox.crew(&args).await?;
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let views: Value = serde_json::from_str(&stdout)?;
    let view = &views[0];
    let dispatched = Dispatched {
        worktree: PathBuf::from(view["worktree"].as_str().ok_or("no worktree")?),
        worker: view["worker"].as_str().ok_or("no worker")?.to_owned(),
        // Empty for a detached worktree.
        branch: view["branch"].as_str().unwrap_or_default().to_owned(),
    };
    Ok(dispatched)
}

/// Waits until the waiting agent runs (so the supervisor has cleared any stale marker).
async fn agent_started(worktree: &Path) -> TestResult {
    wait_for(
        || worktree.join(".crew/agent-started").is_file(),
        "the agent to start",
    )
    .await
}

async fn wait_for(mut done: impl FnMut() -> bool, what: &str) -> TestResult {
    // Generous for a loaded machine; the usual wait is well under a second.
    for _ in 0..200 {
        if done() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!("timed out waiting for {what}").into())
}

/// Lets the waiting agent exit (as if an agent-side command had finished the attempt) and waits
/// for its supervisor to record the exit, so nothing outlives the test.
async fn let_agent_exit(worktree: &Path) -> TestResult {
    let finished = worktree.join(".crew/finished");
    if !finished.exists() {
        std::fs::write(&finished, "test\n")?;
    }
    supervisor_recorded_exit(worktree).await.map(drop)
}

/// `.crew/worker.json`'s exit record, once the supervisor wrote it.
async fn supervisor_recorded_exit(worktree: &Path) -> TestResult<Value> {
    let path = worktree.join(".crew/worker.json");
    let mut record = Value::Null;
    wait_for(
        || {
            record = std::fs::read_to_string(&path)
                .ok()
                .and_then(|text| serde_json::from_str::<Value>(&text).ok())
                .unwrap_or(Value::Null);
            !record["exit"].is_null()
        },
        "the supervisor to record the agent's exit",
    )
    .await?;
    Ok(record["exit"].clone())
}

/// Runs `crew ARGS` inside `dir`.
async fn crew_in(sandbox: &Sandbox, dir: &Path, args: &[&str]) -> TestResult<std::process::Output> {
    let mut command = sandbox.command(args);
    command.current_dir(dir);
    Ok(tokio::process::Command::from(command).output().await?)
}

/// The events on `issue`, in comment order.
async fn posted_events(sandbox: &Sandbox, issue: u64) -> TestResult<Vec<Event>> {
    Ok(sandbox
        .comments(issue)
        .await?
        .into_iter()
        .filter_map(|(_, body)| match crew::protocol::parse(&body) {
            Ok(Some(Marker::Event(event))) => Some(event),
            _ => None,
        })
        .collect())
}

fn kinds(events: &[Event]) -> Vec<&'static str> {
    events.iter().map(|event| event.kind().as_str()).collect()
}

async fn lease_state(sandbox: &Sandbox, issue: u64) -> TestResult<(u32, String, LeaseState)> {
    let leases = sandbox.github.leases(&sandbox.repo, PREFIX).await?;
    let lease = leases
        .into_iter()
        .find(|lease| lease.issue == issue)
        .ok_or("no lease")?
        .lease?;
    Ok((lease.attempt, lease.worker, lease.state))
}

#[tokio::test]
async fn an_agent_starts_reports_and_finishes_with_a_pull_request() -> TestResult {
    let crew = env!("CARGO_BIN_EXE_crew");
    let script = format!(
        "CREW='{crew}'; \"$CREW\" start && \"$CREW\" progress halfway there && \
         echo spun > spin.txt && git add spin.txt && git commit -qm 'Spin the widgets' && \
         \"$CREW\" done; echo \"exit $?\" > .crew/agent-done"
    );
    let sandbox = Sandbox::new(&script).await?;
    let dispatched = dispatch(&sandbox, 1).await?;
    let worktree = &dispatched.worktree;
    let exit = supervisor_recorded_exit(worktree).await?;
    let log =
        std::fs::read_to_string(worktree.join(format!(".crew/logs/{}.log", dispatched.worker)))
            .unwrap_or_default();
    assert_eq!(
        std::fs::read_to_string(worktree.join(".crew/agent-done"))?.trim(),
        "exit 0",
        "{log}"
    );
    assert_eq!(exit["finished"], "in_review", "{exit}");

    // The pull request: the branch into main, titled after the issue, closing it.
    let pull = sandbox
        .github
        .open_pull_for_head(&sandbox.repo, &dispatched.branch)
        .await?
        .ok_or("no open pull request")?;
    assert_eq!(pull.base.branch, "main");
    assert_eq!(pull.title, "Make widgets spin 1");
    let body = pull.body.clone().unwrap_or_default();
    assert!(body.contains("Closes #1"), "{body}");
    assert!(body.contains("Spin the widgets"), "{body}");
    assert_eq!(
        origin_file(&sandbox.bare, &dispatched.branch, "spin.txt").as_deref(),
        Some("spun\n")
    );

    // The events, each once, by the worker's attempt; no salvage handover.
    let events = posted_events(&sandbox, 1).await?;
    assert_eq!(
        kinds(&events),
        ["assigned", "started", "progress", "in_review"],
        "{log}"
    );
    for event in &events {
        assert_eq!(event.worker, dispatched.worker);
        assert_eq!(event.attempt, 1);
    }
    assert_eq!(
        events[2].body,
        EventBody::Progress {
            message: "halfway there".to_owned()
        }
    );
    assert_eq!(events[3].body, EventBody::InReview { pr: pull.number });

    // The lease is released; the token is in no log.
    assert_eq!(
        lease_state(&sandbox, 1).await?,
        (1, dispatched.worker.clone(), LeaseState::Released)
    );
    assert!(!log.contains(BOT), "the token is in the agent's log");
    Ok(())
}

#[tokio::test]
async fn a_handover_pushes_the_wip_and_posts_summary_files_and_shas() -> TestResult {
    let sandbox = Sandbox::new(WAITING_AGENT).await?;
    let dispatched = dispatch(&sandbox, 3).await?;
    let worktree = &dispatched.worktree;
    agent_started(worktree).await?;
    // One committed file and one left uncommitted.
    std::fs::write(worktree.join("parser.txt"), "parsed\n")?;
    git(worktree, &["add", "parser.txt"])?;
    git(worktree, &["commit", "-qm", "Parse widgets"])?;
    std::fs::write(worktree.join("lexer.txt"), "half a lexer\n")?;
    let notes = worktree.join("notes.md");
    std::fs::write(
        &notes,
        "The parser works; the lexer is half done.\n\n## Next steps\n- finish the lexer\n- add tests\n",
    )?;

    let output = crew_in(
        &sandbox,
        worktree,
        &[
            "handover",
            "--summary-file",
            notes.to_str().ok_or("path")?,
            "--next",
            "read notes first",
            "--json",
        ],
    )
    .await?;
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let view: Value = serde_json::from_str(&stdout)?;
    assert_eq!(view["kind"], "handover");
    assert_eq!(view["pushed"], true);
    assert_eq!(view["lease_released"], true);

    // The WIP (the uncommitted file and the notes) is on the branch in origin.
    let head = git(worktree, &["rev-parse", "HEAD"])?;
    assert_eq!(view["head_sha"], head.as_str());
    assert_eq!(
        origin_file(&sandbox.bare, &dispatched.branch, "lexer.txt").as_deref(),
        Some("half a lexer\n")
    );
    assert_eq!(git(worktree, &["status", "--porcelain"])?, "");

    let events = posted_events(&sandbox, 3).await?;
    assert_eq!(kinds(&events), ["assigned", "handover"]);
    let EventBody::Handover(handover) = &events[1].body else {
        return Err("not a handover".into());
    };
    assert_eq!(
        handover.summary,
        "The parser works; the lexer is half done."
    );
    assert_eq!(
        handover.next_steps,
        ["read notes first", "finish the lexer", "add tests"]
    );
    let mut files = handover.files.clone();
    files.sort();
    assert_eq!(files, ["lexer.txt", "notes.md", "parser.txt"]);
    assert_eq!(handover.head_sha.as_deref(), Some(head.as_str()));
    let main = git(&sandbox.clone, &["rev-parse", "origin/main"])?;
    assert_eq!(handover.base_sha.as_deref(), Some(main.as_str()));

    assert_eq!(
        std::fs::read_to_string(worktree.join(".crew/finished"))?.trim(),
        "handover"
    );
    assert_eq!(lease_state(&sandbox, 3).await?.2, LeaseState::Released);
    // The supervisor sees a finished attempt: no salvage handover after ours.
    let exit = supervisor_recorded_exit(worktree).await?;
    assert_eq!(exit["finished"], "handover");
    assert_eq!(
        kinds(&posted_events(&sandbox, 3).await?),
        ["assigned", "handover"]
    );

    // Without a summary it is a usage error.
    let output = crew_in(&sandbox, worktree, &["handover"]).await?;
    assert_eq!(output.status.code(), Some(2));
    Ok(())
}

#[tokio::test]
async fn a_superseded_attempt_is_refused_with_exit_4_and_writes_nothing() -> TestResult {
    let sandbox = Sandbox::new(WAITING_AGENT).await?;
    let dispatched = dispatch(&sandbox, 4).await?;
    let worktree = &dispatched.worktree;
    agent_started(worktree).await?;
    std::fs::write(worktree.join("late.txt"), "too late\n")?;
    git(worktree, &["add", "late.txt"])?;
    git(worktree, &["commit", "-qm", "Late work"])?;

    // Another orchestrator takes the lease over once it has expired (judged an hour from now).
    sandbox
        .github
        .acquire_lease(
            &sandbox.repo,
            PREFIX,
            4,
            LeaseRequest {
                base: "main".to_owned(),
                worker: "worker-elsewhere-4".to_owned(),
                host: "ci".to_owned(),
                runtime: "actions".to_owned(),
                ttl: TimeDelta::minutes(30),
                now: Utc::now() + TimeDelta::hours(1),
            },
        )
        .await?;
    let comments = sandbox.comments(4).await?.len();
    let control = Control::new(&sandbox.emulator)?;
    control.reset_stats().await?;

    for args in [
        &["progress", "still", "here"][..],
        &["start"],
        &["blocked", "what now?"],
        &["heartbeat"],
        &["handover", "--summary", "mine"],
        &["fail", "cannot"],
        &["done"],
    ] {
        let output = crew_in(&sandbox, worktree, args).await?;
        let (stdout, stderr) = text(&output);
        assert_eq!(
            output.status.code(),
            Some(4),
            "{args:?}: {stdout}\n{stderr}"
        );
        assert!(stderr.contains("superseded"), "{args:?}: {stderr}");
    }
    // Nothing written: no comment, no lease write, no push, no marker.
    assert_eq!(sandbox.comments(4).await?.len(), comments);
    let writes: Vec<(String, u64)> = requests(&control)
        .await?
        .into_iter()
        .filter(|(route, _)| !route.starts_with("GET "))
        .collect();
    assert!(writes.is_empty(), "{writes:?}");
    assert_eq!(
        lease_state(&sandbox, 4).await?,
        (2, "worker-elsewhere-4".to_owned(), LeaseState::Held)
    );
    assert_eq!(
        origin_file(&sandbox.bare, &dispatched.branch, "late.txt"),
        None
    );
    assert!(!worktree.join(".crew/finished").exists());
    let_agent_exit(worktree).await
}

#[tokio::test]
async fn outside_a_worktree_agent_commands_exit_1() -> TestResult {
    let sandbox = Sandbox::new("true").await?;
    for args in [&["progress", "hi"][..], &["heartbeat"], &["done"]] {
        let output = sandbox.crew(args).await?;
        let (stdout, stderr) = text(&output);
        assert_eq!(
            output.status.code(),
            Some(1),
            "{args:?}: {stdout}\n{stderr}"
        );
        assert!(
            stderr
                .contains("not inside a crew worker's worktree (no .crew/context.json found above"),
            "{stderr}"
        );
    }
    assert!(sandbox.comments(1).await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn two_quick_heartbeats_renew_the_lease_once_and_post_nothing() -> TestResult {
    let sandbox = Sandbox::new(WAITING_AGENT).await?;
    let dispatched = dispatch(&sandbox, 5).await?;
    let worktree = &dispatched.worktree;
    agent_started(worktree).await?;
    let before = sandbox.github.leases(&sandbox.repo, PREFIX).await?;
    let expires_before = before
        .into_iter()
        .find(|lease| lease.issue == 5)
        .ok_or("no lease")?
        .lease?
        .expires_at;
    let comments = sandbox.comments(5).await?.len();
    let control = Control::new(&sandbox.emulator)?;

    control.reset_stats().await?;
    let output = crew_in(&sandbox, worktree, &["heartbeat", "--json"]).await?;
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let renewals = control
        .requests("PATCH /repos/{owner}/{repo}/git/refs/{ref}")
        .await?;
    assert_eq!(renewals, 1);
    let view: Value = serde_json::from_str(&stdout)?;
    assert!(view["lease_expires_at"].is_string(), "{view}");

    control.reset_stats().await?;
    let output = crew_in(&sandbox, worktree, &["heartbeat"]).await?;
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("next renewal after"), "{stdout}");
    let total: u64 = requests(&control).await?.iter().map(|(_, n)| n).sum();
    assert_eq!(total, 0, "a too-early heartbeat sent requests");

    let after = sandbox.github.leases(&sandbox.repo, PREFIX).await?;
    let lease = after
        .into_iter()
        .find(|lease| lease.issue == 5)
        .ok_or("no lease")?
        .lease?;
    assert!(lease.expires_at >= expires_before);
    assert_eq!(lease.state, LeaseState::Held);
    assert_eq!(lease.worker, dispatched.worker);
    assert_eq!(sandbox.comments(5).await?.len(), comments);
    let_agent_exit(worktree).await
}

#[tokio::test]
async fn done_run_again_after_a_failure_reuses_its_pull_request() -> TestResult {
    let sandbox = Sandbox::new(WAITING_AGENT).await?;
    let dispatched = dispatch(&sandbox, 6).await?;
    let worktree = &dispatched.worktree;
    agent_started(worktree).await?;
    std::fs::write(worktree.join("spin.txt"), "spun\n")?;
    git(worktree, &["add", "spin.txt"])?;
    git(worktree, &["commit", "-qm", "Spin"])?;
    let output = crew_in(&sandbox, worktree, &["start"]).await?;
    assert!(output.status.success(), "{:?}", text(&output));

    // A dirty worktree is refused before anything is pushed or posted.
    std::fs::write(worktree.join("scratch.txt"), "scratch\n")?;
    let output = crew_in(&sandbox, worktree, &["done"]).await?;
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("scratch.txt"), "{stderr}");
    assert_eq!(
        origin_file(&sandbox.bare, &dispatched.branch, "spin.txt"),
        None
    );
    std::fs::remove_file(worktree.join("scratch.txt"))?;

    // The first `done` opens the PR, then fails to post its comment.
    let control = Control::new(&sandbox.emulator)?;
    control.reset_stats().await?;
    control
        .faults(json!([{
            "route": "POST /repos/{owner}/{repo}/issues/{issue_number}/comments",
            "fault": "error", "status": 422, "times": 1,
        }]))
        .await?;
    let output = crew_in(&sandbox, worktree, &["done"]).await?;
    assert!(!output.status.success(), "{:?}", text(&output));
    control.clear_faults().await?;
    let first = sandbox
        .github
        .open_pull_for_head(&sandbox.repo, &dispatched.branch)
        .await?
        .ok_or("the first run opened no PR")?;
    assert!(!worktree.join(".crew/finished").exists());

    // Run again: the same PR, one `in_review`, the lease released.
    let output = crew_in(&sandbox, worktree, &["done", "--json"]).await?;
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let view: Value = serde_json::from_str(&stdout)?;
    assert_eq!(view["pr"], first.number);
    assert_eq!(
        control.requests("POST /repos/{owner}/{repo}/pulls").await?,
        1
    );
    let events = posted_events(&sandbox, 6).await?;
    assert_eq!(kinds(&events), ["assigned", "started", "in_review"]);
    assert_eq!(lease_state(&sandbox, 6).await?.2, LeaseState::Released);

    // Once released, the attempt is over.
    let output = crew_in(&sandbox, worktree, &["done"]).await?;
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("released"), "{stderr}");
    assert_eq!(
        control.requests("POST /repos/{owner}/{repo}/pulls").await?,
        1
    );
    let exit = supervisor_recorded_exit(worktree).await?;
    assert_eq!(exit["finished"], "in_review");
    Ok(())
}

#[tokio::test]
async fn a_rebase_conflict_exits_1_naming_the_file_and_posts_nothing() -> TestResult {
    let sandbox = Sandbox::new(WAITING_AGENT).await?;
    let dispatched = dispatch(&sandbox, 7).await?;
    let worktree = &dispatched.worktree;
    agent_started(worktree).await?;
    std::fs::write(worktree.join("README.md"), "the worker's README\n")?;
    git(worktree, &["commit", "-qam", "Worker edits the README"])?;
    let before = git(worktree, &["rev-parse", "HEAD"])?;
    // Meanwhile main changes the same lines.
    std::fs::write(sandbox.clone.join("README.md"), "main's README\n")?;
    git(&sandbox.clone, &["commit", "-qam", "Main edits the README"])?;
    git(&sandbox.clone, &["push", "-q", "origin", "HEAD:main"])?;
    let comments = sandbox.comments(7).await?.len();

    let output = crew_in(&sandbox, worktree, &["done"]).await?;
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("conflicts in `README.md`"), "{stderr}");

    // The rebase is aborted, the branch as it was, nothing pushed, posted or released.
    assert_eq!(git(worktree, &["rev-parse", "HEAD"])?, before);
    assert_eq!(git(worktree, &["status", "--porcelain"])?, "");
    assert_eq!(
        std::fs::read_to_string(worktree.join("README.md"))?,
        "the worker's README\n"
    );
    assert_eq!(sandbox.comments(7).await?.len(), comments);
    assert_eq!(
        origin_file(&sandbox.bare, &dispatched.branch, "README.md"),
        None
    );
    assert_eq!(lease_state(&sandbox, 7).await?.2, LeaseState::Held);
    assert!(!worktree.join(".crew/finished").exists());
    let_agent_exit(worktree).await
}

#[tokio::test]
async fn fail_saves_the_work_posts_the_reason_and_releases_the_lease() -> TestResult {
    let sandbox = Sandbox::new(WAITING_AGENT).await?;
    let dispatched = dispatch(&sandbox, 8).await?;
    let worktree = &dispatched.worktree;
    agent_started(worktree).await?;
    std::fs::write(worktree.join("attempt.txt"), "what was tried\n")?;

    let output = crew_in(
        &sandbox,
        worktree,
        &["fail", "The issue asks for a square circle."],
    )
    .await?;
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let events = posted_events(&sandbox, 8).await?;
    assert_eq!(kinds(&events), ["assigned", "failed"]);
    assert_eq!(
        events[1].body,
        EventBody::Failed {
            reason: "The issue asks for a square circle.".to_owned()
        }
    );
    assert_eq!(
        origin_file(&sandbox.bare, &dispatched.branch, "attempt.txt").as_deref(),
        Some("what was tried\n")
    );
    assert_eq!(lease_state(&sandbox, 8).await?.2, LeaseState::Released);
    let exit = supervisor_recorded_exit(worktree).await?;
    assert_eq!(exit["finished"], "failed");
    assert_eq!(
        kinds(&posted_events(&sandbox, 8).await?),
        ["assigned", "failed"]
    );
    Ok(())
}

#[tokio::test]
async fn a_detached_worker_finishes_without_a_pr_and_a_tokenless_profile_is_refused() -> TestResult
{
    let sandbox = Sandbox::with_config(
        WAITING_AGENT,
        "\n[profiles.scout]\ntools = [\"Read\", \"Grep\"]\npush = false\ntoken = true\n",
    )
    .await?;

    // `research` withholds the token: the agent's environment has none, and crew says why.
    let output = sandbox
        .crew(&["dispatch", "9", "--profile", "research", "--json"])
        .await?;
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let views: Value = serde_json::from_str(&stdout)?;
    let research = PathBuf::from(views[0]["worktree"].as_str().ok_or("no worktree")?);
    agent_started(&research).await?;
    let comments = sandbox.comments(9).await?.len();
    let mut command = sandbox.command(&["done"]);
    command
        .current_dir(&research)
        .env_remove("GH_TOKEN")
        .env_remove("GITHUB_TOKEN");
    let output = tokio::process::Command::from(command).output().await?;
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("profile `research` does not pass the token"),
        "{stderr}"
    );
    assert_eq!(sandbox.comments(9).await?.len(), comments);
    let_agent_exit(&research).await?;

    // `scout` is detached but has the token: `done` completes without a pull request.
    let dispatched = dispatch_with(&sandbox, 1, &["--profile", "scout"]).await?;
    let worktree = &dispatched.worktree;
    assert!(dispatched.branch.is_empty(), "scout got a branch");
    agent_started(worktree).await?;
    let control = Control::new(&sandbox.emulator)?;
    control.reset_stats().await?;
    let output = crew_in(&sandbox, worktree, &["done", "--json"]).await?;
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let view: Value = serde_json::from_str(&stdout)?;
    assert_eq!(view["kind"], "completed");
    assert!(view["pr"].is_null());
    assert_eq!(
        control.requests("POST /repos/{owner}/{repo}/pulls").await?,
        0
    );
    // The agent never ran `crew start`: `done` posts it first, so the fold reaches `completed`.
    let events = posted_events(&sandbox, 1).await?;
    assert_eq!(kinds(&events), ["assigned", "started", "completed"]);
    assert_eq!(events[2].body, EventBody::Completed { pr: None });
    assert_eq!(lease_state(&sandbox, 1).await?.2, LeaseState::Released);
    let exit = supervisor_recorded_exit(worktree).await?;
    assert_eq!(exit["finished"], "completed");
    Ok(())
}

#[tokio::test]
async fn done_refuses_to_overwrite_commits_origin_has_and_the_worktree_lacks() -> TestResult {
    let sandbox = Sandbox::new(WAITING_AGENT).await?;
    let dispatched = dispatch(&sandbox, 4).await?;
    let worktree = &dispatched.worktree;
    agent_started(worktree).await?;
    std::fs::write(worktree.join("mine.txt"), "mine\n")?;
    git(worktree, &["add", "mine.txt"])?;
    git(worktree, &["commit", "-qm", "Mine"])?;
    // Someone pushed other work to the worker's branch.
    std::fs::write(sandbox.clone.join("theirs.txt"), "theirs\n")?;
    git(&sandbox.clone, &["add", "theirs.txt"])?;
    git(&sandbox.clone, &["commit", "-qm", "Theirs"])?;
    let refspec = format!("HEAD:refs/heads/{}", dispatched.branch);
    git(&sandbox.clone, &["push", "-q", "origin", &refspec])?;
    let comments = sandbox.comments(4).await?.len();

    let output = crew_in(&sandbox, worktree, &["done"]).await?;
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("refusing to overwrite them"), "{stderr}");
    assert_eq!(
        origin_file(&sandbox.bare, &dispatched.branch, "theirs.txt").as_deref(),
        Some("theirs\n")
    );
    assert_eq!(
        origin_file(&sandbox.bare, &dispatched.branch, "mine.txt"),
        None
    );
    assert_eq!(sandbox.comments(4).await?.len(), comments);
    let_agent_exit(worktree).await
}
