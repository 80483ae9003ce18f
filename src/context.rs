//! The context every command receives: built once, plain data, no trait of accessors.
//!
//! It holds what was resolved up front (settings, printer, clock) and lazily-built slots for
//! what is expensive or fallible to open (the SQLite cache, the GitHub client), so `crew brief`,
//! `crew cache path` or an agent-side command never opens what it does not use (CONVENTIONS 3).
//! A slot is filled on first use and shared after that; `tokio::sync::OnceCell` makes concurrent
//! first uses wait for one construction instead of racing two.

use chrono::{DateTime, Utc};
use tokio::sync::OnceCell;

use crate::cache::Cache;
use crate::error::CrewError;
use crate::github::{GitHub, GitHubConfig};
use crate::printer::Printer;
use crate::settings::Settings;

/// Where "now" comes from: the system clock, or a fixed instant in tests, so code that compares
/// lease expiry with the current time can be tested without sleeping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clock {
    System,
    Fixed(DateTime<Utc>),
}

impl Clock {
    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Clock::System => Utc::now(),
            Clock::Fixed(instant) => *instant,
        }
    }
}

/// Everything a command needs besides its own arguments.
#[derive(Debug)]
pub struct Ctx {
    pub settings: Settings,
    pub printer: Printer,
    pub clock: Clock,
    cache: OnceCell<Cache>,
    github: OnceCell<GitHub>,
}

impl Ctx {
    /// A context on the system clock, with nothing opened yet.
    pub fn new(settings: Settings, printer: Printer) -> Self {
        Ctx {
            settings,
            printer,
            clock: Clock::System,
            cache: OnceCell::new(),
            github: OnceCell::new(),
        }
    }

    /// Replaces the clock (tests).
    #[must_use]
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Uses this cache instead of opening the file (tests use `Cache::in_memory`).
    #[must_use]
    pub fn with_cache(self, cache: Cache) -> Self {
        // A fresh context's cell is empty, so this cannot fail; if it somehow were full, the
        // existing cache would simply be kept.
        let _ = self.cache.set(cache);
        self
    }

    /// The repository's cache, opened (and migrated) on first use. Needs a repository.
    pub async fn cache(&self) -> Result<&Cache, CrewError> {
        self.cache
            .get_or_try_init(|| async {
                let path = self.settings.cache_file()?;
                Ok::<_, CrewError>(Cache::open(path).await?)
            })
            .await
    }

    /// The GitHub client if a command built it, so the request summary can be printed at exit.
    pub fn github_if_built(&self) -> Option<&GitHub> {
        self.github.get()
    }

    /// The GitHub client, built on first use with the token (if any) and, when a repository is
    /// known, the cache for conditional GETs.
    pub async fn github(&self) -> Result<&GitHub, CrewError> {
        self.github
            .get_or_try_init(|| async {
                let config = GitHubConfig::from_settings(&self.settings);
                let cache = match self.settings.repo {
                    Some(_) => Some(self.cache().await?.clone()),
                    None => None,
                };
                Ok::<_, CrewError>(GitHub::new(config, cache)?)
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::cli::GlobalArgs;
    use crate::printer::Verbosity;
    use crate::settings::Env;

    fn ctx(flags: &GlobalArgs, env: &Env, dir: &Path) -> Ctx {
        let settings = Settings::resolve(flags, env, dir).expect("settings resolve");
        Ctx::new(settings, Printer::capture(Verbosity::Normal, false).0)
    }

    #[tokio::test]
    async fn slots_are_lazy_and_shared() {
        let dir = tempfile::tempdir().expect("tempdir");
        let env = Env::from_pairs([("CREW_API_URL", "http://127.0.0.1:9")]);

        // No repository: the client is built without a cache, and the cache slot explains why.
        let without_repo = ctx(&GlobalArgs::default(), &env, dir.path());
        let github = without_repo.github().await.expect("client");
        assert!(github.cache().is_none());
        assert!(!github.has_token());
        let error = without_repo.cache().await.expect_err("no repository");
        assert_eq!(error.exit_code(), 1);

        // With a repository and an injected cache, the client shares that cache.
        let flags = GlobalArgs {
            repo: Some("acme/widgets".parse().expect("slug")),
            ..GlobalArgs::default()
        };
        let cache = Cache::in_memory().await.expect("in-memory cache");
        let with_repo = ctx(&flags, &env, dir.path()).with_cache(cache);
        let first = with_repo.github().await.expect("client");
        assert_eq!(first.cache().map(Cache::path), Some(":memory:"));
        let second = with_repo.github().await.expect("client");
        assert!(std::ptr::eq(first, second));
    }

    #[test]
    fn fixed_clock() {
        let instant = DateTime::parse_from_rfc3339("2026-11-21T10:00:00Z")
            .expect("timestamp")
            .with_timezone(&Utc);
        assert_eq!(Clock::Fixed(instant).now(), instant);
    }
}
