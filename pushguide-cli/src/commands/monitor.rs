//! `monitor`: one check of the minions of every template the user may view (the loop of rounds is
//! [`crate::run`]'s).

use std::collections::BTreeSet;
use std::sync::Arc;

use pushguide_core::{MinionId, Monitor, Transport};

use crate::app::{App, BrokenTemplate};
use crate::error::CliError;
use crate::results::{rfc3339, ChangeRow, MonitorCheck};

/// The minions of every template the user may view, target expressions resolved through salt now
/// (a template's minions may change between rounds), the templates that could not be resolved,
/// and the broken template files.
async fn monitored_minions(
    app: &App,
    salt: &dyn Transport,
) -> Result<(Vec<MinionId>, Vec<String>, Vec<BrokenTemplate>), CliError> {
    let (templates, broken) = app.scan_templates()?;
    let mut all = BTreeSet::new();
    let mut errors = Vec::new();
    for t in templates {
        if !t.template.acl.may_view(app.principal()) {
            continue;
        }
        match t.template.targets.expression() {
            Some(expr) => match salt.resolve(&expr).await {
                Ok(found) => all.extend(found),
                Err(e) => errors.push(format!(
                    "template `{}`: cannot resolve its targets `{}`: {e}",
                    t.template.name, expr.expression
                )),
            },
            None => {
                for m in &t.template.targets.minions {
                    all.insert(MinionId::new(m)?);
                }
            }
        }
    }
    Ok((all.into_iter().collect(), errors, broken))
}

/// `monitor`: the monitor and the salt-api client it pings through (targets are resolved at every
/// check, see [`monitor_check`]).
pub async fn monitor_setup(app: &mut App) -> Result<(Monitor, Arc<dyn Transport>), CliError> {
    let salt: Arc<dyn Transport> = app.salt()?;
    // minion states live in the store: kept across runs and shared with the engine's pre-flight
    let store = app.server_store().await?;
    let monitor = Monitor::new(salt.clone(), store, app.config.monitor_timeout);
    Ok((monitor, salt))
}

/// One check of `monitor`: reads the templates, resolves their targets and pings the minions. A
/// salt-api error is an `Err` for this check only; the caller decides whether to go on.
pub async fn monitor_check(
    app: &App,
    monitor: &Monitor,
    salt: &dyn Transport,
) -> Result<MonitorCheck, CliError> {
    let (minions, errors, broken) = monitored_minions(app, salt).await?;
    let changes = monitor.check_once(&minions).await?;
    let states = monitor.store().status(&minions).await?;
    let (mut up, mut down) = (Vec::new(), Vec::new());
    for s in states {
        if s.up {
            up.push(s.minion.to_string());
        } else {
            down.push(s.minion.to_string());
        }
    }
    Ok(MonitorCheck {
        checked: minions.len(),
        up,
        down,
        changes: changes
            .into_iter()
            .map(|c| ChangeRow {
                minion: c.minion.to_string(),
                up: c.up,
                was_up: c.was_up,
                at: rfc3339(c.at),
            })
            .collect(),
        errors,
        broken,
    })
}
