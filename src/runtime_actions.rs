//! Runtime `actions` (DESIGN.md 3): a worker runs as a job of the `crew-worker.yml` workflow on a
//! GitHub Actions runner instead of under a supervisor on this machine.
//!
//! Two halves:
//! - [`start`], behind `crew dispatch --runtime actions`: once `crew dispatch` has placed the
//!   issue exactly as for a local worker (refusals, the lease with runtime `actions`, the
//!   `assigned` comment, the board and labels), `workflow_dispatch` of [`WORKER_WORKFLOW`] on the
//!   base branch with the inputs `issue`, `attempt`, `profile` and `agent`. Nothing runs and no
//!   worktree is made on this machine.
//! - [`run_worker`], behind `crew run-worker --issue N --attempt K`, in that workflow's job: it
//!   fences on the lease, prepares the worktree, context and prompt exactly as a local dispatch
//!   does, and runs the agent under [`worker::run`] in the foreground. The job is the supervisor.
//!
//! Decisions, and why:
//! - **The runner's checkout is the clone, not the worktree.** `run-worker` makes the issue's
//!   worktree beside the checkout with [`workspace::prepare_worktree`], as on a laptop, so the
//!   branch (an earlier attempt's, local or on origin), the `.crew/` files and the salvage all
//!   behave the same on both runtimes and the checkout itself stays clean. The workflow checks
//!   out with `fetch-depth: 0` and persisted credentials, which the worktree shares for pushes.
//! - **The lease names the worker.** The workflow only carries the attempt; `run-worker` reads
//!   the issue's lease, and runs only when it still holds attempt K (`reclaim_lease` for the
//!   worker it names). Anything else — a newer attempt, a released lease, a cancelled issue — is
//!   exit 4 having written nothing. It then renews the lease at once: a job can wait in the
//!   runner queue for a long time, and the renewal, a compare-and-swap, is also the moment a
//!   takeover by a newer attempt would be noticed.
//! - **A dispatch never sends the workflow twice.** A `workflow_dispatch` cannot be looked up
//!   afterwards, so before sending it the dispatch writes `crew/dispatched-<issue>.json` in the
//!   clone's git directory (next to the dispatch lock) naming the worker. A re-run that finds its
//!   own live lease (an interrupted dispatch) finishes the comment, board and workflow only when
//!   that record does not name the lease's worker; when it does, the worker is placed (or its
//!   request was lost with the process, in which case the lease simply expires after its TTL and
//!   the next `crew fill` starts a new attempt): exit 4, as for a local worker that runs.
//!   This relies on host names being unique per machine (DESIGN.md 4), which is why the fill
//!   workflow leaves `CREW_HOST` to the runner's hostname.
//! - **Exit code is the outcome**: 0 when the agent finished the attempt itself (`done`,
//!   `handover`); 1 when it reported `fail`, was cancelled, or exited without finishing (its
//!   work is then salvaged and handed over by [`worker::run`], as locally); 4 when the lease was
//!   lost before or while it ran. So a red job in the Actions tab is a worker that needs a look.
//! - **No replacement from the runner.** After a handover the next attempt is `crew fill`'s to
//!   dispatch (the scheduled `crew-fill.yml`), not the finishing job's.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::agents::{self, Profile};
use crate::commands::brief::{self};
use crate::commands::dispatch::{
    DispatchTimings, DispatchView, Placed, PreparedWorker, WorkerPlan, millis, prepare_worker,
    probe_program,
};
use crate::context::Ctx;
use crate::error::CrewError;
use crate::github::{GitHub, GitHubConfig, LeaseWriteError, PostMode};
use crate::prompt::Prompts;
use crate::protocol::lease::LeaseState;
use crate::settings::Env;
use crate::worker::{self, SupervisorConfig, SupervisorSpec, lock};
use crate::workspace::{self, CheckoutMode};

/// The worker workflow's file name: what `crew dispatch --runtime actions` starts and
/// `crew init --actions` writes to `.github/workflows/`.
pub const WORKER_WORKFLOW: &str = "crew-worker.yml";
/// The scheduled workflow that runs `crew fill`.
pub const FILL_WORKFLOW: &str = "crew-fill.yml";
/// The worker workflow as shipped.
pub const WORKER_WORKFLOW_TEXT: &str = include_str!("../templates/workflows/crew-worker.yml");
/// The fill workflow as shipped.
pub const FILL_WORKFLOW_TEXT: &str = include_str!("../templates/workflows/crew-fill.yml");

/// The lease's `runtime` for workers on Actions.
const RUNTIME: &str = "actions";

/// How long the agent is given after each signal when the job is cancelled (Actions sends
/// SIGINT, then SIGTERM 7.5 s later, then kills the job).
const GRACE_MILLIS: u64 = 3_000;

// ---------------------------------------------------------------------------------------------
// crew dispatch --runtime actions
// ---------------------------------------------------------------------------------------------

/// `crew/dispatched-<issue>.json` in the clone's git directory: the worker whose workflow this
/// clone asked GitHub to run (written before the request is sent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct DispatchRecord {
    worker: String,
    attempt: u32,
    workflow: String,
    at: chrono::DateTime<chrono::Utc>,
}

fn record_path(repo_root: &Path, issue: u64) -> PathBuf {
    lock::dispatch_lock_path(repo_root, issue).with_file_name(format!("dispatched-{issue}.json"))
}

fn read_record(path: &Path) -> Option<DispatchRecord> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn write_record(path: &Path, record: &DispatchRecord) -> Result<(), CrewError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(CrewError::internal)?;
    let mut text = serde_json::to_vec_pretty(record).map_err(CrewError::internal)?;
    text.push(b'\n');
    let temp = dir.join(format!(".dispatched.tmp.{}", std::process::id()));
    std::fs::write(&temp, &text).map_err(CrewError::internal)?;
    std::fs::rename(&temp, path).map_err(CrewError::internal)
}

/// The line an `assigned` comment of an actions worker ends with: where the worker really runs.
pub(crate) fn assignment_note(base: &str) -> String {
    format!("\nRuntime: GitHub Actions (workflow `{WORKER_WORKFLOW}` on `{base}`).\n")
}

/// Whether this clone has requested the workflow of `worker`'s `attempt` at `issue` (its record
/// names them): such a worker is placed, and a re-run must not request it again.
pub(crate) fn workflow_requested(repo_root: &Path, issue: u64, worker: &str, attempt: u32) -> bool {
    read_record(&record_path(repo_root, issue))
        .is_some_and(|record| record.worker == worker && record.attempt == attempt)
}

/// The actions runtime's steps once the issue is placed ([`crate::commands::dispatch`] did the
/// refusals, the lease, the comment and the board): record the request, then
/// `workflow_dispatch` the worker workflow on the base branch.
pub(crate) async fn start(ctx: &Ctx, placed: Placed) -> Result<DispatchView, CrewError> {
    let number = placed.number;
    let worker_id = placed.held.lease.worker.clone();
    let attempt = placed.held.lease.attempt;
    let base = placed.base.clone();
    let github = GitHub::new(GitHubConfig::from_settings(&ctx.settings), None)?;

    // 4. The workflow: recorded first, so no re-run ever sends it a second time.
    write_record(
        &record_path(&placed.repo_root, number),
        &DispatchRecord {
            worker: worker_id.clone(),
            attempt,
            workflow: WORKER_WORKFLOW.to_owned(),
            at: ctx.clock.now(),
        },
    )?;
    let inputs = BTreeMap::from([
        ("issue".to_owned(), number.to_string()),
        ("attempt".to_owned(), attempt.to_string()),
        ("profile".to_owned(), placed.profile_name.clone()),
        ("agent".to_owned(), placed.agent.clone()),
    ]);
    github
        .dispatch_workflow(&placed.repo, WORKER_WORKFLOW, &base, &inputs)
        .await
        .map_err(|error| {
            CrewError::from(error).with_hint(format!(
                "is .github/workflows/{WORKER_WORKFLOW} on `{base}`? `crew init --actions` writes it; \
                 the lease expires after workers.lease_ttl and the next `crew fill` retries"
            ))
        })?;

    Ok(DispatchView {
        issue: number,
        attempt,
        worker: worker_id,
        agent: placed.agent,
        profile: placed.profile_name,
        runtime: RUNTIME,
        branch: placed.branch,
        worktree: String::new(),
        comment_id: placed.posted.comment_id,
        pid: 0,
        agent_pid: 0,
        resumed: placed.post_mode == PostMode::Resume,
        timings: DispatchTimings {
            total_ms: millis(placed.started.elapsed()),
            git_ms: 0,
        },
    })
}

// ---------------------------------------------------------------------------------------------
// crew run-worker
// ---------------------------------------------------------------------------------------------

/// What `crew run-worker` is asked to run.
#[derive(Debug, Clone)]
pub struct RunWorkerRequest {
    pub issue: u64,
    pub attempt: u32,
    /// `None`: `workers.agent`.
    pub agent: Option<String>,
    /// `None`: `workers.profile`.
    pub profile: Option<String>,
}

/// How a worker's run on this runner ended, as `--json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct RunWorkerView {
    pub issue: u64,
    pub attempt: u32,
    pub worker: String,
    pub agent: String,
    pub profile: String,
    pub branch: Option<String>,
    pub worktree: String,
    pub agent_pid: u32,
    /// `finished` (the agent ran `done`/`handover`/`fail`), `salvaged` (it exited without
    /// finishing: its work was handed over), `superseded`, `cancelled`.
    pub outcome: RunOutcome,
    /// The kind the agent-side command recorded (`in_review`, `handover`, `failed`, ...).
    pub finished: Option<String>,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    /// The `handover` comment posted for an abnormal exit.
    pub handover_comment: Option<u64>,
    pub renewals: u32,
}

/// See [`RunWorkerView::outcome`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    Finished,
    Salvaged,
    Superseded,
    Cancelled,
}

impl RunWorkerView {
    /// Whether the attempt ended as the agent meant it to, short of failing.
    pub fn succeeded(&self) -> bool {
        self.outcome == RunOutcome::Finished
            && !matches!(self.finished.as_deref(), Some("failed" | "fail"))
    }
}

/// `crew run-worker`: see the module docs. Returns once the agent has stopped and its exit has
/// been dealt with; an `Err` only when the worker could not be run at all.
pub async fn run_worker(ctx: &Ctx, request: &RunWorkerRequest) -> Result<RunWorkerView, CrewError> {
    let cancel = termination();
    let settings = &ctx.settings;
    let config = &settings.config;
    let number = request.issue;
    let repo = settings.require_repo()?.clone();
    let Some(repo_root) = settings.repo_root.clone() else {
        return Err(
            CrewError::user("crew run-worker runs inside a checkout of the repository").with_hint(
                "the crew-worker.yml workflow checks it out with actions/checkout first",
            ),
        );
    };
    let agent = request
        .agent
        .clone()
        .unwrap_or_else(|| config.workers.agent.clone());
    let profile_name = request
        .profile
        .clone()
        .unwrap_or_else(|| config.workers.profile.clone());
    agents::resolve_agent(config, &agent)?;
    let profile = Profile::resolve(config, &profile_name)?;
    let prompts = Prompts::load(Some(&repo_root))?;
    let token = settings.token().map(|token| token.secret.clone());
    let github = GitHub::new(GitHubConfig::from_settings(settings), None)?;
    let prefix = &config.lease_ref_prefix;

    // 1. The fence: the lease must still hold attempt K. Nothing is written otherwise.
    let superseded = |current| LeaseWriteError::Superseded {
        issue: number,
        attempt: request.attempt,
        current,
    };
    let Some(held) = github.lease_at_tip(&repo, prefix, number).await? else {
        return Err(superseded(None).into());
    };
    if held.lease.attempt != request.attempt || held.lease.state != LeaseState::Held {
        return Err(superseded(Some(held.lease)).into());
    }
    let worker_id = held.lease.worker.clone();

    // 2. The issue and the agent's program, before claiming anything.
    let mut gathered =
        brief::gather_lazily(&github, ctx.cache().await?, settings, &repo, number).await?;
    let issue = gathered.issue.clone();
    let mode = if brief::detached(&profile) {
        CheckoutMode::Detached
    } else {
        CheckoutMode::Branch
    };
    let planned = workspace::worktree_path(
        &config.workers.worktree,
        &repo_root,
        &config.workers.worktree_root,
        repo.name(),
        number,
        &issue.title,
    );
    let env = Env::from_process();
    let search_path: Option<OsString> = env.get("PATH").map(OsString::from);
    let program = probe_program(
        config,
        &agent,
        &profile_name,
        number,
        &planned,
        &repo_root,
        search_path.as_deref(),
    )?;
    let base = match &config.base {
        Some(base) => base.clone(),
        None => match workspace::default_base_from_origin(&repo_root) {
            Some(base) => base,
            None => github.repository(&repo).await?.default_branch,
        },
    };

    // 3. Claim: renew now (the job may have waited in the queue for much of the TTL).
    let ttl = chrono::TimeDelta::from_std(config.workers.lease_ttl)
        .unwrap_or(chrono::TimeDelta::minutes(30));
    let held = github
        .renew_lease(&repo, &held, ctx.clock.now(), ttl)
        .await?;

    // 4. The worktree, context and prompt, as a local dispatch makes them.
    let PreparedWorker {
        worktree,
        invocation,
        program,
        ..
    } = prepare_worker(
        ctx,
        WorkerPlan {
            repo: &repo,
            repo_root: &repo_root,
            base: &base,
            mode,
            worker: &worker_id,
            attempt: request.attempt,
            agent: &agent,
            profile: &profile,
            prompts: &prompts,
            gathered: &mut gathered,
            search_path: search_path.as_deref(),
            program: Some(program),
            token: token.clone(),
        },
    )
    .await?;
    let path = worktree.path.clone();
    // One supervisor per worktree, here as locally.
    let lock_path = lock::supervisor_lock_path(&path);
    let Some(_supervising) = lock::take_supervisor_lock(&path)
        .await
        .map_err(CrewError::internal)?
    else {
        return Err(CrewError::lost_race(format!(
            "another supervisor holds {}; leaving this worker to it",
            lock_path.display()
        )));
    };
    let log_path = SupervisorConfig::default_log_path(&path, &worker_id);
    // The same `.crew/supervisor.json` a local worker has, so every reader of a worktree finds
    // what it expects (it never holds the token).
    worker::write_spec(
        &path,
        &SupervisorSpec {
            invocation: worker::StoredInvocation::from_invocation(&invocation),
            program: program.clone(),
            log_path: log_path.clone(),
            lease: held.clone(),
            renew_every_secs: config.workers.renew_every.as_secs(),
            ttl_secs: config.workers.lease_ttl.as_secs(),
            grace_millis: GRACE_MILLIS,
            replacement: None,
        },
    )
    .map_err(CrewError::internal)?;

    // 5. The agent, supervised in the foreground: this job is its supervisor.
    let push = invocation.profile.push;
    let outcome = worker::run(
        SupervisorConfig {
            worktree: path.clone(),
            invocation,
            program,
            log_path,
            github,
            repo,
            lease: held,
            renew_every: std::time::Duration::from_secs(
                config.workers.renew_every.as_secs().max(1),
            ),
            ttl,
            grace: std::time::Duration::from_millis(GRACE_MILLIS),
            push,
        },
        cancel,
    )
    .await?;
    let outcome_kind = match outcome.exit.reason {
        worker::StopReason::Superseded => RunOutcome::Superseded,
        worker::StopReason::Cancelled => RunOutcome::Cancelled,
        worker::StopReason::Exited if outcome.exit.finished.is_some() => RunOutcome::Finished,
        worker::StopReason::Exited => RunOutcome::Salvaged,
    };
    Ok(RunWorkerView {
        issue: number,
        attempt: request.attempt,
        worker: worker_id,
        agent,
        profile: profile_name,
        branch: worktree.branch,
        worktree: path.to_string_lossy().into_owned(),
        agent_pid: outcome.agent.pid,
        outcome: outcome_kind,
        finished: outcome.exit.finished.clone(),
        exit_code: outcome.exit.code,
        signal: outcome.exit.signal,
        handover_comment: outcome.handover_comment,
        renewals: outcome.renewals,
    })
}

/// Completes on the first SIGTERM or SIGINT (how Actions cancels a job). Installed before the
/// agent starts; without handlers only SIGKILL stops the job, as for a local supervisor.
fn termination() -> impl Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let handlers = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        let (Ok(mut terminate), Ok(mut interrupt)) = handlers else {
            tracing::warn!("cannot install signal handlers; only SIGKILL stops this worker");
            std::future::pending::<()>().await;
            return;
        };
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_workflows_are_embedded_and_name_each_other() {
        assert!(WORKER_WORKFLOW_TEXT.contains("crew run-worker"));
        assert!(WORKER_WORKFLOW_TEXT.contains("workflow_dispatch"));
        assert!(FILL_WORKFLOW_TEXT.contains("schedule"));
        assert!(FILL_WORKFLOW_TEXT.contains("actions: write"));
    }

    #[test]
    fn a_dispatch_record_round_trips_next_to_the_dispatch_lock() -> Result<(), CrewError> {
        let dir = tempfile::tempdir().map_err(CrewError::internal)?;
        let path = record_path(dir.path(), 7);
        assert!(
            path.ends_with("crew/dispatched-7.json"),
            "{}",
            path.display()
        );
        assert_eq!(read_record(&path), None);
        let record = DispatchRecord {
            worker: "worker-1-a0-7".into(),
            attempt: 2,
            workflow: WORKER_WORKFLOW.into(),
            at: chrono::Utc::now(),
        };
        write_record(&path, &record)?;
        assert_eq!(read_record(&path), Some(record));
        Ok(())
    }
}
