//! Two real processes sharing one database: this test binary re-executes itself with
//! `PUSHGUIDE_STORE_CHILD` set, and the `child` test then plays the other process.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use pushguide_core::{DeploymentOutcome, EventKind, Stage};
use pushguide_store::{Error, SqliteStore, StoreOptions};

use crate::support::*;

const ROLE: &str = "PUSHGUIDE_STORE_CHILD";
const DB: &str = "PUSHGUIDE_STORE_DB";
const TTL: Duration = Duration::from_millis(1000);

fn opts() -> StoreOptions {
    StoreOptions::default().lease_ttl(TTL)
}

fn spawn(role: &str, db: &Path) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "processes::child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ROLE, role)
        .env(DB, db)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

fn ready_file(db: &Path, role: &str) -> PathBuf {
    db.with_extension(format!("ready-{}", role.replace(':', "-")))
}

fn wait_for(path: &Path) {
    let until = Instant::now() + Duration::from_secs(60);
    while !path.exists() {
        assert!(
            Instant::now() < until,
            "child never got ready: {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The other process. Without `PUSHGUIDE_STORE_CHILD` it does nothing.
#[test]
fn child() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let db = PathBuf::from(std::env::var(DB).unwrap());
    let store = SqliteStore::open_with(&db, opts()).unwrap();
    let parts: Vec<&str> = role.split(':').collect();
    match parts[..] {
        ["hold-lease"] => {
            store
                .acquire_lease("shop", "child-deployment", "release 1.0")
                .unwrap();
            std::fs::write(ready_file(&db, &role), "").unwrap();
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        ["deploy-and-hang"] => {
            store
                .acquire_lease("shop", "child-deployment", "deployment")
                .unwrap();
            let events = deployment(
                "child-deployment",
                "shop",
                at(0),
                60,
                &["web-01"],
                &[("web-02", Stage::Deploy)],
                DeploymentOutcome::Failed,
                false,
            );
            let cut = events
                .iter()
                .position(|e| {
                    matches!(
                        e.kind,
                        EventKind::StageFinished {
                            stage: Stage::Deploy,
                            ..
                        }
                    )
                })
                .unwrap();
            store.append_events(&events[..cut]).unwrap();
            std::fs::write(ready_file(&db, &role), "").unwrap();
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        ["append", prefix, n] => {
            let n: usize = n.parse().unwrap();
            for i in 0..n {
                let id = format!("{prefix}-{i}");
                let events = deployment(
                    &id,
                    prefix,
                    at(i as u64),
                    60,
                    &["web-01", "web-02"],
                    &[],
                    DeploymentOutcome::Succeeded,
                    false,
                );
                // Several transactions per deployment, interleaving with the other writer.
                for chunk in events.chunks(3) {
                    store.append_events(chunk).unwrap();
                }
                store.finish_report(&report_of(&events).unwrap()).unwrap();
            }
            std::fs::write(ready_file(&db, &role), "").unwrap();
        }
        _ => panic!("unknown role {role}"),
    }
}

#[test]
fn lease_is_exclusive_across_processes_and_taken_over_after_the_holder_dies() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("lease.db");
    drop(SqliteStore::open(&db).unwrap());
    let mut holder = spawn("hold-lease", &db);
    wait_for(&ready_file(&db, "hold-lease"));
    let me = SqliteStore::open_with(&db, opts()).unwrap();
    let first = me.lease("shop").unwrap().unwrap();
    assert_eq!(first.holder, "child-deployment");
    assert!(
        first.owner.contains(&format!(":{}:", holder.id())),
        "{}",
        first.owner
    );
    // Refused now, and still refused after more than one TTL: the holder's heartbeat renews it.
    for _ in 0..3 {
        let err = me
            .acquire_lease("shop", "my-deployment", "release 2.0")
            .unwrap_err();
        assert!(
            matches!(err, Error::Busy { ref holder, ref reason, .. }
                if holder == "child-deployment" && reason == "release 1.0"),
            "{err:?}"
        );
        std::thread::sleep(TTL / 2);
    }
    // Through core's trait as well.
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let err = rt
        .block_on(pushguide_core::LeaseManager::acquire(
            &me,
            "shop",
            "my-deployment",
        ))
        .unwrap_err();
    assert!(matches!(err, pushguide_core::Error::Busy { .. }));

    holder.kill().unwrap();
    holder.wait().unwrap();
    let killed = Instant::now();
    // Not before the lease expires...
    let mut taken = None;
    while taken.is_none() {
        match me.acquire_lease("shop", "my-deployment", "release 2.0") {
            Ok(l) => taken = Some(l),
            Err(Error::Busy { .. }) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => panic!("{e}"),
        }
        assert!(killed.elapsed() < TTL * 5, "lease never expired");
    }
    let taken = taken.unwrap();
    // ...and with a larger fencing token.
    assert!(taken.token > first.token);
    assert_eq!(me.lease("shop").unwrap().unwrap().holder, "my-deployment");
}

#[test]
fn killed_process_leaves_a_record_that_recover_marks_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("recover.db");
    drop(SqliteStore::open(&db).unwrap());
    let mut child = spawn("deploy-and-hang", &db);
    wait_for(&ready_file(&db, "deploy-and-hang"));
    let me = SqliteStore::open_with(&db, opts()).unwrap();
    assert!(me.recover().unwrap().is_empty(), "its owner is alive");
    let running = me.deployment("child-deployment").unwrap().unwrap();
    assert_eq!(running.outcome, None);
    child.kill().unwrap();
    child.wait().unwrap();
    std::thread::sleep(TTL + Duration::from_millis(300));
    let found = me.recover().unwrap();
    assert_eq!(found.len(), 1);
    let d = &found[0];
    assert_eq!(
        (d.batch, d.stage, d.live_hosts),
        (Some(0), Stage::Deploy, 2)
    );
    let hosts: Vec<(&str, Stage, &str)> = d
        .hosts
        .iter()
        .map(|h| (h.host.as_str(), h.stage, h.status.as_str()))
        .collect();
    assert_eq!(
        hosts,
        vec![
            ("web-01", Stage::Deploy, "interrupted"),
            ("web-02", Stage::Deploy, "failed")
        ]
    );
    assert_eq!(
        me.deployment("child-deployment")
            .unwrap()
            .unwrap()
            .outcome
            .as_deref(),
        Some("interrupted")
    );
    me.acquire_lease("shop", "next", "rollback of the interrupted deployment")
        .unwrap();
}

#[test]
fn two_writing_processes_lose_no_event() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("writers.db");
    drop(SqliteStore::open(&db).unwrap());
    let n = 150;
    let roles = [format!("append:x:{n}"), format!("append:y:{n}")];
    let mut children: Vec<Child> = roles.iter().map(|r| spawn(r, &db)).collect();
    for c in &mut children {
        assert!(c.wait().unwrap().success());
    }
    let me = SqliteStore::open(&db).unwrap();
    let per = deployment(
        "z",
        "z",
        at(0),
        60,
        &["web-01", "web-02"],
        &[],
        DeploymentOutcome::Succeeded,
        false,
    )
    .len();
    for t in ["x", "y"] {
        let ids = me.deployments(t, 10_000).unwrap();
        assert_eq!(ids.len(), n);
        for id in ids {
            let d = me.deployment(&id).unwrap().unwrap();
            assert_eq!(d.events, per as u64, "{id}");
            assert_eq!(d.outcome.as_deref(), Some("succeeded"));
        }
        let s = me
            .summary(&pushguide_store::Window::new(at(0), at(1_000_000)).template(t))
            .unwrap();
        assert_eq!((s.count, s.succeeded), (n as u64, n as u64));
    }
}
