//! Three `pushguide serve` instances on one store, as real processes, each behind a fake salt-api of
//! its own (one simulated fleet behind the three, so each instance's salt requests are counted
//! apart): 30 publish requests for 5 templates sent round-robin to the instances run exactly once
//! and never overlap per template; a SIGKILLed instance's deployment is taken over; a SIGSTOPped one
//! writes nothing more after SIGCONT; a database restart mid-deployment leaves a consistent journal.
//!
//! Stores: the 30-request test and the SIGKILL tests run on one SQLite file (always) and on
//! PostgreSQL; the SIGSTOP and restart tests on PostgreSQL only (the SQLite journal is not fenced).
//! The SIGKILL tests come in two policies: `mark` (no rollback policy: the deployment is marked
//! interrupted and the next queued request runs elsewhere) and `rollback` (the takeover queues an
//! undo of the touched hosts, shown as `takeover` in the deployment's JSON).
//! PostgreSQL comes from `PUSHGUIDE_PG_URL` (and `PUSHGUIDE_PG_PASSWORD_FILE`,
//! `PUSHGUIDE_PG_CA_FILE`), as printed by `scripts/pg-lab env`; without it those tests print a
//! `SKIPPED` line, and fail with `PUSHGUIDE_REQUIRE_PG=1`. Each test runs in a schema of its own.
//! The restart test restarts the server in `PUSHGUIDE_PG_LAB_DIR` with `pg_ctl`: point it at a
//! private lab (`PUSHGUIDE_PG_LAB_DIR=/tmp/pg-multi PUSHGUIDE_PG_PORT=54351 scripts/pg-lab up`).
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use pushguide_core::sim::SimFleet;
use pushguide_core::{EventKind, Outcome};
use pushguide_salt::fake::FakeSaltApi;
use serde_json::{json, Value};

/// The salt-api password of the fakes, handed to the instances in [`SALT_ENV`].
const SALT_PASSWORD: &str = "multi-instance-salt-pw";
const SALT_ENV: &str = "PG_MULTI_TEST_SALT_PW";
/// How often an idle worker of the service looks at the queue unwoken (pushguide-server's runner).
const POLL: Duration = Duration::from_secs(2);
/// How often a service looks for deployments of dead processes (pushguide-server's runner).
const RECOVER_EVERY: Duration = Duration::from_secs(5);
/// The SQLite store's lease TTL in these tests (`[store] lease_ttl_secs` beside `path`); `None`:
/// the store's default.
const SQLITE_TTL_SECS: Option<f64> = Some(3.0);
/// The SQLite store's default lease TTL.
const SQLITE_DEFAULT_TTL: Duration = Duration::from_secs(30);

/// The SQLite store's lease TTL in these tests.
fn sqlite_ttl() -> Duration {
    SQLITE_TTL_SECS.map_or(SQLITE_DEFAULT_TTL, Duration::from_secs_f64)
}
/// How many instances.
const INSTANCES: usize = 3;

/// The tests of this file run one at a time: each starts three services, and their timings
/// (lease TTLs, takeover) should not depend on what runs beside them.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Where the instances keep their state.
#[derive(Clone, Debug)]
enum StoreKind {
    /// One SQLite file beside the configs.
    Sqlite,
    /// A schema of its own on the test database.
    Pg(Pg),
}

#[derive(Clone, Debug)]
struct Pg {
    url: String,
    password_file: Option<String>,
    ca_file: Option<String>,
    schema: String,
    /// The lease TTL, seconds.
    ttl: f64,
}

/// The test database, if any (`SKIPPED` without one, a failure with `PUSHGUIDE_REQUIRE_PG=1`).
fn postgres(test: &str, ttl: f64) -> Option<StoreKind> {
    let url = std::env::var("PUSHGUIDE_PG_URL")
        .ok()
        .filter(|u| !u.is_empty());
    let Some(url) = url else {
        assert!(
            std::env::var("PUSHGUIDE_REQUIRE_PG").as_deref() != Ok("1"),
            "PUSHGUIDE_REQUIRE_PG=1 but PUSHGUIDE_PG_URL is not set (scripts/pg-lab up)"
        );
        eprintln!("SKIPPED {test}: no PostgreSQL (set PUSHGUIDE_PG_URL, see scripts/pg-lab)");
        return None;
    };
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    Some(StoreKind::Pg(Pg {
        url,
        password_file: std::env::var("PUSHGUIDE_PG_PASSWORD_FILE").ok(),
        ca_file: std::env::var("PUSHGUIDE_PG_CA_FILE").ok(),
        schema: format!("multi_{test}_{}_{nanos:x}", std::process::id()),
        ttl,
    }))
}

/// What a site is made of.
#[derive(Clone, Debug)]
struct Options {
    store: StoreKind,
    /// How many templates (`app-1` …), each over 3 minions of its own, one host a batch.
    templates: usize,
    /// Versions each template can deploy.
    versions: Vec<String>,
    /// How long the fleet takes for each salt request.
    latency: Duration,
    /// Whether the templates have a rollback policy (`previous`).
    rollback: bool,
}

/// A process of `pushguide serve`, killed (SIGKILL) when dropped, whatever state it is in.
struct Instance {
    child: std::sync::Mutex<Option<Child>>,
    pid: u32,
    base: String,
    log: PathBuf,
}

impl Instance {
    fn signal(&self, signal: &str) {
        let st = Command::new("kill")
            .args([signal, &self.pid.to_string()])
            .status()
            .unwrap();
        assert!(st.success(), "kill {signal} {}", self.pid);
    }

    fn exited(&self) -> Option<std::process::ExitStatus> {
        self.child
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_mut()
            .and_then(|c| c.try_wait().unwrap())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let child = self
            .child
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(mut c) = child {
            // SIGKILL ends a stopped process too
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One row of the store's journal of deployments.
#[derive(Clone, Debug)]
struct Dep {
    id: String,
    template: String,
    version: String,
    started: SystemTime,
    ended: Option<SystemTime>,
    outcome: Option<String>,
    /// The pid of the process that recorded its start (from the store instance's id).
    pid: Option<u32>,
    /// Events recorded, as the record counts them.
    events: u64,
}

/// One publish request as the store keeps it.
#[derive(Clone, Debug)]
struct Req {
    state: String,
    deployment: Option<String>,
    error: Option<String>,
}

/// `host:pid:…`: the pid.
fn pid_of(owner: &str) -> Option<u32> {
    owner.split(':').nth(1)?.parse().ok()
}

/// The test's own view of the instances' store.
enum Inspect {
    Sqlite {
        store: pushguide_store::SqliteStore,
        path: PathBuf,
    },
    Pg(pushguide_postgres::PgStore),
}

impl Inspect {
    async fn open(kind: &StoreKind, sqlite: &Path) -> Inspect {
        match kind {
            StoreKind::Sqlite => Inspect::Sqlite {
                store: pushguide_store::SqliteStore::open(sqlite).unwrap(),
                path: sqlite.to_path_buf(),
            },
            StoreKind::Pg(pg) => {
                let mut cfg = pushguide_postgres::PgConfig::from_url(&pg.url)
                    .unwrap()
                    .schema(pg.schema.clone())
                    .unwrap();
                if let Some(f) = &pg.password_file {
                    cfg = cfg.password_file(f);
                }
                if let Some(ca) = &pg.ca_file {
                    cfg = cfg.ca_file(ca);
                }
                Inspect::Pg(pushguide_postgres::PgStore::connect(&cfg).await.unwrap())
            }
        }
    }

    /// Every deployment of `templates`, oldest first.
    async fn deployments(&self, templates: &[String]) -> Vec<Dep> {
        let mut out = Vec::new();
        match self {
            Inspect::Sqlite { path, .. } => {
                let conn = rusqlite::Connection::open(path).unwrap();
                conn.busy_timeout(Duration::from_secs(10)).unwrap();
                let mut stmt = conn
                    .prepare(
                        "SELECT id, template, version, started_ms, ended_ms, outcome, owner, events
                         FROM deployments ORDER BY started_ms, id",
                    )
                    .unwrap();
                let ms = |v: i64| SystemTime::UNIX_EPOCH + Duration::from_millis(v as u64);
                let rows = stmt
                    .query_map([], |r| {
                        Ok(Dep {
                            id: r.get(0)?,
                            template: r.get(1)?,
                            version: r.get(2)?,
                            started: ms(r.get(3)?),
                            ended: r.get::<_, Option<i64>>(4)?.map(ms),
                            outcome: r.get(5)?,
                            pid: pid_of(&r.get::<_, String>(6)?),
                            events: r.get::<_, i64>(7)? as u64,
                        })
                    })
                    .unwrap();
                for d in rows {
                    let d = d.unwrap();
                    if templates.contains(&d.template) {
                        out.push(d);
                    }
                }
            }
            Inspect::Pg(store) => {
                for t in templates {
                    for id in store.deployments(t, 10_000).await.unwrap() {
                        let r = store.deployment(&id).await.unwrap().unwrap();
                        out.push(Dep {
                            id: r.id,
                            template: r.template,
                            version: r.version,
                            started: r.started,
                            ended: r.ended,
                            outcome: r.outcome,
                            pid: pid_of(&r.owner),
                            events: r.events,
                        });
                    }
                }
                out.sort_by(|a, b| a.started.cmp(&b.started).then(a.id.cmp(&b.id)));
            }
        }
        out
    }

    async fn deployment(&self, templates: &[String], id: &str) -> Option<Dep> {
        self.deployments(templates)
            .await
            .into_iter()
            .find(|d| d.id == id)
    }

    /// `(host, version)` of every host of `template`.
    async fn fleet(&self, template: &str) -> Vec<(String, Option<String>)> {
        match self {
            Inspect::Sqlite { store, .. } => store
                .fleet(template)
                .unwrap()
                .into_iter()
                .map(|h| (h.host, h.version))
                .collect(),
            Inspect::Pg(store) => store
                .fleet(template)
                .await
                .unwrap()
                .into_iter()
                .map(|h| (h.host, h.version))
                .collect(),
        }
    }

    /// The holder and fencing token of `template`'s live lease.
    async fn lease(&self, template: &str) -> Option<(String, u64)> {
        match self {
            Inspect::Sqlite { store, .. } => {
                store.lease(template).unwrap().map(|l| (l.holder, l.token))
            }
            Inspect::Pg(store) => store
                .lease(template)
                .await
                .unwrap()
                .map(|l| (l.holder, l.token)),
        }
    }

    async fn request(&self, id: i64) -> Req {
        match self {
            Inspect::Sqlite { store, .. } => {
                let q = store.publish_request(id).unwrap().unwrap();
                Req {
                    state: q.state,
                    deployment: q.deployment,
                    error: q.error,
                }
            }
            Inspect::Pg(store) => {
                let q = store.publish_request(id).await.unwrap().unwrap();
                Req {
                    state: q.state,
                    deployment: q.deployment,
                    error: q.error,
                }
            }
        }
    }

    /// The journal of deployment `id` (PostgreSQL only: the fencing checks read it).
    async fn events(&self, id: &str) -> Vec<pushguide_core::Event> {
        match self {
            Inspect::Sqlite { .. } => panic!("the SQLite journal is not read by these tests"),
            Inspect::Pg(store) => store.events(id).await.unwrap(),
        }
    }
}

/// The versions a template of a site can deploy: `1.0.0` to `1.<n-1>.0`.
fn versions(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("1.{i}.0")).collect()
}

/// A WAR whose bytes do not depend on the version (one checksum for the fleet to answer).
fn write_war(path: &Path) -> String {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let file = std::fs::File::create(path).unwrap();
    let mut zip = zip::ZipWriter::new(file);
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.add_directory("WEB-INF/", opts).unwrap();
    zip.start_file("WEB-INF/web.xml", opts).unwrap();
    zip.write_all(b"<web-app/>\n").unwrap();
    zip.start_file("index.jsp", opts).unwrap();
    zip.write_all(b"multi-instance test\n").unwrap();
    zip.finish().unwrap();
    support::sha256(path)
}

fn template_text(name: &str, hosts: &[String], rollback: bool) -> String {
    let hosts: Vec<String> = hosts.iter().map(|h| format!("\"{h}\"")).collect();
    let mut text = format!(
        "name = \"{name}\"\n[acl.deployers]\ngroups = [\"ops\"]\n[targets]\nminions = [{}]\n\
         [rollout]\nbatch = 1\n[failure]\nmax_failed = 0\n\
         [health]\nurl = \"http://127.0.0.1:8080/app/health\"\nretries = 0\ninterval_secs = 1\n",
        hosts.join(", ")
    );
    if rollback {
        text.push_str("[rollback]\npolicy = \"previous\"\n");
    }
    text.push_str(
        "[project]\nkind = \"java-tomcat\"\ncontext = \"app\"\nroot = \"/srv/app\"\n\
         catalina_base = \"/var/lib/tomcat10\"\nservice = \"tomcat10\"\n",
    );
    text
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `user add dora` (group ops) and `token add dora` through the CLI; the token.
fn cli_account(config: &Path) -> String {
    let env = [(SALT_ENV, SALT_PASSWORD)];
    let r = support::run_with_stdin(
        config,
        &["user", "add", "dora", "--groups", "ops"],
        &env,
        "dora-pw\n",
    );
    assert_eq!(r.code, 0, "user add: {}", r.stderr);
    // not through support::run: it would print the token
    let out = Command::new(support::BIN)
        .arg("--config")
        .arg(config)
        .args(["--json", "token", "add", "dora", "--label", "multi"])
        .env(SALT_ENV, SALT_PASSWORD)
        .env_remove("PUSHGUIDE_CONFIG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "token add: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["token"].as_str().unwrap().to_owned()
}

/// The user dora (group ops) and an API token of hers, written through the PostgreSQL store; the
/// token.
async fn pg_account(store: &pushguide_postgres::PgStore) -> String {
    use pushguide_server::tokens;
    use pushguide_store::AccountStore;
    let hash = pushguide_server::auth::hash_password("dora-pw").unwrap();
    let now = SystemTime::now();
    store
        .put_user("dora", &hash, &["ops".to_owned()], false, now)
        .await
        .unwrap();
    let new = tokens::new_api_token().unwrap();
    store
        .create_api_token(
            &new.id,
            &tokens::token_sha256(&new.token),
            "dora",
            "multi",
            now,
            None,
        )
        .await
        .unwrap();
    new.token
}

/// Three services on one store, their fake salt-apis, and an API token of `dora` (a deployer).
struct Site {
    /// The services; dropped (killed) before the fakes.
    instances: Vec<Instance>,
    fakes: Vec<FakeSaltApi>,
    fleet: Arc<SimFleet>,
    store: Inspect,
    templates: Vec<String>,
    token: String,
    http: reqwest::Client,
    kind: StoreKind,
    _dir: tempfile::TempDir,
    /// Released last.
    _serial: tokio::sync::MutexGuard<'static, ()>,
}

impl Site {
    async fn start(o: Options) -> Site {
        let serial = SERIAL.lock().await;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let templates: Vec<String> = (1..=o.templates).map(|n| format!("app-{n}")).collect();
        let mut minions = Vec::new();
        let mut sha = String::new();
        for (n, t) in templates.iter().enumerate() {
            let hosts: Vec<String> = (1..=3).map(|h| format!("a{}-{h:02}", n + 1)).collect();
            support::write(
                &root.join(format!("templates/{t}.toml")),
                &template_text(t, &hosts, o.rollback),
            );
            minions.extend(hosts);
            for v in &o.versions {
                sha = write_war(&root.join(format!("artifacts/{t}/{v}/app.war")));
            }
        }
        let fleet = Arc::new(
            SimFleet::new(minions.iter().map(String::as_str))
                .unwrap()
                .with_latency(o.latency)
                .on("*", "file.directory_exists", Outcome::ok(false))
                .on("*", "cp.get_url", Outcome::ok("/srv/app/archives/app.war"))
                .on(
                    "*",
                    "archive.unzip",
                    Outcome::ok(json!(["WEB-INF/web.xml", "index.jsp"])),
                )
                .on("*", "file.readdir", Outcome::ok(json!([".", ".."])))
                .on("*", "http.query", Outcome::ok(json!({ "status": 200 })))
                .on("*", "file.get_hash", Outcome::ok(sha.as_str())),
        );
        // 1.0.0 stays unpacked on every host once deployed: a rollback to it finds its release
        fleet.add_rule_for_arg(
            "*",
            "file.directory_exists",
            "releases/1.0.0",
            Outcome::ok(true),
        );
        let mut fakes = Vec::new();
        for _ in 0..INSTANCES {
            fakes.push(
                FakeSaltApi::builder(fleet.clone())
                    .credentials("pushguide", SALT_PASSWORD)
                    .start()
                    .await
                    .unwrap(),
            );
        }
        let mut configs = Vec::new();
        let mut bases = Vec::new();
        for (n, fake) in fakes.iter().enumerate() {
            let port = free_port();
            let mut text = String::new();
            if matches!(o.store, StoreKind::Sqlite) && SQLITE_TTL_SECS.is_none() {
                text.push_str("store = \"state/pushguide.db\"\n");
            }
            text.push_str(&format!(
                "templates = \"templates\"\n\
                 [user]\nname = \"cli\"\ngroups = [\"ops\"]\n\
                 [salt]\nendpoints = [\"{}\"]\neauth = \"{}\"\nuser = \"pushguide\"\n\
                 password_env = \"{SALT_ENV}\"\njob_timeout = 30\nstep_jobs = false\n\
                 [ci]\ntype = \"directory\"\npath = \"artifacts\"\n\
                 url_base = \"http://artifacts.example.com/\"\n\
                 [monitor]\ntimeout_secs = 5\n\
                 [server]\nlisten = \"127.0.0.1:{port}\"\nworkers = 2\nmonitor_interval_secs = 0\n",
                fake.url(),
                fake.settings().eauth,
            ));
            if let (StoreKind::Sqlite, Some(ttl)) = (&o.store, SQLITE_TTL_SECS) {
                text.push_str(&format!(
                    "[store]\npath = \"state/pushguide.db\"\nlease_ttl_secs = {ttl:?}\n"
                ));
            }
            if let StoreKind::Pg(pg) = &o.store {
                text.push_str(&format!(
                    "[store]\nurl = \"{}\"\nschema = \"{}\"\nlease_ttl_secs = {}\npool_size = 4\n",
                    pg.url, pg.schema, pg.ttl
                ));
                if let Some(f) = &pg.password_file {
                    text.push_str(&format!("password_file = \"{f}\"\n"));
                }
                if let Some(ca) = &pg.ca_file {
                    text.push_str(&format!("ca_file = \"{ca}\"\n"));
                }
            }
            let config = root.join(format!("instance-{n}.toml"));
            support::write(&config, &text);
            configs.push(config);
            bases.push(format!("http://127.0.0.1:{port}"));
        }
        let (token, store) = match &o.store {
            StoreKind::Sqlite => {
                let token = cli_account(&configs[0]);
                let store = Inspect::open(&o.store, &root.join("state/pushguide.db")).await;
                (token, store)
            }
            // the accounts are written through the store: the CLI's `user add` and `token add`
            // are not what these tests are about
            StoreKind::Pg(_) => {
                let store = Inspect::open(&o.store, Path::new("")).await;
                let Inspect::Pg(pg) = &store else {
                    unreachable!()
                };
                (pg_account(pg).await, store)
            }
        };

        let mut instances = Vec::new();
        for (n, (config, base)) in configs.iter().zip(bases).enumerate() {
            let log = root.join(format!("instance-{n}.log"));
            let child = Command::new(support::BIN)
                .arg("--config")
                .arg(config)
                .arg("serve")
                .env(SALT_ENV, SALT_PASSWORD)
                .env("PUSHGUIDE_LOG", "info")
                .env("NO_COLOR", "1")
                .env_remove("PUSHGUIDE_CONFIG")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .unwrap();
            instances.push(Instance {
                pid: child.id(),
                child: std::sync::Mutex::new(Some(child)),
                base,
                log,
            });
        }
        let site = Site {
            instances,
            fakes,
            fleet,
            store,
            templates,
            token,
            http: reqwest::Client::new(),
            kind: o.store,
            _dir: dir,
            _serial: serial,
        };
        for n in 0..INSTANCES {
            site.ready(n).await;
        }
        site
    }

    /// Waits until instance `n` answers with every template.
    async fn ready(&self, n: usize) {
        let begun = Instant::now();
        loop {
            let res = self
                .http
                .get(format!("{}/api/v1/templates", self.instances[n].base))
                .bearer_auth(&self.token)
                .send()
                .await;
            if let Ok(r) = res {
                let status = r.status();
                let v: Value = r.json().await.unwrap_or(Value::Null);
                if status == 200 && v.as_array().map(Vec::len) == Some(self.templates.len()) {
                    return;
                }
                assert!(status == 200, "instance {n}: {status} {v}");
            }
            if let Some(st) = self.instances[n].exited() {
                panic!("instance {n} exited ({st}): {}", self.instances[n].log());
            }
            assert!(
                begun.elapsed() < Duration::from_secs(60),
                "instance {n} never answered: {}",
                self.instances[n].log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `GET path` on instance `n`: status and JSON.
    async fn get(&self, n: usize, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.instances[n].base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap_or_else(|e| panic!("instance {n} {path}: {e}"));
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Queues a deploy of `version` on `template` through instance `n`; the request's id.
    async fn publish(&self, n: usize, template: &str, version: &str) -> i64 {
        let r = self
            .http
            .post(format!(
                "{}/api/v1/templates/{template}/publish",
                self.instances[n].base
            ))
            .bearer_auth(&self.token)
            .json(&json!({"mode": {"kind": "deploy", "version": version}}))
            .send()
            .await
            .unwrap();
        let status = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        assert_eq!(status, 202, "publish {template} {version} on {n}: {v}");
        v["request"].as_i64().unwrap()
    }

    /// Which instance runs the process `pid`.
    fn instance_of(&self, pid: Option<u32>) -> Option<usize> {
        self.instances.iter().position(|i| Some(i.pid) == pid)
    }

    /// Waits until request `id` has a deployment whose second host (of three, one a batch) is
    /// being touched; the deployment's record.
    async fn reach_batch_two(&self, id: i64) -> Dep {
        let begun = Instant::now();
        loop {
            let q = self.store.request(id).await;
            if let Some(d) = &q.deployment {
                let (_, g) = self.get(0, &format!("/api/v1/deployments/{d}")).await;
                if g["hosts"][1]["stages"][0]
                    .as_str()
                    .is_some_and(|s| s != "pending")
                {
                    return self.store.deployment(&self.templates, d).await.unwrap();
                }
            }
            assert!(
                q.state == "queued" || q.state == "running",
                "request {id} ended early: {q:?}"
            );
            assert!(
                begun.elapsed() < Duration::from_secs(60),
                "request {id} never reached batch two: {q:?}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits until request `id` has ended (any state but queued or running); its row.
    async fn ended(&self, id: i64, limit: Duration) -> Req {
        let begun = Instant::now();
        loop {
            let q = self.store.request(id).await;
            if q.state != "queued" && q.state != "running" {
                return q;
            }
            assert!(begun.elapsed() < limit, "request {id} never ended: {q:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn logs(&self) -> String {
        self.instances
            .iter()
            .enumerate()
            .map(|(n, i)| format!("--- instance {n} (pid {}) ---\n{}", i.pid, i.log()))
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// 30 requests, 5 templates, 3 instances

async fn thirty_requests_round_robin(kind: StoreKind) {
    const TEMPLATES: usize = 5;
    const PER_TEMPLATE: usize = 6;
    let site = Site::start(Options {
        store: kind,
        templates: TEMPLATES,
        versions: versions(PER_TEMPLATE),
        // a deployment (3 hosts, one a batch) lasts several poll intervals: the five templates'
        // first requests all run at once, on at least three instances of two workers each
        latency: Duration::from_millis(120),
        rollback: false,
    })
    .await;
    let begun = Instant::now();
    // request i: template i % 5, version 1.(i / 5).0, through instance i % 3
    let mut sent: Vec<(i64, usize, String)> = Vec::new();
    for i in 0..TEMPLATES * PER_TEMPLATE {
        let (t, v) = (i % TEMPLATES, format!("1.{}.0", i / TEMPLATES));
        let id = site.publish(i % INSTANCES, &site.templates[t], &v).await;
        sent.push((id, t, v));
    }
    let ids: BTreeSet<i64> = sent.iter().map(|s| s.0).collect();
    assert_eq!(ids.len(), sent.len(), "every request has an id of its own");
    // wait for every request to end, asking the instances in turn over HTTP
    let mut rows: BTreeMap<i64, Value> = BTreeMap::new();
    loop {
        rows.clear();
        for (k, (id, _, _)) in sent.iter().enumerate() {
            let (status, r) = site
                .get(k % INSTANCES, &format!("/api/v1/requests/{id}"))
                .await;
            assert_eq!(status, 200, "{r}");
            rows.insert(*id, r);
        }
        let open = rows
            .values()
            .filter(|r| r["state"] == "queued" || r["state"] == "running")
            .count();
        if open == 0 {
            break;
        }
        assert!(
            begun.elapsed() < Duration::from_secs(240),
            "{open} requests still open: {:?}\n{}",
            rows.values()
                .map(|r| (&r["id"], &r["state"]))
                .collect::<Vec<_>>(),
            site.logs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let wall = begun.elapsed();
    // every request ran, once, to success
    let mut by_deployment: BTreeMap<String, (usize, String)> = BTreeMap::new();
    for (id, t, v) in &sent {
        let r = &rows[id];
        assert_eq!(r["state"], "done", "{r}");
        let d = r["deployment"].as_str().unwrap_or_else(|| panic!("{r}"));
        assert!(
            by_deployment
                .insert(d.to_owned(), (*t, v.clone()))
                .is_none(),
            "two requests share deployment {d}"
        );
    }
    let deps = site.store.deployments(&site.templates).await;
    assert_eq!(
        deps.len(),
        sent.len(),
        "one deployment per request, none twice: {deps:#?}"
    );
    for d in &deps {
        let (t, v) = by_deployment
            .get(&d.id)
            .unwrap_or_else(|| panic!("a deployment no request started: {d:?}"));
        assert_eq!((&d.template, &d.version), (&site.templates[*t], v), "{d:?}");
        assert_eq!(d.outcome.as_deref(), Some("succeeded"), "{d:?}");
        assert!(d.ended.is_some(), "{d:?}");
    }
    // per template: one at a time, in the order queued
    let mut longest = Duration::ZERO;
    let mut closest = Duration::MAX;
    for t in &site.templates {
        let mine: Vec<&Dep> = deps.iter().filter(|d| &d.template == t).collect();
        let order: Vec<&str> = mine.iter().map(|d| d.version.as_str()).collect();
        assert_eq!(order, versions(PER_TEMPLATE), "{t} ran out of order");
        for w in mine.windows(2) {
            let (a, b) = (w[0], w[1]);
            let end = a.ended.unwrap();
            assert!(
                end <= b.started,
                "{t}: {} started {:?} before {} ended",
                b.id,
                end.duration_since(b.started).unwrap_or_default(),
                a.id
            );
            closest = closest.min(b.started.duration_since(end).unwrap());
        }
        for d in &mine {
            longest = longest.max(d.ended.unwrap().duration_since(d.started).unwrap());
        }
        let fleet = site.store.fleet(t).await;
        assert_eq!(fleet.len(), 3, "{t}: {fleet:?}");
        for (h, v) in &fleet {
            assert_eq!(v.as_deref(), Some("1.5.0"), "{t} {h}: {fleet:?}");
        }
    }
    // the queue spreads the work: at most 2 workers an instance, and the 5 templates' first
    // deployments outlast every idle worker's poll
    let mut per_instance = [0usize; INSTANCES];
    for d in &deps {
        let n = site
            .instance_of(d.pid)
            .unwrap_or_else(|| panic!("run by no instance: {d:?}"));
        per_instance[n] += 1;
    }
    eprintln!(
        "{:?}: 30 requests in {:.1} s; deployments per instance {per_instance:?}; longest \
         deployment {:.2} s; closest start after the previous end {:.1} ms",
        site.kind,
        wall.as_secs_f64(),
        longest.as_secs_f64(),
        closest.as_secs_f64() * 1000.0
    );
    assert!(
        longest > POLL,
        "deployments too short to test the spread: {longest:?}"
    );
    assert!(
        per_instance.iter().all(|n| *n > 0),
        "an instance ran nothing: {per_instance:?}"
    );
    // every instance's own salt-api saw its deployments (and only they touched hosts)
    for (n, f) in site.fakes.iter().enumerate() {
        let total = f.request_count().total();
        assert!(total > 0, "instance {n} sent no salt request");
    }
    assert!(!site.fleet.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_thirty_requests_round_robin_run_once_in_order_without_overlap() {
    thirty_requests_round_robin(StoreKind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_thirty_requests_round_robin_run_once_in_order_without_overlap() {
    let Some(kind) = postgres("thirty", 2.0) else {
        return;
    };
    thirty_requests_round_robin(kind).await;
}

// ---------------------------------------------------------------------------------------------
// SIGKILL of the instance running a deployment

/// A deployment of `app-1` runs on some instance; a second request waits behind it; SIGKILL the
/// instance running it. Another instance marks it interrupted and claims the next request; the time
/// from the kill is measured against `bound`.
async fn killed_instance_is_taken_over(kind: StoreKind, ttl: Duration, bound: Duration) {
    let site = Site::start(Options {
        store: kind,
        templates: 1,
        versions: versions(2),
        latency: Duration::from_millis(250),
        rollback: false,
    })
    .await;
    let t = site.templates[0].clone();
    let first = site.publish(0, &t, "1.0.0").await;
    let a = site.reach_batch_two(first).await;
    let victim = site.instance_of(a.pid).unwrap();
    let other = (victim + 1) % INSTANCES;
    let second = site.publish(other, &t, "1.1.0").await;
    site.instances[victim].signal("-KILL");
    let killed = Instant::now();
    let (mut marked, mut claimed) = (None, None);
    let mut b = None;
    while marked.is_none() || claimed.is_none() {
        if marked.is_none() {
            let d = site.store.deployment(&site.templates, &a.id).await.unwrap();
            if d.ended.is_some() {
                assert_eq!(d.outcome.as_deref(), Some("interrupted"), "{d:?}");
                marked = Some(killed.elapsed());
            }
        }
        if claimed.is_none() {
            let q = site.store.request(second).await;
            if let Some(id) = &q.deployment {
                claimed = Some(killed.elapsed());
                b = Some(id.clone());
            } else {
                assert!(
                    q.state == "queued" || q.state == "running",
                    "the request queued behind the killed deployment was lost {:?} after the \
                     kill: {q:?}\n{}",
                    killed.elapsed(),
                    site.logs()
                );
            }
        }
        assert!(
            killed.elapsed() < bound + Duration::from_secs(30),
            "no takeover {:?} after the kill\n{}",
            killed.elapsed(),
            site.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (marked, claimed) = (marked.unwrap(), claimed.unwrap());
    eprintln!(
        "{:?}: SIGKILL of instance {victim}: its deployment marked interrupted after {} ms, the \
         next request's deployment started after {} ms (lease TTL {} ms, poll {} ms, bound {} ms)",
        site.kind,
        marked.as_millis(),
        claimed.as_millis(),
        ttl.as_millis(),
        POLL.as_millis(),
        bound.as_millis()
    );
    let q = site.store.request(first).await;
    assert_eq!(q.state, "interrupted", "{q:?}");
    let b = b.unwrap();
    let r = site.ended(second, Duration::from_secs(60)).await;
    assert_eq!(r.state, "done", "{r:?}\n{}", site.logs());
    let rec_b = site.store.deployment(&site.templates, &b).await.unwrap();
    assert_eq!(rec_b.outcome.as_deref(), Some("succeeded"), "{rec_b:?}");
    assert_ne!(site.instance_of(rec_b.pid), Some(victim), "{rec_b:?}");
    assert!(site.instance_of(rec_b.pid).is_some(), "{rec_b:?}");
    for (h, v) in site.store.fleet(&t).await {
        assert_eq!(v.as_deref(), Some("1.1.0"), "{h}");
    }
    // the interrupted deployment's page on a live instance lists its hosts with their last stage
    let (status, g) = site
        .get(other, &format!("/api/v1/deployments/{}", a.id))
        .await;
    assert_eq!(status, 200, "{g}");
    assert_eq!(g["outcome"], "interrupted", "{g}");
    let statuses: Vec<(&str, &str)> = g["interrupted"]
        .as_array()
        .unwrap_or_else(|| panic!("{g}"))
        .iter()
        .map(|h| (h["host"].as_str().unwrap(), h["status"].as_str().unwrap()))
        .collect();
    assert!(statuses.contains(&("a1-01", "succeeded")), "{g}");
    assert!(statuses.contains(&("a1-02", "interrupted")), "{g}");
    assert!(
        claimed <= bound && marked <= bound,
        "takeover took {claimed:?} (marked after {marked:?}); bound {bound:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_killed_instances_deployment_is_marked_and_the_next_request_runs_elsewhere() {
    // the lease TTL, the services' recovery round, one poll, a margin
    let bound = sqlite_ttl() + RECOVER_EVERY + POLL + Duration::from_secs(3);
    killed_instance_is_taken_over(StoreKind::Sqlite, sqlite_ttl(), bound).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_a_killed_instances_deployment_is_taken_over_within_ttl_plus_one_poll() {
    let ttl = 2.0;
    let Some(kind) = postgres("kill", ttl) else {
        return;
    };
    let ttl = Duration::from_secs_f64(ttl);
    // the lease TTL, one round of the services' recovery (which wakes their workers), and a margin
    // for a loaded machine
    killed_instance_is_taken_over(kind, ttl, ttl + RECOVER_EVERY + Duration::from_millis(1500))
        .await;
}

/// With a rollback policy: `app-1` runs 1.0.0 everywhere; a release of 1.1.0 runs on some
/// instance; SIGKILL it in its second batch. Another instance marks it interrupted and queues the
/// policy's request (undo 1.1.0 on the two hosts it touched), which a live instance runs: every
/// host ends on 1.0.0. The time from the kill to the takeover's deployment is measured against
/// `bound`.
async fn killed_instance_is_rolled_back(kind: StoreKind, ttl: Duration, bound: Duration) {
    let site = Site::start(Options {
        store: kind,
        templates: 1,
        versions: versions(2),
        latency: Duration::from_millis(250),
        rollback: true,
    })
    .await;
    let t = site.templates[0].clone();
    let base = site.publish(0, &t, "1.0.0").await;
    let r = site.ended(base, Duration::from_secs(60)).await;
    assert_eq!(r.state, "done", "{r:?}");
    let first = site.publish(1, &t, "1.1.0").await;
    let a = site.reach_batch_two(first).await;
    let victim = site.instance_of(a.pid).unwrap();
    let other = (victim + 1) % INSTANCES;
    site.instances[victim].signal("-KILL");
    let killed = Instant::now();
    let mut marked = None;
    let (claimed, takeover) = loop {
        if marked.is_none() {
            let d = site.store.deployment(&site.templates, &a.id).await.unwrap();
            if d.ended.is_some() {
                assert_eq!(d.outcome.as_deref(), Some("interrupted"), "{d:?}");
                marked = Some(killed.elapsed());
            }
        }
        let (status, g) = site
            .get(other, &format!("/api/v1/deployments/{}", a.id))
            .await;
        assert_eq!(status, 200, "{g}");
        let tk = &g["takeover"];
        if tk["deployment"].is_string() {
            break (killed.elapsed(), tk.clone());
        }
        assert!(
            !["failed", "interrupted", "cancelled"]
                .contains(&tk["request_state"].as_str().unwrap_or("")),
            "the takeover's request did not run: {g}\n{}",
            site.logs()
        );
        assert!(
            killed.elapsed() < bound + Duration::from_secs(30),
            "no takeover {:?} after the kill: {g}\n{}",
            killed.elapsed(),
            site.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let marked = marked.unwrap_or(claimed);
    eprintln!(
        "{:?}: SIGKILL of instance {victim} (rollback policy): marked interrupted after {} ms, the \
         takeover's rollback started after {} ms (lease TTL {} ms, bound {} ms); takeover {takeover}",
        site.kind,
        marked.as_millis(),
        claimed.as_millis(),
        ttl.as_millis(),
        bound.as_millis()
    );
    assert_eq!(takeover["policy"], "rollback", "{takeover}");
    let request = takeover["request"].as_i64().unwrap();
    let undo = takeover["deployment"].as_str().unwrap().to_owned();
    let r = site.ended(request, Duration::from_secs(60)).await;
    assert_eq!(r.state, "done", "{r:?}\n{}", site.logs());
    let rec = site.store.deployment(&site.templates, &undo).await.unwrap();
    assert!(
        ["succeeded", "rolled-back"].contains(&rec.outcome.as_deref().unwrap_or("")),
        "{rec:?}\n{}",
        site.logs()
    );
    let runner = site.instance_of(rec.pid);
    assert!(runner.is_some() && runner != Some(victim), "{rec:?}");
    for (h, v) in site.store.fleet(&t).await {
        assert_eq!(v.as_deref(), Some("1.0.0"), "{h}");
    }
    // exactly once: one takeover request, whichever instances recovered
    let deps = site.store.deployments(&site.templates).await;
    assert_eq!(deps.len(), 3, "{deps:#?}");
    assert!(
        claimed <= bound,
        "takeover took {claimed:?} (marked after {marked:?}); bound {bound:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_killed_instances_release_is_rolled_back_by_another() {
    let bound = sqlite_ttl() + RECOVER_EVERY + POLL + Duration::from_secs(3);
    killed_instance_is_rolled_back(StoreKind::Sqlite, sqlite_ttl(), bound).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_a_killed_instances_release_is_rolled_back_by_another() {
    let ttl = 2.0;
    let Some(kind) = postgres("killrb", ttl) else {
        return;
    };
    let ttl = Duration::from_secs_f64(ttl);
    killed_instance_is_rolled_back(kind, ttl, ttl + RECOVER_EVERY + Duration::from_millis(1500))
        .await;
}

// ---------------------------------------------------------------------------------------------
// SIGSTOP past the lease, SIGCONT

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_a_paused_instance_loses_its_deployment_and_writes_nothing_after_sigcont() {
    let ttl = 2.0;
    let Some(kind) = postgres("pause", ttl) else {
        return;
    };
    let site = Site::start(Options {
        store: kind,
        templates: 1,
        versions: versions(2),
        latency: Duration::from_millis(700),
        rollback: false,
    })
    .await;
    let t = site.templates[0].clone();
    let first = site.publish(0, &t, "1.0.0").await;
    let a = site.reach_batch_two(first).await;
    let victim = site.instance_of(a.pid).unwrap();
    let other = (victim + 1) % INSTANCES;
    let (_, token_a) = site.store.lease(&t).await.unwrap();
    let second = site.publish(other, &t, "1.1.0").await;
    site.instances[victim].signal("-STOP");
    let stopped = Instant::now();
    // another instance takes the template over: the next request's deployment holds the lease
    let (b, token_b) = loop {
        if let Some((holder, token)) = site.store.lease(&t).await {
            if holder != a.id {
                break (holder, token);
            }
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(40),
            "never taken over\n{}",
            site.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let taken = stopped.elapsed();
    eprintln!(
        "SIGSTOP of instance {victim}: the next deployment held the lease {} ms after (TTL {ttl} s)",
        taken.as_millis()
    );
    assert!(token_b > token_a, "fencing token {token_a} -> {token_b}");
    let r = site.ended(second, Duration::from_secs(60)).await;
    assert_eq!(r.state, "done", "{r:?}\n{}", site.logs());
    let rec_b = site.store.deployment(&site.templates, &b).await.unwrap();
    assert_eq!(rec_b.outcome.as_deref(), Some("succeeded"), "{rec_b:?}");
    assert_ne!(site.instance_of(rec_b.pid), Some(victim));
    let events_a = site.store.events(&a.id).await;
    let salt_a = site.fakes[victim].request_count().total();

    site.instances[victim].signal("-CONT");
    // the resumed instance finds its lease gone: its deployment ends, nothing more is written
    let resumed = Instant::now();
    let ended = loop {
        let (status, g) = site
            .get(victim, &format!("/api/v1/deployments/{}", a.id))
            .await;
        assert_eq!(status, 200, "{g}");
        if g["live"] == false {
            break g;
        }
        assert!(
            resumed.elapsed() < Duration::from_secs(30),
            "the resumed instance still runs it: {g}\n{}",
            site.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // give it a lease TTL and a poll to write anything it still would
    tokio::time::sleep(Duration::from_secs_f64(ttl) + POLL).await;
    assert_eq!(
        site.fakes[victim].request_count().total(),
        salt_a,
        "the resumed instance sent salt requests after its lease was taken over"
    );
    let events_after = site.store.events(&a.id).await;
    assert_eq!(
        events_after.len(),
        events_a.len(),
        "journal rows written after the takeover: {:?}",
        &events_after[events_a.len().min(events_after.len())..]
    );
    let rec_a = site.store.deployment(&site.templates, &a.id).await.unwrap();
    assert!(rec_a.ended.is_some(), "{rec_a:?}");
    assert_ne!(rec_a.outcome.as_deref(), Some("succeeded"), "{rec_a:?}");
    let q = site.store.request(first).await;
    assert_ne!(q.state, "done", "{q:?}");
    let lease_lost = |s: &str| s.contains("lease-lost") || s.contains("lease lost");
    // the record says what the taker found (`interrupted`: fenced, the paused instance cannot
    // write its own end); the paused instance reports its deployment lease-lost
    let logs = site.logs();
    assert!(
        ended["outcome"].as_str().is_some_and(lease_lost)
            || rec_a.outcome.as_deref().is_some_and(lease_lost)
            || q.error.as_deref().is_some_and(lease_lost)
            || logs
                .lines()
                .any(|l| l.contains(a.id.as_str()) && lease_lost(l)),
        "its deployment ends as lease-lost: page {ended}, record {rec_a:?}, request {q:?}\n{logs}"
    );
    for (h, v) in site.store.fleet(&t).await {
        assert_eq!(v.as_deref(), Some("1.1.0"), "{h}");
    }
    eprintln!(
        "paused instance's deployment: record {:?}, request {q:?}, page outcome {}",
        rec_a.outcome, ended["outcome"]
    );
}

// ---------------------------------------------------------------------------------------------
// the database restarted mid-deployment

/// Restarts the lab's server with `pg_ctl restart -m fast` (as its owner) and records the new pid
/// where `scripts/pg-lab down` looks for it.
fn restart_database(lab_dir: &Path) {
    let data = lab_dir.join("data");
    let version = std::fs::read_to_string(data.join("PG_VERSION")).unwrap();
    let pg_ctl = PathBuf::from(format!("/usr/lib/postgresql/{}/bin/pg_ctl", version.trim()));
    let owner = Command::new("stat")
        .args(["-c", "%U"])
        .arg(&data)
        .output()
        .unwrap();
    let owner = String::from_utf8_lossy(&owner.stdout).trim().to_owned();
    let uid = Command::new("id").arg("-u").output().unwrap();
    let root = String::from_utf8_lossy(&uid.stdout).trim() == "0";
    let me = std::env::var("USER").unwrap_or_default();
    let mut cmd = if owner != me && root {
        let mut c = Command::new("runuser");
        c.args(["-u", &owner, "--"]).arg(&pg_ctl);
        c
    } else {
        Command::new(&pg_ctl)
    };
    let st = cmd
        .args(["restart", "-m", "fast", "-w", "-t", "30", "-D"])
        .arg(&data)
        .arg("-l")
        .arg(lab_dir.join("postgres.log"))
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "pg_ctl restart failed");
    let pid = std::fs::read_to_string(data.join("postmaster.pid")).unwrap();
    let pid = pid.lines().next().unwrap().trim().to_owned();
    std::fs::write(lab_dir.join("postgres.pid"), format!("{pid}\n")).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_a_database_restart_mid_deployment_continues_or_fails_cleanly() {
    let Some(lab_dir) = std::env::var_os("PUSHGUIDE_PG_LAB_DIR") else {
        assert!(
            std::env::var("PUSHGUIDE_REQUIRE_PG").as_deref() != Ok("1"),
            "PUSHGUIDE_REQUIRE_PG=1 but PUSHGUIDE_PG_LAB_DIR is not set (scripts/pg-lab env prints it)"
        );
        eprintln!(
            "SKIPPED restart: PUSHGUIDE_PG_LAB_DIR is not set (the lab's server is restarted)"
        );
        return;
    };
    // a TTL longer than the restart: the lease outlives it
    let Some(kind) = postgres("restart", 10.0) else {
        return;
    };
    let site = Site::start(Options {
        store: kind,
        templates: 2,
        versions: versions(2),
        latency: Duration::from_millis(600),
        rollback: false,
    })
    .await;
    let t = site.templates[0].clone();
    let first = site.publish(0, &t, "1.0.0").await;
    let a = site.reach_batch_two(first).await;
    let begun = Instant::now();
    restart_database(Path::new(&lab_dir));
    eprintln!("database restarted in {} ms", begun.elapsed().as_millis());
    let q = site.ended(first, Duration::from_secs(90)).await;
    let rec = site.store.deployment(&site.templates, &a.id).await.unwrap();
    let events = site.store.events(&a.id).await;
    eprintln!(
        "after the restart: request {q:?}, outcome {:?}, {} events",
        rec.outcome,
        events.len()
    );
    assert_eq!(
        rec.events as usize,
        events.len(),
        "every event row is whole"
    );
    assert!(matches!(
        events[0].kind,
        EventKind::DeploymentStarted { .. }
    ));
    let finished = events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::DeploymentFinished { .. }))
        .count();
    assert!(finished <= 1, "{events:?}");
    assert!(
        events.windows(2).all(|w| w[0].at <= w[1].at),
        "the journal is in order"
    );
    assert!(
        rec.ended.is_some() && rec.outcome.is_some(),
        "the deployment was left without an end: {rec:?}"
    );
    if q.state == "done" && rec.outcome.as_deref() == Some("succeeded") {
        // continued: its end and the fleet state are recorded
        assert_eq!(finished, 1);
        for (h, v) in site.store.fleet(&t).await {
            assert_eq!(v.as_deref(), Some("1.0.0"), "{h}");
        }
    } else {
        // failed cleanly: an outcome or a reason, never a half-written record
        assert!(
            ["done", "failed", "interrupted"].contains(&q.state.as_str()),
            "{q:?}"
        );
        assert!(q.state == "done" || q.error.is_some(), "{q:?}");
    }
    // every instance is still up and serving, and the next request on the other template runs
    for n in 0..INSTANCES {
        assert!(
            site.instances[n].exited().is_none(),
            "instance {n} exited on the restart\n{}",
            site.logs()
        );
        site.ready(n).await;
    }
    let t2 = site.templates[1].clone();
    let next = site.publish(1, &t2, "1.1.0").await;
    let r = site.ended(next, Duration::from_secs(60)).await;
    assert_eq!(r.state, "done", "{r:?}\n{}", site.logs());
    // the journal stays consistent: every deployment that started has an end
    for d in site.store.deployments(&site.templates).await {
        assert!(d.ended.is_some() && d.outcome.is_some(), "{d:?}");
    }
}
