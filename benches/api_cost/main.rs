//! `cargo bench --bench api_cost`: what crew costs GitHub, beside the same work done the way the
//! worker-dispatch skill does it (DESIGN.md 7). Prints a table, the targets met or not, and as
//! its last line one JSON object (`{"latency_ms", "sizes": [...]}`, see [`measure::Report`]).
//!
//! `CREW_BENCH_LATENCY_MS` (default 20) is added to every API request; `CREW_BENCH_SIZES`
//! (default `100,1000`) lists the numbers of open issues, each with 10 comments;
//! `CREW_BENCH_ROUTES=1` prints each step's requests by route on stderr. Everything runs
//! against emulators on 127.0.0.1, and the whole run is bounded by [`RUN_LIMIT`].
//!
//! Without `--bench` (`cargo test --benches` or `--all-targets` runs it that way) it only checks
//! that it works: 20 issues with 2 comments, no latency, unless the variables say otherwise.

// The emulator's control endpoints, the same client the integration tests use.
#[allow(dead_code)]
#[path = "../../tests/support/control.rs"]
mod control;
#[path = "measure.rs"]
mod measure;

// `measure` takes it from its parent: here, and in the test that includes it (`bench_smoke`).
use control::Control;

use std::process::ExitCode;
use std::time::Duration;

/// The run stops (and fails) after this, whatever it is waiting for.
const RUN_LIMIT: Duration = Duration::from_secs(600);
const COMMENTS_PER_ISSUE: u64 = 10;

fn options(bench: bool) -> Result<measure::Options, String> {
    let latency_ms = match std::env::var("CREW_BENCH_LATENCY_MS") {
        Ok(text) => text
            .trim()
            .parse()
            .map_err(|_| format!("CREW_BENCH_LATENCY_MS=`{text}` is not a number of ms"))?,
        Err(_) if bench => 20,
        Err(_) => 0,
    };
    let (default_sizes, comments_per_issue) = if bench {
        ("100,1000", COMMENTS_PER_ISSUE)
    } else {
        ("20", 2)
    };
    let sizes_text = std::env::var("CREW_BENCH_SIZES").unwrap_or_else(|_| default_sizes.to_owned());
    let sizes = sizes_text
        .split(',')
        .map(|size| {
            size.trim()
                .parse()
                .map(|issues| measure::Size {
                    issues,
                    comments_per_issue,
                })
                .map_err(|_| format!("CREW_BENCH_SIZES: `{size}` is not a number of issues"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(measure::Options { latency_ms, sizes })
}

fn main() -> ExitCode {
    // `cargo bench` passes `--bench`; a harness-less bench has no other arguments to honour.
    let bench = std::env::args().skip(1).any(|arg| arg == "--bench");
    let options = match options(bench) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("api_cost: {message}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("api_cost: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        tokio::time::timeout(RUN_LIMIT, measure::run(&options))
            .await
            .map_err(|_| format!("the run took longer than {RUN_LIMIT:?}").into())
            .and_then(|report| report)
    });
    let report = match outcome {
        Ok(report) => report,
        Err(error) => {
            eprintln!("api_cost: {error}");
            return ExitCode::FAILURE;
        }
    };
    print!("{}", measure::table(&report));
    for line in measure::targets(&report) {
        println!("{line}");
    }
    match measure::json_line(&report) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("api_cost: {error}");
            ExitCode::FAILURE
        }
    }
}
