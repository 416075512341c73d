//! Webhooks of the service: a real local HTTP receiver gets the deployment events in both formats,
//! a failing receiver gets the event on a later try, a receiver that never answers does not slow a
//! deployment and its failure shows to admins, and a full queue drops instead of blocking.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, Request, StatusCode};
use axum::response::Response;
use axum::Router;
use pushguide_core::sim::SimFleet;
use pushguide_core::{
    async_trait, Artifact, DeploymentHandle, Engine, MinionId, Outcome, Principal,
    Request as EngineRequest, Returns, SaltCall, TargetExpr, Template, Transport, TransportError,
};
use pushguide_server::webhooks::SendFuture;
use pushguide_server::{
    Catalog, CatalogEntry, CatalogError, Delivery, HttpSender, LaunchError, Launcher, Notification,
    PublishMode, PublishRequest, Server, ServerConfig, VersionInfo, WebhookConfig, WebhookEvent,
    WebhookFormat, WebhookSender, Webhooks, Workers, LOGIN_CSRF_COOKIE, SESSION_COOKIE,
};
use pushguide_store::SqliteStore;
use serde_json::{json, Value};
use tower::ServiceExt;

use pushguide_java as _;

const SHA: &str = "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae";
const HOSTS: [&str; 3] = ["web-01", "web-02", "web-03"];

fn template_text() -> String {
    format!(
        "name = \"shop\"\n[acl.viewers]\ngroups = [\"devs\"]\n[acl.deployers]\ngroups = [\"ops\"]\n\
         [targets]\nminions = {HOSTS:?}\n[rollout]\nbatch = 1\n[failure]\nmax_failed = 0\n\
         on_failure = \"pause\"\n[rollback]\npolicy = \"previous\"\n\
         [project]\nkind = \"java-tomcat\"\ncontext = \"shop\"\nroot = \"/srv/shop\"\n\
         catalina_base = \"/var/lib/tomcat10\"\nservice = \"tomcat10\"\n"
    )
}

struct One(String);

impl Catalog for One {
    fn scan(&self) -> Result<Vec<CatalogEntry>, CatalogError> {
        let t = Template::from_toml_str(&self.0, "test")?;
        Ok(vec![CatalogEntry::Loaded {
            file: PathBuf::from("templates/shop.toml"),
            template: Box::new(t),
        }])
    }
}

/// Starts deployments on an engine over a simulated fleet, as `pushguide serve` does over salt.
struct SimLauncher {
    engine: Engine,
    template: Arc<Template>,
}

#[async_trait]
impl Launcher for SimLauncher {
    async fn start(
        &self,
        _template: &str,
        request: &PublishRequest,
        who: &Principal,
    ) -> Result<DeploymentHandle, LaunchError> {
        let req = match &request.mode {
            PublishMode::Deploy { version } => {
                if version == "9.9" {
                    return Err("version `9.9` is not in the CI source".into());
                }
                let a = Artifact::new(
                    format!("https://ci.example.com/{version}.war"),
                    Some(SHA.into()),
                );
                EngineRequest::new(self.template.clone(), version.clone(), who.clone()).artifact(a)
            }
            PublishMode::Rollback { to } => {
                EngineRequest::rollback(self.template.clone(), to.clone(), who.clone())
            }
            PublishMode::Undo { version } => {
                EngineRequest::rollback(self.template.clone(), None, who.clone())
                    .hosts(request.hosts.clone().unwrap_or_default())
                    .undo(version.clone())
            }
        };
        Ok(self.engine.start(req.dry_run(request.dry_run)).await?)
    }

    async fn versions(&self, _template: &str) -> Result<Vec<VersionInfo>, LaunchError> {
        Ok(["2.0", "1.0"]
            .iter()
            .map(|v| VersionInfo {
                version: (*v).into(),
                size: Some(1000),
                sha256: Some(SHA.into()),
            })
            .collect())
    }
}

fn hash(password: &str) -> String {
    static HASH: OnceLock<String> = OnceLock::new();
    assert_eq!(password, "pw");
    HASH.get_or_init(|| pushguide_server::auth::hash_password("pw").unwrap())
        .clone()
}

struct Env {
    _dir: tempfile::TempDir,
    _store: Arc<SqliteStore>,
    fleet: Arc<SimFleet>,
    app: Router,
    workers: Option<Workers>,
}

impl Env {
    async fn stop(mut self) {
        if let Some(w) = self.workers.take() {
            w.stop().await;
        }
    }
}

fn env(latency: Duration, hooks: Vec<WebhookConfig>, delivery: Delivery) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path().join("store.db")).unwrap());
    let now = SystemTime::now();
    for (u, g) in [("alice", "ops"), ("root", "admins")] {
        store
            .put_user(u, &hash("pw"), &[g.into()], false, now)
            .unwrap();
    }
    let fleet = Arc::new(
        SimFleet::new(HOSTS)
            .unwrap()
            .with_latency(latency)
            .on("*", "file.directory_exists", Outcome::ok(false))
            .on("*", "cp.get_url", Outcome::ok("/srv/shop/archives/x.war"))
            .on("*", "file.get_hash", Outcome::ok(SHA))
            .on("*", "http.query", Outcome::ok(json!({"status": 200}))),
    );
    let engine = Engine::builder(fleet.clone())
        .history(store.clone())
        .fleet_state(store.clone())
        .leases(store.clone())
        .build();
    let text = template_text();
    let launcher = SimLauncher {
        engine,
        template: Arc::new(Template::from_toml_str(&text, "test").unwrap()),
    };
    let mut config = ServerConfig::default();
    config.login_delay = Duration::from_millis(1);
    config.admin_groups = vec!["admins".into()];
    let hooks = Webhooks::start(
        hooks,
        Some("http://pg.example/".into()),
        delivery,
        Arc::new(HttpSender::default()),
    );
    let (app, workers) = Server::new(store.clone(), Arc::new(One(text)), config)
        .launcher(Arc::new(launcher))
        .webhooks(hooks)
        .workers(2)
        .start();
    Env {
        _dir: dir,
        _store: store,
        fleet,
        app,
        workers: Some(workers),
    }
}

async fn send(app: &Router, req: Request<Body>) -> Response {
    app.clone().oneshot(req).await.unwrap()
}

async fn text(res: Response) -> String {
    let b = axum::body::to_bytes(res.into_body(), 4 << 20)
        .await
        .unwrap();
    String::from_utf8(b.to_vec()).unwrap()
}

fn cookie(res: &Response, name: &str) -> String {
    res.headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|c| c.split(';').next()?.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
        .unwrap()
}

/// A logged-in user: session cookie and CSRF token.
struct User {
    cookie: String,
    csrf: String,
}

async fn login(app: &Router, user: &str) -> User {
    let res = send(app, Request::get("/login").body(Body::empty()).unwrap()).await;
    let lc = cookie(&res, LOGIN_CSRF_COOKIE);
    let res = send(
        app,
        Request::post("/login")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::COOKIE, format!("{LOGIN_CSRF_COOKIE}={lc}"))
            .body(Body::from(format!("user={user}&password=pw&csrf={lc}")))
            .unwrap(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let session = cookie(&res, SESSION_COOKIE);
    let cookie = format!("{SESSION_COOKIE}={session}");
    let res = send(
        app,
        Request::get("/api/v1/session")
            .header(header::COOKIE, &cookie)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    let v: Value = serde_json::from_str(&text(res).await).unwrap();
    User {
        cookie,
        csrf: v["csrf"].as_str().unwrap().to_owned(),
    }
}

impl User {
    fn get(&self, path: &str) -> Request<Body> {
        Request::get(path)
            .header(header::COOKIE, &self.cookie)
            .body(Body::empty())
            .unwrap()
    }

    fn form(&self, path: &str, body: &str) -> Request<Body> {
        Request::post(path)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::COOKIE, &self.cookie)
            .body(Body::from(format!("csrf={}&{body}", self.csrf)))
            .unwrap()
    }
}

async fn api(app: &Router, u: &User, path: &str) -> Value {
    let res = send(app, u.get(path)).await;
    assert_eq!(res.status(), StatusCode::OK, "{path}");
    serde_json::from_str(&text(res).await).unwrap()
}

/// Waits until `path`'s JSON satisfies `ok`; the last value.
async fn until(app: &Router, u: &User, path: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let v = api(app, u, path).await;
        if ok(&v) {
            return v;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{path}: {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Queues a publish form; the request id.
async fn publish(app: &Router, u: &User, body: &str) -> i64 {
    let res = send(app, u.form("/t/shop/publish", body)).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER, "{}", text(res).await);
    let to = res.headers()[header::LOCATION].to_str().unwrap().to_owned();
    to.strip_prefix("/requests/").unwrap().parse().unwrap()
}

async fn deployment_of(app: &Router, u: &User, request: i64) -> String {
    let v = until(app, u, &format!("/api/v1/requests/{request}"), |v| {
        v["deployment"].is_string() || v["state"] == "failed"
    })
    .await;
    v["deployment"].as_str().unwrap().to_owned()
}

async fn outcome(app: &Router, u: &User, id: &str) -> Value {
    until(app, u, &format!("/api/v1/deployments/{id}"), |v| {
        v["outcome"].is_string() && v["live"] == false
    })
    .await
}

/// What the receiver got: (path, body), and how many requests each path had.
#[derive(Default)]
struct Got {
    bodies: Vec<(String, Value)>,
    hits: std::collections::HashMap<String, u32>,
}

type Shared = Arc<Mutex<Got>>;

async fn receive(State(got): State<Shared>, Path(path): Path<String>, body: String) -> StatusCode {
    let hit = {
        let mut g = got.lock().unwrap();
        let n = g.hits.entry(path.clone()).or_default();
        *n += 1;
        *n
    };
    match path.as_str() {
        // answers 500 twice, then takes the event
        "flaky" if hit <= 2 => return StatusCode::INTERNAL_SERVER_ERROR,
        // never answers
        "hang" => std::future::pending::<()>().await,
        _ => {}
    }
    let v: Value = serde_json::from_str(&body).unwrap();
    got.lock().unwrap().bodies.push((path, v));
    StatusCode::OK
}

/// A local HTTP receiver on 127.0.0.1: its base URL and what it got.
async fn receiver() -> (String, Shared) {
    let got = Shared::default();
    let app = Router::new()
        .route("/{path}", axum::routing::post(receive))
        .with_state(got.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), got)
}

fn hook(url: String, format: WebhookFormat, events: &[WebhookEvent]) -> WebhookConfig {
    WebhookConfig {
        url,
        format,
        events: events.to_vec(),
    }
}

fn fast(timeout: Duration) -> Delivery {
    Delivery {
        tries: 3,
        backoff: Duration::from_millis(20),
        timeout,
        queue: 64,
    }
}

/// Waits until the receiver's bodies for `path` satisfy `ok`.
async fn bodies(got: &Shared, path: &str, ok: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let b: Vec<Value> = got
            .lock()
            .unwrap()
            .bodies
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, v)| v.clone())
            .collect();
        if ok(&b) {
            return b;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "{path}: {b:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_gets_started_paused_and_finished_events_in_both_formats() {
    let (base, got) = receiver().await;
    let all = WebhookEvent::ALL;
    let e = env(
        Duration::from_millis(5),
        vec![
            hook(format!("{base}/json"), WebhookFormat::Json, &all),
            hook(format!("{base}/slack"), WebhookFormat::Slack, &all),
            // only the pauses
            hook(
                format!("{base}/pauses"),
                WebhookFormat::Json,
                &[WebhookEvent::DeploymentPaused],
            ),
        ],
        fast(Duration::from_secs(5)),
    );
    let alice = login(&e.app, "alice").await;
    let r1 = publish(&e.app, &alice, "kind=deploy&version=1.0").await;
    let d1 = deployment_of(&e.app, &alice, r1).await;
    assert_eq!(outcome(&e.app, &alice, &d1).await["outcome"], "succeeded");
    let b = bodies(&got, "json", |b| b.len() >= 2).await;
    let started = b
        .iter()
        .find(|v| v["event"] == "deployment-started")
        .unwrap();
    assert_eq!(started["template"], "shop");
    assert_eq!(started["deployment"], d1.as_str());
    assert_eq!(started["version"], "1.0");
    assert_eq!(started["user"], "alice");
    assert_eq!(started["outcome"], Value::Null);
    assert_eq!(
        started["url"],
        format!("http://pg.example/deployments/{d1}").as_str()
    );
    assert!(started["at"].as_str().unwrap().ends_with('Z'), "{started}");
    let done = b
        .iter()
        .find(|v| v["event"] == "deployment-succeeded")
        .unwrap();
    assert_eq!(done["outcome"], "succeeded");
    assert_eq!(done["version"], "1.0");
    let s = bodies(&got, "slack", |b| b.len() >= 2).await;
    let text = s
        .iter()
        .map(|v| v["text"].as_str().unwrap().to_owned())
        .find(|t| t.contains("deployment-succeeded"))
        .unwrap();
    assert!(text.contains("template shop"), "{text}");
    assert!(text.contains("version 1.0"), "{text}");
    assert!(text.contains("user alice"), "{text}");
    assert!(
        text.contains(&format!("<http://pg.example/deployments/{d1}|deployment>")),
        "{text}"
    );
    // the second release fails on web-02 and pauses; excluded, it ends partially applied
    e.fleet.add_rule_for_arg(
        "*",
        "file.directory_exists",
        "/releases/1.0",
        Outcome::ok(true),
    );
    e.fleet.add_rule(
        "web-02",
        "service.start",
        Outcome::failed(Some(1), "tomcat down"),
        Some(1),
    );
    let r2 = publish(&e.app, &alice, "kind=deploy&version=2.0").await;
    let d2 = deployment_of(&e.app, &alice, r2).await;
    let p = bodies(&got, "pauses", |b| !b.is_empty()).await;
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0]["event"], "deployment-paused");
    assert_eq!(p[0]["hosts"], json!(["web-02"]));
    assert_eq!(p[0]["deployment"], d2.as_str());
    assert_eq!(
        p[0]["url"],
        format!("http://pg.example/deployments/{d2}").as_str()
    );
    let s = bodies(&got, "slack", |b| {
        b.iter()
            .any(|v| v["text"].as_str().unwrap().contains("deployment-paused"))
    })
    .await;
    let paused = s
        .iter()
        .map(|v| v["text"].as_str().unwrap().to_owned())
        .find(|t| t.contains("deployment-paused"))
        .unwrap();
    assert!(paused.contains("hosts web-02"), "{paused}");
    assert!(
        paused.contains(&format!("<http://pg.example/deployments/{d2}|deployment>")),
        "{paused}"
    );
    let res = send(
        &e.app,
        alice.form(&format!("/deployments/{d2}/decide"), "decision=exclude"),
    )
    .await;
    assert!(res.status().is_redirection() || res.status().is_success());
    let o = outcome(&e.app, &alice, &d2).await;
    assert_eq!(o["outcome"], "partially-applied");
    let b = bodies(&got, "json", |b| {
        b.iter().any(|v| v["event"] == "deployment-failed")
    })
    .await;
    let failed = b
        .iter()
        .find(|v| v["event"] == "deployment-failed")
        .unwrap();
    assert_eq!(failed["outcome"], "partially-applied");
    assert_eq!(failed["deployment"], d2.as_str());
    // the pause-only hook got nothing else
    assert_eq!(bodies(&got, "pauses", |_| true).await.len(), 1);
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_failing_twice_gets_the_event_on_the_third_try() {
    let (base, got) = receiver().await;
    let e = env(
        Duration::from_millis(5),
        vec![hook(
            format!("{base}/flaky"),
            WebhookFormat::Json,
            &[WebhookEvent::DeploymentStarted],
        )],
        fast(Duration::from_secs(5)),
    );
    let alice = login(&e.app, "alice").await;
    let r1 = publish(&e.app, &alice, "kind=deploy&version=1.0").await;
    let d1 = deployment_of(&e.app, &alice, r1).await;
    let b = bodies(&got, "flaky", |b| !b.is_empty()).await;
    assert_eq!(b[0]["event"], "deployment-started");
    assert_eq!(b[0]["deployment"], d1.as_str());
    assert_eq!(got.lock().unwrap().hits["flaky"], 3);
    outcome(&e.app, &alice, &d1).await;
    let root = login(&e.app, "root").await;
    let v = api(&e.app, &root, "/api/v1/admin/webhooks").await;
    assert_eq!(v["failures"], json!([]), "{v}");
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_that_never_answer_do_not_slow_a_deployment_and_their_failures_show_to_admins() {
    let (base, _got) = receiver().await;
    // a port nobody listens on
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let all = WebhookEvent::ALL;
    let e = env(
        Duration::from_millis(5),
        vec![
            hook(format!("{base}/hang"), WebhookFormat::Json, &all),
            hook(
                format!("http://{closed}/hook?token=s3cret"),
                WebhookFormat::Slack,
                &all,
            ),
        ],
        // a try waits up to 30 s for the hanging receiver
        Delivery {
            tries: 2,
            backoff: Duration::from_millis(10),
            timeout: Duration::from_secs(30),
            queue: 64,
        },
    );
    let alice = login(&e.app, "alice").await;
    let begun = Instant::now();
    let r1 = publish(&e.app, &alice, "kind=deploy&version=1.0").await;
    let d1 = deployment_of(&e.app, &alice, r1).await;
    assert_eq!(outcome(&e.app, &alice, &d1).await["outcome"], "succeeded");
    assert!(
        begun.elapsed() < Duration::from_secs(10),
        "the deployment took {:?}",
        begun.elapsed()
    );
    let root = login(&e.app, "root").await;
    let v = until(&e.app, &root, "/api/v1/admin/webhooks", |v| {
        v["failures"].as_array().unwrap().len() >= 2
    })
    .await;
    assert_eq!(v["hooks"], 2);
    let f = &v["failures"][0];
    assert_eq!(f["url"], format!("http://{closed}/hook?…").as_str(), "{v}");
    assert_eq!(f["tries"], 2);
    assert!(f["error"].as_str().unwrap().contains("cannot post"), "{v}");
    assert!(!v.to_string().contains("s3cret"), "{v}");
    let page = text(send(&e.app, root.get("/admin")).await).await;
    assert!(page.contains("Webhook failures"), "{page}");
    assert!(page.contains(&format!("http://{closed}/hook?…")), "{page}");
    assert!(!page.contains("s3cret"), "{page}");
    // the route is for admins only
    let res = send(&e.app, alice.get("/api/v1/admin/webhooks")).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    e.stop().await;
}

/// A sender that never returns.
struct Stuck;

impl WebhookSender for Stuck {
    fn post<'a>(&'a self, _url: &'a str, _body: Vec<u8>) -> SendFuture<'a> {
        Box::pin(std::future::pending())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_full_queue_drops_events_instead_of_blocking() {
    let hooks = Webhooks::start(
        vec![hook(
            "http://127.0.0.1:9/x".into(),
            WebhookFormat::Json,
            &WebhookEvent::ALL,
        )],
        None,
        Delivery {
            queue: 4,
            ..Delivery::default()
        },
        Arc::new(Stuck),
    );
    let begun = Instant::now();
    // the delivery task cannot run between these calls (one thread, no await): the queue fills
    for _ in 0..100 {
        hooks.notify(Notification::new(WebhookEvent::MinionDown));
    }
    assert!(begun.elapsed() < Duration::from_secs(1));
    assert_eq!(hooks.dropped(), 96);
    // the task drains the queue; the next events are taken again
    tokio::time::sleep(Duration::from_millis(50)).await;
    hooks.notify(Notification::new(WebhookEvent::MinionUp));
    assert_eq!(hooks.dropped(), 96);
}

/// A salt-api whose minions answer `test.ping` unless silent.
#[derive(Default)]
struct Pings {
    silent: Mutex<Vec<String>>,
}

#[async_trait]
impl Transport for Pings {
    async fn call(&self, targets: &[MinionId], call: &SaltCall) -> Result<Returns, TransportError> {
        assert_eq!(call.fun, "test.ping");
        let silent = self.silent.lock().unwrap().clone();
        let mut r = Returns::default();
        for m in targets {
            if !silent.iter().any(|s| s == m.as_str()) {
                r = r.with(m, Outcome::ok(true));
            }
        }
        Ok(r)
    }

    async fn resolve(&self, target: &TargetExpr) -> Result<Vec<MinionId>, TransportError> {
        panic!("the template lists its minions: no resolve expected ({target:?})")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minion_going_down_and_up_is_announced_once_each() {
    let (base, got) = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path().join("store.db")).unwrap());
    let salt = Arc::new(Pings::default());
    let hooks = Webhooks::start(
        vec![
            hook(
                format!("{base}/minions"),
                WebhookFormat::Json,
                &[WebhookEvent::MinionDown, WebhookEvent::MinionUp],
            ),
            hook(
                format!("{base}/slack"),
                WebhookFormat::Slack,
                &WebhookEvent::ALL,
            ),
        ],
        None,
        fast(Duration::from_secs(5)),
        Arc::new(HttpSender::default()),
    );
    let server = Server::new(
        store,
        Arc::new(One(template_text())),
        ServerConfig::default(),
    )
    .transport(salt.clone())
    .webhooks(hooks);
    let task = server
        .spawn_monitor(Duration::from_millis(20), Duration::from_secs(1))
        .unwrap();
    // first seen up: nothing to announce; then web-02 goes silent, then answers again
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(bodies(&got, "minions", |_| true).await.is_empty());
    salt.silent.lock().unwrap().push("web-02".into());
    let b = bodies(&got, "minions", |b| !b.is_empty()).await;
    assert_eq!(b[0]["event"], "minion-down");
    assert_eq!(b[0]["hosts"], json!(["web-02"]));
    assert_eq!(b[0]["url"], Value::Null);
    salt.silent.lock().unwrap().clear();
    let b = bodies(&got, "minions", |b| b.len() >= 2).await;
    assert_eq!(b[1]["event"], "minion-up");
    assert_eq!(b[1]["hosts"], json!(["web-02"]));
    let s = bodies(&got, "slack", |b| b.len() >= 2).await;
    let text = s[0]["text"].as_str().unwrap();
    assert!(
        text.contains("minion-down") && text.contains("hosts web-02"),
        "{text}"
    );
    // several more rounds: no change, no more events
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(bodies(&got, "minions", |_| true).await.len(), 2);
    task.stop().await;
}
