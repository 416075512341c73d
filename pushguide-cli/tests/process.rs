//! The `pushguide` binary as a process against the fake salt-api: closed pipes, SIGHUP, usage errors
//! from the command line parser, `--hosts` checked before anything is sent, broken template files,
//! a monitor that outlives salt-api errors, and the wording of human output.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use pushguide_core::Outcome;
use serde_json::{json, Value};
use support::lab::{shop_template, Lab, ENV};
use support::{run, war, write, Run};

static SHOP: LazyLock<String> =
    LazyLock::new(|| shop_template(&["web-01", "web-02", "web-03"], true, false));

impl Lab {
    fn new(latency: Duration) -> Lab {
        Lab::builder()
            .latency(latency)
            .template("shop", &SHOP)
            .start()
    }

    /// A second template `name` over the same hosts with a salt target expression.
    fn expression_template(&self, name: &str, expression: &str) {
        write(
            &self.dir.join(format!("templates/{name}.toml")),
            &SHOP
                .replace("name = \"shop\"", &format!("name = \"{name}\""))
                .replace(
                    "minions = [\"web-01\", \"web-02\", \"web-03\"]",
                    &format!("expression = \"{expression}\""),
                ),
        );
    }

    /// Waits until a deployment of `shop` holds the template's lease.
    fn wait_for_lease(&self) {
        let store = self.store();
        let begun = Instant::now();
        while store.lease("shop").unwrap().is_none() {
            assert!(begun.elapsed() < Duration::from_secs(20), "never started");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn kill(signal: &str, child: &Child) {
    let st = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}

/// Like `pushguide … | head -1` for both streams: stdout and stderr are pipes whose reader takes the
/// first line of stderr and goes away. Returns that line and the exit code.
fn run_into_head_1(mut cmd: Command) -> (String, i32) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    // the readers are gone now: every later write of the child gets EPIPE
    drop(out);
    drop(err);
    let status = wait_with_timeout(child, Duration::from_secs(60));
    (line, status)
}

fn wait_with_timeout(mut child: Child, limit: Duration) -> i32 {
    let begun = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st.code().unwrap_or(-1);
        }
        if begun.elapsed() > limit {
            let _ = child.kill();
            panic!("pushguide did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Item: a closed stdout/stderr never stops a deployment: it finishes, is recorded, and the exit code
/// is the deployment's (also with the progress lines, tracing's log and the `--json` document all
/// written into the closed pipe).
#[test]
fn closed_pipes_never_stop_a_deployment() {
    let lab = Lab::new(Duration::from_millis(20));
    lab.serving("1.0.0");

    let mut cmd = lab.command(&["deploy", "shop", "1.0.0"]);
    cmd.env("PUSHGUIDE_LOG", "debug");
    let (first, code) = run_into_head_1(cmd);
    eprintln!("first line: {first}");
    assert_eq!(code, 0, "exit code of a succeeded deployment");
    let rows = lab.history();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["outcome"], "succeeded");
    assert_eq!(rows[0]["version"], "1.0.0");
    lab.on_disk("1.0.0");

    // a failing one: rolled back, exit 4, even though its --json document cannot be written
    lab.serving("2.0.0");
    lab.fleet.add_rule(
        "web-02",
        "http.query",
        Outcome::ok(json!({ "status": 503 })),
        None,
    );
    let mut cmd = lab.command(&["deploy", "shop", "2.0.0", "--json"]);
    cmd.env("PUSHGUIDE_LOG", "info");
    let (_, code) = run_into_head_1(cmd);
    assert_eq!(code, 4, "exit code of a rolled-back deployment");
    let rows = lab.history();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0]["version"], "2.0.0");
    assert_eq!(rows[0]["outcome"], "rolled-back");

    // stdout closed before anything is written, stderr kept: the summary is lost, nothing else
    lab.fleet.add_rule(
        "web-02",
        "http.query",
        Outcome::ok(json!({ "status": 200 })),
        None,
    );
    lab.serving("1.0.0");
    let mut child = lab
        .command(&["deploy", "shop", "1.0.0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(lab.history().len(), 3);
}

/// Item: SIGHUP (the terminal was closed) cancels like SIGTERM: the running call finishes, the
/// template's rollback policy applies, the deployment is recorded, exit 6.
#[test]
fn sighup_cancels_applies_the_rollback_policy_and_records() {
    let lab = Lab::new(Duration::from_millis(150));
    lab.serving("1.0.0");
    let r = lab.run(&["deploy", "shop", "1.0.0", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    lab.on_disk("1.0.0");
    lab.serving("2.0.0");

    let child = lab
        .command(&["deploy", "shop", "2.0.0", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    lab.wait_for_lease();
    support::wait_for_first_batch(&lab.store(), "shop");
    std::thread::sleep(Duration::from_millis(100));
    kill("-HUP", &child);
    let out: Run = child.wait_with_output().unwrap().into();
    eprintln!("{}\n{}", out.stdout, out.stderr);
    assert_eq!(out.code, 6, "{}", out.stderr);
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
    let store = pushguide_store::SqliteStore::open(lab.dir.join("state/pushguide.db")).unwrap();
    assert!(store.lease("shop").unwrap().is_none(), "lease released");
    let rows = lab.history();
    assert_eq!(rows[0]["id"], c["id"]);
    assert_eq!(rows[0]["outcome"], "cancelled");

    // with the terminal gone, nothing can be written: the deployment is still cancelled and recorded
    let mut child = lab
        .command(&["deploy", "shop", "2.0.0"])
        .env("PUSHGUIDE_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    lab.wait_for_lease();
    drop(child.stdout.take());
    drop(child.stderr.take());
    std::thread::sleep(Duration::from_millis(400));
    kill("-HUP", &child);
    assert_eq!(wait_with_timeout(child, Duration::from_secs(60)), 6);
    let rows = lab.history();
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert_eq!(rows[0]["outcome"], "cancelled");
}

/// Item: the command line parser's errors are usage errors (64), with the JSON error document under
/// `--json`; `--help` and `--version` exit 0.
#[test]
fn command_line_errors_exit_64_and_speak_json() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("none.toml");
    for args in [
        &["deploy", "shop"][..],
        &["deploy", "shop", "1.0.0", "--bogus"],
        &["frobnicate"],
        &["history", "--limit", "many"],
    ] {
        let r = run(&cfg, args, &[]);
        assert_eq!(r.code, 64, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains("error:"), "{args:?}: {}", r.stderr);
        assert!(r.stdout.is_empty(), "{}", r.stdout);

        let mut with_json = vec!["--json"];
        with_json.extend_from_slice(args);
        let r = run(&cfg, &with_json, &[]);
        assert_eq!(r.code, 64, "{args:?}: {}", r.stderr);
        let e = r.json();
        assert_eq!(e["error"]["kind"], "usage", "{e}");
        assert_eq!(e["error"]["code"], 64, "{e}");
        assert!(!e["error"]["message"].as_str().unwrap().is_empty(), "{e}");
    }
    // no command at all: the help, as a usage error
    let r = run(&cfg, &[], &[]);
    assert_eq!(r.code, 64, "{}", r.stderr);
    assert!(r.stderr.contains("Usage"), "{}", r.stderr);
    let r = run(&cfg, &["--json"], &[]);
    assert_eq!(r.code, 64, "{}", r.stderr);
    assert_eq!(r.json()["error"]["kind"], "usage");
    let r = run(&cfg, &["deploy", "shop", "1.0.0", "--bogus", "--json"], &[]);
    assert_eq!(r.code, 64);
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--bogus"),
        "{}",
        r.stdout
    );
    for args in [&["--help"][..], &["deploy", "--help"], &["--version"]] {
        let r = run(&cfg, args, &[]);
        assert_eq!(r.code, 0, "{args:?}: {}", r.stderr);
        assert!(!r.stdout.is_empty());
    }
}

/// Item: a host that is not a target of the template is a usage error before anything is sent or
/// recorded: for a minion list and for a glob that cannot match it without asking salt at all; for
/// a glob that matches the name, after the read-only resolve of the expression and before any other
/// call.
#[test]
fn unknown_hosts_are_usage_errors_before_any_salt_job() {
    let lab = Lab::new(Duration::from_millis(1));
    lab.serving("1.0.0");
    lab.expression_template("shop-glob", "web-0*");
    let sha = war(&lab.dir.join("artifacts"), "shop-glob", "1.0.0");
    lab.fleet
        .add_rule("*", "file.get_hash", Outcome::ok(sha.as_str()), None);

    // a minion list
    let r = lab.run(&[
        "deploy",
        "shop",
        "1.0.0",
        "--hosts",
        "web-01,web-09",
        "--json",
    ]);
    assert_eq!(r.code, 64, "{}", r.stdout);
    let e = r.json();
    assert_eq!(e["error"]["kind"], "usage");
    let msg = e["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("web-09") && msg.contains("shop") && msg.contains("web-01"),
        "{msg}"
    );
    assert_eq!(lab.fake().request_count().get("POST /"), 0);
    assert!(lab.fleet.requests().is_empty());
    let r = lab.run(&["deploy", "shop", "1.0.0", "--hosts", "web 01"]);
    assert_eq!(r.code, 64, "{}", r.stderr);
    assert!(lab.history().is_empty());

    // a glob that cannot match the host: salt is not asked
    let r = lab.run(&["deploy", "shop-glob", "1.0.0", "--hosts", "db-01", "--json"]);
    assert_eq!(r.code, 64, "{}", r.stdout);
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("db-01"));
    assert_eq!(lab.fake().request_count().get("POST /"), 0);
    assert!(lab.fleet.requests().is_empty());

    // a glob that matches the name of a minion that does not exist: resolved, then refused
    let r = lab.run(&[
        "deploy",
        "shop-glob",
        "1.0.0",
        "--hosts",
        "web-09",
        "--json",
    ]);
    assert_eq!(r.code, 64, "{}", r.stdout);
    let funs: Vec<String> = lab
        .fleet
        .step_requests()
        .iter()
        .map(|q| q.fun.clone())
        .collect();
    assert!(funs.iter().all(|f| f == "test.ping"), "{funs:?}");
    assert!(lab.history().is_empty(), "nothing recorded");

    // the check lets the template's hosts through
    lab.fleet.clear_requests();
    let r = lab.run(&[
        "deploy",
        "shop-glob",
        "1.0.0",
        "--hosts",
        "web-02",
        "--json",
    ]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert_eq!(r.json()["batches"], json!([["web-02"]]));
    assert_eq!(lab.history().len(), 1);

    // a NUL in the store path is a config error naming the key
    let text = std::fs::read_to_string(&lab.ops).unwrap().replace(
        "store = \"state/pushguide.db\"",
        "store = \"state/pg\\u0000.db\"",
    );
    let bad = lab.dir.join("nul.toml");
    write(&bad, &text);
    let r = run(&bad, &["history"], ENV);
    assert_eq!(r.code, 64, "{}", r.stderr);
    assert!(r.stderr.contains("key `store`"), "{}", r.stderr);
    let r = run(&bad, &["history", "--json"], ENV);
    assert_eq!(r.json()["error"]["kind"], "config");
}

/// Item: one broken template file is listed as broken by `templates` and skipped by `history`,
/// `show` of another template and `monitor`.
#[test]
fn a_broken_template_file_breaks_nothing_else() {
    let lab = Lab::new(Duration::from_millis(1));
    write(
        &lab.dir.join("templates/broken.toml"),
        &format!(
            "name = \"broken\"\n[targets\nminions = [\"{}\"]\n",
            "x".repeat(2000)
        ),
    );
    lab.serving("1.0.0");
    let r = lab.run(&["deploy", "shop", "1.0.0"]);
    assert_eq!(r.code, 0, "{}", r.stderr);

    let r = lab.run(&["templates", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    let rows = r.json();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    let shop = rows.iter().find(|t| t["name"] == "shop").unwrap();
    assert_eq!(shop["error"], Value::Null);
    let broken = rows.iter().find(|t| t["name"] == "broken").unwrap();
    assert!(broken["file"].as_str().unwrap().ends_with("broken.toml"));
    let err = broken["error"].as_str().unwrap();
    assert!(!err.is_empty() && !err.contains('\n'), "{err}");
    assert!(err.chars().count() <= 301, "cut: {err}");
    assert_eq!(broken["may_deploy"], false);
    let r = lab.run(&["templates"]);
    assert_eq!(r.code, 0);
    assert!(r.stdout.contains("shop"), "{}", r.stdout);
    assert!(
        r.stdout.contains("BROKEN") && r.stdout.contains("broken.toml"),
        "{}",
        r.stdout
    );

    assert_eq!(lab.history().len(), 1);
    let r = lab.run(&["history"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("shop"), "{}", r.stdout);
    assert!(
        r.stderr.contains("skipping broken template file") && r.stderr.contains("broken.toml"),
        "{}",
        r.stderr
    );
    let r = lab.run(&["show", "shop", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // asking for the broken one by name is its error
    let r = lab.run(&["show", "broken", "--json"]);
    assert_eq!(r.code, 64, "{}", r.stdout);
    assert_eq!(r.json()["error"]["kind"], "template-file");

    let r = lab.run(&["monitor", "--once", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    let m = r.json();
    assert_eq!(m["checked"], 3, "{m}");
    assert!(m["broken"][0]["file"]
        .as_str()
        .unwrap()
        .ends_with("broken.toml"));
}

/// Lines of a child's stdout, read on a thread, with a deadline.
struct Lines(std::sync::mpsc::Receiver<String>);

impl Lines {
    fn new(child: &mut Child) -> Lines {
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Lines(rx)
    }

    /// The next line that satisfies `want` (as JSON), within 30 s.
    fn until(&self, what: &str, want: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .0
                .recv_timeout(left)
                .unwrap_or_else(|e| panic!("no line with {what}: {e}"));
            eprintln!("monitor: {line}");
            let v: Value = serde_json::from_str(&line).unwrap();
            if want(&v) {
                return v;
            }
        }
    }
}

/// Item: `monitor` reports a failed round and goes on, and resolves target expressions at every
/// round.
#[test]
fn monitor_goes_on_after_salt_errors_and_resolves_every_round() {
    let lab = Lab::new(Duration::from_millis(1));
    std::fs::remove_file(lab.dir.join("templates/shop.toml")).unwrap();
    lab.expression_template("shop-glob", "web-01");
    let text = std::fs::read_to_string(&lab.ops)
        .unwrap()
        .replace("[monitor]\n", "[monitor]\ninterval_secs = 0.2\n");
    write(&lab.ops, &text);

    // salt-api answers 500 to everything until the faults are cleared
    lab.fake().faults().fail_next(1_000_000);
    let mut child = lab
        .command(&["monitor", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = Lines::new(&mut child);
    let bad = lines.until("a failed round", |v| {
        v.get("error").is_some() || v["errors"].as_array().is_some_and(|e| !e.is_empty())
    });
    eprintln!("failed round: {bad}");
    lab.fake().faults().clear();
    let ok = lines.until("a round over one minion", |v| v["checked"] == 1);
    assert_eq!(ok["up"], json!(["web-01"]));
    // the expression now matches the third minion: the next rounds find it
    lab.expression_template("shop-glob", "web-0*");
    lines.until("a round over three minions", |v| v["checked"] == 3);
    // salt-api fails again: reported, and the monitor goes on
    lab.fake().faults().fail_next(1_000_000);
    lines.until("a failed round", |v| {
        v.get("error").is_some() || v["errors"].as_array().is_some_and(|e| !e.is_empty())
    });
    lab.fake().faults().clear();
    lines.until("a round over three minions", |v| v["checked"] == 3);
    assert!(child.try_wait().unwrap().is_none(), "still monitoring");
    kill("-TERM", &child);
    assert_eq!(wait_with_timeout(child, Duration::from_secs(30)), 0);
}

/// Item: human output counts in the right number (`1 host`), and a host failed by a hook (no salt
/// function) says so instead of `(-)`.
#[test]
fn human_output_counts_and_names_hook_errors() {
    let lab = Lab::new(Duration::from_millis(1));
    lab.serving("1.0.0");
    let r = lab.run(&["deploy", "shop", "1.0.0", "--hosts", "web-03"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("prepared: 1 host in 1 batch"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("batch 1/1: 1 host"), "{}", r.stderr);
    assert!(!r.stderr.contains("1 hosts"), "{}", r.stderr);
    assert!(!r.stdout.contains("1 hosts"), "{}", r.stdout);
    // plan of a one-host template
    write(
        &lab.dir.join("templates/solo.toml"),
        &SHOP.replace("name = \"shop\"", "name = \"solo\"").replace(
            "minions = [\"web-01\", \"web-02\", \"web-03\"]",
            "minions = [\"web-01\"]",
        ),
    );
    war(&lab.dir.join("artifacts"), "solo", "1.0.0");
    let r = lab.run(&["plan", "solo", "1.0.0"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("1 host in 1 batch,"), "{}", r.stdout);
    lab.on_disk("1.0.0");
    let r = lab.run(&["deploy", "shop", "1.0.0"]);
    assert!(
        r.stderr.contains("prepared: 3 hosts in 3 batches"),
        "{}",
        r.stderr
    );

    // the artifact's checksum does not match what the hosts downloaded: the step that checked it
    // fails the host, named with its salt function
    lab.serving("1.0.0");
    let r = lab.run(&["deploy", "shop", "2.0.0", "--hosts", "web-01"]);
    assert_ne!(r.code, 0, "{}", r.stdout);
    assert!(
        r.stdout
            .contains("web-01 failed at staging (file.get_hash): checksum mismatch"),
        "{}",
        r.stdout
    );
    // a host the hook itself fails (its settings lack CATALINA_BASE): no salt function, and says so
    write(
        &lab.dir.join("templates/nobase.toml"),
        &format!(
            "{}[project.hosts.web-02]\ncatalina_base = \"/opt/tomcat\"\n",
            SHOP.replace("name = \"shop\"", "name = \"nobase\"")
                .replace("catalina_base = \"/var/lib/tomcat10\"\n", "")
        ),
    );
    war(&lab.dir.join("artifacts"), "nobase", "1.0.0");
    let r = lab.run(&["deploy", "nobase", "1.0.0", "--hosts", "web-01"]);
    assert_ne!(r.code, 0, "{}", r.stdout);
    assert!(
        r.stdout.contains("web-01 failed at")
            && r.stdout.contains("(hook error):")
            && r.stdout.contains("catalina_base"),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("(-)"), "{}", r.stdout);
    assert!(r.stderr.contains("(hook error)"), "{}", r.stderr);
    assert!(!r.stderr.contains("(-)"), "{}", r.stderr);
    let id = lab.history()[0]["id"].as_str().unwrap().to_owned();
    let r = lab.run(&["log", &id]);
    assert_eq!(r.code, 0);
    assert!(r.stdout.contains("hook error"), "{}", r.stdout);
    assert!(!r.stdout.contains("failed  -"), "{}", r.stdout);
}

/// Item: a SIGKILL right after "batch 1/3 done" loses nothing of that batch: the journal holds the
/// host's success and the fleet state its new version, at whatever point after the line the kill
/// lands; and no host of the next batch was touched before both were durable.
#[test]
fn a_kill_right_after_a_batch_loses_none_of_it() {
    for round in 0..6u64 {
        let lab = Lab::new(Duration::from_millis(40));
        lab.serving("1.0.0");
        let mut child = lab
            .command(&["deploy", "shop", "1.0.0"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        loop {
            line.clear();
            assert!(err.read_line(&mut line).unwrap() > 0, "ended early");
            if line.contains("batch 1/3 done") {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(round * 7));
        child.kill().unwrap();
        child.wait().unwrap();
        let store = pushguide_store::SqliteStore::open(lab.dir.join("state/pushguide.db")).unwrap();
        let id = store.deployments("shop", 1).unwrap().remove(0);
        // a host's stage rows exist once its result (success or failure) is journaled
        let rows = store.host_stage_results(&id).unwrap();
        assert!(
            rows.iter()
                .any(|r| r.host == "web-01" && r.stage == "post-deploy" && r.status == "ok"),
            "round {round}: the journal lost web-01's success: {rows:?}"
        );
        let fleet = store.fleet("shop").unwrap();
        let w1 = fleet.iter().find(|h| h.host == "web-01");
        assert_eq!(
            w1.and_then(|h| h.version.as_deref()),
            Some("1.0.0"),
            "round {round}: the fleet state lost web-01's version"
        );
        // nothing of batch 2 ran before batch 1 was durable: whatever reached web-02 came after
        let w2 = fleet.iter().find(|h| h.host == "web-02");
        if let Some(w2) = w2 {
            assert!(w2.since >= w1.unwrap().since, "round {round}");
        }
    }
}

/// Item: 200 `pushguide deploy` processes released at the same moment: exactly one runs, every
/// other one is refused with exit 66; one deployment is recorded.
#[test]
fn two_hundred_simultaneous_starts_run_exactly_one() {
    const N: usize = 200;
    let lab = Lab::new(Duration::from_secs(5));
    lab.serving("1.0.0");
    let fifo = lab.dir.join("go");
    let st = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(st.success());
    // held open (read and write, which does not block on Linux) until every child has ended, so a
    // shell that opens the fifo late still finds a writer and its line
    let mut go = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&fifo)
        .unwrap();
    let mut children = Vec::with_capacity(N);
    for i in 0..N {
        let cmd = lab.command(&["deploy", "shop", "1.0.0", "--json"]);
        let mut sh = Command::new("sh");
        sh.arg("-c")
            .arg("read _ < \"$0\"; exec \"$@\"")
            .arg(&fifo)
            .arg(cmd.get_program())
            .args(cmd.get_args())
            .envs(cmd.get_envs().filter_map(|(k, v)| Some((k, v?))))
            .env_remove("PUSHGUIDE_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(lab.dir.join(format!("err-{i}.txt"))).unwrap());
        children.push(sh.spawn().unwrap());
    }
    // every shell waits on the fifo for a line: one write releases them all at once
    {
        use std::io::Write;
        go.write_all("\n".repeat(N).as_bytes()).unwrap();
    }
    let begun = Instant::now();
    let mut codes = vec![None; N];
    let mut ended = vec![Duration::ZERO; N];
    let winner;
    loop {
        for (i, c) in children.iter_mut().enumerate() {
            if codes[i].is_none() {
                if let Some(st) = c.try_wait().unwrap() {
                    codes[i] = Some(st.code().unwrap_or(-1));
                    ended[i] = begun.elapsed();
                }
            }
        }
        let running: Vec<usize> = (0..N).filter(|i| codes[*i].is_none()).collect();
        if running.len() <= 1 {
            winner = running.first().copied();
            break;
        }
        assert!(
            begun.elapsed() < Duration::from_secs(120),
            "{} still running",
            running.len()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // the one that runs may have finished by now (exit 0) or still be running
    let refused = codes.iter().filter(|c| **c == Some(66)).count();
    let others: Vec<String> = (0..N)
        .filter(|i| !matches!(codes[*i], None | Some(66)))
        .map(|i| {
            let err = std::fs::read_to_string(lab.dir.join(format!("err-{i}.txt")));
            format!(
                "exit {:?} after {:?}: {}",
                codes[i],
                ended[i],
                err.unwrap_or_default()
            )
        })
        .collect();
    let last = ended.iter().max();
    assert_eq!(
        refused,
        N - 1,
        "every other start is refused as busy: {others:#?}, last refusal after {last:?}, history {:#?}",
        lab.history()
    );
    match winner {
        Some(w) => {
            kill("-TERM", &children[w]);
            let code = wait_with_timeout(children.swap_remove(w), Duration::from_secs(60));
            assert_eq!(code, 6, "the one that ran was cancelled by SIGTERM");
        }
        None => assert!(codes.contains(&Some(0)), "{codes:?}"),
    }
    drop(go);
    let history = lab.history();
    assert_eq!(history.len(), 1, "{history:?}");
}
