//! # pushguide-java
//!
//! The `java-tomcat` project type: a WAR unpacked into `releases/<version>` on each minion (Linux or
//! Windows), switched in as the Tomcat context (a symlink in `webapps` on Linux, a context file with
//! `docBase` on Windows) while Tomcat is stopped, then started, health-checked and pruned.
//!
//! The kind registers itself when the crate is linked; a template selects it with `kind = "java-tomcat"`:
//!
//! ```
//! use pushguide_java as _;
//! let template = pushguide_core::Template::from_toml_str(
//!     r#"
//!     name = "shop"
//!     [targets]
//!     minions = ["web-01"]
//!     [project]
//!     kind = "java-tomcat"
//!     context = "shop"
//!     root = "/srv/shop"
//!     catalina_base = "/var/lib/tomcat10"
//!     service = "tomcat10"
//!     "#,
//!     "shop.toml",
//! )
//! .unwrap();
//! assert_eq!(template.project.typetag_name(), "java-tomcat");
//! template.project.build().unwrap();
//! ```
#![doc = include_str!("../docs.md")]

mod config;
mod deployer;
mod steps;

pub use config::{HostSettings, JavaTomcatConfig, TomcatPlatform, MAX_KEEP_RELEASES};
pub use deployer::JavaTomcat;

/// The kind tag of this project type.
pub const KIND: &str = "java-tomcat";
