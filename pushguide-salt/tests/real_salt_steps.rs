//! The pushguide salt module on a REAL salt stack (`scripts/salt-lab up`, then
//! `. "$(scripts/salt-lab env --path)"`): installed through [`SaltApi::install_module`], then
//! `pushguide.steps` jobs through the client's normal call path. Without the `PUSHGUIDE_SALT_*`
//! variables each test prints a skip message, unless `PUSHGUIDE_REQUIRE_SALT=1`, where it fails.
//!
//! The tests run one at a time (they count the jobs in the master's job cache).
#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pushguide_core::{MinionId, Outcome, SaltCall, TargetExpr, TargetType, Transport};
use pushguide_salt::{module, MinionInstall, SaltApi, SaltApiSettings};
use serde_json::{json, Value};

/// One test at a time: job counts and the installed module are shared.
static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
static INSTALLED: AtomicBool = AtomicBool::new(false);

struct Lab {
    api: SaltApi,
    minions: Vec<MinionId>,
    dir: PathBuf,
}

/// The lab's client and minions, or `None` (skip) when the lab is not configured.
fn lab(test: &str) -> Option<Lab> {
    let required = std::env::var("PUSHGUIDE_REQUIRE_SALT").as_deref() == Ok("1");
    let settings = SaltApiSettings::from_env().and_then(|s| {
        let minions = std::env::var("PUSHGUIDE_SALT_MINIONS")
            .ok()
            .filter(|m| !m.trim().is_empty())
            .ok_or(pushguide_salt::SettingsError::Missing(
                "PUSHGUIDE_SALT_MINIONS",
            ))?;
        let dir = std::env::var("PUSHGUIDE_SALT_LAB_DIR")
            .ok()
            .filter(|d| !d.is_empty())
            .ok_or(pushguide_salt::SettingsError::Missing(
                "PUSHGUIDE_SALT_LAB_DIR",
            ))?;
        Ok((s, minions, dir))
    });
    match settings {
        Ok((mut s, minions, dir)) => {
            // one master: its job cache is the one counted
            s.endpoints.truncate(1);
            s.request_timeout = Duration::from_secs(30);
            let minions = minions
                .split_whitespace()
                .map(|m| MinionId::new(m).expect("valid minion id in PUSHGUIDE_SALT_MINIONS"))
                .collect();
            Some(Lab {
                api: SaltApi::new(s).expect("valid settings"),
                minions,
                dir: PathBuf::from(dir),
            })
        }
        Err(e) if required => panic!("PUSHGUIDE_REQUIRE_SALT=1 but {e}"),
        Err(e) => {
            eprintln!(
                "skipping {test}: no salt lab ({e}); run scripts/salt-lab up and source its env"
            );
            None
        }
    }
}

fn glob_all() -> TargetExpr {
    TargetExpr {
        expression: "*".into(),
        tgt_type: TargetType::Glob,
    }
}

async fn ensure_installed(lab: &Lab) {
    if INSTALLED.load(Ordering::SeqCst) {
        return;
    }
    let r = lab.api.install_module(&glob_all()).await.expect("install");
    assert!(r.all_installed(), "{r:?}");
    INSTALLED.store(true, Ordering::SeqCst);
}

/// Each minion's own deploy root (its grain `lab_root`), with a fresh directory for `test` in it.
async fn roots(lab: &Lab, test: &str) -> Vec<PathBuf> {
    let mut r = lab
        .api
        .call(
            &lab.minions,
            &SaltCall::read("grains.get")
                .arg("lab_root")
                .timeout(Duration::from_secs(30)),
        )
        .await
        .expect("grains.get");
    lab.minions
        .iter()
        .map(|m| {
            let root = match r.take(m) {
                Outcome::Ok { value } => value.as_str().unwrap().to_owned(),
                other => panic!("{m}: lab_root: {other:?}"),
            };
            assert!(!root.is_empty(), "{m} has no lab_root grain");
            let dir = Path::new(&root).join(format!("steps-{test}"));
            let _ = std::fs::remove_dir_all(&dir);
            dir
        })
        .collect()
}

/// The minion jobs in the master's job cache (`.load.p` files); runner and wheel jobs (the
/// client's `GET /jobs/<jid>` fallback, the install) are left out.
fn minion_jobs(lab: &Lab) -> Vec<(PathBuf, Vec<u8>)> {
    let cache = lab.dir.join("master-1/cache/jobs");
    let mut out = Vec::new();
    for a in std::fs::read_dir(&cache).into_iter().flatten().flatten() {
        for b in std::fs::read_dir(a.path()).into_iter().flatten().flatten() {
            let load = b.path().join(".load.p");
            if let Ok(bytes) = std::fs::read(&load) {
                let is = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
                if !(is(b"runner.") || is(b"wheel.")) {
                    out.push((load, bytes));
                }
            }
        }
    }
    out
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Runs `pushguide.steps` with `plans`/`hosts` on `targets` and checks that it was ONE salt job:
/// exactly one new minion job in the master's job cache, with the returned jid.
async fn steps_job(lab: &Lab, targets: &[MinionId], plans: Value, hosts: Value) -> Vec<Value> {
    timed_steps_job(lab, targets, plans, hosts).await.0
}

/// [`steps_job`] and the wall time of the call through the client.
async fn timed_steps_job(
    lab: &Lab,
    targets: &[MinionId],
    plans: Value,
    hosts: Value,
) -> (Vec<Value>, Duration) {
    let before: Vec<PathBuf> = minion_jobs(lab).into_iter().map(|(p, _)| p).collect();
    let call = SaltCall::mutate("pushguide.steps")
        .kwarg("plans", plans)
        .kwarg("hosts", hosts)
        .timeout(Duration::from_secs(60));
    let started = Instant::now();
    let mut r = lab.api.call(targets, &call).await.expect("pushguide.steps");
    let took = started.elapsed();
    let jid = r.jid.clone().expect("a jid");
    // the job cache is written as the job is published; give the returns' writes a moment too
    tokio::time::sleep(Duration::from_millis(300)).await;
    let new: Vec<_> = minion_jobs(lab)
        .into_iter()
        .filter(|(p, _)| !before.contains(p))
        .collect();
    assert_eq!(
        new.len(),
        1,
        "expected exactly one salt job, found {:?}",
        new.iter().map(|(p, _)| p).collect::<Vec<_>>()
    );
    assert!(contains(&new[0].1, &jid), "the new job is not {jid}");
    assert!(contains(&new[0].1, "pushguide.steps"));
    let rets = targets
        .iter()
        .map(|m| match r.take(m) {
            Outcome::Ok { value } => {
                assert_eq!(value["pushguide"], 1, "{value}");
                assert_eq!(value["minion"], m.as_str(), "{value}");
                value
            }
            other => panic!("{m}: pushguide.steps is not Ok: {other:?}"),
        })
        .collect();
    (rets, took)
}

fn path(p: &Path) -> String {
    p.to_str().unwrap().to_owned()
}

fn funs(ret: &Value) -> Vec<&str> {
    ret["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["fun"].as_str().unwrap())
        .collect()
}

fn oks(ret: &Value) -> Vec<bool> {
    ret["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["ok"].as_bool().unwrap())
        .collect()
}

#[tokio::test]
async fn install_module_writes_syncs_and_every_minion_answers_protocol_1() {
    let Some(lab) = lab("install_module") else {
        return;
    };
    let _g = LOCK.lock().await;
    let started = Instant::now();
    let r = lab.api.install_module(&glob_all()).await.expect("install");
    eprintln!("install_module took {:?}: {r:?}", started.elapsed());
    assert_eq!(r.endpoints.len(), 1);
    let written = r.endpoints[0].result.clone().expect("written");
    assert!(written.ends_with("/_modules/pushguide.py"), "{written}");
    assert_eq!(std::fs::read_to_string(&written).unwrap(), module::SOURCE);
    let mut want = lab.minions.clone();
    want.sort();
    assert_eq!(r.minions.keys().cloned().collect::<Vec<_>>(), want);
    for (m, state) in &r.minions {
        assert_eq!(state, &MinionInstall::Installed { protocol: 1 }, "{m}");
        assert_eq!(state.to_string(), "installed (protocol 1)");
    }
    assert!(r.all_installed());
    INSTALLED.store(true, Ordering::SeqCst);
    // and the version answers through the normal call path
    let mut v = lab
        .api
        .call(
            &lab.minions,
            &SaltCall::read("pushguide.version").timeout(Duration::from_secs(30)),
        )
        .await
        .unwrap();
    for m in &lab.minions {
        assert_eq!(
            v.take(m),
            Outcome::ok(json!({"pushguide": module::PROTOCOL}))
        );
    }
}

/// sha256 of "hello pushguide\n" (`file.write` adds the line end).
const HELLO_SHA256: &str = "4bf1be3c35663dba4318e41395975ec0d0cab8b868478d3de1c4804daa7d5344";

#[tokio::test]
async fn two_minions_run_different_plans_in_one_job() {
    let Some(lab) = lab("two plans") else { return };
    let _g = LOCK.lock().await;
    ensure_installed(&lab).await;
    let roots = roots(&lab, "plans").await;
    let (a, b) = (&roots[0], &roots[1]);
    let rel_a = a.join("releases/1.0.0");
    let rel_b = b.join("releases/2.0.0");
    let plan = |rel: &Path, root: &Path, text: &str| {
        json!([
            {"fun": "pushguide.free_space", "arg": [path(root), 1000]},
            {"fun": "file.makedirs", "arg": [format!("{}/", path(rel))]},
            {"fun": "file.write", "arg": [path(&rel.join("app.txt")), text]},
            {"fun": "file.symlink", "arg": [path(rel), path(&root.join("current"))],
             "kwarg": {"force": true}, "check": "true"},
            {"fun": "file.readlink", "arg": [path(&root.join("current"))],
             "check": {"equals": path(rel)}},
        ])
    };
    let hosts = json!({lab.minions[0].as_str(): 0, lab.minions[1].as_str(): 1});
    let rets = steps_job(
        &lab,
        &lab.minions,
        json!([plan(&rel_a, a, "plan a"), plan(&rel_b, b, "plan b")]),
        hosts,
    )
    .await;
    for ret in &rets {
        assert!(ret.get("error").is_none(), "{ret}");
        assert_eq!(oks(ret), [true; 5], "{ret}");
        assert_eq!(
            funs(ret),
            [
                "pushguide.free_space",
                "file.makedirs",
                "file.write",
                "file.symlink",
                "file.readlink"
            ]
        );
        for s in ret["steps"].as_array().unwrap() {
            assert_eq!(s["attempts"], 1, "{s}");
            assert!(s["ms"].as_f64().unwrap() >= 0.0, "{s}");
        }
    }
    assert_eq!(
        std::fs::read_to_string(rel_a.join("app.txt")).unwrap(),
        "plan a\n"
    );
    assert_eq!(
        std::fs::read_to_string(rel_b.join("app.txt")).unwrap(),
        "plan b\n"
    );
    assert_eq!(std::fs::read_link(a.join("current")).unwrap(), rel_a);
    assert_eq!(std::fs::read_link(b.join("current")).unwrap(), rel_b);
    assert!(!a.join("releases/2.0.0").exists() && !b.join("releases/1.0.0").exists());
    for r in &roots {
        let _ = std::fs::remove_dir_all(r);
    }
}

#[tokio::test]
async fn stops_at_the_first_failing_step_skips_with_unless_and_checks_hashes() {
    let Some(lab) = lab("stop, unless, equals") else {
        return;
    };
    let _g = LOCK.lock().await;
    ensure_installed(&lab).await;
    let roots = roots(&lab, "stop").await;
    let root = &roots[0];
    let rel = root.join("releases/1.0.0");
    let file = path(&rel.join("app.txt"));
    let marker = rel.join("after-the-failure");
    let setup = json!([
        {"fun": "file.makedirs", "arg": [format!("{}/", path(&rel))]},
        {"fun": "file.write", "arg": [file, "hello pushguide"]},
    ]);
    let plans = json!([[
        // skipped: the directory exists (a truthy condition)
        {"fun": "cmd.run_all", "arg": ["exit 9"], "kwarg": {"python_shell": true},
         "unless": {"fun": "file.directory_exists", "arg": [path(&rel)]}},
        // runs: the condition fails (no such function)
        {"fun": "test.true", "unless": {"fun": "nosuch.condition"}, "check": "true"},
        {"fun": "file.get_hash", "arg": [file], "kwarg": {"form": "sha256"},
         "check": {"equals": HELLO_SHA256.to_uppercase()}},
        {"fun": "file.get_hash", "arg": [file], "kwarg": {"form": "sha256"},
         "check": {"equals": "0".repeat(64)}},
        {"fun": "file.touch", "arg": [path(&marker)]},
    ]]);
    let one = &lab.minions[..1];
    let hosts = json!({one[0].as_str(): 0});
    steps_job(&lab, one, json!([setup]), hosts.clone()).await;
    let rets = steps_job(&lab, one, plans, hosts).await;
    let ret = &rets[0];
    assert!(ret.get("error").is_none(), "{ret}");
    assert_eq!(
        funs(ret),
        ["cmd.run_all", "test.true", "file.get_hash", "file.get_hash"],
        "{ret}"
    );
    assert_eq!(oks(ret), [true, true, true, false], "{ret}");
    let steps = ret["steps"].as_array().unwrap();
    assert_eq!(steps[0]["skipped"], true);
    assert_eq!(steps[0]["attempts"], 0);
    assert_eq!(steps[1]["skipped"], false);
    assert_eq!(steps[2]["ret"], HELLO_SHA256);
    assert_eq!(
        steps[3]["error"],
        format!("expected {}, got \"{HELLO_SHA256}\"", "0".repeat(64))
    );
    assert!(!marker.exists(), "the step after the failure ran");
    let _ = std::fs::remove_dir_all(root);
}

/// An HTTP server on 127.0.0.1 that answers 503 `times` times, then 200 `ready`.
fn flaky_server(times: usize) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/health", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let seen = hits.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let mut buf = [0u8; 4096];
            let mut got = Vec::new();
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            let n = seen.fetch_add(1, Ordering::SeqCst);
            let (status, body) = if n < times {
                ("503 Service Unavailable", "starting")
            } else {
                ("200 OK", "status: ready")
            };
            let _ = write!(
                s,
                "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (url, hits)
}

#[tokio::test]
async fn retries_an_http_check_until_the_server_answers() {
    let Some(lab) = lab("retry + http") else {
        return;
    };
    let _g = LOCK.lock().await;
    ensure_installed(&lab).await;
    let (url, hits) = flaky_server(2);
    let one = &lab.minions[..1];
    let plans = json!([[{
        "fun": "http.query",
        "arg": [url],
        "kwarg": {"status": true, "text": true},
        "check": {"http": {"status": 200, "body": "ready"}},
        "retry": {"attempts": 5, "interval": 0.2, "max_interval": 1.0, "within": 20.0},
    }]]);
    let rets = steps_job(&lab, one, plans, json!({one[0].as_str(): 0})).await;
    let s = &rets[0]["steps"][0];
    assert_eq!(s["ok"], true, "{s}");
    assert_eq!(s["attempts"], 3, "{s}");
    assert_eq!(s["ret"]["status"], 200, "{s}");
    assert_eq!(hits.load(Ordering::SeqCst), 3);
    // slept 0.2 + 0.4 s between the attempts
    assert!(s["ms"].as_f64().unwrap() >= 600.0, "{s}");

    // attempts run out: the last status is the error
    let (url, hits) = flaky_server(10);
    let plans = json!([[{
        "fun": "http.query",
        "arg": [url],
        "kwarg": {"status": true, "text": true},
        "check": {"http": {"status": 200, "body": null}},
        "retry": {"attempts": 2, "interval": 0.1, "max_interval": 1.0, "within": 20.0},
    }]]);
    let rets = steps_job(&lab, one, plans, json!({one[0].as_str(): 0})).await;
    let s = &rets[0]["steps"][0];
    assert_eq!(s["ok"], false, "{s}");
    assert_eq!(s["attempts"], 2, "{s}");
    assert_eq!(s["error"], "HTTP 503", "{s}");
    assert_eq!(hits.load(Ordering::SeqCst), 2);

    // nothing listens: http.query's error text (it answers status 0)
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/health", closed.local_addr().unwrap());
    drop(closed);
    let plans = json!([[{
        "fun": "http.query",
        "arg": [url],
        "kwarg": {"status": true, "text": true},
        "check": {"http": {"status": 200, "body": null}},
    }]]);
    let rets = steps_job(&lab, one, plans, json!({one[0].as_str(): 0})).await;
    let s = &rets[0]["steps"][0];
    assert_eq!(s["ok"], false, "{s}");
    assert!(
        s["error"].as_str().unwrap().contains("Connection refused"),
        "{s}"
    );
}

#[tokio::test]
async fn free_space_prune_and_a_minion_without_steps() {
    let Some(lab) = lab("free_space, prune, no steps") else {
        return;
    };
    let _g = LOCK.lock().await;
    ensure_installed(&lab).await;
    let roots = roots(&lab, "prune").await;
    let releases = roots[0].join("releases");
    for v in ["1.2", "1.9", "1.10", "2.0", "0.9", "not a version"] {
        std::fs::create_dir_all(releases.join(v).join("lib")).unwrap();
    }
    let absurd: u64 = 1 << 60;
    let plans = json!([[
        {"fun": "pushguide.prune", "arg": [path(&releases), 2], "kwarg": {"protect": ["1.2"]}},
        {"fun": "pushguide.free_space", "arg": [path(&releases.join("3.0")), absurd]},
        {"fun": "file.touch", "arg": [path(&releases.join("never"))]},
    ]]);
    // web-02 is targeted but has no plan
    let rets = steps_job(
        &lab,
        &lab.minions,
        plans,
        json!({lab.minions[0].as_str(): 0}),
    )
    .await;
    let ret = &rets[0];
    assert_eq!(oks(ret), [true, false], "{ret}");
    let prune = &ret["steps"][0]["ret"];
    assert_eq!(prune["removed"], json!(["1.9", "0.9"]), "{prune}");
    assert_eq!(prune["kept"], json!(["2.0", "1.10", "1.2"]), "{prune}");
    let mut left: Vec<String> = std::fs::read_dir(&releases)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["1.10", "1.2", "2.0", "not a version"]);
    let free = &ret["steps"][1];
    let error = free["error"].as_str().unwrap();
    assert!(
        error.starts_with("CommandExecutionError: only ")
            && error.ends_with(&format!(
                "bytes free at {}, the release needs {absurd}",
                path(&releases)
            )),
        "{error}"
    );
    assert!(!releases.join("never").exists());
    assert_eq!(
        rets[1],
        json!({"pushguide": 1, "minion": lab.minions[1].as_str(),
               "error": "no steps for this minion", "steps": []})
    );
    let _ = std::fs::remove_dir_all(&roots[0]);
}

/// The same six steps as ONE `pushguide.steps` job and as six jobs (one per step), wall time
/// through the client. Prints the measures; asserts the job counts.
#[tokio::test]
async fn six_steps_in_one_job_versus_six_jobs() {
    let Some(lab) = lab("one job vs six") else {
        return;
    };
    let _g = LOCK.lock().await;
    ensure_installed(&lab).await;
    let roots = roots(&lab, "timing").await;
    let root = &roots[0];
    let one = &lab.minions[..1];
    let rel = root.join("releases/1.0.0");
    let steps = json!([
        {"fun": "pushguide.free_space", "arg": [path(root), 1000]},
        {"fun": "file.makedirs", "arg": [format!("{}/", path(&rel))]},
        {"fun": "file.write", "arg": [path(&rel.join("app.txt")), "hello pushguide"]},
        {"fun": "file.get_hash", "arg": [path(&rel.join("app.txt"))], "kwarg": {"form": "sha256"},
         "check": {"equals": HELLO_SHA256}},
        {"fun": "file.symlink", "arg": [path(&rel), path(&root.join("current"))],
         "kwarg": {"force": true}},
        {"fun": "file.readlink", "arg": [path(&root.join("current"))]},
    ]);
    // warm up the event stream and the minion's loader
    steps_job(
        &lab,
        one,
        json!([steps.clone()]),
        json!({one[0].as_str(): 0}),
    )
    .await;
    let mut one_job = Vec::new();
    let mut six_jobs = Vec::new();
    for _ in 0..3 {
        let (rets, took) = timed_steps_job(
            &lab,
            one,
            json!([steps.clone()]),
            json!({one[0].as_str(): 0}),
        )
        .await;
        one_job.push(took);
        assert_eq!(oks(&rets[0]), [true; 6], "{}", rets[0]);

        let before = minion_jobs(&lab).len();
        let t = Instant::now();
        for s in steps.as_array().unwrap() {
            let mut call =
                SaltCall::mutate(s["fun"].as_str().unwrap()).timeout(Duration::from_secs(60));
            for a in s["arg"].as_array().unwrap() {
                call = call.arg(a.clone());
            }
            if let Some(kw) = s.get("kwarg").and_then(Value::as_object) {
                for (k, v) in kw {
                    call = call.kwarg(k.clone(), v.clone());
                }
            }
            let mut r = lab.api.call(one, &call).await.unwrap();
            assert!(r.take(&one[0]).is_ok());
        }
        six_jobs.push(t.elapsed());
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(minion_jobs(&lab).len() - before, 6);
    }
    one_job.sort();
    six_jobs.sort();
    eprintln!(
        "6 steps on {}: one pushguide.steps job {:?} (median of {:?}); six jobs {:?} (median of {:?})",
        one[0], one_job[1], one_job, six_jobs[1], six_jobs
    );
    let _ = std::fs::remove_dir_all(root);
}

/// With a 2-master lab (`PUSHGUIDE_SALT_MASTERS=2 scripts/salt-lab up`): the module is written
/// through BOTH masters' salt-apis. Skips with a message on a 1-master lab.
#[tokio::test]
async fn install_module_writes_through_every_master() {
    let Some(lab) = lab("install through every master") else {
        return;
    };
    let Some(url2) = std::env::var("PUSHGUIDE_SALT_URL_2")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        eprintln!(
            "skipping install through every master: PUSHGUIDE_SALT_URL_2 is not set \
             (PUSHGUIDE_SALT_MASTERS=2 scripts/salt-lab up)"
        );
        return;
    };
    let _g = LOCK.lock().await;
    let mut settings = lab.api.settings().clone();
    settings.endpoints.push(url2.clone());
    let api = SaltApi::new(settings).unwrap();
    let r = api.install_module(&glob_all()).await.expect("install");
    eprintln!("{r:?}");
    let urls: Vec<&str> = r.endpoints.iter().map(|e| e.endpoint.as_str()).collect();
    assert_eq!(
        urls,
        [lab.api.settings().endpoints[0].as_str(), url2.as_str()]
    );
    for e in &r.endpoints {
        let path = e.result.clone().expect("written");
        assert!(path.ends_with("/_modules/pushguide.py"), "{path}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), module::SOURCE);
    }
    assert!(r.all_installed(), "{r:?}");
    INSTALLED.store(true, Ordering::SeqCst);
}
