//! `crew show <issue>`: how an issue got where it is: the events that counted, the markers that
//! did not (and why), and the lease.

use std::io::Write;

use clap::Args;
use serde::Serialize;

use crate::context::Ctx;
use crate::error::CrewError;
use crate::observe::{ObserveOptions, ObservedIssue, observe, sanitize_line, timestamp};
use crate::protocol::{FoldPolicy, fold};

/// Show an issue's timeline of crew events, ignored markers and lease
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The issue number
    pub issue: u64,
}

/// `crew show N --json` (DESIGN.md 4).
#[derive(Debug, Serialize)]
pub struct ShowView {
    pub issue: u64,
    pub state: &'static str,
    pub attempt: Option<u64>,
    pub lease: Option<ShowLease>,
    pub events: Vec<EventLine>,
    pub ignored: Vec<IgnoredLine>,
}

/// The lease in full: what `status` shows, plus who holds it.
#[derive(Debug, Serialize)]
pub struct ShowLease {
    pub state: &'static str,
    pub expires_at: String,
    pub attempt: u32,
    pub worker: String,
    pub host: String,
    pub renewed_at: String,
}

#[derive(Debug, Serialize)]
pub struct EventLine {
    pub kind: &'static str,
    pub attempt: u64,
    pub author: String,
    pub at: String,
    pub comment_id: u64,
}

#[derive(Debug, Serialize)]
pub struct IgnoredLine {
    pub comment_id: u64,
    pub author: String,
    /// A stable code (`untrusted_author`, `malformed_marker`, `stale_attempt`, ...).
    pub reason: &'static str,
    /// The same, for humans.
    pub message: String,
}

pub async fn run(ctx: &Ctx, args: &ShowArgs) -> Result<(), CrewError> {
    let observed = observe(ctx, ObserveOptions::default()).await?;
    let issue = match observed.issue(args.issue) {
        Some(issue) => issue.clone(),
        // An issue without crew events or a lease is simply unassigned.
        None => match ctx.cache().await?.issue(args.issue).await? {
            Some(row) => ObservedIssue {
                number: row.number,
                open: row.state != "closed",
                title: row.title,
                state: fold(row.number, [], None, &FoldPolicy::new("")),
                lease: None,
                newest_comment_id: None,
            },
            None => {
                return Err(CrewError::user(format!(
                    "{} has no issue #{}",
                    observed.repo, args.issue
                ))
                .with_hint("`crew status --all` lists the issues crew knows about"));
            }
        },
    };
    let view = view(&issue);
    if ctx.settings.json {
        ctx.printer.json(&view)
    } else {
        ctx.printer.out(|w| render(w, &issue, &view))
    }
}

/// The view, pure.
pub fn view(issue: &ObservedIssue) -> ShowView {
    let lease = issue.lease.as_ref().and_then(|lease| {
        let status = lease.status?;
        let parsed = lease.observed.lease.as_ref().ok()?;
        Some(ShowLease {
            state: status.as_str(),
            expires_at: timestamp(parsed.expires_at),
            attempt: parsed.attempt,
            worker: parsed.worker.clone(),
            host: parsed.host.clone(),
            renewed_at: timestamp(parsed.renewed_at),
        })
    });
    ShowView {
        issue: issue.number,
        state: issue.state.state.as_str(),
        attempt: issue.state.attempt,
        lease,
        events: issue
            .state
            .events
            .iter()
            .map(|applied| EventLine {
                kind: applied.event.kind().as_str(),
                attempt: applied.event.attempt,
                author: applied.author.clone(),
                at: timestamp(applied.event.at),
                comment_id: applied.comment_id,
            })
            .collect(),
        ignored: issue
            .state
            .ignored
            .iter()
            .map(|ignored| IgnoredLine {
                comment_id: ignored.comment_id,
                author: ignored.author.clone(),
                reason: ignored.reason.code(),
                message: ignored.reason.to_string(),
            })
            .collect(),
    }
}

fn render(w: &mut dyn Write, issue: &ObservedIssue, view: &ShowView) -> std::io::Result<()> {
    writeln!(
        w,
        "#{} {}{}",
        view.issue,
        sanitize_line(&issue.title, 72),
        if issue.open { "" } else { " (closed)" }
    )?;
    let attempt = view
        .attempt
        .map_or(String::new(), |attempt| format!(", attempt {attempt}"));
    writeln!(w, "state: {}{attempt}", view.state)?;
    if let Some(question) = &issue.state.question {
        writeln!(w, "question: {}", sanitize_line(question, 200))?;
    }
    match (&view.lease, &issue.lease) {
        (Some(lease), _) => writeln!(
            w,
            "lease: {} (attempt {}, worker {}, host {}, expires {})",
            lease.state,
            lease.attempt,
            sanitize_line(&lease.worker, 60),
            sanitize_line(&lease.host, 40),
            lease.expires_at
        )?,
        (None, Some(unreadable)) => match &unreadable.observed.lease {
            Err(error) => writeln!(w, "lease: unreadable ({error})")?,
            Ok(_) => writeln!(w, "lease: -")?,
        },
        (None, None) => writeln!(w, "lease: none")?,
    }
    writeln!(w, "events:")?;
    if view.events.is_empty() {
        writeln!(w, "  (none)")?;
    }
    for event in &view.events {
        writeln!(
            w,
            "  {}  {:<17} attempt {}  by {}  (comment {})",
            event.at,
            event.kind,
            event.attempt,
            sanitize_line(&event.author, 40),
            event.comment_id
        )?;
    }
    if !view.ignored.is_empty() {
        writeln!(w, "ignored:")?;
        for ignored in &view.ignored {
            writeln!(
                w,
                "  comment {} by {}: {} ({})",
                ignored.comment_id,
                sanitize_line(&ignored.author, 40),
                ignored.reason,
                sanitize_line(&ignored.message, 160)
            )?;
        }
    }
    Ok(())
}
