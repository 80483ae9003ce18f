//! Between the pure planner ([`crate::scheduler`]) and GitHub: reading the world a plan is made
//! from, and carrying a plan out. `crew ready`, `crew fill` and `crew loop` are thin over this.
//!
//! Decisions, and why:
//! - **One observation per plan.** The world is what [`crate::observe`] saw (a sync of issues
//!   and comments, which is three conditional requests when nothing changed, and every lease in
//!   one more), plus the mirror's issue rows for the labels, bodies and ages the planner needs.
//!   Nothing is read per issue.
//! - **GitHub's own dependency relations only when they can matter.** Sub-issues and tracked-by
//!   relations cost a GraphQL query that cannot be conditional; it is asked only when the plan
//!   made without them would start new work, then the plan is made again with them. A warm cycle
//!   with nothing to start stays at its conditional requests.
//! - **The plan is a proposal; the lease decides.** Applying a `Dispatch` is a `crew dispatch`
//!   of that issue: another host may win its lease first (exit 4), which is not an error of the
//!   fill but the protocol working, and is reported as `lost`.
//! - **Recovering a vanished host's attempt belongs to whoever wins its lease.** A `Recover`
//!   action is applied with the `Dispatch` that follows it: the dispatch takes the expired lease
//!   over (compare-and-swap), and only then posts the `handover` that closes the old attempt, so
//!   two hosts never both announce one recovery.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::commands::dispatch::{self, DispatchArgs, DispatchView, Recovery, Runtime, SlotLimits};
use crate::context::Ctx;
use crate::error::{CrewError, ErrorKind};
use crate::github::CORE;
use crate::observe::{ObserveOptions, Observed, fold_policy, observe};
use crate::protocol::{EventBody, fold};
use crate::scheduler::{self, Action, DispatchReason, Limits, Plan, World, WorldIssue, WorldLease};

/// A world to plan from, and the observation it came from.
pub struct Observation {
    pub world: World,
    pub observed: Observed,
}

/// Reads the world: syncs, reads the leases, folds every issue, and takes the open issues (and
/// closed ones, for dependencies) from the mirror.
pub async fn observe_world(ctx: &Ctx) -> Result<Observation, CrewError> {
    let observed = observe(ctx, ObserveOptions::default()).await?;
    let cache = ctx.cache().await?;
    let rows = cache.issues().await?;
    let own_login = crate::observe::cached_own_login(cache, &ctx.settings)
        .await?
        .unwrap_or_default();
    let policy = fold_policy(&ctx.settings, own_login);
    let mut issues = Vec::with_capacity(rows.len());
    for row in rows {
        if row.is_pull_request {
            continue;
        }
        let state = match observed.issue(row.number) {
            Some(known) => known.state.clone(),
            None => fold(row.number, [], None, &policy),
        };
        issues.push(WorldIssue {
            number: row.number,
            title: row.title,
            open: row.state != "closed",
            labels: row.labels,
            body: row.body.unwrap_or_default(),
            created_at: parse_time(&row.created_at),
            state,
            open_sub_issues: Vec::new(),
            blocked_by: Vec::new(),
        });
    }
    let leases = observed
        .leases
        .iter()
        .map(|lease| WorldLease {
            issue: lease.issue,
            lease: lease.lease.clone(),
        })
        .collect();
    let rate_remaining = ctx
        .github()
        .await?
        .rate_snapshot(CORE)
        .map(|snapshot| snapshot.remaining);
    Ok(Observation {
        world: World {
            now: observed.now,
            host: ctx.settings.host.clone(),
            issues,
            leases,
            rate_remaining,
        },
        observed,
    })
}

/// Plans, asking GitHub for sub-issue and tracked-by relations only when the plan would start
/// new work (see the module docs).
pub async fn plan(ctx: &Ctx, world: &mut World) -> Result<Plan, CrewError> {
    let limits = Limits::from_config(&ctx.settings.config);
    let first = scheduler::plan(world, &limits);
    let starts_new = first.actions.iter().any(|action| {
        matches!(
            action,
            Action::Dispatch {
                reason: DispatchReason::New,
                ..
            }
        )
    });
    if !starts_new {
        return Ok(first);
    }
    let github = ctx.github().await?;
    let repo = ctx.settings.require_repo()?;
    let relations = github.issue_relations(repo).await?;
    apply_relations(world, &relations);
    Ok(scheduler::plan(world, &limits))
}

/// [`plan`] with every slot free and GitHub's relations always read: the whole ready queue, in
/// order, for `crew ready`.
pub async fn plan_unlimited(ctx: &Ctx, world: &mut World) -> Result<Plan, CrewError> {
    let mut limits = Limits::from_config(&ctx.settings.config);
    limits.max = u32::MAX;
    limits.max_per_host = u32::MAX;
    let github = ctx.github().await?;
    let repo = ctx.settings.require_repo()?;
    let relations = github.issue_relations(repo).await?;
    apply_relations(world, &relations);
    Ok(scheduler::plan(world, &limits))
}

fn apply_relations(world: &mut World, relations: &BTreeMap<u64, crate::github::Relations>) {
    // `tracked_in_open` names the open issues whose task lists track this one: those trackers
    // wait for it, not it for them.
    let mut tracks: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for (number, relation) in relations {
        for tracker in &relation.tracked_in_open {
            tracks.entry(*tracker).or_default().push(*number);
        }
    }
    for issue in &mut world.issues {
        if let Some(relation) = relations.get(&issue.number) {
            issue.open_sub_issues = relation.open_sub_issues.clone();
        }
        issue.blocked_by = tracks.remove(&issue.number).unwrap_or_default();
    }
}

/// What became of one action.
#[derive(Debug, Serialize)]
pub struct Applied {
    pub issue: u64,
    /// `dispatched`, `lost` (another host won the lease), `failed`, `skipped`.
    pub outcome: &'static str,
    pub reason: Option<DispatchReason>,
    pub dispatch: Option<DispatchView>,
    /// Why it failed or was skipped.
    pub message: Option<String>,
}

impl Applied {
    /// What a dispatch came to: `dispatched` (or `resumed`, when it finished an interrupted
    /// one), `lost` (another host won the lease or the slot), or `failed`.
    fn of(
        issue: u64,
        reason: Option<DispatchReason>,
        result: Result<DispatchView, CrewError>,
    ) -> Applied {
        match result {
            Ok(view) => Applied {
                issue,
                outcome: if view.resumed {
                    "resumed"
                } else {
                    "dispatched"
                },
                reason,
                dispatch: Some(view),
                message: None,
            },
            Err(error) => Applied {
                issue,
                outcome: if error.kind() == ErrorKind::LostRace {
                    "lost"
                } else {
                    "failed"
                },
                reason,
                dispatch: None,
                message: Some(error.to_string()),
            },
        }
    }
}

/// Carries out `plan`: each `Dispatch` as a `crew dispatch` of its issue (with the `Recover`
/// before it folded in). One failure does not stop the others.
pub async fn apply(ctx: &Ctx, plan: &Plan, observed: &Observed) -> Vec<Applied> {
    let mut recoveries: BTreeMap<u64, Recovery> = BTreeMap::new();
    let mut applied = Vec::new();
    let dispatches = plan
        .actions
        .iter()
        .filter(|action| matches!(action, Action::Dispatch { .. }))
        .count();
    // A bar on a terminal when a fill starts several workers (hidden otherwise).
    let bar = ctx.printer.progress(
        dispatches as u64,
        "dispatch",
        ctx.settings.json || dispatches < 2,
    );
    for action in &plan.actions {
        match action {
            Action::Recover {
                issue,
                worker,
                host,
                attempt,
                expired_at,
            } => {
                recoveries.insert(
                    *issue,
                    Recovery {
                        worker: worker.clone(),
                        host: host.clone(),
                        attempt: *attempt,
                        expired_at: *expired_at,
                    },
                );
            }
            Action::Dispatch { issue, reason, .. } => {
                let (agent, profile) = last_placement(observed, *issue);
                let args = DispatchArgs {
                    issues: vec![*issue],
                    agent,
                    profile,
                    runtime: runtime(ctx),
                    past_max: false,
                    recovering: recoveries.remove(issue),
                    slots: Some(SlotLimits {
                        max: ctx.settings.config.workers.max,
                        max_per_host: ctx.settings.config.workers.max_per_host,
                    }),
                };
                let result = dispatch::dispatch_one(ctx, &args, *issue).await;
                bar.inc(1);
                applied.push(Applied::of(*issue, Some(*reason), result));
            }
        }
    }
    bar.finish_and_clear();
    // A recovery without a slot for its dispatch waits for the next plan.
    for (issue, _) in recoveries {
        applied.push(Applied {
            issue,
            outcome: "skipped",
            reason: Some(DispatchReason::Recovered),
            dispatch: None,
            message: Some("no free slot to continue it in".to_owned()),
        });
    }
    applied
}

/// Puts right the `crew:*` labels of issues whose label does not match their folded state
/// (DESIGN.md 2.4: a mirror write that failed is retried on the next reconcile). Labels are in
/// the mirror already, so finding the stale ones costs no request; only fixing one does. Does
/// nothing when a project board, not labels, mirrors the states. Returns the issues fixed.
pub async fn repair_labels(ctx: &Ctx, world: &World) -> Vec<u64> {
    if !crate::github::labels_enabled(&ctx.settings) {
        return Vec::new();
    }
    let Ok(repo) = ctx.settings.require_repo() else {
        return Vec::new();
    };
    let Ok(github) = ctx.github().await else {
        return Vec::new();
    };
    let mut fixed = Vec::new();
    for issue in world.issues.iter().filter(|issue| issue.open) {
        let wanted = crate::github::state_label(issue.state.state);
        let current: Vec<&str> = issue
            .labels
            .iter()
            .map(String::as_str)
            .filter(|label| crate::github::CREW_LABELS.contains(label))
            .collect();
        let right = match wanted {
            Some(label) => current == [label],
            None => current.is_empty(),
        };
        if right {
            continue;
        }
        let labels: Vec<&str> = issue.labels.iter().map(String::as_str).collect();
        match github
            .mirror_labels_from(repo, issue.number, issue.state.state, &labels)
            .await
        {
            Ok(_) => fixed.push(issue.number),
            Err(error) => ctx.printer.warn(format_args!(
                "#{}: the crew label is still out of date ({error}); next cycle",
                issue.number
            )),
        }
    }
    fixed
}

/// Puts right the project board where a status write of this host failed or fell behind
/// (DESIGN.md 2.4): the cache's board rows say what crew last wrote (and what it failed to
/// write) per issue, so finding them costs no request — the board itself is never read here,
/// and an issue with no row is never touched. Writes the status of each issue whose row owes a
/// write or whose recorded status differs from its folded state. Does nothing without a
/// project. Returns the issues fixed.
pub async fn repair_board(ctx: &Ctx, world: &World) -> Vec<u64> {
    let Ok(repo) = ctx.settings.require_repo() else {
        return Vec::new();
    };
    let board = crate::github::Board::new(&ctx.settings, repo);
    let Some(project) = board.project_key() else {
        return Vec::new();
    };
    let (Ok(cache), Ok(github)) = (ctx.cache().await, ctx.github().await) else {
        return Vec::new();
    };
    let rows = match cache.board_rows(&project).await {
        Ok(rows) => rows,
        Err(error) => {
            ctx.printer
                .warn(format_args!("could not read the board rows: {error}"));
            return Vec::new();
        }
    };
    let mut fixed = Vec::new();
    for row in rows {
        let Some(issue) = world.issues.iter().find(|issue| issue.number == row.issue) else {
            continue;
        };
        let state = issue.state.state;
        let Some(wanted) = board.status_name(state) else {
            continue;
        };
        if row.wanted.is_none() && row.status.as_deref() == Some(wanted) {
            continue;
        }
        match board.set_state(github, repo, row.issue, state).await {
            Ok(_) => fixed.push(row.issue),
            Err(error) => ctx.printer.warn(format_args!(
                "#{}: the board status is still out of date ({error}); next cycle",
                row.issue
            )),
        }
    }
    fixed
}

/// Finishes a dispatch of this host that died before its agent started, as the same attempt
/// (`crew dispatch` recognises its own interrupted dispatch; see [`dispatch`]).
pub async fn resume(ctx: &Ctx, observed: &Observed, issue: u64) -> Applied {
    let (agent, profile) = last_placement(observed, issue);
    let args = DispatchArgs {
        issues: vec![issue],
        agent,
        profile,
        runtime: Runtime::Local,
        past_max: false,
        recovering: None,
        slots: None,
    };
    Applied::of(issue, None, dispatch::dispatch_one(ctx, &args, issue).await)
}

/// The agent and profile of the issue's newest `assigned` event: a continuation keeps them.
fn last_placement(observed: &Observed, issue: u64) -> (Option<String>, Option<String>) {
    observed
        .issue(issue)
        .and_then(|known| {
            known
                .state
                .events
                .iter()
                .rev()
                .find_map(|applied| match &applied.event.body {
                    EventBody::Assigned(assignment) => {
                        Some((assignment.agent.clone(), assignment.profile.clone()))
                    }
                    _ => None,
                })
        })
        .unwrap_or_default()
}

/// The runtime `workers.runtime` names.
fn runtime(ctx: &Ctx) -> Runtime {
    Runtime::from_setting(ctx.settings.config.workers.runtime)
}

fn parse_time(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .map(|time| time.with_timezone(&Utc))
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}
