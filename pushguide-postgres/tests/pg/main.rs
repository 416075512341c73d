//! pushguide-postgres against a real PostgreSQL (`scripts/pg-lab up`; see support.rs): the store
//! conformance suite, migrations, heartbeat, and what never leaks.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod accounts;
mod bouncer;
mod engine;
mod queue;
mod records;
mod recover;
mod server_queue;
mod support;
mod takeover;

use std::time::Duration;

use pushguide_core::store_conformance as suite;
use pushguide_core::LeaseManager;
use pushguide_postgres::{Error, PgStore, SCHEMA_VERSION};

use support::{config, raw, store, url_with, View};

pub(crate) const TTL: Duration = Duration::from_secs(30);
// short, yet long against a loaded machine's scheduling delays between two steps of a check
pub(crate) const SHORT_TTL: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_journal_order() {
    let Some(c) = config("journal_order") else {
        return;
    };
    suite::journal_order(&View(store(&c, TTL).await), "j").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_fleet_state() {
    let Some(c) = config("fleet_state") else {
        return;
    };
    suite::fleet_state(&store(&c, TTL).await, "f").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_leases() {
    let Some(c) = config("leases") else { return };
    suite::leases(&store(&c, TTL).await, "l").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_lease_race() {
    let Some(c) = config("lease_race") else {
        return;
    };
    let (a, b) = (store(&c, TTL).await, store(&c, TTL).await);
    assert_ne!(a.owner(), b.owner(), "two instances");
    suite::lease_race(&a, &b, "r", 40).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_takeover_fences() {
    let Some(c) = config("takeover_fences") else {
        return;
    };
    // only the old instance's TTL matters; the new one keeps what it takes
    let (old, new) = (store(&c, SHORT_TTL).await, store(&c, TTL).await);
    old.stop_heartbeat();
    suite::takeover_fences(&old, &new, SHORT_TTL, "t").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_journal_fencing() {
    let Some(c) = config("journal_fencing") else {
        return;
    };
    let (old, new) = (store(&c, SHORT_TTL).await, store(&c, TTL).await);
    old.stop_heartbeat();
    suite::journal_fencing(&old, &new, SHORT_TTL, "jf").await;
    // what was refused left nothing behind: d2 has only the events appended before the takeover
    let d2 = old.deployment("jf-d2").await.unwrap().unwrap();
    assert_eq!(d2.events, 3);
    assert_eq!(d2.outcome, None);
    assert!(old.report("jf-d2").await.unwrap().is_none());
    let d1 = old.deployment("jf-d1").await.unwrap().unwrap();
    assert_eq!(d1.outcome.as_deref(), Some("failed"));
    assert_eq!(old.events("jf-d1").await.unwrap().len() as u64, d1.events);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_minion_status() {
    let Some(c) = config("minion_status") else {
        return;
    };
    suite::minion_status(&store(&c, TTL).await, "m").await;
}

/// While its instance's heartbeat runs, a lease outlives its TTL many times over (a long salt call
/// between two checks does not lose it); once stopped, it expires on the database clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_renews_leases_until_stopped() {
    let Some(c) = config("heartbeat") else { return };
    // a TTL a loaded machine's scheduler cannot starve the heartbeat (every third of it) of
    let ttl = Duration::from_millis(1500);
    let (a, b) = (store(&c, ttl).await, store(&c, TTL).await);
    let lease = a.acquire("shop", "d1").await.unwrap();
    tokio::time::sleep(ttl * 3).await;
    assert!(
        matches!(
            b.acquire("shop", "d2").await,
            Err(pushguide_core::Error::Busy { .. })
        ),
        "the heartbeat keeps the lease live"
    );
    a.check(&lease).await.unwrap();
    a.stop_heartbeat();
    tokio::time::sleep(ttl * 2).await;
    let taken = b.acquire("shop", "d2").await.unwrap();
    assert_eq!(taken.token, lease.token + 1);
    assert!(a.check(&lease).await.is_err());
}

/// `close` gives the instance's leases back at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_releases_the_instance_leases() {
    let Some(c) = config("close") else { return };
    let (a, b) = (store(&c, TTL).await, store(&c, TTL).await);
    let l = a.acquire("shop", "d1").await.unwrap();
    a.close().await.unwrap();
    let next = b.acquire("shop", "d2").await.unwrap();
    assert_eq!(next.token, l.token + 1);
    let rows = raw(&c)
        .await
        .query("SELECT owner FROM owners", &[])
        .await
        .unwrap();
    let owners: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(owners, [b.owner().to_owned()]);
}

/// Two instances migrating at the same moment: one applies, the other waits on the migrations
/// row lock and then finds the work done. Here a third session holds that lock first, so both are
/// seen waiting; then it lets go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_migrations_wait_on_the_row_lock_and_apply_once() {
    let Some(c) = config("migrate_lock") else {
        return;
    };
    let mut holder = raw(&c).await;
    let schema = c.schema.clone().unwrap();
    holder
        .batch_execute(&format!(
            "CREATE SCHEMA {schema};
             CREATE TABLE pushguide_schema (id integer PRIMARY KEY CHECK (id = 1),
                 version bigint NOT NULL, updated_at timestamptz NOT NULL DEFAULT now());
             INSERT INTO pushguide_schema (id, version) VALUES (1, 0);"
        ))
        .await
        .unwrap();
    let tx = holder.transaction().await.unwrap();
    tx.query_one(
        "SELECT version FROM pushguide_schema WHERE id = 1 FOR UPDATE",
        &[],
    )
    .await
    .unwrap();
    let (c1, c2) = (c.clone(), c.clone());
    let t1 = tokio::spawn(async move { PgStore::connect(&c1).await });
    let t2 = tokio::spawn(async move { PgStore::connect(&c2).await });
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        !t1.is_finished() && !t2.is_finished(),
        "both wait while another session holds the migrations row"
    );
    tx.rollback().await.unwrap();
    let (s1, s2) = (t1.await.unwrap().unwrap(), t2.await.unwrap().unwrap());
    let mut applied = [
        s1.migration().applied.clone(),
        s2.migration().applied.clone(),
    ];
    applied.sort();
    let all: Vec<i64> = (1..=SCHEMA_VERSION).collect();
    assert_eq!(
        applied,
        [Vec::new(), all],
        "exactly one applied the migrations"
    );
    assert!(s1.migration().to == SCHEMA_VERSION && s2.migration().to == SCHEMA_VERSION);
    let waited = if s1.migration().applied.is_empty() {
        &s1
    } else {
        &s2
    };
    assert_eq!(
        waited.migration().from,
        SCHEMA_VERSION,
        "the waiter saw the work done"
    );
    let logged: i64 = raw(&c)
        .await
        .query_one("SELECT count(*) FROM pushguide_schema_log", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(logged, SCHEMA_VERSION);
}

/// Four instances starting at the same moment on an empty schema (no table yet): no error, one
/// applies, the others find it done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_first_start_applies_once() {
    let Some(c) = config("migrate_race") else {
        return;
    };
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(4));
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let (c, barrier) = (c.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                PgStore::connect(&c).await
            })
        })
        .collect();
    let mut appliers = 0;
    for t in tasks {
        let s = t.await.unwrap().unwrap_or_else(|e| panic!("connect: {e}"));
        assert_eq!(s.migration().to, SCHEMA_VERSION);
        if !s.migration().applied.is_empty() {
            appliers += 1;
        }
    }
    assert_eq!(appliers, 1);
}

/// A database migrated by a newer pushguide is refused with a typed error naming both versions,
/// and nothing in it is changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_schema_is_refused() {
    let Some(c) = config("newer_schema") else {
        return;
    };
    store(&c, TTL).await;
    let db = raw(&c).await;
    db.execute(
        "UPDATE pushguide_schema SET version = $1",
        &[&(SCHEMA_VERSION + 1)],
    )
    .await
    .unwrap();
    match PgStore::connect(&c).await {
        Err(
            e @ Error::NewerSchema {
                found, supported, ..
            },
        ) => {
            assert_eq!((found, supported), (SCHEMA_VERSION + 1, SCHEMA_VERSION));
            let msg = e.to_string();
            assert!(msg.contains("newer than this binary supports"), "{msg}");
        }
        other => panic!("expected NewerSchema, got {other:?}"),
    }
    let v: i64 = db
        .query_one("SELECT version FROM pushguide_schema", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(v, SCHEMA_VERSION + 1, "left as found");
}

/// A wrong password fails with a typed error that never contains it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_a_typed_error_without_the_password() {
    let Some(c) = config("wrong_password") else {
        return;
    };
    let var = format!("PUSHGUIDE_TEST_WRONG_PW_{}", std::process::id());
    // SAFETY-free: the variable is unique to this test
    std::env::set_var(&var, "definitely-not-the-password-5f2a");
    let c = c.password_env(&var);
    let e = PgStore::connect(&c).await.unwrap_err();
    assert!(matches!(e, Error::Pool { .. } | Error::Db { .. }), "{e:?}");
    let text = format!("{e} / {e:?} / {c:?}");
    assert!(!text.contains("definitely-not-the-password"), "{text}");
    assert!(text.contains(&c.endpoint()), "{text}");
}

/// With `sslmode=require` the store talks TLS (rustls), verifying the server against the CA file;
/// a server certificate no trusted root signed is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_ca_file_and_refused_without() {
    let Some(base) = config("tls") else { return };
    let Ok(ca) = std::env::var("PUSHGUIDE_PG_CA_FILE") else {
        if std::env::var("PUSHGUIDE_REQUIRE_PG").as_deref() == Ok("1") {
            panic!("PUSHGUIDE_REQUIRE_PG=1 but PUSHGUIDE_PG_CA_FILE is not set (the lab's server has no TLS)");
        }
        eprintln!("SKIPPED tls: PUSHGUIDE_PG_CA_FILE is not set (scripts/pg-lab up makes one with openssl)");
        return;
    };
    let app = format!("pg_tls_test_{}", std::process::id());
    let url = url_with(&format!("sslmode=require&application_name={app}"));
    let with_password = |c: pushguide_postgres::PgConfig| match &base.password {
        pushguide_postgres::PasswordSource::File(f) => c.password_file(f),
        pushguide_postgres::PasswordSource::Env(v) => c.password_env(v),
        _ => c,
    };
    let schema = base.schema.clone().unwrap();
    let c = with_password(pushguide_postgres::PgConfig::from_url(&url).unwrap())
        .schema(schema.clone())
        .unwrap()
        .ca_file(&ca);
    let s = PgStore::connect(&c).await.unwrap();
    s.acquire("shop", "d1").await.unwrap();
    let ssl: Vec<bool> = raw(&base)
        .await
        .query(
            "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
             WHERE a.application_name = $1",
            &[&app],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        !ssl.is_empty() && ssl.iter().all(|s| *s),
        "the store's sessions: {ssl:?}"
    );
    // only the public webpki roots: the lab's certificate is refused
    let untrusted = with_password(pushguide_postgres::PgConfig::from_url(&url).unwrap())
        .schema(schema)
        .unwrap();
    let e = PgStore::connect(&untrusted).await.unwrap_err();
    assert!(matches!(e, Error::Pool { .. } | Error::Db { .. }), "{e:?}");
    // a CA file that is not PEM is a setting error naming the file
    let bad = tempfile_path("not-a-cert");
    std::fs::write(&bad, "hello").unwrap();
    let e = PgStore::connect(&c.clone().ca_file(&bad))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::Config {
                setting: "ca_file",
                ..
            }
        ) && e.to_string().contains("not-a-cert"),
        "{e}"
    );
    std::fs::remove_file(bad).unwrap();
}

fn tempfile_path(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("{name}-{}", std::process::id()))
}

/// A connected store's `Debug` (pool, connection settings, listener settings) never shows the
/// password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connected_store_does_not_debug_print_the_password() {
    let Some(c) = config("debug_password") else {
        return;
    };
    let password = match &c.password {
        pushguide_postgres::PasswordSource::File(f) => std::fs::read_to_string(f)
            .unwrap()
            .lines()
            .next()
            .unwrap()
            .to_owned(),
        pushguide_postgres::PasswordSource::Env(v) => std::env::var(v).unwrap(),
        _ => {
            eprintln!("SKIPPED debug_password: the test database has no password");
            return;
        }
    };
    let s = store(&c, TTL).await;
    s.acquire("shop", "d1").await.unwrap();
    let _waiter = s.listen_publishes().await.unwrap();
    let text = format!("{s:?} {s:#?} {c:?}");
    assert!(text.contains("PgStore"), "{text}");
    assert!(!text.contains(&password), "the password shows in {text}");
}

/// Lease times are the database's: `acquired` is its `now()`, `expires` exactly the TTL later, and
/// expiry is decided by the row against the database clock, whatever the instance believes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_expiry_is_decided_on_the_database_clock() {
    let Some(c) = config("db_clock") else { return };
    let (a, b) = (store(&c, TTL).await, store(&c, TTL).await);
    let lease = a.acquire_lease("shop", "d1", "deployment").await.unwrap();
    assert_eq!(lease.expires.duration_since(lease.acquired).unwrap(), TTL);
    let db = raw(&c).await;
    let now: std::time::SystemTime = db.query_one("SELECT now()", &[]).await.unwrap().get(0);
    let skew = now
        .duration_since(lease.acquired)
        .unwrap_or_else(|e| e.duration());
    assert!(
        skew < Duration::from_secs(5),
        "acquired {skew:?} away from the database's now()"
    );
    // the instance still thinks it has 30 s; the database says the lease is over
    db.execute(
        "UPDATE leases SET expires_at = now() - interval '1 millisecond' WHERE template = 'shop'",
        &[],
    )
    .await
    .unwrap();
    let core = pushguide_core::Lease::new("shop", "d1", lease.token);
    assert!(matches!(
        a.check(&core).await,
        Err(pushguide_core::Error::LeaseLost { .. })
    ));
    let taken = b.acquire("shop", "d2").await.unwrap();
    assert_eq!(taken.token, lease.token + 1);
}
