//! The scheduler: which issues to start, which dead attempts to recover, and why everything else
//! waits. **Pure: no I/O, no clock, no async** (CONVENTIONS 8).
//!
//! The caller reads a [`World`] (issues with their folded state, every lease ref, the rate limit,
//! and the time, passed in) and [`plan`] answers with a [`Plan`]: the worker slots, the
//! [`Action`]s to perform in order, and every open issue left [`Waiting`] with its first
//! [`NotReady`] reason. `crew ready` prints the plan, `crew fill` performs it once and `crew loop`
//! repeatedly; `--dry-run` is printing instead of performing.
//!
//! Decisions, and why:
//! - **Slots come from live leases of every host** (DESIGN.md 2.2): `used` counts held,
//!   unexpired leases, `used_here` those whose host is [`World::host`], and
//!   `free = min(max - used, max_per_host - used_here)`. A lease crew cannot read (garbage, or a
//!   newer format) counts as used, never as free: guessing it free could run one worker too many.
//!   Its host is unknown, so it counts only against `max`. A plan never dispatches more than `free`.
//! - **The first reason wins, in this order**: a newer format (a lease or a marker newer than this
//!   build), an unreadable lease, a finished or human-held state (completed, cancelled,
//!   needs_human), a live lease, a state waiting for someone (in_review, approved, blocked), an
//!   active attempt without any lease, then labels, dependencies, sub-issues, attempts, and last
//!   the rate-limit reserve and the slots. So `crew ready -v` names the thing to fix first.
//! - **Continuations** (`handover`; `working` whose lease was released and whose last event is
//!   `answered` or `changes_requested`; `failed`; a recovered attempt) **ignore the pickup labels**
//!   (the issue was picked already; removing a label must not strand half-done work) **but respect
//!   the exclude labels**, so adding an excluded label (`hold`) is how a maintainer stops crew from
//!   continuing an issue. They also respect dependencies and sub-issues.
//! - **A released lease while the fold still says `assigned`/`working`** means the attempt ended
//!   without an event saying how (a crash between releasing and posting): it is continued like a
//!   handover, unless the last event is `answered` or `changes_requested`, which name their reason.
//! - **Recovering**: an `assigned`/`working` issue whose lease is held but expired had a holder
//!   that stopped renewing (its host vanished). The plan says [`Action::Recover`] (hand the attempt
//!   over) and then, when a slot is free and nothing else stops it, a `Dispatch` with reason
//!   [`DispatchReason::Recovered`]. Recover is planned whatever the labels, dependencies or slots
//!   (it settles a dead attempt, it starts no work), but only for open issues. A **`blocked`**
//!   issue with an expired lease is not recovered: a handover would erase its open question, and
//!   no worker is needed until someone answers; once answered it is `working` with an expired lease
//!   and is recovered then. `handover` and `failed` need no Recover: the attempt ended, and an
//!   expired lease can simply be acquired again.
//! - **An active attempt with no lease at all** (a worker-dispatch skill assignment, a lease ref
//!   deleted by hand) waits with [`NotReady::NoLease`]: crew cannot tell whether that worker is
//!   alive, and `crew retry` / `crew cancel` settle it.
//! - **Attempts**: `max_attempts` counts announced attempts ([`IssueState::attempts`], as the
//!   fold does), not the fencing token, which skips numbers; an issue that used them all waits
//!   ([`NotReady::AttemptsUsed`]). The `attempt` of a Dispatch is the token it expects to take:
//!   one past the newest of the fold's and the lease's. `needs_human` is never dispatched: only
//!   `crew retry` goes past the limit.
//! - **A lease ahead of the comments** ([`IssueState::lease_ahead`]: acquired, never announced)
//!   that is no longer live never ran: the issue is judged by the state its comments give (a new
//!   issue stays new and needs its pickup labels), and there is nothing to recover.
//! - **Dependencies** ("Depends on #N", "Blocked by #N" in the body, GitHub's blocked-by and
//!   sub-issue relations) are met when the named issue is closed or its folded state is
//!   `completed`. An issue crew cannot see is not met ([`NotReady::UnknownDependency`]): a typo must
//!   not start work early. Only direct dependencies are checked, so a cycle simply waits, and a
//!   reference of an issue to itself is ignored.
//! - **The rate-limit reserve stops everything**, Recover included: recovering writes too, and the
//!   reserve exists so a maintainer's own calls and a worker's final `done` still have budget.
//! - **Order**: continuations first (work already invested), then new issues; within each, by
//!   priority label (the first of `priority_labels` is highest, unlabelled last), then oldest
//!   `created_at`, then issue number. Labels compare case-insensitively, as GitHub's do.
//! - **Deterministic**: the plan depends on the world's contents, not the order of its vectors.
//!   Actions are all Recovers (by issue number), then the Dispatches in queue order, so a Recover
//!   always precedes the Dispatch of its issue. `waiting` lists the ready issues left over
//!   ([`NotReady::NoSlot`], [`NotReady::RateReserve`]) in queue order, then the rest by number.
//!   Issue numbers are unique in a world; should one repeat, its first entry counts.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::ser::SerializeMap;

use crate::protocol::lease::{Lease, LeaseError, LeaseStatus};
use crate::protocol::{EventKind, IgnoreReason, IssueState, State, next_state};

#[cfg(test)]
mod tests;

/// Everything the planner looks at, read by the caller.
#[derive(Clone, Debug)]
pub struct World {
    pub now: DateTime<Utc>,
    /// This host's name (`settings.host`).
    pub host: String,
    /// Every issue crew may consider: open issues (pull requests excluded), plus closed ones so
    /// dependencies on them can be judged.
    pub issues: Vec<WorldIssue>,
    /// Every lease ref under the prefix.
    pub leases: Vec<WorldLease>,
    /// GitHub's remaining core rate-limit points, when known.
    pub rate_remaining: Option<u64>,
}

/// One issue as the planner sees it.
#[derive(Clone, Debug)]
pub struct WorldIssue {
    pub number: u64,
    pub title: String,
    pub open: bool,
    pub labels: Vec<String>,
    pub body: String,
    pub created_at: DateTime<Utc>,
    /// The folded state ([`crate::protocol::Fold::view`]): state, attempt, worker, question, pr,
    /// events, ignored.
    pub state: IssueState,
    /// Open sub-issues (GitHub's sub-issue relation), when known; an issue waits for them.
    pub open_sub_issues: Vec<u64>,
    /// Issues this one is tracked by / blocked by per GitHub's own relations, when known.
    pub blocked_by: Vec<u64>,
}

/// One lease ref.
#[derive(Clone, Debug)]
pub struct WorldLease {
    pub issue: u64,
    /// The lease, or why crew cannot read it.
    pub lease: Result<Lease, LeaseError>,
}

/// The limits a plan respects, from `crew.toml`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Workers at once across all hosts.
    pub max: u32,
    /// Workers at once on this host.
    pub max_per_host: u32,
    /// Attempts per issue before it needs a human.
    pub max_attempts: u32,
    /// Below this many rate-limit points nothing starts.
    pub rate_limit_reserve: u64,
    /// A new issue needs all of these (empty: any issue).
    pub pickup_labels: Vec<String>,
    /// An issue with any of these is left alone.
    pub exclude_labels: Vec<String>,
    /// Highest priority first.
    pub priority_labels: Vec<String>,
}

impl Limits {
    /// `workers.max`, `workers.max_per_host`, `workers.max_attempts`,
    /// `github.rate_limit_reserve` and `[pickup]`.
    pub fn from_config(config: &crate::settings::Config) -> Limits {
        Limits {
            max: config.workers.max,
            max_per_host: config.workers.max_per_host,
            max_attempts: config.workers.max_attempts,
            rate_limit_reserve: u64::from(config.github.rate_limit_reserve),
            pickup_labels: config.pickup.labels.clone(),
            exclude_labels: config.pickup.exclude_labels.clone(),
            priority_labels: config.pickup.priority_labels.clone(),
        }
    }
}

/// What to do now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub slots: Slots,
    /// In the order to perform them: every Recover, then the Dispatches in queue order.
    pub actions: Vec<Action>,
    /// Every open issue not dispatched, with its first reason.
    pub waiting: Vec<Waiting>,
    /// Why nothing may start at all (the rate-limit reserve), when that is so.
    pub stopped: Option<String>,
}

impl Plan {
    /// The issues this plan dispatches, in order.
    pub fn dispatched(&self) -> Vec<u64> {
        self.actions
            .iter()
            .filter_map(|action| match action {
                Action::Dispatch { issue, .. } => Some(*issue),
                Action::Recover { .. } => None,
            })
            .collect()
    }
}

/// Worker slots, counted from live leases.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Slots {
    pub max: u32,
    /// Live (and unreadable) leases of every host.
    pub used: u32,
    pub max_per_host: u32,
    /// Live leases of this host.
    pub used_here: u32,
    /// How many workers this host may start now.
    pub free: u32,
}

/// One thing to do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Start the next attempt of `issue` on this host.
    Dispatch {
        issue: u64,
        title: String,
        /// The attempt it will be (one past the newest known).
        attempt: u64,
        reason: DispatchReason,
    },
    /// A lease whose holder stopped renewing (its host vanished): hand the attempt over ("host X
    /// stopped renewing"); a `Dispatch` of the same issue follows in the same plan when a slot
    /// is free and nothing else holds it back.
    Recover {
        issue: u64,
        worker: String,
        host: String,
        attempt: u32,
        expired_at: DateTime<Utc>,
    },
}

impl Action {
    /// The issue the action is about.
    pub fn issue(&self) -> u64 {
        match self {
            Action::Dispatch { issue, .. } | Action::Recover { issue, .. } => *issue,
        }
    }
}

/// Why an issue is dispatched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DispatchReason {
    /// Picked up for the first time.
    New,
    /// The previous attempt handed over (or ended without saying how).
    ContinueHandover,
    /// A question was answered after the blocked attempt ended.
    ContinueAnswered,
    /// A reviewer requested changes after the attempt ended.
    ChangesRequested,
    /// The previous attempt failed and attempts remain.
    RetryFailed,
    /// The previous attempt's holder stopped renewing its lease (see [`Action::Recover`]).
    Recovered,
}

impl DispatchReason {
    /// The snake_case code used in `--json`.
    pub fn as_str(self) -> &'static str {
        match self {
            DispatchReason::New => "new",
            DispatchReason::ContinueHandover => "continue_handover",
            DispatchReason::ContinueAnswered => "continue_answered",
            DispatchReason::ChangesRequested => "changes_requested",
            DispatchReason::RetryFailed => "retry_failed",
            DispatchReason::Recovered => "recovered",
        }
    }
}

impl fmt::Display for DispatchReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DispatchReason::New => "new",
            DispatchReason::ContinueHandover => "continues after a handover",
            DispatchReason::ContinueAnswered => "continues with the answer to its question",
            DispatchReason::ChangesRequested => "continues with the requested changes",
            DispatchReason::RetryFailed => "retries after a failed attempt",
            DispatchReason::Recovered => "continues after its worker's host stopped renewing",
        })
    }
}

/// An open issue the plan does not dispatch, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Waiting {
    pub issue: u64,
    pub title: String,
    /// Serialised as `{"kind", "message", ...the reason's fields}`.
    pub reason: NotReady,
}

/// Why an open issue is not dispatched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotReady {
    /// The issue is closed (never listed in [`Plan::waiting`], which lists open issues).
    Closed,
    /// A new issue lacks these pickup labels.
    MissingLabel { labels: Vec<String> },
    /// The issue carries an excluded label.
    Excluded { label: String },
    /// A live lease: a worker holds the issue.
    Leased {
        worker: String,
        host: String,
        expires_at: DateTime<Utc>,
    },
    /// Dependencies still open (and not completed).
    DependsOn { issues: Vec<u64> },
    /// Dependencies crew cannot see: not met.
    UnknownDependency { issues: Vec<u64> },
    /// Sub-issues still open.
    OpenSubIssues { issues: Vec<u64> },
    /// A state nothing is dispatched from: in_review, approved, blocked, completed, cancelled,
    /// needs_human.
    State { state: State },
    /// The next attempt would pass `workers.max_attempts`.
    AttemptsUsed { attempts: u64, max: u32 },
    /// Version skew: a lease or marker newer than this build.
    NewerFormat { what: String },
    /// A lease ref crew cannot read (counted as held).
    UnreadableLease { error: String },
    /// An active attempt (`state`) with no lease ref at all: crew cannot tell whether its worker
    /// lives.
    NoLease { state: State },
    /// Ready, but no free slot.
    NoSlot,
    /// Ready, but GitHub's rate limit is below the reserve.
    RateReserve { remaining: u64, reserve: u64 },
}

impl NotReady {
    /// A stable snake_case code for `--json` (`kind`).
    pub fn code(&self) -> &'static str {
        match self {
            NotReady::Closed => "closed",
            NotReady::MissingLabel { .. } => "missing_label",
            NotReady::Excluded { .. } => "excluded",
            NotReady::Leased { .. } => "leased",
            NotReady::DependsOn { .. } => "depends_on",
            NotReady::UnknownDependency { .. } => "unknown_dependency",
            NotReady::OpenSubIssues { .. } => "open_sub_issues",
            NotReady::State { .. } => "state",
            NotReady::AttemptsUsed { .. } => "attempts_used",
            NotReady::NewerFormat { .. } => "newer_format",
            NotReady::UnreadableLease { .. } => "unreadable_lease",
            NotReady::NoLease { .. } => "no_lease",
            NotReady::NoSlot => "no_slot",
            NotReady::RateReserve { .. } => "rate_reserve",
        }
    }

    /// Ready to start, held back only by slots or the rate-limit reserve.
    pub fn is_ready(&self) -> bool {
        matches!(self, NotReady::NoSlot | NotReady::RateReserve { .. })
    }
}

/// `#1, #2`.
fn issue_list(issues: &[u64]) -> String {
    issues
        .iter()
        .map(|issue| format!("#{issue}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `` `a`, `b` ``.
fn label_list(labels: &[String]) -> String {
    labels
        .iter()
        .map(|label| format!("`{label}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for NotReady {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotReady::Closed => f.write_str("closed"),
            NotReady::MissingLabel { labels } => write!(
                f,
                "lacks the pickup label{} {} ([pickup] labels)",
                if labels.len() == 1 { "" } else { "s" },
                label_list(labels)
            ),
            NotReady::Excluded { label } => {
                write!(f, "has the excluded label `{label}` ([pickup] exclude_labels)")
            }
            NotReady::Leased {
                worker,
                host,
                expires_at,
            } => write!(
                f,
                "held by worker `{worker}` on host `{host}` (lease live until {})",
                expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
            NotReady::DependsOn { issues } => {
                write!(f, "depends on {}, not closed or completed yet", issue_list(issues))
            }
            NotReady::UnknownDependency { issues } => write!(
                f,
                "depends on {}, which crew cannot see (another repository, a pull request, or a \
                 typo), so it is not met",
                issue_list(issues)
            ),
            NotReady::OpenSubIssues { issues } => {
                write!(f, "has open sub-issues {}", issue_list(issues))
            }
            NotReady::State { state } => match state {
                State::Blocked => f.write_str(
                    "blocked: waiting for an answer to its question (`crew answer`)",
                ),
                State::InReview => f.write_str(
                    "in review: waiting for a maintainer (`crew approve` or `crew request-changes`)",
                ),
                State::Approved => f.write_str("approved: waiting to be merged (`crew merge`)"),
                State::NeedsHuman => f.write_str(
                    "needs a human: attempts are used up (`crew retry` starts another)",
                ),
                State::Completed => f.write_str("completed"),
                State::Cancelled => f.write_str("cancelled"),
                other => write!(f, "is `{other}`"),
            },
            NotReady::AttemptsUsed { attempts, max } => write!(
                f,
                "used {attempts} of {max} attempts (workers.max_attempts); `crew retry` allows \
                 another"
            ),
            NotReady::NewerFormat { what } => write!(
                f,
                "a newer crew wrote {what}; upgrade crew before it touches this issue"
            ),
            NotReady::UnreadableLease { error } => write!(
                f,
                "its lease cannot be read ({error}); crew counts it as held"
            ),
            NotReady::NoLease { state } => write!(
                f,
                "is `{state}` but has no lease, so crew cannot tell whether its worker lives \
                 (`crew retry` or `crew cancel` settles it)"
            ),
            NotReady::NoSlot => f.write_str("ready, but no worker slot is free"),
            NotReady::RateReserve { remaining, reserve } => write!(
                f,
                "ready, but GitHub's rate limit is down to {remaining} points, below the reserve \
                 of {reserve}"
            ),
        }
    }
}

impl Serialize for NotReady {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("kind", self.code())?;
        map.serialize_entry("message", &self.to_string())?;
        match self {
            NotReady::Closed | NotReady::NoSlot => {}
            NotReady::MissingLabel { labels } => map.serialize_entry("labels", labels)?,
            NotReady::Excluded { label } => map.serialize_entry("label", label)?,
            NotReady::Leased {
                worker,
                host,
                expires_at,
            } => {
                map.serialize_entry("worker", worker)?;
                map.serialize_entry("host", host)?;
                map.serialize_entry("expires_at", expires_at)?;
            }
            NotReady::DependsOn { issues }
            | NotReady::UnknownDependency { issues }
            | NotReady::OpenSubIssues { issues } => map.serialize_entry("issues", issues)?,
            NotReady::State { state } | NotReady::NoLease { state } => {
                map.serialize_entry("state", state)?
            }
            NotReady::AttemptsUsed { attempts, max } => {
                map.serialize_entry("attempts", attempts)?;
                map.serialize_entry("max", max)?;
            }
            NotReady::NewerFormat { what } => map.serialize_entry("what", what)?,
            NotReady::UnreadableLease { error } => map.serialize_entry("error", error)?,
            NotReady::RateReserve { remaining, reserve } => {
                map.serialize_entry("remaining", remaining)?;
                map.serialize_entry("reserve", reserve)?;
            }
        }
        map.end()
    }
}

// ---------------------------------------------------------------------------------------------
// Planning
// ---------------------------------------------------------------------------------------------

/// An issue's lease, as far as planning cares.
#[derive(Clone, Debug)]
enum LeaseView<'a> {
    Readable(&'a Lease),
    Newer(String),
    Unreadable(String),
}

/// One lease per issue, whatever the order (or duplicates) of `leases`: an unreadable entry wins
/// (never guess free), a newer format first; among readable ones the newest.
fn lease_index(leases: &[WorldLease]) -> BTreeMap<u64, LeaseView<'_>> {
    let mut index: BTreeMap<u64, LeaseView<'_>> = BTreeMap::new();
    for entry in leases {
        let view = match &entry.lease {
            Ok(lease) => LeaseView::Readable(lease),
            Err(error @ LeaseError::NewerVersion { .. }) => LeaseView::Newer(error.to_string()),
            Err(error) => LeaseView::Unreadable(error.to_string()),
        };
        let keep_new = match (index.get(&entry.issue), &view) {
            (None, _) => true,
            (Some(LeaseView::Newer(old)), LeaseView::Newer(new)) => new < old,
            (Some(LeaseView::Newer(_)), _) => false,
            (Some(_), LeaseView::Newer(_)) => true,
            (Some(LeaseView::Unreadable(old)), LeaseView::Unreadable(new)) => new < old,
            (Some(LeaseView::Unreadable(_)), LeaseView::Readable(_)) => false,
            (Some(LeaseView::Readable(_)), LeaseView::Unreadable(_)) => true,
            (Some(LeaseView::Readable(old)), LeaseView::Readable(new)) => {
                lease_key(new) > lease_key(old)
            }
        };
        if keep_new {
            index.insert(entry.issue, view);
        }
    }
    index
}

/// A total order on leases for picking one deterministically.
#[allow(clippy::type_complexity)]
fn lease_key(
    lease: &Lease,
) -> (
    u32,
    DateTime<Utc>,
    DateTime<Utc>,
    bool,
    &str,
    &str,
    &str,
    DateTime<Utc>,
    u64,
) {
    (
        lease.attempt,
        lease.expires_at,
        lease.renewed_at,
        lease.state == crate::protocol::lease::LeaseState::Held,
        &lease.worker,
        &lease.host,
        &lease.runtime,
        lease.acquired_at,
        lease.v,
    )
}

fn count_slots(leases: &BTreeMap<u64, LeaseView<'_>>, world: &World, limits: &Limits) -> Slots {
    let mut used: u32 = 0;
    let mut used_here: u32 = 0;
    for view in leases.values() {
        match view {
            LeaseView::Readable(lease) => {
                if lease.status(world.now) == LeaseStatus::Live {
                    used = used.saturating_add(1);
                    if lease.host == world.host {
                        used_here = used_here.saturating_add(1);
                    }
                }
            }
            LeaseView::Newer(_) | LeaseView::Unreadable(_) => used = used.saturating_add(1),
        }
    }
    let free = limits
        .max
        .saturating_sub(used)
        .min(limits.max_per_host.saturating_sub(used_here));
    Slots {
        max: limits.max,
        used,
        max_per_host: limits.max_per_host,
        used_here,
        free,
    }
}

/// What the planner concluded about one open issue.
struct Assessment {
    /// A dead attempt to hand over first.
    recover: Option<Action>,
    /// Ready to dispatch (reason, attempt), or why not.
    verdict: Result<(DispatchReason, u64), NotReady>,
}

/// Case-insensitive label match (GitHub label names are case-insensitive).
fn has_label(issue: &WorldIssue, label: &str) -> bool {
    issue
        .labels
        .iter()
        .any(|have| have.to_lowercase() == label.to_lowercase())
}

/// Index of the highest priority label the issue has; `priority_labels.len()` when none.
fn priority(issue: &WorldIssue, limits: &Limits) -> usize {
    limits
        .priority_labels
        .iter()
        .position(|label| has_label(issue, label))
        .unwrap_or(limits.priority_labels.len())
}

/// Whether `number` counts as done for the issues depending on it; `None` when crew cannot see it.
fn dependency_met(issues: &BTreeMap<u64, &WorldIssue>, number: u64) -> Option<bool> {
    issues
        .get(&number)
        .map(|issue| !issue.open || issue.state.state == State::Completed)
}

/// Open and unknown dependencies, then open sub-issues.
fn dependency_reason(issue: &WorldIssue, issues: &BTreeMap<u64, &WorldIssue>) -> Option<NotReady> {
    let wanted: BTreeSet<u64> = dependencies(&issue.body)
        .into_iter()
        .chain(issue.blocked_by.iter().copied())
        .filter(|number| *number != issue.number)
        .collect();
    let mut open = Vec::new();
    let mut unknown = Vec::new();
    for number in wanted {
        match dependency_met(issues, number) {
            Some(true) => {}
            Some(false) => open.push(number),
            None => unknown.push(number),
        }
    }
    if !open.is_empty() {
        return Some(NotReady::DependsOn { issues: open });
    }
    if !unknown.is_empty() {
        return Some(NotReady::UnknownDependency { issues: unknown });
    }
    // GitHub says these are open; one crew completed (merged, not closed yet) counts as done.
    let sub_issues: Vec<u64> = issue
        .open_sub_issues
        .iter()
        .copied()
        .filter(|number| *number != issue.number && dependency_met(issues, *number) != Some(true))
        .collect::<BTreeSet<u64>>()
        .into_iter()
        .collect();
    if !sub_issues.is_empty() {
        return Some(NotReady::OpenSubIssues { issues: sub_issues });
    }
    None
}

/// A marker newer than this build in the issue's history, as "what" for [`NotReady::NewerFormat`].
fn newer_marker(state: &IssueState) -> Option<String> {
    state
        .ignored
        .iter()
        .filter_map(|ignored| match ignored.reason {
            IgnoreReason::UnknownVersion { version } => Some((version, ignored.comment_id)),
            _ => None,
        })
        .max()
        .map(|(version, comment_id)| {
            format!("an event comment in marker format v{version} (comment {comment_id})")
        })
}

fn assess(
    issue: &WorldIssue,
    lease: Option<&LeaseView<'_>>,
    issues: &BTreeMap<u64, &WorldIssue>,
    world: &World,
    limits: &Limits,
) -> Assessment {
    let wait = |reason: NotReady| Assessment {
        recover: None,
        verdict: Err(reason),
    };
    if !issue.open {
        return wait(NotReady::Closed);
    }
    let state = &issue.state;
    let lease = match lease {
        Some(LeaseView::Newer(_)) => {
            return wait(NotReady::NewerFormat {
                what: format!("the lease of #{}", issue.number),
            });
        }
        Some(LeaseView::Unreadable(error)) => {
            return wait(NotReady::UnreadableLease {
                error: error.clone(),
            });
        }
        Some(LeaseView::Readable(lease)) => Some(*lease),
        None => None,
    };
    if let Some(what) = newer_marker(state) {
        return wait(NotReady::NewerFormat { what });
    }
    if matches!(
        state.state,
        State::Completed | State::Cancelled | State::NeedsHuman
    ) {
        return wait(NotReady::State { state: state.state });
    }
    let status = lease.map(|lease| lease.status(world.now));
    if let (Some(lease), Some(LeaseStatus::Live)) = (lease, status) {
        return wait(NotReady::Leased {
            worker: lease.worker.clone(),
            host: lease.host.clone(),
            expires_at: lease.expires_at,
        });
    }
    // No live lease from here on. A lease ahead of the comments that is not live was acquired
    // and never announced (a fill that lost a slot race let it go, or died before posting): that
    // attempt never ran, so the issue stands where its comments left it, as if released.
    let (comment_state, status) = match state.lease_ahead {
        Some(_) => (
            comment_state(state, limits.max_attempts),
            status.map(|_| LeaseStatus::Released),
        ),
        None => (state.state, status),
    };
    let last_kind = state.events.last().map(|applied| applied.event.kind());
    let mut recover = None;
    let reason = match (comment_state, status) {
        (State::InReview | State::Approved | State::Blocked, _) => {
            return wait(NotReady::State {
                state: comment_state,
            });
        }
        (State::Assigned | State::Working, None) => {
            return wait(NotReady::NoLease {
                state: comment_state,
            });
        }
        (State::Assigned | State::Working, Some(LeaseStatus::Expired)) => {
            if let Some(lease) = lease {
                recover = Some(Action::Recover {
                    issue: issue.number,
                    worker: lease.worker.clone(),
                    host: lease.host.clone(),
                    attempt: lease.attempt,
                    expired_at: lease.expires_at,
                });
            }
            DispatchReason::Recovered
        }
        (State::Assigned | State::Working, _) => match last_kind {
            Some(EventKind::Answered) => DispatchReason::ContinueAnswered,
            Some(EventKind::ChangesRequested) => DispatchReason::ChangesRequested,
            _ => DispatchReason::ContinueHandover,
        },
        (State::Handover, _) => DispatchReason::ContinueHandover,
        (State::Failed, _) => DispatchReason::RetryFailed,
        (State::Unassigned, _) => DispatchReason::New,
        // Finished or human-held (checked above for the view; here for the comments' own
        // state). Listed so a new state is a compile error here, not a silent dispatch.
        (State::Completed | State::Cancelled | State::NeedsHuman, _) => {
            return wait(NotReady::State {
                state: comment_state,
            });
        }
    };
    let verdict =
        ready_to_dispatch(issue, lease, reason, issues, limits).map(|attempt| (reason, attempt));
    Assessment { recover, verdict }
}

/// Labels, dependencies and attempts of an issue whose state allows `reason`: the attempt to
/// start, or why not.
fn ready_to_dispatch(
    issue: &WorldIssue,
    lease: Option<&Lease>,
    reason: DispatchReason,
    issues: &BTreeMap<u64, &WorldIssue>,
    limits: &Limits,
) -> Result<u64, NotReady> {
    if let Some(label) = limits
        .exclude_labels
        .iter()
        .find(|label| has_label(issue, label))
    {
        return Err(NotReady::Excluded {
            label: label.clone(),
        });
    }
    if reason == DispatchReason::New {
        let missing: Vec<String> = limits
            .pickup_labels
            .iter()
            .filter(|label| !has_label(issue, label))
            .cloned()
            .collect();
        if !missing.is_empty() {
            return Err(NotReady::MissingLabel { labels: missing });
        }
    }
    if let Some(reason) = dependency_reason(issue, issues) {
        return Err(reason);
    }
    // `max_attempts` counts announced attempts (`assigned` events), not the fencing token,
    // which skips numbers when a lease is taken and let go before its announcement.
    if issue.state.attempts >= u64::from(limits.max_attempts) {
        return Err(NotReady::AttemptsUsed {
            attempts: issue.state.attempts,
            max: limits.max_attempts,
        });
    }
    let newest = issue
        .state
        .attempt
        .unwrap_or(0)
        .max(lease.map_or(0, |lease| u64::from(lease.attempt)));
    Ok(newest.saturating_add(1))
}

/// The state an issue's comments alone give. [`crate::protocol::Fold::view`] replaces it with
/// `assigned` when the lease is ahead of every `assigned` comment ([`IssueState::lease_ahead`]);
/// this replays the applied events through the machine to get it back. The applied events were
/// legal when folded, so the replay follows the fold; its two rules beyond the table are
/// repeated here: a failure once `max_attempts` attempts were announced needs a human, and a
/// worker-dispatch skill `released` of an unfinished issue makes it unassigned again.
fn comment_state(state: &IssueState, max_attempts: u32) -> State {
    if state.lease_ahead.is_none() {
        return state.state;
    }
    let mut current = State::Unassigned;
    let mut announced: u64 = 0;
    for applied in &state.events {
        let kind = applied.event.kind();
        current = match kind {
            EventKind::Assigned => {
                announced += 1;
                State::Assigned
            }
            EventKind::Failed if announced >= u64::from(max_attempts) => State::NeedsHuman,
            EventKind::Released
                if applied.legacy && !matches!(current, State::Completed | State::Cancelled) =>
            {
                State::Unassigned
            }
            _ => next_state(current, kind).unwrap_or(current),
        };
    }
    current
}

/// Plans what to start now: see the module documentation for the rules.
pub fn plan(world: &World, limits: &Limits) -> Plan {
    let mut issues: BTreeMap<u64, &WorldIssue> = BTreeMap::new();
    for issue in &world.issues {
        issues.entry(issue.number).or_insert(issue);
    }
    let leases = lease_index(&world.leases);
    let slots = count_slots(&leases, world, limits);
    let stopped = world
        .rate_remaining
        .filter(|remaining| *remaining < limits.rate_limit_reserve)
        .map(|remaining| {
            format!(
                "GitHub's rate limit is down to {remaining} points, below the reserve of {} \
                 (github.rate_limit_reserve): starting nothing until it resets",
                limits.rate_limit_reserve
            )
        });

    let mut recovers = Vec::new();
    let mut ready = Vec::new();
    let mut waiting = Vec::new();
    for issue in issues.values().filter(|issue| issue.open) {
        let assessment = assess(issue, leases.get(&issue.number), &issues, world, limits);
        if let Some(recover) = assessment.recover
            && stopped.is_none()
        {
            recovers.push(recover);
        }
        match assessment.verdict {
            Ok((reason, attempt)) => ready.push((*issue, reason, attempt)),
            Err(reason) => waiting.push(Waiting {
                issue: issue.number,
                title: issue.title.clone(),
                reason,
            }),
        }
    }
    ready.sort_by_key(|(issue, reason, _)| {
        (
            *reason == DispatchReason::New,
            priority(issue, limits),
            issue.created_at,
            issue.number,
        )
    });

    let take = if stopped.is_some() {
        0
    } else {
        slots.free as usize
    };
    let mut actions = recovers;
    let mut left_over = Vec::new();
    for (position, (issue, reason, attempt)) in ready.into_iter().enumerate() {
        if position < take {
            actions.push(Action::Dispatch {
                issue: issue.number,
                title: issue.title.clone(),
                attempt,
                reason,
            });
        } else {
            left_over.push(Waiting {
                issue: issue.number,
                title: issue.title.clone(),
                reason: match world.rate_remaining {
                    Some(remaining) if stopped.is_some() => NotReady::RateReserve {
                        remaining,
                        reserve: limits.rate_limit_reserve,
                    },
                    _ => NotReady::NoSlot,
                },
            });
        }
    }
    left_over.extend(waiting);
    Plan {
        slots,
        actions,
        waiting: left_over,
        stopped,
    }
}

// ---------------------------------------------------------------------------------------------
// Dependencies in issue bodies
// ---------------------------------------------------------------------------------------------

/// The issues a body names with "Depends on #N" or "Blocked by #N", sorted, without repeats.
///
/// Case-insensitive; the keyword may be followed by a colon, and by a list of references
/// separated by commas, semicolons, `&`, "and", whitespace, newlines and list bullets
/// ("depends on: #1, #2", "blocked by #3 and #4", "Depends on:\n- #5\n- #6"). Only `#N`
/// references count: a URL or `owner/repo#N` may name another repository, which crew cannot
/// judge. Never panics, whatever the body.
pub fn dependencies(body: &str) -> Vec<u64> {
    const KEYWORDS: [(&[u8], &[u8]); 2] = [(b"depends", b"on"), (b"blocked", b"by")];
    let text = body.as_bytes();
    let mut found = BTreeSet::new();
    let mut position = 0;
    while position < text.len() {
        let at_word_start = position == 0 || !is_word_byte(text[position - 1]);
        let matched = at_word_start
            .then(|| {
                KEYWORDS.iter().find_map(|(first, second)| {
                    let after_first = match_word(text, position, first)?;
                    let gap = skip_spaces(text, after_first);
                    if gap == after_first {
                        return None;
                    }
                    match_word(text, gap, second)
                })
            })
            .flatten();
        match matched {
            Some(end) => position = read_references(text, end, &mut found),
            None => position += 1,
        }
    }
    found.into_iter().collect()
}

fn is_word_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_'
}

/// The end of `word` at `position` (ASCII case-insensitive), if it is a whole word there.
fn match_word(text: &[u8], position: usize, word: &[u8]) -> Option<usize> {
    let end = position.checked_add(word.len())?;
    let candidate = text.get(position..end)?;
    if !candidate.eq_ignore_ascii_case(word) {
        return None;
    }
    match text.get(end) {
        Some(byte) if is_word_byte(*byte) => None,
        _ => Some(end),
    }
}

/// Past spaces and tabs (not newlines).
fn skip_spaces(text: &[u8], mut position: usize) -> usize {
    while text
        .get(position)
        .is_some_and(|byte| *byte == b' ' || *byte == b'\t')
    {
        position += 1;
    }
    position
}

/// Reads the references after a keyword into `found`; returns where reading stopped.
fn read_references(text: &[u8], mut position: usize, found: &mut BTreeSet<u64>) -> usize {
    position = skip_spaces(text, position);
    if text.get(position) == Some(&b':') {
        position += 1;
    }
    loop {
        // Separators between references.
        let before = position;
        while let Some(byte) = text.get(position) {
            match byte {
                b' ' | b'\t' | b'\r' | b'\n' | b',' | b';' | b'&' | b'-' | b'*' | b'+' => {
                    position += 1
                }
                _ => break,
            }
        }
        if let Some(end) = match_word(text, position, b"and") {
            position = end;
            continue;
        }
        if text.get(position) != Some(&b'#') {
            return position.max(before);
        }
        let digits_start = position + 1;
        let mut digits_end = digits_start;
        while text.get(digits_end).is_some_and(u8::is_ascii_digit) {
            digits_end += 1;
        }
        if digits_end == digits_start || text.get(digits_end).is_some_and(|b| is_word_byte(*b)) {
            return digits_end;
        }
        // Digits are ASCII, so this slice is valid UTF-8; an overflowing number is no reference.
        if let Some(number) = std::str::from_utf8(&text[digits_start..digits_end])
            .ok()
            .and_then(|digits| digits.parse::<u64>().ok())
            .filter(|number| *number > 0)
        {
            found.insert(number);
        }
        position = digits_end;
    }
}
