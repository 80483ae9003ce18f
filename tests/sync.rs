//! Incremental sync against the emulator: what each pass costs (from `/_emulator/stats`) and what
//! the cache holds afterwards.
//!
//! Large worlds are seeded straight into the emulator's state with one item per second, as a
//! real repository's history is spread out (GitHub's content limits allow a few comments per
//! second at most); `changes_in_a_crowded_second_are_not_skipped` covers the opposite case.

use std::time::Instant;

use crate::support::{BOT, Control, MAINTAINER, TestEmulator, TestResult, client};
use chrono::{DateTime, Duration, Utc};
use crew::cache::Cache;
use crew::github::{GitHub, RepoSlug};
use crew::sync::{Sync, SyncProgress, SyncReport};
use github_emulator::state::{Comment, Issue, IssueState};
use serde_json::{Value, json};

fn widgets() -> TestResult<RepoSlug> {
    Ok("acme/widgets".parse()?)
}

fn marker(issue: u64, kind: &str, op: &str) -> String {
    format!(
        "<!-- crew:v1 {{\"kind\":\"{kind}\",\"issue\":{issue},\"attempt\":1,\"worker\":\"worker-1-{issue}\",\"op\":\"{op}\"}} -->\n**{kind}**"
    )
}

/// Adds `issues` issues with `per_issue` comments each to acme/widgets, one item per second
/// ending two days ago; every third comment carries a marker. Returns the marker-comment count.
fn seed(emulator: &TestEmulator, issues: u64, per_issue: u64) -> u64 {
    emulator.with_state(|state| {
        let items = (issues * (per_issue + 1)) as i64;
        let start = state.now() - Duration::days(2) - Duration::seconds(items);
        let mut clock = 0;
        let mut tick = move || {
            clock += 1;
            start + Duration::seconds(clock)
        };
        let mut markers = 0;
        for _ in 0..issues {
            let issue_id = state.data.alloc_id();
            let comment_ids: Vec<u64> = (0..per_issue).map(|_| state.data.alloc_id()).collect();
            let repo = state
                .repo_mut("acme", "widgets")
                .expect("the default world has acme/widgets");
            let number = repo.next_number;
            repo.next_number += 1;
            let created = tick();
            let mut updated = created;
            for (index, id) in comment_ids.into_iter().enumerate() {
                let at = tick();
                updated = at;
                let body = if index % 3 == 0 {
                    markers += 1;
                    marker(number, "progress", &format!("op-{id}"))
                } else {
                    format!("A plain comment {id} on #{number}.")
                };
                repo.comments.insert(
                    id,
                    Comment {
                        id,
                        issue_number: number,
                        user: if index % 2 == 0 {
                            "crew-bot"
                        } else {
                            "maintainer"
                        }
                        .to_string(),
                        body,
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
                    title: format!("Issue {number}"),
                    body: Some(format!("Body of {number}.")),
                    user: "maintainer".to_string(),
                    state: if number % 5 == 0 {
                        IssueState::Closed
                    } else {
                        IssueState::Open
                    },
                    state_reason: (number % 5 == 0).then(|| "completed".to_string()),
                    labels: if number % 2 == 0 {
                        vec!["crew".to_string()]
                    } else {
                        Vec::new()
                    },
                    assignees: Vec::new(),
                    locked: false,
                    created_at: created,
                    updated_at: updated,
                    closed_at: (number % 5 == 0).then_some(updated),
                    closed_by: None,
                    pull: None,
                },
            );
        }
        markers
    })
}

/// Totals from `/_emulator/stats`: (requests, rate points, 304s).
async fn totals(control: &Control) -> TestResult<(u64, u64, u64)> {
    let stats = control.stats().await?;
    let field = |name: &str| stats[name].as_u64().unwrap_or(0);
    Ok((
        field("requests"),
        field("rate_points"),
        field("not_modified"),
    ))
}

/// A PATCH of a comment's body, as a user would edit it on GitHub.
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

async fn sync(github: &GitHub, cache: &Cache) -> TestResult<SyncReport> {
    Ok(Sync::run(github, cache, &widgets()?).await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_sync_costs_the_page_lower_bound_and_a_quiet_pass_two_304s() -> TestResult {
    let emulator = crate::support::emulator().await?;
    let markers = seed(&emulator, 250, 3);
    let control = Control::new(&emulator)?;
    control.reset_stats().await?;
    let cache = Cache::in_memory().await?;
    let github = client(&emulator, BOT, Some(cache.clone()))?;

    let cold = sync(&github, &cache).await?;

    // ⌈250/100⌉ + ⌈750/100⌉: the lower bound for reading both lists.
    assert!(cold.cold);
    assert_eq!(cold.requests, 3 + 8);
    assert_eq!(
        control.requests("GET /repos/{owner}/{repo}/issues").await?,
        3
    );
    assert_eq!(
        control
            .requests("GET /repos/{owner}/{repo}/issues/comments")
            .await?,
        8
    );
    assert_eq!(totals(&control).await?, (11, 11, 0));
    assert_eq!(cold.issues_updated, 250);
    assert_eq!(cold.comments_updated as u64, markers);
    assert_eq!(cache.issues().await?.len(), 250);
    let stored = cache.event_comments(None).await?;
    assert_eq!(
        stored.len() as u64,
        markers,
        "plain comments are not stored"
    );
    assert!(stored.iter().all(|c| c.body.starts_with("<!-- crew:v1 ")));
    let issue_10 = cache.issue(10).await?.ok_or("issue 10 is mirrored")?;
    assert_eq!(
        (issue_10.state.as_str(), issue_10.labels.clone()),
        ("closed", vec!["crew".to_string()])
    );

    // The very first warm pass, nothing changed: one 304 per list, free.
    control.reset_stats().await?;
    let warm = sync(&github, &cache).await?;
    assert_eq!(
        warm,
        SyncReport {
            requests: 2,
            not_modified: 2,
            issues_updated: 0,
            comments_updated: 0,
            cold: false,
        }
    );
    assert_eq!(totals(&control).await?, (2, 0, 2));
    Ok(())
}

/// Every page a sync reported, per list: (fetched, total).
#[derive(Default)]
struct Pages(std::sync::Mutex<Vec<(String, u64, Option<u64>)>>);

impl SyncProgress for Pages {
    fn page(&self, list: &str, fetched: u64, total: Option<u64>) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((list.to_string(), fetched, total));
    }
}

impl Pages {
    fn of(&self, list: &str) -> Vec<(u64, Option<u64>)> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter(|(name, _, _)| name == list)
            .map(|(_, fetched, total)| (*fetched, *total))
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_sees_every_page_with_the_total_from_the_first() -> TestResult {
    let emulator = crate::support::emulator().await?;
    seed(&emulator, 250, 3);
    let cache = Cache::in_memory().await?;
    let github = client(&emulator, BOT, Some(cache.clone()))?;

    let pages = Pages::default();
    let cold = Sync::run_with_progress(&github, &cache, &widgets()?, &pages).await?;
    assert_eq!(cold.requests, 3 + 8);
    assert_eq!(
        pages.of("issues"),
        (1..=3).map(|page| (page, Some(3))).collect::<Vec<_>>()
    );
    assert_eq!(
        pages.of("comments"),
        (1..=8).map(|page| (page, Some(8))).collect::<Vec<_>>()
    );

    // A warm pass stops early, so its length is known only at its end.
    let pages = Pages::default();
    Sync::run_with_progress(&github, &cache, &widgets()?, &pages).await?;
    assert_eq!(pages.of("issues"), vec![(1, Some(1))]);
    assert_eq!(pages.of("comments"), vec![(1, Some(1))]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_repository_is_warm_after_one_pass() -> TestResult {
    let emulator = crate::support::emulator().await?;
    let control = Control::new(&emulator)?;
    let cache = Cache::in_memory().await?;
    let github = client(&emulator, BOT, Some(cache.clone()))?;
    let first = sync(&github, &cache).await?;
    assert!(first.cold);
    assert_eq!(first.requests, 2);

    control.reset_stats().await?;
    let second = sync(&github, &cache).await?;
    assert!(!second.cold);
    assert_eq!(totals(&control).await?, (2, 0, 2));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_marker_comment_costs_one_page_per_list_then_304s_again() -> TestResult {
    let emulator = crate::support::emulator().await?;
    let markers = seed(&emulator, 250, 3);
    let control = Control::new(&emulator)?;
    let cache = Cache::in_memory().await?;
    let github = client(&emulator, BOT, Some(cache.clone()))?;
    sync(&github, &cache).await?;
    let repo = widgets()?;

    let event = github
        .create_issue_comment(&repo, 17, &marker(17, "blocked", "op-new"), None)
        .await?;
    control.reset_stats().await?;
    let report = sync(&github, &cache).await?;

    assert!(report.requests <= 3, "{report:?}");
    assert_eq!((report.requests, report.not_modified), (2, 0));
    assert_eq!((report.issues_updated, report.comments_updated), (1, 1));
    assert_eq!(totals(&control).await?.0, 2);
    let stored = cache.event_comments(Some(17)).await?;
    let last = stored.last().ok_or("issue 17 has events")?;
    assert_eq!(last.id, event.id);
    assert_eq!(last.author.as_deref(), Some("crew-bot"));
    assert_eq!(last.association.as_deref(), Some("COLLABORATOR"));
    assert_eq!(cache.event_comments(None).await?.len() as u64, markers + 1);

    // A plain comment changes the lists but is not stored.
    let plain = github
        .create_issue_comment(&repo, 18, "Thanks, looks good.", None)
        .await?;
    let report = sync(&github, &cache).await?;
    assert_eq!((report.issues_updated, report.comments_updated), (1, 0));
    assert!(
        !cache
            .event_comments(Some(18))
            .await?
            .iter()
            .any(|c| c.id == plain.id)
    );

    control.reset_stats().await?;
    let quiet = sync(&github, &cache).await?;
    assert_eq!((quiet.requests, quiet.not_modified), (2, 2));
    assert_eq!(totals(&control).await?, (2, 0, 2));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_update_the_stored_comment_and_removing_the_marker_removes_it() -> TestResult {
    let emulator = crate::support::emulator().await?;
    seed(&emulator, 30, 3);
    let cache = Cache::in_memory().await?;
    let github = client(&emulator, BOT, Some(cache.clone()))?;
    let repo = widgets()?;
    let event = github
        .create_issue_comment(&repo, 3, &marker(3, "progress", "op-a"), None)
        .await?;
    sync(&github, &cache).await?;

    let edited = marker(3, "progress", "op-a") + "\nEdited: half way there.";
    edit_comment(&emulator, event.id, &edited).await?;
    let report = sync(&github, &cache).await?;
    assert_eq!(report.comments_updated, 1);
    let stored = cache.event_comments(Some(3)).await?;
    let row = stored
        .iter()
        .find(|c| c.id == event.id)
        .ok_or("the edited comment is still stored")?;
    assert_eq!(row.body, edited);

    edit_comment(&emulator, event.id, "Never mind.").await?;
    let report = sync(&github, &cache).await?;
    assert_eq!(report.comments_updated, 1);
    assert!(
        !cache
            .event_comments(Some(3))
            .await?
            .iter()
            .any(|c| c.id == event.id),
        "a comment whose marker was edited out leaves the cache"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_gets_304s_from_the_same_file() -> TestResult {
    let emulator = crate::support::emulator().await?;
    seed(&emulator, 120, 2);
    let control = Control::new(&emulator)?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("cache.sqlite3");
    {
        let cache = Cache::open(&path).await?;
        let github = client(&emulator, BOT, Some(cache.clone()))?;
        assert!(sync(&github, &cache).await?.cold);
    }

    control.reset_stats().await?;
    let cache = Cache::open(&path).await?;
    let github = client(&emulator, BOT, Some(cache.clone()))?;
    let report = sync(&github, &cache).await?;

    assert!(!report.cold);
    assert_eq!((report.requests, report.not_modified), (2, 2));
    assert_eq!(totals(&control).await?, (2, 0, 2));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_cache_file_loses_nothing() -> TestResult {
    let emulator = crate::support::emulator().await?;
    seed(&emulator, 150, 4);
    let repo = widgets()?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("cache.sqlite3");

    // A history of incremental passes: events, an edit, a plain comment, a marker edited out.
    let first_dump = {
        let cache = Cache::open(&path).await?;
        let github = client(&emulator, BOT, Some(cache.clone()))?;
        sync(&github, &cache).await?;
        let a = github
            .create_issue_comment(&repo, 4, &marker(4, "started", "op-1"), None)
            .await?;
        let b = github
            .create_issue_comment(&repo, 140, &marker(140, "blocked", "op-2"), None)
            .await?;
        sync(&github, &cache).await?;
        edit_comment(
            &emulator,
            a.id,
            &(marker(4, "started", "op-1") + "\nedited"),
        )
        .await?;
        github
            .create_issue_comment(&repo, 5, "plain words", None)
            .await?;
        sync(&github, &cache).await?;
        edit_comment(&emulator, b.id, "no marker any more").await?;
        sync(&github, &cache).await?;
        cache.mirror_dump().await?
    };
    assert!(first_dump.contains("edited"));
    assert!(!first_dump.contains("op-2"));

    for entry in std::fs::read_dir(dir.path())? {
        std::fs::remove_file(entry?.path())?;
    }
    let cache = Cache::open(&path).await?;
    let github = client(&emulator, BOT, Some(cache.clone()))?;
    assert!(sync(&github, &cache).await?.cold);
    assert_eq!(cache.mirror_dump().await?, first_dump);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_in_a_crowded_second_are_not_skipped() -> TestResult {
    // 150 marker comments created in the same second (a world seeds everything at once): more
    // than a page shares the cursor's second.
    let emulator = crate::support::emulator_with(|world| {
        if let Some(repo) = world.repos.first_mut() {
            repo.issues.push(github_emulator::world::WorldIssue {
                title: "Busy".to_string(),
                body: None,
                author: Some("maintainer".to_string()),
                labels: Vec::new(),
                assignees: Vec::new(),
                state: "open".to_string(),
                comments: (0..150)
                    .map(|n| github_emulator::world::WorldComment {
                        author: "crew-bot".to_string(),
                        body: marker(1, "progress", &format!("op-{n}")),
                    })
                    .collect(),
            });
        }
    })
    .await?;
    let cache = Cache::in_memory().await?;
    let github = client(&emulator, BOT, Some(cache.clone()))?;
    let cold = sync(&github, &cache).await?;
    assert_eq!(cold.requests, 1 + 2);

    // The oldest comment is edited within that same second: its `updated_at` does not move, and
    // it sorts onto the second page, so the first page still answers 304.
    let oldest = emulator.with_state(|state| -> Option<(u64, DateTime<Utc>)> {
        let repo = state.repo_mut("acme", "widgets")?;
        let comment = repo.comments.values_mut().next()?;
        comment.body = marker(1, "progress", "op-0") + "\nsame-second edit";
        Some((comment.id, comment.updated_at))
    });
    let (id, _) = oldest.ok_or("the world has comments")?;
    let report = sync(&github, &cache).await?;

    assert_eq!(report.comments_updated, 1, "{report:?}");
    assert_eq!(
        (report.requests, report.not_modified),
        (3, 2),
        "both first pages are unchanged; the walk reads on through the crowded second"
    );
    let stored = cache.event_comments(Some(1)).await?;
    let row = stored.iter().find(|c| c.id == id).ok_or("stored")?;
    assert!(row.body.ends_with("same-second edit"));
    Ok(())
}

/// `cargo test -p crew --test crew sync::measure -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: prints request counts for 1,000 issues × 10 comments"]
async fn measure_cold_and_warm_sync_of_1000_issues_with_10_comments() -> TestResult {
    let emulator = crate::support::emulator().await?;
    seed(&emulator, 1000, 10);
    let control = Control::new(&emulator)?;
    control.reset_stats().await?;
    let cache = Cache::in_memory().await?;
    let github = client(&emulator, BOT, Some(cache.clone()))?;
    let lower_bound = 1000_u64.div_ceil(100) + 10_000_u64.div_ceil(100);

    let started = Instant::now();
    let cold = sync(&github, &cache).await?;
    let cold_time = started.elapsed();
    let cold_totals = totals(&control).await?;

    control.reset_stats().await?;
    let started = Instant::now();
    let warm = sync(&github, &cache).await?;
    let warm_time = started.elapsed();
    let warm_totals = totals(&control).await?;

    // The emulator's share: it renders the whole list for every page it serves.
    let started = Instant::now();
    github
        .get_conditional(
            "GET /repos/{owner}/{repo}/issues/comments",
            "/repos/acme/widgets/issues/comments?sort=updated&direction=desc&per_page=100",
        )
        .await?;
    let one_page = started.elapsed();

    github
        .create_issue_comment(&widgets()?, 500, &marker(500, "blocked", "op-m"), None)
        .await?;
    control.reset_stats().await?;
    let changed = sync(&github, &cache).await?;
    let changed_totals = totals(&control).await?;

    println!(
        "sync 1000 issues x 10 comments: lower bound {lower_bound} requests\n\
         cold:    {} requests ({} rate points, {} not modified) in {cold_time:?}; {cold:?}\n\
         warm:    {} requests ({} rate points, {} not modified) in {warm_time:?}; {warm:?}\n\
         1 event: {} requests ({} rate points, {} not modified); {changed:?}\n\
         one 304 page of the 10,000-comment list alone: {one_page:?}",
        cold_totals.0,
        cold_totals.1,
        cold_totals.2,
        warm_totals.0,
        warm_totals.1,
        warm_totals.2,
        changed_totals.0,
        changed_totals.1,
        changed_totals.2,
    );
    assert_eq!(cold_totals.0, lower_bound);
    assert_eq!(warm_totals, (2, 0, 2));
    assert_eq!(changed_totals.0, 2);
    Ok(())
}
