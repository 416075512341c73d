use pushguide_core::{validate, Deployer, DeployerConfig, Error, KindInfo, Platform};
use serde::{Deserialize, Serialize};

use crate::deployer::JavaTomcat;

/// Configuration of a `java-tomcat` template's `[project]` table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct JavaTomcatConfig {
    /// Directory holding `releases/<version>` on each minion.
    pub root: String,
    /// Tomcat's `webapps` directory.
    pub webapps: String,
    /// Context name (the symlink in `webapps`); `ROOT` for `/`.
    pub context: String,
    /// Service to stop and start (systemd unit name).
    pub service: String,
    /// Where minions fetch the WAR; `{version}` is replaced by the release's version.
    pub artifact_url: String,
    /// Expected SHA-256 of the WAR (lower-case hex), checked on the minion before Tomcat stops.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

pub(crate) fn check_url(field: &str, url: &str) -> Result<(), Error> {
    let scheme_ok = ["http://", "https://", "salt://"]
        .iter()
        .any(|s| url.starts_with(s));
    if !scheme_ok {
        return Err(Error::invalid(
            field,
            url,
            "must start with http://, https:// or salt://",
        ));
    }
    if let Some(c) = url
        .chars()
        .find(|c| c.is_control() || c.is_whitespace() || "\"'`$;|&<>\\".contains(*c))
    {
        return Err(Error::invalid(field, url, format!("contains {c:?}")));
    }
    Ok(())
}

pub(crate) fn check_sha256(field: &str, hex: &Option<String>) -> Result<(), Error> {
    if let Some(h) = hex {
        if h.len() != 64
            || !h
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
        {
            return Err(Error::invalid(field, h, "must be 64 lower-case hex digits"));
        }
    }
    Ok(())
}

impl JavaTomcatConfig {
    /// A config with the given paths, service and artifact URL.
    pub fn new(
        root: &str,
        webapps: &str,
        context: &str,
        service: &str,
        artifact_url: &str,
    ) -> Self {
        JavaTomcatConfig {
            root: root.into(),
            webapps: webapps.into(),
            context: context.into(),
            service: service.into(),
            artifact_url: artifact_url.into(),
            sha256: None,
        }
    }
}

#[typetag::serde(name = "java-tomcat")]
impl DeployerConfig for JavaTomcatConfig {
    fn validate(&self) -> Result<(), Error> {
        validate::path("project.root", &self.root)?;
        validate::path("project.webapps", &self.webapps)?;
        validate::name("project.context", &self.context)?;
        validate::name("project.service", &self.service)?;
        check_url("project.artifact_url", &self.artifact_url)?;
        check_sha256("project.sha256", &self.sha256)
    }

    fn build(&self) -> Result<Box<dyn Deployer>, Error> {
        self.validate()?;
        Ok(Box::new(JavaTomcat::new(self.clone())))
    }
}

inventory::submit! {
    KindInfo {
        kind: crate::KIND,
        summary: "Java web application (WAR) on Tomcat: release directory, context symlink, service restart.",
        platforms: &[Platform::Linux],
        example: r#"kind = "java-tomcat"
root = "/srv/shop"
webapps = "/var/lib/tomcat10/webapps"
context = "shop"
service = "tomcat10"
artifact_url = "https://ci.example.com/shop/{version}/shop.war"
"#,
    }
}
