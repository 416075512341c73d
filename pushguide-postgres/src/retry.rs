//! Writes that survive a broken connection: a database restart, a terminated backend or a network
//! blip. Such a write is retried on a fresh pooled connection with a short, bounded backoff; every
//! other error (a constraint, a fencing refusal, bad data) is returned at once. The writes retried
//! are idempotent (see `PgStore::append_events`): a retry after a commit whose answer was lost
//! records nothing twice.

use std::future::Future;
use std::time::{Duration, Instant};

use deadpool_postgres::PoolError;
use tokio_postgres::error::SqlState;

use crate::error::Error;

/// How long a write keeps retrying a broken connection before giving up.
pub(crate) const RETRY_BUDGET: Duration = Duration::from_secs(10);
const FIRST_PAUSE: Duration = Duration::from_millis(50);
const LONGEST_PAUSE: Duration = Duration::from_secs(1);

/// Whether `e` means the connection broke (closed, the server shutting down or not accepting
/// connections yet, a connection or I/O failure) rather than the database refusing the statement.
fn connection_broke(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    if let Some(db) = e.as_db_error() {
        let code = db.code();
        return *code == SqlState::ADMIN_SHUTDOWN
            || *code == SqlState::CRASH_SHUTDOWN
            || *code == SqlState::CANNOT_CONNECT_NOW
            || code.code().starts_with("08");
    }
    // connection failures and I/O errors carry the I/O error as their source
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.is::<std::io::Error>() {
            return true;
        }
        source = s.source();
    }
    false
}

impl Error {
    /// Whether this error means the connection to the database broke (see the module docs): the
    /// same write may succeed on a fresh connection.
    pub fn is_connection_lost(&self) -> bool {
        match self {
            Error::Db { source, .. } => connection_broke(source),
            Error::Pool { source, .. } => match source {
                PoolError::Backend(e) => connection_broke(e),
                PoolError::Timeout(_) => true,
                _ => false,
            },
            _ => false,
        }
    }
}

/// Runs `write` (given the attempt number, 0 first) until it succeeds, fails with an error that is
/// not a broken connection, or [`RETRY_BUDGET`] has passed.
pub(crate) async fn on_fresh_connection<T, F, Fut>(
    what: &'static str,
    mut write: F,
) -> Result<T, Error>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    let begun = Instant::now();
    let mut pause = FIRST_PAUSE;
    let mut attempt = 0;
    loop {
        match write(attempt).await {
            Err(e) if e.is_connection_lost() && begun.elapsed() + pause <= RETRY_BUDGET => {
                tracing::warn!(error = %e, attempt, what, "the database connection broke; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(LONGEST_PAUSE);
                attempt += 1;
            }
            Err(e) => return Err(e),
            Ok(v) => {
                if attempt > 0 {
                    tracing::info!(attempt, what, "written after the connection broke");
                }
                return Ok(v);
            }
        }
    }
}

#[cfg(test)]
#[path = "retry_tests.rs"]
pub(crate) mod tests;
