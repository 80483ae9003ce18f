//! GraphQL contract: GitHub's public schema (octokit/graphql-schema SDL) parsed with
//! apollo-compiler.
//!
//! GitHub's SDL defines `EnterpriseOwnerInfo.repositoryDeployKeySetting` and
//! `repositoryDeployKeySettingOrganizations` twice, which a strict SDL parser rejects ("duplicate
//! definitions"). We do not patch the text (brittle: line numbers and spellings change between
//! schema dumps). Instead we parse it to an AST, which the parser accepts because duplicates are a
//! *validation* error, not a syntax error, and then drop every later duplicate (type, field,
//! argument, enum value, input field, union member) keeping the first, before building and
//! validating the schema. That fixes this quirk and any future one of the same kind; the dropped
//! definitions are kept in [`GraphqlContract::dropped_duplicates`] for inspection. Any *other*
//! validation error in GitHub's SDL still fails loudly.

use std::{
    collections::HashSet,
    path::Path,
    sync::OnceLock,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, anyhow};
use apollo_compiler::{
    ExecutableDocument, Name, Schema,
    ast::{self, Definition, Type},
    schema::{ExtendedType, FieldDefinition},
    validation::Valid,
};

/// GitHub's GraphQL schema, ready to validate documents and emulator SDL against.
pub struct GraphqlContract {
    schema: Valid<Schema>,
    dropped: Vec<String>,
    load_time: Duration,
}

impl std::fmt::Debug for GraphqlContract {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphqlContract")
            .field("types", &self.schema.types.len())
            .field("dropped", &self.dropped)
            .finish_non_exhaustive()
    }
}

impl GraphqlContract {
    /// Loads `github-schema.graphql` (or any SDL file).
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let started = Instant::now();
        let sdl = std::fs::read_to_string(path)
            .with_context(|| format!("reading GraphQL schema {}", path.display()))?;
        let mut contract = Self::from_sdl(&sdl, path)?;
        contract.load_time = started.elapsed();
        Ok(contract)
    }

    /// The process-wide contract loaded from [`super::github_description_dir`], or `None` when the
    /// descriptions are absent. Panics if they exist but the schema is broken.
    pub fn shared() -> Option<&'static GraphqlContract> {
        static SHARED: OnceLock<Option<GraphqlContract>> = OnceLock::new();
        SHARED
            .get_or_init(|| {
                let dir = super::github_description_dir()?;
                let path = dir.join(super::GRAPHQL_SCHEMA_FILE);
                Some(GraphqlContract::load(&path).unwrap_or_else(|e| {
                    panic!("GitHub GraphQL schema {} is broken: {e:#}", path.display())
                }))
            })
            .as_ref()
    }

    /// Parses SDL text, dropping duplicate definitions (see module docs), and validates it.
    pub fn from_sdl(sdl: &str, path: impl AsRef<Path>) -> Result<Self> {
        let mut doc = ast::Document::parse(sdl, path.as_ref())
            .map_err(|e| anyhow!("GraphQL SDL syntax errors:\n{}", e.errors))?;
        let dropped = drop_duplicate_definitions(&mut doc);
        let schema = doc
            .to_schema_validate()
            .map_err(|e| anyhow!("GraphQL SDL does not validate:\n{}", e.errors))?;
        Ok(Self {
            schema,
            dropped,
            load_time: Duration::ZERO,
        })
    }

    /// The validated schema.
    pub fn schema(&self) -> &Valid<Schema> {
        &self.schema
    }

    /// Duplicate definitions that were dropped while loading (`"EnterpriseOwnerInfo.repositoryDeployKeySetting"`, ...).
    pub fn dropped_duplicates(&self) -> &[String] {
        &self.dropped
    }

    /// How long [`GraphqlContract::load`] took.
    pub fn load_time(&self) -> Duration {
        self.load_time
    }

    /// Validates an executable document (queries, mutations, fragments) against GitHub's schema.
    pub fn validate_document(&self, doc: &str) -> Result<(), String> {
        ExecutableDocument::parse_and_validate(&self.schema, doc, "document.graphql")
            .map(|_| ())
            .map_err(|e| e.errors.to_string())
    }

    /// Checks that everything the emulator's SDL declares exists in GitHub's schema, identically:
    /// every object / interface / union / enum / input type / custom scalar, every field with the
    /// exact same type string (non-null and list wrappers included), every argument with the same
    /// type, every implemented interface, union member and enum value. The emulator's root types
    /// are compared with GitHub's root types whatever they are called. Built-in scalars,
    /// introspection types and directive definitions are ignored.
    pub fn check_subset(&self, emulator_sdl: &str) -> Result<(), Vec<String>> {
        let emu = Schema::parse_and_validate(emulator_sdl, "emulator.graphql").map_err(|e| {
            vec![format!(
                "the emulator's SDL does not validate:\n{}",
                e.errors
            )]
        })?;
        let gh = &self.schema;

        // Root type renames: emulator name -> GitHub name.
        let mut renames: Vec<(Name, Name)> = Vec::new();
        let roots = [
            (&emu.schema_definition.query, &gh.schema_definition.query),
            (
                &emu.schema_definition.mutation,
                &gh.schema_definition.mutation,
            ),
            (
                &emu.schema_definition.subscription,
                &gh.schema_definition.subscription,
            ),
        ];
        let mut errors = Vec::new();
        for (e, g) in roots {
            match (e, g) {
                (Some(e), Some(g)) => renames.push((e.name.clone(), g.name.clone())),
                (Some(e), None) => errors.push(format!(
                    "root type {}: GitHub's schema has no such root operation",
                    e.name
                )),
                _ => {}
            }
        }
        let map = |n: &Name| -> String {
            renames
                .iter()
                .find(|(e, _)| e == n)
                .map_or_else(|| n.to_string(), |(_, g)| g.to_string())
        };
        let render = |ty: &Type| render_type(ty, &map);

        for (name, ty) in &emu.types {
            if ty.is_built_in() || name.starts_with("__") {
                continue;
            }
            let gh_name = map(name);
            let shown = if gh_name == name.as_str() {
                name.to_string()
            } else {
                format!("{name} (as {gh_name})")
            };
            let Some(gh_ty) = gh.types.get(gh_name.as_str()) else {
                errors.push(format!(
                    "{} {shown}: GitHub's schema has no such type",
                    kind(ty)
                ));
                continue;
            };
            if kind(ty) != kind(gh_ty) {
                errors.push(format!(
                    "type {shown}: emulator declares a {}, GitHub's is a {}",
                    kind(ty),
                    kind(gh_ty)
                ));
                continue;
            }
            match (ty, gh_ty) {
                (ExtendedType::Scalar(_), _) => {}
                (ExtendedType::Object(e), ExtendedType::Object(g)) => {
                    for i in &e.implements_interfaces {
                        if !g.implements_interfaces.contains(&i.name) {
                            errors.push(format!(
                                "type {shown} implements {}: GitHub's does not",
                                i.name
                            ));
                        }
                    }
                    for (fname, f) in &e.fields {
                        check_field(
                            &shown,
                            fname,
                            f,
                            g.fields.get(fname).map(|c| &***c),
                            &render,
                            &mut errors,
                        );
                    }
                }
                (ExtendedType::Interface(e), ExtendedType::Interface(g)) => {
                    for i in &e.implements_interfaces {
                        if !g.implements_interfaces.contains(&i.name) {
                            errors.push(format!(
                                "interface {shown} implements {}: GitHub's does not",
                                i.name
                            ));
                        }
                    }
                    for (fname, f) in &e.fields {
                        check_field(
                            &shown,
                            fname,
                            f,
                            g.fields.get(fname).map(|c| &***c),
                            &render,
                            &mut errors,
                        );
                    }
                }
                (ExtendedType::Union(e), ExtendedType::Union(g)) => {
                    for m in &e.members {
                        if !g.members.contains(&m.name) {
                            errors.push(format!(
                                "union {shown} member {}: not a member of GitHub's union",
                                m.name
                            ));
                        }
                    }
                }
                (ExtendedType::Enum(e), ExtendedType::Enum(g)) => {
                    for v in e.values.keys() {
                        if !g.values.contains_key(v) {
                            errors.push(format!(
                                "enum {shown} value {v}: GitHub's enum has no such value"
                            ));
                        }
                    }
                }
                (ExtendedType::InputObject(e), ExtendedType::InputObject(g)) => {
                    for (fname, f) in &e.fields {
                        match g.fields.get(fname) {
                            None => errors.push(format!(
                                "input field {shown}.{fname}: GitHub's input type has no such field"
                            )),
                            Some(gf) => {
                                let (et, gt) = (render(&f.ty), render(&gf.ty));
                                if et != gt {
                                    errors.push(format!(
                                        "input field {shown}.{fname}: emulator type {et}, GitHub type {gt}"
                                    ));
                                }
                            }
                        }
                    }
                }
                _ => unreachable!("kinds compared above"),
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

fn check_field(
    owner: &str,
    fname: &Name,
    f: &FieldDefinition,
    gh: Option<&FieldDefinition>,
    render: &dyn Fn(&Type) -> String,
    errors: &mut Vec<String>,
) {
    let Some(g) = gh else {
        errors.push(format!(
            "field {owner}.{fname}: GitHub's type has no such field"
        ));
        return;
    };
    let (et, gt) = (render(&f.ty), render(&g.ty));
    if et != gt {
        errors.push(format!(
            "field {owner}.{fname}: emulator type {et}, GitHub type {gt}"
        ));
    }
    for arg in &f.arguments {
        match g.arguments.iter().find(|a| a.name == arg.name) {
            None => errors.push(format!(
                "argument {owner}.{fname}({}:): GitHub's field has no such argument",
                arg.name
            )),
            Some(ga) => {
                let (ea, ga) = (render(&arg.ty), render(&ga.ty));
                if ea != ga {
                    errors.push(format!(
                        "argument {owner}.{fname}({}:): emulator type {ea}, GitHub type {ga}",
                        arg.name
                    ));
                }
            }
        }
    }
}

fn render_type(ty: &Type, map: &dyn Fn(&Name) -> String) -> String {
    match ty {
        Type::Named(n) => map(n),
        Type::NonNullNamed(n) => format!("{}!", map(n)),
        Type::List(inner) => format!("[{}]", render_type(inner, map)),
        Type::NonNullList(inner) => format!("[{}]!", render_type(inner, map)),
    }
}

fn kind(ty: &ExtendedType) -> &'static str {
    match ty {
        ExtendedType::Scalar(_) => "scalar",
        ExtendedType::Object(_) => "type",
        ExtendedType::Interface(_) => "interface",
        ExtendedType::Union(_) => "union",
        ExtendedType::Enum(_) => "enum",
        ExtendedType::InputObject(_) => "input",
    }
}

/// Removes later duplicates of types, fields, arguments, enum values, input fields and union
/// members from an SDL AST (keeping the first), returning what was dropped.
fn drop_duplicate_definitions(doc: &mut ast::Document) -> Vec<String> {
    fn dedup<T>(
        items: &mut Vec<T>,
        key: impl Fn(&T) -> String,
        owner: &str,
        dropped: &mut Vec<String>,
    ) {
        let mut seen = HashSet::new();
        items.retain(|item| {
            let k = key(item);
            let first = seen.insert(k.clone());
            if !first {
                dropped.push(format!("{owner}.{k}"));
            }
            first
        });
    }
    fn dedup_fields(
        fields: &mut Vec<apollo_compiler::Node<ast::FieldDefinition>>,
        owner: &str,
        dropped: &mut Vec<String>,
    ) {
        dedup(fields, |f| f.name.to_string(), owner, dropped);
        for f in fields.iter_mut() {
            if has_duplicate_names(f.arguments.iter().map(|a| &a.name)) {
                let f = f.make_mut();
                let owner = format!("{owner}.{}", f.name);
                dedup(
                    &mut f.arguments,
                    |a| format!("({}:)", a.name),
                    &owner,
                    dropped,
                );
            }
        }
    }

    let mut dropped = Vec::new();
    let mut seen_types = HashSet::new();
    doc.definitions.retain(|def| {
        let name = match def {
            Definition::ScalarTypeDefinition(d) => &d.name,
            Definition::ObjectTypeDefinition(d) => &d.name,
            Definition::InterfaceTypeDefinition(d) => &d.name,
            Definition::UnionTypeDefinition(d) => &d.name,
            Definition::EnumTypeDefinition(d) => &d.name,
            Definition::InputObjectTypeDefinition(d) => &d.name,
            Definition::DirectiveDefinition(d) => {
                let first = seen_types.insert(format!("@{}", d.name));
                if !first {
                    dropped.push(format!("directive @{}", d.name));
                }
                return first;
            }
            _ => return true,
        };
        let first = seen_types.insert(name.to_string());
        if !first {
            dropped.push(format!("type {name}"));
        }
        first
    });
    for def in &mut doc.definitions {
        match def {
            Definition::ObjectTypeDefinition(d) => {
                let owner = d.name.to_string();
                dedup_fields(&mut d.make_mut().fields, &owner, &mut dropped);
            }
            Definition::ObjectTypeExtension(d) => {
                let owner = d.name.to_string();
                dedup_fields(&mut d.make_mut().fields, &owner, &mut dropped);
            }
            Definition::InterfaceTypeDefinition(d) => {
                let owner = d.name.to_string();
                dedup_fields(&mut d.make_mut().fields, &owner, &mut dropped);
            }
            Definition::InterfaceTypeExtension(d) => {
                let owner = d.name.to_string();
                dedup_fields(&mut d.make_mut().fields, &owner, &mut dropped);
            }
            Definition::EnumTypeDefinition(d) => {
                let owner = d.name.to_string();
                dedup(
                    &mut d.make_mut().values,
                    |v| v.value.to_string(),
                    &owner,
                    &mut dropped,
                );
            }
            Definition::InputObjectTypeDefinition(d) => {
                let owner = d.name.to_string();
                dedup(
                    &mut d.make_mut().fields,
                    |f| f.name.to_string(),
                    &owner,
                    &mut dropped,
                );
            }
            Definition::UnionTypeDefinition(d) => {
                let owner = d.name.to_string();
                dedup(
                    &mut d.make_mut().members,
                    |m| format!("|{m}"),
                    &owner,
                    &mut dropped,
                );
            }
            _ => {}
        }
    }
    dropped
}

fn has_duplicate_names<'a>(names: impl Iterator<Item = &'a Name>) -> bool {
    let mut seen = HashSet::new();
    names.into_iter().any(|n| !seen.insert(n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::{GRAPHQL_SAMPLES_FILE, descriptions_or_skip};

    fn contract() -> Option<&'static GraphqlContract> {
        descriptions_or_skip("GraphQL contract")?;
        Some(GraphqlContract::shared().expect("descriptions present"))
    }

    #[test]
    fn github_schema_loads_with_known_duplicates_dropped() {
        let Some(c) = contract() else { return };
        eprintln!("TIMING: GraphqlContract::load {:?}", c.load_time());
        assert_eq!(
            c.dropped_duplicates(),
            [
                "EnterpriseOwnerInfo.repositoryDeployKeySetting",
                "EnterpriseOwnerInfo.repositoryDeployKeySettingOrganizations",
            ]
        );
        assert!(c.schema().types.contains_key("ProjectV2"));
    }

    #[test]
    fn sample_operations_validate() {
        let Some(dir) = descriptions_or_skip("GraphQL sample operations") else {
            return;
        };
        let c = contract().unwrap();
        let doc = std::fs::read_to_string(dir.join(GRAPHQL_SAMPLES_FILE)).unwrap();
        c.validate_document(&doc).unwrap();
        // And each of the five on its own.
        let parsed = ast::Document::parse(&doc, "samples.graphql").unwrap();
        let ops: Vec<_> = parsed
            .definitions
            .iter()
            .filter(|d| matches!(d, Definition::OperationDefinition(_)))
            .collect();
        assert_eq!(ops.len(), 5);
        for op in ops {
            c.validate_document(&op.to_string())
                .unwrap_or_else(|e| panic!("{op}: {e}"));
        }
    }

    #[test]
    fn bogus_field_is_rejected() {
        let Some(c) = contract() else { return };
        let err = c
            .validate_document(
                "query { repository(owner: \"a\", name: \"b\") { issue(number: 1) { id bogusField } } }",
            )
            .unwrap_err();
        assert!(err.contains("bogusField"), "{err}");
        // Wrong argument type, too.
        let err = c
            .validate_document(
                "query { repository(owner: \"a\", name: \"b\") { issue(number: \"x\") { id } } }",
            )
            .unwrap_err();
        assert!(err.contains("number") || err.contains("Int"), "{err}");
    }

    const SUBSET: &str = r#"
        scalar DateTime
        scalar URI
        interface Node { id: ID! }
        interface ProjectV2FieldCommon { id: ID! name: String! dataType: ProjectV2FieldType! }
        enum ProjectV2FieldType { SINGLE_SELECT TEXT }
        enum IssueState { OPEN CLOSED }
        type Query {
          repository(owner: String!, name: String!, followRenames: Boolean): Repository
          node(id: ID!): Node
        }
        type Repository implements Node {
          id: ID!
          name: String!
          url: URI!
          issue(number: Int!): Issue
        }
        type Issue implements Node {
          id: ID!
          number: Int!
          title: String!
          state: IssueState!
          updatedAt: DateTime!
        }
        type ProjectV2SingleSelectField implements Node & ProjectV2FieldCommon {
          id: ID!
          name: String!
          dataType: ProjectV2FieldType!
        }
        union ProjectV2FieldConfiguration = ProjectV2SingleSelectField
        input AddProjectV2ItemByIdInput { projectId: ID! contentId: ID! clientMutationId: String }
        type AddProjectV2ItemByIdPayload { clientMutationId: String }
        type Mutation {
          addProjectV2ItemById(input: AddProjectV2ItemByIdInput!): AddProjectV2ItemByIdPayload
        }
    "#;

    #[test]
    fn true_subset_passes() {
        let Some(c) = contract() else { return };
        c.check_subset(SUBSET).unwrap();
        // Differently named roots map onto GitHub's.
        let renamed = SUBSET
            .replace(
                "type Query {",
                "schema { query: QueryRoot mutation: MutationRoot }\ntype QueryRoot {",
            )
            .replace("type Mutation {", "type MutationRoot {");
        c.check_subset(&renamed).unwrap();
    }

    #[test]
    fn wrong_field_type_fails_naming_the_field() {
        let Some(c) = contract() else { return };
        let sdl = SUBSET.replace("  title: String!", "  title: String");
        let errors = c.check_subset(&sdl).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].contains("Issue.title") && errors[0].contains("String!"),
            "{errors:?}"
        );
        // Wrong argument type.
        let sdl = SUBSET.replace("issue(number: Int!)", "issue(number: Int)");
        let errors = c.check_subset(&sdl).unwrap_err();
        assert!(
            errors[0].contains("Repository.issue(number:)"),
            "{errors:?}"
        );
    }

    #[test]
    fn invented_things_fail_naming_them() {
        let Some(c) = contract() else { return };
        let sdl = SUBSET.replace("  number: Int!\n", "  number: Int!\n  crewPriority: Int\n");
        let errors = c.check_subset(&sdl).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("Issue.crewPriority"), "{errors:?}");

        let sdl = SUBSET
            .replace("OPEN CLOSED", "OPEN CLOSED STALE")
            .replace(
                "scalar URI",
                "scalar URI\nscalar Timestamp\ntype CrewThing { id: ID! }",
            )
            .replace(
                "clientMutationId: String }\n        type Add",
                "clientMutationId: String crew: Int }\n        type Add",
            )
            .replace(
                "followRenames: Boolean",
                "followRenames: Boolean, crewArg: Int",
            );
        let errors = c.check_subset(&sdl).unwrap_err();
        for needle in [
            "IssueState value STALE",
            "scalar Timestamp",
            "CrewThing",
            "AddProjectV2ItemByIdInput.crew",
            "Query.repository(crewArg:)",
        ] {
            assert!(
                errors.iter().any(|e| e.contains(needle)),
                "{needle}: {errors:?}"
            );
        }
    }
}

#[cfg(test)]
mod async_graphql_sdl_tests {
    use async_graphql::{EmptySubscription, Object, SimpleObject};

    use crate::contract::descriptions_or_skip;

    use super::GraphqlContract;

    struct Query;

    #[derive(SimpleObject)]
    #[graphql(name = "RateLimit")]
    struct RateLimit {
        cost: i32,
        limit: i32,
        remaining: i32,
        #[graphql(name = "resetAt")]
        reset_at: chrono::DateTime<chrono::Utc>,
    }

    #[Object]
    impl Query {
        #[graphql(name = "rateLimit")]
        async fn rate_limit(&self, dry_run: Option<bool>) -> Option<RateLimit> {
            let _ = dry_run;
            None
        }
    }

    struct Mutation;

    #[Object]
    impl Mutation {
        /// Not a GitHub mutation: must be reported.
        async fn crew_reset(&self) -> bool {
            true
        }
    }

    /// The SDL async-graphql prints (directive definitions, `schema {}` block, descriptions,
    /// `@specifiedBy`) goes through `check_subset`.
    #[test]
    fn async_graphql_sdl_is_checked() {
        let Some(_) = descriptions_or_skip("GraphQL subset (async-graphql SDL)") else {
            return;
        };
        let c = GraphqlContract::shared().expect("descriptions present");
        let sdl = async_graphql::Schema::build(Query, Mutation, EmptySubscription)
            .finish()
            .sdl();
        let errors = c.check_subset(&sdl).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}\n{sdl}");
        assert!(errors[0].contains("Mutation.crewReset"), "{errors:?}");
    }
}
