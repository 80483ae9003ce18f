//! Rate-limit bookkeeping and request accounting.
//!
//! GitHub sends `x-ratelimit-*` headers on every response; keeping the latest per resource lets
//! crew refuse to *start* work it cannot finish ([`RateBudget::ensure`]) instead of failing half
//! way through a dispatch, and lets a request that would certainly be refused (quota at 0) wait or
//! fail without being sent. The counter exists because request counts are a product target
//! (DESIGN.md section 7): `-v` prints them, tests and the bench assert them.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use http::HeaderMap;

use super::GitHubError;

/// GitHub's resource for REST calls; the one [`RateBudget::ensure`] guards by default.
pub const CORE: &str = "core";
/// GitHub's resource for GraphQL calls.
pub const GRAPHQL: &str = "graphql";

/// The latest rate-limit figures GitHub reported for one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateSnapshot {
    pub limit: u64,
    pub remaining: u64,
    pub used: Option<u64>,
    pub reset: DateTime<Utc>,
}

impl RateSnapshot {
    /// Reads `x-ratelimit-*` headers; `None` when they are absent or malformed.
    /// Returns the resource name too (`core` when the header is missing, as for old GHES).
    pub fn from_headers(headers: &HeaderMap) -> Option<(String, RateSnapshot)> {
        let number =
            |name: &str| -> Option<u64> { headers.get(name)?.to_str().ok()?.trim().parse().ok() };
        let limit = number("x-ratelimit-limit")?;
        let remaining = number("x-ratelimit-remaining")?;
        let reset = DateTime::from_timestamp(i64::try_from(number("x-ratelimit-reset")?).ok()?, 0)?;
        let resource = headers
            .get("x-ratelimit-resource")
            .and_then(|value| value.to_str().ok())
            .map(str::to_string)
            .unwrap_or_else(|| CORE.to_string());
        Some((
            resource,
            RateSnapshot {
                limit,
                remaining,
                used: number("x-ratelimit-used"),
                reset,
            },
        ))
    }

    /// True when no request on this resource can succeed before `reset`.
    pub fn exhausted_at(&self, now: DateTime<Utc>) -> bool {
        self.remaining == 0 && self.reset > now
    }
}

/// Latest [`RateSnapshot`] per resource, shared by every clone of the client.
#[derive(Debug, Default)]
pub struct RateBudget {
    resources: Mutex<HashMap<String, RateSnapshot>>,
}

impl RateBudget {
    /// Records what GitHub just reported. The latest answer wins, even when it shows more
    /// remaining than before: a quota can be raised or reset mid-window, and a stale low figure
    /// would block work for nothing.
    pub fn record(&self, resource: &str, snapshot: RateSnapshot) {
        self.lock().insert(resource.to_string(), snapshot);
    }

    /// The latest snapshot for `resource`, if GitHub has reported one.
    pub fn snapshot(&self, resource: &str) -> Option<RateSnapshot> {
        self.lock().get(resource).copied()
    }

    /// Refuses with [`GitHubError::RateLimited`] when `resource` is known to have fewer than
    /// `reserve` requests left in the current window. Unknown resources pass: the first response
    /// will tell.
    pub fn ensure(
        &self,
        resource: &str,
        reserve: u64,
        now: DateTime<Utc>,
    ) -> Result<(), GitHubError> {
        match self.snapshot(resource) {
            Some(snapshot) if snapshot.reset > now && snapshot.remaining < reserve => {
                Err(GitHubError::RateLimited {
                    resource: resource.to_string(),
                    remaining: Some(snapshot.remaining),
                    reset: Some(snapshot.reset),
                    retry_after: None,
                    secondary: false,
                    reserve: Some(reserve),
                })
            }
            _ => Ok(()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, RateSnapshot>> {
        self.resources
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Counts of requests sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestCounts {
    /// Every HTTP request sent, retries included.
    pub total: u64,
    /// Answers `304 Not Modified` (free on GitHub's rate limit).
    pub not_modified: u64,
    /// Requests that were a retry of an earlier attempt.
    pub retries: u64,
    /// Per `"METHOD /route/{template}"`.
    pub by_route: BTreeMap<String, u64>,
}

/// Thread-safe [`RequestCounts`].
#[derive(Debug, Default)]
pub struct RequestCounter {
    counts: Mutex<RequestCounts>,
}

impl RequestCounter {
    pub fn record_request(&self, route: &str, retry: bool) {
        let mut counts = self.lock();
        counts.total += 1;
        if retry {
            counts.retries += 1;
        }
        *counts.by_route.entry(route.to_string()).or_default() += 1;
    }

    pub fn record_not_modified(&self) {
        self.lock().not_modified += 1;
    }

    pub fn counts(&self) -> RequestCounts {
        self.lock().clone()
    }

    /// One line for `-v`: `github: 5 requests (2 not modified, 1 retry): GET /user 1, …`.
    pub fn summary(&self) -> String {
        let counts = self.counts();
        let mut line = format!(
            "github: {} request{} ({} not modified, {} {})",
            counts.total,
            if counts.total == 1 { "" } else { "s" },
            counts.not_modified,
            counts.retries,
            if counts.retries == 1 {
                "retry"
            } else {
                "retries"
            },
        );
        if !counts.by_route.is_empty() {
            let routes: Vec<String> = counts
                .by_route
                .iter()
                .map(|(route, count)| format!("{route} {count}"))
                .collect();
            line.push_str(": ");
            line.push_str(&routes.join(", "));
        }
        line
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RequestCounts> {
        self.counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            if let Ok(value) = value.parse() {
                map.insert(*name, value);
            }
        }
        map
    }

    #[test]
    fn snapshot_from_headers() {
        let parsed = RateSnapshot::from_headers(&headers(&[
            ("x-ratelimit-limit", "5000"),
            ("x-ratelimit-remaining", "4999"),
            ("x-ratelimit-reset", "1700000000"),
            ("x-ratelimit-used", "1"),
            ("x-ratelimit-resource", "graphql"),
        ]));
        let (resource, snapshot) = parsed.unwrap_or_else(|| panic!("headers should parse"));
        assert_eq!(resource, "graphql");
        assert_eq!(
            (snapshot.limit, snapshot.remaining, snapshot.used),
            (5000, 4999, Some(1))
        );
        assert!(RateSnapshot::from_headers(&headers(&[("x-ratelimit-limit", "x")])).is_none());
    }

    #[test]
    fn ensure_refuses_below_reserve_until_reset() {
        let budget = RateBudget::default();
        let now = Utc::now();
        assert!(budget.ensure(CORE, 100, now).is_ok(), "unknown passes");
        let reset = now + chrono::Duration::minutes(10);
        budget.record(
            CORE,
            RateSnapshot {
                limit: 5000,
                remaining: 50,
                used: None,
                reset,
            },
        );
        let error = budget.ensure(CORE, 100, now).err();
        assert!(
            matches!(
                error,
                Some(GitHubError::RateLimited {
                    remaining: Some(50),
                    reserve: Some(100),
                    ..
                })
            ),
            "{error:?}"
        );
        assert!(budget.ensure(CORE, 50, now).is_ok());
        assert!(
            budget.ensure(CORE, 100, reset).is_ok(),
            "a new window has begun"
        );
        assert!(budget.ensure(GRAPHQL, 100, now).is_ok());
    }

    #[test]
    fn summary_is_one_line() {
        let counter = RequestCounter::default();
        counter.record_request("GET /user", false);
        counter.record_request("GET /user", true);
        counter.record_not_modified();
        assert_eq!(
            counter.summary(),
            "github: 2 requests (1 not modified, 1 retry): GET /user 2"
        );
    }
}
