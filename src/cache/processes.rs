//! The process table: which worker supervisors this host started, for the repository of this
//! cache (the `processes` table of migration 2).
//!
//! Decisions, and why:
//! - **A hint, never the only record.** The same facts are in each worktree's `.crew/worker.json`
//!   (written by the supervisor itself), and reconciling scans the worktrees too: a row that is
//!   missing (a deleted cache, a dispatch killed between spawning the supervisor and recording
//!   it) must never hide a worker. What the row adds is the supervisor's identity from the very
//!   moment it was spawned, before it has written anything, and a record that outlives a removed
//!   worktree.
//! - **Identity is pid plus start time** (see [`crate::worker::process`]); the start time is
//!   stored as decimal text, as the schema declares it, and compared, never interpreted. A row
//!   whose start time cannot be read back has no identity and is never signalled.
//! - **Keyed by worker id**: a worker id names one attempt, so recording the same worker again
//!   (a repeated dispatch step) replaces its row instead of adding a second one.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use rusqlite::{Row, params};

use super::{Cache, CacheError, timestamp};

/// One worker's supervisor as this host started it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessRow {
    /// The worker id (`worker-<unix time>-<issue>`), as in the lease and events.
    pub worker_id: String,
    pub issue: u64,
    pub attempt: u32,
    /// The supervisor's pid.
    pub pid: Option<u32>,
    /// The supervisor's start time as the OS reports it (see
    /// [`crate::worker::ProcessIdentity`]).
    pub start_time: Option<u64>,
    /// When it was started.
    pub started_at: DateTime<Utc>,
    /// The agent's log (`.crew/logs/<worker>.log`).
    pub log_path: Option<PathBuf>,
    pub worktree: Option<PathBuf>,
    pub agent: Option<String>,
    /// `local` (a detached supervisor on this host).
    pub runtime: Option<String>,
}

impl Cache {
    /// Records (or replaces) the row of `row.worker_id`. `crew dispatch` calls this right after
    /// spawning the supervisor.
    pub async fn record_process(&self, row: &ProcessRow) -> Result<(), CacheError> {
        let row = row.clone();
        self.call(move |connection| {
            connection.execute(
                "INSERT INTO processes
                    (worker_id, issue, attempt, pid, start_time, started_at, log_path, worktree,
                     agent, runtime)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                 ON CONFLICT(worker_id) DO UPDATE SET
                    issue = excluded.issue, attempt = excluded.attempt, pid = excluded.pid,
                    start_time = excluded.start_time, started_at = excluded.started_at,
                    log_path = excluded.log_path, worktree = excluded.worktree,
                    agent = excluded.agent, runtime = excluded.runtime",
                params![
                    row.worker_id,
                    row.issue as i64,
                    row.attempt,
                    row.pid,
                    row.start_time.map(|start| start.to_string()),
                    timestamp(row.started_at),
                    row.log_path.map(|path| path.to_string_lossy().into_owned()),
                    row.worktree.map(|path| path.to_string_lossy().into_owned()),
                    row.agent,
                    row.runtime,
                ],
            )?;
            Ok(())
        })
        .await
    }

    /// Every recorded process, by issue then worker id.
    pub async fn processes(&self) -> Result<Vec<ProcessRow>, CacheError> {
        self.call(|connection| {
            let mut statement = connection.prepare(
                "SELECT worker_id, issue, attempt, pid, start_time, started_at, log_path,
                        worktree, agent, runtime
                 FROM processes ORDER BY issue, worker_id",
            )?;
            let rows = statement.query_map([], process_row)?;
            rows.collect()
        })
        .await
    }

    /// Forgets the row of `worker_id`; true when there was one.
    pub async fn forget_process(&self, worker_id: &str) -> Result<bool, CacheError> {
        let worker_id = worker_id.to_owned();
        self.call(move |connection| {
            connection
                .execute(
                    "DELETE FROM processes WHERE worker_id = ?1",
                    params![worker_id],
                )
                .map(|deleted| deleted > 0)
        })
        .await
    }
}

fn process_row(row: &Row<'_>) -> rusqlite::Result<ProcessRow> {
    let started_at: String = row.get(5)?;
    let start_time: Option<String> = row.get(4)?;
    Ok(ProcessRow {
        worker_id: row.get(0)?,
        issue: row.get::<_, i64>(1)?.max(0) as u64,
        attempt: row.get(2)?,
        pid: row.get(3)?,
        start_time: start_time.and_then(|text| text.parse().ok()),
        // A row is only ever written by `record_process`; an unreadable time is a hand-edited
        // file, and the oldest possible time is the safe reading (never "just started").
        started_at: DateTime::parse_from_rfc3339(&started_at)
            .map(|at| at.to_utc())
            .unwrap_or(DateTime::<Utc>::UNIX_EPOCH),
        log_path: row.get::<_, Option<String>>(6)?.map(PathBuf::from),
        worktree: row.get::<_, Option<String>>(7)?.map(PathBuf::from),
        agent: row.get(8)?,
        runtime: row.get(9)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(worker: &str, issue: u64, pid: u32) -> ProcessRow {
        ProcessRow {
            worker_id: worker.to_owned(),
            issue,
            attempt: 1,
            pid: Some(pid),
            start_time: Some(u64::MAX - 1),
            started_at: DateTime::parse_from_rfc3339("2026-11-21T10:00:00Z")
                .map(|at| at.to_utc())
                .unwrap_or_default(),
            log_path: Some(PathBuf::from("/w/.crew/logs/x.log")),
            worktree: Some(PathBuf::from("/w")),
            agent: Some("claude".to_owned()),
            runtime: Some("local".to_owned()),
        }
    }

    #[tokio::test]
    async fn processes_are_recorded_replaced_listed_and_forgotten() -> Result<(), CacheError> {
        let cache = Cache::in_memory().await?;
        assert!(cache.processes().await?.is_empty());
        cache.record_process(&row("worker-2-9", 9, 20)).await?;
        cache.record_process(&row("worker-1-3", 3, 10)).await?;
        let replacement = ProcessRow {
            attempt: 2,
            pid: Some(11),
            start_time: None,
            ..row("worker-1-3", 3, 10)
        };
        cache.record_process(&replacement).await?;
        let rows = cache.processes().await?;
        assert_eq!(rows, vec![replacement, row("worker-2-9", 9, 20)]);
        assert!(cache.forget_process("worker-2-9").await?);
        assert!(!cache.forget_process("worker-2-9").await?);
        assert_eq!(cache.processes().await?.len(), 1);
        Ok(())
    }
}
