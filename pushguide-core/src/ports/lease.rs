//! One deployment per template at a time, fenced.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;

use crate::vocab::error::Error;

/// A lease on a template held by one deployment, with its fencing token.
///
/// The token grows with every acquisition of the template's lease. Every write a deployment makes to
/// fleet state carries its lease, and a store refuses a write whose token is not the template's
/// current one: a deployment whose lease was taken over can no longer change what the store says
/// runs where.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Lease {
    /// The template.
    pub template: String,
    /// The deployment holding it.
    pub holder: String,
    /// The fencing token.
    pub token: u64,
}

impl Lease {
    /// A lease value (for lease managers and tests).
    pub fn new(template: impl Into<String>, holder: impl Into<String>, token: u64) -> Self {
        Lease {
            template: template.into(),
            holder: holder.into(),
            token,
        }
    }
}

/// Grants exclusive use of a template to one deployment. The in-memory [`MemoryLeases`] serves one
/// process; a durable implementation serves several processes sharing a database.
///
/// A lease belongs to exactly one holder: acquiring a template that any live lease holds fails with
/// [`Error::Busy`], whoever asks (deployment ids are unique, so there is no re-entrant case).
///
/// ```
/// # tokio_test_block_on(async {
/// use pushguide_core::{Error, LeaseManager, MemoryLeases};
///
/// let leases = MemoryLeases::default();
/// let lease = leases.acquire("shop", "shop-1").await.unwrap();
/// assert!(matches!(leases.acquire("shop", "shop-2").await, Err(Error::Busy { .. })));
/// leases.check(&lease).await.unwrap(); // the engine asks before every batch
/// leases.release(&lease).await.unwrap();
/// assert!(matches!(leases.check(&lease).await, Err(Error::LeaseLost { .. })));
/// let next = leases.acquire("shop", "shop-2").await.unwrap();
/// assert!(next.token > lease.token);
/// # });
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
/// # }
/// ```
#[async_trait]
pub trait LeaseManager: Send + Sync + std::fmt::Debug {
    /// Takes the lease on `template` for deployment `holder`, or fails with [`Error::Busy`] naming
    /// the holder.
    async fn acquire(&self, template: &str, holder: &str) -> Result<Lease, Error>;
    /// Gives `lease` back; a no-op when it is no longer held with that token (someone else's lease is
    /// never released).
    async fn release(&self, lease: &Lease) -> Result<(), Error>;
    /// Whether `lease` is still held (a durable manager renews it here). The engine asks before every
    /// batch, of the release and of a rollback: on an error (say [`Error::LeaseLost`]) the deployment
    /// stops touching hosts, since another deployment may own the template now.
    async fn check(&self, lease: &Lease) -> Result<(), Error>;
}

/// Leases kept in this process's memory.
#[derive(Debug, Default)]
pub struct MemoryLeases {
    inner: Mutex<MemoryLeasesInner>,
}

#[derive(Debug, Default)]
struct MemoryLeasesInner {
    /// template -> (holder, token) of the live lease
    held: HashMap<String, (String, u64)>,
    /// template -> last token handed out
    tokens: HashMap<String, u64>,
}

#[async_trait]
impl LeaseManager for MemoryLeases {
    async fn acquire(&self, template: &str, holder: &str) -> Result<Lease, Error> {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((current, _)) = inner.held.get(template) {
            return Err(Error::Busy {
                template: template.to_owned(),
                holder: current.clone(),
            });
        }
        let token = inner.tokens.entry(template.to_owned()).or_insert(0);
        *token += 1;
        let token = *token;
        inner
            .held
            .insert(template.to_owned(), (holder.to_owned(), token));
        Ok(Lease::new(template, holder, token))
    }

    async fn release(&self, lease: &Lease) -> Result<(), Error> {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if inner
            .held
            .get(&lease.template)
            .is_some_and(|(h, t)| *h == lease.holder && *t == lease.token)
        {
            inner.held.remove(&lease.template);
        }
        Ok(())
    }

    async fn check(&self, lease: &Lease) -> Result<(), Error> {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        match inner.held.get(&lease.template) {
            Some((h, t)) if *h == lease.holder && *t == lease.token => Ok(()),
            other => Err(Error::LeaseLost {
                template: lease.template.clone(),
                holder: lease.holder.clone(),
                reason: match other {
                    Some((h, t)) => format!("deployment {h} holds it (token {t})"),
                    None => "nobody holds it".to_owned(),
                },
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn second_holder_is_refused_until_release() {
        let l = MemoryLeases::default();
        let d1 = l.acquire("shop", "d1").await.unwrap();
        let err = l.acquire("shop", "d2").await.unwrap_err();
        assert!(matches!(err, Error::Busy { ref holder, .. } if holder == "d1"));
        // the same holder name is refused too: a lease has one owner
        assert!(l.acquire("shop", "d1").await.is_err());
        // releasing someone else's lease (wrong holder or stale token) does nothing
        l.release(&Lease::new("shop", "d2", d1.token))
            .await
            .unwrap();
        l.release(&Lease::new("shop", "d1", d1.token + 7))
            .await
            .unwrap();
        assert!(l.acquire("shop", "d3").await.is_err());
        l.release(&d1).await.unwrap();
        let d3 = l.acquire("shop", "d3").await.unwrap();
        assert_eq!(d3.token, d1.token + 1);
        // the old lease stays lost, even under the same holder name
        assert!(l.check(&d1).await.is_err());
        l.check(&d3).await.unwrap();
        l.acquire("other", "d4").await.unwrap();
    }
}
