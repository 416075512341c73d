//! The web service's history page over 1,000,000 stored deployments: server time through the
//! router (tower `oneshot`, no network), p50 and p99, for the first page and a deep page.
//!
//! `cargo bench --bench history_page`
//!
//! 1,000,000 deployments of 40 templates over a year (ties on start included) are written once
//! into a temp file (time printed). Three users: `all` views the 40 templates (one walk of the
//! index by start), `some` views 4 of them (one walk per template, merged), and `all` with
//! `?template=` (that template's index). For each: `GET /history` (HTML) and `GET /api/v1/history`
//! (JSON), 50 rows, the newest page and a page 900,000 rows deep (by its `after=` key — the
//! server's work does not grow with the depth). Each figure is over 200 requests after 20 of
//! warm-up; the templates are read from the catalog on every request, as `pushguide serve` does.
#![allow(clippy::print_stderr, clippy::unwrap_used)]

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use pushguide::Template;
use pushguide_server::{
    Catalog, CatalogEntry, CatalogError, ServerConfig, LOGIN_CSRF_COOKIE, SESSION_COOKIE,
};
use pushguide_store::SqliteStore;
use tower::ServiceExt;

const DEPLOYMENTS: usize = 1_000_000;
const TEMPLATES: usize = 40;
const REQUESTS: usize = 200;
const WARMUP: usize = 20;

struct Dir(Vec<String>);

impl Catalog for Dir {
    fn scan(&self) -> Result<Vec<CatalogEntry>, CatalogError> {
        self.0
            .iter()
            .map(|text| {
                let t = Template::from_toml_str(text, "bench")?;
                Ok(CatalogEntry::Loaded {
                    file: PathBuf::from(format!("templates/{}.toml", t.name)),
                    template: Box::new(t),
                })
            })
            .collect()
    }
}

fn template(i: usize) -> String {
    let some = if i < 4 { ", \"some\"" } else { "" };
    format!(
        "name = \"app{i:02}\"\n[acl.viewers]\ngroups = [\"all\"{some}]\n[targets]\n\
         minions = [\"web-01\"]\n[project]\nkind = \"bench\"\n"
    )
}

/// Writes the deployments: a year back from now, about one every 31 s, three per start in a
/// row, outcomes and users varied.
fn generate(path: &std::path::Path) {
    drop(SqliteStore::open(path).unwrap());
    let mut conn = rusqlite::Connection::open(path).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    let tx = conn.transaction().unwrap();
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let year = 365 * 86_400_000_i64;
    let step = year / DEPLOYMENTS as i64 * 3;
    {
        let mut stmt = tx
            .prepare(
                "INSERT INTO deployments (id, template, version, principal, dry_run, started_ms,
                    ended_ms, duration_ms, outcome, owner, last_event_ms)
                 VALUES (?1, ?2, ?3, ?4, 0, ?5, ?6, ?7, ?8, 'bench', ?6)",
            )
            .unwrap();
        let outcomes = [
            "succeeded",
            "succeeded",
            "succeeded",
            "failed",
            "partially-applied",
        ];
        for i in 0..DEPLOYMENTS {
            let started = now - year + (i as i64 / 3) * step;
            let duration = 20_000 + (i as i64 * 7919) % 100_000;
            let t = (i * 13) % TEMPLATES;
            stmt.execute(rusqlite::params![
                format!("app{t:02}-{started}-{i:07x}"),
                format!("app{t:02}"),
                format!("1.{}.{}", i / 1000, i % 1000),
                ["alice", "bob", "carol", "ci"][i % 4],
                started,
                started + duration,
                duration,
                outcomes[i % outcomes.len()],
            ])
            .unwrap();
        }
    }
    tx.commit().unwrap();
    conn.execute_batch("ANALYZE").unwrap();
}

async fn send(app: &Router, req: Request<Body>) -> (StatusCode, String) {
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let bytes = axum::body::to_bytes(res.into_body(), 64 << 20)
        .await
        .unwrap();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

async fn login(app: &Router, user: &str) -> String {
    let res = app
        .clone()
        .oneshot(Request::get("/login").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let cookie = |res: &axum::response::Response, name: &str| {
        res.headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .find_map(|c| {
                let first = c.to_str().ok()?.split(';').next()?.to_owned();
                let (k, v) = first.split_once('=')?;
                (k == name).then(|| v.to_owned())
            })
            .unwrap()
    };
    let csrf = cookie(&res, LOGIN_CSRF_COOKIE);
    let res = app
        .clone()
        .oneshot(
            Request::post("/login")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header(header::COOKIE, format!("{LOGIN_CSRF_COOKIE}={csrf}"))
                .body(Body::from(format!("user={user}&password=pw&csrf={csrf}")))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    cookie(&res, SESSION_COOKIE)
}

/// The key (`<ms>.<id>`) of the row `depth` rows deep in the history of `cond`.
fn key_at(path: &std::path::Path, cond: &str, depth: usize) -> String {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.query_row(
        &format!(
            "SELECT started_ms || '.' || id FROM deployments WHERE {cond}
             ORDER BY started_ms DESC, id DESC LIMIT 1 OFFSET ?1"
        ),
        [depth as i64],
        |r| r.get(0),
    )
    .unwrap()
}

fn pct(sorted: &[Duration], q: f64) -> Duration {
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

async fn measure(app: &Router, session: &str, url: &str) -> (Duration, Duration, usize) {
    let req = || {
        Request::get(url)
            .header(header::COOKIE, format!("{SESSION_COOKIE}={session}"))
            .body(Body::empty())
            .unwrap()
    };
    let mut bytes = 0;
    for _ in 0..WARMUP {
        let (status, body) = send(app, req()).await;
        assert_eq!(status, StatusCode::OK, "{url}: {body}");
        bytes = body.len();
    }
    let mut times = Vec::with_capacity(REQUESTS);
    for _ in 0..REQUESTS {
        let begun = Instant::now();
        let (status, _) = send(app, req()).await;
        times.push(begun.elapsed());
        assert_eq!(status, StatusCode::OK);
    }
    times.sort();
    (pct(&times, 0.5), pct(&times, 0.99), bytes)
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.db");
    let begun = Instant::now();
    generate(&path);
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0)
        + std::fs::metadata(path.with_extension("db-wal"))
            .map(|m| m.len())
            .unwrap_or(0);
    eprintln!(
        "generated {DEPLOYMENTS} deployments of {TEMPLATES} templates in {:.1} s ({:.0} MiB)",
        begun.elapsed().as_secs_f64(),
        size as f64 / (1 << 20) as f64
    );
    let store = Arc::new(SqliteStore::open(&path).unwrap());
    let hash = pushguide_server::auth::hash_password("pw").unwrap();
    let now = SystemTime::now();
    store
        .put_user("all", &hash, &["all".into()], false, now)
        .unwrap();
    store
        .put_user("some", &hash, &["some".into()], false, now)
        .unwrap();
    let catalog = Dir((0..TEMPLATES).map(template).collect());
    let app = pushguide_server::router(store, Arc::new(catalog), ServerConfig::default());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let all = login(&app, "all").await;
        let some = login(&app, "some").await;
        let depth = 900_000;
        let cases = [
            ("all 40 templates", &all, String::new(), "1".to_owned()),
            (
                "4 templates (merged)",
                &some,
                String::new(),
                "template IN ('app00', 'app01', 'app02', 'app03')".to_owned(),
            ),
            (
                "?template=app07",
                &all,
                "template=app07&".to_owned(),
                "template = 'app07'".to_owned(),
            ),
        ];
        eprintln!("| user | page | HTML p50 / p99 | JSON p50 / p99 |");
        eprintln!("|---|---|---|---|");
        for (who, session, filter, cond) in &cases {
            let count: usize = {
                let conn = rusqlite::Connection::open(&path).unwrap();
                conn.query_row(
                    &format!("SELECT count(*) FROM deployments WHERE {cond}"),
                    [],
                    |r| r.get::<_, i64>(0),
                )
                .unwrap() as usize
            };
            let deep = depth.min(count.saturating_sub(100));
            let key = key_at(&path, cond, deep);
            for (page, extra) in [
                ("first".to_owned(), String::new()),
                (format!("{deep} rows deep"), format!("after={key}")),
            ] {
                let q = format!("{filter}{extra}");
                let (h50, h99, hb) = measure(&app, session, &format!("/history?{q}")).await;
                let (j50, j99, jb) = measure(&app, session, &format!("/api/v1/history?{q}")).await;
                eprintln!(
                    "| {who} | {page} | {:.2} / {:.2} ms ({} KiB) | {:.2} / {:.2} ms ({} KiB) |",
                    h50.as_secs_f64() * 1e3,
                    h99.as_secs_f64() * 1e3,
                    hb / 1024,
                    j50.as_secs_f64() * 1e3,
                    j99.as_secs_f64() * 1e3,
                    jb / 1024,
                );
            }
        }
    });
}
