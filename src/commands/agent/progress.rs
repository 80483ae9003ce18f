//! `crew progress <message>`: a milestone, posted as a `progress` event.
//!
//! Each call is a new fact, so each gets a fresh op (posted once; a lost response is checked
//! before any re-send, see [`crate::github::PostMode::FirstTry`]). A run that failed anyway
//! (exit 3) leaves its op in `.crew/pending-progress`, and a rerun with the same message resumes
//! it instead of posting twice ([`super::Worker::pending_op`]).

use clap::Args;

use super::{AgentView, Worker, print};
use crate::context::Ctx;
use crate::error::CrewError;
use crate::protocol::{EventBody, State};

/// Report a milestone on the issue ("tests reproduce the bug", "fix done, running the suite")
#[derive(Debug, Args)]
#[command(after_help = r#"Examples:
  crew progress "Tests pass; now the docs"  Report a milestone on the issue"#)]
pub struct ProgressArgs {
    /// What happened, in a sentence
    #[arg(value_name = "MESSAGE", required = true, num_args = 1..)]
    pub message: Vec<String>,
}

pub async fn run(ctx: &Ctx, args: &ProgressArgs) -> Result<(), CrewError> {
    let message = args.message.join(" ");
    if message.trim().is_empty() {
        return Err(CrewError::usage("the progress message is empty"));
    }
    let worker = Worker::locate(ctx)?;
    let github = worker.github(ctx).await?;
    worker.fence(&github).await?;
    worker.ensure_started(ctx, &github).await?;
    let text = message.trim().to_owned();
    let (op, mode) = worker.pending_op("progress", &text)?;
    let event = worker.event(op, EventBody::Progress { message: text });
    let posted = worker.post(&github, &event, mode).await?;
    worker.posted_pending("progress");
    worker.mirror(ctx, &github, State::Working).await;
    let view = AgentView::new(&worker).posted("progress", &posted);
    print(
        ctx,
        &view,
        &format!("progress posted on #{}", worker.context.issue),
    )
}
