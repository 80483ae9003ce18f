//! Issues, comments, labels and assignees: each route, its error statuses, pagination, `since`,
//! ETags, permissions and `author_association`, through octocrab and checked against GitHub's
//! OpenAPI description at the end of every test.

use std::collections::BTreeSet;

use crate::support::*;
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use github_emulator::state::{Issue, IssueState, Pull};
use http::{Method, StatusCode};
use serde_json::{Value, json};

const ISSUES: &str = "/repos/acme/widgets/issues";

async fn create_issue(gh: &TestGitHub, token: &str, body: Value) -> Value {
    let answer = gh.post(token, ISSUES, body).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{:?}", answer.body);
    answer.body
}

async fn comment(gh: &TestGitHub, token: &str, number: u64, body: &str) -> Value {
    let answer = gh
        .post(
            token,
            &format!("{ISSUES}/{number}/comments"),
            json!({"body": body}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{:?}", answer.body);
    answer.body
}

async fn advance(gh: &TestGitHub, seconds: i64) {
    let answer = gh
        .control(
            Method::POST,
            "/_emulator/clock",
            Some(json!({"advance_seconds": seconds})),
        )
        .await;
    assert!(answer.status.is_success(), "{:?}", answer.body);
}

fn time(value: &Value) -> DateTime<Utc> {
    value
        .as_str()
        .unwrap_or_else(|| panic!("a timestamp, got {value}"))
        .parse()
        .expect("RFC 3339")
}

fn numbers(list: &Value) -> Vec<u64> {
    list.as_array()
        .expect("a list")
        .iter()
        .map(|issue| issue["number"].as_u64().unwrap())
        .collect()
}

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .expect("a list")
        .iter()
        .map(|label| label["name"].as_str().unwrap().to_string())
        .collect()
}

fn logins(list: &Value) -> Vec<String> {
    list.as_array()
        .expect("a list")
        .iter()
        .map(|user| user["login"].as_str().unwrap().to_string())
        .collect()
}

/// Insert issues straight into the state (fast seeding of large lists).
fn seed_issues(gh: &TestGitHub, count: u64, labels: &[&str]) {
    gh.emulator.with_state(|state| {
        let now = state.now();
        for _ in 0..count {
            let id = state.data.alloc_id();
            let repo = state.repo_mut("acme", "widgets").unwrap();
            let number = repo.next_number;
            repo.next_number += 1;
            repo.issues.insert(
                number,
                Issue {
                    id,
                    number,
                    title: format!("seeded {number}"),
                    body: None,
                    user: "maintainer".to_string(),
                    state: IssueState::Open,
                    state_reason: None,
                    labels: labels.iter().map(|l| l.to_string()).collect(),
                    assignees: Vec::new(),
                    locked: false,
                    created_at: now,
                    updated_at: now,
                    closed_at: None,
                    closed_by: None,
                    pull: None,
                },
            );
        }
    });
}

#[tokio::test]
async fn create_get_and_update_an_issue() {
    let gh = TestGitHub::start().await;
    let created = gh
        .post(
            MAINTAINER,
            ISSUES,
            json!({"title": "Widgets wobble", "body": "They do.", "labels": ["bug", "Needs Triage"], "assignees": ["crew-bot"]}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let issue = created.body.clone();
    assert_eq!(issue["number"], 1);
    assert_eq!(issue["state"], "open");
    assert_eq!(issue["user"]["login"], "maintainer");
    assert_eq!(issue["author_association"], "MEMBER");
    assert_eq!(names(&issue["labels"]), ["bug", "Needs Triage"]);
    assert_eq!(logins(&issue["assignees"]), ["crew-bot"]);
    assert_eq!(issue["assignee"]["login"], "crew-bot");
    assert!(issue.get("pull_request").is_none());
    assert_eq!(
        created.header("location"),
        Some(gh.url("/repos/acme/widgets/issues/1").as_str())
    );
    // An unknown label name creates the label.
    let labels = gh.get(BOT, "/repos/acme/widgets/labels").await;
    assert!(names(&labels.body).contains(&"Needs Triage".to_string()));

    let got = gh.get(OUTSIDER, &format!("{ISSUES}/1")).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body["title"], "Widgets wobble");
    assert_eq!(
        gh.get(BOT, &format!("{ISSUES}/99")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        gh.get(BOT, &format!("{ISSUES}/abc")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        gh.get(BOT, "/repos/acme/nope/issues/1").await.status,
        StatusCode::NOT_FOUND
    );

    // Closing sets closed_at and closed_by and bumps updated_at.
    advance(&gh, 30).await;
    let closed = gh
        .patch(
            BOT,
            &format!("{ISSUES}/1"),
            json!({"state": "closed", "state_reason": "not_planned"}),
        )
        .await;
    assert_eq!(closed.status, StatusCode::OK, "{:?}", closed.body);
    assert_eq!(closed.body["state"], "closed");
    assert_eq!(closed.body["state_reason"], "not_planned");
    assert_eq!(closed.body["closed_by"]["login"], "crew-bot");
    assert_eq!(
        time(&closed.body["closed_at"]),
        time(&closed.body["updated_at"])
    );
    assert!(time(&closed.body["updated_at"]) >= time(&issue["updated_at"]) + Duration::seconds(30));

    advance(&gh, 30).await;
    let reopened = gh
        .patch(
            MAINTAINER,
            &format!("{ISSUES}/1"),
            json!({"state": "open", "title": "Widgets wobble badly", "body": null, "labels": ["enhancement"], "assignees": []}),
        )
        .await;
    assert_eq!(reopened.status, StatusCode::OK);
    assert_eq!(reopened.body["state"], "open");
    assert_eq!(reopened.body["state_reason"], "reopened");
    assert_eq!(reopened.body["closed_at"], Value::Null);
    assert_eq!(reopened.body["closed_by"], Value::Null);
    assert_eq!(reopened.body["title"], "Widgets wobble badly");
    assert_eq!(reopened.body["body"], Value::Null);
    assert_eq!(names(&reopened.body["labels"]), ["enhancement"]);
    assert_eq!(reopened.body["assignees"], json!([]));
    assert_eq!(reopened.body["assignee"], Value::Null);
    assert!(time(&reopened.body["updated_at"]) > time(&closed.body["updated_at"]));

    // A PATCH that changes nothing leaves updated_at alone.
    advance(&gh, 30).await;
    let same = gh
        .patch(
            BOT,
            &format!("{ISSUES}/1"),
            json!({"title": "Widgets wobble badly"}),
        )
        .await;
    assert_eq!(same.body["updated_at"], reopened.body["updated_at"]);
    gh.assert_contract();
}

#[tokio::test]
async fn create_and_update_errors() {
    let gh = TestGitHub::start().await;
    let missing = gh.post(BOT, ISSUES, json!({"body": "no title"})).await;
    assert_eq!(missing.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(missing.body["message"], "Validation Failed");
    assert_eq!(
        missing.body["errors"],
        json!([{"resource": "Issue", "field": "title", "code": "missing_field"}])
    );
    let blank = gh.post(BOT, ISSUES, json!({"title": "  "})).await;
    assert_eq!(blank.status, StatusCode::UNPROCESSABLE_ENTITY);

    let bad_json = gh.send(Some(BOT), Method::POST, ISSUES, None, &[]).await;
    // An empty body is `{}` to GitHub: the title is missing.
    assert_eq!(bad_json.status, StatusCode::UNPROCESSABLE_ENTITY);
    let client = gh.client(Some(BOT));
    let request = http::Request::builder()
        .method(Method::POST)
        .uri(gh.url(ISSUES))
        .body("{not json".to_string())
        .unwrap();
    let response = client.execute(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    let anonymous = gh
        .send(
            None,
            Method::POST,
            ISSUES,
            Some(json!({"title": "anon"})),
            &[],
        )
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);

    let not_assignable = gh
        .post(
            BOT,
            ISSUES,
            json!({"title": "t", "assignees": ["outsider"]}),
        )
        .await;
    assert_eq!(not_assignable.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(not_assignable.body["errors"][0]["field"], "assignees");
    assert_eq!(not_assignable.body["errors"][0]["code"], "invalid");
    assert_eq!(not_assignable.body["errors"][0]["value"], "outsider");

    let milestone = gh
        .post(BOT, ISSUES, json!({"title": "t", "milestone": 3}))
        .await;
    assert_eq!(milestone.status, StatusCode::UNPROCESSABLE_ENTITY);

    // Integer titles are taken, as GitHub's description allows.
    let numeric = create_issue(&gh, BOT, json!({"title": 42})).await;
    assert_eq!(numeric["title"], "42");
    let bad_state = gh
        .patch(BOT, &format!("{ISSUES}/1"), json!({"state": "merged"}))
        .await;
    assert_eq!(bad_state.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad_state.body["errors"][0]["field"], "state");
    let bad_reason = gh
        .patch(
            BOT,
            &format!("{ISSUES}/1"),
            json!({"state": "closed", "state_reason": "bored"}),
        )
        .await;
    assert_eq!(bad_reason.status, StatusCode::UNPROCESSABLE_ENTITY);
    let blank_title = gh
        .patch(BOT, &format!("{ISSUES}/1"), json!({"title": ""}))
        .await;
    assert_eq!(blank_title.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        gh.patch(BOT, &format!("{ISSUES}/7"), json!({"title": "x"}))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    // Nothing was written by the failed requests.
    let list = gh.get(BOT, &format!("{ISSUES}?state=all")).await;
    assert_eq!(numbers(&list.body), [1]);
    assert_eq!(list.body[0]["state"], "open");
    gh.assert_contract();
}

#[tokio::test]
async fn outsiders_may_open_issues_but_not_triage_or_edit_others() {
    let gh = TestGitHub::start().await;
    let theirs = create_issue(
        &gh,
        OUTSIDER,
        json!({"title": "Please fix", "labels": ["bug"], "assignees": ["crew-bot"], "milestone": 1}),
    )
    .await;
    // Labels, assignees and milestone are silently dropped without triage access.
    assert_eq!(theirs["labels"], json!([]));
    assert_eq!(theirs["assignees"], json!([]));
    assert_eq!(theirs["author_association"], "NONE");

    // The author may edit and close their own issue; labels are still dropped.
    let own = gh
        .patch(
            OUTSIDER,
            &format!("{ISSUES}/1"),
            json!({"title": "Please fix it", "labels": ["bug"], "state": "closed"}),
        )
        .await;
    assert_eq!(own.status, StatusCode::OK);
    assert_eq!(own.body["title"], "Please fix it");
    assert_eq!(own.body["state"], "closed");
    assert_eq!(own.body["state_reason"], "completed");
    assert_eq!(own.body["labels"], json!([]));

    let ours = create_issue(&gh, MAINTAINER, json!({"title": "Ours"})).await;
    let number = ours["number"].as_u64().unwrap();
    let refused = gh
        .patch(
            OUTSIDER,
            &format!("{ISSUES}/{number}"),
            json!({"title": "Mine now"}),
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(refused.body["message"].is_string());
    // A collaborator with write access may edit anyone's issue.
    let edited = gh
        .patch(
            BOT,
            &format!("{ISSUES}/1"),
            json!({"labels": ["crew"], "state": "open"}),
        )
        .await;
    assert_eq!(edited.status, StatusCode::OK);
    assert_eq!(names(&edited.body["labels"]), ["crew"]);
    assert_eq!(
        gh.get(BOT, &format!("{ISSUES}/{number}")).await.body["title"],
        "Ours"
    );
    gh.assert_contract();
}

#[tokio::test]
async fn list_filters_and_sorts() {
    let gh = TestGitHub::start().await;
    create_issue(
        &gh,
        MAINTAINER,
        json!({"title": "one", "labels": ["bug", "crew"], "assignees": ["crew-bot"]}),
    )
    .await;
    advance(&gh, 10).await;
    create_issue(&gh, BOT, json!({"title": "two", "labels": ["bug"]})).await;
    advance(&gh, 10).await;
    create_issue(&gh, OUTSIDER, json!({"title": "three"})).await;
    advance(&gh, 10).await;
    create_issue(
        &gh,
        MAINTAINER,
        json!({"title": "four", "labels": ["crew", "BUG"], "assignees": ["maintainer"]}),
    )
    .await;
    gh.patch(
        MAINTAINER,
        &format!("{ISSUES}/4"),
        json!({"state": "closed"}),
    )
    .await;
    comment(&gh, OUTSIDER, 2, "a").await;
    comment(&gh, OUTSIDER, 2, "b").await;
    comment(&gh, OUTSIDER, 3, "c").await;
    advance(&gh, 10).await;
    gh.patch(
        MAINTAINER,
        &format!("{ISSUES}/1"),
        json!({"body": "touched"}),
    )
    .await;

    let list = |query: &'static str| {
        let gh = &gh;
        async move {
            let answer = gh.get(BOT, &format!("{ISSUES}{query}")).await;
            assert_eq!(answer.status, StatusCode::OK, "{query}: {:?}", answer.body);
            numbers(&answer.body)
        }
    };
    assert_eq!(list("").await, [3, 2, 1], "open, newest first by default");
    assert_eq!(list("?state=closed").await, [4]);
    assert_eq!(list("?state=all").await, [4, 3, 2, 1]);
    assert_eq!(list("?state=all&direction=asc").await, [1, 2, 3, 4]);
    assert_eq!(
        list("?state=all&labels=bug").await,
        [4, 2, 1],
        "label names match case-insensitively"
    );
    assert_eq!(
        list("?state=all&labels=bug,crew").await,
        [4, 1],
        "every label must match"
    );
    assert_eq!(
        list("?state=all&labels=bug,nothing").await,
        Vec::<u64>::new()
    );
    assert_eq!(list("?state=all&assignee=none").await, [3, 2]);
    assert_eq!(list("?state=all&assignee=*").await, [4, 1]);
    assert_eq!(list("?state=all&assignee=Crew-Bot").await, [1]);
    assert_eq!(list("?state=all&creator=maintainer").await, [4, 1]);
    assert_eq!(list("?sort=updated").await, [1, 3, 2]);
    assert_eq!(list("?sort=comments").await, [2, 3, 1]);
    assert_eq!(list("?sort=comments&direction=asc").await, [1, 3, 2]);
    assert_eq!(list("?milestone=none").await, [3, 2, 1]);
    assert_eq!(list("?milestone=*").await, Vec::<u64>::new());

    for bad in [
        "?state=merged",
        "?sort=votes",
        "?direction=up",
        "?since=yesterday",
        "?mentioned=outsider",
    ] {
        let answer = gh.get(BOT, &format!("{ISSUES}{bad}")).await;
        assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    }
    let unknown = gh.get(BOT, "/repos/acme/nope/issues?state=merged").await;
    assert_eq!(
        unknown.status,
        StatusCode::NOT_FOUND,
        "404 before parameters are judged"
    );
    // Anonymous callers read public repositories; private ones are 404 to outsiders.
    let anonymous = gh.send(None, Method::GET, ISSUES, None, &[]).await;
    assert_eq!(anonymous.status, StatusCode::OK);
    gh.emulator
        .with_state(|state| state.repo_mut("acme", "widgets").unwrap().private = true);
    assert_eq!(gh.get(OUTSIDER, ISSUES).await.status, StatusCode::NOT_FOUND);
    assert_eq!(gh.get(BOT, ISSUES).await.status, StatusCode::OK);
    gh.assert_contract();
}

#[tokio::test]
async fn pull_requests_are_listed_as_issues() {
    let gh = TestGitHub::start().await;
    create_issue(&gh, BOT, json!({"title": "an issue"})).await;
    gh.emulator.with_state(|state| {
        let id = state.data.alloc_id();
        let pull_id = state.data.alloc_id();
        let now = state.now();
        let repo = state.repo_mut("acme", "widgets").unwrap();
        let number = repo.next_number;
        repo.next_number += 1;
        repo.issues.insert(
            number,
            Issue {
                id,
                number,
                title: "a pull request".to_string(),
                body: Some("Closes #1".to_string()),
                user: "crew-bot".to_string(),
                state: IssueState::Open,
                state_reason: None,
                labels: vec!["crew".to_string()],
                assignees: Vec::new(),
                locked: false,
                created_at: now,
                updated_at: now,
                closed_at: None,
                closed_by: None,
                pull: Some(Pull {
                    id: pull_id,
                    head_ref: "crew/1".to_string(),
                    head_sha: "0".repeat(40),
                    base_ref: "main".to_string(),
                    base_sha: "0".repeat(40),
                    draft: false,
                    merged_at: None,
                    merged_by: None,
                    merge_commit_sha: None,
                    reviews: Vec::new(),
                }),
            },
        );
    });
    let list = gh.get(BOT, ISSUES).await;
    assert_eq!(numbers(&list.body), [2, 1]);
    assert_eq!(
        list.body[0]["pull_request"]["url"],
        gh.url("/repos/acme/widgets/pulls/2").as_str()
    );
    assert!(list.body[1].get("pull_request").is_none());
    let pr = gh.get(BOT, &format!("{ISSUES}/2")).await;
    assert_eq!(pr.status, StatusCode::OK);
    assert_eq!(pr.body["title"], "a pull request");
    assert!(pr.body["pull_request"].is_object());
    // A comment on a pull request is an issue comment too.
    let on_pr = comment(&gh, OUTSIDER, 2, "nice").await;
    assert!(
        on_pr["html_url"]
            .as_str()
            .unwrap()
            .contains("/pull/2#issuecomment-")
    );
    gh.assert_contract();
}

#[tokio::test]
async fn pagination_follows_link_with_octocrab() {
    let gh = TestGitHub::start().await;
    seed_issues(&gh, 250, &[]);
    let client = gh.client(Some(BOT));
    let mut page = client
        .issues("acme", "widgets")
        .list()
        .per_page(100)
        .send()
        .await
        .expect("first page");
    let mut seen = Vec::new();
    let mut pages = 1;
    loop {
        seen.extend(page.items.iter().map(|issue| issue.number));
        match client
            .get_page::<octocrab::models::issues::Issue>(&page.next)
            .await
            .expect("next page")
        {
            Some(next) => {
                page = next;
                pages += 1;
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 250);
    let unique: BTreeSet<u64> = seen.iter().copied().collect();
    assert_eq!(
        unique,
        (1..=250).collect::<BTreeSet<u64>>(),
        "every issue exactly once"
    );

    // Defaults and limits: 30 per page, at most 100, absolute Link URLs on the emulator's origin.
    let first = gh.get(BOT, ISSUES).await;
    assert_eq!(first.body.as_array().unwrap().len(), 30);
    let link = first.header("link").expect("Link header");
    assert!(
        link.contains(&format!("<{}?page=2>; rel=\"next\"", gh.url(ISSUES))),
        "{link}"
    );
    assert!(
        link.contains(&format!("<{}?page=9>; rel=\"last\"", gh.url(ISSUES))),
        "{link}"
    );
    let big = gh.get(BOT, &format!("{ISSUES}?per_page=500")).await;
    assert_eq!(big.body.as_array().unwrap().len(), 100);
    let last = gh.get(BOT, &format!("{ISSUES}?per_page=100&page=3")).await;
    assert_eq!(last.body.as_array().unwrap().len(), 50);
    assert!(!last.header("link").unwrap().contains("rel=\"next\""));
    let beyond = gh.get(BOT, &format!("{ISSUES}?per_page=100&page=4")).await;
    assert_eq!(beyond.body, json!([]));
    gh.assert_contract();
}

#[tokio::test]
async fn label_filter_links_percent_encode_commas() {
    let gh = TestGitHub::start().await;
    seed_issues(&gh, 3, &["bug", "crew"]);
    seed_issues(&gh, 2, &["bug"]);
    let first = gh
        .get(BOT, &format!("{ISSUES}?labels=bug,crew&per_page=1"))
        .await;
    assert_eq!(numbers(&first.body), [3]);
    let link = first.header("link").expect("Link header").to_string();
    assert!(link.contains("labels=bug%2Ccrew"), "{link}");
    for part in link.split(", ") {
        let url = part
            .strip_prefix('<')
            .and_then(|rest| rest.split_once('>'))
            .map(|(url, _)| url)
            .unwrap_or_else(|| panic!("a Link part: {part}"));
        assert!(!url.contains(','), "raw comma in {url}");
        assert!(url.starts_with(gh.emulator.base_url()), "absolute: {url}");
    }
    // octocrab splits Link on commas and still finds every page.
    let client = gh.client(Some(BOT));
    let labels = vec!["bug".to_string(), "crew".to_string()];
    let mut page = client
        .issues("acme", "widgets")
        .list()
        .labels(&labels)
        .per_page(1)
        .send()
        .await
        .unwrap();
    let mut seen = Vec::new();
    loop {
        seen.extend(page.items.iter().map(|issue| issue.number));
        match client
            .get_page::<octocrab::models::issues::Issue>(&page.next)
            .await
            .unwrap()
        {
            Some(next) => page = next,
            None => break,
        }
    }
    assert_eq!(seen, [3, 2, 1]);
    gh.assert_contract();
}

#[tokio::test]
async fn since_accepts_fractional_seconds() {
    let gh = TestGitHub::start().await;
    let first = create_issue(&gh, BOT, json!({"title": "first"})).await;
    advance(&gh, 10).await;
    create_issue(&gh, BOT, json!({"title": "second"})).await;
    let first_updated = time(&first["updated_at"]);

    let between =
        (first_updated + Duration::milliseconds(1500)).to_rfc3339_opts(SecondsFormat::Millis, true);
    assert!(between.contains('.'), "{between}");
    let later = gh
        .get(BOT, &format!("{ISSUES}?since={between}&state=all"))
        .await;
    assert_eq!(later.status, StatusCode::OK);
    assert_eq!(numbers(&later.body), [2]);
    // `since` is inclusive: updated_at >= since.
    let exact = first_updated.to_rfc3339_opts(SecondsFormat::Micros, true);
    assert_eq!(
        numbers(&gh.get(BOT, &format!("{ISSUES}?since={exact}")).await.body),
        [2, 1]
    );
    // An offset other than Z is understood.
    let offset = (first_updated + Duration::milliseconds(250))
        .with_timezone(&chrono::FixedOffset::east_opt(2 * 3600).unwrap())
        .to_rfc3339_opts(SecondsFormat::Millis, false)
        .replace('+', "%2B");
    assert_eq!(
        numbers(&gh.get(BOT, &format!("{ISSUES}?since={offset}")).await.body),
        [2]
    );

    // Comments take `since` too, per issue and repository-wide.
    comment(&gh, BOT, 1, "early").await;
    advance(&gh, 10).await;
    let late = comment(&gh, BOT, 1, "late").await;
    let cut = (time(&late["created_at"]) - Duration::milliseconds(500))
        .to_rfc3339_opts(SecondsFormat::Millis, true);
    let per_issue = gh
        .get(BOT, &format!("{ISSUES}/1/comments?since={cut}"))
        .await;
    assert_eq!(per_issue.body.as_array().unwrap().len(), 1);
    assert_eq!(per_issue.body[0]["body"], "late");
    let repo_wide = gh.get(BOT, &format!("{ISSUES}/comments?since={cut}")).await;
    assert_eq!(repo_wide.body.as_array().unwrap().len(), 1);
    let bad = gh.get(BOT, &format!("{ISSUES}/comments?since=soon")).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    gh.assert_contract();
}

#[tokio::test]
async fn etag_is_304_until_a_new_comment() {
    let gh = TestGitHub::start().await;
    create_issue(&gh, BOT, json!({"title": "watched"})).await;
    let first = gh.get(BOT, ISSUES).await;
    let etag = first.header("etag").expect("etag").to_string();
    let again = gh
        .send(
            Some(BOT),
            Method::GET,
            ISSUES,
            None,
            &[("if-none-match", &etag)],
        )
        .await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);
    assert_eq!(again.body, Value::Null);

    comment(&gh, OUTSIDER, 1, "news").await;
    let changed = gh
        .send(
            Some(BOT),
            Method::GET,
            ISSUES,
            None,
            &[("if-none-match", &etag)],
        )
        .await;
    assert_eq!(changed.status, StatusCode::OK);
    assert_ne!(changed.header("etag"), Some(etag.as_str()));
    assert_eq!(changed.body[0]["comments"], 1);

    // The same on one issue's comments.
    let comments = gh.get(BOT, &format!("{ISSUES}/1/comments")).await;
    let etag = comments.header("etag").unwrap().to_string();
    let cached = gh
        .send(
            Some(BOT),
            Method::GET,
            &format!("{ISSUES}/1/comments"),
            None,
            &[("if-none-match", &etag)],
        )
        .await;
    assert_eq!(cached.status, StatusCode::NOT_MODIFIED);
    gh.assert_contract();
}

#[tokio::test]
async fn author_association_follows_roles() {
    let gh = TestGitHub::start().await;
    create_issue(&gh, BOT, json!({"title": "roles"})).await;
    let outsider = comment(&gh, OUTSIDER, 1, "<!-- crew:marker -->").await;
    let bot = comment(&gh, BOT, 1, "bot").await;
    let maintainer = comment(&gh, MAINTAINER, 1, "maintainer").await;
    assert_eq!(outsider["author_association"], "NONE");
    assert_eq!(outsider["user"]["login"], "outsider");
    assert_eq!(bot["author_association"], "COLLABORATOR");
    assert_eq!(maintainer["author_association"], "MEMBER");
    let listed = gh.get(BOT, &format!("{ISSUES}/1/comments")).await;
    let associations: Vec<&str> = listed
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["author_association"].as_str().unwrap())
        .collect();
    assert_eq!(
        associations,
        ["NONE", "COLLABORATOR", "MEMBER"],
        "ascending by id"
    );
    assert_eq!(
        gh.get(BOT, ISSUES).await.body[0]["author_association"],
        "COLLABORATOR"
    );
    gh.assert_contract();
}

#[tokio::test]
async fn comment_permissions_and_errors() {
    let gh = TestGitHub::start().await;
    create_issue(&gh, BOT, json!({"title": "discuss"})).await;
    let bots = comment(&gh, BOT, 1, "from the bot").await;
    let theirs = comment(&gh, OUTSIDER, 1, "from outside").await;
    let bot_url = format!("{ISSUES}/comments/{}", bots["id"]);
    let their_url = format!("{ISSUES}/comments/{}", theirs["id"]);

    let refused = gh
        .patch(OUTSIDER, &bot_url, json!({"body": "spoofed"}))
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(
        gh.delete(OUTSIDER, &bot_url).await.status,
        StatusCode::FORBIDDEN
    );
    let own = gh
        .patch(OUTSIDER, &their_url, json!({"body": "edited"}))
        .await;
    assert_eq!(own.status, StatusCode::OK);
    assert_eq!(own.body["body"], "edited");
    let moderated = gh
        .patch(BOT, &their_url, json!({"body": "moderated"}))
        .await;
    assert_eq!(moderated.status, StatusCode::OK);
    assert_eq!(
        moderated.body["user"]["login"], "outsider",
        "the author stays"
    );
    let empty = gh.patch(BOT, &bot_url, json!({"body": ""})).await;
    assert_eq!(empty.status, StatusCode::UNPROCESSABLE_ENTITY);

    let deleted = gh.delete(OUTSIDER, &their_url).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(deleted.body, Value::Null);
    assert_eq!(
        gh.delete(OUTSIDER, &their_url).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        gh.patch(BOT, &their_url, json!({"body": "x"})).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        gh.delete(BOT, &format!("{ISSUES}/comments/nope"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let remaining = gh.get(BOT, &format!("{ISSUES}/1/comments")).await;
    assert_eq!(remaining.body.as_array().unwrap().len(), 1);

    let unknown = gh
        .post(BOT, &format!("{ISSUES}/9/comments"), json!({"body": "hi"}))
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(
        gh.get(BOT, &format!("{ISSUES}/9/comments")).await.status,
        StatusCode::NOT_FOUND
    );
    let no_body = gh
        .post(BOT, &format!("{ISSUES}/1/comments"), json!({}))
        .await;
    assert_eq!(no_body.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(no_body.body["errors"][0]["field"], "body");
    assert_eq!(no_body.body["errors"][0]["code"], "missing_field");
    let anonymous = gh
        .send(
            None,
            Method::POST,
            &format!("{ISSUES}/1/comments"),
            Some(json!({"body": "hi"})),
            &[],
        )
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);

    // A locked issue takes comments from collaborators only.
    gh.emulator.with_state(|state| {
        state
            .repo_mut("acme", "widgets")
            .unwrap()
            .issues
            .get_mut(&1)
            .unwrap()
            .locked = true;
    });
    let locked = gh
        .post(
            OUTSIDER,
            &format!("{ISSUES}/1/comments"),
            json!({"body": "let me in"}),
        )
        .await;
    assert_eq!(locked.status, StatusCode::FORBIDDEN);
    comment(&gh, BOT, 1, "collaborators still can").await;
    gh.assert_contract();
}

#[tokio::test]
async fn comments_bump_the_issue_updated_at() {
    let gh = TestGitHub::start().await;
    let issue = create_issue(&gh, BOT, json!({"title": "sync me"})).await;
    let created_at = time(&issue["updated_at"]);
    advance(&gh, 60).await;
    let posted = comment(&gh, OUTSIDER, 1, "first").await;
    let after_comment = gh.get(BOT, &format!("{ISSUES}/1")).await.body;
    assert_eq!(after_comment["updated_at"], posted["created_at"]);
    assert!(time(&after_comment["updated_at"]) >= created_at + Duration::seconds(60));
    assert_eq!(after_comment["comments"], 1);

    advance(&gh, 60).await;
    let edited = gh
        .patch(
            OUTSIDER,
            &format!("{ISSUES}/comments/{}", posted["id"]),
            json!({"body": "second thoughts"}),
        )
        .await
        .body;
    assert!(time(&edited["updated_at"]) > time(&edited["created_at"]));
    assert_eq!(edited["created_at"], posted["created_at"]);
    let after_edit = gh.get(BOT, &format!("{ISSUES}/1")).await.body;
    assert_eq!(after_edit["updated_at"], edited["updated_at"]);

    // Incremental sync: `since` the last sight finds the issue again.
    let since = time(&after_comment["updated_at"]) + Duration::seconds(1);
    let since = since.to_rfc3339_opts(SecondsFormat::Secs, true);
    assert_eq!(
        numbers(&gh.get(BOT, &format!("{ISSUES}?since={since}")).await.body),
        [1]
    );
    gh.assert_contract();
}

#[tokio::test]
async fn repository_wide_comments_sort_and_page() {
    let gh = TestGitHub::start().await;
    create_issue(&gh, BOT, json!({"title": "a"})).await;
    create_issue(&gh, BOT, json!({"title": "b"})).await;
    let mut ids = Vec::new();
    for (number, body) in [(1, "one"), (2, "two"), (1, "three"), (2, "four")] {
        ids.push(
            comment(&gh, BOT, number, body).await["id"]
                .as_u64()
                .unwrap(),
        );
        advance(&gh, 5).await;
    }
    let ids_of = |list: &Value| -> Vec<u64> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_u64().unwrap())
            .collect()
    };
    let url = format!("{ISSUES}/comments");
    assert_eq!(
        ids_of(&gh.get(BOT, &url).await.body),
        ids,
        "ascending by default"
    );
    let mut reversed = ids.clone();
    reversed.reverse();
    assert_eq!(
        ids_of(
            &gh.get(BOT, &format!("{url}?sort=created&direction=desc"))
                .await
                .body
        ),
        reversed
    );
    assert_eq!(
        ids_of(&gh.get(BOT, &format!("{url}?direction=desc")).await.body),
        ids,
        "direction is ignored without sort"
    );
    gh.patch(
        BOT,
        &format!("{url}/{}", ids[0]),
        json!({"body": "one, edited"}),
    )
    .await;
    let by_update = ids_of(&gh.get(BOT, &format!("{url}?sort=updated")).await.body);
    assert_eq!(by_update, [ids[1], ids[2], ids[3], ids[0]]);

    let page = gh.get(BOT, &format!("{url}?per_page=3&page=2")).await;
    assert_eq!(ids_of(&page.body), [ids[3]]);
    assert!(page.header("link").unwrap().contains("rel=\"prev\""));
    assert_eq!(
        gh.get(BOT, &format!("{url}?sort=votes")).await.status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        gh.get(BOT, "/repos/acme/nope/issues/comments").await.status,
        StatusCode::NOT_FOUND
    );
    gh.assert_contract();
}

#[tokio::test]
async fn repository_labels() {
    let gh = TestGitHub::start().await;
    let labels = gh.get(OUTSIDER, "/repos/acme/widgets/labels").await;
    assert_eq!(labels.status, StatusCode::OK);
    assert_eq!(names(&labels.body), ["bug", "enhancement", "crew"]);

    let made = gh
        .post(
            BOT,
            "/repos/acme/widgets/labels",
            json!({"name": "crew: blocked", "color": "B60205", "description": "Waiting"}),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED);
    assert_eq!(made.body["name"], "crew: blocked");
    assert_eq!(made.body["color"], "b60205");
    assert_eq!(made.body["description"], "Waiting");
    assert_eq!(
        made.body["url"],
        gh.url("/repos/acme/widgets/labels/crew%3A%20blocked")
            .as_str()
    );
    let duplicate = gh
        .post(BOT, "/repos/acme/widgets/labels", json!({"name": "BUG"}))
        .await;
    assert_eq!(duplicate.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        duplicate.body["errors"],
        json!([{"resource": "Label", "field": "name", "code": "already_exists"}])
    );
    let nameless = gh
        .post(
            BOT,
            "/repos/acme/widgets/labels",
            json!({"color": "ffffff"}),
        )
        .await;
    assert_eq!(nameless.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(nameless.body["errors"][0]["code"], "missing_field");
    let bad_color = gh
        .post(
            BOT,
            "/repos/acme/widgets/labels",
            json!({"name": "x", "color": "#fff"}),
        )
        .await;
    assert_eq!(bad_color.status, StatusCode::UNPROCESSABLE_ENTITY);
    let outsider = gh
        .post(
            OUTSIDER,
            "/repos/acme/widgets/labels",
            json!({"name": "mine"}),
        )
        .await;
    assert_eq!(outsider.status, StatusCode::FORBIDDEN);
    assert_eq!(
        outsider.body["message"],
        "Must have push access to repository"
    );
    let anonymous = gh
        .send(
            None,
            Method::POST,
            "/repos/acme/widgets/labels",
            Some(json!({"name": "anon"})),
            &[],
        )
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        gh.get(BOT, "/repos/acme/nope/labels").await.status,
        StatusCode::NOT_FOUND
    );

    let after = gh.get(BOT, "/repos/acme/widgets/labels?per_page=2").await;
    assert_eq!(names(&after.body), ["bug", "enhancement"]);
    assert!(after.header("link").unwrap().contains("page=2"));
    gh.assert_contract();
}

#[tokio::test]
async fn issue_labels_add_list_and_remove() {
    let gh = TestGitHub::start().await;
    let issue = create_issue(&gh, OUTSIDER, json!({"title": "label me"})).await;
    advance(&gh, 10).await;
    let url = format!("{ISSUES}/1/labels");
    let added = gh
        .post(BOT, &url, json!({"labels": ["bug", "crew: ready"]}))
        .await;
    assert_eq!(added.status, StatusCode::OK);
    assert_eq!(names(&added.body), ["bug", "crew: ready"]);
    // A bare array works too, names match case-insensitively, and all labels come back.
    let bare = gh.post(BOT, &url, json!(["CREW", "Bug"])).await;
    assert_eq!(bare.status, StatusCode::OK);
    assert_eq!(names(&bare.body), ["bug", "crew: ready", "crew"]);
    let objects = gh
        .post(BOT, &url, json!({"labels": [{"name": "enhancement"}]}))
        .await;
    assert_eq!(
        names(&objects.body),
        ["bug", "crew: ready", "crew", "enhancement"]
    );
    let repo_labels = names(&gh.get(BOT, "/repos/acme/widgets/labels").await.body);
    assert!(
        repo_labels.contains(&"crew: ready".to_string()),
        "unknown label was created"
    );

    let listed = gh.get(OUTSIDER, &url).await;
    assert_eq!(listed.status, StatusCode::OK);
    assert_eq!(
        names(&listed.body),
        ["bug", "crew: ready", "crew", "enhancement"]
    );
    let updated = gh.get(BOT, &format!("{ISSUES}/1")).await.body;
    assert!(
        time(&updated["updated_at"]) > time(&issue["updated_at"]),
        "labelling bumps updated_at"
    );

    let removed = gh.delete(BOT, &format!("{url}/crew%3A%20ready")).await;
    assert_eq!(removed.status, StatusCode::OK);
    assert_eq!(names(&removed.body), ["bug", "crew", "enhancement"]);
    let gone = gh.delete(BOT, &format!("{url}/crew%3A%20ready")).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert_eq!(gone.body["message"], "Label does not exist");

    assert_eq!(
        gh.post(OUTSIDER, &url, json!({"labels": ["bug"]}))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        gh.delete(OUTSIDER, &format!("{url}/bug")).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        gh.post(BOT, &url, json!({"labels": []})).await.status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        gh.post(
            BOT,
            &format!("{ISSUES}/5/labels"),
            json!({"labels": ["bug"]})
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        gh.get(BOT, &format!("{ISSUES}/5/labels")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        gh.delete(BOT, &format!("{ISSUES}/5/labels/bug"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    gh.assert_contract();
}

#[tokio::test]
async fn assignees_add_and_remove() {
    let gh = TestGitHub::start().await;
    create_issue(&gh, OUTSIDER, json!({"title": "who does this"})).await;
    let url = format!("{ISSUES}/1/assignees");
    let added = gh
        .post(
            MAINTAINER,
            &url,
            json!({"assignees": ["crew-bot", "outsider", "nobody", "Maintainer"]}),
        )
        .await;
    assert_eq!(added.status, StatusCode::CREATED);
    assert_eq!(
        logins(&added.body["assignees"]),
        ["crew-bot", "maintainer"],
        "others are silently ignored"
    );
    assert_eq!(added.body["assignee"]["login"], "crew-bot");
    let again = gh.post(BOT, &url, json!({"assignees": ["crew-bot"]})).await;
    assert_eq!(logins(&again.body["assignees"]), ["crew-bot", "maintainer"]);

    // Without triage access the request is ignored, not refused.
    let ignored = gh
        .post(OUTSIDER, &url, json!({"assignees": ["outsider"]}))
        .await;
    assert_eq!(ignored.status, StatusCode::CREATED);
    assert_eq!(
        logins(&ignored.body["assignees"]),
        ["crew-bot", "maintainer"]
    );
    let ignored = gh
        .send(
            Some(OUTSIDER),
            Method::DELETE,
            &url,
            Some(json!({"assignees": ["crew-bot"]})),
            &[],
        )
        .await;
    assert_eq!(ignored.status, StatusCode::OK);
    assert_eq!(
        logins(&ignored.body["assignees"]),
        ["crew-bot", "maintainer"]
    );

    let removed = gh
        .send(
            Some(BOT),
            Method::DELETE,
            &url,
            Some(json!({"assignees": ["CREW-BOT", "nobody"]})),
            &[],
        )
        .await;
    assert_eq!(removed.status, StatusCode::OK);
    assert_eq!(logins(&removed.body["assignees"]), ["maintainer"]);
    let filtered = gh.get(BOT, &format!("{ISSUES}?assignee=maintainer")).await;
    assert_eq!(numbers(&filtered.body), [1]);

    let unknown = gh
        .post(
            BOT,
            &format!("{ISSUES}/4/assignees"),
            json!({"assignees": ["crew-bot"]}),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    gh.assert_contract();
}

#[tokio::test]
async fn octocrab_typed_apis_deserialise_our_answers() {
    let gh = TestGitHub::start().await;
    let bot = gh.client(Some(BOT));
    let outsider = gh.client(Some(OUTSIDER));
    let issues = bot.issues("acme", "widgets");

    let issue = issues
        .create("Typed")
        .body("made by octocrab")
        .labels(vec!["bug".to_string()])
        .assignees(vec!["crew-bot".to_string()])
        .send()
        .await
        .expect("create issue");
    assert_eq!(issue.number, 1);
    assert_eq!(issue.labels[0].name, "bug");
    assert_eq!(issue.assignees[0].login, "crew-bot");

    let first = issues
        .create_comment(1, "hello")
        .await
        .expect("create comment");
    let second = outsider
        .issues("acme", "widgets")
        .create_comment(1, "<!-- crew:claim -->")
        .await
        .expect("outsider comments");
    assert_eq!(
        second.author_association,
        octocrab::models::AuthorAssociation::None
    );
    assert_eq!(
        first.author_association,
        octocrab::models::AuthorAssociation::Collaborator
    );

    let listed = issues
        .list_comments(1)
        .per_page(50)
        .send()
        .await
        .expect("list comments");
    let bodies: Vec<_> = listed
        .items
        .iter()
        .map(|c| c.body.clone().unwrap())
        .collect();
    assert_eq!(bodies, ["hello", "<!-- crew:claim -->"]);

    // octocrab's update_comment sends POST, which GitHub takes for PATCH.
    let updated = issues
        .update_comment(first.id, "hello again")
        .await
        .expect("update comment");
    assert_eq!(updated.body.as_deref(), Some("hello again"));
    assert_eq!(updated.id, first.id);
    let refused = outsider
        .issues("acme", "widgets")
        .update_comment(first.id, "hijacked")
        .await
        .expect_err("outsiders cannot edit the bot's comment");
    match refused {
        octocrab::Error::GitHub { source, .. } => {
            assert_eq!(source.status_code, StatusCode::FORBIDDEN)
        }
        other => panic!("expected GitHub's 403, got {other:?}"),
    }

    issues
        .delete_comment(second.id)
        .await
        .expect("delete comment");
    let gone = issues
        .delete_comment(second.id)
        .await
        .expect_err("already gone");
    match gone {
        octocrab::Error::GitHub { source, .. } => {
            assert_eq!(source.status_code, StatusCode::NOT_FOUND)
        }
        other => panic!("expected GitHub's 404, got {other:?}"),
    }
    let repo_wide = issues
        .list_issue_comments()
        .send()
        .await
        .expect("repo-wide comments");
    assert_eq!(repo_wide.items.len(), 1);

    let fetched = issues.get(1).await.expect("get issue");
    assert_eq!(fetched.comments, 1);
    let closed = issues
        .update(1)
        .state(octocrab::models::IssueState::Closed)
        .send()
        .await
        .expect("close");
    assert_eq!(closed.state, octocrab::models::IssueState::Closed);
    assert!(closed.closed_at.is_some());

    let labels = issues
        .add_labels(1, &["crew".to_string()])
        .await
        .expect("add labels");
    assert_eq!(labels.len(), 2);
    let labels = issues.remove_label(1, "bug").await.expect("remove label");
    assert_eq!(labels.len(), 1);
    let created = issues
        .create_label("crew: done", "0e8a16", "finished")
        .await
        .expect("create label");
    assert_eq!(created.name, "crew: done");
    let repo_labels = issues
        .list_labels_for_repo()
        .send()
        .await
        .expect("repo labels");
    assert_eq!(repo_labels.items.len(), 4);
    let assigned = issues
        .add_assignees(1, &["maintainer"])
        .await
        .expect("assign");
    assert_eq!(assigned.assignees.len(), 2);
    let unassigned = issues
        .remove_assignees(1, &["crew-bot"])
        .await
        .expect("unassign");
    assert_eq!(unassigned.assignees.len(), 1);
    gh.assert_contract();
}
