//! `recover`: deployments whose process died, and what was done to each of their hosts.

use std::collections::{BTreeMap, BTreeSet};

use pushguide_core::Template;
use pushguide_store::{HostProgress, InterruptedDeployment};

use crate::app::{App, LoadedTemplate};
use crate::error::CliError;
use crate::results::{rfc3339, HostProgressRow, InterruptedRow};

/// What was done to a host, in words, from the journal.
fn host_done(h: &HostProgress, version: &str) -> String {
    use pushguide_core::Stage;
    let calls_of = |stage: Stage| -> &[String] {
        h.stage_calls
            .iter()
            .find(|(s, _)| *s == stage)
            .map(|(_, c)| c.as_slice())
            .unwrap_or_default()
    };
    let done: Vec<String> = h
        .stages_done
        .iter()
        .map(|s| match calls_of(*s) {
            [] => format!("{s} done"),
            calls => format!("{s} done ({})", calls.join(", ")),
        })
        .collect();
    let done = if done.is_empty() {
        String::new()
    } else {
        format!("{}; ", done.join("; "))
    };
    match h.status.as_str() {
        "succeeded" if h.batch_finished => format!("batch finished: runs {version}"),
        "succeeded" => format!("every stage done: runs {version} (its batch did not finish)"),
        "failed" if h.batch.is_none() => format!(
            "left out at {}: {}",
            h.stage,
            h.detail.as_deref().unwrap_or("failed")
        ),
        "failed" => format!(
            "{done}failed at {}{}: {}",
            h.stage,
            h.fun
                .as_deref()
                .map(|f| format!(" ({f})"))
                .unwrap_or_default(),
            h.detail.as_deref().unwrap_or("no reason recorded")
        ),
        "rolled-back" => format!(
            "rolled back to {}",
            h.detail.as_deref().unwrap_or("its previous version")
        ),
        "rollback-failed" => format!(
            "rollback failed: {}",
            h.detail.as_deref().unwrap_or("no reason recorded")
        ),
        "interrupted" if h.stages_done.is_empty() && h.calls_done.is_empty() => {
            "batch started, no call returned yet (one already sent may have run)".to_owned()
        }
        "interrupted" => {
            let at = if h.calls_done.is_empty() {
                format!("{} interrupted before any call returned", h.stage)
            } else {
                format!("{} interrupted after {}", h.stage, h.calls_done.join(", "))
            };
            let not_run: Vec<&str> = Stage::BATCH
                .iter()
                .filter(|s| **s > h.stage)
                .map(|s| s.as_str())
                .collect();
            let rest = if not_run.is_empty() {
                String::new()
            } else {
                format!("; {} not run", not_run.join(", "))
            };
            format!("{done}{at}{rest}")
        }
        other => format!("{done}{other} at {}", h.stage),
    }
}

/// `recover`: marks deployments of dead processes interrupted, then lists every interrupted
/// deployment of the templates the user may view, each target host with what was done to it.
///
/// On a PostgreSQL store: the same, from its journal (the `pg_recover` module).
pub async fn recover(app: &mut App) -> Result<Vec<InterruptedRow>, CliError> {
    if let Some(pg) = app.postgres().await? {
        let viewable: Vec<String> = app
            .templates()?
            .into_iter()
            .filter(|t| t.template.acl.may_view(app.principal()))
            .map(|t| t.template.name)
            .collect();
        return super::pg_recover::recover(&pg, &viewable).await;
    }
    let store = app.store()?;
    let marked: BTreeSet<String> = store.recover()?.into_iter().map(|d| d.id).collect();
    let templates: BTreeMap<String, LoadedTemplate> = app
        .templates()?
        .into_iter()
        .map(|t| (t.template.name.clone(), t))
        .collect();
    let mut rows = Vec::new();
    for d in store.interrupted()? {
        // Only templates the user may view; a template whose file is gone cannot be checked.
        let Some(t) = templates.get(&d.template) else {
            tracing::debug!(deployment = %d.id, template = %d.template, "template file gone: not listed");
            continue;
        };
        if !t.template.acl.may_view(app.principal()) {
            continue;
        }
        let newly_marked = marked.contains(&d.id);
        rows.push(interrupted_row(d, &t.template, newly_marked));
    }
    Ok(rows)
}

/// The planned hosts of `d` that it never reached, by name, and how many more it never reached
/// whose names are unknown.
fn not_reached(d: &InterruptedDeployment, t: &Template) -> (Vec<String>, usize) {
    let named: BTreeSet<&str> = d.hosts.iter().map(|h| h.host.as_str()).collect();
    let in_batches = d.hosts.iter().filter(|h| h.batch.is_some()).count();
    let never = d.planned_hosts.map(|n| n.saturating_sub(in_batches));
    // The journal names planned hosts only once their batch starts: the others are the
    // template's hosts the journal does not name, when the count agrees.
    let unnamed = |hosts: &[String]| -> Vec<String> {
        hosts
            .iter()
            .filter(|m| !named.contains(m.as_str()))
            .cloned()
            .collect()
    };
    let candidates: Vec<String> = if !d.planned.is_empty() {
        // the journal's plan names every host (expression templates and --hosts subsets too)
        unnamed(&d.planned)
    } else if t.targets.expression().is_none() {
        unnamed(&t.targets.minions)
    } else {
        Vec::new()
    };
    match never {
        Some(n) if n == candidates.len() => (candidates, 0),
        Some(n) => (Vec::new(), n),
        // interrupted during prepare: no host was touched
        None => (candidates, 0),
    }
}

/// One host the journal names, and what was done to it.
fn host_row(h: &HostProgress, version: &str) -> HostProgressRow {
    HostProgressRow {
        host: h.host.clone(),
        batch: h.batch,
        stage: Some(h.stage.as_str().to_owned()),
        status: h.status.clone(),
        touched: h.batch.is_some(),
        stages_done: h
            .stages_done
            .iter()
            .map(|s| s.as_str().to_owned())
            .collect(),
        calls_done: h.calls_done.clone(),
        stage_calls: h
            .stage_calls
            .iter()
            .map(|(s, c)| (s.as_str().to_owned(), c.clone()))
            .collect(),
        done: host_done(h, version),
    }
}

/// A planned host the deployment never reached.
fn not_reached_row(host: String) -> HostProgressRow {
    HostProgressRow {
        host,
        batch: None,
        stage: None,
        status: "not-reached".to_owned(),
        touched: false,
        stages_done: Vec::new(),
        calls_done: Vec::new(),
        stage_calls: Vec::new(),
        done: "not reached".to_owned(),
    }
}

/// The row of interrupted deployment `d` of template `t`: every target host, and the commands
/// that roll it back or resume it.
fn interrupted_row(d: InterruptedDeployment, t: &Template, newly_marked: bool) -> InterruptedRow {
    let (not_reached, unnamed) = not_reached(&d, t);
    let mut hosts: Vec<HostProgressRow> = d.hosts.iter().map(|h| host_row(h, &d.version)).collect();
    hosts.extend(not_reached.into_iter().map(not_reached_row));
    hosts.sort_by(|a, b| a.host.cmp(&b.host));
    let touched = hosts.iter().any(|h| h.touched);
    let plain = !d.dry_run && !d.rollback;
    InterruptedRow {
        newly_marked,
        rollback_command: (plain && touched)
            .then(|| format!("pushguide rollback {} --deployment {}", d.template, d.id)),
        resume_command: plain.then(|| format!("pushguide deploy {} {}", d.template, d.version)),
        mode: if d.rollback { "rollback" } else { "deploy" },
        planned_hosts: d.planned_hosts,
        unnamed_not_reached: unnamed,
        hosts,
        id: d.id,
        template: d.template,
        version: d.version,
        user: d.principal,
        dry_run: d.dry_run,
        started: rfc3339(d.started),
        last_event: rfc3339(d.last_event),
        batch: d.batch,
        stage: d.stage.as_str().to_owned(),
        live_hosts: d.live_hosts,
    }
}
