//! What the maintainer's commands (`answer`, `approve`, `request-changes`, `merge`, `retry`,
//! `reassign`) share: reading an issue's state, refusing an illegal step with the state and
//! what is allowed instead, posting the event, mirroring the board, and judging whether the
//! issue's worker is still alive.
//!
//! Decisions, and why:
//! - **The state machine decides, before anything is written.** A command is one event kind;
//!   [`Maintained::require`] asks [`next_state`] whether the issue's current state allows it and
//!   otherwise fails with exit 1, naming the state and the commands that *would* apply there
//!   (DESIGN.md 2.3: "an illegal transition asked for by a command is a clear error naming the
//!   current state").
//! - **A maintainer's event belongs to the current attempt**: it carries the attempt and worker
//!   the fold last saw, so fencing treats it like the worker's own events.
//! - **"Is the worker alive?" is the lease.** Held, live, and still the current attempt's at its
//!   tip ([`GitHub::reclaim_lease`]): then the running worker receives what was posted (it waits
//!   with `crew wait`); otherwise the next attempt is dispatched with it in its prompt.

use std::fmt::Write as _;

use crate::commands::brief::{self, Gathered};
use crate::commands::dispatch::{self, DispatchArgs, DispatchView, Runtime};
use crate::context::Ctx;
use crate::error::CrewError;
use crate::github::{Board, GitHub, LeaseWriteError, PostMode, PostedEvent};
use crate::prompt::{CommentContext, Prompts};
use crate::protocol::lease::{LeaseState, LeaseStatus};
use crate::protocol::{Event, EventBody, EventKind, State, new_op_id, next_state};
use crate::settings::RepoSlug;

/// The command a maintainer or agent types to record `kind`.
pub fn command_for(kind: EventKind) -> &'static str {
    match kind {
        EventKind::Assigned => "dispatch (or retry, reassign)",
        EventKind::Started => "start (the agent)",
        EventKind::Progress => "progress (the agent)",
        EventKind::Blocked => "blocked (the agent)",
        EventKind::Answered => "answer",
        EventKind::Handover => "handover (the agent)",
        EventKind::InReview => "done (the agent)",
        EventKind::ChangesRequested => "request-changes",
        EventKind::Approved => "approve",
        EventKind::Completed => "merge",
        EventKind::Failed => "fail (the agent)",
        EventKind::Cancelled => "cancel",
        EventKind::Released => "gc",
    }
}

/// The commands that apply in `state`, for error messages.
pub fn allowed_commands(state: State) -> Vec<&'static str> {
    EventKind::ALL
        .iter()
        .filter(|kind| next_state(state, **kind).is_ok())
        .map(|kind| command_for(*kind))
        .collect()
}

/// The crash point right after a maintainer's event comment is posted (before the board is
/// mirrored and, for `answer` and `request-changes`, before the next attempt is dispatched);
/// see [`crate::fault`]. `merge --force`'s recorded approval is an `approve:comment` too.
fn comment_crashpoint(kind: EventKind) -> Option<&'static str> {
    match kind {
        EventKind::Approved => Some("approve:comment"),
        EventKind::Answered => Some("answer:comment"),
        EventKind::ChangesRequested => Some("request-changes:comment"),
        _ => None,
    }
}

/// An issue as a maintainer's command sees it.
pub(crate) struct Maintained {
    pub github: GitHub,
    pub repo: RepoSlug,
    pub prompts: Prompts,
    pub gathered: Gathered,
}

impl Maintained {
    /// Reads issue `number`, its comments and its folded state (2 requests; `GET /user` too,
    /// once per host, if an untrusted marker makes the token's login matter).
    pub async fn load(ctx: &Ctx, number: u64) -> Result<Maintained, CrewError> {
        let settings = &ctx.settings;
        let repo = settings.require_repo()?.clone();
        let prompts = Prompts::load(settings.repo_root.as_deref())?;
        // The cached client: lease commits, ETags and board rows are this host's to share.
        let github = ctx.github().await?.clone();
        let gathered =
            brief::gather_lazily(&github, ctx.cache().await?, settings, &repo, number).await?;
        Ok(Maintained {
            github,
            repo,
            prompts,
            gathered,
        })
    }

    pub fn number(&self) -> u64 {
        self.gathered.issue.number
    }

    pub fn state(&self) -> State {
        self.gathered.state.state
    }

    /// Ok when `kind` is legal now; otherwise exit 1 naming the state and what is allowed.
    pub fn require(&self, kind: EventKind, command: &str) -> Result<State, CrewError> {
        let state = self.state();
        next_state(state, kind).map_err(|_| self.illegal(command))
    }

    /// The error for `command` in the current state.
    pub fn illegal(&self, command: &str) -> CrewError {
        let state = self.state();
        let mut message = format!("cannot {command} #{}: it is `{state}`", self.number());
        if let Some(question) = &self.gathered.state.question {
            let _ = write!(message, " (asking: {question})");
        }
        let allowed = allowed_commands(state);
        let hint = if allowed.is_empty() {
            format!("nothing changes a `{state}` issue")
        } else {
            format!("from `{state}` crew allows: {}", allowed.join(", "))
        };
        CrewError::user(message).with_hint(hint)
    }

    /// The pull request the issue's events named; exit 1 when there is none.
    pub fn pr(&self, command: &str) -> Result<u64, CrewError> {
        self.gathered.state.pr.ok_or_else(|| {
            CrewError::user(format!(
                "cannot {command} #{}: no pull request has been opened for it",
                self.number()
            ))
            .with_hint("the agent opens one with `crew done`")
        })
    }

    /// An event of the current attempt.
    pub fn event(&self, op: String, body: EventBody) -> Event {
        let state = &self.gathered.state;
        Event {
            issue: self.number(),
            attempt: state.attempt.unwrap_or_default(),
            worker: state
                .worker
                .clone()
                .unwrap_or_else(|| "maintainer".to_owned()),
            op,
            at: chrono::Utc::now(),
            body,
        }
    }

    /// Posts `body` as an event of the current attempt (a fresh op), then mirrors the board and
    /// labels to the state it leads to (best effort: a warning, repaired by the next reconcile).
    pub async fn post(&self, ctx: &Ctx, body: EventBody) -> Result<PostedEvent, CrewError> {
        self.post_as(ctx, self.event(new_op_id(), body), PostMode::FirstTry)
            .await
    }

    /// [`Maintained::post`] of a prepared event (a derived op, [`PostMode::Resume`]).
    pub async fn post_as(
        &self,
        ctx: &Ctx,
        event: Event,
        mode: PostMode,
    ) -> Result<PostedEvent, CrewError> {
        let text = self
            .prompts
            .comment_body(&event, &CommentContext::from_event(&event))?;
        let posted = self
            .github
            .post_event(&self.repo, self.number(), &event, &text, mode)
            .await?;
        if let Some(point) = comment_crashpoint(event.body.kind()) {
            crate::fault::crashpoint(point);
        }
        let next = match &event.body {
            EventBody::Failed { .. }
                if self.gathered.state.attempts
                    >= u64::from(ctx.settings.config.workers.max_attempts) =>
            {
                State::NeedsHuman
            }
            body => next_state(self.state(), body.kind()).unwrap_or(self.state()),
        };
        self.mirror(ctx, next).await;
        Ok(posted)
    }

    /// Sets the board and labels for `state`; failures are warnings.
    pub async fn mirror(&self, ctx: &Ctx, state: State) {
        let board = Board::new(&ctx.settings, &self.repo);
        let number = self.number();
        let mut result = board
            .set_state(&self.github, &self.repo, number, state)
            .await
            .map(drop);
        if board.mirrors_labels() {
            let labels: Vec<&str> = self.gathered.issue.label_names().collect();
            let labelled = self
                .github
                .mirror_labels_from(&self.repo, number, state, &labels)
                .await
                .map(drop);
            if result.is_ok() {
                result = labelled;
            }
        }
        if let Err(error) = result {
            ctx.printer.warn(format_args!(
                "#{number}: could not update the board or labels ({error}); the next reconcile will"
            ));
        }
    }

    /// The newest `assigned` event's agent and profile: a new attempt keeps them unless the
    /// maintainer says otherwise (`crew reassign`).
    pub fn last_placement(&self) -> (Option<String>, Option<String>) {
        self.gathered
            .state
            .events
            .iter()
            .rev()
            .find_map(|applied| match &applied.event.body {
                EventBody::Assigned(assignment) => {
                    Some((assignment.agent.clone(), assignment.profile.clone()))
                }
                _ => None,
            })
            .unwrap_or_default()
    }

    /// Dispatches the next attempt now, on this host (the same branch: a replacement reuses
    /// the issue's branch and its work), keeping the last agent and profile unless given.
    /// `past_max` lets a maintainer's `retry` go beyond `workers.max_attempts`.
    pub async fn dispatch_next(
        &self,
        ctx: &Ctx,
        agent: Option<String>,
        profile: Option<String>,
        past_max: bool,
    ) -> Result<DispatchView, CrewError> {
        let (last_agent, last_profile) = self.last_placement();
        let args = DispatchArgs {
            issues: vec![self.number()],
            agent: agent.or(last_agent),
            profile: profile.or(last_profile),
            runtime: Runtime::Local,
            past_max,
            recovering: None,
            slots: None,
        };
        dispatch::dispatch_one(ctx, &args, self.number()).await
    }

    /// Whether the current attempt's worker still holds a live lease (2 requests). Anything
    /// else — no attempt, the lease released, expired, or another attempt's — is no.
    pub async fn worker_alive(&self, ctx: &Ctx) -> Result<bool, CrewError> {
        let state = &self.gathered.state;
        let (Some(worker), Some(attempt)) = (&state.worker, state.attempt) else {
            return Ok(false);
        };
        let Ok(attempt) = u32::try_from(attempt) else {
            return Ok(false);
        };
        match self
            .github
            .reclaim_lease(
                &self.repo,
                &ctx.settings.config.lease_ref_prefix,
                self.number(),
                worker,
                attempt,
            )
            .await
        {
            Ok(held) => Ok(held.lease.state == LeaseState::Held
                && held.lease.status(chrono::Utc::now()) == LeaseStatus::Live),
            Err(LeaseWriteError::Superseded { .. } | LeaseWriteError::Unreadable { .. }) => {
                Ok(false)
            }
            Err(error) => Err(error.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_names_what_it_allows() {
        assert!(allowed_commands(State::Blocked).contains(&"answer"));
        assert!(!allowed_commands(State::Working).contains(&"answer"));
        assert!(allowed_commands(State::InReview).contains(&"approve"));
        assert!(allowed_commands(State::InReview).contains(&"request-changes"));
        assert!(allowed_commands(State::Approved).contains(&"merge"));
        assert!(!allowed_commands(State::InReview).contains(&"merge"));
        // Completed only allows cleaning up; nothing at all is shown as allowed from nowhere.
        assert_eq!(allowed_commands(State::Completed), vec!["gc"]);
        for state in State::ALL {
            for command in allowed_commands(state) {
                assert!(!command.is_empty(), "{state}");
            }
        }
    }
}
