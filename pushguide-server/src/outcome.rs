//! Deployment outcomes as `pushguide` reports them: the exit code of each engine outcome (the CLI's
//! exit status, and `exit_code` in the JSON of `log` here and in the CLI), and the outcomes the store
//! records (the engine's, and `interrupted` for a deployment whose process died).

use std::str::FromStr;

use pushguide_core::DeploymentOutcome;

/// The exit codes of deployment outcomes (the CLI's `exit` codes re-use these).
pub mod exit {
    /// The command succeeded (a deployment succeeded; a rollback rolled every host back).
    pub const OK: u8 = 0;
    /// A deployment was partially applied (failures within the budget, or excluded hosts).
    pub const PARTIALLY_APPLIED: u8 = 2;
    /// A deployment failed (stopped early, not rolled back).
    pub const FAILED: u8 = 3;
    /// A deployment failed and was rolled back.
    pub const ROLLED_BACK: u8 = 4;
    /// A rollback failed on at least one host.
    pub const ROLLBACK_FAILED: u8 = 5;
    /// The deployment was cancelled (Ctrl-C, SIGTERM).
    pub const CANCELLED: u8 = 6;
    /// The deployment's process died (marked interrupted by `recover`).
    pub const INTERRUPTED: u8 = 7;
    /// Internal error (store, unexpected failure; an outcome name this pushguide does not know).
    pub const INTERNAL: u8 = 70;
}

/// The exit code of a deployment outcome. For a rollback request, `rolled-back` is success (0).
pub fn exit_code(outcome: DeploymentOutcome, rollback: bool) -> u8 {
    match outcome {
        DeploymentOutcome::Succeeded => exit::OK,
        DeploymentOutcome::PartiallyApplied => exit::PARTIALLY_APPLIED,
        DeploymentOutcome::Failed => exit::FAILED,
        DeploymentOutcome::RolledBack if rollback => exit::OK,
        DeploymentOutcome::RolledBack => exit::ROLLED_BACK,
        DeploymentOutcome::RollbackFailed => exit::ROLLBACK_FAILED,
        DeploymentOutcome::Cancelled => exit::CANCELLED,
    }
}

/// An outcome as the store records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordedOutcome {
    /// The deployment ended with the engine's outcome.
    Ended(DeploymentOutcome),
    /// The deployment's process died and `recover` (or the next deployment) marked it.
    Interrupted,
}

impl RecordedOutcome {
    /// The stored name of [`RecordedOutcome::Interrupted`].
    pub const INTERRUPTED: &'static str = "interrupted";

    /// The name, as stored and printed.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordedOutcome::Ended(o) => o.as_str(),
            RecordedOutcome::Interrupted => Self::INTERRUPTED,
        }
    }

    /// The exit code (`watch`, `log`): the engine outcome's, or 7 for an interrupted deployment.
    pub fn exit_code(self, rollback: bool) -> u8 {
        match self {
            RecordedOutcome::Ended(o) => exit_code(o, rollback),
            RecordedOutcome::Interrupted => exit::INTERRUPTED,
        }
    }
}

impl std::fmt::Display for RecordedOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RecordedOutcome {
    type Err = UnknownOutcome;

    /// Parses a stored name; an unknown one (a newer pushguide wrote it, or the store was edited)
    /// is an [`UnknownOutcome`].
    fn from_str(s: &str) -> Result<Self, UnknownOutcome> {
        if s == Self::INTERRUPTED {
            return Ok(RecordedOutcome::Interrupted);
        }
        s.parse::<DeploymentOutcome>()
            .map(RecordedOutcome::Ended)
            .map_err(|_| UnknownOutcome { name: s.to_owned() })
    }
}

/// A stored outcome name this pushguide does not know. Its exit code is [`exit::INTERNAL`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "the store records outcome {} for this deployment, which this pushguide does not know \
     (known: {}); a newer pushguide may have written it (exit code {})",
    pushguide_core::validate::quote(.name),
    known_names(),
    exit::INTERNAL
)]
pub struct UnknownOutcome {
    /// The stored name.
    pub name: String,
}

/// Every name a store may record, comma-separated.
fn known_names() -> String {
    DeploymentOutcome::ALL
        .iter()
        .map(|o| o.as_str())
        .chain([RecordedOutcome::INTERRUPTED])
        .collect::<Vec<_>>()
        .join(", ")
}

/// The exit code of a stored outcome name, and the error of an unknown one (whose exit code is
/// [`exit::INTERNAL`]).
pub fn recorded_exit_code(name: &str, rollback: bool) -> (u8, Option<UnknownOutcome>) {
    match name.parse::<RecordedOutcome>() {
        Ok(o) => (o.exit_code(rollback), None),
        Err(e) => (exit::INTERNAL, Some(e)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn exit_codes_follow_outcomes() {
        use DeploymentOutcome as O;
        let table = [
            (O::Succeeded, 0, 0),
            (O::PartiallyApplied, 2, 2),
            (O::Failed, 3, 3),
            (O::RolledBack, 4, 0),
            (O::RollbackFailed, 5, 5),
            (O::Cancelled, 6, 6),
        ];
        assert_eq!(table.len(), DeploymentOutcome::ALL.len());
        for (o, deploy, rollback) in table {
            assert_eq!(exit_code(o, false), deploy, "{o}");
            assert_eq!(exit_code(o, true), rollback, "{o} (rollback)");
        }
    }

    #[test]
    fn recorded_outcomes_parse_by_their_stored_names() {
        for o in DeploymentOutcome::ALL {
            let r: RecordedOutcome = o.as_str().parse().unwrap();
            assert_eq!(r, RecordedOutcome::Ended(o));
            assert_eq!(r.to_string(), o.as_str());
            assert_eq!(
                recorded_exit_code(o.as_str(), false),
                (exit_code(o, false), None)
            );
        }
        let i: RecordedOutcome = "interrupted".parse().unwrap();
        assert_eq!((i, i.exit_code(false)), (RecordedOutcome::Interrupted, 7));
        assert_eq!(recorded_exit_code("rolled-back", true).0, 0);
    }

    /// A stored name this pushguide does not know: exit 70 and a message naming it, no panic.
    #[test]
    fn an_unknown_recorded_outcome_is_named_with_exit_70() {
        let (code, e) = recorded_exit_code("exploded\u{202e}", false);
        let msg = e.unwrap().to_string();
        assert_eq!(code, exit::INTERNAL);
        assert!(
            msg.contains("exploded") && !msg.contains('\u{202e}'),
            "{msg}"
        );
        assert!(
            msg.contains("partially-applied") && msg.contains("interrupted"),
            "{msg}"
        );
        assert!("".parse::<RecordedOutcome>().is_err());
        assert!("Succeeded".parse::<RecordedOutcome>().is_err());
    }
}
