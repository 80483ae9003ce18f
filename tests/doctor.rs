//! `crew doctor` end to end: the real binary against the emulator, in a temporary clone whose
//! origin is the emulator's bare repository, with a temporary HOME, cache and PATH.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::support::{BOT, Control, OUTSIDER, TestResult};
use github_emulator::EmulatorHandle;
use serde_json::Value;

/// A hermetic place to run crew in.
struct Sandbox {
    _dir: tempfile::TempDir,
    clone: PathBuf,
    home: PathBuf,
    cache: PathBuf,
    bin: PathBuf,
}

impl Sandbox {
    fn new(emulator: &EmulatorHandle) -> TestResult<Sandbox> {
        let dir = tempfile::tempdir()?;
        let clone = dir.path().join("widgets");
        let home = dir.path().join("home");
        let cache = dir.path().join("cache");
        let bin = dir.path().join("bin");
        for path in [&clone, &home, &bin] {
            std::fs::create_dir_all(path)?;
        }
        let repository = git2::Repository::init(&clone)?;
        let origin = emulator
            .clone_url("acme", "widgets")
            .ok_or("the emulator has no acme/widgets")?;
        repository.remote("origin", &origin)?;
        // Fake agents, so the agents check sees them on PATH.
        for agent in ["claude", "codex"] {
            write_executable(&bin.join(agent), "#!/bin/sh\nexit 0\n")?;
        }
        Ok(Sandbox {
            _dir: dir,
            clone,
            home,
            cache,
            bin,
        })
    }

    fn write_config(&self, text: &str) -> TestResult {
        std::fs::write(self.clone.join("crew.toml"), text)?;
        Ok(())
    }

    /// Runs `crew -R acme/widgets <args>` with only the environment crew needs.
    async fn crew(
        &self,
        emulator: &EmulatorHandle,
        token: Option<&str>,
        args: &[&str],
    ) -> TestResult<Output> {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_crew"));
        command
            .args(["-R", "acme/widgets"])
            .args(args)
            .current_dir(&self.clone)
            .env_clear()
            .env("CREW_API_URL", emulator.base_url())
            .env("HOME", &self.home)
            .env("CREW_CACHE_DIR", &self.cache)
            .env("PATH", &self.bin)
            .env("NO_COLOR", "1");
        if let Some(token) = token {
            command.env("GH_TOKEN", token);
        }
        Ok(command.output().await?)
    }

    async fn doctor_json(
        &self,
        emulator: &EmulatorHandle,
        token: Option<&str>,
    ) -> TestResult<(i32, Value, String)> {
        let output = self.crew(emulator, token, &["--json", "doctor"]).await?;
        let stdout = String::from_utf8(output.stdout)?;
        let stderr = String::from_utf8(output.stderr)?;
        let report: Value = serde_json::from_str(&stdout).map_err(|error| {
            format!("stdout is not JSON ({error}):\n{stdout}\nstderr:\n{stderr}")
        })?;
        Ok((output.status.code().unwrap_or(-1), report, stderr))
    }
}

fn write_executable(path: &Path, text: &str) -> TestResult {
    std::fs::write(path, text)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(())
}

/// The check named `name` from a JSON report.
fn check<'a>(report: &'a Value, name: &str) -> TestResult<&'a Value> {
    report["checks"]
        .as_array()
        .and_then(|checks| checks.iter().find(|check| check["name"] == name))
        .ok_or_else(|| format!("no check named {name} in {report:#}").into())
}

fn status<'a>(report: &'a Value, name: &str) -> TestResult<&'a str> {
    Ok(check(report, name)?["status"].as_str().unwrap_or("?"))
}

fn detail<'a>(report: &'a Value, name: &str) -> TestResult<&'a str> {
    Ok(check(report, name)?["detail"].as_str().unwrap_or(""))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_passes_for_the_bot_and_cleans_up_its_probe() -> TestResult {
    let emulator = crate::support::emulator().await?;
    let control = Control::new(&emulator)?;
    let sandbox = Sandbox::new(&emulator)?;
    sandbox.write_config("[project]\nnumber = 1\n")?;

    let (code, report, stderr) = sandbox.doctor_json(&emulator, Some(BOT)).await?;

    assert_eq!(code, 0, "{report:#}\n{stderr}");
    assert_eq!(report["ok"], true);
    for name in [
        "token",
        "rate_limit",
        "repository",
        "permission",
        "git_remote",
        "base_branch",
        "lease_refs",
        "project",
        "agents",
        "cache",
        "markers",
    ] {
        assert_eq!(status(&report, name)?, "ok", "{name}: {report:#}");
    }
    assert!(detail(&report, "token")?.contains("crew-bot (from GH_TOKEN)"));
    assert!(detail(&report, "permission")?.contains("write"));
    assert!(detail(&report, "project")?.contains("Blocked"));
    assert_eq!(detail(&report, "markers")?, "no ignored markers");
    assert!(sandbox.cache.join("cache.sqlite3").exists());

    // The probe wrote for real and cleaned up after itself.
    let stats = control.stats().await?;
    let routes = &stats["by_route"];
    assert_eq!(routes["POST /repos/{owner}/{repo}/git/refs"]["requests"], 1);
    assert_eq!(
        routes["PATCH /repos/{owner}/{repo}/git/refs/{ref}"]["requests"],
        2
    );
    assert_eq!(
        routes["DELETE /repos/{owner}/{repo}/git/refs/{ref}"]["requests"],
        1
    );
    let github = crate::support::client(&emulator, BOT, None)?;
    let widgets = "acme/widgets".parse()?;
    assert!(
        github
            .matching_refs(&widgets, "refs/crew/")
            .await?
            .is_empty()
    );
    // A whole doctor run stays cheap: 12 for the checks, and 4 for the markers check's read
    // side on a cold cache (issues, comments, lease refs, and `GET /user` for the own login,
    // which is remembered in the cache after the first run).
    let total = stats["requests"].as_u64().unwrap_or(u64::MAX);
    assert!(total <= 16, "doctor sent {total} requests: {stats:#}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_fails_for_an_outsider_without_write_access() -> TestResult {
    let emulator = crate::support::emulator().await?;
    let control = Control::new(&emulator)?;
    let sandbox = Sandbox::new(&emulator)?;

    let (code, report, _) = sandbox.doctor_json(&emulator, Some(OUTSIDER)).await?;

    assert_eq!(code, 1, "{report:#}");
    assert_eq!(report["ok"], false);
    assert_eq!(status(&report, "token")?, "ok");
    assert_eq!(status(&report, "permission")?, "fail");
    let permission = detail(&report, "permission")?;
    assert!(
        permission.contains("outsider has only read access"),
        "{permission}"
    );
    assert!(
        check(&report, "permission")?["hint"]
            .as_str()
            .unwrap_or("")
            .contains("Write role")
    );
    assert_eq!(
        status(&report, "lease_refs")?,
        "warn",
        "not probed without write access"
    );
    assert_eq!(
        control
            .requests("POST /repos/{owner}/{repo}/git/refs")
            .await?,
        0
    );

    // Human output: one line per check, status first.
    let output = sandbox.crew(&emulator, Some(OUTSIDER), &["doctor"]).await?;
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8(output.stdout)?;
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines.len(),
        report["checks"].as_array().map_or(0, Vec::len),
        "{stdout}"
    );
    assert!(
        lines
            .iter()
            .any(|line| line.starts_with("fail  permission")),
        "{stdout}"
    );
    assert!(String::from_utf8(output.stderr)?.contains("doctor checks failed"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_fails_clearly_for_a_bad_token_without_printing_it() -> TestResult {
    let emulator = crate::support::emulator().await?;
    let sandbox = Sandbox::new(&emulator)?;
    let secret = "ghp_DoctorMustNotPrintThis0123456789";

    let output = sandbox
        .crew(&emulator, Some(secret), &["--json", "doctor"])
        .await?;
    let stdout = String::from_utf8(output.stdout)?;
    let stderr = String::from_utf8(output.stderr)?;
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(!stdout.contains(secret) && !stderr.contains(secret));

    let report: Value = serde_json::from_str(&stdout)?;
    assert_eq!(status(&report, "token")?, "fail");
    let token = detail(&report, "token")?;
    assert!(
        token.contains("rejected the token") && token.contains("Bad credentials"),
        "{token}"
    );
    assert!(!token.contains("rate limited"), "{token}");
    assert_eq!(
        status(&report, "permission")?,
        "warn",
        "not checked without a login"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_fails_without_a_token() -> TestResult {
    let emulator = crate::support::emulator().await?;
    let sandbox = Sandbox::new(&emulator)?;

    let (code, report, _) = sandbox.doctor_json(&emulator, None).await?;

    assert_eq!(code, 1);
    assert_eq!(status(&report, "token")?, "fail");
    assert_eq!(detail(&report, "token")?, "no GitHub token found");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_tells_a_rate_limited_token_from_a_bad_one() -> TestResult {
    let emulator = crate::support::emulator().await?;
    let control = Control::new(&emulator)?;
    control.rate_limit("crew-bot", "core", 0).await?;
    let sandbox = Sandbox::new(&emulator)?;

    let (code, report, stderr) = sandbox.doctor_json(&emulator, Some(BOT)).await?;

    assert_eq!(code, 1, "{report:#}\n{stderr}");
    // The token is not known to be bad, so it is not the failure: the rate limit is.
    assert_eq!(status(&report, "token")?, "warn");
    let token = detail(&report, "token")?;
    assert!(
        token.contains("could not be verified") && token.contains("rate limited until"),
        "{token}"
    );
    assert!(!token.contains("rejected"), "{token}");
    assert!(
        check(&report, "token")?["hint"]
            .as_str()
            .unwrap_or("")
            .contains("not necessarily wrong")
    );
    assert_eq!(status(&report, "rate_limit")?, "fail");
    assert!(detail(&report, "rate_limit")?.contains("rate limited until"));
    assert_eq!(
        detail(&report, "repository")?,
        "not checked: the token is rate limited"
    );
    // No retry storm: one refused GET /user, and nothing sent once the quota is known to be spent.
    assert_eq!(control.requests("GET /user").await?, 1);
    assert_eq!(control.requests("GET /repos/{owner}/{repo}").await?, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_suggests_branch_leases_when_the_prefix_is_refused() -> TestResult {
    let emulator = crate::support::emulator_with(|world| {
        if let Some(repo) = world.repos.first_mut() {
            repo.refused_ref_prefixes = vec!["refs/crew/".to_string()];
        }
    })
    .await?;
    let sandbox = Sandbox::new(&emulator)?;

    let (code, report, _) = sandbox.doctor_json(&emulator, Some(BOT)).await?;

    assert_eq!(code, 1);
    assert_eq!(status(&report, "lease_refs")?, "fail");
    let hint = check(&report, "lease_refs")?["hint"].as_str().unwrap_or("");
    assert!(
        hint.contains("lease_ref_prefix = \"refs/heads/crew/leases/\""),
        "{hint}"
    );

    // With the suggested prefix, the probe passes.
    sandbox.write_config("lease_ref_prefix = \"refs/heads/crew/leases/\"\n")?;
    let (code, report, _) = sandbox.doctor_json(&emulator, Some(BOT)).await?;
    assert_eq!(status(&report, "lease_refs")?, "ok", "{report:#}");
    assert_eq!(code, 0, "{report:#}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_deletes_its_probe_ref_even_when_the_probe_fails() -> TestResult {
    let emulator = crate::support::emulator().await?;
    let control = Control::new(&emulator)?;
    control
        .faults(serde_json::json!([{"route": "PATCH /repos/{owner}/{repo}/git/refs/{ref}", "fault": "error", "status": 500}]))
        .await?;
    let sandbox = Sandbox::new(&emulator)?;

    let (code, report, _) = sandbox.doctor_json(&emulator, Some(BOT)).await?;

    assert_eq!(code, 1);
    assert_eq!(status(&report, "lease_refs")?, "fail", "{report:#}");
    assert!(detail(&report, "lease_refs")?.contains("fast-forward"));
    assert_eq!(
        control
            .requests("DELETE /repos/{owner}/{repo}/git/refs/{ref}")
            .await?,
        1
    );
    let github = crate::support::client(&emulator, BOT, None)?;
    let widgets = "acme/widgets".parse()?;
    assert!(
        github
            .matching_refs(&widgets, "refs/crew/")
            .await?
            .is_empty(),
        "probe ref left behind"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_reports_an_unreachable_api_once() -> TestResult {
    let emulator = crate::support::emulator().await?;
    let sandbox = Sandbox::new(&emulator)?;
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_crew"));
    let output = command
        .args(["-R", "acme/widgets", "--json", "doctor"])
        .current_dir(&sandbox.clone)
        .env_clear()
        .env("CREW_API_URL", "http://127.0.0.1:9")
        .env("GH_TOKEN", BOT)
        .env("HOME", &sandbox.home)
        .env("CREW_CACHE_DIR", &sandbox.cache)
        .env("PATH", &sandbox.bin)
        .output()
        .await?;

    assert_eq!(output.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&output.stdout)?;
    assert_eq!(status(&report, "token")?, "fail");
    assert!(
        detail(&report, "token")?.contains("could not reach GitHub"),
        "{report:#}"
    );
    assert_eq!(
        detail(&report, "repository")?,
        "not checked: GitHub is unreachable"
    );
    Ok(())
}

#[test]
fn doctor_graphql_documents_validate_against_githubs_schema() {
    let Some(contract) = github_emulator::contract::GraphqlContract::shared() else {
        eprintln!("skipped: GitHub's GraphQL schema (shared/github) is not beside the checkout");
        return;
    };
    for document in [
        crew::commands::doctor::PROJECT_QUERY_ORG,
        crew::commands::doctor::PROJECT_QUERY_USER,
    ] {
        if let Err(errors) = contract.validate_document(document) {
            panic!("{document}\n{errors}");
        }
    }
}

/// A valid marker comment for `issue`, rendered by crew's own codec.
fn marker_comment(issue: u64, op: &str, body: crew::protocol::EventBody) -> String {
    let event = crew::protocol::Event {
        issue,
        attempt: 1,
        worker: format!("worker-1763700000-{issue}-1"),
        op: op.to_string(),
        at: chrono::DateTime::<chrono::Utc>::UNIX_EPOCH,
        body,
    };
    crew::protocol::render_comment(&event, "**crew event**")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_warns_about_a_spoofed_marker() -> TestResult {
    use crew::protocol::{Assignment, EventBody};
    use github_emulator::world::{WorldComment, WorldIssue};

    let comment = |author: &str, body: String| WorldComment {
        author: author.to_string(),
        body,
    };
    let issue = |title: &str, comments: Vec<WorldComment>| WorldIssue {
        title: title.to_string(),
        body: None,
        author: Some("maintainer".to_string()),
        labels: Vec::new(),
        assignees: Vec::new(),
        state: "open".to_string(),
        comments,
    };
    let assigned = |issue: u64| {
        marker_comment(
            issue,
            &format!("op-assigned-{issue}"),
            EventBody::Assigned(Assignment::default()),
        )
    };
    let emulator = crate::support::emulator_with(|world| {
        if let Some(repo) = world.repos.first_mut() {
            // #1: the bot's own `assigned`, then an outsider pretending the work started.
            repo.issues.push(issue(
                "Spoofed",
                vec![
                    comment("crew-bot", assigned(1)),
                    comment(
                        "outsider",
                        marker_comment(1, "op-spoof", EventBody::Started {}),
                    ),
                ],
            ));
            // #2: clean.
            repo.issues
                .push(issue("Clean", vec![comment("crew-bot", assigned(2))]));
        }
    })
    .await?;
    let sandbox = Sandbox::new(&emulator)?;

    let (code, report, stderr) = sandbox.doctor_json(&emulator, Some(BOT)).await?;

    // A warning, not a failure.
    assert_eq!(code, 0, "{report:#}\n{stderr}");
    assert_eq!(status(&report, "markers")?, "warn", "{report:#}");
    let markers = detail(&report, "markers")?;
    assert_eq!(markers, "1 ignored marker: #1 (1 untrusted)");
    assert!(
        check(&report, "markers")?["hint"]
            .as_str()
            .unwrap_or("")
            .contains("crew show")
    );
    // After `cache`, and last.
    let names: Vec<&str> = report["checks"]
        .as_array()
        .map(|checks| {
            checks
                .iter()
                .filter_map(|check| check["name"].as_str())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(names.last(), Some(&"markers"), "{names:?}");
    assert_eq!(names.iter().rev().nth(1), Some(&"cache"), "{names:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_skips_the_markers_check_without_a_token() -> TestResult {
    let emulator = crate::support::emulator().await?;
    let sandbox = Sandbox::new(&emulator)?;

    let (_, report, _) = sandbox.doctor_json(&emulator, None).await?;

    assert_eq!(
        detail(&report, "markers")?,
        "not checked: needs a working token"
    );
    Ok(())
}
