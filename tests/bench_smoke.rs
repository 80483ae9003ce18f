//! The `api_cost` bench's measurement (benches/api_cost/measure.rs) on a tiny world with no
//! latency: every step runs for crew and for the seed way, the JSON line has the shape the bench
//! promises, and crew's quiet cycle stays at its conditional requests.

#[path = "../benches/api_cost/measure.rs"]
mod measure;

use std::collections::BTreeSet;

// `measure` takes the emulator's control client from here (the bench has its own include).
use crate::support::Control;
use crate::support::TestResult;
use serde_json::Value;

fn keys(value: &Value) -> BTreeSet<&str> {
    value
        .as_object()
        .map(|object| object.keys().map(String::as_str).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_cost_measures_a_tiny_world_for_crew_and_the_seed_way() -> TestResult {
    let report = measure::run(&measure::Options {
        latency_ms: 0,
        sizes: vec![measure::Size {
            issues: 20,
            comments_per_issue: 2,
        }],
    })
    .await?;
    let line = measure::json_line(&report)?;
    assert!(!line.contains('\n'), "one line: {line}");
    let json: Value = serde_json::from_str(&line)?;

    assert_eq!(
        keys(&json),
        BTreeSet::from(["latency_ms", "sizes"]),
        "{json}"
    );
    assert_eq!(json["latency_ms"], 0);
    let sizes = json["sizes"].as_array().ok_or("sizes is a list")?;
    assert_eq!(sizes.len(), 1, "{json}");
    let size = &sizes[0];
    assert_eq!(
        keys(size),
        BTreeSet::from(["issues", "comments_per_issue", "crew", "seed_way"]),
        "{size}"
    );
    assert_eq!(
        (size["issues"].as_u64(), size["comments_per_issue"].as_u64()),
        (Some(20), Some(2))
    );
    let steps = BTreeSet::from(["cold", "warm", "one_comment", "fill5", "dispatch"]);
    for who in ["crew", "seed_way"] {
        assert_eq!(keys(&size[who]), steps, "{who}: {size}");
        for step in &steps {
            let leaf = &size[who][step];
            assert_eq!(
                keys(leaf),
                BTreeSet::from(["requests", "rate_points", "ms"]),
                "{who}.{step}: {leaf}"
            );
            assert!(
                leaf["requests"].as_u64().is_some_and(|n| n > 0)
                    && leaf["rate_points"].is_u64()
                    && leaf["ms"].is_u64(),
                "{who}.{step}: every step makes requests: {leaf}"
            );
        }
    }

    let crew_warm = &size["crew"]["warm"];
    assert!(crew_warm["requests"].as_u64() <= Some(3), "{crew_warm}");
    assert_eq!(crew_warm["rate_points"], 0, "{crew_warm}");
    // The seed way reads every open issue and its comments each cycle, and a PR list per worker.
    let seed_warm = size["seed_way"]["warm"]["requests"].as_u64().unwrap_or(0);
    assert!(seed_warm >= 2 * 20 + 6, "{size}");
    // A new comment costs crew the first page of both lists (the lease list stays a 304).
    let one_comment = &size["crew"]["one_comment"];
    assert_eq!(one_comment["requests"], 3, "{one_comment}");
    assert_eq!(one_comment["rate_points"], 2, "{one_comment}");

    let table = measure::table(&report);
    assert_eq!(table.lines().count(), 2 + 5 + 1, "{table}");
    Ok(())
}
