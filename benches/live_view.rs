//! The live view of a 10,000-host deployment watched by 50 SSE clients: server CPU per host result
//! delivered to each client, bytes per update, and the deployment's wall time with no client,
//! 50 clients, and 50 of which 10 are slow (5 read with a 20 ms pause between events, 5 never
//! read) — a slow client must not slow the deployment.
//!
//! `cargo bench --bench live_view`
//!
//! A full service in the process: its worker claims the publish (`POST /t/big/publish`, through
//! the router), the engine (SQLite store for journal, fleet state and leases; each host's steps as
//! one job, `step_jobs`, as `pushguide serve` does by default) deploys a `java-tomcat` template
//! in batches of 10 % to a simulated fleet of 10,000 minions that answers at once. The first salt
//! call is held until every client has connected (`GET /deployments/{id}/events` through the
//! router with tower `oneshot`; each body read as a stream by its own task), so that every
//! client sees the whole deployment live. CPU is the process's (every thread: engine, store,
//! SSE rendering — once per update for the deployment, the frame shared by every client — and the
//! clients' reading, which only counts bytes), from the clients' connect to the last normal
//! client's end of stream. A stage of a whole batch is one swap of its rows (`host rows` counts
//! only hosts whose own state changed, and the first full table).
#![allow(clippy::print_stderr, clippy::unwrap_used)]

mod web;

use std::pin::Pin;
use std::time::{Duration, Instant};

use axum::body::{Body, HttpBody};
use axum::http::StatusCode;
use web::{cpu, login, rss, send, Env};

const HOSTS: usize = 10_000;
const ROUNDS: usize = 2;

/// What a client read.
#[derive(Default, Clone, Copy)]
struct Read {
    bytes: usize,
    events: usize,
    host_rows: usize,
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    /// Reads every event as it comes.
    Normal,
    /// Sleeps 20 ms after each event it reads.
    Slow,
}

/// Reads `body` to its end; counts the content when `inspect`.
async fn read(mut body: Body, kind: Kind, inspect: bool) -> (Read, Instant) {
    let mut r = Read::default();
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        let Ok(data) = frame.unwrap().into_data() else {
            continue;
        };
        r.bytes += data.len();
        if inspect {
            let s = std::str::from_utf8(&data).unwrap();
            r.events += s.matches("event: update").count();
            r.host_rows += s.matches("<tr id=\"h-").count();
        }
        if kind == Kind::Slow {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    (r, Instant::now())
}

struct Run {
    wall: Duration,
    cpu: Duration,
    read: Read,
    bytes_per_client: usize,
    normal_done_after_end: Duration,
    slow_done_after_end: Option<Duration>,
    rss_never: Option<i64>,
    outcome: String,
}

async fn run(normal: usize, slow: usize, never: usize) -> Run {
    let env = Env::new(HOSTS, 1);
    let alice = login(&env.app, "alice").await;
    let id = env.publish(&alice).await;
    let url = format!("/deployments/{id}/events");
    let rss0 = rss();
    let cpu0 = cpu();
    let mut normals = Vec::new();
    let mut slows = Vec::new();
    let mut held = Vec::new();
    for i in 0..normal + slow + never {
        let res = send(&env.app, alice.get(&url)).await;
        assert_eq!(res.status(), StatusCode::OK);
        let body = res.into_body();
        if i < normal {
            normals.push(tokio::spawn(read(body, Kind::Normal, i == 0)));
        } else if i < normal + slow {
            slows.push(tokio::spawn(read(body, Kind::Slow, false)));
        } else {
            held.push(body);
        }
    }
    let opened = env.gate.open();
    let (finished, outcome) = env.finished().await;
    let mut first = Read::default();
    let mut total = 0;
    let mut last_normal = finished;
    for (i, t) in normals.into_iter().enumerate() {
        let (r, at) = t.await.unwrap();
        if i == 0 {
            first = r;
        }
        total += r.bytes;
        last_normal = last_normal.max(at);
    }
    let used = cpu() - cpu0;
    let rss_never = (never > 0).then(|| rss() as i64 - rss0 as i64);
    drop(held);
    let mut last_slow = None;
    for t in slows {
        let (_, at) = t.await.unwrap();
        last_slow = Some(last_slow.unwrap_or(at).max(at));
    }
    env.ended(&alice, &id).await;
    env.stop().await;
    Run {
        wall: finished - opened,
        cpu: used,
        read: first,
        bytes_per_client: total.checked_div(normal).unwrap_or(0),
        normal_done_after_end: last_normal - finished,
        slow_done_after_end: last_slow.map(|s| s - finished),
        rss_never,
        outcome,
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    eprintln!(
        "{HOSTS} hosts, java-tomcat, batch 10 %, step_jobs {}, zero latency",
        web::STEP_JOBS
    );
    eprintln!("| round | clients | deployment wall | CPU | bytes/client | events/client | host rows/client | bytes/event | normal clients done after the end | slow clients done after the end | RSS held by never-read clients | outcome |");
    eprintln!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut base = Vec::new();
    let mut fifty = Vec::new();
    rt.block_on(async {
        for round in 1..=ROUNDS {
            for (label, n, s, v) in [
                ("0", 0, 0, 0),
                ("50", 50, 0, 0),
                ("40 + 5 slow + 5 never read", 40, 5, 5),
            ] {
                let r = run(n, s, v).await;
                if n == 0 {
                    base.push(r.cpu);
                } else if s == 0 {
                    fifty.push((r.cpu, r.read));
                }
                eprintln!(
                    "| {round} | {label} | {:.0} ms | {:.2} s | {} | {} | {} | {} | {} | {} | {} | {} |",
                    r.wall.as_secs_f64() * 1e3,
                    r.cpu.as_secs_f64(),
                    r.bytes_per_client,
                    r.read.events,
                    r.read.host_rows,
                    r.bytes_per_client.checked_div(r.read.events).unwrap_or(0),
                    if n > 0 {
                        format!("{:.0} ms", r.normal_done_after_end.as_secs_f64() * 1e3)
                    } else {
                        "–".into()
                    },
                    r.slow_done_after_end
                        .map_or("–".into(), |d| format!("{:.0} ms", d.as_secs_f64() * 1e3)),
                    r.rss_never
                        .map_or("–".into(), |b| format!("{:.1} MiB", b as f64 / 1048576.0)),
                    r.outcome,
                );
            }
        }
    });
    for (i, ((c50, read), c0)) in fifty.iter().zip(&base).enumerate() {
        let extra = c50.saturating_sub(*c0);
        eprintln!(
            "round {}: CPU with 50 clients − without = {:.2} s: per host result per client {:.2} µs \
             ({} host results × 50); per host row update per client {:.3} µs ({} rows × 50)",
            i + 1,
            extra.as_secs_f64(),
            extra.as_secs_f64() * 1e6 / (HOSTS * 50) as f64,
            HOSTS,
            extra.as_secs_f64() * 1e6 / (read.host_rows.max(1) * 50) as f64,
            read.host_rows,
        );
    }
}
