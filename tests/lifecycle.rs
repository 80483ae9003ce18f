//! The whole life of an issue (DESIGN.md 2.3), one test per path of the state machine, with the
//! real binary, the emulator, a real clone and a scripted agent that itself runs the agent-side
//! commands: straight through to a merged pull request; handover then a replacement on the same
//! branch; blocked → answered → continued (a live worker, and an exited one respawned); changes
//! requested → new attempt → approved → merged; crash → salvage → retry; `max_attempts` →
//! `needs_human`. Each ends by rebuilding the cache from GitHub alone and checking that
//! `crew show` tells the same story.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::support::TestResult;
use crate::support::sandbox::{Sandbox, origin_file, text};

/// The scripted agent. It reads its issue and attempt from `.crew/context.json` and acts out the
/// path that issue stands for; `$CREW` is the crew binary.
const AGENT: &str = r#"
set -e
C="$CREW"
issue=$(sed -n 's/^ *"issue": *\([0-9]*\).*/\1/p' .crew/context.json)
attempt=$(sed -n 's/^ *"attempt": *\([0-9]*\).*/\1/p' .crew/context.json)
echo "agent: issue $issue attempt $attempt"
$C start
case "$issue" in
1)
  echo one > one.txt; git add one.txt; git commit -qm "one"
  $C progress "wrote one.txt"
  $C done ;;
3)
  if [ "$attempt" = 1 ]; then
    echo part1 > part.txt
    $C handover --summary "did part 1" --next "write part 2"
  else
    grep -q part1 part.txt
    grep -q "did part 1" .crew/prompt.md
    grep -q "Changes so far" .crew/prompt.md
    echo part2 >> part.txt; git add -A; git commit -qm "part 2"
    $C done
  fi ;;
4)
  $C blocked "which colour?"
  answer=$($C -R acme/widgets wait --for answered --issue 4 --timeout 60s --interval 1s \
    | sed -n 's/^ *"answer": *"\([^"]*\)".*/\1/p')
  echo "$answer" > colour.txt; git add -A; git commit -qm colour
  $C done ;;
5)
  if [ "$attempt" = 1 ]; then
    echo "first" > review.txt
  else
    grep -q "add a second line" .crew/prompt.md
    grep -q "keep the first line" .crew/prompt.md
    echo "second" >> review.txt
  fi
  git add -A; git commit -qm "attempt $attempt"
  $C done ;;
6)
  if [ "$attempt" = 1 ]; then
    echo crashed > crash.txt
    exit 3
  fi
  grep -q crashed crash.txt
  echo fixed >> crash.txt; git add -A; git commit -qm fixed
  $C done ;;
7)
  $C fail "cannot be done as asked" ;;
9)
  echo nine > nine.txt; git add nine.txt; git commit -qm "nine"
  $C done ;;
8)
  if [ "$attempt" = 1 ]; then
    $C blocked "which shape?"
    exit 0
  fi
  grep -q "round" .crew/prompt.md
  echo round > shape.txt; git add -A; git commit -qm shape
  $C done ;;
esac
"#;

async fn sandbox(extra: &str) -> TestResult<Sandbox> {
    let script = AGENT.replace("$CREW", env!("CARGO_BIN_EXE_crew"));
    Sandbox::with_config(&script, extra).await
}

/// The kinds of the event comments on `issue`, in order.
async fn kinds(sandbox: &Sandbox, issue: u64) -> TestResult<Vec<String>> {
    Ok(sandbox
        .comments(issue)
        .await?
        .iter()
        .filter_map(|(_, body)| {
            let start = body.find("\"kind\":\"")? + 8;
            let end = body[start..].find('"')?;
            Some(body[start..start + end].to_owned())
        })
        .collect())
}

/// Waits until the event kinds on `issue` end with `tail`; fails with what there is after 30 s.
async fn wait_for(sandbox: &Sandbox, issue: u64, tail: &[&str]) -> TestResult<Vec<String>> {
    let mut seen = Vec::new();
    for _ in 0..300 {
        seen = kinds(sandbox, issue).await?;
        if seen.ends_with(
            &tail
                .iter()
                .map(|kind| (*kind).to_owned())
                .collect::<Vec<_>>(),
        ) {
            return Ok(seen);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let logs = worker_logs(sandbox, issue);
    Err(format!("#{issue}: waited for {tail:?}, have {seen:?}\n{logs}").into())
}

/// Every log under the issue's worktree, for failure messages.
fn worker_logs(sandbox: &Sandbox, issue: u64) -> String {
    let dir = sandbox
        .dir
        .path()
        .join(format!("widgets-worker-{issue}"))
        .join(".crew/logs");
    let mut text = String::new();
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for entry in entries.flatten() {
            text.push_str(&format!("--- {}\n", entry.path().display()));
            text.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
        }
    }
    text
}

/// Runs `crew ARGS`, requiring success; returns stdout.
async fn crew_ok(sandbox: &Sandbox, args: &[&str]) -> TestResult<String> {
    let output = sandbox.crew(args).await?;
    let (stdout, stderr) = text(&output);
    if !output.status.success() {
        return Err(format!("crew {args:?} failed: {stdout}\n{stderr}").into());
    }
    Ok(stdout)
}

/// `crew cache rebuild` then `crew show N --json`: what GitHub alone says.
async fn rebuilt_show(sandbox: &Sandbox, issue: u64) -> TestResult<Value> {
    crew_ok(sandbox, &["cache", "rebuild"]).await?;
    let number = issue.to_string();
    Ok(serde_json::from_str(
        &crew_ok(sandbox, &["show", &number, "--json"]).await?,
    )?)
}

fn shown_kinds(show: &Value) -> Vec<String> {
    show["events"]
        .as_array()
        .map(|events| {
            events
                .iter()
                .filter_map(|event| event["kind"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The pull request the newest `in_review` comment on `issue` names, from the emulator.
async fn pull_of(sandbox: &Sandbox, issue: u64) -> TestResult<crew::github::PullRequest> {
    let number = sandbox
        .comments(issue)
        .await?
        .iter()
        .rev()
        .filter(|(_, body)| body.contains("\"kind\":\"in_review\""))
        .find_map(|(_, body)| {
            let start = body.find("\"pr\":")? + 5;
            let digits: String = body[start..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse::<u64>().ok()
        })
        .ok_or("no in_review comment names a pull request")?;
    Ok(sandbox
        .github
        .pull(&sandbox.repo, number)
        .await?
        .ok_or("the pull request does not exist")?)
}

fn file_on(bare: &Path, branch: &str, file: &str) -> Option<String> {
    origin_file(bare, branch, file)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn straight_through_to_a_merged_pull_request() -> TestResult {
    let sandbox = sandbox("").await?;
    crew_ok(&sandbox, &["dispatch", "1"]).await?;
    wait_for(&sandbox, 1, &["in_review"]).await?;

    // Merging needs an approval first.
    let early = sandbox.crew(&["merge", "1"]).await?;
    assert_eq!(early.status.code(), Some(1), "{:?}", text(&early));
    assert!(text(&early).1.contains("approve"), "{:?}", text(&early));
    crew_ok(&sandbox, &["approve", "1"]).await?;
    let merged: Value = serde_json::from_str(&crew_ok(&sandbox, &["merge", "1", "--json"]).await?)?;
    assert_eq!(merged["merged_now"], true, "{merged}");

    let show = rebuilt_show(&sandbox, 1).await?;
    assert_eq!(
        shown_kinds(&show),
        [
            "assigned",
            "started",
            "progress",
            "in_review",
            "approved",
            "completed"
        ],
        "{show}"
    );
    assert_eq!(show["state"], "completed");
    let pull = pull_of(&sandbox, 1).await?;
    assert!(pull.is_merged(), "{pull:?}");
    assert!(
        pull.body
            .as_deref()
            .unwrap_or_default()
            .contains("Closes #1"),
        "{pull:?}"
    );
    assert_eq!(
        file_on(&sandbox.bare, "main", "one.txt").as_deref(),
        Some("one\n")
    );
    // The lease is released and the worktree is gone.
    assert!(!sandbox.dir.path().join("widgets-worker-1").exists());
    let issue = sandbox
        .github
        .issue(&sandbox.repo, 1)
        .await?
        .ok_or("no issue")?;
    assert_eq!(issue.state, "closed", "Closes #1 closed the issue");

    // A merged issue cannot be merged, approved or answered again; each says what it is.
    for args in [["merge", "1"], ["approve", "1"]] {
        let again = sandbox.crew(&args).await?;
        let (_, stderr) = text(&again);
        assert_eq!(again.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains("completed"), "{args:?}: {stderr}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handover_is_continued_by_a_replacement_on_the_same_branch() -> TestResult {
    let sandbox = sandbox("replace_on_handover = true\n").await?;
    crew_ok(&sandbox, &["dispatch", "3"]).await?;
    wait_for(&sandbox, 3, &["in_review"]).await?;
    let show = rebuilt_show(&sandbox, 3).await?;
    assert_eq!(
        shown_kinds(&show),
        [
            "assigned",
            "started",
            "handover",
            "assigned",
            "started",
            "in_review"
        ],
        "{show}"
    );
    assert_eq!(show["attempt"], 2);
    let pull = pull_of(&sandbox, 3).await?;
    assert_eq!(
        file_on(&sandbox.bare, &pull.head.branch, "part.txt").as_deref(),
        Some("part1\npart2\n")
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_blocked_worker_gets_the_answer_and_continues() -> TestResult {
    let sandbox = sandbox("").await?;
    crew_ok(&sandbox, &["dispatch", "4"]).await?;
    wait_for(&sandbox, 4, &["blocked"]).await?;
    // Answering an issue that is not blocked is refused, naming its state.
    let wrong = sandbox.crew(&["answer", "1", "blue"]).await?;
    assert_eq!(wrong.status.code(), Some(1), "{:?}", text(&wrong));
    assert!(text(&wrong).1.contains("unassigned"), "{:?}", text(&wrong));

    let answered: Value =
        serde_json::from_str(&crew_ok(&sandbox, &["answer", "4", "blue", "--json"]).await?)?;
    assert_eq!(answered["worker_alive"], true, "{answered}");
    assert_eq!(answered["question"], "which colour?");
    wait_for(&sandbox, 4, &["in_review"]).await?;
    let show = rebuilt_show(&sandbox, 4).await?;
    assert_eq!(
        shown_kinds(&show),
        ["assigned", "started", "blocked", "answered", "in_review"],
        "{show}"
    );
    let pull = pull_of(&sandbox, 4).await?;
    assert_eq!(
        file_on(&sandbox.bare, &pull.head.branch, "colour.txt").as_deref(),
        Some("blue\n")
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exited_blocked_worker_is_respawned_with_the_answer() -> TestResult {
    let sandbox = sandbox("").await?;
    crew_ok(&sandbox, &["dispatch", "8"]).await?;
    wait_for(&sandbox, 8, &["blocked"]).await?;
    // Its agent ends the session; the supervisor lets the lease go without a handover.
    let mut released = false;
    for _ in 0..100 {
        let leases = sandbox
            .github
            .leases(&sandbox.repo, "refs/crew/leases/")
            .await?;
        released = leases.iter().any(|lease| {
            lease.issue == 8
                && lease
                    .lease
                    .as_ref()
                    .is_ok_and(|lease| lease.state == crew::protocol::lease::LeaseState::Released)
        });
        if released {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(released, "{}", worker_logs(&sandbox, 8));
    let answered: Value =
        serde_json::from_str(&crew_ok(&sandbox, &["answer", "8", "round", "--json"]).await?)?;
    assert_eq!(answered["worker_alive"], false, "{answered}");
    assert_eq!(answered["dispatched"]["attempt"], 2, "{answered}");
    wait_for(&sandbox, 8, &["in_review"]).await?;
    let show = rebuilt_show(&sandbox, 8).await?;
    assert_eq!(
        shown_kinds(&show),
        [
            "assigned",
            "started",
            "blocked",
            "answered",
            "assigned",
            "started",
            "in_review"
        ],
        "{show}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_requested_then_a_new_attempt_is_approved_and_merged() -> TestResult {
    let sandbox = sandbox("").await?;
    crew_ok(&sandbox, &["dispatch", "5"]).await?;
    wait_for(&sandbox, 5, &["in_review"]).await?;
    // A maintainer's review on the pull request; it reaches the next attempt's prompt too.
    let pr = pull_of(&sandbox, 5).await?.number;
    let maintainer = octocrab::Octocrab::builder()
        .base_uri(sandbox.base_url.as_str())?
        .personal_token(crate::support::MAINTAINER.to_owned())
        .build()?;
    let _: Value = maintainer
        .post(
            format!("/repos/acme/widgets/pulls/{pr}/reviews"),
            Some(&serde_json::json!({
                "event": "REQUEST_CHANGES",
                "body": "and keep the first line",
            })),
        )
        .await?;
    let sent_back: Value = serde_json::from_str(
        &crew_ok(
            &sandbox,
            &[
                "request-changes",
                "5",
                "--body",
                "add a second line",
                "--json",
            ],
        )
        .await?,
    )?;
    assert_eq!(sent_back["dispatched"]["attempt"], 2, "{sent_back}");
    wait_for(
        &sandbox,
        5,
        &["changes_requested", "assigned", "started", "in_review"],
    )
    .await?;
    crew_ok(&sandbox, &["approve", "5"]).await?;
    crew_ok(&sandbox, &["merge", "5"]).await?;
    let show = rebuilt_show(&sandbox, 5).await?;
    assert_eq!(
        shown_kinds(&show),
        [
            "assigned",
            "started",
            "in_review",
            "changes_requested",
            "assigned",
            "started",
            "in_review",
            "approved",
            "completed"
        ],
        "{show}"
    );
    assert_eq!(
        file_on(&sandbox.bare, "main", "review.txt").as_deref(),
        Some("first\nsecond\n")
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_is_salvaged_and_a_retry_continues_from_the_wip() -> TestResult {
    let sandbox = sandbox("").await?;
    crew_ok(&sandbox, &["dispatch", "6"]).await?;
    wait_for(&sandbox, 6, &["handover"]).await?;
    // Approving or merging an issue with no pull request is refused, naming the state.
    let early = sandbox.crew(&["approve", "6"]).await?;
    assert_eq!(early.status.code(), Some(1), "{:?}", text(&early));
    assert!(text(&early).1.contains("handover"), "{:?}", text(&early));

    let retried: Value =
        serde_json::from_str(&crew_ok(&sandbox, &["retry", "6", "--json"]).await?)?;
    assert_eq!(retried["attempt"], 2, "{retried}");
    wait_for(&sandbox, 6, &["in_review"]).await?;
    let show = rebuilt_show(&sandbox, 6).await?;
    assert_eq!(
        shown_kinds(&show),
        [
            "assigned",
            "started",
            "handover",
            "assigned",
            "started",
            "in_review"
        ],
        "{show}"
    );
    let pull = pull_of(&sandbox, 6).await?;
    assert_eq!(
        file_on(&sandbox.bare, &pull.head.branch, "crash.txt").as_deref(),
        Some("crashed\nfixed\n")
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_max_attempts_times_needs_a_human_and_only_retry_goes_on() -> TestResult {
    // A second agent, for `crew reassign`: it fails too, in its own words.
    let other = format!(
        "max_attempts = 2\n\n[agents.other]\ncommand = [\"sh\", \"-c\", \"{} start && {} fail 'the other agent cannot either'\"]\n",
        env!("CARGO_BIN_EXE_crew"),
        env!("CARGO_BIN_EXE_crew")
    );
    let sandbox = sandbox(&other).await?;
    crew_ok(&sandbox, &["dispatch", "7"]).await?;
    wait_for(&sandbox, 7, &["failed"]).await?;
    crew_ok(&sandbox, &["retry", "7"]).await?;
    wait_for(&sandbox, 7, &["assigned", "started", "failed"]).await?;
    let show = rebuilt_show(&sandbox, 7).await?;
    assert_eq!(show["state"], "needs_human", "{show}");
    let labels: Vec<String> = sandbox
        .github
        .issue(&sandbox.repo, 7)
        .await?
        .ok_or("no issue")?
        .label_names()
        .map(str::to_owned)
        .collect();
    assert!(
        labels.contains(&"crew:needs-human".to_owned()),
        "{labels:?}"
    );

    // Nothing dispatches it now but a maintainer's retry.
    let refused = sandbox.crew(&["dispatch", "7"]).await?;
    assert_eq!(refused.status.code(), Some(1), "{:?}", text(&refused));
    assert!(
        text(&refused).1.contains("max_attempts"),
        "{:?}",
        text(&refused)
    );
    // Reassigning needs something to change.
    let nothing = sandbox.crew(&["reassign", "7"]).await?;
    assert_eq!(nothing.status.code(), Some(2), "{:?}", text(&nothing));
    let again: Value = serde_json::from_str(
        &crew_ok(&sandbox, &["reassign", "7", "--agent", "other", "--json"]).await?,
    )?;
    assert_eq!(again["attempt"], 3, "{again}");
    assert_eq!(again["agent"], "other", "{again}");
    wait_for(&sandbox, 7, &["assigned", "started", "failed"]).await?;
    let comments = sandbox.comments(7).await?;
    assert!(
        comments
            .iter()
            .any(|(_, body)| body.contains("the other agent cannot either")),
        "{comments:?}"
    );
    let show = rebuilt_show(&sandbox, 7).await?;
    assert_eq!(
        shown_kinds(&show),
        [
            "assigned", "started", "failed", "assigned", "started", "failed", "assigned",
            "started", "failed"
        ],
        "{show}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflicting_pull_request_is_not_merged_even_forced_and_says_what_to_do() -> TestResult {
    let sandbox = sandbox("").await?;
    crew_ok(&sandbox, &["dispatch", "9"]).await?;
    wait_for(&sandbox, 9, &["in_review"]).await?;
    // Meanwhile someone lands a different nine.txt on main.
    std::fs::write(sandbox.clone.join("nine.txt"), "not nine\n")?;
    crate::support::git(&sandbox.clone, &["add", "nine.txt"])?;
    crate::support::git(&sandbox.clone, &["commit", "-qm", "a conflicting nine"])?;
    crate::support::git(&sandbox.clone, &["push", "-q", "origin", "HEAD:main"])?;

    let merge = sandbox.crew(&["merge", "9", "--force"]).await?;
    let (stdout, stderr) = text(&merge);
    assert_eq!(merge.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("does not merge cleanly"), "{stderr}");
    assert!(stderr.contains("crew request-changes 9"), "{stderr}");
    // Nothing was recorded: no forced approval, no completion.
    assert_eq!(
        kinds(&sandbox, 9).await?,
        ["assigned", "started", "in_review"]
    );
    let pull = pull_of(&sandbox, 9).await?;
    assert!(pull.is_open() && !pull.is_merged(), "{pull:?}");

    // Sent back without dispatching now: the issue waits for `crew fill` or a dispatch.
    let sent: Value = serde_json::from_str(
        &crew_ok(
            &sandbox,
            &[
                "request-changes",
                "9",
                "--body",
                "rebase on main",
                "--no-dispatch",
                "--json",
            ],
        )
        .await?,
    )?;
    assert_eq!(sent["dispatched"], Value::Null, "{sent}");
    let show = rebuilt_show(&sandbox, 9).await?;
    assert_eq!(show["state"], "working", "{show}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unapproved_pull_request_merges_with_force_and_the_history_stays_legal() -> TestResult {
    let sandbox = sandbox("").await?;
    crew_ok(&sandbox, &["dispatch", "9"]).await?;
    wait_for(&sandbox, 9, &["in_review"]).await?;
    let merged: Value =
        serde_json::from_str(&crew_ok(&sandbox, &["merge", "9", "--force", "--json"]).await?)?;
    assert_eq!(merged["merged_now"], true, "{merged}");
    let show = rebuilt_show(&sandbox, 9).await?;
    assert_eq!(
        shown_kinds(&show),
        ["assigned", "started", "in_review", "approved", "completed"],
        "{show}"
    );
    assert_eq!(show["ignored"], Value::Array(Vec::new()), "{show}");
    // Merging again is refused and posts nothing.
    let again = sandbox.crew(&["merge", "9", "--force"]).await?;
    assert_eq!(again.status.code(), Some(1), "{:?}", text(&again));
    assert_eq!(kinds(&sandbox, 9).await?.len(), 5);
    Ok(())
}
