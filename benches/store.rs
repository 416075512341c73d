//! The SQLite store (`pushguide-store`): engine overhead with it against the in-memory default, and
//! each statistics query over a generated year of history.
//!
//! `cargo bench --bench store`
//!
//! (a) `store_engine/{memory,sqlite,postgres}/10000`: one deployment of 10,000 hosts (batch 10 %) with
//!     an instant transport, with the in-memory default vs `SqliteStore` (a file in a temp dir, WAL)
//!     vs `PgStore` as history, fleet state and leases. Target: SQLite ≤ 2× memory. The PostgreSQL
//!     arm runs when `PUSHGUIDE_PG_URL` is set (`eval "$(scripts/pg-lab env)"`; password from
//!     `PUSHGUIDE_PG_PASSWORD_FILE` or `PUSHGUIDE_PG_PASSWORD`, CA from `PUSHGUIDE_PG_CA_FILE`), in a
//!     fresh schema `bench_<pid>_<time>` per run (left in the database: use a throw-away one);
//!     otherwise it is skipped with a message.
//! (b) `store_stats/<query>/{all,template}`: each statistics query over one year of 500 templates,
//!     ~200,000 deployments, generated once through `append` into a temp file (generation time printed).
//!     Target: ≤ 200 ms per query.
#![allow(clippy::print_stderr, clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use criterion::{BenchmarkId, Criterion};
use pushguide::{
    DeploymentOutcome, Engine, Event, EventKind, MinionId, Principal, Request, Stage, Template,
};
use pushguide_postgres::{PgConfig, PgStore};
use pushguide_store::{SqliteStore, Window};

const HOSTS: usize = 10_000;

fn template(n: usize) -> Arc<Template> {
    let list: Vec<String> = (0..n).map(|i| format!("\"h{i:06}\"")).collect();
    let text = format!(
        "name = \"bench\"\n[acl.deployers]\nusers = [\"b\"]\n[targets]\nminions = [{}]\n[rollout]\nbatch = \"10%\"\n[project]\nkind = \"bench\"\n",
        list.join(",")
    );
    Arc::new(Template::from_toml_str(&text, "<bench>").unwrap())
}

fn sqlite_engine(store: &SqliteStore) -> Engine {
    let store = Arc::new(store.clone());
    Engine::builder(Arc::new(common::InstantTransport))
        .history(store.clone())
        .fleet_state(store.clone())
        .leases(store)
        .build()
}

/// The PostgreSQL store in a fresh schema, or `None` (with a message) without `PUSHGUIDE_PG_URL`.
fn postgres_store(rt: &tokio::runtime::Runtime) -> Option<PgStore> {
    let Ok(url) = std::env::var("PUSHGUIDE_PG_URL") else {
        eprintln!(
            "store_engine/postgres SKIPPED: PUSHGUIDE_PG_URL is not set \
             (scripts/pg-lab up; eval \"$(scripts/pg-lab env)\")"
        );
        return None;
    };
    let mut c = PgConfig::from_url(&url).expect("PUSHGUIDE_PG_URL");
    if let Ok(file) = std::env::var("PUSHGUIDE_PG_PASSWORD_FILE") {
        c = c.password_file(file);
    } else if std::env::var_os("PUSHGUIDE_PG_PASSWORD").is_some() {
        c = c.password_env("PUSHGUIDE_PG_PASSWORD");
    }
    if let Ok(ca) = std::env::var("PUSHGUIDE_PG_CA_FILE") {
        c = c.ca_file(ca);
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let schema = format!("bench_{}_{}", std::process::id(), now.as_secs());
    let c = c.schema(schema.clone()).unwrap();
    let store = rt
        .block_on(PgStore::connect(&c))
        .unwrap_or_else(|e| panic!("PostgreSQL store at {}: {e}", c.endpoint()));
    eprintln!("store_engine/postgres: {} schema {schema}", c.endpoint());
    Some(store)
}

fn postgres_engine(store: &PgStore) -> Engine {
    let store = Arc::new(store.clone());
    Engine::builder(Arc::new(common::InstantTransport))
        .history(store.clone())
        .fleet_state(store.clone())
        .leases(store)
        .build()
}

/// Deploys 1.0.0 and 1.0.1 in turn, so that every deployment changes every host's recorded version.
fn deploy_once(rt: &tokio::runtime::Runtime, engine: &Engine, t: &Arc<Template>) {
    static TURN: AtomicUsize = AtomicUsize::new(0);
    let version = format!("1.0.{}", TURN.fetch_add(1, Ordering::Relaxed) % 2);
    let report = rt
        .block_on(engine.deploy(Request::new(t.clone(), version, Principal::user("b"))))
        .unwrap();
    assert_eq!(report.outcome, DeploymentOutcome::Succeeded);
    assert_eq!(report.history_error, None);
}

fn median_of(rt: &tokio::runtime::Runtime, engine: &Engine, t: &Arc<Template>) -> Duration {
    let mut v: Vec<Duration> = (0..9)
        .map(|_| {
            let s = Instant::now();
            deploy_once(rt, engine, t);
            s.elapsed()
        })
        .collect();
    v.sort();
    v[4]
}

fn bench_engine(c: &mut Criterion, rt: &tokio::runtime::Runtime) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("engine.db")).unwrap();
    let t = template(HOSTS);
    let memory = Engine::builder(Arc::new(common::InstantTransport)).build();
    let sqlite = sqlite_engine(&store);
    let pg_store = postgres_store(rt);
    let postgres = pg_store.as_ref().map(postgres_engine);
    // Warm up each, then a direct comparison of medians before criterion's own figures.
    deploy_once(rt, &memory, &t);
    deploy_once(rt, &sqlite, &t);
    if let Some(p) = &postgres {
        deploy_once(rt, p, &t);
    }
    let m = median_of(rt, &memory, &t);
    let s = median_of(rt, &sqlite, &t);
    eprintln!(
        "engine at {HOSTS} hosts (median of 9): in-memory {m:.1?}, SQLite store {s:.1?} = {:.2}x",
        s.as_secs_f64() / m.as_secs_f64()
    );
    if let Some(p) = &postgres {
        let pm = median_of(rt, p, &t);
        eprintln!(
            "engine at {HOSTS} hosts (median of 9): PostgreSQL store {pm:.1?} = {:.2}x in-memory, \
             {:.2}x SQLite",
            pm.as_secs_f64() / m.as_secs_f64(),
            pm.as_secs_f64() / s.as_secs_f64()
        );
    }
    let mut group = c.benchmark_group("store_engine");
    group.sample_size(10);
    group.bench_with_input(BenchmarkId::new("memory", HOSTS), &HOSTS, |b, _| {
        b.iter(|| deploy_once(rt, &memory, &t))
    });
    group.bench_with_input(BenchmarkId::new("sqlite", HOSTS), &HOSTS, |b, _| {
        b.iter(|| deploy_once(rt, &sqlite, &t))
    });
    if let Some(p) = &postgres {
        group.bench_with_input(BenchmarkId::new("postgres", HOSTS), &HOSTS, |b, _| {
            b.iter(|| deploy_once(rt, p, &t))
        });
    }
    group.finish();
    if let Some(p) = pg_store {
        rt.block_on(p.close()).unwrap();
    }
}

const TEMPLATES: usize = 500;
const PER_TEMPLATE: usize = 400; // 200,000 deployments
const YEAR_START: u64 = 1_735_689_600; // 2025-01-01 00:00 UTC

/// xorshift64*: deterministic data without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn ev(id: &Arc<str>, at: SystemTime, kind: EventKind) -> Event {
    Event {
        at,
        deployment: id.clone(),
        kind,
    }
}

/// One deployment of one batch of three hosts; about one in eight fails one host at a random stage.
fn generated(rng: &mut Rng, template: usize, n: usize, out: &mut Vec<Event>) {
    let id: Arc<str> = Arc::from(format!("t{template:03}-{n:04}"));
    let start = UNIX_EPOCH
        + Duration::from_secs(YEAR_START + rng.below(365 * 86_400))
        + Duration::from_millis(rng.below(1000));
    let stage_ms = 2_000 + rng.below(60_000);
    let t = |ms: u64| start + Duration::from_millis(ms);
    let hosts: Vec<MinionId> = (0..3)
        .map(|i| MinionId::new(&format!("t{template:03}-web-{:02}", (n + i) % 8)).unwrap())
        .collect();
    let failing = (rng.below(8) == 0).then(|| (rng.below(3) as usize, rng.below(3) as usize));
    out.push(ev(
        &id,
        t(0),
        EventKind::DeploymentStarted {
            template: format!("template-{template:03}"),
            version: format!("1.{n}"),
            user: "ops".into(),
            dry_run: false,
            rollback: false,
        },
    ));
    out.push(ev(
        &id,
        t(0),
        EventKind::BatchStarted {
            batch: 0,
            hosts: 3,
            minions: Vec::new(),
        },
    ));
    for (i, stage) in Stage::BATCH.into_iter().enumerate() {
        let s = i as u64 * stage_ms;
        out.push(ev(
            &id,
            t(s),
            EventKind::StageStarted {
                batch: Some(0),
                stage,
                hosts: 3,
            },
        ));
        let mut failed = 0;
        if let Some((h, at_stage)) = failing {
            if at_stage == i {
                failed = 1;
                out.push(ev(
                    &id,
                    t(s + stage_ms / 2),
                    EventKind::HostFailed {
                        host: hosts[h].clone(),
                        stage,
                        fun: Some("file.symlink".into()),
                        reason: "retcode 1: disk full".into(),
                    },
                ));
            }
        }
        out.push(ev(
            &id,
            t(s + stage_ms),
            EventKind::StageFinished {
                batch: Some(0),
                stage,
                ok: 3 - failed,
                failed,
            },
        ));
    }
    for (i, h) in hosts.iter().enumerate() {
        if failing.map(|(f, _)| f) != Some(i) {
            out.push(ev(
                &id,
                t(3 * stage_ms),
                EventKind::HostSucceeded { host: h.clone() },
            ));
        }
    }
    let outcome = match failing {
        None => DeploymentOutcome::Succeeded,
        Some(_) if rng.below(2) == 0 => DeploymentOutcome::RolledBack,
        Some(_) => DeploymentOutcome::Failed,
    };
    out.push(ev(
        &id,
        t(3 * stage_ms + 500),
        EventKind::DeploymentFinished { outcome },
    ));
}

fn generate_year(store: &SqliteStore) -> usize {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut batch = Vec::with_capacity(20_000);
    let mut deployments = 0;
    for n in 0..PER_TEMPLATE {
        for t in 0..TEMPLATES {
            generated(&mut rng, t, n, &mut batch);
            deployments += 1;
            if batch.len() >= 15_000 {
                store.append_events(&batch).unwrap();
                batch.clear();
            }
        }
    }
    store.append_events(&batch).unwrap();
    deployments
}

/// Records each generated deployment's outcome, end and duration as `finish_report` would (the
/// journal's end event marks the end only; the outcome comes with the report). One statement for the
/// whole year instead of 200,000 reports: the statistics read these columns, not the reports.
fn finish_year(path: &std::path::Path) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute(
        "UPDATE deployments SET outcome = finished_outcome, ended_ms = finished_ms,
           duration_ms = finished_ms - started_ms
         WHERE ended_ms IS NULL AND finished_ms IS NOT NULL",
        [],
    )
    .unwrap();
}

fn bench_stats(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("year.db");
    let store = SqliteStore::open(&path).unwrap();
    let started = Instant::now();
    let n = generate_year(&store);
    finish_year(&path);
    let took = started.elapsed();
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0)
        + std::fs::metadata(path.with_extension("db-wal"))
            .map(|m| m.len())
            .unwrap_or(0);
    eprintln!(
        "generated {n} deployments of {TEMPLATES} templates over a year in {took:.1?} \
         ({:.0} deployments/s, {:.1} MiB)",
        n as f64 / took.as_secs_f64(),
        size as f64 / (1024.0 * 1024.0)
    );
    let from = UNIX_EPOCH + Duration::from_secs(YEAR_START);
    let to = from + Duration::from_secs(365 * 86_400);
    let all = Window::new(from, to);
    let one = Window::new(from, to).template("template-123");
    let summary = store.summary(&all).unwrap();
    assert_eq!(summary.count, n as u64);
    type Query = fn(&SqliteStore, &Window) -> usize;
    let queries: [(&str, Query); 6] = [
        ("summary", |s, w| s.summary(w).unwrap().count as usize),
        ("by_hour", |s, w| s.by_hour(w).unwrap().len()),
        ("by_weekday", |s, w| s.by_weekday(w).unwrap().len()),
        ("host_failures", |s, w| {
            s.host_failures(w, 20).unwrap().len()
        }),
        ("stage_failures", |s, w| s.stage_failures(w).unwrap().len()),
        ("time_to_recover", |s, w| {
            s.time_to_recover(w).unwrap().incidents as usize
        }),
    ];
    for (name, q) in &queries {
        for (label, w) in [("all", &all), ("template", &one)] {
            let s = Instant::now();
            q(&store, w);
            eprintln!("stats {name}/{label}: first run {:.1?}", s.elapsed());
        }
    }
    eprintln!(
        "year overall: {} deployments, success {:.3}, mean {:.1?}, p50 {:.1?}, p95 {:.1?}",
        summary.count,
        summary.success_rate.unwrap_or(0.0),
        summary.mean.unwrap_or_default(),
        summary.p50.unwrap_or_default(),
        summary.p95.unwrap_or_default()
    );
    let mut group = c.benchmark_group("store_stats");
    group.sample_size(10);
    for (name, q) in queries {
        for (label, w) in [("all", &all), ("template", &one)] {
            group.bench_with_input(BenchmarkId::new(name, label), w, |b, w| {
                b.iter(|| q(&store, w))
            });
        }
    }
    group.finish();
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut c = Criterion::default().configure_from_args();
    bench_engine(&mut c, &rt);
    bench_stats(&mut c);
    c.final_summary();
}
