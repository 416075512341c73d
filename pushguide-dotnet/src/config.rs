use pushguide_core::{validate, Deployer, DeployerConfig, Error, KindInfo, Platform};
use serde::{Deserialize, Serialize};

use crate::deployer::DotnetIis;

/// Configuration of a `dotnet-iis` template's `[project]` table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct DotnetIisConfig {
    /// Directory holding `releases\<version>` (e.g. `D:\Sites\shop`).
    pub root: String,
    /// IIS site name.
    pub site: String,
    /// IIS application pool name.
    pub app_pool: String,
    /// Where minions fetch the zip; `{version}` is replaced by the version.
    pub artifact_url: String,
    /// Expected SHA-256 of the zip.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// URL and checksum checks shared with the other bundled kinds' rules.
fn check_url(field: &str, url: &str) -> Result<(), Error> {
    if !["http://", "https://", "salt://"]
        .iter()
        .any(|s| url.starts_with(s))
    {
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

#[typetag::serde(name = "dotnet-iis")]
impl DeployerConfig for DotnetIisConfig {
    fn validate(&self) -> Result<(), Error> {
        validate::path("project.root", &self.root)?;
        validate::name("project.site", &self.site)?;
        validate::name("project.app_pool", &self.app_pool)?;
        check_url("project.artifact_url", &self.artifact_url)?;
        if let Some(h) = &self.sha256 {
            if h.len() != 64
                || !h
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
            {
                return Err(Error::invalid(
                    "project.sha256",
                    h,
                    "must be 64 lower-case hex digits",
                ));
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
        summary: ".NET web application on IIS: release directory, site physical path switch, app pool restart.",
        platforms: &[Platform::Windows],
        example: r#"kind = "dotnet-iis"
root = 'D:\Sites\shop'
site = "shop"
app_pool = "shop"
artifact_url = "https://ci.example.com/shop/{version}/shop.zip"
"#,
    }
}
