//! Issue relations over GraphQL: sub-issues declared in the world (`parent`, `subIssues`,
//! `subIssuesSummary`), tracked issues derived from task lists (`trackedIssues`,
//! `trackedInIssues`, `trackedIssuesCount`), their pagination rules and cost, and the world's
//! checks on sub-issue declarations.

use std::collections::BTreeMap;

use crate::support::*;
use github_emulator::contract::{GraphqlContract, descriptions_or_skip};
use github_emulator::world::WorldIssue;
use github_emulator::{Emulator, World};
use http::{Method, StatusCode};
use serde_json::{Value, json};

fn issue(title: &str, state: &str, body: &str) -> WorldIssue {
    WorldIssue {
        title: title.to_string(),
        body: Some(body.to_string()),
        author: Some("maintainer".to_string()),
        labels: Vec::new(),
        assignees: Vec::new(),
        state: state.to_string(),
        comments: Vec::new(),
    }
}

/// #1 Epic with sub-issues #2 (open) and #3 (closed); #4 is tracked by #5's task list, which also
/// lists the closed #3, a missing #99 and (in a code block) #2.
fn world() -> World {
    let mut world = World::default();
    let repo = &mut world.repos[0];
    repo.issues = vec![
        issue("Epic", "open", "The whole thing."),
        issue("Part A", "open", ""),
        issue("Part B", "closed", ""),
        issue("Tracked", "open", ""),
        issue(
            "Tracker",
            "open",
            "Steps:\n- [ ] #4\n- [x] acme/widgets#3\n- [ ] #99\n```\n- [ ] #2\n```\n",
        ),
    ];
    repo.sub_issues = BTreeMap::from([(1, vec![2, 3])]);
    world
}

const RELATIONS: &str = "query Relations($owner: String!, $repo: String!) {
  repository(owner: $owner, name: $repo) {
    epic: issue(number: 1) {
      parent { number }
      subIssues(first: 10) { totalCount nodes { number state } pageInfo { hasNextPage } }
      subIssuesSummary { completed percentCompleted total }
    }
    part: issue(number: 2) { parent { number title } subIssuesSummary { total percentCompleted } }
    tracked: issue(number: 4) { trackedInIssues(first: 10) { totalCount nodes { number } } }
    tracker: issue(number: 5) {
      trackedIssues(first: 10) { nodes { number state } }
      all: trackedIssuesCount
      open: trackedIssuesCount(states: [OPEN])
      trackedInIssues(first: 10) { totalCount }
    }
  }
}";

const PAGED: &str = "query Paged($after: String) {
  repository(owner: \"acme\", name: \"widgets\") {
    issue(number: 1) {
      subIssues(last: 1, after: $after) { nodes { number } }
      first: subIssues(first: 1) { nodes { number } pageInfo { hasNextPage endCursor } }
    }
  }
}";

/// Every open issue with its relations, as a scheduler asks: 1 + 100 + 100 = 201 requests → 2.
const ALL_OPEN: &str = "query AllOpen {
  repository(owner: \"acme\", name: \"widgets\") {
    issues(states: [OPEN], first: 100) {
      nodes {
        number
        parent { number state }
        subIssues(first: 50) { nodes { number state } }
        trackedInIssues(first: 20) { nodes { number state } }
      }
    }
  }
  rateLimit { cost nodeCount }
}";

const NO_FIRST: &str = "query NoFirst {
  repository(owner: \"acme\", name: \"widgets\") {
    issue(number: 1) { subIssues { totalCount } }
  }
}";

const TOO_MANY: &str = "query TooMany {
  repository(owner: \"acme\", name: \"widgets\") {
    issue(number: 1) { trackedInIssues(first: 101) { totalCount } }
  }
}";

const ZERO: &str = "query Zero {
  repository(owner: \"acme\", name: \"widgets\") {
    issue(number: 5) { trackedIssues(last: 0) { totalCount } }
  }
}";

async fn gql(gh: &TestGitHub, query: &str, variables: Value) -> Answer {
    gh.send(
        Some(BOT),
        Method::POST,
        "/graphql",
        Some(json!({"query": query, "variables": variables})),
        &[],
    )
    .await
}

fn numbers(connection: &Value) -> Vec<u64> {
    connection["nodes"]
        .as_array()
        .unwrap_or_else(|| panic!("no nodes in {connection}"))
        .iter()
        .filter_map(|n| n["number"].as_u64())
        .collect()
}

#[tokio::test]
async fn sub_issues_and_tracked_issues_are_served() {
    let gh = TestGitHub::start_with(world()).await;
    let answer = gql(&gh, RELATIONS, json!({"owner": "acme", "repo": "widgets"})).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(answer.body.get("errors").is_none(), "{:#}", answer.body);
    let repo = &answer.body["data"]["repository"];

    assert_eq!(repo["epic"]["parent"], Value::Null);
    assert_eq!(
        repo["epic"]["subIssues"],
        json!({"totalCount": 2, "nodes": [{"number": 2, "state": "OPEN"}, {"number": 3, "state": "CLOSED"}], "pageInfo": {"hasNextPage": false}})
    );
    assert_eq!(
        repo["epic"]["subIssuesSummary"],
        json!({"completed": 1, "percentCompleted": 50, "total": 2})
    );
    assert_eq!(
        repo["part"]["parent"],
        json!({"number": 1, "title": "Epic"})
    );
    assert_eq!(
        repo["part"]["subIssuesSummary"],
        json!({"total": 0, "percentCompleted": 0})
    );

    assert_eq!(numbers(&repo["tracked"]["trackedInIssues"]), [5]);
    assert_eq!(
        repo["tracker"]["trackedIssues"]["nodes"],
        json!([{"number": 4, "state": "OPEN"}, {"number": 3, "state": "CLOSED"}]),
        "body order; the missing #99 and the code block are not tracked"
    );
    assert_eq!(repo["tracker"]["all"], 2);
    assert_eq!(repo["tracker"]["open"], 1);
    assert_eq!(repo["tracker"]["trackedInIssues"]["totalCount"], 0);

    // Tracking follows the body: editing it through REST changes the relation.
    let edit = gh
        .patch(
            MAINTAINER,
            "/repos/acme/widgets/issues/5",
            json!({"body": "- [ ] #2"}),
        )
        .await;
    assert_eq!(edit.status, StatusCode::OK);
    let again = gql(&gh, RELATIONS, json!({"owner": "acme", "repo": "widgets"})).await;
    let repo = &again.body["data"]["repository"];
    assert_eq!(repo["tracked"]["trackedInIssues"]["totalCount"], 0);
    assert_eq!(numbers(&repo["tracker"]["trackedIssues"]), [2]);
    gh.assert_contract();
}

#[tokio::test]
async fn relation_connections_paginate_and_cost_like_github() {
    let gh = TestGitHub::start_with(world()).await;
    let first = gql(&gh, PAGED, json!({})).await.body;
    let page = &first["data"]["repository"]["issue"]["first"];
    assert_eq!(numbers(page), [2]);
    assert_eq!(page["pageInfo"]["hasNextPage"], true);
    assert_eq!(
        numbers(&first["data"]["repository"]["issue"]["subIssues"]),
        [3]
    );

    let all = gql(&gh, ALL_OPEN, json!({})).await.body;
    assert!(all.get("errors").is_none(), "{all:#}");
    let nodes = all["data"]["repository"]["issues"]["nodes"]
        .as_array()
        .unwrap();
    let open: Vec<u64> = nodes.iter().filter_map(|n| n["number"].as_u64()).collect();
    assert_eq!(open, [1, 2, 4, 5]);
    assert_eq!(nodes[1]["parent"], json!({"number": 1, "state": "OPEN"}));
    assert_eq!(numbers(&nodes[2]["trackedInIssues"]), [5]);
    assert_eq!(all["data"]["rateLimit"]["cost"], 2);
    assert_eq!(
        all["data"]["rateLimit"]["nodeCount"],
        100 + 100 * 50 + 100 * 20
    );
}

#[tokio::test]
async fn relation_connections_need_first_or_last_up_to_one_hundred() {
    let gh = TestGitHub::start_with(world()).await;
    let cases = [
        (
            NO_FIRST,
            "MISSING_PAGINATION_BOUNDARIES",
            "You must provide a `first` or `last` value to properly paginate the `subIssues` connection.",
        ),
        (
            TOO_MANY,
            "EXCESSIVE_PAGINATION",
            "Requesting 101 records on the `trackedInIssues` connection exceeds the `first` limit of 100 records.",
        ),
        (
            ZERO,
            "MISSING_PAGINATION_BOUNDARIES",
            "`last` on the `trackedIssues` connection must be between 1 and 100, got 0.",
        ),
    ];
    for (query, kind, message) in cases {
        let answer = gql(&gh, query, json!({})).await;
        assert_eq!(answer.status, StatusCode::OK, "GitHub answers 200");
        assert!(answer.body.get("data").is_none(), "{:#}", answer.body);
        assert_eq!(answer.body["errors"][0]["type"], kind);
        assert_eq!(answer.body["errors"][0]["message"], message);
    }
    let stats = gh.control(Method::GET, "/_emulator/stats", None).await.body;
    assert_eq!(stats["by_route"]["POST /graphql"]["rate_points"], 0);
}

#[tokio::test]
async fn the_world_refuses_sub_issues_github_would_refuse() {
    type Declared = &'static [(u64, &'static [u64])];
    let cases: [(Declared, &str); 5] = [
        (&[(1, &[9])], "issue #9 does not exist"),
        (&[(1, &[1])], "a sub-issue cycle"),
        (&[(1, &[2]), (2, &[1])], "a sub-issue cycle"),
        (&[(1, &[3]), (2, &[3])], "already has a parent (#1)"),
        (&[(1, &[2, 2])], "already has a parent (#1)"),
    ];
    for (relations, why) in cases {
        let mut world = world();
        world.repos[0].sub_issues = relations
            .iter()
            .map(|(parent, children)| (*parent, children.to_vec()))
            .collect();
        let error = match Emulator::builder().world(world).start().await {
            Ok(handle) => {
                handle.shutdown().await;
                panic!("{relations:?} was accepted");
            }
            Err(error) => format!("{error:#}"),
        };
        assert!(error.contains(why), "{relations:?}: {error}");
    }
    // A world file says the same in JSON.
    let parsed: World = serde_json::from_value(json!({
        "repos": [{"owner": "acme", "name": "widgets", "sub_issues": {"1": [2, 3]}}]
    }))
    .unwrap();
    assert_eq!(
        parsed.repos[0].sub_issues,
        BTreeMap::from([(1, vec![2, 3])])
    );
}

#[test]
fn relation_documents_validate_against_githubs_schema() {
    if descriptions_or_skip("relation documents").is_none() {
        return;
    }
    let contract = GraphqlContract::shared().expect("GitHub's schema loads");
    for document in [RELATIONS, PAGED, ALL_OPEN, NO_FIRST, TOO_MANY, ZERO] {
        if let Err(errors) = contract.validate_document(document) {
            panic!("{document}\n\ndoes not validate against GitHub's schema:\n{errors}");
        }
    }
}
