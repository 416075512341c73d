//! Which version each host runs, durable across processes, written under the template's lease.

use std::collections::HashMap;
use std::time::SystemTime;

use async_trait::async_trait;
use pushguide_core::{FleetState, HostChange, HostHistory, Lease, MinionId, VersionLog};
use rusqlite::{params, OptionalExtension, Transaction, TransactionBehavior};

use crate::error::Error;
use crate::store::{from_ms, now_ms, SqliteStore};

/// One host's recorded versions for a template.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HostVersion {
    /// The host.
    pub host: String,
    /// The version it runs now; `None` when its state is unknown (a release or rollback failed in
    /// the middle of switching).
    pub version: Option<String>,
    /// Whether `version` runs as released (`false`: a release or rollback failed on the host).
    pub healthy: bool,
    /// Since when (the deployment or rollback that put it there).
    pub since: SystemTime,
    /// The last version that ran successfully before `version`: the rollback target.
    pub previous: Option<String>,
    /// Every version that ran successfully on the host, oldest first (the newest 32).
    pub good: Vec<String>,
}

impl SqliteStore {
    /// Every host recorded for `template`, sorted by host.
    pub fn fleet(&self, template: &str) -> Result<Vec<HostVersion>, Error> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT host, version, healthy, since_ms, good FROM fleet
                 WHERE template = ?1 ORDER BY host",
            )
            .map_err(|e| self.err("reading fleet state", e))?;
        let rows = stmt
            .query_map([template], |r| {
                let log = version_log(r.get(1)?, r.get(2)?, &r.get::<_, String>(4)?)?;
                let h = log.history();
                Ok(HostVersion {
                    host: r.get(0)?,
                    version: h.current,
                    healthy: h.healthy,
                    since: from_ms(r.get(3)?),
                    previous: h.previous,
                    good: log.good,
                })
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(|e| self.err("reading fleet state", e))?;
        Ok(rows)
    }

    /// [`FleetState::versions`], blocking.
    pub fn host_histories(
        &self,
        template: &str,
        hosts: &[MinionId],
    ) -> Result<HashMap<MinionId, HostHistory>, Error> {
        let by_name: HashMap<&str, &MinionId> = hosts.iter().map(|h| (h.as_str(), h)).collect();
        let err = |e| self.err("reading fleet state", e);
        let conn = self.conn();
        let mut out = HashMap::with_capacity(hosts.len());
        let mut take = |r: &rusqlite::Row<'_>| -> rusqlite::Result<()> {
            if let Some(id) = by_name.get(r.get_ref(0)?.as_str()?) {
                let log = version_log(r.get(1)?, r.get(2)?, &r.get::<_, String>(3)?)?;
                out.insert((*id).clone(), log.history());
            }
            Ok(())
        };
        // Few hosts: look each up; many: one scan of the template's rows.
        if hosts.len() <= 32 {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT host, version, healthy, good FROM fleet
                     WHERE template = ?1 AND host = ?2",
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
                .prepare_cached(
                    "SELECT host, version, healthy, good FROM fleet WHERE template = ?1",
                )
                .map_err(err)?;
            let mut rows = stmt.query([template]).map_err(err)?;
            while let Some(r) = rows.next().map_err(err)? {
                take(r).map_err(err)?;
            }
        }
        Ok(out)
    }

    /// [`FleetState::record`], blocking: in one transaction, checks that `lease` is the template's
    /// current lease (same holder and token; [`Error::Fenced`] otherwise) and applies `change` to every
    /// host. Returns once the change is committed.
    pub fn record_change(
        &self,
        lease: &Lease,
        hosts: &[MinionId],
        change: &HostChange,
    ) -> Result<(), Error> {
        self.write_change(&lease.template, Some(lease), hosts, change)
    }

    /// Records `change` for `hosts` without a lease: for importing fleet state from elsewhere and for
    /// tests. Deployments always write through [`FleetState::record`], which is fenced.
    pub fn record_unfenced(
        &self,
        template: &str,
        hosts: &[MinionId],
        change: &HostChange,
    ) -> Result<(), Error> {
        self.write_change(template, None, hosts, change)
    }

    /// One transaction: the fence check (when a lease is given), then the change.
    fn write_change(
        &self,
        template: &str,
        fence: Option<&Lease>,
        hosts: &[MinionId],
        change: &HostChange,
    ) -> Result<(), Error> {
        let err = |e| self.err("recording fleet state", e);
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        if let Some(lease) = fence {
            check_fence(&tx, lease).map_err(|e| match e {
                Fence::Db(e) => err(e),
                Fence::Refused(e) => e,
            })?;
        }
        apply(&tx, template, hosts, change).map_err(err)?;
        tx.commit().map_err(err)
    }
}

enum Fence {
    Db(rusqlite::Error),
    Refused(Error),
}

/// Whether `lease` is the template's lease now: same holder and token, and not expired (an expired
/// lease may be taken over at any moment: its holder must stop, as its next check would tell it).
fn check_fence(tx: &Transaction<'_>, lease: &Lease) -> Result<(), Fence> {
    let current: Option<(Option<String>, i64, i64)> = tx
        .query_row(
            "SELECT holder, token, expires_ms FROM leases WHERE template = ?1",
            [&lease.template],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()
        .map_err(Fence::Db)?;
    let now = now_ms();
    let holds = matches!(&current, Some((Some(h), t, exp))
        if *h == lease.holder && *t as u64 == lease.token && *exp > now);
    if holds {
        return Ok(());
    }
    Err(Fence::Refused(Error::Fenced {
        template: lease.template.clone(),
        holder: lease.holder.clone(),
        token: lease.token,
        current: current.and_then(|(h, t, exp)| h.filter(|_| exp > now).map(|h| (h, t as u64))),
    }))
}

fn version_log(version: Option<String>, healthy: bool, good: &str) -> rusqlite::Result<VersionLog> {
    let mut log = VersionLog::default();
    log.current = version;
    log.healthy = healthy;
    log.good = serde_json::from_str(good).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(3, rusqlite::types::Type::Text, Box::new(e))
    })?;
    Ok(log)
}

fn apply(
    tx: &Transaction<'_>,
    template: &str,
    hosts: &[MinionId],
    change: &HostChange,
) -> rusqlite::Result<()> {
    let now = now_ms();
    let mut read = tx.prepare_cached(
        "SELECT version, healthy, good, since_ms FROM fleet WHERE template = ?1 AND host = ?2",
    )?;
    let mut write = tx.prepare_cached(
        "INSERT INTO fleet (template, host, version, healthy, since_ms, good, previous)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (template, host) DO UPDATE SET version = excluded.version,
           healthy = excluded.healthy, since_ms = excluded.since_ms, good = excluded.good,
           previous = excluded.previous",
    )?;
    for h in hosts {
        let old: Option<(Option<String>, bool, String, i64)> = read
            .query_row(params![template, h.as_str()], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .optional()?;
        let (mut log, since) = match old {
            Some((v, healthy, good, since)) => (version_log(v, healthy, &good)?, since),
            None => (VersionLog::default(), now),
        };
        let before = (log.current.clone(), log.healthy);
        log.apply(change);
        // `since` tells how long the host has run what it runs now
        let since = if before == (log.current.clone(), log.healthy) {
            since
        } else {
            now
        };
        let good = serde_json::to_string(&log.good).unwrap_or_else(|_| "[]".to_owned());
        let previous = log.history().previous;
        write.execute(params![
            template,
            h.as_str(),
            log.current,
            log.healthy,
            since,
            good,
            previous
        ])?;
    }
    Ok(())
}

#[async_trait]
impl FleetState for SqliteStore {
    async fn versions(
        &self,
        template: &str,
        hosts: &[MinionId],
    ) -> Result<HashMap<MinionId, HostHistory>, pushguide_core::Error> {
        let (store, template, hosts) = (self.clone(), template.to_owned(), hosts.to_vec());
        crate::store::blocking("reading fleet state", move || {
            store.host_histories(&template, &hosts)
        })
        .await
    }

    /// Durable when it returns; refused with [`pushguide_core::Error::Fenced`] when `lease` is no
    /// longer the template's current lease.
    async fn record(
        &self,
        lease: &Lease,
        hosts: &[MinionId],
        change: &HostChange,
    ) -> Result<(), pushguide_core::Error> {
        let (store, lease, hosts, change) =
            (self.clone(), lease.clone(), hosts.to_vec(), change.clone());
        crate::store::blocking("recording fleet state", move || {
            store.record_change(&lease, &hosts, &change)
        })
        .await
    }
}
