//! The world an emulator starts from: users and their tokens, organisations, repositories with
//! their issues, comments, labels and files, and Projects (v2) boards.
//!
//! A world is plain data (JSON), so a test or `crew demo` can describe exactly the GitHub it needs
//! and `--world FILE` can load one. [`World::default`] is the world DESIGN.md section 6 names.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Everything the emulator knows at start-up.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct World {
    #[serde(default)]
    pub users: Vec<WorldUser>,
    #[serde(default)]
    pub orgs: Vec<WorldOrg>,
    #[serde(default)]
    pub repos: Vec<WorldRepo>,
    #[serde(default)]
    pub projects: Vec<WorldProject>,
    /// Points per hour for each rate-limit resource (`core`, `graphql`, `search`).
    #[serde(default)]
    pub rate_limits: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WorldUser {
    pub login: String,
    /// The personal access token that authenticates as this user, if any.
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    /// `User` or `Bot`.
    #[serde(default = "default_user_type")]
    pub r#type: String,
}

fn default_user_type() -> String {
    "User".to_string()
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WorldOrg {
    pub login: String,
    /// Member logins and their organisation role (`admin` or `member`).
    #[serde(default)]
    pub members: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WorldRepo {
    pub owner: String,
    pub name: String,
    #[serde(default)]
    pub private: bool,
    #[serde(default = "default_branch")]
    pub default_branch: String,
    /// Collaborator logins and their permission (`admin`, `maintain`, `write`, `triage`, `read`).
    #[serde(default)]
    pub collaborators: BTreeMap<String, String>,
    #[serde(default)]
    pub labels: Vec<WorldLabel>,
    #[serde(default)]
    pub issues: Vec<WorldIssue>,
    /// Files of the first commit on the default branch (path → content).
    #[serde(default = "default_files")]
    pub files: BTreeMap<String, String>,
    /// Ref prefixes the git data API refuses (to emulate a host that rejects custom namespaces).
    #[serde(default)]
    pub refused_ref_prefixes: Vec<String>,
    /// Sub-issue relations: a parent issue's number → its sub-issues' numbers, in GitHub's
    /// order (numbers are 1-based positions in `issues`). GitHub's rules hold: an issue has at
    /// most one parent, no cycles, at most 100 sub-issues per parent, pull requests are neither.
    #[serde(default)]
    pub sub_issues: BTreeMap<u64, Vec<u64>>,
}

fn default_branch() -> String {
    "main".to_string()
}

fn default_files() -> BTreeMap<String, String> {
    BTreeMap::from([(
        "README.md".to_string(),
        "# widgets\n\nA repository served by github-emulator.\n".to_string(),
    )])
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WorldLabel {
    pub name: String,
    #[serde(default = "default_color")]
    pub color: String,
    #[serde(default)]
    pub description: Option<String>,
}

fn default_color() -> String {
    "ededed".to_string()
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WorldIssue {
    pub title: String,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub author: Option<String>,
    #[serde(default)]
    pub labels: Vec<String>,
    #[serde(default)]
    pub assignees: Vec<String>,
    /// `open` or `closed`.
    #[serde(default = "default_state")]
    pub state: String,
    #[serde(default)]
    pub comments: Vec<WorldComment>,
}

fn default_state() -> String {
    "open".to_string()
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WorldComment {
    pub author: String,
    pub body: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WorldProject {
    /// Organisation or user login owning the project.
    pub owner: String,
    pub number: u64,
    pub title: String,
    /// Options of the single-select `Status` field, in order.
    #[serde(default = "default_status_options")]
    pub status_options: Vec<String>,
}

fn default_status_options() -> Vec<String> {
    ["Todo", "In Progress", "In Review", "Blocked", "Done"]
        .map(String::from)
        .to_vec()
}

impl Default for World {
    /// DESIGN.md section 6: org `acme`, repo `acme/widgets`, three users, project 1.
    fn default() -> Self {
        let user = |login: &str, token: &str, kind: &str| WorldUser {
            login: login.to_string(),
            token: Some(token.to_string()),
            name: None,
            r#type: kind.to_string(),
        };
        World {
            users: vec![
                user("maintainer", "emu-maintainer", "User"),
                user("crew-bot", "emu-bot", "User"),
                user("outsider", "emu-outsider", "User"),
            ],
            orgs: vec![WorldOrg {
                login: "acme".to_string(),
                members: BTreeMap::from([("maintainer".to_string(), "admin".to_string())]),
            }],
            repos: vec![WorldRepo {
                owner: "acme".to_string(),
                name: "widgets".to_string(),
                private: false,
                default_branch: default_branch(),
                collaborators: BTreeMap::from([
                    ("maintainer".to_string(), "admin".to_string()),
                    ("crew-bot".to_string(), "write".to_string()),
                ]),
                labels: ["bug", "enhancement", "crew"]
                    .iter()
                    .map(|name| WorldLabel {
                        name: name.to_string(),
                        color: default_color(),
                        description: None,
                    })
                    .collect(),
                issues: Vec::new(),
                files: default_files(),
                refused_ref_prefixes: Vec::new(),
                sub_issues: BTreeMap::new(),
            }],
            projects: vec![WorldProject {
                owner: "acme".to_string(),
                number: 1,
                title: "Widgets".to_string(),
                status_options: default_status_options(),
            }],
            rate_limits: BTreeMap::new(),
        }
    }
}

impl World {
    /// Load a world from a JSON file.
    pub fn load(path: &std::path::Path) -> anyhow::Result<World> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read world file {}: {e}", path.display()))?;
        serde_json::from_str(&text)
            .map_err(|e| anyhow::anyhow!("invalid world file {}: {e}", path.display()))
    }
}
