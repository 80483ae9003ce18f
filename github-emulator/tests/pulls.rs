//! Pull requests end to end: a real `git clone` and `git push` of the emulated repository, then
//! create, review and merge through the API (a real merge commit in the bare repository), plus
//! conflicts, stale heads, validation, permissions and workflow dispatch.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::*;
use http::{Method, StatusCode};
use octocrab::params;
use serde_json::{Value, json};

/// Run `git` in `dir` with a fixed identity, asserting success; returns stdout.
fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .args([
            "-c",
            "user.name=Worker",
            "-c",
            "user.email=worker@example.com",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir)
        // Hermetic: the environment outranks `-c user.name`, so pin the identity there too, and
        // keep the machine's own git configuration out.
        .env("GIT_AUTHOR_NAME", "Worker")
        .env("GIT_AUTHOR_EMAIL", "worker@example.com")
        .env("GIT_COMMITTER_NAME", "Worker")
        .env("GIT_COMMITTER_EMAIL", "worker@example.com")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .expect("git runs");
    assert!(
        output.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// Clone the emulated repository into a fresh directory.
fn clone(gh: &TestGitHub, temp: &Path, name: &str) -> PathBuf {
    let url = gh.emulator.clone_url("acme", "widgets").unwrap();
    git(temp, &["clone", "-q", &url, name]);
    temp.join(name)
}

/// Commit `content` to `file` on a new branch from main and push it; returns the pushed sha.
fn push_branch(work: &Path, branch: &str, file: &str, content: &str) -> String {
    git(work, &["checkout", "-q", "-B", branch, "origin/main"]);
    std::fs::write(work.join(file), content).unwrap();
    git(work, &["add", file]);
    git(
        work,
        &["commit", "-q", "-m", &format!("Change {file} on {branch}")],
    );
    git(
        work,
        &["push", "-q", "origin", &format!("HEAD:refs/heads/{branch}")],
    );
    git(work, &["rev-parse", "HEAD"])
}

fn bare(gh: &TestGitHub) -> git2::Repository {
    let dir = gh
        .emulator
        .with_state(|s| s.repo("acme", "widgets").unwrap().git_dir.clone());
    git2::Repository::open_bare(dir).unwrap()
}

async fn create_issue(gh: &TestGitHub, title: &str) -> u64 {
    let answer = gh
        .post(BOT, "/repos/acme/widgets/issues", json!({"title": title}))
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    answer.body["number"].as_u64().unwrap()
}

async fn open_pull(gh: &TestGitHub, head: &str, title: &str, body: &str) -> Value {
    let answer = gh
        .post(
            BOT,
            "/repos/acme/widgets/pulls",
            json!({"title": title, "head": head, "base": "main", "body": body}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    answer.body
}

#[tokio::test]
async fn clone_push_review_and_merge_closes_the_issue() {
    let gh = TestGitHub::start().await;
    let temp = tempfile::tempdir().unwrap();
    let work = clone(&gh, temp.path(), "work");
    let pushed = push_branch(&work, "crew/issue-1", "feature.txt", "a feature\n");
    let issue = create_issue(&gh, "Add a feature").await;
    let other = create_issue(&gh, "Unrelated").await;

    // Open the pull request through octocrab's typed API.
    let bot = gh.client(Some(BOT));
    let pr = bot
        .pulls("acme", "widgets")
        .create("Add a feature", "acme:crew/issue-1", "main")
        .body(format!("Does the thing.\n\nCloses #{issue}"))
        .send()
        .await
        .expect("octocrab opens a pull request");
    assert!(pr.number > other, "pull requests share the issue numbers");
    assert_eq!(pr.head.sha, pushed);
    assert_eq!(pr.head.ref_field, "crew/issue-1");
    assert_eq!(pr.base.ref_field, "main");
    assert_eq!(pr.mergeable, Some(true));
    assert_eq!(pr.commits, Some(1));
    assert_eq!(pr.additions, Some(1));
    assert_eq!(pr.changed_files, Some(1));
    let number = pr.number;

    // The same head again is refused; the pull request is listed by `owner:branch`.
    let duplicate = gh
        .post(
            BOT,
            "/repos/acme/widgets/pulls",
            json!({"title": "again", "head": "crew/issue-1", "base": "main"}),
        )
        .await;
    assert_eq!(duplicate.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        duplicate.body["errors"][0]["message"],
        "A pull request already exists for acme:crew/issue-1."
    );
    let listed = bot
        .pulls("acme", "widgets")
        .list()
        .head("acme:crew/issue-1")
        .state(params::State::Open)
        .send()
        .await
        .expect("octocrab lists pull requests");
    assert_eq!(listed.items.len(), 1);
    assert_eq!(listed.items[0].number, number);
    let none = gh
        .get(BOT, "/repos/acme/widgets/pulls?head=acme:other-branch")
        .await;
    assert_eq!(none.body, json!([]));
    let issue_view = gh
        .get(BOT, &format!("/repos/acme/widgets/issues/{number}"))
        .await;
    assert!(
        issue_view.body["pull_request"]["url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/pulls/{number}"))
    );

    // Reviews: no approving or requesting changes on your own; a body for REQUEST_CHANGES.
    let reviews_path = format!("/repos/acme/widgets/pulls/{number}/reviews");
    let own = gh
        .post(BOT, &reviews_path, json!({"event": "APPROVE"}))
        .await;
    assert_eq!(own.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        own.body["errors"][0],
        "Can not approve your own pull request"
    );
    let bodiless = gh
        .post(
            MAINTAINER,
            &reviews_path,
            json!({"event": "REQUEST_CHANGES"}),
        )
        .await;
    assert_eq!(bodiless.status, StatusCode::UNPROCESSABLE_ENTITY);
    let comment = gh
        .post(
            BOT,
            &reviews_path,
            json!({"event": "COMMENT", "body": "Notes for the reviewer"}),
        )
        .await;
    assert_eq!(comment.status, StatusCode::OK);
    assert_eq!(comment.body["state"], "COMMENTED");
    let approval = gh
        .post(
            MAINTAINER,
            &reviews_path,
            json!({"event": "APPROVE", "body": "LGTM"}),
        )
        .await;
    assert_eq!(approval.status, StatusCode::OK, "{}", approval.body);
    assert_eq!(approval.body["state"], "APPROVED");
    assert_eq!(approval.body["commit_id"], pushed.as_str());
    assert_eq!(approval.body["author_association"], "MEMBER");
    let reviews = bot
        .pulls("acme", "widgets")
        .list_reviews(number)
        .send()
        .await
        .expect("octocrab lists reviews");
    assert_eq!(reviews.items.len(), 2);
    assert_eq!(
        reviews.items[1].state,
        Some(octocrab::models::pulls::ReviewState::Approved)
    );

    // A second push moves the pull request's head; merging at the old sha is a 409.
    std::fs::write(work.join("feature.txt"), "a better feature\n").unwrap();
    git(&work, &["commit", "-q", "-am", "Improve"]);
    git(
        &work,
        &["push", "-q", "origin", "HEAD:refs/heads/crew/issue-1"],
    );
    let head = git(&work, &["rev-parse", "HEAD"]);
    let current = bot.pulls("acme", "widgets").get(number).await.unwrap();
    assert_eq!(current.head.sha, head);
    assert_eq!(current.commits, Some(2));
    let merge_path = format!("/repos/acme/widgets/pulls/{number}/merge");
    let stale = gh.put(BOT, &merge_path, json!({"sha": pushed})).await;
    assert_eq!(stale.status, StatusCode::CONFLICT);
    assert_eq!(
        stale.body["message"],
        "Head branch was modified. Review and try the merge again."
    );
    let outsider = gh.put(OUTSIDER, &merge_path, json!({"sha": head})).await;
    assert_eq!(outsider.status, StatusCode::FORBIDDEN);

    // Merge through octocrab: a real two-parent merge commit on main.
    let main_before = bare(&gh)
        .find_reference("refs/heads/main")
        .unwrap()
        .target()
        .unwrap();
    let merged = bot
        .pulls("acme", "widgets")
        .merge(number)
        .sha(head.clone())
        .send()
        .await
        .expect("octocrab merges");
    assert!(merged.merged);
    assert_eq!(
        merged.message.as_deref(),
        Some("Pull Request successfully merged")
    );
    let repo = bare(&gh);
    let main = repo
        .find_reference("refs/heads/main")
        .unwrap()
        .peel_to_commit()
        .unwrap();
    assert_eq!(Some(main.id().to_string()), merged.sha);
    let parents: Vec<String> = main.parent_ids().map(|p| p.to_string()).collect();
    assert_eq!(parents, [main_before.to_string(), head.clone()]);
    assert_eq!(
        main.message().unwrap(),
        format!("Merge pull request #{number} from acme/crew/issue-1\n\nAdd a feature")
    );
    let file = main.tree().unwrap().get_name("feature.txt").unwrap().id();
    assert_eq!(
        repo.find_blob(file).unwrap().content(),
        b"a better feature\n"
    );

    // The pull request is merged and closed; `Closes #N` closed the issue, and only that one.
    let after = gh
        .get(BOT, &format!("/repos/acme/widgets/pulls/{number}"))
        .await;
    assert_eq!(after.body["state"], "closed");
    assert_eq!(after.body["merged"], true);
    assert_eq!(after.body["merged_by"]["login"], "crew-bot");
    assert_eq!(after.body["merge_commit_sha"], main.id().to_string());
    let closed = gh
        .get(BOT, &format!("/repos/acme/widgets/issues/{issue}"))
        .await;
    assert_eq!(closed.body["state"], "closed");
    assert_eq!(closed.body["state_reason"], "completed");
    let untouched = gh
        .get(BOT, &format!("/repos/acme/widgets/issues/{other}"))
        .await;
    assert_eq!(untouched.body["state"], "open");
    let again = gh.put(BOT, &merge_path, json!({})).await;
    assert_eq!(again.status, StatusCode::METHOD_NOT_ALLOWED);
    let closed_list = gh.get(BOT, "/repos/acme/widgets/pulls?state=closed").await;
    assert_eq!(closed_list.body.as_array().unwrap().len(), 1);
    assert_eq!(
        gh.get(BOT, "/repos/acme/widgets/pulls").await.body,
        json!([])
    );

    // The clone sees the merge.
    git(&work, &["fetch", "-q", "origin"]);
    assert_eq!(
        git(&work, &["rev-parse", "origin/main"]),
        main.id().to_string()
    );
    gh.assert_contract();
}

#[tokio::test]
async fn conflicting_pull_request_is_not_mergeable() {
    let gh = TestGitHub::start().await;
    let temp = tempfile::tempdir().unwrap();
    let work = clone(&gh, temp.path(), "work");
    push_branch(&work, "left", "README.md", "# widgets\n\nLeft wins.\n");
    push_branch(&work, "right", "README.md", "# widgets\n\nRight wins.\n");
    let left = open_pull(&gh, "left", "Left", "").await;
    let right = open_pull(&gh, "right", "Right", "").await;
    assert_eq!(
        right["mergeable"], true,
        "no conflict before the first merge"
    );

    let merged = gh
        .put(
            BOT,
            &format!("/repos/acme/widgets/pulls/{}/merge", left["number"]),
            json!({"merge_method": "merge"}),
        )
        .await;
    assert_eq!(merged.status, StatusCode::OK, "{}", merged.body);
    let view = gh
        .get(
            BOT,
            &format!("/repos/acme/widgets/pulls/{}", right["number"]),
        )
        .await;
    assert_eq!(view.body["mergeable"], false);
    assert_eq!(view.body["mergeable_state"], "dirty");
    let main_before = bare(&gh)
        .find_reference("refs/heads/main")
        .unwrap()
        .target()
        .unwrap();
    let refused = gh
        .put(
            BOT,
            &format!("/repos/acme/widgets/pulls/{}/merge", right["number"]),
            json!({}),
        )
        .await;
    assert_eq!(refused.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(refused.body["message"], "Pull Request is not mergeable");
    assert_eq!(
        bare(&gh)
            .find_reference("refs/heads/main")
            .unwrap()
            .target()
            .unwrap(),
        main_before
    );
    assert_eq!(
        gh.get(
            BOT,
            &format!("/repos/acme/widgets/pulls/{}", right["number"])
        )
        .await
        .body["state"],
        "open"
    );
    gh.assert_contract();
}

#[tokio::test]
async fn squash_and_rebase_merges() {
    let gh = TestGitHub::start().await;
    let temp = tempfile::tempdir().unwrap();
    let work = clone(&gh, temp.path(), "work");
    push_branch(&work, "squashed", "a.txt", "a\n");
    push_branch(&work, "rebased", "b.txt", "b\n");
    let squashed = open_pull(&gh, "squashed", "Squash me", "fixes: #99").await;
    let rebased = open_pull(&gh, "rebased", "Rebase me", "").await;

    let answer = gh
        .put(
            BOT,
            &format!("/repos/acme/widgets/pulls/{}/merge", squashed["number"]),
            json!({"merge_method": "squash"}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let repo = bare(&gh);
    let tip = repo
        .find_reference("refs/heads/main")
        .unwrap()
        .peel_to_commit()
        .unwrap();
    assert_eq!(tip.parent_count(), 1);
    assert!(
        tip.message()
            .unwrap()
            .starts_with(&format!("Squash me (#{})", squashed["number"]))
    );

    let answer = gh
        .put(
            BOT,
            &format!("/repos/acme/widgets/pulls/{}/merge", rebased["number"]),
            json!({"merge_method": "rebase"}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let rebased_tip = repo
        .find_reference("refs/heads/main")
        .unwrap()
        .peel_to_commit()
        .unwrap();
    assert_eq!(rebased_tip.parent_id(0).unwrap(), tip.id());
    assert_eq!(rebased_tip.message().unwrap(), "Change b.txt on rebased\n");
    assert_eq!(rebased_tip.author().name(), Some("Worker"));
    assert!(rebased_tip.tree().unwrap().get_name("a.txt").is_some());

    let bad = gh
        .put(
            BOT,
            &format!("/repos/acme/widgets/pulls/{}/merge", rebased["number"]),
            json!({"merge_method": "octopus"}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    gh.assert_contract();
}

#[tokio::test]
async fn pull_request_validation_and_permissions() {
    let gh = TestGitHub::start().await;
    let temp = tempfile::tempdir().unwrap();
    let work = clone(&gh, temp.path(), "work");
    push_branch(&work, "topic", "t.txt", "t\n");

    let missing_head = gh
        .post(
            BOT,
            "/repos/acme/widgets/pulls",
            json!({"title": "x", "head": "no-such-branch", "base": "main"}),
        )
        .await;
    assert_eq!(missing_head.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(missing_head.body["message"], "Validation Failed");
    assert_eq!(
        missing_head.body["errors"][0],
        json!({"resource": "PullRequest", "field": "head", "code": "invalid"})
    );
    let missing_base = gh
        .post(
            BOT,
            "/repos/acme/widgets/pulls",
            json!({"title": "x", "head": "topic", "base": "nope"}),
        )
        .await;
    assert_eq!(missing_base.body["errors"][0]["field"], "base");
    let no_title = gh
        .post(
            BOT,
            "/repos/acme/widgets/pulls",
            json!({"head": "topic", "base": "main"}),
        )
        .await;
    assert_eq!(no_title.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(no_title.body["errors"][0]["code"], "missing_field");
    let no_commits = gh
        .post(
            BOT,
            "/repos/acme/widgets/pulls",
            json!({"title": "x", "head": "main", "base": "topic"}),
        )
        .await;
    assert_eq!(no_commits.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        no_commits.body["errors"][0]["message"],
        "No commits between topic and main"
    );
    let fork = gh
        .post(
            BOT,
            "/repos/acme/widgets/pulls",
            json!({"title": "x", "head": "someone:topic", "base": "main"}),
        )
        .await;
    assert_eq!(fork.status, StatusCode::UNPROCESSABLE_ENTITY);

    let outsider = gh
        .post(
            OUTSIDER,
            "/repos/acme/widgets/pulls",
            json!({"title": "x", "head": "topic", "base": "main"}),
        )
        .await;
    assert_eq!(outsider.status, StatusCode::FORBIDDEN);

    let pr = open_pull(&gh, "topic", "Topic", "").await;
    let issue = create_issue(&gh, "Just an issue").await;
    assert_eq!(
        gh.get(BOT, &format!("/repos/acme/widgets/pulls/{issue}"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        gh.get(BOT, "/repos/acme/widgets/pulls/999").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        gh.get(BOT, "/repos/acme/widgets/pulls/abc").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        gh.get(BOT, &format!("/repos/acme/widgets/pulls/{issue}/reviews"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let bad_state = gh.get(BOT, "/repos/acme/widgets/pulls?state=merged").await;
    assert_eq!(bad_state.status, StatusCode::UNPROCESSABLE_ENTITY);

    // Readers can see pull requests and review them, but not merge.
    let anonymous = gh
        .send(None, Method::GET, "/repos/acme/widgets/pulls", None, &[])
        .await;
    assert_eq!(anonymous.status, StatusCode::OK);
    assert_eq!(anonymous.body.as_array().unwrap().len(), 1);
    let review = gh
        .post(
            OUTSIDER,
            &format!("/repos/acme/widgets/pulls/{}/reviews", pr["number"]),
            json!({"event": "COMMENT", "body": "nice"}),
        )
        .await;
    assert_eq!(review.status, StatusCode::OK);
    let merge = gh
        .put(
            OUTSIDER,
            &format!("/repos/acme/widgets/pulls/{}/merge", pr["number"]),
            json!({}),
        )
        .await;
    assert_eq!(merge.status, StatusCode::FORBIDDEN);

    // Private repository: outsiders see nothing.
    let mut world = github_emulator::World::default();
    world.repos[0].private = true;
    let private = TestGitHub::start_with(world).await;
    assert_eq!(
        private
            .get(OUTSIDER, "/repos/acme/widgets/pulls")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let hidden = private
        .post(
            OUTSIDER,
            "/repos/acme/widgets/pulls",
            json!({"title": "x", "head": "main", "base": "main"}),
        )
        .await;
    assert_eq!(hidden.status, StatusCode::NOT_FOUND);
    gh.assert_contract();
    private.assert_contract();
}

#[tokio::test]
async fn workflow_dispatch_is_recorded() {
    let gh = TestGitHub::start().await;
    let path = "/repos/acme/widgets/actions/workflows/crew-worker.yml/dispatches";
    let answer = gh
        .post(
            BOT,
            path,
            json!({"ref": "main", "inputs": {"issue": "42", "attempt": "1"}}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT);
    assert_eq!(answer.body, Value::Null);
    let outsider = gh.post(OUTSIDER, path, json!({"ref": "main"})).await;
    assert_eq!(outsider.status, StatusCode::FORBIDDEN);
    gh.assert_contract();

    // GitHub answers these with 422, a status its description of this operation omits, so they
    // are checked here by hand instead of by the contract check.
    let too_many: serde_json::Map<String, Value> =
        (0..26).map(|i| (format!("k{i}"), json!("v"))).collect();
    for body in [
        json!({"ref": "no-such-branch"}),
        json!({"ref": "main", "inputs": too_many}),
        json!({"ref": "main", "inputs": {"issue": 42}}),
        json!({"ref": "main", "inputs": ["x"]}),
        json!({"inputs": {}}),
    ] {
        let refused = gh.post(BOT, path, body.clone()).await;
        assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert!(
            refused.body["message"].is_string() && refused.body["documentation_url"].is_string()
        );
    }
    let refused_ref = gh.post(BOT, path, json!({"ref": "nope"})).await;
    assert_eq!(refused_ref.body["message"], "No ref found for: nope");
    let drained = gh.emulator.take_recorded();
    assert!(drained.iter().all(|r| r.status == 422));

    let recorded = gh.control(Method::GET, "/_emulator/dispatches", None).await;
    let list = recorded.body.as_array().unwrap();
    assert_eq!(list.len(), 1, "refused dispatches are not recorded");
    assert_eq!(list[0]["workflow_id"], "crew-worker.yml");
    assert_eq!(list[0]["ref"], "main");
    assert_eq!(list[0]["inputs"], json!({"issue": "42", "attempt": "1"}));
    assert_eq!(list[0]["actor"], "crew-bot");
    assert_eq!(list[0]["repo"], "acme/widgets");

    let details = gh
        .post(
            BOT,
            path,
            json!({"ref": "main", "return_run_details": true}),
        )
        .await;
    assert_eq!(details.status, StatusCode::OK);
    assert!(details.body["workflow_run_id"].is_u64());
    gh.assert_contract();
}
