//! The command line: global flags, parsing, and the process entry point.
//!
//! `main.rs` only calls [`main_exit_code`]; everything it does is here so it can be tested as a
//! library. The order matters: `.env` is loaded before anything reads the environment, the printer
//! exists before anything can fail (so even a broken `crew.toml` is reported properly), and the
//! tokio runtime is started only once parsing has succeeded (so `--help` costs nothing).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgAction, Args, Parser};

use crate::commands::{self, Command};
use crate::context::Ctx;
use crate::env_vars;
use crate::error::{Classify, CrewError, ErrorKind};
use crate::printer::{ColorChoice, Printer, Verbosity};
use crate::settings::{Env, RepoSlug, Settings};

/// Dispatch AI coding agents onto GitHub issues, with GitHub as the source of truth
#[derive(Debug, Parser)]
#[command(name = "crew", version)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command accepts, before or after the subcommand.
#[derive(Clone, Debug, Default, Args)]
pub struct GlobalArgs {
    /// Work on this repository instead of the one from crew.toml or the origin remote
    #[arg(short = 'R', long, global = true, value_name = "OWNER/NAME")]
    pub repo: Option<RepoSlug>,

    /// Print data as JSON on stdout
    #[arg(long, global = true)]
    pub json: bool,

    /// Print only data and errors
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Explain what crew is doing on stderr (repeat for more detail)
    #[arg(short, long, global = true, action = ArgAction::Count)]
    pub verbose: u8,

    /// Read settings from this file instead of crew.toml or .github/crew.toml
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// When to colour output (NO_COLOR turns `auto` off)
    #[arg(long, global = true, value_name = "WHEN", default_value_t, value_enum)]
    pub color: ColorChoice,

    /// Name this machine in leases [default: $CREW_HOST, else the hostname]
    #[arg(long, global = true, value_name = "NAME")]
    pub host: Option<String>,
}

impl GlobalArgs {
    pub fn verbosity(&self) -> Verbosity {
        Verbosity::from_flags(self.quiet, self.verbose)
    }
}

/// Failures before settings exist: a malformed `.env`, no working directory, no runtime.
#[derive(Debug, thiserror::Error)]
enum StartupError {
    #[error("cannot load .env: {0}")]
    DotEnv(#[source] dotenvy::Error),
    #[error("cannot determine the current directory")]
    CurrentDir(#[source] std::io::Error),
    #[error("cannot start the async runtime")]
    Runtime(#[source] std::io::Error),
}

impl Classify for StartupError {
    fn kind(&self) -> ErrorKind {
        match self {
            StartupError::DotEnv(_) => ErrorKind::User,
            StartupError::CurrentDir(_) | StartupError::Runtime(_) => ErrorKind::Internal,
        }
    }

    fn hints(&self) -> Vec<String> {
        match self {
            StartupError::DotEnv(_) => {
                vec!["fix or remove the .env file in the current directory".to_owned()]
            }
            _ => Vec::new(),
        }
    }
}

/// The whole program: parse, run, report, and return the exit code (DESIGN.md §4).
pub fn main_exit_code() -> ExitCode {
    // Before anything reads the environment, and while the process is single-threaded
    // (dotenvy sets variables, which is only sound without other threads).
    let dotenv = load_dotenv();
    let env = Env::from_process();

    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            // clap prints help and version on stdout (exit 0) and usage errors on stderr (exit 2).
            let _ = error.print();
            return ExitCode::from(
                u8::try_from(error.exit_code()).unwrap_or(ErrorKind::Usage.exit_code()),
            );
        }
    };
    let printer = Printer::new(cli.global.verbosity(), cli.global.color, &env);
    init_tracing(&cli.global, &env, printer.err_style().enabled());

    let result = dotenv.and_then(|()| {
        // A worker's supervisor lives as long as its agent, one per worker: it waits on a
        // process, a timer and a lease renewal, so one thread does (a multi-threaded runtime
        // would start a thread per core in each of them). Blocking work still gets its own
        // short-lived threads from `spawn_blocking`.
        let mut builder = if matches!(cli.command, crate::commands::Command::Supervise(_)) {
            tokio::runtime::Builder::new_current_thread()
        } else {
            tokio::runtime::Builder::new_multi_thread()
        };
        let runtime = builder
            .enable_all()
            .build()
            .map_err(StartupError::Runtime)?;
        runtime.block_on(run(cli, printer.clone(), env))
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            printer.error(&error);
            ExitCode::from(error.exit_code())
        }
    }
}

/// Resolves settings, builds the context and runs the command.
pub async fn run(cli: Cli, printer: Printer, env: Env) -> Result<(), CrewError> {
    let cwd = std::env::current_dir().map_err(StartupError::CurrentDir)?;
    let settings = Settings::resolve(&cli.global, &env, &cwd)?;
    let ctx = Ctx::new(settings, printer);
    let result = commands::dispatch(&ctx, &cli.command).await;
    // `-v`: what the command cost in requests, whether it succeeded or not.
    if let Some(github) = ctx.github_if_built() {
        ctx.printer.verbose(github.request_summary());
    }
    result
}

/// Loads `./.env` without overriding variables that are already set; a missing file is fine.
fn load_dotenv() -> Result<(), CrewError> {
    match dotenvy::from_path(".env") {
        Ok(()) => Ok(()),
        Err(dotenvy::Error::Io(error)) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(StartupError::DotEnv(error).into()),
    }
}

/// Logs go to stderr; `CREW_LOG` (EnvFilter syntax) overrides what `-q`/`-v` select.
fn init_tracing(global: &GlobalArgs, env: &Env, color: bool) {
    let default = match global.verbosity() {
        Verbosity::Quiet => "error",
        Verbosity::Normal => "warn",
        Verbosity::Verbose(1) => "warn,crew=info,github_emulator=info",
        Verbosity::Verbose(2) => "info,crew=debug,github_emulator=debug",
        Verbosity::Verbose(_) => "debug,crew=trace,github_emulator=trace",
    };
    let filter = env
        .get(env_vars::CREW_LOG)
        .and_then(|directives| tracing_subscriber::EnvFilter::try_new(directives).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .with_ansi(color)
        .without_time()
        .with_target(global.verbose >= 2)
        .try_init();
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("crew").chain(args.iter().copied()))
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_before_the_command() {
        let cli = parse(&["-R", "a/b", "--json", "doctor"]).unwrap();
        assert_eq!(cli.global.repo.unwrap().to_string(), "a/b");
        assert!(cli.global.json);
        assert!(matches!(cli.command, Command::Doctor(_)));
    }

    #[test]
    fn global_flags_after_the_command() {
        let cli = parse(&[
            "doctor",
            "--repo",
            "acme/widgets",
            "-vv",
            "--color",
            "never",
            "--host",
            "box",
        ])
        .unwrap();
        assert_eq!(
            cli.global.repo.as_ref().unwrap().to_string(),
            "acme/widgets"
        );
        assert_eq!(cli.global.verbosity(), Verbosity::Verbose(2));
        assert_eq!(cli.global.color, ColorChoice::Never);
        assert_eq!(cli.global.host.as_deref(), Some("box"));
    }

    #[test]
    fn defaults() {
        let cli = parse(&["doctor"]).unwrap();
        assert_eq!(cli.global.verbosity(), Verbosity::Normal);
        assert_eq!(cli.global.color, ColorChoice::Auto);
        assert!(!cli.global.json);
        assert!(cli.global.repo.is_none());
    }

    #[test]
    fn usage_errors_exit_2() {
        for args in [
            &["-R", "not-a-repo", "doctor"][..],
            &["-q", "-v", "doctor"],
            &["--color", "sometimes", "doctor"],
            &["frobnicate"],
            &[],
        ] {
            let error = parse(args).unwrap_err();
            assert_eq!(error.exit_code(), 2, "{args:?}: {error}");
        }
    }

    #[test]
    fn help_and_version_exit_0() {
        assert_eq!(parse(&["--help"]).unwrap_err().exit_code(), 0);
        assert_eq!(parse(&["--version"]).unwrap_err().exit_code(), 0);
    }

    #[test]
    fn emulator_serve_takes_the_emulator_flags() {
        let cli = parse(&["emulator", "serve", "--addr", "127.0.0.1:0"]).unwrap();
        assert!(matches!(cli.command, Command::Emulator(_)));
    }
}
