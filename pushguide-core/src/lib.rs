//! # pushguide-core
//!
//! The domain model and rolling deploy engine of pushguide, with no HTTP and no database.
//!
//! - [`Deployer`]: a project type's four stage hooks (prepare, pre-deploy, deploy, post-deploy) and
//!   rollback; [`DeployerConfig`] + [`KindInfo`]: how plugins register through `typetag` and `inventory`.
//! - [`Transport`]: the narrow interface to minions ([`SaltCall`] in, per-minion [`Outcome`]s out),
//!   with `MockTransport` (feature `mock`) and [`sim::SimFleet`] (feature `sim`).
//! - [`Template`]: what ops configure once per application, loaded from TOML.
//! - [`Engine`]: plans, starts (non-blocking, with an [`EventStream`]), runs rolling batches under a
//!   failure budget, pauses for [`Decision`]s, rolls back, and returns a [`Report`].
//!
//! See [`Deployer`] for a complete example on a simulated fleet.

// The floors, bottom up: each imports only from the floors listed before it.
mod engine;
pub(crate) mod hook;
pub(crate) mod model;
mod monitor;
pub(crate) mod ports;
pub(crate) mod vocab;

#[cfg(feature = "sim")]
pub mod sim;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use hook::steps;
pub use vocab::validate;

pub use vocab::call::{Effect, MinionHasher, MinionId, MinionMap, Outcome, Returns, SaltCall};
pub use vocab::error::{Error, StageError, TransportError, TransportErrorKind};
pub use vocab::outcome::{Decision, DeploymentOutcome};
pub use vocab::stage::Stage;
pub use vocab::target::{resolve_list, TargetExpr, TargetType};

pub use model::event::{Event, EventKind, EventStream};
pub use model::report::{CallRecord, HostFailure, HostReport, HostStatus, LogEntry, Plan, Report};

pub use ports::fleet::{FleetState, HostChange, HostHistory, MemoryFleetState, VersionLog};
pub use ports::history::HistoryStore;
pub use ports::lease::{Lease, LeaseManager, MemoryLeases};
pub use ports::status::{MemoryMinionStatus, MinionStatus, MinionStatusStore, StatusChange};
#[cfg(any(test, feature = "mock"))]
pub use ports::transport::MockTransport;
pub use ports::transport::Transport;

pub use hook::context::{Answer, Artifact, CallResults, HostVersions, Release, StageContext};
pub use hook::deployer::Deployer;
pub use hook::registry::{
    kind_info, registered_kinds, unknown_kind, DeployerConfig, KindInfo, Platform,
};
pub use hook::template::{
    Acl, FailedHosts, FailureBudget, HealthCheck, Members, OnFailure, Principal, RollbackPolicy,
    Rollout, Targets, Template, Threshold,
};

pub use engine::{DeploymentHandle, Engine, EngineBuilder, Mode, Request};
pub use monitor::{Monitor, MonitorHandle};

/// Re-exported for implementing the async ports ([`Transport`], [`FleetState`], [`LeaseManager`],
/// [`HistoryStore`]) and [`Deployer`] without a direct dependency.
pub use async_trait::async_trait;

// Keep the typetag/inventory machinery reachable for plugin crates without extra dependencies.
#[doc(hidden)]
pub use inventory as __inventory;
