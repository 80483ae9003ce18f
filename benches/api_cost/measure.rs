//! What `cargo bench --bench api_cost` measures (DESIGN.md 7), shared with its smoke test
//! (`tests/bench_smoke.rs`, which includes this file by `#[path]` and runs it on a tiny world).
//!
//! For each size, one emulator gets `issues` open issues with `comments_per_issue` plain comments
//! each (one item per second, ending two days ago, as in `tests/sync.rs`), every issue on project
//! 1's board as `Todo`, and the injected latency. Then the same five steps are done twice against
//! it, first by crew, then the way the worker-dispatch skill (`shared/seeds/002_*`) does them:
//!
//! | step          | crew                                                    | seed way                   |
//! |---------------|---------------------------------------------------------|----------------------------|
//! | `cold`        | `crew status` with an empty cache                       | one monitoring cycle       |
//! | `dispatch`    | `crew dispatch 1` (the real binary)                     | `spawn_worker` of one issue |
//! | `fill5`       | `crew fill`, 5 of `workers.max = 6` slots free           | `dispatch_available_slots`, `max_workers = 6` |
//! | `warm`        | `crew status`, nothing changed since the last cycle     | one monitoring cycle       |
//! | `one_comment` | `crew status` after a maintainer's plain comment        | one monitoring cycle       |
//!
//! Decisions, and why:
//! - **Requests and rate points are the emulator's** (`GET /_emulator/stats`), never the
//!   clients' own counts: `POST /_emulator/reset` before each step zeroes them and the rate
//!   windows (so no step is throttled by the ones before it: the seed way spends a whole
//!   5,000-point hour in under three cycles at 1,000 issues), then `POST /_emulator/faults` puts
//!   the latency back. The control routes themselves are neither counted nor delayed.
//! - **`ms` is a wall clock around the step alone.** crew's status steps run the library's
//!   `crew status` (`commands::status::run`) on a fresh `Ctx` per cycle, as a new process would:
//!   cache reopened from its file, new client, ETags from SQLite; no process start-up. Dispatch
//!   and fill run the real `crew` binary (their supervisors re-execute `current_exe`, which
//!   must be `crew`), so their time includes its start, the worktrees (git time is reported
//!   beside them) and waiting for each agent to run. Both share one cache file.
//! - **The order puts workers in place before the quiet cycles**, so the seed way's warm cycle
//!   pays its per-worker PR lists and crew's pays for its live leases; an unmeasured
//!   `crew status` after the fill absorbs the fill's own comments, so `warm` is a cycle after
//!   which nothing changed.
//! - **crew's workers are `sh -c "sleep 300"`**, stopped by `crew cancel` (latency off) before
//!   the seed way starts, so no supervisor writes during its steps; a guard kills any that
//!   survive (by the pids `crew` printed) if the bench fails half-way. Their board cards are then
//!   put back to `Todo` in the emulator's state (no request), so the seed way's board count
//!   starts from zero free of crew's cancelled cards, as crew's lease count did.
//!
//! The seed way, as plain HTTP with its own octocrab client (no cache, no ETags: `gh` sends
//! none), the bot's token. Each request is one a `gh` call of the skill makes (REST where `gh`
//! uses GraphQL for the same read, which never costs the seed more requests):
//! - **monitoring cycle** (the orchestration loop the skill is used by: state lives only in
//!   issue comments and the board, so every cycle reads them again):
//!   `GET /repos/{o}/{r}/issues?state=open&per_page=100` following `Link` (`gh issue list`);
//!   for every open issue `GET /repos/{o}/{r}/issues/{n}` and
//!   `GET /repos/{o}/{r}/issues/{n}/comments?per_page=100` (`gh issue view`, and the comment read
//!   `spawn_replacement_worker`/`get_attempt_count` use to find assignments and handovers);
//!   the board's items, GraphQL `organization.projectV2.items(first: 100)` per page
//!   (`gh project item-list`, which `dispatch_available_slots` counts In Progress from); and for
//!   each active worker `GET /repos/{o}/{r}/pulls?head=acme:feature/{n}-{slug}&state=open`
//!   (`check_worker_status`'s `gh pr list --head`). Eight requests in flight (a shell loop
//!   makes them one by one, so the seed's `ms` here is a lower bound).
//! - **spawn_worker**: `GET` the issue (`gh issue view --json title`, for the branch), its
//!   comments (the prompt's context), `POST` the fenced-JSON `assigned` comment
//!   (`register_worker`), and `update_project_status "In Progress"` as three GraphQL requests
//!   (the project's id with its Status field and options, `addProjectV2ItemById` for the item's
//!   id, `updateProjectV2ItemFieldValue`). The worktree and the process are local and not timed.
//! - **dispatch_available_slots**: the board's items (count In Progress), then per free slot
//!   `get_next_pending_issue` (which the skill leaves undefined; here the first page of open
//!   issues, newest first, and each candidate's comments until one carries no assignment) and
//!   `spawn_worker`.
#![allow(dead_code)] // the smoke test uses a part

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use crew::cli::GlobalArgs;
use crew::commands::status::{self, StatusArgs};
use crew::context::Ctx;
use crew::printer::{Printer, Verbosity};
use crew::settings::{Env, Settings};
use github_emulator::state::{Comment, Issue, IssueState, ProjectItem};
use github_emulator::{Emulator, EmulatorHandle};
use octocrab::Octocrab;
use serde::Serialize;
use serde_json::{Value, json};

// The includer provides it: the bench's `control` module, or the tests' `support`.
use super::Control;

pub type BenchResult<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const OWNER: &str = "acme";
const NAME: &str = "widgets";
const PROJECT: u64 = 1;
/// The default world's tokens: crew and the seed way act as the bot, comments come from the
/// maintainer.
const BOT: &str = "emu-bot";
const MAINTAINER: &str = "emu-maintainer";
/// `workers.max` for crew, `max_workers` for the seed: one dispatch, then five free slots.
const MAX_WORKERS: u32 = 6;
/// Requests the seed way keeps in flight in a cycle.
const SEED_IN_FLIGHT: usize = 8;
/// When set, every step's requests by route are printed on stderr.
pub const ROUTES_ENV: &str = "CREW_BENCH_ROUTES";
/// A bound on any one `crew` run, so the bench always stops by itself.
const CREW_RUN_LIMIT: Duration = Duration::from_secs(120);

/// What to measure.
#[derive(Debug, Clone)]
pub struct Options {
    pub latency_ms: u64,
    pub sizes: Vec<Size>,
}

#[derive(Debug, Clone, Copy)]
pub struct Size {
    pub issues: u64,
    pub comments_per_issue: u64,
}

/// One step's cost.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Cost {
    pub requests: u64,
    pub rate_points: u64,
    pub ms: u64,
}

/// The five steps, in the JSON's order.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Steps {
    pub cold: Cost,
    pub warm: Cost,
    pub one_comment: Cost,
    pub fill5: Cost,
    pub dispatch: Cost,
}

impl Steps {
    /// `(name, cost)` in the table's order.
    pub fn named(&self) -> [(&'static str, Cost); 5] {
        [
            ("cold", self.cold),
            ("dispatch", self.dispatch),
            ("fill5", self.fill5),
            ("warm", self.warm),
            ("one_comment", self.one_comment),
        ]
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SizeReport {
    pub issues: u64,
    pub comments_per_issue: u64,
    pub crew: Steps,
    pub seed_way: Steps,
    /// Git's share of crew's dispatch and fill (`timings.git_ms` of each started worker).
    #[serde(skip)]
    pub crew_dispatch_git_ms: u64,
    #[serde(skip)]
    pub crew_fill_git_ms: u64,
}

impl SizeReport {
    /// ⌈issues/100⌉ + ⌈comments/100⌉: the pages a cold read of both lists needs.
    pub fn page_lower_bound(&self) -> u64 {
        self.issues.div_ceil(100) + (self.issues * self.comments_per_issue).div_ceil(100)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub latency_ms: u64,
    pub sizes: Vec<SizeReport>,
}

/// Measures every size in turn, each on its own emulator.
pub async fn run(options: &Options) -> BenchResult<Report> {
    let mut sizes = Vec::new();
    for size in &options.sizes {
        eprintln!(
            "api_cost: {} issues x {} comments at {} ms latency",
            size.issues, size.comments_per_issue, options.latency_ms
        );
        let bench = Bench::start(*size, options.latency_ms).await?;
        let report = bench.measure().await;
        bench.emulator.shutdown().await;
        sizes.push(report?);
    }
    Ok(Report {
        latency_ms: options.latency_ms,
        sizes,
    })
}

/// The last line the bench prints.
pub fn json_line(report: &Report) -> BenchResult<String> {
    Ok(serde_json::to_string(report)?)
}

/// The side-by-side table.
pub fn table(report: &Report) -> String {
    let mut out = format!(
        "api_cost at {} ms latency: requests and rate points from /_emulator/stats, ms wall clock\n\
         {:>6} {:>8}  {:<11} | {:>8} {:>8} {:>8} | {:>8} {:>8} {:>8} | {:>9}\n",
        report.latency_ms,
        "issues",
        "comments",
        "step",
        "crew req",
        "points",
        "ms",
        "seed req",
        "points",
        "ms",
        "seed/crew"
    );
    for size in &report.sizes {
        for ((name, crew), (_, seed)) in size.crew.named().into_iter().zip(size.seed_way.named()) {
            let ratio = if crew.requests == 0 {
                "-".to_owned()
            } else {
                format!("{:.1}x", seed.requests as f64 / crew.requests as f64)
            };
            out.push_str(&format!(
                "{:>6} {:>8}  {:<11} | {:>8} {:>8} {:>8} | {:>8} {:>8} {:>8} | {:>9}\n",
                size.issues,
                size.issues * size.comments_per_issue,
                name,
                crew.requests,
                crew.rate_points,
                crew.ms,
                seed.requests,
                seed.rate_points,
                seed.ms,
                ratio
            ));
        }
        out.push_str(&format!(
            "{:>6} crew's git time: dispatch {} ms, fill {} ms (included in their ms)\n",
            "", size.crew_dispatch_git_ms, size.crew_fill_git_ms
        ));
    }
    out
}

/// DESIGN.md section 7's API targets, judged on the 1,000-issue size (the size they are stated
/// for); one line each, `met` or `NOT met`.
pub fn targets(report: &Report) -> Vec<String> {
    let Some(size) = report.sizes.iter().find(|size| size.issues == 1000) else {
        return vec!["targets: stated for 1,000 issues, which this run did not measure".to_owned()];
    };
    let mut lines = Vec::new();
    if report.latency_ms != 20 {
        lines.push(format!(
            "targets: times are stated at 20 ms latency; this run used {} ms",
            report.latency_ms
        ));
    }
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    let warm = size.crew.warm;
    lines.push(format!(
        "target warm cycle <= 3 requests, 0 points, < 100 ms: {} requests, {} points, {} ms: {}",
        warm.requests,
        warm.rate_points,
        warm.ms,
        verdict(warm.requests <= 3 && warm.rate_points == 0 && warm.ms < 100)
    ));
    let cold = size.crew.cold;
    let bound = size.page_lower_bound();
    lines.push(format!(
        "target cold sync <= 1.1 x {bound} pages, < 3 s: {} requests (the two lists, GET /user \
         and the lease list), {} ms: {}",
        cold.requests,
        cold.ms,
        verdict(cold.requests as f64 <= 1.1 * bound as f64 && cold.ms < 3000)
    ));
    let seed_warm = size.seed_way.warm.requests;
    let ratio = seed_warm as f64 / warm.requests.max(1) as f64;
    lines.push(format!(
        "target seed way >= 50x crew's warm requests: {seed_warm} / {} = {ratio:.0}x: {}",
        warm.requests,
        verdict(ratio >= 50.0)
    ));
    let dispatch = size.crew.dispatch;
    let without_git = dispatch.ms.saturating_sub(size.crew_dispatch_git_ms);
    lines.push(format!(
        "target dispatch <= 8 requests, < 500 ms plus git: {} requests, {} ms of which git {} ms: {}",
        dispatch.requests,
        dispatch.ms,
        size.crew_dispatch_git_ms,
        verdict(dispatch.requests <= 8 && without_git < 500)
    ));
    lines
}

/// One size's emulator, clone and settings.
struct Bench {
    size: Size,
    latency_ms: u64,
    emulator: EmulatorHandle,
    control: Control,
    dir: tempfile::TempDir,
    clone: PathBuf,
    config: PathBuf,
    env: Vec<(String, String)>,
}

impl Bench {
    async fn start(size: Size, latency_ms: u64) -> BenchResult<Bench> {
        if size.issues < 2 * u64::from(MAX_WORKERS) {
            return Err(format!(
                "{} issues cannot hold crew's and the seed's {MAX_WORKERS} workers each",
                size.issues
            )
            .into());
        }
        let emulator = Emulator::builder().start().await?;
        seed_world(&emulator, size)?;
        let control = Control::at(emulator.base_url())?;
        let url = emulator
            .clone_url(OWNER, NAME)
            .ok_or("the default world has acme/widgets")?;
        let dir = tempfile::Builder::new()
            .prefix("crew-api-cost-")
            .tempdir()?;
        for sub in ["home", "cache"] {
            std::fs::create_dir_all(dir.path().join(sub))?;
        }
        let env: Vec<(String, String)> = [
            ("CREW_API_URL", emulator.base_url().to_owned()),
            ("HOME", path_text(&dir.path().join("home"))),
            ("CREW_CACHE_DIR", path_text(&dir.path().join("cache"))),
            ("PATH", std::env::var("PATH").unwrap_or_default()),
            ("NO_COLOR", "1".to_owned()),
            ("CREW_HOST", "bench".to_owned()),
            ("GH_TOKEN", BOT.to_owned()),
            ("GIT_AUTHOR_NAME", "Bench".to_owned()),
            ("GIT_AUTHOR_EMAIL", "bench@example.com".to_owned()),
            ("GIT_COMMITTER_NAME", "Bench".to_owned()),
            ("GIT_COMMITTER_EMAIL", "bench@example.com".to_owned()),
            ("GIT_TERMINAL_PROMPT", "0".to_owned()),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect();
        let status = tokio::process::Command::new("git")
            .args(["clone", "--quiet", &url, NAME])
            .current_dir(dir.path())
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .status()
            .await?;
        if !status.success() {
            return Err(format!("git clone {url} failed: {status}").into());
        }
        let clone = dir.path().join(NAME).canonicalize()?;
        let config = dir.path().join("crew.toml");
        std::fs::write(
            &config,
            format!(
                "[agents.bench]\ncommand = [\"sh\", \"-c\", \"sleep 300\"]\n\n\
                 [workers]\nagent = \"bench\"\nmax = {MAX_WORKERS}\nmax_per_host = {MAX_WORKERS}\n\
                 replace_on_handover = false\n\n[project]\nowner = \"{OWNER}\"\nnumber = {PROJECT}\n"
            ),
        )?;
        Ok(Bench {
            size,
            latency_ms,
            emulator,
            control,
            dir,
            clone,
            config,
            env,
        })
    }

    async fn measure(&self) -> BenchResult<SizeReport> {
        let mut spawned = Spawned::default();
        let crew = self.crew_steps(&mut spawned).await;
        // Whatever happened, no supervisor of crew's may outlive this size.
        let stopped = self.stop_crew_workers(&mut spawned).await;
        let (crew, dispatch_git, fill_git) = crew?;
        stopped?;
        let seed_way = self.seed_steps().await?;
        Ok(SizeReport {
            issues: self.size.issues,
            comments_per_issue: self.size.comments_per_issue,
            crew,
            seed_way,
            crew_dispatch_git_ms: dispatch_git,
            crew_fill_git_ms: fill_git,
        })
    }

    /// crew's steps; returns them with the git time of the dispatch and of the fill.
    async fn crew_steps(&self, spawned: &mut Spawned) -> BenchResult<(Steps, u64, u64)> {
        let mut steps = Steps::default();
        let (cost, cold) = self.measured("crew cold", self.crew_status()).await?;
        steps.cold = cost;
        if cold["slots"]["used"] != 0 {
            return Err(format!("a fresh world has workers: {cold}").into());
        }

        let (cost, dispatched) = self
            .measured("crew dispatch", self.crew(&["dispatch", "1"]))
            .await?;
        steps.dispatch = cost;
        let view = &dispatched[0];
        spawned.record(view)?;
        let dispatch_git = view["timings"]["git_ms"].as_u64().unwrap_or(0);

        let (cost, filled) = self.measured("crew fill5", self.crew(&["fill"])).await?;
        steps.fill5 = cost;
        let mut fill_git = 0;
        let mut started = 0;
        for applied in filled["applied"].as_array().into_iter().flatten() {
            if applied["outcome"] == "dispatched" {
                spawned.record(&applied["dispatch"])?;
                fill_git += applied["dispatch"]["timings"]["git_ms"]
                    .as_u64()
                    .unwrap_or(0);
                started += 1;
            }
        }
        if started != MAX_WORKERS - 1 {
            return Err(format!("crew fill started {started} workers, not 5: {filled}").into());
        }

        // The fill's own comments are news to the next cycle: absorb them unmeasured.
        let settled = self.crew_status().await?;
        if settled["slots"]["used"] != MAX_WORKERS {
            return Err(format!("{MAX_WORKERS} live workers expected: {settled}").into());
        }
        let (cost, _) = self.measured("crew warm", self.crew_status()).await?;
        steps.warm = cost;

        self.maintainer_comment().await?;
        let (cost, _) = self
            .measured("crew one_comment", self.crew_status())
            .await?;
        steps.one_comment = cost;
        Ok((steps, dispatch_git, fill_git))
    }

    /// The seed way's steps, in the same order as crew's.
    async fn seed_steps(&self) -> BenchResult<Steps> {
        let mut seed = SeedWay::new(self.emulator.base_url())?;
        let mut steps = Steps::default();
        let (cost, seen) = self.measured("seed cold", seed.cycle()).await?;
        steps.cold = cost;
        if seen.open_issues != self.size.issues {
            return Err(format!(
                "the seed way saw {} open issues of {}",
                seen.open_issues, self.size.issues
            )
            .into());
        }
        let newest = self.size.issues;
        let (cost, ()) = self
            .measured("seed dispatch", seed.spawn_worker(newest))
            .await?;
        steps.dispatch = cost;
        let (cost, started) = self
            .measured("seed fill5", seed.dispatch_available_slots(MAX_WORKERS))
            .await?;
        steps.fill5 = cost;
        if started != MAX_WORKERS - 1 {
            return Err(format!("the seed way started {started} workers, not 5").into());
        }
        let (cost, seen) = self.measured("seed warm", seed.cycle()).await?;
        steps.warm = cost;
        if seen.in_progress != u64::from(MAX_WORKERS) {
            return Err(format!(
                "the seed way's board shows {} workers in progress, not {MAX_WORKERS}",
                seen.in_progress
            )
            .into());
        }
        self.maintainer_comment().await?;
        let (cost, _) = self.measured("seed one_comment", seed.cycle()).await?;
        steps.one_comment = cost;
        Ok(steps)
    }

    /// Runs `work` between a reset of the emulator's accounting and a read of it.
    async fn measured<T>(
        &self,
        label: &str,
        work: impl std::future::Future<Output = BenchResult<T>>,
    ) -> BenchResult<(Cost, T)> {
        self.control.reset(self.latency_ms).await?;
        let started = Instant::now();
        let value = work.await?;
        let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let (requests, rate_points, by_route) = totals(&self.control).await?;
        if std::env::var_os(ROUTES_ENV).is_some() {
            eprintln!("{label}: {requests} requests, {rate_points} points, {ms} ms");
            for (route, count) in by_route {
                eprintln!("    {count:>5}  {route}");
            }
        }
        Ok((
            Cost {
                requests,
                rate_points,
                ms,
            },
            value,
        ))
    }

    /// `crew status --json` through the library, on a context built as a new process builds it.
    async fn crew_status(&self) -> BenchResult<Value> {
        let flags = GlobalArgs {
            repo: Some(format!("{OWNER}/{NAME}").parse()?),
            json: true,
            quiet: true,
            config: Some(self.config.clone()),
            ..GlobalArgs::default()
        };
        let env = Env::from_pairs(self.env.iter().cloned());
        let settings = Settings::resolve(&flags, &env, &self.clone)?;
        let (printer, captured) = Printer::capture(Verbosity::Quiet, false);
        let ctx = Ctx::new(settings, printer);
        status::run(
            &ctx,
            &StatusArgs {
                all: false,
                watch: false,
                interval: Duration::from_secs(5),
            },
        )
        .await?;
        Ok(serde_json::from_str(&captured.stdout())?)
    }

    /// The real `crew` binary with `--json`, in the clone; its parsed stdout.
    async fn crew(&self, args: &[&str]) -> BenchResult<Value> {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_crew"));
        command
            .args(["-R", &format!("{OWNER}/{NAME}"), "--json", "--config"])
            .arg(&self.config)
            .args(args)
            .current_dir(&self.clone)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let output = tokio::time::timeout(CREW_RUN_LIMIT, command.output())
            .await
            .map_err(|_| format!("crew {args:?} ran longer than {CREW_RUN_LIMIT:?}"))??;
        if !output.status.success() {
            return Err(format!(
                "crew {args:?} failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            )
            .into());
        }
        Ok(serde_json::from_slice(&output.stdout)?)
    }

    /// A maintainer's plain comment on an issue no worker holds (not measured).
    async fn maintainer_comment(&self) -> BenchResult {
        let octocrab = Octocrab::builder()
            .base_uri(self.emulator.base_url())?
            .personal_token(MAINTAINER.to_owned())
            .build()?;
        let issue = self.size.issues / 2;
        let _: Value = octocrab
            .post(
                format!("/repos/{OWNER}/{NAME}/issues/{issue}/comments"),
                Some(&json!({"body": "Could this also cover the settings page?"})),
            )
            .await?;
        Ok(())
    }

    /// `crew cancel` of every worker crew started (latency off: this is not measured), then
    /// their cards back to Todo; kills what is still running if the cancels fail.
    async fn stop_crew_workers(&self, spawned: &mut Spawned) -> BenchResult {
        if spawned.workers.is_empty() {
            return Ok(());
        }
        self.control.reset(0).await?;
        let mut failure = None;
        for worker in spawned.workers.clone() {
            if let Err(error) = self.crew(&["cancel", &worker.issue.to_string()]).await {
                failure.get_or_insert(error);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        while spawned.any_alive() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        spawned.kill_all();
        let issues: Vec<u64> = spawned.workers.drain(..).map(|w| w.issue).collect();
        self.emulator.with_state(|state| {
            let found = state
                .data
                .projects
                .iter_mut()
                .find(|project| {
                    project.owner.eq_ignore_ascii_case(OWNER) && project.number == PROJECT
                })
                .map(|project| {
                    let todo = project
                        .status_options
                        .iter()
                        .find(|option| option.name == "Todo")
                        .map(|option| option.id.clone());
                    for item in &mut project.items {
                        if issues.contains(&item.number) {
                            item.status = todo.clone();
                        }
                    }
                });
            found.ok_or("project 1 is gone")
        })?;
        match failure {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}

fn path_text(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// Issues, plain comments and board cards, written straight into the emulator's state.
fn seed_world(emulator: &EmulatorHandle, size: Size) -> BenchResult {
    emulator.with_state(|state| -> BenchResult {
        let items = i64::try_from(size.issues * (size.comments_per_issue + 1))?;
        let start = state.now() - chrono::Duration::days(2) - chrono::Duration::seconds(items);
        let mut clock = 0;
        let mut tick = move || {
            clock += 1;
            start + chrono::Duration::seconds(clock)
        };
        let mut cards = Vec::new();
        for _ in 0..size.issues {
            let issue_id = state.data.alloc_id();
            let card_id = state.data.alloc_id();
            let comment_ids: Vec<u64> = (0..size.comments_per_issue)
                .map(|_| state.data.alloc_id())
                .collect();
            let repo = state
                .repo_mut(OWNER, NAME)
                .ok_or("the default world has acme/widgets")?;
            let number = repo.next_number;
            repo.next_number += 1;
            let created = tick();
            let mut updated = created;
            for (index, id) in comment_ids.into_iter().enumerate() {
                let at = tick();
                updated = at;
                repo.comments.insert(
                    id,
                    Comment {
                        id,
                        issue_number: number,
                        user: if index % 2 == 0 {
                            "maintainer"
                        } else {
                            "outsider"
                        }
                        .to_owned(),
                        body: format!("Comment {index} on #{number}: some discussion."),
                        created_at: at,
                        updated_at: at,
                    },
                );
            }
            repo.issues.insert(
                number,
                Issue {
                    id: issue_id,
                    number,
                    title: format!("Widget task {number}"),
                    body: Some(format!("What #{number} should do.")),
                    user: "maintainer".to_owned(),
                    state: IssueState::Open,
                    state_reason: None,
                    labels: Vec::new(),
                    assignees: Vec::new(),
                    locked: false,
                    created_at: created,
                    updated_at: updated,
                    closed_at: None,
                    closed_by: None,
                    pull: None,
                },
            );
            cards.push((card_id, number, created));
        }
        let project = state
            .data
            .projects
            .iter_mut()
            .find(|project| project.owner.eq_ignore_ascii_case(OWNER) && project.number == PROJECT)
            .ok_or("the default world has project 1")?;
        let todo = project
            .status_options
            .iter()
            .find(|option| option.name == "Todo")
            .map(|option| option.id.clone());
        for (id, number, at) in cards {
            project.items.push(ProjectItem {
                id,
                repo: format!("{OWNER}/{NAME}"),
                number,
                status: todo.clone(),
                archived: false,
                created_at: at,
                updated_at: at,
            });
        }
        Ok(())
    })
}

/// (requests, rate points, requests by route) since the emulator's last reset.
async fn totals(control: &Control) -> BenchResult<(u64, u64, Vec<(String, u64)>)> {
    let stats = control.stats().await?;
    let field = |name: &str| {
        stats[name]
            .as_u64()
            .ok_or(format!("stats lack {name}: {stats}"))
    };
    let by_route = stats["by_route"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(route, entry)| (route.clone(), entry["requests"].as_u64().unwrap_or(0)))
        .collect();
    Ok((field("requests")?, field("rate_points")?, by_route))
}

/// A worker crew started: its issue and the processes `crew` reported.
#[derive(Debug, Clone)]
struct Worker {
    issue: u64,
    supervisor: i32,
    /// Leader of the agent's process group.
    agent: i32,
}

/// crew's workers; any still running when this drops are killed (supervisor, then the agent's
/// group), so a failed bench leaves no `sleep 300` behind.
#[derive(Debug, Default)]
struct Spawned {
    workers: Vec<Worker>,
}

impl Spawned {
    fn record(&mut self, view: &Value) -> BenchResult {
        let number = |key: &str| {
            view[key]
                .as_u64()
                .ok_or_else(|| format!("no {key} in {view}"))
        };
        self.workers.push(Worker {
            issue: number("issue")?,
            supervisor: i32::try_from(number("pid")?)?,
            agent: i32::try_from(number("agent_pid")?)?,
        });
        Ok(())
    }

    fn any_alive(&self) -> bool {
        self.workers
            .iter()
            .any(|worker| alive(worker.supervisor) || alive(worker.agent))
    }

    fn kill_all(&mut self) {
        for worker in &self.workers {
            if alive(worker.supervisor) {
                // SAFETY: kill(2) with a pid crew reported for a process it started here.
                unsafe { libc::kill(worker.supervisor, libc::SIGKILL) };
            }
            if alive(worker.agent) {
                // SAFETY: as above; the negative pid is the agent's process group.
                unsafe { libc::kill(-worker.agent, libc::SIGKILL) };
            }
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// Whether `pid` runs (a zombie does not: nobody may reap it in a container).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

/// What a seed cycle saw.
#[derive(Debug, Default)]
struct Seen {
    open_issues: u64,
    in_progress: u64,
}

/// A worker the seed way started: the skill tracks it by a local pid file.
#[derive(Debug, Clone)]
struct SeedWorker {
    branch: String,
}

/// The worker-dispatch skill's calls, as plain HTTP (see the module documentation).
struct SeedWay {
    octocrab: Octocrab,
    base: String,
    workers: Vec<SeedWorker>,
    /// Bounds the requests a cycle has in flight ([`SEED_IN_FLIGHT`]).
    in_flight: Arc<tokio::sync::Semaphore>,
}

const SEED_ITEMS_QUERY: &str = "query SeedItems($login: String!, $number: Int!, $after: String) {
  organization(login: $login) {
    projectV2(number: $number) {
      items(first: 100, after: $after) {
        pageInfo { hasNextPage endCursor }
        nodes {
          id
          content { ... on Issue { number } }
          fieldValueByName(name: \"Status\") { ... on ProjectV2ItemFieldSingleSelectValue { name } }
        }
      }
    }
  }
}";

const SEED_PROJECT_QUERY: &str = "query SeedProject($login: String!, $number: Int!) {
  organization(login: $login) {
    projectV2(number: $number) {
      id
      field(name: \"Status\") { ... on ProjectV2SingleSelectField { id options { id name } } }
    }
  }
}";

const SEED_ADD_ITEM: &str = "mutation SeedAdd($project: ID!, $content: ID!) {
  addProjectV2ItemById(input: {projectId: $project, contentId: $content}) { item { id } }
}";

const SEED_SET_STATUS: &str =
    "mutation SeedStatus($project: ID!, $item: ID!, $field: ID!, $option: String!) {
  updateProjectV2ItemFieldValue(input: {projectId: $project, itemId: $item, fieldId: $field, value: {singleSelectOptionId: $option}}) {
    projectV2Item { id }
  }
}";

impl SeedWay {
    fn new(base_url: &str) -> BenchResult<SeedWay> {
        Ok(SeedWay {
            octocrab: Octocrab::builder()
                .base_uri(base_url)?
                .personal_token(BOT.to_owned())
                .build()?,
            base: base_url.trim_end_matches('/').to_owned(),
            workers: Vec::new(),
            in_flight: Arc::new(tokio::sync::Semaphore::new(SEED_IN_FLIGHT)),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/repos/{OWNER}/{NAME}{path}", self.base)
    }

    /// One monitoring cycle.
    async fn cycle(&self) -> BenchResult<Seen> {
        let open = get_all(&self.octocrab, self.url("/issues?state=open&per_page=100")).await?;
        let numbers: Vec<u64> = open
            .iter()
            .filter(|issue| issue.get("pull_request").is_none())
            .filter_map(|issue| issue["number"].as_u64())
            .collect();
        let mut urls = Vec::new();
        for number in &numbers {
            urls.push(self.url(&format!("/issues/{number}")));
            urls.push(self.url(&format!("/issues/{number}/comments?per_page=100")));
        }
        for worker in &self.workers {
            urls.push(self.url(&format!("/pulls?head={OWNER}:{}&state=open", worker.branch)));
        }
        let mut reads = tokio::task::JoinSet::new();
        for url in urls {
            let octocrab = self.octocrab.clone();
            let in_flight = self.in_flight.clone();
            reads.spawn(async move {
                let _permit = in_flight.acquire_owned().await?;
                get_all(&octocrab, url).await.map(drop)
            });
        }
        while let Some(read) = reads.join_next().await {
            read??;
        }
        let items = self.board_items().await?;
        Ok(Seen {
            open_issues: numbers.len() as u64,
            in_progress: items
                .iter()
                .filter(|(_, status)| status.as_deref() == Some("In Progress"))
                .count() as u64,
        })
    }

    /// `gh project item-list`: every card with its Status, 100 per request.
    async fn board_items(&self) -> BenchResult<Vec<(u64, Option<String>)>> {
        let mut items = Vec::new();
        let mut after = Value::Null;
        loop {
            let data = graphql(
                &self.octocrab,
                SEED_ITEMS_QUERY,
                json!({"login": OWNER, "number": PROJECT, "after": after}),
            )
            .await?;
            let connection = &data["organization"]["projectV2"]["items"];
            for node in connection["nodes"].as_array().into_iter().flatten() {
                if let Some(number) = node["content"]["number"].as_u64() {
                    let status = node["fieldValueByName"]["name"].as_str().map(str::to_owned);
                    items.push((number, status));
                }
            }
            if connection["pageInfo"]["hasNextPage"] != true {
                return Ok(items);
            }
            after = connection["pageInfo"]["endCursor"].clone();
        }
    }

    /// `spawn_worker` of one issue.
    async fn spawn_worker(&mut self, number: u64) -> BenchResult {
        let (issue, _) = get_page(&self.octocrab, &self.url(&format!("/issues/{number}"))).await?;
        let title = issue["title"].as_str().unwrap_or_default();
        let branch = format!("feature/{number}-{}", skill_slug(title));
        get_all(
            &self.octocrab,
            self.url(&format!("/issues/{number}/comments?per_page=100")),
        )
        .await?;
        let now = Utc::now().format("%Y-%m-%dT%H:%M:%SZ");
        let worker = format!("worker-{}-{number}", Utc::now().timestamp());
        let body = format!(
            "\n```json\n{{\n\"assigned\": true,\n\"worker_id\": \"{worker}\",\n\"assigned_at\": \"{now}\",\n\
             \"worktree\": \"../{NAME}-worker-{number}\"\n}}\n```\n\n**Worker Assigned**\n\
             - **Worker ID:** `{worker}`\n- **Started:** {now}\n- **Worktree:** `../{NAME}-worker-{number}`\n\n\
             ---\n*Orchestrator: bench*"
        );
        let _: Value = self
            .octocrab
            .post(
                format!("/repos/{OWNER}/{NAME}/issues/{number}/comments"),
                Some(&json!({ "body": body })),
            )
            .await?;
        let content = issue["node_id"]
            .as_str()
            .ok_or_else(|| format!("#{number} has no node_id"))?;
        self.update_project_status(content, "In Progress").await?;
        self.workers.push(SeedWorker { branch });
        Ok(())
    }

    /// `update_project_status`: the ids `gh project item-edit` needs, then the edit.
    async fn update_project_status(&self, content: &str, status: &str) -> BenchResult {
        let data = graphql(
            &self.octocrab,
            SEED_PROJECT_QUERY,
            json!({"login": OWNER, "number": PROJECT}),
        )
        .await?;
        let project = &data["organization"]["projectV2"];
        let option = project["field"]["options"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|option| option["name"] == status)
            .ok_or_else(|| format!("no {status} option: {project}"))?;
        let added = graphql(
            &self.octocrab,
            SEED_ADD_ITEM,
            json!({"project": project["id"], "content": content}),
        )
        .await?;
        graphql(
            &self.octocrab,
            SEED_SET_STATUS,
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

    /// `dispatch_available_slots`; returns how many workers it started.
    async fn dispatch_available_slots(&mut self, max_workers: u32) -> BenchResult<u32> {
        let current = self
            .board_items()
            .await?
            .iter()
            .filter(|(_, status)| status.as_deref() == Some("In Progress"))
            .count();
        let available = u64::from(max_workers).saturating_sub(current as u64);
        let mut started = 0;
        for _ in 0..available {
            let Some(next) = self.next_pending_issue().await? else {
                break;
            };
            self.spawn_worker(next).await?;
            started += 1;
        }
        Ok(started)
    }

    /// `get_next_pending_issue`: the newest open issue whose comments hold no live assignment.
    async fn next_pending_issue(&self) -> BenchResult<Option<u64>> {
        let (page, _) =
            get_page(&self.octocrab, &self.url("/issues?state=open&per_page=100")).await?;
        for issue in page.as_array().into_iter().flatten() {
            let Some(number) = issue["number"].as_u64() else {
                continue;
            };
            let comments = get_all(
                &self.octocrab,
                self.url(&format!("/issues/{number}/comments?per_page=100")),
            )
            .await?;
            if !assigned(&comments) {
                return Ok(Some(number));
            }
        }
        Ok(None)
    }
}

/// Whether the newest assignment marker among `comments` (the skill's fenced JSON or crew's
/// event) says the issue is taken.
fn assigned(comments: &[Value]) -> bool {
    let mut taken = false;
    for body in comments
        .iter()
        .filter_map(|comment| comment["body"].as_str())
    {
        if body.contains("\"assigned\": true") || body.contains("\"kind\":\"assigned\"") {
            taken = true;
        } else if body.contains("\"assigned\": false")
            || body.contains("\"kind\":\"released\"")
            || body.contains("\"kind\":\"cancelled\"")
        {
            taken = false;
        }
    }
    taken
}

/// The skill's branch slug: lowercase, anything but `[a-z0-9]` as `-`, 40 characters.
fn skill_slug(title: &str) -> String {
    title
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .take(40)
        .collect()
}

/// One GET: the body and the `Link: rel="next"` URL.
async fn get_page(octocrab: &Octocrab, url: &str) -> BenchResult<(Value, Option<String>)> {
    let response = octocrab._get(url).await?;
    let status = response.status();
    let next = response
        .headers()
        .get(http::header::LINK)
        .and_then(|link| link.to_str().ok())
        .and_then(next_link);
    let text = octocrab.body_to_string(response).await?;
    if !status.is_success() {
        return Err(format!("GET {url}: {status}: {text}").into());
    }
    Ok((serde_json::from_str(&text)?, next))
}

/// Every page of a list, following `Link` as `gh --paginate` does.
async fn get_all(octocrab: &Octocrab, first: String) -> BenchResult<Vec<Value>> {
    let mut items = Vec::new();
    let mut next = Some(first);
    while let Some(url) = next {
        let (page, following) = get_page(octocrab, &url).await?;
        match page {
            Value::Array(page) => items.extend(page),
            other => items.push(other),
        }
        next = following;
    }
    Ok(items)
}

fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (url, rel) = part.split_once(';')?;
        rel.contains("rel=\"next\"").then(|| {
            url.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_owned()
        })
    })
}

/// A GraphQL request; its `data`, or an error when GitHub reported any.
async fn graphql(octocrab: &Octocrab, query: &str, variables: Value) -> BenchResult<Value> {
    let response: Value = octocrab
        .graphql(&json!({"query": query, "variables": variables}))
        .await?;
    if let Some(errors) = response.get("errors") {
        return Err(format!("GraphQL errors: {errors}").into());
    }
    Ok(response["data"].clone())
}
