//! Error messages of the `pushguide` binary (as a process) echo values quoted, escaped and cut: a 100 KB
//! template name, a 10 MB one-line template, escape sequences, newlines and right-to-left overrides
//! never reach the terminal or the JSON whole or raw.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_pushguide");

fn setup(dir: &Path) {
    std::fs::create_dir_all(dir.join("templates")).unwrap();
    std::fs::write(
        dir.join("pushguide.toml"),
        "store = \"state/pushguide.db\"\ntemplates = \"templates\"\n[user]\nname = \"alice\"\n\
         [salt]\nendpoints = [\"http://127.0.0.1:9\"]\neauth = \"pam\"\nuser = \"x\"\npassword_env = \"PG_UNSET\"\n",
    )
    .unwrap();
}

/// Runs the binary; returns (exit code, stdout, stderr) as raw bytes.
fn run(dir: &Path, args: &[&str]) -> (i32, Vec<u8>, Vec<u8>) {
    let out = Command::new(BIN)
        .current_dir(dir)
        .arg("--config")
        .arg(dir.join("pushguide.toml"))
        .args(args)
        .env_remove("PUSHGUIDE_LOG")
        .output()
        .unwrap();
    (out.status.code().unwrap_or(-1), out.stdout, out.stderr)
}

/// Bounded, and no raw control character (other than line ends) or bidi/invisible character.
fn assert_clean(what: &str, bytes: &[u8], max: usize) {
    assert!(bytes.len() <= max, "{what}: {} bytes", bytes.len());
    let text = String::from_utf8_lossy(bytes);
    let bad: Vec<char> = text
        .chars()
        .filter(|&c| c != '\n' && pushguide_core::validate::is_hidden(c))
        .collect();
    assert!(bad.is_empty(), "{what}: raw {bad:?} in {text}");
}

#[test]
fn a_hundred_kilobyte_template_name_is_cut() {
    let tmp = tempfile::tempdir().unwrap();
    setup(tmp.path());
    let name = "n".repeat(100 * 1024);
    let (code, out, err) = run(tmp.path(), &["show", &name]);
    assert_eq!(code, 67, "{}", String::from_utf8_lossy(&err));
    assert_clean("stderr", &err, 2048);
    assert!(String::from_utf8_lossy(&err).contains("(102400 bytes)"));
    assert!(out.is_empty());
    let (code, out, _) = run(tmp.path(), &["--json", "show", &name]);
    assert_eq!(code, 67);
    assert_clean("json", &out, 2048);
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["error"]["kind"], "unknown-template");
    // escape sequences and a right-to-left override in the name
    let (_, _, err) = run(
        tmp.path(),
        &["show", "a\u{1b}]0;x\u{7}\u{1b}[2J\u{202e}b\nc"],
    );
    assert_clean("stderr", &err, 2048);
    assert!(String::from_utf8_lossy(&err).contains(r"a\u{1b}]0;x\u{7}\u{1b}[2J\u{202e}b\nc"));
    let (_, _, err) = run(tmp.path(), &["log", &"\u{1b}[31m".repeat(20_000)]);
    assert_clean("stderr", &err, 4096);
}

#[test]
fn a_ten_megabyte_one_line_template_gets_a_short_error() {
    let tmp = tempfile::tempdir().unwrap();
    setup(tmp.path());
    let big = format!("name = \"{}\"", "\u{1b}[2J".repeat(10 * 1024 * 1024 / 4));
    std::fs::write(tmp.path().join("templates/big.toml"), big).unwrap();
    let bad = "name = \"shop\u{1b}[2J\u{202e}\"\n[targets]\nminions = [\"web-01\"]\n[project]\nkind = \"java-tomcat\"\ncontext = \"shop\"\n";
    std::fs::write(tmp.path().join("templates/bad.toml"), bad).unwrap();
    let (code, out, err) = run(tmp.path(), &["show", "big"]);
    assert_eq!(code, 64, "{}", String::from_utf8_lossy(&err));
    assert_clean("stderr", &err, 2048);
    assert!(String::from_utf8_lossy(&err).contains("at most 4194304 bytes"));
    assert!(out.is_empty());
    let (_, out, err) = run(tmp.path(), &["--json", "show", "big"]);
    assert_clean("json", &out, 2048);
    assert_clean("stderr", &err, 2048);
    let (_, out, err) = run(tmp.path(), &["--json", "templates"]);
    assert_clean("json", &out, 8192);
    assert_clean("stderr", &err, 8192);
    let (_, out, err) = run(tmp.path(), &["templates"]);
    assert_clean("stdout", &out, 8192);
    assert_clean("stderr", &err, 8192);
    let (_, _, err) = run(tmp.path(), &["show", "bad"]);
    assert_clean("stderr", &err, 2048);
    assert!(
        String::from_utf8_lossy(&err).contains(r"\u{1b}[2J\u{202e}"),
        "{}",
        String::from_utf8_lossy(&err)
    );
}

/// Arguments the command line parser refuses are echoed by it: escaped and cut as well, with and
/// without `--json`; and `--batch`, `--tz` values too (a multi-byte `--tz` is refused, no panic).
#[test]
fn command_line_values_are_echoed_escaped_and_cut() {
    let tmp = tempfile::tempdir().unwrap();
    setup(tmp.path());
    let hostile = format!("--{}\u{1b}[2J\u{202e}", "x".repeat(100_000));
    let (code, out, err) = run(tmp.path(), &["templates", &hostile]);
    assert_eq!(code, 64);
    assert_clean("stderr", &err, 20_000);
    assert_clean("stdout", &out, 20_000);
    let (code, out, err) = run(tmp.path(), &["--json", "templates", &hostile]);
    assert_eq!(code, 64);
    assert_clean("stdout", &out, 20_000);
    assert_clean("stderr", &err, 20_000);
    let (code, _, err) = run(
        tmp.path(),
        &[
            "deploy",
            "shop",
            "1.0",
            "--batch",
            &format!("\u{1b}]0;{}", "9".repeat(100_000)),
        ],
    );
    assert_ne!(code, 101);
    assert_clean("stderr", &err, 20_000);
    let (code, _, err) = run(tmp.path(), &["stats", "--tz", "+aé1"]);
    assert_eq!(code, 64, "{}", String::from_utf8_lossy(&err));
    assert_clean("stderr", &err, 20_000);
}
