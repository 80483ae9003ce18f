//! Creating, finding and removing an issue's worktree.
//!
//! [`prepare_worktree`] is written as "make it so" rather than "do these steps": it fetches, then
//! looks at what already exists — the issue's branch locally or on origin (under any slug, since
//! a title may have been edited between attempts), a worktree registered at the path — and only
//! creates what is missing. A dispatch killed between any two steps is therefore completed by the
//! next one, and a replacement attempt lands on the previous attempt's branch and WIP.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use git2::{BranchType, Repository};

use super::crew_dir::{ensure_crew_excluded, read_context};
use super::salvage::{SalvageResult, is_dirty, salvage};
use super::slug::{branch_name, is_valid_branch, normalize, worktree_path};
use super::{WorkspaceError, git};
use crate::settings::WorkersConfig;

/// How the worktree checks out the code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckoutMode {
    /// On the issue's branch, which the worker commits to and pushes (`code`, `review`).
    Branch,
    /// Detached at the freshly fetched base; no branch, nothing to push (`research`).
    Detached,
}

/// What [`prepare_worktree`] needs to know about the issue and repository.
#[derive(Clone, Debug)]
pub struct WorktreeRequest<'a> {
    /// The main worktree of the user's clone.
    pub repo_root: &'a Path,
    /// The repository's name without its owner (`{repo}` in the path template).
    pub repo_name: &'a str,
    /// The branch work starts from (`base` in crew.toml, or the repository's default branch).
    pub base: &'a str,
    pub issue: u64,
    /// The issue's title, untrusted; only its slug is used.
    pub title: &'a str,
    /// Which attempt this is; only logged, since a replacement finds the branch by itself.
    pub attempt: u32,
    pub mode: CheckoutMode,
}

/// A prepared worktree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Worktree {
    /// Absolute path of the worktree directory.
    pub path: PathBuf,
    /// The branch checked out; `None` for a detached (research) worktree.
    pub branch: Option<String>,
    /// `origin/<base>` as fetched by this call; diff stats are taken against it.
    pub base_sha: String,
    /// The issue's branch or worktree existed before this call (a replacement attempt, or a
    /// repeated dispatch), so the worker continues from it.
    pub reused: bool,
}

/// Fetches `base` and gives the issue its worktree: a new branch from `origin/<base>`, the
/// issue's existing branch (local or on origin) when there is one, or a detached checkout for
/// [`CheckoutMode::Detached`]. Safe to run again at any point: it reuses what exists.
pub fn prepare_worktree(
    request: &WorktreeRequest<'_>,
    workers: &WorkersConfig,
) -> Result<Worktree, WorkspaceError> {
    let repo_root = canonical(request.repo_root);
    tracing::debug!(
        issue = request.issue,
        attempt = request.attempt,
        "preparing worktree"
    );
    let path = worktree_path(
        &workers.worktree,
        &repo_root,
        &workers.worktree_root,
        request.repo_name,
        request.issue,
        request.title,
    );
    if !is_valid_branch(request.base) {
        return Err(WorkspaceError::InvalidBranch(request.base.to_owned()));
    }
    let wanted_branch = branch_name(&workers.branch, request.issue, request.title)?;
    let pattern = BranchPattern::new(&workers.branch, request.issue);

    fetch(&repo_root, request.base, &pattern)?;
    let repo = open(&repo_root)?;
    let base_sha = resolve(&repo, &format!("refs/remotes/origin/{}", request.base))?;

    let mut existing = list_worktrees(&repo_root)?;
    if let Some(entry) = existing.iter().find(|entry| same_path(&entry.path, &path))
        && (entry.initializing || !entry.path.exists())
    {
        // A `git worktree add` that never finished (crash mid-checkout), or a directory deleted
        // behind git's back: nothing of the worker's can be in it, so start it over.
        let _ = git::run(
            &repo_root,
            [
                "worktree".as_ref(),
                "unlock".as_ref(),
                entry.path.as_os_str(),
            ],
        );
        let _ = git::run(
            &repo_root,
            [
                "worktree".as_ref(),
                "remove".as_ref(),
                "--force".as_ref(),
                "--force".as_ref(),
                entry.path.as_os_str(),
            ],
        );
        git::run(&repo_root, ["worktree", "prune"])?;
        existing = list_worktrees(&repo_root)?;
        if existing
            .iter()
            .any(|entry| entry.initializing && same_path(&entry.path, &path))
        {
            return Err(WorkspaceError::PathOccupied(path));
        }
    }
    let registered = existing.iter().find(|entry| same_path(&entry.path, &path));

    if request.mode == CheckoutMode::Detached {
        if let Some(entry) = registered {
            return match &entry.branch {
                None => finish(&path, None, base_sha, true),
                Some(found) => Err(WorkspaceError::WrongCheckout {
                    path,
                    expected: "a detached HEAD".to_owned(),
                    found: found.clone(),
                }),
            };
        }
        ensure_path_free(&path)?;
        git::run(
            &repo_root,
            [
                "worktree".as_ref(),
                "add".as_ref(),
                "--detach".as_ref(),
                path.as_os_str(),
                base_sha.as_ref(),
            ],
        )?;
        return finish(&path, None, base_sha, false);
    }

    let branch = pick_branch(&repo, &pattern, &wanted_branch)?;
    if let Some(entry) = registered {
        return match &entry.branch {
            Some(found) if pattern.matches(found) => {
                finish(&path, Some(found.clone()), base_sha, true)
            }
            found => Err(WorkspaceError::WrongCheckout {
                path,
                expected: branch.name.clone(),
                found: found
                    .clone()
                    .unwrap_or_else(|| "a detached HEAD".to_owned()),
            }),
        };
    }
    if let Some(elsewhere) = existing
        .iter()
        .find(|entry| entry.branch.as_deref() == Some(branch.name.as_str()))
    {
        return Err(WorkspaceError::BranchCheckedOutElsewhere {
            branch: branch.name,
            path: elsewhere.path.clone(),
        });
    }
    ensure_path_free(&path)?;
    let tracking = format!("refs/remotes/origin/{}", branch.name);
    match branch.origin {
        BranchOrigin::Local => {
            // Another host may have pushed WIP since this clone last saw the branch: take it when
            // the local branch is simply behind (it is checked out nowhere, we just looked).
            if let Ok(remote) = resolve(&repo, &tracking) {
                let local = resolve(&repo, &format!("refs/heads/{}", branch.name))?;
                if local != remote && is_ancestor(&repo, &local, &remote)? {
                    git::run(
                        &repo_root,
                        [
                            "update-ref",
                            &format!("refs/heads/{}", branch.name),
                            &remote,
                            &local,
                        ],
                    )?;
                }
            }
            worktree_add(&repo_root, &path, &[], &branch.name)?;
        }
        BranchOrigin::Remote => {
            worktree_add(
                &repo_root,
                &path,
                &["--track", "-b", &branch.name],
                &format!("origin/{}", branch.name),
            )?;
        }
        BranchOrigin::New => {
            worktree_add(
                &repo_root,
                &path,
                &["--no-track", "-b", &branch.name],
                &base_sha,
            )?;
        }
    }
    let reused = branch.origin != BranchOrigin::New;
    finish(&path, Some(branch.name), base_sha, reused)
}

/// The last step of every path through [`prepare_worktree`]: `.crew/` excluded, path canonical.
fn finish(
    path: &Path,
    branch: Option<String>,
    base_sha: String,
    reused: bool,
) -> Result<Worktree, WorkspaceError> {
    ensure_crew_excluded(path)?;
    let worktree = Worktree {
        path: canonical(path),
        branch,
        base_sha,
        reused,
    };
    tracing::info!(
        path = %worktree.path.display(),
        branch = worktree.branch.as_deref().unwrap_or("(detached)"),
        base = %worktree.base_sha,
        reused = worktree.reused,
        "worktree ready"
    );
    Ok(worktree)
}

/// `git worktree add [options] <path> <commit-ish>`.
fn worktree_add(
    repo_root: &Path,
    path: &Path,
    options: &[&str],
    commit: &str,
) -> Result<(), WorkspaceError> {
    let mut argv: Vec<OsString> = vec!["worktree".into(), "add".into()];
    argv.extend(options.iter().map(OsString::from));
    argv.push(path.as_os_str().to_owned());
    argv.push(commit.into());
    git::run(repo_root, argv)?;
    Ok(())
}

/// Where the branch a worker will use comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BranchOrigin {
    Local,
    Remote,
    New,
}

struct ChosenBranch {
    name: String,
    origin: BranchOrigin,
}

/// The issue's branch: the wanted name if it exists anywhere, else any branch the template
/// gives for this issue under another slug (the title changed), local first; else a new one.
fn pick_branch(
    repo: &Repository,
    pattern: &BranchPattern,
    wanted: &str,
) -> Result<ChosenBranch, WorkspaceError> {
    let mut local = Vec::new();
    let mut remote = Vec::new();
    let branches = repo
        .branches(None)
        .map_err(|source| repository_error(repo, source))?;
    for branch in branches {
        let (branch, kind) = branch.map_err(|source| repository_error(repo, source))?;
        let Ok(Some(name)) = branch.name() else {
            continue;
        };
        match kind {
            BranchType::Local if pattern.matches(name) => local.push(name.to_owned()),
            BranchType::Remote => {
                if let Some(name) = name.strip_prefix("origin/")
                    && pattern.matches(name)
                {
                    remote.push(name.to_owned());
                }
            }
            BranchType::Local => {}
        }
    }
    local.sort();
    remote.sort();
    let chosen = |name: &str, origin| ChosenBranch {
        name: name.to_owned(),
        origin,
    };
    Ok(if local.iter().any(|name| name == wanted) {
        chosen(wanted, BranchOrigin::Local)
    } else if remote.iter().any(|name| name == wanted) {
        chosen(wanted, BranchOrigin::Remote)
    } else if let Some(name) = local.first() {
        chosen(name, BranchOrigin::Local)
    } else if let Some(name) = remote.first() {
        chosen(name, BranchOrigin::Remote)
    } else {
        chosen(wanted, BranchOrigin::New)
    })
}

/// Recognises the branch names the `workers.branch` template gives one issue, whatever slug.
#[derive(Debug)]
struct BranchPattern {
    /// The template split at `{slug}`, with `{issue}` filled in.
    literals: Vec<String>,
}

impl BranchPattern {
    fn new(template: &str, issue: u64) -> Self {
        let literals = template
            .replace("{issue}", &issue.to_string())
            .split("{slug}")
            .map(str::to_owned)
            .collect();
        BranchPattern { literals }
    }

    /// The fetch glob: everything up to the first `{slug}`, then `*` (git allows one `*`, and it
    /// may match more than this issue's branches; [`BranchPattern::matches`] filters).
    fn glob(&self) -> String {
        format!("{}*", self.literals.first().map_or("", String::as_str))
    }

    fn matches(&self, name: &str) -> bool {
        fn rest_matches(rest: &str, literals: &[String]) -> bool {
            let Some((first, others)) = literals.split_first() else {
                return rest.is_empty();
            };
            if others.is_empty() {
                return rest == first;
            }
            let Some(after) = rest.strip_prefix(first.as_str()) else {
                return false;
            };
            // A slug is `[a-z0-9-]+`: try each way of ending it.
            (1..=after.len()).any(|end| {
                after.is_char_boundary(end)
                    && after[..end]
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    && rest_matches(&after[end..], others)
            })
        }
        rest_matches(name, &self.literals)
    }
}

/// `git fetch origin` of the base and of every branch the template could give this issue, into
/// the usual remote-tracking refs. A glob that matches nothing is not an error, which is why the
/// issue's branches are fetched by pattern rather than by name.
fn fetch(repo_root: &Path, base: &str, pattern: &BranchPattern) -> Result<(), WorkspaceError> {
    let glob = pattern.glob();
    let fetched = git::fetch_origin(
        repo_root,
        &[
            format!("+refs/heads/{base}:refs/remotes/origin/{base}"),
            format!("+refs/heads/{glob}:refs/remotes/origin/{glob}"),
        ],
    );
    match fetched {
        Ok(_) => Ok(()),
        Err(WorkspaceError::Git { stderr, .. }) => Err(WorkspaceError::Fetch {
            base: base.to_owned(),
            stderr,
        }),
        Err(other) => Err(other),
    }
}

/// One entry of `git worktree list --porcelain -z`.
#[derive(Debug)]
struct WorktreeEntry {
    path: PathBuf,
    /// Short branch name; `None` when detached (or bare).
    branch: Option<String>,
    /// Locked by a `git worktree add` that has not finished.
    initializing: bool,
    main: bool,
}

fn list_worktrees(repo_root: &Path) -> Result<Vec<WorktreeEntry>, WorkspaceError> {
    let output = git::run(repo_root, ["worktree", "list", "--porcelain", "-z"])?;
    let mut entries: Vec<WorktreeEntry> = Vec::new();
    for field in output.split('\0') {
        if let Some(path) = field.strip_prefix("worktree ") {
            entries.push(WorktreeEntry {
                path: PathBuf::from(path),
                branch: None,
                initializing: false,
                main: entries.is_empty(),
            });
        } else if let Some(entry) = entries.last_mut() {
            if let Some(branch) = field.strip_prefix("branch ") {
                entry.branch = Some(
                    branch
                        .strip_prefix("refs/heads/")
                        .unwrap_or(branch)
                        .to_owned(),
                );
            } else if field == "locked initializing" {
                entry.initializing = true;
            }
        }
    }
    Ok(entries)
}

/// Every worker's worktree of the repository at `repo_root` on this machine: each linked worktree
/// that has a `.crew/context.json`, with that context. A worktree whose context cannot be read
/// is skipped with a warning (it is reported, not fatal: one broken file must not hide every
/// other worker from a reconcile). Sorted by issue, then path.
pub fn worker_worktrees(
    repo_root: &Path,
) -> Result<Vec<(PathBuf, super::WorkerContext)>, WorkspaceError> {
    // A `git worktree add` running at this moment (another dispatch) can make the listing fail
    // for an instant ("failed to read .../commondir"): look again before giving up.
    let mut listed = list_worktrees(repo_root);
    for _ in 0..5 {
        if listed.is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(40));
        listed = list_worktrees(repo_root);
    }
    let mut found = Vec::new();
    for entry in listed? {
        if entry.main || entry.initializing || !entry.path.is_dir() {
            continue;
        }
        match super::read_context(&entry.path) {
            Ok(Some(context)) => found.push((entry.path, context)),
            Ok(None) => {}
            Err(error) => tracing::warn!(%error, "skipping a worktree whose context is unreadable"),
        }
    }
    found.sort_by(|a, b| (a.1.issue, &a.0).cmp(&(b.1.issue, &b.0)));
    Ok(found)
}

/// A worktree path must be free or an empty directory before `git worktree add`; anything else
/// there is someone's data.
fn ensure_path_free(path: &Path) -> Result<(), WorkspaceError> {
    match std::fs::read_dir(path) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                Err(WorkspaceError::PathOccupied(path.to_path_buf()))
            } else {
                Ok(())
            }
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(_) => Err(WorkspaceError::PathOccupied(path.to_path_buf())),
    }
}

/// Opens an existing worktree as a [`Worktree`]: its branch from HEAD, its base from
/// `.crew/context.json` (or `origin/HEAD`) as the merge-base with HEAD; `reused` is true.
pub fn open_worktree(path: &Path) -> Result<Worktree, WorkspaceError> {
    let path = canonical(path);
    let repo = open(&path)?;
    let head = repo
        .head()
        .map_err(|source| repository_error(&repo, source))?;
    let branch = if repo.head_detached().unwrap_or(false) {
        None
    } else {
        head.shorthand().map(str::to_owned)
    };
    let head_sha = head
        .peel_to_commit()
        .map_err(|source| repository_error(&repo, source))?
        .id();
    let base_ref = match read_context(&path) {
        Ok(Some(context)) => Some(format!("refs/remotes/origin/{}", context.base)),
        _ => default_base_from_origin(&path).map(|base| format!("refs/remotes/origin/{base}")),
    };
    let base_sha = base_ref
        .and_then(|name| repo.refname_to_id(&name).ok())
        .and_then(|base| repo.merge_base(base, head_sha).ok())
        .unwrap_or(head_sha)
        .to_string();
    Ok(Worktree {
        path,
        branch,
        base_sha,
        reused: true,
    })
}

/// The branch `origin/HEAD` points at in the local clone (what `git clone` recorded as the
/// remote's default branch), for when crew.toml names no `base` and GitHub was not asked.
pub fn default_base_from_origin(repo_root: &Path) -> Option<String> {
    let repo = Repository::open(repo_root).ok()?;
    let reference = repo.find_reference("refs/remotes/origin/HEAD").ok()?;
    let target = reference.symbolic_target()?;
    target
        .strip_prefix("refs/remotes/origin/")
        .map(str::to_owned)
}

/// The commit and tree `origin/<base>` points at in this clone (as of its last fetch), if it
/// has that remote branch: a dispatch's first lease commit can hang off it without asking
/// GitHub for the branch.
pub fn origin_tip(repo_root: &Path, base: &str) -> Option<(String, String)> {
    let repo = Repository::open(repo_root).ok()?;
    let commit = repo
        .find_reference(&format!("refs/remotes/origin/{base}"))
        .ok()?
        .peel_to_commit()
        .ok()?;
    Some((commit.id().to_string(), commit.tree_id().to_string()))
}

/// Removes a worker's worktree, saving its work first: a dirty tree is salvaged (committed as
/// WIP and pushed, see [`salvage`]); if that commit fails, nothing is removed. The branch stays.
/// A path that is no longer a worktree is only pruned from git's list.
pub fn remove_worktree(
    path: &Path,
    message: &str,
) -> Result<Option<SalvageResult>, WorkspaceError> {
    if !path.exists() {
        // Nothing on disk to lose; make git forget it if it still lists it.
        if let Some(parent) = path.parent()
            && let Ok(repo) = Repository::discover(parent)
            && let Some(root) = repo.workdir()
        {
            let _ = git::run(root, ["worktree", "prune"]);
        }
        return Ok(None);
    }
    let path = canonical(path);
    let entries = list_worktrees(&path)?;
    let main = entries
        .iter()
        .find(|entry| entry.main)
        .map(|entry| entry.path.clone())
        .ok_or_else(|| WorkspaceError::PathOccupied(path.clone()))?;
    let Some(entry) = entries.iter().find(|entry| same_path(&entry.path, &path)) else {
        return Err(WorkspaceError::PathOccupied(path));
    };
    if entry.main {
        return Err(WorkspaceError::MainWorktree(path));
    }
    let salvaged = if is_dirty(&path)? {
        let worktree = open_worktree(&path)?;
        salvage(&worktree, message)?
    } else {
        None
    };
    // Only reached when the tree is clean or its work is committed, so `--force` only overrides
    // git's objection to untracked files under `.crew/` (logs, context), which crew owns.
    git::run(
        &main,
        [
            "worktree".as_ref(),
            "remove".as_ref(),
            "--force".as_ref(),
            path.as_os_str(),
        ],
    )?;
    git::run(&main, ["worktree", "prune"])?;
    Ok(salvaged)
}

pub(crate) fn open(path: &Path) -> Result<Repository, WorkspaceError> {
    Repository::open(path).map_err(|source| WorkspaceError::Repository {
        path: path.to_path_buf(),
        source,
    })
}

pub(crate) fn repository_error(repo: &Repository, source: git2::Error) -> WorkspaceError {
    WorkspaceError::Repository {
        path: repo.workdir().unwrap_or_else(|| repo.path()).to_path_buf(),
        source,
    }
}

fn resolve(repo: &Repository, name: &str) -> Result<String, WorkspaceError> {
    repo.refname_to_id(name)
        .map(|oid| oid.to_string())
        .map_err(|source| repository_error(repo, source))
}

fn is_ancestor(repo: &Repository, ancestor: &str, of: &str) -> Result<bool, WorkspaceError> {
    let parse =
        |sha: &str| git2::Oid::from_str(sha).map_err(|source| repository_error(repo, source));
    repo.graph_descendant_of(parse(of)?, parse(ancestor)?)
        .map_err(|source| repository_error(repo, source))
}

/// The canonical path when it exists (symlinks such as macOS's `/tmp` resolved), else the
/// lexically normalized one.
pub(crate) fn canonical(path: &Path) -> PathBuf {
    path.canonicalize().unwrap_or_else(|_| normalize(path))
}

fn same_path(a: &Path, b: &Path) -> bool {
    canonical(a) == canonical(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branch_pattern_matches_this_issue_only() {
        let pattern = BranchPattern::new("feature/{issue}-{slug}", 42);
        assert_eq!(pattern.glob(), "feature/42-*");
        assert!(pattern.matches("feature/42-fix-it"));
        assert!(pattern.matches("feature/42-issue"));
        assert!(!pattern.matches("feature/420-fix"));
        assert!(!pattern.matches("feature/42-"));
        assert!(!pattern.matches("feature/42-a/b"));
        let exact = BranchPattern::new("crew/{issue}", 7);
        assert_eq!(exact.glob(), "crew/7*");
        assert!(exact.matches("crew/7"));
        assert!(!exact.matches("crew/77"));
    }
}
