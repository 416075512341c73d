//! `java-tomcat` call by call against `MockTransport`: every stage and rollback, Linux and Windows,
//! per-host overrides.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use mockall::Sequence;
use pushguide_core::{
    Artifact, DeploymentOutcome, Engine, MinionId, MockTransport, Outcome, Principal, Request,
    Returns, Template,
};
use pushguide_java as _;
use serde_json::{json, Value};

const SHA: &str = "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae";

/// One expected request: function, its display (`fun args kwargs`), targets, and each target's answer.
struct Exp(&'static str, String, &'static [&'static str], Value);

fn expect_all(mock: &mut MockTransport, calls: Vec<Exp>) {
    let mut seq = Sequence::new();
    for Exp(fun, shown, targets, answer) in calls {
        let want: Vec<String> = targets.iter().map(|t| (*t).to_owned()).collect();
        mock.expect_call()
            .withf(move |tg, c| {
                let got: Vec<&str> = tg.iter().map(MinionId::as_str).collect();
                c.fun == fun && c.to_string() == shown && got == want
            })
            .times(1)
            .in_sequence(&mut seq)
            .returning(move |tg, _| Ok(Returns::uniform(tg, Outcome::ok(answer.clone()))));
    }
}

fn template(project: &str, extra: &str) -> Arc<Template> {
    let text = format!(
        "name = \"shop\"\n[acl.deployers]\nusers = [\"ops\"]\n[targets]\nminions = [\"web-01\", \"web-02\"]\n\
         [rollout]\nbatch = 2\n[rollback]\npolicy = \"previous\"\n[health]\nurl = \"http://127.0.0.1:8080/shop/\"\nretries = 1\n{extra}\n[project]\n{project}"
    );
    Arc::new(Template::from_toml_str(&text, "<test>").unwrap_or_else(|e| panic!("{e}")))
}

const LINUX: &str = r#"kind = "java-tomcat"
context = "shop"
root = "/srv/shop"
catalina_base = "/var/lib/tomcat10"
service = "tomcat10"
"#;

fn req(t: &Arc<Template>, v: &str) -> Request {
    Request::new(t.clone(), v, Principal::user("ops")).artifact(Artifact::new(
        format!("https://ci.example.com/shop/{v}/shop.war"),
        Some(SHA.into()),
    ))
}

const BOTH: &[&str] = &["web-01", "web-02"];

fn release_calls(v: &str) -> Vec<Exp> {
    vec![
        Exp("test.ping", "test.ping".into(), BOTH, json!(true)),
        Exp("file.directory_exists", format!("file.directory_exists \"/srv/shop/releases/{v}\""), BOTH, json!(false)),
        Exp("cp.get_url", format!("cp.get_url \"https://ci.example.com/shop/{v}/shop.war\" \"/srv/shop/archives/{v}.war\" makedirs=true"), BOTH, json!(format!("/srv/shop/archives/{v}.war"))),
        Exp("file.get_hash", format!("file.get_hash \"/srv/shop/archives/{v}.war\" form=\"sha256\""), BOTH, json!(SHA)),
        Exp("archive.unzip", format!("archive.unzip \"/srv/shop/archives/{v}.war\" \"/srv/shop/releases/{v}\""), BOTH, json!(["index.jsp"])),
        Exp("service.stop", "service.stop \"tomcat10\"".into(), BOTH, json!(true)),
        Exp("file.symlink", format!("file.symlink \"/srv/shop/releases/{v}\" \"/var/lib/tomcat10/webapps/shop\" atomic=true force=true"), BOTH, json!(true)),
        Exp("file.remove", "file.remove \"/var/lib/tomcat10/work/Catalina/localhost/shop\"".into(), BOTH, json!(true)),
        Exp("service.start", "service.start \"tomcat10\"".into(), BOTH, json!(true)),
        Exp("http.query", "http.query \"http://127.0.0.1:8080/shop/\" status=true text=false".into(), BOTH, json!({"status": 200})),
    ]
}

#[tokio::test]
async fn linux_release_call_by_call() {
    let t = template(LINUX, "");
    let mut mock = MockTransport::new();
    let mut calls = release_calls("1.1.0");
    calls.push(Exp(
        "file.readdir",
        "file.readdir \"/srv/shop/releases\"".into(),
        BOTH,
        json!([".", "..", "0.9.0", "1.0.0", "1.1.0", "0.8.0", "0.7.0", "0.10.0"]),
    ));
    // keep 5 newest: 1.1.0 1.0.0 0.10.0 0.9.0 0.8.0 → 0.7.0 goes
    calls.push(Exp(
        "file.remove",
        "file.remove \"/srv/shop/releases/0.7.0\"".into(),
        BOTH,
        json!(true),
    ));
    expect_all(&mut mock, calls);
    let r = Engine::builder(Arc::new(mock))
        .build()
        .deploy(req(&t, "1.1.0"))
        .await
        .unwrap();
    assert_eq!(r.outcome, DeploymentOutcome::Succeeded, "{r}");
}

#[tokio::test]
async fn linux_failed_health_check_rolls_back_call_by_call() {
    let t = template(LINUX, "");
    let engine_mock = {
        let mut mock = MockTransport::new();
        let mut calls = release_calls("1.0.0");
        calls.push(Exp(
            "file.readdir",
            "file.readdir \"/srv/shop/releases\"".into(),
            BOTH,
            json!([".", "..", "1.0.0"]),
        ));
        calls.extend(release_calls("2.0.0").into_iter().take(9));
        // web-02 answers 503 to the probe: mocked below with per-host returns
        expect_all(&mut mock, calls);
        let mut seq = Sequence::new();
        mock.expect_call()
            .withf(|_, c| c.fun == "http.query")
            .times(1)
            .in_sequence(&mut seq)
            .returning(|tg, _| {
                let mut r = Returns::default();
                for m in tg {
                    let status = if m.as_str() == "web-02" { 503 } else { 200 };
                    r.minions
                        .insert(m.clone(), Outcome::ok(json!({ "status": status })));
                }
                Ok(r)
            });
        // web-01 passed and prunes; then the budget (0) is exceeded → rollback of both to 1.0.0
        mock.expect_call()
            .withf(|tg, c| {
                c.to_string() == "file.readdir \"/srv/shop/releases\""
                    && tg.len() == 1
                    && tg[0].as_str() == "web-01"
            })
            .times(1)
            .in_sequence(&mut seq)
            .returning(|tg, _| {
                Ok(Returns::uniform(
                    tg,
                    Outcome::ok(json!([".", "..", "1.0.0", "2.0.0"])),
                ))
            });
        let rb = [
            ("file.directory_exists", "file.directory_exists \"/srv/shop/releases/1.0.0\"", json!(true)),
            ("service.stop", "service.stop \"tomcat10\"", json!(true)),
            ("file.symlink", "file.symlink \"/srv/shop/releases/1.0.0\" \"/var/lib/tomcat10/webapps/shop\" atomic=true force=true", json!(true)),
            ("file.remove", "file.remove \"/var/lib/tomcat10/work/Catalina/localhost/shop\"", json!(true)),
            ("service.start", "service.start \"tomcat10\"", json!(true)),
        ];
        for (fun, shown, answer) in rb {
            mock.expect_call()
                .withf(move |tg, c| c.fun == fun && c.to_string() == shown && tg.len() == 2)
                .times(1)
                .in_sequence(&mut seq)
                .returning(move |tg, _| Ok(Returns::uniform(tg, Outcome::ok(answer.clone()))));
        }
        mock
    };
    let engine = Engine::builder(Arc::new(engine_mock)).build();
    let r = engine.deploy(req(&t, "1.0.0")).await.unwrap();
    assert_eq!(r.outcome, DeploymentOutcome::Succeeded, "{r}");
    let r = engine.deploy(req(&t, "2.0.0")).await.unwrap();
    assert_eq!(r.outcome, DeploymentOutcome::RolledBack, "{r}");
    let f = r.host("web-02").unwrap().failure.clone().unwrap();
    assert!(
        f.reason.contains("(expected HTTP 200): HTTP 503"),
        "{}",
        f.reason
    );
}

const WINDOWS: &str = r#"kind = "java-tomcat"
platform = "windows"
context = "ROOT"
root = 'D:\apps\shop'
catalina_base = 'C:\Tomcat10'
start_command = ['C:\Tomcat10\bin\startup.bat']
stop_command = ['C:\Tomcat10\bin\shutdown.bat']
[project.hosts.web-02]
catalina_base = 'D:\Tomcat10'
health_url = "http://127.0.0.1:8081/"
"#;

#[tokio::test]
async fn windows_with_commands_and_per_host_overrides_call_by_call() {
    let t = template(WINDOWS, "");
    let mut mock = MockTransport::new();
    let one: &'static [&'static str] = &["web-01"];
    let two: &'static [&'static str] = &["web-02"];
    let v = "3.0.0";
    let calls = vec![
        Exp("test.ping", "test.ping".into(), BOTH, json!(true)),
        Exp(
            "file.directory_exists",
            r#"file.directory_exists "D:\\apps\\shop\\releases\\3.0.0""#.into(),
            BOTH,
            json!(false),
        ),
        Exp(
            "cp.get_url",
            format!(
                r#"cp.get_url "https://ci.example.com/shop/{v}/shop.war" "D:\\apps\\shop\\archives\\{v}.war" makedirs=true"#
            ),
            BOTH,
            json!("ok"),
        ),
        Exp(
            "file.get_hash",
            format!(r#"file.get_hash "D:\\apps\\shop\\archives\\{v}.war" form="sha256""#),
            BOTH,
            json!(SHA),
        ),
        Exp(
            "archive.unzip",
            format!(
                r#"archive.unzip "D:\\apps\\shop\\archives\\{v}.war" "D:\\apps\\shop\\releases\\{v}""#
            ),
            BOTH,
            json!([]),
        ),
        Exp(
            "cmd.run_all",
            r#"cmd.run_all ["C:\\Tomcat10\\bin\\shutdown.bat"] python_shell=false"#.into(),
            BOTH,
            json!({"retcode": 0, "stdout": "", "stderr": ""}),
        ),
        // the context file differs per CATALINA_BASE: one request per group
        Exp(
            "file.write",
            format!(
                r#"file.write "C:\\Tomcat10\\conf\\Catalina\\localhost\\ROOT.xml" "<Context docBase=\"D:\\apps\\shop\\releases\\{v}\" />""#
            ),
            one,
            json!("Wrote 1 lines"),
        ),
        Exp(
            "file.write",
            format!(
                r#"file.write "D:\\Tomcat10\\conf\\Catalina\\localhost\\ROOT.xml" "<Context docBase=\"D:\\apps\\shop\\releases\\{v}\" />""#
            ),
            two,
            json!("Wrote 1 lines"),
        ),
        Exp(
            "file.remove",
            r#"file.remove "C:\\Tomcat10\\work\\Catalina\\localhost\\ROOT""#.into(),
            one,
            json!(true),
        ),
        Exp(
            "file.remove",
            r#"file.remove "D:\\Tomcat10\\work\\Catalina\\localhost\\ROOT""#.into(),
            two,
            json!(true),
        ),
        Exp(
            "cmd.run_all",
            r#"cmd.run_all ["C:\\Tomcat10\\bin\\startup.bat"] python_shell=false"#.into(),
            BOTH,
            json!({"retcode": 0, "stdout": "", "stderr": ""}),
        ),
        Exp(
            "http.query",
            "http.query \"http://127.0.0.1:8080/shop/\" status=true text=false".into(),
            one,
            json!({"status": 200}),
        ),
        Exp(
            "http.query",
            "http.query \"http://127.0.0.1:8081/\" status=true text=false".into(),
            two,
            json!({"status": 200}),
        ),
        Exp(
            "file.readdir",
            r#"file.readdir "D:\\apps\\shop\\releases""#.into(),
            BOTH,
            json!([".", "..", v]),
        ),
    ];
    expect_all(&mut mock, calls);
    let r = Engine::builder(Arc::new(mock))
        .build()
        .deploy(req(&t, v))
        .await
        .unwrap();
    assert_eq!(r.outcome, DeploymentOutcome::Succeeded, "{r}");
}

#[tokio::test]
async fn artifact_url_from_config_when_the_request_has_none() {
    let project = format!("{LINUX}artifact_url = \"https://ci.example.com/shop/{{version}}/shop.war\"\nsha256 = \"{SHA}\"\n");
    let t = template(&project, "");
    let fleet = Arc::new(
        pushguide_core::sim::SimFleet::new(["web-01", "web-02"])
            .unwrap()
            .on("*", "file.directory_exists", Outcome::ok(false))
            .on("*", "file.get_hash", Outcome::ok(SHA))
            .on(
                "*",
                "cp.get_url",
                Outcome::ok("/srv/shop/archives/4.2.0.war"),
            )
            .on("*", "http.query", Outcome::ok(json!({"status": 200})))
            .on("*", "file.readdir", Outcome::ok(json!([]))),
    );
    let r = Engine::builder(fleet.clone())
        .build()
        .deploy(Request::new(t, "4.2.0", Principal::user("ops")))
        .await
        .unwrap();
    assert_eq!(r.outcome, DeploymentOutcome::Succeeded, "{r}");
    let get = fleet
        .requests()
        .into_iter()
        .find(|q| q.fun == "cp.get_url")
        .unwrap();
    assert_eq!(
        get.call.arg[0],
        "https://ci.example.com/shop/4.2.0/shop.war"
    );
}

#[tokio::test]
async fn a_host_without_settings_fails_with_the_missing_field() {
    let project = "kind = \"java-tomcat\"\ncontext = \"shop\"\nservice = \"tomcat10\"\nroot = \"/srv/shop\"\n[project.hosts.web-01]\ncatalina_base = \"/opt/tomcat\"\n";
    let t = template(project, "[failure]\nmax_failed = 1");
    let fleet = Arc::new(pushguide_core::sim::SimFleet::new(["web-01", "web-02"]).unwrap());
    let r = Engine::builder(fleet)
        .build()
        .deploy(req(&t, "1.0.0"))
        .await
        .unwrap();
    let f = r.host("web-02").unwrap().failure.clone().unwrap();
    assert!(f.reason.contains("catalina_base"), "{}", f.reason);
}

fn plan_calls(
    plan: &pushguide_core::Plan,
    stage: pushguide_core::Stage,
) -> Vec<pushguide_core::SaltCall> {
    plan.steps
        .iter()
        .find(|(s, _)| *s == stage)
        .map(|(_, c)| c.clone())
        .unwrap_or_default()
}

/// A plan of a first release (no host has a rollback target) shows no rollback call, and never a path
/// built from an empty version (`releases/`); with a target, the rollback calls name it.
#[tokio::test]
async fn plan_builds_no_rollback_path_for_hosts_without_a_target() {
    use pushguide_core::Stage;
    let fleet = Arc::new(
        pushguide_core::sim::SimFleet::new(["web-01", "web-02"])
            .unwrap()
            .on("*", "file.directory_exists", Outcome::ok(true)),
    );
    let engine = Engine::builder(fleet).build();
    let plan = engine
        .plan(&req(&template(LINUX, ""), "1.0.0"))
        .await
        .unwrap();
    assert!(plan.rollback_targets.iter().all(|(_, _, to)| to.is_none()));
    let rollback = plan_calls(&plan, Stage::Rollback);
    for c in &rollback {
        let shown = c.to_string();
        assert!(
            !shown.contains("releases/\"") && !shown.contains("releases\""),
            "{shown}"
        );
    }
    assert!(rollback.is_empty(), "{rollback:?}");
    // with a rollback target every call names it
    let t = template(LINUX, "").to_toml_string().unwrap().replace(
        "[rollback]\npolicy = \"previous\"",
        "[rollback]\npolicy = \"version\"\nto = \"0.9.0\"",
    );
    let t = Arc::new(Template::from_toml_str(&t, "<t>").unwrap());
    let plan = engine.plan(&req(&t, "1.0.0")).await.unwrap();
    let shown: Vec<String> = plan_calls(&plan, Stage::Rollback)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        shown[0], "file.directory_exists \"/srv/shop/releases/0.9.0\"",
        "{shown:?}"
    );
    assert!(
        shown
            .iter()
            .any(|c| c.starts_with("file.symlink \"/srv/shop/releases/0.9.0\"")),
        "{shown:?}"
    );
}

/// Tomcat's start and stop commands follow the same timeout rule as its service calls: no timeout of
/// their own, so the salt connection's `job_timeout` applies (not a fixed 180 s).
#[tokio::test]
async fn start_and_stop_commands_wait_the_configured_job_timeout() {
    use pushguide_core::Stage;
    let fleet = Arc::new(pushguide_core::sim::SimFleet::new(["web-01", "web-02"]).unwrap());
    let engine = Engine::builder(fleet).build();
    let with_commands = engine
        .plan(&req(&template(WINDOWS, ""), "3.0.0"))
        .await
        .unwrap();
    let with_service = engine
        .plan(&req(&template(LINUX, ""), "3.0.0"))
        .await
        .unwrap();
    let runs: Vec<_> = [Stage::PreDeploy, Stage::PostDeploy]
        .into_iter()
        .flat_map(|s| plan_calls(&with_commands, s))
        .filter(|c| c.fun == "cmd.run_all")
        .collect();
    assert_eq!(runs.len(), 2, "{runs:?}");
    let services: Vec<_> = [Stage::PreDeploy, Stage::PostDeploy]
        .into_iter()
        .flat_map(|s| plan_calls(&with_service, s))
        .filter(|c| c.fun.starts_with("service."))
        .collect();
    assert_eq!(services.len(), 2, "{services:?}");
    for c in runs.iter().chain(&services) {
        assert_eq!(c.timeout, None, "{c}");
    }
}

/// The artifact a request brings (from a CI source) passes the same URL grammar as `artifact_url`: a
/// right-to-left override or a `$(…)` in it stops the release in prepare, before any call is sent.
#[tokio::test]
async fn a_hostile_artifact_url_from_the_request_is_refused_in_prepare() {
    let t = template(LINUX, "");
    for url in [
        "https://ci.example.com/shop/1.0.0/\u{202e}raw.war",
        "https://ci.example.com/$(id)/shop.war",
    ] {
        let fleet = Arc::new(pushguide_core::sim::SimFleet::new(["web-01", "web-02"]).unwrap());
        let engine = Engine::builder(fleet.clone()).build();
        let r = Request::new(t.clone(), "1.0.0", Principal::user("ops"))
            .artifact(Artifact::new(url, Some(SHA.into())));
        let err = engine.plan(&r).await.unwrap_err().to_string();
        assert!(err.contains("artifact.url"), "{err}");
        assert!(!err.contains('\u{202e}'), "{err}");
        let outcome = engine.deploy(r).await;
        let sent: Vec<String> = fleet.requests().into_iter().map(|q| q.fun).collect();
        assert!(
            sent.iter().all(|f| f == "test.ping"),
            "{sent:?} ({outcome:?})"
        );
    }
}

/// A template with 10,000 `[project.hosts.*]` tables for hosts outside the targets
/// parses, plans and deploys two hosts quickly: the cost follows the targets, not the host tables.
#[tokio::test]
async fn ten_thousand_host_tables_outside_the_targets_cost_little() {
    use std::fmt::Write as _;
    let mut project = LINUX.to_owned();
    for i in 0..10_000 {
        let _ = writeln!(
            project,
            "[project.hosts.other-{i:05}]\ncatalina_base = \"/opt/tomcat-{i}\""
        );
    }
    let started = std::time::Instant::now();
    let t = template(&project, "");
    let fleet = Arc::new(
        pushguide_core::sim::SimFleet::new(["web-01", "web-02"])
            .unwrap()
            .on("*", "file.directory_exists", Outcome::ok(true))
            .on("*", "http.query", Outcome::ok(json!({"status": 200})))
            .on(
                "*",
                "file.readdir",
                Outcome::ok(json!([".", "..", "1.0.0"])),
            ),
    );
    let r = Engine::builder(fleet)
        .build()
        .deploy(req(&t, "1.0.0"))
        .await
        .unwrap();
    assert_eq!(r.outcome, DeploymentOutcome::Succeeded, "{r}");
    let took = started.elapsed();
    assert!(took < std::time::Duration::from_secs(10), "{took:?}");
}
