//! `crew doctor`: checks everything crew relies on, one line per check, and says how to fix it.
//!
//! Decisions, and why:
//! - **Every check runs, even after a failure**, so one run shows every problem; a check that
//!   needs what an earlier one could not provide (a login, a branch) says "not checked" and why,
//!   instead of failing again with a misleading message.
//! - **A rate-limited token is told apart from a bad one** (403 with an exhausted quota versus
//!   401): "rate limited until 14:05" sends the user to wait, "bad credentials" to make a token.
//! - **The lease probe writes for real** (DESIGN.md 2.2): it creates a ref under the configured
//!   prefix, fast-forwards it, checks that a non-fast-forward update is refused (the property
//!   leases depend on), and always deletes it again, failure or not.
//! - **Missing agent binaries only warn**: an orchestrator that dispatches to a remote runtime
//!   does not need them locally.
//! - **Ignored markers only warn** (DESIGN.md 2.1): the `markers` check runs the read side
//!   ([`observe_with`], the same sync and fold as `crew status`) and counts, per issue, the
//!   markers that did not count; `crew show <issue>` gives each reason in full.
//! - **The report is a view struct** (`--json`: `{"ok", "checks": [{"name", "status", "detail",
//!   "hint"}]}`), not the internal types, so its field names are a stable contract.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::json;

use crate::cache::{Cache, CacheLocation, SCHEMA_VERSION};
use crate::context::{Clock, Ctx};
use crate::error::CrewError;
use crate::github::{
    Branch, CollaboratorPermission, GitHub, GitHubConfig, GitHubError, RepoSlug, Repository, User,
};
use crate::observe::{ObserveOptions, ObservedIssue, observe_with};
use crate::protocol::IgnoreReason;
use crate::settings::{Env, ProjectConfig, Settings};

/// Check the token, repository, settings and GitHub features crew relies on
#[derive(clap::Args, Debug, Default)]
#[command(after_help = r#"Examples:
  crew doctor
      Check token, repository, leases, board, agents and cache
  crew doctor --json | jq '.checks[] | select(.status != "ok")'
      Only the problems"#)]
pub struct DoctorArgs {}

/// How one check came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

/// One check, as printed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CheckView {
    pub name: &'static str,
    pub status: Status,
    pub detail: String,
    pub hint: Option<String>,
}

/// The whole report, as printed by `--json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DoctorReport {
    /// False when any check failed (warnings do not count).
    pub ok: bool,
    pub checks: Vec<CheckView>,
}

pub async fn run(ctx: &Ctx, _args: &DoctorArgs) -> Result<(), CrewError> {
    let (report, github) = diagnose(&ctx.settings).await;
    if ctx.settings.json {
        ctx.printer.json(&report)?;
    } else {
        let style = ctx.printer.out_style();
        ctx.printer.out(|w| {
            for check in &report.checks {
                let status = match check.status {
                    Status::Ok => style.green("ok  ").to_string(),
                    Status::Warn => style.yellow("warn").to_string(),
                    Status::Fail => style.red("fail").to_string(),
                };
                write!(w, "{status}  {:<12} {}", check.name, check.detail)?;
                if let Some(hint) = &check.hint {
                    write!(w, " {}", style.dim(format!("(hint: {hint})")))?;
                }
                writeln!(w)?;
            }
            Ok(())
        })?;
    }
    if let Some(github) = &github {
        ctx.printer.verbose(github.request_summary());
    }
    let failed = report
        .checks
        .iter()
        .filter(|check| check.status == Status::Fail)
        .count();
    if failed > 0 {
        return Err(CrewError::user(format!(
            "{failed} of {} doctor checks failed",
            report.checks.len()
        )));
    }
    Ok(())
}

/// Runs every check. Returns the client too, so the caller can print its request summary.
pub async fn diagnose(settings: &Settings) -> (DoctorReport, Option<GitHub>) {
    let mut checks = Vec::new();
    let repo = settings.repo.clone();

    // The cache first: the GitHub client uses it, and it needs no network.
    let (cache_check, cache) = check_cache(settings, repo.as_ref()).await;

    let github = match GitHub::new(GitHubConfig::from_settings(settings), cache) {
        Ok(github) => github,
        Err(error) => {
            checks.push(fail(
                "github",
                format!("cannot build the HTTP client: {error}"),
                None,
            ));
            checks.push(cache_check);
            return (report(checks), None);
        }
    };

    let (user, blocked) = check_token(settings, &github, &mut checks).await;
    check_rate_limit(settings, &github, blocked, &mut checks).await;
    let repository = check_repository(repo.as_ref(), &github, blocked, &mut checks).await;
    let can_write = check_permission(
        repo.as_ref(),
        repository.as_ref(),
        user.as_ref(),
        &github,
        &mut checks,
    )
    .await;
    checks.push(check_git_remote(settings, repo.as_ref()).await);
    let base = check_base_branch(
        settings,
        repo.as_ref(),
        repository.as_ref(),
        &github,
        &mut checks,
    )
    .await;
    checks.push(check_lease_refs(settings, repo.as_ref(), base.as_ref(), can_write, &github).await);
    checks.push(check_project(settings, repo.as_ref(), user.is_some(), &github).await);
    checks.push(check_agents(settings));
    let cache_usable = cache_check.status == Status::Ok;
    checks.push(cache_check);
    checks.push(
        check_markers(
            settings,
            user.is_some(),
            repository.is_some(),
            cache_usable,
            &github,
        )
        .await,
    );
    (report(checks), Some(github))
}

fn report(checks: Vec<CheckView>) -> DoctorReport {
    DoctorReport {
        ok: checks.iter().all(|check| check.status != Status::Fail),
        checks,
    }
}

fn ok(name: &'static str, detail: impl Into<String>) -> CheckView {
    CheckView {
        name,
        status: Status::Ok,
        detail: detail.into(),
        hint: None,
    }
}

fn warn(name: &'static str, detail: impl Into<String>, hint: Option<String>) -> CheckView {
    CheckView {
        name,
        status: Status::Warn,
        detail: detail.into(),
        hint,
    }
}

fn fail(name: &'static str, detail: impl Into<String>, hint: Option<String>) -> CheckView {
    CheckView {
        name,
        status: Status::Fail,
        detail: detail.into(),
        hint,
    }
}

/// A check that could not run because an earlier one failed.
fn not_checked(name: &'static str, reason: &str) -> CheckView {
    warn(name, format!("not checked: {reason}"), None)
}

/// A failed GitHub request as a failed check, keeping rate limits recognisable.
fn github_failure(name: &'static str, context: &str, error: &GitHubError) -> CheckView {
    match error {
        GitHubError::RateLimited { .. } => fail(
            name,
            format!("{context}: {error}"),
            Some("the token is out of requests, not necessarily wrong: wait for the reset or use another token".to_string()),
        ),
        _ => fail(name, format!("{context}: {error}"), error.hint()),
    }
}

/// Why the GitHub checks after the token check cannot say anything useful.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Blocked {
    /// 401: every request would fail the same way.
    Rejected,
    /// The quota is spent: every request would be refused until the reset.
    RateLimited,
    /// Transport errors or 5xx: every request would retry, then fail, slowly.
    Unreachable,
}

impl Blocked {
    fn from_error(error: &GitHubError) -> Option<Blocked> {
        match error {
            GitHubError::Unauthorized { .. } => Some(Blocked::Rejected),
            GitHubError::RateLimited { .. } => Some(Blocked::RateLimited),
            GitHubError::Transport { .. } | GitHubError::Server { .. } => {
                Some(Blocked::Unreachable)
            }
            _ => None,
        }
    }

    fn reason(self) -> &'static str {
        match self {
            Blocked::Rejected => "GitHub rejected the token",
            Blocked::RateLimited => "the token is rate limited",
            Blocked::Unreachable => "GitHub is unreachable",
        }
    }
}

/// Checks the token with `GET /user`. Returns its user, and what blocks the later checks.
async fn check_token(
    settings: &Settings,
    github: &GitHub,
    checks: &mut Vec<CheckView>,
) -> (Option<User>, Option<Blocked>) {
    const NAME: &str = "token";
    let Some(token) = settings.token() else {
        checks.push(fail(
            NAME,
            "no GitHub token found",
            Some(format!(
                "set {} (or {}), or run `gh auth login`",
                crate::env_vars::GH_TOKEN,
                crate::env_vars::GITHUB_TOKEN
            )),
        ));
        return (None, None);
    };
    match github.user().await {
        Ok(user) => {
            checks.push(ok(NAME, format!("{} (from {})", user.login, token.source)));
            (Some(user), None)
        }
        Err(error) => {
            let blocked = Blocked::from_error(&error);
            checks.push(match &error {
                GitHubError::Unauthorized { message } => fail(
                    NAME,
                    format!("GitHub rejected the token from {}: {message}", token.source),
                    Some("the token is invalid, expired or revoked: create a new one".to_string()),
                ),
                // Not the token's fault: say so, and let the rate_limit check fail instead.
                GitHubError::RateLimited { .. } => warn(
                    NAME,
                    format!("the token from {} could not be verified: {error}", token.source),
                    Some(
                        "the token is out of requests, not necessarily wrong: wait for the reset or use another token"
                            .to_string(),
                    ),
                ),
                _ => github_failure(
                    NAME,
                    &format!("could not check the token from {}", token.source),
                    &error,
                ),
            });
            (None, blocked)
        }
    }
}

async fn check_rate_limit(
    settings: &Settings,
    github: &GitHub,
    blocked: Option<Blocked>,
    checks: &mut Vec<CheckView>,
) {
    const NAME: &str = "rate_limit";
    // A rate-limited token is exactly what this check is for; the other blocks make it moot.
    if let Some(blocked @ (Blocked::Rejected | Blocked::Unreachable)) = blocked {
        checks.push(not_checked(NAME, blocked.reason()));
        return;
    }
    let reserve = u64::from(settings.config.github.rate_limit_reserve);
    match github.rate_limit().await {
        Ok(overview) => {
            let core = overview.resources.core;
            let reset = core
                .reset_at()
                .map(|reset| reset.format("%H:%M UTC").to_string())
                .unwrap_or_else(|| "unknown".to_string());
            let mut detail = format!("{}/{} core requests left", core.remaining, core.limit);
            if let Some(graphql) = overview.resources.graphql {
                detail.push_str(&format!(
                    ", {}/{} GraphQL points",
                    graphql.remaining, graphql.limit
                ));
            }
            if core.remaining == 0 {
                checks.push(fail(
                    NAME,
                    format!("rate limited until {reset}: {detail}"),
                    Some("wait for the reset or use another token".to_string()),
                ));
            } else if core.remaining < reserve {
                checks.push(warn(
                    NAME,
                    format!("{detail}, below the reserve of {reserve}; resets at {reset}"),
                    Some(
                        "crew starts no new work below the reserve ([github] rate_limit_reserve)"
                            .to_string(),
                    ),
                ));
            } else {
                checks.push(ok(NAME, format!("{detail}; resets at {reset}")));
            }
        }
        Err(error) => checks.push(github_failure(
            NAME,
            "could not read the rate limit",
            &error,
        )),
    }
}

async fn check_repository(
    repo: Option<&RepoSlug>,
    github: &GitHub,
    blocked: Option<Blocked>,
    checks: &mut Vec<CheckView>,
) -> Option<Repository> {
    const NAME: &str = "repository";
    if let Some(blocked) = blocked {
        checks.push(not_checked(NAME, blocked.reason()));
        return None;
    }
    let Some(repo) = repo else {
        checks.push(fail(
            NAME,
            "no repository given",
            Some("pass -R owner/name, set `repo` in crew.toml, or run inside a clone".to_string()),
        ));
        return None;
    };
    match github.repository(repo).await {
        Ok(repository) => {
            checks.push(ok(
                NAME,
                format!(
                    "{} (default branch {})",
                    repository.full_name, repository.default_branch
                ),
            ));
            Some(repository)
        }
        Err(error) => {
            checks.push(github_failure(NAME, &format!("cannot read {repo}"), &error));
            None
        }
    }
}

/// Returns whether the token's user may write (push refs, comment).
async fn check_permission(
    repo: Option<&RepoSlug>,
    repository: Option<&Repository>,
    user: Option<&User>,
    github: &GitHub,
    checks: &mut Vec<CheckView>,
) -> bool {
    const NAME: &str = "permission";
    let (Some(repo), Some(repository), Some(user)) = (repo, repository, user) else {
        checks.push(not_checked(
            NAME,
            "needs a working token and a readable repository",
        ));
        return false;
    };
    let hint = Some(format!(
        "crew needs write access to {repo}: add {} as a collaborator with the Write role",
        user.login
    ));
    let permission = match github.collaborator_permission(repo, &user.login).await {
        Ok(permission) => permission,
        // Users without push access may not read collaborator permissions; the repository's
        // own `permissions` says the same thing for the token's user.
        Err(GitHubError::Forbidden { .. } | GitHubError::NotFound { .. }) => {
            let push = repository
                .permissions
                .is_some_and(|p| p.push || p.maintain || p.admin);
            CollaboratorPermission {
                permission: if push { "write" } else { "read" }.to_string(),
                role_name: None,
            }
        }
        Err(error) => {
            checks.push(github_failure(NAME, "cannot read the permission", &error));
            return false;
        }
    };
    let role = permission
        .role_name
        .clone()
        .unwrap_or_else(|| permission.permission.clone());
    if permission.can_write() {
        checks.push(ok(NAME, format!("{} has {role} access", user.login)));
        true
    } else {
        checks.push(fail(
            NAME,
            format!("{} has only {role} access; crew needs write", user.login),
            hint,
        ));
        false
    }
}

async fn check_git_remote(settings: &Settings, repo: Option<&RepoSlug>) -> CheckView {
    const NAME: &str = "git_remote";
    let Some(root) = settings.repo_root.clone() else {
        return warn(
            NAME,
            "not inside a git clone",
            Some("workers need a local clone of the repository to create worktrees in".to_string()),
        );
    };
    let origin = tokio::task::spawn_blocking(move || origin_url(&root)).await;
    match origin {
        Ok(Ok(Some(url))) => match (crate::settings::repo_from_remote_url(&url), repo) {
            (Some(remote), Some(repo)) if &remote != repo => warn(
                NAME,
                format!("origin is {url}, which is {remote}, not {repo}"),
                Some("run crew inside a clone of the repository it works on".to_string()),
            ),
            _ => ok(NAME, format!("origin is {url}")),
        },
        Ok(Ok(None)) => warn(
            NAME,
            "this clone has no origin remote",
            Some("`git remote add origin <url>`: workers push their branches there".to_string()),
        ),
        Ok(Err(error)) => warn(
            NAME,
            format!("cannot read the origin remote: {error}"),
            None,
        ),
        Err(error) => warn(
            NAME,
            format!("cannot read the origin remote: {error}"),
            None,
        ),
    }
}

fn origin_url(root: &Path) -> Result<Option<String>, git2::Error> {
    let repository = git2::Repository::open(root)?;
    match repository.find_remote("origin") {
        Ok(remote) => Ok(remote.url().map(str::to_string)),
        Err(error) if error.code() == git2::ErrorCode::NotFound => Ok(None),
        Err(error) => Err(error),
    }
}

async fn check_base_branch(
    settings: &Settings,
    repo: Option<&RepoSlug>,
    repository: Option<&Repository>,
    github: &GitHub,
    checks: &mut Vec<CheckView>,
) -> Option<Branch> {
    const NAME: &str = "base_branch";
    let base = settings
        .config
        .base
        .clone()
        .or_else(|| repository.map(|repository| repository.default_branch.clone()));
    let (Some(repo), Some(base)) = (repo, base) else {
        checks.push(not_checked(NAME, "needs a readable repository"));
        return None;
    };
    match github.branch(repo, &base).await {
        Ok(branch) => {
            checks.push(ok(
                NAME,
                format!("{} at {}", branch.name, short_sha(&branch.commit.sha)),
            ));
            Some(branch)
        }
        Err(error @ GitHubError::NotFound { .. }) => {
            checks.push(fail(
                NAME,
                format!("branch `{base}` does not exist on GitHub ({error})"),
                Some("set `base` in crew.toml to an existing branch, or push it".to_string()),
            ));
            None
        }
        Err(error) => {
            checks.push(github_failure(
                NAME,
                &format!("cannot read branch `{base}`"),
                &error,
            ));
            None
        }
    }
}

async fn check_lease_refs(
    settings: &Settings,
    repo: Option<&RepoSlug>,
    base: Option<&Branch>,
    can_write: bool,
    github: &GitHub,
) -> CheckView {
    const NAME: &str = "lease_refs";
    let prefix = settings.config.lease_ref_prefix.as_str();
    let (Some(repo), Some(base)) = (repo, base) else {
        return not_checked(NAME, "needs the base branch");
    };
    if !can_write {
        return not_checked(NAME, "needs write access");
    }
    let name = format!("{prefix}doctor-probe-{}", probe_suffix());
    let tip = base.commit.sha.as_str();
    let tree = base.commit.commit.tree.sha.as_str();
    let fallback_hint = || {
        (prefix != FALLBACK_LEASE_PREFIX)
            .then(|| format!("set lease_ref_prefix = \"{FALLBACK_LEASE_PREFIX}\" in crew.toml"))
    };

    let first = match github
        .create_commit(repo, "crew doctor: lease ref probe", tree, &[tip])
        .await
    {
        Ok(commit) => commit,
        Err(error) => return github_failure(NAME, "cannot create a probe commit", &error),
    };
    if let Err(error) = github.create_ref(repo, &name, &first.sha).await {
        return match error {
            GitHubError::Validation { .. }
            | GitHubError::Forbidden { .. }
            | GitHubError::NotFound { .. } => fail(
                NAME,
                format!("GitHub refused to create a ref under {prefix}: {error}"),
                fallback_hint(),
            ),
            other => github_failure(NAME, &format!("cannot create {name}"), &other),
        };
    }

    // From here on the probe ref exists: whatever happens, it is deleted below.
    let outcome = probe_compare_and_swap(github, repo, &name, tree, tip, &first.sha).await;
    let cleanup = github.delete_ref(repo, &name).await;
    let mut check = match outcome {
        Ok(()) => ok(
            NAME,
            format!("{prefix} accepts create, fast-forward, and refuses non-fast-forward updates"),
        ),
        Err(check) => check,
    };
    if let Err(error) = cleanup {
        check = fail(
            NAME,
            format!(
                "{}; and the probe ref {name} could not be deleted: {error}",
                check.detail
            ),
            Some(format!("delete it by hand: git push origin :{name}")),
        );
    }
    check
}

/// The prefix suggested when the configured one is refused: branches are accepted everywhere.
const FALLBACK_LEASE_PREFIX: &str = "refs/heads/crew/leases/";

/// Fast-forwards the probe ref, then checks that moving it back to `tip` is refused.
async fn probe_compare_and_swap(
    github: &GitHub,
    repo: &RepoSlug,
    name: &str,
    tree: &str,
    tip: &str,
    first: &str,
) -> Result<(), CheckView> {
    const NAME: &str = "lease_refs";
    let second = github
        .create_commit(
            repo,
            "crew doctor: lease ref probe (renewal)",
            tree,
            &[first],
        )
        .await
        .map_err(|error| github_failure(NAME, "cannot create a probe commit", &error))?;
    github
        .update_ref(repo, name, &second.sha)
        .await
        .map_err(|error| {
            fail(
                NAME,
                format!("GitHub refused a fast-forward update of {name}: {error}"),
                Some(
                    "leases are renewed by fast-forwarding; crew cannot renew them here"
                        .to_string(),
                ),
            )
        })?;
    match github.update_ref(repo, name, tip).await {
        Err(GitHubError::Validation { .. }) => Ok(()),
        Ok(_) => Err(fail(
            NAME,
            format!("GitHub accepted a non-fast-forward update of {name} without force"),
            Some("leases rely on compare-and-swap; do not run crew against this host".to_string()),
        )),
        Err(error) => Err(github_failure(
            NAME,
            "the non-fast-forward check failed unexpectedly",
            &error,
        )),
    }
}

/// Enough randomness that two doctors probing at once do not collide.
fn probe_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or_default();
    format!("{:x}{:x}", nanos & 0xffff_ffff_ffff, std::process::id())
}

fn short_sha(sha: &str) -> &str {
    sha.get(..7).unwrap_or(sha)
}

/// The project check's query for an organisation-owned project (also checked against GitHub's
/// published schema by the contract tests).
pub const PROJECT_QUERY_ORG: &str =
    "query CrewDoctorProject($login: String!, $number: Int!, $field: String!) {
  organization(login: $login) {
    projectV2(number: $number) {
      title
      field(name: $field) {
        __typename
        ... on ProjectV2SingleSelectField { name options { name } }
      }
    }
  }
}";

/// [`PROJECT_QUERY_ORG`] for a user-owned project.
pub const PROJECT_QUERY_USER: &str =
    "query CrewDoctorProject($login: String!, $number: Int!, $field: String!) {
  user(login: $login) {
    projectV2(number: $number) {
      title
      field(name: $field) {
        __typename
        ... on ProjectV2SingleSelectField { name options { name } }
      }
    }
  }
}";

async fn check_project(
    settings: &Settings,
    repo: Option<&RepoSlug>,
    have_token: bool,
    github: &GitHub,
) -> CheckView {
    const NAME: &str = "project";
    let Some(project) = &settings.config.project else {
        return ok(NAME, "none configured (labels only)");
    };
    let Some(owner) = project
        .owner
        .clone()
        .or_else(|| repo.map(|repo| repo.owner().to_string()))
    else {
        return not_checked(NAME, "needs a project owner or a repository");
    };
    if !have_token {
        return not_checked(NAME, "needs a working token");
    }
    let variables = json!({
        "login": owner,
        "number": project.number,
        "field": project.status_field,
    });
    let (data, root) = match github.graphql(PROJECT_QUERY_ORG, variables.clone()).await {
        Ok(data) => (data, "organization"),
        Err(GitHubError::NotFound { .. }) => {
            match github.graphql(PROJECT_QUERY_USER, variables).await {
                Ok(data) => (data, "user"),
                Err(error @ GitHubError::NotFound { .. }) => {
                    return fail(
                        NAME,
                        format!("no project #{} owned by {owner}: {error}", project.number),
                        Some("check [project] owner and number in crew.toml".to_string()),
                    );
                }
                Err(error) => return github_failure(NAME, "cannot read the project", &error),
            }
        }
        Err(error) => return github_failure(NAME, "cannot read the project", &error),
    };
    project_check(project, &owner, &data[root]["projectV2"])
}

/// Judges the `projectV2` object the query returned.
fn project_check(project: &ProjectConfig, owner: &str, value: &serde_json::Value) -> CheckView {
    const NAME: &str = "project";
    if value.is_null() {
        return fail(
            NAME,
            format!("no project #{} owned by {owner}", project.number),
            Some("check [project] owner and number in crew.toml".to_string()),
        );
    }
    let title = value["title"].as_str().unwrap_or("?");
    let field = &value["field"];
    if field.is_null() {
        return fail(
            NAME,
            format!(
                "project \"{title}\" has no field named `{}`",
                project.status_field
            ),
            Some(
                "set [project] status_field to the board's single-select status field".to_string(),
            ),
        );
    }
    if field["__typename"].as_str() != Some("ProjectV2SingleSelectField") {
        return fail(
            NAME,
            format!(
                "field `{}` of \"{title}\" is not a single-select field",
                project.status_field
            ),
            None,
        );
    }
    let options: Vec<&str> = field["options"]
        .as_array()
        .map(|options| {
            options
                .iter()
                .filter_map(|option| option["name"].as_str())
                .collect()
        })
        .unwrap_or_default();
    let names = &project.status;
    let wanted = [
        &names.todo,
        &names.in_progress,
        &names.in_review,
        &names.blocked,
        &names.done,
    ];
    let missing: Vec<&str> = wanted
        .iter()
        .map(|name| name.as_str())
        .filter(|name| !options.contains(name))
        .collect();
    if missing.is_empty() {
        ok(
            NAME,
            format!(
                "\"{title}\" (#{}): `{}` has {}",
                project.number,
                project.status_field,
                options.join(", ")
            ),
        )
    } else {
        fail(
            NAME,
            format!(
                "`{}` of \"{title}\" lacks option{} {} (has {})",
                project.status_field,
                if missing.len() == 1 { "" } else { "s" },
                missing.join(", "),
                options.join(", ")
            ),
            Some("add the options on the board, or map them in [project.status]".to_string()),
        )
    }
}

fn check_agents(settings: &Settings) -> CheckView {
    const NAME: &str = "agents";
    let env = Env::from_process();
    let search_path = env.get("PATH").unwrap_or_default().to_string();
    let config = &settings.config;
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for name in config.agent_names() {
        let program = config
            .agents
            .get(name)
            .and_then(|agent| agent.command.first().cloned())
            .unwrap_or_else(|| name.to_string());
        match find_program(&program, &search_path) {
            Some(_) => found.push(name),
            None => missing.push(format!("{name} (`{program}`)")),
        }
    }
    if missing.is_empty() {
        ok(NAME, format!("on PATH: {}", found.join(", ")))
    } else {
        let mut detail = format!("not on PATH: {}", missing.join(", "));
        if !found.is_empty() {
            detail.push_str(&format!("; found: {}", found.join(", ")));
        }
        let default_missing = missing
            .iter()
            .any(|entry| entry.starts_with(&format!("{} (", config.workers.agent)));
        let hint = default_missing.then(|| {
            format!(
                "the default agent `{}` cannot run on this host; install it or change [workers] agent",
                config.workers.agent
            )
        });
        warn(NAME, detail, hint)
    }
}

/// Looks `program` up like a shell would (a path is checked as is).
fn find_program(program: &str, search_path: &str) -> Option<PathBuf> {
    if program.contains('/') {
        let path = PathBuf::from(program);
        return is_executable(&path).then_some(path);
    }
    std::env::split_paths(search_path)
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    let Ok(metadata) = std::fs::metadata(path) else {
        return false;
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        metadata.is_file() && metadata.permissions().mode() & 0o111 != 0
    }
    #[cfg(not(unix))]
    {
        metadata.is_file()
    }
}

async fn check_cache(settings: &Settings, repo: Option<&RepoSlug>) -> (CheckView, Option<Cache>) {
    const NAME: &str = "cache";
    let Some(repo) = repo else {
        return (not_checked(NAME, "needs a repository"), None);
    };
    let Some(path) =
        CacheLocation::from_settings(settings).file(&settings.api_url, repo.owner(), repo.name())
    else {
        return (
            warn(
                NAME,
                "no cache location: none of CREW_CACHE_DIR, XDG_CACHE_HOME, HOME is set",
                Some(
                    "set CREW_CACHE_DIR; without a cache every run spends full rate points"
                        .to_string(),
                ),
            ),
            None,
        );
    };
    let cache = match Cache::open(&path).await {
        Ok(cache) => cache,
        Err(error) => {
            return (
                fail(
                    NAME,
                    format!("cannot open {}: {error}", path.display()),
                    Some("the cache is disposable: delete the file and run again".to_string()),
                ),
                None,
            );
        }
    };
    let check = match cache.user_version().await {
        Ok(version) if version == SCHEMA_VERSION => {
            ok(NAME, format!("{} (schema v{version})", path.display()))
        }
        Ok(version) => fail(
            NAME,
            format!(
                "{} has schema v{version}, expected v{SCHEMA_VERSION}",
                path.display()
            ),
            Some("the cache is disposable: delete the file and run again".to_string()),
        ),
        Err(error) => fail(
            NAME,
            format!("cannot read {}: {error}", path.display()),
            None,
        ),
    };
    (check, Some(cache))
}

/// Runs the read side (sync, leases, fold) and reports the markers it ignored (DESIGN.md 2.1).
async fn check_markers(
    settings: &Settings,
    have_token: bool,
    have_repository: bool,
    cache_usable: bool,
    github: &GitHub,
) -> CheckView {
    const NAME: &str = "markers";
    if !have_token {
        return not_checked(NAME, "needs a working token");
    }
    if !have_repository {
        return not_checked(NAME, "needs a readable repository");
    }
    let Some(cache) = github.cache().filter(|_| cache_usable) else {
        return not_checked(NAME, "needs a usable cache");
    };
    match observe_with(
        github,
        cache,
        settings,
        Clock::System,
        ObserveOptions::default(),
    )
    .await
    {
        Ok(observed) => markers_check(&observed.issues),
        Err(error) => fail(
            NAME,
            format!(
                "cannot read the event comments: {}",
                error.chain().join(": ")
            ),
            error.hints().first().cloned(),
        ),
    }
}

/// How many issues [`markers_check`] names before "and N more".
const MARKER_ISSUES_LISTED: usize = 5;

/// Judges the folded issues: every ignored marker is worth a look.
fn markers_check(issues: &[ObservedIssue]) -> CheckView {
    const NAME: &str = "markers";
    let mut total = 0;
    let mut listed = Vec::new();
    for issue in issues
        .iter()
        .filter(|issue| !issue.state.ignored.is_empty())
    {
        // Reasons in the order they first occur on the issue, each with its count.
        let mut reasons: Vec<(&str, usize)> = Vec::new();
        for ignored in &issue.state.ignored {
            let label = ignore_label(&ignored.reason);
            match reasons.iter_mut().find(|(seen, _)| *seen == label) {
                Some((_, count)) => *count += 1,
                None => reasons.push((label, 1)),
            }
        }
        total += issue.state.ignored.len();
        let reasons: Vec<String> = reasons
            .iter()
            .map(|(label, count)| format!("{count} {label}"))
            .collect();
        listed.push(format!("#{} ({})", issue.number, reasons.join(", ")));
    }
    if total == 0 {
        return ok(NAME, "no ignored markers");
    }
    let more = listed.len().saturating_sub(MARKER_ISSUES_LISTED);
    listed.truncate(MARKER_ISSUES_LISTED);
    let mut detail = format!(
        "{total} ignored marker{}: {}",
        if total == 1 { "" } else { "s" },
        listed.join(", ")
    );
    if more > 0 {
        detail.push_str(&format!(" and {more} more"));
    }
    warn(
        NAME,
        detail,
        Some("crew show <issue> says why each was ignored".to_string()),
    )
}

/// A short word for why a marker was ignored (`crew show` gives the full reason).
fn ignore_label(reason: &IgnoreReason) -> &'static str {
    match reason {
        IgnoreReason::UntrustedAuthor { .. } => "untrusted",
        IgnoreReason::Malformed(_) => "malformed",
        IgnoreReason::UnknownVersion { .. } => "unknown version",
        IgnoreReason::StaleAttempt { .. } => "stale attempt",
        IgnoreReason::UnknownAttempt { .. } => "unknown attempt",
        IgnoreReason::IllegalTransition { .. } => "illegal transition",
        IgnoreReason::WrongIssue { .. } => "wrong issue",
        IgnoreReason::DuplicateOp { .. } => "duplicate op",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::ProjectStatusNames;

    fn project() -> ProjectConfig {
        ProjectConfig {
            owner: None,
            number: 1,
            status_field: "Status".to_string(),
            status: ProjectStatusNames::default(),
        }
    }

    #[test]
    fn project_with_all_options_is_ok() {
        let value = json!({"title": "Board", "field": {"__typename": "ProjectV2SingleSelectField",
            "name": "Status", "options": [{"name": "Todo"}, {"name": "In Progress"},
            {"name": "In Review"}, {"name": "Blocked"}, {"name": "Done"}]}});
        let check = project_check(&project(), "acme", &value);
        assert_eq!(check.status, Status::Ok, "{check:?}");
    }

    #[test]
    fn project_missing_options_fails_and_names_them() {
        let value = json!({"title": "Board", "field": {"__typename": "ProjectV2SingleSelectField",
            "name": "Status", "options": [{"name": "Todo"}, {"name": "Done"}]}});
        let check = project_check(&project(), "acme", &value);
        assert_eq!(check.status, Status::Fail);
        assert!(
            check.detail.contains("In Progress, In Review, Blocked"),
            "{}",
            check.detail
        );
        let check = project_check(&project(), "acme", &serde_json::Value::Null);
        assert_eq!(check.status, Status::Fail);
        assert!(check.detail.contains("no project #1 owned by acme"));
    }

    fn issue(number: u64, bodies: &[(&str, &str)]) -> ObservedIssue {
        let policy = crate::protocol::FoldPolicy::new("crew-bot");
        let events = bodies.iter().enumerate().map(|(id, (author, body))| {
            let association = if *author == "crew-bot" {
                "NONE"
            } else {
                "CONTRIBUTOR"
            };
            crate::protocol::ObservedEvent::from_comment(id as u64 + 1, *author, association, body)
        });
        ObservedIssue {
            number,
            title: String::new(),
            open: true,
            state: crate::protocol::fold(number, events, None, &policy),
            lease: None,
            newest_comment_id: None,
        }
    }

    #[test]
    fn markers_check_counts_ignored_markers_per_issue() {
        let spoof = "<!-- crew:v1 {\"kind\":\"approved\"} -->";
        let malformed = "<!-- crew:v1 {\"kind\": oops -->";
        assert_eq!(markers_check(&[issue(1, &[])]).status, Status::Ok);
        assert_eq!(markers_check(&[]).detail, "no ignored markers");

        let check = markers_check(&[
            issue(
                4,
                &[
                    ("outsider", spoof),
                    ("crew-bot", malformed),
                    ("outsider", spoof),
                ],
            ),
            issue(5, &[]),
            issue(9, &[("crew-bot", malformed)]),
        ]);
        assert_eq!(check.status, Status::Warn);
        assert_eq!(
            check.detail,
            "4 ignored markers: #4 (2 untrusted, 1 malformed), #9 (1 malformed)"
        );
        assert!(
            check
                .hint
                .as_deref()
                .is_some_and(|hint| hint.contains("crew show"))
        );

        let many: Vec<_> = (1..=7).map(|n| issue(n, &[("outsider", spoof)])).collect();
        let check = markers_check(&many);
        assert_eq!(
            check.detail,
            "7 ignored markers: #1 (1 untrusted), #2 (1 untrusted), #3 (1 untrusted), \
             #4 (1 untrusted), #5 (1 untrusted) and 2 more"
        );
    }

    #[test]
    fn report_fails_only_on_fail() {
        assert!(report(vec![ok("a", ""), warn("b", "", None)]).ok);
        assert!(!report(vec![ok("a", ""), fail("b", "", None)]).ok);
    }

    #[test]
    fn report_json_shape() -> Result<(), serde_json::Error> {
        let value = serde_json::to_value(report(vec![fail("token", "bad", Some("fix".into()))]))?;
        assert_eq!(
            value,
            json!({"ok": false, "checks": [{"name": "token", "status": "fail", "detail": "bad", "hint": "fix"}]})
        );
        Ok(())
    }

    #[test]
    fn programs_are_found_on_path() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let program = dir.path().join("fake-agent");
        std::fs::write(&program, "#!/bin/sh\n")?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755))?;
        }
        let search_path = dir.path().display().to_string();
        assert_eq!(
            find_program("fake-agent", &search_path),
            Some(program.clone())
        );
        assert_eq!(find_program("missing-agent", &search_path), None);
        assert_eq!(
            find_program(&program.display().to_string(), ""),
            Some(program)
        );
        Ok(())
    }
}
