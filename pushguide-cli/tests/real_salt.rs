//! End to end through the real `pushguide` binary against the REAL salt lab (`scripts/salt-lab up`)
//! and one real Tomcat 10 per minion (`scripts/tomcat-lab up`): `deploy` 1.0.0 and 2.0.0, `rollback`
//! (each host back to 1.0.0), `history`, `show`, `log`. WARs are built with the JDK's `jar` into a
//! directory CI source that this test serves to the minions over HTTP.
//!
//! Needs `PUSHGUIDE_SALT_*` and `PUSHGUIDE_TOMCAT_*`; without them it skips with a message, unless
//! `PUSHGUIDE_REQUIRE_SALT=1`, where it fails naming what is missing.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod support;

use support::tomcat::{build_war, lab, page, serve_files, Lab};
use support::{run, write};

fn assert_pages(lab: &Lab, version: &str) {
    for port in &lab.ports {
        let p = page(port, "shop");
        assert!(
            p.contains(&format!("shop version {version}")),
            "port {port} should serve {version}:\n{p}"
        );
    }
}

#[test]
fn deploy_rollback_and_history_on_real_salt_and_tomcat() {
    let Some(lab) = lab("real-salt") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let artifacts = dir.join("artifacts");
    for v in ["1.0.0", "2.0.0"] {
        build_war(dir, &artifacts, "shop", "shop", v);
    }
    let port = serve_files(artifacts.clone());

    let t = &lab.tomcat_dir;
    let mut hosts = String::new();
    for (m, p) in lab.minions.iter().zip(&lab.ports) {
        hosts.push_str(&format!(
            "[project.hosts.{m}]\nroot = \"{t}/{m}/app\"\ncatalina_base = \"{t}/{m}/base\"\n\
             start_command = [\"{t}/{m}/bin/start\"]\nstop_command = [\"{t}/{m}/bin/stop\"]\n\
             health_url = \"http://127.0.0.1:{p}/shop/health.html\"\n"
        ));
    }
    let list: Vec<String> = lab.minions.iter().map(|m| format!("\"{m}\"")).collect();
    write(
        &dir.join("templates/shop.toml"),
        &format!(
            "name = \"shop\"\n[acl.deployers]\nusers = [\"ops\"]\n[targets]\nminions = [{}]\n\
             [rollout]\nbatch = 1\n[rollback]\npolicy = \"previous\"\n\
             [health]\nretries = 3\ninterval_secs = 1\ntimeout_secs = 30\n\
             [project]\nkind = \"java-tomcat\"\ncontext = \"shop\"\n{hosts}",
            list.join(", ")
        ),
    );
    let config = dir.join("pushguide.toml");
    write(
        &config,
        &format!(
            "store = \"state/pushguide.db\"\ntemplates = \"templates\"\n\
             [user]\nname = \"ops\"\n\
             [salt]\nendpoints = [\"{}\"]\neauth = \"{}\"\nuser = \"{}\"\n\
             password_env = \"PUSHGUIDE_SALT_PASSWORD\"\njob_timeout = 120\n\
             step_jobs = false\n\
             [ci]\ntype = \"directory\"\npath = \"artifacts\"\nurl_base = \"http://127.0.0.1:{port}/\"\n",
            lab.url, lab.eauth, lab.user
        ),
    );

    // call by call here (one salt job per step, no module needed); the java kind's real Tomcat
    // test runs the same releases as jobs of steps
    let r = run(&config, &["versions", "shop", "--json"], &[]);
    assert_eq!(r.code, 0);
    assert_eq!(r.json()["versions"], serde_json::json!(["2.0.0", "1.0.0"]));

    let r = run(&config, &["deploy", "shop", "1.0.0", "--json"], &[]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert_eq!(r.json()["outcome"], "succeeded");
    assert_pages(&lab, "1.0.0");

    let r = run(&config, &["deploy", "shop", "2.0.0"], &[]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert!(r.stdout.contains("succeeded"), "{}", r.stdout);
    assert_pages(&lab, "2.0.0");

    let r = run(&config, &["rollback", "shop", "--json"], &[]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    let d = r.json();
    assert_eq!(d["outcome"], "rolled-back");
    for h in d["hosts"].as_array().unwrap() {
        assert_eq!(h["rolled_back_to"], "1.0.0", "{d}");
    }
    assert_pages(&lab, "1.0.0");

    let r = run(&config, &["history", "shop", "--json"], &[]);
    assert_eq!(r.code, 0);
    let h = r.json();
    let versions: Vec<&str> = h
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, ["previous", "2.0.0", "1.0.0"], "{h}");
    let rollback_id = h[0]["id"].as_str().unwrap().to_owned();

    let r = run(&config, &["show", "shop", "--json"], &[]);
    for host in r.json()["hosts"].as_array().unwrap() {
        assert_eq!(host["version"], "1.0.0");
        assert_eq!(host["state"], "running");
        // rolled back from 2.0.0: the release rolled back from is never a target, and nothing older
        // than 1.0.0 ran here
        assert_eq!(host["previous"], serde_json::Value::Null);
    }
    let r = run(&config, &["log", &rollback_id, "--json"], &[]);
    assert_eq!(r.code, 0);
    assert!(r.json()["calls"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["jid"].is_string()));
}
