//! What one run records as it goes ([`Journal`]: each host's status, failure and log, every call) and
//! what every stage context of the run shares ([`RunShared`]: the transport, the event bus, the cancel
//! signal). Written by stage contexts, read by the engine.

use std::sync::Arc;

use tokio::sync::watch;

use crate::model::event::{EventBus, EventKind};
use crate::model::report::{HostFailure, HostStatus, LogEntry};
use crate::ports::transport::Transport;
use crate::vocab::call::MinionId;
use crate::vocab::stage::Stage;

/// Per-host state during a run.
#[derive(Debug)]
pub(crate) struct HostRecord {
    pub(crate) host: MinionId,
    pub(crate) batch: Option<usize>,
    pub(crate) status: HostStatus,
    pub(crate) failure: Option<HostFailure>,
    pub(crate) rollback_failure: Option<HostFailure>,
    pub(crate) rolled_back_to: Option<String>,
    pub(crate) log: Vec<LogEntry>,
}

/// Everything recorded during a run: hosts (indexed) and calls.
#[derive(Debug, Default)]
pub(crate) struct Journal {
    pub(crate) hosts: Vec<HostRecord>,
    pub(crate) index: crate::vocab::call::IdMap<usize>,
    pub(crate) calls: Vec<crate::model::report::CallRecord>,
    /// Hosts whose status is `Failed`, kept in step by `set_status` and `record_failure`.
    failed: usize,
}

impl Journal {
    pub(crate) fn new(hosts: &[MinionId]) -> Self {
        Journal {
            hosts: hosts
                .iter()
                .map(|h| HostRecord {
                    host: h.clone(),
                    batch: None,
                    status: HostStatus::Pending,
                    failure: None,
                    rollback_failure: None,
                    rolled_back_to: None,
                    log: Vec::new(),
                })
                .collect(),
            index: hosts
                .iter()
                .enumerate()
                .map(|(i, h)| (h.clone(), i))
                .collect(),
            calls: Vec::new(),
            failed: 0,
        }
    }

    pub(crate) fn get(&self, host: &MinionId) -> Option<&HostRecord> {
        let i = *self.index.get(host)?;
        Some(&self.hosts[i])
    }

    pub(crate) fn get_mut(&mut self, host: &MinionId) -> Option<&mut HostRecord> {
        let i = *self.index.get(host)?;
        Some(&mut self.hosts[i])
    }

    pub(crate) fn record_failure(
        &mut self,
        host: &MinionId,
        stage: Stage,
        batch: Option<usize>,
        fun: Option<&str>,
        reason: &str,
    ) {
        let Some(&i) = self.index.get(host) else {
            return;
        };
        let failure = HostFailure {
            stage,
            batch,
            fun: fun.map(str::to_owned),
            reason: reason.to_owned(),
        };
        if stage == Stage::Rollback {
            self.hosts[i].rollback_failure = Some(failure);
        } else {
            self.set_status_at(i, HostStatus::Failed);
            self.hosts[i].failure = Some(failure);
        }
    }

    pub(crate) fn set_status_at(&mut self, i: usize, status: HostStatus) {
        let was = std::mem::replace(&mut self.hosts[i].status, status);
        match (was == HostStatus::Failed, status == HostStatus::Failed) {
            (false, true) => self.failed += 1,
            (true, false) => self.failed -= 1,
            _ => {}
        }
    }

    pub(crate) fn set_status(&mut self, hosts: &[MinionId], status: HostStatus) {
        for h in hosts {
            if let Some(&i) = self.index.get(h) {
                self.set_status_at(i, status);
            }
        }
    }

    pub(crate) fn count_failed(&self) -> usize {
        self.failed
    }
}

/// What every context of one run shares.
pub(crate) struct RunShared {
    pub(crate) transport: Arc<dyn Transport>,
    pub(crate) bus: Option<Arc<EventBus>>,
    pub(crate) planning: bool,
    /// Whether queued steps are sent as salt jobs of steps (`pushguide.steps`) in real runs.
    pub(crate) step_jobs: bool,
    pub(crate) cancel: watch::Receiver<bool>,
}

impl RunShared {
    pub(crate) fn emit(&self, kind: EventKind) {
        if let Some(bus) = &self.bus {
            bus.emit(kind);
        }
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        *self.cancel.borrow()
    }
}
