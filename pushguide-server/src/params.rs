//! Query parameters of the read-only pages: each one checked, and a bad one refused with `400`
//! naming it; URL building for the pages' links.

use std::time::{Duration, SystemTime};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::app::Access;

/// The longest parameter value accepted (template, user, host names, cursors).
pub(crate) const MAX_VALUE: usize = 512;
/// The most parameters a request may carry.
const MAX_PARAMS: usize = 32;

/// A refused query parameter: which one, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BadParam {
    /// The parameter's name.
    pub(crate) name: String,
    /// What is wrong with it.
    pub(crate) why: String,
}

impl BadParam {
    pub(crate) fn new(name: &str, why: impl Into<String>) -> Self {
        BadParam {
            name: name.to_owned(),
            why: why.into(),
        }
    }

    /// The `400` answer: text on a page, `{"error": {"kind": "invalid", "parameter", "message"}}`
    /// on the API.
    pub(crate) fn response(&self, access: Access) -> Response {
        let message = format!("query parameter `{}`: {}", self.name, self.why);
        match access {
            Access::Api => (
                StatusCode::BAD_REQUEST,
                Json(serde_json::json!({"error": {
                    "kind": "invalid", "parameter": self.name, "message": message}})),
            )
                .into_response(),
            _ => (StatusCode::BAD_REQUEST, format!("{message}\n")).into_response(),
        }
    }
}

/// The query's parameters, each named at most once and among `known`.
#[derive(Debug, Default)]
pub(crate) struct Params(Vec<(String, String)>);

impl Params {
    /// Parses a raw query string (`None`: no query).
    pub(crate) fn parse(raw: Option<&str>, known: &[&str]) -> Result<Self, BadParam> {
        let mut out: Vec<(String, String)> = Vec::new();
        let Some(raw) = raw else {
            return Ok(Params(out));
        };
        for pair in raw.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let k = decode(k).map_err(|why| BadParam::new(&shown(k), why))?;
            if !known.contains(&k.as_str()) {
                return Err(BadParam::new(
                    &shown(&k),
                    format!("unknown parameter (known: {})", known.join(", ")),
                ));
            }
            let v = decode(v).map_err(|why| BadParam::new(&k, why))?;
            if v.chars().count() > MAX_VALUE {
                return Err(BadParam::new(
                    &k,
                    format!("longer than {MAX_VALUE} characters"),
                ));
            }
            if v.chars().any(char::is_control) {
                return Err(BadParam::new(&k, "holds control characters"));
            }
            if out.iter().any(|(seen, _)| *seen == k) {
                return Err(BadParam::new(&k, "given more than once"));
            }
            if out.len() == MAX_PARAMS {
                return Err(BadParam::new(&k, "too many parameters"));
            }
            out.push((k, v));
        }
        Ok(Params(out))
    }

    /// The value of `name`, if given and not empty (an empty form field counts as not given).
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// `name` as a whole number in `min..=max`, or `default`.
    pub(crate) fn number(
        &self,
        name: &str,
        min: u64,
        max: u64,
        default: u64,
    ) -> Result<u64, BadParam> {
        let Some(v) = self.get(name) else {
            return Ok(default);
        };
        match v.parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(BadParam::new(
                name,
                format!(
                    "expected a whole number from {min} to {max}, got `{}`",
                    shown(v)
                ),
            )),
        }
    }

    /// `name` as a date (`2026-11-27`, its first instant in UTC; with `end_of_day`, the first
    /// instant of the next day) or an RFC 3339 UTC time (`2026-11-27T09:42:46Z`).
    pub(crate) fn time(
        &self,
        name: &str,
        end_of_day: bool,
    ) -> Result<Option<SystemTime>, BadParam> {
        let Some(v) = self.get(name) else {
            return Ok(None);
        };
        parse_time(v, end_of_day).map(Some).ok_or_else(|| {
            BadParam::new(
                name,
                format!(
                    "expected a date (2026-11-27) or a UTC time (2026-11-27T09:42:46Z), got `{}`",
                    shown(v)
                ),
            )
        })
    }
}

/// A value as an error message shows it: at most 80 characters, control characters escaped.
pub(crate) fn shown(v: &str) -> String {
    pushguide_core::validate::clean(v, 80)
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes `application/x-www-form-urlencoded` text (`+` is a space).
fn decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let pair = bytes
                    .get(i + 1)
                    .and_then(|h| hex(*h))
                    .zip(bytes.get(i + 2).and_then(|l| hex(*l)));
                let Some((h, l)) = pair else {
                    return Err("a `%` not followed by two hex digits".into());
                };
                out.push(h * 16 + l);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| "not UTF-8".to_owned())
}

/// Percent-encodes `s` for a query value or a path segment (all but `A-Z a-z 0-9 - . _ ~`).
pub(crate) fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `path?k=v&…` from the pairs whose value is not empty.
pub(crate) fn url(path: &str, pairs: &[(&str, &str)]) -> String {
    let q: Vec<String> = pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect();
    if q.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", q.join("&"))
    }
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's days_from_civil).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn digits(s: &str) -> Option<i64> {
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// `YYYY-MM-DD` (its start, or with `end_of_day` the next day's start) or
/// `YYYY-MM-DDTHH:MM:SSZ`, years 1970 to 9999.
pub(crate) fn parse_time(s: &str, end_of_day: bool) -> Option<SystemTime> {
    let (date, time) = match s.split_once(['T', 't']) {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    let mut parts = date.split('-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let (y, m, d) = (digits(y)?, digits(m)?, digits(d)?);
    if y < 1970 || !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
        return None;
    }
    let day = days_from_civil(y, m, d);
    let secs = match time {
        None => (day + i64::from(end_of_day)) * 86_400,
        Some(t) => {
            let t = t.strip_suffix(['Z', 'z'])?;
            let mut hms = t.split(':');
            let (h, mi, se) = (hms.next()?, hms.next()?, hms.next()?);
            if hms.next().is_some() || h.len() != 2 || mi.len() != 2 || se.len() != 2 {
                return None;
            }
            let (h, mi, se) = (digits(h)?, digits(mi)?, digits(se)?);
            if h > 23 || mi > 59 || se > 59 {
                return None;
            }
            day * 86_400 + h * 3600 + mi * 60 + se
        }
    };
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::status::rfc3339;

    #[test]
    fn times_parse_as_dates_or_utc_times() {
        let t = |s, end| parse_time(s, end).map(rfc3339);
        assert_eq!(t("2026-11-27", false).unwrap(), "2026-11-27T00:00:00Z");
        assert_eq!(t("2026-11-27", true).unwrap(), "2026-11-28T00:00:00Z");
        assert_eq!(t("2024-02-29", false).unwrap(), "2024-02-29T00:00:00Z");
        assert_eq!(
            t("2026-11-27T09:42:46Z", true).unwrap(),
            "2026-11-27T09:42:46Z"
        );
        for bad in [
            "2026-02-29",
            "2026-13-01",
            "2026-1-01",
            "26-11-27",
            "2026-11-27T25:00:00Z",
            "2026-11-27T09:42:46",
            "2026-11-27T09:42:46+02:00",
            "yesterday",
            "1969-12-31",
            "+026-11-27",
            "2026-11-27-01",
        ] {
            assert_eq!(parse_time(bad, false), None, "{bad}");
        }
    }

    #[test]
    fn params_are_decoded_checked_and_named() {
        let p = Params::parse(
            Some("user=a+b%2Fc&template=&limit=5"),
            &["user", "template", "limit"],
        )
        .unwrap();
        assert_eq!(p.get("user"), Some("a b/c"));
        assert_eq!(p.get("template"), None);
        assert_eq!(p.number("limit", 1, 10, 3).unwrap(), 5);
        let err = p.number("limit", 6, 10, 3).unwrap_err();
        assert_eq!(err.name, "limit");
        let e = Params::parse(Some("nope=1"), &["user"]).unwrap_err();
        assert_eq!(e.name, "nope");
        let e = Params::parse(Some("user=1&user=2"), &["user"]).unwrap_err();
        assert_eq!(
            (e.name.as_str(), e.why.as_str()),
            ("user", "given more than once")
        );
        let e = Params::parse(Some("user=%zz"), &["user"]).unwrap_err();
        assert_eq!(e.name, "user");
        let e = Params::parse(Some("user=%0a"), &["user"]).unwrap_err();
        assert_eq!(e.why, "holds control characters");
        let long = format!("user={}", "x".repeat(MAX_VALUE + 1));
        let e = Params::parse(Some(&long), &["user"]).unwrap_err();
        assert_eq!(e.name, "user");
    }

    #[test]
    fn urls_encode_their_values() {
        assert_eq!(
            url("/history", &[("user", "a b&c=<d>"), ("outcome", "")]),
            "/history?user=a%20b%26c%3D%3Cd%3E"
        );
        assert_eq!(decode(&encode("ü/ &+%")).unwrap(), "ü/ &+%");
    }
}
