//! The bundled demo agent (`crew demo-agent`, hidden): a scripted stand-in for Claude Code or
//! Codex that does what its prompt tells an agent to do, for the issues of the demo world.
//!
//! It runs in the worktree `crew dispatch` prepared, reads who it is from `.crew/context.json`
//! and its prompt, really edits the files its issue asks for, commits them with git, and reports
//! through the same agent-side commands a real agent runs (`crew start`, `progress`, `blocked`,
//! `wait`, `handover`, `done`), each a child process of this same binary, so what crew sees is
//! exactly what it would see from any agent.
//!
//! Decisions, and why:
//! - **Behaviour comes from the issue and the prompt, not from a flag.** The issue's
//!   [`Script`] says which path it walks; whether this attempt starts or continues is read from
//!   the prompt crew rendered (a handover section, the review, an answer), not from the attempt
//!   number, which is a fencing token that may skip values. So a prompt missing what crew should
//!   have put there makes the agent fail loudly (`crew fail`), and the demo shows it.
//! - **Blocked, then wait a little.** The prompt says to ask and end the session; the answer
//!   reaches the worker or the next attempt. The demo agent waits up to [`ANSWER_WAIT`] with
//!   `crew wait --for answered` (a live worker gets its answer in the same attempt) and otherwise
//!   ends, leaving the answer to the next attempt, whose prompt it then reads it from.
//! - **An issue it does not know is refused** with `crew fail`, never guessed at.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use crate::error::CrewError;
use crate::workspace::{self, CREW_DIR, WorkerContext};

use super::world::{self, DemoIssue, Edit, Script};

/// How long a blocked demo agent waits for the answer before ending its session.
pub const ANSWER_WAIT: Duration = Duration::from_secs(30);

/// How often a finishing command is tried (see [`Agent::finish_with`]).
const FINISH_TRIES: u32 = 3;
/// The prompt's heading over a handover (templates/worker.md).
const HANDOVER_HEADING: &str = "## Where the previous attempt stopped";
/// The prompt's heading over questions and answers.
const ANSWERS_HEADING: &str = "## Questions and answers";
/// The prompt's heading over a review that sent the work back.
const REVIEW_HEADING: &str = "## Changes requested";

/// What went wrong for the agent itself (a crew command's failure is that command's to report).
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("not inside a crew worker's worktree (no .crew/context.json above {})", .0.display())]
    NoWorktree(PathBuf),
    #[error("cannot read the prompt {}: {source}", path.display())]
    Prompt {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status})")]
    Command { command: String, status: String },
    #[error("cannot run `{command}`: {source}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
}

impl crate::error::Classify for AgentError {
    fn kind(&self) -> crate::error::ErrorKind {
        match self {
            AgentError::NoWorktree(_) => crate::error::ErrorKind::User,
            _ => crate::error::ErrorKind::Internal,
        }
    }

    fn hints(&self) -> Vec<String> {
        match self {
            AgentError::NoWorktree(_) => {
                vec!["the demo agent is started by `crew demo`; run that instead".to_owned()]
            }
            _ => Vec::new(),
        }
    }
}

/// One run of the demo agent in its worktree.
struct Agent {
    exe: PathBuf,
    worktree: PathBuf,
    context: WorkerContext,
    prompt: String,
}

/// Runs the demo agent from the current directory (its worktree).
pub async fn run(prompt_file: Option<&Path>) -> Result<(), CrewError> {
    let cwd = std::env::current_dir().map_err(CrewError::internal)?;
    let (worktree, context) =
        workspace::find_context(&cwd)?.ok_or_else(|| AgentError::NoWorktree(cwd.clone()))?;
    let prompt_path = prompt_file
        .map(Path::to_path_buf)
        .unwrap_or_else(|| worktree.join(CREW_DIR).join("prompt.md"));
    let prompt = std::fs::read_to_string(&prompt_path).map_err(|source| AgentError::Prompt {
        path: prompt_path.clone(),
        source,
    })?;
    let agent = Agent {
        exe: std::env::current_exe().map_err(CrewError::internal)?,
        worktree,
        context,
        prompt,
    };
    agent.work().await
}

impl Agent {
    async fn work(&self) -> Result<(), CrewError> {
        let number = self.context.issue;
        let Some(issue) = world::issue(number).filter(|issue| self.prompt.contains(issue.title))
        else {
            self.say("this is not an issue of the demo world; giving up");
            return self.crew(&[
                "fail",
                "The demo agent only works on the issues `crew demo` creates, and this is not one of them.",
            ])
            .await;
        };
        self.say(&format!(
            "#{number} `{}`, attempt {}",
            issue.title, self.context.attempt
        ));
        self.crew(&["start"]).await?;
        match issue.script {
            Script::Straight => self.finish(issue, issue.first, None, "").await,
            Script::Blocks { question, .. } => {
                let answer = match answer_in(&self.prompt) {
                    Some(answer) => {
                        self.say(&format!("the prompt carries the answer: {answer}"));
                        answer
                    }
                    None => {
                        self.crew(&["blocked", question]).await?;
                        match self.wait_for_answer().await? {
                            Some(answer) => answer,
                            None => {
                                self.say("no answer yet; ending the session as the prompt says");
                                return Ok(());
                            }
                        }
                    }
                };
                self.finish(issue, issue.first, Some(&answer), "").await
            }
            Script::HandsOver { summary, next } => {
                if self.prompt.contains(HANDOVER_HEADING) {
                    let missing: Vec<&str> = issue
                        .first
                        .iter()
                        .filter(|edit| !self.worktree.join(edit.path).exists())
                        .map(|edit| edit.path)
                        .collect();
                    if !missing.is_empty() {
                        return self
                            .crew(&[
                                "fail",
                                &format!(
                                    "The handover's work is not on the branch: {} missing.",
                                    missing.join(", ")
                                ),
                            ])
                            .await;
                    }
                    self.say("continuing from the previous attempt's handover");
                    self.finish(issue, issue.second, None, " (part 2)").await
                } else {
                    self.write(issue.first, None)?;
                    self.commit(&format!("#{number}: {} (part 1)", issue.title))
                        .await?;
                    self.finish_with(&["handover", "--summary", summary, "--next", next])
                        .await
                }
            }
            Script::ChangesRequested { review } => {
                if self.prompt.contains(REVIEW_HEADING) {
                    if !self.prompt.contains(review) {
                        return self
                            .crew(&[
                                "fail",
                                "Changes were requested, but the prompt does not carry the review.",
                            ])
                            .await;
                    }
                    self.say("addressing the review");
                    self.finish(issue, issue.second, None, " (review)").await
                } else {
                    self.finish(issue, issue.first, None, "").await
                }
            }
        }
    }

    /// Writes `edits`, commits (`note` ends the message), reports progress and finishes with
    /// `crew done`.
    async fn finish(
        &self,
        issue: &DemoIssue,
        edits: &[Edit],
        answer: Option<&str>,
        note: &str,
    ) -> Result<(), CrewError> {
        self.write(edits, answer)?;
        self.commit(&format!("#{}: {}{note}", self.context.issue, issue.title))
            .await?;
        self.crew(&["progress", issue.progress]).await?;
        self.finish_with(&["done"]).await
    }

    /// Writes each file whole (`{answer}` replaced).
    fn write(&self, edits: &[Edit], answer: Option<&str>) -> Result<(), AgentError> {
        for edit in edits {
            let path = self.worktree.join(edit.path);
            let content = edit.content.replace("{answer}", answer.unwrap_or_default());
            let written = match path.parent() {
                Some(parent) => std::fs::create_dir_all(parent),
                None => Ok(()),
            }
            .and_then(|()| std::fs::write(&path, content));
            written.map_err(|source| AgentError::Write {
                path: path.clone(),
                source,
            })?;
            self.say(&format!("wrote {}", edit.path));
        }
        Ok(())
    }

    /// `git add -A` and `git commit`, when there is something to commit.
    async fn commit(&self, message: &str) -> Result<(), AgentError> {
        self.git(&["add", "-A"]).await?;
        let staged = Command::new("git")
            .args(["diff", "--cached", "--quiet"])
            .current_dir(&self.worktree)
            .status()
            .await
            .map_err(|source| AgentError::Spawn {
                command: "git diff --cached --quiet".to_owned(),
                source,
            })?;
        if staged.success() {
            self.say("nothing to commit");
            return Ok(());
        }
        self.git(&["commit", "--quiet", "-m", message]).await
    }

    async fn git(&self, args: &[&str]) -> Result<(), AgentError> {
        let command = format!("git {}", args.join(" "));
        let status = Command::new("git")
            .args(args)
            .current_dir(&self.worktree)
            .status()
            .await
            .map_err(|source| AgentError::Spawn {
                command: command.clone(),
                source,
            })?;
        if status.success() {
            Ok(())
        } else {
            Err(AgentError::Command {
                command,
                status: status.to_string(),
            })
        }
    }

    /// `crew ARGS` for a finishing step (`done`, `handover`), tried again after a failure that
    /// may pass (exit 3, GitHub or origin unreachable; 255, an internal error such as a git
    /// command that lost a race), as an agent following its prompt would. A refusal (exit 1, or
    /// 4 for a superseded attempt) is final.
    async fn finish_with(&self, args: &[&str]) -> Result<(), CrewError> {
        let mut tries = 1;
        loop {
            match self.crew(args).await {
                Err(error) if tries < FINISH_TRIES && matches!(error.exit_code(), 3 | 255) => {
                    self.say(&format!("that failed ({error}); trying again"));
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                result => return result,
            }
        }
    }

    /// `crew ARGS` from the worktree, its output in this agent's log.
    async fn crew(&self, args: &[&str]) -> Result<(), CrewError> {
        self.say(&format!("crew {}", args.join(" ")));
        let status = Command::new(&self.exe)
            .args(args)
            .current_dir(&self.worktree)
            .stdin(Stdio::null())
            .status()
            .await
            .map_err(|source| AgentError::Spawn {
                command: format!("crew {}", args.join(" ")),
                source,
            })?;
        if status.success() {
            return Ok(());
        }
        let error = AgentError::Command {
            command: format!("crew {}", args.join(" ")),
            status: status.to_string(),
        };
        // The child's exit code is the kind of its failure; keep it.
        let kind = match status.code() {
            Some(1) => crate::error::ErrorKind::User,
            Some(3) => crate::error::ErrorKind::Remote,
            Some(4) => crate::error::ErrorKind::LostRace,
            _ => crate::error::ErrorKind::Internal,
        };
        Err(CrewError::new(kind, error))
    }

    /// `crew wait --for answered` on this issue: the answer, or `None` if none came in time.
    async fn wait_for_answer(&self) -> Result<Option<String>, CrewError> {
        let issue = self.context.issue.to_string();
        let timeout = format!("{}s", ANSWER_WAIT.as_secs());
        let args = [
            "-R",
            &self.context.repo,
            "wait",
            "--for",
            "answered",
            "--issue",
            &issue,
            "--timeout",
            &timeout,
            "--interval",
            "1s",
        ];
        self.say(&format!("crew {}", args.join(" ")));
        let output = Command::new(&self.exe)
            .args(args)
            .current_dir(&self.worktree)
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .await
            .map_err(|source| AgentError::Spawn {
                command: "crew wait".to_owned(),
                source,
            })?;
        if !output.status.success() {
            return Ok(None);
        }
        let waited: serde_json::Value =
            serde_json::from_slice(&output.stdout).map_err(CrewError::internal)?;
        let answer = waited["event"]["answer"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| CrewError::internal("`crew wait` printed an event without an answer"))?;
        self.say(&format!("the maintainer answered: {answer}"));
        Ok(Some(clean_answer(&answer)))
    }

    fn say(&self, message: &str) {
        println!("demo agent: {message}");
    }
}

/// The newest answer in the prompt's questions and answers, if any.
fn answer_in(prompt: &str) -> Option<String> {
    let (_, section) = prompt.split_once(ANSWERS_HEADING)?;
    // The section ends at the next heading of the same level.
    let section = section.split("\n## ").next().unwrap_or(section);
    let mut answer = None;
    let mut lines = section.lines();
    while let Some(line) = lines.next() {
        if !line.starts_with("Answer") {
            continue;
        }
        // The answer is the next fenced block.
        let Some(fence) = lines.by_ref().find(|line| line.starts_with("```")) else {
            break;
        };
        let fence = fence.trim_end_matches(|c: char| c != '`');
        let text: Vec<&str> = lines.by_ref().take_while(|line| *line != fence).collect();
        answer = Some(clean_answer(&text.join(" ")));
    }
    answer.filter(|answer| !answer.is_empty())
}

/// An answer fit to go into a Python string: letters, digits, spaces and dashes, lowercased.
fn clean_answer(answer: &str) -> String {
    answer
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .collect::<String>()
        .trim()
        .to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_answer_is_read_from_the_prompt() {
        let prompt = "# Issue #3\n\n## Questions and answers\n\nEarlier attempts asked.\n\n\
                      Question (attempt 1):\n\n```text\nWhich colour?\n```\n\n\
                      Answer from @maintainer:\n\n```text\nBlue\n```\n\n\
                      Question (attempt 2):\n\n```text\nSure?\n```\n\n\
                      Answer from @maintainer:\n\n````text\nTeal, please!\n````\n\n\
                      ## How to report\n\nAnswer nothing here\n";
        assert_eq!(answer_in(prompt).as_deref(), Some("teal please"));
        assert_eq!(answer_in("# Issue\n\n## How to report\n"), None);
        let unanswered = "## Questions and answers\n\nQuestion (attempt 1):\n\n```text\nWhich?\n\
                          ```\n\nNot answered yet.\n";
        assert_eq!(answer_in(unanswered), None);
    }

    #[test]
    fn answers_are_cleaned_for_source_code() {
        assert_eq!(clean_answer("  \"Teal\"; rm -rf /  "), "teal rm -rf");
    }
}
