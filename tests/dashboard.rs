//! `crew status --watch` and `crew watch` as the real binary with stdout piped (not a terminal):
//! the plain table (or, with `--json`, one JSON object per line) printed again every interval,
//! each refresh observing GitHub anew, until the process is stopped.

use std::process::Stdio;
use std::time::{Duration, Instant};

use chrono::Utc;
use crew::protocol::{Assignment, Event, EventBody, render_comment};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout};

use crate::support::TestResult;
use crate::support::sandbox::{Sandbox, text};

/// Starts `crew ARGS` with stdout piped; the child is killed when dropped.
fn spawn(sandbox: &Sandbox, args: &[&str]) -> TestResult<(Child, Lines<BufReader<ChildStdout>>)> {
    let mut command = tokio::process::Command::from(sandbox.command(args));
    command.stderr(Stdio::null()).kill_on_drop(true);
    let mut child = command.spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    Ok((child, BufReader::new(stdout).lines()))
}

/// The next line of output, failing at `deadline`.
async fn next_line(
    lines: &mut Lines<BufReader<ChildStdout>>,
    deadline: Instant,
) -> TestResult<String> {
    let left = deadline.saturating_duration_since(Instant::now());
    match tokio::time::timeout(left, lines.next_line()).await {
        Ok(Ok(Some(line))) => Ok(line),
        Ok(Ok(None)) => Err("the watch ended by itself".into()),
        Ok(Err(error)) => Err(error.into()),
        Err(_) => Err("no refresh in time".into()),
    }
}

async fn post_assigned(sandbox: &Sandbox, issue: u64) -> TestResult<()> {
    let event = Event {
        issue,
        attempt: 1,
        worker: format!("worker-elsewhere-{issue}"),
        op: format!("op-watch-{issue}"),
        at: Utc::now(),
        body: EventBody::Assigned(Assignment {
            host: Some("ci-runner".to_owned()),
            ..Assignment::default()
        }),
    };
    sandbox
        .github
        .create_issue_comment(
            &sandbox.repo,
            issue,
            &render_comment(&event, "**Assigned**"),
            None,
        )
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_watch_without_a_terminal_prints_the_table_every_interval() -> TestResult<()> {
    let sandbox = Sandbox::new("true").await?;
    let (mut child, mut lines) = spawn(&sandbox, &["status", "--watch", "--interval", "200ms"])?;
    let deadline = Instant::now() + Duration::from_secs(10);

    // The first refresh: the same table `crew status` prints, with nothing in it yet.
    let first = next_line(&mut lines, deadline).await?;
    assert!(first.starts_with("acme/widgets: 0/"), "{first}");
    assert_eq!(
        next_line(&mut lines, deadline).await?,
        "no issues with crew events"
    );

    // What happens on GitHub between refreshes shows in a later one.
    post_assigned(&sandbox, 4).await?;
    let mut headers = 1;
    let row = loop {
        let line = next_line(&mut lines, deadline).await?;
        if line.starts_with("acme/widgets: ") {
            headers += 1;
        }
        if line.starts_with("#4 ") {
            break line;
        }
    };
    assert!(headers >= 2, "{headers} refreshes");
    assert!(
        row.contains("Make widgets spin 4")
            && row.contains("assigned")
            && row.contains("ci-runner"),
        "{row}"
    );
    assert!(child.try_wait()?.is_none(), "still watching");
    child.kill().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_with_json_prints_one_object_per_refresh() -> TestResult<()> {
    let sandbox = Sandbox::new("true").await?;
    post_assigned(&sandbox, 5).await?;
    let (mut child, mut lines) = spawn(&sandbox, &["--json", "watch", "--interval", "200ms"])?;
    let deadline = Instant::now() + Duration::from_secs(10);
    for _ in 0..2 {
        let line = next_line(&mut lines, deadline).await?;
        let view: serde_json::Value = serde_json::from_str(&line)?;
        assert_eq!(view["repo"], "acme/widgets", "{line}");
        assert_eq!(view["slots"]["used"], 0, "{line}");
        assert_eq!(view["issues"][0]["issue"], 5, "{line}");
        assert_eq!(view["issues"][0]["state"], "assigned", "{line}");
    }
    child.kill().await?;

    // --interval belongs to --watch.
    let output = sandbox.crew(&["status", "--interval", "1s"]).await?;
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2), "{stdout}\n{stderr}");
    Ok(())
}
