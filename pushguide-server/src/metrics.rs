//! The service's own measurements, served at `GET /metrics` in the Prometheus text format
//! (version 0.0.4).
//!
//! One [`Metrics`] lives in the service's state; the parts that know something feed it:
//! deployment workers call [`Metrics::deployment_finished`], [`Metrics::stage_finished`],
//! [`Metrics::running_set`] and [`Metrics::queue_depth_set`]; the live view calls
//! [`Metrics::sse_clients_inc`] / [`Metrics::sse_clients_dec`]; whatever talks to salt-api calls
//! [`Metrics::salt_request`]; the login form counts failures and the minion monitor sets the
//! up/down counts. Deployments by outcome are read from the store when the page is rendered
//! (they survive restarts). [`Metrics::render`] writes the text.
//!
//! ```
//! let m = pushguide_server::Metrics::new();
//! m.deployment_finished("succeeded", 42.0);
//! m.salt_request("https://salt-1:8000", 0.12);
//! let text = m.render(&[("succeeded".into(), 1)]);
//! assert!(text.contains("pushguide_deployments_total{outcome=\"succeeded\"} 1\n"));
//! assert!(text.contains("pushguide_deployment_duration_seconds_count 1\n"));
//! ```

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Mutex, PoisonError};

/// The buckets (upper bounds, seconds) of the deployment duration histogram.
pub const DEPLOYMENT_BUCKETS: &[f64] = &[
    5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0,
];
/// The buckets of the stage duration histogram.
pub const STAGE_BUCKETS: &[f64] = &[0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0];
/// The buckets of the salt request latency histogram.
pub const SALT_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Most distinct label values kept per labelled family; more are counted under `other` (label
/// values come from code and configuration, but a bound keeps a mistake from growing the page
/// without end).
pub const MAX_LABEL_VALUES: usize = 100;

/// A histogram: counts per bucket (not cumulative), the sum and the count.
#[derive(Clone, Debug)]
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, v: f64) {
        let v = if v.is_finite() { v.max(0.0) } else { 0.0 };
        if let Some(i) = self.bounds.iter().position(|b| v <= *b) {
            self.counts[i] += 1;
        }
        self.sum += v;
        self.count += 1;
    }
}

#[derive(Debug, Default)]
struct State {
    login_failures: u64,
    sse_clients: u64,
    queue_depth: u64,
    running: u64,
    minions_up: u64,
    minions_down: u64,
    deployments: Option<Histogram>,
    stages: BTreeMap<String, Histogram>,
    salt: BTreeMap<String, Histogram>,
}

/// The registry (cheap to share: put it in an `Arc`; every method takes `&self`).
#[derive(Debug, Default)]
pub struct Metrics {
    state: Mutex<State>,
}

fn observe_labelled(
    map: &mut BTreeMap<String, Histogram>,
    label: &str,
    bounds: &'static [f64],
    secs: f64,
) {
    let key = if map.contains_key(label) || map.len() < MAX_LABEL_VALUES {
        label
    } else {
        "other"
    };
    map.entry(key.to_owned())
        .or_insert_with(|| Histogram::new(bounds))
        .observe(secs);
}

impl Metrics {
    /// An empty registry.
    pub fn new() -> Self {
        Metrics::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// A deployment ended after `secs` seconds (its outcome is counted from the store; this feeds
    /// the duration histogram).
    pub fn deployment_finished(&self, outcome: &str, secs: f64) {
        tracing::trace!(outcome, secs, "deployment finished");
        self.with(|s| {
            s.deployments
                .get_or_insert_with(|| Histogram::new(DEPLOYMENT_BUCKETS))
                .observe(secs)
        });
    }

    /// A stage (`pre_deploy`, `deploy`, …) of a batch ended after `secs` seconds.
    pub fn stage_finished(&self, stage: &str, secs: f64) {
        self.with(|s| observe_labelled(&mut s.stages, stage, STAGE_BUCKETS, secs));
    }

    /// A request to the salt-api `endpoint` took `secs` seconds.
    pub fn salt_request(&self, endpoint: &str, secs: f64) {
        self.with(|s| observe_labelled(&mut s.salt, endpoint, SALT_BUCKETS, secs));
    }

    /// A login failed (unknown user or wrong password).
    pub fn login_failed(&self) {
        self.with(|s| s.login_failures += 1);
    }

    /// A live view (SSE) client connected.
    pub fn sse_clients_inc(&self) {
        self.with(|s| s.sse_clients += 1);
    }

    /// A live view (SSE) client went away.
    pub fn sse_clients_dec(&self) {
        self.with(|s| s.sse_clients = s.sse_clients.saturating_sub(1));
    }

    /// How many publish requests wait in the queue.
    pub fn queue_depth_set(&self, n: u64) {
        self.with(|s| s.queue_depth = n);
    }

    /// How many deployments run now.
    pub fn running_set(&self, n: u64) {
        self.with(|s| s.running = n);
    }

    /// The minion monitor's last count of minions that answered (`up`) and did not (`down`).
    pub fn minions_set(&self, up: u64, down: u64) {
        self.with(|s| {
            s.minions_up = up;
            s.minions_down = down;
        });
    }

    /// The page: every family with `# HELP` and `# TYPE`, `deployments` (outcome, count; from the
    /// store) as `pushguide_deployments_total`.
    pub fn render(&self, deployments: &[(String, u64)]) -> String {
        let s = self.with(|s| {
            (
                s.login_failures,
                s.sse_clients,
                s.queue_depth,
                s.running,
                s.minions_up,
                s.minions_down,
                s.deployments
                    .clone()
                    .unwrap_or_else(|| Histogram::new(DEPLOYMENT_BUCKETS)),
                s.stages.clone(),
                s.salt.clone(),
            )
        });
        let (logins, sse, queue, running, up, down, dep, stages, salt) = s;
        let mut out = String::new();
        header(
            &mut out,
            "pushguide_deployments_total",
            "counter",
            "Finished deployments by outcome (from the store).",
        );
        for (outcome, n) in deployments {
            let _ = writeln!(
                out,
                "pushguide_deployments_total{{outcome=\"{}\"}} {n}",
                escape_label(outcome)
            );
        }
        for (name, kind, help, value) in [
            (
                "pushguide_login_failures_total",
                "counter",
                "Failed logins since the service started.",
                logins,
            ),
            (
                "pushguide_sse_clients",
                "gauge",
                "Connected live view (SSE) clients.",
                sse,
            ),
            (
                "pushguide_queue_depth",
                "gauge",
                "Publish requests waiting in the queue.",
                queue,
            ),
            (
                "pushguide_running_deployments",
                "gauge",
                "Deployments running now.",
                running,
            ),
        ] {
            header(&mut out, name, kind, help);
            let _ = writeln!(out, "{name} {value}");
        }
        header(
            &mut out,
            "pushguide_minions",
            "gauge",
            "Minions by state at the monitor's last round.",
        );
        let _ = writeln!(out, "pushguide_minions{{state=\"up\"}} {up}");
        let _ = writeln!(out, "pushguide_minions{{state=\"down\"}} {down}");
        header(
            &mut out,
            "pushguide_deployment_duration_seconds",
            "histogram",
            "Deployment durations.",
        );
        histogram(
            &mut out,
            "pushguide_deployment_duration_seconds",
            None,
            &dep,
        );
        header(
            &mut out,
            "pushguide_stage_duration_seconds",
            "histogram",
            "Stage durations per batch, by stage.",
        );
        for (stage, h) in &stages {
            histogram(
                &mut out,
                "pushguide_stage_duration_seconds",
                Some(("stage", stage)),
                h,
            );
        }
        header(
            &mut out,
            "pushguide_salt_request_duration_seconds",
            "histogram",
            "salt-api request latency, by endpoint.",
        );
        for (endpoint, h) in &salt {
            histogram(
                &mut out,
                "pushguide_salt_request_duration_seconds",
                Some(("endpoint", endpoint)),
                h,
            );
        }
        out
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn histogram(out: &mut String, name: &str, label: Option<(&str, &str)>, h: &Histogram) {
    let prefix = label
        .map(|(k, v)| format!("{k}=\"{}\",", escape_label(v)))
        .unwrap_or_default();
    let bare = label
        .map(|(k, v)| format!("{{{k}=\"{}\"}}", escape_label(v)))
        .unwrap_or_default();
    let mut cumulative = 0;
    for (bound, n) in h.bounds.iter().zip(&h.counts) {
        cumulative += n;
        let _ = writeln!(
            out,
            "{name}_bucket{{{prefix}le=\"{}\"}} {cumulative}",
            number(*bound)
        );
    }
    let _ = writeln!(out, "{name}_bucket{{{prefix}le=\"+Inf\"}} {}", h.count);
    let _ = writeln!(out, "{name}_sum{bare} {}", number(h.sum));
    let _ = writeln!(out, "{name}_count{bare} {}", h.count);
}

/// A sample value as the text format writes it.
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

/// A label value escaped for the text format: backslash, double quote and line feed.
pub fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str, prefix: &str) -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with(prefix))
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape_label("x\ny"), "x\\ny");
        let m = Metrics::new();
        m.salt_request("http://h\"\n\\", 0.1);
        let text = m.render(&[("we\"ird\n".into(), 2)]);
        assert!(
            text.contains("pushguide_deployments_total{outcome=\"we\\\"ird\\n\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("endpoint=\"http://h\\\"\\n\\\\\",le=\"0.1\"} 1\n"),
            "{text}"
        );
        // no sample line is broken by a raw line feed
        for l in text.lines() {
            assert!(l.starts_with("# ") || l.starts_with("pushguide_"), "{l}");
        }
    }

    #[test]
    fn histograms_are_cumulative_with_sum_and_count() {
        let m = Metrics::new();
        for s in [0.2, 0.7, 3.0, 100_000.0] {
            m.stage_finished("deploy", s);
        }
        m.stage_finished("pre_deploy", 1.0);
        let text = m.render(&[]);
        assert_eq!(
            lines(
                &text,
                "pushguide_stage_duration_seconds_bucket{stage=\"deploy\""
            ),
            [
                "pushguide_stage_duration_seconds_bucket{stage=\"deploy\",le=\"0.5\"} 1",
                "pushguide_stage_duration_seconds_bucket{stage=\"deploy\",le=\"1\"} 2",
                "pushguide_stage_duration_seconds_bucket{stage=\"deploy\",le=\"2.5\"} 2",
                "pushguide_stage_duration_seconds_bucket{stage=\"deploy\",le=\"5\"} 3",
                "pushguide_stage_duration_seconds_bucket{stage=\"deploy\",le=\"10\"} 3",
                "pushguide_stage_duration_seconds_bucket{stage=\"deploy\",le=\"30\"} 3",
                "pushguide_stage_duration_seconds_bucket{stage=\"deploy\",le=\"60\"} 3",
                "pushguide_stage_duration_seconds_bucket{stage=\"deploy\",le=\"120\"} 3",
                "pushguide_stage_duration_seconds_bucket{stage=\"deploy\",le=\"300\"} 3",
                "pushguide_stage_duration_seconds_bucket{stage=\"deploy\",le=\"600\"} 3",
                "pushguide_stage_duration_seconds_bucket{stage=\"deploy\",le=\"+Inf\"} 4",
            ]
        );
        assert!(text.contains("pushguide_stage_duration_seconds_sum{stage=\"deploy\"} 100003.9\n"));
        assert!(text.contains("pushguide_stage_duration_seconds_count{stage=\"deploy\"} 4\n"));
        assert!(text.contains("pushguide_stage_duration_seconds_count{stage=\"pre_deploy\"} 1\n"));
        // an empty deployment histogram is still there, all zero
        assert!(text.contains("pushguide_deployment_duration_seconds_bucket{le=\"+Inf\"} 0\n"));
        assert!(text.contains("pushguide_deployment_duration_seconds_count 0\n"));
    }

    #[test]
    fn gauges_and_counters_follow_their_feeds() {
        let m = Metrics::new();
        m.login_failed();
        m.login_failed();
        m.sse_clients_inc();
        m.sse_clients_inc();
        m.sse_clients_dec();
        m.sse_clients_dec();
        m.sse_clients_dec(); // never below zero
        m.sse_clients_inc();
        m.queue_depth_set(7);
        m.running_set(2);
        m.minions_set(18, 2);
        m.deployment_finished("failed", 12.0);
        let text = m.render(&[("failed".into(), 1), ("succeeded".into(), 5)]);
        for want in [
            "# TYPE pushguide_login_failures_total counter\npushguide_login_failures_total 2\n",
            "# TYPE pushguide_sse_clients gauge\npushguide_sse_clients 1\n",
            "pushguide_queue_depth 7\n",
            "pushguide_running_deployments 2\n",
            "pushguide_minions{state=\"up\"} 18\npushguide_minions{state=\"down\"} 2\n",
            "pushguide_deployments_total{outcome=\"failed\"} 1\n\
             pushguide_deployments_total{outcome=\"succeeded\"} 5\n",
            "pushguide_deployment_duration_seconds_bucket{le=\"15\"} 1\n",
            "pushguide_deployment_duration_seconds_sum 12\n",
        ] {
            assert!(text.contains(want), "{want}\n---\n{text}");
        }
        // every family is declared once, before its samples
        let mut declared = Vec::new();
        for l in text.lines() {
            if let Some(rest) = l.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap_or_default();
                assert!(!declared.contains(&name.to_owned()), "{name} twice");
                declared.push(name.to_owned());
            } else if !l.starts_with('#') {
                assert!(
                    declared.iter().any(|d| l.starts_with(d.as_str())),
                    "{l} before its TYPE"
                );
            }
        }
    }

    #[test]
    fn label_values_are_bounded() {
        let m = Metrics::new();
        for i in 0..(MAX_LABEL_VALUES + 5) {
            m.salt_request(&format!("http://salt-{i}"), 0.01);
        }
        let text = m.render(&[]);
        let counts = lines(&text, "pushguide_salt_request_duration_seconds_count");
        assert_eq!(counts.len(), MAX_LABEL_VALUES + 1);
        assert!(
            text.contains("pushguide_salt_request_duration_seconds_count{endpoint=\"other\"} 5\n")
        );
    }
}
