//! Pull requests: find the open one for a branch, open one, read one, its reviews and review
//! comments, and merge it.
//!
//! Decisions, and why:
//! - **One open pull request per head branch is the idempotency key.** `crew done` may be re-run
//!   after a crash between opening the PR and posting `in_review`; it first looks for an open PR
//!   whose head is the worker's branch ([`GitHub::open_pull_for_head`]) and reuses it. The same
//!   lookup is the [`AppliedCheck`] of [`GitHub::create_pull`], so a create whose response was
//!   lost is never sent a second time: GitHub would refuse a duplicate anyway (422 "A pull
//!   request already exists"), but the caller wants the PR, not the refusal.
//! - **Lists are conditional GETs** (through the ETag cache when the client has one), all pages.
//! - **Merging answers what happened, not only whether**: GitHub says 405 when the PR cannot be
//!   merged (a conflict, a draft, already merged) and 409 when the head or base moved under the
//!   request; both are outcomes a caller acts on ([`MergeOutcome`]), not failures of crew.
//!   A merge whose response was lost is checked (the PR is merged) before it is sent again.
//!
//! Costs: finding the PR for a head is 1 request (per 100 open PRs of that head, in practice 1);
//! creating one is 1; merging is 1.

use chrono::{DateTime, Utc};
use http::Method;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::transport::{Request, Resend, decode_json};
use super::wire::User;
use super::{AppliedCheck, GitHub, GitHubError, RepoSlug};

/// One end (head or base) of a pull request.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PullEnd {
    /// The branch name.
    #[serde(rename = "ref")]
    pub branch: String,
    pub sha: String,
}

/// A pull request, as `GET /pulls` and `GET /pulls/{number}` show it: the fields crew reads.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PullRequest {
    pub number: u64,
    /// `open` or `closed`.
    pub state: String,
    pub title: String,
    #[serde(default)]
    pub body: Option<String>,
    pub html_url: String,
    pub head: PullEnd,
    pub base: PullEnd,
    #[serde(default)]
    pub user: Option<User>,
    #[serde(default)]
    pub merged_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub merge_commit_sha: Option<String>,
    #[serde(default)]
    pub draft: Option<bool>,
}

impl PullRequest {
    pub fn is_open(&self) -> bool {
        self.state == "open"
    }

    pub fn is_merged(&self) -> bool {
        self.merged_at.is_some()
    }
}

/// What [`GitHub::create_pull`] sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewPullRequest {
    pub title: String,
    /// The head branch (in the same repository).
    pub head: String,
    /// The branch to merge into.
    pub base: String,
    pub body: String,
    pub draft: bool,
}

/// A review on a pull request.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PullReview {
    pub id: u64,
    #[serde(default)]
    pub user: Option<User>,
    #[serde(default)]
    pub body: Option<String>,
    /// `APPROVED`, `CHANGES_REQUESTED`, `COMMENTED`, `DISMISSED`, `PENDING`.
    pub state: String,
    #[serde(default)]
    pub commit_id: Option<String>,
    #[serde(default)]
    pub submitted_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub author_association: Option<String>,
}

/// A review comment: one remark on a line of the diff.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ReviewComment {
    pub id: u64,
    #[serde(default)]
    pub pull_request_review_id: Option<u64>,
    #[serde(default)]
    pub user: Option<User>,
    pub body: String,
    pub path: String,
    #[serde(default)]
    pub line: Option<u64>,
    #[serde(default)]
    pub original_line: Option<u64>,
    #[serde(default)]
    pub commit_id: Option<String>,
    #[serde(default)]
    pub created_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub author_association: Option<String>,
}

/// How to merge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MergeMethod {
    Merge,
    Squash,
    Rebase,
}

/// What a merge request came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MergeOutcome {
    /// Merged; the sha of the merge (or squash, or last rebased) commit.
    Merged { sha: String },
    /// GitHub refused (405): a conflict, a draft, a closed or already merged PR.
    NotMergeable { message: String },
    /// The head moved since the `sha` the caller named, or the base moved during the merge (409).
    Modified { message: String },
}

#[derive(Deserialize)]
struct MergeReply {
    sha: String,
}

impl GitHub {
    /// The open pull request whose head is `branch` of `repo` (any base), if there is one. When
    /// several are open (someone opened another by hand), the newest.
    pub async fn open_pull_for_head(
        &self,
        repo: &RepoSlug,
        branch: &str,
    ) -> Result<Option<PullRequest>, GitHubError> {
        let head = format!("{}:{branch}", repo.owner());
        let pulls: Vec<PullRequest> = self
            .get_all_pages(
                "GET /repos/{owner}/{repo}/pulls",
                format!(
                    "{}/pulls?state=open&head={}&per_page=100",
                    repo_path(repo),
                    encode(&head)
                ),
            )
            .await?;
        Ok(pulls
            .into_iter()
            .filter(|pull| pull.head.branch == branch && pull.is_open())
            .max_by_key(|pull| pull.number))
    }

    /// `POST /repos/{owner}/{repo}/pulls`. A create whose response was lost is sent again only
    /// when no open PR for the head (into the same base) exists; otherwise that PR is the answer.
    pub async fn create_pull(
        &self,
        repo: &RepoSlug,
        new: &NewPullRequest,
    ) -> Result<PullRequest, GitHubError> {
        let route = "POST /repos/{owner}/{repo}/pulls";
        let body = serde_json::to_value(new).map_err(|error| GitHubError::Unexpected {
            route: route.to_string(),
            message: error.to_string(),
        })?;
        let request = Request::write(
            Method::POST,
            route,
            format!("{}/pulls", repo_path(repo)),
            Some(body),
            Resend::Unsafe,
        );
        let check = AppliedCheck::new(|| async {
            Ok(self
                .open_pull_for_head(repo, &new.head)
                .await?
                .filter(|pull| pull.base.branch == new.base))
        });
        self.send(&request, Some(&check), |reply| {
            decode_json(route, &reply.body)
        })
        .await
    }

    /// `GET /repos/{owner}/{repo}/pulls/{pull_number}`; `None` when there is no such PR.
    pub async fn pull(
        &self,
        repo: &RepoSlug,
        number: u64,
    ) -> Result<Option<PullRequest>, GitHubError> {
        let route = "GET /repos/{owner}/{repo}/pulls/{pull_number}";
        let request = Request::get(route, format!("{}/pulls/{number}", repo_path(repo)));
        match self
            .send(&request, None, |reply| decode_json(route, &reply.body))
            .await
        {
            Ok(pull) => Ok(Some(pull)),
            Err(GitHubError::NotFound { .. }) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// `GET /repos/{owner}/{repo}/pulls/{pull_number}/reviews`, all pages, oldest first.
    pub async fn pull_reviews(
        &self,
        repo: &RepoSlug,
        number: u64,
    ) -> Result<Vec<PullReview>, GitHubError> {
        self.get_all_pages(
            "GET /repos/{owner}/{repo}/pulls/{pull_number}/reviews",
            format!("{}/pulls/{number}/reviews?per_page=100", repo_path(repo)),
        )
        .await
    }

    /// `GET /repos/{owner}/{repo}/pulls/{pull_number}/comments`: every review comment, all
    /// pages, oldest first.
    pub async fn pull_review_comments(
        &self,
        repo: &RepoSlug,
        number: u64,
    ) -> Result<Vec<ReviewComment>, GitHubError> {
        self.get_all_pages(
            "GET /repos/{owner}/{repo}/pulls/{pull_number}/comments",
            format!("{}/pulls/{number}/comments?per_page=100", repo_path(repo)),
        )
        .await
    }

    /// `PUT /repos/{owner}/{repo}/pulls/{pull_number}/merge`. With `sha`, GitHub merges only if
    /// the head is still at it. A merge whose response was lost is not sent again when the PR
    /// turns out merged.
    pub async fn merge_pull(
        &self,
        repo: &RepoSlug,
        number: u64,
        method: MergeMethod,
        sha: Option<&str>,
    ) -> Result<MergeOutcome, GitHubError> {
        let route = "PUT /repos/{owner}/{repo}/pulls/{pull_number}/merge";
        let mut body = json!({ "merge_method": method });
        if let Some(sha) = sha {
            body["sha"] = json!(sha);
        }
        let request = Request::write(
            Method::PUT,
            route,
            format!("{}/pulls/{number}/merge", repo_path(repo)),
            Some(body),
            Resend::Unsafe,
        );
        let check = AppliedCheck::new(|| async {
            Ok(self
                .pull(repo, number)
                .await?
                .and_then(|pull| pull.merge_commit_sha.filter(|_| pull.merged_at.is_some())))
        });
        let sent = self
            .send(&request, Some(&check), |reply| {
                decode_json::<MergeReply>(route, &reply.body).map(|reply| reply.sha)
            })
            .await;
        match sent {
            Ok(sha) => Ok(MergeOutcome::Merged { sha }),
            Err(GitHubError::Conflict { message, .. }) => Ok(MergeOutcome::Modified { message }),
            // 405 has no variant of its own: the transport reports it as an unexpected status.
            Err(GitHubError::Unexpected { message, .. }) if message.starts_with("HTTP 405") => {
                Ok(MergeOutcome::NotMergeable {
                    message: message
                        .trim_start_matches("HTTP 405")
                        .trim_start_matches(':')
                        .trim()
                        .to_string(),
                })
            }
            Err(error) => Err(error),
        }
    }
}

/// `/repos/{owner}/{repo}`.
fn repo_path(repo: &RepoSlug) -> String {
    format!("/repos/{}/{}", encode(repo.owner()), encode(repo.name()))
}

/// Percent-encodes a path segment or query value.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        let c = byte as char;
        if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~') {
            out.push(c);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_filters_are_encoded() {
        assert_eq!(encode("acme:feature/1-spin"), "acme%3Afeature%2F1-spin");
    }

    #[test]
    fn a_pull_request_decodes_from_githubs_shape() -> Result<(), serde_json::Error> {
        let pull: PullRequest = serde_json::from_value(json!({
            "number": 7, "state": "open", "title": "Spin", "body": null,
            "html_url": "https://github.com/acme/widgets/pull/7",
            "head": {"ref": "feature/1-spin", "sha": "abc", "label": "acme:feature/1-spin"},
            "base": {"ref": "main", "sha": "def"},
            "merged_at": null, "merge_commit_sha": null, "draft": false,
        }))?;
        assert!(pull.is_open() && !pull.is_merged());
        assert_eq!(pull.head.branch, "feature/1-spin");
        let comment: ReviewComment = serde_json::from_value(json!({
            "id": 1, "pull_request_review_id": 9, "body": "Rename this",
            "path": "src/lib.rs", "line": 3, "user": {"login": "maintainer", "id": 2},
        }))?;
        assert_eq!(comment.line, Some(3));
        Ok(())
    }
}
