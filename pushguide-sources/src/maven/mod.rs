//! `MavenSource`: versions and artifacts from a Maven repository layout.

mod version;

pub use version::maven_version_cmp;
