//! Profiles: one tool scope (`[profiles.<name>]`), resolved once and compiled by each agent
//! adapter into that agent's own flags.

use crate::settings::Config;

use super::AgentError;

/// Tools that change files. A profile granting none of them is *read-only*: Claude Code gets them
/// explicitly disallowed and Codex runs in its `read-only` sandbox.
pub const WRITE_TOOLS: &[&str] = &["Edit", "Write", "MultiEdit", "NotebookEdit"];

/// A resolved `[profiles.<name>]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Profile {
    /// The profile's name (`code`, `research`, `review`, or a user's).
    pub name: String,
    /// Tools in Claude Code's `--allowedTools` spelling, in the file's order.
    pub tools: Vec<String>,
    /// Whether the worker may push its branch and open a PR. The worker module reads this; the
    /// agent adapters do not (an agent cannot be trusted to enforce it on itself).
    pub push: bool,
    /// Whether the orchestrator's token reaches the agent's environment.
    pub token: bool,
}

impl Profile {
    /// Looks `name` up in `config.profiles` (which always holds the three built-ins).
    pub fn resolve(config: &Config, name: &str) -> Result<Profile, AgentError> {
        let profile = config
            .profiles
            .get(name)
            .ok_or_else(|| AgentError::UnknownProfile {
                name: name.to_owned(),
                known: config.profiles.keys().cloned().collect(),
            })?;
        Ok(Profile {
            name: name.to_owned(),
            tools: profile.tools.clone(),
            push: profile.push,
            token: profile.token,
        })
    }

    /// Whether the profile grants any tool that edits files, whole or scoped (`Edit`,
    /// `Edit(docs/**)`). `Bash` is not counted: a shell can write, but scoping it is the job of
    /// `Bash(...)` patterns, not of this flag.
    pub fn can_edit(&self) -> bool {
        self.tools.iter().any(|tool| {
            let name = tool.split('(').next().unwrap_or_default().trim();
            WRITE_TOOLS.contains(&name)
        })
    }

    /// The tool list as one comma-separated argument (`--allowedTools`, `{tools}`).
    pub fn tools_arg(&self) -> String {
        self.tools
            .iter()
            .map(|tool| tool.trim())
            .collect::<Vec<_>>()
            .join(",")
    }
}
