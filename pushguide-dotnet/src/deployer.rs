use async_trait::async_trait;
use pushguide_core::{Deployer, MinionId, SaltCall, StageContext, StageError};
use serde_json::json;

use crate::config::DotnetIisConfig;

/// The `dotnet-iis` deployer.
#[derive(Debug)]
pub struct DotnetIis {
    cfg: DotnetIisConfig,
}

impl DotnetIis {
    /// A deployer for `cfg` (validate it first).
    pub fn new(cfg: DotnetIisConfig) -> Self {
        DotnetIis { cfg }
    }

    fn release_dir(&self, version: &str) -> String {
        format!(
            "{}\\releases\\{version}",
            self.cfg.root.trim_end_matches('\\')
        )
    }

    fn set_path(&self, dir: String) -> SaltCall {
        SaltCall::mutate("win_iis.set_container_setting")
            .kwarg("name", self.cfg.site.as_str())
            .kwarg("container", "Sites")
            .kwarg("settings", json!({ "physicalPath": dir }))
    }

    fn failed_checks(cx: &StageContext<'_>, r: &pushguide_core::CallResults) -> Vec<MinionId> {
        if cx.is_dry_run() {
            return Vec::new();
        }
        r.iter()
            .filter(|(_, ok)| ok.as_bool() != Some(true))
            .map(|(h, _)| h.clone())
            .collect()
    }
}

#[async_trait]
impl Deployer for DotnetIis {
    async fn pre_deploy(&self, cx: &mut StageContext<'_>) -> Result<(), StageError> {
        let v = cx.version().to_owned();
        let dir = self.release_dir(&v);
        let zip = format!("{dir}.zip");
        cx.call(SaltCall::mutate("file.makedirs").arg(format!("{dir}\\")))
            .await?;
        cx.call(
            SaltCall::mutate("cp.get_url")
                .arg(self.cfg.artifact_url.replace("{version}", &v))
                .arg(zip.as_str())
                .kwarg("makedirs", true),
        )
        .await?;
        if let Some(sha) = &self.cfg.sha256 {
            let r = cx
                .call(
                    SaltCall::read("file.check_hash")
                        .arg(zip.as_str())
                        .arg(format!("sha256={sha}")),
                )
                .await?;
            for h in Self::failed_checks(cx, &r) {
                cx.fail(&h, format!("checksum mismatch: {zip} is not sha256={sha}"));
            }
        }
        cx.call(SaltCall::mutate("win_iis.stop_apppool").arg(self.cfg.app_pool.as_str()))
            .await?;
        Ok(())
    }

    async fn deploy(&self, cx: &mut StageContext<'_>) -> Result<(), StageError> {
        let dir = self.release_dir(cx.version());
        cx.call(
            SaltCall::mutate("archive.unzip")
                .arg(format!("{dir}.zip"))
                .arg(dir.as_str()),
        )
        .await?;
        cx.call(self.set_path(dir)).await?;
        Ok(())
    }

    async fn post_deploy(&self, cx: &mut StageContext<'_>) -> Result<(), StageError> {
        cx.call(SaltCall::mutate("win_iis.start_apppool").arg(self.cfg.app_pool.as_str()))
            .await?;
        if let Some(url) = cx.template().health.url.clone() {
            let expect = u64::from(cx.template().health.expect_status);
            let r = cx
                .call(SaltCall::read("http.query").arg(url).kwarg("status", true))
                .await?;
            if !cx.is_dry_run() {
                let bad: Vec<_> = r
                    .iter()
                    .filter(|(_, v)| v.get("status").and_then(|s| s.as_u64()) != Some(expect))
                    .map(|(h, _)| h.clone())
                    .collect();
                for h in bad {
                    cx.fail(&h, format!("health check: expected HTTP {expect}"));
                }
            }
        }
        Ok(())
    }

    async fn rollback(&self, cx: &mut StageContext<'_>) -> Result<(), StageError> {
        for (version, hosts) in cx.rollback_groups() {
            cx.call_on(&hosts, self.set_path(self.release_dir(&version)))
                .await?;
        }
        cx.call(SaltCall::mutate("win_iis.restart_apppool").arg(self.cfg.app_pool.as_str()))
            .await?;
        Ok(())
    }
}
