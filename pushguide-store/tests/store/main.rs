//! pushguide-store: opening, the journal through the engine, fleet state, leases, recovery,
//! statistics, and two real processes sharing one database.
#![allow(clippy::unwrap_used)]

mod conformance;
#[cfg(feature = "conformance")]
mod conformance_accounts;
#[cfg(feature = "conformance")]
mod conformance_queue;
#[cfg(feature = "conformance")]
mod conformance_records;
#[cfg(feature = "conformance")]
mod conformance_takeover;
mod host_results;
mod processes;
mod recovery;
mod stats;
mod support;

use std::time::Duration;

use pushguide_core::{
    DeploymentOutcome, EventKind, FleetState, LeaseManager, Principal, Request, Stage,
};
use pushguide_store::{Error, SqliteStore, StoreOptions, SCHEMA_VERSION};
use support::*;

#[test]
fn open_creates_schema_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.db");
    let s = SqliteStore::open(&path).unwrap();
    assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(s.path(), path);
    drop(s);
    let s = SqliteStore::open(&path).unwrap();
    assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
    let mode: String = rusqlite_mode(&path);
    assert_eq!(mode, "wal");
}

fn rusqlite_mode(path: &std::path::Path) -> String {
    // Read the journal mode from the file's header: bytes 18 and 19 are 2 in WAL mode.
    let bytes = std::fs::read(path).unwrap();
    if bytes[18] == 2 && bytes[19] == 2 {
        "wal".into()
    } else {
        "rollback".into()
    }
}

#[test]
fn newer_schema_is_refused_naming_file_and_versions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.db");
    drop(SqliteStore::open(&path).unwrap());
    // Pretend a newer build migrated the file.
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.pragma_update(None, "user_version", SCHEMA_VERSION + 3)
        .unwrap();
    drop(raw);
    let err = SqliteStore::open(&path).unwrap_err();
    match &err {
        Error::NewerSchema {
            path: p,
            found,
            supported,
        } => {
            assert_eq!(p, &path);
            assert_eq!(*found, SCHEMA_VERSION + 3);
            assert_eq!(*supported, SCHEMA_VERSION);
        }
        other => panic!("wrong error: {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("new.db") && msg.contains(&format!("version {}", SCHEMA_VERSION + 3)));
}

#[test]
fn corrupted_file_is_a_typed_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("garbage.db");
    std::fs::write(&path, vec![b'x'; 8192]).unwrap();
    let err = SqliteStore::open(&path).unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains("garbage.db"), "{err}");
}

#[test]
fn missing_directory_is_an_open_error() {
    let err = SqliteStore::open("/nonexistent-dir-pushguide/x.db").unwrap_err();
    assert!(matches!(err, Error::Open { .. }), "{err:?}");
    assert!(err.to_string().contains("/nonexistent-dir-pushguide/x.db"));
}

#[test]
fn read_only_file_is_a_typed_error() {
    use std::os::unix::fs::PermissionsExt;
    // Child mode: run as an unprivileged user by the root case below.
    if let Ok(path) = std::env::var("PG_STORE_RO_PATH") {
        let err = SqliteStore::open(&path).unwrap_err();
        assert!(matches!(err, Error::ReadOnly { .. }), "{err:?}");
        assert!(err.to_string().contains("ro.db"), "{err}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ro.db");
    drop(SqliteStore::open(&path).unwrap());
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444)).unwrap();
    if std::fs::OpenOptions::new().write(true).open(&path).is_err() {
        let err = SqliteStore::open(&path).unwrap_err();
        assert!(matches!(err, Error::ReadOnly { .. }), "{err:?}");
        assert!(err.to_string().contains("ro.db"));
        return;
    }
    // Running as root, where file permissions do not apply: check it as `nobody` in a child process.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(std::env::current_exe().unwrap())
        .args(["read_only_file_is_a_typed_error", "--exact", "--nocapture"])
        .env("PG_STORE_RO_PATH", &path)
        .output()
        .expect("setpriv (util-linux) runs the check as nobody");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("1 passed"),
        "child check failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn locked_database_is_a_typed_error_and_nothing_is_half_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locked.db");
    let opts = StoreOptions::default().busy_timeout(Duration::from_millis(100));
    let a = SqliteStore::open_with(&path, opts.clone()).unwrap();
    let b = SqliteStore::open_with(&path, opts).unwrap();
    let events = web_01_release("d1");
    drop(a);
    let guard = rusqlite::Connection::open(&path).unwrap();
    guard.execute_batch("BEGIN IMMEDIATE").unwrap();
    let err = b.append_events(&events).unwrap_err();
    assert!(matches!(err, Error::Locked { .. }), "{err:?}");
    assert!(err.is_retryable());
    drop(guard);
    assert!(
        b.deployment("d1").unwrap().is_none(),
        "nothing half-written"
    );
    b.append_events(&events).unwrap();
    assert_eq!(
        b.deployment("d1").unwrap().unwrap().events,
        events.len() as u64
    );
}

/// A fleet state write is durable when it returns, visible to every other process at once, and
/// refused when its lease was taken over (fencing); a locked database is an error, never a silent
/// queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_state_writes_are_durable_and_fenced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fleet-fenced.db");
    let opts = StoreOptions::default()
        .busy_timeout(Duration::from_millis(50))
        .lease_ttl(Duration::from_millis(300));
    let a = SqliteStore::open_with(&path, opts.clone()).unwrap();
    let b = SqliteStore::open_with(&path, opts).unwrap();
    let hosts = [host("web-01"), host("web-02")];
    let deployed = |v: &str| pushguide_core::HostChange::Deployed { version: v.into() };
    let lease = LeaseManager::acquire(&a, "shop", "shop-1").await.unwrap();
    FleetState::record(&a, &lease, &hosts, &deployed("1.0"))
        .await
        .unwrap();
    let v = FleetState::versions(&b, "shop", &hosts).await.unwrap();
    assert_eq!(v[&hosts[0]].current.as_deref(), Some("1.0"), "no queue");

    // a locked database fails the write (the engine then stops) and keeps nothing half-written
    let guard = rusqlite::Connection::open(&path).unwrap();
    guard.execute_batch("BEGIN IMMEDIATE").unwrap();
    let err = FleetState::record(&a, &lease, &hosts, &deployed("2.0"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("locked"), "{err}");
    drop(guard);
    let v = FleetState::versions(&b, "shop", &hosts).await.unwrap();
    assert_eq!(v[&hosts[0]].current.as_deref(), Some("1.0"));

    // a's process stops renewing; b takes the expired lease over: a's writes are refused
    a.stop_heartbeat();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let taken = LeaseManager::acquire(&b, "shop", "shop-2").await.unwrap();
    assert!(taken.token > lease.token);
    let err = FleetState::record(&a, &lease, &hosts, &deployed("9.9"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, pushguide_core::Error::Fenced { ref holder, .. } if holder == "shop-1"),
        "{err}"
    );
    assert!(LeaseManager::check(&a, &lease).await.is_err());
    // releasing the stale lease does not free b's
    LeaseManager::release(&a, &lease).await.unwrap();
    assert_eq!(b.lease("shop").unwrap().unwrap().holder, "shop-2");
    FleetState::record(&b, &taken, &hosts[..1], &deployed("2.0"))
        .await
        .unwrap();
    let v = FleetState::versions(&a, "shop", &hosts).await.unwrap();
    assert_eq!(v[&hosts[0]].current.as_deref(), Some("2.0"));
    assert_eq!(v[&hosts[0]].previous.as_deref(), Some("1.0"));
    assert_eq!(v[&hosts[1]].current.as_deref(), Some("1.0"));
}

#[test]
fn failing_batch_rolls_back_whole_append() {
    let s = SqliteStore::open_in_memory().unwrap();
    let mut events = web_01_release("d1");
    // An event of a deployment never started makes the batch fail: nothing of it is kept.
    events.insert(3, ev("ghost", at(1), EventKind::CancelRequested));
    let err = s.append_events(&events).unwrap_err();
    assert!(
        matches!(err, Error::UnknownDeployment { ref deployment, .. } if deployment == "ghost")
    );
    assert!(s.deployment("d1").unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_journal_report_and_fleet_state() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.db");
    let store = SqliteStore::open(&path).unwrap();
    let t = template("shop", 4, 2, "[failure]\nmax_failed = 1\n");
    let engine = engine(&store, &[]);
    let r1 = engine
        .deploy(Request::new(t.clone(), "1.0", Principal::user("alice")))
        .await
        .unwrap();
    assert_eq!(r1.outcome, DeploymentOutcome::Succeeded);
    assert_eq!(r1.history_error, None);
    let engine = support::engine(&store, &["web-03"]);
    let r2 = engine
        .deploy(Request::new(t.clone(), "2.0", Principal::user("alice")))
        .await
        .unwrap();
    // web-03 failed within the budget and its restore to 1.0 failed too: a human must look
    assert_eq!(r2.outcome, DeploymentOutcome::RollbackFailed, "{r2}");

    // A second process (another connection) sees everything.
    let other = SqliteStore::open(&path).unwrap();
    let d = other.deployment(&r2.id).unwrap().unwrap();
    assert_eq!(d.template, "shop");
    assert_eq!(d.version, "2.0");
    assert!(!d.rollback);
    assert_eq!(d.principal, "alice");
    assert_eq!(d.outcome.as_deref(), Some("rollback-failed"));
    assert_eq!(d.reason, r2.reason);
    assert_eq!(d.events, r2.events.len() as u64);
    assert_eq!(
        other.host_status(&r2.id, "web-03").unwrap().as_deref(),
        Some("failed")
    );
    assert_eq!(
        other.host_log(&r2.id, "web-03").unwrap(),
        r2.host_log("web-03")
    );
    assert_eq!(
        other.host_log(&r2.id, "web-01").unwrap(),
        r2.host_log("web-01")
    );
    assert!(!r2.host_log("web-01").is_empty());

    // Per stage and host: web-03 (batch 1) ok in pre-deploy, failed in deploy with the call.
    let rows = other.host_stage_results(&r2.id).unwrap();
    let w3: Vec<_> = rows.iter().filter(|r| r.host == "web-03").collect();
    // then its restore to 1.0 (the default for hosts failing within the budget) failed as well
    assert!(w3.len() >= 3, "{w3:?}");
    assert!(
        w3[2..]
            .iter()
            .all(|r| r.stage == "rollback" && r.status == "failed"),
        "{w3:?}"
    );
    assert_eq!(
        (w3[0].stage.as_str(), w3[0].status.as_str()),
        ("pre-deploy", "ok")
    );
    assert_eq!(
        (w3[1].stage.as_str(), w3[1].status.as_str()),
        ("deploy", "failed")
    );
    assert_eq!(w3[1].fun.as_deref(), Some("file.symlink"));
    assert!(w3[1].detail.as_deref().unwrap().contains("disk full"));
    assert_eq!(w3[1].batch, Some(1));
    let w1: Vec<_> = rows.iter().filter(|r| r.host == "web-01").collect();
    assert_eq!(w1.len(), 3);
    assert!(w1.iter().all(|r| r.status == "ok" && r.duration.is_some()));

    // Calls with jids and counts.
    let calls = other.calls(&r2.id).unwrap();
    assert_eq!(
        calls.len(),
        1 + 2 * 3 + 1,
        "ping + 2 batches x 3 stages + restoring web-03"
    );
    assert_eq!(calls[0].fun, "test.ping");
    assert_eq!(calls[0].stage, "prepare");
    assert!(calls.iter().all(|c| c.jid.is_some()));
    let symlink_b1 = calls
        .iter()
        .find(|c| c.fun == "file.symlink" && c.batch == Some(1))
        .unwrap();
    assert_eq!((symlink_b1.ok, symlink_b1.failed), (1, 1));

    // Fleet state: web-03 still on 1.0 (previous none), the others on 2.0 with 1.0 before.
    let hosts: Vec<_> = ["web-01", "web-03", "web-09"].map(host).to_vec();
    let v = other.host_histories("shop", &hosts).unwrap();
    assert_eq!(v.len(), 2);
    assert_eq!(v[&hosts[0]].current.as_deref(), Some("2.0"));
    assert_eq!(v[&hosts[0]].previous.as_deref(), Some("1.0"));
    // web-03: its restore failed too, so what it runs is unknown; its target stays 1.0
    assert_eq!(v[&hosts[1]].current, None);
    assert!(!v[&hosts[1]].healthy);
    assert_eq!(v[&hosts[1]].previous.as_deref(), Some("1.0"));
    let fleet = other.fleet("shop").unwrap();
    assert_eq!(fleet.len(), 4);
    assert_eq!(fleet[2].version, None);
    assert!(!fleet[2].healthy);

    // The plan shows each host's rollback target from the durable state.
    let fresh = support::engine(&other, &[]);
    let plan = fresh
        .plan(&Request::rollback(
            t.clone(),
            None,
            Principal::user("alice"),
        ))
        .await
        .unwrap();
    let targets: Vec<_> = plan
        .rollback_targets
        .iter()
        .map(|(h, cur, to)| (h.as_str().to_owned(), cur.clone(), to.clone()))
        .collect();
    assert_eq!(
        targets[0],
        ("web-01".into(), Some("2.0".into()), Some("1.0".into()))
    );
    // web-03 is in an unknown state: a rollback brings it back to its last good version
    assert_eq!(targets[2], ("web-03".into(), None, Some("1.0".into())));

    // A rollback to an explicit version is recorded as a rollback.
    let r3 = fresh
        .deploy(Request::rollback(
            t.clone(),
            Some("1.0".into()),
            Principal::user("alice"),
        ))
        .await
        .unwrap();
    let d3 = other.deployment(&r3.id).unwrap().unwrap();
    assert_eq!((d3.version.as_str(), d3.rollback), ("1.0", true));

    // Leases were released at the end of each deployment.
    assert!(other.lease("shop").unwrap().is_none());
}

#[test]
fn fleet_previous_is_the_last_good_version_before_the_current() {
    use pushguide_core::HostChange;
    let s = SqliteStore::open_in_memory().unwrap();
    let h = [host("web-01")];
    let deployed = |v: &str| HostChange::Deployed { version: v.into() };
    for v in ["1", "2", "2"] {
        s.record_unfenced("t", &h, &deployed(v)).unwrap();
    }
    let v = &s.host_histories("t", &h).unwrap()[&h[0]];
    assert_eq!(
        (v.current.as_deref(), v.previous.as_deref()),
        (Some("2"), Some("1"))
    );
    // 3 fails on the host after switching: it runs 3, unhealthy, target 2
    let failed = HostChange::Failed {
        runs: Some("3".into()),
    };
    s.record_unfenced("t", &h, &failed).unwrap();
    let v = &s.host_histories("t", &h).unwrap()[&h[0]];
    assert_eq!(
        (v.current.as_deref(), v.healthy, v.previous.as_deref()),
        (Some("3"), false, Some("2"))
    );
    // restored to 2: the next target is 1, never the failed 3
    s.record_unfenced("t", &h, &HostChange::RolledBack { to: "2".into() })
        .unwrap();
    let v = &s.host_histories("t", &h).unwrap()[&h[0]];
    assert_eq!(
        (v.current.as_deref(), v.healthy, v.previous.as_deref()),
        (Some("2"), true, Some("1"))
    );
    assert!(s.host_histories("other", &h).unwrap().is_empty());
    let row = &s.fleet("t").unwrap()[0];
    assert_eq!(row.good, vec!["1".to_owned(), "2".to_owned()]);
}

/// The engine's check before each batch: renewed while held; once the lease expired and another
/// process took it, the old holder learns it (and who holds it now).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_check_renews_and_reports_a_takeover() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.db");
    let a = SqliteStore::open_with(
        &path,
        StoreOptions::default().lease_ttl(Duration::from_millis(500)),
    )
    .unwrap();
    a.stop_heartbeat();
    let d1 = LeaseManager::acquire(&a, "shop", "d1").await.unwrap();
    for _ in 0..2 {
        // each check renews: two checks 300 ms apart outlive the 500 ms TTL
        tokio::time::sleep(Duration::from_millis(300)).await;
        LeaseManager::check(&a, &d1).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    let b = SqliteStore::open(&path).unwrap();
    let d2 = LeaseManager::acquire(&b, "shop", "d2").await.unwrap();
    let err = LeaseManager::check(&a, &d1).await.unwrap_err();
    assert!(
        matches!(err, pushguide_core::Error::LeaseLost { ref holder, ref reason, .. }
            if holder == "d1" && reason.contains("deployment d2 holds it now")),
        "{err}"
    );
    LeaseManager::check(&b, &d2).await.unwrap();
}

#[test]
fn leases_in_one_database() {
    let s = SqliteStore::open_in_memory().unwrap();
    let l1 = s.acquire_lease("shop", "d1", "release 1.0").unwrap();
    assert_eq!(l1.token, 1);
    let err = s.acquire_lease("shop", "d2", "x").unwrap_err();
    assert!(
        matches!(err, Error::Busy { ref holder, ref reason, .. } if holder == "d1" && reason == "release 1.0")
    );
    let core: pushguide_core::Error = err.into();
    assert!(matches!(core, pushguide_core::Error::Busy { ref holder, .. } if holder == "d1"));
    // a lease has one owner: the same holder name is refused too
    assert!(s.acquire_lease("shop", "d1", "again").is_err());
    s.release_lease("shop", "d2", l1.token).unwrap();
    s.release_lease("shop", "d1", l1.token + 1).unwrap();
    assert!(s.acquire_lease("shop", "d3", "x").is_err(), "not released");
    let renewed = s.renew_lease("shop", "d1", l1.token).unwrap();
    assert!(renewed.expires >= l1.expires);
    s.release_lease("shop", "d1", l1.token).unwrap();
    assert!(matches!(
        s.renew_lease("shop", "d1", l1.token),
        Err(Error::LeaseLost { .. })
    ));
    s.acquire_lease("shop", "d3", "x").unwrap();
    assert_eq!(
        s.lease("shop").unwrap().unwrap().token,
        2,
        "tokens only grow"
    );
    s.acquire_lease("other", "d4", "x").unwrap();
}

#[test]
fn expired_lease_is_taken_over_with_a_larger_token() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.db");
    let opts = StoreOptions::default().lease_ttl(Duration::from_millis(300));
    let a = SqliteStore::open_with(&path, opts.clone()).unwrap();
    let b = SqliteStore::open_with(&path, opts).unwrap();
    let la = a.acquire_lease("shop", "d1", "x").unwrap();
    std::thread::sleep(Duration::from_millis(700));
    // a's heartbeat keeps it alive past its TTL.
    assert!(matches!(
        b.acquire_lease("shop", "d2", "y"),
        Err(Error::Busy { .. })
    ));
    a.stop_heartbeat();
    std::thread::sleep(Duration::from_millis(400));
    let lb = b.acquire_lease("shop", "d2", "y").unwrap();
    assert_eq!(lb.token, la.token + 1);
    assert!(matches!(
        a.renew_lease("shop", "d1", la.token),
        Err(Error::LeaseLost { .. })
    ));
}

#[test]
fn recover_marks_dead_owners_deployments_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.db");
    let opts = StoreOptions::default().lease_ttl(Duration::from_millis(200));
    let dead = SqliteStore::open_with(&path, opts.clone()).unwrap();
    let alive = SqliteStore::open_with(&path, opts).unwrap();
    let mut events = deployment(
        "d1",
        "shop",
        at(0),
        60,
        &["web-01"],
        &[("web-02", Stage::Deploy)],
        DeploymentOutcome::Failed,
        false,
    );
    // Cut after the deploy stage of batch 0 started and web-02 failed.
    let cut = events
        .iter()
        .position(|e| matches!(e.kind, EventKind::HostFailed { .. }))
        .unwrap();
    events.truncate(cut + 1);
    dead.acquire_lease("shop", "d1", "deployment").unwrap();
    dead.append_events(&events).unwrap();
    // Its own deployments and live owners' are not touched.
    assert!(alive.recover().unwrap().is_empty());
    dead.stop_heartbeat();
    std::mem::forget(dead); // like a killed process: no clean close
    std::thread::sleep(Duration::from_millis(300));
    let found = alive.recover().unwrap();
    assert_eq!(found.len(), 1);
    let d = &found[0];
    assert_eq!((d.id.as_str(), d.template.as_str()), ("d1", "shop"));
    assert_eq!(
        (d.batch, d.stage, d.live_hosts),
        (Some(0), Stage::Deploy, 2)
    );
    // web-01 was under way in the batch when the process died: named, at the current stage
    assert_eq!(d.hosts.len(), 2);
    assert_eq!(
        (
            d.hosts[0].host.as_str(),
            d.hosts[0].stage,
            d.hosts[0].status.as_str()
        ),
        ("web-01", Stage::Deploy, "interrupted")
    );
    assert_eq!(
        (
            d.hosts[1].host.as_str(),
            d.hosts[1].stage,
            d.hosts[1].status.as_str()
        ),
        ("web-02", Stage::Deploy, "failed")
    );
    let rec = alive.deployment("d1").unwrap().unwrap();
    assert_eq!(rec.outcome.as_deref(), Some("interrupted"));
    assert_eq!(rec.ended, Some(at(15)));
    assert!(alive.recover().unwrap().is_empty(), "idempotent");
    assert_eq!(alive.interrupted().unwrap(), found);
    // The lease is free again.
    alive.acquire_lease("shop", "d2", "resume").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minion_status_is_kept_across_opens_with_changes() {
    use pushguide_core::{MinionId, MinionStatusStore};
    use std::time::{Duration, UNIX_EPOCH};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("status.db");
    let a = MinionId::new("web-01").unwrap();
    let b = MinionId::new("web-02").unwrap();
    let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let t1 = t0 + Duration::from_secs(60);
    {
        let s = SqliteStore::open(&path).unwrap();
        let first = MinionStatusStore::record(&s, &[(a.clone(), true), (b.clone(), true)], t0)
            .await
            .unwrap();
        assert_eq!(first.len(), 2);
        assert!(first.iter().all(|c| c.was_up.is_none() && c.up));
        assert!(
            MinionStatusStore::record(&s, &[(a.clone(), true), (b.clone(), true)], t0)
                .await
                .unwrap()
                .is_empty()
        );
    }
    let s = SqliteStore::open(&path).unwrap();
    let c = MinionStatusStore::record(&s, &[(a.clone(), true), (b.clone(), false)], t1)
        .await
        .unwrap();
    assert_eq!(c.len(), 1);
    assert_eq!(
        (c[0].minion.as_str(), c[0].up, c[0].was_up),
        ("web-02", false, Some(true))
    );
    let st = MinionStatusStore::status(
        &s,
        &[a.clone(), b.clone(), MinionId::new("web-99").unwrap()],
    )
    .await
    .unwrap();
    assert_eq!(st.len(), 2, "unknown minions are absent");
    assert!(st[0].up && st[0].last_seen == Some(t1) && st[0].since == t0);
    assert!(!st[1].up && st[1].last_seen == Some(t0) && st[1].since == t1 && st[1].checked == t1);
}

/// The store's own error, and whether a SQLite error lies beneath it, found by walking `e`'s
/// chain of sources.
fn store_error_in(e: &pushguide_core::Error) -> Option<(&Error, bool)> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(cur) = next {
        if let Some(store) = cur.downcast_ref::<Error>() {
            let mut below = std::error::Error::source(store);
            let mut sqlite = false;
            while let Some(b) = below {
                sqlite |= b.is::<rusqlite::Error>();
                below = b.source();
            }
            return Some((store, sqlite));
        }
        next = cur.source();
    }
    None
}

/// Every storage port (journal, fleet state, leases, minion status) fails with core's
/// `StoreFailed` naming what it was doing, and keeps the store's error — and SQLite's beneath it —
/// as its source, so a caller can tell a locked file from a missing table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_errors_keep_the_store_error_as_their_source() {
    use pushguide_core::{HistoryStore, MinionStatusStore};

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.db");
    let s = SqliteStore::open(&path).unwrap();
    let lease = LeaseManager::acquire(&s, "shop", "d1").await.unwrap();
    let events = web_01_release("d1");
    HistoryStore::append(&s, &events).await.unwrap();
    // Another connection breaks the file under the store.
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(
            "DROP TABLE reports; DROP TABLE fleet; DROP TABLE leases; DROP TABLE minion_status;",
        )
        .unwrap();
    let hosts = [host("web-01")];
    let change = pushguide_core::HostChange::Deployed {
        version: "1.0".into(),
    };
    let ghost = [ev("ghost", at(1), EventKind::CancelRequested)];
    let results: Vec<(&str, pushguide_core::Error)> = vec![
        (
            "appending to the journal",
            HistoryStore::append(&s, &ghost).await.unwrap_err(),
        ),
        (
            "recording the report",
            HistoryStore::finish(&s, &report_of(&events).unwrap())
                .await
                .unwrap_err(),
        ),
        (
            "reading fleet state",
            FleetState::versions(&s, "shop", &hosts).await.unwrap_err(),
        ),
        (
            "recording fleet state",
            FleetState::record(&s, &lease, &hosts, &change)
                .await
                .unwrap_err(),
        ),
        (
            "acquiring a lease",
            LeaseManager::acquire(&s, "other", "d2").await.unwrap_err(),
        ),
        (
            "renewing a lease",
            LeaseManager::check(&s, &lease).await.unwrap_err(),
        ),
        (
            "releasing a lease",
            LeaseManager::release(&s, &lease).await.unwrap_err(),
        ),
        (
            "recording minion status",
            MinionStatusStore::record(&s, &[(host("web-01"), true)], at(2))
                .await
                .unwrap_err(),
        ),
        (
            "reading minion status",
            MinionStatusStore::status(&s, &hosts).await.unwrap_err(),
        ),
    ];
    for (what, e) in &results {
        assert!(
            matches!(e, pushguide_core::Error::StoreFailed { during, .. } if during == what),
            "{what}: {e:?}"
        );
        let (store, sqlite) = store_error_in(e).unwrap_or_else(|| panic!("{what}: {e:?}"));
        if *what == "appending to the journal" {
            assert!(
                matches!(store, Error::UnknownDeployment { deployment, .. } if deployment == "ghost"),
                "{store:?}"
            );
        } else {
            assert!(matches!(store, Error::Sqlite { .. }), "{what}: {store:?}");
            assert!(sqlite, "{what}: SQLite's error beneath: {store:?}");
            assert!(
                store.to_string().contains("no such table"),
                "{what}: {store}"
            );
        }
        assert!(e.to_string().contains("broken.db"), "{what}: {e}");
    }
}

#[test]
fn a_failure_an_older_build_stored_with_fun_dash_reads_as_no_function() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old-dash.db");
    let store = SqliteStore::open(&path).unwrap();
    let ok = pushguide_core::DeploymentOutcome::PartiallyApplied;
    let events = deployment(
        "d1",
        "shop",
        at(0),
        60,
        &["web-01"],
        &[("web-02", Stage::Deploy)],
        ok,
        false,
    );
    record(&store, &events);
    // what builds before the typed failure wrote for a failure no salt call caused
    let raw = rusqlite::Connection::open(&path).unwrap();
    let changed = raw
        .execute(
            "UPDATE host_state SET fun = '-' WHERE deployment = 'd1' AND host = 'web-02'",
            [],
        )
        .unwrap();
    assert_eq!(changed, 1);
    drop(raw);
    let rows = store.host_results("d1").unwrap();
    let web02 = rows.iter().find(|r| r.host == "web-02").unwrap();
    assert_eq!(web02.status, "failed");
    assert_eq!(web02.fun, None, "{web02:?}");
}
