//! The HTTP side of [`MavenSource`]: bounded GETs, HEAD, checksums, ranged reads of an archive's
//! central directory, and staging copies.

use std::path::Path;
use std::time::Duration;

use pushguide_core::steps::ManifestEntry;
use reqwest::header::{CONTENT_LENGTH, RANGE};
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};
use sha2::{Digest, Sha256, Sha512};
use tokio::io::AsyncWriteExt;

use super::{MavenAuth, MavenSource};
use crate::archive::{
    central_dir_entries, check_central_dir, list_zip_with, zip64_end, zip64_locator, zip_end,
    zip_tail_len, ListError, ZipEnd,
};
use crate::artifact::check_sha256;
use crate::error::{shown, Error};

/// Largest checksum file read (a hex digest and maybe a file name).
const MAX_CHECKSUM_FILE: usize = 4096;

/// One ranged read's answer.
enum Ranged {
    /// `206`: the bytes asked for.
    Part(Vec<u8>),
    /// `200`: the server ignored `Range` and sent the whole file.
    Whole(Vec<u8>),
}

/// A digest to check while downloading.
enum Expected {
    Sha512(String),
    Sha1(String),
}

impl MavenSource {
    fn request(&self, method: Method, url: &Url, timeout: Duration) -> RequestBuilder {
        let req = self.client.request(method, url.clone()).timeout(timeout);
        match &self.auth {
            Some(MavenAuth::Basic { user, password }) => req.basic_auth(user, Some(password)),
            Some(MavenAuth::Bearer(token)) => req.bearer_auth(token),
            None => req,
        }
    }

    fn wire(&self, url: &Url, timeout: Duration, e: &reqwest::Error) -> Error {
        if e.is_timeout() {
            Error::Timeout {
                source_name: self.name.clone(),
                url: url.to_string(),
                timeout,
            }
        } else {
            let mut message = e.to_string();
            let mut cur = std::error::Error::source(e);
            while let Some(s) = cur {
                message.push_str(": ");
                message.push_str(&s.to_string());
                cur = s.source();
            }
            Error::Unreachable {
                source_name: self.name.clone(),
                url: url.to_string(),
                message,
            }
        }
    }

    fn status(&self, url: &Url, status: StatusCode) -> Error {
        Error::Status {
            source_name: self.name.clone(),
            url: url.to_string(),
            status: status.as_u16(),
        }
    }

    async fn send(
        &self,
        req: RequestBuilder,
        url: &Url,
        timeout: Duration,
    ) -> Result<Response, Error> {
        tracing::debug!(source = %self.name, %url, "request");
        req.send().await.map_err(|e| self.wire(url, timeout, &e))
    }

    /// Reads a body, refusing more than `limit` bytes (told by `Content-Length` or counted).
    async fn body(
        &self,
        url: &Url,
        mut resp: Response,
        limit: u64,
        timeout: Duration,
    ) -> Result<Vec<u8>, Error> {
        let too_big = || self.malformed(url, format!("larger than {limit} bytes: refused"));
        if resp.content_length().is_some_and(|n| n > limit) {
            return Err(too_big());
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| self.wire(url, timeout, &e))?
        {
            if (body.len() + chunk.len()) as u64 > limit {
                return Err(too_big());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// GETs a small file (metadata, checksum): `None` on 404, the body on 200, else an error.
    pub(super) async fn get_small(
        &self,
        url: &Url,
        limit: usize,
    ) -> Result<Option<Vec<u8>>, Error> {
        let resp = self
            .send(
                self.request(Method::GET, url, self.timeout),
                url,
                self.timeout,
            )
            .await?;
        match resp.status() {
            StatusCode::OK => Ok(Some(
                self.body(url, resp, limit as u64, self.timeout).await?,
            )),
            StatusCode::NOT_FOUND => Ok(None),
            s => Err(self.status(url, s)),
        }
    }

    /// The artifact's size from a HEAD request, and whether the server says it takes `Range`.
    pub(super) async fn head(&self, url: &Url) -> Result<(u64, bool), Error> {
        let resp = self
            .send(
                self.request(Method::HEAD, url, self.timeout),
                url,
                self.timeout,
            )
            .await?;
        if resp.status() != StatusCode::OK {
            return Err(self.status(url, resp.status()));
        }
        // `Response::content_length` is the body's length, which a HEAD answer does not have
        let size = resp
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .ok_or_else(|| self.malformed(url, "the HEAD answer has no Content-Length"))?;
        let ranges = resp
            .headers()
            .get(reqwest::header::ACCEPT_RANGES)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"bytes"));
        Ok((size, ranges))
    }

    /// The artifact's SHA-256: from `<file>.sha256`; else computed from a download checked against
    /// `<file>.sha512`, else against `<file>.sha1` (with a warning). A file with only `<file>.md5`,
    /// or with no checksum at all, is refused.
    pub(super) async fn checksum(&self, url: &Url) -> Result<String, Error> {
        let sidecar = |ext: &str| -> Result<Url, Error> {
            let u = format!("{url}.{ext}");
            Url::parse(&u).map_err(|e| self.malformed(url, format!("cannot build {u}: {e}")))
        };
        let invalid = |field: &str, value: &str, reason: String| Error::Invalid {
            source_name: self.name.clone(),
            error: Box::new(pushguide_core::Error::invalid(field, value, reason)),
        };
        let digest = |body: Vec<u8>| -> String {
            String::from_utf8_lossy(&body)
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_owned()
        };
        let u = sidecar("sha256")?;
        if let Some(body) = self.get_small(&u, MAX_CHECKSUM_FILE).await? {
            return check_sha256(&self.name, u.as_str(), &digest(body));
        }
        let hex = |d: &str, len: usize| d.len() == len && d.chars().all(|c| c.is_ascii_hexdigit());
        let u = sidecar("sha512")?;
        let expected = if let Some(body) = self.get_small(&u, MAX_CHECKSUM_FILE).await? {
            let d = digest(body);
            if !hex(&d, 128) {
                return Err(invalid(u.as_str(), &d, "must be 128 hex digits".into()));
            }
            Expected::Sha512(d.to_ascii_lowercase())
        } else {
            let u = sidecar("sha1")?;
            if let Some(body) = self.get_small(&u, MAX_CHECKSUM_FILE).await? {
                let d = digest(body);
                if !hex(&d, 40) {
                    return Err(invalid(u.as_str(), &d, "must be 40 hex digits".into()));
                }
                tracing::warn!(source = %self.name, %url,
                    "only a SHA-1 checksum in the repository: SHA-1 is weak; publish .sha256 files");
                Expected::Sha1(d.to_ascii_lowercase())
            } else if self
                .get_small(&sidecar("md5")?, MAX_CHECKSUM_FILE)
                .await?
                .is_some()
            {
                return Err(invalid(
                    "checksum",
                    url.as_str(),
                    "the repository has only an MD5 checksum for this file, which is refused \
                     (MD5 is broken): publish .sha256 (or .sha512) files"
                        .into(),
                ));
            } else {
                return Err(invalid(
                    "checksum",
                    url.as_str(),
                    "the repository has no checksum for this file (.sha256, .sha512 or .sha1)"
                        .into(),
                ));
            }
        };
        // no SHA-256 published: download once, check the published digest, compute the SHA-256
        let mut sha256 = Sha256::new();
        let mut sha512 = Sha512::new();
        let mut sha1 = sha1::Sha1::new();
        self.download(url, |chunk| {
            sha256.update(chunk);
            match &expected {
                Expected::Sha512(_) => sha512.update(chunk),
                Expected::Sha1(_) => sha1.update(chunk),
            }
            Ok(())
        })
        .await?;
        let (got, want, kind) = match &expected {
            Expected::Sha512(w) => (hex_of(&sha512.finalize()), w, "SHA-512"),
            Expected::Sha1(w) => (hex_of(&sha1.finalize()), w, "SHA-1"),
        };
        if &got != want {
            return Err(Error::Archive {
                source_name: self.name.clone(),
                path: url.to_string(),
                message: format!(
                    "the download's {kind} {got} differs from the repository's {}",
                    shown(want)
                ),
            });
        }
        Ok(hex_of(&sha256.finalize()))
    }

    /// Streams the whole file at `url` into `sink`, refusing more than `max_download` bytes.
    async fn download(
        &self,
        url: &Url,
        mut sink: impl FnMut(&[u8]) -> Result<(), Error>,
    ) -> Result<u64, Error> {
        let t = self.download_timeout;
        let mut resp = self.send(self.request(Method::GET, url, t), url, t).await?;
        if resp.status() != StatusCode::OK {
            return Err(self.status(url, resp.status()));
        }
        let too_big = || {
            self.malformed(
                url,
                format!("larger than {} bytes: refused", self.max_download),
            )
        };
        if resp.content_length().is_some_and(|n| n > self.max_download) {
            return Err(too_big());
        }
        let mut n = 0u64;
        while let Some(chunk) = resp.chunk().await.map_err(|e| self.wire(url, t, &e))? {
            n += chunk.len() as u64;
            if n > self.max_download {
                return Err(too_big());
            }
            sink(&chunk)?;
        }
        Ok(n)
    }

    /// `len` bytes at `offset` with a `Range` request.
    ///
    /// `whole_ok`: the answer may be the whole file (the first read of an archive, where a server
    /// without `Range` support sends everything): it gets the download timeout.
    async fn range(
        &self,
        url: &Url,
        offset: u64,
        len: u64,
        whole_ok: bool,
    ) -> Result<Ranged, Error> {
        let timeout = if whole_ok {
            self.download_timeout
        } else {
            self.timeout
        };
        let req = self
            .request(Method::GET, url, timeout)
            .header(RANGE, format!("bytes={offset}-{}", offset + len - 1));
        let resp = self.send(req, url, timeout).await?;
        match resp.status() {
            StatusCode::PARTIAL_CONTENT => {
                let body = self.body(url, resp, len, timeout).await?;
                if body.len() as u64 != len {
                    return Err(self.malformed(
                        url,
                        format!("asked for {len} bytes at {offset}, got {}", body.len()),
                    ));
                }
                Ok(Ranged::Part(body))
            }
            StatusCode::OK if whole_ok => {
                tracing::debug!(source = %self.name, %url, "no Range support: reading the whole archive");
                let t = self.download_timeout;
                Ok(Ranged::Whole(
                    self.body(url, resp, self.max_download, t).await?,
                ))
            }
            StatusCode::OK => Err(self.malformed(
                url,
                "the server answered a Range request with the whole file after answering \
                 others with parts",
            )),
            s => Err(self.status(url, s)),
        }
    }

    /// The archive's entries from its zip central directory, read with ranged GETs (the end of the
    /// file, then the central directory); a server without `Range` support sends the whole file,
    /// which is read (up to `max_download` bytes) instead.
    pub(super) async fn manifest(&self, url: &Url, len: u64) -> Result<Vec<ManifestEntry>, Error> {
        let archive = |e: ListError| Error::Archive {
            source_name: self.name.clone(),
            path: url.to_string(),
            message: match e {
                ListError::Io(e) => e.to_string(),
                ListError::Format(m) => m,
            },
        };
        if len < 22 {
            return Err(archive(ListError::Format(
                "too short to be a zip archive".into(),
            )));
        }
        let tail_start = len - zip_tail_len(len);
        let tail = match self.range(url, tail_start, len - tail_start, true).await? {
            Ranged::Part(tail) => tail,
            Ranged::Whole(all) => return self.list_whole(&all).map_err(archive),
        };
        let read = |offset: u64, n: u64| self.read_at(url, &tail, tail_start, offset, n);
        let cd = match zip_end(&tail, len).map_err(archive)? {
            ZipEnd::Found(cd) => cd,
            ZipEnd::Zip64Locator(at) => {
                let record = zip64_locator(&read(at, 20).await?).map_err(archive)?;
                if record.checked_add(56).is_none_or(|e| e > len) {
                    return Err(archive(ListError::Format(
                        "the ZIP64 locator points outside the file".into(),
                    )));
                }
                zip64_end(&read(record, 56).await?).map_err(archive)?
            }
        };
        check_central_dir(&cd, len).map_err(archive)?;
        let bytes = read(cd.offset, cd.size).await?;
        central_dir_entries(&bytes, cd.count).map_err(archive)
    }

    /// `n` bytes at `offset`: from the tail already fetched when it holds them, else asked for.
    async fn read_at(
        &self,
        url: &Url,
        tail: &[u8],
        tail_start: u64,
        offset: u64,
        n: u64,
    ) -> Result<Vec<u8>, Error> {
        if n == 0 {
            return Ok(Vec::new());
        }
        if offset >= tail_start && offset + n <= tail_start + tail.len() as u64 {
            let at = (offset - tail_start) as usize;
            return Ok(tail[at..at + n as usize].to_vec());
        }
        match self.range(url, offset, n, false).await? {
            Ranged::Part(b) => Ok(b),
            Ranged::Whole(_) => {
                Err(self.malformed(url, "the server stopped answering Range requests"))
            }
        }
    }

    fn list_whole(&self, all: &[u8]) -> Result<Vec<ManifestEntry>, ListError> {
        list_zip_with(all.len() as u64, |offset, n| {
            let start = offset as usize;
            all.get(start..start + n)
                .map(<[u8]>::to_vec)
                .ok_or_else(|| ListError::Format("a zip record lies outside the file".into()))
        })
    }

    /// Copies the file at `url` to `dest` (through a temporary file beside it), checking its
    /// SHA-256; a `dest` already holding the right bytes is kept.
    pub(super) async fn copy_to(&self, url: &Url, dest: &Path, sha256: &str) -> Result<(), Error> {
        let io = |path: &Path, error: std::io::Error| Error::Io {
            source_name: self.name.clone(),
            path: path.display().to_string(),
            error,
        };
        if let Ok(existing) = tokio::fs::read(dest).await {
            if hex_of(&Sha256::digest(&existing)) == sha256 {
                tracing::debug!(source = %self.name, dest = %dest.display(), "already staged");
                return Ok(());
            }
        }
        let dir = dest.parent().unwrap_or(Path::new("."));
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| io(dir, e))?;
        let part = dest.with_extension(format!("part-{}", std::process::id()));
        let mut file = tokio::fs::File::create(&part)
            .await
            .map_err(|e| io(&part, e))?;
        let t = self.download_timeout;
        let result = async {
            let mut resp = self.send(self.request(Method::GET, url, t), url, t).await?;
            if resp.status() != StatusCode::OK {
                return Err(self.status(url, resp.status()));
            }
            let mut hasher = Sha256::new();
            let mut n = 0u64;
            while let Some(chunk) = resp.chunk().await.map_err(|e| self.wire(url, t, &e))? {
                n += chunk.len() as u64;
                if n > self.max_download {
                    return Err(self.malformed(
                        url,
                        format!("larger than {} bytes: refused", self.max_download),
                    ));
                }
                hasher.update(&chunk);
                file.write_all(&chunk).await.map_err(|e| io(&part, e))?;
            }
            file.flush().await.map_err(|e| io(&part, e))?;
            let got = hex_of(&hasher.finalize());
            if got != sha256 {
                return Err(Error::Archive {
                    source_name: self.name.clone(),
                    path: url.to_string(),
                    message: format!("the download's SHA-256 {got} differs from {sha256}"),
                });
            }
            Ok(())
        }
        .await;
        drop(file);
        match result {
            Ok(()) => {
                tokio::fs::rename(&part, dest)
                    .await
                    .map_err(|e| io(dest, e))?;
                tracing::info!(source = %self.name, dest = %dest.display(), "artifact staged");
                Ok(())
            }
            Err(e) => {
                let _ = tokio::fs::remove_file(&part).await;
                Err(e)
            }
        }
    }
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
