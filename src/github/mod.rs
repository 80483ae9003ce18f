//! The only place that talks to GitHub.
//!
//! Everything crew learns from or writes to GitHub goes through [`GitHub`], so the properties the
//! rest of crew depends on are enforced once, here:
//!
//! - **Retries are owned by backon, not octocrab** (octocrab's `retry` feature is off). octocrab
//!   is used for what it does well (auth, base URI, TLS, timeouts) through its low-level
//!   `execute`, so every status code and header is visible to us.
//! - **Transport errors, 5xx, 429 and secondary-limit 403s are retried**, honouring `retry-after`
//!   and, when the hourly quota is exhausted, `x-ratelimit-reset`; but no request ever sleeps
//!   longer than [`RetryPolicy::max_wait`] in total. Past that it fails with
//!   [`GitHubError::RateLimited`] (exit code 3) instead of hanging a terminal or a CI job.
//! - **A write is never blindly sent twice.** A POST whose response was lost may have been
//!   applied; it is sent again only after an [`AppliedCheck`] looked on GitHub and found no trace
//!   of it (comments carry an `op` id for that purpose, DESIGN.md 2.1). Without a check it is only
//!   re-sent when the connection failed before the request left (connect errors) or GitHub
//!   answered with a rate limit (which means "not processed"). Git ref writes are naturally safe
//!   to check: a create that exists answers 422, a `force: false` update is a compare-and-swap.
//! - **Conditional GETs with ETags persisted in SQLite** ([`crate::cache`]), so the next crew
//!   process gets `304 Not Modified` (free on the rate limit) and reuses the stored body.
//! - **A rate budget**: the latest `x-ratelimit-*` per resource; [`GitHub::ensure_budget`] refuses
//!   to start work below a reserve, and a request on an exhausted resource is not even sent.
//! - **Every request is counted** (route templates, 304s, retries) because request counts are a
//!   product target (DESIGN.md section 7).
//! - **The token never appears in an error or log line**: it stays a [`Secret`] (whose `Debug`
//!   is redacted) until octocrab puts it in a sensitive header, and every error is scrubbed of it
//!   before it leaves this module.

mod actions;
mod board;
mod budget;
mod error;
mod events;
mod graphql;
mod labels;
mod leases;
mod pulls;
mod relations;
mod rest;
mod transport;
mod wire;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use octocrab::Octocrab;

pub use board::{
    BOARD_ADD_MUTATION, BOARD_ITEM_QUERY, BOARD_ITEM_QUERY_ORG, BOARD_ITEM_QUERY_USER,
    BOARD_QUERY_ORG, BOARD_QUERY_USER, BOARD_SET_STATUS_MUTATION, Board, BoardIds, CREW_LABELS,
    LabelChange, StatusChange, StatusKey, board_status, labels_enabled, state_label,
};
pub use budget::{CORE, GRAPHQL, RateSnapshot, RequestCounts};
pub use error::{GitHubError, GraphQlError, ValidationDetail};
pub use events::{PostMode, PostedEvent};
pub use graphql::GraphQlResponse;
pub use labels::{CREW_LABEL_SPECS, LabelCreated, LabelSpec};
pub use leases::{BaseTip, HeldLease, LeaseRequest, LeaseWriteError, ObservedLease, Release};
pub use pulls::{
    MergeMethod, MergeOutcome, NewPullRequest, PullEnd, PullRequest, PullReview, ReviewComment,
};
pub use relations::{RELATIONS_QUERY, Relations};
pub use rest::Conditional;
pub use wire::{
    Branch, BranchCommit, BranchCommitDetail, CollaboratorPermission, GitCommit, GitObject, GitRef,
    Issue, IssueComment, IssueLabel, Label, Owner, PullRequestLink, RateLimitOverview,
    RateLimitResources, RateLimitWindow, Repository, RepositoryPermissions, ShaRef, User,
};

use crate::cache::Cache;
pub use crate::settings::{RepoSlug, Secret};

/// Requests crew keeps in hand by default: below this, new work is refused.
pub const DEFAULT_RATE_RESERVE: u64 = 100;

/// GitHub's public API.
pub const DEFAULT_API_URL: &str = "https://api.github.com";

/// How hard to try before giving up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (so `max_retries + 1` requests at most).
    pub max_retries: usize,
    /// First backoff delay for transport errors and 5xx (doubles, with jitter).
    pub min_delay: Duration,
    /// Longest single backoff delay for transport errors and 5xx.
    pub max_delay: Duration,
    /// Longest total time one request may spend sleeping between attempts (including waits
    /// GitHub asks for with `retry-after` or a rate-limit reset). Past it: `RateLimited`.
    pub max_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            max_retries: 4,
            min_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
            max_wait: Duration::from_secs(60),
        }
    }
}

/// Everything needed to build a [`GitHub`].
#[derive(Debug, Clone)]
pub struct GitHubConfig {
    /// REST root (`https://api.github.com`, `https://ghe.example.com/api/v3`, the emulator);
    /// GraphQL is `<api_url>/graphql`.
    pub api_url: url::Url,
    pub token: Option<Secret>,
    pub retry: RetryPolicy,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
}

impl GitHubConfig {
    /// The API URL and token from resolved settings (asking `gh auth token` if needed), with the
    /// default retry policy.
    pub fn from_settings(settings: &crate::settings::Settings) -> GitHubConfig {
        GitHubConfig::new(
            settings.api_url.clone(),
            settings.token().map(|token| token.secret.clone()),
        )
        .with_timeout(settings.http_timeout)
    }

    /// Gives up on a request after `timeout` (`CREW_HTTP_TIMEOUT`): reading or writing it, or
    /// connecting, whichever is shorter for the connect.
    pub fn with_timeout(mut self, timeout: Duration) -> GitHubConfig {
        self.read_timeout = timeout;
        self.connect_timeout = self.connect_timeout.min(timeout);
        self
    }

    pub fn new(api_url: url::Url, token: Option<Secret>) -> GitHubConfig {
        GitHubConfig {
            api_url,
            token,
            retry: RetryPolicy::default(),
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
        }
    }
}

type CheckFuture<'a, T> = Pin<Box<dyn Future<Output = Result<Option<T>, GitHubError>> + Send + 'a>>;

/// "Was this write already applied?", asked before a write whose earlier attempt may have
/// reached GitHub is sent again. `Ok(Some(value))` means yes (and is returned as the write's
/// result); `Ok(None)` means no, send it again.
pub struct AppliedCheck<'a, T> {
    check: Box<dyn Fn() -> CheckFuture<'a, T> + Send + Sync + 'a>,
}

impl<'a, T> AppliedCheck<'a, T> {
    pub fn new<F, Fut>(check: F) -> AppliedCheck<'a, T>
    where
        F: Fn() -> Fut + Send + Sync + 'a,
        Fut: Future<Output = Result<Option<T>, GitHubError>> + Send + 'a,
    {
        AppliedCheck {
            check: Box::new(move || Box::pin(check())),
        }
    }

    async fn run(&self) -> Result<Option<T>, GitHubError> {
        (self.check)().await
    }
}

impl<T> std::fmt::Debug for AppliedCheck<'_, T> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("AppliedCheck")
    }
}

/// The GitHub client. Cheap to clone; clones share the budget, counter and cache.
#[derive(Clone)]
pub struct GitHub {
    inner: Arc<Inner>,
}

struct Inner {
    octocrab: Octocrab,
    api_url: url::Url,
    token: Option<Secret>,
    cache: Option<Cache>,
    retry: RetryPolicy,
    budget: budget::RateBudget,
    counter: budget::RequestCounter,
}

impl std::fmt::Debug for GitHub {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("GitHub")
            .field("api_url", &self.inner.api_url.as_str())
            .field("token", &self.inner.token)
            .field("cache", &self.inner.cache)
            .finish_non_exhaustive()
    }
}

impl GitHub {
    /// Builds a client. `cache` enables persisted conditional GETs; without it, GETs are plain.
    pub fn new(config: GitHubConfig, cache: Option<Cache>) -> Result<GitHub, GitHubError> {
        let unexpected = |message: String| GitHubError::Unexpected {
            route: "client setup".to_string(),
            message,
        };
        let mut builder = Octocrab::builder()
            .base_uri(config.api_url.as_str())
            .map_err(|error| unexpected(format!("invalid API URL {}: {error}", config.api_url)))?
            .set_connect_timeout(Some(config.connect_timeout))
            .set_read_timeout(Some(config.read_timeout))
            .set_write_timeout(Some(config.read_timeout))
            .add_header(
                http::header::ACCEPT,
                "application/vnd.github+json".to_string(),
            )
            .add_header(
                http::HeaderName::from_static("x-github-api-version"),
                "2022-11-28".to_string(),
            )
            .add_header(
                http::header::USER_AGENT,
                concat!("crew/", env!("CARGO_PKG_VERSION")).to_string(),
            );
        if let Some(token) = &config.token {
            builder = builder.personal_token(token.expose().to_string());
        }
        let octocrab = builder
            .build()
            .map_err(|error| unexpected(format!("could not build the HTTP client: {error}")))?;
        Ok(GitHub {
            inner: Arc::new(Inner {
                octocrab,
                api_url: config.api_url,
                token: config.token,
                cache,
                retry: config.retry,
                budget: budget::RateBudget::default(),
                counter: budget::RequestCounter::default(),
            }),
        })
    }

    /// The REST root this client talks to.
    pub fn api_url(&self) -> &url::Url {
        &self.inner.api_url
    }

    /// True when a token was configured.
    pub fn has_token(&self) -> bool {
        self.inner.token.is_some()
    }

    /// The ETag cache, if one was given.
    pub fn cache(&self) -> Option<&Cache> {
        self.inner.cache.as_ref()
    }

    /// Refuses to start new work when the REST (`core`) budget is below `reserve`.
    pub fn ensure_budget(&self, reserve: u64) -> Result<(), GitHubError> {
        self.ensure_budget_for(CORE, reserve)
    }

    /// [`GitHub::ensure_budget`] for another resource (e.g. [`GRAPHQL`]).
    pub fn ensure_budget_for(&self, resource: &str, reserve: u64) -> Result<(), GitHubError> {
        self.inner
            .budget
            .ensure(resource, reserve, chrono::Utc::now())
    }

    /// The latest rate-limit figures GitHub reported for `resource`.
    pub fn rate_snapshot(&self, resource: &str) -> Option<RateSnapshot> {
        self.inner.budget.snapshot(resource)
    }

    /// Requests sent so far by this client and its clones.
    pub fn request_counts(&self) -> RequestCounts {
        self.inner.counter.counts()
    }

    /// One line for `-v`: total, 304s, retries and per-route counts.
    pub fn request_summary(&self) -> String {
        self.inner.counter.summary()
    }
}

/// What crew makes of a non-success response (status, headers, body) on `route`: the same
/// decoding every request goes through, public so contract tests can feed it GitHub's recorded
/// error responses.
pub fn decode_error(
    route: &str,
    status: http::StatusCode,
    headers: &http::HeaderMap,
    body: &[u8],
) -> GitHubError {
    transport::classify(route, status, headers, body, CORE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn client_debug_does_not_show_the_token() -> Result<(), GitHubError> {
        let config = GitHubConfig::new(
            url::Url::parse("http://127.0.0.1:9").map_err(|error| GitHubError::Unexpected {
                route: String::new(),
                message: error.to_string(),
            })?,
            Some(Secret::new("ghp_very_secret")),
        );
        let client = GitHub::new(config, None)?;
        assert!(!format!("{client:?}").contains("ghp_very_secret"));
        Ok(())
    }
}
