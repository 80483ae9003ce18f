//! Leases: the lease JSON, its codec, and whether a lease is live (DESIGN.md 2.2). Pure: no I/O,
//! and the clock is a parameter.
//!
//! A lease is the ref `<lease_ref_prefix><issue>` (default `refs/crew/leases/42`) pointing at a
//! commit whose **message** is one JSON object. Git refs are the only thing on GitHub with a real
//! compare-and-swap (create fails when the ref exists, a `force: false` update fails unless it
//! fast-forwards), so the lease is where mutual exclusion and liveness live; this module only
//! decides what a lease commit *says*, and `github::leases` reads them.
//!
//! Decisions, and why:
//! - **The format is versioned (`v`) and a newer version is its own error**
//!   ([`LeaseError::NewerVersion`]): a lease written by a newer crew may mean something this
//!   build cannot see (a new state, a different TTL rule), so dispatch must refuse to touch that
//!   issue with a clear message instead of guessing that the lease is expired or free.
//! - **Required fields are required**: a missing one is [`LeaseError::MissingField`] naming it,
//!   never a default (a defaulted `expires_at` would make a held lease look free).
//! - **Unknown fields are ignored** at a known version: the fields this build reads fully decide
//!   liveness and fencing, and a field added without a version bump must not lock an issue.
//! - **Garbage is a value, not a panic**: anything can point a ref under the prefix at anything,
//!   so every failure is a [`LeaseError`] the caller reports per lease.
//! - **`expires_at` is exclusive**: at `now == expires_at` the lease is already expired, so two
//!   orchestrators comparing the same instant never both see it live and free.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The lease format version this build writes and the newest it reads.
pub const LEASE_VERSION: u64 = 1;

/// Fields every lease of [`LEASE_VERSION`] carries, in the order they are rendered.
const REQUIRED_FIELDS: &[&str] = &[
    "v",
    "issue",
    "attempt",
    "worker",
    "host",
    "runtime",
    "acquired_at",
    "renewed_at",
    "expires_at",
    "state",
];

/// What a lease commit's message says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// Format version ([`LEASE_VERSION`] for leases this build writes).
    pub v: u64,
    pub issue: u64,
    /// Grows by one with every acquisition: the fencing token (DESIGN.md 2.2).
    pub attempt: u32,
    pub worker: String,
    /// The machine that holds the lease (`CREW_HOST`, counted for `max_per_host`).
    pub host: String,
    /// `local` or `actions` (kept as text: a runtime this build lacks must not hide the lease).
    pub runtime: String,
    pub acquired_at: DateTime<Utc>,
    pub renewed_at: DateTime<Utc>,
    /// The first instant at which the lease no longer holds.
    pub expires_at: DateTime<Utc>,
    pub state: LeaseState,
}

/// What the holder last wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LeaseState {
    Held,
    Released,
}

/// Whether a lease excludes others at a given instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LeaseStatus {
    /// Held and not yet expired: nobody else may acquire it.
    Live,
    /// Held, but `expires_at` has passed: the holder stopped renewing; it may be taken over.
    Expired,
    /// Given up by its holder: free.
    Released,
}

impl LeaseStatus {
    /// `live`, `expired` or `released`, as `crew status --json` prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            LeaseStatus::Live => "live",
            LeaseStatus::Expired => "expired",
            LeaseStatus::Released => "released",
        }
    }
}

impl fmt::Display for LeaseStatus {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// Why a lease ref does not hold a lease this build can use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseError {
    #[error("the lease commit message is not JSON: {message}")]
    NotJson { message: String },
    #[error("the lease commit message is JSON but not an object")]
    NotAnObject,
    #[error("the lease JSON has no `{field}` field")]
    MissingField { field: &'static str },
    #[error(
        "the lease has format version {found}, newer than this crew understands ({known}); \
         upgrade crew before touching this issue"
    )]
    NewerVersion { found: u64, known: u64 },
    #[error("the lease JSON is invalid: {message}")]
    Invalid { message: String },
    #[error("the lease says issue {lease_issue} but its ref is for issue {ref_issue}")]
    IssueMismatch { ref_issue: u64, lease_issue: u64 },
    #[error("the lease ref points at a {kind}, not a commit")]
    NotACommit { kind: String },
    #[error("the lease ref points at commit {sha}, which GitHub does not have")]
    MissingCommit { sha: String },
}

impl crate::error::Classify for LeaseError {
    fn kind(&self) -> crate::error::ErrorKind {
        crate::error::ErrorKind::User
    }

    fn hints(&self) -> Vec<String> {
        match self {
            LeaseError::NewerVersion { .. } => {
                vec!["a newer crew wrote this lease; upgrade crew on this machine".to_string()]
            }
            _ => vec![
                "inspect the lease ref with `git ls-remote origin 'refs/crew/leases/*'`"
                    .to_string(),
            ],
        }
    }
}

impl Lease {
    /// Live, expired or released at `now`.
    pub fn status(&self, now: DateTime<Utc>) -> LeaseStatus {
        match self.state {
            LeaseState::Released => LeaseStatus::Released,
            LeaseState::Held if now < self.expires_at => LeaseStatus::Live,
            LeaseState::Held => LeaseStatus::Expired,
        }
    }
}

/// Reads a lease commit message. Never panics, whatever the message.
pub fn parse_lease(message: &str) -> Result<Lease, LeaseError> {
    let value: Value =
        serde_json::from_str(message.trim()).map_err(|error| LeaseError::NotJson {
            message: error.to_string(),
        })?;
    let Value::Object(object) = &value else {
        return Err(LeaseError::NotAnObject);
    };
    // The version first: a newer lease may lack fields this build requires, and "newer" is the
    // more useful thing to say.
    let version = object
        .get("v")
        .ok_or(LeaseError::MissingField { field: "v" })?;
    let version = version
        .as_u64()
        .filter(|version| *version >= 1)
        .ok_or_else(|| LeaseError::Invalid {
            message: format!("`v` must be a positive integer, found {version}"),
        })?;
    if version > LEASE_VERSION {
        return Err(LeaseError::NewerVersion {
            found: version,
            known: LEASE_VERSION,
        });
    }
    if let Some(field) = REQUIRED_FIELDS
        .iter()
        .find(|field| !object.contains_key(**field))
    {
        return Err(LeaseError::MissingField { field });
    }
    serde_json::from_value(value).map_err(|error| LeaseError::Invalid {
        message: error.to_string(),
    })
}

/// [`parse_lease`] for the lease ref of `issue`: also refuses a lease that names another issue
/// (a copied or hand-made ref must not lend one issue's lease to another).
pub fn parse_lease_for(issue: u64, message: &str) -> Result<Lease, LeaseError> {
    let lease = parse_lease(message)?;
    if lease.issue != issue {
        return Err(LeaseError::IssueMismatch {
            ref_issue: issue,
            lease_issue: lease.issue,
        });
    }
    Ok(lease)
}

/// The commit message for `lease`: one JSON object on one line.
pub fn render_lease(lease: &Lease) -> String {
    // Serialising a struct of strings, integers, timestamps and a unit enum cannot fail; the
    // fallback keeps this function total without an `unwrap`.
    serde_json::to_string(lease).unwrap_or_else(|error| format!("{{\"error\":\"{error}\"}}"))
}

/// The lease ref of `issue` under `prefix` (`refs/crew/leases/` → `refs/crew/leases/42`).
pub fn lease_ref(prefix: &str, issue: u64) -> String {
    format!("{prefix}{issue}")
}

/// The issue a lease ref is for: `Some(42)` for `refs/crew/leases/42` under `refs/crew/leases/`.
/// Only the canonical spelling counts (no sign, no leading zero, no suffix), so exactly one ref
/// name maps to each issue.
pub fn issue_from_ref(prefix: &str, refname: &str) -> Option<u64> {
    let rest = refname.strip_prefix(prefix)?;
    if rest.is_empty() || rest.starts_with('0') || !rest.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    rest.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(seconds, 0)
            .single()
            .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
    }

    fn lease() -> Lease {
        Lease {
            v: LEASE_VERSION,
            issue: 42,
            attempt: 2,
            worker: "worker-1763700000-42".to_string(),
            host: "laptop".to_string(),
            runtime: "local".to_string(),
            acquired_at: at(1_763_700_000),
            renewed_at: at(1_763_700_300),
            expires_at: at(1_763_702_100),
            state: LeaseState::Held,
        }
    }

    #[test]
    fn renders_one_line_of_json_in_the_documented_shape() {
        let text = render_lease(&lease());
        assert!(!text.contains('\n'));
        assert_eq!(
            text,
            r#"{"v":1,"issue":42,"attempt":2,"worker":"worker-1763700000-42","host":"laptop","runtime":"local","acquired_at":"2025-11-21T04:40:00Z","renewed_at":"2025-11-21T04:45:00Z","expires_at":"2025-11-21T05:15:00Z","state":"held"}"#
        );
        assert_eq!(parse_lease(&text), Ok(lease()));
    }

    #[test]
    fn status_follows_state_and_expiry() {
        let held = lease();
        assert_eq!(held.status(at(1_763_702_099)), LeaseStatus::Live);
        assert_eq!(held.status(at(1_763_702_100)), LeaseStatus::Expired);
        assert_eq!(held.status(at(1_900_000_000)), LeaseStatus::Expired);
        let released = Lease {
            state: LeaseState::Released,
            ..lease()
        };
        assert_eq!(released.status(at(0)), LeaseStatus::Released);
        assert_eq!(LeaseStatus::Expired.to_string(), "expired");
    }

    #[test]
    fn garbage_is_reported_by_kind() {
        assert!(matches!(
            parse_lease("WIP: salvage"),
            Err(LeaseError::NotJson { .. })
        ));
        assert!(matches!(parse_lease(""), Err(LeaseError::NotJson { .. })));
        assert_eq!(parse_lease("[1,2]"), Err(LeaseError::NotAnObject));
        assert_eq!(
            parse_lease(r#"{"issue":1}"#),
            Err(LeaseError::MissingField { field: "v" })
        );
        assert_eq!(
            parse_lease(r#"{"v":1,"issue":1}"#),
            Err(LeaseError::MissingField { field: "attempt" })
        );
        assert!(matches!(
            parse_lease(r#"{"v":"1"}"#),
            Err(LeaseError::Invalid { .. })
        ));
        assert!(matches!(
            parse_lease(r#"{"v":0}"#),
            Err(LeaseError::Invalid { .. })
        ));
        let wrong_state = render_lease(&lease()).replace("\"held\"", "\"stolen\"");
        assert!(matches!(
            parse_lease(&wrong_state),
            Err(LeaseError::Invalid { .. })
        ));
        let bad_time = render_lease(&lease()).replace("2025-11-21T05:15:00Z", "soon");
        assert!(matches!(
            parse_lease(&bad_time),
            Err(LeaseError::Invalid { .. })
        ));
    }

    #[test]
    fn a_newer_version_is_its_own_error_even_with_other_fields() {
        assert_eq!(
            parse_lease(r#"{"v":2,"holder":"someone"}"#),
            Err(LeaseError::NewerVersion { found: 2, known: 1 })
        );
        let newer = render_lease(&lease()).replace("\"v\":1", "\"v\":7");
        assert_eq!(
            parse_lease(&newer),
            Err(LeaseError::NewerVersion { found: 7, known: 1 })
        );
    }

    #[test]
    fn unknown_fields_and_surrounding_whitespace_are_tolerated() {
        let text = render_lease(&lease()).replace("{\"v\":1,", "{\"v\":1,\"note\":[1],");
        assert_eq!(parse_lease(&format!("\n{text}\n")), Ok(lease()));
    }

    #[test]
    fn the_lease_must_name_its_refs_issue() {
        let text = render_lease(&lease());
        assert_eq!(parse_lease_for(42, &text), Ok(lease()));
        assert_eq!(
            parse_lease_for(7, &text),
            Err(LeaseError::IssueMismatch {
                ref_issue: 7,
                lease_issue: 42
            })
        );
    }

    #[test]
    fn issue_numbers_come_from_canonical_ref_names_only() {
        let prefix = "refs/crew/leases/";
        assert_eq!(issue_from_ref(prefix, "refs/crew/leases/42"), Some(42));
        assert_eq!(lease_ref(prefix, 42), "refs/crew/leases/42");
        for name in [
            "refs/crew/leases/",
            "refs/crew/leases/042",
            "refs/crew/leases/0",
            "refs/crew/leases/+4",
            "refs/crew/leases/4x",
            "refs/crew/leases/4/5",
            "refs/crew/leases/99999999999999999999999",
            "refs/heads/crew/leases/42",
        ] {
            assert_eq!(issue_from_ref(prefix, name), None, "{name}");
        }
        assert_eq!(
            issue_from_ref("refs/heads/crew/leases/", "refs/heads/crew/leases/9"),
            Some(9)
        );
    }

    fn any_time() -> impl Strategy<Value = DateTime<Utc>> {
        // Year 1970 to 2200, with sub-second precision so rendering must keep it.
        (0i64..7_258_118_400, 0u32..1_000_000_000).prop_map(|(seconds, nanos)| {
            Utc.timestamp_opt(seconds, nanos)
                .single()
                .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
        })
    }

    fn any_lease() -> impl Strategy<Value = Lease> {
        (
            (1u64..=LEASE_VERSION, any::<u64>(), any::<u32>()),
            (any::<String>(), any::<String>(), any::<String>()),
            (any_time(), any_time(), any_time()),
            prop_oneof![Just(LeaseState::Held), Just(LeaseState::Released)],
        )
            .prop_map(
                |(
                    (v, issue, attempt),
                    (worker, host, runtime),
                    (acquired_at, renewed_at, expires_at),
                    state,
                )| Lease {
                    v,
                    issue,
                    attempt,
                    worker,
                    host,
                    runtime,
                    acquired_at,
                    renewed_at,
                    expires_at,
                    state,
                },
            )
    }

    proptest! {
        #[test]
        fn render_then_parse_is_the_identity(lease in any_lease()) {
            let text = render_lease(&lease);
            prop_assert!(!text.contains('\n'));
            prop_assert_eq!(parse_lease(&text), Ok(lease));
        }

        #[test]
        fn arbitrary_messages_never_panic(message in any::<String>()) {
            let _ = parse_lease(&message);
            let _ = parse_lease_for(1, &message);
        }

        #[test]
        fn json_shaped_garbage_never_panics(
            message in r#"\{("[a-z_]{1,12}":(-?[0-9]{1,25}|"[^"]{0,12}"|null|true|\[\]|\{\}),?){0,12}\}"#,
        ) {
            let _ = parse_lease(&message);
        }

        #[test]
        fn mangled_leases_never_panic(lease in any_lease(), cut in 0usize..400) {
            let text = render_lease(&lease);
            let cut = text.char_indices().map(|(i, _)| i).nth(cut).unwrap_or(text.len());
            let _ = parse_lease(&text[..cut]);
        }

        #[test]
        fn a_lease_never_comes_back_to_life(lease in any_lease(), a in any_time(), b in any_time()) {
            let (earlier, later) = if a <= b { (a, b) } else { (b, a) };
            if lease.status(later) == LeaseStatus::Live {
                prop_assert_eq!(lease.status(earlier), LeaseStatus::Live);
            }
            if lease.state == LeaseState::Released {
                prop_assert_eq!(lease.status(earlier), LeaseStatus::Released);
            } else {
                prop_assert_eq!(lease.status(lease.expires_at), LeaseStatus::Expired);
            }
        }

        #[test]
        fn issue_from_ref_inverts_lease_ref(issue in 1u64..) {
            let prefix = "refs/crew/leases/";
            prop_assert_eq!(issue_from_ref(prefix, &lease_ref(prefix, issue)), Some(issue));
        }
    }
}
