//! The narrow interface through which the engine reaches minions.

use std::fmt;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::call::{MinionId, Returns, SaltCall};

/// How salt interprets a target expression (`tgt_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum TargetType {
    /// Shell-style glob on minion ids (`web-*`).
    Glob,
    /// Comma-separated list of ids.
    List,
    /// Grain match (`os:Windows`).
    Grain,
    /// Perl-compatible regular expression on ids.
    Pcre,
    /// Compound matcher (`G@os:Debian and web-*`).
    Compound,
    /// A nodegroup defined on the master.
    Nodegroup,
}

impl TargetType {
    /// The `tgt_type` string salt expects.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetType::Glob => "glob",
            TargetType::List => "list",
            TargetType::Grain => "grain",
            TargetType::Pcre => "pcre",
            TargetType::Compound => "compound",
            TargetType::Nodegroup => "nodegroup",
        }
    }
}

/// A salt target expression and its type, resolved to minion ids by [`Transport::resolve`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetExpr {
    /// The expression, e.g. `web-*`.
    pub expression: String,
    /// How salt should read it.
    #[serde(rename = "type", default = "default_tgt_type")]
    pub tgt_type: TargetType,
}

fn default_tgt_type() -> TargetType {
    TargetType::Glob
}

/// What kind of failure a [`TransportError`] is; decides whether retrying can help.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum TransportErrorKind {
    /// Credentials refused.
    Auth,
    /// No endpoint could be reached.
    Unreachable,
    /// The request or job timed out as a whole.
    Timeout,
    /// The peer answered something that could not be understood.
    Protocol,
    /// The peer answered with an error status.
    Api,
    /// The transport does not support the request (e.g. a target type).
    Unsupported,
}

/// A failure of a whole request (as opposed to one minion's [`crate::Outcome::Failed`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub struct TransportError {
    /// The kind.
    pub kind: TransportErrorKind,
    /// What happened; never contains credentials.
    pub message: String,
}

impl TransportError {
    /// A new error.
    pub fn new(kind: TransportErrorKind, message: impl Into<String>) -> Self {
        TransportError {
            kind,
            message: message.into(),
        }
    }

    /// Whether sending the same request again (possibly elsewhere) may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.kind,
            TransportErrorKind::Unreachable | TransportErrorKind::Timeout
        )
    }
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.message)
    }
}

/// Sends salt calls to minions. Implemented by the salt-api client (`pushguide-salt`), by
/// [`crate::sim::SimFleet`] (feature `sim`) and, for unit tests, by `MockTransport` (feature `mock`).
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

/// Resolves a `list` target without asking anyone; other types are `Unsupported`.
pub fn resolve_list(target: &TargetExpr) -> Result<Vec<MinionId>, TransportError> {
    if target.tgt_type != TargetType::List {
        return Err(TransportError::new(
            TransportErrorKind::Unsupported,
            format!(
                "this transport cannot resolve `{}` targets",
                target.tgt_type.as_str()
            ),
        ));
    }
    target
        .expression
        .split(',')
        .map(|s| {
            MinionId::new(s.trim())
                .map_err(|e| TransportError::new(TransportErrorKind::Protocol, e.to_string()))
        })
        .collect()
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
