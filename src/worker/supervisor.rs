//! The supervisor: one task that owns one agent process from spawn to exit (CONVENTIONS 11).
//!
//! Decisions, and why:
//! - **One owner, one `select!`.** [`run`] spawns the agent in its own process group and then
//!   waits on three things at once: the agent's exit, the lease-renewal interval, and
//!   cancellation. Nothing else holds the child, and there is no global table of children polled
//!   on a timer.
//! - **Stopping is escalation to the whole group**: SIGINT (agents save and exit), then SIGTERM,
//!   then SIGKILL, each after a grace period, sent to the group so a grandchild (a test runner, a
//!   `sleep`) goes with its parent. A group member left behind by an agent that exited on its own
//!   is stopped the same way.
//! - **Output is redacted on its way to the log.** stdout and stderr go through pipes, line by
//!   line, to `.crew/logs/<worker>.log` with every secret of the invocation replaced by `***`, so
//!   an agent that echoes its token never writes it to disk (nor, later, into a handover comment).
//! - **Renewal.** Every `renew_every` the lease is renewed by fast-forward. A rejected renewal
//!   (`Superseded`) means another attempt owns the issue: the agent is stopped, nothing is pushed
//!   or posted (that attempt owns the branch and the issue now; the worktree is left as it is, and
//!   a replacement attempt on this host reuses it and its uncommitted work). Other renewal errors
//!   (network) are logged and retried on the next tick: the TTL is several intervals long.
//! - **Exit without `done`/`handover`/`fail`** (DESIGN.md 3): the agent-side commands write
//!   `.crew/finished` with the kind they posted; when it is absent the supervisor salvages the
//!   worktree (WIP commit, push), posts a `handover` event with the diff stat and the log tail,
//!   and **releases the lease**: a handover hands the issue to the next attempt, and releasing
//!   lets that attempt start now instead of after the TTL. The handover's `op` is derived from the
//!   worker and attempt, so a retried salvage (a reconciling command after the supervisor died
//!   mid-way) finds the first comment instead of posting a second one.
//! - **One hand-over, two callers.** That tail is [`hand_over_abandoned`], which a reconciling
//!   command ([`crate::reconcile`]) also calls for a worker whose supervisor died. It ends by
//!   writing `.crew/handover.json`, so the next reconcile knows the attempt is settled without a
//!   single request. Where the lease is not known to be held (the supervisor is gone), it is read
//!   first and a lease that has moved to another attempt stops everything before any push.
//! - **An attempt its own command closed is not handed over again.** `crew done`/`handover`/
//!   `fail`/`blocked` post their event, then write `.crew/finished`; killed in between, the
//!   marker is missing although the attempt is over. So before saving anything,
//!   [`hand_over_abandoned`] looks for a closing event of this worker's attempt on the issue (one
//!   request): when there is one, it neither commits (that would land on the pull request's
//!   branch) nor posts (a second handover would end the attempt twice), and only lets the lease
//!   go. A question nobody answered yet counts as closing, and is settled as with its marker
//!   (the work saved as WIP, the lease released, nothing posted): a handover after it would
//!   invite a next attempt before the answer; once answered, the agent works on, and a crash
//!   after that is handed over as any other.
//! - **Finished normally**: the agent-side command that wrote the marker posted the event and
//!   owns the lease's fate; the supervisor records the exit, and releases the lease only if that
//!   command died before releasing it (two reads when it did not, which is the normal case):
//!   otherwise the issue would stay claimed by nobody until the TTL.
//! - **Crash points** ([`crate::fault`]): `salvage:push` and `salvage:comment`, so the tests can
//!   kill a supervisor in the middle of a salvage and watch a reconcile finish it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};

use crate::agents::{AgentInvocation, Stdin};
use crate::github::{GitHub, GitHubError, HeldLease, LeaseWriteError, PostMode, RepoSlug};
use crate::prompt::{CommentContext, PromptError, Prompts};
use crate::protocol::lease::LeaseState;
use crate::protocol::marker::{self, Marker};
use crate::protocol::{DEFAULT_TRUSTED_ASSOCIATIONS, Event, EventBody, EventKind, Handover, trust};
use crate::workspace::{self, CREW_DIR, WorkerProcess, WorkspaceError};

use super::process::{self, ProcessIdentity, Signal};

/// The marker file agent-side commands (`crew done`, `crew handover`, `crew fail`) write, holding
/// the kind of event they posted.
pub const FINISHED_FILE: &str = "finished";

/// Lines of the log quoted in a salvage handover.
pub const LOG_TAIL_LINES: usize = 40;

/// Everything one supervised run needs.
#[derive(Debug, Clone)]
pub struct SupervisorConfig {
    pub worktree: PathBuf,
    pub invocation: AgentInvocation,
    /// The resolved program ([`crate::agents::check_available`]).
    pub program: PathBuf,
    /// `.crew/logs/<worker>.log`.
    pub log_path: PathBuf,
    pub github: GitHub,
    pub repo: RepoSlug,
    pub lease: HeldLease,
    pub renew_every: Duration,
    pub ttl: chrono::TimeDelta,
    /// How long each signal of the SIGINT → SIGTERM → SIGKILL escalation is given.
    pub grace: Duration,
    /// Whether salvage pushes the WIP commit (the profile's `push`).
    pub push: bool,
}

impl SupervisorConfig {
    /// The log path crew uses for `worker` in `worktree`.
    pub fn default_log_path(worktree: &Path, worker: &str) -> PathBuf {
        worktree
            .join(CREW_DIR)
            .join("logs")
            .join(format!("{worker}.log"))
    }
}

/// Why the agent stopped.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// It exited by itself.
    Exited,
    /// The lease renewal was rejected; the supervisor stopped it.
    Superseded,
    /// The supervisor was cancelled (SIGTERM/SIGINT, `crew cancel`) and stopped it.
    Cancelled,
}

/// How the agent's process ended, as recorded in `.crew/worker.json`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExitRecord {
    pub reason: StopReason,
    /// The exit code, when it exited normally.
    pub code: Option<i32>,
    /// The signal that killed it, otherwise.
    pub signal: Option<i32>,
    pub at: chrono::DateTime<chrono::Utc>,
    /// The kind in `.crew/finished`, when an agent-side command finished the attempt.
    pub finished: Option<String>,
}

/// `.crew/worker.json` as the supervisor writes it: the fields every reader knows, plus the exit
/// once there is one (readers of [`WorkerProcess`] ignore fields they do not know).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SupervisedWorker {
    #[serde(flatten)]
    pub process: WorkerProcess,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<ExitRecord>,
}

/// What a supervised run came to.
#[derive(Debug, Clone)]
pub struct SupervisorOutcome {
    /// The agent process (leader of its own process group).
    pub agent: ProcessIdentity,
    pub exit: ExitRecord,
    /// Successful renewals.
    pub renewals: u32,
    /// The lease as last written by us (renewed or released).
    pub lease: HeldLease,
    /// The WIP commit, when the worktree was salvaged and had changes.
    pub salvage: Option<workspace::SalvageResult>,
    /// The `handover` comment posted for an abnormal exit.
    pub handover_comment: Option<u64>,
}

/// What can stop the supervisor itself.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("cannot start the agent `{}`: {source}", program.display())]
    Spawn {
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Workspace(#[from] WorkspaceError),
    #[error(transparent)]
    Prompt(#[from] PromptError),
    #[error(transparent)]
    GitHub(#[from] GitHubError),
    #[error(transparent)]
    Lease(Box<LeaseWriteError>),
    #[error("the salvage task failed: {0}")]
    Join(String),
}

impl From<LeaseWriteError> for SupervisorError {
    fn from(error: LeaseWriteError) -> Self {
        SupervisorError::Lease(Box::new(error))
    }
}

impl crate::error::Classify for SupervisorError {
    fn kind(&self) -> crate::error::ErrorKind {
        use crate::error::ErrorKind;
        match self {
            SupervisorError::Workspace(error) => error.kind(),
            SupervisorError::Prompt(error) => error.kind(),
            SupervisorError::GitHub(error) => error.kind(),
            SupervisorError::Lease(error) => error.kind(),
            SupervisorError::Spawn { .. }
            | SupervisorError::Io { .. }
            | SupervisorError::Join(_) => ErrorKind::Internal,
        }
    }

    fn hints(&self) -> Vec<String> {
        match self {
            SupervisorError::Workspace(error) => error.hints(),
            SupervisorError::Prompt(error) => error.hints(),
            SupervisorError::GitHub(error) => error.hints(),
            SupervisorError::Lease(error) => error.hints(),
            SupervisorError::Spawn { .. }
            | SupervisorError::Io { .. }
            | SupervisorError::Join(_) => Vec::new(),
        }
    }
}

/// Runs the agent of `config` to its end (or until `cancel` completes), renewing the lease
/// meanwhile, then records the exit and, if the agent did not finish the attempt itself,
/// salvages the worktree, posts a `handover` and releases the lease.
pub async fn run(
    config: SupervisorConfig,
    cancel: impl Future<Output = ()>,
) -> Result<SupervisorOutcome, SupervisorError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SupervisorError::Io { path, source }
    };
    let SupervisorConfig {
        worktree,
        invocation,
        program,
        log_path,
        github,
        repo,
        mut lease,
        renew_every,
        ttl,
        grace,
        push,
    } = config;
    let secrets: Vec<String> = invocation
        .secrets()
        .map(|secret| secret.expose().to_owned())
        .filter(|secret| !secret.is_empty())
        .collect();

    if let Some(dir) = log_path.parent() {
        tokio::fs::create_dir_all(dir).await.map_err(io(dir))?;
    }
    // A stale marker from an earlier attempt in this worktree must not hide this one's crash.
    let finished_path = worktree.join(CREW_DIR).join(FINISHED_FILE);
    match tokio::fs::remove_file(&finished_path).await {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(io(&finished_path)(error)),
    }
    let log = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .await
        .map_err(io(&log_path))?;

    let mut command = invocation.command(&program);
    {
        use std::os::unix::process::CommandExt;
        // Its own process group, so the whole tree can be signalled at once.
        command.process_group(0);
    }
    let stdin = match &invocation.stdin {
        Stdin::Null => Stdio::null(),
        Stdin::File(path) => Stdio::from(std::fs::File::open(path).map_err(io(path))?),
    };
    command
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut command = tokio::process::Command::from(command);
    command.kill_on_drop(false);
    let mut child = command.spawn().map_err(|source| SupervisorError::Spawn {
        program: program.clone(),
        source,
    })?;
    let pid = child.id().unwrap_or_default();
    let agent = ProcessIdentity::of(pid).unwrap_or(ProcessIdentity { pid, start_time: 0 });
    tracing::info!(pid, command = %invocation.display(), "agent started");

    // The log writer: both streams, line by line, redacted, into one file.
    let (lines_tx, lines_rx) = tokio::sync::mpsc::channel::<Vec<u8>>(256);
    let mut readers = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        readers.push(tokio::spawn(forward_lines(stdout, lines_tx.clone())));
    }
    if let Some(stderr) = child.stderr.take() {
        readers.push(tokio::spawn(forward_lines(stderr, lines_tx.clone())));
    }
    drop(lines_tx);
    let writer = tokio::spawn(write_log(log, lines_rx, secrets.clone()));

    let supervisor = ProcessIdentity::current();
    let mut record = SupervisedWorker {
        process: WorkerProcess {
            issue: lease.lease.issue,
            attempt: lease.lease.attempt,
            worker: lease.lease.worker.clone(),
            pid: agent.pid,
            start_time: agent.start_time,
            log_path: log_path.clone(),
            supervisor_pid: supervisor.map(|identity| identity.pid),
            supervisor_start_time: supervisor.map(|identity| identity.start_time),
        },
        exit: None,
    };
    write_record(&worktree, &record).await?;

    // The one owner of the child.
    let mut renewals = 0;
    let mut renew =
        tokio::time::interval_at(tokio::time::Instant::now() + renew_every, renew_every);
    renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(cancel);
    // Renewal stops once an agent-side command finished the attempt and let the lease go.
    let mut renewing = true;
    let (reason, status) = loop {
        tokio::select! {
            status = child.wait() => break (StopReason::Exited, status.ok()),
            () = &mut cancel => {
                tracing::info!(pid, "cancelled: stopping the agent");
                break (StopReason::Cancelled, stop(&mut child, pid, grace).await);
            }
            _ = renew.tick(), if renewing => {
                match github.renew_lease(&repo, &lease, chrono::Utc::now(), ttl).await {
                    Ok(renewed) => {
                        lease = renewed;
                        renewals += 1;
                    }
                    Err(LeaseWriteError::Superseded { current: Some(current), .. })
                        if current.worker == lease.lease.worker
                            && current.attempt == lease.lease.attempt
                            && tokio::fs::try_exists(&finished_path).await.unwrap_or(false) =>
                    {
                        // `crew done`/`handover`/`fail` released our own lease: the agent is
                        // finishing, not superseded. Let it exit by itself.
                        tracing::info!(pid, "the attempt is finished; no more renewals");
                        renewing = false;
                    }
                    Err(error @ (LeaseWriteError::Superseded { .. } | LeaseWriteError::NotHeld { .. })) => {
                        tracing::warn!(%error, pid, "lease lost: stopping the agent");
                        break (StopReason::Superseded, stop(&mut child, pid, grace).await);
                    }
                    Err(error) => tracing::warn!(%error, "lease renewal failed; retrying next interval"),
                }
            }
        }
    };
    // Whatever the leader left behind in its group goes too.
    if process::group_alive(pid) {
        stop_group(pid, grace).await;
    }
    for reader in readers {
        let _ = tokio::time::timeout(grace, reader).await;
    }
    let _ = tokio::time::timeout(grace, writer).await;

    let finished = match tokio::fs::read_to_string(&finished_path).await {
        Ok(kind) => Some(kind.trim().to_owned()).filter(|kind| !kind.is_empty()),
        Err(_) => None,
    };
    let exit = {
        use std::os::unix::process::ExitStatusExt;
        ExitRecord {
            reason: reason.clone(),
            code: status.and_then(|status| status.code()),
            signal: status.and_then(|status| status.signal()),
            at: chrono::Utc::now(),
            finished: finished.clone(),
        }
    };
    record.exit = Some(exit.clone());
    write_record(&worktree, &record).await?;
    tracing::info!(pid, ?exit, "agent exited");

    let mut outcome = SupervisorOutcome {
        agent,
        exit,
        renewals,
        lease: lease.clone(),
        salvage: None,
        handover_comment: None,
    };
    if finished.as_deref() == Some("blocked") && reason != StopReason::Superseded {
        // The agent asked a question and ended its session: no crash to hand over. Keep its
        // work, and let the lease go so the answer can start the next attempt.
        let (salvaged, released) = settle_blocked(&github, &repo, &worktree, &lease, push).await?;
        outcome.salvage = salvaged;
        if let Some(released) = released {
            outcome.lease = released;
        }
        return Ok(outcome);
    }
    if reason == StopReason::Superseded {
        return Ok(outcome);
    }
    if let Some(kind) = &finished {
        // An agent-side command that wrote the marker releases the lease right after; killed in
        // between, nobody would until the TTL, and no next step could start before. (Any other
        // writer of the marker, `crew cancel`, stops us and settles the lease itself.)
        if reason == StopReason::Exited
            && matches!(
                kind.as_str(),
                "in_review" | "completed" | "handover" | "failed"
            )
            && let Some(released) = release_finished(&github, &repo, &lease).await
        {
            outcome.lease = released;
        }
        return Ok(outcome);
    }

    // Abnormal exit: save the work, hand over, let the next attempt in.
    let why = match (&reason, status) {
        (StopReason::Cancelled, _) => "it was stopped".to_owned(),
        (_, Some(status)) => format!(
            "the agent exited ({status}) without `crew done`, `crew handover` or `crew fail`"
        ),
        (_, None) => "the agent's exit could not be observed".to_owned(),
    };
    let handed = hand_over_abandoned(
        &github,
        &repo,
        Abandoned {
            worktree,
            issue: lease.lease.issue,
            attempt: lease.lease.attempt,
            worker: lease.lease.worker.clone(),
            why,
            log_path,
            secrets,
            push,
            lease: LeaseHandle::Held(lease),
            resume_since: None,
        },
    )
    .await?;
    // An attempt its own `done`/`fail` closed is not handed over (`record.comment_id` is
    // `None` then): no replacement follows it.
    outcome.handover_comment = handed.record.comment_id;
    outcome.salvage = handed.salvage;
    if let Some(released) = handed.lease {
        outcome.lease = released;
    }
    Ok(outcome)
}

/// An attempt that ended blocked on a question: its work saved as a WIP commit (pushed when
/// the profile pushes) and its lease released, with nothing posted (the `blocked` event says it
/// all). A lease someone else holds by now is left alone.
async fn settle_blocked(
    github: &GitHub,
    repo: &RepoSlug,
    worktree: &Path,
    lease: &HeldLease,
    push: bool,
) -> Result<(Option<workspace::SalvageResult>, Option<HeldLease>), SupervisorError> {
    let salvaged = save_blocked(worktree, lease.lease.issue, lease.lease.attempt, push).await?;
    let released = match github.release_lease(repo, lease, chrono::Utc::now()).await {
        Ok(released) => Some(released),
        Err(LeaseWriteError::Superseded { .. }) => None,
        Err(error) => return Err(error.into()),
    };
    Ok((salvaged, released))
}

/// The work of an attempt that stopped on a question, as a WIP commit (pushed when `push`);
/// `None` when the worktree is clean.
async fn save_blocked(
    worktree: &Path,
    issue: u64,
    attempt: u32,
    push: bool,
) -> Result<Option<workspace::SalvageResult>, SupervisorError> {
    let worktree = worktree.to_path_buf();
    let message = workspace::wip_message(
        issue,
        attempt,
        "the agent stopped to wait for an answer to its question",
    );
    tokio::task::spawn_blocking(move || {
        let opened = workspace::open_worktree(&worktree)?;
        workspace::salvage_with(&opened, &message, push)
    })
    .await
    .map_err(|error| SupervisorError::Join(error.to_string()))?
    .map_err(SupervisorError::from)
}

/// After an agent-side command finished the attempt: releases the lease if it is still this
/// attempt's and held (the command died between writing `.crew/finished` and releasing it).
/// Normally the command released it, and this costs two reads. Failures are warnings: the lease
/// then expires by itself.
async fn release_finished(
    github: &GitHub,
    repo: &RepoSlug,
    lease: &HeldLease,
) -> Option<HeldLease> {
    let (issue, attempt) = (lease.lease.issue, lease.lease.attempt);
    let prefix = lease.ref_name.strip_suffix(&issue.to_string())?;
    let tip = match github
        .reclaim_lease(repo, prefix, issue, &lease.lease.worker, attempt)
        .await
    {
        Ok(tip) if tip.lease.state == LeaseState::Held => tip,
        Ok(_) | Err(LeaseWriteError::Superseded { .. }) => return None,
        Err(error) => {
            tracing::warn!(%error, "cannot read the lease of the finished attempt");
            return None;
        }
    };
    match github.release_lease(repo, &tip, chrono::Utc::now()).await {
        Ok(released) => {
            tracing::info!(
                issue,
                attempt,
                "released the lease the finishing command left held"
            );
            Some(released)
        }
        Err(LeaseWriteError::Superseded { .. }) => None,
        Err(error) => {
            tracing::warn!(%error, "cannot release the lease of the finished attempt");
            None
        }
    }
}

/// The comment by which the attempt's own agent-side command closed it (`handover`,
/// `in_review`, `completed` or `failed` of this worker and attempt, or a `blocked` no `answered`
/// of the attempt followed), when there is one: the command was killed after posting it and
/// before writing `.crew/finished`. Its author must be the one who announced the attempt (the
/// `assigned` comment) or have a trusted association, so a stranger's marker cannot make crew
/// skip a salvage. A salvage's own handover does not count
/// (an interrupted salvage is resumed by its `op`). One request per 100 comments.
async fn closed_by_agent(
    github: &GitHub,
    repo: &RepoSlug,
    issue: u64,
    worker: &str,
    attempt: u32,
) -> Result<Option<(u64, EventKind)>, GitHubError> {
    let salvage = salvage_op(worker, attempt);
    let mut announcer: Option<String> = None;
    let mut closed = None;
    for comment in github.issue_comments(repo, issue).await? {
        let Ok(Some(Marker::Event(event))) = marker::parse(comment.body.as_deref().unwrap_or(""))
        else {
            continue;
        };
        if event.worker != worker || event.attempt != u64::from(attempt) {
            continue;
        }
        let author = comment.user.map(|user| user.login).unwrap_or_default();
        let kind = event.body.kind();
        match kind {
            EventKind::Assigned => announcer = Some(author),
            // The answer reopens the question's attempt: the agent works on (a live worker).
            EventKind::Answered if closed.is_some_and(|(_, kind)| kind == EventKind::Blocked) => {
                closed = None;
            }
            EventKind::Handover
            | EventKind::InReview
            | EventKind::Completed
            | EventKind::Failed
            | EventKind::Blocked
                if event.op != salvage =>
            {
                let association = comment.author_association.as_deref().unwrap_or("");
                let trusted = announcer.as_deref().is_some_and(|announcer| {
                    !author.is_empty() && announcer.eq_ignore_ascii_case(&author)
                }) || trust(&author, association, "", &DEFAULT_TRUSTED_ASSOCIATIONS)
                    .is_ok();
                if trusted {
                    closed = Some((comment.id, kind));
                }
            }
            _ => {}
        }
    }
    Ok(closed)
}

/// The `op` of the salvage handover of one attempt: one per attempt, so a retry finds it.
pub fn salvage_op(worker: &str, attempt: u32) -> String {
    format!("salvage-{worker}-{attempt}")
}

/// `.crew/handover.json`: the record that an attempt which ended without `done`, `handover` or
/// `fail` has been settled (salvaged and handed over, or found superseded), so reconciling
/// commands leave it alone without asking GitHub.
pub const HANDOVER_FILE: &str = "handover.json";

/// What became of the lease when an abandoned attempt was handed over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaseFate {
    /// We released it.
    Released,
    /// It was released already (by an earlier, interrupted hand-over, or `crew done`).
    AlreadyReleased,
    /// Another worker or attempt holds it (or the ref is gone): nothing was pushed or posted.
    Superseded,
}

impl From<crate::github::Release> for LeaseFate {
    fn from(release: crate::github::Release) -> LeaseFate {
        match release {
            crate::github::Release::Released => LeaseFate::Released,
            crate::github::Release::AlreadyReleased => LeaseFate::AlreadyReleased,
            crate::github::Release::Superseded => LeaseFate::Superseded,
        }
    }
}

/// `.crew/handover.json`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HandoverRecord {
    pub worker: String,
    pub attempt: u32,
    pub at: chrono::DateTime<chrono::Utc>,
    /// The `handover` comment (posted now or found from an earlier run); `None` when superseded.
    pub comment_id: Option<u64>,
    /// The WIP commit, when there was uncommitted work.
    pub salvage_commit: Option<String>,
    pub lease: LeaseFate,
}

impl HandoverRecord {
    /// Whether this record settles `worker`'s attempt `attempt` (a reused worktree keeps the
    /// record of an earlier attempt, which says nothing about this one).
    pub fn settles(&self, worker: &str, attempt: u32) -> bool {
        self.worker == worker && self.attempt == attempt
    }
}

/// How [`hand_over_abandoned`] knows the lease.
#[derive(Clone, Debug)]
pub enum LeaseHandle {
    /// The lease as the supervisor last wrote it: it renewed it, so it knows it still holds it.
    Held(HeldLease),
    /// Not known (the supervisor died): read it first ([`GitHub::reclaim_lease`]) and push,
    /// post or release nothing unless it is still this worker's attempt.
    Reclaim { prefix: String },
}

/// An attempt that ended without `done`, `handover` or `fail`, to be handed over.
#[derive(Clone, Debug)]
pub struct Abandoned {
    pub worktree: PathBuf,
    pub issue: u64,
    pub attempt: u32,
    pub worker: String,
    /// Why, for the WIP commit and the comment ("the agent exited (exit status: 1) …").
    pub why: String,
    /// The agent's log, whose tail goes into the comment.
    pub log_path: PathBuf,
    /// Redacted from the log tail and the comment.
    pub secrets: Vec<String>,
    /// Whether the WIP commit is pushed (the profile's `push`).
    pub push: bool,
    pub lease: LeaseHandle,
    /// When set, an earlier run may already have posted the handover: comments updated since
    /// this instant are searched for its `op` first, and one found is used instead of posting.
    pub resume_since: Option<chrono::DateTime<chrono::Utc>>,
}

/// What [`hand_over_abandoned`] did.
#[derive(Clone, Debug)]
pub struct HandedOver {
    pub salvage: Option<workspace::SalvageResult>,
    /// The lease as released by this call, when it did release it.
    pub lease: Option<HeldLease>,
    /// Whether the comment already existed (an earlier, interrupted run posted it).
    pub comment_reused: bool,
    /// Also written to `.crew/handover.json`.
    pub record: HandoverRecord,
    /// The kind of event by which the attempt's own agent-side command had closed it already
    /// (it was killed before writing `.crew/finished`): then nothing was posted, only the lease
    /// let go (and, after an unanswered `blocked`, the work saved as WIP).
    pub closed_by: Option<EventKind>,
}

/// Hands over an attempt that ended without `done`, `handover` or `fail` (DESIGN.md 3): commits
/// the worktree as WIP and pushes it (only when it is dirty), posts a `handover` event with the
/// diff stat and the log tail, releases the lease, and records all that in
/// `.crew/handover.json`. The supervisor calls it when its agent exits abnormally; a reconciling
/// command calls it for a worker whose supervisor died.
///
/// Idempotent: the event's `op` is [`salvage_op`] (one per attempt), so with `resume_since` an
/// earlier post is found rather than repeated; a clean worktree commits nothing; a lease already
/// released (or superseded) is left as it is. With [`LeaseHandle::Reclaim`] a lease that is no
/// longer this attempt's stops everything before any push or post: that attempt owns the branch
/// and the issue now.
pub async fn hand_over_abandoned(
    github: &GitHub,
    repo: &RepoSlug,
    abandoned: Abandoned,
) -> Result<HandedOver, SupervisorError> {
    let Abandoned {
        worktree,
        issue,
        attempt,
        worker,
        why,
        log_path,
        secrets,
        push,
        lease,
        resume_since,
    } = abandoned;
    let record = |comment_id, salvage_commit, lease| HandoverRecord {
        worker: worker.clone(),
        attempt,
        at: chrono::Utc::now(),
        comment_id,
        salvage_commit,
        lease,
    };
    let held = match lease {
        LeaseHandle::Held(held) => held,
        LeaseHandle::Reclaim { prefix } => {
            match github
                .reclaim_lease(repo, &prefix, issue, &worker, attempt)
                .await
            {
                Ok(held) => held,
                Err(LeaseWriteError::Superseded { .. }) => {
                    let record = record(None, None, LeaseFate::Superseded);
                    write_handover(&worktree, &record).await?;
                    return Ok(HandedOver {
                        salvage: None,
                        lease: None,
                        comment_reused: false,
                        record,
                        closed_by: None,
                    });
                }
                Err(error) => return Err(error.into()),
            }
        }
    };

    // Its own `done`/`handover`/`fail`/`blocked` may have posted the event and died before
    // writing `.crew/finished`: then the attempt is over, and there is nothing to say — a
    // second handover would end the attempt twice. Nor anything to save, a WIP commit would
    // land on the pull request's branch; except after a question, which keeps its work as the
    // marker would have had it kept ([`settle_blocked`]). Only the lease is left to let go.
    if let Some((comment_id, kind)) = closed_by_agent(github, repo, issue, &worker, attempt).await?
    {
        let salvage = if kind == EventKind::Blocked {
            save_blocked(&worktree, issue, attempt, push).await?
        } else {
            None
        };
        let (fate, released) = release_held(github, repo, &held).await?;
        let record = record(
            (kind == EventKind::Handover).then_some(comment_id),
            salvage.as_ref().map(|result| result.commit_sha.clone()),
            fate,
        );
        write_handover(&worktree, &record).await?;
        return Ok(HandedOver {
            salvage,
            lease: released,
            comment_reused: true,
            record,
            closed_by: Some(kind),
        });
    }

    let (opened, salvaged) = {
        let worktree = worktree.clone();
        let message = workspace::wip_message(issue, attempt, &why);
        tokio::task::spawn_blocking(move || {
            let opened = workspace::open_worktree(&worktree)?;
            workspace::salvage_with(&opened, &message, push).map(|result| (opened, result))
        })
        .await
        .map_err(|error| SupervisorError::Join(error.to_string()))??
    };
    crate::fault::crashpoint("salvage:push");
    let op = salvage_op(&worker, attempt);
    let earlier = match resume_since {
        Some(since) => github.find_event_comment(repo, issue, &op, since).await?,
        None => None,
    };
    let (comment_id, comment_reused) = match earlier {
        Some(comment) => (comment.id, true),
        None => {
            let log_tail = tail(&log_path, LOG_TAIL_LINES, &secrets).await;
            let event = Event {
                issue,
                attempt: u64::from(attempt),
                worker: worker.clone(),
                op,
                at: chrono::Utc::now(),
                body: EventBody::Handover(Handover {
                    summary: format!("crew salvaged this attempt: {why}."),
                    next_steps: vec![
                        "Continue from the WIP commit on the branch; the log tail below shows where the agent stopped.".to_owned(),
                    ],
                    files: Vec::new(),
                    base_sha: Some(opened.base_sha.clone()),
                    head_sha: salvaged.as_ref().map(|result| result.commit_sha.clone()),
                }),
            };
            let prompts = Prompts::load(Some(&worktree))?;
            let context = CommentContext {
                diff_stat: salvaged.as_ref().map(|result| result.diff_stat.clone()),
                log_tail: Some(log_tail).filter(|tail| !tail.is_empty()),
                ..CommentContext::from_event(&event)
            };
            let body = redact(&prompts.comment_body(&event, &context)?, &secrets);
            let posted = github
                .post_event(repo, issue, &event, &body, PostMode::FirstTry)
                .await?;
            (posted.comment_id, false)
        }
    };
    crate::fault::crashpoint("salvage:comment");
    let (fate, released) = release_held(github, repo, &held).await?;
    let record = record(
        Some(comment_id),
        salvaged.as_ref().map(|result| result.commit_sha.clone()),
        fate,
    );
    write_handover(&worktree, &record).await?;
    Ok(HandedOver {
        salvage: salvaged,
        lease: released,
        comment_reused,
        record,
        closed_by: None,
    })
}

/// Releases `held` unless it is released already; someone having taken it over meanwhile
/// leaves nothing of ours to release.
async fn release_held(
    github: &GitHub,
    repo: &RepoSlug,
    held: &HeldLease,
) -> Result<(LeaseFate, Option<HeldLease>), SupervisorError> {
    if held.lease.state == LeaseState::Released {
        return Ok((LeaseFate::AlreadyReleased, None));
    }
    match github.release_lease(repo, held, chrono::Utc::now()).await {
        Ok(released) => Ok((LeaseFate::Released, Some(released))),
        Err(LeaseWriteError::Superseded { .. }) => Ok((LeaseFate::Superseded, None)),
        Err(error) => Err(error.into()),
    }
}

/// Writes `.crew/handover.json` atomically.
pub async fn write_handover(
    worktree: &Path,
    record: &HandoverRecord,
) -> Result<(), SupervisorError> {
    let worktree = worktree.to_path_buf();
    let record = record.clone();
    tokio::task::spawn_blocking(move || {
        let dir = worktree.join(CREW_DIR);
        let path = dir.join(HANDOVER_FILE);
        let io = |source| SupervisorError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(io)?;
        let mut text = serde_json::to_vec_pretty(&record).map_err(|source| {
            SupervisorError::Workspace(WorkspaceError::Json {
                path: path.clone(),
                source,
            })
        })?;
        text.push(b'\n');
        let temp = dir.join(format!(".{HANDOVER_FILE}.tmp.{}", std::process::id()));
        std::fs::write(&temp, &text)
            .and_then(|()| std::fs::rename(&temp, &path))
            .map_err(|error| {
                let _ = std::fs::remove_file(&temp);
                io(error)
            })
    })
    .await
    .map_err(|error| SupervisorError::Join(error.to_string()))?
}

/// Reads `.crew/handover.json`; `None` when there is none (or it is not crew's: a record that
/// cannot be read settles nothing, so the attempt is looked at again).
pub fn read_handover(worktree: &Path) -> Option<HandoverRecord> {
    let bytes = std::fs::read(worktree.join(CREW_DIR).join(HANDOVER_FILE)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// SIGINT → SIGTERM → SIGKILL to the agent's group, each given `grace`, until the leader has
/// exited and no member of the group is left. Returns the leader's exit status.
async fn stop(
    child: &mut tokio::process::Child,
    group: u32,
    grace: Duration,
) -> Option<std::process::ExitStatus> {
    let mut status = None;
    for signal in [Signal::Interrupt, Signal::Terminate, Signal::Kill] {
        if let Err(error) = process::signal_group(group, signal) {
            tracing::warn!(%error, group, ?signal, "cannot signal the agent's group");
        }
        let deadline = tokio::time::Instant::now() + grace;
        if status.is_none() {
            status = tokio::time::timeout_at(deadline, child.wait())
                .await
                .ok()
                .and_then(Result::ok);
        }
        if status.is_some() && wait_group_gone(group, deadline).await {
            return status;
        }
    }
    if status.is_none() {
        status = child.wait().await.ok();
    }
    status
}

/// The same escalation for a group whose leader has already been reaped.
pub async fn stop_group(group: u32, grace: Duration) {
    for signal in [Signal::Interrupt, Signal::Terminate, Signal::Kill] {
        if let Err(error) = process::signal_group(group, signal) {
            tracing::warn!(%error, group, ?signal, "cannot signal the agent's group");
        }
        if wait_group_gone(group, tokio::time::Instant::now() + grace).await {
            return;
        }
    }
}

/// Waits until no process of `group` runs, or `deadline`; true when the group is gone. Polls
/// `/proc` briefly: a group has no handle to wait on once its leader is reaped.
async fn wait_group_gone(group: u32, deadline: tokio::time::Instant) -> bool {
    loop {
        if !process::group_alive(group) {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn forward_lines(stream: impl AsyncRead + Unpin, lines: tokio::sync::mpsc::Sender<Vec<u8>>) {
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = Vec::new();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                if lines.send(line).await.is_err() {
                    return;
                }
            }
        }
    }
}

async fn write_log(
    mut log: tokio::fs::File,
    mut lines: tokio::sync::mpsc::Receiver<Vec<u8>>,
    secrets: Vec<String>,
) {
    while let Some(line) = lines.recv().await {
        let text = String::from_utf8_lossy(&line);
        let redacted = redact(&text, &secrets);
        if let Err(error) = log.write_all(redacted.as_bytes()).await {
            tracing::warn!(%error, "cannot write the agent's log");
        }
    }
    let _ = log.flush().await;
}

/// `text` with every secret replaced by `***`.
pub fn redact(text: &str, secrets: &[String]) -> String {
    secrets
        .iter()
        .filter(|secret| !secret.is_empty())
        .fold(text.to_owned(), |text, secret| {
            text.replace(secret.as_str(), "***")
        })
}

/// The last `lines` lines of the log, redacted; empty when there is no log. Only the last
/// 64 KiB are read: a tail for a comment, not a copy of a log that may be huge.
pub async fn tail(log_path: &Path, lines: usize, secrets: &[String]) -> String {
    let (path, secrets) = (log_path.to_path_buf(), secrets.to_vec());
    tokio::task::spawn_blocking(move || tail_lines(&path, lines, &secrets))
        .await
        .ok()
        .and_then(Result::ok)
        .map(|lines| lines.join("\n"))
        .unwrap_or_default()
}

/// [`tail`] as lines, blocking; no log yet is no lines (the dashboard's log pane reads it too).
pub fn tail_lines(
    log_path: &Path,
    lines: usize,
    secrets: &[String],
) -> std::io::Result<Vec<String>> {
    use std::io::{Read, Seek};
    const WINDOW: u64 = 64 * 1024;
    let mut file = match std::fs::File::open(log_path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error),
    };
    let start = file.metadata()?.len().saturating_sub(WINDOW);
    file.seek(std::io::SeekFrom::Start(start))?;
    let mut bytes = Vec::new();
    file.take(WINDOW).read_to_end(&mut bytes)?;
    let text = redact(&String::from_utf8_lossy(&bytes), secrets);
    let mut all: Vec<&str> = text.lines().collect();
    if start > 0 && !all.is_empty() {
        // The first line was cut by the window.
        all.remove(0);
    }
    let first = all.len().saturating_sub(lines);
    Ok(all[first..].iter().map(|line| (*line).to_owned()).collect())
}

async fn write_record(worktree: &Path, record: &SupervisedWorker) -> Result<(), SupervisorError> {
    let worktree = worktree.to_path_buf();
    let record = record.clone();
    tokio::task::spawn_blocking(move || write_supervised(&worktree, &record))
        .await
        .map_err(|error| SupervisorError::Join(error.to_string()))?
}

/// Writes `.crew/worker.json` with the exit, atomically (temp file, fsync, rename), after
/// [`workspace::write_worker`] has made sure `.crew/` exists and is excluded.
fn write_supervised(worktree: &Path, record: &SupervisedWorker) -> Result<(), SupervisorError> {
    use std::io::Write;
    workspace::write_worker(worktree, &record.process)?;
    if record.exit.is_none() {
        return Ok(());
    }
    let dir = worktree.join(CREW_DIR);
    let path = dir.join(workspace::WORKER_FILE);
    let temp = dir.join(format!(
        ".{}.exit.{}",
        workspace::WORKER_FILE,
        std::process::id()
    ));
    let mut text = serde_json::to_vec_pretty(record).map_err(|source| {
        SupervisorError::Workspace(WorkspaceError::Json {
            path: path.clone(),
            source,
        })
    })?;
    text.push(b'\n');
    let result = (|| {
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(&text)?;
        file.sync_all()?;
        std::fs::rename(&temp, &path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result.map_err(|source| SupervisorError::Io { path, source })
}

/// Reads `.crew/worker.json` with the exit the supervisor recorded, if any.
pub fn read_supervised(worktree: &Path) -> Result<Option<SupervisedWorker>, SupervisorError> {
    let path = worktree.join(CREW_DIR).join(workspace::WORKER_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| SupervisorError::Workspace(WorkspaceError::Json { path, source })),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(SupervisorError::Io { path, source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_replaces_every_occurrence() {
        let secrets = vec!["s3cr3t".to_owned(), String::new()];
        assert_eq!(redact("a s3cr3t b s3cr3t", &secrets), "a *** b ***");
    }
}
