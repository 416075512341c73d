//! `deploy` (attached; `deploy --detach` is [`super::detach`]) and the check of `--hosts`.

use std::sync::Arc;

use pushguide_core::{Request, Template, Transport as _};

use crate::app::App;
use crate::cli::DeployArgs;
use crate::error::CliError;
use crate::progress::Progress;
use crate::results::DeploymentSummary;

use super::glob::glob_match;
use super::plan::{artifact, parse_batch};
use super::run::run;
use super::targets_text;

/// `deploy TEMPLATE VERSION` (not detached; see [`detach`](super::detach)).
pub async fn deploy(
    app: &mut App,
    args: &DeployArgs,
    progress: &mut Progress,
) -> Result<DeploymentSummary, CliError> {
    let req = deploy_request(
        app,
        &args.template,
        &args.version,
        args.dry_run,
        args.batch.as_deref(),
        args.hosts.as_deref(),
    )
    .await?;
    run(app, req, args.id_file.as_deref(), args.on_pause, progress).await
}

/// The engine request of a release of `version` of template `name` by the app's principal, after
/// every check (permission, busy template, version, hosts, artifact from CI, CMDB settings).
pub(crate) async fn deploy_request(
    app: &mut App,
    name: &str,
    version: &str,
    dry_run: bool,
    batch: Option<&str>,
    hosts: Option<&[String]>,
) -> Result<Request, CliError> {
    let t = app.template(name)?;
    app.check_deploy(&t)?;
    if !dry_run {
        app.check_free(name).await?;
    }
    pushguide_core::validate::version("version", version)?;
    let hosts = match hosts {
        Some(h) => Some(check_hosts(app, &t.template, h).await?),
        None => None,
    };
    let artifact = artifact(app, name, version).await?;
    if let (false, Some(a)) = (dry_run, &artifact) {
        // make the artifact fetchable by the minions (a copy from a repository that needs
        // credentials) before anything is sent to salt
        if let Some(source) = app.artifact_source()? {
            source.stage(name, version, a).await?;
        }
    }
    let mut t = app.with_cmdb(t).await?;
    if let Some(b) = batch {
        t.template.rollout.batch = parse_batch(b)?;
    }
    let mut req = Request::new(
        Arc::new(t.template),
        version.to_owned(),
        app.principal().clone(),
    )
    .dry_run(dry_run);
    if let Some(a) = artifact {
        req = req.artifact(a);
    }
    if let Some(h) = hosts {
        req = req.hosts(h);
    }
    Ok(req)
}

/// Checks `--hosts` against the template's targets before the deployment starts, so that a host
/// that is not a target is a usage error: nothing is sent, nothing recorded. A minion list (or a
/// `list` expression) is checked without salt; a glob refuses a host it cannot match without salt;
/// any other host of an expression template is looked up with the read-only resolve of the target
/// expression, before any other call. Returns the hosts, trimmed.
async fn check_hosts(app: &App, t: &Template, given: &[String]) -> Result<Vec<String>, CliError> {
    let hosts: Vec<String> = given.iter().map(|h| h.trim().to_owned()).collect();
    if hosts.is_empty() {
        return Err(CliError::Usage(
            "--hosts: give at least one host of the template".into(),
        ));
    }
    for h in &hosts {
        if let Err(e) = pushguide_core::validate::minion_id("--hosts", h) {
            return Err(CliError::Usage(e.to_string()));
        }
    }
    let not_target = |h: &str, targets: &str| {
        CliError::Usage(format!(
            "--hosts {h}: not a target of template `{}` (targets: {targets})",
            t.name
        ))
    };
    let targets: Vec<String> = match t.targets.expression() {
        None => t.targets.minions.clone(),
        Some(expr) if expr.tgt_type == pushguide_core::TargetType::List => {
            pushguide_core::resolve_list(&expr)
                .map_err(|e| CliError::Usage(format!("template `{}`: {e}", t.name)))?
                .iter()
                .map(ToString::to_string)
                .collect()
        }
        Some(expr) => {
            if expr.tgt_type == pushguide_core::TargetType::Glob {
                if let Some(h) = hosts.iter().find(|h| !glob_match(&expr.expression, h)) {
                    return Err(not_target(h, &targets_text(t)));
                }
            }
            let salt = app.salt()?;
            let found = salt.resolve(&expr).await.map_err(|source| {
                CliError::Core(pushguide_core::Error::Transport {
                    during: "resolving the template's targets for --hosts",
                    source,
                })
            })?;
            found.iter().map(ToString::to_string).collect()
        }
    };
    if let Some(h) = hosts.iter().find(|h| !targets.contains(h)) {
        let mut shown: Vec<&str> = targets.iter().map(String::as_str).take(20).collect();
        if targets.len() > shown.len() {
            shown.push("…");
        }
        let shown = if shown.is_empty() {
            "none".to_owned()
        } else {
            shown.join(", ")
        };
        return Err(not_target(h, &shown));
    }
    Ok(hosts)
}
