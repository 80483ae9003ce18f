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

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use clap::{Args, ValueEnum};
use serde::Serialize;

use crate::agents::{self, InvocationContext, Profile};
use crate::commands::brief::{self, Placement};
use crate::context::Ctx;
use crate::error::CrewError;
use crate::github::{Board, GitHub, GitHubConfig, LeaseRequest, PostMode};
use crate::prompt::{CommentContext, Prompts};
use crate::protocol::{Assignment, Event, EventBody, State};
use crate::settings::Env;
use crate::worker::{self, SupervisorConfig, SupervisorSpec};
use crate::workspace::{self, CREW_DIR, CheckoutMode, WorkerContext, WorktreeRequest};

/// How long the supervisor gives the agent after each signal when it has to stop it.
const GRACE_MILLIS: u64 = 10_000;

/// Where a worker runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Runtime {
    /// A detached supervisor process on this machine.
    #[default]
    Local,
}

impl Runtime {
    fn as_str(self) -> &'static str {
        match self {
            Runtime::Local => "local",
        }
    }
}

/// Start a worker on each issue: take its lease, announce it, prepare its worktree and run the
/// agent under a detached supervisor
#[derive(Debug, Args)]
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
}

/// One started worker, as `--json` prints it.
#[derive(Debug, Serialize)]
pub struct DispatchView {
    pub issue: u64,
    pub attempt: u32,
    pub worker: String,
    pub agent: String,
    pub profile: String,
    pub branch: Option<String>,
    pub worktree: String,
    /// The `assigned` comment.
    pub comment_id: u64,
    /// The supervisor's pid.
    pub pid: u32,
}

pub async fn run(ctx: &Ctx, args: &DispatchArgs) -> Result<(), CrewError> {
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
    writeln!(
        w,
        "dispatched #{} attempt {} worker {} (pid {}) worktree {}",
        view.issue, view.attempt, view.worker, view.pid, view.worktree
    )
}

async fn dispatch_one(
    ctx: &Ctx,
    args: &DispatchArgs,
    number: u64,
) -> Result<DispatchView, CrewError> {
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
            ));
        }
    };

    let github = GitHub::new(GitHubConfig::from_settings(settings), None)?;
    // The token's login, remembered in the cache after the first ask on this host.
    let own_login = crate::observe::own_login(&github, ctx.cache().await?, settings).await?;
    let mut gathered = brief::gather(&github, settings, &repo, number, own_login).await?;
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
        )));
    }
    let max_attempts = config.workers.max_attempts;
    if gathered.attempt > u64::from(max_attempts) {
        return Err(CrewError::user(format!(
            "#{number} is {} after {} attempts, which is workers.max_attempts; not dispatching it",
            state.state,
            state.attempt.unwrap_or_default()
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
    let prompt_file = |worktree: &Path| worktree.join(CREW_DIR).join(brief::PROMPT_FILE);
    // The program is resolved now, before any side effect, from the planned worktree.
    let program = {
        let probe = agents::build(
            &agent,
            &profile_name,
            config,
            InvocationContext {
                prompt_file: prompt_file(&planned_worktree),
                prompt_text: String::new(),
                issue: number,
                worktree: planned_worktree.clone(),
                token: None,
            },
        )?;
        let cwd = if planned_worktree.is_dir() {
            planned_worktree.clone()
        } else {
            repo_root.clone()
        };
        agents::check_available(
            &agents::AgentInvocation { cwd, ..probe },
            search_path.as_deref(),
        )?
    };
    let base = match &config.base {
        Some(base) => base.clone(),
        None => match workspace::default_base_from_origin(&repo_root) {
            Some(base) => base,
            None => github.repository(&repo).await?.default_branch,
        },
    };
    let crew_exe = std::env::current_exe().map_err(CrewError::internal)?;

    // 1. The lease: from here on the issue is ours (LostRace, exit 4, if it is not).
    let now = ctx.clock.now();
    let worker_id = format!("worker-{}-{number}", now.timestamp());
    let held = github
        .acquire_lease(
            &repo,
            &config.lease_ref_prefix,
            number,
            LeaseRequest {
                base: base.clone(),
                worker: worker_id.clone(),
                host: settings.host.clone(),
                runtime: args.runtime.as_str().to_owned(),
                ttl: chrono::TimeDelta::from_std(config.workers.lease_ttl)
                    .unwrap_or(chrono::TimeDelta::minutes(30)),
                now,
            },
        )
        .await?;
    let attempt = held.lease.attempt;

    // 2. The `assigned` comment.
    let event = Event {
        issue: number,
        attempt: u64::from(attempt),
        worker: worker_id.clone(),
        op: new_op_id(),
        at: now,
        body: EventBody::Assigned(Assignment {
            host: Some(settings.host.clone()),
            agent: Some(agent.clone()),
            profile: Some(profile_name.clone()),
            branch: branch.clone(),
            worktree: Some(planned_worktree.to_string_lossy().into_owned()),
        }),
    };
    let body = prompts.comment_body(&event, &CommentContext::from_event(&event))?;
    let posted = github
        .post_event(&repo, number, &event, &body, PostMode::FirstTry)
        .await?;

    // 3. The board and labels: best effort. The labels just read serve (saves a GET).
    let board = Board::new(settings, &repo);
    let mut mirrored = board
        .set_state(&github, &repo, number, State::Assigned)
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

    // 4. The worktree and branch (blocking git, off the runtime's threads).
    let worktree = {
        let repo_root = repo_root.clone();
        let repo_name = repo.name().to_owned();
        let base = base.clone();
        let title = issue.title.clone();
        let workers = config.workers.clone();
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

    // 5. `.crew/context.json`.
    workspace::write_context(
        &path,
        &WorkerContext {
            issue: number,
            attempt,
            worker: worker_id.clone(),
            branch: worktree.branch.clone(),
            base: base.clone(),
            repo: repo.to_string(),
            api_url: settings.api_url.to_string(),
            profile: profile_name.clone(),
        },
    )?;

    // 6. `.crew/prompt.md`.
    // The lease's attempt is authoritative (a lease can be ahead of the comments).
    gathered.attempt = u64::from(attempt);
    let prompt = prompts.render_worker(&gathered.prompt_context(
        &repo,
        config,
        Placement {
            worker: worker_id.clone(),
            agent: &agent,
            profile: &profile,
            branch: worktree.branch.clone(),
            worktree: &path,
            base: base.clone(),
            base_sha: Some(worktree.base_sha.clone()),
            crew: brief::crew_program(&path, search_path.as_deref()),
        },
    ))?;
    let prompt_path = prompt_file(&path);
    write_file(&prompt_path, prompt.as_bytes())?;

    // 7. `.crew/supervisor.json`: the invocation with the token replaced by where it comes from.
    let invocation = agents::build(
        &agent,
        &profile_name,
        config,
        InvocationContext {
            prompt_file: prompt_path,
            prompt_text: prompt,
            issue: number,
            worktree: path.clone(),
            token: settings.token().map(|token| token.secret.clone()),
        },
    )?;
    let program = agents::check_available(&invocation, search_path.as_deref()).unwrap_or(program);
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
        },
    )
    .map_err(CrewError::internal)?;

    // 8. The supervisor, detached.
    let supervisor_log = path.join(CREW_DIR).join("logs").join("supervisor.log");
    let supervisor =
        worker::spawn_supervisor(&crew_exe, &path, &supervisor_log).map_err(CrewError::internal)?;

    Ok(DispatchView {
        issue: number,
        attempt,
        worker: worker_id,
        agent,
        profile: profile_name,
        branch: worktree.branch,
        worktree: path.to_string_lossy().into_owned(),
        comment_id: posted.comment_id,
        pid: supervisor.pid,
    })
}

fn write_file(path: &PathBuf, bytes: &[u8]) -> Result<(), CrewError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(CrewError::internal)?;
    }
    std::fs::write(path, bytes).map_err(CrewError::internal)
}

/// A fresh op id: the time in nanoseconds, this process's id and a per-process counter, so two
/// dispatches (even of one issue, even in one process) never share one.
fn new_op_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or_default();
    format!(
        "op-{nanos:x}-{:x}-{:x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn op_ids_are_unique() {
        let first = new_op_id();
        let second = new_op_id();
        assert_ne!(first, second);
        assert!(first.starts_with("op-"));
    }
}
