//! Floor 1, the vocabulary: words every other floor speaks and that import nothing above them —
//! shown text ([`text`]), errors, grammars of untrusted values ([`validate`]), salt calls and minion ids,
//! stages, target expressions and outcomes.

pub(crate) mod action;
pub(crate) mod call;
pub(crate) mod error;
pub(crate) mod job;
pub(crate) mod outcome;
pub(crate) mod stage;
pub(crate) mod target;
pub(crate) mod text;
pub mod validate;
