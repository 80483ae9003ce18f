//! GitHub Actions: starting a workflow run with `workflow_dispatch` (runtime `actions`,
//! DESIGN.md 3).
//!
//! Decisions, and why:
//! - **Never sent twice.** A `workflow_dispatch` has no precondition and GitHub offers no way to
//!   find the run a lost response started by its inputs, so the request is [`Resend::Unsafe`]
//!   without an [`AppliedCheck`](super::AppliedCheck): it is re-sent only when it certainly was
//!   not applied (a connect error, a rate limit). A second run of the same attempt would be a
//!   second worker on one lease; a missing run only costs the lease's TTL.
//! - **Inputs are strings.** GitHub rejects any other JSON type in `inputs` (422), so the type
//!   says so.
//!
//! Cost: 1 request.

use std::collections::BTreeMap;

use http::Method;
use serde_json::json;

use super::transport::{Request, Resend};
use super::{GitHub, GitHubError, RepoSlug};

impl GitHub {
    /// `POST /repos/{owner}/{repo}/actions/workflows/{workflow_id}/dispatches`: runs the
    /// workflow `workflow` (its file name, e.g. `crew-worker.yml`, or its id) on `git_ref` with
    /// `inputs`. GitHub answers 204 with no body.
    pub async fn dispatch_workflow(
        &self,
        repo: &RepoSlug,
        workflow: &str,
        git_ref: &str,
        inputs: &BTreeMap<String, String>,
    ) -> Result<(), GitHubError> {
        let request = Request::write(
            Method::POST,
            "POST /repos/{owner}/{repo}/actions/workflows/{workflow_id}/dispatches",
            format!(
                "/repos/{}/{}/actions/workflows/{}/dispatches",
                encode(repo.owner()),
                encode(repo.name()),
                encode(workflow)
            ),
            Some(json!({ "ref": git_ref, "inputs": inputs })),
            Resend::Unsafe,
        );
        self.send::<(), _>(&request, None, |_| Ok(())).await
    }
}

/// Percent-encodes a path segment.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        let c = byte as char;
        if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~') {
            out.push(c);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::encode;

    #[test]
    fn a_workflow_file_name_stays_one_path_segment() {
        assert_eq!(encode("crew-worker.yml"), "crew-worker.yml");
        assert_eq!(encode("a/b c"), "a%2Fb%20c");
    }
}
