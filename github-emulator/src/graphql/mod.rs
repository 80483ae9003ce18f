//! `POST /graphql`: GitHub's GraphQL API, the subset crew uses, with GitHub's own type, field and
//! argument names (the tests hold the SDL to be a strict subset of GitHub's published schema).
//!
//! One request goes: the GitHub middleware authenticates (401 for anonymous) and applies faults;
//! this handler builds an async-graphql request carrying the caller; async-graphql parses and
//! validates; then [`GithubRules`] (an async-graphql extension, so it runs after validation and
//! before execution) enforces GitHub's pagination rules, computes the query's cost and charges it
//! to the caller's `graphql` rate window; then the resolvers run, each locking the state briefly.
//!
//! Status codes: a document that does not parse or names something the emulator does not serve
//! is a 400 naming it (GitHub answers 200 there; the emulator is loud on purpose, so a client
//! cannot mistake an unknown field for an empty answer). Everything GitHub decides at run time
//! (not found, forbidden, pagination, rate limit) is a 200 with GitHub's `errors` entries
//! (`type`, `message`, `path`, `locations`) and whatever `data` could be resolved.

use std::sync::{Arc, Mutex, OnceLock};

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextValidation};
use async_graphql::{EmptySubscription, ServerError, ValidationResult, Variables};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Extension as AxumExtension, State as AxumState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value as Json, json};

use crate::http::{ApiError, AppState, Caller, RatePoints};

mod analysis;
mod project;
mod query;
mod tracking;
mod types;

use project::Mutation;
use query::Query;

type GithubSchema = async_graphql::Schema<Query, Mutation, EmptySubscription>;

pub fn router() -> Router<AppState> {
    Router::new().route("/graphql", post(graphql))
}

/// The schema, built once per process (it holds no state: the state comes with each request).
fn schema() -> &'static GithubSchema {
    static SCHEMA: OnceLock<GithubSchema> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        async_graphql::Schema::build(Query, Mutation, EmptySubscription)
            .register_output_type::<query::Actor>()
            .register_output_type::<query::GitObject>()
            .register_output_type::<project::ProjectV2FieldCommon>()
            .register_output_type::<project::ProjectV2ItemFieldValueCommon>()
            .extension(GithubRules)
            .finish()
    })
}

/// The emulator's GraphQL schema as SDL, to compare with GitHub's.
pub fn sdl() -> String {
    static SDL: OnceLock<String> = OnceLock::new();
    SDL.get_or_init(|| schema().sdl()).clone()
}

/// What the pre-execution pass decided, read by `rateLimit` and by the handler.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    pub cost: u64,
    pub node_count: u64,
    /// Points actually taken from the caller's window.
    pub charged: u64,
    /// The query was refused before execution (pagination, rate limit): answer without `data`.
    pub refused: bool,
}

/// Everything a resolver needs, attached to each async-graphql request.
pub(crate) struct RequestInfo {
    pub shared: AppState,
    pub login: String,
    query: String,
    operation_name: Option<String>,
    variables: Json,
    pub outcome: Arc<Mutex<Outcome>>,
}

pub(crate) fn info<'a>(ctx: &async_graphql::Context<'a>) -> &'a RequestInfo {
    ctx.data_unchecked::<RequestInfo>()
}

/// GitHub's pre-execution rules as an async-graphql extension (see the module docs).
struct GithubRules;

impl ExtensionFactory for GithubRules {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(GithubRules)
    }
}

fn typed_error(kind: &str, message: String, location: Option<(usize, usize)>) -> ServerError {
    let position = location.map(|(line, column)| async_graphql::Pos { line, column });
    let mut error = ServerError::new(message, position);
    let mut extensions = async_graphql::ErrorExtensionValues::default();
    extensions.set("type", kind);
    error.extensions = Some(extensions);
    error
}

#[async_graphql::async_trait::async_trait]
impl Extension for GithubRules {
    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        let result = next.run(ctx).await?;
        let Some(info) = ctx.data_opt::<RequestInfo>() else {
            return Ok(result);
        };
        let refuse = |errors: Vec<ServerError>| {
            info.outcome
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .refused = true;
            errors
        };
        let analysis = analysis::analyse(
            &sdl(),
            &info.query,
            info.operation_name.as_deref(),
            &info.variables,
        )
        .map_err(|refusals| {
            refuse(
                refusals
                    .into_iter()
                    .map(|r| typed_error(r.kind, r.message, r.location))
                    .collect(),
            )
        })?;
        let charge = if analysis.dry_run { 0 } else { analysis.cost };
        {
            let mut state = info.shared.lock();
            let user_id = state.user(&info.login).map(|u| u.id).unwrap_or(0);
            let window = state.rate_window(Some(&info.login), "graphql");
            if window.used.saturating_add(charge) > window.limit {
                return Err(refuse(vec![typed_error(
                    "RATE_LIMITED",
                    format!("API rate limit exceeded for user ID {user_id}."),
                    None,
                )]));
            }
            window.used += charge;
        }
        let mut outcome = info.outcome.lock().unwrap_or_else(|p| p.into_inner());
        outcome.cost = analysis.cost;
        outcome.node_count = analysis.node_count;
        outcome.charged = charge;
        Ok(result)
    }
}

const GRAPHQL_DOCS: &str = "https://docs.github.com/graphql";

async fn graphql(
    AxumState(shared): AxumState<AppState>,
    AxumExtension(caller): AxumExtension<Caller>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let login = caller.require()?.to_string();
    let body: Json = serde_json::from_slice(&body).map_err(|_| {
        ApiError::new(StatusCode::BAD_REQUEST, "Problems parsing JSON").docs(GRAPHQL_DOCS)
    })?;
    let Some(query) = body.get("query").and_then(Json::as_str) else {
        return Ok(request_error(vec![json!({
            "message": "A query attribute must be specified and must be a string."
        })]));
    };
    let variables = match body.get("variables") {
        None | Some(Json::Null) => json!({}),
        // GitHub also accepts variables as a JSON-encoded string.
        Some(Json::String(text)) => match serde_json::from_str::<Json>(text) {
            Ok(value @ Json::Object(_)) => value,
            _ => {
                return Ok(request_error(vec![
                    json!({"message": "Variables are invalid JSON."}),
                ]));
            }
        },
        Some(value @ Json::Object(_)) => value.clone(),
        Some(_) => {
            return Ok(request_error(vec![
                json!({"message": "Variables are invalid JSON."}),
            ]));
        }
    };
    let operation_name = body
        .get("operationName")
        .and_then(Json::as_str)
        .filter(|name| !name.is_empty())
        .map(str::to_string);
    let outcome = Arc::new(Mutex::new(Outcome::default()));
    let mut request =
        async_graphql::Request::new(query).variables(Variables::from_json(variables.clone()));
    if let Some(name) = &operation_name {
        request = request.operation_name(name.clone());
    }
    let request = request.data(RequestInfo {
        shared,
        login,
        query: query.to_string(),
        operation_name,
        variables,
        outcome: outcome.clone(),
    });
    let response = schema().execute(request).await;
    let (charged, refused) = {
        let outcome = outcome.lock().unwrap_or_else(|p| p.into_inner());
        (outcome.charged, outcome.refused)
    };

    let mut data = serde_json::to_value(&response.data).unwrap_or(Json::Null);
    let mut errors = Vec::new();
    let mut untyped = false;
    for error in &response.errors {
        let mut entry = json!({"message": error.message});
        if let Some(kind) = error.extensions.as_ref().and_then(|e| e.get("type")) {
            entry["type"] = serde_json::to_value(kind).unwrap_or(Json::Null);
        } else {
            untyped = true;
            entry = github_validation_error(&error.message);
        }
        if !error.path.is_empty() {
            entry["path"] = serde_json::to_value(&error.path).unwrap_or(Json::Null);
            null_where_failed(&mut data, &entry["path"]);
        }
        if !error.locations.is_empty() {
            entry["locations"] = error
                .locations
                .iter()
                .map(|p| json!({"line": p.line, "column": p.column}))
                .collect();
        }
        errors.push(entry);
    }
    // async-graphql's own errors (syntax, validation, variables, operation selection) carry no
    // GitHub `type`: the document asked for something the emulator does not serve.
    if untyped {
        return Ok(request_error(errors));
    }
    let mut answer = serde_json::Map::new();
    if !(refused && data.is_null()) {
        answer.insert("data".to_string(), data);
    }
    if !errors.is_empty() {
        answer.insert("errors".to_string(), Json::Array(errors));
    }
    let mut response = axum::Json(Json::Object(answer)).into_response();
    response.extensions_mut().insert(RatePoints(charged));
    Ok(response)
}

/// async-graphql leaves out a nullable field whose resolver failed; GitHub answers it as `null`.
fn null_where_failed(data: &mut Json, path: &Json) {
    let Some(segments) = path.as_array() else {
        return;
    };
    let Some((last, parents)) = segments.split_last() else {
        return;
    };
    let mut node = data;
    for segment in parents {
        node = match (segment, node) {
            (Json::String(key), Json::Object(map)) => match map.get_mut(key) {
                Some(child) => child,
                None => return,
            },
            (Json::Number(index), Json::Array(items)) => {
                match index.as_u64().and_then(|i| items.get_mut(i as usize)) {
                    Some(child) => child,
                    None => return,
                }
            }
            _ => return,
        };
    }
    if let (Json::String(key), Json::Object(map)) = (last, node) {
        map.entry(key.clone()).or_insert(Json::Null);
    }
}

/// A 400 naming what was wrong, with GitHub's `errors` entries and the REST-style `message`
/// (which clients such as octocrab surface).
fn request_error(errors: Vec<Json>) -> Response {
    let message = errors
        .iter()
        .filter_map(|e| e["message"].as_str())
        .collect::<Vec<_>>()
        .join("; ");
    let body = json!({
        "message": message,
        "documentation_url": GRAPHQL_DOCS,
        "errors": errors,
    });
    let mut response = (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
    response.extensions_mut().insert(RatePoints(0));
    response
}

/// async-graphql's validation messages in GitHub's (graphql-ruby's) wording, with the
/// `extensions.code` GitHub attaches. Unrecognised messages pass through unchanged.
fn github_validation_error(message: &str) -> Json {
    static PATTERNS: OnceLock<Vec<(regex::Regex, &'static str)>> = OnceLock::new();
    let patterns = PATTERNS.get_or_init(|| {
        [
            (r#"^Unknown field "([^"]+)" on type "([^"]+)""#, "undefinedField"),
            (r#"^Unknown argument "([^"]+)" on field "([^"]+)" of type "([^"]+)""#, "argumentNotAccepted"),
            (r#"^Unknown type "([^"]+)""#, "undefinedType"),
            (r#"^Field "([^"]+)" argument "([^"]+)" of type "([^"]+)" is required but not provided"#, "missingRequiredArguments"),
        ]
        .into_iter()
        .map(|(pattern, code)| (regex::Regex::new(pattern).expect("static pattern"), code))
        .collect()
    });
    for (pattern, code) in patterns {
        let Some(captures) = pattern.captures(message) else {
            continue;
        };
        let group = |i: usize| captures.get(i).map(|m| m.as_str()).unwrap_or("");
        let (text, extensions) = match *code {
            "undefinedField" => (
                format!("Field '{}' doesn't exist on type '{}'", group(1), group(2)),
                json!({"code": code, "typeName": group(2), "fieldName": group(1)}),
            ),
            "argumentNotAccepted" => (
                format!(
                    "Field '{}' doesn't accept argument '{}'",
                    group(2),
                    group(1)
                ),
                json!({"code": code, "name": group(2), "typeName": "Field", "argumentName": group(1)}),
            ),
            "undefinedType" => (
                format!(
                    "No such type {}, so it can't be a fragment condition",
                    group(1)
                ),
                json!({"code": code, "typeName": group(1)}),
            ),
            _ => (
                format!(
                    "Field '{}' is missing required arguments: {}",
                    group(1),
                    group(2)
                ),
                json!({"code": code, "className": "Field", "name": group(1), "arguments": group(2)}),
            ),
        };
        return json!({"message": text, "extensions": extensions});
    }
    json!({"message": message})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_messages_read_like_github() {
        let error = github_validation_error(
            r#"Unknown field "foo" on type "Repository". Did you mean "id"?"#,
        );
        assert_eq!(
            error["message"],
            "Field 'foo' doesn't exist on type 'Repository'"
        );
        let error = github_validation_error(
            r#"Unknown argument "bar" on field "issues" of type "Repository"."#,
        );
        assert_eq!(
            error["message"],
            "Field 'issues' doesn't accept argument 'bar'"
        );
        assert_eq!(
            github_validation_error("something else")["message"],
            "something else"
        );
    }

    #[test]
    fn sdl_parses() {
        let sdl = sdl();
        assert!(sdl.contains("type Repository"), "{sdl}");
    }
}
