//! Issues, their comments, labels and assignees, as GitHub's REST API serves them.
//!
//! - `GET|POST /repos/{owner}/{repo}/issues`, `GET|PATCH /repos/{owner}/{repo}/issues/{issue_number}`
//!   (this file);
//! - comments, per issue and repository-wide ([`comments`]);
//! - repository labels, issue labels and assignees ([`labels`]).
//!
//! Pull requests share the issues' number space and appear in issue lists and under
//! `/issues/{issue_number}` with their `pull_request` object, as on GitHub.
//!
//! Permissions follow GitHub: anyone who can read a repository may open issues and comment;
//! labels, assignees and milestones sent by someone without triage access are silently dropped;
//! only an issue's author or a triage+ user may edit it.

use std::collections::BTreeMap;

use axum::Router;
use axum::extract::{Extension, Path, State as AxumState};
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::http::{self, ApiError, AppState, Caller, GhJson};
use crate::render;
use crate::rest::visible_repo;
use crate::state::{Issue, IssueState, Label, Permission, Repo, State};

mod comments;
mod labels;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/repos/{owner}/{repo}/issues",
            get(list_issues).post(create_issue),
        )
        .route(
            "/repos/{owner}/{repo}/issues/{issue_number}",
            get(get_issue).patch(update_issue),
        )
        .merge(comments::router())
        .merge(labels::router())
}

// ---------------------------------------------------------------------------------------------
// Helpers shared by the issue, comment and label routes.

/// `{issue_number}` / `{comment_id}`: GitHub answers 404 for a path segment that is not a number.
pub(crate) fn parse_number(text: &str) -> Result<u64, ApiError> {
    text.parse::<u64>().map_err(|_| ApiError::not_found())
}

/// Case-insensitive name comparison, as GitHub compares logins and label names.
pub(crate) fn same_name(a: &str, b: &str) -> bool {
    a == b || a.to_lowercase() == b.to_lowercase()
}

/// The issue (or pull request) `number` of a repository, or 404.
pub(crate) fn find_issue(repo: &Repo, number: u64) -> Result<&Issue, ApiError> {
    repo.issues.get(&number).ok_or_else(ApiError::not_found)
}

/// A repository the previous check found, for the write half of a handler.
pub(crate) fn repo_mut<'s>(state: &'s mut State, owner: &str, name: &str) -> &'s mut Repo {
    state
        .repo_mut(owner, name)
        .expect("the repository was found earlier under the same lock")
}

/// GitHub's 422 for a body field of the wrong JSON type.
pub(crate) fn wrong_type(field: &str, value: &Value, expected: &str) -> ApiError {
    ApiError::unprocessable(format!(
        "Invalid request.\n\nFor 'properties/{field}', {value} is not {expected}."
    ))
}

/// The body as a JSON object (GitHub's 422 otherwise).
pub(crate) fn body_object(body: &Value) -> Result<&Map<String, Value>, ApiError> {
    body.as_object().ok_or_else(|| {
        ApiError::unprocessable(format!("Invalid request.\n\n{body} is not an object."))
    })
}

/// An optional string field: `None` when absent, `Some(None)` for `null`.
pub(crate) fn optional_string(
    body: &Map<String, Value>,
    field: &str,
) -> Result<Option<Option<String>>, ApiError> {
    match body.get(field) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(text)) => Ok(Some(Some(text.clone()))),
        Some(other) => Err(wrong_type(field, other, "a string")),
    }
}

/// A list of names: strings, or objects carrying the name under `key` (GitHub accepts both for
/// labels (`name`) and assignees (`login`)).
pub(crate) fn name_list(field: &str, value: &Value, key: &str) -> Result<Vec<String>, ApiError> {
    let Value::Array(items) = value else {
        return Err(wrong_type(field, value, "an array"));
    };
    items
        .iter()
        .map(|item| match item {
            Value::String(text) => Ok(text.trim().to_string()),
            Value::Object(object) => match object.get(key) {
                Some(Value::String(text)) => Ok(text.trim().to_string()),
                _ => Err(wrong_type(
                    field,
                    item,
                    &format!("a string or an object with `{key}`"),
                )),
            },
            other => Err(wrong_type(field, other, "a string")),
        })
        .filter(|name| !matches!(name, Ok(n) if n.is_empty()))
        .collect()
}

/// The repository's canonical names for `wanted`, creating labels that do not exist yet (GitHub
/// creates them, grey, when an issue is labelled with an unknown name). Duplicates collapse.
pub(crate) fn ensure_labels(
    state: &mut State,
    owner: &str,
    name: &str,
    wanted: &[String],
) -> Vec<String> {
    let mut result: Vec<String> = Vec::new();
    for wanted in wanted {
        let existing = state.repo(owner, name).and_then(|repo| {
            repo.labels
                .iter()
                .find(|label| same_name(&label.name, wanted))
                .map(|label| label.name.clone())
        });
        let canonical = match existing {
            Some(found) => found,
            None => {
                let id = state.data.alloc_id();
                repo_mut(state, owner, name).labels.push(Label {
                    id,
                    name: wanted.clone(),
                    color: "ededed".to_string(),
                    description: None,
                    default: false,
                });
                wanted.clone()
            }
        };
        if !result.iter().any(|have| same_name(have, &canonical)) {
            result.push(canonical);
        }
    }
    result
}

/// The canonical login of `login` if it may be assigned issues of `repo`: collaborators with
/// push access and members of the owning organisation.
pub(crate) fn assignable(state: &State, repo: &Repo, login: &str) -> Option<String> {
    let user = state.user(login)?;
    if user.r#type == "Organization" {
        return None;
    }
    let member = state
        .data
        .orgs
        .get(&repo.owner.to_lowercase())
        .is_some_and(|org| org.members.contains_key(&user.login.to_lowercase()));
    (member || state.permission(repo, Some(&user.login)) >= Permission::Write)
        .then(|| user.login.clone())
}

/// A 201 with GitHub's `Location` header.
pub(crate) fn created(value: Value, location: &str) -> Response {
    let mut response = (StatusCode::CREATED, axum::Json(value)).into_response();
    if let Ok(location) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

/// A query parameter restricted to `allowed` values (GitHub's 422 otherwise).
pub(crate) fn enum_param(
    uri: &Uri,
    name: &str,
    allowed: &[&'static str],
    resource: &str,
) -> Result<Option<&'static str>, ApiError> {
    match http::query_param(uri, name) {
        None => Ok(None),
        Some(value) => allowed
            .iter()
            .find(|a| **a == value)
            .map(|a| Some(*a))
            .ok_or_else(|| ApiError::validation(resource, name, "invalid")),
    }
}

// ---------------------------------------------------------------------------------------------
// Issues.

async fn list_issues(
    AxumState(shared): AxumState<AppState>,
    Extension(caller): Extension<Caller>,
    Path((owner, name)): Path<(String, String)>,
    uri: Uri,
) -> Result<Response, ApiError> {
    // A repository the caller cannot see is 404 before any parameter is judged.
    visible_repo(&shared.lock(), &caller, &owner, &name)?;
    let wanted_state =
        enum_param(&uri, "state", &["open", "closed", "all"], "Issue")?.unwrap_or("open");
    let sort = enum_param(&uri, "sort", &["created", "updated", "comments"], "Issue")?
        .unwrap_or("created");
    let direction = enum_param(&uri, "direction", &["asc", "desc"], "Issue")?.unwrap_or("desc");
    let since = http::parse_since(&uri)?;
    let labels: Vec<String> = http::query_param(&uri, "labels")
        .map(|text| {
            text.split(',')
                .map(|l| l.trim().to_string())
                .filter(|l| !l.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let assignee = http::query_param(&uri, "assignee");
    let creator = http::query_param(&uri, "creator");
    // The emulator has no milestones: `none` matches every issue, `*` none; a number names a
    // milestone that cannot exist here.
    let milestone = http::query_param(&uri, "milestone");
    let no_milestone_matches = match milestone.as_deref() {
        None | Some("none") => false,
        Some("*") => true,
        Some(_) => {
            return Err(ApiError::unprocessable(
                "github-emulator does not model milestones: filter by `milestone` only with `none` or `*`",
            ));
        }
    };
    for unmodelled in ["mentioned", "type", "issue_field_values"] {
        if http::query_param(&uri, unmodelled).is_some() {
            return Err(ApiError::unprocessable(format!(
                "github-emulator does not model the `{unmodelled}` filter of GET /repos/{{owner}}/{{repo}}/issues"
            )));
        }
    }

    let items = {
        let state = shared.lock();
        let repo = visible_repo(&state, &caller, &owner, &name)?;
        let mut comment_counts: BTreeMap<u64, usize> = BTreeMap::new();
        for comment in repo.comments.values() {
            *comment_counts.entry(comment.issue_number).or_default() += 1;
        }
        let mut issues: Vec<&Issue> = repo
            .issues
            .values()
            .filter(|_| !no_milestone_matches)
            .filter(|issue| match wanted_state {
                "open" => issue.state == IssueState::Open,
                "closed" => issue.state == IssueState::Closed,
                _ => true,
            })
            .filter(|issue| {
                labels
                    .iter()
                    .all(|wanted| issue.labels.iter().any(|have| same_name(have, wanted)))
            })
            .filter(|issue| since.is_none_or(|since| issue.updated_at >= since))
            .filter(|issue| match assignee.as_deref() {
                None => true,
                Some("none") => issue.assignees.is_empty(),
                Some("*") => !issue.assignees.is_empty(),
                Some(login) => issue.assignees.iter().any(|a| same_name(a, login)),
            })
            .filter(|issue| {
                creator
                    .as_deref()
                    .is_none_or(|login| same_name(&issue.user, login))
            })
            .collect();
        let key = |issue: &Issue| -> (i64, u64) {
            let primary = match sort {
                "updated" => issue.updated_at.timestamp(),
                "comments" => comment_counts.get(&issue.number).copied().unwrap_or(0) as i64,
                _ => issue.created_at.timestamp(),
            };
            (primary, issue.number)
        };
        issues.sort_by_key(|issue| key(issue));
        if direction == "desc" {
            issues.reverse();
        }
        let total = issues.len();
        let page = issues[http::page_range(&uri, total)]
            .iter()
            .map(|issue| render::issue(&shared.base_url, &state, repo, issue))
            .collect::<Vec<_>>();
        (total, page)
    };
    let (total, page) = items;
    Ok(http::paged(&shared, &uri, total, page))
}

async fn get_issue(
    AxumState(shared): AxumState<AppState>,
    Extension(caller): Extension<Caller>,
    Path((owner, name, number)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let number = parse_number(&number)?;
    let state = shared.lock();
    let repo = visible_repo(&state, &caller, &owner, &name)?;
    let issue = find_issue(repo, number)?;
    Ok(axum::Json(render::issue(&shared.base_url, &state, repo, issue)).into_response())
}

/// `title` as GitHub takes it: a string or an integer; missing, `null` or blank is `missing_field`.
fn title_of(value: Option<&Value>) -> Result<Option<String>, ApiError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if text.trim().is_empty() => {
            Err(ApiError::validation("Issue", "title", "missing_field"))
        }
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(wrong_type("title", other, "a string or an integer")),
    }
}

/// `assignees` (or the closing-down `assignee`) of a create/update body, validated: GitHub
/// answers 422 `invalid` for a login that cannot be assigned. `None` when neither is present.
fn assignees_of(
    state: &State,
    repo: &Repo,
    body: &Map<String, Value>,
) -> Result<Option<Vec<String>>, ApiError> {
    let logins = match (body.get("assignees"), body.get("assignee")) {
        (Some(Value::Null), _) => Some(Vec::new()),
        (Some(list), _) => Some(name_list("assignees", list, "login")?),
        (None, Some(Value::Null)) => Some(Vec::new()),
        (None, Some(Value::String(login))) => Some(vec![login.trim().to_string()]),
        (None, Some(other)) => return Err(wrong_type("assignee", other, "a string")),
        (None, None) => None,
    };
    let Some(logins) = logins else {
        return Ok(None);
    };
    let mut result: Vec<String> = Vec::new();
    for login in logins.iter().filter(|l| !l.is_empty()) {
        let Some(canonical) = assignable(state, repo, login) else {
            let mut error = ApiError::validation("Issue", "assignees", "invalid");
            error.errors[0]["value"] = Value::String(login.clone());
            return Err(error);
        };
        if !result.iter().any(|have| same_name(have, &canonical)) {
            result.push(canonical);
        }
    }
    if result.len() > 10 {
        return Err(ApiError::validation("Issue", "assignees", "invalid"));
    }
    Ok(Some(result))
}

/// The emulator has no milestones, so any milestone names one that does not exist: GitHub's 422.
fn check_milestone(body: &Map<String, Value>) -> Result<(), ApiError> {
    match body.get("milestone") {
        None | Some(Value::Null) => Ok(()),
        Some(_) => Err(ApiError::validation("Issue", "milestone", "invalid")),
    }
}

fn labels_of(body: &Map<String, Value>) -> Result<Option<Vec<String>>, ApiError> {
    match body.get("labels") {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(Vec::new())),
        Some(list) => name_list("labels", list, "name").map(Some),
    }
}

async fn create_issue(
    AxumState(shared): AxumState<AppState>,
    Extension(caller): Extension<Caller>,
    Path((owner, name)): Path<(String, String)>,
    GhJson(body): GhJson<Value>,
) -> Result<Response, ApiError> {
    let base = shared.base_url.clone();
    shared.write(|state| {
        let login = caller.require()?.to_string();
        let repo = visible_repo(state, &caller, &owner, &name)?;
        let body = body_object(&body)?;
        let title = title_of(body.get("title"))?
            .ok_or_else(|| ApiError::validation("Issue", "title", "missing_field"))?;
        let text = optional_string(body, "body")?.flatten();
        // Labels, assignees and milestones from someone without triage access are silently
        // dropped, as GitHub documents.
        let triage = state.permission(repo, Some(&login)) >= Permission::Triage;
        let (labels, assignees) = if triage {
            check_milestone(body)?;
            (
                labels_of(body)?.unwrap_or_default(),
                assignees_of(state, repo, body)?.unwrap_or_default(),
            )
        } else {
            (Vec::new(), Vec::new())
        };
        let author = state.user(&login).map(|u| u.login.clone()).unwrap_or(login);
        let labels = ensure_labels(state, &owner, &name, &labels);
        let id = state.data.alloc_id();
        let now = state.now();
        let repo = repo_mut(state, &owner, &name);
        let number = repo.next_number;
        repo.next_number += 1;
        repo.issues.insert(
            number,
            Issue {
                id,
                number,
                title,
                body: text,
                user: author,
                state: IssueState::Open,
                state_reason: None,
                labels,
                assignees,
                locked: false,
                created_at: now,
                updated_at: now,
                closed_at: None,
                closed_by: None,
                pull: None,
            },
        );
        let repo = state.repo(&owner, &name).expect("just written");
        let value = render::issue(&base, state, repo, &repo.issues[&number]);
        let location = format!("{}/issues/{number}", render::repo_url(&base, repo));
        Ok(created(value, &location))
    })
}

const STATE_REASONS: [&str; 4] = ["completed", "not_planned", "duplicate", "reopened"];

async fn update_issue(
    AxumState(shared): AxumState<AppState>,
    Extension(caller): Extension<Caller>,
    Path((owner, name, number)): Path<(String, String, String)>,
    GhJson(body): GhJson<Value>,
) -> Result<Response, ApiError> {
    let number = parse_number(&number)?;
    let base = shared.base_url.clone();
    shared.write(|state| {
        let login = caller.require()?.to_string();
        let repo = visible_repo(state, &caller, &owner, &name)?;
        let issue = find_issue(repo, number)?;
        let triage = state.permission(repo, Some(&login)) >= Permission::Triage;
        if !triage && !same_name(&issue.user, &login) {
            return Err(ApiError::forbidden("Must have push access to repository"));
        }
        let body = body_object(&body)?;
        let title = title_of(body.get("title"))?;
        let text = optional_string(body, "body")?;
        let new_state = match body.get("state") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s == "open" => Some(IssueState::Open),
            Some(Value::String(s)) if s == "closed" => Some(IssueState::Closed),
            Some(_) => return Err(ApiError::validation("Issue", "state", "invalid")),
        };
        let reason = match body.get("state_reason") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if STATE_REASONS.contains(&s.as_str()) => Some(s.clone()),
            Some(_) => return Err(ApiError::validation("Issue", "state_reason", "invalid")),
        };
        let (labels, assignees) = if triage {
            check_milestone(body)?;
            (labels_of(body)?, assignees_of(state, repo, body)?)
        } else {
            (None, None)
        };
        let labels = labels.map(|labels| ensure_labels(state, &owner, &name, &labels));
        let now = state.now();
        let closer = state.user(&login).map(|u| u.login.clone()).unwrap_or(login);
        let issue = repo_mut(state, &owner, &name)
            .issues
            .get_mut(&number)
            .expect("found above");
        let mut changed = false;
        let mut set = |changed_here: bool| changed |= changed_here;
        if let Some(title) = title {
            set(issue.title != title);
            issue.title = title;
        }
        if let Some(text) = text {
            set(issue.body != text);
            issue.body = text;
        }
        if let Some(new_state) = new_state
            && new_state != issue.state
        {
            set(true);
            issue.state = new_state;
            match new_state {
                IssueState::Closed => {
                    issue.closed_at = Some(now);
                    issue.closed_by = Some(closer);
                    issue.state_reason = Some(reason.unwrap_or_else(|| "completed".to_string()));
                }
                IssueState::Open => {
                    issue.closed_at = None;
                    issue.closed_by = None;
                    issue.state_reason = Some(reason.unwrap_or_else(|| "reopened".to_string()));
                }
            }
        }
        if let Some(labels) = labels {
            set(issue.labels != labels);
            issue.labels = labels;
        }
        if let Some(assignees) = assignees {
            set(issue.assignees != assignees);
            issue.assignees = assignees;
        }
        if changed {
            issue.updated_at = now;
        }
        let repo = state.repo(&owner, &name).expect("just written");
        Ok(axum::Json(render::issue(&base, state, repo, &repo.issues[&number])).into_response())
    })
}

/// Bump an issue's `updated_at` (a comment, a label or an assignee changed).
pub(crate) fn touch_issue(repo: &mut Repo, number: u64, now: DateTime<Utc>) {
    if let Some(issue) = repo.issues.get_mut(&number) {
        issue.updated_at = now;
    }
}
