//! The built-in `claude` adapter (Claude Code in print mode).
//!
//! Compiled to `claude -p --allowedTools <tools> [--disallowedTools <edit tools>]`, with the
//! prompt on stdin (from the prompt file) rather than in argv. Assumptions about the CLI, checked
//! against its documentation when this was written:
//! - `-p`/`--print` runs one non-interactive turn and exits; with no prompt argument it reads the
//!   prompt from stdin (`claude -p < prompt.md`).
//! - `--allowedTools` takes a comma- or space-separated list in the spelling the profiles use
//!   (`Bash(pnpm test:*)`, `mcp__github__*`). It is variadic, so a positional prompt placed after
//!   it would be taken for a tool: one more reason the prompt goes through stdin. Stdin also
//!   avoids Linux's 128 KiB limit on one argument and a prompt starting with `-` being parsed as
//!   a flag.
//! - In print mode a tool that needs permission and is not allowed is refused, not asked about.
//!   For a read-only profile the edit tools are additionally passed to `--disallowedTools`, so a
//!   user-level `settings.json` allow rule cannot grant them back.
//! - `--output-format stream-json --verbose` would give a richer log but is deliberately not used:
//!   the log tail goes into handover comments and must stay readable.

use super::profile::{Profile, WRITE_TOOLS};

/// The program name looked up in `PATH`.
pub const PROGRAM: &str = "claude";

/// Arguments for `profile`, without the program.
pub fn args(profile: &Profile) -> Vec<String> {
    let mut args = vec!["-p".to_owned()];
    let tools = profile.tools_arg();
    if !tools.is_empty() {
        args.push("--allowedTools".to_owned());
        args.push(tools);
    }
    if !profile.can_edit() {
        args.push("--disallowedTools".to_owned());
        args.push(WRITE_TOOLS.join(","));
    }
    args
}
