//! # pushguide-wintask
//!
//! The `windows-task` project type: a zip released into `releases\<version>` on Windows minions; the
//! scheduled task is disabled and waited for (or stopped) while `<root>\current` is switched to the new
//! release, then enabled and optionally run once with its result checked.
//!
//! The kind registers itself when the crate is linked; a template selects it with `kind = "windows-task"`:
//!
//! ```
//! use pushguide_wintask as _;
//! let info = pushguide_core::kind_info(pushguide_wintask::KIND).expect("registered");
//! let text = format!(
//!     "name = \"app\"\n[targets]\nminions = [\"win-01\"]\n[project]\n{}",
//!     info.example
//! );
//! let template = pushguide_core::Template::from_toml_str(&text, "app.toml").unwrap();
//! assert_eq!(template.project.typetag_name(), "windows-task");
//! template.project.build().unwrap();
//! ```
#![doc = include_str!("../docs.md")]

mod config;
mod deployer;
mod steps;

pub use config::{
    WindowsTaskConfig, WindowsTaskHost, MAX_KEEP_RELEASES, MAX_POLL_INTERVAL_SECS, MAX_WAIT_SECS,
};
pub use deployer::WindowsTask;
pub use steps::SUCCESS;

/// The kind tag of this project type.
pub const KIND: &str = "windows-task";
