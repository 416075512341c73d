//! The salt-api transport: decoding throughput and fan-out through the fake salt-api.
//!
//! `cargo bench --bench salt --features fake`
//!
//! * `decode_1000_minions/*` — the client's decoders on a `GET /jobs/<jid>` body, a `local` body and
//!   the `/events` stream text of 1,000 minions' `cmd.run_all` dicts, in MiB/s (`*_bytes`) and
//!   minions/s (`*_minions`);
//! * `fanout/*` — `Engine` + `SaltApi` + `FakeSaltApi` with 25 ms fleet latency per request, 10 batches,
//!   a deployer with one call per batch stage (3 per batch). Before criterion runs, the measured wall
//!   time is printed against the ideal critical path ((batches × 3 + 1 pre-flight ping) × 25 ms), with
//!   the HTTP requests per deployment, for 100 hosts per batch and 10 hosts per batch. The fake
//!   salt-api runs on its own one-thread runtime, as salt-api is its own process.
#![allow(clippy::print_stderr, clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use pushguide::salt::fake::FakeSaltApi;
use pushguide::salt::{decode, SaltApi, SaltApiSettings};
use pushguide::sim::SimFleet;
use pushguide::{DeploymentOutcome, Engine, Principal, Request, Template};
use serde_json::{json, Map, Value};

// ------------------------------------------------------------------------------------- decode

const MINIONS: usize = 1_000;

fn run_all(i: usize) -> Value {
    json!({
        "pid": 20_000 + i,
        "retcode": if i % 50 == 0 { 1 } else { 0 },
        "stdout": format!("released shop 2.0.0 on web-{i:04}\nservice tomcat10 restarted"),
        "stderr": if i % 50 == 0 { "warning: slow start" } else { "" },
    })
}

/// A `GET /jobs/<jid>` answer of a finished `cmd.run_all` job on `n` minions.
fn jobs_body(n: usize) -> Vec<u8> {
    let mut result = Map::new();
    let mut bare = Map::new();
    let mut names = Vec::new();
    for i in 0..n {
        let m = format!("web-{i:04}");
        let ret = run_all(i);
        result.insert(
            m.clone(),
            json!({"return": ret, "retcode": ret["retcode"], "success": ret["retcode"] == 0}),
        );
        bare.insert(m.clone(), ret);
        names.push(m);
    }
    serde_json::to_vec(&json!({
        "info": [{
            "jid": "20261127071735747785",
            "Function": "cmd.run_all",
            "Arguments": ["/srv/shop/bin/release 2.0.0"],
            "Target": names.join(","),
            "Target-type": "list",
            "User": "saltdev",
            "Minions": names,
            "StartTime": "2026, Nov 27 07:17:35.747785",
            "Result": result,
        }],
        "return": [bare],
    }))
    .unwrap()
}

/// The `/events` stream text of a `cmd.run_all` job's returns on `n` minions, as salt-api sends it.
fn events_body(n: usize) -> Vec<u8> {
    let jid = "20261127071735747785";
    let mut out = String::new();
    for i in 0..n {
        let m = format!("web-{i:04}");
        let ret = run_all(i);
        let tag = format!("salt/job/{jid}/ret/{m}");
        let data = json!({
            "cmd": "_return", "id": m, "jid": jid, "fun": "cmd.run_all",
            "fun_args": ["/srv/shop/bin/release 2.0.0"], "return": ret, "retcode": ret["retcode"],
            "success": ret["retcode"] == 0, "user": "saltdev",
            "_stamp": "2026-11-27T07:17:35.747785",
        });
        out.push_str(&format!(
            "tag: {tag}\ndata: {}\n\n",
            json!({"data": data, "tag": tag})
        ));
    }
    out.into_bytes()
}

/// Decodes an `/events` text as the client's stream reader does; the number of returns.
fn decode_events(body: &[u8]) -> usize {
    let mut parser = decode::SseParser::new();
    let mut n = 0;
    parser.push_each(body, |rec| {
        if decode::job_return_event_ref(&rec).unwrap().is_some() {
            n += 1;
        }
    });
    n
}

/// A synchronous `local` answer of `cmd.run_all` on `n` minions.
fn local_body(n: usize) -> Vec<u8> {
    let map: Map<String, Value> = (0..n)
        .map(|i| (format!("web-{i:04}"), run_all(i)))
        .collect();
    serde_json::to_vec(&json!({ "return": [map] })).unwrap()
}

/// A decoder under test: the number of minions it read.
type Decoder = fn(&[u8]) -> usize;

fn bench_decode(c: &mut Criterion) {
    let jobs = jobs_body(MINIONS);
    let local = local_body(MINIONS);
    let events = events_body(MINIONS);
    assert_eq!(decode::job(&jobs).unwrap().returned.len(), MINIONS);
    assert_eq!(decode::local("cmd.run_all", &local).unwrap().len(), MINIONS);
    assert_eq!(decode_events(&events), MINIONS);
    eprintln!(
        "decode bodies: /jobs {:.1} KiB, local {:.1} KiB, /events {:.1} KiB for {MINIONS} minions",
        jobs.len() as f64 / 1024.0,
        local.len() as f64 / 1024.0,
        events.len() as f64 / 1024.0
    );
    let mut g = c.benchmark_group("decode_1000_minions");
    let decoders: [(&str, &Vec<u8>, Decoder); 3] = [
        ("jobs", &jobs, |b| decode::job(b).unwrap().returned.len()),
        ("local", &local, |b| {
            decode::local("cmd.run_all", b).unwrap().len()
        }),
        ("events", &events, decode_events),
    ];
    for (name, body, decoder) in decoders {
        let run = |b: &mut criterion::Bencher<'_>| {
            b.iter(|| decoder(std::hint::black_box(body)));
        };
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function(format!("{name}_bytes"), run);
        g.throughput(Throughput::Elements(MINIONS as u64));
        g.bench_function(format!("{name}_minions"), run);
    }
    g.finish();
}

// ------------------------------------------------------------------------------------- fan-out

const LATENCY: Duration = Duration::from_millis(25);
const BATCHES: usize = 10;
struct Fanout {
    width: usize,
    fake: FakeSaltApi,
    /// The fake salt-api's own runtime (one thread), as salt-api is its own process.
    _fake_rt: tokio::runtime::Runtime,
    engine: Engine,
    template: Arc<Template>,
}

impl Fanout {
    async fn new(width: usize) -> Self {
        let hosts: Vec<String> = (0..width * BATCHES).map(|i| format!("h{i:05}")).collect();
        let fleet = SimFleet::new(&hosts)
            .unwrap()
            .with_latency(LATENCY)
            .recording(false);
        let fake_rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("fake-salt-api")
            .enable_all()
            .build()
            .unwrap();
        let fake = fake_rt
            .spawn(FakeSaltApi::start(Arc::new(fleet)))
            .await
            .unwrap()
            .unwrap();
        let api = SaltApi::new(SaltApiSettings {
            job_timeout: Duration::from_secs(60),
            ..fake.settings()
        })
        .unwrap();
        let engine = Engine::builder(Arc::new(api)).build();
        let list: Vec<String> = hosts.iter().map(|h| format!("\"{h}\"")).collect();
        let text = format!(
            "name = \"fanout-{width}\"\n[acl.deployers]\nusers = [\"b\"]\n[targets]\nminions = [{}]\n\
             [rollout]\nbatch = {width}\n[project]\nkind = \"bench\"\n",
            list.join(",")
        );
        let template = Arc::new(Template::from_toml_str(&text, "<bench>").unwrap());
        Fanout {
            width,
            fake,
            _fake_rt: fake_rt,
            engine,
            template,
        }
    }

    async fn deploy(&self) -> Duration {
        let t = Instant::now();
        let report = self
            .engine
            .deploy(Request::new(
                self.template.clone(),
                "1.0.0",
                Principal::user("b"),
            ))
            .await
            .unwrap();
        assert_eq!(report.outcome, DeploymentOutcome::Succeeded);
        assert_eq!(report.batches.len(), BATCHES);
        t.elapsed()
    }

    /// Prints wall time against the ideal critical path and the HTTP requests per deployment.
    async fn report(&self) {
        let ideal = LATENCY * (BATCHES * common::CALLS_PER_BATCH + 1) as u32;
        self.fake.reset_request_count();
        let first = self.deploy().await;
        let first_counts = self.fake.request_count();
        let mut times = Vec::new();
        let mut steady = None;
        for _ in 0..5 {
            self.fake.reset_request_count();
            times.push(self.deploy().await);
            steady = Some(self.fake.request_count());
        }
        times.sort();
        let median = times[times.len() / 2];
        let steady = steady.unwrap_or_default();
        eprintln!(
            "fan-out {} hosts ({BATCHES} batches × {}): ideal {:?}, median {:.1?} (min {:.1?}, first {:.1?}) \
             → ratio {:.3}",
            self.width * BATCHES,
            self.width,
            ideal,
            median,
            times[0],
            first,
            median.as_secs_f64() / ideal.as_secs_f64()
        );
        eprintln!(
            "  HTTP requests per deployment: first {} {:?}; then {} {:?}",
            first_counts.total(),
            first_counts.by_route,
            steady.total(),
            steady.by_route
        );
    }
}

fn bench_fanout(c: &mut Criterion, rt: &tokio::runtime::Runtime) {
    let setups: Vec<Fanout> = [100usize, 10]
        .into_iter()
        .map(|w| rt.block_on(Fanout::new(w)))
        .collect();
    for f in &setups {
        rt.block_on(f.report());
    }
    let mut g = c.benchmark_group("fanout");
    g.sample_size(10);
    for f in &setups {
        g.bench_with_input(
            BenchmarkId::new(
                format!("{}_batches", BATCHES),
                format!("{}_per_batch", f.width),
            ),
            f,
            |b, f| b.iter(|| rt.block_on(f.deploy())),
        );
    }
    g.finish();
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut c = Criterion::default().configure_from_args();
    bench_decode(&mut c);
    bench_fanout(&mut c, &rt);
    c.final_summary();
}
