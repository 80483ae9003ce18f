//! `crew demo`, as a user runs it: the real binary with nothing but `PATH` from this machine
//! (and a misleading `GH_TOKEN` and `CREW_API_URL`, which the demo must not use), checked
//! through its `--json` summary and its progress lines.

use std::process::Output;
use std::time::Duration;

use serde_json::Value;

use crate::support::TestResult;

/// `crew ARGS` in an empty directory with a cleared environment.
async fn crew(args: &[&str], path: &std::ffi::OsStr, limit: Duration) -> TestResult<Output> {
    let home = tempfile::tempdir()?;
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_crew"));
    command
        .args(args)
        .current_dir(home.path())
        .env_clear()
        .env("PATH", path)
        .env("HOME", home.path())
        .env("NO_COLOR", "1")
        // The user's own settings: the demo runs on its own emulator with its own tokens.
        .env("GH_TOKEN", "the-users-own-token")
        .env("CREW_API_URL", "http://127.0.0.1:9")
        .kill_on_drop(true);
    Ok(tokio::time::timeout(limit, command.output()).await??)
}

fn kinds(issue: &Value) -> Vec<&str> {
    issue["events"]
        .as_array()
        .map(|events| events.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// The position of the first progress line containing all of `needles`.
fn line_of(stderr: &str, needles: &[&str]) -> Option<usize> {
    stderr
        .lines()
        .position(|line| needles.iter().all(|needle| line.contains(needle)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_takes_every_issue_to_a_merged_pull_request() -> TestResult {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let output = crew(
        &["demo", "--json", "--timeout", "100s"],
        &path,
        Duration::from_secs(120),
    )
    .await?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let summary: Value = serde_json::from_str(&stdout)?;
    let issues = summary["issues"].as_array().ok_or("no issues")?;
    assert_eq!(issues.len(), 6, "{summary}");
    for issue in issues {
        assert_eq!(issue["state"], "completed", "{issue}");
        assert_eq!(issue["merged"], true, "{issue}");
        assert!(issue["pr"].as_u64().is_some(), "{issue}");
        assert_eq!(kinds(issue).last(), Some(&"completed"), "{issue}");
    }
    let issue = |number: usize| &issues[number - 1];
    // #3 blocks on a question the maintainer answers; its work uses the answer.
    let blocked = kinds(issue(3));
    let asked = blocked.iter().position(|kind| *kind == "blocked");
    let answered = blocked.iter().position(|kind| *kind == "answered");
    assert!(asked.is_some() && answered > asked, "{blocked:?}");
    assert!(
        line_of(&stderr, &["#3", "answered by @maintainer", "teal"]).is_some(),
        "{stderr}"
    );
    // #4 hands over to a second attempt.
    assert!(kinds(issue(4)).contains(&"handover"), "{}", issue(4));
    assert!(issue(4)["attempts"].as_u64() >= Some(2), "{}", issue(4));
    // #5 is sent back once, and its second attempt is merged.
    assert!(
        kinds(issue(5)).contains(&"changes_requested"),
        "{}",
        issue(5)
    );
    assert!(issue(5)["attempts"].as_u64() >= Some(2), "{}", issue(5));
    // #2 depends on #1: it starts only once #1 is merged.
    let first_done = line_of(&stderr, &["#1", "completed"]).ok_or("no #1 completed line")?;
    let second_assigned =
        line_of(&stderr, &["#2", "attempt 1 assigned"]).ok_or("no #2 assigned line")?;
    assert!(first_done < second_assigned, "{stderr}");

    assert_eq!(summary["completed"], 6, "{summary}");
    assert_eq!(summary["prs"], 6, "{summary}");
    let attempts: u64 = issues
        .iter()
        .filter_map(|issue| issue["attempts"].as_u64())
        .sum();
    assert_eq!(summary["attempts"].as_u64(), Some(attempts), "{summary}");
    assert!(attempts >= 8, "{summary}");
    assert!(summary["requests"].as_u64() > Some(0), "{summary}");
    assert!(summary["rate_points"].as_u64() > Some(0), "{summary}");
    assert!(summary["wall_ms"].as_u64() > Some(0), "{summary}");
    assert_eq!(summary["agent"], "demo");
    assert!(summary.get("kept").is_none(), "{summary}");
    // No token, the user's or the emulator's, is printed.
    for token in ["the-users-own-token", "emu-bot", "emu-maintainer"] {
        assert!(
            !stdout.contains(token) && !stderr.contains(token),
            "{token}"
        );
    }
    eprintln!("crew demo (debug build) took {} ms", summary["wall_ms"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_agent_that_is_not_installed_or_not_known_is_refused_before_anything_starts()
-> TestResult {
    let empty = tempfile::tempdir()?;
    let missing = crew(
        &["demo", "--agent", "codex"],
        empty.path().as_os_str(),
        Duration::from_secs(10),
    )
    .await?;
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert_eq!(missing.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("codex"), "{stderr}");
    assert!(stderr.contains("hint:"), "{stderr}");
    assert!(!stderr.contains("GitHub emulated"), "{stderr}");

    let unknown = crew(
        &["demo", "--agent", "frobnicate"],
        empty.path().as_os_str(),
        Duration::from_secs(10),
    )
    .await?;
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert_ne!(unknown.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("frobnicate"), "{stderr}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_agent_gets_the_demo_world_and_the_emulators_token_not_the_users() -> TestResult {
    // A stand-in for Claude Code on PATH: it gives up on every issue, saying whether the token
    // it was handed is the user's.
    let bin = tempfile::tempdir()?;
    let claude = bin.path().join("claude");
    std::fs::write(
        &claude,
        format!(
            "#!/bin/sh\ncat > /dev/null\nif [ \"$GH_TOKEN\" = the-users-own-token ]; then token=leaked; \
             else token=isolated; fi\n{crew} start && {crew} fail \"not a real claude; token $token\"\n",
            crew = env!("CARGO_BIN_EXE_crew")
        ),
    )?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&claude, std::fs::Permissions::from_mode(0o755))?;
    let mut path = std::ffi::OsString::from(bin.path());
    path.push(":");
    path.push(std::env::var_os("PATH").unwrap_or_default());
    let output = crew(
        &["demo", "--agent", "claude", "--json", "--timeout", "100s"],
        &path,
        Duration::from_secs(120),
    )
    .await?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // The agent's failures are the summary's news, not the demo's: it ends once nothing can move.
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let summary: Value = serde_json::from_str(&stdout)?;
    assert_eq!(summary["agent"], "claude", "{summary}");
    assert_eq!(summary["completed"], 0, "{summary}");
    let issues = summary["issues"].as_array().ok_or("no issues")?;
    for issue in issues {
        // #2 waits for #1, which needs a human now; every other issue used its three attempts.
        let expected = if issue["issue"] == 2 {
            ("unassigned", 0)
        } else {
            ("needs_human", 3)
        };
        assert_eq!(
            (issue["state"].as_str(), issue["attempts"].as_u64()),
            (Some(expected.0), Some(expected.1)),
            "{issue}"
        );
    }
    assert!(stderr.contains("token isolated"), "{stderr}");
    assert!(!stderr.contains("token leaked"), "{stderr}");
    assert!(stderr.contains("nothing more can happen"), "{stderr}");
    Ok(())
}
