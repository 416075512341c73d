//! Which version each host runs, durable across processes.

use std::collections::HashMap;
use std::time::SystemTime;

use pushguide_core::{FleetState, HostHistory, MinionId};
use std::sync::PoisonError;

use rusqlite::{params, Connection, TransactionBehavior};

use crate::error::Error;
use crate::store::{from_ms, now_ms, FleetQueue, FleetWrite, SqliteStore};

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
        self.flush_fleet();
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

    /// Records that `hosts` now run `version` of `template` and waits until it is written (one
    /// transaction, with every change queued before it); a host whose version changes keeps the version
    /// it ran before as its `previous`.
    pub fn record_versions(
        &self,
        template: &str,
        hosts: &[MinionId],
        version: &str,
    ) -> Result<(), Error> {
        self.enqueue(template, hosts, version);
        let mut conn = self.conn();
        write_queued(&mut conn, &self.inner.fleet_queue)
            .map_err(|e| self.err("recording fleet state", e))
    }

    fn enqueue(&self, template: &str, hosts: &[MinionId], version: &str) {
        let names: Vec<&str> = hosts.iter().map(MinionId::as_str).collect();
        let write = FleetWrite {
            template: template.to_owned(),
            hosts: serde_json::to_string(&names).unwrap_or_else(|_| "[]".to_owned()),
            version: version.to_owned(),
            at: now_ms(),
        };
        let q = &self.inner.fleet_queue;
        q.items
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(write);
        q.wake.notify_one();
    }

    /// Writes every fleet state change still queued by [`FleetState::record`] now, so that other
    /// processes see it (the store's writer thread does so within milliseconds on its own).
    pub fn flush(&self) -> Result<(), Error> {
        let mut conn = self.conn();
        write_queued(&mut conn, &self.inner.fleet_queue)
            .map_err(|e| self.err("recording fleet state", e))
    }

    /// [`SqliteStore::flush`], errors logged (the changes stay queued); whether it wrote.
    pub(crate) fn flush_fleet(&self) -> bool {
        let mut conn = self.conn();
        match write_queued(&mut conn, &self.inner.fleet_queue) {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(error = %e, path = %self.path().display(),
                    "cannot record fleet state yet; the changes stay queued");
                false
            }
        }
    }
}

/// Writes every queued change in one transaction, in order. The caller holds the connection, so two
/// writers cannot reorder changes. When the write fails, the changes go back to the front of the
/// queue (before any queued meanwhile): the next flush tries them again, nothing is dropped.
pub(crate) fn write_queued(conn: &mut Connection, queue: &FleetQueue) -> rusqlite::Result<()> {
    let items = std::mem::take(&mut *queue.items.lock().unwrap_or_else(PoisonError::into_inner));
    if items.is_empty() {
        return Ok(());
    }
    let written = write_items(conn, &items);
    if written.is_err() {
        let mut q = queue.items.lock().unwrap_or_else(PoisonError::into_inner);
        let newer = std::mem::replace(&mut *q, items);
        q.extend(newer);
    }
    written
}

fn write_items(conn: &mut Connection, items: &[FleetWrite]) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    {
        // One statement per change for all its hosts: far cheaper than one execution per host.
        let mut stmt = tx.prepare_cached(
            "INSERT INTO fleet (template, host, version, since_ms)
             SELECT ?1, j.value, ?2, ?3 FROM json_each(?4) j WHERE true
             ON CONFLICT (template, host) DO UPDATE SET
               previous = version, previous_since_ms = since_ms,
               version = excluded.version, since_ms = excluded.since_ms
             WHERE version != excluded.version",
        )?;
        for w in items {
            stmt.execute(params![w.template, w.version, w.at, w.hosts])?;
        }
    }
    tx.commit()
}

impl SqliteStore {
    /// [`FleetState::versions`] with errors.
    pub fn host_histories(
        &self,
        template: &str,
        hosts: &[MinionId],
    ) -> Result<HashMap<MinionId, HostHistory>, Error> {
        self.flush_fleet();
        let by_name: HashMap<&str, &MinionId> = hosts.iter().map(|h| (h.as_str(), h)).collect();
        let err = |e| self.err("reading fleet state", e);
        let conn = self.conn();
        let mut out = HashMap::with_capacity(hosts.len());
        let mut take = |r: &rusqlite::Row<'_>| -> rusqlite::Result<()> {
            if let Some(id) = by_name.get(r.get_ref(0)?.as_str()?) {
                let h = HostHistory {
                    current: Some(r.get(1)?),
                    previous: r.get(2)?,
                };
                out.insert((*id).clone(), h);
            }
            Ok(())
        };
        // Few hosts: look each up; many: one scan of the template's rows.
        if hosts.len() <= 32 {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT host, version, previous FROM fleet WHERE template = ?1 AND host = ?2",
                )
                .map_err(err)?;
            for h in hosts {
                let mut rows = stmt.query(params![template, h.as_str()]).map_err(err)?;
                if let Some(r) = rows.next().map_err(err)? {
                    take(r).map_err(err)?;
                }
            }
        } else {
            let mut stmt = conn
                .prepare_cached("SELECT host, version, previous FROM fleet WHERE template = ?1")
                .map_err(err)?;
            let mut rows = stmt.query([template]).map_err(err)?;
            while let Some(r) = rows.next().map_err(err)? {
                take(r).map_err(err)?;
            }
        }
        Ok(out)
    }
}

impl FleetState for SqliteStore {
    /// Reads the recorded versions; a database error is logged and reads as "no history" (the plan
    /// then shows no rollback target rather than a wrong one).
    fn versions(&self, template: &str, hosts: &[MinionId]) -> HashMap<MinionId, HostHistory> {
        match self.host_histories(template, hosts) {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(error = %e, template, "cannot read fleet state");
                HashMap::new()
            }
        }
    }

    /// Queues the change for the store's fleet writer thread, which writes it within milliseconds;
    /// this process's own reads of fleet state write queued changes first, so they see them once
    /// written. A change that cannot be written stays queued and is tried again; the engine's
    /// [`FleetState::flush`] at the end of a deployment reports the error.
    fn record(&self, template: &str, hosts: &[MinionId], version: &str) {
        self.enqueue(template, hosts, version);
    }

    /// [`SqliteStore::flush`].
    fn flush(&self) -> Result<(), pushguide_core::Error> {
        SqliteStore::flush(self).map_err(Into::into)
    }
}
