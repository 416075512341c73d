//! `pushguide user add` and `pushguide serve` as processes: a user added through stdin logs in over
//! HTTP, reads `/api/v1/templates`, and SIGTERM stops the service with exit 0.
#![allow(clippy::unwrap_used)]

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
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let begun = Instant::now();
    while client.get(format!("{base}/login")).send().await.is_err() {
        assert!(begun.elapsed() < Duration::from_secs(30), "never listened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let login = |user: &'static str| {
        let (client, base, pw) = (client.clone(), base.clone(), passwords[user].clone());
        async move {
            let form = client.get(format!("{base}/login")).send().await.unwrap();
            let csrf = cookie(&form, "pushguide_login_csrf").unwrap();
            let res = client
                .post(format!("{base}/login"))
                .header("content-type", "application/x-www-form-urlencoded")
                .header("cookie", format!("pushguide_login_csrf={csrf}"))
                .body(format!("user={user}&password={pw}&csrf={csrf}"))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 303, "{user}");
            let session = format!(
                "pushguide_session={}",
                cookie(&res, "pushguide_session").unwrap()
            );
            let v: Value = client
                .get(format!("{base}/api/v1/session"))
                .header("cookie", &session)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            (session, v["csrf"].as_str().unwrap().to_owned())
        }
    };
    let (dora, dora_csrf) = login("dora").await;
    let (victor, victor_csrf) = login("victor").await;
    let get = |session: String, path: String| {
        let (client, base) = (client.clone(), base.clone());
        async move {
            let res = client
                .get(format!("{base}{path}"))
                .header("cookie", session)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200, "{path}");
            res.json::<Value>().await.unwrap()
        }
    };
    let post = |session: String, csrf: String, path: String, body: Value| {
        let (client, base) = (client.clone(), base.clone());
        async move {
            client
                .post(format!("{base}{path}"))
                .header("cookie", session)
                .header("x-csrf-token", csrf)
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .await
                .unwrap()
        }
    };
    let run = |body: Value| {
        let (dora, csrf) = (dora.clone(), dora_csrf.clone());
        let (get, post) = (&get, &post);
        async move {
            let res = post(
                dora.clone(),
                csrf,
                "/api/v1/templates/shop/publish".into(),
                body,
            )
            .await;
            assert_eq!(res.status(), 202);
            let id = res.json::<Value>().await.unwrap()["request"]
                .as_i64()
                .unwrap();
            let begun = Instant::now();
            loop {
                let r = get(dora.clone(), format!("/api/v1/requests/{id}")).await;
                if let Some(d) = r["deployment"].as_str() {
                    return d.to_owned();
                }
                assert!(r["state"] == "queued" || r["state"] == "running", "{r}");
                assert!(begun.elapsed() < Duration::from_secs(60), "{r}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let wait = |id: String, done: fn(&Value) -> bool| {
        let (dora, get) = (dora.clone(), &get);
        async move {
            let begun = Instant::now();
            loop {
                let v = get(dora.clone(), format!("/api/v1/deployments/{id}")).await;
                if done(&v) {
                    return v;
                }
                assert!(begun.elapsed() < Duration::from_secs(120), "{v}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let ended: fn(&Value) -> bool = |v| v["outcome"].is_string() && v["live"] == false;
    let d1 = run(serde_json::json!({"mode": {"kind": "deploy", "version": "1.0.0"}})).await;
    assert_eq!(wait(d1, ended).await["outcome"], "succeeded");
    let d2 = run(serde_json::json!({"mode": {"kind": "deploy", "version": "2.0.0"}})).await;
    let paused = wait(d2.clone(), |v| v["state"] == "paused").await;
    assert_eq!(paused["pause"]["failed"], serde_json::json!(["web-07"]));
    // the viewer sees it and may not act
    let res = post(
        victor,
        victor_csrf,
        format!("/api/v1/deployments/{d2}/decide"),
        serde_json::json!({"decision": "rollback"}),
    )
    .await;
    assert_eq!(res.status(), 403);
    let res = post(
        dora.clone(),
        dora_csrf.clone(),
        format!("/api/v1/deployments/{d2}/decide"),
        serde_json::json!({"decision": "exclude"}),
    )
    .await;
    assert_eq!(res.status(), 202);
    let done = wait(d2, ended).await;
    assert_eq!(done["outcome"], "partially-applied", "{done}");
    let fleet = get(dora.clone(), "/api/v1/templates/shop".into()).await;
    let on_2: usize = fleet["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["version"] == "2.0.0")
        .count();
    assert_eq!(on_2, 19, "{fleet}");
    // the next request: every host back to its previous version
    let d3 = run(serde_json::json!({"mode": {"kind": "rollback"}})).await;
    let done = wait(d3, ended).await;
    assert!(
        done["rollback"] == true && done["outcome"].is_string(),
        "{done}"
    );
    let fleet = get(dora, "/api/v1/templates/shop".into()).await;
    assert!(
        fleet["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["version"] == "1.0.0"),
        "{fleet}"
    );
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
