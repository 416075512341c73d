//! Statistics and history pages over 1,000,000 deployments on PostgreSQL (`RecordStore` of
//! `PgStore`).
//!
//! `eval "$(scripts/pg-lab env)"; cargo bench -p pushguide-postgres --bench records`
//!
//! Without `PUSHGUIDE_PG_URL` it prints a message and measures nothing. The first run fills the
//! schema `bench_records` with 1,000,000 deployments of 40 templates over a year (one
//! `INSERT … SELECT generate_series`, outcomes of every kind, rollback requests and dry runs
//! among them, two failed hosts per failed release in `host_failures`), then `VACUUM ANALYZE`
//! (time printed); later runs reuse it. Measured through the store's `RecordStore` methods, as the
//! web service calls them: `stats` (summary and rollback summary, by hour and weekday, hosts and
//! stages ranked, time to recover), `daily` and `by_hour_of_week` over the year, for the 40
//! templates (the list a user may view) and for one template; and a history page of 50 rows of the
//! 40 templates, the newest and 900,000 rows deep (by its key).
#![allow(clippy::print_stderr, clippy::unwrap_used)]

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use criterion::Criterion;
use pushguide_postgres::{PgConfig, PgStore};
use pushguide_store::{HistoryKey, HistoryQuery, PageAt, RecordStore, Window};

const DEPLOYMENTS: i64 = 1_000_000;
const TEMPLATES: usize = 40;
const SCHEMA: &str = "bench_records";
/// 2025-12-01T00:00:00Z: the year's first start.
const YEAR_START_MS: i64 = 1_764_547_200_000;

fn config() -> Option<PgConfig> {
    let url = std::env::var("PUSHGUIDE_PG_URL").ok()?;
    let mut c = PgConfig::from_url(&url).expect("PUSHGUIDE_PG_URL");
    if let Ok(file) = std::env::var("PUSHGUIDE_PG_PASSWORD_FILE") {
        c = c.password_file(file);
    } else if std::env::var_os("PUSHGUIDE_PG_PASSWORD").is_some() {
        c = c.password_env("PUSHGUIDE_PG_PASSWORD");
    }
    if let Ok(ca) = std::env::var("PUSHGUIDE_PG_CA_FILE") {
        c = c.ca_file(ca);
    }
    Some(c.schema(SCHEMA).expect("schema name").pool_size(4))
}

/// A plain connection with the bench's schema first on the search path.
async fn raw() -> tokio_postgres::Client {
    let url = std::env::var("PUSHGUIDE_PG_URL").unwrap();
    let mut pg: tokio_postgres::Config = url.parse().unwrap();
    if let Ok(file) = std::env::var("PUSHGUIDE_PG_PASSWORD_FILE") {
        let pw = std::fs::read_to_string(file).unwrap();
        pg.password(pw.lines().next().unwrap_or_default());
    } else if let Ok(pw) = std::env::var("PUSHGUIDE_PG_PASSWORD") {
        pg.password(pw);
    }
    pg.options(format!("-c search_path={SCHEMA}"));
    let (client, conn) = pg.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    client
}

fn at(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms as u64)
}

/// Fills the schema unless it already holds the bench's deployments.
async fn fill(db: &tokio_postgres::Client) {
    let n: i64 = db
        .query_one("SELECT count(*) FROM deployments", &[])
        .await
        .unwrap()
        .get(0);
    if n == DEPLOYMENTS {
        eprintln!("{SCHEMA}: {n} deployments already there");
        return;
    }
    let t = Instant::now();
    db.batch_execute(
        "TRUNCATE deployments CASCADE;
         INSERT INTO deployments (id, template, version, principal, dry_run, rollback, started_at,
             ended_at, duration_ms, outcome, owner, events, last_event_at, hosts, batches)
         SELECT 'd' || lpad(g::text, 7, '0'), 't' || lpad((g % 40)::text, 2, '0'), '1.0',
                CASE WHEN g % 5 = 0 THEN 'bob' ELSE 'alice' END,
                g % 50 = 0, g % 23 = 0, s, s + d * interval '1 millisecond', d,
                CASE WHEN g % 997 = 0 THEN NULL
                     WHEN g % 10 IN (1, 2) THEN 'failed'
                     WHEN g % 10 = 3 THEN 'partially-applied'
                     WHEN g % 10 = 4 AND g % 23 = 0 THEN 'rolled-back'
                     WHEN g % 10 = 5 THEN 'cancelled'
                     ELSE 'succeeded' END,
                'bench', 10, s, 10, 2
         FROM generate_series(1::bigint, 1000000) g,
              LATERAL (SELECT timestamptz '2025-12-01 00:00:00+00'
                              + (g / 3) * interval '94608 milliseconds' AS s,
                              1000 + (g * 7919) % 300000 AS d) x;
         UPDATE deployments SET ended_at = NULL, duration_ms = NULL WHERE outcome IS NULL;
         INSERT INTO host_failures (deployment, seq, template, started_ms, dry_run, host, stage)
         SELECT id, k, template, started_ms, dry_run,
                'web-' || lpad(((hashtext(id) & 2147483647) % 200 + k)::text, 3, '0'),
                (ARRAY['pre-deploy', 'deploy', 'post-deploy'])[1 + (hashtext(id) & 3) % 3]
         FROM deployments, generate_series(1, 2) k WHERE outcome = 'failed';",
    )
    .await
    .unwrap();
    // outside the fill's implicit transaction: VACUUM refuses to run in one
    for sql in ["VACUUM ANALYZE deployments", "VACUUM ANALYZE host_failures"] {
        db.batch_execute(sql).await.unwrap();
    }
    eprintln!(
        "{SCHEMA}: filled {DEPLOYMENTS} deployments in {:.1} s",
        t.elapsed().as_secs_f64()
    );
}

fn main() {
    let Some(config) = config() else {
        eprintln!(
            "SKIPPED records bench: PUSHGUIDE_PG_URL is not set (eval \"$(scripts/pg-lab env)\")"
        );
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (store, deep) = rt.block_on(async {
        let store = PgStore::connect(&config).await.unwrap();
        let db = raw().await;
        fill(&db).await;
        let row = db
            .query_one(
                "SELECT started_ms, id FROM deployments
                 ORDER BY started_ms DESC, id COLLATE \"C\" DESC OFFSET 900000 LIMIT 1",
                &[],
            )
            .await
            .unwrap();
        let deep = HistoryKey {
            started_ms: row.get(0),
            id: row.get(1),
        };
        (store, deep)
    });
    let templates: Vec<String> = (0..TEMPLATES).map(|t| format!("t{t:02}")).collect();
    let year = Window::new(at(YEAR_START_MS), at(YEAR_START_MS + 366 * 86_400_000));
    let windows = [
        ("all", year.clone().templates(templates.clone())),
        ("one", year.clone().template("t07")),
    ];
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .configure_from_args();
    for (name, w) in &windows {
        let s = rt.block_on(store.stats(w)).unwrap();
        eprintln!(
            "{name}: {} releases, p50 {:?}, p95 {:?}, {} incidents",
            s.summary.count, s.summary.p50, s.summary.p95, s.recovery.incidents
        );
        c.bench_function(&format!("pg_stats/{name}"), |b| {
            b.iter(|| rt.block_on(store.stats(w)).unwrap())
        });
        c.bench_function(&format!("pg_daily/{name}"), |b| {
            b.iter(|| rt.block_on(store.daily(w)).unwrap())
        });
        c.bench_function(&format!("pg_by_hour_of_week/{name}"), |b| {
            b.iter(|| rt.block_on(store.by_hour_of_week(w)).unwrap())
        });
    }
    let mut newest = HistoryQuery::new(templates.clone(), 50);
    let mut at_depth = newest.clone();
    at_depth.page = PageAt::Older(deep);
    newest.page = PageAt::Newest;
    for (name, q) in [("newest", &newest), ("900000_deep", &at_depth)] {
        let p = rt.block_on(store.history_page(q)).unwrap();
        assert_eq!(p.rows.len(), 50, "{name}");
        c.bench_function(&format!("pg_history_page/{name}"), |b| {
            b.iter(|| rt.block_on(store.history_page(q)).unwrap())
        });
    }
    c.final_summary();
}
