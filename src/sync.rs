//! Incremental sync: GitHub's issues and event comments into the cache, for the fewest requests.
//!
//! One pass reads two lists, concurrently, and applies what they say in one transaction:
//!
//! - `GET /repos/{owner}/{repo}/issues?state=all&sort=updated&direction=desc&per_page=100`
//! - `GET /repos/{owner}/{repo}/issues/comments?sort=updated&direction=desc&per_page=100`
//!
//! Every page is a conditional GET (ETags persisted in SQLite, so a new process gets 304s too).
//! Each list has a cursor: the newest `updated_at` a completed pass saw. A pass walks a list from
//! its first page and stops after the first page whose last (oldest) item is older than the
//! cursor; a cold pass (no cursor) walks every page.
//!
//! Why newest-first pages rather than `since=<cursor>`, and what that buys:
//!
//! - **A warm pass where nothing changed is one 304 per list, starting with the very first
//!   pass after a cold one.** A `since` URL changes whenever the cursor moves, and a URL never
//!   fetched before cannot be answered 304: a `since` design pays a full 200 (a rate point) on
//!   the first warm pass, and again after every move of the cursor (keeping it sticky only
//!   postpones that). The first page of the newest-first list is the same URL forever, and it
//!   changes exactly when something changed: an edit, a new comment or issue, a label, a close
//!   all bump `updated_at` and move the item to the front.
//! - **A cold pass costs the lower bound**, ⌈issues/100⌉ + ⌈comments/100⌉ requests, and a pass
//!   after a change costs one page per list (more only when more than a page changed).
//! - **Ties are safe.** GitHub keeps whole seconds, so many items can share the cursor's second;
//!   the walk only stops on a page whose oldest item is strictly older than the cursor, so a
//!   change in the cursor's own second is never skipped, even when more than a page of items
//!   share that second (then the walk reads further, conditionally).
//! - **Concurrent changes are safe.** An item updated while a pass walks moves to the front
//!   (pages read later may repeat an item; they cannot skip one that did not change); the pass
//!   may miss it, but the first page then differs from its stored copy, so the next pass gets
//!   a 200 and reads it. Its `updated_at` is not older than anything the pass saw, so the cursor
//!   cannot have passed it. Repeats are collapsed by id.
//! - **A 304 is applied too**: its body is the stored copy, and applying it is a no-op (the
//!   upserts only write rows that differ and never go backwards), but it also repairs a cache
//!   whose rows were lost after the ETag was stored (a crash between the two writes, or the
//!   mirror tables emptied while `http_etags` stayed).
//!
//! Only comments carrying a crew marker (`<!-- crew:v…`) or the worker-dispatch skill's fenced
//! JSON with `"assigned"` are stored, raw; parsing and trust are the protocol's. An edit that
//! removes a marker removes the row. Deletions are invisible to incremental sync (GitHub lists
//! only what exists): a deleted issue or comment stays in the cache until `crew cache verify`
//! notices and `crew cache rebuild` drops it.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::cache::{Cache, CacheError, CommentRow, IssueRow, MirrorUpdate, timestamp};
use crate::error::Classify;
use crate::github::{GitHub, GitHubError, Issue, IssueComment, RepoSlug};

/// Cursor names in `sync_cursors`.
pub const ISSUES_CURSOR: &str = "issues";
pub const COMMENTS_CURSOR: &str = "comments";

const ISSUES_ROUTE: &str = "GET /repos/{owner}/{repo}/issues";
const COMMENTS_ROUTE: &str = "GET /repos/{owner}/{repo}/issues/comments";

/// Why a sync failed.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    GitHub(#[from] GitHubError),
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error("{route}: comment {id} has no issue number in its issue_url `{issue_url}`")]
    IssueUrl {
        route: &'static str,
        id: u64,
        issue_url: String,
    },
}

impl Classify for SyncError {
    fn kind(&self) -> crate::error::ErrorKind {
        match self {
            SyncError::GitHub(error) => error.kind(),
            SyncError::Cache(error) => error.kind(),
            SyncError::IssueUrl { .. } => crate::error::ErrorKind::Internal,
        }
    }

    fn hints(&self) -> Vec<String> {
        match self {
            SyncError::GitHub(error) => error.hints(),
            SyncError::Cache(error) => error.hints(),
            SyncError::IssueUrl { .. } => Vec::new(),
        }
    }
}

/// What one pass cost and changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Pages requested (retries not included; see [`GitHub::request_counts`]).
    pub requests: u64,
    /// Of those, answered 304 (free on the rate limit).
    pub not_modified: u64,
    /// Issue rows inserted or changed.
    pub issues_updated: usize,
    /// Event-comment rows inserted, changed or removed.
    pub comments_updated: usize,
    /// True when some list had no cursor, so every page was read.
    pub cold: bool,
}

/// Watches a pass page by page (for a progress bar). The two lists are walked concurrently, so
/// calls for `"issues"` and `"comments"` interleave.
pub trait SyncProgress: std::marker::Sync {
    /// `list` ([`ISSUES_CURSOR`] or [`COMMENTS_CURSOR`]) has read `fetched` pages so far, of
    /// `total` when known: on a cold walk, from the first page's `Link: rel="last"` (a warm walk
    /// stops early, so its length is unknown until it ends). A walk's last call has
    /// `total == Some(fetched)`.
    fn page(&self, list: &str, fetched: u64, total: Option<u64>);
}

/// A [`SyncProgress`] that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl SyncProgress for NoProgress {
    fn page(&self, _list: &str, _fetched: u64, _total: Option<u64>) {}
}

/// The sync pass (a namespace: it holds no state; everything lives in the cache).
pub struct Sync;

impl Sync {
    /// Brings the cache's mirror of `repo` up to date (see the module documentation).
    pub async fn run(
        github: &GitHub,
        cache: &Cache,
        repo: &RepoSlug,
    ) -> Result<SyncReport, SyncError> {
        Self::run_with_progress(github, cache, repo, &NoProgress).await
    }

    /// [`Sync::run`], telling `progress` about every page read.
    pub async fn run_with_progress(
        github: &GitHub,
        cache: &Cache,
        repo: &RepoSlug,
        progress: &dyn SyncProgress,
    ) -> Result<SyncReport, SyncError> {
        let source = format!(
            "{} {}/{}",
            github.api_url().as_str().trim_end_matches('/'),
            repo.owner(),
            repo.name()
        );
        // A cache that mirrored something else starts over (apply_mirror would empty it anyway;
        // its cursors must not shorten this pass).
        let same_source = cache.mirror_source().await?.as_deref() == Some(source.as_str());
        let (issues_since, comments_since) = if same_source {
            (
                cursor(cache, ISSUES_CURSOR).await?,
                cursor(cache, COMMENTS_CURSOR).await?,
            )
        } else {
            (None, None)
        };
        let cold = issues_since.is_none() || comments_since.is_none();
        // RepoSlug admits only URL-safe characters, so the parts need no encoding.
        let base = format!("/repos/{}/{}", repo.owner(), repo.name());
        let issues_url =
            format!("{base}/issues?state=all&sort=updated&direction=desc&per_page=100");
        let comments_url =
            format!("{base}/issues/comments?sort=updated&direction=desc&per_page=100");
        let (issues, comments) = tokio::join!(
            walk::<Issue, _>(
                github,
                List {
                    route: ISSUES_ROUTE,
                    name: ISSUES_CURSOR,
                    progress,
                },
                issues_url,
                issues_since,
                |issue| (issue.number, issue.updated_at)
            ),
            walk::<IssueComment, _>(
                github,
                List {
                    route: COMMENTS_ROUTE,
                    name: COMMENTS_CURSOR,
                    progress,
                },
                comments_url,
                comments_since,
                |comment| (comment.id, comment.updated_at)
            ),
        );
        let (issues, comments) = (issues?, comments?);

        let (requests, not_modified) = (
            issues.requests + comments.requests,
            issues.not_modified + comments.not_modified,
        );
        let update = mirror_update(source, issues, comments, Utc::now())?;
        let changes = cache.apply_mirror(update).await?;
        Ok(SyncReport {
            requests,
            not_modified,
            issues_updated: changes.issues,
            comments_updated: changes.comments,
            cold,
        })
    }
}

/// What two walks mean for the mirror: pure (CONVENTIONS 8), the I/O is on either side.
fn mirror_update(
    source: String,
    issues: Walked<Issue>,
    comments: Walked<IssueComment>,
    now: DateTime<Utc>,
) -> Result<MirrorUpdate, SyncError> {
    let mut update = MirrorUpdate {
        source,
        synced_at: timestamp(now),
        ..MirrorUpdate::default()
    };
    for (name, newest) in [
        (ISSUES_CURSOR, issues.newest),
        (COMMENTS_CURSOR, comments.newest),
    ] {
        // An empty list is synced too: the epoch says so (and stops no later walk early).
        let since = newest.unwrap_or(DateTime::UNIX_EPOCH);
        update.cursors.push((name.to_string(), timestamp(since)));
    }
    update.issues = issues.items.into_values().map(issue_row).collect();
    for comment in comments.items.into_values() {
        let body = comment.body.unwrap_or_default();
        if !carries_marker(&body) {
            update
                .plain_comments
                .push((comment.id, timestamp(comment.updated_at)));
            continue;
        }
        let issue = issue_number(&comment.issue_url).ok_or_else(|| SyncError::IssueUrl {
            route: COMMENTS_ROUTE,
            id: comment.id,
            issue_url: comment.issue_url.clone(),
        })?;
        update.event_comments.push(CommentRow {
            id: comment.id,
            issue,
            author: comment.user.map(|user| user.login),
            association: comment.author_association,
            body,
            created_at: timestamp(comment.created_at),
            updated_at: timestamp(comment.updated_at),
        });
    }
    Ok(update)
}

/// Whether a walk may stop after a page whose oldest item is `oldest` (`None`: an empty page).
/// Strictly older than the cursor: items in the cursor's own second may have changed after the
/// pass that set it, so a page that ends inside that second says nothing about the next one.
fn walk_finished(oldest: Option<DateTime<Utc>>, since: Option<DateTime<Utc>>) -> bool {
    match (oldest, since) {
        (None, _) => true,
        (Some(oldest), Some(since)) => oldest < since,
        (Some(_), None) => false,
    }
}

/// True when a comment body carries an event crew reads: a `<!-- crew:v…` marker, or the
/// worker-dispatch skill's fenced JSON with an `"assigned"` key. Deliberately generous (the
/// protocol decides what the comment means, and reports what it cannot read): a false positive
/// costs one stored row, a false negative would lose an event.
pub fn carries_marker(body: &str) -> bool {
    if body.contains("<!-- crew:v") {
        return true;
    }
    body.split("```")
        .skip(1)
        .step_by(2)
        .any(|fenced| fenced.trim_start().starts_with("json") && fenced.contains("\"assigned\""))
}

/// What one list walk read.
struct Walked<T> {
    /// Items by key, each at its newest `updated_at` (a walk may see an item twice).
    items: BTreeMap<u64, T>,
    /// The newest `updated_at` seen (or the cursor, if newer), for the next cursor; `None` for
    /// an empty list walked without a cursor.
    newest: Option<DateTime<Utc>>,
    requests: u64,
    not_modified: u64,
}

/// Which list a walk reads, and who hears about its pages.
struct List<'a> {
    route: &'static str,
    /// Its cursor name, also its name for [`SyncProgress`].
    name: &'static str,
    progress: &'a dyn SyncProgress,
}

/// What a walk knows of its length after reading page `fetched` (`None`: unknown). Only a cold
/// walk reads to the end, so only its first page's `rel="last"` is a page count; a list that
/// grows during the walk may need more pages than that, and the last page settles it.
fn known_total(
    cold: bool,
    total: Option<u64>,
    page_last: Option<u64>,
    fetched: u64,
    finished: bool,
) -> Option<u64> {
    if finished {
        return Some(fetched);
    }
    let total = if fetched == 1 && cold {
        page_last
    } else {
        total
    };
    total.map(|total| total.max(fetched + 1))
}

/// How many pages of one list a cold walk reads at once. GitHub asks clients not to flood it
/// with concurrent requests (its secondary limits start far above this); four keeps a cold
/// sync of 1,000 issues × 10 comments near a quarter of its sequential latency.
const COLD_PAGES_IN_FLIGHT: usize = 4;

/// Reads a newest-first list from its first page until a page ends before `since`.
///
/// A warm walk (a cursor) follows `rel="next"` one page at a time: it usually stops after the
/// first. A cold walk reads every page, and the first page's `rel="last"` tells how many, so
/// the rest are read [`COLD_PAGES_IN_FLIGHT`] at a time and applied in order; should the list
/// have grown meanwhile, the last page's `rel="next"` is followed as usual. Reading the pages
/// concurrently changes nothing in what a walk may see: page-numbered pages of a list that
/// changes during the walk may repeat an item either way (repeats are collapsed by id).
async fn walk<T, K>(
    github: &GitHub,
    list: List<'_>,
    first: String,
    since: Option<DateTime<Utc>>,
    key: K,
) -> Result<Walked<T>, GitHubError>
where
    T: serde::de::DeserializeOwned,
    K: Fn(&T) -> (u64, DateTime<Utc>),
{
    use futures_util::stream::{self, StreamExt, TryStreamExt};

    let mut walked = Walked {
        items: BTreeMap::new(),
        newest: since,
        requests: 0,
        not_modified: 0,
    };
    let route = list.route;
    let mut total = None;
    let first_page = github.get_conditional(route, &first).await?;
    let mut next = walked.take(&list, first_page, since, &key, &mut total)?;
    if since.is_none()
        && let (Some(second), Some(last)) = (next.as_deref(), total)
        && let Some(urls) = numbered_pages(second, last)
    {
        let mut pages = stream::iter(urls)
            .map(|url| async move { github.get_conditional(route, &url).await })
            .buffered(COLD_PAGES_IN_FLIGHT);
        next = None;
        while let Some(page) = pages.try_next().await? {
            next = walked.take(&list, page, since, &key, &mut total)?;
            if next.is_none() {
                break;
            }
        }
    }
    while let Some(url) = next {
        let page = github.get_conditional(route, &url).await?;
        next = walked.take(&list, page, since, &key, &mut total)?;
    }
    Ok(walked)
}

impl<T: serde::de::DeserializeOwned> Walked<T> {
    /// Applies one page read by a walk, in list order; returns the next page's URL, `None` when
    /// the walk is finished.
    fn take<K>(
        &mut self,
        list: &List<'_>,
        page: crate::github::Conditional,
        since: Option<DateTime<Utc>>,
        key: &K,
        total: &mut Option<u64>,
    ) -> Result<Option<String>, GitHubError>
    where
        K: Fn(&T) -> (u64, DateTime<Utc>),
    {
        self.requests += 1;
        self.not_modified += u64::from(page.not_modified);
        let items: Vec<T> = page.json(list.route)?;
        let mut oldest = None;
        for item in items {
            let (id, updated_at) = key(&item);
            oldest = Some(oldest.map_or(updated_at, |old: DateTime<Utc>| old.min(updated_at)));
            self.newest = Some(self.newest.map_or(updated_at, |n| n.max(updated_at)));
            let keep = self
                .items
                .get(&id)
                .is_none_or(|stored| key(stored).1 <= updated_at);
            if keep {
                self.items.insert(id, item);
            }
        }
        let next = if walk_finished(oldest, since) {
            None
        } else {
            page.next_page()
        };
        *total = known_total(
            since.is_none(),
            *total,
            page.last_page(),
            self.requests,
            next.is_none(),
        );
        list.progress.page(list.name, self.requests, *total);
        Ok(next)
    }
}

/// The URLs of pages 2..=`last`, made from page 2's URL (GitHub's `rel="next"` of the first
/// page) by setting its `page` parameter; `None` when that URL has no `page=2` to set.
fn numbered_pages(second: &str, last: u64) -> Option<Vec<String>> {
    let (path, query) = second.split_once('?')?;
    let pairs: Vec<&str> = query.split('&').collect();
    let at = pairs.iter().position(|pair| *pair == "page=2")?;
    Some(
        (2..=last)
            .map(|page| {
                let mut pairs: Vec<String> = pairs.iter().map(|pair| (*pair).to_owned()).collect();
                pairs[at] = format!("page={page}");
                format!("{path}?{}", pairs.join("&"))
            })
            .collect(),
    )
}

async fn cursor(cache: &Cache, name: &str) -> Result<Option<DateTime<Utc>>, CacheError> {
    Ok(cache
        .sync_cursor(name)
        .await?
        .and_then(|row| DateTime::parse_from_rfc3339(&row.since).ok())
        .map(|at| at.with_timezone(&Utc)))
}

fn issue_row(issue: Issue) -> IssueRow {
    IssueRow {
        number: issue.number,
        id: issue.id,
        labels: issue.label_names().map(str::to_string).collect(),
        is_pull_request: issue.is_pull_request(),
        title: issue.title,
        state: issue.state,
        author: issue.user.map(|user| user.login),
        author_association: issue.author_association,
        body: issue.body,
        comments: issue.comments,
        created_at: timestamp(issue.created_at),
        updated_at: timestamp(issue.updated_at),
        closed_at: issue.closed_at.map(timestamp),
    }
}

/// The issue number at the end of a comment's `issue_url` (`…/issues/42`).
fn issue_number(issue_url: &str) -> Option<u64> {
    issue_url
        .trim_end_matches('/')
        .rsplit('/')
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_are_recognised() {
        assert!(carries_marker(
            "<!-- crew:v1 {\"kind\":\"started\"} -->\n**Started**"
        ));
        assert!(carries_marker("text\n<!-- crew:v9 {} -->"));
        assert!(carries_marker(
            "\n```json\n{\n\"assigned\": true,\n\"worker_id\": \"worker-1-2\"\n}\n```\n**Worker Assigned**"
        ));
        assert!(carries_marker(
            "```json\n{\"assigned\": false, \"cleared_at\": \"2026-01-01T00:00:00Z\"}\n```"
        ));
        assert!(!carries_marker("Looks good to me"));
        assert!(!carries_marker(
            "```json\n{\"x\": 1}\n```\nassigned to \"assigned\"?"
        ));
        assert!(!carries_marker("<!-- crew v1 -->"));
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .map(|at| at.with_timezone(&Utc))
            .unwrap_or_else(|error| panic!("{text}: {error}"))
    }

    #[test]
    fn totals_come_from_the_first_cold_page_and_the_end() {
        // Cold, 3 pages: known from the first page on.
        assert_eq!(known_total(true, None, Some(3), 1, false), Some(3));
        assert_eq!(known_total(true, Some(3), None, 2, false), Some(3));
        assert_eq!(known_total(true, Some(3), None, 3, true), Some(3));
        // The list grew during the walk: never claim fewer pages than are still coming.
        assert_eq!(known_total(true, Some(3), None, 3, false), Some(4));
        // A single page, or a warm walk: known only at the end.
        assert_eq!(known_total(true, None, None, 1, true), Some(1));
        assert_eq!(known_total(false, None, Some(5), 1, false), None);
        assert_eq!(known_total(false, None, None, 2, true), Some(2));
    }

    #[test]
    fn a_cold_walk_numbers_the_pages_it_was_told_of() {
        let second =
            "https://api.github.com/repos/a/b/issues/comments?sort=updated&per_page=100&page=2";
        assert_eq!(
            numbered_pages(second, 4),
            Some(vec![
                second.to_owned(),
                second.replace("page=2", "page=3"),
                second.replace("page=2", "page=4"),
            ])
        );
        // `per_page=2` is not the page parameter; a URL without `page=2` is followed as given.
        assert_eq!(
            numbered_pages("/x?per_page=2&page=2", 3),
            Some(vec![
                "/x?per_page=2&page=2".to_owned(),
                "/x?per_page=2&page=3".to_owned()
            ])
        );
        assert_eq!(numbered_pages("/x?after=abc", 3), None);
        assert_eq!(numbered_pages("/x", 3), None);
    }

    #[test]
    fn walks_stop_only_past_the_cursor_second() {
        let cursor = Some(at("2026-11-21T10:00:00Z"));
        assert!(walk_finished(None, cursor));
        assert!(walk_finished(Some(at("2026-11-21T09:59:59Z")), cursor));
        assert!(!walk_finished(Some(at("2026-11-21T10:00:00Z")), cursor));
        assert!(!walk_finished(Some(at("2020-01-01T00:00:00Z")), None));
    }

    fn comment(id: u64, body: &str) -> IssueComment {
        IssueComment {
            id,
            issue_url: "https://api.github.com/repos/acme/widgets/issues/7".to_string(),
            body: Some(body.to_string()),
            user: None,
            author_association: Some("NONE".to_string()),
            created_at: at("2026-11-21T10:00:00Z"),
            updated_at: at("2026-11-21T10:00:05Z"),
            html_url: None,
        }
    }

    #[test]
    fn only_marker_comments_become_rows() -> Result<(), SyncError> {
        let comments = Walked {
            items: BTreeMap::from([
                (1, comment(1, "<!-- crew:v1 {} -->")),
                (2, comment(2, "plain")),
            ]),
            newest: Some(at("2026-11-21T10:00:05Z")),
            requests: 1,
            not_modified: 0,
        };
        let issues = Walked {
            items: BTreeMap::new(),
            newest: None,
            requests: 1,
            not_modified: 0,
        };
        let update = mirror_update(
            "s".to_string(),
            issues,
            comments,
            at("2026-11-21T11:00:00Z"),
        )?;
        assert_eq!(update.event_comments.len(), 1);
        assert_eq!(update.event_comments[0].issue, 7);
        assert_eq!(update.event_comments[0].author, None);
        assert_eq!(
            update.plain_comments,
            vec![(2, "2026-11-21T10:00:05Z".to_string())]
        );
        assert_eq!(
            update.cursors,
            vec![
                ("issues".to_string(), "1970-01-01T00:00:00Z".to_string()),
                ("comments".to_string(), "2026-11-21T10:00:05Z".to_string())
            ],
            "an empty list is synced up to the epoch"
        );
        Ok(())
    }

    #[test]
    fn issue_numbers_come_from_issue_urls() {
        assert_eq!(
            issue_number("https://api.github.com/repos/acme/widgets/issues/42"),
            Some(42)
        );
        assert_eq!(issue_number("https://x/repos/a/b/issues/"), None);
    }
}
