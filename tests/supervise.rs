//! The worker supervisor against the emulator and a real clone of its repository: a scripted
//! agent (`sh -c`) that crashes out is salvaged (WIP pushed, `handover` posted with the diff stat
//! and a redacted log tail, lease released); cancellation stops the agent's whole process group;
//! the lease is renewed while the agent runs; a pid with another start time is not the process.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use crew::agents::{AgentInvocation, EnvValue, Profile, Stdin};
use crew::github::{GitHub, HeldLease, LeaseRequest, RepoSlug, Secret};
use crew::protocol::lease::LeaseState;
use crew::settings::WorkersConfig;
use crew::worker::{self, ProcessIdentity, StopReason, SupervisorConfig, SupervisorOutcome};
use crew::workspace::{self, CheckoutMode, WorkerContext, Worktree, WorktreeRequest};

use crate::support::{MAINTAINER, TestEmulator, TestResult, client, emulator_with_issue, git};

const PREFIX: &str = "refs/crew/leases/";
const ISSUE: u64 = 1;
const WORKER: &str = "worker-1763700000-1";

/// An emulator with issue #1, a clone of acme/widgets, the issue's worktree and its lease.
struct Setup {
    _dir: tempfile::TempDir,
    bare: PathBuf,
    worktree: Worktree,
    github: GitHub,
    repo: RepoSlug,
    lease: HeldLease,
    _emulator: TestEmulator,
}

async fn setup() -> TestResult<Setup> {
    let emulator = emulator_with_issue().await?;
    let url = emulator
        .clone_url("acme", "widgets")
        .ok_or("acme/widgets has no clone url")?;
    let bare = PathBuf::from(url.strip_prefix("file://").unwrap_or(&url));
    let dir = tempfile::tempdir()?;
    git(dir.path(), &["clone", "--quiet", &url, "widgets"])?;
    let root = dir.path().join("widgets").canonicalize()?;
    let worktree = workspace::prepare_worktree(
        &WorktreeRequest {
            repo_root: &root,
            repo_name: "widgets",
            base: "main",
            issue: ISSUE,
            title: "Make widgets spin",
            attempt: 1,
            mode: CheckoutMode::Branch,
        },
        &WorkersConfig::default(),
    )?;
    let repo: RepoSlug = "acme/widgets".parse()?;
    workspace::write_context(
        &worktree.path,
        &WorkerContext {
            issue: ISSUE,
            attempt: 1,
            worker: WORKER.to_owned(),
            branch: worktree.branch.clone(),
            base: "main".to_owned(),
            repo: repo.to_string(),
            api_url: emulator.base_url().to_owned(),
            profile: "code".to_owned(),
        },
    )?;
    let github = client(&emulator, MAINTAINER, None)?;
    let lease = github
        .acquire_lease(
            &repo,
            PREFIX,
            ISSUE,
            LeaseRequest {
                base: "main".to_owned(),
                worker: WORKER.to_owned(),
                host: "laptop".to_owned(),
                runtime: "local".to_owned(),
                ttl: TimeDelta::minutes(30),
                now: Utc::now(),
            },
        )
        .await?;
    Ok(Setup {
        _dir: dir,
        bare,
        worktree,
        github,
        repo,
        lease,
        _emulator: emulator,
    })
}

/// A `sh -c SCRIPT` agent in the worktree, with the token in its environment as a secret.
fn scripted_agent(worktree: &Path, script: &str) -> AgentInvocation {
    AgentInvocation {
        agent: "script".to_owned(),
        profile: Profile {
            name: "code".to_owned(),
            tools: Vec::new(),
            push: true,
            token: true,
        },
        program: PathBuf::from("/bin/sh"),
        args: vec!["-c".to_owned(), script.to_owned()],
        env: vec![(
            "GH_TOKEN".to_owned(),
            EnvValue::Secret(Secret::new(MAINTAINER)),
        )],
        env_remove: vec!["GITHUB_TOKEN".to_owned()],
        cwd: worktree.to_path_buf(),
        stdin: Stdin::Null,
    }
}

fn config(setup: &Setup, script: &str, renew_every: Duration) -> SupervisorConfig {
    SupervisorConfig {
        worktree: setup.worktree.path.clone(),
        invocation: scripted_agent(&setup.worktree.path, script),
        program: PathBuf::from("/bin/sh"),
        log_path: SupervisorConfig::default_log_path(&setup.worktree.path, WORKER),
        github: setup.github.clone(),
        repo: setup.repo.clone(),
        lease: setup.lease.clone(),
        renew_every,
        ttl: TimeDelta::minutes(30),
        grace: Duration::from_millis(500),
        push: true,
    }
}

async fn supervise(config: SupervisorConfig) -> TestResult<SupervisorOutcome> {
    let outcome = tokio::time::timeout(
        Duration::from_secs(20),
        worker::run(config, std::future::pending()),
    )
    .await??;
    Ok(outcome)
}

fn origin_file(bare: &Path, branch: &str, file: &str) -> TestResult<Option<String>> {
    let repo = git2::Repository::open_bare(bare)?;
    let commit = repo
        .find_reference(&format!("refs/heads/{branch}"))?
        .peel_to_commit()?;
    let tree = commit.tree()?;
    let Ok(entry) = tree.get_path(Path::new(file)) else {
        return Ok(None);
    };
    let blob = repo.find_blob(entry.id())?;
    Ok(Some(String::from_utf8_lossy(blob.content()).into_owned()))
}

#[tokio::test]
async fn an_agent_that_exits_without_finishing_is_salvaged_and_handed_over() -> TestResult {
    let setup = setup().await?;
    let script = "echo \"my token is $GH_TOKEN\"; echo 'spinning widgets' > spin.txt; \
                  echo 'wrote spin.txt' >&2; exit 0";
    let outcome = supervise(config(&setup, script, Duration::from_secs(60))).await?;

    assert_eq!(outcome.exit.reason, StopReason::Exited);
    assert_eq!(outcome.exit.code, Some(0));
    assert_eq!(outcome.exit.finished, None);

    // The work is committed and pushed on the issue's branch.
    let salvage = outcome.salvage.clone().ok_or("nothing was salvaged")?;
    assert!(salvage.pushed, "the WIP commit was not pushed");
    let branch = setup.worktree.branch.clone().ok_or("no branch")?;
    assert_eq!(
        origin_file(&setup.bare, &branch, "spin.txt")?.as_deref(),
        Some("spinning widgets\n")
    );

    // The log has the output, redacted.
    let log = std::fs::read_to_string(SupervisorConfig::default_log_path(
        &setup.worktree.path,
        WORKER,
    ))?;
    assert!(log.contains("my token is ***"), "log: {log}");
    assert!(log.contains("wrote spin.txt"), "log: {log}");
    assert!(!log.contains(MAINTAINER), "the token leaked into the log");

    // One handover comment with the diff stat and the log tail, and no token.
    let comments = setup.github.issue_comments(&setup.repo, ISSUE).await?;
    let handovers: Vec<&str> = comments
        .iter()
        .filter_map(|comment| comment.body.as_deref())
        .filter(|body| body.contains("\"kind\":\"handover\""))
        .collect();
    assert_eq!(handovers.len(), 1, "comments: {comments:?}");
    let body = handovers[0];
    assert!(body.contains(&worker::supervisor::salvage_op(WORKER, 1)));
    assert!(body.contains("spin.txt"), "no diff stat: {body}");
    assert!(body.contains("wrote spin.txt"), "no log tail: {body}");
    assert!(body.contains("my token is ***"), "no redacted line: {body}");
    assert!(
        !body.contains(MAINTAINER),
        "the token leaked into the comment"
    );
    let handover_id = comments
        .iter()
        .find(|comment| comment.body.as_deref() == Some(body))
        .map(|comment| comment.id);
    assert_eq!(outcome.handover_comment, handover_id);

    // The exit is recorded, and the lease released for the next attempt.
    let record = worker::read_supervised(&setup.worktree.path)?.ok_or("no worker.json")?;
    assert_eq!(record.process.pid, outcome.agent.pid);
    assert_eq!(record.process.start_time, outcome.agent.start_time);
    assert_eq!(record.exit.map(|exit| exit.code), Some(Some(0)));
    assert_eq!(outcome.lease.lease.state, LeaseState::Released);
    Ok(())
}

#[tokio::test]
async fn an_agent_that_finished_itself_is_left_alone() -> TestResult {
    let setup = setup().await?;
    let script = "echo work > done.txt; echo completed > .crew/finished";
    let outcome = supervise(config(&setup, script, Duration::from_secs(60))).await?;
    assert_eq!(outcome.exit.finished.as_deref(), Some("completed"));
    assert!(outcome.salvage.is_none());
    assert!(outcome.handover_comment.is_none());
    // Nothing salvaged or posted; the lease the finishing command left held is let go (it would
    // otherwise keep the issue claimed by nobody until the TTL).
    assert_eq!(outcome.lease.lease.state, LeaseState::Released);
    Ok(())
}

#[tokio::test]
async fn cancellation_stops_the_whole_process_group() -> TestResult {
    let setup = setup().await?;
    // The background `sleep` ignores SIGINT (a non-interactive shell's background job), so the
    // escalation has to reach SIGTERM for it.
    let script = "sleep 30 & echo $! > .crew/grandchild; echo started; sleep 30; wait";
    let config = config(&setup, script, Duration::from_secs(60));
    let marker = setup.worktree.path.join(".crew/grandchild");
    let (cancel, cancelled) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(worker::run(config, async move {
        let _ = cancelled.await;
    }));

    let mut grandchild = None;
    for _ in 0..250 {
        // The agent may write its marker before the supervisor has written worker.json.
        if let Ok(text) = std::fs::read_to_string(&marker)
            && let Ok(pid) = text.trim().parse::<u32>()
            && workspace::read_worker(&setup.worktree.path)?.is_some()
        {
            grandchild = ProcessIdentity::of(pid);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let grandchild = grandchild.ok_or("the agent never started its grandchild")?;
    let record = workspace::read_worker(&setup.worktree.path)?.ok_or("no worker.json")?;
    assert!(worker::group_alive(record.pid));
    assert!(worker::is_alive(&grandchild));

    let _ = cancel.send(());
    let outcome = tokio::time::timeout(Duration::from_secs(10), run).await???;
    assert_eq!(outcome.exit.reason, StopReason::Cancelled);
    assert!(!worker::is_alive(&outcome.agent), "the agent survived");
    assert!(!worker::is_alive(&grandchild), "the grandchild survived");
    assert!(
        !worker::group_alive(outcome.agent.pid),
        "the group survived"
    );
    // A stopped worker hands over like a crashed one.
    assert!(outcome.handover_comment.is_some());
    Ok(())
}

#[tokio::test]
async fn the_lease_is_renewed_while_the_agent_runs() -> TestResult {
    let setup = setup().await?;
    let before = setup.lease.lease.renewed_at;
    let script = "sleep 1.5; echo completed > .crew/finished";
    let outcome = supervise(config(&setup, script, Duration::from_millis(300))).await?;
    assert!(outcome.renewals >= 2, "only {} renewals", outcome.renewals);
    let observed = setup.github.leases(&setup.repo, PREFIX).await?;
    let lease = observed
        .iter()
        .find(|lease| lease.issue == ISSUE)
        .ok_or("no lease")?
        .lease
        .clone()?;
    assert!(lease.renewed_at > before, "renewed_at did not advance");
    assert_eq!(lease.attempt, setup.lease.lease.attempt);
    assert_eq!(lease, outcome.lease.lease);
    Ok(())
}

#[test]
fn a_pid_with_another_start_time_is_not_the_process() -> TestResult {
    let mut child = Command::new("sleep").arg("5").spawn()?;
    let identity = ProcessIdentity::of(child.id()).ok_or("no identity")?;
    assert!(worker::is_alive(&identity));
    let reused = ProcessIdentity {
        start_time: identity.start_time + 1,
        ..identity
    };
    assert!(!worker::is_alive(&reused));
    assert!(!worker::signal_process(&reused, worker::Signal::Kill)?);
    assert!(
        worker::is_alive(&identity),
        "a mismatched identity was signalled"
    );
    child.kill()?;
    child.wait()?;
    assert!(!worker::is_alive(&identity));
    Ok(())
}

#[test]
fn the_supervisor_spec_never_stores_the_token() -> TestResult {
    let dir = tempfile::tempdir()?;
    let invocation = scripted_agent(dir.path(), "true");
    let stored = worker::StoredInvocation::from_invocation(&invocation);
    let text = serde_json::to_string(&stored)?;
    assert!(!text.contains(MAINTAINER));
    let token = Secret::new("other-token");
    let back = stored.to_invocation(Some(&token));
    assert_eq!(
        back.secrets().map(Secret::expose).collect::<Vec<_>>(),
        vec!["other-token"]
    );
    assert_eq!(back.args, invocation.args);
    Ok(())
}

#[tokio::test]
async fn crew_supervise_runs_detached_and_salvages_with_the_token_from_its_environment()
-> TestResult {
    let setup = setup().await?;
    let worktree = setup.worktree.path.clone();
    let home = setup._dir.path().join("home");
    std::fs::create_dir_all(&home)?;
    let script = "echo \"token: $GH_TOKEN\"; echo detached > detached.txt; exit 3";
    let log_path = SupervisorConfig::default_log_path(&worktree, WORKER);
    worker::write_spec(
        &worktree,
        &worker::SupervisorSpec {
            invocation: worker::StoredInvocation::from_invocation(&scripted_agent(
                &worktree, script,
            )),
            program: PathBuf::from("/bin/sh"),
            log_path: log_path.clone(),
            lease: setup.lease.clone(),
            renew_every_secs: 60,
            ttl_secs: 1800,
            grace_millis: 500,
            replacement: None,
        },
    )?;
    let spec_text = std::fs::read_to_string(worktree.join(".crew").join(worker::SUPERVISOR_FILE))?;
    assert!(
        !spec_text.contains(MAINTAINER),
        "the token was written to disk"
    );

    let supervisor_log = worktree.join(".crew/logs/supervisor.log");
    let mut command = worker::supervisor_command(
        Path::new(env!("CARGO_BIN_EXE_crew")),
        &worktree,
        &supervisor_log,
    )?;
    command
        .env_clear()
        .env("CREW_API_URL", setup._emulator.base_url())
        .env("HOME", &home)
        .env("CREW_CACHE_DIR", setup._dir.path().join("cache"))
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("NO_COLOR", "1")
        .env("GH_TOKEN", MAINTAINER)
        .env("GIT_AUTHOR_NAME", "Test Author")
        .env("GIT_AUTHOR_EMAIL", "author@example.com")
        .env("GIT_COMMITTER_NAME", "Test Author")
        .env("GIT_COMMITTER_EMAIL", "author@example.com")
        .env("GIT_TERMINAL_PROMPT", "0");
    let supervisor = worker::spawn_detached(command, &supervisor_log)?;

    for _ in 0..500 {
        if !worker::is_alive(&supervisor) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let supervisor_text = std::fs::read_to_string(&supervisor_log).unwrap_or_default();
    assert!(
        !worker::is_alive(&supervisor),
        "the supervisor is still running: {supervisor_text}"
    );
    let record = worker::read_supervised(&worktree)?.ok_or("no worker.json")?;
    assert_eq!(record.process.supervisor_pid, Some(supervisor.pid));
    assert_eq!(
        record.process.supervisor_start_time,
        Some(supervisor.start_time)
    );
    let exit = record
        .exit
        .ok_or_else(|| format!("no exit recorded: {supervisor_text}"))?;
    assert_eq!(exit.code, Some(3));

    let log = std::fs::read_to_string(&log_path)?;
    assert!(log.contains("token: ***"), "log: {log}");
    assert!(!log.contains(MAINTAINER));
    assert!(!supervisor_text.contains(MAINTAINER));
    let branch = setup.worktree.branch.clone().ok_or("no branch")?;
    assert_eq!(
        origin_file(&setup.bare, &branch, "detached.txt")?.as_deref(),
        Some("detached\n")
    );
    let comments = setup.github.issue_comments(&setup.repo, ISSUE).await?;
    assert!(
        comments
            .iter()
            .filter_map(|comment| comment.body.as_deref())
            .any(|body| body.contains("\"kind\":\"handover\"") && body.contains("detached.txt")),
        "no handover: {comments:?}\n{supervisor_text}"
    );
    Ok(())
}

#[tokio::test]
async fn sigterm_to_crew_supervise_stops_the_agent_group() -> TestResult {
    let setup = setup().await?;
    let worktree = setup.worktree.path.clone();
    let home = setup._dir.path().join("home");
    std::fs::create_dir_all(&home)?;
    let script = "sleep 30 & echo $! > .crew/grandchild; sleep 30; wait";
    worker::write_spec(
        &worktree,
        &worker::SupervisorSpec {
            invocation: worker::StoredInvocation::from_invocation(&scripted_agent(
                &worktree, script,
            )),
            program: PathBuf::from("/bin/sh"),
            log_path: SupervisorConfig::default_log_path(&worktree, WORKER),
            lease: setup.lease.clone(),
            renew_every_secs: 60,
            ttl_secs: 1800,
            grace_millis: 300,
            replacement: None,
        },
    )?;
    let supervisor_log = worktree.join(".crew/logs/supervisor.log");
    let mut command = worker::supervisor_command(
        Path::new(env!("CARGO_BIN_EXE_crew")),
        &worktree,
        &supervisor_log,
    )?;
    command
        .env_clear()
        .env("CREW_API_URL", setup._emulator.base_url())
        .env("HOME", &home)
        .env("CREW_CACHE_DIR", setup._dir.path().join("cache"))
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("NO_COLOR", "1")
        .env("GH_TOKEN", MAINTAINER)
        .env("GIT_TERMINAL_PROMPT", "0");
    let supervisor = worker::spawn_detached(command, &supervisor_log)?;

    let marker = worktree.join(".crew/grandchild");
    let mut grandchild = None;
    for _ in 0..250 {
        // The agent may write its marker before the supervisor has written worker.json.
        if let Ok(text) = std::fs::read_to_string(&marker)
            && let Ok(pid) = text.trim().parse::<u32>()
            && workspace::read_worker(&setup.worktree.path)?.is_some()
        {
            grandchild = ProcessIdentity::of(pid);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let grandchild = grandchild.ok_or("the agent never started its grandchild")?;
    let agent = workspace::read_worker(&worktree)?.ok_or("no worker.json")?;
    assert!(worker::signal_process(
        &supervisor,
        worker::Signal::Terminate
    )?);
    for _ in 0..500 {
        if !worker::is_alive(&supervisor) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let supervisor_text = std::fs::read_to_string(&supervisor_log).unwrap_or_default();
    assert!(
        !worker::is_alive(&supervisor),
        "still running: {supervisor_text}"
    );
    assert!(!worker::is_alive(&grandchild), "the grandchild survived");
    assert!(
        !worker::group_alive(agent.pid),
        "the agent's group survived"
    );
    let record = worker::read_supervised(&worktree)?.ok_or("no worker.json")?;
    let exit = record
        .exit
        .ok_or_else(|| format!("no exit recorded: {supervisor_text}"))?;
    assert_eq!(exit.reason, StopReason::Cancelled);
    Ok(())
}

#[tokio::test]
async fn a_superseded_worker_is_stopped_and_posts_nothing() -> TestResult {
    let setup = setup().await?;
    let script = "echo started; sleep 30";
    let config = config(&setup, script, Duration::from_millis(200));
    let run = tokio::spawn(worker::run(config, std::future::pending()));
    // Another orchestrator takes the lease over as if it had expired.
    let other = setup
        .github
        .acquire_lease(
            &setup.repo,
            PREFIX,
            ISSUE,
            LeaseRequest {
                base: "main".to_owned(),
                worker: "worker-other".to_owned(),
                host: "ci".to_owned(),
                runtime: "actions".to_owned(),
                ttl: TimeDelta::minutes(30),
                now: Utc::now() + TimeDelta::minutes(31),
            },
        )
        .await?;
    assert_eq!(other.lease.attempt, setup.lease.lease.attempt + 1);
    let outcome = tokio::time::timeout(Duration::from_secs(10), run).await???;
    assert_eq!(outcome.exit.reason, StopReason::Superseded);
    assert!(!worker::is_alive(&outcome.agent));
    assert!(!worker::group_alive(outcome.agent.pid));
    assert!(outcome.handover_comment.is_none());
    let comments = setup.github.issue_comments(&setup.repo, ISSUE).await?;
    assert!(
        comments
            .iter()
            .filter_map(|comment| comment.body.as_deref())
            .all(|body| !body.contains("\"kind\":\"handover\"")),
        "a superseded worker posted: {comments:?}"
    );
    let observed = setup.github.leases(&setup.repo, PREFIX).await?;
    let lease = observed
        .iter()
        .find(|lease| lease.issue == ISSUE)
        .ok_or("no lease")?
        .lease
        .clone()?;
    assert_eq!(lease.worker, "worker-other");
    Ok(())
}

/// A dispatch killed the instant it spawned the supervisor must not leave a window in which
/// neither the dispatch lock nor the supervisor lock is held (a second dispatch would take the
/// worker for an interrupted one and resume it): the supervisor inherits the dispatch lock and
/// holds it until its own lock is settled.
#[test]
fn the_supervisor_holds_the_dispatch_lock_until_its_own_is_settled() -> TestResult {
    let dir = tempfile::tempdir()?;
    let worktree = dir.path().join("widgets-worker-7");
    std::fs::create_dir_all(worktree.join(".crew"))?;
    // Another supervisor holds this worktree: the new one waits for it, then leaves.
    let _other = worker::lock::try_lock(&worker::lock::supervisor_lock_path(&worktree))?
        .ok_or("the supervisor lock is taken")?;
    let dispatch_path = dir.path().join("git/crew/dispatch-7.lock");
    let dispatching =
        worker::lock::try_lock(&dispatch_path)?.ok_or("the dispatch lock is taken")?;
    let log = worktree.join(".crew/logs/supervisor.log");
    let supervisor = worker::spawn_supervisor(
        Path::new(env!("CARGO_BIN_EXE_crew")),
        &worktree,
        &log,
        Some(&dispatching),
    )?;
    // The dispatch dies here.
    drop(dispatching);
    assert!(
        worker::lock::is_locked(&dispatch_path)?,
        "nobody holds the dispatch lock while the supervisor starts"
    );
    for _ in 0..300 {
        if !worker::is_alive(&supervisor) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!worker::is_alive(&supervisor), "still running: {text}");
    assert!(text.contains("another supervisor holds"), "{text}");
    // Gone with it, and never passed on.
    assert!(!worker::lock::is_locked(&dispatch_path)?, "{text}");
    Ok(())
}
