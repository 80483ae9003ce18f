//! `crew progress <message>`: a milestone, posted as a `progress` event.
//!
//! Each call is a new fact, so each gets a fresh op (posted once; a lost response is checked
//! before any re-send, see [`crate::github::PostMode::FirstTry`]).

use clap::Args;

use super::{AgentView, Worker, new_op_id, print};
use crate::context::Ctx;
use crate::error::CrewError;
use crate::github::PostMode;
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
    let github = worker.github()?;
    worker.fence(&github).await?;
    worker.ensure_started(ctx, &github).await?;
    let event = worker.event(
        new_op_id(),
        EventBody::Progress {
            message: message.trim().to_owned(),
        },
    );
    let posted = worker.post(&github, &event, PostMode::FirstTry).await?;
    worker.mirror(ctx, &github, State::Working).await;
    let view = AgentView::new(&worker).posted("progress", &posted);
    print(
        ctx,
        &view,
        &format!("progress posted on #{}", worker.context.issue),
    )
}
