//! Shared helpers for integration tests: an emulator per test, its control endpoints over HTTP,
//! and a client configured the way crew configures it (but with short backoffs).
//!
//! The control endpoints are reached over HTTP rather than through the emulator's Rust API so
//! the tests exercise the same contract the bench and the CLI tests use.

#![allow(dead_code)] // each test binary uses a different subset

pub mod control;
pub mod sandbox;

pub use control::Control;

use std::time::Duration;

use crew::cache::Cache;
use crew::github::{GitHub, GitHubConfig, RetryPolicy, Secret};
use github_emulator::{Emulator, EmulatorHandle, World};

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
