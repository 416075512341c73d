//! Two pushguide instances sharing one PostgreSQL store, against the REAL salt lab and its real
//! Tomcats: instance A talks to the lab's first salt-api, instance B to its second (the lab runs two
//! masters under `PUSHGUIDE_SALT_MASTERS=2`; with one, both use the same). Each instance has its own
//! working directory and config; they share nothing but the database.
//!
//! The flow: A deploys 1.0.0; B sees the hosts on 1.0.0 and deploys 2.0.0; A rolls back (to 1.0.0,
//! from the fleet state B wrote); both start a deploy of 2.0.0 at the same instant (one runs, the
//! other is busy, exit 66); A is SIGKILLed after its first host switched; B's next deploy waits out
//! the dead lease, marks A's record `interrupted` and brings every host to its version.
//!
//! Needs the salt lab and Tomcats (`PUSHGUIDE_SALT_*`, `PUSHGUIDE_TOMCAT_*`) and a PostgreSQL
//! (`PUSHGUIDE_PG_URL`, `PUSHGUIDE_PG_PASSWORD_FILE`); skips without them unless
//! `PUSHGUIDE_REQUIRE_SALT=1` / `PUSHGUIDE_REQUIRE_PG=1`.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use support::tomcat::{build_war, lab, page, serve_files, Lab};
use support::{run, write, Run};

/// The database of the test: URL, password file and CA file, or `None` (skip).
fn database() -> Option<(String, Option<String>, Option<String>)> {
    match std::env::var("PUSHGUIDE_PG_URL")
        .ok()
        .filter(|u| !u.is_empty())
    {
        Some(url) => Some((
            url,
            std::env::var("PUSHGUIDE_PG_PASSWORD_FILE").ok(),
            std::env::var("PUSHGUIDE_PG_CA_FILE").ok(),
        )),
        None if std::env::var("PUSHGUIDE_REQUIRE_PG").as_deref() == Ok("1") => {
            panic!("PUSHGUIDE_REQUIRE_PG=1 but PUSHGUIDE_PG_URL is not set (scripts/pg-lab up)")
        }
        None => {
            eprintln!("SKIPPED real_salt_pg: PUSHGUIDE_PG_URL is not set (scripts/pg-lab up)");
            None
        }
    }
}

/// Whether every Tomcat of the lab serves `version` of the shop.
fn serves(lab: &Lab, version: &str) -> Vec<bool> {
    lab.ports
        .iter()
        .map(|p| page(p, "shop").contains(&format!("shop version {version}")))
        .collect()
}

fn assert_pages(lab: &Lab, version: &str) {
    for port in &lab.ports {
        let p = page(port, "shop");
        assert!(
            p.contains(&format!("shop version {version}")),
            "port {port} should serve {version}:\n{p}"
        );
    }
}

/// One instance: a working directory with its config (its own salt-api) and templates.
struct Instance {
    config: PathBuf,
}

impl Instance {
    fn run(&self, args: &[&str]) -> Run {
        let r = run(&self.config, args, &[]);
        eprintln!("{args:?} -> {}\n{}", r.code, r.stderr);
        r
    }

    fn spawn(&self, args: &[&str]) -> Child {
        Command::new(env!("CARGO_BIN_EXE_pushguide"))
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }
}

#[allow(clippy::too_many_arguments)]
fn instance(
    dir: &Path,
    lab: &Lab,
    endpoint: &str,
    artifacts_port: u16,
    store: &str,
    artifacts: &Path,
) -> Instance {
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
            "templates = \"templates\"\n\
             [user]\nname = \"ops\"\n\
             [salt]\nendpoints = [\"{endpoint}\"]\neauth = \"{}\"\nuser = \"{}\"\n\
             password_env = \"PUSHGUIDE_SALT_PASSWORD\"\njob_timeout = 120\n\
             step_jobs = false\n\
             [ci]\ntype = \"directory\"\npath = \"{}\"\nurl_base = \"http://127.0.0.1:{artifacts_port}/\"\n\
             {store}",
            lab.eauth,
            lab.user,
            artifacts.display()
        ),
    );
    Instance { config }
}

#[test]
fn two_instances_on_one_database_deploy_roll_back_race_and_take_over_on_real_salt() {
    let Some(lab) = lab("real_salt_pg") else {
        return;
    };
    let Some((url, password_file, ca)) = database() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let artifacts = dir.join("artifacts");
    for v in ["1.0.0", "2.0.0"] {
        build_war(dir, &artifacts, "shop", "shop", v);
    }
    let port = serve_files(artifacts.clone());

    let ttl = 3;
    let mut store = format!(
        "[store]\nurl = \"{url}\"\nschema = \"real_lab_{}\"\nlease_ttl_secs = {ttl}\npool_size = 4\n",
        std::process::id()
    );
    if let Some(f) = &password_file {
        store.push_str(&format!("password_file = \"{f}\"\n"));
    }
    if let Some(ca) = &ca {
        store.push_str(&format!("ca_file = \"{ca}\"\n"));
    }
    let second = lab.endpoints.get(1).unwrap_or(&lab.url).clone();
    let a = instance(&dir.join("a"), &lab, &lab.url, port, &store, &artifacts);
    let b = instance(&dir.join("b"), &lab, &second, port, &store, &artifacts);

    // A deploys 1.0.0
    let r = a.run(&["deploy", "shop", "1.0.0", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert_eq!(r.json()["outcome"], "succeeded");
    assert_pages(&lab, "1.0.0");

    // B sees what A deployed, and deploys 2.0.0 through the other master
    let r = b.run(&["show", "shop", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    for host in r.json()["hosts"].as_array().unwrap() {
        assert_eq!(host["version"], "1.0.0", "{}", r.stdout);
    }
    let r = b.run(&["deploy", "shop", "2.0.0", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert_eq!(r.json()["outcome"], "succeeded");
    assert_pages(&lab, "2.0.0");

    // A rolls back from the fleet state B wrote: every host to 1.0.0
    let r = a.run(&["rollback", "shop", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    let d = r.json();
    assert_eq!(d["outcome"], "rolled-back", "{d}");
    for h in d["hosts"].as_array().unwrap() {
        assert_eq!(h["rolled_back_to"], "1.0.0", "{d}");
    }
    assert_pages(&lab, "1.0.0");
    let r = b.run(&["history", "shop", "--json"]);
    let versions: Vec<String> = r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["version"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(versions, ["previous", "2.0.0", "1.0.0"], "{}", r.stdout);

    // both deploy 2.0.0 at the same instant: one runs, the other is busy and touches nothing
    let go = Arc::new(Barrier::new(2));
    let racers: Vec<_> = [a.config.clone(), b.config.clone()]
        .into_iter()
        .map(|config| {
            let go = go.clone();
            std::thread::spawn(move || {
                go.wait();
                run(&config, &["deploy", "shop", "2.0.0", "--json"], &[])
            })
        })
        .collect();
    let runs: Vec<Run> = racers.into_iter().map(|t| t.join().unwrap()).collect();
    let mut codes: Vec<i32> = runs.iter().map(|r| r.code).collect();
    codes.sort_unstable();
    assert_eq!(
        codes,
        [0, 66],
        "one runs, the other is busy: {:?}",
        runs.iter().map(|r| &r.stderr).collect::<Vec<_>>()
    );
    assert_pages(&lab, "2.0.0");
    let r = a.run(&["history", "shop", "--json"]);
    assert_eq!(
        r.json().as_array().unwrap().len(),
        4,
        "the busy deploy recorded nothing: {}",
        r.stdout
    );

    // A is killed after its first host switched to 1.0.0 (batch 1: the second has not)
    let mut killed = a.spawn(&["deploy", "shop", "1.0.0"]);
    let started = Instant::now();
    loop {
        if serves(&lab, "1.0.0")[0] {
            break;
        }
        if let Some(st) = killed.try_wait().unwrap() {
            panic!("A's deploy ended ({st}) before it was killed");
        }
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "the first host never switched"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    killed.kill().unwrap();
    let at = Instant::now();
    killed.wait().unwrap();
    if lab.ports.len() > 1 {
        assert!(
            serves(&lab, "2.0.0")[1],
            "the second host still runs 2.0.0 when A dies"
        );
    }
    // B's deploy waits out A's lease, marks A's record interrupted and brings every host to 2.0.0
    let (r, took_over) = loop {
        let attempt = Instant::now();
        let r = b.run(&["deploy", "shop", "2.0.0", "--json"]);
        eprintln!(
            "attempt {} ms after the kill took {} ms",
            attempt.duration_since(at).as_millis(),
            attempt.elapsed().as_millis()
        );
        if r.code != 66 {
            break (r, attempt.duration_since(at));
        }
        assert!(
            at.elapsed() < Duration::from_secs(ttl * 20),
            "A's lease never expired"
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    eprintln!(
        "B's deploy that took over started {} ms after A was killed (lease TTL {ttl} s)",
        took_over.as_millis()
    );
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert_eq!(r.json()["outcome"], "succeeded");
    assert_pages(&lab, "2.0.0");
    let r = b.run(&["history", "shop", "--json"]);
    let h = r.json();
    let rows = h.as_array().unwrap();
    assert_eq!(rows.len(), 6, "{h}");
    assert_eq!(rows[0]["outcome"], "succeeded", "{h}");
    assert_eq!(rows[1]["version"], "1.0.0", "{h}");
    assert_eq!(rows[1]["outcome"], "interrupted", "A's record: {h}");
    let r = a.run(&["show", "shop", "--json"]);
    for host in r.json()["hosts"].as_array().unwrap() {
        assert_eq!(host["version"], "2.0.0", "{}", r.stdout);
    }
}
