//! Several `crew loop`s on several "hosts" (one clone, cache and host name each) against one
//! repository: together they finish every issue exactly once, never put two workers on one
//! issue, and never exceed the slot limits. Checked from the emulator's ordered record of ref
//! writes (every lease acquisition and release, in the order GitHub applied them) and from the
//! comments.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use chrono::{DateTime, Utc};
use github_emulator::World;
use github_emulator::world::WorldIssue;
use serde_json::Value;

use crate::support::{BOT, Control, TestEmulator, TestResult, client, emulator_with, git};

const MAX: u32 = 6;
const MAX_PER_HOST: u32 = 2;

/// The agent: announces itself, works `seconds`, commits a file and finishes without a pull
/// request.
fn agent(crew: &str, seconds: u32) -> String {
    format!(
        "{crew} start && sleep {seconds} && echo done > done.txt && git add done.txt && \
         git commit -qm done && {crew} done --no-pr --skip-rebase"
    )
}

fn world(issues: u64) -> impl FnOnce(&mut World) {
    move |world: &mut World| {
        // Four orchestrators and their workers share one token here, as they may in real use;
        // the test is about slots and leases, not about one hour's quota.
        world.rate_limits.insert("core".to_owned(), 50_000);
        if let Some(repo) = world.repos.first_mut() {
            for number in 1..=issues {
                repo.issues.push(WorldIssue {
                    title: format!("Task {number}"),
                    body: Some("Do it.".to_owned()),
                    author: Some("maintainer".to_owned()),
                    labels: Vec::new(),
                    assignees: Vec::new(),
                    state: "open".to_owned(),
                    comments: Vec::new(),
                });
            }
        }
    }
}

/// One host: its own directory, clone, cache and name.
struct Host {
    name: String,
    dir: PathBuf,
    clone: PathBuf,
}

struct Fleet {
    _dir: tempfile::TempDir,
    emulator: TestEmulator,
    config: PathBuf,
    hosts: Vec<Host>,
}

impl Fleet {
    async fn new(issues: u64, hosts: usize, work: u32, extra: &str) -> TestResult<Fleet> {
        let emulator = emulator_with(world(issues)).await?;
        let url = emulator
            .clone_url("acme", "widgets")
            .ok_or("no clone url")?;
        let dir = tempfile::tempdir()?;
        let config = dir.path().join("crew.toml");
        let script = agent(env!("CARGO_BIN_EXE_crew"), work);
        std::fs::write(
            &config,
            format!(
                "[agents.script]\ncommand = [\"sh\", \"-c\", {}]\n\n[workers]\nagent = \"script\"\n\
                 max = {MAX}\nmax_per_host = {MAX_PER_HOST}\nreplace_on_handover = false\n{extra}",
                serde_json::to_string(&script)?
            ),
        )?;
        let mut fleet = Vec::new();
        for index in 0..hosts {
            let name = format!("host-{index}");
            let home = dir.path().join(&name);
            std::fs::create_dir_all(home.join("home"))?;
            git(&home, &["clone", "--quiet", &url, "widgets"])?;
            let clone = home.join("widgets").canonicalize()?;
            fleet.push(Host {
                name,
                dir: home,
                clone,
            });
        }
        Ok(Fleet {
            _dir: dir,
            emulator,
            config,
            hosts: fleet,
        })
    }

    fn command(&self, host: &Host, args: &[&str]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_crew"));
        command
            .args(["-R", "acme/widgets", "--config"])
            .arg(&self.config)
            .args(args)
            .current_dir(&host.clone)
            .env_clear()
            .env("CREW_API_URL", self.emulator.base_url())
            .env("HOME", host.dir.join("home"))
            .env("CREW_CACHE_DIR", host.dir.join("cache"))
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("NO_COLOR", "1")
            .env("CREW_HOST", &host.name)
            .env("GH_TOKEN", BOT)
            .env("GIT_AUTHOR_NAME", "Test Author")
            .env("GIT_AUTHOR_EMAIL", "author@example.com")
            .env("GIT_COMMITTER_NAME", "Test Author")
            .env("GIT_COMMITTER_EMAIL", "author@example.com")
            .env("GIT_TERMINAL_PROMPT", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }
}

/// The lease writes the emulator applied, in order: (issue, when, lease JSON).
async fn lease_writes(emulator: &TestEmulator) -> TestResult<Vec<(u64, DateTime<Utc>, Value)>> {
    let control = Control::new(emulator)?;
    let writes = control.get("/_emulator/ref_writes").await?;
    let mut leases = Vec::new();
    for write in writes.as_array().ok_or("ref_writes is not a list")? {
        let name = write["ref"].as_str().unwrap_or_default();
        let Some(issue) = name.strip_prefix("refs/crew/leases/") else {
            continue;
        };
        let lease: Value = serde_json::from_str(write["message"].as_str().unwrap_or("null"))?;
        let at = DateTime::parse_from_rfc3339(write["at"].as_str().unwrap_or_default())?
            .with_timezone(&Utc);
        leases.push((issue.parse()?, at, lease));
    }
    Ok(leases)
}

/// Whether `lease` is live at `at`: held and not expired.
fn live_at(lease: &Value, at: DateTime<Utc>) -> bool {
    lease["state"] == "held"
        && lease["expires_at"]
            .as_str()
            .and_then(|text| DateTime::parse_from_rfc3339(text).ok())
            .is_some_and(|expires| at < expires)
}

/// Replays the lease writes in the order GitHub applied them and returns the most live workers
/// seen at once, overall and per host, and the issues whose lease ever passed from one live
/// worker to another (two live workers on one issue).
fn replay(writes: &[(u64, DateTime<Utc>, Value)]) -> (usize, BTreeMap<String, usize>, Vec<u64>) {
    let mut current: BTreeMap<u64, Value> = BTreeMap::new();
    let mut peak = 0;
    let mut peak_per_host: BTreeMap<String, usize> = BTreeMap::new();
    let mut doubled = Vec::new();
    for (issue, at, lease) in writes {
        if let Some(previous) = current.get(issue)
            && live_at(previous, *at)
            && lease["state"] == "held"
            && previous["worker"] != lease["worker"]
        {
            doubled.push(*issue);
        }
        current.insert(*issue, lease.clone());
        let held: Vec<&Value> = current
            .values()
            .filter(|lease| live_at(lease, *at))
            .collect();
        peak = peak.max(held.len());
        let mut per_host: BTreeMap<String, usize> = BTreeMap::new();
        for lease in held {
            *per_host
                .entry(lease["host"].as_str().unwrap_or_default().to_owned())
                .or_default() += 1;
        }
        for (host, count) in per_host {
            let entry = peak_per_host.entry(host).or_default();
            *entry = (*entry).max(count);
        }
    }
    (peak, peak_per_host, doubled)
}

/// The event kinds on `issue`, in order.
async fn kinds(github: &crew::github::GitHub, issue: u64) -> TestResult<Vec<String>> {
    let repo: crew::github::RepoSlug = "acme/widgets".parse()?;
    Ok(github
        .issue_comments(&repo, issue)
        .await?
        .iter()
        .filter_map(|comment| {
            let body = comment.body.as_deref()?;
            let start = body.find("\"kind\":\"")? + 8;
            Some(body[start..].split('"').next()?.to_owned())
        })
        .collect())
}

fn text(output: &std::process::Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_loops_finish_a_hundred_issues_once_each_within_the_slots() -> TestResult {
    const ISSUES: u64 = 100;
    let fleet = Fleet::new(ISSUES, 4, 0, "").await?;
    let mut loops = Vec::new();
    for host in &fleet.hosts {
        loops.push(
            fleet
                .command(host, &["loop", "--interval", "300ms", "--until-idle"])
                .spawn()?,
        );
    }
    all_succeed(loops, Duration::from_secs(300), "the loops").await?;

    let github = client(&fleet.emulator, crate::support::MAINTAINER, None)?;
    let mut unfinished = Vec::new();
    for issue in 1..=ISSUES {
        let kinds = kinds(&github, issue).await?;
        if kinds != ["assigned", "started", "completed"] {
            unfinished.push((issue, kinds));
        }
    }
    if let Some((issue, _)) = unfinished.first() {
        let mut logs = String::new();
        for host in &fleet.hosts {
            let dir = host.dir.join(format!("widgets-worker-{issue}/.crew/logs"));
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                logs.push_str(&format!("--- {}\n", entry.path().display()));
                logs.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
            }
        }
        return Err(format!("not completed exactly once: {unfinished:?}\n{logs}").into());
    }

    let writes = lease_writes(&fleet.emulator).await?;
    let (peak, per_host, doubled) = replay(&writes);
    assert!(doubled.is_empty(), "two live workers on {doubled:?}");
    assert!(
        peak <= MAX as usize,
        "{peak} live workers at once, max {MAX}"
    );
    for (host, count) in &per_host {
        assert!(
            *count <= MAX_PER_HOST as usize,
            "{host} ran {count} workers at once, max {MAX_PER_HOST}"
        );
    }
    // Every host took part.
    assert_eq!(per_host.len(), 4, "{per_host:?}");
    eprintln!(
        "4 loops, {ISSUES} issues: {} lease writes, peak {peak} live workers, per host {per_host:?}",
        writes.len()
    );
    Ok(())
}

/// The live supervisors and agents a host's workers run, from their worktrees' records.
fn host_processes(host: &Host) -> Vec<crew::worker::ProcessIdentity> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(&host.dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if let Ok(Some(record)) = crew::worker::read_supervised(&path) {
            let process = record.process;
            for identity in [
                process
                    .supervisor_pid
                    .zip(process.supervisor_start_time)
                    .map(|(pid, start_time)| crew::worker::ProcessIdentity { pid, start_time }),
                Some(crew::worker::ProcessIdentity {
                    pid: process.pid,
                    start_time: process.start_time,
                }),
            ]
            .into_iter()
            .flatten()
            {
                if crew::worker::is_alive(&identity) {
                    found.push(identity);
                }
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_vanished_hosts_issues_are_recovered_by_the_others_after_the_lease_ttl() -> TestResult {
    const ISSUES: u64 = 24;
    let fleet = Fleet::new(ISSUES, 4, 2, "lease_ttl = \"4s\"\nrenew_every = \"1s\"\n").await?;
    let mut loops = Vec::new();
    for host in &fleet.hosts {
        loops.push(
            fleet
                .command(host, &["loop", "--interval", "300ms", "--until-idle"])
                .spawn()?,
        );
    }
    // Once the last host runs workers, it vanishes: its loop, supervisors and agents die at once.
    let victim = &fleet.hosts[3];
    let mut running = Vec::new();
    for _ in 0..300 {
        running = host_processes(victim);
        if running.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!running.is_empty(), "{} never ran a worker", victim.name);
    let mut victim_loop = loops.pop().ok_or("no loop")?;
    victim_loop.start_kill()?;
    for process in host_processes(victim) {
        let _ = crew::worker::signal_group(process.pid, crew::worker::Signal::Kill);
        let _ = crew::worker::signal_process(&process, crew::worker::Signal::Kill);
    }
    let _ = victim_loop.wait().await;

    all_succeed(loops, Duration::from_secs(240), "the surviving loops").await?;

    let github = client(&fleet.emulator, crate::support::MAINTAINER, None)?;
    let repo: crew::github::RepoSlug = "acme/widgets".parse()?;
    let mut recovered = Vec::new();
    for issue in 1..=ISSUES {
        let kinds = kinds(&github, issue).await?;
        let completed = kinds.iter().filter(|kind| *kind == "completed").count();
        assert_eq!(completed, 1, "#{issue}: {kinds:?}");
        assert_eq!(
            kinds.last().map(String::as_str),
            Some("completed"),
            "#{issue}: {kinds:?}"
        );
        let comments = github.issue_comments(&repo, issue).await?;
        if comments.iter().any(|comment| {
            comment
                .body
                .as_deref()
                .is_some_and(|body| body.contains("stopped renewing"))
        }) {
            recovered.push(issue);
        }
    }
    assert!(
        !recovered.is_empty(),
        "no issue of {} was recovered with a handover",
        victim.name
    );
    let writes = lease_writes(&fleet.emulator).await?;
    let (peak, per_host, doubled) = replay(&writes);
    let history: Vec<_> = writes
        .iter()
        .filter(|(issue, _, _)| doubled.contains(issue))
        .collect();
    assert!(
        doubled.is_empty(),
        "two live workers on {doubled:?}: {history:#?}"
    );
    assert!(
        peak <= MAX as usize,
        "{peak} live workers at once, max {MAX}"
    );
    eprintln!(
        "recovered {recovered:?} from {}; peak {peak}, per host {per_host:?}",
        victim.name
    );
    Ok(())
}

/// Waits for every one of `loops` to exit, each successfully, within `limit`.
async fn all_succeed(loops: Vec<tokio::process::Child>, limit: Duration, what: &str) -> TestResult {
    let outputs = tokio::time::timeout(limit, async {
        let mut outputs = Vec::new();
        for child in loops {
            outputs.push(child.wait_with_output().await);
        }
        outputs
    })
    .await
    .map_err(|_| format!("{what} did not finish within {} s", limit.as_secs()))?;
    for output in outputs {
        let output = output?;
        assert!(output.status.success(), "{}", text(&output));
    }
    Ok(())
}
