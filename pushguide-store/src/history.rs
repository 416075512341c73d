//! The journal: events as they happen, then the final report.

use std::sync::Arc;

use pushguide_core::{
    CallRecord, DeploymentOutcome, Event, EventKind, HistoryStore, HostReport, LogEntry, Outcome,
    Report,
};
use rusqlite::{params, OptionalExtension, Transaction, TransactionBehavior};

use crate::error::Error;
use crate::store::{now_ms, stage_code, to_ms, SqliteStore};

/// The name stored for an outcome (kebab-case, as serde spells it).
pub(crate) fn outcome_name(o: DeploymentOutcome) -> &'static str {
    match o {
        DeploymentOutcome::Succeeded => "succeeded",
        DeploymentOutcome::PartiallyApplied => "partially-applied",
        DeploymentOutcome::Failed => "failed",
        DeploymentOutcome::RolledBack => "rolled-back",
        DeploymentOutcome::RollbackFailed => "rollback-failed",
        DeploymentOutcome::Cancelled => "cancelled",
    }
}

/// Where a deployment's journal stands between two appends.
struct Cursor {
    id: Arc<str>,
    template: String,
    started_ms: i64,
    dry_run: bool,
    batch: i64,
    stage: i64,
    events: i64,
    last_ms: i64,
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
                if let Some(c) = cursor.take() {
                    self.save_cursor(&tx, &c)?;
                }
                cursor = Some(self.load_cursor(&tx, e)?);
            }
            let Some(c) = cursor.as_mut() else { continue };
            self.apply(&tx, c, e)
                .map_err(|err| self.err("appending an event", err))?;
        }
        if let Some(c) = cursor {
            self.save_cursor(&tx, &c)?;
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
        } = &e.kind
        {
            let at = to_ms(e.at);
            tx.prepare_cached(
                "INSERT OR IGNORE INTO deployments
                 (id, template, version, principal, dry_run, started_ms, owner, last_event_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?6)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    &*e.deployment,
                    template,
                    version,
                    user,
                    dry_run,
                    at,
                    self.inner.owner
                ])
            })
            .map_err(|err| self.err("recording a deployment start", err))?;
        }
        let found = tx
            .prepare_cached(
                "SELECT template, started_ms, dry_run, cur_batch, cur_stage, events, last_event_ms
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
                        stage: r.get(4)?,
                        events: r.get(5)?,
                        last_ms: r.get(6)?,
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

    fn save_cursor(&self, tx: &Transaction<'_>, c: &Cursor) -> Result<(), Error> {
        tx.prepare_cached(
            "UPDATE deployments SET cur_batch = ?2, cur_stage = ?3, events = ?4, last_event_ms = ?5
             WHERE id = ?1",
        )
        .and_then(|mut s| s.execute(params![&*c.id, c.batch, c.stage, c.events, c.last_ms]))
        .map(drop)
        .map_err(|e| self.err("updating a deployment", e))
    }

    fn apply(&self, tx: &Transaction<'_>, c: &mut Cursor, e: &Event) -> rusqlite::Result<()> {
        let at = to_ms(e.at);
        c.events += 1;
        c.last_ms = c.last_ms.max(at);
        let id = &*c.id;
        let host_row = |host: &str,
                        stage: i64,
                        status: &str,
                        fun: Option<&str>,
                        detail: Option<&str>| {
            tx.prepare_cached(
                "INSERT INTO host_results
                 (deployment, template, started_ms, dry_run, host, batch, stage, status, fun, detail, at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?
            .execute(params![
                id, c.template, c.started_ms, c.dry_run, host, c.batch, stage, status, fun, detail, at
            ])
            .map(drop)
        };
        match &e.kind {
            EventKind::DeploymentStarted { .. } => {}
            EventKind::Prepared { hosts, batches, .. } => {
                tx.prepare_cached("UPDATE deployments SET hosts = ?2, batches = ?3 WHERE id = ?1")?
                    .execute(params![id, *hosts as i64, *batches as i64])?;
            }
            EventKind::BatchStarted { batch, hosts } => {
                c.batch = *batch as i64;
                tx.prepare_cached(
                    "INSERT OR REPLACE INTO batches (deployment, batch, hosts, started_ms)
                     VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![id, c.batch, *hosts as i64, at])?;
            }
            EventKind::StageStarted {
                batch,
                stage,
                hosts,
            } => {
                c.batch = batch.map_or(-1, |b| b as i64);
                c.stage = stage_code(*stage);
                tx.prepare_cached(
                    "INSERT INTO stages (deployment, batch, stage, hosts, started_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![id, c.batch, c.stage, *hosts as i64, at])?;
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
                    stage_code(*stage),
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
                    stage_code(*stage),
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
                stage_code(*stage),
                "failed",
                Some(fun),
                Some(reason),
            )?,
            EventKind::HostSucceeded { host } => {
                host_row(host.as_str(), 3, "succeeded", None, None)?
            }
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
                c.stage = 4;
            }
            EventKind::HostRolledBack { host, to } => {
                host_row(host.as_str(), 4, "rolled-back", None, Some(to))?
            }
            EventKind::HostRollbackFailed { host, reason } => {
                host_row(host.as_str(), 4, "rollback-failed", None, Some(reason))?
            }
            EventKind::DeploymentFinished { outcome } => {
                tx.prepare_cached(
                    "UPDATE deployments SET ended_ms = ?2, duration_ms = ?2 - started_ms, outcome = ?3
                     WHERE id = ?1",
                )?
                .execute(params![id, at, outcome_name(*outcome)])?;
            }
            // Calls started, budget, decisions and cancel requests leave no row of their own: their
            // effects show in the stages, host results and the outcome.
            _ => {}
        }
        Ok(())
    }

    /// Records the final report in one transaction (see [`HistoryStore::finish`]).
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
               reason = excluded.reason, hosts = excluded.hosts, batches = excluded.batches",
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
            outcome_name(r.outcome),
            r.reason,
            self.inner.owner,
            r.batches.iter().map(Vec::len).sum::<usize>() as i64,
            r.batches.len() as i64,
        ])?;
        let mut host_stmt = tx.prepare_cached(
            "INSERT OR REPLACE INTO report_hosts
             (deployment, host, batch, status, failed_stage, failed_fun, failure, rolled_back_to)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        let mut line_stmt = tx.prepare_cached(
            "INSERT OR REPLACE INTO host_log_lines (deployment, host, line, text)
             VALUES (?1, ?2, ?3, ?4)",
        )?;
        for h in &r.hosts {
            let failure = h.failure.as_ref().or(h.rollback_failure.as_ref());
            host_stmt.execute(params![
                r.id,
                h.host.as_str(),
                h.batch.map(|b| b as i64),
                status_name(h),
                failure.map(|f| f.stage.as_str()),
                failure.map(|f| f.fun.as_str()),
                failure.map(|f| f.reason.as_str()),
                h.rolled_back_to,
            ])?;
            for (i, line) in log_lines(&r.calls, h).enumerate() {
                line_stmt.execute(params![r.id, h.host.as_str(), i as i64, line])?;
            }
        }
        tracing::debug!(deployment = %r.id, at = now_ms(), "report recorded");
        Ok(())
    }
}

fn status_name(h: &HostReport) -> &'static str {
    use pushguide_core::HostStatus as S;
    match h.status {
        S::Pending => "pending",
        S::Interrupted => "interrupted",
        S::Succeeded => "succeeded",
        S::Failed => "failed",
        S::Excluded => "excluded",
        S::RolledBack => "rolled-back",
        S::RollbackFailed => "rollback-failed",
        S::NoRollbackTarget => "no-rollback-target",
    }
}

/// The lines of [`Report::host_log`] for one host. `Report::host_log` looks the host up by a linear
/// search, which would make recording a report quadratic in its hosts; this formats the same lines
/// from the host's entry directly.
fn log_lines<'a>(calls: &'a [CallRecord], h: &'a HostReport) -> impl Iterator<Item = String> + 'a {
    h.log.iter().map(move |e| match e {
        LogEntry::Call {
            stage,
            call,
            outcome,
        } => {
            let Some(c) = calls.get(*call) else {
                return format!("[{stage}] call #{call} (not in the report)");
            };
            let what = match outcome {
                Outcome::Ok { .. } if !c.sent => "recorded (dry run)".to_owned(),
                Outcome::Ok { value } => {
                    let v = value.to_string();
                    if v.len() > 120 {
                        format!("ok {}…", v.chars().take(120).collect::<String>())
                    } else {
                        format!("ok {v}")
                    }
                }
                other => format!("FAILED {}", other.reason().unwrap_or_default()),
            };
            format!("[{stage}] {} → {what}", c.call)
        }
        LogEntry::Message { stage, text } => format!("[{stage}] {text}"),
    })
}

impl HistoryStore for SqliteStore {
    fn append(&self, events: &[Event]) -> Result<(), pushguide_core::Error> {
        self.append_events(events).map_err(Into::into)
    }

    fn finish(&self, report: &Report) -> Result<(), pushguide_core::Error> {
        self.finish_report(report).map_err(Into::into)
    }
}
