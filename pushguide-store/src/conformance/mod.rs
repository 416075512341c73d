//! The web service's store conformance suite (feature `conformance`): the same checks run unchanged
//! against every [`crate::ServerStore`] implementation — this crate's SQLite store in its own tests,
//! `pushguide-postgres`'s store in its tests (object_store's integration-suite model).
//!
//! Each check takes a fresh, empty store and panics with a message naming what differed.

pub mod accounts;
pub mod queue;
pub mod records;
pub mod takeover;
