//! Recovery on PostgreSQL: a deployment whose instance died is marked interrupted once its lease
//! expired on the database clock; a live one is never touched.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use pushguide_core::{Event, EventKind, HistoryStore, LeaseManager};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recover_marks_a_dead_instances_deployment_and_never_a_live_one() {
    let Some(c) = config("recover") else { return };
    // the dead instance stops renewing; the live one keeps its lease
    let (dead, live) = (store(&c, SHORT_TTL).await, store(&c, TTL).await);
    dead.acquire("a", "d-dead").await.unwrap();
    dead.append(&[started("d-dead", "a")]).await.unwrap();
    live.acquire("b", "d-live").await.unwrap();
    live.append(&[started("d-live", "b")]).await.unwrap();
    // a deployment whose lease is held and renewed is not marked
    assert!(dead.recover(Some("b")).await.unwrap().is_empty());
    dead.stop_heartbeat();
    tokio::time::sleep(SHORT_TTL + Duration::from_millis(500)).await;
    assert!(dead.lease("a").await.unwrap().is_none(), "expired");
    let marked = live.recover(None).await.unwrap();
    assert_eq!(marked, ["d-dead"]);
    let d = live.deployment("d-dead").await.unwrap().unwrap();
    assert_eq!(d.outcome.as_deref(), Some(pushguide_postgres::INTERRUPTED));
    assert!(d.ended.is_some() && d.duration.is_some(), "{d:?}");
    assert!(d.reason.unwrap().contains("ended before it finished"));
    let l = live.deployment("d-live").await.unwrap().unwrap();
    assert_eq!(
        (l.ended, l.outcome),
        (None, None),
        "the live one is untouched"
    );
    assert_eq!(
        live.interrupted(&["a".into(), "b".into()]).await.unwrap(),
        ["d-dead"]
    );
    // done once: a second recovery marks nothing; the template is free for the next token
    assert!(live.recover(None).await.unwrap().is_empty());
    let next = live.acquire("a", "d-next").await.unwrap();
    assert_eq!(next.token, 2);
    live.close().await.unwrap();
}
