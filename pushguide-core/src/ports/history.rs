//! Where deployments are recorded: a durable journal written as events happen.

use async_trait::async_trait;

use crate::model::event::Event;
use crate::model::report::Report;
use crate::vocab::error::Error;

/// A durable record of deployments. The engine hands it every event of a deployment, in order and in
/// batches, from a background writer while the deployment runs (so a killed process still leaves a
/// record of what happened up to that point), then the final [`Report`] with every host's log.
///
/// The engine waits for the events of a batch to be appended before the next batch touches a host,
/// so `append` must return only once the events are durable. A lease that merely expired does not
/// stop the journal: what a deployment did is recorded even after it lost its lease (fleet state
/// writes are fenced instead). A store shared by several instances may refuse a deployment's
/// `append` and `finish` with [`Error::Fenced`] once another deployment took the template's lease
/// over (the PostgreSQL store does); the engine then stops that deployment.
///
/// Implementations must be idempotent per event batch order: `append` is called with consecutive,
/// non-overlapping batches of one deployment.
///
/// ```
/// use std::sync::Mutex;
/// use pushguide_core::{async_trait, Error, Event, HistoryStore, Report};
///
/// /// Keeps events in memory (for tests).
/// #[derive(Debug, Default)]
/// struct Memory(Mutex<Vec<Event>>);
///
/// #[async_trait]
/// impl HistoryStore for Memory {
///     async fn append(&self, events: &[Event]) -> Result<(), Error> {
///         self.0.lock().unwrap().extend_from_slice(events);
///         Ok(())
///     }
///     async fn finish(&self, _report: &Report) -> Result<(), Error> {
///         Ok(())
///     }
/// }
/// ```
#[async_trait]
pub trait HistoryStore: Send + Sync + std::fmt::Debug {
    /// Records the next events of a deployment (they all carry its id), durably.
    async fn append(&self, events: &[Event]) -> Result<(), Error>;
    /// Records the final report of a deployment (after its last event was appended): its outcome and
    /// what events do not carry (each host's log). Host results come from the events alone.
    async fn finish(&self, report: &Report) -> Result<(), Error>;
}
