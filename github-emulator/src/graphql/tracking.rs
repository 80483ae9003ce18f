//! Issue relations GitHub derives or keeps beside an issue: sub-issues (kept in
//! [`crate::state::Repo::sub_issues`]) and *tracked* issues, which GitHub derives from task lists.
//!
//! Decisions, and why:
//! - **Tracked issues come from the tracking issue's body**, as on GitHub: a task-list item whose
//!   text starts with a reference to an issue (`- [ ] #12`, `* [x] acme/widgets#12`, or the
//!   issue's URL) makes the body's issue track #12. So a test (or crew) creates the relation the
//!   way a user does, by writing the body through REST; there is nothing extra to declare.
//! - Only references to issues of the same repository count (the emulator has one repository
//!   per relation lookup); a reference to a pull request or to a number that does not exist is
//!   ignored, as GitHub ignores it. Items inside fenced code blocks are not task-list items.
//! - Order: tracked issues in the order the body lists them (each once); the issues an issue is
//!   tracked in by number.

use crate::state;

/// Issue numbers the task list of `body` refers to in repository `owner/name`, in body order,
/// each once. Existence is not checked here.
pub fn task_list_references(body: &str, owner: &str, name: &str) -> Vec<u64> {
    let mut found = Vec::new();
    let mut fenced = false;
    for line in body.lines() {
        let line = line.trim_start();
        if line.starts_with("```") || line.starts_with("~~~") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let Some(rest) = line
            .strip_prefix("- ")
            .or_else(|| line.strip_prefix("* "))
            .or_else(|| line.strip_prefix("+ "))
        else {
            continue;
        };
        let rest = rest.trim_start();
        let Some(text) = ["[ ]", "[x]", "[X]"]
            .iter()
            .find_map(|box_| rest.strip_prefix(box_))
        else {
            continue;
        };
        let token = text.split_whitespace().next().unwrap_or("");
        if let Some(number) = reference(token, owner, name)
            && !found.contains(&number)
        {
            found.push(number);
        }
    }
    found
}

/// The issue number `token` names in `owner/name`: `#N`, `owner/name#N`, or a URL ending in
/// `/owner/name/issues/N`.
fn reference(token: &str, owner: &str, name: &str) -> Option<u64> {
    let number = |text: &str| text.parse::<u64>().ok().filter(|n| *n > 0);
    if let Some(rest) = token.strip_prefix('#') {
        return number(rest);
    }
    let full = format!("{owner}/{name}");
    if let Some((repo, rest)) = token.split_once('#') {
        return repo.eq_ignore_ascii_case(&full).then(|| number(rest))?;
    }
    if token.starts_with("http://") || token.starts_with("https://") {
        let path = token.trim_end_matches('/');
        let (head, last) = path.rsplit_once('/')?;
        let head = head.strip_suffix("/issues")?;
        let suffix = format!("/{full}");
        let tail = head.get(head.len().checked_sub(suffix.len())?..)?;
        return tail.eq_ignore_ascii_case(&suffix).then(|| number(last))?;
    }
    None
}

/// The issues (not pull requests) of `repo` that `issue`'s body tracks, in body order.
pub fn tracked_by(repo: &state::Repo, issue: &state::Issue) -> Vec<u64> {
    let body = issue.body.as_deref().unwrap_or("");
    task_list_references(body, &repo.owner, &repo.name)
        .into_iter()
        .filter(|n| *n != issue.number)
        .filter(|n| repo.issues.get(n).is_some_and(|i| i.pull.is_none()))
        .collect()
}

/// The issues (not pull requests) of `repo` whose task lists track issue `number`, by number.
pub fn tracked_in(repo: &state::Repo, number: u64) -> Vec<u64> {
    repo.issues
        .values()
        .filter(|i| i.pull.is_none() && i.number != number)
        .filter(|i| tracked_by(repo, i).contains(&number))
        .map(|i| i.number)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_list_items_that_reference_issues() {
        let body = "Plan:\n\
            - [ ] #2\n\
            * [x] acme/widgets#3 done already\n\
            + [ ] https://github.example/acme/Widgets/issues/4\n\
            - [ ] other/repo#5\n\
            - [ ] see #6\n\
            - #7\n\
            ```\n- [ ] #8\n```\n\
            - [ ] #2 again\n\
            -  [ ] #0";
        assert_eq!(task_list_references(body, "acme", "widgets"), [2, 3, 4]);
        assert!(task_list_references("", "acme", "widgets").is_empty());
    }
}
