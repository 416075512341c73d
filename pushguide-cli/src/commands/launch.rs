//! The web service's [`Launcher`]: a queued publish request becomes an engine request through the
//! same checks and sources as `deploy` and `rollback` on the command line, run by the user who
//! queued it.

use std::sync::Arc;

use pushguide_core::{async_trait, DeploymentHandle, Plan, Principal, Request};
use pushguide_postgres::PgStore;
use pushguide_server::{LaunchError, Launcher, PublishMode, PublishRequest, VersionInfo};

use crate::app::App;
use crate::config::Config;

use super::deploy::deploy_request;
use super::plan::{artifact, parse_batch};
use super::rollback::undo_request;

/// How many of the newest versions get their size and checksum looked up for the publish page.
const DETAILED_VERSIONS: usize = 5;

/// Starts the service's deployments over a configuration (salt-api, CI, CMDB, store). On
/// PostgreSQL every deployment goes through the store's fenced ports like `pushguide deploy`'s
/// ([`App::engine`]), over the service's one connection pool (`pg`).
#[derive(Debug)]
pub(crate) struct ConfigLauncher {
    pub(crate) config: Config,
    /// The service's PostgreSQL store, connected; `None` on SQLite.
    pub(crate) pg: Option<PgStore>,
}

impl ConfigLauncher {
    fn app_for(&self, who: &Principal) -> App {
        let mut config = self.config.clone();
        config.principal = who.clone();
        let mut app = App::new(config);
        if let Some(pg) = &self.pg {
            app.share_postgres(pg.clone());
        }
        app
    }
}

#[async_trait]
impl Launcher for ConfigLauncher {
    async fn start(
        &self,
        template: &str,
        request: &PublishRequest,
        who: &Principal,
    ) -> Result<DeploymentHandle, LaunchError> {
        let mut app = self.app_for(who);
        let req: Request = match &request.mode {
            PublishMode::Deploy { version } => {
                deploy_request(
                    &mut app,
                    template,
                    version,
                    request.dry_run,
                    request.batch.as_deref(),
                    request.hosts.as_deref(),
                )
                .await?
            }
            PublishMode::Rollback { to } => {
                let t = app.template(template)?;
                app.check_deploy(&t)?;
                if !request.dry_run {
                    app.check_free(template).await?;
                }
                if let Some(v) = to {
                    pushguide_core::validate::version("version", v)?;
                }
                let t = app.with_cmdb(t).await?;
                let mut req = Request::rollback(Arc::new(t.template), to.clone(), who.clone())
                    .dry_run(request.dry_run);
                if let Some(h) = &request.hosts {
                    req = req.hosts(h.clone());
                }
                req
            }
            PublishMode::Undo { version } => {
                let t = app.template(template)?;
                app.check_deploy(&t)?;
                if !request.dry_run {
                    app.check_free(template).await?;
                }
                let t = app.with_cmdb(t).await?;
                undo_request(
                    Arc::new(t.template),
                    version,
                    who.clone(),
                    request.hosts.clone().unwrap_or_default(),
                )
                .dry_run(request.dry_run)
            }
        };
        app.connect().await?;
        let engine = app.engine()?;
        Ok(engine.start(req).await?)
    }

    async fn plan(
        &self,
        template: &str,
        request: &PublishRequest,
        who: &Principal,
    ) -> Result<Plan, LaunchError> {
        let mut app = self.app_for(who);
        let t = app.template(template)?;
        app.check_view(&t)?;
        let req = match &request.mode {
            PublishMode::Deploy { version } => {
                pushguide_core::validate::version("version", version)?;
                let artifact = artifact(&app, template, version).await?;
                let mut t = app.with_cmdb(t).await?;
                if let Some(b) = &request.batch {
                    t.template.rollout.batch = parse_batch(b)?;
                }
                let mut req = Request::new(Arc::new(t.template), version.clone(), who.clone());
                if let Some(a) = artifact {
                    req = req.artifact(a);
                }
                req
            }
            PublishMode::Rollback { to } => {
                let t = app.with_cmdb(t).await?;
                Request::rollback(Arc::new(t.template), to.clone(), who.clone())
            }
            PublishMode::Undo { version } => {
                let t = app.with_cmdb(t).await?;
                undo_request(
                    Arc::new(t.template),
                    version,
                    who.clone(),
                    request.hosts.clone().unwrap_or_default(),
                )
            }
        };
        let req = match &request.hosts {
            Some(h) => req.hosts(h.clone()),
            None => req,
        };
        app.connect().await?;
        let engine = app.engine()?;
        Ok(engine.plan(&req.dry_run(request.dry_run)).await?)
    }

    async fn versions(&self, template: &str) -> Result<Vec<VersionInfo>, LaunchError> {
        let app = App::new(self.config.clone());
        let Some(source) = app.artifact_source()? else {
            return Ok(Vec::new());
        };
        let versions = source.versions(template).await?;
        let mut out = Vec::with_capacity(versions.len());
        for (n, v) in versions.into_iter().enumerate() {
            let (size, sha256) = if n < DETAILED_VERSIONS {
                match source.resolve(template, &v).await {
                    Ok(a) => (a.size, a.sha256),
                    Err(e) => {
                        tracing::warn!(template, version = v, error = %e, "cannot resolve a version's artifact");
                        (None, None)
                    }
                }
            } else {
                (None, None)
            };
            out.push(VersionInfo {
                version: v,
                size,
                sha256,
            });
        }
        Ok(out)
    }
}
