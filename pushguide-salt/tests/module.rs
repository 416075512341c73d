//! The salt execution module `module/pushguide.py`: its pure-Python unit tests (no salt needed, but
//! `python3` is: the test fails without it), and its version rules checked against the Rust ones.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::Value;

fn module_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("module")
}

fn python() -> Command {
    let mut c = Command::new("python3");
    c.current_dir(module_dir())
        .env("PYTHONDONTWRITEBYTECODE", "1");
    c
}

fn no_python(e: std::io::Error) -> ! {
    panic!("python3 is needed to test the salt module pushguide.py and could not be started: {e}")
}

#[test]
fn the_python_unit_tests_pass() {
    let out = python()
        .arg("test_pushguide.py")
        .output()
        .unwrap_or_else(|e| no_python(e));
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
    assert!(out.status.success(), "python unit tests failed: {stderr}");
    // unittest's summary: "Ran N tests in …" then "OK"
    let ran: usize = stderr
        .lines()
        .find_map(|l| l.strip_prefix("Ran "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(ran >= 40, "expected the whole suite to run, ran {ran}");
    assert!(
        stderr.lines().any(|l| l.trim() == "OK"),
        "no OK summary: {stderr}"
    );
    assert!(!stderr.contains("skipped="), "a test was skipped: {stderr}");
}

#[test]
fn the_module_is_the_one_the_crate_ships() {
    let on_disk = std::fs::read_to_string(module_dir().join("pushguide.py")).unwrap();
    assert_eq!(on_disk, pushguide_salt::module::SOURCE);
    assert_eq!(pushguide_salt::module::PATH, "_modules/pushguide.py");
    assert!(pushguide_salt::module::SOURCE.contains("__virtualname__ = \"pushguide\""));
    assert!(pushguide_salt::module::SOURCE
        .contains(&format!("PROTOCOL = {}", pushguide_salt::module::PROTOCOL)));
    // no shell, no evaluation of strings
    for banned in [
        "subprocess",
        "os.system",
        "os.popen",
        "eval(",
        "exec(",
        "__import__",
        "compile(",
        "shell=True",
    ] {
        assert!(
            !pushguide_salt::module::SOURCE.contains(banned),
            "the module must not use {banned}"
        );
    }
}

/// Version names and their order: what the module decides equals what pushguide-core decides.
#[test]
fn version_rules_match_pushguide_core() {
    let mut names: Vec<String> = [
        "1.9",
        "1.10",
        "1.10.1",
        "1.2",
        "0.9",
        "1",
        "1.0",
        "1.01",
        "01.1",
        "1.a",
        "1.1",
        "a",
        "A",
        "b1",
        "b10",
        "b9",
        "2.0-rc.2",
        "2.0-rc.10",
        "2.0",
        "2.0+build7",
        "2.0_x",
        "18446744073709551615",
        "18446744073709551616",
        "99999999999999999999999.1",
        "1.0;rm -rf /",
        "../../etc",
        "1..2",
        ".1",
        "-1",
        "_1",
        "1 0",
        "é1",
        "1é",
        "",
        "1.0\u{202e}",
        "x-1",
        "x.1",
        "x_1",
        "x+1",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    names.push("A".repeat(128));
    names.push("A".repeat(129));
    let mut child = python()
        .args(["test_pushguide.py", "--order"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| no_python(e));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(&names).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let strings = |k: &str| -> Vec<String> {
        v[k].as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect()
    };
    let valid: Vec<String> = names
        .iter()
        .filter(|n| pushguide_core::validate::version("v", n).is_ok())
        .cloned()
        .collect();
    assert_eq!(strings("valid"), valid);
    let mut sorted = names.clone();
    sorted.sort_by(|a, b| pushguide_core::steps::version_cmp(a, b));
    assert_eq!(strings("sorted"), sorted);
}
