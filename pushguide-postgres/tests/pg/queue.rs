//! The publish queue on PostgreSQL: order per template, withdrawal, dead instances, fencing by the
//! claiming instance, several instances' workers claiming at once, and LISTEN/NOTIFY wake-ups.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use pushguide_postgres::{Error, PgConfig};

use crate::support::{config, raw, store};
use crate::TTL;

/// One run of a request: (template, id, start, end).
type Run = (String, i64, Instant, Instant);

fn g() -> Vec<String> {
    vec!["ops".into()]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_runs_a_templates_requests_one_at_a_time_in_order() {
    if let Some(c) = config("queue_order") {
        queue_runs_a_templates_requests_one_at_a_time_in_order_on(c).await;
    }
}

/// [`queue_runs_a_templates_requests_one_at_a_time_in_order`] on the store `c` reaches (directly or through PgBouncer).
pub(crate) async fn queue_runs_a_templates_requests_one_at_a_time_in_order_on(c: PgConfig) {
    let s = store(&c, TTL).await;
    let a1 = s.enqueue_publish("a", "alice", &g(), "{}").await.unwrap();
    let a2 = s.enqueue_publish("a", "bob", &g(), "{}").await.unwrap();
    let b1 = s.enqueue_publish("b", "bob", &g(), "{}").await.unwrap();
    let first = s.claim_publish().await.unwrap().unwrap();
    assert_eq!((first.id, first.state.as_str()), (a1, "running"));
    assert_eq!(first.groups, g());
    assert_eq!(first.worker.as_deref(), Some(s.owner()));
    // a1 runs: a2 waits, b1 may run
    assert_eq!(s.claim_publish().await.unwrap().unwrap().id, b1);
    assert!(s.claim_publish().await.unwrap().is_none());
    // the database itself refuses a second running request of a template
    let other = raw(&c).await;
    let e = other
        .execute(
            "UPDATE publish_requests SET state = 'running' WHERE id = $1",
            &[&a2],
        )
        .await
        .unwrap_err();
    // the server sends the error before it aborts the transaction and releases a2's row lock: a
    // claim in between would skip a2 (SKIP LOCKED). The next statement on the same connection
    // runs after the abort.
    other.simple_query("SELECT 1").await.unwrap();
    assert_eq!(
        e.code(),
        Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION),
        "{e}"
    );
    s.publish_started(a1, "dep-1").await.unwrap();
    s.finish_publish(a1, None).await.unwrap();
    let done = s.publish_request(a1).await.unwrap().unwrap();
    assert_eq!(
        (done.state.as_str(), done.deployment.as_deref()),
        ("done", Some("dep-1"))
    );
    assert!(done.ended.is_some());
    assert_eq!(s.claim_publish().await.unwrap().unwrap().id, a2);
    assert!(s.claim_publish().await.unwrap().is_none());
    s.finish_publish(a2, Some("no such version")).await.unwrap();
    let failed = s.publish_request(a2).await.unwrap().unwrap();
    assert_eq!(failed.state, "failed");
    assert_eq!(failed.error.as_deref(), Some("no such version"));
    let since = SystemTime::now() - Duration::from_secs(3600);
    let f = s.failed_publishes(since, 10).await.unwrap();
    assert_eq!(f.iter().map(|q| q.id).collect::<Vec<_>>(), [a2]);
    assert_eq!(
        s.publish_queue(None).await.unwrap().len(),
        1,
        "b1 still runs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_withdrawn_requests_block_nothing() {
    let Some(c) = config("queue_cancel") else {
        return;
    };
    let s = store(&c, TTL).await;
    let a1 = s.enqueue_publish("a", "alice", &g(), "{}").await.unwrap();
    let a2 = s.enqueue_publish("a", "alice", &g(), "{}").await.unwrap();
    assert!(s.cancel_publish(a1).await.unwrap());
    assert!(!s.cancel_publish(a1).await.unwrap());
    assert_eq!(s.claim_publish().await.unwrap().unwrap().id, a2);
    assert!(
        !s.cancel_publish(a2).await.unwrap(),
        "a running request is not withdrawn"
    );
    assert_eq!(s.publish_queue(Some("a")).await.unwrap().len(), 1);
    assert!(s.publish_queue(Some("b")).await.unwrap().is_empty());
}

/// Only the instance that claimed a request writes about it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_writes_are_fenced_by_the_claiming_instance() {
    if let Some(c) = config("queue_fence") {
        queue_writes_are_fenced_by_the_claiming_instance_on(c).await;
    }
}

/// [`queue_writes_are_fenced_by_the_claiming_instance`] on the store `c` reaches (directly or through PgBouncer).
pub(crate) async fn queue_writes_are_fenced_by_the_claiming_instance_on(c: PgConfig) {
    let (a, b) = (store(&c, TTL).await, store(&c, TTL).await);
    let id = a.enqueue_publish("a", "alice", &g(), "{}").await.unwrap();
    assert_eq!(a.claim_publish().await.unwrap().unwrap().id, id);
    match b.finish_publish(id, None).await {
        Err(Error::NotClaimed {
            id: i,
            state,
            worker,
        }) => {
            assert_eq!(i, id);
            assert_eq!(state.as_deref(), Some("running"));
            assert_eq!(worker.as_deref(), Some(a.owner()));
        }
        other => panic!("another instance must not end the request: {other:?}"),
    }
    assert!(matches!(
        b.publish_started(id, "dep-x").await,
        Err(Error::NotClaimed { .. })
    ));
    assert!(matches!(
        a.finish_publish(id + 100, None).await,
        Err(Error::NotClaimed { state: None, .. })
    ));
    a.finish_publish(id, None).await.unwrap();
    assert!(
        matches!(
            a.finish_publish(id, None).await,
            Err(Error::NotClaimed { .. })
        ),
        "an ended request is not ended twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_requests_of_a_dead_instance_are_interrupted_and_live_ones_are_not() {
    let Some(c) = config("queue_dead") else {
        return;
    };
    let (dead, live) = (store(&c, TTL).await, store(&c, TTL).await);
    let id = dead
        .enqueue_publish("a", "alice", &g(), "{}")
        .await
        .unwrap();
    dead.claim_publish().await.unwrap().unwrap();
    assert!(
        live.interrupt_dead_publishes().await.unwrap().is_empty(),
        "its instance still beats"
    );
    dead.stop_heartbeat();
    raw(&c)
        .await
        .execute(
            "UPDATE owners SET heartbeat_at = now() - interval '1 hour' WHERE owner = $1",
            &[&dead.owner()],
        )
        .await
        .unwrap();
    assert!(
        dead.interrupt_dead_publishes().await.unwrap().is_empty(),
        "an instance never interrupts its own requests"
    );
    let found = live.interrupt_dead_publishes().await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!((found[0].id, found[0].state.as_str()), (id, "interrupted"));
    assert!(found[0]
        .error
        .as_deref()
        .unwrap()
        .contains("before its deployment started"));
    // the template is free again
    let next = live
        .enqueue_publish("a", "alice", &g(), "{}")
        .await
        .unwrap();
    assert_eq!(live.claim_publish().await.unwrap().unwrap().id, next);
}

/// Three instances with four workers each drain 30 requests for 5 templates queued round-robin
/// through the instances: every request runs exactly once, and a template's requests never overlap
/// and start in the order queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn queue_concurrent_claimers_run_each_request_once_without_overlap() {
    if let Some(c) = config("queue_claimers") {
        queue_concurrent_claimers_run_each_request_once_without_overlap_on(c).await;
    }
}

/// [`queue_concurrent_claimers_run_each_request_once_without_overlap`] on the store `c` reaches (directly or through PgBouncer).
pub(crate) async fn queue_concurrent_claimers_run_each_request_once_without_overlap_on(
    c: PgConfig,
) {
    let stores = [
        store(&c, TTL).await,
        store(&c, TTL).await,
        store(&c, TTL).await,
    ];
    const N: usize = 30;
    let mut queued: HashMap<i64, String> = HashMap::new();
    for n in 0..N {
        let t = format!("t{}", n % 5);
        let id = stores[n % 3]
            .enqueue_publish(&t, "alice", &g(), &format!("{{\"n\":{n}}}"))
            .await
            .unwrap();
        queued.insert(id, t);
    }
    let runs: Arc<Mutex<Vec<Run>>> = Arc::default();
    let finished = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for s in &stores {
        let waiter = s.listen_publishes().await.unwrap();
        for w in 0..4u64 {
            let (s, mut waiter) = (s.clone(), waiter.clone());
            let (runs, finished) = (runs.clone(), finished.clone());
            workers.push(tokio::spawn(async move {
                let deadline = Instant::now() + Duration::from_secs(60);
                while finished.load(Ordering::SeqCst) < N {
                    assert!(Instant::now() < deadline, "the queue did not drain in 60 s");
                    let Some(q) = s.claim_publish().await.unwrap() else {
                        waiter.wait(Duration::from_millis(10)).await;
                        continue;
                    };
                    let start = Instant::now();
                    // long against a claim's latency, so that an overlapping claim would have the time to happen
                    tokio::time::sleep(Duration::from_millis(250 + (q.id as u64 * 7 + w) % 51))
                        .await;
                    let end = Instant::now();
                    runs.lock()
                        .unwrap()
                        .push((q.template.clone(), q.id, start, end));
                    s.finish_publish(q.id, None).await.unwrap();
                    finished.fetch_add(1, Ordering::SeqCst);
                }
            }));
        }
    }
    for w in workers {
        w.await.unwrap();
    }
    let runs = runs.lock().unwrap().clone();
    let mut ids: Vec<i64> = runs.iter().map(|r| r.1).collect();
    ids.sort_unstable();
    let mut want: Vec<i64> = queued.keys().copied().collect();
    want.sort_unstable();
    assert_eq!(ids, want, "every request ran exactly once");
    for t in 0..5 {
        let t = format!("t{t}");
        let mut mine: Vec<_> = runs.iter().filter(|r| r.0 == t).collect();
        mine.sort_by_key(|r| r.2);
        assert_eq!(mine.len(), 6);
        for pair in mine.windows(2) {
            assert!(
                pair[0].1 < pair[1].1,
                "{t}: {} started before {}",
                pair[1].1,
                pair[0].1
            );
            assert!(
                pair[0].3 <= pair[1].2,
                "{t}: {} and {} overlap",
                pair[0].1,
                pair[1].1
            );
        }
    }
    for id in want {
        let q = stores[0].publish_request(id).await.unwrap().unwrap();
        assert_eq!(q.state, "done", "request {id}");
        assert_eq!(q.template, queued[&id]);
    }
}

/// An idle worker waiting with a long poll is woken by a request queued through another instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_notify_wakes_an_idle_worker_of_another_instance() {
    if let Some(c) = config("queue_notify") {
        queue_notify_wakes_an_idle_worker_of_another_instance_on(c).await;
    }
}

/// [`queue_notify_wakes_an_idle_worker_of_another_instance`] on the store `c` reaches (directly or through PgBouncer).
pub(crate) async fn queue_notify_wakes_an_idle_worker_of_another_instance_on(c: PgConfig) {
    let (a, b) = (store(&c, TTL).await, store(&c, TTL).await);
    let mut waiter = a.listen_publishes().await.unwrap();
    // the listener counts once when subscribed
    assert!(
        waiter.wait(Duration::from_secs(5)).await,
        "LISTEN did not start"
    );
    let wait = tokio::spawn(async move {
        let t0 = Instant::now();
        let woken = waiter.wait(Duration::from_secs(30)).await;
        (woken, t0.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let id = b.enqueue_publish("a", "alice", &g(), "{}").await.unwrap();
    let (woken, after) = wait.await.unwrap();
    assert!(woken, "woken by the notification, not by the poll");
    assert!(after < Duration::from_secs(5), "woken after {after:?}");
    assert_eq!(a.claim_publish().await.unwrap().unwrap().id, id);
}
