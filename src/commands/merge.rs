//! `crew merge <issue> [--force] [--method merge|squash|rebase]`: merges the approved pull
//! request through the API and closes the issue's story (DESIGN.md 2.3: `approved ─completed→
//! completed`).
//!
//! Order, each step safe to repeat: merge (with the head sha we read, so a push after the review
//! is not merged unseen; a pull request already merged is accepted as is), then the `completed`
//! event (its op is derived from the pull request, so a re-run finds it rather than posting it
//! twice), then the lease released, the board set to Done, and the issue's worktrees on this
//! host removed (a dirty one is saved to a WIP commit first; a failure there is a warning, as
//! `crew gc` retries it). An unapproved pull request is refused unless `--force`, which records
//! the maintainer's approval first so the history stays legal; a conflict is reported with what
//! to do about it. A re-run on an issue a merge already completed finishes what that run left
//! (the lease, the worktrees) when it died after its `completed` comment, and otherwise says
//! the issue is completed (exit 1).

use std::io::Write;

use clap::{Args, ValueEnum};
use serde::Serialize;

use crate::commands::maintainer::Maintained;
use crate::context::Ctx;
use crate::error::CrewError;
use crate::fault::crashpoint;
use crate::github::{MergeMethod, MergeOutcome, PostMode, Release};
use crate::protocol::{EventBody, State};
use crate::workspace;

/// How GitHub merges the pull request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Method {
    #[default]
    Merge,
    Squash,
    Rebase,
}

/// Merge an issue's approved pull request, record it completed, release and clean up
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  crew merge 42                  Merge #42's approved pull request, record it completed
  crew merge 42 --method squash  ... as one squashed commit
  crew merge 42 --force          Merge without an approval (records one)")]
pub struct MergeArgs {
    /// The issue number
    pub issue: u64,

    /// Merge even though nobody approved it (records the approval)
    #[arg(long)]
    pub force: bool,

    /// The merge method
    #[arg(long, value_enum, default_value_t)]
    pub method: Method,
}

/// What `--json` prints.
#[derive(Debug, Serialize)]
pub struct MergeView {
    pub issue: u64,
    pub pr: u64,
    /// The merge commit.
    pub sha: Option<String>,
    /// False when the pull request was already merged.
    pub merged_now: bool,
    pub comment_id: u64,
    pub lease_released: bool,
    /// Worktrees of the issue removed on this host.
    pub removed: Vec<String>,
}

pub async fn run(ctx: &Ctx, args: &MergeArgs) -> Result<(), CrewError> {
    let issue = Maintained::load(ctx, args.issue).await?;
    let number = args.issue;
    let state = issue.state();
    let forcing = match state {
        State::Approved => false,
        State::InReview if args.force => true,
        State::InReview => {
            return Err(CrewError::user(format!(
                "cannot merge #{number}: its pull request is in review and not approved"
            ))
            .with_hint(format!(
                "`crew approve {number}` first, or `crew merge {number} --force`"
            )));
        }
        State::Completed => return finish_completed(ctx, &issue).await,
        _ => return Err(issue.illegal("merge")),
    };
    let pr_number = issue.pr("merge")?;
    let pull = issue
        .github
        .pull(&issue.repo, pr_number)
        .await?
        .ok_or_else(|| {
            CrewError::user(format!("pull request #{pr_number} does not exist")).with_hint(format!(
                "`crew show {number}` shows the pull request #{number} recorded; \
                 `crew request-changes {number}` starts an attempt that opens a new one"
            ))
        })?;

    let (sha, merged_now) = if pull.is_merged() {
        (pull.merge_commit_sha.clone(), false)
    } else if !pull.is_open() {
        return Err(CrewError::user(format!(
            "cannot merge #{number}: pull request #{pr_number} was closed without merging"
        ))
        .with_hint(format!(
            "reopen it on GitHub, or `crew request-changes {number}` for another attempt"
        )));
    } else {
        let method = match args.method {
            Method::Merge => MergeMethod::Merge,
            Method::Squash => MergeMethod::Squash,
            Method::Rebase => MergeMethod::Rebase,
        };
        match issue
            .github
            .merge_pull(&issue.repo, pr_number, method, Some(&pull.head.sha))
            .await?
        {
            MergeOutcome::Merged { sha } => (Some(sha), true),
            MergeOutcome::NotMergeable { message } => {
                return Err(CrewError::user(format!(
                    "cannot merge #{number}: pull request #{pr_number} does not merge cleanly \
                     into {} ({message})",
                    pull.base.branch
                ))
                .with_hint(format!(
                    "`crew request-changes {number} --body \"rebase on {} and resolve the conflicts\"` \
                     sends it back to an agent",
                    pull.base.branch
                )));
            }
            MergeOutcome::Modified { message } => {
                return Err(CrewError::user(format!(
                    "cannot merge #{number}: pull request #{pr_number} changed since it was read \
                     ({message})"
                ))
                .with_hint("look at the new commits, then approve and merge again"));
            }
        }
    };

    crashpoint("merge:pr");
    if forcing {
        issue
            .post_as(
                ctx,
                issue.event(
                    format!("approved-{pr_number}-forced"),
                    EventBody::Approved { pr: pr_number },
                ),
                PostMode::Resume,
            )
            .await?;
    }
    // After a forced approval the state is `approved`: judge the next event from there.
    let completed = issue.event(
        format!("completed-{pr_number}"),
        EventBody::Completed {
            pr: Some(pr_number),
        },
    );
    let text = issue.prompts.comment_body(
        &completed,
        &crate::prompt::CommentContext::from_event(&completed),
    )?;
    let posted = issue
        .github
        .post_event(&issue.repo, number, &completed, &text, PostMode::Resume)
        .await?;
    crashpoint("merge:comment");
    issue.mirror(ctx, State::Completed).await;

    let lease_released = release(ctx, &issue).await;
    crashpoint("merge:release");
    let removed = remove_worktrees(ctx, number).await;
    let view = MergeView {
        issue: number,
        pr: pr_number,
        sha,
        merged_now,
        comment_id: posted.comment_id,
        lease_released,
        removed,
    };
    if ctx.settings.json {
        return ctx.printer.json(&view);
    }
    ctx.printer.out(|w| render(w, &view))
}

/// A re-run on an issue already `completed` by a merge: an earlier run that died after the
/// `completed` comment left the lease held or the worktrees in place, and this finishes that.
/// When there was nothing left to do, it is the usual "cannot merge a completed issue" (exit 1).
async fn finish_completed(ctx: &Ctx, issue: &Maintained) -> Result<(), CrewError> {
    let number = issue.number();
    let completed = issue
        .gathered
        .state
        .events
        .iter()
        .rev()
        .find_map(|applied| match applied.event.body {
            EventBody::Completed { pr: Some(pr) } => Some((pr, applied.comment_id)),
            _ => None,
        });
    let Some((pr_number, comment_id)) = completed else {
        return Err(issue.illegal("merge"));
    };
    let lease_released = release(ctx, issue).await;
    let removed = remove_worktrees(ctx, number).await;
    if !lease_released && removed.is_empty() {
        return Err(issue.illegal("merge"));
    }
    ctx.printer.status(format_args!(
        "#{number} was merged and completed already; finished what that merge left undone"
    ));
    let view = MergeView {
        issue: number,
        pr: pr_number,
        sha: None,
        merged_now: false,
        comment_id,
        lease_released,
        removed,
    };
    if ctx.settings.json {
        return ctx.printer.json(&view);
    }
    ctx.printer.out(|w| render(w, &view))
}

/// Releases the current attempt's lease if it is still held; true when it is released now.
/// Failures are warnings: the lease expires by itself, and nothing depends on it any more.
async fn release(ctx: &Ctx, issue: &Maintained) -> bool {
    let state = &issue.gathered.state;
    let (Some(worker), Some(attempt)) = (&state.worker, state.attempt) else {
        return false;
    };
    let Ok(attempt) = u32::try_from(attempt) else {
        return false;
    };
    let released = issue
        .github
        .release_attempt(
            &issue.repo,
            &ctx.settings.config.lease_ref_prefix,
            issue.number(),
            worker,
            attempt,
            chrono::Utc::now(),
        )
        .await;
    match released {
        Ok(released) => released == Release::Released,
        Err(error) => {
            ctx.printer.warn(format_args!(
                "#{}: lease not released: {error}",
                issue.number()
            ));
            false
        }
    }
}

/// Removes every worktree of `number` in this clone, saving dirty work first. Failures are
/// warnings (`crew gc` tries again).
async fn remove_worktrees(ctx: &Ctx, number: u64) -> Vec<String> {
    let Some(root) = ctx.settings.repo_root.clone() else {
        return Vec::new();
    };
    let outcome = tokio::task::spawn_blocking(move || {
        let mut removed = Vec::new();
        let mut failed = Vec::new();
        for (path, context) in workspace::worker_worktrees(&root)? {
            if context.issue != number || crate::worker::lock::supervisor_running(&path) {
                continue;
            }
            let message = workspace::wip_message(
                number,
                context.attempt,
                "the issue was merged while this worktree held unsaved changes",
            );
            match workspace::remove_worktree(&path, &message) {
                Ok(_) => removed.push(path.to_string_lossy().into_owned()),
                Err(error) => failed.push(format!("{}: {error}", path.display())),
            }
        }
        Ok::<_, workspace::WorkspaceError>((removed, failed))
    })
    .await;
    match outcome {
        Ok(Ok((removed, failed))) => {
            for failure in failed {
                ctx.printer.warn(format_args!(
                    "worktree kept: {failure}; `crew gc` will retry"
                ));
            }
            removed
        }
        Ok(Err(error)) => {
            ctx.printer.warn(format_args!(
                "worktrees not cleaned: {error}; `crew gc` will retry"
            ));
            Vec::new()
        }
        Err(error) => {
            ctx.printer
                .warn(format_args!("worktrees not cleaned: {error}"));
            Vec::new()
        }
    }
}

fn render(w: &mut dyn Write, view: &MergeView) -> std::io::Result<()> {
    match (&view.sha, view.merged_now) {
        (Some(sha), true) => writeln!(w, "merged pull request #{} ({sha})", view.pr)?,
        (_, false) => writeln!(w, "pull request #{} was already merged", view.pr)?,
        (None, true) => writeln!(w, "merged pull request #{}", view.pr)?,
    }
    writeln!(w, "#{} completed (comment {})", view.issue, view.comment_id)?;
    if view.lease_released {
        writeln!(w, "lease released")?;
    }
    for path in &view.removed {
        writeln!(w, "removed worktree {path}")?;
    }
    Ok(())
}
