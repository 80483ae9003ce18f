//! Agents: compiling (agent, profile, issue context) into the exact process to start.
//!
//! Decisions, and why:
//! - **Pure.** [`build`] only computes an [`AgentInvocation`]; the worker module spawns it. The
//!   one look at the machine is [`check_available`], which resolves the program through `PATH`
//!   so a missing agent is a clear error before any side effect (lease, comment, worktree).
//! - **No shell, ever.** Arguments are an argv; placeholders are substituted inside one element
//!   at a time ([`command::substitute`]). A shell-quoted rendering exists only for humans
//!   ([`AgentInvocation::display`], shown by `crew brief`).
//! - **The token is opt-in per profile.** With `token = true` it is set as both `GH_TOKEN` and
//!   `GITHUB_TOKEN`; otherwise both are removed from the inherited environment, so a token in the
//!   orchestrator's own environment never leaks into a research agent. It is held as a
//!   [`Secret`], so neither `Debug` nor `display()` can print it.
//! - **Built-ins are adapters**: `claude` ([`claude`]) and `codex` ([`codex`]) each compile the
//!   same [`Profile`] to their own flags. A `[agents.<name>]` table with a built-in's name
//!   replaces the built-in, so users can pin flags without waiting for a release.

pub mod claude;
pub mod codex;
pub mod command;
pub mod profile;

use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::env_vars;
use crate::error::{Classify, ErrorKind};
use crate::settings::{Config, Secret};

pub use profile::Profile;

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// Why an agent could not be prepared. All are the user's to fix (exit 1).
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("unknown agent `{name}` (known: {})", known.join(", "))]
    UnknownAgent { name: String, known: Vec<String> },
    #[error("unknown profile `{name}` (known: {})", known.join(", "))]
    UnknownProfile { name: String, known: Vec<String> },
    #[error("agent `{agent}`: bad command: {problem}")]
    BadCommand { agent: String, problem: String },
    #[error(
        "agent `{agent}`: program `{}` not found{}",
        name.display(),
        searched_text(name, searched)
    )]
    Missing {
        agent: String,
        /// The program as configured (`claude`, `./bin/agent`, `/opt/x/agent`).
        name: PathBuf,
        /// Where it was looked for: the `PATH` directories, or the one resolved path.
        searched: Vec<PathBuf>,
    },
}

fn searched_text(name: &Path, searched: &[PathBuf]) -> String {
    if is_bare_name(name) {
        if searched.is_empty() {
            " (PATH is empty or unset)".to_owned()
        } else {
            let dirs: Vec<String> = searched.iter().map(|d| d.display().to_string()).collect();
            format!(" in PATH ({})", dirs.join(":"))
        }
    } else {
        match searched.first() {
            Some(path) if path.as_path() != name => {
                format!(" (looked at {}; not an executable file)", path.display())
            }
            _ => " (not an executable file)".to_owned(),
        }
    }
}

impl Classify for AgentError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::User
    }

    fn hints(&self) -> Vec<String> {
        match self {
            AgentError::UnknownAgent { name, .. } => vec![format!(
                "define it in crew.toml: [agents.{name}] command = [\"{name}\", \"{{prompt_file}}\"]"
            )],
            AgentError::UnknownProfile { name, .. } => vec![format!(
                "define it in crew.toml: [profiles.{name}] tools = [\"Read\", \"Grep\", \"Glob\"]"
            )],
            AgentError::BadCommand { agent, .. } => vec![format!(
                "fix `[agents.{agent}] command` in crew.toml; placeholders: {}",
                crate::settings::AGENT_PLACEHOLDERS
                    .iter()
                    .map(|name| format!("{{{name}}}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )],
            AgentError::Missing { agent, name, .. } => vec![
                format!("install `{}` or add its directory to PATH", name.display()),
                format!(
                    "or point crew at it: [agents.{agent}] command = [\"/full/path/to/{}\", …]",
                    name.file_name()
                        .map(|file| file.to_string_lossy().into_owned())
                        .unwrap_or_else(|| agent.clone())
                ),
            ],
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The invocation
// ---------------------------------------------------------------------------------------------

/// An environment value; a [`Secret`] prints as `***` in `Debug` and [`AgentInvocation::display`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnvValue {
    Plain(String),
    Secret(Secret),
}

impl EnvValue {
    /// The real value, for the one place that sets it on the child process.
    pub fn expose(&self) -> &str {
        match self {
            EnvValue::Plain(value) => value,
            EnvValue::Secret(secret) => secret.expose(),
        }
    }

    /// The value as it may be shown to a human.
    fn shown(&self) -> String {
        match self {
            EnvValue::Plain(value) => command::shell_quote(value),
            EnvValue::Secret(_) => "***".to_owned(),
        }
    }
}

/// Where the agent's stdin comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stdin {
    /// `/dev/null`. Never leave an agent's stdin an open pipe: `codex exec` and `claude -p`
    /// read it to the end before starting.
    Null,
    /// This file (the prompt file, for the built-ins).
    File(PathBuf),
}

/// Exactly what to start: the worker module spawns it as is (no shell).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentInvocation {
    /// The agent's name (`claude`, `codex`, or a `[agents.<name>]`).
    pub agent: String,
    /// The profile it was compiled from; the worker reads `profile.push`.
    pub profile: Profile,
    /// As configured; relative names are resolved through `PATH` by [`check_available`].
    pub program: PathBuf,
    pub args: Vec<String>,
    /// Variables to set (after `env_remove`).
    pub env: Vec<(String, EnvValue)>,
    /// Variables to remove from the inherited environment.
    pub env_remove: Vec<String>,
    /// The worktree.
    pub cwd: PathBuf,
    pub stdin: Stdin,
}

impl AgentInvocation {
    /// The command line as a POSIX shell would run it, for `crew brief`:
    /// `cd WT && env -u VAR… VAR=VALUE… PROGRAM ARGS… < PROMPT`, every word quoted as needed and
    /// every secret shown as `***`.
    pub fn display(&self) -> String {
        let mut words = vec![
            "cd".to_owned(),
            command::shell_quote(&self.cwd.to_string_lossy()),
            "&&".to_owned(),
        ];
        if !self.env_remove.is_empty() || !self.env.is_empty() {
            words.push("env".to_owned());
            for name in &self.env_remove {
                words.push("-u".to_owned());
                words.push(command::shell_quote(name));
            }
            for (name, value) in &self.env {
                // A name is never quoted: `'A'=b` would be a command, not an assignment.
                words.push(format!("{name}={}", value.shown()));
            }
        }
        words.push(command::shell_quote_program(
            &self.program.to_string_lossy(),
        ));
        words.extend(self.args.iter().map(|arg| command::shell_quote(arg)));
        match &self.stdin {
            Stdin::Null => words.push("< /dev/null".to_owned()),
            Stdin::File(path) => words.push(format!(
                "< {}",
                command::shell_quote(&path.to_string_lossy())
            )),
        }
        words.join(" ")
    }

    /// A [`Command`](std::process::Command) for `program` (the path [`check_available`]
    /// returned) with the arguments, environment and working directory set. Stdin is left to the
    /// caller, which opens [`AgentInvocation::stdin`]; nothing is started here.
    ///
    /// Never log the returned `Command` with `{:?}`: std's `Debug` prints environment values,
    /// the token included. Log [`AgentInvocation::display`] instead.
    pub fn command(&self, program: &Path) -> std::process::Command {
        let mut command = std::process::Command::new(program);
        command.args(&self.args).current_dir(&self.cwd);
        for name in &self.env_remove {
            command.env_remove(name);
        }
        for (name, value) in &self.env {
            command.env(name, value.expose());
        }
        command
    }

    /// The secrets set in the environment, so callers can redact them from logs.
    pub fn secrets(&self) -> impl Iterator<Item = &Secret> {
        self.env.iter().filter_map(|(_, value)| match value {
            EnvValue::Secret(secret) => Some(secret),
            EnvValue::Plain(_) => None,
        })
    }
}

impl fmt::Display for AgentInvocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display())
    }
}

/// What one run of an agent is about.
#[derive(Clone, Debug)]
pub struct InvocationContext {
    /// The rendered prompt, already written to disk.
    pub prompt_file: PathBuf,
    /// The same prompt, for `{prompt}`.
    pub prompt_text: String,
    pub issue: u64,
    pub worktree: PathBuf,
    /// The orchestrator's token; reaches the agent only if the profile allows.
    pub token: Option<Secret>,
}

// ---------------------------------------------------------------------------------------------
// Building
// ---------------------------------------------------------------------------------------------

/// How an agent is driven.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AgentKind {
    Claude,
    Codex,
    /// `[agents.<name>] command`, placeholders not yet substituted.
    Command(Vec<String>),
}

/// Finds `name`: a `[agents.<name>]` table first (it may replace a built-in), then the built-ins.
pub fn resolve_agent(config: &Config, name: &str) -> Result<AgentKind, AgentError> {
    if let Some(agent) = config.agents.get(name) {
        return Ok(AgentKind::Command(agent.command.clone()));
    }
    match name {
        "claude" => Ok(AgentKind::Claude),
        "codex" => Ok(AgentKind::Codex),
        _ => Err(AgentError::UnknownAgent {
            name: name.to_owned(),
            known: config
                .agent_names()
                .into_iter()
                .map(str::to_owned)
                .collect(),
        }),
    }
}

/// Compiles `agent` × `profile` into the process to start for `ctx`. Pure: nothing is read from
/// the environment or the disk.
pub fn build(
    agent: &str,
    profile: &str,
    config: &Config,
    ctx: InvocationContext,
) -> Result<AgentInvocation, AgentError> {
    let kind = resolve_agent(config, agent)?;
    let profile = Profile::resolve(config, profile)?;
    let (program, args, stdin) = match kind {
        AgentKind::Claude => (
            PathBuf::from(claude::PROGRAM),
            claude::args(&profile),
            Stdin::File(ctx.prompt_file.clone()),
        ),
        AgentKind::Codex => (
            PathBuf::from(codex::PROGRAM),
            codex::args(&profile),
            Stdin::File(ctx.prompt_file.clone()),
        ),
        AgentKind::Command(template) => {
            let prompt_file = ctx.prompt_file.to_string_lossy();
            let worktree = ctx.worktree.to_string_lossy();
            let issue = ctx.issue.to_string();
            let tools = profile.tools_arg();
            let values = command::Placeholders {
                prompt_file: &prompt_file,
                prompt: &ctx.prompt_text,
                tools: &tools,
                issue: &issue,
                worktree: &worktree,
            };
            let mut argv = template
                .iter()
                .map(|element| command::substitute(agent, element, &values))
                .collect::<Result<Vec<_>, _>>()?
                .into_iter();
            let program = argv
                .next()
                .filter(|program| !program.is_empty())
                .ok_or_else(|| AgentError::BadCommand {
                    agent: agent.to_owned(),
                    problem: "must start with the program".to_owned(),
                })?;
            (PathBuf::from(program), argv.collect(), Stdin::Null)
        }
    };

    let names = [env_vars::GH_TOKEN, env_vars::GITHUB_TOKEN];
    let (env, env_remove) = match &ctx.token {
        Some(token) if profile.token => (
            names
                .iter()
                .map(|name| ((*name).to_owned(), EnvValue::Secret(token.clone())))
                .collect(),
            Vec::new(),
        ),
        _ => (
            Vec::new(),
            names.iter().map(|name| (*name).to_owned()).collect(),
        ),
    };

    Ok(AgentInvocation {
        agent: agent.to_owned(),
        profile,
        program,
        args,
        env,
        env_remove,
        cwd: ctx.worktree,
        stdin,
    })
}

// ---------------------------------------------------------------------------------------------
// Finding the program
// ---------------------------------------------------------------------------------------------

/// A program name without a directory part, which is looked up in `PATH`.
fn is_bare_name(program: &Path) -> bool {
    let mut components = program.components();
    matches!(
        (components.next(), components.next()),
        (Some(std::path::Component::Normal(_)), None)
    )
}

/// Resolves the invocation's program as `execvp` would (a bare name through `path`, the value
/// of `PATH`; anything with a `/` relative to the invocation's `cwd`) and checks it is an
/// executable file. Call it before any side effect of a dispatch.
pub fn check_available(
    invocation: &AgentInvocation,
    path: Option<&OsStr>,
) -> Result<PathBuf, AgentError> {
    find_program(
        &invocation.agent,
        &invocation.program,
        &invocation.cwd,
        path,
    )
}

/// [`check_available`] for a program not yet in an invocation.
pub fn find_program(
    agent: &str,
    program: &Path,
    cwd: &Path,
    path: Option<&OsStr>,
) -> Result<PathBuf, AgentError> {
    let missing = |searched| AgentError::Missing {
        agent: agent.to_owned(),
        name: program.to_owned(),
        searched,
    };
    if !is_bare_name(program) {
        let candidate = cwd.join(program);
        return if is_executable(&candidate) {
            Ok(candidate)
        } else {
            Err(missing(vec![candidate]))
        };
    }
    // Empty PATH entries mean the current directory to POSIX shells; skipping them is safer.
    let searched: Vec<PathBuf> = path
        .map(|path| {
            std::env::split_paths(path)
                .filter(|dir| !dir.as_os_str().is_empty())
                .collect()
        })
        .unwrap_or_default();
    searched
        .iter()
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
        .ok_or_else(|| missing(searched.clone()))
}

fn is_executable(path: &Path) -> bool {
    let Ok(metadata) = std::fs::metadata(path) else {
        return false;
    };
    if !metadata.is_file() {
        return false;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        metadata.permissions().mode() & 0o111 != 0
    }
    #[cfg(not(unix))]
    {
        true
    }
}

#[cfg(test)]
mod tests;
