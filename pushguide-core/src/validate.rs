//! Grammars for untrusted values: versions, names, minion ids and paths.
//!
//! Every value that comes from a user, a template or a CI system is checked here before the first salt
//! call. Values then travel as separate salt arguments, never spliced into a shell string; the grammar is
//! a second line of defence and keeps logs and file names sane.

use crate::error::Error;

/// Longest accepted version string.
pub const MAX_VERSION_LEN: usize = 128;
/// Longest accepted template or kind name.
pub const MAX_NAME_LEN: usize = 64;
/// Longest accepted minion id (a DNS name's limit).
pub const MAX_MINION_ID_LEN: usize = 253;
/// Longest accepted path.
pub const MAX_PATH_LEN: usize = 1024;

/// Characters that have a meaning to a shell, a salt target expression or a Windows command line.
const SHELL_META: &[char] = &[
    '$', '`', ';', '|', '&', '<', '>', '(', ')', '{', '}', '[', ']', '*', '?', '!', '\'', '"', '~',
    '#', '%', '^', '=', ',', '@',
];

fn invalid(field: &str, value: &str, reason: impl Into<String>) -> Error {
    Error::Invalid {
        field: field.to_owned(),
        value: shown(value),
        reason: reason.into(),
    }
}

/// A printable, bounded rendering of a rejected value for error messages.
fn shown(value: &str) -> String {
    let mut out: String = value
        .chars()
        .take(80)
        .flat_map(char::escape_debug)
        .collect();
    if value.chars().count() > 80 {
        out.push('…');
    }
    out
}

fn common(field: &str, value: &str, max: usize) -> Result<(), Error> {
    if value.is_empty() {
        return Err(invalid(field, value, "must not be empty"));
    }
    if value.len() > max {
        return Err(invalid(field, value, format!("longer than {max} bytes")));
    }
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Err(invalid(
            field,
            value,
            format!("contains the control character {:?}", c),
        ));
    }
    if let Some(c) = value.chars().find(|c| SHELL_META.contains(c)) {
        return Err(invalid(
            field,
            value,
            format!("contains the shell metacharacter {c:?}"),
        ));
    }
    Ok(())
}

/// A release version: `[A-Za-z0-9][A-Za-z0-9._+-]*`, at most [`MAX_VERSION_LEN`] bytes, no `..`.
///
/// ```
/// use pushguide_core::validate::version;
/// assert!(version("version", "2.4.1-rc.1+build7").is_ok());
/// assert!(version("version", "1.0;rm -rf /").is_err());
/// assert!(version("version", "../../etc").is_err());
/// ```
pub fn version(field: &str, value: &str) -> Result<(), Error> {
    common(field, value, MAX_VERSION_LEN)?;
    if value.contains("..") {
        return Err(invalid(field, value, "must not contain `..`"));
    }
    let mut chars = value.chars();
    if !chars.next().is_some_and(|c| c.is_ascii_alphanumeric()) {
        return Err(invalid(field, value, "must start with a letter or digit"));
    }
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-')))
    {
        return Err(invalid(
            field,
            value,
            format!("{c:?} is not allowed (letters, digits, `.`, `_`, `+`, `-`)"),
        ));
    }
    Ok(())
}

/// A template, kind, user or group name: `[A-Za-z0-9][A-Za-z0-9._-]*`, at most [`MAX_NAME_LEN`] bytes.
pub fn name(field: &str, value: &str) -> Result<(), Error> {
    common(field, value, MAX_NAME_LEN)?;
    if value.contains("..") {
        return Err(invalid(field, value, "must not contain `..`"));
    }
    if !value.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(invalid(field, value, "must start with a letter or digit"));
    }
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(invalid(
            field,
            value,
            format!("{c:?} is not allowed (letters, digits, `.`, `_`, `-`)"),
        ));
    }
    Ok(())
}

/// A salt minion id: letters, digits, `.`, `_`, `-`, at most [`MAX_MINION_ID_LEN`] bytes.
pub fn minion_id(field: &str, value: &str) -> Result<(), Error> {
    common(field, value, MAX_MINION_ID_LEN)?;
    if value.contains("..") {
        return Err(invalid(field, value, "must not contain `..`"));
    }
    if !value.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(invalid(field, value, "must start with a letter or digit"));
    }
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(invalid(
            field,
            value,
            format!("{c:?} is not allowed in a minion id"),
        ));
    }
    Ok(())
}

/// An absolute path on a minion, POSIX (`/opt/app`) or Windows (`C:\apps\site`).
///
/// Rejected: relative paths, `..` components, control characters, shell metacharacters, over-long values.
///
/// ```
/// use pushguide_core::validate::path;
/// assert!(path("paths.root", "/opt/shop/releases").is_ok());
/// assert!(path("paths.root", r"D:\Sites\shop web").is_ok());
/// assert!(path("paths.root", "/opt/../etc").is_err());
/// assert!(path("paths.root", "opt/app").is_err());
/// ```
pub fn path(field: &str, value: &str) -> Result<(), Error> {
    common(field, value, MAX_PATH_LEN)?;
    let bytes = value.as_bytes();
    let windows = bytes.len() >= 3
        && bytes[0].is_ascii_alphabetic()
        && bytes[1] == b':'
        && (bytes[2] == b'\\' || bytes[2] == b'/');
    if !(value.starts_with('/') || windows) {
        return Err(invalid(
            field,
            value,
            "must be absolute (`/…` or a drive such as `C:\\…`)",
        ));
    }
    let rest = if windows { &value[2..] } else { value };
    if rest.contains(':') {
        return Err(invalid(
            field,
            value,
            "`:` is only allowed after a drive letter",
        ));
    }
    if rest.split(['/', '\\']).any(|part| part == "..") {
        return Err(invalid(field, value, "must not contain a `..` component"));
    }
    if rest.contains("\\\\") && !windows {
        return Err(invalid(field, value, "must not contain `\\\\`"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_values_are_rejected_with_field_and_reason() {
        let hostile = [
            "1.0; rm -rf /",
            "$(reboot)",
            "`id`",
            "a|b",
            "a&&b",
            "v1\n",
            "v1\0",
            "../x",
            "..",
            "",
            "-rf",
            "a b",
        ];
        for bad in hostile {
            let err = version("release.version", bad).expect_err(bad);
            let text = err.to_string();
            assert!(text.contains("release.version"), "{text}");
        }
        assert!(version("v", &"1".repeat(MAX_VERSION_LEN + 1)).is_err());
        assert!(version("v", &"1".repeat(MAX_VERSION_LEN)).is_ok());
    }

    #[test]
    fn names_and_minions() {
        assert!(name("name", "shop-web_2").is_ok());
        assert!(name("name", "shop web").is_err());
        assert!(name("name", "a/b").is_err());
        assert!(minion_id("m", "web-01.dc1.example.com").is_ok());
        assert!(minion_id("m", "web*").is_err());
        assert!(minion_id("m", "web-01,web-02").is_err());
        assert!(minion_id("m", "-E").is_err());
    }

    #[test]
    fn paths() {
        assert!(path("p", "/srv/app/releases").is_ok());
        assert!(path("p", "C:\\inetpub\\shop").is_ok());
        assert!(path("p", "C:/inetpub/shop").is_ok());
        for bad in [
            "relative",
            "/a/../b",
            "C:\\a\\..\\b",
            "/a;b",
            "/a\nb",
            "/a$HOME",
            "/a:b",
            "\\\\server\\share",
        ] {
            assert!(path("p", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn error_shows_escaped_bounded_value() {
        let err = version("v", "a\u{7}b").unwrap_err().to_string();
        assert!(err.contains("a\\u{7}b"), "{err}");
        let long = format!("{}\n", "x".repeat(500));
        let err = version("v", &long).unwrap_err().to_string();
        assert!(err.len() < 400, "{err}");
    }
}
