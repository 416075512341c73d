//! A `dotnet-iis` release through the real salt-api client (`SaltApi`) against the fake salt-api.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use pushguide_core::sim::SimFleet;
use pushguide_core::steps::ManifestEntry;
use pushguide_core::{Artifact, DeploymentOutcome, Engine, Outcome, Principal, Request, Template};
use pushguide_dotnet as _;
use pushguide_salt::fake::FakeSaltApi;
use pushguide_salt::SaltApi;
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
                Outcome::ok("D:\\Sites\\shop\\archives\\2.0.0.zip"),
            )
            .on(
                "*",
                "win_iis.get_container_setting",
                Outcome::ok(json!({"physicalPath": "D:\\Sites\\shop\\releases\\1.0.0"})),
            )
            .on("*", "http.query", Outcome::ok(json!({"status": 200})))
            .on(
                "*",
                "file.readdir",
                Outcome::ok(json!([".", "..", "2.0.0"])),
            ),
    );
    let fake = FakeSaltApi::start(fleet.clone()).await.unwrap();
    let api = SaltApi::new(fake.settings()).unwrap();
    let text = "name = \"shop\"\n[acl.deployers]\nusers = [\"ops\"]\n[targets]\nminions = [\"web-01\", \"web-02\"]\n\
                [rollout]\nbatch = 2\n[health]\nurl = \"http://127.0.0.1/shop/health\"\n[project]\n\
                kind = \"dotnet-iis\"\nroot = 'D:\\Sites\\shop'\nsite = \"shop\"\napp_pool = \"shop\"\napp_offline = true\n";
    let t = Arc::new(Template::from_toml_str(text, "<fake>").unwrap());
    let engine = Engine::builder(Arc::new(api)).build();
    let artifact = Artifact::new(
        "https://ci.example.com/shop/2.0.0/shop.zip",
        Some(SHA.into()),
    )
    .with_manifest(vec![ManifestEntry {
        path: "web.config".into(),
        size: 10,
    }]);
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
            "win_iis.get_container_setting",
            "file.write",
            "win_iis.stop_apppool",
            "file.directory_exists",
            "archive.unzip",
            "win_iis.set_container_setting",
            "win_iis.start_apppool",
            "file.remove",
            "http.query",
            "file.readdir",
        ]
    );
    assert!(fleet.requests().iter().all(|q| q.targets.len() == 2));
    assert_eq!(fake.request_count().get("POST /"), funs.len() as u64);
}

#[tokio::test]
async fn plan_lists_every_stage_without_a_salt_request() {
    let fleet = Arc::new(SimFleet::new(["web-01", "web-02"]).unwrap());
    let text = "name = \"shop\"\n[acl.deployers]\nusers = [\"ops\"]\n[targets]\nminions = [\"web-01\", \"web-02\"]\n[health]\nurl = \"http://127.0.0.1/health\"\nretries = 1\n\
                [project]\nkind = \"dotnet-iis\"\nroot = 'D:\\Sites\\shop'\nsite = \"shop\"\napp_pool = \"shop\"\n\
                artifact_url = \"https://ci.example.com/shop/{version}/shop.zip\"\n";
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
        "win_iis.stop_apppool",
        "archive.unzip",
        "win_iis.set_container_setting",
        "win_iis.start_apppool",
        "http.query",
        "win_iis.list_apppools",
    ] {
        assert!(funs.contains(&f), "{f} not in {funs:?}");
    }
    // only the engine's pre-flight ping reaches the fleet
    let sent: Vec<String> = fleet.requests().into_iter().map(|q| q.fun).collect();
    assert_eq!(sent, ["test.ping"]);
}
