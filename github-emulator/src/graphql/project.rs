//! Projects (v2): boards, their fields (the built-in `Title` and the single-select `Status`),
//! items with `fieldValueByName`, and the two mutations crew uses.
//!
//! Reading a board is open to every authenticated caller (the emulator does not model private
//! boards); writing needs membership of the owning organisation (or being the owning user) or
//! write access to the item's repository, as GitHub's project permissions grant it in practice.

use async_graphql::{Context, ID, InputObject, Interface, Object, Result, SimpleObject, Union};

use super::info;
use super::query::{Issue, PullRequest, Repository};
use super::types::{
    GhDateTime, PageArgs, ProjectV2FieldType, ProjectV2ItemType,
    ProjectV2SingleSelectFieldOptionColor, Uri, connection, database_id, gh_error, paginate,
    unresolved_node,
};
use crate::state::{self, Permission, State, node_id, parse_node_id};

/// A project without its items (items are read when asked for).
#[derive(Clone)]
pub struct ProjectHeader {
    pub id: u64,
    pub owner: String,
    pub number: u64,
    pub title: String,
    pub status_field_id: u64,
    pub status_options: Vec<state::ProjectOption>,
    pub title_field_id: u64,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

impl ProjectHeader {
    pub fn of(project: &state::Project) -> ProjectHeader {
        ProjectHeader {
            id: project.id,
            owner: project.owner.clone(),
            number: project.number,
            title: project.title.clone(),
            status_field_id: project.status_field_id,
            status_options: project.status_options.clone(),
            title_field_id: project.title_field_id,
            created_at: project.created_at,
            updated_at: project.updated_at,
        }
    }

    fn fields(&self) -> Vec<ProjectV2FieldConfiguration> {
        vec![
            ProjectV2FieldConfiguration::ProjectV2Field(ProjectV2Field {
                project: self.clone(),
                field_id: self.title_field_id,
                name: "Title".to_string(),
                data_type: ProjectV2FieldType::Title,
            }),
            ProjectV2FieldConfiguration::ProjectV2SingleSelectField(ProjectV2SingleSelectField {
                project: self.clone(),
                field_id: self.status_field_id,
                name: "Status".to_string(),
            }),
        ]
    }
}

const PROJECT: &str = "PVT";
const ITEM: &str = "PVTI";
const FIELD: &str = "PVTF";
const SINGLE_SELECT_FIELD: &str = "PVTSSF";

#[derive(Clone)]
pub struct ProjectV2 {
    header: ProjectHeader,
}

impl ProjectV2 {
    /// `organization(login).projectV2(number)` / `user(login).projectV2(number)`.
    pub fn find(ctx: &Context<'_>, owner: &str, number: i32) -> Result<Option<ProjectV2>> {
        let state = info(ctx).shared.lock();
        let found = state.data.projects.iter().find(|p| {
            p.owner.eq_ignore_ascii_case(owner)
                && i64::try_from(p.number).ok() == Some(i64::from(number))
        });
        match found {
            Some(project) => Ok(Some(ProjectV2 {
                header: ProjectHeader::of(project),
            })),
            None => Err(gh_error(
                "NOT_FOUND",
                format!("Could not resolve to a ProjectV2 with the number {number}."),
            )),
        }
    }
}

fn project_by_id(state: &State, id: u64) -> Result<&state::Project> {
    state
        .data
        .projects
        .iter()
        .find(|p| p.id == id)
        .ok_or_else(|| unresolved_node(&node_id(PROJECT, id)))
}

#[Object]
impl ProjectV2 {
    async fn id(&self) -> ID {
        ID(node_id(PROJECT, self.header.id))
    }
    async fn number(&self) -> i32 {
        i32::try_from(self.header.number).unwrap_or(i32::MAX)
    }
    async fn title(&self) -> &str {
        &self.header.title
    }
    async fn closed(&self) -> bool {
        false
    }
    async fn url(&self, ctx: &Context<'_>) -> Uri {
        let base = &info(ctx).shared.base_url;
        let kind = {
            let state = info(ctx).shared.lock();
            if state
                .data
                .orgs
                .contains_key(&self.header.owner.to_lowercase())
            {
                "orgs"
            } else {
                "users"
            }
        };
        Uri(format!(
            "{base}/{kind}/{}/projects/{}",
            self.header.owner, self.header.number
        ))
    }
    async fn created_at(&self) -> GhDateTime {
        GhDateTime(self.header.created_at)
    }
    async fn updated_at(&self) -> GhDateTime {
        GhDateTime(self.header.updated_at)
    }

    /// A field of the project, by name (case-sensitive, as on GitHub).
    async fn field(&self, name: String) -> Option<ProjectV2FieldConfiguration> {
        self.header.fields().into_iter().find(|f| f.name() == name)
    }

    /// The project's fields, in board order.
    async fn fields(
        &self,
        first: Option<i32>,
        last: Option<i32>,
        after: Option<String>,
        before: Option<String>,
    ) -> Result<ProjectV2FieldConfigurationConnection> {
        let page = paginate(
            self.header.fields(),
            |f| f.field_id().to_string(),
            &PageArgs {
                first,
                last,
                after,
                before,
            },
            "fields",
        )?;
        Ok(ProjectV2FieldConfigurationConnection::from_page(page))
    }

    /// The project's items, in the order they were added.
    async fn items(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        last: Option<i32>,
        after: Option<String>,
        before: Option<String>,
    ) -> Result<ProjectV2ItemConnection> {
        let items: Vec<ProjectV2Item> = {
            let state = info(ctx).shared.lock();
            let project = project_by_id(&state, self.header.id)?;
            project
                .items
                .iter()
                .map(|item| ProjectV2Item {
                    project: ProjectHeader::of(project),
                    item: item.clone(),
                })
                .collect()
        };
        let page = paginate(
            items,
            |i| i.item.id.to_string(),
            &PageArgs {
                first,
                last,
                after,
                before,
            },
            "items",
        )?;
        Ok(ProjectV2ItemConnection::from_page(page))
    }
}

connection!(
    ProjectV2FieldConfigurationConnection,
    ProjectV2FieldConfigurationEdge,
    ProjectV2FieldConfiguration
);
connection!(ProjectV2ItemConnection, ProjectV2ItemEdge, ProjectV2Item);

/// `ProjectV2FieldCommon`: what every field shows, whatever its kind.
// Two interface fields of the same type read to clippy as a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(Interface, Clone)]
#[graphql(
    field(name = "id", ty = "ID"),
    field(name = "database_id", ty = "Option<i32>"),
    field(name = "name", ty = "&str"),
    field(name = "data_type", ty = "ProjectV2FieldType"),
    field(name = "created_at", ty = "GhDateTime"),
    field(name = "updated_at", ty = "GhDateTime"),
    field(name = "project", ty = "ProjectV2")
)]
pub enum ProjectV2FieldCommon {
    ProjectV2Field(ProjectV2Field),
    ProjectV2SingleSelectField(ProjectV2SingleSelectField),
}

/// `ProjectV2FieldConfiguration`: the fields the emulator serves.
#[derive(Union, Clone)]
pub enum ProjectV2FieldConfiguration {
    ProjectV2Field(ProjectV2Field),
    ProjectV2SingleSelectField(ProjectV2SingleSelectField),
}

impl ProjectV2FieldConfiguration {
    fn name(&self) -> &str {
        match self {
            ProjectV2FieldConfiguration::ProjectV2Field(f) => &f.name,
            ProjectV2FieldConfiguration::ProjectV2SingleSelectField(f) => &f.name,
        }
    }

    fn field_id(&self) -> u64 {
        match self {
            ProjectV2FieldConfiguration::ProjectV2Field(f) => f.field_id,
            ProjectV2FieldConfiguration::ProjectV2SingleSelectField(f) => f.field_id,
        }
    }
}

/// A plain field (the built-in `Title`).
#[derive(Clone)]
pub struct ProjectV2Field {
    project: ProjectHeader,
    field_id: u64,
    name: String,
    data_type: ProjectV2FieldType,
}

#[Object]
impl ProjectV2Field {
    async fn id(&self) -> ID {
        ID(node_id(FIELD, self.field_id))
    }
    async fn database_id(&self) -> Option<i32> {
        database_id(self.field_id)
    }
    async fn name(&self) -> &str {
        &self.name
    }
    async fn data_type(&self) -> ProjectV2FieldType {
        self.data_type
    }
    async fn created_at(&self) -> GhDateTime {
        GhDateTime(self.project.created_at)
    }
    async fn updated_at(&self) -> GhDateTime {
        GhDateTime(self.project.created_at)
    }
    async fn project(&self) -> ProjectV2 {
        ProjectV2 {
            header: self.project.clone(),
        }
    }
}

/// The single-select `Status` field.
#[derive(Clone)]
pub struct ProjectV2SingleSelectField {
    project: ProjectHeader,
    field_id: u64,
    name: String,
}

#[Object]
impl ProjectV2SingleSelectField {
    async fn id(&self) -> ID {
        ID(node_id(SINGLE_SELECT_FIELD, self.field_id))
    }
    async fn database_id(&self) -> Option<i32> {
        database_id(self.field_id)
    }
    async fn name(&self) -> &str {
        &self.name
    }
    async fn data_type(&self) -> ProjectV2FieldType {
        ProjectV2FieldType::SingleSelect
    }
    async fn created_at(&self) -> GhDateTime {
        GhDateTime(self.project.created_at)
    }
    async fn updated_at(&self) -> GhDateTime {
        GhDateTime(self.project.created_at)
    }
    async fn project(&self) -> ProjectV2 {
        ProjectV2 {
            header: self.project.clone(),
        }
    }
    /// Options for the single select field, optionally only those with these names.
    async fn options(&self, names: Option<Vec<String>>) -> Vec<ProjectV2SingleSelectFieldOption> {
        self.project
            .status_options
            .iter()
            .filter(|o| names.as_ref().is_none_or(|names| names.contains(&o.name)))
            .map(ProjectV2SingleSelectFieldOption::of)
            .collect()
    }
}

#[derive(SimpleObject, Clone)]
pub struct ProjectV2SingleSelectFieldOption {
    id: String,
    name: String,
    color: ProjectV2SingleSelectFieldOptionColor,
    description: String,
}

impl ProjectV2SingleSelectFieldOption {
    fn of(option: &state::ProjectOption) -> Self {
        ProjectV2SingleSelectFieldOption {
            id: option.id.clone(),
            name: option.name.clone(),
            color: ProjectV2SingleSelectFieldOptionColor::for_option(&option.name),
            description: String::new(),
        }
    }
}

/// An item on a board: an issue or pull request, with its field values.
#[derive(Clone)]
pub struct ProjectV2Item {
    pub project: ProjectHeader,
    pub item: state::ProjectItem,
}

/// What an item holds, if the caller may see it.
enum Content {
    Issue(Issue),
    PullRequest(PullRequest),
    Redacted,
}

impl ProjectV2Item {
    fn resolve_content(&self, ctx: &Context<'_>) -> Content {
        let info = info(ctx);
        let state = info.shared.lock();
        let Some((owner, name)) = self.item.repo.split_once('/') else {
            return Content::Redacted;
        };
        let Some(repo) = state.repo(owner, name) else {
            return Content::Redacted;
        };
        if state.permission(repo, Some(&info.login)) < Permission::Read {
            return Content::Redacted;
        }
        match repo.issues.get(&self.item.number) {
            Some(issue) if issue.pull.is_some() => Content::PullRequest(PullRequest {
                repo: Repository::of(repo),
                data: issue.clone(),
            }),
            Some(issue) => Content::Issue(Issue::of(repo, issue)),
            None => Content::Redacted,
        }
    }
}

#[Object]
impl ProjectV2Item {
    async fn id(&self) -> ID {
        ID(node_id(ITEM, self.item.id))
    }
    async fn database_id(&self) -> Option<i32> {
        database_id(self.item.id)
    }
    async fn is_archived(&self) -> bool {
        self.item.archived
    }
    async fn created_at(&self) -> GhDateTime {
        GhDateTime(self.item.created_at)
    }
    async fn updated_at(&self) -> GhDateTime {
        GhDateTime(self.item.updated_at)
    }
    async fn project(&self) -> ProjectV2 {
        ProjectV2 {
            header: self.project.clone(),
        }
    }
    #[graphql(name = "type")]
    async fn item_type(&self, ctx: &Context<'_>) -> ProjectV2ItemType {
        match self.resolve_content(ctx) {
            Content::Issue(_) => ProjectV2ItemType::Issue,
            Content::PullRequest(_) => ProjectV2ItemType::PullRequest,
            Content::Redacted => ProjectV2ItemType::Redacted,
        }
    }
    async fn content(&self, ctx: &Context<'_>) -> Option<ProjectV2ItemContent> {
        match self.resolve_content(ctx) {
            Content::Issue(issue) => Some(ProjectV2ItemContent::Issue(issue)),
            Content::PullRequest(pull) => Some(ProjectV2ItemContent::PullRequest(pull)),
            Content::Redacted => None,
        }
    }
    /// The value of a field, by field name; null when the item has none.
    async fn field_value_by_name(
        &self,
        ctx: &Context<'_>,
        name: String,
    ) -> Option<ProjectV2ItemFieldValue> {
        let field = self
            .project
            .fields()
            .into_iter()
            .find(|f| f.name() == name)?;
        match &field {
            ProjectV2FieldConfiguration::ProjectV2SingleSelectField(_) => {
                let selected = self.item.status.as_ref()?;
                let option = self
                    .project
                    .status_options
                    .iter()
                    .find(|o| &o.id == selected)?;
                Some(
                    ProjectV2ItemFieldValue::ProjectV2ItemFieldSingleSelectValue(
                        ProjectV2ItemFieldSingleSelectValue {
                            item: self.clone(),
                            option: option.clone(),
                            field,
                        },
                    ),
                )
            }
            ProjectV2FieldConfiguration::ProjectV2Field(_) => {
                let text = match self.resolve_content(ctx) {
                    Content::Issue(issue) => issue.data.title,
                    Content::PullRequest(pull) => pull.data.title,
                    Content::Redacted => return None,
                };
                Some(ProjectV2ItemFieldValue::ProjectV2ItemFieldTextValue(
                    ProjectV2ItemFieldTextValue {
                        item: self.clone(),
                        text,
                        field,
                    },
                ))
            }
        }
    }
}

/// Never produced (the emulator has no draft issues); served so clients may spread on it.
#[derive(Clone)]
pub struct DraftIssue {
    id: u64,
    title: String,
}

#[Object]
impl DraftIssue {
    async fn id(&self) -> ID {
        ID(node_id("DI", self.id))
    }
    async fn title(&self) -> &str {
        &self.title
    }
}

#[derive(Union, Clone)]
pub enum ProjectV2ItemContent {
    DraftIssue(DraftIssue),
    Issue(Issue),
    PullRequest(PullRequest),
}

#[derive(Union, Clone)]
pub enum ProjectV2ItemFieldValue {
    ProjectV2ItemFieldSingleSelectValue(ProjectV2ItemFieldSingleSelectValue),
    ProjectV2ItemFieldTextValue(ProjectV2ItemFieldTextValue),
}

/// `ProjectV2ItemFieldValueCommon`.
// Two interface fields of the same type read to clippy as a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(Interface, Clone)]
#[graphql(
    field(name = "id", ty = "ID"),
    field(name = "created_at", ty = "GhDateTime"),
    field(name = "updated_at", ty = "GhDateTime"),
    field(name = "field", ty = "ProjectV2FieldConfiguration"),
    field(name = "item", ty = "ProjectV2Item")
)]
pub enum ProjectV2ItemFieldValueCommon {
    ProjectV2ItemFieldSingleSelectValue(ProjectV2ItemFieldSingleSelectValue),
    ProjectV2ItemFieldTextValue(ProjectV2ItemFieldTextValue),
}

#[derive(Clone)]
pub struct ProjectV2ItemFieldSingleSelectValue {
    item: ProjectV2Item,
    option: state::ProjectOption,
    field: ProjectV2FieldConfiguration,
}

#[Object]
impl ProjectV2ItemFieldSingleSelectValue {
    async fn id(&self) -> ID {
        ID(node_id("PVTFSV", self.item.item.id))
    }
    async fn name(&self) -> Option<&str> {
        Some(&self.option.name)
    }
    async fn option_id(&self) -> Option<&str> {
        Some(&self.option.id)
    }
    async fn color(&self) -> ProjectV2SingleSelectFieldOptionColor {
        ProjectV2SingleSelectFieldOptionColor::for_option(&self.option.name)
    }
    async fn field(&self) -> ProjectV2FieldConfiguration {
        self.field.clone()
    }
    async fn item(&self) -> ProjectV2Item {
        self.item.clone()
    }
    async fn created_at(&self) -> GhDateTime {
        GhDateTime(self.item.item.created_at)
    }
    async fn updated_at(&self) -> GhDateTime {
        GhDateTime(self.item.item.updated_at)
    }
}

#[derive(Clone)]
pub struct ProjectV2ItemFieldTextValue {
    item: ProjectV2Item,
    text: String,
    field: ProjectV2FieldConfiguration,
}

#[Object]
impl ProjectV2ItemFieldTextValue {
    async fn id(&self) -> ID {
        ID(node_id("PVTFTV", self.item.item.id))
    }
    async fn text(&self) -> Option<&str> {
        Some(&self.text)
    }
    async fn field(&self) -> ProjectV2FieldConfiguration {
        self.field.clone()
    }
    async fn item(&self) -> ProjectV2Item {
        self.item.clone()
    }
    async fn created_at(&self) -> GhDateTime {
        GhDateTime(self.item.item.created_at)
    }
    async fn updated_at(&self) -> GhDateTime {
        GhDateTime(self.item.item.updated_at)
    }
}

#[derive(InputObject)]
pub struct AddProjectV2ItemByIdInput {
    client_mutation_id: Option<String>,
    content_id: ID,
    project_id: ID,
}

#[derive(SimpleObject)]
pub struct AddProjectV2ItemByIdPayload {
    client_mutation_id: Option<String>,
    item: Option<ProjectV2Item>,
}

/// The value to set; the emulator's fields take `singleSelectOptionId` (Status) only.
#[derive(InputObject)]
pub struct ProjectV2FieldValue {
    single_select_option_id: Option<String>,
    text: Option<String>,
}

#[derive(InputObject)]
pub struct UpdateProjectV2ItemFieldValueInput {
    client_mutation_id: Option<String>,
    field_id: ID,
    item_id: ID,
    project_id: ID,
    value: ProjectV2FieldValue,
}

#[derive(SimpleObject)]
pub struct UpdateProjectV2ItemFieldValuePayload {
    client_mutation_id: Option<String>,
    project_v2_item: Option<ProjectV2Item>,
}

/// Whether `login` may change `project` (an item of `repo`).
fn may_write(
    state: &State,
    login: &str,
    project: &state::Project,
    repo: Option<&state::Repo>,
) -> bool {
    if project.owner.eq_ignore_ascii_case(login) {
        return true;
    }
    if let Some(org) = state.data.orgs.get(&project.owner.to_lowercase())
        && org.members.contains_key(&login.to_lowercase())
    {
        return true;
    }
    repo.is_some_and(|repo| state.permission(repo, Some(login)) >= Permission::Write)
}

fn forbidden(login: &str, project: &state::Project) -> async_graphql::Error {
    gh_error(
        "FORBIDDEN",
        format!(
            "{login} does not have permission to update project {} ('{}') of {}.",
            project.number, project.title, project.owner
        ),
    )
}

/// The id prefix and database id of a node id, if it has one of `prefixes`.
fn parse_id(id: &ID, prefixes: &[&str]) -> Result<u64> {
    match parse_node_id(id.as_str()) {
        Some((prefix, n)) if prefixes.contains(&prefix) => Ok(n),
        _ => Err(unresolved_node(id.as_str())),
    }
}

fn persist(state: &State) -> Result<()> {
    state
        .persist()
        .map_err(|e| gh_error("INTERNAL", format!("cannot persist emulator state: {e}")))
}

pub struct Mutation;

#[Object]
impl Mutation {
    /// Links an existing issue or pull request to a project. Adding content already on the board
    /// returns the existing item.
    async fn add_project_v2_item_by_id(
        &self,
        ctx: &Context<'_>,
        input: AddProjectV2ItemByIdInput,
    ) -> Result<Option<AddProjectV2ItemByIdPayload>> {
        let info = info(ctx);
        let mut state = info.shared.lock();
        let project_id = parse_id(&input.project_id, &[PROJECT])?;
        let project_index = state
            .data
            .projects
            .iter()
            .position(|p| p.id == project_id)
            .ok_or_else(|| unresolved_node(input.project_id.as_str()))?;
        let content_id = parse_id(&input.content_id, &["I", "PR"])?;
        let (repo_name, number) = state
            .data
            .repos
            .values()
            .filter(|repo| state.permission(repo, Some(&info.login)) >= Permission::Read)
            .find_map(|repo| {
                repo.issues
                    .values()
                    .find(|i| {
                        i.id == content_id || i.pull.as_ref().is_some_and(|p| p.id == content_id)
                    })
                    .map(|i| (repo.full_name(), i.number))
            })
            .ok_or_else(|| unresolved_node(input.content_id.as_str()))?;
        {
            let project = &state.data.projects[project_index];
            let repo = repo_name
                .split_once('/')
                .and_then(|(o, n)| state.repo(o, n));
            if !may_write(&state, &info.login, project, repo) {
                return Err(forbidden(&info.login, project));
            }
        }
        let now = state.now();
        let existing = state.data.projects[project_index]
            .items
            .iter()
            .find(|i| i.repo.eq_ignore_ascii_case(&repo_name) && i.number == number)
            .cloned();
        let item = match existing {
            Some(item) => item,
            None => {
                let id = state.data.alloc_id();
                let item = state::ProjectItem {
                    id,
                    repo: repo_name,
                    number,
                    status: None,
                    archived: false,
                    created_at: now,
                    updated_at: now,
                };
                let project = &mut state.data.projects[project_index];
                project.items.push(item.clone());
                project.updated_at = now;
                persist(&state)?;
                item
            }
        };
        Ok(Some(AddProjectV2ItemByIdPayload {
            client_mutation_id: input.client_mutation_id,
            item: Some(ProjectV2Item {
                project: ProjectHeader::of(&state.data.projects[project_index]),
                item,
            }),
        }))
    }

    /// Updates a field of an item on a project (here: sets the single-select Status).
    async fn update_project_v2_item_field_value(
        &self,
        ctx: &Context<'_>,
        input: UpdateProjectV2ItemFieldValueInput,
    ) -> Result<Option<UpdateProjectV2ItemFieldValuePayload>> {
        let info = info(ctx);
        let mut state = info.shared.lock();
        let project_id = parse_id(&input.project_id, &[PROJECT])?;
        let project_index = state
            .data
            .projects
            .iter()
            .position(|p| p.id == project_id)
            .ok_or_else(|| unresolved_node(input.project_id.as_str()))?;
        let item_id = parse_id(&input.item_id, &[ITEM])?;
        let field_id = parse_id(&input.field_id, &[FIELD, SINGLE_SELECT_FIELD])?;
        let item_index = {
            let project = &state.data.projects[project_index];
            let item_index = project
                .items
                .iter()
                .position(|i| i.id == item_id)
                .ok_or_else(|| unresolved_node(input.item_id.as_str()))?;
            let item = &project.items[item_index];
            let repo = item
                .repo
                .split_once('/')
                .and_then(|(o, n)| state.repo(o, n));
            if !may_write(&state, &info.login, project, repo) {
                return Err(forbidden(&info.login, project));
            }
            if field_id == project.title_field_id {
                return Err(gh_error(
                    "UNPROCESSABLE",
                    "The title of an issue or pull request item cannot be updated through the project.",
                ));
            }
            if field_id != project.status_field_id {
                return Err(unresolved_node(input.field_id.as_str()));
            }
            item_index
        };
        let option = match (&input.value.single_select_option_id, &input.value.text) {
            (Some(option), None) => option.clone(),
            _ => {
                return Err(gh_error(
                    "UNPROCESSABLE",
                    "Did not receive a single select option Id to update a field of type single_select",
                ));
            }
        };
        if !state.data.projects[project_index]
            .status_options
            .iter()
            .any(|o| o.id == option)
        {
            return Err(gh_error(
                "UNPROCESSABLE",
                format!("The single select option Id '{option}' does not belong to the field"),
            ));
        }
        let now = state.now();
        let project = &mut state.data.projects[project_index];
        let item = &mut project.items[item_index];
        if item.status.as_deref() != Some(option.as_str()) {
            item.status = Some(option);
            item.updated_at = now;
            project.updated_at = now;
        }
        let item = item.clone();
        let header = ProjectHeader::of(project);
        persist(&state)?;
        Ok(Some(UpdateProjectV2ItemFieldValuePayload {
            client_mutation_id: input.client_mutation_id,
            project_v2_item: Some(ProjectV2Item {
                project: header,
                item,
            }),
        }))
    }
}
