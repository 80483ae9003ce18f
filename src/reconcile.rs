//! Reconciling this host's workers (DESIGN.md 3): finding the ones whose supervisor died and
//! finishing what that supervisor would have done.
//!
//! A supervisor normally sees its agent out: it records the exit and, when the agent did not
//! finish the attempt itself, salvages the worktree, hands over and releases the lease. When the
//! supervisor itself is killed (`kill -9`, a reboot, the OOM killer), nobody does. So every
//! command that reconciles (`status`, `gc`, `dispatch`, `loop`) first looks at the workers of its
//! repository on this host and, for each one whose supervisor is dead, stops an agent left
//! running and calls the supervisor's own hand-over ([`worker::hand_over_abandoned`]).
//!
//! Decisions, and why:
//! - **Plan, then apply** (CONVENTIONS 8). [`gather`] reads `/proc` and `.crew/` (no network) and
//!   [`decide`] is a pure function of what it found ([`WorkerFacts`] → [`Decision`]), tested
//!   without processes; [`apply`] performs the decisions. `crew gc --dry-run` prints the plan.
//! - **Every source, none trusted alone.** Workers are found in the worktrees of the clone
//!   (`.crew/context.json`, `.crew/worker.json`) *and* in the cache's process table: the table is
//!   disposable, so a missing row never hides a worker; the worktree may be gone, so a row alone
//!   is still looked at.
//! - **Liveness is (pid, start time)**, never a name and never a bare pid: a pid reused by an
//!   unrelated process is a dead supervisor, and that process is never signalled. Liveness is read
//!   before the files, so a supervisor that exits between the two reads has finished writing them.
//! - **Cheap when nothing died.** Deciding needs no request; GitHub is only asked about a worker
//!   that needs a hand-over, and once one is done `.crew/handover.json` settles it, so the next
//!   reconcile asks nothing again. The GitHub client is only built when a worker needs it.
//! - **Never racing itself.** Two reconciling commands (a `status` and a `gc`) may see the same
//!   dead worker: each takes the exclusive lock `.crew/reconcile.lock` first ([`worker::lock`])
//!   and skips a worker another one is handling, and re-reads the settled record once it holds
//!   the lock. A supervisor holds its own lock while it runs, which counts as alive too.
//! - **A dispatch in progress is not dead.** Between `crew dispatch` writing `.crew/context.json`
//!   and its supervisor running nothing is recorded yet, but the dispatch holds the issue's
//!   dispatch lock until its supervisor has started the agent (and the supervisor holds its own
//!   lock from its first instant): a worker whose issue is locked is left alone, and one with
//!   neither lock held is dead, however young. Locks die with their process, so no timer is
//!   needed to tell a slow dispatch from a killed one.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::cache::ProcessRow;
use crate::context::Ctx;
use crate::error::CrewError;
use crate::github::{LeaseWriteError, RepoSlug};
use crate::observe::Observed;
use crate::protocol::State;
use crate::worker::{
    self, Abandoned, ExitRecord, LeaseFate, LeaseHandle, ProcessIdentity, StopReason,
    SupervisedWorker, SupervisorConfig, SupervisorSpec,
};
use crate::workspace::{self, CREW_DIR, WorkerContext};

/// The grace per signal when stopping an agent whose supervisor spec is unreadable.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);

/// How far before an attempt's start comments are searched for its earlier handover.
const RESUME_LOOKBACK_MINUTES: i64 = 10;

/// The lock file two reconciling commands take before touching a worker.
const LOCK_FILE: &str = "reconcile.lock";

/// Whether a recorded process runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Liveness {
    /// It runs, and is the recorded process (pid and start time match).
    Alive,
    /// It was recorded and is gone (or its pid now belongs to another process).
    Dead,
    /// Nothing was recorded.
    #[default]
    Unknown,
}

/// What reconciling knows about one worker, as plain facts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkerFacts {
    pub supervisor: Liveness,
    /// The agent's process group.
    pub agent: Liveness,
    /// The worktree of this attempt exists on this host.
    pub worktree: bool,
    /// The supervisor recorded the agent's exit in `.crew/worker.json`.
    pub exit_recorded: bool,
    /// An agent-side command finished the attempt (`.crew/finished`, or the recorded exit says so).
    pub finished: bool,
    /// The supervisor stopped the agent because the lease moved to another attempt.
    pub superseded: bool,
    /// `.crew/handover.json` settles this attempt.
    pub settled: bool,
    /// A `crew dispatch` of this issue holds its dispatch lock on this host right now.
    pub dispatching: bool,
}

/// What to do about one worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Its supervisor runs and owns it: nothing.
    Supervised,
    /// A dispatch may still be starting it, or is placing a new attempt on its issue: nothing,
    /// for now (releasing the lease under a dispatch would make it lose its compare-and-swap).
    Starting,
    /// The supervisor is dead and the agent runs: stop the agent's group, then hand over unless
    /// the attempt is finished or settled.
    StopAgent { hand_over: bool },
    /// The supervisor is dead, the agent gone, the attempt neither finished nor handed over.
    HandOver,
    /// Nothing left to do but forget its process row.
    Settled,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Supervised => "supervised",
            Decision::Starting => "starting",
            Decision::StopAgent { hand_over: true } => "stop_agent_and_hand_over",
            Decision::StopAgent { hand_over: false } => "stop_agent",
            Decision::HandOver => "hand_over",
            Decision::Settled => "settled",
        }
    }
}

/// The decision for a worker, from its facts alone.
pub fn decide(facts: &WorkerFacts) -> Decision {
    if facts.supervisor == Liveness::Alive {
        return Decision::Supervised;
    }
    if facts.dispatching {
        return Decision::Starting;
    }
    let done = facts.finished || facts.superseded || facts.settled;
    if facts.agent == Liveness::Alive {
        return Decision::StopAgent {
            hand_over: facts.worktree && !done,
        };
    }
    if !facts.worktree || done {
        return Decision::Settled;
    }
    Decision::HandOver
}

/// One worker of this repository on this host, as [`gather`] found it.
#[derive(Clone, Debug)]
pub struct LocalWorker {
    pub issue: u64,
    pub attempt: u32,
    pub worker: String,
    /// The worktree whose current attempt this is; `None` for a process row alone.
    pub worktree: Option<PathBuf>,
    pub context: Option<WorkerContext>,
    pub supervisor: Option<ProcessIdentity>,
    pub agent: Option<ProcessIdentity>,
    pub exit: Option<ExitRecord>,
    pub spec: Option<SupervisorSpec>,
    /// The agent's log.
    pub log_path: Option<PathBuf>,
    /// When this attempt started on this host (the process row, else `.crew/context.json`).
    pub started_at: Option<DateTime<Utc>>,
    /// The cache has a process row for this worker.
    pub row: bool,
    pub facts: WorkerFacts,
    pub decision: Decision,
}

impl LocalWorker {
    /// Nothing shows that its supervisor ever ran: no supervisor or agent recorded, no exit. A
    /// dispatch died before spawning it (a dispatch of the issue resumes such an attempt).
    pub fn never_started(&self) -> bool {
        self.facts.supervisor == Liveness::Unknown
            && self.facts.agent == Liveness::Unknown
            && !self.facts.exit_recorded
    }
}

/// Finds every worker of `repo` on this host: the linked worktrees of `repo_root` that hold a
/// `.crew/context.json` for `repo`, the worktrees named by process rows, and the rows
/// themselves. Blocking (git, `/proc`, files); no network.
pub fn gather(repo_root: Option<&Path>, repo: &RepoSlug, rows: &[ProcessRow]) -> Vec<LocalWorker> {
    let mut worktrees: Vec<(PathBuf, WorkerContext)> = Vec::new();
    if let Some(root) = repo_root {
        match workspace::worker_worktrees(root) {
            Ok(found) => worktrees.extend(found),
            Err(error) => tracing::warn!(%error, "cannot list the worktrees of {}", root.display()),
        }
    }
    for row in rows {
        if let Some(path) = &row.worktree
            && !worktrees.iter().any(|(known, _)| same_path(known, path))
            && let Ok(Some(context)) = workspace::read_context(path)
        {
            worktrees.push((path.clone(), context));
        }
    }
    let wanted = repo.to_string();
    worktrees.retain(|(_, context)| context.repo.eq_ignore_ascii_case(&wanted));

    let mut workers = Vec::new();
    let mut seen = BTreeSet::new();
    for (path, context) in worktrees {
        if !seen.insert(context.worker.clone()) {
            continue;
        }
        let row = rows.iter().find(|row| row.worker_id == context.worker);
        let dispatching = repo_root.is_some_and(|root| {
            worker::lock::is_locked(&worker::lock::dispatch_lock_path(root, context.issue))
                .unwrap_or(false)
        });
        workers.push(gather_worktree(path, context, row, dispatching));
    }
    for row in rows {
        if seen.contains(&row.worker_id) {
            continue;
        }
        let supervisor = row_identity(row);
        let facts = WorkerFacts {
            supervisor: supervisor_liveness(supervisor),
            ..WorkerFacts::default()
        };
        workers.push(LocalWorker {
            issue: row.issue,
            attempt: row.attempt,
            worker: row.worker_id.clone(),
            worktree: None,
            context: None,
            supervisor,
            agent: None,
            exit: None,
            spec: None,
            log_path: row.log_path.clone(),
            started_at: Some(row.started_at),
            row: true,
            decision: decide(&facts),
            facts,
        });
    }
    workers.sort_by(|a, b| (a.issue, &a.worker).cmp(&(b.issue, &b.worker)));
    workers
}

fn gather_worktree(
    path: PathBuf,
    context: WorkerContext,
    row: Option<&ProcessRow>,
    dispatching: bool,
) -> LocalWorker {
    let crew_dir = path.join(CREW_DIR);
    // This attempt's record only: a reused worktree may hold an earlier attempt's.
    let supervised: Option<SupervisedWorker> = worker::read_supervised(&path)
        .ok()
        .flatten()
        .filter(|record| {
            record.process.worker == context.worker && record.process.attempt == context.attempt
        });
    let supervisor = supervised
        .as_ref()
        .and_then(|record| {
            Some(ProcessIdentity {
                pid: record.process.supervisor_pid?,
                start_time: record.process.supervisor_start_time?,
            })
        })
        .or_else(|| row.and_then(row_identity));
    let agent = supervised.as_ref().map(|record| ProcessIdentity {
        pid: record.process.pid,
        start_time: record.process.start_time,
    });
    // Liveness first, files second: a supervisor that exits in between has written them all.
    // A supervisor holds its lock for as long as it runs, so a held lock is a live supervisor
    // even before (or without) any recorded identity.
    let supervisor_alive = if worker::lock::supervisor_running(&path) {
        Liveness::Alive
    } else {
        supervisor_liveness(supervisor)
    };
    let agent_alive = agent_liveness(agent);
    let supervised = if supervisor_alive == Liveness::Alive {
        supervised
    } else {
        worker::read_supervised(&path)
            .ok()
            .flatten()
            .filter(|record| {
                record.process.worker == context.worker && record.process.attempt == context.attempt
            })
    };
    let exit = supervised.as_ref().and_then(|record| record.exit.clone());
    // A marker counts only once a supervisor ran for this attempt: it deletes a stale one first.
    let marker = (supervised.is_some() || row.is_some())
        && std::fs::read_to_string(crew_dir.join(worker::FINISHED_FILE))
            .is_ok_and(|kind| !kind.trim().is_empty());
    let settled = worker::read_handover(&path)
        .is_some_and(|record| record.settles(&context.worker, context.attempt));
    let context_written = std::fs::metadata(crew_dir.join(workspace::CONTEXT_FILE))
        .and_then(|meta| meta.modified())
        .ok();
    let spec = worker::read_spec(&path).ok().flatten();
    let log_path = spec
        .as_ref()
        .map(|spec| spec.log_path.clone())
        .or_else(|| {
            supervised
                .as_ref()
                .map(|record| record.process.log_path.clone())
        })
        .or_else(|| Some(SupervisorConfig::default_log_path(&path, &context.worker)));
    let facts = WorkerFacts {
        supervisor: supervisor_alive,
        agent: agent_alive,
        worktree: true,
        exit_recorded: exit.is_some(),
        finished: marker || exit.as_ref().is_some_and(|exit| exit.finished.is_some()),
        superseded: exit
            .as_ref()
            .is_some_and(|exit| exit.reason == StopReason::Superseded),
        settled,
        dispatching,
    };
    LocalWorker {
        issue: context.issue,
        attempt: context.attempt,
        worker: context.worker.clone(),
        worktree: Some(path),
        started_at: row
            .map(|row| row.started_at)
            .or_else(|| context_written.map(DateTime::<Utc>::from)),
        context: Some(context),
        supervisor,
        agent,
        exit,
        spec,
        log_path,
        row: row.is_some(),
        decision: decide(&facts),
        facts,
    }
}

/// The supervisor identity a process row records, when it records a whole one.
fn row_identity(row: &ProcessRow) -> Option<ProcessIdentity> {
    Some(ProcessIdentity {
        pid: row.pid?,
        start_time: row.start_time?,
    })
}

/// Whether the recorded supervisor runs: pid and start time must both match.
pub fn supervisor_liveness(identity: Option<ProcessIdentity>) -> Liveness {
    match identity {
        None => Liveness::Unknown,
        Some(identity) if identity.pid > 1 && worker::is_alive(&identity) => Liveness::Alive,
        Some(_) => Liveness::Dead,
    }
}

/// Whether the recorded agent's process group runs: its leader is the recorded process, or the
/// leader is gone (no process at all has its pid) and members of its group are left. A pid held
/// by another process means the group is not ours to judge: dead.
pub fn agent_liveness(identity: Option<ProcessIdentity>) -> Liveness {
    match identity {
        None => Liveness::Unknown,
        Some(identity) if identity.pid <= 1 => Liveness::Dead,
        Some(identity) if worker::is_alive(&identity) => Liveness::Alive,
        Some(identity)
            if ProcessIdentity::of(identity.pid).is_none() && worker::group_alive(identity.pid) =>
        {
            Liveness::Alive
        }
        Some(_) => Liveness::Dead,
    }
}

/// What reconciling did (or, in a dry run, would do) about one worker; also the `--json` view.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ReconciledWorker {
    pub issue: u64,
    pub attempt: u32,
    pub worker: String,
    pub worktree: Option<String>,
    /// `supervised`, `starting`, `stop_agent`, `stop_agent_and_hand_over`, `hand_over`, `settled`.
    pub decision: &'static str,
    /// False in a dry run: the decision is only reported.
    pub applied: bool,
    pub agent_stopped: bool,
    /// The WIP commit made of uncommitted work.
    pub salvage_commit: Option<String>,
    pub pushed: Option<bool>,
    pub handover_comment: Option<u64>,
    /// `released`, `already_released` or `superseded`.
    pub lease: Option<LeaseFate>,
    pub forgot_row: bool,
    /// Why the decision could not be carried out (it is tried again next time).
    pub error: Option<String>,
}

impl ReconciledWorker {
    fn of(worker: &LocalWorker) -> ReconciledWorker {
        ReconciledWorker {
            issue: worker.issue,
            attempt: worker.attempt,
            worker: worker.worker.clone(),
            worktree: worker
                .worktree
                .as_ref()
                .map(|path| path.to_string_lossy().into_owned()),
            decision: worker.decision.as_str(),
            ..ReconciledWorker::default()
        }
    }

    /// Whether anything was (or would be) done, or failed.
    pub fn acted(&self) -> bool {
        self.describe().is_some()
    }

    /// One human line, or `None` when there is nothing to say.
    pub fn describe(&self) -> Option<String> {
        let who = format!("#{} {} (attempt {})", self.issue, self.worker, self.attempt);
        if let Some(error) = &self.error {
            return Some(format!(
                "{who}: {}: {error}",
                self.decision.replace('_', " ")
            ));
        }
        if !self.applied {
            return match self.decision {
                "supervised" | "starting" => None,
                "settled" if !self.forgot_row => None,
                "settled" => Some(format!("{who}: would forget its process row")),
                "stop_agent" => Some(format!(
                    "{who}: its supervisor is dead; would stop the agent"
                )),
                "stop_agent_and_hand_over" => Some(format!(
                    "{who}: its supervisor is dead; would stop the agent, save its work and hand over"
                )),
                _ => Some(format!(
                    "{who}: its supervisor is dead; would save its work and hand over"
                )),
            };
        }
        let mut done = Vec::new();
        if self.agent_stopped {
            done.push("stopped the agent".to_owned());
        }
        if let Some(commit) = &self.salvage_commit {
            let short = &commit[..commit.len().min(12)];
            done.push(match self.pushed {
                Some(true) => format!("saved its work as {short} and pushed it"),
                _ => format!("saved its work as {short} (not pushed)"),
            });
        }
        if let Some(comment) = self.handover_comment {
            done.push(format!("handed over (comment {comment})"));
        }
        match self.lease {
            Some(LeaseFate::Released) => done.push("released the lease".to_owned()),
            Some(LeaseFate::Superseded) => {
                done.push("left it alone: another attempt holds the lease".to_owned());
            }
            Some(LeaseFate::AlreadyReleased) | None => {}
        }
        if done.is_empty() {
            if self.forgot_row && self.decision == "settled" {
                return Some(format!("{who}: forgot its process row"));
            }
            return None;
        }
        Some(format!(
            "{who}: its supervisor was dead; {}",
            done.join(", ")
        ))
    }
}

/// What [`reconcile_local`] did, worker by worker.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ReconcileReport {
    pub workers: Vec<ReconciledWorker>,
}

impl ReconcileReport {
    /// Workers something was done about (or failed for).
    pub fn acted(&self) -> impl Iterator<Item = &ReconciledWorker> {
        self.workers.iter().filter(|worker| worker.acted())
    }
}

/// Prints what `report` did (errors as warnings), through `printer`, on stderr.
pub fn print_report(printer: &crate::printer::Printer, report: &ReconcileReport) {
    for worker in &report.workers {
        if let Some(line) = worker.describe() {
            if worker.error.is_some() {
                printer.warn(line);
            } else {
                printer.status(line);
            }
        }
    }
}

/// Finds this repository's workers on this host and finishes what dead supervisors left undone.
/// One worker's failure is recorded in its entry (and tried again next time), never fatal to
/// the others; only failing to look at all is an error.
pub async fn reconcile_local(ctx: &Ctx) -> Result<ReconcileReport, CrewError> {
    let workers = plan_local(ctx).await?;
    Ok(apply(ctx, workers).await)
}

/// [`gather`] for `ctx`'s repository: the decisions, nothing done.
pub async fn plan_local(ctx: &Ctx) -> Result<Vec<LocalWorker>, CrewError> {
    let repo = ctx.settings.require_repo()?.clone();
    let rows = match ctx.cache().await {
        Ok(cache) => cache.processes().await.unwrap_or_else(|error| {
            tracing::warn!(%error, "cannot read the process table; using the worktrees alone");
            Vec::new()
        }),
        Err(error) => {
            tracing::warn!(%error, "cannot open the cache; using the worktrees alone");
            Vec::new()
        }
    };
    let repo_root = ctx.settings.repo_root.clone();
    tokio::task::spawn_blocking(move || gather(repo_root.as_deref(), &repo, &rows))
        .await
        .map_err(CrewError::internal)
}

/// The report of a dry run: every decision, nothing done.
pub fn dry_run(workers: &[LocalWorker]) -> ReconcileReport {
    ReconcileReport {
        workers: workers
            .iter()
            .map(|worker| ReconciledWorker {
                forgot_row: worker.row
                    && worker.decision != Decision::Supervised
                    && worker.decision != Decision::Starting,
                ..ReconciledWorker::of(worker)
            })
            .collect(),
    }
}

/// Carries out the decisions.
pub async fn apply(ctx: &Ctx, workers: Vec<LocalWorker>) -> ReconcileReport {
    let mut report = ReconcileReport::default();
    for local in workers {
        let mut entry = ReconciledWorker {
            applied: true,
            ..ReconciledWorker::of(&local)
        };
        if let Err(error) = apply_one(ctx, &local, &mut entry).await {
            entry.error = Some(error.to_string());
        }
        report.workers.push(entry);
    }
    report
}

async fn apply_one(
    ctx: &Ctx,
    local: &LocalWorker,
    entry: &mut ReconciledWorker,
) -> Result<(), CrewError> {
    let wants_hand_over = match local.decision {
        Decision::Supervised | Decision::Starting => return Ok(()),
        Decision::Settled => {
            entry.forgot_row = forget_row(ctx, local).await;
            return Ok(());
        }
        Decision::StopAgent { hand_over } => hand_over,
        Decision::HandOver => true,
    };
    let _lock = match &local.worktree {
        Some(path) => match lock_worker(path)? {
            Some(lock) => Some(lock),
            // Another crew command is handling it right now: left to that one.
            None => return Ok(()),
        },
        None => None,
    };
    if let Some(agent) = local.agent
        && matches!(local.decision, Decision::StopAgent { .. })
        // Checked again right before signalling: never a process that is not the agent's.
        && agent_liveness(Some(agent)) == Liveness::Alive
    {
        let grace = local
            .spec
            .as_ref()
            .map_or(DEFAULT_GRACE, SupervisorSpec::grace);
        worker::stop_group(agent.pid, grace).await;
        entry.agent_stopped = true;
    }
    let Some(worktree) = local.worktree.clone().filter(|_| wants_hand_over) else {
        entry.forgot_row = forget_row(ctx, local).await;
        return Ok(());
    };
    // Another command may have settled it while we waited for the lock or stopped the agent.
    if worker::read_handover(&worktree)
        .is_some_and(|record| record.settles(&local.worker, local.attempt))
    {
        entry.forgot_row = forget_row(ctx, local).await;
        return Ok(());
    }
    let handed = hand_over(ctx, local, worktree, entry.agent_stopped).await?;
    entry.salvage_commit = handed
        .salvage
        .as_ref()
        .map(|salvage| salvage.commit_sha.clone());
    entry.pushed = handed.salvage.as_ref().map(|salvage| salvage.pushed);
    entry.handover_comment = handed.record.comment_id;
    entry.lease = Some(handed.record.lease);
    entry.forgot_row = forget_row(ctx, local).await;
    Ok(())
}

/// [`worker::hand_over_abandoned`] for a worker whose supervisor is gone.
async fn hand_over(
    ctx: &Ctx,
    local: &LocalWorker,
    worktree: PathBuf,
    agent_stopped: bool,
) -> Result<worker::HandedOver, CrewError> {
    let settings = &ctx.settings;
    let repo = settings.require_repo()?.clone();
    let github = ctx.github().await?;
    let secrets: Vec<String> = settings
        .token()
        .map(|token| token.secret.expose().to_owned())
        .into_iter()
        .filter(|secret| !secret.is_empty())
        .collect();
    let push = match &local.spec {
        Some(spec) => spec.invocation.push,
        None => local
            .context
            .as_ref()
            .and_then(|context| {
                crate::agents::Profile::resolve(&settings.config, &context.profile).ok()
            })
            .is_none_or(|profile| profile.push),
    };
    let why = why(local, agent_stopped);
    let since = local
        .started_at
        .into_iter()
        .chain(local.exit.as_ref().map(|exit| exit.at))
        .min()
        .unwrap_or_else(Utc::now)
        - chrono::TimeDelta::minutes(RESUME_LOOKBACK_MINUTES);
    let log_path = local
        .log_path
        .clone()
        .unwrap_or_else(|| SupervisorConfig::default_log_path(&worktree, &local.worker));
    Ok(worker::hand_over_abandoned(
        github,
        &repo,
        Abandoned {
            worktree,
            issue: local.issue,
            attempt: local.attempt,
            worker: local.worker.clone(),
            why,
            log_path,
            secrets,
            push,
            lease: LeaseHandle::Reclaim {
                prefix: settings.config.lease_ref_prefix.clone(),
            },
            resume_since: Some(since),
        },
    )
    .await?)
}

/// The reason written into the WIP commit and the handover comment.
fn why(local: &LocalWorker, agent_stopped: bool) -> String {
    match (&local.exit, agent_stopped, local.facts.supervisor) {
        (_, true, _) => {
            "its supervisor died while the agent ran, and crew stopped the agent".to_owned()
        }
        (Some(exit), _, _) => {
            let how = match (exit.code, exit.signal) {
                (Some(code), _) => format!(" with exit code {code}"),
                (_, Some(signal)) => format!(" on signal {signal}"),
                _ => String::new(),
            };
            format!(
                "the agent exited{how} without `crew done`, `crew handover` or `crew fail`, \
                 and its supervisor died before handing over"
            )
        }
        (None, false, Liveness::Unknown) => "its supervisor never started".to_owned(),
        (None, false, _) => "its supervisor died".to_owned(),
    }
}

/// Forgets the worker's process row, if it has one; true when a row was forgotten. A failure
/// is only logged: the row is a hint, and the next reconcile tries again.
async fn forget_row(ctx: &Ctx, local: &LocalWorker) -> bool {
    if !local.row {
        return false;
    }
    match ctx.cache().await {
        Ok(cache) => match cache.forget_process(&local.worker).await {
            Ok(forgotten) => forgotten,
            Err(error) => {
                tracing::warn!(%error, worker = local.worker, "cannot forget the process row");
                false
            }
        },
        Err(error) => {
            tracing::warn!(%error, "cannot open the cache to forget a process row");
            false
        }
    }
}

/// The exclusive lock on `.crew/reconcile.lock` ([`worker::lock`]); `None` when another process
/// holds it. Released when dropped, or when this process dies.
pub fn lock_worker(worktree: &Path) -> Result<Option<worker::lock::HeldLock>, CrewError> {
    worker::lock::try_lock(&worktree.join(CREW_DIR).join(LOCK_FILE)).map_err(CrewError::internal)
}

/// Sends SIGTERM, then SIGKILL after `grace`, to the process `identity` (only while it is still
/// that process), and waits until it is gone. True when it was running.
pub async fn stop_process(identity: ProcessIdentity, grace: Duration) -> bool {
    if !worker::is_alive(&identity) {
        return false;
    }
    for signal in [worker::Signal::Terminate, worker::Signal::Kill] {
        match worker::signal_process(&identity, signal) {
            Ok(false) => return true,
            Ok(true) => {}
            Err(error) => tracing::warn!(%error, pid = identity.pid, "cannot signal"),
        }
        let deadline = tokio::time::Instant::now() + grace;
        while worker::is_alive(&identity) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if !worker::is_alive(&identity) {
            return true;
        }
    }
    true
}

fn same_path(a: &Path, b: &Path) -> bool {
    let canonical = |path: &Path| path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    canonical(a) == canonical(b)
}

// ---------------------------------------------------------------------------------------------
// Leases of this host that no worker here holds

/// A lease this host held for a worker that never started.
#[derive(Debug, Serialize)]
pub struct LeaseLine {
    pub issue: u64,
    pub worker: String,
    pub attempt: u32,
    /// `released`, `would_release`, `superseded` (someone else holds it now) or `failed`.
    pub action: &'static str,
    /// The handover posted because the attempt's `assigned` comment was already out.
    pub handover_comment: Option<u64>,
    /// The issue's events show the attempt over (the lease outlived a killed command).
    pub ended: bool,
    pub reason: String,
}

/// Live leases of this host's *local* workers that nothing here will ever renew or release:
///
/// - leases no worker here holds, no dispatch is placing and no worktree records: dispatches
///   killed after taking the lease (and perhaps posting the `assigned` comment) but before
///   their worktree existed — released after a handover when the comment was out;
/// - leases of a settled worker (no supervisor, no agent, no dispatch) whose attempt the issue's
///   events show ended (`in_review`, `handover`, `cancelled`, …): a command killed between its
///   event and its release (`crew cancel`, `crew done`) — released, with nothing posted.
///
/// So no issue stays claimed by nobody until the lease expires. A settled worker whose attempt
/// has *not* ended keeps its lease (a `crew cancel` killed before its comment: releasing it
/// would let the next cycle start a new attempt on an issue being cancelled; running the cancel
/// again finishes it). Actions workers are skipped: they never have a local trace. `crew gc`
/// and every fill cycle call this; with `dry_run` it only reports.
pub async fn abandoned_leases(
    ctx: &Ctx,
    observed: &Observed,
    workers: &[LocalWorker],
    dry_run: bool,
) -> Vec<LeaseLine> {
    let mut leases = Vec::new();
    for (lease, ended) in abandoned(ctx, observed, workers) {
        leases.push(abandoned_lease(ctx, observed, lease, ended, dry_run).await);
    }
    leases
}

/// [`abandoned_leases`] of attempts that have ended only, released: what a fill cycle settles
/// itself (the others, dispatches that died, it resumes as the same attempt).
pub async fn release_ended_leases(
    ctx: &Ctx,
    observed: &Observed,
    workers: &[LocalWorker],
) -> Vec<LeaseLine> {
    let mut leases = Vec::new();
    for (lease, ended) in abandoned(ctx, observed, workers) {
        if ended {
            leases.push(abandoned_lease(ctx, observed, lease, ended, false).await);
        }
    }
    leases
}

/// The leases [`abandoned_leases`] describes, each with whether its attempt has ended.
fn abandoned<'a>(
    ctx: &Ctx,
    observed: &'a Observed,
    workers: &[LocalWorker],
) -> Vec<(&'a crate::protocol::lease::Lease, bool)> {
    let mut found = Vec::new();
    for observed_lease in &observed.leases {
        let Ok(lease) = &observed_lease.lease else {
            continue;
        };
        let ours_and_live = lease.host == ctx.settings.host
            && lease.runtime == "local"
            && lease.status(observed.now) == crate::protocol::lease::LeaseStatus::Live;
        let local = workers.iter().find(|local| local.worker == lease.worker);
        let ended = local.is_some_and(|local| {
            local.decision == Decision::Settled && attempt_ended(observed, lease)
        });
        if !ours_and_live || (local.is_some() && !ended) || dispatching(ctx, lease.issue) {
            continue;
        }
        found.push((lease, ended));
    }
    found
}

/// Whether the issue's events show `lease`'s attempt over: a later attempt announced, or this
/// one in a state no running worker is in.
fn attempt_ended(observed: &Observed, lease: &crate::protocol::lease::Lease) -> bool {
    observed.issue(lease.issue).is_some_and(|issue| {
        let attempt = issue.state.attempt.unwrap_or(0);
        attempt > u64::from(lease.attempt)
            || (attempt == u64::from(lease.attempt)
                && !matches!(
                    issue.state.state,
                    State::Unassigned | State::Assigned | State::Working
                ))
    })
}

/// Whether a `crew dispatch` of `issue` runs on this clone right now (it holds the dispatch lock).
fn dispatching(ctx: &Ctx, issue: u64) -> bool {
    ctx.settings.repo_root.as_deref().is_some_and(|root| {
        worker::lock::is_locked(&worker::lock::dispatch_lock_path(root, issue)).unwrap_or(true)
    })
}

/// Releases `lease`, held by this host for a worker with no worktree, process or dispatch here;
/// posts a handover first when the issue's events show that worker's `assigned` comment (so the
/// comment is not left without a worker). The handover's op is the salvage op of the attempt, so
/// a gc that is itself interrupted finds it on its next run.
async fn abandoned_lease(
    ctx: &Ctx,
    observed: &Observed,
    lease: &crate::protocol::lease::Lease,
    ended: bool,
    dry_run: bool,
) -> LeaseLine {
    let announced = !ended
        && observed.issue(lease.issue).is_some_and(|issue| {
            issue.state.worker.as_deref() == Some(lease.worker.as_str())
                && issue.state.attempt == Some(u64::from(lease.attempt))
                && issue.state.state == State::Assigned
        });
    let mut line = LeaseLine {
        issue: lease.issue,
        worker: lease.worker.clone(),
        attempt: lease.attempt,
        action: "would_release",
        handover_comment: None,
        ended,
        reason: if ended {
            "held by this host for an attempt that has ended, and nothing here runs it"
        } else {
            "held by this host, but no worktree, process or dispatch of its worker is here"
        }
        .to_owned(),
    };
    if dry_run {
        return line;
    }
    match release_abandoned(ctx, observed, lease, announced).await {
        Ok((action, comment)) => {
            line.action = action;
            line.handover_comment = comment;
        }
        Err(error) => {
            line.action = "failed";
            line.reason = error.to_string();
        }
    }
    line
}

async fn release_abandoned(
    ctx: &Ctx,
    observed: &Observed,
    lease: &crate::protocol::lease::Lease,
    announced: bool,
) -> Result<(&'static str, Option<u64>), CrewError> {
    let github = ctx.github().await?;
    let held = match github
        .reclaim_lease(
            &observed.repo,
            &ctx.settings.config.lease_ref_prefix,
            lease.issue,
            &lease.worker,
            lease.attempt,
        )
        .await
    {
        Ok(held) => held,
        Err(LeaseWriteError::Superseded { .. }) => return Ok(("superseded", None)),
        Err(error) => return Err(error.into()),
    };
    let mut comment = None;
    if announced {
        let event = crate::protocol::Event {
            issue: lease.issue,
            attempt: u64::from(lease.attempt),
            worker: lease.worker.clone(),
            op: worker::supervisor::salvage_op(&lease.worker, lease.attempt),
            at: lease.acquired_at,
            body: crate::protocol::EventBody::Handover(crate::protocol::Handover {
                summary: "crew gc: the dispatch of this attempt was interrupted before its agent                           started; nothing was done."
                    .to_owned(),
                next_steps: vec!["Dispatch the next attempt.".to_owned()],
                files: Vec::new(),
                base_sha: None,
                head_sha: None,
            }),
        };
        let prompts = crate::prompt::Prompts::load(ctx.settings.repo_root.as_deref())?;
        let body =
            prompts.comment_body(&event, &crate::prompt::CommentContext::from_event(&event))?;
        let posted = github
            .post_event(
                &observed.repo,
                lease.issue,
                &event,
                &body,
                crate::github::PostMode::Resume,
            )
            .await?;
        comment = Some(posted.comment_id);
    }
    match github
        .release_lease(&observed.repo, &held, chrono::Utc::now())
        .await
    {
        Ok(_) => Ok(("released", comment)),
        Err(LeaseWriteError::Superseded { .. }) => Ok(("superseded", comment)),
        Err(error) => Err(error.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> WorkerFacts {
        WorkerFacts {
            supervisor: Liveness::Dead,
            agent: Liveness::Dead,
            worktree: true,
            ..WorkerFacts::default()
        }
    }

    #[test]
    fn a_live_supervisor_owns_its_worker_whatever_else_is_true() {
        for agent in [Liveness::Alive, Liveness::Dead, Liveness::Unknown] {
            for exit_recorded in [false, true] {
                let facts = WorkerFacts {
                    supervisor: Liveness::Alive,
                    agent,
                    exit_recorded,
                    ..facts()
                };
                assert_eq!(decide(&facts), Decision::Supervised);
            }
        }
    }

    #[test]
    fn a_dead_supervisor_with_a_running_agent_stops_it_then_hands_over() {
        let running = WorkerFacts {
            agent: Liveness::Alive,
            ..facts()
        };
        assert_eq!(decide(&running), Decision::StopAgent { hand_over: true });
        // The agent already ran `crew done`: stop it, but there is nothing to hand over.
        let finished = WorkerFacts {
            finished: true,
            ..running
        };
        assert_eq!(decide(&finished), Decision::StopAgent { hand_over: false });
        let settled = WorkerFacts {
            settled: true,
            ..running
        };
        assert_eq!(decide(&settled), Decision::StopAgent { hand_over: false });
        // No worktree left to save: only stop it.
        let gone = WorkerFacts {
            worktree: false,
            ..running
        };
        assert_eq!(decide(&gone), Decision::StopAgent { hand_over: false });
    }

    #[test]
    fn a_dead_worker_is_handed_over_once() {
        // Died before recording the exit.
        assert_eq!(decide(&facts()), Decision::HandOver);
        // Recorded the exit, died before handing over.
        let exited = WorkerFacts {
            exit_recorded: true,
            ..facts()
        };
        assert_eq!(decide(&exited), Decision::HandOver);
        // Handed over (by the supervisor or an earlier reconcile): nothing more.
        let settled = WorkerFacts {
            settled: true,
            ..exited
        };
        assert_eq!(decide(&settled), Decision::Settled);
    }

    #[test]
    fn finished_and_superseded_attempts_are_not_handed_over() {
        for facts in [
            WorkerFacts {
                finished: true,
                exit_recorded: true,
                ..facts()
            },
            WorkerFacts {
                finished: true,
                ..facts()
            },
            WorkerFacts {
                superseded: true,
                exit_recorded: true,
                ..facts()
            },
        ] {
            assert_eq!(decide(&facts), Decision::Settled, "{facts:?}");
        }
    }

    #[test]
    fn a_row_without_a_worktree_is_only_forgotten() {
        let row_only = WorkerFacts {
            supervisor: Liveness::Dead,
            agent: Liveness::Unknown,
            worktree: false,
            ..WorkerFacts::default()
        };
        assert_eq!(decide(&row_only), Decision::Settled);
    }

    #[test]
    fn a_dispatch_in_progress_is_left_alone_and_a_dead_one_is_handed_over() {
        let nothing = WorkerFacts {
            supervisor: Liveness::Unknown,
            agent: Liveness::Unknown,
            worktree: true,
            ..WorkerFacts::default()
        };
        // Nothing recorded and no dispatch holding the issue: it died before its supervisor ran.
        assert_eq!(decide(&nothing), Decision::HandOver);
        // A dispatch of the issue is placing a worker: whatever it finds, it is left alone.
        for facts in [
            nothing,
            facts(),
            WorkerFacts {
                agent: Liveness::Alive,
                ..facts()
            },
        ] {
            assert_eq!(
                decide(&WorkerFacts {
                    dispatching: true,
                    ..facts
                }),
                Decision::Starting
            );
        }
        // A supervisor was recorded and is dead: dead.
        assert_eq!(
            decide(&WorkerFacts {
                supervisor: Liveness::Dead,
                ..nothing
            }),
            Decision::HandOver
        );
    }

    #[test]
    fn liveness_needs_the_pid_and_the_start_time() {
        let me = ProcessIdentity::current().expect("this process");
        assert_eq!(supervisor_liveness(Some(me)), Liveness::Alive);
        let reused = ProcessIdentity {
            start_time: me.start_time + 1,
            ..me
        };
        // Same pid, another start time: another process, never ours.
        assert_eq!(supervisor_liveness(Some(reused)), Liveness::Dead);
        assert_eq!(agent_liveness(Some(reused)), Liveness::Dead);
        assert_eq!(supervisor_liveness(None), Liveness::Unknown);
        for pid in [0, 1] {
            let special = ProcessIdentity { pid, start_time: 0 };
            assert_eq!(agent_liveness(Some(special)), Liveness::Dead);
            assert_eq!(supervisor_liveness(Some(special)), Liveness::Dead);
        }
    }

    #[tokio::test]
    async fn stopping_a_process_with_another_start_time_signals_nothing() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep");
        let identity = ProcessIdentity::of(child.id()).expect("running");
        let impostor = ProcessIdentity {
            start_time: identity.start_time + 1,
            ..identity
        };
        assert!(!stop_process(impostor, Duration::from_millis(100)).await);
        assert!(
            worker::is_alive(&identity),
            "an unrelated process was signalled"
        );
        assert!(stop_process(identity, Duration::from_secs(2)).await);
        let _ = child.wait();
        assert!(!worker::is_alive(&identity));
    }

    #[test]
    fn a_second_lock_on_a_worker_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = lock_worker(dir.path()).expect("lock").expect("free");
        assert!(lock_worker(dir.path()).expect("lock").is_none());
        drop(first);
        assert!(lock_worker(dir.path()).expect("lock").is_some());
    }
}
