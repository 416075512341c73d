//! # pushguide-store
//!
//! The default durable backend of pushguide: one embedded SQLite file (WAL mode) that several
//! processes may share.
//!
//! [`SqliteStore`] implements core's three storage traits, so one value serves them all:
//!
//! - [`pushguide_core::HistoryStore`] — the journal: every event batch the engine's background
//!   writer hands over is written in one transaction as the deployment runs (a killed process leaves
//!   its record up to the last batch; each host's result is kept from these events alone), then
//!   the report: the outcome with each host's log lines, in one transaction;
//! - [`pushguide_core::FleetState`] — which version each host runs, since when, and the version it
//!   ran before (the rollback target);
//! - [`pushguide_core::LeaseManager`] — one deployment per template across processes, with expiry,
//!   renewal by a heartbeat thread, takeover of expired leases and fencing tokens;
//! - [`pushguide_core::MinionStatusStore`] — each minion's last seen / up / down state, for the
//!   connectivity monitor and the engine's pre-flight check.
//!
//! Besides: [`SqliteStore::recover`] marks deployments of dead processes `interrupted`;
//! statistics over a [`Window`] ([`SqliteStore::stats`]); reading records back
//! ([`SqliteStore::deployment`], [`SqliteStore::host_log`], [`SqliteStore::host_stage_results`]).
//! For the web service (`pushguide-server`): accounts ([`SqliteStore::put_user`],
//! [`SqliteStore::user`]; argon2id hashes made by the caller) and sessions
//! ([`SqliteStore::create_session`], [`SqliteStore::session`] with idle and absolute expiry; only
//! a hash of each token is kept); managing accounts ([`SqliteStore::users`],
//! [`SqliteStore::set_user_groups`], [`SqliteStore::delete_user`], [`SqliteStore::external_user`]
//! for a reverse proxy's users) and CI's API tokens ([`SqliteStore::create_api_token`],
//! [`SqliteStore::api_token_user`]; only a hash of each token is kept).
//!
//! ```no_run
//! use std::sync::Arc;
//! use pushguide_core::{Engine, Transport};
//! use pushguide_store::SqliteStore;
//!
//! # fn f(transport: Arc<dyn Transport>) -> Result<(), pushguide_store::Error> {
//! let store = SqliteStore::open("/var/lib/pushguide/history.db")?;
//! for d in store.recover()? {
//!     eprintln!("{} of {} was interrupted during {}", d.id, d.template, d.stage);
//! }
//! let store = Arc::new(store);
//! let engine = Engine::builder(transport)
//!     .history(store.clone())
//!     .fleet_state(store.clone())
//!     .leases(store)
//!     .build();
//! # let _ = engine; Ok(()) }
//! ```

mod account_records;
mod audit;
mod auth;
mod browse;
#[cfg(feature = "conformance")]
pub mod conformance;
mod error;
mod fleet;
mod history;
mod journal;
mod lease;
mod monitor;
mod query;
mod queue;
mod record_defaults;
mod recover;
mod revisions;
mod schema;
mod server_store;
mod stats;
mod store;
mod tokens;
mod users;

pub use audit::AuditEntry;
pub use auth::{Session, SessionLimits, User};
pub use browse::{DayStats, HistoryKey, HistoryPage, HistoryQuery, OutcomeFilter, PageAt};
pub use error::Error;
pub use fleet::HostVersion;
pub use lease::Lease;
pub use query::{CallRow, DeploymentRecord, HostResult, HostStageResult};
pub use queue::QueuedPublish;
pub use recover::{HostProgress, InterruptedDeployment};
pub use revisions::{RevisionWrite, TemplateRevision};
pub use schema::SCHEMA_VERSION;
pub use server_store::{AccountStore, PublishQueue, RecordStore, ServerStore};
pub use stats::{Rate, Recovery, Stats, Summary, Window};
pub use store::{SqliteStore, StoreOptions};
pub use tokens::{ApiToken, TokenUser};
pub use users::NO_PASSWORD;
