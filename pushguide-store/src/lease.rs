//! Durable leases: one deployment per template across every process sharing the database.

use std::time::SystemTime;

use async_trait::async_trait;
use pushguide_core::LeaseManager;
use rusqlite::{params, OptionalExtension, TransactionBehavior};

use crate::error::Error;
use crate::store::{blocking, from_ms, now_ms, SqliteStore};

/// A lease on a template.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Lease {
    /// The template.
    pub template: String,
    /// The deployment holding it.
    pub holder: String,
    /// The store instance (process) holding it; see [`SqliteStore::owner`].
    pub owner: String,
    /// Why it was taken.
    pub reason: String,
    /// When it was taken.
    pub acquired: SystemTime,
    /// When it expires unless renewed (the owner's heartbeat renews it).
    pub expires: SystemTime,
    /// Fencing token: grows by one with every acquisition of this template's lease, so a resource can
    /// refuse writes from a holder whose lease was taken over (it carries a smaller token).
    pub token: u64,
}

impl SqliteStore {
    /// Takes the lease on `template` for deployment `holder`, for [`crate::StoreOptions::lease_ttl`]
    /// (renewed by this store's heartbeat until released or the process ends). An expired lease is taken
    /// over. Fails with [`Error::Busy`] while another holder's lease is live.
    pub fn acquire_lease(
        &self,
        template: &str,
        holder: &str,
        reason: &str,
    ) -> Result<Lease, Error> {
        let now = now_ms();
        let expires = now + self.inner.ttl.as_millis() as i64;
        let err = |e| self.err("acquiring a lease", e);
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        let current = tx
            .query_row(
                "SELECT holder, owner, reason, expires_ms, token FROM leases WHERE template = ?1",
                [template],
                |r| {
                    Ok((
                        r.get::<_, Option<String>>(0)?,
                        r.get::<_, Option<String>>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, i64>(4)?,
                    ))
                },
            )
            .optional()
            .map_err(err)?;
        // A live lease belongs to its holder alone: even the same holder name is refused (deployment
        // ids are unique, so a second acquisition under one name is a mistake, not re-entrance).
        let token = match current {
            Some((Some(h), owner, why, exp, _)) if exp > now => {
                return Err(Error::Busy {
                    template: template.to_owned(),
                    holder: h,
                    owner: owner.unwrap_or_default(),
                    reason: why.unwrap_or_default(),
                });
            }
            Some((prev, owner, _, _, token)) => {
                if let Some(prev) = prev {
                    tracing::warn!(template, expired_holder = %prev,
                        expired_owner = %owner.unwrap_or_default(), holder, "taking over an expired lease");
                }
                token + 1
            }
            None => 1,
        };
        tx.execute(
            "INSERT INTO leases (template, holder, owner, reason, acquired_ms, expires_ms, token)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (template) DO UPDATE SET holder = excluded.holder, owner = excluded.owner,
               reason = excluded.reason, acquired_ms = excluded.acquired_ms,
               expires_ms = excluded.expires_ms, token = excluded.token",
            params![
                template,
                holder,
                self.inner.owner,
                reason,
                now,
                expires,
                token
            ],
        )
        .map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(Lease {
            template: template.to_owned(),
            holder: holder.to_owned(),
            owner: self.inner.owner.clone(),
            reason: reason.to_owned(),
            acquired: from_ms(now),
            expires: from_ms(expires),
            token: token as u64,
        })
    }

    /// Extends `holder`'s lease on `template` by the TTL; [`Error::LeaseLost`] if it no longer holds
    /// it through this store with `token`.
    pub fn renew_lease(&self, template: &str, holder: &str, token: u64) -> Result<Lease, Error> {
        let now = now_ms();
        let expires = now + self.inner.ttl.as_millis() as i64;
        let n = self
            .conn()
            .execute(
                "UPDATE leases SET expires_ms = ?4
                 WHERE template = ?1 AND holder = ?2 AND owner = ?3 AND expires_ms > ?5
                   AND token = ?6",
                params![
                    template,
                    holder,
                    self.inner.owner,
                    expires,
                    now,
                    token as i64
                ],
            )
            .map_err(|e| self.err("renewing a lease", e))?;
        if n == 0 {
            return Err(Error::LeaseLost {
                template: template.to_owned(),
                holder: holder.to_owned(),
            });
        }
        self.lease(template)?.ok_or_else(|| Error::LeaseLost {
            template: template.to_owned(),
            holder: holder.to_owned(),
        })
    }

    /// Gives `holder`'s lease on `template` with `token` back; a no-op when it does not hold it
    /// through this store (another process's lease, or a newer one, is never released).
    pub fn release_lease(&self, template: &str, holder: &str, token: u64) -> Result<(), Error> {
        self.conn()
            .execute(
                "UPDATE leases SET holder = NULL, owner = NULL, expires_ms = 0
                 WHERE template = ?1 AND holder = ?2 AND owner = ?3 AND token = ?4",
                params![template, holder, self.inner.owner, token as i64],
            )
            .map(drop)
            .map_err(|e| self.err("releasing a lease", e))
    }

    /// The live lease on `template`, if any (an expired one reads as none).
    pub fn lease(&self, template: &str) -> Result<Option<Lease>, Error> {
        self.conn()
            .query_row(
                "SELECT holder, owner, reason, acquired_ms, expires_ms, token FROM leases
                 WHERE template = ?1 AND holder IS NOT NULL AND expires_ms > ?2",
                params![template, now_ms()],
                |r| {
                    Ok(Lease {
                        template: template.to_owned(),
                        holder: r.get(0)?,
                        owner: r.get::<_, Option<String>>(1)?.unwrap_or_default(),
                        reason: r.get::<_, Option<String>>(2)?.unwrap_or_default(),
                        acquired: from_ms(r.get::<_, Option<i64>>(3)?.unwrap_or(0)),
                        expires: from_ms(r.get(4)?),
                        token: r.get::<_, i64>(5)? as u64,
                    })
                },
            )
            .optional()
            .map_err(|e| self.err("reading a lease", e))
    }
}

#[async_trait]
impl LeaseManager for SqliteStore {
    async fn acquire(
        &self,
        template: &str,
        holder: &str,
    ) -> Result<pushguide_core::Lease, pushguide_core::Error> {
        let (store, t, h) = (self.clone(), template.to_owned(), holder.to_owned());
        let lease = blocking("acquiring a lease", move || {
            store.acquire_lease(&t, &h, "deployment")
        })
        .await?;
        tracing::debug!(template, holder, token = lease.token, "lease acquired");
        Ok(pushguide_core::Lease::new(template, holder, lease.token))
    }

    async fn release(&self, lease: &pushguide_core::Lease) -> Result<(), pushguide_core::Error> {
        let (store, l) = (self.clone(), lease.clone());
        blocking("releasing a lease", move || {
            store.release_lease(&l.template, &l.holder, l.token)
        })
        .await
    }

    /// Renews the lease ([`SqliteStore::renew_lease`]): held by its holder with its token through
    /// this store and not expired, or [`pushguide_core::Error::LeaseLost`] (naming who holds it now,
    /// if anyone). A database error is an error too, [`pushguide_core::Error::StoreFailed`] with the
    /// store's error as its source: a deployment that cannot prove it holds the lease stops.
    async fn check(&self, lease: &pushguide_core::Lease) -> Result<(), pushguide_core::Error> {
        let (store, l) = (self.clone(), lease.clone());
        // `Some(why)`: the lease is lost
        let lost = blocking("renewing a lease", move || {
            match store.renew_lease(&l.template, &l.holder, l.token) {
                Ok(_) => Ok(None),
                Err(Error::LeaseLost { .. }) => Ok(Some(match store.lease(&l.template) {
                    Ok(Some(now)) => format!(
                        "deployment {} holds it now (token {})",
                        now.holder, now.token
                    ),
                    Ok(None) => "it expired and nobody holds it now".to_owned(),
                    Err(e) => format!("it expired ({e})"),
                })),
                Err(e) => Err(e),
            }
        })
        .await?;
        match lost {
            None => Ok(()),
            Some(reason) => Err(pushguide_core::Error::LeaseLost {
                template: lease.template.clone(),
                holder: lease.holder.clone(),
                reason,
            }),
        }
    }
}
