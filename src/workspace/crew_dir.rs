//! `.crew/` inside a worktree: `context.json` (who this worker is, read by agent-side commands)
//! and `worker.json` (its processes, read by reconciling commands).
//!
//! - **Atomic writes** (temp file in the same directory, fsync, rename): a reader — an agent-side
//!   command, or `crew gc` after a crash — sees the old file or the new one, never half of one.
//! - **Never committed.** `.crew/` is added to the repository's `info/exclude` (found with
//!   `git rev-parse --git-path info/exclude`, which in a linked worktree points at the shared
//!   one), so neither an agent's `git add -A` nor salvage picks it up.
//! - **Unknown fields are tolerated** when reading: an agent-side command from an older crew on
//!   `PATH` must still find its issue in a file a newer crew wrote.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{WorkspaceError, git};

/// The directory crew owns inside each worktree.
pub const CREW_DIR: &str = ".crew";
/// Who the worker is.
pub const CONTEXT_FILE: &str = "context.json";
/// The worker's processes.
pub const WORKER_FILE: &str = "worker.json";

/// `.crew/context.json`: everything an agent-side command needs to act for its worker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerContext {
    pub issue: u64,
    pub attempt: u32,
    /// The worker id, as recorded in the lease and events.
    pub worker: String,
    /// `None` for a detached (research) worktree.
    pub branch: Option<String>,
    /// The base branch the work targets.
    pub base: String,
    /// `owner/name`.
    pub repo: String,
    /// The REST API base the orchestrator used.
    pub api_url: String,
    /// The tool profile (`code`, `research`, `review`, …).
    pub profile: String,
}

/// `.crew/worker.json`: the worker's processes. A pid alone could be reused by an unrelated
/// process, so each comes with its start time (as read from the OS; compared, never
/// interpreted) and is only trusted when both match.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerProcess {
    pub issue: u64,
    pub attempt: u32,
    pub worker: String,
    /// The agent process (leader of its process group).
    pub pid: u32,
    pub start_time: u64,
    /// Where the supervisor writes the agent's output.
    pub log_path: PathBuf,
    pub supervisor_pid: Option<u32>,
    pub supervisor_start_time: Option<u64>,
}

/// Writes `.crew/context.json` atomically (and makes sure `.crew/` is excluded).
pub fn write_context(worktree: &Path, context: &WorkerContext) -> Result<(), WorkspaceError> {
    write_json(worktree, CONTEXT_FILE, context)
}

/// Reads `.crew/context.json`; `None` when there is none.
pub fn read_context(worktree: &Path) -> Result<Option<WorkerContext>, WorkspaceError> {
    read_json(&worktree.join(CREW_DIR).join(CONTEXT_FILE))
}

/// Writes `.crew/worker.json` atomically (and makes sure `.crew/` is excluded).
pub fn write_worker(worktree: &Path, worker: &WorkerProcess) -> Result<(), WorkspaceError> {
    write_json(worktree, WORKER_FILE, worker)
}

/// Reads `.crew/worker.json`; `None` when there is none.
pub fn read_worker(worktree: &Path) -> Result<Option<WorkerProcess>, WorkspaceError> {
    read_json(&worktree.join(CREW_DIR).join(WORKER_FILE))
}

/// The nearest `.crew/context.json` at or above `start` (agent-side commands run anywhere in
/// the worktree), with the worktree it belongs to.
pub fn find_context(start: &Path) -> Result<Option<(PathBuf, WorkerContext)>, WorkspaceError> {
    for dir in start.ancestors() {
        if let Some(context) = read_context(dir)? {
            return Ok(Some((dir.to_path_buf(), context)));
        }
    }
    Ok(None)
}

/// Adds `/.crew/` to the repository's `info/exclude` unless it is there already.
pub fn ensure_crew_excluded(worktree: &Path) -> Result<(), WorkspaceError> {
    let reported = git::run(worktree, ["rev-parse", "--git-path", "info/exclude"])?;
    let exclude = worktree.join(reported.trim_end_matches(['\n', '\r']));
    let io = |source| WorkspaceError::Io {
        path: exclude.clone(),
        source,
    };
    let current = match fs::read_to_string(&exclude) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(error) => return Err(io(error)),
    };
    if current
        .lines()
        .any(|line| matches!(line.trim(), "/.crew/" | ".crew/" | "/.crew" | ".crew"))
    {
        return Ok(());
    }
    if let Some(parent) = exclude.parent() {
        fs::create_dir_all(parent).map_err(io)?;
    }
    let mut file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&exclude)
        .map_err(io)?;
    let separator = if current.is_empty() || current.ends_with('\n') {
        ""
    } else {
        "\n"
    };
    write!(file, "{separator}# crew's per-worker files\n/.crew/\n").map_err(io)
}

fn write_json<T: Serialize>(worktree: &Path, name: &str, value: &T) -> Result<(), WorkspaceError> {
    ensure_crew_excluded(worktree)?;
    let dir = worktree.join(CREW_DIR);
    let path = dir.join(name);
    let io = |source| WorkspaceError::Io {
        path: path.clone(),
        source,
    };
    fs::create_dir_all(&dir).map_err(io)?;
    let mut text = serde_json::to_vec_pretty(value).map_err(|source| WorkspaceError::Json {
        path: path.clone(),
        source,
    })?;
    text.push(b'\n');
    let temp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let result = (|| {
        let mut file = fs::File::create(&temp)?;
        file.write_all(&text)?;
        file.sync_all()?;
        fs::rename(&temp, &path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result.map_err(io)
}

fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, WorkspaceError> {
    let text = match fs::read(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(WorkspaceError::Io {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|source| WorkspaceError::Json {
            path: path.to_path_buf(),
            source,
        })
}
