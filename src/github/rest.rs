//! Typed REST endpoints, conditional GETs and pagination.
//!
//! Each method names its route template once (for counting and messages) and says whether it is
//! safe to send twice; everything else is in `transport`.

use chrono::{SecondsFormat, Utc};
use http::{HeaderValue, Method, StatusCode};
use serde_json::json;

use super::budget::{CORE, GRAPHQL, RateSnapshot};
use super::transport::{Reply, Request, Resend, decode_json};
use super::wire::{
    Branch, CollaboratorPermission, GitCommit, GitRef, Issue, IssueComment, NewCommit,
    RateLimitOverview, Repository, User,
};
use super::{AppliedCheck, GitHub, GitHubError, RepoSlug};
use crate::cache::StoredResponse;

/// Items per page for list endpoints: GitHub's maximum, so lists cost as few requests as possible.
const PER_PAGE: u32 = 100;

/// The answer to a conditional GET.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conditional {
    pub body: Vec<u8>,
    /// True when GitHub answered 304 and `body` is the stored copy.
    pub not_modified: bool,
    pub etag: Option<String>,
    /// The `Link` header (pagination), from the answer or, after a 304, from the stored copy.
    pub link: Option<String>,
}

impl Conditional {
    /// Decodes the body as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self, route: &str) -> Result<T, GitHubError> {
        decode_json(route, &self.body)
    }

    /// The `rel="next"` URL of the `Link` header, if any.
    pub fn next_page(&self) -> Option<String> {
        self.link.as_deref().and_then(next_link)
    }

    /// The page number of the `rel="last"` URL of the `Link` header, if any: the page count of
    /// the list. GitHub sends it on every page but the last.
    pub fn last_page(&self) -> Option<u64> {
        self.link.as_deref().and_then(last_page)
    }
}

impl GitHub {
    /// `GET /user`: who the token belongs to.
    pub async fn user(&self) -> Result<User, GitHubError> {
        self.get_json("GET /user", "/user".to_string()).await
    }

    /// `GET /repos/{owner}/{repo}`.
    pub async fn repository(&self, repo: &RepoSlug) -> Result<Repository, GitHubError> {
        self.get_json("GET /repos/{owner}/{repo}", repo_path(repo))
            .await
    }

    /// `GET /repos/{owner}/{repo}/collaborators/{username}/permission`.
    pub async fn collaborator_permission(
        &self,
        repo: &RepoSlug,
        username: &str,
    ) -> Result<CollaboratorPermission, GitHubError> {
        self.get_json(
            "GET /repos/{owner}/{repo}/collaborators/{username}/permission",
            format!(
                "{}/collaborators/{}/permission",
                repo_path(repo),
                encode(username, false)
            ),
        )
        .await
    }

    /// `GET /rate_limit` (free on GitHub's rate limit); also refreshes the budget.
    pub async fn rate_limit(&self) -> Result<RateLimitOverview, GitHubError> {
        let overview: RateLimitOverview = self
            .get_json("GET /rate_limit", "/rate_limit".to_string())
            .await?;
        let windows = [
            (CORE, Some(overview.resources.core)),
            (GRAPHQL, overview.resources.graphql),
        ];
        for (resource, window) in windows {
            if let Some(window) = window
                && let Some(reset) = window.reset_at()
            {
                self.inner.budget.record(
                    resource,
                    RateSnapshot {
                        limit: window.limit,
                        remaining: window.remaining,
                        used: window.used,
                        reset,
                    },
                );
            }
        }
        Ok(overview)
    }

    /// `GET /repos/{owner}/{repo}/branches/{branch}`.
    pub async fn branch(&self, repo: &RepoSlug, branch: &str) -> Result<Branch, GitHubError> {
        self.get_json(
            "GET /repos/{owner}/{repo}/branches/{branch}",
            format!("{}/branches/{}", repo_path(repo), encode(branch, true)),
        )
        .await
    }

    /// `GET /repos/{owner}/{repo}/git/ref/{ref}`; `None` when the ref does not exist.
    /// `name` is the full name (`refs/crew/leases/42`).
    pub async fn get_ref(
        &self,
        repo: &RepoSlug,
        name: &str,
    ) -> Result<Option<GitRef>, GitHubError> {
        let request = Request::get(
            "GET /repos/{owner}/{repo}/git/ref/{ref}",
            format!("{}/git/ref/{}", repo_path(repo), ref_path(name)),
        );
        match self
            .send(&request, None, |reply| {
                decode_json(request.route, &reply.body)
            })
            .await
        {
            Ok(git_ref) => Ok(Some(git_ref)),
            Err(GitHubError::NotFound { .. }) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// `GET /repos/{owner}/{repo}/git/matching-refs/{ref}`: every ref whose name starts with
    /// `prefix` (a full name such as `refs/crew/leases/`), all pages.
    pub async fn matching_refs(
        &self,
        repo: &RepoSlug,
        prefix: &str,
    ) -> Result<Vec<GitRef>, GitHubError> {
        self.get_all_pages(
            "GET /repos/{owner}/{repo}/git/matching-refs/{ref}",
            format!(
                "{}/git/matching-refs/{}?per_page={PER_PAGE}",
                repo_path(repo),
                ref_path(prefix)
            ),
        )
        .await
    }

    /// `POST /repos/{owner}/{repo}/git/refs`. Fails with [`GitHubError::Validation`] (422) when
    /// the ref already exists: that is the compare-and-swap leases are built on. A retry after a
    /// lost response first checks whether the ref already points at `sha`.
    pub async fn create_ref(
        &self,
        repo: &RepoSlug,
        name: &str,
        sha: &str,
    ) -> Result<GitRef, GitHubError> {
        let request = Request::write(
            Method::POST,
            "POST /repos/{owner}/{repo}/git/refs",
            format!("{}/git/refs", repo_path(repo)),
            Some(json!({ "ref": name, "sha": sha })),
            Resend::Unsafe,
        );
        let check = self.ref_points_at(repo, name, sha);
        self.send(&request, Some(&check), |reply| {
            decode_json(request.route, &reply.body)
        })
        .await
    }

    /// `PATCH /repos/{owner}/{repo}/git/refs/{ref}` with `force: false`: succeeds only when `sha`
    /// descends from the ref's current tip (422 otherwise).
    pub async fn update_ref(
        &self,
        repo: &RepoSlug,
        name: &str,
        sha: &str,
    ) -> Result<GitRef, GitHubError> {
        let request = Request::write(
            Method::PATCH,
            "PATCH /repos/{owner}/{repo}/git/refs/{ref}",
            format!("{}/git/refs/{}", repo_path(repo), ref_path(name)),
            Some(json!({ "sha": sha, "force": false })),
            Resend::Unsafe,
        );
        let check = self.ref_points_at(repo, name, sha);
        self.send(&request, Some(&check), |reply| {
            decode_json(request.route, &reply.body)
        })
        .await
    }

    /// `DELETE /repos/{owner}/{repo}/git/refs/{ref}`. Has no precondition: leases are never
    /// deleted (DESIGN.md 2.2); this is for probes and cleanup.
    pub async fn delete_ref(&self, repo: &RepoSlug, name: &str) -> Result<(), GitHubError> {
        let request = Request::write(
            Method::DELETE,
            "DELETE /repos/{owner}/{repo}/git/refs/{ref}",
            format!("{}/git/refs/{}", repo_path(repo), ref_path(name)),
            None,
            Resend::Unsafe,
        );
        let check = AppliedCheck::new(|| async {
            Ok(match self.get_ref(repo, name).await? {
                None => Some(()),
                Some(_) => None,
            })
        });
        self.send(&request, Some(&check), |_| Ok(())).await
    }

    /// `POST /repos/{owner}/{repo}/git/commits`. Safe to re-send: a duplicate is an unreferenced
    /// commit object that nothing points at.
    pub async fn create_commit(
        &self,
        repo: &RepoSlug,
        message: &str,
        tree: &str,
        parents: &[&str],
    ) -> Result<GitCommit, GitHubError> {
        let body = NewCommit {
            message,
            tree,
            parents: parents.to_vec(),
        };
        let body = serde_json::to_value(&body).map_err(|error| GitHubError::Unexpected {
            route: "POST /repos/{owner}/{repo}/git/commits".to_string(),
            message: error.to_string(),
        })?;
        let request = Request::write(
            Method::POST,
            "POST /repos/{owner}/{repo}/git/commits",
            format!("{}/git/commits", repo_path(repo)),
            Some(body),
            Resend::Safe,
        );
        self.send(&request, None, |reply| {
            decode_json(request.route, &reply.body)
        })
        .await
    }

    /// `GET /repos/{owner}/{repo}/git/commits/{commit_sha}`.
    pub async fn commit(&self, repo: &RepoSlug, sha: &str) -> Result<GitCommit, GitHubError> {
        self.get_json(
            "GET /repos/{owner}/{repo}/git/commits/{commit_sha}",
            format!("{}/git/commits/{}", repo_path(repo), encode(sha, false)),
        )
        .await
    }

    /// `POST /repos/{owner}/{repo}/issues/{issue_number}/comments`.
    ///
    /// A comment has no natural precondition, so it is only re-sent after a lost response when
    /// `applied` is given and finds no trace of it (see [`GitHub::comment_check`]).
    pub async fn create_issue_comment(
        &self,
        repo: &RepoSlug,
        issue: u64,
        body: &str,
        applied: Option<AppliedCheck<'_, IssueComment>>,
    ) -> Result<IssueComment, GitHubError> {
        let request = Request::write(
            Method::POST,
            "POST /repos/{owner}/{repo}/issues/{issue_number}/comments",
            format!("{}/issues/{issue}/comments", repo_path(repo)),
            Some(json!({ "body": body })),
            Resend::Unsafe,
        );
        self.send(&request, applied.as_ref(), |reply| {
            decode_json(request.route, &reply.body)
        })
        .await
    }

    /// `GET /repos/{owner}/{repo}/issues/{issue_number}`, conditional; `None` when the issue does
    /// not exist (a pull request's number answers with its issue view: see
    /// [`Issue::is_pull_request`]).
    pub async fn issue(&self, repo: &RepoSlug, issue: u64) -> Result<Option<Issue>, GitHubError> {
        let route = "GET /repos/{owner}/{repo}/issues/{issue_number}";
        match self
            .get_conditional(route, &format!("{}/issues/{issue}", repo_path(repo)))
            .await
        {
            Ok(reply) => reply.json(route).map(Some),
            Err(GitHubError::NotFound { .. }) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// `GET /repos/{owner}/{repo}/issues/{issue_number}/comments`, all pages, conditional.
    pub async fn issue_comments(
        &self,
        repo: &RepoSlug,
        issue: u64,
    ) -> Result<Vec<IssueComment>, GitHubError> {
        self.get_all_pages(
            "GET /repos/{owner}/{repo}/issues/{issue_number}/comments",
            format!(
                "{}/issues/{issue}/comments?per_page={PER_PAGE}",
                repo_path(repo)
            ),
        )
        .await
    }

    /// An [`AppliedCheck`] for [`GitHub::create_issue_comment`]: the write counts as applied when
    /// a comment on the issue contains `needle` (the event's unique `op` id).
    pub fn comment_check<'a>(
        &'a self,
        repo: &'a RepoSlug,
        issue: u64,
        needle: &'a str,
    ) -> AppliedCheck<'a, IssueComment> {
        AppliedCheck::new(move || async move {
            let comments = self.issue_comments(repo, issue).await?;
            Ok(comments.into_iter().find(|comment| {
                comment
                    .body
                    .as_deref()
                    .is_some_and(|body| body.contains(needle))
            }))
        })
    }

    /// A GET that sends `If-None-Match` with the ETag stored in the cache and, on 304, returns
    /// the stored body (no rate points spent). Without a cache it is a plain GET.
    ///
    /// `route` is the template used for counting (`"GET /repos/{owner}/{repo}/issues"`); `path`
    /// is the path and query, or an absolute URL from a `Link` header.
    pub async fn get_conditional(
        &self,
        route: &'static str,
        path: &str,
    ) -> Result<Conditional, GitHubError> {
        let key = self.absolute_url(path);
        // The cache only saves requests: when it fails, log it and carry on without it.
        let stored = match self.cache() {
            Some(cache) => cache.stored_response(&key).await.unwrap_or_else(|error| {
                tracing::warn!("ignoring the ETag cache: {error}");
                None
            }),
            None => None,
        };
        let mut request = Request::get(route, path.to_string());
        if let Some(stored) = &stored
            && let Ok(value) = HeaderValue::from_str(&stored.etag)
        {
            request.headers.insert(http::header::IF_NONE_MATCH, value);
        }
        let reply = self.send(&request, None, |reply: Reply| Ok(reply)).await?;
        if reply.status == StatusCode::NOT_MODIFIED {
            return match stored {
                Some(stored) => Ok(Conditional {
                    body: stored.body,
                    not_modified: true,
                    link: reply.header("link").map(str::to_string).or(stored.link),
                    etag: Some(stored.etag),
                }),
                None => Err(GitHubError::Unexpected {
                    route: route.to_string(),
                    message: "304 Not Modified for a request without If-None-Match".to_string(),
                }),
            };
        }
        let etag = reply.header("etag").map(str::to_string);
        let link = reply.header("link").map(str::to_string);
        if let Some(cache) = self.cache() {
            let saved = match &etag {
                Some(etag) => {
                    cache
                        .store_response(
                            &key,
                            StoredResponse {
                                etag: etag.clone(),
                                body: reply.body.clone(),
                                link: link.clone(),
                                fetched_at: Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
                            },
                        )
                        .await
                }
                None if stored.is_some() => cache.forget_response(&key).await,
                None => Ok(()),
            };
            if let Err(error) = saved {
                tracing::warn!("could not update the ETag cache: {error}");
            }
        }
        Ok(Conditional {
            body: reply.body,
            not_modified: false,
            etag,
            link,
        })
    }

    /// Every page of a list endpoint, following `Link: rel="next"`, each page conditional.
    pub async fn get_all_pages<T: serde::de::DeserializeOwned>(
        &self,
        route: &'static str,
        first: String,
    ) -> Result<Vec<T>, GitHubError> {
        let mut items = Vec::new();
        let mut next = Some(first);
        while let Some(path) = next {
            let page = self.get_conditional(route, &path).await?;
            let page_items: Vec<T> = page.json(route)?;
            items.extend(page_items);
            next = page.next_page();
        }
        Ok(items)
    }

    /// A plain (unconditional) GET decoded as JSON.
    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        route: &'static str,
        path: String,
    ) -> Result<T, GitHubError> {
        let request = Request::get(route, path);
        self.send(&request, None, |reply| decode_json(route, &reply.body))
            .await
    }

    /// An [`AppliedCheck`] that finds a ref write applied when `name` points at `sha`.
    fn ref_points_at<'a>(
        &'a self,
        repo: &'a RepoSlug,
        name: &'a str,
        sha: &'a str,
    ) -> AppliedCheck<'a, GitRef> {
        AppliedCheck::new(move || async move {
            Ok(self
                .get_ref(repo, name)
                .await?
                .filter(|git_ref| git_ref.object.sha == sha))
        })
    }

    /// The URL a path resolves to (the ETag cache key).
    fn absolute_url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            return path.to_string();
        }
        let base = self.api_url().as_str().trim_end_matches('/');
        format!("{base}{path}")
    }
}

/// `/repos/{owner}/{repo}`.
fn repo_path(repo: &RepoSlug) -> String {
    format!(
        "/repos/{}/{}",
        encode(repo.owner(), false),
        encode(repo.name(), false)
    )
}

/// A ref name as the `/git/ref(s)/{ref}` routes take it: without `refs/`, slashes kept.
fn ref_path(name: &str) -> String {
    encode(name.strip_prefix("refs/").unwrap_or(name), true)
}

/// Percent-encodes a path segment (keeping `/` when `keep_slash`).
fn encode(text: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        let c = byte as char;
        if c.is_ascii_alphanumeric()
            || matches!(c, '-' | '_' | '.' | '~')
            || (keep_slash && c == '/')
        {
            out.push(c);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The `rel="next"` target of a `Link` header.
fn next_link(header: &str) -> Option<String> {
    link_target(header, "next").map(str::to_string)
}

/// The `page` query parameter of the `rel="last"` target of a `Link` header.
fn last_page(header: &str) -> Option<u64> {
    let target = link_target(header, "last")?;
    let (_, query) = target.split_once('?')?;
    let query = query.split('#').next().unwrap_or(query);
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("page="))
        .and_then(|page| page.parse().ok())
}

/// The target of the `Link` header entry with relation `rel`.
fn link_target<'a>(header: &'a str, rel: &str) -> Option<&'a str> {
    header.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        let matches = params.split(';').any(|param| {
            let param = param.trim();
            param
                .strip_prefix("rel=")
                .is_some_and(|value| value.trim_matches('"') == rel)
        });
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        matches.then_some(target)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_encoded() {
        assert_eq!(ref_path("refs/crew/leases/42"), "crew/leases/42");
        assert_eq!(ref_path("refs/heads/a b"), "heads/a%20b");
        assert_eq!(encode("we/ird", false), "we%2Fird");
        assert_eq!(
            repo_path(
                &"acme/widgets"
                    .parse::<RepoSlug>()
                    .map_err(|e| e.to_string())
                    .unwrap_or_else(|e| panic!("{e}"))
            ),
            "/repos/acme/widgets"
        );
    }

    #[test]
    fn next_link_is_found() {
        let header = "<https://api.github.com/x?page=2>; rel=\"next\", <https://api.github.com/x?page=5>; rel=\"last\"";
        assert_eq!(
            next_link(header).as_deref(),
            Some("https://api.github.com/x?page=2")
        );
        assert_eq!(next_link("<https://a/x?page=1>; rel=\"prev\""), None);
        assert_eq!(next_link(""), None);
    }

    #[test]
    fn last_page_is_found() {
        let header = "<https://api.github.com/x?state=all&page=2>; rel=\"next\", <https://api.github.com/x?state=all&per_page=100&page=5>; rel=\"last\"";
        assert_eq!(last_page(header), Some(5));
        assert_eq!(last_page("<https://a/x?page=1>; rel=\"prev\""), None);
        assert_eq!(last_page("<https://a/x?per_page=100>; rel=\"last\""), None);
        assert_eq!(last_page(""), None);
    }
}
