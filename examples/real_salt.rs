//! A deployment against a REAL salt-api, configured by `PUSHGUIDE_SALT_URL`, `PUSHGUIDE_SALT_USER`,
//! `PUSHGUIDE_SALT_PASSWORD`, `PUSHGUIDE_SALT_EAUTH` and `PUSHGUIDE_SALT_MINIONS`:
//!
//! ```sh
//! scripts/salt-lab up && . "$(scripts/salt-lab env --path)"
//! cargo run --example real_salt
//! ```
//! It creates `/tmp/pushguide-example/releases/<version>` on every minion, points
//! `/tmp/pushguide-example/current` at it and checks the link, then rolls back.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::sync::Arc;

use pushguide::salt::{SaltApi, SaltApiSettings};
use pushguide::{
    Deployer, DeployerConfig, DeploymentOutcome, Engine, Error, KindInfo, Principal, Request,
    SaltCall, StageContext, StageError, Template,
};

const ROOT: &str = "/tmp/pushguide-example";

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct LinkConfig {}

#[derive(Debug)]
struct Link;

fn switch(version: &str) -> SaltCall {
    SaltCall::mutate("file.symlink")
        .arg(format!("{ROOT}/releases/{version}"))
        .arg(format!("{ROOT}/current"))
        .kwarg("force", true)
        .kwarg("atomic", true)
}

#[async_trait::async_trait]
impl Deployer for Link {
    async fn pre_deploy(&self, cx: &mut StageContext<'_>) -> Result<(), StageError> {
        let dir = format!("{ROOT}/releases/{}/", cx.version());
        cx.call(SaltCall::mutate("file.makedirs").arg(dir)).await?;
        Ok(())
    }
    async fn deploy(&self, cx: &mut StageContext<'_>) -> Result<(), StageError> {
        let call = switch(cx.version());
        cx.call(call).await?;
        Ok(())
    }
    async fn post_deploy(&self, cx: &mut StageContext<'_>) -> Result<(), StageError> {
        let want = format!("{ROOT}/releases/{}", cx.version());
        let r = cx
            .call(SaltCall::read("file.readlink").arg(format!("{ROOT}/current")))
            .await?;
        let wrong: Vec<_> = r
            .returned()
            .filter(|(_, v)| v.as_str() != Some(want.as_str()))
            .map(|(h, _)| h.clone())
            .collect();
        for h in wrong {
            cx.fail(&h, format!("current does not point at {want}"));
        }
        Ok(())
    }
    async fn rollback(&self, cx: &mut StageContext<'_>) -> Result<(), StageError> {
        for (v, hosts) in cx.rollback_groups() {
            cx.call_on(&hosts, switch(&v)).await?;
        }
        Ok(())
    }
}

#[typetag::serde(name = "example-link")]
impl DeployerConfig for LinkConfig {
    fn build(&self) -> Result<Box<dyn Deployer>, Error> {
        Ok(Box::new(Link))
    }
}

inventory::submit! {
    KindInfo { kind: "example-link", summary: "release dir + symlink", platforms: &[], example: "kind = \"example-link\"\n" }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let settings = match SaltApiSettings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "real_salt: {e}; start a salt lab with scripts/salt-lab up and source its env file"
            );
            if std::env::var("PUSHGUIDE_REQUIRE_SALT").as_deref() == Ok("1") {
                return Err(e.into());
            }
            return Ok(());
        }
    };
    let minions: Vec<String> = std::env::var("PUSHGUIDE_SALT_MINIONS")?
        .split_whitespace()
        .map(|m| format!("\"{m}\""))
        .collect();
    let template = Arc::new(Template::from_toml_str(
        &format!(
            "name = \"example\"\n[acl.deployers]\nusers = [\"ops\"]\n[targets]\nminions = [{}]\n[rollout]\nbatch = 1\n[project]\nkind = \"example-link\"\n",
            minions.join(", ")
        ),
        "example.toml",
    )?);
    let engine = Engine::builder(Arc::new(SaltApi::new(settings)?)).build();
    let ops = Principal::user("ops");
    for v in ["1.0.0", "2.0.0"] {
        let report = engine
            .deploy(Request::new(template.clone(), v, ops.clone()))
            .await?;
        println!("{report}");
        if report.outcome != DeploymentOutcome::Succeeded {
            return Err(format!("deployment of {v} did not succeed").into());
        }
    }
    let report = engine
        .deploy(Request::rollback(template, None, ops))
        .await?;
    println!("{report}");
    if report.outcome != DeploymentOutcome::RolledBack {
        return Err("rollback did not succeed".into());
    }
    Ok(())
}
