//! Which version each host runs, written under the template's lease (fenced).

use std::collections::HashMap;
use std::time::SystemTime;

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use pushguide_core::{FleetState, HostChange, HostHistory, Lease, MinionId, VersionLog};

use crate::error::Error;
use crate::lease::check_fence;
use crate::store::PgStore;

/// One host's recorded versions for a template.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HostVersion {
    /// The host.
    pub host: String,
    /// The version it runs now; `None` when unknown.
    pub version: Option<String>,
    /// Whether `version` runs as released.
    pub healthy: bool,
    /// Since when it runs what it runs (database clock).
    pub since: SystemTime,
    /// The rollback target.
    pub previous: Option<String>,
    /// Every version that ran successfully on the host, oldest first (the newest 32).
    pub good: Vec<String>,
}

fn version_log(
    version: Option<String>,
    healthy: bool,
    good: serde_json::Value,
) -> Result<VersionLog, Error> {
    let mut log = VersionLog::default();
    log.current = version;
    log.healthy = healthy;
    log.good = serde_json::from_value(good).map_err(|e| Error::Corrupt {
        what: "fleet state (good versions)",
        reason: e.to_string(),
    })?;
    Ok(log)
}

impl PgStore {
    /// Every host recorded for `template`, sorted by host.
    pub async fn fleet(&self, template: &str) -> Result<Vec<HostVersion>, Error> {
        let client = self.client("reading fleet state").await?;
        let rows = client
            .query(
                "SELECT host, version, healthy, since, good FROM fleet
                 WHERE template = $1 ORDER BY host",
                &[&template],
            )
            .await
            .map_err(|e| self.db("reading fleet state", e))?;
        rows.into_iter()
            .map(|r| {
                let log = version_log(r.get(1), r.get(2), r.get(4))?;
                let h = log.history();
                Ok(HostVersion {
                    host: r.get(0),
                    version: h.current,
                    healthy: h.healthy,
                    since: r.get(3),
                    previous: h.previous,
                    good: log.good,
                })
            })
            .collect()
    }

    /// [`FleetState::versions`] with this crate's error.
    pub async fn host_histories(
        &self,
        template: &str,
        hosts: &[MinionId],
    ) -> Result<HashMap<MinionId, HostHistory>, Error> {
        let by_name: HashMap<&str, &MinionId> = hosts.iter().map(|h| (h.as_str(), h)).collect();
        let names: Vec<&str> = by_name.keys().copied().collect();
        let client = self.client("reading fleet state").await?;
        let rows = client
            .query(
                "SELECT host, version, healthy, good FROM fleet
                 WHERE template = $1 AND host = ANY($2)",
                &[&template, &names],
            )
            .await
            .map_err(|e| self.db("reading fleet state", e))?;
        let mut out = HashMap::with_capacity(rows.len());
        for r in rows {
            let host: &str = r.get(0);
            if let Some(id) = by_name.get(host) {
                out.insert(
                    (*id).clone(),
                    version_log(r.get(1), r.get(2), r.get(3))?.history(),
                );
            }
        }
        Ok(out)
    }

    /// [`FleetState::record`] with this crate's error: in one transaction, checks that `lease` is the
    /// template's current lease ([`Error::Fenced`] otherwise) and applies `change` to every host;
    /// retried on a fresh connection when the connection breaks (see `write_change`).
    pub async fn record_change(
        &self,
        lease: &Lease,
        hosts: &[MinionId],
        change: &HostChange,
    ) -> Result<(), Error> {
        self.write_change(&lease.template, Some(lease), hosts, change)
            .await
    }

    /// Records `change` without a lease: for importing fleet state and for tests. Deployments
    /// always write through [`FleetState::record`], which is fenced.
    pub async fn record_unfenced(
        &self,
        template: &str,
        hosts: &[MinionId],
        change: &HostChange,
    ) -> Result<(), Error> {
        self.write_change(template, None, hosts, change).await
    }

    /// Writes `change` in one transaction, checking `fence` in it. A write that fails because the
    /// connection broke is retried on a fresh connection for a few seconds, each attempt checking
    /// the fencing token again. Applying a change is idempotent ([`VersionLog::apply`] twice is
    /// once; a host whose version did not change keeps its `since`), so a retry after a commit
    /// whose answer was lost records nothing twice.
    async fn write_change(
        &self,
        template: &str,
        fence: Option<&Lease>,
        hosts: &[MinionId],
        change: &HostChange,
    ) -> Result<(), Error> {
        crate::retry::on_fresh_connection("recording fleet state", |_| {
            self.write_change_once(template, fence, hosts, change)
        })
        .await
    }

    /// One attempt of [`PgStore::write_change`].
    pub(crate) async fn write_change_once(
        &self,
        template: &str,
        fence: Option<&Lease>,
        hosts: &[MinionId],
        change: &HostChange,
    ) -> Result<(), Error> {
        let mut client = self.client("recording fleet state").await?;
        let tx = client
            .transaction()
            .await
            .map_err(|e| self.db("recording fleet state", e))?;
        if let Some(lease) = fence {
            check_fence(self, &tx, lease).await?;
        }
        self.apply(&tx, template, hosts, change).await?;
        tx.commit()
            .await
            .map_err(|e| self.db("committing fleet state", e))
    }

    async fn apply(
        &self,
        tx: &impl GenericClient,
        template: &str,
        hosts: &[MinionId],
        change: &HostChange,
    ) -> Result<(), Error> {
        let mut names: Vec<&str> = hosts.iter().map(MinionId::as_str).collect();
        names.sort_unstable();
        names.dedup();
        // rows locked in host order: concurrent writers never deadlock
        let rows = tx
            .query(
                "SELECT host, version, healthy, good, since FROM fleet
                 WHERE template = $1 AND host = ANY($2) ORDER BY host FOR UPDATE",
                &[&template, &names],
            )
            .await
            .map_err(|e| self.db("reading fleet state", e))?;
        let mut old = HashMap::with_capacity(rows.len());
        for r in rows {
            old.insert(
                r.get::<_, String>(0),
                (
                    version_log(r.get(1), r.get(2), r.get(3))?,
                    r.get::<_, SystemTime>(4),
                ),
            );
        }
        let (mut versions, mut healthy, mut since, mut good, mut previous) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        // `None` since: now() (the database clock)
        for h in &names {
            let (mut log, was_since) = match old.remove(*h) {
                Some((log, s)) => (log, Some(s)),
                None => (VersionLog::default(), None),
            };
            let before = (log.current.clone(), log.healthy);
            log.apply(change);
            let unchanged = was_since.is_some() && before == (log.current.clone(), log.healthy);
            versions.push(log.current.clone());
            healthy.push(log.healthy);
            since.push(if unchanged { was_since } else { None });
            good.push(serde_json::Value::from(log.good.clone()).to_string());
            previous.push(log.history().previous);
        }
        tx.execute(
            "INSERT INTO fleet AS f (template, host, version, healthy, since, good, previous)
             SELECT $1, h, v, ok, coalesce(s, now()), g::jsonb, p
             FROM unnest($2::text[], $3::text[], $4::boolean[], $5::timestamptz[], $6::text[],
                         $7::text[]) AS t(h, v, ok, s, g, p)
             ON CONFLICT (template, host) DO UPDATE SET version = excluded.version,
               healthy = excluded.healthy, since = excluded.since, good = excluded.good,
               previous = excluded.previous",
            &[
                &template, &names, &versions, &healthy, &since, &good, &previous,
            ],
        )
        .await
        .map_err(|e| self.db("recording fleet state", e))?;
        Ok(())
    }
}

#[async_trait]
impl FleetState for PgStore {
    async fn versions(
        &self,
        template: &str,
        hosts: &[MinionId],
    ) -> Result<HashMap<MinionId, HostHistory>, pushguide_core::Error> {
        self.host_histories(template, hosts)
            .await
            .map_err(|e| e.into_core("reading fleet state"))
    }

    /// Durable when it returns; refused with [`pushguide_core::Error::Fenced`] when `lease` is no
    /// longer the template's current lease.
    async fn record(
        &self,
        lease: &Lease,
        hosts: &[MinionId],
        change: &HostChange,
    ) -> Result<(), pushguide_core::Error> {
        self.record_change(lease, hosts, change)
            .await
            .map_err(|e| e.into_core("recording fleet state"))
    }
}
