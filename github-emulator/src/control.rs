//! `/_emulator/`: what a test or a benchmark needs to steer and observe the emulator.
//! These routes are not GitHub's: they are not rate limited, counted or faulted.
//!
//! - `GET /_emulator/stats`, `POST /_emulator/stats/reset`: request and rate-point accounting.
//! - `GET|POST|DELETE /_emulator/faults`: latency, per-route errors, secondary limits, dropped
//!   responses (see [`crate::faults::Faults`] for the JSON).
//! - `POST /_emulator/rate_limit` `{"login", "resource", "remaining"}`: set what a user has left.
//! - `POST /_emulator/clock` `{"advance_seconds"}`: move the emulator's clock forward.
//! - `GET /_emulator/dispatches`: recorded `workflow_dispatch` calls.
//! - `POST /_emulator/actions/runner` ([`RunnerConfig`] JSON): run every later dispatch as a local
//!   process too; `GET` answers `{"runner": config | null, "runs": [...]}`; `DELETE` stops running
//!   new dispatches (the list of runs stays). See [`crate::rest::actions`].
//! - `POST /_emulator/reset`: zero statistics, clear faults and rate windows.

use axum::Router;
use axum::extract::State as AxumState;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

use crate::faults::Faults;
use crate::http::{ApiError, AppState, GhJson};
use crate::rest::actions::RunnerConfig;
use crate::stats::Stats;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/_emulator/stats", get(stats))
        .route("/_emulator/stats/reset", post(reset_stats))
        .route(
            "/_emulator/faults",
            get(get_faults).post(set_faults).delete(clear_faults),
        )
        .route("/_emulator/rate_limit", post(set_rate_limit))
        .route("/_emulator/clock", post(advance_clock))
        .route("/_emulator/dispatches", get(dispatches))
        .route("/_emulator/ref_writes", get(ref_writes))
        .route(
            "/_emulator/actions/runner",
            get(get_runner).post(set_runner).delete(clear_runner),
        )
        .route("/_emulator/reset", post(reset))
}

async fn stats(AxumState(shared): AxumState<AppState>) -> Response {
    axum::Json(shared.lock().stats.clone()).into_response()
}

async fn reset_stats(AxumState(shared): AxumState<AppState>) -> StatusCode {
    shared.lock().stats = Stats::default();
    StatusCode::NO_CONTENT
}

async fn get_faults(AxumState(shared): AxumState<AppState>) -> Response {
    axum::Json(shared.lock().faults.clone()).into_response()
}

async fn set_faults(
    AxumState(shared): AxumState<AppState>,
    GhJson(faults): GhJson<Faults>,
) -> Result<StatusCode, ApiError> {
    for rule in &faults.rules {
        if let Some(rate) = rule.rate
            && !(0.0..=1.0).contains(&rate)
        {
            return Err(ApiError::unprocessable(format!(
                "fault rule for {}: rate {rate} is not within 0..=1",
                rule.route
            )));
        }
    }
    shared.lock().faults = faults;
    Ok(StatusCode::NO_CONTENT)
}

async fn clear_faults(AxumState(shared): AxumState<AppState>) -> StatusCode {
    shared.lock().faults = Faults::default();
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetRateLimit {
    login: String,
    #[serde(default = "core")]
    resource: String,
    remaining: u64,
    /// Seconds until the window resets (default: keep the current reset).
    #[serde(default)]
    reset_in: Option<i64>,
}

fn core() -> String {
    "core".to_string()
}

async fn set_rate_limit(
    AxumState(shared): AxumState<AppState>,
    GhJson(request): GhJson<SetRateLimit>,
) -> Result<Response, ApiError> {
    let mut state = shared.lock();
    if state.user(&request.login).is_none() {
        return Err(ApiError::unprocessable(format!(
            "unknown user {}",
            request.login
        )));
    }
    let now = state.now();
    let window = state.rate_window(Some(&request.login), &request.resource);
    window.used = window.limit.saturating_sub(request.remaining);
    if let Some(seconds) = request.reset_in {
        window.reset = now + chrono::Duration::seconds(seconds);
    }
    let body =
        json!({"limit": window.limit, "used": window.used, "reset": window.reset.timestamp()});
    Ok(axum::Json(body).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdvanceClock {
    advance_seconds: i64,
}

async fn advance_clock(
    AxumState(shared): AxumState<AppState>,
    GhJson(request): GhJson<AdvanceClock>,
) -> Result<Response, ApiError> {
    let now = shared.write(|state| {
        state.data.clock_offset_seconds += request.advance_seconds;
        Ok(state.now())
    })?;
    Ok(axum::Json(json!({"now": crate::render::time(now)})).into_response())
}

/// Every ref write applied through the API, in order.
async fn ref_writes(AxumState(shared): AxumState<AppState>) -> Response {
    axum::Json(shared.lock().ref_writes.clone()).into_response()
}

async fn dispatches(AxumState(shared): AxumState<AppState>) -> Response {
    axum::Json(shared.lock().data.dispatches.clone()).into_response()
}

async fn get_runner(AxumState(shared): AxumState<AppState>) -> Response {
    let state = shared.lock();
    axum::Json(json!({"runner": state.runner.config, "runs": state.runner.runs})).into_response()
}

async fn set_runner(
    AxumState(shared): AxumState<AppState>,
    GhJson(config): GhJson<RunnerConfig>,
) -> Result<StatusCode, ApiError> {
    if config
        .command
        .first()
        .is_none_or(|program| program.is_empty())
    {
        return Err(ApiError::unprocessable(
            "runner: `command` needs at least a program",
        ));
    }
    shared.lock().runner.config = Some(config);
    Ok(StatusCode::NO_CONTENT)
}

async fn clear_runner(AxumState(shared): AxumState<AppState>) -> StatusCode {
    shared.lock().runner.config = None;
    StatusCode::NO_CONTENT
}

async fn reset(AxumState(shared): AxumState<AppState>) -> StatusCode {
    let mut state = shared.lock();
    state.stats = Stats::default();
    state.faults = Faults::default();
    state.rate.clear();
    StatusCode::NO_CONTENT
}
