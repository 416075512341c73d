//! The takeover checks of the web service's store conformance suite (`pushguide_store::
//! conformance::takeover`), run unchanged against SQLite; pushguide-postgres runs the same checks
//! against PostgreSQL. Deployments become interrupted for real: an instance (a second store on the
//! same file) records them, stops its heartbeat, and recovery marks them once it expired.

use std::time::{Duration, SystemTime};

use pushguide_core::EventKind;
use pushguide_store::conformance::takeover as suite;
use pushguide_store::{SqliteStore, StoreOptions};

use crate::support::ev;

/// A store on a fresh file in `dir` with `deployments` (id, template, start in seconds) interrupted.
fn with_interrupted(dir: &tempfile::TempDir, deployments: &[(&str, &str, u64)]) -> SqliteStore {
    let path = dir.path().join("takeover.db");
    let opts = StoreOptions::default().lease_ttl(Duration::from_millis(200));
    let dead = SqliteStore::open_with(&path, opts.clone()).unwrap();
    let alive = SqliteStore::open_with(&path, opts).unwrap();
    let events: Vec<_> = deployments
        .iter()
        .map(|(id, template, secs)| {
            ev(
                id,
                SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs),
                EventKind::DeploymentStarted {
                    template: (*template).into(),
                    version: "2.0".into(),
                    user: "alice".into(),
                    dry_run: false,
                    rollback: false,
                },
            )
        })
        .collect();
    dead.append_events(&events).unwrap();
    dead.stop_heartbeat();
    std::mem::forget(dead);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(alive.recover().unwrap().len(), deployments.len());
    alive
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_once() {
    let dir = tempfile::tempdir().unwrap();
    let s = with_interrupted(&dir, &[("d1", "shop", 1)]);
    let t = suite::recorded_once(&s, "d1", "shop").await;
    assert_eq!(t.by, s.owner());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newer_work_turns_it_into_a_mark() {
    let dir = tempfile::tempdir().unwrap();
    let s = with_interrupted(&dir, &[("d1", "shop", 1), ("d2", "shop", 2)]);
    suite::newer_work_turns_it_into_a_mark(&s, "d1", "d2", "shop").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_at_once_queue_one_request() {
    let dir = tempfile::tempdir().unwrap();
    let ids: Vec<(String, String)> = (0..20)
        .map(|r| (format!("d{r}"), format!("t{r}")))
        .collect();
    let refs: Vec<(&str, &str, u64)> = ids
        .iter()
        .map(|(d, t)| (d.as_str(), t.as_str(), 1))
        .collect();
    let a = with_interrupted(&dir, &refs);
    let b = SqliteStore::open(dir.path().join("takeover.db")).unwrap();
    suite::two_at_once_queue_one_request(&a, &b, &ids).await;
}
