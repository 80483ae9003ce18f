//! GitHub's scalars, enums and input objects, the Relay pagination every connection shares, and
//! the error shape (`type` + `message`) GitHub's GraphQL API answers with.
//!
//! Names are GitHub's, spelled as its schema spells them; `GraphqlContract::check_subset` holds us
//! to that in the tests.

use async_graphql::{
    Enum, ErrorExtensions, InputObject, InputValueError, InputValueResult, Scalar, ScalarType,
    SimpleObject, Value,
};
use base64::Engine as _;
use chrono::Utc;

use crate::render;

/// A GraphQL error carrying GitHub's `type` (`NOT_FOUND`, `FORBIDDEN`, ...). The handler lifts
/// `extensions.type` to the top level, where GitHub puts it.
pub fn gh_error(kind: &'static str, message: impl Into<String>) -> async_graphql::Error {
    async_graphql::Error::new(message).extend_with(|_, e| e.set("type", kind))
}

/// GitHub's answer for an id that names nothing the caller may see.
pub fn unresolved_node(id: &str) -> async_graphql::Error {
    gh_error(
        "NOT_FOUND",
        format!("Could not resolve to a node with the global id of '{id}'"),
    )
}

/// `DateTime`: RFC 3339 in, GitHub's `2024-01-02T03:04:05Z` out.
#[derive(Debug, Clone, Copy)]
pub struct GhDateTime(pub chrono::DateTime<Utc>);

#[Scalar(name = "DateTime")]
impl ScalarType for GhDateTime {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(text) => chrono::DateTime::parse_from_rfc3339(text)
                .map(|t| GhDateTime(t.with_timezone(&Utc)))
                .map_err(|_| InputValueError::custom(format!("{text:?} is not an ISO-8601 time"))),
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(render::time(self.0))
    }
}

/// `URI`.
#[derive(Debug, Clone)]
pub struct Uri(pub String);

#[Scalar(name = "URI")]
impl ScalarType for Uri {
    fn parse(value: Value) -> InputValueResult<Self> {
        match value {
            Value::String(text) => Ok(Uri(text)),
            other => Err(InputValueError::expected_type(other)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.clone())
    }
}

/// `GitObjectID`: a 40-hex object id.
#[derive(Debug, Clone)]
pub struct GitObjectId(pub String);

#[Scalar(name = "GitObjectID")]
impl ScalarType for GitObjectId {
    fn parse(value: Value) -> InputValueResult<Self> {
        match value {
            Value::String(text)
                if text.len() == 40 && text.bytes().all(|b| b.is_ascii_hexdigit()) =>
            {
                Ok(GitObjectId(text))
            }
            other => Err(InputValueError::expected_type(other)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.clone())
    }
}

#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
pub enum IssueState {
    Closed,
    Open,
}

#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
pub enum IssueStateReason {
    Completed,
    Duplicate,
    NotPlanned,
    Reopened,
}

/// The states `trackedIssuesCount` can count.
#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
pub enum TrackedIssueStates {
    Closed,
    Open,
}

#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
pub enum PullRequestState {
    Closed,
    Merged,
    Open,
}

#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
pub enum CommentAuthorAssociation {
    Collaborator,
    Contributor,
    FirstTimer,
    FirstTimeContributor,
    Mannequin,
    Member,
    None,
    Owner,
}

impl CommentAuthorAssociation {
    pub fn from_rest(text: &str) -> CommentAuthorAssociation {
        match text {
            "OWNER" => CommentAuthorAssociation::Owner,
            "MEMBER" => CommentAuthorAssociation::Member,
            "COLLABORATOR" => CommentAuthorAssociation::Collaborator,
            "CONTRIBUTOR" => CommentAuthorAssociation::Contributor,
            "FIRST_TIMER" => CommentAuthorAssociation::FirstTimer,
            "FIRST_TIME_CONTRIBUTOR" => CommentAuthorAssociation::FirstTimeContributor,
            "MANNEQUIN" => CommentAuthorAssociation::Mannequin,
            _ => CommentAuthorAssociation::None,
        }
    }
}

#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
pub enum OrderDirection {
    Asc,
    Desc,
}

#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
pub enum IssueOrderField {
    Comments,
    CreatedAt,
    UpdatedAt,
}

#[derive(InputObject, Debug, Clone)]
pub struct IssueOrder {
    pub direction: OrderDirection,
    pub field: IssueOrderField,
}

/// `IssueFilters`, the subset the emulator applies (others are refused by validation).
#[derive(InputObject, Debug, Clone, Default)]
pub struct IssueFilters {
    pub assignee: Option<String>,
    pub created_by: Option<String>,
    pub labels: Option<Vec<String>>,
    pub since: Option<GhDateTime>,
    pub states: Option<Vec<IssueState>>,
}

#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
pub enum RefOrderField {
    Alphabetical,
    TagCommitDate,
}

#[derive(InputObject, Debug, Clone)]
pub struct RefOrder {
    pub direction: OrderDirection,
    pub field: RefOrderField,
}

#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
pub enum ProjectV2FieldType {
    Assignees,
    Date,
    Iteration,
    Labels,
    LinkedPullRequests,
    Milestone,
    Number,
    ParentIssue,
    Repository,
    Reviewers,
    SingleSelect,
    SubIssuesProgress,
    Text,
    Title,
    TrackedBy,
    Tracks,
}

#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
pub enum ProjectV2ItemType {
    DraftIssue,
    Issue,
    PullRequest,
    Redacted,
}

#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
pub enum ProjectV2SingleSelectFieldOptionColor {
    Blue,
    Gray,
    Green,
    Orange,
    Pink,
    Purple,
    Red,
    Yellow,
}

impl ProjectV2SingleSelectFieldOptionColor {
    /// The state keeps no colours; the default board's options get the colours GitHub gives a
    /// new board's Status field, anything else is grey.
    pub fn for_option(name: &str) -> Self {
        match name.to_ascii_lowercase().as_str() {
            "todo" => Self::Green,
            "in progress" => Self::Yellow,
            "in review" => Self::Blue,
            "blocked" => Self::Red,
            "done" => Self::Purple,
            _ => Self::Gray,
        }
    }
}

#[derive(SimpleObject, Debug, Clone, Default)]
pub struct PageInfo {
    pub end_cursor: Option<String>,
    pub has_next_page: bool,
    pub has_previous_page: bool,
    pub start_cursor: Option<String>,
}

/// `first`/`last`/`after`/`before` of one connection field.
#[derive(Debug, Clone, Default)]
pub struct PageArgs {
    pub first: Option<i32>,
    pub last: Option<i32>,
    pub after: Option<String>,
    pub before: Option<String>,
}

/// One page of a connection: `(cursor, node)` pairs, the total and `pageInfo`.
pub struct Page<T> {
    pub edges: Vec<(String, T)>,
    pub total: usize,
    pub info: PageInfo,
}

const CURSOR_PREFIX: &str = "cursor:v2:";

fn encode_cursor(index: usize, key: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{CURSOR_PREFIX}{index}:{key}"))
}

fn decode_cursor(cursor: &str) -> Option<(usize, String)> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(cursor)
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let rest = text.strip_prefix(CURSOR_PREFIX)?;
    let (index, key) = rest.split_once(':')?;
    Some((index.parse().ok()?, key.to_string()))
}

/// Relay pagination over the full, ordered list. Cursors carry the node's key (found again even
/// when the list moved) and its position then (used when the node is gone). The pre-execution
/// pass already refused missing or excessive `first`/`last`; this re-checks defensively.
pub fn paginate<T>(
    items: Vec<T>,
    key: impl Fn(&T) -> String,
    args: &PageArgs,
    connection: &str,
) -> async_graphql::Result<Page<T>> {
    let total = items.len();
    let keys: Vec<String> = items.iter().map(&key).collect();
    let locate = |cursor: &str| -> async_graphql::Result<(Option<usize>, usize)> {
        let (index, key) = decode_cursor(cursor).ok_or_else(|| {
            gh_error(
                "INVALID_CURSOR_ARGUMENTS",
                format!("`{cursor}` does not appear to be a valid cursor."),
            )
        })?;
        Ok((keys.iter().position(|k| *k == key), index.min(total)))
    };
    let mut low = 0;
    let mut high = total;
    if let Some(after) = &args.after {
        low = match locate(after)? {
            (Some(found), _) => found + 1,
            (None, index) => index,
        };
    }
    if let Some(before) = &args.before {
        high = match locate(before)? {
            (Some(found), _) => found,
            (None, index) => index,
        };
    }
    let high = high.max(low);
    let (start, end) = match (args.first, args.last) {
        (Some(first), _) if first >= 0 => (low, (low + first as usize).min(high)),
        (None, Some(last)) if last >= 0 => (high.saturating_sub(last as usize).max(low), high),
        _ => {
            return Err(gh_error(
                "MISSING_PAGINATION_BOUNDARIES",
                format!(
                    "You must provide a `first` or `last` value to properly paginate the `{connection}` connection."
                ),
            ));
        }
    };
    let edges: Vec<(String, T)> = items
        .into_iter()
        .enumerate()
        .skip(start)
        .take(end - start)
        .map(|(index, item)| (encode_cursor(index, &keys[index]), item))
        .collect();
    let info = PageInfo {
        start_cursor: edges.first().map(|(c, _)| c.clone()),
        end_cursor: edges.last().map(|(c, _)| c.clone()),
        has_next_page: end < total,
        has_previous_page: start > 0,
    };
    Ok(Page { edges, total, info })
}

/// A connection type and its edge type, in GitHub's shape: `totalCount`, `pageInfo`, `nodes`,
/// `edges { cursor node }`.
macro_rules! connection {
    ($connection:ident, $edge:ident, $node:ty) => {
        #[derive(async_graphql::SimpleObject)]
        pub struct $connection {
            pub total_count: i32,
            pub page_info: $crate::graphql::types::PageInfo,
            pub nodes: Option<Vec<Option<$node>>>,
            pub edges: Option<Vec<Option<$edge>>>,
        }

        #[derive(async_graphql::SimpleObject, Clone)]
        pub struct $edge {
            pub cursor: String,
            pub node: Option<$node>,
        }

        impl $connection {
            pub fn from_page(page: $crate::graphql::types::Page<$node>) -> Self {
                let nodes = page.edges.iter().map(|(_, n)| Some(n.clone())).collect();
                let edges = page
                    .edges
                    .into_iter()
                    .map(|(cursor, node)| {
                        Some($edge {
                            cursor,
                            node: Some(node),
                        })
                    })
                    .collect();
                $connection {
                    total_count: i32::try_from(page.total).unwrap_or(i32::MAX),
                    page_info: page.info,
                    nodes: Some(nodes),
                    edges: Some(edges),
                }
            }
        }
    };
}
pub(crate) use connection;

/// A database id as GitHub's `Int` (which is 32-bit; larger ids read as null, as on GitHub).
pub fn database_id(id: u64) -> Option<i32> {
    i32::try_from(id).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(args: PageArgs) -> Page<u32> {
        paginate((1..=10).collect(), |n| n.to_string(), &args, "things").unwrap()
    }

    #[test]
    fn first_after_and_last_before() {
        let one = page(PageArgs {
            first: Some(3),
            ..PageArgs::default()
        });
        assert_eq!(one.edges.iter().map(|e| e.1).collect::<Vec<_>>(), [1, 2, 3]);
        assert!(one.info.has_next_page && !one.info.has_previous_page);
        let two = page(PageArgs {
            first: Some(3),
            after: one.info.end_cursor.clone(),
            ..PageArgs::default()
        });
        assert_eq!(two.edges.iter().map(|e| e.1).collect::<Vec<_>>(), [4, 5, 6]);
        let back = page(PageArgs {
            last: Some(2),
            before: two.info.start_cursor.clone(),
            ..PageArgs::default()
        });
        assert_eq!(back.edges.iter().map(|e| e.1).collect::<Vec<_>>(), [2, 3]);
        let tail = page(PageArgs {
            last: Some(4),
            ..PageArgs::default()
        });
        assert_eq!(
            tail.edges.iter().map(|e| e.1).collect::<Vec<_>>(),
            [7, 8, 9, 10]
        );
        assert!(!tail.info.has_next_page && tail.info.has_previous_page);
        let bad = paginate(
            vec![1],
            |n: &i32| n.to_string(),
            &PageArgs {
                first: Some(1),
                after: Some("nope".into()),
                ..PageArgs::default()
            },
            "things",
        );
        assert!(bad.is_err());
    }

    #[test]
    fn cursor_of_a_vanished_node_keeps_its_place() {
        let one = page(PageArgs {
            first: Some(3),
            ..PageArgs::default()
        });
        let cursor = one.info.end_cursor.unwrap();
        // Node 3 is gone: continue at the position it had.
        let items: Vec<u32> = (1..=10).filter(|n| *n != 3).collect();
        let next = paginate(
            items,
            |n| n.to_string(),
            &PageArgs {
                first: Some(2),
                after: Some(cursor),
                ..PageArgs::default()
            },
            "things",
        )
        .unwrap();
        assert_eq!(next.edges.iter().map(|e| e.1).collect::<Vec<_>>(), [4, 5]);
    }
}
