//! The crate's error type.

use std::path::PathBuf;

use rusqlite::ErrorCode;

/// Everything that can go wrong in the store, as one typed enum. Every variant that concerns the
/// database file names it (`:memory:` for in-memory stores).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The database was written by a newer pushguide-store whose schema this build does not know.
    #[error(
        "{}: database schema version {found} is newer than this build of pushguide-store supports \
         (version {supported}); use a newer pushguide-store",
        path.display()
    )]
    NewerSchema {
        /// The database file.
        path: PathBuf,
        /// The schema version found in the file.
        found: u32,
        /// The newest schema version this build knows.
        supported: u32,
    },
    /// The file is not a SQLite database or is damaged.
    #[error("{}: not a pushguide database, or the file is corrupted: {source}", path.display())]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// Another connection kept the database locked for longer than the busy timeout.
    #[error("{}: database is locked by another connection (busy timeout elapsed): {source}", path.display())]
    Locked {
        /// The database file.
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// The file (or its directory, needed for the WAL files) cannot be written.
    #[error("{}: database is read-only{}", path.display(), source.as_ref().map(|e| format!(": {e}")).unwrap_or_default())]
    ReadOnly {
        /// The database file.
        path: PathBuf,
        /// SQLite's error, if SQLite reported one.
        #[source]
        source: Option<rusqlite::Error>,
    },
    /// The file cannot be opened or created (missing directory, permissions).
    #[error("{}: cannot open database: {source}", path.display())]
    Open {
        /// The database file.
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// Any other SQLite failure, with what the store was doing.
    #[error("{}: {during}: {source}", path.display())]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// What the store was doing.
        during: &'static str,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// Another live deployment holds the template's lease.
    #[error(
        "template `{template}` is busy: deployment {holder} holds its lease (owner {owner}, reason: {reason})"
    )]
    Busy {
        /// The template.
        template: String,
        /// The deployment holding the lease.
        holder: String,
        /// The process (store instance) holding it.
        owner: String,
        /// Why it was taken.
        reason: String,
    },
    /// A lease was renewed by a holder that no longer holds it (it expired and was taken over).
    #[error("lease on template `{template}` is no longer held by {holder}")]
    LeaseLost {
        /// The template.
        template: String,
        /// The former holder.
        holder: String,
    },
    /// A fleet state write carried a lease that is no longer the template's current one.
    #[error("fleet state write for template `{template}` refused: deployment {holder}'s lease (token {token}) is no longer current{}", match current {
        Some((h, t)) => format!("; deployment {h} holds it now (token {t})"),
        None => "; nobody holds it now".to_owned(),
    })]
    Fenced {
        /// The template.
        template: String,
        /// The deployment whose write was refused.
        holder: String,
        /// Its stale token.
        token: u64,
        /// Who holds the lease now, with its token.
        current: Option<(String, u64)>,
    },
    /// Events were appended for a deployment whose `DeploymentStarted` event was never recorded.
    #[error("{}: events for unknown deployment {deployment} (its DeploymentStarted event is missing)", path.display())]
    UnknownDeployment {
        /// The database file.
        path: PathBuf,
        /// The deployment id.
        deployment: String,
    },
    /// A user was added under a name that is taken (and replacing was not asked for).
    #[error("{}: user `{name}` exists already (replace it explicitly)", path.display())]
    UserExists {
        /// The database file.
        path: PathBuf,
        /// The user name.
        name: String,
    },
    /// A user named by an action (a group change, a deletion, a new API token) does not exist.
    #[error("{}: no user `{name}`", path.display())]
    NoSuchUser {
        /// The database file.
        path: PathBuf,
        /// The user name.
        name: String,
    },
    /// A stored value the store wrote itself does not read back (a damaged or foreign row).
    #[error("{}: {what} `{key}` is damaged: {reason}", path.display())]
    Damaged {
        /// The database file.
        path: PathBuf,
        /// What kind of row (`user`, `session`).
        what: &'static str,
        /// Its key (a user name; never a session token).
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// Another backend behind [`crate::ServerStore`] failed (PostgreSQL: a refused query, a lost
    /// connection), or a task running a store call died.
    #[error("{backend} store: {source}")]
    Backend {
        /// Which backend (`sqlite`, `postgres`).
        backend: &'static str,
        /// Whether the same call may succeed later (a lost connection, a busy pool).
        retryable: bool,
        /// The backend's own error; it never carries a password.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A write about a publish request ([`crate::PublishQueue::publish_started`],
    /// [`crate::PublishQueue::finish_publish`]) from a store instance that does not run it: another
    /// instance claimed it, or it is no longer running.
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
}

impl Error {
    /// Whether trying the same operation again (later) may succeed: the database was locked by
    /// another connection, or another deployment holds the template's lease. The same question as
    /// [`pushguide_core::TransportError::is_retryable`].
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::Locked { .. }
                | Error::Busy { .. }
                | Error::Backend {
                    retryable: true,
                    ..
                }
        )
    }

    /// Classifies a SQLite error by its code.
    pub(crate) fn sqlite(path: &std::path::Path, during: &'static str, e: rusqlite::Error) -> Self {
        let path = path.to_path_buf();
        match e.sqlite_error_code() {
            Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => {
                Error::Corrupt { path, source: e }
            }
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
                Error::Locked { path, source: e }
            }
            Some(ErrorCode::ReadOnly) => Error::ReadOnly {
                path,
                source: Some(e),
            },
            Some(ErrorCode::CannotOpen | ErrorCode::PermissionDenied) => {
                Error::Open { path, source: e }
            }
            _ => Error::Sqlite {
                path,
                during,
                source: e,
            },
        }
    }
}

impl Error {
    /// This error as core's, for the storage ports: a lease refusal, a lost lease and a fenced write
    /// become core's [`pushguide_core::Error::Busy`], [`pushguide_core::Error::LeaseLost`] and
    /// [`pushguide_core::Error::Fenced`] (the engine acts on those); every other error becomes
    /// [`pushguide_core::Error::StoreFailed`] saying what the port was `during`, with this error as
    /// its [`source`](std::error::Error::source), so the SQLite error beneath stays reachable.
    pub fn into_core(self, during: &'static str) -> pushguide_core::Error {
        match self {
            Error::Busy {
                template, holder, ..
            } => pushguide_core::Error::Busy { template, holder },
            Error::LeaseLost { template, holder } => pushguide_core::Error::LeaseLost {
                template,
                holder,
                reason: "it expired and was taken over".to_owned(),
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

/// [`Error::into_core`] for callers that name no operation.
impl From<Error> for pushguide_core::Error {
    fn from(e: Error) -> Self {
        e.into_core("using the SQLite store")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A busy template or database may free up; a refusal by schema, fence or lost lease does not.
    #[test]
    fn retryable_means_busy_or_locked() {
        let busy = Error::Busy {
            template: "shop".into(),
            holder: "d1".into(),
            owner: "h:1".into(),
            reason: "deployment".into(),
        };
        assert!(busy.is_retryable());
        let locked = Error::sqlite(
            std::path::Path::new("h.db"),
            "appending",
            rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(5), None),
        );
        assert!(matches!(locked, Error::Locked { .. }), "{locked:?}");
        assert!(locked.is_retryable());
        let permanent = [
            Error::NewerSchema {
                path: "h.db".into(),
                found: 99,
                supported: 8,
            },
            Error::LeaseLost {
                template: "shop".into(),
                holder: "d1".into(),
            },
            Error::Fenced {
                template: "shop".into(),
                holder: "d1".into(),
                token: 1,
                current: None,
            },
        ];
        for e in permanent {
            assert!(!e.is_retryable(), "{e}");
        }
    }
}
