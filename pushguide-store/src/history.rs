//! The journal: events as they happen, then the final report.

use std::collections::HashMap;
use std::sync::Arc;

use pushguide_core::{
    CallRecord, Decision, Event, EventKind, HistoryStore, LogEntry, Outcome, Report, Stage,
};
use rusqlite::{params, OptionalExtension, Transaction, TransactionBehavior};

use crate::error::Error;
use crate::store::{now_ms, to_ms, SqliteStore, StageCode};

/// Where a deployment's journal stands between two appends.
struct Cursor {
    id: Arc<str>,
    template: String,
    started_ms: i64,
    dry_run: bool,
    batch: i64,
    stage: Stage,
    events: i64,
    last_ms: i64,
    /// `RollbackStarted` was journaled: host rollback events now decide the hosts' statuses (before
    /// it, they are restores of failed hosts, which stay failed).
    rolling_back: bool,
    /// Consecutive host events of one kind, written as one row.
    group: Option<Group>,
}

/// Hosts that succeeded (or were rolled back to the same version) one after another.
struct Group {
    batch: i64,
    stage: Stage,
    status: &'static str,
    detail: Option<String>,
    hosts: Vec<String>,
    at: i64,
}

impl SqliteStore {
    /// Appends `events` in one transaction (see [`HistoryStore::append`]).
    pub fn append_events(&self, events: &[Event]) -> Result<(), Error> {
        if events.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.err("starting the append transaction", e))?;
        let mut cursor: Option<Cursor> = None;
        for e in events {
            if cursor.as_ref().is_none_or(|c| c.id != e.deployment) {
                if let Some(mut c) = cursor.take() {
                    self.save_cursor(&tx, &mut c)?;
                }
                cursor = Some(self.load_cursor(&tx, e)?);
            }
            let Some(c) = cursor.as_mut() else { continue };
            self.apply(&tx, c, e)
                .map_err(|err| self.err("appending an event", err))?;
        }
        if let Some(mut c) = cursor {
            self.save_cursor(&tx, &mut c)?;
        }
        tx.commit()
            .map_err(|e| self.err("committing appended events", e))
    }

    fn load_cursor(&self, tx: &Transaction<'_>, e: &Event) -> Result<Cursor, Error> {
        if let EventKind::DeploymentStarted {
            template,
            version,
            user,
            dry_run,
            rollback,
        } = &e.kind
        {
            let at = to_ms(e.at);
            tx.prepare_cached(
                "INSERT OR IGNORE INTO deployments
                 (id, template, version, principal, dry_run, started_ms, owner, last_event_ms,
                  rollback)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?6, ?8)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    &*e.deployment,
                    template,
                    version,
                    user,
                    dry_run,
                    at,
                    self.inner.owner,
                    rollback
                ])
            })
            .map_err(|err| self.err("recording a deployment start", err))?;
        }
        let found = tx
            .prepare_cached(
                "SELECT template, started_ms, dry_run, cur_batch, cur_stage, events, last_event_ms,
                        rollback_started_ms IS NOT NULL
                 FROM deployments WHERE id = ?1",
            )
            .and_then(|mut s| {
                s.query_row([&*e.deployment], |r| {
                    Ok(Cursor {
                        id: e.deployment.clone(),
                        template: r.get(0)?,
                        started_ms: r.get(1)?,
                        dry_run: r.get(2)?,
                        batch: r.get(3)?,
                        stage: r.get::<_, StageCode>(4)?.0,
                        events: r.get(5)?,
                        last_ms: r.get(6)?,
                        rolling_back: r.get(7)?,
                        group: None,
                    })
                })
                .optional()
            })
            .map_err(|err| self.err("reading a deployment", err))?;
        found.ok_or_else(|| Error::UnknownDeployment {
            path: self.inner.path.clone(),
            deployment: e.deployment.to_string(),
        })
    }

    fn save_cursor(&self, tx: &Transaction<'_>, c: &mut Cursor) -> Result<(), Error> {
        flush_group(tx, c).map_err(|e| self.err("appending host results", e))?;
        tx.prepare_cached(
            "UPDATE deployments SET cur_batch = ?2, cur_stage = ?3, events = ?4, last_event_ms = ?5
             WHERE id = ?1",
        )
        .and_then(|mut s| {
            s.execute(params![
                &*c.id,
                c.batch,
                StageCode(c.stage),
                c.events,
                c.last_ms
            ])
        })
        .map(drop)
        .map_err(|e| self.err("updating a deployment", e))
    }

    fn apply(&self, tx: &Transaction<'_>, c: &mut Cursor, e: &Event) -> rusqlite::Result<()> {
        track_host_state(tx, c, e)?;
        let at = to_ms(e.at);
        c.events += 1;
        c.last_ms = c.last_ms.max(at);
        crate::journal::record(tx, &c.id, c.events, e)?;
        let grouped = match &e.kind {
            // a host's success is recorded when its batch is done: after post-deploy
            EventKind::HostSucceeded { host } => Some((Stage::PostDeploy, "succeeded", None, host)),
            EventKind::HostRolledBack { host, to } => {
                Some((Stage::Rollback, "rolled-back", Some(to), host))
            }
            _ => None,
        };
        if let Some((stage, status, detail, host)) = grouped {
            let same = c.group.as_ref().is_some_and(|g| {
                g.batch == c.batch && g.status == status && g.detail.as_ref() == detail
            });
            if !same {
                flush_group(tx, c)?;
                c.group = Some(Group {
                    batch: c.batch,
                    stage,
                    status,
                    detail: detail.cloned(),
                    hosts: Vec::new(),
                    at,
                });
            }
            if let Some(g) = c.group.as_mut() {
                g.hosts.push(host.as_str().to_owned());
            }
            return Ok(());
        }
        flush_group(tx, c)?;
        let id = &*c.id;
        let host_row = |host: &str,
                        stage: Stage,
                        status: &str,
                        fun: Option<&str>,
                        detail: Option<&str>| {
            tx.prepare_cached(
                "INSERT INTO host_results
                 (deployment, template, started_ms, dry_run, host, batch, stage, status, fun, detail, at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?
            .execute(params![
                id,
                c.template,
                c.started_ms,
                c.dry_run,
                host,
                c.batch,
                StageCode(stage),
                status,
                fun,
                detail,
                at
            ])
            .map(drop)
        };
        match &e.kind {
            EventKind::DeploymentStarted { .. } => {}
            EventKind::Prepared {
                hosts,
                batches,
                plan,
                ..
            } => {
                // every planned host, in batch order (older journals recorded counts only)
                let planned = (!plan.is_empty()).then(|| {
                    serde_json::Value::from(
                        plan.iter()
                            .flatten()
                            .map(|m| m.as_str())
                            .collect::<Vec<_>>(),
                    )
                    .to_string()
                });
                tx.prepare_cached(
                    "UPDATE deployments SET hosts = ?2, batches = ?3, planned = ?4 WHERE id = ?1",
                )?
                .execute(params![id, *hosts as i64, *batches as i64, planned])?;
            }
            EventKind::BatchStarted {
                batch,
                hosts,
                minions,
            } => {
                c.batch = *batch as i64;
                let names = (!minions.is_empty()).then(|| {
                    serde_json::Value::from(minions.iter().map(|m| m.as_str()).collect::<Vec<_>>())
                        .to_string()
                });
                tx.prepare_cached(
                    "INSERT OR REPLACE INTO batches (deployment, batch, hosts, started_ms, minions)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![id, c.batch, *hosts as i64, at, names])?;
            }
            EventKind::StageStarted {
                batch,
                stage,
                hosts,
            } => {
                c.batch = batch.map_or(-1, |b| b as i64);
                c.stage = *stage;
                tx.prepare_cached(
                    "INSERT INTO stages (deployment, batch, stage, hosts, started_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![
                    id,
                    c.batch,
                    StageCode(c.stage),
                    *hosts as i64,
                    at
                ])?;
            }
            EventKind::StageFinished {
                batch,
                stage,
                ok,
                failed,
            } => {
                tx.prepare_cached(
                    "UPDATE stages SET ended_ms = ?4, ok = ?5, failed = ?6
                     WHERE id = (SELECT max(id) FROM stages
                                 WHERE deployment = ?1 AND batch = ?2 AND stage = ?3)",
                )?
                .execute(params![
                    id,
                    batch.map_or(-1, |b| b as i64),
                    StageCode(*stage),
                    at,
                    *ok as i64,
                    *failed as i64
                ])?;
            }
            EventKind::CallFinished {
                batch,
                stage,
                fun,
                jid,
                ok,
                failed,
                millis,
            } => {
                tx.prepare_cached(
                    "INSERT INTO calls (deployment, batch, stage, fun, jid, ok, failed, millis, at_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )?
                .execute(params![
                    id,
                    batch.map_or(-1, |b| b as i64),
                    StageCode(*stage),
                    fun,
                    jid,
                    *ok as i64,
                    *failed as i64,
                    *millis as i64,
                    at
                ])?;
            }
            EventKind::HostFailed {
                host,
                stage,
                fun,
                reason,
            } => host_row(
                host.as_str(),
                *stage,
                "failed",
                fun.as_deref(),
                Some(reason),
            )?,
            EventKind::BatchFinished { batch, ok, failed } => {
                tx.prepare_cached(
                    "UPDATE batches SET ended_ms = ?3, ok = ?4, failed = ?5
                     WHERE deployment = ?1 AND batch = ?2",
                )?
                .execute(params![
                    id,
                    *batch as i64,
                    at,
                    *ok as i64,
                    *failed as i64
                ])?;
            }
            EventKind::RollbackStarted { .. } => {
                c.batch = -1;
                c.stage = Stage::Rollback;
                c.rolling_back = true;
                tx.prepare_cached("UPDATE deployments SET rollback_started_ms = ?2 WHERE id = ?1")?
                    .execute(params![id, at])?;
            }
            EventKind::HostRollbackFailed { host, reason } => host_row(
                host.as_str(),
                Stage::Rollback,
                "rollback-failed",
                None,
                Some(reason),
            )?,
            EventKind::DeploymentFinished { outcome } => {
                // Only the journal's end marker: the outcome, reason and end are recorded with
                // the report (`finish_report`), so a reader never sees an outcome without them.
                tx.prepare_cached(
                    "UPDATE deployments SET finished_ms = ?2, finished_outcome = ?3 WHERE id = ?1",
                )?
                .execute(params![id, at, outcome.as_str()])?;
            }
            // Calls started, budget, decisions and cancel requests leave no row of their own: their
            // effects show in the stages, host results and the outcome.
            _ => {}
        }
        Ok(())
    }

    /// Records the end of a deployment in one transaction (see [`HistoryStore::finish`]): its
    /// outcome, reason and end time, and what the journal's events do not carry — each host's log
    /// lines. Hosts' results come from the journal alone ([`SqliteStore::host_results`]), so once a
    /// reader sees the outcome it sees every result and log of the deployment too.
    pub fn finish_report(&self, report: &Report) -> Result<(), Error> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.err("starting the report transaction", e))?;
        self.write_report(&tx, report)
            .map_err(|e| self.err("recording the report", e))?;
        tx.commit()
            .map_err(|e| self.err("committing the report", e))
    }

    fn write_report(&self, tx: &Transaction<'_>, r: &Report) -> rusqlite::Result<()> {
        let started = to_ms(r.started);
        let duration = r.duration.as_millis() as i64;
        let ended = started + duration;
        tx.prepare_cached(
            "INSERT INTO deployments
             (id, template, version, principal, dry_run, started_ms, ended_ms, duration_ms, outcome,
              reason, owner, hosts, batches, last_event_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?7)
             ON CONFLICT (id) DO UPDATE SET
               started_ms = excluded.started_ms, ended_ms = excluded.ended_ms,
               duration_ms = excluded.duration_ms, outcome = excluded.outcome,
               reason = excluded.reason, hosts = coalesce(deployments.hosts, excluded.hosts),
               batches = coalesce(deployments.batches, excluded.batches)",
        )?
        .execute(params![
            r.id,
            r.template,
            r.version,
            r.user,
            r.dry_run,
            started,
            ended,
            duration,
            r.outcome.as_str(),
            r.reason,
            self.inner.owner,
            r.batches.iter().map(Vec::len).sum::<usize>() as i64,
            r.batches.len() as i64,
        ])?;
        let (hosts, logs) = report_json(r);
        tx.prepare_cached(
            "INSERT OR REPLACE INTO reports (deployment, hosts, logs) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![r.id, hosts, logs])?;
        tracing::debug!(deployment = %r.id, at = now_ms(), "report recorded");
        Ok(())
    }
}

/// The reason the engine gives a host it cannot roll back for want of a recorded earlier version
/// (`HostRollbackFailed` carries no kind of its own).
const NO_ROLLBACK_TARGET: &str = "no previous version recorded for this host";

/// Keeps `host_state` (each host's result as the events so far leave it) up to date with `e`.
fn track_host_state(tx: &Transaction<'_>, c: &Cursor, e: &Event) -> rusqlite::Result<()> {
    let id = &*c.id;
    // a host placed in a batch with a fresh status (and no failure yet)
    let place = |host: &str, batch: Option<i64>, status: &str| {
        tx.prepare_cached(
            "INSERT INTO host_state (deployment, host, batch, status) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (deployment, host) DO UPDATE SET batch = excluded.batch,
               status = excluded.status, stage = NULL, fun = NULL, failure = NULL,
               rolled_back_to = NULL",
        )?
        .execute(params![id, host, batch, status])
        .map(drop)
    };
    // a host's new status, keeping its batch and failure
    let status = |host: &str, status: &str, rolled_back_to: Option<&str>| {
        tx.prepare_cached(
            "INSERT INTO host_state (deployment, host, status, rolled_back_to)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (deployment, host) DO UPDATE SET status = excluded.status,
               rolled_back_to = coalesce(excluded.rolled_back_to, host_state.rolled_back_to)",
        )?
        .execute(params![id, host, status, rolled_back_to])
        .map(drop)
    };
    let batch = (c.batch >= 0).then_some(c.batch);
    // a restore of a failed host (before any rollback) leaves it failed
    let rolling_back = c.rolling_back || matches!(e.kind, EventKind::RollbackStarted { .. });
    match &e.kind {
        EventKind::Prepared { plan, left_out, .. } => {
            // a release places a host in its batch when the batch starts; a rollback request
            // places every host at once
            let rollback: bool = tx
                .prepare_cached("SELECT rollback FROM deployments WHERE id = ?1")?
                .query_row([id], |r| r.get(0))?;
            for (b, hosts) in plan.iter().enumerate() {
                for h in hosts {
                    place(h.as_str(), rollback.then_some(b as i64), "pending")?;
                }
            }
            // hosts pre-flight left out by `on_down = "exclude"`: excluded, not failed
            for h in left_out {
                status(h.as_str(), "excluded", None)?;
            }
        }
        EventKind::BatchStarted { batch, minions, .. } => {
            for h in minions {
                place(h.as_str(), Some(*batch as i64), "interrupted")?;
            }
        }
        EventKind::HostSucceeded { host } => status(host.as_str(), "succeeded", None)?,
        EventKind::HostFailed {
            host,
            stage: Stage::Rollback,
            fun,
            reason,
        } => {
            // the failure shown is the release's, if the host failed there first
            tx.prepare_cached(
                "INSERT INTO host_state (deployment, host, status, stage, fun, failure)
                 VALUES (?1, ?2, 'rollback-failed', ?3, ?4, ?5)
                 ON CONFLICT (deployment, host) DO UPDATE SET
                   status = CASE WHEN ?6 THEN 'rollback-failed' ELSE host_state.status END,
                   fun = CASE WHEN host_state.stage IS NULL THEN excluded.fun ELSE host_state.fun END,
                   failure = CASE WHEN host_state.stage IS NULL THEN excluded.failure
                             ELSE host_state.failure END,
                   stage = coalesce(host_state.stage, excluded.stage)",
            )?
            .execute(params![
                id,
                host.as_str(),
                StageCode(Stage::Rollback),
                fun,
                reason,
                rolling_back
            ])?;
        }
        EventKind::HostFailed {
            host,
            stage,
            fun,
            reason,
        } => {
            tx.prepare_cached(
                "INSERT INTO host_state (deployment, host, batch, status, stage, fun, failure)
                 VALUES (?1, ?2, ?3, 'failed', ?4, ?5, ?6)
                 ON CONFLICT (deployment, host) DO UPDATE SET status = 'failed',
                   stage = excluded.stage, fun = excluded.fun, failure = excluded.failure",
            )?
            .execute(params![
                id,
                host.as_str(),
                batch,
                StageCode(*stage),
                fun,
                reason
            ])?;
        }
        EventKind::DecisionTaken { decision } => {
            // the hosts the decision was about: those that failed in the stage under way
            let sql = match decision {
                Decision::Exclude => "UPDATE host_state SET status = 'excluded'",
                Decision::Retry => {
                    "UPDATE host_state SET status = 'interrupted', stage = NULL, fun = NULL,
                       failure = NULL"
                }
                _ => return Ok(()),
            };
            tx.prepare_cached(&format!(
                "{sql} WHERE deployment = ?1 AND status = 'failed' AND batch = ?2 AND stage = ?3"
            ))?
            .execute(params![id, c.batch, StageCode(c.stage)])?;
        }
        EventKind::HostRolledBack { host, to } if rolling_back => {
            status(host.as_str(), "rolled-back", Some(to))?
        }
        EventKind::HostRolledBack { host, to } => {
            tx.prepare_cached(
                "UPDATE host_state SET rolled_back_to = ?3 WHERE deployment = ?1 AND host = ?2",
            )?
            .execute(params![id, host.as_str(), to])?;
        }
        EventKind::HostRollbackFailed { host, reason } if rolling_back => {
            let s = if reason == NO_ROLLBACK_TARGET {
                "no-rollback-target"
            } else {
                "rollback-failed"
            };
            status(host.as_str(), s, None)?;
        }
        EventKind::RollbackFinished { .. } => {
            // a requested rollback leaves hosts without an earlier version as they are, without an
            // event of their own: the planned hosts it did not reach
            tx.prepare_cached(
                "UPDATE host_state SET status = 'no-rollback-target'
                 WHERE deployment = ?1 AND status = 'pending' AND batch IS NOT NULL
                   AND EXISTS (SELECT 1 FROM deployments WHERE id = ?1 AND rollback = 1)",
            )?
            .execute([id])?;
        }
        _ => {}
    }
    Ok(())
}

/// Writes a group of hosts as one `host_results` row.
fn flush_group(tx: &Transaction<'_>, c: &mut Cursor) -> rusqlite::Result<()> {
    let Some(g) = c.group.take() else {
        return Ok(());
    };
    let hosts = serde_json::to_string(&g.hosts)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    tx.prepare_cached(
        "INSERT INTO host_results
         (deployment, template, started_ms, dry_run, hosts, batch, stage, status, detail, at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        &*c.id,
        c.template,
        c.started_ms,
        c.dry_run,
        hosts,
        g.batch,
        StageCode(g.stage),
        g.status,
        g.detail,
        g.at
    ])
    .map(drop)
}

/// Hosts of one deployment with the same log.
#[derive(serde::Serialize)]
struct LogGroup<'a> {
    log: usize,
    hosts: Vec<&'a str>,
}

/// The report's hosts, grouped by identical logs, and their distinct logs, as JSON. Hosts of one
/// batch usually end alike, so each distinct log is formatted and stored once. (Each host's result
/// comes from the journal, in `host_state`.)
fn report_json(r: &Report) -> (String, String) {
    let mut lines = LineCache::default();
    let mut logs: Vec<Vec<Arc<str>>> = Vec::new();
    // Lines are shared `Arc`s, so a log is identified by the addresses of its lines.
    let mut log_index: HashMap<Vec<usize>, usize> = HashMap::new();
    let mut groups: Vec<LogGroup<'_>> = Vec::new();
    for h in &r.hosts {
        let log: Vec<Arc<str>> = h.log.iter().map(|e| lines.line(&r.calls, e)).collect();
        let key: Vec<usize> = log
            .iter()
            .map(|l| Arc::as_ptr(l) as *const u8 as usize)
            .collect();
        let n = *log_index.entry(key).or_insert_with(|| {
            logs.push(log);
            groups.push(LogGroup {
                log: logs.len() - 1,
                hosts: Vec::new(),
            });
            logs.len() - 1
        });
        groups[n].hosts.push(h.host.as_str());
    }
    let hosts = serde_json::to_string(&groups).unwrap_or_else(|_| "[]".to_owned());
    let logs = serde_json::to_string(&logs).unwrap_or_else(|_| "[]".to_owned());
    (hosts, logs)
}

/// Formats log lines ([`LogEntry::line`], as [`Report::host_log`] does) once per call and outcome. (`Report::host_log`
/// looks its host up by a linear search, which would make recording a report quadratic.)
#[derive(Default)]
struct LineCache {
    last: HashMap<usize, (Outcome, Arc<str>)>,
}

impl LineCache {
    fn line(&mut self, calls: &[CallRecord], e: &LogEntry) -> Arc<str> {
        let LogEntry::Call { call, outcome, .. } = e else {
            return Arc::from(e.line(calls));
        };
        if let Some((o, line)) = self.last.get(call) {
            if o == outcome {
                return line.clone();
            }
        }
        let line: Arc<str> = Arc::from(e.line(calls));
        self.last.insert(*call, (outcome.clone(), line.clone()));
        line
    }
}

#[async_trait::async_trait]
impl HistoryStore for SqliteStore {
    async fn append(&self, events: &[Event]) -> Result<(), pushguide_core::Error> {
        let (store, events) = (self.clone(), events.to_vec());
        crate::store::blocking("appending to the journal", move || {
            store.append_events(&events)
        })
        .await
    }

    async fn finish(&self, report: &Report) -> Result<(), pushguide_core::Error> {
        let (store, report) = (self.clone(), report.clone());
        crate::store::blocking("recording the report", move || store.finish_report(&report)).await
    }
}
