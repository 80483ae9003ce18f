//! Posting event comments (DESIGN.md 2.1) so that a retry never posts twice.
//!
//! Every event carries a unique `op` id in its marker. [`GitHub::post_event`] sends the comment
//! with an [`AppliedCheck`] that lists the issue's comments (since a little before the event)
//! and looks, newest first, for a marker with the same `op`: a retry after a dropped response or
//! a 5xx therefore finds the first post instead of making a second one.
//!
//! Cost: the common path ([`PostMode::FirstTry`]) is exactly one request. A re-run after a crash
//! ([`PostMode::Resume`]) first lists the comments (one request per 100 comments since the event)
//! and returns the comment it finds without posting; it posts (one more request) only when the
//! op is absent.

use chrono::{DateTime, Duration, SecondsFormat, Utc};

use super::{AppliedCheck, GitHub, GitHubError, IssueComment, RepoSlug};
use crate::protocol::Event;
use crate::protocol::marker::{Marker, parse};

/// How far before the event (or now, whichever is earlier) comments are listed when looking for
/// its `op`: room for clock skew between the writer and GitHub.
const LOOKBACK_MINUTES: i64 = 10;

/// Whether a post may already have happened in an earlier run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostMode {
    /// The first time this process posts this event: no check before sending (1 request); a
    /// lost response is still checked before any re-send.
    FirstTry,
    /// A re-run of a write an earlier (crashed or interrupted) run may have made: look for the
    /// `op` first and return that comment without posting.
    Resume,
}

/// The comment that carries an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostedEvent {
    pub comment_id: u64,
    /// True when the comment already existed (posted by an earlier attempt or run) and nothing
    /// was posted this time.
    pub reused: bool,
}

impl GitHub {
    /// Posts `body` (a whole comment: marker line for `event`, then human text, as
    /// [`crate::prompt::Prompts::comment_body`] renders it) on `issue`, never twice for the same
    /// `event.op`.
    pub async fn post_event(
        &self,
        repo: &RepoSlug,
        issue: u64,
        event: &Event,
        body: &str,
        mode: PostMode,
    ) -> Result<PostedEvent, GitHubError> {
        let since = lookback_start(event.at, Utc::now());
        if mode == PostMode::Resume
            && let Some(found) = self
                .find_event_comment(repo, issue, &event.op, since)
                .await?
        {
            return Ok(PostedEvent {
                comment_id: found.id,
                reused: true,
            });
        }
        let op = event.op.as_str();
        let check = AppliedCheck::new(move || async move {
            self.find_event_comment(repo, issue, op, since).await
        });
        let posted = self
            .create_issue_comment(repo, issue, body, Some(check))
            .await?;
        // When the check found the earlier post, the comment returned is that one; it was
        // still posted by this call's first attempt, so it is not "reused".
        Ok(PostedEvent {
            comment_id: posted.id,
            reused: false,
        })
    }

    /// The newest comment on `issue` updated at or after `since` whose event marker has `op`.
    pub async fn find_event_comment(
        &self,
        repo: &RepoSlug,
        issue: u64,
        op: &str,
        since: DateTime<Utc>,
    ) -> Result<Option<IssueComment>, GitHubError> {
        let path = format!(
            "/repos/{}/{}/issues/{issue}/comments?since={}&per_page=100",
            repo.owner(),
            repo.name(),
            since.to_rfc3339_opts(SecondsFormat::Secs, true)
        );
        let comments: Vec<IssueComment> = self
            .get_all_pages(
                "GET /repos/{owner}/{repo}/issues/{issue_number}/comments",
                path,
            )
            .await?;
        // GitHub lists issue comments oldest first; the one we look for is almost always last.
        Ok(comments
            .into_iter()
            .rev()
            .find(|comment| comment.body.as_deref().is_some_and(|b| has_op(b, op))))
    }
}

/// The `since` for looking up an event written at `at` (by its writer's clock) at `now`.
fn lookback_start(at: DateTime<Utc>, now: DateTime<Utc>) -> DateTime<Utc> {
    at.min(now) - Duration::minutes(LOOKBACK_MINUTES)
}

/// True when `body` starts with an event marker whose `op` is `op`. A comment that merely
/// quotes the op (a human pasting it) does not count.
fn has_op(body: &str, op: &str) -> bool {
    matches!(parse(body), Ok(Some(Marker::Event(event))) if event.op == op)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::EventBody;
    use crate::protocol::marker::render_comment;

    fn event(op: &str) -> Event {
        Event {
            issue: 7,
            attempt: 1,
            worker: "worker-1-7".to_string(),
            op: op.to_string(),
            at: DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default(),
            body: EventBody::Started {},
        }
    }

    #[test]
    fn only_a_marker_with_the_op_matches() {
        let body = render_comment(&event("op-1"), "text");
        assert!(has_op(&body, "op-1"));
        assert!(!has_op(&body, "op-2"));
        assert!(!has_op("I saw op-1 somewhere", "op-1"));
    }

    #[test]
    fn lookback_starts_before_the_earlier_of_event_and_now() {
        let at = DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default();
        let later = at + Duration::hours(1);
        assert_eq!(lookback_start(at, later), at - Duration::minutes(10));
        assert_eq!(lookback_start(later, at), at - Duration::minutes(10));
    }
}
