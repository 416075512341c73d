//! # pushguide-core
//!
//! The domain model and rolling deploy engine of pushguide, with no HTTP and no database.
//!
//! - [`Deployer`]: a project type's four stage hooks (prepare, pre-deploy, deploy, post-deploy) and
//!   rollback; [`DeployerConfig`] + [`KindInfo`]: how plugins register through `typetag` and `inventory`.
//! - [`Transport`]: the narrow interface to minions ([`SaltCall`] in, per-minion [`Outcome`]s out),
//!   with `MockTransport` (feature `mock`) and `sim::SimFleet` (feature `sim`).
//! - [`Template`]: what ops configure once per application, loaded from TOML.
//! - [`Engine`]: plans, starts (non-blocking, with an [`EventStream`]), runs rolling batches under a
//!   failure budget, pauses for [`Decision`]s, rolls back, and returns a [`Report`].
//!
//! See [`Deployer`] for a complete example on a simulated fleet.
//!
//! ## The floors
//!
//! The crate reads in the order a deployment flows; each floor imports only from the floors below it:
//!
//! 1. **vocabulary** (`src/vocab/`): words every floor speaks — [`MinionId`], [`SaltCall`],
//!    [`Outcome`], [`Stage`], [`DeploymentOutcome`], [`Decision`], [`Action`], [`TargetExpr`], the
//!    errors ([`Error`], [`StageError`], [`TransportError`]) and the grammars of untrusted values
//!    ([`validate`]).
//! 2. **model** (`src/model/`): what a deployment produces — its [`Plan`], [`Report`] and [`Event`]s.
//! 3. **ports** (`src/ports/`): the traits the engine reaches the world through — [`Transport`],
//!    [`FleetState`], [`LeaseManager`], [`HistoryStore`], [`MinionStatusStore`] — each with an
//!    in-memory implementation.
//! 4. **hook API** (`src/hook/`): what a project type implements and sees — [`Template`], the kind
//!    registry ([`DeployerConfig`], [`KindInfo`]), [`Deployer`], [`StageContext`] with the run's
//!    journal, and the shared [`steps`].
//! 5. **engine** (`src/engine/`): [`Engine`] and [`Request`], then one file per phase — prepare,
//!    batches, rollback, and the run that journals and records them. Beside it, the connectivity
//!    [`Monitor`].

// The floors, bottom up: each imports only from the floors listed before it.

// 1. vocabulary
pub(crate) mod vocab;

// 2. model
pub(crate) mod model;

// 3. ports
pub(crate) mod ports;

// 4. hook API
pub(crate) mod hook;

// 5. engine, and the monitor beside it
mod engine;

mod monitor;

#[cfg(feature = "sim")]
pub mod sim;

#[cfg(feature = "conformance")]
pub mod conformance;

#[cfg(feature = "store-conformance")]
pub mod store_conformance;

pub use hook::steps;
pub use vocab::validate;

pub use vocab::action::Action;
pub use vocab::call::{Effect, MinionHasher, MinionId, MinionMap, Outcome, Returns, SaltCall};
pub use vocab::error::{Error, StageError, TransportError, TransportErrorKind};
pub use vocab::job::{
    decode_steps, job_steps, steps_call, Check, HostSteps, Retry, Step, StepReturn, PROTOCOL,
    STEPS_FUN, STEP_DEFAULT_TIMEOUT,
};
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
    Rollout, TakeoverPolicy, Targets, Template, Threshold,
};

pub use engine::{DeploymentHandle, Engine, EngineBuilder, Mode, Request, RollbackTo};
pub use monitor::{Monitor, MonitorHandle};

/// Re-exported for implementing the async ports ([`Transport`], [`FleetState`], [`LeaseManager`],
/// [`HistoryStore`]) and [`Deployer`] without a direct dependency.
pub use async_trait::async_trait;

// Keep the typetag/inventory machinery reachable for plugin crates without extra dependencies.
#[doc(hidden)]
pub use inventory as __inventory;
