//! `GitHub::issue_relations` against the emulator: sub-issues and tracked issues of every open
//! issue, in one GraphQL request (1 point) per 100 open issues, across pages.

use std::collections::BTreeMap;

use crew::github::{GitHubError, Relations, RepoSlug};
use github_emulator::world::WorldIssue;

use crate::support::{BOT, Control, TestResult, client, emulator_with};

const GRAPHQL: &str = "POST /graphql";

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

fn relations(open_sub_issues: &[u64], parent: Option<u64>, tracked_in_open: &[u64]) -> Relations {
    Relations {
        open_sub_issues: open_sub_issues.to_vec(),
        parent,
        tracked_in_open: tracked_in_open.to_vec(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relations_of_every_open_issue_in_one_request() -> TestResult {
    let emulator = emulator_with(|world| {
        let repo = &mut world.repos[0];
        repo.issues = vec![
            issue("Epic", "open", ""),                        // 1
            issue("Part A", "open", ""),                      // 2
            issue("Part B", "closed", ""),                    // 3
            issue("Tracked", "open", ""),                     // 4
            issue("Tracker", "open", "- [ ] #4\n- [ ] #6\n"), // 5
            issue("Tracked twice", "open", ""),               // 6
            issue("Closed tracker", "closed", "- [ ] #6\n"),  // 7
            issue("Orphan part", "open", ""),                 // 8
            issue("Closed epic", "closed", ""),               // 9
        ];
        repo.sub_issues = BTreeMap::from([(1, vec![3, 2]), (9, vec![8])]);
    })
    .await?;
    let control = Control::new(&emulator)?;
    let github = client(&emulator, BOT, None)?;
    let repo: RepoSlug = "acme/widgets".parse()?;
    control.reset_stats().await?;

    let found = github.issue_relations(&repo).await?;

    let expected = BTreeMap::from([
        (1, relations(&[2], None, &[])),
        (2, relations(&[], Some(1), &[])),
        (4, relations(&[], None, &[5])),
        (5, relations(&[], None, &[])),
        (6, relations(&[], None, &[5])),
        (8, relations(&[], Some(9), &[])),
    ]);
    assert_eq!(
        found, expected,
        "closed issues are neither keys nor waited for"
    );
    assert_eq!(control.requests(GRAPHQL).await?, 1);
    assert_eq!(control.rate_points(GRAPHQL).await?, 1, "one GraphQL point");
    assert_eq!(control.stats().await?["requests"], 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relations_span_pages_of_one_hundred() -> TestResult {
    let emulator = emulator_with(|world| {
        let repo = &mut world.repos[0];
        repo.issues = (1..=130)
            .map(|n| {
                let body = if n == 120 { "- [ ] #3" } else { "" };
                issue(&format!("Issue {n}"), "open", body)
            })
            .collect();
        // Sub-issues on the second page of a parent on the first, and the other way round.
        repo.sub_issues = BTreeMap::from([(2, vec![110, 5]), (125, vec![7])]);
    })
    .await?;
    let control = Control::new(&emulator)?;
    let github = client(&emulator, BOT, None)?;
    let repo: RepoSlug = "acme/widgets".parse()?;
    control.reset_stats().await?;

    let found = github.issue_relations(&repo).await?;

    assert_eq!(found.len(), 130);
    assert_eq!(found[&2], relations(&[5, 110], None, &[]));
    assert_eq!(found[&110].parent, Some(2));
    assert_eq!(found[&125], relations(&[7], None, &[]));
    assert_eq!(found[&7].parent, Some(125));
    assert_eq!(found[&3].tracked_in_open, [120]);
    assert_eq!(found[&1], Relations::default());
    assert_eq!(control.requests(GRAPHQL).await?, 2, "one request per 100");
    assert_eq!(control.rate_points(GRAPHQL).await?, 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_repository_is_not_found() -> TestResult {
    let emulator = emulator_with(|_| {}).await?;
    let github = client(&emulator, BOT, None)?;
    let repo: RepoSlug = "acme/nothing".parse()?;
    match github.issue_relations(&repo).await {
        Err(GitHubError::NotFound { .. }) => Ok(()),
        other => Err(format!("expected NotFound, got {other:?}").into()),
    }
}
