//! What the demo sees of its GitHub: every demo issue's folded state and pull request, read
//! straight from the in-process emulator.
//!
//! Decisions, and why:
//! - **Read from the emulator's state, not through the API.** The demo reports the requests and
//!   rate points crew spent; polling the API several times a second to draw progress lines would
//!   count the demo's own watching as crew's cost. The emulator is in this process, so its state
//!   is one lock away and costs no request.
//! - **The same fold as crew's.** Comments are parsed with crew's marker codec and folded by
//!   [`crate::protocol::fold`] with crew's trust rules (collaborators count), so what the demo
//!   prints is what `crew show` would say.

use github_emulator::EmulatorHandle;

use crate::protocol::{FoldPolicy, IssueState, ObservedEvent, fold};

use super::world::{BOT_LOGIN, NAME, OWNER};

/// One issue as the demo sees it.
#[derive(Clone, Debug)]
pub struct IssueView {
    pub number: u64,
    pub title: String,
    pub open: bool,
    pub state: IssueState,
    /// The newest pull request an event named, and whether it is merged.
    pub pr_merged: Option<bool>,
}

/// Every demo issue, in number order.
pub fn snapshot(emulator: &EmulatorHandle, numbers: &[u64], max_attempts: u32) -> Vec<IssueView> {
    struct Raw {
        number: u64,
        title: String,
        open: bool,
        comments: Vec<ObservedEvent>,
    }
    let (raws, merged) = emulator.with_state(|state| {
        let Some(repo) = state.repo(OWNER, NAME) else {
            return (Vec::new(), Vec::new());
        };
        let association = |login: &str| {
            if repo.collaborators.contains_key(&login.to_lowercase()) {
                "COLLABORATOR"
            } else {
                "NONE"
            }
        };
        let raws: Vec<Raw> = numbers
            .iter()
            .filter_map(|number| repo.issues.get(number))
            .map(|issue| Raw {
                number: issue.number,
                title: issue.title.clone(),
                open: issue.state == github_emulator::state::IssueState::Open,
                comments: repo
                    .comments
                    .values()
                    .filter(|comment| comment.issue_number == issue.number)
                    .map(|comment| {
                        ObservedEvent::from_comment(
                            comment.id,
                            comment.user.clone(),
                            association(&comment.user),
                            &comment.body,
                        )
                    })
                    .collect(),
            })
            .collect();
        let merged: Vec<(u64, bool)> = repo
            .issues
            .values()
            .filter_map(|issue| {
                let pull = issue.pull.as_ref()?;
                Some((issue.number, pull.merged_at.is_some()))
            })
            .collect();
        (raws, merged)
    });
    let mut policy = FoldPolicy::new(BOT_LOGIN);
    policy.max_attempts = u64::from(max_attempts);
    raws.into_iter()
        .map(|raw| {
            let state = fold(raw.number, raw.comments, None, &policy);
            let pr_merged = state.pr.map(|pr| {
                merged
                    .iter()
                    .any(|(number, is_merged)| *number == pr && *is_merged)
            });
            IssueView {
                number: raw.number,
                title: raw.title,
                open: raw.open,
                state,
                pr_merged,
            }
        })
        .collect()
}
