//! crew against GitHub's published descriptions (`../shared/github`), not against the emulator:
//! recorded api.github.com responses decode with crew's own wire types and error decoding, and
//! every GraphQL document in crew's source validates against GitHub's schema (and is served by
//! the emulator, so tests exercise it). Skipped with a printed notice where the folder is absent.

use std::path::Path;

use crew::github::{Issue, Label, Repository, decode_error};
use github_emulator::contract::{
    FixtureResponse, GraphqlContract, descriptions_or_skip, load_fixture_responses,
};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

fn fixtures() -> Option<Vec<FixtureResponse>> {
    let dir = descriptions_or_skip("recorded-fixture decoding")?;
    Some(load_fixture_responses(dir.join("fixtures")))
}

fn headers_of(fixture: &FixtureResponse) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in &fixture.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.insert(name, value);
        }
    }
    headers
}

fn decode<T: serde::de::DeserializeOwned>(fixture: &FixtureResponse) -> T {
    serde_json::from_value(fixture.body.clone()).unwrap_or_else(|error| {
        panic!(
            "{} #{} {} {} does not decode with crew's types: {error}",
            fixture.scenario, fixture.index, fixture.method, fixture.path
        )
    })
}

#[test]
fn recorded_github_responses_decode_with_crews_types() {
    let Some(fixtures) = fixtures() else {
        return;
    };
    let mut decoded = std::collections::BTreeMap::<&str, usize>::new();
    for fixture in &fixtures {
        let path = fixture.path_only();
        let success = (200..300).contains(&fixture.status) && !fixture.body.is_null();
        let in_repo = path.starts_with("/repos/") || path.starts_with("/repositories/");
        let is_repo_path = in_repo && path.trim_end_matches('/').split('/').count() == 4;
        if !in_repo {
            continue;
        } else if success && fixture.method == "GET" && path.ends_with("/issues") {
            let issues: Vec<Issue> = decode(fixture);
            assert!(!issues.is_empty());
            for issue in &issues {
                assert!(issue.number > 0);
                assert!(issue.state == "open" || issue.state == "closed");
            }
            *decoded.entry("issue list").or_default() += 1;
        } else if success && fixture.method == "POST" && path.ends_with("/issues") {
            let issue: Issue = decode(fixture);
            assert!(!issue.is_pull_request());
            *decoded.entry("created issue").or_default() += 1;
        } else if success && path.ends_with("/labels") && fixture.body.is_array() {
            let labels: Vec<Label> = decode(fixture);
            assert!(labels.iter().all(|l| !l.name.is_empty()));
            *decoded.entry("label list").or_default() += 1;
        } else if success && path.contains("/labels") && fixture.body.is_object() {
            let label: Label = decode(fixture);
            assert!(!label.name.is_empty());
            *decoded.entry("label").or_default() += 1;
        } else if success && is_repo_path && fixture.body.is_object() {
            let repo: Repository = decode(fixture);
            assert!(repo.full_name.contains('/'));
            assert!(!repo.default_branch.is_empty());
            *decoded.entry("repository").or_default() += 1;
        } else if fixture.status >= 400 {
            let status = StatusCode::from_u16(fixture.status).expect("status");
            let body = fixture.body.to_string();
            let error = decode_error(path, status, &headers_of(fixture), body.as_bytes());
            let text = error.to_string();
            let message = fixture.body["message"].as_str().unwrap_or_default();
            assert!(
                text.contains(message),
                "crew's error keeps GitHub's message {message:?}: {text}"
            );
            *decoded.entry("error").or_default() += 1;
        }
    }
    // The recordings hold each of these kinds; if a kind stopped being recognised this fails
    // instead of silently checking less.
    for kind in [
        "issue list",
        "created issue",
        "label list",
        "label",
        "repository",
        "error",
    ] {
        assert!(
            decoded.get(kind).copied().unwrap_or(0) > 0,
            "no recorded {kind} was decoded: {decoded:?}"
        );
    }
}

/// GraphQL documents in crew's source: every string constant that starts with `query` or
/// `mutation`. Collected from the source files, so a new document cannot skip the check.
fn documents_in_source() -> Vec<(String, String)> {
    fn walk(dir: &Path, found: &mut Vec<(String, String)>) {
        for entry in std::fs::read_dir(dir).expect("src readable") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(&path, found);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("source readable");
                let mut rest = text.as_str();
                while let Some(start) = rest.find("\"query ").or_else(|| rest.find("\"mutation ")) {
                    let after = &rest[start + 1..];
                    let end = after.find("}\"").map(|i| i + 1).expect("document ends");
                    found.push((path.display().to_string(), after[..end].to_string()));
                    rest = &after[end..];
                }
            }
        }
    }
    let mut found = Vec::new();
    walk(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut found,
    );
    found
}

#[test]
fn every_graphql_document_crew_sends_validates_against_githubs_schema() {
    let documents = documents_in_source();
    assert!(
        documents.len() >= 2,
        "crew's GraphQL documents were found in src/: {documents:?}"
    );
    if descriptions_or_skip("crew GraphQL documents against GitHub's schema").is_none() {
        return;
    }
    let github = GraphqlContract::shared().expect("GitHub's schema loads");
    let emulator_sdl = github_emulator::graphql_sdl();
    let emulator = GraphqlContract::from_sdl(&emulator_sdl, "emulator.graphql")
        .expect("the emulator's schema parses");
    for (file, document) in &documents {
        if let Err(error) = github.validate_document(document) {
            panic!("{file}: a document crew sends is not valid on GitHub:\n{document}\n{error}");
        }
        if let Err(error) = emulator.validate_document(document) {
            panic!(
                "{file}: the emulator does not serve a document crew sends (tests would not cover it):\n{document}\n{error}"
            );
        }
    }
}
