//! The read side end to end: `crew status`, `show`, `wait` and `cache` as the real binary, against
//! an emulator world holding the awkward cases (a spoofed marker, a malformed one, a stale
//! attempt, the worker-dispatch skill's fenced JSON, an edit of an old marker comment), in a
//! hermetic environment (temporary HOME and cache, no PATH, the emulator as the API).

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use crew::github::{GitHub, RepoSlug};
use crew::protocol::lease::{LEASE_VERSION, Lease, LeaseState, render_lease};
use crew::protocol::{Assignment, Event, EventBody, render_comment};
use github_emulator::World;
use github_emulator::world::{WorldComment, WorldIssue};
use serde_json::{Value, json};

use crate::support::{BOT, Control, MAINTAINER, TestEmulator, TestResult, client, emulator_with};

const PREFIX: &str = "refs/crew/leases/";

fn widgets() -> TestResult<RepoSlug> {
    Ok("acme/widgets".parse()?)
}

fn at(minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 21, 9, minute, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}

/// A valid marker comment, rendered by crew's own codec.
fn marker(issue: u64, attempt: u64, minute: u32, body: EventBody) -> String {
    let event = Event {
        issue,
        attempt,
        worker: format!("worker-1763700000-{issue}-{attempt}"),
        op: format!("op-{issue}-{attempt}-{minute}"),
        at: at(minute),
        body,
    };
    render_comment(&event, "**crew event**")
}

fn assigned(issue: u64, attempt: u64, minute: u32) -> String {
    marker(
        issue,
        attempt,
        minute,
        EventBody::Assigned(Assignment {
            host: Some("laptop".to_string()),
            ..Assignment::default()
        }),
    )
}

fn started(issue: u64, attempt: u64, minute: u32) -> String {
    marker(issue, attempt, minute, EventBody::Started {})
}

fn blocked(issue: u64, attempt: u64, minute: u32) -> String {
    marker(
        issue,
        attempt,
        minute,
        EventBody::Blocked {
            question: "Which colour?".to_string(),
        },
    )
}

fn progress(issue: u64, attempt: u64, minute: u32) -> String {
    marker(
        issue,
        attempt,
        minute,
        EventBody::Progress {
            message: "half way".to_string(),
        },
    )
}

fn comment(author: &str, body: String) -> WorldComment {
    WorldComment {
        author: author.to_string(),
        body,
    }
}

fn issue(title: &str, state: &str, comments: Vec<WorldComment>) -> WorldIssue {
    WorldIssue {
        title: title.to_string(),
        body: None,
        author: Some("maintainer".to_string()),
        labels: Vec::new(),
        assignees: Vec::new(),
        state: state.to_string(),
        comments,
    }
}

/// Issues #1..#8 of acme/widgets; comment ids grow in this order.
fn world(world: &mut World) {
    let bot = "crew-bot";
    let issues = vec![
        // #1: an outsider's `blocked` is ignored; the title is hostile terminal input.
        issue(
            "Spoofed \u{1b}[31mred\u{1b}[0m\nsecond line",
            "open",
            vec![
                comment(bot, assigned(1, 1, 1)),
                comment(bot, started(1, 1, 2)),
                comment("outsider", blocked(1, 1, 3)),
            ],
        ),
        // #2: a malformed marker is ignored.
        issue(
            "Malformed",
            "open",
            vec![
                comment(bot, assigned(2, 1, 1)),
                comment(
                    bot,
                    "<!-- crew:v1 {\"kind\": \"started\", oops -->\nhi".to_string(),
                ),
            ],
        ),
        // #3: attempt 1's progress after attempt 2 was assigned is stale.
        issue(
            "Stale attempt",
            "open",
            vec![
                comment(bot, assigned(3, 1, 1)),
                comment(bot, started(3, 1, 2)),
                comment("maintainer", assigned(3, 2, 3)),
                comment(bot, progress(3, 1, 4)),
            ],
        ),
        // #4: the worker-dispatch skill's assignment.
        issue(
            "Seed format",
            "open",
            vec![comment(
                bot,
                "\n```json\n{\n  \"assigned\": true,\n  \"worker_id\": \"worker-1736500000-4\",\n  \
                 \"assigned_at\": \"2026-11-21T09:05:00Z\",\n  \"worktree\": \"../w-4\"\n}\n```\n\n\
                 **Worker Assigned**\n"
                    .to_string(),
            )],
        ),
        // #5: blocked, then a progress the machine refuses in `blocked`; the test later edits
        // the (older) blocked comment into plain text.
        issue(
            "Edited",
            "open",
            vec![
                comment(bot, assigned(5, 1, 1)),
                comment(bot, started(5, 1, 2)),
                comment(bot, blocked(5, 1, 3)),
                comment(bot, progress(5, 1, 4)),
            ],
        ),
        // #6: finished and closed: only `--all` shows it.
        issue(
            "Closed and done",
            "closed",
            vec![
                comment(bot, assigned(6, 1, 1)),
                comment(bot, started(6, 1, 2)),
                comment(bot, marker(6, 1, 3, EventBody::Completed { pr: Some(99) })),
            ],
        ),
        // #7: working, with a live lease; `crew wait` watches it.
        issue(
            "Waited on",
            "open",
            vec![
                comment(bot, assigned(7, 1, 1)),
                comment(bot, started(7, 1, 2)),
            ],
        ),
        // #8: no crew events: not crew's business.
        issue(
            "Plain",
            "open",
            vec![comment("maintainer", "Just a note.".to_string())],
        ),
    ];
    if let Some(repo) = world.repos.first_mut() {
        repo.issues.extend(issues);
    }
}

fn lease(issue: u64, state: LeaseState) -> Lease {
    Lease {
        v: LEASE_VERSION,
        issue,
        attempt: 1,
        worker: format!("worker-1763700000-{issue}-1"),
        host: "laptop".to_string(),
        runtime: "local".to_string(),
        acquired_at: at(1),
        renewed_at: at(2),
        // Far from any clock a test runs at, so the output never depends on when it runs.
        expires_at: Utc
            .with_ymd_and_hms(2099, 1, 1, 0, 0, 0)
            .single()
            .unwrap_or(DateTime::<Utc>::MAX_UTC),
        state,
    }
}

async fn write_lease(github: &GitHub, lease: &Lease) -> TestResult {
    let repo = widgets()?;
    let main = github.branch(&repo, "main").await?;
    let commit = github
        .create_commit(
            &repo,
            &render_lease(lease),
            &main.commit.commit.tree.sha,
            &[main.commit.sha.as_str()],
        )
        .await?;
    github
        .create_ref(&repo, &format!("{PREFIX}{}", lease.issue), &commit.sha)
        .await?;
    Ok(())
}

/// The world plus leases: #7 live, #6 released.
async fn start() -> TestResult<TestEmulator> {
    let emulator = emulator_with(world).await?;
    let github = client(&emulator, BOT, None)?;
    write_lease(&github, &lease(7, LeaseState::Held)).await?;
    write_lease(&github, &lease(6, LeaseState::Released)).await?;
    Ok(emulator)
}

/// A hermetic place to run crew in.
struct Sandbox {
    dir: tempfile::TempDir,
    base_url: String,
}

impl Sandbox {
    fn new(emulator: &TestEmulator) -> TestResult<Sandbox> {
        let dir = tempfile::tempdir()?;
        for sub in ["home", "bin", "work"] {
            std::fs::create_dir_all(dir.path().join(sub))?;
        }
        Ok(Sandbox {
            dir,
            base_url: emulator.base_url().to_string(),
        })
    }

    fn cache_dir(&self) -> PathBuf {
        self.dir.path().join("cache")
    }

    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_crew"));
        command
            .args(["-R", "acme/widgets"])
            .args(args)
            .current_dir(self.dir.path().join("work"))
            .env_clear()
            .env("CREW_API_URL", &self.base_url)
            .env("HOME", self.dir.path().join("home"))
            .env("CREW_CACHE_DIR", self.cache_dir())
            .env("PATH", self.dir.path().join("bin"))
            .env("NO_COLOR", "1")
            .env("GH_TOKEN", BOT)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    async fn crew(&self, args: &[&str]) -> TestResult<Output> {
        Ok(self.command(args).output().await?)
    }

    /// Runs crew expecting exit 0 and JSON on stdout.
    async fn json(&self, args: &[&str]) -> TestResult<Value> {
        let output = self.crew(args).await?;
        let stdout = String::from_utf8(output.stdout)?;
        let stderr = String::from_utf8(output.stderr)?;
        if !output.status.success() {
            return Err(format!("crew {args:?} failed: {:?}\n{stderr}", output.status).into());
        }
        serde_json::from_str(&stdout).map_err(|error| {
            format!("crew {args:?}: not JSON ({error}):\n{stdout}\n{stderr}").into()
        })
    }

    /// The cache file (`crew cache path`).
    async fn cache_file(&self) -> TestResult<PathBuf> {
        let output = self.crew(&["cache", "path"]).await?;
        assert!(output.status.success(), "{output:?}");
        Ok(PathBuf::from(String::from_utf8(output.stdout)?.trim()))
    }
}

/// Totals from `/_emulator/stats`: (requests, rate points).
async fn totals(control: &Control) -> TestResult<(u64, u64)> {
    let stats = control.stats().await?;
    let field = |name: &str| stats[name].as_u64().unwrap_or(0);
    Ok((field("requests"), field("rate_points")))
}

fn line(status: &Value, number: u64) -> TestResult<&Value> {
    status["issues"]
        .as_array()
        .and_then(|issues| issues.iter().find(|line| line["issue"] == number))
        .ok_or_else(|| format!("no #{number} in {status:#}").into())
}

fn numbers(status: &Value) -> Vec<u64> {
    status["issues"]
        .as_array()
        .map(|issues| {
            issues
                .iter()
                .filter_map(|line| line["issue"].as_u64())
                .collect()
        })
        .unwrap_or_default()
}

/// `(reason, author)` of each ignored marker in a `show --json`.
fn ignored(show: &Value) -> Vec<(String, String)> {
    show["ignored"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|item| {
                    (
                        item["reason"].as_str().unwrap_or("").to_string(),
                        item["author"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn edit_comment(emulator: &TestEmulator, id: u64, body: &str) -> TestResult {
    let octocrab = octocrab::Octocrab::builder()
        .base_uri(emulator.base_url())?
        .personal_token(MAINTAINER.to_string())
        .build()?;
    let _: Value = octocrab
        .patch(
            format!("/repos/acme/widgets/issues/comments/{id}"),
            Some(&json!({ "body": body })),
        )
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_show_fold_the_awkward_cases() -> TestResult {
    let emulator = start().await?;
    let sandbox = Sandbox::new(&emulator)?;

    let status = sandbox.json(&["--json", "status"]).await?;
    assert_eq!(status["repo"], "acme/widgets");
    assert_eq!(status["slots"]["used"], 1, "{status:#}");
    assert_eq!(
        numbers(&status),
        [1, 2, 3, 4, 5, 7],
        "closed and plain issues hidden"
    );
    let state = |number: u64| -> TestResult<String> {
        Ok(line(&status, number)?["state"]
            .as_str()
            .unwrap_or("")
            .to_string())
    };
    assert_eq!(
        state(1)?,
        "working",
        "the outsider's `blocked` does not count"
    );
    assert_eq!(
        state(2)?,
        "assigned",
        "the malformed `started` does not count"
    );
    assert_eq!(state(3)?, "assigned");
    assert_eq!(line(&status, 3)?["attempt"], 2);
    assert_eq!(state(4)?, "assigned");
    assert_eq!(line(&status, 4)?["worker"], "worker-1736500000-4");
    assert_eq!(state(5)?, "blocked");
    assert_eq!(state(7)?, "working");
    let seven = line(&status, 7)?;
    assert_eq!(seven["host"], "laptop");
    assert_eq!(
        seven["lease"],
        json!({"state": "live", "expires_at": "2099-01-01T00:00:00Z"})
    );
    assert_eq!(seven["last_event_at"], "2026-11-21T09:02:00Z");
    assert_eq!(seven["pr"], Value::Null);
    assert_eq!(line(&status, 5)?["lease"], Value::Null);
    assert_eq!(
        line(&status, 1)?["title"],
        "Spoofed \u{1b}[31mred\u{1b}[0m\nsecond line"
    );

    let all = sandbox.json(&["--json", "status", "--all"]).await?;
    assert_eq!(numbers(&all), [1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(line(&all, 6)?["state"], "completed");
    assert_eq!(line(&all, 6)?["pr"], 99);
    assert_eq!(line(&all, 6)?["lease"]["state"], "released");

    // `show` says what it ignored and why.
    let show = |number: u64| {
        let number = number.to_string();
        let sandbox = &sandbox;
        async move { sandbox.json(&["--json", "show", &number]).await }
    };
    assert_eq!(
        ignored(&show(1).await?),
        [("untrusted_author".to_string(), "outsider".to_string())]
    );
    assert_eq!(
        ignored(&show(2).await?),
        [("malformed_marker".to_string(), "crew-bot".to_string())]
    );
    let three = show(3).await?;
    assert_eq!(
        ignored(&three),
        [("stale_attempt".to_string(), "crew-bot".to_string())]
    );
    assert!(
        three["ignored"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("attempt 1"))
    );
    let kinds: Vec<&str> = three["events"]
        .as_array()
        .map(|events| events.iter().filter_map(|e| e["kind"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(kinds, ["assigned", "started", "assigned"]);
    assert_eq!(three["events"][2]["author"], "maintainer");
    assert_eq!(three["events"][2]["attempt"], 2);
    let five = show(5).await?;
    assert_eq!(
        ignored(&five),
        [("illegal_transition".to_string(), "crew-bot".to_string())]
    );
    let seven = show(7).await?;
    assert_eq!(seven["state"], "working");
    assert_eq!(seven["lease"]["state"], "live");
    assert_eq!(seven["lease"]["host"], "laptop");
    for field in ["issue", "state", "attempt", "lease", "events", "ignored"] {
        assert!(seven.get(field).is_some(), "show --json lacks {field}");
    }
    let plain = show(8).await?;
    assert_eq!(plain["state"], "unassigned");
    assert_eq!(plain["lease"], Value::Null);
    assert_eq!(plain["events"], json!([]));
    let missing = sandbox.crew(&["show", "999"]).await?;
    assert_eq!(missing.status.code(), Some(1), "{missing:?}");

    // The human table strips control characters from titles.
    let table = sandbox.crew(&["status"]).await?;
    assert!(table.status.success());
    let table = String::from_utf8(table.stdout)?;
    assert!(!table.contains('\u{1b}'), "{table}");
    assert!(table.contains("Spoofed red second line"), "{table}");
    assert!(table.contains("#1"), "{table}");
    assert_eq!(
        table.lines().filter(|line| line.starts_with('#')).count(),
        6,
        "{table}"
    );

    // An edit of an older comment (the blocked marker becomes plain text): #5 refolds, and the
    // progress that was illegal in `blocked` now counts.
    let blocked_id = five["events"]
        .as_array()
        .and_then(|events| events.iter().find(|event| event["kind"] == "blocked"))
        .and_then(|event| event["comment_id"].as_u64())
        .ok_or("no blocked event on #5")?;
    edit_comment(&emulator, blocked_id, "Never mind, found it.").await?;
    let five = show(5).await?;
    assert_eq!(five["state"], "working", "{five:#}");
    assert!(ignored(&five).is_empty(), "{five:#}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_json_is_deterministic_and_cheap() -> TestResult {
    let emulator = start().await?;
    let control = Control::new(&emulator)?;
    let sandbox = Sandbox::new(&emulator)?;

    control.reset_stats().await?;
    let cold = sandbox.crew(&["--json", "status", "--all"]).await?;
    assert!(cold.status.success(), "{cold:?}");
    let (requests, points) = totals(&control).await?;
    eprintln!("cold status: {requests} requests, {points} rate points");

    // Warm, nothing changed: at most three requests, all free.
    control.reset_stats().await?;
    let warm = sandbox.crew(&["--json", "status", "--all"]).await?;
    assert!(warm.status.success());
    let (requests, points) = totals(&control).await?;
    eprintln!("warm status: {requests} requests, {points} rate points");
    assert!(
        requests <= 3,
        "{requests} requests: {:#}",
        control.stats().await?
    );
    assert_eq!(points, 0, "{:#}", control.stats().await?);
    assert_eq!(warm.stdout, cold.stdout);

    // Delete the cache: byte-identical.
    std::fs::remove_dir_all(sandbox.cache_dir())?;
    let rebuilt = sandbox.crew(&["--json", "status", "--all"]).await?;
    assert!(rebuilt.status.success());
    assert_eq!(
        String::from_utf8(rebuilt.stdout)?,
        String::from_utf8(cold.stdout)?
    );

    // One new comment: at most four requests.
    let github = client(&emulator, BOT, None)?;
    github
        .create_issue_comment(&widgets()?, 7, &progress(7, 1, 10), None)
        .await?;
    control.reset_stats().await?;
    let after = sandbox.json(&["--json", "status"]).await?;
    let (requests, points) = totals(&control).await?;
    eprintln!("status after one new comment: {requests} requests, {points} rate points");
    assert!(
        requests <= 4,
        "{requests} requests: {:#}",
        control.stats().await?
    );
    assert_eq!(line(&after, 7)?["last_event_at"], "2026-11-21T09:10:00Z");
    Ok(())
}

/// Polls the emulator until the `crew wait` child has read the lease refs (the last step of its
/// first observation, so its baseline is taken).
async fn until_observed(control: &Control, route: &str, at_least: u64) -> TestResult {
    let deadline = Instant::now() + Duration::from_secs(20);
    while control.requests(route).await? < at_least {
        if Instant::now() > deadline {
            return Err(format!("crew wait never requested {route}").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_returns_the_event_or_times_out() -> TestResult {
    let emulator = start().await?;
    let control = Control::new(&emulator)?;
    let sandbox = Sandbox::new(&emulator)?;
    // A warm cache, as a waiting script would have.
    assert!(sandbox.crew(&["status"]).await?.status.success());

    control.reset_stats().await?;
    let child = sandbox
        .command(&[
            "wait",
            "--for",
            "blocked",
            "--issue",
            "7",
            "--interval",
            "1s",
            "--timeout",
            "30s",
        ])
        .spawn()?;
    let refs = "GET /repos/{owner}/{repo}/git/matching-refs/{ref}";
    until_observed(&control, refs, 1).await?;
    // A progress first (not waited for), then the blocked.
    let github = client(&emulator, BOT, None)?;
    github
        .create_issue_comment(&widgets()?, 7, &progress(7, 1, 11), None)
        .await?;
    let posted = github
        .create_issue_comment(&widgets()?, 7, &blocked(7, 1, 12), None)
        .await?;
    let posted_at = Instant::now();
    let output = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output()).await??;
    let elapsed = posted_at.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    eprintln!("crew wait returned {elapsed:?} after the comment");
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    let event: Value = serde_json::from_slice(&output.stdout)?;
    assert_eq!(event["kind"], "blocked");
    assert_eq!(event["issue"], 7);
    assert_eq!(event["comment_id"], posted.id);
    assert_eq!(event["author"], "crew-bot");
    assert_eq!(event["event"]["question"], "Which colour?");

    // Nothing coming: exit 124, and the idle polls are free (304s).
    control.reset_stats().await?;
    let begun = Instant::now();
    let output = sandbox
        .crew(&[
            "wait",
            "--for",
            "approved",
            "--issue",
            "7",
            "--interval",
            "1s",
            "--timeout",
            "2s",
        ])
        .await?;
    assert_eq!(output.status.code(), Some(124), "{output:?}");
    assert!(output.stdout.is_empty());
    assert!(begun.elapsed() < Duration::from_secs(10));
    let (requests, points) = totals(&control).await?;
    eprintln!("crew wait idle for 2s: {requests} requests, {points} rate points");
    assert_eq!(points, 0, "{:#}", control.stats().await?);

    // Unknown kinds are usage errors.
    let output = sandbox.crew(&["wait", "--for", "blockd"]).await?;
    assert_eq!(output.status.code(), Some(2));
    Ok(())
}

fn tamper(path: &Path) -> TestResult {
    let connection = rusqlite::Connection::open(path)?;
    let changed =
        connection.execute("UPDATE issues SET title = 'tampered' WHERE number = 2", [])?;
    assert_eq!(changed, 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_verify_notices_tampering_and_rebuild_repairs() -> TestResult {
    let emulator = start().await?;
    let sandbox = Sandbox::new(&emulator)?;
    assert!(sandbox.crew(&["status"]).await?.status.success());

    let path = sandbox.cache_file().await?;
    assert!(path.starts_with(sandbox.cache_dir()), "{}", path.display());
    assert!(path.exists());

    let verify = sandbox.crew(&["cache", "verify"]).await?;
    assert_eq!(verify.status.code(), Some(0), "{verify:?}");

    tamper(&path)?;
    let verify = sandbox.crew(&["cache", "verify"]).await?;
    assert_eq!(verify.status.code(), Some(1), "{verify:?}");
    let stdout = String::from_utf8(verify.stdout)?;
    assert!(stdout.contains("issue 2: title"), "{stdout}");

    let rebuild = sandbox.crew(&["cache", "rebuild"]).await?;
    assert_eq!(rebuild.status.code(), Some(0), "{rebuild:?}");
    let stderr = String::from_utf8(rebuild.stderr)?;
    assert!(stderr.contains("rebuilt: 8 issues"), "{stderr}");
    assert!(
        stderr.contains(", 0 not modified)"),
        "a rebuild refetches: {stderr}"
    );
    assert!(
        !stderr.contains('\x1b'),
        "no progress bar (or colour) when stderr is not a terminal: {stderr:?}"
    );
    let verify = sandbox.crew(&["--json", "cache", "verify"]).await?;
    assert_eq!(verify.status.code(), Some(0), "{verify:?}");
    let view: Value = serde_json::from_slice(&verify.stdout)?;
    assert_eq!(view["equal"], true);
    Ok(())
}

/// Puts issue `number` of acme/widgets on project 1 with `status`, as a maintainer would.
async fn put_on_board(github: &GitHub, number: u64, status: &str) -> TestResult {
    let ids = github
        .graphql(
            "query BoardIds($number: Int!) {
  organization(login: \"acme\") {
    projectV2(number: 1) {
      id
      field(name: \"Status\") { ... on ProjectV2SingleSelectField { id options { id name } } }
    }
  }
  repository(owner: \"acme\", name: \"widgets\") { issue(number: $number) { id } }
}",
            json!({ "number": number }),
        )
        .await?;
    let project = &ids["organization"]["projectV2"];
    let option = project["field"]["options"]
        .as_array()
        .and_then(|options| options.iter().find(|option| option["name"] == status))
        .ok_or_else(|| format!("no {status} option in {ids:#}"))?;
    let added = github
        .graphql_idempotent_mutation(
            "mutation Add($project: ID!, $content: ID!) {
  addProjectV2ItemById(input: {projectId: $project, contentId: $content}) { item { id } }
}",
            json!({
                "project": project["id"],
                "content": ids["repository"]["issue"]["id"],
            }),
        )
        .await?;
    github
        .graphql_idempotent_mutation(
            "mutation Set($project: ID!, $item: ID!, $field: ID!, $option: String!) {
  updateProjectV2ItemFieldValue(input: {projectId: $project, itemId: $item, fieldId: $field, value: {singleSelectOptionId: $option}}) { projectV2Item { id } }
}",
            json!({
                "project": project["id"],
                "item": added["addProjectV2ItemById"]["item"]["id"],
                "field": project["field"]["id"],
                "option": option["id"],
            }),
        )
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_reports_the_board_status() -> TestResult {
    let emulator = start().await?;
    let sandbox = Sandbox::new(&emulator)?;

    // Without a project, `board` is null and the human view says so.
    let seven = sandbox.json(&["--json", "show", "7"]).await?;
    assert_eq!(seven["board"], Value::Null, "{seven:#}");
    let human = sandbox.crew(&["show", "7"]).await?;
    assert!(human.status.success(), "{human:?}");
    let text = String::from_utf8(human.stdout)?;
    assert!(text.contains("board: no project configured"), "{text}");

    std::fs::write(
        sandbox.dir.path().join("work").join("crew.toml"),
        "[project]\nnumber = 1\n",
    )?;
    put_on_board(&client(&emulator, MAINTAINER, None)?, 7, "In Progress").await?;

    let seven = sandbox.json(&["--json", "show", "7"]).await?;
    assert_eq!(
        seven["board"],
        json!({"project": 1, "status": "In Progress"}),
        "{seven:#}"
    );
    assert_eq!(seven["state"], "working", "the rest of show is unchanged");
    let human = sandbox.crew(&["show", "7"]).await?;
    assert!(human.status.success(), "{human:?}");
    let text = String::from_utf8(human.stdout)?;
    assert!(text.contains("board: In Progress"), "{text}");

    // An issue that is not on the board.
    let eight = sandbox.json(&["--json", "show", "8"]).await?;
    assert_eq!(
        eight["board"],
        json!({"project": 1, "status": null}),
        "{eight:#}"
    );
    let human = sandbox.crew(&["show", "8"]).await?;
    let text = String::from_utf8(human.stdout)?;
    assert!(text.contains("board: not on project 1"), "{text}");

    // A board that cannot be read does not fail `show`; the error is kept.
    let control = Control::new(&emulator)?;
    control
        .faults(json!([{"route": "POST /graphql", "fault": "error", "status": 404}]))
        .await?;
    let seven = sandbox.json(&["--json", "show", "7"]).await?;
    assert_eq!(seven["board"]["project"], 1, "{seven:#}");
    assert_eq!(seven["board"]["status"], Value::Null, "{seven:#}");
    assert!(seven["board"]["error"].is_string(), "{seven:#}");
    assert_eq!(seven["state"], "working");
    control.clear_faults().await?;
    Ok(())
}
