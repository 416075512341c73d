//! Which version each host runs, durable across processes.

use std::collections::{HashMap, HashSet};
use std::time::SystemTime;

use pushguide_core::{FleetState, HostHistory, MinionId};
use rusqlite::{params, TransactionBehavior};

use crate::error::Error;
use crate::store::{from_ms, now_ms, SqliteStore};

/// One host's recorded versions for a template.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HostVersion {
    /// The host.
    pub host: String,
    /// The version it runs now.
    pub version: String,
    /// Since when (the deployment or rollback that put it there).
    pub since: SystemTime,
    /// The last version that deployed successfully before `version`: the rollback target.
    pub previous: Option<String>,
    /// Since when `previous` had been running.
    pub previous_since: Option<SystemTime>,
}

impl SqliteStore {
    /// Every host recorded for `template`, sorted by host.
    pub fn fleet(&self, template: &str) -> Result<Vec<HostVersion>, Error> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT host, version, since_ms, previous, previous_since_ms FROM fleet
                 WHERE template = ?1 ORDER BY host",
            )
            .map_err(|e| self.err("reading fleet state", e))?;
        let rows = stmt
            .query_map([template], |r| {
                Ok(HostVersion {
                    host: r.get(0)?,
                    version: r.get(1)?,
                    since: from_ms(r.get(2)?),
                    previous: r.get(3)?,
                    previous_since: r.get::<_, Option<i64>>(4)?.map(from_ms),
                })
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(|e| self.err("reading fleet state", e))?;
        Ok(rows)
    }

    /// Records that `hosts` now run `version` of `template` (one transaction); a host whose version
    /// changes keeps the version it ran before as its `previous`.
    pub fn record_versions(
        &self,
        template: &str,
        hosts: &[MinionId],
        version: &str,
    ) -> Result<(), Error> {
        let now = now_ms();
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.err("recording fleet state", e))?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO fleet (template, host, version, since_ms) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (template, host) DO UPDATE SET
                       previous = version, previous_since_ms = since_ms,
                       version = excluded.version, since_ms = excluded.since_ms
                     WHERE version != excluded.version",
                )
                .map_err(|e| self.err("recording fleet state", e))?;
            for h in hosts {
                stmt.execute(params![template, h.as_str(), version, now])
                    .map_err(|e| self.err("recording fleet state", e))?;
            }
        }
        tx.commit()
            .map_err(|e| self.err("recording fleet state", e))
    }
}

impl FleetState for SqliteStore {
    /// Reads the recorded versions; a database error is logged and reads as "no history" (the plan
    /// then shows no rollback target rather than a wrong one).
    fn versions(&self, template: &str, hosts: &[MinionId]) -> HashMap<MinionId, HostHistory> {
        let wanted: HashSet<&str> = hosts.iter().map(MinionId::as_str).collect();
        let recorded = match self.fleet(template) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, template, "cannot read fleet state");
                return HashMap::new();
            }
        };
        let by_name: HashMap<&str, &MinionId> = hosts.iter().map(|h| (h.as_str(), h)).collect();
        recorded
            .into_iter()
            .filter(|v| wanted.contains(v.host.as_str()))
            .filter_map(|v| {
                let id = (*by_name.get(v.host.as_str())?).clone();
                Some((
                    id,
                    HostHistory {
                        current: Some(v.version),
                        previous: v.previous,
                    },
                ))
            })
            .collect()
    }

    /// Records the versions; a database error is logged (the trait cannot return it).
    fn record(&self, template: &str, hosts: &[MinionId], version: &str) {
        if let Err(e) = self.record_versions(template, hosts, version) {
            tracing::error!(error = %e, template, version, hosts = hosts.len(),
                "cannot record fleet state");
        }
    }
}
