//! `HttpIndexSource`: a CI system's JSON index of a template's versions (format in the crate docs).

use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use pushguide_core::steps::ManifestEntry;
use pushguide_core::Artifact;
use reqwest::Url;
use serde::Deserialize;

use crate::artifact::{
    check_artifact_url, check_sha256, check_template, check_version, parse_rfc3339,
    sort_newest_first, ArtifactSource,
};
use crate::error::{shown, Error};
use crate::http::JsonGetter;

/// The body of `GET <base>/<template>/index.json`.
#[derive(Debug, Deserialize)]
struct Index {
    versions: Vec<IndexEntry>,
}

/// One version in the index. Unknown fields are ignored, so a CI system may add its own.
#[derive(Debug, Deserialize)]
struct IndexEntry {
    version: String,
    url: String,
    #[serde(default)]
    sha256: Option<String>,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default)]
    published: Option<String>,
    #[serde(default)]
    manifest: Option<Vec<ManifestEntry>>,
}

/// A checked entry: version validated, URL absolute, published parsed.
struct Checked {
    entry: IndexEntry,
    published: Option<i64>,
}

/// Versions and artifacts from an HTTP JSON index; see the [crate docs](crate) for the format.
///
/// ```no_run
/// # async fn f() -> Result<(), pushguide_sources::Error> {
/// use std::time::Duration;
/// use pushguide_sources::{ArtifactSource, HttpIndexSource};
///
/// let ci = HttpIndexSource::new("https://ci.example.com/artifacts")?
///     .timeout(Duration::from_secs(10))
///     .bearer_token("s3cr3t");
/// let newest = ci.versions("shop-web").await?;
/// let artifact = ci.resolve("shop-web", &newest[0]).await?;
/// assert!(artifact.sha256.is_some());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct HttpIndexSource {
    http: JsonGetter,
}

impl fmt::Debug for HttpIndexSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpIndexSource")
            .field("http", &self.http)
            .finish()
    }
}

impl HttpIndexSource {
    /// An index below `base` (an `http://` or `https://` URL; `/<template>/index.json` is appended).
    pub fn new(base: &str) -> Result<Self, Error> {
        Ok(HttpIndexSource {
            http: JsonGetter::new(base)?,
        })
    }

    /// Limit of one request, connect to last byte (default 30 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.http.timeout = timeout;
        self
    }

    /// Largest accepted index, in bytes (default 16 MiB).
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.http.max_body = bytes;
        self
    }

    /// Sends `Authorization: Bearer <token>` (the token is never printed by `Debug`).
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        self.http.bearer = Some(token.into());
        self
    }

    /// Uses `client` (proxies, custom roots, connection pool shared with other sources).
    pub fn client(mut self, client: reqwest::Client) -> Self {
        self.http.client = client;
        self
    }

    /// The index URL of `template`.
    pub fn index_url(&self, template: &str) -> Result<Url, Error> {
        check_template(&self.http.name, template)?;
        self.http.url(&format!("{template}/index.json"))
    }

    /// Fetches and checks the whole index of `template`, newest first.
    async fn index(&self, template: &str) -> Result<(Url, Vec<Checked>), Error> {
        let url = self.index_url(template)?;
        let index: Index = match self.http.get(&url).await {
            Err(Error::Status { status: 404, .. }) => {
                return Err(Error::TemplateNotFound {
                    source_name: self.http.name.clone(),
                    template: template.to_owned(),
                })
            }
            other => other?,
        };
        let name = &self.http.name;
        let malformed = |message: String| Error::Malformed {
            source_name: name.clone(),
            location: url.to_string(),
            message,
        };
        let mut seen = HashSet::new();
        let mut out = Vec::with_capacity(index.versions.len());
        for mut entry in index.versions {
            check_version(name, template, &entry.version)?;
            if !seen.insert(entry.version.clone()) {
                return Err(malformed(format!(
                    "version \"{}\" is listed twice",
                    entry.version
                )));
            }
            let field = format!("versions[{}].url", entry.version);
            let absolute = url.join(&entry.url).map_err(|e| {
                malformed(format!(
                    "{field}: \"{}\" is not a URL: {e}",
                    shown(&entry.url)
                ))
            })?;
            entry.url = absolute.to_string();
            check_artifact_url(name, &field, &entry.url)?;
            if let Some(sha) = &entry.sha256 {
                entry.sha256 = Some(check_sha256(
                    name,
                    &format!("versions[{}].sha256", entry.version),
                    sha,
                )?);
            }
            let published = match &entry.published {
                None => None,
                Some(p) => Some(parse_rfc3339(p).ok_or_else(|| {
                    malformed(format!(
                        "versions[{}].published: \"{}\" is not an RFC 3339 timestamp",
                        entry.version,
                        shown(p)
                    ))
                })?),
            };
            out.push(Checked { entry, published });
        }
        sort_newest_first(&mut out, |c| &c.entry.version, |c| c.published);
        Ok((url, out))
    }
}

#[async_trait]
impl ArtifactSource for HttpIndexSource {
    fn name(&self) -> &str {
        &self.http.name
    }

    async fn versions(&self, template: &str) -> Result<Vec<String>, Error> {
        let (_, entries) = self.index(template).await?;
        Ok(entries.into_iter().map(|c| c.entry.version).collect())
    }

    async fn resolve(&self, template: &str, version: &str) -> Result<Artifact, Error> {
        check_version(&self.http.name, template, version)?;
        let (_, entries) = self.index(template).await?;
        let Some(c) = entries.into_iter().find(|c| c.entry.version == version) else {
            return Err(Error::VersionNotFound {
                source_name: self.http.name.clone(),
                template: template.to_owned(),
                version: version.to_owned(),
            });
        };
        let e = c.entry;
        let mut artifact = Artifact::new(e.url, e.sha256);
        artifact.size = e.size;
        artifact.manifest = e.manifest;
        Ok(artifact)
    }
}
