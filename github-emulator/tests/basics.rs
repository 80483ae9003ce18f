//! The emulator's shared behaviour: auth, rate limits, ETags, faults, accounting.

use crate::support::*;
use http::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn user_repo_and_permissions_follow_roles() {
    let gh = TestGitHub::start().await;
    let me = gh.get(BOT, "/user").await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body["login"], "crew-bot");

    let repo = gh.get(BOT, "/repos/acme/widgets").await;
    assert_eq!(repo.status, StatusCode::OK);
    assert_eq!(repo.body["permissions"]["push"], true);
    assert!(
        repo.body["clone_url"]
            .as_str()
            .unwrap()
            .starts_with("file://")
    );

    for (login, permission, role) in [
        ("maintainer", "admin", "admin"),
        ("crew-bot", "write", "write"),
        ("outsider", "read", "read"),
    ] {
        let answer = gh
            .get(
                BOT,
                &format!("/repos/acme/widgets/collaborators/{login}/permission"),
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{login}");
        assert_eq!(answer.body["permission"], permission, "{login}");
        assert_eq!(answer.body["role_name"], role, "{login}");
    }
    let missing = gh.get(BOT, "/repos/acme/nope").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.body["message"], "Not Found");
    gh.assert_contract();
}

#[tokio::test]
async fn bad_token_is_401_and_anonymous_gets_sixty() {
    let gh = TestGitHub::start().await;
    let bad = gh.get("not-a-token", "/user").await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    assert_eq!(bad.body["message"], "Bad credentials");
    assert_eq!(
        bad.header("x-ratelimit-limit"),
        Some("60"),
        "rate headers on every response"
    );

    let anonymous = gh
        .send(None, Method::GET, "/repos/acme/widgets", None, &[])
        .await;
    assert_eq!(anonymous.status, StatusCode::OK);
    assert_eq!(anonymous.header("x-ratelimit-limit"), Some("60"));
    assert!(anonymous.body.get("permissions").is_none());
    let needs_auth = gh.send(None, Method::GET, "/user", None, &[]).await;
    assert_eq!(needs_auth.status, StatusCode::UNAUTHORIZED);
    gh.assert_contract();
}

#[tokio::test]
async fn private_repository_is_404_to_outsiders() {
    let mut world = github_emulator::World::default();
    world.repos[0].private = true;
    let gh = TestGitHub::start_with(world).await;
    assert_eq!(
        gh.get(OUTSIDER, "/repos/acme/widgets").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        gh.get(BOT, "/repos/acme/widgets").await.status,
        StatusCode::OK
    );
    gh.assert_contract();
}

#[tokio::test]
async fn etag_gives_304_that_costs_nothing() {
    let gh = TestGitHub::start().await;
    let first = gh.get(BOT, "/repos/acme/widgets").await;
    let etag = first.header("etag").expect("strong etag").to_string();
    assert!(etag.starts_with('"'), "strong, not weak: {etag}");
    let remaining: u64 = first
        .header("x-ratelimit-remaining")
        .unwrap()
        .parse()
        .unwrap();

    let again = gh
        .send(
            Some(BOT),
            Method::GET,
            "/repos/acme/widgets",
            None,
            &[("if-none-match", &etag)],
        )
        .await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);
    assert_eq!(again.body, serde_json::Value::Null);
    let after: u64 = again
        .header("x-ratelimit-remaining")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(after, remaining, "a 304 to an authorized request is free");

    let stats = gh.control(Method::GET, "/_emulator/stats", None).await.body;
    assert_eq!(stats["requests"], 2);
    assert_eq!(stats["not_modified"], 1);
    assert_eq!(stats["rate_points"], 1);
    assert_eq!(
        stats["by_route"]["GET /repos/{owner}/{repo}"]["requests"],
        2
    );
    assert_eq!(
        stats["by_route"]["GET /repos/{owner}/{repo}"]["rate_points"],
        1
    );
    gh.assert_contract();
}

#[tokio::test]
async fn primary_rate_limit_is_403_with_headers() {
    let gh = TestGitHub::start().await;
    let set = gh
        .control(
            Method::POST,
            "/_emulator/rate_limit",
            Some(json!({"login": "crew-bot", "remaining": 1, "reset_in": 600})),
        )
        .await;
    assert_eq!(set.status, StatusCode::OK);
    let last = gh.get(BOT, "/user").await;
    assert_eq!(last.status, StatusCode::OK);
    assert_eq!(last.header("x-ratelimit-remaining"), Some("0"));
    let limited = gh.get(BOT, "/user").await;
    assert_eq!(limited.status, StatusCode::FORBIDDEN);
    assert!(
        limited.body["message"]
            .as_str()
            .unwrap()
            .starts_with("API rate limit exceeded for user ID")
    );
    assert_eq!(limited.header("x-ratelimit-remaining"), Some("0"));
    assert_eq!(limited.header("x-ratelimit-resource"), Some("core"));
    let reset: i64 = limited
        .header("x-ratelimit-reset")
        .unwrap()
        .parse()
        .unwrap();
    assert!(reset > chrono::Utc::now().timestamp() + 500);
    // Other users keep their own budget.
    assert_eq!(gh.get(MAINTAINER, "/user").await.status, StatusCode::OK);
    gh.assert_contract();
}

#[tokio::test]
async fn injected_faults_error_secondary_limit_and_latency() {
    let gh = TestGitHub::start().await;
    let faults = json!({"latency_ms": 30, "rules": [
        {"route": "GET /user", "fault": "error", "status": 502, "times": 2},
        {"route": "GET /repos/{owner}/{repo}", "fault": "secondary_limit", "status": 429, "retry_after": 7, "times": 1},
    ]});
    assert_eq!(
        gh.control(Method::POST, "/_emulator/faults", Some(faults))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    let started = std::time::Instant::now();
    assert_eq!(gh.get(BOT, "/user").await.status, StatusCode::BAD_GATEWAY);
    assert_eq!(gh.get(BOT, "/user").await.status, StatusCode::BAD_GATEWAY);
    assert_eq!(gh.get(BOT, "/user").await.status, StatusCode::OK);
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(90),
        "latency applied"
    );

    let secondary = gh.get(BOT, "/repos/acme/widgets").await;
    assert_eq!(secondary.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(secondary.header("retry-after"), Some("7"));
    assert!(
        secondary.body["message"]
            .as_str()
            .unwrap()
            .contains("secondary rate limit")
    );
    assert_eq!(
        gh.get(BOT, "/repos/acme/widgets").await.status,
        StatusCode::OK
    );

    let stats = gh.control(Method::GET, "/_emulator/stats", None).await.body;
    assert_eq!(stats["requests"], 5);
    assert_eq!(stats["rate_points"], 2, "faulted requests cost nothing");
    gh.control(Method::POST, "/_emulator/stats/reset", None)
        .await;
    let stats = gh.control(Method::GET, "/_emulator/stats", None).await.body;
    assert_eq!(stats["requests"], 0);

    let bad = gh
        .control(
            Method::POST,
            "/_emulator/faults",
            Some(json!({"rules": [{"route": "*", "fault": "error", "rate": 2.0}]})),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    gh.assert_contract();
}

#[tokio::test]
async fn unknown_routes_answer_loudly() {
    let gh = TestGitHub::start().await;
    let unknown = gh.get(BOT, "/repos/acme/widgets/milestones").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert!(
        unknown.body["message"]
            .as_str()
            .unwrap()
            .contains("GET /repos/acme/widgets/milestones")
    );
    let wrong_method = gh.delete(BOT, "/user").await;
    assert_eq!(wrong_method.status, StatusCode::NOT_FOUND);
    assert!(
        wrong_method.body["message"]
            .as_str()
            .unwrap()
            .contains("DELETE /user")
    );
}

#[tokio::test]
async fn state_dir_persists_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let first = github_emulator::Emulator::builder()
        .state_dir(dir.path())
        .start()
        .await
        .unwrap();
    let clone_url = first.clone_url("acme", "widgets").unwrap();
    first.with_state(|state| {
        state.repo_mut("acme", "widgets").unwrap().default_branch = "trunk".to_string();
        state.persist().unwrap();
    });
    first.shutdown().await;
    let second = github_emulator::Emulator::builder()
        .state_dir(dir.path())
        .start()
        .await
        .unwrap();
    assert_eq!(second.clone_url("acme", "widgets").unwrap(), clone_url);
    let branch = second.with_state(|state| {
        state
            .repo("acme", "widgets")
            .unwrap()
            .default_branch
            .clone()
    });
    assert_eq!(branch, "trunk");
}

#[tokio::test]
async fn rate_limit_endpoint_is_free_and_answers_when_exhausted() {
    let gh = TestGitHub::start().await;
    let before = gh.get(BOT, "/rate_limit").await;
    assert_eq!(before.status, StatusCode::OK);
    assert_eq!(before.body["resources"]["core"]["used"], 0);
    assert_eq!(
        gh.get(BOT, "/rate_limit").await.body["rate"]["used"],
        0,
        "asking is free"
    );
    gh.control(
        Method::POST,
        "/_emulator/rate_limit",
        Some(json!({"login": "crew-bot", "remaining": 0})),
    )
    .await;
    let exhausted = gh.get(BOT, "/rate_limit").await;
    assert_eq!(exhausted.status, StatusCode::OK);
    assert_eq!(exhausted.body["resources"]["core"]["remaining"], 0);
    assert_eq!(gh.get(BOT, "/user").await.status, StatusCode::FORBIDDEN);
    let stats = gh.control(Method::GET, "/_emulator/stats", None).await.body;
    assert_eq!(stats["by_route"]["GET /rate_limit"]["rate_points"], 0);
    gh.assert_contract();
}

#[tokio::test]
async fn drop_after_write_applies_the_write_and_drops_the_response() {
    let gh = TestGitHub::start().await;
    let issue = gh
        .post(
            BOT,
            "/repos/acme/widgets/issues",
            json!({"title": "Drop me"}),
        )
        .await;
    assert_eq!(issue.status, StatusCode::CREATED);
    let number = issue.body["number"].as_u64().unwrap();
    let route = "POST /repos/{owner}/{repo}/issues/{issue_number}/comments";
    let faults = json!({"rules": [{"route": route, "fault": "drop_after_write", "times": 1}]});
    gh.control(Method::POST, "/_emulator/faults", Some(faults))
        .await;

    let client = gh.client(Some(BOT));
    let request = http::Request::builder()
        .method(Method::POST)
        .uri(gh.url(&format!("/repos/acme/widgets/issues/{number}/comments")))
        .body(json!({"body": "only once"}).to_string())
        .unwrap();
    let outcome = client.execute(request).await;
    assert!(outcome.is_err(), "the client hears nothing back");

    let comments = gh
        .get(
            BOT,
            &format!("/repos/acme/widgets/issues/{number}/comments"),
        )
        .await;
    let bodies: Vec<&str> = comments
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, ["only once"], "the write was applied exactly once");
    let stats = gh.control(Method::GET, "/_emulator/stats", None).await.body;
    assert_eq!(stats["by_route"][route]["requests"], 1);
    // The rule was used up: the next write is answered normally.
    let again = gh
        .post(
            BOT,
            &format!("/repos/acme/widgets/issues/{number}/comments"),
            json!({"body": "second"}),
        )
        .await;
    assert_eq!(again.status, StatusCode::CREATED);
    gh.assert_contract();
}

#[tokio::test]
async fn every_operation_in_githubs_subset_is_routed() {
    let Some(_) = github_emulator::contract::descriptions_or_skip("emulator route coverage") else {
        return;
    };
    let contract = github_emulator::contract::RestContract::shared().expect("description loads");
    let gh = TestGitHub::start().await;
    let operations = contract.operations();
    assert_eq!(operations.len(), 36, "the subset's operation count changed");
    let mut unrouted = Vec::new();
    for operation in &operations {
        // Concrete sample values; a 404 for a missing thing is fine, a missing route is not.
        let path = operation
            .template
            .replace("{owner}", "acme")
            .replace("{repo}", "widgets")
            .replace("{issue_number}", "1")
            .replace("{pull_number}", "1")
            .replace("{comment_id}", "1")
            .replace("{commit_sha}", "0000000000000000000000000000000000000000")
            .replace("{ref}", "heads/main")
            .replace("{branch}", "main")
            .replace("{username}", "crew-bot")
            .replace("{workflow_id}", "crew-worker.yml")
            .replace("{name}", "bug");
        assert!(!path.contains('{'), "unfilled parameter in {path}");
        let method = Method::from_bytes(operation.method.to_uppercase().as_bytes()).unwrap();
        let answer = gh
            .send(Some(MAINTAINER), method, &path, Some(json!({})), &[])
            .await;
        let message = answer.body["message"].as_str().unwrap_or_default();
        if message.contains("github-emulator has no route") {
            unrouted.push(format!("{} {}", operation.method, operation.template));
        }
    }
    assert!(
        unrouted.is_empty(),
        "operations the emulator does not serve: {unrouted:?}"
    );
}
