//! `Query` and the repository side of the graph: repositories, issues, comments, labels, actors
//! and git refs.
//!
//! Objects are snapshots: a resolver locks the state, copies what its object needs, unlocks, and
//! returns the copy; nested connections lock again. Nothing is held across an `.await`.

use async_graphql::{Context, ID, Interface, Object, Result, SimpleObject};
use base64::Engine as _;
use chrono::{TimeZone, Utc};

use super::project::{ProjectHeader, ProjectV2, ProjectV2Item, ProjectV2ItemConnection};
use super::types::{
    CommentAuthorAssociation, GhDateTime, GitObjectId, IssueFilters, IssueOrder, IssueOrderField,
    IssueState, IssueStateReason, OrderDirection, PageArgs, PullRequestState, RefOrder,
    RefOrderField, TrackedIssueStates, Uri, connection, database_id, gh_error, paginate,
};
use super::{RequestInfo, info, tracking};
use crate::state::{self, Permission, State, node_id};

pub struct Query;

#[Object]
impl Query {
    /// Lookup a given repository by the owner and repository name.
    async fn repository(
        &self,
        ctx: &Context<'_>,
        owner: String,
        name: String,
    ) -> Result<Option<Repository>> {
        let info = info(ctx);
        let state = info.shared.lock();
        match visible_repo(&state, info, &owner, &name) {
            Some(repo) => Ok(Some(Repository::of(repo))),
            None => Err(gh_error(
                "NOT_FOUND",
                format!("Could not resolve to a Repository with the name '{owner}/{name}'."),
            )),
        }
    }

    /// Lookup an organization by login.
    async fn organization(&self, ctx: &Context<'_>, login: String) -> Result<Option<Organization>> {
        let state = info(ctx).shared.lock();
        match state.user(&login).filter(|u| u.r#type == "Organization") {
            Some(org) => Ok(Some(Organization {
                id: org.id,
                login: org.login.clone(),
            })),
            None => Err(gh_error(
                "NOT_FOUND",
                format!("Could not resolve to an Organization with the login of '{login}'."),
            )),
        }
    }

    /// Lookup a user by login.
    async fn user(&self, ctx: &Context<'_>, login: String) -> Result<Option<User>> {
        let state = info(ctx).shared.lock();
        match state.user(&login).filter(|u| u.r#type != "Organization") {
            Some(user) => Ok(Some(User {
                id: user.id,
                login: user.login.clone(),
            })),
            None => Err(gh_error(
                "NOT_FOUND",
                format!("Could not resolve to a User with the login of '{login}'."),
            )),
        }
    }

    /// The currently authenticated user.
    async fn viewer(&self, ctx: &Context<'_>) -> Result<User> {
        let info = info(ctx);
        let state = info.shared.lock();
        let user = state
            .user(&info.login)
            .ok_or_else(|| gh_error("NOT_FOUND", "the viewer is unknown"))?;
        Ok(User {
            id: user.id,
            login: user.login.clone(),
        })
    }

    /// The client's rate limit information.
    async fn rate_limit(
        &self,
        ctx: &Context<'_>,
        #[graphql(default_with = "Some(false)")] dry_run: Option<bool>,
    ) -> Result<Option<RateLimit>> {
        let _ = dry_run; // Read by the pre-execution pass, which then charges nothing.
        let info = info(ctx);
        let (cost, node_count) = {
            let outcome = info.outcome.lock().unwrap_or_else(|p| p.into_inner());
            (outcome.cost, outcome.node_count)
        };
        let mut state = info.shared.lock();
        let window = state.rate_window(Some(&info.login), "graphql");
        let int = |n: u64| i32::try_from(n).unwrap_or(i32::MAX);
        Ok(Some(RateLimit {
            cost: int(cost),
            limit: int(window.limit),
            node_count: int(node_count),
            remaining: int(window.limit.saturating_sub(window.used)),
            reset_at: GhDateTime(window.reset),
            used: int(window.used),
        }))
    }
}

#[derive(SimpleObject)]
pub struct RateLimit {
    cost: i32,
    limit: i32,
    node_count: i32,
    remaining: i32,
    reset_at: GhDateTime,
    used: i32,
}

/// The repository, if the caller may read it.
pub fn visible_repo<'s>(
    state: &'s State,
    info: &RequestInfo,
    owner: &str,
    name: &str,
) -> Option<&'s state::Repo> {
    state
        .repo(owner, name)
        .filter(|repo| state.permission(repo, Some(&info.login)) >= Permission::Read)
}

fn repo_by_key<'s>(state: &'s State, key: &str) -> Result<&'s state::Repo> {
    state.data.repos.get(key).ok_or_else(|| {
        gh_error(
            "NOT_FOUND",
            format!("Could not resolve to a Repository with the name '{key}'."),
        )
    })
}

/// Authors: GitHub's `Actor` interface.
#[derive(Interface, Clone)]
#[graphql(field(name = "login", ty = "&str"))]
pub enum Actor {
    User(User),
    Bot(Bot),
    Organization(Organization),
}

/// The `Actor` for a login (unknown logins are the `ghost` user, as GitHub shows deleted accounts).
pub fn actor(state: &State, login: &str) -> Actor {
    match state.user(login) {
        Some(user) if user.r#type == "Bot" => Actor::Bot(Bot {
            id: user.id,
            login: user.login.clone(),
        }),
        Some(user) if user.r#type == "Organization" => Actor::Organization(Organization {
            id: user.id,
            login: user.login.clone(),
        }),
        Some(user) => Actor::User(User {
            id: user.id,
            login: user.login.clone(),
        }),
        None => Actor::User(User {
            id: 10137,
            login: "ghost".to_string(),
        }),
    }
}

#[derive(Clone)]
pub struct User {
    pub id: u64,
    pub login: String,
}

#[Object]
impl User {
    async fn id(&self) -> ID {
        ID(node_id("U", self.id))
    }
    async fn database_id(&self) -> Option<i32> {
        database_id(self.id)
    }
    async fn login(&self) -> &str {
        &self.login
    }
    /// Find a project by number.
    async fn project_v2(&self, ctx: &Context<'_>, number: i32) -> Result<Option<ProjectV2>> {
        ProjectV2::find(ctx, &self.login, number)
    }
}

#[derive(Clone)]
pub struct Bot {
    pub id: u64,
    pub login: String,
}

#[Object]
impl Bot {
    async fn id(&self) -> ID {
        ID(node_id("BOT", self.id))
    }
    async fn database_id(&self) -> Option<i32> {
        database_id(self.id)
    }
    async fn login(&self) -> &str {
        &self.login
    }
}

#[derive(Clone)]
pub struct Organization {
    pub id: u64,
    pub login: String,
}

#[Object]
impl Organization {
    async fn id(&self) -> ID {
        ID(node_id("O", self.id))
    }
    async fn database_id(&self) -> Option<i32> {
        database_id(self.id)
    }
    async fn login(&self) -> &str {
        &self.login
    }
    /// Find a project by number.
    async fn project_v2(&self, ctx: &Context<'_>, number: i32) -> Result<Option<ProjectV2>> {
        ProjectV2::find(ctx, &self.login, number)
    }
}

/// A repository, by its state key (lower-case `owner/name`).
#[derive(Clone)]
pub struct Repository {
    pub key: String,
    pub id: u64,
    pub owner: String,
    pub name: String,
}

impl Repository {
    pub fn of(repo: &state::Repo) -> Repository {
        Repository {
            key: repo.full_name().to_lowercase(),
            id: repo.id,
            owner: repo.owner.clone(),
            name: repo.name.clone(),
        }
    }
}

#[Object]
impl Repository {
    async fn id(&self) -> ID {
        ID(node_id("R", self.id))
    }
    async fn database_id(&self) -> Option<i32> {
        database_id(self.id)
    }
    async fn name(&self) -> &str {
        &self.name
    }
    async fn name_with_owner(&self) -> String {
        format!("{}/{}", self.owner, self.name)
    }
    async fn url(&self, ctx: &Context<'_>) -> Uri {
        Uri(format!(
            "{}/{}/{}",
            info(ctx).shared.base_url,
            self.owner,
            self.name
        ))
    }

    /// A list of issues that have been opened in the repository (pull requests excluded).
    #[allow(clippy::too_many_arguments)]
    async fn issues(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        last: Option<i32>,
        after: Option<String>,
        before: Option<String>,
        states: Option<Vec<IssueState>>,
        labels: Option<Vec<String>>,
        order_by: Option<IssueOrder>,
        filter_by: Option<IssueFilters>,
    ) -> Result<IssueConnection> {
        let filter = filter_by.unwrap_or_default();
        let state = info(ctx).shared.lock();
        let repo = repo_by_key(&state, &self.key)?;
        let has_label = |issue: &state::Issue, wanted: &[String]| {
            wanted
                .iter()
                .any(|w| issue.labels.iter().any(|l| l.eq_ignore_ascii_case(w)))
        };
        let in_states = |issue: &state::Issue, wanted: &Option<Vec<IssueState>>| match wanted {
            None => true,
            Some(wanted) => wanted.contains(&issue_state(issue)),
        };
        let mut list: Vec<&state::Issue> = repo
            .issues
            .values()
            .filter(|i| i.pull.is_none())
            .filter(|i| in_states(i, &states) && in_states(i, &filter.states))
            .filter(|i| labels.as_ref().is_none_or(|l| has_label(i, l)))
            .filter(|i| filter.labels.as_ref().is_none_or(|l| has_label(i, l)))
            .filter(|i| filter.since.is_none_or(|since| i.updated_at >= since.0))
            .filter(|i| {
                filter
                    .created_by
                    .as_ref()
                    .is_none_or(|who| i.user.eq_ignore_ascii_case(who))
            })
            .filter(|i| match filter.assignee.as_deref() {
                None => true,
                Some("*") => !i.assignees.is_empty(),
                Some(who) => i.assignees.iter().any(|a| a.eq_ignore_ascii_case(who)),
            })
            .collect();
        let comment_count = |number: u64| {
            repo.comments
                .values()
                .filter(|c| c.issue_number == number)
                .count()
        };
        if let Some(order) = &order_by {
            match order.field {
                IssueOrderField::CreatedAt => list.sort_by_key(|i| (i.created_at, i.number)),
                IssueOrderField::UpdatedAt => list.sort_by_key(|i| (i.updated_at, i.number)),
                IssueOrderField::Comments => {
                    list.sort_by_key(|i| (comment_count(i.number), i.number))
                }
            }
            if order.direction == OrderDirection::Desc {
                list.reverse();
            }
        }
        let nodes: Vec<Issue> = list.into_iter().map(|i| Issue::of(repo, i)).collect();
        let page = paginate(
            nodes,
            |i| i.data.number.to_string(),
            &PageArgs {
                first,
                last,
                after,
                before,
            },
            "issues",
        )?;
        Ok(IssueConnection::from_page(page))
    }

    /// Returns a single issue from the current repository by number.
    async fn issue(&self, ctx: &Context<'_>, number: i32) -> Result<Option<Issue>> {
        let state = info(ctx).shared.lock();
        let repo = repo_by_key(&state, &self.key)?;
        match u64::try_from(number).ok().and_then(|n| repo.issues.get(&n)) {
            Some(issue) if issue.pull.is_none() => Ok(Some(Issue::of(repo, issue))),
            _ => Err(gh_error(
                "NOT_FOUND",
                format!("Could not resolve to an Issue with the number of {number}."),
            )),
        }
    }

    /// Fetch a list of refs from the repository, read from its bare git repository.
    #[allow(clippy::too_many_arguments)]
    async fn refs(
        &self,
        ctx: &Context<'_>,
        ref_prefix: String,
        first: Option<i32>,
        last: Option<i32>,
        after: Option<String>,
        before: Option<String>,
        query: Option<String>,
        order_by: Option<RefOrder>,
    ) -> Result<Option<RefConnection>> {
        let mut refs = {
            let state = info(ctx).shared.lock();
            let repo = repo_by_key(&state, &self.key)?;
            read_refs(repo, &ref_prefix)
                .map_err(|e| gh_error("INTERNAL", format!("git: {}", e.message())))?
        };
        if let Some(query) = &query {
            refs.retain(|r| r.name.contains(query.as_str()));
        }
        match order_by.as_ref().map(|o| o.field) {
            Some(RefOrderField::TagCommitDate) => refs.sort_by(|a, b| {
                (a.target.committed_at(), &a.name).cmp(&(b.target.committed_at(), &b.name))
            }),
            _ => refs.sort_by(|a, b| a.name.cmp(&b.name)),
        }
        if order_by.is_some_and(|o| o.direction == OrderDirection::Desc) {
            refs.reverse();
        }
        let page = paginate(
            refs,
            |r| r.name.clone(),
            &PageArgs {
                first,
                last,
                after,
                before,
            },
            "refs",
        )?;
        Ok(Some(RefConnection::from_page(page)))
    }
}

fn issue_state(issue: &state::Issue) -> IssueState {
    match issue.state {
        state::IssueState::Open => IssueState::Open,
        state::IssueState::Closed => IssueState::Closed,
    }
}

connection!(IssueConnection, IssueEdge, Issue);
connection!(IssueCommentConnection, IssueCommentEdge, IssueComment);
connection!(LabelConnection, LabelEdge, Label);
connection!(RefConnection, RefEdge, Ref);

/// An issue, copied out of the state with the repository it belongs to.
#[derive(Clone)]
pub struct Issue {
    pub repo: Repository,
    pub data: state::Issue,
}

impl Issue {
    pub fn of(repo: &state::Repo, issue: &state::Issue) -> Issue {
        Issue {
            repo: Repository::of(repo),
            data: issue.clone(),
        }
    }
}

#[Object]
impl Issue {
    async fn id(&self) -> ID {
        ID(node_id("I", self.data.id))
    }
    async fn database_id(&self) -> Option<i32> {
        database_id(self.data.id)
    }
    async fn number(&self) -> i32 {
        i32::try_from(self.data.number).unwrap_or(i32::MAX)
    }
    async fn title(&self) -> &str {
        &self.data.title
    }
    async fn body(&self) -> &str {
        self.data.body.as_deref().unwrap_or("")
    }
    async fn state(&self) -> IssueState {
        issue_state(&self.data)
    }
    async fn closed(&self) -> bool {
        self.data.state == state::IssueState::Closed
    }
    /// Identifies the reason for the issue state.
    async fn state_reason(
        &self,
        #[graphql(default_with = "Some(false)")] enable_duplicate: Option<bool>,
    ) -> Option<IssueStateReason> {
        match self.data.state_reason.as_deref()? {
            "completed" => Some(IssueStateReason::Completed),
            "reopened" => Some(IssueStateReason::Reopened),
            "not_planned" => Some(IssueStateReason::NotPlanned),
            "duplicate" if enable_duplicate == Some(true) => Some(IssueStateReason::Duplicate),
            "duplicate" => Some(IssueStateReason::NotPlanned),
            _ => None,
        }
    }
    async fn url(&self, ctx: &Context<'_>) -> Uri {
        Uri(format!(
            "{}/{}/{}/issues/{}",
            info(ctx).shared.base_url,
            self.repo.owner,
            self.repo.name,
            self.data.number
        ))
    }
    async fn created_at(&self) -> GhDateTime {
        GhDateTime(self.data.created_at)
    }
    async fn updated_at(&self) -> GhDateTime {
        GhDateTime(self.data.updated_at)
    }
    async fn closed_at(&self) -> Option<GhDateTime> {
        self.data.closed_at.map(GhDateTime)
    }
    async fn author(&self, ctx: &Context<'_>) -> Option<Actor> {
        Some(actor(&info(ctx).shared.lock(), &self.data.user))
    }
    async fn author_association(&self, ctx: &Context<'_>) -> Result<CommentAuthorAssociation> {
        let state = info(ctx).shared.lock();
        let repo = repo_by_key(&state, &self.repo.key)?;
        Ok(CommentAuthorAssociation::from_rest(
            state.author_association(repo, &self.data.user),
        ))
    }
    async fn repository(&self) -> Repository {
        self.repo.clone()
    }

    /// A list of labels associated with the object.
    async fn labels(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        last: Option<i32>,
        after: Option<String>,
        before: Option<String>,
    ) -> Result<Option<LabelConnection>> {
        let state = info(ctx).shared.lock();
        let repo = repo_by_key(&state, &self.repo.key)?;
        let labels: Vec<Label> = self
            .data
            .labels
            .iter()
            .map(|name| {
                let known = repo
                    .labels
                    .iter()
                    .find(|l| l.name.eq_ignore_ascii_case(name));
                Label {
                    id: known.map(|l| l.id).unwrap_or(0),
                    name: known
                        .map(|l| l.name.clone())
                        .unwrap_or_else(|| name.clone()),
                    color: known
                        .map(|l| l.color.clone())
                        .unwrap_or_else(|| "ededed".to_string()),
                }
            })
            .collect();
        let page = paginate(
            labels,
            |l| l.name.clone(),
            &PageArgs {
                first,
                last,
                after,
                before,
            },
            "labels",
        )?;
        Ok(Some(LabelConnection::from_page(page)))
    }

    /// A list of comments associated with the Issue, oldest first.
    async fn comments(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        last: Option<i32>,
        after: Option<String>,
        before: Option<String>,
    ) -> Result<IssueCommentConnection> {
        let state = info(ctx).shared.lock();
        let repo = repo_by_key(&state, &self.repo.key)?;
        let comments: Vec<IssueComment> = repo
            .comments
            .values()
            .filter(|c| c.issue_number == self.data.number)
            .map(|c| IssueComment {
                repo: self.repo.clone(),
                data: c.clone(),
            })
            .collect();
        let page = paginate(
            comments,
            |c| c.data.id.to_string(),
            &PageArgs {
                first,
                last,
                after,
                before,
            },
            "comments",
        )?;
        Ok(IssueCommentConnection::from_page(page))
    }

    /// The parent entity of the issue.
    async fn parent(&self, ctx: &Context<'_>) -> Result<Option<Issue>> {
        let state = info(ctx).shared.lock();
        let repo = repo_by_key(&state, &self.repo.key)?;
        Ok(repo
            .parent_of(self.data.number)
            .and_then(|n| repo.issues.get(&n))
            .map(|issue| Issue::of(repo, issue)))
    }

    /// A list of sub-issues associated with the Issue.
    async fn sub_issues(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        last: Option<i32>,
        after: Option<String>,
        before: Option<String>,
    ) -> Result<IssueConnection> {
        let state = info(ctx).shared.lock();
        let repo = repo_by_key(&state, &self.repo.key)?;
        let numbers = repo.sub_issues_of(self.data.number).to_vec();
        issue_page(repo, numbers, first, last, after, before, "subIssues")
    }

    /// Summary of the state of an issue's sub-issues
    async fn sub_issues_summary(&self, ctx: &Context<'_>) -> Result<SubIssuesSummary> {
        let state = info(ctx).shared.lock();
        let repo = repo_by_key(&state, &self.repo.key)?;
        let children = repo.sub_issues_of(self.data.number);
        let completed = children
            .iter()
            .filter(|n| {
                repo.issues
                    .get(n)
                    .is_some_and(|i| i.state == state::IssueState::Closed)
            })
            .count();
        let total = children.len();
        let percent = (completed * 100).checked_div(total).unwrap_or(0);
        let int = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
        Ok(SubIssuesSummary {
            completed: int(completed),
            percent_completed: int(percent),
            total: int(total),
        })
    }

    /// A list of issues that track this issue
    async fn tracked_in_issues(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        last: Option<i32>,
        after: Option<String>,
        before: Option<String>,
    ) -> Result<IssueConnection> {
        let state = info(ctx).shared.lock();
        let repo = repo_by_key(&state, &self.repo.key)?;
        let numbers = tracking::tracked_in(repo, self.data.number);
        issue_page(repo, numbers, first, last, after, before, "trackedInIssues")
    }

    /// A list of issues tracked inside the current issue
    async fn tracked_issues(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        last: Option<i32>,
        after: Option<String>,
        before: Option<String>,
    ) -> Result<IssueConnection> {
        let state = info(ctx).shared.lock();
        let repo = repo_by_key(&state, &self.repo.key)?;
        let numbers = tracking::tracked_by(repo, &self.data);
        issue_page(repo, numbers, first, last, after, before, "trackedIssues")
    }

    /// The number of tracked issues for this issue
    async fn tracked_issues_count(
        &self,
        ctx: &Context<'_>,
        states: Option<Vec<Option<TrackedIssueStates>>>,
    ) -> Result<i32> {
        let state = info(ctx).shared.lock();
        let repo = repo_by_key(&state, &self.repo.key)?;
        let wanted: Option<Vec<TrackedIssueStates>> =
            states.map(|states| states.into_iter().flatten().collect());
        let count = tracking::tracked_by(repo, &self.data)
            .into_iter()
            .filter_map(|n| repo.issues.get(&n))
            .filter(|issue| {
                let of_issue = match issue.state {
                    state::IssueState::Open => TrackedIssueStates::Open,
                    state::IssueState::Closed => TrackedIssueStates::Closed,
                };
                wanted.as_ref().is_none_or(|w| w.contains(&of_issue))
            })
            .count();
        Ok(i32::try_from(count).unwrap_or(i32::MAX))
    }

    /// List of project items associated with this issue.
    async fn project_items(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        last: Option<i32>,
        after: Option<String>,
        before: Option<String>,
        #[graphql(default_with = "Some(true)")] include_archived: Option<bool>,
    ) -> Result<ProjectV2ItemConnection> {
        let include_archived = include_archived.unwrap_or(true);
        let state = info(ctx).shared.lock();
        let full_name = format!("{}/{}", self.repo.owner, self.repo.name);
        let items: Vec<ProjectV2Item> = state
            .data
            .projects
            .iter()
            .flat_map(|project| {
                project
                    .items
                    .iter()
                    .filter(|item| {
                        item.repo.eq_ignore_ascii_case(&full_name)
                            && item.number == self.data.number
                            && (include_archived || !item.archived)
                    })
                    .map(|item| ProjectV2Item {
                        project: ProjectHeader::of(project),
                        item: item.clone(),
                    })
            })
            .collect();
        let page = paginate(
            items,
            |i| i.item.id.to_string(),
            &PageArgs {
                first,
                last,
                after,
                before,
            },
            "projectItems",
        )?;
        Ok(ProjectV2ItemConnection::from_page(page))
    }
}

/// `SubIssuesSummary`.
#[derive(SimpleObject)]
pub struct SubIssuesSummary {
    /// Count of completed sub-issues
    completed: i32,
    /// Percent of sub-issues which are completed
    percent_completed: i32,
    /// Count of total number of sub-issues
    total: i32,
}

/// A page of `repo`'s issues named by `numbers` (in that order; numbers that are gone or are
/// pull requests are skipped), keyed by number.
fn issue_page(
    repo: &state::Repo,
    numbers: Vec<u64>,
    first: Option<i32>,
    last: Option<i32>,
    after: Option<String>,
    before: Option<String>,
    connection: &str,
) -> Result<IssueConnection> {
    let nodes: Vec<Issue> = numbers
        .into_iter()
        .filter_map(|n| repo.issues.get(&n))
        .filter(|issue| issue.pull.is_none())
        .map(|issue| Issue::of(repo, issue))
        .collect();
    let page = paginate(
        nodes,
        |i| i.data.number.to_string(),
        &PageArgs {
            first,
            last,
            after,
            before,
        },
        connection,
    )?;
    Ok(IssueConnection::from_page(page))
}

/// A pull request, as project item content.
#[derive(Clone)]
pub struct PullRequest {
    pub repo: Repository,
    pub data: state::Issue,
}

#[Object]
impl PullRequest {
    async fn id(&self) -> ID {
        ID(node_id("PR", self.data.id))
    }
    async fn number(&self) -> i32 {
        i32::try_from(self.data.number).unwrap_or(i32::MAX)
    }
    async fn title(&self) -> &str {
        &self.data.title
    }
    async fn state(&self) -> PullRequestState {
        match (
            &self.data.state,
            self.data.pull.as_ref().and_then(|p| p.merged_at),
        ) {
            (_, Some(_)) => PullRequestState::Merged,
            (state::IssueState::Open, None) => PullRequestState::Open,
            (state::IssueState::Closed, None) => PullRequestState::Closed,
        }
    }
    async fn url(&self, ctx: &Context<'_>) -> Uri {
        Uri(format!(
            "{}/{}/{}/pull/{}",
            info(ctx).shared.base_url,
            self.repo.owner,
            self.repo.name,
            self.data.number
        ))
    }
    async fn repository(&self) -> Repository {
        self.repo.clone()
    }
}

#[derive(Clone)]
pub struct IssueComment {
    repo: Repository,
    data: state::Comment,
}

#[Object]
impl IssueComment {
    async fn id(&self) -> ID {
        ID(node_id("IC", self.data.id))
    }
    async fn database_id(&self) -> Option<i32> {
        database_id(self.data.id)
    }
    async fn body(&self) -> &str {
        &self.data.body
    }
    async fn author(&self, ctx: &Context<'_>) -> Option<Actor> {
        Some(actor(&info(ctx).shared.lock(), &self.data.user))
    }
    async fn author_association(&self, ctx: &Context<'_>) -> Result<CommentAuthorAssociation> {
        let state = info(ctx).shared.lock();
        let repo = repo_by_key(&state, &self.repo.key)?;
        Ok(CommentAuthorAssociation::from_rest(
            state.author_association(repo, &self.data.user),
        ))
    }
    async fn created_at(&self) -> GhDateTime {
        GhDateTime(self.data.created_at)
    }
    async fn updated_at(&self) -> GhDateTime {
        GhDateTime(self.data.updated_at)
    }
    async fn url(&self, ctx: &Context<'_>) -> Uri {
        Uri(format!(
            "{}/{}/{}/issues/{}#issuecomment-{}",
            info(ctx).shared.base_url,
            self.repo.owner,
            self.repo.name,
            self.data.issue_number,
            self.data.id
        ))
    }
}

#[derive(Clone)]
pub struct Label {
    id: u64,
    name: String,
    color: String,
}

#[Object]
impl Label {
    async fn id(&self) -> ID {
        ID(node_id("LA", self.id))
    }
    async fn name(&self) -> &str {
        &self.name
    }
    async fn color(&self) -> &str {
        &self.color
    }
}

/// A git ref under the asked prefix.
#[derive(Clone)]
pub struct Ref {
    repo_id: u64,
    /// The full ref name, e.g. `refs/crew/leases/12`.
    full_name: String,
    /// The name without the prefix, e.g. `12`.
    name: String,
    prefix: String,
    target: GitObject,
}

#[Object]
impl Ref {
    async fn id(&self) -> ID {
        ID(opaque_id("REF", self.repo_id, &self.full_name))
    }
    async fn name(&self) -> &str {
        &self.name
    }
    async fn prefix(&self) -> &str {
        &self.prefix
    }
    async fn target(&self) -> Option<GitObject> {
        Some(self.target.clone())
    }
}

/// Node ids for things the state keeps no database id for (refs, git objects).
fn opaque_id(prefix: &str, repo_id: u64, name: &str) -> String {
    let raw = format!("{repo_id}:{name}");
    format!(
        "{prefix}_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    )
}

/// GitHub's `GitObject` interface: what a ref points at.
#[derive(Interface, Clone)]
#[graphql(
    field(name = "id", ty = "ID"),
    field(name = "oid", ty = "GitObjectId"),
    field(name = "abbreviated_oid", ty = "String")
)]
pub enum GitObject {
    Commit(Commit),
    Tag(Tag),
    Tree(Tree),
    Blob(Blob),
}

impl GitObject {
    fn committed_at(&self) -> Option<chrono::DateTime<Utc>> {
        match self {
            GitObject::Commit(c) => Some(c.committed),
            _ => None,
        }
    }
}

/// What every git object shows: its id in the repository.
#[derive(Clone)]
pub struct ObjectBase {
    repo_id: u64,
    oid: String,
}

impl ObjectBase {
    fn id(&self) -> ID {
        ID(opaque_id("GO", self.repo_id, &self.oid))
    }
    fn abbreviated(&self) -> String {
        self.oid.chars().take(7).collect()
    }
}

#[derive(Clone)]
pub struct Commit {
    base: ObjectBase,
    message: String,
    committed: chrono::DateTime<Utc>,
    authored: chrono::DateTime<Utc>,
}

#[Object]
impl Commit {
    async fn id(&self) -> ID {
        self.base.id()
    }
    async fn oid(&self) -> GitObjectId {
        GitObjectId(self.base.oid.clone())
    }
    async fn abbreviated_oid(&self) -> String {
        self.base.abbreviated()
    }
    async fn message(&self) -> &str {
        &self.message
    }
    async fn message_headline(&self) -> &str {
        self.message.lines().next().unwrap_or("")
    }
    async fn message_body(&self) -> &str {
        self.message
            .split_once('\n')
            .map(|(_, rest)| rest.trim_start_matches('\n'))
            .unwrap_or("")
    }
    async fn committed_date(&self) -> GhDateTime {
        GhDateTime(self.committed)
    }
    async fn authored_date(&self) -> GhDateTime {
        GhDateTime(self.authored)
    }
}

#[derive(Clone)]
pub struct Tag {
    base: ObjectBase,
    name: String,
    message: Option<String>,
}

#[Object]
impl Tag {
    async fn id(&self) -> ID {
        self.base.id()
    }
    async fn oid(&self) -> GitObjectId {
        GitObjectId(self.base.oid.clone())
    }
    async fn abbreviated_oid(&self) -> String {
        self.base.abbreviated()
    }
    async fn name(&self) -> &str {
        &self.name
    }
    async fn message(&self) -> Option<&str> {
        self.message.as_deref()
    }
}

#[derive(Clone)]
pub struct Tree {
    base: ObjectBase,
}

#[Object]
impl Tree {
    async fn id(&self) -> ID {
        self.base.id()
    }
    async fn oid(&self) -> GitObjectId {
        GitObjectId(self.base.oid.clone())
    }
    async fn abbreviated_oid(&self) -> String {
        self.base.abbreviated()
    }
}

#[derive(Clone)]
pub struct Blob {
    base: ObjectBase,
}

#[Object]
impl Blob {
    async fn id(&self) -> ID {
        self.base.id()
    }
    async fn oid(&self) -> GitObjectId {
        GitObjectId(self.base.oid.clone())
    }
    async fn abbreviated_oid(&self) -> String {
        self.base.abbreviated()
    }
}

fn git_time(time: git2::Time) -> chrono::DateTime<Utc> {
    Utc.timestamp_opt(time.seconds(), 0)
        .single()
        .unwrap_or(chrono::DateTime::<Utc>::UNIX_EPOCH)
}

/// Every ref under `prefix` in the repository's bare git repository, with what it points at.
/// Runs under the state lock so a concurrent ref update through REST cannot interleave.
fn read_refs(repo: &state::Repo, prefix: &str) -> Result<Vec<Ref>, git2::Error> {
    let git = git2::Repository::open_bare(&repo.git_dir)?;
    let mut refs = Vec::new();
    for reference in git.references()? {
        let reference = reference?;
        let Some(full_name) = reference.name() else {
            continue;
        };
        let Some(name) = full_name.strip_prefix(prefix) else {
            continue;
        };
        if name.is_empty() {
            continue;
        }
        let resolved = reference.resolve()?;
        let Some(oid) = resolved.target() else {
            continue;
        };
        let object = git.find_object(oid, None)?;
        let base = ObjectBase {
            repo_id: repo.id,
            oid: oid.to_string(),
        };
        let target = match object.kind() {
            Some(git2::ObjectType::Commit) => {
                let commit = object
                    .into_commit()
                    .map_err(|_| git2::Error::from_str("not a commit"))?;
                GitObject::Commit(Commit {
                    base,
                    message: commit.message().unwrap_or("").to_string(),
                    committed: git_time(commit.committer().when()),
                    authored: git_time(commit.author().when()),
                })
            }
            Some(git2::ObjectType::Tag) => {
                let tag = object
                    .into_tag()
                    .map_err(|_| git2::Error::from_str("not a tag"))?;
                GitObject::Tag(Tag {
                    base,
                    name: tag.name().unwrap_or("").to_string(),
                    message: tag.message().map(str::to_string),
                })
            }
            Some(git2::ObjectType::Tree) => GitObject::Tree(Tree { base }),
            _ => GitObject::Blob(Blob { base }),
        };
        refs.push(Ref {
            repo_id: repo.id,
            full_name: full_name.to_string(),
            name: name.to_string(),
            prefix: prefix.to_string(),
            target,
        });
    }
    Ok(refs)
}
