//! `crew start`: the agent has read its brief and begins (`assigned` → `working`).
//!
//! Once per attempt: the op is derived from the worker and attempt and posted with
//! [`PostMode::Resume`], so a second `crew start` (an agent repeating itself, a re-run after a
//! crash) finds the first comment instead of posting another.

use clap::Args;

use super::{AgentView, Worker, print};
use crate::context::Ctx;
use crate::error::CrewError;
use crate::github::PostMode;
use crate::protocol::{EventBody, State};

/// Tell crew you have started work on the issue (first thing, once you have read the brief)
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  crew start  Tell crew the agent has started (first thing in a worktree)")]
pub struct StartArgs {}

pub async fn run(ctx: &Ctx, _args: &StartArgs) -> Result<(), CrewError> {
    let worker = Worker::locate(ctx)?;
    let github = worker.github(ctx).await?;
    worker.fence(&github).await?;
    let event = worker.event(worker.derived_op("started", None), EventBody::Started {});
    let posted = worker.post(&github, &event, PostMode::Resume).await?;
    worker.record_started()?;
    worker.mirror(ctx, &github, State::Working).await;
    let view = AgentView::new(&worker).posted("started", &posted);
    print(
        ctx,
        &view,
        &format!(
            "started #{} (attempt {})",
            worker.context.issue, worker.context.attempt
        ),
    )
}
