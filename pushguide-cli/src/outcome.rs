//! Deployment outcomes as the CLI sees them: the exit code of each engine outcome, and the outcomes
//! the store records (the engine's, and `interrupted` for a deployment whose process died). Written
//! once in `pushguide-server` (whose `GET /api/v1/deployments/{id}/log` reports the same exit codes).

pub use pushguide_server::outcome::{
    exit_code, recorded_exit_code, RecordedOutcome, UnknownOutcome,
};
