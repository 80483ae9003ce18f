//! The events crew records on an issue, as typed values.
//!
//! An [`Event`] is the common envelope every marker carries (`issue`, `attempt`, `worker`, `op`,
//! `at`) plus an [`EventBody`] holding what only that kind has (a progress message, a question, a
//! PR number). The body is a serde enum tagged by `kind`, so adding a kind is adding a variant and
//! the compiler finds every `match` that must learn about it.
//!
//! The JSON form puts `kind` first, then the envelope, then the kind's own fields, so a person
//! reading the raw marker sees what it is before the details. Serde's `flatten` would put the
//! fields in the wrong order and, worse, blur "missing field" into "no variant matched", which is
//! why [`Event`] serialises by hand and [`Event::from_json`] classifies errors itself.
//!
//! Fields that are absent on purpose are `Option`s and are omitted when `None`; everything else is
//! required, so a marker missing a field is reported, never filled in with a default. Unknown
//! fields are accepted: a later crew may add an optional field within `v1` without breaking older
//! readers (an incompatible change bumps the version instead, see [`super::marker`]).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::de::Error as _;
use serde::ser::{Error as _, SerializeMap};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use super::marker::MarkerError;

/// The kinds of event (DESIGN.md 2.1), spelled as in the marker's `kind` field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Assigned,
    Started,
    Progress,
    Blocked,
    Answered,
    Handover,
    InReview,
    ChangesRequested,
    Approved,
    Completed,
    Failed,
    Cancelled,
    Released,
}

impl EventKind {
    /// Every kind, in the order of DESIGN.md 2.1.
    pub const ALL: [EventKind; 13] = [
        EventKind::Assigned,
        EventKind::Started,
        EventKind::Progress,
        EventKind::Blocked,
        EventKind::Answered,
        EventKind::Handover,
        EventKind::InReview,
        EventKind::ChangesRequested,
        EventKind::Approved,
        EventKind::Completed,
        EventKind::Failed,
        EventKind::Cancelled,
        EventKind::Released,
    ];

    /// The spelling used in markers and in `--json` output.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Assigned => "assigned",
            EventKind::Started => "started",
            EventKind::Progress => "progress",
            EventKind::Blocked => "blocked",
            EventKind::Answered => "answered",
            EventKind::Handover => "handover",
            EventKind::InReview => "in_review",
            EventKind::ChangesRequested => "changes_requested",
            EventKind::Approved => "approved",
            EventKind::Completed => "completed",
            EventKind::Failed => "failed",
            EventKind::Cancelled => "cancelled",
            EventKind::Released => "released",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `kind` this crew does not know.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown event kind `{0}`")]
pub struct UnknownKind(pub String);

impl FromStr for EventKind {
    type Err = UnknownKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EventKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == s)
            .ok_or_else(|| UnknownKind(s.to_owned()))
    }
}

/// What an `assigned` event says beyond the envelope: where the attempt runs.
///
/// All optional: the lease holds the authoritative host and the worktree is local knowledge, so
/// they are here for humans reading the issue and for `crew show`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worktree: Option<String>,
}

/// What a `handover` passes to the next attempt.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handover {
    pub summary: String,
    pub next_steps: Vec<String>,
    pub files: Vec<String>,
    /// `None` when the attempt never had a commit to start from (nothing fetched yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_sha: Option<String>,
    /// `None` when nothing was committed or pushed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_sha: Option<String>,
}

/// The kind-specific part of an event, tagged by `kind`.
///
/// Kinds with nothing of their own are empty struct variants (`Started {}`) rather than unit
/// variants so every variant deserialises the same way from an object with other keys in it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventBody {
    Assigned(Assignment),
    Started {},
    Progress {
        message: String,
    },
    Blocked {
        question: String,
    },
    Answered {
        answer: String,
    },
    Handover(Handover),
    InReview {
        pr: u64,
    },
    ChangesRequested {
        pr: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        body: Option<String>,
    },
    Approved {
        pr: u64,
    },
    Completed {
        /// `None` for work finished without a PR (`crew done --no-pr`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pr: Option<u64>,
    },
    Failed {
        reason: String,
    },
    Cancelled {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    Released {},
}

impl EventBody {
    /// Which kind this is.
    pub fn kind(&self) -> EventKind {
        match self {
            EventBody::Assigned(_) => EventKind::Assigned,
            EventBody::Started {} => EventKind::Started,
            EventBody::Progress { .. } => EventKind::Progress,
            EventBody::Blocked { .. } => EventKind::Blocked,
            EventBody::Answered { .. } => EventKind::Answered,
            EventBody::Handover(_) => EventKind::Handover,
            EventBody::InReview { .. } => EventKind::InReview,
            EventBody::ChangesRequested { .. } => EventKind::ChangesRequested,
            EventBody::Approved { .. } => EventKind::Approved,
            EventBody::Completed { .. } => EventKind::Completed,
            EventBody::Failed { .. } => EventKind::Failed,
            EventBody::Cancelled { .. } => EventKind::Cancelled,
            EventBody::Released {} => EventKind::Released,
        }
    }

    /// The pull request this event names, if it names one.
    pub fn pr(&self) -> Option<u64> {
        match self {
            EventBody::InReview { pr }
            | EventBody::ChangesRequested { pr, .. }
            | EventBody::Approved { pr } => Some(*pr),
            EventBody::Completed { pr } => *pr,
            _ => None,
        }
    }
}

/// One event: the envelope every marker carries plus the kind's own fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// The issue number; a marker copied onto another issue is ignored by the fold.
    pub issue: u64,
    /// The attempt (lease generation) this event belongs to, from 1; the fence for stale writers.
    pub attempt: u64,
    /// The worker id of the attempt (`worker-<unix time>-<issue>`).
    pub worker: String,
    /// A unique id per write, so a retried POST can find its earlier success instead of posting twice.
    pub op: String,
    /// When the writer says it happened (its clock, passed in; never read here).
    pub at: DateTime<Utc>,
    pub body: EventBody,
}

/// The envelope fields, for deserialising them apart from the body.
#[derive(Deserialize)]
struct Envelope {
    issue: u64,
    attempt: u64,
    worker: String,
    op: String,
    at: DateTime<Utc>,
}

impl Event {
    /// Which kind this is.
    pub fn kind(&self) -> EventKind {
        self.body.kind()
    }

    /// Reads an event from a parsed JSON value, classifying what is wrong with it.
    ///
    /// The `kind` is checked first so that a marker from a newer crew with a kind we do not know is
    /// reported as exactly that, not as "missing field" for some field of a kind it is not.
    pub fn from_json(value: &Value) -> Result<Event, MarkerError> {
        let object = value.as_object().ok_or_else(|| MarkerError::Malformed {
            reason: "the marker's JSON is not an object".to_owned(),
        })?;
        let kind = match object.get("kind") {
            None => {
                return Err(MarkerError::MissingField {
                    kind: None,
                    field: "kind".to_owned(),
                });
            }
            Some(Value::String(kind)) => kind
                .parse::<EventKind>()
                .map_err(|UnknownKind(kind)| MarkerError::UnknownKind { kind })?,
            Some(other) => {
                return Err(MarkerError::InvalidField {
                    kind: None,
                    reason: format!("`kind` must be a string, found {other}"),
                });
            }
        };
        let classify = |error: serde_json::Error| classify_serde_error(kind, &error);
        let envelope = Envelope::deserialize(value).map_err(classify)?;
        let body = EventBody::deserialize(value).map_err(classify)?;
        let invalid = |reason: &str| MarkerError::InvalidField {
            kind: Some(kind),
            reason: reason.to_owned(),
        };
        if envelope.issue == 0 {
            return Err(invalid("`issue` must be at least 1"));
        }
        if envelope.attempt == 0 {
            return Err(invalid("`attempt` must be at least 1"));
        }
        if envelope.worker.is_empty() {
            return Err(invalid("`worker` must not be empty"));
        }
        if envelope.op.is_empty() {
            return Err(invalid("`op` must not be empty"));
        }
        Ok(Event {
            issue: envelope.issue,
            attempt: envelope.attempt,
            worker: envelope.worker,
            op: envelope.op,
            at: envelope.at,
            body,
        })
    }
}

/// Turns serde's error for an event of a known kind into a [`MarkerError`].
///
/// Serde reports a missing field as "missing field `name`" (its `Error::missing_field`); that is
/// the one case worth a variant of its own, because it is what an older writer or a hand edit
/// produces. Everything else (a string where a number belongs, a bad timestamp) is an invalid field.
fn classify_serde_error(kind: EventKind, error: &serde_json::Error) -> MarkerError {
    let message = error.to_string();
    if let Some(rest) = message.strip_prefix("missing field `")
        && let Some(field) = rest.strip_suffix('`')
    {
        return MarkerError::MissingField {
            kind: Some(kind),
            field: field.to_owned(),
        };
    }
    MarkerError::InvalidField {
        kind: Some(kind),
        reason: message,
    }
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // The body serialises to `{"kind": ..., <its fields>}`; re-emit its fields after the envelope.
        let body = serde_json::to_value(&self.body).map_err(S::Error::custom)?;
        let Value::Object(fields) = body else {
            return Err(S::Error::custom(
                "an event body must serialise to an object",
            ));
        };
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("kind", self.kind().as_str())?;
        map.serialize_entry("issue", &self.issue)?;
        map.serialize_entry("attempt", &self.attempt)?;
        map.serialize_entry("worker", &self.worker)?;
        map.serialize_entry("op", &self.op)?;
        map.serialize_entry("at", &self.at)?;
        // Sorted explicitly: serde_json's map order depends on whether some other crate in the
        // build turned on `preserve_order`, and the same event must render the same bytes always.
        let mut fields: Vec<(&String, &Value)> =
            fields.iter().filter(|(key, _)| *key != "kind").collect();
        fields.sort_by(|a, b| a.0.cmp(b.0));
        for (key, value) in fields {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Event::from_json(&value).map_err(D::Error::custom)
    }
}

/// A fresh op id: the time in nanoseconds, this process's id and a per-process counter, so no
/// two events (even of one issue, even from one process) share one.
pub fn new_op_id() -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or_default();
    format!(
        "op-{nanos:x}-{:x}-{:x}",
        std::process::id(),
        COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn op_ids_are_unique() {
        let first = new_op_id();
        let second = new_op_id();
        assert_ne!(first, second);
        assert!(first.starts_with("op-"));
    }

    #[test]
    fn kinds_round_trip_through_their_names() {
        for kind in EventKind::ALL {
            assert_eq!(kind.as_str().parse::<EventKind>(), Ok(kind));
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
        }
        assert_eq!(
            "finished".parse::<EventKind>(),
            Err(UnknownKind("finished".to_owned()))
        );
    }

    #[test]
    fn kind_comes_first_then_the_envelope_then_the_kind_fields() {
        let event = Event {
            issue: 42,
            attempt: 2,
            worker: "worker-1763700000-42".to_owned(),
            op: "op-1".to_owned(),
            at: "2026-11-21T10:00:00Z".parse().unwrap(),
            body: EventBody::InReview { pr: 7 },
        };
        let json = serde_json::to_string(&event).unwrap();
        assert_eq!(
            json,
            r#"{"kind":"in_review","issue":42,"attempt":2,"worker":"worker-1763700000-42","op":"op-1","at":"2026-11-21T10:00:00Z","pr":7}"#
        );
        let back: Event = serde_json::from_str(&json).unwrap();
        assert_eq!(back, event);
    }
}
