//! One run of the demo: the emulator in this process, a temporary directory with a clone of the
//! demo repository, `crew loop --until-idle` and the maintainer's commands as child processes,
//! and a watcher that prints progress and decides what the maintainer does next.
//!
//! Decisions, and why:
//! - **Every crew command is a child process with an environment the demo writes.** A worker's
//!   supervisor inherits the environment of whoever dispatched it and resolves the token from it,
//!   so running `crew loop` inside this process would hand the user's `GH_TOKEN`, `CREW_API_URL`
//!   or git identity to the demo's workers. Children get a cleared environment (the bundled
//!   agent) or the user's minus every GitHub and crew variable (a real agent, which needs its own
//!   `HOME` and keys), plus the emulator's URL, a token of the emulated world, their own cache
//!   directory and a fixed git identity. The children are the same binary
//!   ([`std::env::current_exe`]), so nothing needs installing.
//! - **Two people, two caches.** The loop runs as `crew-bot` (the scheduled Action of a real
//!   set-up); the maintainer's answers, reviews and merges are `maintainer`'s, with its own cache
//!   directory, as two machines would have.
//! - **The loop may go idle before the work is done.** `--until-idle` ends when nothing can
//!   start and no worker runs, which is also true while pull requests wait for review or an
//!   issue waits for another to be merged. The demo starts the loop again after the maintainer
//!   acted (something may have become ready), and after a quiet spell with no loop running.
//! - **Stopping early leaves nothing running.** On a timeout or Ctrl-C the loop is killed (crew
//!   converges after that by design) and every live supervisor gets SIGTERM, which saves its
//!   worker's work and posts a handover while the emulator still answers. On a failure the
//!   directory is kept for its logs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use github_emulator::{Emulator, EmulatorHandle};
use tokio::io::AsyncBufReadExt;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::error::CrewError;
use crate::printer::Printer;
use crate::settings::Env;
use crate::worker::{self, Signal};
use crate::workspace;

use super::maintainer::{self, Action};
use super::observe::{self, IssueView};
use super::summary::{self, DemoSummary, Kept};
use super::world::{self, BOT_TOKEN, MAINTAINER_TOKEN, NAME, OWNER};

/// The bundled scripted agent's name in the demo's crew.toml.
pub const DEMO_AGENT: &str = "demo";

/// How often the demo looks at the emulator.
const WATCH_EVERY: Duration = Duration::from_millis(200);
/// The loop's interval: short, as a demo's issues finish in seconds.
const LOOP_INTERVAL: &str = "500ms";
/// With no loop running and nothing to do, how long before the loop is started again.
const QUIET_RESTART: Duration = Duration::from_secs(2);
/// A maintainer's command that failed this often is not tried again.
const MAX_FAILURES: u32 = 3;
/// How long a maintainer's command may take.
const ACTION_TIMEOUT: Duration = Duration::from_secs(120);
/// How long supervisors get to finish (at the end) or to save their work (when stopping early).
const SUPERVISOR_GRACE: Duration = Duration::from_secs(15);
const MAX_ATTEMPTS: u32 = 3;

/// Variables a real agent's environment loses: crew and GitHub settings of the user's own.
const USER_VARIABLES: &[&str] = &[
    crate::env_vars::GH_TOKEN,
    crate::env_vars::GITHUB_TOKEN,
    crate::env_vars::CREW_API_URL,
    crate::env_vars::CREW_HOST,
    crate::env_vars::CREW_CACHE_DIR,
    crate::env_vars::CREW_FAULT_KILL_AFTER,
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_CEILING_DIRECTORIES",
];

/// Variables the bundled agent's cleared environment keeps.
const KEPT_VARIABLES: &[&str] = &["PATH", "TMPDIR", "LANG", "TZ"];

/// How the demo runs.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// A real agent (`claude`, `codex`, …) instead of the bundled one.
    pub agent: Option<String>,
    /// Give up after this long.
    pub timeout: Duration,
    /// Show the live dashboard (`crew watch`) instead of progress lines: on a terminal.
    pub dashboard: bool,
}

/// Who runs a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Who {
    Bot,
    Maintainer,
}

impl Who {
    fn token(self) -> &'static str {
        match self {
            Who::Bot => BOT_TOKEN,
            Who::Maintainer => MAINTAINER_TOKEN,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Who::Bot => "bot",
            Who::Maintainer => "maintainer",
        }
    }
}

/// What failed, beyond a crew error of a child.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("cannot start the emulator: {0}")]
    Emulator(String),
    #[error("cannot set up the demo in {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`git {args}` failed: {stderr}")]
    Git { args: String, stderr: String },
    #[error("the demo did not finish within {0:?}")]
    TimedOut(Duration),
    #[error("interrupted")]
    Interrupted,
    #[error("{0} of {1} demo issues did not complete")]
    Unfinished(usize, usize),
}

impl crate::error::Classify for DemoError {
    fn kind(&self) -> crate::error::ErrorKind {
        use crate::error::ErrorKind;
        match self {
            DemoError::Emulator(_) | DemoError::Io { .. } | DemoError::Git { .. } => {
                ErrorKind::Internal
            }
            DemoError::TimedOut(_) => ErrorKind::Timeout,
            DemoError::Interrupted | DemoError::Unfinished(..) => ErrorKind::User,
        }
    }
}

/// A finished demo: its summary, and (until dropped) the emulator and the directory, so
/// `--keep` can leave them up.
pub struct Finished {
    pub summary: DemoSummary,
    pub emulator: EmulatorHandle,
    pub dir: PathBuf,
    pub clone: PathBuf,
    /// The directory is deleted on drop unless this is false.
    pub remove_dir: bool,
}

impl Finished {
    /// What to tell someone who wants to look around while `--keep` keeps the emulator up.
    pub fn kept(&self) -> Kept {
        Kept {
            api_url: self.emulator.base_url().to_owned(),
            clone: self.clone.display().to_string(),
            cache_dir: cache_dir(&self.dir, Who::Maintainer).display().to_string(),
        }
    }
}

impl Drop for Finished {
    fn drop(&mut self) {
        if self.remove_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn cache_dir(dir: &Path, who: Who) -> PathBuf {
    dir.join("cache").join(who.name())
}

/// Runs the demo to its summary.
pub async fn run(printer: &Printer, options: &DemoOptions) -> Result<Finished, CrewError> {
    let started = Instant::now();
    let exe = std::env::current_exe().map_err(CrewError::internal)?;
    let dir = make_dir()?;
    let emulator = Emulator::builder()
        .world(world::world())
        .start()
        .await
        .map_err(|error| DemoError::Emulator(format!("{error:#}")))?;
    let mut session = Session {
        printer: printer.clone(),
        exe,
        clone: dir.join(NAME),
        dir,
        emulator,
        real_agent: options.agent.is_some(),
        started,
        lines: mpsc::unbounded_channel(),
        loop_child: None,
        keep_dir: true,
        dashboard: None,
    };
    let result = session.drive(options).await;
    let Session {
        emulator,
        dir,
        clone,
        keep_dir,
        ..
    } = session;
    match result {
        Ok(summary) => Ok(Finished {
            summary,
            emulator,
            dir,
            clone,
            remove_dir: true,
        }),
        Err(error) => {
            if keep_dir {
                printer.status(format_args!(
                    "the demo's files are kept in {} (loop.log, and each worker's \
                     .crew/logs in {NAME}-worker-N)",
                    dir.display()
                ));
            } else {
                let _ = std::fs::remove_dir_all(&dir);
            }
            emulator.shutdown().await;
            Err(error)
        }
    }
}

/// A fresh directory under the system's temporary directory.
fn make_dir() -> Result<PathBuf, DemoError> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.subsec_nanos())
        .unwrap_or_default();
    let dir = std::env::temp_dir().join(format!("crew-demo-{}-{nanos:x}", std::process::id()));
    for sub in [
        dir.join("home"),
        cache_dir(&dir, Who::Bot),
        cache_dir(&dir, Who::Maintainer),
    ] {
        std::fs::create_dir_all(&sub).map_err(|source| DemoError::Io { path: sub, source })?;
    }
    // Resolved, so paths crew records (worktrees) match what git reports.
    dir.canonicalize()
        .map_err(|source| DemoError::Io { path: dir, source })
}

struct Session {
    printer: Printer,
    exe: PathBuf,
    dir: PathBuf,
    clone: PathBuf,
    emulator: EmulatorHandle,
    real_agent: bool,
    started: Instant,
    /// Lines the loop prints, forwarded by a reader task per loop process. The sender is kept
    /// here so the channel never closes.
    lines: (
        mpsc::UnboundedSender<String>,
        mpsc::UnboundedReceiver<String>,
    ),
    loop_child: Option<Child>,
    keep_dir: bool,
    /// `crew watch` on the terminal, while it runs the progress lines are not printed.
    dashboard: Option<Child>,
}

impl Session {
    async fn drive(&mut self, options: &DemoOptions) -> Result<DemoSummary, CrewError> {
        self.set_up(options).await?;
        let numbers: Vec<u64> = world::numbers().collect();
        self.status(format_args!(
            "GitHub emulated at {}: {OWNER}/{NAME}, a small Python project with {} issues",
            self.emulator.base_url(),
            numbers.len()
        ));
        self.status(format_args!(
            "clone in {}; running `crew loop --until-idle` with the {} agent",
            self.clone.display(),
            options.agent.as_deref().unwrap_or("bundled demo")
        ));
        if options.dashboard {
            self.start_dashboard();
        }
        let watched = self.watch(&numbers, options.timeout).await;
        self.stop_dashboard().await;
        match watched {
            Ok(()) => {}
            Err(error) => {
                self.stop_everything().await;
                return Err(error);
            }
        }
        self.wind_down().await;
        let issues = observe::snapshot(&self.emulator, &numbers, MAX_ATTEMPTS);
        let stats = self.emulator.stats();
        let summary = DemoSummary::new(
            &issues,
            stats.requests,
            stats.rate_points,
            self.started.elapsed(),
            options.agent.as_deref().unwrap_or(DEMO_AGENT),
        );
        let unfinished = summary
            .issues
            .iter()
            .filter(|issue| issue.state != "completed")
            .count();
        if unfinished > 0 && !self.real_agent {
            // Print what there is before failing: it says which issue went where.
            self.printer
                .err(|w, style| summary::render(w, style, &summary));
            return Err(DemoError::Unfinished(unfinished, summary.issues.len()).into());
        }
        Ok(summary)
    }

    /// The clone and its crew.toml.
    async fn set_up(&mut self, options: &DemoOptions) -> Result<(), CrewError> {
        let url = self
            .emulator
            .clone_url(OWNER, NAME)
            .ok_or_else(|| DemoError::Emulator(format!("{OWNER}/{NAME} has no clone URL")))?;
        let target = self.clone.display().to_string();
        self.git(&self.dir, &["clone", "--quiet", &url, &target])
            .await?;
        let config = self.clone.join("crew.toml");
        let text = crew_toml(&self.exe, options.agent.as_deref());
        std::fs::write(&config, text).map_err(|source| DemoError::Io {
            path: config.clone(),
            source,
        })?;
        // The settings are this clone's, not the project's: keep them out of every commit.
        let exclude = self.clone.join(".git").join("info").join("exclude");
        let mut excluded = std::fs::read_to_string(&exclude).unwrap_or_default();
        excluded.push_str("/crew.toml\n");
        std::fs::write(&exclude, excluded)
            .map_err(|source| DemoError::Io {
                path: exclude,
                source,
            })
            .map_err(CrewError::from)
    }

    /// Watches until every issue is settled, printing events, acting as the maintainer and
    /// keeping the loop going.
    async fn watch(&mut self, numbers: &[u64], timeout: Duration) -> Result<(), CrewError> {
        let deadline = self.started + timeout;
        let mut printed: BTreeMap<u64, usize> = BTreeMap::new();
        let mut failures: BTreeMap<(u64, &'static str), u32> = BTreeMap::new();
        // Issues whose maintainer step failed too often: left as they are, in the summary.
        let mut given_up: BTreeSet<u64> = BTreeSet::new();
        let mut last_loop_line = String::new();
        let mut restart_loop = true;
        let mut quiet_since = Instant::now();
        // Loops started after a quiet spell that changed nothing since.
        let mut idle_restarts = 0_u32;
        let mut tick = tokio::time::interval(WATCH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if restart_loop && self.loop_child.is_none() {
                self.start_loop()?;
                restart_loop = false;
            }
            tokio::select! {
                _ = tick.tick() => {}
                _ = tokio::signal::ctrl_c() => {
                    self.keep_dir = false;
                    return Err(DemoError::Interrupted.into());
                }
                line = self.lines.1.recv() => {
                    if let Some(line) = line {
                        self.loop_line(&line, &mut last_loop_line);
                    }
                    continue;
                }
            }
            let issues = observe::snapshot(&self.emulator, numbers, MAX_ATTEMPTS);
            if self.print_events(&issues, &mut printed) {
                quiet_since = Instant::now();
                idle_restarts = 0;
            }
            if issues.len() == numbers.len()
                && issues
                    .iter()
                    .all(|issue| maintainer::settled(issue) || given_up.contains(&issue.number))
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(CrewError::from(DemoError::TimedOut(
                    deadline.duration_since(self.started),
                ))
                .with_hint("pass a longer --timeout, or look at the logs named above"));
            }
            self.reap_loop();
            let next = issues
                .iter()
                .filter(|issue| !given_up.contains(&issue.number))
                .find_map(maintainer::next_action);
            if let Some(action) = next {
                if !self.maintain(&action).await {
                    let count = failures.entry((action.issue(), action.verb())).or_default();
                    *count += 1;
                    if *count >= MAX_FAILURES {
                        self.printer.warn(format_args!(
                            "giving up on #{}: the maintainer could not {} it {MAX_FAILURES} times",
                            action.issue(),
                            action.verb()
                        ));
                        given_up.insert(action.issue());
                    }
                }
                // Something may have become ready for the loop (a merged dependency).
                restart_loop = true;
                quiet_since = Instant::now();
                idle_restarts = 0;
                continue;
            }
            if self.loop_child.is_none() && quiet_since.elapsed() >= QUIET_RESTART {
                if idle_restarts > 0 {
                    // A loop started since the last change went idle again and nobody waits
                    // for the maintainer: what is left cannot move (say, it depends on an issue
                    // that needs a human).
                    self.status(format_args!(
                        "{}  nothing more can happen: no worker runs, nothing can start and \
                         nothing waits for the maintainer",
                        self.elapsed_text()
                    ));
                    return Ok(());
                }
                idle_restarts += 1;
                restart_loop = true;
                quiet_since = Instant::now();
            }
        }
    }

    /// Prints the events that appeared since the last look; true if there were any.
    fn print_events(&self, issues: &[IssueView], printed: &mut BTreeMap<u64, usize>) -> bool {
        let mut any = false;
        for issue in issues {
            let seen = printed.entry(issue.number).or_default();
            for applied in issue.state.events.iter().skip(*seen) {
                if let Some(text) = summary::describe(applied) {
                    self.progress(issue.number, &text);
                }
                any = true;
            }
            *seen = issue.state.events.len();
        }
        any
    }

    /// A line of the loop's output: worth printing when it says more than the slot count, once.
    fn loop_line(&self, line: &str, last: &mut String) {
        let Some((_, rest)) = line.split_once(": ") else {
            return;
        };
        let Some((_, news)) = rest.split_once("; ") else {
            return;
        };
        if news != last.as_str() {
            self.status(format_args!("{}  loop: {news}", self.elapsed_text()));
            news.clone_into(last);
        }
    }

    fn progress(&self, issue: u64, text: &str) {
        self.status(format_args!("{}  #{issue:<2} {text}", self.elapsed_text()));
    }

    fn elapsed_text(&self) -> String {
        format!("{:>5.1}s", self.started.elapsed().as_secs_f64())
    }

    fn status(&self, message: impl std::fmt::Display) {
        if self.dashboard.is_none() {
            self.printer.status(message);
        }
    }

    /// `crew watch` as the maintainer, on this terminal (in the foreground process group, so it
    /// may read keys); when it cannot start, the progress lines go on.
    fn start_dashboard(&mut self) {
        let mut command = Command::new(&self.exe);
        command.args(["watch", "--interval", "500ms"]);
        self.environment(&mut command, Who::Maintainer);
        command.env_remove(crate::env_vars::NO_COLOR);
        if let Some(term) = std::env::var_os(crate::env_vars::TERM) {
            command.env(crate::env_vars::TERM, term);
        }
        command.current_dir(&self.clone).kill_on_drop(true);
        match command.spawn() {
            Ok(child) => self.dashboard = Some(child),
            Err(error) => self.printer.warn(format_args!(
                "no dashboard ({error}); printing progress instead"
            )),
        }
    }

    /// Closes the dashboard (SIGTERM: it restores the terminal), or notices it was quit.
    async fn stop_dashboard(&mut self) {
        let Some(mut child) = self.dashboard.take() else {
            return;
        };
        if let Ok(None) = child.try_wait()
            && let Some(pid) = child.id()
        {
            // SAFETY: kill(2) on our own child's pid with a valid signal.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGTERM);
            }
        }
        if tokio::time::timeout(Duration::from_secs(3), child.wait())
            .await
            .is_err()
        {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }

    /// Runs the maintainer's command for `action`; false if it failed.
    async fn maintain(&self, action: &Action) -> bool {
        let args = action.args();
        let mut command = self.crew(Who::Maintainer, &args);
        command.stdout(Stdio::null()).stderr(Stdio::piped());
        let output = match tokio::time::timeout(ACTION_TIMEOUT, command.output()).await {
            Ok(Ok(output)) => output,
            Ok(Err(error)) => {
                self.printer.warn(format_args!(
                    "cannot run `crew {}`: {error}",
                    args.join(" ")
                ));
                return false;
            }
            Err(_) => {
                self.printer.warn(format_args!(
                    "`crew {}` took longer than {ACTION_TIMEOUT:?}",
                    args.join(" ")
                ));
                return false;
            }
        };
        if output.status.success() {
            return true;
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        self.printer.warn(format_args!(
            "the maintainer could not {} #{}: {}",
            action.verb(),
            action.issue(),
            stderr.trim()
        ));
        false
    }

    /// `crew loop --until-idle` as the bot, its output forwarded line by line.
    fn start_loop(&mut self) -> Result<(), CrewError> {
        let log_path = self.dir.join("loop.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|source| DemoError::Io {
                path: log_path.clone(),
                source,
            })?;
        let args = ["loop", "--until-idle", "--interval", LOOP_INTERVAL].map(String::from);
        let mut command = self.crew(Who::Bot, &args);
        command.stdout(Stdio::piped()).stderr(Stdio::from(log));
        let mut child = command.spawn().map_err(CrewError::internal)?;
        if let Some(stdout) = child.stdout.take() {
            let sender = self.lines.0.clone();
            tokio::spawn(async move {
                let mut lines = tokio::io::BufReader::new(stdout).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if sender.send(line).is_err() {
                        return;
                    }
                }
            });
        }
        self.printer
            .verbose(format_args!("started crew loop (pid {:?})", child.id()));
        self.loop_child = Some(child);
        Ok(())
    }

    /// Forgets the loop once it has exited.
    fn reap_loop(&mut self) {
        let Some(child) = &mut self.loop_child else {
            return;
        };
        match child.try_wait() {
            Ok(None) => {}
            Ok(Some(status)) => {
                if !status.success() {
                    self.printer.warn(format_args!(
                        "crew loop exited with {status}; see {}",
                        self.dir.join("loop.log").display()
                    ));
                }
                self.loop_child = None;
            }
            Err(error) => {
                self.printer
                    .warn(format_args!("cannot wait for crew loop: {error}"));
                self.loop_child = None;
            }
        }
    }

    /// After the last issue settled: the loop sees it is idle, and the supervisors exit.
    async fn wind_down(&mut self) {
        if let Some(child) = &mut self.loop_child {
            match tokio::time::timeout(Duration::from_secs(10), child.wait()).await {
                Ok(_) => {}
                Err(_) => {
                    let _ = child.start_kill();
                    let _ = child.wait().await;
                }
            }
            self.loop_child = None;
        }
        self.stop_supervisors(false).await;
    }

    /// Stopping early: the loop is killed, and the workers save their work.
    async fn stop_everything(&mut self) {
        if let Some(mut child) = self.loop_child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
        self.stop_supervisors(true).await;
    }

    /// Waits for this clone's supervisors to exit; with `terminate` (or after the grace) sends
    /// them SIGTERM first, which stops the agent and saves its work.
    async fn stop_supervisors(&self, terminate: bool) {
        let deadline = Instant::now() + SUPERVISOR_GRACE;
        let mut signalled = false;
        loop {
            let clone = self.clone.clone();
            let live = tokio::task::spawn_blocking(move || live_supervisors(&clone))
                .await
                .unwrap_or_default();
            if live.is_empty() {
                return;
            }
            if (terminate || Instant::now() >= deadline) && !signalled {
                self.printer
                    .verbose(format_args!("stopping {} worker supervisor(s)", live.len()));
                for identity in &live {
                    let _ = worker::signal_process(identity, Signal::Terminate);
                }
                signalled = true;
            } else if signalled && Instant::now() >= deadline + SUPERVISOR_GRACE {
                self.printer.warn(format_args!(
                    "{} worker supervisor(s) did not stop",
                    live.len()
                ));
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `crew ARGS` in the clone, as `who`, with the demo's environment.
    fn crew(&self, who: Who, args: &[String]) -> Command {
        let mut command = Command::new(&self.exe);
        command.args(args);
        self.environment(&mut command, who);
        command
            .current_dir(&self.clone)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            // Not in the demo's process group: a Ctrl-C is the demo's to handle, in order.
            .process_group(0);
        command
    }

    async fn git(&self, cwd: &Path, args: &[&str]) -> Result<(), DemoError> {
        let mut command = Command::new("git");
        command.args(args);
        self.environment(&mut command, Who::Bot);
        let output = command
            .current_dir(cwd)
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|source| DemoError::Io {
                path: cwd.to_owned(),
                source,
            })?;
        if output.status.success() {
            Ok(())
        } else {
            Err(DemoError::Git {
                args: args.join(" "),
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            })
        }
    }

    /// The environment of every child: see the module docs.
    fn environment(&self, command: &mut Command, who: Who) {
        if self.real_agent {
            for name in USER_VARIABLES {
                command.env_remove(name);
            }
        } else {
            let env = Env::from_process();
            command.env_clear();
            for name in KEPT_VARIABLES {
                if let Some(value) = env.get(name) {
                    command.env(name, value);
                }
            }
            command.env(crate::env_vars::HOME, self.dir.join("home"));
        }
        command
            .env(crate::env_vars::CREW_API_URL, self.emulator.base_url())
            .env(crate::env_vars::GH_TOKEN, who.token())
            .env(crate::env_vars::CREW_CACHE_DIR, cache_dir(&self.dir, who))
            .env(crate::env_vars::CREW_HOST, "demo")
            .env(crate::env_vars::NO_COLOR, "1")
            .env("GIT_AUTHOR_NAME", "crew demo")
            .env("GIT_AUTHOR_EMAIL", "demo@crew.invalid")
            .env("GIT_COMMITTER_NAME", "crew demo")
            .env("GIT_COMMITTER_EMAIL", "demo@crew.invalid")
            .env("GIT_TERMINAL_PROMPT", "0");
    }
}

/// The live supervisors of the clone's worker worktrees.
fn live_supervisors(clone: &Path) -> Vec<worker::ProcessIdentity> {
    let Ok(worktrees) = workspace::worker_worktrees(clone) else {
        return Vec::new();
    };
    worktrees
        .into_iter()
        .filter_map(|(path, context)| worker::locate::LocalWorker::load(&path, context).ok())
        .filter(worker::locate::LocalWorker::supervisor_alive)
        .filter_map(|local| local.supervisor())
        .collect()
}

/// The demo clone's crew.toml: the bundled agent (or a real one), the project board.
fn crew_toml(exe: &Path, agent: Option<&str>) -> String {
    let quote = |text: &str| serde_json::to_string(text).unwrap_or_default();
    let mut text = format!(
        "# Written by `crew demo` for this clone only (see templates/crew.toml for every key).\n\
         repo = \"{OWNER}/{NAME}\"\n\n[workers]\nagent = {}\nmax = 5\nmax_attempts = \
         {MAX_ATTEMPTS}\n\n[project]\nnumber = 1\n",
        quote(agent.unwrap_or(DEMO_AGENT))
    );
    if agent.is_none() {
        text.push_str(&format!(
            "\n[agents.{DEMO_AGENT}]\ncommand = [{}, \"demo-agent\", \"--prompt-file\", \
             \"{{prompt_file}}\"]\n",
            quote(&exe.display().to_string())
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_crew_toml_is_valid_settings() {
        let exe = Path::new("/opt/my \"crew\"/crew");
        for agent in [None, Some("claude")] {
            let text = crew_toml(exe, agent);
            let config = crate::settings::Config::parse(&text, Path::new("crew.toml"))
                .unwrap_or_else(|error| panic!("{error}\n{text}"));
            assert_eq!(config.workers.agent, agent.unwrap_or(DEMO_AGENT));
            assert_eq!(config.agents.contains_key(DEMO_AGENT), agent.is_none());
        }
        let config = crate::settings::Config::parse(&crew_toml(exe, None), Path::new("crew.toml"))
            .unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(
            config.agents[DEMO_AGENT].command[0],
            exe.display().to_string()
        );
    }
}
