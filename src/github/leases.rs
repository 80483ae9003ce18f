//! Leases on GitHub (DESIGN.md 2.2): reading every lease of a repository at once, by REST or by
//! GraphQL; and writing one (acquire, renew, release) by compare-and-swap on its ref.
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
//!
//! Writes ([`GitHub::acquire_lease`], [`GitHub::renew_lease`], [`GitHub::release_lease`]) only
//! ever create the ref or fast-forward it (`force: false`), so GitHub itself decides every race:
//! a loser gets [`LeaseWriteError::LostRace`] (exit 4) and leaves at most an unreferenced commit
//! object behind; a holder whose fast-forward is refused is [`LeaseWriteError::Superseded`]. A lease
//! crew cannot read (garbage, a newer format) is never overwritten. Costs: acquire 4 requests
//! (fresh or takeover), refusing a live lease 2 (1 with a warm cache), renew and release 2 each.

use serde::Deserialize;
use serde_json::json;

use super::{GitHub, GitHubError, RepoSlug};
use crate::protocol::lease::{
    LEASE_VERSION, Lease, LeaseError, LeaseState, LeaseStatus, issue_from_ref, lease_ref,
    parse_lease_for, render_lease,
};

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

/// What [`GitHub::acquire_lease`] needs besides the repository, prefix and issue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRequest {
    /// The base branch (`main`): a first lease commit takes its tip as parent and its tree.
    pub base: String,
    pub worker: String,
    pub host: String,
    /// `local` or `actions`.
    pub runtime: String,
    /// How long the lease holds without renewal (DESIGN.md 2.2: 30 min by default).
    pub ttl: chrono::TimeDelta,
    /// The injected clock: liveness of the current lease is judged at this instant, and the new
    /// lease's `acquired_at`/`renewed_at` are this instant.
    pub now: chrono::DateTime<chrono::Utc>,
}

/// What [`GitHub::release_attempt`] found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// Released now.
    Released,
    /// It was released already.
    AlreadyReleased,
    /// Another worker or attempt holds the lease (or the ref is gone): nothing of ours to let go.
    Superseded,
}

/// A commit of the base branch and its tree, as a clone knows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseTip {
    pub commit: String,
    pub tree: String,
}

/// A lease this process wrote and (as far as it knows) still holds: the lease plus the commit
/// the ref pointed at after our write. Renewal and release fast-forward from `sha`, so whoever
/// holds a `HeldLease` can prove, by compare-and-swap, that nobody took the lease in between.
/// Serialisable so a supervisor can keep it in `.crew/worker.json`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HeldLease {
    pub lease: Lease,
    /// Full ref name, `refs/crew/leases/42`.
    pub ref_name: String,
    /// The lease commit we wrote; the ref pointed at it when our write succeeded.
    pub sha: String,
    /// The tree of that commit, reused by the next lease commit (saves a request).
    pub tree: String,
}

/// Why a lease write did not happen.
#[derive(Debug, thiserror::Error)]
pub enum LeaseWriteError {
    /// Someone else holds the lease, or won the compare-and-swap first. Nothing of ours is left
    /// on the ref (at most an unreferenced commit object). Exit code 4.
    #[error("issue #{issue}: {}", describe_holder(holder.as_ref()))]
    LostRace { issue: u64, holder: Option<Lease> },
    /// Our renewal or release was rejected: the ref no longer descends from our commit (someone
    /// took the lease over after it expired, or the ref was deleted). The worker must stop.
    #[error(
        "issue #{issue}: lease attempt {attempt} was superseded; {}",
        describe_holder(current.as_ref())
    )]
    Superseded {
        issue: u64,
        attempt: u32,
        current: Option<Lease>,
    },
    /// The lease ref holds something crew cannot read (garbage, a newer format, not a commit).
    /// crew never overwrites what it does not understand.
    #[error("issue #{issue}: refusing to touch lease ref {ref_name} (at {sha}): {error}")]
    Unreadable {
        issue: u64,
        ref_name: String,
        sha: String,
        error: LeaseError,
    },
    /// The lease we were asked to renew is not held (already released).
    #[error("issue #{issue}: lease attempt {attempt} is released; acquire a new one")]
    NotHeld { issue: u64, attempt: u32 },
    #[error(transparent)]
    GitHub(#[from] GitHubError),
}

impl crate::error::Classify for LeaseWriteError {
    fn kind(&self) -> crate::error::ErrorKind {
        use crate::error::ErrorKind;
        match self {
            LeaseWriteError::LostRace { .. } | LeaseWriteError::Superseded { .. } => {
                ErrorKind::LostRace
            }
            LeaseWriteError::Unreadable { error, .. } => error.kind(),
            LeaseWriteError::NotHeld { .. } => ErrorKind::User,
            LeaseWriteError::GitHub(error) => error.kind(),
        }
    }

    fn hints(&self) -> Vec<String> {
        match self {
            LeaseWriteError::LostRace { .. } => {
                vec!["another orchestrator holds this issue; `crew status` shows who".to_string()]
            }
            LeaseWriteError::Unreadable { error, .. } => error.hints(),
            LeaseWriteError::GitHub(error) => error.hints(),
            LeaseWriteError::Superseded { .. } | LeaseWriteError::NotHeld { .. } => Vec::new(),
        }
    }
}

/// `now + ttl`, saturating instead of panicking on an absurd TTL.
fn expiry(
    now: chrono::DateTime<chrono::Utc>,
    ttl: chrono::TimeDelta,
) -> chrono::DateTime<chrono::Utc> {
    now.checked_add_signed(ttl)
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC)
}

fn describe_holder(holder: Option<&Lease>) -> String {
    match holder {
        Some(lease) => format!(
            "lease held by worker {} on host {} (attempt {}, {}) until {}",
            lease.worker,
            lease.host,
            lease.attempt,
            match lease.state {
                LeaseState::Held => "held",
                LeaseState::Released => "released",
            },
            lease
                .expires_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ),
        None => "another orchestrator won the lease".to_string(),
    }
}

impl GitHub {
    /// Acquires the lease of `issue` (DESIGN.md 2.2), by compare-and-swap on its ref.
    ///
    /// - No ref: a lease commit (attempt 1; tree and parent from the tip of `request.base`),
    ///   then `POST /git/refs`. 4 requests: get ref, branch, commit, create ref.
    /// - A released or expired lease: a lease commit (attempt + 1) whose parent is the tip we
    ///   read and whose tree is that commit's, then `PATCH` with `force: false`. 4 requests:
    ///   get ref, get commit, commit, update ref.
    ///   With a cache that already holds the lease message, still 4 (the tree is fetched only
    ///   once a takeover is decided).
    /// - A live lease: [`LeaseWriteError::LostRace`] naming the holder, no writes at all: 2
    ///   requests (get ref, get commit), or 1 when the cache holds the lease message (every
    ///   lease commit crew writes or reads is cached by sha).
    /// - Anything crew cannot read (garbage, a newer format): [`LeaseWriteError::Unreadable`],
    ///   no writes: crew never guesses that what it cannot read is free.
    ///
    /// Losing the compare-and-swap (422, and the ref is indeed someone else's) is
    /// [`LeaseWriteError::LostRace`]; the commit object created before the ref write is then an
    /// unreferenced orphan, harmless, and collected by GitHub's gc. A ref write whose response
    /// was lost is not re-sent blindly: the client's applied-check re-reads the ref and accepts
    /// it when it points at our commit.
    pub async fn acquire_lease(
        &self,
        repo: &RepoSlug,
        prefix: &str,
        issue: u64,
        request: LeaseRequest,
    ) -> Result<HeldLease, LeaseWriteError> {
        self.acquire_lease_from(repo, prefix, issue, request, None)
            .await
    }

    /// [`GitHub::acquire_lease`] with the base branch's tip as this clone already knows it
    /// (`origin/<base>`): a first lease commit then needs no `GET /branches/{branch}` (3 requests
    /// instead of 4). Any commit of the repository will do as the parent of a first lease, so a
    /// slightly stale tip is fine; one GitHub does not know (a rewritten branch) is noticed by the
    /// commit write, and the tip is then asked for after all.
    pub async fn acquire_lease_from(
        &self,
        repo: &RepoSlug,
        prefix: &str,
        issue: u64,
        request: LeaseRequest,
        known_base: Option<BaseTip>,
    ) -> Result<HeldLease, LeaseWriteError> {
        let ref_name = lease_ref(prefix, issue);
        let new_lease = |attempt: u32| Lease {
            v: LEASE_VERSION,
            issue,
            attempt,
            worker: request.worker.clone(),
            host: request.host.clone(),
            runtime: request.runtime.clone(),
            acquired_at: request.now,
            renewed_at: request.now,
            expires_at: expiry(request.now, request.ttl),
            state: LeaseState::Held,
        };
        match self.get_ref(repo, &ref_name).await? {
            None => {
                let lease = new_lease(1);
                let from_clone = match known_base {
                    Some(tip) => match self
                        .write_lease_commit(repo, &lease, &tip.tree, &tip.commit)
                        .await
                    {
                        Ok(sha) => Some((sha, tip.tree)),
                        // GitHub does not know that commit (a rewritten branch): ask instead.
                        Err(GitHubError::Validation { .. } | GitHubError::NotFound { .. }) => None,
                        Err(error) => return Err(error.into()),
                    },
                    None => None,
                };
                let (sha, tree) = match from_clone {
                    Some(written) => written,
                    None => {
                        let base = self.branch(repo, &request.base).await?;
                        let tree = base.commit.commit.tree.sha;
                        let sha = self
                            .write_lease_commit(repo, &lease, &tree, &base.commit.sha)
                            .await?;
                        (sha, tree)
                    }
                };
                match self.create_ref(repo, &ref_name, &sha).await {
                    Ok(_) => Ok(HeldLease {
                        lease,
                        ref_name,
                        sha,
                        tree,
                    }),
                    Err(error @ GitHubError::Validation { .. }) => {
                        // "Reference already exists" means someone else created it first; any
                        // other 422 (a ref name the host refuses) leaves no ref behind.
                        match self.current_lease(repo, &ref_name, issue).await? {
                            Some((_, holder)) => Err(LeaseWriteError::LostRace {
                                issue,
                                holder: holder.ok(),
                            }),
                            None => Err(error.into()),
                        }
                    }
                    Err(error) => Err(error.into()),
                }
            }
            Some(git_ref) => {
                let tip = git_ref.object.sha;
                let unreadable = |error: LeaseError| LeaseWriteError::Unreadable {
                    issue,
                    ref_name: ref_name.clone(),
                    sha: tip.clone(),
                    error,
                };
                if git_ref.object.kind != "commit" {
                    return Err(unreadable(LeaseError::NotACommit {
                        kind: git_ref.object.kind,
                    }));
                }
                // A lease message the cache holds (commits are immutable) decides "live" without
                // a request; the tree is fetched only when we go on to take the lease over.
                let cached = self.cached_lease_message(&tip).await;
                let mut fetched = None;
                let message = match cached {
                    Some(message) => message,
                    None => {
                        let commit =
                            self.lease_commit(repo, &tip)
                                .await
                                .map_err(|error| match error {
                                    LeaseWriteError::GitHub(GitHubError::NotFound { .. }) => {
                                        unreadable(LeaseError::MissingCommit { sha: tip.clone() })
                                    }
                                    other => other,
                                })?;
                        let message = commit.message.clone();
                        fetched = Some(commit);
                        message
                    }
                };
                let previous = parse_lease_for(issue, &message).map_err(unreadable)?;
                if previous.status(request.now) == LeaseStatus::Live {
                    return Err(LeaseWriteError::LostRace {
                        issue,
                        holder: Some(previous),
                    });
                }
                let tree = match fetched {
                    Some(commit) => commit.tree.sha,
                    None => self.commit(repo, &tip).await?.tree.sha,
                };
                let lease = new_lease(previous.attempt.saturating_add(1));
                let sha = self.write_lease_commit(repo, &lease, &tree, &tip).await?;
                match self.update_ref(repo, &ref_name, &sha).await {
                    Ok(_) => Ok(HeldLease {
                        lease,
                        ref_name,
                        sha,
                        tree,
                    }),
                    Err(error @ GitHubError::Validation { .. }) => {
                        match self.current_lease(repo, &ref_name, issue).await? {
                            // Still at the tip we read: the 422 was not a lost race.
                            Some((now_at, _)) if now_at == tip => Err(error.into()),
                            Some((_, holder)) => Err(LeaseWriteError::LostRace {
                                issue,
                                holder: holder.ok(),
                            }),
                            None => Err(LeaseWriteError::LostRace {
                                issue,
                                holder: None,
                            }),
                        }
                    }
                    Err(error) => Err(error.into()),
                }
            }
        }
    }

    /// Renews a lease we hold: a fast-forward from `held.sha` to a commit with `renewed_at =
    /// now` and `expires_at = now + ttl`. 2 requests (commit, update ref). The `force: false`
    /// update is the check that the ref still descends only from our commit: if anyone took the
    /// lease over (their commit is a child of ours, not an ancestor of our new one) or deleted
    /// the ref, GitHub answers 422 and this returns [`LeaseWriteError::Superseded`]: the caller
    /// must stop the worker.
    pub async fn renew_lease(
        &self,
        repo: &RepoSlug,
        held: &HeldLease,
        now: chrono::DateTime<chrono::Utc>,
        ttl: chrono::TimeDelta,
    ) -> Result<HeldLease, LeaseWriteError> {
        if held.lease.state == LeaseState::Released {
            return Err(LeaseWriteError::NotHeld {
                issue: held.lease.issue,
                attempt: held.lease.attempt,
            });
        }
        let lease = Lease {
            renewed_at: now,
            expires_at: expiry(now, ttl),
            ..held.lease.clone()
        };
        self.fast_forward_lease(repo, held, lease).await
    }

    /// Releases a lease we hold: a fast-forward to a commit with `state: released` (never a
    /// delete: a delete has no precondition and could remove a newer holder's lease). Releasing
    /// an already released lease is a no-op. [`LeaseWriteError::Superseded`] when someone else
    /// holds it now (there is nothing of ours left to release).
    pub async fn release_lease(
        &self,
        repo: &RepoSlug,
        held: &HeldLease,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<HeldLease, LeaseWriteError> {
        if held.lease.state == LeaseState::Released {
            return Ok(held.clone());
        }
        let lease = Lease {
            renewed_at: now,
            state: LeaseState::Released,
            ..held.lease.clone()
        };
        self.fast_forward_lease(repo, held, lease).await
    }

    /// The lease of `issue` as it stands now, when it is still `worker`'s attempt `attempt`:
    /// a [`HeldLease`] at the ref's current tip, from which this process can renew or release
    /// it (the supervisor, a `crew heartbeat` and a reconciling command may each have moved the
    /// tip since any one of them last wrote). The lease may be `released` already; callers
    /// check. [`LeaseWriteError::Superseded`] when the ref is gone or names another worker or
    /// attempt: that is the fence agent-side commands and reconcilers rely on. 2 requests (get
    /// ref, get commit).
    pub async fn reclaim_lease(
        &self,
        repo: &RepoSlug,
        prefix: &str,
        issue: u64,
        worker: &str,
        attempt: u32,
    ) -> Result<HeldLease, LeaseWriteError> {
        let superseded = |current: Option<Lease>| LeaseWriteError::Superseded {
            issue,
            attempt,
            current,
        };
        match self.lease_at_tip(repo, prefix, issue).await? {
            Some(held) if held.lease.worker == worker && held.lease.attempt == attempt => Ok(held),
            Some(held) => Err(superseded(Some(held.lease))),
            None => Err(superseded(None)),
        }
    }

    /// The lease of `issue` as its ref stands now, whoever holds it, as a [`HeldLease`] from
    /// whose tip a holder could write; `None` without a ref. A ref crew cannot read is
    /// [`LeaseWriteError::Unreadable`]. 2 requests (get ref, get commit).
    pub async fn lease_at_tip(
        &self,
        repo: &RepoSlug,
        prefix: &str,
        issue: u64,
    ) -> Result<Option<HeldLease>, LeaseWriteError> {
        let ref_name = lease_ref(prefix, issue);
        let Some(git_ref) = self.get_ref(repo, &ref_name).await? else {
            return Ok(None);
        };
        let sha = git_ref.object.sha;
        let unreadable = |error: LeaseError| LeaseWriteError::Unreadable {
            issue,
            ref_name: ref_name.clone(),
            sha: sha.clone(),
            error,
        };
        if git_ref.object.kind != "commit" {
            return Err(unreadable(LeaseError::NotACommit {
                kind: git_ref.object.kind,
            }));
        }
        let commit = self
            .lease_commit(repo, &sha)
            .await
            .map_err(|error| match error {
                LeaseWriteError::GitHub(GitHubError::NotFound { .. }) => {
                    unreadable(LeaseError::MissingCommit { sha: sha.clone() })
                }
                other => other,
            })?;
        let lease = parse_lease_for(issue, &commit.message).map_err(unreadable)?;
        Ok(Some(HeldLease {
            lease,
            ref_name,
            sha: sha.clone(),
            tree: commit.tree.sha,
        }))
    }

    /// Lets go of `worker`'s attempt `attempt` at `issue` from wherever its ref stands now
    /// ([`GitHub::reclaim_lease`], then [`GitHub::release_lease`]): for whoever ends an attempt
    /// without holding its lease's latest tip (cancel, merge, gc). A lease another attempt holds
    /// now, or one already released, is left as it is and said so. 2–4 requests.
    pub async fn release_attempt(
        &self,
        repo: &RepoSlug,
        prefix: &str,
        issue: u64,
        worker: &str,
        attempt: u32,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Release, LeaseWriteError> {
        let held = match self
            .reclaim_lease(repo, prefix, issue, worker, attempt)
            .await
        {
            Ok(held) => held,
            Err(LeaseWriteError::Superseded { .. }) => return Ok(Release::Superseded),
            Err(error) => return Err(error),
        };
        if held.lease.state == LeaseState::Released {
            return Ok(Release::AlreadyReleased);
        }
        match self.release_lease(repo, &held, now).await {
            Ok(_) => Ok(Release::Released),
            Err(LeaseWriteError::Superseded { .. }) => Ok(Release::Superseded),
            Err(error) => Err(error),
        }
    }

    /// Writes `lease` as a child of `held.sha` and fast-forwards the ref to it.
    ///
    /// A lease has more than one legitimate writer on its holder's side (the supervisor's
    /// renewals, the agent's `crew heartbeat`, `crew done` releasing it), so a rejected
    /// fast-forward is looked at before it is called a loss: when the ref moved on but still
    /// holds the same worker's attempt, unreleased, the write is retried once from the new tip.
    /// Only another worker, another attempt, a release or a deleted ref is
    /// [`LeaseWriteError::Superseded`].
    async fn fast_forward_lease(
        &self,
        repo: &RepoSlug,
        held: &HeldLease,
        lease: Lease,
    ) -> Result<HeldLease, LeaseWriteError> {
        let mut from = held.clone();
        for _ in 0..3 {
            let sha = self
                .write_lease_commit(repo, &lease, &from.tree, &from.sha)
                .await?;
            let rejected = match self.update_ref(repo, &from.ref_name, &sha).await {
                Ok(_) => {
                    return Ok(HeldLease {
                        lease,
                        ref_name: from.ref_name.clone(),
                        sha,
                        tree: from.tree.clone(),
                    });
                }
                Err(error @ GitHubError::Validation { .. }) => error,
                Err(error) => return Err(error.into()),
            };
            let current = self
                .current_lease(repo, &from.ref_name, held.lease.issue)
                .await?;
            match current {
                // Still where we wrote from: the 422 was about something else.
                Some((tip, _)) if tip == from.sha => return Err(rejected.into()),
                // Moved by another writer of this same attempt: go again from there.
                Some((tip, Ok(now)))
                    if now.worker == held.lease.worker
                        && now.attempt == held.lease.attempt
                        && now.state == LeaseState::Held =>
                {
                    from.sha = tip;
                }
                current => {
                    return Err(LeaseWriteError::Superseded {
                        issue: held.lease.issue,
                        attempt: held.lease.attempt,
                        current: current.and_then(|(_, lease)| lease.ok()),
                    });
                }
            }
        }
        Err(LeaseWriteError::Superseded {
            issue: held.lease.issue,
            attempt: held.lease.attempt,
            current: None,
        })
    }

    /// The message of lease commit `sha` if the cache holds it (no request).
    async fn cached_lease_message(&self, sha: &str) -> Option<String> {
        let cache = self.cache()?;
        match cache.lease_commit(sha).await {
            Ok(message) => message,
            Err(error) => {
                tracing::warn!("ignoring the lease commit cache: {error}");
                None
            }
        }
    }

    /// `GET` lease commit `sha`, remembering its message in the cache.
    async fn lease_commit(
        &self,
        repo: &RepoSlug,
        sha: &str,
    ) -> Result<super::GitCommit, LeaseWriteError> {
        let commit = self.commit(repo, sha).await?;
        if let Some(cache) = self.cache()
            && let Err(error) = cache.store_lease_commit(sha, &commit.message).await
        {
            tracing::warn!("could not update the lease commit cache: {error}");
        }
        Ok(commit)
    }

    /// Creates the lease commit for `lease` (message = lease JSON) and remembers its message in
    /// the cache, so the next [`GitHub::leases`] need not fetch it. Returns its sha.
    async fn write_lease_commit(
        &self,
        repo: &RepoSlug,
        lease: &Lease,
        tree: &str,
        parent: &str,
    ) -> Result<String, GitHubError> {
        let message = render_lease(lease);
        let commit = self.create_commit(repo, &message, tree, &[parent]).await?;
        if let Some(cache) = self.cache()
            && let Err(error) = cache.store_lease_commit(&commit.sha, &message).await
        {
            tracing::warn!("could not update the lease commit cache: {error}");
        }
        Ok(commit.sha)
    }

    /// Where the lease ref points now and what it says; `None` when it does not exist.
    /// Used after a rejected write, to name the winner.
    async fn current_lease(
        &self,
        repo: &RepoSlug,
        ref_name: &str,
        issue: u64,
    ) -> Result<Option<(String, Result<Lease, LeaseError>)>, GitHubError> {
        let Some(git_ref) = self.get_ref(repo, ref_name).await? else {
            return Ok(None);
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
        Ok(Some((sha, lease)))
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
