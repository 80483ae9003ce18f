//! `crew logs` and `crew cancel` as the real binary against the emulator and a real clone, with
//! workers started by `crew dispatch`: the log is printed (redacted) and followed without a
//! single GitHub request; a cancel stops the agent's whole process group, saves and pushes its
//! work, posts exactly one `cancelled` (and no salvage `handover`), releases the lease, and is
//! refused once done; refusals (an unassigned issue, another host's live lease) write nothing.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use crew::github::LeaseRequest;
use crew::protocol::lease::LeaseState;
use crew::protocol::{Assignment, Event, EventBody, render_comment};
use crew::worker::{self, ProcessIdentity};
use serde_json::Value;

use crate::support::sandbox::{PREFIX, Sandbox, origin_file, text};
use crate::support::{BOT, Control, TestResult};

/// A long-running agent that has written some work and has a child with a child of its own.
/// (In the foreground: a non-interactive shell's background jobs ignore SIGINT, and would only
/// go at SIGTERM, a grace period later.)
const LONG: &str = "echo hello; echo wip > wip.txt; sh -c 'sleep 30; echo late'; echo never";

/// Dispatches `issue` and returns (worktree, branch).
async fn dispatch(sandbox: &Sandbox, issue: u64) -> TestResult<(PathBuf, String)> {
    let output = sandbox
        .crew(&["dispatch", &issue.to_string(), "--json"])
        .await?;
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let views: Value = serde_json::from_str(&stdout)?;
    let worktree = PathBuf::from(views[0]["worktree"].as_str().ok_or("no worktree")?);
    let branch = views[0]["branch"].as_str().ok_or("no branch")?.to_owned();
    Ok((worktree, branch))
}

/// The agent's and the supervisor's identities once the supervisor has recorded them and the
/// agent has written `file`.
async fn running(worktree: &Path, file: &str) -> TestResult<(ProcessIdentity, ProcessIdentity)> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(record) = worker::read_supervised(worktree)?
            && worktree.join(file).is_file()
        {
            let process = record.process;
            let supervisor = ProcessIdentity {
                pid: process.supervisor_pid.ok_or("no supervisor pid")?,
                start_time: process.supervisor_start_time.ok_or("no start time")?,
            };
            let agent = ProcessIdentity {
                pid: process.pid,
                start_time: process.start_time,
            };
            return Ok((agent, supervisor));
        }
        if Instant::now() > deadline {
            return Err("the worker did not start".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `crew logs 1 --follow`, running, once it has printed its first line.
async fn follower(sandbox: &Sandbox) -> TestResult<(tokio::process::Child, String)> {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::from(sandbox.command(&["logs", "1", "--follow"]))
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut reader = tokio::io::BufReader::new(stdout);
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(5), reader.read_line(&mut line)).await??;
    // Hand the pipe back so the rest of the output can be collected.
    child.stdout = Some(reader.into_inner());
    Ok((child, line))
}

async fn count(sandbox: &Sandbox, issue: u64, kind: &str) -> TestResult<usize> {
    let needle = format!("\"kind\":\"{kind}\"");
    Ok(sandbox
        .comments(issue)
        .await?
        .iter()
        .filter(|(_, body)| body.contains(&needle))
        .count())
}

async fn lease_state(sandbox: &Sandbox, issue: u64) -> TestResult<Option<LeaseState>> {
    Ok(sandbox
        .github
        .leases(&sandbox.repo, PREFIX)
        .await?
        .into_iter()
        .find(|observed| observed.issue == issue)
        .and_then(|observed| observed.lease.ok())
        .map(|lease| lease.state))
}

#[tokio::test]
async fn logs_prints_and_follows_the_log_without_a_request_and_without_the_token() -> TestResult {
    let sandbox =
        Sandbox::new("echo hello; echo \"token $GH_TOKEN\"; sleep 1; echo bye; exit 3").await?;
    let control = Control::new(&sandbox.emulator)?;
    let (worktree, _) = dispatch(&sandbox, 1).await?;

    // Following returns once the agent (and its supervisor) are done, with all of the output.
    let started = Instant::now();
    let followed = tokio::time::timeout(
        Duration::from_secs(20),
        sandbox.crew(&["logs", "1", "--follow"]),
    )
    .await??;
    let (stdout, stderr) = text(&followed);
    assert!(followed.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("hello\n"), "{stdout}");
    assert!(stdout.contains("bye\n"), "{stdout}");
    assert!(stdout.contains("token ***"), "{stdout}");
    assert!(!stdout.contains(BOT) && !stderr.contains(BOT));
    eprintln!("followed for {:?}", started.elapsed());
    let record = worker::read_supervised(&worktree)?.ok_or("no worker.json")?;
    let exit = record.exit.ok_or("the supervisor recorded no exit")?;
    assert_eq!(exit.code, Some(3));

    // Printing the log of a local worker costs no request at all.
    control.reset_stats().await?;
    let output = sandbox.crew(&["logs", "1"]).await?;
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert_eq!(stdout, "hello\ntoken ***\nbye\n");
    let last = sandbox.crew(&["logs", "1", "--lines", "1"]).await?;
    assert_eq!(text(&last).0, "bye\n");
    let json = sandbox.crew(&["logs", "1", "--json"]).await?;
    let view: Value = serde_json::from_slice(&json.stdout)?;
    assert_eq!(
        view["lines"],
        serde_json::json!(["hello", "token ***", "bye"])
    );
    assert_eq!(view["exit"]["code"], 3);
    assert_eq!(view["supervisor"]["alive"], false);
    let stats = control.stats().await?;
    assert_eq!(stats["requests"], 0, "crew logs made requests: {stats}");

    // The supervisor handed over (no live worker, an active state): cancel records it and
    // posts nothing else.
    let output = sandbox.crew(&["cancel", "1", "--json"]).await?;
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let view: Value = serde_json::from_str(&stdout)?;
    assert_eq!(view["previous_state"], "handover");
    assert_eq!(view["lease"], "already_released");
    assert_eq!(view["stopped"]["supervisor_was_running"], false);
    assert_eq!(count(&sandbox, 1, "cancelled").await?, 1);
    assert_eq!(count(&sandbox, 1, "handover").await?, 1);
    Ok(())
}

#[tokio::test]
async fn cancel_stops_the_group_saves_the_work_and_posts_one_cancelled() -> TestResult {
    let sandbox = Sandbox::new(LONG).await?;
    let (worktree, branch) = dispatch(&sandbox, 1).await?;
    let (agent, supervisor) = running(&worktree, "wip.txt").await?;
    assert!(worker::group_alive(agent.pid));

    // A follower stopped with Ctrl-C exits cleanly; another one ends by itself with the worker.
    let (interrupted, first_line) = follower(&sandbox).await?;
    assert_eq!(first_line, "hello\n");
    let pid = libc::pid_t::try_from(interrupted.id().ok_or("no pid")?)?;
    // SAFETY: kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let status = tokio::time::timeout(Duration::from_secs(5), interrupted.wait_with_output())
        .await??
        .status;
    assert!(status.success(), "Ctrl-C: {status}");
    let (remaining, _) = follower(&sandbox).await?;

    let started = Instant::now();
    let output = sandbox
        .crew(&["cancel", "1", "--reason", "not needed after all", "--json"])
        .await?;
    let elapsed = started.elapsed();
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    // Well within one grace period (10 s): the agent stops at SIGINT.
    assert!(elapsed < Duration::from_secs(8), "cancel took {elapsed:?}");
    assert!(
        !worker::group_alive(agent.pid),
        "the agent's group survived"
    );
    assert!(!worker::is_alive(&supervisor), "the supervisor survived");

    let view: Value = serde_json::from_str(&stdout)?;
    assert_eq!(view["previous_state"], "assigned");
    assert_eq!(view["state"], "cancelled");
    assert_eq!(view["lease"], "released");
    assert_eq!(view["salvage"]["pushed"], true);
    assert_eq!(view["stopped"]["supervisor_was_running"], true);

    // The work is on the branch in origin.
    assert_eq!(
        origin_file(&sandbox.bare, &branch, "wip.txt").as_deref(),
        Some("wip\n")
    );
    // One `cancelled`, with the reason; no salvage handover; the lease released.
    let comments = sandbox.comments(1).await?;
    let cancelled: Vec<&String> = comments
        .iter()
        .map(|(_, body)| body)
        .filter(|body| body.contains("\"kind\":\"cancelled\""))
        .collect();
    assert_eq!(cancelled.len(), 1, "{comments:?}");
    assert!(cancelled[0].contains("not needed after all"));
    assert_eq!(count(&sandbox, 1, "handover").await?, 0);
    assert_eq!(lease_state(&sandbox, 1).await?, Some(LeaseState::Released));
    // The supervisor recorded the exit as a cancel it did not have to salvage.
    let record = worker::read_supervised(&worktree)?.ok_or("no worker.json")?;
    assert_eq!(
        record.exit.and_then(|exit| exit.finished).as_deref(),
        Some("cancelled")
    );
    // The follower returned with the supervisor.
    let followed =
        tokio::time::timeout(Duration::from_secs(5), remaining.wait_with_output()).await??;
    assert!(followed.status.success(), "{:?}", text(&followed));
    // The log is still there to read.
    let logs = sandbox.crew(&["logs", "1"]).await?;
    assert_eq!(text(&logs).0, "hello\n");

    // Once more: nothing left to cancel, nothing posted.
    let comments = sandbox.comments(1).await?.len();
    let again = sandbox.crew(&["cancel", "1"]).await?;
    let (stdout, stderr) = text(&again);
    assert_eq!(again.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("already cancelled"), "{stderr}");
    assert_eq!(sandbox.comments(1).await?.len(), comments);
    Ok(())
}

#[tokio::test]
async fn cancel_of_an_unassigned_issue_exits_1_with_nothing_written() -> TestResult {
    let sandbox = Sandbox::new(LONG).await?;
    let output = sandbox.crew(&["cancel", "3"]).await?;
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("unassigned"), "{stderr}");
    assert!(sandbox.comments(3).await?.is_empty());
    assert!(sandbox.lease_refs().await?.is_empty());

    let logs = sandbox.crew(&["logs", "3"]).await?;
    let (stdout, stderr) = text(&logs);
    assert_eq!(logs.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("no worker of #3"), "{stderr}");
    Ok(())
}

#[tokio::test]
async fn another_hosts_worker_is_named_and_only_force_cancels_it() -> TestResult {
    let sandbox = Sandbox::new(LONG).await?;
    let worker = "worker-elsewhere-4";
    sandbox
        .github
        .acquire_lease(
            &sandbox.repo,
            PREFIX,
            4,
            LeaseRequest {
                base: "main".to_owned(),
                worker: worker.to_owned(),
                host: "ci-runner".to_owned(),
                runtime: "actions".to_owned(),
                ttl: TimeDelta::minutes(30),
                now: Utc::now(),
            },
        )
        .await?;
    let event = Event {
        issue: 4,
        attempt: 1,
        worker: worker.to_owned(),
        op: "op-elsewhere-4".to_owned(),
        at: Utc::now(),
        body: EventBody::Assigned(Assignment {
            host: Some("ci-runner".to_owned()),
            ..Assignment::default()
        }),
    };
    sandbox
        .github
        .create_issue_comment(
            &sandbox.repo,
            4,
            &render_comment(&event, "**Assigned**"),
            None,
        )
        .await?;

    let logs = sandbox.crew(&["logs", "4"]).await?;
    let (stdout, stderr) = text(&logs);
    assert_eq!(logs.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("host ci-runner"), "{stderr}");

    let output = sandbox.crew(&["cancel", "4"]).await?;
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("ci-runner") && stderr.contains(worker),
        "{stderr}"
    );
    assert_eq!(count(&sandbox, 4, "cancelled").await?, 0);

    let output = sandbox.crew(&["cancel", "4", "--force"]).await?;
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("#4: assigned → cancelled"), "{stdout}");
    assert!(
        stdout.contains("left the lease to host ci-runner"),
        "{stdout}"
    );
    assert_eq!(count(&sandbox, 4, "cancelled").await?, 1);
    // The other host's lease is left to it.
    assert_eq!(lease_state(&sandbox, 4).await?, Some(LeaseState::Held));
    Ok(())
}
