//! GitHub Actions: `workflow_dispatch`, recorded in the state (`GET /_emulator/dispatches`).
//!
//! Workflow files are not read: any `workflow_id` is accepted. Workflows are not run either,
//! unless a test configures a **runner** (`POST /_emulator/actions/runner`, see
//! [`RunnerConfig`]): then every later accepted dispatch is also executed as a local process —
//! the runner's command with the dispatch's inputs in place of `{input}` placeholders — spawned
//! in its own process group and not waited for, as a real runner picks a job up and runs it
//! while the API has long answered. Each run is listed (`GET /_emulator/actions/runner`) with
//! its pid and, once it ended, its exit code, so a test can wait for the job and assert its
//! outcome. The API response is the same with or without a runner.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;

use axum::Router;
use axum::extract::{Extension, Path, State as AxumState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::{Deserialize, Serialize};
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
    let (id, repo_api, html, job) = shared.write(|state| {
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
        let dispatch = WorkflowDispatch {
            id,
            repo: full_name,
            workflow_id: workflow_id.clone(),
            r#ref: git_ref,
            inputs,
            actor,
            at,
        };
        let job = state.runner.job_for(&dispatch);
        state.data.dispatches.push(dispatch);
        Ok((id, repo_api, html, job))
    })?;
    if let Some(job) = job {
        start_job(&shared, job);
    }
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

/// `POST /_emulator/actions/runner`: how dispatches are run as local processes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunnerConfig {
    /// The program and its arguments. `{name}` is replaced by the dispatch's input `name`, and
    /// `{ref}`, `{workflow}`, `{repo}` and `{dispatch_id}` by the dispatch's; other text is kept.
    pub command: Vec<String>,
    /// The working directory (default: the emulator's).
    #[serde(default)]
    pub cwd: Option<PathBuf>,
    /// Environment variables set for the process (values take placeholders too).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Start from an empty environment instead of the emulator's.
    #[serde(default)]
    pub clear_env: bool,
    /// Run only dispatches of this workflow (`crew-worker.yml`); default: every dispatch.
    #[serde(default)]
    pub workflow: Option<String>,
    /// Append the process's stdout and stderr to this file (default: discard them).
    #[serde(default)]
    pub log: Option<PathBuf>,
}

/// One dispatch run as a local process.
#[derive(Debug, Clone, Serialize)]
pub struct RunnerRun {
    pub dispatch_id: u64,
    pub workflow_id: String,
    pub argv: Vec<String>,
    /// `starting`, `running`, `exited`, or `failed` (it could not be started: see `error`).
    pub status: String,
    pub pid: Option<u32>,
    pub exit_code: Option<i32>,
    /// The signal that ended it, when one did.
    pub signal: Option<i32>,
    pub error: Option<String>,
}

/// The runner: its configuration (none: dispatches are only recorded) and what it ran.
/// Not persisted: a restarted emulator runs nothing until told again.
#[derive(Debug, Clone, Default)]
pub struct Runner {
    pub config: Option<RunnerConfig>,
    pub runs: Vec<RunnerRun>,
}

/// A process to start for a dispatch, decided under the state lock, started after it.
pub struct Job {
    index: usize,
    argv: Vec<String>,
    cwd: Option<PathBuf>,
    env: Vec<(String, String)>,
    clear_env: bool,
    log: Option<PathBuf>,
}

impl Runner {
    /// The job for `dispatch` when a runner is configured for its workflow; records the run.
    pub fn job_for(&mut self, dispatch: &WorkflowDispatch) -> Option<Job> {
        let config = self.config.as_ref()?;
        if config
            .workflow
            .as_ref()
            .is_some_and(|workflow| workflow != &dispatch.workflow_id)
        {
            return None;
        }
        let mut values: Vec<(String, String)> = dispatch
            .inputs
            .as_object()
            .map(|inputs| {
                inputs
                    .iter()
                    .filter_map(|(key, value)| Some((key.clone(), value.as_str()?.to_owned())))
                    .collect()
            })
            .unwrap_or_default();
        values.push(("ref".into(), dispatch.r#ref.clone()));
        values.push(("workflow".into(), dispatch.workflow_id.clone()));
        values.push(("repo".into(), dispatch.repo.clone()));
        values.push(("dispatch_id".into(), dispatch.id.to_string()));
        let fill = |text: &str| {
            values.iter().fold(text.to_owned(), |text, (key, value)| {
                text.replace(&format!("{{{key}}}"), value)
            })
        };
        let argv: Vec<String> = config.command.iter().map(|arg| fill(arg)).collect();
        let job = Job {
            index: self.runs.len(),
            argv: argv.clone(),
            cwd: config.cwd.clone(),
            env: config
                .env
                .iter()
                .map(|(key, value)| (key.clone(), fill(value)))
                .collect(),
            clear_env: config.clear_env,
            log: config.log.clone(),
        };
        self.runs.push(RunnerRun {
            dispatch_id: dispatch.id,
            workflow_id: dispatch.workflow_id.clone(),
            argv,
            status: "starting".into(),
            pid: None,
            exit_code: None,
            signal: None,
            error: None,
        });
        Some(job)
    }
}

/// Starts `job` in its own process group and records its pid, then its exit, in the run list.
fn start_job(shared: &AppState, job: Job) {
    let update = |shared: &AppState, change: &dyn Fn(&mut RunnerRun)| {
        let mut state = shared.lock();
        if let Some(run) = state.runner.runs.get_mut(job.index) {
            change(run);
        }
    };
    let spawned = (|| {
        let (program, args) = job
            .argv
            .split_first()
            .ok_or_else(|| std::io::Error::other("empty command"))?;
        let mut command = tokio::process::Command::new(program);
        command.args(args);
        if job.clear_env {
            command.env_clear();
        }
        command.envs(job.env.iter().map(|(key, value)| (key, value)));
        if let Some(cwd) = &job.cwd {
            command.current_dir(cwd);
        }
        let (stdout, stderr) = match &job.log {
            Some(path) => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?;
                (Stdio::from(file.try_clone()?), Stdio::from(file))
            }
            None => (Stdio::null(), Stdio::null()),
        };
        command
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .process_group(0)
            .kill_on_drop(false);
        command.spawn()
    })();
    match spawned {
        Ok(mut child) => {
            let pid = child.id();
            update(shared, &|run| {
                run.status = "running".into();
                run.pid = pid;
            });
            let shared = shared.clone();
            let index = job.index;
            tokio::spawn(async move {
                let status = child.wait().await;
                let mut state = shared.lock();
                if let Some(run) = state.runner.runs.get_mut(index) {
                    match status {
                        Ok(status) => {
                            use std::os::unix::process::ExitStatusExt;
                            run.status = "exited".into();
                            run.exit_code = status.code();
                            run.signal = status.signal();
                        }
                        Err(error) => {
                            run.status = "failed".into();
                            run.error = Some(error.to_string());
                        }
                    }
                }
            });
        }
        Err(error) => {
            tracing::warn!(%error, argv = ?job.argv, "the emulator's runner could not start a job");
            update(shared, &|run| {
                run.status = "failed".into();
                run.error = Some(error.to_string());
            });
        }
    }
}
