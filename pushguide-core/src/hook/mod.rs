//! Floor 4, the hook API: what a project type implements and sees — the [`template`] it is configured
//! by, the [`registry`] of kinds, the [`deployer`] trait, the stage [`context`] with its [`journal`], and
//! the shared [`steps`] project types build their stages from.
//!
//! The template, the kind registry, the deployer trait and the context refer to each other by design
//! (a template holds a project config, which builds a deployer, whose hooks read the template); they
//! share this floor so that no arrow leaves it upwards.

pub(crate) mod context;
pub(crate) mod deployer;
pub(crate) mod jobs;
pub(crate) mod journal;
pub(crate) mod registry;
pub mod steps;
pub(crate) mod template;
