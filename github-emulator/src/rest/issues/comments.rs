//! Issue comments: per issue and repository-wide lists, create, update, delete.
//!
//! Anyone who can read a public repository may comment (that is how outsiders' comments, spoofed
//! markers included, arrive); a locked issue takes comments from collaborators with write access
//! only. Creating or editing a comment bumps the issue's `updated_at`, which incremental sync
//! (`since`) relies on.

use axum::Router;
use axum::extract::{Extension, Path, State as AxumState};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::Value;

use super::{
    body_object, created, enum_param, find_issue, parse_number, repo_mut, same_name, touch_issue,
    wrong_type,
};
use crate::http::{self, ApiError, AppState, Caller, GhJson, RecordAs, Shared};
use crate::render;
use crate::rest::visible_repo;
use crate::state::{Comment, Permission, Repo, State};

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/repos/{owner}/{repo}/issues/{issue_number}/comments",
            get(list_issue_comments).post(create_comment),
        )
        .route(
            "/repos/{owner}/{repo}/issues/comments",
            get(list_repo_comments),
        )
        .route(
            "/repos/{owner}/{repo}/issues/comments/{comment_id}",
            axum::routing::patch(update_comment)
                // GitHub takes POST for PATCH (octocrab's `update_comment` sends POST).
                .post(update_comment_by_post)
                .delete(delete_comment),
        )
}

async fn list_issue_comments(
    AxumState(shared): AxumState<AppState>,
    Extension(caller): Extension<Caller>,
    Path((owner, name, number)): Path<(String, String, String)>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let number = parse_number(&number)?;
    let since = http::parse_since(&uri)?;
    let items = {
        let state = shared.lock();
        let repo = visible_repo(&state, &caller, &owner, &name)?;
        find_issue(repo, number)?;
        // Comments are kept by id, which grows with time: ascending, as GitHub lists them.
        let comments: Vec<&Comment> = repo
            .comments
            .values()
            .filter(|c| c.issue_number == number)
            .filter(|c| since.is_none_or(|since| c.updated_at >= since))
            .collect();
        render_page(&shared, &uri, &state, repo, &comments)
    };
    Ok(items)
}

async fn list_repo_comments(
    AxumState(shared): AxumState<AppState>,
    Extension(caller): Extension<Caller>,
    Path((owner, name)): Path<(String, String)>,
    uri: Uri,
) -> Result<Response, ApiError> {
    // A repository the caller cannot see is 404 before any parameter is judged.
    visible_repo(&shared.lock(), &caller, &owner, &name)?;
    let sort = enum_param(&uri, "sort", &["created", "updated"], "IssueComment")?;
    let direction = enum_param(&uri, "direction", &["asc", "desc"], "IssueComment")?;
    let since = http::parse_since(&uri)?;
    let items = {
        let state = shared.lock();
        let repo = visible_repo(&state, &caller, &owner, &name)?;
        let mut comments: Vec<&Comment> = repo
            .comments
            .values()
            .filter(|c| since.is_none_or(|since| c.updated_at >= since))
            .collect();
        // `direction` is ignored without `sort`, as GitHub documents.
        if let Some(sort) = sort {
            comments.sort_by_key(|c| match sort {
                "updated" => (c.updated_at, c.id),
                _ => (c.created_at, c.id),
            });
            if direction == Some("desc") {
                comments.reverse();
            }
        }
        render_page(&shared, &uri, &state, repo, &comments)
    };
    Ok(items)
}

/// Render only the requested page of a comment list (a repository can hold many thousands).
fn render_page(
    shared: &Shared,
    uri: &Uri,
    state: &State,
    repo: &Repo,
    comments: &[&Comment],
) -> Response {
    let page = comments[http::page_range(uri, comments.len())]
        .iter()
        .map(|c| render::comment(&shared.base_url, state, repo, c))
        .collect();
    http::paged(shared, uri, comments.len(), page)
}

/// `body` of a comment: required, non-blank.
fn comment_body(body: &Value) -> Result<String, ApiError> {
    match body_object(body)?.get("body") {
        Some(Value::String(text)) if !text.trim().is_empty() => Ok(text.clone()),
        None | Some(Value::Null) | Some(Value::String(_)) => Err(ApiError::validation(
            "IssueComment",
            "body",
            "missing_field",
        )),
        Some(other) => Err(wrong_type("body", other, "a string")),
    }
}

async fn create_comment(
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
        if issue.locked && state.permission(repo, Some(&login)) < Permission::Write {
            return Err(
                ApiError::forbidden("Unable to create comment because issue is locked.")
                    .docs("https://docs.github.com/articles/locking-conversations/"),
            );
        }
        let text = comment_body(&body)?;
        let author = state.user(&login).map(|u| u.login.clone()).unwrap_or(login);
        let id = state.data.alloc_id();
        let now = state.now();
        let repo = repo_mut(state, &owner, &name);
        repo.comments.insert(
            id,
            Comment {
                id,
                issue_number: number,
                user: author,
                body: text,
                created_at: now,
                updated_at: now,
            },
        );
        touch_issue(repo, number, now);
        let repo = state.repo(&owner, &name).expect("just written");
        let value = render::comment(&base, state, repo, &repo.comments[&id]);
        let location = format!("{}/issues/comments/{id}", render::repo_url(&base, repo));
        Ok(created(value, &location))
    })
}

/// Check that the caller may change comment `id`: its author, or a user with write access.
/// Returns the comment's issue number.
fn may_change_comment(
    state: &crate::state::State,
    caller: &Caller,
    owner: &str,
    name: &str,
    id: u64,
) -> Result<u64, ApiError> {
    let login = caller.require()?;
    let repo = visible_repo(state, caller, owner, name)?;
    let comment = repo.comments.get(&id).ok_or_else(ApiError::not_found)?;
    if !same_name(&comment.user, login) && state.permission(repo, Some(login)) < Permission::Write {
        return Err(ApiError::forbidden("Must have push access to repository"));
    }
    Ok(comment.issue_number)
}

async fn update_comment(
    AxumState(shared): AxumState<AppState>,
    Extension(caller): Extension<Caller>,
    Path((owner, name, id)): Path<(String, String, String)>,
    GhJson(body): GhJson<Value>,
) -> Result<Response, ApiError> {
    let id = parse_number(&id)?;
    let base = shared.base_url.clone();
    shared.write(|state| {
        let number = may_change_comment(state, &caller, &owner, &name, id)?;
        let text = comment_body(&body)?;
        let now = state.now();
        let repo = repo_mut(state, &owner, &name);
        let comment = repo.comments.get_mut(&id).expect("found above");
        comment.body = text;
        comment.updated_at = now;
        touch_issue(repo, number, now);
        let repo = state.repo(&owner, &name).expect("just written");
        Ok(axum::Json(render::comment(&base, state, repo, &repo.comments[&id])).into_response())
    })
}

/// `POST` to a comment's URL: GitHub's alias of the `PATCH` operation. Recorded as `PATCH` so
/// the contract check finds the operation GitHub documents.
async fn update_comment_by_post(
    shared: AxumState<AppState>,
    caller: Extension<Caller>,
    path: Path<(String, String, String)>,
    body: GhJson<Value>,
) -> Response {
    let mut response = update_comment(shared, caller, path, body)
        .await
        .into_response();
    response.extensions_mut().insert(RecordAs(Method::PATCH));
    response
}

async fn delete_comment(
    AxumState(shared): AxumState<AppState>,
    Extension(caller): Extension<Caller>,
    Path((owner, name, id)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let id = parse_number(&id)?;
    shared.write(|state| {
        may_change_comment(state, &caller, &owner, &name, id)?;
        repo_mut(state, &owner, &name).comments.remove(&id);
        Ok(StatusCode::NO_CONTENT.into_response())
    })
}
