//! `pushguide serve` as a process against the fake salt-api: its minion monitor pings through
//! salt, `/healthz` follows salt-api going away, the template editor writes into the templates
//! directory, and SIGTERM stops the service and its monitor.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pushguide_core::Outcome;
use serde_json::{json, Value};
use support::lab::{shop_template, Lab, ENV};
use support::run;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn cookie(res: &reqwest::Response, name: &str) -> Option<String> {
    res.headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|c| c.split(';').next()?.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

struct Served {
    child: Child,
    base: String,
    client: reqwest::Client,
    session: String,
    csrf: String,
}

impl Served {
    async fn get(&self, path: &str) -> (u16, Value) {
        let res = self
            .client
            .get(format!("{}{path}", self.base))
            .header("cookie", format!("pushguide_session={}", self.session))
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        (
            status,
            serde_json::from_str(&res.text().await.unwrap()).unwrap_or(Value::Null),
        )
    }

    /// Polls `path` until `ok` holds (at most `secs` seconds).
    async fn wait(&mut self, path: &str, secs: u64, ok: impl Fn(u16, &Value) -> bool) -> Value {
        let begun = Instant::now();
        loop {
            let (status, v) = self.get(path).await;
            if ok(status, &v) {
                return v;
            }
            assert!(self.child.try_wait().unwrap().is_none(), "serve exited");
            assert!(
                begun.elapsed() < Duration::from_secs(secs),
                "{path}: {status} {v}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn start(lab: &Lab, port: u16) -> Served {
    let child = lab
        .command(&["serve"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let begun = Instant::now();
    let form = loop {
        match client.get(format!("{base}/login")).send().await {
            Ok(r) => break r,
            Err(e) => {
                assert!(
                    begun.elapsed() < Duration::from_secs(30),
                    "never listened: {e}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let login_csrf = cookie(&form, "pushguide_login_csrf").unwrap();
    let res = client
        .post(format!("{base}/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("cookie", format!("pushguide_login_csrf={login_csrf}"))
        .body(format!("user=alice&password=alice-pw&csrf={login_csrf}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let session = cookie(&res, "pushguide_session").unwrap();
    let mut served = Served {
        child,
        base,
        client,
        session,
        csrf: String::new(),
    };
    served.csrf = served.get("/api/v1/session").await.1["csrf"]
        .as_str()
        .unwrap()
        .to_owned();
    served
}

#[test]
fn serve_monitors_minions_reports_health_and_saves_templates() {
    let lab = Lab::builder()
        .template(
            "shop",
            &shop_template(&["web-01", "web-02", "web-03"], true, true),
        )
        .start();
    lab.fleet.add_rule("web-03", "*", Outcome::NoReturn, None);
    let port = free_port();
    let mut text = std::fs::read_to_string(&lab.ops).unwrap();
    text.push_str(&format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\nadmin_groups = [\"ops\"]\n\
         monitor_interval_secs = 1\n"
    ));
    // the monitor's pings give up on a silent minion after a second
    let text = text.replace("[monitor]\ntimeout_secs = 5", "[monitor]\ntimeout_secs = 1");
    std::fs::write(&lab.ops, text).unwrap();
    let mut env = ENV.to_vec();
    env.push(("PG_ALICE_PW", "alice-pw"));
    let r = run(
        &lab.ops,
        &[
            "user",
            "add",
            "alice",
            "--groups",
            "ops",
            "--password-env",
            "PG_ALICE_PW",
        ],
        &env,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut s = start(&lab, port).await;

        // the monitor pinged the template's minions through salt
        let v = s
            .wait("/api/v1/monitor", 30, |_, v| {
                v["templates"][0]["up"] == 2 && v["templates"][0]["down"] == 1
            })
            .await;
        assert_eq!(v["running"], true);
        assert_eq!(v["interval_secs"], 1);
        let down: Vec<&str> = v["templates"][0]["minions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["up"] == false)
            .map(|m| m["minion"].as_str().unwrap())
            .collect();
        assert_eq!(down, ["web-03"]);

        // healthy: the store takes writes, the one endpoint logs in
        let (status, h) = s.get("/healthz").await;
        assert_eq!(status, 200, "{h}");
        assert_eq!(h["salt"][0]["endpoint"], lab.fake().settings().endpoints[0]);
        let metrics = s
            .client
            .get(format!("{}/metrics", s.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            metrics.contains("pushguide_minions{state=\"up\"} 2\n"),
            "{metrics}"
        );
        // the health probe and the monitor's requests, under the one endpoint
        let endpoint = &lab.fake().settings().endpoints[0];
        let count: u64 = metrics
            .lines()
            .find_map(|l| {
                l.strip_prefix(&format!(
                    "pushguide_salt_request_duration_seconds_count{{endpoint=\"{endpoint}\"}} "
                ))
            })
            .unwrap_or_else(|| panic!("{metrics}"))
            .parse()
            .unwrap();
        assert!(count >= 2, "{metrics}");

        // the editor writes into the templates directory
        let billing = shop_template(&["web-01"], true, true).replace("\"shop\"", "\"billing\"");
        let res = s
            .client
            .post(format!("{}/api/v1/templates/new", s.base))
            .header("cookie", format!("pushguide_session={}", s.session))
            .header("x-csrf-token", &s.csrf)
            .header("content-type", "application/json")
            .body(json!({"text": billing}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
        assert_eq!(
            std::fs::read_to_string(lab.dir.join("templates/billing.toml")).unwrap(),
            billing
        );
        let r = lab.run(&["templates", "--json"]);
        assert!(r.stdout.contains("billing"), "{}", r.stdout);

        // salt-api goes away: health fails naming it, the monitor shows the error and goes on
        lab.fake().shutdown();
        let h = s.wait("/healthz", 30, |status, _| status == 503).await;
        assert_eq!(h["salt"][0]["ok"], false);
        assert_eq!(h["store"]["ok"], true);
        let v = s
            .wait("/api/v1/monitor", 30, |_, v| v["last_round_ok"] == false)
            .await;
        assert!(v["last_error"]["message"].is_string(), "{v}");
        let rounds = v["rounds"].as_u64().unwrap();
        s.wait("/api/v1/monitor", 30, |_, v| {
            v["rounds"].as_u64().unwrap() > rounds
        })
        .await;

        // SIGTERM stops the service and its monitor
        let st = Command::new("kill")
            .args(["-TERM", &s.child.id().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
        let begun = Instant::now();
        let status = loop {
            if let Some(st) = s.child.try_wait().unwrap() {
                break st;
            }
            if begun.elapsed() > Duration::from_secs(10) {
                let _ = s.child.kill();
                panic!("serve did not stop within 10 s of SIGTERM");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(status.code(), Some(0));
    });
}
