//! `crew gc [--dry-run]`: clean up after workers on this host (DESIGN.md 3, "Cleanup").
//!
//! In order: reconcile (workers whose supervisor died are handed over, see [`crate::reconcile`]);
//! observe GitHub (sync, leases) to learn which issues are still live; stop orphan processes —
//! a supervisor or agent that still runs although its issue is completed, cancelled or closed,
//! or its lease now names another attempt (always identified by pid *and* start time, never by
//! name); remove the worktree of every issue that is no longer live, after saving its
//! uncommitted work as a WIP commit pushed to its branch; forget process rows nothing needs;
//! and report the disk the worker worktrees use before and after.
//!
//! Decisions, and why:
//! - **Never delete unsaved work.** A dirty worktree is committed and pushed first; when the
//!   commit or the push fails, the worktree stays and the report says why. The branch is never
//!   deleted (it may hold a pull request).
//! - **An orphan supervisor is killed, not asked to stop.** Asked (SIGTERM), it would salvage and
//!   post a handover on an issue that is over, or push to a branch another attempt owns; so it
//!   gets SIGKILL, and its agent's group the usual SIGINT → SIGTERM → SIGKILL escalation (an agent
//!   may save on SIGINT). The lease of a finished issue still held by that attempt is released.
//! - **`--dry-run` writes nothing**: no signal, no commit, no push, no removal, no request that
//!   writes, no process row forgotten. It still reads GitHub (the issue states) and the disk.
//! - **Only what this host knows.** Worktrees of this clone and the process table of this
//!   repository's cache; workers elsewhere are theirs to clean.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use serde::Serialize;

use crate::context::Ctx;
use crate::error::CrewError;
use crate::observe::{ObserveOptions, Observed, observe};
use crate::protocol::State;
use crate::reconcile::{self, Liveness, LocalWorker, ReconciledWorker};
use crate::worker::{self, HandoverRecord, LeaseFate, ProcessIdentity, SupervisorSpec};
use crate::workspace;

/// How long a killed supervisor is given to disappear.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// Remove the worktrees of finished issues (saving their work first), stop orphan processes,
/// and report disk use
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  crew gc --dry-run          Say which worktrees and processes would go
  crew gc                    Save and remove finished issues' worktrees, stop orphans
  crew gc --json | jq .disk  Disk use of the worktrees")]
pub struct GcArgs {
    /// Report what would be done, and do nothing
    #[arg(long)]
    pub dry_run: bool,
}

/// `crew gc --json`.
#[derive(Debug, Serialize)]
pub struct GcView {
    pub repo: String,
    pub dry_run: bool,
    /// What reconciling did (or would do) about workers whose supervisor died.
    pub reconciled: Vec<ReconciledWorker>,
    /// Orphan processes stopped (or that would be).
    pub processes: Vec<ProcessLine>,
    /// Every worker worktree on this host, and what became of it.
    pub worktrees: Vec<WorktreeLine>,
    /// Process rows forgotten (or that would be), by worker id.
    pub forgotten: Vec<String>,
    /// Live leases of this host that no worker here holds (an interrupted dispatch).
    pub leases: Vec<reconcile::LeaseLine>,
    pub disk: DiskUse,
}

/// One orphan process.
#[derive(Debug, Serialize)]
pub struct ProcessLine {
    pub issue: u64,
    pub worker: String,
    /// `supervisor` or `agent`.
    pub role: &'static str,
    pub pid: u32,
    /// `stopped`, `would_stop`, or `gone` (it ended before it was signalled).
    pub action: &'static str,
    pub reason: String,
}

/// One worker worktree.
#[derive(Debug, Serialize)]
pub struct WorktreeLine {
    pub issue: u64,
    pub attempt: u32,
    pub worker: String,
    pub path: String,
    /// The issue as GitHub and the events say: a state name, `closed`, or `unknown`.
    pub issue_state: String,
    pub bytes: u64,
    /// `kept`, `removed`, `would_remove`, or `kept_unsaved` (its work could not be saved).
    pub action: &'static str,
    pub reason: String,
    /// The WIP commit made of its uncommitted work.
    pub salvage_commit: Option<String>,
    pub pushed: Option<bool>,
    /// It has uncommitted work (reported in a dry run, saved otherwise).
    pub dirty: bool,
}

/// Bytes of all worker worktrees.
#[derive(Debug, Serialize)]
pub struct DiskUse {
    pub before: u64,
    /// After the removals (projected in a dry run).
    pub after: u64,
}

pub async fn run(ctx: &Ctx, args: &GcArgs) -> Result<(), CrewError> {
    let repo = ctx.settings.require_repo()?.clone();
    let dry_run = args.dry_run;

    // 1. Dead supervisors first.
    let plan = reconcile::plan_local(ctx).await?;
    let reconciled = if dry_run {
        reconcile::dry_run(&plan)
    } else {
        reconcile::apply(ctx, plan).await
    };
    let mut forgotten: Vec<String> = reconciled
        .workers
        .iter()
        .filter(|worker| worker.forgot_row)
        .map(|worker| worker.worker.clone())
        .collect();

    // 2. Which issues are still live.
    let observed = observe(ctx, ObserveOptions::default()).await?;
    let cache = ctx.cache().await?;
    let workers = reconcile::plan_local(ctx).await?;

    let mut processes = Vec::new();
    let mut worktrees = Vec::new();
    // Saving a worktree's work can take a while per worker: a bar, on a terminal only.
    let bar = ctx.printer.progress(
        u64::try_from(workers.len()).unwrap_or(u64::MAX),
        "worktrees",
        ctx.settings.json,
    );
    for local in &workers {
        bar.inc(1);
        let over = issue_over(&observed, cache, local.issue).await?;
        let not_ours = lease_not_ours(&observed, local);
        let orphan_reason = match (&over, &not_ours) {
            (Some(state), _) => Some(format!("issue #{} is {state}", local.issue)),
            (None, Some(holder)) => Some(holder.clone()),
            (None, None) => None,
        };

        // 3. Orphan processes.
        let mut stopped_any = false;
        if let Some(reason) = &orphan_reason {
            let lines = stop_orphans(local, reason, dry_run).await;
            stopped_any = lines.iter().any(|line| line.action == "stopped");
            processes.extend(lines);
        }
        if stopped_any && !dry_run {
            settle(ctx, local, over.is_some()).await;
            if local.worktree.is_none()
                && local.row
                && cache.forget_process(&local.worker).await.unwrap_or(false)
            {
                forgotten.push(local.worker.clone());
            }
        }

        // 4. The worktree.
        if let Some(path) = &local.worktree {
            let state = issue_state(&observed, local.issue, over.as_deref());
            let line =
                collect_worktree(local, path, state, over.as_deref(), dry_run, stopped_any).await;
            if line.action == "removed" && local.row && !dry_run {
                if cache.forget_process(&local.worker).await.unwrap_or(false) {
                    forgotten.push(local.worker.clone());
                }
            } else if line.action == "would_remove" && local.row {
                forgotten.push(local.worker.clone());
            }
            worktrees.push(line);
        }
    }
    bar.finish_and_clear();
    forgotten.sort();
    forgotten.dedup();

    // 5. Leases this host holds for workers it has no trace of: a dispatch killed after taking
    // the lease and before its worktree existed. Released, with a handover when its `assigned`
    // comment was posted, so no issue stays claimed by nobody until the lease expires.
    let leases = reconcile::abandoned_leases(ctx, &observed, &workers, dry_run).await;

    let before = worktrees.iter().map(|line| line.bytes).sum();
    let after = worktrees
        .iter()
        .filter(|line| !matches!(line.action, "removed" | "would_remove"))
        .map(|line| line.bytes)
        .sum();
    let view = GcView {
        repo: repo.to_string(),
        dry_run,
        reconciled: reconciled.workers,
        processes,
        worktrees,
        forgotten,
        leases,
        disk: DiskUse { before, after },
    };
    if ctx.settings.json {
        ctx.printer.json(&view)
    } else {
        ctx.printer.out(|w| render(w, &view))
    }
}

/// `Some(state)` when the issue is over: its events say completed or cancelled, or GitHub says
/// closed. `None` while it is live, or when crew knows nothing of it (kept: unknown is not over).
async fn issue_over(
    observed: &Observed,
    cache: &crate::cache::Cache,
    number: u64,
) -> Result<Option<String>, CrewError> {
    if let Some(issue) = observed.issue(number) {
        if matches!(issue.state.state, State::Completed | State::Cancelled) {
            return Ok(Some(issue.state.state.as_str().to_owned()));
        }
        return Ok((!issue.open).then(|| "closed".to_owned()));
    }
    Ok(cache
        .issue(number)
        .await?
        .filter(|row| row.state == "closed")
        .map(|_| "closed".to_owned()))
}

/// Why the worker's attempt is no longer the one the lease names, if it is not.
fn lease_not_ours(observed: &Observed, local: &LocalWorker) -> Option<String> {
    let lease = observed
        .leases
        .iter()
        .find(|lease| lease.issue == local.issue)?;
    let lease = lease.lease.as_ref().ok()?;
    // Attempts only grow: an older attempt in the lease is a read from before this worker's
    // dispatch, not a sign that it was superseded.
    let newer = lease.attempt > local.attempt
        || (lease.attempt == local.attempt && lease.worker != local.worker);
    newer.then(|| {
        format!(
            "the lease of #{} is held by {} (attempt {})",
            local.issue, lease.worker, lease.attempt
        )
    })
}

/// Kills the worker's supervisor and stops its agent's group, each only while it is the recorded
/// process (pid and start time); in a dry run, only says so.
async fn stop_orphans(local: &LocalWorker, reason: &str, dry_run: bool) -> Vec<ProcessLine> {
    let mut lines = Vec::new();
    let line = |role, pid, action| ProcessLine {
        issue: local.issue,
        worker: local.worker.clone(),
        role,
        pid,
        action,
        reason: reason.to_owned(),
    };
    if let Some(supervisor) = local.supervisor
        && local.facts.supervisor == Liveness::Alive
    {
        let action = if dry_run {
            "would_stop"
        } else if kill(supervisor).await {
            "stopped"
        } else {
            "gone"
        };
        lines.push(line("supervisor", supervisor.pid, action));
    }
    if let Some(agent) = local.agent
        && reconcile::agent_liveness(Some(agent)) == Liveness::Alive
    {
        let action = if dry_run {
            "would_stop"
        } else {
            let grace = local
                .spec
                .as_ref()
                .map_or(reconcile::DEFAULT_GRACE, SupervisorSpec::grace);
            // Checked again right before signalling.
            if reconcile::agent_liveness(Some(agent)) == Liveness::Alive {
                worker::stop_group(agent.pid, grace).await;
                "stopped"
            } else {
                "gone"
            }
        };
        lines.push(line("agent", agent.pid, action));
    }
    lines
}

/// SIGKILL to `identity` while it is that process; waits until it is gone. True when it ran.
async fn kill(identity: ProcessIdentity) -> bool {
    match worker::signal_process(&identity, worker::Signal::Kill) {
        Ok(true) => {}
        Ok(false) => return false,
        Err(error) => {
            tracing::warn!(%error, pid = identity.pid, "cannot kill the supervisor");
            return false;
        }
    }
    let deadline = tokio::time::Instant::now() + KILL_WAIT;
    while worker::is_alive(&identity) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

/// After its orphan processes were stopped: releases the lease if this attempt still holds it
/// and the issue is over (a lease naming another attempt is theirs), and records the attempt as
/// settled so no later reconcile hands it over. Failures are warnings; the next gc retries.
async fn settle(ctx: &Ctx, local: &LocalWorker, issue_over: bool) {
    let mut fate = LeaseFate::Superseded;
    if issue_over {
        match release(ctx, local).await {
            Ok(released) => fate = released,
            Err(error) => {
                ctx.printer.warn(format_args!(
                    "#{} {}: could not release the lease: {error}",
                    local.issue, local.worker
                ));
                return;
            }
        }
    }
    if let Some(path) = &local.worktree {
        let record = HandoverRecord {
            worker: local.worker.clone(),
            attempt: local.attempt,
            at: chrono::Utc::now(),
            comment_id: None,
            salvage_commit: None,
            lease: fate,
        };
        if let Err(error) = worker::write_handover(path, &record).await {
            ctx.printer.warn(format_args!(
                "#{} {}: could not record that it was stopped: {error}",
                local.issue, local.worker
            ));
        }
    }
}

async fn release(ctx: &Ctx, local: &LocalWorker) -> Result<LeaseFate, CrewError> {
    let settings = &ctx.settings;
    let released = ctx
        .github()
        .await?
        .release_attempt(
            settings.require_repo()?,
            &settings.config.lease_ref_prefix,
            local.issue,
            &local.worker,
            local.attempt,
            ctx.clock.now(),
        )
        .await?;
    Ok(released.into())
}

/// Measures the worktree and, when its issue is over (and nothing of it still runs), saves its
/// work and removes it.
async fn collect_worktree(
    local: &LocalWorker,
    path: &Path,
    issue_state: String,
    over: Option<&str>,
    dry_run: bool,
    stopped: bool,
) -> WorktreeLine {
    let bytes = {
        let path = path.to_path_buf();
        tokio::task::spawn_blocking(move || disk_bytes(&path))
            .await
            .unwrap_or(0)
    };
    let dirty = {
        let path = path.to_path_buf();
        tokio::task::spawn_blocking(move || workspace::is_dirty(&path).unwrap_or(false))
            .await
            .unwrap_or(false)
    };
    let mut line = WorktreeLine {
        issue: local.issue,
        attempt: local.attempt,
        worker: local.worker.clone(),
        path: path.to_string_lossy().into_owned(),
        issue_state,
        bytes,
        action: "kept",
        reason: String::new(),
        salvage_commit: None,
        pushed: None,
        dirty,
    };
    let Some(state) = over else {
        line.reason = "its issue is live".to_owned();
        return line;
    };
    // A worker that still runs (not an orphan we stopped) keeps its worktree until it is gone.
    let running = !stopped
        && (local.facts.supervisor == Liveness::Alive
            || reconcile::agent_liveness(local.agent) == Liveness::Alive);
    if running && !dry_run {
        line.reason = "its processes still run".to_owned();
        return line;
    }
    line.reason = format!("issue #{} is {state}", local.issue);
    if dry_run {
        line.action = "would_remove";
        return line;
    }
    let _lock = match reconcile::lock_worker(path) {
        Ok(Some(lock)) => lock,
        Ok(None) => {
            line.reason = "another crew command is handling it".to_owned();
            return line;
        }
        Err(error) => {
            line.reason = format!("cannot lock it: {error}");
            return line;
        }
    };
    let message = workspace::wip_message(
        local.issue,
        local.attempt,
        &format!("crew gc removed the worktree of #{} ({state})", local.issue),
    );
    let path_owned: PathBuf = path.to_path_buf();
    let removed = tokio::task::spawn_blocking(move || remove_saving(&path_owned, &message)).await;
    match removed {
        Ok(Ok(Removal::Removed(salvage))) => {
            line.action = "removed";
            line.salvage_commit = salvage.as_ref().map(|result| result.commit_sha.clone());
            line.pushed = salvage.as_ref().map(|result| result.pushed);
        }
        Ok(Ok(Removal::NotPushed(salvage))) => {
            line.action = "kept_unsaved";
            line.salvage_commit = Some(salvage.commit_sha.clone());
            line.pushed = Some(false);
            line.reason = format!(
                "its work was committed as {} but could not be pushed; kept",
                short(&salvage.commit_sha)
            );
        }
        Ok(Err(error)) => {
            line.action = "kept_unsaved";
            line.reason = format!("its work could not be saved ({error}); kept");
        }
        Err(error) => {
            line.action = "kept_unsaved";
            line.reason = format!("its work could not be saved ({error}); kept");
        }
    }
    line
}

/// The issue's state for the report: over (`completed`, `cancelled`, `closed`), else its folded
/// state, else `unknown`.
fn issue_state(observed: &Observed, number: u64, over: Option<&str>) -> String {
    if let Some(state) = over {
        return state.to_owned();
    }
    observed
        .issue(number)
        .map_or("unknown", |issue| issue.state.state.as_str())
        .to_owned()
}

enum Removal {
    Removed(Option<workspace::SalvageResult>),
    NotPushed(workspace::SalvageResult),
}

/// Commits and pushes uncommitted work, then removes the worktree; stops before removing when
/// the commit or the push fails. A detached worktree (nothing to push to) keeps its commit under
/// `refs/crew/salvage/`, which is enough.
fn remove_saving(path: &Path, message: &str) -> Result<Removal, workspace::WorkspaceError> {
    let salvage = if workspace::is_dirty(path)? {
        let opened = workspace::open_worktree(path)?;
        let salvage = workspace::salvage(&opened, message)?;
        if let Some(result) = &salvage
            && opened.branch.is_some()
            && !result.pushed
        {
            return Ok(Removal::NotPushed(result.clone()));
        }
        salvage
    } else {
        None
    };
    workspace::remove_worktree(path, message)?;
    Ok(Removal::Removed(salvage))
}

/// The bytes of the files under `path` (symlinks not followed; what cannot be read counts 0).
pub fn disk_bytes(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| disk_bytes(&entry.path()))
                .sum()
        })
        .unwrap_or(0)
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

/// `1.5 MiB`, `12 KiB`, `800 B`.
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

fn render(w: &mut dyn Write, view: &GcView) -> std::io::Result<()> {
    let would = if view.dry_run { " (dry run)" } else { "" };
    writeln!(w, "{}: gc{would}", view.repo)?;
    for worker in &view.reconciled {
        if let Some(line) = worker.describe() {
            writeln!(w, "{line}")?;
        }
    }
    for process in &view.processes {
        let verb = match process.action {
            "would_stop" => "would stop",
            "gone" => "found already gone",
            _ => "stopped",
        };
        writeln!(
            w,
            "#{} {}: {verb} orphan {} (pid {}): {}",
            process.issue, process.worker, process.role, process.pid, process.reason
        )?;
    }
    for line in &view.worktrees {
        let saved = match (&line.salvage_commit, line.pushed) {
            (Some(commit), Some(true)) => {
                format!("; saved its work as {} and pushed it", short(commit))
            }
            (Some(commit), _) => format!("; committed its work as {}", short(commit)),
            (None, _) if line.dirty && line.action == "would_remove" => {
                "; would save its uncommitted work first".to_owned()
            }
            _ => String::new(),
        };
        let verb = match line.action {
            "removed" => "removed",
            "would_remove" => "would remove",
            "kept_unsaved" => "KEPT (unsaved work)",
            _ => "kept",
        };
        writeln!(
            w,
            "#{} {}: {verb} {} ({}): {}{saved}",
            line.issue,
            line.worker,
            line.path,
            human_bytes(line.bytes),
            line.reason
        )?;
    }
    for worker in &view.forgotten {
        let verb = if view.dry_run {
            "would forget"
        } else {
            "forgot"
        };
        writeln!(w, "{verb} the process row of {worker}")?;
    }
    for lease in &view.leases {
        let verb = match lease.action {
            "released" => "released",
            "would_release" => "would release",
            "superseded" => "left (another attempt holds it now)",
            _ => "could not release",
        };
        write!(
            w,
            "#{}: {verb} the lease of {} (attempt {}): {}",
            lease.issue, lease.worker, lease.attempt, lease.reason
        )?;
        match lease.handover_comment {
            Some(comment) => writeln!(w, "; handover comment {comment}")?,
            None => writeln!(w)?,
        }
    }
    let after = if view.dry_run { "would be" } else { "now" };
    writeln!(
        w,
        "disk: {} in {} worker worktree(s); {after} {}",
        human_bytes(view.disk.before),
        view.worktrees.len(),
        human_bytes(view.disk.after)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_human() {
        assert_eq!(human_bytes(800), "800 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024), "3.0 MiB");
    }

    #[test]
    fn disk_use_counts_files_without_following_links() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("a"), [0u8; 100])?;
        std::fs::create_dir(dir.path().join("sub"))?;
        std::fs::write(dir.path().join("sub").join("b"), [0u8; 20])?;
        std::os::unix::fs::symlink("/usr", dir.path().join("link"))?;
        let total = disk_bytes(dir.path());
        // The link counts as itself (a few bytes), not as /usr.
        assert!((120..200).contains(&total), "{total}");
        Ok(())
    }
}
