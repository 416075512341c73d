//! Grammars for untrusted values: versions, names, minion ids, paths, URLs, argv commands, target
//! expressions and durations, plus [`quote`], the one way an error message echoes a value.
//!
//! Every value that comes from a user, a template or a CI system is checked here before the first salt
//! call. Values then travel as separate salt arguments, never spliced into a shell string; the grammar is
//! a second line of defence and keeps logs and file names sane.
//!
//! No grammar accepts control characters (C0, C1, DEL) or invisible characters: every Unicode format
//! character (`General_Category=Cf`, e.g. the bidirectional overrides U+202A–U+202E and isolates
//! U+2066–U+2069, the zero-width characters U+200B–U+200D and U+2060, the byte order mark U+FEFF, tag
//! characters), variation selectors, the line and paragraph separators and the other default-ignorable
//! fillers. See [`is_hidden`].

use std::time::Duration;

use crate::vocab::error::Error;
pub use crate::vocab::text::{clean, is_format, is_hidden, quote, MAX_SHOWN_CHARS};

/// Longest accepted version string.
pub const MAX_VERSION_LEN: usize = 128;
/// Longest accepted template or kind name.
pub const MAX_NAME_LEN: usize = 64;
/// Longest accepted minion id (a DNS name's limit).
pub const MAX_MINION_ID_LEN: usize = 253;
/// Longest accepted path.
pub const MAX_PATH_LEN: usize = 1024;
/// Longest accepted URL.
pub const MAX_URL_LEN: usize = 2048;
/// Longest accepted salt target expression.
pub const MAX_EXPRESSION_LEN: usize = 1024;
/// Longest accepted argument of an argv command.
pub const MAX_ARG_LEN: usize = 1024;
/// Most arguments (program included) of an argv command.
pub const MAX_ARGS: usize = 64;

// Template bounds (checked by `Template::from_toml_str` / `Template::validate`).

/// Largest template accepted, in bytes (4 MiB): a template listing 100,000 minions takes about 1.2 MiB;
/// a bigger file is refused before it is parsed.
pub const MAX_TEMPLATE_BYTES: usize = 4 * 1024 * 1024;
/// Most hosts a template may name: entries of `[targets] minions`, and `[project.hosts.<id>]` tables.
pub const MAX_HOSTS: usize = 100_000;
/// Longest string value anywhere in a template, in bytes.
pub const MAX_VALUE_BYTES: usize = 16 * 1024;
/// Longest table key anywhere in a template, in bytes (a minion id is at most 253).
pub const MAX_KEY_BYTES: usize = 256;
/// Most elements of any array in a template.
pub const MAX_ARRAY_LEN: usize = MAX_HOSTS;
/// Deepest nesting of tables and arrays in a template.
pub const MAX_DEPTH: usize = 16;
/// Longest `description`, in bytes.
pub const MAX_DESCRIPTION_LEN: usize = 4096;
/// Longest `[health] body_contains`, in bytes.
pub const MAX_BODY_CONTAINS_LEN: usize = 1024;
/// Most `[health] retries`.
pub const MAX_HEALTH_RETRIES: u32 = 100;
/// Longest `[health] interval_secs`.
pub const MAX_HEALTH_INTERVAL_SECS: u64 = 300;
/// Longest `[health] timeout_secs`.
pub const MAX_HEALTH_TIMEOUT_SECS: u64 = 3600;

/// URL schemes of URLs probed or requested from a minion (health checks, warm-up).
pub const HTTP_SCHEMES: &[&str] = &["http://", "https://"];
/// URL schemes of artifacts minions fetch (`cp.get_url`).
pub const ARTIFACT_SCHEMES: &[&str] = &["http://", "https://", "salt://"];

/// Characters that have a meaning to a shell, a salt target expression or a Windows command line.
const SHELL_META: &[char] = &[
    '$', '`', ';', '|', '&', '<', '>', '(', ')', '{', '}', '[', ']', '*', '?', '!', '\'', '"', '~',
    '#', '%', '^', '=', ',', '@',
];

/// Characters never accepted in a URL: shell and quoting characters (`{` and `}` stay allowed for the
/// `{version}` placeholder, `[` and `]` for IPv6 hosts).
const URL_FORBIDDEN: &[char] = &[
    '"', '\'', '`', '$', ';', '|', '&', '<', '>', '\\', '(', ')', '^',
];

/// Characters never accepted in a salt target expression (salt's compound matcher needs `@`, `*`, `(`…).
const EXPRESSION_FORBIDDEN: &[char] = &['$', '`', ';', '|', '&', '<', '>', '\'', '"', '\\'];

/// A character for a reason text: `'x'`, or `U+202E` for characters that cannot be shown.
fn ch(c: char) -> String {
    if is_hidden(c) || c.is_whitespace() {
        format!("U+{:04X}", u32::from(c))
    } else {
        format!("{c:?}")
    }
}

fn invalid(field: &str, value: &str, reason: impl Into<String>) -> Error {
    Error::invalid(field, value, reason)
}

/// Refuses control and invisible characters ([`is_hidden`]).
fn visible(field: &str, value: &str) -> Result<(), Error> {
    // printable ASCII (the common case: ids, versions, paths) holds no hidden character
    if value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Ok(());
    }
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Err(invalid(
            field,
            value,
            format!("contains the control character {}", ch(c)),
        ));
    }
    if let Some(c) = value.chars().find(|c| is_hidden(*c)) {
        return Err(invalid(
            field,
            value,
            format!(
                "contains the invisible or bidirectional formatting character {}",
                ch(c)
            ),
        ));
    }
    Ok(())
}

fn common(field: &str, value: &str, max: usize) -> Result<(), Error> {
    if value.is_empty() {
        return Err(invalid(field, value, "must not be empty"));
    }
    if value.len() > max {
        return Err(invalid(field, value, format!("longer than {max} bytes")));
    }
    visible(field, value)?;
    if let Some(c) = value.chars().find(|c| SHELL_META.contains(c)) {
        return Err(invalid(
            field,
            value,
            format!("contains the shell metacharacter {}", ch(c)),
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
/// assert!(version("version", "1.0\u{202e}").is_err());
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
            format!(
                "{} is not allowed (letters, digits, `.`, `_`, `+`, `-`)",
                ch(c)
            ),
        ));
    }
    Ok(())
}

/// A template, kind, user, group or service name: `[A-Za-z0-9][A-Za-z0-9._-]*`, at most
/// [`MAX_NAME_LEN`] bytes.
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
            format!("{} is not allowed (letters, digits, `.`, `_`, `-`)", ch(c)),
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
            format!("{} is not allowed in a minion id", ch(c)),
        ));
    }
    Ok(())
}

/// An absolute path on a minion, POSIX (`/opt/app`) or Windows (`C:\apps\site`).
///
/// Rejected: relative paths, `..` components, control and invisible characters ([`is_hidden`]), shell
/// metacharacters, values over [`MAX_PATH_LEN`] bytes.
///
/// ```
/// use pushguide_core::validate::path;
/// assert!(path("paths.root", "/opt/shop/releases").is_ok());
/// assert!(path("paths.root", r"D:\Sites\shop web").is_ok());
/// assert!(path("paths.root", "/opt/../etc").is_err());
/// assert!(path("paths.root", "opt/app").is_err());
/// assert!(path("paths.root", "/opt/shop/releases/1.0\u{202e}rav.").is_err());
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

/// A URL a minion requests: one of `schemes` (e.g. [`HTTP_SCHEMES`], [`ARTIFACT_SCHEMES`]) followed by
/// a host (or, for `salt://`, a file server path), at most [`MAX_URL_LEN`] bytes, without whitespace,
/// control or invisible characters ([`is_hidden`]) or the shell and quoting characters
/// `" ' ` $ ; | & < > \ ( ) ^`. `{` and `}` are allowed (the `{version}` placeholder of artifact URLs).
/// Every URL key of every template goes through this one grammar.
///
/// ```
/// use pushguide_core::validate::{url, ARTIFACT_SCHEMES, HTTP_SCHEMES};
/// assert!(url("health.url", "http://127.0.0.1:8080/shop/health?full=1", HTTP_SCHEMES).is_ok());
/// assert!(url("project.artifact_url", "salt://artifacts/{version}/shop.war", ARTIFACT_SCHEMES).is_ok());
/// assert!(url("health.url", "http://127.0.0.1/$(id)", HTTP_SCHEMES).is_err());
/// assert!(url("health.url", "http://127.0.0.1/\u{202e}lmth.x", HTTP_SCHEMES).is_err());
/// assert!(url("health.url", "salt://x/y", HTTP_SCHEMES).is_err());
/// assert!(url("health.url", "http://", HTTP_SCHEMES).is_err());
/// ```
pub fn url(field: &str, value: &str, schemes: &[&str]) -> Result<(), Error> {
    if value.is_empty() {
        return Err(invalid(field, value, "must not be empty"));
    }
    if value.len() > MAX_URL_LEN {
        return Err(invalid(
            field,
            value,
            format!("longer than {MAX_URL_LEN} bytes"),
        ));
    }
    visible(field, value)?;
    let Some(rest) = schemes.iter().find_map(|s| value.strip_prefix(s)) else {
        return Err(invalid(
            field,
            value,
            format!("must be a URL starting with {}", schemes.join(", ")),
        ));
    };
    if rest.is_empty() || rest.starts_with('/') {
        return Err(invalid(field, value, "names no host after the scheme"));
    }
    if let Some(c) = value.chars().find(|c| c.is_whitespace()) {
        return Err(invalid(
            field,
            value,
            format!("contains the white space {}", ch(c)),
        ));
    }
    if let Some(c) = value.chars().find(|c| URL_FORBIDDEN.contains(c)) {
        return Err(invalid(
            field,
            value,
            format!("contains the shell or quoting character {}", ch(c)),
        ));
    }
    Ok(())
}

/// A command run without a shell (`cmd.run_all` with a list): the program is an absolute [`path`];
/// the other arguments may hold any visible text (they are not parsed by a shell) up to
/// [`MAX_ARG_LEN`] bytes each, no control or invisible characters ([`is_hidden`]); at most
/// [`MAX_ARGS`] arguments.
///
/// ```
/// use pushguide_core::validate::argv;
/// let ok = ["/opt/tomcat/bin/shutdown.sh".to_owned(), "-force".to_owned()];
/// assert!(argv("project.stop_command", &ok).is_ok());
/// assert!(argv("project.stop_command", &[]).is_err());
/// assert!(argv("project.stop_command", &["bin/x".to_owned()]).is_err());
/// assert!(argv("project.stop_command", &["/bin/x".to_owned(), "a\u{2066}b".to_owned()]).is_err());
/// ```
pub fn argv(field: &str, argv: &[String]) -> Result<(), Error> {
    let Some(program) = argv.first() else {
        return Err(invalid(field, "[]", "must name a program"));
    };
    if argv.len() > MAX_ARGS {
        return Err(invalid(
            field,
            &format!("[{} arguments]", argv.len()),
            format!("more than {MAX_ARGS} arguments"),
        ));
    }
    path(&format!("{field}[0]"), program)?;
    for (i, a) in argv.iter().enumerate().skip(1) {
        let f = format!("{field}[{i}]");
        if a.len() > MAX_ARG_LEN {
            return Err(invalid(&f, a, format!("longer than {MAX_ARG_LEN} bytes")));
        }
        visible(&f, a)?;
    }
    Ok(())
}

/// A salt target expression (glob, grain, pcre, compound, …): salt's matcher syntax is allowed, shell
/// and quoting characters (`$ ` ; | & < > ' " \`), control and invisible characters ([`is_hidden`])
/// are not; at most [`MAX_EXPRESSION_LEN`] bytes.
///
/// ```
/// use pushguide_core::validate::target_expression;
/// assert!(target_expression("targets.expression", "G@role:web and web-*").is_ok());
/// assert!(target_expression("targets.expression", "web-*;reboot").is_err());
/// assert!(target_expression("targets.expression", "web-\u{200b}*").is_err());
/// ```
pub fn target_expression(field: &str, value: &str) -> Result<(), Error> {
    if value.trim().is_empty() {
        return Err(invalid(field, value, "must not be empty"));
    }
    if value.len() > MAX_EXPRESSION_LEN {
        return Err(invalid(
            field,
            value,
            format!("longer than {MAX_EXPRESSION_LEN} bytes"),
        ));
    }
    visible(field, value)?;
    if let Some(c) = value.chars().find(|c| EXPRESSION_FORBIDDEN.contains(c)) {
        return Err(invalid(
            field,
            value,
            format!("contains the shell or quoting character {}", ch(c)),
        ));
    }
    Ok(())
}

/// Free text that reaches a minion or a log (a body to look for, a page text): at most `max` bytes, no
/// control characters except `\n` when `newlines` is set, no invisible characters ([`is_hidden`]).
pub fn text(field: &str, value: &str, max: usize, newlines: bool) -> Result<(), Error> {
    if value.len() > max {
        return Err(invalid(field, value, format!("longer than {max} bytes")));
    }
    if let Some(c) = value
        .chars()
        .find(|&c| is_hidden(c) && !(newlines && c == '\n'))
    {
        return Err(invalid(
            field,
            value,
            format!("contains the control or invisible character {}", ch(c)),
        ));
    }
    Ok(())
}

/// A number of seconds within `min..=max`, as a [`Duration`]. Every duration a template or a config
/// gives goes through a bound like this, so that no deadline computed from it can overflow.
///
/// ```
/// use pushguide_core::validate::duration_secs;
/// use std::time::Duration;
/// assert_eq!(duration_secs("health.timeout_secs", 60, 1, 3600).unwrap(), Duration::from_secs(60));
/// let err = duration_secs("health.timeout_secs", u64::MAX, 1, 3600).unwrap_err();
/// assert!(err.to_string().contains("health.timeout_secs"));
/// ```
pub fn duration_secs(field: &str, value: u64, min: u64, max: u64) -> Result<Duration, Error> {
    if !(min..=max).contains(&value) {
        return Err(Error::invalid(
            field,
            value,
            format!("must be between {min} and {max} seconds"),
        ));
    }
    Ok(Duration::from_secs(value))
}

/// A number within `min..=max` (counts, sizes).
pub fn range(field: &str, value: u64, min: u64, max: u64) -> Result<(), Error> {
    if !(min..=max).contains(&value) {
        return Err(Error::invalid(
            field,
            value,
            format!("must be between {min} and {max}"),
        ));
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
        assert!(path("p", "/srv/café/releases").is_ok());
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

    /// The Cf table agrees with every `General_Category=Cf` code point of Unicode 16.0 (listed here
    /// one by one from the UCD, independently of the ranges above) and with nothing around them.
    #[test]
    fn format_table_matches_the_ucd() {
        let cf: &[u32] = &[
            0xAD, 0x600, 0x601, 0x602, 0x603, 0x604, 0x605, 0x61C, 0x6DD, 0x70F, 0x890, 0x891,
            0x8E2, 0x180E, 0x200B, 0x200C, 0x200D, 0x200E, 0x200F, 0x202A, 0x202B, 0x202C, 0x202D,
            0x202E, 0x2060, 0x2061, 0x2062, 0x2063, 0x2064, 0x2066, 0x2067, 0x2068, 0x2069, 0x206A,
            0x206B, 0x206C, 0x206D, 0x206E, 0x206F, 0xFEFF, 0xFFF9, 0xFFFA, 0xFFFB, 0x110BD,
            0x110CD, 0x1BCA0, 0x1BCA1, 0x1BCA2, 0x1BCA3, 0x1D173, 0x1D174, 0x1D175, 0x1D176,
            0x1D177, 0x1D178, 0x1D179, 0x1D17A, 0xE0001,
        ];
        let mut expected: Vec<u32> = cf.to_vec();
        expected.extend(0x13430..=0x1343F);
        expected.extend(0xE0020..=0xE007F);
        let found: Vec<u32> = (0..=0x10FFFFu32)
            .filter_map(char::from_u32)
            .filter(|c| is_format(*c))
            .map(u32::from)
            .collect();
        expected.sort_unstable();
        assert_eq!(found, expected);
    }

    #[test]
    fn invisible_and_bidi_characters_are_refused_by_every_grammar() {
        let hidden = [
            '\u{202E}',
            '\u{202A}',
            '\u{2066}',
            '\u{2069}',
            '\u{200E}',
            '\u{200F}',
            '\u{061C}',
            '\u{200B}',
            '\u{200D}',
            '\u{2060}',
            '\u{FEFF}',
            '\u{00AD}',
            '\u{FE0F}',
            '\u{E0100}',
            '\u{E0041}',
            '\u{1B}',
            '\u{7F}',
            '\u{85}',
            '\u{9B}',
            '\u{2028}',
            '\u{3164}',
        ];
        let args = |a: &str| vec!["/opt/tomcat/bin/startup.sh".to_owned(), a.to_owned()];
        for c in hidden {
            let v = format!("web{c}01");
            assert!(version("f", &v).is_err(), "{c:?}");
            assert!(name("f", &v).is_err(), "{c:?}");
            assert!(minion_id("f", &v).is_err(), "{c:?}");
            assert!(
                path("f", &format!("/srv/shop/releases/{v}")).is_err(),
                "{c:?}"
            );
            assert!(path("f", &format!("D:\\Sites\\{v}")).is_err(), "{c:?}");
            assert!(
                url("f", &format!("http://{v}/health"), HTTP_SCHEMES).is_err(),
                "{c:?}"
            );
            assert!(
                url("f", &format!("salt://a/{v}"), ARTIFACT_SCHEMES).is_err(),
                "{c:?}"
            );
            assert!(argv("f", &args(&v)).is_err(), "{c:?}");
            assert!(target_expression("f", &format!("{v}*")).is_err(), "{c:?}");
            assert!(text("f", &v, 100, true).is_err(), "{c:?}");
            let msg = path("f", &format!("/srv/{v}")).unwrap_err().to_string();
            assert!(!msg.contains(c), "raw {c:?} in {msg}");
        }
        assert!(argv("f", &args("--name=shop web")).is_ok());
        assert!(text("f", "line\nline", 100, true).is_ok());
        assert!(text("f", "line\nline", 100, false).is_err());
    }

    #[test]
    fn one_url_grammar() {
        for bad in [
            "http://127.0.0.1/$(id)",
            "http://127.0.0.1/`id`",
            "http://a/ b",
            "http://a/\u{202e}x",
            "http://a/x\"y",
            "ftp://a/",
            "http://",
            "http:///x",
            "HTTP//x",
        ] {
            assert!(url("health.url", bad, HTTP_SCHEMES).is_err(), "{bad}");
        }
        assert!(url(
            "u",
            &format!("http://a/{}", "x".repeat(MAX_URL_LEN)),
            HTTP_SCHEMES
        )
        .is_err());
        assert!(url("u", "http://[::1]:8080/a?b=c&d=e", HTTP_SCHEMES).is_err());
        assert!(url("u", "http://[::1]:8080/a?b=c", HTTP_SCHEMES).is_ok());
    }

    #[test]
    fn durations_are_bounded() {
        let err = duration_secs("health.timeout_secs", 9_223_372_036_854_775_807, 1, 3600)
            .unwrap_err()
            .to_string();
        assert!(err.contains("health.timeout_secs"), "{err}");
        assert!(err.contains("between 1 and 3600"), "{err}");
        assert!(duration_secs("x", 0, 1, 10).is_err());
        assert!(duration_secs("x", 10, 1, 10).is_ok());
    }

    #[test]
    fn error_shows_escaped_bounded_value() {
        let err = version("v", "a\u{7}b").unwrap_err().to_string();
        assert!(err.contains("a\\u{7}b"), "{err}");
        let long = format!("{}\n", "x".repeat(500));
        let err = version("v", &long).unwrap_err().to_string();
        assert!(err.len() < 400, "{err}");
    }

    #[test]
    fn quote_escapes_and_cuts() {
        let name = "n".repeat(100 * 1024);
        let err = super::name("name", &name).unwrap_err().to_string();
        assert!(err.len() < 600, "{} bytes", err.len());
        assert!(err.contains("… (102400 bytes)"), "{err}");
        let q = quote("\u{1b}]0;pwned\u{7}\r\n\u{202e}\u{9b}31m\"\\");
        assert_eq!(q, r#""\u{1b}]0;pwned\u{7}\r\n\u{202e}\u{9b}31m\"\\""#);
        assert!(!q.chars().any(|c| c.is_control() || is_hidden(c)));
        // a 10 MB value of wide characters stays bounded too
        let wide = "\u{202e}".repeat(10 * 1024 * 1024 / 3);
        let q = quote(&wide);
        assert!(q.len() < 2 * 1024, "{}", q.len());
        assert_eq!(clean("a\tb", 10), r"a\tb");
    }
}
