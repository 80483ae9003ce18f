//! `crew dispatch <issue>…`: start a worker on each issue (DESIGN.md 2.2 and 3).
//!
//! The order of effects is the protocol's: every refusal comes first and writes nothing (a closed
//! issue, attempts used up, the agent's program missing, a live lease held by someone else); then
//! the lease (the compare-and-swap that makes two dispatches of one issue safe: the loser exits
//! 4 having written nothing but an unreferenced commit object), the `assigned` comment, the
//! board and labels (a failure there is only a warning: the next reconcile repairs them), the
//! worktree and branch, `.crew/context.json`, `.crew/prompt.md`, `.crew/supervisor.json` (never
//! the token), and last the detached supervisor. A crash after any step leaves a state the next
//! dispatch or reconcile completes: the lease names the worker, the comment names the lease's
//! attempt, and preparing the worktree reuses what exists.
//!
//! Resuming: a dispatch holds the issue's dispatch lock ([`lock::dispatch_lock_path`]) while it
//! runs, and a supervisor holds its worktree's supervisor lock while it lives. So when a dispatch
//! finds the issue's live lease held by this host (or the newest event an `assigned` of this
//! host) and neither lock is held, the earlier dispatch died half-way: this one reclaims that
//! lease at its tip (same worker, same attempt), renews it, finds or posts the `assigned`
//! comment by its deterministic op, and completes the remaining steps. `CREW_FAULT_KILL_AFTER`
//! ([`crate::fault::crashpoint`]) lets tests kill it after any step.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use serde::Serialize;

use crate::agents::{self, InvocationContext, Profile};
use crate::commands::brief::{self, Placement};
use crate::context::Ctx;
use crate::error::CrewError;
use crate::fault::crashpoint;
use crate::github::{Board, GitHub, HeldLease, LeaseRequest, LeaseWriteError, PostMode};
use crate::prompt::{CommentContext, Prompts};
use crate::protocol::lease::{LeaseState, LeaseStatus};
use crate::protocol::{Assignment, Event, EventBody, IssueState, State};
use crate::settings::Env;
use crate::worker::{self, ProcessIdentity, Replacement, SupervisorConfig, SupervisorSpec, lock};
use crate::workspace::{self, CREW_DIR, CheckoutMode, WorkerContext, WorktreeRequest};

/// How long the supervisor gives the agent after each signal when it has to stop it.
const GRACE_MILLIS: u64 = 10_000;

/// Where a worker runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Runtime {
    /// A detached supervisor process on this machine.
    #[default]
    Local,
    /// A run of the crew-worker.yml workflow on a GitHub Actions runner (`workflow_dispatch`).
    Actions,
}

impl Runtime {
    /// The runtime `workers.runtime` names.
    pub fn from_setting(setting: crate::settings::Runtime) -> Runtime {
        match setting {
            crate::settings::Runtime::Local => Runtime::Local,
            crate::settings::Runtime::Actions => Runtime::Actions,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Runtime::Local => "local",
            Runtime::Actions => "actions",
        }
    }
}

/// Start a worker on each issue: take its lease, announce it, prepare its worktree and run the
/// agent under a detached supervisor
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  crew dispatch 42
      Start a worker on #42 with workers.agent and workers.profile
  crew dispatch 42 43 44
      Start one worker per issue
  crew dispatch 42 --profile research
      Use the read-only `research` tool profile
  crew dispatch 42 --agent codex --runtime actions
      Run codex on a GitHub Actions runner")]
pub struct DispatchArgs {
    /// The issue numbers
    #[arg(required = true, value_name = "ISSUE")]
    pub issues: Vec<u64>,

    /// The tool profile [default: workers.profile]
    #[arg(long, value_name = "NAME")]
    pub profile: Option<String>,

    /// The agent [default: workers.agent]
    #[arg(long, value_name = "NAME")]
    pub agent: Option<String>,

    /// Where the worker runs
    #[arg(long, value_name = "RUNTIME", default_value = "local", value_enum)]
    pub runtime: Runtime,

    /// Set by `crew retry`: a maintainer's explicit go-ahead past `workers.max_attempts`.
    #[arg(skip)]
    pub past_max: bool,

    /// Set by `crew fill`/`crew loop`: the expired attempt this dispatch takes over, whose
    /// handover it posts once it has won the lease.
    #[arg(skip)]
    pub recovering: Option<Recovery>,

    /// Set by `crew fill`/`crew loop`: the slot limits to verify once the lease is won.
    #[arg(skip)]
    pub slots: Option<SlotLimits>,
}

/// `workers.max` and `workers.max_per_host`, as a fill enforces them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotLimits {
    pub max: u32,
    pub max_per_host: u32,
}

/// An attempt whose host stopped renewing its lease, as the planner found it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovery {
    pub worker: String,
    pub host: String,
    pub attempt: u32,
    pub expired_at: chrono::DateTime<chrono::Utc>,
}

/// One started worker, as `--json` prints it.
#[derive(Debug, Serialize)]
pub struct DispatchView {
    pub issue: u64,
    pub attempt: u32,
    pub worker: String,
    pub agent: String,
    pub profile: String,
    /// `local` or `actions`.
    pub runtime: &'static str,
    pub branch: Option<String>,
    /// Empty for an actions worker (its worktree is on the runner).
    pub worktree: String,
    /// The `assigned` comment.
    pub comment_id: u64,
    /// The supervisor's pid.
    pub pid: u32,
    /// The agent's pid (leader of its process group).
    pub agent_pid: u32,
    /// True when this finished an interrupted dispatch of the same attempt.
    pub resumed: bool,
    pub timings: DispatchTimings,
}

/// Where a dispatch's wall time went.
#[derive(Debug, Serialize)]
pub struct DispatchTimings {
    /// From reading the issue to the agent running.
    pub total_ms: u64,
    /// Preparing the worktree: fetch, branch, `git worktree add`.
    pub git_ms: u64,
}

pub(crate) fn millis(elapsed: std::time::Duration) -> u64 {
    u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
}

pub async fn run(ctx: &Ctx, args: &DispatchArgs) -> Result<(), CrewError> {
    // Finish the job of any dead supervisor on this host first (DESIGN.md 3). Before any
    // dispatch lock is taken: under an issue's lock its worker counts as still starting.
    // A worker of an issue dispatched now whose agent never started is an interrupted dispatch:
    // `dispatch_one` finishes it as the same attempt rather than handing it over.
    let reconciled = match crate::reconcile::plan_local(ctx).await {
        Ok(mut plan) => {
            plan.retain(|local| !(args.issues.contains(&local.issue) && local.never_started()));
            Ok(crate::reconcile::apply(ctx, plan).await)
        }
        Err(error) => Err(error),
    };
    match reconciled {
        Ok(report) => crate::reconcile::print_report(&ctx.printer, &report),
        Err(error) => ctx.printer.warn(format_args!(
            "could not reconcile this host's workers: {error}"
        )),
    }
    let mut views = Vec::new();
    let mut failure = None;
    for &issue in &args.issues {
        match dispatch_one(ctx, args, issue).await {
            Ok(view) => {
                if !ctx.settings.json {
                    ctx.printer.out(|w| render(w, &view))?;
                }
                views.push(view);
            }
            Err(error) if args.issues.len() > 1 => {
                // Report it and go on with the other issues; the exit code is the last failure's.
                ctx.printer.error(&error);
                failure = Some(error);
            }
            Err(error) => return Err(error),
        }
    }
    if ctx.settings.json {
        ctx.printer.json(&views)?;
    }
    match failure {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

fn render(w: &mut dyn Write, view: &DispatchView) -> std::io::Result<()> {
    if view.runtime == Runtime::Actions.as_str() {
        return writeln!(
            w,
            "dispatched #{} attempt {} worker {} to GitHub Actions ({}) in {} ms",
            view.issue,
            view.attempt,
            view.worker,
            crate::runtime_actions::WORKER_WORKFLOW,
            view.timings.total_ms
        );
    }
    writeln!(
        w,
        "dispatched #{} attempt {} worker {} (pid {}) worktree {} in {} ms ({} ms git)",
        view.issue,
        view.attempt,
        view.worker,
        view.pid,
        view.worktree,
        view.timings.total_ms,
        view.timings.git_ms
    )
}

pub(crate) async fn dispatch_one(
    ctx: &Ctx,
    args: &DispatchArgs,
    number: u64,
) -> Result<DispatchView, CrewError> {
    let placed = place(ctx, args, number).await?;
    match args.runtime {
        Runtime::Local => start_local(ctx, args, placed).await,
        Runtime::Actions => crate::runtime_actions::start(ctx, placed).await,
    }
}

/// An issue placed: every refusal passed, the lease held, the attempt announced and mirrored.
/// What is left is the runtime's: a local worktree and supervisor, or a workflow run.
pub(crate) struct Placed {
    pub started: std::time::Instant,
    pub number: u64,
    pub repo: crate::settings::RepoSlug,
    pub repo_root: PathBuf,
    pub agent: String,
    pub profile_name: String,
    pub profile: Profile,
    pub prompts: Prompts,
    pub gathered: brief::Gathered,
    pub base: String,
    pub mode: CheckoutMode,
    pub branch: Option<String>,
    pub held: HeldLease,
    pub post_mode: PostMode,
    pub posted: crate::github::PostedEvent,
    /// Attempts announced, this one included.
    pub announced: u64,
    pub search_path: Option<OsString>,
    /// The agent's program as resolved before any write (local runtime only).
    pub program: Option<PathBuf>,
    /// The issue's dispatch lock, held until the runtime has placed the worker.
    pub lock: lock::HeldLock,
}

/// The runtime-independent steps of a dispatch: refusals, lease, `assigned` comment, board.
async fn place(ctx: &Ctx, args: &DispatchArgs, number: u64) -> Result<Placed, CrewError> {
    let started = std::time::Instant::now();
    let settings = &ctx.settings;
    let config = &settings.config;
    let repo = settings.require_repo()?.clone();
    let agent = args
        .agent
        .clone()
        .unwrap_or_else(|| config.workers.agent.clone());
    let profile_name = args
        .profile
        .clone()
        .unwrap_or_else(|| config.workers.profile.clone());
    // Settings mistakes first: they need no network.
    agents::resolve_agent(config, &agent)?;
    let profile = Profile::resolve(config, &profile_name)?;
    let prompts = Prompts::load(settings.repo_root.as_deref())?;
    let repo_root = match &settings.repo_root {
        Some(root) => root.clone(),
        None => {
            return Err(CrewError::user(
                "crew dispatch needs a clone of the repository: run it inside one",
            )
            .with_hint("`cd` into a clone of the repository (workers get worktrees of it)"));
        }
    };

    // One dispatch of an issue at a time on this host. Held until this process ends, however it
    // ends: a second dispatch that gets it knows no other one is half-way, so a lease of ours
    // without a supervisor is an interrupted dispatch to finish, not one in progress.
    let lock_path = lock::dispatch_lock_path(&repo_root, number);
    let Some(dispatching) = lock::try_lock(&lock_path).map_err(CrewError::internal)? else {
        return Err(CrewError::lost_race(format!(
            "another crew dispatch of #{number} is running on this host"
        )));
    };

    // The cached client: the lease commit this dispatch writes is remembered by its sha, so the
    // slot re-count of a fill and every later lease read need not fetch it back, and the board
    // row it writes lands in the same cache.
    let github = ctx.github().await?;
    let gathered =
        brief::gather_lazily(github, ctx.cache().await?, settings, &repo, number).await?;
    let issue = gathered.issue.clone();

    // Refusals: nothing is written before all of these pass.
    if issue.state == "closed" {
        return Err(
            CrewError::user(format!("#{number} is closed; not dispatching it"))
                .with_hint("reopen the issue first if it needs more work"),
        );
    }
    let state = &gathered.state;
    if matches!(state.state, State::Completed | State::Cancelled) {
        return Err(CrewError::user(format!(
            "#{number} is {}; not dispatching it",
            state.state
        ))
        .with_hint(format!(
            "completed and cancelled issues get no more attempts: open a new issue for more work \
             (`crew show {number}` shows this one's history)"
        )));
    }
    // A dispatch of ours on this host that stopped after announcing its attempt (and before its
    // agent started) is finished, not repeated: same worker, same attempt, same comment.
    let mut resumed = match own_assignment(state, &settings.host) {
        Some((worker, attempt)) => {
            resumable(
                github,
                settings,
                &repo,
                &repo_root,
                number,
                &worker,
                attempt,
                args.runtime,
            )
            .await?
        }
        None => None,
    };
    let max_attempts = config.workers.max_attempts;
    if resumed.is_none() && !args.past_max && state.attempts >= u64::from(max_attempts) {
        return Err(CrewError::user(format!(
            "#{number} is {} after {} attempts, which is workers.max_attempts; not dispatching it",
            state.state, state.attempts
        ))
        .with_hint("raise workers.max_attempts in crew.toml to allow another attempt"));
    }
    let mode = if brief::detached(&profile) {
        CheckoutMode::Detached
    } else {
        CheckoutMode::Branch
    };
    let branch = match mode {
        CheckoutMode::Branch => Some(workspace::branch_name(
            &config.workers.branch,
            number,
            &issue.title,
        )?),
        CheckoutMode::Detached => None,
    };
    let planned_worktree = workspace::worktree_path(
        &config.workers.worktree,
        &repo_root,
        &config.workers.worktree_root,
        repo.name(),
        number,
        &issue.title,
    );
    let env = Env::from_process();
    let search_path: Option<OsString> = env.get("PATH").map(OsString::from);
    // The program is resolved now, before any side effect, from the planned worktree (a runner
    // has its own programs: an actions dispatch does not look here).
    let program = match args.runtime {
        Runtime::Local => Some(probe_program(
            config,
            &agent,
            &profile_name,
            number,
            &planned_worktree,
            &repo_root,
            search_path.as_deref(),
        )?),
        Runtime::Actions => None,
    };
    let base = match &config.base {
        Some(base) => base.clone(),
        None => match workspace::default_base_from_origin(&repo_root) {
            Some(base) => base,
            None => github.repository(&repo).await?.default_branch,
        },
    };

    // 1. The lease: from here on the issue is ours (LostRace, exit 4, if it is not).
    let now = ctx.clock.now();
    let ttl = chrono::TimeDelta::from_std(config.workers.lease_ttl)
        .unwrap_or(chrono::TimeDelta::minutes(30));
    if resumed.is_none() {
        // The base's tip as this clone knows it spares a GET of the branch.
        let known_base = workspace::origin_tip(&repo_root, &base)
            .map(|(commit, tree)| crate::github::BaseTip { commit, tree });
        let acquired = github
            .acquire_lease_from(
                &repo,
                &config.lease_ref_prefix,
                number,
                LeaseRequest {
                    base: base.clone(),
                    worker: new_worker_id(now, number),
                    host: settings.host.clone(),
                    runtime: args.runtime.as_str().to_owned(),
                    ttl,
                    now,
                },
                known_base,
            )
            .await;
        match acquired {
            Ok(held) => resumed = Some(Placing::Fresh(held)),
            // Held by this host: an interrupted dispatch of ours (it announced nothing yet).
            Err(LeaseWriteError::LostRace {
                holder: Some(holder),
                ..
            }) if holder.host == settings.host => {
                let found = resumable(
                    github,
                    settings,
                    &repo,
                    &repo_root,
                    number,
                    &holder.worker,
                    holder.attempt,
                    args.runtime,
                )
                .await?;
                match found {
                    Some(placing) => resumed = Some(placing),
                    None => {
                        return Err(LeaseWriteError::LostRace {
                            issue: number,
                            holder: Some(holder),
                        }
                        .into());
                    }
                }
            }
            Err(error) => return Err(error.into()),
        }
    }
    let (held, post_mode) = match resumed {
        Some(Placing::Fresh(held)) => (held, PostMode::FirstTry),
        Some(Placing::Resume(held)) => {
            ctx.printer.verbose(format!(
                "#{number}: finishing the interrupted dispatch of worker {} (attempt {})",
                held.lease.worker, held.lease.attempt
            ));
            // The interrupted run may have left little of the TTL: renew before going on.
            let renewed = github.renew_lease(&repo, &held, now, ttl).await?;
            (renewed, PostMode::Resume)
        }
        None => return Err(CrewError::internal("dispatch placed no lease")),
    };
    // A fill's slot count was read before its lease: other hosts may have filled the slots
    // since. Counted again now that ours is on GitHub, and let go (before anything is
    // announced) if there are too many. See [`verify_slots`] for why this never over-fills.
    if let (Some(limits), PostMode::FirstTry) = (args.slots, post_mode) {
        verify_slots(ctx, github, &repo, &held, limits).await?;
    }
    let worker_id = held.lease.worker.clone();
    let attempt = held.lease.attempt;
    crashpoint("lease");

    // 1b. Taking over a vanished host's attempt: close it with a handover before announcing ours,
    // so the fold reads "handover (k), assigned (k+1)". Only the lease's winner gets here.
    if let Some(recovery) = &args.recovering
        && recovery.attempt.checked_add(1) == Some(attempt)
        && state.state.is_active()
        && state.attempt == Some(u64::from(recovery.attempt))
    {
        post_recovery(
            ctx,
            github,
            &prompts,
            &repo,
            number,
            recovery,
            &settings.host,
        )
        .await?;
    }

    // 2. The `assigned` comment.
    let event = Event {
        issue: number,
        attempt: u64::from(attempt),
        worker: worker_id.clone(),
        op: assigned_op(&worker_id),
        // The lease's acquisition time, so a resumed dispatch's search for the comment an
        // interrupted one posted looks back from when that one posted it.
        at: held.lease.acquired_at,
        body: EventBody::Assigned(Assignment {
            host: Some(settings.host.clone()),
            agent: Some(agent.clone()),
            profile: Some(profile_name.clone()),
            branch: branch.clone(),
            worktree: (args.runtime == Runtime::Local)
                .then(|| planned_worktree.to_string_lossy().into_owned()),
        }),
    };
    let mut body = prompts.comment_body(&event, &CommentContext::from_event(&event))?;
    if args.runtime == Runtime::Actions {
        body.push_str(&crate::runtime_actions::assignment_note(&base));
    }
    let posted = github
        .post_event(&repo, number, &event, &body, post_mode)
        .await?;
    crashpoint("assigned");
    // Attempts announced once this one is: the comment may have been there already (resumed).
    let announced = state.attempts + u64::from(!posted.reused);

    // 3. The board and labels: best effort. The labels just read serve (saves a GET).
    let board = Board::new(settings, &repo);
    let mut mirrored = board
        .set_state(github, &repo, number, State::Assigned)
        .await
        .map(drop);
    if board.mirrors_labels() {
        let labels: Vec<&str> = issue.label_names().collect();
        let labelled = github
            .mirror_labels_from(&repo, number, State::Assigned, &labels)
            .await;
        if let (Ok(()), Err(error)) = (&mirrored, labelled) {
            mirrored = Err(error);
        }
    }
    if let Err(error) = mirrored {
        ctx.printer.warn(format_args!(
            "#{number}: could not update the board or labels ({error}); the next reconcile will"
        ));
    }
    crashpoint("board");
    Ok(Placed {
        started,
        number,
        repo,
        repo_root,
        agent,
        profile_name,
        profile,
        prompts,
        gathered,
        base,
        mode,
        branch,
        held,
        post_mode,
        posted,
        announced,
        search_path,
        program,
        lock: dispatching,
    })
}

/// The local runtime's steps: worktree, `.crew/` files, detached supervisor.
async fn start_local(
    ctx: &Ctx,
    args: &DispatchArgs,
    placed: Placed,
) -> Result<DispatchView, CrewError> {
    let Placed {
        started,
        number,
        repo,
        repo_root,
        agent,
        profile_name,
        profile,
        prompts,
        mut gathered,
        base,
        mode,
        branch: _,
        held,
        post_mode,
        posted,
        announced,
        search_path,
        program,
        lock: dispatching,
    } = placed;
    let settings = &ctx.settings;
    let config = &settings.config;
    let worker_id = held.lease.worker.clone();
    let attempt = held.lease.attempt;
    let max_attempts = config.workers.max_attempts;
    let crew_exe = std::env::current_exe().map_err(CrewError::internal)?;

    // 4.–6. The worktree and branch, `.crew/context.json`, `.crew/prompt.md`.
    let prepared = prepare_worker(
        ctx,
        WorkerPlan {
            repo: &repo,
            repo_root: &repo_root,
            base: &base,
            mode,
            worker: &worker_id,
            attempt,
            agent: &agent,
            profile: &profile,
            prompts: &prompts,
            gathered: &mut gathered,
            search_path: search_path.as_deref(),
            program,
            token: settings.token().map(|token| token.secret.clone()),
        },
    )
    .await?;
    let PreparedWorker {
        worktree,
        git_time,
        invocation,
        program,
    } = prepared;
    let path = worktree.path.clone();

    // 7. `.crew/supervisor.json`: the invocation with the token replaced by where it comes from.
    worker::write_spec(
        &path,
        &SupervisorSpec {
            invocation: worker::StoredInvocation::from_invocation(&invocation),
            program,
            log_path: SupervisorConfig::default_log_path(&path, &worker_id),
            lease: held,
            renew_every_secs: config.workers.renew_every.as_secs(),
            ttl_secs: config.workers.lease_ttl.as_secs(),
            grace_millis: GRACE_MILLIS,
            // Only while attempts remain (a retry past the limit is a maintainer's one-off).
            replacement: (config.workers.replace_on_handover
                && announced < u64::from(max_attempts))
            .then(|| Replacement {
                repo_root: repo_root.clone(),
                config: settings.config_path.clone(),
                repo: repo.to_string(),
                host: settings.host.clone(),
                agent: agent.clone(),
                profile: profile_name.clone(),
            }),
        },
    )
    .map_err(CrewError::internal)?;
    crashpoint("spec");

    // 8. The supervisor, detached; dispatch returns once it runs the agent.
    let supervisor_log = path.join(CREW_DIR).join("logs").join("supervisor.log");
    let supervisor =
        worker::spawn_supervisor(&crew_exe, &path, &supervisor_log, Some(&dispatching))
            .map_err(CrewError::internal)?;
    // This host's process table (a cache: reconcile also finds workers by their worktrees).
    let row = crate::cache::ProcessRow {
        worker_id: worker_id.clone(),
        issue: number,
        attempt,
        pid: Some(supervisor.pid),
        start_time: Some(supervisor.start_time),
        started_at: ctx.clock.now(),
        log_path: Some(SupervisorConfig::default_log_path(&path, &worker_id)),
        worktree: Some(path.clone()),
        agent: Some(agent.clone()),
        runtime: Some(args.runtime.as_str().to_owned()),
    };
    if let Err(error) = ctx.cache().await?.record_process(&row).await {
        ctx.printer.warn(format_args!(
            "#{number}: could not record the supervisor: {error}"
        ));
    }
    crashpoint("spawn");
    let agent_pid = wait_for_agent(&path, &worker_id, &supervisor, &supervisor_log).await?;

    Ok(DispatchView {
        issue: number,
        attempt,
        worker: worker_id,
        agent,
        profile: profile_name,
        runtime: args.runtime.as_str(),
        branch: worktree.branch,
        worktree: path.to_string_lossy().into_owned(),
        comment_id: posted.comment_id,
        pid: supervisor.pid,
        agent_pid,
        resumed: post_mode == PostMode::Resume,
        timings: DispatchTimings {
            total_ms: millis(started.elapsed()),
            git_ms: millis(git_time),
        },
    })
}

/// After winning the lease of a fill's dispatch: counts the live leases of every host again,
/// ours included, and when there are more than `workers.max` (or more on this host than
/// `workers.max_per_host`) releases ours and gives up (exit 4: the slot race was lost).
///
/// Why this never over-fills, with no global lock: two racing fills A and B both keep their
/// leases only if each counted before the other's lease existed; but each counts after its own
/// lease was written, so A counted before B wrote, which was before B counted, which was before A
/// wrote — a contradiction. At worst both see the excess and both let go; the next cycle fills
/// the slot. The lease read is the cached, conditional one, so it costs one request plus the
/// lease commits written since the fill's observation.
async fn verify_slots(
    ctx: &Ctx,
    github: &GitHub,
    repo: &crate::settings::RepoSlug,
    held: &HeldLease,
    limits: SlotLimits,
) -> Result<(), CrewError> {
    let reader = ctx.github().await?;
    let prefix = &ctx.settings.config.lease_ref_prefix;
    let leases = reader.leases(repo, prefix).await?;
    let now = chrono::Utc::now();
    let live: Vec<_> = leases
        .iter()
        .filter(|lease| lease.status(now) == Some(LeaseStatus::Live) || lease.lease.is_err())
        .collect();
    let here = live
        .iter()
        .filter(|lease| {
            lease
                .lease
                .as_ref()
                .is_ok_and(|lease| lease.host == held.lease.host)
        })
        .count();
    let (used, used_here) = (
        u32::try_from(live.len()).unwrap_or(u32::MAX),
        u32::try_from(here).unwrap_or(u32::MAX),
    );
    if used <= limits.max && used_here <= limits.max_per_host {
        return Ok(());
    }
    match github.release_lease(repo, held, now).await {
        Ok(_) | Err(LeaseWriteError::Superseded { .. }) => {}
        Err(error) => return Err(error.into()),
    }
    Err(CrewError::lost_race(format!(
        "#{}: no free slot after all ({used} live workers of {} allowed, {used_here} on this \
         host of {}); let the lease go",
        held.lease.issue, limits.max, limits.max_per_host
    )))
}

/// The `handover` that closes a recovered attempt, by an op derived from it (found again by a
/// re-run rather than posted twice).
async fn post_recovery(
    ctx: &Ctx,
    github: &GitHub,
    prompts: &Prompts,
    repo: &crate::settings::RepoSlug,
    number: u64,
    recovery: &Recovery,
    host: &str,
) -> Result<(), CrewError> {
    let event = Event {
        issue: number,
        attempt: u64::from(recovery.attempt),
        worker: recovery.worker.clone(),
        op: format!("recover-{}-{}", recovery.worker, recovery.attempt),
        at: chrono::Utc::now(),
        body: EventBody::Handover(crate::protocol::Handover {
            summary: format!(
                "Host {} stopped renewing the lease of attempt {} (it expired at {}); host {host} \
                 recovered the issue. Whatever that attempt pushed to the branch is kept.",
                recovery.host,
                recovery.attempt,
                crate::observe::timestamp(recovery.expired_at)
            ),
            next_steps: vec![
                "Check the branch for the previous attempt's commits and continue from them."
                    .to_owned(),
            ],
            files: Vec::new(),
            base_sha: None,
            head_sha: None,
        }),
    };
    let body = prompts.comment_body(&event, &CommentContext::from_event(&event))?;
    github
        .post_event(repo, number, &event, &body, PostMode::Resume)
        .await?;
    ctx.printer.verbose(format!(
        "#{number}: recovered attempt {} from host {}",
        recovery.attempt, recovery.host
    ));
    Ok(())
}

/// What a worker's worktree is prepared from: by a local dispatch, and by `crew run-worker`
/// on an Actions runner, the same way.
pub(crate) struct WorkerPlan<'a> {
    pub repo: &'a crate::settings::RepoSlug,
    pub repo_root: &'a Path,
    pub base: &'a str,
    pub mode: CheckoutMode,
    pub worker: &'a str,
    pub attempt: u32,
    pub agent: &'a str,
    pub profile: &'a Profile,
    pub prompts: &'a Prompts,
    pub gathered: &'a mut brief::Gathered,
    pub search_path: Option<&'a std::ffi::OsStr>,
    /// The program resolved before any write, used when the worktree's own lookup fails.
    pub program: Option<PathBuf>,
    /// The token the agent may get (its profile decides).
    pub token: Option<crate::settings::Secret>,
}

/// A worker's worktree, ready for its agent.
pub(crate) struct PreparedWorker {
    pub worktree: workspace::Worktree,
    /// Time spent in git preparing the worktree.
    pub git_time: std::time::Duration,
    /// The agent's command, with the token where its profile allows it.
    pub invocation: agents::AgentInvocation,
    pub program: PathBuf,
}

/// The worktree and branch (a fresh base, or the issue's branch and its work), then
/// `.crew/context.json` and `.crew/prompt.md` (the prompt with the previous attempt's changes),
/// then the agent's invocation. Each step is safe to crash after; `CREW_FAULT_KILL_AFTER` can
/// kill the process after each (`worktree`, `context`, `prompt`).
pub(crate) async fn prepare_worker(
    ctx: &Ctx,
    plan: WorkerPlan<'_>,
) -> Result<PreparedWorker, CrewError> {
    let settings = &ctx.settings;
    let config = &settings.config;
    let number = plan.gathered.issue.number;
    let git_started = std::time::Instant::now();
    let worktree = {
        let repo_root = plan.repo_root.to_path_buf();
        let repo_name = plan.repo.name().to_owned();
        let base = plan.base.to_owned();
        let title = plan.gathered.issue.title.clone();
        let workers = config.workers.clone();
        let (attempt, mode) = (plan.attempt, plan.mode);
        tokio::task::spawn_blocking(move || {
            workspace::prepare_worktree(
                &WorktreeRequest {
                    repo_root: &repo_root,
                    repo_name: &repo_name,
                    base: &base,
                    issue: number,
                    title: &title,
                    attempt,
                    mode,
                },
                &workers,
            )
        })
        .await
        .map_err(CrewError::internal)??
    };
    let path = worktree.path.clone();
    workspace::ensure_crew_excluded(&path)?;
    let git_time = git_started.elapsed();
    crashpoint("worktree");

    workspace::write_context(
        &path,
        &WorkerContext {
            issue: number,
            attempt: plan.attempt,
            worker: plan.worker.to_owned(),
            branch: worktree.branch.clone(),
            base: plan.base.to_owned(),
            repo: plan.repo.to_string(),
            api_url: settings.api_url.to_string(),
            profile: plan.profile.name.clone(),
        },
    )?;
    crashpoint("context");

    // The lease's attempt is authoritative (a lease can be ahead of the comments).
    plan.gathered.attempt = u64::from(plan.attempt);
    let mut context = plan.gathered.prompt_context(
        plan.repo,
        config,
        Placement {
            worker: plan.worker.to_owned(),
            agent: plan.agent,
            profile: plan.profile,
            branch: worktree.branch.clone(),
            worktree: &path,
            base: plan.base.to_owned(),
            base_sha: Some(worktree.base_sha.clone()),
            crew: brief::crew_program(&path, plan.search_path),
        },
    );
    // What the previous attempt changed, from this worktree (which holds its commits).
    if let Some(handover) = &mut context.handover
        && let (Some(from), Some(to)) = (&handover.base_sha, &handover.head_sha)
    {
        handover.diff_stat = workspace::diff_stat_between(&path, from, to);
    }
    let prompt = plan.prompts.render_worker(&context)?;
    let prompt_path = path.join(CREW_DIR).join(brief::PROMPT_FILE);
    write_file(&prompt_path, prompt.as_bytes())?;
    crashpoint("prompt");

    let invocation = agents::build(
        plan.agent,
        &plan.profile.name,
        config,
        InvocationContext {
            prompt_file: prompt_path,
            prompt_text: prompt,
            issue: number,
            worktree: path.clone(),
            token: plan.token,
        },
    )?;
    let program = match agents::check_available(&invocation, plan.search_path) {
        Ok(program) => program,
        Err(error) => plan.program.ok_or(error)?,
    };
    Ok(PreparedWorker {
        worktree,
        git_time,
        invocation,
        program,
    })
}

/// The agent's program, resolved before anything is written, as it will be found from the
/// planned worktree (or the clone, before the worktree exists): a missing agent is a clear
/// error before any side effect.
pub(crate) fn probe_program(
    config: &crate::settings::Config,
    agent: &str,
    profile_name: &str,
    number: u64,
    planned_worktree: &Path,
    repo_root: &Path,
    search_path: Option<&std::ffi::OsStr>,
) -> Result<PathBuf, CrewError> {
    let probe = agents::build(
        agent,
        profile_name,
        config,
        InvocationContext {
            prompt_file: planned_worktree.join(CREW_DIR).join(brief::PROMPT_FILE),
            prompt_text: String::new(),
            issue: number,
            worktree: planned_worktree.to_path_buf(),
            token: None,
        },
    )?;
    let cwd = if planned_worktree.is_dir() {
        planned_worktree.to_path_buf()
    } else {
        repo_root.to_path_buf()
    };
    Ok(agents::check_available(
        &agents::AgentInvocation { cwd, ..probe },
        search_path,
    )?)
}

/// How this dispatch holds its lease.
enum Placing {
    /// Acquired now: a new attempt.
    Fresh(HeldLease),
    /// The lease of an interrupted dispatch of ours on this host, reclaimed at its tip.
    Resume(HeldLease),
}

/// The worker and attempt of the newest `assigned` event when it is this host's and nothing has
/// happened since (its agent never reported `started`): a dispatch that may have been cut short.
fn own_assignment(state: &IssueState, host: &str) -> Option<(String, u32)> {
    if state.state != State::Assigned {
        return None;
    }
    let last = state.events.last()?;
    match &last.event.body {
        EventBody::Assigned(assignment) if assignment.host.as_deref() == Some(host) => Some((
            last.event.worker.clone(),
            u32::try_from(last.event.attempt).ok()?,
        )),
        _ => None,
    }
}

/// Whether the lease of `worker`'s `attempt` is ours to finish placing: still that attempt's at
/// its tip, held and live, and no supervisor runs for it here (a supervisor that runs means the
/// worker is placed: LostRace). `None` when the lease moved on or lapsed: then a new attempt.
#[allow(clippy::too_many_arguments)]
async fn resumable(
    github: &GitHub,
    settings: &crate::settings::Settings,
    repo: &crate::settings::RepoSlug,
    repo_root: &Path,
    number: u64,
    worker_id: &str,
    attempt: u32,
    runtime: Runtime,
) -> Result<Option<Placing>, CrewError> {
    let held = match github
        .reclaim_lease(
            repo,
            &settings.config.lease_ref_prefix,
            number,
            worker_id,
            attempt,
        )
        .await
    {
        Ok(held) => held,
        Err(LeaseWriteError::Superseded { .. }) => return Ok(None),
        Err(error) => return Err(error.into()),
    };
    let live = held.lease.state == LeaseState::Held
        && held.lease.status(chrono::Utc::now()) == LeaseStatus::Live;
    if !live {
        return Ok(None);
    }
    // Placed already: a worker of another runtime, or an actions worker whose workflow this
    // clone has requested.
    let placed_elsewhere = held.lease.runtime != runtime.as_str()
        || (runtime == Runtime::Actions
            && crate::runtime_actions::workflow_requested(repo_root, number, worker_id, attempt));
    if placed_elsewhere {
        return Err(LeaseWriteError::LostRace {
            issue: number,
            holder: Some(held.lease),
        }
        .into());
    }
    let repo_root = repo_root.to_path_buf();
    let worktrees = tokio::task::spawn_blocking(move || workspace::worker_worktrees(&repo_root))
        .await
        .map_err(CrewError::internal)??;
    let supervised = worktrees.iter().any(|(path, context)| {
        context.worker == worker_id && context.attempt == attempt && lock::supervisor_running(path)
    });
    if supervised {
        return Err(LeaseWriteError::LostRace {
            issue: number,
            holder: Some(held.lease),
        }
        .into());
    }
    Ok(Some(Placing::Resume(held)))
}

/// A worker id no other attempt shares: the time, this process and a per-process counter (two
/// attempts of one issue can start within a second: a handover's replacement, a retry), ending
/// with the issue number for whoever reads it.
fn new_worker_id(now: chrono::DateTime<chrono::Utc>, number: u64) -> String {
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let count = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!(
        "worker-{}-{:x}{count:x}-{number}",
        now.timestamp(),
        std::process::id()
    )
}

/// The `op` of the `assigned` event of `worker`: one per worker id (a worker id names one
/// attempt), so a resumed dispatch finds the comment an interrupted one posted.
fn assigned_op(worker: &str) -> String {
    format!("assigned-{worker}")
}

/// How long dispatch waits for the supervisor to report the agent running.
const AGENT_START_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Waits until the supervisor has recorded the agent's pid for `worker` in `.crew/worker.json`;
/// an error (with where the supervisor logged why) when the supervisor exits first.
async fn wait_for_agent(
    worktree: &Path,
    worker_id: &str,
    supervisor: &ProcessIdentity,
    supervisor_log: &Path,
) -> Result<u32, CrewError> {
    let deadline = tokio::time::Instant::now() + AGENT_START_TIMEOUT;
    loop {
        if let Ok(Some(record)) = workspace::read_worker(worktree)
            && record.worker == worker_id
            && record.pid != 0
        {
            return Ok(record.pid);
        }
        if !worker::is_alive(supervisor) || tokio::time::Instant::now() >= deadline {
            // One last look: it may have recorded the agent and finished already.
            if let Ok(Some(record)) = workspace::read_worker(worktree)
                && record.worker == worker_id
            {
                return Ok(record.pid);
            }
            return Err(CrewError::internal(format!(
                "the supervisor (pid {}) did not start the agent; see {}",
                supervisor.pid,
                supervisor_log.display()
            ))
            .with_hint("the lease stays held until it expires; `crew gc` or another dispatch finishes the job"));
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

fn write_file(path: &PathBuf, bytes: &[u8]) -> Result<(), CrewError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(CrewError::internal)?;
    }
    std::fs::write(path, bytes).map_err(CrewError::internal)
}
