//! The mirror of GitHub that [`crate::sync`] fills: issues, event comments, sync cursors.
//!
//! Rows are written only through [`Cache::apply_mirror`], one transaction per sync pass, so the
//! rows and the cursors that say how far they reach always move together: a crash mid-sync leaves
//! the previous consistent state (the next pass re-reads what was lost).
//!
//! Writes never go backwards and never touch a row for nothing: an upsert only changes a row when
//! GitHub's `updated_at` is not older than the stored one and something differs, so a page applied
//! twice (a 304 answers with the stored body) counts no change, and a stale copy of a comment can
//! never overwrite a newer edit.
//!
//! Only comments that carry a crew marker (or the worker-dispatch skill's legacy JSON) are kept:
//! issues without crew events cost one row each, their other comments nothing. Deleted issues and
//! comments are not seen by an incremental sync (GitHub's lists only show what exists); they stay
//! here until a rebuild (`crew cache rebuild`, or deleting the file) drops them.

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{Cache, CacheError};

/// `meta` key naming what the mirror mirrors (`<api url> <owner>/<repo>`).
const SOURCE_KEY: &str = "mirror.source";

/// A GitHub timestamp as the cache stores it: RFC 3339, UTC, whole seconds, `Z`.
pub fn timestamp(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// One issue (or pull request) as GitHub last showed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueRow {
    pub number: u64,
    pub id: u64,
    pub title: String,
    /// `open` or `closed`.
    pub state: String,
    /// Label names, in GitHub's order.
    pub labels: Vec<String>,
    pub author: Option<String>,
    pub author_association: Option<String>,
    pub body: Option<String>,
    pub is_pull_request: bool,
    /// GitHub's comment count (all comments, not only the stored ones).
    pub comments: u64,
    pub created_at: String,
    pub updated_at: String,
    pub closed_at: Option<String>,
}

/// One comment that carries a crew marker (or a legacy one), raw: parsing and trust are the
/// protocol's business, so a marker this build cannot read is still kept for a newer one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommentRow {
    pub id: u64,
    pub issue: u64,
    pub author: Option<String>,
    /// GitHub's `author_association` (`OWNER`, `MEMBER`, `COLLABORATOR`, `NONE`, …).
    pub association: Option<String>,
    pub body: String,
    pub created_at: String,
    pub updated_at: String,
}

/// How far one list has been synced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CursorRow {
    pub name: String,
    /// The newest `updated_at` seen on the list (GitHub's clock, whole seconds).
    pub since: String,
    /// When this host last completed a pass over the list (this host's clock).
    pub synced_at: String,
}

/// What one sync pass found, applied atomically by [`Cache::apply_mirror`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MirrorUpdate {
    /// What is mirrored (`<api url> <owner>/<repo>`); a different value than the stored one
    /// empties the mirror first.
    pub source: String,
    pub issues: Vec<IssueRow>,
    /// Comments that carry a marker: upserted.
    pub event_comments: Vec<CommentRow>,
    /// `(id, updated_at)` of comments without a marker: removed if stored (an edit took the
    /// marker out), never stored.
    pub plain_comments: Vec<(u64, String)>,
    /// `(name, since)` of the lists this pass completed.
    pub cursors: Vec<(String, String)>,
    /// This host's clock, for the cursors' `synced_at`.
    pub synced_at: String,
}

/// Rows [`Cache::apply_mirror`] actually changed (inserted, updated or removed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MirrorChanges {
    pub issues: usize,
    pub comments: usize,
}

impl Cache {
    /// Applies one sync pass in one transaction (see the module documentation).
    pub async fn apply_mirror(&self, update: MirrorUpdate) -> Result<MirrorChanges, CacheError> {
        self.call(move |connection| apply(connection, &update))
            .await
    }

    /// What the mirror mirrors, if it was ever filled.
    pub async fn mirror_source(&self) -> Result<Option<String>, CacheError> {
        self.meta(SOURCE_KEY).await
    }

    /// Empties the mirror (issues, comments, cursors), keeping ETags, lease commits (immutable,
    /// keyed by sha), the board rows (what this host wrote or owes the board, which no sync
    /// brings back; see `board`) and the process table; the next sync is cold.
    pub async fn clear_mirror(&self) -> Result<(), CacheError> {
        self.call(|connection| {
            let transaction = connection.transaction()?;
            clear(&transaction)?;
            transaction.commit()
        })
        .await
    }

    /// The cursor of list `name`, if a pass over it ever completed.
    pub async fn sync_cursor(&self, name: &str) -> Result<Option<CursorRow>, CacheError> {
        let name = name.to_string();
        self.call(move |connection| {
            connection
                .query_row(
                    "SELECT name, since, synced_at FROM sync_cursors WHERE name = ?1",
                    params![name],
                    |row| {
                        Ok(CursorRow {
                            name: row.get(0)?,
                            since: row.get(1)?,
                            synced_at: row.get(2)?,
                        })
                    },
                )
                .optional()
        })
        .await
    }

    /// Every mirrored issue and pull request, by number.
    pub async fn issues(&self) -> Result<Vec<IssueRow>, CacheError> {
        self.call(|connection| {
            let mut statement = connection.prepare(&format!(
                "SELECT {ISSUE_COLUMNS} FROM issues ORDER BY number"
            ))?;
            let rows = statement.query_map([], issue_row)?;
            rows.collect()
        })
        .await
    }

    /// One mirrored issue.
    pub async fn issue(&self, number: u64) -> Result<Option<IssueRow>, CacheError> {
        self.call(move |connection| {
            connection
                .query_row(
                    &format!("SELECT {ISSUE_COLUMNS} FROM issues WHERE number = ?1"),
                    params![number as i64],
                    issue_row,
                )
                .optional()
        })
        .await
    }

    /// Stored event comments, in comment-id order (the fold's order): of one issue, or all.
    pub async fn event_comments(&self, issue: Option<u64>) -> Result<Vec<CommentRow>, CacheError> {
        self.call(move |connection| {
            let sql = format!(
                "SELECT {COMMENT_COLUMNS} FROM comments
                 WHERE ?1 IS NULL OR issue = ?1 ORDER BY id"
            );
            let mut statement = connection.prepare(&sql)?;
            let rows = statement.query_map(params![issue.map(|n| n as i64)], comment_row)?;
            rows.collect()
        })
        .await
    }

    /// The message of lease commit `sha`, if stored (commits are immutable, so never stale).
    pub async fn lease_commit(&self, sha: &str) -> Result<Option<String>, CacheError> {
        let sha = sha.to_string();
        self.call(move |connection| {
            connection
                .query_row(
                    "SELECT message FROM lease_commits WHERE sha = ?1",
                    params![sha],
                    |row| row.get(0),
                )
                .optional()
        })
        .await
    }

    /// Remembers the message of lease commit `sha`.
    pub async fn store_lease_commit(&self, sha: &str, message: &str) -> Result<(), CacheError> {
        let (sha, message) = (sha.to_string(), message.to_string());
        self.call(move |connection| {
            connection.execute(
                "INSERT INTO lease_commits (sha, message) VALUES (?1, ?2)
                 ON CONFLICT(sha) DO NOTHING",
                params![sha, message],
            )?;
            Ok(())
        })
        .await
    }

    /// A `meta` value.
    pub async fn meta(&self, key: &str) -> Result<Option<String>, CacheError> {
        let key = key.to_string();
        self.call(move |connection| {
            connection
                .query_row(
                    "SELECT value FROM meta WHERE key = ?1",
                    params![key],
                    |row| row.get(0),
                )
                .optional()
        })
        .await
    }

    /// Sets a `meta` value.
    pub async fn set_meta(&self, key: &str, value: &str) -> Result<(), CacheError> {
        let (key, value) = (key.to_string(), value.to_string());
        self.call(move |connection| {
            connection.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )?;
            Ok(())
        })
        .await
    }

    /// Everything rebuildable from GitHub, as deterministic text: two caches that mirror the same
    /// GitHub state dump identically, whatever their history (local clocks and ETags left out).
    pub async fn mirror_dump(&self) -> Result<String, CacheError> {
        self.call(|connection| {
            let mut out = String::new();
            for (table, sql) in [
                (
                    "issues",
                    format!("SELECT {ISSUE_COLUMNS} FROM issues ORDER BY number"),
                ),
                (
                    "comments",
                    format!("SELECT {COMMENT_COLUMNS} FROM comments ORDER BY id"),
                ),
                (
                    "sync_cursors",
                    "SELECT name, since FROM sync_cursors ORDER BY name".to_string(),
                ),
                (
                    "lease_commits",
                    "SELECT sha, message FROM lease_commits ORDER BY sha".to_string(),
                ),
                (
                    "meta",
                    "SELECT key, value FROM meta ORDER BY key".to_string(),
                ),
            ] {
                dump_table(connection, table, &sql, &mut out)?;
            }
            Ok(out)
        })
        .await
    }
}

const ISSUE_COLUMNS: &str = "number, id, title, state, labels, author, author_association, body, \
                             is_pull_request, comments, created_at, updated_at, closed_at";

const COMMENT_COLUMNS: &str = "id, issue, author, association, body, created_at, updated_at";

fn issue_row(row: &Row<'_>) -> rusqlite::Result<IssueRow> {
    let labels: String = row.get(4)?;
    let labels = serde_json::from_str(&labels).map_err(|error| {
        rusqlite::Error::FromSqlConversionFailure(4, rusqlite::types::Type::Text, Box::new(error))
    })?;
    Ok(IssueRow {
        number: row.get::<_, i64>(0)? as u64,
        id: row.get::<_, i64>(1)? as u64,
        title: row.get(2)?,
        state: row.get(3)?,
        labels,
        author: row.get(5)?,
        author_association: row.get(6)?,
        body: row.get(7)?,
        is_pull_request: row.get(8)?,
        comments: row.get::<_, i64>(9)? as u64,
        created_at: row.get(10)?,
        updated_at: row.get(11)?,
        closed_at: row.get(12)?,
    })
}

fn comment_row(row: &Row<'_>) -> rusqlite::Result<CommentRow> {
    Ok(CommentRow {
        id: row.get::<_, i64>(0)? as u64,
        issue: row.get::<_, i64>(1)? as u64,
        author: row.get(2)?,
        association: row.get(3)?,
        body: row.get(4)?,
        created_at: row.get(5)?,
        updated_at: row.get(6)?,
    })
}

fn clear(connection: &Connection) -> rusqlite::Result<()> {
    connection
        .execute_batch("DELETE FROM issues; DELETE FROM comments; DELETE FROM sync_cursors;")?;
    connection.execute("DELETE FROM meta WHERE key = ?1", params![SOURCE_KEY])?;
    Ok(())
}

fn apply(connection: &mut Connection, update: &MirrorUpdate) -> rusqlite::Result<MirrorChanges> {
    let transaction = connection.transaction()?;
    let stored_source: Option<String> = transaction
        .query_row(
            "SELECT value FROM meta WHERE key = ?1",
            params![SOURCE_KEY],
            |row| row.get(0),
        )
        .optional()?;
    if stored_source.as_deref() != Some(update.source.as_str()) {
        clear(&transaction)?;
        transaction.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2)",
            params![SOURCE_KEY, update.source],
        )?;
    }
    let mut changes = MirrorChanges::default();
    {
        // `IS NOT` compares NULLs as values; `>=` on the timestamps keeps a stale copy out.
        let mut upsert_issue = transaction.prepare(
            "INSERT INTO issues (number, id, title, state, labels, author, author_association,
                                 body, is_pull_request, comments, created_at, updated_at, closed_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
             ON CONFLICT(number) DO UPDATE SET
                id = excluded.id, title = excluded.title, state = excluded.state,
                labels = excluded.labels, author = excluded.author,
                author_association = excluded.author_association, body = excluded.body,
                is_pull_request = excluded.is_pull_request, comments = excluded.comments,
                created_at = excluded.created_at, updated_at = excluded.updated_at,
                closed_at = excluded.closed_at
             WHERE excluded.updated_at >= issues.updated_at AND (
                issues.id IS NOT excluded.id OR issues.title IS NOT excluded.title
                OR issues.state IS NOT excluded.state OR issues.labels IS NOT excluded.labels
                OR issues.author IS NOT excluded.author
                OR issues.author_association IS NOT excluded.author_association
                OR issues.body IS NOT excluded.body
                OR issues.is_pull_request IS NOT excluded.is_pull_request
                OR issues.comments IS NOT excluded.comments
                OR issues.created_at IS NOT excluded.created_at
                OR issues.updated_at IS NOT excluded.updated_at
                OR issues.closed_at IS NOT excluded.closed_at)",
        )?;
        for issue in &update.issues {
            let labels = serde_json::to_string(&issue.labels)
                .map_err(|error| rusqlite::Error::ToSqlConversionFailure(Box::new(error)))?;
            changes.issues += upsert_issue.execute(params![
                issue.number as i64,
                issue.id as i64,
                issue.title,
                issue.state,
                labels,
                issue.author,
                issue.author_association,
                issue.body,
                issue.is_pull_request,
                issue.comments as i64,
                issue.created_at,
                issue.updated_at,
                issue.closed_at,
            ])?;
        }
        let mut upsert_comment = transaction.prepare(
            "INSERT INTO comments (id, issue, author, association, body, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT(id) DO UPDATE SET
                issue = excluded.issue, author = excluded.author,
                association = excluded.association, body = excluded.body,
                created_at = excluded.created_at, updated_at = excluded.updated_at
             WHERE excluded.updated_at >= comments.updated_at AND (
                comments.issue IS NOT excluded.issue OR comments.author IS NOT excluded.author
                OR comments.association IS NOT excluded.association
                OR comments.body IS NOT excluded.body
                OR comments.created_at IS NOT excluded.created_at
                OR comments.updated_at IS NOT excluded.updated_at)",
        )?;
        for comment in &update.event_comments {
            changes.comments += upsert_comment.execute(params![
                comment.id as i64,
                comment.issue as i64,
                comment.author,
                comment.association,
                comment.body,
                comment.created_at,
                comment.updated_at,
            ])?;
        }
        let mut remove_comment =
            transaction.prepare("DELETE FROM comments WHERE id = ?1 AND updated_at <= ?2")?;
        for (id, updated_at) in &update.plain_comments {
            changes.comments += remove_comment.execute(params![*id as i64, updated_at])?;
        }
        let mut set_cursor = transaction.prepare(
            "INSERT INTO sync_cursors (name, since, synced_at) VALUES (?1, ?2, ?3)
             ON CONFLICT(name) DO UPDATE SET
                since = max(sync_cursors.since, excluded.since), synced_at = excluded.synced_at",
        )?;
        for (name, since) in &update.cursors {
            set_cursor.execute(params![name, since, update.synced_at])?;
        }
    }
    transaction.commit()?;
    Ok(changes)
}

fn dump_table(
    connection: &Connection,
    table: &str,
    sql: &str,
    out: &mut String,
) -> rusqlite::Result<()> {
    use rusqlite::types::ValueRef;
    out.push_str(&format!("[{table}]\n"));
    let mut statement = connection.prepare(sql)?;
    let columns = statement.column_count();
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        let mut fields = Vec::with_capacity(columns);
        for index in 0..columns {
            fields.push(match row.get_ref(index)? {
                ValueRef::Null => "NULL".to_string(),
                ValueRef::Integer(value) => value.to_string(),
                ValueRef::Real(value) => value.to_string(),
                ValueRef::Text(text) => {
                    serde_json::Value::String(String::from_utf8_lossy(text).into_owned())
                        .to_string()
                }
                ValueRef::Blob(blob) => format!("blob:{}", blob.len()),
            });
        }
        out.push_str(&fields.join("\t"));
        out.push('\n');
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn comment(id: u64, body: &str, updated_at: &str) -> CommentRow {
        CommentRow {
            id,
            issue: 7,
            author: Some("crew-bot".to_string()),
            association: Some("COLLABORATOR".to_string()),
            body: body.to_string(),
            created_at: "2026-01-01T00:00:00Z".to_string(),
            updated_at: updated_at.to_string(),
        }
    }

    fn update(comments: Vec<CommentRow>, plain: Vec<(u64, String)>) -> MirrorUpdate {
        MirrorUpdate {
            source: "http://x acme/widgets".to_string(),
            event_comments: comments,
            plain_comments: plain,
            synced_at: "2026-01-01T00:00:00Z".to_string(),
            ..MirrorUpdate::default()
        }
    }

    #[tokio::test]
    async fn upserts_count_real_changes_and_never_go_backwards() -> Result<(), CacheError> {
        let cache = Cache::in_memory().await?;
        let first = comment(1, "a", "2026-01-01T00:00:01Z");
        let changes = cache
            .apply_mirror(update(vec![first.clone()], vec![]))
            .await?;
        assert_eq!(changes.comments, 1);
        let again = cache
            .apply_mirror(update(vec![first.clone()], vec![]))
            .await?;
        assert_eq!(again.comments, 0, "the same row again is no change");
        let edited = comment(1, "b", "2026-01-01T00:00:05Z");
        cache
            .apply_mirror(update(vec![edited.clone()], vec![]))
            .await?;
        let stale = cache.apply_mirror(update(vec![first], vec![])).await?;
        assert_eq!(
            stale.comments, 0,
            "an older copy never overwrites a newer edit"
        );
        assert_eq!(cache.event_comments(Some(7)).await?, vec![edited]);
        // The marker was edited out: the comment leaves the mirror.
        let removed = cache
            .apply_mirror(update(
                vec![],
                vec![(1, "2026-01-01T00:00:09Z".to_string())],
            ))
            .await?;
        assert_eq!(removed.comments, 1);
        assert!(cache.event_comments(None).await?.is_empty());
        Ok(())
    }

    #[tokio::test]
    async fn another_source_empties_the_mirror() -> Result<(), CacheError> {
        let cache = Cache::in_memory().await?;
        cache
            .apply_mirror(update(
                vec![comment(1, "a", "2026-01-01T00:00:01Z")],
                vec![],
            ))
            .await?;
        let mut other = update(vec![], vec![]);
        other.source = "http://x acme/gadgets".to_string();
        cache.apply_mirror(other).await?;
        assert!(cache.event_comments(None).await?.is_empty());
        assert_eq!(
            cache.mirror_source().await?.as_deref(),
            Some("http://x acme/gadgets")
        );
        Ok(())
    }
}
