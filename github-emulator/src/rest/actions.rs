//! GitHub Actions: `workflow_dispatch`, recorded in the state (`GET /_emulator/dispatches`).
//!
//! Workflows are not run and workflow files are not read: any `workflow_id` is accepted.

use axum::Router;
use axum::extract::{Extension, Path, State as AxumState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::gitrepo;
use crate::http::{ApiError, AppState, Caller, GhJson};
use crate::rest::git::open;
use crate::rest::{require, visible_repo};
use crate::state::{Permission, WorkflowDispatch};

const DOCS: &str =
    "https://docs.github.com/rest/actions/workflows#create-a-workflow-dispatch-event";
/// GitHub's limit on `inputs`.
const MAX_INPUTS: usize = 25;

pub fn router() -> Router<AppState> {
    Router::new().route(
        "/repos/{owner}/{repo}/actions/workflows/{workflow_id}/dispatches",
        post(create_dispatch),
    )
}

#[derive(Deserialize)]
struct Dispatch {
    r#ref: Option<String>,
    inputs: Option<Value>,
    #[serde(default)]
    return_run_details: bool,
}

async fn create_dispatch(
    AxumState(shared): AxumState<AppState>,
    Extension(caller): Extension<Caller>,
    Path((owner, name, workflow_id)): Path<(String, String, String)>,
    GhJson(body): GhJson<Dispatch>,
) -> Result<Response, ApiError> {
    let base_url = shared.base_url.clone();
    let (id, repo_api, html) = shared.write(|state| {
        let repo = visible_repo(state, &caller, &owner, &name)?;
        require(state, &caller, repo, Permission::Write)?;
        let actor = caller.require()?.to_string();
        let git_ref = body
            .r#ref
            .clone()
            .ok_or_else(|| ApiError::unprocessable("Invalid request.\n\n\"ref\" wasn't supplied.").docs(DOCS))?;
        let inputs = body.inputs.clone().unwrap_or_else(|| json!({}));
        let Some(map) = inputs.as_object() else {
            return Err(ApiError::unprocessable("Invalid request.\n\nFor 'properties/inputs', is not an object.").docs(DOCS));
        };
        if map.len() > MAX_INPUTS {
            return Err(ApiError::unprocessable(format!(
                "Invalid request.\n\nFor 'properties/inputs', {} properties are more than the maximum of {MAX_INPUTS}.",
                map.len()
            ))
            .docs(DOCS));
        }
        if let Some((key, _)) = map.iter().find(|(_, v)| !v.is_string()) {
            return Err(ApiError::unprocessable(format!(
                "Invalid request.\n\nFor 'properties/{key}', the value is not a string."
            ))
            .docs(DOCS));
        }
        let git = open(repo)?;
        let candidates = if git_ref.starts_with("refs/") {
            vec![git_ref.clone()]
        } else {
            vec![format!("refs/heads/{git_ref}"), format!("refs/tags/{git_ref}")]
        };
        if !candidates.iter().any(|c| gitrepo::ref_target(&git, c).is_some()) {
            return Err(ApiError::unprocessable(format!("No ref found for: {git_ref}")).docs(DOCS));
        }
        let repo_api = crate::render::repo_url(&base_url, repo);
        let html = format!("{base_url}/{}/{}", repo.owner, repo.name);
        let full_name = repo.full_name();
        drop(git);
        let id = state.data.alloc_id();
        let at = state.now();
        state.data.dispatches.push(WorkflowDispatch {
            id,
            repo: full_name,
            workflow_id: workflow_id.clone(),
            r#ref: git_ref,
            inputs,
            actor,
            at,
        });
        Ok((id, repo_api, html))
    })?;
    if body.return_run_details {
        // The run is not executed; its URLs name the recorded dispatch.
        return Ok(axum::Json(json!({
            "workflow_run_id": id,
            "run_url": format!("{repo_api}/actions/runs/{id}"),
            "html_url": format!("{html}/actions/runs/{id}"),
        }))
        .into_response());
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
