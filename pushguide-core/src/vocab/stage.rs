//! The stages of a release ([`Stage`]).

use std::fmt;

use serde::{Deserialize, Serialize};

/// A stage of a deployment.
///
/// Stages are ordered as they run. Each has a fixed number, its [`Stage::index`] (0 prepare,
/// 1 pre-deploy, 2 deploy, 3 post-deploy, 4 rollback, 5 staging), under which stores persist it:
/// the numbers never change. Staging runs between prepare and the first batch; its number is the
/// newest, not its place.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    /// Preparation: once per deployment, read-only.
    Prepare = 0,
    /// Before release: per batch, e.g. fetch and verify the artifact, stop the service.
    PreDeploy = 1,
    /// Release: per batch, e.g. unpack and switch to the new release.
    Deploy = 2,
    /// After release: per batch, e.g. start, health check, prune.
    PostDeploy = 3,
    /// Rollback: per batch of touched hosts, back to each host's rollback target.
    Rollback = 4,
    /// Staging: once per deployment, after prepare and before the first batch, on every target
    /// host at once — fetch, verify and unpack the release beside the running one. It touches
    /// nothing that serves (see [`crate::Deployer::stage`]).
    Staging = 5,
}

impl Stage {
    /// The three stages run for every batch, in order.
    pub const BATCH: [Stage; 3] = [Stage::PreDeploy, Stage::Deploy, Stage::PostDeploy];

    /// Every stage, in order: `Stage::ALL[s.index()] == s`.
    pub const ALL: [Stage; 6] = [
        Stage::Prepare,
        Stage::PreDeploy,
        Stage::Deploy,
        Stage::PostDeploy,
        Stage::Rollback,
        Stage::Staging,
    ];

    /// The stage's fixed number (0 prepare … 4 rollback, 5 staging), as stores persist it.
    ///
    /// ```
    /// use pushguide_core::Stage;
    /// assert_eq!(Stage::PostDeploy.index(), 3);
    /// assert_eq!(Stage::from_index(3), Some(Stage::PostDeploy));
    /// assert_eq!(Stage::from_index(5), Some(Stage::Staging));
    /// assert_eq!(Stage::from_index(6), None);
    /// ```
    pub fn index(self) -> usize {
        self as usize
    }

    /// The stage numbered `index` ([`Stage::index`]), `None` for a number no stage has.
    pub fn from_index(index: usize) -> Option<Stage> {
        Stage::ALL.get(index).copied()
    }

    /// Kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Prepare => "prepare",
            Stage::PreDeploy => "pre-deploy",
            Stage::Deploy => "deploy",
            Stage::PostDeploy => "post-deploy",
            Stage::Rollback => "rollback",
            Stage::Staging => "staging",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The numbers stores persist: fixed, in order, and round-tripping.
    #[test]
    fn index_round_trips_and_never_changes() {
        let fixed = [
            (Stage::Prepare, 0),
            (Stage::PreDeploy, 1),
            (Stage::Deploy, 2),
            (Stage::PostDeploy, 3),
            (Stage::Rollback, 4),
            (Stage::Staging, 5),
        ];
        for (s, n) in fixed {
            assert_eq!(s.index(), n, "{s}");
            assert_eq!(Stage::from_index(n), Some(s));
        }
        assert_eq!(Stage::ALL.len(), fixed.len());
        for (i, s) in Stage::ALL.into_iter().enumerate() {
            assert_eq!(s.index(), i);
        }
        assert_eq!(Stage::from_index(Stage::ALL.len()), None);
        assert_eq!(Stage::from_index(usize::MAX), None);
        assert!(
            Stage::ALL.windows(2).all(|w| w[0] < w[1]),
            "ordered as they run"
        );
    }
}
