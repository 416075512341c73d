//! A new project type in about 100 lines: a static website copied into `releases/<version>` and
//! switched with a symlink, registered through `inventory` and configured through `typetag`.
//!
//! Run: `cargo run --example custom_project_type`
#![allow(clippy::print_stdout)]

use std::sync::Arc;

use pushguide::sim::SimFleet;
use pushguide::steps::{self, PathStyle, ReleaseLayout};
use pushguide::{
    Deployer, DeployerConfig, DeploymentOutcome, Engine, Error, KindInfo, Outcome, Platform,
    Principal, Request, SaltCall, StageContext, StageError, Template,
};
use serde::{Deserialize, Serialize};

/// The `[project]` table of a `static-site` template.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StaticSiteConfig {
    /// Release root on the minions.
    root: String,
    /// The symlink the web server serves.
    docroot: String,
    /// Where minions fetch the tarball; `{version}` is replaced.
    artifact_url: String,
}

// 1. Register the kind so tools can list and document it…
inventory::submit! {
    KindInfo {
        kind: "static-site",
        summary: "A static website: tarball into releases/<version>, docroot symlink switch.",
        platforms: &[Platform::Linux],
        example: "kind = \"static-site\"\nroot = \"/srv/site\"\ndocroot = \"/var/www/site\"\nartifact_url = \"https://ci.example.com/site/{version}.tar.gz\"\n",
    }
}

// 2. …and make its config deserializable from `kind = "static-site"`, validated with core's grammars.
#[typetag::serde(name = "static-site")]
impl DeployerConfig for StaticSiteConfig {
    fn validate(&self) -> Result<(), Error> {
        pushguide::validate::path("project.root", &self.root)?;
        pushguide::validate::path("project.docroot", &self.docroot)
    }
    fn build(&self) -> Result<Box<dyn Deployer>, Error> {
        Ok(Box::new(StaticSite { cfg: self.clone() }))
    }
}

/// 3. The deployer: only the stages that do something.
#[derive(Debug)]
struct StaticSite {
    cfg: StaticSiteConfig,
}

impl StaticSite {
    fn layout(&self) -> ReleaseLayout {
        ReleaseLayout::new(self.cfg.root.as_str(), PathStyle::Posix)
    }
    fn switch(&self, version: &str) -> SaltCall {
        SaltCall::mutate("file.symlink")
            .arg(self.layout().release_dir(version))
            .arg(self.cfg.docroot.as_str())
            .kwarg("force", true)
            .kwarg("atomic", true)
    }
}

#[async_trait::async_trait]
impl Deployer for StaticSite {
    async fn pre_deploy(&self, cx: &mut StageContext<'_>) -> Result<(), StageError> {
        let v = cx.version().to_owned();
        let url = self.cfg.artifact_url.replace("{version}", &v);
        cx.call(
            SaltCall::mutate("archive.extracted")
                .arg(self.layout().release_dir(&v))
                .kwarg("source", url)
                .kwarg("skip_verify", true),
        )
        .await?;
        Ok(())
    }

    async fn deploy(&self, cx: &mut StageContext<'_>) -> Result<(), StageError> {
        let call = self.switch(cx.version());
        cx.call(call).await?;
        Ok(())
    }

    async fn post_deploy(&self, cx: &mut StageContext<'_>) -> Result<(), StageError> {
        let health = cx.template().health.clone();
        let url = health.url.clone();
        steps::health_check(cx, &health, |_| url.clone()).await
    }

    async fn rollback(&self, cx: &mut StageContext<'_>) -> Result<(), StageError> {
        for (version, hosts) in cx.rollback_groups() {
            cx.call_on(&hosts, self.switch(&version)).await?;
        }
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let kinds: Vec<&str> = pushguide::registered_kinds()
        .iter()
        .map(|k| k.kind)
        .collect();
    println!("registered kinds: {kinds:?}");
    let template = Arc::new(Template::from_toml_str(
        r#"
        name = "site"
        [acl.deployers]
        users = ["alice"]
        [targets]
        minions = ["www-1", "www-2", "www-3"]
        [rollout]
        batch = 2
        [health]
        url = "http://127.0.0.1/"
        [project]
        kind = "static-site"
        root = "/srv/site"
        docroot = "/var/www/site"
        artifact_url = "https://ci.example.com/site/{version}.tar.gz"
        "#,
        "site.toml",
    )?);
    let fleet = Arc::new(SimFleet::new(["www-1", "www-2", "www-3"])?.on(
        "*",
        "http.query",
        Outcome::ok(serde_json::json!({"status": 200})),
    ));
    let engine = Engine::builder(fleet.clone()).build();
    let report = engine
        .deploy(Request::new(
            template,
            "2026.11.27",
            Principal::user("alice"),
        ))
        .await?;
    println!("{report}");
    assert_eq!(report.outcome, DeploymentOutcome::Succeeded);
    println!(
        "salt requests: {} (one per step per batch)",
        fleet.requests().len()
    );
    Ok(())
}
