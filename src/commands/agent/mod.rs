//! Agent-side commands (DESIGN.md 4): what an agent runs from inside its worktree to report —
//! `start`, `heartbeat`, `progress`, `blocked`, `handover`, `done`, `fail`.
//!
//! Decisions, and why:
//! - **Who the worker is comes from the worktree, not the command line.** [`Worker::locate`]
//!   walks up from the current directory to `.crew/context.json` (issue, attempt, worker,
//!   branch, base, repository, API URL, profile), so an agent cannot post for another issue by
//!   mistake, and the repository and API it talks to are the ones `crew dispatch` used, whatever
//!   `crew.toml` or `-R` say in the agent's shell. `.crew/supervisor.json`, when present, adds
//!   what the orchestrator resolved from its settings: the lease ref, the renewal interval and
//!   TTL, whether the profile pushes, and the agent's name; without it (another runtime), the
//!   worktree's own settings fill in.
//! - **Every write is fenced.** Before anything is written, the lease is re-read
//!   ([`GitHub::reclaim_lease`]): an attempt that was superseded (someone took the lease over
//!   after it expired) is refused with exit 4 and writes nothing, since its events would be
//!   ignored and its pushes would race the new attempt's; a released lease means the attempt is
//!   over (exit 1).
//! - **The token comes from the environment only** (`GH_TOKEN`, then `GITHUB_TOKEN`), never from
//!   `gh auth token`: the profile decides whether an agent may act on GitHub, and a profile
//!   without the token (`research`) must not borrow the machine owner's login. Without one, the
//!   command says which profile withheld it. The token is never printed: it lives in a
//!   [`crate::settings::Secret`] inside the client.
//! - **Re-runs after a crash do not post twice.** Events that close a step (`started`,
//!   `handover`, `in_review`, `completed`, `failed`) carry an op derived from the worker, the
//!   attempt and, where the step can repeat within an attempt, the commit it is about; they are
//!   posted with [`PostMode::Resume`], which finds the earlier comment instead of posting again.
//!   `progress` and `blocked` are new facts every time and get a fresh op.
//! - **`started` comes first.** The state machine takes `progress`, `blocked`, `in_review` and
//!   `completed` only from `working`, so those commands post the attempt's `started` themselves
//!   when the agent skipped `crew start` ([`Worker::ensure_started`]; remembered per attempt in
//!   `.crew/started`), rather than leave an event the fold would skip as illegal.
//! - **Finishing commands leave `.crew/finished`** with the kind they posted, so the supervisor
//!   knows the attempt ended normally and does not salvage it, then release the lease so the
//!   next step (a review, another attempt) need not wait for the TTL.
//! - **Mirrors are best effort**: the event is the source of truth; a failed board or label
//!   write is a warning that the next reconcile repairs.

pub mod blocked;
pub mod done;
pub mod fail;
pub mod handover;
pub mod heartbeat;
pub mod progress;
pub mod start;

mod git;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

use crate::context::Ctx;
use crate::error::CrewError;
use crate::github::{
    Board, GitHub, GitHubConfig, HeldLease, LeaseWriteError, PostMode, PostedEvent, RepoSlug,
};
use crate::prompt::{CommentContext, Prompts};
use crate::protocol::lease::LeaseState;
use crate::protocol::{Event, EventBody, State};
use crate::settings::{Env, Token, resolve_token};
use crate::worker::{self, FINISHED_FILE};
use crate::workspace::{self, CREW_DIR, WorkerContext};

/// `.crew/started`: the worker and attempt whose `started` event is posted.
pub const STARTED_FILE: &str = "started";

/// One worker, as an agent-side command sees it from inside its worktree.
#[derive(Debug, Clone)]
pub struct Worker {
    /// The worktree's root (where `.crew/` is).
    pub worktree: PathBuf,
    pub context: WorkerContext,
    pub repo: RepoSlug,
    pub api_url: url::Url,
    /// The lease ref prefix (`refs/crew/leases/`).
    pub prefix: String,
    /// Whether the profile pushes the branch.
    pub push: bool,
    /// Whether the profile passes the token to its agent.
    pub token: bool,
    /// The agent's name, when the supervisor spec records it.
    pub agent: Option<String>,
    pub renew_every: Duration,
    pub ttl: chrono::TimeDelta,
    /// How long one request to GitHub may take (`CREW_HTTP_TIMEOUT`).
    pub http_timeout: Duration,
}

impl Worker {
    /// The worker whose worktree contains the current directory.
    pub fn locate(ctx: &Ctx) -> Result<Worker, CrewError> {
        let cwd = std::env::current_dir().map_err(CrewError::internal)?;
        Worker::locate_from(ctx, &cwd)
    }

    /// The worker whose worktree contains `dir`.
    pub fn locate_from(ctx: &Ctx, dir: &Path) -> Result<Worker, CrewError> {
        let Some((worktree, context)) = workspace::find_context(dir)? else {
            return Err(CrewError::user(format!(
                "not inside a crew worker's worktree (no .crew/context.json found above {})",
                dir.display()
            ))
            .with_hint("agent-side commands run inside the worktree `crew dispatch` prepared"));
        };
        let repo: RepoSlug = context.repo.parse().map_err(|error| {
            CrewError::user(format!(
                "{}/.crew/context.json names repository `{}`: {error}",
                worktree.display(),
                context.repo
            ))
            .with_hint(
                "crew writes that file at dispatch; do not edit it (`crew retry` starts afresh)",
            )
        })?;
        let api_url = url::Url::parse(&context.api_url).map_err(|error| {
            CrewError::user(format!(
                "{}/.crew/context.json names API URL `{}`: {error}",
                worktree.display(),
                context.api_url
            ))
            .with_hint(
                "crew writes that file at dispatch; do not edit it (`crew retry` starts afresh)",
            )
        })?;
        let config = &ctx.settings.config;
        let spec = worker::read_spec(&worktree).unwrap_or_else(|error| {
            tracing::warn!(%error, "ignoring an unreadable .crew/supervisor.json");
            None
        });
        let suffix = context.issue.to_string();
        let prefix = spec
            .as_ref()
            .and_then(|spec| spec.lease.ref_name.strip_suffix(&suffix))
            .map(str::to_owned)
            .unwrap_or_else(|| config.lease_ref_prefix.clone());
        let profile = config.profiles.get(&context.profile);
        let (push, token) = match &spec {
            Some(spec) => (spec.invocation.push, spec.invocation.token),
            None => (
                profile.is_some_and(|profile| profile.push),
                profile.is_some_and(|profile| profile.token),
            ),
        };
        let renew_every = spec
            .as_ref()
            .map_or(config.workers.renew_every, |spec| spec.renew_every());
        let ttl = match &spec {
            Some(spec) => spec.ttl(),
            None => chrono::TimeDelta::from_std(config.workers.lease_ttl)
                .unwrap_or(chrono::TimeDelta::minutes(30)),
        };
        Ok(Worker {
            worktree,
            repo,
            api_url,
            prefix,
            push,
            token,
            agent: spec.map(|spec| spec.invocation.agent),
            renew_every,
            ttl,
            http_timeout: ctx.settings.http_timeout,
            context,
        })
    }

    /// A GitHub client for the context's API with the token from the environment, and this
    /// host's cache of the repository when it is at hand (the same API): its lease commits,
    /// ETags and board rows are shared with every other crew command here. Without it the
    /// client still works, only without those savings.
    pub async fn github(&self, ctx: &Ctx) -> Result<GitHub, CrewError> {
        let Some(Token { secret, .. }) = resolve_token(&Env::from_process(), || None) else {
            let profile = &self.context.profile;
            return Err(if self.token {
                CrewError::user(format!(
                    "no GitHub token in the environment (GH_TOKEN or GITHUB_TOKEN); profile \
                     `{profile}` passes one to its agent, so this is not the agent's environment"
                ))
                .with_hint("run agent-side commands from the agent's own shell, or set GH_TOKEN")
            } else {
                CrewError::user(format!(
                    "no GitHub token in this worker's environment (GH_TOKEN or GITHUB_TOKEN): \
                     profile `{profile}` does not pass the token to its agent"
                ))
                .with_hint(format!(
                    "set `token = true` in [profiles.{profile}] of crew.toml to let its agents report to GitHub"
                ))
            });
        };
        let cache = if ctx.settings.api_url == self.api_url {
            match ctx.cache().await {
                Ok(cache) => Some(cache.clone()),
                Err(error) => {
                    tracing::debug!("agent-side command without the cache: {error}");
                    None
                }
            }
        } else {
            None
        };
        Ok(GitHub::new(
            GitHubConfig::new(self.api_url.clone(), Some(secret)).with_timeout(self.http_timeout),
            cache,
        )?)
    }

    /// The fence: the lease at its current tip when it is still this attempt's and not released.
    pub async fn fence(&self, github: &GitHub) -> Result<HeldLease, CrewError> {
        let context = &self.context;
        match github
            .reclaim_lease(
                &self.repo,
                &self.prefix,
                context.issue,
                &context.worker,
                context.attempt,
            )
            .await
        {
            Ok(held) if held.lease.state == LeaseState::Released => Err(CrewError::user(format!(
                "attempt {} at #{} is over: its lease is released",
                context.attempt, context.issue
            ))
            .with_hint("stop here; `crew status` shows where the issue stands")),
            Ok(held) => {
                // Working again after `crew blocked`: the session did not end there after all.
                self.unmark_blocked();
                Ok(held)
            }
            Err(error @ LeaseWriteError::Superseded { .. }) => Err(CrewError::from(error)
                .with_hint(format!(
                    "another attempt owns #{} now: stop working and exit without pushing",
                    context.issue
                ))),
            Err(error) => Err(error.into()),
        }
    }

    /// An event of this worker's attempt.
    pub fn event(&self, op: String, body: EventBody) -> Event {
        Event {
            issue: self.context.issue,
            attempt: u64::from(self.context.attempt),
            worker: self.context.worker.clone(),
            op,
            at: chrono::Utc::now(),
            body,
        }
    }

    /// The op of a step that happens once per attempt (or once per `about`, a commit).
    pub fn derived_op(&self, kind: &str, about: Option<&str>) -> String {
        let mut op = format!("{kind}-{}-{}", self.context.worker, self.context.attempt);
        if let Some(about) = about {
            op.push('-');
            op.push_str(about);
        }
        op
    }

    /// Posts `event` with the comment body from the templates (overrides from the worktree).
    pub async fn post(
        &self,
        github: &GitHub,
        event: &Event,
        mode: PostMode,
    ) -> Result<PostedEvent, CrewError> {
        let prompts = Prompts::load(Some(&self.worktree))?;
        let body = prompts.comment_body(event, &CommentContext::from_event(event))?;
        Ok(github
            .post_event(&self.repo, event.issue, event, &body, mode)
            .await?)
    }

    /// The op and post mode for a `kind` event that is a new fact each time (`progress`,
    /// `blocked`), made safe to re-run: `.crew/pending-<kind>` holds the op, the attempt and
    /// the text of the last such post not known to have landed. A run with the same text after a failed one
    /// (exit 3: the comment may or may not be on GitHub) reuses that op and resumes, so it finds
    /// the first comment instead of posting a second; any other run gets a fresh op. Call
    /// [`Worker::posted_pending`] once the post succeeded.
    pub fn pending_op(&self, kind: &str, text: &str) -> Result<(String, PostMode), CrewError> {
        let path = self.pending_path(kind);
        // Only this attempt's own post: a later attempt in the same worktree asking the same
        // question is a new fact, not a re-run.
        let owner = format!("{} {}", self.context.worker, self.context.attempt);
        if let Ok(stored) = std::fs::read_to_string(&path)
            && let Some((op, rest)) = stored.split_once('\n')
            && let Some((stored_owner, stored_text)) = rest.split_once('\n')
            && stored_owner == owner
            && stored_text == text
            && !op.is_empty()
        {
            return Ok((op.to_owned(), PostMode::Resume));
        }
        let op = new_op_id();
        std::fs::write(&path, format!("{op}\n{owner}\n{text}")).map_err(|source| {
            CrewError::from(workspace::WorkspaceError::Io {
                path: path.clone(),
                source,
            })
        })?;
        Ok((op, PostMode::FirstTry))
    }

    /// Forgets the pending `kind` post [`Worker::pending_op`] recorded: it is on GitHub.
    pub fn posted_pending(&self, kind: &str) {
        let path = self.pending_path(kind);
        if let Err(error) = std::fs::remove_file(&path)
            && error.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!("could not remove {}: {error}", path.display());
        }
    }

    fn pending_path(&self, kind: &str) -> PathBuf {
        self.worktree.join(CREW_DIR).join(format!("pending-{kind}"))
    }

    /// Posts this attempt's `started` if it has not been (the state machine only takes
    /// `progress`, `blocked`, `in_review` and `completed` from `working`, and an agent may skip
    /// `crew start`). `.crew/started` remembers, per worker and attempt, that it was posted, so
    /// after the first time this costs nothing; the post itself is idempotent (derived op,
    /// [`PostMode::Resume`]).
    pub async fn ensure_started(&self, ctx: &Ctx, github: &GitHub) -> Result<(), CrewError> {
        if self.started_recorded() {
            return Ok(());
        }
        let event = self.event(self.derived_op("started", None), EventBody::Started {});
        let posted = self.post(github, &event, PostMode::Resume).await?;
        if !posted.reused {
            ctx.printer.status(format_args!(
                "#{}: posted `started` first (the attempt had not started)",
                self.context.issue
            ));
        }
        self.record_started()
    }

    fn started_marker(&self) -> (PathBuf, String) {
        (
            self.worktree.join(CREW_DIR).join(STARTED_FILE),
            format!("{} {}", self.context.worker, self.context.attempt),
        )
    }

    fn started_recorded(&self) -> bool {
        let (path, expected) = self.started_marker();
        std::fs::read_to_string(path).is_ok_and(|text| text.trim() == expected)
    }

    /// Remembers that this attempt's `started` is posted.
    pub fn record_started(&self) -> Result<(), CrewError> {
        let (path, content) = self.started_marker();
        std::fs::write(&path, format!("{content}\n")).map_err(|source| {
            CrewError::from(workspace::WorkspaceError::Io {
                path: path.clone(),
                source,
            })
        })
    }

    /// The board and labels for `state`, best effort.
    pub async fn mirror(&self, ctx: &Ctx, github: &GitHub, state: State) {
        let board = Board::new(&ctx.settings, &self.repo);
        if let Err(error) = board
            .mirror(github, &self.repo, self.context.issue, state)
            .await
        {
            ctx.printer.warn(format_args!(
                "#{}: could not update the board or labels ({error}); the next reconcile will",
                self.context.issue
            ));
        }
    }

    /// `.crew/finished` with the kind posted: the supervisor then records the exit only.
    /// Removes a `blocked` finished marker (see [`blocked`]); any other kind stays.
    pub fn unmark_blocked(&self) {
        let path = self.worktree.join(CREW_DIR).join(FINISHED_FILE);
        if std::fs::read_to_string(&path).is_ok_and(|kind| kind.trim() == "blocked") {
            let _ = std::fs::remove_file(&path);
        }
    }

    pub fn mark_finished(&self, kind: &str) -> Result<(), CrewError> {
        let path = self.worktree.join(CREW_DIR).join(FINISHED_FILE);
        std::fs::write(&path, format!("{kind}\n")).map_err(|source| {
            CrewError::from(workspace::WorkspaceError::Io {
                path: path.clone(),
                source,
            })
        })
    }

    /// Releases the lease; someone having taken it over meanwhile is only a warning (the event
    /// is posted; nothing of ours is left to release).
    pub async fn release(
        &self,
        ctx: &Ctx,
        github: &GitHub,
        held: &HeldLease,
    ) -> Result<bool, CrewError> {
        match github
            .release_lease(&self.repo, held, chrono::Utc::now())
            .await
        {
            Ok(_) => Ok(true),
            Err(error @ LeaseWriteError::Superseded { .. }) => {
                ctx.printer
                    .warn(format_args!("the lease was not released: {error}"));
                Ok(false)
            }
            Err(error) => Err(error.into()),
        }
    }
}

/// The worktree's work, saved for whoever comes next.
#[derive(Debug, Clone)]
pub struct SavedWork {
    /// Where the branch (or detached HEAD) is after saving.
    pub head_sha: String,
    /// Where the work left the base (the merge-base with `origin/<base>`).
    pub base_sha: String,
    /// The WIP commit, when there were uncommitted changes.
    pub wip: Option<String>,
    /// Files that differ from the base.
    pub files: Vec<String>,
    /// `None` when nothing is pushed (detached, or a profile without `push`).
    pub pushed: Option<bool>,
}

impl Worker {
    /// Commits uncommitted changes as `message` (WIP) and pushes the branch when the profile
    /// pushes. A failed push is a warning, not a failure: the commit is on the local branch, and
    /// the event that follows still tells the next attempt where the work stands.
    pub async fn save_work(&self, ctx: &Ctx, message: String) -> Result<SavedWork, CrewError> {
        let dir = self.worktree.clone();
        let branch = self.context.branch.clone().filter(|_| self.push);
        let (saved, push_error) = blocking(move || {
            let wip = git::commit_all(&dir, &message)?.map(|result| result.commit_sha);
            let head_sha = git::head(&dir)?;
            let base_sha = workspace::open_worktree(&dir)?.base_sha;
            let files = git::changed_files(&dir, &base_sha)?;
            let (pushed, push_error) = match &branch {
                Some(branch) => match git::push(&dir, branch, None) {
                    Ok(()) => (Some(true), None),
                    Err(error) => (Some(false), Some(error)),
                },
                None => (None, None),
            };
            Ok((
                SavedWork {
                    head_sha,
                    base_sha,
                    wip,
                    files,
                    pushed,
                },
                push_error,
            ))
        })
        .await?;
        if let Some(error) = push_error {
            ctx.printer.warn(format_args!(
                "the work is committed locally but was not pushed: {error}"
            ));
        }
        Ok(saved)
    }
}

/// What an agent-side command did, as `--json` prints it.
#[derive(Debug, Default, Serialize)]
pub struct AgentView {
    pub issue: u64,
    pub attempt: u32,
    pub worker: String,
    /// The event posted (`started`, `progress`, …); `null` for a heartbeat.
    pub kind: Option<String>,
    /// The comment carrying the event.
    pub comment_id: Option<u64>,
    /// True when an earlier run had already posted it.
    pub reused: bool,
    /// The pull request, for `done`.
    pub pr: Option<u64>,
    pub pr_url: Option<String>,
    /// The commit the worktree's branch is at, for `handover`, `done` and `fail`.
    pub head_sha: Option<String>,
    /// Whether the branch reached origin.
    pub pushed: Option<bool>,
    /// The lease after the command: renewed until, or released.
    pub lease_expires_at: Option<chrono::DateTime<chrono::Utc>>,
    pub lease_released: bool,
}

impl AgentView {
    pub fn new(worker: &Worker) -> AgentView {
        AgentView {
            issue: worker.context.issue,
            attempt: worker.context.attempt,
            worker: worker.context.worker.clone(),
            ..AgentView::default()
        }
    }

    pub fn posted(mut self, kind: &str, posted: &PostedEvent) -> AgentView {
        self.kind = Some(kind.to_owned());
        self.comment_id = Some(posted.comment_id);
        self.reused = posted.reused;
        self
    }
}

/// Prints `view` as JSON, or `line` for people.
pub fn print(ctx: &Ctx, view: &AgentView, line: &str) -> Result<(), CrewError> {
    if ctx.settings.json {
        ctx.printer.json(view)
    } else {
        ctx.printer.out(|w| writeln!(w, "{line}"))
    }
}

/// Runs blocking git work off the runtime's threads (CONVENTIONS 7).
pub async fn blocking<T, F>(work: F) -> Result<T, CrewError>
where
    F: FnOnce() -> Result<T, CrewError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(CrewError::internal)?
}

/// A fresh op id: the time in nanoseconds, this process's id and a per-process counter.
pub fn new_op_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or_default();
    format!(
        "op-{nanos:x}-{:x}-{:x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// The first 12 characters of a commit sha, for ops and messages.
pub fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker_at(worktree: &Path, attempt: u32) -> Worker {
        Worker {
            worktree: worktree.to_path_buf(),
            context: WorkerContext {
                issue: 7,
                attempt,
                worker: format!("laptop-{attempt}"),
                branch: Some("feature/7-x".to_owned()),
                base: "main".to_owned(),
                repo: "acme/widgets".to_owned(),
                api_url: "http://127.0.0.1:1/".to_owned(),
                profile: "code".to_owned(),
            },
            repo: "acme/widgets".parse().expect("a slug"),
            api_url: url::Url::parse("http://127.0.0.1:1/").expect("a url"),
            prefix: "refs/crew/leases/".to_owned(),
            push: true,
            token: true,
            agent: None,
            renew_every: Duration::from_secs(60),
            ttl: chrono::TimeDelta::minutes(30),
            http_timeout: Duration::from_secs(60),
        }
    }

    #[test]
    fn a_pending_post_is_resumed_only_by_its_own_attempt_with_the_same_text()
    -> Result<(), CrewError> {
        let dir = tempfile::tempdir().map_err(CrewError::internal)?;
        std::fs::create_dir_all(dir.path().join(CREW_DIR)).map_err(CrewError::internal)?;
        let first = worker_at(dir.path(), 1);
        let (op, mode) = first.pending_op("blocked", "Which colour?")?;
        assert_eq!(mode, PostMode::FirstTry);
        // The run failed; its re-run with the same question resumes the same op.
        assert_eq!(
            first.pending_op("blocked", "Which colour?")?,
            (op.clone(), PostMode::Resume)
        );
        // Another question, or the same one from the next attempt, is a new post.
        let (other, mode) = first.pending_op("blocked", "Which size?")?;
        assert_ne!(other, op);
        assert_eq!(mode, PostMode::FirstTry);
        let (next, mode) = worker_at(dir.path(), 2).pending_op("blocked", "Which size?")?;
        assert_ne!(next, other);
        assert_eq!(mode, PostMode::FirstTry);
        // Once posted, nothing is pending.
        first.posted_pending("blocked");
        let (fresh, mode) = first.pending_op("blocked", "Which size?")?;
        assert_ne!(fresh, next);
        assert_eq!(mode, PostMode::FirstTry);
        Ok(())
    }

    #[test]
    fn op_ids_are_unique_and_shas_shorten() {
        assert_ne!(new_op_id(), new_op_id());
        assert_eq!(short("0123456789abcdef"), "0123456789ab");
        assert_eq!(short("abc"), "abc");
    }
}
