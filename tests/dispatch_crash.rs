//! `kill -9` of `crew dispatch` after each of its steps, then a second `crew dispatch`: the
//! second run finishes the first one's attempt (same worker, same attempt, the one `assigned`
//! comment) instead of starting another, and exactly one agent runs. The kill is the real
//! thing: `CREW_FAULT_KILL_AFTER=<step>` makes the binary SIGKILL itself right after that step.
//! The other way to recover, `crew gc`, is checked too: it releases every lease the dead
//! dispatches left, follows every orphaned `assigned` comment with a handover, and the next
//! dispatch of each issue is a clean next attempt.

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::time::Duration;

use crew::protocol::lease::LeaseState;
use serde_json::Value;

use crate::support::TestResult;
use crate::support::sandbox::{Sandbox, origin_file, text};

/// Appends a line per run, so two agents in one worktree would leave two lines; then exits
/// without `crew done`, so its supervisor salvages the file and hands over.
const SCRIPT: &str = "echo ran >> ran.txt; sleep 1; exit 0";

/// The steps of a dispatch, in order, and an open issue for each.
const STEPS: [(&str, u64); 7] = [
    ("lease", 1),
    ("assigned", 3),
    ("board", 4),
    ("worktree", 5),
    ("context", 6),
    ("prompt", 7),
    ("spec", 8),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispatch_killed_after_any_step_is_finished_by_the_next_not_repeated() -> TestResult {
    let sandbox = Sandbox::new(SCRIPT).await?;
    let mut placed = Vec::new();
    for (step, issue) in STEPS {
        let number = issue.to_string();
        let mut command = sandbox.command(&["dispatch", &number]);
        command.env("CREW_FAULT_KILL_AFTER", step);
        let killed = tokio::process::Command::from(command).output().await?;
        assert_eq!(
            killed.status.signal(),
            Some(9),
            "{step}: not killed: {:?}",
            text(&killed)
        );

        let second = sandbox.crew(&["dispatch", &number, "--json"]).await?;
        let (stdout, stderr) = text(&second);
        assert!(second.status.success(), "{step}: {stdout}\n{stderr}");
        let view: Value = serde_json::from_str(&stdout)?;
        let view = view[0].clone();
        assert_eq!(view["attempt"], 1, "{step}: a new attempt: {view}");
        assert_eq!(view["resumed"], true, "{step}: {view}");
        placed.push((step, issue, view));
    }

    for (step, issue, view) in &placed {
        let worker = view["worker"].as_str().ok_or("no worker")?;
        let branch = view["branch"].as_str().ok_or("no branch")?;
        let worktree = PathBuf::from(view["worktree"].as_str().ok_or("no worktree")?);
        // One `assigned` comment, of this worker.
        let assigned: Vec<_> = sandbox
            .comments(*issue)
            .await?
            .into_iter()
            .filter(|(_, body)| body.contains("\"kind\":\"assigned\""))
            .collect();
        assert_eq!(assigned.len(), 1, "{step}: {assigned:?}");
        assert!(assigned[0].1.contains(worker), "{step}: {assigned:?}");
        // The agent ran once: its salvaged file has one line.
        let mut pushed = None;
        for _ in 0..100 {
            pushed = origin_file(&sandbox.bare, branch, "ran.txt");
            if pushed.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let log =
            std::fs::read_to_string(worktree.join(".crew/logs/supervisor.log")).unwrap_or_default();
        assert_eq!(pushed.as_deref(), Some("ran\n"), "{step}: {log}");
    }
    // Every lease is this attempt's, and none is held by anything but its worker.
    let leases = sandbox.lease_refs().await?;
    for (step, issue, view) in &placed {
        let worker = view["worker"].as_str().ok_or("no worker")?.to_owned();
        assert!(
            leases.contains(&(*issue, 1, worker)),
            "{step}: leases {leases:?}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispatch_killed_after_spawning_leaves_one_worker_and_a_second_dispatch_exits_4()
-> TestResult {
    let sandbox = Sandbox::new("echo ran >> ran.txt; sleep 3; exit 0").await?;
    let mut command = sandbox.command(&["dispatch", "9"]);
    command.env("CREW_FAULT_KILL_AFTER", "spawn");
    let killed = tokio::process::Command::from(command).output().await?;
    assert_eq!(killed.status.signal(), Some(9), "{:?}", text(&killed));

    // The detached supervisor lives on and runs the agent; a second dispatch sees it. (It is
    // given the moment it needs to take its worktree's lock: until then, with the dispatch that
    // held the issue's lock dead, a second dispatch cannot tell it from a dead one.)
    let worktree = sandbox.dir.path().join("widgets-worker-9");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !crew::worker::lock::supervisor_running(&worktree) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the supervisor never took its lock"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let second = sandbox.crew(&["dispatch", "9"]).await?;
    let (stdout, stderr) = text(&second);
    assert_eq!(second.status.code(), Some(4), "{stdout}\n{stderr}");
    assert_eq!(sandbox.assigned(9).await?.len(), 1);
    let leases = sandbox.lease_refs().await?;
    assert_eq!(leases.len(), 1, "{leases:?}");
    assert_eq!(leases[0].1, 1, "{leases:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_killed_dispatch_gc_leaves_no_orphan_lease_comment_or_process() -> TestResult {
    let sandbox = Sandbox::new(SCRIPT).await?;
    for (step, issue) in STEPS {
        let number = issue.to_string();
        let mut command = sandbox.command(&["dispatch", &number]);
        command.env("CREW_FAULT_KILL_AFTER", step);
        let killed = tokio::process::Command::from(command).output().await?;
        assert_eq!(
            killed.status.signal(),
            Some(9),
            "{step}: {:?}",
            text(&killed)
        );
    }

    let gc = sandbox.crew(&["gc", "--json"]).await?;
    let (stdout, stderr) = text(&gc);
    assert!(gc.status.success(), "{stdout}\n{stderr}");
    let leases = sandbox
        .github
        .leases(&sandbox.repo, crate::support::sandbox::PREFIX)
        .await?;
    for (step, issue) in STEPS {
        // The lease is let go: no issue stays claimed by a worker that does not exist.
        let lease = leases
            .iter()
            .find(|lease| lease.issue == issue)
            .and_then(|lease| lease.lease.as_ref().ok())
            .ok_or(format!("{step}: no lease"))?;
        assert_eq!(
            lease.state,
            LeaseState::Released,
            "{step}: {lease:?}\n{stdout}"
        );
        // An announced attempt is followed by a handover; an unannounced one left no comment.
        let kinds: Vec<String> = sandbox
            .comments(issue)
            .await?
            .iter()
            .filter_map(|(_, body)| {
                let start = body.find("\"kind\":\"")? + 8;
                Some(body[start..].split('"').next()?.to_owned())
            })
            .collect();
        let expected: &[&str] = if step == "lease" {
            &[]
        } else {
            &["assigned", "handover"]
        };
        assert_eq!(kinds, expected, "{step}\n{stdout}");
        // No supervisor runs for it.
        let worktree = sandbox.dir.path().join(format!("widgets-worker-{issue}"));
        assert!(
            !crew::worker::lock::supervisor_running(&worktree),
            "{step}: a supervisor runs"
        );
    }
    // A second gc finds nothing left to do.
    let again = sandbox.crew(&["gc", "--json"]).await?;
    let view: Value = serde_json::from_str(&text(&again).0)?;
    assert_eq!(view["leases"], Value::Array(Vec::new()), "{view}");
    assert_eq!(view["processes"], Value::Array(Vec::new()), "{view}");

    // And each issue dispatches cleanly as its next attempt.
    for (step, issue) in STEPS {
        let output = sandbox
            .crew(&["dispatch", &issue.to_string(), "--json"])
            .await?;
        let (stdout, stderr) = text(&output);
        assert!(output.status.success(), "{step}: {stdout}\n{stderr}");
        let view: Value = serde_json::from_str(&stdout)?;
        assert_eq!(view[0]["attempt"], 2, "{step}: {view}");
    }
    Ok(())
}
