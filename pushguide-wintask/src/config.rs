use pushguide_core::{validate, Deployer, DeployerConfig, Error, KindInfo, Platform};
use serde::{Deserialize, Serialize};

use crate::deployer::WindowsTask;

/// Configuration of a `windows-task` template's `[project]` table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct WindowsTaskConfig {
    /// Directory holding `releases\<version>` and the `current` link.
    pub root: String,
    /// Scheduled task name.
    pub task: String,
    /// Task Scheduler folder (default `\`).
    #[serde(default = "default_folder")]
    pub folder: String,
    /// Where minions fetch the zip; `{version}` is replaced by the version.
    pub artifact_url: String,
    /// Run the task once right after enabling it.
    #[serde(default)]
    pub run_now: bool,
}

fn default_folder() -> String {
    "\\".to_owned()
}

#[typetag::serde(name = "windows-task")]
impl DeployerConfig for WindowsTaskConfig {
    fn validate(&self) -> Result<(), Error> {
        validate::path("project.root", &self.root)?;
        validate::name("project.task", &self.task)?;
        if !self.folder.starts_with('\\')
            || self
                .folder
                .split('\\')
                .any(|p| !p.is_empty() && validate::name("project.folder", p).is_err())
        {
            return Err(Error::invalid(
                "project.folder",
                &self.folder,
                "must be a Task Scheduler folder such as `\\` or `\\Shop`",
            ));
        }
        let url = &self.artifact_url;
        if !["http://", "https://", "salt://"]
            .iter()
            .any(|s| url.starts_with(s))
            || url
                .chars()
                .any(|c| c.is_control() || c.is_whitespace() || "\"'`$;|&<>\\".contains(c))
        {
            return Err(Error::invalid(
                "project.artifact_url",
                url,
                "must be an http://, https:// or salt:// URL without spaces or shell characters",
            ));
        }
        Ok(())
    }

    fn build(&self) -> Result<Box<dyn Deployer>, Error> {
        self.validate()?;
        Ok(Box::new(WindowsTask::new(self.clone())))
    }
}

inventory::submit! {
    KindInfo {
        kind: crate::KIND,
        summary: "Windows scheduled task: disable, switch the release, enable, optionally run now.",
        platforms: &[Platform::Windows],
        example: r#"kind = "windows-task"
root = 'D:\Jobs\nightly'
task = "nightly-export"
artifact_url = "https://ci.example.com/nightly/{version}/nightly.zip"
"#,
    }
}
