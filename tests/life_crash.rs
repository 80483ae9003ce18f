//! `kill -9` at every step of an issue's life after its dispatch (issue 8): the agent's own
//! `crew done` and `crew handover`, the supervisor's salvage, and the maintainer's `approve`,
//! `answer`, `request-changes` and `merge`. Each kill is the real thing
//! (`CREW_FAULT_KILL_AFTER=<point>`, see `crew::fault`), and after it the test does only what a
//! user or crew itself would do next: let the supervisor see its agent out and `crew loop`
//! carry on, re-run the maintainer's command, or go on to the next one. Then every issue must
//! have converged ([`assert_converged`]): completed exactly once, through exactly one pull
//! request (merged), every attempt that was announced ended once, no event posted twice, no
//! live lease, no worktree and no process left.
//!
//! The agent scripts choose their own kill points: an agent sets the variable for its own
//! `crew done`/`crew handover`, so several issues die at several points within one run of the
//! loop. The supervisor inherits the variable from whoever dispatched it, so its salvage points
//! are set on `crew dispatch`, with `CREW_FAULT_ONCE` so only the first process there dies.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crew::github::PullRequest;
use crew::protocol::lease::LeaseState;
use crew::protocol::marker::{Marker, parse};
use crew::protocol::{Event, EventKind};
use serde_json::Value;

use crate::support::TestResult;
use crate::support::sandbox::{PREFIX, Sandbox, text};

/// The event comments of `issue`, in order.
pub async fn events(sandbox: &Sandbox, issue: u64) -> TestResult<Vec<Event>> {
    Ok(sandbox
        .comments(issue)
        .await?
        .iter()
        .filter_map(|(_, body)| match parse(body) {
            Ok(Some(Marker::Event(event))) => Some(event),
            _ => None,
        })
        .collect())
}

pub fn kinds(events: &[Event]) -> Vec<&'static str> {
    events
        .iter()
        .map(|event| event.body.kind().as_str())
        .collect()
}

/// Every pull request whose head is one of `issue`'s branches (`feature/<issue>-…`).
pub async fn pulls_of(sandbox: &Sandbox, issue: u64) -> TestResult<Vec<PullRequest>> {
    let all: Vec<PullRequest> = sandbox
        .github
        .get_all_pages(
            "GET /repos/{owner}/{repo}/pulls",
            "/repos/acme/widgets/pulls?state=all&per_page=100".to_owned(),
        )
        .await?;
    let prefix = format!("feature/{issue}-");
    Ok(all
        .into_iter()
        .filter(|pull| pull.head.branch.starts_with(&prefix))
        .collect())
}

/// The state `crew show` folds for `issue`.
pub async fn state_of(sandbox: &Sandbox, issue: u64) -> TestResult<String> {
    let output = sandbox
        .crew(&["show", &issue.to_string(), "--json"])
        .await?;
    let (stdout, stderr) = text(&output);
    if !output.status.success() {
        return Err(format!("crew show {issue}: {stdout}\n{stderr}").into());
    }
    let view: Value = serde_json::from_str(&stdout)?;
    Ok(view["state"].as_str().unwrap_or_default().to_owned())
}

/// The worktree `crew dispatch` makes for `issue` in the sandbox.
pub fn worktree_of(sandbox: &Sandbox, issue: u64) -> PathBuf {
    sandbox.dir.path().join(format!("widgets-worker-{issue}"))
}

/// Waits until no supervisor runs in any worktree of the sandbox (an agent's `crew done`
/// released the lease, so the loop may be idle while its supervisor is still recording the
/// exit).
pub async fn supervisors_gone(sandbox: &Sandbox) -> TestResult {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let running: Vec<PathBuf> = std::fs::read_dir(sandbox.dir.path())?
            .flatten()
            .filter(|entry| {
                entry
                    .file_name()
                    .to_string_lossy()
                    .starts_with("widgets-worker-")
            })
            .map(|entry| entry.path())
            .filter(|path| crew::worker::lock::supervisor_running(path))
            .collect();
        if running.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!("supervisors still run in {running:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Processes whose working directory or command line is inside the sandbox: after convergence,
/// none (no supervisor, no agent, no `sleep` an agent left behind).
pub fn processes_in(dir: &Path) -> Vec<String> {
    let dir = dir.to_string_lossy().into_owned();
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|byte| byte.is_ascii_digit()) || name == std::process::id().to_string()
        {
            continue;
        }
        let cwd = std::fs::read_link(entry.path().join("cwd"))
            .map(|path| path.to_string_lossy().into_owned())
            .unwrap_or_default();
        let cmdline = std::fs::read(entry.path().join("cmdline"))
            .map(|bytes| String::from_utf8_lossy(&bytes).replace('\0', " "))
            .unwrap_or_default();
        if cwd.starts_with(&dir) || cmdline.contains(&dir) {
            found.push(format!("{name}: {cmdline} (in {cwd})"));
        }
    }
    found
}

/// Waits (briefly) until no process runs inside the sandbox.
pub async fn no_processes(sandbox: &Sandbox) -> TestResult {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let left = processes_in(sandbox.dir.path());
        if left.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!("processes left: {left:#?}").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The convergence every crash must come back to, for `issue`: completed exactly once; exactly
/// one pull request, merged; every announced attempt ended exactly once (by its completion, a
/// handover, a change request or a question it stopped for); no event posted twice (the same
/// op); its lease released; its worktree gone. `context` names the run in failures.
pub async fn assert_converged(sandbox: &Sandbox, issue: u64, context: &str) -> TestResult {
    let events = events(sandbox, issue).await?;
    let kinds = kinds(&events);
    let why = format!("{context}, #{issue}: {kinds:?}");
    let completed = kinds.iter().filter(|kind| **kind == "completed").count();
    assert_eq!(completed, 1, "{why}");
    let mut ops: Vec<&str> = events.iter().map(|event| event.op.as_str()).collect();
    ops.sort_unstable();
    let before = ops.len();
    ops.dedup();
    assert_eq!(ops.len(), before, "an event was posted twice: {why}");
    // Per attempt: announced once, ended once.
    let mut attempts: BTreeMap<u64, Vec<EventKind>> = BTreeMap::new();
    for event in &events {
        attempts
            .entry(event.attempt)
            .or_default()
            .push(event.body.kind());
    }
    let last = attempts.keys().max().copied();
    for (attempt, kinds) in &attempts {
        let count = |kind: EventKind| kinds.iter().filter(|seen| **seen == kind).count();
        assert_eq!(count(EventKind::Assigned), 1, "attempt {attempt}: {why}");
        let ended = count(EventKind::Completed)
            + count(EventKind::Handover)
            + count(EventKind::ChangesRequested);
        if Some(*attempt) == last {
            assert_eq!(count(EventKind::Completed), 1, "attempt {attempt}: {why}");
        }
        // A question ends an attempt whose worker exited; the answer starts the next.
        let asked = count(EventKind::Blocked) > 0 && Some(*attempt) != last;
        assert_eq!(
            ended + usize::from(asked && ended == 0),
            1,
            "attempt {attempt} not ended exactly once: {why}"
        );
    }
    let pulls = pulls_of(sandbox, issue).await?;
    assert_eq!(pulls.len(), 1, "{why}: pull requests {pulls:#?}");
    assert!(pulls[0].is_merged(), "{why}: {:?}", pulls[0]);
    let leases = sandbox.github.leases(&sandbox.repo, PREFIX).await?;
    if let Some(lease) = leases.iter().find(|lease| lease.issue == issue) {
        let lease = lease.lease.as_ref().map_err(|error| format!("{error}"))?;
        assert_eq!(lease.state, LeaseState::Released, "{why}: {lease:?}");
    }
    let worktree = worktree_of(sandbox, issue);
    assert!(!worktree.exists(), "{why}: {} is left", worktree.display());
    Ok(())
}

/// `crew loop --until-idle` with extra environment; `Ok(true)` when it was killed.
pub async fn run_loop(sandbox: &Sandbox, env: &[(&str, &str)]) -> TestResult<bool> {
    let mut command = sandbox.command(&["loop", "--interval", "200ms", "--until-idle"]);
    command.envs(env.iter().copied());
    let mut command = tokio::process::Command::from(command);
    command.kill_on_drop(true);
    let Ok(output) = tokio::time::timeout(Duration::from_secs(120), command.output()).await else {
        let status = sandbox.crew(&["status"]).await?;
        return Err(format!(
            "the loop ({env:?}) never went idle; status: {:?}",
            text(&status)
        )
        .into());
    };
    let output = output?;
    if output.status.signal() == Some(9) {
        return Ok(true);
    }
    if !output.status.success() {
        return Err(format!("loop {env:?}: {:?}", text(&output)).into());
    }
    Ok(false)
}

/// Runs `crew ARGS` with extra environment: `Ok(None)` when it was killed, its output otherwise.
pub async fn crew_env(
    sandbox: &Sandbox,
    args: &[&str],
    env: &[(&str, &str)],
) -> TestResult<Option<std::process::Output>> {
    let mut command = sandbox.command(args);
    command.envs(env.iter().copied());
    let output = tokio::process::Command::from(command).output().await?;
    Ok((output.status.signal() != Some(9)).then_some(output))
}

/// Runs `crew ARGS`, requiring success.
pub async fn crew_ok(sandbox: &Sandbox, args: &[&str]) -> TestResult<String> {
    let output = sandbox.crew(args).await?;
    let (stdout, stderr) = text(&output);
    if !output.status.success() {
        return Err(format!("crew {args:?} failed: {stdout}\n{stderr}").into());
    }
    Ok(stdout)
}

/// The maintainer's next step for `issue`, as a person would take it from `crew show`: approve
/// what is in review, merge what is approved. `env` goes to the command (a kill point); the
/// result is what the step's command did (`None`: killed; `Some(false)`: nothing to do).
pub async fn maintain(
    sandbox: &Sandbox,
    issue: u64,
    env: &[(&str, &str)],
) -> TestResult<Option<bool>> {
    let number = issue.to_string();
    let command = match state_of(sandbox, issue).await?.as_str() {
        "in_review" => "approve",
        "approved" => "merge",
        _ => return Ok(Some(false)),
    };
    let Some(output) = crew_env(sandbox, &[command, &number], env).await? else {
        return Ok(None);
    };
    let (stdout, stderr) = text(&output);
    if !output.status.success() {
        return Err(format!("crew {command} {issue}: {stdout}\n{stderr}").into());
    }
    Ok(Some(true))
}

/// Prefix of every scripted agent: who am I, and `$C` is crew.
fn agent_prelude() -> String {
    format!(
        "set -e\nC={}\n\
         issue=$(sed -n 's/^ *\"issue\": *\\([0-9]*\\).*/\\1/p' .crew/context.json)\n\
         attempt=$(sed -n 's/^ *\"attempt\": *\\([0-9]*\\).*/\\1/p' .crew/context.json)\n\
         $C start\n",
        env!("CARGO_BIN_EXE_crew")
    )
}

/// Work that differs on every attempt (a commit per attempt, so a later `done` has one too).
const WORK: &str = "echo \"attempt $attempt\" >> \"work-$issue.txt\"; git add -A; git commit -qm \"#$issue attempt $attempt\"\n";

/// The agent-side kill points, one issue each; #9 runs straight through.
const AGENT_POINTS: [(u64, &str); 7] = [
    (1, "done:push"),
    (3, "done:pr"),
    (4, "done:comment"),
    (5, "done:finished"),
    (6, "handover:push"),
    (7, "handover:comment"),
    (8, "handover:finished"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_commands_killed_at_every_step_converge() -> TestResult {
    // Attempt 1 of each issue dies at its point, in `crew done` or (for the handover points)
    // in `crew handover`; a later attempt finishes with `crew done`.
    let mut cases = String::new();
    for (issue, point) in AGENT_POINTS {
        let command = if point.starts_with("handover:") {
            "$C handover --summary \"part one\" --next \"finish it\"; exit 0"
        } else {
            "$C done --skip-rebase"
        };
        cases.push_str(&format!(
            "{issue}:1) CREW_FAULT_KILL_AFTER={point} {command} ;;\n"
        ));
    }
    let script = format!(
        "{}{WORK}case \"$issue:$attempt\" in\n{cases}*) $C done --skip-rebase ;;\nesac\n",
        agent_prelude()
    );
    let sandbox = Sandbox::with_config(&script, "max = 8\n").await?;
    assert!(!run_loop(&sandbox, &[]).await?, "nobody kills the loop");
    supervisors_gone(&sandbox).await?;

    let issues: Vec<u64> = AGENT_POINTS
        .iter()
        .map(|(issue, _)| *issue)
        .chain([9])
        .collect();
    for issue in &issues {
        let state = state_of(&sandbox, *issue).await?;
        assert_eq!(
            state,
            "in_review",
            "#{issue}: {:?}",
            kinds(&events(&sandbox, *issue).await?)
        );
        crew_ok(&sandbox, &["approve", &issue.to_string()]).await?;
        crew_ok(&sandbox, &["merge", &issue.to_string()]).await?;
    }
    for (issue, point) in AGENT_POINTS {
        let events = events(&sandbox, issue).await?;
        let kinds = kinds(&events);
        // Killed before the command said anything: the supervisor salvaged and handed over, and
        // the next attempt finished. Killed after: that event stands, once, and is not followed
        // by a salvage handover.
        let expected: &[&str] = match point {
            "done:push" | "done:pr" | "handover:push" => &[
                "assigned",
                "started",
                "handover",
                "assigned",
                "started",
                "in_review",
                "approved",
                "completed",
            ],
            "done:comment" | "done:finished" => {
                &["assigned", "started", "in_review", "approved", "completed"]
            }
            _ => &[
                "assigned",
                "started",
                "handover",
                "assigned",
                "started",
                "in_review",
                "approved",
                "completed",
            ],
        };
        assert_eq!(kinds, expected, "{point}");
        if point.starts_with("handover:") && point != "handover:push" {
            // The agent's own handover, not a salvage of it.
            assert!(
                events.iter().all(|event| !event.op.starts_with("salvage-")),
                "{point}: {kinds:?}"
            );
        }
        assert_converged(&sandbox, issue, point).await?;
    }
    assert_converged(&sandbox, 9, "straight through").await?;
    no_processes(&sandbox).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supervisor_killed_mid_salvage_is_finished_by_the_next_loop() -> TestResult {
    // Attempt 1 exits without `done` once both are dispatched (`../go`; otherwise the second
    // dispatch's own reconcile would finish the first salvage, or die in it): its supervisor
    // salvages, and dies after the push (#1) or after the handover comment (#3). The loop's
    // reconcile finishes the salvage; the next attempt finishes the issue.
    let script = format!(
        "{}{WORK}if [ \"$attempt\" = 1 ]; then\n\
         while [ ! -f ../go ]; do sleep 0.05; done; exit 3\nfi\n$C done --skip-rebase\n",
        agent_prelude()
    );
    let sandbox = Sandbox::with_config(&script, "max = 8\n").await?;
    let points = [(1_u64, "salvage:push"), (3, "salvage:comment")];
    let mut fired = Vec::new();
    for (issue, point) in points {
        let once = sandbox.dir.path().join(format!("fired-{issue}"));
        let env = [
            ("CREW_FAULT_KILL_AFTER", point),
            ("CREW_FAULT_ONCE", once.to_str().ok_or("path")?),
        ];
        let output = crew_env(&sandbox, &["dispatch", &issue.to_string()], &env)
            .await?
            .ok_or("the dispatch itself was killed")?;
        assert!(output.status.success(), "{point}: {:?}", text(&output));
        fired.push((issue, point, once));
    }
    std::fs::write(sandbox.dir.path().join("go"), "")?;
    // Each supervisor dies at its point.
    for (issue, point, once) in &fired {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while !once.exists()
            || crew::worker::lock::supervisor_running(&worktree_of(&sandbox, *issue))
        {
            if tokio::time::Instant::now() >= deadline {
                return Err(format!("#{issue}: the supervisor never died at {point}").into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // Killed after the push: no handover yet. After the comment: the handover, lease held.
    assert_eq!(kinds(&events(&sandbox, 1).await?), ["assigned", "started"]);
    assert_eq!(
        kinds(&events(&sandbox, 3).await?),
        ["assigned", "started", "handover"]
    );
    let leases = sandbox.github.leases(&sandbox.repo, PREFIX).await?;
    for lease in &leases {
        let lease = lease.lease.as_ref().map_err(|error| format!("{error}"))?;
        assert_eq!(lease.state, LeaseState::Held, "{lease:?}");
    }

    assert!(!run_loop(&sandbox, &[]).await?);
    supervisors_gone(&sandbox).await?;
    for (issue, point, _) in &fired {
        let kinds = kinds(&events(&sandbox, *issue).await?);
        assert_eq!(
            kinds,
            [
                "assigned",
                "started",
                "handover",
                "assigned",
                "started",
                "in_review"
            ],
            "{point}"
        );
        crew_ok(&sandbox, &["approve", &issue.to_string()]).await?;
        crew_ok(&sandbox, &["merge", &issue.to_string()]).await?;
        assert_converged(&sandbox, *issue, point).await?;
    }
    no_processes(&sandbox).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintainer_commands_killed_at_every_step_converge() -> TestResult {
    // #7 asks a question and exits on attempt 1; #6 gets a change request; the rest go
    // straight to review.
    let script = format!(
        "{}if [ \"$issue:$attempt\" = 7:1 ]; then $C blocked \"which colour?\"; exit 0; fi\n\
         {WORK}$C done --skip-rebase\n",
        agent_prelude()
    );
    let sandbox = Sandbox::with_config(&script, "max = 8\n").await?;
    assert!(!run_loop(&sandbox, &[]).await?);
    supervisors_gone(&sandbox).await?;
    let kill = |point: &'static str| [("CREW_FAULT_KILL_AFTER", point)];

    // approve killed after its comment: the next step is the merge.
    assert!(
        crew_env(&sandbox, &["approve", "1"], &kill("approve:comment"))
            .await?
            .is_none()
    );
    assert_eq!(state_of(&sandbox, 1).await?, "approved");
    crew_ok(&sandbox, &["merge", "1"]).await?;

    // merge killed after each step: the maintainer runs it again.
    for (issue, point) in [
        (3_u64, "merge:pr"),
        (4, "merge:comment"),
        (5, "merge:release"),
    ] {
        let number = issue.to_string();
        crew_ok(&sandbox, &["approve", &number]).await?;
        assert!(
            crew_env(&sandbox, &["merge", &number], &kill(point))
                .await?
                .is_none(),
            "{point}: not killed"
        );
        let again: Value =
            serde_json::from_str(&crew_ok(&sandbox, &["merge", &number, "--json"]).await?)?;
        assert_eq!(again["merged_now"], false, "{point}: {again}");
        if point != "merge:pr" {
            assert!(
                !again["removed"].as_array().is_none_or(Vec::is_empty),
                "{point}: the re-run removed nothing: {again}"
            );
        }
        // And a third run has nothing left to do: the usual refusal.
        let third = sandbox.crew(&["merge", &number]).await?;
        assert_eq!(third.status.code(), Some(1), "{point}: {:?}", text(&third));
        assert!(
            text(&third).1.contains("completed"),
            "{point}: {:?}",
            text(&third)
        );
    }

    // request-changes killed after its comment, before it dispatched the next attempt: the
    // loop starts it.
    assert!(
        crew_env(
            &sandbox,
            &["request-changes", "6", "--body", "once more"],
            &kill("request-changes:comment"),
        )
        .await?
        .is_none()
    );
    // answer killed after its comment, before it respawned the worker: the loop does.
    assert_eq!(state_of(&sandbox, 7).await?, "blocked");
    assert!(
        crew_env(&sandbox, &["answer", "7", "blue"], &kill("answer:comment"))
            .await?
            .is_none()
    );
    assert!(!run_loop(&sandbox, &[]).await?);
    supervisors_gone(&sandbox).await?;
    for issue in [6_u64, 7, 8, 9] {
        for _ in 0..2 {
            maintain(&sandbox, issue, &[]).await?;
        }
    }
    for issue in [1_u64, 3, 4, 5, 6, 7, 8, 9] {
        assert_converged(&sandbox, issue, "maintainer").await?;
    }
    assert_eq!(
        kinds(&events(&sandbox, 6).await?),
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
        ]
    );
    no_processes(&sandbox).await
}
