//! `crew fill [--max N] [--dry-run]`: one round of scheduling. Reconciles this host's workers,
//! reads the world, plans ([`crate::scheduler::plan`]) and carries the plan out: each start is a
//! `crew dispatch`, decided by the issue's lease, so several fills (hosts, a scheduled Action)
//! running at once never put two workers on one issue.
//!
//! Before planning, it puts right the mirrors that fell behind (labels from the mirror,
//! [`schedule::repair_labels`]; board statuses from the cache's board rows,
//! [`schedule::repair_board`]): finding them costs no request, only fixing one does. A dry run
//! writes nothing, so it leaves them for the next real cycle.

use std::io::Write;

use clap::Args;
use serde::Serialize;

use crate::commands::ready::reason;
use crate::context::Ctx;
use crate::error::CrewError;
use crate::schedule::{self, Applied};
use crate::scheduler::{Action, Plan};

/// Start workers on ready issues, up to the free slots
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  crew fill            Start workers on ready issues, up to the free slots
  crew fill --dry-run  Print the plan, start nothing
  crew fill --max 1    Start at most one worker")]
pub struct FillArgs {
    /// Start at most this many workers now
    #[arg(long, value_name = "N")]
    pub max: Option<u32>,

    /// Print the plan and start nothing
    #[arg(long)]
    pub dry_run: bool,
}

/// `crew fill --json`.
#[derive(Debug, Serialize)]
pub struct FillView {
    pub dry_run: bool,
    pub plan: Plan,
    /// What happened to each action (empty in a dry run).
    pub applied: Vec<Applied>,
    /// Issues whose `crew:*` label was out of date and was put right.
    pub labels_fixed: Vec<u64>,
    /// Issues whose project board status was owed or out of date and was put right.
    pub board_fixed: Vec<u64>,
}

pub async fn run(ctx: &Ctx, args: &FillArgs) -> Result<(), CrewError> {
    let view = fill(ctx, args.max, args.dry_run).await?;
    if ctx.settings.json {
        return ctx.printer.json(&view);
    }
    ctx.printer.out(|w| render(w, &view))
}

/// One round: reconcile (unless a dry run), finish interrupted dispatches, observe, plan, apply.
pub async fn fill(ctx: &Ctx, max: Option<u32>, dry_run: bool) -> Result<FillView, CrewError> {
    let mut resumed = Vec::new();
    let mut observation = if dry_run {
        schedule::observe_world(ctx).await?
    } else {
        // Dead supervisors' jobs are finished, except where a dispatch of this host died before
        // its agent started: those are resumed below as the same attempt, not handed over (a
        // crash must not cost an attempt).
        let workers = crate::reconcile::plan_local(ctx).await?;
        let (interrupted, others): (Vec<_>, Vec<_>) = workers
            .into_iter()
            .partition(|local| local.never_started() && !local.facts.dispatching);
        let report = crate::reconcile::apply(ctx, others).await;
        crate::reconcile::print_report(&ctx.printer, &report);
        let observation = schedule::observe_world(ctx).await?;
        let mut issues: Vec<u64> = interrupted.iter().map(|local| local.issue).collect();
        // Leases a dispatch of this host took before it died, with no worktree yet.
        let known = crate::reconcile::plan_local(ctx).await?;
        issues.extend(
            crate::reconcile::abandoned_leases(ctx, &observation.observed, &known, true)
                .await
                .into_iter()
                .filter(|lease| !lease.ended)
                .map(|lease| lease.issue),
        );
        // Leases that outlived their attempt (a command killed between its event and its
        // release): let go of, so the slot is free and `loop --until-idle` can end.
        let released =
            crate::reconcile::release_ended_leases(ctx, &observation.observed, &known).await;
        for line in &released {
            ctx.printer.status(format_args!(
                "#{}: {} the lease of attempt {} ({})",
                line.issue, line.action, line.attempt, line.reason
            ));
        }
        let released = released.iter().any(|line| line.action == "released");
        issues.sort_unstable();
        issues.dedup();
        for issue in issues {
            resumed.push(schedule::resume(ctx, &observation.observed, issue).await);
        }
        if resumed.is_empty() && !released {
            observation
        } else {
            schedule::observe_world(ctx).await?
        }
    };
    let (labels_fixed, board_fixed) = if dry_run {
        (Vec::new(), Vec::new())
    } else {
        (
            schedule::repair_labels(ctx, &observation.world).await,
            schedule::repair_board(ctx, &observation.world).await,
        )
    };
    let mut plan = schedule::plan(ctx, &mut observation.world).await?;
    if let Some(max) = max {
        limit(&mut plan, max);
    }
    let mut applied = resumed;
    if !dry_run {
        applied.extend(schedule::apply(ctx, &plan, &observation.observed).await);
    }
    Ok(FillView {
        dry_run,
        plan,
        applied,
        labels_fixed,
        board_fixed,
    })
}

/// Keeps the first `max` dispatches (and the recoveries that go with them).
fn limit(plan: &mut Plan, max: u32) {
    let mut kept = Vec::new();
    let mut dispatches = 0;
    for action in &plan.actions {
        if let Action::Dispatch { issue, .. } = action
            && dispatches < max
        {
            dispatches += 1;
            kept.push(*issue);
        }
    }
    plan.actions.retain(|action| match action {
        Action::Dispatch { issue, .. } | Action::Recover { issue, .. } => kept.contains(issue),
    });
}

fn render(w: &mut dyn Write, view: &FillView) -> std::io::Result<()> {
    let slots = &view.plan.slots;
    writeln!(
        w,
        "slots: {} of {} used ({} of {} on this host), {} free",
        slots.used, slots.max, slots.used_here, slots.max_per_host, slots.free
    )?;
    if let Some(stopped) = &view.plan.stopped {
        writeln!(w, "nothing starts: {stopped}")?;
    }
    if view.dry_run {
        for action in &view.plan.actions {
            match action {
                Action::Dispatch {
                    issue,
                    title,
                    attempt,
                    reason: why,
                } => writeln!(
                    w,
                    "would dispatch #{issue} {title} (attempt {attempt}, {})",
                    reason(*why)
                )?,
                Action::Recover {
                    issue,
                    worker,
                    host,
                    ..
                } => writeln!(
                    w,
                    "would recover #{issue} from {worker} on {host} (its lease expired)"
                )?,
            }
        }
        if view.plan.actions.is_empty() {
            writeln!(w, "nothing to start")?;
        }
        return Ok(());
    }
    for applied in &view.applied {
        match (&applied.dispatch, applied.outcome) {
            (Some(dispatch), _) => writeln!(
                w,
                "dispatched #{} attempt {} ({}) worker {}",
                applied.issue,
                dispatch.attempt,
                applied.reason.map_or("", reason),
                dispatch.worker
            )?,
            (None, outcome) => writeln!(
                w,
                "#{}: {outcome}{}",
                applied.issue,
                applied
                    .message
                    .as_deref()
                    .map(|message| format!(": {message}"))
                    .unwrap_or_default()
            )?,
        }
    }
    if view.applied.is_empty() {
        writeln!(w, "nothing to start")?;
    }
    for (what, fixed) in [
        ("crew label", &view.labels_fixed),
        ("board status", &view.board_fixed),
    ] {
        for issue in fixed {
            writeln!(w, "#{issue}: put right its {what}")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::{DispatchReason, Slots};

    fn dispatch(issue: u64) -> Action {
        Action::Dispatch {
            issue,
            title: String::new(),
            attempt: 1,
            reason: DispatchReason::New,
        }
    }

    #[test]
    fn max_keeps_the_first_dispatches_and_their_recoveries() {
        let mut plan = Plan {
            slots: Slots {
                max: 5,
                used: 0,
                max_per_host: 5,
                used_here: 0,
                free: 5,
            },
            actions: vec![
                Action::Recover {
                    issue: 1,
                    worker: "w".to_owned(),
                    host: "h".to_owned(),
                    attempt: 1,
                    expired_at: chrono::DateTime::<chrono::Utc>::UNIX_EPOCH,
                },
                dispatch(1),
                dispatch(2),
                dispatch(3),
            ],
            waiting: Vec::new(),
            stopped: None,
        };
        limit(&mut plan, 2);
        let issues: Vec<u64> = plan
            .actions
            .iter()
            .map(|action| match action {
                Action::Dispatch { issue, .. } | Action::Recover { issue, .. } => *issue,
            })
            .collect();
        assert_eq!(issues, vec![1, 1, 2]);
    }
}
