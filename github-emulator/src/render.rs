//! JSON bodies in GitHub's REST shapes. Every object carries the fields GitHub's OpenAPI
//! description marks `required`, with the emulator's own origin in every URL, so clients that
//! follow `url` fields stay on the emulator.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use crate::state::{Comment, Issue, Label, Repo, State, User, node_id};

/// GitHub's timestamp format: RFC 3339, whole seconds, `Z`.
pub fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

pub fn opt_time(t: Option<DateTime<Utc>>) -> Value {
    t.map(|t| Value::String(time(t))).unwrap_or(Value::Null)
}

/// `simple-user`, for a login the state knows (unknown logins render as a ghost user, the way
/// GitHub shows deleted accounts).
pub fn user(base: &str, state: &State, login: &str) -> Value {
    match state.user(login) {
        Some(user) => user_object(base, user),
        None => user_object(
            base,
            &User {
                id: 10137,
                login: "ghost".to_string(),
                name: None,
                r#type: "User".to_string(),
                created_at: DateTime::<Utc>::UNIX_EPOCH,
            },
        ),
    }
}

pub fn user_object(base: &str, user: &User) -> Value {
    let login = &user.login;
    let url = format!("{base}/users/{login}");
    let prefix = if user.r#type == "Organization" {
        "O"
    } else {
        "U"
    };
    json!({
        "login": login,
        "id": user.id,
        "node_id": node_id(prefix, user.id),
        "avatar_url": format!("{base}/avatars/{login}"),
        "gravatar_id": "",
        "url": url,
        "html_url": format!("{base}/{login}"),
        "followers_url": format!("{url}/followers"),
        "following_url": format!("{url}/following{{/other_user}}"),
        "gists_url": format!("{url}/gists{{/gist_id}}"),
        "starred_url": format!("{url}/starred{{/owner}}{{/repo}}"),
        "subscriptions_url": format!("{url}/subscriptions"),
        "organizations_url": format!("{url}/orgs"),
        "repos_url": format!("{url}/repos"),
        "events_url": format!("{url}/events{{/privacy}}"),
        "received_events_url": format!("{url}/received_events"),
        "type": user.r#type,
        "user_view_type": "public",
        "site_admin": false,
    })
}

/// The API URL of a repository.
pub fn repo_url(base: &str, repo: &Repo) -> String {
    format!("{base}/repos/{}/{}", repo.owner, repo.name)
}

/// `full-repository` (also valid as `repository` and `nullable-repository`).
pub fn repo(base: &str, state: &State, repo: &Repo, viewer: Option<&str>) -> Value {
    let url = repo_url(base, repo);
    let html = format!("{base}/{}/{}", repo.owner, repo.name);
    let clone_url = format!("file://{}", repo.git_dir.display());
    let open_issues = repo
        .issues
        .values()
        .filter(|i| i.state == crate::state::IssueState::Open)
        .count();
    let permission = state.permission(repo, viewer);
    use crate::state::Permission as P;
    let mut value = json!({
        "id": repo.id,
        "node_id": node_id("R", repo.id),
        "name": repo.name,
        "full_name": repo.full_name(),
        "owner": user(base, state, &repo.owner),
        "private": repo.private,
        "visibility": if repo.private { "private" } else { "public" },
        "html_url": html,
        "description": Value::Null,
        "fork": false,
        "url": url,
        "archive_url": format!("{url}/{{archive_format}}{{/ref}}"),
        "assignees_url": format!("{url}/assignees{{/user}}"),
        "blobs_url": format!("{url}/git/blobs{{/sha}}"),
        "branches_url": format!("{url}/branches{{/branch}}"),
        "collaborators_url": format!("{url}/collaborators{{/collaborator}}"),
        "comments_url": format!("{url}/comments{{/number}}"),
        "commits_url": format!("{url}/commits{{/sha}}"),
        "compare_url": format!("{url}/compare/{{base}}...{{head}}"),
        "contents_url": format!("{url}/contents/{{+path}}"),
        "contributors_url": format!("{url}/contributors"),
        "deployments_url": format!("{url}/deployments"),
        "downloads_url": format!("{url}/downloads"),
        "events_url": format!("{url}/events"),
        "forks_url": format!("{url}/forks"),
        "git_commits_url": format!("{url}/git/commits{{/sha}}"),
        "git_refs_url": format!("{url}/git/refs{{/sha}}"),
        "git_tags_url": format!("{url}/git/tags{{/sha}}"),
        "git_url": clone_url,
        "issue_comment_url": format!("{url}/issues/comments{{/number}}"),
        "issue_events_url": format!("{url}/issues/events{{/number}}"),
        "issues_url": format!("{url}/issues{{/number}}"),
        "keys_url": format!("{url}/keys{{/key_id}}"),
        "labels_url": format!("{url}/labels{{/name}}"),
        "languages_url": format!("{url}/languages"),
        "merges_url": format!("{url}/merges"),
        "milestones_url": format!("{url}/milestones{{/number}}"),
        "notifications_url": format!("{url}/notifications{{?since,all,participating}}"),
        "pulls_url": format!("{url}/pulls{{/number}}"),
        "releases_url": format!("{url}/releases{{/id}}"),
        "ssh_url": clone_url,
        "stargazers_url": format!("{url}/stargazers"),
        "statuses_url": format!("{url}/statuses/{{sha}}"),
        "subscribers_url": format!("{url}/subscribers"),
        "subscription_url": format!("{url}/subscription"),
        "tags_url": format!("{url}/tags"),
        "teams_url": format!("{url}/teams"),
        "trees_url": format!("{url}/git/trees{{/sha}}"),
        "clone_url": clone_url,
        "mirror_url": Value::Null,
        "hooks_url": format!("{url}/hooks"),
        "svn_url": html,
        "homepage": Value::Null,
        "language": Value::Null,
        "forks": 0,
        "forks_count": 0,
        "stargazers_count": 0,
        "watchers": 0,
        "watchers_count": 0,
        "size": 0,
        "default_branch": repo.default_branch,
        "open_issues": open_issues,
        "open_issues_count": open_issues,
        "is_template": false,
        "topics": [],
        "has_issues": true,
        "has_projects": true,
        "has_wiki": false,
        "has_pages": false,
        "has_downloads": true,
        "has_discussions": false,
        "archived": false,
        "disabled": false,
        "pushed_at": time(repo.pushed_at),
        "created_at": time(repo.created_at),
        "updated_at": time(repo.updated_at),
        "allow_merge_commit": true,
        "allow_squash_merge": true,
        "allow_rebase_merge": true,
        "allow_forking": true,
        "web_commit_signoff_required": false,
        "license": Value::Null,
        "network_count": 0,
        "subscribers_count": 0,
    });
    if viewer.is_some() {
        value["permissions"] = json!({
            "admin": permission >= P::Admin,
            "maintain": permission >= P::Maintain,
            "push": permission >= P::Write,
            "triage": permission >= P::Triage,
            "pull": permission >= P::Read,
        });
    }
    if state.data.orgs.contains_key(&repo.owner.to_lowercase()) {
        value["organization"] = user(base, state, &repo.owner);
    }
    value
}

/// `label`.
pub fn label(base: &str, repo: &Repo, label: &Label) -> Value {
    json!({
        "id": label.id,
        "node_id": node_id("LA", label.id),
        "url": format!("{}/labels/{}", repo_url(base, repo), encode_path(&label.name)),
        "name": label.name,
        "color": label.color,
        "description": label.description,
        "default": label.default,
    })
}

/// A label by name: the repository's label, or a grey one for a name the repository lost.
pub fn label_named(base: &str, repo: &Repo, name: &str) -> Value {
    match repo
        .labels
        .iter()
        .find(|l| l.name.eq_ignore_ascii_case(name))
    {
        Some(found) => label(base, repo, found),
        None => label(
            base,
            repo,
            &Label {
                id: 0,
                name: name.to_string(),
                color: "ededed".to_string(),
                description: None,
                default: false,
            },
        ),
    }
}

fn reactions(url: &str) -> Value {
    json!({
        "url": format!("{url}/reactions"),
        "total_count": 0, "+1": 0, "-1": 0, "laugh": 0, "confused": 0,
        "heart": 0, "hooray": 0, "eyes": 0, "rocket": 0,
    })
}

/// `issue` (pull requests included, with their `pull_request` link object, as GitHub lists them).
pub fn issue(base: &str, state: &State, repo: &Repo, issue: &Issue) -> Value {
    let repo_api = repo_url(base, repo);
    let url = format!("{repo_api}/issues/{}", issue.number);
    let html_kind = if issue.pull.is_some() {
        "pull"
    } else {
        "issues"
    };
    let html_url = format!(
        "{base}/{}/{}/{html_kind}/{}",
        repo.owner, repo.name, issue.number
    );
    let comments = repo
        .comments
        .values()
        .filter(|c| c.issue_number == issue.number)
        .count();
    let assignees: Vec<Value> = issue
        .assignees
        .iter()
        .map(|login| user(base, state, login))
        .collect();
    let mut value = json!({
        "id": issue.id,
        "node_id": node_id(if issue.pull.is_some() { "PR" } else { "I" }, issue.id),
        "url": url,
        "repository_url": repo_api,
        "labels_url": format!("{url}/labels{{/name}}"),
        "comments_url": format!("{url}/comments"),
        "events_url": format!("{url}/events"),
        "html_url": html_url,
        "timeline_url": format!("{url}/timeline"),
        "number": issue.number,
        "state": issue.state.as_str(),
        "state_reason": issue.state_reason,
        "title": issue.title,
        "body": issue.body,
        "user": user(base, state, &issue.user),
        "labels": issue.labels.iter().map(|name| label_named(base, repo, name)).collect::<Vec<_>>(),
        "assignee": assignees.first().cloned().unwrap_or(Value::Null),
        "assignees": assignees,
        "milestone": Value::Null,
        "locked": issue.locked,
        "active_lock_reason": Value::Null,
        "comments": comments,
        "closed_at": opt_time(issue.closed_at),
        "created_at": time(issue.created_at),
        "updated_at": time(issue.updated_at),
        "closed_by": issue.closed_by.as_deref().map(|l| user(base, state, l)).unwrap_or(Value::Null),
        "author_association": state.author_association(repo, &issue.user),
        "reactions": reactions(&url),
        "performed_via_github_app": Value::Null,
    });
    if let Some(pull) = &issue.pull {
        value["draft"] = Value::Bool(pull.draft);
        value["pull_request"] = json!({
            "url": format!("{repo_api}/pulls/{}", issue.number),
            "html_url": html_url,
            "diff_url": format!("{html_url}.diff"),
            "patch_url": format!("{html_url}.patch"),
            "merged_at": opt_time(pull.merged_at),
        });
    }
    value
}

/// `issue-comment`.
pub fn comment(base: &str, state: &State, repo: &Repo, comment: &Comment) -> Value {
    let repo_api = repo_url(base, repo);
    let url = format!("{repo_api}/issues/comments/{}", comment.id);
    let kind = match repo.issues.get(&comment.issue_number) {
        Some(issue) if issue.pull.is_some() => "pull",
        _ => "issues",
    };
    json!({
        "id": comment.id,
        "node_id": node_id("IC", comment.id),
        "url": url,
        "html_url": format!(
            "{base}/{}/{}/{kind}/{}#issuecomment-{}",
            repo.owner, repo.name, comment.issue_number, comment.id
        ),
        "body": comment.body,
        "user": user(base, state, &comment.user),
        "created_at": time(comment.created_at),
        "updated_at": time(comment.updated_at),
        "issue_url": format!("{repo_api}/issues/{}", comment.issue_number),
        "author_association": state.author_association(repo, &comment.user),
        "performed_via_github_app": Value::Null,
        "reactions": reactions(&url),
    })
}

/// Percent-encode one path segment (label names may hold spaces and slashes).
pub fn encode_path(segment: &str) -> String {
    percent_encoding::utf8_percent_encode(segment, percent_encoding::NON_ALPHANUMERIC).to_string()
}
