use clap::Parser;

/// A strict, stateful GitHub emulator for testing crew
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(flatten)]
    serve: github_emulator::cli::ServeArgs,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match github_emulator::cli::serve(cli.serve).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("github-emulator: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
