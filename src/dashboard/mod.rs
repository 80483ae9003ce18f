//! `crew status --watch` (and `crew watch`): a terminal dashboard of the workers, redrawn from a
//! warm observation every interval.
//!
//! This module is the pure half: a [`Model`] built from one observation (no I/O, no clock of its
//! own), the dashboard's interaction state ([`View`]) with its key handling ([`View::on_key`]),
//! and [`render`], which draws both into any ratatui `Frame`, so tests draw into a `TestBackend`.
//! The terminal loop, the refreshes and the actions are in [`app`].
//!
//! Decisions, and why:
//! - **One observation, one model.** Everything on screen (ages, time left, slots) is computed
//!   against the observation's instant, so a frame never mixes two moments; between refreshes
//!   the numbers stand still rather than drift from what GitHub said.
//! - **Rows are the issues that need watching**: an active state, a live lease, or a failure
//!   waiting for a human. Finished issues are `crew status --all`'s business.
//! - **Selection follows the issue, not the row index**, so a refresh that adds or removes a row
//!   keeps the cursor on the issue the user was looking at (and a cancel confirmation never
//!   slides onto another issue).
//! - **Columns give way by priority.** Issue, state and title always show; lease time left,
//!   heartbeat age, attempt, pull request, worker and host are added while the title keeps a
//!   readable width. Text from GitHub and logs is sanitised and cut to its cell with `…`: a
//!   title never wraps into the next row and never carries escape sequences to the terminal.
//! - **Small terminals lose panes, not correctness.** The events and log panes appear only when
//!   there is room; below a minimum size a one-line notice is drawn instead of a broken layout.

pub mod app;

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use ratatui::Frame;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Row as TableRow, Table, TableState};

use crate::github::RateSnapshot;
use crate::observe::{Observed, sanitize_line, short_duration};
use crate::protocol::lease::LeaseStatus;
use crate::protocol::{EventKind, State};
use crate::scheduler::Slots;

/// How many recent events the model keeps.
pub const RECENT_EVENTS: usize = 10;

/// Below this many columns or rows only a notice is drawn.
const MIN_WIDTH: u16 = 24;
const MIN_HEIGHT: u16 = 3;

/// A worker of this clone whose log the dashboard can show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalLog {
    pub issue: u64,
    pub worker: String,
    pub path: PathBuf,
}

/// What one refresh observed, for [`Model::build`].
pub struct Inputs<'a> {
    pub observed: &'a Observed,
    /// The plan's slots (`scheduler::plan`).
    pub slots: Slots,
    /// GitHub's core rate-limit figures, when a response carried them.
    pub rate: Option<RateSnapshot>,
    /// Workers of this clone.
    pub local: &'a [LocalLog],
    /// The instant ages and time left are computed against.
    pub now: DateTime<Utc>,
}

/// Everything the dashboard shows, from one observation.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    pub repo: String,
    pub now: DateTime<Utc>,
    pub slots: Slots,
    pub rate: Option<RateLine>,
    pub rows: Vec<Row>,
    /// The newest events across all issues, newest first.
    pub events: Vec<RecentEvent>,
}

/// The core rate limit: points left, of how many, and seconds until it resets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLine {
    pub remaining: u64,
    pub limit: u64,
    pub resets_in: i64,
}

/// One issue being watched.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub issue: u64,
    pub title: String,
    pub state: State,
    pub attempt: Option<u64>,
    pub worker: Option<String>,
    pub host: Option<String>,
    pub lease: Option<LeaseStatus>,
    /// Seconds until the lease expires (negative: expired that long ago).
    pub time_left: Option<i64>,
    /// Seconds since the lease was last renewed: how long ago the worker was last heard of.
    pub heartbeat_age: Option<i64>,
    pub pr: Option<u64>,
    /// The open question while blocked.
    pub question: Option<String>,
    /// The log of this issue's worker, when it runs on this clone.
    pub log: Option<LocalLog>,
}

/// One event, for the recent-events pane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecentEvent {
    pub issue: u64,
    pub kind: EventKind,
    pub author: String,
    pub at: DateTime<Utc>,
    /// Seconds between `at` and the model's `now`.
    pub age: i64,
    comment_id: u64,
}

impl Model {
    /// The model of one observation. Pure.
    pub fn build(inputs: Inputs<'_>) -> Model {
        let now = inputs.now;
        let rows = inputs
            .observed
            .issues
            .iter()
            .filter_map(|issue| {
                let lease = issue
                    .lease
                    .as_ref()
                    .and_then(|lease| lease.observed.lease.as_ref().ok());
                let status = lease.map(|lease| lease.status(now));
                let watched = issue.state.state.is_active()
                    || matches!(issue.state.state, State::Failed | State::NeedsHuman)
                    || status == Some(LeaseStatus::Live);
                if !issue.open || !watched {
                    return None;
                }
                // A released lease says nothing about a running worker: no time left, no beat.
                let held = lease.filter(|lease| lease.status(now) != LeaseStatus::Released);
                let worker = issue.state.worker.clone();
                let log = inputs
                    .local
                    .iter()
                    .find(|log| {
                        log.issue == issue.number
                            && worker.as_ref().is_none_or(|worker| *worker == log.worker)
                    })
                    .cloned();
                Some(Row {
                    issue: issue.number,
                    title: issue.title.clone(),
                    state: issue.state.state,
                    attempt: issue.state.attempt,
                    worker,
                    host: issue.host(),
                    lease: status,
                    time_left: held.map(|lease| (lease.expires_at - now).num_seconds()),
                    heartbeat_age: held.map(|lease| (now - lease.renewed_at).num_seconds()),
                    pr: issue.state.pr,
                    question: issue.state.question.clone(),
                    log,
                })
            })
            .collect();
        let mut events: Vec<RecentEvent> = inputs
            .observed
            .issues
            .iter()
            .flat_map(|issue| issue.state.events.iter())
            .map(|applied| RecentEvent {
                issue: applied.event.issue,
                kind: applied.event.body.kind(),
                author: applied.author.clone(),
                at: applied.event.at,
                age: (now - applied.event.at).num_seconds(),
                comment_id: applied.comment_id,
            })
            .collect();
        // Newest first; events claiming the same instant in the order they were posted.
        events.sort_by(|a, b| b.at.cmp(&a.at).then(b.comment_id.cmp(&a.comment_id)));
        events.truncate(RECENT_EVENTS);
        Model {
            repo: inputs.observed.repo.to_string(),
            now,
            slots: inputs.slots,
            rate: inputs.rate.map(|rate| RateLine {
                remaining: rate.remaining,
                limit: rate.limit,
                resets_in: (rate.reset - now).num_seconds(),
            }),
            rows,
            events,
        }
    }

    /// The row of `issue`.
    pub fn row(&self, issue: u64) -> Option<&Row> {
        self.rows.iter().find(|row| row.issue == issue)
    }
}

/// The last lines of a worker's log, as read by the app.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogTail {
    pub issue: u64,
    pub worker: String,
    pub lines: Vec<String>,
}

/// What the dashboard is doing with the keyboard.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Mode {
    #[default]
    Table,
    /// The selected worker's log fills the body.
    Log,
    /// Waiting for y/n before running a command.
    Confirm(Command),
    /// Typing the answer to a blocked issue's question.
    Answer { issue: u64, text: String },
}

/// A command the dashboard runs, as the CLI would.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Cancel(u64),
    Approve(u64),
    Answer(u64, String),
}

impl Command {
    pub fn issue(&self) -> u64 {
        match self {
            Command::Cancel(issue) | Command::Approve(issue) | Command::Answer(issue, _) => *issue,
        }
    }

    /// The question asked before running it.
    fn question(&self) -> String {
        match self {
            Command::Cancel(issue) => {
                format!("cancel #{issue}: stop its worker, save its work and record it cancelled?")
            }
            Command::Approve(issue) => format!("approve the pull request of #{issue}?"),
            Command::Answer(issue, _) => format!("send this answer to #{issue}?"),
        }
    }
}

/// What a key asks of the app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing beyond a redraw.
    Redraw,
    /// The selection moved (the app reads the new worker's log).
    Selected,
    Run(Command),
    Quit,
}

/// The dashboard's interaction state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct View {
    /// The selected issue (see the module docs).
    pub selected: Option<u64>,
    pub mode: Mode,
    pub log: Option<LogTail>,
    /// A one-line note for the footer (an action's outcome, a refusal); cleared by the next key.
    pub message: Option<String>,
    /// Why the last refresh failed; the screen keeps the last good model meanwhile.
    pub error: Option<String>,
}

impl View {
    /// The index of the selected row, after making sure a row is selected when there are rows.
    pub fn settle(&mut self, model: &Model) -> Option<usize> {
        let index = self
            .selected
            .and_then(|issue| model.rows.iter().position(|row| row.issue == issue))
            .or_else(|| (!model.rows.is_empty()).then_some(0));
        self.selected = index.map(|index| model.rows[index].issue);
        index
    }

    /// The selected row.
    pub fn selected_row<'m>(&self, model: &'m Model) -> Option<&'m Row> {
        self.selected.and_then(|issue| model.row(issue))
    }

    /// Handles one key press. Pure: commands are returned, never run here.
    pub fn on_key(&mut self, model: &Model, key: KeyEvent) -> Outcome {
        if key.kind == KeyEventKind::Release {
            return Outcome::Redraw;
        }
        let control = key.modifiers.contains(KeyModifiers::CONTROL);
        if control && key.code == KeyCode::Char('c') {
            return Outcome::Quit;
        }
        match std::mem::take(&mut self.mode) {
            Mode::Confirm(command) => match key.code {
                KeyCode::Char('y' | 'Y') => Outcome::Run(command),
                _ => {
                    self.message = Some("nothing done".to_string());
                    Outcome::Redraw
                }
            },
            Mode::Answer { issue, mut text } => {
                match key.code {
                    KeyCode::Esc => self.message = Some("answer dropped".to_string()),
                    KeyCode::Enter if text.trim().is_empty() => {
                        self.message = Some("an empty answer is not sent".to_string());
                    }
                    KeyCode::Enter => self.mode = Mode::Confirm(Command::Answer(issue, text)),
                    KeyCode::Backspace => {
                        text.pop();
                        self.mode = Mode::Answer { issue, text };
                    }
                    KeyCode::Char(c) if !control => {
                        text.push(c);
                        self.mode = Mode::Answer { issue, text };
                    }
                    _ => self.mode = Mode::Answer { issue, text },
                }
                Outcome::Redraw
            }
            mode @ (Mode::Table | Mode::Log) => {
                self.message = None;
                self.mode = mode;
                self.on_table_key(model, key.code)
            }
        }
    }

    fn on_table_key(&mut self, model: &Model, code: KeyCode) -> Outcome {
        let index = self.settle(model);
        match code {
            KeyCode::Esc if self.mode == Mode::Log => {
                self.mode = Mode::Table;
                Outcome::Redraw
            }
            KeyCode::Char('q') | KeyCode::Esc => Outcome::Quit,
            KeyCode::Up | KeyCode::Char('k') => self.select(model, index, -1),
            KeyCode::Down | KeyCode::Char('j') => self.select(model, index, 1),
            KeyCode::Char('l') => {
                self.mode = if self.mode == Mode::Log {
                    Mode::Table
                } else {
                    Mode::Log
                };
                Outcome::Redraw
            }
            KeyCode::Char('c') => self.ask(model, |row| {
                if row.state.is_active() || matches!(row.state, State::Failed | State::NeedsHuman) {
                    Ok(Command::Cancel(row.issue))
                } else {
                    Err(format!(
                        "#{} is {}: nothing to cancel",
                        row.issue,
                        row.state.as_str()
                    ))
                }
            }),
            KeyCode::Char('a') => self.ask(model, |row| match row.state {
                State::InReview => Ok(Command::Approve(row.issue)),
                state => Err(format!(
                    "#{} is {}: only an issue in review can be approved",
                    row.issue,
                    state.as_str()
                )),
            }),
            KeyCode::Char('A') => {
                match self.selected_row(model) {
                    Some(row) if row.state == State::Blocked => {
                        self.mode = Mode::Answer {
                            issue: row.issue,
                            text: String::new(),
                        };
                    }
                    Some(row) => {
                        self.message = Some(format!(
                            "#{} is {}: only a blocked issue has a question to answer",
                            row.issue,
                            row.state.as_str()
                        ));
                    }
                    None => self.message = Some("no issue selected".to_string()),
                }
                Outcome::Redraw
            }
            _ => Outcome::Redraw,
        }
    }

    fn select(&mut self, model: &Model, index: Option<usize>, step: isize) -> Outcome {
        let Some(index) = index else {
            return Outcome::Redraw;
        };
        let next = index
            .saturating_add_signed(step)
            .min(model.rows.len().saturating_sub(1));
        if next == index {
            return Outcome::Redraw;
        }
        self.selected = Some(model.rows[next].issue);
        Outcome::Selected
    }

    fn ask(
        &mut self,
        model: &Model,
        command: impl FnOnce(&Row) -> Result<Command, String>,
    ) -> Outcome {
        match self.selected_row(model).map(command) {
            Some(Ok(command)) => self.mode = Mode::Confirm(command),
            Some(Err(refusal)) => self.message = Some(refusal),
            None => self.message = Some("no issue selected".to_string()),
        }
        Outcome::Redraw
    }
}

/// Draws the dashboard (or, before the first observation, a notice) into `frame`.
pub fn render(frame: &mut Frame<'_>, model: Option<&Model>, view: &View) {
    let area = frame.area();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        let notice = Paragraph::new(cut("crew: terminal too small", area.width));
        frame.render_widget(notice, area);
        return;
    }
    let Some(model) = model else {
        let text = match &view.error {
            Some(error) => format!("crew: {error}"),
            None => "crew: observing…".to_string(),
        };
        frame.render_widget(Paragraph::new(cut(&text, area.width)), area);
        return;
    };
    let header_height = if area.height >= 12 { 2 } else { 1 };
    let footer_height = u16::from(area.height >= 5);
    let [header, body, footer] = Layout::vertical([
        Constraint::Length(header_height),
        Constraint::Min(1),
        Constraint::Length(footer_height),
    ])
    .areas(area);
    render_header(frame, header, model, view);
    if footer_height > 0 {
        render_footer(frame, footer, model, view);
    }
    if view.mode == Mode::Log {
        render_log(frame, body, view.selected_row(model), view.log.as_ref());
        return;
    }
    // The table takes what its rows need (borders and heading included); the panes take the
    // rest when that leaves them room for a few lines.
    let wanted = u16::try_from(model.rows.len())
        .unwrap_or(u16::MAX)
        .saturating_add(3)
        .max(4);
    let panes = if body.height >= 14 {
        body.height - wanted.min(body.height - 8)
    } else {
        0
    };
    let [table, bottom] =
        Layout::vertical([Constraint::Min(1), Constraint::Length(panes)]).areas(body);
    render_table(frame, table, model, view);
    if panes == 0 {
        return;
    }
    let selected = view.selected_row(model);
    let has_log = selected.is_some_and(|row| row.log.is_some());
    if bottom.width >= 100 {
        let [events, log] =
            Layout::horizontal([Constraint::Percentage(45), Constraint::Percentage(55)])
                .areas(bottom);
        render_events(frame, events, model);
        render_log(frame, log, selected, view.log.as_ref());
    } else if has_log {
        render_log(frame, bottom, selected, view.log.as_ref());
    } else {
        render_events(frame, bottom, model);
    }
}

fn render_header(frame: &mut Frame<'_>, area: Rect, model: &Model, view: &View) {
    let slots = &model.slots;
    let slots_line = format!(
        "slots {}/{} used, {} free here ({}/{} on this host)",
        slots.used, slots.max, slots.free, slots.used_here, slots.max_per_host
    );
    let rate_line = match &model.rate {
        Some(rate) => format!(
            "rate limit {}/{} left, resets in {}",
            rate.remaining,
            rate.limit,
            short_duration(rate.resets_in)
        ),
        None => "rate limit unknown".to_string(),
    };
    let when = model.now.format("%H:%M:%S UTC");
    let bold = Style::default().add_modifier(Modifier::BOLD);
    let mut lines = if area.height >= 2 {
        vec![
            Line::from(vec![
                Span::styled(sanitize_line(&model.repo, 60), bold),
                Span::raw(format!("  {slots_line}")),
            ]),
            Line::from(format!("{rate_line}  · as of {when}")),
        ]
    } else {
        vec![Line::from(format!("{slots_line} · {rate_line}"))]
    };
    if let Some(error) = &view.error {
        // The newest failure replaces the last line: the rest of the screen is then stale.
        let line = Line::from(Span::styled(
            format!("refresh failed: {}", sanitize_line(error, 200)),
            Style::default().fg(Color::Red),
        ));
        if let Some(last) = lines.last_mut() {
            *last = line;
        }
    }
    frame.render_widget(Paragraph::new(lines), area);
}

fn render_footer(frame: &mut Frame<'_>, area: Rect, model: &Model, view: &View) {
    let line = match &view.mode {
        Mode::Confirm(command) => Line::from(Span::styled(
            format!("{} y/n", command.question()),
            Style::default()
                .fg(Color::Yellow)
                .add_modifier(Modifier::BOLD),
        )),
        Mode::Answer { issue, text } => {
            let question = model
                .row(*issue)
                .and_then(|row| row.question.as_deref())
                .map(|question| format!(" ({})", sanitize_line(question, 60)))
                .unwrap_or_default();
            // Show the end of a long answer, where the typing happens.
            let room = usize::from(area.width).saturating_sub(20).max(1);
            let typed: String = {
                let chars: Vec<char> = text.chars().collect();
                chars[chars.len().saturating_sub(room)..].iter().collect()
            };
            Line::from(vec![
                Span::styled(
                    format!("answer #{issue}{question}: "),
                    Style::default().add_modifier(Modifier::BOLD),
                ),
                Span::raw(sanitize_line(&typed, room)),
                Span::raw("▏ Enter send · Esc drop"),
            ])
        }
        Mode::Table | Mode::Log => match &view.message {
            Some(message) => Line::from(Span::styled(
                sanitize_line(message, 400),
                Style::default().fg(Color::Yellow),
            )),
            None => Line::from(Span::styled(
                "↑↓ select · l log · c cancel · a approve · A answer · q quit",
                Style::default().add_modifier(Modifier::DIM),
            )),
        },
    };
    frame.render_widget(Paragraph::new(line), area);
}

/// A column of the issues table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Column {
    Issue,
    Title,
    State,
    Attempt,
    Worker,
    Host,
    Lease,
    Beat,
    Pr,
}

impl Column {
    /// Left to right.
    const ORDER: [Column; 9] = [
        Column::Issue,
        Column::Title,
        Column::State,
        Column::Attempt,
        Column::Worker,
        Column::Host,
        Column::Lease,
        Column::Beat,
        Column::Pr,
    ];
    /// Optional columns, most wanted first.
    const PRIORITY: [Column; 6] = [
        Column::Lease,
        Column::Beat,
        Column::Attempt,
        Column::Pr,
        Column::Worker,
        Column::Host,
    ];
    /// The narrowest a title may get before optional columns give way.
    const MIN_TITLE: u16 = 16;

    fn width(self) -> u16 {
        match self {
            Column::Issue => 6,
            Column::Title => Column::MIN_TITLE,
            Column::State => 11,
            Column::Attempt => 3,
            Column::Worker => 24,
            Column::Host => 12,
            Column::Lease => 13,
            Column::Beat => 5,
            Column::Pr => 6,
        }
    }

    fn heading(self) -> &'static str {
        match self {
            Column::Issue => "ISSUE",
            Column::Title => "TITLE",
            Column::State => "STATE",
            Column::Attempt => "ATT",
            Column::Worker => "WORKER",
            Column::Host => "HOST",
            Column::Lease => "LEASE",
            Column::Beat => "BEAT",
            Column::Pr => "PR",
        }
    }

    fn text(self, row: &Row) -> String {
        let or_dash = |value: Option<String>| value.unwrap_or_else(|| "-".to_string());
        match self {
            Column::Issue => format!("#{}", row.issue),
            Column::Title => row.title.clone(),
            Column::State => row.state.as_str().to_string(),
            Column::Attempt => or_dash(row.attempt.map(|attempt| attempt.to_string())),
            Column::Worker => or_dash(row.worker.clone()),
            Column::Host => or_dash(row.host.clone()),
            Column::Lease => match (row.lease, row.time_left) {
                (Some(LeaseStatus::Live), Some(left)) => {
                    format!("{} left", short_duration(left))
                }
                (Some(LeaseStatus::Expired), Some(left)) => {
                    format!("expired {}", short_duration(-left))
                }
                (Some(status), _) => status.as_str().to_string(),
                (None, _) => "-".to_string(),
            },
            Column::Beat => or_dash(row.heartbeat_age.map(short_duration)),
            Column::Pr => or_dash(row.pr.map(|pr| format!("#{pr}"))),
        }
    }
}

/// The columns that fit `width`, left to right, with their widths (the title takes the rest).
fn columns(width: u16) -> Vec<(Column, u16)> {
    let essential = [Column::Issue, Column::Title, Column::State];
    let mut used: u16 = essential
        .iter()
        .map(|column| column.width() + 1)
        .sum::<u16>()
        .saturating_sub(1);
    let mut chosen = essential.to_vec();
    for column in Column::PRIORITY {
        if used + column.width() < width {
            used += column.width() + 1;
            chosen.push(column);
        }
    }
    let title = Column::MIN_TITLE + width.saturating_sub(used);
    Column::ORDER
        .iter()
        .filter(|column| chosen.contains(column))
        .map(|&column| {
            let width = if column == Column::Title {
                title
            } else {
                column.width()
            };
            (column, width)
        })
        .collect()
}

fn state_style(state: State) -> Style {
    let color = match state {
        State::Working | State::Assigned => Color::Green,
        State::Blocked | State::Handover => Color::Yellow,
        State::InReview | State::Approved => Color::Cyan,
        State::Failed | State::NeedsHuman => Color::Red,
        _ => Color::Reset,
    };
    Style::default().fg(color)
}

fn render_table(frame: &mut Frame<'_>, area: Rect, model: &Model, view: &View) {
    let bordered = area.height >= 4;
    let block = if bordered {
        Block::bordered().title(format!(" issues ({}) ", model.rows.len()))
    } else {
        Block::new()
    };
    let inner_width = if bordered {
        area.width.saturating_sub(2)
    } else {
        area.width
    };
    // The highlight symbol takes two columns.
    let columns = columns(inner_width.saturating_sub(2));
    if model.rows.is_empty() {
        let text = Paragraph::new("no issue is being worked on").block(block);
        frame.render_widget(text, area);
        return;
    }
    let header = TableRow::new(columns.iter().map(|(column, _)| column.heading()))
        .style(Style::default().add_modifier(Modifier::BOLD));
    let rows = model.rows.iter().map(|row| {
        TableRow::new(columns.iter().map(|&(column, width)| {
            let text = sanitize_line(&column.text(row), usize::from(width));
            let cell = Cell::from(text);
            if column == Column::State {
                cell.style(state_style(row.state))
            } else {
                cell
            }
        }))
    });
    let table = Table::new(
        rows,
        columns.iter().map(|&(_, width)| Constraint::Length(width)),
    )
    .header(header)
    .block(block)
    .column_spacing(1)
    .row_highlight_style(Style::default().add_modifier(Modifier::REVERSED))
    .highlight_symbol("> ");
    let index = view
        .selected
        .and_then(|issue| model.rows.iter().position(|row| row.issue == issue));
    let mut state = TableState::default().with_selected(index);
    frame.render_stateful_widget(table, area, &mut state);
}

fn render_events(frame: &mut Frame<'_>, area: Rect, model: &Model) {
    let block = Block::bordered().title(" recent events ");
    let width = usize::from(area.width.saturating_sub(2));
    let lines: Vec<Line<'_>> = if model.events.is_empty() {
        vec![Line::from("no events yet")]
    } else {
        model
            .events
            .iter()
            .map(|event| {
                let text = format!(
                    "{:>4} ago  #{:<5} {:<17} {}",
                    short_duration(event.age),
                    event.issue,
                    event.kind.as_str(),
                    event.author
                );
                Line::from(sanitize_line(&text, width))
            })
            .collect()
    };
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

fn render_log(frame: &mut Frame<'_>, area: Rect, selected: Option<&Row>, log: Option<&LogTail>) {
    let width = usize::from(area.width.saturating_sub(2));
    let room = usize::from(area.height.saturating_sub(2));
    let (title, lines) = match (selected, log) {
        (None, _) => (" log ".to_string(), vec!["no issue selected".to_string()]),
        (Some(row), Some(log)) if row.log.is_some() && log.issue == row.issue => (
            format!(" log of #{} ({}) ", row.issue, log.worker),
            if log.lines.is_empty() {
                vec!["no output yet".to_string()]
            } else {
                log.lines[log.lines.len().saturating_sub(room)..].to_vec()
            },
        ),
        (Some(row), _) if row.log.is_some() => (
            format!(" log of #{} ", row.issue),
            vec!["reading…".to_string()],
        ),
        (Some(row), _) => (
            format!(" log of #{} ", row.issue),
            vec![match &row.host {
                Some(host) => format!("the worker runs on {host}, not on this clone"),
                None => "no worker of this issue runs on this clone".to_string(),
            }],
        ),
    };
    let lines: Vec<Line<'_>> = lines
        .iter()
        .map(|line| Line::from(sanitize_line(line, width)))
        .collect();
    let block = Block::bordered().title(sanitize_line(&title, width));
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

/// `text` cut to `width` columns.
fn cut(text: &str, width: u16) -> String {
    sanitize_line(text, usize::from(width))
}

#[cfg(test)]
mod tests;
