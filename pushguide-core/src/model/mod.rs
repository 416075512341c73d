//! Floor 2, the model: what a deployment produces and shows — its [`report`] (plan, per-host results,
//! call log) and its [`event`]s.

pub(crate) mod event;
pub(crate) mod report;
