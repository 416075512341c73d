//! A takeover whose connection breaks inside its transaction is retried on a fresh connection and
//! recorded once: one takeover, one request, one audit entry. Against the test database
//! (`PUSHGUIDE_PG_URL`); skipped without one unless `PUSHGUIDE_REQUIRE_PG=1`.
#![allow(clippy::unwrap_used)]

use pushguide_store::TakeoverRequest;

use crate::server_queue::write_retry_tests::{stores, while_killed};
use crate::sql::Sql;
use crate::PgStore;

async fn count(s: &PgStore, sql: &str) -> i64 {
    let c = s.client("test").await.unwrap();
    c.one(sql, &[]).await.unwrap().get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_takeover_broken_mid_transaction_is_retried_and_recorded_once() {
    let app = format!("t_takeretry_{}", std::process::id());
    let Some((store, killer)) = stores(&app).await else {
        return;
    };
    // an interrupted deployment (how recovery leaves it)
    store
        .client("test")
        .await
        .unwrap()
        .exec(
            "INSERT INTO deployments (id, template, version, principal, dry_run, started_at,
                ended_at, outcome, owner, last_event_at)
             VALUES ('d1', 'shop', '2.0', 'alice', false, now(), now(), 'interrupted', 'gone',
                     now())",
            &[],
        )
        .await
        .unwrap();
    let t = TakeoverRequest::new(
        "d1",
        "shop",
        "rollback",
        Some("{}".to_owned()),
        vec!["ops".to_owned()],
        "undo",
    );
    // the takeover waits on the audit table (after queueing its request) when its backend is killed
    let s = store.clone();
    let taken = while_killed(&killer, &app, "audit", async move { s.take_over(&t).await })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(taken.policy, "rollback");
    let id = taken.request.unwrap();
    assert_eq!(
        count(&store, "SELECT count(*) FROM publish_requests").await,
        1
    );
    assert_eq!(count(&store, "SELECT count(*) FROM takeovers").await, 1);
    assert_eq!(
        count(
            &store,
            "SELECT count(*) FROM audit WHERE action = 'takeover'"
        )
        .await,
        1
    );
    assert_eq!(
        store
            .takeover_by_request(id)
            .await
            .unwrap()
            .unwrap()
            .deployment,
        "d1"
    );
}

/// An attempt whose commit went through but whose answer was lost: the retry (same key) finds the
/// takeover it recorded and reports it won, queueing nothing more; another instance's attempt
/// (another key) is told it lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_takeover_retried_after_its_commit_went_through_is_found_by_its_key() {
    let app = format!("t_takekey_{}", std::process::id());
    let Some((store, _killer)) = stores(&app).await else {
        return;
    };
    store
        .client("test")
        .await
        .unwrap()
        .exec(
            "INSERT INTO deployments (id, template, version, principal, dry_run, started_at,
                ended_at, outcome, owner, last_event_at)
             VALUES ('d1', 'shop', '2.0', 'alice', false, now(), now(), 'interrupted', 'gone',
                     now())",
            &[],
        )
        .await
        .unwrap();
    let t = TakeoverRequest::new(
        "d1",
        "shop",
        "rollback",
        Some("{}".to_owned()),
        vec!["ops".to_owned()],
        "undo",
    );
    let key = store.write_key();
    assert!(store.take_over_once(&t, &key, false).await.unwrap());
    // the answer was lost: the retry under the same key finds it
    assert!(store.take_over_once(&t, &key, true).await.unwrap());
    // another attempt (another key) did not take it over
    assert!(!store
        .take_over_once(&t, &store.write_key(), true)
        .await
        .unwrap());
    assert_eq!(
        count(&store, "SELECT count(*) FROM publish_requests").await,
        1
    );
    assert_eq!(
        count(
            &store,
            "SELECT count(*) FROM audit WHERE action = 'takeover'"
        )
        .await,
        1
    );
}
