//! The stages of a release ([`Stage`]).

use std::fmt;

use serde::{Deserialize, Serialize};

/// A stage of a deployment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    /// Preparation: once per deployment, read-only.
    Prepare,
    /// Before release: per batch, e.g. fetch and verify the artifact, stop the service.
    PreDeploy,
    /// Release: per batch, e.g. unpack and switch to the new release.
    Deploy,
    /// After release: per batch, e.g. start, health check, prune.
    PostDeploy,
    /// Rollback: per batch of touched hosts, back to each host's rollback target.
    Rollback,
}

impl Stage {
    /// The three stages run for every batch, in order.
    pub const BATCH: [Stage; 3] = [Stage::PreDeploy, Stage::Deploy, Stage::PostDeploy];

    /// Kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Prepare => "prepare",
            Stage::PreDeploy => "pre-deploy",
            Stage::Deploy => "deploy",
            Stage::PostDeploy => "post-deploy",
            Stage::Rollback => "rollback",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
