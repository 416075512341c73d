//! Everything the CLI prints: results (human or `--json`) on stdout, errors on stderr (live progress
//! is [`crate::progress`]).
//!
//! Every write ignores its error: a closed pipe (`pushguide deploy … | head -1`), a parent that went
//! away or a closed terminal never stops a command, least of all a deployment. (Rust ignores SIGPIPE,
//! so `println!` would panic on EPIPE instead.)

use pushguide_core::Plan;
use serde::Serialize;

use crate::error::CliError;
use crate::results::{
    CallLine, DeploymentRow, DeploymentSummary, Detached, InterruptedRow, KindRow, LogResult,
    ModuleInstallResult, MonitorCheck, ShowResult, StatsResult, TemplateRow, VersionsResult,
};

/// Writes `text` to stderr, ignoring write errors (for callers outside this module, e.g. clap's
/// messages).
pub fn stderr_text(text: &str) {
    err!("{text}");
}

/// Writes `text` to stdout, ignoring write errors.
pub fn stdout_text(text: &str) {
    out!("{text}");
}

/// `user add`.
pub fn user_added(r: &crate::results::UserAdded) {
    let groups = if r.groups.is_empty() {
        "no groups".to_owned()
    } else {
        format!("groups: {}", r.groups.join(", "))
    };
    let verb = if r.replaced { "replaced" } else { "added" };
    outln!("user {} {verb} ({groups})", r.user);
}

/// `token add`: the token on stdout, alone on its line; what it is on stderr.
pub fn token_added(r: &crate::results::TokenAdded) {
    let expires = r
        .expires
        .as_deref()
        .map_or_else(|| "never expires".to_owned(), |e| format!("expires {e}"));
    errln!(
        "API token {} for {} ({}), {expires}; shown this once: keep it in your CI's secrets",
        r.id,
        r.user,
        r.label
    );
    outln!("{}", r.token);
}

/// A `tracing` writer for stderr that swallows write errors: a log line never panics or stops the
/// command when stderr is a closed pipe or a vanished terminal.
#[derive(Clone, Copy, Debug, Default)]
pub struct QuietStderr;

impl std::io::Write for QuietStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = std::io::stderr().lock().write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for QuietStderr {
    type Writer = QuietStderr;

    fn make_writer(&'a self) -> Self::Writer {
        QuietStderr
    }
}

/// `n` and the noun in the right number: `1 host`, `2 hosts`, `0 hosts`.
pub fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// What failed a host: its salt function, or `hook error` when no salt call failed it (the
/// deployer's hook did; the engine records no function then, and stores before it wrote `-`).
pub fn failed_by(fun: Option<&str>) -> &str {
    match fun {
        Some(fun) if !fun.is_empty() && fun != "-" => fun,
        _ => "hook error",
    }
}

/// A batch as `log` and `watch` show it: `b1` for the first, `-` for none (prepare).
fn batch_label(batch: Option<usize>) -> String {
    batch
        .map(|b| format!("b{}", b + 1))
        .unwrap_or_else(|| "-".into())
}

/// One salt request (`log`, `watch`): batch, stage, function, hosts ok and failed, milliseconds.
pub fn call_text(c: &CallLine) -> String {
    format!(
        "{:<6} {:<12} {:<28} ok {:>4} failed {:>4} {:>7} ms",
        batch_label(c.batch),
        c.stage,
        c.fun,
        c.ok,
        c.failed,
        c.millis
    )
}

/// Prints `value` as one pretty JSON document.
pub fn json<T: Serialize + ?Sized>(value: &T) {
    match serde_json::to_string_pretty(value) {
        Ok(s) => outln!("{s}"),
        Err(e) => errln!("pushguide: cannot encode the result as JSON: {e}"),
    }
}

/// Prints `value` as one JSON line (for streams such as `monitor`).
pub fn json_line<T: Serialize + ?Sized>(value: &T) {
    match serde_json::to_string(value) {
        Ok(s) => outln!("{s}"),
        Err(e) => errln!("pushguide: cannot encode the result as JSON: {e}"),
    }
}

/// Prints an error: `{"error": …}` on stdout with `--json`, else `pushguide: …` on stderr.
pub fn error(e: &CliError, as_json: bool) {
    if as_json {
        json(&e.to_json());
    } else {
        errln!("pushguide: error: {e}");
    }
}

/// Passes a detached child's output on (it failed before starting a deployment).
pub fn child_output(out: &str, as_json: bool) {
    if as_json {
        out!("{out}");
    } else {
        err!("{out}");
    }
}

/// `kinds`.
pub fn kinds(rows: &[KindRow]) {
    for k in rows {
        outln!("{:<16} {:<16} {}", k.kind, k.platforms.join(","), k.summary);
    }
}

/// `templates`.
pub fn templates(rows: &[TemplateRow]) {
    if rows.is_empty() {
        outln!("(no template you may view)");
    }
    for t in rows {
        if let Some(e) = &t.error {
            outln!("{:<20} BROKEN {}: {e}", t.name, t.file);
            continue;
        }
        outln!(
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
    outln!(
        "# {} ({}, {}; you may {})",
        s.name,
        s.kind,
        s.file,
        if s.may_deploy { "deploy" } else { "view" }
    );
    outln!("{}", s.toml.trim_end());
    outln!();
    match &s.last_deployment {
        Some(d) => outln!("Last deployment: {}", deployment_line(d)),
        None => outln!("Last deployment: none"),
    }
    outln!("Hosts:");
    for h in &s.hosts {
        outln!(
            "  {:<24} {:<12} {:<14} since {:<20} previous {}",
            h.host,
            h.version.as_deref().unwrap_or("-"),
            h.state.as_str(),
            h.since.as_deref().unwrap_or("-"),
            h.previous.as_deref().unwrap_or("-")
        );
    }
}

/// `versions`.
pub fn versions(v: &VersionsResult) {
    outln!("# {} from {} (newest first)", v.template, v.source);
    for x in &v.versions {
        outln!("{x}");
    }
}

/// `plan`.
pub fn plan(p: &Plan) {
    out!("{p}");
}

/// `deploy` / `rollback` summary.
pub fn summary(s: &DeploymentSummary) {
    outln!(
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
        outln!("  reason: {r}");
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
    outln!("  hosts: {}", counts.join(", "));
    for h in &s.hosts {
        if let Some(f) = &h.failure {
            outln!(
                "  ✗ {} failed at {} ({}): {}",
                h.host,
                f.stage,
                failed_by(f.fun.as_deref()),
                f.reason
            );
        }
        if let Some(f) = &h.rollback_failure {
            outln!(
                "  ✗ {} rollback failed ({}): {}",
                h.host,
                failed_by(f.fun.as_deref()),
                f.reason
            );
        }
        if let Some(v) = &h.rolled_back_to {
            outln!("  ↺ {} rolled back to {v}", h.host);
        }
    }
    if !s.unsent_calls.is_empty() {
        outln!("  recorded, not sent (dry run):");
        for c in &s.unsent_calls {
            outln!("    {c}");
        }
    }
    if let Some(e) = &s.history_error {
        outln!("  warning: not fully recorded in the store: {e}");
    }
}

/// `deploy --detach`.
pub fn detached(d: &Detached) {
    outln!("started deployment {} in process {}", d.id, d.pid);
    outln!("  log:    {}", d.log);
    outln!("  follow: pushguide watch {}", d.id);
}

/// Template files that do not load and were skipped: one line each on stderr (stdout stays a
/// result, or JSON).
pub fn broken_templates(broken: &[crate::app::BrokenTemplate]) {
    for b in broken {
        errln!(
            "pushguide: skipping broken template file {}: {}",
            b.file,
            b.error
        );
    }
}

/// `history`.
pub fn history(rows: &[DeploymentRow]) {
    if rows.is_empty() {
        outln!("(no deployments recorded)");
    }
    for d in rows {
        outln!("{:<16} {}", d.template, deployment_line(d));
    }
}

/// `log` and the end of `watch`.
pub fn log(l: &LogResult) {
    outln!(
        "{:<16} {}",
        l.deployment.template,
        deployment_line(&l.deployment)
    );
    if let Some(r) = &l.deployment.reason {
        outln!("  reason: {r}");
    }
    outln!("Salt calls:");
    for c in &l.calls {
        outln!(
            "  {}  jid {}",
            call_text(c),
            c.jid.as_deref().unwrap_or("-")
        );
    }
    for h in &l.hosts {
        outln!(
            "Host {} — {}",
            h.host,
            h.status.as_deref().unwrap_or("running")
        );
        for s in &h.stages {
            outln!(
                "  {:<6} {:<12} {:<7}{}{}",
                batch_label(s.batch),
                s.stage,
                s.status,
                match (s.fun.as_deref(), s.status.as_str()) {
                    (fun, "failed" | "rollback-failed") => format!(" {}", failed_by(fun)),
                    (Some(fun), _) => format!(" {fun}"),
                    (None, _) => String::new(),
                },
                s.detail
                    .as_deref()
                    .map(|d| format!(": {d}"))
                    .unwrap_or_default()
            );
        }
        for line in &h.log {
            outln!("    {line}");
        }
    }
    if let Some(e) = &l.outcome_error {
        errln!("pushguide: warning: {e}");
    }
}

/// `stats`.
pub fn stats(s: &StatsResult) {
    outln!(
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
    outln!(
        "  deployments {}  succeeded {}  failed {}  success rate {}",
        s.releases.count,
        s.releases.succeeded,
        s.releases.count - s.releases.succeeded,
        rate(s.releases.success_rate)
    );
    outln!(
        "  duration mean {}  p50 {}  p95 {}",
        ms(s.releases.mean_ms),
        ms(s.releases.p50_ms),
        ms(s.releases.p95_ms)
    );
    let r = &s.rollbacks;
    outln!(
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
        outln!(
            "  hour {:02} {}: {}, {} failed",
            r.at,
            s.tz,
            count(r.count, "deployment", "deployments"),
            r.count - r.succeeded
        );
    }
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    for r in &s.by_weekday {
        outln!(
            "  {} {}: {}, {} failed",
            DAYS.get(r.at).unwrap_or(&"?"),
            s.tz,
            count(r.count, "deployment", "deployments"),
            r.count - r.succeeded
        );
    }
    for (h, n) in &s.failing_hosts {
        outln!(
            "  failing host {h}: {}",
            count(*n, "failed stage", "failed stages")
        );
    }
    for (st, n) in &s.failing_stages {
        outln!("  failing stage {st}: {}", count(*n, "failure", "failures"));
    }
    outln!(
        "  incidents {}  recovered {}  mean time to recover {}",
        s.incidents,
        s.recovered,
        ms(s.mttr_ms)
    );
}

/// `recover`.
pub fn recover(rows: &[InterruptedRow]) {
    if rows.is_empty() {
        outln!("(no interrupted deployments)");
    }
    for d in rows {
        outln!(
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
            outln!("  {:<24} {}", h.host, h.done);
        }
        if d.unnamed_not_reached > 0 {
            outln!(
                "  ({} not reached; their names were not recorded)",
                count(d.unnamed_not_reached as u64, "more host", "more hosts")
            );
        }
        if let Some(c) = &d.rollback_command {
            outln!("  roll back the hosts it touched: {c}");
        }
        if let Some(c) = &d.resume_command {
            outln!("  or resume it:                   {c}");
        }
    }
}

/// One `monitor` check: a summary the first time, then only the changes; resolution errors every
/// time, broken template files the first time.
pub fn monitor(c: &MonitorCheck, first: bool) {
    if first {
        outln!(
            "{}: {} up, {} down{}",
            count(c.checked as u64, "minion", "minions"),
            c.up.len(),
            c.down.len(),
            if c.down.is_empty() {
                String::new()
            } else {
                format!(" ({})", c.down.join(", "))
            }
        );
    } else {
        for ch in &c.changes {
            outln!(
                "{} {} is {}",
                ch.at,
                ch.minion,
                if ch.up { "up again" } else { "DOWN" }
            );
        }
    }
    for e in &c.errors {
        errln!("pushguide: monitor: {e}");
    }
    if first {
        broken_templates(&c.broken);
    }
}

/// A `monitor` round that failed (the next round comes after `interval`): the JSON error
/// document as one line on stdout with `--json`, else a line on stderr.
pub fn monitor_error(e: &CliError, as_json: bool, interval: std::time::Duration) {
    if as_json {
        json_line(&e.to_json());
    } else {
        errln!(
            "pushguide: monitor: {e}; trying again in {:.1}s",
            interval.as_secs_f64()
        );
    }
}

/// `install-module`: each master's write, then each minion's state.
pub fn module_install(r: &ModuleInstallResult) {
    for e in &r.endpoints {
        match (&e.written, &e.error) {
            (Some(path), _) => outln!("{}: wrote {path}", e.endpoint),
            (None, Some(error)) => outln!("{}: NOT WRITTEN: {error}", e.endpoint),
            (None, None) => outln!("{}: not written", e.endpoint),
        }
    }
    if r.minions.is_empty() {
        outln!("no minion matches `{}`", r.target);
    }
    for m in &r.minions {
        outln!("{}: {}", m.minion, m.state);
    }
    if !r.all_installed {
        errln!(
            "pushguide: install-module: the module (protocol {}) is not installed on every minion of `{}`",
            r.protocol,
            r.target
        );
    }
}
