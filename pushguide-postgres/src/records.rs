//! [`RecordStore`] on PostgreSQL: the web service's reads of deployment records, their journal,
//! history pages and statistics, with the SQLite store's semantics (`pushguide-store`'s
//! `query`, `browse`, `stats`, `journal` and `recover` modules define them).
//!
//! - A deployment's per-host results, per-stage results, salt calls and recovery state are folded
//!   from its journal (`events`, every event in append order) by [`Fold`], the same steps the SQLite
//!   store takes as it appends; host logs come from the recorded report.
//! - History pages are found by key (start in milliseconds, id), one walk per template of the
//!   `deployments_records_by_template` index from the key, as SQLite does.
//! - Statistics are computed in SQL from the covering indexes of schema 3: percentiles with
//!   `percentile_disc` (the nearest rank, which the SQLite store uses: `percentile_cont` would
//!   interpolate), hours and weekdays at the window's fixed UTC offset with SQLite's integer
//!   arithmetic, time to recover with window functions per template. Hosts and stages are ranked
//!   from `host_failures`.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use pushguide_core::{
    CallRecord, Decision, DeploymentOutcome, Event, EventKind, HostReport, MinionId, MinionStatus,
    Stage,
};
use pushguide_store::{
    CallRow, DayStats, DeploymentRecord, HistoryKey, HistoryPage, HistoryQuery, HostProgress,
    HostResult, HostStageResult, HostVersion, InterruptedDeployment, OutcomeFilter, PageAt, Rate,
    RecordStore, Recovery, Stats, Summary, Window,
};
use tokio_postgres::Row;

use crate::error::Error;
use crate::recover::INTERRUPTED;
use crate::sql::Sql;
use crate::store::PgStore;

type StoreError = pushguide_store::Error;

const DAY_MS: i64 = 86_400_000;

/// The reason the engine gives a host it cannot roll back for want of an earlier version.
const NO_ROLLBACK_TARGET: &str = "no previous version recorded for this host";

/// Journal kinds the live view does not need (their effects show in the stage events): not
/// returned by `journal_after`, as in the SQLite store.
const NOT_JOURNALED: [&str; 3] = ["host-succeeded", "call-started", "call-finished"];

/// Milliseconds since the Unix epoch (the SQLite store's `to_ms`).
fn to_ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

fn from_ms(ms: i64) -> SystemTime {
    if ms >= 0 {
        UNIX_EPOCH + Duration::from_millis(ms as u64)
    } else {
        UNIX_EPOCH - Duration::from_millis(ms.unsigned_abs())
    }
}

/// `t` truncated to whole milliseconds, as the SQLite store keeps times.
fn trunc_ms(t: SystemTime) -> SystemTime {
    from_ms(to_ms(t))
}

fn millis(d: i64) -> Duration {
    Duration::from_millis(d.max(0) as u64)
}

fn stage_named(name: &str) -> Option<Stage> {
    Stage::ALL.into_iter().find(|s| s.as_str() == name)
}

/// The columns of a [`DeploymentRecord`], read by [`record`].
const RECORD: &str = "id, template, version, principal, dry_run, rollback, started_ms, ended_at,
                      duration_ms, outcome, reason, events";

fn record(r: &Row) -> DeploymentRecord {
    let mut d = DeploymentRecord::default();
    d.id = r.get(0);
    d.template = r.get(1);
    d.version = r.get(2);
    d.principal = r.get(3);
    d.dry_run = r.get(4);
    d.rollback = r.get(5);
    d.started = from_ms(r.get(6));
    d.ended = r.get::<_, Option<SystemTime>>(7).map(trunc_ms);
    d.duration = r.get::<_, Option<i64>>(8).map(millis);
    d.outcome = r.get(9);
    d.reason = r.get(10);
    d.events = r.get::<_, i64>(11).max(0) as u64;
    d
}

fn corrupt(what: &'static str, e: impl std::fmt::Display) -> Error {
    Error::Corrupt {
        what,
        reason: e.to_string(),
    }
}

/// The window's condition on a table with `started_ms` and `template` (parameters `$1` from, `$2`
/// to, `$3` one template or NULL, `$4` a list of templates or NULL); the statement's own
/// parameters start at `$5`.
const WINDOW: &str = "started_ms >= $1 AND started_ms < $2
    AND ($3::text IS NULL OR template = $3) AND ($4::text[] IS NULL OR template = ANY($4))";

/// Finished, non-dry-run deployments (releases and rollback requests).
const FINISHED: &str = "NOT dry_run AND duration_ms IS NOT NULL";

/// The window's parameter values, in the order of [`WINDOW`].
struct WindowParams {
    from: i64,
    to: i64,
    template: Option<String>,
    templates: Option<Vec<String>>,
}

impl WindowParams {
    fn of(w: &Window) -> Self {
        WindowParams {
            from: to_ms(w.from),
            to: to_ms(w.to),
            template: w.template.clone(),
            templates: w.templates.clone(),
        }
    }
}

/// The offset of the window in milliseconds (clamped to ±18 h, as SQLite's).
fn offset_ms(w: &Window) -> i64 {
    i64::from(w.utc_offset_secs.clamp(-18 * 3600, 18 * 3600)) * 1000
}

/// The outcomes of releases that count as failed (the SQLite store's `failed_names`).
fn failed_names() -> Vec<String> {
    DeploymentOutcome::ALL
        .into_iter()
        .filter(|o| {
            !matches!(
                o,
                DeploymentOutcome::Succeeded | DeploymentOutcome::Cancelled
            )
        })
        .map(|o| o.as_str().to_owned())
        .chain([INTERRUPTED.to_owned()])
        .collect()
}

/// One host's result as the journal's events leave it (the SQLite store's `host_state` row).
#[derive(Clone, Debug, Default)]
struct HostState {
    batch: Option<i64>,
    status: String,
    stage: Option<Stage>,
    fun: Option<String>,
    failure: Option<String>,
    rolled_back_to: Option<String>,
}

/// One host event (the SQLite store's `host_events` row).
#[derive(Clone, Debug)]
struct HostEvent {
    host: String,
    batch: i64,
    stage: Stage,
    status: &'static str,
    fun: Option<String>,
    detail: Option<String>,
}

/// A stage of a batch (`batch` -1: prepare or no batch).
#[derive(Clone, Debug)]
struct StageRow {
    batch: i64,
    stage: Stage,
    hosts: u64,
    started: i64,
    ended: Option<i64>,
}

/// A batch that started.
#[derive(Clone, Debug, Default)]
struct BatchRow {
    minions: Vec<String>,
    finished: bool,
}

/// A salt call that returned.
#[derive(Clone, Debug)]
struct CallDone {
    batch: i64,
    stage: Stage,
    fun: String,
    jid: Option<String>,
    ok: u64,
    failed: u64,
    millis: u64,
}

/// A deployment's journal folded into what the SQLite store keeps as it appends: each host's
/// state, the host events, the stages, batches and calls, and the cursor (batch and stage under
/// way).
#[derive(Debug)]
struct Fold {
    rollback: bool,
    batch: i64,
    stage: Stage,
    rolling_back: bool,
    planned: Vec<String>,
    hosts: BTreeMap<String, HostState>,
    events: Vec<HostEvent>,
    stages: Vec<StageRow>,
    batches: BTreeMap<i64, BatchRow>,
    calls: Vec<CallDone>,
}

impl Fold {
    fn of(events: &[Event]) -> Self {
        let mut f = Fold {
            rollback: false,
            batch: -1,
            stage: Stage::Prepare,
            rolling_back: false,
            planned: Vec::new(),
            hosts: BTreeMap::new(),
            events: Vec::new(),
            stages: Vec::new(),
            batches: BTreeMap::new(),
            calls: Vec::new(),
        };
        for e in events {
            f.track_host_state(e);
            f.apply(e);
        }
        f
    }

    /// A host placed in a batch with a fresh status.
    fn place(&mut self, host: &str, batch: Option<i64>, status: &str) {
        self.hosts.insert(
            host.to_owned(),
            HostState {
                batch,
                status: status.to_owned(),
                ..HostState::default()
            },
        );
    }

    /// A host's new status, keeping its batch and failure.
    fn set_status(&mut self, host: &str, status: &str, rolled_back_to: Option<&str>) {
        let h = self.hosts.entry(host.to_owned()).or_default();
        h.status = status.to_owned();
        if let Some(to) = rolled_back_to {
            h.rolled_back_to = Some(to.to_owned());
        }
    }

    fn track_host_state(&mut self, e: &Event) {
        let batch = (self.batch >= 0).then_some(self.batch);
        let rolling_back = self.rolling_back || matches!(e.kind, EventKind::RollbackStarted { .. });
        match &e.kind {
            EventKind::DeploymentStarted { rollback, .. } => self.rollback = *rollback,
            EventKind::Prepared { plan, left_out, .. } => {
                let rollback = self.rollback;
                for (b, hosts) in plan.iter().enumerate() {
                    for h in hosts {
                        self.place(h.as_str(), rollback.then_some(b as i64), "pending");
                    }
                }
                for h in left_out {
                    self.set_status(h.as_str(), "excluded", None);
                }
            }
            EventKind::BatchStarted { batch, minions, .. } => {
                for h in minions {
                    self.place(h.as_str(), Some(*batch as i64), "interrupted");
                }
            }
            EventKind::HostSucceeded { host } => self.set_status(host.as_str(), "succeeded", None),
            EventKind::HostFailed {
                host,
                stage: Stage::Rollback,
                fun,
                reason,
            } => match self.hosts.get_mut(host.as_str()) {
                None => {
                    self.hosts.insert(
                        host.as_str().to_owned(),
                        HostState {
                            batch: None,
                            status: "rollback-failed".to_owned(),
                            stage: Some(Stage::Rollback),
                            fun: fun.clone(),
                            failure: Some(reason.clone()),
                            rolled_back_to: None,
                        },
                    );
                }
                Some(h) => {
                    if rolling_back {
                        h.status = "rollback-failed".to_owned();
                    }
                    if h.stage.is_none() {
                        h.fun = fun.clone();
                        h.failure = Some(reason.clone());
                        h.stage = Some(Stage::Rollback);
                    }
                }
            },
            EventKind::HostFailed {
                host,
                stage,
                fun,
                reason,
            } => {
                let h = self
                    .hosts
                    .entry(host.as_str().to_owned())
                    .or_insert_with(|| HostState {
                        batch,
                        ..HostState::default()
                    });
                h.status = "failed".to_owned();
                h.stage = Some(*stage);
                h.fun = fun.clone();
                h.failure = Some(reason.clone());
            }
            EventKind::DecisionTaken { decision } => {
                let (b, s) = (self.batch, self.stage);
                for h in self.hosts.values_mut() {
                    if h.status != "failed" || h.batch != Some(b) || h.stage != Some(s) {
                        continue;
                    }
                    match decision {
                        Decision::Exclude => h.status = "excluded".to_owned(),
                        Decision::Retry => {
                            h.status = "interrupted".to_owned();
                            h.stage = None;
                            h.fun = None;
                            h.failure = None;
                        }
                        _ => {}
                    }
                }
            }
            EventKind::HostRolledBack { host, to } if rolling_back => {
                self.set_status(host.as_str(), "rolled-back", Some(to));
            }
            EventKind::HostRolledBack { host, to } => {
                if let Some(h) = self.hosts.get_mut(host.as_str()) {
                    h.rolled_back_to = Some(to.clone());
                }
            }
            EventKind::HostRollbackFailed { host, reason } if rolling_back => {
                let s = if reason == NO_ROLLBACK_TARGET {
                    "no-rollback-target"
                } else {
                    "rollback-failed"
                };
                self.set_status(host.as_str(), s, None);
            }
            EventKind::RollbackFinished { .. } if self.rollback => {
                for h in self.hosts.values_mut() {
                    if h.status == "pending" && h.batch.is_some() {
                        h.status = "no-rollback-target".to_owned();
                    }
                }
            }
            _ => {}
        }
    }

    fn host_event(
        &mut self,
        host: &MinionId,
        stage: Stage,
        status: &'static str,
        fun: Option<String>,
        detail: Option<String>,
    ) {
        self.events.push(HostEvent {
            host: host.as_str().to_owned(),
            batch: self.batch,
            stage,
            status,
            fun,
            detail,
        });
    }

    fn apply(&mut self, e: &Event) {
        let at = to_ms(e.at);
        match &e.kind {
            EventKind::HostSucceeded { host } => {
                self.host_event(host, Stage::PostDeploy, "succeeded", None, None);
            }
            EventKind::HostRolledBack { host, to } => {
                self.host_event(host, Stage::Rollback, "rolled-back", None, Some(to.clone()));
            }
            EventKind::Prepared { plan, .. } if !plan.is_empty() => {
                self.planned = plan
                    .iter()
                    .flatten()
                    .map(|m| m.as_str().to_owned())
                    .collect();
            }
            EventKind::BatchStarted { batch, minions, .. } => {
                self.batch = *batch as i64;
                self.batches.insert(
                    self.batch,
                    BatchRow {
                        minions: minions.iter().map(|m| m.as_str().to_owned()).collect(),
                        finished: false,
                    },
                );
            }
            EventKind::StageStarted {
                batch,
                stage,
                hosts,
            } => {
                self.batch = batch.map_or(-1, |b| b as i64);
                self.stage = *stage;
                self.stages.push(StageRow {
                    batch: self.batch,
                    stage: *stage,
                    hosts: *hosts as u64,
                    started: at,
                    ended: None,
                });
            }
            EventKind::StageFinished { batch, stage, .. } => {
                let b = batch.map_or(-1, |b| b as i64);
                if let Some(s) = self
                    .stages
                    .iter_mut()
                    .rev()
                    .find(|s| s.batch == b && s.stage == *stage)
                {
                    s.ended = Some(at);
                }
            }
            EventKind::CallFinished {
                batch,
                stage,
                fun,
                jid,
                ok,
                failed,
                millis,
            } => self.calls.push(CallDone {
                batch: batch.map_or(-1, |b| b as i64),
                stage: *stage,
                fun: fun.clone(),
                jid: jid.clone(),
                ok: *ok as u64,
                failed: *failed as u64,
                millis: *millis,
            }),
            EventKind::HostFailed {
                host,
                stage,
                fun,
                reason,
            } => self.host_event(host, *stage, "failed", fun.clone(), Some(reason.clone())),
            EventKind::BatchFinished { batch, .. } => {
                if let Some(b) = self.batches.get_mut(&(*batch as i64)) {
                    b.finished = true;
                }
            }
            EventKind::RollbackStarted { .. } => {
                self.batch = -1;
                self.stage = Stage::Rollback;
                self.rolling_back = true;
            }
            EventKind::HostRollbackFailed { host, reason } => {
                self.host_event(
                    host,
                    Stage::Rollback,
                    "rollback-failed",
                    None,
                    Some(reason.clone()),
                );
            }
            _ => {}
        }
    }

    fn host_results(&self) -> Vec<HostResult> {
        self.hosts
            .iter()
            .map(|(host, h)| {
                let mut r = HostResult::default();
                r.host = host.clone();
                r.batch = h.batch.and_then(|b| usize::try_from(b).ok());
                r.status = h.status.clone();
                r.failed_stage = h.stage.map(|s| s.as_str().to_owned());
                r.fun = h.fun.clone();
                r.failure = h.failure.clone();
                r.rolled_back_to = h.rolled_back_to.clone();
                r
            })
            .collect()
    }

    /// The SQLite store's `host_stage_results` view: each host event joined with the stages of its
    /// batch that it went through.
    fn host_stage_results(&self) -> Vec<HostStageResult> {
        let mut rows = Vec::new();
        for r in &self.events {
            let rs = r.stage as i64;
            for s in self.stages.iter().filter(|s| s.batch == r.batch) {
                let ss = s.stage as i64;
                let joined = match r.status {
                    "succeeded" => (1..=3).contains(&ss),
                    "failed" => ss <= rs && (rs < 4 || ss == 4),
                    _ => ss == 4,
                };
                if !joined {
                    continue;
                }
                let same = ss == rs;
                let mut x = HostStageResult::default();
                x.host = r.host.clone();
                x.batch = usize::try_from(s.batch).ok();
                x.stage = s.stage.as_str().to_owned();
                x.status = if matches!(r.status, "failed" | "rollback-failed") && same {
                    "failed".to_owned()
                } else {
                    "ok".to_owned()
                };
                x.duration = s.ended.map(|e| millis(e - s.started));
                x.fun = if same { r.fun.clone() } else { None };
                x.detail = if same { r.detail.clone() } else { None };
                rows.push(x);
            }
        }
        let order = |r: &HostStageResult| stage_named(&r.stage);
        rows.sort_by(|a, b| (&a.host, a.batch, order(a)).cmp(&(&b.host, b.batch, order(b))));
        rows
    }

    fn calls(&self) -> Vec<CallRow> {
        self.calls
            .iter()
            .map(|c| {
                let mut r = CallRow::default();
                r.batch = usize::try_from(c.batch).ok();
                r.stage = c.stage.as_str().to_owned();
                r.fun = c.fun.clone();
                r.jid = c.jid.clone();
                r.ok = c.ok;
                r.failed = c.failed;
                r.millis = c.millis;
                r
            })
            .collect()
    }

    /// Each host's last known state (the SQLite store's `interrupted_one`, from `hosts` on).
    fn progress(&self) -> Vec<HostProgress> {
        // the last host event of each host, by host
        let mut last: BTreeMap<&str, &HostEvent> = BTreeMap::new();
        for e in &self.events {
            last.insert(&e.host, e);
        }
        let mut hosts: Vec<HostProgress> = last
            .values()
            .map(|e| {
                let mut h = HostProgress::default();
                h.host = e.host.clone();
                h.batch = usize::try_from(e.batch).ok();
                h.stage = e.stage;
                h.status = e.status.to_owned();
                h.fun = e.fun.clone();
                h.detail = e.detail.clone();
                h
            })
            .collect();
        #[derive(Default)]
        struct BatchJournal {
            hosts: Vec<String>,
            finished: bool,
            ended: Vec<Stage>,
            running: Option<Stage>,
            calls: Vec<String>,
            stage_calls: Vec<(Stage, Vec<String>)>,
        }
        let mut batches: BTreeMap<usize, BatchJournal> = BTreeMap::new();
        for (b, row) in &self.batches {
            let Ok(b) = usize::try_from(*b) else { continue };
            batches.insert(
                b,
                BatchJournal {
                    hosts: row.minions.clone(),
                    finished: row.finished,
                    ..BatchJournal::default()
                },
            );
        }
        // per batch and batch stage: whether any of its rows ended, in (batch, stage) order
        let mut stage_ended: BTreeMap<(i64, Stage), bool> = BTreeMap::new();
        for s in &self.stages {
            if s.batch >= 0 && Stage::BATCH.contains(&s.stage) {
                *stage_ended.entry((s.batch, s.stage)).or_default() |= s.ended.is_some();
            }
        }
        for ((b, stage), ended) in stage_ended {
            let Some(j) = usize::try_from(b).ok().and_then(|b| batches.get_mut(&b)) else {
                continue;
            };
            if ended {
                j.ended.push(stage);
            } else {
                j.running = Some(stage);
            }
        }
        for c in self.calls.iter().filter(|c| c.batch >= 0 && c.ok > 0) {
            let Some(j) = usize::try_from(c.batch)
                .ok()
                .and_then(|b| batches.get_mut(&b))
            else {
                continue;
            };
            if j.running == Some(c.stage) && !j.calls.contains(&c.fun) {
                j.calls.push(c.fun.clone());
            }
            match j.stage_calls.iter_mut().find(|(s, _)| *s == c.stage) {
                Some((_, funs)) if funs.contains(&c.fun) => {}
                Some((_, funs)) => funs.push(c.fun.clone()),
                None => j.stage_calls.push((c.stage, vec![c.fun.clone()])),
            }
        }
        let named: HashSet<String> = hosts.iter().map(|h| h.host.clone()).collect();
        let mut unnamed = Vec::new();
        for (b, j) in &batches {
            for host in j.hosts.iter().filter(|h| !named.contains(*h)) {
                let mut h = HostProgress::default();
                h.host = host.clone();
                h.batch = Some(*b);
                h.stage = j.running.unwrap_or_else(|| next_stage(&j.ended));
                h.status = "interrupted".to_owned();
                unnamed.push(h);
            }
        }
        hosts.extend(unnamed);
        for h in &mut hosts {
            let Some(j) = h.batch.and_then(|b| batches.get(&b)) else {
                continue;
            };
            h.batch_finished = j.finished;
            h.stages_done = match h.status.as_str() {
                "failed" => j.ended.iter().copied().filter(|s| *s < h.stage).collect(),
                _ => j.ended.clone(),
            };
            if h.status == "interrupted" {
                h.calls_done = j.calls.clone();
            }
            h.stage_calls = j.stage_calls.clone();
            h.stage_calls.sort_by_key(|(s, _)| *s);
        }
        hosts.sort_by(|a, b| a.host.cmp(&b.host));
        hosts
    }
}

/// The batch stage after the last one that finished (pre-deploy when none did).
fn next_stage(ended: &[Stage]) -> Stage {
    let last = ended.iter().max();
    Stage::BATCH
        .into_iter()
        .find(|s| last.is_none_or(|l| s > l))
        .unwrap_or(Stage::PostDeploy)
}

/// The direction a history walk goes from its key.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Walk {
    /// Newest first, from before the key (or from the newest).
    Older,
    /// Oldest first, from after the key.
    Newer,
}

impl PgStore {
    /// The journal of deployment `id` in append order (every event).
    async fn journal(&self, id: &str, during: &'static str) -> Result<Vec<Event>, Error> {
        let client = self.client(during).await?;
        let rows = client
            .rows(
                "SELECT event FROM events WHERE deployment = $1 ORDER BY seq",
                &[&id],
            )
            .await
            .map_err(|e| self.db(during, e))?;
        rows.into_iter()
            .map(|r| serde_json::from_value(r.get(0)).map_err(|e| corrupt("a journal event", e)))
            .collect()
    }

    async fn fold(&self, id: &str, during: &'static str) -> Result<Fold, Error> {
        Ok(Fold::of(&self.journal(id, during).await?))
    }

    async fn record(&self, id: &str) -> Result<Option<DeploymentRecord>, Error> {
        let during = "reading a deployment";
        let client = self.client(during).await?;
        let row = client
            .opt(
                &format!("SELECT {RECORD} FROM deployments WHERE id = $1"),
                &[&id],
            )
            .await
            .map_err(|e| self.db(during, e))?;
        Ok(row.as_ref().map(record))
    }

    async fn newest_release(&self, template: &str) -> Result<Option<DeploymentRecord>, Error> {
        let during = "reading the last deployment";
        let client = self.client(during).await?;
        let row = client
            .opt(
                &format!(
                    "SELECT {RECORD} FROM (
                       SELECT * FROM deployments WHERE template = $1
                       ORDER BY started_ms DESC, id COLLATE \"C\" DESC LIMIT 50) d
                     WHERE NOT dry_run ORDER BY started_ms DESC, id COLLATE \"C\" DESC LIMIT 1"
                ),
                &[&template],
            )
            .await
            .map_err(|e| self.db(during, e))?;
        Ok(row.as_ref().map(record))
    }

    async fn log_of(&self, id: &str, host: &str) -> Result<Vec<String>, Error> {
        let during = "reading a host log";
        let client = self.client(during).await?;
        let row = client
            .opt(
                "SELECT r.report -> 'calls',
                        (SELECT h FROM jsonb_array_elements(r.report -> 'hosts') h
                         WHERE h ->> 'host' = $2 LIMIT 1)
                 FROM reports r WHERE r.deployment = $1",
                &[&id, &host],
            )
            .await
            .map_err(|e| self.db(during, e))?;
        let Some(row) = row else {
            return Ok(Vec::new());
        };
        let Some(h) = row.get::<_, Option<serde_json::Value>>(1) else {
            return Ok(Vec::new());
        };
        let calls: Vec<CallRecord> = serde_json::from_value(
            row.get::<_, Option<serde_json::Value>>(0)
                .unwrap_or_default(),
        )
        .map_err(|e| corrupt("a report's calls", e))?;
        let h: HostReport = serde_json::from_value(h).map_err(|e| corrupt("a report's host", e))?;
        Ok(h.log.iter().map(|e| e.line(&calls)).collect())
    }

    async fn journal_page(
        &self,
        id: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Event)>, Error> {
        let during = "reading the journal";
        let client = self.client(during).await?;
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let skipped: Vec<&str> = NOT_JOURNALED.to_vec();
        let rows = client
            .rows(
                "SELECT seq, event FROM events
                 WHERE deployment = $1 AND seq > $2 AND kind <> ALL($3)
                 ORDER BY seq LIMIT $4",
                &[&id, &after, &skipped, &limit],
            )
            .await
            .map_err(|e| self.db(during, e))?;
        rows.into_iter()
            .map(|r| {
                let seq: i64 = r.get(0);
                let event = serde_json::from_value(r.get(1)).map_err(|e| Error::Corrupt {
                    what: "a journal event",
                    reason: format!("journal event {seq}: {e}"),
                })?;
                Ok((u64::try_from(seq).unwrap_or(0), event))
            })
            .collect()
    }

    pub(crate) async fn interrupted_one(
        &self,
        id: &str,
    ) -> Result<Option<InterruptedDeployment>, Error> {
        let during = "reading an interrupted deployment";
        let client = self.client(during).await?;
        let Some(r) = client
            .opt(
                "SELECT template, version, principal, dry_run, started_ms, last_event_at,
                        rollback, hosts, batches
                 FROM deployments WHERE id = $1",
                &[&id],
            )
            .await
            .map_err(|e| self.db(during, e))?
        else {
            return Ok(None);
        };
        drop(client);
        let f = self.fold(id, during).await?;
        let mut d = InterruptedDeployment::default();
        d.id = id.to_owned();
        d.template = r.get(0);
        d.version = r.get(1);
        d.principal = r.get(2);
        d.dry_run = r.get(3);
        d.started = from_ms(r.get(4));
        d.last_event = trunc_ms(r.get(5));
        d.rollback = r.get(6);
        d.planned_hosts = r
            .get::<_, Option<i64>>(7)
            .and_then(|n| usize::try_from(n).ok());
        d.planned_batches = r
            .get::<_, Option<i64>>(8)
            .and_then(|n| usize::try_from(n).ok());
        d.batch = usize::try_from(f.batch).ok();
        d.stage = f.stage;
        d.live_hosts = f.stages.last().map_or(0, |s| s.hosts as usize);
        d.planned = f.planned.clone();
        d.hosts = f.progress();
        Ok(Some(d))
    }

    /// Up to `n` rows matching `q` from `key` in direction `walk`, in that direction's order: one
    /// walk of the per-template index for each template, merged.
    async fn walk(
        &self,
        q: &HistoryQuery,
        walk: Walk,
        key: Option<&HistoryKey>,
        n: usize,
    ) -> Result<Vec<DeploymentRecord>, Error> {
        if q.templates.is_empty() {
            return Ok(Vec::new());
        }
        let during = "reading a page of the history";
        let (op, order) = match walk {
            Walk::Older => ("<", "DESC"),
            Walk::Newer => (">", "ASC"),
        };
        let outcome = match &q.outcome {
            None => "",
            Some(OutcomeFilter::Running) => "AND d.outcome IS NULL",
            Some(OutcomeFilter::Is(_)) => "AND d.outcome = $3",
        };
        let key_cond = if key.is_some() {
            format!("AND (d.started_ms, d.id COLLATE \"C\") {op} ($6, $7::text COLLATE \"C\")")
        } else {
            String::new()
        };
        let sql = format!(
            "SELECT {RECORD} FROM unnest($1::text[]) AS t(name), LATERAL (
               SELECT d.* FROM deployments d
               WHERE d.template = t.name AND ($2::text IS NULL OR d.principal = $2) {outcome}
                 AND ($4::bigint IS NULL OR d.started_ms >= $4)
                 AND ($5::bigint IS NULL OR d.started_ms < $5) {key_cond}
               ORDER BY d.started_ms {order}, d.id COLLATE \"C\" {order} LIMIT $8) x
             ORDER BY started_ms {order}, id COLLATE \"C\" {order} LIMIT $8"
        );
        let outcome_value: Option<String> = match &q.outcome {
            Some(OutcomeFilter::Is(o)) => Some(o.clone()),
            _ => None,
        };
        let from = q.from.map(to_ms);
        let to = q.to.map(to_ms);
        let key_ms = key.map(|k| k.started_ms);
        let key_id = key.map(|k| k.id.clone());
        let limit = i64::try_from(n).unwrap_or(i64::MAX);
        let client = self.client(during).await?;
        let rows = client
            .rows(
                &sql,
                &[
                    &q.templates,
                    &q.user,
                    &outcome_value,
                    &from,
                    &to,
                    &key_ms,
                    &key_id,
                    &limit,
                ],
            )
            .await
            .map_err(|e| self.db(during, e))?;
        Ok(rows.iter().map(record).collect())
    }

    async fn page(&self, q: &HistoryQuery) -> Result<HistoryPage, Error> {
        let limit = q.limit.max(1);
        let (walk, key) = match &q.page {
            PageAt::Newest => (Walk::Older, None),
            PageAt::Older(k) => (Walk::Older, Some(k)),
            PageAt::Newer(k) => (Walk::Newer, Some(k)),
        };
        let mut rows = self.walk(q, walk, key, limit + 1).await?;
        let more = rows.len() > limit;
        rows.truncate(limit);
        let back = match key {
            None => false,
            Some(k) => {
                let other = if walk == Walk::Older {
                    Walk::Newer
                } else {
                    Walk::Older
                };
                let edge = rows.first().map_or_else(|| k.clone(), HistoryKey::of);
                !self.walk(q, other, Some(&edge), 1).await?.is_empty()
            }
        };
        let (newer, older) = match walk {
            Walk::Older => (back, more),
            Walk::Newer => {
                rows.reverse();
                (more, back)
            }
        };
        let mut page = HistoryPage::default();
        page.rows = rows;
        page.newer = newer;
        page.older = older;
        Ok(page)
    }

    /// Releases and rollback requests: count, successes, total, p50, p95 (one scan).
    async fn summaries(&self, w: &Window) -> Result<(Summary, Summary), Error> {
        let during = "computing the summary";
        let p = WindowParams::of(w);
        let succeeded = DeploymentOutcome::Succeeded.as_str();
        let rolled_back = DeploymentOutcome::RolledBack.as_str();
        let sql = format!(
            "SELECT count(*) FILTER (WHERE NOT rollback),
                    count(*) FILTER (WHERE NOT rollback AND outcome = $5),
                    coalesce(sum(duration_ms) FILTER (WHERE NOT rollback), 0)::bigint,
                    percentile_disc(0.5) WITHIN GROUP (ORDER BY duration_ms)
                        FILTER (WHERE NOT rollback),
                    percentile_disc(0.95) WITHIN GROUP (ORDER BY duration_ms)
                        FILTER (WHERE NOT rollback),
                    count(*) FILTER (WHERE rollback),
                    count(*) FILTER (WHERE rollback AND outcome = $6),
                    coalesce(sum(duration_ms) FILTER (WHERE rollback), 0)::bigint,
                    percentile_disc(0.5) WITHIN GROUP (ORDER BY duration_ms) FILTER (WHERE rollback),
                    percentile_disc(0.95) WITHIN GROUP (ORDER BY duration_ms) FILTER (WHERE rollback)
             FROM deployments WHERE {WINDOW} AND {FINISHED}"
        );
        let client = self.client(during).await?;
        let r = client
            .one(
                &sql,
                &[
                    &p.from,
                    &p.to,
                    &p.template,
                    &p.templates,
                    &succeeded,
                    &rolled_back,
                ],
            )
            .await
            .map_err(|e| self.db(during, e))?;
        let summary = |at: usize| {
            let count = r.get::<_, i64>(at).max(0) as u64;
            let ok = r.get::<_, i64>(at + 1).max(0) as u64;
            let total: i64 = r.get(at + 2);
            let mut s = Summary::default();
            s.count = count;
            s.succeeded = ok;
            s.success_rate = (count > 0).then(|| ok as f64 / count as f64);
            s.mean =
                (count > 0).then(|| Duration::from_micros((total.max(0) as u64 * 1000) / count));
            s.p50 = r.get::<_, Option<i64>>(at + 3).map(millis);
            s.p95 = r.get::<_, Option<i64>>(at + 4).map(millis);
            s
        };
        Ok((summary(0), summary(5)))
    }

    /// Releases by hour of the week at the window's offset (168 buckets, `weekday * 24 + hour`).
    async fn hour_of_week(&self, w: &Window) -> Result<Vec<Rate>, Error> {
        let during = "computing success rates";
        let p = WindowParams::of(w);
        let succeeded = DeploymentOutcome::Succeeded.as_str();
        let offset = offset_ms(w);
        // SQLite's integer arithmetic (division truncating toward zero), on the same numbers
        let sql = format!(
            "SELECT ((((started_ms + $6) / {DAY_MS} + 3) % 7 + 7) % 7) * 24
                      + (((started_ms + $6) / 3600000) % 24 + 24) % 24 AS b,
                    count(*), count(*) FILTER (WHERE outcome = $5)
             FROM deployments WHERE {WINDOW} AND {FINISHED} AND NOT rollback GROUP BY b"
        );
        let client = self.client(during).await?;
        let rows = client
            .rows(
                &sql,
                &[
                    &p.from,
                    &p.to,
                    &p.template,
                    &p.templates,
                    &succeeded,
                    &offset,
                ],
            )
            .await
            .map_err(|e| self.db(during, e))?;
        let mut out = vec![Rate::default(); 168];
        for r in rows {
            let b: i64 = r.get(0);
            if let Some(slot) = usize::try_from(b).ok().and_then(|b| out.get_mut(b)) {
                slot.count = r.get::<_, i64>(1).max(0) as u64;
                slot.succeeded = r.get::<_, i64>(2).max(0) as u64;
            }
        }
        Ok(out)
    }

    async fn host_failures(&self, w: &Window, limit: i64) -> Result<Vec<(String, u64)>, Error> {
        let during = "ranking hosts by failures";
        let p = WindowParams::of(w);
        let sql = format!(
            "SELECT host, count(*) AS n FROM host_failures WHERE NOT dry_run AND {WINDOW}
             GROUP BY host ORDER BY n DESC, host COLLATE \"C\" LIMIT $5"
        );
        let client = self.client(during).await?;
        let rows = client
            .rows(&sql, &[&p.from, &p.to, &p.template, &p.templates, &limit])
            .await
            .map_err(|e| self.db(during, e))?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get::<_, i64>(1).max(0) as u64))
            .collect())
    }

    async fn stage_failures(&self, w: &Window) -> Result<Vec<(Stage, u64)>, Error> {
        let during = "ranking stages by failures";
        let p = WindowParams::of(w);
        let sql = format!(
            "SELECT stage, count(*) FROM host_failures WHERE NOT dry_run AND {WINDOW}
             GROUP BY stage"
        );
        let client = self.client(during).await?;
        let rows = client
            .rows(&sql, &[&p.from, &p.to, &p.template, &p.templates])
            .await
            .map_err(|e| self.db(during, e))?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let name: String = r.get(0);
            let stage =
                stage_named(&name).ok_or_else(|| corrupt("a failed host's stage", &name))?;
            out.push((stage, r.get::<_, i64>(1).max(0) as u64));
        }
        out.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        Ok(out)
    }

    /// Time to recover (see `pushguide_store::Recovery`): per template, the releases that succeeded
    /// or failed in start order; the successes split them into groups, and a group with a failure
    /// is an incident from the end of its first failure to the end of its closing success.
    async fn time_to_recover(&self, w: &Window) -> Result<Recovery, Error> {
        let during = "computing time to recover";
        let p = WindowParams::of(w);
        let succeeded = DeploymentOutcome::Succeeded.as_str();
        let failed = failed_names();
        let sql = format!(
            "WITH r AS (
               SELECT template, started_ms, id, started_ms + duration_ms AS ended,
                      outcome = $5 AS ok
               FROM deployments
               WHERE {WINDOW} AND {FINISHED} AND NOT rollback
                 AND (outcome = $5 OR outcome = ANY($6))),
             g AS (
               SELECT template, started_ms, id, ended, ok,
                      sum(ok::int) OVER (PARTITION BY template
                                         ORDER BY started_ms, id COLLATE \"C\"
                                         ROWS UNBOUNDED PRECEDING) - ok::int AS grp
               FROM r),
             i AS (
               SELECT (array_agg(ended ORDER BY started_ms, id COLLATE \"C\")
                         FILTER (WHERE NOT ok))[1] AS since,
                      max(ended) FILTER (WHERE ok) AS fixed
               FROM g GROUP BY template, grp)
             SELECT count(since),
                    count(since) FILTER (WHERE fixed IS NOT NULL),
                    coalesce(sum(fixed - since) FILTER (WHERE since IS NOT NULL), 0)::bigint,
                    max(fixed - since)
             FROM i"
        );
        let client = self.client(during).await?;
        let r = client
            .one(
                &sql,
                &[
                    &p.from,
                    &p.to,
                    &p.template,
                    &p.templates,
                    &succeeded,
                    &failed,
                ],
            )
            .await
            .map_err(|e| self.db(during, e))?;
        let mut out = Recovery::default();
        out.incidents = r.get::<_, i64>(0).max(0) as u64;
        out.recovered = r.get::<_, i64>(1).max(0) as u64;
        let total: i64 = r.get(2);
        out.mean = (out.recovered > 0).then(|| millis(total / out.recovered as i64));
        out.max = r.get::<_, Option<i64>>(3).map(millis);
        Ok(out)
    }

    async fn all_stats(&self, w: &Window) -> Result<Stats, Error> {
        let (summary, rollbacks) = self.summaries(w).await?;
        let week = self.hour_of_week(w).await?;
        let mut by_hour = vec![Rate::default(); 24];
        let mut by_weekday = vec![Rate::default(); 7];
        for (i, r) in week.iter().enumerate() {
            by_hour[i % 24].count += r.count;
            by_hour[i % 24].succeeded += r.succeeded;
            by_weekday[i / 24].count += r.count;
            by_weekday[i / 24].succeeded += r.succeeded;
        }
        let mut s = Stats::default();
        s.summary = summary;
        s.rollbacks = rollbacks;
        s.by_hour = by_hour;
        s.by_weekday = by_weekday;
        s.hosts = self.host_failures(w, 20).await?;
        s.stages = self.stage_failures(w).await?;
        s.recovery = self.time_to_recover(w).await?;
        Ok(s)
    }

    async fn days(&self, w: &Window) -> Result<Vec<DayStats>, Error> {
        let during = "computing the daily series";
        let p = WindowParams::of(w);
        let succeeded = DeploymentOutcome::Succeeded.as_str();
        let offset = offset_ms(w);
        let sql = format!(
            "SELECT floor((started_ms + $6)::numeric / {DAY_MS})::bigint AS day, count(*),
                    count(*) FILTER (WHERE outcome = $5),
                    percentile_disc(0.5) WITHIN GROUP (ORDER BY duration_ms),
                    percentile_disc(0.95) WITHIN GROUP (ORDER BY duration_ms)
             FROM deployments WHERE {WINDOW} AND {FINISHED} AND NOT rollback
             GROUP BY day ORDER BY day"
        );
        let client = self.client(during).await?;
        let rows = client
            .rows(
                &sql,
                &[
                    &p.from,
                    &p.to,
                    &p.template,
                    &p.templates,
                    &succeeded,
                    &offset,
                ],
            )
            .await
            .map_err(|e| self.db(during, e))?;
        Ok(rows
            .iter()
            .map(|r| {
                let mut d = DayStats::default();
                d.day = from_ms(r.get::<_, i64>(0) * DAY_MS - offset);
                d.count = r.get::<_, i64>(1).max(0) as u64;
                d.succeeded = r.get::<_, i64>(2).max(0) as u64;
                d.p50 = r.get::<_, Option<i64>>(3).map(millis);
                d.p95 = r.get::<_, Option<i64>>(4).map(millis);
                d
            })
            .collect())
    }

    async fn outcome_counts(&self) -> Result<Vec<(String, u64)>, Error> {
        let during = "counting deployments by outcome";
        let client = self.client(during).await?;
        let rows = client
            .rows(
                "SELECT outcome, count(*) FROM deployments WHERE outcome IS NOT NULL
                 GROUP BY outcome ORDER BY outcome COLLATE \"C\"",
                &[],
            )
            .await
            .map_err(|e| self.db(during, e))?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get::<_, i64>(1).max(0) as u64))
            .collect())
    }
}

#[async_trait]
impl RecordStore for PgStore {
    /// Woken by the `NOTIFY` every journal append sends (another instance's too), or after `poll`.
    async fn wait_for_journal(&self, deployment: &str, poll: Duration) {
        self.wait_journal(deployment, poll).await;
    }

    async fn deployment(&self, id: &str) -> Result<Option<DeploymentRecord>, StoreError> {
        Ok(self.record(id).await?)
    }

    async fn last_deployment(
        &self,
        template: &str,
    ) -> Result<Option<DeploymentRecord>, StoreError> {
        Ok(self.newest_release(template).await?)
    }

    async fn host_results(&self, id: &str) -> Result<Vec<HostResult>, StoreError> {
        Ok(self.fold(id, "reading host results").await?.host_results())
    }

    async fn host_stage_results(&self, id: &str) -> Result<Vec<HostStageResult>, StoreError> {
        Ok(self
            .fold(id, "reading host stage results")
            .await?
            .host_stage_results())
    }

    async fn host_log(&self, id: &str, host: &str) -> Result<Vec<String>, StoreError> {
        Ok(self.log_of(id, host).await?)
    }

    async fn host_status(&self, id: &str, host: &str) -> Result<Option<String>, StoreError> {
        let f = self.fold(id, "reading a host result").await?;
        Ok(f.hosts.get(host).map(|h| h.status.clone()))
    }

    async fn calls(&self, id: &str) -> Result<Vec<CallRow>, StoreError> {
        Ok(self.fold(id, "reading calls").await?.calls())
    }

    async fn journal_after(
        &self,
        id: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Event)>, StoreError> {
        Ok(self.journal_page(id, after, limit).await?)
    }

    async fn append_events(&self, events: &[Event]) -> Result<(), StoreError> {
        Ok(PgStore::append_events(self, events).await?)
    }

    async fn interrupted_deployment(
        &self,
        id: &str,
    ) -> Result<Option<InterruptedDeployment>, StoreError> {
        Ok(self.interrupted_one(id).await?)
    }

    async fn recover(&self) -> Result<Vec<InterruptedDeployment>, StoreError> {
        let mut out = Vec::new();
        for id in PgStore::recover(self, None).await? {
            if let Some(d) = self.interrupted_one(&id).await? {
                out.push(d);
            }
        }
        Ok(out)
    }

    async fn history_page(&self, q: &HistoryQuery) -> Result<HistoryPage, StoreError> {
        Ok(self.page(q).await?)
    }

    async fn stats(&self, w: &Window) -> Result<Stats, StoreError> {
        Ok(self.all_stats(w).await?)
    }

    async fn daily(&self, w: &Window) -> Result<Vec<DayStats>, StoreError> {
        Ok(self.days(w).await?)
    }

    async fn by_hour_of_week(&self, w: &Window) -> Result<Vec<Rate>, StoreError> {
        Ok(self.hour_of_week(w).await?)
    }

    async fn deployment_outcome_counts(&self) -> Result<Vec<(String, u64)>, StoreError> {
        Ok(self.outcome_counts().await?)
    }

    async fn fleet(&self, template: &str) -> Result<Vec<HostVersion>, StoreError> {
        Ok(PgStore::fleet(self, template)
            .await?
            .into_iter()
            .map(|h| {
                let mut v = HostVersion::default();
                v.host = h.host;
                v.version = h.version;
                v.healthy = h.healthy;
                v.since = trunc_ms(h.since);
                v.previous = h.previous;
                v.good = h.good;
                v
            })
            .collect())
    }

    async fn minion_states(&self, minions: &[MinionId]) -> Result<Vec<MinionStatus>, StoreError> {
        Ok(self.minion_status(minions).await?)
    }
}
