//! `java-tomcat` through the real salt-api client (`SaltApi`) against the fake salt-api.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use pushguide_core::sim::SimFleet;
use pushguide_core::{
    Artifact, DeploymentOutcome, Engine, Outcome, Principal, Request, Stage, Template,
};
use pushguide_java as _;
use pushguide_salt::fake::FakeSaltApi;
use pushguide_salt::{SaltApi, SaltApiSettings};

const SHA: &str = "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae";

/// A minion that never answers the stop command (killed while it ran): the host fails after the
/// connection's `job_timeout` (here 1 s), the same rule as every other call — not after a fixed 180 s.
#[tokio::test]
async fn a_stop_command_without_answer_fails_after_the_job_timeout() {
    let fleet = Arc::new(
        SimFleet::new(["web-01", "web-02"])
            .unwrap()
            .on("*", "file.directory_exists", Outcome::ok(false))
            .on("*", "file.get_hash", Outcome::ok(SHA))
            .on(
                "*",
                "cp.get_url",
                Outcome::ok("/srv/shop/archives/2.0.0.war"),
            )
            .on("*", "archive.unzip", Outcome::ok(serde_json::json!([])))
            .on("web-02", "cmd.run_all", Outcome::NoReturn),
    );
    let fake = FakeSaltApi::start(fleet.clone()).await.unwrap();
    let api = SaltApi::new(SaltApiSettings {
        job_timeout: Duration::from_secs(1),
        poll_interval: Duration::from_millis(100),
        ..fake.settings()
    })
    .unwrap();
    let text = "name = \"shop\"\n[acl.deployers]\nusers = [\"ops\"]\n[targets]\nminions = [\"web-01\", \"web-02\"]\n\
                [rollout]\nbatch = 2\n[failure]\nmax_failed = 1\n[project]\nkind = \"java-tomcat\"\ncontext = \"shop\"\n\
                root = \"/srv/shop\"\ncatalina_base = \"/opt/tomcat\"\n\
                start_command = [\"/opt/tomcat/bin/startup.sh\"]\nstop_command = [\"/opt/tomcat/bin/shutdown.sh\"]\n";
    let t = Arc::new(Template::from_toml_str(text, "<fake>").unwrap());
    let engine = Engine::builder(Arc::new(api)).build();
    let artifact = Artifact::new(
        "https://ci.example.com/shop/2.0.0/shop.war",
        Some(SHA.into()),
    );
    let started = Instant::now();
    let r = tokio::time::timeout(
        Duration::from_secs(30),
        engine.deploy(Request::new(t, "2.0.0", Principal::user("ops")).artifact(artifact)),
    )
    .await
    .expect("the stop command waits the job timeout, not 180 s")
    .unwrap();
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(1), "{took:?}");
    assert_eq!(r.outcome, DeploymentOutcome::PartiallyApplied, "{r}");
    let f = r.host("web-02").unwrap().failure.clone().unwrap();
    assert_eq!(f.stage, Stage::PreDeploy, "{f:?}");
    assert_eq!(f.fun.as_deref(), Some("cmd.run_all"), "{f:?}");
}
