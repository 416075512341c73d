//! The crate's error type.

use std::time::Duration;

/// Everything that can go wrong in pushguide-core, as one typed enum.
///
/// Variants carry what was wrong and where (a field path, a template, a host), so the message alone tells
/// a user what to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A value failed validation. `field` is the path of the value (e.g. `rollout.batch`).
    #[error("invalid value for `{field}`: {reason} (got \"{value}\")")]
    Invalid {
        /// Path of the field, e.g. `targets.minions[2]`.
        field: String,
        /// The rejected value, escaped and shortened for display.
        value: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A template file or string could not be parsed.
    #[error("cannot parse template {source_name}: {message}")]
    Parse {
        /// Where the template came from (file path or `<string>`).
        source_name: String,
        /// The parser's message, including the line and column where known.
        message: String,
    },
    /// A template names a project type that no linked plugin registers.
    #[error("unknown project kind `{kind}` at `{field}`; known kinds: {}", known.join(", "))]
    UnknownKind {
        /// Path of the field that held the kind.
        field: String,
        /// The unknown kind.
        kind: String,
        /// Every registered kind, sorted.
        known: Vec<String>,
    },
    /// The principal may not perform the action on the template.
    #[error("user `{user}` may not {action} template `{template}`")]
    Forbidden {
        /// The acting user.
        user: String,
        /// What was attempted (`deploy`, `view`).
        action: &'static str,
        /// The template.
        template: String,
    },
    /// Another deployment holds the template's lease.
    #[error("template `{template}` is busy: deployment {holder} is running")]
    Busy {
        /// The template.
        template: String,
        /// The deployment holding the lease.
        holder: String,
    },
    /// A running deployment no longer holds its template's lease (it expired and another process
    /// took it over): the deployment stops before its next batch.
    #[error("deployment {holder} lost the lease on template `{template}`: {reason}")]
    LeaseLost {
        /// The template.
        template: String,
        /// The deployment that held the lease.
        holder: String,
        /// What the lease manager found.
        reason: String,
    },
    /// A target expression resolved to no minion, or the request's host subset is not in the template.
    #[error("no hosts to deploy to for template `{template}`: {reason}")]
    NoHosts {
        /// The template.
        template: String,
        /// Why.
        reason: String,
    },
    /// The transport failed outside of a stage (resolving targets, pre-flight).
    #[error("transport error while {during}: {source}")]
    Transport {
        /// What the engine was doing.
        during: &'static str,
        /// The transport's error.
        #[source]
        source: crate::transport::TransportError,
    },
    /// The project type's `prepare` hook refused the release.
    #[error("prepare failed for template `{template}`: {source}")]
    Prepare {
        /// The template.
        template: String,
        /// The hook's error.
        #[source]
        source: Box<crate::deployer::StageError>,
    },
    /// A deployment handle was used after its deployment ended.
    #[error("deployment {0} has already finished")]
    Finished(String),
    /// No decision is awaited right now.
    #[error("deployment {0} is not waiting for a decision")]
    NoDecisionPending(String),
    /// The deployment task ended without a report (it panicked or was aborted).
    #[error("deployment {0} ended without a report: {1}")]
    Lost(String, String),
    /// The history store failed.
    #[error("history store: {0}")]
    Store(String),
    /// A store refused a fleet state write because the deployment's lease is no longer the
    /// template's current one (it expired and was taken over): the deployment must stop touching hosts.
    #[error("store refused a write for template `{template}` from deployment {holder}: its lease (token {token}) is no longer current")]
    Fenced {
        /// The template.
        template: String,
        /// The deployment whose write was refused.
        holder: String,
        /// The stale fencing token.
        token: u64,
    },
    /// A store (history, fleet state, leases) failed; the source says why.
    #[error("store failed while {during}: {source}")]
    StoreFailed {
        /// What was being done.
        during: &'static str,
        /// The store's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// Waiting took longer than allowed.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
}

impl Error {
    /// Shorthand for [`Error::Invalid`].
    pub fn invalid(
        field: impl Into<String>,
        value: impl ToString,
        reason: impl Into<String>,
    ) -> Self {
        Error::Invalid {
            field: field.into(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}
