//! `crew run-worker --issue N --attempt K`: one attempt of one issue, run in the foreground as
//! the job of the `crew-worker.yml` workflow (runtime `actions`, DESIGN.md 3). `crew dispatch
//! --runtime actions` starts that workflow; the work itself is [`crate::runtime_actions`].
//!
//! Exit codes: 0 when the agent finished the attempt (`done`, `handover`); 1 when it reported
//! `fail`, exited without finishing (its work is salvaged and handed over) or the job was
//! cancelled; 4 when attempt K no longer holds the lease (nothing is written then).

use std::io::Write;

use clap::Args;

use crate::context::Ctx;
use crate::error::CrewError;
use crate::runtime_actions::{self, RunOutcome, RunWorkerRequest, RunWorkerView};

/// Run one attempt of an issue in the foreground (the job of the crew-worker workflow)
#[derive(Debug, Args)]
pub struct RunWorkerArgs {
    /// The issue number
    #[arg(long, value_name = "N")]
    pub issue: u64,

    /// The attempt the workflow was dispatched for; must still be the lease's
    #[arg(long, value_name = "K")]
    pub attempt: u32,

    /// The tool profile [default: workers.profile]
    #[arg(long, value_name = "NAME")]
    pub profile: Option<String>,

    /// The agent [default: workers.agent]
    #[arg(long, value_name = "NAME")]
    pub agent: Option<String>,
}

pub async fn run(ctx: &Ctx, args: &RunWorkerArgs) -> Result<(), CrewError> {
    let request = RunWorkerRequest {
        issue: args.issue,
        attempt: args.attempt,
        agent: args.agent.clone().filter(|agent| !agent.is_empty()),
        profile: args.profile.clone().filter(|profile| !profile.is_empty()),
    };
    let view = runtime_actions::run_worker(ctx, &request).await?;
    if ctx.settings.json {
        ctx.printer.json(&view)?;
    } else {
        ctx.printer.out(|w| render(w, &view))?;
    }
    outcome_error(&view).map_or(Ok(()), Err)
}

fn render(w: &mut dyn Write, view: &RunWorkerView) -> std::io::Result<()> {
    let how = match (view.outcome, view.finished.as_deref()) {
        (RunOutcome::Finished, Some(kind)) => format!("finished ({kind})"),
        (RunOutcome::Finished, None) => "finished".to_owned(),
        (RunOutcome::Salvaged, _) => match view.handover_comment {
            Some(comment) => format!("exited without finishing; handed over (comment {comment})"),
            None => "exited without finishing".to_owned(),
        },
        (RunOutcome::Superseded, _) => "stopped: the lease moved to another attempt".to_owned(),
        (RunOutcome::Cancelled, _) => "cancelled".to_owned(),
    };
    writeln!(
        w,
        "#{} attempt {} worker {}: {how} ({} lease renewals) worktree {}",
        view.issue, view.attempt, view.worker, view.renewals, view.worktree
    )
}

/// The error that gives the job its exit code, when the attempt did not end well.
fn outcome_error(view: &RunWorkerView) -> Option<CrewError> {
    let issue = view.issue;
    match view.outcome {
        _ if view.succeeded() => None,
        RunOutcome::Finished => Some(CrewError::user(format!(
            "#{issue}: the agent reported that it failed"
        ))),
        RunOutcome::Salvaged => Some(
            CrewError::user(format!(
                "#{issue}: the agent exited without finishing (code {}); its work was saved and handed over",
                view.exit_code
                    .map_or_else(|| "none".to_owned(), |code| code.to_string())
            ))
            .with_hint("the next `crew fill` dispatches the next attempt"),
        ),
        RunOutcome::Superseded => Some(CrewError::lost_race(format!(
            "#{issue}: attempt {} lost its lease to another attempt while running",
            view.attempt
        ))),
        RunOutcome::Cancelled => Some(CrewError::user(format!(
            "#{issue}: the worker was cancelled"
        ))),
    }
}
