//! Reading every lease of a repository at once (DESIGN.md 2.2), by REST or by GraphQL.
//!
//! `crew status`, `fill` and `dispatch` need all leases, every cycle, so the read is built to be
//! nearly free when nothing changed:
//!
//! - **REST** ([`GitHub::leases`]): `GET /git/matching-refs/{prefix}` as a conditional request
//!   (ETag stored in the cache), then `GET /git/commits/{sha}` for each lease commit's message.
//!   A commit is immutable (its sha *is* its content), so a message the cache already holds is
//!   used without asking GitHub at all; a lease change is a new commit, hence a new sha, hence
//!   a changed matching-refs answer. A warm read with nothing changed is therefore exactly one
//!   request, a `304` that costs no rate points; a cold read of N leases is 1 + N requests.
//!   Messages are kept by sha in the cache's `lease_commits` table (a copy that can never be
//!   stale, so it is never revalidated). Without a cache each read is 1 + N requests.
//!   Commits are fetched one after another, not concurrently: GitHub's guidance against
//!   concurrent requests (secondary rate limits) outweighs a cold-start saving.
//! - **GraphQL** ([`GitHub::leases_graphql`]): one `repository.refs(refPrefix:)` query returns
//!   names, targets and commit messages together: one request per 100 leases, cold or warm, and
//!   one GraphQL point each (GraphQL has no conditional requests).
//!
//! Both readers return the same [`ObservedLease`] list, sorted by issue. A lease ref that does not
//! hold a usable lease (a message that is not lease JSON, a newer format, a ref at a tree, a
//! commit GitHub cannot find) is reported in that lease's `lease` field and never aborts the read:
//! one bad ref must not blind crew to every other lease. Refs under the prefix whose name is not
//! an issue number are not crew's and are skipped. Only failures to talk to GitHub are errors of
//! the whole read.

use serde::Deserialize;
use serde_json::json;

use super::{GitHub, GitHubError, RepoSlug};
use crate::protocol::lease::{Lease, LeaseError, LeaseStatus, issue_from_ref, parse_lease_for};

/// All lease refs under `$prefix` with their commit messages; `first: 100` is GitHub's page cap.
/// `__typename` tells a commit from a ref pointing at a tree, blob or tag.
const LEASES_QUERY: &str =
    "query CrewLeases($owner: String!, $name: String!, $prefix: String!, $cursor: String) {
  repository(owner: $owner, name: $name) {
    refs(refPrefix: $prefix, first: 100, after: $cursor) {
      pageInfo { hasNextPage endCursor }
      nodes {
        name
        prefix
        target {
          __typename
          oid
          ... on Commit { message }
        }
      }
    }
  }
  rateLimit { limit remaining used resetAt }
}";

/// One lease ref as read from GitHub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedLease {
    pub issue: u64,
    /// Full ref name, `refs/crew/leases/42`.
    pub ref_name: String,
    /// The object the ref points at (the lease commit, when it is one). A compare-and-swap
    /// update names this as the parent of the next lease commit.
    pub sha: String,
    /// The lease, or why this ref holds none crew can use.
    pub lease: Result<Lease, LeaseError>,
}

impl ObservedLease {
    /// Live, expired or released at `now`; `None` when the ref holds no readable lease.
    pub fn status(&self, now: chrono::DateTime<chrono::Utc>) -> Option<LeaseStatus> {
        self.lease.as_ref().ok().map(|lease| lease.status(now))
    }
}

impl GitHub {
    /// Every lease under `prefix` (`refs/crew/leases/`), by REST: one conditional
    /// `matching-refs` request (per 100 refs) plus one `GET /git/commits/{sha}` per lease commit
    /// the cache does not already hold. See the module docs for the costs.
    pub async fn leases(
        &self,
        repo: &RepoSlug,
        prefix: &str,
    ) -> Result<Vec<ObservedLease>, GitHubError> {
        let refs = self.matching_refs(repo, prefix).await?;
        let mut observed = Vec::with_capacity(refs.len());
        for git_ref in refs {
            let Some(issue) = issue_from_ref(prefix, &git_ref.name) else {
                tracing::debug!(name = git_ref.name, "not a lease ref; skipped");
                continue;
            };
            let sha = git_ref.object.sha;
            let lease = if git_ref.object.kind == "commit" {
                match self.lease_commit_message(repo, &sha).await? {
                    Some(message) => parse_lease_for(issue, &message),
                    None => Err(LeaseError::MissingCommit { sha: sha.clone() }),
                }
            } else {
                Err(LeaseError::NotACommit {
                    kind: git_ref.object.kind,
                })
            };
            observed.push(ObservedLease {
                issue,
                ref_name: git_ref.name,
                sha,
                lease,
            });
        }
        observed.sort_by_key(|lease| lease.issue);
        Ok(observed)
    }

    /// Every lease under `prefix`, by one GraphQL query per 100 refs (commit messages included).
    pub async fn leases_graphql(
        &self,
        repo: &RepoSlug,
        prefix: &str,
    ) -> Result<Vec<ObservedLease>, GitHubError> {
        let mut observed = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let data = self
                .graphql(
                    LEASES_QUERY,
                    json!({
                        "owner": repo.owner(),
                        "name": repo.name(),
                        "prefix": prefix,
                        "cursor": cursor,
                    }),
                )
                .await?;
            let page: LeasesData =
                serde_json::from_value(data).map_err(|error| GitHubError::Unexpected {
                    route: "POST /graphql".to_string(),
                    message: format!("lease refs answer does not match what crew expects: {error}"),
                })?;
            let repository = page.repository.ok_or_else(|| GitHubError::NotFound {
                route: "POST /graphql".to_string(),
                message: format!("repository {}/{} not found", repo.owner(), repo.name()),
            })?;
            let Some(refs) = repository.refs else {
                break;
            };
            for node in refs.nodes.into_iter().flatten() {
                let ref_name = format!("{}{}", node.prefix, node.name);
                let Some(issue) = issue_from_ref(prefix, &ref_name) else {
                    tracing::debug!(name = ref_name, "not a lease ref; skipped");
                    continue;
                };
                let (sha, lease) = match node.target {
                    Some(target) => {
                        let lease = match (target.typename.as_str(), target.message) {
                            ("Commit", Some(message)) => parse_lease_for(issue, &message),
                            (kind, _) => Err(LeaseError::NotACommit {
                                kind: kind.to_ascii_lowercase(),
                            }),
                        };
                        (target.oid, lease)
                    }
                    // GitHub resolves a ref's target whenever it exists; no target means the
                    // object is gone.
                    None => (
                        String::new(),
                        Err(LeaseError::MissingCommit { sha: String::new() }),
                    ),
                };
                observed.push(ObservedLease {
                    issue,
                    ref_name,
                    sha,
                    lease,
                });
            }
            match refs.page_info {
                PageInfo {
                    has_next_page: true,
                    end_cursor: Some(end),
                } => cursor = Some(end),
                _ => break,
            }
        }
        observed.sort_by_key(|lease| lease.issue);
        Ok(observed)
    }

    /// The message of commit `sha`; `None` when GitHub has no such commit.
    ///
    /// Commits are immutable, so a message already in the cache is the answer and costs no
    /// request; a fetched one is stored for next time.
    async fn lease_commit_message(
        &self,
        repo: &RepoSlug,
        sha: &str,
    ) -> Result<Option<String>, GitHubError> {
        // The cache only saves requests: when it fails, log it and carry on without it.
        if let Some(cache) = self.cache() {
            match cache.lease_commit(sha).await {
                Ok(Some(message)) => return Ok(Some(message)),
                Ok(None) => {}
                Err(error) => tracing::warn!("ignoring the lease commit cache: {error}"),
            }
        }
        let commit = match self.commit(repo, sha).await {
            Ok(commit) => commit,
            // 404 for an unknown sha; GitHub answers 422 for some malformed ones.
            Err(GitHubError::NotFound { .. } | GitHubError::Validation { .. }) => return Ok(None),
            Err(error) => return Err(error),
        };
        if let Some(cache) = self.cache()
            && let Err(error) = cache.store_lease_commit(sha, &commit.message).await
        {
            tracing::warn!("could not update the lease commit cache: {error}");
        }
        Ok(Some(commit.message))
    }
}

/// The `data` of [`LEASES_QUERY`]: crew's own view, only the fields it reads.
#[derive(Debug, Deserialize)]
struct LeasesData {
    repository: Option<LeasesRepository>,
}

#[derive(Debug, Deserialize)]
struct LeasesRepository {
    refs: Option<RefConnection>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RefConnection {
    page_info: PageInfo,
    #[serde(default)]
    nodes: Vec<Option<RefNode>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PageInfo {
    has_next_page: bool,
    end_cursor: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RefNode {
    name: String,
    prefix: String,
    target: Option<RefTarget>,
}

#[derive(Debug, Deserialize)]
struct RefTarget {
    #[serde(rename = "__typename")]
    typename: String,
    oid: String,
    #[serde(default)]
    message: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_is_a_query_with_a_cursor() {
        assert!(LEASES_QUERY.starts_with("query"));
        assert!(LEASES_QUERY.contains("after: $cursor"));
    }

    #[test]
    fn graphql_pages_decode() -> Result<(), serde_json::Error> {
        let page: LeasesData = serde_json::from_value(json!({
            "repository": {"refs": {
                "pageInfo": {"hasNextPage": false, "endCursor": null},
                "nodes": [
                    {"name": "7", "prefix": "refs/crew/leases/",
                     "target": {"__typename": "Tree", "oid": "abc"}},
                    null,
                ],
            }},
            "rateLimit": null,
        }))?;
        let refs = page.repository.and_then(|r| r.refs);
        let node = refs
            .as_ref()
            .and_then(|refs| refs.nodes.first())
            .and_then(Option::as_ref);
        assert_eq!(node.map(|node| node.name.as_str()), Some("7"));
        assert_eq!(
            node.and_then(|node| node.target.as_ref())
                .map(|target| (target.typename.as_str(), target.message.is_none())),
            Some(("Tree", true))
        );
        Ok(())
    }
}
