//! Quickstart: two releases of a `java-tomcat` application to 20 hosts of an embedded fake fleet,
//! driven through the real salt-api client over HTTP (the fake salt-api listens on loopback).
//!
//! 1. `1.0.0` goes out in rolling batches (a canary first, then 25 % at a time) and succeeds.
//! 2. `1.1.0` goes out; host `web-07` fails its health check (HTTP 503), the failure budget (0 hosts)
//!    is exceeded, no further batch starts, and every touched host is rolled back to `1.0.0`.
//!
//! 3. The history and statistics views, read back from the SQLite store (in a temporary directory)
//!    that recorded both deployments as they ran.
//!
//! Run: `cargo run --example quickstart`
#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::time::Duration;

use pushguide::salt::fake::FakeSaltApi;
use pushguide::salt::SaltApi;
use pushguide::sim::SimFleet;
use pushguide::steps::ManifestEntry;
use pushguide::{Artifact, Engine, EventKind, Outcome, Principal, Request, Template};
use pushguide_store::{SqliteStore, Window};
use serde_json::json;

const TEMPLATE: &str = r#"
name = "shop-web"
description = "The shop's Java front end"

[acl.deployers]
groups = ["ops"]

[targets]
expression = "web-*"

[rollout]
batch = "25%"
canary = true

[failure]
max_failed = 0
on_failure = "halt"

[health]
url = "http://127.0.0.1:8080/shop/health"
retries = 2
interval_secs = 1

[rollback]
policy = "previous"

[project]
kind = "java-tomcat"
context = "shop"
root = "/srv/shop"
catalina_base = "/var/lib/tomcat10"
service = "tomcat10"
"#;

const SHA: [&str; 2] = [
    "5f2b3c1d9e8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c",
    "0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9",
];

/// The artifact CI would hand over: URL, checksum and the manifest the conventions gate reads.
fn artifact(version: &str, sha: &str) -> Artifact {
    Artifact::new(
        format!("https://ci.example.com/shop/{version}/shop.war"),
        Some(sha.into()),
    )
    .with_manifest(vec![
        ManifestEntry {
            path: "WEB-INF/web.xml".into(),
            size: 812,
        },
        ManifestEntry {
            path: "WEB-INF/classes/".into(),
            size: 0,
        },
        ManifestEntry {
            path: "index.jsp".into(),
            size: 2048,
        },
    ])
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let template = Arc::new(Template::from_toml_str(TEMPLATE, "shop-web.toml")?);
    let hosts: Vec<String> = (1..=20).map(|i| format!("web-{i:02}")).collect();
    // The fleet answers like salt's modules do; each request takes 15 ms.
    let fleet = Arc::new(
        SimFleet::new(&hosts)?
            .with_latency(Duration::from_millis(15))
            .on("*", "file.directory_exists", Outcome::ok(false))
            .on(
                "*",
                "cp.get_url",
                Outcome::ok("/srv/shop/archives/shop.war"),
            )
            .on("*", "file.get_hash", Outcome::ok(SHA[0]))
            .on(
                "*",
                "archive.unzip",
                Outcome::ok(json!(["WEB-INF/web.xml", "index.jsp"])),
            )
            .on(
                "*",
                "file.readdir",
                Outcome::ok(json!([".", "..", "1.0.0"])),
            )
            .on("*", "http.query", Outcome::ok(json!({ "status": 200 }))),
    );
    let api = FakeSaltApi::start(fleet.clone()).await?;
    println!(
        "fake salt-api on {} with {} minions",
        api.url(),
        hosts.len()
    );
    let salt = Arc::new(SaltApi::new(api.settings())?);
    let dir = std::env::temp_dir().join(format!("pushguide-quickstart-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let store = Arc::new(SqliteStore::open(dir.join("history.db"))?);
    let engine = Engine::builder(salt)
        .history(store.clone())
        .fleet_state(store.clone())
        .leases(store.clone())
        // each host's steps as one salt job (the pushguide salt module; the fake salt-api runs it)
        .step_jobs(true)
        .build();
    let ops = Principal::user("alice").in_group("ops");

    println!("\nRegistered project types:");
    for k in pushguide::registered_kinds() {
        println!("  {:<14} {}", k.kind, k.summary);
    }

    let first =
        Request::new(template.clone(), "1.0.0", ops.clone()).artifact(artifact("1.0.0", SHA[0]));
    println!("\n{}", engine.plan(&first).await?);
    let report = run(&engine, first).await?;
    println!("{report}");

    // 1.1.0: releases/1.0.0 is on disk now, the new WAR has its own checksum, web-07 answers 503.
    fleet.add_rule_for_arg("*", "file.directory_exists", "/1.0.0", Outcome::ok(true));
    fleet.add_rule("*", "file.get_hash", Outcome::ok(SHA[1]), None);
    fleet.add_rule(
        "web-07",
        "http.query",
        Outcome::ok(json!({ "status": 503 })),
        None,
    );
    let second = Request::new(template, "1.1.0", ops).artifact(artifact("1.1.0", SHA[1]));
    let report = run(&engine, second).await?;
    println!("{report}");
    println!("Log of web-07:");
    for line in report.host_log("web-07") {
        println!("  {line}");
    }
    let counts = api.request_count();
    println!(
        "\nHTTP requests to salt-api: {} ({} salt jobs for 2 deployments of 20 hosts)",
        counts.total(),
        counts.get("POST /")
    );

    println!("\nHistory of shop-web (from {}):", store.path().display());
    for id in store.deployments("shop-web", 10)? {
        if let Some(d) = store.deployment(&id)? {
            println!(
                "  {:<32} {:<6} {:<14} {:>6.1?}  by {}",
                d.id,
                d.version,
                d.outcome.unwrap_or_else(|| "running".into()),
                d.duration.unwrap_or_default(),
                d.principal
            );
        }
    }
    let fleet_state = store.fleet("shop-web")?;
    let on_1_0 = fleet_state
        .iter()
        .filter(|h| h.version.as_deref() == Some("1.0.0"))
        .count();
    println!("Hosts on 1.0.0 now: {on_1_0} of {}", fleet_state.len());

    let now = std::time::SystemTime::now();
    let day = Duration::from_secs(86_400);
    let stats = store.stats(&Window::new(now - day, now + day).template("shop-web"))?;
    let s = &stats.summary;
    println!("\nStatistics (last 24 h):");
    println!(
        "  deployments {}, succeeded {}, success rate {:.0}%, mean {:.1?}, p95 {:.1?}",
        s.count,
        s.succeeded,
        s.success_rate.unwrap_or(0.0) * 100.0,
        s.mean.unwrap_or_default(),
        s.p95.unwrap_or_default()
    );
    for (host, failures) in stats.hosts.iter().take(3) {
        println!("  failing host: {host} ({failures} failures)");
    }
    for (stage, failures) in &stats.stages {
        println!("  failing stage: {stage} ({failures} failures)");
    }
    drop(engine);
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}

/// Starts a deployment, follows its events, and returns its report.
async fn run(engine: &Engine, req: Request) -> Result<pushguide::Report, pushguide::Error> {
    let version = req.version.clone();
    let handle = engine.start(req).await?;
    println!("== deploying {version} ({})", handle.id());
    let mut events = handle.events();
    while let Some(event) = events.next().await {
        match event.kind {
            EventKind::BatchStarted { batch, hosts, .. } => {
                println!("   batch {} started ({hosts} hosts)", batch + 1)
            }
            EventKind::StageFinished {
                batch: Some(_),
                stage,
                ok,
                failed,
            } => {
                println!("     {stage:<12} ok {ok:>2}  failed {failed}")
            }
            EventKind::HostFailed {
                host,
                stage,
                reason,
                ..
            } => {
                println!("     ✗ {host} failed at {stage}: {reason}")
            }
            EventKind::BudgetExceeded { failed, allowed } => {
                println!("   failure budget exceeded ({failed} failed, {allowed} allowed): halting")
            }
            EventKind::RollbackStarted { hosts } => println!("   rolling back {hosts} hosts"),
            EventKind::RollbackFinished { ok, failed } => {
                println!("   rollback finished: {ok} ok, {failed} failed")
            }
            _ => {}
        }
    }
    handle.wait().await
}
