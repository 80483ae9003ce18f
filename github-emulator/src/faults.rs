//! Fault injection: latency, errors per route, secondary rate limits, and writes whose response
//! is dropped, or held past the client's timeout, after they were applied (to test that clients
//! never apply a write twice).
//!
//! Rules are deterministic by default (`times`: the next N matching requests); `rate` adds a
//! seeded probability so a test run can be replayed.
//!
//! Every GraphQL request is one route (`POST /graphql`), so a rule can also name an
//! `operation`: it then hits only GraphQL requests whose operation has that name (`CrewBoardAdd`)
//! or selects that top-level field (`addProjectV2ItemById`). That is how a test fails one
//! mutation of several a client sends, and lets the others through.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Faults {
    /// Added to every API request before it is handled.
    #[serde(default)]
    pub latency_ms: u64,
    #[serde(default)]
    pub rules: Vec<FaultRule>,
    /// Seed of the generator behind `rate`.
    #[serde(default)]
    pub seed: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FaultRule {
    /// `"METHOD /template"` as in `/_emulator/stats` (e.g. `"POST /repos/{owner}/{repo}/issues"`),
    /// `"METHOD *"`, or `"*"` for every route.
    pub route: String,
    pub fault: FaultKind,
    /// Status for `error` (default 502) and `secondary_limit` (default 403; GitHub also uses 429).
    #[serde(default)]
    pub status: Option<u16>,
    /// `retry-after` seconds for `secondary_limit` (default 60).
    #[serde(default)]
    pub retry_after: Option<u64>,
    /// Apply to the next N matching requests only; unlimited when absent.
    #[serde(default)]
    pub times: Option<u64>,
    /// Probability (0..=1) that a matching request is hit; always when absent.
    #[serde(default)]
    pub rate: Option<f64>,
    /// Only GraphQL requests whose operation is named this, or selects a top-level field of
    /// this name (see the module docs); every request on `route` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// How long `stall` holds the response (default 30,000 ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stall_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// Answer with an error status without handling the request.
    Error,
    /// Answer as GitHub's secondary rate limit does: 403/429 with `retry-after`.
    SecondaryLimit,
    /// Handle the request (the write is applied), then drop the connection without a response.
    DropAfterWrite,
    /// Handle the request (the write is applied), then hold the response for `stall_ms`: a
    /// gateway that hangs, which the client sees as its own read timeout.
    Stall,
}

impl FaultRule {
    fn matches(&self, route: &str, operations: &[String]) -> bool {
        if let Some(operation) = &self.operation
            && !operations.contains(operation)
        {
            return false;
        }
        if self.route == "*" || self.route == route {
            return true;
        }
        match self.route.split_once(' ') {
            Some((method, "*")) => route.split_once(' ').is_some_and(|(m, _)| m == method),
            _ => false,
        }
    }
}

impl Faults {
    /// The fault to apply to a request on `route`, consuming one of its `times`.
    pub fn take(&mut self, route: &str) -> Option<FaultRule> {
        self.take_for(route, &[])
    }

    /// Whether some rule names a GraphQL operation (then a GraphQL request's body is read
    /// before the faults are taken).
    pub fn targets_operations(&self) -> bool {
        self.rules.iter().any(|rule| rule.operation.is_some())
    }

    /// [`Faults::take`] for a request that runs `operations` (see [`graphql_operations`]).
    pub fn take_for(&mut self, route: &str, operations: &[String]) -> Option<FaultRule> {
        for index in 0..self.rules.len() {
            if !self.rules[index].matches(route, operations) {
                continue;
            }
            if let Some(rate) = self.rules[index].rate
                && self.next_unit() >= rate
            {
                continue;
            }
            let rule = self.rules[index].clone();
            if let Some(times) = &mut self.rules[index].times {
                *times = times.saturating_sub(1);
                if *times == 0 {
                    self.rules.remove(index);
                }
            }
            return Some(rule);
        }
        None
    }

    /// A uniform number in [0, 1) from a splitmix64 generator seeded by `seed`.
    fn next_unit(&mut self) -> f64 {
        self.seed = self.seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// What a GraphQL request body runs: the selected operation's name (when it has one) and the
/// names of its top-level fields. Empty for a body that is not a GraphQL request or does not
/// parse (the handler reports those; no fault rule with an `operation` can hit them).
pub fn graphql_operations(body: &[u8]) -> Vec<String> {
    use async_graphql::parser::types::{DocumentOperations, Selection};
    let Ok(request) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Vec::new();
    };
    let Some(Ok(document)) = request["query"]
        .as_str()
        .map(async_graphql::parser::parse_query)
    else {
        return Vec::new();
    };
    let wanted = request["operationName"].as_str();
    let (name, operation) = match &document.operations {
        DocumentOperations::Single(operation) => (None, operation),
        DocumentOperations::Multiple(operations) => {
            let found = match wanted {
                Some(wanted) => operations.iter().find(|(name, _)| name.as_str() == wanted),
                None if operations.len() == 1 => operations.iter().next(),
                None => None,
            };
            match found {
                Some((name, operation)) => (Some(name.to_string()), operation),
                None => return Vec::new(),
            }
        }
    };
    // A named operation is in the map (even alone); only an anonymous one is `Single`.
    name.into_iter()
        .chain(
            operation
                .node
                .selection_set
                .node
                .items
                .iter()
                .filter_map(|item| match &item.node {
                    Selection::Field(field) => Some(field.node.name.node.to_string()),
                    _ => None,
                }),
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(route: &str, times: Option<u64>, rate: Option<f64>) -> FaultRule {
        FaultRule {
            route: route.to_string(),
            fault: FaultKind::Error,
            status: None,
            retry_after: None,
            times,
            rate,
            operation: None,
            stall_ms: None,
        }
    }

    #[test]
    fn times_are_consumed() {
        let mut faults = Faults {
            rules: vec![rule("GET /user", Some(2), None)],
            ..Faults::default()
        };
        assert!(faults.take("GET /rate_limit").is_none());
        assert!(faults.take("GET /user").is_some());
        assert!(faults.take("GET /user").is_some());
        assert!(faults.take("GET /user").is_none());
        assert!(faults.rules.is_empty());
    }

    #[test]
    fn method_wildcard_and_rate_are_seeded() {
        let make = || Faults {
            rules: vec![rule("POST *", None, Some(0.5))],
            seed: 7,
            ..Faults::default()
        };
        let (mut a, mut b) = (make(), make());
        let hits_a: Vec<bool> = (0..64).map(|_| a.take("POST /x").is_some()).collect();
        let hits_b: Vec<bool> = (0..64).map(|_| b.take("POST /x").is_some()).collect();
        assert_eq!(hits_a, hits_b, "same seed, same faults");
        let hits = hits_a.iter().filter(|h| **h).count();
        assert!((16..=48).contains(&hits), "about half: {hits}");
        assert!(a.take("GET /x").is_none());
    }

    #[test]
    fn an_operation_rule_hits_only_that_graphql_operation() {
        let mut faults = Faults {
            rules: vec![FaultRule {
                operation: Some("addProjectV2ItemById".to_string()),
                ..rule("POST /graphql", Some(1), None)
            }],
            ..Faults::default()
        };
        assert!(faults.targets_operations());
        let body = |query: &str| serde_json::json!({"query": query, "variables": {}}).to_string();
        let item = graphql_operations(
            body("query CrewBoardItem { repository(owner: \"a\", name: \"b\") { id } }").as_bytes(),
        );
        assert_eq!(item, ["CrewBoardItem", "repository"]);
        assert!(faults.take_for("POST /graphql", &item).is_none());
        // The plain route never carries operations.
        assert!(faults.take("POST /graphql").is_none());
        let add = graphql_operations(
            body("mutation CrewBoardAdd($p: ID!) { addProjectV2ItemById(input: {projectId: $p}) { item { id } } }")
                .as_bytes(),
        );
        assert_eq!(add, ["CrewBoardAdd", "addProjectV2ItemById"]);
        assert!(faults.take_for("POST /graphql", &add).is_some());
        assert!(faults.rules.is_empty());
        // By operation name too; anonymous documents and several operations.
        let mut by_name = Faults {
            rules: vec![FaultRule {
                operation: Some("Second".to_string()),
                ..rule("POST /graphql", None, None)
            }],
            ..Faults::default()
        };
        let two = serde_json::json!({
            "query": "query First { viewer { login } } query Second { rateLimit { used } }",
            "operationName": "Second",
        });
        let ops = graphql_operations(two.to_string().as_bytes());
        assert_eq!(ops, ["Second", "rateLimit"]);
        assert!(by_name.take_for("POST /graphql", &ops).is_some());
        assert_eq!(
            graphql_operations(body("{ viewer { login } }").as_bytes()),
            ["viewer"]
        );
        assert!(graphql_operations(b"not json").is_empty());
        assert!(graphql_operations(body("query {").as_bytes()).is_empty());
    }
}
