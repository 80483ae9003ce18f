//! `crew init`: set a repository up for crew. Today one step, `--actions`: write the GitHub
//! Actions workflows of runtime `actions` (DESIGN.md 3) into `.github/workflows/`.
//!
//! Decisions, and why:
//! - **Steps, each a list of files.** A step says which files it wants with which content
//!   ([`planned_files`]); writing them is one loop shared by every step, so the steps still to
//!   come (crew.toml, labels, the board) add a plan, not another writer.
//! - **Never clobber.** A file that already holds exactly what crew would write is `unchanged`;
//!   one that differs (the user edited it, or an older crew wrote it) is `kept` and reported,
//!   and only `--force` overwrites it. So running `crew init` again is always safe.
//! - **Files are written atomically** (temp file and rename), so an interrupted init leaves each
//!   file either as it was or complete.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Args;
use serde::Serialize;

use crate::context::Ctx;
use crate::error::CrewError;
use crate::runtime_actions::{
    FILL_WORKFLOW, FILL_WORKFLOW_TEXT, WORKER_WORKFLOW, WORKER_WORKFLOW_TEXT,
};

/// Set this repository up for crew
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Write the GitHub Actions workflows of runtime `actions` (crew-fill.yml, crew-worker.yml)
    /// to .github/workflows/
    #[arg(long)]
    pub actions: bool,

    /// Overwrite files that differ from what crew would write
    #[arg(long)]
    pub force: bool,
}

/// What happened to one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileAction {
    Created,
    Unchanged,
    /// It differed and `--force` replaced it.
    Overwritten,
    /// It differs and was left alone (no `--force`).
    Kept,
}

/// One file of one step, as `--json` prints it.
#[derive(Debug, Serialize)]
pub struct InitFileView {
    pub step: &'static str,
    /// Relative to the repository root.
    pub path: String,
    pub action: FileAction,
}

/// `crew init --json`.
#[derive(Debug, Serialize)]
pub struct InitView {
    pub root: String,
    pub files: Vec<InitFileView>,
}

/// A file a step wants.
struct PlannedFile {
    step: &'static str,
    path: PathBuf,
    content: &'static str,
}

/// The files the chosen steps want, relative to the repository root.
fn planned_files(args: &InitArgs) -> Vec<PlannedFile> {
    let mut files = Vec::new();
    if args.actions {
        let dir = Path::new(".github").join("workflows");
        files.push(PlannedFile {
            step: "actions",
            path: dir.join(FILL_WORKFLOW),
            content: FILL_WORKFLOW_TEXT,
        });
        files.push(PlannedFile {
            step: "actions",
            path: dir.join(WORKER_WORKFLOW),
            content: WORKER_WORKFLOW_TEXT,
        });
    }
    files
}

pub async fn run(ctx: &Ctx, args: &InitArgs) -> Result<(), CrewError> {
    let planned = planned_files(args);
    if planned.is_empty() {
        return Err(CrewError::user("crew init: nothing to do")
            .with_hint("`crew init --actions` writes the GitHub Actions workflows"));
    }
    let Some(root) = ctx.settings.repo_root.clone() else {
        return Err(CrewError::user(
            "crew init needs a clone of the repository: run it inside one",
        ));
    };
    let mut files = Vec::new();
    for file in &planned {
        let action = write_planned(&root.join(&file.path), file.content, args.force)?;
        files.push(InitFileView {
            step: file.step,
            path: file.path.to_string_lossy().into_owned(),
            action,
        });
    }
    let view = InitView {
        root: root.to_string_lossy().into_owned(),
        files,
    };
    if ctx.settings.json {
        ctx.printer.json(&view)?;
    } else {
        ctx.printer.out(|w| render(w, &view))?;
    }
    let kept: Vec<&str> = view
        .files
        .iter()
        .filter(|file| file.action == FileAction::Kept)
        .map(|file| file.path.as_str())
        .collect();
    if !kept.is_empty() {
        return Err(CrewError::user(format!(
            "not overwritten, they differ from crew's: {}",
            kept.join(", ")
        ))
        .with_hint("compare them with `crew init --actions --force` in a scratch clone, or pass --force to replace them"));
    }
    if args.actions && !ctx.settings.json {
        ctx.printer.status(
            "next: commit the workflows, set the repository variable CREW_GIT (where crew is \
             installed from) and the agent's API key secret, and set workers.runtime = \"actions\" \
             in crew.toml",
        );
    }
    Ok(())
}

fn render(w: &mut dyn Write, view: &InitView) -> std::io::Result<()> {
    for file in &view.files {
        let what = match file.action {
            FileAction::Created => "created",
            FileAction::Unchanged => "unchanged",
            FileAction::Overwritten => "overwritten",
            FileAction::Kept => "differs, kept (--force to overwrite)",
        };
        writeln!(w, "{:<11} {}", format!("{what}:"), file.path)?;
    }
    Ok(())
}

/// Makes `path` hold `content` unless it differs and `force` is off.
fn write_planned(path: &Path, content: &str, force: bool) -> Result<FileAction, CrewError> {
    let action = match std::fs::read(path) {
        Ok(existing) if existing == content.as_bytes() => return Ok(FileAction::Unchanged),
        Ok(_) if !force => return Ok(FileAction::Kept),
        Ok(_) => FileAction::Overwritten,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => FileAction::Created,
        Err(error) => {
            return Err(CrewError::user(format!(
                "cannot read {}: {error}",
                path.display()
            )));
        }
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)
        .map_err(|error| CrewError::user(format!("cannot create {}: {error}", dir.display())))?;
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    std::fs::write(&temp, content)
        .and_then(|()| std::fs::rename(&temp, path))
        .map_err(|error| CrewError::user(format!("cannot write {}: {error}", path.display())))?;
    Ok(action)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_created_then_unchanged_then_kept_unless_forced() -> Result<(), CrewError> {
        let dir = tempfile::tempdir().map_err(CrewError::internal)?;
        let path = dir.path().join("a").join("w.yml");
        assert_eq!(write_planned(&path, "one", false)?, FileAction::Created);
        assert_eq!(write_planned(&path, "one", false)?, FileAction::Unchanged);
        assert_eq!(write_planned(&path, "two", false)?, FileAction::Kept);
        assert_eq!(std::fs::read_to_string(&path).ok().as_deref(), Some("one"));
        assert_eq!(write_planned(&path, "two", true)?, FileAction::Overwritten);
        assert_eq!(std::fs::read_to_string(&path).ok().as_deref(), Some("two"));
        Ok(())
    }
}
