//! `crew brief <issue>`: the prompt the next attempt at an issue would get and the exact command
//! line that would run it, without running anything (DESIGN.md 3).
//!
//! A dry run in the strict sense: GitHub is only read (the issue, its comments, the token's login
//! and, without `base`, the repository), and nothing is written anywhere: no comment, no lease, no
//! worktree, no prompt file, not even the local cache (the client is built without one, so the
//! conditional GETs do not store their answers). The branch and worktree are computed from the
//! templates, not created; a missing agent program is a warning, not an error.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Args;
use serde::Serialize;

use crate::agents::{self, AgentError, InvocationContext, Profile};
use crate::cache::Cache;
use crate::context::Ctx;
use crate::error::{Classify, CrewError};
use crate::github::{GitHub, GitHubConfig, Issue as WireIssue, IssueComment as WireComment};
use crate::observe::fold_policy;
use crate::prompt::{
    HandoverContext, IssueComment, IssueText, ProfileContext, Prompts, QuestionAnswer,
    ReviewComment, ReviewContext, WorkerPromptContext,
};
use crate::protocol::{
    AppliedEvent, EventBody, IgnoreReason, IssueState, ObservedEvent, State, fold, trust,
};
use crate::settings::{Config, Env, RepoSlug, Settings};
use crate::sync::carries_marker;
use crate::workspace::{CREW_DIR, branch_name, worktree_path};

/// The prompt file's name inside `<worktree>/.crew/`.
pub(crate) const PROMPT_FILE: &str = "prompt.md";

/// Print the prompt and the exact command line the next attempt at an issue would run, without
/// running anything
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  crew brief 42
      Print the prompt and command line #42's next attempt would run
  crew brief 42 --agent codex --profile research
      ... with another agent and profile")]
pub struct BriefArgs {
    /// The issue number
    pub issue: u64,

    /// The tool profile [default: workers.profile]
    #[arg(long, value_name = "NAME")]
    pub profile: Option<String>,

    /// The agent [default: workers.agent]
    #[arg(long, value_name = "NAME")]
    pub agent: Option<String>,
}

/// `crew brief N --json`.
#[derive(Debug, Serialize)]
pub struct BriefView {
    pub issue: u64,
    /// The attempt a dispatch now would start.
    pub attempt: u64,
    pub agent: String,
    pub profile: String,
    /// `None` for a detached (research) worktree.
    pub branch: Option<String>,
    pub worktree: String,
    pub prompt: String,
    /// The command line, secrets shown as `***`.
    pub command: String,
}

pub async fn run(ctx: &Ctx, args: &BriefArgs) -> Result<(), CrewError> {
    let settings = &ctx.settings;
    let config = &settings.config;
    let repo = settings.require_repo()?.clone();
    let agent = args
        .agent
        .clone()
        .unwrap_or_else(|| config.workers.agent.clone());
    let profile_name = args
        .profile
        .clone()
        .unwrap_or_else(|| config.workers.profile.clone());
    // Settings mistakes first: they need no network.
    agents::resolve_agent(config, &agent)?;
    let profile = Profile::resolve(config, &profile_name)?;
    let prompts = Prompts::load(settings.repo_root.as_deref())?;

    // No cache: a brief must not write anything, the cache file included.
    let github = GitHub::new(GitHubConfig::from_settings(settings), None)?;
    // Asked live, not through observe::own_login: that one remembers the login in the cache.
    let own_login = match settings.token() {
        Some(_) => github
            .user()
            .await
            .map(|user| user.login)
            .unwrap_or_default(),
        None => String::new(),
    };
    let gathered = gather(&github, settings, &repo, args.issue, own_login).await?;
    if gathered.issue.state == "closed" {
        ctx.printer.warn(format_args!(
            "#{} is closed; crew would not dispatch it as it is",
            args.issue
        ));
    }
    let state = &gathered.state;
    if matches!(state.state, State::Assigned | State::Working) {
        ctx.printer.warn(format_args!(
            "#{} is {} (attempt {}): a worker may still be on it",
            args.issue,
            state.state,
            state.attempt.unwrap_or_default()
        ));
    }
    let attempt = gathered.attempt;
    if state.attempts >= u64::from(config.workers.max_attempts) {
        ctx.printer.warn(format_args!(
            "{} attempts were made, which is workers.max_attempts; a dispatch would refuse it",
            state.attempts
        ));
    }
    let issue = &gathered.issue;

    let branch = if detached(&profile) {
        None
    } else {
        Some(branch_name(
            &config.workers.branch,
            args.issue,
            &issue.title,
        )?)
    };
    let repo_root = match &settings.repo_root {
        Some(root) => root.clone(),
        None => std::env::current_dir().map_err(CrewError::internal)?,
    };
    let worktree = worktree_path(
        &config.workers.worktree,
        &repo_root,
        &config.workers.worktree_root,
        repo.name(),
        args.issue,
        &issue.title,
    );
    let base = match &config.base {
        Some(base) => base.clone(),
        None => github.repository(&repo).await?.default_branch,
    };
    let env = Env::from_process();
    let search_path: Option<OsString> = env.get("PATH").map(OsString::from);

    let context = gathered.prompt_context(
        &repo,
        config,
        Placement {
            worker: format!("worker-{}-{}", ctx.clock.now().timestamp(), args.issue),
            agent: &agent,
            profile: &profile,
            branch: branch.clone(),
            worktree: &worktree,
            base,
            base_sha: None,
            crew: crew_program(&worktree, search_path.as_deref()),
        },
    );
    let prompt = prompts.render_worker(&context)?;
    let invocation = agents::build(
        &agent,
        &profile_name,
        config,
        InvocationContext {
            prompt_file: worktree.join(CREW_DIR).join(PROMPT_FILE),
            prompt_text: prompt.clone(),
            issue: args.issue,
            worktree: worktree.clone(),
            token: settings.token().map(|token| token.secret.clone()),
        },
    )?;
    if let Err(error) = agents::check_available(&invocation, search_path.as_deref()) {
        warn_missing(ctx, &error);
    }

    let view = BriefView {
        issue: args.issue,
        attempt,
        agent,
        profile: profile_name,
        branch,
        worktree: worktree.to_string_lossy().into_owned(),
        prompt,
        command: invocation.display(),
    };
    if settings.json {
        ctx.printer.json(&view)
    } else {
        ctx.printer.out(|w| render(w, &view))
    }
}

/// What both `crew brief` and `crew dispatch` know about an issue before placing a worker.
pub(crate) struct Gathered {
    pub issue: WireIssue,
    pub comments: Vec<WireComment>,
    pub state: IssueState,
    /// The attempt a dispatch now would start.
    pub attempt: u64,
    /// The pull request's reviews, when the issue was sent back from review.
    pub review_comments: Vec<ReviewComment>,
}

/// Where and as whom the worker runs: the parts of the prompt that are not the issue's.
pub(crate) struct Placement<'a> {
    pub worker: String,
    pub agent: &'a str,
    pub profile: &'a Profile,
    pub branch: Option<String>,
    pub worktree: &'a Path,
    pub base: String,
    pub base_sha: Option<String>,
    pub crew: String,
}

/// Reads the issue and its comments and folds the issue's events, trusting `own_login` as the
/// token's own login. Only GETs; a missing issue or a pull request is a user error.
pub(crate) async fn gather(
    github: &GitHub,
    settings: &Settings,
    repo: &RepoSlug,
    number: u64,
    own_login: String,
) -> Result<Gathered, CrewError> {
    let Some(issue) = github.issue(repo, number).await? else {
        return Err(CrewError::user(format!("{repo} has no issue #{number}"))
            .with_hint("check the number, and that -R names the right repository"));
    };
    if issue.is_pull_request() {
        return Err(CrewError::user(format!(
            "#{number} in {repo} is a pull request, not an issue"
        ))
        .with_hint("pass the number of the issue the pull request is for"));
    }
    let comments = github.issue_comments(repo, number).await?;
    let state = fold(
        number,
        comments.iter().map(observed_event),
        None,
        &fold_policy(settings, own_login),
    );
    let attempt = state.attempt.map_or(1, |attempt| attempt + 1);
    // Sent back from review: the pull request's reviews (by trusted authors) go into the prompt.
    let review_comments = match review(&state) {
        Some(sent_back) => {
            let policy = fold_policy(settings, String::new());
            github
                .pull_reviews(repo, sent_back.pr)
                .await?
                .into_iter()
                .filter_map(|review| {
                    let body = review.body.filter(|body| !body.trim().is_empty())?;
                    let author = review.user.map(|user| user.login).unwrap_or_default();
                    let association = review.author_association.unwrap_or_default();
                    trust(
                        &author,
                        &association,
                        &policy.own_login,
                        &policy.trusted_associations,
                    )
                    .ok()?;
                    Some(ReviewComment {
                        author,
                        path: None,
                        line: None,
                        body,
                    })
                })
                .collect()
        }
        None => Vec::new(),
    };
    Ok(Gathered {
        issue,
        comments,
        state,
        attempt,
        review_comments,
    })
}

/// [`gather`] without asking GitHub who the token is unless it matters: the login only makes a
/// difference to markers whose author is not trusted by association, so it is fetched (once per
/// host, then cached) only when such a marker is on the issue. A first dispatch on a host then
/// costs no `GET /user`.
pub(crate) async fn gather_lazily(
    github: &GitHub,
    cache: &Cache,
    settings: &Settings,
    repo: &RepoSlug,
    number: u64,
) -> Result<Gathered, CrewError> {
    let known = crate::observe::cached_own_login(cache, settings).await?;
    let mut gathered = gather(
        github,
        settings,
        repo,
        number,
        known.clone().unwrap_or_default(),
    )
    .await?;
    let untrusted = gathered
        .state
        .ignored
        .iter()
        .any(|ignored| matches!(ignored.reason, IgnoreReason::UntrustedAuthor { .. }));
    if known.is_none() && untrusted {
        let login = crate::observe::own_login(github, cache, settings).await?;
        gathered.state = fold(
            number,
            gathered.comments.iter().map(observed_event),
            None,
            &fold_policy(settings, login),
        );
        gathered.attempt = gathered.state.attempt.map_or(1, |attempt| attempt + 1);
    }
    Ok(gathered)
}

impl Gathered {
    /// The worker prompt's context for attempt [`Gathered::attempt`] placed as `placement` says.
    pub(crate) fn prompt_context(
        &self,
        repo: &RepoSlug,
        config: &Config,
        placement: Placement<'_>,
    ) -> WorkerPromptContext {
        WorkerPromptContext {
            repo: repo.to_string(),
            issue: IssueText {
                number: self.issue.number,
                title: self.issue.title.clone(),
                body: self.issue.body.clone().unwrap_or_default(),
                // The wire type has no `html_url`; a guessed github.com link would be wrong on GHE.
                url: None,
            },
            comments: discussion(&self.comments),
            handover: last_handover(&self.state),
            answers: answers(&self.state),
            review: review(&self.state).map(|review| ReviewContext {
                comments: self.review_comments.clone(),
                ..review
            }),
            attempt: self.attempt,
            max_attempts: Some(u64::from(config.workers.max_attempts)),
            worker: placement.worker,
            agent: placement.agent.to_owned(),
            profile: ProfileContext {
                name: placement.profile.name.clone(),
                tools: placement.profile.tools.clone(),
                push: placement.profile.push,
            },
            branch: placement.branch,
            worktree: placement.worktree.to_string_lossy().into_owned(),
            base: placement.base,
            base_sha: placement.base_sha,
            crew: placement.crew,
        }
    }
}

/// The human view: the prompt, a separator, the command line.
fn render(w: &mut dyn Write, view: &BriefView) -> std::io::Result<()> {
    writeln!(w, "{}", view.prompt)?;
    writeln!(w)?;
    writeln!(w, "{}", "=".repeat(72))?;
    writeln!(
        w,
        "# attempt {} at #{} with agent `{}`, profile `{}` (not run; the prompt goes to {}/{}/{}):",
        view.attempt, view.issue, view.agent, view.profile, view.worktree, CREW_DIR, PROMPT_FILE
    )?;
    writeln!(w, "{}", view.command)
}

fn warn_missing(ctx: &Ctx, error: &AgentError) {
    ctx.printer.warn(format_args!(
        "{error}; a dispatch would refuse to start it (this brief is only a dry run)"
    ));
    for hint in error.hints() {
        ctx.printer.err(|w, _| writeln!(w, "  hint: {hint}"));
    }
}

/// A research-style profile (it neither pushes nor edits) works in a detached checkout; `review`
/// reads the issue's branch, so it keeps one.
pub(crate) fn detached(profile: &Profile) -> bool {
    !profile.push && !profile.can_edit() && profile.name != "review"
}

/// How the agent would call crew: `crew` when it is on `PATH`, else this binary's path.
pub(crate) fn crew_program(worktree: &Path, search_path: Option<&std::ffi::OsStr>) -> String {
    if agents::find_program("crew", Path::new("crew"), worktree, search_path).is_ok() {
        return "crew".to_owned();
    }
    std::env::current_exe()
        .ok()
        .map(|path: PathBuf| path.to_string_lossy().into_owned())
        .unwrap_or_else(|| "crew".to_owned())
}

fn observed_event(comment: &WireComment) -> ObservedEvent {
    ObservedEvent::from_comment(
        comment.id,
        comment
            .user
            .as_ref()
            .map_or("ghost", |user| user.login.as_str()),
        comment.author_association.as_deref().unwrap_or("NONE"),
        comment.body.as_deref().unwrap_or_default(),
    )
}

/// Comments that are not crew events (nor look like one), oldest first: untrusted discussion.
fn discussion(comments: &[WireComment]) -> Vec<IssueComment> {
    let mut comments: Vec<&WireComment> = comments
        .iter()
        .filter(|comment| !carries_marker(comment.body.as_deref().unwrap_or_default()))
        .collect();
    comments.sort_by_key(|comment| comment.id);
    comments
        .into_iter()
        .map(|comment| IssueComment {
            author: comment
                .user
                .as_ref()
                .map_or_else(|| "ghost".to_owned(), |user| user.login.clone()),
            at: comment.created_at,
            body: comment.body.clone().unwrap_or_default(),
        })
        .collect()
}

/// The newest handover, with the branch its attempt was assigned.
fn last_handover(state: &IssueState) -> Option<HandoverContext> {
    let (applied, handover) =
        state
            .events
            .iter()
            .rev()
            .find_map(|applied| match &applied.event.body {
                EventBody::Handover(handover) => Some((applied, handover)),
                _ => None,
            })?;
    let event = &applied.event;
    Some(HandoverContext {
        issue: event.issue,
        attempt: event.attempt,
        worker: event.worker.clone(),
        summary: handover.summary.clone(),
        next_steps: handover.next_steps.clone(),
        files: handover.files.clone(),
        branch: assigned_branch(state, event.attempt),
        base_sha: handover.base_sha.clone(),
        head_sha: handover.head_sha.clone(),
        diff_stat: None,
        log_tail: None,
    })
}

fn assigned_branch(state: &IssueState, attempt: u64) -> Option<String> {
    state
        .events
        .iter()
        .find_map(|applied| match &applied.event.body {
            EventBody::Assigned(assignment) if applied.event.attempt == attempt => {
                assignment.branch.clone()
            }
            _ => None,
        })
}

/// Every question asked, each with the answer that followed it (if any).
fn answers(state: &IssueState) -> Vec<QuestionAnswer> {
    let mut answers: Vec<QuestionAnswer> = Vec::new();
    for AppliedEvent { author, event, .. } in &state.events {
        match &event.body {
            EventBody::Blocked { question } => answers.push(QuestionAnswer {
                attempt: event.attempt,
                question: question.clone(),
                answer: None,
                answered_by: None,
            }),
            EventBody::Answered { answer } => {
                if let Some(open) = answers.iter_mut().rev().find(|qa| qa.answer.is_none()) {
                    open.answer = Some(answer.clone());
                    open.answered_by = Some(author.clone());
                }
            }
            _ => {}
        }
    }
    answers
}

/// The newest `changes_requested`, unless the work went back to review or beyond since.
fn review(state: &IssueState) -> Option<ReviewContext> {
    for applied in state.events.iter().rev() {
        match &applied.event.body {
            EventBody::ChangesRequested { pr, body } => {
                return Some(ReviewContext {
                    pr: *pr,
                    body: body.clone(),
                    comments: Vec::new(),
                });
            }
            EventBody::InReview { .. }
            | EventBody::Approved { .. }
            | EventBody::Completed { .. } => return None,
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Event, FoldPolicy};

    fn with_events(bodies: Vec<(u64, &str, EventBody)>) -> IssueState {
        let mut state = fold(7, [], None, &FoldPolicy::new("crew-bot"));
        for (index, (attempt, author, body)) in bodies.into_iter().enumerate() {
            state.events.push(AppliedEvent {
                comment_id: index as u64 + 1,
                author: author.to_owned(),
                legacy: false,
                event: Event {
                    issue: 7,
                    attempt,
                    worker: format!("worker-1-7-{attempt}"),
                    op: format!("op-{index}"),
                    at: chrono::DateTime::<chrono::Utc>::UNIX_EPOCH,
                    body,
                },
            });
        }
        state
    }

    #[test]
    fn questions_get_their_answers_and_reviews_expire() {
        let state = with_events(vec![
            (
                1,
                "crew-bot",
                EventBody::Blocked {
                    question: "Red or blue?".to_owned(),
                },
            ),
            (
                1,
                "maintainer",
                EventBody::Answered {
                    answer: "Blue.".to_owned(),
                },
            ),
            (
                2,
                "crew-bot",
                EventBody::Blocked {
                    question: "Which file?".to_owned(),
                },
            ),
            (
                2,
                "crew-bot",
                EventBody::ChangesRequested {
                    pr: 9,
                    body: Some("Add a test.".to_owned()),
                },
            ),
        ]);
        let answers = answers(&state);
        assert_eq!(answers.len(), 2);
        assert_eq!(answers[0].answer.as_deref(), Some("Blue."));
        assert_eq!(answers[0].answered_by.as_deref(), Some("maintainer"));
        assert_eq!(answers[1].attempt, 2);
        assert_eq!(answers[1].answer, None);
        let sent_back = review(&state).map(|review| (review.pr, review.body));
        assert_eq!(sent_back, Some((9, Some("Add a test.".to_owned()))));

        let later = with_events(vec![
            (
                1,
                "crew-bot",
                EventBody::ChangesRequested { pr: 9, body: None },
            ),
            (2, "crew-bot", EventBody::InReview { pr: 9 }),
        ]);
        assert_eq!(review(&later), None);
        assert_eq!(last_handover(&later), None);
    }

    #[test]
    fn research_is_detached_review_is_not() {
        let config = crate::settings::Config::default();
        let profile = |name: &str| Profile::resolve(&config, name).map(|p| detached(&p)).ok();
        assert_eq!(profile("research"), Some(true));
        assert_eq!(profile("review"), Some(false));
        assert_eq!(profile("code"), Some(false));
    }
}
