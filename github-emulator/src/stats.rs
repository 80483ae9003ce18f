//! Request and rate-point accounting, per route, as `GET /_emulator/stats` reports it.

use std::collections::BTreeMap;

use serde::Serialize;

#[derive(Debug, Default, Clone, Serialize, PartialEq)]
pub struct RouteStats {
    pub requests: u64,
    pub rate_points: u64,
}

/// The shape DESIGN.md section 6 gives: totals plus `by_route` keyed `"METHOD /template"`.
#[derive(Debug, Default, Clone, Serialize, PartialEq)]
pub struct Stats {
    pub requests: u64,
    pub rate_points: u64,
    pub not_modified: u64,
    pub by_route: BTreeMap<String, RouteStats>,
}

impl Stats {
    pub fn record(&mut self, route: &str, rate_points: u64, not_modified: bool) {
        self.requests += 1;
        self.rate_points += rate_points;
        if not_modified {
            self.not_modified += 1;
        }
        let entry = self.by_route.entry(route.to_string()).or_default();
        entry.requests += 1;
        entry.rate_points += rate_points;
    }
}
