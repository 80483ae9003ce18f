//! Every environment variable crew reads, named once.
//!
//! Keeping the names in one file makes the full list greppable (for the README, for `crew doctor`)
//! and stops two modules from spelling the same variable two ways. Values are read through
//! [`crate::settings::Env`], never with `std::env::var` elsewhere, so tests can inject them.

/// Token for the GitHub API; takes precedence over [`GITHUB_TOKEN`] (same order as the `gh` CLI).
pub const GH_TOKEN: &str = "GH_TOKEN";

/// Token for the GitHub API; the name GitHub Actions uses.
pub const GITHUB_TOKEN: &str = "GITHUB_TOKEN";

/// Base URL of the GitHub REST API: GitHub Enterprise (`https://ghe.example.com/api/v3`) or the
/// emulator.
pub const CREW_API_URL: &str = "CREW_API_URL";

/// Name of this machine as recorded in leases and counted for `workers.max_per_host`.
pub const CREW_HOST: &str = "CREW_HOST";

/// Overrides the whole cache directory (not just its root).
pub const CREW_CACHE_DIR: &str = "CREW_CACHE_DIR";

/// Log filter in `tracing_subscriber::EnvFilter` syntax; overrides what `-v`/`-q` select.
pub const CREW_LOG: &str = "CREW_LOG";

/// How long one request to GitHub may take before crew gives up on it (`60s` by default; a
/// duration such as `30s` or `2m`). A write whose answer timed out is checked before it is sent
/// again, like one whose connection dropped.
pub const CREW_HTTP_TIMEOUT: &str = "CREW_HTTP_TIMEOUT";

/// Fault injection for crash-recovery tests only: `crew dispatch` kills itself with SIGKILL
/// right after the step this names (`lease`, `assigned`, `board`, `worktree`, `context`,
/// `prompt`, `spec`, `spawn`). Not listed in [`ALL`]: it is not a setting.
pub const CREW_FAULT_KILL_AFTER: &str = "CREW_FAULT_KILL_AFTER";

/// Fault injection for crash-recovery tests only: a file path; with it, the point
/// [`CREW_FAULT_KILL_AFTER`] names kills only the first process to reach it (it creates the
/// file), in a tree of processes that all inherit the variable (see `crate::fault`). Not listed
/// in [`ALL`].
pub const CREW_FAULT_ONCE: &str = "CREW_FAULT_ONCE";

/// Base of the per-user cache, per the XDG base directory spec.
pub const XDG_CACHE_HOME: &str = "XDG_CACHE_HOME";

/// Home directory, for the `~/.cache` fallback.
pub const HOME: &str = "HOME";

/// Any non-empty value turns colour off unless `--color always` says otherwise
/// (<https://no-color.org>).
pub const NO_COLOR: &str = "NO_COLOR";

/// `dumb` terminals get no colour under `--color auto`.
pub const TERM: &str = "TERM";

/// Every variable above, for `crew doctor` and the docs.
pub const ALL: &[&str] = &[
    GH_TOKEN,
    GITHUB_TOKEN,
    CREW_API_URL,
    CREW_HOST,
    CREW_CACHE_DIR,
    CREW_LOG,
    CREW_HTTP_TIMEOUT,
    XDG_CACHE_HOME,
    HOME,
    NO_COLOR,
    TERM,
];

/// Variables whose values are secrets and must never be printed.
pub const SECRETS: &[&str] = &[GH_TOKEN, GITHUB_TOKEN];
