//! What the editor and monitor tests share: a templates directory as the catalog, users, login.
#![allow(clippy::unwrap_used, dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use axum::body::Body;
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

/// A templates directory read on every scan, as `pushguide serve` reads its own.
#[derive(Debug)]
pub struct DirCatalog(pub PathBuf);

impl Catalog for DirCatalog {
    fn scan(&self) -> Result<Vec<CatalogEntry>, CatalogError> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.0)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
            .collect();
        files.sort();
        let mut good = Vec::new();
        let mut broken = Vec::new();
        for file in files {
            match Template::load(&file) {
                Ok(t) => good.push(CatalogEntry::Loaded {
                    file,
                    template: Box::new(t),
                }),
                Err(e) => broken.push(CatalogEntry::Broken {
                    file: file.display().to_string(),
                    error: e.to_string(),
                }),
            }
        }
        good.extend(broken);
        Ok(good)
    }

    fn dir(&self) -> Option<PathBuf> {
        Some(self.0.clone())
    }
}

/// A template of the java kind.
pub fn template(name: &str, acl: &str, targets: &str) -> String {
    format!(
        "name = \"{name}\"\ndescription = \"d\"\n{acl}\n[targets]\n{targets}\n\
         [project]\nkind = \"java-tomcat\"\ncontext = \"shop\"\nroot = \"/srv/shop\"\n\
         catalina_base = \"/var/lib/tomcat10\"\nservice = \"tomcat10\"\n"
    )
}

/// The ACL of the tests' templates: `devs` view, `ops` deploy.
pub const ACL: &str = "[acl.viewers]\ngroups = [\"devs\"]\n[acl.deployers]\ngroups = [\"ops\"]";

fn hash(password: &str) -> String {
    static HASHES: OnceLock<Mutex<Vec<(String, String)>>> = OnceLock::new();
    let m = HASHES.get_or_init(Default::default);
    let mut m = m.lock().unwrap();
    if let Some((_, h)) = m.iter().find(|(p, _)| p == password) {
        return h.clone();
    }
    let h = pushguide_server::auth::hash_password(password).unwrap();
    m.push((password.to_owned(), h.clone()));
    h
}

/// A store with `bob` (devs: a viewer) and `root` (admins).
pub struct Env {
    pub dir: tempfile::TempDir,
    pub db: PathBuf,
    pub store: Arc<SqliteStore>,
}

impl Env {
    pub fn new() -> Env {
        Env::with_store(|db| SqliteStore::open(db).unwrap())
    }

    pub fn with_store(open: impl FnOnce(&Path) -> SqliteStore) -> Env {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("templates")).unwrap();
        let db = dir.path().join("store.db");
        let store = Arc::new(open(&db));
        let now = SystemTime::now();
        store
            .put_user("bob", &hash("bob-pw"), &["devs".into()], false, now)
            .unwrap();
        store
            .put_user("root", &hash("root-pw"), &["admins".into()], false, now)
            .unwrap();
        Env { dir, db, store }
    }

    pub fn templates(&self) -> PathBuf {
        self.dir.path().join("templates")
    }

    pub fn catalog(&self) -> Arc<DirCatalog> {
        Arc::new(DirCatalog(self.templates()))
    }

    pub fn write(&self, file: &str, text: &str) {
        std::fs::write(self.templates().join(file), text).unwrap();
    }

    pub fn read(&self, file: &str) -> String {
        std::fs::read_to_string(self.templates().join(file)).unwrap()
    }

    /// The names in the templates directory, sorted.
    pub fn listing(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.templates())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

pub fn config() -> ServerConfig {
    let mut c = ServerConfig::default();
    c.admin_groups = vec!["admins".into()];
    c.login_delay = Duration::from_millis(1);
    c.login_delay_max = Duration::from_millis(5);
    c
}

pub async fn send(app: &Router, req: Request<Body>) -> Response {
    app.clone().oneshot(req).await.unwrap()
}

pub async fn text(res: Response) -> String {
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 24)
        .await
        .unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

pub async fn json(res: Response) -> Value {
    serde_json::from_str(&text(res).await).unwrap()
}

fn cookie_value(res: &Response, name: &str) -> Option<String> {
    res.headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| {
            let first = c.split(';').next()?.to_owned();
            let (k, v) = first.split_once('=')?;
            (k == name).then(|| v.to_owned())
        })
}

/// A logged-in user: the session cookie and its CSRF token.
#[derive(Clone, Debug)]
pub struct User {
    pub cookie: String,
    pub csrf: String,
}

pub async fn login(app: &Router, user: &str, password: &str) -> User {
    let res = send(app, Request::get("/login").body(Body::empty()).unwrap()).await;
    let token = cookie_value(&res, LOGIN_CSRF_COOKIE).unwrap();
    let res = send(
        app,
        Request::post("/login")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::COOKIE, format!("{LOGIN_CSRF_COOKIE}={token}"))
            .body(Body::from(format!(
                "user={user}&password={password}&csrf={token}"
            )))
            .unwrap(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let session = cookie_value(&res, SESSION_COOKIE).unwrap();
    let cookie = format!("{SESSION_COOKIE}={session}");
    let res = send(
        app,
        Request::get("/api/v1/session")
            .header(header::COOKIE, &cookie)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    let csrf = json(res).await["csrf"].as_str().unwrap().to_owned();
    User { cookie, csrf }
}

impl User {
    pub fn get(&self, path: &str) -> Request<Body> {
        Request::get(path)
            .header(header::COOKIE, &self.cookie)
            .body(Body::empty())
            .unwrap()
    }

    /// A form post with the CSRF field first.
    pub fn form(&self, path: &str, fields: &[(&str, &str)]) -> Request<Body> {
        let mut body = format!("csrf={}", self.csrf);
        for (k, v) in fields {
            body.push_str(&format!("&{k}={}", encode(v)));
        }
        Request::post(path)
            .header(header::COOKIE, &self.cookie)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .unwrap()
    }

    /// A JSON post with the CSRF header.
    pub fn post_json(&self, path: &str, body: &Value) -> Request<Body> {
        Request::post(path)
            .header(header::COOKIE, &self.cookie)
            .header("x-csrf-token", &self.csrf)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .unwrap()
    }
}

/// Form (`application/x-www-form-urlencoded`) encoding.
pub fn encode(v: &str) -> String {
    let mut out = String::new();
    for b in v.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
