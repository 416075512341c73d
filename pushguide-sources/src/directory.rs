//! `DirectorySource`: artifacts in a local directory tree, `<root>/<template>/<version>/<archive>`.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use pushguide_core::steps::ManifestEntry;
use pushguide_core::Artifact;
use sha2::{Digest, Sha256};

use crate::archive::{list_tar, list_zip, ListError};
use crate::artifact::{
    check_artifact_url, check_template, check_version, sort_newest_first, ArtifactSource,
};
use crate::error::{shown, Error};

/// File name of the optional sidecar manifest in a version directory.
pub const MANIFEST_FILE: &str = "manifest.json";

/// Archive kinds the directory source recognises, by file-name suffix.
const ARCHIVE_SUFFIXES: &[&str] = &[".war", ".jar", ".ear", ".zip", ".tar", ".tar.gz", ".tgz"];

/// Versions and artifacts from a local directory tree; see the [crate docs](crate) for the layout.
///
/// The minions do not read the directory: they fetch `<url_base><template>/<version>/<file>`, where
/// `url_base` is where the same tree is served (`https://artifacts.example.com/` by a web server, or
/// `salt://artifacts/` from the salt master's file roots).
///
/// ```no_run
/// # async fn f() -> Result<(), pushguide_sources::Error> {
/// use pushguide_sources::{ArtifactSource, DirectorySource};
///
/// let dir = DirectorySource::new("/srv/salt/artifacts", "salt://artifacts/")?;
/// let artifact = dir.resolve("shop-web", "1.4.2").await?;
/// assert_eq!(artifact.url, "salt://artifacts/shop-web/1.4.2/shop.war");
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct DirectorySource {
    root: PathBuf,
    url_base: String,
    name: String,
}

impl DirectorySource {
    /// A source reading `root`, telling minions to fetch from below `url_base` (`http://`, `https://` or
    /// `salt://`; a missing trailing `/` is added).
    pub fn new(root: impl Into<PathBuf>, url_base: &str) -> Result<Self, Error> {
        let root = root.into();
        let name = format!("artifact directory {}", root.display());
        let mut url_base = url_base.to_owned();
        if !url_base.ends_with('/') {
            url_base.push('/');
        }
        check_artifact_url(&name, "url_base", &url_base).map_err(|e| Error::Config {
            source_name: name.clone(),
            message: e.to_string(),
        })?;
        Ok(DirectorySource {
            root,
            url_base,
            name,
        })
    }

    /// The directory of `template`.
    fn template_dir(&self, template: &str) -> Result<PathBuf, Error> {
        check_template(&self.name, template)?;
        Ok(self.root.join(template))
    }

    fn io(&self, path: &Path, error: std::io::Error) -> Error {
        Error::Io {
            source_name: self.name.clone(),
            path: path.display().to_string(),
            error,
        }
    }

    fn archive_err(&self, path: &Path, message: impl Into<String>) -> Error {
        Error::Archive {
            source_name: self.name.clone(),
            path: path.display().to_string(),
            message: message.into(),
        }
    }

    fn list_versions(&self, template: &str) -> Result<Vec<String>, Error> {
        let dir = self.template_dir(template)?;
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::TemplateNotFound {
                    source_name: self.name.clone(),
                    template: template.to_owned(),
                })
            }
            Err(e) => return Err(self.io(&dir, e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| self.io(&dir, e))?;
            let file_name = entry.file_name();
            let name = file_name.to_string_lossy();
            // Hidden directories are work in progress of an uploader (`.incoming`), not versions.
            if name.starts_with('.') {
                continue;
            }
            if !entry
                .file_type()
                .map_err(|e| self.io(&entry.path(), e))?
                .is_dir()
            {
                continue;
            }
            check_version(&self.name, template, &name)?;
            out.push(name.into_owned());
        }
        sort_newest_first(&mut out, String::as_str, |_| None);
        Ok(out)
    }

    fn resolve_blocking(&self, template: &str, version: &str) -> Result<Artifact, Error> {
        check_version(&self.name, template, version)?;
        let dir = self.template_dir(template)?.join(version);
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::VersionNotFound {
                    source_name: self.name.clone(),
                    template: template.to_owned(),
                    version: version.to_owned(),
                })
            }
            Err(e) => return Err(self.io(&dir, e)),
        };
        let mut archives = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| self.io(&dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if ARCHIVE_SUFFIXES.iter().any(|s| name.ends_with(s))
                && entry
                    .file_type()
                    .map_err(|e| self.io(&entry.path(), e))?
                    .is_file()
            {
                archives.push(name);
            }
        }
        archives.sort();
        let file = match archives.as_slice() {
            [one] => one.clone(),
            [] => {
                return Err(self.archive_err(
                    &dir,
                    format!(
                        "no archive ({}) in the version directory",
                        ARCHIVE_SUFFIXES.join(", ")
                    ),
                ))
            }
            many => {
                return Err(self.archive_err(
                    &dir,
                    format!(
                        "more than one archive, which one is the release? {}",
                        many.join(", ")
                    ),
                ))
            }
        };
        if let Some(c) = file
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+')))
        {
            return Err(self.archive_err(
                &dir.join(&file),
                format!("{c:?} in the file name (letters, digits, `.`, `_`, `-`, `+` only)"),
            ));
        }
        let path = dir.join(&file);
        let (sha256, size) = self.hash(&path)?;
        let manifest = self.manifest(&dir, &path, &file)?;
        let url = format!("{}{template}/{version}/{file}", self.url_base);
        check_artifact_url(&self.name, "url", &url)?;
        let mut artifact = Artifact::new(url, Some(sha256));
        artifact.size = Some(size);
        artifact.manifest = manifest;
        Ok(artifact)
    }

    fn hash(&self, path: &Path) -> Result<(String, u64), Error> {
        let mut f = fs::File::open(path).map_err(|e| self.io(path, e))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0; 256 * 1024];
        let mut size = 0u64;
        loop {
            let n = f.read(&mut buf).map_err(|e| self.io(path, e))?;
            if n == 0 {
                break;
            }
            size += n as u64;
            hasher.update(&buf[..n]);
        }
        let digest = hasher.finalize();
        let hex = digest.iter().map(|b| format!("{b:02x}")).collect();
        Ok((hex, size))
    }

    /// The sidecar `manifest.json` when present, else the archive's own listing (zip family and plain
    /// tar); a `.tar.gz` without a sidecar has no manifest.
    fn manifest(
        &self,
        dir: &Path,
        archive: &Path,
        file: &str,
    ) -> Result<Option<Vec<ManifestEntry>>, Error> {
        let sidecar = dir.join(MANIFEST_FILE);
        match fs::read(&sidecar) {
            Ok(bytes) => {
                return serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| Error::Malformed {
                        source_name: self.name.clone(),
                        location: sidecar.display().to_string(),
                        message: format!("expected [{{\"path\": …, \"size\": …}}, …]: {e}"),
                    })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(self.io(&sidecar, e)),
        }
        let listed = if [".war", ".jar", ".ear", ".zip"]
            .iter()
            .any(|s| file.ends_with(s))
        {
            list_zip(archive)
        } else if file.ends_with(".tar") {
            list_tar(archive)
        } else {
            tracing::debug!(archive = %archive.display(), "no manifest: compressed tar without manifest.json");
            return Ok(None);
        };
        match listed {
            Ok(entries) => Ok(Some(entries)),
            Err(ListError::Io(e)) => Err(self.io(archive, e)),
            Err(ListError::Format(m)) => Err(self.archive_err(archive, m)),
        }
    }
}

#[async_trait]
impl ArtifactSource for DirectorySource {
    fn name(&self) -> &str {
        &self.name
    }

    async fn versions(&self, template: &str) -> Result<Vec<String>, Error> {
        let this = self.clone();
        let template = template.to_owned();
        blocking(&self.name, move || this.list_versions(&template)).await
    }

    async fn resolve(&self, template: &str, version: &str) -> Result<Artifact, Error> {
        let this = self.clone();
        let (template, version) = (template.to_owned(), version.to_owned());
        blocking(&self.name, move || {
            this.resolve_blocking(&template, &version)
        })
        .await
    }
}

/// Runs file-system work (hashing a large archive) off the async workers.
async fn blocking<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Archive {
            source_name: name.to_owned(),
            path: String::new(),
            message: format!("reading task failed: {}", shown(&e.to_string())),
        })?
}
