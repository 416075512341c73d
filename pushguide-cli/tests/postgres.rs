//! The `pushguide` binary on a PostgreSQL store, as real processes against the fake salt-api: two
//! deploys racing for one template, deploy/deploy/rollback, a paused process whose lease is taken
//! over (SIGSTOP/SIGCONT), a killed process (SIGKILL), and the database restarted mid-deployment.
//!
//! They need a PostgreSQL: `PUSHGUIDE_PG_URL` (and `PUSHGUIDE_PG_PASSWORD_FILE`), as printed by
//! `scripts/pg-lab up`; without it they skip with a message, and fail with `PUSHGUIDE_REQUIRE_PG=1`.
//! Each test runs in a schema of its own. The restart test also needs `PUSHGUIDE_PG_LAB_DIR` (the
//! lab's directory: it restarts the lab's server with `pg_ctl`).
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Barrier, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use pushguide_core::EventKind;
use pushguide_postgres::{PgConfig, PgStore};
use serde_json::Value;
use support::lab::{shop_template, Lab};
use support::Run;

/// The database of the tests, if any: URL and password file.
fn database() -> Option<(String, Option<String>)> {
    let url = std::env::var("PUSHGUIDE_PG_URL")
        .ok()
        .filter(|u| !u.is_empty());
    match url {
        Some(url) => Some((url, std::env::var("PUSHGUIDE_PG_PASSWORD_FILE").ok())),
        None if std::env::var("PUSHGUIDE_REQUIRE_PG").as_deref() == Ok("1") => {
            panic!("PUSHGUIDE_REQUIRE_PG=1 but PUSHGUIDE_PG_URL is not set (scripts/pg-lab up)")
        }
        None => {
            eprintln!("skipped: no PostgreSQL (set PUSHGUIDE_PG_URL, see scripts/pg-lab)");
            None
        }
    }
}

/// The tests of this file run one at a time: one of them restarts the database, and the timings of
/// the others (lease TTLs) should not depend on what runs beside them.
static SERIAL: Mutex<()> = Mutex::new(());

/// A lab whose config uses a schema of its own on the test database, with `ttl` as lease TTL.
struct PgLab {
    lab: Lab,
    /// The test's view of the store (its own instance).
    store: PgStore,
    rt: tokio::runtime::Runtime,
    /// Released last.
    _serial: MutexGuard<'static, ()>,
}

impl PgLab {
    fn start(test: &str, latency: Duration, ttl: f64) -> Option<PgLab> {
        let (url, password_file) = database()?;
        let serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
        let lab = Lab::builder()
            .latency(latency)
            .template(
                "shop",
                &shop_template(&["web-01", "web-02", "web-03"], false, false),
            )
            .start();
        let schema = format!("cli_{test}_{}", std::process::id());
        let text = std::fs::read_to_string(&lab.ops).unwrap();
        let mut text = text.replace("store = \"state/pushguide.db\"\n", "");
        text.push_str(&format!(
            "[store]\nurl = \"{url}\"\nschema = \"{schema}\"\nlease_ttl_secs = {ttl}\npool_size = 4\n"
        ));
        if let Some(f) = &password_file {
            text.push_str(&format!("password_file = \"{f}\"\n"));
        }
        // the lab's server may offer TLS: trust its CA (`scripts/pg-lab env`)
        let ca = std::env::var("PUSHGUIDE_PG_CA_FILE").ok();
        if let Some(ca) = &ca {
            text.push_str(&format!("ca_file = \"{ca}\"\n"));
        }
        std::fs::write(&lab.ops, text).unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let mut cfg = PgConfig::from_url(&url).unwrap().schema(schema).unwrap();
        if let Some(f) = password_file {
            cfg = cfg.password_file(f);
        }
        if let Some(ca) = ca {
            cfg = cfg.ca_file(ca);
        }
        let store = rt.block_on(PgStore::connect(&cfg)).unwrap();
        Some(PgLab {
            lab,
            store,
            rt,
            _serial: serial,
        })
    }

    fn run(&self, args: &[&str]) -> Run {
        self.lab.run(args)
    }

    fn spawn(&self, args: &[&str]) -> Child {
        self.lab
            .command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn deployments(&self) -> Vec<pushguide_postgres::DeploymentRecord> {
        self.rt.block_on(async {
            let mut out = Vec::new();
            for id in self.store.deployments("shop", 100).await.unwrap() {
                out.push(self.store.deployment(&id).await.unwrap().unwrap());
            }
            out
        })
    }

    fn events(&self, id: &str) -> Vec<pushguide_core::Event> {
        self.rt.block_on(self.store.events(id)).unwrap()
    }

    fn lease(&self) -> Option<pushguide_postgres::Lease> {
        self.rt.block_on(self.store.lease("shop")).unwrap()
    }

    /// `(host, version, previous)` of every host of `shop`.
    fn fleet(&self) -> Vec<(String, Option<String>, Option<String>)> {
        self.rt
            .block_on(self.store.fleet("shop"))
            .unwrap()
            .into_iter()
            .map(|h| (h.host, h.version, h.previous))
            .collect()
    }

    /// Waits until a deployment of `shop` holds the lease and has started a batch; returns the
    /// lease.
    fn wait_for_batch(&self) -> pushguide_postgres::Lease {
        let begun = Instant::now();
        loop {
            if let Some(l) = self.lease() {
                let started = self
                    .events(&l.holder)
                    .iter()
                    .any(|e| matches!(e.kind, EventKind::BatchStarted { .. }));
                if started {
                    return l;
                }
            }
            assert!(
                begun.elapsed() < Duration::from_secs(30),
                "no batch started"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn finish(child: Child) -> Run {
    let out: Output = child.wait_with_output().unwrap();
    let r: Run = out.into();
    eprintln!("-> {}\n{}{}", r.code, r.stderr, r.stdout);
    r
}

fn signal(signal: &str, pid: u32) {
    let st = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}

fn all_on(fleet: &[(String, Option<String>, Option<String>)], version: &str) {
    assert_eq!(fleet.len(), 3, "{fleet:?}");
    for (h, v, _) in fleet {
        assert_eq!(v.as_deref(), Some(version), "{h}: {fleet:?}");
    }
}

#[test]
fn two_deploys_of_one_template_at_the_same_millisecond_one_runs_the_other_is_busy() {
    let Some(pg) = PgLab::start("race", Duration::from_millis(150), 10.0) else {
        return;
    };
    pg.lab.serving("1.0.0");
    let barrier = Arc::new(Barrier::new(2));
    let cmds: Vec<Command> = (0..2)
        .map(|_| pg.lab.command(&["deploy", "shop", "1.0.0", "--json"]))
        .collect();
    let threads: Vec<_> = cmds
        .into_iter()
        .map(|mut cmd| {
            let b = barrier.clone();
            std::thread::spawn(move || {
                b.wait();
                let child = cmd
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap();
                finish(child)
            })
        })
        .collect();
    let runs: Vec<Run> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let mut codes: Vec<i32> = runs.iter().map(|r| r.code).collect();
    codes.sort_unstable();
    assert_eq!(codes, [0, 66], "one runs, the other is busy");
    let ok = runs.iter().find(|r| r.code == 0).unwrap().json();
    assert_eq!(ok["outcome"], "succeeded");
    let busy = runs.iter().find(|r| r.code == 66).unwrap().json();
    assert_eq!(busy["error"]["kind"], "busy", "{busy}");
    assert!(
        busy["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`shop`"),
        "{busy}"
    );
    // the journal shows one deployment, the one that ran
    let ds = pg.deployments();
    assert_eq!(ds.len(), 1, "{ds:?}");
    assert_eq!(ds[0].id, ok["id"].as_str().unwrap());
    assert_eq!(ds[0].outcome.as_deref(), Some("succeeded"));
    all_on(&pg.fleet(), "1.0.0");
    assert!(pg.lease().is_none(), "the lease is given back");
}

#[test]
fn deploy_deploy_and_rollback_keep_fleet_state_and_rollback_targets() {
    let Some(pg) = PgLab::start("flow", Duration::ZERO, 10.0) else {
        return;
    };
    pg.lab.serving("1.0.0");
    let r = pg.run(&["deploy", "shop", "1.0.0", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    pg.lab.on_disk("1.0.0");
    let fleet = pg.fleet();
    all_on(&fleet, "1.0.0");
    assert!(fleet.iter().all(|(_, _, p)| p.is_none()), "{fleet:?}");

    pg.lab.serving("2.0.0");
    let r = pg.run(&["deploy", "shop", "2.0.0", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    pg.lab.on_disk("2.0.0");
    let fleet = pg.fleet();
    all_on(&fleet, "2.0.0");
    assert!(
        fleet.iter().all(|(_, _, p)| p.as_deref() == Some("1.0.0")),
        "{fleet:?}"
    );
    // the plan of the next release reads the fleet state from PostgreSQL: if 3.0.0 fails, each
    // host goes back to what it runs now
    pg.lab.serving("3.0.0");
    let r = pg.run(&["plan", "shop", "3.0.0", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let targets = r.json()["rollback_targets"].clone();
    for t in targets.as_array().unwrap() {
        assert_eq!(t[1], "2.0.0", "{targets}");
        assert_eq!(t[2], "2.0.0", "{targets}");
    }

    // rollback without --to: every host back to its recorded previous version
    pg.lab.serving("1.0.0");
    let r = pg.run(&["rollback", "shop", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let d = r.json();
    assert_eq!(d["mode"], "rollback");
    assert_eq!(d["outcome"], "rolled-back");
    let fleet = pg.fleet();
    all_on(&fleet, "1.0.0");
    assert!(fleet.iter().all(|(_, _, p)| p.is_none()), "{fleet:?}");

    let ds = pg.deployments();
    assert_eq!(ds.len(), 3);
    assert!(ds[0].rollback && ds[0].outcome.as_deref() == Some("rolled-back"));
    assert!(ds.iter().all(|d| d.ended.is_some()));
    // `show` reads the fleet state and the newest deployment from PostgreSQL
    let r = pg.run(&["show", "shop", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let s = r.json();
    assert_eq!(s["last_deployment"]["id"], ds[0].id.as_str(), "{s}");
    for h in s["hosts"].as_array().unwrap() {
        assert_eq!(h["version"], "1.0.0", "{s}");
        assert_eq!(h["state"], "running", "{s}");
    }
    // `history` reads the same journal
    let r = pg.run(&["history", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let h = r.json();
    let rows = h.as_array().unwrap();
    assert_eq!(rows.len(), 3, "{h}");
    for (row, rec) in rows.iter().zip(&ds) {
        assert_eq!(row["id"], rec.id.as_str(), "{h}");
    }
    assert_eq!(rows[0]["mode"], "rollback");
    assert_eq!(rows[0]["outcome"], "rolled-back");
    assert_eq!(rows[2]["version"], "1.0.0");
    assert_eq!(rows[2]["user"], "alice");
    // three leases taken, one after the other: tokens 1, 2, 3
    let tokens: Vec<Option<u64>> = ds.iter().rev().map(|d| d.lease_token).collect();
    assert_eq!(tokens, [Some(1), Some(2), Some(3)]);
}

#[test]
fn a_paused_deploy_loses_its_lease_to_the_next_and_writes_nothing_more() {
    let ttl = 2.0;
    let Some(pg) = PgLab::start("pause", Duration::from_millis(700), ttl) else {
        return;
    };
    pg.lab.serving("2.0.0");
    let first = pg.spawn(&["deploy", "shop", "2.0.0", "--json"]);
    let lease_a = pg.wait_for_batch();
    signal("-STOP", first.id());
    let stopped = Instant::now();
    let events_at_stop = pg.events(&lease_a.holder).len();
    // the lease expires on the database clock: nobody renews it
    while pg.lease().is_some() {
        assert!(stopped.elapsed() < Duration::from_secs(20), "never expired");
        std::thread::sleep(Duration::from_millis(50));
    }
    let expired = stopped.elapsed();
    pg.lab.serving("3.0.0");
    let mut second = pg.spawn(&["deploy", "shop", "3.0.0", "--json"]);
    let lease_b = loop {
        if let Some(l) = pg.lease().filter(|l| l.holder != lease_a.holder) {
            break l;
        }
        if second.try_wait().unwrap().is_some() {
            let b = finish(second);
            panic!(
                "the second deploy ended before taking the lease: {}",
                b.code
            );
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(30),
            "not taken over"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let taken_over = stopped.elapsed();
    eprintln!(
        "takeover: lease TTL {ttl} s; expired {} ms after SIGSTOP, second deploy held it {} ms \
         after SIGSTOP",
        expired.as_millis(),
        taken_over.as_millis()
    );
    assert_eq!(
        lease_b.token,
        lease_a.token + 1,
        "fencing token incremented"
    );
    assert!(expired <= Duration::from_secs_f64(ttl + 1.5), "{expired:?}");
    // the second finishes while the first is still paused
    let b = finish(second);
    assert_eq!(b.code, 0, "{}", b.stderr);
    let events_a = pg.events(&lease_a.holder).len();
    let requests = pg.lab.fleet.requests().len();

    signal("-CONT", first.id());
    let a = finish(first);
    assert_eq!(a.code, 66, "lease lost: {}", a.stderr);
    let err = a.json();
    assert_eq!(err["error"]["kind"], "lease-lost", "{err}");
    // nothing more from the first: no host touched, no journal or fleet rows
    let after: Vec<String> = pg.lab.fleet.requests()[requests..]
        .iter()
        .map(|r| format!("{} {:?} {}", r.fun, r.targets, r.call))
        .collect();
    assert!(
        after.is_empty(),
        "the paused deploy touched a host after it lost its lease: {after:?}"
    );
    assert_eq!(pg.events(&lease_a.holder).len(), events_a);
    assert!(events_a >= events_at_stop);
    all_on(&pg.fleet(), "3.0.0");
    let ds = pg.deployments();
    let rec_a = ds.iter().find(|d| d.id == lease_a.holder).unwrap();
    let rec_b = ds.iter().find(|d| d.id == lease_b.holder).unwrap();
    assert_eq!(rec_b.outcome.as_deref(), Some("succeeded"));
    assert_eq!(rec_b.lease_token, Some(lease_b.token));
    // the second deploy marked it interrupted when it took the expired lease; the fenced deploy
    // could not record an end of its own over that
    assert_eq!(rec_a.outcome.as_deref(), Some("interrupted"), "{rec_a:?}");
    assert!(rec_a.ended.is_some(), "{rec_a:?}");
    eprintln!("paused deploy's record after the takeover: {rec_a:?}");
}

#[test]
fn a_killed_deploy_frees_the_template_after_its_lease_ttl() {
    let ttl = 2.0;
    let Some(pg) = PgLab::start("kill", Duration::from_millis(500), ttl) else {
        return;
    };
    pg.lab.serving("2.0.0");
    let mut first = pg.spawn(&["deploy", "shop", "2.0.0", "--json"]);
    let lease_a = pg.wait_for_batch();
    signal("-KILL", first.id());
    let killed = Instant::now();
    first.wait().unwrap();
    // at once: busy, the lease is still live
    pg.lab.serving("3.0.0");
    let r = pg.run(&["deploy", "shop", "3.0.0", "--json"]);
    assert_eq!(r.code, 66, "{}", r.stderr);
    assert_eq!(r.json()["error"]["kind"], "busy");
    while pg.lease().is_some() {
        assert!(killed.elapsed() < Duration::from_secs(20), "never expired");
        std::thread::sleep(Duration::from_millis(50));
    }
    // the busy deploy found the killed one's lease live: it marked nothing
    let rec = pg
        .deployments()
        .into_iter()
        .find(|d| d.id == lease_a.holder)
        .unwrap();
    assert_eq!((rec.ended, rec.outcome.as_deref()), (None, None), "{rec:?}");
    eprintln!(
        "killed deploy's lease expired {} ms after SIGKILL (TTL {ttl} s)",
        killed.elapsed().as_millis()
    );
    let second = pg.spawn(&["deploy", "shop", "3.0.0", "--json"]);
    let lease_b = pg.wait_for_batch();
    assert_ne!(lease_b.holder, lease_a.holder);
    // taking the lease, the second deploy marked the killed one interrupted
    let rec = pg
        .deployments()
        .into_iter()
        .find(|d| d.id == lease_a.holder)
        .unwrap();
    let events = pg.events(&rec.id);
    assert_eq!(rec.outcome.as_deref(), Some("interrupted"), "{rec:?}");
    let (ended, last) = (rec.ended.unwrap(), events.last().unwrap().at);
    // ended at its last event (the database keeps microseconds)
    let gap = ended.duration_since(last).unwrap_or_else(|e| e.duration());
    assert!(gap < Duration::from_millis(1), "{ended:?} vs {last:?}");
    assert!(
        rec.reason
            .as_deref()
            .unwrap_or_default()
            .contains("ended before it finished"),
        "{rec:?}"
    );
    // `recover` while the second runs: lists the killed one (marked earlier), never the live one
    let r = pg.run(&["recover", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let rows = r.json();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["id"], lease_a.holder.as_str());
    assert_eq!(rows[0]["newly_marked"], false);
    assert!(
        rows[0]["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["status"] == "interrupted" && h["touched"] == true),
        "{rows:?}"
    );
    let live = pg
        .deployments()
        .into_iter()
        .find(|d| d.id == lease_b.holder)
        .unwrap();
    assert_eq!(
        (live.ended, live.outcome.as_deref()),
        (None, None),
        "{live:?}"
    );
    let b = finish(second);
    assert_eq!(b.code, 0, "{}", b.stderr);
    all_on(&pg.fleet(), "3.0.0");
    let ds = pg.deployments();
    assert_eq!(ds.len(), 2);
    let rec = ds.iter().find(|d| d.id == lease_a.holder).unwrap();
    let events = pg.events(&rec.id);
    // consistent: its start and first batch recorded, in order
    assert!(matches!(
        events[0].kind,
        EventKind::DeploymentStarted { .. }
    ));
    assert!(events
        .iter()
        .any(|e| matches!(e.kind, EventKind::BatchStarted { .. })));
    assert_eq!(rec.events as usize, events.len());
    assert_eq!(rec.outcome.as_deref(), Some("interrupted"));
    // `history` shows it interrupted
    let r = pg.run(&["history", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let h = r.json();
    let row = h
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["id"] == lease_a.holder.as_str())
        .unwrap()
        .clone();
    assert_eq!(row["outcome"], "interrupted", "{h}");
    eprintln!(
        "killed deploy's record: {} events, last {:?}; outcome {:?}",
        events.len(),
        events.last().map(|e| &e.kind),
        rec.outcome
    );
}

/// Restarts the lab's server with `pg_ctl restart -m fast` (as its owner) and records the new
/// pid where `scripts/pg-lab down` looks for it.
fn restart_database(lab_dir: &Path) {
    let data = lab_dir.join("data");
    let version = std::fs::read_to_string(data.join("PG_VERSION")).unwrap();
    let pg_ctl = PathBuf::from(format!("/usr/lib/postgresql/{}/bin/pg_ctl", version.trim()));
    let owner = Command::new("stat")
        .args(["-c", "%U"])
        .arg(&data)
        .output()
        .unwrap();
    let owner = String::from_utf8_lossy(&owner.stdout).trim().to_owned();
    let me = std::env::var("USER").unwrap_or_default();
    let mut cmd = if owner != me && unsafe_is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", &owner, "--"]).arg(&pg_ctl);
        c
    } else {
        Command::new(&pg_ctl)
    };
    let st = cmd
        .args(["restart", "-m", "fast", "-w", "-t", "30", "-D"])
        .arg(&data)
        .arg("-l")
        .arg(lab_dir.join("postgres.log"))
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "pg_ctl restart failed");
    let pid = std::fs::read_to_string(data.join("postmaster.pid")).unwrap();
    let pid = pid.lines().next().unwrap().trim().to_owned();
    std::fs::write(lab_dir.join("postgres.pid"), format!("{pid}\n")).unwrap();
}

fn unsafe_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

#[test]
fn a_database_restart_mid_deployment_leaves_a_consistent_journal() {
    let Some(lab_dir) = std::env::var_os("PUSHGUIDE_PG_LAB_DIR") else {
        if database().is_some() {
            assert!(
                std::env::var("PUSHGUIDE_REQUIRE_PG").as_deref() != Ok("1"),
                "PUSHGUIDE_REQUIRE_PG=1 but PUSHGUIDE_PG_LAB_DIR is not set (scripts/pg-lab env prints it)"
            );
            eprintln!("skipped: PUSHGUIDE_PG_LAB_DIR is not set (the lab's server is restarted)");
        }
        return;
    };
    let Some(pg) = PgLab::start("restart", Duration::from_millis(600), 10.0) else {
        return;
    };
    pg.lab.serving("2.0.0");
    let first = pg.spawn(&["deploy", "shop", "2.0.0", "--json"]);
    let lease = pg.wait_for_batch();
    let begun = Instant::now();
    restart_database(Path::new(&lab_dir));
    eprintln!("database restarted in {} ms", begun.elapsed().as_millis());
    let a = finish(first);
    let ds = pg.deployments();
    assert_eq!(ds.len(), 1);
    let rec = &ds[0];
    assert_eq!(rec.id, lease.holder);
    let events = pg.events(&rec.id);
    assert_eq!(
        rec.events as usize,
        events.len(),
        "every event row is whole"
    );
    assert!(matches!(
        events[0].kind,
        EventKind::DeploymentStarted { .. }
    ));
    let finished = events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::DeploymentFinished { .. }))
        .count();
    eprintln!(
        "after the restart: exit {}, outcome {:?}, {} events, finished event {}",
        a.code,
        rec.outcome,
        events.len(),
        finished
    );
    match a.code {
        // continued: the end and the fleet state are recorded
        0 => {
            assert_eq!(rec.outcome.as_deref(), Some("succeeded"));
            assert_eq!(finished, 1);
            all_on(&pg.fleet(), "2.0.0");
        }
        // failed cleanly: a typed error or a failed outcome, never a half-written journal
        code => {
            assert!(
                [3, 4, 5, 66, 69, 70].contains(&code),
                "unexpected exit {code}"
            );
            let v: Value = serde_json::from_str(&a.stdout).expect("one JSON document");
            assert!(
                v.get("error").is_some() || v.get("outcome").is_some(),
                "{v}"
            );
            assert!(finished <= 1);
            // the end is recorded: the writes that met the broken connection were retried
            assert!(
                rec.ended.is_some() && rec.outcome.is_some(),
                "the deployment record was left without an end: {rec:?}"
            );
            assert_ne!(rec.outcome.as_deref(), Some("succeeded"), "{rec:?}");
        }
    }
    // the template is free again (released, or expired after the TTL)
    let free = Instant::now();
    while pg.lease().is_some() {
        assert!(
            free.elapsed() < Duration::from_secs(15),
            "lease never freed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sqlite_only_commands_fail_on_a_postgres_store_without_a_local_file() {
    let lab = Lab::builder()
        .template(
            "shop",
            &shop_template(&["web-01", "web-02", "web-03"], false, false),
        )
        .start();
    let text = std::fs::read_to_string(&lab.ops).unwrap().replace(
        "store = \"state/pushguide.db\"",
        "store = \"postgres://pushguide@127.0.0.1:1/pushguide\"",
    );
    std::fs::write(&lab.ops, text).unwrap();
    let r = lab.run(&["rollback", "shop", "--deployment", "d-1", "--json"]);
    assert_eq!(r.code, 64, "{}", r.stderr);
    let e = r.json();
    assert_eq!(e["error"]["kind"], "sqlite-only", "{e}");
    let msg = e["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("`pushguide rollback --deployment`") && msg.contains("SQLite"),
        "{msg}"
    );
    assert!(
        !lab.dir.join("state").exists(),
        "no SQLite file is created as a fallback"
    );
}
