//! One run of a deployment: its task, the journal barrier and writer, what is recorded in the fleet
//! state, and what happens when it ends or crashes.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Instant, SystemTime};

use tokio::sync::watch;

use super::handle::Control;
use super::request::{Mode, Request};
use super::{count, Engine};
use crate::hook::deployer::Deployer;
use crate::hook::journal::RunShared;
use crate::model::event::{EventBus, EventKind};
use crate::model::report::{HostReport, HostStatus, Report};
use crate::ports::fleet::HostChange;
use crate::ports::lease::Lease;
use crate::vocab::call::MinionId;
use crate::vocab::error::Error;
use crate::vocab::outcome::DeploymentOutcome;

pub(super) struct Run {
    pub(super) engine: Engine,
    pub(super) shared: RunShared,
    pub(super) control: Arc<Control>,
    pub(super) deployer: Arc<dyn Deployer>,
    pub(super) req: Request,
    pub(super) id: Arc<str>,
    /// The template's lease (none for dry runs).
    pub(super) lease: Option<Lease>,
    /// How far the journal writer got (none without a history store).
    pub(super) journal_progress: Option<watch::Receiver<Written>>,
    /// Hosts being changed right now whose result is not recorded yet (a batch, a restore, a rollback
    /// batch): what a panic leaves in an unknown state.
    pub(super) under_way: Mutex<Vec<MinionId>>,
}

/// The journal writer's progress: events appended so far, or why it stopped.
#[derive(Clone, Debug)]
pub(super) enum Written {
    Events(usize),
    Failed(String),
}

/// The task appending a deployment's events to the history store.
pub(super) struct JournalWriter {
    pub(super) progress: watch::Receiver<Written>,
    pub(super) task: tokio::task::JoinHandle<Result<(), String>>,
}

impl Run {
    pub(super) fn empty_report(&self, started: SystemTime) -> Report {
        let t = &self.req.template;
        Report {
            id: self.id.to_string(),
            template: t.name.clone(),
            version: self.req.version.clone(),
            user: self.req.principal.user.clone(),
            dry_run: self.req.dry_run,
            outcome: DeploymentOutcome::Failed,
            reason: None,
            started,
            duration: Default::default(),
            batches: Vec::new(),
            hosts: Vec::new(),
            calls: Vec::new(),
            events: Vec::new(),
            history_error: None,
        }
    }

    pub(super) async fn execute(&self) -> Report {
        let started = SystemTime::now();
        let clock = Instant::now();
        let t = self.req.template.clone();
        self.shared.emit(EventKind::DeploymentStarted {
            template: t.name.clone(),
            version: self.req.version.clone(),
            user: self.req.principal.user.clone(),
            dry_run: self.req.dry_run,
            rollback: matches!(self.req.mode, Mode::Rollback { .. }),
        });
        let mut report = self.empty_report(started);
        match self
            .engine
            .prepare(&self.shared, &*self.deployer, &self.req, self.id.clone())
            .await
        {
            Err(e) => {
                tracing::warn!(error = %e, "preparation failed");
                report.reason = Some(e.to_string());
            }
            Ok(prepared) => {
                self.shared.emit(EventKind::Prepared {
                    hosts: prepared.batches.iter().map(Vec::len).sum(),
                    batches: prepared.batches.len(),
                    excluded: prepared.excluded.iter().map(|(h, _)| h.clone()).collect(),
                    plan: prepared.batches.clone(),
                    left_out: prepared.left_out.clone(),
                });
                report.batches = prepared.batches.clone();
                let (outcome, reason, journal) = self.run_batches(prepared).await;
                report.outcome = outcome;
                report.reason = reason;
                report.calls = journal.calls;
                report.hosts = journal
                    .hosts
                    .into_iter()
                    .map(|h| HostReport {
                        host: h.host,
                        batch: h.batch,
                        status: h.status,
                        failure: h.failure,
                        rollback_failure: h.rollback_failure,
                        rolled_back_to: h.rolled_back_to,
                        log: h.log,
                    })
                    .collect();
            }
        }
        report.duration = clock.elapsed();
        report
    }

    /// The report of a run that panicked: failed, with the panic as its reason; hosts of the batch
    /// under way are recorded as in an unknown state (the fleet state says so too), hosts of finished
    /// batches as their events say.
    pub(super) async fn crashed(&self, e: tokio::task::JoinError, started: SystemTime) -> Report {
        let why = if e.is_panic() {
            let payload = e.into_panic();
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".to_owned());
            format!("internal error: the deployment task panicked: {msg}")
        } else {
            format!("internal error: the deployment task ended: {e}")
        };
        tracing::error!(reason = %why, "deployment ended abnormally");
        let mut report = self.empty_report(started);
        report.duration = started.elapsed().unwrap_or_default();
        let events = self.control.bus.snapshot();
        let mut hosts: Vec<HostReport> = Vec::new();
        let under_way = std::mem::take(
            &mut *self
                .under_way
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for ev in &events {
            match &ev.kind {
                EventKind::BatchStarted { batch, minions, .. } => {
                    for m in minions {
                        hosts.push(HostReport {
                            host: m.clone(),
                            batch: Some(*batch),
                            status: HostStatus::Interrupted,
                            failure: None,
                            rollback_failure: None,
                            rolled_back_to: None,
                            log: Vec::new(),
                        });
                    }
                }
                EventKind::HostSucceeded { host } => {
                    if let Some(h) = hosts.iter_mut().find(|h| h.host == *host) {
                        h.status = HostStatus::Succeeded;
                    }
                }
                EventKind::HostFailed { host, .. } => {
                    if let Some(h) = hosts.iter_mut().find(|h| h.host == *host) {
                        h.status = HostStatus::Failed;
                    }
                }
                _ => {}
            }
        }
        let mut reason = why;
        if !under_way.is_empty() && !self.req.dry_run {
            reason.push_str(&format!(
                "; {} being changed left in an unknown state",
                count(under_way.len(), "host")
            ));
            if let Err(e) = self
                .record(&under_way, &HostChange::Failed { runs: None })
                .await
            {
                reason.push_str(&format!(" (not recorded: {e})"));
            }
        }
        report.reason = Some(reason);
        report.hosts = hosts;
        report
    }

    /// Ends a deployment: announces the outcome, waits for the journal to take every event, records
    /// the report, and gives the lease back.
    pub(super) async fn finish(
        &self,
        mut report: Report,
        journal: Option<JournalWriter>,
    ) -> Report {
        self.shared.emit(EventKind::DeploymentFinished {
            outcome: report.outcome,
        });
        tracing::info!(outcome = ?report.outcome, "deployment finished");
        // the journal takes the last events before anyone is told the deployment ended
        if let Err(e) = self.journal_barrier().await {
            tracing::error!(error = %e, "the journal did not take the deployment's last events");
        }
        report.events = self.control.bus.close();
        if let Some(journal) = journal {
            let written = journal
                .task
                .await
                .unwrap_or_else(|e| Err(format!("history writer ended: {e}")));
            let finished = match (&written, &self.engine.inner.history) {
                (Ok(()), Some(store)) => store.finish(&report).await.map_err(|e| e.to_string()),
                _ => Ok(()),
            };
            if let Err(e) = written.and(finished) {
                tracing::error!(error = %e, "deployment not fully recorded in history");
                report.history_error = Some(e);
            }
        }
        if let Some(lease) = &self.lease {
            if let Err(e) = self.engine.inner.leases.release(lease).await {
                tracing::warn!(error = %e, "cannot give the lease back; it expires on its own");
            }
        }
        report
    }

    pub(super) fn set_under_way(&self, hosts: &[MinionId]) {
        let mut u = self
            .under_way
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        u.clear();
        u.extend_from_slice(hosts);
    }

    /// Records `change` for `hosts` in the fleet state, durably and fenced by the lease (nothing in dry
    /// runs).
    pub(super) async fn record(
        &self,
        hosts: &[MinionId],
        change: &HostChange,
    ) -> Result<(), Error> {
        if self.req.dry_run || hosts.is_empty() {
            return Ok(());
        }
        let Some(lease) = &self.lease else {
            return Ok(());
        };
        self.engine.inner.fleet.record(lease, hosts, change).await
    }

    /// Waits until the journal holds every event emitted so far (a batch's results are durable before
    /// the next batch touches a host).
    pub(super) async fn journal_barrier(&self) -> Result<(), String> {
        let Some(progress) = &self.journal_progress else {
            return Ok(());
        };
        let emitted = self.control.bus.len();
        let mut progress = progress.clone();
        let seen = progress
            .wait_for(|w| {
                matches!(w, Written::Failed(_)) || matches!(w, Written::Events(n) if *n >= emitted)
            })
            .await
            .map(|w| w.clone());
        match seen {
            Ok(Written::Events(_)) => Ok(()),
            Ok(Written::Failed(e)) => Err(e),
            Err(_) => Err("the history writer stopped".to_owned()),
        }
    }

    /// Asks the lease manager whether this deployment still holds its template's lease (dry runs
    /// hold none).
    pub(super) async fn check_lease(&self) -> Result<(), Error> {
        let Some(lease) = &self.lease else {
            return Ok(());
        };
        let r = self.engine.inner.leases.check(lease).await;
        if let Err(e) = &r {
            tracing::error!(error = %e, "lease lost: this deployment stops touching hosts");
        }
        r
    }
}

/// Appends a deployment's events to the history store in batches as they arrive, until the stream
/// ends, telling `progress` how many are durable. Stops at the first error (later events are not
/// appended after a gap).
pub(super) async fn write_history(
    store: Arc<dyn crate::ports::history::HistoryStore>,
    bus: Arc<EventBus>,
    progress: watch::Sender<Written>,
) -> Result<(), String> {
    let mut events = bus.subscribe_journal();
    let mut written = 0usize;
    while let Some(first) = events.next().await {
        let mut batch = vec![first];
        while let Some(e) = events.try_next() {
            batch.push(e);
            if batch.len() >= 1024 {
                break;
            }
        }
        if let Err(e) = store.append(&batch).await {
            let e = e.to_string();
            progress.send_replace(Written::Failed(e.clone()));
            bus.ungate();
            return Err(e);
        }
        written += batch.len();
        bus.release(written);
        progress.send_replace(Written::Events(written));
    }
    Ok(())
}
