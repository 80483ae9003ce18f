//! GraphQL: one POST to `<api>/graphql`, with GitHub's `errors` turned into typed errors.
//!
//! GitHub answers most GraphQL failures with HTTP 200 and an `errors` array (`NOT_FOUND`,
//! `FORBIDDEN`, `RATE_LIMITED`), so the status code alone is not enough; [`GitHub::graphql`]
//! maps those to the same [`GitHubError`] variants REST uses, so callers handle one vocabulary.
//! Queries are reads and retried freely; mutations are writes and follow the write rules.

use chrono::{DateTime, Utc};
use http::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use super::budget::{GRAPHQL, RateSnapshot};
use super::transport::{Request, Resend, decode_json};
use super::{AppliedCheck, GitHub, GitHubError, GraphQlError};

const ROUTE: &str = "POST /graphql";

/// A GraphQL answer with its errors, for callers that can use partial data.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct GraphQlResponse {
    #[serde(default)]
    pub data: Option<Value>,
    #[serde(default)]
    pub errors: Vec<GraphQlError>,
}

impl GitHub {
    /// Runs a query and returns its `data`; any entry in `errors` fails the call.
    /// A `rateLimit { remaining limit resetAt used }` selection refreshes the GraphQL budget.
    pub async fn graphql(&self, query: &str, variables: Value) -> Result<Value, GitHubError> {
        let resend = if is_mutation(query) {
            Resend::Unsafe
        } else {
            Resend::Safe
        };
        self.graphql_with(query, variables, resend, None).await
    }

    /// Runs a mutation that is safe to repeat (setting a field to a value, adding an item that
    /// GitHub deduplicates), so it is retried like a read.
    pub async fn graphql_idempotent_mutation(
        &self,
        query: &str,
        variables: Value,
    ) -> Result<Value, GitHubError> {
        self.graphql_with(query, variables, Resend::Safe, None)
            .await
    }

    /// Runs a mutation that must not be applied twice; `applied` is asked before re-sending.
    pub async fn graphql_mutation(
        &self,
        query: &str,
        variables: Value,
        applied: Option<AppliedCheck<'_, Value>>,
    ) -> Result<Value, GitHubError> {
        self.graphql_with(query, variables, Resend::Unsafe, applied.as_ref())
            .await
    }

    /// The raw answer (data and errors); only transport and HTTP failures are errors.
    pub async fn graphql_response(
        &self,
        query: &str,
        variables: Value,
    ) -> Result<GraphQlResponse, GitHubError> {
        let request = graphql_request(query, variables, Resend::Safe);
        let response: GraphQlResponse = self
            .send(&request, None, |reply| decode_json(ROUTE, &reply.body))
            .await?;
        self.record_graphql_rate_limit(response.data.as_ref());
        Ok(response)
    }

    async fn graphql_with(
        &self,
        query: &str,
        variables: Value,
        resend: Resend,
        applied: Option<&AppliedCheck<'_, Value>>,
    ) -> Result<Value, GitHubError> {
        let request = graphql_request(query, variables, resend);
        let data = self
            .send(&request, applied, |reply| {
                let response: GraphQlResponse = decode_json(ROUTE, &reply.body)?;
                self.record_graphql_rate_limit(response.data.as_ref());
                if !response.errors.is_empty() {
                    return Err(self.graphql_error(response.errors));
                }
                response.data.ok_or_else(|| GitHubError::Unexpected {
                    route: ROUTE.to_string(),
                    message: "GraphQL answer has neither data nor errors".to_string(),
                })
            })
            .await?;
        Ok(data)
    }

    /// Maps GitHub's GraphQL error types onto the REST vocabulary when they all agree.
    fn graphql_error(&self, errors: Vec<GraphQlError>) -> GitHubError {
        let all = |kind: &str| {
            errors
                .iter()
                .all(|error| error.kind.as_deref() == Some(kind))
        };
        let message = || {
            errors
                .iter()
                .map(|error| error.message.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        };
        if errors
            .iter()
            .any(|error| error.kind.as_deref() == Some("RATE_LIMITED"))
        {
            let snapshot = self.rate_snapshot(GRAPHQL);
            return GitHubError::RateLimited {
                resource: GRAPHQL.to_string(),
                remaining: snapshot.map(|s| s.remaining),
                reset: snapshot.map(|s| s.reset),
                retry_after: None,
                secondary: false,
                reserve: None,
            };
        }
        if all("NOT_FOUND") {
            return GitHubError::NotFound {
                route: ROUTE.to_string(),
                message: message(),
            };
        }
        if all("FORBIDDEN") {
            return GitHubError::Forbidden {
                route: ROUTE.to_string(),
                message: message(),
            };
        }
        GitHubError::GraphQl { errors }
    }

    /// Reads a `rateLimit` selection, when the query made one.
    fn record_graphql_rate_limit(&self, data: Option<&Value>) {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct RateLimit {
            limit: u64,
            remaining: u64,
            reset_at: DateTime<Utc>,
            #[serde(default)]
            used: Option<u64>,
        }
        let Some(value) = data.and_then(|data| data.get("rateLimit")) else {
            return;
        };
        if let Ok(rate) = serde_json::from_value::<RateLimit>(value.clone()) {
            self.inner.budget.record(
                GRAPHQL,
                RateSnapshot {
                    limit: rate.limit,
                    remaining: rate.remaining,
                    used: rate.used,
                    reset: rate.reset_at,
                },
            );
        }
    }
}

fn graphql_request(query: &str, variables: Value, resend: Resend) -> Request {
    Request::write(
        Method::POST,
        ROUTE,
        "/graphql".to_string(),
        Some(json!({ "query": query, "variables": variables })),
        resend,
    )
}

/// True when the document's first operation is a mutation (comments and whitespace skipped).
fn is_mutation(query: &str) -> bool {
    query
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty() && !line.starts_with('#'))
        .is_some_and(|line| {
            line.strip_prefix("mutation").is_some_and(|rest| {
                rest.is_empty() || !rest.starts_with(|c: char| c.is_alphanumeric() || c == '_')
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_are_recognised() {
        assert!(is_mutation("# set status\nmutation SetStatus { x }"));
        assert!(is_mutation("  mutation{ x }"));
        assert!(!is_mutation("query { viewer { login } }"));
        assert!(!is_mutation("{ viewer { login } }"));
        assert!(!is_mutation("mutationsAreFun"));
    }
}
