//! Rendering templates: the worker prompt, event comment bodies, the PR body and handovers.
//!
//! Templates are files (CONVENTIONS.md 14): `templates/` holds the defaults, embedded in the binary
//! with `include_str!`, and a repository overrides any of them by putting a file at the same
//! relative path under `.github/crew/templates/` (so `.github/crew/templates/comments/blocked.md`
//! replaces `templates/comments/blocked.md`).
//!
//! Mistakes in a template should surface when crew starts, not halfway through a dispatch with a
//! lease held. So [`Prompts::load`] parses every template and checks the variables each one
//! reads against that template's declared context (an allow-list per template, kept equal to
//! the context structs by a test); a typo such as `{{ issue.titel }}` is refused at load, naming
//! the file, the variable and what is allowed. minijinja's strict undefined behaviour catches
//! what static analysis cannot (say, `{{ handover.summary }}` when there is no handover) at render.
//!
//! Untrusted text (issue bodies, comments, review comments) is passed to templates as values,
//! never as template source, so `{{ }}` inside an issue body is printed, not evaluated; and it is
//! fenced with a fence computed from the text itself (see [`context::fence_for`]).
//!
//! Nothing here can see a token: the contexts have no such field and minijinja has no access to
//! the environment. A test renders every template and greps for one anyway.

mod context;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use minijinja::value::Value;
use minijinja::{Environment, UndefinedBehavior};

use crate::error::{Classify, ErrorKind};
use crate::protocol::{Event, EventKind, marker};

pub use context::{
    CommentContext, Fenced, HandoverContext, IssueComment, IssueText, PrBodyContext,
    ProfileContext, QuestionAnswer, ReviewComment, ReviewContext, WorkerPromptContext, fence_for,
};

/// Where repository overrides live, relative to the repository root.
pub const OVERRIDE_DIR: &str = ".github/crew/templates";

/// The worker prompt.
pub const WORKER: &str = "worker.md";
/// A handover, as the next attempt reads it.
pub const HANDOVER: &str = "handover.md";
/// The body of the pull request `crew done` opens.
pub const PR_BODY: &str = "pr_body.md";

/// The template name of an event kind's comment body: `comments/<kind>.md`.
pub fn comment_template(kind: EventKind) -> String {
    format!("comments/{}.md", kind.as_str())
}

/// Functions minijinja provides to every template; they show up as "undeclared" in its analysis.
const BUILTIN_GLOBALS: &[&str] = &["range", "dict", "namespace", "debug"];

const WORKER_VARS: &[&str] = &[
    "repo",
    "issue.number",
    "issue.url",
    "issue.title",
    "issue.fence",
    "issue.body",
    "comments",
    "handover",
    "answers",
    "review.pr",
    "review.body.fence",
    "review.body.text",
    "review.comments",
    "attempt",
    "max_attempts",
    "worker",
    "agent",
    "profile.name",
    "profile.tools",
    "profile.push",
    "branch",
    "worktree",
    "base",
    "base_sha",
    "crew",
];

const HANDOVER_VARS: &[&str] = &[
    "issue",
    "attempt",
    "worker",
    "summary",
    "next_steps",
    "files",
    "branch",
    "base_sha",
    "head_sha",
    "diff_stat.fence",
    "diff_stat.text",
    "log_tail.fence",
    "log_tail.text",
];

const PR_BODY_VARS: &[&str] = &[
    "issue", "title", "summary", "attempt", "worker", "agent", "profile", "branch", "base",
];

/// Every comment may use the envelope; each kind adds its own fields.
const COMMENT_COMMON_VARS: &[&str] = &["issue", "attempt", "worker"];

fn comment_kind_vars(kind: EventKind) -> &'static [&'static str] {
    match kind {
        EventKind::Assigned => &["host", "agent", "profile", "branch", "worktree"],
        EventKind::Started | EventKind::Released => &[],
        EventKind::Progress => &["message"],
        EventKind::Blocked => &["question"],
        EventKind::Answered => &["answer"],
        EventKind::Handover => &[
            "summary",
            "next_steps",
            "files",
            "base_sha",
            "head_sha",
            "diff_stat.fence",
            "diff_stat.text",
            "log_tail.fence",
            "log_tail.text",
        ],
        EventKind::InReview | EventKind::Approved | EventKind::Completed => &["pr"],
        EventKind::ChangesRequested => &["pr", "review"],
        EventKind::Failed => &["reason", "log_tail.fence", "log_tail.text"],
        EventKind::Cancelled => &["reason"],
    }
}

/// One template crew knows: its name, built-in source and the variables it may read.
struct Spec {
    name: String,
    default: &'static str,
    vars: Vec<&'static str>,
}

fn comment_default(kind: EventKind) -> &'static str {
    match kind {
        EventKind::Assigned => include_str!("../../templates/comments/assigned.md"),
        EventKind::Started => include_str!("../../templates/comments/started.md"),
        EventKind::Progress => include_str!("../../templates/comments/progress.md"),
        EventKind::Blocked => include_str!("../../templates/comments/blocked.md"),
        EventKind::Answered => include_str!("../../templates/comments/answered.md"),
        EventKind::Handover => include_str!("../../templates/comments/handover.md"),
        EventKind::InReview => include_str!("../../templates/comments/in_review.md"),
        EventKind::ChangesRequested => {
            include_str!("../../templates/comments/changes_requested.md")
        }
        EventKind::Approved => include_str!("../../templates/comments/approved.md"),
        EventKind::Completed => include_str!("../../templates/comments/completed.md"),
        EventKind::Failed => include_str!("../../templates/comments/failed.md"),
        EventKind::Cancelled => include_str!("../../templates/comments/cancelled.md"),
        EventKind::Released => include_str!("../../templates/comments/released.md"),
    }
}

fn specs() -> Vec<Spec> {
    let mut specs = vec![
        Spec {
            name: WORKER.to_owned(),
            default: include_str!("../../templates/worker.md"),
            vars: WORKER_VARS.to_vec(),
        },
        Spec {
            name: HANDOVER.to_owned(),
            default: include_str!("../../templates/handover.md"),
            vars: HANDOVER_VARS.to_vec(),
        },
        Spec {
            name: PR_BODY.to_owned(),
            default: include_str!("../../templates/pr_body.md"),
            vars: PR_BODY_VARS.to_vec(),
        },
    ];
    for kind in EventKind::ALL {
        let mut vars = COMMENT_COMMON_VARS.to_vec();
        vars.extend_from_slice(comment_kind_vars(kind));
        specs.push(Spec {
            name: comment_template(kind),
            default: comment_default(kind),
            vars,
        });
    }
    specs
}

/// Where a loaded template came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TemplateSource {
    /// The default embedded in crew.
    BuiltIn,
    /// A repository's override, at this path.
    Override(PathBuf),
}

/// How a template's file is named in errors: its override path, or `templates/<name>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateFile {
    pub name: String,
    pub source: TemplateSource,
}

impl fmt::Display for TemplateFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            TemplateSource::BuiltIn => write!(f, "templates/{} (built in)", self.name),
            TemplateSource::Override(path) => write!(f, "{}", path.display()),
        }
    }
}

/// What can go wrong loading or rendering templates.
#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    #[error("cannot read template {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a template crew knows (known: {known})")]
    UnknownTemplate { path: PathBuf, known: String },
    #[error("{file}:{line}: {message}")]
    Syntax {
        file: TemplateFile,
        line: usize,
        message: String,
    },
    #[error("{file}: unknown template variable `{variable}` ({template} can use: {allowed})")]
    UnknownVariable {
        file: TemplateFile,
        template: String,
        variable: String,
        allowed: String,
    },
    #[error("{file}{}: cannot render: {message}", line.map(|line| format!(":{line}")).unwrap_or_default())]
    Render {
        file: TemplateFile,
        line: Option<usize>,
        message: String,
    },
}

impl Classify for PromptError {
    fn kind(&self) -> ErrorKind {
        match self {
            PromptError::Read { .. }
            | PromptError::UnknownTemplate { .. }
            | PromptError::Syntax { .. }
            | PromptError::UnknownVariable { .. } => ErrorKind::User,
            PromptError::Render { file, .. } => match file.source {
                TemplateSource::Override(_) => ErrorKind::User,
                TemplateSource::BuiltIn => ErrorKind::Internal,
            },
        }
    }

    fn hints(&self) -> Vec<String> {
        match self {
            PromptError::UnknownVariable { .. } | PromptError::Syntax { .. } => {
                vec![format!(
                    "fix the template, or delete it to use crew's default (overrides live in {OVERRIDE_DIR}/)"
                )]
            }
            _ => Vec::new(),
        }
    }
}

/// The loaded, checked templates.
pub struct Prompts {
    env: Environment<'static>,
    files: BTreeMap<String, TemplateFile>,
}

impl fmt::Debug for Prompts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Prompts")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl Prompts {
    /// The defaults, with any overrides from `<repo_root>/.github/crew/templates/` in their place.
    ///
    /// Every template is parsed and its variables checked here. A file in the override directory
    /// that is not a template crew knows is an error too (most likely a misspelt name that would
    /// otherwise be silently ignored); files that do not end in `.md` are left alone.
    pub fn load(repo_root: Option<&Path>) -> Result<Prompts, PromptError> {
        let specs = specs();
        let mut overrides = BTreeMap::new();
        if let Some(root) = repo_root {
            overrides = read_overrides(root, &specs)?;
        }
        let mut env = new_environment();
        let mut files = BTreeMap::new();
        for spec in &specs {
            let (source_text, file) = match overrides.remove(&spec.name) {
                Some((path, text)) => (
                    text,
                    TemplateFile {
                        name: spec.name.clone(),
                        source: TemplateSource::Override(path),
                    },
                ),
                None => (
                    spec.default.to_owned(),
                    TemplateFile {
                        name: spec.name.clone(),
                        source: TemplateSource::BuiltIn,
                    },
                ),
            };
            env.add_template_owned(spec.name.clone(), source_text)
                .map_err(|error| PromptError::Syntax {
                    file: file.clone(),
                    line: error.line().unwrap_or(1),
                    message: error_message(&error),
                })?;
            let template = env
                .get_template(&spec.name)
                .map_err(|error| render_error(&file, &error))?;
            let mut used: Vec<String> = template.undeclared_variables(true).into_iter().collect();
            used.sort();
            for variable in used {
                if !variable_allowed(&variable, &spec.vars) {
                    return Err(PromptError::UnknownVariable {
                        file,
                        template: spec.name.clone(),
                        variable,
                        allowed: spec.vars.join(", "),
                    });
                }
            }
            files.insert(spec.name.clone(), file);
        }
        Ok(Prompts { env, files })
    }

    /// Where each template came from, by name (`worker.md`, `comments/blocked.md`, …).
    pub fn files(&self) -> impl Iterator<Item = &TemplateFile> {
        self.files.values()
    }

    /// The worker prompt. A previous handover is rendered with `handover.md` first and placed in it.
    pub fn render_worker(&self, context: &WorkerPromptContext) -> Result<String, PromptError> {
        let handover = context
            .handover
            .as_ref()
            .map(|handover| self.render_handover(handover))
            .transpose()?;
        let view = context::WorkerView::new(context, handover);
        self.render(WORKER, to_value(&view))
    }

    /// The human text of an event comment (what goes under the marker line).
    pub fn render_comment(
        &self,
        kind: EventKind,
        context: &CommentContext,
    ) -> Result<String, PromptError> {
        let view = context::comment_view(context);
        self.render(&comment_template(kind), to_value(&view))
    }

    /// A whole event comment: the marker line, then the human text from `comments/<kind>.md`.
    pub fn comment_body(
        &self,
        event: &Event,
        context: &CommentContext,
    ) -> Result<String, PromptError> {
        let text = self.render_comment(event.kind(), context)?;
        Ok(marker::render_comment(event, &text))
    }

    /// The PR body. It always says `Closes #N`: if an override drops the line, it is appended,
    /// because without it merging the PR would not close the issue.
    pub fn render_pr_body(&self, context: &PrBodyContext) -> Result<String, PromptError> {
        let mut body = self.render(PR_BODY, to_value(context))?;
        let closes = format!("Closes #{}", context.issue);
        if !has_closing_keyword(&body, context.issue) {
            if !body.is_empty() {
                body.push_str("\n\n");
            }
            body.push_str(&closes);
        }
        Ok(body)
    }

    /// A handover as the next attempt reads it.
    pub fn render_handover(&self, context: &HandoverContext) -> Result<String, PromptError> {
        let view = context::HandoverView::new(context);
        self.render(HANDOVER, to_value(&view))
    }

    fn render(&self, name: &str, context: Value) -> Result<String, PromptError> {
        let file = self.files.get(name).cloned().unwrap_or(TemplateFile {
            name: name.to_owned(),
            source: TemplateSource::BuiltIn,
        });
        let template = self
            .env
            .get_template(name)
            .map_err(|error| render_error(&file, &error))?;
        // Trailing blank lines left by the last `{% endif %}` are noise; nothing untrusted ends a
        // template (fenced text is always followed by its closing fence).
        let mut text = template
            .render(context)
            .map_err(|error| render_error(&file, &error))?;
        text.truncate(text.trim_end().len());
        Ok(text)
    }
}

/// Whether `body` links issue `issue` with a closing keyword GitHub understands.
fn has_closing_keyword(body: &str, issue: u64) -> bool {
    let lower = body.to_lowercase();
    let target = format!("#{issue}");
    [
        "close", "closes", "closed", "fix", "fixes", "fixed", "resolve", "resolves", "resolved",
    ]
    .iter()
    .any(|keyword| {
        lower
            .match_indices(&format!("{keyword} {target}"))
            .any(|(at, matched)| {
                let after = lower[at + matched.len()..].chars().next();
                !after.is_some_and(|c| c.is_ascii_digit())
            })
    })
}

/// Whether a variable path the template reads is one it may read: listed, or a prefix of one
/// listed (`issue` when `issue.title` is allowed), or a builtin function.
fn variable_allowed(variable: &str, allowed: &[&str]) -> bool {
    BUILTIN_GLOBALS.contains(&variable)
        || allowed.iter().any(|entry| {
            *entry == variable
                || entry
                    .strip_prefix(variable)
                    .is_some_and(|rest| rest.starts_with('.'))
        })
}

fn new_environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // Markdown, not HTML: nothing is escaped (an issue body is fenced, not entity-encoded).
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    let syntax = minijinja::syntax::SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .build();
    if let Ok(syntax) = syntax {
        env.set_syntax(syntax);
    }
    env.add_filter("quote", quote);
    env
}

/// `> ` before every line: a markdown block quote of text someone else wrote.
fn quote(text: Option<String>) -> String {
    text.unwrap_or_default()
        .trim_end()
        .lines()
        .map(|line| {
            if line.is_empty() {
                ">".to_owned()
            } else {
                format!("> {line}")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// minijinja's message without its own "(in file:line)" suffix, which we print ourselves.
fn error_message(error: &minijinja::Error) -> String {
    let kind = error.kind().to_string();
    match error.detail() {
        Some(detail) => format!("{kind}: {detail}"),
        None => kind,
    }
}

fn render_error(file: &TemplateFile, error: &minijinja::Error) -> PromptError {
    PromptError::Render {
        file: file.clone(),
        line: error.line(),
        message: error_message(error),
    }
}

/// Reads `<root>/.github/crew/templates/**.md`, keyed by template name.
fn read_overrides(
    root: &Path,
    specs: &[Spec],
) -> Result<BTreeMap<String, (PathBuf, String)>, PromptError> {
    let dir = root.join(OVERRIDE_DIR);
    let known: BTreeSet<&str> = specs.iter().map(|spec| spec.name.as_str()).collect();
    let mut found = BTreeMap::new();
    let mut pending = vec![dir.clone()];
    while let Some(current) = pending.pop() {
        let entries = match std::fs::read_dir(&current) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(PromptError::Read {
                    path: current,
                    source,
                });
            }
        };
        for entry in entries {
            let entry = entry.map_err(|source| PromptError::Read {
                path: current.clone(),
                source,
            })?;
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            if path.extension().and_then(|ext| ext.to_str()) != Some("md") {
                continue;
            }
            let relative = path.strip_prefix(&dir).unwrap_or(&path);
            let name = relative
                .components()
                .map(|part| part.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            let shown = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
            if !known.contains(name.as_str()) {
                return Err(PromptError::UnknownTemplate {
                    path: shown,
                    known: known.iter().copied().collect::<Vec<_>>().join(", "),
                });
            }
            let text = std::fs::read_to_string(&path).map_err(|source| PromptError::Read {
                path: shown.clone(),
                source,
            })?;
            found.insert(name, (shown, text));
        }
    }
    Ok(found)
}

fn to_value<T: serde::Serialize>(context: &T) -> Value {
    Value::from(minijinja::value::Serde(context))
}
