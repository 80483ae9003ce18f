//! Shared by the emulator's route tests: start an emulator that records every response, talk to
//! it through octocrab (a well-known third-party GitHub client), and check at the end that every
//! response it gave validates against GitHub's published OpenAPI description.
#![allow(dead_code)]

use github_emulator::{Emulator, EmulatorHandle, World};
use http::{HeaderMap, Method, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;

pub const MAINTAINER: &str = "emu-maintainer";
pub const BOT: &str = "emu-bot";
pub const OUTSIDER: &str = "emu-outsider";

/// A running emulator plus clients for each default user.
pub struct TestGitHub {
    pub emulator: EmulatorHandle,
}

/// One raw answer: status, headers and the JSON body (`Value::Null` when empty).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl TestGitHub {
    pub async fn start() -> TestGitHub {
        Self::start_with(World::default()).await
    }

    pub async fn start_with(world: World) -> TestGitHub {
        let emulator = Emulator::builder()
            .world(world)
            .record_responses(true)
            .start()
            .await
            .expect("emulator starts");
        TestGitHub { emulator }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.emulator.base_url(), path)
    }

    /// An octocrab client authenticated with `token` (None: anonymous).
    pub fn client(&self, token: Option<&str>) -> octocrab::Octocrab {
        let mut builder = octocrab::Octocrab::builder()
            .base_uri(self.emulator.base_url())
            .expect("base uri");
        if let Some(token) = token {
            builder = builder.personal_token(token.to_string());
        }
        builder.build().expect("octocrab client")
    }

    /// Send a request through octocrab and read status, headers and JSON body.
    pub async fn send(
        &self,
        token: Option<&str>,
        method: Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let client = self.client(token);
        let mut request = http::Request::builder().method(method).uri(self.url(path));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let response = client
            .execute(request.body(body).expect("request"))
            .await
            .expect("response");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Answer {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, token: &str, path: &str) -> Answer {
        self.send(Some(token), Method::GET, path, None, &[]).await
    }

    pub async fn post(&self, token: &str, path: &str, body: Value) -> Answer {
        self.send(Some(token), Method::POST, path, Some(body), &[])
            .await
    }

    pub async fn patch(&self, token: &str, path: &str, body: Value) -> Answer {
        self.send(Some(token), Method::PATCH, path, Some(body), &[])
            .await
    }

    pub async fn put(&self, token: &str, path: &str, body: Value) -> Answer {
        self.send(Some(token), Method::PUT, path, Some(body), &[])
            .await
    }

    pub async fn delete(&self, token: &str, path: &str) -> Answer {
        self.send(Some(token), Method::DELETE, path, None, &[])
            .await
    }

    /// `/_emulator/...` control calls (not GitHub's; no auth).
    pub async fn control(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        self.send(None, method, path, body, &[]).await
    }

    /// Every REST response so far validates against GitHub's description (skipped with a notice
    /// where `../shared/github` is absent). Returns how many were checked.
    pub fn assert_contract(&self) -> usize {
        let Some((checked, violations)) = self.emulator.contract_violations() else {
            return 0;
        };
        assert!(
            violations.is_empty(),
            "{} of {checked} responses break GitHub's description:\n{}",
            violations.len(),
            violations.join("\n")
        );
        checked
    }
}
