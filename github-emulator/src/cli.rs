//! `github-emulator` / `crew emulator serve`: serve until interrupted, printing the base URL as
//! the first line on stdout so scripts can read it.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::{Emulator, World};

/// Serve an emulated GitHub on loopback until interrupted
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port)
    #[arg(long, default_value = "127.0.0.1:0")]
    pub addr: SocketAddr,
    /// World to start from (JSON); the default world has org `acme` and repo `acme/widgets`
    #[arg(long, value_name = "FILE")]
    pub world: Option<PathBuf>,
    /// Keep state in this directory across restarts
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

/// Start, print the base URL, and serve until Ctrl-C (or SIGTERM).
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut builder = Emulator::builder().addr(args.addr);
    if let Some(path) = &args.world {
        builder = builder.world(World::load(path)?);
    }
    if let Some(dir) = &args.state_dir {
        builder = builder.state_dir(dir);
    }
    let handle = builder.start().await?;
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{}", handle.base_url())?;
        stdout.flush()?;
    }
    eprintln!(
        "github-emulator serving {} (tokens: emu-maintainer, emu-bot, emu-outsider in the default world); Ctrl-C stops it",
        handle.base_url()
    );
    wait_for_signal().await;
    handle.shutdown().await;
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
