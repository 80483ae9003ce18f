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
//!
//! `crew blocked` and `crew fail` killed between their comment and `.crew/finished` (or, for
//! `fail`, before the release) must not be salvaged into a second end of the attempt: the
//! question stands alone until answered (its work saved, the lease released), the failure is
//! retried by the next loop. `crew cancel` killed after each of its steps (`fault::CANCEL_POINTS`)
//! is run again, with or without a `crew gc` in between, and must end with one `cancelled`, no
//! handover, the work on the branch, the lease released, no worktree and no process
//! ([`assert_cancelled`]).

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
use crate::support::sandbox::{PREFIX, Sandbox, origin_file, text};

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
/// handover, a change request, a failure or a question it stopped for); no event posted twice (the same
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
            + count(EventKind::ChangesRequested)
            + count(EventKind::Failed);
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
            "done:comment" | "done:finished" => {
                &["assigned", "started", "in_review", "approved", "completed"]
            }
            // done:push, done:pr, handover:push (salvaged), handover:comment/finished (its own).
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

/// A sandbox whose only open issues are `open` (the others closed before the first request), so
/// a loop starts no worker the test does not look at.
async fn sandbox_of(script: &str, open: &'static [u64]) -> TestResult<Sandbox> {
    Sandbox::build(
        |world| {
            if let Some(repo) = world.repos.first_mut() {
                for issue in &mut repo.issues {
                    if !open
                        .iter()
                        .any(|number| issue.title == format!("Make widgets spin {number}"))
                    {
                        issue.state = "closed".to_owned();
                    }
                }
            }
        },
        script,
        "max = 8\n",
    )
    .await
}

/// `file` on the branch of `issue` (`feature/<issue>-…`) in origin, if both exist.
fn on_branch(sandbox: &Sandbox, issue: u64, file: &str) -> TestResult<Option<String>> {
    let repo = git2::Repository::open_bare(&sandbox.bare)?;
    let prefix = format!("feature/{issue}-");
    for branch in repo.branches(Some(git2::BranchType::Local))? {
        let (branch, _) = branch?;
        if let Some(name) = branch.name()?
            && name.starts_with(&prefix)
        {
            return Ok(origin_file(&sandbox.bare, name, file));
        }
    }
    Ok(None)
}

/// The state of `issue`'s lease (`None`: no lease ref).
async fn lease_of(sandbox: &Sandbox, issue: u64) -> TestResult<Option<LeaseState>> {
    let leases = sandbox.github.leases(&sandbox.repo, PREFIX).await?;
    match leases.into_iter().find(|lease| lease.issue == issue) {
        None => Ok(None),
        Some(lease) => Ok(Some(lease.lease.map_err(|error| format!("{error}"))?.state)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_and_fail_killed_after_their_comment_converge() -> TestResult {
    // Attempt 1 of #1 asks a question, with a draft not committed, and dies in `crew blocked`
    // after the comment, before `.crew/finished`; #3 dies in `crew fail` after the comment, #4
    // after the marker, before the release. Each agent's session then ends, its supervisor
    // settles it, and the loop (a retry after a failure) or the maintainer's answer starts the
    // next attempt, which finishes. #5 dies in `crew blocked` too, and asks again at once: the
    // re-run finds the first comment instead of asking twice.
    let script = format!(
        "{}{WORK}case \"$issue:$attempt\" in\n\
         1:1) echo draft > \"draft-$issue.txt\"\n\
         CREW_FAULT_KILL_AFTER=blocked:comment $C blocked \"which colour?\"; exit 0 ;;\n\
         3:1) CREW_FAULT_KILL_AFTER=fail:comment $C fail \"it cannot be done\"; exit 0 ;;\n\
         4:1) CREW_FAULT_KILL_AFTER=fail:finished $C fail \"it cannot be done\"; exit 0 ;;\n\
         5:1) CREW_FAULT_KILL_AFTER=blocked:comment $C blocked \"which size?\" \\\n\
         || $C blocked \"which size?\"; exit 0 ;;\n\
         *) $C done --skip-rebase ;;\nesac\n",
        agent_prelude()
    );
    let sandbox = sandbox_of(&script, &[1, 3, 4, 5]).await?;
    assert!(!run_loop(&sandbox, &[]).await?, "nobody kills the loop");
    supervisors_gone(&sandbox).await?;

    // The question stands alone: no salvage handover after it, the draft saved on the branch,
    // the lease released so the answer can start the next attempt at once.
    assert_eq!(
        kinds(&events(&sandbox, 1).await?),
        ["assigned", "started", "blocked"]
    );
    assert_eq!(state_of(&sandbox, 1).await?, "blocked");
    assert_eq!(lease_of(&sandbox, 1).await?, Some(LeaseState::Released));
    assert_eq!(
        on_branch(&sandbox, 1, "draft-1.txt")?.as_deref(),
        Some("draft\n")
    );
    assert_eq!(
        kinds(&events(&sandbox, 5).await?),
        ["assigned", "started", "blocked"]
    );
    assert_eq!(lease_of(&sandbox, 5).await?, Some(LeaseState::Released));
    // The failures stand alone too, and the loop retried each.
    for (issue, point) in [(3_u64, "fail:comment"), (4, "fail:finished")] {
        let events = events(&sandbox, issue).await?;
        assert_eq!(
            kinds(&events),
            [
                "assigned",
                "started",
                "failed",
                "assigned",
                "started",
                "in_review"
            ],
            "{point}"
        );
        assert!(
            events.iter().all(|event| !event.op.starts_with("salvage-")),
            "{point}"
        );
    }

    crew_ok(&sandbox, &["answer", "1", "blue"]).await?;
    crew_ok(&sandbox, &["answer", "5", "large"]).await?;
    supervisors_gone(&sandbox).await?;
    for issue in [1_u64, 5] {
        assert_eq!(
            kinds(&events(&sandbox, issue).await?),
            [
                "assigned",
                "started",
                "blocked",
                "answered",
                "assigned",
                "started",
                "in_review"
            ],
            "#{issue}"
        );
    }
    for issue in [1_u64, 3, 4, 5] {
        crew_ok(&sandbox, &["approve", &issue.to_string()]).await?;
        crew_ok(&sandbox, &["merge", &issue.to_string()]).await?;
        assert_converged(&sandbox, issue, "blocked/fail").await?;
    }
    no_processes(&sandbox).await
}

/// An agent that leaves uncommitted work and runs until it is stopped (in the foreground: a
/// non-interactive shell's background jobs ignore SIGINT).
const UNTIL_CANCELLED: &str = "echo wip > wip.txt; sh -c 'sleep 30'; echo never";

/// Waits until the supervisor in `worktree` has recorded its agent and the agent has written
/// `file`.
async fn running(worktree: &Path, file: &str) -> TestResult {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while crew::worker::read_supervised(worktree)?.is_none() || !worktree.join(file).is_file() {
        if tokio::time::Instant::now() >= deadline {
            return Err(format!("no worker runs in {}", worktree.display()).into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// The convergence of a cancel, for `issue`: exactly one `cancelled` and no handover (nothing
/// invites a next attempt), the issue cancelled, the work on its branch in origin, the lease
/// released, the worktree gone.
async fn assert_cancelled(sandbox: &Sandbox, issue: u64, context: &str) -> TestResult {
    let events = events(sandbox, issue).await?;
    let kinds = kinds(&events);
    assert_eq!(kinds, ["assigned", "cancelled"], "{context}");
    let mut ops: Vec<&str> = events.iter().map(|event| event.op.as_str()).collect();
    ops.sort_unstable();
    ops.dedup();
    assert_eq!(ops.len(), events.len(), "{context}: an op twice");
    assert_eq!(state_of(sandbox, issue).await?, "cancelled", "{context}");
    assert_eq!(
        on_branch(sandbox, issue, "wip.txt")?.as_deref(),
        Some("wip\n"),
        "{context}: the work is not on the branch"
    );
    assert_eq!(
        lease_of(sandbox, issue).await?,
        Some(LeaseState::Released),
        "{context}"
    );
    let worktree = worktree_of(sandbox, issue);
    assert!(
        !worktree.exists(),
        "{context}: {} is left",
        worktree.display()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_killed_at_every_step_converges_when_run_again() -> TestResult {
    let issues = [1_u64, 3, 4, 5, 6];
    let cases: Vec<(u64, &str)> = issues
        .into_iter()
        .zip(crew::fault::CANCEL_POINTS.iter().copied())
        .collect();
    assert_eq!(cases.len(), crew::fault::CANCEL_POINTS.len());
    let sandbox = sandbox_of(UNTIL_CANCELLED, &[1, 3, 4, 5, 6]).await?;
    crew_ok(&sandbox, &["dispatch", "1", "3", "4", "5", "6"]).await?;
    for issue in issues {
        running(&worktree_of(&sandbox, issue), "wip.txt").await?;
    }

    for (issue, point) in &cases {
        let number = issue.to_string();
        let worktree = worktree_of(&sandbox, *issue);
        let killed = crew_env(
            &sandbox,
            &["cancel", &number],
            &[("CREW_FAULT_KILL_AFTER", point)],
        )
        .await?;
        assert!(
            killed.is_none(),
            "{point}: not killed: {:?}",
            killed.as_ref().map(text)
        );
        // Where the kill left it.
        let kinds_now = kinds(&events(&sandbox, *issue).await?);
        let supervising = crew::worker::lock::supervisor_running(&worktree);
        let lease = lease_of(&sandbox, *issue).await?;
        match *point {
            "cancel:finished" => {
                assert!(supervising, "{point}: the worker should still run");
                assert_eq!(kinds_now, ["assigned"], "{point}");
            }
            "cancel:stop" | "cancel:push" => {
                assert!(!supervising, "{point}");
                assert_eq!(kinds_now, ["assigned"], "{point}");
                assert_eq!(lease, Some(LeaseState::Held), "{point}");
                let saved = on_branch(&sandbox, *issue, "wip.txt")?;
                assert_eq!(saved.is_some(), *point == "cancel:push", "{point}");
            }
            "cancel:comment" => {
                assert_eq!(kinds_now, ["assigned", "cancelled"], "{point}");
                assert_eq!(lease, Some(LeaseState::Held), "{point}");
            }
            _ => {
                assert_eq!(kinds_now, ["assigned", "cancelled"], "{point}");
                assert_eq!(lease, Some(LeaseState::Released), "{point}");
            }
        }
        // The maintainer runs it again: it finishes what is left, or says nothing is.
        let again = sandbox.crew(&["cancel", &number, "--json"]).await?;
        let (stdout, stderr) = text(&again);
        if *point == "cancel:release" {
            assert_eq!(again.status.code(), Some(1), "{point}: {stdout}\n{stderr}");
            assert!(stderr.contains("already cancelled"), "{point}: {stderr}");
        } else {
            assert!(again.status.success(), "{point}: {stdout}\n{stderr}");
            let view: Value = serde_json::from_str(&stdout)?;
            assert_eq!(view["lease"], "released", "{point}: {view}");
            assert_eq!(view["state"], "cancelled", "{point}: {view}");
        }
        assert!(
            !crew::worker::lock::supervisor_running(&worktree),
            "{point}"
        );
    }

    let gc = sandbox.crew(&["gc"]).await?;
    assert!(gc.status.success(), "{:?}", text(&gc));
    for (issue, point) in &cases {
        assert_cancelled(&sandbox, *issue, point).await?;
    }
    no_processes(&sandbox).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_cancel_meets_gc_before_it_is_run_again() -> TestResult {
    // #1: the cancel dies after its marker, and the agent then ends its session by itself
    // (`../go-1`). #3: the cancel dies after its comment. A `crew gc` runs before the maintainer
    // runs each cancel again, and one after.
    let script = "echo wip > wip.txt\n\
                  issue=$(sed -n 's/^ *\"issue\": *\\([0-9]*\\).*/\\1/p' .crew/context.json)\n\
                  while [ ! -f \"../go-$issue\" ]; do sleep 0.05; done\n";
    let sandbox = sandbox_of(script, &[1, 3]).await?;
    crew_ok(&sandbox, &["dispatch", "1", "3"]).await?;
    for issue in [1_u64, 3] {
        running(&worktree_of(&sandbox, issue), "wip.txt").await?;
    }
    for (issue, point) in [(1_u64, "cancel:finished"), (3, "cancel:comment")] {
        let killed = crew_env(
            &sandbox,
            &["cancel", &issue.to_string()],
            &[("CREW_FAULT_KILL_AFTER", point)],
        )
        .await?;
        assert!(killed.is_none(), "{point}: not killed");
    }
    std::fs::write(sandbox.dir.path().join("go-1"), "")?;
    supervisors_gone(&sandbox).await?;
    // The supervisor of #1 saw the cancel's marker: no salvage handover, and the lease kept, so
    // no next attempt starts on an issue being cancelled.
    assert_eq!(kinds(&events(&sandbox, 1).await?), ["assigned"]);
    assert_eq!(lease_of(&sandbox, 1).await?, Some(LeaseState::Held));

    let gc = sandbox.crew(&["gc"]).await?;
    assert!(gc.status.success(), "{:?}", text(&gc));
    assert!(
        worktree_of(&sandbox, 1).exists(),
        "#1 is live: its worktree stays"
    );
    assert!(
        !worktree_of(&sandbox, 3).exists(),
        "#3 is cancelled: gc removes it"
    );
    // #3's attempt has ended (`cancelled` is out) and nothing runs it: gc let go of its lease
    // too. #1's cancel has not reached GitHub, so its lease is kept.
    assert_eq!(lease_of(&sandbox, 3).await?, Some(LeaseState::Released));
    assert_eq!(lease_of(&sandbox, 1).await?, Some(LeaseState::Held));

    let again = sandbox.crew(&["cancel", "1", "--json"]).await?;
    let (stdout, stderr) = text(&again);
    assert!(again.status.success(), "#1: {stdout}\n{stderr}");
    let view: Value = serde_json::from_str(&stdout)?;
    assert_eq!(view["lease"], "released", "#1: {view}");
    assert!(!view["comment_id"].is_null(), "#1: {view}");
    // Nothing is left of #3's cancel to finish.
    let again = sandbox.crew(&["cancel", "3"]).await?;
    let (_, stderr) = text(&again);
    assert_eq!(again.status.code(), Some(1), "#3: {stderr}");
    assert!(stderr.contains("already cancelled"), "#3: {stderr}");
    let gc = sandbox.crew(&["gc"]).await?;
    assert!(gc.status.success(), "{:?}", text(&gc));
    for issue in [1_u64, 3] {
        assert_cancelled(&sandbox, issue, &format!("#{issue}")).await?;
    }
    no_processes(&sandbox).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_question_answered_to_a_live_worker_no_longer_closes_its_attempt() -> TestResult {
    // Attempt 1 dies in `crew blocked` after the comment but its session goes on: it waits for
    // the answer (`../answered`), works on and exits without `crew done`. The answer went to the
    // live worker, so the question no longer closes the attempt: its exit is salvaged and handed
    // over like any other, and the next attempt finishes.
    let script = format!(
        "{}{WORK}if [ \"$attempt\" = 1 ]; then\n\
         CREW_FAULT_KILL_AFTER=blocked:comment $C blocked \"which size?\" || true\n\
         while [ ! -f ../answered ]; do sleep 0.05; done\n\
         echo more > \"more-$issue.txt\"; exit 3\nfi\n$C done --skip-rebase\n",
        agent_prelude()
    );
    let sandbox = sandbox_of(&script, &[1]).await?;
    crew_ok(&sandbox, &["dispatch", "1"]).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while kinds(&events(&sandbox, 1).await?).last() != Some(&"blocked") {
        if tokio::time::Instant::now() >= deadline {
            return Err("the question was never posted".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The worker lives on, and keeps its lease: the answer goes to it, no next attempt.
    assert!(crew::worker::lock::supervisor_running(&worktree_of(
        &sandbox, 1
    )));
    assert_eq!(lease_of(&sandbox, 1).await?, Some(LeaseState::Held));
    crew_ok(&sandbox, &["answer", "1", "large"]).await?;
    std::fs::write(sandbox.dir.path().join("answered"), "")?;
    supervisors_gone(&sandbox).await?;
    let events_now = events(&sandbox, 1).await?;
    assert_eq!(
        kinds(&events_now),
        ["assigned", "started", "blocked", "answered", "handover"]
    );
    assert!(
        events_now
            .last()
            .is_some_and(|event| event.op.starts_with("salvage-"))
    );
    assert_eq!(
        on_branch(&sandbox, 1, "more-1.txt")?.as_deref(),
        Some("more\n")
    );

    assert!(!run_loop(&sandbox, &[]).await?);
    supervisors_gone(&sandbox).await?;
    crew_ok(&sandbox, &["approve", "1"]).await?;
    crew_ok(&sandbox, &["merge", "1"]).await?;
    assert_converged(&sandbox, 1, "answered, then salvaged").await?;
    no_processes(&sandbox).await
}

/// A cancel killed after its comment leaves a lease no process renews or releases. The next
/// fill cycle lets go of it (its attempt has ended on GitHub), so its slot is free and a
/// `crew loop --until-idle` ends, without starting anything on the cancelled issue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_that_outlived_its_cancel_is_released_by_the_next_fill() -> TestResult {
    let sandbox = sandbox_of(UNTIL_CANCELLED, &[1]).await?;
    crew_ok(&sandbox, &["dispatch", "1"]).await?;
    running(&worktree_of(&sandbox, 1), "wip.txt").await?;
    let killed = crew_env(
        &sandbox,
        &["cancel", "1"],
        &[("CREW_FAULT_KILL_AFTER", "cancel:comment")],
    )
    .await?;
    assert!(killed.is_none(), "not killed");
    assert_eq!(lease_of(&sandbox, 1).await?, Some(LeaseState::Held));

    let looped = sandbox
        .crew(&["loop", "--interval", "100ms", "--until-idle"])
        .await?;
    let (stdout, stderr) = text(&looped);
    assert!(looped.status.success(), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("released the lease of attempt 1"),
        "{stderr}"
    );
    assert_eq!(lease_of(&sandbox, 1).await?, Some(LeaseState::Released));
    assert_eq!(
        kinds(&events(&sandbox, 1).await?),
        ["assigned", "cancelled"]
    );

    let gc = sandbox.crew(&["gc"]).await?;
    assert!(gc.status.success(), "{:?}", text(&gc));
    assert_cancelled(&sandbox, 1, "cancel:comment, then a loop").await?;
    no_processes(&sandbox).await
}
