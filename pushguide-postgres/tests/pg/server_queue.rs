//! The web service's queue (`pushguide_store::PublishQueue`) on PostgreSQL: the queue checks of
//! the store conformance suite (`pushguide_store::conformance::queue`, run unchanged against SQLite
//! in pushguide-store's tests), with "instances" being several stores connected to one schema; then
//! what only a shared database does: idle workers and live views of every instance woken through
//! the store's one `LISTEN` connection, which comes back after it was lost.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use pushguide_core::{Event, EventKind, HistoryStore, LeaseManager};
use pushguide_postgres::PgConfig;
use pushguide_store::conformance::queue as suite;
use pushguide_store::PublishQueue;

use crate::support::{config, raw, store, url_with};
use crate::{SHORT_TTL, TTL};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_per_template() {
    let Some(c) = config("sq_order") else { return };
    suite::order_per_template(&store(&c, TTL).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_running_per_template() {
    let Some(c) = config("sq_one_running") else {
        return;
    };
    suite::one_running_per_template(&store(&c, TTL).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel() {
    let Some(c) = config("sq_cancel") else { return };
    suite::cancel(&store(&c, TTL).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_claimer_writes() {
    let Some(c) = config("sq_claimer") else {
        return;
    };
    let (a, b) = (store(&c, TTL).await, store(&c, TTL).await);
    suite::only_the_claimer_writes(&a, &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupt_dead_publishes() {
    let Some(c) = config("sq_dead") else { return };
    let ttl = SHORT_TTL * 2;
    let (live, dead) = (store(&c, ttl).await, store(&c, ttl).await);
    suite::interrupt_dead_publishes(&live, &dead, || dead.stop_heartbeat(), ttl).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_claimers_each_request_once() {
    let Some(c) = config("sq_concurrent") else {
        return;
    };
    let mut stores = Vec::new();
    for _ in 0..3 {
        stores.push(Arc::new(store(&c, TTL).await));
    }
    suite::concurrent_claimers_each_request_once(&stores, 4, 30, 5).await;
}

/// `config`'s settings, connecting as `application_name = app` (to find the store's connections).
fn named(c: &PgConfig, app: &str) -> PgConfig {
    let mut n = PgConfig::from_url(&url_with(&format!("application_name={app}"))).unwrap();
    n.password = c.password.clone();
    n.ca_file = c.ca_file.clone();
    n.schema = c.schema.clone();
    n.pool_size = c.pool_size;
    n
}

/// The process ids of the store's backends listening for notifications.
async fn listeners(db: &tokio_postgres::Client, app: &str) -> Vec<i32> {
    db.query(
        "SELECT pid FROM pg_stat_activity
         WHERE application_name = $1 AND query LIKE 'LISTEN %'",
        &[&app],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// Waits until the store listens on one connection other than `before`'s; returns its pid.
async fn listening_anew(db: &tokio_postgres::Client, app: &str, before: Option<i32>) -> i32 {
    let begun = Instant::now();
    loop {
        let now = listeners(db, app).await;
        if now.len() == 1 && Some(now[0]) != before {
            // past the wake-up every (re)start of listening sends
            tokio::time::sleep(Duration::from_millis(300)).await;
            return now[0];
        }
        assert!(
            begun.elapsed() < Duration::from_secs(15),
            "no new listener: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Many idle workers of one instance share one listening connection; a request queued through
/// another instance wakes every one of them at once (their poll is 30 s); killing that connection
/// does not stop the wake-ups: it is made again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_workers_share_one_listener_woken_by_another_instance_and_it_reconnects() {
    let Some(c) = config("sq_listen") else { return };
    let app = format!("sq_listen_{}", std::process::id());
    let a = Arc::new(store(&named(&c, &app), TTL).await);
    let b = store(&c, TTL).await;
    let db = raw(&c).await;
    // the first wait starts the listener and returns once it listens
    PublishQueue::wait_for_publishes(&*a, Duration::from_secs(15)).await;
    let mut pid = None;
    for round in 0..2 {
        // listening (in round 1: again, made by the listener itself after it was killed)
        pid = Some(listening_anew(&db, &app, pid).await);
        let mut waits = Vec::new();
        for _ in 0..20 {
            let a = a.clone();
            waits.push(tokio::spawn(async move {
                let t0 = Instant::now();
                PublishQueue::wait_for_publishes(&*a, Duration::from_secs(30)).await;
                t0.elapsed()
            }));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            waits.iter().all(|w| !w.is_finished()),
            "round {round}: a waiter woke with nothing queued"
        );
        assert_eq!(
            listeners(&db, &app).await,
            pid.into_iter().collect::<Vec<_>>(),
            "round {round}: one connection for 20 waiters"
        );
        PublishQueue::enqueue_publish(&b, "a", "alice", &[], "{}")
            .await
            .unwrap();
        for w in waits {
            let after = w.await.unwrap();
            assert!(
                after < Duration::from_secs(10),
                "round {round}: woken after {after:?}"
            );
        }
        // lose the listening connection: the next round needs it made again
        let killed: i64 = db
            .query_one(
                "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                 WHERE application_name = $1 AND query LIKE 'LISTEN %') t",
                &[&app],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(killed, 1);
    }
    // without a notification the poll ends the wait (once listening again)
    listening_anew(&db, &app, pid).await;
    let t0 = Instant::now();
    PublishQueue::wait_for_publishes(&*a, Duration::from_millis(300)).await;
    assert!(
        t0.elapsed() >= Duration::from_millis(250),
        "{:?}",
        t0.elapsed()
    );
}

fn event(id: &Arc<str>, ms: u64, kind: EventKind) -> Event {
    Event {
        at: SystemTime::UNIX_EPOCH + Duration::from_millis(1_760_000_000_000 + ms),
        deployment: id.clone(),
        kind,
    }
}

fn started(id: &Arc<str>, template: &str) -> Event {
    event(
        id,
        0,
        EventKind::DeploymentStarted {
            template: template.into(),
            version: "1.0".into(),
            user: "alice".into(),
            dry_run: false,
            rollback: false,
        },
    )
}

/// A live view on one instance waiting for deployment X's journal is woken by another instance's
/// append to X (NOTIFY pushguide_journal in the append's transaction), not by an append to Y; with
/// nothing appended the poll ends the wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_view_is_woken_by_another_instances_append_to_its_deployment_only() {
    let Some(c) = config("sq_journal") else {
        return;
    };
    let (viewer, writer) = (store(&c, TTL).await, store(&c, TTL).await);
    let (x, y): (Arc<str>, Arc<str>) = (Arc::from("dep-x"), Arc::from("dep-y"));
    writer.acquire("tx", "dep-x").await.unwrap();
    writer.acquire("ty", "dep-y").await.unwrap();
    writer.append(&[started(&x, "tx")]).await.unwrap();
    writer.append(&[started(&y, "ty")]).await.unwrap();
    // the first wait starts the listener (and returns once it listens: appends may have been missed)
    viewer.wait_journal("dep-x", Duration::from_secs(10)).await;

    let v = viewer.clone();
    let wait = tokio::spawn(async move {
        let t0 = Instant::now();
        v.wait_journal("dep-x", Duration::from_secs(30)).await;
        t0.elapsed()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // an append to y does not wake x's view
    writer
        .append(&[event(&y, 1, EventKind::CancelRequested)])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!wait.is_finished(), "woken by another deployment's append");
    writer
        .append(&[event(&x, 1, EventKind::CancelRequested)])
        .await
        .unwrap();
    let after = wait.await.unwrap();
    assert!(
        after < Duration::from_secs(10),
        "woken {after:?} after it began waiting"
    );
    let t0 = Instant::now();
    viewer
        .wait_journal("dep-x", Duration::from_millis(300))
        .await;
    assert!(
        t0.elapsed() >= Duration::from_millis(250),
        "{:?}",
        t0.elapsed()
    );
}

/// Interrupting a dead instance's running request wakes every instance's idle workers: its
/// template's next request may run now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupting_a_dead_instances_request_wakes_idle_workers() {
    let Some(c) = config("sq_interrupt_wake") else {
        return;
    };
    let ttl = SHORT_TTL;
    let (live, dead, idle) = (
        store(&c, ttl).await,
        store(&c, ttl).await,
        Arc::new(store(&c, ttl).await),
    );
    // the first wait starts the idle instance's listener and returns once it listens
    PublishQueue::wait_for_publishes(&*idle, Duration::from_secs(15)).await;
    let r1 = PublishQueue::enqueue_publish(&dead, "a", "alice", &[], "{}")
        .await
        .unwrap();
    let a2 = PublishQueue::enqueue_publish(&live, "a", "bob", &[], "{}")
        .await
        .unwrap();
    assert_eq!(
        PublishQueue::claim_publish(&dead)
            .await
            .unwrap()
            .map(|q| q.id),
        Some(r1)
    );
    dead.stop_heartbeat();
    tokio::time::sleep(ttl * 2 + Duration::from_millis(300)).await;
    let i = idle.clone();
    let wait = tokio::spawn(async move {
        let t0 = Instant::now();
        PublishQueue::wait_for_publishes(&*i, Duration::from_secs(30)).await;
        t0.elapsed()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!wait.is_finished(), "woken with nothing new");
    let found = PublishQueue::interrupt_dead_publishes(&live).await.unwrap();
    assert_eq!(found.iter().map(|q| q.id).collect::<Vec<_>>(), [r1]);
    let after = wait.await.unwrap();
    assert!(after < Duration::from_secs(10), "woken after {after:?}");
    assert_eq!(
        PublishQueue::claim_publish(&*idle)
            .await
            .unwrap()
            .map(|q| q.id),
        Some(a2)
    );
}

/// A dead instance's running request stays `running` while its template's lease is live: the
/// deployment it started holds the lease through a store (and heartbeat) of its own, which can
/// outlive the worker's heartbeat; ending the request earlier would let the template's next request
/// be claimed and refused as busy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_instances_request_waits_for_its_templates_lease_to_expire() {
    let Some(c) = config("sq_dead_lease") else {
        return;
    };
    let ttl = SHORT_TTL;
    let (live, dead) = (store(&c, ttl).await, store(&c, ttl).await);
    // the deployment's own store, with a long lease
    let deploying = store(&c, Duration::from_secs(60)).await;
    let id = PublishQueue::enqueue_publish(&dead, "a", "alice", &[], "{}")
        .await
        .unwrap();
    PublishQueue::claim_publish(&dead).await.unwrap().unwrap();
    PublishQueue::publish_started(&dead, id, "a-dep")
        .await
        .unwrap();
    let lease = deploying
        .acquire_lease("a", "a-dep", "deploy")
        .await
        .unwrap();
    dead.stop_heartbeat();
    tokio::time::sleep(ttl * 2 + Duration::from_millis(300)).await;
    assert!(
        PublishQueue::interrupt_dead_publishes(&live)
            .await
            .unwrap()
            .is_empty(),
        "interrupted while its template's lease is live"
    );
    assert_eq!(
        PublishQueue::publish_request(&live, id)
            .await
            .unwrap()
            .unwrap()
            .state,
        "running"
    );
    deploying
        .release_lease("a", "a-dep", lease.token)
        .await
        .unwrap();
    let found = PublishQueue::interrupt_dead_publishes(&live).await.unwrap();
    assert_eq!(found.iter().map(|q| q.id).collect::<Vec<_>>(), [id]);
}
