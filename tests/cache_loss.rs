//! Losing or damaging the cache (DESIGN.md 7: "cache deleted → `crew status --json` identical
//! after rebuild"): deleted, truncated to garbage, or written by a newer crew. crew rebuilds or
//! says clearly what to do; never a panic, never a wrong state.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::support::TestResult;
use crate::support::sandbox::{Sandbox, text};

/// The cache files under the sandbox's cache directory (the database and its WAL/SHM).
fn cache_files(sandbox: &Sandbox) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut dirs = vec![sandbox.dir.path().join("cache")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

fn database(sandbox: &Sandbox) -> TestResult<PathBuf> {
    cache_files(sandbox)
        .into_iter()
        .find(|path| path.extension().is_some_and(|ext| ext == "sqlite3"))
        .ok_or_else(|| format!("no cache database in {:?}", cache_files(sandbox)).into())
}

async fn status(sandbox: &Sandbox) -> TestResult<(Option<i32>, String, String)> {
    let output = sandbox.crew(&["status", "--all", "--json"]).await?;
    let (stdout, stderr) = text(&output);
    Ok((output.status.code(), stdout, stderr))
}

/// A sandbox with some history: one issue dispatched and handed over, one cancelled.
async fn with_history() -> TestResult<Sandbox> {
    let sandbox = Sandbox::new("echo work > work.txt").await?;
    for issue in ["1", "3"] {
        let output = sandbox.crew(&["dispatch", issue]).await?;
        assert!(output.status.success(), "{:?}", text(&output));
    }
    // Wait for #1's salvage handover, then cancel #3's attempt.
    for _ in 0..100 {
        if sandbox
            .comments(1)
            .await?
            .iter()
            .any(|(_, body)| body.contains("\"kind\":\"handover\""))
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let output = sandbox.crew(&["cancel", "3"]).await?;
    assert!(output.status.success(), "{:?}", text(&output));
    Ok(sandbox)
}

fn remove(paths: &[PathBuf]) -> std::io::Result<()> {
    for path in paths {
        std::fs::remove_file(path)?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_cache_gives_the_same_status() -> TestResult {
    let sandbox = with_history().await?;
    let (code, before, stderr) = status(&sandbox).await?;
    assert_eq!(code, Some(0), "{stderr}");
    remove(&cache_files(&sandbox))?;
    let (code, after, stderr) = status(&sandbox).await?;
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(before, after);
    let view: Value = serde_json::from_str(&after)?;
    assert!(
        view["issues"]
            .as_array()
            .is_some_and(|issues| issues.len() >= 2),
        "{view}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbage_cache_is_set_aside_and_rebuilt_with_a_warning() -> TestResult {
    let sandbox = with_history().await?;
    let (_, before, _) = status(&sandbox).await?;
    let path = database(&sandbox)?;
    remove(
        &cache_files(&sandbox)
            .into_iter()
            .filter(|file| file != &path)
            .collect::<Vec<_>>(),
    )?;
    std::fs::write(
        &path,
        b"this is not a SQLite database, it is garbage from a bad disk",
    )?;
    // crew sets the broken file aside (kept for a post-mortem), says so, and rebuilds.
    let (code, stdout, stderr) = status(&sandbox).await?;
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout, before);
    assert!(stderr.contains("damaged"), "{stderr}");
    let aside: Vec<PathBuf> = cache_files(&sandbox)
        .into_iter()
        .filter(|file| file.to_string_lossy().contains(".corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1, "{:?}", cache_files(&sandbox));
    assert!(std::fs::read(&aside[0])?.starts_with(b"this is not a SQLite database"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_from_a_newer_crew_is_refused_not_guessed_at() -> TestResult {
    let sandbox = with_history().await?;
    let (_, before, _) = status(&sandbox).await?;
    let path = database(&sandbox)?;
    set_user_version(&path, 999)?;
    let (code, stdout, stderr) = status(&sandbox).await?;
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("newer"), "{stderr}");
    assert!(stderr.contains(&path.display().to_string()), "{stderr}");
    assert!(
        stdout.is_empty(),
        "a status was printed from a cache crew cannot read: {stdout}"
    );
    // The file is left for the newer crew; deleting it is the documented way back.
    remove(&cache_files(&sandbox))?;
    let (code, after, stderr) = status(&sandbox).await?;
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(after, before);
    Ok(())
}

fn set_user_version(path: &Path, version: i64) -> TestResult {
    let connection = rusqlite::Connection::open(path)?;
    connection.pragma_update(None, "user_version", version)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_deleted_while_a_loop_runs_changes_nothing_it_decides() -> TestResult {
    let crew = env!("CARGO_BIN_EXE_crew");
    let agent = format!(
        "{crew} start && sleep 1 && echo done > done.txt && git add done.txt && \
         git commit -qm done && {crew} done --no-pr --skip-rebase"
    );
    let sandbox = Sandbox::with_config(&agent, "max = 3\n").await?;
    let child = tokio::process::Command::from(sandbox.command(&[
        "loop",
        "--interval",
        "200ms",
        "--until-idle",
    ]))
    .spawn()?;
    // Once work is under way, the cache goes (the loop still holds its open file; every other
    // crew process starts a new one).
    for _ in 0..100 {
        if !sandbox.assigned(1).await?.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    remove(&cache_files(&sandbox))?;
    let output = tokio::time::timeout(
        std::time::Duration::from_secs(120),
        child.wait_with_output(),
    )
    .await
    .map_err(|_| "the loop did not finish")??;
    assert!(output.status.success(), "{:?}", text(&output));
    for issue in [1_u64, 3, 4, 5, 6, 7, 8, 9] {
        let kinds: Vec<String> = sandbox
            .comments(issue)
            .await?
            .iter()
            .filter_map(|(_, body)| {
                let start = body.find("\"kind\":\"")? + 8;
                Some(body[start..].split('"').next()?.to_owned())
            })
            .collect();
        assert_eq!(kinds, ["assigned", "started", "completed"], "#{issue}");
    }
    // And a fresh status agrees.
    let (code, stdout, stderr) = status(&sandbox).await?;
    assert_eq!(code, Some(0), "{stderr}");
    let view: Value = serde_json::from_str(&stdout)?;
    assert!(
        view["issues"]
            .as_array()
            .is_some_and(|issues| issues.iter().all(|issue| issue["state"] == "completed")),
        "{view}"
    );
    Ok(())
}
