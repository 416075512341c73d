//! # pushguide-dotnet
//!
//! The `dotnet-iis` project type: a zip released into `releases\<version>` on Windows minions, the IIS
//! site's physical path switched to it, the app pool stopped and started around the switch.
#![doc = include_str!("../docs.md")]

mod config;
mod deployer;

pub use config::DotnetIisConfig;
pub use deployer::DotnetIis;

/// The kind tag of this project type.
pub const KIND: &str = "dotnet-iis";
