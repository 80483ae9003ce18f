//! The dashboard's terminal loop: refresh, draw, read keys, run the chosen commands.
//!
//! Decisions, and why:
//! - **A refresh is a warm observation** ([`crate::schedule::observe_world`]: three conditional
//!   requests when nothing changed, plus the leases), then the pure planner for the slots, so
//!   watching costs what `crew status` costs once per interval and nothing in between. This
//!   host's dead supervisors are reconciled first, as `crew status` does; what that did is shown
//!   in the footer rather than printed over the screen.
//! - **Keys are read on their own thread** (crossterm's `poll`/`read` block) and handed over a
//!   channel, so the screen answers keys and resizes while a refresh waits on GitHub.
//! - **Commands run with the terminal given back.** Cancel, approve and answer are the very
//!   functions behind `crew cancel`, `crew approve` and `crew answer`, which print progress and
//!   may take a while (a cancel stops a worker and saves its work); the dashboard steps aside
//!   while they run, so their output lands in the normal screen (still there after quitting),
//!   then comes back with the outcome in its footer and refreshes at once.
//! - **The terminal is always restored**: by a guard on every return path, and on panic by the
//!   hook `ratatui::try_init` installs.
//! - **Log tails are read from the end of the file** (the last 64 KiB), and the token this
//!   command runs with is redacted from them, as `crew logs` does.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ratatui::crossterm::cursor::Show;
use ratatui::crossterm::event::{self, Event};
use ratatui::crossterm::execute;
use ratatui::crossterm::terminal::{EnterAlternateScreen, enable_raw_mode};
use ratatui::layout::Rect;
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};
use tokio::time::Instant;

use super::{Command, LocalLog, LogTail, Model, Outcome, View, render};
use crate::commands::{answer, cancel, review};
use crate::context::Ctx;
use crate::error::{CrewError, ErrorKind};
use crate::github::CORE;
use crate::scheduler::{self, Limits};

/// How many lines of a log tail are kept (more than any terminal shows).
const TAIL_LINES: usize = 500;
/// How often the key thread looks whether it should stop.
const KEY_POLL: Duration = Duration::from_millis(100);

/// Runs the dashboard until the user quits. Needs a terminal on stdin and stdout.
pub async fn run(ctx: &Ctx, interval: Duration) -> Result<(), CrewError> {
    let mut terminal = ratatui::try_init().map_err(terminal_error)?;
    let _restore = RestoreOnDrop;
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_keys = StopOnDrop(stop.clone());
    let mut keys = spawn_key_reader(stop);

    // SIGTERM (a parent such as `crew demo` closing it) ends the dashboard like `q`, so the
    // terminal is restored; in raw mode Ctrl-C arrives as a key, not as SIGINT.
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(CrewError::internal)?;
    let mut model: Option<Model> = None;
    let mut view = View::default();
    let mut refreshing = Some(Box::pin(refresh(ctx)));
    let mut next_refresh = Instant::now() + interval;
    loop {
        terminal
            .draw(|frame| render(frame, model.as_ref(), &view))
            .map_err(terminal_error)?;
        tokio::select! {
            _ = terminate.recv() => return Ok(()),
            key = keys.recv() => {
                // The key thread ends only when the terminal cannot be read any more.
                let Some(key) = key else { return Ok(()) };
                let Event::Key(key) = key else {
                    // A resize (or anything else): the loop redraws at the new size.
                    continue;
                };
                let Some(current) = model.as_ref() else {
                    if matches!(view.on_key(&empty_model(), key), Outcome::Quit) {
                        return Ok(());
                    }
                    continue;
                };
                match view.on_key(current, key) {
                    Outcome::Quit => return Ok(()),
                    Outcome::Redraw => {}
                    Outcome::Selected => view.log = read_selected_log(ctx, current, &view).await,
                    Outcome::Run(command) => {
                        let outcome = suspended(&mut terminal, || run_command(ctx, &command)).await?;
                        view.message = Some(outcome);
                        // Keys typed while the command ran were meant for it, not for the dashboard.
                        while keys.try_recv().is_ok() {}
                        refreshing = Some(Box::pin(refresh(ctx)));
                    }
                }
            }
            refreshed = async {
                match refreshing.as_mut() {
                    Some(future) => future.await,
                    None => std::future::pending().await,
                }
            } => {
                refreshing = None;
                next_refresh = Instant::now() + interval;
                match refreshed {
                    Ok(refreshed) => {
                        view.error = None;
                        if !refreshed.notes.is_empty() {
                            view.message = Some(refreshed.notes.join("; "));
                        }
                        view.settle(&refreshed.model);
                        view.log = read_selected_log(ctx, &refreshed.model, &view).await;
                        model = Some(refreshed.model);
                    }
                    // Before anything was shown, a failure GitHub did not cause (no
                    // repository, a bad setting) would only repeat: leave with it.
                    Err(error) if model.is_none() && error.kind() != ErrorKind::Remote => {
                        return Err(error);
                    }
                    Err(error) => view.error = Some(one_line(&error)),
                }
            }
            () = tokio::time::sleep_until(next_refresh), if refreshing.is_none() => {
                refreshing = Some(Box::pin(refresh(ctx)));
            }
        }
    }
}

/// One refresh: the model, and what reconciling this host's workers did.
pub struct Refreshed {
    pub model: Model,
    pub notes: Vec<String>,
}

/// Reconciles this host's workers, observes, plans (for the slots) and builds the model.
pub async fn refresh(ctx: &Ctx) -> Result<Refreshed, CrewError> {
    let notes = match crate::reconcile::reconcile_local(ctx).await {
        Ok(report) => report
            .workers
            .iter()
            .filter_map(|worker| worker.describe())
            .collect(),
        Err(error) => vec![format!(
            "could not reconcile this host's workers: {}",
            one_line(&error)
        )],
    };
    let observation = crate::schedule::observe_world(ctx).await?;
    let plan = scheduler::plan(
        &observation.world,
        &Limits::from_config(&ctx.settings.config),
    );
    let rate = ctx.github().await?.rate_snapshot(CORE);
    let local = match ctx.settings.repo_root.clone() {
        Some(root) => tokio::task::spawn_blocking(move || local_logs(&root))
            .await
            .map_err(CrewError::internal)?,
        None => Vec::new(),
    };
    let model = Model::build(super::Inputs {
        observed: &observation.observed,
        slots: plan.slots,
        rate,
        local: &local,
        now: observation.observed.now,
    });
    Ok(Refreshed { model, notes })
}

/// The newest worker of each issue among this clone's worktrees, with its log. Blocking.
/// A worktree that cannot be read is left out: the dashboard then shows no log for it.
pub fn local_logs(repo_root: &Path) -> Vec<LocalLog> {
    crate::worker::locate::newest_of_each(repo_root)
        .unwrap_or_default()
        .into_iter()
        .map(|worker| LocalLog {
            issue: worker.issue(),
            worker: worker.worker().to_owned(),
            path: worker.log_path(),
        })
        .collect()
}

/// The last lines of the log at `path` (none when it does not exist yet), `secrets` redacted.
/// Blocking.
pub fn read_tail(path: &Path, secrets: &[String]) -> std::io::Result<Vec<String>> {
    crate::worker::supervisor::tail_lines(path, TAIL_LINES, secrets)
}

/// The log tail of the selected row's worker, when it runs on this clone.
async fn read_selected_log(ctx: &Ctx, model: &Model, view: &View) -> Option<LogTail> {
    let log = view.selected_row(model)?.log.clone()?;
    let secrets: Vec<String> = ctx
        .settings
        .token()
        .map(|token| token.secret.expose().to_owned())
        .into_iter()
        .collect();
    let path = log.path.clone();
    let lines = tokio::task::spawn_blocking(move || read_tail(&path, &secrets))
        .await
        .ok()?
        .unwrap_or_else(|error| vec![format!("cannot read {}: {error}", log.path.display())]);
    Some(LogTail {
        issue: log.issue,
        worker: log.worker,
        lines,
    })
}

/// Runs `command` as the CLI would; the outcome, in one line, for the footer.
async fn run_command(ctx: &Ctx, command: &Command) -> String {
    let issue = command.issue();
    let (done, result) = match command {
        Command::Cancel(issue) => (
            "cancelled",
            cancel::run(
                ctx,
                &cancel::CancelArgs {
                    issue: *issue,
                    reason: None,
                    force: false,
                },
            )
            .await,
        ),
        Command::Approve(issue) => (
            "approved",
            review::approve(ctx, &review::ApproveArgs { issue: *issue }).await,
        ),
        Command::Answer(issue, text) => (
            "answered",
            answer::run(
                ctx,
                &answer::AnswerArgs {
                    issue: *issue,
                    text: vec![text.clone()],
                    no_dispatch: false,
                },
            )
            .await,
        ),
    };
    match result {
        Ok(()) => format!("#{issue} {done} (its output is in the terminal behind this screen)"),
        Err(error) => {
            ctx.printer.error(&error);
            format!("#{issue}: {}", one_line(&error))
        }
    }
}

/// Gives the terminal back while `work` runs, then takes it again and redraws from scratch.
async fn suspended<F, Fut, T>(
    terminal: &mut ratatui::DefaultTerminal,
    work: F,
) -> Result<T, CrewError>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    ratatui::try_restore().map_err(terminal_error)?;
    execute!(std::io::stdout(), Show).map_err(terminal_error)?;
    let result = work().await;
    enable_raw_mode().map_err(terminal_error)?;
    execute!(std::io::stdout(), EnterAlternateScreen).map_err(terminal_error)?;
    // A resize to the current size clears the screen and forgets the last frame, so the next
    // draw paints everything; `Terminal::clear` would ask the terminal where its cursor is,
    // and the answer could be taken by the key thread.
    let size = terminal.size().map_err(terminal_error)?;
    terminal
        .resize(Rect::new(0, 0, size.width, size.height))
        .map_err(terminal_error)?;
    Ok(result)
}

/// Reads terminal events on a thread of its own until `stop` is set or the receiver is gone.
fn spawn_key_reader(stop: Arc<AtomicBool>) -> UnboundedReceiver<Event> {
    let (sender, receiver) = unbounded_channel();
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            match event::poll(KEY_POLL) {
                Ok(false) => {}
                Ok(true) => match event::read() {
                    Ok(event) => {
                        if sender.send(event).is_err() {
                            return;
                        }
                    }
                    Err(_) => return,
                },
                Err(_) => return,
            }
        }
    });
    receiver
}

/// A model with nothing in it, for keys pressed before the first observation.
fn empty_model() -> Model {
    Model {
        repo: String::new(),
        now: chrono::DateTime::<chrono::Utc>::UNIX_EPOCH,
        slots: scheduler::Slots {
            max: 0,
            used: 0,
            max_per_host: 0,
            used_here: 0,
            free: 0,
        },
        rate: None,
        rows: Vec::new(),
        events: Vec::new(),
    }
}

fn one_line(error: &CrewError) -> String {
    error.chain().join(": ")
}

fn terminal_error(error: std::io::Error) -> CrewError {
    CrewError::user(format!("cannot drive this terminal: {error}"))
        .with_hint("`crew status --watch` without a terminal prints the table every interval")
}

struct RestoreOnDrop;

impl Drop for RestoreOnDrop {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}
