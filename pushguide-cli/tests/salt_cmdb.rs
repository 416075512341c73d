//! `[cmdb] type = "salt"` through the real `pushguide` binary against the fake salt-api: per-host
//! settings from pillar and grains reach the plan, one salt job per batch of hosts, and a minion
//! that does not answer stops the command (exit 69, named) before anything is deployed.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod support;

use pushguide_core::{Effect, Outcome};
use serde_json::json;
use support::lab::{shop_template, Lab};

fn salt_cmdb_lab() -> Lab {
    let lab = Lab::builder()
        .template(
            "shop",
            &shop_template(&["web-01", "web-02", "web-03"], false, false),
        )
        .start();
    let mut config = std::fs::read_to_string(&lab.ops).unwrap();
    config.push_str(
        "[cmdb]\ntype = \"salt\"\nbatch = 2\ntimeout_secs = 2\n[cmdb.grains]\nroot = \"deploy_root\"\n",
    );
    std::fs::write(&lab.ops, config).unwrap();
    lab.fleet.add_rule(
        "*",
        "pillar.item",
        Outcome::ok(json!({"pushguide:shop": ""})),
        None,
    );
    lab.fleet.add_rule(
        "web-02",
        "pillar.item",
        Outcome::ok(json!({"pushguide:shop": {"service": "tomcat-pillar"}})),
        None,
    );
    lab.fleet.add_rule(
        "*",
        "grains.item",
        Outcome::ok(json!({"deploy_root": "/srv/from-grain"})),
        None,
    );
    lab
}

#[test]
fn pillar_and_grains_reach_the_deployment_one_salt_job_per_batch() {
    let lab = salt_cmdb_lab();
    lab.serving("1.0.0");
    lab.fleet.clear_requests();
    let r = lab.run(&["deploy", "shop", "1.0.0", "--json"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(r.json()["outcome"], "succeeded", "{}", r.stdout);
    let reqs = lab.fleet.requests();
    let pillar: Vec<_> = reqs.iter().filter(|q| q.fun == "pillar.item").collect();
    // 3 targets, 2 per batch: 2 salt jobs, each with both functions, before anything else
    assert_eq!(pillar.len(), 2, "{reqs:?}");
    assert_eq!(pillar[0].targets.len(), 2);
    assert_eq!(pillar[1].targets.len(), 1);
    assert_eq!(reqs.iter().filter(|q| q.fun == "grains.item").count(), 2);
    assert!(reqs[..4]
        .iter()
        .all(|q| q.fun == "pillar.item" || q.fun == "grains.item"));
    // web-02's service from its pillar, every root from the grain
    // the steps travel as one job per host (the pushguide module): look at them one by one
    let steps = lab.fleet.step_requests();
    let stops: Vec<_> = steps.iter().filter(|q| q.fun == "service.stop").collect();
    for q in &stops {
        let want = if q.targets.iter().any(|t| t.as_str() == "web-02") {
            "tomcat-pillar"
        } else {
            "tomcat10"
        };
        assert_eq!(q.call.arg, [json!(want)], "{q:?}");
    }
    assert_eq!(stops.len(), 3, "{stops:?}");
    let fetch = steps.iter().find(|q| q.fun == "cp.get_url").unwrap();
    assert_eq!(
        fetch.call.arg[1],
        json!("/srv/from-grain/archives/1.0.0.war")
    );
}

#[test]
fn a_minion_that_does_not_answer_the_cmdb_stops_the_deployment_by_name() {
    let lab = salt_cmdb_lab();
    lab.serving("1.0.0");
    lab.fleet
        .add_rule("web-03", "pillar.item", Outcome::NoReturn, None);
    lab.fleet.clear_requests();
    let r = lab.run(&["deploy", "shop", "1.0.0", "--json"]);
    assert_eq!(r.code, 69, "{}\n{}", r.stdout, r.stderr);
    let e = r.json();
    let message = e["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let text = if message.is_empty() {
        e.to_string()
    } else {
        message
    };
    assert!(text.contains("web-03") && text.contains("no answer"), "{e}");
    assert!(!text.contains("web-01,"), "{e}");
    // nothing was sent but the CMDB's read, nothing recorded
    let reqs = lab.fleet.requests();
    assert!(
        reqs.iter()
            .all(|q| q.effect == Effect::ReadOnly
                && (q.fun == "pillar.item" || q.fun == "grains.item")),
        "{reqs:?}"
    );
    assert!(lab.history().is_empty());
}
