use std::collections::BTreeMap;

use pushguide_core::steps::{validate_conventions, Conventions, PathStyle, ReleaseLayout};
use pushguide_core::{validate, Deployer, DeployerConfig, Error, KindInfo, MinionId, Platform};
use serde::{Deserialize, Serialize};

use crate::deployer::DotnetIis;

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
    /// Directory holding `releases\<version>` and `archives\<version>.zip` (e.g. `D:\Sites\shop`).
    pub root: String,
    /// IIS site name.
    pub site: String,
    /// IIS application pool name.
    pub app_pool: String,
    /// Where minions fetch the zip when the request brings no artifact; `{version}` is replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_url: Option<String>,
    /// Expected SHA-256 of the zip fetched from `artifact_url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Write `app_offline.htm` into the running release before the app pool is stopped.
    #[serde(default)]
    pub app_offline: bool,
    /// Text of `app_offline.htm` (default [`DEFAULT_APP_OFFLINE_TEXT`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_offline_text: Option<String>,
    /// URL requested once from each minion after the start (result logged, not evaluated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup_url: Option<String>,
    /// Releases kept on disk after a successful deploy (the running one and rollback targets always).
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

/// `http://`/`https://` (and, for artifacts, `salt://`) URLs without spaces or shell characters.
pub(crate) fn check_url(field: &str, url: &str, schemes: &[&str]) -> Result<(), Error> {
    if !schemes.iter().any(|s| url.starts_with(s)) || url.len() <= 8 {
        return Err(Error::invalid(
            field,
            url,
            format!("must be a URL starting with {}", schemes.join(", ")),
        ));
    }
    if url.len() > validate::MAX_PATH_LEN {
        return Err(Error::invalid(field, url, "is too long"));
    }
    if let Some(c) = url
        .chars()
        .find(|c| c.is_control() || c.is_whitespace() || "\"'`$;|&<>\\".contains(*c))
    {
        return Err(Error::invalid(field, url, format!("contains {c:?}")));
    }
    Ok(())
}

fn check_sha(field: &str, h: &str) -> Result<(), Error> {
    if h.len() != 64
        || !h
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    {
        return Err(Error::invalid(field, h, "must be 64 lower-case hex digits"));
    }
    Ok(())
}

const HTTP: &[&str] = &["http://", "https://"];

#[typetag::serde(name = "dotnet-iis")]
impl DeployerConfig for DotnetIisConfig {
    fn validate(&self) -> Result<(), Error> {
        validate::path("project.root", &self.root)?;
        validate::name("project.site", &self.site)?;
        validate::name("project.app_pool", &self.app_pool)?;
        if let Some(url) = &self.artifact_url {
            check_url(
                "project.artifact_url",
                url,
                &["http://", "https://", "salt://"],
            )?;
        }
        if let Some(h) = &self.sha256 {
            check_sha("project.sha256", h)?;
        }
        if let Some(t) = &self.app_offline_text {
            if t.is_empty() || t.len() > 8192 || t.chars().any(|c| c.is_control() && c != '\n') {
                return Err(Error::invalid(
                    "project.app_offline_text",
                    t.escape_debug(),
                    "must be 1 to 8192 bytes of text without control characters",
                ));
            }
        }
        if let Some(u) = &self.warmup_url {
            check_url("project.warmup_url", u, HTTP)?;
        }
        if !(1..=100).contains(&self.keep_releases) {
            return Err(Error::invalid(
                "project.keep_releases",
                self.keep_releases,
                "must be between 1 and 100",
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
                check_url(&f("health_url"), v, HTTP)?;
            }
            if let Some(v) = &o.warmup_url {
                check_url(&f("warmup_url"), v, HTTP)?;
            }
        }
        Ok(())
    }

    fn build(&self) -> Result<Box<dyn Deployer>, Error> {
        self.validate()?;
        Ok(Box::new(DotnetIis::new(self.clone())))
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
