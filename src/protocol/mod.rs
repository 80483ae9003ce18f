//! The protocol: markers, events, trust and the state fold. **Pure: no I/O, no clock.**
//!
//! GitHub is the source of truth (DESIGN.md 2), so everything crew knows about an issue is read
//! back from comments it (or a trusted person) wrote. This module owns that reading and writing
//! and nothing else: it never touches the network, the disk or the clock, and time is always passed
//! in. That keeps the rules that decide state in one place that property tests can exercise
//! exhaustively, with `github/*` fetching and `cache/*` storing around it (CONVENTIONS.md 8-9).
//!
//! - [`marker`]: the one codec for `<!-- crew:v1 {...} -->` lines, plus the worker-dispatch
//!   skill's fenced-JSON comments.
//! - [`event`]: the typed events those markers carry.
//! - [`trust`](mod@trust): whose markers count, and the reasons the others are ignored.
//! - [`fold`](mod@fold): the state machine of DESIGN.md 2.3, folded incrementally with fencing by attempt.
//! - [`lease`]: the lease JSON and its liveness (DESIGN.md 2.2); the fold takes only the lease's
//!   attempt, so the two meet in one number.
//! - [`fuzz_regressions`]: the properties `fuzz/` checks, and a test replaying every crash it found.

pub mod event;
pub mod fold;
pub mod fuzz_regressions;
pub mod lease;
pub mod marker;
pub mod trust;

#[cfg(test)]
mod proptests;

pub use event::{Assignment, Event, EventBody, EventKind, Handover, new_op_id};
pub use fold::{
    AppliedEvent, Fold, FoldPolicy, IssueState, ObservedEvent, OutOfOrder, Outcome, State,
    TransitionError, fold, next_state,
};
pub use marker::{
    LegacyMarker, MARKER_VERSION, Marker, MarkerError, parse, render, render_comment,
};
pub use trust::{DEFAULT_TRUSTED_ASSOCIATIONS, IgnoreReason, Ignored, trust};
