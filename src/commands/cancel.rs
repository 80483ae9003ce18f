//! `crew cancel <issue>`: stop an issue's attempt for good (DESIGN.md 2.3: `cancelled` is legal
//! from any active state, and from `failed` and `needs_human`).
//!
//! The order of effects, and why:
//! 1. **Refusals first, nothing written**: the issue's state from its comments (an issue that is
//!    unassigned, completed or already cancelled has nothing to cancel), then its lease (a live
//!    lease held by a worker that is not in this clone belongs to another host, which is named;
//!    `--force` posts the cancellation anyway and leaves the worker to that host's `crew gc`).
//! 2. **`.crew/finished` = `cancelled`** in the worker's worktree, *before* the supervisor is
//!    signalled: a supervisor whose agent exits without that marker salvages and posts a
//!    `handover`, which would invite the next attempt at an issue being cancelled.
//! 3. **SIGTERM to the supervisor** (its recorded pid and start time, never a name), which stops
//!    the agent's whole process group with SIGINT → SIGTERM → SIGKILL and records the exit. The
//!    wait is bounded (three grace periods and a margin); a supervisor that does not exit by then
//!    is killed, and the agent's group is stopped here with the same escalation.
//! 4. **Salvage** (WIP commit, pushed when the profile pushes): never lose work. A failure here
//!    stops the command before anything is posted, so a re-run starts over from this step.
//! 5. **One `cancelled` event**, whose `op` is derived from the worker and attempt and which is
//!    posted with [`PostMode::Resume`]: a re-run after a crash finds the first comment instead of
//!    posting a second one.
//! 6. **The lease is released** (reclaimed at its current tip first: the supervisor renewed it).
//! 7. **Labels and board** mirror `cancelled`, best effort: a failure is a warning.
//!
//! A re-run of an interrupted cancel (the issue already `cancelled`, but the worker still runs
//! here or its lease is still held) completes steps 2 to 7 and posts nothing; once nothing is
//! left to do, `crew cancel` of a cancelled issue exits 1 saying so. A lease of the cancelled
//! attempt held by this host with no worktree of its worker left (`crew gc` removed it after the
//! interrupted cancel) is this cancel's to release, not another host's.
//!
//! Killed after any step (crash points `cancel:finished`, `cancel:stop`, `cancel:push`,
//! `cancel:comment`, `cancel:release`, see [`crate::fault`]), the re-run converges: before the
//! comment it starts over (the marker keeps the supervisor from salvaging meanwhile, a clean
//! worktree commits nothing, the comment is posted once); after it, it completes the rest; after
//! the release there is nothing left but the board, which the next reconcile mirrors.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use clap::Args;
use serde::Serialize;

use crate::agents::Profile;
use crate::commands::brief;
use crate::context::Ctx;
use crate::error::CrewError;
use crate::fault::crashpoint;
use crate::github::{Board, GitHub, GitHubError, PostMode, Release, RepoSlug};
use crate::observe::timestamp;
use crate::prompt::{CommentContext, Prompts};
use crate::protocol::lease::{
    Lease, LeaseError, LeaseState, LeaseStatus, lease_ref, parse_lease_for,
};
use crate::protocol::{Event, EventBody, EventKind, State, next_state};
use crate::worker::locate::{self, LocalWorker};
use crate::worker::{self, FINISHED_FILE, ProcessIdentity, Signal};
use crate::workspace::{self, CREW_DIR};

/// The grace per signal when the worktree does not record one (`crew dispatch`'s).
const DEFAULT_GRACE: Duration = Duration::from_secs(10);
/// Beyond its three grace periods, how long a signalled supervisor is given to record the exit.
const SUPERVISOR_MARGIN: Duration = Duration::from_secs(10);
/// How long a supervisor that was just started is given to record itself in `.crew/worker.json`.
pub(crate) const STARTUP_PATIENCE: Duration = Duration::from_secs(10);

/// Stop an issue's worker, save its work, and record the issue as cancelled
#[derive(Debug, Args)]
#[command(after_help = r#"Examples:
  crew cancel 42                               Stop #42's worker, save its work, record it cancelled
  crew cancel 42 --reason "superseded by #57"  ... saying why in the `cancelled` comment
  crew cancel 42 --force                       ... even when another host's worker holds the lease"#)]
pub struct CancelArgs {
    /// The issue number
    pub issue: u64,

    /// Why, quoted in the `cancelled` comment
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,

    /// Cancel even when another host's worker holds the issue's lease (that host's `crew gc`
    /// stops the worker)
    #[arg(long)]
    pub force: bool,
}

/// What `crew cancel --json` prints.
#[derive(Debug, Serialize)]
pub struct CancelView {
    pub issue: u64,
    pub attempt: u64,
    pub worker: String,
    /// The state before this command (`cancelled` when it completed an interrupted cancel).
    pub previous_state: &'static str,
    pub state: &'static str,
    /// The worker's processes on this host, when there were any.
    pub stopped: Option<StoppedView>,
    /// The WIP commit of uncommitted work, when there was any.
    pub salvage: Option<SalvageView>,
    /// The `cancelled` comment.
    pub comment_id: Option<u64>,
    /// True when the comment existed already (a re-run) and nothing was posted.
    pub reused: bool,
    /// `released`, `already_released`, `not_ours` (held by another host, `--force`),
    /// `superseded` or `none`.
    pub lease: &'static str,
    /// The host whose live lease `--force` overrode.
    pub forced_over: Option<String>,
}

/// The local worker's processes.
#[derive(Debug, Serialize)]
pub struct StoppedView {
    pub worktree: String,
    pub supervisor_pid: Option<u32>,
    pub agent_pid: Option<u32>,
    /// Whether the supervisor was running when the cancel began.
    pub supervisor_was_running: bool,
    /// Whether anything of the agent was running when the cancel began.
    pub agent_was_running: bool,
    /// True when the supervisor had to be killed and the agent's group stopped from here.
    pub killed: bool,
}

#[derive(Debug, Serialize)]
pub struct SalvageView {
    pub commit: String,
    pub branch: Option<String>,
    pub pushed: bool,
}

pub async fn run(ctx: &Ctx, args: &CancelArgs) -> Result<(), CrewError> {
    let view = cancel(ctx, args).await?;
    if ctx.settings.json {
        ctx.printer.json(&view)
    } else {
        ctx.printer.out(|w| render(w, &view))
    }
}

async fn cancel(ctx: &Ctx, args: &CancelArgs) -> Result<CancelView, CrewError> {
    let settings = &ctx.settings;
    let config = &settings.config;
    let repo = settings.require_repo()?.clone();
    let number = args.issue;
    let prompts = Prompts::load(settings.repo_root.as_deref())?;

    // What this clone holds (no network).
    let local = match &settings.repo_root {
        Some(root) => {
            let root = root.clone();
            tokio::task::spawn_blocking(move || locate::locate(&root, number))
                .await
                .map_err(CrewError::internal)??
        }
        None => None,
    };

    // What GitHub says.
    let github = ctx.github().await?;
    let own_login = crate::observe::own_login(github, ctx.cache().await?, settings).await?;
    let gathered = brief::gather(github, settings, &repo, number, own_login).await?;
    let state = &gathered.state;
    let lease = match issue_lease(github, &repo, &config.lease_ref_prefix, number).await? {
        None => None,
        Some(Ok(lease)) => Some(lease),
        Some(Err(error)) => {
            ctx.printer.warn(format_args!(
                "#{number}: the lease ref holds no lease crew can read ({error}); leaving it alone"
            ));
            None
        }
    };
    let now = ctx.clock.now();

    let (Some(attempt), true) = (state.attempt, state.state != State::Unassigned) else {
        return Err(CrewError::user(format!(
            "#{number} is {}: there is no attempt to cancel",
            state.state
        ))
        .with_hint(format!(
            "nothing to cancel: no attempt was started (`crew show {number}` shows its history)"
        )));
    };
    let worker_id = state
        .worker
        .clone()
        .or_else(|| lease.as_ref().map(|lease| lease.worker.clone()))
        .unwrap_or_default();
    // The local worker counts only if it is this attempt's.
    let local = local.filter(|local| {
        (u64::from(local.attempt()) == attempt && local.worker() == worker_id)
            || lease.as_ref().is_some_and(|lease| {
                lease.worker == local.worker() && lease.attempt == local.attempt()
            })
    });
    // A cancel killed after its comment, whose worktree `crew gc` has removed since: the
    // cancelled attempt's lease, held by this host, with nothing of its worker left here. It is
    // this cancel's to release, not another host's.
    let left_by_a_cancel = |lease: &Lease| {
        state.state == State::Cancelled
            && local.is_none()
            && lease.host == settings.host
            && u64::from(lease.attempt) == attempt
            && lease.worker == worker_id
    };
    let lease_is_local = |lease: &Lease| {
        local
            .as_ref()
            .is_some_and(|local| local.worker() == lease.worker && local.attempt() == lease.attempt)
            || left_by_a_cancel(lease)
    };
    let held_elsewhere = lease
        .as_ref()
        .filter(|lease| lease.status(now) == LeaseStatus::Live && !lease_is_local(lease));
    // The lease this cancel releases: the attempt's, still held, and not live elsewhere.
    let releasable = lease.as_ref().filter(|lease| {
        lease.state == LeaseState::Held
            && u64::from(lease.attempt) == attempt
            && lease.worker == worker_id
            && held_elsewhere.is_none()
    });
    let local_running = local
        .as_ref()
        .is_some_and(|local| local.supervisor_alive() || local.agent_alive());

    let resuming = match next_state(state.state, EventKind::Cancelled) {
        Ok(_) => false,
        Err(_) if state.state == State::Cancelled && (local_running || releasable.is_some()) => {
            true
        }
        Err(_) if state.state == State::Cancelled => {
            return Err(CrewError::user(format!(
                "#{number} is already cancelled (attempt {attempt})"
            ))
            .with_hint(format!(
                "nothing is left running here; `crew gc` removes its worktree, \
                 `crew show {number}` shows its history"
            )));
        }
        Err(_) => {
            return Err(CrewError::user(format!(
                "#{number} is {}: only an active issue can be cancelled",
                state.state
            ))
            .with_hint(format!(
                "no worker runs on it; `crew show {number}` shows where it stands"
            )));
        }
    };
    let mut forced_over = None;
    if let Some(holder) = held_elsewhere {
        if !args.force || resuming {
            let hint = if resuming {
                format!("{}'s `crew gc` stops the worker", holder.host)
            } else {
                format!(
                    "run `crew cancel {number}` on {}, or pass --force to record the \
                     cancellation from here ({}'s `crew gc` then stops the worker)",
                    holder.host, holder.host
                )
            };
            let message = if resuming {
                format!(
                    "#{number} is already cancelled; its worker {} still holds the lease on \
                     host {} until {}",
                    holder.worker,
                    holder.host,
                    timestamp(holder.expires_at)
                )
            } else {
                format!(
                    "#{number} is worked on by worker {} on host {} (attempt {}, lease live \
                     until {}), not by a worker of this clone",
                    holder.worker,
                    holder.host,
                    holder.attempt,
                    timestamp(holder.expires_at)
                )
            };
            return Err(CrewError::user(message).with_hint(hint));
        }
        forced_over = Some(holder.host.clone());
    }

    // 2-3. Stop the local worker (unless `--force` overrode another host's lease: then this
    // command only records the cancellation).
    let mut stopped = None;
    let mut salvage = None;
    if let Some(mut local) = local.filter(|_| forced_over.is_none()) {
        stopped = Some(stop(ctx, &mut local).await?);
        crashpoint("cancel:stop");
        // 4. Save its work.
        let push = local.pushes().unwrap_or_else(|| {
            Profile::resolve(config, &local.context.profile).map_or(true, |profile| profile.push)
        });
        let reason = match &args.reason {
            Some(reason) => format!("it was cancelled ({reason})"),
            None => "it was cancelled".to_owned(),
        };
        let message = workspace::wip_message(number, local.attempt(), &reason);
        let path = local.worktree.clone();
        let saved = tokio::task::spawn_blocking(move || {
            let opened = workspace::open_worktree(&path)?;
            workspace::salvage_with(&opened, &message, push).map(|saved| (opened, saved))
        })
        .await
        .map_err(CrewError::internal)??;
        if let (opened, Some(saved)) = saved {
            if push && opened.branch.is_some() && !saved.pushed {
                ctx.printer.warn(format_args!(
                    "#{number}: the WIP commit {} is on the local branch only; the push failed",
                    short(&saved.commit_sha)
                ));
            }
            salvage = Some(SalvageView {
                commit: saved.commit_sha,
                branch: opened.branch,
                pushed: saved.pushed,
            });
        }
        crashpoint("cancel:push");
    }

    // 5. The `cancelled` event (never twice: a derived op, looked for before posting).
    let mut comment_id = None;
    let mut reused = false;
    if !resuming {
        let event = Event {
            issue: number,
            attempt,
            worker: worker_id.clone(),
            op: cancel_op(&worker_id, attempt),
            at: now,
            body: EventBody::Cancelled {
                reason: args.reason.clone(),
            },
        };
        let body = prompts.comment_body(&event, &CommentContext::from_event(&event))?;
        let posted = github
            .post_event(&repo, number, &event, &body, PostMode::Resume)
            .await?;
        comment_id = Some(posted.comment_id);
        reused = posted.reused;
        crashpoint("cancel:comment");
    }

    // 6. The lease.
    let lease_outcome = match (releasable, &forced_over, &lease) {
        (Some(held), _, _) => release(github, &repo, &config.lease_ref_prefix, held, now).await?,
        (None, Some(_), _) => "not_ours",
        (None, None, Some(lease)) if lease.state == LeaseState::Released => "already_released",
        (None, None, Some(_)) => "superseded",
        (None, None, None) => "none",
    };
    crashpoint("cancel:release");

    // 7. Labels and board, best effort.
    let board = Board::new(settings, &repo);
    let mut mirrored = board
        .set_state(github, &repo, number, State::Cancelled)
        .await
        .map(drop);
    if board.mirrors_labels() {
        let labels: Vec<&str> = gathered.issue.label_names().collect();
        let labelled = github
            .mirror_labels_from(&repo, number, State::Cancelled, &labels)
            .await
            .map(drop);
        if let (Ok(()), Err(error)) = (&mirrored, labelled) {
            mirrored = Err(error);
        }
    }
    if let Err(error) = mirrored {
        ctx.printer.warn(format_args!(
            "#{number}: could not update the board or labels ({error}); the next reconcile will"
        ));
    }

    Ok(CancelView {
        issue: number,
        attempt,
        worker: worker_id,
        previous_state: state.state.as_str(),
        state: State::Cancelled.as_str(),
        stopped,
        salvage,
        comment_id,
        reused,
        lease: lease_outcome,
        forced_over,
    })
}

/// The `op` of the `cancelled` event of one attempt: an attempt is cancelled once, so a re-run
/// finds the first comment.
pub fn cancel_op(worker: &str, attempt: u64) -> String {
    format!("cancel-{worker}-{attempt}")
}

/// Steps 2 and 3: the marker, then the supervisor, then whatever is left of the agent.
async fn stop(ctx: &Ctx, local: &mut LocalWorker) -> Result<StoppedView, CrewError> {
    // A supervisor that is still starting records itself shortly; the marker must be written
    // after it did (it removes a stale marker when it starts).
    if local.record.is_none() && local.spec.is_some() {
        wait_for_record(local, STARTUP_PATIENCE).await?;
    }
    let supervisor = local.supervisor();
    let agent = local.agent();
    let supervisor_was_running = local.supervisor_alive();
    let agent_was_running = local.agent_alive();
    let grace = local.grace().unwrap_or(DEFAULT_GRACE);
    write_finished(&local.worktree)?;
    crashpoint("cancel:finished");

    let mut killed = false;
    if let Some(supervisor) = supervisor.filter(|_| supervisor_was_running) {
        signal(ctx, &supervisor, Signal::Terminate);
        if !locate::wait_exited(&supervisor, grace * 3 + SUPERVISOR_MARGIN).await {
            ctx.printer.warn(format_args!(
                "the supervisor (pid {}) did not exit; killing it",
                supervisor.pid
            ));
            signal(ctx, &supervisor, Signal::Kill);
            killed = true;
            locate::wait_exited(&supervisor, Duration::from_secs(2)).await;
        }
    }
    local.refresh()?;
    if let Some(agent) = agent
        && locate::agent_group_alive(&agent)
    {
        killed = true;
        if !locate::stop_agent_group(&agent, grace).await {
            return Err(CrewError::internal(format!(
                "the agent's process group {} survived SIGKILL",
                agent.pid
            )));
        }
    }
    Ok(StoppedView {
        worktree: local.worktree.to_string_lossy().into_owned(),
        supervisor_pid: supervisor.map(|identity| identity.pid),
        agent_pid: agent.map(|identity| identity.pid),
        supervisor_was_running,
        agent_was_running,
        killed,
    })
}

/// Waits until the worker's supervisor has recorded itself, at most `patience`.
pub(crate) async fn wait_for_record(
    local: &mut LocalWorker,
    patience: Duration,
) -> Result<(), CrewError> {
    let deadline = tokio::time::Instant::now() + patience;
    while local.record.is_none() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        local.refresh()?;
    }
    Ok(())
}

fn signal(ctx: &Ctx, identity: &ProcessIdentity, signal: Signal) {
    if let Err(error) = worker::signal_process(identity, signal) {
        ctx.printer.warn(format_args!(
            "cannot signal the supervisor (pid {}): {error}",
            identity.pid
        ));
    }
}

/// `.crew/finished` = `cancelled`, so the supervisor records the exit and posts nothing.
fn write_finished(worktree: &Path) -> Result<(), CrewError> {
    let dir = worktree.join(CREW_DIR);
    std::fs::create_dir_all(&dir).map_err(CrewError::internal)?;
    let temp = dir.join(format!(".{FINISHED_FILE}.tmp.{}", std::process::id()));
    std::fs::write(&temp, "cancelled\n").map_err(CrewError::internal)?;
    std::fs::rename(&temp, dir.join(FINISHED_FILE)).map_err(CrewError::internal)
}

/// Releases `lease` (the attempt's) from the ref's current tip.
async fn release(
    github: &GitHub,
    repo: &RepoSlug,
    prefix: &str,
    lease: &Lease,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<&'static str, CrewError> {
    let released = github
        .release_attempt(repo, prefix, lease.issue, &lease.worker, lease.attempt, now)
        .await?;
    Ok(match released {
        Release::Released => "released",
        Release::AlreadyReleased => "already_released",
        Release::Superseded => "superseded",
    })
}

/// The lease of `issue` as it stands: `None` without a lease ref, the reason when the ref holds
/// no lease crew can read. 2 requests (ref, commit).
pub(crate) async fn issue_lease(
    github: &GitHub,
    repo: &RepoSlug,
    prefix: &str,
    issue: u64,
) -> Result<Option<Result<Lease, LeaseError>>, GitHubError> {
    let Some(git_ref) = github.get_ref(repo, &lease_ref(prefix, issue)).await? else {
        return Ok(None);
    };
    let sha = git_ref.object.sha;
    if git_ref.object.kind != "commit" {
        return Ok(Some(Err(LeaseError::NotACommit {
            kind: git_ref.object.kind,
        })));
    }
    match github.commit(repo, &sha).await {
        Ok(commit) => Ok(Some(parse_lease_for(issue, &commit.message))),
        Err(GitHubError::NotFound { .. }) => Ok(Some(Err(LeaseError::MissingCommit { sha }))),
        Err(error) => Err(error),
    }
}

fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

fn render(w: &mut dyn Write, view: &CancelView) -> std::io::Result<()> {
    let number = view.issue;
    if let Some(stopped) = &view.stopped {
        if stopped.supervisor_was_running || stopped.agent_was_running {
            let mut how = Vec::new();
            if let Some(pid) = stopped.agent_pid {
                how.push(format!("agent pid {pid}"));
            }
            if stopped.killed {
                how.push("killed".to_owned());
            }
            let how = if how.is_empty() {
                String::new()
            } else {
                format!(" ({})", how.join(", "))
            };
            writeln!(
                w,
                "stopped worker {} of #{number}{how} in {}",
                view.worker, stopped.worktree
            )?;
        } else {
            writeln!(
                w,
                "worker {} of #{number} was not running ({})",
                view.worker, stopped.worktree
            )?;
        }
    }
    if let Some(salvage) = &view.salvage {
        match (&salvage.branch, salvage.pushed) {
            (Some(branch), true) => writeln!(
                w,
                "saved uncommitted work as {} and pushed it to {branch}",
                short(&salvage.commit)
            )?,
            (Some(branch), false) => writeln!(
                w,
                "saved uncommitted work as {} on {branch} (not pushed)",
                short(&salvage.commit)
            )?,
            (None, _) => writeln!(
                w,
                "saved uncommitted work as {} (refs/crew/salvage/{})",
                short(&salvage.commit),
                salvage.commit
            )?,
        }
    }
    match (view.comment_id, view.reused) {
        (Some(id), false) => writeln!(
            w,
            "#{number}: {} → cancelled (attempt {}, comment {id})",
            view.previous_state, view.attempt
        )?,
        (Some(id), true) => writeln!(
            w,
            "#{number}: cancelled (attempt {}, comment {id} was already posted)",
            view.attempt
        )?,
        (None, _) => writeln!(
            w,
            "#{number}: already cancelled; finished the interrupted cancel"
        )?,
    }
    match view.lease {
        "released" => writeln!(w, "released the lease of #{number}")?,
        "not_ours" => writeln!(
            w,
            "left the lease to host {}, whose `crew gc` stops its worker",
            view.forced_over.as_deref().unwrap_or("?")
        )?,
        _ => {}
    }
    Ok(())
}
