//! Workers on this host (runtime `local`, DESIGN.md 3): the supervisor process that owns an
//! agent, how it is started detached, and process identity.
//!
//! Decisions, and why:
//! - **A supervisor per worker, in its own session.** `crew dispatch` re-executes `crew` as the
//!   hidden `crew supervise --worktree PATH` ([`spawn_supervisor`]), detached with `setsid` as
//!   containerd's shim or podman's conmon are, so the dispatching terminal (or `crew loop`) can
//!   exit or be killed without taking the agent's supervision with it.
//! - **What the supervisor runs is a file, the token is not.** `.crew/supervisor.json`
//!   ([`SupervisorSpec`]) holds the invocation with every secret replaced by the *name* of where
//!   it comes from, plus the held lease; the token itself is resolved from the environment by the
//!   supervising `crew`, exactly as any crew command resolves it, and is never written to disk.
//! - **Identity is (pid, start time)** ([`process`]), so a reused pid is never signalled.

pub mod locate;
pub mod lock;
pub mod process;
pub mod supervisor;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::agents::{AgentInvocation, EnvValue, Profile, Stdin};
use crate::github::HeldLease;
use crate::settings::Secret;
use crate::workspace::CREW_DIR;

pub use process::{ProcessIdentity, Signal, group_alive, is_alive, signal_group, signal_process};
pub use supervisor::{
    Abandoned, HANDOVER_FILE, HandedOver, HandoverRecord, LeaseFate, LeaseHandle,
    hand_over_abandoned, read_handover, stop_group, write_handover,
};
pub use supervisor::{
    ExitRecord, FINISHED_FILE, StopReason, SupervisedWorker, SupervisorConfig, SupervisorError,
    SupervisorOutcome, read_supervised, run,
};

/// `.crew/supervisor.json`: what `crew supervise` runs.
pub const SUPERVISOR_FILE: &str = "supervisor.json";

/// An environment value as stored: plain, or the token (resolved at supervise time).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoredEnv {
    Plain(String),
    /// The orchestrator's GitHub token, as `crew supervise` resolves it from its environment.
    Token,
}

/// [`AgentInvocation`] without its secrets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredInvocation {
    pub agent: String,
    pub profile: String,
    pub tools: Vec<String>,
    pub push: bool,
    pub token: bool,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, StoredEnv)>,
    pub env_remove: Vec<String>,
    pub cwd: PathBuf,
    /// `None` for `/dev/null`.
    pub stdin: Option<PathBuf>,
}

impl StoredInvocation {
    /// Stores `invocation`; every secret becomes [`StoredEnv::Token`] (the only secret crew
    /// passes to agents is its token).
    pub fn from_invocation(invocation: &AgentInvocation) -> StoredInvocation {
        StoredInvocation {
            agent: invocation.agent.clone(),
            profile: invocation.profile.name.clone(),
            tools: invocation.profile.tools.clone(),
            push: invocation.profile.push,
            token: invocation.profile.token,
            program: invocation.program.clone(),
            args: invocation.args.clone(),
            env: invocation
                .env
                .iter()
                .map(|(name, value)| {
                    let stored = match value {
                        EnvValue::Plain(value) => StoredEnv::Plain(value.clone()),
                        EnvValue::Secret(_) => StoredEnv::Token,
                    };
                    (name.clone(), stored)
                })
                .collect(),
            env_remove: invocation.env_remove.clone(),
            cwd: invocation.cwd.clone(),
            stdin: match &invocation.stdin {
                Stdin::Null => None,
                Stdin::File(path) => Some(path.clone()),
            },
        }
    }

    /// The invocation again, with `token` where the token goes. Without a token, variables that
    /// wanted it are removed rather than set empty.
    pub fn to_invocation(&self, token: Option<&Secret>) -> AgentInvocation {
        let mut env = Vec::new();
        let mut env_remove = self.env_remove.clone();
        for (name, value) in &self.env {
            match (value, token) {
                (StoredEnv::Plain(value), _) => {
                    env.push((name.clone(), EnvValue::Plain(value.clone())));
                }
                (StoredEnv::Token, Some(token)) => {
                    env.push((name.clone(), EnvValue::Secret(token.clone())));
                }
                (StoredEnv::Token, None) => env_remove.push(name.clone()),
            }
        }
        AgentInvocation {
            agent: self.agent.clone(),
            profile: Profile {
                name: self.profile.clone(),
                tools: self.tools.clone(),
                push: self.push,
                token: self.token,
            },
            program: self.program.clone(),
            args: self.args.clone(),
            env,
            env_remove,
            cwd: self.cwd.clone(),
            stdin: match &self.stdin {
                None => Stdin::Null,
                Some(path) => Stdin::File(path.clone()),
            },
        }
    }
}

/// `.crew/supervisor.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SupervisorSpec {
    pub invocation: StoredInvocation,
    /// The resolved program.
    pub program: PathBuf,
    pub log_path: PathBuf,
    pub lease: HeldLease,
    pub renew_every_secs: u64,
    pub ttl_secs: u64,
    pub grace_millis: u64,
    /// How to dispatch the next attempt after a handover; `None` when that is left to
    /// `crew fill`/`crew loop` (`workers.replace_on_handover = false`, or no attempts left).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replacement: Option<Replacement>,
}

/// What a supervisor needs to run `crew dispatch` for the next attempt exactly as the first
/// dispatch ran: the same settings file, repository, host, agent and profile, from the clone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replacement {
    /// The main clone (not the worktree): where `crew dispatch` runs.
    pub repo_root: PathBuf,
    /// `--config`, when the dispatch read a settings file.
    pub config: Option<PathBuf>,
    /// `owner/name`.
    pub repo: String,
    pub host: String,
    pub agent: String,
    pub profile: String,
}

impl Replacement {
    /// `crew [--config C] -R repo --host H dispatch ISSUE --agent A --profile P`, run from the
    /// clone, detached like a supervisor (its own session, output appended to `log`).
    pub fn command(
        &self,
        crew: &Path,
        issue: u64,
        log: &Path,
    ) -> std::io::Result<std::process::Command> {
        let mut command = std::process::Command::new(crew);
        if let Some(config) = &self.config {
            command.arg("--config").arg(config);
        }
        command
            .args(["-R", &self.repo, "--host", &self.host, "dispatch"])
            .arg(issue.to_string())
            .args(["--agent", &self.agent, "--profile", &self.profile])
            .current_dir(&self.repo_root);
        detach(command, log)
    }
}

impl SupervisorSpec {
    pub fn renew_every(&self) -> Duration {
        Duration::from_secs(self.renew_every_secs.max(1))
    }

    pub fn ttl(&self) -> chrono::TimeDelta {
        chrono::TimeDelta::seconds(i64::try_from(self.ttl_secs).unwrap_or(i64::MAX / 1000))
    }

    pub fn grace(&self) -> Duration {
        Duration::from_millis(self.grace_millis)
    }
}

fn spec_path(worktree: &Path) -> PathBuf {
    worktree.join(CREW_DIR).join(SUPERVISOR_FILE)
}

/// Writes `.crew/supervisor.json` (atomically: temp file and rename).
pub fn write_spec(worktree: &Path, spec: &SupervisorSpec) -> std::io::Result<()> {
    let dir = worktree.join(CREW_DIR);
    std::fs::create_dir_all(&dir)?;
    let mut text = serde_json::to_vec_pretty(spec).map_err(std::io::Error::other)?;
    text.push(b'\n');
    let temp = dir.join(format!(".{SUPERVISOR_FILE}.tmp.{}", std::process::id()));
    std::fs::write(&temp, &text)?;
    std::fs::rename(&temp, spec_path(worktree))
}

/// Reads `.crew/supervisor.json`; `None` when there is none.
pub fn read_spec(worktree: &Path) -> std::io::Result<Option<SupervisorSpec>> {
    match std::fs::read(spec_path(worktree)) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(std::io::Error::other),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error),
    }
}

/// Starts `crew supervise --worktree WORKTREE` from the executable `crew` (usually
/// `std::env::current_exe()`), detached ([`supervisor_command`], [`spawn_detached`]). Returns
/// its identity once it runs.
///
/// `dispatch_lock`, the lock the starting dispatch holds, is inherited by the supervisor (its
/// descriptor left open across `exec`, its number passed as `--dispatch-lock-fd`), which holds
/// it until it has taken its worktree's supervisor lock (see [`lock`]).
pub fn spawn_supervisor(
    crew: &Path,
    worktree: &Path,
    supervisor_log: &Path,
    dispatch_lock: Option<&lock::HeldLock>,
) -> std::io::Result<ProcessIdentity> {
    let mut command = supervisor_command(crew, worktree, supervisor_log)?;
    if let Some(held) = dispatch_lock {
        use std::os::unix::process::CommandExt;
        let fd = held.raw_fd();
        command.arg("--dispatch-lock-fd").arg(fd.to_string());
        // SAFETY: fcntl is async-signal-safe, and the closure allocates nothing. In the child,
        // between fork and exec, `fd` is the parent's open lock file; clearing FD_CLOEXEC lets
        // it survive the exec.
        unsafe {
            command.pre_exec(move || {
                let flags = libc::fcntl(fd, libc::F_GETFD);
                if flags == -1 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    spawn_detached(command, supervisor_log)
}

/// The command that runs `crew supervise --worktree WORKTREE` detached: a new session (so no
/// terminal's hangup or Ctrl-C reaches it), stdin from `/dev/null`, stdout and stderr appended
/// to `supervisor_log`, in the worktree. The environment is inherited (the token reaches the
/// supervisor that way, never through a file); callers may adjust it before spawning.
pub fn supervisor_command(
    crew: &Path,
    worktree: &Path,
    supervisor_log: &Path,
) -> std::io::Result<std::process::Command> {
    let mut command = std::process::Command::new(crew);
    command
        .arg("supervise")
        .arg("--worktree")
        .arg(worktree)
        .current_dir(worktree);
    detach(command, supervisor_log)
}

/// `command` made to run detached: a new session (so no terminal's hangup or Ctrl-C reaches
/// it), stdin from `/dev/null`, stdout and stderr appended to `log`.
fn detach(
    mut command: std::process::Command,
    log: &Path,
) -> std::io::Result<std::process::Command> {
    use std::os::unix::process::CommandExt;
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    command
        .stdin(std::process::Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out);
    // SAFETY: `setsid` is async-signal-safe, and the closure allocates nothing.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(command)
}

/// Spawns `command` (from [`supervisor_command`]) without waiting for it: the supervisor
/// outlives its starter by design, and init reaps it once the starter exits.
pub fn spawn_detached(
    mut command: std::process::Command,
    supervisor_log: &Path,
) -> std::io::Result<ProcessIdentity> {
    let child = command.spawn()?;
    let pid = child.id();
    drop(child);
    ProcessIdentity::of(pid).ok_or_else(|| {
        std::io::Error::other(format!(
            "the supervisor (pid {pid}) exited at once; see {}",
            supervisor_log.display()
        ))
    })
}
