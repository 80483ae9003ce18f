#![recursion_limit = "256"]
//! A strict, stateful GitHub emulator: REST, GraphQL and git, for testing crew and for
//! `crew demo` on a machine that cannot reach github.com.
//!
//! It behaves like GitHub where crew depends on GitHub's behaviour (status codes, pagination,
//! ETags, rate limits, permissions, real git refs and merges) and answers loudly where it does not
//! model something, never with an empty 200. Its wire types are its own: it must not share structs
//! with `crew`, so a serialisation bug cannot hide on both sides at once.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let emulator = github_emulator::Emulator::builder().start().await?;
//! println!("GitHub at {}", emulator.base_url());
//! # Ok(()) }
//! ```

pub mod cli;
pub mod contract;
mod control;
pub mod faults;
mod gitrepo;
mod graphql;
mod http;
mod render;
mod rest;
pub mod state;
pub mod stats;
pub mod world;

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;

pub use http::RecordedResponse;
use http::Shared;
use state::State;
pub use world::World;

/// The emulator's GraphQL schema (SDL), so tests can check it against GitHub's published one.
pub fn graphql_sdl() -> String {
    graphql::sdl()
}

/// How to start an emulator.
#[derive(Debug, Default)]
pub struct Builder {
    world: Option<World>,
    state_dir: Option<PathBuf>,
    addr: Option<std::net::SocketAddr>,
    record: bool,
}

impl Builder {
    /// Start from this world instead of the default one.
    pub fn world(mut self, world: World) -> Self {
        self.world = Some(world);
        self
    }

    /// Keep state (and the bare repositories) in this directory across restarts.
    pub fn state_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.state_dir = Some(dir.into());
        self
    }

    /// Listen here (default `127.0.0.1:0`, a free port).
    pub fn addr(mut self, addr: std::net::SocketAddr) -> Self {
        self.addr = Some(addr);
        self
    }

    /// Keep every API response so tests can validate them against GitHub's description.
    pub fn record_responses(mut self, record: bool) -> Self {
        self.record = record;
        self
    }

    /// Bind, then serve in the background until the handle is dropped or shut down.
    pub async fn start(self) -> anyhow::Result<EmulatorHandle> {
        let addr = self.addr.unwrap_or_else(|| ([127, 0, 0, 1], 0).into());
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let base_url = format!("http://{}", listener.local_addr()?);
        let (root, temp) = match &self.state_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)?;
                (dir.clone(), None)
            }
            None => {
                let temp = tempfile::Builder::new()
                    .prefix("github-emulator-")
                    .tempdir()?;
                (temp.path().to_path_buf(), Some(temp))
            }
        };
        let state = match State::load(&root)? {
            Some(state) if self.state_dir.is_some() => state,
            _ => {
                let world = self.world.unwrap_or_default();
                let mut state = State::from_world(&world, &root)?;
                state.state_dir = self.state_dir.clone();
                state.persist()?;
                state
            }
        };
        let shared = Arc::new(Shared::new(state, base_url.clone(), self.record));
        let app = app(shared.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let result = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
            if let Err(error) = result {
                tracing::error!(%error, "github-emulator stopped");
            }
        });
        Ok(EmulatorHandle {
            base_url,
            shared,
            stop: Some(stop),
            server: Some(server),
            _temp: temp,
        })
    }
}

fn app(shared: Arc<Shared>) -> Router {
    let api =
        rest::router()
            .merge(graphql::router())
            .route_layer(axum::middleware::from_fn_with_state(
                shared.clone(),
                http::github_layer,
            ));
    Router::new()
        .merge(api)
        .merge(control::router())
        .fallback(http::unknown_route)
        .method_not_allowed_fallback(http::unknown_route)
        .with_state(shared)
}

/// A running emulator. Dropping it stops the server.
pub struct EmulatorHandle {
    base_url: String,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
    _temp: Option<tempfile::TempDir>,
}

/// Entry point: `Emulator::builder()`.
pub struct Emulator;

impl Emulator {
    pub fn builder() -> Builder {
        Builder::default()
    }
}

impl EmulatorHandle {
    /// `http://127.0.0.1:PORT`: the REST root, with GraphQL at `/graphql`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The `file://` clone URL of a repository's bare git repository.
    pub fn clone_url(&self, owner: &str, name: &str) -> Option<String> {
        let state = self.shared.lock();
        state
            .repo(owner, name)
            .map(|repo| format!("file://{}", repo.git_dir.display()))
    }

    /// Read or change the state directly (seeding large worlds in benchmarks, assertions).
    pub fn with_state<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut state = self.shared.lock();
        f(&mut state)
    }

    /// The current request statistics.
    pub fn stats(&self) -> stats::Stats {
        self.shared.lock().stats.clone()
    }

    /// Every API response so far, when started with `record_responses(true)`; drains the list.
    pub fn take_recorded(&self) -> Vec<RecordedResponse> {
        match &self.shared.recorded {
            Some(recorded) => {
                std::mem::take(&mut *recorded.lock().unwrap_or_else(|p| p.into_inner()))
            }
            None => Vec::new(),
        }
    }

    /// Validate every API response recorded so far (drained) against GitHub's published OpenAPI
    /// description. `None` when the descriptions are not beside the checkout (a notice is
    /// printed); otherwise the violations, empty when every response conforms. GraphQL answers
    /// are checked by the GraphQL contract instead.
    pub fn contract_violations(&self) -> Option<(usize, Vec<String>)> {
        let recorded = self.take_recorded();
        contract::descriptions_or_skip("REST response contract")?;
        let rest = contract::RestContract::shared()?;
        let mut violations = Vec::new();
        let mut checked = 0;
        for response in recorded.iter().filter(|r| r.route != "/graphql") {
            checked += 1;
            let body = response.body.clone().unwrap_or(serde_json::Value::Null);
            if let Err(errors) =
                rest.validate_response(&response.method, &response.route, response.status, &body)
            {
                violations.extend(errors);
            }
        }
        Some((checked, violations))
    }

    /// Stop serving and wait for the server to finish.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }
}

impl Drop for EmulatorHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
