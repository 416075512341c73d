use std::collections::BTreeMap;

use pushguide_core::steps::{
    validate_conventions, validate_project_artifact, Conventions, PathStyle, ReleaseLayout,
};
use pushguide_core::{validate, Error, KindInfo, MinionId, Platform};
use serde::{Deserialize, Serialize};

use crate::steps::Control;

/// Which operating system the minions run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TomcatPlatform {
    /// Linux: the context is a symlink in `webapps`.
    #[default]
    Linux,
    /// Windows: the context is a file `conf\Catalina\localhost\<context>.xml` with `docBase`.
    Windows,
}

/// Settings that may differ per host (from the template or a CMDB); unset fields take the project's.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HostSettings {
    /// Release root (`releases/<version>`, `archives/<version>.war`): an absolute path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root: Option<String>,
    /// Tomcat's `CATALINA_BASE` (`webapps/`, `work/`, `conf/` under it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub catalina_base: Option<String>,
    /// Service to stop and start (systemd unit or Windows service; letters, digits, `.`, `_`, `-`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Command that starts Tomcat, instead of a service: an argv list run without a shell
    /// (`cmd.run_all` with `python_shell=False`); the program is an absolute path. Give it together
    /// with `stop_command`. It waits as long as any call: the salt connection's `job_timeout`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_command: Option<Vec<String>>,
    /// Command that stops Tomcat, instead of a service (same rules as `start_command`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_command: Option<Vec<String>>,
    /// Health URL probed from the minion (overrides the template's `[health] url`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_url: Option<String>,
}

/// Configuration of a `java-tomcat` template's `[project]` table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct JavaTomcatConfig {
    /// Minion operating system.
    #[serde(default)]
    pub platform: TomcatPlatform,
    /// Context name (`ROOT` for `/`): the symlink `<catalina_base>/webapps/<context>` on Linux, the file
    /// `<catalina_base>\conf\Catalina\localhost\<context>.xml` on Windows.
    pub context: String,
    /// Where minions fetch the WAR when the request carries no artifact; `{version}` is replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_url: Option<String>,
    /// Expected SHA-256 of the WAR fetched from `artifact_url` (64 hex digits); checked on each minion
    /// (`file.get_hash`) before Tomcat stops.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Releases kept on each host after a successful deploy, 2 to [`MAX_KEEP_RELEASES`] (default 5;
    /// the running one and the rollback target are always kept).
    #[serde(default = "default_keep")]
    pub keep_releases: usize,
    /// Layout conventions (defaults plus `WEB-INF/web.xml` required).
    #[serde(default = "default_conventions")]
    pub conventions: Conventions,
    /// Release root of every host (`releases/<version>`, `archives/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<String>,
    /// Tomcat's `CATALINA_BASE` of every host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalina_base: Option<String>,
    /// Service to stop and start (systemd unit or Windows service; letters, digits, `.`, `_`, `-`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Command that starts Tomcat, instead of a service: an argv list run without a shell
    /// (`cmd.run_all` with `python_shell=False`); the program is an absolute path. Give it together
    /// with `stop_command`. It waits as long as any call: the salt connection's `job_timeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_command: Option<Vec<String>>,
    /// Command that stops Tomcat, instead of a service (same rules as `start_command`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_command: Option<Vec<String>>,
    /// Health URL probed from the minion (overrides the template's `[health] url`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_url: Option<String>,
    /// Per-host overrides, by minion id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub hosts: BTreeMap<String, HostSettings>,
}

fn default_keep() -> usize {
    5
}

fn default_conventions() -> Conventions {
    Conventions::default().requiring(&["WEB-INF/web.xml"])
}

/// The effective settings of one host.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Host {
    pub(crate) root: String,
    pub(crate) catalina_base: String,
    pub(crate) control: Control,
    pub(crate) health_url: Option<String>,
}

/// Most releases `keep_releases` may keep.
pub const MAX_KEEP_RELEASES: usize = 100;

impl HostSettings {
    fn validate(&self, prefix: &str) -> Result<(), Error> {
        if let Some(r) = &self.root {
            validate::path(&format!("{prefix}root"), r)?;
        }
        if let Some(b) = &self.catalina_base {
            validate::path(&format!("{prefix}catalina_base"), b)?;
        }
        if let Some(s) = &self.service {
            validate::name(&format!("{prefix}service"), s)?;
        }
        if let Some(c) = &self.start_command {
            validate::argv(&format!("{prefix}start_command"), c)?;
        }
        if let Some(c) = &self.stop_command {
            validate::argv(&format!("{prefix}stop_command"), c)?;
        }
        if let Some(u) = &self.health_url {
            validate::url(&format!("{prefix}health_url"), u, validate::HTTP_SCHEMES)?;
        }
        Ok(())
    }

    fn over(&self, base: &HostSettings) -> HostSettings {
        HostSettings {
            root: self.root.clone().or_else(|| base.root.clone()),
            catalina_base: self
                .catalina_base
                .clone()
                .or_else(|| base.catalina_base.clone()),
            service: self.service.clone().or_else(|| base.service.clone()),
            start_command: self
                .start_command
                .clone()
                .or_else(|| base.start_command.clone()),
            stop_command: self
                .stop_command
                .clone()
                .or_else(|| base.stop_command.clone()),
            health_url: self.health_url.clone().or_else(|| base.health_url.clone()),
        }
    }
}

impl JavaTomcatConfig {
    /// The project-wide settings, as a [`HostSettings`].
    pub fn defaults(&self) -> HostSettings {
        HostSettings {
            root: self.root.clone(),
            catalina_base: self.catalina_base.clone(),
            service: self.service.clone(),
            start_command: self.start_command.clone(),
            stop_command: self.stop_command.clone(),
            health_url: self.health_url.clone(),
        }
    }

    pub(crate) fn style(&self) -> PathStyle {
        match self.platform {
            TomcatPlatform::Linux => PathStyle::Posix,
            TomcatPlatform::Windows => PathStyle::Windows,
        }
    }

    /// The effective settings of `host` (defaults merged with its override).
    pub(crate) fn host(&self, host: &MinionId) -> Result<Host, Error> {
        let s = match self.hosts.get(host.as_str()) {
            Some(o) => o.over(&self.defaults()),
            None => self.defaults(),
        };
        let field = |f: &str| format!("project.hosts.{host}.{f} (or project.{f})");
        let root = s
            .root
            .ok_or_else(|| Error::invalid(field("root"), "", "missing"))?;
        let catalina_base = s
            .catalina_base
            .ok_or_else(|| Error::invalid(field("catalina_base"), "", "missing"))?;
        let control = match (s.service, s.start_command, s.stop_command) {
            (_, Some(start), Some(stop)) => Control::Commands { start, stop },
            (Some(svc), None, None) => Control::Service(svc),
            _ => {
                return Err(Error::invalid(
                    field("service"),
                    "",
                    "give `service`, or both `start_command` and `stop_command`",
                ))
            }
        };
        Ok(Host {
            root,
            catalina_base,
            control,
            health_url: s.health_url,
        })
    }

    pub(crate) fn layout(&self, host: &Host) -> ReleaseLayout {
        ReleaseLayout::new(host.root.clone(), self.style())
    }
}

impl JavaTomcatConfig {
    /// Checks every field (the kind's [`pushguide_core::DeployerConfig::validate`]), naming the first
    /// bad one.
    pub(crate) fn check(&self) -> Result<(), Error> {
        validate::name("project.context", &self.context)?;
        validate_project_artifact(self.artifact_url.as_deref(), self.sha256.as_deref())?;
        if !(2..=MAX_KEEP_RELEASES).contains(&self.keep_releases) {
            return Err(Error::invalid(
                "project.keep_releases",
                self.keep_releases,
                format!(
                    "must be between 2 (the new release and the rollback target) and {MAX_KEEP_RELEASES}"
                ),
            ));
        }
        validate_conventions("project.conventions", &self.conventions)?;
        self.defaults().validate("project.")?;
        if self.hosts.len() > validate::MAX_HOSTS {
            return Err(Error::invalid(
                "project.hosts",
                format!("{} host tables", self.hosts.len()),
                format!("more than {} host tables", validate::MAX_HOSTS),
            ));
        }
        for (id, h) in &self.hosts {
            validate::minion_id("project.hosts", id)?;
            h.validate(&format!("project.hosts.{id}."))?;
        }
        Ok(())
    }
}

inventory::submit! {
    KindInfo {
        kind: crate::KIND,
        summary: "Java web application (WAR) on Tomcat: release directory, context switch, restart, health check.",
        platforms: &[Platform::Linux, Platform::Windows],
        example: r#"kind = "java-tomcat"
platform = "linux"
context = "shop"
root = "/srv/shop"
catalina_base = "/var/lib/tomcat10"
service = "tomcat10"
artifact_url = "https://ci.example.com/shop/{version}/shop.war"
"#,
    }
}
