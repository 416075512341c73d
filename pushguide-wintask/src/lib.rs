//! # pushguide-wintask
//!
//! The `windows-task` project type: a zip released into `releases\<version>` on Windows minions, the
//! scheduled task disabled (and stopped) while `<root>\current` is switched to the new release, then
//! enabled again.
#![doc = include_str!("../docs.md")]

mod config;
mod deployer;

pub use config::WindowsTaskConfig;
pub use deployer::WindowsTask;

/// The kind tag of this project type.
pub const KIND: &str = "windows-task";
