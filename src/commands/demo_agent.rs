//! `crew demo-agent [--prompt-file PATH]` (hidden): the scripted agent `crew demo` runs in each
//! worker's worktree; see [`crate::demo::agent`]. Nobody types it.

use std::path::PathBuf;

use clap::Args;

use crate::context::Ctx;
use crate::error::CrewError;

/// Act out a demo issue from inside its worktree (started by `crew demo`)
#[derive(Debug, Args)]
pub struct DemoAgentArgs {
    /// The prompt crew rendered [default: .crew/prompt.md of the worktree]
    #[arg(long, value_name = "PATH")]
    pub prompt_file: Option<PathBuf>,
}

pub async fn run(_ctx: &Ctx, args: &DemoAgentArgs) -> Result<(), CrewError> {
    crate::demo::agent::run(args.prompt_file.as_deref()).await
}
