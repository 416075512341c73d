//! A deployment as its page shows it: batches × stages and hosts × stages, folded from the engine's
//! events (a running deployment) or read from the store (one that ended, or ran elsewhere).

use std::collections::HashMap;
use std::fmt::Write;

use pushguide_core::{Decision, Event, EventKind, Stage};
use pushguide_store::{DeploymentRecord, HostResult, HostStageResult};
use serde::Serialize;

use crate::html::escape;

/// The stage columns of the grid.
pub const COLUMNS: [Stage; 4] = [
    Stage::PreDeploy,
    Stage::Deploy,
    Stage::PostDeploy,
    Stage::Rollback,
];

fn column(stage: Stage) -> Option<usize> {
    COLUMNS.iter().position(|s| *s == stage)
}

/// The longest failure reason kept per host (the tail of the failing call's output).
const REASON_MAX: usize = 600;

/// One host's row.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HostRow {
    /// The host.
    pub host: String,
    /// Its batch (`None`: never in one).
    pub batch: Option<usize>,
    /// Each column's state: `pending`, `running`, `ok`, `failed`, `rolled-back`.
    pub stages: [&'static str; 4],
    /// Why it failed (the tail of the failing call's output), or the version it was rolled back to.
    pub detail: Option<String>,
    #[serde(skip)]
    live: bool,
}

/// One batch's row: each stage's state over its hosts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct BatchRow {
    /// Zero-based.
    pub batch: usize,
    /// Hosts.
    pub hosts: usize,
    /// Each column's state: `pending`, `running`, `ok` or `failed` (some host failed it).
    pub stages: [&'static str; 4],
}

/// A pause waiting for a decision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Pause {
    /// Zero-based batch.
    pub batch: usize,
    /// The stage that failed.
    pub stage: String,
    /// The hosts that failed it.
    pub failed: Vec<String>,
}

/// A deployment's grid.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Grid {
    /// Deployment id.
    pub id: String,
    /// Template.
    pub template: String,
    /// Version (a rollback's target).
    pub version: String,
    /// Who started it.
    pub user: String,
    /// A dry run.
    pub dry_run: bool,
    /// A rollback request.
    pub rollback: bool,
    /// `preparing`, `running`, `paused`, `stopping`, `rolling back`, or the outcome once it ended.
    pub state: String,
    /// The outcome once it ended.
    pub outcome: Option<String>,
    /// Batches.
    pub batches: Vec<BatchRow>,
    /// Hosts, in plan order.
    pub hosts: Vec<HostRow>,
    /// The pause waiting for a decision.
    pub pause: Option<Pause>,
    /// The decisions taken, in order.
    pub decisions: Vec<String>,
    /// The journal sequence: how many events were folded in.
    pub seq: u64,
    #[serde(skip)]
    index: HashMap<String, usize>,
    #[serde(skip)]
    batch_hosts: Vec<Vec<usize>>,
}

/// What an event changed, for the live view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// A host's row.
    Host(usize),
    /// A batch's row.
    Batch(usize),
    /// The status panel.
    Status,
}

impl Grid {
    /// An empty grid for deployment `id` (filled by [`Grid::apply`]).
    pub fn new(id: &str) -> Self {
        Grid {
            id: id.to_owned(),
            state: "preparing".into(),
            ..Grid::default()
        }
    }

    fn host(&mut self, name: &str) -> usize {
        if let Some(i) = self.index.get(name) {
            return *i;
        }
        self.hosts.push(HostRow {
            host: name.to_owned(),
            stages: ["pending"; 4],
            ..HostRow::default()
        });
        let i = self.hosts.len() - 1;
        self.index.insert(name.to_owned(), i);
        i
    }

    fn batch(&mut self, b: usize) -> &mut BatchRow {
        while self.batches.len() <= b {
            let n = self.batches.len();
            self.batches.push(BatchRow {
                batch: n,
                hosts: 0,
                stages: ["pending"; 4],
            });
            self.batch_hosts.push(Vec::new());
        }
        &mut self.batches[b]
    }

    /// Folds in one event; returns what changed.
    pub fn apply(&mut self, e: &Event) -> Vec<Change> {
        self.seq += 1;
        let mut changes = Vec::new();
        match &e.kind {
            EventKind::DeploymentStarted {
                template,
                version,
                user,
                dry_run,
                rollback,
            } => {
                self.template = template.clone();
                self.version = version.clone();
                self.user = user.clone();
                self.dry_run = *dry_run;
                self.rollback = *rollback;
                changes.push(Change::Status);
            }
            EventKind::Prepared { plan, .. } => {
                for (b, hosts) in plan.iter().enumerate() {
                    self.batch(b).hosts = hosts.len();
                    for h in hosts {
                        let i = self.host(h.as_str());
                        self.hosts[i].batch = Some(b);
                        self.batch_hosts[b].push(i);
                        changes.push(Change::Host(i));
                    }
                    changes.push(Change::Batch(b));
                }
                self.state = "running".into();
                changes.push(Change::Status);
            }
            EventKind::BatchStarted { batch, minions, .. } => {
                self.batch(*batch).hosts = minions.len();
                for h in minions {
                    let i = self.host(h.as_str());
                    if self.hosts[i].batch.is_none() {
                        self.hosts[i].batch = Some(*batch);
                        self.batch_hosts[*batch].push(i);
                    }
                    self.hosts[i].live = true;
                }
                changes.push(Change::Batch(*batch));
            }
            EventKind::StageStarted {
                batch: Some(b),
                stage,
                ..
            } => {
                if let Some(c) = column(*stage) {
                    self.batch(*b).stages[c] = "running";
                    let hosts = self.batch_hosts[*b].clone();
                    for i in hosts {
                        if self.hosts[i].live {
                            self.hosts[i].stages[c] = "running";
                            changes.push(Change::Host(i));
                        }
                    }
                    changes.push(Change::Batch(*b));
                }
            }
            EventKind::StageFinished {
                batch: Some(b),
                stage,
                failed,
                ..
            } => {
                if let Some(c) = column(*stage) {
                    self.batch(*b).stages[c] = if *failed > 0 { "failed" } else { "ok" };
                    let hosts = self.batch_hosts[*b].clone();
                    for i in hosts {
                        if self.hosts[i].live && self.hosts[i].stages[c] == "running" {
                            self.hosts[i].stages[c] = "ok";
                            changes.push(Change::Host(i));
                        }
                    }
                    changes.push(Change::Batch(*b));
                }
            }
            EventKind::HostFailed {
                host,
                stage,
                reason,
                ..
            } => {
                let i = self.host(host.as_str());
                let row = &mut self.hosts[i];
                row.live = false;
                if let Some(c) = column(*stage) {
                    row.stages[c] = "failed";
                }
                row.detail = Some(tail(reason));
                changes.push(Change::Host(i));
                if let (Some(b), Some(c)) = (row.batch, column(*stage)) {
                    self.batch(b).stages[c] = "failed";
                    changes.push(Change::Batch(b));
                }
            }
            EventKind::HostRolledBack { host, to } => {
                let i = self.host(host.as_str());
                self.hosts[i].stages[3] = "rolled-back";
                self.hosts[i].detail = Some(format!("rolled back to {to}"));
                changes.push(Change::Host(i));
            }
            EventKind::HostRollbackFailed { host, reason } => {
                let i = self.host(host.as_str());
                self.hosts[i].stages[3] = "failed";
                self.hosts[i].detail = Some(tail(reason));
                changes.push(Change::Host(i));
            }
            EventKind::DecisionNeeded {
                batch,
                stage,
                failed,
            } => {
                self.pause = Some(Pause {
                    batch: *batch,
                    stage: stage.to_string(),
                    failed: failed.iter().map(|m| m.to_string()).collect(),
                });
                self.state = "paused".into();
                changes.push(Change::Status);
            }
            EventKind::DecisionTaken { decision } => {
                self.pause = None;
                self.decisions.push(decision_name(*decision).to_owned());
                self.state = "running".into();
                changes.push(Change::Status);
            }
            EventKind::CancelRequested => {
                self.state = "stopping".into();
                changes.push(Change::Status);
            }
            EventKind::RollbackStarted { .. } => {
                self.state = "rolling back".into();
                changes.push(Change::Status);
            }
            EventKind::DeploymentFinished { outcome } => {
                self.pause = None;
                self.outcome = Some(outcome.as_str().to_owned());
                self.state = outcome.as_str().to_owned();
                changes.push(Change::Status);
            }
            _ => {}
        }
        changes
    }

    /// The grid of a deployment as the store recorded it (it ended, or another process runs it).
    pub fn from_store(
        d: &DeploymentRecord,
        hosts: &[HostResult],
        stages: &[HostStageResult],
    ) -> Self {
        let mut g = Grid::new(&d.id);
        g.template = d.template.clone();
        g.version = d.version.clone();
        g.user = d.principal.clone();
        g.dry_run = d.dry_run;
        g.rollback = d.rollback;
        g.outcome = d.outcome.clone();
        g.state = d
            .outcome
            .clone()
            .unwrap_or_else(|| "running elsewhere".into());
        for h in hosts {
            let i = g.host(&h.host);
            if let Some(b) = h.batch {
                g.batch(b).hosts += 1;
                g.hosts[i].batch = Some(b);
                g.batch_hosts[b].push(i);
            }
            if let Some(to) = &h.rolled_back_to {
                g.hosts[i].stages[3] = "rolled-back";
                g.hosts[i].detail = Some(format!("rolled back to {to}"));
            }
            if let Some(f) = &h.failure {
                g.hosts[i].detail = Some(tail(f));
            }
        }
        for s in stages {
            let Some(c) = COLUMNS.iter().position(|x| x.to_string() == s.stage) else {
                continue;
            };
            let i = g.host(&s.host);
            let state = if s.status == "ok" { "ok" } else { "failed" };
            g.hosts[i].stages[c] = state;
            if let Some(b) = s.batch {
                let row = g.batch(b);
                if row.stages[c] != "failed" {
                    row.stages[c] = state;
                }
            }
        }
        g
    }
}

fn tail(text: &str) -> String {
    let n = text.chars().count();
    if n <= REASON_MAX {
        return text.to_owned();
    }
    let skip = n - REASON_MAX;
    format!("…{}", text.chars().skip(skip).collect::<String>())
}

/// A decision's name (`retry`, `exclude`, `rollback`, `abort`).
pub fn decision_name(d: Decision) -> &'static str {
    match d {
        Decision::Retry => "retry",
        Decision::Exclude => "exclude",
        Decision::Rollback => "rollback",
        Decision::Abort => "abort",
    }
}

/// A host row's cells.
pub(crate) fn host_cells(h: &HostRow) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<td>{}</td><td>{}</td>",
        escape(&h.host),
        h.batch
            .map_or_else(|| "–".to_owned(), |b| (b + 1).to_string())
    );
    for s in h.stages {
        let _ = write!(out, "<td class=\"state-{s}\">{s}</td>");
    }
    let _ = write!(
        out,
        "<td><small>{}</small></td>",
        escape(h.detail.as_deref().unwrap_or(""))
    );
    out
}

/// A batch row's cells.
pub(crate) fn batch_cells(b: &BatchRow) -> String {
    let mut out = format!("<td>{}</td><td>{}</td>", b.batch + 1, b.hosts);
    for s in b.stages {
        let _ = write!(out, "<td class=\"state-{s}\">{s}</td>");
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;
    use std::time::SystemTime;

    use pushguide_core::{DeploymentOutcome, MinionId};

    use super::*;

    fn ev(kind: EventKind) -> Event {
        Event {
            at: SystemTime::now(),
            deployment: Arc::from("d1"),
            kind,
        }
    }

    fn m(s: &str) -> MinionId {
        MinionId::new(s).unwrap()
    }

    #[test]
    fn a_failing_host_pauses_and_an_exclude_goes_on() {
        let mut g = Grid::new("d1");
        let plan = vec![vec![m("web-01"), m("web-02")], vec![m("web-03")]];
        for k in [
            EventKind::Prepared {
                hosts: 3,
                batches: 2,
                excluded: vec![],
                plan,
                left_out: vec![],
            },
            EventKind::BatchStarted {
                batch: 0,
                hosts: 2,
                minions: vec![m("web-01"), m("web-02")],
            },
            EventKind::StageStarted {
                batch: Some(0),
                stage: Stage::Deploy,
                hosts: 2,
            },
        ] {
            g.apply(&ev(k));
        }
        assert_eq!(g.hosts[0].stages[1], "running");
        assert_eq!(g.hosts[2].stages[1], "pending");
        let ch = g.apply(&ev(EventKind::HostFailed {
            host: m("web-02"),
            stage: Stage::Deploy,
            fun: Some("cmd.run".into()),
            reason: format!("exit 1: {}<script>", "x".repeat(2000)),
        }));
        assert!(ch.contains(&Change::Host(1)) && ch.contains(&Change::Batch(0)));
        assert!(g.hosts[1].detail.as_ref().unwrap().chars().count() <= REASON_MAX + 1);
        assert!(host_cells(&g.hosts[1]).contains("&lt;script&gt;"));
        g.apply(&ev(EventKind::StageFinished {
            batch: Some(0),
            stage: Stage::Deploy,
            ok: 1,
            failed: 1,
        }));
        assert_eq!(g.hosts[0].stages[1], "ok");
        assert_eq!(g.hosts[1].stages[1], "failed");
        assert_eq!(g.batches[0].stages[1], "failed");
        g.apply(&ev(EventKind::DecisionNeeded {
            batch: 0,
            stage: Stage::Deploy,
            failed: vec![m("web-02")],
        }));
        assert_eq!(g.state, "paused");
        assert_eq!(g.pause.as_ref().unwrap().failed, ["web-02"]);
        g.apply(&ev(EventKind::DecisionTaken {
            decision: Decision::Exclude,
        }));
        assert!(g.pause.is_none());
        g.apply(&ev(EventKind::DeploymentFinished {
            outcome: DeploymentOutcome::PartiallyApplied,
        }));
        assert_eq!(g.outcome.as_deref(), Some("partially-applied"));
        assert_eq!(g.decisions, ["exclude"]);
        assert_eq!(g.seq, 7);
    }
}
