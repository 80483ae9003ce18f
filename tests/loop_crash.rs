//! `kill -9` of `crew loop` at points across many dispatches (issue 8), seeded and
//! reproducible: each run of the loop is killed right after one step of a dispatch, in an order
//! the seed shuffles (`CREW_TEST_SEED`, default 1); then a clean `crew loop --until-idle` and a
//! `crew gc` must converge: every issue completed exactly once in a single attempt (a crash
//! costs no attempt: the next cycle resumes the interrupted dispatch), no orphan worktree,
//! process or live lease.

use std::os::unix::process::ExitStatusExt;

use crate::support::TestResult;
use crate::support::sandbox::{PREFIX, Sandbox, text};

const STEPS: [&str; 8] = [
    "lease", "assigned", "board", "worktree", "context", "prompt", "spec", "spawn",
];

/// The steps in the order `seed` gives (a small LCG shuffle: reproducible, no dependency).
fn shuffled(seed: u64) -> Vec<&'static str> {
    let mut steps = STEPS.to_vec();
    let mut state = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    for index in (1..steps.len()).rev() {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let other = usize::try_from((state >> 33) % (index as u64 + 1)).unwrap_or(0);
        steps.swap(index, other);
    }
    steps
}

fn kinds(comments: &[(String, String)]) -> Vec<String> {
    comments
        .iter()
        .filter_map(|(_, body)| {
            let start = body.find("\"kind\":\"")? + 8;
            Some(body[start..].split('"').next()?.to_owned())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_loops_converge_to_every_issue_completed_once() -> TestResult {
    let seed = std::env::var("CREW_TEST_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or(1);
    let crew = env!("CARGO_BIN_EXE_crew");
    let agent = format!(
        "{crew} start && echo done > done.txt && git add done.txt && git commit -qm done && \
         {crew} done --no-pr --skip-rebase"
    );
    let sandbox = Sandbox::with_config(&agent, "max = 2\n").await?;
    let order = shuffled(seed);
    for step in &order {
        let mut command = sandbox.command(&["loop", "--interval", "200ms", "--until-idle"]);
        command.env("CREW_FAULT_KILL_AFTER", step);
        let run = tokio::time::timeout(
            std::time::Duration::from_secs(60),
            tokio::process::Command::from(command).output(),
        )
        .await
        .map_err(|_| format!("seed {seed}: the loop killed at {step} never died"))??;
        // Killed at that step, unless every issue was already done.
        if run.status.signal() != Some(9) {
            assert!(
                run.status.success(),
                "seed {seed}, {step}: {:?}",
                text(&run)
            );
        }
    }
    let clean = sandbox
        .crew(&["loop", "--interval", "200ms", "--until-idle"])
        .await?;
    assert!(clean.status.success(), "seed {seed}: {:?}", text(&clean));
    let gc = sandbox.crew(&["gc"]).await?;
    assert!(gc.status.success(), "seed {seed}: {:?}", text(&gc));

    for issue in [1_u64, 3, 4, 5, 6, 7, 8, 9] {
        let kinds = kinds(&sandbox.comments(issue).await?);
        let completed = kinds.iter().filter(|kind| *kind == "completed").count();
        assert_eq!(completed, 1, "seed {seed} ({order:?}), #{issue}: {kinds:?}");
        // Every attempt announced ended: with its completion or a handover.
        let assigned = kinds.iter().filter(|kind| *kind == "assigned").count();
        let ended = kinds
            .iter()
            .filter(|kind| matches!(kind.as_str(), "completed" | "handover"))
            .count();
        assert_eq!(assigned, ended, "seed {seed}, #{issue}: {kinds:?}");
        // A killed dispatch is resumed as the same attempt: no attempt is lost to a crash.
        assert_eq!(assigned, 1, "seed {seed}, #{issue}: {kinds:?}");
    }
    // No live lease, no worktree, no supervisor.
    let leases = sandbox.github.leases(&sandbox.repo, PREFIX).await?;
    for lease in &leases {
        let lease = lease.lease.as_ref().map_err(|error| format!("{error}"))?;
        assert_eq!(
            lease.state,
            crew::protocol::lease::LeaseState::Released,
            "seed {seed}: {lease:?}"
        );
    }
    let worktrees: Vec<_> = std::fs::read_dir(sandbox.dir.path())?
        .flatten()
        .filter(|entry| {
            entry
                .file_name()
                .to_string_lossy()
                .starts_with("widgets-worker-")
        })
        .map(|entry| entry.path())
        .collect();
    assert!(
        worktrees.is_empty(),
        "seed {seed}: worktrees left: {worktrees:?}"
    );
    Ok(())
}
