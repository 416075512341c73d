//! `pushguide` (the real binary) with `[ci] type = "maven"`: a Maven repository layout written
//! here, served over real HTTP with basic authentication, in front of the fake salt-api and its
//! simulated fleet. A release is staged into the salt fileserver directory and deployed from
//! there; hostile metadata stops the command before any salt call.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod support;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, Method, Response, StatusCode, Uri};
use support::lab::{shop_template, Lab, PASSWORD};
use support::{run, sha256, write, Run};

const USER: &str = "deployer";
const REPO_PASSWORD: &str = "maven-pa55-for-cli";
const DIR: &str = "com/example/shop";

#[derive(Clone)]
struct Repo {
    root: PathBuf,
    log: Arc<Mutex<Vec<String>>>,
}

/// Static files below `/maven/`, basic auth, `Range` support.
async fn serve(
    State(r): State<Repo>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response<Body> {
    r.log
        .lock()
        .unwrap()
        .push(format!("{method} {}", uri.path()));
    let empty = |s: StatusCode| Response::builder().status(s).body(Body::empty()).unwrap();
    // base64("deployer:maven-pa55-for-cli")
    let want = "Basic ZGVwbG95ZXI6bWF2ZW4tcGE1NS1mb3ItY2xp";
    if headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        != Some(want)
    {
        return empty(StatusCode::UNAUTHORIZED);
    }
    let Some(rel) = uri.path().strip_prefix("/maven/") else {
        return empty(StatusCode::NOT_FOUND);
    };
    if rel.split('/').any(|c| c == "..") {
        return empty(StatusCode::BAD_REQUEST);
    }
    let Ok(bytes) = std::fs::read(r.root.join(rel)) else {
        return empty(StatusCode::NOT_FOUND);
    };
    let b = Response::builder().header(header::ACCEPT_RANGES, "bytes");
    if let Some(spec) = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("bytes="))
    {
        let (a, z) = spec.split_once('-').unwrap();
        let (a, z): (usize, usize) = (a.parse().unwrap(), z.parse().unwrap());
        let part = bytes[a..=z.min(bytes.len() - 1)].to_vec();
        return b
            .status(StatusCode::PARTIAL_CONTENT)
            .header(
                header::CONTENT_RANGE,
                format!("bytes {a}-{z}/{}", bytes.len()),
            )
            .header(header::CONTENT_LENGTH, part.len())
            .body(Body::from(part))
            .unwrap();
    }
    let b = b
        .status(StatusCode::OK)
        .header(header::CONTENT_LENGTH, bytes.len());
    if method == Method::HEAD {
        b.body(Body::empty()).unwrap()
    } else {
        b.body(Body::from(bytes)).unwrap()
    }
}

fn metadata(versions: &[&str]) -> String {
    let list: String = versions
        .iter()
        .map(|v| format!("<version>{v}</version>"))
        .collect();
    format!(
        "<?xml version=\"1.0\"?>\n<metadata><groupId>com.example</groupId><artifactId>shop</artifactId>\
         <versioning><versions>{list}</versions></versioning></metadata>\n"
    )
}

/// The lab's WARs of `shop` 1.0.0 and 2.0.0 laid out as `com.example:shop`, with `.sha256`
/// files, and the artifact's `maven-metadata.xml`.
fn write_repo(lab: &Lab, root: &Path) {
    for v in ["1.0.0", "2.0.0"] {
        let war = std::fs::read(lab.dir.join(format!("artifacts/shop/{v}/shop.war"))).unwrap();
        let path = root.join(format!("{DIR}/{v}/shop-{v}.war"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &war).unwrap();
        std::fs::write(format!("{}.sha256", path.display()), sha256(&path)).unwrap();
    }
    write(
        &root.join(format!("{DIR}/maven-metadata.xml")),
        &metadata(&["1.0.0", "2.0.0"]),
    );
}

/// The lab's config with a maven `[ci]` (basic auth, staging into `<lab>/salt/pushguide-maven`).
fn maven_config(lab: &Lab, url: &str) -> PathBuf {
    let s = lab.fake().settings();
    let text = format!(
        "store = \"state/pushguide.db\"\ntemplates = \"templates\"\n\
         [user]\nname = \"alice\"\ngroups = [\"ops\"]\n\
         [salt]\nendpoints = [\"{}\"]\neauth = \"{}\"\nuser = \"pushguide\"\n\
         password_env = \"PG_CLI_TEST_PASSWORD\"\njob_timeout = 30\n\
         [ci]\ntype = \"maven\"\nurl = \"{url}\"\ngroup = \"com.example\"\npackaging = \"war\"\n\
         username = \"{USER}\"\npassword_env = \"PG_MAVEN_TEST_PASSWORD\"\n\
         stage_dir = \"salt/pushguide-maven\"\nstage_url = \"salt://pushguide-maven/\"\n",
        s.endpoints[0], s.eauth
    );
    let path = lab.dir.join("pushguide-maven.toml");
    write(&path, &text);
    path
}

const ENV: &[(&str, &str)] = &[
    ("PG_CLI_TEST_PASSWORD", PASSWORD),
    ("PG_MAVEN_TEST_PASSWORD", REPO_PASSWORD),
];

#[test]
fn deploy_from_a_maven_repository_with_credentials_through_a_staged_copy() {
    let lab = Lab::builder()
        .template("shop", &shop_template(&["web-01", "web-02"], false, false))
        .hosts(&["web-01", "web-02"])
        .start();
    let root = lab.dir.join("repo");
    write_repo(&lab, &root);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let repo = Repo {
        root: root.clone(),
        log: log.clone(),
    };
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}/maven/", listener.local_addr().unwrap());
    rt.spawn(async move {
        let app = axum::Router::new().fallback(serve).with_state(repo);
        let _ = axum::serve(listener, app).await;
    });
    let config = maven_config(&lab, &url);
    let pg = |args: &[&str]| -> Run { run(&config, args, ENV) };

    // versions: newest first, from maven-metadata.xml
    let r = pg(&["versions", "shop", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["versions"], serde_json::json!(["2.0.0", "1.0.0"]));
    assert!(!r.stdout.contains(REPO_PASSWORD) && !r.stderr.contains(REPO_PASSWORD));

    // without the password the repository refuses, and the error names the config key
    let r = run(&config, &["versions", "shop"], &ENV[..1]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("ci.password_env"), "{}", r.stderr);

    // a plan copies nothing and shows where the minions will fetch from
    let staged = lab
        .dir
        .join(format!("salt/pushguide-maven/{DIR}/2.0.0/shop-2.0.0.war"));
    let r = pg(&["plan", "shop", "2.0.0", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains(&format!(
        "salt://pushguide-maven/{DIR}/2.0.0/shop-2.0.0.war"
    )));
    assert!(!staged.exists());

    // deploy: staged into the fileserver directory, then fetched by the minions through salt://
    lab.serving("2.0.0");
    lab.fleet.clear_requests();
    let r = pg(&["deploy", "shop", "2.0.0", "--json"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(r.json()["outcome"], "succeeded");
    assert_eq!(
        std::fs::read(&staged).unwrap(),
        std::fs::read(root.join(format!("{DIR}/2.0.0/shop-2.0.0.war"))).unwrap()
    );
    let reqs = lab.fleet.step_requests();
    let get = reqs.iter().find(|r| r.fun == "cp.get_url").unwrap();
    assert_eq!(
        get.call.arg[0],
        serde_json::json!(format!("salt://pushguide-maven/{DIR}/2.0.0/shop-2.0.0.war"))
    );
    // (the fleet answers file.get_hash with the WAR's SHA-256, which the deployment compares with
    // the artifact's: it succeeded, so the checksum taken from the repository is the file's)
    // the WAR was read in ranges (HEAD, central directory) and downloaded once, for the copy
    let war_gets = log
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.starts_with("GET") && l.ends_with("2.0.0/shop-2.0.0.war"))
        .count();
    assert!(war_gets >= 2, "{:?}", log.lock().unwrap());

    // hostile metadata: a clear error naming the value, and nothing reaches salt
    for (meta, says) in [
        (
            metadata(&["1.0.0", "2.0.0", "3.0;reboot"]),
            "\"3.0;reboot\"",
        ),
        (
            metadata(&["1.0.0", "2.0.0", "../../../etc"]),
            "\"../../../etc\"",
        ),
        (
            "<?xml version=\"1.0\"?><!DOCTYPE m [<!ENTITY a \"aaaa\">]><metadata>&a;</metadata>"
                .to_owned(),
            "DOCTYPE",
        ),
    ] {
        write(&root.join(format!("{DIR}/maven-metadata.xml")), &meta);
        lab.fake().reset_request_count();
        lab.fleet.clear_requests();
        let r = pg(&["deploy", "shop", "1.0.0"]);
        assert_ne!(r.code, 0, "{}", r.stdout);
        assert!(r.stderr.contains(says), "{says}: {}", r.stderr);
        assert_eq!(lab.fake().request_count().total(), 0, "salt-api was called");
        assert!(lab.fleet.requests().is_empty());
    }
    // a hostile version asked for on the command line never gets that far either
    let r = pg(&["deploy", "shop", "1.0;reboot"]);
    assert_eq!(r.code, 64, "{}", r.stderr);
    assert!(lab.fleet.requests().is_empty());
    drop(rt);
}

#[test]
fn the_publish_page_lists_the_repository_versions_with_size_and_checksum() {
    let lab = Lab::builder()
        .template("shop", &shop_template(&["web-01"], false, false))
        .hosts(&["web-01"])
        .start();
    let root = lab.dir.join("repo");
    write_repo(&lab, &root);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let repo = Repo {
        root: root.clone(),
        log: Arc::new(Mutex::new(Vec::new())),
    };
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}/maven/", listener.local_addr().unwrap());
    rt.spawn(async move {
        let app = axum::Router::new().fallback(serve).with_state(repo);
        let _ = axum::serve(listener, app).await;
    });
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = maven_config(&lab, &url);
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!("[server]\nlisten = \"127.0.0.1:{port}\"\n"));
    write(&config, &text);

    // an API token for alice (in ops, a deployer of shop)
    let mut add = std::process::Command::new(support::BIN)
        .arg("--config")
        .arg(&config)
        .args(["user", "add", "alice", "--groups", "ops"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut add.stdin.take().unwrap(), b"alice-pw\n").unwrap();
    assert!(add.wait().unwrap().success());
    let r = run(
        &config,
        &["--json", "token", "add", "alice", "--label", "t"],
        ENV,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let token = r.json()["token"].as_str().unwrap().to_owned();

    let mut server = std::process::Command::new(support::BIN)
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .envs(ENV.iter().copied())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let page = rt.block_on(async {
        let client = reqwest::Client::new();
        let begun = std::time::Instant::now();
        loop {
            let res = client
                .get(format!("http://127.0.0.1:{port}/api/v1/templates/shop"))
                .bearer_auth(&token)
                .send()
                .await;
            if let Ok(res) = res {
                assert_eq!(res.status(), 200);
                break res.json::<serde_json::Value>().await.unwrap();
            }
            assert!(
                begun.elapsed() < std::time::Duration::from_secs(30),
                "never listened"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    });
    server.kill().unwrap();
    server.wait().unwrap();
    assert_eq!(page["versions_error"], serde_json::Value::Null, "{page}");
    let versions = page["versions"].as_array().unwrap();
    let names: Vec<&str> = versions
        .iter()
        .map(|v| v["version"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["2.0.0", "1.0.0"]);
    for v in versions {
        let war = root.join(format!(
            "{DIR}/{0}/shop-{0}.war",
            v["version"].as_str().unwrap()
        ));
        assert_eq!(v["sha256"], serde_json::json!(sha256(&war)), "{page}");
        assert_eq!(
            v["size"],
            serde_json::json!(std::fs::metadata(&war).unwrap().len())
        );
    }
    drop(rt);
}
