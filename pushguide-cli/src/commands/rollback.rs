//! `rollback`: to the previous (or a given) version, or host by host undoing one deployment
//! (`--deployment ID`).

use std::sync::Arc;

use pushguide_core::{Request, Template};

use crate::app::App;
use crate::error::CliError;
use crate::progress::Progress;
use crate::results::DeploymentSummary;

use super::recorded;
use super::run::run;

/// `rollback TEMPLATE [--to VERSION | --deployment ID]`.
///
/// With `--deployment ID`: only the hosts that deployment touched (those whose batch started) are
/// rolled back, each to the version it ran before that deployment (see [`undo_request`]). Refused
/// with a usage error when the deployment is still running, belongs to another template, is a dry
/// run or a rollback itself, or touched no host.
pub async fn rollback(
    app: &mut App,
    name: &str,
    to: Option<String>,
    deployment: Option<&str>,
    dry_run: bool,
    progress: &mut Progress,
) -> Result<DeploymentSummary, CliError> {
    let t = app.template(name)?;
    app.check_deploy(&t)?;
    if to.is_some() && deployment.is_some() {
        return Err(CliError::Usage(
            "--to and --deployment exclude each other: --deployment rolls each host back to the \
             version it ran before that deployment"
                .into(),
        ));
    }
    let undo = match deployment {
        Some(id) => {
            app.command = "rollback --deployment";
            Some(undo_target(app, name, id)?)
        }
        None => None,
    };
    if !dry_run {
        app.check_free(name).await?;
    }
    if let Some(v) = &to {
        pushguide_core::validate::version("--to", v)?;
    }
    let t = app.with_cmdb(t).await?;
    let template = Arc::new(t.template);
    let req = match undo {
        Some(u) => undo_request(template, &u.version, app.principal().clone(), u.touched),
        None => Request::rollback(template, to, app.principal().clone()),
    }
    .dry_run(dry_run);
    run(app, req, None, None, progress).await
}

/// What `rollback --deployment ID` undoes, read from the store.
#[derive(Debug)]
struct UndoTarget {
    /// The version that deployment released.
    version: String,
    /// The hosts whose batch started.
    touched: Vec<String>,
}

/// Reads deployment `id` of template `name` and the hosts it touched; refuses (usage error) a
/// deployment that is still running, of another template, a dry run or a rollback, or one that
/// touched no host.
fn undo_target(app: &mut App, name: &str, id: &str) -> Result<UndoTarget, CliError> {
    let store = app.store()?;
    // A deployment whose process died is marked interrupted first (idempotent).
    store.recover()?;
    let rec = recorded(&store, id)?;
    if rec.template != name {
        return Err(CliError::Usage(format!(
            "--deployment {id}: it is a deployment of template `{}`, not of `{name}`; run \
             `pushguide rollback {} --deployment {id}`",
            rec.template, rec.template
        )));
    }
    if rec.ended.is_none() {
        return Err(CliError::Usage(format!(
            "--deployment {id}: it is still running (its process is alive; a process that died \
             is known as such once its liveness expires, after the store's lease TTL, 30 s: see \
             `pushguide recover`); cancel it or wait for it to end (`pushguide watch {id}`)"
        )));
    }
    if rec.rollback {
        return Err(CliError::Usage(format!(
            "--deployment {id}: it is itself a rollback; roll back to a version with \
             `pushguide rollback {name} --to VERSION`"
        )));
    }
    if rec.dry_run {
        return Err(CliError::Usage(format!(
            "--deployment {id}: it was a dry run and changed no host"
        )));
    }
    // only the newest deployment of the template can be undone host by host: a later one changed
    // what the hosts run since, and undoing the older one would undo the later one's work instead
    for later in store.deployments(name, 1000)? {
        if later == id {
            break;
        }
        if let Some(d) = store.deployment(&later)? {
            if !d.dry_run {
                return Err(CliError::Usage(format!(
                    "--deployment {id}: deployment {later} of `{name}` came after it and changed \
                     the hosts since; only the newest deployment can be undone this way: roll back \
                     with `pushguide rollback {name}` or `--to VERSION`"
                )));
            }
        }
    }
    let touched = store.touched_hosts(id)?;
    if touched.is_empty() {
        return Err(CliError::Usage(format!(
            "--deployment {id}: it touched no host (it ended before its first batch); nothing to \
             roll back"
        )));
    }
    Ok(UndoTarget {
        version: rec.version,
        touched,
    })
}

/// The engine request of `rollback --deployment`: roll back the effects of the release of
/// `version` on `touched` only — each host back to the version it ran before that release (its
/// recorded current version when the release never recorded it there, else its previous good
/// version); a host with nothing recorded is skipped, not a failure (see [`Request::undo`]).
pub fn undo_request(
    template: Arc<Template>,
    version: &str,
    principal: pushguide_core::Principal,
    touched: Vec<String>,
) -> Request {
    Request::rollback(template, None, principal)
        .hosts(touched)
        .undo(version)
}
