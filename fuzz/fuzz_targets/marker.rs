//! A comment body through `crew::protocol::marker::parse` (v1 markers and the worker-dispatch
//! skill's fenced JSON); a parsed event re-renders to itself.
//! The property lives in `crew::protocol::fuzz_regressions`, which also replays
//! `fuzz/regressions/marker/` on stable.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| crew::protocol::fuzz_regressions::check_marker(data));
