//! How a deployment ended ([`DeploymentOutcome`]) and what a user answers at a paused stage
//! ([`Decision`]).

use serde::{Deserialize, Serialize};

use crate::vocab::error::Error;

/// How a deployment ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeploymentOutcome {
    /// Every host succeeded.
    Succeeded,
    /// All batches ran but some hosts failed within the budget or were excluded by a decision.
    PartiallyApplied,
    /// The deployment stopped early (budget exceeded, prepare failed, aborted) and nothing was rolled
    /// back; hosts of finished batches keep the new version (see each host's status).
    Failed,
    /// The deployment stopped and every touched host was rolled back.
    RolledBack,
    /// A rollback was attempted and at least one host could not be rolled back.
    RollbackFailed,
    /// Cancelled; touched hosts were rolled back if the template's policy says so.
    Cancelled,
}

impl DeploymentOutcome {
    /// Every outcome, in declaration order.
    pub const ALL: [DeploymentOutcome; 6] = [
        DeploymentOutcome::Succeeded,
        DeploymentOutcome::PartiallyApplied,
        DeploymentOutcome::Failed,
        DeploymentOutcome::RolledBack,
        DeploymentOutcome::RollbackFailed,
        DeploymentOutcome::Cancelled,
    ];

    /// The kebab-case name, as serialized, stored and printed (`"partially-applied"`).
    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentOutcome::Succeeded => "succeeded",
            DeploymentOutcome::PartiallyApplied => "partially-applied",
            DeploymentOutcome::Failed => "failed",
            DeploymentOutcome::RolledBack => "rolled-back",
            DeploymentOutcome::RollbackFailed => "rollback-failed",
            DeploymentOutcome::Cancelled => "cancelled",
        }
    }
}

impl std::fmt::Display for DeploymentOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for DeploymentOutcome {
    type Err = Error;

    /// Parses a name written by [`DeploymentOutcome::as_str`].
    fn from_str(s: &str) -> Result<Self, Error> {
        DeploymentOutcome::ALL
            .into_iter()
            .find(|o| o.as_str() == s)
            .ok_or_else(|| {
                Error::invalid(
                    "outcome",
                    s,
                    "expected succeeded, partially-applied, failed, rolled-back, rollback-failed or cancelled",
                )
            })
    }
}

/// The answer to a [`crate::EventKind::DecisionNeeded`] pause.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Decision {
    /// Run the failed stage again for the failed hosts.
    Retry,
    /// Leave the failed hosts out and go on.
    Exclude,
    /// Stop and roll back every touched host.
    Rollback,
    /// Stop without rolling back.
    Abort,
}
