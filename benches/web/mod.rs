//! Shared by the web service benches: a full service (workers, engine over a simulated fleet with
//! the SQLite store) publishing a `java-tomcat` template to a large fleet, with a gate that holds
//! the deployment at a chosen salt call, login, and the process's CPU time and memory.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::response::Response;
use axum::Router;
use pushguide_core::sim::SimFleet;
use pushguide_core::{
    async_trait, Artifact, DeploymentHandle, Engine, EventKind, MinionId, Outcome, Principal,
    Request as EngineRequest, Returns, SaltCall, TargetExpr, Template, Transport, TransportError,
};
use pushguide_server::{
    Catalog, CatalogEntry, CatalogError, LaunchError, Launcher, PublishMode, PublishRequest,
    Server, ServerConfig, VersionInfo, Workers, LOGIN_CSRF_COOKIE, SESSION_COOKIE,
};
use pushguide_store::SqliteStore;
use tower::ServiceExt;

use pushguide_java as _;

const SHA: &str = "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae";

/// The template: every `web-*` minion, batches of 10 %, pause on the first failure.
pub(crate) fn template_text() -> String {
    "name = \"big\"\n[acl.viewers]\ngroups = [\"devs\"]\n[acl.deployers]\ngroups = [\"ops\"]\n\
     [targets]\nexpression = \"web-*\"\ntype = \"glob\"\n[rollout]\nbatch = \"10%\"\n\
     [failure]\nmax_failed = 0\non_failure = \"pause\"\n[rollback]\npolicy = \"previous\"\n\
     [project]\nkind = \"java-tomcat\"\ncontext = \"shop\"\nroot = \"/srv/shop\"\n\
     catalina_base = \"/var/lib/tomcat10\"\nservice = \"tomcat10\"\n"
        .to_owned()
}

struct One(String);

impl Catalog for One {
    fn scan(&self) -> Result<Vec<CatalogEntry>, CatalogError> {
        let t = Template::from_toml_str(&self.0, "bench")?;
        Ok(vec![CatalogEntry::Loaded {
            file: PathBuf::from("templates/big.toml"),
            template: Box::new(t),
        }])
    }
}

/// Holds salt call number `at` (counted from 1) and every later one until opened.
pub(crate) struct Gate {
    fleet: Arc<SimFleet>,
    calls: AtomicUsize,
    at: AtomicUsize,
    open: tokio::sync::watch::Sender<bool>,
}

impl Gate {
    /// Lets the deployment go on; the instant it did.
    pub(crate) fn open(&self) -> Instant {
        self.open.send_replace(true);
        Instant::now()
    }

    /// Salt calls started so far.
    pub(crate) fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Transport for Gate {
    async fn call(&self, targets: &[MinionId], call: &SaltCall) -> Result<Returns, TransportError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if n >= self.at.load(Ordering::SeqCst) {
            let mut rx = self.open.subscribe();
            let _ = rx.wait_for(|open| *open).await;
        }
        self.fleet.call(targets, call).await
    }

    async fn resolve(&self, target: &TargetExpr) -> Result<Vec<MinionId>, TransportError> {
        self.fleet.resolve(target).await
    }
}

/// What the launcher saw of the deployment it started.
#[derive(Default)]
pub(crate) struct Seen {
    /// The deployment's id.
    pub(crate) id: Option<String>,
    /// When its `DeploymentFinished` event was delivered.
    pub(crate) finished: Option<Instant>,
    /// Its outcome.
    pub(crate) outcome: Option<String>,
}

struct SimLauncher {
    engine: Engine,
    template: Arc<Template>,
    seen: Arc<Mutex<Seen>>,
}

#[async_trait]
impl Launcher for SimLauncher {
    async fn start(
        &self,
        _template: &str,
        request: &PublishRequest,
        who: &Principal,
    ) -> Result<DeploymentHandle, LaunchError> {
        let PublishMode::Deploy { version } = &request.mode else {
            return Err("the bench only deploys".into());
        };
        let a = Artifact::new(
            format!("https://ci.example.com/{version}.war"),
            Some(SHA.into()),
        );
        let req =
            EngineRequest::new(self.template.clone(), version.clone(), who.clone()).artifact(a);
        let h = self.engine.start(req).await?;
        let mut events = h.events();
        let seen = self.seen.clone();
        seen.lock().unwrap().id = Some(h.id().to_owned());
        tokio::spawn(async move {
            while let Some(e) = events.next().await {
                if let EventKind::DeploymentFinished { outcome } = &e.kind {
                    let mut s = seen.lock().unwrap();
                    s.finished = Some(Instant::now());
                    s.outcome = Some(outcome.as_str().to_owned());
                }
            }
        });
        Ok(h)
    }

    async fn versions(&self, _template: &str) -> Result<Vec<VersionInfo>, LaunchError> {
        Ok(vec![VersionInfo {
            version: "1.0".into(),
            size: Some(1000),
            sha256: Some(SHA.into()),
        }])
    }
}

/// A service over a fleet of `hosts` minions (no latency).
pub(crate) struct Env {
    _dir: tempfile::TempDir,
    /// The store.
    pub(crate) store: Arc<SqliteStore>,
    /// The transport (holds the deployment at its gate).
    pub(crate) gate: Arc<Gate>,
    /// The router.
    pub(crate) app: Router,
    /// What the launcher saw.
    pub(crate) seen: Arc<Mutex<Seen>>,
    workers: Option<Workers>,
}

/// Whether the engine sends each host's steps as one job (`pushguide serve`'s default).
pub(crate) const STEP_JOBS: bool = true;

impl Env {
    /// A fresh store, fleet and service; the deployment will be held at salt call `hold_at`.
    pub(crate) fn new(hosts: usize, hold_at: usize) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(dir.path().join("store.db")).unwrap());
        let hash = pushguide_server::auth::hash_password("pw").unwrap();
        store
            .put_user("alice", &hash, &["ops".into()], false, SystemTime::now())
            .unwrap();
        let fleet = Arc::new(
            SimFleet::new((0..hosts).map(|i| format!("web-{i:05}")))
                .unwrap()
                .recording(false)
                .on("*", "file.directory_exists", Outcome::ok(false))
                .on("*", "cp.get_url", Outcome::ok("/srv/shop/archives/x.war"))
                .on("*", "file.get_hash", Outcome::ok(SHA))
                .on(
                    "*",
                    "http.query",
                    Outcome::ok(serde_json::json!({"status": 200})),
                ),
        );
        let gate = Arc::new(Gate {
            fleet,
            calls: AtomicUsize::new(0),
            at: AtomicUsize::new(hold_at),
            open: tokio::sync::watch::channel(false).0,
        });
        let engine = Engine::builder(gate.clone())
            .history(store.clone())
            .fleet_state(store.clone())
            .leases(store.clone())
            .step_jobs(STEP_JOBS)
            .build();
        let text = template_text();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let launcher = SimLauncher {
            engine,
            template: Arc::new(Template::from_toml_str(&text, "bench").unwrap()),
            seen: seen.clone(),
        };
        let mut config = ServerConfig::default();
        config.login_delay = Duration::from_millis(1);
        let (app, workers) = Server::new(store.clone(), Arc::new(One(text)), config)
            .launcher(Arc::new(launcher))
            .workers(1)
            .start();
        Env {
            _dir: dir,
            store,
            gate,
            app,
            seen,
            workers: Some(workers),
        }
    }

    /// Stops the workers.
    pub(crate) async fn stop(mut self) {
        if let Some(w) = self.workers.take() {
            w.stop().await;
        }
    }

    /// Queues a release of 1.0 as alice; waits until its deployment started (and is held at
    /// the gate) and this service lists it as running; its id.
    pub(crate) async fn publish(&self, alice: &User) -> String {
        let res = send(
            &self.app,
            alice.form("/t/big/publish", "kind=deploy&version=1.0"),
        )
        .await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER);
        let begun = Instant::now();
        loop {
            let id = self.seen.lock().unwrap().id.clone();
            if let Some(id) = id {
                // 404 until the journal or this service knows it
                let res = send(&self.app, alice.get(&format!("/api/v1/deployments/{id}"))).await;
                if res.status() == StatusCode::OK {
                    let v: serde_json::Value = serde_json::from_str(&text(res).await).unwrap();
                    if v["live"] == true {
                        return id;
                    }
                }
            }
            assert!(begun.elapsed() < Duration::from_secs(60), "no deployment");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits until the deployment's end was delivered; when, and its outcome.
    pub(crate) async fn finished(&self) -> (Instant, String) {
        loop {
            {
                let s = self.seen.lock().unwrap();
                if let (Some(at), Some(o)) = (s.finished, &s.outcome) {
                    return (at, o.clone());
                }
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Waits until this service no longer lists `id` as running.
    pub(crate) async fn ended(&self, alice: &User, id: &str) {
        loop {
            let v = api(&self.app, alice, &format!("/api/v1/deployments/{id}")).await;
            if v["live"] == false && v["outcome"].is_string() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// One request through the router.
pub(crate) async fn send(app: &Router, req: Request<Body>) -> Response {
    app.clone().oneshot(req).await.unwrap()
}

/// A whole body.
pub(crate) async fn text(res: Response) -> String {
    let b = axum::body::to_bytes(res.into_body(), 256 << 20)
        .await
        .unwrap();
    String::from_utf8(b.to_vec()).unwrap()
}

/// A JSON answer (200 expected).
pub(crate) async fn api(app: &Router, u: &User, path: &str) -> serde_json::Value {
    let res = send(app, u.get(path)).await;
    assert_eq!(res.status(), StatusCode::OK, "{path}");
    serde_json::from_str(&text(res).await).unwrap()
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
pub(crate) struct User {
    cookie: String,
    csrf: String,
}

/// Logs `user` in (password `pw`).
pub(crate) async fn login(app: &Router, user: &str) -> User {
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
    let v: serde_json::Value = serde_json::from_str(&text(res).await).unwrap();
    User {
        cookie,
        csrf: v["csrf"].as_str().unwrap().to_owned(),
    }
}

impl User {
    /// `GET path` with the session.
    pub(crate) fn get(&self, path: &str) -> Request<Body> {
        Request::get(path)
            .header(header::COOKIE, &self.cookie)
            .body(Body::empty())
            .unwrap()
    }

    /// `POST path` with a form and the CSRF token.
    pub(crate) fn form(&self, path: &str, body: &str) -> Request<Body> {
        Request::post(path)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::COOKIE, &self.cookie)
            .body(Body::from(format!("csrf={}&{body}", self.csrf)))
            .unwrap()
    }
}

/// The process's CPU time so far (user + system, every thread), from `/proc/self/stat`
/// (clock ticks of 10 ms: `CLK_TCK` is 100 on Linux x86_64).
pub(crate) fn cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // the fields after the command name, which is in parentheses
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    // fields 14 and 15 of stat(5); `rest` starts at field 3
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

/// The process's resident memory now, in bytes (`VmRSS`).
pub(crate) fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .map(|v| v.trim().parse::<u64>().unwrap() * 1024)
        .unwrap_or(0)
}

/// The `q` quantile of sorted durations.
pub(crate) fn pct(sorted: &[Duration], q: f64) -> Duration {
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}
