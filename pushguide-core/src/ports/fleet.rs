//! Which version each host runs: the source of rollback targets.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::ports::lease::Lease;
use crate::vocab::call::MinionId;
use crate::vocab::error::Error;

/// What is recorded about one host of one template.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HostHistory {
    /// The version it runs now, when known (`None`: never deployed, or left in an unknown state).
    pub current: Option<String>,
    /// Whether `current` runs as released (`false`: a release failed on the host, or its state is
    /// unknown).
    pub healthy: bool,
    /// The rollback target: the last version that ran successfully on the host before `current`.
    /// A version that failed on the host is never its target, and a version rolled back from is not
    /// either.
    pub previous: Option<String>,
}

/// The versions one host ran successfully, oldest first, with what it runs now.
///
/// The rules every [`FleetState`] follows (implemented once here, so that stores agree):
/// - a successful release of `v` makes `v` current and pushes it on the good list;
/// - a failed release leaves the good list alone and records what the host runs now (or unknown);
/// - a successful rollback to `v` drops every good version newer than the last `v` (or, when `v` was
///   never recorded, the version rolled back from) and makes `v` current: rolling back from v3 to v2
///   makes v1, not v3, the next target.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct VersionLog {
    /// What the host runs now, when known.
    pub current: Option<String>,
    /// Whether `current` runs as released.
    pub healthy: bool,
    /// Versions that ran successfully, oldest first (the newest [`VersionLog::KEEP`]).
    pub good: Vec<String>,
}

impl VersionLog {
    /// How many good versions are kept per host.
    pub const KEEP: usize = 32;

    /// Applies one change.
    pub fn apply(&mut self, change: &HostChange) {
        match change {
            HostChange::Deployed { version } => {
                if self.good.last() != Some(version) {
                    self.good.push(version.clone());
                }
                if self.current.as_ref() != Some(version) {
                    self.current = Some(version.clone());
                }
                self.healthy = true;
            }
            HostChange::Failed { runs } => {
                self.current = runs.clone();
                self.healthy = false;
            }
            HostChange::RolledBack { to } => {
                match self.good.iter().rposition(|v| v == to) {
                    Some(i) => self.good.truncate(i + 1),
                    None => {
                        if self.healthy
                            && self.current.is_some()
                            && self.good.last() == self.current.as_ref()
                        {
                            self.good.pop();
                        }
                        self.good.push(to.clone());
                    }
                }
                self.current = Some(to.clone());
                self.healthy = true;
            }
        }
        if self.good.len() > Self::KEEP {
            let extra = self.good.len() - Self::KEEP;
            self.good.drain(..extra);
        }
    }

    /// The host's history as the engine reads it.
    pub fn history(&self) -> HostHistory {
        let previous = if self.healthy
            && self.current.is_some()
            && self.good.last() == self.current.as_ref()
        {
            self.good.iter().rev().nth(1).cloned()
        } else {
            self.good.last().cloned()
        };
        HostHistory {
            current: self.current.clone(),
            healthy: self.healthy,
            previous,
        }
    }
}

/// A change of what one set of hosts runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum HostChange {
    /// The release of `version` succeeded on the hosts.
    Deployed {
        /// The version.
        version: String,
    },
    /// A release (or rollback) failed on the hosts; they run `runs` now (`None`: unknown).
    Failed {
        /// What the hosts run now, when known.
        runs: Option<String>,
    },
    /// A rollback to `to` succeeded on the hosts.
    RolledBack {
        /// The version they run again.
        to: String,
    },
}

/// Recorded fleet state per template and host. The engine reads it to compute rollback targets and
/// writes it after every batch, before the next batch touches a host (never in dry runs).
///
/// Writes are fenced: [`FleetState::record`] carries the deployment's [`Lease`], and a store shared by
/// several processes refuses it with [`Error::Fenced`] when the lease's token is no longer the
/// template's current one. A write returns once the change is durable.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use pushguide_core::{FleetState, HostChange, Lease, MemoryFleetState, MinionId};
///
/// let fleet = MemoryFleetState::default();
/// let lease = Lease::new("shop", "shop-1", 1);
/// let web = [MinionId::new("web-01").unwrap()];
/// for v in ["1.0", "2.0"] {
///     fleet.record(&lease, &web, &HostChange::Deployed { version: v.into() }).await.unwrap();
/// }
/// // 3.0 failed on the host after switching; it was rolled back to 2.0
/// fleet.record(&lease, &web, &HostChange::Failed { runs: Some("3.0".into()) }).await.unwrap();
/// fleet.record(&lease, &web, &HostChange::RolledBack { to: "2.0".into() }).await.unwrap();
/// let h = &fleet.versions("shop", &web).await.unwrap()[&web[0]];
/// assert_eq!(h.current.as_deref(), Some("2.0"));
/// assert_eq!(h.previous.as_deref(), Some("1.0")); // never the failed 3.0
/// # });
/// ```
#[async_trait]
pub trait FleetState: Send + Sync + std::fmt::Debug {
    /// History of `hosts`; hosts never recorded are absent.
    async fn versions(
        &self,
        template: &str,
        hosts: &[MinionId],
    ) -> Result<HashMap<MinionId, HostHistory>, Error>;
    /// Records `change` for `hosts` of the lease's template, durably, or refuses a stale lease.
    async fn record(
        &self,
        lease: &Lease,
        hosts: &[MinionId],
        change: &HostChange,
    ) -> Result<(), Error>;
}

/// Fleet state kept in memory (lost with the process). It does not fence (one process).
#[derive(Debug, Default)]
pub struct MemoryFleetState {
    inner: Mutex<HashMap<String, HashMap<MinionId, VersionLog>>>,
}

impl MemoryFleetState {
    /// Records `change` without a lease (to seed state in tests and examples).
    pub fn seed(&self, template: &str, hosts: &[MinionId], change: &HostChange) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let t = inner.entry(template.to_owned()).or_default();
        for h in hosts {
            t.entry(h.clone()).or_default().apply(change);
        }
    }
}

#[async_trait]
impl FleetState for MemoryFleetState {
    async fn versions(
        &self,
        template: &str,
        hosts: &[MinionId],
    ) -> Result<HashMap<MinionId, HostHistory>, Error> {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(t) = inner.get(template) else {
            return Ok(HashMap::new());
        };
        Ok(hosts
            .iter()
            .filter_map(|h| Some((h.clone(), t.get(h)?.history())))
            .collect())
    }

    async fn record(
        &self,
        lease: &Lease,
        hosts: &[MinionId],
        change: &HostChange,
    ) -> Result<(), Error> {
        self.seed(&lease.template, hosts, change);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn deployed(v: &str) -> HostChange {
        HostChange::Deployed { version: v.into() }
    }

    fn rolled_back(v: &str) -> HostChange {
        HostChange::RolledBack { to: v.into() }
    }

    fn log(changes: &[HostChange]) -> HostHistory {
        let mut l = VersionLog::default();
        for c in changes {
            l.apply(c);
        }
        l.history()
    }

    #[test]
    fn previous_is_the_last_good_version_before_current() {
        let h = log(&[deployed("1"), deployed("2"), deployed("2")]);
        assert_eq!(h.current.as_deref(), Some("2"));
        assert_eq!(h.previous.as_deref(), Some("1"));
        assert!(h.healthy);
    }

    #[test]
    fn a_failed_release_never_becomes_a_target() {
        // v3 succeeded on the host, the release failed elsewhere, everything rolled back to v2
        let h = log(&[
            deployed("1"),
            deployed("2"),
            deployed("3"),
            rolled_back("2"),
        ]);
        assert_eq!(h.current.as_deref(), Some("2"));
        assert_eq!(h.previous.as_deref(), Some("1"));
        // v3 failed on the host itself and was restored to v2
        let failed = HostChange::Failed {
            runs: Some("3".into()),
        };
        let h = log(&[
            deployed("1"),
            deployed("2"),
            failed.clone(),
            rolled_back("2"),
        ]);
        assert_eq!(h.previous.as_deref(), Some("1"));
        // v3 failed and the host was left: it runs v3, unhealthy, target v2
        let h = log(&[deployed("1"), deployed("2"), failed]);
        assert_eq!(h.current.as_deref(), Some("3"));
        assert!(!h.healthy);
        assert_eq!(h.previous.as_deref(), Some("2"));
        // then rolled back to v2: next target v1
        let h = log(&[
            deployed("1"),
            deployed("2"),
            HostChange::Failed { runs: None },
            rolled_back("2"),
            rolled_back("1"),
        ]);
        assert_eq!(h.current.as_deref(), Some("1"));
        assert_eq!(h.previous, None);
    }

    #[test]
    fn rollback_to_an_unrecorded_version_replaces_the_current_one() {
        let h = log(&[
            deployed("1"),
            deployed("2"),
            deployed("3"),
            rolled_back("0"),
        ]);
        assert_eq!(h.current.as_deref(), Some("0"));
        assert_eq!(h.previous.as_deref(), Some("2"));
    }

    #[test]
    fn the_good_list_is_bounded() {
        let mut l = VersionLog::default();
        for i in 0..100 {
            l.apply(&deployed(&i.to_string()));
        }
        assert_eq!(l.good.len(), VersionLog::KEEP);
        assert_eq!(l.history().previous.as_deref(), Some("98"));
    }
}
