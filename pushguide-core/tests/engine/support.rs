//! A test project type and helpers shared by the engine tests.

use std::sync::Arc;

use pushguide_core::sim::SimFleet;
use pushguide_core::{
    Deployer, DeployerConfig, Engine, Error, EventKind, KindInfo, Platform, Principal, Request,
    SaltCall, StageContext, StageError, Template, Transport,
};
use serde::{Deserialize, Serialize};

/// Release directory + symlink, a read-only health probe, and a symlink rollback.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TestAppConfig {
    pub(crate) root: String,
}

#[derive(Debug)]
pub(crate) struct TestApp {
    root: String,
}

inventory::submit! {
    KindInfo {
        kind: "test-app",
        summary: "Release directory and symlink, for engine tests.",
        platforms: &[Platform::Linux],
        example: "kind = \"test-app\"\nroot = \"/srv/app\"\n",
    }
}

#[typetag::serde(name = "test-app")]
impl DeployerConfig for TestAppConfig {
    fn validate(&self) -> Result<(), Error> {
        pushguide_core::validate::path("project.root", &self.root)
    }
    fn build(&self) -> Result<Box<dyn Deployer>, Error> {
        Ok(Box::new(TestApp {
            root: self.root.clone(),
        }))
    }
}

impl TestApp {
    fn release_dir(&self, version: &str) -> String {
        format!("{}/releases/{version}", self.root)
    }
}

#[async_trait::async_trait]
impl Deployer for TestApp {
    async fn pre_deploy(&self, cx: &mut StageContext<'_>) -> Result<(), StageError> {
        let dir = self.release_dir(cx.version());
        cx.call(SaltCall::mutate("file.makedirs").arg(format!("{dir}/")))
            .await?;
        Ok(())
    }

    async fn deploy(&self, cx: &mut StageContext<'_>) -> Result<(), StageError> {
        let dir = self.release_dir(cx.version());
        cx.call(
            SaltCall::mutate("file.symlink")
                .arg(dir)
                .arg(format!("{}/current", self.root))
                .kwarg("force", true),
        )
        .await?;
        Ok(())
    }

    async fn post_deploy(&self, cx: &mut StageContext<'_>) -> Result<(), StageError> {
        cx.call(SaltCall::read("http.query").arg("http://127.0.0.1:8080/health"))
            .await?;
        Ok(())
    }

    async fn rollback(&self, cx: &mut StageContext<'_>) -> Result<(), StageError> {
        for (version, hosts) in cx.rollback_groups() {
            cx.call_on(
                &hosts,
                SaltCall::mutate("file.symlink")
                    .arg(self.release_dir(&version))
                    .arg(format!("{}/current", self.root))
                    .kwarg("force", true),
            )
            .await?;
        }
        Ok(())
    }
}

pub(crate) fn hosts(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("web-{i:02}")).collect()
}

/// A template over `n` hosts with extra TOML appended (sections for rollout, failure, rollback).
pub(crate) fn template(n: usize, extra: &str) -> Arc<Template> {
    let minions: Vec<String> = hosts(n).iter().map(|h| format!("\"{h}\"")).collect();
    let text = format!(
        "name = \"shop\"\n[acl.deployers]\nusers = [\"alice\"]\n[targets]\nminions = [{}]\n{extra}\n[project]\nkind = \"test-app\"\nroot = \"/srv/shop\"\n",
        minions.join(", ")
    );
    Arc::new(Template::from_toml_str(&text, "<test>").expect("test template parses"))
}

pub(crate) fn fleet(n: usize) -> Arc<SimFleet> {
    Arc::new(SimFleet::new(hosts(n)).expect("valid ids"))
}

pub(crate) fn engine(t: Arc<dyn Transport>) -> Engine {
    Engine::builder(t).build()
}

pub(crate) fn alice() -> Principal {
    Principal::user("alice")
}

pub(crate) fn req(t: &Arc<Template>, version: &str) -> Request {
    Request::new(t.clone(), version, alice())
}

/// Requests of the fleet as `(fun, targets)` pairs.
pub(crate) fn calls(fleet: &SimFleet) -> Vec<(String, Vec<String>)> {
    fleet
        .requests()
        .into_iter()
        .map(|r| (r.fun, r.targets.iter().map(|m| m.to_string()).collect()))
        .collect()
}

pub(crate) fn kinds(events: &[pushguide_core::Event]) -> Vec<&EventKind> {
    events.iter().map(|e| &e.kind).collect()
}

/// Records that `hosts` of template `shop` run `version` (a successful release).
pub(crate) async fn seed(engine: &Engine, hosts: &[&str], version: &str) {
    let lease = pushguide_core::Lease::new("shop", "seed", 0);
    engine
        .fleet_state()
        .record(
            &lease,
            &hosts
                .iter()
                .map(|h| pushguide_core::MinionId::new(h).expect("valid id"))
                .collect::<Vec<_>>(),
            &pushguide_core::HostChange::Deployed {
                version: version.into(),
            },
        )
        .await
        .expect("memory fleet state records");
}
