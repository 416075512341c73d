//! `MavenSource`: versions and artifacts from a Maven repository layout (Nexus, Artifactory,
//! Reposilite, a plain HTTP server over a directory).

mod fetch;
mod version;
mod xml;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use pushguide_core::Artifact;
use reqwest::{Client, Url};

use crate::artifact::{check_artifact_url, check_template, check_version, ArtifactSource};
use crate::error::{shown, Error};

pub use version::maven_version_cmp;

/// Default limit of a `maven-metadata.xml` (a repository listing thousands of versions stays far
/// below it; a larger answer is refused as hostile).
pub const DEFAULT_MAX_METADATA: usize = 4 * 1024 * 1024;
/// Default limit of a whole artifact read by pushguide: a download to compute a SHA-256 (no
/// `.sha256` in the repository), the manifest from a server without `Range` support, a staged copy.
pub const DEFAULT_MAX_DOWNLOAD: u64 = 1024 * 1024 * 1024;

/// The archive type of a Maven artifact (its `<packaging>`, the file's extension).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Packaging {
    /// A web application (`.war`).
    War,
    /// A zip archive (`.zip`).
    Zip,
    /// A Java archive (`.jar`).
    Jar,
}

impl Packaging {
    /// The file extension: `war`, `zip` or `jar`.
    pub fn extension(self) -> &'static str {
        match self {
            Packaging::War => "war",
            Packaging::Zip => "zip",
            Packaging::Jar => "jar",
        }
    }

    /// `war`, `zip` or `jar`; anything else is an [`pushguide_core::Error::Invalid`] naming the
    /// field `packaging`.
    pub fn parse(s: &str) -> Result<Self, pushguide_core::Error> {
        match s {
            "war" => Ok(Packaging::War),
            "zip" => Ok(Packaging::Zip),
            "jar" => Ok(Packaging::Jar),
            other => Err(pushguide_core::Error::invalid(
                "packaging",
                other,
                "must be \"war\", \"zip\" or \"jar\"",
            )),
        }
    }
}

/// Which artifact of the repository a template's releases are: Maven coordinates, and which of the
/// artifact's versions count as releases.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MavenArtifact {
    /// The `groupId` (`com.example.shop`).
    pub group: String,
    /// The `artifactId`; `None`: the template's name.
    pub artifact: Option<String>,
    /// The archive type.
    pub packaging: Packaging,
    /// The classifier (`shop-1.0-dist.zip` has the classifier `dist`), if any.
    pub classifier: Option<String>,
    /// A pattern the versions must match to be listed and deployed: `*` any characters, `?` one
    /// (`2.*`, `*-RELEASE`); `None`: every version.
    pub versions: Option<String>,
}

impl MavenArtifact {
    /// Coordinates `group` / (template name) with `packaging`, no classifier, every version.
    pub fn new(group: impl Into<String>, packaging: Packaging) -> Self {
        MavenArtifact {
            group: group.into(),
            artifact: None,
            packaging,
            classifier: None,
            versions: None,
        }
    }

    /// Sets the `artifactId` (default: the template's name).
    pub fn artifact(mut self, artifact: impl Into<String>) -> Self {
        self.artifact = Some(artifact.into());
        self
    }

    /// Sets the classifier.
    pub fn classifier(mut self, classifier: impl Into<String>) -> Self {
        self.classifier = Some(classifier.into());
        self
    }

    /// Restricts the versions to those matching `pattern` (`*` and `?` wildcards).
    pub fn versions(mut self, pattern: impl Into<String>) -> Self {
        self.versions = Some(pattern.into());
        self
    }

    /// Checks every field; the error ([`pushguide_core::Error::Invalid`]) names the field
    /// (`group`, `artifact`, `classifier`, `versions`) and the value.
    ///
    /// ```
    /// use pushguide_sources::{MavenArtifact, Packaging};
    ///
    /// assert!(MavenArtifact::new("com.example", Packaging::War).validate().is_ok());
    /// let e = MavenArtifact::new("com/../etc", Packaging::War).validate().unwrap_err();
    /// assert!(e.to_string().contains("group"));
    /// ```
    pub fn validate(&self) -> Result<(), pushguide_core::Error> {
        let bad = |field: &str, value: &str, reason: &str| {
            Err(pushguide_core::Error::invalid(field, value, reason))
        };
        if self.group.is_empty()
            || self.group.len() > 200
            || self.group.split('.').any(|s| {
                s.is_empty()
                    || !s
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
            })
        {
            return bad(
                "group",
                &self.group,
                "must be dot-separated parts of letters, digits, `_` and `-` (com.example.shop)",
            );
        }
        for (field, value) in [
            ("artifact", &self.artifact),
            ("classifier", &self.classifier),
        ] {
            if let Some(v) = value {
                pushguide_core::validate::name(field, v)?;
            }
        }
        if let Some(p) = &self.versions {
            if p.is_empty()
                || p.len() > 128
                || !p.chars().all(|c| {
                    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-' | '*' | '?')
                })
            {
                return bad(
                    "versions",
                    p,
                    "must be a pattern of letters, digits, `.`, `_`, `+`, `-` and the wildcards \
                     `*` and `?`",
                );
            }
        }
        Ok(())
    }

    fn matches(&self, version: &str) -> bool {
        self.versions
            .as_deref()
            .is_none_or(|p| wildcard(p.as_bytes(), version.as_bytes()))
    }
}

/// `*` (any run of characters) and `?` (one character) matching.
fn wildcard(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// Credentials for the repository. The secret never appears in `Debug` output, logs or errors.
#[derive(Clone)]
#[non_exhaustive]
pub enum MavenAuth {
    /// HTTP basic authentication.
    Basic {
        /// The user.
        user: String,
        /// The password.
        password: String,
    },
    /// `Authorization: Bearer <token>`.
    Bearer(String),
}

impl fmt::Debug for MavenAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MavenAuth::Basic { user, .. } => f
                .debug_struct("Basic")
                .field("user", user)
                .field("password", &"<hidden>")
                .finish(),
            MavenAuth::Bearer(_) => f.debug_tuple("Bearer").field(&"<hidden>").finish(),
        }
    }
}

/// Where artifacts are copied for the minions when they cannot fetch from the repository
/// themselves (it needs credentials): a directory the salt master serves, and its URL.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Staging {
    dir: PathBuf,
    url_base: String,
}

/// Versions and artifacts from a Maven repository; see the [crate docs](crate) for what it reads.
///
/// ```no_run
/// # async fn f() -> Result<(), pushguide_sources::Error> {
/// use pushguide_sources::{ArtifactSource, MavenArtifact, MavenSource, Packaging};
///
/// let repo = MavenSource::new(
///     "https://nexus.example.com/repository/releases/",
///     MavenArtifact::new("com.example", Packaging::War),
/// )?;
/// let versions = repo.versions("shop-web").await?; // com/example/shop-web/maven-metadata.xml
/// let artifact = repo.resolve("shop-web", &versions[0]).await?;
/// # let _ = artifact; Ok(()) }
/// ```
#[derive(Clone)]
pub struct MavenSource {
    name: String,
    base: Url,
    client: Client,
    timeout: Duration,
    download_timeout: Duration,
    max_metadata: usize,
    max_download: u64,
    default: MavenArtifact,
    templates: BTreeMap<String, MavenArtifact>,
    auth: Option<MavenAuth>,
    staging: Option<Staging>,
}

impl fmt::Debug for MavenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MavenSource")
            .field("base", &self.base.as_str())
            .field("default", &self.default)
            .field("templates", &self.templates)
            .field("auth", &self.auth)
            .field("staging", &self.staging)
            .field("timeout", &self.timeout)
            .field("max_metadata", &self.max_metadata)
            .field("max_download", &self.max_download)
            .finish()
    }
}

impl MavenSource {
    /// A source reading the repository at `url` (`http://` or `https://`, without credentials in
    /// it), for templates whose artifact is `default` (its `artifact` left `None`: the template's
    /// name).
    pub fn new(url: &str, default: MavenArtifact) -> Result<Self, Error> {
        let mut text = url.to_owned();
        if !text.ends_with('/') {
            text.push('/');
        }
        let parsed = Url::parse(&text);
        // the name is in every message: never with the credentials a URL may carry
        let name = match &parsed {
            Ok(u) if !u.username().is_empty() || u.password().is_some() => {
                let mut u = u.clone();
                let _ = u.set_username("");
                let _ = u.set_password(None);
                format!("maven repository {}", shown(u.as_str()))
            }
            Ok(u) => format!("maven repository {}", shown(u.as_str())),
            Err(_) => "maven repository (bad URL)".to_owned(),
        };
        let config = |message: String| Error::Config {
            source_name: name.clone(),
            message,
        };
        let base = parsed.map_err(|e| config(format!("not a URL: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(config("the URL must be http:// or https://".into()));
        }
        if !base.username().is_empty() || base.password().is_some() {
            return Err(config(
                "credentials in the URL are refused: configure them apart, they would be shown \
                 in every message"
                    .into(),
            ));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(config("the URL must not have a query or fragment".into()));
        }
        default.validate().map_err(|e| Error::Invalid {
            source_name: name.clone(),
            error: Box::new(e),
        })?;
        let client = Client::builder()
            .build()
            .map_err(|e| config(format!("cannot set up the HTTP client: {e}")))?;
        Ok(MavenSource {
            name,
            base,
            client,
            timeout: crate::http::DEFAULT_TIMEOUT,
            download_timeout: Duration::from_secs(600),
            max_metadata: DEFAULT_MAX_METADATA,
            max_download: DEFAULT_MAX_DOWNLOAD,
            default,
            templates: BTreeMap::new(),
            auth: None,
            staging: None,
        })
    }

    /// Template `template` uses `artifact` instead of the default coordinates.
    pub fn template(
        mut self,
        template: impl Into<String>,
        artifact: MavenArtifact,
    ) -> Result<Self, Error> {
        let template = template.into();
        check_template(&self.name, &template)?;
        artifact.validate().map_err(|e| Error::Invalid {
            source_name: self.name.clone(),
            error: Box::new(e),
        })?;
        self.templates.insert(template, artifact);
        Ok(self)
    }

    /// Sends these credentials with every request. The minions do not have them: a source with
    /// credentials needs [`MavenSource::stage_into`].
    pub fn auth(mut self, auth: MavenAuth) -> Self {
        self.auth = Some(auth);
        self
    }

    /// Before a deployment, copies the artifact into `dir` (below it:
    /// `<group path>/<artifact>/<version>/<file>`, checked against the repository's checksum) and
    /// tells the minions to fetch `<url_base><same path>` — a directory of the salt master's file
    /// roots and its `salt://` URL, or one a web server serves.
    pub fn stage_into(mut self, dir: impl Into<PathBuf>, url_base: &str) -> Result<Self, Error> {
        let mut url_base = url_base.to_owned();
        if !url_base.ends_with('/') {
            url_base.push('/');
        }
        check_artifact_url(&self.name, "stage_url", &url_base).map_err(|e| Error::Config {
            source_name: self.name.clone(),
            message: e.to_string(),
        })?;
        self.staging = Some(Staging {
            dir: dir.into(),
            url_base,
        });
        Ok(self)
    }

    /// Limit of one metadata, checksum or HEAD request (default 30 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Limit of one whole-artifact download (default 600 s).
    pub fn download_timeout(mut self, timeout: Duration) -> Self {
        self.download_timeout = timeout;
        self
    }

    /// Largest `maven-metadata.xml` accepted (default [`DEFAULT_MAX_METADATA`]).
    pub fn max_metadata(mut self, bytes: usize) -> Self {
        self.max_metadata = bytes;
        self
    }

    /// Largest artifact pushguide downloads whole (default [`DEFAULT_MAX_DOWNLOAD`]).
    pub fn max_download(mut self, bytes: u64) -> Self {
        self.max_download = bytes;
        self
    }

    /// The coordinates of `template` and its `artifactId`.
    fn coordinates(&self, template: &str) -> Result<(&MavenArtifact, String), Error> {
        check_template(&self.name, template)?;
        let c = self.templates.get(template).unwrap_or(&self.default);
        let id = c.artifact.clone().unwrap_or_else(|| template.to_owned());
        Ok((c, id))
    }

    /// `com/example/shop/` for group `com.example`, artifact `shop`.
    fn artifact_dir(c: &MavenArtifact, id: &str) -> String {
        format!("{}/{id}/", c.group.replace('.', "/"))
    }

    fn url(&self, path: &str) -> Result<Url, Error> {
        self.base.join(path).map_err(|e| Error::Config {
            source_name: self.name.clone(),
            message: format!("cannot build a URL for {path}: {e}"),
        })
    }

    fn malformed(&self, location: &Url, message: impl Into<String>) -> Error {
        Error::Malformed {
            source_name: self.name.clone(),
            location: location.to_string(),
            message: message.into(),
        }
    }

    /// The template's versions as listed by its `maven-metadata.xml`, validated, restricted to
    /// its pattern, newest first.
    async fn listed(&self, template: &str) -> Result<Vec<String>, Error> {
        let (c, id) = self.coordinates(template)?;
        let url = self.url(&format!("{}maven-metadata.xml", Self::artifact_dir(c, &id)))?;
        let Some(body) = self.get_small(&url, self.max_metadata).await? else {
            return Err(Error::TemplateNotFound {
                source_name: self.name.clone(),
                template: template.to_owned(),
            });
        };
        let root = self.xml(&url, &body)?;
        let mut out: Vec<String> = Vec::new();
        if let Some(list) = root.child("versioning").and_then(|v| v.child("versions")) {
            for v in list.all("version") {
                let v = v.text.trim();
                check_version(&self.name, template, v)?;
                if c.matches(v) && !out.iter().any(|o| o == v) {
                    out.push(v.to_owned());
                }
            }
        }
        out.sort_by(|a, b| maven_version_cmp(b, a));
        Ok(out)
    }

    fn xml(&self, url: &Url, body: &[u8]) -> Result<xml::Element, Error> {
        let text = std::str::from_utf8(body)
            .map_err(|e| self.malformed(url, format!("not UTF-8: {e}")))?;
        let root = xml::parse(text).map_err(|m| self.malformed(url, m))?;
        if root.name != "metadata" {
            return Err(self.malformed(
                url,
                format!(
                    "the root element is <{}>, not <metadata>",
                    shown(&root.name)
                ),
            ));
        }
        Ok(root)
    }

    /// Where `version` of `template` is in the repository: its URL and its path below the
    /// repository root. A SNAPSHOT is resolved to its newest timestamped file.
    async fn locate(&self, template: &str, version: &str) -> Result<(Url, String), Error> {
        check_version(&self.name, template, version)?;
        if !self.listed(template).await?.iter().any(|v| v == version) {
            return Err(Error::VersionNotFound {
                source_name: self.name.clone(),
                template: template.to_owned(),
                version: version.to_owned(),
            });
        }
        let (c, id) = self.coordinates(template)?;
        let dir = format!("{}{version}/", Self::artifact_dir(c, &id));
        let file_version = match version.strip_suffix("-SNAPSHOT") {
            Some(base) => {
                self.snapshot_value(template, c, &dir, version, base)
                    .await?
            }
            None => version.to_owned(),
        };
        let classifier = c
            .classifier
            .as_deref()
            .map(|k| format!("-{k}"))
            .unwrap_or_default();
        let path = format!(
            "{dir}{id}-{file_version}{classifier}.{}",
            c.packaging.extension()
        );
        let url = self.url(&path)?;
        check_artifact_url(&self.name, "url", url.as_str())?;
        Ok((url, path))
    }

    /// The timestamped version of a SNAPSHOT (`1.0-20250301.120000-3`), from the snapshot's own
    /// `maven-metadata.xml`: the `<snapshotVersion>` of the packaging and classifier, else
    /// `<snapshot>`'s timestamp and build number. Without that metadata (or with `<localCopy>`), the
    /// file is named with `-SNAPSHOT` itself.
    async fn snapshot_value(
        &self,
        template: &str,
        c: &MavenArtifact,
        dir: &str,
        version: &str,
        base: &str,
    ) -> Result<String, Error> {
        let url = self.url(&format!("{dir}maven-metadata.xml"))?;
        let Some(body) = self.get_small(&url, self.max_metadata).await? else {
            return Ok(version.to_owned());
        };
        let root = self.xml(&url, &body)?;
        let Some(versioning) = root.child("versioning") else {
            return Ok(version.to_owned());
        };
        let classifier = c.classifier.as_deref().unwrap_or("");
        let from_list = versioning.child("snapshotVersions").and_then(|list| {
            list.all("snapshotVersion")
                .find(|s| {
                    s.text_at(&["extension"]) == Some(c.packaging.extension())
                        && s.text_at(&["classifier"]).unwrap_or("") == classifier
                })
                .and_then(|s| s.text_at(&["value"]))
                .map(str::to_owned)
        });
        let value = match from_list {
            Some(v) => v,
            None => match (
                versioning.text_at(&["snapshot", "timestamp"]),
                versioning.text_at(&["snapshot", "buildNumber"]),
                versioning.text_at(&["snapshot", "localCopy"]),
            ) {
                (_, _, Some("true")) | (None, _, _) => version.to_owned(),
                (Some(ts), Some(n), _) => format!("{base}-{ts}-{n}"),
                (Some(_), None, _) => {
                    return Err(
                        self.malformed(&url, "<snapshot> has a timestamp but no buildNumber")
                    )
                }
            },
        };
        check_version(&self.name, template, &value)?;
        Ok(value)
    }
}

#[async_trait]
impl ArtifactSource for MavenSource {
    fn name(&self) -> &str {
        &self.name
    }

    async fn versions(&self, template: &str) -> Result<Vec<String>, Error> {
        self.listed(template).await
    }

    async fn resolve(&self, template: &str, version: &str) -> Result<Artifact, Error> {
        if self.auth.is_some() && self.staging.is_none() {
            return Err(Error::Config {
                source_name: self.name.clone(),
                message: "the repository needs credentials, which the minions do not have: \
                          configure a staging directory (stage_dir, stage_url) the minions \
                          fetch from"
                    .into(),
            });
        }
        let (url, path) = self.locate(template, version).await?;
        let (size, _ranges) = self.head(&url).await?;
        let sha256 = self.checksum(&url).await?;
        let manifest = self.manifest(&url, size).await?;
        let minion_url = match &self.staging {
            Some(s) => {
                let u = format!("{}{path}", s.url_base);
                check_artifact_url(&self.name, "url", &u)?;
                u
            }
            None => url.to_string(),
        };
        let mut artifact = Artifact::new(minion_url, Some(sha256));
        artifact.size = Some(size);
        artifact.manifest = Some(manifest);
        Ok(artifact)
    }

    async fn stage(&self, template: &str, version: &str, artifact: &Artifact) -> Result<(), Error> {
        let Some(staging) = &self.staging else {
            return Ok(());
        };
        let (url, path) = self.locate(template, version).await?;
        let Some(sha) = artifact.sha256.as_deref() else {
            return Err(Error::Invalid {
                source_name: self.name.clone(),
                error: Box::new(pushguide_core::Error::invalid(
                    "sha256",
                    "",
                    "a staged artifact needs its SHA-256",
                )),
            });
        };
        self.copy_to(&url, &staging.dir.join(&path), sha).await
    }
}
