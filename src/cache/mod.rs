//! The local SQLite cache: disposable, rebuilt from GitHub whenever it is lost.
//!
//! GitHub is the source of truth (DESIGN.md section 2); this file only saves requests and rate
//! points. It holds the ETag store behind conditional GETs, so a second `crew` process gets
//! `304 Not Modified` (free on GitHub's rate limit) and reuses the body the first one stored; the
//! mirror [`crate::sync`] fills (issues, event comments, cursors; see `mirror`); lease commit
//! messages; what crew last wrote to the project board (see `board`); and the process table,
//! the one thing a rebuild cannot restore (it describes processes on this host, which
//! `.crew/worker.json` in each worktree repeats).
//!
//! Decisions, and why:
//! - **rusqlite is blocking**, so every access goes through [`Cache::call`], one `spawn_blocking`
//!   helper that locks the connection, runs a closure and unlocks it before returning. No
//!   connection or guard ever lives across an `.await` (CONVENTIONS 7).
//! - **Migrations are append-only** SQL strings indexed by `PRAGMA user_version` (CONVENTIONS 10):
//!   a released migration is never edited, a new table is a new entry at the end. A file written by
//!   a newer crew is refused rather than guessed at; deleting it is always safe.
//! - **WAL** so a `crew status` can read while a `crew loop` writes, with a busy timeout instead
//!   of immediate `SQLITE_BUSY` failures.

mod board;
mod location;
mod mirror;
mod processes;
mod views;

pub use board::BoardRow;
pub use location::{CACHE_FILE_NAME, CacheLocation};
pub use mirror::{CommentRow, CursorRow, IssueRow, MirrorChanges, MirrorUpdate, timestamp};
pub use processes::ProcessRow;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

/// Schema migrations, applied in order; entry `i` moves `user_version` from `i` to `i + 1`.
///
/// Append only. Never edit or reorder a released entry: existing cache files have already run it.
const MIGRATIONS: &[&str] = &[
    // 1: conditional GETs. `link` keeps the `Link` header so a 304 on a paginated list can still
    // be followed to the next page.
    "CREATE TABLE http_etags (
        url        TEXT PRIMARY KEY NOT NULL,
        etag       TEXT NOT NULL,
        body       BLOB NOT NULL,
        link       TEXT,
        fetched_at TEXT NOT NULL
    );",
    // 2: the mirror of GitHub that sync fills (see `mirror` and `crate::sync`), and the process
    // table. Timestamps are RFC 3339 in UTC with whole seconds (`2026-11-21T10:00:00Z`), so text
    // order is time order. Everything but `processes` is rebuilt by a cold sync.
    "CREATE TABLE issues (
        number             INTEGER PRIMARY KEY NOT NULL,
        id                 INTEGER NOT NULL,
        title              TEXT NOT NULL,
        state              TEXT NOT NULL,
        labels             TEXT NOT NULL,
        author             TEXT,
        author_association TEXT,
        body               TEXT,
        is_pull_request    INTEGER NOT NULL,
        comments           INTEGER NOT NULL,
        created_at         TEXT NOT NULL,
        updated_at         TEXT NOT NULL,
        closed_at          TEXT
    );
    CREATE INDEX issues_by_state ON issues (state, number);
    CREATE TABLE comments (
        id          INTEGER PRIMARY KEY NOT NULL,
        issue       INTEGER NOT NULL,
        author      TEXT,
        association TEXT,
        body        TEXT NOT NULL,
        created_at  TEXT NOT NULL,
        updated_at  TEXT NOT NULL
    );
    CREATE INDEX comments_by_issue ON comments (issue, id);
    CREATE TABLE sync_cursors (
        name      TEXT PRIMARY KEY NOT NULL,
        since     TEXT NOT NULL,
        synced_at TEXT NOT NULL
    );
    CREATE TABLE lease_commits (
        sha     TEXT PRIMARY KEY NOT NULL,
        message TEXT NOT NULL
    );
    CREATE TABLE project_items (
        issue   INTEGER PRIMARY KEY NOT NULL,
        item_id TEXT NOT NULL,
        status  TEXT
    );
    CREATE TABLE processes (
        worker_id  TEXT PRIMARY KEY NOT NULL,
        issue      INTEGER NOT NULL,
        attempt    INTEGER NOT NULL,
        pid        INTEGER,
        start_time TEXT,
        started_at TEXT NOT NULL,
        log_path   TEXT,
        worktree   TEXT,
        agent      TEXT,
        runtime    TEXT
    );
    CREATE INDEX processes_by_issue ON processes (issue);
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY NOT NULL,
        value TEXT NOT NULL
    );",
    // 3: the board rows (see `board`): per project (`owner/number`) and issue, the item's id,
    // the status crew last wrote and a status whose write failed; and per project its node ids
    // (project, status field, options) as JSON. Migration 2's `project_items`
    // was never written, so it is replaced rather than altered (its `item_id` was NOT NULL, and
    // an owed write may not know the item yet).
    "DROP TABLE project_items;
    CREATE TABLE project_items (
        project TEXT NOT NULL,
        issue   INTEGER NOT NULL,
        item_id TEXT,
        status  TEXT,
        wanted  TEXT,
        PRIMARY KEY (project, issue)
    );
    CREATE TABLE board_projects (
        project TEXT PRIMARY KEY NOT NULL,
        ids     TEXT NOT NULL
    );",
];

/// The `user_version` a cache file has once every migration this build knows has run.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// How long a writer waits for another process's lock before failing with `SQLITE_BUSY`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Failures of the cache. All of them are recoverable by deleting the file.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cache {path}: {source}")]
    Sqlite {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "cache {path} has schema version {found}, newer than this crew knows ({known}); \
         it was written by a newer crew (delete it to rebuild)"
    )]
    NewerSchema {
        path: String,
        found: i64,
        known: i64,
    },
    #[error("cache {path}: could not create its directory: {source}")]
    CreateDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cache {path} is damaged and could not be moved aside: {source}")]
    SetAside {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cache worker thread failed: {0}")]
    Join(String),
}

impl CacheError {
    /// The file is not a database, or a corrupt one: nothing in it can be trusted or kept.
    pub fn is_damaged(&self) -> bool {
        match self {
            CacheError::Sqlite {
                source: rusqlite::Error::SqliteFailure(failure, _),
                ..
            } => matches!(
                failure.code,
                rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt
            ),
            _ => false,
        }
    }
}

impl crate::error::Classify for CacheError {
    fn kind(&self) -> crate::error::ErrorKind {
        crate::error::ErrorKind::User
    }

    fn hints(&self) -> Vec<String> {
        match self {
            CacheError::Join(_) => Vec::new(),
            _ => vec![
                "the cache is disposable: delete it (`crew cache path` shows where) and run again"
                    .to_string(),
            ],
        }
    }
}

/// A response body stored for conditional GETs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub etag: String,
    pub body: Vec<u8>,
    pub link: Option<String>,
    pub fetched_at: String,
}

/// A handle on the cache database; cheap to clone, safe to share between tasks.
#[derive(Clone)]
pub struct Cache {
    connection: Arc<Mutex<Connection>>,
    /// Shown in errors; `:memory:` for in-memory caches.
    label: Arc<str>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Cache")
            .field("path", &self.label)
            .finish()
    }
}

impl Cache {
    /// Opens (creating it and its directory if needed) and migrates the cache at `path`.
    /// `":memory:"` opens a private in-memory database, for tests.
    pub async fn open(path: impl Into<PathBuf>) -> Result<Cache, CacheError> {
        let path = path.into();
        run_blocking(move || Cache::open_blocking(&path)).await?
    }

    /// An in-memory cache, for tests.
    pub async fn in_memory() -> Result<Cache, CacheError> {
        Cache::open(":memory:").await
    }

    /// [`Cache::open`] for callers that are not on the async runtime.
    ///
    /// A file that is not a database or is corrupt (a bad disk, a truncated copy) is set aside as
    /// `<name>.corrupt-<unix time>` and a fresh cache is made in its place: the cache only
    /// mirrors GitHub, so the next sync rebuilds it, and this host's process rows are found
    /// again from the worktrees. A cache from a newer crew is not touched (that crew still
    /// reads it): [`CacheError::NewerSchema`] says so.
    pub fn open_blocking(path: &Path) -> Result<Cache, CacheError> {
        match Cache::open_once(path) {
            Err(error) if error.is_damaged() && path != Path::new(":memory:") => {
                let aside = set_aside(path)?;
                tracing::warn!(
                    "the cache {} was damaged ({error}); moved it to {} and starting afresh",
                    path.display(),
                    aside.display()
                );
                Cache::open_once(path)
            }
            other => other,
        }
    }

    fn open_once(path: &Path) -> Result<Cache, CacheError> {
        let label: Arc<str> = path.display().to_string().into();
        let in_memory = path == Path::new(":memory:");
        if !in_memory
            && let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(|source| CacheError::CreateDir {
                path: label.to_string(),
                source,
            })?;
        }
        let sqlite = |source| CacheError::Sqlite {
            path: label.to_string(),
            source,
        };
        let mut connection = Connection::open(path).map_err(sqlite)?;
        connection.busy_timeout(BUSY_TIMEOUT).map_err(sqlite)?;
        if !in_memory {
            enable_wal(&connection).map_err(sqlite)?;
            connection
                .pragma_update(None, "synchronous", "NORMAL")
                .map_err(sqlite)?;
        }
        migrate(&mut connection, &label)?;
        Ok(Cache {
            connection: Arc::new(Mutex::new(connection)),
            label,
        })
    }

    /// Where this cache lives (`:memory:` for in-memory caches).
    pub fn path(&self) -> &str {
        &self.label
    }

    /// Runs `work` with the connection on the blocking thread pool.
    ///
    /// The only way to reach the database: the lock is taken and released inside the blocking
    /// task, so callers cannot hold it across an `.await`.
    pub async fn call<T, F>(&self, work: F) -> Result<T, CacheError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let connection = Arc::clone(&self.connection);
        let label = Arc::clone(&self.label);
        run_blocking(move || {
            // A panic while holding the lock leaves the connection usable (SQLite rolls back an
            // unfinished transaction), so a poisoned lock is not a reason to give up.
            let mut guard = connection
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            work(&mut guard).map_err(|source| CacheError::Sqlite {
                path: label.to_string(),
                source,
            })
        })
        .await?
    }

    /// The schema version of the open file (equals [`SCHEMA_VERSION`] once opened).
    pub async fn user_version(&self) -> Result<i64, CacheError> {
        self.call(|connection| {
            connection.pragma_query_value(None, "user_version", |row| row.get(0))
        })
        .await
    }

    /// The stored ETag and body for `url`, if any.
    pub async fn stored_response(&self, url: &str) -> Result<Option<StoredResponse>, CacheError> {
        let url = url.to_string();
        self.call(move |connection| {
            connection
                .query_row(
                    "SELECT etag, body, link, fetched_at FROM http_etags WHERE url = ?1",
                    params![url],
                    |row| {
                        Ok(StoredResponse {
                            etag: row.get(0)?,
                            body: row.get(1)?,
                            link: row.get(2)?,
                            fetched_at: row.get(3)?,
                        })
                    },
                )
                .optional()
        })
        .await
    }

    /// Stores (or replaces) the ETag and body GitHub returned for `url`.
    pub async fn store_response(
        &self,
        url: &str,
        response: StoredResponse,
    ) -> Result<(), CacheError> {
        let url = url.to_string();
        self.call(move |connection| {
            connection.execute(
                "INSERT INTO http_etags (url, etag, body, link, fetched_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(url) DO UPDATE SET
                    etag = excluded.etag, body = excluded.body,
                    link = excluded.link, fetched_at = excluded.fetched_at",
                params![
                    url,
                    response.etag,
                    response.body,
                    response.link,
                    response.fetched_at
                ],
            )?;
            Ok(())
        })
        .await
    }

    /// Forgets the stored response for `url` (e.g. when GitHub answers 304 for a body we lost).
    pub async fn forget_response(&self, url: &str) -> Result<(), CacheError> {
        let url = url.to_string();
        self.call(move |connection| {
            connection.execute("DELETE FROM http_etags WHERE url = ?1", params![url])?;
            Ok(())
        })
        .await
    }
}

/// Runs blocking work on tokio's blocking pool: the single bridge from async code to SQLite.
async fn run_blocking<T, F>(work: F) -> Result<T, CacheError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| CacheError::Join(error.to_string()))
}

/// Moves a damaged cache file (and its WAL and shared-memory files) aside; returns where.
fn set_aside(path: &Path) -> Result<PathBuf, CacheError> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or_default();
    let mut aside = path.as_os_str().to_owned();
    aside.push(format!(".corrupt-{stamp}"));
    let aside = PathBuf::from(aside);
    std::fs::rename(path, &aside).map_err(|source| CacheError::SetAside {
        path: path.display().to_string(),
        source,
    })?;
    for suffix in ["-wal", "-shm"] {
        let mut extra = path.as_os_str().to_owned();
        extra.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(extra));
    }
    Ok(aside)
}

/// Brings `connection` up to [`SCHEMA_VERSION`], one transaction per migration.
/// Switch to WAL. Switching a new file needs an exclusive lock, and SQLite may answer BUSY at
/// once, without its busy handler, while another process opening the same new cache holds a
/// lock; so retry for as long as the busy timeout allows. (`journal_mode` answers with the mode
/// it set, so it is a query, not an update.)
fn enable_wal(connection: &Connection) -> rusqlite::Result<()> {
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    loop {
        match connection.query_row("PRAGMA journal_mode = WAL", [], |row| {
            row.get::<_, String>(0)
        }) {
            Ok(_) => return Ok(()),
            Err(rusqlite::Error::SqliteFailure(error, _))
                if error.code == rusqlite::ErrorCode::DatabaseBusy
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(error) => return Err(error),
        }
    }
}

fn migrate(connection: &mut Connection, label: &str) -> Result<(), CacheError> {
    let sqlite = |source| CacheError::Sqlite {
        path: label.to_string(),
        source,
    };
    // Several crew processes may open a new cache at once (two dispatches, a loop and a
    // status). The version is read under SQLite's write lock (BEGIN IMMEDIATE; the busy timeout
    // makes the others wait), so exactly one of them migrates and the rest find nothing to do.
    let transaction = connection
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(sqlite)?;
    let found: i64 = transaction
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(sqlite)?;
    if found > SCHEMA_VERSION {
        return Err(CacheError::NewerSchema {
            path: label.to_string(),
            found,
            known: SCHEMA_VERSION,
        });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(found.max(0) as usize) {
        transaction.execute_batch(sql).map_err(sqlite)?;
        transaction
            .pragma_update(None, "user_version", index as i64 + 1)
            .map_err(sqlite)?;
    }
    transaction.commit().map_err(sqlite)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(etag: &str, body: &str) -> StoredResponse {
        StoredResponse {
            etag: etag.to_string(),
            body: body.as_bytes().to_vec(),
            link: None,
            fetched_at: "2026-01-01T00:00:00Z".to_string(),
        }
    }

    #[test]
    fn processes_opening_a_new_cache_at_once_migrate_it_once() {
        for round in 0..5 {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join(format!("cache-{round}.sqlite3"));
            let start = std::sync::Arc::new(std::sync::Barrier::new(8));
            let openers: Vec<_> = (0..8)
                .map(|_| {
                    let (path, start) = (path.clone(), start.clone());
                    std::thread::spawn(move || {
                        start.wait();
                        Cache::open_blocking(&path).map(|_| ())
                    })
                })
                .collect();
            for opener in openers {
                let opened = opener.join().expect("no panic");
                assert!(opened.is_ok(), "round {round}: {opened:?}");
            }
            let connection = Connection::open(&path).expect("reopen");
            let version: i64 = connection
                .pragma_query_value(None, "user_version", |row| row.get(0))
                .expect("user_version");
            assert_eq!(version, SCHEMA_VERSION);
        }
    }

    #[tokio::test]
    async fn in_memory_cache_is_migrated() -> Result<(), CacheError> {
        let cache = Cache::in_memory().await?;
        assert_eq!(cache.user_version().await?, SCHEMA_VERSION);
        assert_eq!(cache.path(), ":memory:");
        Ok(())
    }

    #[tokio::test]
    async fn etags_round_trip_and_replace() -> Result<(), CacheError> {
        let cache = Cache::in_memory().await?;
        let url = "https://api.github.com/repos/acme/widgets";
        assert_eq!(cache.stored_response(url).await?, None);
        cache.store_response(url, response("\"a\"", "{}")).await?;
        cache.store_response(url, response("\"b\"", "[1]")).await?;
        assert_eq!(
            cache.stored_response(url).await?,
            Some(response("\"b\"", "[1]"))
        );
        cache.forget_response(url).await?;
        assert_eq!(cache.stored_response(url).await?, None);
        Ok(())
    }

    #[tokio::test]
    async fn file_cache_survives_reopen_and_uses_wal() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("nested").join("cache.sqlite3");
        let cache = Cache::open(&path).await?;
        cache.store_response("u", response("\"e\"", "body")).await?;
        drop(cache);
        let reopened = Cache::open(&path).await?;
        assert_eq!(
            reopened.stored_response("u").await?,
            Some(response("\"e\"", "body"))
        );
        let mode: String = reopened
            .call(|connection| connection.query_row("PRAGMA journal_mode", [], |row| row.get(0)))
            .await?;
        assert_eq!(mode, "wal");
        Ok(())
    }

    #[tokio::test]
    async fn newer_schema_is_refused() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("cache.sqlite3");
        {
            let connection = Connection::open(&path)?;
            connection.pragma_update(None, "user_version", SCHEMA_VERSION + 1)?;
        }
        match Cache::open(&path).await {
            Err(CacheError::NewerSchema { found, known, .. }) => {
                assert_eq!((found, known), (SCHEMA_VERSION + 1, SCHEMA_VERSION));
            }
            other => panic!("expected NewerSchema, got {other:?}"),
        }
        Ok(())
    }

    #[test]
    fn migrations_are_append_only() {
        // A guard against editing a released migration: its text is pinned here. Add new
        // migrations at the end of MIGRATIONS and new pins below; never change an old pin.
        assert!(MIGRATIONS[0].starts_with("CREATE TABLE http_etags ("));
        assert!(MIGRATIONS[1].starts_with("CREATE TABLE issues ("));
        assert!(MIGRATIONS[2].starts_with("DROP TABLE project_items;"));
        assert_eq!(SCHEMA_VERSION, MIGRATIONS.len() as i64);
    }
}
