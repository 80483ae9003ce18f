//! Property tests for the codec and the fold: the claims the rest of crew builds on.
//!
//! - render then parse is the identity for every kind, whatever the strings hold;
//! - no text, around a marker or instead of one, makes parsing panic or misread the marker;
//! - for any interleaving of events from several attempts, stale writers, spoofs and broken
//!   markers, at most one attempt is active and spoofs change nothing;
//! - folding a prefix and applying the rest equals folding the whole (incremental sync is sound).
//!
//! Case counts stay at 256 so the suite stays fast.

use chrono::{DateTime, Utc};
use proptest::prelude::*;
use proptest::strategy::ValueTree;

use super::event::{Assignment, Event, EventBody, EventKind, Handover};
use super::fold::{Fold, FoldPolicy, IssueState, ObservedEvent, State, fold, next_state};
use super::marker::{Marker, parse, render, render_comment};
use super::trust::IgnoreReason;

const ISSUE: u64 = 42;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        ..ProptestConfig::default()
    }
}

/// Strings built to hurt: comment delimiters, newlines, quotes, escapes, any unicode.
fn tricky_string() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        6 => any::<char>().prop_map(String::from),
        1 => Just("-->".to_owned()),
        1 => Just("--!>".to_owned()),
        1 => Just("<!--".to_owned()),
        1 => Just("<!-- crew:v1 ".to_owned()),
        1 => Just("<!-- crew:v2 {} -->".to_owned()),
        1 => Just("```json\n".to_owned()),
        1 => Just("```".to_owned()),
        1 => Just("\n".to_owned()),
        1 => Just("\r\n".to_owned()),
        1 => Just("\"".to_owned()),
        1 => Just("\\".to_owned()),
        1 => Just("\\u003e".to_owned()),
        1 => Just("é😀\u{2028}\u{0}".to_owned()),
        1 => Just("{\"assigned\": true}".to_owned()),
    ];
    prop::collection::vec(piece, 0..12).prop_map(|pieces| pieces.concat())
}

fn non_empty_string() -> impl Strategy<Value = String> {
    tricky_string().prop_map(|s| if s.is_empty() { "w".to_owned() } else { s })
}

fn optional_string() -> impl Strategy<Value = Option<String>> {
    prop::option::of(tricky_string())
}

fn timestamp() -> impl Strategy<Value = DateTime<Utc>> {
    // 1970 to 2100, any nanosecond (no leap-second representation).
    (0i64..4_102_444_800, 0u32..1_000_000_000).prop_map(|(seconds, nanos)| {
        DateTime::from_timestamp(seconds, nanos).unwrap_or(DateTime::UNIX_EPOCH)
    })
}

fn body() -> impl Strategy<Value = EventBody> {
    prop_oneof![
        (
            optional_string(),
            optional_string(),
            optional_string(),
            optional_string(),
            optional_string()
        )
            .prop_map(|(host, agent, profile, branch, worktree)| {
                EventBody::Assigned(Assignment {
                    host,
                    agent,
                    profile,
                    branch,
                    worktree,
                })
            }),
        Just(EventBody::Started {}),
        tricky_string().prop_map(|message| EventBody::Progress { message }),
        tricky_string().prop_map(|question| EventBody::Blocked { question }),
        tricky_string().prop_map(|answer| EventBody::Answered { answer }),
        (
            tricky_string(),
            prop::collection::vec(tricky_string(), 0..4),
            prop::collection::vec(tricky_string(), 0..4),
            optional_string(),
            optional_string()
        )
            .prop_map(|(summary, next_steps, files, base_sha, head_sha)| {
                EventBody::Handover(Handover {
                    summary,
                    next_steps,
                    files,
                    base_sha,
                    head_sha,
                })
            }),
        any::<u64>().prop_map(|pr| EventBody::InReview { pr }),
        (any::<u64>(), optional_string())
            .prop_map(|(pr, body)| EventBody::ChangesRequested { pr, body }),
        any::<u64>().prop_map(|pr| EventBody::Approved { pr }),
        prop::option::of(any::<u64>()).prop_map(|pr| EventBody::Completed { pr }),
        tricky_string().prop_map(|reason| EventBody::Failed { reason }),
        optional_string().prop_map(|reason| EventBody::Cancelled { reason }),
        Just(EventBody::Released {}),
    ]
}

fn event() -> impl Strategy<Value = Event> {
    (
        1..=u64::MAX,
        1..=u64::MAX,
        non_empty_string(),
        non_empty_string(),
        timestamp(),
        body(),
    )
        .prop_map(|(issue, attempt, worker, op, at, body)| Event {
            issue,
            attempt,
            worker,
            op,
            at,
            body,
        })
}

fn blank() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![Just(" "), Just("\t"), Just("\n"), Just("\r\n")],
        0..4,
    )
    .prop_map(|pieces| pieces.concat())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn render_then_parse_is_the_identity(event in event(), before in blank(), after in tricky_string()) {
        let line = render(&event);
        prop_assert!(!line.contains('\n'));
        prop_assert!(line.ends_with(" -->"));
        prop_assert_eq!(line.matches("-->").count(), 1);
        prop_assert!(!line["<!--".len()..line.len() - "-->".len()].contains(['<', '>']));
        let comment = format!("{before}{}", render_comment(&event, &after));
        prop_assert_eq!(parse(&comment), Ok(Some(Marker::Event(event.clone()))));
        // Text glued straight after the closing `-->` is human text too.
        let glued = format!("{line}{after}");
        prop_assert_eq!(parse(&glued), Ok(Some(Marker::Event(event))));
    }

    #[test]
    fn arbitrary_text_never_panics(text in tricky_string(), event in event()) {
        let _ = parse(&text);
        let _ = parse(&format!("<!-- crew:v1 {text}"));
        let _ = parse(&format!("<!-- crew:v1 {{\"kind\":\"started\",{text}}} -->"));
        let _ = parse(&format!("```json\n{text}\n```"));
        let _ = parse(&format!("```json\n{{\"assigned\": {text}}}\n```"));
        // A marker quoted below other text is never an event.
        let quoted = format!("{text}\n{}", render(&event));
        if !text.trim_start().starts_with("<!-- crew:")
            && !text.trim_start().starts_with("```json")
            && !text.trim().is_empty()
        {
            prop_assert!(!matches!(parse(&quoted), Ok(Some(Marker::Event(_)))));
        }
    }

    #[test]
    fn fold_invariants_hold_for_any_interleaving(steps in steps(), split in any::<prop::sample::Index>(), lease in 0u64..6) {
        let policy = FoldPolicy::new("crew-bot");
        let comments = build(&steps, &policy);
        let whole = fold(ISSUE, comments.clone(), None, &policy);

        // At most one attempt is active: assignments only move forward, and every other applied
        // event belongs to the attempt assigned last.
        let mut current: Option<u64> = None;
        for applied in &whole.events {
            if applied.event.kind() == EventKind::Assigned {
                prop_assert!(current.is_none_or(|c| applied.event.attempt > c));
                current = Some(applied.event.attempt);
            } else {
                prop_assert_eq!(Some(applied.event.attempt), current);
            }
        }
        prop_assert_eq!(whole.attempt, current);
        if whole.state.is_active() {
            prop_assert!(whole.attempt.is_some() && whole.worker.is_some());
        }

        // Spoofs never change anything but the list of what was ignored.
        let trusted: Vec<ObservedEvent> =
            comments.iter().filter(|c| is_trusted(&c.author)).cloned().collect();
        let without_spoofs = fold(ISSUE, trusted, None, &policy);
        prop_assert_eq!(strip_ignored(&whole), strip_ignored(&without_spoofs));
        for comment in comments.iter().filter(|c| !is_trusted(&c.author)) {
            if !matches!(comment.parsed, Ok(None)) {
                let ignored = whole.ignored.iter().find(|i| i.comment_id == comment.comment_id);
                prop_assert!(
                    matches!(ignored, Some(i) if matches!(i.reason, IgnoreReason::UntrustedAuthor { .. })),
                    "{:?}", ignored
                );
            }
        }

        // fold(prefix) then apply(rest) == fold(all).
        let split = split.index(comments.len() + 1);
        let mut incremental = Fold::new(ISSUE, policy.clone());
        for comment in &comments[..split] {
            prop_assert!(incremental.apply(comment.clone()).is_ok());
        }
        let mut prefix_then_rest = incremental.clone();
        for comment in &comments[split..] {
            prop_assert!(prefix_then_rest.apply(comment.clone()).is_ok());
        }
        let mut all = Fold::new(ISSUE, policy.clone());
        for comment in &comments {
            prop_assert!(all.apply(comment.clone()).is_ok());
        }
        prop_assert_eq!(&prefix_then_rest, &all);
        let lease = (lease > 0).then_some(lease);
        prop_assert_eq!(prefix_then_rest.view(lease), fold(ISSUE, comments.clone(), lease, &policy));

        // The lease's attempt never goes backwards in the view.
        let view = all.view(lease);
        prop_assert!(view.attempt >= lease);
        prop_assert!(view.attempt >= whole.attempt);
    }
}

/// One generated comment.
#[derive(Clone, Debug)]
struct Step {
    /// Pick among the kinds legal in the current state (a plausible history) or among all kinds.
    legal: bool,
    kind: usize,
    attempt: u64,
    /// 0..10: below 7 trusted, else a spoof.
    author: usize,
    /// 0..40: a few values make a broken, legacy, misaddressed or duplicate comment.
    variant: u8,
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    let step = (any::<bool>(), 0usize..64, 1u64..5, 0usize..10, 0u8..40).prop_map(
        |(legal, kind, attempt, author, variant)| Step {
            legal,
            kind,
            attempt,
            author,
            variant,
        },
    );
    prop::collection::vec(step, 0..48)
}

/// (login, association): the first three count, the rest are spoofs.
const AUTHORS: [(&str, &str); 6] = [
    ("crew-bot", "NONE"),
    ("maintainer", "OWNER"),
    ("teammate", "MEMBER"),
    ("outsider", "NONE"),
    ("drive-by", "CONTRIBUTOR"),
    ("first-timer", "FIRST_TIME_CONTRIBUTOR"),
];

fn is_trusted(login: &str) -> bool {
    AUTHORS[..3].iter().any(|(author, _)| *author == login)
}

fn sample_body(kind: EventKind) -> EventBody {
    match kind {
        EventKind::Assigned => EventBody::Assigned(Assignment::default()),
        EventKind::Started => EventBody::Started {},
        EventKind::Progress => EventBody::Progress {
            message: "m -->".to_owned(),
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

/// Turns steps into comments. A model fold follows along so that "legal" steps pick a kind the
/// issue's current state allows, which makes deep histories likely rather than rare.
fn build(steps: &[Step], policy: &FoldPolicy) -> Vec<ObservedEvent> {
    let mut model = Fold::new(ISSUE, policy.clone());
    let mut comments = Vec::new();
    let mut last_op = String::from("none");
    for (index, step) in steps.iter().enumerate() {
        let comment_id = 1000 + 3 * index as u64;
        let current = model.current();
        let (kind, attempt) = if step.legal {
            let legal: Vec<EventKind> = EventKind::ALL
                .into_iter()
                .filter(|kind| next_state(current.state, *kind).is_ok())
                .collect();
            let kind = if legal.is_empty() {
                EventKind::ALL[step.kind % EventKind::ALL.len()]
            } else {
                legal[step.kind % legal.len()]
            };
            let attempt = match (kind, current.attempt) {
                (EventKind::Assigned, attempt) => attempt.unwrap_or(0) + 1,
                (_, Some(attempt)) => attempt,
                (_, None) => step.attempt,
            };
            (kind, attempt)
        } else {
            (
                EventKind::ALL[step.kind % EventKind::ALL.len()],
                step.attempt,
            )
        };
        let op = if step.variant == 4 {
            last_op.clone()
        } else {
            format!("op-{comment_id}")
        };
        last_op = op.clone();
        let event = Event {
            issue: if step.variant == 3 { ISSUE + 1 } else { ISSUE },
            attempt,
            worker: format!("worker-{attempt}"),
            op,
            at: DateTime::from_timestamp(1_763_700_000 + index as i64 * 60, 0)
                .unwrap_or(DateTime::UNIX_EPOCH),
            body: sample_body(kind),
        };
        let text = match step.variant {
            0 => "<!-- crew:v1 {\"kind\": -->".to_owned(),
            1 => "<!-- crew:v2 {} -->".to_owned(),
            2 => "just a comment".to_owned(),
            5 => format!(
                "```json\n{{\"assigned\": true, \"worker_id\": \"legacy-{index}\", \"assigned_at\": \"2026-01-10T18:47:47Z\"}}\n```"
            ),
            6 => "```json\n{\"assigned\": false, \"cleared_at\": \"2026-01-10T19:00:00Z\"}\n```"
                .to_owned(),
            _ => render_comment(&event, "text"),
        };
        // Seven in ten comments are trusted, so spoofs are common but histories still get deep.
        let author = if step.author < 7 {
            step.author % 3
        } else {
            3 + step.author % 3
        };
        let (author, association) = AUTHORS[author];
        let observed = ObservedEvent::from_comment(comment_id, author, association, &text);
        let _ = model.apply(observed.clone());
        comments.push(observed);
    }
    comments
}

fn strip_ignored(state: &IssueState) -> IssueState {
    IssueState {
        ignored: Vec::new(),
        ..state.clone()
    }
}

#[test]
fn generated_histories_reach_every_state() {
    // A sanity check on the generator: the property above is only as good as the states it visits.
    let policy = FoldPolicy::new("crew-bot");
    let mut seen = std::collections::BTreeSet::new();
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    for _ in 0..400 {
        let steps = steps().new_tree(&mut runner).map(|tree| tree.current());
        if let Ok(steps) = steps {
            let comments = build(&steps, &policy);
            let mut fold = Fold::new(ISSUE, policy.clone());
            for comment in comments {
                let _ = fold.apply(comment);
                seen.insert(fold.current().state);
            }
        }
    }
    let missing: Vec<State> = State::ALL
        .into_iter()
        .filter(|state| !seen.contains(state))
        .collect();
    assert!(missing.is_empty(), "never reached: {missing:?}");
}
