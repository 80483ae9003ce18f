//! Repository labels: the `crew:*` labels' look, listing a repository's labels and creating one
//! (`crew init`).
//!
//! Decisions, and why:
//! - **Colours and descriptions live beside [`CREW_LABELS`](super::CREW_LABELS)**, one spec per label, and a test
//!   keeps the two lists in step, so a label added to the mirror cannot be forgotten by init.
//! - **Creating a label that already exists is not an error** (422 `already_exists`): someone
//!   else, or a retry of a request whose answer was lost, created it, which is what was wanted.
//!   That also makes the POST safe to resend.
//! - **Existing labels are never edited**: a maintainer who recoloured `crew:blocked` meant it.

use http::Method;
use serde_json::json;

use super::transport::{Request, Resend};
use super::wire::Label;
use super::{GitHub, GitHubError, RepoSlug};

/// How crew creates one of its labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LabelSpec {
    pub name: &'static str,
    /// Six hex digits, without `#`.
    pub color: &'static str,
    /// At most 100 characters (GitHub's limit).
    pub description: &'static str,
}

/// The `crew:*` labels, in [`CREW_LABELS`](super::CREW_LABELS) order.
pub const CREW_LABEL_SPECS: [LabelSpec; 4] = [
    LabelSpec {
        name: "crew:working",
        color: "1d76db",
        description: "crew: an agent is working on this issue",
    },
    LabelSpec {
        name: "crew:blocked",
        color: "fbca04",
        description: "crew: the agent asked a question; answer with `crew answer`",
    },
    LabelSpec {
        name: "crew:review",
        color: "0e8a16",
        description: "crew: a pull request awaits review",
    },
    LabelSpec {
        name: "crew:needs-human",
        color: "d93f0b",
        description: "crew: the attempt failed or gave up; a maintainer must decide",
    },
];

/// What [`GitHub::create_label`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelCreated {
    Created,
    /// It existed already (created meanwhile by someone else, or by a resent request).
    AlreadyExists,
}

impl GitHub {
    /// `GET /repos/{owner}/{repo}/labels`, every page.
    pub async fn repo_labels(&self, repo: &RepoSlug) -> Result<Vec<Label>, GitHubError> {
        self.get_all_pages(
            "GET /repos/{owner}/{repo}/labels",
            format!(
                "/repos/{}/{}/labels?per_page=100",
                repo.owner(),
                repo.name()
            ),
        )
        .await
    }

    /// `POST /repos/{owner}/{repo}/labels` (needs push access).
    pub async fn create_label(
        &self,
        repo: &RepoSlug,
        label: &LabelSpec,
    ) -> Result<LabelCreated, GitHubError> {
        let request = Request::write(
            Method::POST,
            "POST /repos/{owner}/{repo}/labels",
            format!("/repos/{}/{}/labels", repo.owner(), repo.name()),
            Some(json!({
                "name": label.name,
                "color": label.color,
                "description": label.description,
            })),
            Resend::Safe,
        );
        match self.send(&request, None, |_| Ok(())).await {
            Ok(()) => Ok(LabelCreated::Created),
            Err(GitHubError::Validation { errors, .. })
                if errors
                    .iter()
                    .any(|detail| detail.code.as_deref() == Some("already_exists")) =>
            {
                Ok(LabelCreated::AlreadyExists)
            }
            Err(error) => Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::github::CREW_LABELS;

    #[test]
    fn every_mirrored_label_has_a_valid_spec() {
        let names: Vec<&str> = CREW_LABEL_SPECS.iter().map(|spec| spec.name).collect();
        assert_eq!(names, CREW_LABELS);
        for spec in CREW_LABEL_SPECS {
            assert_eq!(spec.color.len(), 6, "{}", spec.name);
            assert!(spec.color.chars().all(|c| c.is_ascii_hexdigit()));
            assert!(spec.description.chars().count() <= 100);
        }
    }
}
