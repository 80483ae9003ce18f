//! `crew supervise --worktree PATH` (hidden): the per-worker supervisor process of runtime
//! `local` (DESIGN.md 3). `crew dispatch` starts it detached with
//! [`worker::spawn_supervisor`](crate::worker::spawn_supervisor); nobody types it.
//!
//! It reads `.crew/context.json` (who the worker is, which repository and API) and
//! `.crew/supervisor.json` (what to run, the held lease), resolves the token from its own
//! environment as every crew command does (never from a file), and runs the agent under
//! [`worker::run`](crate::worker::run) until it exits or SIGTERM/SIGINT cancels it. It holds
//! `.crew/supervisor.lock` while it lives ([`worker::lock`]), which is how every other crew
//! command knows, without trusting a pid, whether the worker is still supervised.

use std::path::PathBuf;

use clap::Args;

use crate::context::Ctx;
use crate::error::CrewError;
use crate::github::{GitHub, GitHubConfig};
use crate::settings::RepoSlug;
use crate::worker::{self, SupervisorConfig, lock};
use crate::workspace;

/// Supervise one worker's agent (started by `crew dispatch`)
#[derive(Debug, Args)]
pub struct SuperviseArgs {
    /// The worker's worktree
    #[arg(long)]
    pub worktree: PathBuf,

    /// The descriptor of the dispatch lock this process inherited from `crew dispatch`: held
    /// until the supervisor lock is, then closed
    #[arg(long, value_name = "FD")]
    pub dispatch_lock_fd: Option<i32>,
}

pub async fn run(ctx: &Ctx, args: &SuperviseArgs) -> Result<(), CrewError> {
    let cancel = termination();
    let worktree = args.worktree.clone();
    // One supervisor per worktree, held until this process dies however it dies: a second one
    // (started by a dispatch that resumed while this one was starting) leaves at once.
    let lock_path = lock::supervisor_lock_path(&worktree);
    // The dispatch that started us holds its issue's dispatch lock, and so do we (inherited):
    // until we hold the supervisor lock, a second dispatch must still see a dispatch at work,
    // even if ours was killed the moment it spawned us. Let go of it once ours is taken (or
    // refused), before any agent could inherit it.
    let inherited = args.dispatch_lock_fd.and_then(lock::adopt_inherited);
    let taken = lock::take_supervisor_lock(&worktree).await;
    drop(inherited);
    let Some(lock_guard) = taken.map_err(CrewError::internal)? else {
        ctx.printer.warn(format_args!(
            "another supervisor holds {}; leaving this worker to it",
            lock_path.display()
        ));
        return Ok(());
    };
    let context = workspace::read_context(&worktree)?.ok_or_else(|| {
        CrewError::user(format!(
            "{} has no .crew/context.json; not a worker's worktree",
            worktree.display()
        ))
    })?;
    let spec = worker::read_spec(&worktree)
        .map_err(CrewError::internal)?
        .ok_or_else(|| {
            CrewError::user(format!(
                "{} has no .crew/{}",
                worktree.display(),
                worker::SUPERVISOR_FILE
            ))
        })?;
    let repo: RepoSlug = context
        .repo
        .parse()
        .map_err(|error| CrewError::user(format!("{error}")))?;
    let api_url = url::Url::parse(&context.api_url)
        .map_err(|error| CrewError::user(format!("bad api_url in context.json: {error}")))?;
    let token = ctx.settings.token().map(|token| token.secret.clone());
    let github = GitHub::new(
        GitHubConfig::new(api_url, token.clone()).with_timeout(ctx.settings.http_timeout),
        None,
    )?;
    let config = SupervisorConfig {
        worktree: worktree.clone(),
        invocation: spec.invocation.to_invocation(token.as_ref()),
        program: spec.program.clone(),
        log_path: spec.log_path.clone(),
        github,
        repo,
        lease: spec.lease.clone(),
        renew_every: spec.renew_every(),
        ttl: spec.ttl(),
        grace: spec.grace(),
        push: spec.invocation.push,
    };
    let issue = context.issue;
    let outcome = worker::run(config, cancel).await?;
    ctx.printer.verbose(format!(
        "agent {} stopped ({:?}); {} renewals",
        outcome.agent.pid, outcome.exit.reason, outcome.renewals
    ));
    // A handover (the agent's, or our salvage of it) is continued by the next attempt now.
    let handed_over = outcome.exit.finished.as_deref() == Some("handover")
        || (outcome.exit.finished.is_none()
            && outcome.exit.reason == worker::StopReason::Exited
            && outcome.handover_comment.is_some());
    if let (true, Some(replacement)) = (handed_over, &spec.replacement) {
        // The next attempt's supervisor takes this worktree's lock: let go of it first.
        drop(lock_guard);
        let crew = std::env::current_exe().map_err(CrewError::internal)?;
        let log = worktree
            .join(workspace::CREW_DIR)
            .join("logs")
            .join("replacement.log");
        let spawned = replacement
            .command(&crew, issue, &log)
            .and_then(|command| worker::spawn_detached(command, &log));
        match spawned {
            Ok(dispatch) => ctx.printer.verbose(format!(
                "dispatching the next attempt at #{issue} (pid {})",
                dispatch.pid
            )),
            Err(error) => tracing::warn!(%error, "cannot dispatch the next attempt"),
        }
    }
    Ok(())
}

/// Completes on the first SIGTERM or SIGINT. The handlers are installed here, before the agent
/// is spawned, so a signal that arrives while the supervisor is still starting is not fatal to
/// it (the default action) but stops the agent like any later one. If they cannot be installed
/// the supervisor is still stoppable by SIGKILL, so it then waits forever rather than failing.
fn termination() -> impl Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let handlers = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        let (Ok(mut terminate), Ok(mut interrupt)) = handlers else {
            tracing::warn!("cannot install signal handlers; only SIGKILL stops this supervisor");
            std::future::pending::<()>().await;
            return;
        };
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
    }
}
