//! Git data (refs, commits, trees) and branches, read from and written to the repository's real
//! bare git repository.
//!
//! The repository is opened with git2 per request under the state lock and never held across an
//! `.await`; pushes made with `git` over the `file://` clone URL land in the same directory, so
//! refs are always read live. Ref writes are compare-and-swap against the value just read
//! (`reference_matching`), so a concurrent `git push` can never be overwritten blindly.

use axum::Router;
use axum::extract::{Extension, Path, State as AxumState};
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, FixedOffset, TimeZone, Utc};
use git2::{ObjectType, Oid, Repository};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::gitrepo::{self, TreeChange};
use crate::http::{ApiError, AppState, Caller, GhJson, paginate};
use crate::render;
use crate::rest::{require, visible_repo};
use crate::state::{Permission, Repo, State, node_id};

const DOCS_REFS: &str = "https://docs.github.com/rest/git/refs";
const DOCS_COMMITS: &str = "https://docs.github.com/rest/git/commits";
const DOCS_TREES: &str = "https://docs.github.com/rest/git/trees";
const DOCS_BRANCH: &str = "https://docs.github.com/rest/branches/branches#get-a-branch";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/repos/{owner}/{repo}/git/refs", post(create_ref))
        .route(
            "/repos/{owner}/{repo}/git/refs/{*ref}",
            axum::routing::patch(update_ref).delete(delete_ref),
        )
        .route("/repos/{owner}/{repo}/git/ref/{*ref}", get(get_ref))
        .route(
            "/repos/{owner}/{repo}/git/matching-refs/{*ref}",
            get(matching_refs),
        )
        .route("/repos/{owner}/{repo}/git/commits", post(create_commit))
        .route(
            "/repos/{owner}/{repo}/git/commits/{commit_sha}",
            get(get_commit),
        )
        .route("/repos/{owner}/{repo}/git/trees", post(create_tree))
        .route("/repos/{owner}/{repo}/branches/{*branch}", get(get_branch))
}

/// Open the repository's bare git directory.
pub(crate) fn open(repo: &Repo) -> Result<Repository, ApiError> {
    gitrepo::open(&repo.git_dir).map_err(|e| {
        ApiError::internal(format!(
            "github-emulator: cannot open the bare repository of {}: {}",
            repo.full_name(),
            e.message()
        ))
    })
}

fn invalid_request(what: &str) -> ApiError {
    ApiError::unprocessable(format!("Invalid request.\n\n\"{what}\" wasn't supplied."))
}

// ---------------------------------------------------------------------------------------------
// Rendering

/// A GitHub-style stable id for a git object or ref (GitHub's node ids for these are opaque too).
fn stable_id(parts: &[&str]) -> u64 {
    // FNV-1a, so the id is the same across restarts.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.bytes().chain(std::iter::once(0)) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

/// API URL of a git object of `kind`.
fn object_url(base: &str, repo: &Repo, kind: ObjectType, sha: &str) -> String {
    let kind = match kind {
        ObjectType::Commit => "commits",
        ObjectType::Tree => "trees",
        ObjectType::Blob => "blobs",
        _ => "tags",
    };
    format!("{}/git/{kind}/{sha}", render::repo_url(base, repo))
}

/// `git-ref`.
pub(crate) fn git_ref(
    base: &str,
    repo: &Repo,
    full_name: &str,
    oid: Oid,
    kind: ObjectType,
) -> Value {
    let sha = oid.to_string();
    let short = full_name.strip_prefix("refs/").unwrap_or(full_name);
    json!({
        "ref": full_name,
        "node_id": node_id("REF", stable_id(&[&repo.id.to_string(), full_name])),
        "url": format!("{}/git/refs/{short}", render::repo_url(base, repo)),
        "object": {
            "type": gitrepo::kind_name(kind),
            "sha": sha,
            "url": object_url(base, repo, kind, &sha),
        },
    })
}

/// A git signature's time as GitHub writes it (UTC, whole seconds).
fn signature_time(signature: &git2::Signature<'_>) -> String {
    let when = signature.when();
    let utc = Utc
        .timestamp_opt(when.seconds(), 0)
        .single()
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
    render::time(utc)
}

fn git_user(signature: &git2::Signature<'_>) -> Value {
    json!({
        "name": signature.name().unwrap_or(""),
        "email": signature.email().unwrap_or(""),
        "date": signature_time(signature),
    })
}

fn unsigned() -> Value {
    json!({"verified": false, "reason": "unsigned", "signature": null, "payload": null, "verified_at": null})
}

fn commit_node_id(repo: &Repo, sha: &str) -> String {
    node_id("C", stable_id(&[&repo.id.to_string(), sha]))
}

/// A commit's `parents`: each parent's sha, its API URL under `api` and its page under `html`.
fn parent_list(commit: &git2::Commit<'_>, api: &str, html: &str) -> Vec<Value> {
    commit
        .parent_ids()
        .map(|p| {
            json!({
                "sha": p.to_string(),
                "url": format!("{api}/{p}"),
                "html_url": format!("{html}/commit/{p}"),
            })
        })
        .collect()
}

/// `git-commit`.
pub(crate) fn git_commit(base: &str, repo: &Repo, commit: &git2::Commit<'_>) -> Value {
    let sha = commit.id().to_string();
    let repo_api = render::repo_url(base, repo);
    let html = format!("{base}/{}/{}", repo.owner, repo.name);
    let parents = parent_list(commit, &format!("{repo_api}/git/commits"), &html);
    json!({
        "sha": sha,
        "node_id": commit_node_id(repo, &sha),
        "url": format!("{repo_api}/git/commits/{sha}"),
        "html_url": format!("{html}/commit/{sha}"),
        "author": git_user(&commit.author()),
        "committer": git_user(&commit.committer()),
        "tree": {
            "sha": commit.tree_id().to_string(),
            "url": format!("{repo_api}/git/trees/{}", commit.tree_id()),
        },
        "message": commit.message().unwrap_or(""),
        "parents": parents,
        "verification": unsigned(),
    })
}

/// The GitHub account a commit email belongs to: only `ID+login@users.noreply.github.com` and
/// `login@users.noreply.github.com` addresses are recognised (the emulator stores no emails).
fn account_of(base: &str, state: &State, email: Option<&str>) -> Value {
    let login = email
        .and_then(|e| e.strip_suffix("@users.noreply.github.com"))
        .map(|local| local.split_once('+').map_or(local, |(_, login)| login));
    match login.and_then(|l| state.user(l)) {
        Some(user) => render::user_object(base, user),
        None => Value::Null,
    }
}

/// `commit` (the repository-commit shape, as in a branch).
pub(crate) fn repo_commit(
    base: &str,
    state: &State,
    repo: &Repo,
    commit: &git2::Commit<'_>,
) -> Value {
    let sha = commit.id().to_string();
    let repo_api = render::repo_url(base, repo);
    let html = format!("{base}/{}/{}", repo.owner, repo.name);
    let parents = parent_list(commit, &format!("{repo_api}/commits"), &html);
    json!({
        "url": format!("{repo_api}/commits/{sha}"),
        "sha": sha,
        "node_id": commit_node_id(repo, &sha),
        "html_url": format!("{html}/commit/{sha}"),
        "comments_url": format!("{repo_api}/commits/{sha}/comments"),
        "commit": {
            "url": format!("{repo_api}/git/commits/{sha}"),
            "author": git_user(&commit.author()),
            "committer": git_user(&commit.committer()),
            "message": commit.message().unwrap_or(""),
            "comment_count": 0,
            "tree": {
                "sha": commit.tree_id().to_string(),
                "url": format!("{repo_api}/git/trees/{}", commit.tree_id()),
            },
            "verification": unsigned(),
        },
        "author": account_of(base, state, commit.author().email()),
        "committer": account_of(base, state, commit.committer().email()),
        "parents": parents,
    })
}

// ---------------------------------------------------------------------------------------------
// Refs

/// GitHub's rules for a ref to create: `refs/` plus at least two slashes, a name git accepts,
/// and not in a namespace the host refuses.
fn check_new_ref_name(repo: &Repo, name: &str) -> Result<(), ApiError> {
    if !name.starts_with("refs/") || name.matches('/').count() < 2 {
        return Err(ApiError::unprocessable("Reference name is invalid").docs(DOCS_REFS));
    }
    if !git2::Reference::is_valid_name(name) {
        return Err(
            ApiError::unprocessable(format!("{name} is not a valid ref name.")).docs(DOCS_REFS),
        );
    }
    if repo
        .refused_ref_prefixes
        .iter()
        .any(|prefix| name.starts_with(prefix.as_str()))
    {
        return Err(
            ApiError::unprocessable(format!("{name} is not a valid ref name.")).docs(DOCS_REFS),
        );
    }
    Ok(())
}

/// The object `sha` names, or GitHub's 422 "Object does not exist".
fn existing_object(git: &Repository, sha: &str) -> Result<(Oid, ObjectType), ApiError> {
    let missing = || ApiError::unprocessable("Object does not exist").docs(DOCS_REFS);
    let oid = gitrepo::parse_sha(sha).ok_or_else(missing)?;
    let object = git.find_object(oid, None).map_err(|_| missing())?;
    Ok((oid, object.kind().unwrap_or(ObjectType::Any)))
}

#[derive(Deserialize)]
struct CreateRef {
    r#ref: Option<String>,
    sha: Option<String>,
}

async fn create_ref(
    AxumState(shared): AxumState<AppState>,
    Extension(caller): Extension<Caller>,
    Path((owner, name)): Path<(String, String)>,
    GhJson(body): GhJson<CreateRef>,
) -> Result<Response, ApiError> {
    let mut state = shared.lock();
    let repo = visible_repo(&state, &caller, &owner, &name)?;
    require(&state, &caller, repo, Permission::Write)?;
    let full = body.r#ref.ok_or_else(|| invalid_request("ref"))?;
    let sha = body.sha.ok_or_else(|| invalid_request("sha"))?;
    check_new_ref_name(repo, &full)?;
    let git = open(repo)?;
    let (oid, kind) = existing_object(&git, &sha)?;
    if full.starts_with("refs/heads/") && kind != ObjectType::Commit {
        return Err(ApiError::unprocessable("Object is not a commit").docs(DOCS_REFS));
    }
    if git.find_reference(&full).is_ok() {
        return Err(ApiError::unprocessable("Reference already exists").docs(DOCS_REFS));
    }
    if let Err(error) = git.reference(&full, oid, false, "github-emulator: create ref") {
        return Err(match error.code() {
            git2::ErrorCode::Exists => ApiError::unprocessable("Reference already exists"),
            git2::ErrorCode::InvalidSpec => {
                ApiError::unprocessable(format!("{full} is not a valid ref name."))
            }
            _ => ApiError::from(error),
        }
        .docs(DOCS_REFS));
    }
    let value = git_ref(&shared.base_url, repo, &full, oid, kind);
    let message = commit_message(&git, oid);
    drop(git);
    state.record_ref_write(
        format!("{owner}/{name}"),
        full,
        Some(oid.to_string()),
        message,
    );
    Ok(created(value))
}

/// The message of commit `oid`, if it is one.
fn commit_message(git: &git2::Repository, oid: git2::Oid) -> Option<String> {
    git.find_commit(oid)
        .ok()
        .and_then(|commit| commit.message().map(str::to_string))
}

/// 201 with GitHub's `Location` header.
pub(crate) fn created(value: Value) -> Response {
    let location = value["url"].as_str().unwrap_or_default().to_string();
    let mut response = (StatusCode::CREATED, axum::Json(value)).into_response();
    if let Ok(location) = header::HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

async fn get_ref(
    AxumState(shared): AxumState<AppState>,
    Extension(caller): Extension<Caller>,
    Path((owner, name, short)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let state = shared.lock();
    let repo = visible_repo(&state, &caller, &owner, &name)?;
    let git = open(repo)?;
    let full = format!("refs/{short}");
    let (oid, kind) = gitrepo::ref_target(&git, &full).ok_or_else(|| {
        ApiError::not_found().docs("https://docs.github.com/rest/git/refs#get-a-reference")
    })?;
    Ok(axum::Json(git_ref(&shared.base_url, repo, &full, oid, kind)).into_response())
}

async fn matching_refs(
    AxumState(shared): AxumState<AppState>,
    Extension(caller): Extension<Caller>,
    Path((owner, name, prefix)): Path<(String, String, String)>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let state = shared.lock();
    let repo = visible_repo(&state, &caller, &owner, &name)?;
    let git = open(repo)?;
    let prefix = format!("refs/{prefix}");
    let mut names: Vec<String> = git
        .references()?
        .filter_map(Result::ok)
        .filter_map(|r| r.name().map(str::to_string))
        .filter(|n| n.starts_with(&prefix))
        .collect();
    names.sort();
    let items: Vec<Value> = names
        .iter()
        .filter_map(|full| {
            let (oid, kind) = gitrepo::ref_target(&git, full)?;
            Some(git_ref(&shared.base_url, repo, full, oid, kind))
        })
        .collect();
    Ok(paginate(&shared, &uri, items))
}

#[derive(Deserialize)]
struct UpdateRef {
    sha: Option<String>,
    #[serde(default)]
    force: bool,
}

async fn update_ref(
    AxumState(shared): AxumState<AppState>,
    Extension(caller): Extension<Caller>,
    Path((owner, name, short)): Path<(String, String, String)>,
    GhJson(body): GhJson<UpdateRef>,
) -> Result<Response, ApiError> {
    let mut state = shared.lock();
    let repo = visible_repo(&state, &caller, &owner, &name)?;
    require(&state, &caller, repo, Permission::Write)?;
    let sha = body.sha.ok_or_else(|| invalid_request("sha"))?;
    let git = open(repo)?;
    let full = format!("refs/{short}");
    let Some((current, _)) = gitrepo::ref_target(&git, &full) else {
        return Err(ApiError::unprocessable("Reference does not exist").docs(DOCS_REFS));
    };
    let (new, kind) = existing_object(&git, &sha)?;
    if full.starts_with("refs/heads/") && kind != ObjectType::Commit {
        return Err(ApiError::unprocessable("Object is not a commit").docs(DOCS_REFS));
    }
    let not_fast_forward =
        || ApiError::unprocessable("Update is not a fast forward").docs(DOCS_REFS);
    if !body.force && new != current {
        let descends = git.graph_descendant_of(new, current).unwrap_or(false);
        if !descends {
            return Err(not_fast_forward());
        }
    }
    // Compare-and-swap against what was just read: a `git push` in between loses nobody's work.
    git.reference_matching(&full, new, true, current, "github-emulator: update ref")
        .map_err(|error| match error.code() {
            git2::ErrorCode::Modified => not_fast_forward(),
            _ => ApiError::from(error),
        })?;
    let value = git_ref(&shared.base_url, repo, &full, new, kind);
    let message = commit_message(&git, new);
    drop(git);
    state.record_ref_write(
        format!("{owner}/{name}"),
        full,
        Some(new.to_string()),
        message,
    );
    Ok(axum::Json(value).into_response())
}

async fn delete_ref(
    AxumState(shared): AxumState<AppState>,
    Extension(caller): Extension<Caller>,
    Path((owner, name, short)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let mut state = shared.lock();
    let repo = visible_repo(&state, &caller, &owner, &name)?;
    require(&state, &caller, repo, Permission::Write)?;
    let git = open(repo)?;
    let full = format!("refs/{short}");
    // GitHub says "Reference does not exist" here, but its description gives this 422 no body.
    let unprocessable = || StatusCode::UNPROCESSABLE_ENTITY.into_response();
    if full == format!("refs/heads/{}", repo.default_branch) {
        return Ok(unprocessable());
    }
    let Ok(mut reference) = git.find_reference(&full) else {
        return Ok(unprocessable());
    };
    reference.delete()?;
    drop(reference);
    drop(git);
    state.record_ref_write(format!("{owner}/{name}"), full, None, None);
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---------------------------------------------------------------------------------------------
// Commits

#[derive(Deserialize)]
struct GitUserInput {
    name: Option<String>,
    email: Option<String>,
    date: Option<String>,
}

#[derive(Deserialize)]
struct CreateCommit {
    message: Option<String>,
    tree: Option<String>,
    #[serde(default)]
    parents: Vec<String>,
    author: Option<GitUserInput>,
    committer: Option<GitUserInput>,
    signature: Option<String>,
}

fn signature_of(
    input: &GitUserInput,
    fallback_time: DateTime<Utc>,
) -> Result<git2::Signature<'static>, ApiError> {
    let name = input
        .name
        .as_deref()
        .ok_or_else(|| invalid_request("name"))?;
    let email = input
        .email
        .as_deref()
        .ok_or_else(|| invalid_request("email"))?;
    let when: DateTime<FixedOffset> = match &input.date {
        Some(text) => DateTime::parse_from_rfc3339(text)
            .map_err(|_| ApiError::validation("Commit", "date", "invalid").docs(DOCS_COMMITS))?,
        None => fallback_time.fixed_offset(),
    };
    let time = git2::Time::new(when.timestamp(), when.offset().local_minus_utc() / 60);
    Ok(git2::Signature::new(name, email, &time)?)
}

async fn create_commit(
    AxumState(shared): AxumState<AppState>,
    Extension(caller): Extension<Caller>,
    Path((owner, name)): Path<(String, String)>,
    GhJson(body): GhJson<CreateCommit>,
) -> Result<Response, ApiError> {
    let state = shared.lock();
    let repo = visible_repo(&state, &caller, &owner, &name)?;
    require(&state, &caller, repo, Permission::Write)?;
    let message = body.message.ok_or_else(|| invalid_request("message"))?;
    let tree_sha = body.tree.ok_or_else(|| invalid_request("tree"))?;
    if body.signature.is_some() {
        return Err(ApiError::unprocessable(
            "github-emulator does not model signed commits (`signature`)",
        )
        .docs(DOCS_COMMITS));
    }
    let git = open(repo)?;
    let tree = gitrepo::parse_sha(&tree_sha)
        .and_then(|oid| git.find_tree(oid).ok())
        .ok_or_else(|| ApiError::unprocessable("Tree SHA does not exist").docs(DOCS_COMMITS))?;
    let mut parents = Vec::new();
    for parent in &body.parents {
        let commit = gitrepo::parse_sha(parent)
            .and_then(|oid| git.find_commit(oid).ok())
            .ok_or_else(|| {
                ApiError::unprocessable("Parent SHA does not exist or is not a commit object")
                    .docs(DOCS_COMMITS)
            })?;
        parents.push(commit);
    }
    // Without an author GitHub uses the authenticated user; the committer defaults to the author.
    let now = state.now();
    let login = caller.require()?;
    let user = state.user(login).ok_or_else(ApiError::not_found)?;
    let default_author = GitUserInput {
        name: Some(user.name.clone().unwrap_or_else(|| user.login.clone())),
        email: Some(format!(
            "{}+{}@users.noreply.github.com",
            user.id, user.login
        )),
        date: None,
    };
    let author = signature_of(body.author.as_ref().unwrap_or(&default_author), now)?;
    let committer = match &body.committer {
        Some(input) => signature_of(input, now)?,
        None => author.clone(),
    };
    let parent_refs: Vec<&git2::Commit<'_>> = parents.iter().collect();
    let oid = git.commit(None, &author, &committer, &message, &tree, &parent_refs)?;
    let commit = git.find_commit(oid)?;
    Ok(created(git_commit(&shared.base_url, repo, &commit)))
}

async fn get_commit(
    AxumState(shared): AxumState<AppState>,
    Extension(caller): Extension<Caller>,
    Path((owner, name, sha)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let state = shared.lock();
    let repo = visible_repo(&state, &caller, &owner, &name)?;
    let git = open(repo)?;
    let commit = gitrepo::parse_sha(&sha)
        .and_then(|oid| git.find_commit(oid).ok())
        .ok_or_else(|| {
            ApiError::not_found()
                .docs("https://docs.github.com/rest/git/commits#get-a-commit-object")
        })?;
    Ok(axum::Json(git_commit(&shared.base_url, repo, &commit)).into_response())
}

// ---------------------------------------------------------------------------------------------
// Trees

#[derive(Deserialize)]
struct TreeEntryInput {
    path: Option<String>,
    mode: Option<String>,
    r#type: Option<String>,
    /// Absent, `null` (delete the path) or a sha.
    #[serde(default, deserialize_with = "present")]
    sha: Option<Option<String>>,
    content: Option<String>,
}

/// Tell an absent field from an explicit `null`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

#[derive(Deserialize)]
struct CreateTree {
    tree: Option<Vec<TreeEntryInput>>,
    base_tree: Option<String>,
}

fn tree_error(message: impl Into<String>) -> ApiError {
    ApiError::unprocessable(message).docs(DOCS_TREES)
}

async fn create_tree(
    AxumState(shared): AxumState<AppState>,
    Extension(caller): Extension<Caller>,
    Path((owner, name)): Path<(String, String)>,
    GhJson(body): GhJson<CreateTree>,
) -> Result<Response, ApiError> {
    let state = shared.lock();
    let repo = visible_repo(&state, &caller, &owner, &name)?;
    require(&state, &caller, repo, Permission::Write)?;
    let entries = body.tree.ok_or_else(|| invalid_request("tree"))?;
    let git = open(repo)?;
    let base = match &body.base_tree {
        None => None,
        Some(sha) => Some(
            gitrepo::parse_sha(sha)
                .and_then(|oid| git.find_tree(oid).ok())
                .ok_or_else(|| tree_error(format!("base_tree {sha} is not a valid tree oid")))?,
        ),
    };
    let mut changes = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        let path = entry
            .path
            .as_deref()
            .ok_or_else(|| tree_error(format!("tree[{index}].path is missing")))?;
        let segments: Vec<String> = path.split('/').map(str::to_string).collect();
        if segments
            .iter()
            .any(|s| s.is_empty() || s == "." || s == "..")
        {
            return Err(tree_error(format!("tree.path {path} is invalid")));
        }
        let mode_text = entry.mode.as_deref().unwrap_or("100644");
        let mode = match mode_text {
            "100644" => 0o100644,
            "100755" => 0o100755,
            "040000" => 0o040000,
            "160000" => 0o160000,
            "120000" => 0o120000,
            other => return Err(tree_error(format!("tree.mode {other} is invalid"))),
        };
        let kind = entry.r#type.as_deref().unwrap_or(match mode {
            0o040000 => "tree",
            0o160000 => "commit",
            _ => "blob",
        });
        let expected = match mode {
            0o040000 => "tree",
            0o160000 => "commit",
            _ => "blob",
        };
        if kind != expected {
            return Err(tree_error(format!(
                "tree.type {kind} does not match mode {mode_text}"
            )));
        }
        let change = match (&entry.sha, &entry.content) {
            (Some(_), Some(_)) => {
                return Err(tree_error(
                    "Must supply either tree.sha or tree.content, not both",
                ));
            }
            (None, None) => {
                return Err(tree_error("Must supply either tree.sha or tree.content"));
            }
            (Some(None), None) => None,
            (None, Some(content)) => {
                if kind != "blob" {
                    return Err(tree_error("tree.content is only valid for blobs"));
                }
                Some((git.blob(content.as_bytes())?, mode))
            }
            (Some(Some(sha)), None) => {
                let oid = gitrepo::parse_sha(sha)
                    .ok_or_else(|| tree_error(format!("tree.sha {sha} is not a valid {kind}")))?;
                // Submodule entries name commits of another repository; everything else must exist.
                if kind != "commit" {
                    let found = git.find_object(oid, None).ok().and_then(|o| o.kind());
                    let wanted = if kind == "tree" {
                        ObjectType::Tree
                    } else {
                        ObjectType::Blob
                    };
                    if found != Some(wanted) {
                        return Err(tree_error(format!("tree.sha {sha} is not a valid {kind}")));
                    }
                }
                Some((oid, mode))
            }
        };
        changes.push(TreeChange {
            path: segments,
            entry: change,
        });
    }
    let oid = gitrepo::edit_tree(&git, base.as_ref(), &changes)?;
    let tree = git.find_tree(oid)?;
    let repo_api = render::repo_url(&shared.base_url, repo);
    let items: Vec<Value> = tree
        .iter()
        .map(|entry| {
            let kind = entry.kind().unwrap_or(ObjectType::Blob);
            let sha = entry.id().to_string();
            let mut item = json!({
                "path": entry.name().unwrap_or(""),
                "mode": format!("{:06o}", entry.filemode()),
                "type": gitrepo::kind_name(kind),
                "sha": sha,
                "url": object_url(&shared.base_url, repo, kind, &sha),
            });
            if kind == ObjectType::Blob
                && let Ok(blob) = git.find_blob(entry.id())
            {
                item["size"] = json!(blob.size());
            }
            item
        })
        .collect();
    Ok(created(json!({
        "sha": oid.to_string(),
        "url": format!("{repo_api}/git/trees/{oid}"),
        "tree": items,
        "truncated": false,
    })))
}

// ---------------------------------------------------------------------------------------------
// Branches

async fn get_branch(
    AxumState(shared): AxumState<AppState>,
    Extension(caller): Extension<Caller>,
    Path((owner, name, branch)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let state = shared.lock();
    let repo = visible_repo(&state, &caller, &owner, &name)?;
    let git = open(repo)?;
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, "Branch not found").docs(DOCS_BRANCH);
    let tip = gitrepo::branch_tip(&git, &branch).ok_or_else(not_found)?;
    let commit = git.find_commit(tip)?;
    let repo_api = render::repo_url(&shared.base_url, repo);
    let branch_url = format!("{repo_api}/branches/{branch}");
    Ok(axum::Json(json!({
        "name": branch,
        "commit": repo_commit(&shared.base_url, &state, repo, &commit),
        "_links": {
            "html": format!("{}/{}/{}/tree/{branch}", shared.base_url, repo.owner, repo.name),
            "self": branch_url,
        },
        "protected": false,
        "protection": {
            "enabled": false,
            "required_status_checks": {"enforcement_level": "off", "contexts": [], "checks": []},
        },
        "protection_url": format!("{branch_url}/protection"),
    }))
    .into_response())
}
