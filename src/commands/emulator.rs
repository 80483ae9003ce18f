//! `crew emulator serve`: the emulator from the `github-emulator` crate, reachable from the one
//! binary users already have, so a demo or an integration test needs nothing else installed.
//!
//! The emulator owns its flags and its serve loop; this module only forwards to them.

use clap::Subcommand;

use crate::context::Ctx;
use crate::error::{CrewError, ErrorKind};

/// Subcommands of `crew emulator`.
#[derive(Debug, Subcommand)]
pub enum EmulatorCommand {
    /// Serve an emulated GitHub on loopback, printing its base URL first on stdout
    Serve(github_emulator::cli::ServeArgs),
}

pub async fn run(_ctx: &Ctx, command: &EmulatorCommand) -> Result<(), CrewError> {
    match command {
        // Its failures are a world file that does not load or an address already in use: the
        // user's to fix, so exit 1 rather than 255.
        EmulatorCommand::Serve(args) => github_emulator::cli::serve(args.clone())
            .await
            .map_err(|error| CrewError::new(ErrorKind::User, error.into_boxed_dyn_error())),
    }
}
