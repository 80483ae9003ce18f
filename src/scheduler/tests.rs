//! Unit tests for each rule of the planner, and property tests over generated worlds.

use chrono::{DateTime, TimeZone, Utc};
use proptest::prelude::*;

use super::*;
use crate::protocol::lease::{LEASE_VERSION, LeaseState};
use crate::protocol::{
    AppliedEvent, Assignment, Event, EventBody, FoldPolicy, Handover, MarkerError, ObservedEvent,
    fold, marker::Marker,
};

const HERE: &str = "laptop";
const NOW: i64 = 1_763_700_000;

fn at(seconds: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(seconds, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}

fn limits() -> Limits {
    Limits {
        max: 5,
        max_per_host: 5,
        max_attempts: 3,
        rate_limit_reserve: 200,
        pickup_labels: Vec::new(),
        exclude_labels: Vec::new(),
        priority_labels: Vec::new(),
    }
}

fn world(issues: Vec<WorldIssue>, leases: Vec<WorldLease>) -> World {
    World {
        now: at(NOW),
        host: HERE.to_owned(),
        issues,
        leases,
        rate_remaining: Some(5_000),
    }
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

fn event(issue: u64, kind: EventKind, attempt: u64, index: usize) -> Event {
    Event {
        issue,
        attempt,
        worker: format!("worker-{attempt}-{issue}"),
        op: format!("op-{issue}-{index}"),
        at: at(NOW - 1_000 + index as i64),
        body: body(kind),
    }
}

/// The state the real fold makes of `history` (kind, attempt), with three attempts allowed.
fn history(issue: u64, history: &[(EventKind, u64)]) -> IssueState {
    let mut policy = FoldPolicy::new("crew-bot");
    policy.max_attempts = 3;
    let observed = history
        .iter()
        .enumerate()
        .map(|(index, (kind, attempt))| ObservedEvent {
            comment_id: 100 + index as u64,
            author: "crew-bot".to_owned(),
            association: "NONE".to_owned(),
            parsed: Ok(Some(Marker::Event(event(issue, *kind, *attempt, index)))),
        });
    let state = fold(issue, observed, None, &policy);
    assert!(state.ignored.is_empty(), "{:?}", state.ignored);
    state
}

fn issue(number: u64) -> WorldIssue {
    WorldIssue {
        number,
        title: format!("Issue {number}"),
        open: true,
        labels: Vec::new(),
        body: String::new(),
        created_at: at(NOW - 100_000 + number as i64),
        state: history(number, &[]),
        open_sub_issues: Vec::new(),
        blocked_by: Vec::new(),
    }
}

fn with_history(number: u64, steps: &[(EventKind, u64)]) -> WorldIssue {
    WorldIssue {
        state: history(number, steps),
        ..issue(number)
    }
}

fn lease(issue: u64, attempt: u32, host: &str, state: LeaseState, expires_in: i64) -> WorldLease {
    WorldLease {
        issue,
        lease: Ok(Lease {
            v: LEASE_VERSION,
            issue,
            attempt,
            worker: format!("worker-{attempt}-{issue}"),
            host: host.to_owned(),
            runtime: "local".to_owned(),
            acquired_at: at(NOW - 600),
            renewed_at: at(NOW - 60),
            expires_at: at(NOW + expires_in),
            state,
        }),
    }
}

fn live(issue: u64, attempt: u32, host: &str) -> WorldLease {
    lease(issue, attempt, host, LeaseState::Held, 1_000)
}

fn expired(issue: u64, attempt: u32, host: &str) -> WorldLease {
    lease(issue, attempt, host, LeaseState::Held, -1_000)
}

fn released(issue: u64, attempt: u32) -> WorldLease {
    lease(issue, attempt, HERE, LeaseState::Released, -500)
}

fn unreadable(issue: u64) -> WorldLease {
    WorldLease {
        issue,
        lease: Err(LeaseError::NotJson {
            message: "expected value".to_owned(),
        }),
    }
}

fn newer(issue: u64) -> WorldLease {
    WorldLease {
        issue,
        lease: Err(LeaseError::NewerVersion { found: 2, known: 1 }),
    }
}

fn dispatch(issue: u64, attempt: u64, reason: DispatchReason) -> Action {
    Action::Dispatch {
        issue,
        title: format!("Issue {issue}"),
        attempt,
        reason,
    }
}

fn reason_of(plan: &Plan, issue: u64) -> Option<&NotReady> {
    plan.waiting
        .iter()
        .find(|waiting| waiting.issue == issue)
        .map(|waiting| &waiting.reason)
}

use EventKind as K;

const WORKING: &[(EventKind, u64)] = &[(K::Assigned, 1), (K::Started, 1)];

// ---------------------------------------------------------------------------------------------
// Slots
// ---------------------------------------------------------------------------------------------

#[test]
fn slots_count_live_leases_of_every_host_and_unreadable_ones() {
    let leases = vec![
        live(1, 1, HERE),
        live(2, 1, "desktop"),
        expired(3, 1, HERE),
        released(4, 1),
        unreadable(5),
        newer(6),
        live(7, 1, HERE),
    ];
    let plan = plan(&world(Vec::new(), leases), &limits());
    assert_eq!(
        plan.slots,
        Slots {
            max: 5,
            used: 5,
            max_per_host: 5,
            used_here: 2,
            free: 0
        }
    );
}

#[test]
fn free_is_the_smaller_of_the_global_and_the_host_limit_and_saturates() {
    let leases = vec![live(1, 1, HERE), live(2, 1, HERE), live(3, 1, "desktop")];
    let mut limits = limits();
    limits.max = 10;
    limits.max_per_host = 3;
    assert_eq!(
        plan(&world(Vec::new(), leases.clone()), &limits).slots.free,
        1
    );
    limits.max_per_host = 1;
    assert_eq!(
        plan(&world(Vec::new(), leases.clone()), &limits).slots.free,
        0
    );
    limits.max_per_host = 10;
    limits.max = 2;
    let slots = plan(&world(Vec::new(), leases), &limits).slots;
    assert_eq!((slots.used, slots.free), (3, 0));
}

#[test]
fn never_more_dispatches_than_free_slots_and_the_rest_wait_in_queue_order() {
    let issues: Vec<WorldIssue> = (1..=5).map(issue).collect();
    let mut limits = limits();
    limits.max = 3;
    let plan = plan(&world(issues, vec![live(9, 1, "desktop")]), &limits);
    assert_eq!(
        plan.actions,
        vec![
            dispatch(1, 1, DispatchReason::New),
            dispatch(2, 1, DispatchReason::New)
        ]
    );
    let waiting: Vec<(u64, &NotReady)> =
        plan.waiting.iter().map(|w| (w.issue, &w.reason)).collect();
    assert_eq!(
        waiting,
        vec![
            (3, &NotReady::NoSlot),
            (4, &NotReady::NoSlot),
            (5, &NotReady::NoSlot)
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Order
// ---------------------------------------------------------------------------------------------

#[test]
fn continuations_come_first_then_priority_labels_then_oldest_then_number() {
    let mut limits = limits();
    limits.max = 10;
    limits.max_per_host = 10;
    limits.priority_labels = vec!["P0".to_owned(), "p1".to_owned()];
    let mut old_unlabelled = issue(1);
    old_unlabelled.created_at = at(NOW - 900_000);
    let mut p1 = issue(2);
    p1.labels = vec!["P1".to_owned()];
    let mut p0_new = issue(3);
    p0_new.labels = vec!["p0".to_owned(), "p1".to_owned()];
    p0_new.created_at = at(NOW - 10);
    let mut p0_old = issue(4);
    p0_old.labels = vec!["P0".to_owned()];
    p0_old.created_at = at(NOW - 20);
    let handover = with_history(5, &[(K::Assigned, 1), (K::Handover, 1)]);
    let mut same_time_a = issue(7);
    let mut same_time_b = issue(6);
    same_time_a.created_at = at(NOW - 5);
    same_time_b.created_at = at(NOW - 5);
    let issues = vec![
        old_unlabelled,
        p1,
        p0_new,
        p0_old,
        handover,
        same_time_a,
        same_time_b,
    ];
    let plan = plan(&world(issues, Vec::new()), &limits);
    assert_eq!(plan.dispatched(), vec![5, 4, 3, 2, 1, 6, 7]);
    assert_eq!(
        plan.actions[0],
        dispatch(5, 2, DispatchReason::ContinueHandover)
    );
}

// ---------------------------------------------------------------------------------------------
// Labels
// ---------------------------------------------------------------------------------------------

#[test]
fn pickup_labels_are_all_required_case_insensitively_and_excludes_win() {
    let mut limits = limits();
    limits.pickup_labels = vec!["crew".to_owned(), "ready".to_owned()];
    limits.exclude_labels = vec!["hold".to_owned()];
    let mut both = issue(1);
    both.labels = vec!["Crew".to_owned(), "READY".to_owned()];
    let mut one = issue(2);
    one.labels = vec!["crew".to_owned()];
    let mut held = issue(3);
    held.labels = vec!["crew".to_owned(), "Hold".to_owned()];
    let plan = plan(&world(vec![both, one, held], Vec::new()), &limits);
    assert_eq!(plan.dispatched(), vec![1]);
    assert_eq!(
        reason_of(&plan, 2),
        Some(&NotReady::MissingLabel {
            labels: vec!["ready".to_owned()]
        })
    );
    assert_eq!(
        reason_of(&plan, 3),
        Some(&NotReady::Excluded {
            label: "hold".to_owned()
        })
    );
}

#[test]
fn continuations_ignore_pickup_labels_but_respect_exclude_labels() {
    let mut limits = limits();
    limits.pickup_labels = vec!["crew".to_owned()];
    limits.exclude_labels = vec!["hold".to_owned()];
    let handover = with_history(1, &[(K::Assigned, 1), (K::Handover, 1)]);
    let mut held = with_history(2, &[(K::Assigned, 1), (K::Handover, 1)]);
    held.labels = vec!["hold".to_owned()];
    let plan = plan(&world(vec![handover, held], Vec::new()), &limits);
    assert_eq!(
        plan.actions,
        vec![dispatch(1, 2, DispatchReason::ContinueHandover)]
    );
    assert_eq!(
        reason_of(&plan, 2),
        Some(&NotReady::Excluded {
            label: "hold".to_owned()
        })
    );
}

// ---------------------------------------------------------------------------------------------
// Dependencies
// ---------------------------------------------------------------------------------------------

#[test]
fn a_dependency_is_met_when_closed_or_completed_and_not_when_open_or_unknown() {
    let mut closed = issue(1);
    closed.open = false;
    let completed = with_history(2, &[(K::Assigned, 1), (K::Started, 1), (K::Completed, 1)]);
    let mut open = issue(3);
    open.labels = vec!["excluded".to_owned()];
    let mut on_done = issue(10);
    on_done.body = "Depends on #1\nBlocked by #2".to_owned();
    let mut on_open = issue(11);
    on_open.body = "depends on: #1, #3".to_owned();
    let mut on_unknown = issue(12);
    on_unknown.body = "Blocked by #99".to_owned();
    let mut by_relation = issue(13);
    by_relation.blocked_by = vec![3];
    let mut limits = limits();
    limits.exclude_labels = vec!["excluded".to_owned()];
    let issues = vec![
        closed,
        completed,
        open,
        on_done,
        on_open,
        on_unknown,
        by_relation,
    ];
    let plan = plan(&world(issues, Vec::new()), &limits);
    assert_eq!(plan.dispatched(), vec![10]);
    assert_eq!(
        reason_of(&plan, 11),
        Some(&NotReady::DependsOn { issues: vec![3] })
    );
    assert_eq!(
        reason_of(&plan, 12),
        Some(&NotReady::UnknownDependency { issues: vec![99] })
    );
    assert_eq!(
        reason_of(&plan, 13),
        Some(&NotReady::DependsOn { issues: vec![3] })
    );
    let message = reason_of(&plan, 12)
        .map(ToString::to_string)
        .unwrap_or_default();
    assert!(
        message.contains("#99") && message.contains("not met"),
        "{message}"
    );
    // Closed issues are never listed as waiting.
    assert_eq!(reason_of(&plan, 1), None);
}

#[test]
fn open_sub_issues_hold_the_parent_unless_crew_completed_them() {
    let mut parent = issue(1);
    parent.open_sub_issues = vec![2, 3];
    let child = issue(2);
    let done_child = with_history(3, &[(K::Assigned, 1), (K::Started, 1), (K::Completed, 1)]);
    let mut limits = limits();
    limits.max = 1;
    let plan = plan(
        &world(vec![parent.clone(), child, done_child], Vec::new()),
        &limits,
    );
    assert_eq!(plan.dispatched(), vec![2]);
    assert_eq!(
        reason_of(&plan, 1),
        Some(&NotReady::OpenSubIssues { issues: vec![2] })
    );
    // A sub-issue GitHub reports open but the world does not hold still holds the parent.
    parent.open_sub_issues = vec![40];
    let plan = super::plan(&world(vec![parent], Vec::new()), &limits);
    assert_eq!(
        plan.waiting[0].reason,
        NotReady::OpenSubIssues { issues: vec![40] }
    );
}

#[test]
fn dependency_cycles_wait_and_self_references_are_ignored() {
    let mut a = issue(1);
    a.body = "Depends on #2".to_owned();
    let mut b = issue(2);
    b.body = "Depends on #1".to_owned();
    let mut own = issue(3);
    own.body = "Blocked by #3".to_owned();
    let plan = plan(&world(vec![a, b, own], Vec::new()), &limits());
    assert_eq!(plan.dispatched(), vec![3]);
    assert_eq!(
        reason_of(&plan, 1),
        Some(&NotReady::DependsOn { issues: vec![2] })
    );
    assert_eq!(
        reason_of(&plan, 2),
        Some(&NotReady::DependsOn { issues: vec![1] })
    );
}

#[test]
fn dependencies_are_read_from_the_usual_phrasings() {
    assert_eq!(dependencies("Depends on #12"), vec![12]);
    assert_eq!(dependencies("depends on: #1, #2"), vec![1, 2]);
    assert_eq!(dependencies("BLOCKED BY #3 and #4"), vec![3, 4]);
    assert_eq!(dependencies("Blocked by: #4 & #3; #5"), vec![3, 4, 5]);
    assert_eq!(
        dependencies("Depends on:\n- #5\n- [x] not a ref\n"),
        vec![5]
    );
    assert_eq!(
        dependencies("Depends on:\n- #5\n* #6\n\nOther text #7"),
        vec![5, 6]
    );
    assert_eq!(
        dependencies("Depends on #1.\nAlso blocked  by #2, and depends on #1"),
        vec![1, 2]
    );
    // Not references.
    assert!(dependencies("").is_empty());
    assert!(dependencies("independs on #1").is_empty());
    assert!(dependencies("depends onto #1").is_empty());
    assert!(dependencies("depends on the API (#1)").is_empty());
    assert!(dependencies("Depends on #0").is_empty());
    assert!(dependencies("Depends on #12abc").is_empty());
    assert!(dependencies("Depends on #99999999999999999999999").is_empty());
    assert!(dependencies("Depends on owner/repo#3").is_empty());
    assert!(dependencies("See #4. Fixes #5").is_empty());
    assert_eq!(dependencies("Blocked by #7 android #8"), vec![7]);
    assert_eq!(dependencies("blocked by ＃1 — depends on #2"), vec![2]);
}

// ---------------------------------------------------------------------------------------------
// States
// ---------------------------------------------------------------------------------------------

#[test]
fn each_continuation_gets_its_reason_and_the_next_attempt() {
    let handover = with_history(1, &[(K::Assigned, 1), (K::Handover, 1)]);
    let answered = with_history(
        2,
        &[
            (K::Assigned, 1),
            (K::Started, 1),
            (K::Blocked, 1),
            (K::Answered, 1),
        ],
    );
    let changes = with_history(
        3,
        &[
            (K::Assigned, 2),
            (K::Started, 2),
            (K::InReview, 2),
            (K::ChangesRequested, 2),
        ],
    );
    let failed = with_history(4, &[(K::Assigned, 1), (K::Failed, 1)]);
    let ended_silently = with_history(5, &[(K::Assigned, 1), (K::Started, 1), (K::Progress, 1)]);
    let fresh = issue(6);
    let leases = vec![
        released(2, 1),
        released(3, 2),
        released(5, 1),
        released(1, 1),
    ];
    let mut limits = limits();
    limits.max = 10;
    limits.max_per_host = 10;
    let plan = plan(
        &world(
            vec![handover, answered, changes, failed, ended_silently, fresh],
            leases,
        ),
        &limits,
    );
    assert_eq!(
        plan.actions,
        vec![
            dispatch(1, 2, DispatchReason::ContinueHandover),
            dispatch(2, 2, DispatchReason::ContinueAnswered),
            dispatch(3, 3, DispatchReason::ChangesRequested),
            dispatch(4, 2, DispatchReason::RetryFailed),
            dispatch(5, 2, DispatchReason::ContinueHandover),
            dispatch(6, 1, DispatchReason::New),
        ]
    );
    assert!(plan.waiting.is_empty());
}

#[test]
fn states_waiting_for_people_or_finished_are_never_dispatched() {
    let blocked = with_history(1, &[(K::Assigned, 1), (K::Started, 1), (K::Blocked, 1)]);
    let in_review = with_history(2, &[(K::Assigned, 1), (K::Started, 1), (K::InReview, 1)]);
    let approved = with_history(
        3,
        &[
            (K::Assigned, 1),
            (K::Started, 1),
            (K::InReview, 1),
            (K::Approved, 1),
        ],
    );
    let completed = with_history(4, &[(K::Assigned, 1), (K::Started, 1), (K::Completed, 1)]);
    let cancelled = with_history(5, &[(K::Assigned, 1), (K::Cancelled, 1)]);
    let needs_human = with_history(
        6,
        &[
            (K::Assigned, 1),
            (K::Failed, 1),
            (K::Assigned, 2),
            (K::Failed, 2),
            (K::Assigned, 3),
            (K::Failed, 3),
        ],
    );
    assert_eq!(needs_human.state.state, State::NeedsHuman);
    let leases = (1..=6).map(|issue| released(issue, 1)).collect();
    let plan = plan(
        &world(
            vec![
                blocked,
                in_review,
                approved,
                completed,
                cancelled,
                needs_human,
            ],
            leases,
        ),
        &limits(),
    );
    assert!(plan.actions.is_empty());
    let states: Vec<State> = plan
        .waiting
        .iter()
        .map(|waiting| match &waiting.reason {
            NotReady::State { state } => *state,
            other => panic!("#{}: {other:?}", waiting.issue),
        })
        .collect();
    assert_eq!(
        states,
        vec![
            State::Blocked,
            State::InReview,
            State::Approved,
            State::Completed,
            State::Cancelled,
            State::NeedsHuman
        ]
    );
    assert!(plan.waiting[0].reason.to_string().contains("crew answer"));
    assert!(plan.waiting[5].reason.to_string().contains("crew retry"));
}

#[test]
fn a_live_lease_holds_the_issue_whatever_its_state() {
    let working = with_history(1, WORKING);
    let handover = with_history(2, &[(K::Assigned, 1), (K::Handover, 1)]);
    let leases = vec![live(1, 1, "desktop"), live(2, 2, HERE)];
    let plan = plan(&world(vec![working, handover, issue(3)], leases), &limits());
    assert_eq!(plan.dispatched(), vec![3]);
    assert_eq!(
        reason_of(&plan, 1),
        Some(&NotReady::Leased {
            worker: "worker-1-1".to_owned(),
            host: "desktop".to_owned(),
            expires_at: at(NOW + 1_000)
        })
    );
    assert!(matches!(reason_of(&plan, 2), Some(NotReady::Leased { .. })));
    assert_eq!(
        (plan.slots.used, plan.slots.used_here, plan.slots.free),
        (2, 1, 3)
    );
}

#[test]
fn an_active_attempt_without_any_lease_waits() {
    let working = with_history(1, WORKING);
    let assigned = with_history(2, &[(K::Assigned, 1)]);
    let plan = plan(&world(vec![working, assigned], Vec::new()), &limits());
    assert!(plan.actions.is_empty());
    assert_eq!(
        reason_of(&plan, 1),
        Some(&NotReady::NoLease {
            state: State::Working
        })
    );
    assert_eq!(
        reason_of(&plan, 2),
        Some(&NotReady::NoLease {
            state: State::Assigned
        })
    );
}

#[test]
fn max_attempts_counts_announced_attempts_not_the_fencing_token() {
    let used_up = with_history(
        1,
        &[
            (K::Assigned, 1),
            (K::Handover, 1),
            (K::Assigned, 2),
            (K::Handover, 2),
            (K::Assigned, 5),
            (K::Handover, 5),
        ],
    );
    // One attempt announced, though its token is 4: two more are allowed.
    let skipped = with_history(2, &[(K::Assigned, 4), (K::Handover, 4)]);
    let plan = plan(
        &world(vec![used_up, skipped], vec![released(2, 4)]),
        &limits(),
    );
    assert_eq!(
        plan.actions,
        vec![dispatch(2, 5, DispatchReason::ContinueHandover)]
    );
    assert_eq!(
        reason_of(&plan, 1),
        Some(&NotReady::AttemptsUsed {
            attempts: 3,
            max: 3
        })
    );
    assert!(
        reason_of(&plan, 1)
            .map(ToString::to_string)
            .unwrap_or_default()
            .contains("crew retry")
    );
}

/// The view `crew` folds with: the comments plus the lease's attempt.
fn viewed(number: u64, steps: &[(EventKind, u64)], lease_attempt: u64) -> WorldIssue {
    let mut policy = FoldPolicy::new("crew-bot");
    policy.max_attempts = 3;
    let observed = steps
        .iter()
        .enumerate()
        .map(|(index, (kind, attempt))| ObservedEvent {
            comment_id: 100 + index as u64,
            author: "crew-bot".to_owned(),
            association: "NONE".to_owned(),
            parsed: Ok(Some(Marker::Event(event(number, *kind, *attempt, index)))),
        });
    WorldIssue {
        state: fold(number, observed, Some(lease_attempt), &policy),
        ..issue(number)
    }
}

#[test]
fn a_lease_ahead_of_the_comments_that_was_let_go_never_ran() {
    let mut limits = limits();
    limits.pickup_labels = vec!["crew".to_owned()];
    limits.max = 10;
    limits.max_per_host = 10;
    // A fill took these leases, lost a slot race and let them go before announcing.
    let new_labelled = {
        let mut issue = viewed(1, &[], 1);
        issue.labels = vec!["crew".to_owned()];
        issue
    };
    let new_unlabelled = viewed(2, &[], 1);
    let handover = viewed(3, &[(K::Assigned, 1), (K::Handover, 1)], 2);
    let blocked = viewed(4, &[(K::Assigned, 1), (K::Started, 1), (K::Blocked, 1)], 2);
    // Acquired, never announced, and its holder died: nothing to recover either.
    let dead_new = {
        let mut issue = viewed(5, &[], 1);
        issue.labels = vec!["crew".to_owned()];
        issue
    };
    assert_eq!(new_labelled.state.state, State::Assigned);
    assert_eq!(new_labelled.state.lease_ahead, Some(1));
    let leases = vec![
        released(1, 1),
        released(2, 1),
        released(3, 2),
        released(4, 2),
        expired(5, 1, "desktop"),
    ];
    let plan = plan(
        &world(
            vec![new_labelled, new_unlabelled, handover, blocked, dead_new],
            leases,
        ),
        &limits,
    );
    assert_eq!(
        plan.actions,
        vec![
            dispatch(3, 3, DispatchReason::ContinueHandover),
            dispatch(1, 2, DispatchReason::New),
            dispatch(5, 2, DispatchReason::New),
        ]
    );
    assert!(matches!(
        reason_of(&plan, 2),
        Some(NotReady::MissingLabel { .. })
    ));
    assert_eq!(
        reason_of(&plan, 4),
        Some(&NotReady::State {
            state: State::Blocked
        })
    );
}

#[test]
fn the_replayed_comment_state_matches_the_fold() {
    let histories: &[&[(EventKind, u64)]] = &[
        &[],
        &[(K::Assigned, 1)],
        WORKING,
        &[
            (K::Assigned, 1),
            (K::Started, 1),
            (K::Blocked, 1),
            (K::Answered, 1),
        ],
        &[
            (K::Assigned, 1),
            (K::Started, 1),
            (K::InReview, 1),
            (K::ChangesRequested, 1),
        ],
        &[
            (K::Assigned, 1),
            (K::Started, 1),
            (K::InReview, 1),
            (K::Approved, 1),
        ],
        &[(K::Assigned, 1), (K::Failed, 1)],
        &[
            (K::Assigned, 1),
            (K::Failed, 1),
            (K::Assigned, 2),
            (K::Failed, 2),
            (K::Assigned, 3),
            (K::Failed, 3),
        ],
        &[(K::Assigned, 1), (K::Cancelled, 1), (K::Released, 1)],
        &[(K::Assigned, 1), (K::Handover, 1)],
    ];
    for steps in histories {
        let plain = history(1, steps);
        let mut ahead = plain.clone();
        ahead.lease_ahead = Some(9);
        ahead.state = State::Assigned;
        assert_eq!(comment_state(&ahead, 3), plain.state, "{steps:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Recovery
// ---------------------------------------------------------------------------------------------

fn recover(issue: u64, attempt: u32, host: &str) -> Action {
    Action::Recover {
        issue,
        worker: format!("worker-{attempt}-{issue}"),
        host: host.to_owned(),
        attempt,
        expired_at: at(NOW - 1_000),
    }
}

#[test]
fn an_expired_lease_of_an_active_attempt_is_recovered_then_dispatched() {
    let working = with_history(1, WORKING);
    let assigned = with_history(2, &[(K::Assigned, 1)]);
    let fresh = issue(3);
    let plan = plan(
        &world(
            vec![working, assigned, fresh],
            vec![expired(1, 1, "desktop"), expired(2, 1, HERE)],
        ),
        &limits(),
    );
    assert_eq!(
        plan.actions,
        vec![
            recover(1, 1, "desktop"),
            recover(2, 1, HERE),
            dispatch(1, 2, DispatchReason::Recovered),
            dispatch(2, 2, DispatchReason::Recovered),
            dispatch(3, 1, DispatchReason::New),
        ]
    );
    assert_eq!(plan.slots.used, 0);
}

#[test]
fn recovery_does_not_need_a_slot_but_its_dispatch_does() {
    let mut limits = limits();
    limits.max = 1;
    limits.exclude_labels = vec!["hold".to_owned()];
    let working = with_history(1, WORKING);
    let mut held = with_history(2, WORKING);
    held.labels = vec!["hold".to_owned()];
    let leases = vec![
        expired(1, 1, "desktop"),
        expired(2, 1, "desktop"),
        live(9, 1, HERE),
    ];
    let plan = plan(&world(vec![working, held], leases), &limits);
    assert_eq!(
        plan.actions,
        vec![recover(1, 1, "desktop"), recover(2, 1, "desktop")]
    );
    assert_eq!(reason_of(&plan, 1), Some(&NotReady::NoSlot));
    assert_eq!(
        reason_of(&plan, 2),
        Some(&NotReady::Excluded {
            label: "hold".to_owned()
        })
    );
}

#[test]
fn a_blocked_issue_with_an_expired_lease_waits_for_its_answer_first() {
    let blocked = with_history(1, &[(K::Assigned, 1), (K::Started, 1), (K::Blocked, 1)]);
    let answered = with_history(
        2,
        &[
            (K::Assigned, 1),
            (K::Started, 1),
            (K::Blocked, 1),
            (K::Answered, 1),
        ],
    );
    let plan = plan(
        &world(
            vec![blocked, answered],
            vec![expired(1, 1, "desktop"), expired(2, 1, "desktop")],
        ),
        &limits(),
    );
    assert_eq!(
        plan.actions,
        vec![
            recover(2, 1, "desktop"),
            dispatch(2, 2, DispatchReason::Recovered)
        ]
    );
    assert_eq!(
        reason_of(&plan, 1),
        Some(&NotReady::State {
            state: State::Blocked
        })
    );
}

#[test]
fn handover_and_failed_need_no_recovery_even_with_an_expired_lease() {
    let handover = with_history(1, &[(K::Assigned, 1), (K::Handover, 1)]);
    let failed = with_history(2, &[(K::Assigned, 1), (K::Failed, 1)]);
    let plan = plan(
        &world(
            vec![handover, failed],
            vec![expired(1, 1, "desktop"), expired(2, 1, HERE)],
        ),
        &limits(),
    );
    assert_eq!(
        plan.actions,
        vec![
            dispatch(1, 2, DispatchReason::ContinueHandover),
            dispatch(2, 2, DispatchReason::RetryFailed)
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Version skew and unreadable leases
// ---------------------------------------------------------------------------------------------

#[test]
fn a_newer_lease_or_marker_stops_crew_from_touching_the_issue() {
    let mut newer_marker = issue(2);
    let mut policy = FoldPolicy::new("crew-bot");
    policy.max_attempts = 3;
    newer_marker.state = fold(
        2,
        [ObservedEvent {
            comment_id: 5,
            author: "crew-bot".to_owned(),
            association: "OWNER".to_owned(),
            parsed: Err(MarkerError::UnknownVersion { version: 2 }),
        }],
        None,
        &policy,
    );
    let working = with_history(1, WORKING);
    let plan = plan(
        &world(vec![working, newer_marker], vec![newer(1)]),
        &limits(),
    );
    assert!(plan.actions.is_empty());
    assert_eq!(plan.slots.used, 1);
    for number in [1, 2] {
        let reason = reason_of(&plan, number).cloned();
        let Some(reason @ NotReady::NewerFormat { .. }) = reason else {
            panic!("#{number}: {reason:?}");
        };
        let message = reason.to_string();
        assert!(
            message.contains("newer crew") && message.contains("upgrade crew"),
            "{message}"
        );
    }
    assert!(
        reason_of(&plan, 2)
            .map(ToString::to_string)
            .unwrap_or_default()
            .contains("v2")
    );
}

#[test]
fn an_unreadable_lease_counts_as_held() {
    let mut limits = limits();
    limits.max = 1;
    let plan = plan(
        &world(vec![issue(1), issue(2)], vec![unreadable(1)]),
        &limits,
    );
    assert!(plan.actions.is_empty());
    assert!(matches!(
        reason_of(&plan, 1),
        Some(NotReady::UnreadableLease { .. })
    ));
    assert_eq!(reason_of(&plan, 2), Some(&NotReady::NoSlot));
}

#[test]
fn duplicate_lease_entries_resolve_to_the_unreadable_or_newest_one() {
    let working = with_history(1, WORKING);
    let plan_a = plan(
        &world(
            vec![working.clone()],
            vec![expired(1, 1, "x"), live(1, 2, "y")],
        ),
        &limits(),
    );
    assert!(matches!(
        reason_of(&plan_a, 1),
        Some(NotReady::Leased { .. })
    ));
    let plan_b = plan(
        &world(
            vec![working],
            vec![live(1, 2, "y"), unreadable(1), expired(1, 1, "x")],
        ),
        &limits(),
    );
    assert!(matches!(
        reason_of(&plan_b, 1),
        Some(NotReady::UnreadableLease { .. })
    ));
    assert_eq!(plan_b.slots.used, 1);
}

// ---------------------------------------------------------------------------------------------
// Rate-limit reserve
// ---------------------------------------------------------------------------------------------

#[test]
fn below_the_rate_reserve_nothing_is_planned_at_all() {
    let working = with_history(1, WORKING);
    let mut world = world(vec![working, issue(2)], vec![expired(1, 1, "desktop")]);
    world.rate_remaining = Some(199);
    let plan = plan(&world, &limits());
    assert!(plan.actions.is_empty());
    let stopped = plan.stopped.clone().unwrap_or_default();
    assert!(
        stopped.contains("199") && stopped.contains("200"),
        "{stopped}"
    );
    for number in [1, 2] {
        assert_eq!(
            reason_of(&plan, number),
            Some(&NotReady::RateReserve {
                remaining: 199,
                reserve: 200
            })
        );
    }
    // At the reserve, or unknown, crew goes on.
    world.rate_remaining = Some(200);
    assert_eq!(super::plan(&world, &limits()).actions.len(), 3);
    world.rate_remaining = None;
    assert_eq!(super::plan(&world, &limits()).stopped, None);
}

// ---------------------------------------------------------------------------------------------
// Output shape and configuration
// ---------------------------------------------------------------------------------------------

#[test]
fn the_plan_serialises_with_stable_names() {
    let mut limits = limits();
    limits.max = 1;
    let working = with_history(1, WORKING);
    let mut blocked_on = issue(2);
    blocked_on.body = "Depends on #3".to_owned();
    let plan = plan(
        &world(
            vec![working, blocked_on, issue(3), issue(4)],
            vec![expired(1, 1, "desktop")],
        ),
        &limits,
    );
    let json = serde_json::to_value(&plan).unwrap_or_default();
    assert_eq!(
        json["slots"],
        serde_json::json!({"max": 1, "used": 0, "max_per_host": 5, "used_here": 0, "free": 1})
    );
    assert_eq!(
        json["actions"],
        serde_json::json!([
            {"action": "recover", "issue": 1, "worker": "worker-1-1", "host": "desktop",
             "attempt": 1, "expired_at": "2025-11-21T04:23:20Z"},
            {"action": "dispatch", "issue": 1, "title": "Issue 1", "attempt": 2, "reason": "recovered"},
        ])
    );
    assert_eq!(json["waiting"][0]["issue"], 3);
    assert_eq!(json["waiting"][0]["reason"]["kind"], "no_slot");
    assert_eq!(
        json["waiting"][2]["reason"],
        serde_json::json!({"kind": "depends_on", "message": "depends on #3, not closed or completed yet", "issues": [3]})
    );
    assert_eq!(json["stopped"], serde_json::Value::Null);
}

#[test]
fn limits_come_from_the_config() {
    let mut config = crate::settings::Config::default();
    config.workers.max = 7;
    config.workers.max_per_host = 2;
    config.workers.max_attempts = 4;
    config.github.rate_limit_reserve = 50;
    config.pickup.labels = vec!["crew".to_owned()];
    config.pickup.exclude_labels = vec!["hold".to_owned()];
    config.pickup.priority_labels = vec!["p0".to_owned()];
    assert_eq!(
        Limits::from_config(&config),
        Limits {
            max: 7,
            max_per_host: 2,
            max_attempts: 4,
            rate_limit_reserve: 50,
            pickup_labels: vec!["crew".to_owned()],
            exclude_labels: vec!["hold".to_owned()],
            priority_labels: vec!["p0".to_owned()],
        }
    );
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

const MAX_ISSUE: u64 = 10;

fn applied(issue: u64, kind: EventKind, attempt: u64) -> AppliedEvent {
    AppliedEvent {
        comment_id: attempt,
        author: "crew-bot".to_owned(),
        legacy: false,
        event: event(issue, kind, attempt, 0),
    }
}

/// A folded state built directly (any state, any attempt, any last event), so every combination
/// the planner could see is reachable.
fn any_state(number: u64) -> impl Strategy<Value = IssueState> {
    (
        prop_oneof![
            3 => Just(State::Unassigned),
            2 => Just(State::Working),
            5 => prop::sample::select(State::ALL.to_vec()),
        ],
        0u64..5,
        prop::option::of(prop::sample::select(vec![
            K::Answered,
            K::ChangesRequested,
            K::Progress,
            K::Handover,
        ])),
        any::<bool>(),
        1u64..5,
    )
        .prop_map(move |(state, attempt, last, newer_marker, announced)| {
            let mut folded = history(number, &[]);
            folded.state = state;
            folded.attempt = (state != State::Unassigned && attempt > 0).then_some(attempt);
            folded.attempts = folded.attempt.map_or(0, |attempt| attempt.min(announced));
            if let Some(kind) = last {
                folded.events = vec![applied(number, kind, attempt.max(1))];
            }
            if newer_marker {
                folded.ignored = vec![crate::protocol::Ignored {
                    comment_id: 9,
                    author: "crew-bot".to_owned(),
                    reason: IgnoreReason::UnknownVersion { version: 2 },
                }];
            }
            folded
        })
}

fn labels() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(
        prop::sample::select(vec!["crew", "Crew", "hold", "p0", "p1", "bug"]),
        0..3,
    )
    .prop_map(|labels| labels.into_iter().map(str::to_owned).collect())
}

/// Some of the time, a few issue numbers (existing or not).
fn some_numbers(probability: f64) -> impl Strategy<Value = Vec<u64>> {
    (
        prop::bool::weighted(probability),
        prop::collection::vec(1..=MAX_ISSUE + 2, 1..3),
    )
        .prop_map(|(keep, numbers)| if keep { numbers } else { Vec::new() })
}

fn any_issue(number: u64) -> impl Strategy<Value = (WorldIssue, Option<WorldLease>)> {
    (
        prop::bool::weighted(0.85),
        labels(),
        some_numbers(0.3),
        some_numbers(0.15),
        some_numbers(0.15),
        0i64..50,
        any_state(number),
        prop::option::weighted(0.6, any_lease(number)),
    )
        .prop_map(
            move |(open, labels, depends, blocked_by, sub_issues, age, state, lease)| {
                let issue = WorldIssue {
                    number,
                    title: format!("Issue {number}"),
                    open,
                    labels,
                    body: depends
                        .iter()
                        .map(|dep| format!("Depends on #{dep}\n"))
                        .collect(),
                    created_at: at(NOW - age * 1_000),
                    state,
                    open_sub_issues: sub_issues,
                    blocked_by,
                };
                (issue, lease)
            },
        )
}

fn any_lease(issue: u64) -> impl Strategy<Value = WorldLease> {
    prop_oneof![
        8 => (
            0u32..5,
            prop::sample::select(vec![HERE, "desktop", "runner"]),
            prop::bool::weighted(0.6),
            -2_000i64..2_000,
        )
            .prop_map(move |(attempt, host, held, expires_in)| {
                let state = if held { LeaseState::Held } else { LeaseState::Released };
                lease(issue, attempt, host, state, expires_in)
            }),
        1 => Just(unreadable(issue)),
        1 => Just(newer(issue)),
    ]
}

fn any_world() -> impl Strategy<Value = World> {
    let issues = prop::collection::btree_set(1..=MAX_ISSUE, 0..=MAX_ISSUE as usize)
        .prop_flat_map(|numbers| numbers.into_iter().map(any_issue).collect::<Vec<_>>());
    // Leases of issues the world does not hold (deleted, or not fetched).
    let orphans = prop::collection::btree_set(MAX_ISSUE + 1..=MAX_ISSUE + 3, 0..2)
        .prop_flat_map(|numbers| numbers.into_iter().map(any_lease).collect::<Vec<_>>());
    (issues, orphans, prop::option::weighted(0.7, 0u64..1_000)).prop_map(
        |(issues, orphans, rate)| {
            let (issues, leases): (Vec<WorldIssue>, Vec<Option<WorldLease>>) =
                issues.into_iter().unzip();
            World {
                now: at(NOW),
                host: HERE.to_owned(),
                issues,
                leases: leases.into_iter().flatten().chain(orphans).collect(),
                rate_remaining: rate,
            }
        },
    )
}

fn any_limits() -> impl Strategy<Value = Limits> {
    (
        0u32..6,
        0u32..6,
        0u32..5,
        0u64..300,
        prop::sample::subsequence(vec!["crew", "p0"], 0..=2),
        prop::sample::subsequence(vec!["hold", "bug"], 0..=2),
        prop::sample::subsequence(vec!["p1", "p0", "CREW"], 0..=3),
    )
        .prop_map(
            |(max, max_per_host, max_attempts, reserve, pickup, exclude, priority)| Limits {
                max,
                max_per_host,
                max_attempts,
                rate_limit_reserve: reserve,
                pickup_labels: pickup.into_iter().map(str::to_owned).collect(),
                exclude_labels: exclude.into_iter().map(str::to_owned).collect(),
                priority_labels: priority.into_iter().map(str::to_owned).collect(),
            },
        )
}

/// Live leases counted independently of the planner: (all hosts, this host).
fn live_counts(world: &World) -> (u32, u32) {
    let mut all = 0;
    let mut here = 0;
    for entry in &world.leases {
        match &entry.lease {
            Ok(lease) if lease.status(world.now) == LeaseStatus::Live => {
                all += 1;
                if lease.host == world.host {
                    here += 1;
                }
            }
            Ok(_) => {}
            Err(_) => all += 1,
        }
    }
    (all, here)
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 512,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn never_more_live_workers_than_the_limits(world in any_world(), limits in any_limits()) {
        let plan = plan(&world, &limits);
        let (used, used_here) = live_counts(&world);
        prop_assert_eq!((plan.slots.used, plan.slots.used_here), (used, used_here));
        let started = plan.dispatched().len() as u32;
        prop_assert!(started <= plan.slots.free);
        if started > 0 {
            prop_assert!(used + started <= limits.max);
            prop_assert!(used_here + started <= limits.max_per_host);
        }
    }

    #[test]
    fn never_dispatches_an_issue_with_an_open_dependency(world in any_world(), limits in any_limits()) {
        let plan = plan(&world, &limits);
        for number in plan.dispatched() {
            let issue = world.issues.iter().find(|issue| issue.number == number);
            prop_assert!(issue.is_some());
            let Some(issue) = issue else { continue };
            prop_assert!(issue.open);
            let wanted = dependencies(&issue.body)
                .into_iter()
                .chain(issue.blocked_by.iter().copied())
                .chain(issue.open_sub_issues.iter().copied())
                .filter(|dep| *dep != number);
            for dep in wanted {
                let met = world.issues.iter().find(|other| other.number == dep)
                    .is_some_and(|other| !other.open || other.state.state == State::Completed);
                prop_assert!(met, "#{} dispatched with #{} not met", number, dep);
            }
        }
    }

    #[test]
    fn dispatches_only_what_the_rules_allow(world in any_world(), limits in any_limits()) {
        let plan = plan(&world, &limits);
        if plan.stopped.is_some() {
            prop_assert!(plan.actions.is_empty());
        }
        for action in &plan.actions {
            let issue = world.issues.iter().find(|issue| issue.number == action.issue());
            prop_assert!(issue.is_some_and(|issue| issue.open));
            let Some(issue) = issue else { continue };
            let leases: Vec<_> = world.leases.iter().filter(|l| l.issue == issue.number).collect();
            prop_assert!(leases.iter().all(|l| l.lease.as_ref().is_ok_and(|lease| lease.status(world.now) != LeaseStatus::Live)));
            prop_assert!(issue.state.ignored.is_empty());
            match action {
                Action::Recover { .. } => {
                    prop_assert!(matches!(issue.state.state, State::Assigned | State::Working));
                }
                Action::Dispatch { reason, attempt, .. } => {
                    prop_assert!(issue.state.attempts < u64::from(limits.max_attempts));
                    prop_assert!(*attempt > issue.state.attempt.unwrap_or(0));
                    for lease in leases.iter().filter_map(|entry| entry.lease.as_ref().ok()) {
                        prop_assert!(*attempt > u64::from(lease.attempt));
                    }
                    prop_assert!(!matches!(
                        issue.state.state,
                        State::Blocked | State::InReview | State::Approved | State::Completed
                            | State::Cancelled | State::NeedsHuman
                    ));
                    prop_assert!(!limits.exclude_labels.iter().any(|label| has_label(issue, label)));
                    if *reason == DispatchReason::New {
                        prop_assert_eq!(issue.state.state, State::Unassigned);
                        prop_assert!(limits.pickup_labels.iter().all(|label| has_label(issue, label)));
                    }
                }
            }
        }
    }

    #[test]
    fn one_action_per_issue_except_recover_then_dispatch(world in any_world(), limits in any_limits()) {
        let plan = plan(&world, &limits);
        let mut per_issue: BTreeMap<u64, Vec<&Action>> = BTreeMap::new();
        for action in &plan.actions {
            per_issue.entry(action.issue()).or_default().push(action);
        }
        for (issue, actions) in per_issue {
            let shape: Vec<&str> = actions.iter().map(|action| match action {
                Action::Recover { .. } => "recover",
                Action::Dispatch { .. } => "dispatch",
            }).collect();
            prop_assert!(
                shape == ["dispatch"] || shape == ["recover"] || shape == ["recover", "dispatch"],
                "#{}: {:?}", issue, shape
            );
        }
        // Every open issue is dispatched or waiting, never both, never neither.
        let dispatched: BTreeSet<u64> = plan.dispatched().into_iter().collect();
        let waiting: Vec<u64> = plan.waiting.iter().map(|waiting| waiting.issue).collect();
        let waiting_set: BTreeSet<u64> = waiting.iter().copied().collect();
        prop_assert_eq!(waiting.len(), waiting_set.len());
        prop_assert!(dispatched.is_disjoint(&waiting_set));
        let open: BTreeSet<u64> = world.issues.iter().filter(|i| i.open).map(|i| i.number).collect();
        let covered: BTreeSet<u64> = dispatched.union(&waiting_set).copied().collect();
        prop_assert_eq!(covered, open);
        prop_assert!(plan.waiting.iter().all(|waiting| waiting.reason != NotReady::Closed));
    }

    #[test]
    fn the_plan_is_deterministic_whatever_the_input_order(
        world in any_world(),
        limits in any_limits(),
        seed in any::<u64>(),
    ) {
        let first = plan(&world, &limits);
        prop_assert_eq!(&first, &plan(&world, &limits));
        let mut shuffled = world.clone();
        shuffle(&mut shuffled.issues, seed);
        shuffle(&mut shuffled.leases, seed.rotate_left(17));
        prop_assert_eq!(&first, &plan(&shuffled, &limits));
        // And it always serialises.
        prop_assert!(serde_json::to_string(&first).is_ok());
    }

    #[test]
    fn dependencies_never_panic_and_only_name_references_in_the_body(body in any::<String>()) {
        for number in dependencies(&body) {
            prop_assert!(number > 0);
            let reference = format!("#{number}");
            prop_assert!(body.contains(&reference));
        }
    }

    #[test]
    fn dependencies_are_found_in_generated_phrasings(
        numbers in prop::collection::btree_set(1u64..100_000, 1..5),
        keyword in prop::sample::select(vec!["Depends on", "depends on:", "BLOCKED BY", "Blocked by:"]),
        separator in prop::sample::select(vec![", ", " and ", " & ", "\n- ", "; ", " "]),
        prefix in "[a-z .\n]{0,20}",
    ) {
        let list = numbers.iter().map(|n| format!("#{n}")).collect::<Vec<_>>().join(separator);
        let body = format!("{prefix}\n{keyword} {list}\nThanks.");
        prop_assert_eq!(dependencies(&body), numbers.into_iter().collect::<Vec<_>>());
    }
}

/// A deterministic Fisher-Yates shuffle (splitmix64), so a failing case reproduces.
fn shuffle<T>(items: &mut [T], mut seed: u64) {
    for index in (1..items.len()).rev() {
        seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut mixed = seed;
        mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        mixed ^= mixed >> 31;
        let other = (mixed % (index as u64 + 1)) as usize;
        items.swap(index, other);
    }
}

#[test]
fn generated_worlds_reach_every_kind_of_decision() {
    // A sanity check on the generators: the properties are only as good as the plans they visit.
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let mut seen = BTreeSet::new();
    for _ in 0..2_000 {
        let (Ok(world), Ok(limits)) = (
            any_world().new_tree(&mut runner).map(|tree| tree.current()),
            any_limits()
                .new_tree(&mut runner)
                .map(|tree| tree.current()),
        ) else {
            continue;
        };
        let plan = plan(&world, &limits);
        for action in &plan.actions {
            seen.insert(match action {
                Action::Dispatch { reason, .. } => reason.as_str(),
                Action::Recover { .. } => "recover",
            });
        }
        if plan.dispatched().len() >= 2 {
            seen.insert("several dispatches");
        }
        if plan.stopped.is_some() {
            seen.insert("stopped");
        }
        for waiting in &plan.waiting {
            seen.insert(waiting.reason.code());
        }
    }
    let expected = [
        "new",
        "continue_handover",
        "continue_answered",
        "changes_requested",
        "retry_failed",
        "recovered",
        "recover",
        "several dispatches",
        "stopped",
        "missing_label",
        "excluded",
        "leased",
        "depends_on",
        "unknown_dependency",
        "open_sub_issues",
        "state",
        "attempts_used",
        "newer_format",
        "unreadable_lease",
        "no_lease",
        "no_slot",
        "rate_reserve",
    ];
    let missing: Vec<&str> = expected
        .into_iter()
        .filter(|kind| !seen.contains(kind))
        .collect();
    assert!(missing.is_empty(), "never reached: {missing:?}");
}
