//! `crew approve <issue>` and `crew request-changes <issue> [--body TEXT]`: the maintainer's
//! verdict on the pull request an agent opened with `crew done` (DESIGN.md 2.3).
//!
//! - `approve` records `approved {pr}` (in_review → approved); `crew merge` then merges. It is
//!   an event, not a GitHub review: GitHub refuses a review by the pull request's own author,
//!   which the orchestrator's token usually is.
//! - `request-changes` records `changes_requested {pr, body}` and, since the worker that opened
//!   the pull request has finished, starts the next attempt on the same branch at once (unless
//!   `--no-dispatch`): its prompt carries the review text and the pull request's review
//!   comments.

use std::io::Write;

use clap::Args;
use serde::Serialize;

use crate::commands::dispatch::DispatchView;
use crate::commands::maintainer::Maintained;
use crate::context::Ctx;
use crate::error::CrewError;
use crate::protocol::{EventBody, EventKind};

/// Approve the pull request of an issue in review
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  crew approve 42  Approve #42's pull request; then `crew merge 42`")]
pub struct ApproveArgs {
    /// The issue number
    pub issue: u64,
}

/// Send an issue's pull request back for another attempt
#[derive(Debug, Args)]
#[command(after_help = r#"Examples:
  crew request-changes 42 --body "Add a test for empty input"
      Send #42 back; the next attempt reads the body
  crew request-changes 42 --no-dispatch
      ... and leave the restart to `crew fill`"#)]
pub struct RequestChangesArgs {
    /// The issue number
    pub issue: u64,

    /// What to change (goes into the next attempt's prompt)
    #[arg(long, value_name = "TEXT")]
    pub body: Option<String>,

    /// Do not start the next attempt now (`crew fill` will)
    #[arg(long)]
    pub no_dispatch: bool,
}

/// What `--json` prints.
#[derive(Debug, Serialize)]
pub struct ReviewView {
    pub issue: u64,
    pub pr: u64,
    /// `approved` or `changes_requested`.
    pub verdict: &'static str,
    pub comment_id: u64,
    pub dispatched: Option<DispatchView>,
}

pub async fn approve(ctx: &Ctx, args: &ApproveArgs) -> Result<(), CrewError> {
    let issue = Maintained::load(ctx, args.issue).await?;
    issue.require(EventKind::Approved, "approve")?;
    let pr = issue.pr("approve")?;
    let posted = issue.post(ctx, EventBody::Approved { pr }).await?;
    print(
        ctx,
        &ReviewView {
            issue: args.issue,
            pr,
            verdict: "approved",
            comment_id: posted.comment_id,
            dispatched: None,
        },
    )
}

pub async fn request_changes(ctx: &Ctx, args: &RequestChangesArgs) -> Result<(), CrewError> {
    let issue = Maintained::load(ctx, args.issue).await?;
    issue.require(EventKind::ChangesRequested, "request changes on")?;
    let pr = issue.pr("request changes on")?;
    let body = args.body.clone().filter(|body| !body.trim().is_empty());
    let worker_alive = issue.worker_alive(ctx).await?;
    let posted = issue
        .post(ctx, EventBody::ChangesRequested { pr, body })
        .await?;
    let dispatched = if worker_alive || args.no_dispatch {
        None
    } else {
        Some(issue.dispatch_next(ctx, None, None, false).await?)
    };
    print(
        ctx,
        &ReviewView {
            issue: args.issue,
            pr,
            verdict: "changes_requested",
            comment_id: posted.comment_id,
            dispatched,
        },
    )
}

fn print(ctx: &Ctx, view: &ReviewView) -> Result<(), CrewError> {
    if ctx.settings.json {
        return ctx.printer.json(view);
    }
    ctx.printer.out(|w| render(w, view))
}

fn render(w: &mut dyn Write, view: &ReviewView) -> std::io::Result<()> {
    writeln!(
        w,
        "#{}: {} pull request #{} (comment {})",
        view.issue,
        if view.verdict == "approved" {
            "approved"
        } else {
            "requested changes on"
        },
        view.pr,
        view.comment_id
    )?;
    if let Some(next) = &view.dispatched {
        writeln!(
            w,
            "dispatched attempt {} (worker {}) to make the changes",
            next.attempt, next.worker
        )?;
    }
    Ok(())
}
