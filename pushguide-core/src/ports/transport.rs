//! The narrow interface through which the engine reaches minions.

use async_trait::async_trait;

use crate::vocab::call::{MinionId, Returns, SaltCall};
use crate::vocab::error::TransportError;
use crate::vocab::target::{resolve_list, TargetExpr};

/// Sends salt calls to minions. Implemented by the salt-api client (`pushguide-salt`), by
/// `sim::SimFleet` (feature `sim`) and, for unit tests, by `MockTransport` (feature `mock`).
///
/// One `call` is ONE salt request for all `targets`; the engine never calls it once per host.
///
/// ```
/// use pushguide_core::{MinionId, Outcome, Returns, SaltCall, Transport, TransportError};
/// use pushguide_core::{TargetExpr};
///
/// /// A transport where every minion answers `true` at once.
/// struct Instant;
///
/// #[async_trait::async_trait]
/// impl Transport for Instant {
///     async fn call(&self, targets: &[MinionId], _call: &SaltCall) -> Result<Returns, TransportError> {
///         Ok(Returns::uniform(targets, Outcome::ok(true)))
///     }
/// }
/// # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// # rt.block_on(async {
/// let web = MinionId::new("web-01").unwrap();
/// let mut r = Instant.call(&[web.clone()], &SaltCall::read("test.ping")).await.unwrap();
/// assert!(r.take(&web).is_ok());
/// # });
/// ```
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait Transport: Send + Sync {
    /// Runs `call` on every minion of `targets` with one request and returns each one's outcome.
    async fn call(&self, targets: &[MinionId], call: &SaltCall) -> Result<Returns, TransportError>;

    /// Resolves a target expression to minion ids. The default supports only `list`.
    async fn resolve(&self, target: &TargetExpr) -> Result<Vec<MinionId>, TransportError> {
        resolve_list(target)
    }
}

#[async_trait]
impl<T: Transport + ?Sized> Transport for std::sync::Arc<T> {
    async fn call(&self, targets: &[MinionId], call: &SaltCall) -> Result<Returns, TransportError> {
        (**self).call(targets, call).await
    }
    async fn resolve(&self, target: &TargetExpr) -> Result<Vec<MinionId>, TransportError> {
        (**self).resolve(target).await
    }
}

#[async_trait]
impl<T: Transport + ?Sized> Transport for Box<T> {
    async fn call(&self, targets: &[MinionId], call: &SaltCall) -> Result<Returns, TransportError> {
        (**self).call(targets, call).await
    }
    async fn resolve(&self, target: &TargetExpr) -> Result<Vec<MinionId>, TransportError> {
        (**self).resolve(target).await
    }
}
