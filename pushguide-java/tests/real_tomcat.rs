//! End to end against REAL things: the salt lab (`scripts/salt-lab up`) and one real Tomcat 10 per
//! minion (`scripts/tomcat-lab up`). WARs are built here with the JDK's `jar` and served to the minions
//! over HTTP from this test. Deploy 1.0.0 → the page shows 1.0.0; 2.0.0 → 2.0.0; a 3.0.0 whose health
//! check fails → automatic rollback → 2.0.0 again; an explicit rollback to 1.0.0 → 1.0.0.
//!
//! Needs `PUSHGUIDE_SALT_*` and `PUSHGUIDE_TOMCAT_*`; without them it skips with a message, unless
//! `PUSHGUIDE_REQUIRE_SALT=1`, where it fails naming what is missing.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use pushguide_core::steps::ManifestEntry;
use pushguide_core::{
    Artifact, DeploymentOutcome, Engine, HostStatus, Principal, Report, Request, TargetExpr,
    TargetType, Template, STEPS_FUN,
};
use pushguide_java as _;
use pushguide_salt::{SaltApi, SaltApiSettings};

struct Lab {
    salt: SaltApiSettings,
    minions: Vec<String>,
    tomcat_dir: String,
    ports: Vec<String>,
}

fn lab() -> Option<Lab> {
    let required = std::env::var("PUSHGUIDE_REQUIRE_SALT").as_deref() == Ok("1");
    let get = |v: &str| std::env::var(v).ok().filter(|s| !s.is_empty());
    let missing: Vec<&str> = [
        "PUSHGUIDE_SALT_URL",
        "PUSHGUIDE_SALT_MINIONS",
        "PUSHGUIDE_TOMCAT_DIR",
        "PUSHGUIDE_TOMCAT_IDS",
        "PUSHGUIDE_TOMCAT_PORTS",
    ]
    .into_iter()
    .filter(|v| get(v).is_none())
    .collect();
    if !missing.is_empty() {
        assert!(
            !required,
            "PUSHGUIDE_REQUIRE_SALT=1 but {} not set",
            missing.join(", ")
        );
        eprintln!("skipping the Tomcat end-to-end test: {} not set (scripts/salt-lab up, scripts/tomcat-lab up)", missing.join(", "));
        return None;
    }
    let mut salt = SaltApiSettings::from_env().unwrap();
    salt.endpoints.truncate(1);
    let minions: Vec<String> = get("PUSHGUIDE_SALT_MINIONS")
        .unwrap()
        .split_whitespace()
        .map(String::from)
        .collect();
    let ids: Vec<String> = get("PUSHGUIDE_TOMCAT_IDS")
        .unwrap()
        .split_whitespace()
        .map(String::from)
        .collect();
    assert_eq!(ids, minions, "one Tomcat per minion, in the same order");
    Some(Lab {
        salt,
        minions,
        tomcat_dir: get("PUSHGUIDE_TOMCAT_DIR").unwrap(),
        ports: get("PUSHGUIDE_TOMCAT_PORTS")
            .unwrap()
            .split_whitespace()
            .map(String::from)
            .collect(),
    })
}

/// Builds `shop.war` for `version` under `dir`; with `healthy` it contains `health.html`.
fn build_war(dir: &Path, version: &str, healthy: bool) -> (PathBuf, Vec<ManifestEntry>) {
    let src = dir.join(format!("src-{version}"));
    std::fs::create_dir_all(src.join("WEB-INF")).unwrap();
    std::fs::write(
        src.join("WEB-INF/web.xml"),
        "<?xml version=\"1.0\"?>\n<web-app xmlns=\"https://jakarta.ee/xml/ns/jakartaee\" version=\"6.0\"/>\n",
    )
    .unwrap();
    std::fs::write(
        src.join("index.jsp"),
        format!("<%@ page contentType=\"text/plain\" %>shop version {version}\n"),
    )
    .unwrap();
    if healthy {
        std::fs::write(src.join("health.html"), "OK\n").unwrap();
    }
    let war = dir.join(format!("shop-{version}.war"));
    let status = Command::new("jar")
        .arg("--create")
        .arg("--file")
        .arg(&war)
        .arg("-C")
        .arg(&src)
        .arg(".")
        .status()
        .expect("the JDK's jar tool");
    assert!(status.success(), "jar failed");
    let mut manifest = Vec::new();
    for entry in ["WEB-INF/", "WEB-INF/web.xml", "index.jsp", "health.html"] {
        let p = src.join(entry);
        if p.exists() {
            let size = if p.is_file() {
                std::fs::metadata(&p).unwrap().len()
            } else {
                0
            };
            manifest.push(ManifestEntry {
                path: entry.into(),
                size,
            });
        }
    }
    (war, manifest)
}

fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

/// Serves every file of `dir` at `/<name>` until the process ends.
fn serve(dir: PathBuf) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let dir = dir.clone();
            std::thread::spawn(move || {
                let mut s = stream;
                let mut buf = [0u8; 4096];
                let n = s.read(&mut buf).unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]);
                let name = req
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or("/")
                    .trim_start_matches('/')
                    .to_owned();
                let file = dir.join(&name);
                let resp = match (
                    name.contains('/') || name.contains(".."),
                    std::fs::read(&file),
                ) {
                    (false, Ok(body)) => {
                        let mut r = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        )
                        .into_bytes();
                        r.extend(body);
                        r
                    }
                    _ => {
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                            .to_vec()
                    }
                };
                let _ = s.write_all(&resp);
            });
        }
    });
    port
}

fn page(port: &str) -> String {
    let Ok(mut s) = TcpStream::connect(format!("127.0.0.1:{port}")) else {
        return "connection refused".into();
    };
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = write!(
        s,
        "GET /shop/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    );
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn assert_pages(lab: &Lab, version: &str) {
    for port in &lab.ports {
        let p = page(port);
        assert!(
            p.contains(&format!("shop version {version}")),
            "port {port} should serve {version}:\n{p}"
        );
    }
}

/// Every file, directory and symlink under each minion's release root and `webapps`: path, kind,
/// size, modification time and link target.
fn snapshot(lab: &Lab) -> Vec<String> {
    fn walk(dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            let link = std::fs::read_link(&path)
                .map(|t| t.display().to_string())
                .unwrap_or_default();
            out.push(format!(
                "{} {:?} {} {:?} {link}",
                path.display(),
                meta.file_type(),
                meta.len(),
                meta.modified().ok()
            ));
            if meta.is_dir() {
                walk(&path, out);
            }
        }
    }
    let mut out = Vec::new();
    for m in &lab.minions {
        for sub in ["app", "base/webapps"] {
            walk(&Path::new(&lab.tomcat_dir).join(m).join(sub), &mut out);
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn release_upgrade_failed_health_check_and_rollbacks_on_real_tomcat() {
    let Some(lab) = lab() else { return };
    let work = std::env::temp_dir().join(format!("pg-wars-{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap();
    let port = serve(work.clone());
    let mut artifacts = std::collections::BTreeMap::new();
    for (v, healthy) in [("1.0.0", true), ("2.0.0", true), ("3.0.0", false)] {
        let (war, manifest) = build_war(&work, v, healthy);
        let url = format!(
            "http://127.0.0.1:{port}/{}",
            war.file_name().unwrap().to_string_lossy()
        );
        let mut artifact = Artifact::new(url, Some(sha256(&war))).with_manifest(manifest);
        // a known size: staging checks the disk holds the WAR and what it unpacks to
        artifact.size = Some(std::fs::metadata(&war).unwrap().len());
        artifacts.insert(v, artifact);
    }

    let t = &lab.tomcat_dir;
    let mut hosts = String::new();
    for (m, p) in lab.minions.iter().zip(&lab.ports) {
        hosts.push_str(&format!(
            "[project.hosts.{m}]\nroot = \"{t}/{m}/app\"\ncatalina_base = \"{t}/{m}/base\"\n\
             start_command = [\"{t}/{m}/bin/start\"]\nstop_command = [\"{t}/{m}/bin/stop\"]\n\
             health_url = \"http://127.0.0.1:{p}/shop/health.html\"\n"
        ));
    }
    let list: Vec<String> = lab.minions.iter().map(|m| format!("\"{m}\"")).collect();
    let text = format!(
        "name = \"shop\"\n[acl.deployers]\nusers = [\"ops\"]\n[targets]\nminions = [{}]\n\
         [rollout]\nbatch = 1\n[rollback]\npolicy = \"previous\"\n\
         [health]\nretries = 3\ninterval_secs = 1\ntimeout_secs = 30\n\
         [project]\nkind = \"java-tomcat\"\ncontext = \"shop\"\n{hosts}",
        list.join(", ")
    );
    let template = Arc::new(
        Template::from_toml_str(&text, "<real tomcat>").unwrap_or_else(|e| panic!("{e}\n{text}")),
    );
    let api = Arc::new(SaltApi::new(lab.salt.clone()).unwrap());
    // each host's steps as one salt job: the pushguide module, installed through salt-api
    let installed = api
        .install_module(&TargetExpr {
            expression: "*".into(),
            tgt_type: TargetType::Glob,
        })
        .await
        .unwrap();
    assert!(installed.all_installed(), "{installed:?}");
    let engine = Engine::builder(api).step_jobs(true).build();
    // salt jobs of a deployment: the pre-flight ping, staging, one per batch (2 minions, batch 1)
    let jobs = |r: &Report| {
        r.calls
            .iter()
            .filter(|c| c.sent)
            .filter_map(|c| c.jid.clone())
            .collect::<std::collections::BTreeSet<_>>()
            .len()
    };
    let ops = Principal::user("ops");
    let deploy = |v: &'static str| {
        Request::new(template.clone(), v, ops.clone()).artifact(artifacts[v].clone())
    };

    let r = engine.deploy(deploy("1.0.0")).await.unwrap();
    eprintln!("{r}");
    assert_eq!(r.outcome, DeploymentOutcome::Succeeded, "{r}");
    assert_pages(&lab, "1.0.0");
    assert_eq!(jobs(&r), 1 + 1 + lab.minions.len(), "{r}");
    assert!(r.calls.iter().all(|c| c.call.fun != STEPS_FUN));

    // a dry run of the next release (staging included) changes no file on any minion
    let before = snapshot(&lab);
    let r = engine.deploy(deploy("2.0.0").dry_run(true)).await.unwrap();
    eprintln!("{r}");
    assert_eq!(r.outcome, DeploymentOutcome::Succeeded, "{r}");
    assert_eq!(snapshot(&lab), before, "a dry run changed files");
    assert_pages(&lab, "1.0.0");

    let r = engine.deploy(deploy("2.0.0")).await.unwrap();
    eprintln!("{r}");
    assert_eq!(r.outcome, DeploymentOutcome::Succeeded, "{r}");
    assert_pages(&lab, "2.0.0");
    assert_eq!(jobs(&r), 1 + 1 + lab.minions.len(), "{r}");

    let r = engine.deploy(deploy("3.0.0")).await.unwrap();
    eprintln!("{r}");
    assert_eq!(r.outcome, DeploymentOutcome::RolledBack, "{r}");
    let first = &lab.minions[0];
    let f = r.host(first).unwrap().failure.clone().unwrap();
    assert!(
        f.reason.contains("health check of") && f.reason.contains("failed"),
        "{}",
        f.reason
    );
    assert_eq!(f.fun.as_deref(), Some("http.query"), "{r}");
    assert_eq!(r.host(first).unwrap().status, HostStatus::RolledBack);
    assert_pages(&lab, "2.0.0");

    let r = engine
        .deploy(Request::rollback(
            template.clone(),
            Some("1.0.0".into()),
            ops.clone(),
        ))
        .await
        .unwrap();
    eprintln!("{r}");
    assert_eq!(r.outcome, DeploymentOutcome::RolledBack, "{r}");
    assert_pages(&lab, "1.0.0");
    std::fs::remove_dir_all(&work).ok();
}
