//! `crew demo [--agent NAME] [--keep] [--timeout D]`: runs agents through the demo world on an
//! emulated GitHub and prints what happened and what it cost ([`crate::demo`] does the work).
//!
//! Decisions, and why:
//! - **The summary is data, progress is not**: progress lines go to stderr as they happen (and
//!   `-q` silences them), the summary to stdout, as one JSON object with `--json`.
//! - **A real agent is checked before anything starts**: `--agent claude` on a machine without
//!   `claude` fails at once with the hints `crew dispatch` would give, rather than after the
//!   emulator, clone and loop are up.
//! - **`--keep` keeps the emulator, not the processes**: every worker has finished by the
//!   summary; what stays up until Ctrl-C is the emulated GitHub and the clone, so `crew status`
//!   and `crew show` can be pointed at them.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use clap::Args;

use crate::agents::{self, AgentKind};
use crate::context::Ctx;
use crate::demo::{self, DEMO_AGENT, DemoOptions, Finished};
use crate::error::CrewError;
use crate::settings::{Config, Env, parse_duration};

/// How long the demo may take with the bundled agent, and with a real one.
const DEMO_TIMEOUT: Duration = Duration::from_secs(5 * 60);
const REAL_AGENT_TIMEOUT: Duration = Duration::from_secs(60 * 60);

/// Run agents through a small project on an emulated GitHub, start to finish
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Let a real agent (claude, codex) do the work instead of the bundled scripted one
    #[arg(long, value_name = "NAME")]
    pub agent: Option<String>,

    /// Keep the emulated GitHub running after the summary, until Ctrl-C, to look around
    #[arg(long)]
    pub keep: bool,

    /// Give up after this long [default: 5m, or 60m with --agent]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Option<Duration>,
}

pub async fn run(ctx: &Ctx, args: &DemoArgs) -> Result<(), CrewError> {
    let agent = match args.agent.as_deref() {
        None | Some(DEMO_AGENT) => None,
        Some(name) => {
            check_agent(name)?;
            Some(name.to_owned())
        }
    };
    let timeout = args.timeout.unwrap_or(if agent.is_some() {
        REAL_AGENT_TIMEOUT
    } else {
        DEMO_TIMEOUT
    });
    // The live dashboard on a terminal; plain progress lines otherwise (and with --json or -q).
    let dashboard = {
        use std::io::IsTerminal;
        !ctx.settings.json
            && !matches!(ctx.printer.verbosity(), crate::printer::Verbosity::Quiet)
            && std::io::stdin().is_terminal()
            && std::io::stdout().is_terminal()
            && std::io::stderr().is_terminal()
    };
    let mut finished = demo::run(
        &ctx.printer,
        &DemoOptions {
            agent,
            timeout,
            dashboard,
        },
    )
    .await?;
    if args.keep {
        finished.summary.kept = Some(finished.kept());
    }
    if ctx.settings.json {
        ctx.printer.json(&finished.summary)?;
    } else {
        let style = ctx.printer.out_style();
        ctx.printer
            .out(|w| demo::summary::render(w, style, &finished.summary))?;
    }
    if !args.keep {
        ctx.printer.status(
            "\n`crew demo --keep` keeps the emulated GitHub up afterwards, to look around with \
             `crew status` and `crew show`.",
        );
        return Ok(());
    }
    let exe = std::env::current_exe().map_err(CrewError::internal)?;
    if ctx.settings.json {
        ctx.printer.err(|w, _| look_around(w, &finished, &exe));
    } else {
        ctx.printer.out(|w| look_around(w, &finished, &exe))?;
    }
    // Until Ctrl-C; then dropping `finished` stops the emulator and removes the directory.
    let _ = tokio::signal::ctrl_c().await;
    ctx.printer.status("stopping the emulator");
    drop(finished);
    Ok(())
}

/// Refuses an agent that is not built in or not installed, with `crew dispatch`'s hints.
fn check_agent(name: &str) -> Result<(), CrewError> {
    let program = match agents::resolve_agent(&Config::default(), name)? {
        AgentKind::Claude => agents::claude::PROGRAM,
        AgentKind::Codex => agents::codex::PROGRAM,
        // Not reachable with the default settings, which define no command agents.
        AgentKind::Command(_) => {
            return Err(CrewError::usage(format!(
                "`crew demo --agent` takes a built-in agent (claude, codex), not `{name}`"
            )));
        }
    };
    let env = Env::from_process();
    let path = env.get("PATH").map(std::ffi::OsStr::new);
    let cwd = std::env::current_dir().map_err(CrewError::internal)?;
    agents::find_program(name, Path::new(program), &cwd, path)?;
    Ok(())
}

/// How to point crew at what `--keep` keeps running.
fn look_around(w: &mut dyn Write, finished: &Finished, exe: &Path) -> std::io::Result<()> {
    let kept = finished.kept();
    let crew = exe.display();
    writeln!(w)?;
    writeln!(
        w,
        "The emulated GitHub stays up at {} until Ctrl-C. In another terminal:",
        kept.api_url
    )?;
    writeln!(w)?;
    writeln!(w, "  cd {}", kept.clone)?;
    writeln!(
        w,
        "  export CREW_API_URL={} GH_TOKEN={} CREW_CACHE_DIR={}",
        kept.api_url,
        demo::world::MAINTAINER_TOKEN,
        kept.cache_dir
    )?;
    writeln!(w, "  {crew} status --all")?;
    writeln!(w, "  {crew} show 3")?;
    Ok(())
}
