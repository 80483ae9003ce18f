//! `crew logs <issue> [-f] [--lines N]`: what a worker of this clone has written.
//!
//! Decisions, and why:
//! - **Local, and free.** The log is `.crew/logs/<worker>.log` in the worker's worktree, written
//!   by its supervisor; finding it reads the clone's worktrees and `.crew/` files only
//!   ([`crate::worker::locate`]), so printing or following a local worker's log makes no GitHub
//!   request at all. Only when this clone has no worker of the issue is the lease read, to say
//!   which host runs it.
//! - **Following polls the file** (every 200 ms) rather than watching it: the log only grows (the
//!   supervisor appends), polling needs no platform API, and the same loop checks whether the
//!   supervisor (by pid and start time) still runs. Once it has exited, what is left in the file is
//!   printed and the command exits 0; Ctrl-C exits 0 as well, as `tail -f` users expect.
//! - **Whole lines, redacted.** The supervisor already redacts secrets; the token this command
//!   runs with is redacted once more (a log written by an older crew, a token echoed in a way the
//!   supervisor did not know), which is why following prints whole lines only: a token must not
//!   escape by being split across two reads.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use serde::Serialize;

use crate::commands::cancel::{STARTUP_PATIENCE, issue_lease, wait_for_record};
use crate::context::Ctx;
use crate::error::CrewError;
use crate::observe::timestamp;
use crate::protocol::lease::LeaseStatus;
use crate::worker::ExitRecord;
use crate::worker::locate::{self, LocalWorker};
use crate::worker::supervisor::redact;

/// How often `--follow` looks for new output.
const POLL: Duration = Duration::from_millis(200);

/// Print the log of an issue's worker on this clone
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  crew logs 42           Print #42's worker log
  crew logs 42 -f        ... and keep printing until the worker exits
  crew logs 42 -n 50 -f  The last 50 lines, then follow")]
pub struct LogsArgs {
    /// The issue number
    pub issue: u64,

    /// Keep printing new output until the worker's supervisor exits
    #[arg(short, long)]
    pub follow: bool,

    /// Print only the last N lines (then follow, with -f)
    #[arg(short = 'n', long, value_name = "N")]
    pub lines: Option<usize>,
}

/// `crew logs --json`.
#[derive(Debug, Serialize)]
pub struct LogsView {
    pub issue: u64,
    pub attempt: u32,
    pub worker: String,
    pub worktree: String,
    pub log_path: String,
    pub supervisor: Option<ProcessView>,
    pub agent: Option<ProcessView>,
    /// How the agent ended, once it has.
    pub exit: Option<ExitView>,
    /// The log's lines (the last N with `--lines`).
    pub lines: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct ProcessView {
    pub pid: u32,
    pub alive: bool,
}

#[derive(Debug, Serialize)]
pub struct ExitView {
    /// `exited`, `superseded` or `cancelled`.
    pub reason: &'static str,
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub at: String,
    /// The kind an agent-side command finished the attempt with (`.crew/finished`).
    pub finished: Option<String>,
}

impl ExitView {
    fn of(exit: &ExitRecord) -> ExitView {
        use crate::worker::StopReason;
        ExitView {
            reason: match exit.reason {
                StopReason::Exited => "exited",
                StopReason::Superseded => "superseded",
                StopReason::Cancelled => "cancelled",
            },
            code: exit.code,
            signal: exit.signal,
            at: timestamp(exit.at),
            finished: exit.finished.clone(),
        }
    }
}

pub async fn run(ctx: &Ctx, args: &LogsArgs) -> Result<(), CrewError> {
    if args.follow && ctx.settings.json {
        return Err(CrewError::usage(
            "--follow prints the log as it grows and has no --json form",
        ));
    }
    let Some(root) = ctx.settings.repo_root.clone() else {
        return Err(
            CrewError::user("crew logs reads the worktrees of a clone: run it inside one")
                .with_hint(
                    "`cd` into the clone that dispatched the worker (`crew status` names its host)",
                ),
        );
    };
    let number = args.issue;
    let found = tokio::task::spawn_blocking(move || locate::locate(&root, number))
        .await
        .map_err(CrewError::internal)??;
    let Some(mut local) = found else {
        return Err(not_here(ctx, number).await);
    };
    let secrets: Vec<String> = ctx
        .settings
        .token()
        .map(|token| token.secret.expose().to_owned())
        .into_iter()
        .collect();

    if !args.follow {
        let path = local.log_path();
        let text = read_log(&path)?;
        let lines = last_lines(&text, args.lines);
        if ctx.settings.json {
            let view = view(&local, &path, lines, &secrets);
            return ctx.printer.json(&view);
        }
        if !path.exists() {
            ctx.printer.status(format_args!(
                "worker {} of #{number} has written no output yet",
                local.worker()
            ));
        }
        let text = redact(&lines.concat(), &secrets);
        return ctx.printer.out(|w| w.write_all(text.as_bytes()));
    }
    follow(ctx, &mut local, args.lines, &secrets).await
}

/// `--follow`: the log so far (or its last lines), then what is appended, until the supervisor
/// has exited and the file is drained, or Ctrl-C.
async fn follow(
    ctx: &Ctx,
    local: &mut LocalWorker,
    lines: Option<usize>,
    secrets: &[String],
) -> Result<(), CrewError> {
    // Installed now, before the first line is printed, so a Ctrl-C that follows it ends the
    // command cleanly instead of by the default action.
    let mut handler = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(CrewError::internal)?;
    let interrupted = handler.recv();
    tokio::pin!(interrupted);
    // A supervisor that was just started records itself (and its log path) shortly.
    if local.record.is_none() && local.spec.is_some() && local.exit().is_none() {
        tokio::select! {
            result = wait_for_record(local, STARTUP_PATIENCE) => result?,
            _ = &mut interrupted => return Ok(()),
        }
    }
    if local.record.is_none() {
        ctx.printer.warn(format_args!(
            "worker {} of #{} has no running supervisor; printing its log as it is",
            local.worker(),
            local.issue()
        ));
    }
    let path = local.log_path();
    let mut tail = Tail::new(path);
    // The start: everything so far, or its last lines.
    let first = tail.read_new()?;
    let (complete, partial) = split_partial(&first);
    let start = last_lines(complete, lines).concat();
    tail.pending = partial.to_owned();
    print(ctx, &start, secrets)?;
    loop {
        let running = local.supervisor_alive();
        let chunk = tail.read_new()?;
        let (complete, partial) = split_partial(&chunk);
        print(ctx, complete, secrets)?;
        tail.pending = partial.to_owned();
        if !running {
            // Exited before this read began: the file is complete.
            let rest = std::mem::take(&mut tail.pending);
            return print(ctx, &rest, secrets);
        }
        tokio::select! {
            () = tokio::time::sleep(POLL) => {}
            _ = &mut interrupted => return Ok(()),
        }
    }
}

/// Reads what was appended to a file since the last read; the file may not exist yet.
struct Tail {
    path: PathBuf,
    offset: u64,
    /// A line not yet ended by `\n`, kept for the next read.
    pending: String,
}

impl Tail {
    fn new(path: PathBuf) -> Tail {
        Tail {
            path,
            offset: 0,
            pending: String::new(),
        }
    }

    /// `pending` followed by the new bytes.
    fn read_new(&mut self) -> Result<String, CrewError> {
        let mut text = std::mem::take(&mut self.pending);
        let mut file = match std::fs::File::open(&self.path) {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(text),
            Err(error) => return Err(CrewError::internal(error)),
        };
        file.seek(SeekFrom::Start(self.offset))
            .map_err(CrewError::internal)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(CrewError::internal)?;
        // A cut UTF-8 sequence at the end waits for the rest of it.
        let valid = match std::str::from_utf8(&bytes) {
            Ok(_) => bytes.len(),
            Err(error) if error.error_len().is_none() => error.valid_up_to(),
            Err(_) => bytes.len(),
        };
        self.offset += valid as u64;
        text.push_str(&String::from_utf8_lossy(&bytes[..valid]));
        Ok(text)
    }
}

fn print(ctx: &Ctx, text: &str, secrets: &[String]) -> Result<(), CrewError> {
    if text.is_empty() {
        return Ok(());
    }
    let text = redact(text, secrets);
    ctx.printer.out(|w| w.write_all(text.as_bytes()))
}

/// `text` up to and including its last `\n`, and the rest.
fn split_partial(text: &str) -> (&str, &str) {
    match text.rfind('\n') {
        Some(end) => text.split_at(end + 1),
        None => ("", text),
    }
}

/// The lines of `text` (each with its `\n`), all or the last `count`.
fn last_lines(text: &str, count: Option<usize>) -> Vec<&str> {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    match count {
        Some(count) => lines[lines.len().saturating_sub(count)..].to_vec(),
        None => lines,
    }
}

/// The whole log; empty when there is none yet.
fn read_log(path: &Path) -> Result<String, CrewError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(error) => Err(CrewError::internal(error)),
    }
}

fn view(local: &LocalWorker, path: &Path, lines: Vec<&str>, secrets: &[String]) -> LogsView {
    let process = |identity: Option<crate::worker::ProcessIdentity>, alive: bool| {
        identity.map(|identity| ProcessView {
            pid: identity.pid,
            alive,
        })
    };
    LogsView {
        issue: local.issue(),
        attempt: local.attempt(),
        worker: local.worker().to_owned(),
        worktree: local.worktree.to_string_lossy().into_owned(),
        log_path: path.to_string_lossy().into_owned(),
        supervisor: process(local.supervisor(), local.supervisor_alive()),
        agent: process(local.agent(), local.agent_alive()),
        exit: local.exit().map(ExitView::of),
        lines: lines
            .into_iter()
            .map(|line| redact(line.trim_end_matches(['\n', '\r']), secrets))
            .collect(),
    }
}

/// The error for an issue without a worker in this clone, naming the host that runs it when its
/// lease says so (best effort: the lease is only read to make the message more useful).
async fn not_here(ctx: &Ctx, number: u64) -> CrewError {
    let message = format!("this clone has no worker of #{number}");
    let lease = match (ctx.settings.require_repo(), ctx.github().await) {
        (Ok(repo), Ok(github)) => {
            issue_lease(github, repo, &ctx.settings.config.lease_ref_prefix, number).await
        }
        _ => return CrewError::user(message),
    };
    match lease {
        Ok(Some(Ok(lease))) if lease.status(ctx.clock.now()) == LeaseStatus::Live => {
            let place = if lease.host == ctx.settings.host {
                format!("in another clone on this host ({})", lease.host)
            } else {
                format!("on host {}", lease.host)
            };
            CrewError::user(format!(
                "{message}: worker {} (attempt {}) runs {place}",
                lease.worker, lease.attempt
            ))
            .with_hint(format!("run `crew logs {number}` there"))
        }
        Ok(_) => CrewError::user(message)
            .with_hint(format!("`crew show {number}` shows where the issue stands")),
        Err(error) => {
            ctx.printer.warn(format_args!(
                "could not read the lease of #{number}: {error}"
            ));
            CrewError::user(message)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn the_last_lines_keep_their_newlines() {
        assert_eq!(last_lines("a\nb\nc\n", Some(2)), vec!["b\n", "c\n"]);
        assert_eq!(last_lines("a\nb", Some(5)), vec!["a\n", "b"]);
        assert_eq!(last_lines("a\nb\n", None).concat(), "a\nb\n");
        assert!(last_lines("", Some(3)).is_empty());
    }

    #[test]
    fn a_partial_line_waits() {
        assert_eq!(split_partial("a\nb"), ("a\n", "b"));
        assert_eq!(split_partial("a\n"), ("a\n", ""));
        assert_eq!(split_partial("ab"), ("", "ab"));
    }

    #[test]
    fn following_reads_only_what_was_appended() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("worker.log");
        let mut tail = Tail::new(path.clone());
        assert_eq!(tail.read_new().map_err(|e| e.to_string())?, "");
        std::fs::write(&path, "one\ntw")?;
        let first = tail.read_new().map_err(|e| e.to_string())?;
        let (complete, partial) = split_partial(&first);
        assert_eq!(complete, "one\n");
        tail.pending = partial.to_owned();
        let mut file = std::fs::OpenOptions::new().append(true).open(&path)?;
        file.write_all("o\nthr\u{e9}".as_bytes())?;
        // Cut inside the two bytes of `é`.
        file.write_all(&[0xc3])?;
        let second = tail.read_new().map_err(|e| e.to_string())?;
        assert_eq!(second, "two\nthr\u{e9}");
        file.write_all(&[0xa9, b'\n'])?;
        assert_eq!(tail.read_new().map_err(|e| e.to_string())?, "\u{e9}\n");
        Ok(())
    }
}
