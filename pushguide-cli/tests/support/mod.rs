//! Shared by the CLI end-to-end tests: a temp dir with config, templates and a directory CI source,
//! a runner for the real binary, and a lab with the fake salt-api.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::print_stderr)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use sha2::{Digest, Sha256};

pub mod lab;
pub mod tomcat;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_pushguide");

/// A result of one run of the binary.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// Runs `pushguide --config <config> <args>` with extra environment variables.
pub fn run(config: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(BIN);
    cmd.arg("--config").arg(config).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.env_remove("PUSHGUIDE_CONFIG");
    let r: Run = cmd.output().unwrap().into();
    eprintln!(
        "$ pushguide {} -> {}\n{}{}",
        args.join(" "),
        r.code,
        r.stderr,
        if r.stdout.len() < 12000 {
            &r.stdout
        } else {
            "(long stdout)\n"
        }
    );
    r
}

/// [`run`] with `input` on stdin.
pub fn run_with_stdin(config: &Path, args: &[&str], env: &[(&str, &str)], input: &str) -> Run {
    use std::process::Stdio;
    let mut cmd = Command::new(BIN);
    cmd.arg("--config").arg(config).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.env_remove("PUSHGUIDE_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).unwrap();
    drop(stdin);
    let r: Run = child.wait_with_output().unwrap().into();
    eprintln!(
        "$ pushguide {} <<< {input:?} -> {}\n{}{}",
        args.join(" "),
        r.code,
        r.stderr,
        r.stdout
    );
    r
}

/// Writes `text` to `path`, creating directories.
pub fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// Writes a WAR (a zip) for `version` into `<root>/<template>/<version>/shop.war` and returns its
/// SHA-256.
pub fn war(root: &Path, template: &str, version: &str) -> String {
    let dir = root.join(template).join(version);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("shop.war");
    let file = std::fs::File::create(&path).unwrap();
    let mut zip = zip::ZipWriter::new(file);
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.add_directory("WEB-INF/", opts).unwrap();
    zip.start_file("WEB-INF/web.xml", opts).unwrap();
    zip.write_all(b"<web-app/>\n").unwrap();
    zip.start_file("index.jsp", opts).unwrap();
    zip.write_all(format!("shop version {version}\n").as_bytes())
        .unwrap();
    zip.finish().unwrap();
    sha256(&path)
}

/// The SHA-256 of a file, lower-case hex.
pub fn sha256(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap();
    Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A config file in `dir` (store, templates, artifacts, cmdb relative to it).
pub fn config(
    dir: &Path,
    endpoint: &str,
    eauth: &str,
    user: &str,
    groups: &[&str],
    url_base: &str,
    cmdb: bool,
) -> PathBuf {
    let groups: Vec<String> = groups.iter().map(|g| format!("\"{g}\"")).collect();
    let mut text = format!(
        "store = \"state/pushguide.db\"\ntemplates = \"templates\"\n\
         [user]\nname = \"{user}\"\ngroups = [{}]\n\
         [salt]\nendpoints = [\"{endpoint}\"]\neauth = \"{eauth}\"\nuser = \"pushguide\"\n\
         password_env = \"PG_CLI_TEST_PASSWORD\"\njob_timeout = 30\n\
         [ci]\ntype = \"directory\"\npath = \"artifacts\"\nurl_base = \"{url_base}\"\n\
         [monitor]\ntimeout_secs = 5\n",
        groups.join(", ")
    );
    if cmdb {
        text.push_str("[cmdb]\ntype = \"static\"\npath = \"cmdb.toml\"\n");
    }
    let name = format!("pushguide-{user}.toml");
    let path = dir.join(name);
    write(&path, &text);
    path
}

/// Waits until the deployment holding `template`'s lease in `store` has started its first batch:
/// staging (every host, before the batches) is over and hosts are being touched.
pub fn wait_for_first_batch(store: &pushguide_store::SqliteStore, template: &str) {
    let begun = std::time::Instant::now();
    loop {
        if let Some(lease) = store.lease(template).unwrap() {
            let rows = store.host_results(&lease.holder).unwrap_or_default();
            if rows.iter().any(|r| r.batch.is_some()) {
                return;
            }
        }
        assert!(
            begun.elapsed() < std::time::Duration::from_secs(20),
            "no batch started"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
