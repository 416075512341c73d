//! `pushguide user add` and `pushguide serve` as processes: a user added through stdin logs in over
//! HTTP, reads `/api/v1/templates`, and SIGTERM stops the service with exit 0.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const TEMPLATE: &str = r#"
name = "shop"
description = "The shop"
[acl.viewers]
groups = ["devs"]
[acl.deployers]
groups = ["ops"]
[targets]
minions = ["web-01", "web-02"]
[project]
kind = "java-tomcat"
context = "shop"
root = "/srv/shop"
catalina_base = "/var/lib/tomcat10"
service = "tomcat10"
"#;

fn setup(dir: &Path, port: u16) -> std::path::PathBuf {
    std::fs::create_dir_all(dir.join("templates")).unwrap();
    std::fs::write(dir.join("templates/shop.toml"), TEMPLATE).unwrap();
    std::fs::write(
        dir.join("templates/other.toml"),
        TEMPLATE
            .replace("\"shop\"", "\"other\"")
            .replace("devs", "nobody")
            .replace("ops", "nobody"),
    )
    .unwrap();
    let config = dir.join("pushguide.toml");
    std::fs::write(
        &config,
        format!(
            r#"store = "state/pushguide.db"
templates = "templates"
[user]
name = "cli"
[salt]
endpoints = ["http://127.0.0.1:1"]
eauth = "pam"
user = "deploy"
password_env = "PG_SERVE_TEST_UNUSED"
[server]
listen = "127.0.0.1:{port}"
session_idle_secs = 600
session_max_secs = 3600
admin_groups = ["admins"]
"#
        ),
    )
    .unwrap();
    config
}

fn pushguide(config: &Path, args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pushguide"))
        .arg("--config")
        .arg(config)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

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

#[test]
fn user_add_reads_the_password_from_stdin_and_refuses_an_existing_user() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path(), free_port());
    let out = pushguide(
        &config,
        &["--json", "user", "add", "bob", "--groups", "devs,qa"],
        "pw-1\n",
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"user": "bob", "groups": ["devs", "qa"], "replaced": false})
    );

    let out = pushguide(&config, &["user", "add", "bob"], "pw-2\n", &[]);
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("exists already") && err.contains("--replace"),
        "{err}"
    );

    let out = pushguide(
        &config,
        &[
            "user",
            "add",
            "bob",
            "--replace",
            "--password-env",
            "PG_TEST_NEW_PW",
        ],
        "",
        &[("PG_TEST_NEW_PW", "pw-3")],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("replaced"));

    // an empty password is refused; the password is never echoed
    let out = pushguide(&config, &["user", "add", "carol"], "\n", &[]);
    assert_eq!(out.status.code(), Some(64));
    let out = pushguide(&config, &["user", "add", "dave"], "very-secret-pw\n", &[]);
    assert!(out.status.success());
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!all.contains("very-secret-pw"), "{all}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_logs_in_over_http_lists_templates_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = setup(dir.path(), port);
    let out = pushguide(
        &config,
        &["user", "add", "bob", "--groups", "devs"],
        "bob-pw\n",
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut child = Command::new(env!("CARGO_BIN_EXE_pushguide"))
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .stdin(Stdio::null())
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
                assert!(child.try_wait().unwrap().is_none(), "serve exited early");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    assert_eq!(form.status(), 200);
    assert_eq!(form.headers()["x-frame-options"], "DENY");
    let csrf = cookie(&form, "pushguide_login_csrf").unwrap();

    let anonymous = client
        .get(format!("{base}/api/v1/templates"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);

    let res = client
        .post(format!("{base}/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("cookie", format!("pushguide_login_csrf={csrf}"))
        .body(format!("user=bob&password=bob-pw&csrf={csrf}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let session = cookie(&res, "pushguide_session").unwrap();

    let res = client
        .get(format!("{base}/api/v1/templates"))
        .header("cookie", format!("pushguide_session={session}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let v: Value = serde_json::from_str(&res.text().await.unwrap()).unwrap();
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["shop"], "{v}");
    assert_eq!(v[0]["kind"], "java-tomcat");
    assert_eq!(v[0]["targets"], "web-01,web-02");
    assert_eq!(v[0]["may_deploy"], false);

    let st = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let begun = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if begun.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            panic!("serve did not stop within 10 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_add_prints_a_token_once_that_the_service_accepts_as_bearer() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = setup(dir.path(), port);
    // no such user yet; a bad label
    let out = pushguide(&config, &["token", "add", "bob", "--label", "ci"], "", &[]);
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("user add"));
    let out = pushguide(
        &config,
        &["user", "add", "bob", "--groups", "devs"],
        "pw\n",
        &[],
    );
    assert!(out.status.success());
    let out = pushguide(&config, &["token", "add", "bob", "--label", " "], "", &[]);
    assert_eq!(out.status.code(), Some(64));
    let out = pushguide(
        &config,
        &[
            "token",
            "add",
            "bob",
            "--label",
            "ci",
            "--expires-days",
            "0",
        ],
        "",
        &[],
    );
    assert_eq!(out.status.code(), Some(64));

    let out = pushguide(
        &config,
        &[
            "--json",
            "token",
            "add",
            "bob",
            "--label",
            "jenkins",
            "--expires-days",
            "30",
        ],
        "",
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["user"].as_str(), v["label"].as_str()),
        (Some("bob"), Some("jenkins"))
    );
    assert!(v["expires"].is_string(), "{v}");
    let json_token = v["token"].as_str().unwrap().to_owned();
    // human output: the token alone on stdout
    let out = pushguide(
        &config,
        &["token", "add", "bob", "--label", "gitlab"],
        "",
        &[],
    );
    assert!(out.status.success());
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(token.starts_with("pgt_") && token.len() == 68, "{token}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("shown this once"));

    let mut child = Command::new(env!("CARGO_BIN_EXE_pushguide"))
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let begun = Instant::now();
    let res = loop {
        match client
            .get(format!("{base}/api/v1/templates"))
            .bearer_auth(&token)
            .send()
            .await
        {
            Ok(r) => break r,
            Err(e) => {
                assert!(
                    begun.elapsed() < Duration::from_secs(30),
                    "never listened: {e}"
                );
                assert!(child.try_wait().unwrap().is_none(), "serve exited early");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let status = res.status();
    let body = res.text().await.unwrap();
    let json_ok = client
        .get(format!("{base}/api/v1/templates"))
        .bearer_auth(&json_token)
        .send()
        .await
        .unwrap()
        .status();
    let forged = client
        .get(format!("{base}/api/v1/templates"))
        .bearer_auth(format!(
            "{}{}",
            &token[..67],
            if token.ends_with('0') { '1' } else { '0' }
        ))
        .send()
        .await
        .unwrap()
        .status();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v[0]["name"], "shop", "{v}");
    assert_eq!(json_ok, 200);
    assert_eq!(forged, 401);
}

/// A logged-in user of a running `pushguide serve`, over HTTP.
struct Web {
    client: reqwest::Client,
    base: String,
    session: String,
    csrf: String,
}

impl Web {
    /// Waits until the service at `base` answers.
    async fn listening(base: &str) {
        let begun = Instant::now();
        while reqwest::get(format!("{base}/login")).await.is_err() {
            assert!(begun.elapsed() < Duration::from_secs(30), "never listened");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Logs in through the form as `user`.
    async fn login(base: &str, user: &str, password: &str) -> Web {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let form = client.get(format!("{base}/login")).send().await.unwrap();
        let csrf = cookie(&form, "pushguide_login_csrf").unwrap();
        let res = client
            .post(format!("{base}/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("cookie", format!("pushguide_login_csrf={csrf}"))
            .body(format!("user={user}&password={password}&csrf={csrf}"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 303, "{user}");
        let session = format!(
            "pushguide_session={}",
            cookie(&res, "pushguide_session").unwrap()
        );
        let mut web = Web {
            client,
            base: base.to_owned(),
            session,
            csrf: String::new(),
        };
        web.csrf = web.get("/api/v1/session").await["csrf"]
            .as_str()
            .unwrap()
            .to_owned();
        web
    }

    async fn get(&self, path: &str) -> Value {
        let res = self
            .client
            .get(format!("{}{path}", self.base))
            .header("cookie", &self.session)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{path}");
        res.json().await.unwrap()
    }

    async fn post(&self, path: &str, body: Value) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.base))
            .header("cookie", &self.session)
            .header("x-csrf-token", &self.csrf)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap()
    }

    /// Queues `body` on shop; the request id.
    async fn publish(&self, body: Value) -> i64 {
        let res = self.post("/api/v1/templates/shop/publish", body).await;
        assert_eq!(res.status(), 202);
        res.json::<Value>().await.unwrap()["request"]
            .as_i64()
            .unwrap()
    }

    /// Waits until request `id` leaves the queue or ends; its JSON.
    async fn request(&self, id: i64, done: fn(&Value) -> bool, limit: Duration) -> Value {
        let begun = Instant::now();
        loop {
            let r = self.get(&format!("/api/v1/requests/{id}")).await;
            if done(&r) {
                return r;
            }
            assert!(begun.elapsed() < limit, "{r}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Publishes `body` and waits for its deployment's id.
    async fn run(&self, body: Value) -> String {
        let id = self.publish(body).await;
        let r = self
            .request(
                id,
                |r| r["deployment"].is_string() || r["state"] == "failed",
                Duration::from_secs(60),
            )
            .await;
        r["deployment"]
            .as_str()
            .unwrap_or_else(|| panic!("{r}"))
            .to_owned()
    }

    /// Waits until deployment `id` satisfies `done`; its JSON.
    async fn deployment(&self, id: &str, done: fn(&Value) -> bool) -> Value {
        let begun = Instant::now();
        loop {
            let v = self.get(&format!("/api/v1/deployments/{id}")).await;
            if done(&v) {
                return v;
            }
            assert!(begun.elapsed() < Duration::from_secs(120), "{v}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The version each host of shop runs.
    async fn versions(&self) -> Vec<String> {
        let t = self.get("/api/v1/templates/shop").await;
        t["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["version"].as_str().unwrap_or("unknown").to_owned())
            .collect()
    }
}

fn ended(v: &Value) -> bool {
    v["outcome"].is_string() && v["live"] == false
}

/// `serve --demo` as a user meets it: the printed passwords log in, a deployer publishes 1.0.0 to
/// the 20 minions, 2.0.0 pauses on web-07, "exclude" lets it finish, a rollback follows, and the
/// viewer can watch but not act.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_publishes_pauses_on_web_07_and_rolls_back() {
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_pushguide"))
        .args(["serve", "--demo", "--listen", &format!("127.0.0.1:{port}")])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut passwords = std::collections::HashMap::new();
    let mut line = String::new();
    while passwords.len() < 3 {
        line.clear();
        assert!(std::io::BufRead::read_line(&mut stdout, &mut line).unwrap() > 0);
        let words: Vec<&str> = line.split_whitespace().collect();
        if let [user @ ("dora" | "victor" | "ada"), pw, ..] = words.as_slice() {
            passwords.insert(user.to_string(), pw.to_string());
        }
    }
    let base = format!("http://127.0.0.1:{port}");
    Web::listening(&base).await;
    let dora = Web::login(&base, "dora", &passwords["dora"]).await;
    let victor = Web::login(&base, "victor", &passwords["victor"]).await;
    let d1 = dora
        .run(serde_json::json!({"mode": {"kind": "deploy", "version": "1.0.0"}}))
        .await;
    assert_eq!(dora.deployment(&d1, ended).await["outcome"], "succeeded");
    let d2 = dora
        .run(serde_json::json!({"mode": {"kind": "deploy", "version": "2.0.0"}}))
        .await;
    let paused = dora.deployment(&d2, |v| v["state"] == "paused").await;
    assert_eq!(paused["pause"]["failed"], serde_json::json!(["web-07"]));
    // the viewer sees it and may not act
    let decide = format!("/api/v1/deployments/{d2}/decide");
    let res = victor
        .post(&decide, serde_json::json!({"decision": "rollback"}))
        .await;
    assert_eq!(res.status(), 403);
    let res = dora
        .post(&decide, serde_json::json!({"decision": "exclude"}))
        .await;
    assert_eq!(res.status(), 202);
    let done = dora.deployment(&d2, ended).await;
    assert_eq!(done["outcome"], "partially-applied", "{done}");
    let on_2 = dora
        .versions()
        .await
        .iter()
        .filter(|v| *v == "2.0.0")
        .count();
    assert_eq!(on_2, 19);
    // the next request: every host back to its previous version
    let d3 = dora
        .run(serde_json::json!({"mode": {"kind": "rollback"}}))
        .await;
    let done = dora.deployment(&d3, ended).await;
    assert!(
        done["rollback"] == true && done["outcome"].is_string(),
        "{done}"
    );
    assert_eq!(dora.versions().await, vec!["1.0.0"; 20]);
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let begun = Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(
            begun.elapsed() < Duration::from_secs(30),
            "serve --demo did not stop"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A configuration of 3 minions behind a fake salt-api answering each call in 400 ms, a CI
/// directory with shop 1.0.0, and the deployer `dora` (password `pw`).
struct SlowSite {
    _dir: tempfile::TempDir,
    _api: pushguide_salt::fake::FakeSaltApi,
    config: std::path::PathBuf,
    base: String,
}

impl SlowSite {
    async fn new() -> SlowSite {
        use pushguide_core::sim::SimFleet;
        use pushguide_core::Outcome;
        use sha2::Digest as _;

        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let war = b"kill test 1.0.0\n";
        let sha: String = sha2::Sha256::digest(war)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        std::fs::create_dir_all(root.join("artifacts/shop/1.0.0")).unwrap();
        std::fs::write(root.join("artifacts/shop/1.0.0/shop.war"), war).unwrap();
        std::fs::write(
            root.join("artifacts/shop/1.0.0/manifest.json"),
            r#"[{"path": "WEB-INF/web.xml", "size": 1}]"#,
        )
        .unwrap();
        let hosts = ["web-01", "web-02", "web-03"];
        let fleet = std::sync::Arc::new(
            SimFleet::new(hosts)
                .unwrap()
                .with_latency(Duration::from_millis(400))
                .on("*", "file.directory_exists", Outcome::ok(false))
                .on(
                    "*",
                    "cp.get_url",
                    Outcome::ok("/srv/shop/archives/1.0.0.war"),
                )
                .on("*", "file.get_hash", Outcome::ok(sha))
                .on(
                    "*",
                    "http.query",
                    Outcome::ok(serde_json::json!({"status": 200})),
                ),
        );
        let api = pushguide_salt::fake::FakeSaltApi::builder(fleet)
            .credentials("pushguide", "kill-test-pw")
            .start()
            .await
            .unwrap();
        std::fs::create_dir_all(root.join("templates")).unwrap();
        std::fs::write(
            root.join("templates/shop.toml"),
            format!(
                "name = \"shop\"\n[acl.deployers]\ngroups = [\"ops\"]\n[targets]\n\
                 minions = {hosts:?}\n[rollout]\nbatch = 1\n[project]\nkind = \"java-tomcat\"\n\
                 context = \"shop\"\nroot = \"/srv/shop\"\ncatalina_base = \"/var/lib/tomcat10\"\n\
                 service = \"tomcat10\"\n"
            ),
        )
        .unwrap();
        let port = free_port();
        let config = root.join("pushguide.toml");
        std::fs::write(
            &config,
            format!(
                "store = \"state/pushguide.db\"\ntemplates = \"templates\"\n[user]\nname = \"cli\"\n\
                 [salt]\nendpoints = [\"{}\"]\neauth = \"pam\"\nuser = \"pushguide\"\n\
                 password_env = \"PG_KILL_TEST_PW\"\nstep_jobs = false\n\
                 [ci]\ntype = \"directory\"\npath = \"artifacts\"\nurl_base = \"salt://artifacts/\"\n\
                 [server]\nlisten = \"127.0.0.1:{port}\"\n",
                api.url()
            ),
        )
        .unwrap();
        let out = pushguide(
            &config,
            &["user", "add", "dora", "--groups", "ops"],
            "pw\n",
            &[],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        SlowSite {
            _dir: dir,
            _api: api,
            config,
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    /// Starts `pushguide serve` on it.
    fn spawn(&self) -> std::process::Child {
        Command::new(env!("CARGO_BIN_EXE_pushguide"))
            .arg("--config")
            .arg(&self.config)
            .arg("serve")
            .env("PG_KILL_TEST_PW", "kill-test-pw")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    /// Publishes shop 1.0.0 as dora and waits until its second batch (of 3) runs; the request and
    /// deployment ids.
    async fn release_into_batch_two(&self, dora: &Web) -> (i64, String) {
        let release = serde_json::json!({"mode": {"kind": "deploy", "version": "1.0.0"}});
        let request = dora.publish(release).await;
        let begun = Instant::now();
        loop {
            let r = dora.get(&format!("/api/v1/requests/{request}")).await;
            if let Some(d) = r["deployment"].as_str() {
                let g = dora.get(&format!("/api/v1/deployments/{d}")).await;
                if g["batches"].as_array().is_some_and(|b| b.len() == 3)
                    && g["hosts"][1]["stages"][0] != "pending"
                {
                    return (request, d.to_owned());
                }
            }
            assert!(begun.elapsed() < Duration::from_secs(60), "{r}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// SIGTERM while a deployment runs: the service cancels it (the running call finishes, nothing
/// further starts), records its end, and exits 0; the next service shows it cancelled, not
/// interrupted, and web-03 was never touched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_cancels_the_running_deployment_records_it_and_exits_0() {
    let site = SlowSite::new().await;
    let mut first = site.spawn();
    Web::listening(&site.base).await;
    let dora = Web::login(&site.base, "dora", "pw").await;
    let (request, deployment) = site.release_into_batch_two(&dora).await;
    Command::new("kill")
        .args(["-TERM", &first.id().to_string()])
        .status()
        .unwrap();
    let begun = Instant::now();
    let status = loop {
        if let Some(s) = first.try_wait().unwrap() {
            break s;
        }
        assert!(
            begun.elapsed() < Duration::from_secs(60),
            "serve did not stop"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status}");
    let mut second = site.spawn();
    Web::listening(&site.base).await;
    let dora = Web::login(&site.base, "dora", "pw").await;
    let r = dora.get(&format!("/api/v1/requests/{request}")).await;
    assert_eq!(r["state"], "done", "{r}");
    let g = dora.get(&format!("/api/v1/deployments/{deployment}")).await;
    assert_eq!(g["outcome"], "cancelled", "{g}");
    assert_eq!(
        g["hosts"][2]["stages"][0], "skipped",
        "web-03 never touched: {g}"
    );
    second.kill().unwrap();
    second.wait().unwrap();
}

/// A service SIGKILLed while its deployment runs: the restarted service marks the deployment and
/// its request interrupted (once the dead process's heartbeat is older than the lease TTL, 30 s),
/// shows each host's last stage, and the next request deploys again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_killed_mid_deployment_is_recovered_by_the_next_one() {
    let site = SlowSite::new().await;
    let base = site.base.clone();
    let mut first = site.spawn();
    Web::listening(&base).await;
    let dora = Web::login(&base, "dora", "pw").await;
    let release = serde_json::json!({"mode": {"kind": "deploy", "version": "1.0.0"}});
    let (request, deployment) = site.release_into_batch_two(&dora).await;
    first.kill().unwrap();
    first.wait().unwrap();

    let mut second = site.spawn();
    Web::listening(&base).await;
    let restarted = Instant::now();
    let dora = Web::login(&base, "dora", "pw").await;
    let r = dora
        .request(
            request,
            |r| r["state"] != "running",
            Duration::from_secs(90),
        )
        .await;
    eprintln!("recovered {:?} after the restart", restarted.elapsed());
    assert_eq!(r["state"], "interrupted", "{r}");
    let g = dora.get(&format!("/api/v1/deployments/{deployment}")).await;
    assert_eq!(g["outcome"], "interrupted", "{g}");
    let statuses: Vec<(&str, &str)> = g["interrupted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["host"].as_str().unwrap(), h["status"].as_str().unwrap()))
        .collect();
    assert!(statuses.contains(&("web-01", "succeeded")), "{g}");
    assert!(statuses.contains(&("web-02", "interrupted")), "{g}");
    assert!(
        !statuses.iter().any(|(h, _)| *h == "web-03"),
        "never reached: {g}"
    );
    // the next request deploys again, and every host ends on 1.0.0
    let again = dora.publish(release).await;
    let r = dora
        .request(
            again,
            |r| r["state"] != "queued" && r["state"] != "running",
            Duration::from_secs(60),
        )
        .await;
    assert_eq!(r["state"], "done", "{r}");
    assert_eq!(dora.versions().await, ["1.0.0"; 3]);
    second.kill().unwrap();
    second.wait().unwrap();
}

/// One server-sent event as read: its id, its data lines joined, and whether the `pushguide
/// deploy` process was still running when it arrived.
struct Seen {
    id: u64,
    data: String,
    deploy_running: bool,
}

/// A deployment run by `pushguide deploy` in another process, watched on the page of a
/// `pushguide serve` on the same store file: the page is live, the service follows the store's
/// journal, the batches' stage updates arrive over SSE while the other process runs, and the
/// stream ends once it has finished (a reconnect then gets 204).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_run_by_another_process_is_live_on_the_page() {
    let site = SlowSite::new().await;
    // the CLI acts as a deployer of shop
    let text = std::fs::read_to_string(&site.config).unwrap();
    std::fs::write(
        &site.config,
        text.replace("name = \"cli\"\n", "name = \"cli\"\ngroups = [\"ops\"]\n"),
    )
    .unwrap();
    let mut serve = site.spawn();
    Web::listening(&site.base).await;
    let dora = Web::login(&site.base, "dora", "pw").await;

    let log = tempfile::NamedTempFile::new().unwrap();
    let mut deploy = Command::new(env!("CARGO_BIN_EXE_pushguide"))
        .arg("--config")
        .arg(&site.config)
        .args(["deploy", "shop", "1.0.0", "--on-pause", "abort"])
        .env("PG_KILL_TEST_PW", "kill-test-pw")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log.reopen().unwrap())
        .spawn()
        .unwrap();
    // the service sees it in the store
    let begun = Instant::now();
    let id = loop {
        let t = dora.get("/api/v1/templates/shop").await;
        if let Some(id) = t["last_deployment"]["id"].as_str() {
            break id.to_owned();
        }
        assert!(
            deploy.try_wait().unwrap().is_none(),
            "deploy ended early: {}",
            std::fs::read_to_string(log.path()).unwrap()
        );
        assert!(begun.elapsed() < Duration::from_secs(30), "{t}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let page = dora
        .client
        .get(format!("{}/deployments/{id}", site.base))
        .header("cookie", &dora.session)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("run by another process"), "{page}");
    let at = page.find("sse-connect=\"").unwrap() + "sse-connect=\"".len();
    let url = &page[at..at + page[at..].find('"').unwrap()];
    assert!(
        url.starts_with(&format!("/deployments/{id}/events?after=")),
        "{url}"
    );

    let mut res = dora
        .client
        .get(format!("{}{url}", site.base))
        .header("cookie", &dora.session)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let mut seen: Vec<Seen> = Vec::new();
    let mut buf = String::new();
    let begun = Instant::now();
    loop {
        let chunk = tokio::time::timeout(Duration::from_secs(60), res.chunk())
            .await
            .expect("a frame or the end within 60 s")
            .unwrap();
        let Some(chunk) = chunk else { break };
        let deploy_running = deploy.try_wait().unwrap().is_none();
        buf.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            let mut id = None;
            let mut data = String::new();
            for line in event.lines() {
                if let Some(v) = line.strip_prefix("id: ") {
                    id = Some(v.parse().unwrap());
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data.push_str(v);
                }
            }
            if let Some(id) = id {
                seen.push(Seen {
                    id,
                    data,
                    deploy_running,
                });
            }
        }
        assert!(begun.elapsed() < Duration::from_secs(120), "no end");
    }
    let ended_at = Instant::now();
    let status = loop {
        if let Some(s) = deploy.try_wait().unwrap() {
            break s;
        }
        assert!(
            ended_at.elapsed() < Duration::from_secs(20),
            "the stream ended long before the deployment process"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(log.path()).unwrap()
    );
    let ids: Vec<u64> = seen.iter().map(|s| s.id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    // stage updates of each batch (its row and the marker its hosts follow) while it ran
    for b in 0..3 {
        let live = seen.iter().filter(|s| s.deploy_running).any(|s| {
            s.data.contains(&format!(
                "<tr id=\"bm-{b}\" class=\"bm\" hidden data-s0=\"ok\" data-s1=\"running\""
            )) && s
                .data
                .contains(&format!("<tr id=\"b-{b}\" hx-swap-oob=\"true\">"))
        });
        assert!(
            live,
            "batch {b}'s deploy stage, live: {:?}",
            seen.iter()
                .map(|s| (s.id, s.deploy_running, &s.data))
                .collect::<Vec<_>>()
        );
    }
    let last = seen.last().unwrap();
    assert!(last.data.contains("state-succeeded"), "{}", last.data);
    // the store has the outcome the stream ended with; a reconnect is told there is no more
    let g = dora.get(&format!("/api/v1/deployments/{id}")).await;
    assert_eq!(g["outcome"], "succeeded", "{g}");
    let again = dora
        .client
        .get(format!("{}/deployments/{id}/events", site.base))
        .header("cookie", &dora.session)
        .header("last-event-id", last.id.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 204);
    serve.kill().unwrap();
    serve.wait().unwrap();
}
