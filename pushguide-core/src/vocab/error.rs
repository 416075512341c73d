//! The crate's error type.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Characters of a field path or source name an error shows.
const MAX_FIELD_CHARS: usize = 300;
/// Characters of a reason (or of one line of a parser's message) an error shows.
const MAX_REASON_CHARS: usize = 500;
/// Lines of a parser's message an error shows.
const MAX_MESSAGE_LINES: usize = 12;

/// Everything that can go wrong in pushguide-core, as one typed enum.
///
/// Variants carry what was wrong and where (a field path, a template, a host), so the message alone tells
/// a user what to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A value failed validation. `field` is the path of the value (e.g. `rollout.batch`).
    #[error("invalid value for `{field}`: {reason} (got {value})")]
    Invalid {
        /// Path of the field, e.g. `targets.minions[2]`.
        field: String,
        /// The rejected value, quoted, escaped and cut by [`crate::vocab::text::quote`].
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
        /// The unknown kind, escaped and cut by [`crate::vocab::text::clean`].
        kind: String,
        /// Every registered kind, sorted.
        known: Vec<String>,
    },
    /// The principal may not perform the action on the template.
    #[error("user `{user}` may not {action} template `{template}`")]
    Forbidden {
        /// The acting user.
        user: String,
        /// What was attempted.
        action: crate::vocab::action::Action,
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
        source: TransportError,
    },
    /// The project type's `prepare` hook refused the release.
    #[error("prepare failed for template `{template}`: {source}")]
    Prepare {
        /// The template.
        template: String,
        /// The hook's error.
        #[source]
        source: Box<StageError>,
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
    /// A store (history, fleet state, leases, minion status) failed; the source says why. Stores
    /// put their own error there, so a caller can walk [`std::error::Error::source`] down to it.
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
    /// An [`Error::Invalid`]. The one constructor of that variant: `value` is quoted, escaped and
    /// cut with [`crate::vocab::text::quote`]; `field` and `reason` (which may embed user-supplied parts,
    /// such as a minion id in `project.hosts.<id>.root`) are escaped and cut with
    /// [`crate::vocab::text::clean`]. So the message is bounded and holds no raw control or bidi
    /// character, however large or hostile the value.
    ///
    /// ```
    /// use pushguide_core::Error;
    /// let e = Error::invalid("name", "x".repeat(100_000) + "\u{1b}[2J", "too long");
    /// let text = e.to_string();
    /// assert!(text.len() < 600 && !text.contains('\u{1b}'));
    /// assert!(text.contains("(100004 bytes)"));
    /// ```
    pub fn invalid(
        field: impl Into<String>,
        value: impl ToString,
        reason: impl Into<String>,
    ) -> Self {
        Error::Invalid {
            field: crate::vocab::text::clean(&field.into(), MAX_FIELD_CHARS),
            value: crate::vocab::text::quote(&value.to_string()),
            reason: crate::vocab::text::clean(&reason.into(), MAX_REASON_CHARS),
        }
    }

    /// An [`Error::Parse`], with both parts escaped and cut ([`crate::vocab::text::clean`]): a parser's
    /// message may quote the offending source line, which can be megabytes long or hold escape
    /// sequences. The lines of a multi-line message are joined with `; `, each cut on its own.
    pub fn parse(source_name: impl Into<String>, message: impl Into<String>) -> Self {
        let message: String = message.into();
        let mut lines: Vec<String> = message
            .trim_end()
            .lines()
            .take(MAX_MESSAGE_LINES)
            .map(|l| crate::vocab::text::clean(l, MAX_REASON_CHARS))
            .collect();
        if message.trim_end().lines().nth(MAX_MESSAGE_LINES).is_some() {
            lines.push("…".to_owned());
        }
        Error::Parse {
            source_name: crate::vocab::text::clean(&source_name.into(), MAX_FIELD_CHARS),
            message: lines.join("; "),
        }
    }
}

/// Why a stage hook stopped. Failures of single hosts are not errors: the context records them and the
/// hook goes on with the remaining hosts. An error fails every host still live in the batch.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StageError {
    /// The deployment was cancelled; returned by [`crate::StageContext::call`] after a cancel.
    #[error("cancelled")]
    Cancelled,
    /// The hook was used wrongly (e.g. a mutating call during prepare).
    #[error("{0}")]
    Misuse(String),
    /// The hook refused to go on, with a reason.
    #[error("{0}")]
    Failed(String),
    /// A core error (validation, configuration).
    #[error(transparent)]
    Core(#[from] Error),
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
///
/// It keeps the transport's own error as its [`std::error::Error::source`] (e.g. a
/// `pushguide_salt::SaltError`, with the endpoint and HTTP status), so a caller can downcast it; the
/// source is not serialized and not compared.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TransportError {
    /// The kind.
    pub kind: TransportErrorKind,
    /// What happened; never contains credentials.
    pub message: String,
    #[serde(skip)]
    source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl PartialEq for TransportError {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && self.message == other.message
    }
}

impl Eq for TransportError {}

impl TransportError {
    /// A new error.
    pub fn new(kind: TransportErrorKind, message: impl Into<String>) -> Self {
        TransportError {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// Keeps `source`, the transport's own error, as this error's source.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Arc::new(source));
        self
    }

    /// Whether sending the same request again (possibly elsewhere) may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.kind,
            TransportErrorKind::Unreachable | TransportErrorKind::Timeout
        )
    }
}

impl std::error::Error for TransportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.message)
    }
}
