//! `crew status`: one line per issue crew knows about, from a fresh (incremental) sync.
//!
//! The `--json` view (DESIGN.md 4) holds nothing relative to the moment it is printed (no ages,
//! no "time left"), and is sorted by issue, so the same GitHub state always prints the same bytes,
//! whether the cache was warm or just deleted. Ages are for the human table only.
//!
//! `--watch` (and `crew watch`) keeps showing it: a dashboard ([`crate::dashboard`]) when stdout
//! is a terminal, else (a pipe, a file, or `--json`) the same table or JSON printed once per
//! `--interval`, each from a warm observation, so a script or `watch`-less log sees every
//! refresh. JSON is then one object per line, as `crew loop --json` prints its cycles.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use clap::Args;
use serde::Serialize;

use crate::context::Ctx;
use crate::error::{CrewError, ErrorKind};
use crate::observe::{
    ObserveOptions, Observed, ObservedIssue, observe, sanitize_line, short_duration, timestamp,
};
use crate::settings::parse_duration;

/// The shortest `--interval` honoured: a watch must not spin.
const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// Show where every issue crew knows about stands
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Include closed issues
    #[arg(long)]
    pub all: bool,

    /// Keep watching: a live dashboard in a terminal, else the table again every interval
    #[arg(long)]
    pub watch: bool,

    /// Time between refreshes with --watch
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration, requires = "watch")]
    pub interval: Duration,
}

/// Watch the workers: a live dashboard in a terminal (`crew status --watch`)
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Time between refreshes
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub interval: Duration,

    /// Include closed issues in the plain table (when stdout is not a terminal)
    #[arg(long)]
    pub all: bool,
}

/// `crew status --json`.
#[derive(Debug, Serialize)]
pub struct StatusView {
    pub repo: String,
    pub slots: Slots,
    pub issues: Vec<IssueLine>,
}

#[derive(Debug, Serialize)]
pub struct Slots {
    pub max: u32,
    pub used: usize,
}

#[derive(Debug, Serialize)]
pub struct IssueLine {
    pub issue: u64,
    pub title: String,
    pub state: &'static str,
    pub attempt: Option<u64>,
    pub worker: Option<String>,
    pub host: Option<String>,
    pub lease: Option<LeaseLine>,
    pub pr: Option<u64>,
    pub last_event_at: Option<String>,
}

/// A lease as `status` shows it: `live`, `expired` or `released`, and when it expires.
#[derive(Debug, Serialize)]
pub struct LeaseLine {
    pub state: &'static str,
    pub expires_at: String,
}

impl LeaseLine {
    /// `None` when there is no lease or the ref holds nothing readable.
    pub fn of(issue: &ObservedIssue) -> Option<LeaseLine> {
        let lease = issue.lease.as_ref()?;
        let status = lease.status?;
        let parsed = lease.observed.lease.as_ref().ok()?;
        Some(LeaseLine {
            state: status.as_str(),
            expires_at: timestamp(parsed.expires_at),
        })
    }
}

pub async fn run(ctx: &Ctx, args: &StatusArgs) -> Result<(), CrewError> {
    if args.watch {
        return watch_with(ctx, args.interval, args.all).await;
    }
    once(ctx, args.all, false).await
}

/// `crew watch`: `crew status --watch`.
pub async fn watch(ctx: &Ctx, args: &WatchArgs) -> Result<(), CrewError> {
    watch_with(ctx, args.interval, args.all).await
}

async fn watch_with(ctx: &Ctx, interval: Duration, all: bool) -> Result<(), CrewError> {
    let interval = interval.max(MIN_INTERVAL);
    if !ctx.settings.json && std::io::stdout().is_terminal() && std::io::stdin().is_terminal() {
        return crate::dashboard::app::run(ctx, interval).await;
    }
    // Not a terminal: the one-shot output again and again, until interrupted. A refresh that
    // fails because of GitHub (unreachable, rate-limited) is reported and the next one tries
    // again; any other failure (no repository, a bad setting) would only repeat, so it ends the
    // watch.
    let mut first = true;
    loop {
        if !first && !ctx.settings.json {
            ctx.printer.out(|w| writeln!(w))?;
        }
        first = false;
        match once(ctx, all, true).await {
            Ok(()) => {}
            Err(error) if error.kind() == ErrorKind::Remote => ctx.printer.error(&error),
            Err(error) => return Err(error),
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            interrupted = tokio::signal::ctrl_c() => {
                return interrupted.map_err(CrewError::internal);
            }
        }
    }
}

/// One `crew status` (`watching`: JSON on one line, one refresh among many).
async fn once(ctx: &Ctx, all: bool, watching: bool) -> Result<(), CrewError> {
    // Workers on this host whose supervisor died are handed over first, so what is read below
    // already shows it. Free when every supervisor is alive; a failure is only a warning.
    match crate::reconcile::reconcile_local(ctx).await {
        Ok(report) => crate::reconcile::print_report(&ctx.printer, &report),
        Err(error) => ctx.printer.warn(format_args!(
            "could not reconcile this host's workers: {error}"
        )),
    }
    let observed = observe(ctx, ObserveOptions::default()).await?;
    warn_unreadable_leases(ctx, &observed);
    let view = view(&observed, ctx.settings.config.workers.max, all);
    if ctx.settings.json && watching {
        let line = serde_json::to_string(&view).map_err(CrewError::internal)?;
        ctx.printer.out_line(line)
    } else if ctx.settings.json {
        ctx.printer.json(&view)
    } else {
        ctx.printer.out(|w| render(w, &view, &observed))
    }
}

/// The view, pure: `max_slots` is `workers.max`; `all` includes closed issues.
pub fn view(observed: &Observed, max_slots: u32, all: bool) -> StatusView {
    StatusView {
        repo: observed.repo.to_string(),
        slots: Slots {
            max: max_slots,
            used: observed.live_leases(),
        },
        issues: observed
            .issues
            .iter()
            .filter(|issue| all || issue.open)
            .map(|issue| IssueLine {
                issue: issue.number,
                title: issue.title.clone(),
                state: issue.state.state.as_str(),
                attempt: issue.state.attempt,
                worker: issue.state.worker.clone(),
                host: issue.host(),
                lease: LeaseLine::of(issue),
                pr: issue.state.pr,
                last_event_at: issue.state.last_event_at.map(timestamp),
            })
            .collect(),
    }
}

fn warn_unreadable_leases(ctx: &Ctx, observed: &Observed) {
    for lease in &observed.leases {
        if let Err(error) = &lease.lease {
            ctx.printer
                .warn(format!("lease {} is unreadable: {error}", lease.ref_name));
        }
    }
}

/// The human table: ages relative to the observation's instant.
fn render(w: &mut dyn Write, view: &StatusView, observed: &Observed) -> std::io::Result<()> {
    writeln!(
        w,
        "{}: {}/{} slots in use",
        view.repo, view.slots.used, view.slots.max
    )?;
    if view.issues.is_empty() {
        return writeln!(w, "no issues with crew events");
    }
    writeln!(
        w,
        "{:<6} {:<32} {:<11} {:>3} {:<26} {:<12} {:<14} {:<6} LAST",
        "ISSUE", "TITLE", "STATE", "ATT", "WORKER", "HOST", "LEASE", "PR"
    )?;
    for line in &view.issues {
        let lease = match &line.lease {
            None => "-".to_string(),
            Some(lease) => {
                let left = chrono::DateTime::parse_from_rfc3339(&lease.expires_at)
                    .map(|at| (at.to_utc() - observed.now).num_seconds())
                    .unwrap_or(0);
                match lease.state {
                    "live" => format!("live {} left", short_duration(left)),
                    "expired" => format!("expired {} ago", short_duration(-left)),
                    other => other.to_string(),
                }
            }
        };
        let last = match &line.last_event_at {
            None => "-".to_string(),
            Some(at) => chrono::DateTime::parse_from_rfc3339(at)
                .map(|at| {
                    format!(
                        "{} ago",
                        short_duration((observed.now - at.to_utc()).num_seconds())
                    )
                })
                .unwrap_or_else(|_| at.clone()),
        };
        writeln!(
            w,
            "{:<6} {:<32} {:<11} {:>3} {:<26} {:<12} {:<14} {:<6} {}",
            format!("#{}", line.issue),
            sanitize_line(&line.title, 32),
            line.state,
            line.attempt.map_or("-".to_string(), |a| a.to_string()),
            sanitize_line(line.worker.as_deref().unwrap_or("-"), 26),
            sanitize_line(line.host.as_deref().unwrap_or("-"), 12),
            lease,
            line.pr.map_or("-".to_string(), |pr| format!("#{pr}")),
            last,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};

    use super::*;
    use crate::github::ObservedLease;
    use crate::observe::IssueLease;
    use crate::protocol::lease::{LEASE_VERSION, Lease, LeaseState};
    use crate::protocol::{Assignment, Event, EventBody, FoldPolicy, ObservedEvent, fold, render};
    use crate::sync::SyncReport;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
    }

    fn issue(number: u64, open: bool, lease: Option<(LeaseState, &str)>) -> ObservedIssue {
        let event = Event {
            issue: number,
            attempt: 1,
            worker: format!("worker-1-{number}"),
            op: format!("op-{number}"),
            at: at("2026-11-21T09:00:00Z"),
            body: EventBody::Assigned(Assignment {
                host: Some("box".to_string()),
                ..Assignment::default()
            }),
        };
        let comment = ObservedEvent::from_comment(number * 10, "crew-bot", "NONE", &render(&event));
        let lease = lease.map(|(state, expires_at)| {
            let observed = ObservedLease {
                issue: number,
                ref_name: format!("refs/crew/leases/{number}"),
                sha: "abc".to_string(),
                lease: Ok(Lease {
                    v: LEASE_VERSION,
                    issue: number,
                    attempt: 1,
                    worker: format!("worker-1-{number}"),
                    host: "laptop".to_string(),
                    runtime: "local".to_string(),
                    acquired_at: at("2026-11-21T09:00:00Z"),
                    renewed_at: at("2026-11-21T09:00:00Z"),
                    expires_at: at(expires_at),
                    state,
                }),
            };
            IssueLease {
                status: observed.status(at("2026-11-21T10:00:00Z")),
                observed,
            }
        });
        ObservedIssue {
            number,
            title: format!("Issue {number}"),
            open,
            state: fold(number, [comment], None, &FoldPolicy::new("crew-bot")),
            lease,
            newest_comment_id: Some(number * 10),
        }
    }

    fn observed() -> Observed {
        let issues = vec![
            issue(1, true, Some((LeaseState::Held, "2026-11-21T10:30:00Z"))),
            issue(2, false, None),
            issue(3, true, Some((LeaseState::Held, "2026-11-21T09:30:00Z"))),
        ];
        Observed {
            repo: "acme/widgets".parse().unwrap_or_else(|_| unreachable!()),
            now: at("2026-11-21T10:00:00Z"),
            sync: SyncReport::default(),
            leases: issues
                .iter()
                .filter_map(|issue| issue.lease.as_ref().map(|lease| lease.observed.clone()))
                .collect(),
            issues,
        }
    }

    #[test]
    fn json_view_has_the_design_fields_and_nothing_relative_to_now() {
        let view = view(&observed(), 5, false);
        let json = serde_json::to_value(&view).unwrap_or_default();
        assert_eq!(json["slots"], serde_json::json!({"max": 5, "used": 1}));
        let numbers: Vec<u64> = view.issues.iter().map(|line| line.issue).collect();
        assert_eq!(numbers, [1, 3], "closed issue hidden without --all");
        assert_eq!(
            json["issues"][0],
            serde_json::json!({
                "issue": 1, "title": "Issue 1", "state": "assigned", "attempt": 1,
                "worker": "worker-1-1", "host": "laptop",
                "lease": {"state": "live", "expires_at": "2026-11-21T10:30:00Z"},
                "pr": null, "last_event_at": "2026-11-21T09:00:00Z",
            })
        );
        assert_eq!(json["issues"][1]["lease"]["state"], "expired");
    }

    #[test]
    fn all_includes_closed_issues_and_the_assignment_host_stands_in_for_a_lease() {
        let view = view(&observed(), 5, true);
        let numbers: Vec<u64> = view.issues.iter().map(|line| line.issue).collect();
        assert_eq!(numbers, [1, 2, 3]);
        assert_eq!(view.issues[1].host.as_deref(), Some("box"));
        assert!(view.issues[1].lease.is_none());
    }
}
