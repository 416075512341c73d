//! # pushguide-java
//!
//! The `java-tomcat` project type: a WAR unpacked into `releases/<version>` on each minion (Linux or
//! Windows), switched in as the Tomcat context (a symlink in `webapps` on Linux, a context file with
//! `docBase` on Windows) while Tomcat is stopped, then started, health-checked and pruned.
#![doc = include_str!("../docs.md")]

mod config;
mod deployer;
mod steps;

pub use config::{HostSettings, JavaTomcatConfig, TomcatPlatform};
pub use deployer::JavaTomcat;

/// The kind tag of this project type.
pub const KIND: &str = "java-tomcat";
