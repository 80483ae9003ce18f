//! What each template is rendered with: the public context structs callers fill in, and the views
//! the templates actually see.
//!
//! Callers describe *facts* (the issue body, a reviewer's comment); the view adds what only the
//! renderer should decide, above all the code fence around untrusted text. The fence is computed
//! here, in Rust, from the text it encloses (one backtick longer than the longest run of backticks
//! in it, at least three), so no issue body can close its fence early and smuggle lines out of the
//! "untrusted" block, whatever a repository's template override does around it.
//!
//! None of these structs has a field for a token, and none may grow one: rendered text ends up in
//! prompts, comments and PR bodies, all of which other people read.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::protocol::{Event, EventBody};

/// A code fence that `text` cannot close: backticks, one more than its longest backtick run, and
/// never fewer than three.
pub fn fence_for(text: &str) -> String {
    let mut longest = 0usize;
    let mut current = 0usize;
    for c in text.chars() {
        if c == '`' {
            current += 1;
            longest = longest.max(current);
        } else {
            current = 0;
        }
    }
    "`".repeat((longest + 1).max(3))
}

/// A name shown outside any fence (a login, a file path): one line, no backticks, no control
/// characters, so it cannot break out of the inline code or the line it is written on.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c == '`' || c.is_control() { '?' } else { c })
        .collect()
}

/// Untrusted or verbatim text with the fence that keeps it contained.
///
/// Templates write `{{ x.fence }}text`, a newline, `{{ x.text }}`, a newline and `{{ x.fence }}`.
/// Trailing newlines are trimmed so the closing fence follows the text directly.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Fenced {
    pub fence: String,
    pub text: String,
}

impl Fenced {
    pub fn new(text: &str) -> Fenced {
        let text = text.trim_end_matches(['\n', '\r']);
        Fenced {
            fence: fence_for(text),
            text: text.to_owned(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Worker prompt
// ---------------------------------------------------------------------------------------------

/// Everything the worker prompt (`templates/worker.md`) is rendered from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct WorkerPromptContext {
    /// `owner/name`.
    pub repo: String,
    pub issue: IssueText,
    /// Comments on the issue that are not crew events, oldest first.
    pub comments: Vec<IssueComment>,
    /// The latest handover of an earlier attempt, if this attempt continues one.
    pub handover: Option<HandoverContext>,
    /// Questions this issue's workers asked and the answers they got, oldest first.
    pub answers: Vec<QuestionAnswer>,
    /// The review that sent the work back, if one did.
    pub review: Option<ReviewContext>,
    /// This attempt, from 1.
    pub attempt: u64,
    /// `workers.max_attempts`, if there is one.
    pub max_attempts: Option<u64>,
    /// The worker id (`worker-<unix time>-<issue>`).
    pub worker: String,
    /// The agent's name in crew.toml (`claude`, `codex`, …).
    pub agent: String,
    pub profile: ProfileContext,
    /// The branch the worker commits to (`None`: a detached research worktree).
    pub branch: Option<String>,
    /// The worktree's absolute path.
    pub worktree: String,
    /// The base branch (`main`).
    pub base: String,
    /// The base commit the branch started from, when known.
    pub base_sha: Option<String>,
    /// How the agent invokes crew: `crew`, or an absolute path when crew is not on its PATH.
    pub crew: String,
}

/// The issue as its author wrote it: untrusted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct IssueText {
    pub number: u64,
    pub title: String,
    pub body: String,
    pub url: Option<String>,
}

/// A comment on the issue that is not a crew event: untrusted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IssueComment {
    pub author: String,
    pub at: DateTime<Utc>,
    pub body: String,
}

/// A question a worker asked (`crew blocked`) and its answer (`crew answer`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct QuestionAnswer {
    /// The attempt that asked.
    pub attempt: u64,
    pub question: String,
    /// `None` while unanswered.
    pub answer: Option<String>,
    /// Who answered, when known.
    pub answered_by: Option<String>,
}

/// Changes requested on the worker's pull request.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ReviewContext {
    pub pr: u64,
    /// The text given to `crew request-changes --body`, or the review's own body.
    pub body: Option<String>,
    /// Line comments from the pull request's reviews.
    pub comments: Vec<ReviewComment>,
}

/// One review comment on the pull request.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ReviewComment {
    pub author: String,
    pub path: Option<String>,
    pub line: Option<u64>,
    pub body: String,
}

/// The tool profile the worker runs under.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ProfileContext {
    /// `code`, `research`, `review`, or a user's own.
    pub name: String,
    /// Tools in Claude Code's `--allowedTools` spelling.
    pub tools: Vec<String>,
    /// Whether the worker may push its branch and open a PR.
    pub push: bool,
}

/// What the worker template sees: the context plus fences and the rendered handover.
#[derive(Serialize)]
pub(crate) struct WorkerView<'a> {
    repo: &'a str,
    issue: IssueView<'a>,
    comments: Vec<CommentView>,
    handover: Option<String>,
    answers: Vec<AnswerView>,
    review: Option<ReviewView>,
    attempt: u64,
    max_attempts: Option<u64>,
    worker: &'a str,
    agent: &'a str,
    profile: &'a ProfileContext,
    branch: Option<&'a str>,
    worktree: &'a str,
    base: &'a str,
    base_sha: Option<&'a str>,
    crew: &'a str,
}

#[derive(Serialize)]
struct IssueView<'a> {
    number: u64,
    url: Option<&'a str>,
    /// Title and body in one fence, so a title cannot escape either.
    title: &'a str,
    fence: String,
    body: String,
}

#[derive(Serialize)]
struct CommentView {
    author: String,
    at: String,
    body: Fenced,
}

#[derive(Serialize)]
struct AnswerView {
    attempt: u64,
    question: Fenced,
    answer: Option<Fenced>,
    answered_by: Option<String>,
}

#[derive(Serialize)]
struct ReviewView {
    pr: u64,
    body: Option<Fenced>,
    comments: Vec<ReviewCommentView>,
}

#[derive(Serialize)]
struct ReviewCommentView {
    author: String,
    path: Option<String>,
    line: Option<u64>,
    body: Fenced,
}

impl<'a> WorkerView<'a> {
    pub(crate) fn new(context: &'a WorkerPromptContext, handover: Option<String>) -> Self {
        let issue = &context.issue;
        let body = issue.body.trim_end_matches(['\n', '\r']).to_owned();
        let fence = fence_for(&format!("{}\n{}", issue.title, body));
        WorkerView {
            repo: &context.repo,
            issue: IssueView {
                number: issue.number,
                url: issue.url.as_deref(),
                title: &issue.title,
                fence,
                body,
            },
            comments: context
                .comments
                .iter()
                .map(|comment| CommentView {
                    author: one_line(&comment.author),
                    at: comment.at.format("%Y-%m-%d %H:%M UTC").to_string(),
                    body: Fenced::new(&comment.body),
                })
                .collect(),
            handover,
            answers: context
                .answers
                .iter()
                .map(|qa| AnswerView {
                    attempt: qa.attempt,
                    question: Fenced::new(&qa.question),
                    answer: qa.answer.as_deref().map(Fenced::new),
                    answered_by: qa.answered_by.as_deref().map(one_line),
                })
                .collect(),
            review: context.review.as_ref().map(|review| ReviewView {
                pr: review.pr,
                body: review.body.as_deref().map(Fenced::new),
                comments: review
                    .comments
                    .iter()
                    .map(|comment| ReviewCommentView {
                        author: one_line(&comment.author),
                        path: comment.path.as_deref().map(one_line),
                        line: comment.line,
                        body: Fenced::new(&comment.body),
                    })
                    .collect(),
            }),
            attempt: context.attempt,
            max_attempts: context.max_attempts,
            worker: &context.worker,
            agent: &context.agent,
            profile: &context.profile,
            branch: context.branch.as_deref(),
            worktree: &context.worktree,
            base: &context.base,
            base_sha: context.base_sha.as_deref(),
            crew: &context.crew,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Handover
// ---------------------------------------------------------------------------------------------

/// A handover as the next attempt reads it (`templates/handover.md`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HandoverContext {
    pub issue: u64,
    /// The attempt that handed over.
    pub attempt: u64,
    pub worker: String,
    pub summary: String,
    pub next_steps: Vec<String>,
    /// Files touched.
    pub files: Vec<String>,
    pub branch: Option<String>,
    pub base_sha: Option<String>,
    pub head_sha: Option<String>,
    /// `git diff --stat <base>...<head>`.
    pub diff_stat: Option<String>,
    /// The last lines of the agent's log, tokens already redacted; set when crew salvaged a
    /// worker that exited without handing over itself.
    pub log_tail: Option<String>,
}

#[derive(Serialize)]
pub(crate) struct HandoverView<'a> {
    issue: u64,
    attempt: u64,
    worker: &'a str,
    summary: &'a str,
    next_steps: &'a [String],
    files: &'a [String],
    branch: Option<&'a str>,
    base_sha: Option<&'a str>,
    head_sha: Option<&'a str>,
    diff_stat: Option<Fenced>,
    log_tail: Option<Fenced>,
}

impl<'a> HandoverView<'a> {
    pub(crate) fn new(context: &'a HandoverContext) -> Self {
        HandoverView {
            issue: context.issue,
            attempt: context.attempt,
            worker: &context.worker,
            summary: context.summary.trim(),
            next_steps: &context.next_steps,
            files: &context.files,
            branch: context.branch.as_deref(),
            base_sha: context.base_sha.as_deref(),
            head_sha: context.head_sha.as_deref(),
            diff_stat: context.diff_stat.as_deref().map(Fenced::new),
            log_tail: context.log_tail.as_deref().map(Fenced::new),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Pull request body
// ---------------------------------------------------------------------------------------------

/// The body of the PR `crew done` opens (`templates/pr_body.md`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PrBodyContext {
    pub issue: u64,
    pub title: String,
    /// What the worker says it did.
    pub summary: String,
    pub attempt: u64,
    pub worker: String,
    pub agent: String,
    pub profile: String,
    pub branch: String,
    pub base: String,
}

// ---------------------------------------------------------------------------------------------
// Event comments
// ---------------------------------------------------------------------------------------------

/// The human text under an event's marker (`templates/comments/<kind>.md`).
///
/// One struct for every kind, flat, so templates read `{{ question }}` rather than digging; each
/// kind's template may use only the envelope and its own fields (see `COMMENT_FIELDS`), which the
/// loader enforces. [`CommentContext::from_event`] fills it from the event; `diff_stat` and
/// `log_tail` are not in the marker and are set by whoever salvages a worker.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CommentContext {
    pub issue: u64,
    pub attempt: u64,
    pub worker: String,
    /// `assigned`: where the attempt runs.
    pub host: Option<String>,
    pub agent: Option<String>,
    pub profile: Option<String>,
    pub branch: Option<String>,
    pub worktree: Option<String>,
    /// `progress`.
    pub message: Option<String>,
    /// `blocked`.
    pub question: Option<String>,
    /// `answered`.
    pub answer: Option<String>,
    /// `handover`.
    pub summary: Option<String>,
    pub next_steps: Vec<String>,
    pub files: Vec<String>,
    pub base_sha: Option<String>,
    pub head_sha: Option<String>,
    pub diff_stat: Option<String>,
    pub log_tail: Option<String>,
    /// `in_review`, `changes_requested`, `approved`, `completed`.
    pub pr: Option<u64>,
    /// `changes_requested`: the review text.
    pub review: Option<String>,
    /// `failed`, `cancelled`.
    pub reason: Option<String>,
}

impl CommentContext {
    /// Everything the event itself says.
    pub fn from_event(event: &Event) -> CommentContext {
        let mut context = CommentContext {
            issue: event.issue,
            attempt: event.attempt,
            worker: event.worker.clone(),
            pr: event.body.pr(),
            ..CommentContext::default()
        };
        match &event.body {
            EventBody::Assigned(assignment) => {
                context.host = assignment.host.clone();
                context.agent = assignment.agent.clone();
                context.profile = assignment.profile.clone();
                context.branch = assignment.branch.clone();
                context.worktree = assignment.worktree.clone();
            }
            EventBody::Progress { message } => context.message = Some(message.clone()),
            EventBody::Blocked { question } => context.question = Some(question.clone()),
            EventBody::Answered { answer } => context.answer = Some(answer.clone()),
            EventBody::Handover(handover) => {
                context.summary = Some(handover.summary.clone());
                context.next_steps = handover.next_steps.clone();
                context.files = handover.files.clone();
                context.base_sha = handover.base_sha.clone();
                context.head_sha = handover.head_sha.clone();
            }
            EventBody::ChangesRequested { body, .. } => context.review = body.clone(),
            EventBody::Failed { reason } => context.reason = Some(reason.clone()),
            EventBody::Cancelled { reason } => context.reason = reason.clone(),
            EventBody::Started {}
            | EventBody::InReview { .. }
            | EventBody::Approved { .. }
            | EventBody::Completed { .. }
            | EventBody::Released {} => {}
        }
        context
    }
}

/// What a comment template sees: the context, with `diff_stat` and `log_tail` fenced (they are
/// verbatim output, and a file name or log line may contain backticks).
pub(crate) fn comment_view(context: &CommentContext) -> serde_json::Value {
    let mut value = serde_json::to_value(context).unwrap_or_default();
    if let Some(object) = value.as_object_mut() {
        for (key, text) in [
            ("diff_stat", &context.diff_stat),
            ("log_tail", &context.log_tail),
        ] {
            let fenced = text.as_deref().map(Fenced::new);
            object.insert(
                key.to_owned(),
                serde_json::to_value(fenced).unwrap_or_default(),
            );
        }
    }
    value
}
