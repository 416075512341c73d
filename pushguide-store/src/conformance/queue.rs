//! Conformance checks of the queue part of [`crate::ServerStore`] ([`PublishQueue`]): the order
//! of a template's requests, one running request per template, withdrawing, writes only by the
//! claiming instance, requests of a dead instance, and concurrent claimers of several instances.
//!
//! Each check takes fresh, empty stores. Where a check needs several *instances* it takes several
//! handles on one store (one SQLite file opened twice, one PostgreSQL schema connected twice): each
//! handle is an instance with its own owner id.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::{Error, PublishQueue, QueuedPublish};

fn g() -> Vec<String> {
    vec!["ops".to_owned(), "web".to_owned()]
}

async fn enqueue<S: PublishQueue + ?Sized>(s: &S, template: &str, user: &str) -> i64 {
    s.enqueue_publish(template, user, &g(), &format!("{{\"by\":\"{user}\"}}"))
        .await
        .unwrap_or_else(|e| panic!("queueing a request for {template}: {e}"))
}

async fn claim<S: PublishQueue + ?Sized>(s: &S) -> Option<QueuedPublish> {
    s.claim_publish()
        .await
        .unwrap_or_else(|e| panic!("claiming: {e}"))
}

async fn request<S: PublishQueue + ?Sized>(s: &S, id: i64) -> QueuedPublish {
    s.publish_request(id)
        .await
        .unwrap_or_else(|e| panic!("reading request {id}: {e}"))
        .unwrap_or_else(|| panic!("request {id} is missing"))
}

fn ids(q: &[QueuedPublish]) -> Vec<i64> {
    q.iter().map(|q| q.id).collect()
}

/// A template's requests are claimed oldest first and one at a time, while other templates' run;
/// a request keeps what was queued (template, user, groups, request) and records its claim, its
/// deployment and its end.
pub async fn order_per_template<S: PublishQueue + ?Sized>(s: &S) {
    let a1 = enqueue(s, "a", "alice").await;
    let a2 = enqueue(s, "a", "bob").await;
    let b1 = enqueue(s, "b", "bob").await;
    assert!(a1 < a2 && a2 < b1, "ids increase: {a1} {a2} {b1}");
    let queued = s.publish_queue(None).await.expect("the queue");
    assert_eq!(ids(&queued), [a1, a2, b1], "the queue, oldest first");
    assert!(queued.iter().all(|q| q.state == "queued"), "{queued:?}");
    let q = &queued[0];
    assert_eq!(
        (q.template.as_str(), q.user.as_str(), q.request.as_str()),
        ("a", "alice", "{\"by\":\"alice\"}")
    );
    assert_eq!(q.groups, g());
    assert!(q.started.is_none() && q.ended.is_none() && q.worker.is_none());
    let only_a = s.publish_queue(Some("a")).await.expect("the queue of a");
    assert_eq!(ids(&only_a), [a1, a2]);

    let first = claim(s).await.expect("a1 may run");
    assert_eq!((first.id, first.state.as_str()), (a1, "running"));
    assert_eq!(first.groups, g(), "the claim returns the groups");
    assert!(first.started.is_some(), "the claim records its start");
    assert!(first.worker.is_some(), "the claim records its instance");
    // a1 runs: a2 waits behind it; b1 may run
    assert_eq!(claim(s).await.map(|q| q.id), Some(b1));
    assert_eq!(claim(s).await.map(|q| q.id), None, "a2 waits for a1");

    s.publish_started(a1, "dep-a1")
        .await
        .expect("recording a1's deployment");
    s.finish_publish(a1, None).await.expect("ending a1");
    let done = request(s, a1).await;
    assert_eq!(
        (done.state.as_str(), done.deployment.as_deref(), done.error),
        ("done", Some("dep-a1"), None)
    );
    assert!(done.ended.is_some());
    assert_eq!(ids(&s.publish_queue(None).await.expect("queue")), [a2, b1]);

    assert_eq!(claim(s).await.map(|q| q.id), Some(a2), "then a2");
    s.finish_publish(a2, Some("no such version"))
        .await
        .expect("failing a2");
    let failed = request(s, a2).await;
    assert_eq!(
        (failed.state.as_str(), failed.error.as_deref()),
        ("failed", Some("no such version"))
    );
    assert!(s.publish_request(b1 + 1000).await.expect("read").is_none());
}

/// While one of a template's requests runs no other of it is claimed, however many wait and
/// however often a worker asks; it may run again once that one ended, whatever the outcome.
pub async fn one_running_per_template<S: PublishQueue + ?Sized>(s: &S) {
    let mut queued = Vec::new();
    for n in 0..5 {
        queued.push(enqueue(s, "a", &format!("u{n}")).await);
    }
    for (n, id) in queued.iter().enumerate() {
        let q = claim(s).await.expect("the next request of a");
        assert_eq!(q.id, *id, "request {n} in order");
        for _ in 0..3 {
            assert!(claim(s).await.is_none(), "a second request of a runs");
        }
        let running = s.publish_queue(Some("a")).await.expect("the queue");
        assert_eq!(
            running.iter().filter(|q| q.state == "running").count(),
            1,
            "{running:?}"
        );
        let error = (n % 2 == 1).then_some("failed");
        s.finish_publish(q.id, error).await.expect("ending");
    }
    assert!(claim(s).await.is_none(), "nothing left");
}

/// A queued request can be withdrawn (once); a running or ended one cannot; a withdrawn request
/// leaves the queue and holds up nothing behind it.
pub async fn cancel<S: PublishQueue + ?Sized>(s: &S) {
    let a1 = enqueue(s, "a", "alice").await;
    let a2 = enqueue(s, "a", "alice").await;
    let a3 = enqueue(s, "a", "alice").await;
    assert!(s.cancel_publish(a1).await.expect("withdrawing a1"));
    assert!(
        !s.cancel_publish(a1).await.expect("withdrawing a1 again"),
        "withdrawn twice"
    );
    let c = request(s, a1).await;
    assert_eq!(c.state, "cancelled");
    assert!(c.ended.is_some(), "a withdrawal records its end");
    assert_eq!(ids(&s.publish_queue(Some("a")).await.expect("q")), [a2, a3]);
    assert_eq!(
        claim(s).await.map(|q| q.id),
        Some(a2),
        "a withdrawn request holds up nothing"
    );
    assert!(
        !s.cancel_publish(a2).await.expect("withdrawing a2"),
        "a running request is not withdrawn"
    );
    assert_eq!(request(s, a2).await.state, "running");
    assert!(s.cancel_publish(a3).await.expect("withdrawing a3"));
    s.finish_publish(a2, None).await.expect("ending a2");
    assert!(
        !s.cancel_publish(a2).await.expect("withdrawing a2"),
        "an ended request is not withdrawn"
    );
    assert!(!s.cancel_publish(a3 + 1000).await.expect("no such request"));
    assert!(claim(s).await.is_none(), "a3 was withdrawn");
    assert!(s.publish_queue(None).await.expect("q").is_empty());
}

fn assert_not_claimed(r: Result<(), Error>, id: i64, state: Option<&str>, what: &str) {
    match r {
        Err(Error::NotClaimed {
            id: got, state: s, ..
        }) => {
            assert_eq!(got, id, "{what}");
            assert_eq!(s.as_deref(), state, "{what}");
        }
        other => panic!("{what}: expected NotClaimed, got {other:?}"),
    }
}

/// Only the instance that claimed a request records its deployment and its end: another instance
/// (`b`, a second handle on `a`'s store) is refused with [`Error::NotClaimed`] naming the state and
/// the claiming instance, and so is any write about a request that no longer runs.
pub async fn only_the_claimer_writes<S: PublishQueue + ?Sized>(a: &S, b: &S) {
    let id = enqueue(a, "a", "alice").await;
    let q = claim(a).await.expect("a claims");
    assert_eq!(q.id, id);
    let worker = q.worker.clone().expect("the claim names its instance");
    match b.publish_started(id, "dep-b").await {
        Err(Error::NotClaimed {
            id: got,
            state,
            worker: w,
        }) => {
            assert_eq!(
                (got, state.as_deref(), w.as_deref()),
                (id, Some("running"), Some(worker.as_str()))
            );
        }
        other => panic!("b records a's request's deployment: {other:?}"),
    }
    assert_not_claimed(
        b.finish_publish(id, None).await,
        id,
        Some("running"),
        "b ends a's request",
    );
    let r = request(b, id).await;
    assert_eq!(
        (r.state.as_str(), r.deployment.as_deref()),
        ("running", None),
        "b's writes changed nothing"
    );
    a.publish_started(id, "dep-a").await.expect("a records it");
    a.finish_publish(id, Some("boom")).await.expect("a ends it");
    let r = request(b, id).await;
    assert_eq!(
        (
            r.state.as_str(),
            r.deployment.as_deref(),
            r.error.as_deref()
        ),
        ("failed", Some("dep-a"), Some("boom"))
    );
    assert_eq!(r.worker.as_deref(), Some(worker.as_str()));
    assert_not_claimed(
        a.finish_publish(id, None).await,
        id,
        Some("failed"),
        "a ends its request twice",
    );
    assert_not_claimed(
        a.publish_started(id, "dep-x").await,
        id,
        Some("failed"),
        "a records a deployment of an ended request",
    );
    assert_not_claimed(
        a.finish_publish(id + 1000, None).await,
        id + 1000,
        None,
        "ending a request that does not exist",
    );
    // a queued request is nobody's yet
    let queued = enqueue(a, "b", "bob").await;
    assert_not_claimed(
        a.finish_publish(queued, None).await,
        queued,
        Some("queued"),
        "ending a queued request",
    );
}

/// Requests left running by an instance that died (`kill` stops its heartbeat, as a killed
/// process's; its records expire after `ttl`) become `interrupted` with why, once, found by a live
/// instance; a live instance's requests, and the finder's own, are never touched; the template's
/// next request may then run.
pub async fn interrupt_dead_publishes<S: PublishQueue + ?Sized>(
    live: &S,
    dead: &S,
    kill: impl FnOnce(),
    ttl: Duration,
) {
    let r1 = enqueue(dead, "a", "alice").await;
    let r2 = enqueue(dead, "b", "alice").await;
    let r3 = enqueue(live, "c", "bob").await;
    let a2 = enqueue(live, "a", "bob").await;
    assert_eq!(claim(dead).await.map(|q| q.id), Some(r1));
    assert_eq!(claim(dead).await.map(|q| q.id), Some(r2));
    dead.publish_started(r2, "dep-r2").await.expect("started");
    assert_eq!(claim(live).await.map(|q| q.id), Some(r3));
    assert!(
        live.interrupt_dead_publishes()
            .await
            .expect("interrupting")
            .is_empty(),
        "the other instance still beats"
    );
    assert!(
        dead.interrupt_dead_publishes()
            .await
            .expect("interrupting")
            .is_empty(),
        "nobody is dead"
    );
    kill();
    let deadline = Instant::now() + ttl * 3 + Duration::from_secs(10);
    let found = loop {
        let found = live.interrupt_dead_publishes().await.expect("interrupting");
        if !found.is_empty() {
            break found;
        }
        assert!(
            Instant::now() < deadline,
            "the dead instance's requests were never interrupted"
        );
        tokio::time::sleep(ttl / 4).await;
    };
    assert_eq!(ids(&found), [r1, r2], "{found:?}");
    assert!(found
        .iter()
        .all(|q| q.state == "interrupted" && q.ended.is_some()));
    let why = |q: &QueuedPublish| q.error.clone().unwrap_or_default();
    assert!(
        why(&found[0]).contains("before its deployment started"),
        "{found:?}"
    );
    assert!(
        why(&found[1]).contains("while its deployment ran"),
        "{found:?}"
    );
    assert_eq!(found[1].deployment.as_deref(), Some("dep-r2"));
    assert!(
        live.interrupt_dead_publishes()
            .await
            .expect("again")
            .is_empty(),
        "interrupted once"
    );
    assert_eq!(request(live, r3).await.state, "running", "live untouched");
    assert_eq!(request(live, r1).await.state, "interrupted");
    assert_eq!(
        claim(live).await.map(|q| q.id),
        Some(a2),
        "a's next request may run"
    );
}

/// One run of a claimed request, as the workers saw it.
#[derive(Clone, Debug)]
struct Run {
    template: String,
    id: i64,
    start: Instant,
    end: Instant,
}

/// `stores` (several instances on one store) × `workers` tasks each claim and run `requests`
/// requests queued round-robin over `templates` templates through the instances, waiting with
/// [`PublishQueue::wait_for_publishes`] when idle: every request runs exactly once, a template's
/// requests run in order and never overlap, and the queue ends empty.
pub async fn concurrent_claimers_each_request_once<S: PublishQueue + ?Sized>(
    stores: &[Arc<S>],
    workers: usize,
    requests: usize,
    templates: usize,
) {
    assert!(!stores.is_empty() && templates > 0);
    let mut queued: HashMap<i64, String> = HashMap::new();
    for n in 0..requests {
        let t = format!("t{}", n % templates);
        let id = enqueue(&*stores[n % stores.len()], &t, &format!("u{n}")).await;
        queued.insert(id, t);
    }
    let runs: Arc<Mutex<Vec<Run>>> = Arc::default();
    let mut tasks = Vec::new();
    for s in stores {
        for w in 0..workers {
            let (s, runs) = (s.clone(), runs.clone());
            tasks.push(tokio::spawn(async move {
                let deadline = Instant::now() + Duration::from_secs(120);
                loop {
                    let done = runs.lock().unwrap_or_else(PoisonError::into_inner).len();
                    if done >= requests {
                        return;
                    }
                    assert!(
                        Instant::now() < deadline,
                        "the queue did not drain in 120 s"
                    );
                    let Some(q) = s.claim_publish().await.expect("claiming") else {
                        s.wait_for_publishes(Duration::from_millis(20)).await;
                        continue;
                    };
                    let start = Instant::now();
                    // long against a claim's latency: an overlapping claim would have the time
                    tokio::time::sleep(Duration::from_millis(
                        30 + (q.id as u64 * 7 + w as u64) % 11,
                    ))
                    .await;
                    let end = Instant::now();
                    s.finish_publish(q.id, None).await.expect("ending");
                    runs.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(Run {
                            template: q.template,
                            id: q.id,
                            start,
                            end,
                        });
                }
            }));
        }
    }
    for t in tasks {
        t.await.expect("a worker failed");
    }
    let runs = runs.lock().unwrap_or_else(PoisonError::into_inner).clone();
    let mut ran: Vec<i64> = runs.iter().map(|r| r.id).collect();
    ran.sort_unstable();
    let mut want: Vec<i64> = queued.keys().copied().collect();
    want.sort_unstable();
    assert_eq!(ran, want, "every request ran exactly once");
    for t in 0..templates {
        let t = format!("t{t}");
        let mut mine: Vec<&Run> = runs.iter().filter(|r| r.template == t).collect();
        mine.sort_by_key(|r| r.start);
        for pair in mine.windows(2) {
            assert!(
                pair[0].id < pair[1].id,
                "{t}: {} ran before {}",
                pair[1].id,
                pair[0].id
            );
            assert!(
                pair[0].end <= pair[1].start,
                "{t}: {} and {} overlap",
                pair[0].id,
                pair[1].id
            );
        }
    }
    for (id, t) in &queued {
        let q = request(&*stores[0], *id).await;
        assert_eq!((q.state.as_str(), &q.template), ("done", t), "request {id}");
    }
    assert!(stores[0].publish_queue(None).await.expect("q").is_empty());
}
