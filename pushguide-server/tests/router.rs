//! The service through its router (tower `oneshot`, no network): login, logout, expiry, CSRF,
//! what each user sees, security headers, escaping, and the API's JSON.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::response::Response;
use axum::Router;
use pushguide_core::Template;
use pushguide_server::{
    Access, Catalog, CatalogEntry, CatalogError, ServerConfig, LOGIN_CSRF_COOKIE, ROUTES,
    SESSION_COOKIE,
};
use pushguide_store::SqliteStore;
use serde_json::Value;
use tower::ServiceExt;

// link the project type the templates use
use pushguide_java as _;

const HOSTILE: &str = "<script>alert('x')</script>";

fn template(name: &str, description: &str, acl: &str) -> String {
    format!(
        "name = \"{name}\"\ndescription = \"{description}\"\n{acl}\n[targets]\nminions = [\"web-01\"]\n\
         [project]\nkind = \"java-tomcat\"\ncontext = \"shop\"\nroot = \"/srv/shop\"\n\
         catalina_base = \"/var/lib/tomcat10\"\nservice = \"tomcat10\"\n"
    )
}

/// Templates kept as TOML text, parsed on every scan (as the CLI reads its directory).
struct Fixed {
    good: Vec<String>,
    broken: Vec<(String, String)>,
}

impl Catalog for Fixed {
    fn scan(&self) -> Result<Vec<CatalogEntry>, CatalogError> {
        let mut out = Vec::new();
        for text in &self.good {
            let t = Template::from_toml_str(text, "test")?;
            out.push(CatalogEntry::Loaded {
                file: PathBuf::from(format!("templates/{}.toml", t.name)),
                template: Box::new(t),
            });
        }
        for (file, error) in &self.broken {
            out.push(CatalogEntry::Broken {
                file: file.clone(),
                error: error.clone(),
            });
        }
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

fn env_with(config: ServerConfig) -> Env {
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
    store
        .put_user("root", &hash("root-pw"), &["admins".into()], false, now)
        .unwrap();
    let catalog = Fixed {
        good: vec![
            template(
                "shop",
                HOSTILE,
                "[acl.viewers]\ngroups = [\"devs\"]\n[acl.deployers]\ngroups = [\"ops\"]",
            ),
            template("billing", "Billing", "[acl.deployers]\ngroups = [\"ops\"]"),
        ],
        broken: vec![(
            "templates/broken.toml".into(),
            "expected `=` <img src=x>".into(),
        )],
    };
    let app = pushguide_server::router(store.clone(), Arc::new(catalog), config);
    Env {
        _dir: dir,
        db,
        store,
        app,
    }
}

fn config() -> ServerConfig {
    let mut c = ServerConfig::default();
    c.admin_groups = vec!["admins".into()];
    c.login_delay = Duration::from_millis(1);
    c.login_delay_max = Duration::from_millis(5);
    c
}

fn env() -> Env {
    env_with(config())
}

async fn send(app: &Router, req: Request<Body>) -> Response {
    app.clone().oneshot(req).await.unwrap()
}

async fn text(res: Response) -> String {
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn set_cookies(res: &Response) -> Vec<String> {
    res.headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

fn cookie_value(res: &Response, name: &str) -> Option<String> {
    set_cookies(res).into_iter().find_map(|c| {
        let first = c.split(';').next()?.to_owned();
        let (k, v) = first.split_once('=')?;
        (k == name).then(|| v.to_owned())
    })
}

fn get(path: &str, session: Option<&str>) -> Request<Body> {
    let mut b = Request::get(path);
    if let Some(s) = session {
        b = b.header(header::COOKIE, format!("{SESSION_COOKIE}={s}"));
    }
    b.body(Body::empty()).unwrap()
}

fn form(path: &str, cookie: &str, body: &str) -> Request<Body> {
    Request::post(path)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::COOKIE, cookie)
        .body(Body::from(body.to_owned()))
        .unwrap()
}

/// The login form's CSRF token (cookie and hidden field agree).
async fn login_csrf(app: &Router) -> String {
    let res = send(app, get("/login", None)).await;
    assert_eq!(res.status(), StatusCode::OK);
    let token = cookie_value(&res, LOGIN_CSRF_COOKIE).unwrap();
    let page = text(res).await;
    assert!(
        page.contains(&format!("name=\"csrf\" value=\"{token}\"")),
        "{page}"
    );
    token
}

async fn try_login(app: &Router, user: &str, password: &str) -> Response {
    let csrf = login_csrf(app).await;
    send(
        app,
        form(
            "/login",
            &format!("{LOGIN_CSRF_COOKIE}={csrf}"),
            &format!("user={user}&password={password}&csrf={csrf}"),
        ),
    )
    .await
}

/// Logs in; the session token.
async fn login(app: &Router, user: &str, password: &str) -> String {
    let res = try_login(app, user, password).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()[header::LOCATION], "/");
    cookie_value(&res, SESSION_COOKIE).unwrap()
}

/// The session's CSRF token, from the API.
async fn session_csrf(app: &Router, session: &str) -> String {
    let res = send(app, get("/api/v1/session", Some(session))).await;
    assert_eq!(res.status(), StatusCode::OK);
    let v: Value = serde_json::from_str(&text(res).await).unwrap();
    v["csrf"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_login_sets_a_safe_session_cookie_and_opens_the_pages() {
    let e = env();
    let res = try_login(&e.app, "alice", "alice-pw").await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let cookie = set_cookies(&res)
        .into_iter()
        .find(|c| c.starts_with(SESSION_COOKIE))
        .unwrap();
    for part in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(part), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain http: {cookie}");
    let token = cookie_value(&res, SESSION_COOKIE).unwrap();
    assert_eq!(token.len(), 64);
    let page = send(&e.app, get("/", Some(&token))).await;
    assert_eq!(page.status(), StatusCode::OK);
    let page = text(page).await;
    assert!(page.contains("shop") && page.contains("billing"), "{page}");
    // the store keeps only the token's hash
    let conn = rusqlite::Connection::open(&e.db).unwrap();
    let stored: String = conn
        .query_row("SELECT token_sha256 FROM sessions", [], |r| r.get(0))
        .unwrap();
    assert_ne!(stored, token);
    assert_eq!(stored.len(), 64);
}

#[tokio::test]
async fn cookies_are_secure_behind_an_https_public_url() {
    let mut c = config();
    c.public_url = Some("https://deploy.example.com/".into());
    let e = env_with(c);
    let res = send(&e.app, get("/login", None)).await;
    assert!(set_cookies(&res).iter().all(|c| c.contains("; Secure")));
    let res = try_login(&e.app, "alice", "alice-pw").await;
    let cookies = set_cookies(&res);
    assert!(
        cookies
            .iter()
            .any(|c| c.starts_with(SESSION_COOKIE) && c.contains("; Secure")),
        "{cookies:?}"
    );
}

#[tokio::test]
async fn a_wrong_password_and_an_unknown_user_get_the_same_answer() {
    let e = env();
    let strip = |page: String, res_token: String| page.replace(&res_token, "TOKEN");
    let wrong = try_login(&e.app, "alice", "nope").await;
    let unknown = try_login(&e.app, "mallory", "nope").await;
    for r in [&wrong, &unknown] {
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(cookie_value(r, SESSION_COOKIE), None);
    }
    let (tw, tu) = (
        cookie_value(&wrong, LOGIN_CSRF_COOKIE).unwrap(),
        cookie_value(&unknown, LOGIN_CSRF_COOKIE).unwrap(),
    );
    let (pw, pu) = (strip(text(wrong).await, tw), strip(text(unknown).await, tu));
    assert_eq!(pw, pu);
    assert!(pw.contains("Unknown user or wrong password."), "{pw}");
    let conn = rusqlite::Connection::open(&e.db).unwrap();
    let n: i64 = conn
        .query_row("SELECT count(*) FROM sessions", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 0);
}

#[tokio::test]
async fn failed_logins_slow_the_next_attempt_down() {
    let mut c = config();
    c.login_delay = Duration::from_millis(300);
    c.login_delay_max = Duration::from_millis(600);
    let e = env_with(c);
    let begun = Instant::now();
    try_login(&e.app, "alice", "nope").await;
    let first = begun.elapsed();
    assert!(first < Duration::from_millis(300), "{first:?}");
    let begun = Instant::now();
    try_login(&e.app, "alice", "nope").await;
    assert!(begun.elapsed() >= Duration::from_millis(300));
    let begun = Instant::now();
    let res = try_login(&e.app, "alice", "alice-pw").await;
    assert!(begun.elapsed() >= Duration::from_millis(600));
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    // a success forgets the failures; another user was never slowed
    let begun = Instant::now();
    login(&e.app, "bob", "bob-pw").await;
    login(&e.app, "alice", "alice-pw").await;
    assert!(begun.elapsed() < Duration::from_millis(300));
}

#[tokio::test]
async fn logout_ends_the_session() {
    let e = env();
    let token = login(&e.app, "alice", "alice-pw").await;
    let csrf = session_csrf(&e.app, &token).await;
    let res = send(
        &e.app,
        form(
            "/logout",
            &format!("{SESSION_COOKIE}={token}"),
            &format!("csrf={csrf}"),
        ),
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()[header::LOCATION], "/login");
    assert!(set_cookies(&res)
        .iter()
        .any(|c| c.starts_with(&format!("{SESSION_COOKIE}=;")) && c.contains("Max-Age=0")));
    let res = send(&e.app, get("/", Some(&token))).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let res = send(&e.app, get("/api/v1/templates", Some(&token))).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn sessions_end_after_idle_or_absolute_expiry() {
    let e = env();
    let conn = rusqlite::Connection::open(&e.db).unwrap();
    for column in ["last_seen_ms", "created_ms"] {
        let token = login(&e.app, "alice", "alice-pw").await;
        assert_eq!(
            send(&e.app, get("/", Some(&token))).await.status(),
            StatusCode::OK
        );
        // the idle limit is 30 minutes, the absolute one 12 hours
        let back = if column == "last_seen_ms" {
            31 * 60
        } else {
            13 * 3600
        };
        let n = conn
            .execute(
                &format!("UPDATE sessions SET {column} = {column} - ?1 * 1000"),
                [back],
            )
            .unwrap();
        assert_eq!(n, 1);
        let res = send(&e.app, get("/", Some(&token))).await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "{column}");
        assert_eq!(res.headers()[header::LOCATION], "/login");
    }
    let _ = &e.store;
}

#[tokio::test]
async fn state_changes_need_the_csrf_token() {
    let e = env();
    let token = login(&e.app, "alice", "alice-pw").await;
    let csrf = session_csrf(&e.app, &token).await;
    let cookie = format!("{SESSION_COOKIE}={token}");
    for body in [
        String::new(),
        "csrf=".into(),
        format!("csrf={}x", &csrf[1..]),
    ] {
        let res = send(&e.app, form("/logout", &cookie, &body)).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{body}");
    }
    let wrong_header = Request::post("/logout")
        .header(header::COOKIE, &cookie)
        .header("x-csrf-token", "0".repeat(64))
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        send(&e.app, wrong_header).await.status(),
        StatusCode::FORBIDDEN
    );
    // still logged in
    assert_eq!(
        send(&e.app, get("/", Some(&token))).await.status(),
        StatusCode::OK
    );
    let right_header = Request::post("/logout")
        .header(header::COOKIE, &cookie)
        .header("X-CSRF-Token", &csrf)
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        send(&e.app, right_header).await.status(),
        StatusCode::SEE_OTHER
    );

    // the login form: the cookie and the field must both be there and agree
    let good = login_csrf(&e.app).await;
    let other = login_csrf(&e.app).await;
    for (cookie, field) in [
        (String::new(), good.clone()),
        (format!("{LOGIN_CSRF_COOKIE}={good}"), String::new()),
        (format!("{LOGIN_CSRF_COOKIE}={good}"), other.clone()),
        (format!("{LOGIN_CSRF_COOKIE}="), String::new()),
    ] {
        let res = send(
            &e.app,
            form(
                "/login",
                &cookie,
                &format!("user=alice&password=alice-pw&csrf={field}"),
            ),
        )
        .await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{cookie} / {field}");
        assert_eq!(cookie_value(&res, SESSION_COOKIE), None);
    }
}

#[tokio::test]
async fn each_user_sees_the_templates_they_may_view() {
    let e = env();
    let names = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let api = |token: String| {
        let app = e.app.clone();
        async move {
            let res = send(&app, get("/api/v1/templates", Some(&token))).await;
            assert_eq!(res.status(), StatusCode::OK);
            assert_eq!(res.headers()[header::CONTENT_TYPE], "application/json");
            serde_json::from_str::<Value>(&text(res).await).unwrap()
        }
    };
    let bob = login(&e.app, "bob", "bob-pw").await;
    let v = api(bob.clone()).await;
    assert_eq!(names(&v), ["shop"]);
    assert_eq!(v[0]["may_deploy"], false);
    let page = text(send(&e.app, get("/", Some(&bob))).await).await;
    assert!(page.contains("shop") && !page.contains("billing"), "{page}");
    assert!(!page.contains("broken"), "{page}");

    let alice = login(&e.app, "alice", "alice-pw").await;
    let v = api(alice).await;
    assert_eq!(names(&v), ["shop", "billing"]);
    assert_eq!(v[0]["may_deploy"], true);

    // an admin sees the broken file too, with its error; nobody else does
    let root = login(&e.app, "root", "root-pw").await;
    let v = api(root.clone()).await;
    assert_eq!(names(&v), ["broken"]);
    assert_eq!(v[0]["error"], "expected `=` <img src=x>");
    let page = text(send(&e.app, get("/", Some(&root))).await).await;
    assert!(page.contains("expected `=` &lt;img src=x&gt;"), "{page}");
}

#[tokio::test]
async fn the_api_has_the_cli_shape_plus_deployment_state() {
    let e = env();
    {
        let conn = rusqlite::Connection::open(&e.db).unwrap();
        conn.execute_batch(
            "INSERT INTO deployments (id, template, version, principal, dry_run, started_ms,
                owner, last_event_ms, ended_ms, duration_ms, outcome)
             VALUES ('d1', 'shop', '<b>2.0</b>', 'alice', 0, 1795772566000, 'o', 1, 1, 1,
                     'succeeded'),
                    ('d2', 'shop', '9.9', 'alice', 1, 1795772567000, 'o', 1, 1, 1, 'succeeded');
             INSERT INTO fleet (template, host, version, healthy, since_ms, good)
             VALUES ('shop', 'web-01', '<b>2.0</b>', 1, 1, '[]'),
                    ('shop', 'web-02', '<b>2.0</b>', 1, 1, '[]'),
                    ('shop', 'web-03', NULL, 0, 1, '[]');",
        )
        .unwrap();
    }
    let bob = login(&e.app, "bob", "bob-pw").await;
    let res = send(&e.app, get("/api/v1/templates", Some(&bob))).await;
    let v: Value = serde_json::from_str(&text(res).await).unwrap();
    let row = v[0].as_object().unwrap();
    let mut keys: Vec<&str> = row.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "description",
            "error",
            "file",
            "kind",
            "last_deployment",
            "may_deploy",
            "name",
            "running",
            "targets"
        ]
    );
    assert_eq!(row["kind"], "java-tomcat");
    assert_eq!(row["targets"], "web-01");
    assert_eq!(row["error"], Value::Null);
    assert_eq!(
        row["last_deployment"],
        serde_json::json!({"id": "d1", "mode": "deploy", "version": "<b>2.0</b>", "user": "alice",
                           "started": "2026-11-27T09:42:46Z", "outcome": "succeeded"})
    );
    assert_eq!(
        row["running"],
        serde_json::json!([{"version": "<b>2.0</b>", "healthy": true, "hosts": 2},
                           {"version": null, "healthy": false, "hosts": 1}])
    );
    // the same values on the page, escaped
    let page = text(send(&e.app, get("/", Some(&bob))).await).await;
    assert!(!page.contains("<b>"), "{page}");
    assert!(
        page.contains("&lt;b&gt;2.0&lt;/b&gt; 2026-11-27T09:42:46Z"),
        "{page}"
    );
    assert!(page.contains("succeeded"), "{page}");
}

#[tokio::test]
async fn hostile_text_is_escaped_on_the_page() {
    let e = env();
    let bob = login(&e.app, "bob", "bob-pw").await;
    let page = text(send(&e.app, get("/", Some(&bob))).await).await;
    assert!(!page.contains("<script"), "{page}");
    assert!(
        page.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"),
        "{page}"
    );
    // and it is there raw in the JSON (JSON is not HTML)
    let res = send(&e.app, get("/api/v1/templates", Some(&bob))).await;
    let v: Value = serde_json::from_str(&text(res).await).unwrap();
    assert_eq!(v[0]["description"], HOSTILE);
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let e = env();
    let bob = login(&e.app, "bob", "bob-pw").await;
    let requests = [
        get("/login", None),
        get("/", None),
        get("/", Some(&bob)),
        get("/api/v1/templates", None),
        get("/api/v1/templates", Some(&bob)),
        get("/no/such/page", None),
        form("/logout", "", ""),
    ];
    for req in requests {
        let what = format!("{} {}", req.method(), req.uri());
        let res = send(&e.app, req).await;
        let h = res.headers();
        assert_eq!(
            h["content-security-policy"],
            "default-src 'self'; script-src 'self'; frame-ancestors 'none'",
            "{what}"
        );
        assert_eq!(h["x-frame-options"], "DENY", "{what}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{what}");
        assert_eq!(h["referrer-policy"], "same-origin", "{what}");
    }
}

#[tokio::test]
async fn anonymous_requests_to_every_protected_route_are_refused() {
    let e = env();
    let protected: Vec<_> = ROUTES
        .iter()
        .filter(|r| r.access != Access::Public)
        .collect();
    assert!(protected.len() >= 4, "{protected:?}");
    for route in protected {
        for cookie in [None, Some("0123")] {
            let mut req = Request::builder()
                .method(route.method.clone())
                .uri(route.path);
            if let Some(c) = cookie {
                req = req.header(header::COOKIE, format!("{SESSION_COOKIE}={c}"));
            }
            let res = send(&e.app, req.body(Body::empty()).unwrap()).await;
            let what = format!("{} {} ({cookie:?})", route.method, route.path);
            match route.access {
                Access::Api => {
                    assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{what}");
                    let v: Value = serde_json::from_str(&text(res).await).unwrap();
                    assert_eq!(v["error"]["kind"], "unauthenticated", "{what}");
                }
                _ => {
                    assert_eq!(res.status(), StatusCode::SEE_OTHER, "{what}");
                    assert_eq!(res.headers()[header::LOCATION], "/login", "{what}");
                }
            }
        }
    }
    // and the public ones answer
    for route in ROUTES.iter().filter(|r| r.access == Access::Public) {
        let req = Request::builder()
            .method(route.method.clone())
            .uri(route.path)
            .body(Body::empty())
            .unwrap();
        let res = send(&e.app, req).await;
        assert_ne!(res.status(), StatusCode::NOT_FOUND, "{}", route.path);
        assert_ne!(
            res.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{}",
            route.path
        );
    }
    let _ = Method::GET;
}
