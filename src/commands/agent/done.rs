//! `crew done`: the work is finished. The branch is rebased on the base, pushed, and a pull
//! request is opened (`working` → `in_review`); with `--no-pr`, the issue is marked completed
//! without one (`working` → `completed`).
//!
//! Decisions, and why:
//! - **A dirty worktree is refused, not committed.** The pull request is what a maintainer
//!   reviews, so it holds what the agent deliberately committed; committing leftovers on its
//!   behalf would ship scratch files, logs and half-edits. The agent is told which paths are
//!   uncommitted and can commit (or delete, or ignore) them and run `crew done` again: nothing
//!   has been posted or pushed at that point and the lease is still held. A rebase needs a clean
//!   tree anyway.
//! - **Rebase, then push with a lease.** Unless `--skip-rebase`, the base is fetched and the
//!   branch rebased onto `origin/<base>`, so the PR merges cleanly. On a conflict the rebase is
//!   aborted (the branch is exactly as before), the conflicting files are named, and nothing is
//!   pushed or posted (exit 1). A rebased branch is pushed with `--force-with-lease` naming the
//!   commit origin had, a compare-and-swap; before anything, a branch on origin with commits the
//!   worktree lacks is refused rather than overwritten.
//! - **One PR per branch.** An open PR whose head is the branch is reused (a re-run after a crash,
//!   or `done` after changes were requested): it follows the pushed branch by itself. The title is
//!   the issue's, the body is `templates/pr_body.md` (always with `Closes #N`).
//! - **No push, no PR.** A worktree that does not push (detached `research`, or a profile without
//!   `push`) has nothing to open a PR from: `done` behaves as `--no-pr` and says so.
//! - **Re-runs post once**: `in_review` carries an op derived from the attempt and the pushed
//!   commit, `completed` one derived from the attempt; both are posted with
//!   [`PostMode::Resume`].
//! - **Killed anywhere, it converges** (crash points `done:push`, `done:pr`, `done:comment`,
//!   `done:finished`, see [`crate::fault`]): before the event, the agent's exit is salvaged and
//!   handed over, and the next attempt's `done` reuses the pushed branch and the open pull
//!   request; after it, the supervisor finds the event, posts nothing more and releases the
//!   lease this command did not get to.

use std::path::Path;

use clap::Args;

use super::git::{self, RebaseFailure};
use super::{AgentView, Worker, blocking, print, short};
use crate::context::Ctx;
use crate::error::CrewError;
use crate::fault::crashpoint;
use crate::github::{GitHub, GitHubError, NewPullRequest, PostMode, PullRequest};
use crate::prompt::{PrBodyContext, Prompts};
use crate::protocol::{EventBody, State};
use crate::workspace::WorkspaceError;

/// Finish: rebase on the base, push, and open the pull request (or finish without one)
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  crew done                Rebase on the base branch, push, open the pull request
  crew done --no-pr        Finish without a pull request (research)
  crew done --skip-rebase  Push the branch as it is")]
pub struct DoneArgs {
    /// Finish without a pull request (research, or nothing had to change)
    #[arg(long)]
    pub no_pr: bool,

    /// Push the branch as it is, without fetching and rebasing on the base first
    #[arg(long)]
    pub skip_rebase: bool,
}

/// The branch as pushed.
#[derive(Debug)]
struct Published {
    head_sha: String,
    /// Subjects of the commits ahead of the base, oldest first.
    subjects: Vec<String>,
}

pub async fn run(ctx: &Ctx, args: &DoneArgs) -> Result<(), CrewError> {
    let worker = Worker::locate(ctx)?;
    let github = worker.github(ctx).await?;
    let held = worker.fence(&github).await?;
    let issue = worker.context.issue;
    let attempt = worker.context.attempt;
    let branch = worker.context.branch.clone().filter(|_| worker.push);
    if branch.is_none() && !args.no_pr {
        ctx.printer.status(format_args!(
            "this worktree does not push (profile `{}`): finishing without a pull request",
            worker.context.profile
        ));
    }
    let no_pr = args.no_pr || branch.is_none();

    let (published, head_sha) = match &branch {
        Some(branch) => {
            let dir = worker.worktree.clone();
            let branch = branch.clone();
            let base = worker.context.base.clone();
            let skip_rebase = args.skip_rebase;
            let published =
                blocking(move || publish(&dir, &branch, &base, skip_rebase, !no_pr)).await?;
            crashpoint("done:push");
            let head = published.head_sha.clone();
            (Some(published), head)
        }
        None => {
            let dir = worker.worktree.clone();
            (None, blocking(move || Ok(git::head(&dir)?)).await?)
        }
    };

    // Only now, when nothing can stop `done` short of GitHub failing: a refused `done` posts
    // nothing at all.
    worker.ensure_started(ctx, &github).await?;
    let mut pull = None;
    let event = match (&published, &branch) {
        (Some(published), Some(branch)) if !no_pr => {
            let opened = open_pull(ctx, &worker, &github, branch, published).await?;
            crashpoint("done:pr");
            let event = worker.event(
                worker.derived_op("in_review", Some(short(&head_sha))),
                EventBody::InReview { pr: opened.number },
            );
            pull = Some(opened);
            event
        }
        _ => worker.event(
            worker.derived_op("completed", None),
            EventBody::Completed { pr: None },
        ),
    };
    let kind = event.kind().as_str();
    let posted = worker.post(&github, &event, PostMode::Resume).await?;
    crashpoint("done:comment");
    let state = if pull.is_some() {
        State::InReview
    } else {
        State::Completed
    };
    worker.mirror(ctx, &github, state).await;
    worker.mark_finished(kind)?;
    crashpoint("done:finished");
    let released = worker.release(ctx, &github, &held).await?;

    let view = AgentView {
        pr: pull.as_ref().map(|pull| pull.number),
        pr_url: pull.as_ref().map(|pull| pull.html_url.clone()),
        head_sha: Some(head_sha.clone()),
        pushed: Some(published.is_some()),
        lease_released: released,
        ..AgentView::new(&worker).posted(kind, &posted)
    };
    let line = match &pull {
        Some(pull) => format!(
            "#{issue} attempt {attempt} is in review: #{} {}",
            pull.number, pull.html_url
        ),
        None => format!("#{issue} attempt {attempt} is completed (no pull request)"),
    };
    print(ctx, &view, &line)
}

/// Clean check, fetch, rebase, push: everything git does for `done`. Blocking.
fn publish(
    dir: &Path,
    branch: &str,
    base: &str,
    skip_rebase: bool,
    need_commits: bool,
) -> Result<Published, CrewError> {
    let dirty = git::dirty_paths(dir)?;
    if !dirty.is_empty() {
        return Err(CrewError::user(format!(
            "the worktree has uncommitted changes: {}",
            list(&dirty)
        ))
        .with_hint(
            "commit what belongs in the pull request (delete or ignore the rest), then run `crew done` again",
        ));
    }
    let remote = git::remote_branch(dir, branch)?;
    let mut fetch: Vec<&str> = Vec::new();
    if !skip_rebase {
        fetch.push(base);
    }
    if remote.is_some() {
        fetch.push(branch);
    }
    if !fetch.is_empty() {
        git::fetch(dir, &fetch)?;
    }
    if let Some(remote) = &remote
        && !git::is_ancestor(dir, remote, "HEAD")?
    {
        return Err(CrewError::user(format!(
            "origin's `{branch}` has commits this worktree does not (it is at {}); refusing to overwrite them",
            short(remote)
        ))
        .with_hint(format!(
            "bring them in with `git pull --rebase origin {branch}`, then run `crew done` again"
        )));
    }
    let before = git::head(dir)?;
    let onto = format!("refs/remotes/origin/{base}");
    if !skip_rebase {
        match git::rebase(dir, &onto) {
            Ok(()) => {}
            Err(RebaseFailure::Conflict { files }) => {
                return Err(CrewError::user(format!(
                    "rebasing `{branch}` on origin/{base} conflicts in {}; the rebase was aborted, nothing was pushed or posted",
                    list(&files)
                ))
                .with_hint(format!(
                    "run `git rebase origin/{base}`, resolve the conflicts and `git rebase --continue`, then `crew done --skip-rebase`"
                )));
            }
            Err(RebaseFailure::Other(error)) => return Err(error.into()),
        }
    }
    let head_sha = git::head(dir)?;
    let subjects = match git::resolve(dir, &onto)? {
        Some(base_sha) => git::subjects(dir, &base_sha)?,
        None => Vec::new(),
    };
    if need_commits && subjects.is_empty() {
        return Err(CrewError::user(format!(
            "`{branch}` has no commits ahead of {base}: there is nothing for a pull request"
        ))
        .with_hint(
            "commit your work first, or finish with `crew done --no-pr` if the issue needed no change",
        ));
    }
    if remote.as_deref() != Some(head_sha.as_str()) {
        let lease = (before != head_sha).then_some(remote.as_deref());
        git::push(dir, branch, lease).map_err(|error| match error {
            WorkspaceError::Git { stderr, .. } => CrewError::user(format!(
                "pushing `{branch}` to origin failed; nothing was posted: {stderr}"
            ))
            .with_hint(format!(
                "if origin's `{branch}` moved, bring it in (`git pull --rebase origin {branch}`) and run `crew done` again"
            )),
            other => other.into(),
        })?;
    }
    Ok(Published { head_sha, subjects })
}

/// The open PR for the branch, or a new one.
async fn open_pull(
    ctx: &Ctx,
    worker: &Worker,
    github: &GitHub,
    branch: &str,
    published: &Published,
) -> Result<PullRequest, CrewError> {
    let context = &worker.context;
    if let Some(existing) = github.open_pull_for_head(&worker.repo, branch).await? {
        ctx.printer.status(format_args!(
            "#{} is already open for `{branch}`; it now shows the pushed branch",
            existing.number
        ));
        return Ok(existing);
    }
    let issue = github
        .issue(&worker.repo, context.issue)
        .await?
        .ok_or_else(|| {
            CrewError::user(format!(
                "issue #{} not found in {}",
                context.issue, worker.repo
            ))
            .with_hint(
                "the issue may have been deleted or transferred: `crew fail` with the reason",
            )
        })?;
    let summary = published
        .subjects
        .iter()
        .map(|subject| format!("- {subject}"))
        .collect::<Vec<_>>()
        .join("\n");
    let prompts = Prompts::load(Some(&worker.worktree))?;
    let body = prompts.render_pr_body(&PrBodyContext {
        issue: context.issue,
        title: issue.title.clone(),
        summary,
        attempt: u64::from(context.attempt),
        worker: context.worker.clone(),
        agent: worker.agent.clone().unwrap_or_else(|| "unknown".to_owned()),
        profile: context.profile.clone(),
        branch: branch.to_owned(),
        base: context.base.clone(),
    })?;
    let new = NewPullRequest {
        title: issue.title,
        head: branch.to_owned(),
        base: context.base.clone(),
        body,
        draft: false,
    };
    match github.create_pull(&worker.repo, &new).await {
        Ok(pull) => Ok(pull),
        Err(error @ GitHubError::Validation { .. }) => Err(CrewError::user(format!(
            "GitHub refused to open the pull request: {error}"
        ))
        .with_hint(
            "the branch is pushed; fix what GitHub names and run `crew done` again, or \
             `crew handover` to leave it to the next attempt",
        )),
        Err(error) => Err(error.into()),
    }
}

/// Up to ten paths, then how many more.
fn list(paths: &[String]) -> String {
    let mut shown: Vec<String> = paths
        .iter()
        .take(10)
        .map(|path| format!("`{path}`"))
        .collect();
    if paths.len() > 10 {
        shown.push(format!("and {} more", paths.len() - 10));
    }
    shown.join(", ")
}
