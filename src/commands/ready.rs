//! `crew ready [-v]`: the issues a `crew fill` would start, in the order it would start them,
//! and with `-v` why every other open issue waits. Reads only (a sync, the leases, and GitHub's
//! sub-issue relations); starts nothing.

use std::io::Write;

use clap::Args;
use serde::Serialize;

use crate::context::Ctx;
use crate::error::CrewError;
use crate::schedule;
use crate::scheduler::{self, Action, DispatchReason, Limits, NotReady, Slots, Waiting};

/// List the issues a fill would start now, in order (-v: and why the others wait)
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  crew ready                               The issues a fill would start now, in order
  crew ready -v                            ... and why every other open issue waits
  crew ready --json | jq '.ready[].issue'  Just the numbers")]
pub struct ReadyArgs {}

/// `crew ready --json`.
#[derive(Debug, Serialize)]
pub struct ReadyView {
    pub slots: Slots,
    /// Why nothing may start at all, when that is so.
    pub stopped: Option<String>,
    /// In the order a fill takes them; the first `slots.free` would start now.
    pub ready: Vec<ReadyIssue>,
    /// Every other open issue, and why it waits.
    pub waiting: Vec<Waiting>,
}

#[derive(Debug, Serialize)]
pub struct ReadyIssue {
    pub issue: u64,
    pub title: String,
    pub attempt: u64,
    pub reason: DispatchReason,
    /// A slot is free for it now.
    pub now: bool,
}

pub async fn run(ctx: &Ctx, _args: &ReadyArgs) -> Result<(), CrewError> {
    let mut observation = schedule::observe_world(ctx).await?;
    // Plan as if every slot were free, so the whole ready queue shows, then mark what fits.
    let plan = schedule::plan_unlimited(ctx, &mut observation.world).await?;
    // The same world (its relations already read) with the real limits: what starts now.
    let live = scheduler::plan(
        &observation.world,
        &Limits::from_config(&ctx.settings.config),
    );
    let starting: Vec<u64> = live
        .actions
        .iter()
        .filter_map(|action| match action {
            Action::Dispatch { issue, .. } => Some(*issue),
            Action::Recover { .. } => None,
        })
        .collect();
    let ready = plan
        .actions
        .iter()
        .filter_map(|action| match action {
            Action::Dispatch {
                issue,
                title,
                attempt,
                reason,
            } => Some(ReadyIssue {
                issue: *issue,
                title: title.clone(),
                attempt: *attempt,
                reason: *reason,
                now: starting.contains(issue),
            }),
            Action::Recover { .. } => None,
        })
        .collect();
    let waiting = plan
        .waiting
        .into_iter()
        .filter(|waiting| !matches!(waiting.reason, NotReady::NoSlot))
        .collect();
    let view = ReadyView {
        slots: live.slots,
        stopped: live.stopped,
        ready,
        waiting,
    };
    if ctx.settings.json {
        return ctx.printer.json(&view);
    }
    let verbose = matches!(
        ctx.printer.verbosity(),
        crate::printer::Verbosity::Verbose(_)
    );
    ctx.printer.out(|w| render(w, &view, verbose))
}

fn render(w: &mut dyn Write, view: &ReadyView, verbose: bool) -> std::io::Result<()> {
    let slots = &view.slots;
    writeln!(
        w,
        "slots: {} of {} used ({} of {} on this host), {} free",
        slots.used, slots.max, slots.used_here, slots.max_per_host, slots.free
    )?;
    if let Some(stopped) = &view.stopped {
        writeln!(w, "nothing starts: {stopped}")?;
    }
    if view.ready.is_empty() {
        writeln!(w, "no issue is ready")?;
    }
    for issue in &view.ready {
        writeln!(
            w,
            "{} #{} {} (attempt {}, {})",
            if issue.now { "*" } else { " " },
            issue.issue,
            issue.title,
            issue.attempt,
            reason(issue.reason)
        )?;
    }
    if verbose {
        if !view.waiting.is_empty() {
            writeln!(w, "\nwaiting:")?;
        }
        for waiting in &view.waiting {
            writeln!(
                w,
                "  #{} {}: {}",
                waiting.issue, waiting.title, waiting.reason
            )?;
        }
    } else if !view.waiting.is_empty() {
        writeln!(
            w,
            "{} other open issue(s) wait; `crew ready -v` says why",
            view.waiting.len()
        )?;
    }
    Ok(())
}

/// The human words for a reason.
pub fn reason(reason: DispatchReason) -> &'static str {
    match reason {
        DispatchReason::New => "new",
        DispatchReason::ContinueHandover => "continues a handover",
        DispatchReason::ContinueAnswered => "continues with an answer",
        DispatchReason::ChangesRequested => "changes requested",
        DispatchReason::RetryFailed => "retries a failure",
        DispatchReason::Recovered => "recovers an abandoned attempt",
    }
}
