//! The test service: three users, two templates, one recorded deployment, helpers to log in and
//! to send requests from a given address.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, Request, StatusCode};
use axum::response::Response;
use axum::Router;
use pushguide_core::Template;
use pushguide_server::{
    Catalog, CatalogEntry, CatalogError, ServerConfig, LOGIN_CSRF_COOKIE, SESSION_COOKIE,
};
use pushguide_store::SqliteStore;
use serde_json::Value;
use tower::ServiceExt;

// link the project type the templates use
use pushguide_java as _;

/// The id of the deployment of `shop` every test service has.
pub(crate) const DEPLOYMENT: &str = "d1";
/// The id of the queued publish request of `shop` every test service has.
pub(crate) const REQUEST: &str = "1";

fn template(name: &str, acl: &str) -> String {
    format!(
        "name = \"{name}\"\ndescription = \"{name}\"\n{acl}\n[targets]\nminions = [\"web-01\"]\n\
         [project]\nkind = \"java-tomcat\"\ncontext = \"shop\"\nroot = \"/srv/shop\"\n\
         catalina_base = \"/var/lib/tomcat10\"\nservice = \"tomcat10\"\n"
    )
}

struct Fixed(Vec<String>);

impl Catalog for Fixed {
    fn scan(&self) -> Result<Vec<CatalogEntry>, CatalogError> {
        self.0
            .iter()
            .map(|text| {
                let t = Template::from_toml_str(text, "test")?;
                Ok(CatalogEntry::Loaded {
                    file: PathBuf::from(format!("templates/{}.toml", t.name)),
                    template: Box::new(t),
                })
            })
            .collect()
    }
}

/// An argon2id hash of `password` (made once per password: hashing is slow).
pub(crate) fn hash(password: &str) -> String {
    static HASHES: OnceLock<Mutex<Vec<(String, String)>>> = OnceLock::new();
    let mut m = HASHES.get_or_init(Default::default).lock().unwrap();
    if let Some((_, h)) = m.iter().find(|(p, _)| p == password) {
        return h.clone();
    }
    let h = pushguide_server::auth::hash_password(password).unwrap();
    m.push((password.to_owned(), h.clone()));
    h
}

pub(crate) struct Env {
    _dir: tempfile::TempDir,
    pub(crate) db: PathBuf,
    pub(crate) store: Arc<SqliteStore>,
    pub(crate) app: Router,
}

impl Env {
    pub(crate) fn conn(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(&self.db).unwrap()
    }
}

/// The settings of the tests: admins are `admins`, failed logins barely wait.
pub(crate) fn config() -> ServerConfig {
    let mut c = ServerConfig::default();
    c.admin_groups = vec!["admins".into()];
    c.login_delay = Duration::from_millis(1);
    c.login_delay_max = Duration::from_millis(5);
    c
}

/// Users: alice (ops: deploys shop and billing), bob (devs: views shop only), root (admins).
/// Templates: shop (viewers devs, deployers ops), billing (deployers ops). One deployment of shop,
/// one queued publish request of shop.
pub(crate) fn env_with(config: ServerConfig) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("store.db");
    let store = Arc::new(SqliteStore::open(&db).unwrap());
    let now = SystemTime::now();
    for (user, group) in [("alice", "ops"), ("bob", "devs"), ("root", "admins")] {
        store
            .put_user(
                user,
                &hash(&format!("{user}-pw")),
                &[group.into()],
                false,
                now,
            )
            .unwrap();
    }
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch(&format!(
            "INSERT INTO deployments (id, template, version, principal, dry_run, started_ms,
                owner, last_event_ms, ended_ms, duration_ms, outcome)
             VALUES ('{DEPLOYMENT}', 'shop', '1.0', 'alice', 0, 1795772566000, 'o', 1, 1, 1,
                     'succeeded');
             INSERT INTO publish_requests (id, template, user, groups, request, state, queued_ms)
             VALUES ({REQUEST}, 'shop', 'alice', '[\"ops\"]', '{{}}', 'queued', 1795772566000);"
        ))
        .unwrap();
    let catalog = Fixed(vec![
        template(
            "shop",
            "[acl.viewers]\ngroups = [\"devs\"]\n[acl.deployers]\ngroups = [\"ops\"]",
        ),
        template("billing", "[acl.deployers]\ngroups = [\"ops\"]"),
    ]);
    let app = pushguide_server::router(store.clone(), Arc::new(catalog), config);
    Env {
        _dir: dir,
        db,
        store,
        app,
    }
}

pub(crate) fn env() -> Env {
    env_with(config())
}

pub(crate) async fn send(app: &Router, req: Request<Body>) -> Response {
    app.clone().oneshot(req).await.unwrap()
}

/// `req` as if it came over TCP from `addr`.
pub(crate) fn from(addr: &str, mut req: Request<Body>) -> Request<Body> {
    let addr = SocketAddr::new(addr.parse().unwrap(), 40000);
    req.extensions_mut().insert(ConnectInfo(addr));
    req
}

pub(crate) async fn text(res: Response) -> String {
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 22)
        .await
        .unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

pub(crate) async fn json(res: Response) -> Value {
    let t = text(res).await;
    serde_json::from_str(&t).unwrap_or_else(|e| panic!("{e}: {t}"))
}

pub(crate) fn cookie_value(res: &Response, name: &str) -> Option<String> {
    res.headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .find_map(|c| {
            let first = c.to_str().ok()?.split(';').next()?.to_owned();
            let (k, v) = first.split_once('=')?;
            (k == name).then(|| v.to_owned())
        })
}

pub(crate) fn get(path: &str, session: Option<&str>) -> Request<Body> {
    let mut b = Request::get(path);
    if let Some(s) = session {
        b = b.header(header::COOKIE, format!("{SESSION_COOKIE}={s}"));
    }
    b.body(Body::empty()).unwrap()
}

pub(crate) fn bearer(method: &str, path: &str, token: &str, body: &str) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap()
}

/// A form post with the session cookie (the body carries `csrf=…` or not, as given).
pub(crate) fn form(path: &str, session: &str, body: &str) -> Request<Body> {
    Request::post(path)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::COOKIE, format!("{SESSION_COOKIE}={session}"))
        .body(Body::from(body.to_owned()))
        .unwrap()
}

/// A JSON request with the session cookie and its CSRF token in the header.
pub(crate) fn api(
    method: &str,
    path: &str,
    session: &str,
    csrf: &str,
    body: &str,
) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(path)
        .header(header::COOKIE, format!("{SESSION_COOKIE}={session}"))
        .header("x-csrf-token", csrf)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap()
}

/// Logs `user` in (password `<user>-pw`); the session token.
pub(crate) async fn login(app: &Router, user: &str) -> String {
    let res = send(app, get("/login", None)).await;
    let csrf = cookie_value(&res, LOGIN_CSRF_COOKIE).unwrap();
    let res = send(
        app,
        Request::post("/login")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::COOKIE, format!("{LOGIN_CSRF_COOKIE}={csrf}"))
            .body(Body::from(format!(
                "user={user}&password={user}-pw&csrf={csrf}"
            )))
            .unwrap(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER, "login of {user}");
    cookie_value(&res, SESSION_COOKIE).unwrap()
}

/// The session's CSRF token.
pub(crate) async fn csrf(app: &Router, session: &str) -> String {
    let res = send(app, get("/api/v1/session", Some(session))).await;
    assert_eq!(res.status(), StatusCode::OK);
    json(res).await["csrf"].as_str().unwrap().to_owned()
}

/// A logged-in user: session token and CSRF token.
pub(crate) async fn user(app: &Router, name: &str) -> (String, String) {
    let s = login(app, name).await;
    let c = csrf(app, &s).await;
    (s, c)
}

/// Makes an API token for the logged-in user through the API; its id and value.
pub(crate) async fn make_token(
    app: &Router,
    session: &str,
    csrf: &str,
    label: &str,
) -> (String, String) {
    let res = send(
        app,
        api(
            "POST",
            "/api/v1/tokens",
            session,
            csrf,
            &serde_json::json!({ "label": label }).to_string(),
        ),
    )
    .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let v = json(res).await;
    (
        v["id"].as_str().unwrap().to_owned(),
        v["token"].as_str().unwrap().to_owned(),
    )
}

/// The newest audit entries: (user, address, action, target, detail).
pub(crate) fn audit(env: &Env) -> Vec<(String, Option<String>, String, String, String)> {
    env.store
        .audit_log(None, None, 1000)
        .unwrap()
        .into_iter()
        .map(|e| (e.user, e.address, e.action, e.target, e.detail))
        .collect()
}
