//! REST routes, one file per area, all mounted under the shared GitHub middleware.
//!
//! Paths use GitHub's own templates (`{owner}`, `{repo}`, …) so `/_emulator/stats` keys and the
//! contract tests line up with the OpenAPI description; git refs, which contain slashes, use
//! axum's `{*ref}` and are reported as `{ref}`.

use axum::Router;
use axum::extract::{Extension, Path, State as AxumState};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use crate::http::{ApiError, AppState, Caller};
use crate::render;
use crate::state::{Permission, Repo, State};

pub(crate) mod actions;
mod git;
mod issues;
mod pulls;

pub fn router() -> Router<AppState> {
    Router::new()
        .merge(issues::router())
        .merge(git::router())
        .merge(pulls::router())
        .merge(actions::router())
        .route("/user", get(get_user))
        .route("/rate_limit", get(get_rate_limit))
        .route("/repos/{owner}/{repo}", get(get_repo))
        .route(
            "/repos/{owner}/{repo}/collaborators/{username}/permission",
            get(get_collaborator_permission),
        )
}

/// The repository, if the caller may see it; GitHub answers 404 for what a token may not see.
pub fn visible_repo<'s>(
    state: &'s State,
    caller: &Caller,
    owner: &str,
    name: &str,
) -> Result<&'s Repo, ApiError> {
    let repo = state.repo(owner, name).ok_or_else(ApiError::not_found)?;
    if state.permission(repo, caller.login.as_deref()) < Permission::Read {
        return Err(ApiError::not_found());
    }
    Ok(repo)
}

/// Check that the caller has at least `needed` on the repository. GitHub answers 404 to
/// anonymous callers and 403 "Must have ... access" to authenticated ones that can read.
pub fn require(
    state: &State,
    caller: &Caller,
    repo: &Repo,
    needed: Permission,
) -> Result<(), ApiError> {
    let login = caller.require()?;
    let have = state.permission(repo, Some(login));
    if have >= needed {
        return Ok(());
    }
    if have < Permission::Read {
        return Err(ApiError::not_found());
    }
    Err(ApiError::forbidden(match needed {
        Permission::Admin => "Must have admin rights to Repository.",
        _ => "Must have push access to repository",
    }))
}

async fn get_user(
    AxumState(shared): AxumState<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    let login = caller.require()?;
    let state = shared.lock();
    let user = state.user(login).ok_or_else(ApiError::not_found)?;
    let mut value = render::user_object(&shared.base_url, user);
    // `public-user` fields GitHub's /user adds to `simple-user`.
    let extra = json!({
        "name": user.name, "company": null, "blog": "", "location": null, "email": null,
        "hireable": null, "bio": null, "public_repos": 0, "public_gists": 0, "followers": 0,
        "following": 0, "created_at": render::time(user.created_at),
        "updated_at": render::time(user.created_at),
    });
    if let (Some(target), Some(extra)) = (value.as_object_mut(), extra.as_object()) {
        target.extend(extra.clone());
    }
    Ok(axum::Json(value).into_response())
}

async fn get_rate_limit(
    AxumState(shared): AxumState<AppState>,
    Extension(caller): Extension<Caller>,
) -> Response {
    let mut state = shared.lock();
    let login = caller.login.as_deref();
    let mut resource = |name: &str| {
        let window = state.rate_window(login, name);
        json!({
            "limit": window.limit,
            "used": window.used,
            "remaining": window.limit.saturating_sub(window.used),
            "reset": window.reset.timestamp(),
        })
    };
    // Asking costs nothing on GitHub (the middleware does not charge this route).
    let core = resource("core");
    let graphql = resource("graphql");
    let search = resource("search");
    axum::Json(json!({
        "resources": {"core": core, "graphql": graphql, "search": search},
        "rate": core,
    }))
    .into_response()
}

async fn get_repo(
    AxumState(shared): AxumState<AppState>,
    Extension(caller): Extension<Caller>,
    Path((owner, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let state = shared.lock();
    let repo = visible_repo(&state, &caller, &owner, &name)?;
    Ok(axum::Json(render::repo(
        &shared.base_url,
        &state,
        repo,
        caller.login.as_deref(),
    ))
    .into_response())
}

async fn get_collaborator_permission(
    AxumState(shared): AxumState<AppState>,
    Extension(caller): Extension<Caller>,
    Path((owner, name, username)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let state = shared.lock();
    let repo = visible_repo(&state, &caller, &owner, &name)?;
    caller.require()?;
    let user = state.user(&username).ok_or_else(|| {
        ApiError::not_found().docs("https://docs.github.com/rest/collaborators/collaborators#get-repository-permissions-for-a-user")
    })?;
    let permission = state.permission(repo, Some(&user.login));
    // GitHub's legacy `permission` has no triage/maintain; `role_name` has them.
    let legacy = match permission {
        Permission::Admin => "admin",
        Permission::Maintain | Permission::Write => "write",
        Permission::Triage | Permission::Read => "read",
        Permission::None => "none",
    };
    let mut user_value = render::user_object(&shared.base_url, user);
    user_value["permissions"] = json!({
        "admin": permission >= Permission::Admin,
        "maintain": permission >= Permission::Maintain,
        "push": permission >= Permission::Write,
        "triage": permission >= Permission::Triage,
        "pull": permission >= Permission::Read,
    });
    user_value["role_name"] = json!(permission.as_str());
    Ok(axum::Json(json!({
        "permission": legacy,
        "role_name": permission.as_str(),
        "user": user_value,
    }))
    .into_response())
}
