//! What the real-lab tests share around Tomcat: a WAR built with the JDK's `jar`, a file server the
//! minions fetch artifacts from, and the page a Tomcat serves.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Writes `text` to `path`, creating its directories.
pub fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// Builds `<root>/<dir>/<version>/<app>.war` with the JDK's `jar`: its index page says
/// `<app> version <version>`, its `health.html` says `OK`. Sources go below `work`.
pub fn build_war(work: &Path, root: &Path, dir: &str, app: &str, version: &str) {
    let src = work.join(format!("src-{app}-{version}"));
    write(
        &src.join("WEB-INF/web.xml"),
        "<?xml version=\"1.0\"?>\n<web-app xmlns=\"https://jakarta.ee/xml/ns/jakartaee\" version=\"6.0\"/>\n",
    );
    write(
        &src.join("index.jsp"),
        &format!("<%@ page contentType=\"text/plain\" %>{app} version {version}\n"),
    );
    write(&src.join("health.html"), "OK\n");
    let out = root.join(dir).join(version);
    std::fs::create_dir_all(&out).unwrap();
    let status = Command::new("jar")
        .arg("--create")
        .arg("--file")
        .arg(out.join(format!("{app}.war")))
        .arg("-C")
        .arg(&src)
        .arg(".")
        .status()
        .expect("the JDK's jar tool");
    assert!(status.success(), "jar failed");
}

/// Serves the files below `root` (paths without `..`) on a free loopback port until the process
/// ends; returns the port.
pub fn serve_files(root: PathBuf) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let root = root.clone();
            std::thread::spawn(move || answer(stream, &root));
        }
    });
    port
}

fn answer(mut s: TcpStream, root: &Path) {
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).unwrap_or(0);
    let req = String::from_utf8_lossy(&buf[..n]);
    let name = req
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .trim_start_matches('/')
        .to_owned();
    let resp = match (name.contains(".."), std::fs::read(root.join(&name))) {
        (false, Ok(body)) => {
            let mut r = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )
            .into_bytes();
            r.extend(body);
            r
        }
        _ => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
    };
    let _ = s.write_all(&resp);
}

/// What the Tomcat on `port` answers for `/<context>/` (status line, headers and body), or
/// `connection refused`.
pub fn page(port: &str, context: &str) -> String {
    let Ok(mut s) = TcpStream::connect(format!("127.0.0.1:{port}")) else {
        return "connection refused".into();
    };
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = write!(
        s,
        "GET /{context}/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    );
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// The real salt lab and its Tomcats (`scripts/salt-lab env`, `scripts/tomcat-lab env`).
pub struct Lab {
    /// The lab's directory (pillar roots, minion roots).
    pub dir: PathBuf,
    /// The first salt-api.
    pub url: String,
    /// Every salt-api of the lab (a second one when it runs two masters).
    pub endpoints: Vec<String>,
    /// The salt-api user and its eauth.
    pub user: String,
    pub eauth: String,
    /// The minions, one Tomcat each, in the same order as `ports`.
    pub minions: Vec<String>,
    pub tomcat_dir: String,
    pub ports: Vec<String>,
}

/// The lab from the environment; `None` (the test `test` skips, saying so) when a setting is
/// missing, unless `PUSHGUIDE_REQUIRE_SALT=1` makes that a failure.
pub fn lab(test: &str) -> Option<Lab> {
    let required = std::env::var("PUSHGUIDE_REQUIRE_SALT").as_deref() == Ok("1");
    let get = |v: &str| std::env::var(v).ok().filter(|s| !s.is_empty());
    let missing: Vec<&str> = [
        "PUSHGUIDE_SALT_LAB_DIR",
        "PUSHGUIDE_SALT_URL",
        "PUSHGUIDE_SALT_USER",
        "PUSHGUIDE_SALT_PASSWORD",
        "PUSHGUIDE_SALT_EAUTH",
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
        eprintln!(
            "SKIPPED {test}: {} not set (scripts/salt-lab up, scripts/tomcat-lab up)",
            missing.join(", ")
        );
        return None;
    }
    let list = |v: &str| -> Vec<String> {
        get(v)
            .unwrap_or_default()
            .split_whitespace()
            .map(String::from)
            .collect()
    };
    let minions = list("PUSHGUIDE_SALT_MINIONS");
    assert_eq!(
        list("PUSHGUIDE_TOMCAT_IDS"),
        minions,
        "one Tomcat per minion, in the same order"
    );
    Some(Lab {
        dir: PathBuf::from(get("PUSHGUIDE_SALT_LAB_DIR").unwrap()),
        url: get("PUSHGUIDE_SALT_URL").unwrap(),
        endpoints: ["PUSHGUIDE_SALT_URL", "PUSHGUIDE_SALT_URL_2"]
            .into_iter()
            .filter_map(get)
            .collect(),
        user: get("PUSHGUIDE_SALT_USER").unwrap(),
        eauth: get("PUSHGUIDE_SALT_EAUTH").unwrap(),
        minions,
        tomcat_dir: get("PUSHGUIDE_TOMCAT_DIR").unwrap(),
        ports: list("PUSHGUIDE_TOMCAT_PORTS"),
    })
}
