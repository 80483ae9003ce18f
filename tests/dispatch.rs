//! `crew dispatch` as the real binary against the emulator and a real clone: the lease, one
//! `assigned` comment, the worktree and `.crew/` files, the detached supervisor salvaging a
//! scripted agent; the requests one dispatch costs; refusals that write nothing; two dispatches
//! racing for one issue; the token never written anywhere.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use crew::github::LeaseRequest;
use serde_json::Value;

use crate::support::sandbox::{CLOSED, PREFIX, Sandbox, origin_file, requests, text};
use crate::support::{BOT, Control, TestResult, git};

/// The agent: writes a file (after a pause, so the dispatch's own requests can be counted
/// before the supervisor's), prints the token it was given, and exits without a finished marker.
const SCRIPT: &str = "sleep 1; echo \"token $GH_TOKEN\"; echo spun > spin.txt; exit 0";

#[tokio::test]
async fn dispatch_leases_announces_prepares_and_the_supervisor_salvages() -> TestResult {
    let sandbox = Sandbox::new(SCRIPT).await?;
    let control = Control::new(&sandbox.emulator)?;
    control.reset_stats().await?;

    let output = sandbox.crew(&["dispatch", "1", "--json"]).await?;
    // The dispatch's own requests: the agent sleeps before doing anything, and the supervisor
    // talks to GitHub only once it has exited (renewals are minutes apart).
    let by_route = requests(&control).await?;
    let total: u64 = by_route.iter().map(|(_, count)| count).sum();
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    eprintln!("one dispatch: {total} requests: {by_route:?}");
    // DESIGN.md 7: at most 8 requests per dispatch, the first on a fresh host included (the
    // token's login is only asked for when an untrusted marker makes it matter).
    assert!(
        total <= 8,
        "one dispatch cost {total} requests: {by_route:?}"
    );

    let views: Value = serde_json::from_str(&stdout)?;
    let view = &views[0];
    assert_eq!(view["issue"], 1);
    assert_eq!(view["attempt"], 1);
    let worker = view["worker"].as_str().ok_or("no worker")?.to_owned();
    assert!(
        worker.starts_with("worker-") && worker.ends_with("-1"),
        "{worker}"
    );
    let worktree = PathBuf::from(view["worktree"].as_str().ok_or("no worktree")?);
    let branch = view["branch"].as_str().ok_or("no branch")?.to_owned();

    // The lease, attempt 1, held by the worker.
    let leases = sandbox.lease_refs().await?;
    assert_eq!(leases, vec![(1, 1, worker.clone())]);
    // Exactly one `assigned` comment, by the token's user.
    assert_eq!(sandbox.assigned(1).await?, vec!["crew-bot".to_owned()]);
    // The worktree on its branch, with its context.
    assert!(worktree.join(".crew/context.json").is_file());
    assert!(worktree.join(".crew/prompt.md").is_file());
    assert!(worktree.join(".crew/supervisor.json").is_file());
    assert_eq!(
        git(&worktree, &["rev-parse", "--abbrev-ref", "HEAD"])?,
        branch
    );
    let context: Value = serde_json::from_str(&std::fs::read_to_string(
        worktree.join(".crew/context.json"),
    )?)?;
    assert_eq!(context["worker"], worker.as_str());
    assert_eq!(context["attempt"], 1);

    // The token is nowhere on disk or in the output.
    for file in ["prompt.md", "context.json", "supervisor.json"] {
        let text = std::fs::read_to_string(worktree.join(".crew").join(file))?;
        assert!(!text.contains(BOT), "the token is in .crew/{file}");
    }
    assert!(!stdout.contains(BOT) && !stderr.contains(BOT));

    // The agent exits without finishing: the supervisor salvages and hands over.
    let mut handed_over = false;
    let mut pushed = None;
    for _ in 0..100 {
        handed_over = sandbox
            .comments(1)
            .await?
            .iter()
            .any(|(_, body)| body.contains("\"kind\":\"handover\""));
        pushed = origin_file(&sandbox.bare, &branch, "spin.txt");
        if handed_over && pushed.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let supervisor_log =
        std::fs::read_to_string(worktree.join(".crew/logs/supervisor.log")).unwrap_or_default();
    assert!(handed_over, "no handover comment: {supervisor_log}");
    // The agent printed its token; the log and the handover's log tail show `***` instead.
    let comments = sandbox.comments(1).await?;
    assert!(
        comments.iter().all(|(_, body)| !body.contains(BOT)),
        "the token is in a comment"
    );
    assert!(
        comments.iter().any(|(_, body)| body.contains("token ***")),
        "the handover has no redacted log tail: {comments:?}"
    );
    for entry in std::fs::read_dir(worktree.join(".crew/logs"))? {
        let log = std::fs::read_to_string(entry?.path())?;
        assert!(!log.contains(BOT), "the token is in a log");
    }
    assert_eq!(pushed.as_deref(), Some("spun\n"), "{supervisor_log}");
    assert!(
        !supervisor_log.contains(BOT),
        "the token is in the supervisor log"
    );

    // A second dispatch on this host does not ask who the token is again: the login is
    // remembered in the cache. (Only that route is counted: the first worker's supervisor may
    // still be releasing its lease.)
    control.reset_stats().await?;
    let second = sandbox.crew(&["dispatch", "5"]).await?;
    let (stdout, stderr) = text(&second);
    assert!(second.status.success(), "{stdout}\n{stderr}");
    let asked = requests(&control)
        .await?
        .into_iter()
        .find(|(route, _)| route == "GET /user")
        .map_or(0, |(_, count)| count);
    assert_eq!(asked, 0, "the second dispatch asked GET /user again");
    Ok(())
}

#[tokio::test]
async fn a_closed_issue_and_a_live_lease_are_refused_with_nothing_written() -> TestResult {
    let sandbox = Sandbox::new(SCRIPT).await?;

    let output = sandbox.crew(&["dispatch", &CLOSED.to_string()]).await?;
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("closed"), "{stderr}");
    assert!(sandbox.comments(CLOSED).await?.is_empty());
    assert!(sandbox.lease_refs().await?.is_empty());

    // Someone else holds #3's lease.
    sandbox
        .github
        .acquire_lease(
            &sandbox.repo,
            PREFIX,
            3,
            LeaseRequest {
                base: "main".to_owned(),
                worker: "worker-elsewhere-3".to_owned(),
                host: "ci".to_owned(),
                runtime: "actions".to_owned(),
                ttl: TimeDelta::minutes(30),
                now: Utc::now(),
            },
        )
        .await?;
    let output = sandbox.crew(&["dispatch", "3"]).await?;
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(4), "{stdout}\n{stderr}");
    assert!(stderr.contains("worker-elsewhere-3"), "{stderr}");
    assert!(sandbox.comments(3).await?.is_empty());
    assert_eq!(
        sandbox.lease_refs().await?,
        vec![(3, 1, "worker-elsewhere-3".to_owned())]
    );
    assert!(!sandbox.dir.path().join("widgets-worker-3").exists());
    assert!(!sandbox.dir.path().join("widgets-worker-2").exists());
    Ok(())
}

#[tokio::test]
async fn two_dispatches_of_one_issue_one_wins_one_exits_4() -> TestResult {
    let sandbox = Sandbox::new(SCRIPT).await?;
    // Every open issue of the sandbox is one race, run from two processes at once.
    for issue in [1_u64, 3, 4, 5, 6, 7, 8, 9] {
        let number = issue.to_string();
        // tokio's processes: a blocking wait would stall the emulator, which shares this runtime.
        let first =
            tokio::process::Command::from(sandbox.command(&["dispatch", &number])).spawn()?;
        let second =
            tokio::process::Command::from(sandbox.command(&["dispatch", &number])).spawn()?;
        let (first, second) = tokio::join!(first.wait_with_output(), second.wait_with_output());
        let outputs = [first?, second?];
        let mut codes: Vec<Option<i32>> =
            outputs.iter().map(|output| output.status.code()).collect();
        codes.sort();
        let texts: Vec<(String, String)> = outputs.iter().map(text).collect();
        assert_eq!(codes, vec![Some(0), Some(4)], "#{issue}: {texts:?}");
        assert_eq!(sandbox.assigned(issue).await?.len(), 1, "#{issue}");
        // One attempt: the loser wrote no lease of its own.
        let leases = sandbox.lease_refs().await?;
        let attempts: Vec<u32> = leases
            .iter()
            .filter(|(number, _, _)| *number == issue)
            .map(|(_, attempt, _)| *attempt)
            .collect();
        assert_eq!(attempts, vec![1], "#{issue}: {leases:?}");
        let worktrees = std::fs::read_dir(sandbox.dir.path())?
            .filter_map(Result::ok)
            .filter(|entry| {
                entry.file_name().to_string_lossy() == format!("widgets-worker-{issue}")
            })
            .count();
        assert_eq!(worktrees, 1, "#{issue}");
        let worktree_list = git(&sandbox.clone, &["worktree", "list", "--porcelain"])?;
        assert_eq!(
            worktree_list
                .lines()
                .filter(|line| line.starts_with("worktree ") && line.ends_with(&format!("-{issue}")))
                .count(),
            1,
            "{worktree_list}"
        );
        for (stdout, stderr) in &texts {
            assert!(!stdout.contains(BOT) && !stderr.contains(BOT));
        }
    }
    Ok(())
}

#[tokio::test]
async fn attempts_past_max_attempts_are_refused() -> TestResult {
    let sandbox = Sandbox::new(SCRIPT).await?;
    let settings = std::fs::read_to_string(&sandbox.config)?;
    std::fs::write(&sandbox.config, format!("{settings}max_attempts = 1\n"))?;
    let output = sandbox.crew(&["dispatch", "4"]).await?;
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    // Wait for the supervisor's handover (which releases the lease).
    let mut handed_over = false;
    for _ in 0..100 {
        handed_over = sandbox
            .comments(4)
            .await?
            .iter()
            .any(|(_, body)| body.contains("\"kind\":\"handover\""));
        if handed_over {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(handed_over, "no handover");
    let comments = sandbox.comments(4).await?.len();
    let output = sandbox.crew(&["dispatch", "4"]).await?;
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("max_attempts"), "{stderr}");
    assert!(
        stderr.contains("handover"),
        "the state is not named: {stderr}"
    );
    assert_eq!(sandbox.comments(4).await?.len(), comments);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatch_sets_the_board_status_and_times_itself() -> TestResult {
    let sandbox =
        Sandbox::with_config("sleep 5", "\n[project]\nowner = \"acme\"\nnumber = 1\n").await?;
    let output = sandbox.crew(&["dispatch", "3", "--json"]).await?;
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let view: Value = serde_json::from_str(&stdout)?;
    let timings = &view[0]["timings"];
    let total = timings["total_ms"].as_u64().ok_or("no total")?;
    let git = timings["git_ms"].as_u64().ok_or("no git time")?;
    assert!(git > 0 && git <= total, "{timings}");
    eprintln!("one dispatch: {total} ms, of which git {git} ms");

    let show = sandbox.crew(&["show", "3", "--json"]).await?;
    let (stdout, stderr) = text(&show);
    assert!(show.status.success(), "{stdout}\n{stderr}");
    let show: Value = serde_json::from_str(&stdout)?;
    assert_eq!(show["board"]["status"], "In Progress", "{show}");
    assert_eq!(show["state"], "assigned", "{show}");
    let cancel = sandbox.crew(&["cancel", "3"]).await?;
    assert!(cancel.status.success(), "{:?}", text(&cancel));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_marker_makes_dispatch_ask_who_it_is_once_and_ignore_the_spoof() -> TestResult
{
    let sandbox = Sandbox::new("sleep 5").await?;
    let control = Control::new(&sandbox.emulator)?;
    // An outsider claims #4 and #5 are completed.
    let outsider = crate::support::client(&sandbox.emulator, crate::support::OUTSIDER, None)?;
    for issue in [4, 5] {
        let spoof = crew::protocol::Event {
            issue,
            attempt: 1,
            worker: "worker-spoof".to_owned(),
            op: format!("op-spoof-{issue}"),
            at: chrono::Utc::now(),
            body: crew::protocol::EventBody::Completed { pr: None },
        };
        outsider
            .create_issue_comment(
                &sandbox.repo,
                issue,
                &crew::protocol::render_comment(&spoof, "done!"),
                None,
            )
            .await?;
    }
    control.reset_stats().await?;
    let output = sandbox.crew(&["dispatch", "4", "--json"]).await?;
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let view: Value = serde_json::from_str(&stdout)?;
    assert_eq!(view[0]["attempt"], 1, "{view}");
    let asked = |routes: Vec<(String, u64)>| {
        routes
            .into_iter()
            .find(|(route, _)| route == "GET /user")
            .map_or(0, |(_, count)| count)
    };
    assert_eq!(asked(requests(&control).await?), 1);
    // The answer is remembered: the next dispatch on this host does not ask again.
    control.reset_stats().await?;
    let again = sandbox.crew(&["dispatch", "5"]).await?;
    assert!(again.status.success(), "{:?}", text(&again));
    assert_eq!(asked(requests(&control).await?), 0);
    for issue in ["4", "5"] {
        let cancel = sandbox.crew(&["cancel", issue]).await?;
        assert!(cancel.status.success(), "{:?}", text(&cancel));
    }
    Ok(())
}
