//! What can go wrong talking to GitHub, as one typed enum.
//!
//! Classification into exit codes happens in `crate::error` (CONVENTIONS 4); this module only
//! says what happened and offers the facts the classifier needs ([`GitHubError::is_unavailable`]).
//! Messages quote GitHub's own `message` field, never request headers, and the client scrubs its
//! token out of every message it builds (see `transport`), so printing an error cannot leak it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::cache::CacheError;
use crate::error::{Classify, ErrorKind};

/// A failed GitHub request.
#[derive(Debug, thiserror::Error)]
pub enum GitHubError {
    /// 404: the resource does not exist, or the token may not see it (GitHub does not say which).
    #[error("not found on GitHub: {route} ({message})")]
    NotFound { route: String, message: String },

    /// 401: the token is missing, malformed, expired or revoked.
    #[error("GitHub rejected the credentials: {message}")]
    Unauthorized { message: String },

    /// 403 that is not a rate limit: the token lacks a scope or a permission.
    #[error("GitHub refused {route}: {message}")]
    Forbidden { route: String, message: String },

    /// 422: GitHub understood the request and refused it (a ref that exists, a non-fast-forward).
    #[error("GitHub refused {route}: {message}{}", format_details(errors))]
    Validation {
        route: String,
        message: String,
        errors: Vec<ValidationDetail>,
    },

    /// 409: the repository is in a state that conflicts with the request (e.g. empty repo).
    #[error("conflict on GitHub at {route}: {message}")]
    Conflict { route: String, message: String },

    /// The primary or secondary rate limit is exhausted, or the configured reserve is reached,
    /// and waiting for it would exceed the allowed wait.
    #[error("{}", describe_rate_limit(resource, *remaining, *reset, *retry_after, *secondary, *reserve))]
    RateLimited {
        /// `core`, `graphql`, `search`…
        resource: String,
        remaining: Option<u64>,
        /// When the primary limit resets.
        reset: Option<DateTime<Utc>>,
        /// What GitHub asked us to wait (`retry-after`).
        retry_after: Option<Duration>,
        /// GitHub's abuse-detection ("secondary") limit rather than the hourly quota.
        secondary: bool,
        /// Set when crew itself refused to start work below its reserve.
        reserve: Option<u64>,
    },

    /// The request did not complete: DNS, connect, TLS, timeout, connection dropped.
    #[error("could not reach GitHub ({route}): {message}")]
    Transport {
        route: String,
        message: String,
        /// False when the request certainly never left this machine (connect failed), so even a
        /// non-idempotent write may be sent again.
        sent: bool,
    },

    /// 5xx: GitHub (or a proxy in front of it) failed.
    #[error("GitHub failed with {status} on {route}: {message}")]
    Server {
        route: String,
        status: u16,
        message: String,
    },

    /// GraphQL answered with `errors`.
    #[error("GitHub GraphQL error: {}", format_graphql(errors))]
    GraphQl { errors: Vec<GraphQlError> },

    /// Anything else: an unexpected status, or a body that does not match what GitHub documents.
    #[error("unexpected answer from GitHub on {route}: {message}")]
    Unexpected { route: String, message: String },

    /// The local ETag cache failed.
    #[error(transparent)]
    Cache(#[from] CacheError),
}

impl GitHubError {
    /// True for failures that mean "GitHub is unreachable or rate-limited right now" (exit code 3):
    /// trying again later, unchanged, can succeed.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            GitHubError::RateLimited { .. }
                | GitHubError::Transport { .. }
                | GitHubError::Server { .. }
        )
    }

    /// True for a rate-limit error.
    pub fn is_rate_limited(&self) -> bool {
        matches!(self, GitHubError::RateLimited { .. })
    }

    /// A one-line suggestion for the user, if there is an obvious one.
    pub fn hint(&self) -> Option<String> {
        match self {
            GitHubError::Unauthorized { .. } => Some(
                "check GH_TOKEN / GITHUB_TOKEN (or `gh auth login`); the token may be expired or revoked"
                    .to_string(),
            ),
            GitHubError::NotFound { .. } => Some(
                "check the repository name and that the token can see it (GitHub answers 404 for both)"
                    .to_string(),
            ),
            GitHubError::RateLimited {
                reset: Some(reset), ..
            } => Some(format!(
                "wait until {} UTC, or use another token",
                reset.format("%H:%M")
            )),
            GitHubError::RateLimited { .. } => Some("wait a minute and try again".to_string()),
            GitHubError::Transport { .. } => {
                Some("check the network and CREW_API_URL".to_string())
            }
            _ => None,
        }
    }

    /// Replaces every occurrence of `secret` in the messages this error carries.
    pub(crate) fn redact(self, secret: &str) -> GitHubError {
        if secret.is_empty() {
            return self;
        }
        let clean = |text: String| {
            if text.contains(secret) {
                text.replace(secret, "[REDACTED]")
            } else {
                text
            }
        };
        match self {
            GitHubError::NotFound { route, message } => GitHubError::NotFound {
                route: clean(route),
                message: clean(message),
            },
            GitHubError::Unauthorized { message } => GitHubError::Unauthorized {
                message: clean(message),
            },
            GitHubError::Forbidden { route, message } => GitHubError::Forbidden {
                route: clean(route),
                message: clean(message),
            },
            GitHubError::Validation {
                route,
                message,
                errors,
            } => GitHubError::Validation {
                route: clean(route),
                message: clean(message),
                errors: errors
                    .into_iter()
                    .map(|detail| ValidationDetail {
                        resource: detail.resource.map(clean),
                        field: detail.field.map(clean),
                        code: detail.code.map(clean),
                        message: detail.message.map(clean),
                    })
                    .collect(),
            },
            GitHubError::Conflict { route, message } => GitHubError::Conflict {
                route: clean(route),
                message: clean(message),
            },
            GitHubError::Transport {
                route,
                message,
                sent,
            } => GitHubError::Transport {
                route: clean(route),
                message: clean(message),
                sent,
            },
            GitHubError::Server {
                route,
                status,
                message,
            } => GitHubError::Server {
                route: clean(route),
                status,
                message: clean(message),
            },
            GitHubError::GraphQl { errors } => GitHubError::GraphQl {
                errors: errors
                    .into_iter()
                    .map(|error| GraphQlError {
                        message: clean(error.message),
                        kind: error.kind.map(clean),
                        path: error.path,
                    })
                    .collect(),
            },
            GitHubError::Unexpected { route, message } => GitHubError::Unexpected {
                route: clean(route),
                message: clean(message),
            },
            other @ (GitHubError::RateLimited { .. } | GitHubError::Cache(_)) => other,
        }
    }
}

impl Classify for GitHubError {
    fn kind(&self) -> ErrorKind {
        match self {
            GitHubError::RateLimited { .. }
            | GitHubError::Transport { .. }
            | GitHubError::Server { .. } => ErrorKind::Remote,
            GitHubError::NotFound { .. }
            | GitHubError::Unauthorized { .. }
            | GitHubError::Forbidden { .. }
            | GitHubError::Validation { .. }
            | GitHubError::Conflict { .. }
            | GitHubError::GraphQl { .. } => ErrorKind::User,
            // GitHub said something crew does not understand: a crew bug or a broken proxy.
            GitHubError::Unexpected { .. } => ErrorKind::Internal,
            GitHubError::Cache(error) => error.kind(),
        }
    }

    fn hints(&self) -> Vec<String> {
        match self {
            GitHubError::Cache(error) => error.hints(),
            other => other.hint().into_iter().collect(),
        }
    }
}

/// One entry of a 422 body's `errors` array.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ValidationDetail {
    pub resource: Option<String>,
    pub field: Option<String>,
    pub code: Option<String>,
    pub message: Option<String>,
}

/// One entry of a GraphQL response's `errors` array.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct GraphQlError {
    pub message: String,
    /// GitHub's error type: `NOT_FOUND`, `FORBIDDEN`, `RATE_LIMITED`, …
    #[serde(rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub path: Vec<serde_json::Value>,
}

fn format_details(errors: &[ValidationDetail]) -> String {
    let parts: Vec<String> = errors
        .iter()
        .map(|detail| {
            detail.message.clone().unwrap_or_else(|| {
                [&detail.resource, &detail.field, &detail.code]
                    .iter()
                    .filter_map(|part| part.as_deref())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
        })
        .filter(|part| !part.is_empty())
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join("; "))
    }
}

fn format_graphql(errors: &[GraphQlError]) -> String {
    let parts: Vec<String> = errors
        .iter()
        .map(|error| match &error.kind {
            Some(kind) => format!("{kind}: {}", error.message),
            None => error.message.clone(),
        })
        .collect();
    parts.join("; ")
}

fn describe_rate_limit(
    resource: &str,
    remaining: Option<u64>,
    reset: Option<DateTime<Utc>>,
    retry_after: Option<Duration>,
    secondary: bool,
    reserve: Option<u64>,
) -> String {
    let mut text = if let Some(reserve) = reserve {
        format!(
            "GitHub rate budget for {resource} is below crew's reserve ({} remaining, reserve {reserve})",
            remaining.map_or_else(|| "?".to_string(), |n| n.to_string())
        )
    } else if secondary {
        format!("GitHub secondary rate limit hit ({resource})")
    } else {
        format!(
            "GitHub rate limit exhausted for {resource} ({} remaining)",
            remaining.map_or_else(|| "?".to_string(), |n| n.to_string())
        )
    };
    if let Some(reset) = reset {
        text.push_str(&format!(
            "; rate limited until {} UTC",
            reset.format("%H:%M")
        ));
    } else if let Some(wait) = retry_after {
        text.push_str(&format!("; retry after {} s", wait.as_secs()));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_message_names_remaining_and_reset() {
        let reset = DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default();
        let error = GitHubError::RateLimited {
            resource: "core".into(),
            remaining: Some(0),
            reset: Some(reset),
            retry_after: None,
            secondary: false,
            reserve: None,
        };
        let text = error.to_string();
        assert!(text.contains("0 remaining"), "{text}");
        assert!(text.contains("rate limited until 22:13 UTC"), "{text}");
        assert!(error.is_unavailable());
    }

    #[test]
    fn redact_scrubs_every_message() {
        let error = GitHubError::Validation {
            route: "POST /x".into(),
            message: "token ghp_secret is bad".into(),
            errors: vec![ValidationDetail {
                resource: None,
                field: None,
                code: None,
                message: Some("ghp_secret".into()),
            }],
        }
        .redact("ghp_secret");
        assert!(!format!("{error} {error:?}").contains("ghp_secret"));
    }

    #[test]
    fn validation_details_are_listed() {
        let error = GitHubError::Validation {
            route: "PATCH /repos/{owner}/{repo}/git/refs/{ref}".into(),
            message: "Validation Failed".into(),
            errors: vec![ValidationDetail {
                resource: Some("Reference".into()),
                field: Some("sha".into()),
                code: Some("invalid".into()),
                message: None,
            }],
        };
        assert!(
            error
                .to_string()
                .ends_with("Validation Failed (Reference sha invalid)")
        );
    }
}
