//! Contract checks against GitHub's own API descriptions.
//!
//! The emulator must not answer anything GitHub does not describe. This module loads GitHub's
//! descriptions from `../shared/github/` (beside the checkout, see [`github_description_dir`]) and
//! offers three checks that other test suites call:
//!
//! * [`RestContract`]: every REST response (method, path template, status, body) is validated
//!   against the OpenAPI 3.0.3 subset `github-rest-subset.json`, converted to JSON Schema 2020-12.
//! * [`GraphqlContract`]: executable documents validate against GitHub's GraphQL schema, and the
//!   emulator's SDL is a strict subset of it (same types, fields, arguments, type strings).
//! * [`load_fixture_responses`]: recorded real api.github.com traffic (nock fixtures).
//!
//! Where the descriptions folder is absent, [`locate_github_descriptions`] says why, and callers
//! print a notice that the contract check was skipped.

use std::path::{Path, PathBuf};

mod fixtures;
mod graphql;
mod rest;

pub use fixtures::{FixtureResponse, load_fixture_responses, try_load_fixture_responses};
pub use graphql::GraphqlContract;
pub use rest::RestContract;

/// Environment variable that overrides where GitHub's descriptions are found.
pub const DESCRIPTIONS_ENV: &str = "CREW_GITHUB_DESCRIPTIONS";
/// File name of the OpenAPI subset inside the descriptions folder.
pub const REST_FILE: &str = "github-rest-subset.json";
/// File name of GitHub's GraphQL SDL inside the descriptions folder.
pub const GRAPHQL_SCHEMA_FILE: &str = "github-schema.graphql";
/// File name of the sample operations inside the descriptions folder.
pub const GRAPHQL_SAMPLES_FILE: &str = "graphql-sample-operations.graphql";
/// Folder of nock recordings inside the descriptions folder.
pub const FIXTURES_DIR: &str = "fixtures";

/// Locates GitHub's API descriptions, or says why they are not available.
///
/// `$CREW_GITHUB_DESCRIPTIONS` wins when set (and must then be a folder holding
/// `github-rest-subset.json`); otherwise the folder is `<workspace root>/../shared/github`, where the
/// workspace root is the parent of this crate's manifest directory.
pub fn locate_github_descriptions() -> Result<PathBuf, String> {
    let (dir, origin) = match std::env::var_os(DESCRIPTIONS_ENV) {
        Some(v) if !v.is_empty() => (PathBuf::from(v), format!("${DESCRIPTIONS_ENV}")),
        _ => {
            let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
            let workspace = manifest.parent().unwrap_or(manifest);
            (
                workspace.join("..").join("shared").join("github"),
                "<workspace root>/../shared/github".to_string(),
            )
        }
    };
    if !dir.is_dir() {
        return Err(format!(
            "GitHub API descriptions not found: {} ({origin}) is not a directory",
            dir.display()
        ));
    }
    if !dir.join(REST_FILE).is_file() {
        return Err(format!(
            "GitHub API descriptions incomplete: {} has no {REST_FILE}",
            dir.display()
        ));
    }
    Ok(dir.canonicalize().unwrap_or(dir))
}

/// The folder holding GitHub's API descriptions (`github-rest-subset.json`,
/// `github-schema.graphql`, `fixtures/`), if present. See [`locate_github_descriptions`].
pub fn github_description_dir() -> Option<PathBuf> {
    locate_github_descriptions().ok()
}

/// Prints the standard "contract check skipped" notice and returns the folder, for tests:
///
/// ```ignore
/// let Some(dir) = github_emulator::contract::descriptions_or_skip("REST contract") else { return };
/// ```
pub fn descriptions_or_skip(check: &str) -> Option<PathBuf> {
    match locate_github_descriptions() {
        Ok(dir) => Some(dir),
        Err(why) => {
            eprintln!("NOTICE: {check} check skipped: {why}");
            None
        }
    }
}
