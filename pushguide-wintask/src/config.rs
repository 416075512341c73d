use std::collections::BTreeMap;
use std::time::Duration;

use pushguide_core::steps::{
    validate_conventions, validate_project_artifact, Conventions, PathStyle, ReleaseLayout,
};
use pushguide_core::{validate, Error, KindInfo, MinionId, Platform};
use serde::{Deserialize, Serialize};

/// Longest `wait_timeout_secs` and `run_timeout_secs` (one day).
pub const MAX_WAIT_SECS: u64 = 86_400;
/// Longest `poll_interval_secs` (one hour).
pub const MAX_POLL_INTERVAL_SECS: u64 = 3_600;
/// Most releases `keep_releases` may keep.
pub const MAX_KEEP_RELEASES: usize = 100;

/// Configuration of a `windows-task` template's `[project]` table.
///
/// The task's Execute action must run from `<root>\current` (salt's `task` module cannot edit an
/// existing action, so a release switch moves the `current` link, not the action).
///
/// ```toml
/// kind = "windows-task"
/// root = 'D:\Jobs\nightly'
/// task = "nightly-export"
/// folder = '\Shop'
/// artifact_url = "https://ci.example.com/nightly/{version}/nightly.zip"  # when CI gives none
/// stop_running = false       # fail the host when the task is still running after wait_timeout_secs
/// run_now = true             # run once after enabling; its last result must be success
///
/// [project.hosts.batch-03]   # per-host overrides (CMDB data)
/// root = 'E:\Jobs\nightly'
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct WindowsTaskConfig {
    /// Directory holding `releases\<version>`, `archives\<version>.zip` and the `current` link: an
    /// absolute path.
    pub root: String,
    /// Scheduled task name (letters, digits, `.`, `_`, `-`).
    pub task: String,
    /// Task Scheduler folder (default `\`; e.g. `\Shop`).
    #[serde(default = "default_folder")]
    pub folder: String,
    /// Where minions fetch the zip when the request brings no artifact; `{version}` is replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_url: Option<String>,
    /// Expected SHA-256 of the zip fetched from `artifact_url` (64 hex digits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Stop a task still running after `wait_timeout_secs` (`task.stop`) instead of failing the host.
    #[serde(default)]
    pub stop_running: bool,
    /// Seconds to wait for a running instance to end after the task is disabled, 0 to
    /// [`MAX_WAIT_SECS`] (default 300).
    #[serde(default = "default_wait")]
    pub wait_timeout_secs: u64,
    /// Seconds between two `task.status` polls, 1 to [`MAX_POLL_INTERVAL_SECS`] (default 5).
    #[serde(default = "default_poll")]
    pub poll_interval_secs: u64,
    /// Run the task once right after enabling it and check its last result.
    #[serde(default)]
    pub run_now: bool,
    /// Seconds the run started by `run_now` may take, 1 to [`MAX_WAIT_SECS`] (default 600).
    #[serde(default = "default_run_timeout")]
    pub run_timeout_secs: u64,
    /// Releases kept on disk after a successful deploy, 1 to [`MAX_KEEP_RELEASES`] (default 5; the running
    /// one and rollback targets always).
    #[serde(default = "default_keep")]
    pub keep_releases: usize,
    /// Layout conventions; defaults to core's rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conventions: Option<Conventions>,
    /// Per-host overrides, keyed by minion id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub hosts: BTreeMap<String, WindowsTaskHost>,
}

/// Values of one host that differ from the `[project]` table (`[project.hosts.<minion-id>]`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct WindowsTaskHost {
    /// Root directory on this host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<String>,
    /// Task name on this host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    /// Task Scheduler folder on this host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folder: Option<String>,
}

/// The effective settings of one host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct HostSettings<'a> {
    pub(crate) root: &'a str,
    pub(crate) task: &'a str,
    pub(crate) folder: &'a str,
}

fn default_folder() -> String {
    "\\".to_owned()
}
fn default_wait() -> u64 {
    300
}
fn default_poll() -> u64 {
    5
}
fn default_run_timeout() -> u64 {
    600
}
fn default_keep() -> usize {
    5
}

impl WindowsTaskConfig {
    /// The settings `host` runs with.
    pub(crate) fn host(&self, host: &MinionId) -> HostSettings<'_> {
        let o = self.hosts.get(host.as_str());
        let pick = |f: fn(&WindowsTaskHost) -> &Option<String>| o.and_then(|o| f(o).as_deref());
        HostSettings {
            root: pick(|o| &o.root).unwrap_or(&self.root),
            task: pick(|o| &o.task).unwrap_or(&self.task),
            folder: pick(|o| &o.folder).unwrap_or(&self.folder),
        }
    }

    /// `(task, folder)` of `host`: the key its task calls are grouped by.
    pub(crate) fn task_key(&self, host: &MinionId) -> (String, String) {
        let s = self.host(host);
        (s.task.to_owned(), s.folder.to_owned())
    }

    /// The release layout of `host`.
    pub(crate) fn layout(&self, host: &MinionId) -> ReleaseLayout {
        ReleaseLayout::new(self.host(host).root, PathStyle::Windows)
    }

    /// `<root>\current` of `host`.
    pub(crate) fn current_link(&self, host: &MinionId) -> String {
        PathStyle::Windows.join(self.host(host).root, &["current"])
    }

    /// Core's conventions, or the template's.
    pub fn effective_conventions(&self) -> Conventions {
        self.conventions.clone().unwrap_or_default()
    }

    pub(crate) fn poll_interval(&self) -> Duration {
        Duration::from_secs(self.poll_interval_secs)
    }
}

fn check_folder(field: &str, folder: &str) -> Result<(), Error> {
    if !folder.starts_with('\\')
        || folder.len() > 256
        || folder
            .split('\\')
            .any(|p| !p.is_empty() && validate::name(field, p).is_err())
        || folder.contains("\\\\")
    {
        return Err(Error::invalid(
            field,
            folder,
            "must be a Task Scheduler folder such as `\\` or `\\Shop`",
        ));
    }
    Ok(())
}

fn check_range(field: &str, v: u64, lo: u64, hi: u64) -> Result<(), Error> {
    if !(lo..=hi).contains(&v) {
        return Err(Error::invalid(
            field,
            v,
            format!("must be between {lo} and {hi}"),
        ));
    }
    Ok(())
}

impl WindowsTaskConfig {
    /// Checks every field (the kind's [`pushguide_core::DeployerConfig::validate`]), naming the first
    /// bad one.
    pub(crate) fn check(&self) -> Result<(), Error> {
        validate::path("project.root", &self.root)?;
        validate::name("project.task", &self.task)?;
        check_folder("project.folder", &self.folder)?;
        validate_project_artifact(self.artifact_url.as_deref(), self.sha256.as_deref())?;
        validate::duration_secs(
            "project.wait_timeout_secs",
            self.wait_timeout_secs,
            0,
            MAX_WAIT_SECS,
        )?;
        validate::duration_secs(
            "project.poll_interval_secs",
            self.poll_interval_secs,
            1,
            MAX_POLL_INTERVAL_SECS,
        )?;
        validate::duration_secs(
            "project.run_timeout_secs",
            self.run_timeout_secs,
            1,
            MAX_WAIT_SECS,
        )?;
        check_range(
            "project.keep_releases",
            self.keep_releases as u64,
            1,
            MAX_KEEP_RELEASES as u64,
        )?;
        if self.hosts.len() > validate::MAX_HOSTS {
            return Err(Error::invalid(
                "project.hosts",
                format!("{} host tables", self.hosts.len()),
                format!("more than {} host tables", validate::MAX_HOSTS),
            ));
        }
        if let Some(c) = &self.conventions {
            validate_conventions("project.conventions", c)?;
        }
        for (id, o) in &self.hosts {
            let f = |name: &str| format!("project.hosts.{id}.{name}");
            validate::minion_id(&format!("project.hosts.{id}"), id)?;
            if let Some(v) = &o.root {
                validate::path(&f("root"), v)?;
            }
            if let Some(v) = &o.task {
                validate::name(&f("task"), v)?;
            }
            if let Some(v) = &o.folder {
                check_folder(&f("folder"), v)?;
            }
        }
        Ok(())
    }
}

inventory::submit! {
    KindInfo {
        kind: crate::KIND,
        summary: "Windows scheduled task: disable and wait, switch <root>\\current to the release, enable, optionally run now and check the result.",
        platforms: &[Platform::Windows],
        example: r#"kind = "windows-task"
root = 'D:\Jobs\nightly'
task = "nightly-export"
artifact_url = "https://ci.example.com/nightly/{version}/nightly.zip"
"#,
    }
}
