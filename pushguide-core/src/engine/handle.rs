//! A running deployment as its caller holds it: events, cancel, decisions, the report at the end.

use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{oneshot, watch};

use crate::model::event::{EventBus, EventKind, EventStream};
use crate::model::report::Report;
use crate::vocab::error::Error;
use crate::vocab::outcome::Decision;

/// Shared between a running deployment and its handle.
#[derive(Debug)]
pub(super) struct Control {
    pub(super) bus: Arc<EventBus>,
    pub(super) cancel: watch::Sender<bool>,
    pub(super) pending: Mutex<Option<oneshot::Sender<Decision>>>,
}

/// A running deployment.
#[derive(Debug)]
pub struct DeploymentHandle {
    pub(super) id: Arc<str>,
    pub(super) control: Arc<Control>,
    pub(super) task: tokio::task::JoinHandle<Report>,
}

impl DeploymentHandle {
    /// The deployment's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Every event so far, then live events until the deployment ends. Each call gives an independent
    /// stream; no event is lost however late it is called.
    pub fn events(&self) -> EventStream {
        self.control.bus.subscribe()
    }

    /// Asks the deployment to stop: the running salt call finishes, no further call or batch starts,
    /// then the template's rollback policy applies to every touched host.
    pub fn cancel(&self) {
        if !*self.control.cancel.borrow() {
            self.control.bus.emit(EventKind::CancelRequested);
            self.control.cancel.send_replace(true);
        }
    }

    /// Answers a [`EventKind::DecisionNeeded`] pause.
    pub fn decide(&self, decision: Decision) -> Result<(), Error> {
        let tx = self
            .control
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .ok_or_else(|| Error::NoDecisionPending(self.id.to_string()))?;
        tx.send(decision)
            .map_err(|_| Error::Finished(self.id.to_string()))
    }

    /// Whether the deployment has ended.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Waits for the end and returns the report.
    pub async fn wait(self) -> Result<Report, Error> {
        self.task
            .await
            .map_err(|e| Error::Lost(self.id.to_string(), e.to_string()))
    }
}
