//! Repository labels, an issue's labels, and an issue's assignees.
//!
//! Creating a repository label needs push access; labelling an issue needs triage access, and a
//! name the repository does not know yet creates the label, as GitHub does. Assignees from
//! someone without triage access, and logins that cannot be assigned, are silently ignored.

use axum::Router;
use axum::extract::{Extension, Path, State as AxumState};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde_json::Value;

use super::{
    assignable, body_object, created, ensure_labels, find_issue, name_list, optional_string,
    parse_number, repo_mut, same_name, touch_issue, wrong_type,
};
use crate::http::{self, ApiError, AppState, Caller, GhJson};
use crate::render;
use crate::rest::{require, visible_repo};
use crate::state::{Label, Permission};

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/repos/{owner}/{repo}/labels",
            get(list_repo_labels).post(create_label),
        )
        .route(
            "/repos/{owner}/{repo}/issues/{issue_number}/labels",
            get(list_issue_labels).post(add_issue_labels),
        )
        .route(
            "/repos/{owner}/{repo}/issues/{issue_number}/labels/{name}",
            delete(remove_issue_label),
        )
        .route(
            "/repos/{owner}/{repo}/issues/{issue_number}/assignees",
            post(add_assignees).delete(remove_assignees),
        )
}

async fn list_repo_labels(
    AxumState(shared): AxumState<AppState>,
    Extension(caller): Extension<Caller>,
    Path((owner, name)): Path<(String, String)>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let items = {
        let state = shared.lock();
        let repo = visible_repo(&state, &caller, &owner, &name)?;
        repo.labels
            .iter()
            .map(|label| render::label(&shared.base_url, repo, label))
            .collect::<Vec<_>>()
    };
    Ok(http::paginate(&shared, &uri, items))
}

async fn create_label(
    AxumState(shared): AxumState<AppState>,
    Extension(caller): Extension<Caller>,
    Path((owner, name)): Path<(String, String)>,
    GhJson(body): GhJson<Value>,
) -> Result<Response, ApiError> {
    let base = shared.base_url.clone();
    shared.write(|state| {
        let repo = visible_repo(state, &caller, &owner, &name)?;
        require(state, &caller, repo, Permission::Write)?;
        let body = body_object(&body)?;
        let label_name = match body.get("name") {
            Some(Value::String(text)) if !text.trim().is_empty() => text.trim().to_string(),
            None | Some(Value::Null) | Some(Value::String(_)) => {
                return Err(ApiError::validation("Label", "name", "missing_field"));
            }
            Some(other) => return Err(wrong_type("name", other, "a string")),
        };
        if repo.labels.iter().any(|l| same_name(&l.name, &label_name)) {
            return Err(ApiError::validation("Label", "name", "already_exists"));
        }
        let color = match optional_string(body, "color")?.flatten() {
            None => "ededed".to_string(),
            Some(color) if color.len() == 6 && color.chars().all(|c| c.is_ascii_hexdigit()) => {
                color.to_lowercase()
            }
            Some(_) => return Err(ApiError::validation("Label", "color", "invalid")),
        };
        let description = optional_string(body, "description")?.flatten();
        if description
            .as_ref()
            .is_some_and(|d| d.chars().count() > 100)
        {
            return Err(ApiError::validation("Label", "description", "invalid"));
        }
        let id = state.data.alloc_id();
        let label = Label {
            id,
            name: label_name,
            color,
            description,
            default: false,
        };
        repo_mut(state, &owner, &name).labels.push(label.clone());
        let repo = state.repo(&owner, &name).expect("just written");
        let location = format!(
            "{}/labels/{}",
            render::repo_url(&base, repo),
            render::encode_path(&label.name)
        );
        Ok(created(render::label(&base, repo, &label), &location))
    })
}

async fn list_issue_labels(
    AxumState(shared): AxumState<AppState>,
    Extension(caller): Extension<Caller>,
    Path((owner, name, number)): Path<(String, String, String)>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let number = parse_number(&number)?;
    let items = {
        let state = shared.lock();
        let repo = visible_repo(&state, &caller, &owner, &name)?;
        find_issue(repo, number)?
            .labels
            .iter()
            .map(|label| render::label_named(&shared.base_url, repo, label))
            .collect::<Vec<_>>()
    };
    Ok(http::paginate(&shared, &uri, items))
}

/// The labels of an issue, in full (the answer of add and remove).
fn issue_labels(
    base: &str,
    state: &crate::state::State,
    owner: &str,
    name: &str,
    number: u64,
) -> Response {
    let repo = state.repo(owner, name).expect("found under the same lock");
    let labels: Vec<Value> = repo.issues[&number]
        .labels
        .iter()
        .map(|label| render::label_named(base, repo, label))
        .collect();
    axum::Json(Value::Array(labels)).into_response()
}

async fn add_issue_labels(
    AxumState(shared): AxumState<AppState>,
    Extension(caller): Extension<Caller>,
    Path((owner, name, number)): Path<(String, String, String)>,
    GhJson(body): GhJson<Value>,
) -> Result<Response, ApiError> {
    let number = parse_number(&number)?;
    let base = shared.base_url.clone();
    shared.write(|state| {
        let repo = visible_repo(state, &caller, &owner, &name)?;
        find_issue(repo, number)?;
        require(state, &caller, repo, Permission::Triage)?;
        // `{"labels": [...]}`, or the bare array GitHub also takes.
        let list = match &body {
            Value::Array(_) => &body,
            Value::Object(object) => object.get("labels").unwrap_or(&Value::Null),
            other => return Err(wrong_type("labels", other, "an array")),
        };
        let wanted = name_list("labels", list, "name")?;
        if wanted.is_empty() {
            return Err(ApiError::unprocessable(
                "Invalid request.\n\nNo subschema in \"oneOf\" matched.",
            ));
        }
        let wanted = ensure_labels(state, &owner, &name, &wanted);
        let now = state.now();
        let repo = repo_mut(state, &owner, &name);
        let issue = repo.issues.get_mut(&number).expect("found above");
        let mut changed = false;
        for label in wanted {
            if !issue.labels.iter().any(|have| same_name(have, &label)) {
                issue.labels.push(label);
                changed = true;
            }
        }
        if changed {
            touch_issue(repo, number, now);
        }
        Ok(issue_labels(&base, state, &owner, &name, number))
    })
}

async fn remove_issue_label(
    AxumState(shared): AxumState<AppState>,
    Extension(caller): Extension<Caller>,
    Path((owner, name, number, label)): Path<(String, String, String, String)>,
) -> Result<Response, ApiError> {
    let number = parse_number(&number)?;
    let base = shared.base_url.clone();
    shared.write(|state| {
        let repo = visible_repo(state, &caller, &owner, &name)?;
        let issue = find_issue(repo, number)?;
        require(state, &caller, repo, Permission::Triage)?;
        let Some(index) = issue.labels.iter().position(|have| same_name(have, &label)) else {
            return Err(ApiError::new(StatusCode::NOT_FOUND, "Label does not exist")
                .docs("https://docs.github.com/rest/issues/labels#remove-a-label-from-an-issue"));
        };
        let now = state.now();
        let repo = repo_mut(state, &owner, &name);
        repo.issues
            .get_mut(&number)
            .expect("found above")
            .labels
            .remove(index);
        touch_issue(repo, number, now);
        Ok(issue_labels(&base, state, &owner, &name, number))
    })
}

/// Add (`add == true`) or remove assignees; answers the issue.
fn change_assignees(
    shared: &AppState,
    caller: &Caller,
    owner: &str,
    name: &str,
    number: &str,
    body: &Value,
    add: bool,
) -> Result<Response, ApiError> {
    let number = parse_number(number)?;
    let base = shared.base_url.clone();
    shared.write(|state| {
        let login = caller.require()?.to_string();
        let repo = visible_repo(state, caller, owner, name)?;
        let issue = find_issue(repo, number)?;
        let list = match body_object(body)?.get("assignees") {
            Some(list) => name_list("assignees", list, "login")?,
            None if add => Vec::new(),
            None => return Err(ApiError::validation("Issue", "assignees", "missing_field")),
        };
        let mut assignees = issue.assignees.clone();
        // Without triage access the request is silently ignored, as GitHub documents.
        if state.permission(repo, Some(&login)) >= Permission::Triage {
            for login in &list {
                if add {
                    if let Some(canonical) = assignable(state, repo, login)
                        && !assignees.iter().any(|have| same_name(have, &canonical))
                        && assignees.len() < 10
                    {
                        assignees.push(canonical);
                    }
                } else {
                    assignees.retain(|have| !same_name(have, login));
                }
            }
        }
        let changed = assignees != issue.assignees;
        if changed {
            let now = state.now();
            let repo = repo_mut(state, owner, name);
            repo.issues.get_mut(&number).expect("found above").assignees = assignees;
            touch_issue(repo, number, now);
        }
        let repo = state.repo(owner, name).expect("found above");
        let value = render::issue(&base, state, repo, &repo.issues[&number]);
        let status = if add {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        Ok((status, axum::Json(value)).into_response())
    })
}

async fn add_assignees(
    AxumState(shared): AxumState<AppState>,
    Extension(caller): Extension<Caller>,
    Path((owner, name, number)): Path<(String, String, String)>,
    GhJson(body): GhJson<Value>,
) -> Result<Response, ApiError> {
    change_assignees(&shared, &caller, &owner, &name, &number, &body, true)
}

async fn remove_assignees(
    AxumState(shared): AxumState<AppState>,
    Extension(caller): Extension<Caller>,
    Path((owner, name, number)): Path<(String, String, String)>,
    GhJson(body): GhJson<Value>,
) -> Result<Response, ApiError> {
    change_assignees(&shared, &caller, &owner, &name, &number, &body, false)
}
