//! The publish queue on PostgreSQL (issue 14's "Queue: claims per second with 3 instances × 4
//! workers; publish-to-start latency p50/p99"): plain timing, printed.
//!
//! - claims per second: 3 stores (instances) × 4 worker tasks claim and finish `CLAIMS` requests
//!   queued over `TEMPLATES` templates (a template's requests one at a time, in order);
//! - publish-to-start latency: the same 12 workers idle; one request at a time is queued through
//!   the instances in turn, after a random pause; the time from the enqueue call to a worker's
//!   claim returning, p50 / p99 — woken by `NOTIFY` (`wait_for_publishes`, poll as backstop), and
//!   with `NOTIFY` unused (the workers only poll) for comparison.
//!
//! Needs `PUSHGUIDE_PG_URL` (`eval "$(scripts/pg-lab env)"`); skips with a message without it.
//! Works in a fresh schema of its own. `cargo bench -p pushguide-postgres --bench queue`.
#![allow(clippy::print_stdout, clippy::unwrap_used, missing_docs)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pushguide_postgres::{PgConfig, PgStore};
use pushguide_store::PublishQueue;

const INSTANCES: usize = 3;
const WORKERS: usize = 4;
const CLAIMS: usize = 1200;
const TEMPLATES: usize = 24;
const LATENCY_SAMPLES: usize = 200;
const POLL_SAMPLES: usize = 60;
const POLL: Duration = Duration::from_millis(500);

fn config() -> Option<PgConfig> {
    let Ok(url) = std::env::var("PUSHGUIDE_PG_URL") else {
        println!(
            "SKIPPED queue bench: PUSHGUIDE_PG_URL is not set (eval \"$(scripts/pg-lab env)\")"
        );
        return None;
    };
    let mut c = PgConfig::from_url(&url).expect("PUSHGUIDE_PG_URL");
    if let Ok(f) = std::env::var("PUSHGUIDE_PG_PASSWORD_FILE") {
        c = c.password_file(f);
    } else if std::env::var_os("PUSHGUIDE_PG_PASSWORD").is_some() {
        c = c.password_env("PUSHGUIDE_PG_PASSWORD");
    }
    if let Ok(ca) = std::env::var("PUSHGUIDE_PG_CA_FILE") {
        c = c.ca_file(ca);
    }
    let schema = format!("bench_queue_{}", std::process::id());
    Some(c.schema(schema).unwrap().pool_size(WORKERS + 2))
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn claims_per_second(stores: &[Arc<PgStore>]) {
    for n in 0..CLAIMS {
        let s = &stores[n % stores.len()];
        PublishQueue::enqueue_publish(&**s, &format!("t{}", n % TEMPLATES), "bench", &[], "{}")
            .await
            .unwrap();
    }
    let done = Arc::new(AtomicUsize::new(0));
    let begun = Instant::now();
    let mut tasks = Vec::new();
    for s in stores {
        for _ in 0..WORKERS {
            let (s, done) = (s.clone(), done.clone());
            tasks.push(tokio::spawn(async move {
                let mut mine = 0usize;
                while done.load(Ordering::SeqCst) < CLAIMS {
                    match PublishQueue::claim_publish(&*s).await.unwrap() {
                        Some(q) => {
                            PublishQueue::finish_publish(&*s, q.id, None).await.unwrap();
                            done.fetch_add(1, Ordering::SeqCst);
                            mine += 1;
                        }
                        None => {
                            PublishQueue::wait_for_publishes(&*s, Duration::from_millis(50)).await
                        }
                    }
                }
                mine
            }));
        }
    }
    let mut per_worker = Vec::new();
    for t in tasks {
        per_worker.push(t.await.unwrap());
    }
    let wall = begun.elapsed();
    per_worker.sort_unstable();
    println!(
        "claims: {CLAIMS} requests over {TEMPLATES} templates, {INSTANCES} instances x {WORKERS} workers (claim + finish each): {:.2} s = {:.0} claims/s; per worker min {} max {}",
        wall.as_secs_f64(),
        CLAIMS as f64 / wall.as_secs_f64(),
        per_worker[0],
        per_worker[per_worker.len() - 1]
    );
}

/// Queues one request at a time (after a random pause) while the 12 workers idle; returns the
/// enqueue-call-to-claim latencies. `notify`: workers wait with `wait_for_publishes`, else sleep.
async fn latency(stores: &[Arc<PgStore>], samples: usize, notify: bool) -> Vec<Duration> {
    let sent: Arc<Mutex<HashMap<usize, Instant>>> = Arc::default();
    let got: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let finished = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for s in stores {
        for _ in 0..WORKERS {
            let (s, sent, got, finished, stop) = (
                s.clone(),
                sent.clone(),
                got.clone(),
                finished.clone(),
                stop.clone(),
            );
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    match PublishQueue::claim_publish(&*s).await.unwrap() {
                        Some(q) => {
                            let at = Instant::now();
                            let n: usize = q.request.parse().unwrap();
                            let t0 = sent.lock().unwrap()[&n];
                            got.lock().unwrap().push(at - t0);
                            PublishQueue::finish_publish(&*s, q.id, None).await.unwrap();
                            finished.fetch_add(1, Ordering::SeqCst);
                        }
                        None if notify => PublishQueue::wait_for_publishes(&*s, POLL).await,
                        None => tokio::time::sleep(POLL).await,
                    }
                }
            }));
        }
    }
    // every worker idle first
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut rnd: u64 = 0x9e37_79b9_7f4a_7c15;
    for n in 0..samples {
        rnd = rnd
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        tokio::time::sleep(Duration::from_millis(20 + (rnd >> 33) % 80)).await;
        sent.lock().unwrap().insert(n, Instant::now());
        let s = &stores[n % stores.len()];
        PublishQueue::enqueue_publish(&**s, &format!("l{}", n % 5), "bench", &[], &n.to_string())
            .await
            .unwrap();
        while finished.load(Ordering::SeqCst) <= n {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.abort();
    }
    let mut v = got.lock().unwrap().clone();
    v.sort_unstable();
    v
}

fn report(what: &str, v: &[Duration]) {
    println!(
        "publish-to-start latency, {what}: {} samples, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        v.len(),
        pct(v, 0.5).as_secs_f64() * 1e3,
        pct(v, 0.99).as_secs_f64() * 1e3,
        v[v.len() - 1].as_secs_f64() * 1e3
    );
}

fn main() {
    let Some(config) = config() else { return };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut stores = Vec::new();
        for _ in 0..INSTANCES {
            stores.push(Arc::new(PgStore::connect(&config).await.unwrap()));
        }
        println!(
            "PostgreSQL {} schema {}",
            config.endpoint(),
            config.schema.as_deref().unwrap_or("-")
        );
        claims_per_second(&stores).await;
        report(
            &format!(
                "idle workers woken by NOTIFY (poll {} ms as backstop)",
                POLL.as_millis()
            ),
            &latency(&stores, LATENCY_SAMPLES, true).await,
        );
        report(
            &format!("NOTIFY unused, workers poll every {} ms", POLL.as_millis()),
            &latency(&stores, POLL_SAMPLES, false).await,
        );
        for s in &stores {
            s.close().await.unwrap();
        }
    });
}
