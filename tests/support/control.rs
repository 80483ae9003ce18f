//! The emulator's `/_emulator/` endpoints over HTTP, as any client reaches them: shared by the
//! integration tests (`tests/support`) and the `api_cost` bench (included by `#[path]`), so both
//! drive the emulator through one contract.

use serde_json::{Value, json};

pub type ControlResult<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// The emulator's `/_emulator/` endpoints.
pub struct Control {
    octocrab: octocrab::Octocrab,
}

impl Control {
    pub fn new(emulator: &github_emulator::EmulatorHandle) -> ControlResult<Control> {
        Control::at(emulator.base_url())
    }

    /// The control endpoints of the emulator at `base_url`.
    pub fn at(base_url: &str) -> ControlResult<Control> {
        let octocrab = octocrab::Octocrab::builder().base_uri(base_url)?.build()?;
        Ok(Control { octocrab })
    }

    pub async fn call(
        &self,
        method: http::Method,
        path: &str,
        body: Option<Value>,
    ) -> ControlResult<Value> {
        let mut builder = http::Request::builder().method(method.clone()).uri(path);
        if body.is_some() {
            builder = builder.header(http::header::CONTENT_TYPE, "application/json");
        }
        let request = self.octocrab.build_request(builder, body.as_ref())?;
        let response = self.octocrab.execute(request).await?;
        let status = response.status();
        let text = self.octocrab.body_to_string(response).await?;
        if !status.is_success() {
            return Err(format!("{method} {path}: {status}: {text}").into());
        }
        if text.trim().is_empty() {
            Ok(Value::Null)
        } else {
            Ok(serde_json::from_str(&text)?)
        }
    }

    /// `GET` any `/_emulator/` path.
    pub async fn get(&self, path: &str) -> ControlResult<Value> {
        self.call(http::Method::GET, path, None).await
    }

    /// `GET /_emulator/stats`.
    pub async fn stats(&self) -> ControlResult<Value> {
        self.call(http::Method::GET, "/_emulator/stats", None).await
    }

    /// Requests the emulator saw on one route (`"GET /user"`).
    pub async fn requests(&self, route: &str) -> ControlResult<u64> {
        let stats = self.stats().await?;
        Ok(stats["by_route"][route]["requests"].as_u64().unwrap_or(0))
    }

    /// Rate points spent on one route.
    pub async fn rate_points(&self, route: &str) -> ControlResult<u64> {
        let stats = self.stats().await?;
        Ok(stats["by_route"][route]["rate_points"]
            .as_u64()
            .unwrap_or(0))
    }

    pub async fn reset_stats(&self) -> ControlResult {
        self.call(http::Method::POST, "/_emulator/stats/reset", None)
            .await
            .map(drop)
    }

    /// `POST /_emulator/faults` with these rules.
    pub async fn faults(&self, rules: Value) -> ControlResult {
        self.call(
            http::Method::POST,
            "/_emulator/faults",
            Some(json!({"latency_ms": 0, "rules": rules})),
        )
        .await
        .map(drop)
    }

    /// Statistics, faults and rate windows cleared (`POST /_emulator/reset`); then `latency_ms`
    /// added to every API request.
    pub async fn reset(&self, latency_ms: u64) -> ControlResult {
        self.call(http::Method::POST, "/_emulator/reset", None)
            .await?;
        self.call(
            http::Method::POST,
            "/_emulator/faults",
            Some(json!({"latency_ms": latency_ms, "rules": []})),
        )
        .await
        .map(drop)
    }

    pub async fn clear_faults(&self) -> ControlResult {
        self.call(http::Method::DELETE, "/_emulator/faults", None)
            .await
            .map(drop)
    }

    /// `POST /_emulator/rate_limit`: leave `login` with `remaining` points on `resource`.
    pub async fn rate_limit(
        &self,
        login: &str,
        resource: &str,
        remaining: u64,
    ) -> ControlResult<Value> {
        self.call(
            http::Method::POST,
            "/_emulator/rate_limit",
            Some(json!({"login": login, "resource": resource, "remaining": remaining})),
        )
        .await
    }
}
