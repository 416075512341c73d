use async_trait::async_trait;
use pushguide_core::{Deployer, SaltCall, StageContext, StageError};

use crate::config::WindowsTaskConfig;

/// The `windows-task` deployer.
#[derive(Debug)]
pub struct WindowsTask {
    cfg: WindowsTaskConfig,
}

impl WindowsTask {
    /// A deployer for `cfg` (validate it first).
    pub fn new(cfg: WindowsTaskConfig) -> Self {
        WindowsTask { cfg }
    }

    fn root(&self) -> &str {
        self.cfg.root.trim_end_matches('\\')
    }

    fn release_dir(&self, version: &str) -> String {
        format!("{}\\releases\\{version}", self.root())
    }

    fn task_call(&self, fun: &str) -> SaltCall {
        SaltCall::mutate(fun)
            .kwarg("name", self.cfg.task.as_str())
            .kwarg("location", self.cfg.folder.as_str())
    }

    fn link(&self, version: &str) -> SaltCall {
        SaltCall::mutate("file.symlink")
            .arg(self.release_dir(version))
            .arg(format!("{}\\current", self.root()))
            .kwarg("force", true)
    }
}

#[async_trait]
impl Deployer for WindowsTask {
    async fn pre_deploy(&self, cx: &mut StageContext<'_>) -> Result<(), StageError> {
        let v = cx.version().to_owned();
        let dir = self.release_dir(&v);
        cx.call(SaltCall::mutate("file.makedirs").arg(format!("{dir}\\")))
            .await?;
        cx.call(
            SaltCall::mutate("cp.get_url")
                .arg(self.cfg.artifact_url.replace("{version}", &v))
                .arg(format!("{dir}.zip"))
                .kwarg("makedirs", true),
        )
        .await?;
        cx.call(self.task_call("task.edit_task").kwarg("enabled", false))
            .await?;
        cx.call(self.task_call("task.stop")).await?;
        Ok(())
    }

    async fn deploy(&self, cx: &mut StageContext<'_>) -> Result<(), StageError> {
        let v = cx.version().to_owned();
        let dir = self.release_dir(&v);
        cx.call(
            SaltCall::mutate("archive.unzip")
                .arg(format!("{dir}.zip"))
                .arg(dir.as_str()),
        )
        .await?;
        cx.call(self.link(&v)).await?;
        Ok(())
    }

    async fn post_deploy(&self, cx: &mut StageContext<'_>) -> Result<(), StageError> {
        cx.call(self.task_call("task.edit_task").kwarg("enabled", true))
            .await?;
        if self.cfg.run_now {
            cx.call(self.task_call("task.run")).await?;
        }
        Ok(())
    }

    async fn rollback(&self, cx: &mut StageContext<'_>) -> Result<(), StageError> {
        cx.call(self.task_call("task.edit_task").kwarg("enabled", false))
            .await?;
        for (version, hosts) in cx.rollback_groups() {
            cx.call_on(&hosts, self.link(&version)).await?;
        }
        cx.call(self.task_call("task.edit_task").kwarg("enabled", true))
            .await?;
        Ok(())
    }
}
