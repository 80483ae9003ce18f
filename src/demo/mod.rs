//! `crew demo`: crew end to end on a machine with nothing but this binary. An emulated GitHub
//! in this process, a small project with six issues, a clone, `crew loop --until-idle` with a
//! bundled scripted agent that really edits, commits, pushes and opens pull requests, and a
//! maintainer who answers, reviews and merges, then a summary of what it took.
//!
//! - [`world`]: the repository, its issues and what the demo agent writes for each;
//! - [`session`]: running it all (the emulator, the clone, the child processes, the watching);
//! - [`observe`]: the issues' state, read from the emulator without spending requests;
//! - [`maintainer`]: what the maintainer does next (pure);
//! - [`summary`]: progress lines and the summary (`--json`);
//! - [`agent`]: the bundled agent, `crew demo-agent`.

pub mod agent;
pub mod maintainer;
pub mod observe;
pub mod session;
pub mod summary;
pub mod world;

pub use session::{DEMO_AGENT, DemoOptions, Finished, run};
