//! Opening the database: pragmas, migrations, the owner record and its heartbeat.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pushguide_core::Stage;
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSqlOutput, ValueRef};
use rusqlite::{params, Connection, OpenFlags, ToSql, TransactionBehavior};

use crate::error::Error;
use crate::schema::{MIGRATIONS, SCHEMA_VERSION};

/// Settings for [`SqliteStore::open_with`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct StoreOptions {
    /// How long a statement waits for another connection's lock before failing with
    /// [`Error::Locked`]. Default 5 s.
    pub busy_timeout: Duration,
    /// How long a lease (and this process's liveness) lasts without renewal. A background thread
    /// renews both every third of it. Default 30 s.
    pub lease_ttl: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            busy_timeout: Duration::from_secs(5),
            lease_ttl: Duration::from_secs(30),
        }
    }
}

impl StoreOptions {
    /// Sets [`StoreOptions::busy_timeout`].
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// Sets [`StoreOptions::lease_ttl`].
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }
}

/// The embedded SQLite store: history journal ([`pushguide_core::HistoryStore`]), fleet state
/// ([`pushguide_core::FleetState`]), durable leases ([`pushguide_core::LeaseManager`]), recovery and
/// statistics. Cheap to clone; clones share one connection and one owner identity.
///
/// Each `SqliteStore` opened is one *owner* (a process, usually): a background thread renews its
/// leases and its heartbeat every third of [`StoreOptions::lease_ttl`]. When the process dies the
/// heartbeat stops, its leases expire and [`SqliteStore::recover`] marks its unfinished deployments
/// interrupted.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) conn: Mutex<Connection>,
    pub(crate) path: PathBuf,
    pub(crate) owner: String,
    pub(crate) ttl: Duration,
    // Dropping it wakes and ends the heartbeat thread.
    stop: Mutex<Option<mpsc::Sender<()>>>,
}

/// Runs blocking store work on tokio's blocking threads (the async ports' implementations), so that
/// a database write never holds an async worker. An error becomes core's saying what the port was
/// `during`, with the store's error as its source ([`Error::into_core`]).
pub(crate) async fn blocking<T, F>(during: &'static str, f: F) -> Result<T, pushguide_core::Error>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, Error> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(|e| e.into_core(during)),
        Err(e) => Err(pushguide_core::Error::StoreFailed {
            during,
            source: Box::new(e),
        }),
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let conn = self.conn.get_mut().unwrap_or_else(PoisonError::into_inner);
        // A clean shutdown: give the leases back and forget the owner so nothing waits for expiry.
        let released = conn
            .execute(
                "UPDATE leases SET holder = NULL, owner = NULL, expires_ms = 0 WHERE owner = ?1",
                [&self.owner],
            )
            .and_then(|_| conn.execute("DELETE FROM owners WHERE owner = ?1", [&self.owner]));
        if let Err(e) = released {
            tracing::warn!(path = %self.path.display(), error = %e, "could not release leases on close");
        }
    }
}

static INSTANCE: AtomicU64 = AtomicU64::new(0);

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` with default [`StoreOptions`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self, Error> {
        Self::open_with(path, StoreOptions::default())
    }

    /// Opens a private in-memory database (for tests; lost when the last clone is dropped).
    pub fn open_in_memory() -> Result<Self, Error> {
        let path = PathBuf::from(":memory:");
        let conn = Connection::open_in_memory().map_err(|e| Error::sqlite(&path, "opening", e))?;
        Self::init(conn, path, StoreOptions::default())
    }

    /// Opens (creating if needed) the database at `path`: WAL journal, busy timeout, foreign keys,
    /// and the schema migrated to [`SCHEMA_VERSION`] in one transaction.
    ///
    /// Errors: [`Error::NewerSchema`] for a database written by a newer build, [`Error::Corrupt`],
    /// [`Error::Locked`], [`Error::ReadOnly`], [`Error::Open`] — each naming the file.
    pub fn open_with(path: impl AsRef<Path>, options: StoreOptions) -> Result<Self, Error> {
        let path = path.as_ref().to_path_buf();
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| Error::sqlite(&path, "opening", e))?;
        if conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(false) {
            return Err(Error::ReadOnly { path, source: None });
        }
        Self::init(conn, path, options)
    }

    fn init(conn: Connection, path: PathBuf, options: StoreOptions) -> Result<Self, Error> {
        let err = |during| {
            let path = path.clone();
            move |e| Error::sqlite(&path, during, e)
        };
        conn.busy_timeout(options.busy_timeout)
            .map_err(err("setting the busy timeout"))?;
        // The first read of the file: a corrupted or foreign file fails here.
        let found: u32 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(err("reading the schema version"))?;
        if found > SCHEMA_VERSION {
            return Err(Error::NewerSchema {
                path,
                found,
                supported: SCHEMA_VERSION,
            });
        }
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(err("switching to WAL"))?;
        if mode != "wal" && path.as_os_str() != ":memory:" {
            tracing::warn!(path = %path.display(), mode, "database not in WAL mode");
        }
        conn.execute_batch("PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;")
            .map_err(err("setting pragmas"))?;
        let mut conn = conn;
        if found < SCHEMA_VERSION {
            migrate(&mut conn, &path)?;
        }
        let n = INSTANCE.fetch_add(1, Ordering::Relaxed);
        let owner = format!(
            "{}:{}:{}:{n}",
            hostname(),
            std::process::id(),
            now_ms() % 1_000_000_007
        );
        let ttl = options.lease_ttl.max(Duration::from_millis(30));
        conn.execute(
            "INSERT OR REPLACE INTO owners (owner, pid, started_ms, heartbeat_ms, ttl_ms)
             VALUES (?1, ?2, ?3, ?3, ?4)",
            params![owner, std::process::id(), now_ms(), ttl.as_millis() as i64],
        )
        .map_err(err("registering this process"))?;
        let (stop, stopped) = mpsc::channel();
        let inner = Arc::new(Inner {
            conn: Mutex::new(conn),
            path,
            owner,
            ttl,
            stop: Mutex::new(Some(stop)),
        });
        let weak = Arc::downgrade(&inner);
        std::thread::Builder::new()
            .name("pushguide-store-heartbeat".into())
            .spawn(move || heartbeat(weak, stopped, ttl / 3))
            .map_err(|e| {
                tracing::error!(error = %e, "cannot start the lease heartbeat thread");
            })
            .ok();
        tracing::debug!(path = %inner.path.display(), owner = %inner.owner, "store opened");
        Ok(SqliteStore { inner })
    }

    /// The database file (`:memory:` for in-memory stores).
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// This store's owner id (`host:pid:…`), recorded with its deployments and leases.
    pub fn owner(&self) -> &str {
        &self.inner.owner
    }

    /// The schema version of the open database (always [`SCHEMA_VERSION`] once opened).
    pub fn schema_version(&self) -> Result<u32, Error> {
        self.conn()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| self.err("reading the schema version", e))
    }

    pub(crate) fn conn(&self) -> MutexGuard<'_, Connection> {
        self.inner
            .conn
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn err(&self, during: &'static str, e: rusqlite::Error) -> Error {
        Error::sqlite(&self.inner.path, during, e)
    }

    /// Stops the heartbeat thread: this store's leases and liveness are no longer renewed and expire
    /// after [`StoreOptions::lease_ttl`] (as when the process dies). Used before handing work over to
    /// another process, and by tests.
    pub fn stop_heartbeat(&self) {
        self.inner
            .stop
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }

    /// Renews this owner's heartbeat and every lease it holds (the heartbeat thread does this on its
    /// own; exposed for callers that want to renew at a moment of their choosing).
    pub fn heartbeat(&self) -> Result<(), Error> {
        beat(&self.inner)
    }
}

fn beat(inner: &Inner) -> Result<(), Error> {
    let now = now_ms();
    let expires = now + inner.ttl.as_millis() as i64;
    let mut conn = inner.conn.lock().unwrap_or_else(PoisonError::into_inner);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| Error::sqlite(&inner.path, "renewing leases", e))?;
    tx.execute(
        "UPDATE owners SET heartbeat_ms = ?2 WHERE owner = ?1",
        params![inner.owner, now],
    )
    .and_then(|_| {
        tx.execute(
            "UPDATE leases SET expires_ms = ?2 WHERE owner = ?1 AND holder IS NOT NULL",
            params![inner.owner, expires],
        )
    })
    .and_then(|_| tx.commit())
    .map_err(|e| Error::sqlite(&inner.path, "renewing leases", e))
}

fn heartbeat(inner: Weak<Inner>, stopped: mpsc::Receiver<()>, every: Duration) {
    while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
        let Some(inner) = inner.upgrade() else { return };
        if let Err(e) = beat(&inner) {
            tracing::warn!(error = %e, "lease heartbeat failed; retrying");
        }
    }
}

fn migrate(conn: &mut Connection, path: &Path) -> Result<(), Error> {
    let err = |e| Error::sqlite(path, "migrating the schema", e);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err)?;
    // Read again inside the write lock: another process may have migrated meanwhile.
    let found: u32 = tx
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(err)?;
    if found > SCHEMA_VERSION {
        return Err(Error::NewerSchema {
            path: path.to_path_buf(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tracing::info!(path = %path.display(), from = i, to = i + 1, "migrating schema");
        tx.execute_batch(sql).map_err(err)?;
    }
    tx.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))
        .map_err(err)?;
    tx.commit().map_err(err)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

pub(crate) fn now_ms() -> i64 {
    to_ms(SystemTime::now())
}

pub(crate) fn to_ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

pub(crate) fn from_ms(ms: i64) -> SystemTime {
    if ms >= 0 {
        UNIX_EPOCH + Duration::from_millis(ms as u64)
    } else {
        UNIX_EPOCH - Duration::from_millis(ms.unsigned_abs())
    }
}

/// A stage as the store writes it: its number, [`Stage::index`] (0 prepare … 4 rollback), the
/// numbers every schema version wrote. The one place where stages become numbers and back: bind it
/// as a parameter, read it from a column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct StageCode(pub(crate) Stage);

impl ToSql for StageCode {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        // at most 4: the cast cannot truncate
        Ok(ToSqlOutput::from(self.0.index() as i64))
    }
}

impl FromSql for StageCode {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let n = value.as_i64()?;
        usize::try_from(n)
            .ok()
            .and_then(Stage::from_index)
            .map(StageCode)
            .ok_or_else(|| FromSqlError::Other(Box::new(UnknownStage(n))))
    }
}

/// A stored stage number no [`Stage`] has (a foreign or damaged row).
#[derive(Debug, thiserror::Error)]
#[error("stage number {0} is not one this build knows ({known})", known = known_stages())]
pub(crate) struct UnknownStage(pub(crate) i64);

fn known_stages() -> String {
    Stage::ALL.map(|s| format!("{} {s}", s.index())).join(", ")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A database written by a build with schema 3 opens migrated: its rollbacks without a target
    /// (version `previous`) are marked as rollbacks, everything else as deployments.
    #[test]
    fn schema_3_databases_migrate_and_keep_their_deployments() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v3.db");
        {
            let conn = crate::schema::database_at_version(&path, 3);
            for (id, version) in [("d1", "1.0.0"), ("d2", "previous")] {
                conn.execute(
                    "INSERT INTO deployments (id, template, version, principal, dry_run,
                     started_ms, owner, last_event_ms, ended_ms, outcome)
                     VALUES (?1, 'shop', ?2, 'alice', 0, 1000, 'old', 1000, 2000, 'succeeded')",
                    params![id, version],
                )
                .unwrap();
            }
        }
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        let d1 = store.deployment("d1").unwrap().unwrap();
        let d2 = store.deployment("d2").unwrap().unwrap();
        assert_eq!((d1.version.as_str(), d1.rollback), ("1.0.0", false));
        assert_eq!((d2.version.as_str(), d2.rollback), ("previous", true));
        assert_eq!(d1.outcome.as_deref(), Some("succeeded"));
    }
}
