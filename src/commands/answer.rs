//! `crew answer <issue> <text>`: answers a blocked worker's question (DESIGN.md 2.3:
//! `blocked ─answered→ working (live worker) | assigned (respawn)`).
//!
//! The answer is an `answered` event on the issue. A worker that is still alive (its lease is
//! live) is waiting for it with `crew wait --for answered` and carries on in the same attempt;
//! one that has exited is replaced at once by a new attempt on the same branch whose prompt holds
//! the question and the answer (`--no-dispatch` leaves that to `crew fill`).

use std::io::Write;

use clap::Args;
use serde::Serialize;

use crate::commands::dispatch::DispatchView;
use crate::commands::maintainer::Maintained;
use crate::context::Ctx;
use crate::error::CrewError;
use crate::protocol::{EventBody, EventKind};

/// Answer the question a blocked worker asked
#[derive(Debug, Args)]
#[command(after_help = r#"Examples:
  crew answer 42 "Use the v2 API; v1 is going away"
      Answer #42's question; its next attempt starts
  crew answer 42 --no-dispatch "Yes, drop Python 3.8"
      Answer, and leave the restart to `crew fill`"#)]
pub struct AnswerArgs {
    /// The issue number
    pub issue: u64,

    /// The answer (quote it)
    #[arg(required = true, num_args = 1.., value_name = "TEXT")]
    pub text: Vec<String>,

    /// If the worker has exited, do not start the next attempt now
    #[arg(long)]
    pub no_dispatch: bool,
}

/// What `--json` prints.
#[derive(Debug, Serialize)]
pub struct AnswerView {
    pub issue: u64,
    pub question: Option<String>,
    pub comment_id: u64,
    /// True when the worker that asked is still running and receives the answer itself.
    pub worker_alive: bool,
    /// The attempt started to continue with the answer, when the worker had exited.
    pub dispatched: Option<DispatchView>,
}

pub async fn run(ctx: &Ctx, args: &AnswerArgs) -> Result<(), CrewError> {
    let answer = args.text.join(" ");
    if answer.trim().is_empty() {
        return Err(CrewError::usage("the answer is empty"));
    }
    let issue = Maintained::load(ctx, args.issue).await?;
    issue.require(EventKind::Answered, "answer")?;
    let question = issue.gathered.state.question.clone();
    let worker_alive = issue.worker_alive(ctx).await?;
    let posted = issue.post(ctx, EventBody::Answered { answer }).await?;
    let dispatched = if worker_alive || args.no_dispatch {
        None
    } else {
        Some(issue.dispatch_next(ctx, None, None, false).await?)
    };
    let view = AnswerView {
        issue: args.issue,
        question,
        comment_id: posted.comment_id,
        worker_alive,
        dispatched,
    };
    if ctx.settings.json {
        return ctx.printer.json(&view);
    }
    ctx.printer.out(|w| render(w, &view))
}

fn render(w: &mut dyn Write, view: &AnswerView) -> std::io::Result<()> {
    writeln!(w, "answered #{} (comment {})", view.issue, view.comment_id)?;
    match (&view.dispatched, view.worker_alive) {
        (_, true) => writeln!(w, "its worker is running and will read the answer"),
        (Some(next), _) => writeln!(
            w,
            "its worker had exited: dispatched attempt {} (worker {}) to continue",
            next.attempt, next.worker
        ),
        (None, false) => writeln!(
            w,
            "its worker has exited; `crew dispatch {}` or `crew fill` continues it",
            view.issue
        ),
    }
}
