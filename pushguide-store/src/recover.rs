//! Recovery: deployments whose process died become `interrupted`.

use std::collections::{HashMap, HashSet};
use std::time::SystemTime;

use pushguide_core::Stage;
use rusqlite::{params, TransactionBehavior};

use crate::error::Error;
use crate::store::{from_ms, now_ms, SqliteStore, StageCode};

/// The outcome the store records for a deployment whose process ended before it did: the store's
/// own, beside the engine's [`pushguide_core::DeploymentOutcome`]s.
pub(crate) const INTERRUPTED: &str = "interrupted";

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
    /// Whether it was a rollback request.
    pub rollback: bool,
    /// Hosts planned in batches (`None`: interrupted during prepare, before the plan was recorded).
    pub planned_hosts: Option<usize>,
    /// Batches planned (`None`: interrupted during prepare).
    pub planned_batches: Option<usize>,
    /// Every planned host in batch order (empty when interrupted during prepare, or recorded by an
    /// older version that kept counts only).
    pub planned: Vec<String>,
    /// Each host the journal names — hosts of every batch that started, and hosts left out at
    /// prepare — with its last known stage and status (`succeeded`, `failed`, `rolled-back`,
    /// `rollback-failed`, or `interrupted` for a host of a batch that had not finished: its stage is
    /// then the stage under way), in host order. Planned hosts whose batch never started are not
    /// named by the journal: there are `planned_hosts` minus those of started batches.
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
    /// The failure reason (`failed`, `rollback-failed`) or the version it was rolled back to
    /// (`rolled-back`).
    pub detail: Option<String>,
    /// The salt function that failed, for `failed`.
    pub fun: Option<String>,
    /// The stages of its batch that finished for it (for a failed host: those before the failure),
    /// in order.
    pub stages_done: Vec<Stage>,
    /// For an `interrupted` host: the salt functions of its batch's stage under way that returned
    /// (for at least one host of the batch), in order — what was changed before the process died.
    pub calls_done: Vec<String>,
    /// Per stage of its batch that started, in order: the salt functions that returned (for at least
    /// one host of the batch), e.g. `(pre-deploy, [cp.get_url, archive.unzip, service.stop])`.
    pub stage_calls: Vec<(Stage, Vec<String>)>,
    /// Whether its batch finished (`BatchFinished` recorded).
    pub batch_finished: bool,
}

impl SqliteStore {
    /// Marks every unfinished deployment whose process is gone as `interrupted`: no end recorded, its
    /// owner's heartbeat older than that owner's lease TTL, and no live lease held by it. Call it when
    /// an engine starts (and whenever convenient; it is idempotent). Returns the deployments it marked.
    ///
    /// "No end recorded" means no report: the outcome is recorded together with the report
    /// ([`SqliteStore::finish_report`]), not by the journal's `DeploymentFinished` event. A process that
    /// died after journaling `DeploymentFinished` but before its report was written is therefore found
    /// here too and marked `interrupted` (its host logs were never recorded); the reason names the
    /// outcome the journal recorded, and its hosts' results are in the journal as for any other.
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
                    "UPDATE deployments SET outcome = ?2, ended_ms = last_event_ms,
                       duration_ms = last_event_ms - started_ms,
                       reason = CASE WHEN finished_outcome IS NULL
                         THEN 'the process running it ended before it finished (owner ' || owner || ')'
                         ELSE 'the process running it ended after the deployment finished ('
                              || finished_outcome || ') but before its report was recorded (owner '
                              || owner || ')' END
                     WHERE id = ?1",
                    params![id, INTERRUPTED],
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
                .prepare("SELECT id FROM deployments WHERE outcome = ?1 ORDER BY started_ms, id")
                .map_err(|e| self.err("listing interrupted deployments", e))?;
            let ids = stmt
                .query_map([INTERRUPTED], |r| r.get(0))
                .and_then(|r| r.collect::<Result<Vec<_>, _>>())
                .map_err(|e| self.err("listing interrupted deployments", e))?;
            ids
        };
        ids.iter()
            .filter_map(|id| self.interrupted_one(id).transpose())
            .collect()
    }

    /// The deployment `id` if it is recorded as `interrupted`, with each host's last stage.
    pub fn interrupted_deployment(&self, id: &str) -> Result<Option<InterruptedDeployment>, Error> {
        self.interrupted_one(id)
    }

    fn interrupted_one(&self, id: &str) -> Result<Option<InterruptedDeployment>, Error> {
        let conn = self.conn();
        let err = |e| Error::sqlite(self.path(), "reading an interrupted deployment", e);
        let mut d = match conn.query_row(
            "SELECT d.template, d.version, d.principal, d.dry_run, d.started_ms, d.last_event_ms,
                    d.cur_batch, d.cur_stage,
                    (SELECT s.hosts FROM stages s WHERE s.deployment = d.id
                     ORDER BY s.id DESC LIMIT 1),
                    d.rollback, d.hosts, d.batches, d.planned
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
                    stage: r.get::<_, StageCode>(7)?.0,
                    live_hosts: r.get::<_, Option<i64>>(8)?.unwrap_or(0) as usize,
                    rollback: r.get(9)?,
                    planned_hosts: r
                        .get::<_, Option<i64>>(10)?
                        .and_then(|n| usize::try_from(n).ok()),
                    planned_batches: r
                        .get::<_, Option<i64>>(11)?
                        .and_then(|n| usize::try_from(n).ok()),
                    planned: r
                        .get::<_, Option<String>>(12)?
                        .and_then(|j| serde_json::from_str(&j).ok())
                        .unwrap_or_default(),
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
                "WITH e AS (SELECT id, host, batch, stage, status, NULLIF(fun, '-') AS fun, detail FROM host_events
                            WHERE deployment = ?1)
                 SELECT host, batch, stage, status, fun, detail FROM e
                 WHERE id = (SELECT max(id) FROM e AS later WHERE later.host = e.host)
                 ORDER BY host",
            )
            .map_err(err)?;
        d.hosts = stmt
            .query_map([id], |r| {
                Ok(HostProgress {
                    host: r.get(0)?,
                    batch: usize::try_from(r.get::<_, i64>(1)?).ok(),
                    stage: r.get::<_, StageCode>(2)?.0,
                    status: r.get(3)?,
                    fun: r.get(4)?,
                    detail: r.get(5)?,
                    stages_done: Vec::new(),
                    calls_done: Vec::new(),
                    stage_calls: Vec::new(),
                    batch_finished: false,
                })
            })
            .and_then(|r| r.collect::<Result<Vec<_>, _>>())
            .map_err(err)?;
        // Batches that started: their hosts, whether they finished, the stages that finished.
        let mut batches: HashMap<usize, BatchJournal> = HashMap::new();
        {
            let mut stmt = conn
                .prepare(
                    "SELECT batch, minions, ended_ms IS NOT NULL FROM batches
                     WHERE deployment = ?1 ORDER BY batch",
                )
                .map_err(err)?;
            let rows = stmt
                .query_map([id], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, Option<String>>(1)?,
                        r.get::<_, bool>(2)?,
                    ))
                })
                .and_then(|r| r.collect::<Result<Vec<_>, _>>())
                .map_err(err)?;
            for (b, minions, finished) in rows {
                let Ok(b) = usize::try_from(b) else { continue };
                let hosts: Vec<String> = minions
                    .and_then(|n| serde_json::from_str(&n).ok())
                    .unwrap_or_default();
                batches.insert(
                    b,
                    BatchJournal {
                        hosts,
                        finished,
                        ..BatchJournal::default()
                    },
                );
            }
            let mut stmt = conn
                .prepare(
                    "SELECT batch, stage, max(ended_ms IS NOT NULL) FROM stages
                     WHERE deployment = ?1 AND batch >= 0 AND stage IN (?2, ?3, ?4)
                     GROUP BY batch, stage ORDER BY batch, stage",
                )
                .map_err(err)?;
            let [pre, deploy, post] = Stage::BATCH.map(StageCode);
            let rows = stmt
                .query_map(params![id, pre, deploy, post], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, StageCode>(1)?.0,
                        r.get::<_, bool>(2)?,
                    ))
                })
                .and_then(|r| r.collect::<Result<Vec<_>, _>>())
                .map_err(err)?;
            for (b, stage, ended) in rows {
                let Some(j) = usize::try_from(b).ok().and_then(|b| batches.get_mut(&b)) else {
                    continue;
                };
                if ended {
                    j.ended.push(stage);
                } else {
                    j.running = Some(stage);
                }
            }
            let mut stmt = conn
                .prepare(
                    "SELECT batch, stage, fun FROM calls
                     WHERE deployment = ?1 AND batch >= 0 AND ok > 0 ORDER BY id",
                )
                .map_err(err)?;
            let rows = stmt
                .query_map([id], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, StageCode>(1)?.0,
                        r.get::<_, String>(2)?,
                    ))
                })
                .and_then(|r| r.collect::<Result<Vec<_>, _>>())
                .map_err(err)?;
            for (b, stage, fun) in rows {
                let Some(j) = usize::try_from(b).ok().and_then(|b| batches.get_mut(&b)) else {
                    continue;
                };
                if j.running == Some(stage) && !j.calls.contains(&fun) {
                    j.calls.push(fun.clone());
                }
                match j.stage_calls.iter_mut().find(|(s, _)| *s == stage) {
                    Some((_, funs)) if funs.contains(&fun) => {}
                    Some((_, funs)) => funs.push(fun),
                    None => j.stage_calls.push((stage, vec![fun])),
                }
            }
        }
        // Hosts of started batches that the journal does not name yet: at the stage under way,
        // status `interrupted`.
        let named: HashSet<String> = d.hosts.iter().map(|h| h.host.clone()).collect();
        let mut unnamed = Vec::new();
        for (b, j) in &batches {
            for host in j.hosts.iter().filter(|h| !named.contains(*h)) {
                unnamed.push(HostProgress {
                    host: host.clone(),
                    batch: Some(*b),
                    stage: j.running.unwrap_or_else(|| next_stage(&j.ended)),
                    status: "interrupted".to_owned(),
                    fun: None,
                    detail: None,
                    stages_done: Vec::new(),
                    calls_done: Vec::new(),
                    stage_calls: Vec::new(),
                    batch_finished: false,
                });
            }
        }
        d.hosts.extend(unnamed);
        for h in &mut d.hosts {
            let Some(j) = h.batch.and_then(|b| batches.get(&b)) else {
                continue;
            };
            h.batch_finished = j.finished;
            h.stages_done = match h.status.as_str() {
                // a host that failed (or was rolled back after failing) finished the stages before
                "failed" => j.ended.iter().copied().filter(|s| *s < h.stage).collect(),
                _ => j.ended.clone(),
            };
            if h.status == "interrupted" {
                h.calls_done = j.calls.clone();
            }
            h.stage_calls = j.stage_calls.clone();
            h.stage_calls.sort_by_key(|(s, _)| *s);
        }
        d.hosts.sort_by(|a, b| a.host.cmp(&b.host));
        Ok(Some(d))
    }
}

/// What the journal holds about one batch of an interrupted deployment.
#[derive(Debug, Default)]
struct BatchJournal {
    /// Its hosts (from `BatchStarted`).
    hosts: Vec<String>,
    /// `BatchFinished` was recorded.
    finished: bool,
    /// Stages that finished, in order.
    ended: Vec<Stage>,
    /// The stage that started and did not finish.
    running: Option<Stage>,
    /// Functions of the calls of `running` that returned.
    calls: Vec<String>,
    /// Functions of the calls that returned, per stage.
    stage_calls: Vec<(Stage, Vec<String>)>,
}

/// The batch stage after the last one that finished (pre-deploy when none did).
fn next_stage(ended: &[Stage]) -> Stage {
    let last = ended.iter().max();
    Stage::BATCH
        .into_iter()
        .find(|s| last.is_none_or(|l| s > l))
        .unwrap_or(Stage::PostDeploy)
}
