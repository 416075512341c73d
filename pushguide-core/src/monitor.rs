//! Minion connectivity: a periodic `test.ping` of every minion, its last-seen / up / down state kept in
//! a [`MinionStatusStore`], and events when a minion goes down or comes back.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{broadcast, watch};

use crate::ports::status::{MinionStatusStore, StatusChange};
use crate::ports::transport::Transport;
use crate::vocab::call::{MinionId, Outcome, SaltCall};
use crate::vocab::error::Error;

/// Checks minions through a [`Transport`] (one `test.ping` request for all of them).
#[derive(Clone)]
pub struct Monitor {
    transport: Arc<dyn Transport>,
    store: Arc<dyn MinionStatusStore>,
    timeout: Duration,
    changes: broadcast::Sender<StatusChange>,
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor")
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Stops a running monitor loop when dropped or on [`MonitorHandle::stop`].
#[derive(Debug)]
pub struct MonitorHandle {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl MonitorHandle {
    /// Stops the loop and waits for it.
    pub async fn stop(self) {
        self.stop.send_replace(true);
        let _ = self.task.await;
    }
}

impl Monitor {
    /// A monitor pinging with `timeout` and recording into `store`.
    pub fn new(
        transport: Arc<dyn Transport>,
        store: Arc<dyn MinionStatusStore>,
        timeout: Duration,
    ) -> Self {
        let (changes, _) = broadcast::channel(1024);
        Monitor {
            transport,
            store,
            timeout,
            changes,
        }
    }

    /// State changes as they happen (a lagging receiver misses the oldest ones; the store has them all).
    pub fn changes(&self) -> broadcast::Receiver<StatusChange> {
        self.changes.subscribe()
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn MinionStatusStore> {
        &self.store
    }

    /// Pings `minions` once, records the result and returns the changes. A failed request (salt-api
    /// unreachable) is an error, and no minion is marked down for it.
    pub async fn check_once(&self, minions: &[MinionId]) -> Result<Vec<StatusChange>, Error> {
        if minions.is_empty() {
            return Ok(Vec::new());
        }
        let mut r = self
            .transport
            .call(minions, &SaltCall::read("test.ping").timeout(self.timeout))
            .await
            .map_err(|source| Error::Transport {
                during: "checking minion connectivity",
                source,
            })?;
        let checks: Vec<(MinionId, bool)> = minions
            .iter()
            .map(|m| (m.clone(), matches!(r.take(m), Outcome::Ok { .. })))
            .collect();
        let changes = self.store.record(&checks, SystemTime::now()).await?;
        for c in &changes {
            if c.was_up.is_some() {
                tracing::warn!(minion = %c.minion, up = c.up, "minion connectivity changed");
            }
            let _ = self.changes.send(c.clone());
        }
        Ok(changes)
    }

    /// Checks `minions()` every `interval` until stopped. Errors are logged and the loop goes on.
    pub fn spawn<F>(&self, interval: Duration, minions: F) -> MonitorHandle
    where
        F: Fn() -> Vec<MinionId> + Send + 'static,
    {
        let me = self.clone();
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            loop {
                if let Err(e) = me.check_once(&minions()).await {
                    tracing::warn!(error = %e, "connectivity check failed");
                }
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    _ = stopped.wait_for(|s| *s) => break,
                }
            }
        });
        MonitorHandle { stop, task }
    }
}
