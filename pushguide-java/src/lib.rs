//! # pushguide-java
//!
//! The `java-tomcat` project type: a WAR released into `releases/<version>` on each minion, switched
//! in as the Tomcat context with a symlink, with Tomcat stopped and started around the switch.
//! `docs.md` lists the exact salt calls of every stage.
#![doc = include_str!("../docs.md")]

mod config;
mod deployer;

pub use config::JavaTomcatConfig;
pub use deployer::JavaTomcat;

/// The kind tag of this project type.
pub const KIND: &str = "java-tomcat";
