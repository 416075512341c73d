//! Publishing through the service: the queue, the workers, the deployment page and its live
//! events, a pause answered once (by a deployer, never a viewer), stop, and the next release and
//! rollback after each — over an engine on a simulated fleet.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::response::Response;
use axum::Router;
use pushguide_core::sim::SimFleet;
use pushguide_core::{
    async_trait, Artifact, DeploymentHandle, Engine, Outcome, Principal, Request as EngineRequest,
    Template,
};
use pushguide_server::{
    Catalog, CatalogEntry, CatalogError, LaunchError, Launcher, PublishMode, PublishRequest,
    Server, ServerConfig, VersionInfo, Workers, LOGIN_CSRF_COOKIE, SESSION_COOKIE,
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

    async fn plan(
        &self,
        _template: &str,
        request: &PublishRequest,
        who: &Principal,
    ) -> Result<pushguide_core::Plan, LaunchError> {
        let PublishMode::Deploy { version } = &request.mode else {
            return Err("only releases are previewed here".into());
        };
        let a = Artifact::new(
            format!("https://ci.example.com/{version}.war"),
            Some(SHA.into()),
        );
        let req =
            EngineRequest::new(self.template.clone(), version.clone(), who.clone()).artifact(a);
        Ok(self.engine.plan(&req).await?)
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
    store: Arc<SqliteStore>,
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

fn env(latency: Duration) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path().join("store.db")).unwrap());
    let now = SystemTime::now();
    for (u, g) in [("alice", "ops"), ("bob", "devs")] {
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
    let (app, workers) = Server::new(store.clone(), Arc::new(One(text)), config)
        .launcher(Arc::new(launcher))
        .workers(2)
        .start();
    Env {
        _dir: dir,
        store,
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

    fn json(&self, path: &str, body: Value) -> Request<Body> {
        Request::post(path)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::COOKIE, &self.cookie)
            .header("x-csrf-token", &self.csrf)
            .body(Body::from(body.to_string()))
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

fn versions(store: &SqliteStore) -> Vec<Option<String>> {
    store
        .fleet("shop")
        .unwrap()
        .into_iter()
        .map(|h| h.version)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_is_answered_once_by_a_deployer_and_the_next_release_and_rollback_follow() {
    let e = env(Duration::from_millis(5));
    let alice = login(&e.app, "alice").await;
    let bob = login(&e.app, "bob").await;
    // the first release succeeds
    let r1 = publish(&e.app, &alice, "kind=deploy&version=1.0").await;
    let d1 = deployment_of(&e.app, &alice, r1).await;
    let first = outcome(&e.app, &alice, &d1).await;
    assert_eq!(first["outcome"], "succeeded");
    // a release that succeeded never ran its rollback column: skipped, not pending
    for h in first["hosts"].as_array().unwrap() {
        assert_eq!(
            h["stages"],
            serde_json::json!(["ok", "ok", "ok", "skipped"]),
            "{first}"
        );
    }
    assert_eq!(versions(&e.store), vec![Some("1.0".to_owned()); 3]);
    // the viewer sees the page, without buttons, and may not publish
    let page = text(send(&e.app, bob.get("/t/shop")).await).await;
    assert!(
        page.contains("may view this template but not publish"),
        "{page}"
    );
    assert!(!page.contains("action=\"/t/shop/publish\""));
    let res = send(
        &e.app,
        bob.form("/t/shop/publish", "kind=deploy&version=2.0"),
    )
    .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    // the second fails on web-02: the deployment pauses at its deploy stage
    // (once: its rollback to 1.0, which is on disk, starts Tomcat again)
    e.fleet.add_rule_for_arg(
        "*",
        "file.directory_exists",
        "/releases/1.0",
        Outcome::ok(true),
    );
    e.fleet.add_rule(
        "web-02",
        "service.start",
        Outcome::failed(Some(1), "tomcat <b>down</b>"),
        Some(1),
    );
    let r2 = publish(&e.app, &alice, "kind=deploy&version=2.0").await;
    let d2 = deployment_of(&e.app, &alice, r2).await;
    let v = until(&e.app, &alice, &format!("/api/v1/deployments/{d2}"), |v| {
        v["state"] == "paused"
    })
    .await;
    assert_eq!(v["pause"]["failed"], json!(["web-02"]));
    // paused, it still runs; a request for the same template waits in the queue behind it
    let waiting = publish(&e.app, &alice, "kind=deploy&version=1.0").await;
    let m = metrics(&e.app).await;
    assert!(m.contains("pushguide_running_deployments 1\n"), "{m}");
    assert!(m.contains("pushguide_queue_depth 1\n"), "{m}");
    assert!(e.store.cancel_publish(waiting).unwrap());
    let page = text(send(&e.app, alice.get(&format!("/deployments/{d2}"))).await).await;
    assert!(page.contains("id=\"decide-exclude\""), "{page}");
    assert!(
        page.contains("tomcat &lt;b&gt;down&lt;/b&gt;"),
        "escaped output tail: {page}"
    );
    assert!(!page.contains("<b>down"), "{page}");
    // a viewer may not decide; the deployer's decision wins once; the second sees who decided
    let res = send(
        &e.app,
        bob.form(&format!("/deployments/{d2}/decide"), "decision=rollback"),
    )
    .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = send(
        &e.app,
        alice.form(&format!("/deployments/{d2}/decide"), "decision=exclude"),
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let res = send(
        &e.app,
        alice.json(
            &format!("/api/v1/deployments/{d2}/decide"),
            json!({"decision": "abort"}),
        ),
    )
    .await;
    assert_eq!(res.status(), StatusCode::CONFLICT);
    let body = text(res).await;
    assert!(body.contains("alice decided exclude"), "{body}");
    let done = outcome(&e.app, &alice, &d2).await;
    assert_eq!(done["outcome"], "partially-applied", "{done}");
    let fleet = versions(&e.store);
    assert_eq!(fleet[0].as_deref(), Some("2.0"));
    assert_eq!(fleet[2].as_deref(), Some("2.0"));
    assert_eq!(
        fleet[1].as_deref(),
        Some("1.0"),
        "web-02 failed its release and was rolled back"
    );
    // the audit log names who decided
    let audit = e.store.audit_log(None, Some("alice"), 50).unwrap();
    assert!(audit
        .iter()
        .any(|a| a.action == "decide" && a.target == d2 && a.detail == "exclude"));
    // the next request: a rollback to each host's previous version, through the JSON API
    e.fleet.clear_rules();
    e.fleet
        .add_rule("*", "file.directory_exists", Outcome::ok(true), None);
    e.fleet
        .add_rule("*", "http.query", Outcome::ok(json!({"status": 200})), None);
    let res = send(
        &e.app,
        alice.json(
            "/api/v1/templates/shop/publish",
            json!({"mode": {"kind": "rollback"}}),
        ),
    )
    .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let v: Value = serde_json::from_str(&text(res).await).unwrap();
    let d3 = deployment_of(&e.app, &alice, v["request"].as_i64().unwrap()).await;
    let done = outcome(&e.app, &alice, &d3).await;
    assert_eq!(done["rollback"], true);
    assert_eq!(versions(&e.store)[0].as_deref(), Some("1.0"), "{done}");
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_of_one_template_run_in_order_and_a_bad_one_fails_with_its_reason() {
    let e = env(Duration::from_millis(1));
    let alice = login(&e.app, "alice").await;
    let ids = [
        publish(&e.app, &alice, "kind=deploy&version=1.0").await,
        publish(&e.app, &alice, "kind=deploy&version=9.9").await,
        publish(&e.app, &alice, "kind=deploy&version=2.0").await,
    ];
    let last = until(
        &e.app,
        &alice,
        &format!("/api/v1/requests/{}", ids[2]),
        |v| v["state"] == "done",
    )
    .await;
    let bad = api(&e.app, &alice, &format!("/api/v1/requests/{}", ids[1])).await;
    assert_eq!(bad["state"], "failed");
    assert!(bad["error"].as_str().unwrap().contains("9.9"), "{bad}");
    let first = api(&e.app, &alice, &format!("/api/v1/requests/{}", ids[0])).await;
    assert!(first["ended"].as_str().unwrap() <= last["started"].as_str().unwrap());
    assert_eq!(versions(&e.store), vec![Some("2.0".to_owned()); 3]);
    // hostile input is refused before anything is queued
    for body in [
        "kind=deploy&version=1.0%3B%20rm%20-rf%20%2F",
        "kind=deploy&version=2.0&hosts=web-01%24(id)",
        "kind=deploy&version=2.0&batch=ten",
        "kind=shell&version=2.0",
    ] {
        let res = send(&e.app, alice.form("/t/shop/publish", body)).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{body}");
    }
    assert!(e.store.publish_queue(None).unwrap().is_empty());
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_view_streams_the_journal_and_a_reconnect_replays_what_was_missed() {
    let e = env(Duration::from_millis(60));
    let alice = login(&e.app, "alice").await;
    let r = publish(&e.app, &alice, "kind=deploy&version=1.0").await;
    let d = deployment_of(&e.app, &alice, r).await;
    // the page is live and loads the vendored scripts
    let page = text(send(&e.app, alice.get(&format!("/deployments/{d}"))).await).await;
    assert!(page.contains("sse-connect=\"/deployments/"), "{page}");
    let js = send(&e.app, alice.get("/static/htmx.min.js")).await;
    assert_eq!(js.status(), StatusCode::OK);
    assert!(js.headers()[header::CACHE_CONTROL]
        .to_str()
        .unwrap()
        .contains("max-age"));
    // a client reconnecting after event 3 gets 4, 5, … to the end
    let mut req = alice.get(&format!("/deployments/{d}/events"));
    req.headers_mut()
        .insert("last-event-id", "3".parse().unwrap());
    let res = send(&e.app, req).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[header::CONTENT_TYPE], "text/event-stream");
    assert!(metrics(&e.app).await.contains("pushguide_sse_clients 1\n"));
    let body = text(res).await; // ends with the deployment
    assert!(metrics(&e.app).await.contains("pushguide_sse_clients 0\n"));
    let ids: Vec<u64> = body
        .lines()
        .filter_map(|l| l.strip_prefix("id: "))
        .map(|i| i.parse().unwrap())
        .collect();
    assert!(
        ids.first().is_some_and(|i| *i >= 4),
        "events that change nothing are not sent: {body}"
    );
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    assert!(body.contains("hx-swap-oob"), "{body}");
    assert!(body.contains("succeeded"), "{body}");
    // once it ended: no stream (the browser stops reconnecting), the page is rebuilt from the store
    outcome(&e.app, &alice, &d).await;
    let res = send(&e.app, alice.get(&format!("/deployments/{d}/events"))).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let page = text(send(&e.app, alice.get(&format!("/deployments/{d}"))).await).await;
    assert!(!page.contains("sse-connect"), "{page}");
    assert!(page.contains("state-ok"), "{page}");
    // the deployment and its stages were timed
    let begun = std::time::Instant::now();
    let m = loop {
        let m = metrics(&e.app).await;
        if m.contains("pushguide_deployment_duration_seconds_count 1\n") {
            break m;
        }
        assert!(begun.elapsed() < Duration::from_secs(5), "{m}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    for want in [
        "pushguide_deployments_total{outcome=\"succeeded\"} 1\n",
        "pushguide_running_deployments 0\n",
        "pushguide_queue_depth 0\n",
        "pushguide_stage_duration_seconds_count{stage=\"deploy\"} ",
    ] {
        assert!(m.contains(want), "{want}\n---\n{m}");
    }
    e.stop().await;
}

async fn metrics(app: &Router) -> String {
    text(send(app, Request::get("/metrics").body(Body::empty()).unwrap()).await).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_and_roll_back_returns_the_touched_hosts() {
    let e = env(Duration::from_millis(40));
    let alice = login(&e.app, "alice").await;
    let r1 = publish(&e.app, &alice, "kind=deploy&version=1.0").await;
    let d1 = deployment_of(&e.app, &alice, r1).await;
    outcome(&e.app, &alice, &d1).await;
    let r2 = publish(&e.app, &alice, "kind=deploy&version=2.0").await;
    let d2 = deployment_of(&e.app, &alice, r2).await;
    // wait until the first batch started, then stop and roll back
    until(&e.app, &alice, &format!("/api/v1/deployments/{d2}"), |v| {
        v["batches"].as_array().is_some_and(|b| !b.is_empty())
    })
    .await;
    // a body that does not read, or names no mode, stops nothing
    let path = format!("/api/v1/deployments/{d2}/stop");
    let mut broken = alice.json(&path, json!({}));
    *broken.body_mut() = Body::from("{\"mode\": ");
    assert_eq!(send(&e.app, broken).await.status(), StatusCode::BAD_REQUEST);
    let res = send(&e.app, alice.json(&path, json!({"mod": "rollback"}))).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(text(res).await.contains("expected stop or rollback"));
    let v = api(&e.app, &alice, &format!("/api/v1/deployments/{d2}")).await;
    assert!(
        v["state"] != "stopping" && v["outcome"] != "cancelled",
        "nothing stopped it: {v}"
    );
    let res = send(
        &e.app,
        alice.form(&format!("/deployments/{d2}/stop"), "mode=rollback"),
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let done = outcome(&e.app, &alice, &d2).await;
    assert!(
        ["cancelled", "rolled-back"].contains(&done["outcome"].as_str().unwrap()),
        "{done}"
    );
    // every host ends on 1.0 (rolled back by the policy or by the queued undo)
    let start = Instant::now();
    while versions(&e.store) != vec![Some("1.0".to_owned()); 3] {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{:?}",
            versions(&e.store)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    e.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_previews_the_plan_and_nothing_changes() {
    let e = env(Duration::from_millis(1));
    let bob = login(&e.app, "bob").await;
    let res = send(&e.app, bob.get("/t/shop/plan?version=2.0&batch=2")).await;
    assert_eq!(res.status(), StatusCode::OK);
    let page = text(res).await;
    assert!(
        page.contains("id=\"plan-text\"") && page.contains("web-03"),
        "{page}"
    );
    let res = send(&e.app, bob.get("/api/v1/templates/shop/plan?version=2.0")).await;
    assert_eq!(res.status(), StatusCode::OK);
    let plan: Value = serde_json::from_str(&text(res).await).unwrap();
    assert!(plan.is_object(), "{plan}");
    for bad in ["version=1.0%3Bid", "version=", "version=2.0&batch=many"] {
        let res = send(&e.app, bob.get(&format!("/t/shop/plan?{bad}"))).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
    assert!(
        e.fleet.requests().iter().all(|r| !r.call.is_mutating()),
        "a plan changes nothing"
    );
    assert!(e.store.publish_queue(None).unwrap().is_empty());
    e.stop().await;
}

/// The server-sent events of `body` (`id`, whole text of each) as they come; `stop_after`: stop
/// reading after that many events.
async fn events_of(body: &mut Body, stop_after: Option<usize>) -> Vec<(u64, String)> {
    use axum::body::HttpBody;
    let mut out = Vec::new();
    let mut buf = String::new();
    while let Some(frame) =
        std::future::poll_fn(|cx| std::pin::Pin::new(&mut *body).poll_frame(cx)).await
    {
        let Ok(data) = frame.unwrap().into_data() else {
            continue;
        };
        buf.push_str(std::str::from_utf8(&data).unwrap());
        while let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            if let Some(id) = event.lines().find_map(|l| l.strip_prefix("id: ")) {
                out.push((id.parse().unwrap(), event));
            }
        }
        if stop_after.is_some_and(|n| out.len() >= n) {
            break;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_share_identical_frames_and_a_reconnect_replays_exactly_what_it_missed() {
    let e = env(Duration::from_millis(60));
    // two sessions of deployers, one viewer
    let alice = login(&e.app, "alice").await;
    let again = login(&e.app, "alice").await;
    let bob = login(&e.app, "bob").await;
    let r = publish(&e.app, &alice, "kind=deploy&version=1.0").await;
    let d = deployment_of(&e.app, &alice, r).await;
    let url = format!("/deployments/{d}/events?after=0");
    let mut first = send(&e.app, alice.get(&url)).await.into_body();
    let mut second = send(&e.app, again.get(&url)).await.into_body();
    let mut viewer = send(&e.app, bob.get(&url)).await.into_body();
    // the first client drops after three events and reconnects after the second
    let head = events_of(&mut first, Some(3)).await;
    drop(first);
    let mut req = alice.get(&format!("/deployments/{d}/events"));
    req.headers_mut()
        .insert("last-event-id", head[1].0.to_string().parse().unwrap());
    let res = send(&e.app, req).await;
    assert_eq!(res.status(), StatusCode::OK);
    let mut back = res.into_body();
    let (back, second, viewer) = tokio::join!(
        events_of(&mut back, None),
        events_of(&mut second, None),
        events_of(&mut viewer, None)
    );
    // both deployers' sessions got the same bytes (no session's token in a frame)
    assert_eq!(head[..], second[..3]);
    assert!(second.len() > 3, "{second:?}");
    assert!(
        second.iter().any(|(_, t)| t.contains("id=\"stop-stop\"")),
        "deployers get the stop buttons: {second:?}"
    );
    assert!(!second.iter().any(|(_, t)| t.contains("csrf")));
    // the viewer the same rows, without buttons
    assert_eq!(viewer.len(), second.len());
    assert!(!viewer.iter().any(|(_, t)| t.contains("stop-stop")));
    // the reconnect: exactly the events after the second, the same bytes, to the end
    assert_eq!(back[..], second[2..]);
    assert!(second.last().unwrap().1.contains("state-succeeded"));
    e.stop().await;
}
