//! Publishing and rolling back in a real browser against REAL things: `pushguide serve` over the
//! salt lab (`scripts/salt-lab up`) and one real Tomcat 10 per minion (`scripts/tomcat-lab up`).
//! A deployer logs in, publishes 1.0.0 then 1.1.0 from the template's page, watches each deployment
//! turn green live, and each Tomcat serves the new version; the page's rollback form brings 1.0.0
//! back; the history lists the three deployments.
//!
//! The WARs are built with the JDK's `jar` into a directory CI source that this test serves to the
//! minions over HTTP. The template (`browserlab`, its own context and release roots in a temp dir)
//! touches nothing of other tests on the minions but Tomcat's restarts; its context link in each
//! `webapps` is removed at the end.
//!
//! Needs `PUSHGUIDE_SALT_*` and `PUSHGUIDE_TOMCAT_*`; without them it skips with a message, unless
//! `PUSHGUIDE_REQUIRE_SALT=1`, where it fails naming what is missing. Without a browser it skips,
//! unless `PUSHGUIDE_REQUIRE_BROWSER=1` (see `support.rs`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::Locator;

use crate::support::{free_port, Browser, BIN};
use crate::tomcat::{build_war, lab, page, serve_files, write, Lab};

/// The template, its Tomcat context and its WAR's name.
const APP: &str = "browserlab";
/// How long a deployment on the real lab may take to finish (two Tomcat restarts, one per batch).
const LIVE: Duration = Duration::from_secs(300);
/// How long Tomcat may take to serve what a finished deployment switched in (other tests on the
/// same lab restart the same Tomcats).
const SERVED: Duration = Duration::from_secs(90);
const DEPLOYER_PW: &str = "dora-pw-real-lab";

async fn assert_served(lab: &Lab, version: &str) {
    let want = format!("{APP} version {version}");
    for port in &lab.ports {
        let begun = Instant::now();
        loop {
            let p = page(port, APP);
            if p.starts_with("HTTP/1.1 200") && p.contains(&want) {
                break;
            }
            assert!(
                begun.elapsed() < SERVED,
                "Tomcat on port {port} should serve {version}:\n{p}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// `pushguide serve` on the test's config; killed on drop.
struct Service {
    child: Child,
    log: PathBuf,
}

impl Service {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The app's context link in each Tomcat's `webapps`, removed on drop when it points into this
/// test's temp dir (the release roots there go with it).
struct ContextLinks {
    links: Vec<PathBuf>,
    ours: PathBuf,
}

impl Drop for ContextLinks {
    fn drop(&mut self) {
        for link in &self.links {
            if std::fs::read_link(link).is_ok_and(|to| to.starts_with(&self.ours)) {
                let _ = std::fs::remove_file(link);
            }
        }
    }
}

/// Runs `pushguide --config <config> <args>`; panics with its output unless it exits 0.
fn pushguide(config: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let out = Command::new(BIN)
        .arg("--config")
        .arg(config)
        .args(args)
        .envs(env.iter().copied())
        .env_remove("PUSHGUIDE_CONFIG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "pushguide {}: {}\n{stdout}\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Publishes `version` from the template's page and watches its deployment page until it
/// succeeds: the page is not reloaded meanwhile (the grid and the outcome come over server-sent
/// events), and every stage of every host ends `ok`.
async fn publish_and_watch(b: &Browser, service: &Service, version: &str, hosts: usize) {
    b.goto(&format!("/t/{APP}")).await;
    b.fill("#publish input[name=version]", version).await;
    b.click_button("Publish").await;
    // the request's page reloads until the deployment starts, then shows it
    b.wait_for_within("#hosts", LIVE).await;
    assert!(
        b.path().await.starts_with("/deployments/"),
        "{}",
        b.path().await
    );
    // a mark in this page's window: a reload would lose it
    b.client()
        .execute("window.pushguideLiveMark = 'kept'; return 1", vec![])
        .await
        .unwrap();
    assert!(
        !b.exists("#status .state-succeeded").await,
        "{version}: over before its page opened, nothing to watch live"
    );
    b.screenshot(&format!("{version}-running")).await;
    // the state shown (`#status strong`), updated in place until the deployment ends
    let begun = Instant::now();
    let mut midway = None;
    let state = loop {
        let state = match b.client().find(Locator::Css("#status strong")).await {
            Ok(e) => e.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        // `paused` waits for a decision: for this test, an end too
        if !["", "preparing", "running", "stopping", "rolling back"].contains(&state.as_str()) {
            break state;
        }
        // part of the fleet done, the rest not yet: the grid caught mid-way
        if state == "running" && midway.is_none() {
            let rows = b.texts("#hosts tr[id^='h-']").await;
            if rows.iter().any(|r| r.contains(" ok")) && rows.iter().any(|r| !r.contains(" ok")) {
                b.screenshot(&format!("{version}-midway")).await;
                midway = Some(rows);
            }
        }
        if begun.elapsed() > LIVE {
            let shot = b.screenshot("timeout").await;
            panic!(
                "{version} did not end within {LIVE:?} (screenshot {}):\n{}\n{}",
                shot.display(),
                b.text("main").await,
                service.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        state,
        "succeeded",
        "{version}:\n{}\n{}",
        b.text("main").await,
        service.log()
    );
    let mark = b
        .client()
        .execute("return window.pushguideLiveMark || null", vec![])
        .await
        .unwrap();
    assert_eq!(mark, "kept", "the deployment page was reloaded");
    assert!(
        midway.is_some(),
        "{version}: the grid never showed one batch done and the other not"
    );
    // pre-deploy, deploy and post-deploy of each host (the rollback column never ran)
    for (column, stage) in [(3, "pre-deploy"), (4, "deploy"), (5, "post-deploy")] {
        let cells = b
            .texts(&format!("#hosts tr[id^='h-'] td:nth-child({column})"))
            .await;
        assert!(
            cells.len() == hosts && cells.iter().all(|c| c == "ok"),
            "{version}: {stage} of every host ok: {cells:?}\n{}",
            b.text("#hosts").await
        );
    }
    assert_eq!(b.texts("#hosts tr[id^='h-']").await.len(), hosts);
    b.screenshot(&format!("{version}-succeeded")).await;
}

/// The version each host runs, from the publish page's hosts table.
async fn running_versions(b: &Browser) -> Vec<String> {
    b.texts("main table:nth-of-type(2) tbody tr td:nth-child(2)")
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployer_publishes_and_rolls_back_in_the_browser_and_tomcat_serves_each_version() {
    let begun = Instant::now();
    let Some(lab) = lab("real-lab") else { return };
    // the grid is watched with one batch done and the next not yet
    assert!(
        lab.minions.len() >= 2,
        "the lab has {} minion(s); this test needs two",
        lab.minions.len()
    );
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let Some(b) = Browser::start_at("real-lab", &base).await else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let artifacts = dir.join("artifacts");
    for v in ["1.0.0", "1.1.0"] {
        build_war(dir, &artifacts, APP, APP, v);
    }
    let artifact_port = serve_files(artifacts.clone());

    let t = &lab.tomcat_dir;
    let releases = dir.join("releases");
    let _links = ContextLinks {
        links: lab
            .minions
            .iter()
            .map(|m| Path::new(t).join(m).join("base/webapps").join(APP))
            .collect(),
        ours: releases.clone(),
    };
    let mut hosts = String::new();
    for (m, p) in lab.minions.iter().zip(&lab.ports) {
        hosts.push_str(&format!(
            "[project.hosts.{m}]\nroot = \"{}\"\ncatalina_base = \"{t}/{m}/base\"\n\
             start_command = [\"{t}/{m}/bin/start\"]\nstop_command = [\"{t}/{m}/bin/stop\"]\n\
             health_url = \"http://127.0.0.1:{p}/{APP}/health.html\"\n",
            releases.join(m).display()
        ));
    }
    let quoted = |items: &[String]| {
        items
            .iter()
            .map(|i| format!("\"{i}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    write(
        &dir.join(format!("templates/{APP}.toml")),
        &format!(
            "name = \"{APP}\"\ndescription = \"Real salt lab and Tomcat, from a browser\"\n\
             [acl.viewers]\ngroups = [\"devs\"]\n[acl.deployers]\ngroups = [\"ops\"]\n\
             [targets]\nminions = [{}]\n\
             [rollout]\nbatch = 1\n[rollback]\npolicy = \"previous\"\n\
             [health]\nretries = 30\ninterval_secs = 1\ntimeout_secs = 10\n\
             [project]\nkind = \"java-tomcat\"\ncontext = \"{APP}\"\n{hosts}",
            quoted(&lab.minions)
        ),
    );
    let config = dir.join("pushguide.toml");
    write(
        &config,
        &format!(
            "store = \"state/pushguide.db\"\ntemplates = \"templates\"\n\
             [user]\nname = \"real-lab-test\"\n\
             [salt]\nendpoints = [{}]\neauth = \"{}\"\nuser = \"{}\"\n\
             password_env = \"PUSHGUIDE_SALT_PASSWORD\"\njob_timeout = 180\n\
             [ci]\ntype = \"directory\"\npath = \"artifacts\"\n\
             url_base = \"http://127.0.0.1:{artifact_port}/\"\n\
             [server]\nlisten = \"127.0.0.1:{port}\"\nsession_idle_secs = 600\n\
             session_max_secs = 3600\nadmin_groups = [\"admins\"]\n",
            quoted(&lab.endpoints),
            lab.eauth,
            lab.user
        ),
    );
    // each host's steps run as one salt job of the pushguide module (the default)
    let installed = pushguide(&config, &["--json", "install-module"], &[]);
    let installed: serde_json::Value = serde_json::from_str(&installed).unwrap();
    assert_eq!(installed["all_installed"], true, "{installed}");
    pushguide(
        &config,
        &[
            "user",
            "add",
            "dora",
            "--groups",
            "ops",
            "--password-env",
            "PG_REAL_LAB_PW",
        ],
        &[("PG_REAL_LAB_PW", DEPLOYER_PW)],
    );

    let log = dir.join("serve.log");
    let mut service = Service {
        child: Command::new(BIN)
            .arg("--config")
            .arg(&config)
            .arg("serve")
            .env("PUSHGUIDE_LOG", "info")
            .env_remove("PUSHGUIDE_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
        log,
    };
    let client = reqwest::Client::new();
    let started = Instant::now();
    while !matches!(client.get(format!("{base}/login")).send().await, Ok(r) if r.status() == 200) {
        if let Some(status) = service.child.try_wait().unwrap() {
            panic!("pushguide serve exited ({status}):\n{}", service.log());
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "pushguide serve never answered:\n{}",
            service.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    b.login("dora", DEPLOYER_PW).await;
    assert_eq!(b.path().await, "/", "{}", service.log());
    b.goto(&format!("/t/{APP}")).await;
    let mut offered = Vec::new();
    for o in b
        .client()
        .find_all(Locator::Css("#versions option"))
        .await
        .unwrap()
    {
        offered.push(o.attr("value").await.unwrap().unwrap_or_default());
    }
    assert_eq!(
        offered,
        ["1.1.0", "1.0.0"],
        "the CI source's versions, newest first"
    );

    let n = lab.minions.len();
    publish_and_watch(&b, &service, "1.0.0", n).await;
    assert_served(&lab, "1.0.0").await;
    publish_and_watch(&b, &service, "1.1.0", n).await;
    assert_served(&lab, "1.1.0").await;

    // the publish page: each host runs 1.1.0; its rollback form (empty: each host's previous)
    b.goto(&format!("/t/{APP}")).await;
    assert_eq!(running_versions(&b).await, vec!["1.1.0"; n]);
    b.click_button("Roll back").await;
    b.wait_for_within("#hosts", LIVE).await;
    b.wait_for_within("#status .state-rolled-back", LIVE).await;
    let details = b.texts("#hosts tr[id^='h-'] td:last-child").await;
    assert!(
        details.len() == n && details.iter().all(|d| d.ends_with("rolled back to 1.0.0")),
        "{details:?}"
    );
    b.screenshot("rolled-back").await;
    assert_served(&lab, "1.0.0").await;
    b.goto(&format!("/t/{APP}")).await;
    assert_eq!(running_versions(&b).await, vec!["1.0.0"; n]);

    b.goto(&format!("/history?template={APP}")).await;
    // newest first: Started, Template, Mode, Version, User, Outcome, …
    let modes = b.texts("main table tbody tr td:nth-child(3)").await;
    let outcomes = b.texts("main table tbody tr td:nth-child(6)").await;
    let users = b.texts("main table tbody tr td:nth-child(5)").await;
    let history = b.text("main table tbody").await;
    assert_eq!(modes, ["rollback", "deploy", "deploy"], "{history}");
    assert_eq!(
        outcomes,
        ["rolled-back", "succeeded", "succeeded"],
        "{history}"
    );
    assert!(users.iter().all(|u| u == "dora"), "{history}");
    let versions = b.texts("main table tbody tr td:nth-child(4)").await;
    assert_eq!(versions, ["previous", "1.1.0", "1.0.0"], "{history}");
    b.screenshot("history").await;
    b.close().await;
    eprintln!("{history}");
    eprintln!("real-lab: {:.1?} in all", begun.elapsed());
}
