//! Journal writes across a broken connection, against the test database (`PUSHGUIDE_PG_URL`, see
//! tests/pg/support.rs); skipped without one unless `PUSHGUIDE_REQUIRE_PG=1`.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use pushguide_core::{Event, EventKind, LeaseManager, MinionId};

use crate::{PgConfig, PgStore};

/// Settings for a schema of its own, connecting as `application_name = app`.
pub(crate) fn config(app: &str) -> Option<PgConfig> {
    let Ok(url) = std::env::var("PUSHGUIDE_PG_URL") else {
        assert!(
            std::env::var("PUSHGUIDE_REQUIRE_PG").as_deref() != Ok("1"),
            "PUSHGUIDE_REQUIRE_PG=1 but PUSHGUIDE_PG_URL is not set"
        );
        eprintln!("SKIPPED: PUSHGUIDE_PG_URL is not set (eval \"$(scripts/pg-lab env)\")");
        return None;
    };
    let sep = if url.contains('?') { '&' } else { '?' };
    let mut c = PgConfig::from_url(&format!("{url}{sep}application_name={app}")).unwrap();
    if let Ok(f) = std::env::var("PUSHGUIDE_PG_PASSWORD_FILE") {
        c = c.password_file(f);
    } else if std::env::var_os("PUSHGUIDE_PG_PASSWORD").is_some() {
        c = c.password_env("PUSHGUIDE_PG_PASSWORD");
    }
    if let Ok(ca) = std::env::var("PUSHGUIDE_PG_CA_FILE") {
        c = c.ca_file(ca);
    }
    Some(c.schema(app).unwrap().pool_size(2))
}

fn event(id: &Arc<str>, ms: u64, kind: EventKind) -> Event {
    Event {
        at: SystemTime::UNIX_EPOCH + Duration::from_millis(1_760_000_000_000 + ms),
        deployment: id.clone(),
        kind,
    }
}

fn batch(id: &Arc<str>, ms: u64, b: usize) -> Event {
    event(
        id,
        ms,
        EventKind::BatchStarted {
            batch: b,
            hosts: 1,
            minions: vec![MinionId::new("web-01").unwrap()],
        },
    )
}

/// Appends `e` while the store's connection is killed under it: another connection holds the
/// deployment row locked, so the append waits inside its transaction; then every backend of `app`
/// is terminated and the lock let go.
async fn append_while_killed(store: &PgStore, killer: &PgStore, app: &str, e: Event) {
    let mut c = killer.client("test").await.unwrap();
    let tx = c.transaction().await.unwrap();
    tx.execute(
        "SELECT 1 FROM deployments WHERE id = $1 FOR UPDATE",
        &[&&*e.deployment],
    )
    .await
    .unwrap();
    let writer = store.clone();
    let write = tokio::spawn(async move { writer.append_events(&[e]).await });
    let begun = std::time::Instant::now();
    loop {
        let waiting: i64 = tx
            .query_one(
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
            "the append never waited"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let killed: i64 = tx
        .query_one(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE application_name = $1 AND pid <> pg_backend_pid()) t",
            &[&app],
        )
        .await
        .unwrap()
        .get(0);
    assert!(killed >= 1, "no backend of the store to kill");
    tx.rollback().await.unwrap();
    write.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_after_the_backend_was_killed_is_retried_and_recorded_once() {
    let app = format!("t_retry_{}", std::process::id());
    let Some(c) = config(&app) else { return };
    let store = PgStore::connect(&c.lease_ttl(Duration::from_secs(30)))
        .await
        .unwrap();
    store.acquire("shop", "d1").await.unwrap();
    let id: Arc<str> = Arc::from("d1");
    store
        .append_events(&[event(
            &id,
            1,
            EventKind::DeploymentStarted {
                template: "shop".into(),
                version: "2.0".into(),
                user: "alice".into(),
                dry_run: false,
                rollback: false,
            },
        )])
        .await
        .unwrap();
    let killer = PgStore::connect(
        &config(&format!("{app}_killer"))
            .unwrap()
            .schema(&app)
            .unwrap(),
    )
    .await
    .unwrap();
    for (round, ms) in [(0usize, 2u64), (1, 3)] {
        // the write's connection dies inside its transaction: it fails once, then goes through
        // a fresh one
        append_while_killed(&store, &killer, &app, batch(&id, ms, round)).await;
        let rec = store.deployment("d1").await.unwrap().unwrap();
        assert_eq!(
            rec.events,
            2 + round as u64,
            "round {round}: recorded exactly once"
        );
        assert_eq!(store.events("d1").await.unwrap().len() as u64, rec.events);
    }
    // a retry after a commit whose answer was lost: the same events are not recorded twice
    let last = batch(&id, 3, 1);
    store
        .append_once(std::slice::from_ref(&last), true)
        .await
        .unwrap();
    assert_eq!(store.deployment("d1").await.unwrap().unwrap().events, 3);
    assert_eq!(store.events("d1").await.unwrap().last(), Some(&last));
    // ... while new events on a retry are
    store.append_once(&[batch(&id, 4, 2)], true).await.unwrap();
    assert_eq!(store.deployment("d1").await.unwrap().unwrap().events, 4);
    // a refusal that is not a broken connection is not retried: events of an unknown deployment
    let ghost: Arc<str> = Arc::from("ghost");
    let begun = std::time::Instant::now();
    let e = store
        .append_events(&[batch(&ghost, 5, 0)])
        .await
        .unwrap_err();
    assert!(!e.is_connection_lost(), "{e}");
    assert!(begun.elapsed() < Duration::from_secs(2), "not retried");
    store.close().await.unwrap();
    killer.close().await.unwrap();
}
