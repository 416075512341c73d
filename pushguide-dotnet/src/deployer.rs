use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;
use pushguide_core::steps::{
    health_check, prepare_release, prune_releases, queue_fetch, PathStyle,
};
use pushguide_core::{
    validate, Deployer, DeployerConfig, Error, MinionId, StageContext, StageError,
};
use serde_json::Value;

use crate::config::DotnetIisConfig;
use crate::steps::{self, call_by, expect_true};

/// File name IIS / the ASP.NET Core module serve instead of the application while it exists.
const APP_OFFLINE: &str = "app_offline.htm";

#[typetag::serde(name = "dotnet-iis")]
impl DeployerConfig for DotnetIisConfig {
    fn validate(&self) -> Result<(), Error> {
        self.check()
    }

    fn build(&self) -> Result<Box<dyn Deployer>, Error> {
        self.validate()?;
        Ok(Box::new(DotnetIis::new(self.clone())))
    }
}

/// The `dotnet-iis` deployer: one instance per deployment.
#[derive(Debug)]
pub struct DotnetIis {
    cfg: DotnetIisConfig,
    /// `app_offline.htm` files written by this deployment and not removed yet, per host.
    offline: Mutex<BTreeMap<MinionId, String>>,
}

impl DotnetIis {
    /// A deployer for `cfg` (validate it first).
    pub fn new(cfg: DotnetIisConfig) -> Self {
        DotnetIis {
            cfg,
            offline: Mutex::new(BTreeMap::new()),
        }
    }

    fn offline(&self) -> std::sync::MutexGuard<'_, BTreeMap<MinionId, String>> {
        self.offline.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn release_dir(&self, h: &MinionId, version: &str) -> String {
        self.cfg.layout(h).release_dir(version)
    }

    /// Writes `app_offline.htm` into each host's CURRENT physical path (read from IIS).
    async fn put_offline(&self, cx: &mut StageContext<'_>) -> Result<(), StageError> {
        let live = cx.minions().to_vec();
        let cfg = &self.cfg;
        let current = call_by(
            cx,
            &live,
            |h| cfg.host(h).site.to_owned(),
            |site| steps::get_physical_path(site),
        )
        .await?;
        let mut files: BTreeMap<MinionId, String> = BTreeMap::new();
        for (h, a) in current {
            // the path the site serves now, in a dry run too: the recorded write names it
            match a
                .value()
                .and_then(|v| v.get("physicalPath"))
                .and_then(Value::as_str)
            {
                Some(p) if validate::path("physicalPath", p).is_ok() => {
                    files.insert(h, PathStyle::Windows.join(p, &[APP_OFFLINE]));
                }
                _ => {
                    if let Some(v) = a.returned() {
                        cx.log(
                            &h,
                            format!("{APP_OFFLINE} not written: the site's physicalPath is not a plain absolute path ({v})"),
                        );
                    }
                }
            }
        }
        let hosts: Vec<MinionId> = files.keys().cloned().collect();
        let text = cfg.app_offline_text();
        let written = call_by(
            cx,
            &hosts,
            |h| files.get(h).cloned().unwrap_or_default(),
            |path| steps::write_file(path, text),
        )
        .await?;
        let mut offline = self.offline();
        for h in written.hosts() {
            if let Some(p) = files.get(h) {
                offline.insert(h.clone(), p.clone());
            }
        }
        Ok(())
    }

    /// Removes the `app_offline.htm` files this deployment wrote on the live hosts.
    async fn take_offline(&self, cx: &mut StageContext<'_>) -> Result<(), StageError> {
        let files: BTreeMap<MinionId, String> = {
            let mut offline = self.offline();
            cx.minions()
                .iter()
                .filter_map(|h| offline.remove(h).map(|p| (h.clone(), p)))
                .collect()
        };
        let hosts: Vec<MinionId> = files.keys().cloned().collect();
        let r = call_by(
            cx,
            &hosts,
            |h| files.get(h).cloned().unwrap_or_default(),
            |p| steps::remove(p),
        )
        .await?;
        expect_true(cx, &r, "file.remove app_offline.htm");
        Ok(())
    }

    /// Starts stopped app pools and recycles running ones (after a rollback switched the path).
    async fn revive_pools(&self, cx: &mut StageContext<'_>) -> Result<(), StageError> {
        let live = cx.minions().to_vec();
        let cfg = &self.cfg;
        let pools = call_by(cx, &live, |_| (), |_| steps::list_apppools()).await?;
        // the pools' state now, in a dry run too: it decides which call is recorded
        let started: Vec<MinionId> = pools
            .iter()
            .filter(|(h, a)| {
                a.value()
                    .and_then(|v| v.get(cfg.host(h).app_pool))
                    .and_then(|p| p.get("state"))
                    .and_then(Value::as_str)
                    == Some("Started")
            })
            .map(|(h, _)| h.clone())
            .collect();
        let stopped: Vec<MinionId> = pools
            .hosts()
            .filter(|h| !started.contains(h))
            .cloned()
            .collect();
        let pool = |h: &MinionId| cfg.host(h).app_pool.to_owned();
        let r = call_by(cx, &stopped, pool, |p| steps::start_apppool(p)).await?;
        expect_true(cx, &r, "win_iis.start_apppool");
        let r = call_by(cx, &started, pool, |p| steps::restart_apppool(p)).await?;
        expect_true(cx, &r, "win_iis.restart_apppool");
        Ok(())
    }
}

#[async_trait]
impl Deployer for DotnetIis {
    async fn prepare(&self, cx: &mut StageContext<'_>) -> Result<(), StageError> {
        prepare_release(
            cx,
            self.cfg.artifact_url.as_deref(),
            self.cfg.sha256.as_deref(),
            &self.cfg.effective_conventions(),
            |_| Ok(()),
        )
    }

    async fn pre_deploy(&self, cx: &mut StageContext<'_>) -> Result<(), StageError> {
        let v = cx.version().to_owned();
        let cfg = &self.cfg;
        // download and verify: queued steps, sent with the next call (one job with `step_jobs`)
        queue_fetch(
            cx,
            |h| cfg.layout(h).release_dir(&v),
            |h| cfg.layout(h).archive(&v, "zip"),
        )?;
        if cfg.app_offline {
            self.put_offline(cx).await?;
        }
        let live = cx.minions().to_vec();
        let r = call_by(
            cx,
            &live,
            |h| cfg.host(h).app_pool.to_owned(),
            |p| steps::stop_apppool(p),
        )
        .await?;
        expect_true(cx, &r, "win_iis.stop_apppool");
        Ok(())
    }

    async fn deploy(&self, cx: &mut StageContext<'_>) -> Result<(), StageError> {
        let v = cx.version().to_owned();
        let cfg = &self.cfg;
        pushguide_core::steps::unpack_missing(
            cx,
            |h| self.release_dir(h, &v),
            |h| cfg.layout(h).archive(&v, "zip"),
        )
        .await?;
        let live = cx.minions().to_vec();
        let r = call_by(
            cx,
            &live,
            |h| (cfg.host(h).site.to_owned(), self.release_dir(h, &v)),
            |(site, dir)| steps::set_physical_path(site, dir),
        )
        .await?;
        expect_true(cx, &r, "win_iis.set_container_setting physicalPath");
        Ok(())
    }

    async fn post_deploy(&self, cx: &mut StageContext<'_>) -> Result<(), StageError> {
        let cfg = &self.cfg;
        let live = cx.minions().to_vec();
        let r = call_by(
            cx,
            &live,
            |h| cfg.host(h).app_pool.to_owned(),
            |p| steps::start_apppool(p),
        )
        .await?;
        expect_true(cx, &r, "win_iis.start_apppool");
        self.take_offline(cx).await?;
        let warm: Vec<MinionId> = cx
            .minions()
            .iter()
            .filter(|h| cfg.host(h).warmup_url.is_some())
            .cloned()
            .collect();
        let r = call_by(
            cx,
            &warm,
            |h| cfg.host(h).warmup_url.unwrap_or_default().to_owned(),
            |u| steps::warm_up(u),
        )
        .await?;
        for (h, v) in r.returned() {
            cx.log(h, format!("warm-up request answered {v}"));
        }
        let health = cx.template().health.clone();
        health_check(cx, &health, |h| {
            cfg.host(h)
                .health_url
                .map(str::to_owned)
                .or_else(|| health.url.clone())
        })
        .await?;
        prune_releases(cx, cfg.keep_releases, |h| cfg.layout(h)).await
    }

    async fn rollback(&self, cx: &mut StageContext<'_>) -> Result<(), StageError> {
        let cfg = &self.cfg;
        for (version, hosts) in cx.rollback_groups() {
            // never build a release path from an empty or malformed version
            if validate::version("rollback target", &version).is_err() {
                for h in &hosts {
                    cx.log(h, "no rollback target: the site is left as it is");
                }
                continue;
            }
            let marker = |h: &MinionId| {
                PathStyle::Windows.join(&self.release_dir(h, &version), &["web.config"])
            };
            let found = call_by(cx, &hosts, marker, |p| steps::file_exists(p)).await?;
            for (h, v) in found.returned() {
                if v.as_bool() != Some(true) {
                    cx.fail(
                        h,
                        format!(
                            "rollback target {} is missing on this host (no web.config there): the site `{}` was NOT switched back to {version}",
                            self.release_dir(h, &version),
                            cfg.host(h).site
                        ),
                    );
                }
            }
            let r = call_by(
                cx,
                &hosts,
                |h| (cfg.host(h).site.to_owned(), self.release_dir(h, &version)),
                |(site, dir)| steps::set_physical_path(site, dir),
            )
            .await?;
            expect_true(cx, &r, "win_iis.set_container_setting physicalPath");
        }
        self.take_offline(cx).await?;
        self.revive_pools(cx).await
    }
}
