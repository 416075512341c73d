//! The `Deployer` trait: the four stages of a release, plus rollback.

use std::fmt;

use async_trait::async_trait;

use crate::hook::context::StageContext;
use crate::vocab::error::StageError;
use crate::vocab::stage::Stage;

/// A project type: what to do on the minions at each stage of a release, and how to roll back.
///
/// The engine calls the hooks in this order:
///
/// 1. **`prepare`** (*preparation*) — once per deployment, before any batch, with every target host
///    live. Read-only: check the artifact, the layout conventions, the hosts' state. A mutating call
///    here is refused. An `Err` stops the deployment before anything changed.
/// 2. For each rolling batch:
///    - **`pre_deploy`** (*before release*) — fetch and verify the artifact, stop the service, put up a
///      maintenance page;
///    - **`deploy`** (*release*) — unpack into the release directory and switch to it;
///    - **`post_deploy`** (*after release*) — start, health check, prune old releases.
/// 3. **`rollback`** — when the failure budget is exceeded (with an automatic rollback policy), on a
///    decision, or on cancel: for every host the deployment touched, back to
///    [`StageContext::rollback_target`].
///
/// Each hook acts on the whole batch: [`StageContext::call`] sends ONE salt request for all live hosts
/// and returns the hosts that succeeded; hosts that fail are recorded with the call and reason and are
/// left out of the batch's later calls and stages. Hooks default to doing nothing, except `deploy` and
/// `rollback`, which every project type must write.
///
/// # Example
///
/// ```
/// use pushguide_core::{Deployer, SaltCall, StageContext, StageError};
///
/// /// Unpacks a tarball into `/srv/app/releases/<version>` and points `/srv/app/current` at it.
/// #[derive(Debug)]
/// struct Tarball;
///
/// #[async_trait::async_trait]
/// impl Deployer for Tarball {
///     async fn pre_deploy(&self, cx: &mut StageContext<'_>) -> Result<(), StageError> {
///         let dir = format!("/srv/app/releases/{}", cx.version());
///         cx.call(SaltCall::mutate("file.makedirs").arg(format!("{dir}/"))).await?;
///         Ok(())
///     }
///     async fn deploy(&self, cx: &mut StageContext<'_>) -> Result<(), StageError> {
///         let dir = format!("/srv/app/releases/{}", cx.version());
///         cx.call(SaltCall::mutate("file.symlink").arg(dir).arg("/srv/app/current").kwarg("force", true))
///             .await?;
///         Ok(())
///     }
///     async fn rollback(&self, cx: &mut StageContext<'_>) -> Result<(), StageError> {
///         // Hosts may have different rollback targets: one call per target version.
///         for (version, hosts) in cx.rollback_groups() {
///             let dir = format!("/srv/app/releases/{version}");
///             cx.call_on(&hosts, SaltCall::mutate("file.symlink").arg(dir).arg("/srv/app/current")
///                 .kwarg("force", true)).await?;
///         }
///         Ok(())
///     }
/// }
///
/// // Run it against a simulated fleet of three hosts.
/// # #[cfg(feature = "sim")] {
/// use std::sync::Arc;
/// use pushguide_core::{Engine, Principal, Request, Template, sim::SimFleet, DeploymentOutcome};
/// # #[derive(Debug, serde::Serialize, serde::Deserialize)] struct TarballConfig {}
/// # #[typetag::serde(name = "tarball-doc")]
/// # impl pushguide_core::DeployerConfig for TarballConfig {
/// #     fn build(&self) -> Result<Box<dyn Deployer>, pushguide_core::Error> { Ok(Box::new(Tarball)) }
/// # }
/// # inventory::submit! { pushguide_core::KindInfo { kind: "tarball-doc", summary: "doc", platforms: &[], example: "" } }
/// let template = Template::from_toml_str(r#"
///     name = "shop"
///     [acl.deployers]
///     users = ["alice"]
///     [targets]
///     minions = ["web-01", "web-02", "web-03"]
///     [project]
///     kind = "tarball-doc"
/// "#, "<doc>").unwrap();
/// let fleet = Arc::new(SimFleet::new(["web-01", "web-02", "web-03"]).unwrap());
/// let engine = Engine::builder(fleet.clone()).build();
/// let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
/// let report = rt.block_on(engine.deploy(Request::new(Arc::new(template), "1.0.0", Principal::user("alice"))))
///     .unwrap();
/// assert_eq!(report.outcome, DeploymentOutcome::Succeeded);
/// # }
/// ```
#[async_trait]
pub trait Deployer: Send + Sync + fmt::Debug {
    /// Preparation: once per deployment, read-only. Default: nothing.
    async fn prepare(&self, cx: &mut StageContext<'_>) -> Result<(), StageError> {
        let _ = cx;
        Ok(())
    }

    /// Staging: once per deployment, before the first batch, on every target host at once (one
    /// request per step for the whole fleet, not per batch). Fetch, verify and unpack the release
    /// beside the running one so that a batch's rolling window holds only what must happen there
    /// (stop, switch, start, check). It must touch nothing that serves: a host failing here fails
    /// before any host is touched, counts against the failure budget, and is left out of its
    /// batch. The batch stages run after it as always, so they must find staged work done (skip
    /// what is there). Runs only when [`Deployer::stages_ahead`] says so and the template's
    /// `rollout.stage_ahead` is on (the default). Default: nothing.
    async fn stage(&self, cx: &mut StageContext<'_>) -> Result<(), StageError> {
        let _ = cx;
        Ok(())
    }

    /// Whether this kind stages releases ahead of the batches ([`Deployer::stage`]). Default: no.
    fn stages_ahead(&self) -> bool {
        false
    }

    /// Whether this kind's batch hooks (`pre_deploy`, `deploy`, `post_deploy`) only queue steps
    /// ([`StageContext::steps`]) and make no calls, so that the engine may send a batch's steps of
    /// all three stages to each host as ONE salt job (when it sends jobs at all,
    /// [`crate::EngineBuilder::step_jobs`], in a real run, and unless the template pauses for a
    /// decision at a failed stage: then each stage is a job of its own, so the hosts wait at the
    /// stage that failed). The stages stay what they are in the journal, the events and the log:
    /// each step is recorded under the stage that queued it, the events of a batch sent as one job
    /// come when its job returns. A hook that calls while its batch is collected gets
    /// [`StageError::Misuse`]. Default: no.
    fn batch_in_one_job(&self) -> bool {
        false
    }

    /// Before release, per batch. Default: nothing.
    async fn pre_deploy(&self, cx: &mut StageContext<'_>) -> Result<(), StageError> {
        let _ = cx;
        Ok(())
    }

    /// Release, per batch.
    async fn deploy(&self, cx: &mut StageContext<'_>) -> Result<(), StageError>;

    /// After release, per batch. Default: nothing.
    async fn post_deploy(&self, cx: &mut StageContext<'_>) -> Result<(), StageError> {
        let _ = cx;
        Ok(())
    }

    /// Rollback of touched hosts to their rollback targets.
    async fn rollback(&self, cx: &mut StageContext<'_>) -> Result<(), StageError>;
}

/// Runs the hook for `stage` (shared by the engine and the planner).
pub(crate) async fn run_hook(
    deployer: &dyn Deployer,
    stage: Stage,
    cx: &mut StageContext<'_>,
) -> Result<(), StageError> {
    match stage {
        Stage::Prepare => deployer.prepare(cx).await,
        Stage::PreDeploy => deployer.pre_deploy(cx).await,
        Stage::Deploy => deployer.deploy(cx).await,
        Stage::PostDeploy => deployer.post_deploy(cx).await,
        Stage::Rollback => deployer.rollback(cx).await,
        Stage::Staging => deployer.stage(cx).await,
    }?;
    // the steps the hook queued (a batch collected as one job is sent by the engine at its end)
    cx.flush_steps().await
}
