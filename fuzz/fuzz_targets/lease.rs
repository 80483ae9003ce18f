//! A lease commit message through `parse_lease`/`parse_lease_for`, and the same bytes as a
//! lease ref name; a parsed lease re-renders to itself.
//! The property lives in `crew::protocol::fuzz_regressions`, which also replays
//! `fuzz/regressions/lease/` on stable.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| crew::protocol::fuzz_regressions::check_lease(data));
