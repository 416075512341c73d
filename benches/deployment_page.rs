//! The deployment page of a 10,000-host deployment: server time through the router (tower
//! `oneshot`), p50 and p99, for `GET /deployments/{id}` and its JSON twin
//! `GET /api/v1/deployments/{id}`, once the deployment finished (rebuilt from the store) and while
//! it runs (the grid the live view folded from the running deployment's events, copied).
//!
//! `cargo bench --bench deployment_page`
//!
//! The service, engine and fleet of `benches/live_view.rs` (`java-tomcat`, batches of 10 %, SQLite
//! store, a simulated fleet answering at once). The live deployment is held at its salt call half
//! way through (5 of 10 batches done) while it is measured. Each figure is over 50 requests after
//! 5 of warm-up; the template is read from the catalog on every request, as `pushguide serve` does.
#![allow(clippy::print_stderr, clippy::unwrap_used)]

mod web;

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use web::{login, pct, send, text, Env, User};

const HOSTS: usize = 10_000;
const REQUESTS: usize = 50;
const WARMUP: usize = 5;

async fn measure(env: &Env, u: &User, url: &str) -> (Duration, Duration, usize) {
    let mut bytes = 0;
    for _ in 0..WARMUP {
        let res = send(&env.app, u.get(url)).await;
        assert_eq!(res.status(), StatusCode::OK, "{url}");
        bytes = text(res).await.len();
    }
    let mut times = Vec::with_capacity(REQUESTS);
    for _ in 0..REQUESTS {
        let begun = Instant::now();
        let res = send(&env.app, u.get(url)).await;
        let status = res.status();
        let _ = text(res).await;
        times.push(begun.elapsed());
        assert_eq!(status, StatusCode::OK);
    }
    times.sort();
    (pct(&times, 0.5), pct(&times, 0.99), bytes)
}

async fn row(env: &Env, u: &User, what: &str, id: &str) {
    let (h50, h99, hb) = measure(env, u, &format!("/deployments/{id}")).await;
    let (j50, j99, jb) = measure(env, u, &format!("/api/v1/deployments/{id}")).await;
    eprintln!(
        "| {what} | {:.1} / {:.1} ms ({} KiB) | {:.1} / {:.1} ms ({} KiB) |",
        h50.as_secs_f64() * 1e3,
        h99.as_secs_f64() * 1e3,
        hb / 1024,
        j50.as_secs_f64() * 1e3,
        j99.as_secs_f64() * 1e3,
        jb / 1024,
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        eprintln!(
            "{HOSTS} hosts, java-tomcat, batch 10 %, step_jobs {}, zero latency",
            web::STEP_JOBS
        );
        eprintln!("| deployment | `GET /deployments/{{id}}` p50 / p99 | `GET /api/v1/deployments/{{id}}` p50 / p99 |");
        eprintln!("|---|---|---|");
        // finished: rebuilt from the store
        let env = Env::new(HOSTS, 1);
        let alice = login(&env.app, "alice").await;
        let id = env.publish(&alice).await;
        let opened = env.gate.open();
        let (done, outcome) = env.finished().await;
        env.ended(&alice, &id).await;
        let calls = env.gate.calls();
        let took = done - opened;
        row(&env, &alice, &format!("finished ({outcome}), from the store"), &id).await;
        env.stop().await;
        // live: held at the salt call half way through
        let half = calls / 2 + 1;
        let env = Env::new(HOSTS, half);
        let alice = login(&env.app, "alice").await;
        let id = env.publish(&alice).await;
        while env.gate.calls() < half {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // let the journal catch up with the events before the held call
        tokio::time::sleep(Duration::from_millis(500)).await;
        let v = web::api(&env.app, &alice, &format!("/api/v1/deployments/{id}")).await;
        let done_batches = v["batches"]
            .as_array()
            .map_or(0, |b| b.iter().filter(|b| b["stages"][2] == "ok").count());
        row(
            &env,
            &alice,
            &format!(
                "live, held at salt call {half} of {calls} ({done_batches} of {} batches done, {} events)",
                v["batches"].as_array().map_or(0, Vec::len),
                v["seq"]
            ),
            &id,
        )
        .await;
        env.gate.open();
        env.finished().await;
        env.ended(&alice, &id).await;
        env.stop().await;
        eprintln!(
            "(the finished deployment took {:.0} ms, {calls} salt calls)",
            took.as_secs_f64() * 1e3
        );
    });
}
