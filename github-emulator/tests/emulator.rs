//! The emulator's integration tests, as one test binary (one link instead of one per file).

mod support;

mod actions;
mod basics;
mod git;
mod graphql;
mod issues;
mod pulls;
mod relations;
mod serve;
