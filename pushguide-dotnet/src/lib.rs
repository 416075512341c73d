//! # pushguide-dotnet
//!
//! The `dotnet-iis` project type: a zip released into `releases\<version>` on Windows minions, an
//! optional `app_offline.htm` while the app pool is stopped, the IIS site's physical path switched to
//! the new release, a warm-up request, the health check and pruning of old releases.
//!
//! The kind registers itself when the crate is linked; a template selects it with `kind = "dotnet-iis"`:
//!
//! ```
//! use pushguide_dotnet as _;
//! let info = pushguide_core::kind_info(pushguide_dotnet::KIND).expect("registered");
//! let text = format!(
//!     "name = \"app\"\n[targets]\nminions = [\"win-01\"]\n[project]\n{}",
//!     info.example
//! );
//! let template = pushguide_core::Template::from_toml_str(&text, "app.toml").unwrap();
//! assert_eq!(template.project.typetag_name(), "dotnet-iis");
//! template.project.build().unwrap();
//! ```
#![doc = include_str!("../docs.md")]

mod config;
mod deployer;
mod steps;

pub use config::{
    DotnetIisConfig, DotnetIisHost, DEFAULT_APP_OFFLINE_TEXT, MAX_APP_OFFLINE_TEXT_LEN,
    MAX_KEEP_RELEASES, REQUIRED_ENTRIES,
};
pub use deployer::DotnetIis;

/// The kind tag of this project type.
pub const KIND: &str = "dotnet-iis";
