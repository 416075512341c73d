//! Takeovers on PostgreSQL: an interrupted deployment (its instance died, its lease expired on the
//! database clock, recovery marked it) is taken over exactly once, with its request and one audit
//! entry, also when two instances try at the same moment; a newer deployment or a pending request
//! of the template turns a rollback into a mark.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use pushguide_core::{Event, EventKind, HistoryStore, LeaseManager};
use pushguide_postgres::PgStore;
use pushguide_store::conformance::takeover as suite;

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

/// The shared check, then what only a real database shows: the takeover names this instance, and
/// reading it back follows its request as a worker claims it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_takeover_is_recorded_once_with_one_request_and_one_audit_entry() {
    let Some(c) = config("takeover_once") else {
        return;
    };
    let s = store(&c, TTL).await;
    die_with(&c, &s, &[("d1", "shop")]).await;
    let t = suite::recorded_once(&s, "d1", "shop").await;
    assert_eq!(t.by, s.owner());
    let id = t.request.unwrap();
    let claimed = s.claim_publish().await.unwrap().unwrap();
    assert_eq!(claimed.id, id);
    let by = s.takeover_by_request(id).await.unwrap().unwrap();
    assert_eq!(
        (by.deployment.as_str(), by.request_state.as_deref()),
        ("d1", Some("running"))
    );
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
    suite::newer_work_turns_it_into_a_mark(&s, "d1", "d2", "shop").await;
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
    suite::two_at_once_queue_one_request(&a, &b, &ids).await;
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
    assert_eq!(
        s.take_over(&suite::request("old", "shop")).await.unwrap(),
        None
    );
}
