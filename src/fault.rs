//! Fault injection for the crash-recovery tests: `kill -9` at named points of an issue's life.
//!
//! `CREW_FAULT_KILL_AFTER=<point>` makes the process that reaches [`crashpoint`]`(<point>)`
//! SIGKILL itself there, exactly as `kill -9` would: no destructor, no flush, no lock released
//! other than by the kernel. The tests use it to prove that every step of an issue's life is
//! safe to die after, and that what a user (or crew itself) does next converges. Nothing else
//! sets the variable; it is not a setting and `crew doctor` does not list it.
//!
//! Decisions, and why:
//! - **Named points, in lists.** Every point is in [`DISPATCH_POINTS`], [`LIFE_POINTS`] or
//!   [`CANCEL_POINTS`], named `<command>:<step>` ("killed after that step of that command"),
//!   except the dispatch steps, which keep the bare names the first crash tests used (`lease`,
//!   `assigned`, … `spawn`). A test that picks points at random picks from [`points`], so a new
//!   point of an issue's life is covered without editing the test.
//! - **`crew cancel` has its own list.** An issue's life as the random crash runs play it ends
//!   merged, and a cancel ends it otherwise: its points are not in [`points`], and the cancel
//!   tests go through them one by one.
//! - **The variable reaches the agents, on purpose.** `crew loop` and `crew dispatch` pass their
//!   environment to the supervisor they start, and the supervisor to its agent (only the token
//!   variables are ever withheld, by the profile). So one variable set on `crew loop` can kill the
//!   agent's own `crew done`, or the supervisor in the middle of a salvage — which is what
//!   happens in real life: any of those processes can die, and nobody arranges which.
//! - **Once, when asked.** Because the variable is inherited, every process of the tree that
//!   reaches the point would die, and a loop whose agents all die in `crew done` never converges
//!   (no more than it would in real life). `CREW_FAULT_ONCE=<file>` makes the point fire once
//!   across all of them: the first process there creates the file (an exclusive create, so two
//!   racing processes cannot both win), writes the point and its pid into it, and dies; every
//!   later one finds the file and goes on. Without it, each process that reaches the point dies
//!   (the dispatch crash tests rely on that).

use std::io::Write;

use crate::env_vars::{CREW_FAULT_KILL_AFTER, CREW_FAULT_ONCE};
use crate::worker::{self, ProcessIdentity};

/// The steps of `crew dispatch` (src/commands/dispatch.rs), in order.
pub const DISPATCH_POINTS: &[&str] = &[
    "lease", "assigned", "board", "worktree", "context", "prompt", "spec", "spawn",
];

/// The points after a worker started, in the order an issue's life reaches them: the agent's
/// `crew done`, `crew handover`, `crew blocked` and `crew fail`, the supervisor's salvage of an attempt that ended without
/// either, and the maintainer's `crew approve`, `crew answer`, `crew request-changes` and
/// `crew merge`.
pub const LIFE_POINTS: &[&str] = &[
    // `crew done`: the branch pushed; the pull request opened; the `in_review` (or, with
    // `--no-pr`, `completed`) comment posted; `.crew/finished` written, the lease not released.
    "done:push",
    "done:pr",
    "done:comment",
    "done:finished",
    // `crew handover`: the WIP commit pushed; the `handover` comment posted; `.crew/finished`
    // written, the lease not released.
    "handover:push",
    "handover:comment",
    "handover:finished",
    // `crew blocked`: the `blocked` comment posted; `.crew/finished` not written.
    "blocked:comment",
    // `crew fail` (the work saved first): the `failed` comment posted, `.crew/finished` not
    // written; `.crew/finished` written, the lease not released.
    "fail:comment",
    "fail:finished",
    // The supervisor, for an agent that exited without `done`/`handover`/`fail`: the WIP commit
    // pushed; the salvage `handover` comment posted, the lease not released.
    "salvage:push",
    "salvage:comment",
    // The maintainer: the event comment posted, the board not mirrored (nor, for `answer` and
    // `request-changes`, the next attempt dispatched).
    "approve:comment",
    "answer:comment",
    "request-changes:comment",
    // `crew merge`: the pull request merged; the `completed` comment posted; the lease released,
    // the worktrees not removed.
    "merge:pr",
    "merge:comment",
    "merge:release",
];

/// The points of `crew cancel`, in order: `.crew/finished` = `cancelled` written, the supervisor
/// not signalled; the supervisor and the agent stopped, the work not saved; the WIP commit made
/// and pushed; the `cancelled` comment posted, the lease not released; the lease released, the
/// board and labels not mirrored.
pub const CANCEL_POINTS: &[&str] = &[
    "cancel:finished",
    "cancel:stop",
    "cancel:push",
    "cancel:comment",
    "cancel:release",
];

/// Every point of an issue's life that ends in a merge, dispatch first: what the random crash
/// runs pick from.
pub fn points() -> impl Iterator<Item = &'static str> {
    DISPATCH_POINTS.iter().chain(LIFE_POINTS).copied()
}

/// Every point there is.
pub fn all_points() -> impl Iterator<Item = &'static str> {
    points().chain(CANCEL_POINTS.iter().copied())
}

/// Dies here, by SIGKILL to itself, when `CREW_FAULT_KILL_AFTER` names `point` (and, with
/// `CREW_FAULT_ONCE`, no process has died at a point of this run yet). Otherwise does nothing.
pub fn crashpoint(point: &str) {
    debug_assert!(
        all_points().any(|known| known == point),
        "crash point `{point}` is not in fault::DISPATCH_POINTS, LIFE_POINTS or CANCEL_POINTS"
    );
    if std::env::var_os(CREW_FAULT_KILL_AFTER).is_none_or(|value| value != point) {
        return;
    }
    if let Some(once) = std::env::var_os(CREW_FAULT_ONCE).filter(|path| !path.is_empty()) {
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&once)
        {
            Ok(mut file) => {
                let _ = writeln!(file, "{point} {}", std::process::id());
                let _ = file.sync_all();
            }
            // Fired already (or the file cannot be made): go on, alive.
            Err(_) => return,
        }
    }
    let _ = worker::signal_process(
        &ProcessIdentity::current().unwrap_or(ProcessIdentity {
            pid: std::process::id(),
            start_time: 0,
        }),
        worker::Signal::Kill,
    );
    // SIGKILL cannot be caught; should it somehow not be delivered, die anyway, uncleanly.
    std::process::abort();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_are_unique_and_named_by_command() {
        let all: Vec<&str> = all_points().collect();
        let mut unique = all.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), all.len());
        for point in LIFE_POINTS.iter().chain(CANCEL_POINTS) {
            let (command, step) = point.split_once(':').unwrap_or_default();
            assert!(!command.is_empty() && !step.is_empty(), "{point}");
        }
        // An unset variable kills nobody (this test would not return otherwise).
        if std::env::var_os(CREW_FAULT_KILL_AFTER).is_none() {
            crashpoint("done:push");
        }
    }
}
