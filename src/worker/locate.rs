//! Finding this clone's worker of an issue, and what is left of its processes.
//!
//! `crew logs` and `crew cancel` act on a worker that another process (`crew dispatch`) started
//! and a detached supervisor owns, so they learn everything from the worktree: its
//! `.crew/context.json` (who the worker is), `.crew/supervisor.json` (its log path, grace and
//! whether its profile pushes) and `.crew/worker.json` (the supervisor's and the agent's
//! identities, and the exit once there is one).
//!
//! Decisions, and why:
//! - **No GitHub.** Everything here is read from the worktrees of this clone and `/proc`, so
//!   `crew logs` of a local worker costs no request at all.
//! - **The newest attempt wins.** A worktree is reused by the next attempt at an issue, and a
//!   clone may hold more than one worktree for an issue (a changed path template); the one whose
//!   context names the highest attempt is the worker.
//! - **A record only counts for its own worker.** `.crew/worker.json` of an earlier attempt stays
//!   in a reused worktree until the new supervisor overwrites it; a record naming another worker
//!   or attempt is ignored, so an old pid is never taken for this worker's.
//! - **Processes by identity, never by name** ([`ProcessIdentity`]: pid and start time). The
//!   agent's process group is signalled only while it provably is the agent's: its leader still
//!   runs with the recorded start time, or the leader is gone and its pid is not in use (Linux
//!   does not hand out a pid that is still some group's id, so members found in that group are
//!   the agent's leftovers). A pid reused by another process means the agent's group was gone.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::workspace::{self, WorkerContext, WorkspaceError};

use super::process::{self, ProcessIdentity, Signal};
use super::supervisor::{ExitRecord, SupervisedWorker, SupervisorConfig, SupervisorError};
use super::{SupervisorSpec, read_spec};

/// How often waits on processes look at `/proc` again.
const POLL: Duration = Duration::from_millis(50);

/// What can stop a worker from being located.
#[derive(Debug, thiserror::Error)]
pub enum LocateError {
    #[error(transparent)]
    Workspace(#[from] WorkspaceError),
    #[error(transparent)]
    Supervisor(#[from] SupervisorError),
    #[error("{} is not valid: {source}", path.display())]
    Spec {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl crate::error::Classify for LocateError {
    fn kind(&self) -> crate::error::ErrorKind {
        match self {
            LocateError::Workspace(error) => error.kind(),
            LocateError::Supervisor(error) => error.kind(),
            LocateError::Spec { .. } => crate::error::ErrorKind::Internal,
        }
    }

    fn hints(&self) -> Vec<String> {
        match self {
            LocateError::Workspace(error) => error.hints(),
            LocateError::Supervisor(error) => error.hints(),
            LocateError::Spec { .. } => Vec::new(),
        }
    }
}

/// One worker of this clone, as its worktree describes it.
#[derive(Debug, Clone)]
pub struct LocalWorker {
    pub worktree: PathBuf,
    pub context: WorkerContext,
    /// `.crew/supervisor.json`, when it is this worker's.
    pub spec: Option<SupervisorSpec>,
    /// `.crew/worker.json`, when it is this worker's (the supervisor writes it once the agent
    /// runs, so a worker that is still starting has none yet).
    pub record: Option<SupervisedWorker>,
}

impl LocalWorker {
    /// Reads the worker of `worktree`, whose context is `context`.
    pub fn load(worktree: &Path, context: WorkerContext) -> Result<LocalWorker, LocateError> {
        let spec = read_spec(worktree)
            .map_err(|source| LocateError::Spec {
                path: worktree
                    .join(workspace::CREW_DIR)
                    .join(super::SUPERVISOR_FILE),
                source,
            })?
            .filter(|spec| {
                spec.lease.lease.worker == context.worker
                    && spec.lease.lease.attempt == context.attempt
            });
        let mut worker = LocalWorker {
            worktree: worktree.to_path_buf(),
            context,
            spec,
            record: None,
        };
        worker.refresh()?;
        Ok(worker)
    }

    /// Reads `.crew/worker.json` again (the supervisor rewrites it when the agent starts and
    /// when it exits).
    pub fn refresh(&mut self) -> Result<(), LocateError> {
        self.record = super::read_supervised(&self.worktree)?.filter(|record| {
            record.process.worker == self.context.worker
                && record.process.attempt == self.context.attempt
        });
        Ok(())
    }

    pub fn issue(&self) -> u64 {
        self.context.issue
    }

    pub fn attempt(&self) -> u32 {
        self.context.attempt
    }

    /// The worker id.
    pub fn worker(&self) -> &str {
        &self.context.worker
    }

    /// `.crew/logs/<worker>.log`: as recorded by the supervisor, else as planned by the dispatch,
    /// else where crew puts it.
    pub fn log_path(&self) -> PathBuf {
        if let Some(record) = &self.record {
            return record.process.log_path.clone();
        }
        if let Some(spec) = &self.spec {
            return spec.log_path.clone();
        }
        SupervisorConfig::default_log_path(&self.worktree, &self.context.worker)
    }

    /// The supervisor, once it has recorded itself.
    pub fn supervisor(&self) -> Option<ProcessIdentity> {
        let process = &self.record.as_ref()?.process;
        Some(ProcessIdentity {
            pid: process.supervisor_pid?,
            start_time: process.supervisor_start_time?,
        })
    }

    /// The agent (leader of its own process group), once the supervisor has recorded it.
    pub fn agent(&self) -> Option<ProcessIdentity> {
        let process = &self.record.as_ref()?.process;
        Some(ProcessIdentity {
            pid: process.pid,
            start_time: process.start_time,
        })
    }

    /// How the agent ended, once the supervisor has recorded it.
    pub fn exit(&self) -> Option<&ExitRecord> {
        self.record.as_ref()?.exit.as_ref()
    }

    /// Whether the supervisor still runs (the very process that recorded itself).
    pub fn supervisor_alive(&self) -> bool {
        self.supervisor()
            .is_some_and(|identity| process::is_alive(&identity))
    }

    /// Whether anything of the agent still runs: its leader, or what it left in its group.
    pub fn agent_alive(&self) -> bool {
        self.agent()
            .is_some_and(|identity| agent_group_alive(&identity))
    }

    /// Whether the profile pushes (salvage pushes the WIP commit only then); `None` when the
    /// worktree does not say.
    pub fn pushes(&self) -> Option<bool> {
        self.spec.as_ref().map(|spec| spec.invocation.push)
    }

    /// How long the supervisor gives the agent after each signal; `None` when the worktree does
    /// not say.
    pub fn grace(&self) -> Option<Duration> {
        self.spec.as_ref().map(SupervisorSpec::grace)
    }
}

/// The newest worker of `issue` in the clone at `repo_root` (highest attempt among its worker
/// worktrees); `None` when this clone has none. Blocking (git, files, `/proc`).
pub fn locate(repo_root: &Path, issue: u64) -> Result<Option<LocalWorker>, LocateError> {
    let newest = workspace::worker_worktrees(repo_root)?
        .into_iter()
        .filter(|(_, context)| context.issue == issue)
        .max_by_key(|(_, context)| context.attempt);
    match newest {
        Some((worktree, context)) => LocalWorker::load(&worktree, context).map(Some),
        None => Ok(None),
    }
}

/// The newest worker of every issue in the clone at `repo_root`, by issue. A worktree whose
/// records cannot be read is left out. Blocking (git, files, `/proc`).
pub fn newest_of_each(repo_root: &Path) -> Result<Vec<LocalWorker>, LocateError> {
    let mut newest: std::collections::BTreeMap<u64, (PathBuf, WorkerContext)> =
        std::collections::BTreeMap::new();
    for (worktree, context) in workspace::worker_worktrees(repo_root)? {
        if newest
            .get(&context.issue)
            .is_none_or(|(_, known)| known.attempt < context.attempt)
        {
            newest.insert(context.issue, (worktree, context));
        }
    }
    Ok(newest
        .into_values()
        .filter_map(|(worktree, context)| LocalWorker::load(&worktree, context).ok())
        .collect())
}

/// Whether the process group of `agent` (its leader's pid) still has a running member that is
/// provably the agent's (see the module docs).
pub fn agent_group_alive(agent: &ProcessIdentity) -> bool {
    match ProcessIdentity::of(agent.pid) {
        Some(now) => now.start_time == agent.start_time,
        None => process::group_alive(agent.pid),
    }
}

/// Stops the process group of `agent`: SIGINT, then SIGTERM, then SIGKILL, each given `grace`,
/// until no member is left. True when the group is gone.
pub async fn stop_agent_group(agent: &ProcessIdentity, grace: Duration) -> bool {
    for signal in [Signal::Interrupt, Signal::Terminate, Signal::Kill] {
        if !agent_group_alive(agent) {
            return true;
        }
        if let Err(error) = process::signal_group(agent.pid, signal) {
            tracing::warn!(%error, group = agent.pid, ?signal, "cannot signal the agent's group");
        }
        if wait_until(grace, || !agent_group_alive(agent)).await {
            return true;
        }
    }
    !agent_group_alive(agent)
}

/// Waits until `identity` has exited, at most `timeout`. True when it has.
pub async fn wait_exited(identity: &ProcessIdentity, timeout: Duration) -> bool {
    wait_until(timeout, || !process::is_alive(identity)).await
}

/// Polls `done` until it holds or `timeout` passes; true when it held.
async fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reused_pid_is_not_the_agents_group() {
        let me = ProcessIdentity::current().expect("this process");
        assert!(agent_group_alive(&me));
        let reused = ProcessIdentity {
            start_time: me.start_time + 1,
            ..me
        };
        assert!(!agent_group_alive(&reused));
    }

    #[tokio::test]
    async fn a_group_is_stopped_with_its_children() {
        use std::os::unix::process::CommandExt;
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 30 & sleep 30; wait"])
            .process_group(0)
            .spawn()
            .expect("sh");
        let agent = ProcessIdentity::of(child.id()).expect("running");
        // Let the shell start its children.
        tokio::time::sleep(Duration::from_millis(100)).await;
        // The background `sleep` ignores SIGINT (as a non-interactive shell's background jobs
        // do), so this also takes the step to SIGTERM. The shell stays a zombie until reaped,
        // which the group check does not count.
        let stopped = stop_agent_group(&agent, Duration::from_millis(300)).await;
        let _ = child.wait();
        assert!(stopped);
        assert!(!process::group_alive(agent.pid));
    }
}
