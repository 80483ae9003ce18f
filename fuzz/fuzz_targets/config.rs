//! `crew.toml` text through `Config::parse` (the loader `crew` uses, with validation); a config
//! that loads accepted no unknown key and loads the same when written back.
//! The property lives in `crew::protocol::fuzz_regressions`, which also replays
//! `fuzz/regressions/config/` on stable.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| crew::protocol::fuzz_regressions::check_config(data));
