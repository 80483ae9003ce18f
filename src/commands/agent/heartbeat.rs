//! `crew heartbeat`: the agent says it is alive during a long silent stretch; the lease is
//! renewed. Never a comment (DESIGN.md 2.1: heartbeats would spam watchers).
//!
//! Decisions, and why:
//! - **At most one renewal per `renew_every`.** An agent may call this in a loop; the time of the
//!   last renewal this worktree made is kept in `.crew/heartbeat`, and a heartbeat before
//!   `renew_every` has passed since then costs no request at all. The supervisor renews on its
//!   own schedule too; both fast-forward the same ref, which [`crate::github::GitHub::renew_lease`]
//!   tolerates.
//! - **Fenced like every write**: a superseded attempt learns it here (exit 4) and should stop.

use std::path::Path;

use chrono::{DateTime, Utc};
use clap::Args;

use super::{AgentView, Worker, print};
use crate::context::Ctx;
use crate::error::CrewError;
use crate::workspace::{CREW_DIR, WorkspaceError};

/// The file holding the time of the last renewal a heartbeat made.
pub const HEARTBEAT_FILE: &str = "heartbeat";

/// Tell crew you are alive during a long silent stretch (a slow build or test run); posts nothing
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  crew heartbeat  Renew the lease during a long silent step (posts nothing)")]
pub struct HeartbeatArgs {}

pub async fn run(ctx: &Ctx, _args: &HeartbeatArgs) -> Result<(), CrewError> {
    let worker = Worker::locate(ctx)?;
    let path = worker.worktree.join(CREW_DIR).join(HEARTBEAT_FILE);
    let now = Utc::now();
    if let Some(last) = last_renewal(&path) {
        let next = last
            + chrono::TimeDelta::from_std(worker.renew_every).unwrap_or(chrono::TimeDelta::zero());
        if now >= last && now < next {
            let view = AgentView::new(&worker);
            return print(
                ctx,
                &view,
                &format!(
                    "lease renewed at {}; next renewal after {}",
                    last.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    next.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                ),
            );
        }
    }
    let github = worker.github(ctx).await?;
    let held = worker.fence(&github).await?;
    let renewed = github
        .renew_lease(&worker.repo, &held, now, worker.ttl)
        .await?;
    std::fs::write(
        &path,
        format!(
            "{}\n",
            now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        ),
    )
    .map_err(|source| WorkspaceError::Io {
        path: path.clone(),
        source,
    })?;
    let view = AgentView {
        lease_expires_at: Some(renewed.lease.expires_at),
        ..AgentView::new(&worker)
    };
    print(
        ctx,
        &view,
        &format!(
            "lease of #{} renewed until {}",
            worker.context.issue,
            renewed
                .lease
                .expires_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ),
    )
}

/// The last renewal recorded in `path`; `None` when there is none or it cannot be read (then
/// the heartbeat renews, which is always safe).
fn last_renewal(path: &Path) -> Option<DateTime<Utc>> {
    let text = std::fs::read_to_string(path).ok()?;
    DateTime::parse_from_rfc3339(text.trim())
        .ok()
        .map(|at| at.with_timezone(&Utc))
}
