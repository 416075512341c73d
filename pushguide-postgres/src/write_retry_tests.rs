//! Fleet-state and queue writes across a broken connection, against the test database
//! (`PUSHGUIDE_PG_URL`); skipped without one unless `PUSHGUIDE_REQUIRE_PG=1`.
#![allow(clippy::unwrap_used)]

use std::future::Future;
use std::time::{Duration, Instant};

use pushguide_core::{FleetState, HostChange, LeaseManager, MinionId};

use crate::retry::tests::config;
use crate::sql::Sql;
use crate::{Error, PgStore};

fn g() -> Vec<String> {
    vec!["ops".to_owned()]
}

/// Runs `write` while the connection under it is killed: `killer` holds `table` locked, so the
/// write waits inside its statement; then every backend of `app` is terminated and the lock let go.
/// Returns the write's result (after its retries).
pub(crate) async fn while_killed<T, F>(killer: &PgStore, app: &str, table: &str, write: F) -> T
where
    T: Send + 'static,
    F: Future<Output = T> + Send + 'static,
{
    let mut c = killer.client("test").await.unwrap();
    let tx = c.transaction().await.unwrap();
    // a table name of this test, never input
    tx.exec(&format!("LOCK TABLE {table} IN EXCLUSIVE MODE"), &[])
        .await
        .unwrap();
    let write = tokio::spawn(write);
    let begun = Instant::now();
    loop {
        let waiting: i64 = tx
            .one(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE application_name = $1 AND wait_event_type = 'Lock'",
                &[&app],
            )
            .await
            .unwrap()
            .get(0);
        if waiting > 0 {
            break;
        }
        assert!(
            begun.elapsed() < Duration::from_secs(10),
            "the write never waited on {table}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let killed: i64 = tx
        .one(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE application_name = $1 AND pid <> pg_backend_pid()) t",
            &[&app],
        )
        .await
        .unwrap()
        .get(0);
    assert!(killed >= 1, "no backend of the store to kill");
    tx.rollback().await.unwrap();
    write.await.unwrap()
}

pub(crate) async fn stores(app: &str) -> Option<(PgStore, PgStore)> {
    let c = config(app)?;
    let store = PgStore::connect(&c.lease_ttl(Duration::from_secs(30)))
        .await
        .unwrap();
    let killer = PgStore::connect(
        &config(&format!("{app}_killer"))
            .unwrap()
            .schema(app)
            .unwrap(),
    )
    .await
    .unwrap();
    Some((store, killer))
}

async fn count(s: &PgStore, sql: &str) -> i64 {
    let c = s.client("test").await.unwrap();
    c.one(sql, &[]).await.unwrap().get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_writes_after_the_backend_was_killed_are_retried_and_applied_once() {
    let app = format!("t_qretry_{}", std::process::id());
    let Some((store, killer)) = stores(&app).await else {
        return;
    };
    // enqueue
    let s = store.clone();
    let a1 = while_killed(&killer, &app, "publish_requests", async move {
        s.enqueue_publish("a", "alice", &g(), "{}").await
    })
    .await
    .unwrap();
    assert_eq!(
        count(&store, "SELECT count(*) FROM publish_requests").await,
        1
    );
    let a2 = store.enqueue_publish("a", "bob", &g(), "{}").await.unwrap();
    // claim: a1, once; a2 stays queued behind it
    let s = store.clone();
    let claimed = while_killed(&killer, &app, "publish_requests", async move {
        s.claim_publish().await
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!((claimed.id, claimed.state.as_str()), (a1, "running"));
    assert_eq!(
        count(
            &store,
            "SELECT count(*) FROM publish_requests WHERE state = 'running'"
        )
        .await,
        1
    );
    // started, finished
    let s = store.clone();
    while_killed(&killer, &app, "publish_requests", async move {
        s.publish_started(a1, "dep-1").await
    })
    .await
    .unwrap();
    let s = store.clone();
    while_killed(&killer, &app, "publish_requests", async move {
        s.finish_publish(a1, None).await
    })
    .await
    .unwrap();
    let done = store.publish_request(a1).await.unwrap().unwrap();
    assert_eq!(
        (done.state.as_str(), done.deployment.as_deref()),
        ("done", Some("dep-1"))
    );
    // cancel
    assert_eq!(store.claim_publish().await.unwrap().unwrap().id, a2);
    let a3 = store
        .enqueue_publish("a", "carol", &g(), "{}")
        .await
        .unwrap();
    let s = store.clone();
    let withdrawn = while_killed(&killer, &app, "publish_requests", async move {
        s.cancel_publish(a3).await
    })
    .await
    .unwrap();
    assert!(withdrawn);
    assert_eq!(
        store.publish_request(a3).await.unwrap().unwrap().state,
        "cancelled"
    );
    // a refusal that is not a broken connection is not retried
    let begun = Instant::now();
    let e = store.finish_publish(a1, None).await.unwrap_err();
    assert!(matches!(e, Error::NotClaimed { id, .. } if id == a1), "{e}");
    assert!(begun.elapsed() < Duration::from_secs(2), "not retried");
    store.close().await.unwrap();
    killer.close().await.unwrap();
}

/// A retry after a commit whose answer was lost (the same write key again) applies nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_write_retried_after_its_commit_went_through_is_applied_once() {
    let app = format!("t_qonce_{}", std::process::id());
    let Some((store, other)) = stores(&app).await else {
        return;
    };
    let key = store.write_key();
    let a1 = store
        .enqueue_once("a", "alice", &g(), "{}", &key)
        .await
        .unwrap();
    assert_eq!(
        store
            .enqueue_once("a", "alice", &g(), "{}", &key)
            .await
            .unwrap(),
        a1
    );
    assert_eq!(
        count(&store, "SELECT count(*) FROM publish_requests").await,
        1
    );
    let b1 = store.enqueue_publish("b", "bob", &g(), "{}").await.unwrap();

    // the claim committed, its answer was lost: the retry (first looking up, or racing into the
    // key's unique index) returns the same request and claims no second one
    let key = store.write_key();
    let first = store.claim_once(&key, false).await.unwrap().unwrap();
    assert_eq!(first.id, a1);
    assert_eq!(store.claim_once(&key, true).await.unwrap().unwrap().id, a1);
    assert_eq!(store.claim_once(&key, false).await.unwrap().unwrap().id, a1);
    assert_eq!(
        store.publish_request(b1).await.unwrap().unwrap().state,
        "queued",
        "no second request claimed"
    );

    // finish: the retry succeeds instead of answering NotClaimed; another write is refused
    let key = store.write_key();
    store
        .finish_publish_once(a1, Some("no such version"), &key)
        .await
        .unwrap();
    store
        .finish_publish_once(a1, Some("no such version"), &key)
        .await
        .unwrap();
    let e = store
        .finish_publish_once(a1, None, &store.write_key())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::NotClaimed { .. }), "{e}");
    let failed = store.publish_request(a1).await.unwrap().unwrap();
    assert_eq!(
        (failed.state.as_str(), failed.error.as_deref()),
        ("failed", Some("no such version"))
    );

    // cancel: the retry answers true; another instance's withdrawal of it answers false
    let key = store.write_key();
    assert!(store.cancel_once(b1, &key).await.unwrap());
    assert!(store.cancel_once(b1, &key).await.unwrap());
    assert!(!other.cancel_publish(b1).await.unwrap());
    store.close().await.unwrap();
    other.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_writes_after_the_backend_was_killed_are_retried_and_applied_once() {
    let app = format!("t_fretry_{}", std::process::id());
    let Some((store, killer)) = stores(&app).await else {
        return;
    };
    let hosts = vec![
        MinionId::new("web-01").unwrap(),
        MinionId::new("web-02").unwrap(),
    ];
    let deployed = |v: &str| HostChange::Deployed { version: v.into() };
    let lease = store.acquire("shop", "d1").await.unwrap();
    store
        .record_change(&lease, &hosts, &deployed("1.0"))
        .await
        .unwrap();
    let (s, l, h) = (store.clone(), lease.clone(), hosts.clone());
    while_killed(&killer, &app, "fleet", async move {
        s.record_change(
            &l,
            &h,
            &HostChange::Deployed {
                version: "2.0".into(),
            },
        )
        .await
    })
    .await
    .unwrap();
    let fleet = store.fleet("shop").await.unwrap();
    assert_eq!(fleet.len(), 2);
    for h in &fleet {
        assert_eq!(h.version.as_deref(), Some("2.0"));
        assert_eq!(h.previous.as_deref(), Some("1.0"));
        assert_eq!(h.good, ["1.0", "2.0"]);
    }
    let s = store.clone();
    let h = hosts.clone();
    while_killed(&killer, &app, "fleet", async move {
        s.record_unfenced("shop", &h[..1], &HostChange::Failed { runs: None })
            .await
    })
    .await
    .unwrap();
    assert!(!store.fleet("shop").await.unwrap()[0].healthy);

    // the same change again (a retry after a commit whose answer was lost) changes nothing
    for change in [
        deployed("3.0"),
        HostChange::RolledBack { to: "2.0".into() },
        HostChange::Failed {
            runs: Some("2.0".into()),
        },
    ] {
        store
            .write_change_once("shop", Some(&lease), &hosts, &change)
            .await
            .unwrap();
        let once = store.fleet("shop").await.unwrap();
        store
            .write_change_once("shop", Some(&lease), &hosts, &change)
            .await
            .unwrap();
        assert_eq!(store.fleet("shop").await.unwrap(), once, "{change:?}");
    }

    // every attempt checks the fencing token: a taken-over lease is refused at once, not retried
    let stale = pushguide_core::Lease::new("shop", "d0", lease.token - 1);
    let begun = Instant::now();
    let e = FleetState::record(&store, &stale, &hosts, &deployed("9.9"))
        .await
        .unwrap_err();
    assert!(matches!(e, pushguide_core::Error::Fenced { .. }), "{e}");
    assert!(begun.elapsed() < Duration::from_secs(2), "not retried");
    LeaseManager::release(&store, &lease).await.unwrap();
    store.close().await.unwrap();
    killer.close().await.unwrap();
}
