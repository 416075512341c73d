//! Project-type registry: `inventory` items describing each kind and the `typetag` config trait.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::hook::deployer::Deployer;
use crate::vocab::error::Error;

/// An operating system family a project type supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    /// Linux minions.
    Linux,
    /// Windows minions.
    Windows,
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Platform::Linux => "linux",
            Platform::Windows => "windows",
        })
    }
}

/// What a plugin tells the world about its project type. Submit one with `inventory::submit!`.
///
/// ```
/// use pushguide_core::{KindInfo, Platform};
/// inventory::submit! {
///     KindInfo {
///         kind: "doc-example",
///         summary: "An example kind used in documentation.",
///         platforms: &[Platform::Linux],
///         example: "kind = \"doc-example\"\n",
///     }
/// }
/// assert!(pushguide_core::kind_info("doc-example").is_some());
/// ```
#[derive(Debug)]
pub struct KindInfo {
    /// The `kind` tag used in templates; must equal the `typetag` name of the config type.
    pub kind: &'static str,
    /// One-line description.
    pub summary: &'static str,
    /// Supported platforms.
    pub platforms: &'static [Platform],
    /// An example `[project]` table in TOML, including the `kind` line.
    pub example: &'static str,
}

inventory::collect!(KindInfo);

/// Every registered kind, sorted by name.
pub fn registered_kinds() -> Vec<&'static KindInfo> {
    let mut kinds: Vec<&'static KindInfo> = inventory::iter::<KindInfo>.into_iter().collect();
    kinds.sort_by_key(|k| k.kind);
    kinds
}

/// The registered kind called `kind`, if any.
pub fn kind_info(kind: &str) -> Option<&'static KindInfo> {
    inventory::iter::<KindInfo>
        .into_iter()
        .find(|k| k.kind == kind)
}

/// Error for a kind no plugin registers, listing the known kinds. The kind is shown escaped
/// and cut ([`crate::vocab::validate::clean`]).
pub fn unknown_kind(field: &str, kind: &str) -> Error {
    Error::UnknownKind {
        field: crate::vocab::validate::clean(field, 300),
        kind: crate::vocab::validate::clean(kind, crate::vocab::validate::MAX_SHOWN_CHARS),
        known: registered_kinds()
            .iter()
            .map(|k| k.kind.to_owned())
            .collect(),
    }
}

/// A project type's configuration, polymorphic through `typetag` on the `kind` field.
///
/// Implement it for a `Deserialize + Serialize` struct, tag the impl with
/// `#[typetag::serde(name = "my-kind")]`, and submit a matching [`KindInfo`]:
///
/// ```
/// use pushguide_core::{Deployer, DeployerConfig, Error, SaltCall, StageContext, StageError};
///
/// #[derive(Debug, serde::Serialize, serde::Deserialize)]
/// #[serde(deny_unknown_fields)]
/// struct HelloConfig { greeting: String }
///
/// #[derive(Debug)]
/// struct Hello(String);
///
/// #[async_trait::async_trait]
/// impl Deployer for Hello {
///     async fn deploy(&self, cx: &mut StageContext<'_>) -> Result<(), StageError> {
///         cx.call(SaltCall::read("test.echo").arg(self.0.as_str())).await?;
///         Ok(())
///     }
///     async fn rollback(&self, _cx: &mut StageContext<'_>) -> Result<(), StageError> { Ok(()) }
/// }
///
/// #[typetag::serde(name = "hello")]
/// impl DeployerConfig for HelloConfig {
///     fn build(&self) -> Result<Box<dyn Deployer>, Error> {
///         Ok(Box::new(Hello(self.greeting.clone())))
///     }
/// }
///
/// let cfg: Box<dyn DeployerConfig> =
///     serde_json::from_str(r#"{"kind":"hello","greeting":"hi"}"#).unwrap();
/// assert_eq!(cfg.typetag_name(), "hello");
/// ```
///
/// Tools change a config through serde, never through its text: serializing a config and
/// deserializing the result must give the same config. A kind with settings that differ per host
/// reads them from a `hosts` map by minion id (`[project.hosts.<id>]`), whose unset keys are absent
/// or `null` when serialized; `pushguide-sources` merges a CMDB's per-host settings into that map,
/// key by key, then deserializes the config again and calls [`DeployerConfig::validate`].
#[typetag::serde(tag = "kind")]
pub trait DeployerConfig: fmt::Debug + Send + Sync + 'static {
    /// Checks the config; errors name the field below `project.` (e.g. `project.paths.root`).
    fn validate(&self) -> Result<(), Error> {
        Ok(())
    }

    /// Builds the deployer. Called once per deployment, after [`DeployerConfig::validate`].
    fn build(&self) -> Result<Box<dyn Deployer>, Error>;
}
