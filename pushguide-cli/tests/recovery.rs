//! Recovery after an interrupted deployment (a real `pushguide deploy` killed with SIGKILL during a
//! slow batch), `rollback --deployment`, and statistics (rollbacks as their own series, a UTC offset,
//! view permissions), through the real binary against the fake salt-api.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use pushguide_core::Outcome;
use pushguide_store::SqliteStore;
use serde_json::{json, Value};
use support::lab::{shop_template, Lab, ENV, PASSWORD};
use support::{run, write};

const HOSTS: [&str; 4] = ["web-01", "web-02", "web-03", "web-04"];

/// Another template alice may deploy.
const BLOG: &str = r#"
name = "blog"
[acl.deployers]
groups = ["ops"]
[targets]
minions = ["web-01"]
[project]
kind = "java-tomcat"
context = "blog"
root = "/srv/blog"
catalina_base = "/var/lib/tomcat10"
service = "tomcat10"
"#;

impl Lab {
    fn new() -> Lab {
        // archive.unzip answers with a long list of files (a log line longer than 120 characters)
        let files: Vec<String> = (0..40)
            .map(|i| format!("WEB-INF/lib/lib-{i:02}.jar"))
            .collect();
        Lab::builder()
            .latency(Duration::from_millis(2))
            .hosts(&HOSTS)
            .unzipped(json!(files))
            .template("shop", &shop_template(&HOSTS, false, true))
            .template("blog", BLOG)
            .start()
    }

    fn deploy(&self, version: &str, hosts: Option<&str>) -> Value {
        self.serving(version);
        let mut args = vec!["deploy", "shop", version, "--json"];
        if let Some(h) = hosts {
            args.extend(["--hosts", h]);
        }
        let r = self.run(&args);
        assert_eq!(r.code, 0, "{}", r.stdout);
        self.on_disk(version);
        r.json()
    }

    /// The version each host runs, from `show`.
    fn versions(&self) -> Vec<(String, Option<String>)> {
        let r = self.run(&["show", "shop", "--json"]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        r.json()["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                (
                    h["host"].as_str().unwrap().to_owned(),
                    h["version"].as_str().map(str::to_owned),
                )
            })
            .collect()
    }
}

impl Lab {
    /// `pushguide deploy shop VERSION --json` as a process of its own, output discarded.
    fn spawn_deploy(&self, version: &str) -> std::process::Child {
        std::process::Command::new(support::BIN)
            .arg("--config")
            .arg(&self.ops)
            .args(["deploy", "shop", version, "--json"])
            .env("PG_CLI_TEST_PASSWORD", PASSWORD)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    }

    /// `recover --json`'s row of deployment `id`, once its dead process's liveness has expired
    /// (the store's lease TTL, 30 s).
    fn recovered(&self, id: &str) -> Value {
        let begun = Instant::now();
        loop {
            let r = self.run(&["recover", "--json"]);
            assert_eq!(r.code, 0, "{}", r.stdout);
            if let Some(row) = r.json().as_array().unwrap().iter().find(|d| d["id"] == id) {
                return row.clone();
            }
            assert!(
                begun.elapsed() < Duration::from_secs(90),
                "never marked: {}",
                r.stdout
            );
            std::thread::sleep(Duration::from_secs(2));
        }
    }
}

fn host<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["host"] == name)
        .unwrap_or_else(|| panic!("no host {name} in {v}"))
}

fn versions(list: &[(&str, Option<&str>)]) -> Vec<(String, Option<String>)> {
    list.iter()
        .map(|(h, v)| (h.to_string(), v.map(str::to_owned)))
        .collect()
}

/// Steps as one job per batch (the default): a deployment of 2.0.0 is killed (SIGKILL) while its
/// second batch's job is in flight. Nothing of that job came back, yet the job may have run: `recover`
/// lists web-02 as touched (its batch started, "one already sent may have run"), and
/// `rollback --deployment` brings web-01 and web-02 back to 1.0.0 and leaves web-03 and web-04 alone.
#[test]
fn a_kill_while_a_batch_job_is_in_flight_is_recovered_as_touched() {
    let lab = Lab::new();
    lab.deploy("1.0.0", Some("web-01,web-02,web-03"));
    lab.deploy("3.0.0", Some("web-03"));
    lab.serving("2.0.0");
    lab.fake()
        .faults()
        .extra_latency(Duration::from_millis(400));
    let mut child = lab.spawn_deploy("2.0.0");
    let store = lab.store();
    let begun = Instant::now();
    // web-02's batch (the second) has started: its job is on its way (400 ms per request)
    let id = loop {
        assert!(
            begun.elapsed() < Duration::from_secs(60),
            "never reached batch 2"
        );
        if let Some(id) = store.deployments("shop", 1).unwrap().first() {
            let started = store
                .host_results(id)
                .unwrap()
                .iter()
                .any(|h| h.host == "web-02" && h.batch == Some(1) && h.status == "interrupted");
            if store.deployment(id).unwrap().unwrap().version == "2.0.0" && started {
                break id.clone();
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    lab.fake().faults().extra_latency(Duration::ZERO);
    // nothing of batch 2's job was recorded: it was killed in flight
    assert!(
        !store.calls(&id).unwrap().iter().any(|c| c.batch == Some(1)),
        "batch 2's job returned before the kill"
    );
    let rec = lab.recovered(&id);
    assert_eq!(host(&rec, "web-01")["status"], "succeeded", "{rec}");
    let w2 = host(&rec, "web-02");
    assert_eq!(w2["status"], "interrupted", "{rec}");
    assert_eq!(w2["touched"], true, "{rec}");
    assert_eq!(
        w2["done"],
        "batch started, no call returned yet (one already sent may have run)"
    );
    for h in ["web-03", "web-04"] {
        assert_eq!(host(&rec, h)["touched"], false, "{rec}");
    }
    let r = lab.run(&["rollback", "shop", "--deployment", &id, "--json"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert_eq!(r.json()["outcome"], "rolled-back");
    assert_eq!(
        lab.versions(),
        versions(&[
            ("web-01", Some("1.0.0")),
            ("web-02", Some("1.0.0")),
            ("web-03", Some("3.0.0")),
            ("web-04", None)
        ])
    );
}

/// Issue #10 item 5: a deployment of 2.0.0 is killed (SIGKILL) while its second batch runs. `recover`
/// lists every target host with what was done to it and recommends `rollback --deployment`, which
/// rolls back exactly the two hosts the deployment touched: web-03 (never reached, 3.0.0) and web-04
/// (never reached, nothing recorded) are left alone. It used to roll every host back: web-03 went
/// 3.0.0 → 1.0.0 and web-04 made the rollback `rollback-failed` (exit 5).
#[test]
fn rollback_of_an_interrupted_deployment_touches_only_the_hosts_it_reached() {
    let lab = Lab::new();
    lab.deploy("1.0.0", Some("web-01,web-02,web-03"));
    lab.deploy("3.0.0", Some("web-03"));
    assert_eq!(
        lab.versions(),
        versions(&[
            ("web-01", Some("1.0.0")),
            ("web-02", Some("1.0.0")),
            ("web-03", Some("3.0.0")),
            ("web-04", None)
        ])
    );

    // deploy 2.0.0 slowly, call by call (a batch sent as one job returns its stages together, so a
    // kill could not land between them); kill it once web-02's batch is in its deploy stage
    let config = std::fs::read_to_string(&lab.ops).unwrap();
    std::fs::write(
        &lab.ops,
        config.replace(
            "job_timeout = 30\n",
            "job_timeout = 30\nstep_jobs = false\n",
        ),
    )
    .unwrap();
    assert!(std::fs::read_to_string(&lab.ops)
        .unwrap()
        .contains("step_jobs = false"));
    lab.serving("2.0.0");
    lab.fake()
        .faults()
        .extra_latency(Duration::from_millis(150));
    let mut child = lab.spawn_deploy("2.0.0");
    let store = lab.store();
    let begun = Instant::now();
    let id = loop {
        assert!(
            begun.elapsed() < Duration::from_secs(60),
            "never reached batch 2"
        );
        let newest = store.deployments("shop", 1).unwrap();
        if let Some(id) = newest.first() {
            let rec = store.deployment(id).unwrap().unwrap();
            let in_batch_2 = store
                .calls(id)
                .unwrap()
                .iter()
                .any(|c| c.batch == Some(1) && c.stage == "deploy");
            if rec.version == "2.0.0" && in_batch_2 {
                break id.clone();
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    // still running: its process is alive, so --deployment is refused (usage, 64)
    let r = lab.run(&["rollback", "shop", "--deployment", &id, "--json"]);
    assert_eq!(r.code, 64, "{}", r.stdout);
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("still running"),
        "{}",
        r.stdout
    );
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    lab.fake().faults().extra_latency(Duration::ZERO);

    // recover marks it once the dead process's liveness expires (the store's lease TTL, 30 s)
    let rec = lab.recovered(&id);
    assert_eq!(rec["template"], "shop");
    assert_eq!(rec["version"], "2.0.0");
    assert_eq!(rec["planned_hosts"], 4);
    assert_eq!(rec["hosts"].as_array().unwrap().len(), 4, "{rec}");
    let w1 = host(&rec, "web-01");
    assert_eq!(w1["status"], "succeeded");
    assert_eq!(w1["touched"], true);
    assert_eq!(w1["done"], "batch finished: runs 2.0.0");
    let w2 = host(&rec, "web-02");
    assert_eq!(w2["status"], "interrupted", "{rec}");
    assert_eq!(w2["touched"], true);
    assert_eq!(w2["stages_done"], json!(["pre-deploy"]), "{rec}");
    let done = w2["done"].as_str().unwrap();
    // pre-deploy stopped the service; deploy was under way; post-deploy (which starts it) never ran
    assert!(done.starts_with("pre-deploy done ("), "{done}");
    assert!(done.contains("service.stop"), "{done}");
    assert!(done.contains("; deploy interrupted"), "{done}");
    assert!(done.ends_with("; post-deploy not run"), "{done}");
    for h in ["web-03", "web-04"] {
        let x = host(&rec, h);
        assert_eq!(
            (&x["status"], &x["touched"], &x["done"]),
            (&json!("not-reached"), &json!(false), &json!("not reached")),
            "{rec}"
        );
    }
    let command = format!("pushguide rollback shop --deployment {id}");
    assert_eq!(rec["rollback_command"], command.as_str());
    assert_eq!(rec["resume_command"], "pushguide deploy shop 2.0.0");
    let r = lab.run(&["recover"]);
    assert!(r.stdout.contains(&command), "{}", r.stdout);
    assert!(r.stdout.contains("not reached"), "{}", r.stdout);
    assert!(
        r.stdout.contains("batch finished: runs 2.0.0"),
        "{}",
        r.stdout
    );
    // someone who may not view the template sees nothing of it
    let eve = lab.user_config("eve", &[]);
    let r = run(&eve, &["recover", "--json"], ENV);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert_eq!(r.json(), json!([]));

    // refused: another template's deployment id, and --to with --deployment
    let r = lab.run(&["rollback", "blog", "--deployment", &id, "--json"]);
    assert_eq!(r.code, 64, "{}", r.stdout);
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("of template `shop`"),
        "{}",
        r.stdout
    );
    let r = lab.run(&["rollback", "shop", "--deployment", &id, "--to", "1.0.0"]);
    assert_eq!(r.code, 64, "{}", r.stderr);
    let r = lab.run(&["rollback", "shop", "--deployment", "shop-nope-1", "--json"]);
    assert_eq!(r.code, 67, "{}", r.stdout);

    // the recommended command: only web-01 and web-02, each back to what it ran before 2.0.0
    lab.fleet.clear_requests();
    let r = lab.run(&["rollback", "shop", "--deployment", &id, "--json"]);
    let reqs = lab.fleet.step_requests();
    for untouched in ["web-03", "web-04"] {
        assert!(
            reqs.iter()
                .all(|q| q.targets.iter().all(|t| t.as_str() != untouched)),
            "a request reached {untouched}: {:?}",
            reqs.iter()
                .filter(|q| q.targets.iter().any(|t| t.as_str() == untouched))
                .map(|q| q.fun.clone())
                .collect::<Vec<_>>()
        );
    }
    let s = r.json();
    let mut in_summary: Vec<&str> = s["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["host"].as_str().unwrap())
        .collect();
    in_summary.sort_unstable();
    assert_eq!(in_summary, ["web-01", "web-02"], "{s}");
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert_eq!(s["mode"], "rollback");
    assert_eq!(s["outcome"], "rolled-back");
    assert_eq!(host(&s, "web-01")["rolled_back_to"], "1.0.0", "{s}");
    assert_eq!(
        lab.versions(),
        versions(&[
            ("web-01", Some("1.0.0")),
            ("web-02", Some("1.0.0")),
            ("web-03", Some("3.0.0")),
            ("web-04", None)
        ])
    );
    // undone once: the rollback came after it, so undoing it again (or any older deployment) is
    // refused rather than undoing the rollback's work
    let r = lab.run(&["rollback", "shop", "--deployment", &id, "--json"]);
    assert_eq!(r.code, 64, "{}", r.stdout);
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("came after it"),
        "{}",
        r.stdout
    );
}

/// Issue #10 item 6 and items 18, 20 (parts): rollbacks are their own series in `stats` (they were
/// counted as failed deployments); hours at a chosen UTC offset (`--tz`, `[stats] tz`); `stats`
/// without a template counts only templates the user may view; log lines are no longer cut at 120
/// characters.
#[test]
fn stats_count_rollbacks_apart_at_a_utc_offset_for_viewable_templates() {
    let lab = Lab::new();
    lab.deploy("1.0.0", None);
    let second = lab.deploy("2.0.0", None);
    let r = lab.run(&["rollback", "shop", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    // 3.0.0 fails its health check on web-02: rolled back, exit 4
    lab.serving("3.0.0");
    lab.fleet.add_rule(
        "web-02",
        "http.query",
        Outcome::ok(json!({ "status": 503 })),
        None,
    );
    let r = lab.run(&["deploy", "shop", "3.0.0", "--json"]);
    assert_eq!(r.code, 4, "{}", r.stdout);
    lab.fleet.add_rule(
        "web-02",
        "http.query",
        Outcome::ok(json!({ "status": 200 })),
        None,
    );
    let r = lab.run(&["rollback", "shop", "--to", "1.0.0", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stdout);

    // 3 releases (2 succeeded) and 2 rollbacks (both rolled every host back)
    let r = lab.run(&["stats", "shop", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    let utc = r.json();
    assert_eq!(
        (&utc["count"], &utc["succeeded"]),
        (&json!(3), &json!(2)),
        "{utc}"
    );
    assert_eq!(utc["success_rate"].as_f64().unwrap(), 2.0 / 3.0);
    assert_eq!(utc["rollbacks"]["count"], 2, "{utc}");
    assert_eq!(utc["rollbacks"]["succeeded"], 2);
    assert_eq!(utc["rollbacks"]["success_rate"], 1.0);
    assert!(utc["rollbacks"]["p50_ms"].as_u64().is_some());
    assert_eq!(utc["tz"], "UTC");
    let hours = |v: &Value| -> Vec<(u64, u64)> {
        v["by_hour"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["at"].as_u64().unwrap(), r["count"].as_u64().unwrap()))
            .collect()
    };
    assert_eq!(hours(&utc).iter().map(|h| h.1).sum::<u64>(), 3);
    let r = lab.run(&["stats", "shop"]);
    assert!(
        r.stdout.contains("deployments 3  succeeded 2  failed 1"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("rollbacks 2  rolled back 2  failed 0"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains(" UTC: "), "{}", r.stdout);

    // --tz: the same hours two hours later; a zone name is a usage error
    let r = lab.run(&["stats", "shop", "--tz", "+02:00", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    let plus2 = r.json();
    assert_eq!(plus2["tz"], "+02:00");
    let shifted: Vec<(u64, u64)> = hours(&utc)
        .iter()
        .map(|(h, n)| ((h + 2) % 24, *n))
        .collect();
    let mut got = hours(&plus2);
    got.sort_unstable();
    let mut want = shifted;
    want.sort_unstable();
    assert_eq!(got, want);
    let r = lab.run(&["stats", "--tz", "-05:30"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains(" -05:30: "), "{}", r.stdout);
    let r = lab.run(&["stats", "--tz", "Europe/Berlin", "--json"]);
    assert_eq!(r.code, 64, "{}", r.stdout);
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Europe/Berlin"));
    // [stats] tz in the config is the default
    let text = std::fs::read_to_string(&lab.ops).unwrap();
    let with_tz = lab.dir.join("with-tz.toml");
    write(&with_tz, &format!("{text}[stats]\ntz = \"+02:00\"\n"));
    let r = run(&with_tz, &["stats", "shop", "--json"], ENV);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert_eq!(r.json()["tz"], "+02:00");
    assert_eq!(r.json()["by_hour"], plus2["by_hour"]);
    let bad = lab.dir.join("bad-tz.toml");
    write(&bad, &format!("{text}[stats]\ntz = \"CET\"\n"));
    let r = run(&bad, &["stats"], ENV);
    assert_eq!(r.code, 64, "{}", r.stderr);
    assert!(
        r.stderr.contains("stats.tz") && r.stderr.contains("CET"),
        "{}",
        r.stderr
    );

    // without a template: only what the user may view (eve may view nothing)
    let r = lab.run(&["stats", "--json"]);
    assert_eq!(r.json()["count"], 3);
    assert_eq!(r.json()["templates"], json!(["blog", "shop"]));
    let eve = lab.user_config("eve", &[]);
    let r = run(&eve, &["stats", "--json"], ENV);
    assert_eq!(r.code, 0, "{}", r.stdout);
    let e = r.json();
    assert_eq!(
        (&e["count"], &e["rollbacks"]["count"]),
        (&json!(0), &json!(0)),
        "{e}"
    );
    assert_eq!(e["templates"], json!([]));
    assert_eq!(e["failing_hosts"], json!([]));
    let r = run(&eve, &["stats", "shop"], ENV);
    assert_eq!(r.code, 65, "{}", r.stderr);

    // log: the unzip call's whole answer is kept (it was cut at 120 characters)
    let id = second["id"].as_str().unwrap();
    let r = lab.run(&["log", id, "--json"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    let l = r.json();
    let line = host(&l, "web-01")["log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_owned())
        .find(|x| x.contains("archive.unzip"))
        .unwrap();
    assert!(line.len() > 400, "{line}");
    assert!(line.contains("WEB-INF/lib/lib-39.jar"), "{line}");
    assert!(!line.contains('…'), "{line}");
}

/// Journal rows of a process that died, written through the store API (its owner's liveness lasts
/// 200 ms): deployment `id` of shop 2.0.0 (a dry run, a rollback request) with `events` after its
/// start.
fn dead_deployment(
    lab: &Lab,
    id: &str,
    dry_run: bool,
    rollback: bool,
    events: Vec<pushguide_core::EventKind>,
) {
    use pushguide_core::{Event, EventKind};
    let opts = pushguide_store::StoreOptions::default().lease_ttl(Duration::from_millis(200));
    let dead = SqliteStore::open_with(lab.dir.join("state/pushguide.db"), opts).unwrap();
    let at = std::time::SystemTime::now();
    let mut all = vec![EventKind::DeploymentStarted {
        template: "shop".into(),
        version: "2.0.0".into(),
        user: "alice".into(),
        dry_run,
        rollback,
    }];
    all.extend(events);
    let events: Vec<Event> = all
        .into_iter()
        .map(|kind| Event {
            at,
            deployment: Arc::from(id),
            kind,
        })
        .collect();
    dead.append_events(&events).unwrap();
    dead.stop_heartbeat();
    std::mem::forget(dead); // like a killed process: no clean close
}

/// A deployment to three of shop's four hosts died: web-01 failed at deploy, web-02's batch had just
/// started. `recover` says what happened to each, and that one planned host was not reached without
/// guessing which (the template has four). `rollback --deployment` refuses what it cannot undo.
#[test]
fn recover_from_journal_rows_and_what_rollback_deployment_refuses() {
    use pushguide_core::{EventKind, MinionId, Stage};
    let lab = Lab::new();
    std::fs::create_dir_all(lab.dir.join("state")).unwrap();
    let m = |h: &str| MinionId::new(h).unwrap();
    let batch_stage = |stage, end: bool| {
        if end {
            EventKind::StageFinished {
                batch: Some(0),
                stage,
                ok: 1,
                failed: 0,
            }
        } else {
            EventKind::StageStarted {
                batch: Some(0),
                stage,
                hosts: 1,
            }
        }
    };
    dead_deployment(
        &lab,
        "shop-subset-1",
        false,
        false,
        vec![
            EventKind::Prepared {
                hosts: 3,
                batches: 3,
                excluded: vec![],
                plan: vec![],
                left_out: vec![],
            },
            EventKind::BatchStarted {
                batch: 0,
                hosts: 1,
                minions: vec![m("web-01")],
            },
            batch_stage(Stage::PreDeploy, false),
            batch_stage(Stage::PreDeploy, true),
            batch_stage(Stage::Deploy, false),
            EventKind::HostFailed {
                host: m("web-01"),
                stage: Stage::Deploy,
                fun: Some("file.symlink".into()),
                reason: "disk full".into(),
            },
            EventKind::StageFinished {
                batch: Some(0),
                stage: Stage::Deploy,
                ok: 0,
                failed: 1,
            },
            EventKind::BatchFinished {
                batch: 0,
                ok: 0,
                failed: 1,
            },
            EventKind::BatchStarted {
                batch: 1,
                hosts: 1,
                minions: vec![m("web-02")],
            },
        ],
    );
    // a dry run, a rollback, and one that died in prepare (no batch started)
    dead_deployment(&lab, "shop-dry-1", true, false, vec![]);
    dead_deployment(&lab, "shop-rollback-1", false, true, vec![]);
    dead_deployment(&lab, "shop-prepare-1", false, false, vec![]);
    std::thread::sleep(Duration::from_millis(400));

    let r = lab.run(&["recover", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    let rows = r.json();
    assert_eq!(rows.as_array().unwrap().len(), 4, "{rows}");
    let d = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == "shop-subset-1")
        .unwrap();
    assert_eq!(d["newly_marked"], true);
    assert_eq!(
        host(d, "web-01")["done"],
        "pre-deploy done; failed at deploy (file.symlink): disk full"
    );
    assert_eq!(
        host(d, "web-02")["done"],
        "batch started, no call returned yet (one already sent may have run)"
    );
    assert_eq!(d["hosts"].as_array().unwrap().len(), 2, "{d}");
    assert_eq!(d["unnamed_not_reached"], 1);
    assert_eq!(
        d["rollback_command"],
        "pushguide rollback shop --deployment shop-subset-1"
    );
    let r = lab.run(&["recover"]);
    assert!(
        r.stdout
            .contains("(1 more host not reached; their names were not recorded)"),
        "{}",
        r.stdout
    );
    let by_id = |id: &str| {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|d| d["id"] == id)
            .unwrap()
            .clone()
    };
    // nothing to roll back, no command offered
    for id in ["shop-dry-1", "shop-rollback-1", "shop-prepare-1"] {
        assert_eq!(by_id(id)["rollback_command"], Value::Null, "{id}");
    }
    assert_eq!(by_id("shop-rollback-1")["resume_command"], Value::Null);
    assert_eq!(by_id("shop-rollback-1")["mode"], "rollback");
    // died in prepare: every host of the template not reached
    let p = by_id("shop-prepare-1");
    assert_eq!(p["hosts"].as_array().unwrap().len(), 4, "{p}");
    assert!(p["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .all(|h| h["done"] == "not reached"));

    for (id, why) in [
        ("shop-dry-1", "dry run"),
        ("shop-rollback-1", "itself a rollback"),
        ("shop-prepare-1", "touched no host"),
    ] {
        let r = lab.run(&["rollback", "shop", "--deployment", id, "--json"]);
        assert_eq!(r.code, 64, "{id}: {}", r.stdout);
        let msg = r.json()["error"]["message"].as_str().unwrap().to_owned();
        assert!(msg.contains(id) && msg.contains(why), "{msg}");
    }
    // a viewer may not roll back
    let dev = lab.user_config("bob", &["devs"]);
    let r = run(
        &dev,
        &["rollback", "shop", "--deployment", "shop-subset-1"],
        ENV,
    );
    assert_eq!(r.code, 65, "{}", r.stderr);
    // but sees the recovery list
    let r = run(&dev, &["recover", "--json"], ENV);
    assert_eq!(r.json().as_array().unwrap().len(), 4);
}

/// An outcome name this pushguide does not know in the store (a newer pushguide wrote it, or the
/// file was edited): `log` shows the deployment as recorded, with exit code 70 and a message naming
/// the outcome; `watch` prints the same and exits 70. No panic, no crash.
#[test]
fn an_unknown_recorded_outcome_is_named_and_exits_70() {
    let lab = Lab::new();
    let id = lab.deploy("1.0.0", Some("web-01"))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let db = rusqlite::Connection::open(lab.dir.join("state/pushguide.db")).unwrap();
    let changed = db
        .execute(
            "UPDATE deployments SET outcome = 'half-exploded' WHERE id = ?1",
            [&id],
        )
        .unwrap();
    assert_eq!(changed, 1);
    drop(db);

    let r = lab.run(&["log", &id, "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let log = r.json();
    assert_eq!(log["deployment"]["outcome"], "half-exploded");
    assert_eq!(log["exit_code"], 70);
    let why = log["outcome_error"].as_str().unwrap();
    assert!(
        why.contains("half-exploded") && why.contains("does not know"),
        "{why}"
    );

    let r = lab.run(&["watch", &id]);
    assert_eq!(r.code, 70, "{}", r.stderr);
    assert!(
        r.stderr.contains("warning:") && r.stderr.contains("half-exploded"),
        "{}",
        r.stderr
    );
    // a known outcome has no `outcome_error` key at all
    let ok = lab.deploy("2.0.0", Some("web-01"));
    let r = lab.run(&["log", ok["id"].as_str().unwrap(), "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["exit_code"], 0);
    assert!(r.json().get("outcome_error").is_none(), "{}", r.stdout);
}
