//! Fault injection for the crash-recovery tests: `kill -9` at named points of an issue's life.
//!
//! `CREW_FAULT_KILL_AFTER=<point>` makes the process that reaches [`crashpoint`]`(<point>)`
//! SIGKILL itself there, exactly as `kill -9` would: no destructor, no flush, no lock released
//! other than by the kernel. The tests use it to prove that every step of an issue's life is
//! safe to die after, and that what a user (or crew itself) does next converges. Nothing else
//! sets the variable; it is not a setting and `crew doctor` does not list it.
//!
//! Decisions, and why:
//! - **Named points, one list.** Every point is in [`DISPATCH_POINTS`] or
//!   [`LIFE_POINTS`], named `<command>:<step>` ("killed
//!   after that step of that command"), except the dispatch steps, which keep the bare names the
//!   first crash tests used (`lease`, `assigned`, … `spawn`). A test that picks points at random
//!   picks from that list, so a new point is covered without editing the test.
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
/// `crew done` and `crew handover`, the supervisor's salvage of an attempt that ended without
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

/// Every point, dispatch first.
pub fn points() -> impl Iterator<Item = &'static str> {
    DISPATCH_POINTS.iter().chain(LIFE_POINTS).copied()
}

/// Dies here, by SIGKILL to itself, when `CREW_FAULT_KILL_AFTER` names `point` (and, with
/// `CREW_FAULT_ONCE`, no process has died at a point of this run yet). Otherwise does nothing.
pub fn crashpoint(point: &str) {
    debug_assert!(
        points().any(|known| known == point),
        "crash point `{point}` is not in fault::DISPATCH_POINTS or fault::LIFE_POINTS"
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
        let all: Vec<&str> = points().collect();
        let mut unique = all.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), all.len());
        for point in LIFE_POINTS {
            let (command, step) = point.split_once(':').unwrap_or_default();
            assert!(!command.is_empty() && !step.is_empty(), "{point}");
        }
        // An unset variable kills nobody (this test would not return otherwise).
        if std::env::var_os(CREW_FAULT_KILL_AFTER).is_none() {
            crashpoint("done:push");
        }
    }
}
