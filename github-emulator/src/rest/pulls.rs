//! Pull requests: list, create, get, merge (a real merge in the bare repository) and reviews.
//!
//! A pull request is an [`Issue`] with `pull: Some(Pull)`, sharing the issue number space. The
//! head and base shas of an open pull request follow the branches live (a `git push` to the head
//! branch moves the pull request, as on GitHub); a closed one keeps what it had.

use std::sync::LazyLock;

use axum::Router;
use axum::extract::{Extension, Path, State as AxumState};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use git2::Repository;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::gitrepo::{self, MergePreview};
use crate::http::{ApiError, AppState, Caller, GhJson, paginate, query_param};
use crate::render;
use crate::rest::git::{created, open};
use crate::rest::{require, visible_repo};
use crate::state::{Issue, IssueState, Permission, Pull, Repo, Review, State, node_id};

const DOCS_LIST: &str = "https://docs.github.com/rest/pulls/pulls#list-pull-requests";
const DOCS_CREATE: &str = "https://docs.github.com/rest/pulls/pulls#create-a-pull-request";
const DOCS_GET: &str = "https://docs.github.com/rest/pulls/pulls#get-a-pull-request";
const DOCS_MERGE: &str = "https://docs.github.com/rest/pulls/pulls#merge-a-pull-request";
const DOCS_REVIEWS: &str =
    "https://docs.github.com/rest/pulls/reviews#create-a-review-for-a-pull-request";

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/repos/{owner}/{repo}/pulls",
            get(list_pulls).post(create_pull),
        )
        .route("/repos/{owner}/{repo}/pulls/{pull_number}", get(get_pull))
        .route(
            "/repos/{owner}/{repo}/pulls/{pull_number}/merge",
            put(merge_pull),
        )
        .route(
            "/repos/{owner}/{repo}/pulls/{pull_number}/reviews",
            get(list_reviews).post(create_review),
        )
}

// ---------------------------------------------------------------------------------------------
// Live shas

/// Move every open pull request's head and base shas to where their branches are now (pushes
/// land in the bare repository behind the emulator's back). A moved head bumps `updated_at`.
fn refresh_open_pulls(state: &mut State, owner: &str, name: &str) -> Result<(), ApiError> {
    let now = state.now();
    let Some(repo) = state.repo_mut(owner, name) else {
        return Ok(());
    };
    let git = open(repo)?;
    for issue in repo.issues.values_mut() {
        if issue.state != IssueState::Open {
            continue;
        }
        let Some(pull) = issue.pull.as_mut() else {
            continue;
        };
        if let Some(tip) = gitrepo::branch_tip(&git, &pull.head_ref) {
            let tip = tip.to_string();
            if tip != pull.head_sha {
                pull.head_sha = tip;
                issue.updated_at = now;
            }
        }
        if let Some(tip) = gitrepo::branch_tip(&git, &pull.base_ref) {
            pull.base_sha = tip.to_string();
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Rendering

fn branch_end(base: &str, state: &State, repo: &Repo, branch: &str, sha: &str) -> Value {
    json!({
        "label": format!("{}:{branch}", repo.owner),
        "ref": branch,
        "sha": sha,
        "user": render::user(base, state, &repo.owner),
        "repo": render::repo(base, state, repo, None),
    })
}

/// The fields `pull-request-simple` and `pull-request` share.
fn pull_common(
    base: &str,
    state: &State,
    repo: &Repo,
    issue: &Issue,
    pull: &Pull,
    simple: bool,
) -> Value {
    let repo_api = render::repo_url(base, repo);
    let number = issue.number;
    let url = format!("{repo_api}/pulls/{number}");
    let html_url = format!("{base}/{}/{}/pull/{number}", repo.owner, repo.name);
    let issue_url = format!("{repo_api}/issues/{number}");
    let comments_url = format!("{issue_url}/comments");
    let statuses_url = format!("{repo_api}/statuses/{}", pull.head_sha);
    let review_comments_url = format!("{url}/comments");
    let review_comment_url = format!("{repo_api}/pulls/comments{{/number}}");
    let commits_url = format!("{url}/commits");
    let labels: Vec<Value> = issue
        .labels
        .iter()
        .map(|name| {
            let mut label = render::label_named(base, repo, name);
            // `pull-request-simple` describes a label's description as a string, never null.
            if simple && label["description"].is_null() {
                label["description"] = json!("");
            }
            label
        })
        .collect();
    let assignees: Vec<Value> = issue
        .assignees
        .iter()
        .map(|login| render::user(base, state, login))
        .collect();
    json!({
        "url": url,
        "id": pull.id,
        // The same node id the issue view of this pull request carries.
        "node_id": node_id("PR", issue.id),
        "html_url": html_url,
        "diff_url": format!("{html_url}.diff"),
        "patch_url": format!("{html_url}.patch"),
        "issue_url": issue_url,
        "commits_url": commits_url,
        "review_comments_url": review_comments_url,
        "review_comment_url": review_comment_url,
        "comments_url": comments_url,
        "statuses_url": statuses_url,
        "number": number,
        "state": issue.state.as_str(),
        "locked": issue.locked,
        "title": issue.title,
        "user": render::user(base, state, &issue.user),
        "body": issue.body,
        "labels": labels,
        "milestone": Value::Null,
        "active_lock_reason": Value::Null,
        "created_at": render::time(issue.created_at),
        "updated_at": render::time(issue.updated_at),
        "closed_at": render::opt_time(issue.closed_at),
        "merged_at": render::opt_time(pull.merged_at),
        "merge_commit_sha": pull.merge_commit_sha,
        "assignee": assignees.first().cloned().unwrap_or(Value::Null),
        "assignees": assignees,
        "requested_reviewers": [],
        "requested_teams": [],
        "head": branch_end(base, state, repo, &pull.head_ref, &pull.head_sha),
        "base": branch_end(base, state, repo, &pull.base_ref, &pull.base_sha),
        "_links": {
            "self": {"href": url},
            "html": {"href": html_url},
            "issue": {"href": issue_url},
            "comments": {"href": comments_url},
            "review_comments": {"href": review_comments_url},
            "review_comment": {"href": review_comment_url},
            "commits": {"href": commits_url},
            "statuses": {"href": statuses_url},
        },
        "author_association": state.author_association(repo, &issue.user),
        "auto_merge": Value::Null,
        "draft": pull.draft,
    })
}

/// `pull-request-simple`, as lists show pull requests.
pub(crate) fn pull_simple(
    base: &str,
    state: &State,
    repo: &Repo,
    issue: &Issue,
    pull: &Pull,
) -> Value {
    pull_common(base, state, repo, issue, pull, true)
}

/// `pull-request`, with mergeability and size computed from the bare repository.
pub(crate) fn pull_full(
    base: &str,
    state: &State,
    repo: &Repo,
    issue: &Issue,
    pull: &Pull,
    git: &Repository,
) -> Value {
    let mut value = pull_common(base, state, repo, issue, pull, false);
    let head = gitrepo::parse_sha(&pull.head_sha);
    let base_tip = gitrepo::parse_sha(&pull.base_sha);
    let (mut commits, mut additions, mut deletions, mut changed_files) = (0, 0, 0, 0);
    let mut mergeable = Value::Null;
    let mut mergeable_state = "unknown";
    if let (Some(head), Some(base_tip)) = (head, base_tip) {
        if let Ok(list) = gitrepo::commits_between(git, base_tip, head) {
            commits = list.len();
        }
        if let Ok((a, d, f)) = gitrepo::diff_stats(git, base_tip, head) {
            (additions, deletions, changed_files) = (a, d, f);
        }
        if issue.state == IssueState::Open {
            match gitrepo::preview_merge(git, base_tip, head) {
                Ok(MergePreview::Clean(_)) => {
                    mergeable = json!(true);
                    mergeable_state = if pull.draft { "draft" } else { "clean" };
                }
                Ok(MergePreview::Conflict) => {
                    mergeable = json!(false);
                    mergeable_state = "dirty";
                }
                Err(_) => {}
            }
        }
    }
    let comments = repo
        .comments
        .values()
        .filter(|c| c.issue_number == issue.number)
        .count();
    let extra = json!({
        "merged": pull.merged_at.is_some(),
        "mergeable": mergeable,
        "rebaseable": mergeable,
        "mergeable_state": mergeable_state,
        "merged_by": pull.merged_by.as_deref().map(|l| render::user(base, state, l)).unwrap_or(Value::Null),
        "comments": comments,
        "review_comments": 0,
        "maintainer_can_modify": false,
        "commits": commits,
        "additions": additions,
        "deletions": deletions,
        "changed_files": changed_files,
    });
    if let (Some(target), Some(extra)) = (value.as_object_mut(), extra.as_object()) {
        target.extend(extra.clone());
    }
    value
}

/// `pull-request-review`.
fn review_json(base: &str, state: &State, repo: &Repo, number: u64, review: &Review) -> Value {
    let html_url = format!(
        "{base}/{}/{}/pull/{number}#pullrequestreview-{}",
        repo.owner, repo.name, review.id
    );
    let pull_url = format!("{}/pulls/{number}", render::repo_url(base, repo));
    let mut value = json!({
        "id": review.id,
        "node_id": node_id("PRR", review.id),
        "user": render::user(base, state, &review.user),
        "body": review.body,
        "state": review.state,
        "html_url": html_url,
        "pull_request_url": pull_url,
        "_links": {"html": {"href": html_url}, "pull_request": {"href": pull_url}},
        "commit_id": review.commit_id,
        "author_association": state.author_association(repo, &review.user),
    });
    if let Some(at) = review.submitted_at {
        value["submitted_at"] = json!(render::time(at));
    }
    value
}

// ---------------------------------------------------------------------------------------------
// List, create, get

async fn list_pulls(
    AxumState(shared): AxumState<AppState>,
    Extension(caller): Extension<Caller>,
    Path((owner, name)): Path<(String, String)>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let mut state = shared.lock();
    visible_repo(&state, &caller, &owner, &name)?;
    let invalid =
        |field: &str| ApiError::validation("PullRequest", field, "invalid").docs(DOCS_LIST);
    let wanted = query_param(&uri, "state").unwrap_or_else(|| "open".to_string());
    if !["open", "closed", "all"].contains(&wanted.as_str()) {
        return Err(invalid("state"));
    }
    let sort = query_param(&uri, "sort").unwrap_or_else(|| "created".to_string());
    if !["created", "updated", "popularity", "long-running"].contains(&sort.as_str()) {
        return Err(invalid("sort"));
    }
    // GitHub: `desc` when sorting by creation (or not at all), `asc` otherwise.
    let default_direction = if sort == "created" { "desc" } else { "asc" };
    let direction = query_param(&uri, "direction").unwrap_or_else(|| default_direction.to_string());
    if !["asc", "desc"].contains(&direction.as_str()) {
        return Err(invalid("direction"));
    }
    // `head` is `owner:branch`; GitHub ignores a value without the owner.
    let head = query_param(&uri, "head").and_then(|h| {
        h.split_once(':')
            .map(|(o, b)| (o.to_lowercase(), b.to_string()))
    });
    let base_filter = query_param(&uri, "base");
    refresh_open_pulls(&mut state, &owner, &name)?;
    let repo = visible_repo(&state, &caller, &owner, &name)?;
    let comments_of = |number: u64| {
        repo.comments
            .values()
            .filter(|c| c.issue_number == number)
            .count()
    };
    let mut pulls: Vec<(&Issue, &Pull)> = repo
        .issues
        .values()
        .filter_map(|issue| issue.pull.as_ref().map(|pull| (issue, pull)))
        .filter(|(issue, _)| match wanted.as_str() {
            "open" => issue.state == IssueState::Open,
            "closed" => issue.state == IssueState::Closed,
            _ => true,
        })
        .filter(|(_, pull)| match &head {
            Some((head_owner, branch)) => {
                *head_owner == repo.owner.to_lowercase() && pull.head_ref == *branch
            }
            None => true,
        })
        .filter(|(_, pull)| base_filter.as_ref().is_none_or(|b| pull.base_ref == *b))
        .collect();
    pulls.sort_by(|(a, _), (b, _)| {
        let order = match sort.as_str() {
            "updated" => a.updated_at.cmp(&b.updated_at),
            "popularity" => comments_of(a.number).cmp(&comments_of(b.number)),
            _ => a.created_at.cmp(&b.created_at),
        };
        order.then(a.number.cmp(&b.number))
    });
    if direction == "desc" {
        pulls.reverse();
    }
    let items: Vec<Value> = pulls
        .iter()
        .map(|(issue, pull)| pull_simple(&shared.base_url, &state, repo, issue, pull))
        .collect();
    Ok(paginate(&shared, &uri, items))
}

#[derive(Deserialize)]
struct CreatePull {
    title: Option<String>,
    head: Option<String>,
    base: Option<String>,
    body: Option<String>,
    #[serde(default)]
    draft: bool,
    issue: Option<u64>,
    head_repo: Option<String>,
}

async fn create_pull(
    AxumState(shared): AxumState<AppState>,
    Extension(caller): Extension<Caller>,
    Path((owner, name)): Path<(String, String)>,
    GhJson(body): GhJson<CreatePull>,
) -> Result<Response, ApiError> {
    let base_url = shared.base_url.clone();
    let value = shared.write(|state| {
        let repo = visible_repo(state, &caller, &owner, &name)?;
        require(state, &caller, repo, Permission::Write)?;
        let login = caller.require()?.to_string();
        let missing = |field: &str| {
            ApiError::validation("PullRequest", field, "missing_field").docs(DOCS_CREATE)
        };
        let invalid =
            |field: &str| ApiError::validation("PullRequest", field, "invalid").docs(DOCS_CREATE);
        if body.issue.is_some() {
            return Err(ApiError::unprocessable(
                "github-emulator does not model converting an issue into a pull request (`issue`)",
            )
            .docs(DOCS_CREATE));
        }
        let title = body
            .title
            .clone()
            .filter(|t| !t.trim().is_empty())
            .ok_or_else(|| missing("title"))?;
        let head_text = body.head.clone().ok_or_else(|| missing("head"))?;
        let base_ref = body.base.clone().ok_or_else(|| missing("base"))?;
        let head_ref = match head_text.split_once(':') {
            Some((head_owner, branch)) if head_owner.eq_ignore_ascii_case(&repo.owner) => {
                branch.to_string()
            }
            // A head in another repository (a fork) is not modelled: no such branch here.
            Some(_) => return Err(invalid("head")),
            None => head_text.clone(),
        };
        if let Some(head_repo) = &body.head_repo
            && !head_repo.eq_ignore_ascii_case(&repo.full_name())
            && !head_repo.eq_ignore_ascii_case(&repo.name)
        {
            return Err(invalid("head_repo"));
        }
        let git = open(repo)?;
        let base_tip = gitrepo::branch_tip(&git, &base_ref).ok_or_else(|| invalid("base"))?;
        let head_tip = gitrepo::branch_tip(&git, &head_ref).ok_or_else(|| invalid("head"))?;
        let custom = |message: String| {
            let mut error = ApiError::unprocessable("Validation Failed").docs(DOCS_CREATE);
            error
                .errors
                .push(json!({"resource": "PullRequest", "code": "custom", "message": message}));
            error
        };
        let duplicate = repo.issues.values().any(|issue| {
            issue.state == IssueState::Open
                && issue
                    .pull
                    .as_ref()
                    .is_some_and(|p| p.head_ref == head_ref && p.base_ref == base_ref)
        });
        if duplicate {
            return Err(custom(format!(
                "A pull request already exists for {}:{head_ref}.",
                repo.owner
            )));
        }
        if head_tip == base_tip || git.graph_descendant_of(base_tip, head_tip).unwrap_or(false) {
            return Err(custom(format!(
                "No commits between {base_ref} and {head_ref}"
            )));
        }
        drop(git);
        let now = state.now();
        let issue_id = state.data.alloc_id();
        let pull_id = state.data.alloc_id();
        let repo = state
            .repo_mut(&owner, &name)
            .ok_or_else(ApiError::not_found)?;
        let number = repo.next_number;
        repo.next_number += 1;
        repo.updated_at = now;
        repo.issues.insert(
            number,
            Issue {
                id: issue_id,
                number,
                title,
                body: body.body.clone(),
                user: login,
                state: IssueState::Open,
                state_reason: None,
                labels: Vec::new(),
                assignees: Vec::new(),
                locked: false,
                created_at: now,
                updated_at: now,
                closed_at: None,
                closed_by: None,
                pull: Some(Pull {
                    id: pull_id,
                    head_ref,
                    head_sha: head_tip.to_string(),
                    base_ref,
                    base_sha: base_tip.to_string(),
                    draft: body.draft,
                    merged_at: None,
                    merged_by: None,
                    merge_commit_sha: None,
                    reviews: Vec::new(),
                }),
            },
        );
        let state = &*state;
        let repo = visible_repo(state, &caller, &owner, &name)?;
        let issue = &repo.issues[&number];
        let pull = issue.pull.as_ref().ok_or_else(ApiError::not_found)?;
        let git = open(repo)?;
        Ok(pull_full(&base_url, state, repo, issue, pull, &git))
    })?;
    Ok(created(value))
}

/// `{pull_number}`: GitHub answers 404 for a path segment that is not a number.
fn pull_number(text: &str) -> Result<u64, ApiError> {
    text.parse::<u64>().map_err(|_| ApiError::not_found())
}

fn find_pull<'r>(
    repo: &'r Repo,
    number: u64,
    docs: &str,
) -> Result<(&'r Issue, &'r Pull), ApiError> {
    repo.issues
        .get(&number)
        .and_then(|issue| issue.pull.as_ref().map(|pull| (issue, pull)))
        .ok_or_else(|| ApiError::not_found().docs(docs))
}

async fn get_pull(
    AxumState(shared): AxumState<AppState>,
    Extension(caller): Extension<Caller>,
    Path((owner, name, number)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let number = pull_number(&number)?;
    let mut state = shared.lock();
    visible_repo(&state, &caller, &owner, &name)?;
    refresh_open_pulls(&mut state, &owner, &name)?;
    let repo = visible_repo(&state, &caller, &owner, &name)?;
    let (issue, pull) = find_pull(repo, number, DOCS_GET)?;
    let git = open(repo)?;
    Ok(axum::Json(pull_full(&shared.base_url, &state, repo, issue, pull, &git)).into_response())
}

// ---------------------------------------------------------------------------------------------
// Merge

#[derive(Deserialize, Default)]
struct MergeRequest {
    commit_title: Option<String>,
    commit_message: Option<String>,
    sha: Option<String>,
    merge_method: Option<String>,
}

/// `Closes #N`, `fixes: #N`, `Resolved acme/widgets#N` …: GitHub's closing keywords.
static CLOSING: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(
        r"(?i)\b(?:close[sd]?|fix(?:e[sd])?|resolve[sd]?)\s*:?\s+(?:([A-Za-z0-9_.-]+)/([A-Za-z0-9_.-]+))?#([0-9]+)\b",
    )
    .expect("closing keyword pattern compiles")
});

/// Issue numbers of this repository that `text` closes with a keyword.
pub(crate) fn closing_references(repo: &Repo, text: &str) -> Vec<u64> {
    let mut numbers = Vec::new();
    for captures in CLOSING.captures_iter(text) {
        if let (Some(o), Some(r)) = (captures.get(1), captures.get(2))
            && !(o.as_str().eq_ignore_ascii_case(&repo.owner)
                && r.as_str().eq_ignore_ascii_case(&repo.name))
        {
            continue;
        }
        if let Some(number) = captures.get(3).and_then(|n| n.as_str().parse().ok())
            && !numbers.contains(&number)
        {
            numbers.push(number);
        }
    }
    numbers
}

fn not_mergeable() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "Pull Request is not mergeable",
    )
    .docs(DOCS_MERGE)
}

async fn merge_pull(
    AxumState(shared): AxumState<AppState>,
    Extension(caller): Extension<Caller>,
    Path((owner, name, number)): Path<(String, String, String)>,
    GhJson(body): GhJson<Option<MergeRequest>>,
) -> Result<Response, ApiError> {
    let number = pull_number(&number)?;
    let body = body.unwrap_or_default();
    // The body is validated before anything else, as GitHub checks a request against its schema.
    let method = body
        .merge_method
        .clone()
        .unwrap_or_else(|| "merge".to_string());
    if !["merge", "squash", "rebase"].contains(&method.as_str()) {
        return Err(
            ApiError::validation("PullRequest", "merge_method", "invalid").docs(DOCS_MERGE),
        );
    }
    let sha = shared.write(|state| {
        visible_repo(state, &caller, &owner, &name)?;
        refresh_open_pulls(state, &owner, &name)?;
        let repo = visible_repo(state, &caller, &owner, &name)?;
        require(state, &caller, repo, Permission::Write)?;
        let login = caller.require()?.to_string();
        let (issue, pull) = find_pull(repo, number, DOCS_MERGE)?;
        if issue.state != IssueState::Open || pull.merged_at.is_some() {
            return Err(not_mergeable());
        }
        if pull.draft {
            return Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "Pull Request is still a draft",
            )
            .docs(DOCS_MERGE));
        }
        if let Some(expected) = &body.sha
            && *expected != pull.head_sha
        {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "Head branch was modified. Review and try the merge again.",
            )
            .docs(DOCS_MERGE));
        }
        let git = open(repo)?;
        let head = gitrepo::parse_sha(&pull.head_sha).ok_or_else(not_mergeable)?;
        let base_tip = gitrepo::branch_tip(&git, &pull.base_ref).ok_or_else(not_mergeable)?;
        let tree_id = match gitrepo::preview_merge(&git, base_tip, head)? {
            MergePreview::Clean(tree) => tree,
            MergePreview::Conflict => return Err(not_mergeable()),
        };
        let merger = state.user(&login).ok_or_else(ApiError::not_found)?;
        let now = state.now();
        let when = git2::Time::new(now.timestamp(), 0);
        let author = git2::Signature::new(
            merger.name.as_deref().unwrap_or(&merger.login),
            &format!("{}+{}@users.noreply.github.com", merger.id, merger.login),
            &when,
        )?;
        let committer = git2::Signature::new("GitHub", "noreply@github.com", &when)?;
        let base_commit = git.find_commit(base_tip)?;
        let new_tip = match method.as_str() {
            "merge" => {
                let title = body.commit_title.clone().unwrap_or_else(|| {
                    format!(
                        "Merge pull request #{number} from {}/{}",
                        repo.owner, pull.head_ref
                    )
                });
                let detail = body
                    .commit_message
                    .clone()
                    .unwrap_or_else(|| issue.title.clone());
                let message = if detail.is_empty() {
                    title
                } else {
                    format!("{title}\n\n{detail}")
                };
                let head_commit = git.find_commit(head)?;
                let tree = git.find_tree(tree_id)?;
                git.commit(
                    None,
                    &author,
                    &committer,
                    &message,
                    &tree,
                    &[&base_commit, &head_commit],
                )?
            }
            "squash" => {
                let title = body
                    .commit_title
                    .clone()
                    .unwrap_or_else(|| format!("{} (#{number})", issue.title));
                let detail = match body.commit_message.clone() {
                    Some(detail) => detail,
                    None => gitrepo::commits_between(&git, base_tip, head)?
                        .iter()
                        .filter_map(|oid| git.find_commit(*oid).ok())
                        .map(|c| format!("* {}", c.message().unwrap_or("").trim_end()))
                        .collect::<Vec<_>>()
                        .join("\n\n"),
                };
                let message = if detail.is_empty() {
                    title
                } else {
                    format!("{title}\n\n{detail}")
                };
                let tree = git.find_tree(tree_id)?;
                git.commit(None, &author, &committer, &message, &tree, &[&base_commit])?
            }
            _ => {
                // Rebase: replay each commit of the pull request onto the base, keeping authors.
                let mut onto = base_tip;
                for oid in gitrepo::commits_between(&git, base_tip, head)? {
                    let commit = git.find_commit(oid)?;
                    if commit.parent_count() > 1 {
                        return Err(not_mergeable());
                    }
                    let onto_commit = git.find_commit(onto)?;
                    let mut index = git.cherrypick_commit(&commit, &onto_commit, 0, None)?;
                    if index.has_conflicts() {
                        return Err(not_mergeable());
                    }
                    let tree = git.find_tree(index.write_tree_to(&git)?)?;
                    onto = git.commit(
                        None,
                        &commit.author(),
                        &committer,
                        commit.message().unwrap_or(""),
                        &tree,
                        &[&onto_commit],
                    )?;
                }
                onto
            }
        };
        // Compare-and-swap: a push to the base since we read it makes the merge fail, not vanish.
        let base_full = format!("refs/heads/{}", pull.base_ref);
        git.reference_matching(
            &base_full,
            new_tip,
            true,
            base_tip,
            &format!("github-emulator: merge #{number}"),
        )
        .map_err(|error| match error.code() {
            git2::ErrorCode::Modified => ApiError::new(
                StatusCode::CONFLICT,
                "Base branch was modified. Review and try the merge again.",
            )
            .docs(DOCS_MERGE),
            _ => ApiError::from(error),
        })?;
        let closes = if pull.base_ref == repo.default_branch {
            closing_references(repo, issue.body.as_deref().unwrap_or(""))
        } else {
            Vec::new()
        };
        let repo = state
            .repo_mut(&owner, &name)
            .ok_or_else(ApiError::not_found)?;
        repo.pushed_at = now;
        repo.updated_at = now;
        if let Some(issue) = repo.issues.get_mut(&number) {
            issue.state = IssueState::Closed;
            issue.closed_at = Some(now);
            issue.closed_by = Some(login.clone());
            issue.updated_at = now;
            if let Some(pull) = issue.pull.as_mut() {
                pull.merged_at = Some(now);
                pull.merged_by = Some(login.clone());
                pull.merge_commit_sha = Some(new_tip.to_string());
                pull.base_sha = base_tip.to_string();
            }
        }
        for closed in closes {
            if let Some(target) = repo.issues.get_mut(&closed)
                && target.pull.is_none()
                && target.state == IssueState::Open
            {
                target.state = IssueState::Closed;
                target.state_reason = Some("completed".to_string());
                target.closed_at = Some(now);
                target.closed_by = Some(login.clone());
                target.updated_at = now;
            }
        }
        Ok(new_tip.to_string())
    })?;
    Ok(axum::Json(json!({
        "sha": sha,
        "merged": true,
        "message": "Pull Request successfully merged",
    }))
    .into_response())
}

// ---------------------------------------------------------------------------------------------
// Reviews

async fn list_reviews(
    AxumState(shared): AxumState<AppState>,
    Extension(caller): Extension<Caller>,
    Path((owner, name, number)): Path<(String, String, String)>,
    uri: Uri,
) -> Result<Response, ApiError> {
    let number = pull_number(&number)?;
    let state = shared.lock();
    let repo = visible_repo(&state, &caller, &owner, &name)?;
    let (_, pull) = find_pull(
        repo,
        number,
        "https://docs.github.com/rest/pulls/reviews#list-reviews-for-a-pull-request",
    )?;
    let viewer = caller.login.as_deref().map(str::to_lowercase);
    // A pending review is visible to its author only.
    let items: Vec<Value> = pull
        .reviews
        .iter()
        .filter(|r| {
            r.state != "PENDING" || viewer.as_deref() == Some(r.user.to_lowercase().as_str())
        })
        .map(|r| review_json(&shared.base_url, &state, repo, number, r))
        .collect();
    Ok(paginate(&shared, &uri, items))
}

#[derive(Deserialize)]
struct CreateReview {
    commit_id: Option<String>,
    body: Option<String>,
    event: Option<String>,
    #[serde(default)]
    comments: Vec<Value>,
}

/// GitHub's `validation-error-simple`: "Unprocessable Entity" with plain-string errors.
fn review_refused(reason: impl Into<String>) -> ApiError {
    let mut error = ApiError::unprocessable("Unprocessable Entity").docs(DOCS_REVIEWS);
    error.errors.push(Value::String(reason.into()));
    error
}

async fn create_review(
    AxumState(shared): AxumState<AppState>,
    Extension(caller): Extension<Caller>,
    Path((owner, name, number)): Path<(String, String, String)>,
    GhJson(body): GhJson<CreateReview>,
) -> Result<Response, ApiError> {
    let number = pull_number(&number)?;
    let base_url = shared.base_url.clone();
    let value = shared.write(|state| {
        let login = caller.require()?.to_string();
        visible_repo(state, &caller, &owner, &name)?;
        refresh_open_pulls(state, &owner, &name)?;
        let repo = visible_repo(state, &caller, &owner, &name)?;
        let (issue, pull) = find_pull(repo, number, DOCS_REVIEWS)?;
        if !body.comments.is_empty() {
            return Err(review_refused(
                "github-emulator does not model review comments (`comments`)",
            ));
        }
        let review_state = match body.event.as_deref() {
            None | Some("") => "PENDING",
            Some("APPROVE") => "APPROVED",
            Some("REQUEST_CHANGES") => "CHANGES_REQUESTED",
            Some("COMMENT") => "COMMENTED",
            Some(other) => {
                return Err(review_refused(format!(
                    "Unexpected event {other:?}: expected APPROVE, REQUEST_CHANGES or COMMENT"
                )));
            }
        };
        let own = issue.user.eq_ignore_ascii_case(&login);
        match review_state {
            "APPROVED" if own => {
                return Err(review_refused("Can not approve your own pull request"));
            }
            "CHANGES_REQUESTED" if own => {
                return Err(review_refused(
                    "Can not request changes on your own pull request",
                ));
            }
            _ => {}
        }
        let text = body.body.clone().unwrap_or_default();
        if matches!(review_state, "CHANGES_REQUESTED" | "COMMENTED") && text.trim().is_empty() {
            let event = body.event.as_deref().unwrap_or_default();
            return Err(review_refused(format!(
                "Review body is required for event {event}"
            )));
        }
        if review_state == "PENDING"
            && pull
                .reviews
                .iter()
                .any(|r| r.state == "PENDING" && r.user.eq_ignore_ascii_case(&login))
        {
            return Err(review_refused(
                "User can only have one pending review per pull request",
            ));
        }
        let commit_id = match &body.commit_id {
            None => pull.head_sha.clone(),
            Some(sha) => {
                let git = open(repo)?;
                gitrepo::parse_sha(sha)
                    .and_then(|oid| git.find_commit(oid).ok())
                    .map(|c| c.id().to_string())
                    .ok_or_else(|| {
                        review_refused(format!("commit_id {sha} is not part of the pull request"))
                    })?
            }
        };
        let now = state.now();
        let id = state.data.alloc_id();
        let user = state.user(&login).map(|u| u.login.clone()).unwrap_or(login);
        let review = Review {
            id,
            user,
            body: text,
            state: review_state.to_string(),
            commit_id,
            submitted_at: (review_state != "PENDING").then_some(now),
        };
        let repo = state
            .repo_mut(&owner, &name)
            .ok_or_else(ApiError::not_found)?;
        let issue = repo
            .issues
            .get_mut(&number)
            .ok_or_else(ApiError::not_found)?;
        if review_state != "PENDING" {
            issue.updated_at = now;
        }
        if let Some(pull) = issue.pull.as_mut() {
            pull.reviews.push(review.clone());
        }
        let state = &*state;
        let repo = visible_repo(state, &caller, &owner, &name)?;
        Ok(review_json(&base_url, state, repo, number, &review))
    })?;
    Ok(axum::Json(value).into_response())
}
