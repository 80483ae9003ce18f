//! The real bare git repository behind each emulated repository.
//!
//! Git data routes and pull-request merges read and write it with git2, and workers clone and
//! push to it through its `file://` clone URL, so what crew does with git is what git does.

use std::collections::BTreeMap;
use std::path::Path;

use git2::{Repository, Signature};

/// Create a bare repository with one commit holding `files` on `branch`. Does nothing when the
/// repository already exists (a restarted emulator with `--state-dir`).
pub fn init_bare(dir: &Path, branch: &str, files: &BTreeMap<String, String>) -> anyhow::Result<()> {
    if dir.join("HEAD").exists() {
        return Ok(());
    }
    std::fs::create_dir_all(dir)?;
    let repo = Repository::init_bare(dir)?;
    // Pushes over file:// go through this repository's own receive-pack.
    repo.config()?
        .set_bool("receive.denyCurrentBranch", false)?;
    let mut builder = TreeBuilderNested::default();
    for (path, content) in files {
        let blob = repo.blob(content.as_bytes())?;
        builder.insert(path, blob);
    }
    let tree_id = builder.write(&repo)?;
    let tree = repo.find_tree(tree_id)?;
    let signature = Signature::now("github-emulator", "emulator@example.invalid")?;
    let refname = format!("refs/heads/{branch}");
    repo.commit(
        Some(&refname),
        &signature,
        &signature,
        "Initial commit",
        &tree,
        &[],
    )?;
    repo.set_head(&refname)?;
    Ok(())
}

/// Builds nested trees from slash-separated paths.
#[derive(Default)]
struct TreeBuilderNested {
    blobs: BTreeMap<String, git2::Oid>,
    dirs: BTreeMap<String, TreeBuilderNested>,
}

impl TreeBuilderNested {
    fn insert(&mut self, path: &str, blob: git2::Oid) {
        match path.split_once('/') {
            Some((dir, rest)) => self
                .dirs
                .entry(dir.to_string())
                .or_default()
                .insert(rest, blob),
            None => {
                self.blobs.insert(path.to_string(), blob);
            }
        }
    }

    fn write(&self, repo: &Repository) -> anyhow::Result<git2::Oid> {
        let mut builder = repo.treebuilder(None)?;
        for (name, oid) in &self.blobs {
            builder.insert(name, *oid, 0o100644)?;
        }
        for (name, dir) in &self.dirs {
            let oid = dir.write(repo)?;
            builder.insert(name, oid, 0o040000)?;
        }
        Ok(builder.write()?)
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers for the git data and pull-request routes. Every call opens the repository afresh under
// the state lock (pushes by `git` land in the same directory at any time, so nothing is cached).

/// Open a repository's bare git directory.
pub fn open(dir: &Path) -> Result<Repository, git2::Error> {
    Repository::open_bare(dir)
}

/// Parse a full 40-hex object id; anything else is not an object id GitHub would accept.
pub fn parse_sha(text: &str) -> Option<git2::Oid> {
    if text.len() != 40 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    git2::Oid::from_str(text).ok()
}

/// The object a direct reference points at, with the object's kind; `None` when absent.
pub fn ref_target(repo: &Repository, full_name: &str) -> Option<(git2::Oid, git2::ObjectType)> {
    let reference = repo.find_reference(full_name).ok()?;
    let reference = reference.resolve().ok()?;
    let oid = reference.target()?;
    let kind = repo.find_object(oid, None).ok()?.kind()?;
    Some((oid, kind))
}

/// The commit at the tip of `refs/heads/{branch}`, if the branch exists.
pub fn branch_tip(repo: &Repository, branch: &str) -> Option<git2::Oid> {
    let (oid, _) = ref_target(repo, &format!("refs/heads/{branch}"))?;
    repo.find_commit(oid).ok().map(|c| c.id())
}

/// GitHub's name for an object kind.
pub fn kind_name(kind: git2::ObjectType) -> &'static str {
    match kind {
        git2::ObjectType::Commit => "commit",
        git2::ObjectType::Tree => "tree",
        git2::ObjectType::Blob => "blob",
        git2::ObjectType::Tag => "tag",
        git2::ObjectType::Any => "object",
    }
}

/// What merging `head` into `base` would give, computed in memory (nothing is written).
pub enum MergePreview {
    /// The merge is clean; the tree it would produce (already written to the object store).
    Clean(git2::Oid),
    Conflict,
}

/// Merge `head` into `base` in memory and write the resulting tree (trees are content-addressed,
/// so writing one for a preview is harmless).
pub fn preview_merge(
    repo: &Repository,
    base: git2::Oid,
    head: git2::Oid,
) -> Result<MergePreview, git2::Error> {
    let base_commit = repo.find_commit(base)?;
    let head_commit = repo.find_commit(head)?;
    let mut index = repo.merge_commits(&base_commit, &head_commit, None)?;
    if index.has_conflicts() {
        return Ok(MergePreview::Conflict);
    }
    Ok(MergePreview::Clean(index.write_tree_to(repo)?))
}

/// Commits reachable from `head` but not from `base`, oldest first.
pub fn commits_between(
    repo: &Repository,
    base: git2::Oid,
    head: git2::Oid,
) -> Result<Vec<git2::Oid>, git2::Error> {
    let mut walk = repo.revwalk()?;
    walk.push(head)?;
    walk.hide(base)?;
    walk.set_sorting(git2::Sort::TOPOLOGICAL | git2::Sort::REVERSE)?;
    walk.collect()
}

/// Size of a pull request's change: (additions, deletions, changed files) between the merge base
/// and `head`.
pub fn diff_stats(
    repo: &Repository,
    base: git2::Oid,
    head: git2::Oid,
) -> Result<(usize, usize, usize), git2::Error> {
    let merge_base = repo.merge_base(base, head).unwrap_or(base);
    let old_tree = repo.find_commit(merge_base)?.tree()?;
    let new_tree = repo.find_commit(head)?.tree()?;
    let diff = repo.diff_tree_to_tree(Some(&old_tree), Some(&new_tree), None)?;
    let stats = diff.stats()?;
    Ok((stats.insertions(), stats.deletions(), stats.files_changed()))
}

/// One change to a tree: set `path` to an object with a mode, or remove it (`None`).
pub struct TreeChange {
    pub path: Vec<String>,
    pub entry: Option<(git2::Oid, i32)>,
}

/// Apply `changes` to `base` (or an empty tree) and write the result, building intermediate
/// directories as needed and dropping directories left empty. Returns the new tree's id.
pub fn edit_tree(
    repo: &Repository,
    base: Option<&git2::Tree<'_>>,
    changes: &[TreeChange],
) -> Result<git2::Oid, git2::Error> {
    let mut builder = repo.treebuilder(base)?;
    // Direct entries first, then each subdirectory with its share of the changes, in order.
    let mut subdirs: BTreeMap<String, Vec<TreeChange>> = BTreeMap::new();
    for change in changes {
        match change.path.as_slice() {
            [] => continue,
            [name] => match change.entry {
                Some((oid, mode)) => {
                    builder.insert(name, oid, mode)?;
                    subdirs.remove(name);
                }
                None => {
                    if builder.get(name)?.is_some() {
                        builder.remove(name)?;
                    }
                }
            },
            [dir, rest @ ..] => subdirs.entry(dir.clone()).or_default().push(TreeChange {
                path: rest.to_vec(),
                entry: change.entry,
            }),
        }
    }
    for (dir, changes) in subdirs {
        let existing = match builder.get(&dir)? {
            Some(entry) if entry.kind() == Some(git2::ObjectType::Tree) => {
                Some(repo.find_tree(entry.id())?)
            }
            _ => None,
        };
        let sub = edit_tree(repo, existing.as_ref(), &changes)?;
        if repo.find_tree(sub)?.is_empty() {
            if builder.get(&dir)?.is_some() {
                builder.remove(&dir)?;
            }
        } else {
            builder.insert(&dir, sub, 0o040000)?;
        }
    }
    builder.write()
}
