//! # pushguide-dotnet
//!
//! The `dotnet-iis` project type: a zip released into `releases\<version>` on Windows minions, an
//! optional `app_offline.htm` while the app pool is stopped, the IIS site's physical path switched to
//! the new release, a warm-up request, the health check and pruning of old releases.
#![doc = include_str!("../docs.md")]

mod config;
mod deployer;
mod steps;

pub use config::{DotnetIisConfig, DotnetIisHost, DEFAULT_APP_OFFLINE_TEXT, REQUIRED_ENTRIES};
pub use deployer::DotnetIis;

/// The kind tag of this project type.
pub const KIND: &str = "dotnet-iis";
