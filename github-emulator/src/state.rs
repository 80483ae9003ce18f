//! The emulator's state: plain data behind one mutex.
//!
//! Handlers lock, read or change, and unlock; nothing is held across an `.await`. What GitHub would
//! keep (users, repositories, issues, comments, pull requests, projects) is serialisable and
//! persisted to `--state-dir`; what only this process needs (rate windows, statistics, faults) is
//! not.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use chrono::{DateTime, Duration, SubsecRound, Utc};
use serde::{Deserialize, Serialize};

use crate::faults::Faults;
use crate::gitrepo;
use crate::stats::Stats;
use crate::world::World;

/// A repository permission, ordered from least to most.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    None,
    Read,
    Triage,
    Write,
    Maintain,
    Admin,
}

impl Permission {
    pub fn parse(text: &str) -> anyhow::Result<Permission> {
        Ok(match text {
            "none" => Permission::None,
            "read" | "pull" => Permission::Read,
            "triage" => Permission::Triage,
            "write" | "push" => Permission::Write,
            "maintain" => Permission::Maintain,
            "admin" => Permission::Admin,
            other => anyhow::bail!("unknown permission {other:?}"),
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::None => "none",
            Permission::Read => "read",
            Permission::Triage => "triage",
            Permission::Write => "write",
            Permission::Maintain => "maintain",
            Permission::Admin => "admin",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct User {
    pub id: u64,
    pub login: String,
    pub name: Option<String>,
    /// `User`, `Bot` or `Organization`.
    pub r#type: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Org {
    pub login: String,
    /// login → `admin` | `member`
    pub members: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Label {
    pub id: u64,
    pub name: String,
    pub color: String,
    pub description: Option<String>,
    pub default: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IssueState {
    Open,
    Closed,
}

impl IssueState {
    pub fn as_str(self) -> &'static str {
        match self {
            IssueState::Open => "open",
            IssueState::Closed => "closed",
        }
    }
}

/// An issue, or the issue half of a pull request (they share one number space, as on GitHub).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Issue {
    pub id: u64,
    pub number: u64,
    pub title: String,
    pub body: Option<String>,
    pub user: String,
    pub state: IssueState,
    pub state_reason: Option<String>,
    pub labels: Vec<String>,
    pub assignees: Vec<String>,
    pub locked: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
    pub closed_by: Option<String>,
    /// Present when this issue is a pull request.
    pub pull: Option<Pull>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pull {
    pub id: u64,
    pub head_ref: String,
    pub head_sha: String,
    pub base_ref: String,
    pub base_sha: String,
    pub draft: bool,
    pub merged_at: Option<DateTime<Utc>>,
    pub merged_by: Option<String>,
    pub merge_commit_sha: Option<String>,
    pub reviews: Vec<Review>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Review {
    pub id: u64,
    pub user: String,
    pub body: String,
    /// `APPROVED`, `CHANGES_REQUESTED`, `COMMENTED`, `PENDING`.
    pub state: String,
    pub commit_id: String,
    pub submitted_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Comment {
    pub id: u64,
    pub issue_number: u64,
    pub user: String,
    pub body: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkflowDispatch {
    pub id: u64,
    pub repo: String,
    pub workflow_id: String,
    pub r#ref: String,
    pub inputs: serde_json::Value,
    pub actor: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Repo {
    pub id: u64,
    pub owner: String,
    pub name: String,
    pub private: bool,
    pub default_branch: String,
    pub collaborators: BTreeMap<String, Permission>,
    pub labels: Vec<Label>,
    /// number → issue (pull requests included).
    pub issues: BTreeMap<u64, Issue>,
    /// comment id → comment, for every issue of this repository.
    pub comments: BTreeMap<u64, Comment>,
    pub next_number: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub pushed_at: DateTime<Utc>,
    pub refused_ref_prefixes: Vec<String>,
    /// The bare repository holding this repository's git data.
    pub git_dir: PathBuf,
    /// Sub-issues: parent number → sub-issue numbers in GitHub's order (see [`Repo::add_sub_issue`]).
    #[serde(default)]
    pub sub_issues: BTreeMap<u64, Vec<u64>>,
}

/// GitHub's limit on sub-issues per parent.
pub const MAX_SUB_ISSUES: usize = 100;

impl Repo {
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.owner, self.name)
    }

    /// The parent issue of issue `number`, if it is a sub-issue.
    pub fn parent_of(&self, number: u64) -> Option<u64> {
        self.sub_issues
            .iter()
            .find(|(_, children)| children.contains(&number))
            .map(|(parent, _)| *parent)
    }

    /// The sub-issues of issue `number`, in order.
    pub fn sub_issues_of(&self, number: u64) -> &[u64] {
        self.sub_issues.get(&number).map_or(&[], Vec::as_slice)
    }

    /// Makes `child` the last sub-issue of `parent`, with GitHub's rules: both are issues (not
    /// pull requests) of this repository, a child has one parent, no cycles, at most
    /// [`MAX_SUB_ISSUES`] per parent. The error says which rule was broken.
    pub fn add_sub_issue(&mut self, parent: u64, child: u64) -> Result<(), String> {
        for number in [parent, child] {
            match self.issues.get(&number) {
                None => return Err(format!("issue #{number} does not exist")),
                Some(issue) if issue.pull.is_some() => {
                    return Err(format!("#{number} is a pull request, not an issue"));
                }
                Some(_) => {}
            }
        }
        if let Some(current) = self.parent_of(child) {
            return Err(format!("issue #{child} already has a parent (#{current})"));
        }
        let mut ancestor = Some(parent);
        while let Some(number) = ancestor {
            if number == child {
                return Err(format!(
                    "issue #{child} is an ancestor of #{parent}: a sub-issue cycle"
                ));
            }
            ancestor = self.parent_of(number);
        }
        let children = self.sub_issues.entry(parent).or_default();
        if children.len() >= MAX_SUB_ISSUES {
            return Err(format!(
                "issue #{parent} already has {MAX_SUB_ISSUES} sub-issues"
            ));
        }
        children.push(child);
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProjectOption {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProjectItem {
    pub id: u64,
    /// `owner/name` of the repository holding the issue or pull request.
    pub repo: String,
    pub number: u64,
    /// The selected option id of the Status field.
    pub status: Option<String>,
    pub archived: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Project {
    pub id: u64,
    pub owner: String,
    pub number: u64,
    pub title: String,
    /// Database id of the single-select `Status` field.
    pub status_field_id: u64,
    pub status_options: Vec<ProjectOption>,
    /// Database id of the built-in `Title` text field.
    pub title_field_id: u64,
    pub items: Vec<ProjectItem>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Everything GitHub would remember. Serialised as a whole to `state.json` in `--state-dir`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Data {
    pub users: BTreeMap<String, User>,
    /// token → login
    pub tokens: BTreeMap<String, String>,
    pub orgs: BTreeMap<String, Org>,
    /// lower-case `owner/name` → repository
    pub repos: BTreeMap<String, Repo>,
    pub projects: Vec<Project>,
    pub dispatches: Vec<WorkflowDispatch>,
    pub rate_limits: BTreeMap<String, u64>,
    pub next_id: u64,
    /// Seconds added to the wall clock (`POST /_emulator/clock`), so tests can move time.
    pub clock_offset_seconds: i64,
}

/// One rate-limit window of one user (or anonymous caller) for one resource.
#[derive(Debug, Clone)]
pub struct RateWindow {
    pub limit: u64,
    pub used: u64,
    pub reset: DateTime<Utc>,
}

/// The whole state: persisted data plus this process's rate windows, statistics and faults.
#[derive(Debug, Default)]
pub struct State {
    pub data: Data,
    /// (login or "" for anonymous, resource) → window
    pub rate: BTreeMap<(String, String), RateWindow>,
    pub stats: Stats,
    pub faults: Faults,
    /// Where `state.json` is written after every change, when persistence is on.
    pub state_dir: Option<PathBuf>,
    /// Runs workflow dispatches as local processes when configured (`/_emulator/actions/runner`).
    pub runner: crate::rest::actions::Runner,
    /// Every ref write through the API, in the order GitHub applied them
    /// (`GET /_emulator/ref_writes`): the record tests check compare-and-swap outcomes against.
    pub ref_writes: Vec<RefWrite>,
}

/// One applied ref write (create, update or delete).
#[derive(Debug, Clone, Serialize)]
pub struct RefWrite {
    /// Position in the order of application, from 1.
    pub seq: u64,
    /// `owner/name`.
    pub repo: String,
    #[serde(rename = "ref")]
    pub ref_name: String,
    /// The new target; `None` for a delete.
    pub sha: Option<String>,
    /// The target commit's message, when it is a commit (a lease's JSON, for lease refs).
    pub message: Option<String>,
    pub at: DateTime<Utc>,
}

impl State {
    /// Records a ref write that was just applied.
    pub fn record_ref_write(
        &mut self,
        repo: String,
        ref_name: String,
        sha: Option<String>,
        message: Option<String>,
    ) {
        let seq = self.ref_writes.len() as u64 + 1;
        // Not `now()`: GitHub's seconds are too coarse to order a write against a lease's
        // sub-second expiry.
        let at = Utc::now() + Duration::seconds(self.data.clock_offset_seconds);
        self.ref_writes.push(RefWrite {
            seq,
            repo,
            ref_name,
            sha,
            message,
            at,
        });
    }
}

pub const DEFAULT_CORE_LIMIT: u64 = 5000;
pub const DEFAULT_GRAPHQL_LIMIT: u64 = 5000;
pub const ANONYMOUS_CORE_LIMIT: u64 = 60;

impl State {
    /// Build the state of a world, creating bare repositories under `root`.
    pub fn from_world(world: &World, root: &Path) -> anyhow::Result<State> {
        let mut data = Data {
            next_id: 1000,
            rate_limits: world.rate_limits.clone(),
            ..Data::default()
        };
        let now = Utc::now().trunc_subsecs(0);
        for user in &world.users {
            let id = data.alloc_id();
            data.users.insert(
                user.login.to_lowercase(),
                User {
                    id,
                    login: user.login.clone(),
                    name: user.name.clone(),
                    r#type: user.r#type.clone(),
                    created_at: now,
                },
            );
            if let Some(token) = &user.token {
                data.tokens.insert(token.clone(), user.login.clone());
            }
        }
        for org in &world.orgs {
            let id = data.alloc_id();
            data.users.insert(
                org.login.to_lowercase(),
                User {
                    id,
                    login: org.login.clone(),
                    name: None,
                    r#type: "Organization".to_string(),
                    created_at: now,
                },
            );
            data.orgs.insert(
                org.login.to_lowercase(),
                Org {
                    login: org.login.clone(),
                    members: org
                        .members
                        .iter()
                        .map(|(k, v)| (k.to_lowercase(), v.clone()))
                        .collect(),
                },
            );
        }
        for spec in &world.repos {
            if !data.users.contains_key(&spec.owner.to_lowercase()) {
                anyhow::bail!(
                    "world: repository {}/{} names an owner that is neither a user nor an organisation",
                    spec.owner,
                    spec.name
                );
            }
            let git_dir = root
                .join("repos")
                .join(&spec.owner)
                .join(format!("{}.git", spec.name));
            gitrepo::init_bare(&git_dir, &spec.default_branch, &spec.files)?;
            let mut collaborators = BTreeMap::new();
            for (login, permission) in &spec.collaborators {
                collaborators.insert(login.to_lowercase(), Permission::parse(permission)?);
            }
            let repo_id = data.alloc_id();
            let mut repo = Repo {
                id: repo_id,
                owner: spec.owner.clone(),
                name: spec.name.clone(),
                private: spec.private,
                default_branch: spec.default_branch.clone(),
                collaborators,
                labels: Vec::new(),
                issues: BTreeMap::new(),
                comments: BTreeMap::new(),
                next_number: 1,
                created_at: now,
                updated_at: now,
                pushed_at: now,
                refused_ref_prefixes: spec.refused_ref_prefixes.clone(),
                git_dir,
                sub_issues: BTreeMap::new(),
            };
            for label in &spec.labels {
                let id = data.alloc_id();
                repo.labels.push(Label {
                    id,
                    name: label.name.clone(),
                    color: label.color.clone(),
                    description: label.description.clone(),
                    default: false,
                });
            }
            for issue in &spec.issues {
                let author = issue
                    .author
                    .clone()
                    .or_else(|| world.users.first().map(|u| u.login.clone()))
                    .unwrap_or_else(|| spec.owner.clone());
                let number = repo.next_number;
                repo.next_number += 1;
                let id = data.alloc_id();
                let closed = issue.state == "closed";
                repo.issues.insert(
                    number,
                    Issue {
                        id,
                        number,
                        title: issue.title.clone(),
                        body: issue.body.clone(),
                        user: author,
                        state: if closed {
                            IssueState::Closed
                        } else {
                            IssueState::Open
                        },
                        state_reason: closed.then(|| "completed".to_string()),
                        labels: issue.labels.clone(),
                        assignees: issue.assignees.clone(),
                        locked: false,
                        created_at: now,
                        updated_at: now,
                        closed_at: closed.then_some(now),
                        closed_by: None,
                        pull: None,
                    },
                );
                for comment in &issue.comments {
                    let id = data.alloc_id();
                    repo.comments.insert(
                        id,
                        Comment {
                            id,
                            issue_number: number,
                            user: comment.author.clone(),
                            body: comment.body.clone(),
                            created_at: now,
                            updated_at: now,
                        },
                    );
                }
            }
            for (parent, children) in &spec.sub_issues {
                for child in children {
                    repo.add_sub_issue(*parent, *child).map_err(|why| {
                        anyhow::anyhow!(
                            "world: repository {}/{}: sub-issue #{child} of #{parent}: {why}",
                            spec.owner,
                            spec.name
                        )
                    })?;
                }
            }
            data.repos.insert(repo.full_name().to_lowercase(), repo);
        }
        for spec in &world.projects {
            if !data.users.contains_key(&spec.owner.to_lowercase()) {
                anyhow::bail!(
                    "world: project {} names an unknown owner {}",
                    spec.number,
                    spec.owner
                );
            }
            let id = data.alloc_id();
            let status_field_id = data.alloc_id();
            let title_field_id = data.alloc_id();
            let status_options = spec
                .status_options
                .iter()
                .enumerate()
                .map(|(index, name)| ProjectOption {
                    // GitHub's option ids are short hex strings.
                    id: format!("{:08x}", (status_field_id << 8) + index as u64),
                    name: name.clone(),
                })
                .collect();
            data.projects.push(Project {
                id,
                owner: spec.owner.clone(),
                number: spec.number,
                title: spec.title.clone(),
                status_field_id,
                status_options,
                title_field_id,
                items: Vec::new(),
                created_at: now,
                updated_at: now,
            });
        }
        Ok(State {
            data,
            ..State::default()
        })
    }

    /// Load persisted state from `dir/state.json`, if it exists.
    pub fn load(dir: &Path) -> anyhow::Result<Option<State>> {
        let path = dir.join("state.json");
        if !path.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path)?;
        let data: Data = serde_json::from_str(&text)
            .map_err(|e| anyhow::anyhow!("corrupt emulator state {}: {e}", path.display()))?;
        Ok(Some(State {
            data,
            state_dir: Some(dir.to_path_buf()),
            ..State::default()
        }))
    }

    /// Write the persisted part, atomically, when a state dir is configured.
    pub fn persist(&self) -> anyhow::Result<()> {
        let Some(dir) = &self.state_dir else {
            return Ok(());
        };
        let tmp = dir.join("state.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec(&self.data)?)?;
        std::fs::rename(&tmp, dir.join("state.json"))?;
        Ok(())
    }

    /// The emulator's clock: wall time plus the offset tests may add. GitHub keeps seconds.
    pub fn now(&self) -> DateTime<Utc> {
        (Utc::now() + Duration::seconds(self.data.clock_offset_seconds)).trunc_subsecs(0)
    }

    pub fn user(&self, login: &str) -> Option<&User> {
        self.data.users.get(&login.to_lowercase())
    }

    pub fn repo(&self, owner: &str, name: &str) -> Option<&Repo> {
        self.data
            .repos
            .get(&format!("{owner}/{name}").to_lowercase())
    }

    pub fn repo_mut(&mut self, owner: &str, name: &str) -> Option<&mut Repo> {
        self.data
            .repos
            .get_mut(&format!("{owner}/{name}").to_lowercase())
    }

    /// The permission `login` (None: anonymous) has on `repo`, as GitHub computes it.
    pub fn permission(&self, repo: &Repo, login: Option<&str>) -> Permission {
        let public = if repo.private {
            Permission::None
        } else {
            Permission::Read
        };
        let Some(login) = login else {
            return public;
        };
        let login = login.to_lowercase();
        if repo.owner.to_lowercase() == login {
            return Permission::Admin;
        }
        let mut best = public;
        if let Some(permission) = repo.collaborators.get(&login) {
            best = best.max(*permission);
        }
        if let Some(org) = self.data.orgs.get(&repo.owner.to_lowercase()) {
            match org.members.get(&login).map(String::as_str) {
                Some("admin") => best = best.max(Permission::Admin),
                // An organisation's default base permission is `read`.
                Some(_) => best = best.max(Permission::Read),
                None => {}
            }
        }
        best
    }

    /// GitHub's `author_association` of `login` on `repo`.
    pub fn author_association(&self, repo: &Repo, login: &str) -> &'static str {
        let lower = login.to_lowercase();
        if repo.owner.to_lowercase() == lower {
            return "OWNER";
        }
        if let Some(org) = self.data.orgs.get(&repo.owner.to_lowercase())
            && org.members.contains_key(&lower)
        {
            return "MEMBER";
        }
        if repo.collaborators.contains_key(&lower) {
            return "COLLABORATOR";
        }
        let merged_before = repo.issues.values().any(|issue| {
            issue.user.to_lowercase() == lower
                && issue.pull.as_ref().is_some_and(|p| p.merged_at.is_some())
        });
        if merged_before { "CONTRIBUTOR" } else { "NONE" }
    }

    /// The rate window of `login` for `resource`, rolled over when its hour has passed.
    pub fn rate_window(&mut self, login: Option<&str>, resource: &str) -> &mut RateWindow {
        let now = self.now();
        let limit =
            match login {
                None => ANONYMOUS_CORE_LIMIT,
                Some(_) => self.data.rate_limits.get(resource).copied().unwrap_or(
                    if resource == "graphql" {
                        DEFAULT_GRAPHQL_LIMIT
                    } else {
                        DEFAULT_CORE_LIMIT
                    },
                ),
            };
        let key = (
            login.map(str::to_lowercase).unwrap_or_default(),
            resource.to_string(),
        );
        let window = self.rate.entry(key).or_insert_with(|| RateWindow {
            limit,
            used: 0,
            reset: now + Duration::hours(1),
        });
        if window.reset <= now {
            window.used = 0;
            window.reset = now + Duration::hours(1);
        }
        window
    }
}

impl Data {
    /// The next database id. One counter for everything keeps ids unique and increasing, which
    /// is all GitHub promises (comment ids grow with time).
    pub fn alloc_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }
}

/// GitHub-style opaque node ids: a type prefix and the base64 of the database id.
pub fn node_id(prefix: &str, id: u64) -> String {
    format!(
        "{prefix}_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id.to_be_bytes())
    )
}

/// The inverse of [`node_id`]: `(prefix, database id)`.
pub fn parse_node_id(node_id: &str) -> Option<(&str, u64)> {
    // Prefixes never hold `_`; URL-safe base64 may, so split at the first one.
    let (prefix, encoded) = node_id.split_once('_')?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(encoded)
        .ok()?;
    let bytes: [u8; 8] = bytes.try_into().ok()?;
    Some((prefix, u64::from_be_bytes(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_round_trip() {
        let id = node_id("I", 123_456);
        assert!(id.starts_with("I_"));
        assert_eq!(parse_node_id(&id), Some(("I", 123_456)));
        assert_eq!(parse_node_id("I_garbage!"), None);
        // 1023 encodes with a `_` inside the base64 part.
        let id = node_id("PVT", 1023);
        assert_eq!(parse_node_id(&id), Some(("PVT", 1023)), "{id}");
    }

    #[test]
    fn default_world_roles() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::from_world(&World::default(), dir.path()).unwrap();
        let repo = state.repo("acme", "widgets").unwrap();
        assert_eq!(
            state.permission(repo, Some("maintainer")),
            Permission::Admin
        );
        assert_eq!(state.permission(repo, Some("crew-bot")), Permission::Write);
        assert_eq!(state.permission(repo, Some("outsider")), Permission::Read);
        assert_eq!(state.author_association(repo, "maintainer"), "MEMBER");
        assert_eq!(state.author_association(repo, "crew-bot"), "COLLABORATOR");
        assert_eq!(state.author_association(repo, "outsider"), "NONE");
    }
}
