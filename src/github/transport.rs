//! One request, sent and classified; and the retry loop around it.
//!
//! [`GitHub::send_once`] turns an HTTP exchange into a [`Reply`] or a classified
//! [`GitHubError`]. [`GitHub::send`] wraps it in backon: which errors are retried, how long to
//! wait, and when a write must first ask its [`AppliedCheck`] are all decided here, in one place.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use chrono::Utc;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use http_body_util::BodyExt;
use serde::Deserialize;

use super::budget::{CORE, GRAPHQL, RateSnapshot};
use super::{AppliedCheck, GitHub, GitHubError, ValidationDetail};

/// How long GitHub says to wait after a secondary limit when it sends no `retry-after`
/// ("wait at least one minute", GitHub's REST docs on rate limits).
const SECONDARY_LIMIT_DEFAULT_WAIT: Duration = Duration::from_secs(60);

/// Whether a request may be sent again after it may have reached GitHub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Resend {
    /// Reads, and writes whose repetition has no effect: retry freely.
    Safe,
    /// A write that must not be applied twice: re-send only when it certainly was not applied,
    /// or after the [`AppliedCheck`] found no trace of it.
    Unsafe,
}

/// A request, described once and sent as many times as the retry policy allows.
#[derive(Debug, Clone)]
pub(super) struct Request {
    pub method: Method,
    /// `"METHOD /template"` for counting and messages, like the emulator's stats.
    pub route: &'static str,
    /// A path (`/repos/acme/widgets`) or, for pagination links, an absolute URL.
    pub path: String,
    pub body: Option<serde_json::Value>,
    pub headers: HeaderMap,
    pub resend: Resend,
}

impl Request {
    pub fn get(route: &'static str, path: String) -> Request {
        Request {
            method: Method::GET,
            route,
            path,
            body: None,
            headers: HeaderMap::new(),
            resend: Resend::Safe,
        }
    }

    pub fn write(
        method: Method,
        route: &'static str,
        path: String,
        body: Option<serde_json::Value>,
        resend: Resend,
    ) -> Request {
        Request {
            method,
            route,
            path,
            body,
            headers: HeaderMap::new(),
            resend,
        }
    }

    /// The rate-limit resource this request spends, if any (`/rate_limit` is free).
    fn resource(&self) -> Option<&'static str> {
        match self.route {
            "GET /rate_limit" => None,
            "POST /graphql" => Some(GRAPHQL),
            _ => Some(CORE),
        }
    }
}

/// A successful (2xx or 304) answer.
#[derive(Debug, Clone)]
pub(super) struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }
}

/// GitHub's error body.
#[derive(Debug, Default, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    errors: Vec<serde_json::Value>,
}

impl GitHub {
    /// Sends `request` with retries, then turns the reply into `T` with `decode`.
    ///
    /// `check` is consulted before re-sending a request that may already have been applied; for
    /// [`Resend::Unsafe`] requests without one, such a request is not re-sent at all.
    pub(super) async fn send<T, D>(
        &self,
        request: &Request,
        check: Option<&AppliedCheck<'_, T>>,
        decode: D,
    ) -> Result<T, GitHubError>
    where
        D: Fn(Reply) -> Result<T, GitHubError>,
    {
        let policy = self.inner.retry;
        let attempts = AtomicU32::new(0);
        let maybe_applied = AtomicBool::new(false);
        let mut waited = Duration::ZERO;
        let backoff = ExponentialBuilder::default()
            .with_min_delay(policy.min_delay)
            .with_max_delay(policy.max_delay)
            .with_max_times(policy.max_retries)
            .with_jitter();
        let attempt = || async {
            let number = attempts.fetch_add(1, Ordering::SeqCst);
            if maybe_applied.load(Ordering::SeqCst)
                && let Some(check) = check
                && let Some(applied) = check.run().await?
            {
                tracing::debug!(
                    route = request.route,
                    "write already applied; not re-sending"
                );
                return Ok(applied);
            }
            let reply = self
                .send_once(request, number > 0)
                .await
                .inspect_err(|error| {
                    if may_have_applied(error) {
                        maybe_applied.store(true, Ordering::SeqCst);
                    }
                })?;
            decode(reply)
        };
        let result = attempt
            .retry(backoff)
            .sleep(tokio::time::sleep)
            .when(|error| should_retry(error, request.resend, check.is_some()))
            .adjust(|error, backoff_delay| {
                let delay = wait_for(error, backoff_delay?);
                if waited + delay > policy.max_wait {
                    return None;
                }
                waited += delay;
                Some(delay)
            })
            .notify(|error, delay| {
                tracing::debug!(route = request.route, ?delay, "retrying after: {error}");
            })
            .await;
        result.map_err(|error| self.redact(error))
    }

    /// One HTTP exchange: send, read the body, record rate limits and counts, classify.
    pub(super) async fn send_once(
        &self,
        request: &Request,
        is_retry: bool,
    ) -> Result<Reply, GitHubError> {
        let route = request.route;
        if let Some(resource) = request.resource()
            && let Some(snapshot) = self.inner.budget.snapshot(resource)
            && snapshot.exhausted_at(Utc::now())
        {
            // GitHub would answer 403 and charge nothing, but a storm of doomed requests is
            // exactly what gets a token flagged: do not send it.
            return Err(GitHubError::RateLimited {
                resource: resource.to_string(),
                remaining: Some(0),
                reset: Some(snapshot.reset),
                retry_after: None,
                secondary: false,
                reserve: None,
            });
        }

        let mut builder = http::Request::builder()
            .method(request.method.clone())
            .uri(request.path.as_str());
        for (name, value) in &request.headers {
            builder = builder.header(name, value);
        }
        let http_request = self
            .inner
            .octocrab
            .build_request(builder, request.body.as_ref())
            .map_err(|error| GitHubError::Unexpected {
                route: route.to_string(),
                message: format!("could not build the request: {error}"),
            })?;

        self.inner.counter.record_request(route, is_retry);
        let response = self
            .inner
            .octocrab
            .execute(http_request)
            .await
            .map_err(|error| transport_error(route, &error))?;
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|error| GitHubError::Transport {
                route: route.to_string(),
                message: format!("reading the response failed: {}", error_chain(&error)),
                sent: true,
            })?
            .to_bytes()
            .to_vec();

        tracing::debug!(
            method = %request.method,
            route,
            status = parts.status.as_u16(),
            retry = is_retry,
            "github request"
        );
        if let Some((resource, snapshot)) = RateSnapshot::from_headers(&parts.headers) {
            self.inner.budget.record(&resource, snapshot);
        }
        if parts.status == StatusCode::NOT_MODIFIED {
            self.inner.counter.record_not_modified();
        }
        if parts.status.is_success() || parts.status == StatusCode::NOT_MODIFIED {
            return Ok(Reply {
                status: parts.status,
                headers: parts.headers,
                body,
            });
        }
        Err(classify(
            route,
            parts.status,
            &parts.headers,
            &body,
            request.resource().unwrap_or(CORE),
        ))
    }

    /// Scrubs the token out of an error's messages.
    pub(super) fn redact(&self, error: GitHubError) -> GitHubError {
        match &self.inner.token {
            Some(token) => error.redact(token.expose()),
            None => error,
        }
    }
}

/// Decodes a JSON body into `T`, naming the route when GitHub's answer does not fit.
pub(super) fn decode_json<T: serde::de::DeserializeOwned>(
    route: &str,
    body: &[u8],
) -> Result<T, GitHubError> {
    serde_json::from_slice(body).map_err(|error| GitHubError::Unexpected {
        route: route.to_string(),
        message: format!("response does not match what crew expects: {error}"),
    })
}

/// True when the failed attempt may nevertheless have changed something on GitHub.
fn may_have_applied(error: &GitHubError) -> bool {
    matches!(
        error,
        GitHubError::Transport { sent: true, .. } | GitHubError::Server { .. }
    )
}

fn should_retry(error: &GitHubError, resend: Resend, has_check: bool) -> bool {
    match error {
        // Refusals by crew's own reserve are a decision, not a transient failure.
        GitHubError::RateLimited {
            reserve: Some(_), ..
        } => false,
        // GitHub did not process a rate-limited request, so even a write may be re-sent.
        GitHubError::RateLimited { .. } => true,
        GitHubError::Transport { sent: false, .. } => true,
        GitHubError::Transport { sent: true, .. } | GitHubError::Server { .. } => {
            resend == Resend::Safe || has_check
        }
        _ => false,
    }
}

/// How long to sleep before the next attempt after `error`.
fn wait_for(error: &GitHubError, backoff_delay: Duration) -> Duration {
    match error {
        GitHubError::RateLimited {
            retry_after: Some(wait),
            ..
        } => *wait,
        GitHubError::RateLimited {
            reset: Some(reset), ..
        } => {
            // One second past the reset: GitHub's clock and ours are not the same clock.
            let until = (*reset - Utc::now()).to_std().unwrap_or(Duration::ZERO);
            until + Duration::from_secs(1)
        }
        GitHubError::RateLimited { .. } => SECONDARY_LIMIT_DEFAULT_WAIT,
        _ => backoff_delay,
    }
}

/// Maps a non-success status to the error it means.
pub(super) fn classify(
    route: &str,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    resource: &str,
) -> GitHubError {
    let parsed: ErrorBody = serde_json::from_slice(body).unwrap_or_default();
    let message = parsed.message.clone().unwrap_or_else(|| {
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        if text.is_empty() {
            status
                .canonical_reason()
                .unwrap_or("no message")
                .to_string()
        } else {
            text.chars().take(200).collect()
        }
    });
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value: &HeaderValue| value.to_str().ok())
    };
    let retry_after = header("retry-after")
        .and_then(|value| value.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let snapshot = RateSnapshot::from_headers(headers);
    let route = route.to_string();

    let is_rate_limit_status =
        status == StatusCode::FORBIDDEN || status == StatusCode::TOO_MANY_REQUESTS;
    if is_rate_limit_status {
        let secondary = message
            .to_ascii_lowercase()
            .contains("secondary rate limit");
        let exhausted = snapshot.as_ref().is_some_and(|(_, s)| s.remaining == 0);
        if secondary
            || exhausted
            || retry_after.is_some()
            || status == StatusCode::TOO_MANY_REQUESTS
        {
            let (resource, remaining, reset) = match &snapshot {
                Some((name, s)) => (name.clone(), Some(s.remaining), Some(s.reset)),
                None => (resource.to_string(), None, None),
            };
            let is_secondary = !exhausted || secondary;
            return GitHubError::RateLimited {
                resource,
                remaining,
                // The reset matters only when the hourly quota is what ran out.
                reset: if is_secondary { None } else { reset },
                retry_after,
                secondary: is_secondary,
                reserve: None,
            };
        }
    }
    match status {
        StatusCode::UNAUTHORIZED => GitHubError::Unauthorized { message },
        StatusCode::FORBIDDEN => GitHubError::Forbidden { route, message },
        StatusCode::NOT_FOUND => GitHubError::NotFound { route, message },
        StatusCode::CONFLICT => GitHubError::Conflict { route, message },
        StatusCode::UNPROCESSABLE_ENTITY => GitHubError::Validation {
            route,
            message,
            errors: parsed.errors.into_iter().map(validation_detail).collect(),
        },
        status if status.is_server_error() => GitHubError::Server {
            route,
            status: status.as_u16(),
            message,
        },
        status => GitHubError::Unexpected {
            route,
            message: format!("HTTP {}: {message}", status.as_u16()),
        },
    }
}

/// GitHub's `errors` entries are usually objects, sometimes bare strings.
fn validation_detail(value: serde_json::Value) -> ValidationDetail {
    match value {
        serde_json::Value::String(message) => ValidationDetail {
            resource: None,
            field: None,
            code: None,
            message: Some(message),
        },
        other => serde_json::from_value(other.clone()).unwrap_or(ValidationDetail {
            resource: None,
            field: None,
            code: None,
            message: Some(other.to_string()),
        }),
    }
}

/// Classifies an error from the HTTP stack. A connect error (refused, DNS, connect timeout, TLS
/// handshake) means the request never left, which makes even a write safe to send again.
fn transport_error(route: &str, error: &octocrab::Error) -> GitHubError {
    let sent = !is_connect_error(error);
    GitHubError::Transport {
        route: route.to_string(),
        message: error_chain(error),
        sent,
    }
}

fn is_connect_error(error: &octocrab::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = source {
        if let Some(client_error) = current.downcast_ref::<hyper_util::client::legacy::Error>() {
            return client_error.is_connect();
        }
        source = current.source();
    }
    false
}

/// `error: cause: cause`, without the backtraces octocrab's `Display` appends.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut source = error.source();
    // octocrab's own Display is verbose ("Service Error: … Found at <backtrace>"); its sources
    // carry the useful text.
    if source.is_none() {
        parts.push(first_line(&error.to_string()));
    }
    while let Some(current) = source {
        let text = first_line(&current.to_string());
        if !text.is_empty() && parts.last() != Some(&text) {
            parts.push(text);
        }
        source = current.source();
    }
    parts.join(": ")
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().trim().to_string()
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
    fn secondary_limit_is_rate_limited_with_retry_after() {
        let error = classify(
            "GET /user",
            StatusCode::FORBIDDEN,
            &headers(&[
                ("retry-after", "3"),
                ("x-ratelimit-remaining", "10"),
                ("x-ratelimit-limit", "5000"),
                ("x-ratelimit-reset", "1700000000"),
            ]),
            br#"{"message":"You have exceeded a secondary rate limit."}"#,
            CORE,
        );
        assert!(
            matches!(error, GitHubError::RateLimited { secondary: true, retry_after: Some(wait), reset: None, .. } if wait == Duration::from_secs(3)),
            "{error:?}"
        );
        assert_eq!(wait_for(&error, Duration::ZERO), Duration::from_secs(3));
        assert!(should_retry(&error, Resend::Unsafe, false));
    }

    #[test]
    fn primary_limit_carries_reset() {
        let error = classify(
            "GET /user",
            StatusCode::FORBIDDEN,
            &headers(&[
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-limit", "5000"),
                ("x-ratelimit-reset", "1700000000"),
            ]),
            br#"{"message":"API rate limit exceeded for user ID 1."}"#,
            CORE,
        );
        assert!(
            matches!(
                &error,
                GitHubError::RateLimited {
                    secondary: false,
                    remaining: Some(0),
                    reset: Some(_),
                    ..
                }
            ),
            "{error:?}"
        );
    }

    #[test]
    fn plain_403_is_forbidden_and_not_retried() {
        let error = classify(
            "GET /x",
            StatusCode::FORBIDDEN,
            &headers(&[
                ("x-ratelimit-remaining", "4000"),
                ("x-ratelimit-limit", "5000"),
                ("x-ratelimit-reset", "1700000000"),
            ]),
            br#"{"message":"Resource not accessible by integration"}"#,
            CORE,
        );
        assert!(matches!(error, GitHubError::Forbidden { .. }), "{error:?}");
        assert!(!should_retry(&error, Resend::Safe, true));
    }

    #[test]
    fn validation_errors_accept_objects_and_strings() {
        let error = classify(
            "POST /repos/{owner}/{repo}/git/refs",
            StatusCode::UNPROCESSABLE_ENTITY,
            &HeaderMap::new(),
            br#"{"message":"Reference already exists","errors":["x",{"resource":"Ref","code":"custom"}]}"#,
            CORE,
        );
        match error {
            GitHubError::Validation {
                message, errors, ..
            } => {
                assert_eq!(message, "Reference already exists");
                assert_eq!(errors.len(), 2);
                assert_eq!(errors[0].message.as_deref(), Some("x"));
                assert_eq!(errors[1].code.as_deref(), Some("custom"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unsafe_writes_are_retried_only_when_certainly_not_applied() {
        let sent = GitHubError::Transport {
            route: String::new(),
            message: String::new(),
            sent: true,
        };
        let not_sent = GitHubError::Transport {
            route: String::new(),
            message: String::new(),
            sent: false,
        };
        let server = GitHubError::Server {
            route: String::new(),
            status: 502,
            message: String::new(),
        };
        assert!(!should_retry(&sent, Resend::Unsafe, false));
        assert!(!should_retry(&server, Resend::Unsafe, false));
        assert!(should_retry(&not_sent, Resend::Unsafe, false));
        assert!(should_retry(&sent, Resend::Unsafe, true));
        assert!(should_retry(&server, Resend::Safe, false));
        assert!(
            may_have_applied(&server) && may_have_applied(&sent) && !may_have_applied(&not_sent)
        );
    }

    #[test]
    fn reserve_refusals_are_final() {
        let error = GitHubError::RateLimited {
            resource: CORE.into(),
            remaining: Some(1),
            reset: None,
            retry_after: None,
            secondary: false,
            reserve: Some(100),
        };
        assert!(!should_retry(&error, Resend::Safe, false));
    }
}
