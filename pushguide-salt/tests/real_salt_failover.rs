//! Failover between two salt-api endpoints on the REAL lab in multi-master mode
//! (`PUSHGUIDE_SALT_MASTERS=2 scripts/salt-lab up`). DESTRUCTIVE: it stops salt-api 1 (SIGTERM to the
//! pid in `PUSHGUIDE_SALT_API_PIDFILE`), so it only runs with `PUSHGUIDE_SALT_FAILOVER=1`, on its own
//! (`cargo test -p pushguide-salt --test real_salt_failover`); otherwise it prints a skip message.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use pushguide_core::{
    Deployer, DeployerConfig, DeploymentOutcome, Engine, Error, EventKind, KindInfo, MinionId,
    Outcome, Platform, Principal, Request, SaltCall, StageContext, StageError, Template, Transport,
};
use pushguide_salt::{SaltApi, SaltApiSettings};

/// Sleeps a little on the minions in every stage (so a deployment is under way when salt-api 1 is
/// stopped), then creates `<root>/<version>`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct SlowAppConfig {
    root: String,
}

#[derive(Debug)]
struct SlowApp(String);

inventory::submit! {
    KindInfo { kind: "failover-app", summary: "failover test", platforms: &[Platform::Linux],
        example: "kind = \"failover-app\"\nroot = \"/tmp/x\"\n" }
}

#[typetag::serde(name = "failover-app")]
impl DeployerConfig for SlowAppConfig {
    fn build(&self) -> Result<Box<dyn Deployer>, Error> {
        Ok(Box::new(SlowApp(self.root.clone())))
    }
}

#[async_trait::async_trait]
impl Deployer for SlowApp {
    async fn pre_deploy(&self, cx: &mut StageContext<'_>) -> Result<(), StageError> {
        cx.call(
            SaltCall::read("test.sleep")
                .arg(2)
                .timeout(Duration::from_secs(60)),
        )
        .await?;
        Ok(())
    }
    async fn deploy(&self, cx: &mut StageContext<'_>) -> Result<(), StageError> {
        let dir = format!("{}/{}/", self.0, cx.version());
        cx.call(
            SaltCall::mutate("file.makedirs")
                .arg(dir)
                .timeout(Duration::from_secs(60)),
        )
        .await?;
        Ok(())
    }
    async fn post_deploy(&self, cx: &mut StageContext<'_>) -> Result<(), StageError> {
        let dir = format!("{}/{}", self.0, cx.version());
        let r = cx
            .call(
                SaltCall::read("file.directory_exists")
                    .arg(dir.as_str())
                    .timeout(Duration::from_secs(60)),
            )
            .await?;
        let missing: Vec<MinionId> = r
            .returned()
            .filter(|(_, v)| v.as_bool() != Some(true))
            .map(|(h, _)| h.clone())
            .collect();
        for h in missing {
            cx.fail(&h, format!("{dir} does not exist"));
        }
        Ok(())
    }
    async fn rollback(&self, _cx: &mut StageContext<'_>) -> Result<(), StageError> {
        Ok(())
    }
}

#[tokio::test]
async fn failover_calls_go_on_through_the_second_endpoint_when_the_first_dies() {
    if std::env::var("PUSHGUIDE_SALT_FAILOVER").as_deref() != Ok("1") {
        assert!(
            std::env::var("PUSHGUIDE_REQUIRE_SALT").as_deref() != Ok("1")
                || std::env::var("PUSHGUIDE_SALT_URL_2").is_ok(),
            "PUSHGUIDE_REQUIRE_SALT=1 but PUSHGUIDE_SALT_URL_2 is not set (PUSHGUIDE_SALT_MASTERS=2)"
        );
        eprintln!("skipping failover: set PUSHGUIDE_SALT_FAILOVER=1 (it stops salt-api 1 of a 2-master lab)");
        return;
    }
    let s =
        SaltApiSettings::from_env().unwrap_or_else(|e| panic!("PUSHGUIDE_SALT_FAILOVER=1 but {e}"));
    assert_eq!(
        s.endpoints.len(),
        2,
        "needs PUSHGUIDE_SALT_URL_2 (PUSHGUIDE_SALT_MASTERS=2)"
    );
    let pidfile = std::env::var("PUSHGUIDE_SALT_API_PIDFILE")
        .expect("PUSHGUIDE_SALT_API_PIDFILE is set by scripts/salt-lab");
    let minions: Vec<MinionId> = std::env::var("PUSHGUIDE_SALT_MINIONS")
        .expect("PUSHGUIDE_SALT_MINIONS")
        .split_whitespace()
        .map(|m| MinionId::new(m).unwrap())
        .collect();
    let api = SaltApi::new(SaltApiSettings {
        connect_timeout: Duration::from_secs(2),
        ..s
    })
    .unwrap();
    let ping = SaltCall::read("test.ping").timeout(Duration::from_secs(20));

    let mut r = api
        .call(&minions, &ping)
        .await
        .expect("ping via endpoint 1");
    assert!(minions.iter().all(|m| r.take(m).is_ok()));
    let h = api.endpoint_health();
    assert!(h[0].logged_in && !h[1].logged_in, "{h:?}");

    // A deployment in batches of one host; salt-api 1 is stopped while the first batch's
    // `test.sleep` runs, and the deployment must complete through salt-api 2.
    let root = format!("/tmp/pg-salt-deploy/failover-{}", std::process::id());
    let hosts: Vec<String> = minions.iter().map(|m| format!("\"{m}\"")).collect();
    let text = format!(
        "name = \"failover\"\n[acl.deployers]\nusers = [\"ops\"]\n[targets]\nminions = [{}]\n\
         [rollout]\nbatch = 1\n[project]\nkind = \"failover-app\"\nroot = \"{root}\"\n",
        hosts.join(", ")
    );
    let template = Arc::new(Template::from_toml_str(&text, "<failover>").unwrap());
    let engine = Engine::builder(Arc::new(api.clone())).build();
    let handle = engine
        .start(Request::new(template, "1.0.0", Principal::user("ops")))
        .await
        .unwrap();
    let mut events = handle.events();
    while let Some(e) = events.next().await {
        if let EventKind::CallStarted {
            fun,
            batch: Some(0),
            ..
        } = &e.kind
        {
            if fun == "test.sleep" {
                break;
            }
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = std::fs::read_to_string(&pidfile).expect("pidfile");
    let status = std::process::Command::new("kill")
        .args(["-TERM", pid.trim()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill -TERM {pid}");
    let url1 = api.settings().endpoints[0]
        .trim_start_matches("http://")
        .to_owned();
    let stop = Instant::now();
    while std::net::TcpStream::connect(&url1).is_ok() {
        assert!(
            stop.elapsed() < Duration::from_secs(15),
            "salt-api 1 still listens"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("salt-api 1 stopped after {:?}", stop.elapsed());
    let report = handle.wait().await.unwrap();
    eprintln!("{report}");
    assert_eq!(report.outcome, DeploymentOutcome::Succeeded, "{report}");
    for m in &minions {
        assert!(
            std::path::Path::new(&format!("{root}/1.0.0")).is_dir(),
            "{m}: release directory missing"
        );
    }
    std::fs::remove_dir_all(&root).ok();

    let started = Instant::now();
    let mut r = api
        .call(&minions, &ping)
        .await
        .expect("ping via endpoint 2");
    eprintln!("first call after the stop: {:?}", started.elapsed());
    for m in &minions {
        assert_eq!(r.take(m), Outcome::ok(true), "{m}");
    }
    let h = api.endpoint_health();
    eprintln!("{h:?}");
    assert!(!h[0].available && h[0].down_for.is_some(), "{h:?}");
    assert!(
        h[0].last_error
            .as_deref()
            .unwrap_or("")
            .contains("unreachable"),
        "{h:?}"
    );
    assert!(h[1].available && h[1].logged_in, "{h:?}");

    // endpoint 1 is in its cool-down: the next calls go straight to endpoint 2
    let st = api
        .manage_status()
        .await
        .expect("manage.status via endpoint 2");
    assert!(
        minions
            .iter()
            .all(|m| st.up.iter().any(|u| u == m.as_str())),
        "{st:?}"
    );
    let mut r = api
        .call(
            &minions,
            &SaltCall::read("cmd.run_all")
                .arg("exit 4")
                .kwarg("python_shell", true),
        )
        .await
        .expect("cmd via endpoint 2");
    for m in &minions {
        assert!(
            matches!(
                r.take(m),
                Outcome::Failed {
                    retcode: Some(4),
                    ..
                }
            ),
            "{m}"
        );
    }
}
