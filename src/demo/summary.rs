//! What `crew demo` reports: a progress line per event as it happens, and the summary at the end
//! (`--json`: one object with stable field names).

use std::io::Write;
use std::time::Duration;

use serde::Serialize;

use crate::printer::Style;
use crate::protocol::{AppliedEvent, EventBody};

use super::observe::IssueView;

/// `crew demo --json`.
#[derive(Debug, Serialize)]
pub struct DemoSummary {
    pub issues: Vec<IssueSummary>,
    /// Issues completed (their pull request merged).
    pub completed: usize,
    /// Attempts announced across all issues.
    pub attempts: u64,
    /// Pull requests opened.
    pub prs: usize,
    /// Requests crew made to the emulated GitHub (the loop, the workers, the maintainer's
    /// commands), and the rate-limit points they cost.
    pub requests: u64,
    pub rate_points: u64,
    pub wall_ms: u64,
    /// The agent that did the work (`demo`: the bundled scripted agent).
    pub agent: String,
    /// With `--keep`: where the emulator keeps running.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kept: Option<Kept>,
}

/// One issue's outcome.
#[derive(Debug, Serialize)]
pub struct IssueSummary {
    pub issue: u64,
    pub title: String,
    pub state: &'static str,
    pub attempts: u64,
    pub pr: Option<u64>,
    pub merged: bool,
    /// The kinds of its events, in order.
    pub events: Vec<&'static str>,
}

/// How to reach what `--keep` keeps running.
#[derive(Debug, Serialize)]
pub struct Kept {
    pub api_url: String,
    pub clone: String,
    pub cache_dir: String,
}

impl DemoSummary {
    pub fn new(
        issues: &[IssueView],
        requests: u64,
        rate_points: u64,
        wall: Duration,
        agent: &str,
    ) -> DemoSummary {
        let issues: Vec<IssueSummary> = issues
            .iter()
            .map(|issue| IssueSummary {
                issue: issue.number,
                title: issue.title.clone(),
                state: issue.state.state.as_str(),
                attempts: issue.state.attempts,
                pr: issue.state.pr,
                merged: issue.pr_merged == Some(true),
                events: issue
                    .state
                    .events
                    .iter()
                    .map(|applied| applied.event.kind().as_str())
                    .collect(),
            })
            .collect();
        DemoSummary {
            completed: issues
                .iter()
                .filter(|issue| issue.state == "completed")
                .count(),
            attempts: issues.iter().map(|issue| issue.attempts).sum(),
            prs: issues.iter().filter(|issue| issue.pr.is_some()).count(),
            issues,
            requests,
            rate_points,
            wall_ms: u64::try_from(wall.as_millis()).unwrap_or(u64::MAX),
            agent: agent.to_owned(),
            kept: None,
        }
    }
}

/// The path an issue took, in a few words.
fn path_of(issue: &IssueSummary) -> String {
    let mut notes = Vec::new();
    if issue.events.contains(&"blocked") {
        notes.push(if issue.events.contains(&"answered") {
            "asked, answered"
        } else {
            "asked"
        });
    }
    if issue.events.contains(&"handover") {
        notes.push("handed over");
    }
    if issue.events.contains(&"changes_requested") {
        notes.push("changes requested");
    }
    notes.join(", ")
}

/// The human summary.
pub fn render(w: &mut dyn Write, style: Style, summary: &DemoSummary) -> std::io::Result<()> {
    writeln!(
        w,
        "{} {} of {} issues completed by the {} agent in {:.1}s: {} attempts, {} pull requests.",
        style.bold("crew demo:"),
        summary.completed,
        summary.issues.len(),
        summary.agent,
        summary.wall_ms as f64 / 1000.0,
        summary.attempts,
        summary.prs,
    )?;
    writeln!(
        w,
        "GitHub cost: {} requests, {} rate-limit points.",
        summary.requests, summary.rate_points
    )?;
    writeln!(w)?;
    let width = summary
        .issues
        .iter()
        .map(|issue| issue.title.chars().count())
        .max()
        .unwrap_or(0);
    for issue in &summary.issues {
        let pr = match (issue.pr, issue.merged) {
            (Some(pr), true) => format!("PR #{pr} merged"),
            (Some(pr), false) => format!("PR #{pr}"),
            (None, _) => "no PR".to_owned(),
        };
        let state = if issue.state == "completed" {
            style.green(issue.state).to_string()
        } else {
            style.yellow(issue.state).to_string()
        };
        writeln!(
            w,
            "  #{:<3} {:<width$}  {}  {} attempt{}, {}{}",
            issue.issue,
            issue.title,
            state,
            issue.attempts,
            if issue.attempts == 1 { "" } else { "s" },
            pr,
            match path_of(issue) {
                path if path.is_empty() => String::new(),
                path => format!(" ({path})"),
            },
        )?;
    }
    Ok(())
}

/// One progress line's text for an event, or `None` for events not worth a line.
pub fn describe(applied: &AppliedEvent) -> Option<String> {
    let event = &applied.event;
    let by = |author: &str| format!(" by @{author}");
    Some(match &event.body {
        EventBody::Assigned(assignment) => format!(
            "attempt {} assigned to {}{}",
            event.attempt,
            event.worker,
            assignment
                .agent
                .as_deref()
                .map(|agent| format!(" (agent {agent})"))
                .unwrap_or_default()
        ),
        EventBody::Started {} => format!("attempt {} started", event.attempt),
        EventBody::Progress { message } => format!("progress: {}", first_line(message)),
        EventBody::Blocked { question } => format!("blocked: {}", first_line(question)),
        EventBody::Answered { answer } => {
            format!("answered{}: {}", by(&applied.author), first_line(answer))
        }
        EventBody::Handover(handover) => {
            format!("handed over: {}", first_line(&handover.summary))
        }
        EventBody::InReview { pr } => format!("in review: pull request #{pr}"),
        EventBody::ChangesRequested { pr, body } => format!(
            "changes requested on #{pr}{}{}",
            by(&applied.author),
            body.as_deref()
                .map(|body| format!(": {}", first_line(body)))
                .unwrap_or_default()
        ),
        EventBody::Approved { pr } => format!("approved #{pr}{}", by(&applied.author)),
        EventBody::Completed { pr } => match pr {
            Some(pr) => format!("completed: pull request #{pr} merged"),
            None => "completed".to_owned(),
        },
        EventBody::Failed { reason } => format!("failed: {}", first_line(reason)),
        EventBody::Cancelled { reason } => format!(
            "cancelled{}",
            reason
                .as_deref()
                .map(|reason| format!(": {}", first_line(reason)))
                .unwrap_or_default()
        ),
        EventBody::Released {} => return None,
    })
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default().trim()
}
