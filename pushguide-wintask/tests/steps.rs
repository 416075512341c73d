//! `windows-task` call by call against `MockTransport`: every stage and rollback, with return values shaped
//! like salt's `task` (win_task), `file`, `archive` and `cp` modules; per-host overrides.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::sync::Arc;

use mockall::Sequence;
use pushguide_core::steps::ManifestEntry;
use pushguide_core::{
    Artifact, DeploymentOutcome, Engine, MemoryFleetState, MinionId, MockTransport, Outcome,
    Principal, Request, Returns, Template,
};
use pushguide_wintask as _;
use serde_json::{json, Value};

const SHA: &str = "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae";
const BOTH: &[&str] = &["web-01", "web-02"];
const W1: &[&str] = &["web-01"];
const W2: &[&str] = &["web-02"];
const OK: &str = pushguide_wintask::SUCCESS;

/// One expected request: its display (`fun args kwargs`), its targets and the answer of each target
/// (`{"per_host": {...}}` gives each host its own answer).
struct Exp(String, &'static [&'static str], Value);

fn exp(shown: &str, targets: &'static [&'static str], answer: Value) -> Exp {
    Exp(shown.to_owned(), targets, answer)
}

fn answer(targets: &[MinionId], v: &Value) -> Returns {
    let mut r = Returns::with_jid("20261127093000000000");
    for m in targets {
        let a = v
            .get("per_host")
            .and_then(|p| p.get(m.as_str()))
            .unwrap_or(v);
        r.minions.insert(m.clone(), Outcome::ok(a.clone()));
    }
    r
}

fn mock(calls: Vec<Exp>) -> MockTransport {
    let mut mock = MockTransport::new();
    let mut seq = Sequence::new();
    for (i, Exp(shown, targets, ans)) in calls.into_iter().enumerate() {
        mock.expect_call()
            .withf(move |tg, c| {
                let got: Vec<&str> = tg.iter().map(MinionId::as_str).collect();
                let ok = c.to_string() == shown && got == targets;
                if !ok {
                    eprintln!(
                        "call #{i}: want {shown} -> {targets:?}\n          got  {c} -> {got:?}"
                    );
                }
                ok
            })
            .times(1)
            .in_sequence(&mut seq)
            .returning(move |tg, _| Ok(answer(tg, &ans)));
    }
    mock
}

fn template(project: &str, extra: &str) -> Arc<Template> {
    let text = format!(
        "name = \"shop\"\n[acl.deployers]\nusers = [\"ops\"]\n[targets]\nminions = [\"web-01\", \"web-02\"]\n\
         [rollout]\nbatch = 2\n[rollback]\npolicy = \"previous\"\n[health]\nurl = \"http://127.0.0.1/shop/health\"\nretries = 1\n{extra}\n\
         [project]\n{project}"
    );
    Arc::new(Template::from_toml_str(&text, "<test>").unwrap_or_else(|e| panic!("{e}")))
}

fn engine(calls: Vec<Exp>) -> Engine {
    let fleet = Arc::new(MemoryFleetState::default());
    let hosts: Vec<MinionId> = BOTH.iter().map(|h| MinionId::new(h).unwrap()).collect();
    fleet.seed(
        "shop",
        &hosts,
        &pushguide_core::HostChange::Deployed {
            version: "1.0.0".into(),
        },
    );
    Engine::builder(Arc::new(mock(calls)))
        .fleet_state(fleet)
        .build()
}

fn req(t: &Arc<Template>, v: &str) -> Request {
    let manifest = ["nightly.exe", "lib/"]
        .iter()
        .map(|p| ManifestEntry {
            path: (*p).into(),
            size: 100,
        })
        .collect();
    Request::new(t.clone(), v, Principal::user("ops")).artifact(
        Artifact::new(
            format!("https://ci.example.com/nightly/{v}/nightly.zip"),
            Some(SHA.into()),
        )
        .with_manifest(manifest),
    )
}

const BASE: &str = r#"kind = "windows-task"
root = 'D:\Jobs\nightly'
task = "nightly"
poll_interval_secs = 5
wait_timeout_secs = 10
"#;

const T: &str = r#"location="\\" name="nightly""#;

fn task(fun: &str, extra: &str) -> String {
    if extra.is_empty() {
        format!("{fun} {T}")
    } else {
        format!("{fun} {extra} {T}")
    }
}

fn info(result: &str) -> Value {
    json!({"enabled": true, "last_run": "2026-11-27 09:30:00", "last_run_result": result,
           "missed_runs": 0, "next_run": "2026-11-28 02:00:00", "status": "Ready",
           "settings": {}, "conditions": {}, "actions": [{"action_type": "Execute",
           "cmd": "D:\\Jobs\\nightly\\current\\nightly.exe"}], "triggers": []})
}

#[tokio::test(start_paused = true)]
async fn every_stage_call_by_call_waits_for_the_running_task_and_checks_the_run() {
    let t = template(&format!("{BASE}run_now = true\n"), "");
    let calls = vec![
        exp("test.ping", BOTH, json!(true)),
        // pre-deploy
        exp(
            r#"file.directory_exists "D:\\Jobs\\nightly\\releases\\2.0.0""#,
            BOTH,
            json!(false),
        ),
        exp(
            r#"cp.get_url "https://ci.example.com/nightly/2.0.0/nightly.zip" "D:\\Jobs\\nightly\\archives\\2.0.0.zip" makedirs=true"#,
            BOTH,
            json!("D:\\Jobs\\nightly\\archives\\2.0.0.zip"),
        ),
        exp(
            r#"file.get_hash "D:\\Jobs\\nightly\\archives\\2.0.0.zip" form="sha256""#,
            BOTH,
            json!(SHA),
        ),
        exp(&task("task.status", ""), BOTH, json!("Running")),
        exp(&task("task.edit_task", "enabled=false"), BOTH, json!(true)),
        exp(&task("task.status", ""), BOTH, json!("Running")),
        exp(&task("task.status", ""), BOTH, json!("Ready")),
        // deploy
        exp(
            r#"file.directory_exists "D:\\Jobs\\nightly\\releases\\2.0.0""#,
            BOTH,
            json!(false),
        ),
        exp(
            r#"archive.unzip "D:\\Jobs\\nightly\\archives\\2.0.0.zip" "D:\\Jobs\\nightly\\releases\\2.0.0" trim_output=true"#,
            BOTH,
            json!(["nightly.exe", "lib/"]),
        ),
        exp(
            r#"file.symlink "D:\\Jobs\\nightly\\releases\\2.0.0" "D:\\Jobs\\nightly\\current" force=true"#,
            BOTH,
            json!(true),
        ),
        // post-deploy
        exp(&task("task.edit_task", "enabled=true"), BOTH, json!(true)),
        exp(&task("task.run", ""), BOTH, json!(true)),
        exp(&task("task.status", ""), BOTH, json!("Ready")),
        exp(&task("task.info", ""), BOTH, info(OK)),
        exp(
            r#"file.readdir "D:\\Jobs\\nightly\\releases""#,
            BOTH,
            json!([".", "..", "1.0.0", "2.0.0"]),
        ),
    ];
    let r = engine(calls).deploy(req(&t, "2.0.0")).await.unwrap();
    assert_eq!(r.outcome, DeploymentOutcome::Succeeded, "{r}");
}

#[tokio::test(start_paused = true)]
async fn a_task_still_running_after_the_timeout_fails_its_host() {
    // failed hosts are left as they are here (restoring them is tested in the engine's tests)
    let t = template(BASE, "[failure]\nmax_failed = 1\nfailed_hosts = \"leave\"");
    let calls = vec![
        exp("test.ping", BOTH, json!(true)),
        exp(
            r#"file.directory_exists "D:\\Jobs\\nightly\\releases\\2.0.0""#,
            BOTH,
            json!(true),
        ),
        exp(&task("task.status", ""), BOTH, json!("Ready")),
        exp(&task("task.edit_task", "enabled=false"), BOTH, json!(true)),
        exp(
            &task("task.status", ""),
            BOTH,
            json!({"per_host": {"web-01": "Disabled", "web-02": "Running"}}),
        ),
        exp(&task("task.status", ""), W2, json!("Running")),
        exp(&task("task.status", ""), W2, json!("Running")),
        // web-02 failed (within the budget of 1); web-01 goes on
        exp(
            r#"file.directory_exists "D:\\Jobs\\nightly\\releases\\2.0.0""#,
            W1,
            json!(true),
        ),
        exp(
            r#"file.symlink "D:\\Jobs\\nightly\\releases\\2.0.0" "D:\\Jobs\\nightly\\current" force=true"#,
            W1,
            json!(true),
        ),
        exp(&task("task.edit_task", "enabled=true"), W1, json!(true)),
        exp(
            r#"file.readdir "D:\\Jobs\\nightly\\releases""#,
            W1,
            json!([".", "..", "1.0.0", "2.0.0"]),
        ),
    ];
    let r = engine(calls).deploy(req(&t, "2.0.0")).await.unwrap();
    assert_eq!(r.outcome, DeploymentOutcome::PartiallyApplied, "{r}");
    let f = r.host("web-02").unwrap().failure.clone().unwrap();
    assert!(f.reason.contains("still running after 10s"), "{}", f.reason);
}

#[tokio::test(start_paused = true)]
async fn failed_run_rolls_back_per_host_and_restores_the_enabled_state() {
    let t = template(
        &format!("{BASE}run_now = true\n[project.hosts.web-02]\nroot = 'E:\\Jobs\\nightly'\n"),
        "",
    );
    let calls = vec![
        exp("test.ping", BOTH, json!(true)),
        exp(
            r#"file.directory_exists "D:\\Jobs\\nightly\\releases\\2.0.0""#,
            W1,
            json!(true),
        ),
        exp(
            r#"file.directory_exists "E:\\Jobs\\nightly\\releases\\2.0.0""#,
            W2,
            json!(true),
        ),
        exp(
            &task("task.status", ""),
            BOTH,
            json!({"per_host": {"web-01": "Ready", "web-02": "Disabled"}}),
        ),
        exp(&task("task.edit_task", "enabled=false"), BOTH, json!(true)),
        exp(&task("task.status", ""), BOTH, json!("Disabled")),
        exp(
            r#"file.directory_exists "D:\\Jobs\\nightly\\releases\\2.0.0""#,
            W1,
            json!(true),
        ),
        exp(
            r#"file.directory_exists "E:\\Jobs\\nightly\\releases\\2.0.0""#,
            W2,
            json!(true),
        ),
        exp(
            r#"file.symlink "D:\\Jobs\\nightly\\releases\\2.0.0" "D:\\Jobs\\nightly\\current" force=true"#,
            W1,
            json!(true),
        ),
        exp(
            r#"file.symlink "E:\\Jobs\\nightly\\releases\\2.0.0" "E:\\Jobs\\nightly\\current" force=true"#,
            W2,
            json!(true),
        ),
        exp(&task("task.edit_task", "enabled=true"), BOTH, json!(true)),
        exp(&task("task.run", ""), BOTH, json!(true)),
        exp(&task("task.status", ""), BOTH, json!("Ready")),
        exp(
            &task("task.info", ""),
            BOTH,
            json!({"per_host": {"web-01": info(OK), "web-02": info("File not found")}}),
        ),
        exp(
            r#"file.readdir "D:\\Jobs\\nightly\\releases""#,
            W1,
            json!([".", "..", "1.0.0", "2.0.0"]),
        ),
        // rollback of both to 1.0.0
        exp(&task("task.edit_task", "enabled=false"), BOTH, json!(true)),
        exp(
            r#"file.path_exists_glob "D:\\Jobs\\nightly\\releases\\1.0.0\\*""#,
            W1,
            json!(true),
        ),
        exp(
            r#"file.path_exists_glob "E:\\Jobs\\nightly\\releases\\1.0.0\\*""#,
            W2,
            json!(true),
        ),
        exp(
            r#"file.symlink "D:\\Jobs\\nightly\\releases\\1.0.0" "D:\\Jobs\\nightly\\current" force=true"#,
            W1,
            json!(true),
        ),
        exp(
            r#"file.symlink "E:\\Jobs\\nightly\\releases\\1.0.0" "E:\\Jobs\\nightly\\current" force=true"#,
            W2,
            json!(true),
        ),
        // web-02's task was disabled before the deployment: it stays disabled
        exp(&task("task.edit_task", "enabled=false"), W2, json!(true)),
        exp(&task("task.edit_task", "enabled=true"), W1, json!(true)),
    ];
    let r = engine(calls).deploy(req(&t, "2.0.0")).await.unwrap();
    assert_eq!(r.outcome, DeploymentOutcome::RolledBack, "{r}");
    let f = r.host("web-02").unwrap().failure.clone().unwrap();
    assert!(
        f.reason.contains("last_run_result `File not found`"),
        "{}",
        f.reason
    );
}
