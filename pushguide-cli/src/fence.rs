//! Fencing of a deployment on the PostgreSQL store, as the CLI sees it.
//!
//! Several instances share one database: a deployment whose process was paused (SIGSTOP, a frozen
//! VM) or cut off past its lease's TTL may find, when it wakes up, that another deployment took the
//! template over. The store already refuses its journal and fleet-state writes (they check the
//! fencing token in their own transaction); [`LeaseWatch`] adds the other half: every salt call
//! of the deployment first checks the lease, so a deployment that lost it touches no host again —
//! not even the next call of the stage it was in when it was paused. The loss is remembered, and
//! the command ends with [`crate::error::CliError::LeaseLost`] instead of the engine's outcome.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use pushguide_core::{
    Error, Event, FleetState, HistoryStore, HostChange, HostHistory, Lease, LeaseManager, MinionId,
    MinionStatus, MinionStatusStore, Report, Returns, SaltCall, StatusChange, TargetExpr,
    Transport, TransportError, TransportErrorKind,
};
use pushguide_postgres::PgStore;

/// The PostgreSQL store's ports for one engine, watching its deployment's lease: the lease taken
/// is kept, and a lost lease or a fenced write is remembered ([`LeaseWatch::lost`]).
#[derive(Debug)]
pub struct LeaseWatch {
    store: PgStore,
    ttl: Duration,
    held: Mutex<Option<Lease>>,
    lost: Mutex<Option<String>>,
}

impl LeaseWatch {
    /// Watches the leases taken through `store`, whose lease TTL is `ttl`.
    pub fn new(store: PgStore, ttl: Duration) -> Self {
        LeaseWatch {
            store,
            ttl,
            held: Mutex::new(None),
            lost: Mutex::new(None),
        }
    }

    /// Why the deployment lost its lease, once it did.
    pub fn lost(&self) -> Option<String> {
        self.lost
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn note(&self, r: &Result<(), Error>) {
        if let Err(e @ (Error::LeaseLost { .. } | Error::Fenced { .. })) = r {
            let mut lost = self.lost.lock().unwrap_or_else(PoisonError::into_inner);
            if lost.is_none() {
                tracing::error!(error = %e, "lease lost: touching no host and writing nothing more");
                *lost = Some(e.to_string());
            }
        }
    }

    fn held(&self) -> Option<Lease> {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Before a salt call: whether the deployment still holds its lease (no lease taken: a dry
    /// run or a plan, nothing to check).
    async fn before_call(&self) -> Result<(), TransportError> {
        if let Some(lost) = self.lost() {
            return Err(refused(&lost));
        }
        let Some(lease) = self.held() else {
            return Ok(());
        };
        // A check answered long after it was asked proves nothing: the process may have been
        // paused while the answer waited in the socket, and the lease taken over meanwhile. Only
        // an answer within a quarter of the TTL counts; otherwise ask again.
        let mut r = Ok(());
        for _ in 0..3 {
            let asked = Instant::now();
            r = LeaseManager::check(self, &lease).await;
            if r.is_err() || asked.elapsed() < self.ttl / 4 {
                break;
            }
            r = Err(Error::LeaseLost {
                template: lease.template.clone(),
                holder: lease.holder.clone(),
                reason: format!(
                    "its check took {} ms, more than a quarter of the lease TTL",
                    asked.elapsed().as_millis()
                ),
            });
        }
        match r {
            Ok(()) => Ok(()),
            Err(e @ (Error::LeaseLost { .. } | Error::Fenced { .. })) => {
                Err(refused(&self.lost().unwrap_or_else(|| e.to_string())))
            }
            // the database cannot say: do not touch a host without knowing the lease is held
            Err(e) => Err(TransportError::new(
                TransportErrorKind::Unsupported,
                format!("not sent: the lease cannot be checked: {e}"),
            )),
        }
    }
}

fn refused(why: &str) -> TransportError {
    TransportError::new(
        TransportErrorKind::Unsupported,
        format!("not sent: this deployment lost its lease ({why})"),
    )
}

#[pushguide_core::async_trait]
impl LeaseManager for LeaseWatch {
    async fn acquire(&self, template: &str, holder: &str) -> Result<Lease, Error> {
        // deployments of this template whose instance died (lease expired or taken over) are
        // marked interrupted first, as `pushguide recover` would; a live one is never touched
        match self.store.recover(Some(template)).await {
            Ok(ids) if !ids.is_empty() => {
                tracing::warn!(template, interrupted = ?ids,
                    "earlier deployments of this template were marked interrupted");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(template, error = %e,
                "could not mark dead deployments of this template interrupted"),
        }
        let lease = self.store.acquire(template, holder).await?;
        *self.held.lock().unwrap_or_else(PoisonError::into_inner) = Some(lease.clone());
        Ok(lease)
    }

    async fn release(&self, lease: &Lease) -> Result<(), Error> {
        self.store.release(lease).await
    }

    async fn check(&self, lease: &Lease) -> Result<(), Error> {
        let r = self.store.check(lease).await;
        self.note(&r);
        r
    }
}

#[pushguide_core::async_trait]
impl FleetState for LeaseWatch {
    async fn versions(
        &self,
        template: &str,
        hosts: &[MinionId],
    ) -> Result<HashMap<MinionId, HostHistory>, Error> {
        self.store.versions(template, hosts).await
    }

    async fn record(
        &self,
        lease: &Lease,
        hosts: &[MinionId],
        change: &HostChange,
    ) -> Result<(), Error> {
        let r = FleetState::record(&self.store, lease, hosts, change).await;
        self.note(&r);
        r
    }
}

#[pushguide_core::async_trait]
impl HistoryStore for LeaseWatch {
    async fn append(&self, events: &[Event]) -> Result<(), Error> {
        let r = self.store.append(events).await;
        self.note(&r);
        r
    }

    async fn finish(&self, report: &Report) -> Result<(), Error> {
        let r = self.store.finish(report).await;
        self.note(&r);
        r
    }
}

#[pushguide_core::async_trait]
impl MinionStatusStore for LeaseWatch {
    async fn record(
        &self,
        checks: &[(MinionId, bool)],
        at: SystemTime,
    ) -> Result<Vec<StatusChange>, Error> {
        MinionStatusStore::record(&self.store, checks, at).await
    }

    async fn status(&self, minions: &[MinionId]) -> Result<Vec<MinionStatus>, Error> {
        self.store.status(minions).await
    }
}

/// A transport that sends a call only while the deployment of its [`LeaseWatch`] holds its lease.
pub struct FencedTransport {
    inner: Arc<dyn Transport>,
    watch: Arc<LeaseWatch>,
}

impl FencedTransport {
    /// `inner`, checked against `watch` before every call.
    pub fn new(inner: Arc<dyn Transport>, watch: Arc<LeaseWatch>) -> Self {
        FencedTransport { inner, watch }
    }
}

#[pushguide_core::async_trait]
impl Transport for FencedTransport {
    async fn call(&self, targets: &[MinionId], call: &SaltCall) -> Result<Returns, TransportError> {
        self.watch.before_call().await?;
        self.inner.call(targets, call).await
    }

    async fn resolve(&self, target: &TargetExpr) -> Result<Vec<MinionId>, TransportError> {
        self.inner.resolve(target).await
    }
}
