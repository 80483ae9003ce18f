//! The fault matrix of a dispatch (issue 8): for each GitHub operation `crew dispatch` performs (7),
//! inject a 502, a 504 (GitHub's gateway timeout), a secondary rate limit with `retry-after`,
//! and "the write was applied but its response was lost"; then primary-limit exhaustion. Each
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
        for (name, fault) in faults() {
            let mut rule = fault.clone();
            rule["route"] = json!(route);
            control.faults(json!([rule])).await?;
            let number = issue.to_string();
            let first = sandbox.crew(&["dispatch", &number]).await?;
            // The fault fired (a consumed rule is removed).
            let left = control.get("/_emulator/faults").await?;
            assert_eq!(
                left["rules"],
                json!([]),
                "{route} / {name}: the fault never fired"
            );
            control.clear_faults().await?;
            let outcome = match first.status.code() {
                Some(0) => "done".to_owned(),
                Some(3) => {
                    // A clear "GitHub failed" exit: the next run must finish the job.
                    let second = sandbox.crew(&["dispatch", &number]).await?;
                    assert_eq!(
                        second.status.code(),
                        Some(0),
                        "{route} / {name}: the rerun failed: {:?}",
                        text(&second)
                    );
                    "exit 3, rerun done".to_owned()
                }
                other => {
                    return Err(
                        format!("{route} / {name}: exit {other:?}: {:?}", text(&first)).into(),
                    );
                }
            };
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
    eprintln!(
        "| operation | fault | outcome |\n|---|---|---|\n{}",
        table.join("\n")
    );
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
        for (name, fault) in faults() {
            let number = issue.to_string();
            let mut rule = fault.clone();
            rule["route"] = json!(route);
            control.faults(json!([rule])).await?;
            let dispatched = sandbox.crew(&["dispatch", &number]).await?;
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
            let approved = sandbox.crew(&["approve", &number]).await?;
            assert!(approved.status.success(), "{:?}", text(&approved));
            let merged = sandbox.crew(&["merge", &number]).await?;
            let outcome = match merged.status.code() {
                Some(0) => "done",
                Some(3) => {
                    let again = sandbox.crew(&["merge", &number]).await?;
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
    eprintln!(
        "| operation | fault | outcome |\n|---|---|---|\n{}",
        table.join("\n")
    );
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
