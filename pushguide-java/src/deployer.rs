use std::collections::BTreeMap;

use async_trait::async_trait;
use pushguide_core::steps as shared;
use pushguide_core::{
    validate, Check, Deployer, DeployerConfig, Error, MinionId, StageContext, StageError, Step,
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

    /// A host's staging steps: the release fetched, verified and unpacked beside the running one,
    /// each skipped when the release directory is already there.
    fn stage_steps(&self, cx: &StageContext<'_>, host: &Host) -> Result<Vec<Step>, StageError> {
        let v = cx.version();
        let layout = self.cfg.layout(host);
        let (dir, war) = (layout.release_dir(v), layout.archive(v, "war"));
        let mut steps = shared::fetch_steps(cx, &dir, &war)?;
        steps.push(Step::new(steps::unzip(&war, &dir)).unless(steps::dir_exists(&dir)));
        Ok(steps)
    }

    /// Queues the staging steps of every live host.
    fn queue_staging(
        &self,
        cx: &mut StageContext<'_>,
        hosts: &BTreeMap<MinionId, Host>,
    ) -> Result<(), StageError> {
        let mut per_host = Vec::with_capacity(hosts.len());
        for (h, host) in hosts {
            per_host.push((h.clone(), self.stage_steps(cx, host)?));
        }
        cx.steps(per_host)
    }

    /// Queues, for every host, `make(host, settings)`.
    fn queue(
        &self,
        cx: &mut StageContext<'_>,
        hosts: &BTreeMap<MinionId, Host>,
        make: impl Fn(&MinionId, &Host) -> Vec<Step>,
    ) -> Result<(), StageError> {
        let per_host = hosts.iter().map(|(h, s)| (h.clone(), make(h, s))).collect();
        cx.steps(per_host)
    }

    /// The steps that point a host's context at the release `version` and clear its compiled pages.
    fn switch_steps(&self, host: &Host, version: &str) -> Vec<Step> {
        let style = self.cfg.style();
        let dir = self.cfg.layout(host).release_dir(version);
        vec![
            Step::new(steps::switch(
                style,
                &host.catalina_base,
                &self.cfg.context,
                &dir,
            )),
            Step::new(steps::clear_work(
                style,
                &host.catalina_base,
                &self.cfg.context,
            )),
        ]
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

    fn batch_in_one_job(&self) -> bool {
        true
    }

    /// Staging (every host at once, before the first batch, one job): disk space, download, verify
    /// and unpack the WAR beside the running release; Tomcat keeps serving.
    async fn stage(&self, cx: &mut StageContext<'_>) -> Result<(), StageError> {
        let hosts = self.hosts(cx);
        self.queue_staging(cx, &hosts)
    }

    async fn pre_deploy(&self, cx: &mut StageContext<'_>) -> Result<(), StageError> {
        let hosts = self.hosts(cx);
        // staged ahead: the release is unpacked on every host of the batch already
        if !cx.is_staged() {
            self.queue_staging(cx, &hosts)?;
        }
        self.queue(cx, &hosts, |_, s| vec![Step::new(steps::stop(&s.control))])
    }

    async fn deploy(&self, cx: &mut StageContext<'_>) -> Result<(), StageError> {
        let hosts = self.hosts(cx);
        let v = cx.version().to_owned();
        self.queue(cx, &hosts, |_, s| self.switch_steps(s, &v))
    }

    async fn post_deploy(&self, cx: &mut StageContext<'_>) -> Result<(), StageError> {
        let hosts = self.hosts(cx);
        let health = cx.template().health.clone();
        let module = cx.runs_module();
        let keep = self.cfg.keep_releases;
        let protect: BTreeMap<MinionId, Vec<String>> = hosts
            .keys()
            .map(|h| (h.clone(), shared::protected_versions(cx, h)))
            .collect();
        self.queue(cx, &hosts, |h, s| {
            let mut steps = vec![Step::new(steps::start(&s.control))];
            if let Some(url) = s.health_url.clone().or_else(|| health.url.clone()) {
                steps.push(shared::health_step(&health, &url));
            }
            if module {
                let releases = self.cfg.layout(s).releases();
                steps.push(shared::prune_step(&releases, keep, protect[h].clone()));
            }
            steps
        })?;
        if !module {
            // without the module, pruning lists each host's releases and removes the old ones
            cx.send_steps().await?;
            shared::prune_releases(cx, keep, |h| self.cfg.layout(&hosts[h])).await?;
        }
        Ok(())
    }

    /// Rollback, one job per host: the release to go back to must still be on disk, then stop,
    /// switch, clear the compiled pages and start.
    async fn rollback(&self, cx: &mut StageContext<'_>) -> Result<(), StageError> {
        let hosts = self.hosts(cx);
        // A host without a rollback target (none recorded, e.g. in a plan of a first release) is left
        // as it is: no release path is ever built from a missing version.
        let mut per_host = Vec::new();
        for (h, s) in &hosts {
            match cx.rollback_target(h) {
                Some(v) if validate::version("rollback target", v).is_ok() => {
                    let dir = self.cfg.layout(s).release_dir(v);
                    let mut steps = vec![Step::new(steps::dir_exists(&dir))
                        .check(Check::True)
                        .what(format!("cannot roll back: {dir} is no longer on the host"))];
                    steps.push(Step::new(steps::stop(&s.control)));
                    steps.extend(self.switch_steps(s, v));
                    steps.push(Step::new(steps::start(&s.control)));
                    per_host.push((h.clone(), steps));
                }
                _ => cx.log(
                    h,
                    "no rollback target: Tomcat and the context are left as they are",
                ),
            }
        }
        cx.steps(per_host)
    }
}
