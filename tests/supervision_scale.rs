//! Supervision at scale (issue 8, DESIGN.md 7: "32 local workers supervised: orchestrator < 1%
//! CPU and < 64 MiB RSS in steady state"). Dispatches 32 scripted workers that stay alive, then
//! samples every supervisor's CPU time and memory from `/proc` over a steady window and prints
//! the totals. Ignored by default (it holds 32 processes for a minute):
//! `cargo test --test crew supervision_scale -- --ignored --nocapture`
//! (`CREW_SCALE_WORKERS`, `CREW_SCALE_SECONDS` change the 32 and the 60; `CREW_SCALE_BIN`
//! measures another build of crew, e.g. `target/release/crew`).

use std::time::{Duration, Instant};

use github_emulator::World;
use github_emulator::world::WorldIssue;
use serde_json::Value;

use crate::support::TestResult;
use crate::support::sandbox::{Sandbox, text};

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// (RSS, PSS) of `pid` in KiB: PSS shares the binary's pages among the processes mapping it.
fn memory_kib(pid: u32) -> Option<(u64, u64)> {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let field = |name: &str| {
        rollup
            .lines()
            .find(|line| line.starts_with(name))
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|value| value.parse::<u64>().ok())
    };
    Some((field("Rss:")?, field("Pss:")?))
}

/// Memory only `pid` holds (Private_Clean + Private_Dirty), in KiB, and its thread count.
fn private_kib_and_threads(pid: u32) -> Option<(u64, u64)> {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let private = rollup
        .lines()
        .filter(|line| line.starts_with("Private_"))
        .filter_map(|line| line.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum();
    let threads = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?.count() as u64;
    Some((private, threads))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "holds 32 worker processes for a minute; run it to measure"]
async fn thirty_two_supervised_workers_cost_little_in_steady_state() -> TestResult {
    let workers = env_number("CREW_SCALE_WORKERS", 32);
    let seconds = env_number("CREW_SCALE_SECONDS", 60);
    let sandbox = Sandbox::build(
        move |world: &mut World| {
            if let Some(repo) = world.repos.first_mut() {
                for _ in 0..workers {
                    repo.issues.push(WorldIssue {
                        title: "Stay busy".to_owned(),
                        body: None,
                        author: Some("maintainer".to_owned()),
                        labels: Vec::new(),
                        assignees: Vec::new(),
                        state: "open".to_owned(),
                        comments: Vec::new(),
                    });
                }
            }
        },
        "sleep 600",
        "",
    )
    .await?;
    // The supervisors are the binary that dispatched them: `CREW_SCALE_BIN` measures another
    // build (a release build: `cargo build --release`, then CREW_SCALE_BIN=target/release/crew).
    let binary = std::env::var_os("CREW_SCALE_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_crew").into());
    let binary = std::fs::canonicalize(&binary)
        .map_err(|error| format!("CREW_SCALE_BIN {}: {error}", binary.display()))?;
    let mut supervisors = Vec::new();
    for issue in 10..10 + workers {
        let command = sandbox.command_of(&binary, &["dispatch", &issue.to_string(), "--json"]);
        let output = tokio::process::Command::from(command).output().await?;
        let (stdout, stderr) = text(&output);
        assert!(output.status.success(), "{stdout}\n{stderr}");
        let view: Value = serde_json::from_str(&stdout)?;
        supervisors.push(u32::try_from(view[0]["pid"].as_u64().ok_or("no pid")?)?);
    }
    // Settle, then measure a steady window.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ticks_per_second = 100.0; // Linux USER_HZ
    let before: u64 = supervisors.iter().filter_map(|pid| cpu_ticks(*pid)).sum();
    let started = Instant::now();
    let (mut peak_rss, mut peak_pss, mut peak_private, mut threads) = (0_u64, 0_u64, 0_u64, 0);
    while started.elapsed() < Duration::from_secs(seconds) {
        let (rss, pss) = supervisors
            .iter()
            .filter_map(|pid| memory_kib(*pid))
            .fold((0, 0), |(rss, pss), (r, p)| (rss + r, pss + p));
        let (private, thread_count) = supervisors
            .iter()
            .filter_map(|pid| private_kib_and_threads(*pid))
            .fold((0, 0), |(private, count), (p, t)| (private + p, count + t));
        peak_rss = peak_rss.max(rss);
        peak_pss = peak_pss.max(pss);
        peak_private = peak_private.max(private);
        threads = threads.max(thread_count);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let after: u64 = supervisors.iter().filter_map(|pid| cpu_ticks(*pid)).sum();
    let elapsed = started.elapsed().as_secs_f64();
    let cpu_percent = (after - before) as f64 / ticks_per_second / elapsed * 100.0;
    eprintln!(
        "{workers} supervised workers over {elapsed:.0} s: supervisors' CPU {cpu_percent:.3}% of one core; \
         peak RSS {:.1} MiB in all ({:.1} MiB each), peak PSS {:.1} MiB in all, private {:.1} MiB \
         in all; {threads} threads in all; binary {}",
        peak_rss as f64 / 1024.0,
        peak_rss as f64 / 1024.0 / workers as f64,
        peak_pss as f64 / 1024.0,
        peak_private as f64 / 1024.0,
        binary.display(),
    );
    assert_eq!(
        supervisors
            .iter()
            .filter(|pid| cpu_ticks(**pid).is_some())
            .count(),
        supervisors.len(),
        "a supervisor died during the window"
    );
    for issue in 10..10 + workers {
        let _ = sandbox.crew(&["cancel", &issue.to_string()]).await?;
    }
    Ok(())
}
