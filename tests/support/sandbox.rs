//! A sandbox for end-to-end tests of the real binary: an emulator with open issues #1, #3..=#9
//! (#2 closed), a real clone of its bare repository, a crew.toml whose `script` agent runs a
//! shell script, and helpers to run `crew` there and read what GitHub recorded.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crew::github::{GitHub, RepoSlug};
use github_emulator::World;
use github_emulator::world::WorldIssue;

use super::{BOT, Control, MAINTAINER, TestEmulator, TestResult, client, emulator_with, git};

pub const PREFIX: &str = "refs/crew/leases/";
/// Open issues #1, #3..=#9; #2 is closed.
pub const ISSUES: u64 = 9;
pub const CLOSED: u64 = 2;

pub fn world(world: &mut World) {
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

pub struct Sandbox {
    pub dir: tempfile::TempDir,
    pub clone: PathBuf,
    pub bare: PathBuf,
    pub config: PathBuf,
    pub base_url: String,
    pub github: GitHub,
    pub repo: RepoSlug,
    pub emulator: TestEmulator,
}

impl Sandbox {
    /// A sandbox whose `script` agent runs `sh -c SCRIPT`.
    pub async fn new(script: &str) -> TestResult<Sandbox> {
        Sandbox::with_config(script, "").await
    }

    /// [`Sandbox::new`] with `extra` appended to crew.toml's `[workers]` table. Unless `extra`
    /// says otherwise, a handover is not followed by a replacement attempt
    /// (`replace_on_handover = false`), so a test sees one attempt at a time.
    pub async fn with_config(script: &str, extra: &str) -> TestResult<Sandbox> {
        Sandbox::build(|_| {}, script, extra).await
    }

    /// [`Sandbox::with_config`] on the sandbox's world as `edit` changes it.
    pub async fn build(
        edit: impl FnOnce(&mut World),
        script: &str,
        extra: &str,
    ) -> TestResult<Sandbox> {
        let extra = if extra.contains("replace_on_handover") {
            extra.to_owned()
        } else {
            format!("replace_on_handover = false\n{extra}")
        };
        let emulator = emulator_with(|world_to_edit| {
            world(world_to_edit);
            edit(world_to_edit);
        })
        .await?;
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
                "[agents.script]\ncommand = [\"sh\", \"-c\", {}]\n\n[workers]\nagent = \"script\"\n{extra}",
                toml_string(script)
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

    pub fn command(&self, args: &[&str]) -> Command {
        self.command_of(Path::new(env!("CARGO_BIN_EXE_crew")), args)
    }

    /// [`Sandbox::command`] with another build of `crew` (a measurement of a release build).
    pub fn command_of(&self, program: &Path, args: &[&str]) -> Command {
        let mut command = Command::new(program);
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

    pub async fn crew(&self, args: &[&str]) -> TestResult<Output> {
        let mut command = tokio::process::Command::from(self.command(args));
        Ok(command.output().await?)
    }

    pub async fn comments(&self, issue: u64) -> TestResult<Vec<(String, String)>> {
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

    pub async fn assigned(&self, issue: u64) -> TestResult<Vec<String>> {
        Ok(self
            .comments(issue)
            .await?
            .into_iter()
            .filter(|(_, body)| body.contains("\"kind\":\"assigned\""))
            .map(|(author, _)| author)
            .collect())
    }

    pub async fn lease_refs(&self) -> TestResult<Vec<(u64, u32, String)>> {
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
pub fn toml_string(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_default()
}

pub fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

pub fn origin_file(bare: &Path, branch: &str, file: &str) -> Option<String> {
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
pub async fn requests(control: &Control) -> TestResult<Vec<(String, u64)>> {
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
