//! What GitHub decides about a query before running it: every connection must say `first` or
//! `last` (0..=100), and the query's cost.
//!
//! Cost, as GitHub documents it: for each connection, the number of requests needed to fill it
//! assuming every page is full (the product of the `first`/`last` of the connections enclosing
//! it; 1 at the top), summed, divided by 100 and rounded, at least 1. `nodeCount` is the number
//! of nodes the query could return: the sum over connections of the product including their own
//! `first`/`last`.
//!
//! The walk runs on apollo-compiler's typed document against the emulator's own SDL, so a
//! connection is recognised by its field definition (it takes `first`/`last`), through fragments
//! and inline fragments alike.

use std::sync::OnceLock;

use apollo_compiler::executable::{ExecutableDocument, Selection, SelectionSet};
use apollo_compiler::validation::Valid;
use apollo_compiler::{Node, Schema, ast};
use serde_json::Value as Json;

/// The result of a query that may run.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Analysis {
    pub cost: u64,
    pub node_count: u64,
    /// `rateLimit(dryRun: true)` was asked: report the cost, charge nothing.
    pub dry_run: bool,
}

/// Why a query may not run: GitHub's error `type`, its message, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub kind: &'static str,
    pub message: String,
    pub location: Option<(usize, usize)>,
}

pub const MAX_PAGE: i64 = 100;

fn schema(sdl: &str) -> &'static Valid<Schema> {
    static SCHEMA: OnceLock<Valid<Schema>> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        Schema::parse_and_validate(sdl, "emulator.graphql").unwrap_or_else(|e| {
            panic!(
                "the emulator's own GraphQL SDL does not validate:\n{}",
                e.errors
            )
        })
    })
}

/// Analyse `query` (already validated by async-graphql) for `operation_name` with `variables`.
pub fn analyse(
    sdl: &str,
    query: &str,
    operation_name: Option<&str>,
    variables: &Json,
) -> Result<Analysis, Vec<Refusal>> {
    let schema = schema(sdl);
    let document = match ExecutableDocument::parse(schema, query, "query.graphql") {
        Ok(document) => document,
        Err(with_errors) => with_errors.partial,
    };
    let Ok(operation) = document.operations.get(operation_name) else {
        // async-graphql reports the missing operation itself.
        return Ok(Analysis {
            cost: 1,
            ..Analysis::default()
        });
    };
    let mut walk = Walk {
        document: &document,
        operation,
        variables,
        requests: 0,
        nodes: 0,
        dry_run: false,
        refusals: Vec::new(),
        depth: 0,
    };
    walk.selection_set(&operation.selection_set, 1);
    if !walk.refusals.is_empty() {
        return Err(walk.refusals);
    }
    Ok(Analysis {
        cost: walk
            .requests
            .saturating_add(50)
            .checked_div(100)
            .unwrap_or(0)
            .max(1),
        node_count: walk.nodes,
        dry_run: walk.dry_run,
    })
}

struct Walk<'a> {
    document: &'a ExecutableDocument,
    operation: &'a Node<apollo_compiler::executable::Operation>,
    variables: &'a Json,
    requests: u64,
    nodes: u64,
    dry_run: bool,
    refusals: Vec<Refusal>,
    depth: usize,
}

/// An argument's value: a literal or a variable (with the operation's default).
enum Arg {
    Absent,
    Null,
    Int(i64),
    Bool(bool),
    Other,
}

impl Walk<'_> {
    fn selection_set(&mut self, set: &SelectionSet, multiplier: u64) {
        // Validation refused fragment cycles; this only bounds pathological nesting.
        if self.depth > 64 {
            return;
        }
        self.depth += 1;
        for selection in &set.selections {
            match selection {
                Selection::Field(field) => {
                    let location = field
                        .location()
                        .and_then(|l| l.line_column(&self.document.sources))
                        .map(|lc| (lc.line, lc.column));
                    if field.name == "rateLimit"
                        && matches!(self.arg(field, "dryRun"), Arg::Bool(true))
                    {
                        self.dry_run = true;
                    }
                    let definition = &field.definition;
                    let is_connection = definition.argument_by_name("first").is_some()
                        || definition.argument_by_name("last").is_some();
                    if !is_connection {
                        self.selection_set(&field.selection_set, multiplier);
                        continue;
                    }
                    let size = self.page_size(field, location);
                    self.requests = self.requests.saturating_add(multiplier);
                    let inner = multiplier.saturating_mul(size);
                    self.nodes = self.nodes.saturating_add(inner);
                    self.selection_set(&field.selection_set, inner);
                }
                Selection::FragmentSpread(spread) => {
                    if let Some(fragment) = self.document.fragments.get(&spread.fragment_name) {
                        self.selection_set(&fragment.selection_set, multiplier);
                    }
                }
                Selection::InlineFragment(inline) => {
                    self.selection_set(&inline.selection_set, multiplier);
                }
            }
        }
        self.depth -= 1;
    }

    /// `first` or `last` of a connection field, refusing what GitHub refuses.
    fn page_size(
        &mut self,
        field: &apollo_compiler::executable::Field,
        location: Option<(usize, usize)>,
    ) -> u64 {
        let name = field.name.as_str();
        let first = self.arg(field, "first");
        let last = self.arg(field, "last");
        let mut refuse = |kind: &'static str, message: String| {
            self.refusals.push(Refusal {
                kind,
                message,
                location,
            });
            0
        };
        let (which, value) = match (first, last) {
            (Arg::Int(_), Arg::Int(_)) => {
                return refuse(
                    "MISSING_PAGINATION_BOUNDARIES",
                    format!(
                        "Passing both `first` and `last` to paginate the `{name}` connection is not supported."
                    ),
                );
            }
            (Arg::Int(n), _) => ("first", n),
            (_, Arg::Int(n)) => ("last", n),
            _ => {
                return refuse(
                    "MISSING_PAGINATION_BOUNDARIES",
                    format!(
                        "You must provide a `first` or `last` value to properly paginate the `{name}` connection."
                    ),
                );
            }
        };
        // GitHub documents "Values of first and last must be within 1-100"; api.github.com lets
        // 0 through, but crew must not rely on what GitHub does not promise.
        if value < 1 {
            return refuse(
                "MISSING_PAGINATION_BOUNDARIES",
                format!(
                    "`{which}` on the `{name}` connection must be between 1 and {MAX_PAGE}, got {value}."
                ),
            );
        }
        if value > MAX_PAGE {
            return refuse(
                "EXCESSIVE_PAGINATION",
                format!(
                    "Requesting {value} records on the `{name}` connection exceeds the `{which}` limit of {MAX_PAGE} records."
                ),
            );
        }
        value as u64
    }

    fn arg(&self, field: &apollo_compiler::executable::Field, name: &str) -> Arg {
        let Some(argument) = field.arguments.iter().find(|a| a.name == name) else {
            return Arg::Absent;
        };
        self.value(&argument.value)
    }

    fn value(&self, value: &ast::Value) -> Arg {
        match value {
            ast::Value::Null => Arg::Null,
            ast::Value::Int(n) => n
                .try_to_i32()
                .map(|n| Arg::Int(n.into()))
                .unwrap_or(Arg::Int(i64::MAX)),
            ast::Value::Boolean(b) => Arg::Bool(*b),
            ast::Value::Variable(variable) => match self.variables.get(variable.as_str()) {
                Some(Json::Null) => Arg::Null,
                Some(Json::Number(n)) => n.as_i64().map(Arg::Int).unwrap_or(Arg::Other),
                Some(Json::Bool(b)) => Arg::Bool(*b),
                Some(_) => Arg::Other,
                None => {
                    let default = self
                        .operation
                        .variables
                        .iter()
                        .find(|v| v.name == *variable)
                        .and_then(|v| v.default_value.as_ref());
                    match default {
                        Some(default) => self.value(default),
                        None => Arg::Absent,
                    }
                }
            },
            _ => Arg::Other,
        }
    }
}
