//! A lab for the CLI end-to-end tests: a temp dir with WARs of `shop` 1.0.0, 2.0.0 and 3.0.0,
//! templates and a config, and the fake salt-api (on loopback, in its own runtime) over a simulated
//! fleet that answers like salt for `java-tomcat`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use pushguide_core::sim::SimFleet;
use pushguide_core::Outcome;
use pushguide_salt::fake::FakeSaltApi;
use pushguide_store::SqliteStore;
use serde_json::{json, Value};

use super::{config, run, war, write, Run, BIN};

/// The salt-api password of every lab (the config names the variable, [`ENV`] sets it).
pub const PASSWORD: &str = "s3cret-pw-for-cli-tests";
/// The environment of a run against a lab.
pub const ENV: &[(&str, &str)] = &[("PG_CLI_TEST_PASSWORD", PASSWORD)];

const URL_BASE: &str = "http://artifacts.example.com/";

/// The `shop` template (`java-tomcat` under /srv/shop, one host a batch, no failed host allowed,
/// a health check, rollback to the previous version) over `hosts`, with the description line and
/// the `devs` viewers ACL if asked for.
pub fn shop_template(hosts: &[&str], description: bool, viewers: bool) -> String {
    let mut text = String::from("\nname = \"shop\"\n");
    if description {
        text.push_str("description = \"The shop's Java front end\"\n");
    }
    if viewers {
        text.push_str("[acl.viewers]\ngroups = [\"devs\"]\n");
    }
    let hosts: Vec<String> = hosts.iter().map(|h| format!("\"{h}\"")).collect();
    text.push_str(&format!(
        "[acl.deployers]\ngroups = [\"ops\"]\n[targets]\nminions = [{}]\n",
        hosts.join(", ")
    ));
    text.push_str(
        "[rollout]\nbatch = 1\n[failure]\nmax_failed = 0\n\
         [health]\nurl = \"http://127.0.0.1:8080/shop/health\"\nretries = 0\ninterval_secs = 1\n\
         [rollback]\npolicy = \"previous\"\n\
         [project]\nkind = \"java-tomcat\"\ncontext = \"shop\"\nroot = \"/srv/shop\"\n\
         catalina_base = \"/var/lib/tomcat10\"\nservice = \"tomcat10\"\n",
    );
    text
}

/// Options of a [`Lab`]; [`LabBuilder::start`] makes it.
#[derive(Debug)]
pub struct LabBuilder {
    latency: Duration,
    hosts: Vec<String>,
    unzipped: Value,
    templates: Vec<(String, String)>,
    cmdb: Option<String>,
    user: String,
    groups: Vec<String>,
}

impl LabBuilder {
    /// How long the fleet takes for each call (default: none).
    pub fn latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    /// The fleet's minions (default: web-01 to web-03).
    pub fn hosts(mut self, hosts: &[&str]) -> Self {
        self.hosts = hosts.iter().map(|h| (*h).to_owned()).collect();
        self
    }

    /// What `archive.unzip` answers (default: `WEB-INF/web.xml` and `index.jsp`).
    pub fn unzipped(mut self, files: Value) -> Self {
        self.unzipped = files;
        self
    }

    /// Writes `templates/<name>.toml` with `text`.
    pub fn template(mut self, name: &str, text: &str) -> Self {
        self.templates.push((name.to_owned(), text.to_owned()));
        self
    }

    /// Writes `cmdb.toml` with `text` and configures it (in the lab's config and [`Lab::user_config`]).
    pub fn cmdb(mut self, text: &str) -> Self {
        self.cmdb = Some(text.to_owned());
        self
    }

    /// The user and groups of the lab's config (default: alice in ops).
    pub fn user(mut self, user: &str, groups: &[&str]) -> Self {
        self.user = user.to_owned();
        self.groups = groups.iter().map(|g| (*g).to_owned()).collect();
        self
    }

    /// Starts the fake salt-api and writes the WARs, templates, cmdb and config.
    pub fn start(self) -> Lab {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let fleet = Arc::new(
            SimFleet::new(self.hosts.iter().map(String::as_str))
                .unwrap()
                .with_latency(self.latency)
                .on("*", "file.directory_exists", Outcome::ok(false))
                .on(
                    "*",
                    "cp.get_url",
                    Outcome::ok("/srv/shop/archives/shop.war"),
                )
                .on("*", "archive.unzip", Outcome::ok(self.unzipped))
                .on("*", "file.readdir", Outcome::ok(json!([".", ".."])))
                .on("*", "http.query", Outcome::ok(json!({ "status": 200 }))),
        );
        let fake = rt
            .block_on(
                FakeSaltApi::builder(fleet.clone())
                    .credentials("pushguide", PASSWORD)
                    .start(),
            )
            .unwrap();
        let mut shas = BTreeMap::new();
        for v in ["1.0.0", "2.0.0", "3.0.0"] {
            shas.insert(v.to_owned(), war(&dir.join("artifacts"), "shop", v));
        }
        for (name, text) in &self.templates {
            write(&dir.join(format!("templates/{name}.toml")), text);
        }
        if let Some(text) = &self.cmdb {
            write(&dir.join("cmdb.toml"), text);
        }
        let mut lab = Lab {
            _tmp: tmp,
            dir,
            rt,
            fake: Some(fake),
            fleet,
            ops: PathBuf::new(),
            shas,
            cmdb: self.cmdb.is_some(),
        };
        let groups: Vec<&str> = self.groups.iter().map(String::as_str).collect();
        lab.ops = lab.user_config(&self.user, &groups);
        lab
    }
}

/// A temp dir with WARs, templates and a config (`ops`), and the fake salt-api over `fleet`.
pub struct Lab {
    _tmp: tempfile::TempDir,
    /// The temp dir: `artifacts/`, `templates/`, `state/pushguide.db`, the configs.
    pub dir: PathBuf,
    rt: tokio::runtime::Runtime,
    fake: Option<FakeSaltApi>,
    /// The simulated fleet behind the fake salt-api.
    pub fleet: Arc<SimFleet>,
    /// The config of the lab's user.
    pub ops: PathBuf,
    shas: BTreeMap<String, String>,
    cmdb: bool,
}

impl Lab {
    /// A lab over web-01 to web-03 without latency, for alice in ops, with no template yet.
    pub fn builder() -> LabBuilder {
        LabBuilder {
            latency: Duration::ZERO,
            hosts: ["web-01", "web-02", "web-03"].map(str::to_owned).to_vec(),
            unzipped: json!(["WEB-INF/web.xml", "index.jsp"]),
            templates: Vec::new(),
            cmdb: None,
            user: "alice".to_owned(),
            groups: vec!["ops".to_owned()],
        }
    }

    /// The fake salt-api.
    pub fn fake(&self) -> &FakeSaltApi {
        self.fake.as_ref().unwrap()
    }

    /// A config for `user` in `groups` against this lab (`pushguide-<user>.toml` in the lab's dir).
    pub fn user_config(&self, user: &str, groups: &[&str]) -> PathBuf {
        let s = self.fake().settings();
        config(
            &self.dir,
            &s.endpoints[0],
            &s.eauth,
            user,
            groups,
            URL_BASE,
            self.cmdb,
        )
    }

    /// The fleet answers `file.get_hash` with `version`'s checksum from now on.
    pub fn serving(&self, version: &str) {
        self.fleet.add_rule(
            "*",
            "file.get_hash",
            Outcome::ok(self.shas[version].as_str()),
            None,
        );
    }

    /// `releases/<version>` exists on every host from now on.
    pub fn on_disk(&self, version: &str) {
        self.fleet.add_rule_for_arg(
            "*",
            "file.directory_exists",
            &format!("/{version}"),
            Outcome::ok(true),
        );
    }

    /// Runs the binary with the lab's config.
    pub fn run(&self, args: &[&str]) -> Run {
        run(&self.ops, args, ENV)
    }

    /// `history --json` of the lab's user.
    pub fn history(&self) -> Vec<Value> {
        let r = self.run(&["history", "--json"]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        r.json().as_array().unwrap().clone()
    }

    /// The binary with the lab's config and `args`, stdin closed, not yet started.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.arg("--config")
            .arg(&self.ops)
            .args(args)
            .env("PG_CLI_TEST_PASSWORD", PASSWORD)
            .env_remove("PUSHGUIDE_CONFIG")
            .stdin(Stdio::null());
        cmd
    }

    /// The lab's store, opened beside the binary's.
    pub fn store(&self) -> SqliteStore {
        SqliteStore::open(self.dir.join("state/pushguide.db")).unwrap()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // the fake's server task belongs to the lab's runtime
        if let Some(f) = self.fake.take() {
            let _g = self.rt.enter();
            drop(f);
        }
    }
}
