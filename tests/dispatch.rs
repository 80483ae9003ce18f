//! `crew dispatch` as the real binary against the emulator and a real clone: the lease, one
//! `assigned` comment, the worktree and `.crew/` files, the detached supervisor salvaging a
//! scripted agent; the requests one dispatch costs; refusals that write nothing; two dispatches
//! racing for one issue; the token never written anywhere.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use crew::github::{GitHub, LeaseRequest, RepoSlug};
use github_emulator::World;
use github_emulator::world::WorldIssue;
use serde_json::Value;

use crate::support::{
    BOT, Control, MAINTAINER, TestEmulator, TestResult, client, emulator_with, git,
};

const PREFIX: &str = "refs/crew/leases/";
/// Open issues #1, #3..=#9; #2 is closed.
const ISSUES: u64 = 9;
const CLOSED: u64 = 2;

fn world(world: &mut World) {
    if let Some(repo) = world.repos.first_mut() {
        for number in 1..=ISSUES {
            repo.issues.push(WorldIssue {
                title: format!("Make widgets spin {number}"),
                body: Some("They should spin.".to_string()),
                author: Some("maintainer".to_string()),
                labels: Vec::new(),
                assignees: Vec::new(),
                state: if number == CLOSED { "closed" } else { "open" }.to_string(),
                comments: Vec::new(),
            });
        }
    }
}

/// The agent: writes a file (after a pause, so the dispatch's own requests can be counted
/// before the supervisor's), prints the token it was given, and exits without a finished marker.
const SCRIPT: &str = "sleep 1; echo \"token $GH_TOKEN\"; echo spun > spin.txt; exit 0";

struct Sandbox {
    dir: tempfile::TempDir,
    clone: PathBuf,
    bare: PathBuf,
    config: PathBuf,
    base_url: String,
    github: GitHub,
    repo: RepoSlug,
    emulator: TestEmulator,
}

impl Sandbox {
    async fn new() -> TestResult<Sandbox> {
        let emulator = emulator_with(world).await?;
        let url = emulator
            .clone_url("acme", "widgets")
            .ok_or("acme/widgets has no clone url")?;
        let bare = PathBuf::from(url.strip_prefix("file://").unwrap_or(&url));
        let dir = tempfile::tempdir()?;
        for sub in ["home", "cache"] {
            std::fs::create_dir_all(dir.path().join(sub))?;
        }
        git(dir.path(), &["clone", "--quiet", &url, "widgets"])?;
        let clone = dir.path().join("widgets").canonicalize()?;
        let config = dir.path().join("crew.toml");
        std::fs::write(
            &config,
            format!(
                "[agents.script]\ncommand = [\"sh\", \"-c\", {}]\n\n[workers]\nagent = \"script\"\n",
                toml_string(SCRIPT)
            ),
        )?;
        let github = client(&emulator, MAINTAINER, None)?;
        Ok(Sandbox {
            base_url: emulator.base_url().to_string(),
            dir,
            clone,
            bare,
            config,
            github,
            repo: "acme/widgets".parse()?,
            emulator,
        })
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_crew"));
        command
            .args(["-R", "acme/widgets", "--config"])
            .arg(&self.config)
            .args(args)
            .current_dir(&self.clone)
            .env_clear()
            .env("CREW_API_URL", &self.base_url)
            .env("HOME", self.dir.path().join("home"))
            .env("CREW_CACHE_DIR", self.dir.path().join("cache"))
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("NO_COLOR", "1")
            .env("CREW_HOST", "laptop")
            .env("GH_TOKEN", BOT)
            .env("GIT_AUTHOR_NAME", "Test Author")
            .env("GIT_AUTHOR_EMAIL", "author@example.com")
            .env("GIT_COMMITTER_NAME", "Test Author")
            .env("GIT_COMMITTER_EMAIL", "author@example.com")
            .env("GIT_TERMINAL_PROMPT", "0")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    async fn crew(&self, args: &[&str]) -> TestResult<Output> {
        let mut command = tokio::process::Command::from(self.command(args));
        Ok(command.output().await?)
    }

    async fn comments(&self, issue: u64) -> TestResult<Vec<(String, String)>> {
        Ok(self
            .github
            .issue_comments(&self.repo, issue)
            .await?
            .into_iter()
            .map(|comment| {
                (
                    comment.user.map(|user| user.login).unwrap_or_default(),
                    comment.body.unwrap_or_default(),
                )
            })
            .collect())
    }

    async fn assigned(&self, issue: u64) -> TestResult<Vec<String>> {
        Ok(self
            .comments(issue)
            .await?
            .into_iter()
            .filter(|(_, body)| body.contains("\"kind\":\"assigned\""))
            .map(|(author, _)| author)
            .collect())
    }

    async fn lease_refs(&self) -> TestResult<Vec<(u64, u32, String)>> {
        Ok(self
            .github
            .leases(&self.repo, PREFIX)
            .await?
            .into_iter()
            .filter_map(|observed| {
                let lease = observed.lease.ok()?;
                Some((observed.issue, lease.attempt, lease.worker))
            })
            .collect())
    }
}

/// A TOML basic string.
fn toml_string(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_default()
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn origin_file(bare: &Path, branch: &str, file: &str) -> Option<String> {
    let repo = git2::Repository::open_bare(bare).ok()?;
    let commit = repo
        .find_reference(&format!("refs/heads/{branch}"))
        .ok()?
        .peel_to_commit()
        .ok()?;
    let tree = commit.tree().ok()?;
    let entry = tree.get_path(Path::new(file)).ok()?;
    let blob = repo.find_blob(entry.id()).ok()?;
    Some(String::from_utf8_lossy(blob.content()).into_owned())
}

/// Requests by route, as the emulator counted them.
async fn requests(control: &Control) -> TestResult<Vec<(String, u64)>> {
    let stats = control.stats().await?;
    Ok(stats["by_route"]
        .as_object()
        .map(|routes| {
            routes
                .iter()
                .map(|(route, entry)| (route.clone(), entry["requests"].as_u64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default())
}

#[tokio::test]
async fn dispatch_leases_announces_prepares_and_the_supervisor_salvages() -> TestResult {
    let sandbox = Sandbox::new().await?;
    let control = Control::new(&sandbox.emulator)?;
    control.reset_stats().await?;

    let output = sandbox.crew(&["dispatch", "1", "--json"]).await?;
    // The dispatch's own requests: the agent sleeps before doing anything, and the supervisor
    // talks to GitHub only once it has exited (renewals are minutes apart).
    let by_route = requests(&control).await?;
    let total: u64 = by_route.iter().map(|(_, count)| count).sum();
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    eprintln!("one dispatch: {total} requests: {by_route:?}");
    assert!(
        total <= 12,
        "one dispatch cost {total} requests: {by_route:?}"
    );

    let views: Value = serde_json::from_str(&stdout)?;
    let view = &views[0];
    assert_eq!(view["issue"], 1);
    assert_eq!(view["attempt"], 1);
    let worker = view["worker"].as_str().ok_or("no worker")?.to_owned();
    assert!(
        worker.starts_with("worker-") && worker.ends_with("-1"),
        "{worker}"
    );
    let worktree = PathBuf::from(view["worktree"].as_str().ok_or("no worktree")?);
    let branch = view["branch"].as_str().ok_or("no branch")?.to_owned();

    // The lease, attempt 1, held by the worker.
    let leases = sandbox.lease_refs().await?;
    assert_eq!(leases, vec![(1, 1, worker.clone())]);
    // Exactly one `assigned` comment, by the token's user.
    assert_eq!(sandbox.assigned(1).await?, vec!["crew-bot".to_owned()]);
    // The worktree on its branch, with its context.
    assert!(worktree.join(".crew/context.json").is_file());
    assert!(worktree.join(".crew/prompt.md").is_file());
    assert!(worktree.join(".crew/supervisor.json").is_file());
    assert_eq!(
        git(&worktree, &["rev-parse", "--abbrev-ref", "HEAD"])?,
        branch
    );
    let context: Value = serde_json::from_str(&std::fs::read_to_string(
        worktree.join(".crew/context.json"),
    )?)?;
    assert_eq!(context["worker"], worker.as_str());
    assert_eq!(context["attempt"], 1);

    // The token is nowhere on disk or in the output.
    for file in ["prompt.md", "context.json", "supervisor.json"] {
        let text = std::fs::read_to_string(worktree.join(".crew").join(file))?;
        assert!(!text.contains(BOT), "the token is in .crew/{file}");
    }
    assert!(!stdout.contains(BOT) && !stderr.contains(BOT));

    // The agent exits without finishing: the supervisor salvages and hands over.
    let mut handed_over = false;
    let mut pushed = None;
    for _ in 0..100 {
        handed_over = sandbox
            .comments(1)
            .await?
            .iter()
            .any(|(_, body)| body.contains("\"kind\":\"handover\""));
        pushed = origin_file(&sandbox.bare, &branch, "spin.txt");
        if handed_over && pushed.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let supervisor_log =
        std::fs::read_to_string(worktree.join(".crew/logs/supervisor.log")).unwrap_or_default();
    assert!(handed_over, "no handover comment: {supervisor_log}");
    assert_eq!(pushed.as_deref(), Some("spun\n"), "{supervisor_log}");
    assert!(
        !supervisor_log.contains(BOT),
        "the token is in the supervisor log"
    );

    // A second dispatch on this host does not ask who the token is again: the login is
    // remembered in the cache. (Only that route is counted: the first worker's supervisor may
    // still be releasing its lease.)
    control.reset_stats().await?;
    let second = sandbox.crew(&["dispatch", "5"]).await?;
    let (stdout, stderr) = text(&second);
    assert!(second.status.success(), "{stdout}\n{stderr}");
    let asked = requests(&control)
        .await?
        .into_iter()
        .find(|(route, _)| route == "GET /user")
        .map_or(0, |(_, count)| count);
    assert_eq!(asked, 0, "the second dispatch asked GET /user again");
    Ok(())
}

#[tokio::test]
async fn a_closed_issue_and_a_live_lease_are_refused_with_nothing_written() -> TestResult {
    let sandbox = Sandbox::new().await?;

    let output = sandbox.crew(&["dispatch", &CLOSED.to_string()]).await?;
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("closed"), "{stderr}");
    assert!(sandbox.comments(CLOSED).await?.is_empty());
    assert!(sandbox.lease_refs().await?.is_empty());

    // Someone else holds #3's lease.
    sandbox
        .github
        .acquire_lease(
            &sandbox.repo,
            PREFIX,
            3,
            LeaseRequest {
                base: "main".to_owned(),
                worker: "worker-elsewhere-3".to_owned(),
                host: "ci".to_owned(),
                runtime: "actions".to_owned(),
                ttl: TimeDelta::minutes(30),
                now: Utc::now(),
            },
        )
        .await?;
    let output = sandbox.crew(&["dispatch", "3"]).await?;
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(4), "{stdout}\n{stderr}");
    assert!(stderr.contains("worker-elsewhere-3"), "{stderr}");
    assert!(sandbox.comments(3).await?.is_empty());
    assert_eq!(
        sandbox.lease_refs().await?,
        vec![(3, 1, "worker-elsewhere-3".to_owned())]
    );
    assert!(!sandbox.dir.path().join("widgets-worker-3").exists());
    assert!(!sandbox.dir.path().join("widgets-worker-2").exists());
    Ok(())
}

#[tokio::test]
async fn two_dispatches_of_one_issue_one_wins_one_exits_4() -> TestResult {
    let sandbox = Sandbox::new().await?;
    for issue in [5_u64, 6, 7] {
        let number = issue.to_string();
        // tokio's processes: a blocking wait would stall the emulator, which shares this runtime.
        let first =
            tokio::process::Command::from(sandbox.command(&["dispatch", &number])).spawn()?;
        let second =
            tokio::process::Command::from(sandbox.command(&["dispatch", &number])).spawn()?;
        let (first, second) = tokio::join!(first.wait_with_output(), second.wait_with_output());
        let outputs = [first?, second?];
        let mut codes: Vec<Option<i32>> =
            outputs.iter().map(|output| output.status.code()).collect();
        codes.sort();
        let texts: Vec<(String, String)> = outputs.iter().map(text).collect();
        assert_eq!(codes, vec![Some(0), Some(4)], "#{issue}: {texts:?}");
        assert_eq!(sandbox.assigned(issue).await?.len(), 1, "#{issue}");
        let worktrees = std::fs::read_dir(sandbox.dir.path())?
            .filter_map(Result::ok)
            .filter(|entry| {
                entry.file_name().to_string_lossy() == format!("widgets-worker-{issue}")
            })
            .count();
        assert_eq!(worktrees, 1, "#{issue}");
        let worktree_list = git(&sandbox.clone, &["worktree", "list", "--porcelain"])?;
        assert_eq!(
            worktree_list
                .lines()
                .filter(|line| line.starts_with("worktree ") && line.ends_with(&format!("-{issue}")))
                .count(),
            1,
            "{worktree_list}"
        );
        for (stdout, stderr) in &texts {
            assert!(!stdout.contains(BOT) && !stderr.contains(BOT));
        }
    }
    Ok(())
}

#[tokio::test]
async fn attempts_past_max_attempts_are_refused() -> TestResult {
    let sandbox = Sandbox::new().await?;
    let settings = std::fs::read_to_string(&sandbox.config)?;
    std::fs::write(&sandbox.config, format!("{settings}max_attempts = 1\n"))?;
    let output = sandbox.crew(&["dispatch", "4"]).await?;
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    // Wait for the supervisor's handover (which releases the lease).
    let mut handed_over = false;
    for _ in 0..100 {
        handed_over = sandbox
            .comments(4)
            .await?
            .iter()
            .any(|(_, body)| body.contains("\"kind\":\"handover\""));
        if handed_over {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(handed_over, "no handover");
    let comments = sandbox.comments(4).await?.len();
    let output = sandbox.crew(&["dispatch", "4"]).await?;
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("max_attempts"), "{stderr}");
    assert!(
        stderr.contains("handover"),
        "the state is not named: {stderr}"
    );
    assert_eq!(sandbox.comments(4).await?.len(), comments);
    Ok(())
}
