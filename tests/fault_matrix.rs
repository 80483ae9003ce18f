//! The fault matrix of a dispatch (issue 8): for each GitHub operation `crew dispatch` performs (7),
//! inject a 502, a 504 (GitHub's gateway timeout), a secondary rate limit with `retry-after`,
//! "the write was applied but its response was lost", and "applied, but answered after the
//! client's timeout"; then primary-limit exhaustion. Each
//! case must end with the operation done exactly once (one lease at attempt 1, one `assigned`
//! comment, the label once) — at once, or after one more `crew dispatch` when the first exited
//! 3 — and never with a duplicate or a half-done state the next run cannot finish. The test
//! prints the matrix it observed.

use github_emulator::World;
use github_emulator::world::WorldIssue;
use serde_json::{Value, json};

use crate::support::sandbox::{Sandbox, text};
use crate::support::{Control, TestResult};

/// Every request a dispatch makes when labels mirror the state (7; a board adds one GraphQL
/// mutation, DESIGN.md 7 allows 8). The base branch's tip comes from the clone.
const ROUTES: [&str; 7] = [
    "GET /repos/{owner}/{repo}/issues/{issue_number}",
    "GET /repos/{owner}/{repo}/issues/{issue_number}/comments",
    "GET /repos/{owner}/{repo}/git/ref/{ref}",
    "POST /repos/{owner}/{repo}/git/commits",
    "POST /repos/{owner}/{repo}/git/refs",
    "POST /repos/{owner}/{repo}/issues/{issue_number}/comments",
    "POST /repos/{owner}/{repo}/issues/{issue_number}/labels",
];

fn faults() -> Vec<(&'static str, Value)> {
    vec![
        ("502", json!({"fault": "error", "status": 502, "times": 1})),
        ("504", json!({"fault": "error", "status": 504, "times": 1})),
        (
            "secondary limit",
            json!({"fault": "secondary_limit", "retry_after": 1, "times": 1}),
        ),
        (
            "response lost",
            json!({"fault": "drop_after_write", "times": 1}),
        ),
    ]
}

/// GitHub applying a write but answering only after the client gave up: the emulator holds the
/// response for 4 s, and the commands of that case run with `CREW_HTTP_TIMEOUT=1s`
/// ([`crew_in_case`]).
fn timeout() -> (&'static str, Value) {
    (
        "timeout",
        json!({"fault": "stall", "stall_ms": 4000, "times": 1}),
    )
}

/// `crew ARGS` for the case named `name`: with a 1 s request timeout for the `timeout` case
/// (inherited by the supervisor and the agent a dispatch starts).
async fn crew_in_case(
    sandbox: &Sandbox,
    name: &str,
    args: &[&str],
) -> TestResult<std::process::Output> {
    let mut command = sandbox.command(args);
    if name == "timeout" {
        command.env("CREW_HTTP_TIMEOUT", "1s");
    }
    Ok(tokio::process::Command::from(command).output().await?)
}

/// What a case's first run of `args` came to: done, or a clear "GitHub failed" exit 3 whose
/// rerun (the same command) must finish the job.
async fn done_or_rerun(
    sandbox: &Sandbox,
    name: &str,
    args: &[&str],
    first: &std::process::Output,
    label: &str,
) -> TestResult<String> {
    match first.status.code() {
        Some(0) => Ok("done".to_owned()),
        Some(3) => {
            let second = crew_in_case(sandbox, name, args).await?;
            assert_eq!(
                second.status.code(),
                Some(0),
                "{label} / {name}: the rerun failed: {:?}",
                text(&second)
            );
            Ok("exit 3, rerun done".to_owned())
        }
        other => Err(format!("{label} / {name}: exit {other:?}: {:?}", text(first)).into()),
    }
}

/// Prints a test's part of the matrix as a markdown table (`--nocapture` shows it).
fn print_matrix(rows: &[String]) {
    eprintln!(
        "| operation | fault | outcome |\n|---|---|---|\n{}",
        rows.join("\n")
    );
}

/// Open issues #10.. for the cases (the sandbox's own #1..#9 stay as they are).
fn many(world: &mut World) {
    if let Some(repo) = world.repos.first_mut() {
        // Issue numbers follow the world's list: these are #10..=#60.
        for _ in 10..=60 {
            repo.issues.push(WorldIssue {
                title: "A case of the fault matrix".to_owned(),
                body: None,
                author: Some("maintainer".to_owned()),
                labels: Vec::new(),
                assignees: Vec::new(),
                state: "open".to_owned(),
                comments: Vec::new(),
            });
        }
    }
}

/// What GitHub holds for `issue` after a case: (lease attempts, `assigned` comments, labels).
async fn effects(sandbox: &Sandbox, issue: u64) -> TestResult<(Vec<u32>, usize, Vec<String>)> {
    let leases: Vec<u32> = sandbox
        .lease_refs()
        .await?
        .into_iter()
        .filter(|(number, _, _)| *number == issue)
        .map(|(_, attempt, _)| attempt)
        .collect();
    let assigned = sandbox.assigned(issue).await?.len();
    let labels = sandbox
        .github
        .issue(&sandbox.repo, issue)
        .await?
        .map(|found| found.label_names().map(str::to_owned).collect())
        .unwrap_or_default();
    Ok((leases, assigned, labels))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dispatch_operation_survives_every_fault_exactly_once() -> TestResult {
    let sandbox = Sandbox::build(many, "sleep 30", "").await?;
    let control = Control::new(&sandbox.emulator)?;
    let mut issue = 10_u64;
    let mut table = Vec::new();
    for route in ROUTES {
        for (name, fault) in faults().into_iter().chain([timeout()]) {
            let mut rule = fault.clone();
            rule["route"] = json!(route);
            control.faults(json!([rule])).await?;
            let number = issue.to_string();
            let first = crew_in_case(&sandbox, name, &["dispatch", &number]).await?;
            // The fault fired (a consumed rule is removed).
            let left = control.get("/_emulator/faults").await?;
            assert_eq!(
                left["rules"],
                json!([]),
                "{route} / {name}: the fault never fired"
            );
            control.clear_faults().await?;
            let outcome =
                done_or_rerun(&sandbox, name, &["dispatch", &number], &first, route).await?;
            let (leases, assigned, labels) = effects(&sandbox, issue).await?;
            assert_eq!(leases, vec![1], "{route} / {name}: leases");
            assert_eq!(assigned, 1, "{route} / {name}: assigned comments");
            assert_eq!(
                labels
                    .iter()
                    .filter(|label| *label == "crew:working")
                    .count(),
                1,
                "{route} / {name}: labels {labels:?}"
            );
            table.push(format!("| {route} | {name} | {outcome} |"));
            let cancel = sandbox.crew(&["cancel", &number]).await?;
            assert!(cancel.status.success(), "{:?}", text(&cancel));
            issue += 1;
        }
    }

    // The primary limit exhausted: exit 3 before anything is written, then fine once it resets.
    control.rate_limit("crew-bot", "core", 0).await?;
    let number = issue.to_string();
    let limited = sandbox.crew(&["dispatch", &number]).await?;
    let (_, stderr) = text(&limited);
    assert_eq!(limited.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("rate limit"), "{stderr}");
    assert_eq!(effects(&sandbox, issue).await?, (Vec::new(), 0, Vec::new()));
    control.rate_limit("crew-bot", "core", 5000).await?;
    let after = sandbox.crew(&["dispatch", &number]).await?;
    assert!(after.status.success(), "{:?}", text(&after));
    table.push("| (every route) | primary limit exhausted | exit 3, nothing written; rerun after reset done |".to_owned());
    let cancel = sandbox.crew(&["cancel", &number]).await?;
    assert!(cancel.status.success(), "{:?}", text(&cancel));
    print_matrix(&table);
    Ok(())
}

/// The rest of an issue's life through the binary: the agent's `crew done` (push, PR, comment,
/// lease release), then `crew approve` and `crew merge` (merge, comment, lease read).
const LIFE_ROUTES: [&str; 5] = [
    "POST /repos/{owner}/{repo}/pulls",
    "GET /repos/{owner}/{repo}/pulls",
    "PATCH /repos/{owner}/{repo}/git/refs/{ref}",
    "PUT /repos/{owner}/{repo}/pulls/{pull_number}/merge",
    "GET /repos/{owner}/{repo}/pulls/{pull_number}",
];

/// The event kinds on `issue`, in order.
async fn kinds(sandbox: &Sandbox, issue: u64) -> TestResult<Vec<String>> {
    Ok(sandbox
        .comments(issue)
        .await?
        .iter()
        .filter_map(|(_, body)| {
            let start = body.find("\"kind\":\"")? + 8;
            Some(body[start..].split('"').next()?.to_owned())
        })
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rest_of_an_issues_life_survives_every_fault_exactly_once() -> TestResult {
    let crew = env!("CARGO_BIN_EXE_crew");
    let agent = format!(
        "{crew} start && echo $$ > work-$$.txt && git add . && git commit -qm work && {crew} done"
    );
    let sandbox = Sandbox::build(many, &agent, "").await?;
    let control = Control::new(&sandbox.emulator)?;
    let octocrab = octocrab::Octocrab::builder()
        .base_uri(sandbox.base_url.as_str())?
        .personal_token(crate::support::MAINTAINER.to_owned())
        .build()?;
    let mut issue = 10_u64;
    let mut table = Vec::new();
    for route in LIFE_ROUTES {
        for (name, fault) in faults().into_iter().chain([timeout()]) {
            let number = issue.to_string();
            let mut rule = fault.clone();
            rule["route"] = json!(route);
            control.faults(json!([rule])).await?;
            let dispatched = crew_in_case(&sandbox, name, &["dispatch", &number]).await?;
            assert!(dispatched.status.success(), "{:?}", text(&dispatched));
            let mut seen = Vec::new();
            for _ in 0..200 {
                seen = kinds(&sandbox, issue).await?;
                if seen
                    .last()
                    .is_some_and(|kind| kind == "in_review" || kind == "handover")
                {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            if seen != ["assigned", "started", "in_review"] {
                let logs = sandbox
                    .dir
                    .path()
                    .join(format!("widgets-worker-{issue}/.crew/logs"));
                let mut text = String::new();
                for entry in std::fs::read_dir(&logs).into_iter().flatten().flatten() {
                    text.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
                }
                return Err(format!("{route} / {name}: the agent's done: {seen:?}\n{text}").into());
            }
            let approved = crew_in_case(&sandbox, name, &["approve", &number]).await?;
            assert!(approved.status.success(), "{:?}", text(&approved));
            let merged = crew_in_case(&sandbox, name, &["merge", &number]).await?;
            let outcome = match merged.status.code() {
                Some(0) => "done",
                Some(3) => {
                    let again = crew_in_case(&sandbox, name, &["merge", &number]).await?;
                    assert!(
                        again.status.success(),
                        "{route} / {name}: {:?}",
                        text(&again)
                    );
                    "merge exit 3, rerun done"
                }
                other => {
                    return Err(format!(
                        "{route} / {name}: merge exit {other:?}: {:?}",
                        text(&merged)
                    )
                    .into());
                }
            };
            let left = control.get("/_emulator/faults").await?;
            assert_eq!(
                left["rules"],
                json!([]),
                "{route} / {name}: the fault never fired"
            );
            control.clear_faults().await?;
            assert_eq!(
                kinds(&sandbox, issue).await?,
                ["assigned", "started", "in_review", "approved", "completed"],
                "{route} / {name}"
            );
            let pulls: Value = octocrab
                .get(
                    "/repos/acme/widgets/pulls?state=all&per_page=100",
                    None::<&()>,
                )
                .await?;
            let mine: Vec<&Value> = pulls
                .as_array()
                .map(|pulls| {
                    pulls
                        .iter()
                        .filter(|pull| {
                            pull["body"].as_str().is_some_and(|body| {
                                body.contains(&format!("Closes #{issue}\n"))
                                    || body.ends_with(&format!("Closes #{issue}"))
                            })
                        })
                        .collect()
                })
                .unwrap_or_default();
            assert_eq!(mine.len(), 1, "{route} / {name}: pull requests {mine:?}");
            assert!(
                mine[0]["merged_at"].is_string(),
                "{route} / {name}: not merged"
            );
            table.push(format!("| {route} | {name} | {outcome} |"));
            issue += 1;
        }
    }
    print_matrix(&table);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_label_write_that_failed_for_good_is_repaired_by_the_next_fill() -> TestResult {
    let sandbox = Sandbox::new("sleep 30").await?;
    let control = Control::new(&sandbox.emulator)?;
    // Every label write fails during the dispatch, retries included: a warning, not a failure.
    control
        .faults(json!([{
            "route": "POST /repos/{owner}/{repo}/issues/{issue_number}/labels",
            "fault": "error", "status": 502, "times": 20,
        }]))
        .await?;
    let dispatched = sandbox.crew(&["dispatch", "3"]).await?;
    let (stdout, stderr) = text(&dispatched);
    assert!(dispatched.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("board or labels"), "{stderr}");
    control.clear_faults().await?;
    let labels = |issue: Option<crew::github::Issue>| -> Vec<String> {
        issue
            .map(|found| found.label_names().map(str::to_owned).collect())
            .unwrap_or_default()
    };
    assert!(labels(sandbox.github.issue(&sandbox.repo, 3).await?).is_empty());
    // The next fill notices from what it already read, and writes the label once.
    let filled = sandbox.crew(&["fill", "--max", "0", "--json"]).await?;
    let (stdout, stderr) = text(&filled);
    assert!(filled.status.success(), "{stdout}\n{stderr}");
    let view: Value = serde_json::from_str(&stdout)?;
    assert_eq!(view["labels_fixed"], json!([3]), "{view}");
    assert_eq!(
        labels(sandbox.github.issue(&sandbox.repo, 3).await?),
        ["crew:working"]
    );
    // Nothing left to fix, and nothing written for it.
    control.reset_stats().await?;
    let again = sandbox.crew(&["fill", "--max", "0", "--json"]).await?;
    let view: Value = serde_json::from_str(&text(&again).0)?;
    assert_eq!(view["labels_fixed"], json!([]), "{view}");
    assert_eq!(
        control
            .requests("POST /repos/{owner}/{repo}/issues/{issue_number}/labels")
            .await?,
        0
    );
    let cancel = sandbox.crew(&["cancel", "3"]).await?;
    assert!(cancel.status.success(), "{:?}", text(&cancel));
    Ok(())
}

/// crew.toml lines that put the sandbox's issues on the default world's project 1.
const BOARD: &str = "\n[project]\nowner = \"acme\"\nnumber = 1\n";

const READ_BOARD: &str = "query CrewTestBoard($owner: String!, $repo: String!, $number: Int!) {
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

/// The Status of each of `issue`'s items on project 1 (one entry per item; `None`: no status).
async fn board(github: &crew::github::GitHub, issue: u64) -> TestResult<Vec<Option<String>>> {
    let data = github
        .graphql(
            READ_BOARD,
            json!({"owner": "acme", "repo": "widgets", "number": issue}),
        )
        .await?;
    Ok(data["repository"]["issue"]["projectItems"]["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|item| item["project"]["number"] == 1)
        .map(|item| item["fieldValueByName"]["name"].as_str().map(str::to_owned))
        .collect())
}

/// Every GraphQL operation crew's board writes send.
const BOARD_OPERATIONS: [&str; 5] = [
    "CrewBoardItem",
    "CrewBoardItemOrg",
    "CrewBoardItemUser",
    "CrewBoardAdd",
    "CrewBoardSetStatus",
];

/// A fault rule on each board operation: still all there after a run, no board request was made.
fn board_tripwires() -> Value {
    BOARD_OPERATIONS
        .iter()
        .map(|operation| {
            json!({"route": "POST /graphql", "operation": operation, "fault": "error", "status": 500, "times": 1})
        })
        .collect()
}

/// The operations whose fault rules were not hit (yet).
async fn tripwires_left(control: &Control) -> TestResult<Vec<String>> {
    let left = control.get("/_emulator/faults").await?;
    Ok(left["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|rule| rule["operation"].as_str().map(str::to_owned))
        .collect())
}

fn in_progress() -> Vec<Option<String>> {
    vec![Some("In Progress".to_owned())]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_board_write_that_failed_for_good_is_repaired_by_the_next_fill() -> TestResult {
    let sandbox = Sandbox::with_config("sleep 30", BOARD).await?;
    let control = Control::new(&sandbox.emulator)?;
    // Every board request fails during the dispatch, retries included: a warning, not a failure.
    control
        .faults(json!([{
            "route": "POST /graphql", "fault": "error", "status": 502, "times": 20,
        }]))
        .await?;
    let dispatched = sandbox.crew(&["dispatch", "3"]).await?;
    let (stdout, stderr) = text(&dispatched);
    assert!(dispatched.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("board or labels"), "{stderr}");
    control.clear_faults().await?;
    assert_eq!(
        board(&sandbox.github, 3).await?,
        Vec::<Option<String>>::new()
    );

    // The next fill knows from its cache that the write is owed, and writes it once.
    let filled = sandbox.crew(&["fill", "--max", "0", "--json"]).await?;
    let (stdout, stderr) = text(&filled);
    assert!(filled.status.success(), "{stdout}\n{stderr}");
    let view: Value = serde_json::from_str(&stdout)?;
    assert_eq!(view["board_fixed"], json!([3]), "{view}\n{stderr}");
    assert_eq!(board(&sandbox.github, 3).await?, in_progress());

    // Nothing left to fix, and nothing asked of the board for it: not even a read. (A fill may
    // ask GraphQL for sub-issue relations; tripwires on every board operation tell them apart.)
    control.faults(board_tripwires()).await?;
    let again = sandbox.crew(&["fill", "--max", "0", "--json"]).await?;
    let (stdout, stderr) = text(&again);
    assert!(again.status.success(), "{stdout}\n{stderr}");
    let view: Value = serde_json::from_str(&stdout)?;
    assert_eq!(view["board_fixed"], json!([]), "{view}");
    assert_eq!(tripwires_left(&control).await?, BOARD_OPERATIONS);
    control.clear_faults().await?;

    // The issue moves on where this host recorded nothing (events of the attempt, as a runner
    // elsewhere would post them): the next fill sees the recorded status behind the folded
    // state and writes it, by the item it knows — the set-status mutation alone (its tripwire
    // is hit and retried; the query's and the add's stay).
    let (_, attempt, worker) = sandbox
        .lease_refs()
        .await?
        .into_iter()
        .find(|(issue, _, _)| *issue == 3)
        .ok_or("no lease on #3")?;
    for (op, body) in [
        (
            "op-elsewhere-started",
            crew::protocol::EventBody::Started {},
        ),
        (
            "op-elsewhere-blocked",
            crew::protocol::EventBody::Blocked {
                question: "which way?".to_owned(),
            },
        ),
    ] {
        let event = crew::protocol::Event {
            issue: 3,
            attempt: u64::from(attempt),
            worker: worker.clone(),
            op: op.to_owned(),
            at: chrono::Utc::now(),
            body,
        };
        sandbox
            .github
            .create_issue_comment(
                &sandbox.repo,
                3,
                &crew::protocol::render_comment(&event, "elsewhere"),
                None,
            )
            .await?;
    }
    control.faults(board_tripwires()).await?;
    let moved = sandbox.crew(&["fill", "--max", "0", "--json"]).await?;
    let (stdout, stderr) = text(&moved);
    assert!(moved.status.success(), "{stdout}\n{stderr}");
    let view: Value = serde_json::from_str(&stdout)?;
    assert_eq!(view["board_fixed"], json!([3]), "{view}\n{stderr}");
    assert_eq!(
        tripwires_left(&control).await?,
        BOARD_OPERATIONS[..4].to_vec()
    );
    control.clear_faults().await?;
    assert_eq!(
        board(&sandbox.github, 3).await?,
        [Some("Blocked".to_owned())]
    );

    let cancel = sandbox.crew(&["cancel", "3"]).await?;
    assert!(cancel.status.success(), "{:?}", text(&cancel));
    eprintln!(
        "| operation | fault | outcome |\n|---|---|---|\n| board writes of a dispatch (every GraphQL request) | 502 × 20 | dispatch done with a warning; next `fill` `board_fixed: [3]`, In Progress once; the fill after: no board request |\n| board status moved on elsewhere (nothing recorded here) | — | next `fill` `board_fixed: [3]` by one set-status mutation (item known) |"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_item_costs_one_mutation_and_a_removed_one_is_added_again() -> TestResult {
    use crew::github::{Board, RepoSlug, StatusChange};
    use crew::protocol::State;
    use crew::settings::{ProjectConfig, ProjectStatusNames};

    let emulator = crate::support::emulator_with_issue().await?;
    let control = Control::new(&emulator)?;
    let cache = crew::cache::Cache::in_memory().await?;
    let github = crate::support::client(&emulator, crate::support::BOT, Some(cache.clone()))?;
    let repo: RepoSlug = "acme/widgets".parse()?;
    let project = ProjectConfig {
        owner: Some("acme".to_owned()),
        number: 1,
        status_field: "Status".to_owned(),
        status: ProjectStatusNames::default(),
    };
    // Each command makes its own `Board`: what carries over is the cache.
    let board_of_a_command = || Board::with(Some(project.clone()), &repo, false);
    let first = board_of_a_command()
        .set_state(&github, &repo, 1, State::Working)
        .await?;
    assert_eq!(first, Some(StatusChange::AddedAndSet));
    let row = cache.board_row("acme/1", 1).await?.ok_or("no board row")?;
    assert_eq!(row.status.as_deref(), Some("In Progress"));
    assert!(row.item_id.is_some() && row.wanted.is_none(), "{row:?}");

    // The item and the project's ids are known: one mutation, no query.
    control.reset_stats().await?;
    board_of_a_command()
        .set_state(&github, &repo, 1, State::Blocked)
        .await?;
    assert_eq!(control.requests("POST /graphql").await?, 1);
    assert_eq!(board(&github, 1).await?, [Some("Blocked".to_owned())]);

    // Someone removed the card on GitHub: the mutation fails, the full path adds it again, once.
    emulator.with_state(|state| {
        for project in &mut state.data.projects {
            project.items.clear();
        }
    });
    control.reset_stats().await?;
    let again = board_of_a_command()
        .set_state(&github, &repo, 1, State::InReview)
        .await?;
    assert_eq!(again, Some(StatusChange::AddedAndSet));
    // The failed mutation, the item query (with the project's ids), the add, the set.
    assert_eq!(control.requests("POST /graphql").await?, 4);
    assert_eq!(board(&github, 1).await?, [Some("In Review".to_owned())]);
    let newer = cache.board_row("acme/1", 1).await?.ok_or("no board row")?;
    assert!(
        newer.item_id.is_some() && newer.item_id != row.item_id,
        "{newer:?}"
    );
    assert_eq!(newer.status.as_deref(), Some("In Review"));
    eprintln!(
        "| board status write, item known | (none) | 1 mutation |\n| board status write, item removed on GitHub | NOT_FOUND | full path: query, add, set; one item |"
    );
    Ok(())
}

/// The board requests of a dispatch, each targeted alone by its GraphQL operation (the item
/// query is `CrewBoardItemOrg` in a process that has not kept the project's ids yet and
/// `CrewBoardItem` after; both select `repository`).
const BOARD_CASES: [(&str, &str); 3] = [
    ("item query (`repository`)", "repository"),
    ("`addProjectV2ItemById`", "addProjectV2ItemById"),
    (
        "`updateProjectV2ItemFieldValue`",
        "updateProjectV2ItemFieldValue",
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_board_operation_of_a_dispatch_survives_every_fault_exactly_once() -> TestResult {
    let sandbox = Sandbox::build(many, "sleep 30", BOARD).await?;
    let control = Control::new(&sandbox.emulator)?;
    let mut issue = 10_u64;
    let mut table = Vec::new();
    // Beyond the one-off faults: the operation failing for good (every retry too).
    let mut cases = faults();
    cases.push(timeout());
    cases.push((
        "502 for good",
        json!({"fault": "error", "status": 502, "times": 20}),
    ));
    for (label, operation) in BOARD_CASES {
        for (name, fault) in cases.clone() {
            let mut rule = fault.clone();
            rule["route"] = json!("POST /graphql");
            rule["operation"] = json!(operation);
            control.faults(json!([rule])).await?;
            let number = issue.to_string();
            let first = crew_in_case(&sandbox, name, &["dispatch", &number]).await?;
            let left = control.get("/_emulator/faults").await?;
            assert!(
                left["rules"].as_array().is_none_or(|rules| rules
                    .iter()
                    .all(|rule| rule["times"].as_u64() < fault["times"].as_u64())),
                "{label} / {name}: the fault never fired: {left}"
            );
            control.clear_faults().await?;
            let outcome = match first.status.code() {
                Some(0) if text(&first).1.contains("board or labels") => {
                    // Given up on for now: the next fill must put it right.
                    let filled = sandbox.crew(&["fill", "--max", "0", "--json"]).await?;
                    let view: Value = serde_json::from_str(&text(&filled).0)?;
                    assert_eq!(view["board_fixed"], json!([issue]), "{label} / {name}");
                    "dispatch warned; next fill fixed it".to_owned()
                }
                _ => done_or_rerun(&sandbox, name, &["dispatch", &number], &first, label).await?,
            };
            let (leases, assigned, _) = effects(&sandbox, issue).await?;
            assert_eq!(leases, vec![1], "{label} / {name}: leases");
            assert_eq!(assigned, 1, "{label} / {name}: assigned comments");
            assert_eq!(
                board(&sandbox.github, issue).await?,
                in_progress(),
                "{label} / {name}: one item, In Progress"
            );
            table.push(format!("| board: {label} | {name} | {outcome} |"));
            let cancel = sandbox.crew(&["cancel", &number]).await?;
            assert!(cancel.status.success(), "{:?}", text(&cancel));
            issue += 1;
        }
    }
    print_matrix(&table);
    Ok(())
}

/// A scripted agent that starts, waits for `.crew/go` to name an agent-side command, runs it,
/// and runs it once more if it exited 3 (as the worker prompt tells an agent to; here once the
/// test says GitHub is back, by `.crew/rerun`), recording each exit code in `.crew/rc`.
fn agent_script() -> String {
    // No braces: crew.toml reads `{name}` in an agent's command as a placeholder.
    let crew = env!("CARGO_BIN_EXE_crew");
    format!(
        "C={crew}
$C start || exit 1
touch .crew/ready
until [ -f .crew/go ]; do sleep 0.05; done
CMD=$(cat .crew/go)
if [ \"$CMD\" = handover ]; then echo wip > wip.txt; fi
for try in 1 2; do
  case \"$CMD\" in
    progress) $C progress 'half way' ;;
    blocked) $C blocked 'which way?' ;;
    handover) $C handover --summary 'half done' ;;
  esac
  rc=$?; echo $rc >> .crew/rc
  if [ $rc != 3 ]; then break; fi
  touch .crew/exit3
  until [ -f .crew/rerun ]; do sleep 0.05; done
done
touch .crew/script-done
sleep 30"
    )
}

/// Waits (up to 20 s) for `path` to exist.
async fn wait_for(path: &std::path::Path) -> TestResult {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !path.exists() {
        if std::time::Instant::now() > deadline {
            return Err(format!("{} never appeared", path.display()).into());
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Whether every rule of `set` was hit: gone, or with fewer `times` left.
fn fired(set: &Value, left: &Value) -> bool {
    set.as_array().into_iter().flatten().all(|rule| {
        left["rules"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|other| other["route"] == rule["route"] && other["fault"] == rule["fault"])
            .all(|other| other["times"].as_u64() < rule["times"].as_u64())
    })
}

/// Runs `command` in the agent of a fresh issue with `rules` set once the agent has started
/// (cleared when the command exits 3, before the agent reruns it); checks the command's event
/// is on the issue exactly once; returns the outcome for the table.
async fn agent_case(
    sandbox: &Sandbox,
    control: &Control,
    issue: u64,
    command: &str,
    rules: Value,
) -> TestResult<String> {
    let number = issue.to_string();
    let case = format!("{command} / {rules}");
    // The agent inherits the dispatch's environment, its request timeout included.
    let stalls = rules.to_string().contains("\"stall\"");
    let dispatched = crew_in_case(
        sandbox,
        if stalls { "timeout" } else { "" },
        &["dispatch", &number],
    )
    .await?;
    assert!(dispatched.status.success(), "{:?}", text(&dispatched));
    let crew_dir = sandbox
        .dir
        .path()
        .join(format!("widgets-worker-{issue}/.crew"));
    wait_for(&crew_dir.join("ready")).await?;
    control.faults(rules.clone()).await?;
    std::fs::write(crew_dir.join("go"), command)?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !crew_dir.join("script-done").exists() {
        if crew_dir.join("exit3").exists() && !crew_dir.join("rerun").exists() {
            control.clear_faults().await?;
            std::fs::write(crew_dir.join("rerun"), "")?;
        }
        if std::time::Instant::now() > deadline {
            return Err(format!("{case}: the agent never finished").into());
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let left = control.get("/_emulator/faults").await?;
    assert!(
        fired(&rules, &left),
        "{case}: the fault never fired: {left}"
    );
    control.clear_faults().await?;
    let codes = std::fs::read_to_string(crew_dir.join("rc"))?;
    let outcome = match codes.split_whitespace().collect::<Vec<_>>().as_slice() {
        ["0"] => "done",
        ["3", "0"] => "exit 3, rerun by the agent done",
        other => {
            let log = std::fs::read_dir(crew_dir.join("logs"))
                .into_iter()
                .flatten()
                .flatten()
                .map(|entry| std::fs::read_to_string(entry.path()).unwrap_or_default())
                .collect::<String>();
            return Err(format!("{case}: exit codes {other:?}\n{log}").into());
        }
    };
    let seen = kinds(sandbox, issue).await?;
    assert_eq!(
        seen.iter().filter(|kind| *kind == command).count(),
        1,
        "{case}: {seen:?}"
    );
    assert_eq!(seen[..2], ["assigned", "started"], "{case}: {seen:?}");
    let cancel = sandbox.crew(&["cancel", &number]).await?;
    assert!(cancel.status.success(), "{case}: {:?}", text(&cancel));
    Ok(outcome.to_owned())
}

const COMMENTS: &str = "POST /repos/{owner}/{repo}/issues/{issue_number}/comments";

/// The faults of an agent-side write on `route`, each a list of rules: the five one-off faults,
/// the write failing for good until the agent's rerun, and (on the comments route) the
/// comment posted but its response lost *and* the look for it failing, so the command cannot
/// know and exits 3 — the case where only a rerun that finds its own comment avoids a second.
fn agent_faults(route: &str, with_blind_rerun: bool) -> Vec<(&'static str, Value)> {
    let mut cases: Vec<(&'static str, Value)> = faults()
        .into_iter()
        .chain([timeout()])
        .map(|(name, mut rule)| {
            rule["route"] = json!(route);
            (name, json!([rule]))
        })
        .collect();
    cases.push((
        "502 until the rerun",
        json!([{"route": route, "fault": "error", "status": 502, "times": 20}]),
    ));
    if route == COMMENTS && with_blind_rerun {
        cases.push((
            "response lost, then the look for it fails until the rerun",
            json!([
                {"route": route, "fault": "drop_after_write", "times": 1},
                {"route": "GET /repos/{owner}/{repo}/issues/{issue_number}/comments",
                 "fault": "error", "status": 502, "times": 20},
            ]),
        ));
    }
    cases
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agents_progress_and_blocked_survive_every_fault_exactly_once() -> TestResult {
    let sandbox = Sandbox::build(many, &agent_script(), "").await?;
    let control = Control::new(&sandbox.emulator)?;
    let mut issue = 10_u64;
    let mut table = Vec::new();
    for command in ["progress", "blocked"] {
        for (name, rules) in agent_faults(COMMENTS, false) {
            let outcome = agent_case(&sandbox, &control, issue, command, rules).await?;
            table.push(format!(
                "| `crew {command}`: {COMMENTS} | {name} | {outcome} |"
            ));
            issue += 1;
        }
    }
    print_matrix(&table);
    Ok(())
}

/// `crew progress` and `crew blocked` are a new fact each call, so each gets a fresh op; a
/// rerun after an exit 3 that came *after* GitHub applied the comment must still not post a
/// second one (`.crew/pending-<kind>` keeps the op for a rerun with the same text).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agents_progress_and_blocked_rerun_blind_after_a_lost_response_exactly_once()
-> TestResult {
    let sandbox = Sandbox::build(many, &agent_script(), "").await?;
    let control = Control::new(&sandbox.emulator)?;
    let mut table = Vec::new();
    for (issue, command) in (10_u64..).zip(["progress", "blocked"]) {
        let (name, rules) = agent_faults(COMMENTS, true)
            .pop()
            .ok_or("no blind-rerun case")?;
        let outcome = agent_case(&sandbox, &control, issue, command, rules).await?;
        table.push(format!(
            "| `crew {command}`: {COMMENTS} | {name} | {outcome} |"
        ));
    }
    print_matrix(&table);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agents_handover_survives_every_fault_exactly_once() -> TestResult {
    let sandbox = Sandbox::build(many, &agent_script(), "").await?;
    let control = Control::new(&sandbox.emulator)?;
    let mut issue = 10_u64;
    let mut table = Vec::new();
    // The handover posts its event, then releases the lease (a fast-forward of its ref).
    for route in [COMMENTS, "PATCH /repos/{owner}/{repo}/git/refs/{ref}"] {
        for (name, rules) in agent_faults(route, true) {
            let outcome = agent_case(&sandbox, &control, issue, "handover", rules).await?;
            // Released once: the lease is at attempt 1 and released.
            let lease = sandbox
                .github
                .leases(&sandbox.repo, crate::support::sandbox::PREFIX)
                .await?
                .into_iter()
                .find(|observed| observed.issue == issue)
                .and_then(|observed| observed.lease.ok())
                .ok_or("no lease")?;
            assert_eq!(lease.attempt, 1, "{route} / {name}");
            table.push(format!("| `crew handover`: {route} | {name} | {outcome} |"));
            issue += 1;
        }
    }
    print_matrix(&table);
    Ok(())
}

/// The reads of a cycle: the sync's two lists...
const SYNC_ROUTES: [&str; 2] = [
    "GET /repos/{owner}/{repo}/issues",
    "GET /repos/{owner}/{repo}/issues/comments",
];

/// ...and the leases (the refs, then each new lease commit's message).
const LEASE_ROUTES: [&str; 2] = [
    "GET /repos/{owner}/{repo}/git/matching-refs/{ref}",
    "GET /repos/{owner}/{repo}/git/commits/{commit_sha}",
];

/// Something new on every list a cycle reads: a retitled issue, an event on a live attempt, and
/// a new (released) lease of a fresh issue, made by another host.
async fn change_everything(
    sandbox: &Sandbox,
    maintainer: &octocrab::Octocrab,
    round: u64,
) -> TestResult {
    maintainer
        .issues("acme", "widgets")
        .update(4)
        .title(&format!("Make widgets spin, take {round}"))
        .send()
        .await?;
    let (_, attempt, worker) = sandbox
        .lease_refs()
        .await?
        .into_iter()
        .find(|(issue, _, _)| *issue == 3)
        .ok_or("no lease on #3")?;
    let event = crew::protocol::Event {
        issue: 3,
        attempt: u64::from(attempt),
        worker,
        op: format!("op-read-matrix-{round}"),
        at: chrono::Utc::now(),
        body: crew::protocol::EventBody::Progress {
            message: format!("round {round}"),
        },
    };
    sandbox
        .github
        .create_issue_comment(
            &sandbox.repo,
            3,
            &crew::protocol::render_comment(&event, "progress"),
            None,
        )
        .await?;
    // From another host (its own cache), so this host has not seen the lease commits.
    let fresh = (10 + round).to_string();
    for step in [["dispatch", &fresh], ["cancel", &fresh]] {
        let mut command = sandbox.command(&step);
        command
            .env("CREW_HOST", "desktop")
            .env("CREW_CACHE_DIR", sandbox.dir.path().join("desktop-cache"));
        let output = tokio::process::Command::from(command).output().await?;
        assert!(output.status.success(), "{step:?}: {:?}", text(&output));
    }
    Ok(())
}

/// `args` (a read with `--json`) with `CREW_CACHE_DIR` at `cache` (the sandbox's when `None`).
async fn read(sandbox: &Sandbox, args: &[&str], cache: Option<&str>) -> TestResult<Output> {
    let mut command = sandbox.command(args);
    if let Some(cache) = cache {
        command.env("CREW_CACHE_DIR", sandbox.dir.path().join(cache));
    }
    Ok(tokio::process::Command::from(command).output().await?)
}

use std::process::Output;

/// Every read route × every fault under `args`: the output equals a run with a fresh cache and
/// no fault — at once (retried), or after exit 3 and a rerun — and the cache is right after.
/// `seen` tells whether an output shows round `round`'s changes.
async fn reads_survive_every_fault(
    args: &[&str],
    routes: [&str; 2],
    seen: fn(&Value, u64) -> bool,
) -> TestResult {
    let sandbox = Sandbox::build(many, "sleep 30", "").await?;
    let control = Control::new(&sandbox.emulator)?;
    let maintainer = octocrab::Octocrab::builder()
        .base_uri(sandbox.base_url.as_str())?
        .personal_token(crate::support::MAINTAINER.to_owned())
        .build()?;
    let dispatched = sandbox.crew(&["dispatch", "3"]).await?;
    assert!(dispatched.status.success(), "{:?}", text(&dispatched));
    let warm = read(&sandbox, args, None).await?;
    assert!(warm.status.success(), "{:?}", text(&warm));
    let mut cases = faults();
    cases.push((
        "502 for good",
        json!({"fault": "error", "status": 502, "times": 20}),
    ));
    let mut round = 0_u64;
    let mut table = Vec::new();
    for route in routes {
        for (name, fault) in cases.clone() {
            round += 1;
            change_everything(&sandbox, &maintainer, round).await?;
            let mut rule = fault.clone();
            rule["route"] = json!(route);
            control.faults(json!([rule])).await?;
            let first = read(&sandbox, args, None).await?;
            let left = control.get("/_emulator/faults").await?;
            assert!(
                fired(&json!([rule]), &left),
                "{route} / {name}: the fault never fired"
            );
            control.clear_faults().await?;
            let (got, outcome) = match first.status.code() {
                Some(0) => (text(&first).0, "same output (retried)"),
                Some(3) => {
                    let stderr = text(&first).1;
                    assert!(
                        stderr.contains("GitHub") && stderr.contains("502"),
                        "{route} / {name}: not a clear message: {stderr}"
                    );
                    let again = read(&sandbox, args, None).await?;
                    assert!(
                        again.status.success(),
                        "{route} / {name}: {:?}",
                        text(&again)
                    );
                    (
                        text(&again).0,
                        "exit 3 naming GitHub's 502; rerun same output",
                    )
                }
                other => {
                    return Err(
                        format!("{route} / {name}: exit {other:?}: {:?}", text(&first)).into(),
                    );
                }
            };
            let reference = read(&sandbox, args, Some(&format!("fresh-{round}"))).await?;
            assert!(reference.status.success(), "{:?}", text(&reference));
            let reference = text(&reference).0;
            let got: Value = serde_json::from_str(&got)?;
            let reference: Value = serde_json::from_str(&reference)?;
            assert_eq!(got, reference, "{route} / {name}: output");
            assert!(
                seen(&got, round),
                "{route} / {name}: the change is not seen: {got}"
            );
            // The cache holds what GitHub holds: the next run reads the same.
            let next = read(&sandbox, args, None).await?;
            let next: Value = serde_json::from_str(&text(&next).0)?;
            assert_eq!(next, reference, "{route} / {name}: the next run");
            let shown: Vec<&str> = args
                .iter()
                .copied()
                .filter(|arg| *arg != "--json")
                .collect();
            table.push(format!(
                "| `crew {}`: {route} | {name} | {outcome} |",
                shown.join(" ")
            ));
        }
    }
    let cancel = sandbox.crew(&["cancel", "3"]).await?;
    assert!(cancel.status.success(), "{:?}", text(&cancel));
    print_matrix(&table);
    Ok(())
}

/// Status lists the issues crew worked on: the fresh issue's lease and cancellation.
fn status_sees(view: &Value, round: u64) -> bool {
    view["issues"].as_array().is_some_and(|issues| {
        issues
            .iter()
            .any(|issue| issue["issue"] == 10 + round && issue["state"] == "cancelled")
    })
}

/// The plan names the ready issues by title: #4's new one.
fn plan_sees(view: &Value, round: u64) -> bool {
    view["plan"]
        .to_string()
        .contains(&format!("Make widgets spin, take {round}"))
}

const STATUS: [&str; 2] = ["status", "--json"];
const FILL_DRY_RUN: [&str; 3] = ["fill", "--dry-run", "--json"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_sync_reads_survive_every_fault_and_leave_the_cache_right() -> TestResult {
    reads_survive_every_fault(&STATUS, SYNC_ROUTES, status_sees).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_lease_reads_survive_every_fault_and_leave_the_cache_right() -> TestResult {
    reads_survive_every_fault(&STATUS, LEASE_ROUTES, status_sees).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fill_dry_run_sync_reads_survive_every_fault_and_leave_the_cache_right() -> TestResult {
    reads_survive_every_fault(&FILL_DRY_RUN, SYNC_ROUTES, plan_sees).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fill_dry_run_lease_reads_survive_every_fault_and_leave_the_cache_right() -> TestResult {
    reads_survive_every_fault(&FILL_DRY_RUN, LEASE_ROUTES, plan_sees).await
}

/// `CREW_HTTP_TIMEOUT` is honoured: a read GitHub holds past it is given up and sent again (two
/// requests on the route, the answer the same as without the fault); a value that is not a
/// duration is refused naming the variable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_held_past_crew_http_timeout_is_given_up_and_retried() -> TestResult {
    let sandbox = Sandbox::new("sleep 30").await?;
    let control = Control::new(&sandbox.emulator)?;
    let route = "GET /repos/{owner}/{repo}/issues";
    let expected = sandbox.crew(&["status", "--json"]).await?;
    assert!(expected.status.success(), "{:?}", text(&expected));

    // A fresh cache, so the list is read in full again.
    let cache = sandbox.dir.path().join("cache");
    std::fs::remove_dir_all(&cache)?;
    control.reset_stats().await?;
    let (_, timeout) = timeout();
    let mut rule = timeout;
    rule["route"] = json!(route);
    control.faults(json!([rule])).await?;
    let held = crew_in_case(&sandbox, "timeout", &["status", "--json"]).await?;
    let (stdout, stderr) = text(&held);
    assert!(held.status.success(), "{stdout}\n{stderr}");
    assert_eq!(stdout, text(&expected).0);
    assert_eq!(
        control.requests(route).await?,
        2,
        "the held request was not given up after CREW_HTTP_TIMEOUT"
    );

    let mut command = sandbox.command(&["status"]);
    command.env("CREW_HTTP_TIMEOUT", "soon");
    let refused = tokio::process::Command::from(command).output().await?;
    let (_, stderr) = text(&refused);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("CREW_HTTP_TIMEOUT"), "{stderr}");
    Ok(())
}
