//! # pushguide-sources
//!
//! Where a release's inputs come from:
//!
//! - [`ArtifactSource`]: a template's versions (newest first) and, per version, the
//!   [`Artifact`](pushguide_core::Artifact) — URL, SHA-256, size and the manifest that the
//!   layout-conventions gate reads. Implementations: [`HttpIndexSource`] (a CI system's JSON index)
//!   and [`DirectorySource`] (a directory tree the minions reach over HTTP or `salt://`).
//! - [`Cmdb`]: per-host settings for a template. Implementations: [`HttpCmdb`] (JSON API) and
//!   [`StaticCmdb`] (a TOML file); `pushguide_salt::SaltCmdb` (feature `cmdb` of `pushguide-salt`,
//!   which depends on this crate, not the other way round) reads salt pillar and grains. [`apply_cmdb`] / [`apply_cmdb_to`] merge them into a template's
//!   `[project.hosts.<id>]` tables (on the typed template) and validate the result.
//!
//! Every value from a source is untrusted: versions pass
//! [`pushguide_core::validate::version`], host ids [`pushguide_core::validate::minion_id`], artifact
//! URLs must be `http://`, `https://` or `salt://` without shell characters, checksums 64 hex digits.
//! A rejected value is an [`Error`] naming the source and the value. Errors are one typed enum;
//! [`Error::is_retryable`] tells whether retrying may help.
//!
//! ## HTTP index format ([`HttpIndexSource`])
//!
//! `GET <base>/<template>/index.json` (HTTP 200, `application/json`; 404 means the template is
//! unknown):
//!
//! ```json
//! {
//!   "versions": [
//!     {
//!       "version": "1.4.2",
//!       "url": "1.4.2/shop.war",
//!       "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
//!       "size": 48213,
//!       "published": "2025-03-01T12:00:00Z",
//!       "manifest": [{"path": "WEB-INF/web.xml", "size": 612}, {"path": "index.jsp", "size": 88}]
//!     }
//!   ]
//! }
//! ```
//!
//! - `version` and `url` are required; `sha256`, `size`, `published` and `manifest` are optional
//!   (without `manifest` the conventions gate logs that it checked nothing); other fields are ignored.
//! - `url` may be relative: it is resolved against the index URL (`1.4.2/shop.war` above becomes
//!   `<base>/<template>/1.4.2/shop.war`). The result must be `http://`, `https://` or `salt://`.
//! - `published` is RFC 3339 (`2025-03-01T12:00:00Z`, `2025-03-01T14:00:00+02:00`) or a date
//!   (`2025-03-01`).
//! - Order, newest first: by `published` when every entry has it (ties by version), otherwise by natural
//!   version order ([`pushguide_core::steps::version_cmp`]: `1.10` after `1.9`). The order in the file
//!   does not matter.
//! - A version listed twice, a version failing the grammar, a bad URL or checksum fail the whole index
//!   with an error naming the source and the version: a CI index that lists hostile values is broken.
//! - Requests time out after 30 s by default ([`HttpIndexSource::timeout`]); bodies above 16 MiB are
//!   refused; an optional bearer token is sent as `Authorization: Bearer …`.
//!
//! ## Directory layout ([`DirectorySource`])
//!
//! ```text
//! <root>/<template>/<version>/<one archive>     .war .jar .ear .zip .tar .tar.gz .tgz
//! <root>/<template>/<version>/manifest.json     optional: [{"path": "WEB-INF/web.xml", "size": 612}, …]
//! ```
//!
//! - Versions are the sub-directories of `<root>/<template>` (hidden ones, `.incoming`, are skipped),
//!   newest first in natural version order; each must pass the version grammar.
//! - A version directory must hold exactly one archive. Its SHA-256 and size are computed (off the async
//!   workers); its URL is `<url_base><template>/<version>/<file>`.
//! - The manifest is `manifest.json` when present; otherwise the zip central directory of a
//!   `.war`/`.jar`/`.ear`/`.zip` or the headers of a plain `.tar` (nothing is decompressed). A
//!   `.tar.gz`/`.tgz` without `manifest.json` has no manifest. Entries with absolute paths or `..`
//!   components are refused (they would unpack outside the release directory).
//!
//! ## Maven repository ([`MavenSource`])
//!
//! For template `shop` with coordinates `com.example` / `shop` / `war` (see [`MavenArtifact`]):
//!
//! ```text
//! <url>/com/example/shop/maven-metadata.xml                      <versioning><versions><version>…
//! <url>/com/example/shop/1.4.2/shop-1.4.2[-<classifier>].war     + .sha256 (else .sha512, else .sha1)
//! <url>/com/example/shop/2.0-SNAPSHOT/maven-metadata.xml         <snapshotVersions> / <snapshot>
//! <url>/com/example/shop/2.0-SNAPSHOT/shop-2.0-20250302.093000-2.war
//! ```
//!
//! - Versions are newest first in Maven's order ([`maven_version_cmp`]), restricted to the
//!   coordinates' `versions` pattern; each must pass the version grammar (else the whole list fails
//!   with [`Error::InvalidVersion`] quoting it). The XML reader refuses a DOCTYPE (no entity
//!   expansion) and documents above [`DEFAULT_MAX_METADATA`] bytes.
//! - [`ArtifactSource::resolve`]: the file URL, its SHA-256 (from `.sha256`; else the file is
//!   downloaded and checked against `.sha512` or, with a warning, `.sha1`; `.md5` alone is refused),
//!   its size from `HEAD`, and the zip central directory read with `Range` requests (a server
//!   without `Range` support: the whole file, up to [`DEFAULT_MAX_DOWNLOAD`] bytes).
//! - Credentials ([`MavenAuth`], basic or bearer) are never shown. The minions do not have them: a
//!   source with credentials needs [`MavenSource::stage_into`], and
//!   [`ArtifactSource::stage`] copies the file into that directory (checked against the SHA-256)
//!   before a deployment; the artifact's URL is then the staging URL (`salt://…`).
//!
//! ## HTTP CMDB format ([`HttpCmdb`])
//!
//! `GET <base>/hosts?template=<template>` (HTTP 200, `application/json`):
//!
//! ```json
//! {
//!   "hosts": {
//!     "web-01": {"catalina_base": "/opt/tomcat-a", "service": "tomcat-a"},
//!     "web-02": {"catalina_base": "/opt/tomcat-b", "service": "tomcat-b"}
//!   }
//! }
//! ```
//!
//! Each host's value is an object whose keys are the kind's per-host keys (for `java-tomcat`: `root`,
//! `catalina_base`, `service`, `start_command`, `stop_command`, `health_url`). `null` means unset.
//!
//! ## Static CMDB format ([`StaticCmdb`])
//!
//! ```toml
//! [hosts.web-01]                       # every template
//! catalina_base = "/opt/tomcat-a"
//! service = "tomcat-a"
//!
//! [templates.shop-web.hosts.web-01]    # only template shop-web; overrides [hosts.web-01] key by key
//! service = "tomcat-shop"
//! ```
//!
//! ## Precedence when merging ([`apply_cmdb`])
//!
//! Key by key, highest first: the template's explicit `[project.hosts.<id>]` value, then the CMDB's
//! value, then the template's `[project]` default. A key the kind does not know, a value it rejects,
//! and a value beyond a template's bounds (too long, too deep, control characters) are an
//! [`Error::Setting`] naming the CMDB, the host and the key.
//!
//! ## Which hosts get settings
//!
//! Only the deployment's targets. A template with a minion list (or a `list` expression) names them
//! itself: [`apply_cmdb`] merges those hosts' settings and ignores the CMDB's other hosts. A template
//! with any other target expression (`[targets] expression = "web-*"`, a grain, a compound) learns its
//! hosts only when the transport resolves the expression: resolve it first
//! ([`Transport::resolve`](pushguide_core::Transport::resolve)) and merge with [`apply_cmdb_to`] or
//! [`apply_from`], which take the resolved hosts and leave every other host's settings out. The
//! `pushguide` CLI does this, and deploys to exactly the hosts it resolved for the merge.

mod archive;
mod artifact;
mod cmdb;
mod directory;
mod error;
mod http;
mod http_index;
mod maven;
mod merge;

pub use artifact::ArtifactSource;
pub use cmdb::{Cmdb, HostSettings, HttpCmdb, StaticCmdb};
pub use directory::{DirectorySource, MANIFEST_FILE};
pub use error::Error;
pub use http_index::HttpIndexSource;
pub use maven::{
    maven_version_cmp, MavenArtifact, MavenAuth, MavenSource, Packaging, DEFAULT_MAX_DOWNLOAD,
    DEFAULT_MAX_METADATA,
};
pub use merge::{apply_cmdb, apply_cmdb_to, apply_from};
