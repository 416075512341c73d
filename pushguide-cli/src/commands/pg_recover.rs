//! `recover` on a PostgreSQL store: marks the deployments whose instance died `interrupted`
//! ([`PgStore::recover`]) and lists every interrupted deployment of the templates the user may
//! view, each host the journal names with what was done to it.

use std::collections::{BTreeMap, BTreeSet};

use pushguide_core::{Event, EventKind, Stage};
use pushguide_postgres::PgStore;

use crate::error::CliError;
use crate::results::{rfc3339, HostProgressRow, InterruptedRow};

/// A host's progress, read from the journal.
#[derive(Default)]
struct Progress {
    batch: Option<usize>,
    stage: Option<Stage>,
    status: String,
    detail: Option<String>,
    fun: Option<String>,
    stages_done: Vec<Stage>,
    calls_done: Vec<String>,
    stage_calls: Vec<(String, Vec<String>)>,
    batch_finished: bool,
}

/// Where the journal stopped: batch, stage, live hosts, planned hosts, plan, and each host named.
struct Journal {
    batch: Option<usize>,
    stage: Stage,
    live_hosts: usize,
    planned_hosts: Option<usize>,
    planned: Vec<String>,
    hosts: BTreeMap<String, Progress>,
}

fn read(events: &[Event]) -> Journal {
    let mut j = Journal {
        batch: None,
        stage: Stage::Prepare,
        live_hosts: 0,
        planned_hosts: None,
        planned: Vec::new(),
        hosts: BTreeMap::new(),
    };
    let mut in_batch: Vec<String> = Vec::new();
    for e in events {
        match &e.kind {
            EventKind::Prepared {
                hosts,
                plan,
                left_out,
                ..
            } => {
                j.planned_hosts = Some(*hosts);
                j.planned = plan.iter().flatten().map(|m| m.to_string()).collect();
                for m in left_out {
                    let p = j.hosts.entry(m.to_string()).or_default();
                    p.stage = Some(Stage::Prepare);
                    p.status = "failed".into();
                    p.detail = Some("left out of the plan".into());
                }
            }
            EventKind::BatchStarted { batch, minions, .. } => {
                j.batch = Some(*batch);
                in_batch = minions.iter().map(|m| m.to_string()).collect();
                j.live_hosts = in_batch.len();
                for m in &in_batch {
                    let p = j.hosts.entry(m.clone()).or_default();
                    p.batch = Some(*batch);
                    p.status = "interrupted".into();
                }
            }
            EventKind::StageStarted { stage, hosts, .. } => {
                j.stage = *stage;
                j.live_hosts = *hosts;
                for p in live(&mut j.hosts, &in_batch) {
                    p.stage = Some(*stage);
                    p.calls_done.clear();
                }
            }
            EventKind::CallFinished { stage, fun, .. } => {
                for p in live(&mut j.hosts, &in_batch) {
                    p.calls_done.push(fun.clone());
                    match p.stage_calls.iter_mut().find(|(s, _)| s == stage.as_str()) {
                        Some((_, c)) => c.push(fun.clone()),
                        None => p
                            .stage_calls
                            .push((stage.as_str().to_owned(), vec![fun.clone()])),
                    }
                }
            }
            EventKind::StageFinished { stage, .. } => {
                for p in live(&mut j.hosts, &in_batch) {
                    p.stages_done.push(*stage);
                    p.calls_done.clear();
                }
            }
            EventKind::HostFailed {
                host,
                stage,
                fun,
                reason,
            } => {
                let p = j.hosts.entry(host.to_string()).or_default();
                p.stage = Some(*stage);
                p.status = "failed".into();
                p.fun = fun.clone();
                p.detail = Some(reason.clone());
            }
            EventKind::HostSucceeded { host } => {
                j.hosts.entry(host.to_string()).or_default().status = "succeeded".into();
            }
            EventKind::BatchFinished { .. } => {
                for m in &in_batch {
                    if let Some(p) = j.hosts.get_mut(m) {
                        p.batch_finished = true;
                    }
                }
                in_batch.clear();
            }
            EventKind::HostRolledBack { host, to } => {
                let p = j.hosts.entry(host.to_string()).or_default();
                p.status = "rolled-back".into();
                p.detail = Some(to.clone());
            }
            EventKind::HostRollbackFailed { host, reason } => {
                let p = j.hosts.entry(host.to_string()).or_default();
                p.status = "rollback-failed".into();
                p.detail = Some(reason.clone());
            }
            _ => {}
        }
    }
    j
}

/// The hosts of the batch under way that are still interrupted (no end of their own yet).
fn live<'a>(
    hosts: &'a mut BTreeMap<String, Progress>,
    in_batch: &'a [String],
) -> impl Iterator<Item = &'a mut Progress> + 'a {
    hosts
        .iter_mut()
        .filter(move |(h, p)| in_batch.contains(h) && p.status == "interrupted")
        .map(|(_, p)| p)
}

fn done(p: &Progress, version: &str) -> String {
    let stage = p.stage.map_or("prepare", Stage::as_str);
    let detail = p.detail.as_deref().unwrap_or("no reason recorded");
    match p.status.as_str() {
        "succeeded" if p.batch_finished => format!("batch finished: runs {version}"),
        "succeeded" => format!("every stage done: runs {version} (its batch did not finish)"),
        "failed" if p.batch.is_none() => format!("left out at {stage}: {detail}"),
        "failed" => format!(
            "failed at {stage}{}: {detail}",
            p.fun
                .as_deref()
                .map(|f| format!(" ({f})"))
                .unwrap_or_default()
        ),
        "rolled-back" => format!("rolled back to {detail}"),
        "rollback-failed" => format!("rollback failed: {detail}"),
        _ if p.calls_done.is_empty() && p.stages_done.is_empty() => {
            "batch started, no call returned yet (one already sent may have run)".to_owned()
        }
        _ if p.calls_done.is_empty() => format!("{stage} interrupted before any call returned"),
        _ => format!("{stage} interrupted after {}", p.calls_done.join(", ")),
    }
}

/// `recover` on PostgreSQL: marks, then lists the interrupted deployments of `templates`.
pub(super) async fn recover(
    pg: &PgStore,
    templates: &[String],
) -> Result<Vec<InterruptedRow>, CliError> {
    let marked: BTreeSet<String> = pg.recover(None).await?.into_iter().collect();
    let mut rows = Vec::new();
    for id in pg.interrupted(templates).await? {
        let Some(d) = pg.deployment(&id).await? else {
            continue;
        };
        let events = pg.events(&id).await?;
        let j = read(&events);
        let named: BTreeSet<&String> = j.hosts.keys().collect();
        let mut hosts: Vec<HostProgressRow> = j
            .hosts
            .iter()
            .map(|(h, p)| HostProgressRow {
                host: h.clone(),
                batch: p.batch,
                stage: Some(p.stage.map_or("prepare", Stage::as_str).to_owned()),
                status: p.status.clone(),
                touched: p.batch.is_some(),
                stages_done: p
                    .stages_done
                    .iter()
                    .map(|s| s.as_str().to_owned())
                    .collect(),
                calls_done: p.calls_done.clone(),
                stage_calls: p.stage_calls.clone(),
                done: done(p, &d.version),
            })
            .collect();
        let never: Vec<&String> = j.planned.iter().filter(|h| !named.contains(h)).collect();
        hosts.extend(never.iter().map(|h| HostProgressRow {
            host: (*h).clone(),
            batch: None,
            stage: None,
            status: "not-reached".to_owned(),
            touched: false,
            stages_done: Vec::new(),
            calls_done: Vec::new(),
            stage_calls: Vec::new(),
            done: "not reached".to_owned(),
        }));
        let in_batches = j.hosts.values().filter(|p| p.batch.is_some()).count();
        let unnamed = j
            .planned_hosts
            .map_or(0, |n| n.saturating_sub(in_batches + never.len()));
        let touched = hosts.iter().any(|h| h.touched);
        let plain = !d.dry_run && !d.rollback;
        let last_event = events.last().map_or(d.started, |e| e.at);
        rows.push(InterruptedRow {
            newly_marked: marked.contains(&d.id),
            rollback_command: (plain && touched)
                .then(|| format!("pushguide rollback {} --deployment {}", d.template, d.id)),
            resume_command: plain.then(|| format!("pushguide deploy {} {}", d.template, d.version)),
            mode: if d.rollback { "rollback" } else { "deploy" },
            planned_hosts: j.planned_hosts,
            unnamed_not_reached: unnamed,
            hosts,
            id: d.id,
            template: d.template,
            version: d.version,
            user: d.principal,
            dry_run: d.dry_run,
            started: rfc3339(d.started),
            last_event: rfc3339(last_event),
            batch: j.batch,
            stage: j.stage.as_str().to_owned(),
            live_hosts: j.live_hosts,
        });
    }
    Ok(rows)
}
