//! Live progress of a running deployment on stderr (`deploy`, `rollback`, `watch`): bars on a
//! terminal, plain lines otherwise, nothing with `--json`. Writes ignore their errors, like
//! everything [`crate::output`] prints.

use std::io::IsTerminal;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use pushguide_core::{Event, EventKind, MinionId, Stage};

use crate::output::{call_text, count, failed_by};
use crate::results::CallLine;

/// A bar drawn after `template` (indicatif's default bar should the template not parse).
fn bar_style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

/// `n host(s)`.
fn hosts_n(n: usize) -> String {
    count(n as u64, "host", "hosts")
}

/// Live progress of a deployment on stderr: bars on a terminal, plain lines otherwise, nothing with
/// `--json`.
#[derive(Debug)]
pub struct Progress {
    mode: Mode,
    batches: usize,
}

#[derive(Debug)]
enum Mode {
    Quiet,
    Lines,
    Bars {
        multi: MultiProgress,
        hosts: ProgressBar,
        batch: Option<ProgressBar>,
    },
}

impl Progress {
    /// Progress for the current stderr: bars on a terminal, lines otherwise, nothing when `quiet`.
    pub fn new(quiet: bool) -> Self {
        let mode = if quiet {
            Mode::Quiet
        } else if std::io::stderr().is_terminal() {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let hosts = multi.add(ProgressBar::new(0));
            hosts.set_style(bar_style(
                "{prefix:>8} [{bar:30.green/red}] {pos}/{len} hosts {msg} ({elapsed})",
            ));
            hosts.set_prefix("total");
            Mode::Bars {
                multi,
                hosts,
                batch: None,
            }
        } else {
            Mode::Lines
        };
        Progress { mode, batches: 0 }
    }

    fn line(&self, text: String) {
        match &self.mode {
            Mode::Quiet => {}
            Mode::Lines => errln!("{text}"),
            Mode::Bars { multi, .. } => {
                let _ = multi.println(text);
            }
        }
    }

    /// A question on stderr, without a line end, shown even with `--json` (stdout stays JSON).
    ///
    /// Bars give way to plain lines from the first question on (indicatif's `suspend` panics when the
    /// terminal has gone away; a cleared, hidden bar cannot).
    pub fn prompt(&mut self, text: &str) {
        use std::io::Write as _;
        if let Mode::Bars {
            multi,
            hosts,
            batch,
        } = &mut self.mode
        {
            if let Some(b) = batch.take() {
                b.finish_and_clear();
            }
            hosts.finish_and_clear();
            let _ = multi.clear();
            multi.set_draw_target(ProgressDrawTarget::hidden());
            self.mode = Mode::Lines;
        }
        err!("pushguide: {text}");
        let _ = std::io::stderr().flush();
    }

    /// A message.
    pub fn note(&mut self, text: &str) {
        self.line(format!("pushguide: {text}"));
    }

    /// The deployment started.
    pub fn started(&mut self, id: &str) {
        self.line(format!("deployment {id} started"));
    }

    /// `watch` found its deployment.
    pub fn watching(&mut self, id: &str, template: &str, version: &str) {
        self.line(format!("watching deployment {id} ({template} {version})"));
    }

    /// One event of a running deployment.
    pub fn event(&mut self, e: &Event) {
        match &e.kind {
            EventKind::Prepared {
                hosts,
                batches,
                excluded,
                ..
            } => self.prepared(*hosts, *batches, excluded),
            EventKind::BatchStarted { batch, hosts, .. } => self.batch_started(*batch, *hosts),
            EventKind::StageStarted {
                batch: Some(_),
                stage,
                hosts,
            } => self.batch_message(format!("{stage} ({})", hosts_n(*hosts))),
            EventKind::CallStarted { fun, .. } => self.batch_message(fun.clone()),
            EventKind::StageFinished {
                batch: Some(_),
                stage,
                ok,
                failed,
            } => self.stage_finished(*stage, *ok, *failed),
            EventKind::HostFailed {
                host,
                stage,
                fun,
                reason,
            } => {
                if let Mode::Bars { hosts: bar, .. } = &self.mode {
                    bar.inc(1);
                    bar.set_message("(with failures)");
                }
                self.line(format!(
                    "  ✗ {host} failed at {stage} ({}): {reason}",
                    failed_by(fun.as_deref())
                ));
            }
            EventKind::HostSucceeded { .. } => {
                if let Mode::Bars { hosts: bar, .. } = &self.mode {
                    bar.inc(1);
                }
            }
            EventKind::BatchFinished { batch, ok, failed } => {
                self.batch_finished(*batch, *ok, *failed)
            }
            kind => {
                if let Some(text) = event_line(kind) {
                    self.line(text);
                }
            }
        }
    }

    /// The deployment is prepared: the hosts bar learns its length.
    fn prepared(&mut self, hosts: usize, batches: usize, excluded: &[MinionId]) {
        self.batches = batches;
        if let Mode::Bars { hosts: bar, .. } = &self.mode {
            bar.set_length(hosts as u64);
        }
        self.line(format!(
            "prepared: {} in {}{}",
            hosts_n(hosts),
            count(batches as u64, "batch", "batches"),
            if excluded.is_empty() {
                String::new()
            } else {
                format!(
                    "; excluded: {}",
                    excluded
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        ));
    }

    /// A batch started: a bar of its own (replacing the last batch's), or a line.
    fn batch_started(&mut self, batch: usize, hosts: usize) {
        let batches = self.batches;
        let Mode::Bars {
            multi, batch: b, ..
        } = &mut self.mode
        else {
            self.line(format!("batch {}/{batches}: {}", batch + 1, hosts_n(hosts)));
            return;
        };
        if let Some(old) = b.take() {
            old.finish_and_clear();
        }
        let bar = multi.add(ProgressBar::new(3));
        bar.set_style(bar_style(
            "{prefix:>8} [{bar:30.cyan/blue}] {pos}/{len} stages {msg}",
        ));
        bar.set_prefix(format!("batch {}", batch + 1));
        bar.set_message(hosts_n(hosts));
        *b = Some(bar);
    }

    /// The message of the running batch's bar (bars only).
    fn batch_message(&mut self, text: String) {
        if let Mode::Bars { batch: Some(b), .. } = &self.mode {
            b.set_message(text);
        }
    }

    /// A stage of a batch finished: the batch bar moves on, or a line.
    fn stage_finished(&mut self, stage: Stage, ok: usize, failed: usize) {
        if let Mode::Bars { batch: Some(b), .. } = &self.mode {
            b.inc(1);
        } else {
            self.line(format!(
                "  {:<12} ok {ok:>4}  failed {failed}",
                stage.as_str()
            ));
        }
    }

    /// A batch finished: its bar goes away.
    fn batch_finished(&mut self, batch: usize, ok: usize, failed: usize) {
        if let Mode::Bars { batch: b, .. } = &mut self.mode {
            if let Some(old) = b.take() {
                old.finish_and_clear();
            }
        }
        self.line(format!(
            "batch {}/{} done: {ok} ok, {failed} failed",
            batch + 1,
            self.batches
        ));
    }

    /// `watch`: a salt request recorded in the store.
    pub fn call_row(&mut self, c: &pushguide_store::CallRow) {
        self.line(format!("  {}", call_text(&CallLine::from(c))));
    }

    /// `watch`: a failed host stage recorded in the store.
    pub fn host_failed_row(&mut self, r: &pushguide_store::HostStageResult) {
        self.line(format!(
            "  ✗ {} failed at {} ({}): {}",
            r.host,
            r.stage,
            failed_by(r.fun.as_deref()),
            r.detail.as_deref().unwrap_or("")
        ));
    }

    /// Removes the bars.
    pub fn finish(&mut self) {
        if let Mode::Bars { hosts, batch, .. } = &mut self.mode {
            if let Some(b) = batch.take() {
                b.finish_and_clear();
            }
            hosts.finish_and_clear();
        }
    }
}

/// The line of an event that only prints (no bar moves); `None` for the others.
fn event_line(kind: &EventKind) -> Option<String> {
    Some(match kind {
        EventKind::DeploymentStarted {
            template,
            version,
            user,
            dry_run,
            rollback,
        } => format!(
            "{}{template} {version} by {user}{}",
            if *rollback { "rollback: " } else { "" },
            if *dry_run { " (dry run)" } else { "" }
        ),
        EventKind::BudgetExceeded { failed, allowed } => {
            format!("failure budget exceeded: {failed} failed, {allowed} allowed")
        }
        EventKind::DecisionNeeded {
            batch,
            stage,
            failed,
        } => format!(
            "paused at {stage} of batch {}: {} failed",
            batch + 1,
            hosts_n(failed.len())
        ),
        EventKind::DecisionTaken { decision } => format!("decision: {decision:?}"),
        EventKind::CancelRequested => "cancel requested".into(),
        EventKind::RollbackStarted { hosts } => format!("rolling back {}", hosts_n(*hosts)),
        EventKind::HostRolledBack { host, to } => format!("  ↺ {host} rolled back to {to}"),
        EventKind::HostRollbackFailed { host, reason } => {
            format!("  ✗ {host} rollback failed: {reason}")
        }
        EventKind::RollbackFinished { ok, failed } => {
            format!("rollback finished: {ok} ok, {failed} failed")
        }
        EventKind::DeploymentFinished { outcome } => format!("finished: {outcome:?}"),
        _ => return None,
    })
}
