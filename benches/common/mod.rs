//! Shared by the benches: an instant transport and the `bench` project type (one call per batch
//! stage: make the release directory, switch the symlink, a read-only probe).
#![allow(dead_code)]

use pushguide::{
    Deployer, DeployerConfig, Error, KindInfo, MinionId, Outcome, Returns, SaltCall, StageContext,
    StageError, Transport, TransportError,
};

/// Answers every call at once, `true` for every target.
pub(crate) struct InstantTransport;

#[async_trait::async_trait]
impl Transport for InstantTransport {
    async fn call(
        &self,
        targets: &[MinionId],
        _call: &SaltCall,
    ) -> Result<Returns, TransportError> {
        Ok(Returns::uniform(targets, Outcome::ok(true)))
    }
}

/// `[project] kind = "bench"`.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct BenchConfig {}

#[derive(Debug)]
struct BenchDeployer;

/// Calls per batch of [`BenchDeployer`] (pre-deploy, deploy, post-deploy).
pub(crate) const CALLS_PER_BATCH: usize = 3;

#[async_trait::async_trait]
impl Deployer for BenchDeployer {
    async fn pre_deploy(&self, cx: &mut StageContext<'_>) -> Result<(), StageError> {
        cx.call(SaltCall::mutate("file.makedirs").arg("/srv/b/releases/1/"))
            .await?;
        Ok(())
    }
    async fn deploy(&self, cx: &mut StageContext<'_>) -> Result<(), StageError> {
        cx.call(
            SaltCall::mutate("file.symlink")
                .arg("/srv/b/releases/1")
                .arg("/srv/b/current"),
        )
        .await?;
        Ok(())
    }
    async fn post_deploy(&self, cx: &mut StageContext<'_>) -> Result<(), StageError> {
        cx.call(SaltCall::read("test.ping")).await?;
        Ok(())
    }
    async fn rollback(&self, _cx: &mut StageContext<'_>) -> Result<(), StageError> {
        Ok(())
    }
}

#[typetag::serde(name = "bench")]
impl DeployerConfig for BenchConfig {
    fn build(&self) -> Result<Box<dyn Deployer>, Error> {
        Ok(Box::new(BenchDeployer))
    }
}

inventory::submit! {
    KindInfo { kind: "bench", summary: "benchmark deployer", platforms: &[], example: "kind = \"bench\"\n" }
}
