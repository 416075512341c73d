//! Takeover of a dead instance's deployment, with real processes: a `pushguide serve` on a SQLite
//! store runs a slow deployment (a fake salt-api answering each call in 400 ms) and is SIGKILLed in
//! its second batch; other `serve` instances on the same store file (a 2 s lease TTL) take it over
//! by the template's `takeover` policy.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use pushguide_store::SqliteStore;
use serde_json::{json, Value};

const HOSTS: [&str; 3] = ["web-01", "web-02", "web-03"];

fn pushguide(config: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pushguide"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env("PG_TAKEOVER_TEST_PW", "takeover-test-pw")
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

/// A logged-in user of a running `pushguide serve`, over HTTP.
struct Web {
    client: reqwest::Client,
    base: String,
    session: String,
    csrf: String,
}

impl Web {
    /// Waits until the service at `base` answers, then logs in as dora.
    async fn dora(base: &str) -> Web {
        let begun = Instant::now();
        while reqwest::get(format!("{base}/login")).await.is_err() {
            assert!(begun.elapsed() < Duration::from_secs(30), "never listened");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
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

    async fn page(&self, path: &str) -> String {
        self.client
            .get(format!("{}{path}", self.base))
            .header("cookie", &self.session)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Queues a release of `version` on shop; the request id.
    async fn publish(&self, version: &str) -> i64 {
        let res = self
            .client
            .post(format!("{}/api/v1/templates/shop/publish", self.base))
            .header("cookie", &self.session)
            .header("x-csrf-token", &self.csrf)
            .header("content-type", "application/json")
            .body(json!({"mode": {"kind": "deploy", "version": version}}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 202);
        res.json::<Value>().await.unwrap()["request"]
            .as_i64()
            .unwrap()
    }

    /// Waits until request `id` has ended; its JSON.
    async fn ended(&self, id: i64, limit: Duration) -> Value {
        let begun = Instant::now();
        loop {
            let r = self.get(&format!("/api/v1/requests/{id}")).await;
            if r["state"] != "queued" && r["state"] != "running" {
                return r;
            }
            assert!(begun.elapsed() < limit, "{r}");
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

/// 3 minions behind a fake salt-api answering each call in 400 ms, shop 1.0.0 and 2.0.0 in a CI
/// directory, batches of one host, a SQLite store with a 2 s lease TTL, the deployer `dora`.
struct Site {
    dir: tempfile::TempDir,
    _api: pushguide_salt::fake::FakeSaltApi,
    config: PathBuf,
}

impl Site {
    async fn new(takeover: &str) -> Site {
        use pushguide_core::sim::SimFleet;
        use pushguide_core::Outcome;
        use sha2::Digest as _;

        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let war = b"takeover test\n";
        let sha: String = sha2::Sha256::digest(war)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        for v in ["1.0.0", "2.0.0"] {
            std::fs::create_dir_all(root.join(format!("artifacts/shop/{v}"))).unwrap();
            std::fs::write(root.join(format!("artifacts/shop/{v}/shop.war")), war).unwrap();
            std::fs::write(
                root.join(format!("artifacts/shop/{v}/manifest.json")),
                r#"[{"path": "WEB-INF/web.xml", "size": 1}]"#,
            )
            .unwrap();
        }
        let fleet = std::sync::Arc::new(
            SimFleet::new(HOSTS)
                .unwrap()
                .with_latency(Duration::from_millis(400))
                .on("*", "file.directory_exists", Outcome::ok(false))
                .on(
                    "*",
                    "cp.get_url",
                    Outcome::ok("/srv/shop/archives/shop.war"),
                )
                .on("*", "file.get_hash", Outcome::ok(sha))
                .on("*", "http.query", Outcome::ok(json!({"status": 200}))),
        );
        // 1.0.0 is unpacked on every host: the rollback target is there
        fleet.add_rule_for_arg(
            "*",
            "file.directory_exists",
            "releases/1.0.0",
            Outcome::ok(true),
        );
        let api = pushguide_salt::fake::FakeSaltApi::builder(fleet)
            .credentials("pushguide", "takeover-test-pw")
            .start()
            .await
            .unwrap();
        std::fs::create_dir_all(root.join("templates")).unwrap();
        std::fs::write(
            root.join("templates/shop.toml"),
            format!(
                "name = \"shop\"\n{takeover}[acl.deployers]\ngroups = [\"ops\"]\n[targets]\n\
                 minions = {HOSTS:?}\n[rollout]\nbatch = 1\n[project]\nkind = \"java-tomcat\"\n\
                 context = \"shop\"\nroot = \"/srv/shop\"\ncatalina_base = \"/var/lib/tomcat10\"\n\
                 service = \"tomcat10\"\n"
            ),
        )
        .unwrap();
        let config = root.join("pushguide.toml");
        std::fs::write(
            &config,
            format!(
                "templates = \"templates\"\n[store]\npath = \"state/pushguide.db\"\n\
                 lease_ttl_secs = 2\n[user]\nname = \"cli\"\n\
                 [salt]\nendpoints = [\"{}\"]\neauth = \"pam\"\nuser = \"pushguide\"\n\
                 password_env = \"PG_TAKEOVER_TEST_PW\"\nstep_jobs = false\n\
                 [ci]\ntype = \"directory\"\npath = \"artifacts\"\nurl_base = \"salt://artifacts/\"\n\
                 [server]\nlisten = \"127.0.0.1:1\"\n",
                api.url()
            ),
        )
        .unwrap();
        let out = pushguide(&config, &["user", "add", "dora", "--groups", "ops"], "pw\n");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Site {
            dir,
            _api: api,
            config,
        }
    }

    /// Starts `pushguide serve` on the store, listening on a port of its own; it and its base URL.
    fn spawn(&self, name: &str) -> (Child, String) {
        let port = free_port();
        let config = self.dir.path().join(format!("{name}.toml"));
        std::fs::write(
            &config,
            std::fs::read_to_string(&self.config)
                .unwrap()
                .replace("127.0.0.1:1\"", &format!("127.0.0.1:{port}\"")),
        )
        .unwrap();
        let log = std::fs::File::create(self.dir.path().join(format!("{name}.log"))).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_pushguide"))
            .arg("--config")
            .arg(&config)
            .arg("serve")
            .env("PG_TAKEOVER_TEST_PW", "takeover-test-pw")
            .env("PUSHGUIDE_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        (child, format!("http://127.0.0.1:{port}"))
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{name}.log"))).unwrap_or_default()
    }

    fn store(&self) -> SqliteStore {
        SqliteStore::open(self.dir.path().join("state/pushguide.db")).unwrap()
    }

    /// Releases 1.0.0 everywhere through `web`, then 2.0.0 until its second batch (web-02) runs;
    /// the 2.0.0 request and deployment.
    async fn release_two_into_batch_two(&self, web: &Web) -> (i64, String) {
        let first = web.publish("1.0.0").await;
        let r = web.ended(first, Duration::from_secs(60)).await;
        assert_eq!(r["state"], "done", "{r}");
        assert_eq!(web.versions().await, ["1.0.0"; 3]);
        let request = web.publish("2.0.0").await;
        let begun = Instant::now();
        loop {
            let r = web.get(&format!("/api/v1/requests/{request}")).await;
            if let Some(d) = r["deployment"].as_str() {
                let g = web.get(&format!("/api/v1/deployments/{d}")).await;
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

fn kill(child: &mut Child) {
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Waits until deployment `id` shows a takeover satisfying `done`; the takeover's JSON.
async fn takeover(web: &Web, id: &str, done: fn(&Value) -> bool, limit: Duration) -> Value {
    let begun = Instant::now();
    loop {
        let g = web.get(&format!("/api/v1/deployments/{id}")).await;
        if done(&g["takeover"]) {
            assert_eq!(g["outcome"], "interrupted", "{g}");
            return g["takeover"].clone();
        }
        assert!(begun.elapsed() < limit, "{g}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn claimed(t: &Value) -> bool {
    t["request_state"] == "running" || t["request_state"] == "done" || t["deployment"].is_string()
}

/// Policy `rollback`, with two standby instances recovering the same dead deployment: exactly one
/// takeover request, run as `takeover`, undoing 2.0.0 on the hosts the dead deployment touched
/// (web-01 finished, web-02 half done): every host ends on 1.0.0, web-03 was left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_takeover_by_one_of_two_instances_rolls_the_touched_hosts_back() {
    let site = Site::new("takeover = \"rollback\"\n").await;
    let (mut a, base_a) = site.spawn("a");
    let dora = Web::dora(&base_a).await;
    let (request, deployment) = site.release_two_into_batch_two(&dora).await;
    // two standby instances on the same store; the template is busy, so they claim nothing
    let (mut b, base_b) = site.spawn("b");
    let (mut c, base_c) = site.spawn("c");
    let dora_b = Web::dora(&base_b).await;
    Web::dora(&base_c).await;
    let r = dora_b.get(&format!("/api/v1/requests/{request}")).await;
    assert_eq!(r["state"], "running", "{r}");
    kill(&mut a);
    let killed = Instant::now();
    let t = takeover(&dora_b, &deployment, claimed, Duration::from_secs(60)).await;
    eprintln!(
        "rollback takeover request claimed {:?} after the SIGKILL (lease TTL 2 s, recovery every 5 s)",
        killed.elapsed()
    );
    // the dead process's last heartbeat is at most TTL/3 old at the kill: it is dead 2 s later at
    // most, found by the next recovery round (every 5 s), and the request is claimed at once
    assert!(
        killed.elapsed() < Duration::from_secs(9),
        "{:?}",
        killed.elapsed()
    );
    assert_eq!(t["policy"], "rollback", "{t}");
    let id = t["request"].as_i64().unwrap();
    let r = dora_b.ended(id, Duration::from_secs(60)).await;
    assert_eq!(r["state"], "done", "{r}");
    assert_eq!(r["user"], "takeover", "{r}");
    assert_eq!(
        r["request"],
        json!({"mode": {"kind": "undo", "version": "2.0.0"}, "dry_run": false, "batch": null,
               "hosts": ["web-01", "web-02"]}),
        "{r}"
    );
    assert_eq!(dora_b.versions().await, ["1.0.0"; 3]);
    // the takeover's deployment ran web-01 and web-02 only
    let undo = r["deployment"].as_str().unwrap();
    let g = dora_b.get(&format!("/api/v1/deployments/{undo}")).await;
    assert_eq!(g["user"], "takeover", "{g}");
    let hosts: Vec<&str> = g["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["host"].as_str().unwrap())
        .collect();
    assert_eq!(hosts, ["web-01", "web-02"], "{g}");
    // the page of the interrupted deployment names the takeover and its deployment
    let page = dora_b.page(&format!("/deployments/{deployment}")).await;
    assert!(
        page.contains("id=\"takeover\"") && page.contains(&format!("/deployments/{undo}")),
        "{page}"
    );
    // let both instances run several recovery rounds, then count
    tokio::time::sleep(Duration::from_secs(6)).await;
    kill(&mut b);
    kill(&mut c);
    let store = site.store();
    let takeover_requests: Vec<_> = (1..=id + 5)
        .filter_map(|i| store.publish_request(i).unwrap())
        .filter(|q| q.user == "takeover")
        .collect();
    assert_eq!(takeover_requests.len(), 1, "{takeover_requests:?}");
    let audit = store.audit_log(None, Some("takeover"), 10).unwrap();
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0].target, deployment);
    assert!(
        audit[0]
            .detail
            .starts_with(&format!("rollback: request {id}")),
        "{audit:?}"
    );
    let logs = format!("{}{}", site.log("b"), site.log("c"));
    assert_eq!(
        logs.matches("took over an interrupted deployment").count(),
        1,
        "{logs}"
    );
}

/// Policy `resume`, the dead deployment marked by `pushguide recover` (a process that marks and
/// takes nothing over, as an instance dying between the two would): the next `serve` takes it over
/// and releases 2.0.0 on the batches not completed (web-02, web-03); every host ends on 2.0.0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_takeover_continues_the_release_on_the_batches_not_completed() {
    let site = Site::new("takeover = \"resume\"\n").await;
    let (mut a, base_a) = site.spawn("a");
    let dora = Web::dora(&base_a).await;
    let (_, deployment) = site.release_two_into_batch_two(&dora).await;
    kill(&mut a);
    // marked by another process that does not take over
    let store = site.store();
    let begun = Instant::now();
    loop {
        let out = pushguide(&site.config, &["recover"], "");
        let outcome = store.deployment(&deployment).unwrap().unwrap().outcome;
        if outcome.as_deref() == Some("interrupted") {
            break;
        }
        assert!(
            begun.elapsed() < Duration::from_secs(30),
            "{outcome:?} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(store.takeover(&deployment).unwrap(), None);
    let (mut b, base_b) = site.spawn("b");
    let dora = Web::dora(&base_b).await;
    let t = takeover(
        &dora,
        &deployment,
        |t| t.is_object(),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(t["policy"], "resume", "{t}");
    let id = t["request"].as_i64().unwrap();
    let r = dora.ended(id, Duration::from_secs(60)).await;
    assert_eq!(r["state"], "done", "{r}");
    assert_eq!(r["request"]["hosts"], json!(["web-02", "web-03"]), "{r}");
    assert_eq!(
        r["request"]["mode"],
        json!({"kind": "deploy", "version": "2.0.0"})
    );
    assert_eq!(dora.versions().await, ["2.0.0"; 3]);
    kill(&mut b);
}

/// Policy `mark`: the takeover is recorded (who, when) and nothing is queued; the hosts stay as the
/// dead deployment left them (web-01 on 2.0.0, the others on 1.0.0).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mark_takeover_queues_nothing() {
    let site = Site::new("takeover = \"mark\"\n").await;
    let (mut a, base_a) = site.spawn("a");
    let dora = Web::dora(&base_a).await;
    let (request, deployment) = site.release_two_into_batch_two(&dora).await;
    let (mut b, base_b) = site.spawn("b");
    let dora = Web::dora(&base_b).await;
    kill(&mut a);
    let t = takeover(
        &dora,
        &deployment,
        |t| t.is_object(),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(t["policy"], "mark", "{t}");
    assert_eq!(t["request"], Value::Null, "{t}");
    let r = dora.ended(request, Duration::from_secs(30)).await;
    assert_eq!(r["state"], "interrupted", "{r}");
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(dora.versions().await, ["2.0.0", "1.0.0", "1.0.0"]);
    kill(&mut b);
    let store = site.store();
    assert!(store.publish_queue(None).unwrap().is_empty());
    assert!(store.publish_request(request + 1).unwrap().is_none());
    let audit = store.audit_log(None, Some("takeover"), 10).unwrap();
    assert_eq!(audit.len(), 1, "{audit:?}");
}
