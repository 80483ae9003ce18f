//! Workspaces: one git worktree per issue, its branch, salvage of unsaved work, and the `.crew/`
//! files a worker reads.
//!
//! Decisions, and why:
//! - **git only, never GitHub.** Everything here talks to the local repository and its `origin`
//!   remote; leases, comments and the board belong to `github`. So this module can be tested
//!   against a bare repository and a temp clone, without an API.
//! - **The `git` CLI for anything that mutates or touches the network** (fetch, push, worktree
//!   add/remove, add, commit): it is what the user's own git does over a dirty tree, it honours
//!   hooks-free plumbing flags we pass, and fetch/push go through the user's credential helper and
//!   SSH agent, which libgit2 would have to re-implement. **git2 for reads** (refs, ref-name
//!   validity), which are fast and have no output to parse. vibe-kanban's `git/cli.rs` made the
//!   same split for the same reasons.
//! - **Blocking by design.** Every function here runs git synchronously; async callers reach it
//!   through `tokio::task::spawn_blocking` (CONVENTIONS 7) and never hold it across an `.await`.
//! - **Never lose work.** A dirty worktree is committed as WIP and pushed before it is removed
//!   ([`remove_worktree`]); if the commit fails, the worktree stays.
//! - **Idempotent steps.** [`prepare_worktree`] looks at what exists (branch locally or on origin,
//!   a registered worktree at the path) before creating anything, so a dispatch that crashed
//!   half-way is completed by the next run rather than duplicated.

mod crew_dir;
pub(crate) mod git;
mod salvage;
mod slug;
mod worktree;

use std::path::PathBuf;

use crate::error::{Classify, ErrorKind};

pub use crew_dir::{
    CONTEXT_FILE, CREW_DIR, WORKER_FILE, WorkerContext, WorkerProcess, ensure_crew_excluded,
    find_context, read_context, read_worker, write_context, write_worker,
};
pub use git::fetch_origin;
pub use salvage::{SalvageResult, diff_stat_between, is_dirty, salvage, salvage_with, wip_message};
pub use slug::{FALLBACK_SLUG, MAX_SLUG_LEN, branch_name, is_valid_branch, slug, worktree_path};
pub use worktree::{
    CheckoutMode, Worktree, WorktreeRequest, default_base_from_origin, open_worktree, origin_tip,
    prepare_worktree, remove_worktree, worker_worktrees,
};

/// What can go wrong preparing, salvaging or removing a worktree.
#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    /// `git` could not be started at all (not installed, not on `PATH`).
    #[error("cannot run git: {0}")]
    GitMissing(#[source] std::io::Error),
    /// A `git` command exited non-zero.
    #[error("`git {command}` failed in {}: {stderr}", dir.display())]
    Git {
        command: String,
        dir: PathBuf,
        stderr: String,
    },
    /// `git fetch` from origin failed: the remote is unreachable or refused us.
    #[error("cannot fetch `{base}` from origin: {stderr}")]
    Fetch { base: String, stderr: String },
    /// A git2 read failed.
    #[error("reading the repository at {}: {source}", path.display())]
    Repository {
        path: PathBuf,
        #[source]
        source: git2::Error,
    },
    /// The branch template gave a name git would reject.
    #[error("branch name `{0}` is not a valid git branch name (check `workers.branch`)")]
    InvalidBranch(String),
    /// The worktree path is taken by something that is not this worktree.
    #[error("{} already exists and is not a worktree of this repository; refusing to touch it", .0.display())]
    PathOccupied(PathBuf),
    /// The path is a worktree of this repository, but on another branch.
    #[error("{} is a worktree on `{found}`, not `{expected}`", path.display())]
    WrongCheckout {
        path: PathBuf,
        expected: String,
        found: String,
    },
    /// The branch is checked out in another worktree.
    #[error("branch `{branch}` is already checked out at {}", path.display())]
    BranchCheckedOutElsewhere { branch: String, path: PathBuf },
    /// Removal was asked of something that is the main worktree.
    #[error("{} is the repository's main worktree, not a worker's", .0.display())]
    MainWorktree(PathBuf),
    /// A file under `.crew/` could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A `.crew/*.json` file is not what crew wrote.
    #[error("{} is not valid: {source}", path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

impl Classify for WorkspaceError {
    fn kind(&self) -> ErrorKind {
        match self {
            WorkspaceError::InvalidBranch(_)
            | WorkspaceError::PathOccupied(_)
            | WorkspaceError::WrongCheckout { .. }
            | WorkspaceError::BranchCheckedOutElsewhere { .. }
            | WorkspaceError::MainWorktree(_)
            | WorkspaceError::Json { .. } => ErrorKind::User,
            WorkspaceError::Fetch { .. } => ErrorKind::Remote,
            WorkspaceError::GitMissing(_)
            | WorkspaceError::Git { .. }
            | WorkspaceError::Repository { .. }
            | WorkspaceError::Io { .. } => ErrorKind::Internal,
        }
    }

    fn hints(&self) -> Vec<String> {
        match self {
            WorkspaceError::PathOccupied(path) | WorkspaceError::WrongCheckout { path, .. } => {
                vec![format!(
                    "move {} aside, or change `workers.worktree` in crew.toml",
                    path.display()
                )]
            }
            WorkspaceError::BranchCheckedOutElsewhere { path, .. } => {
                vec![format!(
                    "remove that worktree with `git worktree remove {}` once its work is saved",
                    path.display()
                )]
            }
            WorkspaceError::Fetch { .. } => {
                vec!["check that `git fetch origin` works in this clone".to_owned()]
            }
            _ => Vec::new(),
        }
    }
}
