//! The built-in `codex` adapter (OpenAI Codex CLI, `codex exec`).
//!
//! Compiled to `codex exec --sandbox <mode> -c approval_policy="never" [-c <network>] -`, with
//! the prompt on stdin (from the prompt file). Assumptions about the CLI, checked against its
//! documentation and issue tracker when this was written (codex-cli 0.1xx):
//! - `codex exec` rejects `--ask-for-approval`/`-a` (a top-level option only; removed from the
//!   exec family in 0.145); the approval policy is set with the `-c approval_policy="never"`
//!   config override, which `exec` has long accepted. `exec` does not ask anyway; this keeps it so
//!   should the user's `config.toml` say otherwise.
//! - `exec --sandbox read-only|workspace-write` selects the sandbox. A profile that grants no
//!   edit tool (`research`, `review`) runs `read-only`; one that does (`code`) `workspace-write`.
//! - `workspace-write` blocks the network by default; when the profile passes the token the agent
//!   is meant to talk to GitHub (agent-side `crew` commands, `gh`), so
//!   `-c sandbox_workspace_write.network_access=true` is added. `read-only` has no such switch:
//!   a read-only Codex worker cannot reach GitHub from inside its sandbox.
//! - A prompt argument of `-` makes `codex exec` read the prompt from stdin. Stdin must never be
//!   left an open pipe: `codex exec` would wait for its end forever.
//! - Codex protects `.git` inside the workspace, and a worktree's git directory lives outside it,
//!   so the agent may be unable to commit; the supervisor's WIP salvage commits for it.

use super::profile::Profile;

/// The program name looked up in `PATH`.
pub const PROGRAM: &str = "codex";

/// Codex's sandbox mode for `profile`.
pub fn sandbox(profile: &Profile) -> &'static str {
    if profile.can_edit() {
        "workspace-write"
    } else {
        "read-only"
    }
}

/// Arguments for `profile`, without the program.
pub fn args(profile: &Profile) -> Vec<String> {
    let sandbox = sandbox(profile);
    let mut args: Vec<String> = [
        "exec",
        "--sandbox",
        sandbox,
        "-c",
        "approval_policy=\"never\"",
    ]
    .map(str::to_owned)
    .to_vec();
    if sandbox == "workspace-write" && profile.token {
        args.push("-c".to_owned());
        args.push("sandbox_workspace_write.network_access=true".to_owned());
    }
    args.push("-".to_owned());
    args
}
