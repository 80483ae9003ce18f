//! `crew blocked <question>`: the agent cannot go on without a maintainer's decision
//! (`working` → `blocked`; the board shows Blocked).
//!
//! `.crew/finished` says `blocked`, so when the agent ends its session as its prompt tells it
//! to, the supervisor knows this is no crash: it saves the work as a WIP commit and releases the
//! lease without a handover, and `crew answer` then starts the next attempt with the question and
//! its answer. An agent that instead waits for the answer (`crew wait --for answered`) keeps the
//! lease; its next agent-side command clears the marker.
//!
//! Killed between the comment and the marker (crash point `blocked:comment`, see
//! [`crate::fault`]), the supervisor finds no marker when the session ends; it looks for the
//! attempt's own closing event first, finds the unanswered `blocked`, and settles the attempt as
//! it would with the marker: the work saved, the lease released, no salvage `handover`. An agent
//! that instead asks again finds its first comment: the op stays pending (`.crew/pending-blocked`)
//! until the command is through, not only until the post.

use clap::Args;

use super::{AgentView, Worker, print};
use crate::context::Ctx;
use crate::error::CrewError;
use crate::fault::crashpoint;
use crate::protocol::{EventBody, State};

/// Ask a maintainer one specific question you cannot go on without, then end your session
#[derive(Debug, Args)]
#[command(after_help = r#"Examples:
  crew blocked "Should the cache be per user or global?"
      Ask; the worker waits for `crew answer`"#)]
pub struct BlockedArgs {
    /// The question
    #[arg(value_name = "QUESTION", required = true, num_args = 1..)]
    pub question: Vec<String>,
}

pub async fn run(ctx: &Ctx, args: &BlockedArgs) -> Result<(), CrewError> {
    let question = args.question.join(" ");
    if question.trim().is_empty() {
        return Err(CrewError::usage("the question is empty"));
    }
    let worker = Worker::locate(ctx)?;
    let github = worker.github(ctx).await?;
    worker.fence(&github).await?;
    worker.ensure_started(ctx, &github).await?;
    let text = question.trim().to_owned();
    let (op, mode) = worker.pending_op("blocked", &text)?;
    let event = worker.event(op, EventBody::Blocked { question: text });
    let posted = worker.post(&github, &event, mode).await?;
    crashpoint("blocked:comment");
    worker.mark_finished("blocked")?;
    worker.mirror(ctx, &github, State::Blocked).await;
    // Only now: a run killed before this point left the op pending, so the agent's re-run with
    // the same question finds the first comment instead of asking twice.
    worker.posted_pending("blocked");
    let view = AgentView::new(&worker).posted("blocked", &posted);
    print(
        ctx,
        &view,
        &format!(
            "question posted on #{}; end your session, the answer reaches you or the next attempt",
            worker.context.issue
        ),
    )
}
