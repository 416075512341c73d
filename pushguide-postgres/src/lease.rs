//! Leases on the database clock, with fencing tokens.
//!
//! Taking a lease is one `INSERT … ON CONFLICT DO UPDATE … WHERE` the row is free or expired
//! (`expires_at <= now()`): PostgreSQL locks the row for the statement, so of two instances asking in
//! the same millisecond exactly one gets it and the other sees it live. Every takeover adds one to the
//! token. Writes of a deployment take the lease row `FOR SHARE` and compare its token in their own
//! transaction ([`check_fence`]), so a takeover cannot slip in between the check and the commit.

use std::time::SystemTime;

use crate::sql::Sql;
use async_trait::async_trait;
use pushguide_core::LeaseManager;

use crate::error::Error;
use crate::store::{millis, PgStore};

/// A lease on a template.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Lease {
    /// The template.
    pub template: String,
    /// The deployment holding it.
    pub holder: String,
    /// The store instance holding it ([`PgStore::owner`]).
    pub owner: String,
    /// Why it was taken.
    pub reason: String,
    /// When it was taken (database clock).
    pub acquired: SystemTime,
    /// When it expires unless renewed (database clock).
    pub expires: SystemTime,
    /// Fencing token: one more with every acquisition of this template's lease.
    pub token: u64,
}

impl PgStore {
    /// Takes the lease on `template` for deployment `holder` for [`crate::PgConfig::lease_ttl`]
    /// (renewed by this instance's heartbeat). An expired lease is taken over with the next token;
    /// [`Error::Busy`] while another holder's lease is live (even under the same holder name).
    pub async fn acquire_lease(
        &self,
        template: &str,
        holder: &str,
        reason: &str,
    ) -> Result<Lease, Error> {
        let client = self.client("acquiring a lease").await?;
        let ttl = millis(self.inner.ttl);
        // a lease freed between our two statements: ask again (bounded)
        for _ in 0..5 {
            let taken = client
                .opt(
                    "INSERT INTO leases AS l (template, holder, owner, reason, acquired_at, expires_at, token)
                     VALUES ($1, $2, $3, $4, now(), now() + $5 * interval '1 millisecond', 1)
                     ON CONFLICT (template) DO UPDATE SET holder = excluded.holder,
                       owner = excluded.owner, reason = excluded.reason,
                       acquired_at = excluded.acquired_at, expires_at = excluded.expires_at,
                       token = l.token + 1
                     WHERE l.holder IS NULL OR l.expires_at <= now()
                     RETURNING acquired_at, expires_at, token",
                    &[&template, &holder, &self.inner.owner, &reason, &ttl],
                )
                .await
                .map_err(|e| self.db("acquiring a lease", e))?;
            if let Some(row) = taken {
                let token = row.get::<_, i64>(2) as u64;
                if token > 1 {
                    tracing::debug!(
                        template,
                        holder,
                        token,
                        "lease taken (after an earlier holder)"
                    );
                }
                return Ok(Lease {
                    template: template.to_owned(),
                    holder: holder.to_owned(),
                    owner: self.inner.owner.clone(),
                    reason: reason.to_owned(),
                    acquired: row.get(0),
                    expires: row.get(1),
                    token,
                });
            }
            if let Some(live) = self.lease_on(&client, template).await? {
                return Err(Error::Busy {
                    template: template.to_owned(),
                    holder: live.holder,
                    owner: live.owner,
                    reason: live.reason,
                });
            }
        }
        Err(Error::Busy {
            template: template.to_owned(),
            holder: "(changing hands)".to_owned(),
            owner: String::new(),
            reason: "the lease changed hands five times while asking".to_owned(),
        })
    }

    /// Extends `holder`'s lease on `template` by the TTL; [`Error::LeaseLost`] if this instance no
    /// longer holds it with `token` (expired, taken over or released).
    pub async fn renew_lease(
        &self,
        template: &str,
        holder: &str,
        token: u64,
    ) -> Result<Lease, Error> {
        let client = self.client("renewing a lease").await?;
        let row = client
            .opt(
                "UPDATE leases SET expires_at = now() + $5 * interval '1 millisecond'
                 WHERE template = $1 AND holder = $2 AND owner = $3 AND token = $4
                   AND expires_at > now()
                 RETURNING reason, acquired_at, expires_at",
                &[
                    &template,
                    &holder,
                    &self.inner.owner,
                    &(token as i64),
                    &millis(self.inner.ttl),
                ],
            )
            .await
            .map_err(|e| self.db("renewing a lease", e))?;
        match row {
            Some(r) => Ok(Lease {
                template: template.to_owned(),
                holder: holder.to_owned(),
                owner: self.inner.owner.clone(),
                reason: r.get::<_, Option<String>>(0).unwrap_or_default(),
                acquired: r.get(1),
                expires: r.get(2),
                token,
            }),
            None => {
                let reason = match self.lease_on(&client, template).await? {
                    Some(now) => format!(
                        "deployment {} holds it now (token {}, instance {})",
                        now.holder, now.token, now.owner
                    ),
                    None => "it expired or was released, and nobody holds it now".to_owned(),
                };
                Err(Error::LeaseLost {
                    template: template.to_owned(),
                    holder: holder.to_owned(),
                    reason,
                })
            }
        }
    }

    /// Gives `holder`'s lease on `template` with `token` back; a no-op when this instance does not
    /// hold it so (another instance's lease, or a newer one, is never released). The token stays.
    pub async fn release_lease(
        &self,
        template: &str,
        holder: &str,
        token: u64,
    ) -> Result<(), Error> {
        let client = self.client("releasing a lease").await?;
        client
            .exec(
                "UPDATE leases SET holder = NULL, owner = NULL, expires_at = '-infinity'
                 WHERE template = $1 AND holder = $2 AND owner = $3 AND token = $4",
                &[&template, &holder, &self.inner.owner, &(token as i64)],
            )
            .await
            .map(drop)
            .map_err(|e| self.db("releasing a lease", e))
    }

    /// The live lease on `template`, if any (an expired one reads as none).
    pub async fn lease(&self, template: &str) -> Result<Option<Lease>, Error> {
        let client = self.client("reading a lease").await?;
        self.lease_on(&client, template).await
    }

    async fn lease_on(
        &self,
        client: &(impl Sql + Sync),
        template: &str,
    ) -> Result<Option<Lease>, Error> {
        let row = client
            .opt(
                "SELECT holder, owner, reason, acquired_at, expires_at, token FROM leases
                 WHERE template = $1 AND holder IS NOT NULL AND expires_at > now()",
                &[&template],
            )
            .await
            .map_err(|e| self.db("reading a lease", e))?;
        Ok(row.map(|r| Lease {
            template: template.to_owned(),
            holder: r.get(0),
            owner: r.get::<_, Option<String>>(1).unwrap_or_default(),
            reason: r.get::<_, Option<String>>(2).unwrap_or_default(),
            acquired: r
                .get::<_, Option<SystemTime>>(3)
                .unwrap_or(SystemTime::UNIX_EPOCH),
            expires: r.get(4),
            token: r.get::<_, i64>(5) as u64,
        }))
    }
}

/// In the caller's transaction: whether `lease` is its template's lease now (same holder and token,
/// not expired on the database clock), taking the lease row `FOR SHARE` so that no takeover commits
/// before this transaction ends. [`Error::Fenced`] otherwise.
pub(crate) async fn check_fence(
    store: &PgStore,
    tx: &(impl Sql + Sync),
    lease: &pushguide_core::Lease,
) -> Result<(), Error> {
    let row = tx
        .opt(
            "SELECT holder, token, expires_at > now() FROM leases WHERE template = $1 FOR SHARE",
            &[&lease.template],
        )
        .await
        .map_err(|e| store.db("checking the fencing token", e))?;
    let current = row.map(|r| {
        (
            r.get::<_, Option<String>>(0),
            r.get::<_, i64>(1) as u64,
            r.get::<_, bool>(2),
        )
    });
    if let Some((Some(h), t, true)) = &current {
        if *h == lease.holder && *t == lease.token {
            return Ok(());
        }
    }
    Err(Error::Fenced {
        template: lease.template.clone(),
        holder: lease.holder.clone(),
        token: lease.token,
        current: current.and_then(|(h, t, live)| h.filter(|_| live).map(|h| (h, t))),
    })
}

#[async_trait]
impl LeaseManager for PgStore {
    async fn acquire(
        &self,
        template: &str,
        holder: &str,
    ) -> Result<pushguide_core::Lease, pushguide_core::Error> {
        let lease = self
            .acquire_lease(template, holder, "deployment")
            .await
            .map_err(|e| e.into_core("acquiring a lease"))?;
        tracing::debug!(template, holder, token = lease.token, "lease acquired");
        Ok(pushguide_core::Lease::new(template, holder, lease.token))
    }

    async fn release(&self, lease: &pushguide_core::Lease) -> Result<(), pushguide_core::Error> {
        self.release_lease(&lease.template, &lease.holder, lease.token)
            .await
            .map_err(|e| e.into_core("releasing a lease"))
    }

    /// Renews the lease ([`PgStore::renew_lease`]): held by its holder with its token through this
    /// instance and not expired on the database clock, or [`pushguide_core::Error::LeaseLost`]. A
    /// database error is an error too ([`pushguide_core::Error::StoreFailed`]): a deployment that
    /// cannot prove it holds the lease stops.
    async fn check(&self, lease: &pushguide_core::Lease) -> Result<(), pushguide_core::Error> {
        self.renew_lease(&lease.template, &lease.holder, lease.token)
            .await
            .map(drop)
            .map_err(|e| e.into_core("renewing a lease"))
    }
}
