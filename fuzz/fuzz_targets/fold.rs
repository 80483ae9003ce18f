//! Arbitrary comments (authors, associations, ids, bodies) through the fold, in the text format
//! of `decode_fold_input`; only trusted markers of the issue apply.
//! The property lives in `crew::protocol::fuzz_regressions`, which also replays
//! `fuzz/regressions/fold/` on stable.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| crew::protocol::fuzz_regressions::check_fold(data));
