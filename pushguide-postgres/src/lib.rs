//! # pushguide-postgres
//!
//! The PostgreSQL store of pushguide, for several instances (CI runners, web servers behind a load
//! balancer, an ops box) sharing one database. SQLite (`pushguide-store`) stays the embedded
//! default; this crate is separate so that a SQLite-only build compiles no PostgreSQL client.
//!
//! [`PgStore`] implements core's store ports, so one value serves them all:
//!
//! - [`pushguide_core::HistoryStore`] — the journal: every event batch in one transaction, kept in
//!   append order; then the final report. Fenced: once another deployment took the template's lease
//!   over, the old deployment's journal writes are refused;
//! - [`pushguide_core::FleetState`] — which version each host runs and its rollback target; every
//!   write checks the deployment's fencing token in its own transaction;
//! - [`pushguide_core::LeaseManager`] — one deployment per template across instances, expiry on the
//!   database clock (`now()`), renewal by a heartbeat task, takeover with the next fencing token;
//! - [`pushguide_core::MinionStatusStore`] — each minion's last seen / up / down state.
//!
//! Besides: the service's publish queue ([`pushguide_store::PublishQueue`], also as inherent
//! methods [`PgStore::enqueue_publish`], [`PgStore::claim_publish`], …) claimed by every instance's
//! workers with `FOR UPDATE SKIP LOCKED`, a template's requests strictly one at a time in order, idle
//! workers woken by `LISTEN/NOTIFY` ([`PgStore::listen_publishes`]) with their poll as the backstop;
//! and live views woken by any instance's journal appends ([`PgStore::wait_journal`],
//! [`JOURNAL_CHANNEL`]). Both wake-ups share one listening connection per store.
//! Takeovers of a dead instance's interrupted deployments ([`PgStore::take_over`]) are recorded
//! exactly once per deployment, with the request they queue, in one transaction.
//!
//! Journal, report, fleet-state and queue writes that fail because the connection broke are
//! retried on a fresh pooled connection for a few seconds, each attempt checking the fencing token
//! again, and are applied once even when a commit went through and only its answer was lost.
//!
//! Migrations run at [`PgStore::connect`] under a row lock of the migrations table (no advisory
//! locks, which break behind PgBouncer in transaction mode); a database migrated by a newer
//! pushguide is refused with [`Error::NewerSchema`]. TLS goes through rustls (`sslmode` in the URL).
//!
//! Connect directly, through PgBouncer in session mode, or through PgBouncer (any version) in
//! *transaction* mode with [`PgConfig::transaction_pooling`]: every statement is sent unnamed (no
//! named prepared statement to lose between server connections), no advisory lock and no other
//! session state is used; the schema and the idle-in-transaction limit are set with `SET LOCAL` in
//! every transaction instead of the startup `options` the proxy refuses; the queue listener
//! (`LISTEN`, session state) connects to [`PgConfig::listen_url`] — the server or a session-mode
//! pool — or, without one, idle workers wake by their poll.
//!
//! ```no_run
//! use std::sync::Arc;
//! use pushguide_core::{Engine, Transport};
//! use pushguide_postgres::{PgConfig, PgStore};
//!
//! # async fn f(transport: Arc<dyn Transport>) -> Result<(), pushguide_postgres::Error> {
//! let config = PgConfig::from_url("postgres://pushguide@db.internal/pushguide?sslmode=require")?
//!     .password_file("/etc/pushguide/pg-password");
//! let store = Arc::new(PgStore::connect(&config).await?);
//! let engine = Engine::builder(transport)
//!     .history(store.clone())
//!     .fleet_state(store.clone())
//!     .leases(store)
//!     .build();
//! # let _ = engine; Ok(()) }
//! ```

mod accounts;
mod config;
mod conn;
mod error;
mod fleet;
mod history;
mod lease;
mod notify;
mod queue;
mod records;
mod recover;
mod retry;
mod schema;
mod server_queue;
mod sql;
mod status;
mod store;
mod takeover;

pub use config::{PasswordSource, PgConfig};
pub use error::Error;
pub use fleet::HostVersion;
pub use history::DeploymentRecord;
pub use lease::Lease;
pub use notify::{PublishWaiter, JOURNAL_CHANNEL};
pub use queue::{QueuedPublish, PUBLISH_CHANNEL};
pub use recover::INTERRUPTED;
pub use schema::{Migration, SCHEMA_VERSION};
pub use store::PgStore;

/// The store kind this crate provides (as named in configuration URLs).
pub const KIND: &str = "postgres";
