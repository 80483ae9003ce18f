//! `crew init`: set a repository up for crew, in steps: `crew.toml` with every key and its
//! default, the `crew:*` labels, the project board's status options, and (`--actions`) the GitHub
//! Actions workflows of runtime `actions` (DESIGN.md 3); then `crew doctor` says whether it all
//! works.
//!
//! Decisions, and why:
//! - **Steps, each a plan.** A file step says which files it wants with which content
//!   ([`planned_files`]); writing them is one loop shared by every file step. The GitHub steps
//!   (labels, board) read first and write only what is missing.
//! - **Never clobber.** A file that already holds exactly what crew would write is `unchanged`;
//!   one that differs (the user edited it, or an older crew wrote it) is `kept` and reported,
//!   and only `--force` overwrites it. An edited `crew.toml` is the normal case (that is what it
//!   is for), so keeping it is not an error; a kept workflow is (exit 1), because running with a
//!   stale workflow fails later and far away. Labels that exist are left as they are, colour
//!   included. So running `crew init` again is always safe, and when nothing needed doing it
//!   writes nothing and says so.
//! - **Labels only when crew mirrors them** ([`labels_enabled`]: no project configured): with a
//!   board, they would be labels nothing ever sets.
//! - **Board options are checked, not created.** GitHub's only way to add an option is
//!   `updateProjectV2Field`, whose `singleSelectOptions` *replaces* every option of the field
//!   (the options' ids change, and items lose their status), and the emulator does not model it
//!   either. So init names the missing options and how to add them on the board by hand.
//! - **Doctor last, as is**: [`doctor::run`] prints its usual report (the `--json` view embeds
//!   [`doctor::diagnose`]'s), so init's verdict is exactly doctor's. `--dry-run` skips it: the
//!   lease probe writes refs.
//! - **Files are written atomically** (temp file and rename), so an interrupted init leaves each
//!   file either as it was or complete.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Args;
use serde::Serialize;

use crate::commands::doctor::{self, DoctorArgs, DoctorReport};
use crate::context::Ctx;
use crate::error::CrewError;
use crate::github::{Board, CREW_LABEL_SPECS, LabelCreated, labels_enabled};
use crate::runtime_actions::{
    FILL_WORKFLOW, FILL_WORKFLOW_TEXT, WORKER_WORKFLOW, WORKER_WORKFLOW_TEXT,
};
use crate::settings::{CONFIG_FILE_NAME, DEFAULT_CONFIG};

/// Set this repository up for crew: crew.toml, labels, the board's status options, and (with
/// --actions) the GitHub Actions workflows; then run `crew doctor`
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  crew init                  Write crew.toml, create the crew:* labels, check the board, run doctor
  crew init --actions        ... and write .github/workflows/crew-fill.yml and crew-worker.yml
  crew init --dry-run        Say what would be written, write nothing
  crew init --force          Replace files that differ from crew's (crew.toml back to defaults)")]
pub struct InitArgs {
    /// Write the GitHub Actions workflows of runtime `actions` (crew-fill.yml, crew-worker.yml)
    /// to .github/workflows/
    #[arg(long)]
    pub actions: bool,

    /// Overwrite files that differ from what crew would write
    #[arg(long)]
    pub force: bool,

    /// Report what would be done, and write nothing (doctor is not run: it writes a probe ref)
    #[arg(long)]
    pub dry_run: bool,
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
    /// `--dry-run`: it does not exist.
    WouldCreate,
    /// `--dry-run --force`: it differs.
    WouldOverwrite,
}

impl FileAction {
    fn changed(self) -> bool {
        matches!(self, FileAction::Created | FileAction::Overwritten)
    }
}

/// One file of one step, as `--json` prints it.
#[derive(Debug, Serialize)]
pub struct InitFileView {
    pub step: &'static str,
    /// Relative to the repository root when inside it.
    pub path: String,
    pub action: FileAction,
}

/// What happened to one label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LabelAction {
    Created,
    /// It exists (left as it is).
    Present,
    WouldCreate,
}

#[derive(Debug, Serialize)]
pub struct LabelView {
    pub name: &'static str,
    pub color: &'static str,
    pub action: LabelAction,
}

/// The labels step.
#[derive(Debug, Serialize)]
pub struct LabelsView {
    /// Whether crew mirrors states to `crew:*` labels here (no project configured).
    pub mirrored: bool,
    pub labels: Vec<LabelView>,
}

/// The board step.
#[derive(Debug, Serialize)]
pub struct BoardView {
    /// `None` when no project is configured.
    pub project: Option<u64>,
    pub status_field: Option<String>,
    /// Options crew needs that the field lacks (add them by hand).
    pub missing: Vec<String>,
}

/// `crew init --json`.
#[derive(Debug, Serialize)]
pub struct InitView {
    pub root: String,
    pub dry_run: bool,
    /// `crew.toml` (or the file `--config` names).
    pub config: InitFileView,
    /// The workflow files (`--actions`).
    pub files: Vec<InitFileView>,
    pub labels: LabelsView,
    pub board: BoardView,
    /// Whether anything was (or, with `--dry-run`, would be) written.
    pub changed: bool,
    /// `crew doctor`'s report (absent with `--dry-run`).
    pub doctor: Option<DoctorReport>,
}

/// A file a step wants.
struct PlannedFile {
    step: &'static str,
    path: PathBuf,
    content: &'static str,
}

/// The workflow files, relative to the repository root.
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
    let Some(root) = ctx.settings.repo_root.clone() else {
        return Err(CrewError::user(
            "crew init needs a clone of the repository: run it inside one",
        )
        .with_hint("`git clone` the repository, `cd` into it, and run `crew init` again"));
    };
    let repo = ctx.settings.require_repo()?.clone();

    // 1. crew.toml: the file settings are read from, else a new one at the root.
    let config_path = ctx
        .settings
        .config_path
        .clone()
        .unwrap_or_else(|| root.join(CONFIG_FILE_NAME));
    let config = InitFileView {
        step: "config",
        path: display_path(&root, &config_path),
        action: write_planned(&config_path, DEFAULT_CONFIG, args.force, args.dry_run)?,
    };

    // 2. Labels.
    let github = ctx.github().await?;
    let mirrored = labels_enabled(&ctx.settings);
    let mut labels = Vec::new();
    if mirrored {
        let existing = github.repo_labels(&repo).await?;
        for spec in &CREW_LABEL_SPECS {
            let present = existing
                .iter()
                .any(|label| label.name.eq_ignore_ascii_case(spec.name));
            let action = if present {
                LabelAction::Present
            } else if args.dry_run {
                LabelAction::WouldCreate
            } else {
                match github.create_label(&repo, spec).await? {
                    LabelCreated::Created => LabelAction::Created,
                    LabelCreated::AlreadyExists => LabelAction::Present,
                }
            };
            labels.push(LabelView {
                name: spec.name,
                color: spec.color,
                action,
            });
        }
    }

    // 3. The board's status options.
    let board = match &ctx.settings.config.project {
        None => BoardView {
            project: None,
            status_field: None,
            missing: Vec::new(),
        },
        Some(project) => {
            let ids = Board::resolve(github, &ctx.settings)
                .await
                .map_err(|error| {
                    CrewError::from(error).with_hint(
                    "check [project] owner, number and status_field in crew.toml; `crew doctor` \
                     explains what it finds",
                )
                })?;
            let options = ids.map(|ids| ids.options).unwrap_or_default();
            let names = &project.status;
            let wanted = [
                &names.todo,
                &names.in_progress,
                &names.in_review,
                &names.blocked,
                &names.done,
            ];
            BoardView {
                project: Some(project.number),
                status_field: Some(project.status_field.clone()),
                missing: wanted
                    .into_iter()
                    .filter(|name| !options.contains_key(name.as_str()))
                    .cloned()
                    .collect(),
            }
        }
    };

    // 4. Workflows.
    let mut files = Vec::new();
    for file in planned_files(args) {
        let action = write_planned(
            &root.join(&file.path),
            file.content,
            args.force,
            args.dry_run,
        )?;
        files.push(InitFileView {
            step: file.step,
            path: file.path.to_string_lossy().into_owned(),
            action,
        });
    }

    let changed = config.action.changed()
        || matches!(
            config.action,
            FileAction::WouldCreate | FileAction::WouldOverwrite
        )
        || files.iter().any(|file| {
            file.action.changed()
                || matches!(
                    file.action,
                    FileAction::WouldCreate | FileAction::WouldOverwrite
                )
        })
        || labels
            .iter()
            .any(|label| label.action != LabelAction::Present);
    let mut view = InitView {
        root: root.to_string_lossy().into_owned(),
        dry_run: args.dry_run,
        config,
        files,
        labels: LabelsView { mirrored, labels },
        board,
        changed,
        doctor: None,
    };

    // 5. Doctor, and the verdict.
    let doctor_result = if ctx.settings.json {
        if !args.dry_run {
            let (report, _) = doctor::diagnose(&ctx.settings).await;
            view.doctor = Some(report);
        }
        ctx.printer.json(&view)?;
        match &view.doctor {
            Some(report) if !report.ok => Err(CrewError::user("crew doctor found problems")
                .with_hint("`crew doctor` shows each check with how to fix it")),
            _ => Ok(()),
        }
    } else {
        ctx.printer.out(|w| render(w, &view))?;
        report_board(ctx, &view.board);
        ctx.printer.status(summary(&view));
        if args.dry_run {
            Ok(())
        } else {
            ctx.printer.status("checking the setup with `crew doctor`:");
            doctor::run(ctx, &DoctorArgs::default()).await
        }
    };

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
    doctor_result?;
    if args.actions && view.changed && !args.dry_run && !ctx.settings.json {
        ctx.printer.status(
            "next: commit the workflows, set the repository variable CREW_GIT (where crew is \
             installed from) and the agent's API key secret, and set workers.runtime = \"actions\" \
             in crew.toml",
        );
    }
    Ok(())
}

/// `path` relative to `root` when inside it.
fn display_path(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

fn file_word(action: FileAction) -> &'static str {
    match action {
        FileAction::Created => "created",
        FileAction::Unchanged => "unchanged",
        FileAction::Overwritten => "overwritten",
        FileAction::Kept => "differs, kept (--force to overwrite)",
        FileAction::WouldCreate => "would create",
        FileAction::WouldOverwrite => "would overwrite",
    }
}

fn render(w: &mut dyn Write, view: &InitView) -> std::io::Result<()> {
    let config_word = match view.config.action {
        FileAction::Kept => "kept, differs from the defaults (--force to reset)",
        action => file_word(action),
    };
    writeln!(w, "{:<11} {}", format!("{config_word}:"), view.config.path)?;
    for label in &view.labels.labels {
        let what = match label.action {
            LabelAction::Created => "created",
            LabelAction::Present => "present",
            LabelAction::WouldCreate => "would create",
        };
        writeln!(w, "{:<11} label {}", format!("{what}:"), label.name)?;
    }
    match (view.board.project, &view.board.status_field) {
        (Some(number), Some(field)) if view.board.missing.is_empty() => {
            writeln!(
                w,
                "{:<11} board #{number}: `{field}` has every option crew sets",
                "present:"
            )?;
        }
        (Some(number), Some(field)) => writeln!(
            w,
            "{:<11} board #{number}: `{field}` lacks {}",
            "missing:",
            view.board.missing.join(", ")
        )?,
        _ => {}
    }
    for file in &view.files {
        writeln!(
            w,
            "{:<11} {}",
            format!("{}:", file_word(file.action)),
            file.path
        )?;
    }
    Ok(())
}

/// How to add missing board options, since crew cannot (see the module docs).
fn report_board(ctx: &Ctx, board: &BoardView) {
    if board.missing.is_empty() {
        return;
    }
    let field = board.status_field.as_deref().unwrap_or("Status");
    ctx.printer.warn(format!(
        "the board's `{field}` field lacks option{} {}; crew cannot add them (GitHub's API can \
         only replace all of a field's options, which clears every card's status)",
        if board.missing.len() == 1 { "" } else { "s" },
        board
            .missing
            .iter()
            .map(|name| format!("\"{name}\""))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    ctx.printer.status(format!(
        "  to add them: open the project on GitHub, click the `{field}` column's menu (or the \
         project's Settings → {field}), and add each option; or map crew's columns to options \
         the field has in [project.status] of crew.toml"
    ));
}

fn summary(view: &InitView) -> String {
    match (view.dry_run, view.changed) {
        (true, true) => "dry run: the lines above say what would be written".to_string(),
        (true, false) => "dry run: nothing to do, crew is already set up here".to_string(),
        (false, false) => "nothing changed: crew is already set up here".to_string(),
        (false, true) => "crew is set up: commit crew.toml (and any workflows) so every clone \
                          shares the settings"
            .to_string(),
    }
}

/// Makes `path` hold `content` unless it differs and `force` is off; with `dry_run`, only says
/// what it would do.
fn write_planned(
    path: &Path,
    content: &str,
    force: bool,
    dry_run: bool,
) -> Result<FileAction, CrewError> {
    let action = match std::fs::read(path) {
        Ok(existing) if existing == content.as_bytes() => return Ok(FileAction::Unchanged),
        Ok(_) if !force => return Ok(FileAction::Kept),
        Ok(_) if dry_run => return Ok(FileAction::WouldOverwrite),
        Ok(_) => FileAction::Overwritten,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            if dry_run {
                return Ok(FileAction::WouldCreate);
            }
            FileAction::Created
        }
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
        assert_eq!(
            write_planned(&path, "one", false, true)?,
            FileAction::WouldCreate
        );
        assert!(!path.exists());
        assert_eq!(
            write_planned(&path, "one", false, false)?,
            FileAction::Created
        );
        assert_eq!(
            write_planned(&path, "one", false, false)?,
            FileAction::Unchanged
        );
        assert_eq!(write_planned(&path, "two", false, false)?, FileAction::Kept);
        assert_eq!(std::fs::read_to_string(&path).ok().as_deref(), Some("one"));
        assert_eq!(
            write_planned(&path, "two", true, true)?,
            FileAction::WouldOverwrite
        );
        assert_eq!(std::fs::read_to_string(&path).ok().as_deref(), Some("one"));
        assert_eq!(
            write_planned(&path, "two", true, false)?,
            FileAction::Overwritten
        );
        assert_eq!(std::fs::read_to_string(&path).ok().as_deref(), Some("two"));
        Ok(())
    }
}
