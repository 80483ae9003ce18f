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
    repo.config()?.set_bool("receive.denyCurrentBranch", false)?;
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
            Some((dir, rest)) => self.dirs.entry(dir.to_string()).or_default().insert(rest, blob),
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
