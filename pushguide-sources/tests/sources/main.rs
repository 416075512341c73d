//! Integration tests of pushguide-sources: HTTP index, directory, CMDBs and merging.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

use pushguide_java as _;

mod cmdb;
mod directory;
mod http_index;
mod maven;
mod maven_repo;
mod merge;
mod support;
