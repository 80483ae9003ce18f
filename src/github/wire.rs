//! crew's own view of GitHub's JSON: only the fields crew reads.
//!
//! Deliberately separate from the emulator's types (DESIGN.md section 1): if both sides shared a
//! struct, a field GitHub spells differently would be wrong on both sides and no test would see
//! it. Unknown fields are ignored (GitHub adds fields all the time); fields crew relies on are
//! required, so a missing one is a loud decode error, not a silent default.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// `GET /user`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct User {
    pub login: String,
    pub id: u64,
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
}

/// `GET /repos/{owner}/{repo}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Repository {
    pub id: u64,
    pub name: String,
    pub full_name: String,
    pub owner: Owner,
    pub default_branch: String,
    #[serde(default)]
    pub private: bool,
    #[serde(default)]
    pub clone_url: Option<String>,
    #[serde(default)]
    pub html_url: Option<String>,
    /// The token's permissions on the repository (present for authenticated requests).
    #[serde(default)]
    pub permissions: Option<RepositoryPermissions>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Owner {
    pub login: String,
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct RepositoryPermissions {
    #[serde(default)]
    pub admin: bool,
    #[serde(default)]
    pub maintain: bool,
    #[serde(default)]
    pub push: bool,
    #[serde(default)]
    pub triage: bool,
    #[serde(default)]
    pub pull: bool,
}

/// `GET /repos/{owner}/{repo}/collaborators/{username}/permission`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CollaboratorPermission {
    /// `admin`, `write`, `read` or `none` (GitHub folds maintain into write, triage into read).
    pub permission: String,
    #[serde(default)]
    pub role_name: Option<String>,
}

impl CollaboratorPermission {
    /// True for the permissions that can push refs and write issues: what crew needs.
    pub fn can_write(&self) -> bool {
        matches!(self.permission.as_str(), "admin" | "write")
            || matches!(
                self.role_name.as_deref(),
                Some("admin" | "maintain" | "write")
            )
    }
}

/// `GET /rate_limit`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RateLimitOverview {
    pub resources: RateLimitResources,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RateLimitResources {
    pub core: RateLimitWindow,
    #[serde(default)]
    pub graphql: Option<RateLimitWindow>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct RateLimitWindow {
    pub limit: u64,
    pub remaining: u64,
    /// Epoch seconds.
    pub reset: i64,
    #[serde(default)]
    pub used: Option<u64>,
}

impl RateLimitWindow {
    pub fn reset_at(&self) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp(self.reset, 0)
    }
}

/// `GET /repos/{owner}/{repo}/branches/{branch}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Branch {
    pub name: String,
    pub commit: BranchCommit,
    #[serde(default)]
    pub protected: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct BranchCommit {
    pub sha: String,
    pub commit: BranchCommitDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct BranchCommitDetail {
    pub tree: ShaRef,
}

/// `{"sha": …}` (trees, parents).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct ShaRef {
    pub sha: String,
}

/// A git reference (`/git/ref`, `/git/refs`, `/git/matching-refs`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct GitRef {
    /// Full name, `refs/...`.
    #[serde(rename = "ref")]
    pub name: String,
    pub object: GitObject,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct GitObject {
    pub sha: String,
    #[serde(rename = "type")]
    pub kind: String,
}

/// A git commit object (`/git/commits`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct GitCommit {
    pub sha: String,
    pub message: String,
    pub tree: ShaRef,
    #[serde(default)]
    pub parents: Vec<ShaRef>,
}

/// Body of `POST /repos/{owner}/{repo}/git/commits`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewCommit<'a> {
    pub message: &'a str,
    pub tree: &'a str,
    pub parents: Vec<&'a str>,
}

/// An issue comment.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct IssueComment {
    pub id: u64,
    /// The issue the comment belongs to (`…/issues/42`): repository-wide lists mix issues.
    pub issue_url: String,
    #[serde(default)]
    pub body: Option<String>,
    pub user: Option<Owner>,
    #[serde(default)]
    pub author_association: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[serde(default)]
    pub html_url: Option<String>,
}

/// An issue (or the issue view of a pull request) as `GET /repos/{owner}/{repo}/issues` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Issue {
    pub id: u64,
    pub number: u64,
    pub title: String,
    #[serde(default)]
    pub body: Option<String>,
    /// `open` or `closed`.
    pub state: String,
    pub user: Option<Owner>,
    #[serde(default)]
    pub labels: Vec<IssueLabel>,
    #[serde(default)]
    pub assignees: Option<Vec<Owner>>,
    pub comments: u64,
    #[serde(default)]
    pub author_association: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
    /// Present when the issue is a pull request.
    #[serde(default)]
    pub pull_request: Option<PullRequestLink>,
}

impl Issue {
    pub fn is_pull_request(&self) -> bool {
        self.pull_request.is_some()
    }

    pub fn label_names(&self) -> impl Iterator<Item = &str> {
        self.labels.iter().map(IssueLabel::name)
    }
}

/// GitHub's description allows an issue's label to be a bare name or a label object.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum IssueLabel {
    Name(String),
    Object(Label),
}

impl IssueLabel {
    pub fn name(&self) -> &str {
        match self {
            IssueLabel::Name(name) => name,
            IssueLabel::Object(label) => &label.name,
        }
    }
}

/// A label of a repository or an issue.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Label {
    pub name: String,
    #[serde(default)]
    pub color: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PullRequestLink {
    pub url: String,
    #[serde(default)]
    pub merged_at: Option<DateTime<Utc>>,
}
