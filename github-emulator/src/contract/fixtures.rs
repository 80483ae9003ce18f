//! Recorded api.github.com traffic in octokit/fixtures' nock "normalized-fixture" format.
//!
//! Each `*.normalized-fixture.json` file is a JSON array of nock definitions:
//! `{scope, method, path, body, status, response, reqheaders, responseIsBinary, headers}` where
//! `path` includes the query string, `response` is the decoded JSON body (`""` when empty, e.g.
//! 204) and `headers` maps lower-case names to values (mostly strings; a few numbers). ETags,
//! rate-limit values and dates are placeholders (see `raw-response-headers.json` for real formats).

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// One recorded response.
#[derive(Debug, Clone, PartialEq)]
pub struct FixtureResponse {
    /// Scenario = file name without `.normalized-fixture.json` (e.g. `"add-labels-to-issue"`).
    pub scenario: String,
    /// Position of the entry inside its file.
    pub index: usize,
    /// `"https://api.github.com:443"`.
    pub scope: String,
    /// Upper-case HTTP method.
    pub method: String,
    /// Request path as recorded, including any query string.
    pub path: String,
    pub status: u16,
    /// Response body; an empty body (`""` in the file) is `Value::Null`.
    pub body: Value,
    /// Response headers, lower-case names; non-string values are rendered as JSON text,
    /// arrays joined with `", "`.
    pub headers: BTreeMap<String, String>,
    /// The request body as recorded (`""` = none → `Value::Null`).
    pub request_body: Value,
}

impl FixtureResponse {
    /// The path without its query string.
    pub fn path_only(&self) -> &str {
        self.path.split('?').next().unwrap_or(&self.path)
    }
}

/// Loads every `*.normalized-fixture.json` in `dir` (sorted by file name). Panics with a clear
/// message on a malformed file; see [`try_load_fixture_responses`] for a `Result`.
pub fn load_fixture_responses(dir: impl AsRef<Path>) -> Vec<FixtureResponse> {
    let dir = dir.as_ref();
    try_load_fixture_responses(dir)
        .unwrap_or_else(|e| panic!("loading nock fixtures from {}: {e:#}", dir.display()))
}

/// Loads every `*.normalized-fixture.json` in `dir` (sorted by file name).
pub fn try_load_fixture_responses(dir: impl AsRef<Path>) -> Result<Vec<FixtureResponse>> {
    const SUFFIX: &str = ".normalized-fixture.json";
    let dir = dir.as_ref();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(SUFFIX))
        })
        .collect();
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let scenario = name.trim_end_matches(SUFFIX).to_string();
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        let entries: Value =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", file.display()))?;
        let Some(entries) = entries.as_array() else {
            bail!(
                "{}: expected a JSON array of nock definitions",
                file.display()
            );
        };
        for (index, e) in entries.iter().enumerate() {
            out.push(
                parse_entry(&scenario, index, e)
                    .with_context(|| format!("{} entry {index}", file.display()))?,
            );
        }
    }
    Ok(out)
}

fn parse_entry(scenario: &str, index: usize, e: &Value) -> Result<FixtureResponse> {
    let text = |k: &str| -> Result<String> {
        e.get(k)
            .and_then(Value::as_str)
            .map(str::to_string)
            .with_context(|| format!("missing string `{k}`"))
    };
    let status = e
        .get("status")
        .and_then(Value::as_u64)
        .and_then(|s| u16::try_from(s).ok())
        .context("missing numeric `status`")?;
    if e.get("responseIsBinary").and_then(Value::as_bool) == Some(true) {
        bail!("binary responses are not supported");
    }
    let empty_to_null = |v: Option<&Value>| match v {
        None => Value::Null,
        Some(Value::String(s)) if s.is_empty() => Value::Null,
        Some(v) => v.clone(),
    };
    let headers = e
        .get("headers")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(k, v)| {
            let v = match v {
                Value::String(s) => s.clone(),
                Value::Array(a) => a
                    .iter()
                    .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string))
                    .collect::<Vec<_>>()
                    .join(", "),
                other => other.to_string(),
            };
            (k.to_ascii_lowercase(), v)
        })
        .collect();
    Ok(FixtureResponse {
        scenario: scenario.to_string(),
        index,
        scope: text("scope")?,
        method: text("method")?.to_ascii_uppercase(),
        path: text("path")?,
        status,
        body: empty_to_null(e.get("response")),
        headers,
        request_body: empty_to_null(e.get("body")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::{FIXTURES_DIR, RestContract, descriptions_or_skip};

    /// Real 2022 recordings that the 2025 description (octokit/openapi 23.0.2) rejects, with why.
    /// `(scenario, index)` → reason. Every entry must still fail, so the list cannot go stale.
    const KNOWN_DRIFT: &[(&str, usize, &str)] = &[(
        "rename-repository",
        2,
        "GET /repositories/{id} recorded 2022-07, before GitHub added `has_discussions`, \
         which full-repository now requires",
    )];

    /// GitHub's own `Link` headers (and renamed-repository redirects) point at
    /// `/repositories/{id}/...`, which the description does not list; those pages are the same
    /// operations, so we check them against the `/repos/{owner}/{repo}/...` templates.
    fn alias(path: &str) -> String {
        static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
        let re = RE.get_or_init(|| regex::Regex::new(r"^/repositories/[0-9]+").expect("regex"));
        re.replace(path, "/repos/owner/repo").into_owned()
    }

    #[test]
    fn loads_all_fixture_files() {
        let Some(dir) = descriptions_or_skip("fixture loading") else {
            return;
        };
        let all = load_fixture_responses(dir.join(FIXTURES_DIR));
        assert!(all.len() >= 20, "only {} fixture responses", all.len());
        let first = all
            .iter()
            .find(|f| f.scenario == "labels" && f.index == 0)
            .expect("labels fixture");
        assert_eq!(first.scope, "https://api.github.com:443");
        assert_eq!(first.method, "GET");
        assert_eq!(first.path, "/repos/octokit-fixture-org/labels/labels");
        assert_eq!(first.status, 200);
        assert!(first.body.is_array());
        assert_eq!(first.headers["x-ratelimit-used"], "1");
        assert_eq!(
            first.headers["content-type"],
            "application/json; charset=utf-8"
        );
        let deleted = all.iter().find(|f| f.status == 204).expect("a 204");
        assert_eq!(deleted.body, Value::Null);
    }

    #[test]
    fn recorded_responses_match_rest_contract() {
        let Some(dir) = descriptions_or_skip("REST contract vs fixtures") else {
            return;
        };
        let contract = RestContract::shared().expect("descriptions present");
        let all = load_fixture_responses(dir.join(FIXTURES_DIR));
        let mut checked = 0;
        let mut unexpected = Vec::new();
        let mut drift_seen = Vec::new();
        for f in &all {
            let path = alias(f.path_only());
            let Some((template, op)) = contract.match_path(&f.method, &path) else {
                continue; // not an operation crew uses
            };
            checked += 1;
            let result = contract.validate(&f.method, template, f.status, &f.body);
            let known = KNOWN_DRIFT
                .iter()
                .find(|(s, i, _)| *s == f.scenario && *i == f.index);
            match (result, known) {
                (Ok(()), None) => {}
                (Ok(()), Some((_, _, why))) => unexpected.push(format!(
                    "{}#{} ({op}) is listed as known drift ({why}) but now validates",
                    f.scenario, f.index
                )),
                (Err(errors), Some(_)) => drift_seen.push((f.scenario.clone(), f.index, errors)),
                (Err(errors), None) => unexpected.push(format!(
                    "{}#{} {} {} {}:\n  {}",
                    f.scenario,
                    f.index,
                    f.method,
                    f.path,
                    f.status,
                    errors.join("\n  ")
                )),
            }
        }
        for (s, i, errors) in &drift_seen {
            eprintln!("known drift {s}#{i}: {}", errors.join("; "));
        }
        assert!(
            checked >= 12,
            "only {checked} fixture responses matched the OpenAPI subset"
        );
        assert!(unexpected.is_empty(), "{}", unexpected.join("\n"));
    }
}
