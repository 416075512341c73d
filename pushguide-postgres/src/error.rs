//! The crate's error type.

/// What went wrong in the PostgreSQL store. Messages name the endpoint (`host:port/database`, never
/// the user's password) and what was being done.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting of [`crate::PgConfig`] is not usable.
    #[error("PostgreSQL store setting `{setting}` is invalid: {reason}")]
    Config {
        /// The setting (`url`, `schema`, `password_env`, …).
        setting: &'static str,
        /// Why.
        reason: String,
    },
    /// The password could not be read from its source.
    #[error("cannot read the PostgreSQL password from {from}: {reason}")]
    Password {
        /// The source: `environment variable NAME` or `file PATH`.
        from: String,
        /// Why (never the password).
        reason: String,
    },
    /// The database answered with an error, or the connection broke.
    #[error("PostgreSQL {endpoint} failed while {during}: {source}")]
    Db {
        /// `host:port/database`.
        endpoint: String,
        /// What was being done.
        during: &'static str,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// No connection could be taken from the pool.
    #[error("no PostgreSQL connection to {endpoint} while {during}: {source}")]
    Pool {
        /// `host:port/database`.
        endpoint: String,
        /// What was being done.
        during: &'static str,
        /// The pool's error.
        #[source]
        source: deadpool_postgres::PoolError,
    },
    /// The database was migrated by a newer pushguide: this binary refuses to touch it.
    #[error(
        "PostgreSQL {endpoint} has pushguide schema version {found}, newer than this binary \
         supports ({supported}): upgrade pushguide (or point it at another database)"
    )]
    NewerSchema {
        /// `host:port/database`.
        endpoint: String,
        /// The version found in the database.
        found: i64,
        /// The newest version this binary knows.
        supported: i64,
    },
    /// Another deployment holds the template's live lease.
    #[error("template `{template}` is being deployed by {holder} (instance {owner}, {reason})")]
    Busy {
        /// The template.
        template: String,
        /// The deployment holding the lease.
        holder: String,
        /// The store instance holding it.
        owner: String,
        /// Why it was taken.
        reason: String,
    },
    /// A lease is no longer held by the deployment that asks (expired, taken over or released).
    #[error("deployment {holder} lost its lease on template `{template}`: {reason}")]
    LeaseLost {
        /// The template.
        template: String,
        /// The deployment.
        holder: String,
        /// What the store found.
        reason: String,
    },
    /// A write of a deployment was refused: its fencing token is no longer the template's current one.
    #[error(
        "write for template `{template}` from deployment {holder} refused: its lease (token {token}) \
         is no longer current{}",
        match current {
            Some((h, t)) => format!(" ({h} holds token {t})"),
            None => String::new(),
        }
    )]
    Fenced {
        /// The template.
        template: String,
        /// The deployment whose write was refused.
        holder: String,
        /// Its stale token.
        token: u64,
        /// The live holder and token, if any.
        current: Option<(String, u64)>,
    },
    /// Events of a deployment whose `DeploymentStarted` was never appended.
    #[error(
        "deployment {deployment} is not recorded: its DeploymentStarted event was never appended"
    )]
    UnknownDeployment {
        /// The deployment id.
        deployment: String,
    },
    /// A write about a publish request that this instance does not run (another instance claimed
    /// it, or it is no longer running).
    #[error("publish request {id} is not running under this instance{}", match (state, worker) {
        (None, _) => " (no such request)".to_owned(),
        (Some(s), Some(w)) => format!(" (it is {s}, claimed by {w})"),
        (Some(s), None) => format!(" (it is {s})"),
    })]
    NotClaimed {
        /// The request.
        id: i64,
        /// Its state, if it exists.
        state: Option<String>,
        /// The instance that claimed it, if any.
        worker: Option<String>,
    },
    /// A stored value could not be read back.
    #[error("stored {what} cannot be read: {reason}")]
    Corrupt {
        /// What was read.
        what: &'static str,
        /// Why.
        reason: String,
    },
}

impl Error {
    /// Whether trying again later may succeed (a busy template, a broken or exhausted connection).
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Busy { .. } | Error::Pool { .. } => true,
            Error::Db { source, .. } => source.is_closed() || source.as_db_error().is_none(),
            _ => false,
        }
    }

    /// Core's error for this one: lease refusals keep their meaning, the rest becomes
    /// [`pushguide_core::Error::StoreFailed`] with this error as its source.
    pub(crate) fn into_core(self, during: &'static str) -> pushguide_core::Error {
        match self {
            Error::Busy {
                template, holder, ..
            } => pushguide_core::Error::Busy { template, holder },
            Error::LeaseLost {
                template,
                holder,
                reason,
            } => pushguide_core::Error::LeaseLost {
                template,
                holder,
                reason,
            },
            Error::Fenced {
                template,
                holder,
                token,
                ..
            } => pushguide_core::Error::Fenced {
                template,
                holder,
                token,
            },
            other => pushguide_core::Error::StoreFailed {
                during,
                source: Box::new(other),
            },
        }
    }
}

/// The web service's store error ([`pushguide_store::ServerStore`]) for this one: a failure of
/// PostgreSQL comes back as [`pushguide_store::Error::Backend`] with this error (which names the
/// endpoint, never a password) as its source, retryable when [`Error::is_retryable`] says so.
impl From<Error> for pushguide_store::Error {
    fn from(e: Error) -> Self {
        if let Error::NotClaimed { id, state, worker } = e {
            // the same refusal as the SQLite store's
            return pushguide_store::Error::NotClaimed { id, state, worker };
        }
        pushguide_store::Error::Backend {
            backend: "postgres",
            retryable: e.is_retryable(),
            source: Box::new(e),
        }
    }
}
