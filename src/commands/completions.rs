//! `crew completions <shell>`: the shell completion script, on stdout.
//!
//! Decisions, and why:
//! - **Generated from the same clap definition the binary parses with** (`clap_complete`), so
//!   the completions can never disagree with the commands and flags that exist.
//! - **Printed, not installed**: where completion scripts go differs per shell, distribution and
//!   user; the examples show the usual places.

use clap::{Args, CommandFactory, ValueEnum};
use clap_complete::Shell;

use crate::cli::Cli;
use crate::context::Ctx;
use crate::error::CrewError;

/// The shells crew prints completions for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

impl CompletionShell {
    fn shell(self) -> Shell {
        match self {
            CompletionShell::Bash => Shell::Bash,
            CompletionShell::Zsh => Shell::Zsh,
            CompletionShell::Fish => Shell::Fish,
        }
    }
}

/// Print the shell completion script for bash, zsh or fish
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  crew completions bash > ~/.local/share/bash-completion/completions/crew
  crew completions zsh > ~/.zfunc/_crew        # with `fpath+=~/.zfunc` before compinit
  crew completions fish > ~/.config/fish/completions/crew.fish")]
pub struct CompletionsArgs {
    /// The shell to complete in
    #[arg(value_enum)]
    pub shell: CompletionShell,
}

pub async fn run(ctx: &Ctx, args: &CompletionsArgs) -> Result<(), CrewError> {
    let script = script(args.shell);
    ctx.printer.out(|w| w.write_all(&script))
}

/// The completion script for `shell`.
pub fn script(shell: CompletionShell) -> Vec<u8> {
    let mut command = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell.shell(), &mut command, "crew", &mut script);
    script
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shell_gets_a_script_naming_the_commands() {
        for shell in [
            CompletionShell::Bash,
            CompletionShell::Zsh,
            CompletionShell::Fish,
        ] {
            let script = String::from_utf8_lossy(&script(shell)).into_owned();
            for command in ["dispatch", "request-changes", "completions"] {
                assert!(script.contains(command), "{shell:?} lacks {command}");
            }
        }
    }
}
