//! The write side of leases against the emulator, through the client: acquire (fresh, over a
//! released or expired lease, refused while live), renew, release, supersession, garbage and
//! newer formats refused, concurrent acquisitions with exactly one winner, request counts.

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use crew::error::CrewError;
use crew::github::{GitHub, HeldLease, LeaseRequest, LeaseWriteError, RepoSlug};
use crew::protocol::lease::{LEASE_VERSION, LeaseError, LeaseState, LeaseStatus};

use crate::support::{BOT, Control, MAINTAINER, TestResult, client};

const PREFIX: &str = "refs/crew/leases/";

fn widgets() -> TestResult<RepoSlug> {
    Ok("acme/widgets".parse()?)
}

fn at(hour: u32, minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 21, hour, minute, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}

fn ttl() -> TimeDelta {
    TimeDelta::minutes(30)
}

fn request(worker: &str, host: &str, now: DateTime<Utc>) -> LeaseRequest {
    LeaseRequest {
        base: "main".to_string(),
        worker: worker.to_string(),
        host: host.to_string(),
        runtime: "local".to_string(),
        ttl: ttl(),
        now,
    }
}

fn exit_code(error: LeaseWriteError) -> u8 {
    CrewError::from(error).exit_code()
}

/// The ref's tip as `leases()` reads it: (sha, lease).
async fn observed(
    github: &GitHub,
    issue: u64,
) -> TestResult<(String, crew::protocol::lease::Lease)> {
    let all = github.leases(&widgets()?, PREFIX).await?;
    let found = all
        .into_iter()
        .find(|lease| lease.issue == issue)
        .ok_or("lease ref missing")?;
    Ok((found.sha, found.lease?))
}

/// The parent shas of commit `sha`.
async fn parents(github: &GitHub, sha: &str) -> TestResult<Vec<String>> {
    let commit = github.commit(&widgets()?, sha).await?;
    Ok(commit
        .parents
        .into_iter()
        .map(|parent| parent.sha)
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_acquire_is_attempt_one_on_the_base_in_four_requests() -> TestResult {
    let emulator = crate::support::emulator().await?;
    let control = Control::new(&emulator)?;
    let github = client(&emulator, BOT, None)?;
    let repo = widgets()?;
    let main = github.branch(&repo, "main").await?;
    control.reset_stats().await?;

    let held = github
        .acquire_lease(&repo, PREFIX, 7, request("worker-a", "laptop", at(10, 0)))
        .await?;
    let stats = control.stats().await?;
    assert_eq!(stats["requests"], 4, "{stats}");

    assert_eq!(held.lease.attempt, 1);
    assert_eq!(held.lease.v, LEASE_VERSION);
    assert_eq!(held.lease.state, LeaseState::Held);
    assert_eq!(held.lease.expires_at, at(10, 30));
    assert_eq!(held.ref_name, "refs/crew/leases/7");
    assert_eq!(held.tree, main.commit.commit.tree.sha);
    let (sha, lease) = observed(&github, 7).await?;
    assert_eq!(sha, held.sha);
    assert_eq!(lease, held.lease);
    assert_eq!(parents(&github, &sha).await?, vec![main.commit.sha]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acquiring_a_live_lease_loses_with_the_holder_and_writes_nothing() -> TestResult {
    let emulator = crate::support::emulator().await?;
    let control = Control::new(&emulator)?;
    let repo = widgets()?;
    let first = client(&emulator, BOT, None)?;
    let held = first
        .acquire_lease(&repo, PREFIX, 7, request("worker-a", "laptop", at(10, 0)))
        .await?;

    let second = client(&emulator, MAINTAINER, None)?;
    control.reset_stats().await?;
    let error = second
        .acquire_lease(&repo, PREFIX, 7, request("worker-b", "ci", at(10, 29)))
        .await
        .err()
        .ok_or("acquired a live lease")?;
    let stats = control.stats().await?;
    assert_eq!(stats["requests"], 2, "only reads: {stats}");
    match &error {
        LeaseWriteError::LostRace {
            issue: 7,
            holder: Some(holder),
        } => assert_eq!(holder, &held.lease),
        other => return Err(format!("unexpected: {other}").into()),
    }
    let text = error.to_string();
    for part in ["worker-a", "laptop", "2026-11-21T10:30:00Z"] {
        assert!(text.contains(part), "{text}");
    }
    assert_eq!(exit_code(error), 4);
    assert_eq!(observed(&first, 7).await?.0, held.sha);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_then_acquire_is_the_next_attempt_on_the_released_commit() -> TestResult {
    let emulator = crate::support::emulator().await?;
    let control = Control::new(&emulator)?;
    let repo = widgets()?;
    let github = client(&emulator, BOT, None)?;
    let held = github
        .acquire_lease(&repo, PREFIX, 9, request("worker-a", "laptop", at(10, 0)))
        .await?;
    let released = github.release_lease(&repo, &held, at(10, 5)).await?;
    assert_eq!(released.lease.state, LeaseState::Released);
    assert_eq!(
        parents(&github, &released.sha).await?,
        vec![held.sha.clone()]
    );
    let (sha, lease) = observed(&github, 9).await?;
    assert_eq!(
        (sha.as_str(), lease.status(at(10, 6))),
        (released.sha.as_str(), LeaseStatus::Released)
    );
    // Releasing twice is a no-op.
    assert_eq!(
        github.release_lease(&repo, &released, at(10, 6)).await?,
        released
    );

    control.reset_stats().await?;
    let again = github
        .acquire_lease(&repo, PREFIX, 9, request("worker-b", "ci", at(10, 6)))
        .await?;
    let stats = control.stats().await?;
    assert_eq!(stats["requests"], 4, "{stats}");
    assert_eq!(again.lease.attempt, 2);
    assert_eq!(again.lease.worker, "worker-b");
    assert_eq!(parents(&github, &again.sha).await?, vec![released.sha]);
    assert_eq!(
        observed(&github, 9).await?,
        (again.sha.clone(), again.lease)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lease_is_taken_over_and_its_holder_is_superseded() -> TestResult {
    let emulator = crate::support::emulator().await?;
    let repo = widgets()?;
    let a = client(&emulator, BOT, None)?;
    let b = client(&emulator, MAINTAINER, None)?;
    let held = a
        .acquire_lease(&repo, PREFIX, 11, request("worker-a", "laptop", at(10, 0)))
        .await?;

    // Renewal moves expiry forward and chains on our commit.
    let renewed = a.renew_lease(&repo, &held, at(10, 5), ttl()).await?;
    assert_eq!(renewed.lease.expires_at, at(10, 35));
    assert_eq!(renewed.lease.renewed_at, at(10, 5));
    assert_eq!(renewed.lease.acquired_at, at(10, 0));
    assert_eq!(renewed.lease.attempt, 1);
    assert_eq!(parents(&a, &renewed.sha).await?, vec![held.sha.clone()]);
    assert_eq!(
        observed(&a, 11).await?,
        (renewed.sha.clone(), renewed.lease.clone())
    );

    // Still live at 10:34 for someone else; expired at 10:35 (exclusive).
    let error = b
        .acquire_lease(&repo, PREFIX, 11, request("worker-b", "ci", at(10, 34)))
        .await
        .err()
        .ok_or("acquired a live lease")?;
    assert!(matches!(error, LeaseWriteError::LostRace { .. }), "{error}");
    let taken = b
        .acquire_lease(&repo, PREFIX, 11, request("worker-b", "ci", at(10, 35)))
        .await?;
    assert_eq!(taken.lease.attempt, 2);
    assert_eq!(parents(&b, &taken.sha).await?, vec![renewed.sha.clone()]);

    // The old holder's renewal (from the tip it holds) is rejected: superseded, exit 4.
    let error = a
        .renew_lease(&repo, &renewed, at(10, 36), ttl())
        .await
        .err()
        .ok_or("renewed a lease someone else holds")?;
    match &error {
        LeaseWriteError::Superseded {
            issue: 11,
            attempt: 1,
            current: Some(current),
        } => assert_eq!(current, &taken.lease),
        other => return Err(format!("unexpected: {other}").into()),
    }
    assert_eq!(exit_code(error), 4);
    // So is its release, and neither moved the ref.
    let error = a
        .release_lease(&repo, &renewed, at(10, 36))
        .await
        .err()
        .ok_or("released a lease someone else holds")?;
    assert!(
        matches!(error, LeaseWriteError::Superseded { .. }),
        "{error}"
    );
    assert_eq!(
        observed(&a, 11).await?,
        (taken.sha.clone(), taken.lease.clone())
    );

    // The new holder renews fine.
    let renewed_b = b.renew_lease(&repo, &taken, at(10, 40), ttl()).await?;
    assert_eq!(renewed_b.lease.expires_at, at(11, 10));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_newer_leases_are_refused_without_writing() -> TestResult {
    let emulator = crate::support::emulator().await?;
    let control = Control::new(&emulator)?;
    let repo = widgets()?;
    let github = client(&emulator, BOT, None)?;
    let main = github.branch(&repo, "main").await?;
    let cases = [
        (21, "WIP: not a lease".to_string()),
        (
            22,
            r#"{"v":2,"issue":22,"holder":"a newer crew"}"#.to_string(),
        ),
    ];
    for (issue, message) in &cases {
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
    }
    control.reset_stats().await?;
    for (issue, _) in &cases {
        let error = github
            .acquire_lease(
                &repo,
                PREFIX,
                *issue,
                request("worker-a", "laptop", at(10, 0)),
            )
            .await
            .err()
            .ok_or("overwrote an unreadable lease")?;
        match (&error, issue) {
            (
                LeaseWriteError::Unreadable {
                    error: LeaseError::NotJson { .. },
                    ..
                },
                21,
            ) => {}
            (
                LeaseWriteError::Unreadable {
                    error: LeaseError::NewerVersion { found: 2, known: 1 },
                    ..
                },
                22,
            ) => assert!(error.to_string().contains("upgrade crew"), "{error}"),
            (other, _) => return Err(format!("unexpected for #{issue}: {other}").into()),
        }
        assert_eq!(exit_code(error), 1);
    }
    let stats = control.stats().await?;
    let writes: u64 = [
        "POST /repos/{owner}/{repo}/git/commits",
        "PATCH /repos/{owner}/{repo}/git/refs/{ref}",
    ]
    .iter()
    .map(|route| stats["by_route"][route]["requests"].as_u64().unwrap_or(0))
    .sum();
    assert_eq!(writes, 0, "{stats}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_ref_write_response_is_recognised_as_applied() -> TestResult {
    let emulator = crate::support::emulator().await?;
    let control = Control::new(&emulator)?;
    let repo = widgets()?;
    let github = client(&emulator, BOT, None)?;
    control
        .faults(serde_json::json!([
            {"route": "POST /repos/{owner}/{repo}/git/refs", "fault": "drop_after_write", "times": 1},
            {"route": "PATCH /repos/{owner}/{repo}/git/refs/{ref}", "fault": "drop_after_write", "times": 1},
        ]))
        .await?;
    let held = github
        .acquire_lease(&repo, PREFIX, 13, request("worker-a", "laptop", at(10, 0)))
        .await?;
    assert_eq!(
        observed(&github, 13).await?,
        (held.sha.clone(), held.lease.clone())
    );
    let renewed = github.renew_lease(&repo, &held, at(10, 5), ttl()).await?;
    assert_eq!(
        observed(&github, 13).await?,
        (renewed.sha.clone(), renewed.lease.clone())
    );
    control.clear_faults().await?;
    // Each ref write was sent once: the retry found it applied (a re-read) instead.
    let stats = control.stats().await?;
    assert_eq!(
        stats["by_route"]["POST /repos/{owner}/{repo}/git/refs"]["requests"],
        1
    );
    assert_eq!(
        stats["by_route"]["PATCH /repos/{owner}/{repo}/git/refs/{ref}"]["requests"],
        1
    );
    assert_eq!(
        stats["by_route"]["GET /repos/{owner}/{repo}/git/ref/{ref}"]["requests"], 3,
        "one read before acquiring, one check per dropped write: {stats}"
    );
    Ok(())
}

/// One race: eight orchestrators (separate clients) acquire `issue` at `now`, at once. Returns
/// the winner after checking that the other seven lost to it and that the ref is the winner's
/// commit directly on `parent`.
async fn race(
    emulator: &crate::support::TestEmulator,
    issue: u64,
    now: DateTime<Utc>,
    parent: &str,
) -> TestResult<HeldLease> {
    let repo = widgets()?;
    let mut tasks = Vec::new();
    for n in 0..8 {
        let github = client(emulator, if n % 2 == 0 { BOT } else { MAINTAINER }, None)?;
        let repo = repo.clone();
        tasks.push(tokio::spawn(async move {
            github
                .acquire_lease(
                    &repo,
                    PREFIX,
                    issue,
                    request(&format!("worker-{n}"), &format!("host-{n}"), now),
                )
                .await
        }));
    }
    let mut winners = Vec::new();
    let mut holders = Vec::new();
    for task in tasks {
        match task.await? {
            Ok(held) => winners.push(held),
            Err(LeaseWriteError::LostRace {
                issue: lost,
                holder: Some(holder),
            }) => {
                assert_eq!(lost, issue);
                holders.push(holder);
            }
            Err(other) => return Err(format!("issue #{issue}: unexpected {other}").into()),
        }
    }
    assert_eq!((winners.len(), holders.len()), (1, 7), "issue #{issue}");
    let winner = winners.pop().ok_or("no winner")?;
    assert!(holders.iter().all(|holder| holder == &winner.lease));
    // Exactly one chain: the ref is the winner's commit, directly on `parent`.
    let github = client(emulator, BOT, None)?;
    assert_eq!(
        observed(&github, issue).await?,
        (winner.sha.clone(), winner.lease.clone())
    );
    assert_eq!(
        parents(&github, &winner.sha).await?,
        vec![parent.to_string()]
    );
    Ok(winner)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_concurrent_acquisitions_have_exactly_one_winner_ten_times_fresh_and_over_an_expired_lease()
-> TestResult {
    let emulator = crate::support::emulator().await?;
    let github = client(&emulator, BOT, None)?;
    let main = github.branch(&widgets()?, "main").await?;
    for issue in 100..110 {
        let first = race(&emulator, issue, at(10, 0), &main.commit.sha).await?;
        assert_eq!(first.lease.attempt, 1);
        // Once it expired, eight take-overs race on the fast-forward: again one winner.
        let second = race(&emulator, issue, at(10, 30), &first.sha).await?;
        assert_eq!(second.lease.attempt, 2);
    }
    let all = github.leases(&widgets()?, PREFIX).await?;
    assert_eq!(all.len(), 10);
    assert!(
        all.iter()
            .all(|lease| lease.status(at(10, 1)) == Some(LeaseStatus::Live))
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_warm_cache_a_live_lease_costs_one_request_to_refuse() -> TestResult {
    let emulator = crate::support::emulator().await?;
    let control = Control::new(&emulator)?;
    let repo = widgets()?;
    let dir = tempfile::tempdir()?;
    let cache = crew::cache::Cache::open(&dir.path().join("cache.sqlite3")).await?;
    let github = client(&emulator, BOT, Some(cache))?;
    let held = github
        .acquire_lease(&repo, PREFIX, 15, request("worker-a", "laptop", at(10, 0)))
        .await?;

    control.reset_stats().await?;
    let error = github
        .acquire_lease(&repo, PREFIX, 15, request("worker-b", "laptop", at(10, 1)))
        .await
        .err()
        .ok_or("acquired a live lease")?;
    assert!(matches!(error, LeaseWriteError::LostRace { .. }), "{error}");
    let stats = control.stats().await?;
    assert_eq!(stats["requests"], 1, "{stats}");

    control.reset_stats().await?;
    let taken = github
        .acquire_lease(&repo, PREFIX, 15, request("worker-b", "laptop", at(10, 30)))
        .await?;
    let stats = control.stats().await?;
    assert_eq!(stats["requests"], 4, "{stats}");
    assert_eq!(taken.lease.attempt, 2);
    assert_eq!(taken.tree, held.tree);
    assert_eq!(parents(&github, &taken.sha).await?, vec![held.sha]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_of_one_attempt_both_renew_and_reclaim_fences_other_attempts() -> TestResult {
    let emulator = crate::support::emulator().await?;
    let repo = widgets()?;
    // The supervisor and the agent's `crew heartbeat`: one worker, one attempt, two processes.
    let supervisor = client(&emulator, BOT, None)?;
    let agent = client(&emulator, BOT, None)?;
    let held = supervisor
        .acquire_lease(&repo, PREFIX, 12, request("worker-a", "laptop", at(10, 0)))
        .await?;

    // The agent reclaims the lease at its tip and renews from there.
    let reclaimed = agent
        .reclaim_lease(&repo, PREFIX, 12, "worker-a", 1)
        .await?;
    assert_eq!(reclaimed, held);
    let by_agent = agent
        .renew_lease(&repo, &reclaimed, at(10, 3), ttl())
        .await?;

    // The supervisor still holds the older tip: its renewal must not be mistaken for a loss.
    let by_supervisor = supervisor
        .renew_lease(&repo, &held, at(10, 5), ttl())
        .await?;
    assert_eq!(by_supervisor.lease.renewed_at, at(10, 5));
    assert_eq!(
        parents(&supervisor, &by_supervisor.sha).await?,
        vec![by_agent.sha.clone()],
        "the retry chains on the agent's commit"
    );
    assert_eq!(
        observed(&agent, 12).await?,
        (by_supervisor.sha.clone(), by_supervisor.lease.clone())
    );

    // Released by one writer: the other's renewal from an older tip is now a loss.
    let released = agent.release_lease(&repo, &by_agent, at(10, 6)).await?;
    assert_eq!(released.lease.state, LeaseState::Released);
    let error = supervisor
        .renew_lease(&repo, &by_supervisor, at(10, 7), ttl())
        .await
        .err()
        .ok_or("renewed a released lease")?;
    assert!(
        matches!(error, LeaseWriteError::Superseded { .. }),
        "{error}"
    );

    // Reclaim fences: another worker or attempt is superseded (exit 4); a missing ref too.
    for (worker, attempt) in [("worker-b", 1), ("worker-a", 2)] {
        let error = agent
            .reclaim_lease(&repo, PREFIX, 12, worker, attempt)
            .await
            .err()
            .ok_or("reclaimed someone else's lease")?;
        assert!(
            matches!(error, LeaseWriteError::Superseded { .. }),
            "{error}"
        );
        assert_eq!(exit_code(error), 4);
    }
    let error = agent
        .reclaim_lease(&repo, PREFIX, 13, "worker-a", 1)
        .await
        .err()
        .ok_or("reclaimed a lease that does not exist")?;
    assert!(
        matches!(error, LeaseWriteError::Superseded { current: None, .. }),
        "{error}"
    );
    // Released but ours: reclaim returns it, released, for the caller to judge.
    let again = agent
        .reclaim_lease(&repo, PREFIX, 12, "worker-a", 1)
        .await?;
    assert_eq!(again.lease.state, LeaseState::Released);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_base_tip_spares_the_branch_read_and_an_unknown_one_falls_back() -> TestResult {
    let emulator = crate::support::emulator().await?;
    let control = Control::new(&emulator)?;
    let repo = widgets()?;
    let github = client(&emulator, BOT, None)?;
    let main = github.branch(&repo, "main").await?;
    let known = crew::github::BaseTip {
        commit: main.commit.sha.clone(),
        tree: main.commit.commit.tree.sha.clone(),
    };
    control.reset_stats().await?;
    let held = github
        .acquire_lease_from(
            &repo,
            PREFIX,
            21,
            request("worker-a", "laptop", at(10, 0)),
            Some(known),
        )
        .await?;
    assert_eq!(
        parents(&github, &held.sha).await?,
        vec![main.commit.sha.clone()]
    );
    assert_eq!(
        control
            .requests("GET /repos/{owner}/{repo}/branches/{branch}")
            .await?,
        0
    );
    // A tip GitHub has never seen (a rewritten branch): the branch is read after all.
    let unknown = crew::github::BaseTip {
        commit: "0123456789012345678901234567890123456789".to_owned(),
        tree: main.commit.commit.tree.sha.clone(),
    };
    let held = github
        .acquire_lease_from(
            &repo,
            PREFIX,
            22,
            request("worker-b", "laptop", at(10, 0)),
            Some(unknown),
        )
        .await?;
    assert_eq!(parents(&github, &held.sha).await?, vec![main.commit.sha]);
    assert_eq!(held.lease.attempt, 1);
    Ok(())
}
