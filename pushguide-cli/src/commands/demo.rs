//! `serve --demo`: the web service on an embedded demo — a fake salt-api in front of 20 simulated
//! minions, a CI directory with three versions, two templates, a fresh store in a temporary
//! directory, and three users (a deployer, a viewer, an admin) whose passwords are printed.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use pushguide_core::sim::SimFleet;
use pushguide_core::Outcome;
use pushguide_salt::fake::FakeSaltApi;
use sha2::{Digest, Sha256};

use crate::app::App;
use crate::config::Config;
use crate::error::CliError;
use crate::output;

/// The demo's minions.
const MINIONS: usize = 20;
/// The versions its CI directory offers; `2.0.0` fails to switch on `web-07` (a pause to act on).
const VERSIONS: [&str; 3] = ["1.0.0", "1.1.0", "2.0.0"];
/// The demo's users: name, groups, role.
const USERS: [(&str, &str, &str); 3] = [
    ("dora", "ops", "deployer"),
    ("victor", "devs", "viewer"),
    ("ada", "admins", "admin"),
];

const SHOP: &str = r#"name = "shop"
description = "The shop's Java front end (20 minions, a canary first, then 25 % at a time)"

[acl.viewers]
groups = ["devs"]

[acl.deployers]
groups = ["ops"]

[targets]
expression = "web-*"

[rollout]
batch = "25%"
canary = true

[failure]
max_failed = 0
on_failure = "pause"

[rollback]
policy = "previous"

[project]
kind = "java-tomcat"
context = "shop"
root = "/srv/shop"
catalina_base = "/var/lib/tomcat10"
service = "tomcat10"
"#;

const BILLING: &str = r#"name = "billing"
description = "Billing back office (4 minions; ops deploy, nobody else sees it)"

[acl.deployers]
groups = ["ops"]

[targets]
minions = ["web-01", "web-02", "web-03", "web-04"]

[rollout]
batch = 2

[rollback]
policy = "previous"

[project]
kind = "java-tomcat"
context = "billing"
root = "/srv/billing"
catalina_base = "/var/lib/tomcat10"
service = "tomcat10"
"#;

fn io(what: &str, path: &Path, e: std::io::Error) -> CliError {
    CliError::Internal(format!("demo: cannot {what} {}: {e}", path.display()))
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| io("create", dir, e))?;
    }
    std::fs::write(path, bytes).map_err(|e| io("write", path, e))
}

/// The demo's temporary directory, removed when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            tracing::warn!(dir = %self.0.display(), error = %e, "cannot remove the demo directory");
        }
    }
}

fn temp_dir() -> Result<TempDir, CliError> {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!("pushguide-demo-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| io("create", &dir, e))?;
    Ok(TempDir(dir))
}

/// The simulated fleet: every release is on disk (unpacking is skipped), switches succeed, Tomcat
/// answers 200, but `web-07` cannot switch to `2.0.0`; each request takes `latency` (so the live
/// grid can be watched).
fn fleet(shas: &[(String, String)], latency: Duration) -> Result<Arc<SimFleet>, CliError> {
    let hosts: Vec<String> = (1..=MINIONS).map(|i| format!("web-{i:02}")).collect();
    let f = SimFleet::new(&hosts)
        .map_err(|e| CliError::Internal(format!("demo fleet: {e}")))?
        .with_latency(latency)
        .on("*", "file.directory_exists", Outcome::ok(false))
        .on("*", "cp.get_url", Outcome::ok("/srv/archives/app.war"))
        .on(
            "*",
            "http.query",
            Outcome::ok(serde_json::json!({"status": 200})),
        );
    for (version, sha) in shas {
        // every release is on disk once fetched (so any version can be rolled back to)
        f.add_rule_for_arg(
            "*",
            "file.directory_exists",
            &format!("/releases/{version}"),
            Outcome::ok(true),
        );
        f.add_rule_for_arg(
            "*",
            "file.get_hash",
            &format!("/{version}.war"),
            Outcome::ok(sha.clone()),
        );
    }
    f.add_rule_for_arg(
        "web-07",
        "file.symlink",
        "/releases/2.0.0",
        Outcome::failed(Some(1), "symlink: permission denied on /srv/shop/current"),
    );
    Ok(Arc::new(f))
}

/// `serve --demo [--listen ADDR]`: until Ctrl-C, SIGTERM or SIGHUP; the demo directory is removed.
pub async fn demo(listen: Option<SocketAddr>) -> Result<(), CliError> {
    let dir = temp_dir()?;
    let root = dir.0.clone();
    // a minion fetches archives/<version>.war: both templates ship the same bytes for a version,
    // so the fleet answers one checksum per version
    let mut shas = Vec::new();
    for v in VERSIONS {
        let body = format!("pushguide demo {v}\n");
        for template in ["shop", "billing"] {
            let war = root.join(format!("artifacts/{template}/{v}/{template}.war"));
            write(&war, body.as_bytes())?;
            write(
                &war.with_file_name("manifest.json"),
                br#"[{"path": "WEB-INF/web.xml", "size": 612}, {"path": "index.jsp", "size": 2048}]"#,
            )?;
        }
        let sha: String = Sha256::digest(body.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        shas.push((v.to_owned(), sha));
    }
    let fleet = fleet(&shas, Duration::from_millis(120))?;
    let api = FakeSaltApi::start(fleet)
        .await
        .map_err(|e| CliError::Internal(format!("demo: cannot start the fake salt-api: {e}")))?;
    let settings = api.settings();
    write(&root.join("salt.pw"), settings.password.as_bytes())?;
    write(&root.join("templates/shop.toml"), SHOP.as_bytes())?;
    write(&root.join("templates/billing.toml"), BILLING.as_bytes())?;
    let listen = listen.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080)));
    let config = format!(
        "store = \"store.db\"\ntemplates = \"templates\"\n\n[user]\nname = \"demo\"\n\n[salt]\nendpoints = [\"{}\"]\n\
         eauth = \"{}\"\nuser = \"{}\"\npassword_file = \"salt.pw\"\n\n[ci]\ntype = \"directory\"\n\
         path = \"artifacts\"\nurl_base = \"salt://artifacts/\"\n\n[server]\nlisten = \"{listen}\"\n\
         admin_groups = [\"admins\"]\n",
        settings.endpoints[0], settings.eauth, settings.user
    );
    let file = root.join("pushguide.toml");
    write(&file, config.as_bytes())?;
    let mut app = App::new(Config::load(&file)?);
    let store = app.store()?;
    let mut lines = vec![
        format!(
            "pushguide demo: 20 simulated minions behind a fake salt-api at {}",
            api.url()
        ),
        format!("open http://{listen}/ and log in as"),
    ];
    for (user, group, role) in USERS {
        let password: String = pushguide_server::auth::new_token()
            .map_err(|e| CliError::Internal(e.to_string()))?
            .chars()
            .take(16)
            .collect();
        let hash = pushguide_server::auth::hash_password(&password)
            .map_err(|e| CliError::Internal(e.to_string()))?;
        store.put_user(user, &hash, &[group.to_owned()], false, SystemTime::now())?;
        lines.push(format!("  {user:<7} {password}   ({role}, group {group})"));
    }
    lines.push(format!(
        "versions {}; {} fails on web-07 (the deployment pauses: exclude, retry, roll back)",
        VERSIONS.join(", "),
        VERSIONS[2]
    ));
    lines.push(format!(
        "demo files in {} (removed at exit)",
        root.display()
    ));
    output::stdout_text(&lines.join("\n"));
    let served = super::serve(&mut app).await;
    drop(api);
    served
}
