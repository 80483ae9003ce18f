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
    // Handlers first: whoever reads the URL below may signal at once, and an uncaught SIGTERM
    // would kill the emulator without its graceful shutdown (state not saved).
    let stop = stop_signal();
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{}", handle.base_url())?;
        stdout.flush()?;
    }
    eprintln!(
        "github-emulator serving {} (tokens: emu-maintainer, emu-bot, emu-outsider in the default world); Ctrl-C stops it",
        handle.base_url()
    );
    stop.await;
    handle.shutdown().await;
    Ok(())
}

/// Completes on the first SIGINT or SIGTERM. The handlers are installed when this is called,
/// not when it is first awaited, so a signal that comes right after is not fatal.
fn stop_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let handlers = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        );
        async move {
            match handlers {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
