//! Reaching the test database: `PUSHGUIDE_PG_URL` (plus `PUSHGUIDE_PG_PASSWORD_FILE` or
//! `PUSHGUIDE_PG_PASSWORD`), as `scripts/pg-lab env` prints them. Each test works in a schema of its
//! own, so tests run in parallel. Without the URL a test skips with a message, unless
//! `PUSHGUIDE_REQUIRE_PG=1`: then it fails.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use pushguide_core::store_conformance::{JournalView, Recorded};
use pushguide_core::{Event, EventKind, HistoryStore, Report};
use pushguide_postgres::{PgConfig, PgStore};

/// `PUSHGUIDE_PG_URL` with `extra` query parameters (call after [`config`] returned settings).
pub(crate) fn url_with(extra: &str) -> String {
    let url = std::env::var("PUSHGUIDE_PG_URL").expect("PUSHGUIDE_PG_URL");
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{extra}")
}

/// The settings for a fresh schema named after `test`, or `None` (skip) when no database is set.
pub(crate) fn config(test: &str) -> Option<PgConfig> {
    let Ok(url) = std::env::var("PUSHGUIDE_PG_URL") else {
        if std::env::var("PUSHGUIDE_REQUIRE_PG").as_deref() == Ok("1") {
            panic!(
                "PUSHGUIDE_REQUIRE_PG=1 but PUSHGUIDE_PG_URL is not set (start scripts/pg-lab up)"
            );
        }
        eprintln!("SKIPPED {test}: PUSHGUIDE_PG_URL is not set (eval \"$(scripts/pg-lab env)\")");
        return None;
    };
    let mut c = PgConfig::from_url(&url).expect("PUSHGUIDE_PG_URL");
    if std::env::var_os("PUSHGUIDE_PG_PASSWORD_FILE").is_some() {
        let file = std::env::var("PUSHGUIDE_PG_PASSWORD_FILE").expect("password file path");
        c = c.password_file(file);
    } else if std::env::var_os("PUSHGUIDE_PG_PASSWORD").is_some() {
        c = c.password_env("PUSHGUIDE_PG_PASSWORD");
    }
    // the lab's server offers TLS: trust its CA (a `prefer` connection then runs over verified TLS)
    if let Ok(ca) = std::env::var("PUSHGUIDE_PG_CA_FILE") {
        c = c.ca_file(ca);
    }
    Some(
        c.schema(unique_schema(test))
            .expect("schema name")
            .pool_size(4),
    )
}

/// A schema name no other test run uses.
pub(crate) fn unique_schema(test: &str) -> String {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .subsec_nanos();
    format!(
        "t_{}_{}_{:x}_{}",
        test.chars().take(30).collect::<String>(),
        std::process::id(),
        nanos,
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// A store on `config` with lease TTL `ttl`.
pub(crate) async fn store(config: &PgConfig, ttl: Duration) -> PgStore {
    PgStore::connect(&config.clone().lease_ttl(ttl))
        .await
        .unwrap_or_else(|e| panic!("connecting to {}: {e}", config.endpoint()))
}

/// A plain driver connection into `config`'s schema (to look at tables and hold locks).
pub(crate) async fn raw(config: &PgConfig) -> tokio_postgres::Client {
    let url = std::env::var("PUSHGUIDE_PG_URL").expect("url");
    let mut pg: tokio_postgres::Config = url.parse().expect("url");
    if let Ok(file) = std::env::var("PUSHGUIDE_PG_PASSWORD_FILE") {
        let pw = std::fs::read_to_string(file).expect("password file");
        pg.password(pw.lines().next().unwrap_or_default());
    } else if let Ok(pw) = std::env::var("PUSHGUIDE_PG_PASSWORD") {
        pg.password(pw);
    }
    if let Some(schema) = &config.schema {
        pg.options(format!("-c search_path={schema}"));
    }
    let (client, conn) = pg
        .connect(tokio_postgres::NoTls)
        .await
        .expect("raw connection");
    tokio::spawn(conn);
    client
}

/// The PostgreSQL store read back for [`pushguide_core::store_conformance::journal_order`].
#[derive(Debug)]
pub(crate) struct View(pub(crate) PgStore);

#[async_trait]
impl HistoryStore for View {
    async fn append(&self, events: &[Event]) -> Result<(), pushguide_core::Error> {
        self.0.append(events).await
    }
    async fn finish(&self, report: &Report) -> Result<(), pushguide_core::Error> {
        self.0.finish(report).await
    }
}

#[async_trait]
impl JournalView for View {
    async fn recorded(&self, id: &str) -> Result<Option<Recorded>, String> {
        let Some(d) = self.0.deployment(id).await.map_err(|e| e.to_string())? else {
            return Ok(None);
        };
        let events = self.0.events(id).await.map_err(|e| e.to_string())?;
        assert_eq!(
            events.len() as u64,
            d.events,
            "events counted and kept agree"
        );
        let calls = events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::CallFinished { fun, .. } => Some(fun.clone()),
                _ => None,
            })
            .collect();
        Ok(Some(Recorded {
            template: d.template,
            version: d.version,
            outcome: d.outcome,
            events: d.events,
            calls,
        }))
    }
}
