//! Event comments and their mirrors against the emulator: a retried or re-run post never makes
//! a second comment, and the board status and `crew:*` labels follow the state cheaply.

use chrono::Utc;
use serde_json::{Value, json};

use crate::support::{BOT, Control, TestResult, client};
use crew::github::{
    Board, BoardIds, GitHub, PostMode, RepoSlug, StatusChange, StatusKey, board_status,
};
use crew::protocol::marker::render_comment;
use crew::protocol::{Event, EventBody, State};
use crew::settings::{ProjectConfig, ProjectStatusNames};

const COMMENTS: &str = "POST /repos/{owner}/{repo}/issues/{issue_number}/comments";
const LIST_COMMENTS: &str = "GET /repos/{owner}/{repo}/issues/{issue_number}/comments";

fn widgets() -> TestResult<RepoSlug> {
    Ok("acme/widgets".parse()?)
}

fn event(op: &str) -> Event {
    Event {
        issue: 1,
        attempt: 1,
        worker: "worker-1763700000-1".to_string(),
        op: op.to_string(),
        at: Utc::now(),
        body: EventBody::Progress {
            message: "half way".to_string(),
        },
    }
}

async fn comment_count(github: &GitHub, repo: &RepoSlug) -> TestResult<usize> {
    Ok(github.issue_comments(repo, 1).await?.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_post_of_the_same_op_reuses_the_comment() -> TestResult {
    let emulator = crate::support::emulator_with_issue().await?;
    let control = Control::new(&emulator)?;
    let repo = widgets()?;
    let github = client(&emulator, BOT, None)?;
    let event = event("op-resume-1");
    let body = render_comment(&event, "half way");

    let first = github
        .post_event(&repo, 1, &event, &body, PostMode::FirstTry)
        .await?;
    assert!(!first.reused);
    assert_eq!(
        control.requests(COMMENTS).await?,
        1,
        "common path: 1 request"
    );
    assert_eq!(control.requests(LIST_COMMENTS).await?, 0);

    let again = github
        .post_event(&repo, 1, &event, &body, PostMode::Resume)
        .await?;
    assert!(again.reused);
    assert_eq!(again.comment_id, first.comment_id);
    assert_eq!(control.requests(COMMENTS).await?, 1, "nothing posted again");
    assert_eq!(control.requests(LIST_COMMENTS).await?, 1);
    assert_eq!(comment_count(&github, &repo).await?, 1);

    // Resume of an op that was never posted: look, then post.
    let other = self::event("op-resume-2");
    let body = render_comment(&other, "more");
    let posted = github
        .post_event(&repo, 1, &other, &body, PostMode::Resume)
        .await?;
    assert!(!posted.reused);
    assert_eq!(control.requests(COMMENTS).await?, 2);
    assert_eq!(
        control.requests(LIST_COMMENTS).await?,
        3,
        "the earlier look and count, then this resume's one look before posting"
    );
    assert_eq!(comment_count(&github, &repo).await?, 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_response_posts_exactly_one_comment() -> TestResult {
    let emulator = crate::support::emulator_with_issue().await?;
    let control = Control::new(&emulator)?;
    let repo = widgets()?;
    let github = client(&emulator, BOT, None)?;
    control
        .faults(json!([{"route": COMMENTS, "fault": "drop_after_write", "times": 1}]))
        .await?;
    let event = event("op-dropped");
    let body = render_comment(&event, "half way");

    let posted = github
        .post_event(&repo, 1, &event, &body, PostMode::FirstTry)
        .await?;

    let comments = github.issue_comments(&repo, 1).await?;
    assert_eq!(comments.len(), 1, "exactly one comment exists");
    assert_eq!(comments[0].id, posted.comment_id);
    assert_eq!(control.requests(COMMENTS).await?, 1, "no second POST");
    assert_eq!(
        control.requests(LIST_COMMENTS).await?,
        2,
        "check + this read"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_502_then_success_posts_exactly_one_comment() -> TestResult {
    let emulator = crate::support::emulator_with_issue().await?;
    let control = Control::new(&emulator)?;
    let repo = widgets()?;
    let github = client(&emulator, BOT, None)?;
    control
        .faults(json!([{"route": COMMENTS, "fault": "error", "status": 502, "times": 1}]))
        .await?;
    let event = event("op-502");
    let body = render_comment(&event, "half way");

    let posted = github
        .post_event(&repo, 1, &event, &body, PostMode::FirstTry)
        .await?;

    assert!(!posted.reused);
    let comments = github.issue_comments(&repo, 1).await?;
    assert_eq!(comments.len(), 1);
    assert_eq!(comments[0].id, posted.comment_id);
    assert_eq!(
        control.requests(COMMENTS).await?,
        2,
        "the 502 and the re-send"
    );
    Ok(())
}

fn project() -> ProjectConfig {
    ProjectConfig {
        owner: Some("acme".to_string()),
        number: 1,
        status_field: "Status".to_string(),
        status: ProjectStatusNames::default(),
    }
}

const READ_BACK: &str = "query CrewTestItemStatus($owner: String!, $repo: String!, $number: Int!) {
  repository(owner: $owner, name: $repo) {
    issue(number: $number) {
      projectItems(first: 10) {
        nodes {
          project { number }
          fieldValueByName(name: \"Status\") {
            __typename
            ... on ProjectV2ItemFieldSingleSelectValue { name }
          }
        }
      }
    }
  }
}";

async fn status_on_board(github: &GitHub) -> TestResult<Vec<Value>> {
    let data = github
        .graphql(
            READ_BACK,
            json!({"owner": "acme", "repo": "widgets", "number": 1}),
        )
        .await?;
    Ok(data["repository"]["issue"]["projectItems"]["nodes"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}

async fn graphql_requests(control: &Control) -> TestResult<u64> {
    control.requests("POST /graphql").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_status_adds_the_issue_and_is_cheap_when_already_right() -> TestResult {
    let emulator = crate::support::emulator_with_issue().await?;
    let control = Control::new(&emulator)?;
    let repo = widgets()?;
    let github = client(&emulator, BOT, None)?;
    let names = ProjectStatusNames::default();

    let ids: BoardIds = crew::github::Board::resolve_project(&github, &project(), "acme").await?;
    assert_eq!(graphql_requests(&control).await?, 1, "resolve: one query");
    assert_eq!(ids.options.len(), 5);

    control.reset_stats().await?;
    let working = board_status(State::Working).ok_or("working has a status")?;
    assert_eq!(working, StatusKey::InProgress);
    let change = github
        .set_status(&ids, &repo, 1, working.name(&names))
        .await?;
    assert_eq!(change, StatusChange::AddedAndSet);
    let first = graphql_requests(&control).await?;
    assert_eq!(first, 3, "item query + add + set");
    let items = status_on_board(&github).await?;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["project"]["number"], 1);
    assert_eq!(items[0]["fieldValueByName"]["name"], "In Progress");

    control.reset_stats().await?;
    let blocked = board_status(State::Blocked).ok_or("blocked has a status")?;
    let change = github
        .set_status(&ids, &repo, 1, blocked.name(&names))
        .await?;
    assert_eq!(change, StatusChange::Set);
    assert_eq!(graphql_requests(&control).await?, 2, "item query + set");
    let items = status_on_board(&github).await?;
    assert_eq!(items[0]["fieldValueByName"]["name"], "Blocked");

    control.reset_stats().await?;
    let change = github
        .set_status(&ids, &repo, 1, blocked.name(&names))
        .await?;
    assert_eq!(change, StatusChange::Unchanged);
    let stats = control.stats().await?;
    assert_eq!(stats["requests"], 1, "already right: one query, no write");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_are_mirrored_and_skipped_when_already_right() -> TestResult {
    let emulator = crate::support::emulator_with_issue().await?;
    let control = Control::new(&emulator)?;
    let repo = widgets()?;
    let github = client(&emulator, BOT, None)?;
    let crew_labels = |github: GitHub| async move {
        let issue = github.issue(&repo_of()?, 1).await?.ok_or("issue 1")?;
        let mut names: Vec<String> = issue
            .label_names()
            .filter(|name| name.starts_with("crew:"))
            .map(str::to_string)
            .collect();
        names.sort();
        TestResult::Ok(names)
    };

    // Working: one conditional GET of the issue, one POST (the label is created on the way).
    let change = github.mirror_labels(&repo, 1, State::Working).await?;
    assert_eq!(change.added.as_deref(), Some("crew:working"));
    let stats = control.stats().await?;
    assert_eq!(stats["requests"], 2, "{stats}");
    assert_eq!(crew_labels(github.clone()).await?, ["crew:working"]);

    // Blocked: GET + POST + DELETE of the stale label.
    control.reset_stats().await?;
    let change = github.mirror_labels(&repo, 1, State::Blocked).await?;
    assert_eq!(change.removed, ["crew:working"]);
    assert_eq!(control.stats().await?["requests"], 3);
    assert_eq!(crew_labels(github.clone()).await?, ["crew:blocked"]);

    // Already right: the GET only; with labels the caller already has, nothing at all.
    control.reset_stats().await?;
    let change = github.mirror_labels(&repo, 1, State::Blocked).await?;
    assert!(change.is_unchanged());
    assert_eq!(control.stats().await?["requests"], 1);
    control.reset_stats().await?;
    let change = github
        .mirror_labels_from(&repo, 1, State::Blocked, &["crew:blocked", "bug"])
        .await?;
    assert!(change.is_unchanged());
    assert_eq!(control.stats().await?["requests"], 0);

    // Completed: the crew label goes, others stay.
    let change = github.mirror_labels(&repo, 1, State::Completed).await?;
    assert_eq!(change.removed, ["crew:blocked"]);
    assert!(crew_labels(github.clone()).await?.is_empty());
    Ok(())
}

fn repo_of() -> TestResult<RepoSlug> {
    widgets()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_board_reads_ids_and_item_in_one_query() -> TestResult {
    let emulator = crate::support::emulator_with_issue().await?;
    let control = Control::new(&emulator)?;
    let repo = widgets()?;
    let github = client(&emulator, BOT, None)?;
    let board = Board::with(Some(project()), &repo, false);

    // Dispatch: ids + item (1 query), add (1), set (1).
    let change = board.set_state(&github, &repo, 1, State::Working).await?;
    assert_eq!(change, Some(StatusChange::AddedAndSet));
    assert_eq!(control.stats().await?["requests"], 3);
    let items = status_on_board(&github).await?;
    assert_eq!(items[0]["fieldValueByName"]["name"], "In Progress");

    control.reset_stats().await?;
    board.mirror(&github, &repo, 1, State::InReview).await?;
    assert_eq!(
        control.stats().await?["requests"],
        2,
        "ids kept: item + set"
    );

    control.reset_stats().await?;
    board.mirror(&github, &repo, 1, State::Approved).await?;
    assert_eq!(control.stats().await?["requests"], 1, "already In Review");
    let items = status_on_board(&github).await?;
    assert_eq!(items[0]["fieldValueByName"]["name"], "In Review");

    // Cancelled leaves the card alone: no request at all.
    control.reset_stats().await?;
    board.mirror(&github, &repo, 1, State::Cancelled).await?;
    assert_eq!(control.stats().await?["requests"], 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_project_the_board_mirrors_labels_only() -> TestResult {
    let emulator = crate::support::emulator_with_issue().await?;
    let control = Control::new(&emulator)?;
    let repo = widgets()?;
    let github = client(&emulator, BOT, None)?;
    let board = Board::with(None, &repo, true);

    board.mirror(&github, &repo, 1, State::NeedsHuman).await?;

    let stats = control.stats().await?;
    assert_eq!(stats["requests"], 2, "issue GET + label POST: {stats}");
    assert_eq!(control.requests("POST /graphql").await?, 0);
    let issue = github.issue(&repo, 1).await?.ok_or("issue 1")?;
    assert!(issue.label_names().any(|name| name == "crew:needs-human"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_owned_project_is_found_with_one_more_query() -> TestResult {
    let emulator = crate::support::emulator_with(|world| {
        if let Some(repo) = world.repos.first_mut() {
            repo.issues.push(github_emulator::world::WorldIssue {
                title: "Make widgets spin".to_string(),
                body: None,
                author: Some("maintainer".to_string()),
                labels: Vec::new(),
                assignees: Vec::new(),
                state: "open".to_string(),
                comments: Vec::new(),
            });
        }
        for project in &mut world.projects {
            project.owner = "maintainer".to_string();
        }
    })
    .await?;
    let control = Control::new(&emulator)?;
    let repo = widgets()?;
    let github = client(&emulator, BOT, None)?;
    let mut config = project();
    config.owner = Some("maintainer".to_string());
    let board = Board::with(Some(config), &repo, false);

    let change = board.set_state(&github, &repo, 1, State::Blocked).await?;

    assert_eq!(change, Some(StatusChange::AddedAndSet));
    assert_eq!(
        control.stats().await?["requests"],
        4,
        "org query, user query, add, set"
    );
    control.reset_stats().await?;
    board.set_state(&github, &repo, 1, State::Failed).await?;
    assert_eq!(control.stats().await?["requests"], 1, "Blocked already");
    Ok(())
}
