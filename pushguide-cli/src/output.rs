//! Everything the CLI prints: results (human or `--json`) on stdout, progress and errors on stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::IsTerminal;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use pushguide_core::{Event, EventKind, Plan};
use serde::Serialize;

use crate::commands::{
    DeploymentRow, DeploymentSummary, Detached, InterruptedRow, KindRow, LogResult, MonitorCheck,
    ShowResult, StatsResult, TemplateRow, VersionsResult,
};
use crate::error::CliError;

/// Prints `value` as one pretty JSON document.
pub fn json<T: Serialize + ?Sized>(value: &T) {
    match serde_json::to_string_pretty(value) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("pushguide: cannot encode the result as JSON: {e}"),
    }
}

/// Prints `value` as one JSON line (for streams such as `monitor`).
pub fn json_line<T: Serialize + ?Sized>(value: &T) {
    match serde_json::to_string(value) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("pushguide: cannot encode the result as JSON: {e}"),
    }
}

/// Prints an error: `{"error": …}` on stdout with `--json`, else `pushguide: …` on stderr.
pub fn error(e: &CliError, as_json: bool) {
    if as_json {
        json(&e.to_json());
    } else {
        eprintln!("pushguide: error: {e}");
    }
}

/// Passes a detached child's output on (it failed before starting a deployment).
pub fn child_output(out: &str, as_json: bool) {
    if as_json {
        print!("{out}");
    } else {
        eprint!("{out}");
    }
}

/// `kinds`.
pub fn kinds(rows: &[KindRow]) {
    for k in rows {
        println!("{:<16} {:<16} {}", k.kind, k.platforms.join(","), k.summary);
    }
}

/// `templates`.
pub fn templates(rows: &[TemplateRow]) {
    if rows.is_empty() {
        println!("(no template you may view)");
    }
    for t in rows {
        println!(
            "{:<20} {:<14} {:<8} {:<30} {}",
            t.name,
            t.kind,
            if t.may_deploy { "deploy" } else { "view" },
            t.targets,
            t.description
        );
    }
}

fn deployment_line(d: &DeploymentRow) -> String {
    format!(
        "{:<40} {:<12} {:<10} {:<20} {:<18} {}{}",
        d.id,
        if d.mode == "rollback" {
            format!("↩ {}", d.version)
        } else {
            d.version.clone()
        },
        d.user,
        d.started,
        d.outcome.as_deref().unwrap_or("running"),
        d.duration_ms
            .map(|m| format!("{:.1}s", m as f64 / 1000.0))
            .unwrap_or_default(),
        if d.dry_run { " (dry run)" } else { "" }
    )
}

/// `show`.
pub fn show(s: &ShowResult) {
    println!(
        "# {} ({}, {}; you may {})",
        s.name,
        s.kind,
        s.file,
        if s.may_deploy { "deploy" } else { "view" }
    );
    println!("{}", s.toml.trim_end());
    println!();
    match &s.last_deployment {
        Some(d) => println!("Last deployment: {}", deployment_line(d)),
        None => println!("Last deployment: none"),
    }
    println!("Hosts:");
    for h in &s.hosts {
        println!(
            "  {:<24} {:<12} since {:<20} previous {}",
            h.host,
            h.version.as_deref().unwrap_or("-"),
            h.since.as_deref().unwrap_or("-"),
            h.previous.as_deref().unwrap_or("-")
        );
    }
}

/// `versions`.
pub fn versions(v: &VersionsResult) {
    println!("# {} from {} (newest first)", v.template, v.source);
    for x in &v.versions {
        println!("{x}");
    }
}

/// `plan`.
pub fn plan(p: &Plan) {
    print!("{p}");
}

/// `deploy` / `rollback` summary.
pub fn summary(s: &DeploymentSummary) {
    println!(
        "{} {} of {} {}: {} in {:.1}s (exit {}){}",
        s.mode,
        s.id,
        s.template,
        s.version,
        s.outcome,
        s.duration_ms as f64 / 1000.0,
        s.exit_code,
        if s.dry_run { " (dry run)" } else { "" }
    );
    if let Some(r) = &s.reason {
        println!("  reason: {r}");
    }
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for h in &s.hosts {
        *counts
            .entry(
                serde_json::to_value(h.status)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
            )
            .or_default() += 1;
    }
    let counts: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
    println!("  hosts: {}", counts.join(", "));
    for h in &s.hosts {
        if let Some(f) = &h.failure {
            println!(
                "  ✗ {} failed at {} ({}): {}",
                h.host, f.stage, f.fun, f.reason
            );
        }
        if let Some(f) = &h.rollback_failure {
            println!("  ✗ {} rollback failed ({}): {}", h.host, f.fun, f.reason);
        }
        if let Some(v) = &h.rolled_back_to {
            println!("  ↺ {} rolled back to {v}", h.host);
        }
    }
    if !s.unsent_calls.is_empty() {
        println!("  recorded, not sent (dry run):");
        for c in &s.unsent_calls {
            println!("    {c}");
        }
    }
    if let Some(e) = &s.history_error {
        println!("  warning: not fully recorded in the store: {e}");
    }
}

/// `deploy --detach`.
pub fn detached(d: &Detached) {
    println!("started deployment {} in process {}", d.id, d.pid);
    println!("  log:    {}", d.log);
    println!("  follow: pushguide watch {}", d.id);
}

/// `history`.
pub fn history(rows: &[DeploymentRow]) {
    if rows.is_empty() {
        println!("(no deployments recorded)");
    }
    for d in rows {
        println!("{:<16} {}", d.template, deployment_line(d));
    }
}

/// `log` and the end of `watch`.
pub fn log(l: &LogResult) {
    println!(
        "{:<16} {}",
        l.deployment.template,
        deployment_line(&l.deployment)
    );
    if let Some(r) = &l.deployment.reason {
        println!("  reason: {r}");
    }
    println!("Salt calls:");
    for c in &l.calls {
        println!(
            "  {:<6} {:<12} {:<28} ok {:>4} failed {:>4} {:>7} ms  jid {}",
            c.batch
                .map(|b| format!("b{}", b + 1))
                .unwrap_or_else(|| "-".into()),
            c.stage,
            c.fun,
            c.ok,
            c.failed,
            c.millis,
            c.jid.as_deref().unwrap_or("-")
        );
    }
    for h in &l.hosts {
        println!(
            "Host {} — {}",
            h.host,
            h.status.as_deref().unwrap_or("running")
        );
        for s in &h.stages {
            println!(
                "  {:<6} {:<12} {:<7}{}{}",
                s.batch
                    .map(|b| format!("b{}", b + 1))
                    .unwrap_or_else(|| "-".into()),
                s.stage,
                s.status,
                s.fun
                    .as_deref()
                    .map(|f| format!(" {f}"))
                    .unwrap_or_default(),
                s.detail
                    .as_deref()
                    .map(|d| format!(": {d}"))
                    .unwrap_or_default()
            );
        }
        for line in &h.log {
            println!("    {line}");
        }
    }
}

/// `stats`.
pub fn stats(s: &StatsResult) {
    println!(
        "{} from {} to {}",
        s.template
            .as_deref()
            .unwrap_or("all templates you may view"),
        s.from,
        s.to
    );
    let rate = |r: Option<f64>| {
        r.map(|r| format!("{:.1}%", r * 100.0))
            .unwrap_or_else(|| "-".into())
    };
    let ms = |v: Option<u64>| {
        v.map(|m| format!("{:.1}s", m as f64 / 1000.0))
            .unwrap_or_else(|| "-".into())
    };
    println!(
        "  deployments {}  succeeded {}  failed {}  success rate {}",
        s.count,
        s.succeeded,
        s.count - s.succeeded,
        rate(s.success_rate)
    );
    println!(
        "  duration mean {}  p50 {}  p95 {}",
        ms(s.mean_ms),
        ms(s.p50_ms),
        ms(s.p95_ms)
    );
    let r = &s.rollbacks;
    println!(
        "  rollbacks {}  rolled back {}  failed {}  success rate {}  duration mean {}  p50 {}  p95 {}",
        r.count,
        r.succeeded,
        r.count - r.succeeded,
        rate(r.success_rate),
        ms(r.mean_ms),
        ms(r.p50_ms),
        ms(r.p95_ms)
    );
    for r in &s.by_hour {
        println!(
            "  hour {:02} {}: {} deployments, {} failed",
            r.at,
            s.tz,
            r.count,
            r.count - r.succeeded
        );
    }
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    for r in &s.by_weekday {
        println!(
            "  {} {}: {} deployments, {} failed",
            DAYS.get(r.at).unwrap_or(&"?"),
            s.tz,
            r.count,
            r.count - r.succeeded
        );
    }
    for (h, n) in &s.failing_hosts {
        println!("  failing host {h}: {n}");
    }
    for (st, n) in &s.failing_stages {
        println!("  failing stage {st}: {n}");
    }
    println!(
        "  incidents {}  recovered {}  mean time to recover {}",
        s.incidents,
        s.recovered,
        ms(s.mttr_ms)
    );
}

/// `recover`.
pub fn recover(rows: &[InterruptedRow]) {
    if rows.is_empty() {
        println!("(no interrupted deployments)");
    }
    for d in rows {
        println!(
            "{} {} {}{} by {}: interrupted during {}{} (last event {}){}",
            d.id,
            d.template,
            if d.mode == "rollback" { "↩ " } else { "" },
            d.version,
            d.user,
            d.stage,
            d.batch
                .map(|b| format!(" of batch {}", b + 1))
                .unwrap_or_default(),
            d.last_event,
            if d.newly_marked { " [marked now]" } else { "" }
        );
        for h in &d.hosts {
            println!("  {:<24} {}", h.host, h.done);
        }
        if d.unnamed_not_reached > 0 {
            println!(
                "  ({} more hosts not reached; their names were not recorded)",
                d.unnamed_not_reached
            );
        }
        if let Some(c) = &d.rollback_command {
            println!("  roll back the hosts it touched: {c}");
        }
        if let Some(c) = &d.resume_command {
            println!("  or resume it:                   {c}");
        }
    }
}

/// One `monitor` check.
pub fn monitor(c: &MonitorCheck, first: bool) {
    if first {
        println!(
            "{} minions: {} up, {} down{}",
            c.checked,
            c.up.len(),
            c.down.len(),
            if c.down.is_empty() {
                String::new()
            } else {
                format!(" ({})", c.down.join(", "))
            }
        );
        return;
    }
    for ch in &c.changes {
        println!(
            "{} {} is {}",
            ch.at,
            ch.minion,
            if ch.up { "up again" } else { "DOWN" }
        );
    }
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
            hosts.set_style(
                ProgressStyle::with_template(
                    "{prefix:>8} [{bar:30.green/red}] {pos}/{len} hosts {msg} ({elapsed})",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
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
            Mode::Lines => eprintln!("{text}"),
            Mode::Bars { multi, .. } => {
                let _ = multi.println(text);
            }
        }
    }

    /// A question on stderr, without a line end, shown even with `--json` (stdout stays JSON).
    pub fn prompt(&mut self, text: &str) {
        use std::io::Write as _;
        let show = || {
            eprint!("pushguide: {text}");
            let _ = std::io::stderr().flush();
        };
        match &self.mode {
            Mode::Bars { multi, .. } => multi.suspend(show),
            _ => show(),
        }
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
        let batches = self.batches;
        match &e.kind {
            EventKind::DeploymentStarted {
                template,
                version,
                user,
                dry_run,
                rollback,
            } => self.line(format!(
                "{}{template} {version} by {user}{}",
                if *rollback { "rollback: " } else { "" },
                if *dry_run { " (dry run)" } else { "" }
            )),
            EventKind::Prepared {
                hosts,
                batches,
                excluded,
            } => {
                self.batches = *batches;
                if let Mode::Bars { hosts: bar, .. } = &self.mode {
                    bar.set_length(*hosts as u64);
                }
                self.line(format!(
                    "prepared: {hosts} hosts in {batches} batches{}",
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
            EventKind::BatchStarted { batch, hosts, .. } => {
                if let Mode::Bars {
                    multi, batch: b, ..
                } = &mut self.mode
                {
                    if let Some(old) = b.take() {
                        old.finish_and_clear();
                    }
                    let bar = multi.add(ProgressBar::new(3));
                    bar.set_style(
                        ProgressStyle::with_template(
                            "{prefix:>8} [{bar:30.cyan/blue}] {pos}/{len} stages {msg}",
                        )
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                    );
                    bar.set_prefix(format!("batch {}", batch + 1));
                    bar.set_message(format!("{hosts} hosts"));
                    *b = Some(bar);
                } else {
                    self.line(format!("batch {}/{batches}: {hosts} hosts", batch + 1));
                }
            }
            EventKind::StageStarted {
                batch: Some(_),
                stage,
                hosts,
            } => {
                if let Mode::Bars { batch: Some(b), .. } = &self.mode {
                    b.set_message(format!("{stage} ({hosts} hosts)"));
                }
            }
            EventKind::CallStarted { fun, .. } => {
                if let Mode::Bars { batch: Some(b), .. } = &self.mode {
                    b.set_message(fun.clone());
                }
            }
            EventKind::StageFinished {
                batch: Some(_),
                stage,
                ok,
                failed,
            } => {
                if let Mode::Bars { batch: Some(b), .. } = &self.mode {
                    b.inc(1);
                } else {
                    self.line(format!(
                        "  {:<12} ok {ok:>4}  failed {failed}",
                        stage.as_str()
                    ));
                }
            }
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
                self.line(format!("  ✗ {host} failed at {stage} ({fun}): {reason}"));
            }
            EventKind::HostSucceeded { .. } => {
                if let Mode::Bars { hosts: bar, .. } = &self.mode {
                    bar.inc(1);
                }
            }
            EventKind::BatchFinished { batch, ok, failed } => {
                if let Mode::Bars { batch: b, .. } = &mut self.mode {
                    if let Some(old) = b.take() {
                        old.finish_and_clear();
                    }
                }
                self.line(format!(
                    "batch {}/{batches} done: {ok} ok, {failed} failed",
                    batch + 1
                ));
            }
            EventKind::BudgetExceeded { failed, allowed } => self.line(format!(
                "failure budget exceeded: {failed} failed, {allowed} allowed"
            )),
            EventKind::DecisionNeeded {
                batch,
                stage,
                failed,
            } => self.line(format!(
                "paused at {stage} of batch {}: {} hosts failed",
                batch + 1,
                failed.len()
            )),
            EventKind::DecisionTaken { decision } => {
                self.line(format!("decision: {decision:?}"));
            }
            EventKind::CancelRequested => self.line("cancel requested".into()),
            EventKind::RollbackStarted { hosts } => {
                self.line(format!("rolling back {hosts} hosts"));
            }
            EventKind::HostRolledBack { host, to } => {
                self.line(format!("  ↺ {host} rolled back to {to}"));
            }
            EventKind::HostRollbackFailed { host, reason } => {
                self.line(format!("  ✗ {host} rollback failed: {reason}"));
            }
            EventKind::RollbackFinished { ok, failed } => {
                self.line(format!("rollback finished: {ok} ok, {failed} failed"));
            }
            EventKind::DeploymentFinished { outcome } => {
                self.line(format!("finished: {outcome:?}"));
            }
            _ => {}
        }
    }

    /// `watch`: a salt request recorded in the store.
    pub fn call_row(&mut self, c: &pushguide_store::CallRow) {
        self.line(format!(
            "  {:<6} {:<12} {:<28} ok {:>4} failed {:>4} {:>7} ms",
            c.batch
                .map(|b| format!("b{}", b + 1))
                .unwrap_or_else(|| "-".into()),
            c.stage,
            c.fun,
            c.ok,
            c.failed,
            c.millis
        ));
    }

    /// `watch`: a failed host stage recorded in the store.
    pub fn host_failed_row(&mut self, r: &pushguide_store::HostStageResult) {
        self.line(format!(
            "  ✗ {} failed at {}{}: {}",
            r.host,
            r.stage,
            r.fun
                .as_deref()
                .map(|f| format!(" ({f})"))
                .unwrap_or_default(),
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
