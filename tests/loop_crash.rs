//! `kill -9` of `crew loop` at points across many dispatches (issue 8), seeded and
//! reproducible: each run of the loop is killed right after one step of a dispatch, in an order
//! the seed shuffles (`CREW_TEST_SEED`, default 1); then a clean `crew loop --until-idle` and a
//! `crew gc` must converge: every issue completed exactly once in a single attempt (a crash
//! costs no attempt: the next cycle resumes the interrupted dispatch), no orphan worktree,
//! process or live lease.
//!
//! Then the randomized crash run: a seeded RNG picks kill points from *all* of an issue's life
//! (`crew::fault`: the dispatch steps, the agent's `done`/`handover`, the supervisor's salvage,
//! the maintainer's `approve`/`merge`), round after round: each round runs `crew loop
//! --until-idle` with one point armed (whichever process of the tree reaches it first dies:
//! the loop, a supervisor, an agent's `crew done`), then a maintainer pass (approve what is in
//! review, merge what is approved, re-run a merge that died) with another point armed. Agents
//! vary by issue: straight to `crew done`, a `crew handover` first, or an exit without either
//! (salvaged). When every issue is completed: a clean loop, maintainer pass and `crew gc`, and
//! every issue must have converged ([`crate::life_crash::assert_converged`]). The short seeded
//! run always runs; the long one (`#[ignore]`) runs seeds from `CREW_TEST_SEED` on until
//! `CREW_CRASH_KILLS` kills (default 30) have happened, and prints the numbers.

use std::collections::BTreeSet;
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use crate::life_crash::{
    assert_converged, crew_env, no_processes, run_loop, state_of, supervisors_gone,
};
use crate::support::TestResult;
use crate::support::sandbox::{PREFIX, Sandbox, text};

/// The steps in the order `seed` gives (a small LCG shuffle: reproducible, no dependency).
fn shuffled(seed: u64) -> Vec<&'static str> {
    let mut steps = crew::fault::DISPATCH_POINTS.to_vec();
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

/// splitmix64: a tiny, good, reproducible RNG (no dependency).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        let index = usize::try_from(self.next() % from.len() as u64).unwrap_or(0);
        from[index]
    }
}

const OPEN: [u64; 8] = [1, 3, 4, 5, 6, 7, 8, 9];

/// The agent of the randomized run. By issue: #1, #4, #7 hand over on their first attempt;
/// #5, #8 exit on their first attempt without a word, leaving uncommitted work (salvaged);
/// #3, #6, #9 ask a question and exit on their first attempt (the answer starts the next);
/// every later attempt commits and `crew done`. Every attempt commits something new, so every
/// `done` has a commit to push.
fn random_agent() -> String {
    format!(
        "set -e\nC={}\n\
         issue=$(sed -n 's/^ *\"issue\": *\\([0-9]*\\).*/\\1/p' .crew/context.json)\n\
         attempt=$(sed -n 's/^ *\"attempt\": *\\([0-9]*\\).*/\\1/p' .crew/context.json)\n\
         $C start\n\
         echo \"attempt $attempt\" >> \"work-$issue.txt\"; git add -A; git commit -qm \"#$issue attempt $attempt\"\n\
         case \"$((issue % 3)):$attempt\" in\n\
         0:1) $C blocked \"which colour?\"; exit 0 ;;\n\
         1:1) $C handover --summary \"first part\" --next \"the rest\" ;;\n\
         2:1) echo scratch >> \"scratch-$issue.txt\"; exit 3 ;;\n\
         *) $C done --skip-rebase ;;\n\
         esac\n",
        env!("CARGO_BIN_EXE_crew")
    )
}

/// What one seeded run did.
#[derive(Debug)]
struct RunReport {
    seed: u64,
    rounds: usize,
    /// The points that killed a process, in order.
    kills: Vec<String>,
    wall: Duration,
}

/// The maintainer's side of a randomized run.
struct Maintainer {
    rng: Rng,
    /// Issues whose merge died: the maintainer runs it again.
    reruns: BTreeSet<u64>,
    /// Issues that had changes requested (once each: enough, and it keeps the run finite).
    requested: BTreeSet<u64>,
}

/// The maintainer's pass over every issue with `env` armed: answer a question; request changes
/// on what is in review (once per issue, when the RNG says so) or approve it; merge what is
/// approved; re-run a merge that died. True when one of its commands was killed.
async fn maintainer_pass(
    sandbox: &Sandbox,
    env: &[(&str, &str)],
    maintainer: &mut Maintainer,
    context: &str,
) -> TestResult<bool> {
    let mut killed = false;
    for issue in OPEN {
        let number = issue.to_string();
        for _ in 0..2 {
            let args: Vec<&str> = if maintainer.reruns.contains(&issue) {
                vec!["merge", &number]
            } else {
                match state_of(sandbox, issue).await?.as_str() {
                    "blocked" => vec!["answer", &number, "blue"],
                    "in_review"
                        if !maintainer.requested.contains(&issue)
                            && maintainer.rng.next().is_multiple_of(3) =>
                    {
                        maintainer.requested.insert(issue);
                        vec!["request-changes", &number, "--body", "once more"]
                    }
                    "in_review" => vec!["approve", &number],
                    "approved" => vec!["merge", &number],
                    _ => break,
                }
            };
            let command = args[0];
            let Some(output) = crew_env(sandbox, &args, env).await? else {
                killed = true;
                if command == "merge" {
                    maintainer.reruns.insert(issue);
                }
                continue;
            };
            let (stdout, stderr) = text(&output);
            let rerun = command == "merge" && maintainer.reruns.remove(&issue);
            // A re-run merge with nothing left to do says the issue is completed.
            let finished = rerun && output.status.code() == Some(1) && stderr.contains("completed");
            if !output.status.success() && !finished {
                return Err(format!("{context}: crew {args:?}: {stdout}\n{stderr}").into());
            }
            if matches!(command, "answer" | "request-changes") {
                // The next attempt is started (by it, or by the next loop): nothing more now.
                break;
            }
        }
    }
    Ok(killed)
}

async fn all_completed(sandbox: &Sandbox) -> TestResult<bool> {
    for issue in OPEN {
        if state_of(sandbox, issue).await? != "completed" {
            return Ok(false);
        }
    }
    Ok(true)
}

/// One seeded run: rounds of an armed loop and an armed maintainer pass until every issue is
/// completed (at most `max_rounds`), then the clean finish and the convergence checks.
async fn randomized_run(seed: u64, max_rounds: usize) -> TestResult<RunReport> {
    let started = Instant::now();
    let sandbox = Sandbox::with_config(&random_agent(), "max = 4\nmax_attempts = 20\n").await?;
    let all: Vec<&str> = crew::fault::points().collect();
    let mut rng = Rng(seed);
    let mut maintainer = Maintainer {
        rng: Rng(seed ^ 0x5eed_5eed),
        reruns: BTreeSet::new(),
        requested: BTreeSet::new(),
    };
    let mut kills = Vec::new();
    let mut rounds = 0;
    while rounds < max_rounds && !all_completed(&sandbox).await? {
        rounds += 1;
        for (phase, point) in [("loop", rng.pick(&all)), ("maintainer", rng.pick(&all))] {
            let once = sandbox.dir.path().join(format!("fired-{rounds}-{phase}"));
            let once_path = once.to_str().ok_or("path")?.to_owned();
            let env = [
                ("CREW_FAULT_KILL_AFTER", point),
                ("CREW_FAULT_ONCE", once_path.as_str()),
            ];
            let context = format!("seed {seed}, round {rounds}, {phase} armed at {point}");
            if phase == "loop" {
                run_loop(&sandbox, &env)
                    .await
                    .map_err(|error| format!("{context}: {error}"))?;
            } else {
                maintainer_pass(&sandbox, &env, &mut maintainer, &context).await?;
            }
            if once.exists() {
                kills.push(point.to_owned());
            }
        }
    }
    let context = format!("seed {seed} after {rounds} rounds, kills {kills:?}");
    // The clean finish: what is left to run runs, what is left to merge is merged (a question,
    // a change request and a review take three turns at most).
    for _ in 0..4 {
        if !run_loop(&sandbox, &[]).await? && all_completed(&sandbox).await? {
            break;
        }
        supervisors_gone(&sandbox).await?;
        maintainer_pass(&sandbox, &[], &mut maintainer, &context).await?;
    }
    supervisors_gone(&sandbox).await?;
    let gc = sandbox.crew(&["gc"]).await?;
    assert!(gc.status.success(), "{context}: {:?}", text(&gc));
    for issue in OPEN {
        assert_converged(&sandbox, issue, &context).await?;
    }
    no_processes(&sandbox)
        .await
        .map_err(|error| format!("{context}: {error}"))?;
    Ok(RunReport {
        seed,
        rounds,
        kills,
        wall: started.elapsed(),
    })
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// The short seeded run, always on: one seed (`CREW_TEST_SEED`, default 1), a few kills.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn randomized_kills_across_an_issues_life_converge() -> TestResult {
    let seed = env_number("CREW_TEST_SEED", 1);
    let report = randomized_run(seed, 6).await?;
    eprintln!("randomized crash run: {report:?}");
    assert!(
        !report.kills.is_empty(),
        "seed {seed} killed nothing: {report:?}"
    );
    Ok(())
}

/// The long run, by hand: `CREW_CRASH_KILLS=30 cargo test --test crew -- --ignored
/// long_randomized --nocapture`. Seeds from `CREW_TEST_SEED` (default 1) upwards until that many
/// kills have happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "minutes long: run by hand with CREW_CRASH_KILLS and CREW_TEST_SEED"]
async fn long_randomized_kills_across_an_issues_life_converge() -> TestResult {
    let first = env_number("CREW_TEST_SEED", 1);
    let wanted = usize::try_from(env_number("CREW_CRASH_KILLS", 30)).unwrap_or(30);
    let started = Instant::now();
    let mut kills = 0;
    let mut seed = first;
    let mut by_point = std::collections::BTreeMap::<String, usize>::new();
    while kills < wanted {
        let report = randomized_run(seed, 12).await?;
        eprintln!(
            "seed {}: {} rounds, {} kills {:?}, {:.1}s",
            report.seed,
            report.rounds,
            report.kills.len(),
            report.kills,
            report.wall.as_secs_f64()
        );
        kills += report.kills.len();
        for point in report.kills {
            *by_point.entry(point).or_default() += 1;
        }
        seed += 1;
    }
    eprintln!(
        "long randomized crash run: seeds {first}..{}, {kills} kills, {:.1}s; by point {by_point:?}",
        seed - 1,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
