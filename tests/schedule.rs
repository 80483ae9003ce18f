//! `crew ready`, `crew fill` and `crew loop` with the real binary against the emulator: the
//! order and the reasons, a dry run that writes nothing, a fill that starts exactly the free
//! slots, version skew stopping one issue, and Ctrl-C letting workers finish or handing them
//! over.

use std::time::Duration;

use github_emulator::World;
use serde_json::Value;

use crate::support::sandbox::{Sandbox, text};
use crate::support::{Control, MAINTAINER, TestResult, client};

/// #4 is urgent, #5 depends on it, #6 is excluded, #7 is blocked by the closed #2.
fn labelled(world: &mut World) {
    if let Some(repo) = world.repos.first_mut() {
        let issue = |number: usize| number - 1;
        if let Some(four) = repo.issues.get_mut(issue(4)) {
            four.labels = vec!["urgent".to_owned()];
        }
        if let Some(five) = repo.issues.get_mut(issue(5)) {
            five.body = Some("Depends on #4.".to_owned());
        }
        if let Some(six) = repo.issues.get_mut(issue(6)) {
            six.labels = vec!["wontfix".to_owned()];
        }
        if let Some(seven) = repo.issues.get_mut(issue(7)) {
            seven.body = Some("Blocked by #2".to_owned());
        }
    }
}

const PICKUP: &str =
    "max = 2\n\n[pickup]\nexclude_labels = [\"wontfix\"]\npriority_labels = [\"urgent\"]\n";

fn numbers(list: &Value, field: &str) -> Vec<u64> {
    list.as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item[field].as_u64())
                .collect()
        })
        .unwrap_or_default()
}

async fn json(sandbox: &Sandbox, args: &[&str]) -> TestResult<Value> {
    let output = sandbox.crew(args).await?;
    let (stdout, stderr) = text(&output);
    if !output.status.success() {
        return Err(format!("crew {args:?}: {stdout}\n{stderr}").into());
    }
    Ok(serde_json::from_str(&stdout)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_orders_and_explains_and_fill_starts_exactly_the_free_slots() -> TestResult {
    let sandbox = Sandbox::build(labelled, "sleep 30", PICKUP).await?;
    // A marker from a newer crew on #8: this build must not guess what it means.
    let newer = "<!-- crew:v2 {\"v\":2,\"issue\":8,\"kind\":\"assigned\"} -->\nfrom the future";
    client(&sandbox.emulator, MAINTAINER, None)?
        .create_issue_comment(&sandbox.repo, 8, newer, None)
        .await?;

    let ready = json(&sandbox, &["ready", "--json"]).await?;
    assert_eq!(
        numbers(&ready["ready"], "issue"),
        vec![4, 1, 3, 7, 9],
        "{ready}"
    );
    let now: Vec<bool> = ready["ready"]
        .as_array()
        .map(|items| items.iter().map(|item| item["now"] == true).collect())
        .unwrap_or_default();
    assert_eq!(now, vec![true, true, false, false, false], "{ready}");
    let waiting = &ready["waiting"];
    assert_eq!(numbers(waiting, "issue"), vec![5, 6, 8], "{ready}");
    let reason = |issue: u64| {
        waiting
            .as_array()
            .and_then(|items| items.iter().find(|item| item["issue"] == issue))
            .map(|item| {
                item["reason"]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .unwrap_or_default()
    };
    assert!(reason(5).contains("#4"), "{}", reason(5));
    assert!(reason(6).contains("wontfix"), "{}", reason(6));
    assert!(reason(8).to_lowercase().contains("newer"), "{}", reason(8));

    // The human view, with -v, says the same.
    let verbose = sandbox.crew(&["ready", "-v"]).await?;
    let (stdout, _) = text(&verbose);
    assert!(
        stdout.contains("#5") && stdout.contains("wontfix"),
        "{stdout}"
    );

    // A dry run plans the two free slots and writes nothing.
    let control = Control::new(&sandbox.emulator)?;
    control.reset_stats().await?;
    let dry = json(&sandbox, &["fill", "--dry-run", "--json"]).await?;
    assert_eq!(
        numbers(&dry["plan"]["actions"], "issue"),
        vec![4, 1],
        "{dry}"
    );
    assert_eq!(dry["applied"], Value::Array(Vec::new()));
    let stats = control.stats().await?;
    let writes: Vec<&String> = stats["by_route"]
        .as_object()
        .map(|routes| {
            routes
                .keys()
                .filter(|route| !route.starts_with("GET ") && !route.starts_with("POST /graphql"))
                .collect()
        })
        .unwrap_or_default();
    assert!(writes.is_empty(), "a dry run wrote: {writes:?}");

    // The real fill starts those two and no more; a second fill has no slot left.
    let filled = json(&sandbox, &["fill", "--json"]).await?;
    let started: Vec<u64> = filled["applied"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter(|item| item["outcome"] == "dispatched")
                .filter_map(|item| item["issue"].as_u64())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(started, vec![4, 1], "{filled}");
    let again = json(&sandbox, &["fill", "--json"]).await?;
    assert_eq!(again["plan"]["slots"]["used"], 2, "{again}");
    assert_eq!(again["applied"], Value::Array(Vec::new()), "{again}");
    for issue in ["4", "1"] {
        let cancel = sandbox.crew(&["cancel", issue]).await?;
        assert!(cancel.status.success(), "{:?}", text(&cancel));
    }
    Ok(())
}

/// Sends SIGINT to the process `child`.
fn interrupt(child: &tokio::process::Child) -> TestResult {
    let pid = child.id().ok_or("the loop has exited")?;
    // SAFETY: kill(2) with a pid we own and a valid signal.
    let rc = unsafe { libc::kill(pid as libc::pid_t, libc::SIGINT) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    Ok(())
}

async fn wait_for_comment(sandbox: &Sandbox, issue: u64, kind: &str) -> TestResult<bool> {
    for _ in 0..200 {
        let found = sandbox
            .comments(issue)
            .await?
            .iter()
            .any(|(_, body)| body.contains(&format!("\"kind\":\"{kind}\"")));
        if found {
            return Ok(true);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stops_the_loop_dispatching_and_lets_its_worker_finish() -> TestResult {
    let sandbox = Sandbox::with_config("sleep 2; echo ok > ok.txt", "max = 1\n").await?;
    let mut command =
        tokio::process::Command::from(sandbox.command(&["loop", "--interval", "200ms"]));
    let child = command.spawn()?;
    assert!(
        wait_for_comment(&sandbox, 1, "assigned").await?,
        "nothing started"
    );
    interrupt(&child)?;
    let started = std::time::Instant::now();
    let output = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .map_err(|_| "the loop did not stop")??;
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("waiting for 1 worker"), "{stderr}");
    // It waited for the worker, whose supervisor then saved its work and handed over.
    assert!(started.elapsed() >= Duration::from_millis(500), "{stderr}");
    assert!(wait_for_comment(&sandbox, 1, "handover").await?);
    // And nothing else was started after Ctrl-C.
    for issue in [3, 4, 5] {
        assert!(
            sandbox.assigned(issue).await?.is_empty(),
            "#{issue} was started"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_ctrl_c_hands_the_running_workers_over_at_once() -> TestResult {
    let sandbox = Sandbox::with_config("echo started; sleep 60", "max = 1\n").await?;
    let mut command =
        tokio::process::Command::from(sandbox.command(&["loop", "--interval", "200ms"]));
    let child = command.spawn()?;
    assert!(
        wait_for_comment(&sandbox, 1, "assigned").await?,
        "nothing started"
    );
    interrupt(&child)?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    interrupt(&child)?;
    let output = tokio::time::timeout(Duration::from_secs(40), child.wait_with_output())
        .await
        .map_err(|_| "the loop did not stop after handing over")??;
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("handing over"), "{stderr}");
    assert!(wait_for_comment(&sandbox, 1, "handover").await?);
    Ok(())
}
