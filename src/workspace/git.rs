//! Running the `git` CLI: one place that sets the environment every invocation needs.
//!
//! - `GIT_DIR`, `GIT_WORK_TREE` and `GIT_INDEX_FILE` are removed: crew may run from a git hook
//!   or an agent's shell where they point at another repository, and every call here names its
//!   directory explicitly with `-C`.
//! - `GIT_TERMINAL_PROMPT=0`: a fetch or push that needs a password fails instead of hanging a
//!   detached supervisor on a prompt nobody sees.
//! - `LC_ALL=C`: output is parsed, so it must not be translated.
//! - `GIT_EDITOR=true`, `GIT_SEQUENCE_EDITOR=true`: a rebase never waits on an editor.

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use super::WorkspaceError;

/// Runs `git -C dir args…` and returns its stdout, or the failure with stderr.
pub(crate) fn run<I, S>(dir: &Path, args: I) -> Result<String, WorkspaceError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let (output, command) = output(dir, args)?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(WorkspaceError::Git {
            command,
            dir: dir.to_path_buf(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

/// `git fetch --no-tags origin REFSPECS…` in `dir`. Every worktree of a clone shares its
/// `refs/remotes/`, so two workers fetching at once can collide on a ref lock ("cannot lock
/// ref"); that is tried again, a few times with a short pause, rather than failing the worker.
pub fn fetch_origin(dir: &Path, refspecs: &[String]) -> Result<(), WorkspaceError> {
    let mut args = vec![
        "fetch".to_owned(),
        "--quiet".to_owned(),
        "--no-tags".to_owned(),
        "origin".to_owned(),
    ];
    args.extend(refspecs.iter().cloned());
    let mut tries = 0_u64;
    loop {
        match run(dir, &args) {
            Ok(_) => return Ok(()),
            Err(WorkspaceError::Git { stderr, .. }) if is_lock_race(&stderr) && tries < 4 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(50 * tries));
            }
            Err(error) => return Err(error),
        }
    }
}

/// Whether git failed only because another git held a lock a moment ago.
fn is_lock_race(stderr: &str) -> bool {
    stderr.contains("cannot lock ref")
        || stderr.contains("unable to update local ref")
        || (stderr.contains(".lock") && stderr.contains("File exists"))
}

/// Runs git and returns whether it succeeded, for commands whose failure is an answer
/// (`git config --get` of an unset key).
pub(crate) fn succeeds<I, S>(dir: &Path, args: I) -> Result<bool, WorkspaceError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    Ok(output(dir, args)?.0.status.success())
}

/// Runs `git -C dir args…`: the output, whether it succeeded or not, and the command line.
pub(crate) fn output<I, S>(dir: &Path, args: I) -> Result<(Output, String), WorkspaceError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<_> = args
        .into_iter()
        .map(|arg| arg.as_ref().to_os_string())
        .collect();
    let command = args
        .iter()
        .map(|arg| arg.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ");
    let output = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(&args)
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("LC_ALL", "C")
        // A rebase or a merge must never open an editor nobody sees.
        .env("GIT_EDITOR", "true")
        .env("GIT_SEQUENCE_EDITOR", "true")
        .stdin(Stdio::null())
        .output()
        .map_err(WorkspaceError::GitMissing)?;
    Ok((output, command))
}

/// `-c user.name=… -c user.email=…` for whichever half of an identity is configured nowhere, so
/// a salvage commit never fails on a machine (or CI runner) without `git config user.*`. The
/// user's own identity — environment or config — always wins: `-c` is only added when both are
/// missing, and git's `GIT_AUTHOR_*`/`GIT_COMMITTER_*` variables override `-c` anyway.
pub(crate) fn identity_fallback(dir: &Path) -> Result<Vec<String>, WorkspaceError> {
    let env_set = |names: &[&str]| {
        names
            .iter()
            .all(|name| std::env::var_os(name).is_some_and(|value| !value.is_empty()))
    };
    let mut args = Vec::new();
    let name_known = env_set(&["GIT_AUTHOR_NAME", "GIT_COMMITTER_NAME"])
        || succeeds(dir, ["config", "--get", "user.name"])?;
    if !name_known {
        args.extend(["-c".to_owned(), "user.name=crew".to_owned()]);
    }
    let email_known = env_set(&["GIT_AUTHOR_EMAIL", "GIT_COMMITTER_EMAIL"])
        || env_set(&["EMAIL"])
        || succeeds(dir, ["config", "--get", "user.email"])?;
    if !email_known {
        args.extend(["-c".to_owned(), "user.email=crew@localhost".to_owned()]);
    }
    Ok(args)
}

#[cfg(test)]
mod tests {
    use super::is_lock_race;

    #[test]
    fn lock_races_are_told_from_real_failures() {
        assert!(is_lock_race(
            "error: cannot lock ref 'refs/remotes/origin/main': is at 1 but expected 2"
        ));
        assert!(is_lock_race(
            "error: Unable to create '/r/.git/refs/remotes/origin/main.lock': File exists."
        ));
        assert!(!is_lock_race(
            "fatal: 'origin' does not appear to be a git repository"
        ));
    }
}
