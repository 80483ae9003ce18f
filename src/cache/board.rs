//! What crew knows of the project board per issue (the `project_items` table of migration 3):
//! the item's node id, the status crew last wrote, and a status whose write failed.
//!
//! Decisions, and why:
//! - **Written by crew's own board writes, never by reading the board.** Reading a project's
//!   items costs a GraphQL query that cannot be conditional, so a warm cycle cannot afford it
//!   (DESIGN.md 7: 0 rate points). Instead each successful status write records what it wrote,
//!   and each failed one records what it wanted; the next fill or loop cycle compares those rows
//!   with the folded states it already has and writes only where they differ
//!   ([`crate::schedule::repair_board`]). An issue crew never wrote has no row and is never
//!   touched: the board is not swept.
//! - **The item id saves the item query.** With the id known, a status write is one mutation
//!   instead of a query and a mutation. The id can go stale (someone removed the card on
//!   GitHub); the writer then forgets it and takes the full path (query, add, set).
//! - **The project's ids are kept too** (`board_projects`: project, status field and option
//!   ids as JSON), so a process that knows the item skips resolving the project as well; a
//!   stale id fails the write, and the writer resolves the project again.
//! - **Keyed by project and issue.** The project is named as configured (`owner/number`), so a
//!   row written for another project, after `[project]` changed, is simply not found.
//! - **Disposable like the rest.** A lost row only means a failed write is not retried by this
//!   host; the next transition of the issue writes the status again anyway.

use rusqlite::{OptionalExtension, Row, params};

use super::{Cache, CacheError};

/// One issue's row for one project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoardRow {
    pub issue: u64,
    /// The issue's project item, once a write learnt it.
    pub item_id: Option<String>,
    /// The status (option name) crew last wrote or found already set.
    pub status: Option<String>,
    /// A status whose write failed and is still owed.
    pub wanted: Option<String>,
}

impl Cache {
    /// The row of `issue` on `project`, if crew ever wrote its status here.
    pub async fn board_row(
        &self,
        project: &str,
        issue: u64,
    ) -> Result<Option<BoardRow>, CacheError> {
        let project = project.to_string();
        self.call(move |connection| {
            connection
                .query_row(
                    "SELECT issue, item_id, status, wanted FROM project_items
                     WHERE project = ?1 AND issue = ?2",
                    params![project, issue as i64],
                    board_row,
                )
                .optional()
        })
        .await
    }

    /// Every row of `project`, by issue number.
    pub async fn board_rows(&self, project: &str) -> Result<Vec<BoardRow>, CacheError> {
        let project = project.to_string();
        self.call(move |connection| {
            let mut statement = connection.prepare(
                "SELECT issue, item_id, status, wanted FROM project_items
                 WHERE project = ?1 ORDER BY issue",
            )?;
            let rows = statement.query_map(params![project], board_row)?;
            rows.collect()
        })
        .await
    }

    /// Records that `issue`'s item on `project` has `status` (written or found so), and its id
    /// when known; clears any owed write.
    pub async fn record_board_status(
        &self,
        project: &str,
        issue: u64,
        item_id: Option<&str>,
        status: &str,
    ) -> Result<(), CacheError> {
        let (project, item_id, status) = (
            project.to_string(),
            item_id.map(str::to_string),
            status.to_string(),
        );
        self.call(move |connection| {
            connection.execute(
                "INSERT INTO project_items (project, issue, item_id, status, wanted)
                 VALUES (?1, ?2, ?3, ?4, NULL)
                 ON CONFLICT(project, issue) DO UPDATE SET
                    item_id = COALESCE(excluded.item_id, project_items.item_id),
                    status = excluded.status, wanted = NULL",
                params![project, issue as i64, item_id, status],
            )?;
            Ok(())
        })
        .await
    }

    /// Records that writing `wanted` to `issue`'s item failed: the next cycle owes it.
    pub async fn record_board_wanted(
        &self,
        project: &str,
        issue: u64,
        wanted: &str,
    ) -> Result<(), CacheError> {
        let (project, wanted) = (project.to_string(), wanted.to_string());
        self.call(move |connection| {
            connection.execute(
                "INSERT INTO project_items (project, issue, item_id, status, wanted)
                 VALUES (?1, ?2, NULL, NULL, ?3)
                 ON CONFLICT(project, issue) DO UPDATE SET wanted = excluded.wanted",
                params![project, issue as i64, wanted],
            )?;
            Ok(())
        })
        .await
    }

    /// The stored node ids of `project` (JSON, as [`Cache::store_board_ids`] got them).
    pub async fn board_ids(&self, project: &str) -> Result<Option<String>, CacheError> {
        let project = project.to_string();
        self.call(move |connection| {
            connection
                .query_row(
                    "SELECT ids FROM board_projects WHERE project = ?1",
                    params![project],
                    |row| row.get(0),
                )
                .optional()
        })
        .await
    }

    /// Stores (or, with `None`, forgets) the node ids of `project`.
    pub async fn store_board_ids(
        &self,
        project: &str,
        ids: Option<&str>,
    ) -> Result<(), CacheError> {
        let (project, ids) = (project.to_string(), ids.map(str::to_string));
        self.call(move |connection| {
            match ids {
                Some(ids) => connection.execute(
                    "INSERT INTO board_projects (project, ids) VALUES (?1, ?2)
                     ON CONFLICT(project) DO UPDATE SET ids = excluded.ids",
                    params![project, ids],
                )?,
                None => connection.execute(
                    "DELETE FROM board_projects WHERE project = ?1",
                    params![project],
                )?,
            };
            Ok(())
        })
        .await
    }

    /// Forgets `issue`'s item id (GitHub no longer has that item); the rest of the row stays.
    pub async fn forget_board_item(&self, project: &str, issue: u64) -> Result<(), CacheError> {
        let project = project.to_string();
        self.call(move |connection| {
            connection.execute(
                "UPDATE project_items SET item_id = NULL WHERE project = ?1 AND issue = ?2",
                params![project, issue as i64],
            )?;
            Ok(())
        })
        .await
    }
}

fn board_row(row: &Row<'_>) -> rusqlite::Result<BoardRow> {
    Ok(BoardRow {
        issue: row.get::<_, i64>(0)? as u64,
        item_id: row.get(1)?,
        status: row.get(2)?,
        wanted: row.get(3)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writes_and_owed_writes_are_recorded_per_project() -> Result<(), CacheError> {
        let cache = Cache::in_memory().await?;
        assert_eq!(cache.board_row("acme/1", 3).await?, None);
        cache
            .record_board_wanted("acme/1", 3, "In Progress")
            .await?;
        let owed = BoardRow {
            issue: 3,
            item_id: None,
            status: None,
            wanted: Some("In Progress".to_string()),
        };
        assert_eq!(cache.board_row("acme/1", 3).await?, Some(owed));
        cache
            .record_board_status("acme/1", 3, Some("PVTI_1"), "In Progress")
            .await?;
        // A later write without an id keeps the known one.
        cache
            .record_board_status("acme/1", 3, None, "In Review")
            .await?;
        let written = BoardRow {
            issue: 3,
            item_id: Some("PVTI_1".to_string()),
            status: Some("In Review".to_string()),
            wanted: None,
        };
        assert_eq!(cache.board_row("acme/1", 3).await?, Some(written.clone()));
        cache.record_board_wanted("acme/1", 3, "Done").await?;
        cache.forget_board_item("acme/1", 3).await?;
        let rows = cache.board_rows("acme/1").await?;
        assert_eq!(
            rows,
            [BoardRow {
                item_id: None,
                wanted: Some("Done".to_string()),
                ..written
            }]
        );
        assert!(cache.board_rows("acme/2").await?.is_empty());
        assert_eq!(cache.board_ids("acme/1").await?, None);
        cache.store_board_ids("acme/1", Some("{}")).await?;
        assert_eq!(cache.board_ids("acme/1").await?.as_deref(), Some("{}"));
        cache.store_board_ids("acme/1", None).await?;
        assert_eq!(cache.board_ids("acme/1").await?, None);
        Ok(())
    }
}
