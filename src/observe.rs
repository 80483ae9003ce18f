//! What the read commands (`status`, `show`, `wait`, `cache verify`) share: bring the cache up to
//! date, read every lease, and fold each issue's event comments into its state.
//!
//! Split in two so the fold can be run against any cache: [`observe`] does the I/O (sync, leases,
//! own login), [`fold_cache`] reads a cache and folds, with no network. `crew cache verify` runs
//! the second half on the file cache and on a fresh in-memory one and compares.
//!
//! Cost: a warm run with nothing changed is three conditional requests, all 304s (issues list,
//! comments list, lease refs). The token's login, needed for trust, is asked once per token and
//! remembered in the cache's `meta` table, so it costs nothing after the first run.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{DefaultHasher, Hash, Hasher};

use chrono::{DateTime, Utc};

use crate::cache::{Cache, CacheError, CommentRow};
use crate::context::{Clock, Ctx};
use crate::error::CrewError;
use crate::github::{GitHub, ObservedLease, RepoSlug};
use crate::protocol::lease::LeaseStatus;
use crate::protocol::{EventBody, FoldPolicy, IssueState, ObservedEvent, fold};
use crate::settings::Settings;
use crate::sync::{Sync, SyncReport};

/// `meta` key prefix for the remembered login of a token (the rest is a fingerprint of the API
/// URL and token, never the token itself).
const OWN_LOGIN_KEY: &str = "own_login.";

/// What to observe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObserveOptions {
    /// Sync the cache with GitHub first (false: fold what the cache holds, leases still read).
    pub sync: bool,
}

impl Default for ObserveOptions {
    fn default() -> Self {
        ObserveOptions { sync: true }
    }
}

/// Everything the read commands show, observed at one instant.
#[derive(Debug, Clone)]
pub struct Observed {
    pub repo: RepoSlug,
    /// The instant leases were judged at (`ctx.clock`).
    pub now: DateTime<Utc>,
    /// What the sync pass cost (default when no sync ran).
    pub sync: SyncReport,
    /// Every lease under the prefix, by issue (including leases of issues without events).
    pub leases: Vec<ObservedLease>,
    /// Issues crew knows about (an event comment or a lease), by number.
    pub issues: Vec<ObservedIssue>,
}

impl Observed {
    /// Leases live at [`Observed::now`]: the slots in use.
    pub fn live_leases(&self) -> usize {
        self.leases
            .iter()
            .filter(|lease| lease.status(self.now) == Some(LeaseStatus::Live))
            .count()
    }

    /// One issue, if crew knows about it.
    pub fn issue(&self, number: u64) -> Option<&ObservedIssue> {
        self.issues.iter().find(|issue| issue.number == number)
    }

    /// The newest event comment id across all issues (markers ignored or not).
    pub fn newest_comment_id(&self) -> Option<u64> {
        self.issues
            .iter()
            .filter_map(|issue| issue.newest_comment_id)
            .max()
    }
}

/// One issue: what GitHub says about it, its folded state, and its lease.
#[derive(Debug, Clone)]
pub struct ObservedIssue {
    pub number: u64,
    /// Empty when the cache has no row for the issue (a lease for an unknown issue).
    pub title: String,
    /// `open` is true unless GitHub says `closed`.
    pub open: bool,
    pub state: IssueState,
    pub lease: Option<IssueLease>,
    /// The newest stored event comment id of this issue.
    pub newest_comment_id: Option<u64>,
}

impl ObservedIssue {
    /// Where the attempt runs: the lease's host, else the newest `assigned` event's.
    pub fn host(&self) -> Option<String> {
        if let Some(lease) = self.lease.as_ref()
            && let Ok(lease) = &lease.observed.lease
        {
            return Some(lease.host.clone());
        }
        self.state
            .events
            .iter()
            .rev()
            .find_map(|applied| match &applied.event.body {
                EventBody::Assigned(assignment) => Some(assignment.host.clone()),
                _ => None,
            })
            .flatten()
    }
}

/// A lease and its status at the observation's instant (`None`: the ref holds no usable lease).
#[derive(Debug, Clone)]
pub struct IssueLease {
    pub observed: ObservedLease,
    pub status: Option<LeaseStatus>,
}

/// Syncs (unless told not to), reads the leases and folds every issue crew knows about.
pub async fn observe(ctx: &Ctx, options: ObserveOptions) -> Result<Observed, CrewError> {
    ctx.settings.require_repo()?;
    let github = ctx.github().await?;
    let cache = ctx.cache().await?;
    observe_with(github, cache, &ctx.settings, ctx.clock, options).await
}

/// [`observe`] for a caller that holds its own client and cache instead of a [`Ctx`]
/// (`crew doctor`, which opens them separately so a broken cache cannot stop it).
pub async fn observe_with(
    github: &GitHub,
    cache: &Cache,
    settings: &Settings,
    clock: Clock,
    options: ObserveOptions,
) -> Result<Observed, CrewError> {
    let repo = settings.require_repo()?.clone();
    // Leases first, then comments: every writer posts an attempt's closing event (`in_review`,
    // `handover`, …) before it releases the lease, so comments read after a released lease
    // include that event. Read the other way round, a `done` landing between the two reads
    // shows a `working` attempt with a released lease, which the scheduler takes for an
    // abandoned one and dispatches again. (The opposite race, a lease taken after it was read,
    // is harmless: the dispatch it prompts loses the lease's compare-and-swap.)
    let leases = github
        .leases(&repo, &settings.config.lease_ref_prefix)
        .await?;
    let sync = if options.sync {
        Sync::run(github, cache, &repo).await?
    } else {
        SyncReport::default()
    };
    let own_login = own_login(github, cache, settings).await?;
    let policy = fold_policy(settings, own_login);
    let now = clock.now();
    let issues = fold_cache(cache, &leases, &policy, now).await?;
    Ok(Observed {
        repo,
        now,
        sync,
        leases,
        issues,
    })
}

/// The trust and attempt rules from settings, for `own_login`.
pub fn fold_policy(settings: &Settings, own_login: String) -> FoldPolicy {
    FoldPolicy {
        own_login,
        trusted_associations: settings
            .config
            .trusted_associations
            .iter()
            .map(|association| association.as_str().to_string())
            .collect(),
        max_attempts: u64::from(settings.config.workers.max_attempts),
    }
}

/// The token's login: from the cache's `meta` table, else `GET /user` (then remembered).
///
/// Without a token, or when `GET /user` is refused (an installation token), the login is empty:
/// only trusted associations count, which is the safe side.
pub async fn own_login(
    github: &GitHub,
    cache: &Cache,
    settings: &Settings,
) -> Result<String, CrewError> {
    if let Some(login) = cached_own_login(cache, settings).await? {
        return Ok(login);
    }
    let Some(key) = own_login_key(settings) else {
        return Ok(String::new());
    };
    match github.user().await {
        Ok(user) => {
            cache.set_meta(&key, &user.login).await?;
            Ok(user.login)
        }
        Err(error) => {
            tracing::warn!(
                "cannot tell who the token belongs to ({error}); trusting by association only"
            );
            Ok(String::new())
        }
    }
}

/// The token's login if this host already knows it (no request); `Some("")` without a token.
pub async fn cached_own_login(
    cache: &Cache,
    settings: &Settings,
) -> Result<Option<String>, CrewError> {
    match own_login_key(settings) {
        Some(key) => Ok(cache.meta(&key).await?),
        None => Ok(Some(String::new())),
    }
}

/// The cache key of the token's login: a hash of the API and the token (never the token).
fn own_login_key(settings: &Settings) -> Option<String> {
    let token = settings.token()?;
    let mut hasher = DefaultHasher::new();
    settings.api_url.as_str().hash(&mut hasher);
    token.secret.expose().hash(&mut hasher);
    Some(format!("{OWN_LOGIN_KEY}{:016x}", hasher.finish()))
}

/// Folds every issue the cache knows crew events for, or that has a lease. No network.
pub async fn fold_cache(
    cache: &Cache,
    leases: &[ObservedLease],
    policy: &FoldPolicy,
    now: DateTime<Utc>,
) -> Result<Vec<ObservedIssue>, CacheError> {
    let mut comments: BTreeMap<u64, Vec<CommentRow>> = BTreeMap::new();
    for row in cache.event_comments(None).await? {
        comments.entry(row.issue).or_default().push(row);
    }
    let leases: BTreeMap<u64, &ObservedLease> =
        leases.iter().map(|lease| (lease.issue, lease)).collect();
    let numbers: BTreeSet<u64> = comments.keys().chain(leases.keys()).copied().collect();
    let rows: BTreeMap<u64, _> = cache
        .issues()
        .await?
        .into_iter()
        .filter(|row| numbers.contains(&row.number))
        .map(|row| (row.number, row))
        .collect();
    let mut issues = Vec::with_capacity(numbers.len());
    for number in numbers {
        let rows_of_issue = comments.remove(&number).unwrap_or_default();
        let newest_comment_id = rows_of_issue.iter().map(|row| row.id).max();
        let lease = leases.get(&number).map(|observed| IssueLease {
            observed: (*observed).clone(),
            status: observed.status(now),
        });
        let lease_attempt = lease
            .as_ref()
            .and_then(|lease| lease.observed.lease.as_ref().ok())
            .map(|lease| u64::from(lease.attempt));
        let state = fold(
            number,
            rows_of_issue.iter().map(observed_event),
            lease_attempt,
            policy,
        );
        let row = rows.get(&number);
        issues.push(ObservedIssue {
            number,
            title: row.map(|row| row.title.clone()).unwrap_or_default(),
            open: row.is_none_or(|row| row.state != "closed"),
            state,
            lease,
            newest_comment_id,
        });
    }
    Ok(issues)
}

/// A stored comment as the fold reads it. A deleted account (`ghost`) has no association.
pub fn observed_event(row: &CommentRow) -> ObservedEvent {
    ObservedEvent::from_comment(
        row.id,
        row.author.as_deref().unwrap_or("ghost"),
        row.association.as_deref().unwrap_or("NONE"),
        &row.body,
    )
}

/// A timestamp as crew prints it: RFC 3339, UTC, whole seconds.
pub fn timestamp(at: DateTime<Utc>) -> String {
    crate::cache::timestamp(at)
}

/// A short human age or remaining time: `42s`, `5m`, `3h`, `2d`.
pub fn short_duration(seconds: i64) -> String {
    let seconds = seconds.max(0);
    match seconds {
        0..60 => format!("{seconds}s"),
        60..3600 => format!("{}m", seconds / 60),
        3600..86400 => format!("{}h", seconds / 3600),
        _ => format!("{}d", seconds / 86400),
    }
}

/// Text from GitHub made safe for one terminal line: control characters (escape sequences,
/// newlines) dropped, at most `max` characters with `…` when cut.
pub fn sanitize_line(text: &str, max: usize) -> String {
    let mut clean: Vec<char> = Vec::with_capacity(text.len().min(max * 4));
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            // A CSI escape sequence (`ESC [ params final`): drop it whole, not just the ESC.
            '\u{1b}' if chars.peek() == Some(&'[') => {
                chars.next();
                for c in chars.by_ref() {
                    if ('\u{40}'..='\u{7e}').contains(&c) {
                        break;
                    }
                }
            }
            '\t' | '\n' => clean.push(' '),
            c if c.is_control() || is_bidi_control(c) => {}
            c => clean.push(c),
        }
    }
    if clean.len() <= max {
        clean.into_iter().collect()
    } else {
        let mut cut: String = clean[..max.saturating_sub(1)].iter().collect();
        cut.push('…');
        cut
    }
}

/// Unicode bidirectional overrides, which can make a line read differently than it is.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_are_stripped_and_cut() {
        assert_eq!(sanitize_line("a\x1b[31mred\x1b[0m\x07\nx", 40), "ared x");
        assert_eq!(sanitize_line("\x1b]0;title\x07ok", 40), "]0;titleok");
        assert_eq!(sanitize_line("abcdef", 4), "abc…");
        assert_eq!(sanitize_line("abc", 3), "abc");
        assert_eq!(sanitize_line("\u{202E}evil", 10), "evil");
    }

    #[test]
    fn durations_are_short() {
        assert_eq!(short_duration(-5), "0s");
        assert_eq!(short_duration(59), "59s");
        assert_eq!(short_duration(61), "1m");
        assert_eq!(short_duration(7200), "2h");
        assert_eq!(short_duration(3 * 86400), "3d");
    }
}
