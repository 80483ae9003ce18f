//! `POST /graphql`: GitHub's sample operations verbatim, refs for leases, pagination rules,
//! cost and rate limiting, permissions, loud failures, and the schema contract.

use crate::support::*;
use github_emulator::World;
use github_emulator::contract::{GraphqlContract, descriptions_or_skip};
use github_emulator::world::{WorldComment, WorldIssue};
use http::{Method, StatusCode};
use serde_json::{Value, json};

// The five operations of shared/github/graphql-sample-operations.graphql, verbatim (checked
// against the file when it is present).
const PROJECT_FIELDS: &str = r#"query ProjectFields($owner: String!, $number: Int!) {
  organization(login: $owner) {
    projectV2(number: $number) {
      id
      title
      field(name: "Status") {
        __typename
        ... on ProjectV2SingleSelectField { id name dataType options { id name color } }
      }
      fields(first: 50) {
        nodes {
          __typename
          ... on ProjectV2FieldCommon { id name dataType }
          ... on ProjectV2SingleSelectField { options { id name } }
        }
        pageInfo { hasNextPage endCursor }
      }
    }
  }
}"#;

const ISSUE_PROJECT_STATUS: &str = r#"query IssueProjectStatus($owner: String!, $repo: String!, $number: Int!) {
  repository(owner: $owner, name: $repo) {
    issue(number: $number) {
      id
      number
      state
      projectItems(first: 20, includeArchived: false) {
        nodes {
          id
          isArchived
          project { id number title }
          fieldValueByName(name: "Status") {
            __typename
            ... on ProjectV2ItemFieldSingleSelectValue { name optionId field { ... on ProjectV2FieldCommon { id name } } }
          }
        }
      }
    }
  }
  rateLimit { cost limit remaining used resetAt nodeCount }
}"#;

const REPO_ISSUES: &str = r#"query RepoIssues($owner: String!, $repo: String!, $after: String, $since: DateTime) {
  repository(owner: $owner, name: $repo) {
    issues(first: 100, after: $after, states: [OPEN], orderBy: {field: UPDATED_AT, direction: DESC}, filterBy: {since: $since}) {
      totalCount
      pageInfo { hasNextPage endCursor }
      nodes {
        id number title state updatedAt
        labels(first: 20) { nodes { name } }
        comments(last: 10) { totalCount nodes { id databaseId body authorAssociation createdAt updatedAt author { login } } }
      }
    }
  }
}"#;

const ADD_TO_PROJECT: &str = r#"mutation AddToProject($projectId: ID!, $contentId: ID!) {
  addProjectV2ItemById(input: {projectId: $projectId, contentId: $contentId}) {
    item { id }
  }
}"#;

const SET_STATUS: &str = r#"mutation SetStatus($projectId: ID!, $itemId: ID!, $fieldId: ID!, $optionId: String!) {
  updateProjectV2ItemFieldValue(input: {projectId: $projectId, itemId: $itemId, fieldId: $fieldId, value: {singleSelectOptionId: $optionId}}) {
    projectV2Item { id }
  }
}"#;

const PROJECT_ITEMS: &str = r#"query ProjectItems($owner: String!, $number: Int!, $after: String) {
  organization(login: $owner) {
    projectV2(number: $number) {
      items(first: 1, after: $after) {
        totalCount
        pageInfo { hasNextPage endCursor }
        nodes {
          id isArchived type
          content { __typename ... on Issue { number title state repository { nameWithOwner } } }
          status: fieldValueByName(name: "Status") {
            ... on ProjectV2ItemFieldSingleSelectValue { name optionId }
          }
          title: fieldValueByName(name: "Title") {
            ... on ProjectV2ItemFieldTextValue { text }
          }
          project { number }
        }
      }
    }
  }
}"#;

const LEASES: &str = r#"query Leases($owner: String!, $repo: String!, $after: String) {
  repository(owner: $owner, name: $repo) {
    refs(refPrefix: "refs/crew/leases/", first: 2, after: $after) {
      totalCount
      pageInfo { hasNextPage endCursor }
      nodes { id name prefix target { __typename oid ... on Commit { oid message committedDate } } }
    }
  }
}"#;

const VIEWER_AND_ISSUE: &str = r#"query ViewerAndIssue($number: Int!) {
  viewer { login }
  repository(owner: "acme", name: "widgets") {
    id databaseId name nameWithOwner
    issue(number: $number) {
      databaseId title body state stateReason url createdAt updatedAt closedAt
      author { login } authorAssociation
      comments(first: 1) { totalCount pageInfo { hasNextPage endCursor hasPreviousPage startCursor } edges { cursor node { id url author { login } } } }
    }
  }
}"#;

const BIG: &str = r#"query Big {
  repository(owner: "acme", name: "widgets") {
    issues(first: 100) {
      nodes {
        labels(first: 100) { nodes { name } }
        comments(first: 50) { nodes { body } }
      }
    }
  }
  rateLimit { cost nodeCount }
}"#;

const TOO_MANY: &str =
    r#"{ repository(owner: "acme", name: "widgets") { issues(first: 101) { totalCount } } }"#;
const UNBOUNDED: &str =
    r#"{ repository(owner: "acme", name: "widgets") { issues(states: [OPEN]) { totalCount } } }"#;
const MISSING_REPO: &str = r#"{ viewer { login } repository(owner: "acme", name: "nope") { id } }"#;
const DRY_RUN: &str = r#"{ rateLimit(dryRun: true) { cost remaining } }"#;

const ISSUE_TWO: &str =
    r#"query { repository(owner: "acme", name: "widgets") { issue(number: 2) { id } } }"#;
const FIRST_FROM_VARIABLE: &str = r#"query($n: Int) { repository(owner: "acme", name: "widgets") { issues(first: $n) { totalCount } } }"#;
const FIRST_ZERO: &str = r#"{ repository(owner: "acme", name: "widgets") { issues(first: 0) { totalCount nodes { number } } } }"#;
const VIEWER: &str = r#"{ viewer { login } }"#;
/// Valid on GitHub, not served by the emulator.
const UNSERVED_FIELD: &str = r#"{ repository(owner: "acme", name: "widgets") { stargazerCount } }"#;
// Invalid everywhere.
const UNKNOWN_FIELD: &str = r#"{ repository(owner: "acme", name: "widgets") { foo } }"#;
const UNKNOWN_ARGUMENT: &str = r#"{ repository(owner: "acme", name: "widgets") { issues(first: 1, bogus: 2) { totalCount } } }"#;
const SYNTAX_ERROR: &str = r#"{ repository(owner: "#;

/// Every valid document the tests send, for the contract check.
const DOCUMENTS: &[&str] = &[
    PROJECT_FIELDS,
    ISSUE_PROJECT_STATUS,
    REPO_ISSUES,
    ADD_TO_PROJECT,
    SET_STATUS,
    PROJECT_ITEMS,
    LEASES,
    VIEWER_AND_ISSUE,
    BIG,
    TOO_MANY,
    UNBOUNDED,
    MISSING_REPO,
    DRY_RUN,
    ISSUE_TWO,
    FIRST_FROM_VARIABLE,
    FIRST_ZERO,
    VIEWER,
    UNSERVED_FIELD,
];

fn world() -> World {
    let mut world = World::default();
    let issue = |title: &str, labels: &[&str], comments: Vec<WorldComment>| WorldIssue {
        title: title.to_string(),
        body: Some(format!("{title}, in detail")),
        author: Some("maintainer".to_string()),
        labels: labels.iter().map(|l| l.to_string()).collect(),
        assignees: Vec::new(),
        state: "open".to_string(),
        comments,
    };
    let comment = |author: &str, body: &str| WorldComment {
        author: author.to_string(),
        body: body.to_string(),
    };
    world.repos[0].issues = vec![
        issue(
            "Widgets wobble",
            &["bug", "crew"],
            vec![
                comment("maintainer", "seen it"),
                comment("crew-bot", "<!-- crew:v1 {} -->"),
            ],
        ),
        issue("Add sprockets", &["enhancement"], Vec::new()),
        WorldIssue {
            state: "closed".to_string(),
            ..issue("Old news", &[], Vec::new())
        },
    ];
    world
}

async fn start() -> TestGitHub {
    TestGitHub::start_with(world()).await
}

/// GraphQL through octocrab, as crew sends it; panics on a non-2xx answer.
async fn gql(gh: &TestGitHub, token: &str, query: &str, variables: Value) -> Value {
    gh.client(Some(token))
        .graphql(&json!({"query": query, "variables": variables}))
        .await
        .unwrap_or_else(|e| panic!("graphql failed: {e:?}"))
}

/// GraphQL with the raw status and headers.
async fn gql_raw(gh: &TestGitHub, token: Option<&str>, query: &str, variables: Value) -> Answer {
    gh.send(
        token,
        Method::POST,
        "/graphql",
        Some(json!({"query": query, "variables": variables})),
        &[],
    )
    .await
}

fn no_errors(answer: &Value) {
    assert!(
        answer.get("errors").is_none(),
        "unexpected errors: {answer:#}"
    );
}

#[tokio::test]
async fn sample_operations_run_verbatim_and_agree() {
    if let Some(dir) = descriptions_or_skip("sample operations text") {
        let samples =
            std::fs::read_to_string(dir.join("graphql-sample-operations.graphql")).unwrap();
        for operation in [
            PROJECT_FIELDS,
            ISSUE_PROJECT_STATUS,
            REPO_ISSUES,
            ADD_TO_PROJECT,
            SET_STATUS,
        ] {
            assert!(samples.contains(operation), "not verbatim:\n{operation}");
        }
    }
    let gh = start().await;
    let vars = json!({"owner": "acme", "number": 1});
    let fields = gql(&gh, BOT, PROJECT_FIELDS, vars).await;
    no_errors(&fields);
    let project = &fields["data"]["organization"]["projectV2"];
    assert_eq!(project["title"], "Widgets");
    let project_id = project["id"].as_str().unwrap().to_string();
    assert!(project_id.starts_with("PVT_"), "{project_id}");
    let status = &project["field"];
    assert_eq!(status["__typename"], "ProjectV2SingleSelectField");
    assert_eq!(status["name"], "Status");
    assert_eq!(status["dataType"], "SINGLE_SELECT");
    let names: Vec<&str> = status["options"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["Todo", "In Progress", "In Review", "Blocked", "Done"]
    );
    assert_eq!(status["options"][0]["color"], "GREEN");
    let field_id = status["id"].as_str().unwrap().to_string();
    let in_progress = status["options"][1]["id"].as_str().unwrap().to_string();
    let all_fields = fields["data"]["organization"]["projectV2"]["fields"]["nodes"]
        .as_array()
        .unwrap();
    assert_eq!(all_fields.len(), 2);
    assert_eq!(all_fields[0]["__typename"], "ProjectV2Field");
    assert_eq!(all_fields[0]["dataType"], "TITLE");
    assert_eq!(all_fields[1]["id"], field_id.as_str());
    assert_eq!(all_fields[1]["options"][4]["name"], "Done");
    assert_eq!(
        fields["data"]["organization"]["projectV2"]["fields"]["pageInfo"]["hasNextPage"],
        false
    );

    // The issue, not yet on the board.
    let issue_vars = json!({"owner": "acme", "repo": "widgets", "number": 1});
    let before = gql(&gh, BOT, ISSUE_PROJECT_STATUS, issue_vars.clone()).await;
    no_errors(&before);
    let issue = &before["data"]["repository"]["issue"];
    assert_eq!(issue["number"], 1);
    assert_eq!(issue["state"], "OPEN");
    assert_eq!(issue["projectItems"]["nodes"], json!([]));
    let issue_id = issue["id"].as_str().unwrap().to_string();
    let rate = &before["data"]["rateLimit"];
    assert_eq!(rate["cost"], 1);
    assert_eq!(rate["limit"], 5000);
    assert_eq!(rate["nodeCount"], 20);
    assert_eq!(
        rate["used"], 2,
        "ProjectFields and this query cost one point each"
    );
    assert_eq!(rate["remaining"], 4998);
    assert!(rate["resetAt"].as_str().unwrap().ends_with('Z'));

    // Add it (twice: the second add returns the same item) and set its Status.
    let add_vars = json!({"projectId": project_id, "contentId": issue_id});
    let added = gql(&gh, BOT, ADD_TO_PROJECT, add_vars.clone()).await;
    no_errors(&added);
    let item_id = added["data"]["addProjectV2ItemById"]["item"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(item_id.starts_with("PVTI_"), "{item_id}");
    let again = gql(&gh, BOT, ADD_TO_PROJECT, add_vars).await;
    assert_eq!(
        again["data"]["addProjectV2ItemById"]["item"]["id"],
        item_id.as_str()
    );
    let set = gql(
        &gh,
        BOT,
        SET_STATUS,
        json!({"projectId": project_id, "itemId": item_id, "fieldId": field_id, "optionId": in_progress}),
    )
    .await;
    no_errors(&set);
    assert_eq!(
        set["data"]["updateProjectV2ItemFieldValue"]["projectV2Item"]["id"],
        item_id.as_str()
    );

    // Read it back through the issue...
    let after = gql(&gh, BOT, ISSUE_PROJECT_STATUS, issue_vars).await;
    no_errors(&after);
    let items = after["data"]["repository"]["issue"]["projectItems"]["nodes"]
        .as_array()
        .unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], item_id.as_str());
    assert_eq!(items[0]["isArchived"], false);
    assert_eq!(
        items[0]["project"],
        json!({"id": project_id, "number": 1, "title": "Widgets"})
    );
    let value = &items[0]["fieldValueByName"];
    assert_eq!(value["__typename"], "ProjectV2ItemFieldSingleSelectValue");
    assert_eq!(value["name"], "In Progress");
    assert_eq!(value["optionId"], in_progress.as_str());
    assert_eq!(value["field"], json!({"id": field_id, "name": "Status"}));

    // ...and through the board's items, one page at a time.
    let second_id = gql(&gh, BOT, ISSUE_TWO, json!({})).await["data"]["repository"]["issue"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    gql(
        &gh,
        MAINTAINER,
        ADD_TO_PROJECT,
        json!({"projectId": project_id, "contentId": second_id}),
    )
    .await;
    let page = gql(
        &gh,
        BOT,
        PROJECT_ITEMS,
        json!({"owner": "acme", "number": 1}),
    )
    .await;
    no_errors(&page);
    let items = &page["data"]["organization"]["projectV2"]["items"];
    assert_eq!(items["totalCount"], 2);
    assert_eq!(items["pageInfo"]["hasNextPage"], true);
    let node = &items["nodes"][0];
    assert_eq!(node["type"], "ISSUE");
    assert_eq!(
        node["content"],
        json!({"__typename": "Issue", "number": 1, "title": "Widgets wobble", "state": "OPEN", "repository": {"nameWithOwner": "acme/widgets"}})
    );
    assert_eq!(
        node["status"],
        json!({"name": "In Progress", "optionId": in_progress})
    );
    assert_eq!(node["title"], json!({"text": "Widgets wobble"}));
    let cursor = items["pageInfo"]["endCursor"].clone();
    let next = gql(
        &gh,
        BOT,
        PROJECT_ITEMS,
        json!({"owner": "acme", "number": 1, "after": cursor}),
    )
    .await;
    let items = &next["data"]["organization"]["projectV2"]["items"];
    assert_eq!(items["nodes"][0]["content"]["number"], 2);
    assert_eq!(
        items["nodes"][0]["status"],
        Value::Null,
        "no Status set yet"
    );
    assert_eq!(items["pageInfo"]["hasNextPage"], false);
}

#[tokio::test]
async fn repo_issues_with_labels_and_comments() {
    let gh = start().await;
    let answer = gql(
        &gh,
        BOT,
        REPO_ISSUES,
        json!({"owner": "acme", "repo": "widgets"}),
    )
    .await;
    no_errors(&answer);
    let issues = &answer["data"]["repository"]["issues"];
    assert_eq!(issues["totalCount"], 2, "closed issues are filtered out");
    assert_eq!(issues["pageInfo"]["hasNextPage"], false);
    let wobble = issues["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["number"] == 1)
        .expect("issue 1");
    assert_eq!(
        wobble["labels"]["nodes"],
        json!([{"name": "bug"}, {"name": "crew"}])
    );
    let comments = &wobble["comments"];
    assert_eq!(comments["totalCount"], 2);
    assert_eq!(comments["nodes"][0]["author"]["login"], "maintainer");
    assert_eq!(comments["nodes"][0]["authorAssociation"], "MEMBER");
    assert_eq!(comments["nodes"][1]["body"], "<!-- crew:v1 {} -->");
    assert_eq!(comments["nodes"][1]["authorAssociation"], "COLLABORATOR");
    assert!(comments["nodes"][1]["databaseId"].as_i64().unwrap() > 0);
    assert!(
        comments["nodes"][1]["id"]
            .as_str()
            .unwrap()
            .starts_with("IC_")
    );

    // `since` filters on updatedAt.
    let future = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let later = gql(
        &gh,
        BOT,
        REPO_ISSUES,
        json!({"owner": "acme", "repo": "widgets", "since": future}),
    )
    .await;
    assert_eq!(later["data"]["repository"]["issues"]["totalCount"], 0);

    // The single-issue view.
    let one = gql(&gh, OUTSIDER, VIEWER_AND_ISSUE, json!({"number": 1})).await;
    no_errors(&one);
    assert_eq!(one["data"]["viewer"]["login"], "outsider");
    let repo = &one["data"]["repository"];
    assert_eq!(repo["nameWithOwner"], "acme/widgets");
    assert!(repo["id"].as_str().unwrap().starts_with("R_"));
    let issue = &repo["issue"];
    assert_eq!(issue["body"], "Widgets wobble, in detail");
    assert_eq!(issue["author"]["login"], "maintainer");
    assert_eq!(issue["authorAssociation"], "MEMBER");
    assert_eq!(issue["stateReason"], Value::Null);
    assert_eq!(issue["closedAt"], Value::Null);
    assert!(
        issue["url"]
            .as_str()
            .unwrap()
            .ends_with("/acme/widgets/issues/1")
    );
    let comments = &issue["comments"];
    assert_eq!(comments["totalCount"], 2);
    assert_eq!(comments["pageInfo"]["hasNextPage"], true);
    assert_eq!(comments["pageInfo"]["hasPreviousPage"], false);
    assert_eq!(
        comments["edges"][0]["cursor"],
        comments["pageInfo"]["startCursor"]
    );
    assert!(
        comments["edges"][0]["node"]["url"]
            .as_str()
            .unwrap()
            .contains("#issuecomment-")
    );
}

/// Writes a lease the way crew does: a commit whose message holds the lease JSON, on a ref.
fn write_lease(git_dir: &std::path::Path, name: &str, message: &str) {
    let repo = git2::Repository::open_bare(git_dir).unwrap();
    let head = repo
        .find_reference("refs/heads/main")
        .unwrap()
        .peel_to_commit()
        .unwrap();
    let signature = git2::Signature::now("crew-bot", "crew-bot@example.invalid").unwrap();
    let tree = head.tree().unwrap();
    let oid = repo
        .commit(None, &signature, &signature, message, &tree, &[&head])
        .unwrap();
    repo.reference(&format!("refs/crew/leases/{name}"), oid, true, "lease")
        .unwrap();
}

#[tokio::test]
async fn refs_read_leases_from_the_bare_repository() {
    let gh = start().await;
    let git_dir = gh
        .emulator
        .with_state(|s| s.repo("acme", "widgets").unwrap().git_dir.clone());
    for (name, worker) in [("1", "w-a"), ("2", "w-b"), ("7", "w-c")] {
        write_lease(
            &git_dir,
            name,
            &format!("{{\"issue\":{name},\"worker\":\"{worker}\"}}"),
        );
    }
    let vars = json!({"owner": "acme", "repo": "widgets"});
    let first = gql(&gh, BOT, LEASES, vars).await;
    no_errors(&first);
    let refs = &first["data"]["repository"]["refs"];
    assert_eq!(refs["totalCount"], 3, "main is not under the prefix");
    assert_eq!(refs["pageInfo"]["hasNextPage"], true);
    let node = &refs["nodes"][0];
    assert_eq!(node["name"], "1");
    assert_eq!(node["prefix"], "refs/crew/leases/");
    assert_eq!(node["target"]["__typename"], "Commit");
    assert_eq!(
        node["target"]["message"],
        "{\"issue\":1,\"worker\":\"w-a\"}"
    );
    assert_eq!(node["target"]["oid"].as_str().unwrap().len(), 40);
    assert!(
        node["target"]["committedDate"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    let cursor = refs["pageInfo"]["endCursor"].clone();

    // A lease released between pages does not break the next page.
    git2::Repository::open_bare(&git_dir)
        .unwrap()
        .find_reference("refs/crew/leases/2")
        .unwrap()
        .delete()
        .unwrap();
    let next = gql(
        &gh,
        BOT,
        LEASES,
        json!({"owner": "acme", "repo": "widgets", "after": cursor}),
    )
    .await;
    no_errors(&next);
    let refs = &next["data"]["repository"]["refs"];
    assert_eq!(refs["totalCount"], 2);
    assert_eq!(refs["nodes"].as_array().unwrap().len(), 1);
    assert_eq!(refs["nodes"][0]["name"], "7");
    assert_eq!(
        refs["nodes"][0]["target"]["message"],
        "{\"issue\":7,\"worker\":\"w-c\"}"
    );
    assert_eq!(refs["pageInfo"]["hasNextPage"], false);
}

#[tokio::test]
async fn connections_need_first_or_last_up_to_one_hundred() {
    let gh = start().await;
    let too_many = gql_raw(&gh, Some(BOT), TOO_MANY, json!({})).await;
    assert_eq!(
        too_many.status,
        StatusCode::OK,
        "GitHub answers 200 with errors"
    );
    assert!(too_many.body.get("data").is_none(), "{:#}", too_many.body);
    let error = &too_many.body["errors"][0];
    assert_eq!(error["type"], "EXCESSIVE_PAGINATION");
    assert_eq!(
        error["message"],
        "Requesting 101 records on the `issues` connection exceeds the `first` limit of 100 records."
    );
    assert!(error["locations"][0]["line"].as_u64().is_some());

    let unbounded = gql_raw(&gh, Some(BOT), UNBOUNDED, json!({})).await;
    assert_eq!(unbounded.status, StatusCode::OK);
    assert_eq!(
        unbounded.body["errors"][0]["type"],
        "MISSING_PAGINATION_BOUNDARIES"
    );
    assert_eq!(
        unbounded.body["errors"][0]["message"],
        "You must provide a `first` or `last` value to properly paginate the `issues` connection."
    );
    // A variable counts like a literal.
    let via_variable = gql(&gh, BOT, FIRST_FROM_VARIABLE, json!({"n": 500})).await;
    assert_eq!(via_variable["errors"][0]["type"], "EXCESSIVE_PAGINATION");
    // Documented bounds are 1-100: zero is refused too.
    let zero = gql(&gh, BOT, FIRST_ZERO, json!({})).await;
    assert_eq!(zero["errors"][0]["type"], "MISSING_PAGINATION_BOUNDARIES");
    assert!(
        zero["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("between 1 and 100"),
        "{zero}"
    );

    let stats = gh.control(Method::GET, "/_emulator/stats", None).await.body;
    assert_eq!(
        stats["by_route"]["POST /graphql"]["rate_points"], 0,
        "refused queries cost nothing"
    );
}

#[tokio::test]
async fn cost_is_charged_and_counted_as_github_computes_it() {
    let gh = start().await;
    // issues: 1 request; labels and comments: 100 requests each → 201 / 100 → 2 points.
    let big = gql(&gh, BOT, BIG, json!({})).await;
    no_errors(&big);
    assert_eq!(big["data"]["rateLimit"]["cost"], 2);
    assert_eq!(
        big["data"]["rateLimit"]["nodeCount"],
        100 + 100 * 100 + 100 * 50
    );
    let repo_issues = gql(
        &gh,
        BOT,
        REPO_ISSUES,
        json!({"owner": "acme", "repo": "widgets"}),
    )
    .await;
    no_errors(&repo_issues);
    // Four connections nested three deep: 1 + 100 × (labels) + 100 × (comments) = 201 → 2.
    let dry = gql(&gh, BOT, DRY_RUN, json!({})).await;
    assert_eq!(
        dry["data"]["rateLimit"],
        json!({"cost": 1, "remaining": 4996}),
        "a dry run is free"
    );

    let stats = gh.control(Method::GET, "/_emulator/stats", None).await.body;
    let route = &stats["by_route"]["POST /graphql"];
    assert_eq!(route["requests"], 3);
    assert_eq!(route["rate_points"], 4);
    let headers = gql_raw(&gh, Some(BOT), VIEWER, json!({})).await;
    assert_eq!(headers.header("x-ratelimit-resource"), Some("graphql"));
    assert_eq!(headers.header("x-ratelimit-used"), Some("5"));
    assert_eq!(headers.header("x-ratelimit-remaining"), Some("4995"));
}

#[tokio::test]
async fn exhausted_window_is_rate_limited_with_200() {
    let gh = start().await;
    let set = gh
        .control(
            Method::POST,
            "/_emulator/rate_limit",
            Some(json!({"login": "crew-bot", "resource": "graphql", "remaining": 0})),
        )
        .await;
    assert_eq!(set.status, StatusCode::OK);
    let user_id = gh.emulator.with_state(|s| s.user("crew-bot").unwrap().id);
    let limited = gql_raw(
        &gh,
        Some(BOT),
        ISSUE_PROJECT_STATUS,
        json!({"owner": "acme", "repo": "widgets", "number": 1}),
    )
    .await;
    assert_eq!(limited.status, StatusCode::OK);
    assert_eq!(
        limited.body,
        json!({"errors": [{"type": "RATE_LIMITED", "message": format!("API rate limit exceeded for user ID {user_id}.")}]})
    );
    assert_eq!(limited.header("x-ratelimit-remaining"), Some("0"));
    assert_eq!(limited.header("x-ratelimit-resource"), Some("graphql"));
    // The core window and other users are untouched.
    assert_eq!(gh.get(BOT, "/user").await.status, StatusCode::OK);
    no_errors(&gql(&gh, MAINTAINER, VIEWER, json!({})).await);
}

#[tokio::test]
async fn unknown_fields_and_bad_documents_are_loud_400s() {
    let gh = start().await;
    let unknown = gql_raw(&gh, Some(BOT), UNKNOWN_FIELD, json!({})).await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        unknown.body["errors"][0]["message"],
        "Field 'foo' doesn't exist on type 'Repository'"
    );
    assert_eq!(
        unknown.body["errors"][0]["extensions"]["code"],
        "undefinedField"
    );
    assert!(unknown.body["message"].as_str().unwrap().contains("'foo'"));

    // A field GitHub has but the emulator does not serve is just as loud.
    let unserved = gql_raw(&gh, Some(BOT), UNSERVED_FIELD, json!({})).await;
    assert_eq!(unserved.status, StatusCode::BAD_REQUEST);
    assert!(
        unserved.body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("stargazerCount")
    );

    let argument = gql_raw(&gh, Some(BOT), UNKNOWN_ARGUMENT, json!({})).await;
    assert_eq!(argument.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        argument.body["errors"][0]["message"],
        "Field 'issues' doesn't accept argument 'bogus'"
    );

    let syntax = gql_raw(&gh, Some(BOT), SYNTAX_ERROR, json!({})).await;
    assert_eq!(syntax.status, StatusCode::BAD_REQUEST);
    assert!(
        syntax.body["errors"][0]["locations"].is_array(),
        "{:#}",
        syntax.body
    );

    let not_json = gh
        .send(Some(BOT), Method::POST, "/graphql", None, &[])
        .await;
    assert_eq!(not_json.status, StatusCode::BAD_REQUEST);

    let anonymous = gql_raw(&gh, None, VIEWER, json!({})).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);

    let stats = gh.control(Method::GET, "/_emulator/stats", None).await.body;
    assert_eq!(stats["rate_points"], 0, "nothing was executed");
}

#[tokio::test]
async fn not_found_and_forbidden_are_typed_errors_with_partial_data() {
    let gh = start().await;
    let missing = gql_raw(&gh, Some(BOT), MISSING_REPO, json!({})).await;
    assert_eq!(missing.status, StatusCode::OK);
    assert_eq!(
        missing.body["data"],
        json!({"viewer": {"login": "crew-bot"}, "repository": null})
    );
    let error = &missing.body["errors"][0];
    assert_eq!(error["type"], "NOT_FOUND");
    assert_eq!(error["path"], json!(["repository"]));
    assert_eq!(
        error["message"],
        "Could not resolve to a Repository with the name 'acme/nope'."
    );

    let ids = gql(
        &gh,
        BOT,
        PROJECT_FIELDS,
        json!({"owner": "acme", "number": 1}),
    )
    .await;
    let project_id = ids["data"]["organization"]["projectV2"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let issue_id = gql(
        &gh,
        BOT,
        ISSUE_PROJECT_STATUS,
        json!({"owner": "acme", "repo": "widgets", "number": 1}),
    )
    .await["data"]["repository"]["issue"]["id"]
        .as_str()
        .unwrap()
        .to_string();

    let outsider = gql(
        &gh,
        OUTSIDER,
        ADD_TO_PROJECT,
        json!({"projectId": project_id, "contentId": issue_id}),
    )
    .await;
    assert_eq!(outsider["data"]["addProjectV2ItemById"], Value::Null);
    assert_eq!(outsider["errors"][0]["type"], "FORBIDDEN");
    assert_eq!(
        outsider["errors"][0]["path"],
        json!(["addProjectV2ItemById"])
    );
    let on_board = gh.emulator.with_state(|s| s.data.projects[0].items.len());
    assert_eq!(on_board, 0, "nothing was added");

    let unknown = gql(
        &gh,
        BOT,
        ADD_TO_PROJECT,
        json!({"projectId": project_id, "contentId": "I_nope"}),
    )
    .await;
    assert_eq!(unknown["errors"][0]["type"], "NOT_FOUND");
    assert_eq!(
        unknown["errors"][0]["message"],
        "Could not resolve to a node with the global id of 'I_nope'"
    );

    let added = gql(
        &gh,
        BOT,
        ADD_TO_PROJECT,
        json!({"projectId": project_id, "contentId": issue_id}),
    )
    .await;
    let item_id = added["data"]["addProjectV2ItemById"]["item"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let field_id = ids["data"]["organization"]["projectV2"]["field"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let forbidden = gql(
        &gh,
        OUTSIDER,
        SET_STATUS,
        json!({"projectId": project_id, "itemId": item_id, "fieldId": field_id, "optionId": "whatever"}),
    )
    .await;
    assert_eq!(forbidden["errors"][0]["type"], "FORBIDDEN");
    let bad_option = gql(
        &gh,
        BOT,
        SET_STATUS,
        json!({"projectId": project_id, "itemId": item_id, "fieldId": field_id, "optionId": "nope"}),
    )
    .await;
    assert_eq!(bad_option["errors"][0]["type"], "UNPROCESSABLE");
    let no_project = gql(
        &gh,
        BOT,
        PROJECT_FIELDS,
        json!({"owner": "acme", "number": 9}),
    )
    .await;
    assert_eq!(no_project["data"]["organization"]["projectV2"], Value::Null);
    assert_eq!(no_project["errors"][0]["type"], "NOT_FOUND");
}

#[test]
fn schema_is_a_subset_of_githubs() {
    let sdl = github_emulator::graphql_sdl();
    if descriptions_or_skip("GraphQL schema subset").is_none() {
        return;
    }
    let contract = GraphqlContract::shared().expect("GitHub's schema loads");
    if let Err(errors) = contract.check_subset(&sdl) {
        panic!(
            "the emulator's schema strays from GitHub's:\n{}\n\n{sdl}",
            errors.join("\n")
        );
    }
}

#[test]
fn every_document_sent_validates_against_githubs_schema() {
    if descriptions_or_skip("GraphQL document contract").is_none() {
        return;
    }
    let contract = GraphqlContract::shared().expect("GitHub's schema loads");
    for document in DOCUMENTS {
        if let Err(errors) = contract.validate_document(document) {
            panic!("{document}\n\ndoes not validate against GitHub's schema:\n{errors}");
        }
    }
    for document in [UNKNOWN_FIELD, UNKNOWN_ARGUMENT, SYNTAX_ERROR] {
        assert!(
            contract.validate_document(document).is_err(),
            "GitHub accepts {document}"
        );
    }
}
