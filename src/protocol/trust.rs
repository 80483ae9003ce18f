//! Which markers count, and why the others do not.
//!
//! Anyone who can comment on an issue can type `<!-- crew:v1 {"kind":"approved",...} -->`. An event
//! therefore counts only when its author is the login of the token crew runs with, or has an
//! `author_association` the repository trusts (default OWNER, MEMBER, COLLABORATOR; DESIGN.md
//! 2.1). Trust is checked before the marker is even parsed, so a stranger's comment never shows up
//! as "malformed" noise, only as untrusted.
//!
//! Nothing is dropped silently: every marker that does not count becomes an [`Ignored`] with an
//! [`IgnoreReason`], which the cache keeps and `crew show` / `crew doctor` print.

use std::fmt;

use super::event::EventKind;
use super::fold::State;
use super::marker::MarkerError;

/// The associations trusted when `trusted_associations` is not configured.
pub const DEFAULT_TRUSTED_ASSOCIATIONS: [&str; 3] = ["OWNER", "MEMBER", "COLLABORATOR"];

/// Decides whether a comment's author may write events.
///
/// Logins compare case-insensitively (GitHub logins are); associations compare case-insensitively
/// too, since they come from configuration as well as from the API. An empty author never matches
/// an empty own login.
pub fn trust<S: AsRef<str>>(
    author_login: &str,
    author_association: &str,
    own_login: &str,
    trusted_associations: &[S],
) -> Result<(), IgnoreReason> {
    if !author_login.is_empty() && author_login.eq_ignore_ascii_case(own_login) {
        return Ok(());
    }
    if trusted_associations
        .iter()
        .any(|trusted| trusted.as_ref().eq_ignore_ascii_case(author_association))
    {
        return Ok(());
    }
    Err(IgnoreReason::UntrustedAuthor {
        author: author_login.to_owned(),
        association: author_association.to_owned(),
    })
}

/// Why a marker was not applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IgnoreReason {
    /// Written by someone who is neither crew's own login nor a trusted association.
    UntrustedAuthor { author: String, association: String },
    /// Looks like a marker but could not be read (bad JSON, unknown kind, missing field...).
    Malformed(MarkerError),
    /// A marker version this crew does not read.
    UnknownVersion { version: u64 },
    /// From an attempt older than the current one: a superseded worker still writing.
    StaleAttempt { attempt: u64, current: u64 },
    /// From an attempt newer than any `assigned` seen: nothing assigned it.
    UnknownAttempt { attempt: u64, current: Option<u64> },
    /// The machine does not allow this kind in the state the issue was in.
    IllegalTransition { from: State, kind: EventKind },
    /// A marker naming another issue (copied or pasted here).
    WrongIssue { marker_issue: u64 },
    /// A second comment with an `op` already applied (a retried write that posted twice).
    DuplicateOp { op: String },
}

impl IgnoreReason {
    /// A stable snake_case code for `--json` output and the cache.
    pub fn code(&self) -> &'static str {
        match self {
            IgnoreReason::UntrustedAuthor { .. } => "untrusted_author",
            IgnoreReason::Malformed(_) => "malformed_marker",
            IgnoreReason::UnknownVersion { .. } => "unknown_version",
            IgnoreReason::StaleAttempt { .. } => "stale_attempt",
            IgnoreReason::UnknownAttempt { .. } => "unknown_attempt",
            IgnoreReason::IllegalTransition { .. } => "illegal_transition",
            IgnoreReason::WrongIssue { .. } => "wrong_issue",
            IgnoreReason::DuplicateOp { .. } => "duplicate_op",
        }
    }
}

impl From<MarkerError> for IgnoreReason {
    fn from(error: MarkerError) -> Self {
        match error {
            MarkerError::UnknownVersion { version } => IgnoreReason::UnknownVersion { version },
            other => IgnoreReason::Malformed(other),
        }
    }
}

impl fmt::Display for IgnoreReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IgnoreReason::UntrustedAuthor {
                author,
                association,
            } => write!(
                f,
                "author `{author}` ({association}) is not trusted to write crew events"
            ),
            IgnoreReason::Malformed(error) => write!(f, "{error}"),
            IgnoreReason::UnknownVersion { version } => {
                write!(f, "{}", MarkerError::UnknownVersion { version: *version })
            }
            IgnoreReason::StaleAttempt { attempt, current } => {
                write!(f, "from attempt {attempt}, superseded by attempt {current}")
            }
            IgnoreReason::UnknownAttempt {
                attempt,
                current: Some(current),
            } => write!(
                f,
                "from attempt {attempt}, but the newest assigned attempt is {current}"
            ),
            IgnoreReason::UnknownAttempt {
                attempt,
                current: None,
            } => write!(f, "from attempt {attempt}, but no attempt was assigned"),
            IgnoreReason::IllegalTransition { from, kind } => {
                write!(f, "`{kind}` is not allowed in state `{from}`")
            }
            IgnoreReason::WrongIssue { marker_issue } => {
                write!(f, "the marker is for issue #{marker_issue}")
            }
            IgnoreReason::DuplicateOp { op } => write!(f, "op `{op}` was already applied"),
        }
    }
}

/// A marker that did not count (`crew show` lists them; its `--json` view uses
/// [`IgnoreReason::code`] as the stable `reason`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ignored {
    pub comment_id: u64,
    pub author: String,
    pub reason: IgnoreReason,
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRUSTED: [&str; 3] = DEFAULT_TRUSTED_ASSOCIATIONS;

    #[test]
    fn own_login_is_trusted_whatever_its_association() {
        assert_eq!(trust("crew-bot", "NONE", "crew-bot", &TRUSTED), Ok(()));
        assert_eq!(trust("Crew-Bot", "NONE", "crew-bot", &TRUSTED), Ok(()));
        assert_eq!(trust("crew[bot]", "NONE", "crew[bot]", &TRUSTED), Ok(()));
    }

    #[test]
    fn trusted_associations_are_trusted() {
        for association in ["OWNER", "MEMBER", "COLLABORATOR", "member"] {
            assert_eq!(trust("alice", association, "crew-bot", &TRUSTED), Ok(()));
        }
    }

    #[test]
    fn everyone_else_is_ignored_with_the_reason() {
        for association in ["CONTRIBUTOR", "FIRST_TIME_CONTRIBUTOR", "NONE", ""] {
            let reason = trust("outsider", association, "crew-bot", &TRUSTED).unwrap_err();
            assert_eq!(
                reason,
                IgnoreReason::UntrustedAuthor {
                    author: "outsider".to_owned(),
                    association: association.to_owned()
                }
            );
            assert_eq!(reason.code(), "untrusted_author");
            assert!(reason.to_string().contains("outsider"));
        }
        // An empty login is not "our own" just because our login is unknown.
        assert!(trust("", "NONE", "", &TRUSTED).is_err());
        // Configuration can narrow trust.
        assert!(trust("alice", "MEMBER", "crew-bot", &["OWNER"]).is_err());
    }

    #[test]
    fn marker_errors_become_reasons() {
        assert_eq!(
            IgnoreReason::from(MarkerError::UnknownVersion { version: 3 }),
            IgnoreReason::UnknownVersion { version: 3 }
        );
        let malformed = MarkerError::Malformed {
            reason: "x".to_owned(),
        };
        assert_eq!(
            IgnoreReason::from(malformed.clone()),
            IgnoreReason::Malformed(malformed)
        );
    }
}
