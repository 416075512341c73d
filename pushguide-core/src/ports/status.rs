//! The minion status port: where the connectivity [`crate::Monitor`] keeps what it learned.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::vocab::call::MinionId;
use crate::vocab::error::Error;

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
