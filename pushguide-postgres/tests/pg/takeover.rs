//! Takeovers on PostgreSQL: an interrupted deployment (its instance died, its lease expired on the
//! database clock, recovery marked it) is taken over exactly once, with its request and one audit
//! entry, also when two instances try at the same moment; a newer deployment or a pending request
//! of the template turns a rollback into a mark.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use pushguide_core::{Event, EventKind, HistoryStore, LeaseManager};
use pushguide_postgres::PgStore;
use pushguide_store::{AccountStore, PublishQueue, TakeoverRequest};

use crate::support::{config, store};
use crate::{SHORT_TTL, TTL};

fn started(id: &str, template: &str) -> Event {
    Event {
        at: SystemTime::now(),
        deployment: Arc::from(id),
        kind: EventKind::DeploymentStarted {
            template: template.to_owned(),
            version: "2.0".to_owned(),
            user: "alice".to_owned(),
            dry_run: false,
            rollback: false,
        },
    }
}

fn req(id: &str, template: &str) -> TakeoverRequest {
    TakeoverRequest::new(
        id,
        template,
        "rollback",
        Some(r#"{"mode":{"kind":"undo","version":"2.0"},"hosts":["web-01"]}"#.into()),
        vec!["ops".into()],
        "undo 2.0 on web-01",
    )
}

/// Deployments `(id, template)` started by an instance that then dies, marked interrupted by
/// `live`'s recovery once their leases expired.
async fn die_with(c: &pushguide_postgres::PgConfig, live: &PgStore, deployments: &[(&str, &str)]) {
    let dead = store(c, SHORT_TTL).await;
    for (id, template) in deployments {
        dead.acquire(template, id).await.unwrap();
        dead.append(&[started(id, template)]).await.unwrap();
    }
    dead.stop_heartbeat();
    tokio::time::sleep(SHORT_TTL + Duration::from_millis(500)).await;
    let mut marked = live.recover(None).await.unwrap();
    marked.sort();
    let mut want: Vec<String> = deployments.iter().map(|d| d.0.to_owned()).collect();
    want.sort();
    assert_eq!(marked, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_takeover_is_recorded_once_with_one_request_and_one_audit_entry() {
    let Some(c) = config("takeover_once") else {
        return;
    };
    let s = store(&c, TTL).await;
    die_with(&c, &s, &[("d1", "shop")]).await;
    let untaken = PublishQueue::untaken_interrupted(&s).await.unwrap();
    assert_eq!(
        untaken.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        ["d1"]
    );
    let t = PublishQueue::take_over(&s, &req("d1", "shop"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((t.policy.as_str(), t.by.as_str()), ("rollback", s.owner()));
    assert_eq!(t.note, "undo 2.0 on web-01");
    let id = t.request.unwrap();
    assert_eq!(t.request_state.as_deref(), Some("queued"));
    let q = s.publish_request(id).await.unwrap().unwrap();
    assert_eq!(
        (q.user.as_str(), q.groups.clone(), q.template.as_str()),
        ("takeover", vec!["ops".to_owned()], "shop")
    );
    assert!(q.request.contains("undo"), "{}", q.request);
    // the second attempt records nothing and queues nothing
    assert_eq!(s.take_over(&req("d1", "shop")).await.unwrap(), None);
    assert_eq!(s.publish_queue(None).await.unwrap().len(), 1);
    assert!(s.untaken_interrupted().await.unwrap().is_empty());
    let audit: Vec<_> = s
        .audit_log(None, Some("takeover"), 10)
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.action == "takeover")
        .collect();
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0].target, "d1");
    assert!(
        audit[0].detail.contains(&format!("request {id}")),
        "{:?}",
        audit[0]
    );
    // read back by deployment and by request, with the request's state as it moves on
    assert_eq!(
        PublishQueue::takeover(&s, "d1").await.unwrap().as_ref(),
        Some(&t)
    );
    let claimed = s.claim_publish().await.unwrap().unwrap();
    assert_eq!(claimed.id, id);
    let by = PublishQueue::takeover_by_request(&s, id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (by.deployment.as_str(), by.request_state.as_deref()),
        ("d1", Some("running"))
    );
    assert_eq!(s.takeover_by_request(id + 1000).await.unwrap(), None);
    assert_eq!(s.takeover("nope").await.unwrap(), None);
    // not interrupted: nothing
    assert_eq!(s.take_over(&req("nope", "shop")).await.unwrap(), None);
    s.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_deployment_or_a_pending_request_turns_the_takeover_into_a_mark() {
    let Some(c) = config("takeover_mark") else {
        return;
    };
    let s = store(&c, TTL).await;
    die_with(&c, &s, &[("d1", "shop")]).await;
    // d2 of the same template starts after d1, and dies too
    die_with(&c, &s, &[("d2", "shop")]).await;
    // d1 is not the newest: not listed, and a takeover of it queues nothing
    let listed: Vec<String> = s
        .untaken_interrupted()
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(listed, ["d2"]);
    let t = s.take_over(&req("d1", "shop")).await.unwrap().unwrap();
    assert_eq!((t.policy.as_str(), t.request), ("mark", None));
    assert!(t.note.contains("d2"), "{}", t.note);
    // a request of the template queued first
    let first = s.enqueue_publish("shop", "bob", &[], "{}").await.unwrap();
    let t = s.take_over(&req("d2", "shop")).await.unwrap().unwrap();
    assert_eq!((t.policy.as_str(), t.request), ("mark", None));
    assert!(t.note.contains(&format!("request {first}")), "{}", t.note);
    assert_eq!(s.publish_queue(Some("shop")).await.unwrap().len(), 1);
    let audit = s.audit_log(None, Some("takeover"), 10).await.unwrap();
    assert_eq!(audit.len(), 2, "{audit:?}");
    assert!(audit.iter().all(|a| a.detail.starts_with("mark: ")));
    s.close().await.unwrap();
}

/// Two instances taking over the same deployment at the same moment, 20 times: exactly one
/// records it and exactly one request is queued each time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_taking_over_at_once_queue_one_request() {
    let Some(c) = config("takeover_race") else {
        return;
    };
    let (a, b) = (store(&c, TTL).await, store(&c, TTL).await);
    let ids: Vec<(String, String)> = (0..20)
        .map(|r| (format!("d{r}"), format!("t{r}")))
        .collect();
    let refs: Vec<(&str, &str)> = ids.iter().map(|(d, t)| (d.as_str(), t.as_str())).collect();
    die_with(&c, &a, &refs).await;
    for (id, template) in &ids {
        let r = req(id, template);
        let (x, y) = tokio::join!(a.take_over(&r), b.take_over(&r));
        let won: Vec<_> = [x.unwrap(), y.unwrap()].into_iter().flatten().collect();
        assert_eq!(won.len(), 1, "{id}: {won:?}");
        assert!(won[0].request.is_some(), "{id}: {won:?}");
        assert_eq!(
            a.publish_queue(Some(template)).await.unwrap().len(),
            1,
            "{id}"
        );
    }
    let audit = a.audit_log(None, Some("takeover"), 100).await.unwrap();
    assert_eq!(audit.len(), 20);
    a.close().await.unwrap();
    b.close().await.unwrap();
}

/// Deployments interrupted before schema 6 are recorded as marked by its migration: no instance
/// acts on them after an upgrade.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_migration_records_older_interrupted_deployments_as_marked() {
    let Some(c) = config("takeover_migration") else {
        return;
    };
    let s = store(&c, TTL).await;
    die_with(&c, &s, &[("old", "shop")]).await;
    // back to schema 5, as a binary before takeovers left it
    let db = crate::support::raw(&c).await;
    db.batch_execute(
        "DROP TABLE takeovers;
         DELETE FROM pushguide_schema_log WHERE version = 6;
         UPDATE pushguide_schema SET version = 5;",
    )
    .await
    .unwrap();
    let s = store(&c, TTL).await;
    assert_eq!(s.migration().applied, [6]);
    assert!(s.untaken_interrupted().await.unwrap().is_empty());
    let t = s.takeover("old").await.unwrap().unwrap();
    assert_eq!(
        (t.policy.as_str(), t.request, t.by.as_str()),
        ("mark", None, "migration")
    );
    assert_eq!(s.take_over(&req("old", "shop")).await.unwrap(), None);
}
