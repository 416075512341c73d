//! # pushguide-wintask
//!
//! The `windows-task` project type: a zip released into `releases\<version>` on Windows minions; the
//! scheduled task is disabled and waited for (or stopped) while `<root>\current` is switched to the new
//! release, then enabled and optionally run once with its result checked.
#![doc = include_str!("../docs.md")]

mod config;
mod deployer;
mod steps;

pub use config::{WindowsTaskConfig, WindowsTaskHost};
pub use deployer::WindowsTask;
pub use steps::SUCCESS;

/// The kind tag of this project type.
pub const KIND: &str = "windows-task";
