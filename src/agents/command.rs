//! `[agents.<name>] command = [argv…]`: placeholder substitution, and POSIX shell quoting for
//! showing a command line to a human.
//!
//! Substitution works on each argv element on its own and in one pass: a value is inserted
//! verbatim and never re-scanned, split on whitespace or handed to a shell, so a prompt holding
//! `$(rm -rf /)`, quotes, newlines or a literal `{issue}` stays exactly one argument.

use super::AgentError;
use crate::settings::AGENT_PLACEHOLDERS;

/// Values for the placeholders of [`AGENT_PLACEHOLDERS`].
#[derive(Clone, Copy, Debug)]
pub struct Placeholders<'a> {
    pub prompt_file: &'a str,
    pub prompt: &'a str,
    pub tools: &'a str,
    pub issue: &'a str,
    pub worktree: &'a str,
}

impl Placeholders<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        let value = match name {
            "prompt_file" => self.prompt_file,
            "prompt" => self.prompt,
            "tools" => self.tools,
            "issue" => self.issue,
            "worktree" => self.worktree,
            _ => return None,
        };
        debug_assert!(AGENT_PLACEHOLDERS.contains(&name));
        Some(value)
    }
}

/// Replaces every `{name}` in `template` with its value. Unknown names and unbalanced braces
/// are errors (settings validation rejects them too; this guards hand-built configs).
pub fn substitute(
    agent: &str,
    template: &str,
    values: &Placeholders<'_>,
) -> Result<String, AgentError> {
    let bad = |problem: String| AgentError::BadCommand {
        agent: agent.to_owned(),
        problem,
    };
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find(['{', '}']) {
        if rest.as_bytes()[open] == b'}' {
            return Err(bad(format!("unmatched `}}` in `{template}`")));
        }
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let close = after
            .find('}')
            .ok_or_else(|| bad(format!("unclosed `{{` in `{template}`")))?;
        let name = &after[..close];
        let value = values.get(name).ok_or_else(|| {
            bad(format!(
                "unknown placeholder `{{{name}}}` in `{template}` (known: {})",
                AGENT_PLACEHOLDERS
                    .iter()
                    .map(|name| format!("{{{name}}}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
        out.push_str(value);
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Quotes `word` for a POSIX shell: unchanged when it is made only of characters no shell treats
/// specially, otherwise wrapped in single quotes with each `'` written as `'\''`. Inside single
/// quotes nothing (`$`, `` ` ``, `\`, newlines) is special, so the result is exact.
pub fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word.bytes().all(|byte| {
            byte.is_ascii_alphanumeric()
                || matches!(
                    byte,
                    b'-' | b'_' | b'.' | b'/' | b',' | b':' | b'@' | b'+' | b'%' | b'='
                )
        });
    if plain {
        word.to_owned()
    } else {
        single_quote(word)
    }
}

/// [`shell_quote`] for a command's first word, where an unquoted `a=b` would be an assignment.
pub fn shell_quote_program(word: &str) -> String {
    if word.contains('=') {
        single_quote(word)
    } else {
        shell_quote(word)
    }
}

fn single_quote(word: &str) -> String {
    let mut quoted = String::with_capacity(word.len() + 2);
    quoted.push('\'');
    for ch in word.chars() {
        if ch == '\'' {
            quoted.push_str("'\\''");
        } else {
            quoted.push(ch);
        }
    }
    quoted.push('\'');
    quoted
}
