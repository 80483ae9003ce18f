//! The Actions runner: with `/_emulator/actions/runner` configured, an accepted
//! `workflow_dispatch` is also executed as a local process with the inputs substituted, and its
//! exit is reported; refused dispatches and other workflows run nothing; the API answers the same.

use std::time::{Duration, Instant};

use crate::support::*;
use http::{Method, StatusCode};
use serde_json::{Value, json};

const WORKER: &str = "/repos/acme/widgets/actions/workflows/crew-worker.yml/dispatches";
const OTHER: &str = "/repos/acme/widgets/actions/workflows/other.yml/dispatches";

/// The runner's runs once `count` of them have ended (panics after a few seconds).
async fn ended_runs(gh: &TestGitHub, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = gh
            .control(Method::GET, "/_emulator/actions/runner", None)
            .await;
        let runs = answer.body["runs"].as_array().cloned().unwrap_or_default();
        let ended = runs
            .iter()
            .filter(|run| run["status"] == "exited" || run["status"] == "failed")
            .count();
        if ended >= count {
            return runs;
        }
        assert!(Instant::now() < deadline, "runs never ended: {runs:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_configured_runner_runs_each_dispatch_of_its_workflow_with_the_inputs() {
    let gh = TestGitHub::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("ran");

    // Without a runner, a dispatch is only recorded.
    let answer = gh
        .post(
            BOT,
            WORKER,
            json!({"ref": "main", "inputs": {"issue": "1"}}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT);
    let runner = gh
        .control(Method::GET, "/_emulator/actions/runner", None)
        .await;
    assert_eq!(runner.body, json!({"runner": null, "runs": []}));

    let bad = gh
        .control(
            Method::POST,
            "/_emulator/actions/runner",
            Some(json!({"command": []})),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    let set = gh
        .control(
            Method::POST,
            "/_emulator/actions/runner",
            Some(json!({
                "command": ["sh", "-c", "echo \"$0 {issue} {attempt} {ref} {workflow} $WHO\" >> \"$OUT\"; exit {attempt}", "job"],
                "cwd": dir.path(),
                "env": {"OUT": out, "WHO": "runner-{issue}"},
                "workflow": "crew-worker.yml",
            })),
        )
        .await;
    assert_eq!(set.status, StatusCode::NO_CONTENT, "{:?}", set.body);

    for (issue, attempt) in [("7", "2"), ("8", "3")] {
        let answer = gh
            .post(
                BOT,
                WORKER,
                json!({"ref": "main", "inputs": {"issue": issue, "attempt": attempt}}),
            )
            .await;
        assert_eq!(answer.status, StatusCode::NO_CONTENT);
        assert_eq!(
            answer.body,
            Value::Null,
            "the API answers as without a runner"
        );
    }
    gh.assert_contract();
    // Refused (a 422 GitHub's description of the operation omits, so drained from the contract
    // check), or of another workflow: nothing runs.
    let refused = gh
        .post(
            BOT,
            WORKER,
            json!({"ref": "nope", "inputs": {"issue": "9"}}),
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    let drained = gh.emulator.take_recorded();
    assert!(drained.iter().all(|recorded| recorded.status == 422));
    let other = gh
        .post(BOT, OTHER, json!({"ref": "main", "inputs": {"issue": "9"}}))
        .await;
    assert_eq!(other.status, StatusCode::NO_CONTENT);

    let runs = ended_runs(&gh, 2).await;
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_eq!(runs[0]["argv"][3], "job");
    assert_eq!(runs[0]["status"], "exited");
    assert_eq!(runs[0]["exit_code"], 2);
    assert_eq!(runs[1]["exit_code"], 3);
    assert!(runs.iter().all(|run| run["pid"].is_u64()));
    let mut lines: Vec<String> = std::fs::read_to_string(&out)
        .expect("the jobs wrote their file")
        .lines()
        .map(str::to_owned)
        .collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "job 7 2 main crew-worker.yml runner-7",
            "job 8 3 main crew-worker.yml runner-8"
        ]
    );

    // Cleared: later dispatches are only recorded again.
    let cleared = gh
        .control(Method::DELETE, "/_emulator/actions/runner", None)
        .await;
    assert_eq!(cleared.status, StatusCode::NO_CONTENT);
    gh.post(
        BOT,
        WORKER,
        json!({"ref": "main", "inputs": {"issue": "5"}}),
    )
    .await;
    let runner = gh
        .control(Method::GET, "/_emulator/actions/runner", None)
        .await;
    assert_eq!(runner.body["runner"], Value::Null);
    assert_eq!(runner.body["runs"].as_array().map(Vec::len), Some(2));
    let dispatches = gh.control(Method::GET, "/_emulator/dispatches", None).await;
    assert_eq!(dispatches.body.as_array().map(Vec::len), Some(5));
    gh.assert_contract();
}

#[tokio::test]
async fn a_job_that_cannot_start_is_reported_failed() {
    let gh = TestGitHub::start().await;
    gh.control(
        Method::POST,
        "/_emulator/actions/runner",
        Some(json!({"command": ["/no/such/program-{issue}"]})),
    )
    .await;
    let answer = gh
        .post(
            BOT,
            WORKER,
            json!({"ref": "main", "inputs": {"issue": "4"}}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT);
    let runs = ended_runs(&gh, 1).await;
    assert_eq!(runs[0]["status"], "failed");
    assert_eq!(runs[0]["argv"][0], "/no/such/program-4");
    assert!(runs[0]["error"].is_string());
    gh.assert_contract();
}
