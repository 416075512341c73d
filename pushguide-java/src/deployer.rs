use std::collections::BTreeMap;

use async_trait::async_trait;
use pushguide_core::steps::{self as shared, call_by};
use pushguide_core::{
    validate, Deployer, DeployerConfig, Error, MinionId, StageContext, StageError,
};

use crate::config::{Host, JavaTomcatConfig};
use crate::steps;

#[typetag::serde(name = "java-tomcat")]
impl DeployerConfig for JavaTomcatConfig {
    fn validate(&self) -> Result<(), Error> {
        self.check()
    }

    fn build(&self) -> Result<Box<dyn Deployer>, Error> {
        self.validate()?;
        Ok(Box::new(JavaTomcat::new(self.clone())))
    }
}

/// The `java-tomcat` deployer. Build it from a [`JavaTomcatConfig`] (through the template).
#[derive(Debug)]
pub struct JavaTomcat {
    cfg: JavaTomcatConfig,
}

impl JavaTomcat {
    /// Downloads, verifies and unpacks the release on the live hosts that do not hold it yet, next to
    /// the running release. Returns every live host's settings.
    async fn stage_release(
        &self,
        cx: &mut StageContext<'_>,
    ) -> Result<BTreeMap<MinionId, Host>, StageError> {
        let hosts = self.hosts(cx);
        let v = cx.version().to_owned();
        let layout = |h: &MinionId| self.cfg.layout(&hosts[h]);
        let downloaded = shared::fetch_artifact(
            cx,
            |h| layout(h).release_dir(&v),
            |h| layout(h).archive(&v, "war"),
        )
        .await?;
        // unpack next to the running release while Tomcat still serves it; hosts with different
        // paths are unpacked at once
        let mut groups: BTreeMap<(String, String), Vec<MinionId>> = BTreeMap::new();
        for h in downloaded {
            let l = layout(&h);
            groups
                .entry((l.archive(&v, "war"), l.release_dir(&v)))
                .or_default()
                .push(h);
        }
        let calls = groups
            .into_iter()
            .map(|((war, dir), hs)| (hs, steps::unzip(&war, &dir)))
            .collect();
        cx.call_each(calls).await?;
        Ok(hosts)
    }

    /// A deployer for `cfg` (validated by [`pushguide_core::DeployerConfig::build`]).
    pub fn new(cfg: JavaTomcatConfig) -> Self {
        JavaTomcat { cfg }
    }

    /// Effective settings of every live host; a host whose settings are incomplete fails.
    fn hosts(&self, cx: &mut StageContext<'_>) -> BTreeMap<MinionId, Host> {
        let mut out = BTreeMap::new();
        for h in cx.minions().to_vec() {
            match self.cfg.host(&h) {
                Ok(s) => {
                    out.insert(h, s);
                }
                Err(e) => cx.fail(&h, e.to_string()),
            }
        }
        out
    }

    async fn stop(
        &self,
        cx: &mut StageContext<'_>,
        hosts: &BTreeMap<MinionId, Host>,
    ) -> Result<(), StageError> {
        let on: Vec<MinionId> = hosts.keys().cloned().collect();
        call_by(cx, &on, |h| hosts[h].control.clone(), steps::stop).await?;
        Ok(())
    }

    async fn start(
        &self,
        cx: &mut StageContext<'_>,
        hosts: &BTreeMap<MinionId, Host>,
    ) -> Result<(), StageError> {
        let on: Vec<MinionId> = hosts.keys().cloned().collect();
        call_by(cx, &on, |h| hosts[h].control.clone(), steps::start).await?;
        Ok(())
    }

    /// Switches each live host's context to `version(host)` and clears the compiled pages.
    async fn switch(
        &self,
        cx: &mut StageContext<'_>,
        hosts: &BTreeMap<MinionId, Host>,
        version: impl Fn(&MinionId) -> String,
    ) -> Result<(), StageError> {
        let style = self.cfg.style();
        let ctx = self.cfg.context.clone();
        let on: Vec<MinionId> = hosts.keys().cloned().collect();
        call_by(
            cx,
            &on,
            |h| {
                (
                    hosts[h].catalina_base.clone(),
                    self.cfg.layout(&hosts[h]).release_dir(&version(h)),
                )
            },
            |(base, dir)| steps::switch(style, base, &ctx, dir),
        )
        .await?;
        call_by(
            cx,
            &on,
            |h| hosts[h].catalina_base.clone(),
            |base| steps::clear_work(style, base, &ctx),
        )
        .await?;
        Ok(())
    }
}

#[async_trait]
impl Deployer for JavaTomcat {
    async fn prepare(&self, cx: &mut StageContext<'_>) -> Result<(), StageError> {
        shared::prepare_release(
            cx,
            self.cfg.artifact_url.as_deref(),
            self.cfg.sha256.as_deref(),
            &self.cfg.conventions,
            |h| self.cfg.host(h).map(drop),
        )
    }

    fn stages_ahead(&self) -> bool {
        true
    }

    /// Staging (every host at once, before the first batch): download, verify and unpack the WAR
    /// beside the running release; Tomcat keeps serving.
    async fn stage(&self, cx: &mut StageContext<'_>) -> Result<(), StageError> {
        self.stage_release(cx).await?;
        Ok(())
    }

    async fn pre_deploy(&self, cx: &mut StageContext<'_>) -> Result<(), StageError> {
        // staged ahead: the release is unpacked on every host of the batch already
        let hosts = if cx.is_staged() {
            self.hosts(cx)
        } else {
            self.stage_release(cx).await?
        };
        self.stop(cx, &hosts).await
    }

    async fn deploy(&self, cx: &mut StageContext<'_>) -> Result<(), StageError> {
        let hosts = self.hosts(cx);
        let v = cx.version().to_owned();
        self.switch(cx, &hosts, |_| v.clone()).await
    }

    async fn post_deploy(&self, cx: &mut StageContext<'_>) -> Result<(), StageError> {
        let hosts = self.hosts(cx);
        self.start(cx, &hosts).await?;
        let health = cx.template().health.clone();
        let global = health.url.clone();
        shared::health_check(cx, &health, |h| {
            hosts
                .get(h)
                .and_then(|s| s.health_url.clone())
                .or_else(|| global.clone())
        })
        .await?;
        shared::prune_releases(cx, self.cfg.keep_releases, |h| self.cfg.layout(&hosts[h])).await
    }

    async fn rollback(&self, cx: &mut StageContext<'_>) -> Result<(), StageError> {
        let mut hosts = self.hosts(cx);
        // A host without a rollback target (none recorded, e.g. in a plan of a first release) is left
        // as it is: no release path is ever built from a missing version.
        let mut targets: BTreeMap<MinionId, String> = BTreeMap::new();
        for h in hosts.keys().cloned().collect::<Vec<_>>() {
            match cx.rollback_target(&h) {
                Some(v) if validate::version("rollback target", v).is_ok() => {
                    targets.insert(h, v.to_owned());
                }
                _ => {
                    hosts.remove(&h);
                    cx.log(
                        &h,
                        "no rollback target: Tomcat and the context are left as they are",
                    );
                }
            }
        }
        if hosts.is_empty() {
            return Ok(());
        }
        // the release to go back to must still be on disk
        let on: Vec<MinionId> = hosts.keys().cloned().collect();
        let present = call_by(
            cx,
            &on,
            |h| self.cfg.layout(&hosts[h]).release_dir(&targets[h]),
            |dir| steps::dir_exists(dir),
        )
        .await?;
        for (h, v) in present.returned() {
            if v.as_bool() != Some(true) {
                let dir = self.cfg.layout(&hosts[h]).release_dir(&targets[h]);
                cx.fail(
                    h,
                    format!("cannot roll back: {dir} is no longer on the host"),
                );
            }
        }
        self.stop(cx, &hosts).await?;
        self.switch(cx, &hosts, |h| targets[h].clone()).await?;
        self.start(cx, &hosts).await
    }
}
