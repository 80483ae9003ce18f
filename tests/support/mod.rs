//! Shared helpers for integration tests: an emulator per test, its control endpoints over HTTP,
//! and a client configured the way crew configures it (but with short backoffs).
//!
//! The control endpoints are reached over HTTP rather than through the emulator's Rust API so
//! the tests exercise the same contract the bench and the CLI tests use.

#![allow(dead_code)] // each test binary uses a different subset

pub mod sandbox;

use std::time::Duration;

use crew::cache::Cache;
use crew::github::{GitHub, GitHubConfig, RetryPolicy, Secret};
use github_emulator::{Emulator, EmulatorHandle, World};
use serde_json::{Value, json};

pub type TestResult<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Tokens of the default world.
pub const MAINTAINER: &str = "emu-maintainer";
pub const BOT: &str = "emu-bot";
pub const OUTSIDER: &str = "emu-outsider";

/// A test's emulator. Every REST response it gives is recorded, and when the test is over
/// (the guard drops) they are all validated against GitHub's published description, so crew's
/// own test traffic checks the emulator's fidelity too.
pub struct TestEmulator(EmulatorHandle);

impl std::ops::Deref for TestEmulator {
    type Target = EmulatorHandle;
    fn deref(&self) -> &EmulatorHandle {
        &self.0
    }
}

impl Drop for TestEmulator {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        if let Some((checked, violations)) = self.0.contract_violations() {
            assert!(
                violations.is_empty(),
                "{} of {checked} emulator responses break GitHub's description:\n{}",
                violations.len(),
                violations.join("\n")
            );
        }
    }
}

/// An emulator on a free port with the default world.
pub async fn emulator() -> TestResult<TestEmulator> {
    emulator_with(|_| {}).await
}

/// An emulator with the default world changed by `edit`.
pub async fn emulator_with(edit: impl FnOnce(&mut World)) -> TestResult<TestEmulator> {
    let mut world = World::default();
    edit(&mut world);
    let handle = Emulator::builder()
        .world(world)
        .record_responses(true)
        .start()
        .await?;
    Ok(TestEmulator(handle))
}

/// The default world plus one open issue (#1) on acme/widgets.
pub async fn emulator_with_issue() -> TestResult<TestEmulator> {
    emulator_with(|world| {
        if let Some(repo) = world.repos.first_mut() {
            repo.issues.push(github_emulator::world::WorldIssue {
                title: "Make widgets spin".to_string(),
                body: Some("They should spin.".to_string()),
                author: Some("maintainer".to_string()),
                labels: Vec::new(),
                assignees: Vec::new(),
                state: "open".to_string(),
                comments: Vec::new(),
            });
        }
    })
    .await
}

/// Backoffs short enough for tests; the total wait keeps crew's default of 60 s.
pub fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_retries: 4,
        min_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
        max_wait: Duration::from_secs(60),
    }
}

/// A crew client for `token` against `emulator`, with an optional cache.
pub fn client(emulator: &EmulatorHandle, token: &str, cache: Option<Cache>) -> TestResult<GitHub> {
    client_at(emulator.base_url(), token, cache)
}

pub fn client_at(base_url: &str, token: &str, cache: Option<Cache>) -> TestResult<GitHub> {
    let mut config = GitHubConfig::new(url::Url::parse(base_url)?, Some(Secret::new(token)));
    config.retry = fast_retry();
    config.connect_timeout = Duration::from_secs(2);
    config.read_timeout = Duration::from_secs(10);
    Ok(GitHub::new(config, cache)?)
}

/// The emulator's `/_emulator/` endpoints.
pub struct Control {
    octocrab: octocrab::Octocrab,
}

impl Control {
    pub fn new(emulator: &EmulatorHandle) -> TestResult<Control> {
        let octocrab = octocrab::Octocrab::builder()
            .base_uri(emulator.base_url())?
            .build()?;
        Ok(Control { octocrab })
    }

    async fn call(
        &self,
        method: http::Method,
        path: &str,
        body: Option<Value>,
    ) -> TestResult<Value> {
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
    pub async fn get(&self, path: &str) -> TestResult<Value> {
        self.call(http::Method::GET, path, None).await
    }

    /// `GET /_emulator/stats`.
    pub async fn stats(&self) -> TestResult<Value> {
        self.call(http::Method::GET, "/_emulator/stats", None).await
    }

    /// Requests the emulator saw on one route (`"GET /user"`).
    pub async fn requests(&self, route: &str) -> TestResult<u64> {
        let stats = self.stats().await?;
        Ok(stats["by_route"][route]["requests"].as_u64().unwrap_or(0))
    }

    /// Rate points spent on one route.
    pub async fn rate_points(&self, route: &str) -> TestResult<u64> {
        let stats = self.stats().await?;
        Ok(stats["by_route"][route]["rate_points"]
            .as_u64()
            .unwrap_or(0))
    }

    pub async fn reset_stats(&self) -> TestResult {
        self.call(http::Method::POST, "/_emulator/stats/reset", None)
            .await
            .map(drop)
    }

    /// `POST /_emulator/faults` with these rules.
    pub async fn faults(&self, rules: Value) -> TestResult {
        self.call(
            http::Method::POST,
            "/_emulator/faults",
            Some(json!({"latency_ms": 0, "rules": rules})),
        )
        .await
        .map(drop)
    }

    pub async fn clear_faults(&self) -> TestResult {
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
    ) -> TestResult<Value> {
        self.call(
            http::Method::POST,
            "/_emulator/rate_limit",
            Some(json!({"login": login, "resource": resource, "remaining": remaining})),
        )
        .await
    }
}

/// Runs git in `dir` with a fixed identity and none of the machine's repository variables, so
/// tests pass the same on any machine; returns trimmed stdout.
pub fn git(dir: &std::path::Path, args: &[&str]) -> TestResult<String> {
    let output = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "Test Author")
        .env("GIT_AUTHOR_EMAIL", "author@example.com")
        .env("GIT_COMMITTER_NAME", "Test Author")
        .env("GIT_COMMITTER_EMAIL", "author@example.com")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .output()?;
    if !output.status.success() {
        return Err(format!(
            "git {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}
