//! `crew retry <issue>` and `crew reassign <issue> --agent NAME | --profile NAME`: a maintainer
//! starts the next attempt of an issue whose last one ended without finishing it (DESIGN.md 2.3:
//! `failed ─(retry)→ assigned(attempt+1) | needs_human`).
//!
//! - `retry` keeps the last attempt's agent and profile; `reassign` changes either. Both are a
//!   dispatch of the next attempt on the same branch (its WIP and the last handover reach the new
//!   prompt), so they are refused, with what to do instead, when the issue has no attempt yet
//!   (`crew dispatch`), is finished (`completed`, `cancelled`), is waiting for review
//!   (`request-changes`), or still has a live worker.
//! - `needs_human` is where `workers.max_attempts` stops automatic attempts; a maintainer's
//!   retry is the explicit go-ahead for one more, past the limit.

use std::io::Write;

use clap::Args;

use crate::commands::dispatch::DispatchView;
use crate::commands::maintainer::Maintained;
use crate::context::Ctx;
use crate::error::CrewError;
use crate::protocol::State;

/// Start the next attempt of an issue whose last attempt failed, handed over or died
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  crew retry 42  Start #42's next attempt after a failure, handover or crash")]
pub struct RetryArgs {
    /// The issue number
    pub issue: u64,
}

/// Start the next attempt of an issue with another agent or profile
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("with").required(true).multiple(true))]
#[command(after_help = "Examples:
  crew reassign 42 --agent codex       Start #42's next attempt with codex
  crew reassign 42 --profile research  ... with the `research` tool profile")]
pub struct ReassignArgs {
    /// The issue number
    pub issue: u64,

    /// The agent for the next attempt
    #[arg(long, value_name = "NAME", group = "with")]
    pub agent: Option<String>,

    /// The tool profile for the next attempt
    #[arg(long, value_name = "NAME", group = "with")]
    pub profile: Option<String>,
}

pub async fn retry(ctx: &Ctx, args: &RetryArgs) -> Result<(), CrewError> {
    let view = next_attempt(ctx, args.issue, None, None, "retry").await?;
    print(ctx, &view)
}

pub async fn reassign(ctx: &Ctx, args: &ReassignArgs) -> Result<(), CrewError> {
    let view = next_attempt(
        ctx,
        args.issue,
        args.agent.clone(),
        args.profile.clone(),
        "reassign",
    )
    .await?;
    print(ctx, &view)
}

async fn next_attempt(
    ctx: &Ctx,
    number: u64,
    agent: Option<String>,
    profile: Option<String>,
    command: &str,
) -> Result<DispatchView, CrewError> {
    let issue = Maintained::load(ctx, number).await?;
    let state = issue.state();
    match state {
        State::Failed | State::NeedsHuman | State::Handover => {}
        // An attempt is under way on paper: only when its worker is gone.
        State::Assigned | State::Working | State::Blocked => {
            if issue.worker_alive(ctx).await? {
                return Err(CrewError::user(format!(
                    "cannot {command} #{number}: its worker ({}) is still running",
                    issue.gathered.state.worker.as_deref().unwrap_or("unknown")
                ))
                .with_hint(format!(
                    "wait for it to hand over or fail, or `crew cancel {number}`"
                )));
            }
        }
        State::InReview | State::Approved => {
            return Err(issue.illegal(command).with_hint(format!(
                "`crew request-changes {number}` sends a pull request back for another attempt"
            )));
        }
        State::Unassigned => {
            return Err(issue
                .illegal(command)
                .with_hint(format!("`crew dispatch {number}` starts its first attempt")));
        }
        State::Completed | State::Cancelled => return Err(issue.illegal(command)),
    }
    issue.dispatch_next(ctx, agent, profile, true).await
}

fn print(ctx: &Ctx, view: &DispatchView) -> Result<(), CrewError> {
    if ctx.settings.json {
        return ctx.printer.json(view);
    }
    ctx.printer.out(|w| render(w, view))
}

fn render(w: &mut dyn Write, view: &DispatchView) -> std::io::Result<()> {
    writeln!(
        w,
        "dispatched #{} attempt {} with agent {} (profile {}), worker {} (pid {})",
        view.issue, view.attempt, view.agent, view.profile, view.worker, view.pid
    )
}
