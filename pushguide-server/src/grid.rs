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
    /// Each column's state: `pending`, `running`, `ok`, `failed`, `rolled-back`, or `skipped` (the
    /// deployment ended without running it).
    pub stages: [&'static str; 4],
    /// Why it failed (the tail of the failing call's output), or the version it was rolled back to.
    pub detail: Option<String>,
    #[serde(skip)]
    live: bool,
    /// Which cells show their batch's stage flow (the batch's marker row in the hosts table
    /// decides their colour and text), so that a stage starting or ending for the whole batch is
    /// one swap, not one per host.
    #[serde(skip)]
    inherit: [bool; 4],
}

/// One batch's row: each stage's state over its hosts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct BatchRow {
    /// Zero-based.
    pub batch: usize,
    /// Hosts.
    pub hosts: usize,
    /// Each column's state: `pending`, `running`, `ok`, `failed` (some host failed it), or
    /// `skipped` (the deployment ended without running it).
    pub stages: [&'static str; 4],
    /// Each column's flow for the batch's hosts that are still in it: `pending`, `running`, `ok`.
    #[serde(skip)]
    flow: [&'static str; 4],
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
    /// For a deployment whose process died (`interrupted`): each host the journal names, with
    /// its last stage and status (`interrupted` for a host of the batch under way).
    pub interrupted: Vec<InterruptedHost>,
    #[serde(skip)]
    index: HashMap<String, usize>,
    #[serde(skip)]
    batch_hosts: Vec<Vec<usize>>,
}

/// A host of an interrupted deployment, as the journal left it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InterruptedHost {
    /// The host.
    pub host: String,
    /// Its batch (`None`: prepare).
    pub batch: Option<usize>,
    /// The last stage recorded for it.
    pub stage: String,
    /// `succeeded`, `failed`, `rolled-back`, `rollback-failed`, or `interrupted`.
    pub status: String,
    /// The salt calls of the stage under way that returned before the process died.
    pub calls_done: Vec<String>,
}

impl InterruptedHost {
    /// The rows of `d`.
    pub fn of(d: &pushguide_store::InterruptedDeployment) -> Vec<Self> {
        d.hosts
            .iter()
            .map(|h| InterruptedHost {
                host: h.host.clone(),
                batch: h.batch,
                stage: h.stage.to_string(),
                status: h.status.clone(),
                calls_done: h.calls_done.clone(),
            })
            .collect()
    }
}

/// What an event changed, for the live view.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Change {
    /// A host's row.
    Host(usize),
    /// A batch's row.
    Batch(usize),
    /// The status panel.
    Status,
    /// Every row (the plan is known: a page opened before it has none).
    All,
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
                flow: ["pending"; 4],
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
                        self.hosts[i].inherit = [true; 4];
                        self.batch_hosts[b].push(i);
                    }
                }
                self.state = "running".into();
                changes.push(Change::All);
                changes.push(Change::Status);
            }
            EventKind::BatchStarted { batch, minions, .. } => {
                self.batch(*batch).hosts = minions.len();
                let known = self.hosts.len();
                let mut started = vec![false; known];
                for h in minions {
                    let i = self.host(h.as_str());
                    if self.hosts[i].batch.is_none() {
                        // not in the plan as this page knows it: a new row, shown explicitly
                        self.hosts[i].batch = Some(*batch);
                        self.batch_hosts[*batch].push(i);
                        changes.push(Change::All);
                    }
                    self.hosts[i].live = true;
                    if let Some(s) = started.get_mut(i) {
                        *s = true;
                    }
                }
                // a planned host left out of the batch does not follow its flow
                for k in 0..self.batch_hosts[*batch].len() {
                    let i = self.batch_hosts[*batch][k];
                    if i < known && !started[i] && self.hosts[i].inherit != [false; 4] {
                        self.hosts[i].inherit = [false; 4];
                        changes.push(Change::Host(i));
                    }
                }
                changes.push(Change::Batch(*batch));
            }
            EventKind::StageStarted {
                batch: Some(b),
                stage,
                ..
            } => {
                if let Some(c) = column(*stage) {
                    let row = self.batch(*b);
                    row.stages[c] = "running";
                    row.flow[c] = "running";
                    for k in 0..self.batch_hosts[*b].len() {
                        let h = &mut self.hosts[self.batch_hosts[*b][k]];
                        if h.live {
                            h.stages[c] = "running";
                            if !h.inherit[c] {
                                changes.push(Change::Host(self.batch_hosts[*b][k]));
                            }
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
                    let row = self.batch(*b);
                    row.stages[c] = if *failed > 0 { "failed" } else { "ok" };
                    row.flow[c] = "ok";
                    for k in 0..self.batch_hosts[*b].len() {
                        let h = &mut self.hosts[self.batch_hosts[*b][k]];
                        if h.live && h.stages[c] == "running" {
                            h.stages[c] = "ok";
                            if !h.inherit[c] {
                                changes.push(Change::Host(self.batch_hosts[*b][k]));
                            }
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
                row.inherit = [false; 4];
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
                self.hosts[i].inherit[3] = false;
                self.hosts[i].detail = Some(rolled_back(self.hosts[i].detail.take(), to));
                changes.push(Change::Host(i));
            }
            EventKind::HostRollbackFailed { host, reason } => {
                let i = self.host(host.as_str());
                self.hosts[i].stages[3] = "failed";
                self.hosts[i].inherit[3] = false;
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
            g.hosts[i].detail = h.failure.as_deref().map(tail);
            if let Some(to) = &h.rolled_back_to {
                g.hosts[i].stages[3] = "rolled-back";
                g.hosts[i].detail = Some(rolled_back(g.hosts[i].detail.take(), to));
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
        if g.outcome.is_some() {
            g.mark_not_run();
        }
        g
    }

    /// Once the deployment ended, a stage nobody ran is `skipped`, not `pending` (a successful
    /// release never runs its rollback column; a cancelled one never reached its later hosts).
    fn mark_not_run(&mut self) {
        let cells = self
            .hosts
            .iter_mut()
            .flat_map(|h| h.stages.iter_mut())
            .chain(self.batches.iter_mut().flat_map(|b| b.stages.iter_mut()));
        for c in cells {
            if *c == "pending" {
                *c = "skipped";
            }
        }
    }
}

/// A host's detail once it was rolled back to `to`: why it failed (if it did), then where it went.
fn rolled_back(failure: Option<String>, to: &str) -> String {
    match failure {
        Some(f) => format!("{f} · rolled back to {to}"),
        None => format!("rolled back to {to}"),
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
    for (c, s) in h.stages.iter().enumerate() {
        if h.inherit[c] {
            // every state the batch's flow can give it; the batch's marker row (`bm-{batch}`)
            // decides through the stylesheet which one shows
            let _ = write!(
                out,
                "<td class=\"s{c} inh\"><i>pending</i><i>running</i><i>ok</i></td>"
            );
        } else {
            let _ = write!(out, "<td class=\"state-{s}\">{s}</td>");
        }
    }
    let _ = write!(
        out,
        "<td><small>{}</small></td>",
        escape(h.detail.as_deref().unwrap_or(""))
    );
    out
}

/// The batches table (`<table id="batches">` in `<div id="batches-wrap">`, which a live update
/// swaps whole: a table's parts cannot be parsed out of their table in every mix of swaps).
pub(crate) fn batches_table(g: &Grid, oob: bool) -> String {
    let heads: String = COLUMNS.iter().map(|c| format!("<th>{c}</th>")).collect();
    let mut out = format!(
        "<div id=\"batches-wrap\"{}><table id=\"batches\"><thead><tr><th>Batch</th>\
         <th>Hosts</th>{heads}</tr></thead><tbody id=\"batches-body\">",
        if oob { " hx-swap-oob=\"true\"" } else { "" }
    );
    for (i, b) in g.batches.iter().enumerate() {
        let _ = write!(out, "<tr id=\"b-{i}\">{}</tr>", batch_cells(b));
    }
    out.push_str("</tbody></table></div>");
    out
}

/// The hosts table (`<table id="hosts">` in `<div id="hosts-wrap">`): one body per batch (`hb-{batch}`) led by the batch's
/// hidden marker row (`bm-{batch}`, see [`batch_marker`]), then the hosts in no batch
/// (`hb-none`).
pub(crate) fn hosts_table(g: &Grid, oob: bool) -> String {
    let heads: String = COLUMNS.iter().map(|c| format!("<th>{c}</th>")).collect();
    let mut out = format!(
        "<div id=\"hosts-wrap\"{}><table id=\"hosts\"><thead><tr><th>Host</th><th>Batch</th>\
         {heads}<th>Detail</th></tr></thead>",
        if oob { " hx-swap-oob=\"true\"" } else { "" }
    );
    for (b, row) in g.batches.iter().enumerate() {
        let _ = write!(out, "<tbody id=\"hb-{b}\">{}", batch_marker(row, false));
        for &i in g.batch_hosts.get(b).into_iter().flatten() {
            if g.hosts[i].batch == Some(b) {
                let _ = write!(out, "<tr id=\"h-{i}\">{}</tr>", host_cells(&g.hosts[i]));
            }
        }
        out.push_str("</tbody>");
    }
    out.push_str("<tbody id=\"hb-none\">");
    for (i, h) in g.hosts.iter().enumerate() {
        if h.batch.is_none_or(|b| b >= g.batches.len()) {
            let _ = write!(out, "<tr id=\"h-{i}\">{}</tr>", host_cells(h));
        }
    }
    out.push_str("</tbody></table></div>");
    out
}

/// A batch's hidden marker row in the hosts table: each stage's flow as `data-s{column}`, which
/// the stylesheet shows in the cells of the batch's hosts that follow it.
pub(crate) fn batch_marker(b: &BatchRow, oob: bool) -> String {
    let mut out = format!("<tr id=\"bm-{}\" class=\"bm\" hidden", b.batch);
    for (c, s) in b.flow.iter().enumerate() {
        let _ = write!(out, " data-s{c}=\"{s}\"");
    }
    if oob {
        out.push_str(" hx-swap-oob=\"true\"");
    }
    out.push_str("></tr>");
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
        assert!(hosts_table(&g, true).contains("hx-swap-oob"));
        assert_eq!(batches_table(&g, false).matches("<tr id=\"b-").count(), 2);
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
        assert_eq!(g.seq, 8);
    }
}
