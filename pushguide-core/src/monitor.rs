//! Minion connectivity: a periodic `test.ping` of every minion, its last-seen / up / down state kept in
//! a [`MinionStatusStore`], and events when a minion goes down or comes back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, watch};

use crate::call::{MinionId, Outcome, SaltCall};
use crate::error::Error;
use crate::transport::Transport;

/// What is known about one minion.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MinionStatus {
    /// The minion.
    pub minion: MinionId,
    /// Whether it answered the last check.
    pub up: bool,
    /// When it last answered.
    pub last_seen: Option<SystemTime>,
    /// When it was last checked.
    pub checked: SystemTime,
    /// Since when it has been in its current state.
    pub since: SystemTime,
}

/// A minion changed state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusChange {
    /// The minion.
    pub minion: MinionId,
    /// New state.
    pub up: bool,
    /// The previous state (`None` when first seen).
    pub was_up: Option<bool>,
    /// When.
    pub at: SystemTime,
}

/// Where minion states are kept (in memory here; durable in `pushguide-store`). Async like the other
/// store ports: an implementation that blocks (a database) does so off the async workers.
#[async_trait::async_trait]
pub trait MinionStatusStore: Send + Sync + std::fmt::Debug {
    /// Records a check of `minions` at `at` (`true`: answered) and returns the state changes.
    async fn record(
        &self,
        checks: &[(MinionId, bool)],
        at: SystemTime,
    ) -> Result<Vec<StatusChange>, Error>;
    /// The known states of `minions` (unknown minions are absent).
    async fn status(&self, minions: &[MinionId]) -> Result<Vec<MinionStatus>, Error>;
}

/// Minion states in memory.
#[derive(Debug, Default)]
pub struct MemoryMinionStatus {
    inner: Mutex<HashMap<MinionId, MinionStatus>>,
}

#[async_trait::async_trait]
impl MinionStatusStore for MemoryMinionStatus {
    async fn record(
        &self,
        checks: &[(MinionId, bool)],
        at: SystemTime,
    ) -> Result<Vec<StatusChange>, Error> {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let mut changes = Vec::new();
        for (m, up) in checks {
            match inner.get_mut(m) {
                None => {
                    inner.insert(
                        m.clone(),
                        MinionStatus {
                            minion: m.clone(),
                            up: *up,
                            last_seen: up.then_some(at),
                            checked: at,
                            since: at,
                        },
                    );
                    changes.push(StatusChange {
                        minion: m.clone(),
                        up: *up,
                        was_up: None,
                        at,
                    });
                }
                Some(e) => {
                    if e.up != *up {
                        changes.push(StatusChange {
                            minion: m.clone(),
                            up: *up,
                            was_up: Some(e.up),
                            at,
                        });
                        e.since = at;
                    }
                    e.up = *up;
                    e.checked = at;
                    if *up {
                        e.last_seen = Some(at);
                    }
                }
            }
        }
        Ok(changes)
    }

    async fn status(&self, minions: &[MinionId]) -> Result<Vec<MinionStatus>, Error> {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(minions
            .iter()
            .filter_map(|m| inner.get(m).cloned())
            .collect())
    }
}

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
