//! The state machine, folded over an issue's comments (DESIGN.md 2.3).
//!
//! Where an issue stands is a pure function of its trusted event comments in comment-id order,
//! plus the attempt its lease is at. Being a fold, and an incremental one ([`Fold::apply`]), is
//! what makes the cache disposable and sync cheap: the cache keeps a [`Fold`] per issue and
//! applies only comments newer than its cursor, and `fold(prefix)` then `apply(rest)` is exactly
//! `fold(all)` (property-tested below), so a rebuild from scratch gives the same answer.
//!
//! The machine:
//!
//! ```text
//! unassigned ─assigned→ assigned ─started→ working ─in_review→ in_review ─approved→ approved ─completed→ completed
//!                          working ─blocked→ blocked ─answered→ working
//!                          assigned|working|blocked ─handover→ handover
//!                          in_review|approved ─changes_requested→ working
//!                          working ─progress→ working;  working ─completed→ completed (no PR)
//!    any active ─failed→ failed, or needs_human once max_attempts attempts were announced
//!    any active|failed|needs_human ─cancelled→ cancelled
//!    completed|cancelled ─released→ (same state, worktree cleaned)
//!    every state but approved|completed|cancelled ─assigned(attempt+n)→ assigned
//! ```
//!
//! Decisions, and why:
//! - **Fencing by attempt.** An event from an attempt older than the newest `assigned` is a
//!   superseded worker still talking: ignored as stale. An event from an attempt nobody assigned
//!   is ignored too. So at most one attempt is ever active, whatever order comments arrive in.
//! - **A newer `assigned` supersedes from any unfinished state.** The lease ref's compare-and-swap,
//!   not the comment, is what guarantees one holder; the `assigned` comment records a takeover that
//!   already happened (an expired lease, a respawn after `blocked`, a new attempt after
//!   `changes_requested`). Refusing it because the old worker never wrote `handover` would leave
//!   the issue stuck on a dead attempt. Approved, completed and cancelled issues are not reassigned
//!   by accident: request changes first, or reopen with a new issue.
//! - **Liveness is not an input.** DESIGN.md lets `answered` and `changes_requested` lead to
//!   "working (live worker)" or a respawn. The fold cannot know who is alive, and using today's
//!   liveness for a year-old comment would rewrite history, so both lead to `working` and a respawn
//!   is the `assigned` that follows.
//! - **The lease only shapes the view.** [`Fold::view`] takes the lease's attempt: when it is ahead
//!   of every `assigned` comment (acquired, comment not posted or not synced yet), the view reports
//!   that attempt as `assigned` and the older attempt's state no longer counts. It is not applied
//!   while folding, because the fold cannot tell an old attempt's events written *before* the
//!   takeover (history) from those written after (stale); treating them all as stale would wipe a
//!   fresh fold's history and break `fold(prefix) + apply(rest) == fold(all)` whenever the lease moves.
//! - **Illegal transitions found in history are reported and skipped**, never a panic: the issue
//!   keeps the last legal state and `ignored` says why.
//! - **Worker-dispatch skill comments** carry no attempt: a legacy `assigned` is numbered one past
//!   the current attempt (what the skill's own `get_attempt_count + 1` did), so it is never stale;
//!   a legacy `released` applies to the current attempt and, from an unfinished state, returns the
//!   issue to `unassigned` (the skill cleared a worker before spawning a replacement).
//! - **Duplicate `op`s are ignored**: a write retried after a lost response may have posted twice.

use std::collections::BTreeSet;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::event::{Assignment, Event, EventBody, EventKind};
use super::marker::{self, LegacyMarker, Marker, MarkerError};
use super::trust::{DEFAULT_TRUSTED_ASSOCIATIONS, IgnoreReason, Ignored, trust};
use crate::error::{Classify, ErrorKind};

/// Where an issue stands (DESIGN.md section 4's list).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Unassigned,
    Assigned,
    Working,
    Blocked,
    Handover,
    InReview,
    Approved,
    Completed,
    Failed,
    NeedsHuman,
    Cancelled,
}

impl State {
    /// Every state, in the order of DESIGN.md section 4.
    pub const ALL: [State; 11] = [
        State::Unassigned,
        State::Assigned,
        State::Working,
        State::Blocked,
        State::Handover,
        State::InReview,
        State::Approved,
        State::Completed,
        State::Failed,
        State::NeedsHuman,
        State::Cancelled,
    ];

    /// The spelling used in `--json` output.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Unassigned => "unassigned",
            State::Assigned => "assigned",
            State::Working => "working",
            State::Blocked => "blocked",
            State::Handover => "handover",
            State::InReview => "in_review",
            State::Approved => "approved",
            State::Completed => "completed",
            State::Failed => "failed",
            State::NeedsHuman => "needs_human",
            State::Cancelled => "cancelled",
        }
    }

    /// An attempt is under way: it can still fail or be cancelled.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            State::Assigned
                | State::Working
                | State::Blocked
                | State::Handover
                | State::InReview
                | State::Approved
        )
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An event kind the machine does not allow in the current state.
///
/// For a command this is a user error naming the state; in history it becomes
/// [`IgnoreReason::IllegalTransition`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cannot record `{kind}`: the issue is `{from}`")]
pub struct TransitionError {
    pub from: State,
    pub kind: EventKind,
}

impl Classify for TransitionError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::User
    }
}

/// The transition table: the state after `kind` in state `from`.
///
/// Two outcomes depend on more than the table and are settled by the fold: `failed` becomes
/// `needs_human` once `max_attempts` attempts were announced, and `assigned` also needs an attempt
/// newer than the current one. `released` keeps the state (it records that the worktree is gone).
pub fn next_state(from: State, kind: EventKind) -> Result<State, TransitionError> {
    use EventKind as K;
    use State as S;
    let next = match (kind, from) {
        (
            K::Assigned,
            S::Unassigned
            | S::Assigned
            | S::Working
            | S::Blocked
            | S::Handover
            | S::InReview
            | S::Failed
            | S::NeedsHuman,
        ) => Some(S::Assigned),
        (K::Started, S::Assigned) => Some(S::Working),
        (K::Progress, S::Working) => Some(S::Working),
        (K::Blocked, S::Working) => Some(S::Blocked),
        (K::Answered, S::Blocked) => Some(S::Working),
        (K::Handover, S::Assigned | S::Working | S::Blocked) => Some(S::Handover),
        (K::InReview, S::Working) => Some(S::InReview),
        (K::ChangesRequested, S::InReview | S::Approved) => Some(S::Working),
        (K::Approved, S::InReview) => Some(S::Approved),
        (K::Completed, S::Approved | S::Working) => Some(S::Completed),
        (K::Failed, from) if from.is_active() => Some(S::Failed),
        (K::Cancelled, from) if from.is_active() || matches!(from, S::Failed | S::NeedsHuman) => {
            Some(S::Cancelled)
        }
        (K::Released, S::Completed | S::Cancelled) => Some(from),
        _ => None,
    };
    next.ok_or(TransitionError { from, kind })
}

/// Who may write events and how many attempts an issue gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FoldPolicy {
    /// The login of the token crew runs with; its events always count.
    pub own_login: String,
    /// `author_association` values whose events count.
    pub trusted_associations: Vec<String>,
    /// A failure at this attempt or later means `needs_human` rather than `failed` (retryable).
    pub max_attempts: u64,
}

impl FoldPolicy {
    /// The defaults: OWNER, MEMBER, COLLABORATOR trusted, three attempts.
    pub fn new(own_login: impl Into<String>) -> Self {
        FoldPolicy {
            own_login: own_login.into(),
            trusted_associations: DEFAULT_TRUSTED_ASSOCIATIONS
                .iter()
                .map(|association| (*association).to_owned())
                .collect(),
            max_attempts: 3,
        }
    }
}

/// One comment as seen on GitHub, with its marker already parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedEvent {
    pub comment_id: u64,
    /// The comment author's login.
    pub author: String,
    /// The comment's `author_association` (OWNER, MEMBER, NONE, ...).
    pub association: String,
    /// What [`marker::parse`] made of the body.
    pub parsed: Result<Option<Marker>, MarkerError>,
}

impl ObservedEvent {
    /// Parses a comment body.
    pub fn from_comment(
        comment_id: u64,
        author: impl Into<String>,
        association: impl Into<String>,
        body: &str,
    ) -> Self {
        ObservedEvent {
            comment_id,
            author: author.into(),
            association: association.into(),
            parsed: marker::parse(body),
        }
    }
}

/// An event that counted, for the timeline `crew show` prints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppliedEvent {
    pub comment_id: u64,
    pub author: String,
    /// Read from a worker-dispatch skill comment; `event.attempt` and `event.op` were assigned by
    /// the fold (`op` is `legacy-<comment id>`).
    pub legacy: bool,
    pub event: Event,
}

/// Where an issue stands, and how it got there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssueState {
    pub issue: u64,
    pub state: State,
    /// The newest attempt; `None` until one is assigned. A fencing token: it comes from the
    /// lease, grows with every acquisition and may skip numbers (a lease taken and let go again
    /// before its `assigned` comment, when a fill lost a slot race).
    pub attempt: Option<u64>,
    /// How many attempts were announced (`assigned` events applied): what `max_attempts` counts.
    pub attempts: u64,
    /// The worker of that attempt (`None` when only the lease knows of the attempt).
    pub worker: Option<String>,
    /// The pull request, once an event named one; kept across attempts (they share the branch).
    pub pr: Option<u64>,
    /// The open question while `blocked`.
    pub question: Option<String>,
    /// A `released` was applied: the worktree of the finished issue was cleaned.
    pub released: bool,
    /// The `at` of the last applied event.
    pub last_event_at: Option<DateTime<Utc>>,
    /// Set by [`Fold::view`] when the lease is at an attempt no `assigned` comment has announced.
    pub lease_ahead: Option<u64>,
    /// Events that counted, in comment order.
    pub events: Vec<AppliedEvent>,
    /// Markers that did not count, in comment order, with why.
    pub ignored: Vec<Ignored>,
}

impl IssueState {
    fn new(issue: u64) -> Self {
        IssueState {
            issue,
            state: State::Unassigned,
            attempt: None,
            attempts: 0,
            worker: None,
            pr: None,
            question: None,
            released: false,
            last_event_at: None,
            lease_ahead: None,
            events: Vec::new(),
            ignored: Vec::new(),
        }
    }
}

/// What [`Fold::apply`] did with a comment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// An ordinary comment.
    NotAMarker,
    Applied,
    /// Recorded in `ignored`.
    Ignored,
}

/// A comment older than one already folded: the caller must fold again from the start (an edit
/// to an old comment, or a sync that went backwards).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "comment {comment_id} is not newer than comment {last}, already folded; fold again from the start"
)]
pub struct OutOfOrder {
    pub comment_id: u64,
    pub last: u64,
}

/// An incremental fold over one issue's comments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fold {
    policy: FoldPolicy,
    current: IssueState,
    last_comment_id: Option<u64>,
    applied_ops: BTreeSet<String>,
}

impl Fold {
    /// An issue with no comments yet.
    pub fn new(issue: u64, policy: FoldPolicy) -> Self {
        Fold {
            policy,
            current: IssueState::new(issue),
            last_comment_id: None,
            applied_ops: BTreeSet::new(),
        }
    }

    /// The newest comment folded so far (the sync cursor for this issue).
    pub fn last_comment_id(&self) -> Option<u64> {
        self.last_comment_id
    }

    /// The state from comments alone, without the lease.
    pub fn current(&self) -> &IssueState {
        &self.current
    }

    /// The state as it should be shown, given the lease's attempt (`None` when there is no lease).
    ///
    /// Pass the lease's attempt whether it is live or expired: an expired lease ahead of the
    /// comments is an acquisition whose `assigned` comment never arrived, which is worth seeing.
    /// A released lease can be passed too; it never runs ahead of its own `assigned` comment in
    /// normal operation.
    pub fn view(&self, lease_attempt: Option<u64>) -> IssueState {
        let mut view = self.current.clone();
        // Attempts start at 1; a lease claiming attempt 0 says nothing about this issue's attempts.
        if let Some(lease) = lease_attempt.filter(|lease| *lease > 0)
            && view.attempt.is_none_or(|attempt| lease > attempt)
        {
            view.state = State::Assigned;
            view.attempt = Some(lease);
            view.worker = None;
            view.question = None;
            view.released = false;
            view.lease_ahead = Some(lease);
        }
        view
    }

    /// Folds one more comment, which must be newer than every comment folded so far.
    pub fn apply(&mut self, observed: ObservedEvent) -> Result<Outcome, OutOfOrder> {
        if let Some(last) = self.last_comment_id
            && observed.comment_id <= last
        {
            return Err(OutOfOrder {
                comment_id: observed.comment_id,
                last,
            });
        }
        self.last_comment_id = Some(observed.comment_id);
        let ObservedEvent {
            comment_id,
            author,
            association,
            parsed,
        } = observed;
        let marker = match parsed {
            Ok(None) => return Ok(Outcome::NotAMarker),
            Ok(Some(marker)) => Ok(marker),
            Err(error) => Err(error),
        };
        let result = trust(
            &author,
            &association,
            &self.policy.own_login,
            &self.policy.trusted_associations,
        )
        .and_then(|()| marker.map_err(IgnoreReason::from))
        .and_then(|marker| self.admit(comment_id, marker));
        match result {
            Ok((event, legacy)) => {
                self.commit(&event, legacy);
                self.current.events.push(AppliedEvent {
                    comment_id,
                    author,
                    legacy,
                    event,
                });
                Ok(Outcome::Applied)
            }
            Err(reason) => {
                self.current.ignored.push(Ignored {
                    comment_id,
                    author,
                    reason,
                });
                Ok(Outcome::Ignored)
            }
        }
    }

    /// Decides whether a trusted, readable marker counts; returns it as a v1 event.
    fn admit(&self, comment_id: u64, marker: Marker) -> Result<(Event, bool), IgnoreReason> {
        let state = &self.current;
        let (event, legacy) = match marker {
            Marker::Event(event) => (event, false),
            Marker::Legacy(legacy) => (self.legacy_as_event(comment_id, legacy), true),
        };
        if event.issue != state.issue {
            return Err(IgnoreReason::WrongIssue {
                marker_issue: event.issue,
            });
        }
        if self.applied_ops.contains(&event.op) {
            return Err(IgnoreReason::DuplicateOp { op: event.op });
        }
        let kind = event.kind();
        match state.attempt {
            Some(current) if event.attempt < current => {
                return Err(IgnoreReason::StaleAttempt {
                    attempt: event.attempt,
                    current,
                });
            }
            Some(current) if kind == EventKind::Assigned && event.attempt == current => {
                return Err(IgnoreReason::IllegalTransition {
                    from: state.state,
                    kind,
                });
            }
            current if kind != EventKind::Assigned && current != Some(event.attempt) => {
                // Newer than any assigned attempt. With no attempt at all, only `assigned` is
                // legal, and saying so is clearer than "unknown attempt".
                return Err(match current {
                    None => IgnoreReason::IllegalTransition {
                        from: state.state,
                        kind,
                    },
                    Some(_) => IgnoreReason::UnknownAttempt {
                        attempt: event.attempt,
                        current,
                    },
                });
            }
            _ => {}
        }
        let legal = if legacy && kind == EventKind::Released {
            !matches!(state.state, State::Unassigned)
        } else {
            next_state(state.state, kind).is_ok()
        };
        if !legal {
            return Err(IgnoreReason::IllegalTransition {
                from: state.state,
                kind,
            });
        }
        Ok((event, legacy))
    }

    /// A worker-dispatch skill comment as a v1 event (see the module docs for the numbering).
    fn legacy_as_event(&self, comment_id: u64, legacy: LegacyMarker) -> Event {
        let state = &self.current;
        let current = state.attempt.unwrap_or(0);
        let op = format!("legacy-{comment_id}");
        match legacy {
            LegacyMarker::Assigned {
                worker_id,
                assigned_at,
                worktree,
            } => Event {
                issue: state.issue,
                // Saturating: after a (trusted, hand-written) attempt u64::MAX there is no next
                // number; the assignment then repeats the current attempt and `admit` ignores it
                // as an illegal transition instead of overflowing (fuzz/regressions/fold/).
                attempt: current.saturating_add(1),
                worker: worker_id,
                op,
                at: assigned_at,
                body: EventBody::Assigned(Assignment {
                    worktree,
                    ..Assignment::default()
                }),
            },
            LegacyMarker::Released { cleared_at } => Event {
                issue: state.issue,
                attempt: current,
                worker: state.worker.clone().unwrap_or_default(),
                op,
                at: cleared_at,
                body: EventBody::Released {},
            },
        }
    }

    /// Applies an admitted event to the state.
    fn commit(&mut self, event: &Event, legacy: bool) {
        let state = &mut self.current;
        self.applied_ops.insert(event.op.clone());
        state.last_event_at = Some(event.at);
        if let Some(pr) = event.body.pr() {
            state.pr = Some(pr);
        }
        let next = match &event.body {
            EventBody::Assigned(_) => {
                state.attempt = Some(event.attempt);
                state.attempts += 1;
                state.worker = Some(event.worker.clone());
                state.question = None;
                state.released = false;
                State::Assigned
            }
            EventBody::Blocked { question } => {
                state.question = Some(question.clone());
                State::Blocked
            }
            EventBody::Answered { .. } => {
                state.question = None;
                State::Working
            }
            EventBody::Failed { .. } if state.attempts >= self.policy.max_attempts => {
                State::NeedsHuman
            }
            EventBody::Released {}
                if legacy && !matches!(state.state, State::Completed | State::Cancelled) =>
            {
                // The skill cleared the worker of an unfinished issue.
                state.worker = None;
                State::Unassigned
            }
            EventBody::Released {} => {
                state.released = true;
                state.state
            }
            body => match next_state(state.state, body.kind()) {
                Ok(next) => next,
                // `admit` checked the transition; keep the state rather than panic if it did not.
                Err(_) => state.state,
            },
        };
        if next != State::Blocked {
            state.question = None;
        }
        state.state = next;
    }
}

/// Folds an issue's comments from the start and applies the lease (see [`Fold::view`]).
///
/// Comments are put in comment-id order first; if the same comment id appears twice (observed
/// before and after an edit), the later observation wins.
pub fn fold(
    issue: u64,
    events: impl IntoIterator<Item = ObservedEvent>,
    lease_attempt: Option<u64>,
    policy: &FoldPolicy,
) -> IssueState {
    let mut events: Vec<ObservedEvent> = events.into_iter().collect();
    // Stable, so among equal ids the later observation stays last.
    events.sort_by_key(|event| event.comment_id);
    let mut fold = Fold::new(issue, policy.clone());
    let mut iter = events.into_iter().peekable();
    while let Some(event) = iter.next() {
        if iter
            .peek()
            .is_some_and(|next| next.comment_id == event.comment_id)
        {
            continue;
        }
        // Ids are strictly increasing here, so `apply` cannot refuse.
        let _ = fold.apply(event);
    }
    fold.view(lease_attempt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::event::Handover;
    use crate::protocol::marker::render_comment;

    const ISSUE: u64 = 42;

    fn policy() -> FoldPolicy {
        FoldPolicy::new("crew-bot")
    }

    fn at(minute: u32) -> DateTime<Utc> {
        format!("2026-11-21T10:{minute:02}:00Z").parse().unwrap()
    }

    fn body(kind: EventKind) -> EventBody {
        match kind {
            EventKind::Assigned => EventBody::Assigned(Assignment::default()),
            EventKind::Started => EventBody::Started {},
            EventKind::Progress => EventBody::Progress {
                message: "m".to_owned(),
            },
            EventKind::Blocked => EventBody::Blocked {
                question: "q?".to_owned(),
            },
            EventKind::Answered => EventBody::Answered {
                answer: "a".to_owned(),
            },
            EventKind::Handover => EventBody::Handover(Handover::default()),
            EventKind::InReview => EventBody::InReview { pr: 7 },
            EventKind::ChangesRequested => EventBody::ChangesRequested { pr: 7, body: None },
            EventKind::Approved => EventBody::Approved { pr: 7 },
            EventKind::Completed => EventBody::Completed { pr: Some(7) },
            EventKind::Failed => EventBody::Failed {
                reason: "r".to_owned(),
            },
            EventKind::Cancelled => EventBody::Cancelled { reason: None },
            EventKind::Released => EventBody::Released {},
        }
    }

    /// Builds comments with increasing ids, as GitHub would.
    struct History {
        comments: Vec<ObservedEvent>,
    }

    impl History {
        fn new() -> Self {
            History {
                comments: Vec::new(),
            }
        }

        fn next_id(&self) -> u64 {
            100 + self.comments.len() as u64
        }

        fn comment(&mut self, author: &str, association: &str, text: &str) -> &mut Self {
            let id = self.next_id();
            self.comments
                .push(ObservedEvent::from_comment(id, author, association, text));
            self
        }

        fn event_by(&mut self, author: &str, association: &str, event: &Event) -> &mut Self {
            let text = render_comment(event, "human text");
            self.comment(author, association, &text)
        }

        fn event(&mut self, kind: EventKind, attempt: u64) -> &mut Self {
            let id = self.next_id();
            let event = Event {
                issue: ISSUE,
                attempt,
                worker: format!("worker-{attempt}"),
                op: format!("op-{id}"),
                at: at((id % 60) as u32),
                body: body(kind),
            };
            self.event_by("crew-bot", "NONE", &event)
        }

        fn kinds(&mut self, attempt: u64, kinds: &[EventKind]) -> &mut Self {
            for kind in kinds {
                self.event(*kind, attempt);
            }
            self
        }

        fn fold(&self) -> IssueState {
            fold(ISSUE, self.comments.clone(), None, &policy())
        }
    }

    use EventKind as K;

    #[test]
    fn the_happy_path() {
        let state = History::new()
            .kinds(
                1,
                &[
                    K::Assigned,
                    K::Started,
                    K::Progress,
                    K::InReview,
                    K::Approved,
                    K::Completed,
                    K::Released,
                ],
            )
            .fold();
        assert_eq!(state.state, State::Completed);
        assert_eq!(state.attempt, Some(1));
        assert_eq!(state.worker.as_deref(), Some("worker-1"));
        assert_eq!(state.pr, Some(7));
        assert!(state.released);
        assert_eq!(state.events.len(), 7);
        assert!(state.ignored.is_empty(), "{:?}", state.ignored);
        assert!(state.last_event_at.is_some());
    }

    /// Every legal (state, kind) pair of the table, reached through history.
    #[test]
    fn each_transition() {
        let cases: &[(&[EventKind], State)] = &[
            (&[], State::Unassigned),
            (&[K::Assigned], State::Assigned),
            (&[K::Assigned, K::Started], State::Working),
            (&[K::Assigned, K::Started, K::Progress], State::Working),
            (&[K::Assigned, K::Started, K::Blocked], State::Blocked),
            (
                &[K::Assigned, K::Started, K::Blocked, K::Answered],
                State::Working,
            ),
            (&[K::Assigned, K::Handover], State::Handover),
            (&[K::Assigned, K::Started, K::Handover], State::Handover),
            (
                &[K::Assigned, K::Started, K::Blocked, K::Handover],
                State::Handover,
            ),
            (&[K::Assigned, K::Started, K::InReview], State::InReview),
            (
                &[K::Assigned, K::Started, K::InReview, K::ChangesRequested],
                State::Working,
            ),
            (
                &[
                    K::Assigned,
                    K::Started,
                    K::InReview,
                    K::Approved,
                    K::ChangesRequested,
                ],
                State::Working,
            ),
            (
                &[K::Assigned, K::Started, K::InReview, K::Approved],
                State::Approved,
            ),
            (
                &[
                    K::Assigned,
                    K::Started,
                    K::InReview,
                    K::Approved,
                    K::Completed,
                ],
                State::Completed,
            ),
            (&[K::Assigned, K::Started, K::Completed], State::Completed),
            (&[K::Assigned, K::Failed], State::Failed),
            (&[K::Assigned, K::Started, K::Failed], State::Failed),
            (
                &[K::Assigned, K::Started, K::Blocked, K::Failed],
                State::Failed,
            ),
            (&[K::Assigned, K::Handover, K::Failed], State::Failed),
            (
                &[K::Assigned, K::Started, K::InReview, K::Failed],
                State::Failed,
            ),
            (&[K::Assigned, K::Cancelled], State::Cancelled),
            (
                &[K::Assigned, K::Started, K::InReview, K::Cancelled],
                State::Cancelled,
            ),
            (&[K::Assigned, K::Failed, K::Cancelled], State::Cancelled),
            (&[K::Assigned, K::Cancelled, K::Released], State::Cancelled),
        ];
        for (kinds, expected) in cases {
            let state = History::new().kinds(1, kinds).fold();
            assert_eq!(state.state, *expected, "{kinds:?}");
            assert!(state.ignored.is_empty(), "{kinds:?}: {:?}", state.ignored);
        }
    }

    #[test]
    fn the_table_matches_the_fold_for_every_pair() {
        for from in State::ALL {
            for kind in EventKind::ALL {
                let result = next_state(from, kind);
                if let Ok(next) = result {
                    if kind == K::Released {
                        assert_eq!(next, from);
                    }
                    if kind == K::Failed || kind == K::Cancelled {
                        assert!(from.is_active() || next == State::Cancelled);
                    }
                } else {
                    let error = result.unwrap_err();
                    assert_eq!(error, TransitionError { from, kind });
                    assert!(error.to_string().contains(from.as_str()));
                    assert_eq!(Classify::kind(&error), ErrorKind::User);
                }
            }
        }
        assert!(next_state(State::Completed, K::Assigned).is_err());
        assert!(next_state(State::Cancelled, K::Assigned).is_err());
        assert!(next_state(State::Approved, K::Assigned).is_err());
        assert!(next_state(State::Unassigned, K::Cancelled).is_err());
    }

    #[test]
    fn the_question_is_kept_while_blocked() {
        let mut history = History::new();
        history.kinds(1, &[K::Assigned, K::Started, K::Blocked]);
        assert_eq!(history.fold().question.as_deref(), Some("q?"));
        history.event(K::Answered, 1);
        assert_eq!(history.fold().question, None);
    }

    #[test]
    fn handover_then_a_new_attempt() {
        let state = History::new()
            .kinds(1, &[K::Assigned, K::Started, K::Handover])
            .kinds(2, &[K::Assigned, K::Started])
            .fold();
        assert_eq!(state.state, State::Working);
        assert_eq!(state.attempt, Some(2));
        assert_eq!(state.worker.as_deref(), Some("worker-2"));
    }

    #[test]
    fn failures_need_a_human_at_max_attempts() {
        let state = History::new()
            .kinds(1, &[K::Assigned, K::Failed])
            .kinds(2, &[K::Assigned, K::Failed])
            .fold();
        assert_eq!(state.state, State::Failed);
        let state = History::new()
            .kinds(1, &[K::Assigned, K::Failed])
            .kinds(2, &[K::Assigned, K::Failed])
            .kinds(3, &[K::Assigned, K::Started, K::Failed])
            .fold();
        assert_eq!(state.state, State::NeedsHuman);
        // A maintainer's retry is still possible.
        let state = History::new()
            .kinds(1, &[K::Assigned, K::Failed])
            .kinds(2, &[K::Assigned, K::Failed])
            .kinds(3, &[K::Assigned, K::Failed])
            .kinds(4, &[K::Assigned])
            .fold();
        assert_eq!(state.state, State::Assigned);
        assert_eq!((state.attempt, state.attempts), (Some(4), 4));
        // Attempts are counted, not read off the fencing token: lease attempts that were
        // taken and let go unannounced (2, 4) do not use up the allowance.
        let state = History::new()
            .kinds(1, &[K::Assigned, K::Failed])
            .kinds(3, &[K::Assigned, K::Failed])
            .fold();
        assert_eq!((state.state, state.attempts), (State::Failed, 2));
        let state = History::new()
            .kinds(1, &[K::Assigned, K::Failed])
            .kinds(3, &[K::Assigned, K::Failed])
            .kinds(5, &[K::Assigned, K::Failed])
            .fold();
        assert_eq!(state.state, State::NeedsHuman);
    }

    #[test]
    fn a_newer_assignment_supersedes_and_fences_the_old_attempt() {
        let state = History::new()
            .kinds(1, &[K::Assigned, K::Started])
            .kinds(2, &[K::Assigned])
            .kinds(1, &[K::Progress, K::InReview])
            .kinds(2, &[K::Started])
            .fold();
        assert_eq!(state.state, State::Working);
        assert_eq!(state.attempt, Some(2));
        let reasons: Vec<_> = state.ignored.iter().map(|i| i.reason.clone()).collect();
        assert_eq!(
            reasons,
            vec![
                IgnoreReason::StaleAttempt {
                    attempt: 1,
                    current: 2
                };
                2
            ]
        );
        assert!(reasons[0].to_string().contains("superseded"));
    }

    #[test]
    fn events_from_an_unassigned_attempt_are_ignored() {
        let state = History::new()
            .kinds(1, &[K::Assigned, K::Started])
            .kinds(2, &[K::Progress])
            .fold();
        assert_eq!(state.state, State::Working);
        assert_eq!(
            state.ignored[0].reason,
            IgnoreReason::UnknownAttempt {
                attempt: 2,
                current: Some(1)
            }
        );
        let state = History::new().kinds(1, &[K::Started]).fold();
        assert_eq!(state.state, State::Unassigned);
        assert_eq!(
            state.ignored[0].reason,
            IgnoreReason::IllegalTransition {
                from: State::Unassigned,
                kind: K::Started
            }
        );
    }

    #[test]
    fn reassigning_the_same_attempt_or_an_older_one_is_refused() {
        let state = History::new()
            .kinds(2, &[K::Assigned, K::Assigned])
            .kinds(1, &[K::Assigned])
            .fold();
        assert_eq!(state.attempt, Some(2));
        assert_eq!(
            state.ignored[0].reason,
            IgnoreReason::IllegalTransition {
                from: State::Assigned,
                kind: K::Assigned
            }
        );
        assert_eq!(
            state.ignored[1].reason,
            IgnoreReason::StaleAttempt {
                attempt: 1,
                current: 2
            }
        );
    }

    #[test]
    fn illegal_transitions_in_history_are_reported_and_skipped() {
        let state = History::new()
            .kinds(
                1,
                &[
                    K::Assigned,
                    K::Approved,
                    K::Started,
                    K::Answered,
                    K::Completed,
                ],
            )
            .fold();
        assert_eq!(state.state, State::Completed);
        let ignored: Vec<_> = state
            .ignored
            .iter()
            .map(|i| (i.comment_id, i.reason.code()))
            .collect();
        assert_eq!(
            ignored,
            vec![(101, "illegal_transition"), (103, "illegal_transition")]
        );
        // Nothing but `released` after completion; not even a new attempt.
        let state = History::new()
            .kinds(1, &[K::Assigned, K::Started, K::Completed, K::Failed])
            .kinds(2, &[K::Assigned])
            .fold();
        assert_eq!(state.state, State::Completed);
        assert_eq!(state.attempt, Some(1));
        assert_eq!(state.ignored.len(), 2);
    }

    #[test]
    fn spoofs_and_malformed_markers_are_ignored_with_the_reason() {
        let spoof = Event {
            issue: ISSUE,
            attempt: 1,
            worker: "worker-1".to_owned(),
            op: "spoof".to_owned(),
            at: at(5),
            body: body(K::Approved),
        };
        let state = History::new()
            .kinds(1, &[K::Assigned, K::Started, K::InReview])
            .event_by("outsider", "NONE", &spoof)
            .comment("alice", "MEMBER", "<!-- crew:v1 {not json} -->")
            .comment("alice", "MEMBER", "<!-- crew:v9 {} -->")
            .comment("outsider", "NONE", "<!-- crew:v1 {not json} -->")
            .comment("alice", "MEMBER", "looks good to me")
            .fold();
        assert_eq!(state.state, State::InReview);
        let ignored: Vec<_> = state
            .ignored
            .iter()
            .map(|i| (i.author.as_str(), i.reason.code()))
            .collect();
        assert_eq!(
            ignored,
            vec![
                ("outsider", "untrusted_author"),
                ("alice", "malformed_marker"),
                ("alice", "unknown_version"),
                ("outsider", "untrusted_author"),
            ]
        );
    }

    #[test]
    fn trusted_people_may_write_events() {
        let approve = Event {
            issue: ISSUE,
            attempt: 1,
            worker: "worker-1".to_owned(),
            op: "approve".to_owned(),
            at: at(5),
            body: body(K::Approved),
        };
        let state = History::new()
            .kinds(1, &[K::Assigned, K::Started, K::InReview])
            .event_by("maintainer", "OWNER", &approve)
            .fold();
        assert_eq!(state.state, State::Approved);
        assert_eq!(state.events.last().unwrap().author, "maintainer");
    }

    #[test]
    fn markers_for_another_issue_and_duplicate_ops_are_ignored() {
        let mut history = History::new();
        history.kinds(1, &[K::Assigned, K::Started]);
        let mut other = Event {
            issue: 7,
            attempt: 1,
            worker: "worker-1".to_owned(),
            op: "x".to_owned(),
            at: at(9),
            body: body(K::Blocked),
        };
        history.event_by("crew-bot", "NONE", &other);
        other.issue = ISSUE;
        other.op = "op-101".to_owned(); // the `started` above
        history.event_by("crew-bot", "NONE", &other);
        let state = history.fold();
        assert_eq!(state.state, State::Working);
        assert_eq!(
            state
                .ignored
                .iter()
                .map(|i| i.reason.clone())
                .collect::<Vec<_>>(),
            vec![
                IgnoreReason::WrongIssue { marker_issue: 7 },
                IgnoreReason::DuplicateOp {
                    op: "op-101".to_owned()
                }
            ]
        );
    }

    const SEED_ASSIGNED_1: &str = "\n```json\n{\n  \"assigned\": true,\n  \"worker_id\": \"worker-1736500000-42\",\n  \"assigned_at\": \"2026-01-10T18:47:47Z\",\n  \"worktree\": \"../project-worker-42\"\n}\n```\n\n**Worker Assigned**\n";
    const SEED_ASSIGNED_2: &str = "```json\n{\"assigned\": true, \"worker_id\": \"worker-1736600000-42\", \"assigned_at\": \"2026-01-11T18:47:47Z\", \"worktree\": \"../project-worker-42\"}\n```\n";
    const SEED_RELEASED: &str = "\n```json\n{\"assigned\": false, \"cleared_at\": \"2026-01-10T19:00:00Z\"}\n```\n\n**Worker Cleaned Up**\n";

    #[test]
    fn seed_skill_history_is_read_as_assigned_and_released() {
        let mut history = History::new();
        history
            .comment("maintainer", "OWNER", SEED_ASSIGNED_1)
            .comment("maintainer", "OWNER", SEED_RELEASED)
            .comment("maintainer", "OWNER", SEED_ASSIGNED_2);
        let state = history.fold();
        assert_eq!(state.state, State::Assigned);
        assert_eq!(state.attempt, Some(2));
        assert_eq!(state.worker.as_deref(), Some("worker-1736600000-42"));
        assert!(state.events.iter().all(|e| e.legacy));
        assert_eq!(state.events[0].event.op, "legacy-100");
        assert_eq!(
            state.events[0].event.body,
            EventBody::Assigned(Assignment {
                worktree: Some("../project-worker-42".to_owned()),
                ..Assignment::default()
            })
        );
        // Releasing clears the worker; crew's own events continue the numbering.
        history.comment("maintainer", "OWNER", SEED_RELEASED);
        let state = history.fold();
        assert_eq!(state.state, State::Unassigned);
        assert_eq!(state.attempt, Some(2));
        assert_eq!(state.worker, None);
        history.kinds(3, &[K::Assigned, K::Started]);
        assert_eq!(history.fold().state, State::Working);
        // A release with nothing assigned is illegal; from a spoofer it is untrusted.
        let state = History::new()
            .comment("maintainer", "OWNER", SEED_RELEASED)
            .comment("outsider", "NONE", SEED_ASSIGNED_1)
            .fold();
        assert_eq!(state.state, State::Unassigned);
        assert_eq!(
            state
                .ignored
                .iter()
                .map(|i| i.reason.code())
                .collect::<Vec<_>>(),
            vec!["illegal_transition", "untrusted_author"]
        );
    }

    #[test]
    fn a_legacy_release_of_finished_work_marks_it_released() {
        let mut history = History::new();
        history.kinds(1, &[K::Assigned, K::Started, K::Completed]);
        history.comment("crew-bot", "NONE", SEED_RELEASED);
        let state = history.fold();
        assert_eq!(state.state, State::Completed);
        assert!(state.released);
    }

    #[test]
    fn a_lease_ahead_of_the_comments_shows_its_attempt() {
        let mut history = History::new();
        history.kinds(1, &[K::Assigned, K::Started, K::Handover]);
        let state = fold(ISSUE, history.comments.clone(), Some(2), &policy());
        assert_eq!(state.state, State::Assigned);
        assert_eq!(state.attempt, Some(2));
        assert_eq!(state.worker, None);
        assert_eq!(state.lease_ahead, Some(2));
        assert_eq!(state.events.len(), 3, "history is kept");
        // Once the `assigned` comment arrives, the lease is no longer ahead.
        history.kinds(2, &[K::Assigned, K::Started]);
        let state = fold(ISSUE, history.comments.clone(), Some(2), &policy());
        assert_eq!(state.state, State::Working);
        assert_eq!(state.lease_ahead, None);
        assert_eq!(state.worker.as_deref(), Some("worker-2"));
        // An older lease changes nothing.
        let state = fold(ISSUE, history.comments.clone(), Some(1), &policy());
        assert_eq!(state.state, State::Working);
        // A lease on an issue with no comments at all.
        let state = fold(ISSUE, Vec::new(), Some(1), &policy());
        assert_eq!((state.state, state.attempt), (State::Assigned, Some(1)));
        let state = fold(ISSUE, Vec::new(), Some(0), &policy());
        assert_eq!((state.state, state.attempt), (State::Unassigned, None));
    }

    #[test]
    fn apply_refuses_comments_out_of_order() {
        let mut history = History::new();
        history.kinds(1, &[K::Assigned, K::Started]);
        let mut fold = Fold::new(ISSUE, policy());
        let second = history.comments[1].clone();
        assert_eq!(fold.apply(second.clone()), Ok(Outcome::Ignored));
        assert_eq!(fold.last_comment_id(), Some(101));
        let before = fold.clone();
        let error = fold.apply(history.comments[0].clone()).unwrap_err();
        assert_eq!(
            error,
            OutOfOrder {
                comment_id: 100,
                last: 101
            }
        );
        assert!(error.to_string().contains("from the start"));
        assert_eq!(
            fold.apply(second),
            Err(OutOfOrder {
                comment_id: 101,
                last: 101
            })
        );
        assert_eq!(fold, before, "a refused comment changes nothing");
    }

    #[test]
    fn fold_sorts_by_comment_id_and_keeps_the_latest_observation() {
        let mut history = History::new();
        history.kinds(1, &[K::Assigned, K::Started, K::Progress]);
        let mut comments = history.comments.clone();
        comments.reverse();
        // Comment 102 edited from progress into an ordinary comment.
        comments.push(ObservedEvent::from_comment(
            102, "crew-bot", "NONE", "edited",
        ));
        let state = fold(ISSUE, comments, None, &policy());
        assert_eq!(state.state, State::Working);
        assert_eq!(state.events.len(), 2);
    }

    #[test]
    fn outcomes_say_what_happened() {
        let mut history = History::new();
        history
            .comment("alice", "MEMBER", "hi")
            .kinds(1, &[K::Assigned, K::Assigned]);
        let mut fold = Fold::new(ISSUE, policy());
        let outcomes: Vec<_> = history
            .comments
            .iter()
            .map(|c| fold.apply(c.clone()).unwrap())
            .collect();
        assert_eq!(
            outcomes,
            vec![Outcome::NotAMarker, Outcome::Applied, Outcome::Ignored]
        );
        assert_eq!(fold.current().state, State::Assigned);
    }
}
