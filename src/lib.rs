//! crew: dispatch AI coding agents onto GitHub issues, with GitHub as the source of truth.
//!
//! The binary is a thin wrapper around [`main_exit_code`]; see DESIGN.md for the architecture.

pub mod agents;
pub mod cache;
pub mod cli;
pub mod commands;
pub mod context;
pub mod dashboard;
pub mod demo;
pub mod env_vars;
pub mod error;
pub mod fault;
pub mod github;
pub mod observe;
pub mod printer;
pub mod prompt;
pub mod protocol;
pub mod reconcile;
pub mod runtime_actions;
pub mod schedule;
pub mod scheduler;
pub mod settings;
pub mod sync;
pub mod worker;
pub mod workspace;

pub use cli::{main_exit_code, run};
