//! `crew fail <reason>`: the issue cannot be done as asked (`working` → `failed`; the board
//! shows Blocked and, with labels, `crew:needs-human` once attempts run out).
//!
//! The work is saved first (WIP commit, pushed when the profile pushes) so whoever looks at the
//! failure sees what was tried; then the `failed` event, `.crew/finished`, and the lease is
//! released. One failure per attempt: the op is derived from the attempt, so a re-run after a
//! crash finds the comment already posted.
//!
//! Killed after the comment (crash points `fail:comment`, `fail:finished`, see
//! [`crate::fault`]), it converges without a re-run: the supervisor finds the attempt's own
//! `failed` (no marker) or the marker, posts nothing more, and releases the lease this command
//! did not get to; the next `crew loop` then retries the issue or leaves it to a human.

use clap::Args;

use super::{AgentView, Worker, print, short};
use crate::context::Ctx;
use crate::error::CrewError;
use crate::fault::crashpoint;
use crate::github::PostMode;
use crate::protocol::{EventBody, State};

/// Give up on the issue because it cannot be done as asked (wrong, impossible, a duplicate)
#[derive(Debug, Args)]
#[command(after_help = r#"Examples:
  crew fail "The API the issue asks for does not exist"
      Give up on the issue, saying why"#)]
pub struct FailArgs {
    /// Why, in one or two sentences
    #[arg(value_name = "REASON", required = true, num_args = 1..)]
    pub reason: Vec<String>,
}

pub async fn run(ctx: &Ctx, args: &FailArgs) -> Result<(), CrewError> {
    let reason = args.reason.join(" ").trim().to_owned();
    if reason.is_empty() {
        return Err(CrewError::usage("the reason is empty"));
    }
    let worker = Worker::locate(ctx)?;
    let github = worker.github(ctx).await?;
    let held = worker.fence(&github).await?;
    let issue = worker.context.issue;
    let attempt = worker.context.attempt;
    let first_line = reason.lines().next().unwrap_or_default();
    let saved = worker
        .save_work(
            ctx,
            format!(
                "WIP: #{issue} attempt {attempt} failed\n\n{first_line}\n\n\
                 Committed by `crew fail` so the work tried is not lost."
            ),
        )
        .await?;
    let event = worker.event(
        worker.derived_op("failed", None),
        EventBody::Failed { reason },
    );
    let posted = worker.post(&github, &event, PostMode::Resume).await?;
    crashpoint("fail:comment");
    worker.mirror(ctx, &github, State::Failed).await;
    worker.mark_finished("failed")?;
    crashpoint("fail:finished");
    let released = worker.release(ctx, &github, &held).await?;
    let view = AgentView {
        head_sha: Some(saved.head_sha.clone()),
        pushed: saved.pushed,
        lease_released: released,
        ..AgentView::new(&worker).posted("failed", &posted)
    };
    print(
        ctx,
        &view,
        &format!(
            "failed #{issue} attempt {attempt} (work saved at {}); you can stop now",
            short(&saved.head_sha)
        ),
    )
}
