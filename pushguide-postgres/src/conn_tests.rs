//! The session settings per transaction ([`crate::PgConfig::transaction_pooling`]) against the test
//! database (`PUSHGUIDE_PG_URL`, see tests/pg/support.rs; PgBouncer itself: tests/pg/bouncer.rs);
//! skipped without one unless `PUSHGUIDE_REQUIRE_PG=1`.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::time::Duration;

use crate::sql::Sql;
use crate::{PgConfig, PgStore};

fn config(schema: &str) -> Option<PgConfig> {
    let Ok(url) = std::env::var("PUSHGUIDE_PG_URL") else {
        assert!(
            std::env::var("PUSHGUIDE_REQUIRE_PG").as_deref() != Ok("1"),
            "PUSHGUIDE_REQUIRE_PG=1 but PUSHGUIDE_PG_URL is not set"
        );
        eprintln!("SKIPPED: PUSHGUIDE_PG_URL is not set (eval \"$(scripts/pg-lab env)\")");
        return None;
    };
    let mut c = PgConfig::from_url(&url).unwrap();
    if let Ok(f) = std::env::var("PUSHGUIDE_PG_PASSWORD_FILE") {
        c = c.password_file(f);
    } else if std::env::var_os("PUSHGUIDE_PG_PASSWORD").is_some() {
        c = c.password_env("PUSHGUIDE_PG_PASSWORD");
    }
    if let Ok(ca) = std::env::var("PUSHGUIDE_PG_CA_FILE") {
        c = c.ca_file(ca);
    }
    Some(c.schema(schema).unwrap().pool_size(2))
}

const SETTINGS: &str =
    "SELECT current_setting('search_path'), current_setting('idle_in_transaction_session_timeout')";

/// With transaction pooling the connection's session carries neither the schema nor the
/// idle-in-transaction limit (a proxy would not carry them over), yet every statement and every
/// transaction has both; and a transaction left idle past the lease TTL is ended by the server, as
/// with the startup options.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_transaction_pooling_the_settings_hold_in_every_transaction() {
    let schema = format!("t_conn_{}", std::process::id());
    let Some(c) = config(&schema) else { return };
    let s = PgStore::connect(
        &c.transaction_pooling(true)
            .lease_ttl(Duration::from_millis(1500)),
    )
    .await
    .unwrap();
    let mut conn = s.client("test").await.unwrap();
    let r = conn.one(SETTINGS, &[]).await.unwrap();
    assert_eq!(r.get::<_, String>(0), schema, "a statement of its own");
    assert_eq!(r.get::<_, String>(1), "1500ms");
    // the session itself: the server's defaults
    let session: &tokio_postgres::Client = &conn;
    let rows = session.simple_query(SETTINGS).await.unwrap();
    let row = rows
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => {
                Some((r.get(0).unwrap().to_owned(), r.get(1).unwrap().to_owned()))
            }
            _ => None,
        })
        .unwrap();
    assert_ne!(row.0, schema, "no session search_path");
    assert_eq!(row.1, "0", "no session idle limit");
    // a statement outside a transaction committed (its own transaction ended)
    conn.exec(
        "INSERT INTO minion_status (minion, up, checked, since) VALUES ('m1', true, now(), now())",
        &[],
    )
    .await
    .unwrap();
    let n: i64 = s
        .client("test")
        .await
        .unwrap()
        .one("SELECT count(*) FROM minion_status", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    // a failed statement rolls its transaction back and leaves the connection usable
    let e = conn.exec("SELECT 1/0", &[]).await.unwrap_err();
    assert!(e.as_db_error().is_some(), "{e}");
    assert_eq!(
        conn.one("SELECT 2::int8", &[])
            .await
            .unwrap()
            .get::<_, i64>(0),
        2
    );
    let tx = conn.transaction().await.unwrap();
    let r = tx.one(SETTINGS, &[]).await.unwrap();
    assert_eq!(r.get::<_, String>(0), schema, "a transaction");
    assert_eq!(r.get::<_, String>(1), "1500ms");
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let e = tx.one("SELECT 1::int8", &[]).await.unwrap_err();
    let code = e.as_db_error().map(|d| d.code().clone());
    assert!(
        e.is_closed()
            || code == Some(tokio_postgres::error::SqlState::IDLE_IN_TRANSACTION_SESSION_TIMEOUT),
        "the idle transaction was ended by the server: {e} {code:?}"
    );
}
