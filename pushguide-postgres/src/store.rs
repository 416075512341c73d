//! Connecting: the pool, TLS, migrations, the instance record and its lease heartbeat.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use deadpool_postgres::{Client, Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio::task::JoinHandle;

use crate::config::PgConfig;
use crate::error::Error;
use crate::schema::{create_idempotent, migrate, Migration};

/// The PostgreSQL store: one value serves core's store ports ([`pushguide_core::HistoryStore`],
/// [`pushguide_core::FleetState`], [`pushguide_core::LeaseManager`],
/// [`pushguide_core::MinionStatusStore`]). Cheap to clone (clones share the pool).
///
/// Each value is one *instance* (its [`PgStore::owner`] id): its leases are renewed by a background
/// task every third of [`PgConfig::lease_ttl`] until [`PgStore::close`], [`PgStore::stop_heartbeat`]
/// or the process ends; then they expire on the database clock and another instance may take the
/// template over (with a higher fencing token).
#[derive(Clone, Debug)]
pub struct PgStore {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) pool: Pool,
    pub(crate) endpoint: String,
    pub(crate) owner: String,
    pub(crate) ttl: Duration,
    pub(crate) listen: Listen,
    /// The one `LISTEN` connection's fan-out (crate::notify).
    pub(crate) hub: crate::notify::Hub,
    migration: Migration,
    heartbeat: Mutex<Option<JoinHandle<()>>>,
}

/// What a connection outside the pool needs (the queue listener): the settings with the password,
/// hidden from `Debug`.
pub(crate) struct Listen {
    pg: tokio_postgres::Config,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
}

impl Listen {
    pub(crate) fn parts(
        &self,
    ) -> (
        tokio_postgres::Config,
        tokio_postgres_rustls::MakeRustlsConnect,
    ) {
        (self.pg.clone(), self.tls.clone())
    }
}

impl std::fmt::Debug for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Listen { .. }")
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(h) = self
            .heartbeat
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            h.abort();
        }
    }
}

fn tls(config: &PgConfig) -> Result<tokio_postgres_rustls::MakeRustlsConnect, Error> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = &config.ca_file {
        use rustls::pki_types::pem::PemObject;
        let certs = rustls::pki_types::CertificateDer::pem_file_iter(path)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| Error::Config {
                setting: "ca_file",
                reason: format!("{}: {e}", path.display()),
            })?;
        if certs.is_empty() {
            return Err(Error::Config {
                setting: "ca_file",
                reason: format!("{}: no PEM certificate in it", path.display()),
            });
        }
        for c in certs {
            roots.add(c).map_err(|e| Error::Config {
                setting: "ca_file",
                reason: format!("{}: {e}", path.display()),
            })?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config {
            setting: "url",
            reason: format!("TLS setup: {e}"),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(tls))
}

/// A unique id for this instance: host, process, start.
fn new_owner() -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{host}:{}:{:x}-{}",
        std::process::id(),
        nanos,
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

impl PgStore {
    /// Connects, creates the schema when [`PgConfig::schema`] names one, applies the migrations
    /// (refusing a newer database with [`Error::NewerSchema`]), records this instance and starts
    /// its lease heartbeat. Must be called within a tokio runtime.
    pub async fn connect(config: &PgConfig) -> Result<PgStore, Error> {
        let endpoint = config.endpoint();
        let pg = config.resolved()?;
        let tls = tls(config)?;
        let listen = Listen {
            pg: pg.clone(),
            tls: tls.clone(),
        };
        let manager = Manager::from_config(
            pg,
            tls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(config.pool_size)
            .build()
            .map_err(|e| Error::Config {
                setting: "pool_size",
                reason: e.to_string(),
            })?;
        let mut client = pool.get().await.map_err(|source| Error::Pool {
            endpoint: endpoint.clone(),
            during: "connecting",
            source,
        })?;
        if let Some(schema) = &config.schema {
            // validated identifier (PgConfig::schema)
            create_idempotent(
                &client,
                &format!("CREATE SCHEMA IF NOT EXISTS {schema}"),
                &endpoint,
                "creating the schema",
            )
            .await?;
        }
        let migration = migrate(&mut client, &endpoint).await?;
        let owner = new_owner();
        let ttl = config.lease_ttl;
        client
            .execute(
                "INSERT INTO owners (owner, pid, started_at, heartbeat_at, ttl_ms)
                 VALUES ($1, $2, now(), now(), $3)",
                &[
                    &owner,
                    &i64::from(std::process::id()),
                    &(ttl.as_millis() as i64),
                ],
            )
            .await
            .map_err(|source| Error::Db {
                endpoint: endpoint.clone(),
                during: "recording this instance",
                source,
            })?;
        drop(client);
        tracing::info!(%endpoint, %owner, schema = ?config.schema, version = migration.to,
            "PostgreSQL store connected");
        let store = PgStore {
            inner: Arc::new(Inner {
                pool: pool.clone(),
                endpoint: endpoint.clone(),
                owner: owner.clone(),
                ttl,
                listen,
                hub: crate::notify::Hub::default(),
                migration,
                heartbeat: Mutex::new(None),
            }),
        };
        let task = tokio::spawn(heartbeat(pool, endpoint, owner, ttl));
        *store
            .inner
            .heartbeat
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(task);
        Ok(store)
    }

    /// This instance's id (`host:pid:start`), recorded as the owner of the leases it takes.
    pub fn owner(&self) -> &str {
        &self.inner.owner
    }

    /// What the migration at connect did.
    pub fn migration(&self) -> &Migration {
        &self.inner.migration
    }

    /// Stops renewing this instance's leases: they expire after the TTL, as if the process had
    /// died or been paused (for tests and hand-overs).
    pub fn stop_heartbeat(&self) {
        if let Some(h) = self
            .inner
            .heartbeat
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            h.abort();
        }
    }

    /// Renews this instance's heartbeat and every live lease it holds (the heartbeat task does this
    /// every third of the TTL).
    pub async fn heartbeat(&self) -> Result<(), Error> {
        renew_all(
            &self.inner.pool,
            &self.inner.endpoint,
            &self.inner.owner,
            self.inner.ttl,
        )
        .await
    }

    /// Stops the heartbeat, gives back every lease this instance holds and removes its record.
    pub async fn close(&self) -> Result<(), Error> {
        self.stop_heartbeat();
        let mut client = self.client("closing").await?;
        let tx = client
            .transaction()
            .await
            .map_err(|e| self.db("closing", e))?;
        tx.execute(
            "UPDATE leases SET holder = NULL, owner = NULL, expires_at = '-infinity'
             WHERE owner = $1",
            &[&self.inner.owner],
        )
        .await
        .map_err(|e| self.db("releasing this instance's leases", e))?;
        tx.execute("DELETE FROM owners WHERE owner = $1", &[&self.inner.owner])
            .await
            .map_err(|e| self.db("removing this instance's record", e))?;
        tx.commit().await.map_err(|e| self.db("closing", e))
    }

    /// A pooled connection.
    pub(crate) async fn client(&self, during: &'static str) -> Result<Client, Error> {
        self.inner.pool.get().await.map_err(|source| Error::Pool {
            endpoint: self.inner.endpoint.clone(),
            during,
            source,
        })
    }

    /// Wraps a driver error.
    pub(crate) fn db(&self, during: &'static str, source: tokio_postgres::Error) -> Error {
        Error::Db {
            endpoint: self.inner.endpoint.clone(),
            during,
            source,
        }
    }
}

async fn renew_all(pool: &Pool, endpoint: &str, owner: &str, ttl: Duration) -> Result<(), Error> {
    let db = |during, source| Error::Db {
        endpoint: endpoint.to_owned(),
        during,
        source,
    };
    let client = pool.get().await.map_err(|source| Error::Pool {
        endpoint: endpoint.to_owned(),
        during: "renewing leases",
        source,
    })?;
    let ttl_ms = ttl.as_millis() as f64;
    client
        .execute(
            "UPDATE owners SET heartbeat_at = now() WHERE owner = $1",
            &[&owner],
        )
        .await
        .map_err(|e| db("renewing this instance's heartbeat", e))?;
    // an expired lease is not revived: another instance may be taking it over
    client
        .execute(
            "UPDATE leases SET expires_at = now() + $2 * interval '1 millisecond'
             WHERE owner = $1 AND holder IS NOT NULL AND expires_at > now()",
            &[&owner, &ttl_ms],
        )
        .await
        .map_err(|e| db("renewing leases", e))?;
    Ok(())
}

async fn heartbeat(pool: Pool, endpoint: String, owner: String, ttl: Duration) {
    let mut tick = tokio::time::interval(ttl / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        if let Err(e) = renew_all(&pool, &endpoint, &owner, ttl).await {
            tracing::warn!(error = %e, "lease heartbeat failed; retrying");
        }
    }
}

/// Milliseconds of `d` as the `float8` the SQL multiplies an interval with.
pub(crate) fn millis(d: Duration) -> f64 {
    d.as_millis() as f64
}
