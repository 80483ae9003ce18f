use chrono::{DateTime, TimeDelta, Utc};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::app::read_tail;
use super::*;
use crate::github::ObservedLease;
use crate::observe::{IssueLease, ObservedIssue};
use crate::protocol::lease::{LEASE_VERSION, Lease, LeaseState};
use crate::protocol::{
    Assignment, Event, EventBody, FoldPolicy, ObservedEvent, fold, render as render_marker,
};
use crate::sync::SyncReport;

const NOW: &str = "2026-11-21T10:00:00Z";

fn at(text: &str) -> DateTime<Utc> {
    text.parse().unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}

fn minutes(m: i64) -> DateTime<Utc> {
    at(NOW) + TimeDelta::minutes(m)
}

/// An issue whose events are `bodies`, posted one minute apart ending `ends_ago` minutes before
/// now, by the token's own login; with `lease`: (state, renewed minutes from now, expires
/// minutes from now).
fn issue(
    number: u64,
    title: &str,
    open: bool,
    bodies: Vec<EventBody>,
    ends_ago: i64,
    lease: Option<(LeaseState, i64, i64)>,
) -> ObservedIssue {
    let count = i64::try_from(bodies.len()).unwrap_or(0);
    let comments: Vec<ObservedEvent> = bodies
        .into_iter()
        .enumerate()
        .map(|(index, body)| {
            let index_i64 = i64::try_from(index).unwrap_or(0);
            let event = Event {
                issue: number,
                attempt: 1,
                worker: format!("worker-1-{number}"),
                op: format!("op-{number}-{index}"),
                at: minutes(-ends_ago - (count - 1 - index_i64)),
                body,
            };
            let id = number * 100 + u64::try_from(index).unwrap_or(0);
            ObservedEvent::from_comment(id, "crew-bot", "NONE", &render_marker(&event))
        })
        .collect();
    let lease = lease.map(|(state, renewed, expires)| {
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
                acquired_at: minutes(-60),
                renewed_at: minutes(renewed),
                expires_at: minutes(expires),
                state,
            }),
        };
        IssueLease {
            status: observed.status(at(NOW)),
            observed,
        }
    });
    let newest_comment_id =
        (count > 0).then(|| number * 100 + u64::try_from(count - 1).unwrap_or(0));
    ObservedIssue {
        number,
        title: title.to_string(),
        open,
        state: fold(number, comments, Some(1), &FoldPolicy::new("crew-bot")),
        lease,
        newest_comment_id,
    }
}

fn assigned() -> EventBody {
    EventBody::Assigned(Assignment {
        host: Some("laptop".to_string()),
        ..Assignment::default()
    })
}

/// #1 working with a live lease, #2 blocked, #3 in review with PR #17, #4 completed and closed.
fn observed(first_title: &str) -> Observed {
    let issues = vec![
        issue(
            1,
            first_title,
            true,
            vec![
                assigned(),
                EventBody::Started {},
                EventBody::Progress {
                    message: "half way".to_string(),
                },
            ],
            2,
            Some((LeaseState::Held, -5, 25)),
        ),
        issue(
            2,
            "Paint the widgets blue",
            true,
            vec![
                assigned(),
                EventBody::Started {},
                EventBody::Blocked {
                    question: "Which blue?".to_string(),
                },
            ],
            10,
            None,
        ),
        issue(
            3,
            "Document the widget API",
            true,
            vec![
                assigned(),
                EventBody::Started {},
                EventBody::InReview { pr: 17 },
            ],
            30,
            Some((LeaseState::Released, -31, -1)),
        ),
        issue(
            4,
            "An old finished issue",
            false,
            vec![
                assigned(),
                EventBody::Started {},
                EventBody::InReview { pr: 9 },
                EventBody::Approved { pr: 9 },
                EventBody::Completed { pr: Some(9) },
            ],
            120,
            None,
        ),
    ];
    Observed {
        repo: "acme/widgets".parse().unwrap_or_else(|_| unreachable!()),
        now: at(NOW),
        sync: SyncReport::default(),
        leases: issues
            .iter()
            .filter_map(|issue| issue.lease.as_ref().map(|lease| lease.observed.clone()))
            .collect(),
        issues,
    }
}

fn slots() -> Slots {
    Slots {
        max: 4,
        used: 1,
        max_per_host: 2,
        used_here: 1,
        free: 1,
    }
}

fn model_with_title(first_title: &str) -> Model {
    let observed = observed(first_title);
    let local = [LocalLog {
        issue: 1,
        worker: "worker-1-1".to_string(),
        path: PathBuf::from("/nowhere/worker-1-1.log"),
    }];
    Model::build(Inputs {
        observed: &observed,
        slots: slots(),
        rate: Some(RateSnapshot {
            limit: 5000,
            remaining: 4990,
            used: Some(10),
            reset: minutes(42),
        }),
        local: &local,
        now: at(NOW),
    })
}

fn model() -> Model {
    model_with_title("Make the widgets spin faster")
}

fn view_with_log(model: &Model) -> View {
    let mut view = View::default();
    view.settle(model);
    view.log = Some(LogTail {
        issue: 1,
        worker: "worker-1-1".to_string(),
        lines: vec!["compiling widgets".to_string(), "tests pass".to_string()],
    });
    view
}

/// The screen, one string per row.
fn draw(model: &Model, view: &View, width: u16, height: u16) -> Vec<String> {
    let Ok(mut terminal) = Terminal::new(TestBackend::new(width, height));
    let drawn = terminal.draw(|frame| render(frame, Some(model), view));
    assert!(drawn.is_ok());
    let buffer = terminal.backend().buffer();
    (0..buffer.area.height)
        .map(|y| {
            (0..buffer.area.width)
                .map(|x| buffer[(x, y)].symbol())
                .collect::<String>()
        })
        .collect()
}

fn line_with<'s>(screen: &'s [String], needle: &str) -> Option<&'s String> {
    screen.iter().find(|line| line.contains(needle))
}

#[test]
fn rows_are_the_open_issues_being_watched_with_time_left_and_heartbeat_age() {
    let model = model();
    let numbers: Vec<u64> = model.rows.iter().map(|row| row.issue).collect();
    assert_eq!(
        numbers,
        [1, 2, 3],
        "the closed, completed issue is not watched"
    );

    let working = &model.rows[0];
    assert_eq!(working.state, State::Working);
    assert_eq!(working.lease, Some(LeaseStatus::Live));
    assert_eq!(working.time_left, Some(25 * 60));
    assert_eq!(working.heartbeat_age, Some(5 * 60));
    assert_eq!(working.host.as_deref(), Some("laptop"));
    assert_eq!(
        working.log.as_ref().map(|log| log.worker.as_str()),
        Some("worker-1-1")
    );

    let blocked = &model.rows[1];
    assert_eq!(blocked.state, State::Blocked);
    assert_eq!(blocked.question.as_deref(), Some("Which blue?"));
    assert_eq!((blocked.lease, blocked.time_left), (None, None));
    assert!(blocked.log.is_none(), "no worker of #2 on this clone");

    let review = &model.rows[2];
    assert_eq!((review.state, review.pr), (State::InReview, Some(17)));
    assert_eq!(review.lease, Some(LeaseStatus::Released));
    assert_eq!(
        (review.time_left, review.heartbeat_age),
        (None, None),
        "a released lease says nothing about a worker"
    );

    let rate = model.rate.unwrap_or(RateLine {
        remaining: 0,
        limit: 0,
        resets_in: 0,
    });
    assert_eq!(
        (rate.remaining, rate.limit, rate.resets_in),
        (4990, 5000, 42 * 60)
    );
}

#[test]
fn an_expired_lease_has_negative_time_left() {
    let mut observed = observed("x");
    observed.issues[0] = issue(
        1,
        "x",
        true,
        vec![assigned(), EventBody::Started {}],
        40,
        Some((LeaseState::Held, -40, -10)),
    );
    let model = Model::build(Inputs {
        observed: &observed,
        slots: slots(),
        rate: None,
        local: &[],
        now: at(NOW),
    });
    let row = model.row(1).cloned();
    assert_eq!(
        row.map(|row| (row.lease, row.time_left, row.heartbeat_age)),
        Some((Some(LeaseStatus::Expired), Some(-600), Some(2400)))
    );
    let screen = draw(&model, &View::default(), 120, 40);
    assert!(line_with(&screen, "expired 10m").is_some(), "{screen:#?}");
}

#[test]
fn recent_events_are_the_newest_ten_across_issues_newest_first() {
    let model = model();
    assert_eq!(model.events.len(), RECENT_EVENTS, "14 events, 10 kept");
    let ages: Vec<i64> = model.events.iter().map(|event| event.age).collect();
    let mut sorted = ages.clone();
    sorted.sort_unstable();
    assert_eq!(ages, sorted, "newest (youngest) first");
    assert_eq!(
        (
            model.events[0].issue,
            model.events[0].kind,
            model.events[0].age
        ),
        (1, EventKind::Progress, 120)
    );
    assert_eq!(model.events[0].author, "crew-bot");
    let old: Vec<i64> = model
        .events
        .iter()
        .filter(|event| event.issue == 4)
        .map(|event| event.age)
        .collect();
    assert_eq!(
        old,
        [2 * 3600],
        "only the newest event of #4 is among the ten"
    );
}

#[test]
fn events_at_the_same_instant_keep_their_posting_order_newest_first() {
    let mut observed = observed("x");
    for issue in &mut observed.issues {
        for applied in &mut issue.state.events {
            applied.event.at = at(NOW);
        }
    }
    let model = Model::build(Inputs {
        observed: &observed,
        slots: slots(),
        rate: None,
        local: &[],
        now: at(NOW),
    });
    let ids: Vec<u64> = model.events.iter().map(|event| event.comment_id).collect();
    assert_eq!(ids, [404, 403, 402, 401, 400, 302, 301, 300, 202, 201]);
}

#[test]
fn a_large_terminal_shows_every_pane() {
    let model = model();
    let view = view_with_log(&model);
    let screen = draw(&model, &view, 120, 40);
    let text = screen.join("\n");
    assert!(
        line_with(&screen, "slots 1/4 used, 1 free here (1/2 on this host)").is_some(),
        "{text}"
    );
    assert!(
        line_with(&screen, "rate limit 4990/5000 left, resets in 42m").is_some(),
        "{text}"
    );
    let working = line_with(&screen, "#1 ").map(String::as_str).unwrap_or("");
    for needle in [
        "Make the widgets spin faster",
        "working",
        "25m left",
        "5m",
        "worker-1-1",
    ] {
        assert!(working.contains(needle), "{needle} in {working:?}\n{text}");
    }
    let blocked = line_with(&screen, "Paint the widgets blue")
        .map(String::as_str)
        .unwrap_or("");
    assert!(blocked.contains("blocked"), "{text}");
    let review = line_with(&screen, "Document the widget API")
        .map(String::as_str)
        .unwrap_or("");
    assert!(
        review.contains("in_review") && review.contains("#17"),
        "{text}"
    );
    assert!(!text.contains("An old finished issue"), "{text}");
    assert!(line_with(&screen, "recent events").is_some(), "{text}");
    assert!(line_with(&screen, "progress").is_some(), "{text}");
    assert!(
        line_with(&screen, "log of #1 (worker-1-1)").is_some(),
        "{text}"
    );
    assert!(line_with(&screen, "tests pass").is_some(), "{text}");
    assert!(line_with(&screen, "q quit").is_some(), "{text}");
}

#[test]
fn a_small_terminal_keeps_the_essential_columns() {
    let model = model();
    let view = view_with_log(&model);
    let screen = draw(&model, &view, 60, 15);
    let text = screen.join("\n");
    assert!(line_with(&screen, "slots 1/4").is_some(), "{text}");
    for (number, state, title) in [
        ("#1", "working", "Make the"),
        ("#2", "blocked", "Paint the"),
        ("#3", "in_review", "Document"),
    ] {
        let line = line_with(&screen, &format!("{number} "))
            .map(String::as_str)
            .unwrap_or("");
        assert!(
            line.contains(state) && line.contains(title),
            "{number} {state} {title}\n{text}"
        );
    }
    assert!(
        !text.contains("recent events"),
        "no room for the panes\n{text}"
    );
}

#[test]
fn a_long_title_is_cut_not_wrapped() {
    let long = format!("Spin {} end-of-title", "very ".repeat(60));
    let model = model_with_title(&long);
    let view = View::default();
    for (width, height) in [(120, 40), (60, 15)] {
        let screen = draw(&model, &view, width, height);
        let text = screen.join("\n");
        assert!(!text.contains("end-of-title"), "{text}");
        let index = screen.iter().position(|line| line.contains("#1 "));
        let line = index.map(|index| screen[index].as_str()).unwrap_or("");
        assert!(line.contains('…') && line.contains("working"), "{text}");
        let next = index
            .and_then(|index| screen.get(index + 1))
            .map(String::as_str);
        assert!(
            next.is_some_and(|next| next.contains("#2 ")),
            "the next row follows at once\n{text}"
        );
    }
}

#[test]
fn no_size_panics_and_tiny_ones_degrade_to_a_notice() {
    let model = model();
    let mut view = view_with_log(&model);
    for mode in [Mode::Table, Mode::Log, Mode::Confirm(Command::Cancel(1))] {
        view.mode = mode;
        for width in [
            0, 1, 5, 10, 20, 23, 24, 25, 30, 37, 40, 50, 57, 59, 60, 61, 80, 99, 100, 120,
        ] {
            for height in [0, 1, 2, 3, 4, 5, 8, 11, 12, 17, 18, 25, 40] {
                draw(&model, &view, width, height);
            }
        }
    }
    let screen = draw(&model, &View::default(), 30, 2);
    assert!(
        screen[0].starts_with("crew: terminal too small"),
        "{screen:?}"
    );
}

#[test]
fn the_log_view_fills_the_body_with_the_selected_workers_tail() {
    let model = model();
    let mut view = view_with_log(&model);
    view.mode = Mode::Log;
    let screen = draw(&model, &view, 80, 20);
    let text = screen.join("\n");
    assert!(line_with(&screen, "compiling widgets").is_some(), "{text}");
    assert!(
        !text.contains("Paint the widgets blue"),
        "the table gives way\n{text}"
    );

    // A worker on another host has no log here, and the pane says where it runs.
    view.selected = Some(3);
    let screen = draw(&model, &view, 80, 20);
    assert!(
        line_with(&screen, "runs on laptop, not on this clone").is_some(),
        "{screen:#?}"
    );
}

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

#[test]
fn keys_select_confirm_and_quit() {
    let model = model();
    let mut view = View::default();
    view.settle(&model);
    assert_eq!(view.selected, Some(1));
    assert_eq!(view.on_key(&model, key(KeyCode::Up)), Outcome::Redraw);
    assert_eq!(view.on_key(&model, key(KeyCode::Down)), Outcome::Selected);
    assert_eq!(view.selected, Some(2));

    // Approve needs a review; the refusal is a footer message, nothing runs.
    assert_eq!(
        view.on_key(&model, key(KeyCode::Char('a'))),
        Outcome::Redraw
    );
    assert!(
        view.message
            .as_deref()
            .is_some_and(|m| m.contains("only an issue in review"))
    );
    assert_eq!(view.mode, Mode::Table);

    // Answer: type, Enter, then confirm.
    view.on_key(&model, key(KeyCode::Char('A')));
    for c in "blu".chars() {
        view.on_key(&model, key(KeyCode::Char(c)));
    }
    view.on_key(&model, key(KeyCode::Backspace));
    view.on_key(&model, key(KeyCode::Char('e')));
    assert_eq!(
        view.mode,
        Mode::Answer {
            issue: 2,
            text: "ble".to_string()
        }
    );
    let screen = draw(&model, &view, 120, 40);
    assert!(
        line_with(&screen, "answer #2 (Which blue?): ble").is_some(),
        "{screen:#?}"
    );
    assert_eq!(view.on_key(&model, key(KeyCode::Enter)), Outcome::Redraw);
    assert_eq!(
        view.on_key(&model, key(KeyCode::Char('y'))),
        Outcome::Run(Command::Answer(2, "ble".to_string()))
    );

    // Cancel asks first; anything but y does nothing.
    view.on_key(&model, key(KeyCode::Char('c')));
    assert_eq!(view.mode, Mode::Confirm(Command::Cancel(2)));
    let screen = draw(&model, &view, 120, 40);
    assert!(
        line_with(&screen, "cancel #2").is_some_and(|l| l.contains("y/n")),
        "{screen:#?}"
    );
    assert_eq!(
        view.on_key(&model, key(KeyCode::Char('n'))),
        Outcome::Redraw
    );
    assert_eq!(view.mode, Mode::Table);
    view.on_key(&model, key(KeyCode::Char('c')));
    assert_eq!(
        view.on_key(&model, key(KeyCode::Char('y'))),
        Outcome::Run(Command::Cancel(2))
    );

    // Approve the one in review.
    view.on_key(&model, key(KeyCode::Down));
    view.on_key(&model, key(KeyCode::Char('a')));
    assert_eq!(
        view.on_key(&model, key(KeyCode::Char('y'))),
        Outcome::Run(Command::Approve(3))
    );

    // l toggles the log; Esc leaves it, then quits; so do q and Ctrl-C.
    view.on_key(&model, key(KeyCode::Char('l')));
    assert_eq!(view.mode, Mode::Log);
    assert_eq!(view.on_key(&model, key(KeyCode::Esc)), Outcome::Redraw);
    assert_eq!(view.mode, Mode::Table);
    assert_eq!(view.on_key(&model, key(KeyCode::Esc)), Outcome::Quit);
    assert_eq!(view.on_key(&model, key(KeyCode::Char('q'))), Outcome::Quit);
    view.on_key(&model, key(KeyCode::Char('A')));
    assert_eq!(
        view.on_key(
            &model,
            KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)
        ),
        Outcome::Quit
    );
}

#[test]
fn the_selection_follows_its_issue_across_refreshes() {
    let model = model();
    let mut view = View {
        selected: Some(3),
        ..View::default()
    };
    let mut fewer = model.clone();
    fewer.rows.retain(|row| row.issue != 1);
    assert_eq!(view.settle(&fewer), Some(1));
    assert_eq!(view.selected, Some(3));
    fewer.rows.retain(|row| row.issue != 3);
    assert_eq!(view.settle(&fewer), Some(0));
    assert_eq!(view.selected, Some(2));
    fewer.rows.clear();
    assert_eq!(view.settle(&fewer), None);
    assert_eq!(view.selected, None);
}

#[test]
fn a_log_tail_is_the_end_of_the_file_redacted() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("worker.log");
    assert_eq!(read_tail(&path, &[])?, Vec::<String>::new(), "no log yet");
    let mut text = String::new();
    for line in 0..20_000 {
        text.push_str(&format!("line {line}\n"));
    }
    text.push_str("token ghp_secret123 leaked\nlast");
    std::fs::write(&path, text)?;
    let lines = read_tail(&path, &["ghp_secret123".to_string()])?;
    assert_eq!(lines.last().map(String::as_str), Some("last"));
    assert!(
        lines.iter().all(|line| !line.contains("ghp_secret123")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .all(|line| line.starts_with("line ") || line.starts_with("token") || line == "last")
    );
    assert!(lines.len() <= 500 && lines.len() > 100, "{}", lines.len());
    Ok(())
}
