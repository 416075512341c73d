use std::collections::BTreeMap;

use pushguide_core::steps::{
    validate_conventions, validate_project_artifact, Conventions, PathStyle, ReleaseLayout,
};
use pushguide_core::{validate, Error, KindInfo, MinionId, Platform};
use serde::{Deserialize, Serialize};

/// Entries every `dotnet-iis` artifact must contain, on top of `[project.conventions]`.
pub const REQUIRED_ENTRIES: &[&str] = &["web.config"];

/// Text of `app_offline.htm` when `app_offline = true` and no `app_offline_text` is given.
pub const DEFAULT_APP_OFFLINE_TEXT: &str =
    "<!doctype html><title>Maintenance</title><p>This application is being updated. Please retry in a minute.</p>";

/// Configuration of a `dotnet-iis` template's `[project]` table.
///
/// ```toml
/// kind = "dotnet-iis"
/// root = 'D:\Sites\shop'
/// site = "shop"
/// app_pool = "shop"
/// artifact_url = "https://ci.example.com/shop/{version}/shop.zip"  # when CI gives none
/// app_offline = true
/// warmup_url = "http://127.0.0.1/shop/"
///
/// [project.hosts.web-07]      # per-host overrides (CMDB data)
/// root = 'E:\Sites\shop'
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct DotnetIisConfig {
    /// Directory holding `releases\<version>` and `archives\<version>.zip` (e.g. `D:\Sites\shop`): an
    /// absolute path.
    pub root: String,
    /// IIS site name.
    pub site: String,
    /// IIS application pool name.
    pub app_pool: String,
    /// Where minions fetch the zip when the request brings no artifact; `{version}` is replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_url: Option<String>,
    /// Expected SHA-256 of the zip fetched from `artifact_url` (64 hex digits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Write `app_offline.htm` into the running release before the app pool is stopped.
    #[serde(default)]
    pub app_offline: bool,
    /// Text of `app_offline.htm` (default [`DEFAULT_APP_OFFLINE_TEXT`]), 1 to
    /// [`MAX_APP_OFFLINE_TEXT_LEN`] bytes; line breaks allowed, other control or invisible characters
    /// not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_offline_text: Option<String>,
    /// URL requested once from each minion after the start (result logged, not evaluated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup_url: Option<String>,
    /// Releases kept on disk after a successful deploy, 1 to [`MAX_KEEP_RELEASES`] (default 5; the running
    /// one and rollback targets always).
    #[serde(default = "default_keep")]
    pub keep_releases: usize,
    /// Layout conventions; defaults to core's rules. `web.config` is always required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conventions: Option<Conventions>,
    /// Per-host overrides, keyed by minion id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub hosts: BTreeMap<String, DotnetIisHost>,
}

/// Values of one host that differ from the `[project]` table (`[project.hosts.<minion-id>]`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct DotnetIisHost {
    /// Root directory on this host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<String>,
    /// IIS site name on this host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    /// Application pool on this host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_pool: Option<String>,
    /// Health URL on this host (instead of the template's `[health] url`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_url: Option<String>,
    /// Warm-up URL on this host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup_url: Option<String>,
}

/// The effective settings of one host: the `[project]` table with its override applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct HostSettings<'a> {
    pub(crate) root: &'a str,
    pub(crate) site: &'a str,
    pub(crate) app_pool: &'a str,
    pub(crate) health_url: Option<&'a str>,
    pub(crate) warmup_url: Option<&'a str>,
}

fn default_keep() -> usize {
    5
}

impl DotnetIisConfig {
    /// The settings `host` runs with.
    pub(crate) fn host(&self, host: &MinionId) -> HostSettings<'_> {
        let o = self.hosts.get(host.as_str());
        let pick = |f: fn(&DotnetIisHost) -> &Option<String>| o.and_then(|o| f(o).as_deref());
        HostSettings {
            root: pick(|o| &o.root).unwrap_or(&self.root),
            site: pick(|o| &o.site).unwrap_or(&self.site),
            app_pool: pick(|o| &o.app_pool).unwrap_or(&self.app_pool),
            health_url: pick(|o| &o.health_url),
            warmup_url: pick(|o| &o.warmup_url).or(self.warmup_url.as_deref()),
        }
    }

    /// The release layout of `host`.
    pub(crate) fn layout(&self, host: &MinionId) -> ReleaseLayout {
        ReleaseLayout::new(self.host(host).root, PathStyle::Windows)
    }

    /// Core's conventions (or the template's) plus [`REQUIRED_ENTRIES`].
    pub fn effective_conventions(&self) -> Conventions {
        self.conventions
            .clone()
            .unwrap_or_default()
            .requiring(REQUIRED_ENTRIES)
    }

    /// The text written to `app_offline.htm`.
    pub(crate) fn app_offline_text(&self) -> &str {
        self.app_offline_text
            .as_deref()
            .unwrap_or(DEFAULT_APP_OFFLINE_TEXT)
    }
}

/// Most releases `keep_releases` may keep.
pub const MAX_KEEP_RELEASES: usize = 100;

/// Longest `app_offline_text`, in bytes.
pub const MAX_APP_OFFLINE_TEXT_LEN: usize = 8192;

const HTTP: &[&str] = validate::HTTP_SCHEMES;

impl DotnetIisConfig {
    /// Checks every field (the kind's [`pushguide_core::DeployerConfig::validate`]), naming the first
    /// bad one.
    pub(crate) fn check(&self) -> Result<(), Error> {
        validate::path("project.root", &self.root)?;
        validate::name("project.site", &self.site)?;
        validate::name("project.app_pool", &self.app_pool)?;
        validate_project_artifact(self.artifact_url.as_deref(), self.sha256.as_deref())?;
        if let Some(t) = &self.app_offline_text {
            if t.is_empty() {
                return Err(Error::invalid(
                    "project.app_offline_text",
                    t,
                    "must not be empty",
                ));
            }
            validate::text(
                "project.app_offline_text",
                t,
                MAX_APP_OFFLINE_TEXT_LEN,
                true,
            )?;
        }
        if let Some(u) = &self.warmup_url {
            validate::url("project.warmup_url", u, HTTP)?;
        }
        validate::range(
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
            if let Some(v) = &o.site {
                validate::name(&f("site"), v)?;
            }
            if let Some(v) = &o.app_pool {
                validate::name(&f("app_pool"), v)?;
            }
            if let Some(v) = &o.health_url {
                validate::url(&f("health_url"), v, HTTP)?;
            }
            if let Some(v) = &o.warmup_url {
                validate::url(&f("warmup_url"), v, HTTP)?;
            }
        }
        Ok(())
    }
}

inventory::submit! {
    KindInfo {
        kind: crate::KIND,
        summary: ".NET web application on IIS: release directory, app_offline.htm, site physical path switch, app pool stop/start, health check.",
        platforms: &[Platform::Windows],
        example: r#"kind = "dotnet-iis"
root = 'D:\Sites\shop'
site = "shop"
app_pool = "shop"
artifact_url = "https://ci.example.com/shop/{version}/shop.zip"
"#,
    }
}
