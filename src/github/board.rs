//! Mirrors of an issue's state (DESIGN.md 2.4): the Projects (v2) item's single-select status,
//! and `crew:*` labels.
//!
//! Mirrors are written after the event comment, which stays the source of truth: both are pure
//! functions of the folded state, idempotent, and skipped when already right.
//!
//! A failed mirror write is not lost, and finding it costs no request (DESIGN.md 2.4, 7):
//! - labels are in the mirror the sync keeps, so the next fill or loop cycle sees a label that
//!   does not match the folded state and writes it ([`crate::schedule::repair_labels`]);
//! - the board is not in the mirror (reading it cannot be conditional), so [`Board::set_state`]
//!   records in the cache (`project_items`, see [`crate::cache`]) the item id and the status it
//!   wrote, or the status it failed to write. The next cycle retries the owed writes and writes
//!   the status of issues whose recorded status differs from their folded state
//!   ([`crate::schedule::repair_board`]); an issue crew never wrote is never touched. The rows
//!   live in the client's cache: the repository's cache file on this host, which every crew
//!   command here (dispatch, fill, the maintainer's and the agent's commands) builds its
//!   client with. A writer elsewhere (a runner of the `actions` runtime) records
//!   in its own cache; this host's cycle then finds its recorded status behind the folded
//!   state and writes it once more (one mutation).
//!
//! State → status and label (see [`board_status`] and [`state_label`]):
//!
//! | state                          | status        | label              |
//! |--------------------------------|---------------|--------------------|
//! | unassigned                     | Todo          | none               |
//! | assigned, working, handover    | In Progress   | `crew:working`     |
//! | blocked                        | Blocked       | `crew:blocked`     |
//! | in_review, approved            | In Review     | `crew:review`      |
//! | completed                      | Done          | none               |
//! | failed, needs_human            | Blocked       | `crew:needs-human` |
//! | cancelled                      | left as is    | none               |
//!
//! `failed` and `needs_human` go to Blocked because the board has no better column: the work is
//! stopped until a human acts; the `crew:needs-human` label (when labels are mirrored) says why.
//! `cancelled` leaves the card where a human put it (cancelling is a human's decision).
//!
//! Costs (requests): [`GitHub::set_status`] is 1 GraphQL query when the status is already right,
//! 2 when it changes, 3 when the issue is first added to the project. It needs the project's
//! ids: [`Board::resolve`] reads them in one query (two for a user-owned project), but
//! [`Board::set_state`] reads them in the same query as the issue's item on first use
//! ([`GitHub::set_status_resolving`]), so even a cold process pays 1/2/3. With a cache that
//! knows the project's ids and the issue's item (any write by this host before),
//! [`Board::set_state`] is 1 mutation; if the item is gone from the project, it falls back to
//! the full path.
//! [`GitHub::mirror_labels_from`] with known labels is 0 when already right, otherwise 1 POST
//! plus one DELETE per stale `crew:*` label; [`GitHub::mirror_labels`] adds one conditional GET
//! of the issue (free when unchanged and cached).

use std::collections::BTreeMap;

use http::Method;
use serde_json::{Value, json};

use super::transport::{Request, Resend};
use super::{GitHub, GitHubError, RepoSlug};
use crate::cache::Cache;
use crate::protocol::State;
use crate::settings::{ProjectConfig, ProjectStatusNames, Settings};

/// The project, its status field and the field's options, for an organisation's project.
pub const BOARD_QUERY_ORG: &str =
    "query CrewBoardOrg($login: String!, $number: Int!, $field: String!) {
  organization(login: $login) {
    projectV2(number: $number) {
      id
      field(name: $field) {
        __typename
        ... on ProjectV2SingleSelectField { id options { id name } }
      }
    }
  }
}";

/// [`BOARD_QUERY_ORG`] for a user-owned project.
pub const BOARD_QUERY_USER: &str =
    "query CrewBoardUser($login: String!, $number: Int!, $field: String!) {
  user(login: $login) {
    projectV2(number: $number) {
      id
      field(name: $field) {
        __typename
        ... on ProjectV2SingleSelectField { id options { id name } }
      }
    }
  }
}";

/// An issue's node id and its project items with their current status option.
pub const BOARD_ITEM_QUERY: &str =
    "query CrewBoardItem($owner: String!, $repo: String!, $number: Int!, $field: String!) {
  repository(owner: $owner, name: $repo) {
    issue(number: $number) {
      id
      projectItems(first: 50, includeArchived: false) {
        nodes {
          id
          project { id }
          fieldValueByName(name: $field) {
            __typename
            ... on ProjectV2ItemFieldSingleSelectValue { optionId }
          }
        }
      }
    }
  }
}";

/// [`BOARD_QUERY_ORG`] and [`BOARD_ITEM_QUERY`] in one request, for a cold start.
pub const BOARD_ITEM_QUERY_ORG: &str = "query CrewBoardItemOrg($login: String!, $number: Int!, $field: String!, $owner: String!, $repo: String!, $issue: Int!) {
  organization(login: $login) {
    projectV2(number: $number) {
      id
      field(name: $field) {
        __typename
        ... on ProjectV2SingleSelectField { id options { id name } }
      }
    }
  }
  repository(owner: $owner, name: $repo) {
    issue(number: $issue) {
      id
      projectItems(first: 50, includeArchived: false) {
        nodes {
          id
          project { id }
          fieldValueByName(name: $field) {
            __typename
            ... on ProjectV2ItemFieldSingleSelectValue { optionId }
          }
        }
      }
    }
  }
}";

/// [`BOARD_ITEM_QUERY_ORG`] for a user-owned project.
pub const BOARD_ITEM_QUERY_USER: &str = "query CrewBoardItemUser($login: String!, $number: Int!, $field: String!, $owner: String!, $repo: String!, $issue: Int!) {
  user(login: $login) {
    projectV2(number: $number) {
      id
      field(name: $field) {
        __typename
        ... on ProjectV2SingleSelectField { id options { id name } }
      }
    }
  }
  repository(owner: $owner, name: $repo) {
    issue(number: $issue) {
      id
      projectItems(first: 50, includeArchived: false) {
        nodes {
          id
          project { id }
          fieldValueByName(name: $field) {
            __typename
            ... on ProjectV2ItemFieldSingleSelectValue { optionId }
          }
        }
      }
    }
  }
}";

/// Adds an issue to a project; GitHub returns the existing item when it is already there.
pub const BOARD_ADD_MUTATION: &str = "mutation CrewBoardAdd($project: ID!, $content: ID!) {
  addProjectV2ItemById(input: {projectId: $project, contentId: $content}) {
    item { id }
  }
}";

/// Sets an item's single-select status.
pub const BOARD_SET_STATUS_MUTATION: &str =
    "mutation CrewBoardSetStatus($project: ID!, $item: ID!, $field: ID!, $option: String!) {
  updateProjectV2ItemFieldValue(input: {projectId: $project, itemId: $item, fieldId: $field, value: {singleSelectOptionId: $option}}) {
    projectV2Item { id }
  }
}";

/// Every label crew mirrors; any other label is left alone.
pub const CREW_LABELS: [&str; 4] = [
    "crew:working",
    "crew:blocked",
    "crew:review",
    "crew:needs-human",
];

/// A status column, independent of the names a project gives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatusKey {
    Todo,
    InProgress,
    InReview,
    Blocked,
    Done,
}

impl StatusKey {
    /// The key as written in `[project.status]` (`in_progress`).
    pub fn as_str(self) -> &'static str {
        match self {
            StatusKey::Todo => "todo",
            StatusKey::InProgress => "in_progress",
            StatusKey::InReview => "in_review",
            StatusKey::Blocked => "blocked",
            StatusKey::Done => "done",
        }
    }

    /// The option name this project uses for the column.
    pub fn name(self, names: &ProjectStatusNames) -> &str {
        match self {
            StatusKey::Todo => &names.todo,
            StatusKey::InProgress => &names.in_progress,
            StatusKey::InReview => &names.in_review,
            StatusKey::Blocked => &names.blocked,
            StatusKey::Done => &names.done,
        }
    }
}

/// The status column for `state`; `None` leaves the card where it is (see the module docs).
pub fn board_status(state: State) -> Option<StatusKey> {
    match state {
        State::Unassigned => Some(StatusKey::Todo),
        State::Assigned | State::Working | State::Handover => Some(StatusKey::InProgress),
        State::Blocked | State::Failed | State::NeedsHuman => Some(StatusKey::Blocked),
        State::InReview | State::Approved => Some(StatusKey::InReview),
        State::Completed => Some(StatusKey::Done),
        State::Cancelled => None,
    }
}

/// The one `crew:*` label for `state`, if any (every other `crew:*` label is removed).
pub fn state_label(state: State) -> Option<&'static str> {
    match state {
        State::Assigned | State::Working | State::Handover => Some("crew:working"),
        State::Blocked => Some("crew:blocked"),
        State::InReview | State::Approved => Some("crew:review"),
        State::Failed | State::NeedsHuman => Some("crew:needs-human"),
        State::Unassigned | State::Completed | State::Cancelled => None,
    }
}

/// Whether `crew:*` labels are mirrored: when no project is configured. (A setting to mirror
/// them alongside a project would be read here.)
pub fn labels_enabled(settings: &Settings) -> bool {
    settings.config.project.is_none()
}

/// What crew needs to set a project's status field, resolved once per process (and kept in the
/// cache, see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BoardIds {
    pub project_id: String,
    pub status_field_id: String,
    /// The status field's name (items are read by it).
    pub status_field: String,
    /// Option name → option id.
    pub options: BTreeMap<String, String>,
}

impl BoardIds {
    /// The option id for a status name.
    pub fn option(&self, name: &str) -> Option<&str> {
        self.options.get(name).map(String::as_str)
    }
}

/// What [`GitHub::set_status`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusChange {
    /// The item already had the status: nothing written.
    Unchanged,
    /// The item's status was set.
    Set,
    /// The issue was added to the project, then its status set.
    AddedAndSet,
}

/// What [`GitHub::mirror_labels_from`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelChange {
    pub added: Option<String>,
    pub removed: Vec<String>,
}

impl LabelChange {
    pub fn is_unchanged(&self) -> bool {
        self.added.is_none() && self.removed.is_empty()
    }
}

/// A repository's mirrors: the project (if any) and whether labels are written. The project's
/// ids are read on the first status write (in the same query as the issue's item) and kept.
#[derive(Debug)]
pub struct Board {
    project: Option<(ProjectConfig, String)>,
    ids: std::sync::Mutex<Option<BoardIds>>,
    labels: bool,
}

impl Board {
    /// The configured project's ids (`None` when no project is configured): one GraphQL query
    /// for an organisation's project, two for a user's. The owner defaults to the repository's.
    pub async fn resolve(
        github: &GitHub,
        settings: &Settings,
    ) -> Result<Option<BoardIds>, GitHubError> {
        let Some(project) = &settings.config.project else {
            return Ok(None);
        };
        let owner = match (&project.owner, &settings.repo) {
            (Some(owner), _) => owner.clone(),
            (None, Some(repo)) => repo.owner().to_string(),
            (None, None) => {
                return Err(GitHubError::Unexpected {
                    route: "POST /graphql".to_string(),
                    message: "the project needs an owner or a repository".to_string(),
                });
            }
        };
        Board::resolve_project(github, project, &owner)
            .await
            .map(Some)
    }

    /// [`Board::resolve`] for an explicit project and owner.
    pub async fn resolve_project(
        github: &GitHub,
        project: &ProjectConfig,
        owner: &str,
    ) -> Result<BoardIds, GitHubError> {
        let variables = json!({
            "login": owner,
            "number": project.number,
            "field": project.status_field,
        });
        let (data, root) = match github.graphql(BOARD_QUERY_ORG, variables.clone()).await {
            Ok(data) if !data["organization"].is_null() => (data, "organization"),
            Ok(_) | Err(GitHubError::NotFound { .. }) => {
                (github.graphql(BOARD_QUERY_USER, variables).await?, "user")
            }
            Err(error) => return Err(error),
        };
        board_ids(&data[root]["projectV2"], project, owner)
    }

    /// The mirrors `settings` ask for on `repo` (no request: ids are read on first use).
    pub fn new(settings: &Settings, repo: &RepoSlug) -> Board {
        Board::with(
            settings.config.project.clone(),
            repo,
            labels_enabled(settings),
        )
    }

    /// A board for an explicit project (`None`: labels only) and label choice.
    pub fn with(project: Option<ProjectConfig>, repo: &RepoSlug, labels: bool) -> Board {
        Board {
            project: project.map(|project| {
                let owner = project
                    .owner
                    .clone()
                    .unwrap_or_else(|| repo.owner().to_string());
                (project, owner)
            }),
            ids: std::sync::Mutex::new(None),
            labels,
        }
    }

    /// Whether `crew:*` labels are written.
    pub fn mirrors_labels(&self) -> bool {
        self.labels
    }

    /// Sets the project status for `state` (nothing when no project or [`board_status`] is
    /// `None`): 1 request when already right, 2 to change it, 3 when the issue is added; 1 when
    /// the cache knows the item. The outcome is recorded in the cache (the status written, or
    /// the status owed after a failure) for [`crate::schedule::repair_board`].
    pub async fn set_state(
        &self,
        github: &GitHub,
        repo: &RepoSlug,
        issue: u64,
        state: State,
    ) -> Result<Option<StatusChange>, GitHubError> {
        let (Some((project, owner)), Some(key)) = (&self.project, board_status(state)) else {
            return Ok(None);
        };
        let name = key.name(&project.status);
        let rows = project_key(project, owner);
        // The rows live in the client's cache (every crew command on this host builds its
        // client with it); a client without one records nothing.
        let cache = github.cache();
        let result = self
            .write_status(github, cache, project, owner, &rows, repo, issue, name)
            .await;
        if let Some(cache) = cache {
            // The cache only saves work: a failure to record is logged, never the write's fate.
            let recorded = match &result {
                Ok((_, item)) => {
                    cache
                        .record_board_status(&rows, issue, Some(item), name)
                        .await
                }
                Err(_) => cache.record_board_wanted(&rows, issue, name).await,
            };
            if let Err(error) = recorded {
                tracing::debug!("#{issue}: could not record the board write: {error}");
            }
        }
        result.map(|(change, _)| Some(change))
    }

    /// The key of this board's rows in the cache (`owner/number`), when a project is configured.
    pub fn project_key(&self) -> Option<String> {
        self.project
            .as_ref()
            .map(|(project, owner)| project_key(project, owner))
    }

    /// The status name this board shows for `state` (`None`: no project, or left as is).
    pub fn status_name(&self, state: State) -> Option<&str> {
        let (project, _) = self.project.as_ref()?;
        Some(board_status(state)?.name(&project.status))
    }

    /// The writes of [`Board::set_state`]: with the project's ids and the item known (in this
    /// process or the cache), one mutation; otherwise, or when that fails because the item or
    /// an id is gone, the full path. Returns the item id with the change.
    #[allow(clippy::too_many_arguments)]
    async fn write_status(
        &self,
        github: &GitHub,
        cache: Option<&Cache>,
        project: &ProjectConfig,
        owner: &str,
        rows: &str,
        repo: &RepoSlug,
        issue: u64,
        name: &str,
    ) -> Result<(StatusChange, String), GitHubError> {
        let mut ids = self
            .ids
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let mut fresh = ids.is_some();
        if ids.is_none()
            && let Some(cache) = cache
            && let Ok(Some(stored)) = cache.board_ids(rows).await
        {
            ids = serde_json::from_str(&stored).ok();
        }
        let item = match cache {
            Some(cache) => cache
                .board_row(rows, issue)
                .await
                .ok()
                .flatten()
                .and_then(|row| row.item_id),
            None => None,
        };
        if let (Some(known), Some(item)) = (&ids, item) {
            match github.set_item_status(known, &item, name).await {
                Ok(()) => return Ok((StatusChange::Set, item)),
                // The item was removed from the project, or the project's ids changed: forget
                // what the cache said and take the full path from a fresh read.
                Err(GitHubError::NotFound { .. } | GitHubError::GraphQl { .. }) => {
                    if let Some(cache) = cache {
                        let _ = cache.forget_board_item(rows, issue).await;
                    }
                    ids = None;
                    fresh = false;
                }
                Err(error) => return Err(error),
            }
        }
        let (ids, change, item) = match ids {
            Some(known) => match github.set_status_item(&known, repo, issue, name).await {
                Ok((change, item)) => (known, change, item),
                // Stored ids may be stale (the field was recreated): read them again.
                Err(GitHubError::NotFound { .. } | GitHubError::GraphQl { .. }) if !fresh => {
                    github
                        .set_status_resolving_item(project, owner, repo, issue, name)
                        .await?
                }
                Err(error) => return Err(error),
            },
            None => {
                github
                    .set_status_resolving_item(project, owner, repo, issue, name)
                    .await?
            }
        };
        if let Some(cache) = cache
            && let Ok(text) = serde_json::to_string(&ids)
            && let Err(error) = cache.store_board_ids(rows, Some(&text)).await
        {
            tracing::debug!("could not keep the project's ids: {error}");
        }
        *self
            .ids
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(ids);
        Ok((change, item))
    }

    /// Writes both mirrors for `state`. Each is attempted even when the other failed; the first
    /// error is returned (the next reconcile writes them again).
    pub async fn mirror(
        &self,
        github: &GitHub,
        repo: &RepoSlug,
        issue: u64,
        state: State,
    ) -> Result<(), GitHubError> {
        let mut first_error = self.set_state(github, repo, issue, state).await.err();
        if self.labels
            && let Err(error) = github.mirror_labels(repo, issue, state).await
        {
            first_error.get_or_insert(error);
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// `owner/number`: how the cache names a project's rows.
fn project_key(project: &ProjectConfig, owner: &str) -> String {
    format!("{owner}/{}", project.number)
}

fn board_ids(
    project_value: &Value,
    project: &ProjectConfig,
    owner: &str,
) -> Result<BoardIds, GitHubError> {
    let missing = |message: String| GitHubError::NotFound {
        route: "POST /graphql".to_string(),
        message,
    };
    if project_value.is_null() {
        return Err(missing(format!(
            "no project #{} owned by {owner}",
            project.number
        )));
    }
    let field = &project_value["field"];
    let (Some(project_id), Some(field_id)) = (project_value["id"].as_str(), field["id"].as_str())
    else {
        return Err(missing(format!(
            "project #{} has no single-select field {:?}",
            project.number, project.status_field
        )));
    };
    let options = field["options"]
        .as_array()
        .map(|options| {
            options
                .iter()
                .filter_map(|option| {
                    Some((
                        option["name"].as_str()?.to_string(),
                        option["id"].as_str()?.to_string(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(BoardIds {
        project_id: project_id.to_string(),
        status_field_id: field_id.to_string(),
        status_field: project.status_field.clone(),
        options,
    })
}

impl GitHub {
    /// Sets the status of `issue`'s item on the project to the option named `status`, adding the
    /// issue to the project first when it is not on it. Nothing is written when the status is
    /// already right (one query). Both mutations are idempotent on GitHub, so they are retried
    /// like reads.
    pub async fn set_status(
        &self,
        ids: &BoardIds,
        repo: &RepoSlug,
        issue: u64,
        status: &str,
    ) -> Result<StatusChange, GitHubError> {
        self.set_status_item(ids, repo, issue, status)
            .await
            .map(|(change, _)| change)
    }

    /// [`GitHub::set_status`], returning the item's id too.
    async fn set_status_item(
        &self,
        ids: &BoardIds,
        repo: &RepoSlug,
        issue: u64,
        status: &str,
    ) -> Result<(StatusChange, String), GitHubError> {
        let data = self
            .graphql(
                BOARD_ITEM_QUERY,
                json!({
                    "owner": repo.owner(),
                    "repo": repo.name(),
                    "number": issue,
                    "field": ids.status_field,
                }),
            )
            .await?;
        self.apply_status(ids, &data["repository"]["issue"], repo, issue, status)
            .await
    }

    /// Sets the status of a known project item: one mutation, no query. Fails with
    /// [`GitHubError::NotFound`] when the item is no longer on the project.
    pub async fn set_item_status(
        &self,
        ids: &BoardIds,
        item: &str,
        status: &str,
    ) -> Result<(), GitHubError> {
        let option = ids.option(status).ok_or_else(|| GitHubError::NotFound {
            route: "POST /graphql".to_string(),
            message: format!("the project's status field has no option {status:?}"),
        })?;
        self.graphql_idempotent_mutation(
            BOARD_SET_STATUS_MUTATION,
            json!({
                "project": ids.project_id,
                "item": item,
                "field": ids.status_field_id,
                "option": option,
            }),
        )
        .await
        .map(drop)
    }

    /// [`GitHub::set_status`] without resolved ids: one query reads the project's ids and the
    /// issue's items together (a second one when the owner turns out to be a user), so a cold
    /// process pays no extra request. Returns the ids for the next calls.
    pub async fn set_status_resolving(
        &self,
        project: &ProjectConfig,
        owner: &str,
        repo: &RepoSlug,
        issue: u64,
        status: &str,
    ) -> Result<(BoardIds, StatusChange), GitHubError> {
        self.set_status_resolving_item(project, owner, repo, issue, status)
            .await
            .map(|(ids, change, _)| (ids, change))
    }

    /// [`GitHub::set_status_resolving`], returning the item's id too.
    async fn set_status_resolving_item(
        &self,
        project: &ProjectConfig,
        owner: &str,
        repo: &RepoSlug,
        issue: u64,
        status: &str,
    ) -> Result<(BoardIds, StatusChange, String), GitHubError> {
        let variables = json!({
            "login": owner,
            "number": project.number,
            "field": project.status_field,
            "owner": repo.owner(),
            "repo": repo.name(),
            "issue": issue,
        });
        let (data, root) = match self.graphql(BOARD_ITEM_QUERY_ORG, variables.clone()).await {
            Ok(data) if !data["organization"].is_null() => (data, "organization"),
            Ok(_) => (
                self.graphql(BOARD_ITEM_QUERY_USER, variables).await?,
                "user",
            ),
            // Not an organisation, or no such issue: the user query tells which.
            Err(GitHubError::NotFound {
                message: org_message,
                ..
            }) => match self.graphql(BOARD_ITEM_QUERY_USER, variables).await {
                Ok(data) => (data, "user"),
                Err(GitHubError::NotFound { route, message }) => {
                    return Err(GitHubError::NotFound {
                        route,
                        message: format!("{org_message}; {message}"),
                    });
                }
                Err(error) => return Err(error),
            },
            Err(error) => return Err(error),
        };
        let ids = board_ids(&data[root]["projectV2"], project, owner)?;
        let (change, item) = self
            .apply_status(&ids, &data["repository"]["issue"], repo, issue, status)
            .await?;
        Ok((ids, change, item))
    }

    /// The writes of [`GitHub::set_status`], given the issue's node as the item query read it.
    /// Returns the item's id with the change.
    async fn apply_status(
        &self,
        ids: &BoardIds,
        node: &Value,
        repo: &RepoSlug,
        issue: u64,
        status: &str,
    ) -> Result<(StatusChange, String), GitHubError> {
        let option = ids.option(status).ok_or_else(|| GitHubError::NotFound {
            route: "POST /graphql".to_string(),
            message: format!("the project's status field has no option {status:?}"),
        })?;
        let Some(content_id) = node["id"].as_str() else {
            return Err(GitHubError::NotFound {
                route: "POST /graphql".to_string(),
                message: format!("no issue #{issue} in {repo}"),
            });
        };
        let item = node["projectItems"]["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|item| item["project"]["id"].as_str() == Some(ids.project_id.as_str()));
        let (item_id, change) = match item {
            Some(item) => {
                let item_id = string_at(item, "id")?;
                if item["fieldValueByName"]["optionId"].as_str() == Some(option) {
                    return Ok((StatusChange::Unchanged, item_id));
                }
                (item_id, StatusChange::Set)
            }
            None => {
                let added = self
                    .graphql_idempotent_mutation(
                        BOARD_ADD_MUTATION,
                        json!({ "project": ids.project_id, "content": content_id }),
                    )
                    .await?;
                (
                    string_at(&added["addProjectV2ItemById"]["item"], "id")?,
                    StatusChange::AddedAndSet,
                )
            }
        };
        self.set_item_status(ids, &item_id, status).await?;
        Ok((change, item_id))
    }

    /// [`GitHub::mirror_labels_from`] with the issue's labels read by a conditional GET.
    pub async fn mirror_labels(
        &self,
        repo: &RepoSlug,
        issue: u64,
        state: State,
    ) -> Result<LabelChange, GitHubError> {
        let Some(current) = self.issue(repo, issue).await? else {
            return Err(GitHubError::NotFound {
                route: "GET /repos/{owner}/{repo}/issues/{issue_number}".to_string(),
                message: format!("no issue #{issue} in {repo}"),
            });
        };
        let names: Vec<&str> = current.label_names().collect();
        self.mirror_labels_from(repo, issue, state, &names).await
    }

    /// Makes `issue` carry exactly the `crew:*` label for `state` (see [`state_label`]), given
    /// its `current` labels: adds it (GitHub creates a missing repository label) and removes
    /// any other `crew:*` label. Writes nothing when already right.
    pub async fn mirror_labels_from(
        &self,
        repo: &RepoSlug,
        issue: u64,
        state: State,
        current: &[&str],
    ) -> Result<LabelChange, GitHubError> {
        let wanted = state_label(state);
        let mut change = LabelChange::default();
        if let Some(wanted) = wanted
            && !current.contains(&wanted)
        {
            let request = Request::write(
                Method::POST,
                "POST /repos/{owner}/{repo}/issues/{issue_number}/labels",
                format!(
                    "/repos/{}/{}/issues/{issue}/labels",
                    repo.owner(),
                    repo.name()
                ),
                Some(json!({ "labels": [wanted] })),
                Resend::Safe,
            );
            self.send(&request, None, |_| Ok(())).await?;
            change.added = Some(wanted.to_string());
        }
        for stale in current
            .iter()
            .filter(|name| CREW_LABELS.contains(name) && Some(**name) != wanted)
        {
            let request = Request::write(
                Method::DELETE,
                "DELETE /repos/{owner}/{repo}/issues/{issue_number}/labels/{name}",
                format!(
                    "/repos/{}/{}/issues/{issue}/labels/{}",
                    repo.owner(),
                    repo.name(),
                    stale.replace(':', "%3A")
                ),
                None,
                Resend::Safe,
            );
            match self.send(&request, None, |_| Ok(())).await {
                Ok(()) | Err(GitHubError::NotFound { .. }) => {}
                Err(error) => return Err(error),
            }
            change.removed.push((*stale).to_string());
        }
        Ok(change)
    }
}

fn string_at(value: &Value, key: &str) -> Result<String, GitHubError> {
    value[key]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| GitHubError::Unexpected {
            route: "POST /graphql".to_string(),
            message: format!("GraphQL answer lacks {key}"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_has_a_decided_mirror() {
        for state in State::ALL {
            let label = state_label(state);
            assert!(label.is_none_or(|label| CREW_LABELS.contains(&label)));
            if state == State::Cancelled {
                assert_eq!(board_status(state), None);
            } else {
                assert!(board_status(state).is_some(), "{state}");
            }
        }
        assert_eq!(board_status(State::Working), Some(StatusKey::InProgress));
        assert_eq!(
            StatusKey::InProgress.name(&ProjectStatusNames::default()),
            "In Progress"
        );
    }
}
