//! `crew loop [--interval 60s] [--until-idle]`: fill, again and again. Each cycle reconciles this
//! host's workers (finishing the job of any dead supervisor), reads the world, plans and starts
//! what fits; then it sleeps.
//!
//! Decisions, and why:
//! - **The loop holds no workers.** Every worker has its own detached supervisor, so the loop can
//!   stop, crash or be upgraded without taking a worker with it; its "supervising" is the
//!   reconcile at the top of each cycle.
//! - **Several loops share the slots through the leases.** Slots are counted from live leases of
//!   every host, and each start is a compare-and-swap on the issue's lease, so four loops on four
//!   machines never put two workers on one issue and never exceed `workers.max` by more than the
//!   starts that race in one cycle (which the leases then refuse).
//! - **Ctrl-C stops dispatching, not work.** The first SIGINT ends the cycling; if workers of this
//!   host are still running, the loop waits for them to finish. A second SIGINT hands them over
//!   now: each supervisor gets SIGTERM, which stops its agent, saves the work and posts a
//!   handover, and the loop waits for that too. `--until-idle` ends the loop by itself once
//!   nothing can start and no worker runs anywhere.

use std::io::Write;
use std::time::Duration;

use clap::Args;
use serde::Serialize;

use crate::commands::fill::{FillView, fill};
use crate::context::Ctx;
use crate::error::CrewError;
use crate::reconcile::{self, Decision};
use crate::settings::parse_duration;
use crate::worker::{self, Signal};

/// Fill worker slots every interval until interrupted (or, with --until-idle, until all is done)
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  crew loop                Fill free slots every 60s until Ctrl-C
  crew loop --interval 5m  ... every five minutes
  crew loop --until-idle   Stop once nothing can start and no worker runs")]
pub struct LoopArgs {
    /// Time between cycles
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub interval: Duration,

    /// Stop once nothing can start and no worker runs on any host
    #[arg(long)]
    pub until_idle: bool,
}

/// One cycle, as `--json` prints it (one JSON object per line).
#[derive(Debug, Serialize)]
pub struct CycleView {
    pub cycle: u64,
    #[serde(flatten)]
    pub fill: FillView,
}

pub async fn run(ctx: &Ctx, args: &LoopArgs) -> Result<(), CrewError> {
    let mut interrupts = interrupts();
    let mut cycle = 0_u64;
    loop {
        cycle += 1;
        // A cycle in progress is finished, not abandoned: dropping it mid-dispatch would leave a
        // lease and an `assigned` comment for the next reconcile to clean up.
        let round = fill(ctx, None, false);
        tokio::pin!(round);
        let mut stopping = false;
        let round = loop {
            tokio::select! {
                round = &mut round => break round,
                _ = interrupts.recv(), if !stopping => {
                    stopping = true;
                    ctx.printer.status("stopping after this cycle's dispatches");
                }
            }
        };
        match round {
            Ok(view) => {
                let idle = view.plan.actions.is_empty() && view.plan.slots.used == 0;
                report(ctx, &CycleView { cycle, fill: view })?;
                if args.until_idle && idle {
                    ctx.printer
                        .status("idle: nothing can start and no worker runs; stopping");
                    return Ok(());
                }
            }
            // A cycle that failed (GitHub unreachable, rate-limited) is reported; the next one
            // tries again.
            Err(error) => ctx.printer.error(&error),
        }
        if stopping {
            break;
        }
        tokio::select! {
            () = tokio::time::sleep(args.interval) => {}
            _ = interrupts.recv() => break,
        }
    }
    drain(ctx, &mut interrupts).await
}

/// After the first Ctrl-C: wait for this host's workers; a second Ctrl-C hands them over.
async fn drain(
    ctx: &Ctx,
    interrupts: &mut tokio::sync::mpsc::UnboundedReceiver<()>,
) -> Result<(), CrewError> {
    let mut handing_over = false;
    loop {
        let running = running_supervisors(ctx).await;
        if running.is_empty() {
            ctx.printer
                .status("no worker of this host is running; stopped");
            return Ok(());
        }
        if !handing_over {
            ctx.printer.status(format_args!(
                "stopped dispatching; waiting for {} worker(s) of this host to finish \
                 (Ctrl-C again hands them over now)",
                running.len()
            ));
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = interrupts.recv(), if !handing_over => {
                handing_over = true;
                ctx.printer.status(format_args!(
                    "handing over {} worker(s): their supervisors save the work and post a handover",
                    running.len()
                ));
                for supervisor in &running {
                    if let Err(error) = worker::signal_process(supervisor, Signal::Terminate) {
                        ctx.printer.warn(format_args!(
                            "cannot signal supervisor {}: {error}",
                            supervisor.pid
                        ));
                    }
                }
            }
        }
    }
}

/// The live supervisors of this repository's workers on this host.
async fn running_supervisors(ctx: &Ctx) -> Vec<worker::ProcessIdentity> {
    match reconcile::plan_local(ctx).await {
        Ok(workers) => workers
            .into_iter()
            .filter(|local| local.decision == Decision::Supervised)
            .filter_map(|local| local.supervisor)
            .filter(worker::is_alive)
            .collect(),
        Err(error) => {
            ctx.printer
                .warn(format_args!("cannot look at this host's workers: {error}"));
            Vec::new()
        }
    }
}

/// Every SIGINT (and SIGTERM), as a message. Installed before the first cycle, so an early
/// Ctrl-C is handled rather than killing the process half-way through a dispatch.
fn interrupts() -> tokio::sync::mpsc::UnboundedReceiver<()> {
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut interrupt), Ok(mut terminate)) => {
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = interrupt.recv() => {}
                        _ = terminate.recv() => {}
                    }
                    if sender.send(()).is_err() {
                        return;
                    }
                }
            });
        }
        _ => tracing::warn!("cannot install signal handlers; Ctrl-C will kill crew loop at once"),
    }
    receiver
}

fn report(ctx: &Ctx, view: &CycleView) -> Result<(), CrewError> {
    if ctx.settings.json {
        let line = serde_json::to_string(view).map_err(CrewError::internal)?;
        return ctx.printer.out_line(line);
    }
    ctx.printer.out(|w| render(w, view))
}

fn render(w: &mut dyn Write, view: &CycleView) -> std::io::Result<()> {
    let slots = &view.fill.plan.slots;
    let mut started = Vec::new();
    let mut other = Vec::new();
    for applied in &view.fill.applied {
        match applied.outcome {
            "dispatched" => started.push(format!("#{}", applied.issue)),
            outcome => other.push(format!("#{} {outcome}", applied.issue)),
        }
    }
    write!(
        w,
        "cycle {}: {} of {} slots used",
        view.cycle, slots.used, slots.max
    )?;
    if !started.is_empty() {
        write!(w, "; started {}", started.join(" "))?;
    }
    if !other.is_empty() {
        write!(w, "; {}", other.join(", "))?;
    }
    if let Some(stopped) = &view.fill.plan.stopped {
        write!(w, "; nothing starts: {stopped}")?;
    }
    for (what, fixed) in [
        ("labels", &view.fill.labels_fixed),
        ("board status", &view.fill.board_fixed),
    ] {
        if !fixed.is_empty() {
            let issues: Vec<String> = fixed.iter().map(|issue| format!("#{issue}")).collect();
            write!(w, "; put right the {what} of {}", issues.join(" "))?;
        }
    }
    writeln!(w)
}
