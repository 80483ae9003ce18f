//! GitHub's own dependency relations between issues, so the scheduler can hold an issue back
//! until what it depends on is done: sub-issues (`Issue.parent` / `Issue.subIssues`) and tracked
//! issues (`Issue.trackedInIssues`, from task lists in a tracking issue's body).
//!
//! Decisions, and why:
//! - **One query per 100 open issues**: `repository.issues(states: OPEN, first: 100)` with each
//!   issue's `parent` and `trackedInIssues`. GitHub's cost is the number of connection pages it
//!   may have to fill, divided by 100: 1 (issues) + 100 (one `trackedInIssues` per issue) = 101
//!   → **1 point per page**. Asking `subIssues` as well would add 100 more (2 points per page)
//!   for nothing: every open sub-issue is itself an open issue on some page and names its
//!   `parent`, so a parent's open sub-issues are found by inverting `parent` over the pages.
//!   That inversion is also complete where a `subIssues(first: n)` page would be cut short.
//! - `trackedInIssues(first: 100)`: the inner `first` does not change the cost (only the
//!   enclosing page size does), so it is as large as GitHub allows. An issue tracked in more than
//!   100 issues is read with its first 100 and a warning is logged.
//! - Only relations inside the repository count (`repository { nameWithOwner }` is asked for
//!   that reason): crew schedules one repository, and an issue number means nothing elsewhere.
//! - Pages are ordered by creation (`CREATED_AT`, ascending), so an issue opened during the read
//!   lands on the last page instead of shifting earlier pages.
//! - The query also reads `rateLimit`, which keeps the GraphQL budget current for free.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::json;

use super::{GitHub, GitHubError, RepoSlug};

/// Every open issue with its parent and the issues whose task lists track it; `first: 100` is
/// GitHub's page cap (see the module docs for the cost: 1 point per page).
pub const RELATIONS_QUERY: &str =
    "query CrewIssueRelations($owner: String!, $name: String!, $cursor: String) {
  repository(owner: $owner, name: $name) {
    issues(states: [OPEN], first: 100, after: $cursor, orderBy: {field: CREATED_AT, direction: ASC}) {
      pageInfo { hasNextPage endCursor }
      nodes {
        number
        parent { number state repository { nameWithOwner } }
        trackedInIssues(first: 100) {
          pageInfo { hasNextPage }
          nodes { number state repository { nameWithOwner } }
        }
      }
    }
  }
  rateLimit { limit remaining used resetAt }
}";

/// What one open issue depends on, or is part of, within its repository.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Relations {
    /// Its sub-issues that are open, by number.
    pub open_sub_issues: Vec<u64>,
    /// Its parent issue (open or closed), when it is a sub-issue of an issue in this repository.
    pub parent: Option<u64>,
    /// Open issues whose task lists track it, by number.
    pub tracked_in_open: Vec<u64>,
}

impl GitHub {
    /// For every open issue of the repository: its open sub-issues, its parent, and the open
    /// issues it is tracked in. One GraphQL request (1 point) per 100 open issues.
    pub async fn issue_relations(
        &self,
        repo: &RepoSlug,
    ) -> Result<BTreeMap<u64, Relations>, GitHubError> {
        let full_name = format!("{}/{}", repo.owner(), repo.name());
        let local = |other: &Option<RepositoryRef>| {
            other
                .as_ref()
                .is_some_and(|r| r.name_with_owner.eq_ignore_ascii_case(&full_name))
        };
        let mut relations: BTreeMap<u64, Relations> = BTreeMap::new();
        let mut cursor: Option<String> = None;
        loop {
            let data = self
                .graphql(
                    RELATIONS_QUERY,
                    json!({"owner": repo.owner(), "name": repo.name(), "cursor": cursor}),
                )
                .await?;
            let page: RelationsData =
                serde_json::from_value(data).map_err(|error| GitHubError::Unexpected {
                    route: "POST /graphql".to_string(),
                    message: format!(
                        "issue relations answer does not match what crew expects: {error}"
                    ),
                })?;
            let issues = page
                .repository
                .ok_or_else(|| GitHubError::NotFound {
                    route: "POST /graphql".to_string(),
                    message: format!("repository {full_name} not found"),
                })?
                .issues;
            for node in issues.nodes.into_iter().flatten() {
                let parent = node
                    .parent
                    .filter(|parent| local(&parent.repository))
                    .map(|parent| parent.number);
                let tracked_in = node.tracked_in_issues;
                if tracked_in.page_info.has_next_page {
                    tracing::warn!(
                        issue = node.number,
                        "issue is tracked in more than 100 issues; only the first 100 are considered"
                    );
                }
                let mut tracked_in_open: Vec<u64> = tracked_in
                    .nodes
                    .into_iter()
                    .flatten()
                    .filter(|tracker| tracker.state == "OPEN" && local(&tracker.repository))
                    .map(|tracker| tracker.number)
                    .collect();
                tracked_in_open.sort_unstable();
                tracked_in_open.dedup();
                let entry = relations.entry(node.number).or_default();
                entry.parent = parent;
                entry.tracked_in_open = tracked_in_open;
            }
            match issues.page_info {
                PageInfo {
                    has_next_page: true,
                    end_cursor: Some(end),
                } => cursor = Some(end),
                _ => break,
            }
        }
        invert_parents(&mut relations);
        Ok(relations)
    }
}

/// Fills each open issue's `open_sub_issues` from its open children's `parent`.
fn invert_parents(relations: &mut BTreeMap<u64, Relations>) {
    let children: Vec<(u64, u64)> = relations
        .iter()
        .filter_map(|(child, r)| r.parent.map(|parent| (parent, *child)))
        .collect();
    for (parent, child) in children {
        if let Some(entry) = relations.get_mut(&parent) {
            entry.open_sub_issues.push(child);
        }
    }
    for entry in relations.values_mut() {
        entry.open_sub_issues.sort_unstable();
    }
}

/// The `data` of [`RELATIONS_QUERY`]: crew's own view, only the fields it reads.
#[derive(Debug, Deserialize)]
struct RelationsData {
    repository: Option<RelationsRepository>,
}

#[derive(Debug, Deserialize)]
struct RelationsRepository {
    issues: IssueConnection,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct IssueConnection {
    page_info: PageInfo,
    #[serde(default)]
    nodes: Vec<Option<IssueNode>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PageInfo {
    has_next_page: bool,
    #[serde(default)]
    end_cursor: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct IssueNode {
    number: u64,
    parent: Option<RelatedIssue>,
    tracked_in_issues: TrackedConnection,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TrackedConnection {
    page_info: PageInfo,
    #[serde(default)]
    nodes: Vec<Option<RelatedIssue>>,
}

#[derive(Debug, Deserialize)]
struct RelatedIssue {
    number: u64,
    state: String,
    repository: Option<RepositoryRef>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RepositoryRef {
    name_with_owner: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_pages_open_issues_by_a_cursor() {
        assert!(RELATIONS_QUERY.starts_with("query"));
        assert!(RELATIONS_QUERY.contains("after: $cursor"));
        assert!(RELATIONS_QUERY.contains("states: [OPEN]"));
    }

    #[test]
    fn open_children_fill_their_open_parents() {
        let of = |parent: Option<u64>| Relations {
            parent,
            ..Relations::default()
        };
        // #1 open parent of #3 and #2; #4's parent #9 is closed (not among the open issues).
        let mut relations = BTreeMap::from([
            (1, of(None)),
            (2, of(Some(1))),
            (3, of(Some(1))),
            (4, of(Some(9))),
        ]);
        invert_parents(&mut relations);
        assert_eq!(relations[&1].open_sub_issues, [2, 3]);
        assert!(relations[&4].open_sub_issues.is_empty());
        assert_eq!(relations[&4].parent, Some(9));
    }

    #[test]
    fn pages_decode() -> Result<(), serde_json::Error> {
        let page: RelationsData = serde_json::from_value(json!({
            "repository": {"issues": {
                "pageInfo": {"hasNextPage": false, "endCursor": null},
                "nodes": [
                    {"number": 2,
                     "parent": {"number": 1, "state": "OPEN", "repository": {"nameWithOwner": "acme/widgets"}},
                     "trackedInIssues": {"pageInfo": {"hasNextPage": false}, "nodes": [null]}},
                    null,
                ],
            }},
            "rateLimit": null,
        }))?;
        let issues = page.repository.map(|r| r.issues);
        let node = issues
            .as_ref()
            .and_then(|i| i.nodes.first())
            .and_then(Option::as_ref);
        assert_eq!(
            node.and_then(|n| n.parent.as_ref()).map(|p| p.number),
            Some(1)
        );
        Ok(())
    }
}
