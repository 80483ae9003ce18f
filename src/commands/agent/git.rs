//! The git steps agent-side commands take in their worktree: fetch, rebase (aborted on
//! conflict), push (with a lease after a rebase), the WIP commit, the files and commits of the
//! branch.
//!
//! Like `workspace`, mutations and network go through the `git` CLI (the user's credential
//! helper, hooks-free flags), through `workspace`'s own runner and so with the same environment. Everything here blocks; callers
//! go through [`super::blocking`].

use std::path::Path;

use crate::workspace::{self, SalvageResult, WorkspaceError};

use crate::workspace::git::output;
pub(crate) use crate::workspace::git::run;

/// The commit HEAD is at.
pub fn head(dir: &Path) -> Result<String, WorkspaceError> {
    Ok(run(dir, ["rev-parse", "HEAD"])?.trim().to_owned())
}

/// The sha `name` resolves to, if it does.
pub fn resolve(dir: &Path, name: &str) -> Result<Option<String>, WorkspaceError> {
    let (output, _) = output(
        dir,
        [
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("{name}^{{commit}}"),
        ],
    )?;
    Ok(output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned()))
}

/// Uncommitted paths (modified, staged, deleted, untracked), `.crew/` excluded.
pub fn dirty_paths(dir: &Path) -> Result<Vec<String>, WorkspaceError> {
    workspace::ensure_crew_excluded(dir)?;
    let status = run(
        dir,
        [
            "status",
            "--porcelain=v1",
            "--untracked-files=all",
            "--",
            ".",
            ":(exclude).crew",
        ],
    )?;
    Ok(status
        .lines()
        .filter_map(|line| line.get(3..))
        .map(str::to_owned)
        .collect())
}

/// Commits everything uncommitted as `message` (hooks and signing off, identity supplied if the
/// machine has none; see [`workspace::salvage_with`]). `None` when there was nothing to commit.
pub fn commit_all(dir: &Path, message: &str) -> Result<Option<SalvageResult>, WorkspaceError> {
    let worktree = workspace::open_worktree(dir)?;
    workspace::salvage_with(&worktree, message, false)
}

/// Where the branch of origin's `branch` is, asked of origin itself (`None`: no such branch).
pub fn remote_branch(dir: &Path, branch: &str) -> Result<Option<String>, WorkspaceError> {
    let listing = run(
        dir,
        [
            "ls-remote",
            "--heads",
            "origin",
            &format!("refs/heads/{branch}"),
        ],
    )
    .map_err(|error| match error {
        // Origin unreachable: a remote failure (exit 3), as a failed fetch is.
        WorkspaceError::Git { stderr, .. } => WorkspaceError::Fetch {
            base: branch.to_owned(),
            stderr,
        },
        other => other,
    })?;
    Ok(listing
        .lines()
        .find_map(|line| line.split_whitespace().next())
        .map(str::to_owned))
}

/// Fetches `refs/heads/<branch>` of origin into `refs/remotes/origin/<branch>` for each branch.
pub fn fetch(dir: &Path, branches: &[&str]) -> Result<(), WorkspaceError> {
    let refspecs: Vec<String> = branches
        .iter()
        .map(|branch| format!("+refs/heads/{branch}:refs/remotes/origin/{branch}"))
        .collect();
    workspace::fetch_origin(dir, &refspecs).map_err(|error| match error {
        WorkspaceError::Git { stderr, .. } => WorkspaceError::Fetch {
            base: branches.join(", "),
            stderr,
        },
        other => other,
    })
}

/// True when `ancestor` is `of` or an ancestor of it.
pub fn is_ancestor(dir: &Path, ancestor: &str, of: &str) -> Result<bool, WorkspaceError> {
    let (output, _) = output(dir, ["merge-base", "--is-ancestor", ancestor, of])?;
    Ok(output.status.success())
}

/// Why a rebase did not happen.
#[derive(Debug)]
pub enum RebaseFailure {
    /// These files conflict; the rebase was aborted and the branch is as it was.
    Conflict { files: Vec<String> },
    /// git refused for another reason (the rebase was aborted too).
    Other(WorkspaceError),
}

/// Rebases HEAD onto `onto`. On any failure the rebase is aborted, so the worktree is left
/// exactly as it was.
pub fn rebase(dir: &Path, onto: &str) -> Result<(), RebaseFailure> {
    let mut args = workspace_identity(dir).map_err(RebaseFailure::Other)?;
    args.extend(
        [
            "-c",
            "commit.gpgsign=false",
            "rebase",
            "--quiet",
            "--no-autostash",
            onto,
        ]
        .map(str::to_owned),
    );
    let failure = match run(dir, &args) {
        Ok(_) => return Ok(()),
        Err(error) => error,
    };
    let files = run(dir, ["diff", "--name-only", "--diff-filter=U"])
        .map(|text| text.lines().map(str::to_owned).collect::<Vec<_>>())
        .unwrap_or_default();
    if let Err(error) = run(dir, ["rebase", "--abort"]) {
        tracing::debug!(%error, "nothing to abort");
    }
    if files.is_empty() {
        Err(RebaseFailure::Other(failure))
    } else {
        Err(RebaseFailure::Conflict { files })
    }
}

/// Pushes HEAD to origin's `branch`. With `lease = Some(expected)` the push may rewrite the
/// branch, but only if origin still has it at `expected` (`None` inside: it must not exist):
/// a compare-and-swap, so nothing someone else pushed meanwhile is lost.
pub fn push(dir: &Path, branch: &str, lease: Option<Option<&str>>) -> Result<(), WorkspaceError> {
    let mut args = vec![
        "push".to_owned(),
        "--no-verify".to_owned(),
        "--quiet".to_owned(),
    ];
    if let Some(expected) = lease {
        args.push(format!(
            "--force-with-lease=refs/heads/{branch}:{}",
            expected.unwrap_or_default()
        ));
    }
    args.push("origin".to_owned());
    args.push(format!("HEAD:refs/heads/{branch}"));
    run(dir, args).map(drop)
}

/// Files that differ between `base` and HEAD.
pub fn changed_files(dir: &Path, base: &str) -> Result<Vec<String>, WorkspaceError> {
    Ok(run(dir, ["diff", "--name-only", base, "HEAD"])?
        .lines()
        .map(str::to_owned)
        .collect())
}

/// The subjects of the commits in `base..HEAD`, oldest first.
pub fn subjects(dir: &Path, base: &str) -> Result<Vec<String>, WorkspaceError> {
    Ok(run(
        dir,
        ["log", "--reverse", "--format=%s", &format!("{base}..HEAD")],
    )?
    .lines()
    .map(str::to_owned)
    .collect())
}

/// `-c user.name=… -c user.email=…` when the machine has no identity, as salvage does, so a
/// rebase (which commits) cannot fail for want of one.
fn workspace_identity(dir: &Path) -> Result<Vec<String>, WorkspaceError> {
    let env_set = |names: &[&str]| {
        names
            .iter()
            .all(|name| std::env::var_os(name).is_some_and(|value| !value.is_empty()))
    };
    let configured = |key: &str| -> Result<bool, WorkspaceError> {
        Ok(output(dir, ["config", "--get", key])?.0.status.success())
    };
    let mut args = Vec::new();
    if !(env_set(&["GIT_COMMITTER_NAME"]) || configured("user.name")?) {
        args.extend(["-c".to_owned(), "user.name=crew".to_owned()]);
    }
    if !(env_set(&["GIT_COMMITTER_EMAIL"]) || env_set(&["EMAIL"]) || configured("user.email")?) {
        args.extend(["-c".to_owned(), "user.email=crew@localhost".to_owned()]);
    }
    Ok(args)
}
