//! Engine overhead per host·stage with an instant in-process transport (every target answers `true` at
//! once), batch 10 %, at 100 to 100,000 hosts; plus memory per host.
//!
//! `cargo bench --bench engine` — criterion reports time per deployment and, through the throughput
//! setting, host·stages per second. Before criterion runs, the peak resident memory added by one
//! deployment of 100,000 hosts (report kept) is printed per host.
#![allow(clippy::print_stderr, clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, Throughput};
use pushguide::{DeploymentOutcome, Engine, Principal, Request, Template};

fn setup(n: usize) -> (Engine, Arc<Template>) {
    let hosts: Vec<String> = (0..n).map(|i| format!("h{i:06}")).collect();
    let list: Vec<String> = hosts.iter().map(|h| format!("\"{h}\"")).collect();
    let text = format!(
        "name = \"bench\"\n[acl.deployers]\nusers = [\"b\"]\n[targets]\nminions = [{}]\n[rollout]\nbatch = \"10%\"\n[project]\nkind = \"bench\"\n",
        list.join(",")
    );
    let template = Arc::new(Template::from_toml_str(&text, "<bench>").unwrap());
    (
        Engine::builder(Arc::new(common::InstantTransport)).build(),
        template,
    )
}

fn deploy_once(
    rt: &tokio::runtime::Runtime,
    engine: &Engine,
    t: &Arc<Template>,
) -> pushguide::Report {
    let report = rt
        .block_on(engine.deploy(Request::new(t.clone(), "1.0.0", Principal::user("b"))))
        .unwrap();
    assert_eq!(report.outcome, DeploymentOutcome::Succeeded);
    report
}

fn status_kib(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Peak RSS added by one deployment of `n` hosts, per host (Linux only).
fn memory_per_host(rt: &tokio::runtime::Runtime, n: usize) {
    let (engine, t) = setup(n);
    let base = status_kib("VmRSS:");
    // Reset the peak so VmHWM measures this deployment only.
    if std::fs::write("/proc/self/clear_refs", "5").is_err() {
        eprintln!("memory: /proc/self/clear_refs not writable; skipped");
        return;
    }
    let report = deploy_once(rt, &engine, &t);
    let peak = status_kib("VmHWM:");
    let kept = status_kib("VmRSS:");
    eprintln!(
        "memory at {n} hosts: peak +{:.0} B/host, retained with the report +{:.0} B/host ({} events, {} calls)",
        (peak.saturating_sub(base) * 1024) as f64 / n as f64,
        (kept.saturating_sub(base) * 1024) as f64 / n as f64,
        report.events.len(),
        report.calls.len()
    );
}

fn bench_engine(c: &mut Criterion, rt: &tokio::runtime::Runtime) {
    let mut group = c.benchmark_group("engine_overhead");
    group.sample_size(10);
    for n in [100usize, 1_000, 10_000, 100_000] {
        let (engine, t) = setup(n);
        group.throughput(Throughput::Elements((n * 3) as u64)); // host·stages
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| deploy_once(rt, &engine, &t))
        });
    }
    group.finish();
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    memory_per_host(&rt, 100_000);
    let mut c = Criterion::default().configure_from_args();
    bench_engine(&mut c, &rt);
    c.final_summary();
}
