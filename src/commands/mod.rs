//! One module per command, one dispatch `match` (CONVENTIONS 2).
//!
//! Each `commands/<name>.rs` holds `<Name>Args` (its doc comment is the help text) and
//! `run(ctx, args)`. Commands parse, call into the domain modules and print; business rules live
//! elsewhere. Adding a command is a variant here, a module, and an arm in [`dispatch`].

pub mod agent;
pub mod answer;
pub mod brief;
pub mod cache;
pub mod cancel;
pub mod completions;
pub mod demo;
pub mod demo_agent;
pub mod dispatch;
pub mod doctor;
pub mod emulator;
pub mod fill;
pub mod gc;
pub mod init;
pub mod logs;
pub mod looping;
pub mod maintainer;
pub mod merge;
pub mod ready;
pub mod retry;
pub mod review;
pub mod run_worker;
pub mod show;
pub mod status;
pub mod supervise;
pub mod wait;

use clap::Subcommand;

use crate::context::Ctx;
use crate::error::CrewError;

/// Every subcommand.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the token, repository, settings and GitHub features crew relies on
    Doctor(doctor::DoctorArgs),

    /// Run the bundled GitHub emulator
    #[command(subcommand)]
    #[command(
        after_help = "Examples:\n  crew emulator serve    Serve an emulated GitHub; point CREW_API_URL at the URL it prints"
    )]
    Emulator(emulator::EmulatorCommand),

    /// Run agents through a small project on an emulated GitHub, start to finish
    Demo(demo::DemoArgs),

    /// Act out a demo issue from inside its worktree (started by `crew demo`)
    #[command(hide = true)]
    DemoAgent(demo_agent::DemoAgentArgs),

    /// Show where every issue crew knows about stands
    #[command(
        after_help = "Examples:\n  crew status                  Every open issue crew knows about, with its state and worker\n  crew status --all            ... closed ones too\n  crew status --watch          Keep watching\n  crew status --json | jq '.issues[] | select(.state == \"blocked\")'"
    )]
    Status(status::StatusArgs),

    /// Watch the workers: a live dashboard in a terminal (`crew status --watch`)
    Watch(status::WatchArgs),

    /// Show an issue's timeline of crew events, ignored markers and lease
    Show(show::ShowArgs),

    /// Wait until a matching crew event appears, then print it as JSON
    Wait(wait::WaitArgs),

    /// Start a worker on each issue: lease, announce, worktree, detached supervisor
    Dispatch(dispatch::DispatchArgs),

    /// Print the prompt and command line the next attempt at an issue would run, running nothing
    Brief(brief::BriefArgs),

    /// Inspect, rebuild or verify the local cache of GitHub
    #[command(subcommand)]
    #[command(
        after_help = "Examples:\n  crew cache path       Print the cache file's path\n  crew cache verify     Compare the cache with a fresh read of GitHub\n  crew cache rebuild    Refetch everything (shows progress on a terminal)"
    )]
    Cache(cache::CacheCommand),

    /// Print the log of an issue's worker on this clone
    Logs(logs::LogsArgs),

    /// Stop an issue's worker, save its work, and record the issue as cancelled
    Cancel(cancel::CancelArgs),

    /// Agent-side: tell crew you have started work on the issue
    Start(agent::start::StartArgs),

    /// Agent-side: say you are alive during a long silent stretch (renews the lease, posts nothing)
    Heartbeat(agent::heartbeat::HeartbeatArgs),

    /// Agent-side: report a milestone on the issue
    Progress(agent::progress::ProgressArgs),

    /// Agent-side: ask a maintainer a question you cannot go on without
    Blocked(agent::blocked::BlockedArgs),

    /// Agent-side: stop before finishing; commit, push and leave notes for the next attempt
    Handover(agent::handover::HandoverArgs),

    /// Agent-side: finish; rebase, push and open the pull request
    Done(agent::done::DoneArgs),

    /// Agent-side: give up on the issue because it cannot be done as asked
    Fail(agent::fail::FailArgs),

    /// Remove the worktrees of finished issues (saving their work first), stop orphan
    /// processes, and report disk use
    Gc(gc::GcArgs),

    /// List the issues a fill would start now, in order (-v: and why the others wait)
    Ready(ready::ReadyArgs),

    /// Start workers on ready issues, up to the free slots
    Fill(fill::FillArgs),

    /// Fill worker slots every interval until interrupted (or, with --until-idle, until all is done)
    Loop(looping::LoopArgs),

    /// Answer the question a blocked worker asked
    Answer(answer::AnswerArgs),

    /// Approve the pull request of an issue in review
    Approve(review::ApproveArgs),

    /// Send an issue's pull request back for another attempt
    RequestChanges(review::RequestChangesArgs),

    /// Merge an issue's approved pull request, record it completed, release and clean up
    Merge(merge::MergeArgs),

    /// Start the next attempt of an issue whose last attempt failed, handed over or died
    Retry(retry::RetryArgs),

    /// Start the next attempt of an issue with another agent or profile
    Reassign(retry::ReassignArgs),

    /// Supervise one worker's agent (started by `crew dispatch`)
    #[command(hide = true)]
    Supervise(supervise::SuperviseArgs),

    /// Set this repository up for crew: crew.toml, labels, board check, workflows, doctor
    Init(init::InitArgs),

    /// Run one attempt of an issue in the foreground (the job of the crew-worker workflow)
    #[command(hide = true)]
    RunWorker(run_worker::RunWorkerArgs),

    /// Print the shell completion script for bash, zsh or fish
    Completions(completions::CompletionsArgs),
}

/// Runs the chosen command.
pub async fn dispatch(ctx: &Ctx, command: &Command) -> Result<(), CrewError> {
    match command {
        Command::Doctor(args) => doctor::run(ctx, args).await,
        Command::Emulator(command) => emulator::run(ctx, command).await,
        Command::Demo(args) => demo::run(ctx, args).await,
        Command::DemoAgent(args) => demo_agent::run(ctx, args).await,
        Command::Status(args) => status::run(ctx, args).await,
        Command::Watch(args) => status::watch(ctx, args).await,
        Command::Show(args) => show::run(ctx, args).await,
        Command::Wait(args) => wait::run(ctx, args).await,
        Command::Cache(command) => cache::run(ctx, command).await,
        Command::Brief(args) => brief::run(ctx, args).await,
        Command::Dispatch(args) => dispatch::run(ctx, args).await,
        Command::Supervise(args) => supervise::run(ctx, args).await,
        Command::Init(args) => init::run(ctx, args).await,
        Command::RunWorker(args) => run_worker::run(ctx, args).await,
        Command::Ready(args) => ready::run(ctx, args).await,
        Command::Fill(args) => fill::run(ctx, args).await,
        Command::Loop(args) => looping::run(ctx, args).await,
        Command::Answer(args) => answer::run(ctx, args).await,
        Command::Approve(args) => review::approve(ctx, args).await,
        Command::RequestChanges(args) => review::request_changes(ctx, args).await,
        Command::Merge(args) => merge::run(ctx, args).await,
        Command::Retry(args) => retry::retry(ctx, args).await,
        Command::Reassign(args) => retry::reassign(ctx, args).await,
        Command::Gc(args) => gc::run(ctx, args).await,
        Command::Start(args) => agent::start::run(ctx, args).await,
        Command::Heartbeat(args) => agent::heartbeat::run(ctx, args).await,
        Command::Progress(args) => agent::progress::run(ctx, args).await,
        Command::Blocked(args) => agent::blocked::run(ctx, args).await,
        Command::Handover(args) => agent::handover::run(ctx, args).await,
        Command::Done(args) => agent::done::run(ctx, args).await,
        Command::Fail(args) => agent::fail::run(ctx, args).await,
        Command::Logs(args) => logs::run(ctx, args).await,
        Command::Cancel(args) => cancel::run(ctx, args).await,
        Command::Completions(args) => completions::run(ctx, args).await,
    }
}
