//! Reconciling dead supervisors and `crew gc`, as the real binary against the emulator and a real
//! clone: a supervisor killed with SIGKILL while its agent runs is found by `crew status`, which
//! stops the agent, pushes its uncommitted work and hands over exactly once; `crew gc --dry-run`
//! changes nothing; `crew gc` stops the orphan processes of a closed issue, saves its dirty
//! worktree to the branch and removes it, and never touches a process whose pid matches a
//! record but whose start time does not; a supervisor that handed over itself records it, so
//! reconciling afterwards asks GitHub nothing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crew::cache::{Cache, ProcessRow};
use crew::protocol::lease::LeaseState;
use crew::worker::{self, ProcessIdentity, Signal};
use serde_json::Value;

use crate::support::sandbox::{PREFIX, Sandbox, origin_file, requests, text};
use crate::support::{Control, TestResult};

/// The agent: leaves uncommitted work, then runs on (without printing: its supervisor, the
/// reader of its output, is about to be killed).
const SCRIPT: &str = "echo started; echo wip > wip.txt; sleep 30";

/// Polls `check` every 50 ms for up to `seconds`.
async fn eventually(seconds: u64, mut check: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    loop {
        if check() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Dispatches `issue` and waits until its agent has written `wip.txt`. Returns the worktree,
/// the branch, the supervisor and the agent.
async fn dispatch_running(
    sandbox: &Sandbox,
    issue: u64,
) -> TestResult<(PathBuf, String, ProcessIdentity, ProcessIdentity)> {
    let output = sandbox
        .crew(&["dispatch", &issue.to_string(), "--json"])
        .await?;
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let views: Value = serde_json::from_str(&stdout)?;
    let worktree = PathBuf::from(views[0]["worktree"].as_str().ok_or("no worktree")?);
    let branch = views[0]["branch"].as_str().ok_or("no branch")?.to_owned();
    let recorded = eventually(10, || {
        worktree.join("wip.txt").is_file()
            && worker::read_supervised(&worktree)
                .ok()
                .flatten()
                .is_some_and(|record| record.process.supervisor_pid.is_some())
    })
    .await;
    assert!(recorded, "the agent never started");
    let record = worker::read_supervised(&worktree)?.ok_or("no worker.json")?;
    let supervisor = ProcessIdentity {
        pid: record.process.supervisor_pid.ok_or("no supervisor pid")?,
        start_time: record
            .process
            .supervisor_start_time
            .ok_or("no supervisor start time")?,
    };
    let agent = ProcessIdentity {
        pid: record.process.pid,
        start_time: record.process.start_time,
    };
    assert!(worker::is_alive(&supervisor) && worker::is_alive(&agent));
    Ok((worktree, branch, supervisor, agent))
}

async fn handovers(sandbox: &Sandbox, issue: u64) -> TestResult<usize> {
    Ok(sandbox
        .comments(issue)
        .await?
        .iter()
        .filter(|(_, body)| body.contains("\"kind\":\"handover\""))
        .count())
}

async fn lease_state(sandbox: &Sandbox, issue: u64) -> TestResult<Option<LeaseState>> {
    Ok(sandbox
        .github
        .leases(&sandbox.repo, PREFIX)
        .await?
        .into_iter()
        .find(|lease| lease.issue == issue)
        .and_then(|lease| lease.lease.ok())
        .map(|lease| lease.state))
}

/// Routes that write, or that only a hand-over reads (the lease ref, one issue's comments).
fn handover_traffic(by_route: &[(String, u64)]) -> Vec<String> {
    by_route
        .iter()
        .filter(|(route, count)| {
            *count > 0
                && (!route.starts_with("GET ")
                    || route.contains("/git/ref/")
                    || route.contains("{issue_number}/comments"))
        })
        .map(|(route, count)| format!("{route}: {count}"))
        .collect()
}

fn kill_quietly(identity: &ProcessIdentity) {
    let _ = worker::signal_process(identity, Signal::Kill);
}

#[tokio::test]
async fn a_killed_supervisor_is_found_by_status_and_handed_over_exactly_once() -> TestResult {
    let sandbox = Sandbox::new(SCRIPT).await?;
    let control = Control::new(&sandbox.emulator)?;
    let (worktree, branch, supervisor, agent) = dispatch_running(&sandbox, 1).await?;

    assert!(worker::signal_process(&supervisor, Signal::Kill)?);
    assert!(
        eventually(5, || !worker::is_alive(&supervisor)).await,
        "the supervisor survived SIGKILL"
    );
    assert!(
        worker::is_alive(&agent),
        "the agent died with its supervisor"
    );

    let output = sandbox.crew(&["status"]).await?;
    let (stdout, stderr) = text(&output);
    kill_quietly(&agent);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("handed over"), "{stderr}");
    // The agent and its whole group are stopped.
    assert!(!worker::is_alive(&agent), "the agent still runs: {stderr}");
    assert!(
        !worker::group_alive(agent.pid),
        "the agent's group still runs"
    );
    // Its uncommitted file is on the branch at origin.
    assert_eq!(
        origin_file(&sandbox.bare, &branch, "wip.txt").as_deref(),
        Some("wip\n")
    );
    assert_eq!(handovers(&sandbox, 1).await?, 1);
    assert_eq!(lease_state(&sandbox, 1).await?, Some(LeaseState::Released));
    // `status` shows the handover it just posted.
    assert!(stdout.contains("handover"), "{stdout}");

    // Again: the attempt is settled, so nothing is asked or written for it.
    control.reset_stats().await?;
    let output = sandbox.crew(&["status"]).await?;
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let traffic = handover_traffic(&requests(&control).await?);
    assert!(traffic.is_empty(), "a settled worker cost {traffic:?}");
    assert_eq!(handovers(&sandbox, 1).await?, 1);

    // Even with its record lost, the hand-over finds its comment by op instead of posting again.
    std::fs::remove_file(worktree.join(".crew").join(worker::HANDOVER_FILE))?;
    let output = sandbox.crew(&["status"]).await?;
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert_eq!(handovers(&sandbox, 1).await?, 1);
    assert!(worktree.join(".crew").join(worker::HANDOVER_FILE).is_file());
    assert_eq!(lease_state(&sandbox, 1).await?, Some(LeaseState::Released));

    // The issue is live (handed over, waiting for its next attempt): gc keeps its worktree.
    let output = sandbox.crew(&["gc", "--json"]).await?;
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let view: Value = serde_json::from_str(&stdout)?;
    assert_eq!(view["worktrees"][0]["action"], "kept", "{stdout}");
    assert_eq!(view["worktrees"][0]["issue_state"], "handover", "{stdout}");
    assert!(worktree.is_dir());
    assert_eq!(handovers(&sandbox, 1).await?, 1);
    Ok(())
}

fn close_issue(sandbox: &Sandbox, number: u64) {
    sandbox.emulator.with_state(|state| {
        let now = state.now();
        if let Some(issue) = state
            .repo_mut("acme", "widgets")
            .and_then(|repo| repo.issues.get_mut(&number))
        {
            issue.state = github_emulator::state::IssueState::Closed;
            issue.closed_at = Some(now);
            issue.updated_at = now;
        }
    });
}

fn cache_file(sandbox: &Sandbox) -> PathBuf {
    sandbox
        .dir
        .path()
        .join("cache")
        .join(crew::cache::CACHE_FILE_NAME)
}

fn exists(path: &Path) -> bool {
    path.exists()
}

#[tokio::test]
async fn gc_stops_orphans_of_a_closed_issue_and_removes_its_worktree_after_saving_it() -> TestResult
{
    let sandbox = Sandbox::new(SCRIPT).await?;
    let control = Control::new(&sandbox.emulator)?;
    let (worktree, branch, supervisor, agent) = dispatch_running(&sandbox, 3).await?;

    // Two processes recorded for closed issue #2 (no worktree left): an orphan supervisor, and a
    // row naming an unrelated process's pid with another start time.
    let mut orphan_child = std::process::Command::new("sleep").arg("30").spawn()?;
    let orphan = ProcessIdentity::of(orphan_child.id()).ok_or("sleep is not running")?;
    let mut unrelated = std::process::Command::new("sleep").arg("30").spawn()?;
    let bystander = ProcessIdentity::of(unrelated.id()).ok_or("sleep is not running")?;
    let cache = Cache::open(cache_file(&sandbox)).await?;
    let row = |worker: &str, identity: ProcessIdentity| ProcessRow {
        worker_id: worker.to_owned(),
        issue: 2,
        attempt: 1,
        pid: Some(identity.pid),
        start_time: Some(identity.start_time),
        started_at: chrono::Utc::now(),
        log_path: None,
        worktree: None,
        agent: Some("script".to_owned()),
        runtime: Some("local".to_owned()),
    };
    cache.record_process(&row("worker-2-2", orphan)).await?;
    let reused = ProcessIdentity {
        start_time: bystander.start_time + 1,
        ..bystander
    };
    cache.record_process(&row("worker-1-2", reused)).await?;

    close_issue(&sandbox, 3);

    // Dry run: reported, nothing changed, nothing written.
    control.reset_stats().await?;
    let output = sandbox.crew(&["gc", "--dry-run", "--json"]).await?;
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let view: Value = serde_json::from_str(&stdout)?;
    assert_eq!(view["dry_run"], true);
    assert_eq!(view["worktrees"][0]["action"], "would_remove", "{stdout}");
    assert_eq!(view["worktrees"][0]["dirty"], true, "{stdout}");
    let stops: Vec<(u64, u64, &str, &str)> = view["processes"]
        .as_array()
        .map(|lines| {
            lines
                .iter()
                .map(|line| {
                    (
                        line["issue"].as_u64().unwrap_or(0),
                        line["pid"].as_u64().unwrap_or(0),
                        line["role"].as_str().unwrap_or(""),
                        line["action"].as_str().unwrap_or(""),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        stops,
        vec![
            (2, u64::from(orphan.pid), "supervisor", "would_stop"),
            (3, u64::from(supervisor.pid), "supervisor", "would_stop"),
            (3, u64::from(agent.pid), "agent", "would_stop"),
        ],
        "{stdout}"
    );
    assert!(view["disk"]["before"].as_u64().unwrap_or(0) > 0, "{stdout}");
    assert_eq!(view["disk"]["after"], 0, "{stdout}");
    let writes: Vec<(String, u64)> = requests(&control)
        .await?
        .into_iter()
        .filter(|(route, count)| *count > 0 && !route.starts_with("GET "))
        .collect();
    assert!(writes.is_empty(), "a dry run wrote: {writes:?}");
    assert!(worktree.join("wip.txt").is_file());
    assert!(worker::is_alive(&supervisor) && worker::is_alive(&agent));
    assert!(worker::is_alive(&bystander) && worker::is_alive(&orphan));
    assert_eq!(origin_file(&sandbox.bare, &branch, "wip.txt"), None);
    // The two rows above, and the one `crew dispatch` recorded for #3.
    assert_eq!(cache.processes().await?.len(), 3);

    // The real thing.
    let output = sandbox.crew(&["gc", "--json"]).await?;
    let (stdout, stderr) = text(&output);
    kill_quietly(&supervisor);
    kill_quietly(&agent);
    let bystander_survived = worker::is_alive(&bystander);
    let orphan_survived = worker::is_alive(&orphan);
    let _ = unrelated.kill();
    let _ = unrelated.wait();
    let _ = orphan_child.kill();
    let _ = orphan_child.wait();
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        !orphan_survived,
        "the orphan recorded for closed #2 still runs"
    );
    assert!(
        bystander_survived,
        "a process with another start time was signalled"
    );
    let view: Value = serde_json::from_str(&stdout)?;
    assert_eq!(view["worktrees"][0]["action"], "removed", "{stdout}");
    assert_eq!(view["worktrees"][0]["pushed"], true, "{stdout}");
    assert!(!worker::is_alive(&supervisor), "the orphan supervisor runs");
    assert!(!worker::group_alive(agent.pid), "the orphan agent runs");
    assert!(!exists(&worktree), "the worktree is still there");
    assert_eq!(
        origin_file(&sandbox.bare, &branch, "wip.txt").as_deref(),
        Some("wip\n"),
        "the dirty file was not saved to the branch"
    );
    // The lease of the closed issue is released, and no handover was posted on it.
    assert_eq!(lease_state(&sandbox, 3).await?, Some(LeaseState::Released));
    assert_eq!(handovers(&sandbox, 3).await?, 0);
    // The stale row is forgotten.
    assert!(cache.processes().await?.is_empty());
    assert_eq!(view["disk"]["after"], 0, "{stdout}");
    Ok(())
}

#[tokio::test]
async fn a_supervisor_that_handed_over_itself_leaves_nothing_to_reconcile() -> TestResult {
    let sandbox = Sandbox::new("echo crashed > crash.txt; exit 3").await?;
    let control = Control::new(&sandbox.emulator)?;
    let output = sandbox.crew(&["dispatch", "4", "--json"]).await?;
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let views: Value = serde_json::from_str(&stdout)?;
    let worktree = PathBuf::from(views[0]["worktree"].as_str().ok_or("no worktree")?);
    let worker_id = views[0]["worker"].as_str().ok_or("no worker")?.to_owned();
    // The supervisor salvages, hands over, and records that it did.
    let record_path = worktree.join(".crew").join(worker::HANDOVER_FILE);
    assert!(
        eventually(10, || worker::read_handover(&worktree).is_some()).await,
        "the supervisor recorded no hand-over at {}",
        record_path.display()
    );
    let record = worker::read_handover(&worktree).ok_or("no record")?;
    assert!(record.settles(&worker_id, 1), "{record:?}");
    assert_eq!(record.lease, worker::LeaseFate::Released);
    assert!(record.comment_id.is_some() && record.salvage_commit.is_some());

    control.reset_stats().await?;
    let output = sandbox.crew(&["status"]).await?;
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let traffic = handover_traffic(&requests(&control).await?);
    assert!(traffic.is_empty(), "a settled worker cost {traffic:?}");
    assert!(!stderr.contains("handed over"), "{stderr}");
    assert_eq!(handovers(&sandbox, 4).await?, 1);
    Ok(())
}
