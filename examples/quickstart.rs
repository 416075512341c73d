//! Quickstart: two releases of a `java-tomcat` application to 20 simulated hosts.
//!
//! 1. `1.0.0` goes out in rolling batches (a canary first, then 25 % at a time) and succeeds.
//! 2. `1.1.0` goes out; host `web-07` fails its health check, the failure budget (0 hosts) is exceeded,
//!    no further batch starts, and every touched host is rolled back to `1.0.0` automatically.
//!
//! Run: `cargo run --example quickstart`
#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::time::Duration;

use pushguide::sim::SimFleet;
use pushguide::{Engine, EventKind, Outcome, Principal, Request, Template};
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

[rollback]
policy = "previous"

[project]
kind = "java-tomcat"
root = "/srv/shop"
webapps = "/var/lib/tomcat10/webapps"
context = "shop"
service = "tomcat10"
artifact_url = "https://ci.example.com/shop/{version}/shop.war"
"#;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let template = Arc::new(Template::from_toml_str(TEMPLATE, "shop-web.toml")?);
    let hosts: Vec<String> = (1..=20).map(|i| format!("web-{i:02}")).collect();
    let fleet = Arc::new(
        SimFleet::new(&hosts)?
            .with_latency(Duration::from_millis(15))
            .on("*", "http.query", Outcome::ok(json!({ "status": 200 }))),
    );
    let engine = Engine::builder(fleet.clone()).build();
    let ops = Principal::user("alice").in_group("ops");

    println!("Registered project types:");
    for k in pushguide::registered_kinds() {
        println!("  {:<14} {}", k.kind, k.summary);
    }

    let first = Request::new(template.clone(), "1.0.0", ops.clone());
    println!("\n{}", engine.plan(&first).await?);
    let report = run(&engine, first).await?;
    println!("{report}");

    // web-07 will answer its health probe with HTTP 503.
    fleet.add_rule(
        "web-07",
        "http.query",
        Outcome::ok(json!({ "status": 503 })),
        None,
    );
    let second = Request::new(template, "1.1.0", ops);
    let report = run(&engine, second).await?;
    println!("{report}");
    println!("Log of web-07:");
    for line in report.host_log("web-07") {
        println!("  {line}");
    }
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
            EventKind::BatchStarted { batch, hosts } => {
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
