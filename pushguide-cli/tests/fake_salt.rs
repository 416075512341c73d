//! End to end through the real `pushguide` binary against the fake salt-api (in this test process,
//! on loopback) with a simulated fleet answering like salt for `java-tomcat`: every command, the
//! `--json` shapes, the exit codes and the error cases.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod support;

use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::Duration;

use pushguide_core::Outcome;
use serde_json::{json, Value};
use support::lab::{shop_template, Lab, ENV, PASSWORD};
use support::{run, war, write, Run};

static SHOP: LazyLock<String> =
    LazyLock::new(|| shop_template(&["web-01", "web-02", "web-03"], true, true));

const SECRET: &str = r#"
name = "secret"
[acl.deployers]
users = ["root-only"]
[targets]
minions = ["web-01"]
[project]
kind = "java-tomcat"
context = "secret"
root = "/srv/secret"
catalina_base = "/var/lib/tomcat10"
service = "tomcat10"
"#;

impl Lab {
    fn new(latency: Duration) -> Lab {
        Lab::builder()
            .latency(latency)
            .template("shop", &SHOP)
            .template("secret", SECRET)
            .cmdb("[hosts.web-03]\nservice = \"tomcat-blue\"\n")
            .start()
    }
}

fn host_statuses(v: &Value) -> Vec<String> {
    v["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["status"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn every_command_with_json_shapes_and_exit_codes() {
    let lab = Lab::new(Duration::from_millis(5));

    // kinds: no config needed, every bundled kind
    let r = lab.run(&["kinds", "--json"]);
    assert_eq!(r.code, 0);
    let kinds: Vec<String> = r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kind"].as_str().unwrap().to_owned())
        .collect();
    for k in ["java-tomcat", "dotnet-iis", "windows-task"] {
        assert!(kinds.contains(&k.to_owned()), "{kinds:?}");
    }
    let r = lab.run(&["kinds"]);
    assert!(r.stdout.contains("java-tomcat"), "{}", r.stdout);

    // templates: only those alice may view
    let r = lab.run(&["templates", "--json"]);
    assert_eq!(r.code, 0);
    let t = r.json();
    assert_eq!(t.as_array().unwrap().len(), 1, "{t}");
    assert_eq!(t[0]["name"], "shop");
    assert_eq!(t[0]["kind"], "java-tomcat");
    assert_eq!(t[0]["may_deploy"], true);
    assert_eq!(t[0]["targets"], "web-01,web-02,web-03");

    // versions from the directory source, newest first
    let r = lab.run(&["versions", "shop", "--json"]);
    assert_eq!(r.code, 0);
    assert_eq!(r.json()["versions"], json!(["3.0.0", "2.0.0", "1.0.0"]));

    // plan: batches of one, nothing changed
    let r = lab.run(&["plan", "shop", "1.0.0", "--json"]);
    assert_eq!(r.code, 0);
    let p = r.json();
    assert_eq!(p["batches"], json!([["web-01"], ["web-02"], ["web-03"]]));
    assert_eq!(p["version"], "1.0.0");
    assert!(p["steps"].as_array().unwrap().len() >= 3);
    let r = lab.run(&["plan", "shop", "1.0.0"]);
    assert!(r.stdout.contains("Plan: shop 1.0.0"), "{}", r.stdout);

    // deploy 1.0.0: succeeded, exit 0; the artifact comes from the directory source
    lab.serving("1.0.0");
    lab.fleet.clear_requests();
    let r = lab.run(&["deploy", "shop", "1.0.0", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    let d = r.json();
    assert_eq!(d["outcome"], "succeeded");
    assert_eq!(d["exit_code"], 0);
    assert_eq!(d["mode"], "deploy");
    assert_eq!(d["user"], "alice");
    assert_eq!(host_statuses(&d), ["succeeded"; 3]);
    let first_id = d["id"].as_str().unwrap().to_owned();
    let reqs = lab.fleet.step_requests();
    let get = reqs.iter().find(|r| r.fun == "cp.get_url").unwrap();
    assert_eq!(
        get.call.arg[0],
        json!("http://artifacts.example.com/shop/1.0.0/shop.war")
    );
    // the CMDB's service for web-03 was merged into the template
    let blue = reqs
        .iter()
        .filter(|r| r.call.to_string().contains("tomcat-blue"))
        .collect::<Vec<_>>();
    assert!(!blue.is_empty(), "no call used the CMDB's service");
    assert!(blue
        .iter()
        .all(|r| r.targets.iter().all(|t| t.as_str() == "web-03")));
    lab.on_disk("1.0.0");

    // show: versions per host, last deployment
    let r = lab.run(&["show", "shop", "--json"]);
    assert_eq!(r.code, 0);
    let s = r.json();
    assert_eq!(s["last_deployment"]["id"], first_id.as_str());
    assert_eq!(s["last_deployment"]["outcome"], "succeeded");
    assert_eq!(s["config"]["name"], "shop");
    for h in s["hosts"].as_array().unwrap() {
        assert_eq!(h["version"], "1.0.0", "{s}");
    }
    let r = lab.run(&["show", "shop"]);
    assert!(r.stdout.contains("web-02") && r.stdout.contains("1.0.0"));

    // a dry run sends read-only calls only and changes no fleet state
    lab.serving("2.0.0");
    let r = lab.run(&["deploy", "shop", "2.0.0", "--dry-run", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    let d = r.json();
    assert_eq!(d["dry_run"], true);
    assert!(!d["unsent_calls"].as_array().unwrap().is_empty(), "{d}");

    // deploy 2.0.0 on two hosts with a batch override
    let r = lab.run(&[
        "deploy",
        "shop",
        "2.0.0",
        "--hosts",
        "web-01,web-02",
        "--batch",
        "100%",
        "--json",
    ]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    let d = r.json();
    assert_eq!(d["batches"], json!([["web-01", "web-02"]]));
    // then the rest (human output, progress lines on stderr since it is not a terminal)
    let r = lab.run(&["deploy", "shop", "2.0.0", "--hosts", "web-03"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert!(r.stdout.contains("succeeded"), "{}", r.stdout);
    assert!(r.stderr.contains("batch 1/1"), "{}", r.stderr);
    lab.on_disk("2.0.0");

    // deploy 3.0.0: web-02's health check fails -> rolled back, exit 4, readable reason
    lab.serving("3.0.0");
    lab.fleet.add_rule(
        "web-02",
        "http.query",
        Outcome::ok(json!({ "status": 503 })),
        None,
    );
    let r = lab.run(&["deploy", "shop", "3.0.0", "--json"]);
    assert_eq!(r.code, 4, "{}", r.stdout);
    let d = r.json();
    assert_eq!(d["outcome"], "rolled-back");
    let web02 = d["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["host"] == "web-02")
        .unwrap();
    assert_eq!(web02["failure"]["stage"], "post-deploy");
    assert!(
        web02["failure"]["reason"].as_str().unwrap().contains("503"),
        "{web02}"
    );
    let failed_id = d["id"].as_str().unwrap().to_owned();
    lab.fleet.add_rule(
        "web-02",
        "http.query",
        Outcome::ok(json!({ "status": 200 })),
        None,
    );

    // rollback to 1.0.0: exit 0 for a rollback that rolled every host back
    let r = lab.run(&["rollback", "shop", "--to", "1.0.0", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    let d = r.json();
    assert_eq!(d["mode"], "rollback");
    assert_eq!(d["outcome"], "rolled-back");
    let rollback_id = d["id"].as_str().unwrap().to_owned();
    // its log knows it was a rollback (to an explicit version): the same exit code, 0
    let r = lab.run(&["log", &rollback_id, "--json"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    let l = r.json();
    assert_eq!(l["deployment"]["mode"], "rollback");
    assert_eq!(l["exit_code"], 0, "{l}");
    let r = lab.run(&["show", "shop", "--json"]);
    for h in r.json()["hosts"].as_array().unwrap() {
        assert_eq!(h["version"], "1.0.0");
    }

    // history: newest first, every deployment of shop
    let r = lab.run(&["history", "--json"]);
    assert_eq!(r.code, 0);
    let h = r.json();
    let rows = h.as_array().unwrap();
    assert_eq!(rows.len(), 6, "{h}");
    assert_eq!(rows[0]["version"], "1.0.0");
    assert_eq!(rows[0]["mode"], "rollback");
    assert_eq!(rows[1]["id"], failed_id.as_str());
    assert_eq!(rows[1]["mode"], "deploy");
    assert_eq!(rows[1]["outcome"], "rolled-back");
    assert_eq!(rows.last().unwrap()["id"], first_id.as_str());
    for k in [
        "id",
        "template",
        "mode",
        "version",
        "user",
        "dry_run",
        "started",
        "ended",
        "duration_ms",
        "outcome",
        "reason",
    ] {
        assert!(rows[0].get(k).is_some(), "missing {k}: {}", rows[0]);
    }
    let r = lab.run(&["history", "shop"]);
    assert!(r.stdout.contains(&failed_id));
    assert!(r.stdout.contains("↩ 1.0.0"), "{}", r.stdout);

    // log: calls and per-host stages of the failed deployment
    let r = lab.run(&["log", &failed_id, "--json"]);
    assert_eq!(r.code, 0);
    let l = r.json();
    assert_eq!(l["exit_code"], 4);
    assert!(l["calls"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["fun"] == "http.query"));
    let web02 = l["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["host"] == "web-02")
        .unwrap();
    assert!(web02["stages"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["status"] == "failed" && s["stage"] == "post-deploy"));
    let r = lab.run(&["log", &failed_id]);
    assert!(r.stdout.contains("Host web-02"), "{}", r.stdout);

    // stats
    let r = lab.run(&["stats", "shop", "--since", "1", "--json"]);
    assert_eq!(r.code, 0);
    let s = r.json();
    // four releases; the rollback is counted apart
    assert_eq!(s["count"], 4, "{s}");
    assert_eq!(s["rollbacks"]["count"], 1, "{s}");
    assert!(s["success_rate"].as_f64().unwrap() > 0.0);
    assert!(s["failing_hosts"]
        .as_array()
        .unwrap()
        .iter()
        .any(|h| h[0] == "web-02"));
    let r = lab.run(&["stats"]);
    assert!(r.stdout.contains("deployments"), "{}", r.stdout);

    // recover: nothing interrupted
    let r = lab.run(&["recover", "--json"]);
    assert_eq!(r.code, 0);
    assert_eq!(r.json(), json!([]));

    // monitor --once: every minion of the templates alice may view
    let r = lab.run(&["monitor", "--once", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    let m = r.json();
    assert_eq!(m["checked"], 3);
    assert_eq!(m["up"].as_array().unwrap().len(), 3);
    assert!(m["down"].as_array().unwrap().is_empty());
}

#[test]
fn errors_name_what_is_wrong_and_exit_with_their_codes() {
    let lab = Lab::new(Duration::from_millis(1));

    // bad config key: names the file, the key and the value; exit 64
    let bad = lab.dir.join("bad.toml");
    let text = std::fs::read_to_string(&lab.ops)
        .unwrap()
        .replace("job_timeout = 30", "job_timeot = 30");
    write(&bad, &text);
    let r = run(&bad, &["templates"], ENV);
    assert_eq!(r.code, 64);
    assert!(
        r.stderr.contains(&bad.display().to_string()),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("salt.job_timeot"), "{}", r.stderr);
    assert!(r.stderr.contains("\"30\""), "{}", r.stderr);
    let r = run(&bad, &["templates", "--json"], ENV);
    assert_eq!(r.code, 64);
    assert_eq!(r.json()["error"]["kind"], "config");
    assert_eq!(r.json()["error"]["code"], 64);
    // a missing config file
    let r = run(&lab.dir.join("nope.toml"), &["templates"], ENV);
    assert_eq!(r.code, 64);
    assert!(r.stderr.contains("nope.toml"), "{}", r.stderr);
    // a missing password variable is named, never a password
    let r = run(&lab.ops, &["plan", "shop", "1.0.0"], &[]);
    assert_eq!(r.code, 64);
    assert!(r.stderr.contains("PG_CLI_TEST_PASSWORD"), "{}", r.stderr);
    // a usage error
    let r = lab.run(&["deploy", "shop", "1.0.0", "--batch", "lots"]);
    assert_eq!(r.code, 64, "{}", r.stderr);
    assert!(r.stderr.contains("lots"), "{}", r.stderr);

    // unknown template: exit 67, lists the known ones
    let r = lab.run(&["show", "nope"]);
    assert_eq!(r.code, 67);
    assert!(
        r.stderr.contains("`nope`") && r.stderr.contains("shop"),
        "{}",
        r.stderr
    );
    let r = lab.run(&["deploy", "nope", "1.0.0", "--json"]);
    assert_eq!(r.code, 67);
    assert_eq!(r.json()["error"]["kind"], "unknown-template");

    // unknown version: exit 67, names the source and the newest versions
    let r = lab.run(&["deploy", "shop", "9.9.9", "--json"]);
    assert_eq!(r.code, 67, "{}", r.stdout);
    let e = r.json();
    assert_eq!(e["error"]["kind"], "unknown-version");
    let msg = e["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("9.9.9") && msg.contains("artifacts") && msg.contains("3.0.0"),
        "{msg}"
    );
    let r = lab.run(&["plan", "shop", "9.9.9"]);
    assert_eq!(r.code, 67);

    // unknown deployment id
    let r = lab.run(&["log", "shop-1-1", "--json"]);
    assert_eq!(r.code, 67);
    assert_eq!(r.json()["error"]["kind"], "unknown-deployment");

    // forbidden: a viewer may show but not deploy; a stranger may not even view
    let dev = lab.user_config("bob", &["devs"]);
    let r = run(&dev, &["show", "shop", "--json"], ENV);
    assert_eq!(r.code, 0);
    assert_eq!(r.json()["may_deploy"], false);
    let r = run(&dev, &["deploy", "shop", "1.0.0"], ENV);
    assert_eq!(r.code, 65);
    assert!(
        r.stderr.contains("`bob`") && r.stderr.contains("deploy") && r.stderr.contains("shop.toml"),
        "{}",
        r.stderr
    );
    let r = run(&dev, &["rollback", "shop", "--json"], ENV);
    assert_eq!(r.code, 65);
    assert_eq!(r.json()["error"]["kind"], "forbidden");
    let stranger = lab.user_config("eve", &[]);
    let r = run(&stranger, &["show", "shop"], ENV);
    assert_eq!(r.code, 65);
    let r = run(&stranger, &["templates", "--json"], ENV);
    assert_eq!(r.json(), json!([]));

    // busy: another deployment holds the lease
    let store = pushguide_store::SqliteStore::open(lab.dir.join("state/pushguide.db")).unwrap();
    let other = store.acquire_lease("shop", "shop-other-7", "test").unwrap();
    let r = lab.run(&["deploy", "shop", "1.0.0", "--json"]);
    assert_eq!(r.code, 66, "{}", r.stdout);
    let e = r.json();
    assert_eq!(e["error"]["kind"], "busy");
    assert!(e["error"]["message"]
        .as_str()
        .unwrap()
        .contains("shop-other-7"));
    let r = lab.run(&["rollback", "shop"]);
    assert_eq!(r.code, 66);
    // a dry run takes no lease and may run
    lab.serving("1.0.0");
    let r = lab.run(&["deploy", "shop", "1.0.0", "--dry-run", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    store
        .release_lease("shop", "shop-other-7", other.token)
        .unwrap();
    let r = lab.run(&["deploy", "shop", "1.0.0", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
}

#[test]
fn detach_then_watch_and_ctrl_c_cancels() {
    let lab = Lab::new(Duration::from_millis(150));
    lab.serving("1.0.0");

    // --detach: a child process runs it; watch follows the store until the end
    let r = lab.run(&["deploy", "shop", "1.0.0", "--detach", "--json"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let d = r.json();
    let id = d["id"].as_str().unwrap().to_owned();
    assert!(d["pid"].as_u64().unwrap() > 0);
    let log = PathBuf::from(d["log"].as_str().unwrap());
    // busy while it runs
    let r = lab.run(&["deploy", "shop", "1.0.0"]);
    assert_eq!(r.code, 66, "{}", r.stderr);
    let r = lab.run(&["watch", &id, "--interval", "0.1", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    let w = r.json();
    assert_eq!(w["deployment"]["outcome"], "succeeded");
    assert_eq!(w["exit_code"], 0);
    assert_eq!(w["hosts"].as_array().unwrap().len(), 3);
    // the outcome comes with every host's status and log (one transaction): no wait needed
    for h in w["hosts"].as_array().unwrap() {
        assert_eq!(h["status"], "succeeded", "{h}");
        assert!(!h["log"].as_array().unwrap().is_empty(), "{h}");
    }
    wait_for_file_text(&log, "succeeded");
    // human watch of a finished deployment
    let r = lab.run(&["watch", &id]);
    assert_eq!(r.code, 0);
    assert!(r.stdout.contains("succeeded"));

    // a detached deploy that cannot start hands over the child's error and exit code
    let r = lab.run(&["deploy", "shop", "9.9.9", "--detach"]);
    assert_eq!(r.code, 67, "{}", r.stderr);
    assert!(r.stderr.contains("9.9.9"), "{}", r.stderr);

    // Ctrl-C (SIGINT) during a deployment: graceful cancel, exit 6; the template's policy
    // (previous) rolls the touched hosts back to 1.0.0
    lab.on_disk("1.0.0");
    lab.serving("2.0.0");
    let child = std::process::Command::new(support::BIN)
        .arg("--config")
        .arg(&lab.ops)
        .args(["deploy", "shop", "2.0.0", "--json"])
        .env("PG_CLI_TEST_PASSWORD", PASSWORD)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // wait until it holds the lease (the deployment runs), then interrupt it
    let store = pushguide_store::SqliteStore::open(lab.dir.join("state/pushguide.db")).unwrap();
    let begun = std::time::Instant::now();
    while store.lease("shop").unwrap().is_none() {
        assert!(begun.elapsed() < Duration::from_secs(20), "never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    support::wait_for_first_batch(&store, "shop");
    std::thread::sleep(Duration::from_millis(100));
    let st = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let out: Run = child.wait_with_output().unwrap().into();
    eprintln!("{}\n{}", out.stdout, out.stderr);
    assert_eq!(out.code, 6, "{}", out.stdout);
    let c = out.json();
    assert_eq!(c["outcome"], "cancelled");
    assert!(
        c["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["rolled_back_to"] == "1.0.0"),
        "{c}"
    );
    assert!(store.lease("shop").unwrap().is_none(), "lease released");
}

fn wait_for_file_text(path: &Path, text: &str) {
    let begun = std::time::Instant::now();
    loop {
        let s = std::fs::read_to_string(path).unwrap_or_default();
        if s.contains(text) {
            return;
        }
        assert!(
            begun.elapsed() < Duration::from_secs(20),
            "{} never contained {text}:\n{s}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `on_failure = "pause"`: the CLI asks on stdin (bad answers ask again, the end of input takes the
/// default answer) or answers with `--on-pause`.
#[test]
fn a_pause_is_asked_on_stdin_or_answered_by_on_pause() {
    let lab = Lab::new(Duration::from_millis(2));
    write(
        &lab.dir.join("templates/shop.toml"),
        &SHOP.replace(
            "[failure]\nmax_failed = 0\n",
            "[failure]\nmax_failed = 0\non_failure = \"pause\"\n",
        ),
    );
    lab.serving("1.0.0");
    let r = lab.run(&["deploy", "shop", "1.0.0", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    lab.on_disk("1.0.0");
    lab.fleet.add_rule(
        "web-02",
        "http.query",
        Outcome::ok(json!({ "status": 503 })),
        None,
    );
    let deploy = |version: &str, extra: &[&str], input: &str| {
        lab.serving(version);
        let mut args = vec!["deploy", "shop", version, "--json"];
        args.extend_from_slice(extra);
        let r = support::run_with_stdin(&lab.ops, &args, ENV, input);
        lab.on_disk(version);
        r
    };

    // asked: a bad answer asks again, `e` excludes web-02 and the release goes on to web-03
    let r = deploy("2.0.0", &["--on-pause", "ask"], "maybe\ne\n");
    assert_eq!(r.code, 2, "{}", r.stdout);
    let d = r.json();
    assert_eq!(d["outcome"], "partially-applied");
    assert_eq!(host_statuses(&d), ["succeeded", "excluded", "succeeded"]);
    // `log` reads the same statuses from the journal (the decision is an event)
    let l = lab
        .run(&["log", d["id"].as_str().unwrap(), "--json"])
        .json();
    let logged: Vec<&str> = l["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["status"].as_str().unwrap())
        .collect();
    assert_eq!(logged, ["succeeded", "excluded", "succeeded"], "{l}");
    assert!(
        r.stderr
            .contains("1 host failed post-deploy in batch 2 (web-02)"),
        "{}",
        r.stderr
    );
    assert_eq!(
        r.stderr
            .matches("retry, exclude, rollback or abort?")
            .count(),
        2
    );
    assert!(r.stderr.contains("`maybe` is not one of"), "{}", r.stderr);

    // answered by the flag: abort stops without rolling back; web-03 is not touched
    let r = deploy("3.0.0", &["--on-pause", "abort"], "");
    assert_eq!(r.code, 3, "{}", r.stdout);
    let d = r.json();
    assert_eq!(d["outcome"], "failed");
    assert_eq!(d["reason"], "aborted by decision after a failure");
    let web03 = d["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["host"] == "web-03")
        .unwrap();
    assert_ne!(web03["status"], "succeeded", "{d}");

    // asked: retry fails again, then stdin ends: the default answer (rollback, the template has a
    // policy) applies
    let r = deploy("2.0.0", &["--on-pause", "ask"], "ret\n");
    assert_eq!(r.code, 4, "{}", r.stdout);
    assert_eq!(r.json()["outcome"], "rolled-back");
    assert_eq!(
        r.stderr
            .matches("retry, exclude, rollback or abort?")
            .count(),
        2
    );
    assert!(
        r.stderr.contains("no answer on stdin: Rollback"),
        "{}",
        r.stderr
    );
}

/// A lab over web-01 to web-03 and db-01 with the `shop` template over the salt glob `web-0*`
/// (`shop-glob`, its own WAR 1.0.0 served) and the static CMDB `cmdb`.
fn glob_lab(cmdb: &str) -> Lab {
    let lab = Lab::builder()
        .hosts(&["web-01", "web-02", "web-03", "db-01"])
        .template(
            "shop-glob",
            &SHOP
                .replace("name = \"shop\"", "name = \"shop-glob\"")
                .replace(
                    "minions = [\"web-01\", \"web-02\", \"web-03\"]",
                    "expression = \"web-0*\"",
                ),
        )
        .cmdb(cmdb)
        .start();
    let sha = war(&lab.dir.join("artifacts"), "shop-glob", "1.0.0");
    lab.fleet
        .add_rule("*", "file.get_hash", Outcome::ok(sha.as_str()), None);
    lab
}

/// Item: a template that targets a salt expression gets the CMDB settings of the hosts the
/// expression resolves to, with the same precedence as a minion list. The CMDB's settings of a host
/// the expression does not match are left out, even when the kind would refuse them (a key it does
/// not know, a control character), and that host is never called. Salt resolves the expression once:
/// the engine deploys to exactly the hosts whose settings were merged.
#[test]
fn cmdb_settings_reach_the_hosts_a_target_expression_resolves_to() {
    let lab = glob_lab(
        "[hosts.web-01]\ncatalina_base = \"/opt/tomcat-a\"\n\
         [hosts.web-03]\nservice = \"tomcat-blue\"\n\
         [hosts.db-01]\njvm_heap = \"2g\"\nservice = \"db\\u001b[2J\"\n",
    );
    let r = lab.run(&["deploy", "shop-glob", "1.0.0", "--json"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let d = r.json();
    let deployed = d["hosts"].as_array().unwrap();
    assert_eq!(deployed.len(), 3, "{d}");
    for (h, want) in deployed.iter().zip(["web-01", "web-02", "web-03"]) {
        assert_eq!(
            (h["host"].as_str(), h["status"].as_str()),
            (Some(want), Some("succeeded"))
        );
    }

    let reqs = lab.fleet.step_requests();
    let using = |text: &str| -> Vec<String> {
        let mut hosts: Vec<String> = reqs
            .iter()
            .filter(|r| r.call.to_string().contains(text))
            .flat_map(|r| r.targets.iter().map(ToString::to_string))
            .collect();
        hosts.sort();
        hosts.dedup();
        hosts
    };
    assert_eq!(
        using("tomcat-blue"),
        ["web-03"],
        "the CMDB's service for web-03"
    );
    assert_eq!(
        using("/opt/tomcat-a"),
        ["web-01"],
        "the CMDB's catalina_base for web-01"
    );
    // the project default for the hosts the CMDB leaves open
    assert_eq!(using("/var/lib/tomcat10"), ["web-02", "web-03"]);
    assert!(
        reqs.iter()
            .all(|r| r.targets.iter().all(|t| t.as_str() != "db-01")),
        "db-01 is not a target"
    );
    // one test.ping resolves the glob (for the CMDB and the engine), one is the pre-flight check
    let pings: Vec<_> = reqs.iter().filter(|r| r.fun == "test.ping").collect();
    assert_eq!(pings.len(), 2, "{pings:?}");
}

/// Item: a hostile CMDB value for a host the expression targets (control characters, an oversized
/// string) is refused with a typed error naming the CMDB, the host and the key, before anything is
/// deployed: no mutating call, nothing recorded.
#[test]
fn a_hostile_cmdb_value_is_refused_before_anything_is_deployed() {
    let lab = glob_lab("[hosts.web-02]\nservice = \"tomcat\\u001b[2J\\nrm -rf /\"\n");
    let r = lab.run(&["deploy", "shop-glob", "1.0.0", "--json"]);
    assert_eq!(r.code, 64, "{}", r.stdout);
    let e = r.json();
    assert_eq!(e["error"]["kind"], "source", "{e}");
    let msg = e["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("cmdb.toml") && msg.contains("web-02") && msg.contains("service"),
        "{msg}"
    );
    assert!(msg.contains("control"), "{msg}");
    assert!(!msg.contains('\u{1b}') && !msg.contains('\n'), "{msg:?}");

    let long = format!("/{}", "a".repeat(20_000));
    write(
        &lab.dir.join("cmdb.toml"),
        &format!("[hosts.web-01]\ncatalina_base = \"{long}\"\n"),
    );
    let r = lab.run(&["deploy", "shop-glob", "1.0.0", "--json"]);
    assert_eq!(r.code, 64, "{}", r.stdout);
    let msg = r.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(
        msg.contains("web-01") && msg.contains("catalina_base") && msg.contains("longer than"),
        "{msg}"
    );
    assert!(msg.len() < 2_000, "the value is cut in the message: {msg}");

    let reqs = lab.fleet.step_requests();
    assert!(
        reqs.iter().all(|r| r.fun == "test.ping"),
        "only the read-only resolve: {:?}",
        reqs.iter().map(|r| &r.fun).collect::<Vec<_>>()
    );
    assert!(lab.history().is_empty(), "nothing recorded");
}
