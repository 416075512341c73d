//! The history, log and statistics pages and their JSON twins through the router (tower
//! `oneshot`): filters, pages by key, view permissions, escaping and refused parameters.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::response::Response;
use axum::Router;
use pushguide_core::{DeploymentOutcome, Event, EventKind, MinionId, Report, Stage, Template};
use pushguide_server::{
    Catalog, CatalogEntry, CatalogError, ServerConfig, LOGIN_CSRF_COOKIE, SESSION_COOKIE,
};
use pushguide_store::SqliteStore;
use serde_json::Value;
use tower::ServiceExt;

use pushguide_java as _;

const HOSTILE: &str = "<script>alert('x')</script>";

fn template(name: &str, acl: &str) -> String {
    format!(
        "name = \"{name}\"\n{acl}\n[targets]\nminions = [\"web-01\", \"web-02\"]\n\
         [project]\nkind = \"java-tomcat\"\ncontext = \"shop\"\nroot = \"/srv/shop\"\n\
         catalina_base = \"/var/lib/tomcat10\"\nservice = \"tomcat10\"\n"
    )
}

struct Fixed(Vec<String>);

impl Catalog for Fixed {
    fn scan(&self) -> Result<Vec<CatalogEntry>, CatalogError> {
        let mut out = Vec::new();
        for text in &self.0 {
            let t = Template::from_toml_str(text, "test")?;
            out.push(CatalogEntry::Loaded {
                file: PathBuf::from(format!("templates/{}.toml", t.name)),
                template: Box::new(t),
            });
        }
        out.push(CatalogEntry::Broken {
            file: "templates/broken.toml".into(),
            error: "bad".into(),
        });
        Ok(out)
    }
}

fn hash(password: &str) -> String {
    static HASHES: OnceLock<std::sync::Mutex<Vec<(String, String)>>> = OnceLock::new();
    let m = HASHES.get_or_init(Default::default);
    let mut m = m.lock().unwrap();
    if let Some((_, h)) = m.iter().find(|(p, _)| p == password) {
        return h.clone();
    }
    let h = pushguide_server::auth::hash_password(password).unwrap();
    m.push((password.to_owned(), h.clone()));
    h
}

struct Env {
    _dir: tempfile::TempDir,
    db: PathBuf,
    store: Arc<SqliteStore>,
    app: Router,
}

/// alice (ops) views and deploys shop and billing; bob (devs) views shop only.
fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("store.db");
    let store = Arc::new(SqliteStore::open(&db).unwrap());
    let now = SystemTime::now();
    store
        .put_user("alice", &hash("alice-pw"), &["ops".into()], false, now)
        .unwrap();
    store
        .put_user("bob", &hash("bob-pw"), &["devs".into()], false, now)
        .unwrap();
    let catalog = Fixed(vec![
        template(
            "shop",
            "[acl.viewers]\ngroups = [\"devs\"]\n[acl.deployers]\ngroups = [\"ops\"]",
        ),
        template("billing", "[acl.deployers]\ngroups = [\"ops\"]"),
    ]);
    let mut config = ServerConfig::default();
    config.login_delay = Duration::from_millis(1);
    config.login_delay_max = Duration::from_millis(5);
    let app = pushguide_server::router(store.clone(), Arc::new(catalog), config);
    Env {
        _dir: dir,
        db,
        store,
        app,
    }
}

async fn send(app: &Router, req: Request<Body>) -> Response {
    app.clone().oneshot(req).await.unwrap()
}

async fn text(res: Response) -> String {
    let bytes = axum::body::to_bytes(res.into_body(), 16 << 20)
        .await
        .unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn cookie_value(res: &Response, name: &str) -> Option<String> {
    res.headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .find_map(|c| {
            let first = c.to_str().ok()?.split(';').next()?.to_owned();
            let (k, v) = first.split_once('=')?;
            (k == name).then(|| v.to_owned())
        })
}

fn get(path: &str, session: &str) -> Request<Body> {
    Request::get(path)
        .header(header::COOKIE, format!("{SESSION_COOKIE}={session}"))
        .body(Body::empty())
        .unwrap()
}

async fn login(app: &Router, user: &str, password: &str) -> String {
    let res = send(app, Request::get("/login").body(Body::empty()).unwrap()).await;
    let csrf = cookie_value(&res, LOGIN_CSRF_COOKIE).unwrap();
    let res = send(
        app,
        Request::post("/login")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::COOKIE, format!("{LOGIN_CSRF_COOKIE}={csrf}"))
            .body(Body::from(format!(
                "user={user}&password={password}&csrf={csrf}"
            )))
            .unwrap(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    cookie_value(&res, SESSION_COOKIE).unwrap()
}

async fn json(app: &Router, path: &str, session: &str) -> (StatusCode, Value, Option<String>) {
    let res = send(app, get(path, session)).await;
    let status = res.status();
    let link = res
        .headers()
        .get(header::LINK)
        .map(|v| v.to_str().unwrap().to_owned());
    let body = text(res).await;
    (status, serde_json::from_str(&body).unwrap(), link)
}

async fn page(app: &Router, path: &str, session: &str) -> (StatusCode, String) {
    let res = send(app, get(path, session)).await;
    (res.status(), text(res).await)
}

/// Inserts deployments straight into the store: `(id, template, user, started_ms, outcome)`,
/// each finished 1.5 s after its start unless running.
fn insert(db: &PathBuf, rows: &[(String, &str, &str, i64, Option<&str>)]) {
    let mut conn = rusqlite::Connection::open(db).unwrap();
    let tx = conn.transaction().unwrap();
    for (id, template, user, started, outcome) in rows {
        let ended = outcome.map(|_| started + 1500);
        tx.execute(
            "INSERT INTO deployments (id, template, version, principal, dry_run, started_ms,
                ended_ms, duration_ms, outcome, owner, last_event_ms)
             VALUES (?1, ?2, ?3, ?4, 0, ?5, ?6, ?7, ?8, 'o', ?5)",
            rusqlite::params![
                id,
                template,
                format!("<b>{id}</b>"),
                user,
                started,
                ended,
                ended.map(|e| e - started),
                outcome
            ],
        )
        .unwrap();
    }
    tx.commit().unwrap();
}

const T0: i64 = 1_795_772_566_000; // 2026-11-27T09:42:46Z

/// 30 shop deployments, three starting in each second, ids not in start order; every fourth by
/// bob, every third failed; 6 billing deployments.
fn history_rows(db: &PathBuf) {
    let mut rows = Vec::new();
    for i in 0..30i64 {
        rows.push((
            format!("shop-{:02}", (i * 7) % 30),
            "shop",
            if i % 4 == 0 { "bob" } else { "alice" },
            T0 + (i / 3) * 1000,
            Some(if i % 3 == 0 { "failed" } else { "succeeded" }),
        ));
    }
    for i in 0..6i64 {
        rows.push((
            format!("billing-{i}"),
            "billing",
            "alice",
            T0 + i * 1000 + 1,
            Some("succeeded"),
        ));
    }
    insert(db, &rows);
}

fn ids(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

/// The URL of `rel` in a `Link` header.
fn rel(link: &Option<String>, rel: &str) -> Option<String> {
    link.as_deref()?.split(", ").find_map(|l| {
        let (u, r) = l.split_once("; ")?;
        (r == format!("rel=\"{rel}\""))
            .then(|| u.trim_start_matches('<').trim_end_matches('>').to_owned())
    })
}

/// Every id of the history of `start`, following `next` links to the end and `prev` links back.
async fn walk(app: &Router, session: &str, start: &str) -> (Vec<String>, Vec<String>) {
    let mut forward = Vec::new();
    let mut url = start.to_owned();
    let mut last_page;
    loop {
        let (status, v, link) = json(app, &url, session).await;
        assert_eq!(status, StatusCode::OK, "{url}: {v}");
        forward.extend(ids(&v));
        last_page = (ids(&v), link.clone());
        match rel(&link, "next") {
            Some(u) => url = u,
            None => break,
        }
    }
    let mut backward = last_page.0;
    let mut link = last_page.1;
    while let Some(u) = rel(&link, "prev") {
        let (_, v, l) = json(app, &u, session).await;
        let mut page = ids(&v);
        page.extend(backward);
        backward = page;
        link = l;
    }
    (forward, backward)
}

fn expected(db: &PathBuf, cond: &str) -> Vec<String> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare(&format!(
            "SELECT id FROM deployments WHERE {cond} ORDER BY started_ms DESC, id DESC"
        ))
        .unwrap();
    let v = stmt
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<Vec<String>, _>>()
        .unwrap();
    v
}

#[tokio::test]
async fn history_pages_by_key_without_duplicates_or_gaps() {
    let e = env();
    history_rows(&e.db);
    let alice = login(&e.app, "alice", "alice-pw").await;
    let all = expected(&e.db, "1");
    assert_eq!(all.len(), 36);
    for limit in [1, 4, 7, 50] {
        let (forward, backward) =
            walk(&e.app, &alice, &format!("/api/v1/history?limit={limit}")).await;
        assert_eq!(forward, all, "limit {limit}");
        assert_eq!(backward, all, "limit {limit}, back");
        let unique: HashSet<&String> = forward.iter().collect();
        assert_eq!(unique.len(), forward.len());
    }
    // the first page has no previous page; its shape is `pushguide history --json`'s
    let (_, v, link) = json(&e.app, "/api/v1/history?limit=4", &alice).await;
    assert_eq!(rel(&link, "prev"), None);
    assert!(rel(&link, "next").unwrap().contains("after="));
    let mut keys: Vec<&str> = v[0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "dry_run",
            "duration_ms",
            "ended",
            "id",
            "mode",
            "outcome",
            "reason",
            "started",
            "template",
            "user",
            "version"
        ]
    );

    // the page: each row links its deployment and log pages, and the older page
    let (status, html) = page(&e.app, "/history?limit=4", &alice).await;
    assert_eq!(status, StatusCode::OK);
    let first = &all[0];
    assert!(
        html.contains(&format!("href=\"/deployments/{first}\"")),
        "{html}"
    );
    assert!(
        html.contains(&format!("href=\"/deployments/{first}/log\"")),
        "{html}"
    );
    assert!(html.contains("rel=\"next\""), "{html}");
    assert!(!html.contains("rel=\"prev\""), "{html}");
    // versions hold markup: escaped on the page
    assert!(!html.contains("<b>"), "{html}");
    assert!(html.contains("&lt;b&gt;"), "{html}");
    // following the page's own link gives the next rows
    let next = html
        .split("rel=\"next\" href=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .replace("&amp;", "&");
    let (status, html2) = page(&e.app, &next, &alice).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html2.contains(&format!("href=\"/deployments/{}\"", all[4])),
        "{html2}"
    );
    assert!(
        !html2.contains(&format!("href=\"/deployments/{}\"", all[3])),
        "{html2}"
    );
    assert!(html2.contains("rel=\"prev\""), "{html2}");
}

#[tokio::test]
async fn history_filters_by_template_outcome_user_and_date() {
    let e = env();
    history_rows(&e.db);
    insert(
        &e.db,
        &[("shop-running".into(), "shop", "carol", T0 + 60_000, None)],
    );
    let alice = login(&e.app, "alice", "alice-pw").await;
    let cases = [
        ("template=billing", "template = 'billing'"),
        (
            "template=shop&outcome=failed&user=bob",
            "template = 'shop' AND outcome = 'failed' AND principal = 'bob'",
        ),
        ("outcome=running", "outcome IS NULL"),
        ("user=carol", "principal = 'carol'"),
        // from inclusive, to: the whole day
        (
            "from=2026-11-27T09:42:48Z&to=2026-11-27T09:42:50Z",
            &format!("started_ms >= {} AND started_ms < {}", T0 + 2000, T0 + 4000),
        ),
        ("from=2026-11-28", "0"),
        ("to=2026-11-27", "1"),
        ("to=2026-11-26", "0"),
    ];
    for (q, cond) in cases {
        let want = expected(&e.db, cond);
        let (forward, _) = walk(&e.app, &alice, &format!("/api/v1/history?limit=3&{q}")).await;
        assert_eq!(forward, want, "{q}");
        let (status, html) = page(&e.app, &format!("/history?{q}"), &alice).await;
        assert_eq!(status, StatusCode::OK, "{q}");
        if want.is_empty() {
            assert!(html.contains("No deployment matches."), "{q}");
        }
        for id in &want {
            assert!(html.contains(&format!("/deployments/{id}\"")), "{q}: {id}");
        }
    }
    // the failed shop rows of bob: the filter keeps its values in the page links
    let (_, _, link) = json(
        &e.app,
        "/api/v1/history?limit=1&template=shop&outcome=failed&user=bob",
        &alice,
    )
    .await;
    let next = rel(&link, "next").unwrap();
    for part in [
        "template=shop",
        "outcome=failed",
        "user=bob",
        "limit=1",
        "after=",
    ] {
        assert!(next.contains(part), "{next}");
    }
}

#[tokio::test]
async fn a_user_never_sees_a_template_they_may_not_view() {
    let e = env();
    history_rows(&e.db);
    journal(&e.store, "billing-log", "billing");
    let bob = login(&e.app, "bob", "bob-pw").await;
    let (forward, _) = walk(&e.app, &bob, "/api/v1/history?limit=7").await;
    assert_eq!(forward, expected(&e.db, "template = 'shop'"));
    let (_, html) = page(&e.app, "/history", &bob).await;
    assert!(!html.contains("billing"), "{html}");
    // asking for it by name: 404, as for a template that does not exist
    for t in ["billing", "nosuch"] {
        let (status, v, _) = json(&e.app, &format!("/api/v1/history?template={t}"), &bob).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{t}");
        assert_eq!(
            v["error"]["message"],
            format!("no template `{t}` you may view")
        );
        let (status, _) = page(&e.app, &format!("/history?template={t}"), &bob).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _, _) = json(&e.app, &format!("/api/v1/stats?template={t}"), &bob).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    // a log of a billing deployment: 404, as for an unknown id; alice sees it
    for id in ["billing-log", "billing-0", "no-such-id"] {
        let (status, v, _) = json(&e.app, &format!("/api/v1/deployments/{id}/log"), &bob).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{id}");
        assert_eq!(
            v["error"]["message"],
            format!("no deployment `{id}` you may view")
        );
        let (status, html) = page(&e.app, &format!("/deployments/{id}/log"), &bob).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{id}");
        assert!(!html.contains("web-0"), "{html}");
    }
    let alice = login(&e.app, "alice", "alice-pw").await;
    let (status, _, _) = json(&e.app, "/api/v1/deployments/billing-log/log", &alice).await;
    assert_eq!(status, StatusCode::OK);
    // statistics: bob's totals count shop only
    let (_, v, _) = json(&e.app, "/api/v1/stats?days=3660", &bob).await;
    assert_eq!(v["templates"], serde_json::json!(["shop"]));
    assert_eq!(v["count"], 30);
    let (_, v, _) = json(&e.app, "/api/v1/stats?days=3660", &alice).await;
    assert_eq!(v["count"], 37);
    let (_, html) = page(&e.app, "/stats?days=3660", &bob).await;
    assert!(!html.contains("billing"), "{html}");
    assert!(!html.contains("web-02"), "billing's failing host: {html}");
}

/// The journal and report of deployment `id` of `template` by alice: web-01 succeeds, web-02
/// fails at deploy with an output holding markup; salt calls with jids.
fn journal(store: &SqliteStore, id: &str, template: &str) {
    let t0 = SystemTime::now() - Duration::from_secs(3600);
    let host = |h: &str| MinionId::new(h).unwrap();
    let ev = |secs: u64, kind: EventKind| Event {
        at: t0 + Duration::from_secs(secs),
        deployment: Arc::from(id),
        kind,
    };
    let hosts = vec![host("web-01"), host("web-02")];
    let call = |secs, stage, fun: &str, jid: &str, ok, failed, millis| {
        ev(
            secs,
            EventKind::CallFinished {
                batch: Some(0),
                stage,
                fun: fun.into(),
                jid: Some(jid.into()),
                ok,
                failed,
                millis,
            },
        )
    };
    let events = vec![
        ev(
            0,
            EventKind::DeploymentStarted {
                template: template.into(),
                version: "2.0".into(),
                user: "alice".into(),
                dry_run: false,
                rollback: false,
            },
        ),
        ev(
            1,
            EventKind::Prepared {
                hosts: 2,
                batches: 1,
                excluded: Vec::new(),
                plan: vec![hosts.clone()],
                left_out: vec![],
            },
        ),
        ev(
            2,
            EventKind::BatchStarted {
                batch: 0,
                hosts: 2,
                minions: hosts.clone(),
            },
        ),
        ev(
            2,
            EventKind::StageStarted {
                batch: Some(0),
                stage: Stage::PreDeploy,
                hosts: 2,
            },
        ),
        call(
            2,
            Stage::PreDeploy,
            "service.stop",
            "20261127094246111111",
            2,
            0,
            812,
        ),
        ev(
            3,
            EventKind::StageFinished {
                batch: Some(0),
                stage: Stage::PreDeploy,
                ok: 2,
                failed: 0,
            },
        ),
        ev(
            3,
            EventKind::StageStarted {
                batch: Some(0),
                stage: Stage::Deploy,
                hosts: 2,
            },
        ),
        call(
            3,
            Stage::Deploy,
            "file.symlink",
            "20261127094246222222",
            1,
            1,
            1234,
        ),
        ev(
            4,
            EventKind::HostFailed {
                host: host("web-02"),
                stage: Stage::Deploy,
                fun: Some("file.symlink".into()),
                reason: format!("disk full {HOSTILE}"),
            },
        ),
        ev(
            4,
            EventKind::StageFinished {
                batch: Some(0),
                stage: Stage::Deploy,
                ok: 1,
                failed: 1,
            },
        ),
        ev(
            4,
            EventKind::HostSucceeded {
                host: host("web-01"),
            },
        ),
        ev(
            5,
            EventKind::DeploymentFinished {
                outcome: DeploymentOutcome::PartiallyApplied,
            },
        ),
    ];
    store.append_events(&events).unwrap();
    let long = format!("{}TAIL-END", "x".repeat(5000));
    let report: Report = serde_json::from_value(serde_json::json!({
        "id": id, "template": template, "version": "2.0", "user": "alice", "dry_run": false,
        "outcome": "partially-applied", "reason": "web-02 failed",
        "started": t0, "duration": {"secs": 5, "nanos": 0},
        "batches": [["web-01", "web-02"]],
        "hosts": [
            {"host": "web-01", "batch": 0, "status": "succeeded", "failure": null,
             "rollback_failure": null, "rolled_back_to": null,
             "log": [{"type": "message", "stage": "pre-deploy", "text": "stopped"},
                     {"type": "message", "stage": "deploy", "text": "linked"}]},
            {"host": "web-02", "batch": 0, "status": "failed", "failure": null,
             "rollback_failure": null, "rolled_back_to": null,
             "log": [{"type": "message", "stage": "deploy", "text": HOSTILE},
                     {"type": "message", "stage": "deploy", "text": long}]}
        ],
        "calls": [], "events": [], "history_error": null
    }))
    .unwrap();
    store.finish_report(&report).unwrap();
}

#[tokio::test]
async fn the_log_shows_calls_stages_and_escaped_output_per_host() {
    let e = env();
    journal(&e.store, "shop-log", "shop");
    let bob = login(&e.app, "bob", "bob-pw").await;
    let (status, v, _) = json(&e.app, "/api/v1/deployments/shop-log/log", &bob).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    // `pushguide log --json`'s shape
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["calls", "deployment", "exit_code", "hosts"]);
    assert_eq!(v["exit_code"], 2);
    assert_eq!(
        v["calls"][1],
        serde_json::json!({"batch": 0, "stage": "deploy", "fun": "file.symlink",
                           "jid": "20261127094246222222", "ok": 1, "failed": 1, "millis": 1234})
    );
    let hosts: Vec<&str> = v["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["host"].as_str().unwrap())
        .collect();
    assert_eq!(hosts, ["web-01", "web-02"]);
    assert_eq!(v["hosts"][1]["status"], "failed");
    assert_eq!(v["hosts"][1]["log"][0], format!("[deploy] {HOSTILE}"));

    let (status, html) = page(&e.app, "/deployments/shop-log/log", &bob).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!html.contains("<script"), "{html}");
    assert!(html.contains("[deploy] &lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
    assert!(
        html.contains("disk full &lt;script&gt;"),
        "the failure reason: {html}"
    );
    for jid in ["20261127094246111111", "20261127094246222222"] {
        assert!(html.contains(jid), "{jid}");
    }
    assert!(
        html.contains("1234 ms") && html.contains("812 ms"),
        "{html}"
    );
    // the long output line: its end, marked as cut
    assert!(html.contains("TAIL-END") && html.contains("characters before)"));
    assert!(!html.contains(&"x".repeat(2100)));
    // per host: web-02's section holds the deploy call and its output, web-01's its own lines
    let web02 = html.split("<section><h2>web-02").nth(1).unwrap();
    assert!(web02.contains("file.symlink") && web02.contains("TAIL-END"));
    let web01 = html
        .split("<section><h2>web-01")
        .nth(1)
        .unwrap()
        .split("</section>")
        .next()
        .unwrap();
    assert!(web01.contains("[pre-deploy] stopped") && !web01.contains("TAIL-END"));
    assert!(html.contains("href=\"/deployments/shop-log\""), "{html}");

    // one host
    let (_, v, _) = json(&e.app, "/api/v1/deployments/shop-log/log?host=web-02", &bob).await;
    assert_eq!(v["hosts"].as_array().unwrap().len(), 1);
    assert_eq!(v["hosts"][0]["host"], "web-02");
    let (_, html) = page(&e.app, "/deployments/shop-log/log?host=web-01", &bob).await;
    assert!(
        html.contains("<h2>web-01") && !html.contains("<h2>web-02"),
        "{html}"
    );
    let (_, html) = page(&e.app, "/deployments/shop-log/log?host=%3Cscript%3E", &bob).await;
    assert!(html.contains("No host `&lt;script&gt;`"), "{html}");
}

#[tokio::test]
async fn statistics_draw_svg_charts_with_tables() {
    let e = env();
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let day = 86_400_000;
    insert(
        &e.db,
        &[
            (
                "s1".into(),
                "shop",
                "alice",
                now - 3 * day,
                Some("succeeded"),
            ),
            (
                "s2".into(),
                "shop",
                "alice",
                now - 3 * day + 1000,
                Some("failed"),
            ),
            ("s3".into(), "shop", "alice", now - day, Some("succeeded")),
            ("b1".into(), "billing", "alice", now - day, Some("failed")),
        ],
    );
    {
        let conn = rusqlite::Connection::open(&e.db).unwrap();
        conn.execute(
            "INSERT INTO host_results (deployment, template, started_ms, dry_run, host, batch,
                stage, status, fun, detail, at_ms)
             VALUES ('s2', 'shop', ?1, 0, ?2, 0, 2, 'failed', 'cmd.run', 'exit 1', ?1)",
            rusqlite::params![now - 3 * day + 1000, HOSTILE],
        )
        .unwrap();
    }
    let alice = login(&e.app, "alice", "alice-pw").await;
    let (status, v, _) = json(&e.app, "/api/v1/stats?template=shop&days=7", &alice).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    // `pushguide stats --json`'s keys, and the series of the page
    for k in [
        "template",
        "templates",
        "from",
        "to",
        "tz",
        "count",
        "succeeded",
        "success_rate",
        "mean_ms",
        "p50_ms",
        "p95_ms",
        "rollbacks",
        "by_hour",
        "by_weekday",
        "failing_hosts",
        "failing_stages",
        "incidents",
        "recovered",
        "mttr_ms",
        "by_day",
        "by_hour_of_week",
        "max_time_to_recover_ms",
    ] {
        assert!(v.get(k).is_some(), "{k}: {v}");
    }
    assert_eq!(v["template"], "shop");
    assert_eq!(v["count"], 3);
    assert_eq!(v["failing_hosts"], serde_json::json!([[HOSTILE, 1]]));
    let by_day = v["by_day"].as_array().unwrap();
    assert!((7..=8).contains(&by_day.len()), "{by_day:?}");
    let counted: u64 = by_day.iter().map(|d| d["count"].as_u64().unwrap()).sum();
    assert_eq!(counted, 3);
    assert!(by_day
        .iter()
        .any(|d| d["count"] == 2 && d["success_rate"] == 0.5));
    let week: u64 = v["by_hour_of_week"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["count"].as_u64().unwrap())
        .sum();
    assert_eq!(week, 3);
    let (_, all, _) = json(&e.app, "/api/v1/stats", &alice).await;
    assert_eq!(all["count"], 4);
    assert_eq!(all["template"], Value::Null);

    let (status, html) = page(&e.app, "/stats?template=shop&days=7", &alice).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(html.matches("<svg").count(), 5, "{html}");
    assert_eq!(
        html.matches("<details><summary>Table</summary><table>")
            .count(),
        5
    );
    for title in [
        "Releases per day",
        "Success rate per day",
        "Release duration per day",
        "Success by hour of day and weekday (UTC)",
        "Failures by stage",
    ] {
        assert!(html.contains(title), "{title}");
    }
    assert!(html.contains("duration (s)") && html.contains("success rate (%)"));
    assert!(
        !html.contains("style="),
        "CSP blocks style attributes: {html}"
    );
    assert!(!html.contains("<script"), "{html}");
    assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)"), "{html}");
    assert!(!html.contains("NaN") && !html.contains("inf<"), "{html}");
    // nothing in the window: the charts say so, the tables are empty
    let (_, v, _) = json(&e.app, "/api/v1/stats?days=1", &alice).await;
    assert_eq!(v["count"], 0);
    let (status, html) = page(&e.app, "/stats?days=1", &alice).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(html.matches("<svg").count(), 5, "{html}");
    assert!(html.matches(">no data</text>").count() >= 3, "{html}");
    assert!(!html.contains("NaN"), "{html}");
}

#[tokio::test]
async fn bad_parameters_get_a_400_naming_them() {
    let e = env();
    let alice = login(&e.app, "alice", "alice-pw").await;
    let long = "x".repeat(600);
    let cases: Vec<(String, &str)> = vec![
        ("/history?limit=0".into(), "limit"),
        ("/history?limit=100000".into(), "limit"),
        ("/history?limit=ten".into(), "limit"),
        ("/history?outcome=exploded".into(), "outcome"),
        ("/history?from=yesterday".into(), "from"),
        ("/history?to=2026-02-30".into(), "to"),
        ("/history?from=2026-11-28&to=2026-11-27".into(), "from"),
        ("/history?after=garbage".into(), "after"),
        ("/history?before=12.".into(), "before"),
        ("/history?after=1.a&before=2.b".into(), "before"),
        ("/history?sort=id".into(), "sort"),
        ("/history?user=a&user=b".into(), "user"),
        (format!("/history?user={long}"), "user"),
        ("/history?user=%FF".into(), "user"),
        ("/stats?days=0".into(), "days"),
        ("/stats?days=99999".into(), "days"),
        ("/stats?days=-1".into(), "days"),
        ("/stats?tz=UTC".into(), "tz"),
        ("/deployments/x/log?host=%00".into(), "host"),
        (format!("/deployments/x/log?host={long}"), "host"),
        ("/deployments/x/log?hosts=a".into(), "hosts"),
    ];
    for (path, param) in cases {
        let (status, body) = page(&e.app, &path, &alice).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert!(
            body.starts_with(&format!("query parameter `{param}`: ")),
            "{path}: {body}"
        );
        let api = path.replacen('/', "/api/v1/", 1);
        let (status, v, _) = json(&e.app, &api, &alice).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{api}");
        assert_eq!(v["error"]["kind"], "invalid", "{api}");
        assert_eq!(v["error"]["parameter"], param, "{api}");
    }
}
