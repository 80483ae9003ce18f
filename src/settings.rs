//! Settings: `crew.toml`, the environment and the global flags, resolved once and strictly.
//!
//! Decisions, and why:
//! - **One resolve, one precedence.** [`Settings::resolve`] merges flags > environment > file >
//!   defaults, so no command reads `std::env` or a file on its own and every command sees the same
//!   answer (uv's `settings.rs`, ripgrep's two-phase args).
//! - **Strict files.** Every table is `deny_unknown_fields`: a typo such as `max_worker = 3` would
//!   otherwise be silently ignored and the user would wonder why nothing changed. Errors name the
//!   file, line, column and dotted key, found by re-reading the document with spans.
//! - **Defaults are a file.** `templates/crew.toml` documents every key with its default value and
//!   is what `crew init` prints; a test keeps it equal to [`Config::default`], so the documentation
//!   cannot drift from the code.
//! - **The token is a [`Secret`]**, whose `Debug` and `Display` print `***`, so no `{:?}` of a
//!   settings struct, error or log line can leak it. `gh auth token` is only run when a command
//!   actually asks for the token, so cheap commands do not spawn a process.
//! - **No network here.** The repository's default branch, the viewer's login and the like are
//!   facts about GitHub and belong to `github`.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::sync::OnceLock;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use url::Url;

use crate::cli::GlobalArgs;
use crate::env_vars;
use crate::error::{Classify, ErrorKind};

/// The documented default `crew.toml`, printed by `crew init`.
pub const DEFAULT_CONFIG: &str = include_str!("../templates/crew.toml");

/// The settings file's name, at the repository root or under `.github/`.
pub const CONFIG_FILE_NAME: &str = "crew.toml";

/// How long one request to GitHub may take when `CREW_HTTP_TIMEOUT` is unset.
pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(60);

/// The API base when `CREW_API_URL` is unset.
pub const DEFAULT_API_URL: &str = "https://api.github.com";

/// Agents crew knows how to drive without an `[agents.<name>]` table.
pub const BUILTIN_AGENTS: &[&str] = &["claude", "codex"];

/// Placeholders an `[agents.<name>] command` may use.
pub const AGENT_PLACEHOLDERS: &[&str] = &["prompt_file", "prompt", "tools", "issue", "worktree"];

/// Placeholders `workers.branch` may use.
pub const BRANCH_PLACEHOLDERS: &[&str] = &["issue", "slug"];

/// Placeholders `workers.worktree` may use. `repo` is the repository's name without the owner.
pub const WORKTREE_PLACEHOLDERS: &[&str] = &["worktree_root", "repo", "issue", "slug"];

// ---------------------------------------------------------------------------------------------
// Secret
// ---------------------------------------------------------------------------------------------

/// A value that must never be printed: `Debug` and `Display` both show `***`.
///
/// It deliberately implements neither `Serialize` nor `Deref`; reading it takes an explicit
/// [`Secret::expose`], which is easy to grep for.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that sends it (the HTTP client).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Where the token came from, so `crew doctor` can say which one is in use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenSource {
    /// The `GH_TOKEN` variable.
    GhToken,
    /// The `GITHUB_TOKEN` variable.
    GithubToken,
    /// `gh auth token`.
    GhCli,
}

impl fmt::Display for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TokenSource::GhToken => env_vars::GH_TOKEN,
            TokenSource::GithubToken => env_vars::GITHUB_TOKEN,
            TokenSource::GhCli => "`gh auth token`",
        })
    }
}

/// A GitHub token and where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    pub secret: Secret,
    pub source: TokenSource,
}

/// `GH_TOKEN`, then `GITHUB_TOKEN`, then whatever `gh_cli` returns (called only if both are unset).
pub fn resolve_token(env: &Env, gh_cli: impl FnOnce() -> Option<String>) -> Option<Token> {
    let from_env = |name, source| {
        env.get(name).map(|value| Token {
            secret: Secret::new(value.trim()),
            source,
        })
    };
    from_env(env_vars::GH_TOKEN, TokenSource::GhToken)
        .or_else(|| from_env(env_vars::GITHUB_TOKEN, TokenSource::GithubToken))
        .or_else(|| {
            gh_cli()
                .map(|value| value.trim().to_owned())
                .filter(|value| !value.is_empty())
                .map(|value| Token {
                    secret: Secret::new(value),
                    source: TokenSource::GhCli,
                })
        })
}

/// Asks the `gh` CLI for its token; `None` when `gh` is missing, logged out, or fails.
fn gh_auth_token(hostname: &str) -> Option<String> {
    let output = Command::new("gh")
        .args(["auth", "token", "--hostname", hostname])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    String::from_utf8(output.stdout).ok()
}

// ---------------------------------------------------------------------------------------------
// Environment
// ---------------------------------------------------------------------------------------------

/// A snapshot of the environment, so settings can be resolved in tests without touching the
/// process environment (which is `unsafe` to mutate in edition 2024, and shared between tests).
#[derive(Clone, Default)]
pub struct Env {
    vars: BTreeMap<String, String>,
    /// Whether `gh auth token` may be run as the last token source.
    gh_cli: bool,
}

impl Env {
    /// The current process's environment (variables that are not UTF-8 are skipped).
    pub fn from_process() -> Self {
        Env {
            vars: std::env::vars_os()
                .filter_map(|(name, value)| {
                    Some((name.into_string().ok()?, value.into_string().ok()?))
                })
                .collect(),
            gh_cli: true,
        }
    }

    /// An environment with exactly these variables, and no `gh` fallback.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Env {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            gh_cli: false,
        }
    }

    /// Allows or forbids running `gh auth token`.
    #[must_use]
    pub fn with_gh_cli(mut self, allowed: bool) -> Self {
        self.gh_cli = allowed;
        self
    }

    /// A variable's value; an empty value counts as unset (`GH_TOKEN=` must not mean "token ``").
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|value| !value.is_empty())
    }

    /// A variable as a path.
    pub fn path(&self, name: &str) -> Option<PathBuf> {
        self.get(name).map(PathBuf::from)
    }
}

/// Names only: values may be secrets.
impl fmt::Debug for Env {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Env")
            .field("vars", &self.vars.keys().collect::<Vec<_>>())
            .field("gh_cli", &self.gh_cli)
            .finish()
    }
}

// ---------------------------------------------------------------------------------------------
// Value types
// ---------------------------------------------------------------------------------------------

/// A repository name, `owner/name`, checked to be one GitHub could have.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RepoSlug {
    owner: String,
    name: String,
}

impl RepoSlug {
    /// Builds a slug from its parts, with the same checks as parsing.
    pub fn new(owner: &str, name: &str) -> Result<Self, RepoSlugError> {
        format!("{owner}/{name}").parse()
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Why a string is not `owner/name`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{input}` is not a repository: {reason} (expected owner/name)")]
pub struct RepoSlugError {
    input: String,
    reason: &'static str,
}

impl FromStr for RepoSlug {
    type Err = RepoSlugError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let fail = |reason| RepoSlugError {
            input: input.to_owned(),
            reason,
        };
        let (owner, name) = input.split_once('/').ok_or_else(|| fail("no `/`"))?;
        // Owners: letters, digits, `-` (and `_` on Enterprise managed users), no leading `-`.
        if owner.is_empty() || owner.len() > 39 {
            return Err(fail("the owner must be 1 to 39 characters"));
        }
        if owner.starts_with('-')
            || !owner
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(fail("the owner may only use letters, digits, `-` and `_`"));
        }
        // Names: letters, digits, `-`, `_`, `.`; never `.` or `..` (they would be path traversal).
        if name.is_empty() || name.len() > 100 {
            return Err(fail("the name must be 1 to 100 characters"));
        }
        if name == "." || name == ".." {
            return Err(fail("the name cannot be `.` or `..`"));
        }
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(fail(
                "the name may only use letters, digits, `-`, `_` and `.`",
            ));
        }
        Ok(RepoSlug {
            owner: owner.to_owned(),
            name: name.to_owned(),
        })
    }
}

impl TryFrom<String> for RepoSlug {
    type Error = RepoSlugError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<RepoSlug> for String {
    fn from(slug: RepoSlug) -> Self {
        slug.to_string()
    }
}

impl fmt::Display for RepoSlug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.owner, self.name)
    }
}

/// The `owner/name` a git remote URL points at, for the forms git itself accepts:
/// `https://host/owner/name(.git)`, `ssh://git@host[:port]/owner/name.git`, scp-like
/// `git@host:owner/name.git`, and `file://` URLs or plain paths ending in `owner/name(.git)`
/// (the emulator serves clones as `file:///tmp/x/repos/acme/widgets.git`).
pub fn repo_from_remote_url(url: &str) -> Option<RepoSlug> {
    let url = url.trim();
    let path = if let Some((_, rest)) = url.split_once("://") {
        // Drop `user@host[:port]` (empty for `file:///...`); the path is everything after it.
        rest.find('/').map_or("", |slash| &rest[slash..])
    } else if let Some((host, path)) = url.split_once(':')
        && !host.contains('/')
    {
        // scp-like `[user@]host:path`; a colon after a slash would be part of a local path.
        path
    } else {
        url
    };
    let path = path.trim_end_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path);
    let mut segments = path.rsplit('/').filter(|segment| !segment.is_empty());
    let name = segments.next()?;
    let owner = segments.next()?;
    RepoSlug::new(owner, name).ok()
}

/// Parses `"30m"`, `"90s"`, `"1h30m"`, `"500ms"`, `"2d"`: integers each followed by a unit.
///
/// Written here rather than pulled in (humantime) because five units cover every setting and
/// the error can then say exactly which unit was wrong.
pub fn parse_duration(input: &str) -> Result<Duration, String> {
    let text = input.trim();
    if text.is_empty() {
        return Err("empty duration (write e.g. \"30m\", \"90s\" or \"1h30m\")".to_owned());
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            return Err(format!(
                "`{input}` is not a duration: expected a number at `{rest}`"
            ));
        }
        let number: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("`{input}` is not a duration: number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest.len()
            - rest
                .trim_start_matches(|c: char| c.is_ascii_alphabetic())
                .len();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let part = match unit {
            "ms" => Some(Duration::from_millis(number)),
            "s" => Some(Duration::from_secs(number)),
            "m" => number.checked_mul(60).map(Duration::from_secs),
            "h" => number.checked_mul(3600).map(Duration::from_secs),
            "d" => number.checked_mul(86_400).map(Duration::from_secs),
            "" => {
                return Err(format!(
                    "`{input}` is not a duration: missing unit (ms, s, m, h or d)"
                ));
            }
            other => {
                return Err(format!(
                    "`{input}` is not a duration: unknown unit `{other}` (use ms, s, m, h or d)"
                ));
            }
        };
        total = part
            .and_then(|part| total.checked_add(part))
            .ok_or_else(|| format!("`{input}` is not a duration: too large"))?;
    }
    Ok(total)
}

/// Formats a duration the way [`parse_duration`] reads it, largest units first.
pub fn format_duration(duration: Duration) -> String {
    if duration.is_zero() {
        return "0s".to_owned();
    }
    let mut out = String::new();
    let mut secs = duration.as_secs();
    for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    let millis = duration.subsec_millis();
    if millis > 0 {
        out.push_str(&format!("{millis}ms"));
    }
    out
}

/// Serde adapter for positive durations written as strings.
mod duration_str {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        let duration = super::parse_duration(&text).map_err(D::Error::custom)?;
        if duration.is_zero() {
            return Err(D::Error::custom("the duration must be greater than zero"));
        }
        Ok(duration)
    }

    pub fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&super::format_duration(*duration))
    }
}

/// How a worker runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    /// On this machine, under a detached supervisor.
    #[default]
    Local,
    /// On a GitHub Actions runner, via `workflow_dispatch`.
    Actions,
}

/// GitHub's `author_association`, for deciding whose event comments count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AuthorAssociation {
    Owner,
    Member,
    Collaborator,
    Contributor,
    FirstTimeContributor,
    FirstTimer,
    Mannequin,
    None,
}

impl AuthorAssociation {
    /// The spelling GitHub uses in `author_association`.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthorAssociation::Owner => "OWNER",
            AuthorAssociation::Member => "MEMBER",
            AuthorAssociation::Collaborator => "COLLABORATOR",
            AuthorAssociation::Contributor => "CONTRIBUTOR",
            AuthorAssociation::FirstTimeContributor => "FIRST_TIME_CONTRIBUTOR",
            AuthorAssociation::FirstTimer => "FIRST_TIMER",
            AuthorAssociation::Mannequin => "MANNEQUIN",
            AuthorAssociation::None => "NONE",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The file
// ---------------------------------------------------------------------------------------------

/// The contents of `crew.toml`, with defaults filled in. See `templates/crew.toml` for what each
/// key means.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `owner/name`; the `-R` flag wins over it, and it wins over the origin remote.
    pub repo: Option<RepoSlug>,
    /// Branch workers start from and PRs target; `None` means the repository's default branch.
    pub base: Option<String>,
    /// Where lease refs live; must start with `refs/` and end with `/`.
    pub lease_ref_prefix: String,
    /// Authors whose event comments count besides the token's own login.
    pub trusted_associations: Vec<AuthorAssociation>,
    pub workers: WorkersConfig,
    pub pickup: PickupConfig,
    /// The Projects (v2) board; `None` when the repository has none (labels are mirrored instead).
    pub project: Option<ProjectConfig>,
    /// Custom agents, by name; `claude` and `codex` are built in.
    pub agents: BTreeMap<String, AgentConfig>,
    /// Tool profiles, by name; `code`, `research` and `review` are always present.
    pub profiles: BTreeMap<String, ProfileConfig>,
    pub github: GithubConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            repo: None,
            base: None,
            lease_ref_prefix: "refs/crew/leases/".to_owned(),
            trusted_associations: vec![
                AuthorAssociation::Owner,
                AuthorAssociation::Member,
                AuthorAssociation::Collaborator,
            ],
            workers: WorkersConfig::default(),
            pickup: PickupConfig::default(),
            project: None,
            agents: BTreeMap::new(),
            profiles: builtin_profiles(),
            github: GithubConfig::default(),
        }
    }
}

/// `[workers]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkersConfig {
    /// Workers running at once across all hosts.
    pub max: u32,
    /// Workers running at once on one host.
    pub max_per_host: u32,
    /// Agent used when `dispatch` names none.
    pub agent: String,
    /// Profile used when `dispatch` names none.
    pub profile: String,
    /// How long a lease lives without renewal.
    #[serde(with = "duration_str")]
    pub lease_ttl: Duration,
    /// How often a live worker's lease is renewed; shorter than `lease_ttl`.
    #[serde(with = "duration_str")]
    pub renew_every: Duration,
    /// Attempts per issue before it needs a human.
    pub max_attempts: u32,
    /// Directory worktrees are created under, relative to the repository root.
    pub worktree_root: PathBuf,
    /// Branch name template (see [`BRANCH_PLACEHOLDERS`]).
    pub branch: String,
    /// Worktree path template (see [`WORKTREE_PLACEHOLDERS`]).
    pub worktree: String,
    /// Where workers run by default.
    pub runtime: Runtime,
    /// After a handover, the supervisor dispatches the next attempt at once (while attempts
    /// remain) instead of leaving it to `crew fill`/`crew loop`.
    pub replace_on_handover: bool,
}

impl Default for WorkersConfig {
    fn default() -> Self {
        WorkersConfig {
            max: 5,
            max_per_host: 5,
            agent: "claude".to_owned(),
            profile: "code".to_owned(),
            lease_ttl: Duration::from_secs(30 * 60),
            renew_every: Duration::from_secs(5 * 60),
            max_attempts: 3,
            worktree_root: PathBuf::from(".."),
            branch: "feature/{issue}-{slug}".to_owned(),
            worktree: "{worktree_root}/{repo}-worker-{issue}".to_owned(),
            runtime: Runtime::Local,
            replace_on_handover: true,
        }
    }
}

/// `[pickup]`: which open issues `fill` and `loop` may take.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PickupConfig {
    /// An issue needs all of these labels; empty means any issue.
    pub labels: Vec<String>,
    /// An issue with any of these labels is skipped.
    pub exclude_labels: Vec<String>,
    /// Labels in priority order, highest first; unlabelled issues come last, oldest first.
    pub priority_labels: Vec<String>,
}

/// `[project]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectConfig {
    /// User or organisation owning the project; `None` means the repository's owner.
    #[serde(default)]
    pub owner: Option<String>,
    /// The project's number, as in its URL.
    pub number: u64,
    /// The single-select field holding the status.
    #[serde(default = "default_status_field")]
    pub status_field: String,
    #[serde(default)]
    pub status: ProjectStatusNames,
}

fn default_status_field() -> String {
    "Status".to_owned()
}

/// `[project.status]`: the option names of the status field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProjectStatusNames {
    pub todo: String,
    pub in_progress: String,
    pub in_review: String,
    pub blocked: String,
    pub done: String,
}

impl Default for ProjectStatusNames {
    fn default() -> Self {
        ProjectStatusNames {
            todo: "Todo".to_owned(),
            in_progress: "In Progress".to_owned(),
            in_review: "In Review".to_owned(),
            blocked: "Blocked".to_owned(),
            done: "Done".to_owned(),
        }
    }
}

/// `[agents.<name>]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// argv, with placeholders from [`AGENT_PLACEHOLDERS`].
    pub command: Vec<String>,
}

/// `[profiles.<name>]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileConfig {
    /// Tools the agent may use, in Claude Code's `--allowedTools` spelling.
    pub tools: Vec<String>,
    /// Whether the worker may push its branch and open a PR.
    #[serde(default)]
    pub push: bool,
    /// Whether the orchestrator's token is passed to the agent.
    #[serde(default)]
    pub token: bool,
}

/// The seed's three tool scopes. A `[profiles.<name>]` with the same name replaces one whole.
pub fn builtin_profiles() -> BTreeMap<String, ProfileConfig> {
    let profile = |tools: &[&str], push, token| ProfileConfig {
        tools: tools.iter().map(|tool| (*tool).to_owned()).collect(),
        push,
        token,
    };
    BTreeMap::from([
        (
            "code".to_owned(),
            profile(
                &[
                    "Bash",
                    "Read",
                    "Edit",
                    "Write",
                    "Grep",
                    "Glob",
                    "mcp__git__*",
                    "mcp__github__*",
                    "mcp__memory__*",
                    "WebFetch",
                    "WebSearch",
                ],
                true,
                true,
            ),
        ),
        (
            "research".to_owned(),
            profile(
                &[
                    "Read",
                    "Grep",
                    "Glob",
                    "WebFetch",
                    "WebSearch",
                    "mcp__memory__*",
                    "mcp__github__get_issue",
                    "mcp__github__get_pull_request",
                ],
                false,
                false,
            ),
        ),
        (
            "review".to_owned(),
            // No plain Bash: it could edit files. The seed's review worker may run the tests
            // and the linter only; repositories override the commands in [profiles.review].
            profile(
                &[
                    "Read",
                    "Grep",
                    "Glob",
                    "Bash(pnpm test:*)",
                    "Bash(pnpm lint:*)",
                ],
                false,
                true,
            ),
        ),
    ])
}

/// `[github]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GithubConfig {
    /// Rate-limit points kept in reserve: below this, crew starts no new work, so a maintainer's
    /// own `gh` calls and a worker's final `done` still have budget.
    pub rate_limit_reserve: u32,
}

impl Default for GithubConfig {
    fn default() -> Self {
        GithubConfig {
            rate_limit_reserve: 200,
        }
    }
}

impl Config {
    /// Parses and validates one `crew.toml`; `path` is only used in error messages.
    pub fn parse(source: &str, path: &Path) -> Result<Config, SettingsError> {
        let mut config: Config = toml::from_str(source).map_err(|error| {
            let span = error.span();
            let key = span.as_ref().and_then(|span| key_at(source, span.start));
            SettingsError::Invalid {
                location: Location::new(path, source, span),
                key,
                message: error.message().trim().to_owned(),
            }
        })?;
        // A user's `[profiles.x]` adds to the built-ins rather than replacing the whole map.
        for (name, profile) in builtin_profiles() {
            config.profiles.entry(name).or_insert(profile);
        }
        config.validate(source, path)?;
        Ok(config)
    }

    /// Checks what types cannot: ranges, references between keys, template placeholders.
    fn validate(&self, source: &str, path: &Path) -> Result<(), SettingsError> {
        let invalid = |key: &[&str], message: String| SettingsError::Invalid {
            location: Location::new(path, source, span_of(source, key)),
            key: Some(key.join(".")),
            message,
        };
        let workers = &self.workers;
        for (key, value) in [
            ("max", workers.max),
            ("max_per_host", workers.max_per_host),
            ("max_attempts", workers.max_attempts),
        ] {
            if value < 1 {
                return Err(invalid(&["workers", key], "must be at least 1".to_owned()));
            }
        }
        if workers.renew_every >= workers.lease_ttl {
            return Err(invalid(
                &["workers", "renew_every"],
                format!(
                    "must be shorter than workers.lease_ttl ({}), \
                     or leases expire before they are renewed",
                    format_duration(workers.lease_ttl)
                ),
            ));
        }
        if !BUILTIN_AGENTS.contains(&workers.agent.as_str())
            && !self.agents.contains_key(&workers.agent)
        {
            return Err(invalid(
                &["workers", "agent"],
                format!(
                    "unknown agent `{}` (known: {})",
                    workers.agent,
                    self.agent_names().join(", ")
                ),
            ));
        }
        if !self.profiles.contains_key(&workers.profile) {
            let known: Vec<&str> = self.profiles.keys().map(String::as_str).collect();
            return Err(invalid(
                &["workers", "profile"],
                format!(
                    "unknown profile `{}` (known: {})",
                    workers.profile,
                    known.join(", ")
                ),
            ));
        }
        check_template(&workers.branch, BRANCH_PLACEHOLDERS, true)
            .map_err(|message| invalid(&["workers", "branch"], message))?;
        check_template(&workers.worktree, WORKTREE_PLACEHOLDERS, true)
            .map_err(|message| invalid(&["workers", "worktree"], message))?;
        if let Some(base) = &self.base
            && base.trim().is_empty()
        {
            return Err(invalid(
                &["base"],
                "must not be empty (omit it to use the default branch)".to_owned(),
            ));
        }
        let prefix = &self.lease_ref_prefix;
        if !prefix.starts_with("refs/")
            || !prefix.ends_with('/')
            || prefix.contains("..")
            || prefix.contains("//")
            || prefix
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || "~^:?*[\\".contains(c))
        {
            return Err(invalid(
                &["lease_ref_prefix"],
                format!(
                    "`{prefix}` must be a valid ref prefix \
                     starting with `refs/` and ending with `/`"
                ),
            ));
        }
        if self.trusted_associations.is_empty() {
            return Err(invalid(
                &["trusted_associations"],
                "must name at least one association, or no event comment would ever count"
                    .to_owned(),
            ));
        }
        if let Some(project) = &self.project
            && project.number == 0
        {
            return Err(invalid(
                &["project", "number"],
                "must be at least 1".to_owned(),
            ));
        }
        for (name, agent) in &self.agents {
            let key = ["agents", name.as_str(), "command"];
            if agent
                .command
                .first()
                .is_none_or(|program| program.trim().is_empty())
            {
                return Err(invalid(
                    &key,
                    "must start with the program to run".to_owned(),
                ));
            }
            for argument in &agent.command {
                check_template(argument, AGENT_PLACEHOLDERS, false)
                    .map_err(|message| invalid(&key, message))?;
            }
        }
        for (name, profile) in &self.profiles {
            if profile.tools.iter().any(|tool| tool.trim().is_empty()) {
                return Err(invalid(
                    &["profiles", name, "tools"],
                    "must not contain empty names".to_owned(),
                ));
            }
        }
        Ok(())
    }

    /// Built-in agent names followed by configured ones.
    pub fn agent_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = BUILTIN_AGENTS.to_vec();
        names.extend(
            self.agents
                .keys()
                .map(String::as_str)
                .filter(|name| !BUILTIN_AGENTS.contains(name)),
        );
        names
    }
}

/// Checks a `{placeholder}` template: only `allowed` names, balanced braces, and (for paths and
/// branches, which must differ per issue) an `{issue}`.
fn check_template(template: &str, allowed: &[&str], needs_issue: bool) -> Result<(), String> {
    let mut rest = template;
    let mut has_issue = false;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let close = after
            .find('}')
            .ok_or_else(|| format!("unclosed `{{` in `{template}`"))?;
        let name = &after[..close];
        if !allowed.contains(&name) {
            return Err(format!(
                "unknown placeholder `{{{name}}}` in `{template}` (known: {})",
                allowed
                    .iter()
                    .map(|name| format!("{{{name}}}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        has_issue |= name == "issue";
        rest = &after[close + 1..];
    }
    if rest.contains('}') {
        return Err(format!("unmatched `}}` in `{template}`"));
    }
    if needs_issue && !has_issue {
        return Err(format!(
            "`{template}` must contain `{{issue}}`, or two workers would collide"
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Locating errors in the file
// ---------------------------------------------------------------------------------------------

/// Where in a file something went wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    pub path: PathBuf,
    /// 1-based line and column, when known.
    pub line_column: Option<(usize, usize)>,
}

impl Location {
    fn new(path: &Path, source: &str, span: Option<Range<usize>>) -> Self {
        Location {
            path: path.to_owned(),
            line_column: span.map(|span| line_column(source, span.start)),
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some((line, column)) = self.line_column {
            write!(f, ":{line}:{column}")?;
        }
        Ok(())
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = source.get(..offset).unwrap_or(source);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

type SpannedTable<'i> = toml::de::DeTable<'i>;

/// The span of the value at a dotted key path, for errors found after deserialising.
fn span_of(source: &str, key: &[&str]) -> Option<Range<usize>> {
    let document = toml::de::DeTable::parse(source).ok()?;
    let mut table: &SpannedTable<'_> = document.get_ref();
    let (last, parents) = key.split_last()?;
    for segment in parents {
        let (_, value) = table.iter().find(|(name, _)| name.get_ref() == segment)?;
        table = value.get_ref().as_table()?;
    }
    let (name, value) = table.iter().find(|(name, _)| name.get_ref() == last)?;
    // A header-style table (`[agents.x]`) has no useful value span; point at its name instead.
    if value.get_ref().is_table() {
        Some(name.span())
    } else {
        Some(value.span())
    }
}

/// The dotted key whose name or value covers `offset`, deepest first: toml's own errors carry a
/// span but not (publicly) the key, and "line 7" alone makes the reader count.
fn key_at(source: &str, offset: usize) -> Option<String> {
    let (document, _) = toml::de::DeTable::parse_recoverable(source);
    let mut best: Option<Vec<String>> = None;
    let mut path = Vec::new();
    find_key(document.get_ref(), offset, &mut path, &mut best);
    best.map(|path| path.join("."))
}

fn find_key(
    table: &SpannedTable<'_>,
    offset: usize,
    path: &mut Vec<String>,
    best: &mut Option<Vec<String>>,
) {
    for (name, value) in table.iter() {
        path.push(name.get_ref().to_string());
        let covers =
            |span: Range<usize>| span.start <= offset && offset < span.end.max(span.start + 1);
        if (covers(name.span()) || covers(value.span()))
            && best.as_ref().is_none_or(|best| best.len() < path.len())
        {
            *best = Some(path.clone());
        }
        match value.get_ref() {
            toml::de::DeValue::Table(inner) => find_key(inner, offset, path, best),
            toml::de::DeValue::Array(items) => {
                for item in items.iter() {
                    if let toml::de::DeValue::Table(inner) = item.get_ref() {
                        find_key(inner, offset, path, best);
                    }
                }
            }
            _ => {}
        }
        path.pop();
    }
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// What can be wrong with the settings. All of them are the user's to fix (exit 1).
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read {path}: {source}", path = path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{location}: {}{message}", key_prefix(key))]
    Invalid {
        location: Location,
        key: Option<String>,
        message: String,
    },

    #[error("both {} and {} exist; crew reads only one", first.display(), second.display())]
    TwoConfigFiles { first: PathBuf, second: PathBuf },

    #[error("{name}: {message}")]
    Environment { name: &'static str, message: String },

    #[error("{flag}: {message}")]
    Flag { flag: &'static str, message: String },

    #[error("no repository given: {reason}")]
    NoRepository { reason: String },

    #[error("no GitHub token found")]
    NoToken,

    #[error(
        "cannot place the cache: none of {}, {} or {} is set",
        env_vars::CREW_CACHE_DIR,
        env_vars::XDG_CACHE_HOME,
        env_vars::HOME
    )]
    NoCacheDir,
}

/// `key `a.b`: ` before a message, when the key is known.
fn key_prefix(key: &Option<String>) -> String {
    key.as_ref()
        .map(|key| format!("key `{key}`: "))
        .unwrap_or_default()
}

impl Classify for SettingsError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::User
    }

    fn hints(&self) -> Vec<String> {
        let hint = match self {
            SettingsError::Invalid { message, .. } if message.contains("unknown field") => {
                "`crew init` prints every key with its default".to_owned()
            }
            SettingsError::TwoConfigFiles { .. } => {
                "remove one of them, or pass --config PATH".to_owned()
            }
            SettingsError::NoRepository { .. } => "pass -R owner/name, set `repo` in crew.toml, \
                 or run inside a clone whose origin is on GitHub"
                .to_owned(),
            SettingsError::NoToken => format!(
                "set {} (or {}) in the environment or .env, or run `gh auth login`",
                env_vars::GH_TOKEN,
                env_vars::GITHUB_TOKEN
            ),
            SettingsError::NoCacheDir => {
                format!("set {} to a writable directory", env_vars::CREW_CACHE_DIR)
            }
            _ => return Vec::new(),
        };
        vec![hint]
    }
}

// ---------------------------------------------------------------------------------------------
// Resolved settings
// ---------------------------------------------------------------------------------------------

/// Where the repository name came from, for `crew doctor` and error messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RepoSource {
    Flag,
    ConfigFile,
    /// Parsed from this `origin` URL.
    OriginRemote(String),
    /// Not found; the reason says what was tried.
    Unknown(String),
}

/// Everything a command may need to know before talking to GitHub, resolved once.
#[derive(Debug)]
pub struct Settings {
    /// The merged file settings (defaults when no file exists).
    pub config: Config,
    /// The file read, if any.
    pub config_path: Option<PathBuf>,
    /// The git work tree containing the current directory, if any.
    pub repo_root: Option<PathBuf>,
    /// The repository to work on, if one could be determined; see [`Settings::require_repo`].
    pub repo: Option<RepoSlug>,
    pub repo_source: RepoSource,
    /// REST API base, without a trailing slash.
    pub api_url: Url,
    /// This machine's name in leases.
    pub host: String,
    /// How long one request to GitHub may take (`CREW_HTTP_TIMEOUT`, default 60 s).
    pub http_timeout: Duration,
    /// `--json`: commands print view structs as JSON on stdout.
    pub json: bool,
    /// `$CREW_CACHE_DIR`, `$XDG_CACHE_HOME`, `$HOME`, for the cache location.
    pub crew_cache_dir: Option<PathBuf>,
    pub xdg_cache_home: Option<PathBuf>,
    pub home: Option<PathBuf>,
    env_token: Option<Token>,
    /// Hostname to ask `gh auth token` about; `None` when `gh` must not be run.
    gh_hostname: Option<String>,
    token: OnceLock<Option<Token>>,
}

impl Settings {
    /// Merges flags > environment > file > defaults. `cwd` is where the repository and
    /// `crew.toml` are looked for.
    pub fn resolve(flags: &GlobalArgs, env: &Env, cwd: &Path) -> Result<Settings, SettingsError> {
        let git = GitContext::discover(cwd);
        let search_root = git.root.clone().unwrap_or_else(|| cwd.to_owned());

        let config_path = match &flags.config {
            Some(path) => Some(cwd.join(path)),
            None => find_config_file(&search_root)?,
        };
        let config = match &config_path {
            Some(path) => {
                let source =
                    std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
                        path: path.clone(),
                        source,
                    })?;
                Config::parse(&source, path)?
            }
            None => Config::default(),
        };

        let (repo, repo_source) = if let Some(repo) = &flags.repo {
            (Some(repo.clone()), RepoSource::Flag)
        } else if let Some(repo) = &config.repo {
            (Some(repo.clone()), RepoSource::ConfigFile)
        } else {
            match &git.origin_url {
                Some(url) => match repo_from_remote_url(url) {
                    Some(repo) => (Some(repo), RepoSource::OriginRemote(url.clone())),
                    None => (
                        None,
                        RepoSource::Unknown(format!(
                            "the origin remote `{url}` does not end in owner/name"
                        )),
                    ),
                },
                None if git.root.is_some() => (
                    None,
                    RepoSource::Unknown("this clone has no origin remote".to_owned()),
                ),
                None => (
                    None,
                    RepoSource::Unknown(format!(
                        "{} is not inside a git repository",
                        cwd.display()
                    )),
                ),
            }
        };

        let api_url = parse_api_url(env.get(env_vars::CREW_API_URL).unwrap_or(DEFAULT_API_URL))?;

        let host = match (&flags.host, env.get(env_vars::CREW_HOST)) {
            (Some(host), _) => check_host(host).map_err(|message| SettingsError::Flag {
                flag: "--host",
                message,
            })?,
            (None, Some(host)) => {
                check_host(host).map_err(|message| SettingsError::Environment {
                    name: env_vars::CREW_HOST,
                    message,
                })?
            }
            (None, None) => machine_hostname(),
        };

        let http_timeout = match env.get(env_vars::CREW_HTTP_TIMEOUT) {
            None => DEFAULT_HTTP_TIMEOUT,
            Some(text) => parse_duration(text).map_err(|message| SettingsError::Environment {
                name: env_vars::CREW_HTTP_TIMEOUT,
                message,
            })?,
        };

        let gh_hostname = env.gh_cli.then(|| match api_url.host_str() {
            Some("api.github.com") | None => "github.com".to_owned(),
            Some(host) => host.to_owned(),
        });

        Ok(Settings {
            config,
            config_path,
            repo_root: git.root,
            repo,
            repo_source,
            api_url,
            host,
            http_timeout,
            json: flags.json,
            crew_cache_dir: env.path(env_vars::CREW_CACHE_DIR),
            xdg_cache_home: env.path(env_vars::XDG_CACHE_HOME),
            home: env.path(env_vars::HOME),
            env_token: resolve_token(env, || None),
            gh_hostname,
            token: OnceLock::new(),
        })
    }

    /// The repository, or an error that says what was tried and how to name one.
    pub fn require_repo(&self) -> Result<&RepoSlug, SettingsError> {
        self.repo
            .as_ref()
            .ok_or_else(|| SettingsError::NoRepository {
                reason: match &self.repo_source {
                    RepoSource::Unknown(reason) => reason.clone(),
                    _ => "none configured".to_owned(),
                },
            })
    }

    /// The token: `GH_TOKEN`, `GITHUB_TOKEN`, then `gh auth token` (run at most once, and only
    /// when first asked for).
    pub fn token(&self) -> Option<&Token> {
        self.token
            .get_or_init(|| {
                self.env_token.clone().or_else(|| {
                    let hostname = self.gh_hostname.as_deref()?;
                    resolve_token(&Env::default(), || gh_auth_token(hostname))
                })
            })
            .as_ref()
    }

    /// The environment values the cache location depends on (see [`crate::cache::CacheLocation`]).
    pub fn cache_location(&self) -> crate::cache::CacheLocation {
        crate::cache::CacheLocation {
            crew_cache_dir: self.crew_cache_dir.clone(),
            xdg_cache_home: self.xdg_cache_home.clone(),
            home: self.home.clone(),
        }
    }

    /// The cache file for this repository on this API host.
    pub fn cache_file(&self) -> Result<PathBuf, SettingsError> {
        let repo = self.require_repo()?;
        self.cache_location()
            .file(&self.api_url, repo.owner(), repo.name())
            .ok_or(SettingsError::NoCacheDir)
    }

    /// The token, or an error with a hint on how to provide one.
    pub fn require_token(&self) -> Result<&Token, SettingsError> {
        self.token().ok_or(SettingsError::NoToken)
    }
}

/// What the git repository around the current directory says.
struct GitContext {
    root: Option<PathBuf>,
    origin_url: Option<String>,
}

impl GitContext {
    /// Not being in a repository is fine (`-R` or `repo` may name one); so is a bare repository.
    fn discover(cwd: &Path) -> GitContext {
        let Ok(repository) = git2::Repository::discover(cwd) else {
            return GitContext {
                root: None,
                origin_url: None,
            };
        };
        let root = repository
            .workdir()
            .map(Path::to_owned)
            .or_else(|| Some(repository.path().to_owned()));
        let origin_url = repository
            .find_remote("origin")
            .ok()
            .and_then(|remote| remote.url().map(str::to_owned));
        GitContext { root, origin_url }
    }
}

/// `crew.toml` or `.github/crew.toml` under `root`; both at once is ambiguous and an error.
fn find_config_file(root: &Path) -> Result<Option<PathBuf>, SettingsError> {
    let at_root = root.join(CONFIG_FILE_NAME);
    let in_github = root.join(".github").join(CONFIG_FILE_NAME);
    match (at_root.is_file(), in_github.is_file()) {
        (true, true) => Err(SettingsError::TwoConfigFiles {
            first: at_root,
            second: in_github,
        }),
        (true, false) => Ok(Some(at_root)),
        (false, true) => Ok(Some(in_github)),
        (false, false) => Ok(None),
    }
}

fn parse_api_url(text: &str) -> Result<Url, SettingsError> {
    let fail = |message: String| SettingsError::Environment {
        name: env_vars::CREW_API_URL,
        message,
    };
    let mut url =
        Url::parse(text.trim()).map_err(|error| fail(format!("`{text}` is not a URL: {error}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(fail(format!(
            "`{text}` must be an http or https URL with a host"
        )));
    }
    if url.query().is_some()
        || url.fragment().is_some()
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return Err(fail(format!(
            "`{}` must be a plain base URL (no credentials, query or fragment)",
            url.host_str().unwrap_or_default()
        )));
    }
    let path = url.path().trim_end_matches('/').to_owned();
    url.set_path(&path);
    Ok(url)
}

/// A host name goes into lease JSON and is compared across machines: keep it one visible word.
fn check_host(host: &str) -> Result<String, String> {
    let host = host.trim();
    if host.is_empty() || host.len() > 255 {
        return Err("the host name must be 1 to 255 characters".to_owned());
    }
    if host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "`{host}` must not contain spaces or control characters"
        ));
    }
    Ok(host.to_owned())
}

/// This machine's name without a dependency: the kernel's answer on Linux, else `hostname`.
fn machine_hostname() -> String {
    let candidates = [
        std::fs::read_to_string("/proc/sys/kernel/hostname").ok(),
        Command::new("hostname")
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|output| output.status.success())
            .and_then(|output| String::from_utf8(output.stdout).ok()),
    ];
    candidates
        .into_iter()
        .flatten()
        .find_map(|name| check_host(&name).ok())
        .unwrap_or_else(|| "localhost".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(source: &str) -> Result<Config, SettingsError> {
        Config::parse(source, Path::new("crew.toml"))
    }

    fn error_text(source: &str) -> String {
        parse(source).unwrap_err().to_string()
    }

    #[test]
    fn default_file_parses_into_the_defaults() {
        let parsed = Config::parse(DEFAULT_CONFIG, Path::new("templates/crew.toml")).unwrap();
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn empty_file_is_the_defaults() {
        assert_eq!(parse("").unwrap(), Config::default());
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let text = error_text("repo = \"a/b\"\n\n[workers]\nmax = 3\nmax_worker = 4\n");
        assert!(
            text.starts_with("crew.toml:5:1: key `workers.max_worker`: unknown field `max_worker`"),
            "{text}"
        );
        let error = parse("[workers]\nmaxx = 1\n").unwrap_err();
        assert_eq!(
            Classify::hints(&error),
            ["`crew init` prints every key with its default"]
        );
    }

    #[test]
    fn unknown_table_is_an_error() {
        let text = error_text("[worker]\nmax = 3\n");
        assert!(text.starts_with("crew.toml:1:"), "{text}");
        assert!(text.contains("unknown field `worker`"), "{text}");
    }

    #[test]
    fn unknown_key_in_nested_tables() {
        let text =
            error_text("[project]\nnumber = 1\n[project.status]\ntodo = \"x\"\nwip = \"y\"\n");
        assert!(
            text.starts_with("crew.toml:5:1: key `project.status.wip`"),
            "{text}"
        );
        let text = error_text("[profiles.x]\ntools = []\npsh = true\n");
        assert!(
            text.starts_with("crew.toml:3:1: key `profiles.x.psh`"),
            "{text}"
        );
    }

    #[test]
    fn wrong_type_names_line_column_and_key() {
        let text = error_text("[workers]\nmax = \"three\"\n");
        assert!(
            text.starts_with("crew.toml:2:7: key `workers.max`: invalid type"),
            "{text}"
        );
        let text = error_text("trusted_associations = [\"OWNER\", \"BOSS\"]\n");
        assert!(text.starts_with("crew.toml:1:"), "{text}");
        assert!(text.contains("key `trusted_associations`"), "{text}");
        assert!(text.contains("BOSS"), "{text}");
    }

    #[test]
    fn syntax_errors_have_a_line() {
        let text = error_text("[workers\nmax = 1\n");
        assert!(text.starts_with("crew.toml:1:"), "{text}");
    }

    #[test]
    fn validation_errors_name_key_and_line() {
        let text = error_text("[workers]\nagent = \"claude\"\nmax = 0\n");
        assert_eq!(text, "crew.toml:3:7: key `workers.max`: must be at least 1");
        let text = error_text("lease_ref_prefix = \"crew/leases\"\n");
        assert!(
            text.starts_with("crew.toml:1:20: key `lease_ref_prefix`"),
            "{text}"
        );
        let text = error_text("lease_ref_prefix = \"refs/crew/leases\"\n");
        assert!(text.contains("ending with `/`"), "{text}");
        assert!(parse("lease_ref_prefix = \"refs/heads/crew/leases/\"\n").is_ok());
        let text = error_text("[workers]\nlease_ttl = \"5m\"\nrenew_every = \"5m\"\n");
        assert!(
            text.starts_with("crew.toml:3:15: key `workers.renew_every`: must be shorter"),
            "{text}"
        );
        let text = error_text("[workers]\nagent = \"aider\"\n");
        assert!(
            text.contains("unknown agent `aider` (known: claude, codex)"),
            "{text}"
        );
        let text = error_text("[workers]\nprofile = \"yolo\"\n");
        assert!(text.contains("unknown profile `yolo`"), "{text}");
        let text = error_text("[workers]\nbranch = \"crew/{slug}\"\n");
        assert!(text.contains("must contain `{issue}`"), "{text}");
        let text = error_text("[workers]\nworktree = \"../{repo}-{issu}\"\n");
        assert!(text.contains("unknown placeholder `{issu}`"), "{text}");
        let text = error_text("[project]\nowner = \"acme\"\n");
        assert!(text.contains("missing field `number`"), "{text}");
        let text = error_text("trusted_associations = []\n");
        assert!(text.contains("key `trusted_associations`"), "{text}");
        let text = error_text("repo = \"not a repo\"\n");
        assert!(text.starts_with("crew.toml:1:8: key `repo`"), "{text}");
    }

    #[test]
    fn durations_are_strings_and_positive() {
        let config = parse("[workers]\nlease_ttl = \"1h\"\nrenew_every = \"90s\"\n").unwrap();
        assert_eq!(config.workers.lease_ttl, Duration::from_secs(3600));
        assert_eq!(config.workers.renew_every, Duration::from_secs(90));
        let text = error_text("[workers]\nlease_ttl = \"0s\"\n");
        assert!(
            text.contains("key `workers.lease_ttl`: the duration must be greater than zero"),
            "{text}"
        );
        let text = error_text("[workers]\nlease_ttl = 30\n");
        assert!(text.contains("key `workers.lease_ttl`"), "{text}");
        let text = error_text("[workers]\nlease_ttl = \"30min\"\n");
        assert!(text.contains("unknown unit `min`"), "{text}");
        let text = error_text("[workers]\nlease_ttl = \"30 m\"\n");
        assert!(text.contains("missing unit"), "{text}");
    }

    #[test]
    fn duration_parser() {
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        for bad in [
            "",
            "m",
            "30",
            "5 m",
            "1.5h",
            "-5m",
            "3w",
            "99999999999999999999s",
            "18446744073709551615d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should not parse");
        }
        for text in ["30m", "5m", "1h30m", "2d", "250ms", "1m1s", "1d1h1m1s1ms"] {
            assert_eq!(format_duration(parse_duration(text).unwrap()), text);
        }
    }

    #[test]
    fn agents_and_profiles() {
        let config = parse(
            "[workers]\nagent = \"aider\"\nprofile = \"docs\"\n\
             [agents.aider]\ncommand = [\"aider\", \"--message-file\", \"{prompt_file}\"]\n\
             [profiles.docs]\ntools = [\"Read\", \"Edit\"]\npush = true\n",
        )
        .unwrap();
        assert_eq!(config.agents["aider"].command[2], "{prompt_file}");
        assert!(config.profiles["docs"].push);
        assert!(!config.profiles["docs"].token);
        // Built-in profiles survive a file that adds its own.
        assert!(config.profiles.contains_key("code"));
        assert_eq!(config.agent_names(), ["claude", "codex", "aider"]);

        let text = error_text("[agents.aider]\ncommand = []\n");
        assert!(
            text.starts_with(
                "crew.toml:2:11: key `agents.aider.command`: must start with the program"
            ),
            "{text}"
        );
        let text = error_text("[agents.aider]\ncommand = [\"aider\", \"{promt}\"]\n");
        assert!(text.contains("unknown placeholder `{promt}`"), "{text}");
        let text = error_text("[agents.aider]\nargv = [\"aider\"]\n");
        assert!(text.contains("key `agents.aider.argv`"), "{text}");
    }

    #[test]
    fn project_defaults() {
        let config =
            parse("[project]\nnumber = 7\n[project.status]\ndone = \"Shipped\"\n").unwrap();
        let project = config.project.unwrap();
        assert_eq!(project.number, 7);
        assert_eq!(project.status_field, "Status");
        assert_eq!(project.status.done, "Shipped");
        assert_eq!(project.status.todo, "Todo");
    }

    #[test]
    fn repo_slugs() {
        let slug: RepoSlug = "acme/widgets".parse().unwrap();
        assert_eq!((slug.owner(), slug.name()), ("acme", "widgets"));
        assert_eq!(slug.to_string(), "acme/widgets");
        assert!("acme/my.repo_x-1".parse::<RepoSlug>().is_ok());
        for bad in [
            "acme",
            "/widgets",
            "acme/",
            "acme/wid/gets",
            "-acme/w",
            "acme/..",
            "ac me/w",
            "acme/w!",
        ] {
            assert!(bad.parse::<RepoSlug>().is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn repo_from_each_remote_url_form() {
        let expected = Some(RepoSlug::new("acme", "widgets").unwrap());
        for url in [
            "https://github.com/acme/widgets.git",
            "https://github.com/acme/widgets",
            "https://github.com/acme/widgets/",
            "https://x-access-token:abc@github.com/acme/widgets.git",
            "http://ghe.example.com:8080/acme/widgets.git",
            "ssh://git@github.com/acme/widgets.git",
            "ssh://git@github.com:22/acme/widgets",
            "git@github.com:acme/widgets.git",
            "github.com:acme/widgets",
            "file:///tmp/x/repos/acme/widgets.git",
            "/tmp/x/repos/acme/widgets.git",
            "git://github.com/acme/widgets.git",
        ] {
            assert_eq!(repo_from_remote_url(url), expected, "{url}");
        }
        assert_eq!(repo_from_remote_url("https://github.com/widgets"), None);
        assert_eq!(repo_from_remote_url("git@github.com:widgets.git"), None);
        assert_eq!(repo_from_remote_url(""), None);
    }

    #[test]
    fn token_precedence() {
        let both = Env::from_pairs([("GH_TOKEN", "gh-env"), ("GITHUB_TOKEN", "github-env")]);
        let token =
            resolve_token(&both, || panic!("gh must not run when GH_TOKEN is set")).unwrap();
        assert_eq!(
            (token.secret.expose(), token.source),
            ("gh-env", TokenSource::GhToken)
        );

        let github_only = Env::from_pairs([("GH_TOKEN", ""), ("GITHUB_TOKEN", "github-env")]);
        let token = resolve_token(&github_only, || panic!("gh must not run")).unwrap();
        assert_eq!(
            (token.secret.expose(), token.source),
            ("github-env", TokenSource::GithubToken)
        );

        let none = Env::from_pairs([("PATH", "/usr/bin")]);
        let token = resolve_token(&none, || Some("gh-cli\n".to_owned())).unwrap();
        assert_eq!(
            (token.secret.expose(), token.source),
            ("gh-cli", TokenSource::GhCli)
        );
        assert_eq!(resolve_token(&none, || None), None);
        assert_eq!(resolve_token(&none, || Some("  \n".to_owned())), None);
    }

    #[test]
    fn secret_is_never_printed() {
        let secret = Secret::new("ghp_supersecret");
        assert_eq!(secret.to_string(), "***");
        assert_eq!(format!("{secret:?}"), "Secret(***)");
        let token = Token {
            secret,
            source: TokenSource::GhToken,
        };
        assert!(!format!("{token:?}").contains("supersecret"));

        let env = Env::from_pairs([("GH_TOKEN", "ghp_supersecret")]);
        assert!(!format!("{env:?}").contains("supersecret"));
        let dir = tempfile::tempdir().unwrap();
        let settings = Settings::resolve(&GlobalArgs::default(), &env, dir.path()).unwrap();
        assert_eq!(settings.token().unwrap().secret.expose(), "ghp_supersecret");
        let debug = format!("{settings:?}");
        assert!(!debug.contains("supersecret"), "{debug}");
        assert!(debug.contains("***"), "{debug}");
    }

    fn git_repo_with_origin(dir: &Path, url: &str) {
        let repository = git2::Repository::init(dir).unwrap();
        repository.remote("origin", url).unwrap();
    }

    #[test]
    fn resolve_precedence_flag_file_remote() {
        let dir = tempfile::tempdir().unwrap();
        git_repo_with_origin(dir.path(), "git@github.com:remote/from-origin.git");
        let env = Env::from_pairs([("CREW_HOST", "box-1")]);
        let nested = dir.path().join("src");
        std::fs::create_dir(&nested).unwrap();

        let settings = Settings::resolve(&GlobalArgs::default(), &env, &nested).unwrap();
        assert_eq!(
            settings.repo.as_ref().unwrap().to_string(),
            "remote/from-origin"
        );
        assert!(matches!(settings.repo_source, RepoSource::OriginRemote(_)));
        assert_eq!(settings.host, "box-1");
        assert_eq!(settings.api_url.as_str(), "https://api.github.com/");
        assert_eq!(settings.config_path, None);

        std::fs::create_dir(dir.path().join(".github")).unwrap();
        std::fs::write(
            dir.path().join(".github/crew.toml"),
            "repo = \"file/repo\"\n",
        )
        .unwrap();
        let settings = Settings::resolve(&GlobalArgs::default(), &env, &nested).unwrap();
        assert_eq!(settings.repo.as_ref().unwrap().to_string(), "file/repo");
        assert_eq!(settings.repo_source, RepoSource::ConfigFile);

        let flags = GlobalArgs {
            repo: Some("flag/repo".parse().unwrap()),
            host: Some("flag-host".to_owned()),
            ..GlobalArgs::default()
        };
        let settings = Settings::resolve(&flags, &env, &nested).unwrap();
        assert_eq!(settings.repo.as_ref().unwrap().to_string(), "flag/repo");
        assert_eq!(settings.host, "flag-host");

        std::fs::write(dir.path().join("crew.toml"), "").unwrap();
        let error = Settings::resolve(&GlobalArgs::default(), &env, &nested).unwrap_err();
        assert!(
            matches!(error, SettingsError::TwoConfigFiles { .. }),
            "{error}"
        );
    }

    #[test]
    fn resolve_reports_file_errors_with_the_full_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("custom.toml");
        std::fs::write(&path, "[workers]\nmax = -1\n").unwrap();
        let flags = GlobalArgs {
            config: Some(path.clone()),
            ..GlobalArgs::default()
        };
        let error = Settings::resolve(&flags, &Env::default(), dir.path()).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with(&format!("{}:2:7: key `workers.max`", path.display())),
            "{error}"
        );

        let flags = GlobalArgs {
            config: Some(dir.path().join("missing.toml")),
            ..GlobalArgs::default()
        };
        let error = Settings::resolve(&flags, &Env::default(), dir.path()).unwrap_err();
        assert!(matches!(error, SettingsError::Read { .. }), "{error}");
    }

    #[test]
    fn resolve_without_a_repository() {
        let dir = tempfile::tempdir().unwrap();
        let settings =
            Settings::resolve(&GlobalArgs::default(), &Env::default(), dir.path()).unwrap();
        assert_eq!(settings.repo, None);
        let error = settings.require_repo().unwrap_err();
        assert!(
            error.to_string().contains("not inside a git repository"),
            "{error}"
        );
        assert!(Classify::hints(&error)[0].contains("-R owner/name"));
        assert!(settings.token().is_none(), "no env token and gh disabled");
        assert!(matches!(
            settings.require_token(),
            Err(SettingsError::NoToken)
        ));
    }

    #[test]
    fn environment_values_are_validated() {
        let dir = tempfile::tempdir().unwrap();
        let resolve = |pairs: &[(&str, &str)]| {
            Settings::resolve(
                &GlobalArgs::default(),
                &Env::from_pairs(pairs.iter().copied()),
                dir.path(),
            )
        };
        let settings = resolve(&[("CREW_API_URL", "http://127.0.0.1:4000/api/v3/")]).unwrap();
        assert_eq!(settings.api_url.as_str(), "http://127.0.0.1:4000/api/v3");
        let error = resolve(&[("CREW_API_URL", "not a url")]).unwrap_err();
        assert!(error.to_string().starts_with("CREW_API_URL: "), "{error}");
        let error = resolve(&[("CREW_API_URL", "ftp://example.com")]).unwrap_err();
        assert!(error.to_string().starts_with("CREW_API_URL: "), "{error}");
        let error = resolve(&[("CREW_HOST", "two words")]).unwrap_err();
        assert!(error.to_string().starts_with("CREW_HOST: "), "{error}");
        let settings = resolve(&[("CREW_HOST", "")]).unwrap();
        assert!(
            !settings.host.is_empty(),
            "empty CREW_HOST falls back to the hostname"
        );
    }
}

/// The config loader fuzzed (issue 8): whatever the file holds, parsing returns a config or an
/// error that names the file, never a panic. Shapes near real files (a known table with keys of
/// every type, mangled) find more than random bytes do.
#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("max".to_owned()),
            Just("max_per_host".to_owned()),
            Just("lease_ttl".to_owned()),
            Just("renew_every".to_owned()),
            Just("branch".to_owned()),
            Just("worktree".to_owned()),
            Just("agent".to_owned()),
            Just("command".to_owned()),
            Just("labels".to_owned()),
            "[a-z_]{1,12}",
        ]
    }

    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<i64>().prop_map(|n| n.to_string()),
            "\"[^\"\\\\]{0,20}\"",
            Just("true".to_owned()),
            Just("[\"a\", 1]".to_owned()),
            Just("\"-5m\"".to_owned()),
            Just("\"99999999999999d\"".to_owned()),
            Just("\"{issue}/../{slug}\"".to_owned()),
            Just("{}".to_owned()),
            ".{0,10}",
        ]
    }

    fn table() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("[workers]".to_owned()),
            Just("[pickup]".to_owned()),
            Just("[github]".to_owned()),
            Just("[project]".to_owned()),
            Just("[agents.x]".to_owned()),
            Just("[profiles.y]".to_owned()),
            "\\[[a-z.]{0,10}\\]",
            Just(String::new()),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn near_config_files_never_panic(
            lines in proptest::collection::vec((table(), key(), value()), 0..8)
        ) {
            let source: String = lines
                .iter()
                .map(|(table, key, value)| format!("{table}\n{key} = {value}\n"))
                .collect();
            match Config::parse(&source, Path::new("crew.toml")) {
                Ok(_) => {}
                Err(error) => prop_assert!(error.to_string().contains("crew.toml"), "{error}"),
            }
        }

        #[test]
        fn arbitrary_text_never_panics(source in "\\PC{0,300}") {
            let _ = Config::parse(&source, Path::new("crew.toml"));
        }
    }
}
