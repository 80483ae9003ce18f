//! The emulator's integration tests, as one test binary (one link instead of one per file).

mod support;

mod basics;
mod git;
mod graphql;
mod issues;
mod pulls;
mod serve;
