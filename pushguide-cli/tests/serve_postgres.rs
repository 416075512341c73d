//! `pushguide serve` on the PostgreSQL store (a schema of its own in the shared test database,
//! `scripts/pg-lab env`): `user add`, a login, a publish through the JSON API run against the fake
//! salt-api through the store's fenced ports, and the history, statistics and log pages reading it
//! back. Skipped without `PUSHGUIDE_PG_URL` unless `PUSHGUIDE_REQUIRE_PG=1`.

#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn database() -> Option<(String, Option<String>)> {
    let url = std::env::var("PUSHGUIDE_PG_URL")
        .ok()
        .filter(|u| !u.is_empty());
    match url {
        Some(url) => Some((url, std::env::var("PUSHGUIDE_PG_PASSWORD_FILE").ok())),
        None if std::env::var("PUSHGUIDE_REQUIRE_PG").as_deref() == Ok("1") => {
            panic!("PUSHGUIDE_REQUIRE_PG=1 but PUSHGUIDE_PG_URL is not set (scripts/pg-lab up)")
        }
        None => {
            eprintln!("skipped: no PostgreSQL (set PUSHGUIDE_PG_URL, see scripts/pg-lab)");
            None
        }
    }
}

fn pushguide(config: &Path, args: &[&str], stdin: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_pushguide"))
        .arg("--config")
        .arg(config)
        .args(args)
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
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .filter_map(|c| c.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// Kills the service when the test ends, however it ends.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_on_postgres_logs_in_publishes_and_shows_history_stats_and_log() {
    use pushguide_core::sim::SimFleet;
    use pushguide_core::Outcome;
    use sha2::Digest as _;

    let Some((url, password_file)) = database() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let war = b"pg serve test 1.0.0\n";
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
    let hosts = ["web-01", "web-02"];
    let fleet = std::sync::Arc::new(
        SimFleet::new(hosts)
            .unwrap()
            .with_latency(Duration::from_millis(20))
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
        .credentials("pushguide", "pg-serve-pw")
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
    let schema = format!("cli_serve_{}", std::process::id());
    let mut text = format!(
        "templates = \"templates\"\n[user]\nname = \"cli\"\ngroups = [\"ops\"]\n\
         [salt]\nendpoints = [\"{}\"]\neauth = \"pam\"\nuser = \"pushguide\"\n\
         password_env = \"PG_SERVE_TEST_PW\"\nstep_jobs = false\n\
         [ci]\ntype = \"directory\"\npath = \"artifacts\"\nurl_base = \"salt://artifacts/\"\n\
         [server]\nlisten = \"127.0.0.1:{port}\"\n\
         [store]\nurl = \"{url}\"\nschema = \"{schema}\"\nlease_ttl_secs = 5\npool_size = 4\n",
        api.url()
    );
    if let Some(f) = &password_file {
        text.push_str(&format!("password_file = \"{f}\"\n"));
    }
    if let Ok(ca) = std::env::var("PUSHGUIDE_PG_CA_FILE") {
        text.push_str(&format!("ca_file = \"{ca}\"\n"));
    }
    let config = root.join("pushguide.toml");
    std::fs::write(&config, text).unwrap();

    let out = pushguide(&config, &["user", "add", "dora", "--groups", "ops"], "pw\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let serve = Killed(
        Command::new(env!("CARGO_BIN_EXE_pushguide"))
            .arg("--config")
            .arg(&config)
            .arg("serve")
            .env("PG_SERVE_TEST_PW", "pg-serve-pw")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");
    let begun = Instant::now();
    while reqwest::get(format!("{base}/login")).await.is_err() {
        assert!(begun.elapsed() < Duration::from_secs(30), "never listened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // the form login of the user `user add` stored in PostgreSQL
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
        .body(format!("user=dora&password=pw&csrf={csrf}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let session = format!(
        "pushguide_session={}",
        cookie(&res, "pushguide_session").unwrap()
    );
    let get = |path: String| {
        let (client, session, base) = (client.clone(), session.clone(), base.clone());
        async move {
            let res = client
                .get(format!("{base}{path}"))
                .header("cookie", &session)
                .send()
                .await
                .unwrap();
            let status = res.status();
            let body = res.text().await.unwrap();
            assert_eq!(status, 200, "{path}: {body}");
            body
        }
    };
    let json = |body: String| serde_json::from_str::<Value>(&body).unwrap();
    let csrf = json(get("/api/v1/session".into()).await)["csrf"]
        .as_str()
        .unwrap()
        .to_owned();
    // publish 1.0.0 through the JSON API: queued in PostgreSQL, run by this service's worker
    let res = client
        .post(format!("{base}/api/v1/templates/shop/publish"))
        .header("cookie", &session)
        .header("x-csrf-token", &csrf)
        .header("content-type", "application/json")
        .body(r#"{"mode": {"kind": "deploy", "version": "1.0.0"}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let request = res.json::<Value>().await.unwrap()["request"]
        .as_i64()
        .unwrap();
    let begun = Instant::now();
    let deployment = loop {
        let r = json(get(format!("/api/v1/requests/{request}")).await);
        if let Some(d) = r["deployment"].as_str() {
            break d.to_owned();
        }
        assert!(r["state"] != "failed", "{r}");
        assert!(begun.elapsed() < Duration::from_secs(60), "{r}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let begun = Instant::now();
    let d = loop {
        let d = json(get(format!("/api/v1/deployments/{deployment}")).await);
        if d["outcome"].is_string() && d["live"] == false {
            break d;
        }
        assert!(begun.elapsed() < Duration::from_secs(120), "{d}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(d["outcome"], "succeeded", "{d}");
    // the pages that read the records, from PostgreSQL
    let history = json(get("/api/v1/history".into()).await);
    let rows = history.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{history}");
    assert_eq!(rows[0]["id"], deployment.as_str());
    assert_eq!(rows[0]["outcome"], "succeeded");
    let stats = json(get("/api/v1/stats".into()).await);
    assert_eq!(stats["count"], 1, "{stats}");
    let log = json(get(format!("/api/v1/deployments/{deployment}/log")).await);
    assert_eq!(log["hosts"].as_array().unwrap().len(), 2, "{log}");
    assert!(get("/history".into()).await.contains(&deployment));
    assert!(get("/stats".into()).await.contains("shop"));
    let versions = json(get("/api/v1/templates/shop".into()).await);
    for h in versions["hosts"].as_array().unwrap() {
        assert_eq!(h["version"], "1.0.0", "{versions}");
    }
    // the command line reads the same records
    let out = pushguide(&config, &["--json", "log", &deployment], "");
    assert!(
        out.status.success(),
        "{:?} {} {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let log: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(log["deployment"]["id"], deployment.as_str(), "{log}");
    let out = pushguide(&config, &["--json", "stats"], "");
    assert!(
        out.status.success(),
        "{:?} {} {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stats: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stats["count"], 1, "{stats}");
    drop(serve);
}
