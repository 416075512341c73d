//! `history`, `show`, `log` and `watch`: what the store recorded of deployments.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use pushguide_store::ServerStore;

use crate::app::{App, BrokenTemplate};
use crate::error::CliError;
use crate::progress::Progress;
use crate::results::{rfc3339, DeploymentRow, HostState, HostVersionRow, LogResult, ShowResult};

use super::kind_of;

/// `history [TEMPLATE]`: newest first.
///
/// Without a template: the deployments of every template the user may view, and the template files
/// that do not load (skipped: whether the user may view them is unknown).
///
/// On a PostgreSQL store the rows come from its journal the same way.
pub async fn history(
    app: &mut App,
    template: Option<&str>,
    limit: usize,
) -> Result<(Vec<DeploymentRow>, Vec<BrokenTemplate>), CliError> {
    let (names, broken): (Vec<String>, _) = match template {
        Some(n) => {
            let t = app.template(n)?;
            app.check_view(&t)?;
            (vec![t.template.name], Vec::new())
        }
        None => {
            let (good, broken) = app.scan_templates()?;
            let names = good
                .into_iter()
                .filter(|t| t.template.acl.may_view(app.principal()))
                .map(|t| t.template.name)
                .collect();
            (names, broken)
        }
    };
    if let Some(pg) = app.postgres().await? {
        return Ok((
            super::pg_history::history(&pg, &names, limit).await?,
            broken,
        ));
    }
    let store = app.store()?;
    let mut rows = Vec::new();
    for n in names {
        for id in store.deployments(&n, limit)? {
            if let Some(r) = store.deployment(&id)? {
                rows.push((r.started, DeploymentRow::from(r)));
            }
        }
    }
    rows.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| b.1.id.cmp(&a.1.id)));
    Ok((rows.into_iter().map(|(_, r)| r).collect(), broken))
}

/// `show TEMPLATE` (on SQLite or PostgreSQL).
pub async fn show(app: &mut App, name: &str) -> Result<ShowResult, CliError> {
    let t = app.template(name)?;
    app.check_view(&t)?;
    let (last, fleet) = match app.postgres().await? {
        Some(pg) => super::pg_history::show_parts(&pg, name).await?,
        None => {
            let store = app.store()?;
            let fleet = store
                .fleet(name)?
                .into_iter()
                .map(|v| super::pg_history::FleetRow {
                    host: v.host,
                    version: v.version,
                    healthy: v.healthy,
                    since: v.since,
                    previous: v.previous,
                })
                .collect();
            (store.last_deployment(name)?.map(Into::into), fleet)
        }
    };
    let mut hosts: BTreeMap<String, HostVersionRow> = t
        .template
        .targets
        .minions
        .iter()
        .map(|m| {
            (
                m.clone(),
                HostVersionRow {
                    host: m.clone(),
                    version: None,
                    state: HostState::NeverDeployed,
                    since: None,
                    previous: None,
                },
            )
        })
        .collect();
    for v in fleet {
        hosts.insert(
            v.host.clone(),
            HostVersionRow {
                state: match (&v.version, v.healthy) {
                    (None, _) => HostState::Unknown,
                    (Some(_), true) => HostState::Running,
                    (Some(_), false) => HostState::Failed,
                },
                host: v.host,
                version: v.version,
                since: Some(rfc3339(v.since)),
                previous: v.previous,
            },
        );
    }
    Ok(ShowResult {
        name: t.template.name.clone(),
        file: t.file.display().to_string(),
        kind: kind_of(&t.template),
        may_deploy: t.template.acl.may_deploy(app.principal()),
        config: serde_json::to_value(&t.template).map_err(|e| CliError::Internal(e.to_string()))?,
        toml: t.template.to_toml_string()?,
        last_deployment: last,
        hosts: hosts.into_values().collect(),
    })
}

/// The log of deployment `id` in `store` (named `store_name` when it has no such deployment).
async fn deployment_log(
    store: &dyn ServerStore,
    store_name: &str,
    id: &str,
) -> Result<LogResult, CliError> {
    let rec = store
        .deployment(id)
        .await?
        .ok_or_else(|| CliError::UnknownDeployment {
            id: id.to_owned(),
            store: store_name.to_owned(),
        })?;
    Ok(LogResult::read(store, rec).await?)
}

/// `log ID`.
pub async fn log(app: &mut App, id: &str) -> Result<LogResult, CliError> {
    let store = app.server_store().await?;
    let r = deployment_log(&*store, &app.store_name(), id).await?;
    let t = app.template(&r.deployment.template)?;
    app.check_view(&t)?;
    Ok(r)
}

/// `watch ID`: follows the store's journal until the deployment has an end.
pub async fn watch(
    app: &mut App,
    id: &str,
    interval: Duration,
    progress: &mut Progress,
) -> Result<LogResult, CliError> {
    let store = app.server_store().await?;
    let store_name = app.store_name();
    let begun = std::time::Instant::now();
    let mut seen_calls = 0;
    let mut seen_failures = BTreeSet::new();
    let mut announced = false;
    loop {
        let Some(rec) = store.deployment(id).await? else {
            if begun.elapsed() > Duration::from_secs(10) {
                return Err(CliError::UnknownDeployment {
                    id: id.to_owned(),
                    store: store_name,
                });
            }
            tokio::time::sleep(interval).await;
            continue;
        };
        if !announced {
            let t = app.template(&rec.template)?;
            app.check_view(&t)?;
            progress.watching(id, &rec.template, &rec.version);
            announced = true;
        }
        let calls = store.calls(id).await?;
        for c in calls.iter().skip(seen_calls) {
            progress.call_row(c);
        }
        seen_calls = calls.len();
        for r in store.host_stage_results(id).await? {
            if r.status == "failed" && seen_failures.insert((r.host.clone(), r.stage.clone())) {
                progress.host_failed_row(&r);
            }
        }
        if rec.outcome.is_some() {
            // The outcome is recorded in the same transaction as the report: host statuses and
            // logs are there already.
            progress.finish();
            return deployment_log(&*store, &store_name, id).await;
        }
        // woken early when the store says the journal grew (PostgreSQL: another instance wrote)
        store.wait_for_journal(id, interval).await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::Arc;
    use std::time::SystemTime;

    use pushguide_core::{DeploymentOutcome, Event, EventKind, MinionId, Report, Stage};

    use super::*;
    use pushguide_store::SqliteStore;

    /// The journal of deployment `d1` of shop 2.0 from `t0`: web-02 fails at deploy, web-01
    /// succeeds, the deployment ends partially applied.
    fn journal(t0: SystemTime) -> Vec<Event> {
        let host = |h: &str| MinionId::new(h).unwrap();
        let ev = |secs: u64, kind: EventKind| Event {
            at: t0 + Duration::from_secs(secs),
            deployment: Arc::from("d1"),
            kind,
        };
        let hosts = vec![host("web-01"), host("web-02")];
        vec![
            ev(
                0,
                EventKind::DeploymentStarted {
                    template: "shop".into(),
                    version: "2.0".into(),
                    user: "alice".into(),
                    dry_run: false,
                    rollback: false,
                },
            ),
            ev(
                1,
                EventKind::Prepared {
                    hosts: 2,
                    batches: 1,
                    excluded: Vec::new(),
                    plan: vec![hosts.clone()],
                    left_out: vec![],
                },
            ),
            ev(
                2,
                EventKind::BatchStarted {
                    batch: 0,
                    hosts: 2,
                    minions: hosts.clone(),
                },
            ),
            ev(
                2,
                EventKind::StageStarted {
                    batch: Some(0),
                    stage: Stage::Deploy,
                    hosts: 2,
                },
            ),
            ev(
                3,
                EventKind::HostFailed {
                    host: host("web-02"),
                    stage: Stage::Deploy,
                    fun: Some("file.symlink".into()),
                    reason: "disk full".into(),
                },
            ),
            ev(
                4,
                EventKind::StageFinished {
                    batch: Some(0),
                    stage: Stage::Deploy,
                    ok: 1,
                    failed: 1,
                },
            ),
            ev(
                4,
                EventKind::HostSucceeded {
                    host: host("web-01"),
                },
            ),
            ev(
                5,
                EventKind::DeploymentFinished {
                    outcome: DeploymentOutcome::PartiallyApplied,
                },
            ),
        ]
    }

    /// The report of that deployment, with each host's log.
    fn report(t0: SystemTime) -> Report {
        serde_json::from_value(serde_json::json!({
            "id": "d1", "template": "shop", "version": "2.0", "user": "alice", "dry_run": false,
            "outcome": "partially-applied", "reason": "web-02 failed",
            "started": t0, "duration": {"secs": 5, "nanos": 0},
            "batches": [["web-01", "web-02"]],
            "hosts": [
                {"host": "web-01", "batch": 0, "status": "succeeded", "failure": null,
                 "rollback_failure": null, "rolled_back_to": null,
                 "log": [{"type": "message", "stage": "deploy", "text": "linked"}]},
                {"host": "web-02", "batch": 0, "status": "failed", "failure": null,
                 "rollback_failure": null, "rolled_back_to": null,
                 "log": [{"type": "message", "stage": "deploy", "text": "disk full"}]}
            ],
            "calls": [], "events": [], "history_error": null
        }))
        .unwrap()
    }

    /// `log` reads host statuses from the journal; the outcome (and exit code) appears only with
    /// the report, together with the host logs, so `watch` never waits for them.
    #[tokio::test]
    async fn log_shows_journal_statuses_and_the_outcome_only_with_the_report() {
        let store = SqliteStore::open_in_memory().unwrap();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_772_566);
        store.append_events(&journal(t0)).unwrap();
        let r = deployment_log(&store, "test", "d1").await.unwrap();
        assert_eq!((r.deployment.outcome.as_deref(), r.exit_code), (None, None));
        let status: Vec<_> = r.hosts.iter().map(|h| h.status.as_deref()).collect();
        assert_eq!(status, [Some("succeeded"), Some("failed")]);
        assert!(r.hosts.iter().all(|h| h.log.is_empty()));
        store.finish_report(&report(t0)).unwrap();
        let r = deployment_log(&store, "test", "d1").await.unwrap();
        assert_eq!(r.deployment.outcome.as_deref(), Some("partially-applied"));
        assert_eq!((r.exit_code, r.outcome_error), (Some(2), None));
        let status: Vec<_> = r.hosts.iter().map(|h| h.status.as_deref()).collect();
        assert_eq!(status, [Some("succeeded"), Some("failed")]);
        let logs: Vec<_> = r.hosts.iter().map(|h| h.log.concat()).collect();
        assert_eq!(logs, ["[deploy] linked", "[deploy] disk full"]);
    }
}
