//! Which version each host runs: the source of rollback targets.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use crate::call::MinionId;

/// What is recorded about one host of one template.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostHistory {
    /// The version it runs now.
    pub current: Option<String>,
    /// The last version that deployed successfully before `current`.
    pub previous: Option<String>,
}

/// Recorded fleet state per template and host. The engine reads it to compute rollback targets and
/// writes it as hosts finish deploying or rolling back (never in dry runs).
pub trait FleetState: Send + Sync + std::fmt::Debug {
    /// History of `hosts`; hosts never deployed are absent.
    fn versions(&self, template: &str, hosts: &[MinionId]) -> HashMap<MinionId, HostHistory>;
    /// `hosts` now run `version` (after a successful deploy or rollback).
    fn record(&self, template: &str, hosts: &[MinionId], version: &str);
    /// Makes every change recorded so far durable, or says why it could not (an implementation that
    /// writes in the background keeps failed changes and reports here). The engine calls it at the
    /// end of each deployment and puts an error in [`crate::Report::history_error`]. The default
    /// (for implementations that write in `record`) answers `Ok`.
    fn flush(&self) -> Result<(), crate::Error> {
        Ok(())
    }
    /// Whether recorded changes may still await [`FleetState::flush`]; the engine skips the flush
    /// (and the blocking-pool trip it takes) when not. The default says yes.
    fn pending(&self) -> bool {
        true
    }
}

/// Fleet state kept in memory (lost with the process).
#[derive(Debug, Default)]
pub struct MemoryFleetState {
    // template -> host -> versions that became current, oldest first
    inner: Mutex<HashMap<String, HashMap<MinionId, Vec<String>>>>,
}

impl FleetState for MemoryFleetState {
    fn versions(&self, template: &str, hosts: &[MinionId]) -> HashMap<MinionId, HostHistory> {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(t) = inner.get(template) else {
            return HashMap::new();
        };
        hosts
            .iter()
            .filter_map(|h| {
                let seq = t.get(h)?;
                let current = seq.last().cloned();
                let previous = seq
                    .iter()
                    .rev()
                    .find(|v| Some(*v) != current.as_ref())
                    .cloned();
                Some((h.clone(), HostHistory { current, previous }))
            })
            .collect()
    }

    fn record(&self, template: &str, hosts: &[MinionId], version: &str) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let t = inner.entry(template.to_owned()).or_default();
        for h in hosts {
            let seq = t.entry(h.clone()).or_default();
            if seq.last().map(String::as_str) != Some(version) {
                seq.push(version.to_owned());
            }
            // Keep the record bounded: the newest 32 versions are plenty for rollback targets.
            if seq.len() > 32 {
                seq.remove(0);
            }
        }
    }

    /// Written in `record`: nothing ever awaits a flush.
    fn pending(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previous_is_last_distinct_version() {
        let s = MemoryFleetState::default();
        let h = MinionId::new("web-01").unwrap();
        assert!(s.versions("t", std::slice::from_ref(&h)).is_empty());
        s.record("t", std::slice::from_ref(&h), "1");
        s.record("t", std::slice::from_ref(&h), "2");
        s.record("t", std::slice::from_ref(&h), "2");
        let v = &s.versions("t", std::slice::from_ref(&h))[&h];
        assert_eq!(v.current.as_deref(), Some("2"));
        assert_eq!(v.previous.as_deref(), Some("1"));
    }
}
