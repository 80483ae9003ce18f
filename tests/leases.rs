//! Reading every lease at once against the emulator: request counts cold and warm, liveness with
//! an injected clock, garbage reported per lease, and the REST and GraphQL readers agreeing.

use chrono::{DateTime, TimeZone, Utc};
use crew::cache::Cache;
use crew::github::{GitHub, ObservedLease, RepoSlug};
use crew::protocol::lease::{
    LEASE_VERSION, Lease, LeaseError, LeaseState, LeaseStatus, render_lease,
};
use serde_json::json;

use crate::support::{BOT, Control, TestResult, client};

const PREFIX: &str = "refs/crew/leases/";
const MATCHING_REFS: &str = "GET /repos/{owner}/{repo}/git/matching-refs/{ref}";
const COMMIT: &str = "GET /repos/{owner}/{repo}/git/commits/{commit_sha}";
const GRAPHQL: &str = "POST /graphql";

fn widgets() -> TestResult<RepoSlug> {
    Ok("acme/widgets".parse()?)
}

/// The injected clock: every lease below is judged at this instant.
fn now() -> DateTime<Utc> {
    at(2026, 11, 21, 10, 0)
}

fn at(year: i32, month: u32, day: u32, hour: u32, minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(year, month, day, hour, minute, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}

fn lease(issue: u64, state: LeaseState, expires_at: DateTime<Utc>) -> Lease {
    Lease {
        v: LEASE_VERSION,
        issue,
        attempt: 1,
        worker: format!("worker-1763700000-{issue}"),
        host: "laptop".to_string(),
        runtime: "local".to_string(),
        acquired_at: at(2026, 11, 21, 9, 0),
        renewed_at: at(2026, 11, 21, 9, 30),
        expires_at,
        state,
    }
}

/// Writes a lease ref the way crew acquires one: a commit on the base tree whose message is
/// `message`, then `POST /git/refs`. Returns the commit's sha.
async fn write_lease(github: &GitHub, issue: u64, message: &str) -> TestResult<String> {
    let repo = widgets()?;
    let main = github.branch(&repo, "main").await?;
    let commit = github
        .create_commit(
            &repo,
            message,
            &main.commit.commit.tree.sha,
            &[main.commit.sha.as_str()],
        )
        .await?;
    github
        .create_ref(&repo, &format!("{PREFIX}{issue}"), &commit.sha)
        .await?;
    Ok(commit.sha)
}

/// Three well-formed leases: #3 live, #5 expired, #12 released (judged at [`now`]).
async fn three_leases(github: &GitHub) -> TestResult<Vec<Lease>> {
    let leases = vec![
        lease(3, LeaseState::Held, at(2026, 11, 21, 10, 30)),
        lease(5, LeaseState::Held, at(2026, 11, 21, 9, 59)),
        lease(12, LeaseState::Released, at(2026, 11, 21, 10, 30)),
    ];
    for lease in &leases {
        write_lease(github, lease.issue, &render_lease(lease)).await?;
    }
    Ok(leases)
}

fn statuses(observed: &[ObservedLease]) -> Vec<(u64, Option<LeaseStatus>)> {
    observed
        .iter()
        .map(|lease| (lease.issue, lease.status(now())))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_leases_cost_one_plus_n_cold_and_one_free_304_warm() -> TestResult {
    let emulator = crate::support::emulator().await?;
    let control = Control::new(&emulator)?;
    let repo = widgets()?;
    let written = three_leases(&client(&emulator, BOT, None)?).await?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("cache.sqlite3");
    control.reset_stats().await?;

    // Cold: one matching-refs page, then each lease commit once.
    let cold = {
        let github = client(&emulator, BOT, Some(Cache::open(&path).await?))?;
        github.leases(&repo, PREFIX).await?
    };
    let stats = control.stats().await?;
    assert_eq!(stats["by_route"][MATCHING_REFS]["requests"], 1);
    assert_eq!(stats["by_route"][COMMIT]["requests"], 3);
    assert_eq!(stats["requests"], 4, "{stats}");
    assert_eq!(stats["rate_points"], 4);

    let read: Vec<Lease> = cold
        .iter()
        .map(|observed| observed.lease.clone())
        .collect::<Result<_, _>>()?;
    assert_eq!(read, written);
    assert_eq!(
        cold.iter().map(|l| l.ref_name.as_str()).collect::<Vec<_>>(),
        [
            "refs/crew/leases/3",
            "refs/crew/leases/5",
            "refs/crew/leases/12"
        ],
        "sorted by issue, not by name"
    );
    assert_eq!(
        statuses(&cold),
        [
            (3, Some(LeaseStatus::Live)),
            (5, Some(LeaseStatus::Expired)),
            (12, Some(LeaseStatus::Released)),
        ]
    );

    // Warm, from a second "process" on the same cache file: one conditional request, a 304.
    control.reset_stats().await?;
    let github = client(&emulator, BOT, Some(Cache::open(&path).await?))?;
    let warm = github.leases(&repo, PREFIX).await?;
    assert_eq!(warm, cold);
    let stats = control.stats().await?;
    assert_eq!(stats["requests"], 1, "{stats}");
    assert_eq!(stats["by_route"][MATCHING_REFS]["requests"], 1);
    assert_eq!(stats["rate_points"], 0, "a 304 is free");
    assert_eq!(stats["not_modified"], 1);

    // A renewal moves one ref to a new commit: the list changes, and only that commit is new.
    let renewed = Lease {
        renewed_at: at(2026, 11, 21, 9, 58),
        expires_at: at(2026, 11, 21, 10, 28),
        ..written[1].clone()
    };
    let main = github.branch(&repo, "main").await?;
    let next = github
        .create_commit(
            &repo,
            &render_lease(&renewed),
            &main.commit.commit.tree.sha,
            &[cold[1].sha.as_str()],
        )
        .await?;
    github
        .update_ref(&repo, "refs/crew/leases/5", &next.sha)
        .await?;
    control.reset_stats().await?;
    let after = github.leases(&repo, PREFIX).await?;
    let stats = control.stats().await?;
    assert_eq!(stats["by_route"][MATCHING_REFS]["requests"], 1);
    assert_eq!(stats["by_route"][COMMIT]["requests"], 1, "{stats}");
    assert_eq!(stats["requests"], 2);
    assert_eq!(after[1].lease, Ok(renewed));
    assert_eq!(after[1].status(now()), Some(LeaseStatus::Live));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphql_reads_all_leases_in_one_request_and_agrees_with_rest() -> TestResult {
    let emulator = crate::support::emulator().await?;
    let control = Control::new(&emulator)?;
    let repo = widgets()?;
    let github = client(&emulator, BOT, None)?;
    three_leases(&github).await?;
    control.reset_stats().await?;

    let by_graphql = github.leases_graphql(&repo, PREFIX).await?;
    let stats = control.stats().await?;
    assert_eq!(stats["requests"], 1, "{stats}");
    assert_eq!(stats["by_route"][GRAPHQL]["requests"], 1);
    assert_eq!(
        stats["by_route"][GRAPHQL]["rate_points"], 1,
        "one GraphQL point"
    );

    let by_rest = github.leases(&repo, PREFIX).await?;
    assert_eq!(by_graphql, by_rest);
    assert_eq!(
        statuses(&by_graphql),
        [
            (3, Some(LeaseStatus::Live)),
            (5, Some(LeaseStatus::Expired)),
            (12, Some(LeaseStatus::Released)),
        ]
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refs_that_hold_no_usable_lease_are_reported_one_by_one() -> TestResult {
    let emulator = crate::support::emulator().await?;
    let repo = widgets()?;
    let github = client(&emulator, BOT, Some(Cache::in_memory().await?))?;
    let good = lease(1, LeaseState::Held, at(2026, 11, 21, 10, 30));
    write_lease(&github, 1, &render_lease(&good)).await?;
    write_lease(&github, 2, "WIP: salvage\n\nnot a lease").await?;
    let newer = render_lease(&lease(3, LeaseState::Held, now())).replace("\"v\":1", "\"v\":2");
    write_lease(&github, 3, &newer).await?;
    write_lease(
        &github,
        4,
        &render_lease(&lease(40, LeaseState::Held, now())),
    )
    .await?;
    write_lease(&github, 6, r#"{"v":1,"issue":6}"#).await?;
    // A ref at a tree, and refs under the prefix that are not an issue's.
    let tree = github.branch(&repo, "main").await?.commit.commit.tree.sha;
    github
        .create_ref(&repo, "refs/crew/leases/5", &tree)
        .await?;
    let tip = github.branch(&repo, "main").await?.commit.sha;
    github
        .create_ref(&repo, "refs/crew/leases/notes", &tip)
        .await?;
    github
        .create_ref(&repo, "refs/crew/leases/07", &tip)
        .await?;

    let by_rest = github.leases(&repo, PREFIX).await?;
    let outcomes: Vec<(u64, Result<Lease, LeaseError>)> = by_rest
        .iter()
        .map(|observed| (observed.issue, observed.lease.clone()))
        .collect();
    assert_eq!(outcomes.len(), 6, "{outcomes:?}");
    assert_eq!(outcomes[0], (1, Ok(good)));
    assert!(
        matches!(&outcomes[1], (2, Err(LeaseError::NotJson { .. }))),
        "{:?}",
        outcomes[1]
    );
    assert_eq!(
        outcomes[2],
        (3, Err(LeaseError::NewerVersion { found: 2, known: 1 }))
    );
    assert_eq!(
        outcomes[3],
        (
            4,
            Err(LeaseError::IssueMismatch {
                ref_issue: 4,
                lease_issue: 40
            })
        )
    );
    assert_eq!(
        outcomes[4],
        (
            5,
            Err(LeaseError::NotACommit {
                kind: "tree".to_string()
            })
        )
    );
    assert_eq!(
        outcomes[5],
        (6, Err(LeaseError::MissingField { field: "attempt" }))
    );
    assert_eq!(by_rest[4].sha, tree);
    assert!(
        by_rest[2].lease.as_ref().err().is_some_and(|error| error
            .to_string()
            .contains("newer than this crew understands")),
        "a newer lease says so plainly"
    );

    let by_graphql = github.leases_graphql(&repo, PREFIX).await?;
    assert_eq!(by_graphql, by_rest);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_github_cannot_find_is_reported_for_that_lease_only() -> TestResult {
    let emulator = crate::support::emulator().await?;
    let control = Control::new(&emulator)?;
    let repo = widgets()?;
    let github = client(&emulator, BOT, None)?;
    three_leases(&github).await?;
    control
        .faults(json!([{"route": COMMIT, "fault": "error", "status": 404, "times": 1}]))
        .await?;

    let observed = github.leases(&repo, PREFIX).await?;

    // The one 404 hit whichever commit was fetched first; the other two leases still read.
    let (missing, readable): (Vec<_>, Vec<_>) =
        observed.iter().partition(|lease| lease.lease.is_err());
    assert_eq!((missing.len(), readable.len()), (1, 2), "{observed:?}");
    assert_eq!(
        missing[0].lease,
        Err(LeaseError::MissingCommit {
            sha: missing[0].sha.clone()
        })
    );
    assert_eq!(missing[0].status(now()), None);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_than_a_page_of_leases_is_followed_by_both_readers() -> TestResult {
    let emulator = crate::support::emulator().await?;
    let control = Control::new(&emulator)?;
    let repo = widgets()?;
    let github = client(&emulator, BOT, Some(Cache::in_memory().await?))?;
    for issue in 1..=101 {
        let lease = lease(issue, LeaseState::Held, at(2026, 11, 21, 10, 30));
        write_lease(&github, issue, &render_lease(&lease)).await?;
    }
    control.reset_stats().await?;

    let by_rest = github.leases(&repo, PREFIX).await?;
    assert_eq!(control.requests(MATCHING_REFS).await?, 2);
    let by_graphql = github.leases_graphql(&repo, PREFIX).await?;
    assert_eq!(control.requests(GRAPHQL).await?, 2);

    assert_eq!(by_rest.len(), 101);
    assert_eq!(by_graphql, by_rest);
    assert!(
        by_rest
            .iter()
            .all(|lease| lease.status(now()) == Some(LeaseStatus::Live))
    );

    // Warm: both pages answer 304, no commit is fetched again.
    control.reset_stats().await?;
    assert_eq!(github.leases(&repo, PREFIX).await?, by_rest);
    let stats = control.stats().await?;
    assert_eq!(stats["requests"], 2, "{stats}");
    assert_eq!(stats["not_modified"], 2);
    assert_eq!(stats["rate_points"], 0);
    Ok(())
}
