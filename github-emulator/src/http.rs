//! What every GitHub response has in common, in one middleware and a few helpers:
//! authentication, primary and secondary rate limits, fault injection, strong ETags with
//! `If-None-Match`, `x-ratelimit-*` headers, accounting, and GitHub's error bodies and pagination.
//!
//! Handlers only do their route's work; they return [`ApiError`] for GitHub's error statuses and
//! [`paginate`] for lists.

use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, MatchedPath, Request, State as AxumState};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::faults::FaultKind;
use crate::state::State;

/// A recorded response, for contract checks of everything the emulator answered.
#[derive(Debug, Clone)]
pub struct RecordedResponse {
    pub method: String,
    /// The OpenAPI path template, e.g. `/repos/{owner}/{repo}/issues`.
    pub route: String,
    pub status: u16,
    /// The JSON body, `None` when the body was empty.
    pub body: Option<Value>,
}

/// Shared by every handler.
pub struct Shared {
    state: Mutex<State>,
    /// `http://127.0.0.1:PORT`, known once the listener is bound; used in URLs and `Link`.
    pub base_url: String,
    /// When set, every API response is kept for contract validation.
    pub recorded: Option<Mutex<Vec<RecordedResponse>>>,
}

pub type AppState = Arc<Shared>;

impl Shared {
    pub fn new(state: State, base_url: String, record: bool) -> Shared {
        Shared {
            state: Mutex::new(state),
            base_url,
            recorded: record.then(|| Mutex::new(Vec::new())),
        }
    }

    /// Lock the state. A handler that panicked cannot leave it half-written in a way later
    /// requests would misread more than GitHub's own eventual consistency, so poison is ignored.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Run a change and persist it (when `--state-dir` is set).
    pub fn write<T>(
        &self,
        change: impl FnOnce(&mut State) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let mut state = self.lock();
        let result = change(&mut state)?;
        state
            .persist()
            .map_err(|e| ApiError::internal(format!("cannot persist emulator state: {e}")))?;
        Ok(result)
    }
}

/// Who is calling, as the auth middleware found out.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    /// `None` for an anonymous request.
    pub login: Option<String>,
}

impl Caller {
    /// The login, or GitHub's 401 for routes that need authentication.
    pub fn require(&self) -> Result<&str, ApiError> {
        self.login.as_deref().ok_or_else(|| {
            ApiError::new(StatusCode::UNAUTHORIZED, "Requires authentication")
                .docs("https://docs.github.com/rest/overview/authenticating-to-the-rest-api")
        })
    }
}

/// Set on a response by a handler serving one of GitHub's `POST` aliases of a `PATCH` operation
/// (GitHub takes `POST` where it documents `PATCH`; octocrab's `update_comment` relies on it), so
/// the recorded response names the operation GitHub's description documents.
#[derive(Debug, Clone)]
pub struct RecordAs(pub Method);

/// Rate points a handler spent, when it is not the REST default of one (GraphQL computes cost).
#[derive(Debug, Clone, Copy)]
pub struct RatePoints(pub u64);

/// A GitHub error response: `{"message", "documentation_url", "status", "errors"?}`.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub errors: Vec<Value>,
    pub documentation_url: String,
    pub headers: Vec<(header::HeaderName, String)>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            errors: Vec::new(),
            documentation_url: "https://docs.github.com/rest".to_string(),
            headers: Vec::new(),
        }
    }

    pub fn docs(mut self, url: &str) -> ApiError {
        self.documentation_url = url.to_string();
        self
    }

    pub fn not_found() -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "Not Found")
    }

    /// 422 "Validation Failed" with one error object, as GitHub reports a bad field.
    pub fn validation(resource: &str, field: &str, code: &str) -> ApiError {
        let mut error = ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "Validation Failed");
        error
            .errors
            .push(json!({"resource": resource, "field": field, "code": code}));
        error
    }

    /// 422 with a custom message, as GitHub answers e.g. "Reference already exists".
    pub fn unprocessable(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, message)
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({
            "message": self.message,
            "documentation_url": self.documentation_url,
            "status": self.status.as_u16().to_string(),
        });
        if !self.errors.is_empty() {
            body["errors"] = Value::Array(self.errors);
        }
        let mut response = (self.status, axum::Json(body)).into_response();
        for (name, value) in self.headers {
            if let Ok(value) = HeaderValue::from_str(&value) {
                response.headers_mut().insert(name, value);
            }
        }
        response
    }
}

impl From<git2::Error> for ApiError {
    fn from(error: git2::Error) -> ApiError {
        ApiError::internal(format!("git: {}", error.message()))
    }
}

/// A JSON body parsed the way GitHub reports failures: 400 "Problems parsing JSON" for bad JSON,
/// 422 for a body of the wrong shape.
pub struct GhJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for GhJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "Problems parsing JSON"))?;
        let bytes = if bytes.is_empty() {
            Bytes::from_static(b"{}")
        } else {
            bytes
        };
        let value: Value = serde_json::from_slice(&bytes)
            .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "Problems parsing JSON"))?;
        serde_json::from_value(value)
            .map(GhJson)
            .map_err(|e| ApiError::unprocessable(format!("Invalid request.\n\n{e}")))
    }
}

/// Query parameters, percent-decoded, in order.
pub fn query_pairs(uri: &Uri) -> Vec<(String, String)> {
    let Some(query) = uri.query() else {
        return Vec::new();
    };
    query
        .split('&')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (key, value) = part.split_once('=').unwrap_or((part, ""));
            (decode(key), decode(value))
        })
        .collect()
}

fn decode(text: &str) -> String {
    percent_encoding::percent_decode_str(&text.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

/// The value of one query parameter.
pub fn query_param(uri: &Uri, name: &str) -> Option<String> {
    query_pairs(uri)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

/// Parse `since` as GitHub does: ISO 8601 / RFC 3339, fractional seconds accepted.
pub fn parse_since(uri: &Uri) -> Result<Option<DateTime<Utc>>, ApiError> {
    match query_param(uri, "since") {
        None => Ok(None),
        Some(text) => DateTime::parse_from_rfc3339(&text)
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|_| ApiError::validation("Issue", "since", "invalid")),
    }
}

/// Characters escaped in query values of `Link` URLs: octocrab splits `Link` on commas, so a comma
/// inside a URL must be percent-encoded.
const QUERY_VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b':');

/// `per_page` (default 30, at most 100) and `page` (from 1) of a list request.
fn page_params(pairs: &[(String, String)]) -> (usize, usize) {
    let per_page = pairs
        .iter()
        .find(|(k, _)| k == "per_page")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .map(|n| n.clamp(1, 100))
        .unwrap_or(30);
    let page = pairs
        .iter()
        .find(|(k, _)| k == "page")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .filter(|p| *p >= 1)
        .unwrap_or(1);
    (per_page, page)
}

/// Which items of a list of `total` the request's page holds. Lists whose items are costly to
/// render take this slice first and render only it (a full walk of a long list would otherwise
/// render and hash the whole list for every page: quadratic in its length).
pub fn page_range(uri: &Uri, total: usize) -> std::ops::Range<usize> {
    let (per_page, page) = page_params(&query_pairs(uri));
    let start = (page - 1).saturating_mul(per_page).min(total);
    start..(start + per_page).min(total)
}

/// Answer one page of `items` with GitHub's `Link` header (absolute URLs on the emulator's own
/// origin; `per_page` default 30, max 100; `page` from 1).
pub fn paginate(shared: &Shared, uri: &Uri, items: Vec<Value>) -> Response {
    let total = items.len();
    let range = page_range(uri, total);
    paged(shared, uri, total, items[range].to_vec())
}

/// Answer `page_items`, the page [`page_range`] chose out of `total` items, with `Link`.
pub fn paged(shared: &Shared, uri: &Uri, total: usize, page_items: Vec<Value>) -> Response {
    let pairs = query_pairs(uri);
    let (per_page, page) = page_params(&pairs);
    let last = total.div_ceil(per_page).max(1);

    let url_for = |target: usize| {
        let mut query: Vec<String> = pairs
            .iter()
            .filter(|(k, _)| k != "page")
            .map(|(k, v)| {
                format!(
                    "{}={}",
                    percent_encoding::utf8_percent_encode(k, QUERY_VALUE),
                    percent_encoding::utf8_percent_encode(v, QUERY_VALUE)
                )
            })
            .collect();
        query.push(format!("page={target}"));
        format!("<{}{}?{}>", shared.base_url, uri.path(), query.join("&"))
    };
    let mut links = Vec::new();
    if page < last {
        links.push(format!("{}; rel=\"next\"", url_for(page + 1)));
        links.push(format!("{}; rel=\"last\"", url_for(last)));
    }
    if page > 1 {
        links.push(format!("{}; rel=\"first\"", url_for(1)));
        links.push(format!("{}; rel=\"prev\"", url_for((page - 1).min(last))));
    }
    let mut response = axum::Json(Value::Array(page_items)).into_response();
    if !links.is_empty()
        && let Ok(value) = HeaderValue::from_str(&links.join(", "))
    {
        response.headers_mut().insert(header::LINK, value);
    }
    response
}

fn token_of(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    match scheme.to_ascii_lowercase().as_str() {
        "token" | "bearer" => Some(token.trim().to_string()),
        _ => None,
    }
}

const PRIMARY_LIMIT_DOCS: &str =
    "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api";
const SECONDARY_LIMIT_DOCS: &str = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits";

/// The middleware every API route runs through.
pub async fn github_layer(
    AxumState(shared): AxumState<AppState>,
    matched: Option<MatchedPath>,
    mut request: Request,
    next: Next,
) -> Response {
    let method = request.method().clone();
    let template = matched
        .as_ref()
        .map(|m| m.as_str().replace("{*", "{"))
        .unwrap_or_else(|| request.uri().path().to_string());
    let route = format!("{method} {template}");
    let graphql = template == "/graphql";
    // GitHub: "Accessing this endpoint does not count against your REST API rate limit", and it
    // answers even when the limit is spent (that is how a client learns when it resets).
    let free = route == "GET /rate_limit";
    let resource = if graphql { "graphql" } else { "core" };

    // 1. Latency, outside the lock.
    let latency = shared.lock().faults.latency_ms;
    if latency > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(latency)).await;
    }

    // 2. Authentication.
    let token = token_of(request.headers());
    let known = token
        .as_ref()
        .map(|token| shared.lock().data.tokens.get(token).cloned());
    let login = match known {
        None => None,
        Some(found) => match found {
            Some(login) => Some(login),
            None => {
                shared.lock().stats.record(&route, 0, false);
                // GitHub answers a bad token as it would an anonymous caller, headers included.
                let error = ApiError::new(StatusCode::UNAUTHORIZED, "Bad credentials")
                    .docs("https://docs.github.com/rest");
                return finish(&shared, None, resource, error.into_response());
            }
        },
    };
    if graphql && login.is_none() {
        shared.lock().stats.record(&route, 0, false);
        let error = ApiError::new(
            StatusCode::UNAUTHORIZED,
            "This endpoint requires you to be authenticated.",
        )
        .docs("https://docs.github.com/graphql/guides/forming-calls-with-graphql#authenticating-with-graphql");
        return finish(&shared, None, resource, error.into_response());
    }

    // 3. Injected faults, then the primary limit (REST costs one point; GraphQL prices itself).
    // A rule may name one GraphQL operation: then the body is read first to see which it is.
    let mut operations = Vec::new();
    if graphql && shared.lock().faults.targets_operations() {
        let (parts, body) = request.into_parts();
        let bytes = axum::body::to_bytes(body, usize::MAX)
            .await
            .unwrap_or_default();
        operations = crate::faults::graphql_operations(&bytes);
        request = Request::from_parts(parts, Body::from(bytes));
    }
    let (fault, limited) = {
        let mut state = shared.lock();
        let fault = state.faults.take_for(&route, &operations);
        let limited = if free
            || graphql
            || matches!(
                fault.as_ref().map(|f| f.fault),
                Some(FaultKind::Error | FaultKind::SecondaryLimit)
            ) {
            false
        } else {
            let window = state.rate_window(login.as_deref(), resource);
            if window.used >= window.limit {
                true
            } else {
                window.used += 1;
                false
            }
        };
        (fault, limited)
    };
    let mut drop_after = false;
    let mut stall = None;
    if let Some(rule) = &fault {
        match rule.fault {
            FaultKind::Error => {
                let status = StatusCode::from_u16(rule.status.unwrap_or(502))
                    .unwrap_or(StatusCode::BAD_GATEWAY);
                shared.lock().stats.record(&route, 0, false);
                let response = ApiError::new(status, "Server Error (injected by github-emulator)")
                    .into_response();
                return finish(&shared, login.as_deref(), resource, response);
            }
            FaultKind::SecondaryLimit => {
                let status = StatusCode::from_u16(rule.status.unwrap_or(403))
                    .unwrap_or(StatusCode::FORBIDDEN);
                shared.lock().stats.record(&route, 0, false);
                let mut error = ApiError::new(
                    status,
                    "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID 0000:0000:0000000:0000000:00000000.",
                )
                .docs(SECONDARY_LIMIT_DOCS);
                error.headers.push((
                    header::RETRY_AFTER,
                    rule.retry_after.unwrap_or(60).to_string(),
                ));
                return finish(&shared, login.as_deref(), resource, error.into_response());
            }
            FaultKind::DropAfterWrite => drop_after = true,
            FaultKind::Stall => {
                stall = Some(std::time::Duration::from_millis(
                    rule.stall_ms.unwrap_or(30_000),
                ));
            }
        }
    }
    if limited {
        shared.lock().stats.record(&route, 0, false);
        let user_id = login
            .as_deref()
            .and_then(|l| shared.lock().user(l).map(|u| u.id))
            .unwrap_or(0);
        let message = match login {
            Some(_) => format!("API rate limit exceeded for user ID {user_id}."),
            None => "API rate limit exceeded for 127.0.0.1. (But here's the good news: Authenticated requests get a higher rate limit. Check out the documentation for more details.)".to_string(),
        };
        let error = ApiError::new(StatusCode::FORBIDDEN, message).docs(PRIMARY_LIMIT_DOCS);
        return finish(&shared, login.as_deref(), resource, error.into_response());
    }

    // 4. The route itself.
    request.extensions_mut().insert(Caller {
        login: login.clone(),
    });
    let if_none_match = request
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let conditional_method = method == Method::GET || method == Method::HEAD;
    let response = next.run(request).await;
    let (mut parts, body) = response.into_parts();
    let bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(bytes) => bytes,
        Err(_) => Bytes::new(),
    };
    let mut points = if graphql {
        parts
            .extensions
            .get::<RatePoints>()
            .map(|p| p.0)
            .unwrap_or(0)
    } else if free {
        0
    } else {
        1
    };

    // 5. Strong ETags; a 304 to an authenticated request costs nothing.
    let mut not_modified = false;
    let mut body_bytes = bytes;
    if conditional_method && parts.status == StatusCode::OK {
        let etag = format!("\"{:x}\"", Sha256::digest(&body_bytes));
        if let Ok(value) = HeaderValue::from_str(&etag) {
            parts.headers.insert(header::ETAG, value);
        }
        parts.headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("private, max-age=60, s-maxage=60"),
        );
        parts.headers.insert(
            header::VARY,
            HeaderValue::from_static("Accept, Authorization, Cookie, X-GitHub-OTP"),
        );
        if let Some(candidates) = &if_none_match
            && etag_matches(candidates, &etag)
        {
            not_modified = true;
            parts.status = StatusCode::NOT_MODIFIED;
            parts.headers.remove(header::CONTENT_TYPE);
            parts.headers.remove(header::CONTENT_LENGTH);
            body_bytes = Bytes::new();
            if login.is_some() && !graphql && !free {
                let mut state = shared.lock();
                let window = state.rate_window(login.as_deref(), resource);
                window.used = window.used.saturating_sub(1);
                points = 0;
            }
        }
    }
    if method == Method::HEAD {
        body_bytes = Bytes::new();
    }
    shared.lock().stats.record(&route, points, not_modified);

    if let Some(recorded) = &shared.recorded {
        let body = serde_json::from_slice(&body_bytes).ok();
        recorded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(RecordedResponse {
                method: parts
                    .extensions
                    .get::<RecordAs>()
                    .map_or_else(|| method.to_string(), |alias| alias.0.to_string()),
                route: template,
                status: parts.status.as_u16(),
                body,
            });
    }
    if drop_after {
        // The write happened; the client never hears of it. Unwinding the connection task makes
        // hyper close the socket without a response (resume_unwind skips the panic hook, so
        // nothing is printed).
        std::panic::resume_unwind(Box::new("github-emulator: response dropped after write"));
    }
    if let Some(stall) = stall {
        // The write happened; the answer comes too late for any client still waiting.
        tokio::time::sleep(stall).await;
    }
    let response = Response::from_parts(parts, Body::from(body_bytes));
    finish(&shared, login.as_deref(), resource, response)
}

fn etag_matches(candidates: &str, etag: &str) -> bool {
    candidates.split(',').map(str::trim).any(|candidate| {
        candidate == "*" || candidate == etag || candidate.strip_prefix("W/") == Some(etag)
    })
}

/// Add `x-ratelimit-*` and GitHub's fixed headers.
fn finish(
    shared: &Shared,
    login: Option<&str>,
    resource: &str,
    mut response: Response,
) -> Response {
    let (limit, used, reset) = {
        let mut state = shared.lock();
        let window = state.rate_window(login, resource);
        (window.limit, window.used, window.reset.timestamp())
    };
    let headers = response.headers_mut();
    let mut set = |name: &'static str, value: String| {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    };
    set("x-ratelimit-limit", limit.to_string());
    set(
        "x-ratelimit-remaining",
        limit.saturating_sub(used).to_string(),
    );
    set("x-ratelimit-used", used.to_string());
    set("x-ratelimit-reset", reset.to_string());
    set("x-ratelimit-resource", resource.to_string());
    set("x-github-api-version-selected", "2022-11-28".to_string());
    set("x-github-media-type", "github.v3; format=json".to_string());
    response
}

/// Every request that matched no route: loud, naming what was asked for.
pub async fn unknown_route(request: Request) -> Response {
    let message = format!(
        "Not Found: github-emulator has no route for {} {}",
        request.method(),
        request.uri().path()
    );
    ApiError::new(StatusCode::NOT_FOUND, message).into_response()
}
