use async_trait::async_trait;
use pushguide_core::{Deployer, SaltCall, StageContext, StageError};

use crate::config::JavaTomcatConfig;

/// The `java-tomcat` deployer. Build it from a [`JavaTomcatConfig`].
#[derive(Debug)]
pub struct JavaTomcat {
    cfg: JavaTomcatConfig,
}

impl JavaTomcat {
    /// A deployer for `cfg` (validate it first).
    pub fn new(cfg: JavaTomcatConfig) -> Self {
        JavaTomcat { cfg }
    }

    fn release_dir(&self, version: &str) -> String {
        format!("{}/releases/{version}", self.cfg.root)
    }

    fn war(&self, version: &str) -> String {
        format!("{}/releases/{version}.war", self.cfg.root)
    }

    fn context_link(&self) -> String {
        format!("{}/{}", self.cfg.webapps, self.cfg.context)
    }

    async fn switch(
        &self,
        cx: &mut StageContext<'_>,
        hosts: Option<&[pushguide_core::MinionId]>,
        version: &str,
    ) -> Result<(), StageError> {
        let call = SaltCall::mutate("file.symlink")
            .arg(self.release_dir(version))
            .arg(self.context_link())
            .kwarg("force", true);
        match hosts {
            Some(h) => cx.call_on(h, call).await?,
            None => cx.call(call).await?,
        };
        Ok(())
    }
}

#[async_trait]
impl Deployer for JavaTomcat {
    async fn pre_deploy(&self, cx: &mut StageContext<'_>) -> Result<(), StageError> {
        let v = cx.version().to_owned();
        cx.call(SaltCall::mutate("file.makedirs").arg(format!("{}/", self.release_dir(&v))))
            .await?;
        let url = self.cfg.artifact_url.replace("{version}", &v);
        cx.call(
            SaltCall::mutate("cp.get_url")
                .arg(url)
                .arg(self.war(&v))
                .kwarg("makedirs", true),
        )
        .await?;
        if let Some(sha) = &self.cfg.sha256 {
            let r = cx
                .call(
                    SaltCall::read("file.check_hash")
                        .arg(self.war(&v))
                        .arg(format!("sha256={sha}")),
                )
                .await?;
            if !cx.is_dry_run() {
                let bad: Vec<_> = r
                    .iter()
                    .filter(|(_, ok)| ok.as_bool() != Some(true))
                    .map(|(h, _)| h.clone())
                    .collect();
                for h in bad {
                    cx.fail(
                        &h,
                        format!("checksum mismatch: {} is not sha256={sha}", self.war(&v)),
                    );
                }
            }
        }
        cx.call(SaltCall::mutate("service.stop").arg(self.cfg.service.as_str()))
            .await?;
        Ok(())
    }

    async fn deploy(&self, cx: &mut StageContext<'_>) -> Result<(), StageError> {
        let v = cx.version().to_owned();
        cx.call(
            SaltCall::mutate("archive.unzip")
                .arg(self.war(&v))
                .arg(self.release_dir(&v)),
        )
        .await?;
        self.switch(cx, None, &v).await
    }

    async fn post_deploy(&self, cx: &mut StageContext<'_>) -> Result<(), StageError> {
        cx.call(SaltCall::mutate("service.start").arg(self.cfg.service.as_str()))
            .await?;
        if let Some(url) = cx.template().health.url.clone() {
            let expect = cx.template().health.expect_status;
            let r = cx
                .call(SaltCall::read("http.query").arg(url).kwarg("status", true))
                .await?;
            if !cx.is_dry_run() {
                let bad: Vec<_> = r
                    .iter()
                    .filter(|(_, v)| {
                        v.get("status").and_then(|s| s.as_u64()) != Some(u64::from(expect))
                    })
                    .map(|(h, v)| (h.clone(), v.get("status").cloned()))
                    .collect();
                for (h, got) in bad {
                    cx.fail(
                        &h,
                        format!(
                            "health check: expected HTTP {expect}, got {}",
                            got.unwrap_or_default()
                        ),
                    );
                }
            }
        }
        Ok(())
    }

    async fn rollback(&self, cx: &mut StageContext<'_>) -> Result<(), StageError> {
        cx.call(SaltCall::mutate("service.stop").arg(self.cfg.service.as_str()))
            .await?;
        for (version, hosts) in cx.rollback_groups() {
            self.switch(cx, Some(&hosts), &version).await?;
        }
        cx.call(SaltCall::mutate("service.start").arg(self.cfg.service.as_str()))
            .await?;
        Ok(())
    }
}
