//! `crew cache path|rebuild|verify`: the cache is disposable (everything in it but the process
//! table comes from GitHub), and these make that checkable.
//!
//! `verify` compares the file cache *as it is* with a fresh cold read of GitHub into an in-memory
//! cache, without syncing the file first: a sync would repair a damaged row (its upserts rewrite a
//! row that differs from GitHub's copy) and so hide exactly what verify is for. A cache that is
//! merely behind (something changed on GitHub since the last sync) shows those changes as
//! differences too; run `crew status` first to rule that out.

use std::collections::BTreeMap;
use std::time::Duration;

use clap::Subcommand;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use crate::cache::{Cache, CommentRow, IssueRow};
use crate::context::Ctx;
use crate::error::CrewError;
use crate::github::{GitHub, GitHubConfig};
use crate::observe::{ObservedIssue, fold_cache, fold_policy, own_login};
use crate::printer::Verbosity;
use crate::sync::{COMMENTS_CURSOR, ISSUES_CURSOR, Sync, SyncProgress};

/// Subcommands of `crew cache`.
#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Print the cache file's path
    Path,
    /// Empty the cache's mirror of GitHub and refetch it from scratch
    Rebuild,
    /// Compare the cache with a fresh read of GitHub; exit 1 when they differ
    Verify,
}

/// `crew cache verify --json`.
#[derive(Debug, Serialize)]
pub struct VerifyView {
    pub equal: bool,
    pub differences: Vec<String>,
}

pub async fn run(ctx: &Ctx, command: &CacheCommand) -> Result<(), CrewError> {
    match command {
        CacheCommand::Path => {
            let path = ctx.settings.cache_file()?;
            if ctx.settings.json {
                ctx.printer
                    .json(&serde_json::json!({ "path": path.display().to_string() }))
            } else {
                ctx.printer.out_line(path.display())
            }
        }
        CacheCommand::Rebuild => rebuild(ctx).await,
        CacheCommand::Verify => verify(ctx).await,
    }
}

async fn rebuild(ctx: &Ctx) -> Result<(), CrewError> {
    let repo = ctx.settings.require_repo()?.clone();
    let cache = ctx.cache().await?;
    let github = ctx.github().await?;
    ctx.printer.status(format!(
        "rebuilding the cache of {repo} at {}",
        cache.path()
    ));
    cache.clear_mirror().await?;
    // Refetch for real: with the ETags kept, GitHub would answer 304 and the stored copies
    // (whatever state they are in) would be replayed.
    cache.forget_all_responses().await?;
    // A bar redraws lines in place: only on a terminal, and not when asked for quiet or JSON.
    let show_bars = ctx.printer.err_is_terminal()
        && ctx.printer.verbosity() != Verbosity::Quiet
        && !ctx.settings.json;
    let report = if show_bars {
        let bars = PageBars::new();
        let report = Sync::run_with_progress(github, cache, &repo, &bars).await;
        bars.clear();
        report?
    } else {
        Sync::run(github, cache, &repo).await?
    };
    let issues = cache.issues().await?.len();
    let comments = cache.event_comments(None).await?.len();
    ctx.printer.status(format!(
        "rebuilt: {issues} issues, {comments} event comments ({} requests, {} not modified)",
        report.requests, report.not_modified
    ));
    if ctx.settings.json {
        ctx.printer.json(&serde_json::json!({
            "issues": issues,
            "event_comments": comments,
            "requests": report.requests,
        }))?;
    }
    Ok(())
}

/// One progress line per list on stderr: a spinner until the page count is known (from the
/// first page's `Link: rel="last"`), then a bar.
struct PageBars {
    multi: MultiProgress,
    issues: ProgressBar,
    comments: ProgressBar,
}

impl PageBars {
    fn new() -> Self {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let spinner = |name: &'static str| {
            let bar = multi.add(ProgressBar::new_spinner());
            bar.set_style(spinner_style());
            bar.set_prefix(name);
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        };
        let issues = spinner(ISSUES_CURSOR);
        let comments = spinner(COMMENTS_CURSOR);
        PageBars {
            multi,
            issues,
            comments,
        }
    }

    /// Removes the bars, leaving the terminal as it was before them.
    fn clear(&self) {
        self.issues.finish_and_clear();
        self.comments.finish_and_clear();
        let _ = self.multi.clear();
    }
}

impl SyncProgress for PageBars {
    fn page(&self, list: &str, fetched: u64, total: Option<u64>) {
        let bar = if list == ISSUES_CURSOR {
            &self.issues
        } else {
            &self.comments
        };
        bar.set_position(fetched);
        if let Some(total) = total
            && bar.length() != Some(total)
        {
            if bar.length().is_none() {
                bar.set_style(bar_style());
            }
            bar.set_length(total);
        }
    }
}

fn spinner_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix:>8} {spinner} {pos} pages")
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix:>8} [{bar:30}] {pos}/{len} pages")
        .map(|style| style.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar())
}

async fn verify(ctx: &Ctx) -> Result<(), CrewError> {
    let repo = ctx.settings.require_repo()?.clone();
    let cache = ctx.cache().await?;
    let github = ctx.github().await?;
    ctx.printer.status(format!(
        "reading {repo} from GitHub to compare with the cache"
    ));
    let fresh = Cache::in_memory().await?;
    let fresh_github = GitHub::new(
        GitHubConfig::from_settings(&ctx.settings),
        Some(fresh.clone()),
    )?;
    Sync::run(&fresh_github, &fresh, &repo).await?;

    let leases = github
        .leases(&repo, &ctx.settings.config.lease_ref_prefix)
        .await?;
    let policy = fold_policy(
        &ctx.settings,
        own_login(github, cache, &ctx.settings).await?,
    );
    let now = ctx.clock.now();

    let mut differences = Vec::new();
    compare(
        "issue",
        keyed(cache.issues().await?, |row: &IssueRow| row.number),
        keyed(fresh.issues().await?, |row: &IssueRow| row.number),
        issue_fields,
        &mut differences,
    );
    compare(
        "comment",
        keyed(cache.event_comments(None).await?, |row: &CommentRow| row.id),
        keyed(fresh.event_comments(None).await?, |row: &CommentRow| row.id),
        comment_fields,
        &mut differences,
    );
    compare(
        "state of issue",
        keyed(fold_cache(cache, &leases, &policy, now).await?, |issue| {
            issue.number
        }),
        keyed(fold_cache(&fresh, &leases, &policy, now).await?, |issue| {
            issue.number
        }),
        fold_fields,
        &mut differences,
    );

    let view = VerifyView {
        equal: differences.is_empty(),
        differences,
    };
    if ctx.settings.json {
        ctx.printer.json(&view)?;
    } else if view.equal {
        ctx.printer.out_line("the cache matches GitHub")?;
    } else {
        for difference in &view.differences {
            ctx.printer.out_line(difference)?;
        }
    }
    if view.equal {
        Ok(())
    } else {
        Err(CrewError::user(format!(
            "the cache differs from GitHub ({} differences)",
            view.differences.len()
        ))
        .with_hint("run `crew cache rebuild` to refetch it (or delete the file)"))
    }
}

fn keyed<T>(items: Vec<T>, key: impl Fn(&T) -> u64) -> BTreeMap<u64, T> {
    items.into_iter().map(|item| (key(&item), item)).collect()
}

/// Lists, for every key, what is only in the cache, only on GitHub, or different.
fn compare<T>(
    what: &str,
    cached: BTreeMap<u64, T>,
    fresh: BTreeMap<u64, T>,
    fields: fn(&T) -> Vec<(&'static str, String)>,
    out: &mut Vec<String>,
) {
    for (key, cached_item) in &cached {
        match fresh.get(key) {
            None => out.push(format!("{what} {key}: in the cache but not on GitHub")),
            Some(fresh_item) => {
                for ((name, cached_value), (_, fresh_value)) in
                    fields(cached_item).into_iter().zip(fields(fresh_item))
                {
                    if cached_value != fresh_value {
                        out.push(format!(
                            "{what} {key}: {name} is {cached_value:?} in the cache, {fresh_value:?} on GitHub"
                        ));
                    }
                }
            }
        }
    }
    for key in fresh.keys().filter(|key| !cached.contains_key(key)) {
        out.push(format!("{what} {key}: on GitHub but not in the cache"));
    }
}

fn issue_fields(row: &IssueRow) -> Vec<(&'static str, String)> {
    vec![
        ("title", row.title.clone()),
        ("state", row.state.clone()),
        ("labels", row.labels.join(",")),
        ("author", format!("{:?}", row.author)),
        ("updated_at", row.updated_at.clone()),
        ("closed_at", format!("{:?}", row.closed_at)),
        ("comments", row.comments.to_string()),
    ]
}

fn comment_fields(row: &CommentRow) -> Vec<(&'static str, String)> {
    vec![
        ("issue", row.issue.to_string()),
        ("author", format!("{:?}", row.author)),
        ("association", format!("{:?}", row.association)),
        ("body", row.body.clone()),
        ("updated_at", row.updated_at.clone()),
    ]
}

fn fold_fields(issue: &ObservedIssue) -> Vec<(&'static str, String)> {
    let state = &issue.state;
    vec![
        ("state", state.state.as_str().to_string()),
        ("attempt", format!("{:?}", state.attempt)),
        ("worker", format!("{:?}", state.worker)),
        ("pr", format!("{:?}", state.pr)),
        (
            "events",
            state
                .events
                .iter()
                .map(|applied| format!("{}:{}", applied.comment_id, applied.event.kind()))
                .collect::<Vec<_>>()
                .join(" "),
        ),
        (
            "ignored",
            state
                .ignored
                .iter()
                .map(|ignored| format!("{}:{}", ignored.comment_id, ignored.reason.code()))
                .collect::<Vec<_>>()
                .join(" "),
        ),
    ]
}
