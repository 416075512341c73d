//! `install-module`: installs the pushguide salt module on the masters and minions.

use pushguide_core::{TargetExpr, TargetType};
use pushguide_salt::{module, MinionInstall};

use crate::app::App;
use crate::error::{exit, CliError};
use crate::results::{ModuleInstallResult, ModuleMinionRow, ModuleWriteRow};

/// `install-module --target GLOB`: writes the module into every configured master's file_roots,
/// syncs it to the minions matching `target` and checks its protocol version on each
/// (see [`pushguide_salt::SaltApi::install_module`]). A master that refuses the write is a row with
/// its error; when no master writes it the command fails (exit 69). A minion that does not answer
/// the protocol gives exit code [`exit::MODULE_NOT_INSTALLED`].
pub async fn install_module(app: &App, target: &str) -> Result<ModuleInstallResult, CliError> {
    pushguide_core::validate::target_expression("--target", target)?;
    let salt = app.salt()?;
    let expr = TargetExpr {
        expression: target.to_owned(),
        tgt_type: TargetType::Glob,
    };
    let done = salt
        .install_module(&expr)
        .await
        .map_err(|e| CliError::Salt(e.to_string()))?;
    let endpoints = done
        .endpoints
        .iter()
        .map(|e| ModuleWriteRow {
            endpoint: e.endpoint.clone(),
            written: e.result.as_ref().ok().cloned(),
            error: e.result.as_ref().err().map(ToString::to_string),
        })
        .collect();
    let minions = done
        .minions
        .iter()
        .map(|(m, state)| ModuleMinionRow {
            minion: m.to_string(),
            installed: state.is_current(),
            protocol: match state {
                MinionInstall::Installed { protocol } => Some(*protocol),
                _ => None,
            },
            state: state.to_string(),
        })
        .collect();
    let all_installed = done.all_installed();
    Ok(ModuleInstallResult {
        path: module::PATH.to_owned(),
        protocol: module::PROTOCOL,
        target: target.to_owned(),
        endpoints,
        minions,
        all_installed,
        exit_code: if all_installed {
            exit::OK
        } else {
            exit::MODULE_NOT_INSTALLED
        },
    })
}
