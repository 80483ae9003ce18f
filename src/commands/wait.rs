//! `crew wait`: block until a matching event appears, for scripts and the scheduled workflow.
//!
//! It remembers the newest event comment it sees when it starts, then syncs every `--interval`
//! and returns the first trusted event of a wanted kind (on the wanted issue) whose comment is
//! newer. Every poll is conditional requests, so an idle poll is three 304s that cost no rate
//! points. Only events the fold applied count: a spoofed or stale marker never wakes a waiter.

use std::time::Duration;

use clap::Args;
use serde::Serialize;
use tokio::time::Instant;

use crate::context::Ctx;
use crate::error::{CrewError, ErrorKind};
use crate::observe::{ObserveOptions, Observed, observe, timestamp};
use crate::protocol::{Event, EventKind};
use crate::settings::parse_duration;

/// Wait until a matching crew event appears, then print it as JSON
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  crew wait --issue 42 --for in_review,failed --timeout 30m
      Wait until #42 has a pull request, or failed; print the event as JSON
  crew wait --for blocked
      Print the next question any worker asks")]
pub struct WaitArgs {
    /// Event kinds to wait for, comma-separated [default: any]
    #[arg(long = "for", value_name = "KINDS", value_delimiter = ',', value_parser = parse_kind)]
    pub kinds: Vec<EventKind>,

    /// Only events on this issue
    #[arg(long, value_name = "N")]
    pub issue: Option<u64>,

    /// Give up after this long (exit 124)
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_wait)]
    pub timeout: Duration,

    /// Time between polls
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_wait)]
    pub interval: Duration,
}

fn parse_kind(text: &str) -> Result<EventKind, String> {
    text.trim().parse().map_err(|error| {
        let known: Vec<&str> = EventKind::ALL.iter().map(|kind| kind.as_str()).collect();
        format!("{error} (known: {})", known.join(", "))
    })
}

/// A duration (`90s`, `2m`), or a bare number of seconds.
fn parse_wait(text: &str) -> Result<Duration, String> {
    match text.trim().parse::<u64>() {
        Ok(seconds) => Ok(Duration::from_secs(seconds)),
        Err(_) => parse_duration(text),
    }
}

/// What `crew wait` prints.
#[derive(Debug, Serialize)]
pub struct WaitedEvent {
    pub issue: u64,
    pub comment_id: u64,
    pub kind: &'static str,
    pub attempt: u64,
    pub worker: String,
    pub author: String,
    pub at: String,
    /// The whole event, as its marker carries it.
    pub event: Event,
}

/// Timed out waiting (exit 124, like `timeout(1)`).
#[derive(Debug, thiserror::Error)]
#[error("no matching event within {0}")]
pub struct TimedOut(String);

impl crate::error::Classify for TimedOut {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Timeout
    }
}

pub async fn run(ctx: &Ctx, args: &WaitArgs) -> Result<(), CrewError> {
    let deadline = Instant::now() + args.timeout;
    let start = observe(ctx, ObserveOptions::default()).await?;
    let baseline = start.newest_comment_id().unwrap_or(0);
    ctx.printer.verbose(format!(
        "waiting for {} after comment {baseline}",
        describe(args)
    ));
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Err(TimedOut(describe(args)).into());
        }
        tokio::time::sleep(args.interval.min(deadline - now)).await;
        let observed = observe(ctx, ObserveOptions::default()).await?;
        if let Some(found) = find(&observed, baseline, args) {
            return ctx.printer.json(&found);
        }
    }
}

fn describe(args: &WaitArgs) -> String {
    let kinds = if args.kinds.is_empty() {
        "any event".to_string()
    } else {
        args.kinds
            .iter()
            .map(|kind| kind.as_str())
            .collect::<Vec<_>>()
            .join("|")
    };
    match args.issue {
        Some(issue) => format!("{kinds} on #{issue}"),
        None => kinds,
    }
}

/// The oldest applied event newer than `baseline` that matches, pure.
pub fn find(observed: &Observed, baseline: u64, args: &WaitArgs) -> Option<WaitedEvent> {
    observed
        .issues
        .iter()
        .filter(|issue| args.issue.is_none_or(|wanted| wanted == issue.number))
        .flat_map(|issue| issue.state.events.iter().map(move |e| (issue.number, e)))
        .filter(|(_, applied)| applied.comment_id > baseline)
        .filter(|(_, applied)| args.kinds.is_empty() || args.kinds.contains(&applied.event.kind()))
        .min_by_key(|(_, applied)| applied.comment_id)
        .map(|(issue, applied)| WaitedEvent {
            issue,
            comment_id: applied.comment_id,
            kind: applied.event.kind().as_str(),
            attempt: applied.event.attempt,
            worker: applied.event.worker.clone(),
            author: applied.author.clone(),
            at: timestamp(applied.event.at),
            event: applied.event.clone(),
        })
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};

    use super::*;
    use crate::observe::ObservedIssue;
    use crate::protocol::{Assignment, EventBody, FoldPolicy, ObservedEvent, fold, render};
    use crate::sync::SyncReport;

    fn comment(id: u64, issue: u64, author: &str, body: EventBody) -> ObservedEvent {
        let event = Event {
            issue,
            attempt: 1,
            worker: format!("worker-1-{issue}"),
            op: format!("op-{id}"),
            at: DateTime::<Utc>::UNIX_EPOCH,
            body,
        };
        ObservedEvent::from_comment(id, author, "NONE", &render(&event))
    }

    fn working(issue: u64, first_id: u64) -> Vec<ObservedEvent> {
        vec![
            comment(
                first_id,
                issue,
                "crew-bot",
                EventBody::Assigned(Assignment::default()),
            ),
            comment(first_id + 1, issue, "crew-bot", EventBody::Started {}),
        ]
    }

    fn blocked(id: u64, issue: u64, author: &str) -> ObservedEvent {
        comment(
            id,
            issue,
            author,
            EventBody::Blocked {
                question: "?".to_string(),
            },
        )
    }

    fn observed(comments: Vec<(u64, Vec<ObservedEvent>)>) -> Observed {
        let policy = FoldPolicy::new("crew-bot");
        Observed {
            repo: "acme/widgets".parse().unwrap_or_else(|_| unreachable!()),
            now: DateTime::<Utc>::UNIX_EPOCH,
            sync: SyncReport::default(),
            leases: Vec::new(),
            issues: comments
                .into_iter()
                .map(|(number, events)| ObservedIssue {
                    number,
                    title: String::new(),
                    open: true,
                    newest_comment_id: events.iter().map(|event| event.comment_id).max(),
                    state: fold(number, events, None, &policy),
                    lease: None,
                })
                .collect(),
        }
    }

    fn args(kinds: &[EventKind], issue: Option<u64>) -> WaitArgs {
        WaitArgs {
            kinds: kinds.to_vec(),
            issue,
            timeout: Duration::from_secs(1),
            interval: Duration::from_secs(1),
        }
    }

    #[test]
    fn only_new_trusted_matching_events_wake_a_waiter() {
        let mut seven = working(7, 10);
        seven.push(blocked(20, 7, "outsider"));
        let mut eight = working(8, 12);
        eight.push(blocked(21, 8, "crew-bot"));
        let observed = observed(vec![(7, seven.clone()), (8, eight)]);
        let blocked_kind = [EventKind::Blocked];
        // The outsider's blocked on #7 does not count; #8's does, but is not the wanted issue.
        assert!(find(&observed, 11, &args(&blocked_kind, Some(7))).is_none());
        let any_issue = find(&observed, 11, &args(&blocked_kind, None));
        assert_eq!(
            any_issue.map(|found| (found.issue, found.comment_id)),
            Some((8, 21))
        );
        // Events at or before the baseline are old news.
        assert!(find(&observed, 21, &args(&[], None)).is_none());
        // Any kind: the oldest newer event wins.
        let any = find(&observed, 10, &args(&[], None));
        assert_eq!(
            any.map(|found| (found.kind, found.comment_id)),
            Some(("started", 11))
        );

        seven.push(blocked(22, 7, "crew-bot"));
        let observed = super::tests::observed(vec![(7, seven)]);
        let found = find(&observed, 21, &args(&blocked_kind, Some(7)));
        assert_eq!(found.map(|found| found.comment_id), Some(22));
    }

    #[test]
    fn durations_and_kinds_parse() {
        assert_eq!(parse_wait("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_wait("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_wait("soon").is_err());
        assert_eq!(parse_kind("blocked"), Ok(EventKind::Blocked));
        assert!(parse_kind("blockd").is_err_and(|error| error.contains("known:")));
    }
}
