//! The service watching minions and itself: the monitor task through a transport that fails and
//! recovers, `/healthz` and `/metrics`.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use pushguide_core::{
    MinionId, Outcome, Returns, SaltCall, TargetExpr, Transport, TransportError, TransportErrorKind,
};
use pushguide_server::{EndpointCheck, SaltHealth, Server};
use pushguide_store::{SqliteStore, StoreOptions};
use serde_json::Value;
use support::{json, login, send, template, text, Env, User, ACL};

/// A salt-api that can be down; `web-*` (and `*`) resolve to `fleet`; minions in `silent` do not answer.
#[derive(Default)]
struct Flaky {
    down: AtomicBool,
    fleet: Mutex<Vec<String>>,
    silent: Mutex<Vec<String>>,
    calls: AtomicUsize,
}

impl Flaky {
    fn set_fleet(&self, ids: &[&str]) {
        *self.fleet.lock().unwrap() = ids.iter().map(|s| s.to_string()).collect();
    }
}

#[pushguide_core::async_trait]
impl Transport for Flaky {
    async fn call(&self, targets: &[MinionId], call: &SaltCall) -> Result<Returns, TransportError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            return Err(TransportError::new(
                TransportErrorKind::Unreachable,
                "salt-api <down> at http://salt:8000",
            ));
        }
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
        if self.down.load(Ordering::SeqCst) {
            return Err(TransportError::new(
                TransportErrorKind::Unreachable,
                "salt-api <down> at http://salt:8000",
            ));
        }
        // `web-*` from the template, `*` from the health check
        assert!(
            ["web-*", "*"].contains(&target.expression.as_str()),
            "{target:?}"
        );
        Ok(self
            .fleet
            .lock()
            .unwrap()
            .iter()
            .map(|m| MinionId::new(m).unwrap())
            .collect())
    }
}

fn server(env: &Env, salt: Arc<Flaky>) -> Server {
    Server::new(env.store.clone(), env.catalog(), support::config()).transport(salt)
}

/// Polls `GET /api/v1/monitor` until `ok` holds (at most 10 s).
async fn wait_for(app: &Router, user: &User, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let begun = Instant::now();
    loop {
        let v = json(send(app, user.get("/api/v1/monitor")).await).await;
        if ok(&v) {
            return v;
        }
        assert!(begun.elapsed() < Duration::from_secs(10), "{what}: {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn minions(t: &Value) -> Vec<(String, Option<bool>)> {
    t["minions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["minion"].as_str().unwrap().to_owned(), m["up"].as_bool()))
        .collect()
}

#[tokio::test]
async fn the_monitor_survives_salt_errors_and_resolves_targets_every_round() {
    let env = Env::new();
    env.write(
        "shop.toml",
        &template("shop", ACL, "expression = \"web-*\"\ntype = \"glob\""),
    );
    env.write(
        "billing.toml",
        &template(
            "billing",
            "[acl.deployers]\ngroups = [\"ops\"]",
            "minions = [\"db-01\"]",
        ),
    );
    let salt = Arc::new(Flaky::default());
    salt.set_fleet(&["web-01", "web-02"]);
    salt.down.store(true, Ordering::SeqCst);
    let server = server(&env, salt.clone());
    let task = server
        .spawn_monitor(Duration::from_millis(30), Duration::from_secs(1))
        .unwrap();
    let app = server.router();
    let bob = login(&app, "bob", "bob-pw").await;

    // salt-api is down: the round fails, the error is shown, the task goes on
    let v = wait_for(&app, &bob, "a failed round", |v| {
        v["rounds"].as_u64().unwrap() >= 2 && v["last_error"].is_object()
    })
    .await;
    assert_eq!(v["running"], true);
    assert_eq!(v["interval_secs"], 0);
    assert_eq!(v["last_round_ok"], false);
    let message = v["last_error"]["message"].as_str().unwrap();
    assert!(message.contains("salt-api <down>"), "{message}");
    // bob (devs) sees shop only
    let names: Vec<&str> = v["templates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["shop"]);
    assert!(v["templates"][0]["error"]
        .as_str()
        .unwrap()
        .contains("cannot resolve the targets"));
    let page = text(send(&app, bob.get("/monitor")).await).await;
    assert!(page.contains("salt-api &lt;down&gt;"), "{page}");
    assert!(!page.contains("<down>"), "{page}");

    // it comes back: the minions are up, the last error is still shown as past
    salt.silent.lock().unwrap().push("web-02".into());
    salt.down.store(false, Ordering::SeqCst);
    let v = wait_for(&app, &bob, "a good round", |v| v["last_round_ok"] == true).await;
    let shop = &v["templates"][0];
    assert_eq!(shop["error"], Value::Null);
    assert_eq!(
        minions(shop),
        [
            ("web-01".into(), Some(true)),
            ("web-02".into(), Some(false))
        ]
    );
    assert_eq!(
        (shop["up"].as_u64(), shop["down"].as_u64()),
        (Some(1), Some(1))
    );
    assert!(shop["minions"][0]["since"].as_str().unwrap().ends_with('Z'));
    assert!(v["last_error"].is_object());

    // the expression is resolved again each round: a new minion shows up
    salt.set_fleet(&["web-01", "web-02", "web-03"]);
    let v = wait_for(&app, &bob, "web-03", |v| {
        minions(&v["templates"][0]).len() == 3
    })
    .await;
    assert_eq!(
        minions(&v["templates"][0])[2],
        ("web-03".into(), Some(true))
    );
    // the state is in the store (shared with the engine's pre-flight)
    let web02 = env
        .store
        .minion_states(&[MinionId::new("web-02").unwrap()])
        .unwrap();
    assert!(!web02[0].up);
    let page = text(send(&app, bob.get("/monitor")).await).await;
    assert!(page.contains("web-02 down since"), "{page}");
    let metrics =
        text(send(&app, Request::get("/metrics").body(Body::empty()).unwrap()).await).await;
    assert!(
        metrics.contains("pushguide_minions{state=\"up\"} 3\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("pushguide_minions{state=\"down\"} 1\n"),
        "{metrics}"
    );

    // stopped: no more calls
    task.stop().await;
    let calls = salt.calls.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(salt.calls.load(Ordering::SeqCst), calls);
    let v = json(send(&app, bob.get("/api/v1/monitor")).await).await;
    assert_eq!(v["running"], false);
}

#[tokio::test]
async fn no_monitor_without_salt_or_with_interval_zero() {
    let env = Env::new();
    let s = Server::new(env.store.clone(), env.catalog(), support::config());
    assert!(s
        .spawn_monitor(Duration::from_secs(1), Duration::from_secs(1))
        .is_none());
    let s = s.transport(Arc::new(Flaky::default()));
    assert!(s
        .spawn_monitor(Duration::ZERO, Duration::from_secs(1))
        .is_none());
    let app = s.router();
    let bob = login(&app, "bob", "bob-pw").await;
    let v = json(send(&app, bob.get("/api/v1/monitor")).await).await;
    assert_eq!(v["running"], false);
    let page = text(send(&app, bob.get("/monitor")).await).await;
    assert!(page.contains("does not run"), "{page}");
}

async fn health(app: &Router) -> (StatusCode, Value) {
    let res = send(app, Request::get("/healthz").body(Body::empty()).unwrap()).await;
    (res.status(), json(res).await)
}

#[tokio::test]
async fn healthz_answers_503_while_salt_is_down() {
    let env = Env::new();
    let salt = Arc::new(Flaky::default());
    let app = server(&env, salt.clone()).router();
    let (status, v) = health(&app).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "ok");
    assert_eq!(v["store"]["ok"], true);
    salt.down.store(true, Ordering::SeqCst);
    let (status, v) = health(&app).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(v["status"], "failing");
    assert_eq!(v["store"]["ok"], true);
    assert_eq!(v["salt"][0]["endpoint"], "salt-api");
    assert_eq!(v["salt"][0]["ok"], false);
    assert!(v["salt"][0]["error"].as_str().unwrap().contains("down"));
}

struct Endpoints(Vec<EndpointCheck>);

#[pushguide_core::async_trait]
impl SaltHealth for Endpoints {
    async fn check(&self) -> Vec<EndpointCheck> {
        self.0.clone()
    }
}

#[tokio::test]
async fn healthz_names_each_endpoint_and_the_store() {
    let check = |endpoint: &str, ok: bool| EndpointCheck {
        endpoint: endpoint.into(),
        ok,
        error: (!ok).then(|| "connection refused".into()),
        secs: 0.02,
    };
    let env = Env::with_store(|db| {
        SqliteStore::open_with(
            db,
            StoreOptions::default().busy_timeout(Duration::from_millis(50)),
        )
        .unwrap()
    });
    let app = Server::new(env.store.clone(), env.catalog(), support::config())
        .salt_health(Arc::new(Endpoints(vec![
            check("https://salt-1:8000", true),
            check("https://salt-2:8000", false),
        ])))
        .router();
    let (status, v) = health(&app).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        v["salt"][0],
        serde_json::json!({"endpoint": "https://salt-1:8000", "ok": true, "error": null, "secs": 0.02})
    );
    assert_eq!(v["salt"][1]["ok"], false);
    assert_eq!(v["salt"][1]["error"], "connection refused");
    assert_eq!(v["store"]["ok"], true);

    // the store does not take writes while another connection holds it
    let app = Server::new(env.store.clone(), env.catalog(), support::config()).router();
    assert_eq!(
        health(&app).await.0,
        StatusCode::OK,
        "no salt: the store alone"
    );
    let other = rusqlite::Connection::open(&env.db).unwrap();
    other.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let (status, v) = health(&app).await;
    other.execute_batch("ROLLBACK").unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(v["store"]["ok"], false);
    assert!(
        v["store"]["error"].as_str().unwrap().contains("locked"),
        "{v}"
    );
    assert_eq!(health(&app).await.0, StatusCode::OK);
}

#[tokio::test]
async fn metrics_are_public_text_fed_by_the_store_and_the_service() {
    let env = Env::new();
    {
        let conn = rusqlite::Connection::open(&env.db).unwrap();
        conn.execute_batch(
            "INSERT INTO deployments (id, template, version, principal, dry_run, started_ms,
                owner, last_event_ms, ended_ms, duration_ms, outcome)
             VALUES ('d1', 'shop', '1', 'alice', 0, 1, 'o', 1, 1, 1, 'succeeded'),
                    ('d2', 'shop', '2', 'alice', 0, 2, 'o', 1, 1, 1, 'succeeded'),
                    ('d3', 'shop', '3', 'alice', 0, 3, 'o', 1, 1, 1, 'failed');
             INSERT INTO deployments (id, template, version, principal, dry_run, started_ms,
                owner, last_event_ms) VALUES ('d4', 'shop', '4', 'alice', 0, 4, 'o', 1);",
        )
        .unwrap();
    }
    let server = Server::new(env.store.clone(), env.catalog(), support::config());
    let metrics = server.metrics();
    let app = server.router();
    // a failed login counts
    let res = send(&app, Request::get("/login").body(Body::empty()).unwrap()).await;
    let csrf = res
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .find_map(|c| {
            let c = c.to_str().ok()?;
            c.strip_prefix(&format!("{}=", pushguide_server::LOGIN_CSRF_COOKIE))
                .map(|v| v.split(';').next().unwrap_or_default().to_owned())
        })
        .unwrap();
    let res = send(
        &app,
        Request::post("/login")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(
                header::COOKIE,
                format!("{}={csrf}", pushguide_server::LOGIN_CSRF_COOKIE),
            )
            .body(Body::from(format!("user=bob&password=nope&csrf={csrf}")))
            .unwrap(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    // what the workers and the live view feed
    metrics.sse_clients_inc();
    // the queue is counted in the store when the page is asked for
    for _ in 0..3 {
        env.store
            .enqueue_publish("shop", "alice", &["ops".into()], "{}")
            .unwrap();
    }
    metrics.queue_depth_set(99);
    metrics.running_set(5);
    metrics.deployment_finished("succeeded", 75.0);
    metrics.stage_finished("deploy", 4.0);

    let res = send(&app, Request::get("/metrics").body(Body::empty()).unwrap()).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.headers()[header::CONTENT_TYPE],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let body = text(res).await;
    for want in [
        "pushguide_deployments_total{outcome=\"failed\"} 1\n",
        "pushguide_deployments_total{outcome=\"succeeded\"} 2\n",
        "pushguide_login_failures_total 1\n",
        "pushguide_sse_clients 1\n",
        "pushguide_queue_depth 3\n",
        "pushguide_running_deployments 0\n",
        "pushguide_deployment_duration_seconds_bucket{le=\"120\"} 1\n",
        "pushguide_stage_duration_seconds_bucket{stage=\"deploy\",le=\"5\"} 1\n",
    ] {
        assert!(body.contains(want), "{want}\n---\n{body}");
    }
    assert!(
        !body.contains("outcome=\"\""),
        "a running deployment has no outcome"
    );
}
