//! Recovery: deployments whose process died become `interrupted`.

use std::time::SystemTime;

use pushguide_core::Stage;
use rusqlite::{params, OptionalExtension, TransactionBehavior};

use crate::error::Error;
use crate::store::{from_ms, now_ms, stage_from_code, SqliteStore};

/// A deployment whose process ended before it did (found by [`SqliteStore::recover`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct InterruptedDeployment {
    /// Deployment id.
    pub id: String,
    /// Template.
    pub template: String,
    /// Version being released (or the rollback target's label for a rollback).
    pub version: String,
    /// Acting user.
    pub principal: String,
    /// Whether it was a dry run.
    pub dry_run: bool,
    /// When it started.
    pub started: SystemTime,
    /// Its last recorded event.
    pub last_event: SystemTime,
    /// The batch under way at the last event (`None`: prepare, or rollback between batches).
    pub batch: Option<usize>,
    /// The stage under way at the last event.
    pub stage: Stage,
    /// Hosts live at the start of that stage.
    pub live_hosts: usize,
    /// Each host's last known stage and status (`succeeded`, `failed`, `rolled-back`,
    /// `rollback-failed`, or `interrupted` for a host of the batch under way that had not finished:
    /// its stage is then the deployment's current stage), in host order.
    pub hosts: Vec<HostProgress>,
}

/// A host's last known state in an interrupted deployment.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HostProgress {
    /// The host.
    pub host: String,
    /// Its batch (`None`: prepare).
    pub batch: Option<usize>,
    /// The last stage recorded for it.
    pub stage: Stage,
    /// Its last status.
    pub status: String,
}

impl SqliteStore {
    /// Marks every unfinished deployment whose process is gone as `interrupted`: no end recorded, its
    /// owner's heartbeat older than that owner's lease TTL, and no live lease held by it. Call it when
    /// an engine starts (and whenever convenient; it is idempotent). Returns the deployments it marked.
    ///
    /// A deployment of a process killed less than one TTL ago is still considered live; it is found by a
    /// later call. Its lease expires at the same time, so the template can then be deployed again.
    ///
    /// What to do with them is the caller's choice, through the engine: roll the touched hosts back
    /// with `Request::rollback(template, None, principal)` (each host back to its previous version,
    /// from [`pushguide_core::FleetState::versions`]), or resume by deploying the same version again
    /// with `Request::new(template, version, principal)` — hosts already on it are deployed again,
    /// which project types make idempotent. [`SqliteStore::interrupted`] lists them afterwards.
    pub fn recover(&self) -> Result<Vec<InterruptedDeployment>, Error> {
        let now = now_ms();
        let ids: Vec<String> = {
            let mut conn = self.conn();
            let err = |e| Error::sqlite(self.path(), "recovering interrupted deployments", e);
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(err)?;
            let ids = {
                let mut stmt = tx
                    .prepare(
                        "SELECT d.id FROM deployments d
                         LEFT JOIN owners o ON o.owner = d.owner
                         WHERE d.ended_ms IS NULL AND d.owner != ?1
                           AND (o.owner IS NULL OR o.heartbeat_ms + o.ttl_ms <= ?2)
                           AND NOT EXISTS (SELECT 1 FROM leases l
                                           WHERE l.holder = d.id AND l.expires_ms > ?2)",
                    )
                    .map_err(err)?;
                let rows = stmt
                    .query_map(params![self.inner.owner, now], |r| r.get::<_, String>(0))
                    .and_then(|r| r.collect::<Result<Vec<_>, _>>())
                    .map_err(err)?;
                rows
            };
            for id in &ids {
                tx.execute(
                    "UPDATE deployments SET outcome = 'interrupted', ended_ms = last_event_ms,
                       duration_ms = last_event_ms - started_ms,
                       reason = 'the process running it ended before it finished (owner ' || owner || ')'
                     WHERE id = ?1",
                    [id],
                )
                .map_err(err)?;
                tx.execute(
                    "UPDATE leases SET holder = NULL, owner = NULL, expires_ms = 0 WHERE holder = ?1",
                    [id],
                )
                .map_err(err)?;
            }
            tx.execute(
                "DELETE FROM owners WHERE owner != ?1 AND heartbeat_ms + ttl_ms <= ?2
                   AND NOT EXISTS (SELECT 1 FROM deployments d WHERE d.owner = owners.owner
                                   AND d.ended_ms IS NULL)",
                params![self.inner.owner, now],
            )
            .map_err(err)?;
            tx.commit().map_err(err)?;
            ids
        };
        for id in &ids {
            tracing::warn!(deployment = %id, "deployment interrupted: its process ended");
        }
        ids.iter()
            .filter_map(|id| self.interrupted_one(id).transpose())
            .collect()
    }

    /// Every deployment recorded as `interrupted`, oldest first.
    pub fn interrupted(&self) -> Result<Vec<InterruptedDeployment>, Error> {
        let ids: Vec<String> = {
            let conn = self.conn();
            let mut stmt = conn
                .prepare(
                    "SELECT id FROM deployments WHERE outcome = 'interrupted' ORDER BY started_ms, id",
                )
                .map_err(|e| self.err("listing interrupted deployments", e))?;
            let ids = stmt
                .query_map([], |r| r.get(0))
                .and_then(|r| r.collect::<Result<Vec<_>, _>>())
                .map_err(|e| self.err("listing interrupted deployments", e))?;
            ids
        };
        ids.iter()
            .filter_map(|id| self.interrupted_one(id).transpose())
            .collect()
    }

    fn interrupted_one(&self, id: &str) -> Result<Option<InterruptedDeployment>, Error> {
        let conn = self.conn();
        let err = |e| Error::sqlite(self.path(), "reading an interrupted deployment", e);
        let mut d = match conn.query_row(
            "SELECT d.template, d.version, d.principal, d.dry_run, d.started_ms, d.last_event_ms,
                    d.cur_batch, d.cur_stage,
                    (SELECT s.hosts FROM stages s WHERE s.deployment = d.id
                     ORDER BY s.id DESC LIMIT 1)
             FROM deployments d WHERE d.id = ?1",
            [id],
            |r| {
                Ok(InterruptedDeployment {
                    id: id.to_owned(),
                    template: r.get(0)?,
                    version: r.get(1)?,
                    principal: r.get(2)?,
                    dry_run: r.get(3)?,
                    started: from_ms(r.get(4)?),
                    last_event: from_ms(r.get(5)?),
                    batch: usize::try_from(r.get::<_, i64>(6)?).ok(),
                    stage: stage_from_code(r.get(7)?),
                    live_hosts: r.get::<_, Option<i64>>(8)?.unwrap_or(0) as usize,
                    hosts: Vec::new(),
                })
            },
        ) {
            Ok(d) => d,
            Err(rusqlite::Error::QueryReturnedNoRows) => return Ok(None),
            Err(e) => return Err(err(e)),
        };
        let mut stmt = conn
            .prepare(
                "WITH e AS (SELECT id, host, batch, stage, status FROM host_events
                            WHERE deployment = ?1)
                 SELECT host, batch, stage, status FROM e
                 WHERE id = (SELECT max(id) FROM e AS later WHERE later.host = e.host)
                 ORDER BY host",
            )
            .map_err(err)?;
        d.hosts = stmt
            .query_map([id], |r| {
                Ok(HostProgress {
                    host: r.get(0)?,
                    batch: usize::try_from(r.get::<_, i64>(1)?).ok(),
                    stage: stage_from_code(r.get(2)?),
                    status: r.get(3)?,
                })
            })
            .and_then(|r| r.collect::<Result<Vec<_>, _>>())
            .map_err(err)?;
        // Hosts of the batch under way that the journal does not name yet: at the deployment's
        // current stage, status `interrupted`.
        if let Some(b) = d.batch {
            let names: Option<String> = conn
                .query_row(
                    "SELECT minions FROM batches WHERE deployment = ?1 AND batch = ?2",
                    params![id, b as i64],
                    |r| r.get(0),
                )
                .optional()
                .map_err(err)?
                .flatten();
            let listed: Vec<String> = names
                .and_then(|n| serde_json::from_str(&n).ok())
                .unwrap_or_default();
            let named: std::collections::HashSet<String> =
                d.hosts.iter().map(|h| h.host.clone()).collect();
            for host in listed.into_iter().filter(|h| !named.contains(h)) {
                d.hosts.push(HostProgress {
                    host,
                    batch: Some(b),
                    stage: d.stage,
                    status: "interrupted".to_owned(),
                });
            }
            d.hosts.sort_by(|a, b| a.host.cmp(&b.host));
        }
        Ok(Some(d))
    }
}
