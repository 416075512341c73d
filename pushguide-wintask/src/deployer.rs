use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use pushguide_core::steps::{prepare_release, prune_releases, queue_fetch, PathStyle};
use pushguide_core::{
    validate, CallResults, Deployer, DeployerConfig, Error, MinionId, StageContext, StageError,
};
use serde_json::Value;
use tokio::time::Instant;

use crate::config::WindowsTaskConfig;
use crate::steps::{self, call_by, expect_true, is_active, is_known_status, SUCCESS};

#[typetag::serde(name = "windows-task")]
impl DeployerConfig for WindowsTaskConfig {
    fn validate(&self) -> Result<(), Error> {
        self.check()
    }

    fn build(&self) -> Result<Box<dyn Deployer>, Error> {
        self.validate()?;
        Ok(Box::new(WindowsTask::new(self.clone())))
    }
}

/// The `windows-task` deployer: one instance per deployment.
#[derive(Debug)]
pub struct WindowsTask {
    cfg: WindowsTaskConfig,
    /// Whether each host's task was enabled before this deployment disabled it.
    was_enabled: Mutex<BTreeMap<MinionId, bool>>,
}

impl WindowsTask {
    /// A deployer for `cfg` (validate it first).
    pub fn new(cfg: WindowsTaskConfig) -> Self {
        WindowsTask {
            cfg,
            was_enabled: Mutex::new(BTreeMap::new()),
        }
    }

    fn release_dir(&self, h: &MinionId, version: &str) -> String {
        self.cfg.layout(h).release_dir(version)
    }

    async fn set_enabled(
        &self,
        cx: &mut StageContext<'_>,
        enabled: impl Fn(&MinionId) -> bool,
    ) -> Result<CallResults, StageError> {
        let live = cx.minions().to_vec();
        let cfg = &self.cfg;
        let r = call_by(
            cx,
            &live,
            |h| (cfg.task_key(h), enabled(h)),
            |((task, folder), on)| steps::set_enabled(task, folder, *on),
        )
        .await?;
        expect_true(cx, &r, "task.edit_task");
        Ok(r)
    }

    /// Polls `task.status` on `hosts` until none is Running/Queued or `timeout` passes; returns the
    /// hosts still active then. The first poll waits `first_wait`.
    async fn wait_idle(
        &self,
        cx: &mut StageContext<'_>,
        hosts: Vec<MinionId>,
        timeout: Duration,
        first_wait: Duration,
    ) -> Result<Vec<MinionId>, StageError> {
        let cfg = &self.cfg;
        let deadline = Instant::now()
            .checked_add(timeout)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(crate::config::MAX_WAIT_SECS));
        let mut pending = hosts;
        if !first_wait.is_zero() {
            tokio::time::sleep(first_wait.min(timeout)).await;
        }
        loop {
            let r = call_by(
                cx,
                &pending,
                |h| cfg.task_key(h),
                |(t, f)| steps::status(t, f),
            )
            .await?;
            pending = r
                .into_iter()
                .filter(|(_, a)| a.value().is_some_and(is_active))
                .map(|(h, _)| h)
                .collect();
            let now = Instant::now();
            if pending.is_empty() || now >= deadline {
                return Ok(pending);
            }
            tokio::time::sleep(cfg.poll_interval().min(deadline - now)).await;
        }
    }
}

#[async_trait]
impl Deployer for WindowsTask {
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
        // the enabled state before we touch the task, for rollback
        let live = cx.minions().to_vec();
        let before = call_by(cx, &live, |h| cfg.task_key(h), |(t, f)| steps::status(t, f)).await?;
        // the task as it is now, in a dry run too: a missing task fails the host there as well
        for (h, a) in before {
            let Some(s) = a.value() else { continue };
            match s.as_str() {
                Some(state) if is_known_status(state) => {
                    let mut m = self
                        .was_enabled
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    m.insert(h, state != "Disabled");
                }
                // salt answers a text such as "<task> not found in <folder>" for a missing task
                Some(_) => cx.fail(&h, format!("task.status: {s}")),
                None if a.returned().is_some() => {
                    cx.log(
                        &h,
                        format!("unexpected task.status answer {s}: taken as enabled"),
                    );
                    let mut m = self
                        .was_enabled
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    m.insert(h, true);
                }
                None => {}
            }
        }
        let disabled = self.set_enabled(cx, |_| false).await?;
        // a disable only recorded (dry run, plan) stops no run: nothing to wait for
        if disabled.returned().next().is_none() {
            return Ok(());
        }
        let live = cx.minions().to_vec();
        let timeout = Duration::from_secs(cfg.wait_timeout_secs);
        let busy = self.wait_idle(cx, live, timeout, Duration::ZERO).await?;
        if cfg.stop_running {
            for h in &busy {
                cx.log(
                    h,
                    format!(
                        "task still running after {}s: stopping it",
                        cfg.wait_timeout_secs
                    ),
                );
            }
            let r = call_by(cx, &busy, |h| cfg.task_key(h), |(t, f)| steps::stop(t, f)).await?;
            expect_true(cx, &r, "task.stop");
        } else {
            for h in busy {
                let s = cfg.host(&h);
                cx.fail(
                    &h,
                    format!(
                        "task `{}` in `{}` is still running after {}s (set `stop_running = true` to stop it)",
                        s.task, s.folder, cfg.wait_timeout_secs
                    ),
                );
            }
        }
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
            |h| (self.release_dir(h, &v), cfg.current_link(h)),
            |(dir, link)| steps::symlink(dir, link),
        )
        .await?;
        expect_true(cx, &r, "file.symlink");
        Ok(())
    }

    async fn post_deploy(&self, cx: &mut StageContext<'_>) -> Result<(), StageError> {
        let cfg = &self.cfg;
        self.set_enabled(cx, |_| true).await?;
        if cfg.run_now {
            let live = cx.minions().to_vec();
            let r = call_by(cx, &live, |h| cfg.task_key(h), |(t, f)| steps::run(t, f)).await?;
            expect_true(cx, &r, "task.run");
            // nothing to wait for when the run was only recorded (dry run, plan)
            if r.returned().next().is_some() {
                let live = cx.minions().to_vec();
                let timeout = Duration::from_secs(cfg.run_timeout_secs);
                let busy = self
                    .wait_idle(cx, live, timeout, cfg.poll_interval())
                    .await?;
                for h in busy {
                    cx.fail(
                        &h,
                        format!("task run still going after {}s", cfg.run_timeout_secs),
                    );
                }
            }
            let live = cx.minions().to_vec();
            let info = call_by(cx, &live, |h| cfg.task_key(h), |(t, f)| steps::info(t, f)).await?;
            for (h, v) in info.returned() {
                match v.get("last_run_result").and_then(Value::as_str) {
                    Some(SUCCESS) => {}
                    Some(other) => {
                        cx.fail(h, format!("task run failed: last_run_result `{other}`"))
                    }
                    None => cx.fail(h, format!("task.info returned no last_run_result: {v}")),
                }
            }
        }
        prune_releases(cx, cfg.keep_releases, |h| cfg.layout(h)).await
    }

    async fn rollback(&self, cx: &mut StageContext<'_>) -> Result<(), StageError> {
        let cfg = &self.cfg;
        self.set_enabled(cx, |_| false).await?;
        for (version, hosts) in cx.rollback_groups() {
            // never build a release path from an empty or malformed version
            if validate::version("rollback target", &version).is_err() {
                for h in &hosts {
                    cx.log(h, "no rollback target: the current link is left as it is");
                }
                continue;
            }
            let glob =
                |h: &MinionId| PathStyle::Windows.join(&self.release_dir(h, &version), &["*"]);
            let found = call_by(cx, &hosts, glob, |g| steps::path_exists_glob(g)).await?;
            for (h, v) in found.returned() {
                if v.as_bool() != Some(true) {
                    cx.fail(
                        h,
                        format!(
                            "rollback target {} is missing or empty on this host: {} was NOT switched back to {version} and the task stays disabled",
                            self.release_dir(h, &version),
                            cfg.current_link(h)
                        ),
                    );
                }
            }
            let r = call_by(
                cx,
                &hosts,
                |h| (self.release_dir(h, &version), cfg.current_link(h)),
                |(dir, link)| steps::symlink(dir, link),
            )
            .await?;
            expect_true(cx, &r, "file.symlink");
        }
        let was = self
            .was_enabled
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        self.set_enabled(cx, |h| was.get(h).copied().unwrap_or(true))
            .await?;
        Ok(())
    }
}
