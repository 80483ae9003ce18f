//! Salvage: commit whatever a worker left uncommitted as WIP on its branch and push it.
//!
//! Run when a worker ends without `done`, `handover` or `fail` (crash, kill, turn limit) and
//! before any worktree is removed, so nothing an agent wrote is lost. It must not fail for
//! reasons that have nothing to do with the work: hooks are skipped (`--no-verify`; an agent may
//! have left a failing pre-commit hook or tests), signing is off (it may prompt for a passphrase
//! nobody will type), and an identity is supplied only when the machine has none.
//!
//! `.crew/` (context, logs) is crew's own and never committed: it is excluded by `info/exclude`,
//! and unstaged again before the commit in case something forced it into the index.

use std::path::Path;

use super::crew_dir::{CREW_DIR, ensure_crew_excluded};
use super::worktree::Worktree;
use super::{WorkspaceError, git};

/// The pathspec of everything but `.crew/`, relative to the worktree root.
const EVERYTHING_BUT_CREW: [&str; 3] = ["--", ".", ":(exclude).crew"];

/// A salvage commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SalvageResult {
    /// The WIP commit.
    pub commit_sha: String,
    /// `git diff --stat` from the base (merge-base) to the WIP commit, for the handover comment.
    pub diff_stat: String,
    /// Whether the branch reached origin. False for a detached worktree (research pushes
    /// nothing) and when the push failed; the commit is on the local branch either way.
    pub pushed: bool,
}

/// Whether the worktree has changes outside `.crew/`: modified, staged, deleted or untracked
/// (not ignored) files.
pub fn is_dirty(worktree: &Path) -> Result<bool, WorkspaceError> {
    let mut args = vec!["status", "--porcelain=v1", "-z", "--untracked-files=all"];
    args.extend(EVERYTHING_BUT_CREW);
    Ok(!git::run(worktree, args)?.is_empty())
}

/// Commits everything uncommitted (but `.crew/`) with `message`, pushes the branch to origin as
/// `HEAD:refs/heads/<branch>`, and returns the commit and its diff stat. `None` when there was
/// nothing to commit.
///
/// A detached worktree's commit is kept reachable under `refs/crew/salvage/<sha>` in the local
/// repository, since no branch holds it once the worktree is gone.
pub fn salvage(
    worktree: &Worktree,
    message: &str,
) -> Result<Option<SalvageResult>, WorkspaceError> {
    salvage_with(worktree, message, true)
}

/// [`salvage`], pushing only when `push` is true (a profile with `push = false` keeps the WIP
/// commit on its local branch).
pub fn salvage_with(
    worktree: &Worktree,
    message: &str,
    push: bool,
) -> Result<Option<SalvageResult>, WorkspaceError> {
    let path = worktree.path.as_path();
    ensure_crew_excluded(path)?;
    if !is_dirty(path)? {
        return Ok(None);
    }
    // Not `add -A -- . ':!.crew'`: git rejects an exclude pathspec naming an ignored path. The
    // exclude file keeps untracked `.crew/` out; the reset unstages it should anything have
    // forced it in (a `.gitignore` negation, an agent's `git add -f`).
    git::run(path, ["add", "-A", "--", "."])?;
    git::run(path, ["reset", "--quiet", "--", CREW_DIR])?;
    // `git diff --cached --quiet` exits 1 when something is staged.
    if git::succeeds(path, ["diff", "--cached", "--quiet"])? {
        return Ok(None);
    }
    let mut commit = git::identity_fallback(path)?;
    commit.extend(
        [
            "-c",
            "commit.gpgsign=false",
            "commit",
            "--no-verify",
            "--quiet",
            "-m",
            message,
        ]
        .map(str::to_owned),
    );
    git::run(path, &commit)?;
    let commit_sha = git::run(path, ["rev-parse", "HEAD"])?.trim().to_owned();

    let pushed = match &worktree.branch {
        Some(_) if !push => false,
        Some(branch) => match git::run(
            path,
            [
                "push".to_owned(),
                "--no-verify".to_owned(),
                "--quiet".to_owned(),
                "origin".to_owned(),
                format!("HEAD:refs/heads/{branch}"),
            ],
        ) {
            Ok(_) => true,
            Err(error) => {
                tracing::warn!(%error, branch, "salvage commit kept locally; push failed");
                false
            }
        },
        None => {
            git::run(
                path,
                [
                    "update-ref".to_owned(),
                    format!("refs/crew/salvage/{commit_sha}"),
                    commit_sha.clone(),
                ],
            )?;
            false
        }
    };
    let diff_stat = diff_stat(path, &worktree.base_sha)?;
    Ok(Some(SalvageResult {
        commit_sha,
        diff_stat,
        pushed,
    }))
}

/// The stat from where the branch left the base to HEAD; if the base is unknown to this clone,
/// the stat of the WIP commit alone.
fn diff_stat(path: &Path, base_sha: &str) -> Result<String, WorkspaceError> {
    let range = format!("{base_sha}...HEAD");
    match git::run(path, ["diff", "--no-color", "--stat", &range]) {
        Ok(stat) => Ok(stat.trim_end().to_owned()),
        Err(_) => Ok(
            git::run(path, ["show", "--no-color", "--stat", "--format=", "HEAD"])?
                .trim_end()
                .to_owned(),
        ),
    }
}

/// `git diff --stat FROM...TO` in `path`: what a branch changed since it left `from`, for the
/// next attempt's prompt. `None` when this clone lacks either commit.
pub fn diff_stat_between(path: &Path, from: &str, to: &str) -> Option<String> {
    let range = format!("{from}...{to}");
    git::run(path, ["diff", "--no-color", "--stat", &range])
        .ok()
        .map(|stat| stat.trim_end().to_owned())
        .filter(|stat| !stat.is_empty())
}

/// The message of a salvage commit: says it is WIP, whose, and why.
pub fn wip_message(issue: u64, attempt: u32, reason: &str) -> String {
    format!(
        "WIP: salvaged work on #{issue} (attempt {attempt})\n\n\
         crew committed this because the worker stopped without handing over: {reason}.\n\
         The next attempt continues from here."
    )
}
