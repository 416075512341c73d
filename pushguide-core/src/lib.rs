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

pub mod steps;
pub mod validate;

mod call;
mod context;
mod deployer;
mod engine;
mod error;
mod event;
mod fleet;
mod history;
mod lease;
mod monitor;
mod registry;
mod report;
mod template;
mod transport;

#[cfg(feature = "sim")]
pub mod sim;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use call::{Effect, MinionHasher, MinionId, MinionMap, Outcome, Returns, SaltCall};
pub use context::{Artifact, CallResults, HostVersions, Release, StageContext};
pub use deployer::{Deployer, Stage, StageError};
pub use engine::{
    Decision, DeploymentHandle, DeploymentOutcome, Engine, EngineBuilder, Mode, Request,
};
pub use error::Error;
pub use event::{Event, EventKind, EventStream};
pub use fleet::{FleetState, HostChange, HostHistory, MemoryFleetState, VersionLog};
pub use history::HistoryStore;
pub use lease::{Lease, LeaseManager, MemoryLeases};
pub use monitor::{
    MemoryMinionStatus, MinionStatus, MinionStatusStore, Monitor, MonitorHandle, StatusChange,
};
pub use registry::{kind_info, registered_kinds, unknown_kind, DeployerConfig, KindInfo, Platform};
pub use report::{CallRecord, HostFailure, HostReport, HostStatus, LogEntry, Plan, Report};
pub use template::{
    Acl, FailedHosts, FailureBudget, HealthCheck, Members, OnFailure, Principal, RollbackPolicy,
    Rollout, Targets, Template, Threshold,
};
#[cfg(any(test, feature = "mock"))]
pub use transport::MockTransport;
pub use transport::{
    resolve_list, TargetExpr, TargetType, Transport, TransportError, TransportErrorKind,
};

/// Re-exported for implementing the async ports ([`Transport`], [`FleetState`], [`LeaseManager`],
/// [`HistoryStore`]) and [`Deployer`] without a direct dependency.
pub use async_trait::async_trait;

// Keep the typetag/inventory machinery reachable for plugin crates without extra dependencies.
#[doc(hidden)]
pub use inventory as __inventory;
