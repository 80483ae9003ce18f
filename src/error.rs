//! Every failure, classified once into an exit code and a few `hint:` lines.
//!
//! Domain modules keep their own `thiserror` enums (they know what went wrong); this module only
//! decides what a failure *means to the caller* of the binary. A domain error implements
//! [`Classify`] and converts into [`CrewError`] with `?`, so commands never pick exit codes
//! themselves. Modelled on jj's `command_error.rs` (one error type carrying a kind and hints) and
//! uv's `ExitStatus` (the exit code is a closed enum, not a loose integer).
//!
//! Exit codes are part of the CLI contract (scripts and the scheduled workflow branch on them):
//! 0 ok, 1 user or state error, 2 usage, 3 GitHub unreachable or rate-limited, 4 lost a race,
//! 124 timed out waiting (`crew wait`, as `timeout(1)` does), 255 internal.

use std::error::Error as StdError;
use std::fmt;
use std::process::ExitCode;

/// What a failure means to whoever ran crew, which decides the exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The user asked for something the repository's state or configuration does not allow:
    /// a bad `crew.toml`, an illegal transition, a missing issue. Exit 1.
    User,
    /// The command line itself is wrong. Exit 2 (clap's own code for usage errors).
    Usage,
    /// GitHub could not be reached, answered 5xx, or the rate budget is spent: retrying later may
    /// work, so scripts can tell this apart from a user error. Exit 3.
    Remote,
    /// Another orchestrator won a compare-and-swap (a lease is held elsewhere). Not a failure of
    /// this run so much as a signal to back off. Exit 4.
    LostRace,
    /// A wait ran out of time before what it waited for happened (`crew wait`). Exit 124, the
    /// code `timeout(1)` uses, so scripts can treat both alike.
    Timeout,
    /// A bug in crew, or the machine failing under it. Exit 255.
    Internal,
}

impl ErrorKind {
    /// The process exit code for this kind (DESIGN.md §4).
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorKind::User => 1,
            ErrorKind::Usage => 2,
            ErrorKind::Remote => 3,
            ErrorKind::LostRace => 4,
            ErrorKind::Timeout => 124,
            ErrorKind::Internal => 255,
        }
    }
}

impl From<ErrorKind> for ExitCode {
    fn from(kind: ErrorKind) -> Self {
        ExitCode::from(kind.exit_code())
    }
}

/// Implemented by every domain error so it can become a [`CrewError`] with `?`.
///
/// `hints` is for advice the user can act on ("pass -R owner/name"), not for repeating the
/// message; most errors have none.
pub trait Classify: StdError {
    /// What this failure means to the caller.
    fn kind(&self) -> ErrorKind;

    /// Lines printed after the error as `hint: ...`.
    fn hints(&self) -> Vec<String> {
        Vec::new()
    }
}

/// The one error type commands return: a classified failure plus hints.
///
/// `Display` and `source` are those of the wrapped error, so a reporter walking the chain does not
/// print the same message twice. Hints live beside the error rather than in its message so that
/// `--json` callers and tests can read them separately.
pub struct CrewError {
    kind: ErrorKind,
    error: Box<dyn StdError + Send + Sync + 'static>,
    hints: Vec<String>,
}

impl CrewError {
    /// Wraps any error with an explicit kind.
    pub fn new(
        kind: ErrorKind,
        error: impl Into<Box<dyn StdError + Send + Sync + 'static>>,
    ) -> Self {
        CrewError {
            kind,
            error: error.into(),
            hints: Vec::new(),
        }
    }

    /// A user or state error with a plain message.
    pub fn user(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::User, message.into())
    }

    /// A usage error with a plain message (for checks clap cannot express).
    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Usage, message.into())
    }

    /// GitHub unreachable or out of rate budget.
    pub fn remote(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Remote, message.into())
    }

    /// Another orchestrator won the race.
    pub fn lost_race(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::LostRace, message.into())
    }

    /// A bug or an environment failure the user cannot fix by changing their input.
    pub fn internal(error: impl Into<Box<dyn StdError + Send + Sync + 'static>>) -> Self {
        Self::new(ErrorKind::Internal, error)
    }

    /// Adds a `hint:` line.
    #[must_use]
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hints.push(hint.into());
        self
    }

    /// What this failure means to the caller.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The process exit code.
    pub fn exit_code(&self) -> u8 {
        self.kind.exit_code()
    }

    /// The `hint:` lines, in order.
    pub fn hints(&self) -> &[String] {
        &self.hints
    }

    /// The wrapped error, for callers that need to downcast it.
    pub fn inner(&self) -> &(dyn StdError + Send + Sync + 'static) {
        &*self.error
    }

    /// The message followed by each `caused by` in the chain, without hints.
    pub fn chain(&self) -> Vec<String> {
        let mut lines = vec![self.error.to_string()];
        let mut source = self.error.source();
        while let Some(cause) = source {
            let text = cause.to_string();
            // Some errors repeat their source in their own message; printing it twice is noise.
            if lines.last().is_none_or(|last| !last.contains(&text)) {
                lines.push(text);
            }
            source = cause.source();
        }
        lines
    }
}

impl fmt::Debug for CrewError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CrewError")
            .field("kind", &self.kind)
            .field("error", &self.error)
            .field("hints", &self.hints)
            .finish()
    }
}

impl fmt::Display for CrewError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

impl StdError for CrewError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.error.source()
    }
}

/// Every classified domain error converts with `?`.
///
/// This blanket impl is why `CrewError` itself does not implement [`Classify`]: it would overlap
/// with `From<T> for T`.
impl<E> From<E> for CrewError
where
    E: Classify + Send + Sync + 'static,
{
    fn from(error: E) -> Self {
        let kind = error.kind();
        let hints = error.hints();
        CrewError {
            kind,
            error: Box::new(error),
            hints,
        }
    }
}

/// An `anyhow` error reaching the top has not been classified by anyone, so it is a bug.
impl From<anyhow::Error> for CrewError {
    fn from(error: anyhow::Error) -> Self {
        CrewError::internal(error.into_boxed_dyn_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    enum LeaseError {
        #[error("lease for issue #{0} is held by another host")]
        Held(u64),
        #[error("could not reach GitHub")]
        Unreachable(#[source] std::io::Error),
    }

    impl Classify for LeaseError {
        fn kind(&self) -> ErrorKind {
            match self {
                LeaseError::Held(_) => ErrorKind::LostRace,
                LeaseError::Unreachable(_) => ErrorKind::Remote,
            }
        }

        fn hints(&self) -> Vec<String> {
            match self {
                LeaseError::Held(issue) => {
                    vec![format!("run `crew show {issue}` to see who holds it")]
                }
                LeaseError::Unreachable(_) => Vec::new(),
            }
        }
    }

    fn fails(held: bool) -> Result<(), CrewError> {
        if held {
            Err(LeaseError::Held(42))?;
        }
        Err(LeaseError::Unreachable(std::io::Error::other(
            "connection refused",
        )))?;
        Ok(())
    }

    #[test]
    fn exit_codes_match_the_design() {
        let codes: Vec<u8> = [
            ErrorKind::User,
            ErrorKind::Usage,
            ErrorKind::Remote,
            ErrorKind::LostRace,
            ErrorKind::Timeout,
            ErrorKind::Internal,
        ]
        .into_iter()
        .map(ErrorKind::exit_code)
        .collect();
        assert_eq!(codes, [1, 2, 3, 4, 124, 255]);
    }

    #[test]
    fn domain_errors_convert_with_question_mark_and_keep_hints() {
        let error = fails(true).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::LostRace);
        assert_eq!(error.exit_code(), 4);
        assert_eq!(error.hints(), ["run `crew show 42` to see who holds it"]);
        assert_eq!(
            error.to_string(),
            "lease for issue #42 is held by another host"
        );
    }

    #[test]
    fn chain_lists_causes_once() {
        let error = fails(false).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Remote);
        assert_eq!(
            error.chain(),
            ["could not reach GitHub", "connection refused"]
        );
    }

    #[test]
    fn anyhow_errors_are_internal() {
        let error = CrewError::from(anyhow::anyhow!("boom"));
        assert_eq!(error.exit_code(), 255);
    }

    #[test]
    fn constructors_and_hints() {
        let error = CrewError::user("no repository").with_hint("pass -R owner/name");
        assert_eq!(error.exit_code(), 1);
        assert_eq!(error.hints(), ["pass -R owner/name"]);
        assert_eq!(CrewError::usage("x").exit_code(), 2);
        assert_eq!(CrewError::remote("x").exit_code(), 3);
        assert_eq!(CrewError::lost_race("x").exit_code(), 4);
        assert_eq!(CrewError::internal("x").exit_code(), 255);
    }
}
