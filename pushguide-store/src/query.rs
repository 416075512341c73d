//! Reading recorded deployments back.

use std::time::{Duration, SystemTime};

use pushguide_core::Stage;
use rusqlite::{params, OptionalExtension};

use crate::error::Error;
use crate::store::{from_ms, SqliteStore, StageCode};

/// A recorded deployment.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeploymentRecord {
    /// Deployment id.
    pub id: String,
    /// Template.
    pub template: String,
    /// Version.
    pub version: String,
    /// Acting user.
    pub principal: String,
    /// Whether it was a dry run.
    pub dry_run: bool,
    /// Whether it was a rollback request (`version` is then its target, or `previous`).
    pub rollback: bool,
    /// Start.
    pub started: SystemTime,
    /// End (`None` while running, until the report is recorded — set with the outcome — or when
    /// the process died before [`SqliteStore::recover`] ran).
    pub ended: Option<SystemTime>,
    /// Wall time, once ended.
    pub duration: Option<Duration>,
    /// `succeeded`, `partially-applied`, `failed`, `rolled-back`, `rollback-failed`, `cancelled` or
    /// `interrupted`; `None` while running (also once `DeploymentFinished` is journaled, until the
    /// report is recorded with the outcome).
    pub outcome: Option<String>,
    /// Why it stopped early.
    pub reason: Option<String>,
    /// Events recorded.
    pub events: u64,
}

/// One stage of one host in one deployment (the `host_stage_results` view).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HostStageResult {
    /// The host.
    pub host: String,
    /// Batch (`None`: prepare).
    pub batch: Option<usize>,
    /// Stage name (`pre-deploy`, …).
    pub stage: String,
    /// `ok` or `failed`.
    pub status: String,
    /// How long the stage ran for the host's batch, if it ended.
    pub duration: Option<Duration>,
    /// The failing salt function, for a failed stage.
    pub fun: Option<String>,
    /// The failure reason, or the version a host was rolled back to.
    pub detail: Option<String>,
}

/// One host's result in one deployment, as the journal's events leave it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HostResult {
    /// The host.
    pub host: String,
    /// Its batch (`None`: never in one).
    pub batch: Option<usize>,
    /// `pending` (its batch did not start), `interrupted` (its batch started, no result yet),
    /// `succeeded`, `failed`, `excluded` (failed, then left out by a decision), `rolled-back`,
    /// `rollback-failed` or `no-rollback-target`.
    pub status: String,
    /// The stage of its failure (the release's if it failed there, else the rollback's).
    pub failed_stage: Option<String>,
    /// The salt function that failed.
    pub fun: Option<String>,
    /// Why it failed.
    pub failure: Option<String>,
    /// The version it was rolled back to.
    pub rolled_back_to: Option<String>,
}

/// One salt request recorded from a `CallFinished` event.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CallRow {
    /// Batch (`None`: prepare).
    pub batch: Option<usize>,
    /// Stage name.
    pub stage: String,
    /// Salt function.
    pub fun: String,
    /// Salt job id.
    pub jid: Option<String>,
    /// Hosts that succeeded.
    pub ok: u64,
    /// Hosts that failed.
    pub failed: u64,
    /// Elapsed milliseconds.
    pub millis: u64,
}

impl SqliteStore {
    /// The deployment `id`, if recorded.
    pub fn deployment(&self, id: &str) -> Result<Option<DeploymentRecord>, Error> {
        self.conn()
            .query_row(
                "SELECT id, template, version, principal, dry_run, started_ms, ended_ms, duration_ms,
                        outcome, reason, events, rollback
                 FROM deployments WHERE id = ?1",
                [id],
                |r| {
                    Ok(DeploymentRecord {
                        id: r.get(0)?,
                        template: r.get(1)?,
                        version: r.get(2)?,
                        principal: r.get(3)?,
                        dry_run: r.get(4)?,
                        started: from_ms(r.get(5)?),
                        ended: r.get::<_, Option<i64>>(6)?.map(from_ms),
                        duration: r
                            .get::<_, Option<i64>>(7)?
                            .map(|d| Duration::from_millis(d.max(0) as u64)),
                        outcome: r.get(8)?,
                        reason: r.get(9)?,
                        events: r.get::<_, i64>(10)? as u64,
                        rollback: r.get(11)?,
                    })
                },
            )
            .optional()
            .map_err(|e| self.err("reading a deployment", e))
    }

    /// Ids of the deployments of `template`, newest first (at most `limit`).
    pub fn deployments(&self, template: &str, limit: usize) -> Result<Vec<String>, Error> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT id FROM deployments WHERE template = ?1 ORDER BY started_ms DESC, id DESC
                 LIMIT ?2",
            )
            .map_err(|e| self.err("listing deployments", e))?;
        let ids = stmt
            .query_map(params![template, limit as i64], |r| r.get(0))
            .and_then(|r| r.collect::<Result<Vec<_>, _>>())
            .map_err(|e| self.err("listing deployments", e))?;
        Ok(ids)
    }

    /// The newest deployment of `template` that was not a dry run, among its newest 50 (what
    /// `pushguide show` and the web service's templates page call its last deployment).
    pub fn last_deployment(&self, template: &str) -> Result<Option<DeploymentRecord>, Error> {
        for id in self.deployments(template, 50)? {
            if let Some(r) = self.deployment(&id)? {
                if !r.dry_run {
                    return Ok(Some(r));
                }
            }
        }
        Ok(None)
    }

    /// The hosts deployment `id` touched: those of every batch that started (in the journal's
    /// `BatchStarted` events), sorted by name. Hosts of batches that never started, and hosts left out
    /// at prepare, are not included. For deployments recorded before schema version 3 (batches
    /// without host lists) the hosts the journal names in a batch are taken instead.
    pub fn touched_hosts(&self, id: &str) -> Result<Vec<String>, Error> {
        let conn = self.conn();
        let err = |e| Error::sqlite(self.path(), "reading the hosts a deployment touched", e);
        let mut stmt = conn
            .prepare_cached(
                "SELECT j.value FROM batches b, json_each(b.minions) j
                 WHERE b.deployment = ?1 AND b.minions IS NOT NULL
                 UNION
                 SELECT e.host FROM host_events e
                 WHERE e.deployment = ?1 AND e.batch >= 0 AND e.host IS NOT NULL
                   AND EXISTS (SELECT 1 FROM batches b WHERE b.deployment = ?1
                               AND b.batch = e.batch AND b.minions IS NULL)
                 ORDER BY 1",
            )
            .map_err(err)?;
        let hosts = stmt
            .query_map([id], |r| r.get(0))
            .and_then(|r| r.collect::<Result<Vec<String>, _>>())
            .map_err(err)?;
        Ok(hosts)
    }

    /// `host`'s log lines in deployment `id`, as `Report::host_log` printed them.
    pub fn host_log(&self, id: &str, host: &str) -> Result<Vec<String>, Error> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT j.value FROM report_hosts h, json_each(h.log) j
                 WHERE h.deployment = ?1 AND h.host = ?2 ORDER BY j.key",
            )
            .map_err(|e| self.err("reading a host log", e))?;
        let lines = stmt
            .query_map(params![id, host], |r| r.get(0))
            .and_then(|r| r.collect::<Result<Vec<_>, _>>())
            .map_err(|e| self.err("reading a host log", e))?;
        Ok(lines)
    }

    /// The status of `host` in deployment `id` as its journal's events leave it, e.g. `succeeded`
    /// (see [`HostResult::status`]); final once the deployment has an outcome.
    pub fn host_status(&self, id: &str, host: &str) -> Result<Option<String>, Error> {
        self.conn()
            .query_row(
                "SELECT status FROM host_state WHERE deployment = ?1 AND host = ?2",
                params![id, host],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err("reading a host result", e))
    }

    /// Every host's result in deployment `id`, from its journal, by host name.
    pub fn host_results(&self, id: &str) -> Result<Vec<HostResult>, Error> {
        let conn = self.conn();
        let err = |e| Error::sqlite(self.path(), "reading host results", e);
        let mut stmt = conn
            .prepare_cached(
                "SELECT host, batch, status, stage, NULLIF(fun, '-'), failure, rolled_back_to
                 FROM host_state WHERE deployment = ?1 ORDER BY host",
            )
            .map_err(err)?;
        let rows = stmt
            .query_map([id], |r| {
                Ok(HostResult {
                    host: r.get(0)?,
                    batch: r
                        .get::<_, Option<i64>>(1)?
                        .and_then(|b| usize::try_from(b).ok()),
                    status: r.get(2)?,
                    failed_stage: r
                        .get::<_, Option<StageCode>>(3)?
                        .map(|s| s.0.as_str().to_owned()),
                    fun: r.get(4)?,
                    failure: r.get(5)?,
                    rolled_back_to: r.get(6)?,
                })
            })
            .and_then(|r| r.collect::<Result<Vec<_>, _>>())
            .map_err(err)?;
        Ok(rows)
    }

    /// Per stage and host results of deployment `id`, ordered by host, batch and stage.
    pub fn host_stage_results(&self, id: &str) -> Result<Vec<HostStageResult>, Error> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT host, batch, stage, status, duration_ms, NULLIF(fun, '-'), detail FROM host_stage_results
                 WHERE deployment = ?1 ORDER BY host, batch",
            )
            .map_err(|e| self.err("reading host stage results", e))?;
        let mut rows = stmt
            .query_map([id], |r| {
                Ok(HostStageResult {
                    host: r.get(0)?,
                    batch: usize::try_from(r.get::<_, i64>(1)?).ok(),
                    stage: r.get(2)?,
                    status: r.get(3)?,
                    duration: r
                        .get::<_, Option<i64>>(4)?
                        .map(|d| Duration::from_millis(d.max(0) as u64)),
                    fun: r.get(5)?,
                    detail: r.get(6)?,
                })
            })
            .and_then(|r| r.collect::<Result<Vec<_>, _>>())
            .map_err(|e| self.err("reading host stage results", e))?;
        // the view names stages; within a host's batch they come in the order they run
        let order = |r: &HostStageResult| Stage::ALL.into_iter().find(|s| s.as_str() == r.stage);
        rows.sort_by(|a, b| (&a.host, a.batch, order(a)).cmp(&(&b.host, b.batch, order(b))));
        Ok(rows)
    }

    /// The salt requests of deployment `id`, in order.
    pub fn calls(&self, id: &str) -> Result<Vec<CallRow>, Error> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT batch, stage, fun, jid, ok, failed, millis FROM calls
                 WHERE deployment = ?1 ORDER BY id",
            )
            .map_err(|e| self.err("reading calls", e))?;
        let rows = stmt
            .query_map([id], |r| {
                Ok(CallRow {
                    batch: usize::try_from(r.get::<_, i64>(0)?).ok(),
                    stage: r.get::<_, StageCode>(1)?.0.as_str().to_owned(),
                    fun: r.get(2)?,
                    jid: r.get(3)?,
                    ok: r.get::<_, i64>(4)? as u64,
                    failed: r.get::<_, i64>(5)? as u64,
                    millis: r.get::<_, i64>(6)? as u64,
                })
            })
            .and_then(|r| r.collect::<Result<Vec<_>, _>>())
            .map_err(|e| self.err("reading calls", e))?;
        Ok(rows)
    }
}
