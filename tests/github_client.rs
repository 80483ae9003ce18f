//! The GitHub client against the emulator, over real HTTP through octocrab: retries, rate limits,
//! conditional GETs persisted in SQLite, write idempotency, and request counts.

use std::time::{Duration, Instant};

use crate::support::{BOT, Control, OUTSIDER, TestResult, client, client_at};
use crew::cache::Cache;
use crew::error::CrewError;
use crew::github::{GitHubError, RepoSlug};
use serde_json::json;

fn widgets() -> TestResult<RepoSlug> {
    Ok("acme/widgets".parse()?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_process_gets_304_from_the_sqlite_stored_body() -> TestResult {
    let emulator = crate::support::emulator().await?;
    let control = Control::new(&emulator)?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("cache.sqlite3");
    let route = "GET /repos/{owner}/{repo}";

    // First "process": a cold cache, a full 200 that costs one rate point.
    let first = {
        let github = client(&emulator, BOT, Some(Cache::open(&path).await?))?;
        let answer = github.get_conditional(route, "/repos/acme/widgets").await?;
        assert!(!answer.not_modified);
        assert!(answer.etag.is_some(), "the emulator sends strong ETags");
        answer
    };

    // Second "process": a new client and a new connection to the same file.
    let github = client(&emulator, BOT, Some(Cache::open(&path).await?))?;
    let second = github.get_conditional(route, "/repos/acme/widgets").await?;
    assert!(second.not_modified, "the stored ETag must produce a 304");
    assert_eq!(
        second.body, first.body,
        "the 304 is served from the stored body"
    );
    let repository: serde_json::Value = second.json(route)?;
    assert_eq!(repository["full_name"], "acme/widgets");

    let stats = control.stats().await?;
    assert_eq!(stats["by_route"][route]["requests"], 2);
    assert_eq!(
        stats["by_route"][route]["rate_points"], 1,
        "the 304 is free"
    );
    assert_eq!(stats["not_modified"], 1);
    let counts = github.request_counts();
    assert_eq!((counts.total, counts.not_modified), (1, 1));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_injected_502s_are_retried_with_exactly_three_requests() -> TestResult {
    let emulator = crate::support::emulator().await?;
    let control = Control::new(&emulator)?;
    control
        .faults(json!([{"route": "GET /user", "fault": "error", "status": 502, "times": 2}]))
        .await?;
    let github = client(&emulator, BOT, None)?;

    let user = github.user().await?;

    assert_eq!(user.login, "crew-bot");
    assert_eq!(control.requests("GET /user").await?, 3);
    let counts = github.request_counts();
    assert_eq!((counts.total, counts.retries), (3, 2));
    assert!(
        github
            .request_summary()
            .starts_with("github: 3 requests (0 not modified, 2 retries)"),
        "{}",
        github.request_summary()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_give_up_after_the_retry_budget() -> TestResult {
    let emulator = crate::support::emulator().await?;
    let control = Control::new(&emulator)?;
    control
        .faults(json!([{"route": "GET /user", "fault": "error", "status": 503}]))
        .await?;
    let github = client(&emulator, BOT, None)?;

    let error = github.user().await.err().ok_or("expected a failure")?;

    assert!(
        matches!(error, GitHubError::Server { status: 503, .. }),
        "{error:?}"
    );
    assert_eq!(
        control.requests("GET /user").await?,
        5,
        "1 attempt + 4 retries"
    );
    assert_eq!(CrewError::from(error).exit_code(), 3);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secondary_limit_waits_for_retry_after() -> TestResult {
    let emulator = crate::support::emulator().await?;
    let control = Control::new(&emulator)?;
    control
        .faults(json!([{"route": "GET /user", "fault": "secondary_limit", "retry_after": 1, "times": 1}]))
        .await?;
    let github = client(&emulator, BOT, None)?;

    let started = Instant::now();
    let user = github.user().await?;

    assert_eq!(user.login, "crew-bot");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "retry-after: 1 must be honoured, waited {:?}",
        started.elapsed()
    );
    assert_eq!(control.requests("GET /user").await?, 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secondary_limit_beyond_max_wait_fails_without_waiting() -> TestResult {
    let emulator = crate::support::emulator().await?;
    let control = Control::new(&emulator)?;
    control
        .faults(json!([{"route": "GET /user", "fault": "secondary_limit", "retry_after": 3600}]))
        .await?;
    let github = client(&emulator, BOT, None)?;

    let started = Instant::now();
    let error = github.user().await.err().ok_or("expected a failure")?;

    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        matches!(
            error,
            GitHubError::RateLimited {
                secondary: true,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(control.requests("GET /user").await?, 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_primary_limit_fails_fast_with_exit_code_3_and_no_retry_storm() -> TestResult {
    let emulator = crate::support::emulator().await?;
    let control = Control::new(&emulator)?;
    control.rate_limit("crew-bot", "core", 0).await?;
    let github = client(&emulator, BOT, None)?;

    let started = Instant::now();
    let error = github.user().await.err().ok_or("expected a failure")?;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the reset is an hour away: no waiting"
    );
    match &error {
        GitHubError::RateLimited {
            secondary: false,
            remaining: Some(0),
            reset: Some(_),
            ..
        } => {}
        other => panic!("expected a primary rate limit, got {other:?}"),
    }
    assert!(error.to_string().contains("rate limited until"), "{error}");

    // Known exhausted: the next request is refused locally, not sent.
    let again = github
        .repository(&widgets()?)
        .await
        .err()
        .ok_or("expected a failure")?;
    assert!(again.is_rate_limited(), "{again:?}");
    assert_eq!(control.requests("GET /user").await?, 1);
    assert_eq!(control.requests("GET /repos/{owner}/{repo}").await?, 0);
    assert_eq!(github.request_counts().total, 1);

    assert_eq!(CrewError::from(error).exit_code(), 3);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budget_refuses_new_work_below_the_reserve() -> TestResult {
    let emulator = crate::support::emulator().await?;
    let control = Control::new(&emulator)?;
    control.rate_limit("crew-bot", "core", 50).await?;
    let github = client(&emulator, BOT, None)?;

    assert!(github.ensure_budget(100).is_ok(), "nothing known yet");
    github.user().await?;
    let snapshot = github.rate_snapshot("core").ok_or("no snapshot recorded")?;
    assert_eq!(snapshot.remaining, 49);

    let error = github
        .ensure_budget(100)
        .err()
        .ok_or("expected a refusal")?;
    match &error {
        GitHubError::RateLimited {
            remaining: Some(49),
            reserve: Some(100),
            reset: Some(_),
            ..
        } => {}
        other => panic!("{other:?}"),
    }
    let message = error.to_string();
    assert!(
        message.contains("49 remaining") && message.contains("reserve 100"),
        "{message}"
    );
    assert!(github.ensure_budget(10).is_ok());
    assert_eq!(CrewError::from(error).exit_code(), 3);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_never_appears_in_errors() -> TestResult {
    let emulator = crate::support::emulator().await?;
    let secret = "ghp_ThisIsASecretToken1234567890";
    let github = client(&emulator, secret, None)?;
    let error = github.user().await.err().ok_or("expected a failure")?;
    assert!(
        matches!(error, GitHubError::Unauthorized { .. }),
        "{error:?}"
    );
    let crew_error = CrewError::from(error);
    assert_eq!(crew_error.exit_code(), 1);
    let rendered = format!("{crew_error} {crew_error:?} {:?}", crew_error.hints());
    assert!(!rendered.contains(secret), "{rendered}");
    assert!(!format!("{github:?}").contains(secret));

    // A transport failure (nothing listens there) must not show it either.
    let unreachable = client_at("http://127.0.0.1:9", secret, None)?;
    let error = unreachable.user().await.err().ok_or("expected a failure")?;
    assert!(
        matches!(error, GitHubError::Transport { sent: false, .. }),
        "{error:?}"
    );
    assert!(!format!("{error} {error:?}").contains(secret));
    assert_eq!(CrewError::from(error).exit_code(), 3);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_errors_are_retried_even_for_writes() -> TestResult {
    // Nothing listens on port 9: the request never leaves, so re-sending a POST is safe.
    let github = client_at("http://127.0.0.1:9", BOT, None)?;
    let error = github
        .create_issue_comment(&widgets()?, 1, "hello", None)
        .await
        .err()
        .ok_or("expected a failure")?;
    assert!(
        matches!(error, GitHubError::Transport { sent: false, .. }),
        "{error:?}"
    );
    assert_eq!(github.request_counts().total, 5, "1 attempt + 4 retries");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_reads_and_permissions() -> TestResult {
    let emulator = crate::support::emulator().await?;
    let repo = widgets()?;
    let bot = client(&emulator, BOT, None)?;

    let repository = bot.repository(&repo).await?;
    assert_eq!(
        (
            repository.full_name.as_str(),
            repository.default_branch.as_str()
        ),
        ("acme/widgets", "main")
    );
    assert!(
        bot.collaborator_permission(&repo, "crew-bot")
            .await?
            .can_write()
    );
    assert!(
        !bot.collaborator_permission(&repo, "outsider")
            .await?
            .can_write()
    );

    let outsider = client(&emulator, OUTSIDER, None)?;
    let own = outsider.collaborator_permission(&repo, "outsider").await;
    match own {
        Ok(permission) => assert!(!permission.can_write()),
        Err(error) => assert!(
            matches!(
                error,
                GitHubError::Forbidden { .. } | GitHubError::NotFound { .. }
            ),
            "{error:?}"
        ),
    }

    let limits = bot.rate_limit().await?;
    assert!(limits.resources.core.limit > 0);
    let missing: RepoSlug = "acme/nope".parse()?;
    let error = bot.repository(&missing).await.err().ok_or("expected 404")?;
    assert!(matches!(error, GitHubError::NotFound { .. }), "{error:?}");
    assert_eq!(CrewError::from(error).exit_code(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_refs_are_a_compare_and_swap() -> TestResult {
    let emulator = crate::support::emulator().await?;
    let control = Control::new(&emulator)?;
    let repo = widgets()?;
    let github = client(&emulator, BOT, None)?;

    let main = github.branch(&repo, "main").await?;
    let tip = main.commit.sha.clone();
    let tree = main.commit.commit.tree.sha.clone();
    let first = github
        .create_commit(&repo, "lease 1", &tree, &[tip.as_str()])
        .await?;
    assert_eq!(github.commit(&repo, &first.sha).await?.message, "lease 1");

    let name = "refs/crew/leases/7";
    assert_eq!(github.get_ref(&repo, name).await?, None);
    let created = github.create_ref(&repo, name, &first.sha).await?;
    assert_eq!(created.object.sha, first.sha);

    // A second create loses the race with 422, and is not retried.
    let lost = github
        .create_ref(&repo, name, &tip)
        .await
        .err()
        .ok_or("creating an existing ref must fail")?;
    assert!(matches!(lost, GitHubError::Validation { .. }), "{lost:?}");
    assert_eq!(
        control
            .requests("POST /repos/{owner}/{repo}/git/refs")
            .await?,
        2
    );

    // Fast-forward succeeds; moving back without force is refused.
    let second = github
        .create_commit(&repo, "lease 2", &tree, &[first.sha.as_str()])
        .await?;
    assert_eq!(
        github
            .update_ref(&repo, name, &second.sha)
            .await?
            .object
            .sha,
        second.sha
    );
    let refused = github
        .update_ref(&repo, name, &tip)
        .await
        .err()
        .ok_or("a non-fast-forward update must be refused")?;
    assert!(
        matches!(refused, GitHubError::Validation { .. }),
        "{refused:?}"
    );

    let leases = github.matching_refs(&repo, "refs/crew/leases/").await?;
    assert_eq!(leases.len(), 1);
    assert_eq!(leases[0].name, name);
    assert_eq!(leases[0].object.sha, second.sha);

    github.delete_ref(&repo, name).await?;
    assert_eq!(github.get_ref(&repo, name).await?, None);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ref_create_whose_response_is_dropped_is_recognised_as_applied() -> TestResult {
    let emulator = crate::support::emulator().await?;
    let control = Control::new(&emulator)?;
    let repo = widgets()?;
    let github = client(&emulator, BOT, None)?;
    let tip = github.branch(&repo, "main").await?.commit.sha;
    control
        .faults(json!([{"route": "POST /repos/{owner}/{repo}/git/refs", "fault": "drop_after_write", "times": 1}]))
        .await?;

    let created = github.create_ref(&repo, "refs/crew/leases/9", &tip).await?;

    assert_eq!(created.object.sha, tip);
    assert_eq!(
        control
            .requests("POST /repos/{owner}/{repo}/git/refs")
            .await?,
        1,
        "the check found the ref: no second POST"
    );
    assert_eq!(
        control
            .requests("GET /repos/{owner}/{repo}/git/ref/{ref}")
            .await?,
        1
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_comment_post_is_not_resent_when_the_check_finds_it() -> TestResult {
    let emulator = crate::support::emulator_with_issue().await?;
    let control = Control::new(&emulator)?;
    let repo = widgets()?;
    let github = client(&emulator, BOT, None)?;
    control
        .faults(json!([{"route": "POST /repos/{owner}/{repo}/issues/{issue_number}/comments", "fault": "drop_after_write", "times": 1}]))
        .await?;

    let op = "op-5f1c2d";
    let body = format!("<!-- crew:v1 {{\"kind\":\"progress\",\"op\":\"{op}\"}} -->\nhalf way");
    let check = github.comment_check(&repo, 1, op);
    let comment = github
        .create_issue_comment(&repo, 1, &body, Some(check))
        .await?;

    assert_eq!(comment.body.as_deref(), Some(body.as_str()));
    let comments = github.issue_comments(&repo, 1).await?;
    assert_eq!(comments.len(), 1, "exactly one comment exists");
    assert_eq!(
        control
            .requests("POST /repos/{owner}/{repo}/issues/{issue_number}/comments")
            .await?,
        1
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_comment_post_without_a_check_is_not_resent() -> TestResult {
    let emulator = crate::support::emulator_with_issue().await?;
    let control = Control::new(&emulator)?;
    let repo = widgets()?;
    let github = client(&emulator, BOT, None)?;
    control
        .faults(json!([{"route": "POST /repos/{owner}/{repo}/issues/{issue_number}/comments", "fault": "drop_after_write", "times": 1}]))
        .await?;

    let error = github
        .create_issue_comment(&repo, 1, "hello", None)
        .await
        .err()
        .ok_or("the lost response must surface")?;

    assert!(
        matches!(error, GitHubError::Transport { sent: true, .. }),
        "{error:?}"
    );
    assert_eq!(
        control
            .requests("POST /repos/{owner}/{repo}/issues/{issue_number}/comments")
            .await?,
        1,
        "never blindly re-sent"
    );
    assert_eq!(
        github.issue_comments(&repo, 1).await?.len(),
        1,
        "it was applied once"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_502_on_a_comment_post_is_retried_only_after_the_check() -> TestResult {
    let emulator = crate::support::emulator_with_issue().await?;
    let control = Control::new(&emulator)?;
    let repo = widgets()?;
    let github = client(&emulator, BOT, None)?;
    // The injected 502 answers without applying the write, so the check finds nothing and the
    // POST is sent again: exactly one comment in the end.
    control
        .faults(json!([{"route": "POST /repos/{owner}/{repo}/issues/{issue_number}/comments", "fault": "error", "status": 502, "times": 1}]))
        .await?;

    let check = github.comment_check(&repo, 1, "op-77");
    github
        .create_issue_comment(&repo, 1, "op-77 done", Some(check))
        .await?;

    assert_eq!(
        control
            .requests("POST /repos/{owner}/{repo}/issues/{issue_number}/comments")
            .await?,
        2
    );
    assert_eq!(github.issue_comments(&repo, 1).await?.len(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphql_reads_data_and_maps_errors() -> TestResult {
    let emulator = crate::support::emulator().await?;
    let github = client(&emulator, BOT, None)?;

    let data = github
        .graphql(
            "query($login: String!, $number: Int!) { organization(login: $login) { projectV2(number: $number) { title } } rateLimit { limit remaining resetAt used cost } }",
            json!({"login": "acme", "number": 1}),
        )
        .await?;
    assert_eq!(data["organization"]["projectV2"]["title"], "Widgets");
    assert!(
        github.rate_snapshot("graphql").is_some(),
        "rateLimit feeds the budget"
    );

    let error = github
        .graphql(
            "query($login: String!) { organization(login: $login) { login } }",
            json!({"login": "no-such-org"}),
        )
        .await
        .err()
        .ok_or("expected NOT_FOUND")?;
    assert!(matches!(error, GitHubError::NotFound { .. }), "{error:?}");
    Ok(())
}
