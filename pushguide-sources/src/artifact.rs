//! The artifact-source trait and what its implementations share: ordering, validation of CI values.

use std::sync::Arc;

use async_trait::async_trait;
use pushguide_core::steps::version_cmp;
use pushguide_core::{validate, Artifact};

use crate::error::{shown, Error};

/// Where the versions of a template and their artifacts come from (a CI system, a directory).
///
/// `template` is the template's name ([`pushguide_core::Template::name`]). Both methods validate what
/// they are given and what the source returns: a version that fails
/// [`pushguide_core::validate::version`] is an [`Error::InvalidVersion`] naming the source and the
/// version, never a value passed on to a minion.
///
/// ```no_run
/// # async fn f() -> Result<(), pushguide_sources::Error> {
/// use pushguide_sources::{ArtifactSource, HttpIndexSource};
///
/// let ci = HttpIndexSource::new("https://ci.example.com/artifacts/")?;
/// let versions = ci.versions("shop-web").await?;          // newest first
/// let artifact = ci.resolve("shop-web", &versions[0]).await?;
/// // engine.deploy(Request::new(template, &versions[0], principal).artifact(artifact))
/// # let _ = artifact; Ok(()) }
/// ```
#[async_trait]
pub trait ArtifactSource: Send + Sync + std::fmt::Debug {
    /// A short description for messages: the index URL or the directory.
    fn name(&self) -> &str;

    /// The template's versions, newest first.
    async fn versions(&self, template: &str) -> Result<Vec<String>, Error>;

    /// The artifact of one version: URL, SHA-256, size and manifest where the source knows them.
    async fn resolve(&self, template: &str, version: &str) -> Result<Artifact, Error>;

    /// Makes `artifact` (as [`resolve`](ArtifactSource::resolve) returned it) fetchable at its
    /// URL by the minions. Called once before a deployment sends anything to salt (not for a plan
    /// or a dry run). The default does nothing: the minions fetch from the source itself.
    /// [`MavenSource`](crate::MavenSource) with a staging directory copies the file there.
    async fn stage(&self, template: &str, version: &str, artifact: &Artifact) -> Result<(), Error> {
        let _ = (template, version, artifact);
        Ok(())
    }
}

#[async_trait]
impl<T: ArtifactSource + ?Sized> ArtifactSource for Box<T> {
    fn name(&self) -> &str {
        (**self).name()
    }
    async fn versions(&self, template: &str) -> Result<Vec<String>, Error> {
        (**self).versions(template).await
    }
    async fn resolve(&self, template: &str, version: &str) -> Result<Artifact, Error> {
        (**self).resolve(template, version).await
    }
    async fn stage(&self, template: &str, version: &str, artifact: &Artifact) -> Result<(), Error> {
        (**self).stage(template, version, artifact).await
    }
}

#[async_trait]
impl<T: ArtifactSource + ?Sized> ArtifactSource for Arc<T> {
    fn name(&self) -> &str {
        (**self).name()
    }
    async fn versions(&self, template: &str) -> Result<Vec<String>, Error> {
        (**self).versions(template).await
    }
    async fn resolve(&self, template: &str, version: &str) -> Result<Artifact, Error> {
        (**self).resolve(template, version).await
    }
    async fn stage(&self, template: &str, version: &str, artifact: &Artifact) -> Result<(), Error> {
        (**self).stage(template, version, artifact).await
    }
}

/// Checks a template name before it becomes part of a URL or a path.
pub(crate) fn check_template(source: &str, template: &str) -> Result<(), Error> {
    validate::name("template", template).map_err(|error| Error::Invalid {
        source_name: source.to_owned(),
        error: Box::new(error),
    })
}

/// Checks a version (asked for, or listed by a source).
pub(crate) fn check_version(source: &str, template: &str, version: &str) -> Result<(), Error> {
    validate::version("version", version).map_err(|error| Error::InvalidVersion {
        source_name: source.to_owned(),
        template: template.to_owned(),
        version: shown(version),
        error: Box::new(error),
    })
}

/// Checks a SHA-256 from a source and returns it in lower case.
pub(crate) fn check_sha256(source: &str, field: &str, sha: &str) -> Result<String, Error> {
    if sha.len() == 64 && sha.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(sha.to_ascii_lowercase())
    } else {
        Err(Error::Invalid {
            source_name: source.to_owned(),
            error: Box::new(pushguide_core::Error::invalid(
                field,
                shown(sha),
                "must be 64 hex digits",
            )),
        })
    }
}

/// Checks an artifact URL before minions are told to fetch it: `http`, `https` or `salt` only, and no
/// character a shell or a salt argument could misread.
pub(crate) fn check_artifact_url(source: &str, field: &str, url: &str) -> Result<(), Error> {
    let bad = |reason: String| Error::Invalid {
        source_name: source.to_owned(),
        error: Box::new(pushguide_core::Error::invalid(field, shown(url), reason)),
    };
    if !["http://", "https://", "salt://"]
        .iter()
        .any(|s| url.starts_with(s))
    {
        return Err(bad("must be an http://, https:// or salt:// URL".into()));
    }
    if url.len() > 4096 {
        return Err(bad("longer than 4096 bytes".into()));
    }
    if let Some(c) = url
        .chars()
        .find(|c| c.is_control() || c.is_whitespace() || "\"'`$;|&<>\\".contains(*c))
    {
        return Err(bad(format!("contains {c:?}")));
    }
    Ok(())
}

/// Orders `(version, published)` pairs newest first: by `published` when every entry has one (ties by
/// version), otherwise by natural version order.
pub(crate) fn sort_newest_first<T>(
    items: &mut [T],
    version: impl Fn(&T) -> &str,
    published: impl Fn(&T) -> Option<i64>,
) {
    let all_published = items.iter().all(|i| published(i).is_some());
    items.sort_by(|a, b| {
        let by_version = version_cmp(version(b), version(a));
        if all_published {
            published(b).cmp(&published(a)).then(by_version)
        } else {
            by_version
        }
    });
}

/// Parses an RFC 3339 timestamp (`2025-03-01T12:00:00Z`, `2025-03-01T12:00:00.5+02:00`, or a date
/// `2025-03-01`) into milliseconds since the Unix epoch, UTC.
pub(crate) fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return None;
    }
    let days = days_from_civil(y, mo, d);
    if b.len() == 10 {
        return Some(days * 86_400_000);
    }
    if b.len() < 20 || !matches!(b[10], b'T' | b't' | b' ') || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut millis = 0;
    if b[i] == b'.' {
        let start = i + 1;
        i = start;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return None;
        }
        let frac = &s[start..i.min(start + 3)];
        millis = frac.parse::<i64>().ok()? * 10_i64.pow(3 - frac.len() as u32);
    }
    let offset_min = match &s[i..] {
        "Z" | "z" => 0,
        rest if rest.len() == 6 && matches!(&rest[..1], "+" | "-") && &rest[3..4] == ":" => {
            let oh: i64 = rest[1..3].parse().ok()?;
            let om: i64 = rest[4..6].parse().ok()?;
            let m = oh * 60 + om;
            if rest.starts_with('-') {
                -m
            } else {
                m
            }
        }
        _ => return None,
    };
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset_min * 60;
    Some(secs * 1000 + millis)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("1970-01-02"), Some(86_400_000));
        assert_eq!(
            parse_rfc3339("2025-03-01T12:00:00+02:00"),
            parse_rfc3339("2025-03-01T10:00:00Z")
        );
        assert_eq!(
            parse_rfc3339("2025-03-01T10:00:00.25Z"),
            parse_rfc3339("2025-03-01T10:00:00Z").map(|m| m + 250)
        );
        assert_eq!(parse_rfc3339("2000-03-01T00:00:00Z"), Some(951_868_800_000));
        for bad in [
            "",
            "yesterday",
            "2025-13-01",
            "2025-03-01T10:00:00",
            "2025-03-01T10:00Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn ordering() {
        let mut v = vec![("1.9", None), ("1.10", None), ("1.2", Some(5))];
        sort_newest_first(&mut v, |x| x.0, |x| x.1);
        assert_eq!(
            v.iter().map(|x| x.0).collect::<Vec<_>>(),
            ["1.10", "1.9", "1.2"]
        );
        let mut v = vec![("1.9", Some(3)), ("1.10", Some(1)), ("1.2", Some(5))];
        sort_newest_first(&mut v, |x| x.0, |x| x.1);
        assert_eq!(
            v.iter().map(|x| x.0).collect::<Vec<_>>(),
            ["1.2", "1.9", "1.10"]
        );
    }
}
