//! The demo's maintainer: what a person at the terminal would do next, decided from what the
//! issues show, and done with crew's own maintainer commands.
//!
//! Decisions, and why:
//! - **Pure deciding, thin doing** (CONVENTIONS 8): [`next_action`] looks at the observed issues
//!   and answers with one [`Action`]; the demo runs it as `crew answer`, `crew request-changes`,
//!   `crew approve` or `crew merge`, so the demo exercises exactly what a maintainer types.
//! - **One review round, on the issue written for it.** The issue whose script asks for changes
//!   is sent back once (its fold has no `changes_requested` yet); every other pull request is
//!   approved as it arrives, and an approved one is merged. A real agent (`--agent`) gets the
//!   same treatment, so the demo world walks the same paths whoever does the work.
//! - **Questions are answered from the world**: the issue that is written to block has its
//!   answer there; a question on any other issue (a real agent may ask one) gets a neutral reply
//!   rather than being left hanging.

use crate::protocol::{EventKind, State};

use super::observe::IssueView;
use super::world;

/// What the maintainer does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Answer { issue: u64, text: String },
    RequestChanges { issue: u64, body: String },
    Approve { issue: u64 },
    Merge { issue: u64 },
}

impl Action {
    pub fn issue(&self) -> u64 {
        match self {
            Action::Answer { issue, .. }
            | Action::RequestChanges { issue, .. }
            | Action::Approve { issue }
            | Action::Merge { issue } => *issue,
        }
    }

    /// The `crew` arguments that carry it out.
    pub fn args(&self) -> Vec<String> {
        match self {
            Action::Answer { issue, text } => {
                vec!["answer".into(), issue.to_string(), text.clone()]
            }
            Action::RequestChanges { issue, body } => vec![
                "request-changes".into(),
                issue.to_string(),
                "--body".into(),
                body.clone(),
            ],
            Action::Approve { issue } => vec!["approve".into(), issue.to_string()],
            Action::Merge { issue } => vec!["merge".into(), issue.to_string()],
        }
    }

    /// A short name for messages.
    pub fn verb(&self) -> &'static str {
        match self {
            Action::Answer { .. } => "answer",
            Action::RequestChanges { .. } => "request changes on",
            Action::Approve { .. } => "approve",
            Action::Merge { .. } => "merge",
        }
    }
}

/// What the maintainer does next for `issue`, if anything.
pub fn next_action(issue: &IssueView) -> Option<Action> {
    let number = issue.number;
    let scripted = world::issue(number);
    match issue.state.state {
        State::Blocked => Some(Action::Answer {
            issue: number,
            text: scripted
                .map(world::DemoIssue::answer)
                .unwrap_or("Use your best judgement.")
                .to_owned(),
        }),
        State::InReview => {
            let reviewed = issue
                .state
                .events
                .iter()
                .any(|applied| applied.event.kind() == EventKind::ChangesRequested);
            match scripted.and_then(world::DemoIssue::review) {
                Some(review) if !reviewed => Some(Action::RequestChanges {
                    issue: number,
                    body: review.to_owned(),
                }),
                _ => Some(Action::Approve { issue: number }),
            }
        }
        State::Approved => Some(Action::Merge { issue: number }),
        _ => None,
    }
}

/// Whether the demo is over for `issue`: completed, or somewhere only a human gets it out of.
pub fn settled(issue: &IssueView) -> bool {
    matches!(
        issue.state.state,
        State::Completed | State::Cancelled | State::NeedsHuman
    ) || !issue.open && !issue.state.state.is_active()
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};

    use super::*;
    use crate::protocol::{
        Assignment, Event, EventBody, FoldPolicy, ObservedEvent, fold, render_comment,
    };

    fn view(number: u64, bodies: Vec<EventBody>) -> IssueView {
        let events = bodies.into_iter().enumerate().map(|(index, body)| {
            let event = Event {
                issue: number,
                attempt: 1,
                worker: format!("worker-1-{number}"),
                op: format!("op-{index}"),
                at: DateTime::<Utc>::UNIX_EPOCH,
                body,
            };
            ObservedEvent::from_comment(
                index as u64 + 1,
                "crew-bot",
                "COLLABORATOR",
                &render_comment(&event, ""),
            )
        });
        IssueView {
            number,
            title: String::new(),
            open: true,
            state: fold(number, events, None, &FoldPolicy::new("crew-bot")),
            pr_merged: None,
        }
    }

    fn in_review() -> Vec<EventBody> {
        vec![
            EventBody::Assigned(Assignment::default()),
            EventBody::Started {},
            EventBody::InReview { pr: 9 },
        ]
    }

    #[test]
    fn the_scripted_review_is_sent_once_then_the_pull_request_is_approved() {
        let review = world::ISSUES[4].review().unwrap_or_default();
        assert!(matches!(
            next_action(&view(5, in_review())),
            Some(Action::RequestChanges { issue: 5, ref body }) if body == review
        ));
        let mut again = in_review();
        again.extend([
            EventBody::ChangesRequested { pr: 9, body: None },
            EventBody::Assigned(Assignment::default()),
            EventBody::Started {},
            EventBody::InReview { pr: 9 },
        ]);
        assert_eq!(
            next_action(&view(5, again)),
            Some(Action::Approve { issue: 5 })
        );
        assert_eq!(
            next_action(&view(1, in_review())),
            Some(Action::Approve { issue: 1 })
        );
    }

    #[test]
    fn questions_are_answered_approvals_merged_and_work_left_alone() {
        let mut blocked = vec![
            EventBody::Assigned(Assignment::default()),
            EventBody::Started {},
        ];
        assert_eq!(next_action(&view(3, blocked.clone())), None);
        blocked.push(EventBody::Blocked {
            question: "which?".to_owned(),
        });
        assert_eq!(
            next_action(&view(3, blocked)),
            Some(Action::Answer {
                issue: 3,
                text: "teal".to_owned()
            })
        );
        let mut approved = in_review();
        approved.push(EventBody::Approved { pr: 9 });
        assert_eq!(
            next_action(&view(1, approved.clone())),
            Some(Action::Merge { issue: 1 })
        );
        approved.push(EventBody::Completed { pr: Some(9) });
        let done = view(1, approved);
        assert_eq!(next_action(&done), None);
        assert!(settled(&done));
    }
}
