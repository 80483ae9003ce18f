//! `crew show <issue>`: how an issue got where it is: the events that counted, the markers that
//! did not (and why), the lease, and the issue's status on the configured Projects (v2) board.

use std::io::Write;

use clap::Args;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::context::Ctx;
use crate::error::CrewError;
use crate::github::RepoSlug;
use crate::observe::{ObserveOptions, ObservedIssue, observe, sanitize_line, timestamp};
use crate::protocol::{FoldPolicy, fold};
use crate::settings::ProjectConfig;

/// The issue's items on Projects (v2) boards with the status field's value, in one request.
/// `ProjectV2.owner` is not served by the emulator (and `ProjectV2Owner` has no `login` on
/// GitHub), so the owner is read from the project's `url` (`.../orgs/<owner>/projects/<n>`).
pub const BOARD_QUERY: &str =
    "query CrewIssueBoard($owner: String!, $repo: String!, $number: Int!, $field: String!) {
  repository(owner: $owner, name: $repo) {
    issue(number: $number) {
      projectItems(first: 20, includeArchived: false) {
        nodes {
          id
          project { number title url }
          fieldValueByName(name: $field) {
            __typename
            ... on ProjectV2ItemFieldSingleSelectValue { name optionId }
          }
        }
      }
    }
  }
}";

/// Show an issue's timeline of crew events, ignored markers and lease
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  crew show 42                               #42's state, lease and timeline of crew events
  crew show 42 --json | jq '.events[].kind'  Just the event kinds")]
pub struct ShowArgs {
    /// The issue number
    pub issue: u64,
}

/// `crew show N --json` (DESIGN.md 4).
#[derive(Debug, Serialize)]
pub struct ShowView {
    pub issue: u64,
    pub state: &'static str,
    pub attempt: Option<u64>,
    pub lease: Option<ShowLease>,
    pub events: Vec<EventLine>,
    pub ignored: Vec<IgnoredLine>,
    /// `None` when no `[project]` is configured.
    pub board: Option<ShowBoard>,
}

/// The issue on the configured board.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShowBoard {
    /// The configured project's number.
    pub project: u64,
    /// The status field's value; `None` when the issue is not on the board, has no value, or
    /// the board could not be read.
    pub status: Option<String>,
    /// Whether the issue is an item of the project (for the human view).
    #[serde(skip)]
    pub on_board: bool,
    /// Why the board could not be read; absent when it could.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The lease in full: what `status` shows, plus who holds it.
#[derive(Debug, Serialize)]
pub struct ShowLease {
    pub state: &'static str,
    pub expires_at: String,
    pub attempt: u32,
    pub worker: String,
    pub host: String,
    pub renewed_at: String,
}

#[derive(Debug, Serialize)]
pub struct EventLine {
    pub kind: &'static str,
    pub attempt: u64,
    pub author: String,
    pub at: String,
    pub comment_id: u64,
}

#[derive(Debug, Serialize)]
pub struct IgnoredLine {
    pub comment_id: u64,
    pub author: String,
    /// A stable code (`untrusted_author`, `malformed_marker`, `stale_attempt`, ...).
    pub reason: &'static str,
    /// The same, for humans.
    pub message: String,
}

pub async fn run(ctx: &Ctx, args: &ShowArgs) -> Result<(), CrewError> {
    let observed = observe(ctx, ObserveOptions::default()).await?;
    let issue = match observed.issue(args.issue) {
        Some(issue) => issue.clone(),
        // An issue without crew events or a lease is simply unassigned.
        None => match ctx.cache().await?.issue(args.issue).await? {
            Some(row) => ObservedIssue {
                number: row.number,
                open: row.state != "closed",
                title: row.title,
                state: fold(row.number, [], None, &FoldPolicy::new("")),
                lease: None,
                newest_comment_id: None,
            },
            None => {
                return Err(CrewError::user(format!(
                    "{} has no issue #{}",
                    observed.repo, args.issue
                ))
                .with_hint("`crew status --all` lists the issues crew knows about"));
            }
        },
    };
    let mut view = view(&issue);
    view.board = match &ctx.settings.config.project {
        Some(project) => Some(board(ctx, &observed.repo, issue.number, project).await),
        None => None,
    };
    if ctx.settings.json {
        ctx.printer.json(&view)
    } else {
        ctx.printer.out(|w| render(w, &issue, &view))
    }
}

/// The view, pure.
pub fn view(issue: &ObservedIssue) -> ShowView {
    let lease = issue.lease.as_ref().and_then(|lease| {
        let status = lease.status?;
        let parsed = lease.observed.lease.as_ref().ok()?;
        Some(ShowLease {
            state: status.as_str(),
            expires_at: timestamp(parsed.expires_at),
            attempt: parsed.attempt,
            worker: parsed.worker.clone(),
            host: parsed.host.clone(),
            renewed_at: timestamp(parsed.renewed_at),
        })
    });
    ShowView {
        issue: issue.number,
        state: issue.state.state.as_str(),
        attempt: issue.state.attempt,
        lease,
        events: issue
            .state
            .events
            .iter()
            .map(|applied| EventLine {
                kind: applied.event.kind().as_str(),
                attempt: applied.event.attempt,
                author: applied.author.clone(),
                at: timestamp(applied.event.at),
                comment_id: applied.comment_id,
            })
            .collect(),
        ignored: issue
            .state
            .ignored
            .iter()
            .map(|ignored| IgnoredLine {
                comment_id: ignored.comment_id,
                author: ignored.author.clone(),
                reason: ignored.reason.code(),
                message: ignored.reason.to_string(),
            })
            .collect(),
        board: None,
    }
}

/// Reads the issue's status on the configured board. A failure is reported in the result,
/// never as an error: the rest of `show` stands on its own.
async fn board(ctx: &Ctx, repo: &RepoSlug, issue: u64, project: &ProjectConfig) -> ShowBoard {
    let variables = json!({
        "owner": repo.owner(),
        "repo": repo.name(),
        "number": issue,
        "field": project.status_field,
    });
    let answer = match ctx.github().await {
        Ok(github) => github
            .graphql(BOARD_QUERY, variables)
            .await
            .map_err(|error| error.to_string()),
        Err(error) => Err(error.to_string()),
    };
    let owner = project.owner.as_deref().unwrap_or(repo.owner());
    match answer.and_then(|data| pick_board(&data, project.number, owner)) {
        Ok(board) => board,
        Err(error) => ShowBoard {
            project: project.number,
            status: None,
            on_board: false,
            error: Some(error),
        },
    }
}

#[derive(Deserialize)]
struct BoardData {
    repository: Option<BoardRepository>,
}

#[derive(Deserialize)]
struct BoardRepository {
    issue: Option<BoardIssue>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BoardIssue {
    project_items: BoardItems,
}

#[derive(Deserialize)]
struct BoardItems {
    #[serde(default)]
    nodes: Vec<Option<BoardItem>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BoardItem {
    project: BoardProject,
    field_value_by_name: Option<BoardValue>,
}

#[derive(Deserialize)]
struct BoardProject {
    number: u64,
    #[serde(default)]
    url: Option<String>,
}

#[derive(Deserialize)]
struct BoardValue {
    #[serde(default)]
    name: Option<String>,
}

/// The item of project `number` owned by `owner`, from a [`BOARD_QUERY`] answer, pure.
fn pick_board(data: &Value, number: u64, owner: &str) -> Result<ShowBoard, String> {
    let data = BoardData::deserialize(data)
        .map_err(|error| format!("unexpected answer to CrewIssueBoard: {error}"))?;
    let items = data
        .repository
        .and_then(|repository| repository.issue)
        .map(|issue| issue.project_items.nodes)
        .unwrap_or_default();
    let item = items.into_iter().flatten().find(|item| {
        item.project.number == number
            && item
                .project
                .url
                .as_deref()
                .and_then(url_owner)
                .is_none_or(|url_owner| url_owner.eq_ignore_ascii_case(owner))
    });
    Ok(ShowBoard {
        project: number,
        on_board: item.is_some(),
        status: item
            .and_then(|item| item.field_value_by_name)
            .and_then(|value| value.name),
        error: None,
    })
}

/// `acme` from `https://github.com/orgs/acme/projects/1` (or `/users/<login>/...`).
fn url_owner(url: &str) -> Option<&str> {
    let segments: Vec<&str> = url.trim_end_matches('/').rsplit('/').take(4).collect();
    match segments.as_slice() {
        [_number, "projects", owner, "orgs" | "users"] => Some(owner),
        _ => None,
    }
}

fn render(w: &mut dyn Write, issue: &ObservedIssue, view: &ShowView) -> std::io::Result<()> {
    writeln!(
        w,
        "#{} {}{}",
        view.issue,
        sanitize_line(&issue.title, 72),
        if issue.open { "" } else { " (closed)" }
    )?;
    let attempt = view
        .attempt
        .map_or(String::new(), |attempt| format!(", attempt {attempt}"));
    writeln!(w, "state: {}{attempt}", view.state)?;
    if let Some(question) = &issue.state.question {
        writeln!(w, "question: {}", sanitize_line(question, 200))?;
    }
    match (&view.lease, &issue.lease) {
        (Some(lease), _) => writeln!(
            w,
            "lease: {} (attempt {}, worker {}, host {}, expires {})",
            lease.state,
            lease.attempt,
            sanitize_line(&lease.worker, 60),
            sanitize_line(&lease.host, 40),
            lease.expires_at
        )?,
        (None, Some(unreadable)) => match &unreadable.observed.lease {
            Err(error) => writeln!(w, "lease: unreadable ({error})")?,
            Ok(_) => writeln!(w, "lease: -")?,
        },
        (None, None) => writeln!(w, "lease: none")?,
    }
    match &view.board {
        None => writeln!(w, "board: no project configured")?,
        Some(board) => match (&board.error, &board.status) {
            (Some(error), _) => writeln!(
                w,
                "board: unknown (project {}: {})",
                board.project,
                sanitize_line(error, 200)
            )?,
            (None, Some(status)) => writeln!(w, "board: {}", sanitize_line(status, 60))?,
            (None, None) if board.on_board => {
                writeln!(w, "board: no status (on project {})", board.project)?;
            }
            (None, None) => writeln!(w, "board: not on project {}", board.project)?,
        },
    }
    writeln!(w, "events:")?;
    if view.events.is_empty() {
        writeln!(w, "  (none)")?;
    }
    for event in &view.events {
        writeln!(
            w,
            "  {}  {:<17} attempt {}  by {}  (comment {})",
            event.at,
            event.kind,
            event.attempt,
            sanitize_line(&event.author, 40),
            event.comment_id
        )?;
    }
    if !view.ignored.is_empty() {
        writeln!(w, "ignored:")?;
        for ignored in &view.ignored {
            writeln!(
                w,
                "  comment {} by {}: {} ({})",
                ignored.comment_id,
                sanitize_line(&ignored.author, 40),
                ignored.reason,
                sanitize_line(&ignored.message, 160)
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(number: u64, url: &str, status: Option<&str>) -> Value {
        json!({
            "id": format!("PVTI_{number}"),
            "project": { "number": number, "title": "Board", "url": url },
            "fieldValueByName": status.map(|name| json!({
                "__typename": "ProjectV2ItemFieldSingleSelectValue",
                "name": name,
                "optionId": "opt",
            })),
        })
    }

    fn answer(items: Vec<Value>) -> Value {
        json!({ "repository": { "issue": { "projectItems": { "nodes": items } } } })
    }

    #[test]
    fn the_configured_project_is_picked_by_number_and_owner() {
        let data = answer(vec![
            item(
                1,
                "https://github.com/users/someone/projects/1",
                Some("Done"),
            ),
            item(2, "https://github.com/orgs/acme/projects/2", Some("Todo")),
            item(
                1,
                "https://github.com/orgs/Acme/projects/1",
                Some("In Progress"),
            ),
        ]);
        let board = pick_board(&data, 1, "acme").unwrap();
        assert_eq!(board.status.as_deref(), Some("In Progress"));
        assert!(board.on_board);
        assert_eq!(board.error, None);
    }

    #[test]
    fn not_on_the_board_and_no_status_are_told_apart() {
        let data = answer(vec![item(
            2,
            "https://github.com/orgs/acme/projects/2",
            None,
        )]);
        let missing = pick_board(&data, 1, "acme").unwrap();
        assert!(!missing.on_board);
        assert_eq!(missing.status, None);
        let unset = pick_board(&data, 2, "acme").unwrap();
        assert!(unset.on_board);
        assert_eq!(unset.status, None);
        let gone = pick_board(&json!({ "repository": { "issue": null } }), 1, "acme").unwrap();
        assert!(!gone.on_board);
        assert!(pick_board(&json!({ "repository": 3 }), 1, "acme").is_err());
    }

    #[test]
    fn project_urls_name_their_owner() {
        assert_eq!(
            url_owner("https://github.com/orgs/acme/projects/1"),
            Some("acme")
        );
        assert_eq!(
            url_owner("http://127.0.0.1:9/users/bob/projects/12/"),
            Some("bob")
        );
        assert_eq!(url_owner("https://github.com/acme/projects/1"), None);
        assert_eq!(url_owner("nonsense"), None);
    }

    #[test]
    fn the_board_serializes_as_documented() {
        let board = ShowBoard {
            project: 1,
            status: None,
            on_board: true,
            error: None,
        };
        assert_eq!(
            serde_json::to_value(&board).unwrap(),
            json!({ "project": 1, "status": null })
        );
    }
}
