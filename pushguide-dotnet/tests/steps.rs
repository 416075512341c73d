//! `dotnet-iis` call by call against `MockTransport`: every stage and rollback, with return values shaped
//! like salt's `win_iis`, `file`, `archive`, `cp` and `http` modules; per-host overrides.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::sync::Arc;

use mockall::Sequence;
use pushguide_core::steps::ManifestEntry;
use pushguide_core::{
    Artifact, DeploymentOutcome, Engine, HostStatus, MemoryFleetState, MinionId, MockTransport,
    Outcome, Principal, Request, Returns, Template,
};
use pushguide_dotnet as _;
use serde_json::{json, Value};

const SHA: &str = "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae";
const BOTH: &[&str] = &["web-01", "web-02"];
const W1: &[&str] = &["web-01"];
const W2: &[&str] = &["web-02"];

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

fn template(project: &str) -> Arc<Template> {
    let text = format!(
        "name = \"shop\"\n[acl.deployers]\nusers = [\"ops\"]\n[targets]\nminions = [\"web-01\", \"web-02\"]\n\
         [rollout]\nbatch = 2\n[rollback]\npolicy = \"previous\"\n[health]\nurl = \"http://127.0.0.1/shop/health\"\nretries = 1\n\
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
    let manifest = ["web.config", "bin/", "bin/Shop.dll"]
        .iter()
        .map(|p| ManifestEntry {
            path: (*p).into(),
            size: 100,
        })
        .collect();
    Request::new(t.clone(), v, Principal::user("ops")).artifact(
        Artifact::new(
            format!("https://ci.example.com/shop/{v}/shop.zip"),
            Some(SHA.into()),
        )
        .with_manifest(manifest),
    )
}

const SHARED: &str = r#"kind = "dotnet-iis"
root = 'D:\Sites\shop'
site = "shop"
app_pool = "shop"
app_offline = true
app_offline_text = "Back soon"
warmup_url = "http://127.0.0.1/shop/"
keep_releases = 2
"#;

#[tokio::test]
async fn every_stage_call_by_call_one_request_per_step() {
    let t = template(SHARED);
    let calls = vec![
        exp("test.ping", BOTH, json!(true)),
        // pre-deploy
        exp(
            r#"file.directory_exists "D:\\Sites\\shop\\releases\\2.0.0""#,
            BOTH,
            json!(false),
        ),
        exp(
            r#"cp.get_url "https://ci.example.com/shop/2.0.0/shop.zip" "D:\\Sites\\shop\\archives\\2.0.0.zip" makedirs=true"#,
            BOTH,
            json!("D:\\Sites\\shop\\archives\\2.0.0.zip"),
        ),
        exp(
            r#"file.get_hash "D:\\Sites\\shop\\archives\\2.0.0.zip" form="sha256""#,
            BOTH,
            json!(SHA),
        ),
        exp(
            r#"win_iis.get_container_setting container="Sites" name="shop" settings=["physicalPath"]"#,
            BOTH,
            json!({"physicalPath": "D:\\Sites\\shop\\releases\\1.0.0"}),
        ),
        exp(
            r#"file.write "D:\\Sites\\shop\\releases\\1.0.0\\app_offline.htm" args=["Back soon"]"#,
            BOTH,
            json!("Wrote 1 lines to \"D:\\Sites\\shop\\releases\\1.0.0\\app_offline.htm\""),
        ),
        exp(r#"win_iis.stop_apppool name="shop""#, BOTH, json!(true)),
        // deploy
        exp(
            r#"file.directory_exists "D:\\Sites\\shop\\releases\\2.0.0""#,
            BOTH,
            json!(false),
        ),
        exp(
            r#"archive.unzip "D:\\Sites\\shop\\archives\\2.0.0.zip" "D:\\Sites\\shop\\releases\\2.0.0" trim_output=true"#,
            BOTH,
            json!(["web.config", "bin/", "bin/Shop.dll"]),
        ),
        exp(
            r#"win_iis.set_container_setting container="Sites" name="shop" settings={"physicalPath":"D:\\Sites\\shop\\releases\\2.0.0"}"#,
            BOTH,
            json!(true),
        ),
        // post-deploy
        exp(r#"win_iis.start_apppool name="shop""#, BOTH, json!(true)),
        exp(
            r#"file.remove "D:\\Sites\\shop\\releases\\1.0.0\\app_offline.htm""#,
            BOTH,
            json!(true),
        ),
        exp(
            r#"http.query "http://127.0.0.1/shop/" status=true"#,
            BOTH,
            json!({"status": 200}),
        ),
        exp(
            r#"http.query "http://127.0.0.1/shop/health" status=true text=false"#,
            BOTH,
            json!({"status": 200}),
        ),
        exp(
            r#"file.readdir "D:\\Sites\\shop\\releases""#,
            BOTH,
            json!([".", "..", "0.9.0", "1.0.0", "2.0.0"]),
        ),
        exp(
            r#"file.remove "D:\\Sites\\shop\\releases\\0.9.0""#,
            BOTH,
            json!(true),
        ),
    ];
    let r = engine(calls).deploy(req(&t, "2.0.0")).await.unwrap();
    assert_eq!(r.outcome, DeploymentOutcome::Succeeded, "{r}");
}

#[tokio::test]
async fn stop_apppool_false_fails_the_host_before_the_switch() {
    let t = template(
        "kind = \"dotnet-iis\"\nroot = 'D:\\Sites\\shop'\nsite = \"shop\"\napp_pool = \"shop\"\n",
    );
    let calls = vec![
        exp("test.ping", BOTH, json!(true)),
        exp(
            r#"file.directory_exists "D:\\Sites\\shop\\releases\\2.0.0""#,
            BOTH,
            json!(true),
        ),
        exp(
            r#"win_iis.stop_apppool name="shop""#,
            BOTH,
            json!({"per_host": {"web-01": true, "web-02": false}}),
        ),
        exp(
            r#"file.directory_exists "D:\\Sites\\shop\\releases\\2.0.0""#,
            W1,
            json!(true),
        ),
        exp(
            r#"win_iis.set_container_setting container="Sites" name="shop" settings={"physicalPath":"D:\\Sites\\shop\\releases\\2.0.0"}"#,
            W1,
            json!(true),
        ),
        exp(r#"win_iis.start_apppool name="shop""#, W1, json!(true)),
        exp(
            r#"http.query "http://127.0.0.1/shop/health" status=true text=false"#,
            W1,
            json!({"status": 200}),
        ),
        exp(
            r#"file.readdir "D:\\Sites\\shop\\releases""#,
            W1,
            json!([".", "..", "1.0.0", "2.0.0"]),
        ),
        // budget 0 exceeded: rollback of both to 1.0.0
        exp(
            r#"file.file_exists "D:\\Sites\\shop\\releases\\1.0.0\\web.config""#,
            BOTH,
            json!(true),
        ),
        exp(
            r#"win_iis.set_container_setting container="Sites" name="shop" settings={"physicalPath":"D:\\Sites\\shop\\releases\\1.0.0"}"#,
            BOTH,
            json!(true),
        ),
        exp(
            "win_iis.list_apppools",
            BOTH,
            json!({"per_host": {
                "web-01": {"shop": {"state": "Started", "applications": ["shop"]}},
                "web-02": {"shop": {"state": "Stopped", "applications": ["shop"]}}
            }}),
        ),
        exp(r#"win_iis.start_apppool name="shop""#, W2, json!(true)),
        exp(r#"win_iis.restart_apppool name="shop""#, W1, json!(true)),
    ];
    let r = engine(calls).deploy(req(&t, "2.0.0")).await.unwrap();
    assert_eq!(r.outcome, DeploymentOutcome::RolledBack, "{r}");
    let f = r.host("web-02").unwrap().failure.clone().unwrap();
    assert!(
        f.reason.contains("win_iis.stop_apppool returned false"),
        "{}",
        f.reason
    );
}

#[tokio::test]
async fn per_host_overrides_group_calls_and_a_missing_target_fails_rollback() {
    let t = template(
        "kind = \"dotnet-iis\"\nroot = 'D:\\Sites\\shop'\nsite = \"shop\"\napp_pool = \"shop\"\n\
         [project.hosts.web-02]\nsite = \"shop2\"\napp_pool = \"pool2\"\nhealth_url = \"http://127.0.0.1:8080/health\"\n",
    );
    let calls = vec![
        exp("test.ping", BOTH, json!(true)),
        exp(
            r#"file.directory_exists "D:\\Sites\\shop\\releases\\2.0.0""#,
            BOTH,
            json!(false),
        ),
        exp(
            r#"cp.get_url "https://ci.example.com/shop/2.0.0/shop.zip" "D:\\Sites\\shop\\archives\\2.0.0.zip" makedirs=true"#,
            BOTH,
            json!("D:\\Sites\\shop\\archives\\2.0.0.zip"),
        ),
        exp(
            r#"file.get_hash "D:\\Sites\\shop\\archives\\2.0.0.zip" form="sha256""#,
            BOTH,
            json!(SHA),
        ),
        exp(r#"win_iis.stop_apppool name="pool2""#, W2, json!(true)),
        exp(r#"win_iis.stop_apppool name="shop""#, W1, json!(true)),
        exp(
            r#"file.directory_exists "D:\\Sites\\shop\\releases\\2.0.0""#,
            BOTH,
            json!(false),
        ),
        exp(
            r#"archive.unzip "D:\\Sites\\shop\\archives\\2.0.0.zip" "D:\\Sites\\shop\\releases\\2.0.0" trim_output=true"#,
            BOTH,
            json!(["web.config"]),
        ),
        exp(
            r#"win_iis.set_container_setting container="Sites" name="shop" settings={"physicalPath":"D:\\Sites\\shop\\releases\\2.0.0"}"#,
            W1,
            json!(true),
        ),
        exp(
            r#"win_iis.set_container_setting container="Sites" name="shop2" settings={"physicalPath":"D:\\Sites\\shop\\releases\\2.0.0"}"#,
            W2,
            json!(true),
        ),
        exp(r#"win_iis.start_apppool name="pool2""#, W2, json!(true)),
        exp(r#"win_iis.start_apppool name="shop""#, W1, json!(true)),
        exp(
            r#"http.query "http://127.0.0.1/shop/health" status=true text=false"#,
            W1,
            json!({"status": 200}),
        ),
        exp(
            r#"http.query "http://127.0.0.1:8080/health" status=true text=false"#,
            W2,
            json!({"status": 503}),
        ),
        exp(
            r#"file.readdir "D:\\Sites\\shop\\releases""#,
            W1,
            json!([".", "..", "1.0.0", "2.0.0"]),
        ),
        // rollback: web-02's 1.0.0 was removed by hand
        exp(
            r#"file.file_exists "D:\\Sites\\shop\\releases\\1.0.0\\web.config""#,
            BOTH,
            json!({"per_host": {"web-01": true, "web-02": false}}),
        ),
        exp(
            r#"win_iis.set_container_setting container="Sites" name="shop" settings={"physicalPath":"D:\\Sites\\shop\\releases\\1.0.0"}"#,
            W1,
            json!(true),
        ),
        exp(
            "win_iis.list_apppools",
            W1,
            json!({"shop": {"state": "Started", "applications": ["shop"]}}),
        ),
        exp(r#"win_iis.restart_apppool name="shop""#, W1, json!(true)),
    ];
    let r = engine(calls).deploy(req(&t, "2.0.0")).await.unwrap();
    assert_eq!(
        r.host("web-01").unwrap().status,
        HostStatus::RolledBack,
        "{r}"
    );
    let h2 = r.host("web-02").unwrap();
    let why = h2.failure.clone().map(|f| f.reason).unwrap_or_default();
    assert!(
        r.to_string()
            .contains("rollback target D:\\Sites\\shop\\releases\\1.0.0 is missing"),
        "{why}\n{r}"
    );
}
