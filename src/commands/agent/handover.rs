//! `crew handover`: the agent must stop before finishing; its work and notes go to the next
//! attempt (`working` → `handover`).
//!
//! Order: fence; commit uncommitted work as WIP and push the branch (when the profile pushes);
//! post the `handover` event (summary, next steps, files touched since the base, base and head
//! shas); write `.crew/finished`; release the lease so the next attempt may start now.
//!
//! The summary is required (`--summary` or `--summary-file`): a handover without one leaves the
//! next attempt to rediscover everything. A summary file may carry a `## Next steps` list (as
//! the worker prompt asks); its items become the event's next steps, after any `--next`.
//!
//! The event's op is derived from the attempt and the head commit, so a re-run after a crash
//! finds the comment it already posted (nothing new committed means the same head). Killed
//! before the comment (crash point `handover:push`), the supervisor salvages and hands over in
//! its place; after it (`handover:comment`, `handover:finished`), the supervisor finds this
//! handover, posts no second one, and releases the lease (see [`crate::fault`]).

use std::path::PathBuf;

use clap::{ArgGroup, Args};

use super::{AgentView, Worker, print, short};
use crate::context::Ctx;
use crate::error::CrewError;
use crate::fault::crashpoint;
use crate::github::PostMode;
use crate::protocol::{EventBody, Handover, State};

/// Stop before finishing: commit and push your work and leave notes for the next attempt
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("summary_source").required(true).args(["summary", "summary_file"])))]
#[command(after_help = r#"Examples:
  crew handover --summary "Parser done; printer left" --next "Write the printer"
      Stop, push, leave notes
  crew handover --summary-file notes.md
      ... with notes from a file (its `## Next steps` list too)"#)]
pub struct HandoverArgs {
    /// What is done, what is left, anything surprising
    #[arg(long, value_name = "TEXT")]
    pub summary: Option<String>,

    /// Read the summary from a file; a `## Next steps` list in it becomes the next steps
    #[arg(long, value_name = "FILE")]
    pub summary_file: Option<PathBuf>,

    /// A next step for whoever continues (repeat for several)
    #[arg(long = "next", value_name = "STEP")]
    pub next: Vec<String>,
}

pub async fn run(ctx: &Ctx, args: &HandoverArgs) -> Result<(), CrewError> {
    let (summary, mut next_steps) = match (&args.summary, &args.summary_file) {
        (Some(summary), _) => (summary.trim().to_owned(), Vec::new()),
        (None, Some(file)) => {
            let text = std::fs::read_to_string(file).map_err(|error| {
                CrewError::user(format!("cannot read {}: {error}", file.display()))
                    .with_hint("write the summary to that file first, or pass it with --summary")
            })?;
            split_next_steps(&text)
        }
        (None, None) => {
            return Err(CrewError::usage(
                "a handover needs --summary TEXT or --summary-file FILE",
            ));
        }
    };
    if summary.is_empty() {
        return Err(CrewError::usage("the handover summary is empty"));
    }
    let mut steps: Vec<String> = args
        .next
        .iter()
        .map(|step| step.trim().to_owned())
        .filter(|step| !step.is_empty())
        .collect();
    steps.append(&mut next_steps);

    let worker = Worker::locate(ctx)?;
    let github = worker.github(ctx).await?;
    let held = worker.fence(&github).await?;
    let issue = worker.context.issue;
    let attempt = worker.context.attempt;
    let first_line = summary.lines().next().unwrap_or_default();
    let saved = worker
        .save_work(
            ctx,
            format!(
                "WIP: handover of #{issue} (attempt {attempt})\n\n{first_line}\n\n\
                 Committed by `crew handover`; the next attempt continues from here."
            ),
        )
        .await?;
    crashpoint("handover:push");
    let event = worker.event(
        worker.derived_op("handover", Some(short(&saved.head_sha))),
        EventBody::Handover(Handover {
            summary,
            next_steps: steps,
            files: saved.files.clone(),
            base_sha: Some(saved.base_sha.clone()),
            head_sha: Some(saved.head_sha.clone()),
        }),
    );
    let posted = worker.post(&github, &event, PostMode::Resume).await?;
    crashpoint("handover:comment");
    worker.mirror(ctx, &github, State::Handover).await;
    worker.mark_finished("handover")?;
    crashpoint("handover:finished");
    let released = worker.release(ctx, &github, &held).await?;
    let view = AgentView {
        head_sha: Some(saved.head_sha.clone()),
        pushed: saved.pushed,
        lease_released: released,
        ..AgentView::new(&worker).posted("handover", &posted)
    };
    let pushed = match saved.pushed {
        Some(true) => ", pushed",
        Some(false) => ", NOT pushed",
        None => "",
    };
    print(
        ctx,
        &view,
        &format!(
            "handed over #{issue} attempt {attempt} at {}{pushed}; you can stop now",
            short(&saved.head_sha)
        ),
    )
}

/// The summary without its `Next steps` section, and that section's list items.
pub fn split_next_steps(text: &str) -> (String, Vec<String>) {
    let mut summary = Vec::new();
    let mut steps = Vec::new();
    let mut in_steps = false;
    for line in text.lines() {
        let trimmed = line.trim();
        let hashes = trimmed.len() - trimmed.trim_start_matches('#').len();
        if hashes > 0 && trimmed[hashes..].starts_with(' ') {
            let title = trimmed[hashes..].trim().trim_end_matches(':');
            in_steps = title.eq_ignore_ascii_case("next steps");
            if in_steps {
                continue;
            }
        }
        if in_steps {
            if let Some(item) = list_item(trimmed) {
                steps.push(item.to_owned());
            } else if !trimmed.is_empty() {
                // Prose under the heading continues the last step, or stays in the summary.
                match steps.last_mut() {
                    Some(last) => {
                        last.push(' ');
                        last.push_str(trimmed);
                    }
                    None => summary.push(line),
                }
            }
            continue;
        }
        summary.push(line);
    }
    (summary.join("\n").trim().to_owned(), steps)
}

/// The text of a markdown list item (`- x`, `* x`, `+ x`, `1. x`, `1) x`, `- [ ] x`).
fn list_item(line: &str) -> Option<&str> {
    let rest = if let Some(rest) = line
        .strip_prefix("- ")
        .or_else(|| line.strip_prefix("* "))
        .or_else(|| line.strip_prefix("+ "))
    {
        rest
    } else {
        let digits = line.len() - line.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            return None;
        }
        line[digits..]
            .strip_prefix(". ")
            .or_else(|| line[digits..].strip_prefix(") "))?
    };
    let rest = rest
        .strip_prefix("[ ] ")
        .or_else(|| rest.strip_prefix("[x] "))
        .unwrap_or(rest)
        .trim();
    (!rest.is_empty()).then_some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_steps_are_taken_out_of_the_summary() {
        let text = "Parser done.\n\n## Next steps\n- wire the CLI\n- [ ] add tests\n  for errors\n2. docs\n\n## Surprises\nThe lexer is slow.\n";
        let (summary, steps) = split_next_steps(text);
        assert_eq!(summary, "Parser done.\n\n## Surprises\nThe lexer is slow.");
        assert_eq!(steps, ["wire the CLI", "add tests for errors", "docs"]);
    }

    #[test]
    fn a_summary_without_next_steps_is_kept_whole() {
        let (summary, steps) = split_next_steps("  Only this.\n");
        assert_eq!(summary, "Only this.");
        assert!(steps.is_empty());
        assert_eq!(list_item("10) ten"), Some("ten"));
        assert_eq!(list_item("-nope"), None);
        assert_eq!(list_item("2024 was a year"), None);
    }
}
