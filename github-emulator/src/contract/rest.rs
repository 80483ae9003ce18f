//! REST contract: GitHub's OpenAPI 3.0.3 subset, converted to JSON Schema 2020-12.
//!
//! Conversion (OpenAPI 3.0 schema object → JSON Schema):
//! * `nullable: true` next to `type` becomes a type union with `"null"` (and `null` joins an
//!   `enum`); next to `$ref` / `allOf` / `anyOf` / `oneOf` it becomes
//!   `anyOf: [<schema>, {"type": "null"}]`.
//! * `$ref: "#/components/schemas/X"` is kept: every component schema is converted into one root
//!   document registered under [`ROOT_URI`], and each response validator is just a `$ref` into it.
//!   Other local `$ref`s are inlined. Siblings of `$ref` are ignored, as OpenAPI 3.0 says.
//! * Only validation keywords are kept (a whitelist); annotations and OpenAPI-only keywords
//!   (`example`, `description`, `discriminator`, `xml`, `externalDocs`, `deprecated`, `readOnly`,
//!   `x-*`...) are dropped. Boolean `exclusiveMinimum`/`exclusiveMaximum` (3.0 style) become numbers.
//! * Formats `date-time`, `email` and `uri` are checked; unknown ones (`int64`, `repo.nwo`) ignored.
//!
//! Validators are compiled lazily, one per (operation, status), and cached.

use std::{
    path::Path,
    sync::OnceLock,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, anyhow, bail};
use jsonschema::{Draft, Registry, Resource, Validator};
use regex::Regex;
use serde_json::{Map, Value, json};

/// Base URI of the converted root document inside the validators' registry.
pub const ROOT_URI: &str = "https://crew.invalid/github-rest-subset.schema.json";
/// Where converted response / request schemas live inside the root document.
const SLOT_KEY: &str = "x-crew-slots";

const KEEP_AS_IS: &[&str] = &[
    "required",
    "format",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "uniqueItems",
    "minProperties",
    "maxProperties",
    "multipleOf",
    "const",
];

/// GitHub's REST API description (the subset crew uses), ready to validate responses.
pub struct RestContract {
    operations: Vec<Operation>,
    registry: Registry,
    /// One per converted response/request schema; index = position under `/x-crew-slots`.
    slots: Vec<OnceLock<Result<Validator, String>>>,
    slot_names: Vec<String>,
    load_time: Duration,
}

impl std::fmt::Debug for RestContract {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestContract")
            .field("operations", &self.operations.len())
            .field("schemas", &self.slots.len())
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct Operation {
    method: String,
    template: String,
    operation_id: String,
    regex: Regex,
    /// Characters of the template outside `{params}`: more literal = more specific.
    literal_len: usize,
    responses: Vec<ResponseSpec>,
    request: Option<RequestSpec>,
}

#[derive(Debug)]
struct ResponseSpec {
    /// `"200"`, `"2XX"` or `"default"`, as in the description.
    key: String,
    body: BodySpec,
}

#[derive(Debug)]
struct RequestSpec {
    required: bool,
    body: BodySpec,
}

#[derive(Debug)]
enum BodySpec {
    /// No `content`: the body must be empty.
    Empty,
    /// `application/json` (or another `*json` type) content with a converted schema slot.
    Json(usize),
    /// Content described, but not JSON: not validated.
    NonJson,
}

/// A summary of one described operation, for listings and coverage reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperationInfo {
    pub method: String,
    pub template: String,
    pub operation_id: String,
    /// Documented status keys (`"200"`, `"404"`, ...).
    pub statuses: Vec<String>,
}

impl RestContract {
    /// Loads and converts `github-rest-subset.json` (or any OpenAPI 3.0 description).
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let started = Instant::now();
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading OpenAPI description {}", path.display()))?;
        let doc: Value = serde_json::from_str(&text)
            .with_context(|| format!("parsing OpenAPI description {}", path.display()))?;
        let mut contract = Self::from_openapi(&doc)
            .with_context(|| format!("converting OpenAPI description {}", path.display()))?;
        contract.load_time = started.elapsed();
        Ok(contract)
    }

    /// The process-wide contract loaded from [`super::github_description_dir`], or `None` when the
    /// descriptions are absent (callers print a skip notice). Panics if they exist but are broken.
    pub fn shared() -> Option<&'static RestContract> {
        static SHARED: OnceLock<Option<RestContract>> = OnceLock::new();
        SHARED
            .get_or_init(|| {
                let dir = super::github_description_dir()?;
                let path = dir.join(super::REST_FILE);
                Some(RestContract::load(&path).unwrap_or_else(|e| {
                    panic!(
                        "GitHub REST description {} is broken: {e:#}",
                        path.display()
                    )
                }))
            })
            .as_ref()
    }

    /// Converts an already-parsed OpenAPI 3.0 document.
    pub fn from_openapi(doc: &Value) -> Result<Self> {
        let mut converter = Converter {
            doc,
            slots: Vec::new(),
            slot_names: Vec::new(),
        };
        let mut component_schemas = Map::new();
        if let Some(schemas) = doc
            .pointer("/components/schemas")
            .and_then(Value::as_object)
        {
            for (name, schema) in schemas {
                component_schemas.insert(name.clone(), converter.convert(schema, 0)?);
            }
        }

        let paths = doc
            .get("paths")
            .and_then(Value::as_object)
            .ok_or_else(|| anyhow!("no `paths` object"))?;
        let mut operations = Vec::new();
        for (template, item) in paths {
            let item = deref(doc, item)?;
            let path_params = item.get("parameters").and_then(Value::as_array);
            for (method, op) in item.as_object().into_iter().flatten() {
                if !matches!(
                    method.as_str(),
                    "get" | "put" | "post" | "delete" | "options" | "head" | "patch" | "trace"
                ) {
                    continue;
                }
                let operation_id = op
                    .get("operationId")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let mut params = Vec::new();
                for list in [path_params, op.get("parameters").and_then(Value::as_array)] {
                    for p in list.into_iter().flatten() {
                        params.push(deref(doc, p)?);
                    }
                }
                let (regex, literal_len) = template_regex(doc, template, &params)
                    .with_context(|| format!("{} {template}", method.to_uppercase()))?;

                let mut responses = Vec::new();
                for (key, resp) in op
                    .get("responses")
                    .and_then(Value::as_object)
                    .into_iter()
                    .flatten()
                {
                    let resp = deref(doc, resp)?;
                    let body = converter
                        .body_spec(resp)
                        .with_context(|| format!("{operation_id} response {key}"))?;
                    responses.push(ResponseSpec {
                        key: key.clone(),
                        body,
                    });
                }
                let request = match op.get("requestBody") {
                    Some(rb) => {
                        let rb = deref(doc, rb)?;
                        Some(RequestSpec {
                            required: rb.get("required").and_then(Value::as_bool).unwrap_or(false),
                            body: converter
                                .body_spec(rb)
                                .with_context(|| format!("{operation_id} request body"))?,
                        })
                    }
                    None => None,
                };
                operations.push(Operation {
                    method: method.to_uppercase(),
                    template: template.clone(),
                    operation_id,
                    regex,
                    literal_len,
                    responses,
                    request,
                });
            }
        }

        let root = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "components": { "schemas": component_schemas },
            SLOT_KEY: converter.slots,
        });
        let slot_count = converter.slots.len();
        let registry = Registry::options()
            .draft(Draft::Draft202012)
            .build([(ROOT_URI, Resource::from_contents(root)?)])
            .map_err(|e| anyhow!("building the schema registry: {e}"))?;
        Ok(Self {
            operations,
            registry,
            slots: (0..slot_count).map(|_| OnceLock::new()).collect(),
            slot_names: converter.slot_names,
            load_time: Duration::ZERO,
        })
    }

    /// How long [`RestContract::load`] took (read + parse + convert; validators compile lazily).
    pub fn load_time(&self) -> Duration {
        self.load_time
    }

    /// Every described operation.
    pub fn operations(&self) -> Vec<OperationInfo> {
        self.operations
            .iter()
            .map(|op| OperationInfo {
                method: op.method.clone(),
                template: op.template.clone(),
                operation_id: op.operation_id.clone(),
                statuses: op.responses.iter().map(|r| r.key.clone()).collect(),
            })
            .collect()
    }

    /// Matches a concrete request path (query string allowed, ignored) to its OpenAPI template.
    /// Returns `(template, operation_id)`. `{ref}` parameters may contain slashes (git ref routes),
    /// as may a trailing `{branch}`; integer path parameters only match digits. When several
    /// templates match, the one with the most literal characters wins.
    pub fn match_path(&self, method: &str, concrete_path: &str) -> Option<(&str, &str)> {
        let path = concrete_path
            .split(['?', '#'])
            .next()
            .unwrap_or(concrete_path);
        self.operations
            .iter()
            .filter(|op| op.method.eq_ignore_ascii_case(method) && op.regex.is_match(path))
            .max_by_key(|op| op.literal_len)
            .map(|op| (op.template.as_str(), op.operation_id.as_str()))
    }

    /// Finds an operation by template. Axum-style wildcards (`{*ref}`) are accepted for `{ref}`.
    fn operation(&self, method: &str, template: &str) -> Option<&Operation> {
        let template = template.replace("{*", "{");
        self.operations
            .iter()
            .find(|op| op.method.eq_ignore_ascii_case(method) && op.template == template)
    }

    /// Validates a response to `method path_template` (an OpenAPI path such as
    /// `/repos/{owner}/{repo}/issues/{issue_number}`).
    ///
    /// `body` is the decoded JSON body; an empty body is `Value::Null` (an empty string is accepted
    /// as empty too). Violations: unknown operation, undocumented status, a body where none is
    /// described (204, 304), a missing body, or a body that does not match the schema. Each message
    /// names the operation, status, JSON pointer and reason.
    pub fn validate(
        &self,
        method: &str,
        path_template: &str,
        status: u16,
        body: &Value,
    ) -> Result<(), Vec<String>> {
        let method = method.to_ascii_uppercase();
        let Some(op) = self.operation(&method, path_template) else {
            return Err(vec![format!(
                "{method} {path_template} status {status}: GitHub's description has no such operation"
            )]);
        };
        let label = format!("{} ({method} {path_template})", op.operation_id);
        let Some(resp) = find_response(&op.responses, status) else {
            let documented: Vec<&str> = op.responses.iter().map(|r| r.key.as_str()).collect();
            return Err(vec![format!(
                "{label} status {status}: status not documented by GitHub (documented: {})",
                documented.join(", ")
            )]);
        };
        self.check_body(&label, &format!("status {status}"), &resp.body, body, true)
    }

    /// Statuses GitHub answers on any operation, whether or not the operation's description
    /// lists them: a 304 to a conditional GET, authentication and permission failures, rate
    /// limits, missing resources and server errors. The published subset documents them on only
    /// a few operations (304 on five GETs, 401 on `/user` alone), yet api.github.com sends them
    /// everywhere; the emulator must too, so they are checked against GitHub's generic shapes.
    pub const GENERIC_STATUSES: [u16; 8] = [304, 401, 403, 404, 429, 500, 502, 503];

    /// [`RestContract::validate`], except that a status in [`Self::GENERIC_STATUSES`] that the
    /// operation does not document is checked against GitHub's generic shape instead of being a
    /// violation: 304 has an empty body (GET/HEAD only); the others have a `basic-error` body
    /// (`message` and `documentation_url` strings).
    pub fn validate_response(
        &self,
        method: &str,
        path_template: &str,
        status: u16,
        body: &Value,
    ) -> Result<(), Vec<String>> {
        let method_upper = method.to_ascii_uppercase();
        let documented = self
            .operation(&method_upper, path_template)
            .is_some_and(|op| find_response(&op.responses, status).is_some());
        if documented || !Self::GENERIC_STATUSES.contains(&status) {
            return self.validate(method, path_template, status, body);
        }
        let label = format!("{method_upper} {path_template} status {status}");
        if self.operation(&method_upper, path_template).is_none() {
            return Err(vec![format!(
                "{label}: GitHub's description has no such operation"
            )]);
        }
        if status == 304 {
            if method_upper != "GET" && method_upper != "HEAD" {
                return Err(vec![format!("{label}: 304 answers only GET and HEAD")]);
            }
            return match body {
                Value::Null => Ok(()),
                Value::String(text) if text.is_empty() => Ok(()),
                _ => Err(vec![format!("{label}: a 304 must have an empty body")]),
            };
        }
        let is_string = |key: &str| body.get(key).is_some_and(Value::is_string);
        if is_string("message") && is_string("documentation_url") {
            Ok(())
        } else {
            Err(vec![format!(
                "{label}: a generic error needs GitHub's basic-error body with `message` and `documentation_url` strings, got {body}"
            )])
        }
    }

    /// Like [`RestContract::validate`], but takes the raw body bytes (empty = no body; otherwise
    /// they must parse as JSON when JSON content is described).
    pub fn validate_bytes(
        &self,
        method: &str,
        path_template: &str,
        status: u16,
        body: &[u8],
    ) -> Result<(), Vec<String>> {
        let value = match parse_body(body) {
            Ok(v) => v,
            Err(e) => {
                return Err(vec![format!(
                    "{} {path_template} status {status}: body is not JSON: {e}",
                    method.to_ascii_uppercase()
                )]);
            }
        };
        self.validate(method, path_template, status, &value)
    }

    /// Matches `concrete_path` with [`RestContract::match_path`], then validates. A path that
    /// matches no described operation is itself a violation.
    pub fn validate_concrete(
        &self,
        method: &str,
        concrete_path: &str,
        status: u16,
        body: &Value,
    ) -> Result<(), Vec<String>> {
        match self.match_path(method, concrete_path) {
            Some((template, _)) => self.validate(method, template, status, body),
            None => Err(vec![format!(
                "{} {concrete_path} status {status}: matches no operation in GitHub's description",
                method.to_ascii_uppercase()
            )]),
        }
    }

    /// Validates a request body the way GitHub would (schema of `requestBody`). `Value::Null` is an
    /// absent body. Lets the emulator reject requests that GitHub's description does not allow.
    pub fn validate_request(
        &self,
        method: &str,
        path_template: &str,
        body: &Value,
    ) -> Result<(), Vec<String>> {
        let method = method.to_ascii_uppercase();
        let Some(op) = self.operation(&method, path_template) else {
            return Err(vec![format!(
                "{method} {path_template} request: GitHub's description has no such operation"
            )]);
        };
        let label = format!("{} ({method} {path_template})", op.operation_id);
        match &op.request {
            None if is_empty_body(body) => Ok(()),
            None => Err(vec![format!(
                "{label} request: GitHub describes no request body, but one was sent"
            )]),
            Some(req) if is_empty_body(body) && !req.required => Ok(()),
            Some(req) => self.check_body(&label, "request", &req.body, body, false),
        }
    }

    fn check_body(
        &self,
        label: &str,
        what: &str,
        spec: &BodySpec,
        body: &Value,
        response: bool,
    ) -> Result<(), Vec<String>> {
        match spec {
            BodySpec::Empty if is_empty_body(body) => Ok(()),
            BodySpec::Empty => Err(vec![format!(
                "{label} {what}: GitHub describes no content{}, but the body is not empty: {}",
                if response {
                    " (the body must be empty)"
                } else {
                    ""
                },
                truncate(&body.to_string(), 120)
            )]),
            BodySpec::NonJson => Ok(()),
            BodySpec::Json(_) if is_empty_body(body) => Err(vec![format!(
                "{label} {what}: GitHub describes a JSON body, but the body is empty"
            )]),
            BodySpec::Json(slot) => {
                let validator = self
                    .validator(*slot)
                    .map_err(|e| vec![format!("{label} {what}: schema does not compile: {e}")])?;
                let errors: Vec<String> = validator
                    .iter_errors(body)
                    .map(|e| {
                        let pointer = e.instance_path.to_string();
                        let pointer = if pointer.is_empty() {
                            "/".to_string()
                        } else {
                            pointer
                        };
                        format!(
                            "{label} {what}: at {pointer}: {} (schema {}{})",
                            truncate(&e.to_string(), 300),
                            self.slot_names[*slot],
                            readable_schema_path(&e.schema_path.to_string())
                        )
                    })
                    .collect();
                if errors.is_empty() {
                    Ok(())
                } else {
                    Err(errors)
                }
            }
        }
    }

    fn validator(&self, slot: usize) -> Result<&Validator, &str> {
        self.slots[slot]
            .get_or_init(|| {
                jsonschema::options()
                    .with_draft(Draft::Draft202012)
                    .with_registry(self.registry.clone())
                    .should_validate_formats(true)
                    .build(&json!({ "$ref": format!("{ROOT_URI}#/{SLOT_KEY}/{slot}") }))
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(String::as_str)
    }
}

fn find_response(responses: &[ResponseSpec], status: u16) -> Option<&ResponseSpec> {
    let exact = status.to_string();
    let range = format!("{}XX", status / 100);
    responses
        .iter()
        .find(|r| r.key == exact)
        .or_else(|| {
            responses
                .iter()
                .find(|r| r.key.eq_ignore_ascii_case(&range))
        })
        .or_else(|| responses.iter().find(|r| r.key == "default"))
}

fn is_empty_body(body: &Value) -> bool {
    match body {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        _ => false,
    }
}

fn parse_body(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        Ok(Value::Null)
    } else {
        serde_json::from_slice(bytes)
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// The keyword path without the `$ref` hops (which name no component), e.g.
/// `/properties/labels/items/oneOf`.
fn readable_schema_path(p: &str) -> String {
    let p = p.replace("/$ref", "");
    if p.is_empty() { "/".to_string() } else { p }
}

/// Follows local `$ref`s (`#/...`) until a non-reference object.
fn deref<'a>(doc: &'a Value, mut v: &'a Value) -> Result<&'a Value> {
    for _ in 0..32 {
        match v.get("$ref").and_then(Value::as_str) {
            Some(r) => v = resolve_local(doc, r)?,
            None => return Ok(v),
        }
    }
    bail!("$ref chain too long")
}

fn resolve_local<'a>(doc: &'a Value, r: &str) -> Result<&'a Value> {
    let pointer = r
        .strip_prefix('#')
        .ok_or_else(|| anyhow!("only local $refs are supported, got {r}"))?;
    let pointer = percent_decode(pointer);
    doc.pointer(&pointer)
        .ok_or_else(|| anyhow!("dangling $ref {r}"))
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// Builds the matcher for an OpenAPI path template.
fn template_regex(doc: &Value, template: &str, params: &[&Value]) -> Result<(Regex, usize)> {
    static PARAM: OnceLock<Regex> = OnceLock::new();
    let param_re = PARAM.get_or_init(|| Regex::new(r"\{([^}]+)\}").expect("static regex"));
    let mut pattern = String::from("^");
    let mut last = 0;
    let mut literal_len = 0;
    for caps in param_re.captures_iter(template) {
        let whole = caps.get(0).expect("match");
        let name = &caps[1];
        let literal = &template[last..whole.start()];
        literal_len += literal.len();
        pattern.push_str(&regex::escape(literal));
        last = whole.end();
        let at_end = whole.end() == template.len();
        let schema = params
            .iter()
            .find(|p| {
                p.get("in").and_then(Value::as_str) == Some("path")
                    && p.get("name").and_then(Value::as_str) == Some(name)
            })
            .and_then(|p| p.get("schema"))
            .map(|s| deref(doc, s))
            .transpose()?;
        let ty = schema.and_then(|s| s.get("type")).and_then(Value::as_str);
        let piece = if ty == Some("integer") {
            "[0-9]+"
        } else if name == "ref" || (at_end && name == "branch") {
            // Git refs (`heads/feature/x`) and branch names contain slashes.
            ".+"
        } else {
            "[^/]+"
        };
        pattern.push_str(piece);
    }
    literal_len += template.len() - last;
    pattern.push_str(&regex::escape(&template[last..]));
    pattern.push_str("/?$");
    Ok((Regex::new(&pattern)?, literal_len))
}

struct Converter<'a> {
    doc: &'a Value,
    slots: Vec<Value>,
    /// Top-level component of each slot (`"issue "`), or `"inline "`, for messages.
    slot_names: Vec<String>,
}

impl Converter<'_> {
    fn body_spec(&mut self, container: &Value) -> Result<BodySpec> {
        let Some(content) = container.get("content").and_then(Value::as_object) else {
            return Ok(BodySpec::Empty);
        };
        if content.is_empty() {
            return Ok(BodySpec::Empty);
        }
        let json_media = content
            .get_key_value("application/json")
            .or_else(|| content.iter().find(|(k, _)| k.contains("json")));
        match json_media {
            Some((_, media)) => {
                let schema = match media.get("schema") {
                    Some(s) => self.convert(s, 0)?,
                    None => json!(true),
                };
                let name = media
                    .pointer("/schema/$ref")
                    .and_then(Value::as_str)
                    .and_then(|r| r.rsplit('/').next())
                    .map_or_else(|| "inline ".to_string(), |n| format!("{n} "));
                self.slots.push(schema);
                self.slot_names.push(name);
                Ok(BodySpec::Json(self.slots.len() - 1))
            }
            None => Ok(BodySpec::NonJson),
        }
    }

    /// Converts one OpenAPI 3.0 schema object into JSON Schema 2020-12 (see module docs).
    fn convert(&mut self, schema: &Value, depth: usize) -> Result<Value> {
        if depth > 64 {
            bail!("schema nesting too deep (recursive non-component $ref?)");
        }
        let Some(obj) = schema.as_object() else {
            return Ok(schema.clone()); // boolean schemas
        };
        let nullable = obj.get("nullable").and_then(Value::as_bool) == Some(true);

        if let Some(r) = obj.get("$ref").and_then(Value::as_str) {
            // OpenAPI 3.0: siblings of $ref are ignored (we only honour `nullable`).
            let converted = if r.starts_with("#/components/schemas/") {
                resolve_local(self.doc, r)?; // must not dangle
                json!({ "$ref": r })
            } else {
                let target = resolve_local(self.doc, r)?;
                self.convert(target, depth + 1)?
            };
            return Ok(if nullable {
                json!({ "anyOf": [converted, { "type": "null" }] })
            } else {
                converted
            });
        }

        let has_composition = ["allOf", "anyOf", "oneOf"]
            .iter()
            .any(|k| obj.contains_key(*k));
        // `oneOf: [{type: string, nullable}, {type: integer, nullable}]` (GitHub's
        // validation-error `value`) would reject `null`, which matches every branch. Hoist the
        // branches' nullability onto the `oneOf` as a whole.
        let hoisted_null = obj
            .get("oneOf")
            .and_then(Value::as_array)
            .is_some_and(|alts| {
                alts.iter().any(|a| {
                    a.get("nullable").and_then(Value::as_bool) == Some(true)
                        && a.get("$ref").is_none()
                })
            });
        let nullable = nullable || hoisted_null;
        let has_composition = has_composition || hoisted_null;
        // With a composition, nullability wraps the whole schema; otherwise it joins `type`.
        let inline_null = nullable && !has_composition;
        let mut out = Map::new();
        for (key, value) in obj {
            match key.as_str() {
                "type" => {
                    let mut t = value.clone();
                    if inline_null {
                        t = match t {
                            Value::String(s) if s != "null" => json!([s, "null"]),
                            Value::Array(mut a) => {
                                if !a.contains(&json!("null")) {
                                    a.push(json!("null"));
                                }
                                Value::Array(a)
                            }
                            other => other,
                        };
                    }
                    out.insert(key.clone(), t);
                }
                "enum" => {
                    let mut e = value.clone();
                    if inline_null
                        && let Value::Array(a) = &mut e
                        && !a.contains(&Value::Null)
                    {
                        a.push(Value::Null);
                    }
                    out.insert(key.clone(), e);
                }
                "properties" | "patternProperties" => {
                    let mut props = Map::new();
                    for (name, s) in value.as_object().into_iter().flatten() {
                        props.insert(name.clone(), self.convert(s, depth + 1)?);
                    }
                    out.insert(key.clone(), Value::Object(props));
                }
                "items" | "additionalProperties" | "not" => {
                    out.insert(key.clone(), self.convert(value, depth + 1)?);
                }
                "allOf" | "anyOf" | "oneOf" => {
                    let list = value
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|s| match s {
                            Value::Object(alt) if key == "oneOf" && hoisted_null => {
                                let mut alt = alt.clone();
                                alt.remove("nullable");
                                self.convert(&Value::Object(alt), depth + 1)
                            }
                            _ => self.convert(s, depth + 1),
                        })
                        .collect::<Result<Vec<_>>>()?;
                    out.insert(key.clone(), Value::Array(list));
                }
                "exclusiveMinimum" | "exclusiveMaximum" => match value {
                    Value::Bool(true) => {
                        let bound = if key == "exclusiveMinimum" {
                            "minimum"
                        } else {
                            "maximum"
                        };
                        if let Some(b) = obj.get(bound) {
                            out.insert(key.clone(), b.clone());
                        }
                    }
                    Value::Bool(false) => {}
                    other => {
                        out.insert(key.clone(), other.clone());
                    }
                },
                k if KEEP_AS_IS.contains(&k) => {
                    out.insert(key.clone(), value.clone());
                }
                _ => {} // annotations, OpenAPI-only keywords, x-* extensions
            }
        }
        // A 3.0 `exclusiveMinimum: true` replaces `minimum`.
        for (excl, bound) in [
            ("exclusiveMinimum", "minimum"),
            ("exclusiveMaximum", "maximum"),
        ] {
            if obj.get(excl) == Some(&Value::Bool(true)) {
                out.remove(bound);
            }
        }
        let converted = Value::Object(out);
        Ok(if nullable && has_composition {
            json!({ "anyOf": [converted, { "type": "null" }] })
        } else {
            converted
        })
    }
}

/// Access to the converted component schemas.
impl RestContract {
    /// The converted JSON Schema of a component (e.g. `"issue"`), with `$ref`s left in place.
    pub fn component_schema(&self, name: &str) -> Option<Value> {
        let root = self.registry.try_resolver(ROOT_URI).ok()?;
        let resolved = root.lookup(&format!("#/components/schemas/{name}")).ok()?;
        Some(resolved.contents().clone())
    }

    /// The `required` array of a component schema (e.g. `"issue"`, `"git-ref"`): the fields the
    /// emulator must always render in that object.
    pub fn required_fields(&self, component: &str) -> Option<Vec<String>> {
        let schema = self.component_schema(component)?;
        Some(
            schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contract() -> Option<&'static RestContract> {
        let c = RestContract::shared();
        if c.is_none() {
            let why = crate::contract::locate_github_descriptions().unwrap_err();
            eprintln!("NOTICE: REST contract check skipped: {why}");
        }
        c
    }

    #[test]
    fn load_and_first_validation_timing() {
        let Some(dir) = crate::contract::descriptions_or_skip("REST contract timing") else {
            return;
        };
        let t0 = Instant::now();
        let c = RestContract::load(dir.join(crate::contract::REST_FILE)).unwrap();
        let loaded = t0.elapsed();
        // First validation against the biggest schema (pull-request: repository x2, users...).
        let pulls_get = "/repos/{owner}/{repo}/pulls/{pull_number}";
        let t1 = Instant::now();
        let errors = c.validate("GET", pulls_get, 200, &json!({})).unwrap_err();
        let first = t1.elapsed();
        assert!(errors.len() > 30, "{errors:?}");
        let t2 = Instant::now();
        c.validate("GET", pulls_get, 200, &json!({})).unwrap_err();
        let second = t2.elapsed();
        // Throughput on a realistic body: a recorded page of three issues.
        let issues =
            crate::contract::load_fixture_responses(dir.join(crate::contract::FIXTURES_DIR))
                .into_iter()
                .find(|f| f.scenario == "paginate-issues" && f.index == 0)
                .expect("paginate-issues fixture")
                .body;
        let list = "/repos/{owner}/{repo}/issues";
        c.validate("GET", list, 200, &issues).unwrap();
        let t3 = Instant::now();
        for _ in 0..1000 {
            c.validate("GET", list, 200, &issues).unwrap();
        }
        let thousand = t3.elapsed();
        let t4 = Instant::now();
        for slot in 0..c.slots.len() {
            c.validator(slot).unwrap();
        }
        let all = t4.elapsed();
        eprintln!(
            "TIMING: RestContract::load {loaded:?}; first validation (compiles pull-request) {first:?}; \
             same again (cached) {second:?}; 1000 validations of a 3-issue page {thousand:?}; \
             compiling the remaining {} validators {all:?}; {} operations",
            c.slots.len(),
            c.operations.len(),
        );
        assert_eq!(c.operations.len(), 36);
    }

    #[test]
    fn every_operation_and_status_compiles() {
        let Some(c) = contract() else { return };
        for op in &c.operations {
            for r in &op.responses {
                if let BodySpec::Json(slot) = r.body {
                    c.validator(slot).unwrap_or_else(|e| {
                        panic!("{} {}: {e}", op.operation_id, r.key);
                    });
                }
            }
            if let Some(RequestSpec {
                body: BodySpec::Json(slot),
                ..
            }) = op.request
            {
                c.validator(slot).unwrap();
            }
        }
    }

    #[test]
    fn match_path_handles_refs_and_literals() {
        let Some(c) = contract() else { return };
        let m = |method, path| {
            c.match_path(method, path)
                .map(|(t, o)| (t.to_string(), o.to_string()))
        };
        assert_eq!(
            m("GET", "/repos/acme/widgets/git/ref/heads/main"),
            Some((
                "/repos/{owner}/{repo}/git/ref/{ref}".into(),
                "git/get-ref".into()
            ))
        );
        assert_eq!(
            m(
                "get",
                "/repos/acme/widgets/git/ref/heads/feature/deep/branch"
            ),
            Some((
                "/repos/{owner}/{repo}/git/ref/{ref}".into(),
                "git/get-ref".into()
            ))
        );
        assert_eq!(
            m("PATCH", "/repos/acme/widgets/git/refs/heads/crew/issue-7")
                .unwrap()
                .1,
            "git/update-ref"
        );
        assert_eq!(
            m("POST", "/repos/acme/widgets/git/refs").unwrap().1,
            "git/create-ref"
        );
        assert_eq!(
            m("GET", "/repos/acme/widgets/issues/comments?per_page=100")
                .unwrap()
                .1,
            "issues/list-comments-for-repo"
        );
        assert_eq!(
            m("GET", "/repos/acme/widgets/issues/12").unwrap().1,
            "issues/get"
        );
        assert_eq!(
            m("GET", "/repos/acme/widgets/issues/12/comments")
                .unwrap()
                .1,
            "issues/list-comments"
        );
        assert_eq!(
            m(
                "DELETE",
                "/repos/acme/widgets/issues/12/labels/crew%3Aready"
            )
            .unwrap()
            .1,
            "issues/remove-label"
        );
        assert_eq!(m("GET", "/rate_limit").unwrap().1, "rate-limit/get");
        assert_eq!(m("GET", "/repos/acme/widgets").unwrap().1, "repos/get");
        assert_eq!(
            m("GET", "/repos/acme/widgets/branches/feature/x")
                .unwrap()
                .1,
            "repos/get-branch"
        );
        assert_eq!(m("GET", "/repos/acme/widgets/issues/abc"), None);
        assert_eq!(m("PATCH", "/repos/acme/widgets"), None);
        assert_eq!(m("GET", "/repos/acme/widgets/hooks"), None);
    }

    #[test]
    fn violations_name_operation_status_pointer_and_reason() {
        let Some(c) = contract() else { return };
        let t = "/repos/{owner}/{repo}/issues/{issue_number}";
        // Unknown operation.
        let e = c
            .validate("GET", "/repos/{owner}/{repo}/hooks", 200, &json!([]))
            .unwrap_err();
        assert!(e[0].contains("no such operation"), "{e:?}");
        // Undocumented status.
        let e = c.validate("GET", t, 418, &json!({})).unwrap_err();
        assert!(e[0].contains("issues/get") && e[0].contains("418"), "{e:?}");
        // 304 must be empty.
        assert!(c.validate("GET", t, 304, &Value::Null).is_ok());
        let e = c.validate("GET", t, 304, &json!({"a": 1})).unwrap_err();
        assert!(e[0].contains("must be empty"), "{e:?}");
        // 204 must be empty.
        let d = "/repos/{owner}/{repo}/git/refs/{ref}";
        assert!(c.validate("DELETE", d, 204, &json!("")).is_ok());
        assert!(c.validate_bytes("DELETE", d, 204, b"").is_ok());
        assert!(c.validate_bytes("DELETE", d, 204, b"{}").is_err());
        // JSON described but empty.
        assert!(c.validate("GET", t, 404, &Value::Null).is_err());
        // Schema violation with a pointer.
        let e = c
            .validate(
                "GET",
                "/repos/{owner}/{repo}/git/ref/{ref}",
                200,
                &json!({
                    "ref": "refs/heads/main", "node_id": "x", "url": "https://api.github.com/x",
                    "object": {"type": "commit", "url": "https://api.github.com/y"}
                }),
            )
            .unwrap_err();
        assert!(
            e.iter().any(|m| m.contains("git/get-ref")
                && m.contains("status 200")
                && m.contains("at /object")
                && m.contains("sha")),
            "{e:?}"
        );
        // Nullable handling: a minimal valid git ref passes; null where not nullable fails.
        let good = json!({
            "ref": "refs/heads/main", "node_id": "REF_x", "url": "https://api.github.com/x",
            "object": {"type": "commit", "sha": "a".repeat(40), "url": "https://api.github.com/y"}
        });
        c.validate("GET", "/repos/{owner}/{repo}/git/ref/{ref}", 200, &good)
            .unwrap();
        c.validate("GET", "/repos/{owner}/{repo}/git/ref/{*ref}", 200, &good)
            .unwrap();
        let mut bad = good.clone();
        bad["node_id"] = Value::Null;
        assert!(
            c.validate("GET", "/repos/{owner}/{repo}/git/ref/{ref}", 200, &bad)
                .is_err()
        );
        // Formats are checked.
        let mut bad = good;
        bad["url"] = json!("not a uri");
        let e = c
            .validate("GET", "/repos/{owner}/{repo}/git/ref/{ref}", 200, &bad)
            .unwrap_err();
        assert!(e.iter().any(|m| m.contains("at /url")), "{e:?}");
    }

    #[test]
    fn nullable_conversion() {
        let doc = json!({
            "openapi": "3.0.3",
            "paths": {"/x": {"get": {"operationId": "x", "responses": {"200": {"content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/thing"}}}}}}}},
            "components": {"schemas": {
                "user": {"type": "object", "required": ["login"],
                         "properties": {"login": {"type": "string"}}},
                "thing": {"type": "object", "required": ["a", "b", "c", "d", "e"], "properties": {
                    "a": {"type": "string", "nullable": true, "example": "x", "deprecated": true},
                    "b": {"$ref": "#/components/schemas/user", "nullable": true},
                    "c": {"nullable": true, "oneOf": [{"type": "string"}, {"type": "integer"}]},
                    "d": {"type": "string", "enum": ["x", "y"], "nullable": true},
                    "f": {"oneOf": [{"type": "string", "nullable": true},
                                    {"type": "integer", "nullable": true}]},
                    "e": {"allOf": [{"$ref": "#/components/schemas/user"}], "nullable": true,
                          "discriminator": {"propertyName": "login"}, "xml": {"name": "e"}}
                }}
            }}
        });
        let c = RestContract::from_openapi(&doc).unwrap();
        let nulls = json!({"a": null, "b": null, "c": null, "d": null, "e": null, "f": null});
        c.validate("GET", "/x", 200, &nulls).unwrap();
        let vals =
            json!({"a": "s", "b": {"login": "u"}, "c": 3, "d": "y", "e": {"login": "v"}, "f": 1});
        c.validate("GET", "/x", 200, &vals).unwrap();
        let bad = json!({"a": 1, "b": {}, "c": [], "d": "z", "e": {"login": 1}, "f": true});
        let e = c.validate("GET", "/x", 200, &bad).unwrap_err();
        for p in ["/a", "/b", "/c", "/d", "/e", "/f"] {
            assert!(
                e.iter().any(|m| m.contains(&format!("at {p}"))),
                "{p}: {e:?}"
            );
        }
        let schema = c.component_schema("thing").unwrap();
        assert_eq!(
            schema["properties"]["a"],
            json!({"type": ["string", "null"]})
        );
        assert!(
            schema["properties"]["e"]
                .to_string()
                .find("discriminator")
                .is_none()
        );
    }

    #[test]
    fn request_bodies() {
        let Some(c) = contract() else { return };
        let t = "/repos/{owner}/{repo}/issues/{issue_number}/comments";
        c.validate_request("POST", t, &json!({"body": "hi"}))
            .unwrap();
        assert!(c.validate_request("POST", t, &json!({})).is_err());
        assert!(c.validate_request("POST", t, &Value::Null).is_err());
    }
}
