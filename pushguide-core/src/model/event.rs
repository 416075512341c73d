//! Deployment events: every state change, timestamped, in order.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::vocab::call::MinionId;
use crate::vocab::outcome::{Decision, DeploymentOutcome};
use crate::vocab::stage::Stage;

/// One state change of a deployment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// When it happened.
    pub at: SystemTime,
    /// The deployment's id.
    pub deployment: Arc<str>,
    /// What happened.
    pub kind: EventKind,
}

/// What happened.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum EventKind {
    /// The deployment was accepted and begins preparing.
    DeploymentStarted {
        /// Template name.
        template: String,
        /// Version being released.
        version: String,
        /// Acting user.
        user: String,
        /// Whether mutating calls are only recorded.
        dry_run: bool,
        /// Whether this is a rollback request ([`crate::Mode::Rollback`]): `version` is then its
        /// target, or `previous` for each host's previous version.
        #[serde(default)]
        rollback: bool,
    },
    /// Preparation ended; the plan is fixed.
    Prepared {
        /// Number of hosts in batches.
        hosts: usize,
        /// Number of batches.
        batches: usize,
        /// Hosts left out by pre-flight or prepare.
        excluded: Vec<MinionId>,
        /// The hosts of each batch, in order (so that recovery can name hosts never reached).
        #[serde(default)]
        plan: Vec<Vec<MinionId>>,
        /// Of `excluded`, the hosts left out by `[preflight] on_down = "exclude"` (not counted as
        /// failures of the deployment).
        #[serde(default)]
        left_out: Vec<MinionId>,
    },
    /// A batch began.
    BatchStarted {
        /// Zero-based batch index.
        batch: usize,
        /// Number of hosts.
        hosts: usize,
        /// The hosts (so a journal can name them if the process dies during the batch).
        minions: Vec<MinionId>,
    },
    /// A stage began for a batch.
    StageStarted {
        /// Batch index (`None` for prepare).
        batch: Option<usize>,
        /// The stage.
        stage: Stage,
        /// Live hosts at its start.
        hosts: usize,
    },
    /// A salt request was sent (or, in a dry run, recorded without sending).
    CallStarted {
        /// Batch index (`None` for prepare).
        batch: Option<usize>,
        /// The stage.
        stage: Stage,
        /// Salt function.
        fun: String,
        /// Number of target hosts.
        targets: usize,
        /// `false` when the call was only recorded (dry run).
        sent: bool,
    },
    /// A salt request ended.
    CallFinished {
        /// Batch index.
        batch: Option<usize>,
        /// The stage.
        stage: Stage,
        /// Salt function.
        fun: String,
        /// Salt job id, if the transport reported one.
        jid: Option<String>,
        /// Hosts that succeeded.
        ok: usize,
        /// Hosts that failed.
        failed: usize,
        /// Elapsed milliseconds.
        millis: u64,
    },
    /// A host failed and was dropped from its batch.
    HostFailed {
        /// The host.
        host: MinionId,
        /// The stage.
        stage: Stage,
        /// The salt call whose answer failed the host, or `None` when the hook failed it itself.
        /// Journals written before this was typed say `"-"`, read as `None`.
        #[serde(default, deserialize_with = "crate::vocab::call::fun_or_none")]
        fun: Option<String>,
        /// Why.
        reason: String,
    },
    /// A host completed every stage of its batch.
    HostSucceeded {
        /// The host.
        host: MinionId,
    },
    /// A stage ended for a batch.
    StageFinished {
        /// Batch index.
        batch: Option<usize>,
        /// The stage.
        stage: Stage,
        /// Hosts still live.
        ok: usize,
        /// Hosts that failed in this stage.
        failed: usize,
    },
    /// A batch ended.
    BatchFinished {
        /// Batch index.
        batch: usize,
        /// Hosts that completed.
        ok: usize,
        /// Hosts that failed.
        failed: usize,
    },
    /// More hosts failed than the budget allows.
    BudgetExceeded {
        /// Failed hosts so far.
        failed: usize,
        /// Allowed failures.
        allowed: usize,
    },
    /// The deployment is paused at a stage and waits for [`crate::DeploymentHandle::decide`].
    DecisionNeeded {
        /// Batch index.
        batch: usize,
        /// The stage that failed.
        stage: Stage,
        /// Hosts that failed in it.
        failed: Vec<MinionId>,
    },
    /// A decision was taken.
    DecisionTaken {
        /// The decision.
        decision: Decision,
    },
    /// Cancel was requested.
    CancelRequested,
    /// Rollback began.
    RollbackStarted {
        /// Hosts to roll back.
        hosts: usize,
    },
    /// A host was rolled back.
    HostRolledBack {
        /// The host.
        host: MinionId,
        /// The version it went back to.
        to: String,
    },
    /// A host could not be rolled back.
    HostRollbackFailed {
        /// The host.
        host: MinionId,
        /// Why.
        reason: String,
    },
    /// Rollback ended.
    RollbackFinished {
        /// Hosts rolled back.
        ok: usize,
        /// Hosts not rolled back.
        failed: usize,
    },
    /// The deployment ended.
    DeploymentFinished {
        /// Its outcome.
        outcome: DeploymentOutcome,
    },
}

/// Fans events out to subscribers and keeps them all for the report and late subscribers.
///
/// With a journal attached ([`EventBus::subscribe_journal`]) the bus is *gated*: the journal gets each
/// event at once, every other subscriber only once the journal has made it durable
/// ([`EventBus::release`]). So whatever a user saw (say "batch 1/2 done") is in the journal, even if
/// the process is killed right after.
#[derive(Debug)]
pub(crate) struct EventBus {
    deployment: Arc<str>,
    inner: Mutex<BusInner>,
}

#[derive(Debug, Default)]
struct BusInner {
    log: Vec<Event>,
    subscribers: Vec<mpsc::UnboundedSender<Event>>,
    journal: Option<mpsc::UnboundedSender<Event>>,
    /// Events delivered to subscribers (all of them when not gated).
    released: usize,
    gated: bool,
    closed: bool,
}

impl BusInner {
    fn deliver(&mut self, upto: usize) {
        let upto = upto.min(self.log.len());
        if upto <= self.released {
            return;
        }
        let (log, subscribers) = (&self.log, &mut self.subscribers);
        for event in &log[self.released..upto] {
            subscribers.retain(|s| s.send(event.clone()).is_ok());
        }
        self.released = upto;
    }
}

impl EventBus {
    pub(crate) fn new(deployment: Arc<str>) -> Self {
        EventBus {
            deployment,
            inner: Mutex::new(BusInner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BusInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn emit(&self, kind: EventKind) {
        let event = Event {
            at: SystemTime::now(),
            deployment: self.deployment.clone(),
            kind,
        };
        tracing::debug!(target: "pushguide::event", event = ?event.kind);
        let mut inner = self.lock();
        if let Some(j) = &inner.journal {
            if j.send(event.clone()).is_err() {
                inner.journal = None;
            }
        }
        inner.log.push(event);
        if !inner.gated {
            let n = inner.log.len();
            inner.deliver(n);
        }
    }

    /// A stream that first replays every past event, then follows live ones until the end.
    pub(crate) fn subscribe(&self) -> EventStream {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut inner = self.lock();
        for e in &inner.log[..inner.released] {
            let _ = tx.send(e.clone());
        }
        if !inner.closed {
            inner.subscribers.push(tx);
        }
        EventStream { rx }
    }

    /// The journal's stream: every event at once; other subscribers wait for [`EventBus::release`].
    pub(crate) fn subscribe_journal(&self) -> EventStream {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut inner = self.lock();
        for e in &inner.log {
            let _ = tx.send(e.clone());
        }
        if !inner.closed {
            inner.journal = Some(tx);
            inner.gated = true;
        }
        EventStream { rx }
    }

    /// The journal holds the first `n` events: subscribers may see them.
    pub(crate) fn release(&self, n: usize) {
        self.lock().deliver(n);
    }

    /// The journal stopped: subscribers see everything from now on.
    pub(crate) fn ungate(&self) {
        let mut inner = self.lock();
        inner.gated = false;
        let n = inner.log.len();
        inner.deliver(n);
    }

    /// How many events were emitted so far.
    pub(crate) fn len(&self) -> usize {
        self.lock().log.len()
    }

    /// Every event so far.
    pub(crate) fn snapshot(&self) -> Vec<Event> {
        self.lock().log.clone()
    }

    /// Ends every stream (after delivering what is left) and returns every event.
    pub(crate) fn close(&self) -> Vec<Event> {
        let mut inner = self.lock();
        let n = inner.log.len();
        inner.deliver(n);
        inner.closed = true;
        inner.subscribers.clear();
        inner.journal = None;
        inner.log.clone()
    }
}

/// A deployment's events: every past event first, then live ones; ends when the deployment ends.
#[derive(Debug)]
pub struct EventStream {
    rx: mpsc::UnboundedReceiver<Event>,
}

impl EventStream {
    /// The next event, or `None` once the deployment has finished and every event was read.
    pub async fn next(&mut self) -> Option<Event> {
        self.rx.recv().await
    }

    /// The next event if one is already waiting.
    pub fn try_next(&mut self) -> Option<Event> {
        self.rx.try_recv().ok()
    }
}
