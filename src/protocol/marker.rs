//! The marker codec: one place that writes and reads `<!-- crew:v1 {...} -->`.
//!
//! A comment that carries an event *starts* with its marker line; human text follows (DESIGN.md
//! 2.1). Only the first non-blank line is looked at, so a person quoting a marker further down a
//! reply, or pasting `crew show` output, never creates an event. An HTML comment keeps the marker
//! invisible on github.com, and JSON keeps it one codec for every kind (the probot/metadata idea).
//!
//! Decisions, and why:
//! - **One line, `<` and `>` escaped.** The JSON is written on one line and every `<` and `>` inside
//!   it becomes `\u003c` / `\u003e`. Outside strings JSON has neither character, so a plain
//!   replacement is exact, and no string a worker writes (`-->`, `--!>`, `<!--`) can end or nest
//!   the HTML comment early. Newlines in strings are already `\n` escapes in JSON.
//! - **The version is in the prefix and never guessed.** `crew:v2` from a newer crew is reported
//!   as [`MarkerError::UnknownVersion`] with its number before the JSON is even read; reading it
//!   as v1 could misfile a field whose meaning changed.
//! - **Strict and total.** Parsing returns `Ok(Some(_))`, `Ok(None)` for an ordinary comment, or a
//!   typed [`MarkerError`]; it never panics and never fills in a missing field. serde_json limits
//!   nesting depth, so hostile input cannot overflow the stack.
//! - **The worker-dispatch skill's comments are read too** ([`LegacyMarker`]), so repositories that
//!   used it keep their history. They carry no issue, attempt or op; the fold numbers legacy
//!   assignments itself (see [`super::fold`](mod@super::fold)).

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::event::{Event, EventKind};

/// The marker version this crew writes and reads.
pub const MARKER_VERSION: u64 = 1;

/// Everything up to the version number.
const PREFIX: &str = "<!-- crew:";
/// Ends the HTML comment.
const SUFFIX: &str = "-->";

/// Why a comment that looks like a marker could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MarkerError {
    /// `<!-- crew:vN` with an N this crew does not read (a newer crew wrote it).
    #[error(
        "marker version v{version} is not one this crew reads (v{MARKER_VERSION}); upgrade crew to read it"
    )]
    UnknownVersion { version: u64 },
    /// Not a marker we can even take apart: no version, no closing `-->`, invalid JSON.
    #[error("malformed marker: {reason}")]
    Malformed { reason: String },
    /// Well-formed, but a `kind` this crew does not know.
    #[error("unknown marker kind `{kind}`")]
    UnknownKind { kind: String },
    /// A required field is absent (`kind` is `None` when the missing field is `kind` itself).
    #[error("{} marker is missing field `{field}`", kind_label(*.kind))]
    MissingField {
        kind: Option<EventKind>,
        field: String,
    },
    /// A field is present but has the wrong type or an impossible value.
    #[error("{} marker has an invalid field: {reason}", kind_label(*.kind))]
    InvalidField {
        kind: Option<EventKind>,
        reason: String,
    },
}

fn kind_label(kind: Option<EventKind>) -> String {
    match kind {
        Some(kind) => format!("`{kind}`"),
        None => "the".to_owned(),
    }
}

/// What the worker-dispatch skill wrote, in its fenced ```` ```json ```` block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LegacyMarker {
    /// `{"assigned": true, "worker_id": ..., "assigned_at": ..., "worktree": ...}`
    Assigned {
        worker_id: String,
        assigned_at: DateTime<Utc>,
        worktree: Option<String>,
    },
    /// `{"assigned": false, "cleared_at": ...}`
    Released { cleared_at: DateTime<Utc> },
}

impl LegacyMarker {
    /// The kind this is read as.
    pub fn kind(&self) -> EventKind {
        match self {
            LegacyMarker::Assigned { .. } => EventKind::Assigned,
            LegacyMarker::Released { .. } => EventKind::Released,
        }
    }
}

/// A marker found at the top of a comment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Marker {
    /// A `<!-- crew:v1 ... -->` event.
    Event(Event),
    /// A worker-dispatch skill comment.
    Legacy(LegacyMarker),
}

/// The marker line for `event`, without a trailing newline.
pub fn render(event: &Event) -> String {
    let json = match serde_json::to_string(event) {
        Ok(json) => json,
        // Event's Serialize only fails if serde_json cannot represent a value, and every field is
        // a string, integer or timestamp. Reaching this is a bug, not input.
        Err(error) => unreachable!("an Event always serialises to JSON: {error}"),
    };
    format!(
        "{PREFIX}v{MARKER_VERSION} {} {SUFFIX}",
        escape_angle_brackets(&json)
    )
}

/// A whole comment body: the marker line, then the human text.
pub fn render_comment(event: &Event, human_text: &str) -> String {
    format!("{}\n{human_text}", render(event))
}

/// `<` and `>` as JSON unicode escapes (only ever inside strings, so this keeps the JSON equal).
fn escape_angle_brackets(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            c => out.push(c),
        }
    }
    out
}

/// Reads the marker at the top of a comment body, if it has one.
///
/// `Ok(None)` is an ordinary comment: its first non-blank line is neither `<!-- crew:...` nor a
/// worker-dispatch ```` ```json ```` block with an `"assigned"` flag.
pub fn parse(body: &str) -> Result<Option<Marker>, MarkerError> {
    let body = body.trim_start();
    if body.starts_with(PREFIX) {
        return parse_marker_line(first_line(body)).map(|event| Some(Marker::Event(event)));
    }
    if first_line(body).trim_end() == "```json" {
        return parse_legacy(body).map(|legacy| legacy.map(Marker::Legacy));
    }
    Ok(None)
}

/// The text before the first `\n` (a `\r` before it stays and is trimmed by callers that care).
fn first_line(text: &str) -> &str {
    text.split('\n').next().unwrap_or(text)
}

fn malformed(reason: impl Into<String>) -> MarkerError {
    MarkerError::Malformed {
        reason: reason.into(),
    }
}

/// Reads `<!-- crew:v1 {...} -->` from the first line of a comment.
fn parse_marker_line(line: &str) -> Result<Event, MarkerError> {
    let rest = &line[PREFIX.len()..];
    let rest = rest
        .strip_prefix('v')
        .ok_or_else(|| malformed("expected `crew:v<version>` after `<!-- `"))?;
    let digits_end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let (digits, rest) = rest.split_at(digits_end);
    if digits.is_empty() {
        return Err(malformed("expected a version number after `crew:v`"));
    }
    let version: u64 = digits
        .parse()
        .map_err(|_| malformed(format!("version `{digits}` is out of range")))?;
    if version != MARKER_VERSION {
        return Err(MarkerError::UnknownVersion { version });
    }
    if !rest.starts_with(|c: char| c.is_whitespace()) {
        return Err(malformed("expected a space after the version"));
    }
    let end = rest
        .find(SUFFIX)
        .ok_or_else(|| malformed("the marker line has no closing `-->`"))?;
    let json = rest[..end].trim();
    let value: Value =
        serde_json::from_str(json).map_err(|error| malformed(format!("invalid JSON: {error}")))?;
    Event::from_json(&value)
}

/// Reads the worker-dispatch skill's fenced block; `body` starts with its ```` ```json ```` line.
///
/// A fenced JSON block that does not mention `"assigned"` is someone's ordinary comment and is
/// `Ok(None)`. One that does but cannot be read is reported, so a broken assignment from the old
/// shell script is seen rather than silently dropped.
fn parse_legacy(body: &str) -> Result<Option<LegacyMarker>, MarkerError> {
    let mut lines = body.split('\n').skip(1);
    let mut json = String::new();
    let mut closed = false;
    for line in lines.by_ref() {
        if line.trim() == "```" {
            closed = true;
            break;
        }
        json.push_str(line);
        json.push('\n');
    }
    let mentions_assigned = json.contains("\"assigned\"");
    if !closed {
        return if mentions_assigned {
            Err(malformed("the ```json block is not closed"))
        } else {
            Ok(None)
        };
    }
    let value: Value = match serde_json::from_str(&json) {
        Ok(value) => value,
        Err(error) if mentions_assigned => {
            return Err(malformed(format!(
                "invalid JSON in the ```json block: {error}"
            )));
        }
        Err(_) => return Ok(None),
    };
    let Some(object) = value.as_object() else {
        return Ok(None);
    };
    let assigned = match object.get("assigned") {
        None => return Ok(None),
        Some(Value::Bool(assigned)) => *assigned,
        Some(other) => {
            return Err(MarkerError::InvalidField {
                kind: None,
                reason: format!("`assigned` must be true or false, found {other}"),
            });
        }
    };
    let kind = if assigned {
        EventKind::Assigned
    } else {
        EventKind::Released
    };
    let string = |field: &str| -> Result<Option<String>, MarkerError> {
        match object.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(value)) => Ok(Some(value.clone())),
            Some(other) => Err(MarkerError::InvalidField {
                kind: Some(kind),
                reason: format!("`{field}` must be a string, found {other}"),
            }),
        }
    };
    let required = |field: &str| -> Result<String, MarkerError> {
        string(field)?.ok_or_else(|| MarkerError::MissingField {
            kind: Some(kind),
            field: field.to_owned(),
        })
    };
    let timestamp = |field: &str| -> Result<DateTime<Utc>, MarkerError> {
        let text = required(field)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|at| at.with_timezone(&Utc))
            .map_err(|error| MarkerError::InvalidField {
                kind: Some(kind),
                reason: format!("`{field}` is not an RFC 3339 time ({error}): {text:?}"),
            })
    };
    let legacy = if assigned {
        let worker_id = required("worker_id")?;
        if worker_id.is_empty() {
            return Err(MarkerError::InvalidField {
                kind: Some(kind),
                reason: "`worker_id` must not be empty".to_owned(),
            });
        }
        LegacyMarker::Assigned {
            worker_id,
            assigned_at: timestamp("assigned_at")?,
            worktree: string("worktree")?,
        }
    } else {
        LegacyMarker::Released {
            cleared_at: timestamp("cleared_at")?,
        }
    };
    Ok(Some(legacy))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::event::{Assignment, EventBody, Handover};

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn event(body: EventBody) -> Event {
        Event {
            issue: 42,
            attempt: 2,
            worker: "worker-1763700000-42".to_owned(),
            op: "0f5c".to_owned(),
            at: at("2026-11-21T10:00:00Z"),
            body,
        }
    }

    fn marker(json: &str) -> String {
        format!("<!-- crew:v1 {json} -->\nhuman text")
    }

    #[test]
    fn renders_the_design_example() {
        let line = render(&event(EventBody::Handover(Handover {
            summary: "parser done; <b>tests</b> --> next".to_owned(),
            next_steps: vec!["wire the fold".to_owned()],
            files: vec!["src/protocol/fold.rs".to_owned()],
            base_sha: Some("abc".to_owned()),
            head_sha: None,
        })));
        assert_eq!(
            line,
            r#"<!-- crew:v1 {"kind":"handover","issue":42,"attempt":2,"worker":"worker-1763700000-42","op":"0f5c","at":"2026-11-21T10:00:00Z","base_sha":"abc","files":["src/protocol/fold.rs"],"next_steps":["wire the fold"],"summary":"parser done; \u003cb\u003etests\u003c/b\u003e --\u003e next"} -->"#
        );
        assert_eq!(line.matches("-->").count(), 1);
        assert!(!line.contains('\n'));
    }

    #[test]
    fn parses_every_kind_back() {
        let bodies = [
            EventBody::Assigned(Assignment {
                host: Some("laptop".to_owned()),
                ..Assignment::default()
            }),
            EventBody::Started {},
            EventBody::Progress {
                message: "half way".to_owned(),
            },
            EventBody::Blocked {
                question: "which API?".to_owned(),
            },
            EventBody::Answered {
                answer: "REST".to_owned(),
            },
            EventBody::Handover(Handover::default()),
            EventBody::InReview { pr: 9 },
            EventBody::ChangesRequested { pr: 9, body: None },
            EventBody::Approved { pr: 9 },
            EventBody::Completed { pr: Some(9) },
            EventBody::Failed {
                reason: "tests".to_owned(),
            },
            EventBody::Cancelled { reason: None },
            EventBody::Released {},
        ];
        assert_eq!(bodies.len(), EventKind::ALL.len());
        for body in bodies {
            let event = event(body);
            let comment = render_comment(&event, "**Progress**\n<!-- crew:v1 {} -->");
            assert_eq!(parse(&comment), Ok(Some(Marker::Event(event))));
        }
    }

    #[test]
    fn ordinary_comments_are_not_markers() {
        assert_eq!(parse(""), Ok(None));
        assert_eq!(parse("LGTM"), Ok(None));
        assert_eq!(parse("<!-- a note -->"), Ok(None));
        assert_eq!(parse("<!-- crewmate -->"), Ok(None));
        // A quoted marker further down is not an event.
        assert_eq!(
            parse(&format!("> quoting\n{}", marker(r#"{"kind":"started"}"#))),
            Ok(None)
        );
        assert_eq!(parse("```json\n{\"a\": 1}\n```"), Ok(None));
        assert_eq!(parse("```json\nnot json\n```"), Ok(None));
        assert_eq!(parse("```json\n[1, 2]\n```"), Ok(None));
        assert_eq!(parse("```json\n{\"a\": 1}"), Ok(None));
    }

    #[test]
    fn leading_blank_lines_and_crlf_are_fine() {
        let event = event(EventBody::Started {});
        let comment = format!("\r\n  \n{}\r\nhello\r\n", render(&event));
        assert_eq!(parse(&comment), Ok(Some(Marker::Event(event))));
    }

    #[test]
    fn newer_versions_are_reported_with_their_number() {
        assert_eq!(
            parse("<!-- crew:v2 {\"kind\":\"started\"} -->"),
            Err(MarkerError::UnknownVersion { version: 2 })
        );
        assert_eq!(
            parse("<!-- crew:v0 anything at all"),
            Err(MarkerError::UnknownVersion { version: 0 })
        );
        let error = parse("<!-- crew:v17 {} -->").unwrap_err();
        assert!(error.to_string().contains("v17"), "{error}");
    }

    #[test]
    fn malformed_prefixes_are_reported() {
        for body in [
            "<!-- crew:x1 {} -->",
            "<!-- crew:v {} -->",
            "<!-- crew:v1{} -->",
            "<!-- crew:v99999999999999999999999 {} -->",
            "<!-- crew:v1 {\"kind\":\"started\"}\n-->",
            "<!-- crew:v1 {\"kind\":",
        ] {
            assert!(
                matches!(parse(body), Err(MarkerError::Malformed { .. })),
                "{body:?} gave {:?}",
                parse(body)
            );
        }
    }

    #[test]
    fn malformed_json_is_reported() {
        for json in ["{", "{\"kind\": started}", "[]", "\"started\"", "", "{} {}"] {
            let result = parse(&marker(json));
            assert!(
                matches!(result, Err(MarkerError::Malformed { .. })),
                "{json:?} gave {result:?}"
            );
        }
    }

    #[test]
    fn unknown_kinds_are_reported() {
        assert_eq!(
            parse(&marker(r#"{"kind":"merged","issue":1}"#)),
            Err(MarkerError::UnknownKind {
                kind: "merged".to_owned()
            })
        );
    }

    #[test]
    fn missing_fields_are_reported_never_defaulted() {
        assert_eq!(
            parse(&marker(r#"{"issue":1}"#)),
            Err(MarkerError::MissingField {
                kind: None,
                field: "kind".to_owned()
            })
        );
        let envelope =
            r#""issue":42,"attempt":2,"worker":"w","op":"o","at":"2026-11-21T10:00:00Z""#;
        for field in ["issue", "attempt", "worker", "op", "at"] {
            let json = format!("{{\"kind\":\"started\",{envelope}}}");
            let mut value: Value = serde_json::from_str(&json).unwrap();
            value.as_object_mut().unwrap().remove(field);
            assert_eq!(
                parse(&marker(&value.to_string())),
                Err(MarkerError::MissingField {
                    kind: Some(EventKind::Started),
                    field: field.to_owned()
                })
            );
        }
        assert_eq!(
            parse(&marker(&format!("{{\"kind\":\"in_review\",{envelope}}}"))),
            Err(MarkerError::MissingField {
                kind: Some(EventKind::InReview),
                field: "pr".to_owned()
            })
        );
        assert_eq!(
            parse(&marker(&format!(
                "{{\"kind\":\"handover\",{envelope},\"summary\":\"s\",\"files\":[]}}"
            ))),
            Err(MarkerError::MissingField {
                kind: Some(EventKind::Handover),
                field: "next_steps".to_owned()
            })
        );
    }

    #[test]
    fn invalid_fields_are_reported() {
        let cases = [
            r#"{"kind":7}"#,
            r#"{"kind":"started","issue":"42","attempt":2,"worker":"w","op":"o","at":"2026-11-21T10:00:00Z"}"#,
            r#"{"kind":"started","issue":42,"attempt":-1,"worker":"w","op":"o","at":"2026-11-21T10:00:00Z"}"#,
            r#"{"kind":"started","issue":42,"attempt":0,"worker":"w","op":"o","at":"2026-11-21T10:00:00Z"}"#,
            r#"{"kind":"started","issue":0,"attempt":1,"worker":"w","op":"o","at":"2026-11-21T10:00:00Z"}"#,
            r#"{"kind":"started","issue":42,"attempt":1,"worker":"","op":"o","at":"2026-11-21T10:00:00Z"}"#,
            r#"{"kind":"started","issue":42,"attempt":1,"worker":"w","op":"","at":"2026-11-21T10:00:00Z"}"#,
            r#"{"kind":"started","issue":42,"attempt":1,"worker":"w","op":"o","at":"yesterday"}"#,
            r#"{"kind":"in_review","issue":42,"attempt":1,"worker":"w","op":"o","at":"2026-11-21T10:00:00Z","pr":"seven"}"#,
        ];
        for json in cases {
            let result = parse(&marker(json));
            assert!(
                matches!(result, Err(MarkerError::InvalidField { .. })),
                "{json} gave {result:?}"
            );
        }
    }

    #[test]
    fn unknown_fields_are_accepted_within_v1() {
        let json = r#"{"kind":"progress","issue":42,"attempt":2,"worker":"worker-1763700000-42","op":"0f5c","at":"2026-11-21T10:00:00Z","message":"m","eta":"soon"}"#;
        assert_eq!(
            parse(&marker(json)),
            Ok(Some(Marker::Event(event(EventBody::Progress {
                message: "m".to_owned()
            }))))
        );
    }

    #[test]
    fn offsets_are_read_as_utc() {
        let json = r#"{"kind":"started","issue":42,"attempt":2,"worker":"worker-1763700000-42","op":"0f5c","at":"2026-11-21T11:00:00+01:00"}"#;
        assert_eq!(
            parse(&marker(json)),
            Ok(Some(Marker::Event(event(EventBody::Started {}))))
        );
    }

    /// The body the worker-dispatch skill's `register_worker` posts (seeds/002).
    const SEED_ASSIGNED: &str = "\n```json\n{\n  \"assigned\": true,\n  \"worker_id\": \"worker-1736500000-42\",\n  \"assigned_at\": \"2026-01-10T18:47:47Z\",\n  \"worktree\": \"../project-worker-42\"\n}\n```\n\n**Worker Assigned**\n- **Worker ID:** `worker-1736500000-42`\n";
    /// The body its `cleanup_worker` posts.
    const SEED_RELEASED: &str = "\n```json\n{\"assigned\": false, \"cleared_at\": \"2026-01-10T19:00:00Z\"}\n```\n\n**Worker Cleaned Up**\n";

    #[test]
    fn reads_the_seed_skill_comments() {
        assert_eq!(
            parse(SEED_ASSIGNED),
            Ok(Some(Marker::Legacy(LegacyMarker::Assigned {
                worker_id: "worker-1736500000-42".to_owned(),
                assigned_at: at("2026-01-10T18:47:47Z"),
                worktree: Some("../project-worker-42".to_owned()),
            })))
        );
        assert_eq!(
            parse(SEED_RELEASED),
            Ok(Some(Marker::Legacy(LegacyMarker::Released {
                cleared_at: at("2026-01-10T19:00:00Z"),
            })))
        );
    }

    #[test]
    fn broken_seed_comments_are_reported() {
        assert_eq!(
            parse("```json\n{\"assigned\": true, \"assigned_at\": \"2026-01-10T18:47:47Z\"}\n```"),
            Err(MarkerError::MissingField {
                kind: Some(EventKind::Assigned),
                field: "worker_id".to_owned()
            })
        );
        assert_eq!(
            parse("```json\n{\"assigned\": false}\n```"),
            Err(MarkerError::MissingField {
                kind: Some(EventKind::Released),
                field: "cleared_at".to_owned()
            })
        );
        assert!(matches!(
            parse("```json\n{\"assigned\": \"yes\"}\n```"),
            Err(MarkerError::InvalidField { .. })
        ));
        assert!(matches!(
            parse("```json\n{\"assigned\": true, \"worker_id\": \"a\"b\"}\n```"),
            Err(MarkerError::Malformed { .. })
        ));
        assert!(matches!(
            parse(
                "```json\n{\"assigned\": true, \"worker_id\": \"w\", \"assigned_at\": \"$(date)\"}\n```"
            ),
            Err(MarkerError::InvalidField { .. })
        ));
        assert!(matches!(
            parse("```json\n{\"assigned\": true"),
            Err(MarkerError::Malformed { .. })
        ));
    }
}
