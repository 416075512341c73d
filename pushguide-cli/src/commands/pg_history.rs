//! `history` and `show` on a PostgreSQL store: the same rows, read from its journal and fleet state.

use std::time::SystemTime;

use pushguide_postgres::{DeploymentRecord, PgStore};

use crate::error::CliError;
use crate::results::{rfc3339, DeploymentRow};

/// The deployments of `templates` (at most `limit` each), newest first.
pub(super) async fn history(
    pg: &PgStore,
    templates: &[String],
    limit: usize,
) -> Result<Vec<DeploymentRow>, CliError> {
    let mut rows = Vec::new();
    for t in templates {
        for id in pg.deployments(t, limit).await? {
            if let Some(r) = pg.deployment(&id).await? {
                rows.push((r.started, row(r)));
            }
        }
    }
    rows.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| b.1.id.cmp(&a.1.id)));
    Ok(rows.into_iter().map(|(_, r)| r).collect())
}

fn row(r: DeploymentRecord) -> DeploymentRow {
    DeploymentRow {
        id: r.id,
        template: r.template,
        mode: if r.rollback { "rollback" } else { "deploy" },
        version: r.version,
        user: r.principal,
        dry_run: r.dry_run,
        started: rfc3339(r.started),
        ended: r.ended.map(rfc3339),
        duration_ms: r
            .duration
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        outcome: r.outcome,
        reason: r.reason,
    }
}

/// One host's recorded version, from either store.
pub(super) struct FleetRow {
    pub(super) host: String,
    pub(super) version: Option<String>,
    pub(super) healthy: bool,
    pub(super) since: SystemTime,
    pub(super) previous: Option<String>,
}

/// What `show` reads from the store: the template's newest deployment and its hosts' versions.
pub(super) async fn show_parts(
    pg: &PgStore,
    template: &str,
) -> Result<(Option<DeploymentRow>, Vec<FleetRow>), CliError> {
    let last = match pg.deployments(template, 1).await?.first() {
        Some(id) => pg.deployment(id).await?.map(row),
        None => None,
    };
    let fleet = pg
        .fleet(template)
        .await?
        .into_iter()
        .map(|v| FleetRow {
            host: v.host,
            version: v.version,
            healthy: v.healthy,
            since: v.since,
            previous: v.previous,
        })
        .collect();
    Ok((last, fleet))
}
