//! `pushguide install-module` through the real binary: `--print` (no configuration needed), a master
//! that refuses the write or the wheel call (a scripted salt-api answering like salt 3008), an
//! unreachable salt-api, and — with the REAL salt lab (`scripts/salt-lab up`) — the install itself
//! and a target that matches no minion (exit 8). Without the lab the last test skips with a message,
//! unless `PUSHGUIDE_REQUIRE_SALT=1`, where it fails.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use support::{run, write, BIN};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pg-install-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("templates")).unwrap();
    dir
}

fn config(dir: &Path, url: &str, user: &str, eauth: &str) -> PathBuf {
    let config = dir.join("pushguide.toml");
    let url = url
        .split(' ')
        .map(|u| format!("\"{u}\""))
        .collect::<Vec<_>>()
        .join(", ");
    write(
        &config,
        &format!(
            "store = \"state/pushguide.db\"\ntemplates = \"templates\"\n[user]\nname = \"ops\"\n\
             [salt]\nendpoints = [{url}]\neauth = \"{eauth}\"\nuser = \"{user}\"\n\
             password_env = \"PUSHGUIDE_SALT_PASSWORD\"\nrequest_timeout = 10\nconnect_timeout = 2\n"
        ),
    );
    config
}

#[test]
fn print_writes_the_module_source_without_a_config() {
    let out = Command::new(BIN)
        .args([
            "--config",
            "/nonexistent/pushguide.toml",
            "install-module",
            "--print",
        ])
        .env_remove("PUSHGUIDE_CONFIG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        pushguide_salt::module::SOURCE
    );
    assert!(out.stderr.is_empty());
}

/// A salt-api that logs anyone in and answers every `POST /` with `status` and `body`.
fn scripted_salt_api(status: &'static str, body: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut got = Vec::new();
            let mut buf = [0u8; 65536];
            // headers, then Content-Length bytes of body
            let (head_end, len) = loop {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break (0, 0),
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
                if let Some(p) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&got[..p]).to_ascii_lowercase();
                    let len = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0usize);
                    break (p + 4, len);
                }
            };
            while got.len() < head_end + len {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            let login = got.starts_with(b"POST /login");
            let (st, text) = if login {
                (
                    "200 OK",
                    r#"{"return":[{"token":"0123456789abcdef","start":1.0,"expire":999999999999.0,"user":"deploy","eauth":"pam","perms":[]}]}"#,
                )
            } else {
                (status, body)
            };
            let ctype = if text.starts_with('<') {
                "text/html"
            } else {
                "application/json"
            };
            let _ = write!(
                s,
                "HTTP/1.1 {st}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                text.len()
            );
        }
    });
    url
}

#[test]
fn a_master_that_refuses_the_write_is_an_error_naming_it() {
    // salt 3008's answer when the master has no `base` file_roots (captured shape, fixture 115)
    let url = scripted_salt_api(
        "200 OK",
        r#"{"return":[{"tag":"salt/wheel/1","data":{"fun":"wheel.file_roots.write","jid":"1","user":"deploy","return":"Named environment base is not present","success":true}}]}"#,
    );
    let dir = temp_dir("refused");
    let cfg = config(&dir, &url, "deploy", "pam");
    let r = run(
        &cfg,
        &["install-module", "--json"],
        &[("PUSHGUIDE_SALT_PASSWORD", "pw")],
    );
    assert_eq!(r.code, 69, "{r:?}");
    let e = &r.json()["error"];
    assert_eq!(e["kind"], "unavailable");
    let msg = e["message"].as_str().unwrap();
    assert!(
        msg.contains(&url)
            && msg.contains("did not install the pushguide module")
            && msg.contains("Named environment base is not present"),
        "{msg}"
    );
    // two masters, both refusing: one error naming both
    let other = scripted_salt_api(
        "200 OK",
        r#"{"return":[{"tag":"salt/wheel/2","data":{"fun":"wheel.file_roots.write","jid":"2","user":"deploy","return":"Exception occurred in wheel file_roots.write: PermissionError: [Errno 13] Permission denied: '/srv/salt/_modules'","success":false}}]}"#,
    );
    let cfg = config(&dir, &format!("{url} {other}"), "deploy", "pam");
    let r = run(
        &cfg,
        &["install-module"],
        &[("PUSHGUIDE_SALT_PASSWORD", "pw")],
    );
    assert_eq!(r.code, 69, "{r:?}");
    assert!(
        r.stderr.contains("no master wrote the pushguide module")
            && r.stderr.contains(&url)
            && r.stderr.contains(&other)
            && r.stderr.contains("Permission denied")
            && r.stderr.contains("Named environment base is not present"),
        "{}",
        r.stderr
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_user_without_wheel_permission_is_told_so() {
    // salt-api's answer to a token whose user may not call the wheel (fixture 53's page)
    let url = scripted_salt_api(
        "401 Unauthorized",
        "<html><head><title>401 Unauthorized</title></head><body><h2>401 Unauthorized</h2>\
         <p>Authorization error occurred.</p></body></html>",
    );
    let dir = temp_dir("no-wheel");
    let cfg = config(&dir, &url, "deploy", "pam");
    let r = run(
        &cfg,
        &["install-module"],
        &[("PUSHGUIDE_SALT_PASSWORD", "pw")],
    );
    assert_eq!(r.code, 69, "{r:?}");
    assert!(
        r.stderr.contains(&url)
            && r.stderr.contains("@wheel")
            && r.stderr.contains("Authorization error occurred"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("pw\""), "{}", r.stderr);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_unreachable_salt_api_and_a_bad_target() {
    let dir = temp_dir("unreachable");
    let cfg = config(&dir, "http://127.0.0.1:1", "deploy", "pam");
    let env = [("PUSHGUIDE_SALT_PASSWORD", "pw")];
    let r = run(&cfg, &["install-module", "--json"], &env);
    assert_eq!(r.code, 69, "{r:?}");
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("http://127.0.0.1:1"),
        "{}",
        r.stdout
    );
    let r = run(&cfg, &["install-module", "--target", "web-*;reboot"], &env);
    assert_eq!(r.code, 64, "{r:?}");
    assert!(r.stderr.contains("--target"), "{}", r.stderr);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn installs_on_the_real_lab_and_a_target_without_minions_exits_8() {
    let required = std::env::var("PUSHGUIDE_REQUIRE_SALT").as_deref() == Ok("1");
    let get = |v: &str| std::env::var(v).ok().filter(|s| !s.is_empty());
    let vars = [
        "PUSHGUIDE_SALT_URL",
        "PUSHGUIDE_SALT_USER",
        "PUSHGUIDE_SALT_PASSWORD",
        "PUSHGUIDE_SALT_EAUTH",
        "PUSHGUIDE_SALT_MINIONS",
    ];
    let missing: Vec<&str> = vars.into_iter().filter(|v| get(v).is_none()).collect();
    if !missing.is_empty() {
        assert!(
            !required,
            "PUSHGUIDE_REQUIRE_SALT=1 but {} not set",
            missing.join(", ")
        );
        eprintln!(
            "skipping install-module on the salt lab: {} not set (scripts/salt-lab up)",
            missing.join(", ")
        );
        return;
    }
    let dir = temp_dir("lab");
    let cfg = config(
        &dir,
        &get("PUSHGUIDE_SALT_URL").unwrap(),
        &get("PUSHGUIDE_SALT_USER").unwrap(),
        &get("PUSHGUIDE_SALT_EAUTH").unwrap(),
    );
    let r = run(&cfg, &["install-module", "--json"], &[]);
    assert_eq!(r.code, 0, "{r:?}");
    let v = r.json();
    assert_eq!(v["all_installed"], true);
    assert_eq!(v["path"], "_modules/pushguide.py");
    assert!(v["endpoints"][0]["written"]
        .as_str()
        .unwrap()
        .ends_with("/_modules/pushguide.py"));
    let mut minions: Vec<String> = get("PUSHGUIDE_SALT_MINIONS")
        .unwrap()
        .split_whitespace()
        .map(String::from)
        .collect();
    minions.sort();
    let rows = v["minions"].as_array().unwrap();
    assert_eq!(
        rows.iter()
            .map(|m| m["minion"].as_str().unwrap())
            .collect::<Vec<_>>(),
        minions
    );
    for m in rows {
        assert_eq!(m["state"], "installed (protocol 1)", "{m}");
        assert_eq!(m["protocol"], 1);
    }
    // human output, one minion
    let r = run(&cfg, &["install-module", "--target", &minions[0]], &[]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout
            .contains(&format!("{}: installed (protocol 1)", minions[0])),
        "{}",
        r.stdout
    );
    // a second master that refuses the write: listed with its error; the minions still install
    let refusing = scripted_salt_api(
        "200 OK",
        r#"{"return":[{"tag":"salt/wheel/1","data":{"fun":"wheel.file_roots.write","jid":"1","user":"deploy","return":"Named environment base is not present","success":true}}]}"#,
    );
    let two = config(
        &dir,
        &format!("{} {refusing}", get("PUSHGUIDE_SALT_URL").unwrap()),
        &get("PUSHGUIDE_SALT_USER").unwrap(),
        &get("PUSHGUIDE_SALT_EAUTH").unwrap(),
    );
    let r = run(&two, &["install-module", "--json"], &[]);
    assert_eq!(r.code, 0, "{r:?}");
    let v = r.json();
    assert!(v["endpoints"][0]["written"].is_string(), "{v}");
    assert_eq!(v["endpoints"][1]["endpoint"], refusing.as_str());
    assert!(v["endpoints"][1]["written"].is_null());
    let e = v["endpoints"][1]["error"].as_str().unwrap();
    assert!(
        e.contains(&refusing) && e.contains("Named environment base"),
        "{e}"
    );
    let r = run(&two, &["install-module"], &[]);
    assert!(
        r.stdout.contains(&format!("{refusing}: NOT WRITTEN: ")),
        "{}",
        r.stdout
    );
    // no minion matches: written, but not installed anywhere
    let r = run(&cfg, &["install-module", "--target", "nomatch-*"], &[]);
    assert_eq!(r.code, 8, "{r:?}");
    assert!(
        r.stdout.contains("no minion matches `nomatch-*`"),
        "{}",
        r.stdout
    );
    let _ = std::fs::remove_dir_all(&dir);
}
