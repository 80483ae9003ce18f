//! What the fuzz targets in `fuzz/` check, as plain functions, and the test that replays every
//! input they ever crashed on (issue 8).
//!
//! Each `check_*` takes the raw bytes a libFuzzer target receives, runs the same function crew
//! runs on text from GitHub or disk, and panics if a property is broken. The fuzz targets are one
//! line each (`check_marker(data)`), and the `tests` module below feeds every file under
//! `fuzz/regressions/<target>/` and `fuzz/seeds/<target>/` through the same function on the
//! stable toolchain, so `cargo test` fails if a fixed crash comes back without anyone running the
//! fuzzer.
//!
//! Decisions, and why:
//! - **The checks live in the library, not in the fuzz crate.** The fuzz crate is outside the
//!   workspace and needs nightly; a regression test must run in `cargo test --workspace`, and a
//!   copy of each property in two places would drift. Being pure functions over bytes they cost
//!   nothing at run time and nothing in crew calls them.
//! - **Inputs are text, decoded lossily.** Comment bodies, lease messages and `crew.toml` all
//!   arrive as UTF-8 text; invalid bytes become U+FFFD, so every input the fuzzer makes reaches
//!   the parser instead of being thrown away at the door.
//! - **The fold's input is a readable text format** (comments separated by U+001E, each opening
//!   with an `author association id` line) rather than `arbitrary`'s byte encoding: seeds and
//!   regression files stay editable by hand, the decoder is the same on stable and nightly, and
//!   crew needs no `arbitrary` dependency.
//! - **Properties beyond "no panic" where they are cheap:** a parsed marker or lease re-rendered
//!   parses to the same value; a config that loads has no key the loaded config does not know and
//!   loads the same when written back; the fold only applies trusted markers of its own issue, and
//!   folding comment by comment equals folding all at once.

use std::path::Path;

use chrono::{DateTime, Utc};

use super::fold::{Fold, FoldPolicy, ObservedEvent, fold};
use super::lease::{self, LeaseStatus};
use super::marker::{self, Marker};
use super::trust::trust;
use crate::settings::Config;

/// The login the fold target runs as.
pub const FOLD_OWN_LOGIN: &str = "crew-bot";
/// The issue the fold target folds; seeds use it in their markers.
pub const FOLD_ISSUE: u64 = 42;
/// Separates comments in a fold input (ASCII record separator).
pub const FOLD_RECORD_SEPARATOR: char = '\u{1e}';
/// The lease ref prefix the lease target reads ref names under.
pub const LEASE_REF_PREFIX: &str = "refs/crew/leases/";

/// A comment body through [`marker::parse`]; an event that parses re-renders to itself.
pub fn check_marker(data: &[u8]) {
    let body = String::from_utf8_lossy(data);
    if let Ok(Some(Marker::Event(event))) = marker::parse(&body) {
        let line = marker::render(&event);
        assert!(
            !line.contains('\n'),
            "a rendered marker spans lines: {line:?}"
        );
        assert_eq!(
            marker::parse(&line),
            Ok(Some(Marker::Event(event.clone()))),
            "re-rendering {body:?} as {line:?} changed the event"
        );
        // And again after human text, as crew posts it.
        let comment = marker::render_comment(&event, &body);
        assert_eq!(
            marker::parse(&comment),
            Ok(Some(Marker::Event(event))),
            "text after the marker line changed the event"
        );
    }
}

/// A lease commit message through [`lease::parse_lease_for`] and the same bytes as a ref name
/// through [`lease::issue_from_ref`].
pub fn check_lease(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Some(issue) = lease::issue_from_ref(LEASE_REF_PREFIX, &text) {
        assert_eq!(
            lease::lease_ref(LEASE_REF_PREFIX, issue),
            text,
            "issue_from_ref read {text:?} as {issue}, which is not its canonical name"
        );
    }
    let Ok(parsed) = lease::parse_lease(&text) else {
        return;
    };
    assert_eq!(
        lease::parse_lease_for(parsed.issue, &text).as_ref(),
        Ok(&parsed)
    );
    assert!(
        lease::parse_lease_for(parsed.issue.wrapping_add(1), &text).is_err(),
        "a lease for issue {} was accepted for another issue",
        parsed.issue
    );
    let rendered = lease::render_lease(&parsed);
    assert!(!rendered.contains('\n'), "a lease rendered on two lines");
    assert_eq!(
        lease::parse_lease(&rendered).as_ref(),
        Ok(&parsed),
        "re-rendering {text:?} as {rendered:?} changed the lease"
    );
    for now in [
        DateTime::<Utc>::MIN_UTC,
        parsed.acquired_at,
        parsed.expires_at,
        DateTime::<Utc>::MAX_UTC,
    ] {
        let status = parsed.status(now);
        if now >= parsed.expires_at {
            assert_ne!(status, LeaseStatus::Live, "live at or after expires_at");
        }
    }
}

/// `crew.toml` text through [`Config::parse`], the loader `crew` itself uses (with validation).
///
/// A config that loads must not have accepted a key it does not know (every key of the file is
/// a key of the loaded config written back as TOML), and written back it must load the same.
pub fn check_config(data: &[u8]) {
    let source = String::from_utf8_lossy(data);
    let path = Path::new("crew.toml");
    let config = match Config::parse(&source, path) {
        Ok(config) => config,
        Err(error) => {
            let message = error.to_string();
            assert!(
                message.contains("crew.toml"),
                "error names no file: {message}"
            );
            return;
        }
    };
    let file: toml::Table = match toml::from_str(&source) {
        Ok(file) => file,
        Err(error) => panic!("Config::parse accepted text toml cannot read as a table: {error}"),
    };
    let written = match toml::Table::try_from(&config) {
        Ok(written) => written,
        Err(error) => panic!("a loaded config cannot be written back as TOML: {error}"),
    };
    assert_known_keys(&file, &written, &mut Vec::new());
    let text = match toml::to_string(&config) {
        Ok(text) => text,
        Err(error) => panic!("a loaded config cannot be written back as TOML: {error}"),
    };
    match Config::parse(&text, path) {
        Ok(again) => assert_eq!(
            again, config,
            "the config changed when written back:\n{text}"
        ),
        Err(error) => panic!("a loaded config, written back, does not load: {error}\n{text}"),
    }
}

/// Every key of `file` is a key of `known`, recursively through tables.
fn assert_known_keys<'a>(file: &'a toml::Table, known: &toml::Table, path: &mut Vec<&'a str>) {
    for (key, value) in file {
        path.push(key);
        let Some(known_value) = known.get(key) else {
            panic!(
                "crew.toml key `{}` was accepted but the loaded config has no such key",
                path.join(".")
            );
        };
        if let (toml::Value::Table(inner), toml::Value::Table(known_inner)) = (value, known_value) {
            assert_known_keys(inner, known_inner, path);
        }
        path.pop();
    }
}

/// One comment of a fold input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FuzzComment {
    pub comment_id: u64,
    pub author: String,
    pub association: String,
    pub body: String,
}

/// Decodes a fold input: comments separated by U+001E, each `author association id` on its
/// first line (missing parts are empty; an id that is not a number is the comment's position)
/// and the body after it.
pub fn decode_fold_input(text: &str) -> Vec<FuzzComment> {
    text.split(FOLD_RECORD_SEPARATOR)
        .enumerate()
        .map(|(position, record)| {
            let (header, body) = record.split_once('\n').unwrap_or((record, ""));
            let mut parts = header.splitn(3, ' ');
            let author = parts.next().unwrap_or_default().to_owned();
            let association = parts.next().unwrap_or_default().to_owned();
            let comment_id = parts
                .next()
                .and_then(|id| id.trim().parse().ok())
                .unwrap_or(position as u64 + 1);
            FuzzComment {
                comment_id,
                author,
                association,
                body: body.to_owned(),
            }
        })
        .collect()
}

/// Arbitrary comments (authors, associations, ids, bodies) through [`fold`] and [`Fold::apply`].
pub fn check_fold(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let comments = decode_fold_input(&text);
    let policy = FoldPolicy::new(FOLD_OWN_LOGIN);
    let observed = || {
        comments.iter().map(|comment| {
            ObservedEvent::from_comment(
                comment.comment_id,
                comment.author.as_str(),
                comment.association.as_str(),
                &comment.body,
            )
        })
    };
    let state = fold(FOLD_ISSUE, observed(), None, &policy);
    for applied in &state.events {
        assert_eq!(
            applied.event.issue, FOLD_ISSUE,
            "applied another issue's event"
        );
        let comment = comments
            .iter()
            .rfind(|comment| comment.comment_id == applied.comment_id)
            .expect("an applied event comes from a comment");
        assert!(
            trust(
                &comment.author,
                &comment.association,
                FOLD_OWN_LOGIN,
                &policy.trusted_associations
            )
            .is_ok(),
            "applied an untrusted comment: {comment:?}"
        );
        assert!(
            state
                .attempt
                .is_some_and(|attempt| applied.event.attempt <= attempt),
            "applied attempt {} beyond the current {:?}",
            applied.event.attempt,
            state.attempt
        );
    }
    // Comment by comment, as sync does, in id order with the last observation of an id winning.
    let mut sorted: Vec<ObservedEvent> = observed().collect();
    sorted.sort_by_key(|event| event.comment_id);
    let mut incremental = Fold::new(FOLD_ISSUE, policy.clone());
    for (index, event) in sorted.iter().enumerate() {
        if sorted
            .get(index + 1)
            .is_some_and(|next| next.comment_id == event.comment_id)
        {
            continue;
        }
        assert!(
            incremental.apply(event.clone()).is_ok(),
            "ids are increasing"
        );
    }
    assert_eq!(&incremental.view(None), &state, "incremental fold differs");
    for lease in [
        Some(0),
        Some(1),
        state.attempt.map(|a| a.saturating_add(1)),
        Some(u64::MAX),
    ] {
        let view = incremental.view(lease);
        assert!(
            view.attempt >= state.attempt,
            "the lease moved the attempt back"
        );
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::PathBuf;

    use super::*;

    /// Every file under `fuzz/regressions/<target>/` and `fuzz/seeds/<target>/`.
    fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
        let mut inputs = Vec::new();
        for kind in ["regressions", "seeds"] {
            let dir = root.join(kind).join(target);
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries {
                let path = entry.expect("a readable directory entry").path();
                if path.is_file() {
                    let data = fs::read(&path).expect("a readable input file");
                    inputs.push((path, data));
                }
            }
        }
        inputs.sort();
        inputs
    }

    /// Runs `check` on every input of `target`, naming the file that broke it.
    fn replay(target: &str, check: fn(&[u8]), at_least: usize) {
        let inputs = inputs(target);
        assert!(
            inputs.len() >= at_least,
            "expected at least {at_least} inputs for {target}, found {}",
            inputs.len()
        );
        let mut failed = Vec::new();
        for (path, data) in &inputs {
            if std::panic::catch_unwind(|| check(data)).is_err() {
                failed.push(path.display().to_string());
            }
        }
        assert!(failed.is_empty(), "{target} inputs that fail: {failed:#?}");
    }

    #[test]
    fn marker_inputs_still_pass() {
        replay("marker", check_marker, 10);
    }

    #[test]
    fn lease_inputs_still_pass() {
        replay("lease", check_lease, 5);
    }

    #[test]
    fn config_inputs_still_pass() {
        replay("config", check_config, 5);
    }

    #[test]
    fn fold_inputs_still_pass() {
        replay("fold", check_fold, 3);
    }

    #[test]
    fn fold_inputs_decode_as_documented() {
        let text = "crew-bot OWNER 7\n<!-- crew:v1 {} -->\nhi\u{1e}someone\u{1e}x y nope\nbody";
        assert_eq!(
            decode_fold_input(text),
            vec![
                FuzzComment {
                    comment_id: 7,
                    author: "crew-bot".to_owned(),
                    association: "OWNER".to_owned(),
                    body: "<!-- crew:v1 {} -->\nhi".to_owned(),
                },
                FuzzComment {
                    comment_id: 2,
                    author: "someone".to_owned(),
                    association: String::new(),
                    body: String::new(),
                },
                FuzzComment {
                    comment_id: 3,
                    author: "x".to_owned(),
                    association: "y".to_owned(),
                    body: "body".to_owned(),
                },
            ]
        );
    }

    /// The seeds reach past the error paths, so the properties above are exercised at all.
    #[test]
    fn the_seeds_reach_the_interesting_paths() {
        let seed = |target: &str, name: &str| {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("fuzz/seeds")
                .join(target)
                .join(name);
            String::from_utf8(fs::read(&path).expect("a seed file")).expect("a UTF-8 seed")
        };
        for name in ["template.toml", "custom.toml", "dotted-keys.toml"] {
            let text = seed("config", name);
            assert!(
                Config::parse(&text, Path::new("crew.toml")).is_ok(),
                "{name}"
            );
        }
        assert!(matches!(
            marker::parse(&seed("marker", "v1-handover")),
            Ok(Some(Marker::Event(_)))
        ));
        assert!(matches!(
            marker::parse(&seed("marker", "legacy-assigned")),
            Ok(Some(Marker::Legacy(_)))
        ));
        assert!(lease::parse_lease(&seed("lease", "held")).is_ok());
        let comments = seed("fold", "lifecycle");
        let state = fold(
            FOLD_ISSUE,
            decode_fold_input(&comments).into_iter().map(|comment| {
                ObservedEvent::from_comment(
                    comment.comment_id,
                    comment.author,
                    comment.association,
                    &comment.body,
                )
            }),
            None,
            &FoldPolicy::new(FOLD_OWN_LOGIN),
        );
        assert_eq!(state.state, crate::protocol::State::Completed, "{state:#?}");
        assert!(state.released);
    }

    #[test]
    fn the_checks_catch_what_they_claim_to() {
        // A key the loaded config does not have is reported.
        let file: toml::Table = toml::from_str("[workers]\nmax = 1\nmystery = 2\n").unwrap();
        let known: toml::Table = toml::from_str("[workers]\nmax = 1\n").unwrap();
        let caught = std::panic::catch_unwind(|| assert_known_keys(&file, &known, &mut Vec::new()));
        assert!(caught.is_err());
        assert_known_keys(&known, &file, &mut Vec::new());
    }
}
