//! The commands, as functions returning typed (serializable) results, the types of
//! [`crate::results`]. Nothing here prints: live progress goes through [`Progress`], results are
//! rendered by [`crate::output`].
//!
//! | file | commands |
//! |---|---|
//! | `templates.rs` | `kinds`, `templates`, `versions` |
//! | `plan.rs` | `plan` (and the artifact and `--batch` that `deploy` shares) |
//! | `deploy.rs` | `deploy` (attached), the `--hosts` check (`glob.rs`: salt's glob) |
//! | `detach.rs` | `deploy --detach` (a background process) |
//! | `rollback.rs` | `rollback` (`--to`, `--deployment`) |
//! | `run.rs` | an attached deployment or rollback until its end (pauses, Ctrl-C) |
//! | `history.rs` | `history`, `show`, `log`, `watch` |
//! | `stats.rs` | `stats` |
//! | `recover.rs` | `recover` |
//! | `monitor.rs` | one `monitor` check |
//! | `module.rs` | `install-module` |
//! | `serve.rs` | `user add`, `token add`, `serve` (the web service) |
//!
//! [`Progress`]: crate::progress::Progress

use pushguide_store::{DeploymentRecord, SqliteStore};

use crate::error::CliError;

mod demo;
mod deploy;
mod detach;
mod glob;
mod history;
mod launch;
mod module;
mod monitor;
mod pg_history;
mod pg_recover;
mod plan;
mod recover;
mod rollback;
mod run;
mod serve;
mod stats;
mod templates;
mod webhook_sender;

pub use demo::demo;
pub use deploy::deploy;
pub use detach::detach;
pub use history::{history, log, show, watch};
pub use module::install_module;
pub use monitor::{monitor_check, monitor_setup};
pub use plan::plan;
pub use recover::recover;
pub use rollback::{rollback, undo_request};
pub use serve::{serve, token_add, user_add, PasswordInput};
pub use stats::stats;
pub use templates::{kinds, templates, versions};

use pushguide_server::catalog::{kind_of, targets_text};

/// Deployment `id` as recorded in `store`; [`CliError::UnknownDeployment`] when there is none.
fn recorded(store: &SqliteStore, id: &str) -> Result<DeploymentRecord, CliError> {
    store
        .deployment(id)?
        .ok_or_else(|| unknown_deployment(store, id))
}

/// No deployment `id` in `store`.
fn unknown_deployment(store: &SqliteStore, id: &str) -> CliError {
    CliError::UnknownDeployment {
        id: id.to_owned(),
        store: store.path().display().to_string(),
    }
}
