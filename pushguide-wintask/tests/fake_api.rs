//! A `windows-task` release through the real salt-api client (`SaltApi`) against the fake salt-api.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use pushguide_core::sim::SimFleet;
use pushguide_core::{Artifact, DeploymentOutcome, Engine, Outcome, Principal, Request, Template};
use pushguide_salt::fake::FakeSaltApi;
use pushguide_salt::SaltApi;
use pushguide_wintask as _;
use serde_json::json;

const SHA: &str = "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae";

#[tokio::test]
async fn release_through_salt_api_sends_one_request_per_step() {
    let fleet = Arc::new(
        SimFleet::new(["web-01", "web-02"])
            .unwrap()
            .on("*", "file.directory_exists", Outcome::ok(false))
            .on("*", "file.get_hash", Outcome::ok(SHA))
            .on(
                "*",
                "cp.get_url",
                Outcome::ok("D:\\Jobs\\nightly\\archives\\2.0.0.zip"),
            )
            .on("*", "task.status", Outcome::ok("Ready"))
            .on(
                "*",
                "task.info",
                Outcome::ok(json!({"enabled": true, "status": "Ready",
                                   "last_run_result": pushguide_wintask::SUCCESS})),
            )
            .on(
                "*",
                "file.readdir",
                Outcome::ok(json!([".", "..", "2.0.0"])),
            ),
    );
    let fake = FakeSaltApi::start(fleet.clone()).await.unwrap();
    let api = SaltApi::new(fake.settings()).unwrap();
    let text = "name = \"nightly\"\n[acl.deployers]\nusers = [\"ops\"]\n[targets]\nminions = [\"web-01\", \"web-02\"]\n\
                [rollout]\nbatch = 2\n[project]\n\
                kind = \"windows-task\"\nroot = 'D:\\Jobs\\nightly'\ntask = \"nightly\"\nrun_now = true\npoll_interval_secs = 1\n";
    let t = Arc::new(Template::from_toml_str(text, "<fake>").unwrap());
    let engine = Engine::builder(Arc::new(api)).build();
    let artifact = Artifact::new(
        "https://ci.example.com/nightly/2.0.0/nightly.zip",
        Some(SHA.into()),
    );
    let r = engine
        .deploy(Request::new(t, "2.0.0", Principal::user("ops")).artifact(artifact))
        .await
        .unwrap();
    assert_eq!(r.outcome, DeploymentOutcome::Succeeded, "{r}");
    let funs: Vec<String> = fleet.requests().into_iter().map(|q| q.fun).collect();
    assert_eq!(
        funs,
        [
            "test.ping",
            "file.directory_exists",
            "cp.get_url",
            "file.get_hash",
            "task.status",
            "task.edit_task",
            "task.status",
            "file.directory_exists",
            "archive.unzip",
            "file.symlink",
            "task.edit_task",
            "task.run",
            "task.status",
            "task.info",
            "file.readdir",
        ]
    );
    assert!(fleet.requests().iter().all(|q| q.targets.len() == 2));
    assert_eq!(fake.request_count().get("POST /"), funs.len() as u64);
}

#[tokio::test]
async fn plan_lists_every_stage_without_a_salt_request() {
    let fleet = Arc::new(SimFleet::new(["web-01", "web-02"]).unwrap());
    let text = "name = \"nightly\"\n[acl.deployers]\nusers = [\"ops\"]\n[targets]\nminions = [\"web-01\", \"web-02\"]\n[project]\n\
                kind = \"windows-task\"\nroot = 'D:\\Jobs\\nightly'\ntask = \"nightly\"\nrun_now = true\n\
                artifact_url = \"https://ci.example.com/nightly/{version}/nightly.zip\"\n";
    let t = Arc::new(Template::from_toml_str(text, "<plan>").unwrap());
    let plan = Engine::builder(fleet.clone())
        .build()
        .plan(&Request::new(t, "2.0.0", Principal::user("ops")))
        .await
        .unwrap();
    let funs: Vec<&str> = plan
        .steps
        .iter()
        .flat_map(|(_, calls)| calls.iter().map(|c| c.fun.as_str()))
        .collect();
    for f in [
        "cp.get_url",
        "task.edit_task",
        "archive.unzip",
        "file.symlink",
        "task.run",
        "task.info",
    ] {
        assert!(funs.contains(&f), "{f} not in {funs:?}");
    }
    // only the engine's pre-flight ping reaches the fleet
    let sent: Vec<String> = fleet.requests().into_iter().map(|q| q.fun).collect();
    assert_eq!(sent, ["test.ping"]);
}
