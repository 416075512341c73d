//! The configuration file (`pushguide.toml`): salt-api, store, templates, CI and CMDB sources, user.
//!
//! Every key is read by hand so that an error names the file, the key and the value at fault. Relative
//! paths are relative to the directory of the configuration file. See the crate documentation for the
//! format.

use std::path::{Path, PathBuf};
use std::time::Duration;

use pushguide_core::Principal;
use pushguide_salt::SaltApiSettings;

use crate::error::CliError;

mod maven;
pub use maven::{MavenCi, MavenCredentials};

/// Where the salt-api password comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum PasswordSource {
    /// The value of this environment variable.
    Env(String),
    /// The contents of this file (trailing newline removed).
    File(PathBuf),
}

impl std::fmt::Debug for PasswordSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PasswordSource::Env(v) => write!(f, "Env({v})"),
            PasswordSource::File(p) => write!(f, "File({})", p.display()),
        }
    }
}

/// Where versions and artifacts come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CiConfig {
    /// A CI system's JSON index (`<url>/<template>/index.json`).
    Http {
        /// The base URL.
        url: String,
        /// Environment variable holding a bearer token.
        token_env: Option<String>,
    },
    /// A directory tree `<path>/<template>/<version>/<archive>`.
    Directory {
        /// The root directory.
        path: PathBuf,
        /// The URL base the minions fetch from (`http://`, `https://`, `salt://`).
        url_base: String,
    },
    /// A Maven repository layout (`[ci] type = "maven"`).
    Maven(Box<MavenCi>),
}

/// Where per-host settings come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CmdbConfig {
    /// A CMDB's JSON API (`<url>/hosts?template=<name>`).
    Http {
        /// The base URL.
        url: String,
        /// Environment variable holding a bearer token.
        token_env: Option<String>,
    },
    /// A static TOML file.
    Static {
        /// The file.
        path: PathBuf,
    },
    /// Salt pillar and grains, read through salt-api (`pushguide_salt::SaltCmdb`).
    Salt {
        /// `pillar_key`: the pillar key read with `pillar.item`, `<template>` replaced by the
        /// template's name (default `pushguide:<template>`).
        pillar_key: String,
        /// `[cmdb.grains]`: per-host key → grain name (read with `grains.item`; the pillar wins).
        grains: std::collections::BTreeMap<String, String>,
        /// `endpoints`: the salt-api(s) to ask, with `[salt]`'s credentials (default: `[salt]
        /// endpoints`).
        endpoints: Option<Vec<String>>,
        /// `batch`: hosts asked in one salt job (default 100).
        batch: usize,
        /// `timeout_secs`: how long one job waits for the minions (default `[salt] job_timeout`).
        timeout: Option<Duration>,
        /// `unmask`: ask `pillar.item` for unmasked values (default true; salt before 3008 has no
        /// such argument: false).
        unmask: bool,
    },
}

/// The whole configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// The file it was read from.
    pub file: PathBuf,
    /// salt-api settings, without the password (see [`Config::salt_settings`]).
    pub salt: SaltApiSettings,
    /// Where the password comes from.
    pub password: PasswordSource,
    /// `salt.step_jobs`: whether each host's steps go as one salt job run by the pushguide salt
    /// module (`pushguide install-module`); default on. Off: one salt job per step.
    pub step_jobs: bool,
    /// The SQLite store (`store = "path"` or `[store] path`); empty when [`Config::postgres`] is set.
    pub store: PathBuf,
    /// The PostgreSQL store (`store = "postgres://…"` or `[store] url`), shared by several
    /// instances; `None`: SQLite, the default. Holds where the password comes from, never the
    /// password.
    pub postgres: Option<pushguide_postgres::PgConfig>,
    /// `[store] lease_ttl_secs` with `path`: the SQLite store's lease TTL (how long after a
    /// process died its deployments count as live, default 30 s); `None` with PostgreSQL (its
    /// TTL is in [`Config::postgres`]).
    pub store_lease_ttl: Option<Duration>,
    /// The templates directory.
    pub templates: PathBuf,
    /// Where detached deployments write their output (default `<store dir>/logs`).
    pub log_dir: PathBuf,
    /// The CI source, if any.
    pub ci: Option<CiConfig>,
    /// The CMDB, if any.
    pub cmdb: Option<CmdbConfig>,
    /// The acting user and groups.
    pub principal: Principal,
    /// `monitor`: seconds between checks.
    pub monitor_interval: Duration,
    /// `monitor`: seconds a ping may take.
    pub monitor_timeout: Duration,
    /// `stats`: the offset from UTC that hours and weekdays are shown in (`[stats] tz`, default
    /// UTC; `stats --tz` overrides it).
    pub stats_tz: UtcOffset,
    /// `[server]`: the web service (`pushguide serve`).
    pub server: ServerSettings,
}

/// `[server]` (optional): the web service's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerSettings {
    /// `listen`: the address and port to listen on (default `127.0.0.1:8080`).
    pub listen: std::net::SocketAddr,
    /// `public_url`: where users reach the service (`https://…` makes its cookies `Secure`).
    pub public_url: Option<String>,
    /// `session_idle_secs`: a session unused this long ends (default 1800).
    pub session_idle: Duration,
    /// `session_max_secs`: a session ends this long after the login (default 43200).
    pub session_max: Duration,
    /// `admin_groups`: members see template files that do not load, with the error.
    pub admin_groups: Vec<String>,
    /// `auth`, `trusted_proxies`, `proxy_user_header`, `proxy_groups_header`: local logins or a
    /// trusted reverse proxy's headers, and which proxies are believed.
    pub auth: pushguide_server::AuthConfig,
    /// `workers`: how many deployments (of different templates) the service runs at once
    /// (default 2, 1 to 64).
    pub workers: usize,
    /// `monitor_interval_secs`: how often the service's minion monitor checks every template's
    /// minions (default 30; `0` turns the monitor off).
    pub monitor_interval: Duration,
    /// `[[server.webhooks]]`: where deployment and minion events are posted (`url`, `format`,
    /// `events`; see `pushguide_server::webhooks`).
    pub webhooks: Vec<pushguide_server::WebhookConfig>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: None,
            session_idle: Duration::from_secs(1800),
            session_max: Duration::from_secs(43_200),
            admin_groups: Vec::new(),
            auth: pushguide_server::AuthConfig::default(),
            workers: 2,
            monitor_interval: Duration::from_secs(30),
            webhooks: Vec::new(),
        }
    }
}

/// A fixed offset from UTC (no time zone rules, no daylight saving time): `UTC`, `+02:00`, `-05:30`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UtcOffset {
    /// Seconds east of UTC (from -18:00 to +18:00).
    pub seconds: i32,
}

impl UtcOffset {
    /// Parses `UTC` (or `Z`), or `+HH:MM` / `-HH:MM` (hours 0 to 18, minutes 0 to 59; `+HHMM` and
    /// `+HH` are accepted too). Time zone names such as `Europe/Berlin` are refused: the offset of a
    /// zone changes with daylight saving time, and statistics need one fixed offset.
    pub fn parse(text: &str) -> Result<UtcOffset, String> {
        let t = text.trim();
        if t.eq_ignore_ascii_case("utc")
            || t.eq_ignore_ascii_case("z")
            || t.eq_ignore_ascii_case("gmt")
        {
            return Ok(UtcOffset { seconds: 0 });
        }
        let shown = pushguide_core::validate::quote(text);
        let bad = || {
            format!(
                "{shown} is not a fixed offset from UTC: give UTC, +HH:MM or -HH:MM (e.g. +02:00, \
                 -05:30); time zone names are not supported"
            )
        };
        let (sign, rest) = match t.as_bytes().first() {
            Some(b'+') => (1, &t[1..]),
            Some(b'-') => (-1, &t[1..]),
            _ => return Err(bad()),
        };
        let (h, m) = match rest.split_once(':') {
            Some((h, m)) => (h, m),
            None if rest.len() == 4 && rest.bytes().all(|b| b.is_ascii_digit()) => rest.split_at(2),
            None => (rest, "00"),
        };
        let digits =
            |s: &str| !s.is_empty() && s.len() <= 2 && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(h) || m.len() != 2 || !digits(m) {
            return Err(bad());
        }
        let (h, m): (i32, i32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
        if h > 18 || m > 59 || (h == 18 && m > 0) {
            return Err(format!(
                "{shown}: an offset from UTC lies between -18:00 and +18:00"
            ));
        }
        Ok(UtcOffset {
            seconds: sign * (h * 3600 + m * 60),
        })
    }
}

impl std::fmt::Display for UtcOffset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.seconds == 0 {
            return f.write_str("UTC");
        }
        let sign = if self.seconds < 0 { '-' } else { '+' };
        let a = self.seconds.unsigned_abs();
        write!(f, "{sign}{:02}:{:02}", a / 3600, (a % 3600) / 60)
    }
}

/// Reads a TOML table key by key, remembering which keys were read so unknown ones can be reported.
struct Reader<'a> {
    file: &'a Path,
    prefix: String,
    table: &'a toml::Table,
    seen: Vec<&'static str>,
}

impl<'a> Reader<'a> {
    fn new(file: &'a Path, prefix: &str, table: &'a toml::Table) -> Self {
        Reader {
            file,
            prefix: prefix.to_owned(),
            table,
            seen: Vec::new(),
        }
    }

    fn path(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.prefix)
        }
    }

    fn err(&self, key: &str, value: &toml::Value, reason: impl Into<String>) -> CliError {
        CliError::Config {
            file: self.file.display().to_string(),
            key: self.path(key),
            value: short(value),
            reason: reason.into(),
        }
    }

    fn missing(&self, key: &str, reason: &str) -> CliError {
        CliError::Config {
            file: self.file.display().to_string(),
            key: self.path(key),
            value: String::new(),
            reason: format!("missing: {reason}"),
        }
    }

    fn get(&mut self, key: &'static str) -> Option<&'a toml::Value> {
        self.seen.push(key);
        self.table.get(key)
    }

    fn string(&mut self, key: &'static str) -> Result<Option<String>, CliError> {
        match self.get(key) {
            None => Ok(None),
            Some(toml::Value::String(s)) if s.trim().is_empty() => {
                Err(self.err(key, &toml::Value::String(s.clone()), "must not be empty"))
            }
            // a NUL cannot be part of a path, a URL or a name (the OS and SQLite reject it later)
            Some(v @ toml::Value::String(s)) if s.contains('\0') => {
                Err(self.err(key, v, "must not contain a NUL character"))
            }
            Some(toml::Value::String(s)) => Ok(Some(s.clone())),
            Some(v) => Err(self.err(key, v, "must be a string")),
        }
    }

    fn required_string(&mut self, key: &'static str, what: &str) -> Result<String, CliError> {
        self.string(key)?.ok_or_else(|| self.missing(key, what))
    }

    fn strings(&mut self, key: &'static str) -> Result<Option<Vec<String>>, CliError> {
        match self.get(key) {
            None => Ok(None),
            Some(toml::Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| match v {
                    toml::Value::String(s) if !s.trim().is_empty() && !s.contains('\0') => {
                        Ok(s.clone())
                    }
                    other => Err(CliError::Config {
                        file: self.file.display().to_string(),
                        key: format!("{}[{i}]", self.path(key)),
                        value: short(other),
                        reason: "must be a non-empty string without NUL characters".into(),
                    }),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(v) => Err(self.err(key, v, "must be an array of strings")),
        }
    }

    fn bool(&mut self, key: &'static str) -> Result<Option<bool>, CliError> {
        match self.get(key) {
            None => Ok(None),
            Some(toml::Value::Boolean(b)) => Ok(Some(*b)),
            Some(v) => Err(self.err(key, v, "must be true or false")),
        }
    }

    fn secs(&mut self, key: &'static str) -> Result<Option<Duration>, CliError> {
        let v = match self.get(key) {
            None => return Ok(None),
            Some(v) => v,
        };
        let n = match v {
            toml::Value::Integer(i) => *i as f64,
            toml::Value::Float(f) => *f,
            _ => return Err(self.err(key, v, "must be a number of seconds")),
        };
        if n.is_nan() || n <= 0.0 || n > 86_400.0 * 7.0 {
            return Err(self.err(key, v, "must be between 0 and 604800 seconds (excluded 0)"));
        }
        Ok(Some(Duration::from_secs_f64(n)))
    }

    fn table(&mut self, key: &'static str) -> Result<Option<&'a toml::Table>, CliError> {
        match self.get(key) {
            None => Ok(None),
            Some(toml::Value::Table(t)) => Ok(Some(t)),
            Some(v) => Err(self.err(key, v, "must be a table")),
        }
    }

    /// The table `key` read as a section of its own (its keys named `key.…` in errors).
    fn section(&mut self, key: &'static str) -> Result<Option<Reader<'a>>, CliError> {
        let file = self.file;
        Ok(self.table(key)?.map(|t| Reader::new(file, key, t)))
    }

    /// `type = ty` is not one of the section's types.
    fn bad_type(&self, ty: String, reason: &str) -> CliError {
        self.err("type", &toml::Value::String(ty), reason)
    }

    /// Fails on the first key that was never read.
    fn finish(self, known: &str) -> Result<(), CliError> {
        for (k, v) in self.table {
            if !self.seen.contains(&k.as_str()) {
                return Err(CliError::Config {
                    file: self.file.display().to_string(),
                    key: self.path(&short(&toml::Value::String(k.clone()))),
                    value: short(v),
                    reason: format!("unknown key; known keys here: {known}"),
                });
            }
        }
        Ok(())
    }
}

/// A value for an error message, shortened.
fn short(v: &toml::Value) -> String {
    let s = match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    // control characters (a NUL, a line end) are shown escaped, never written raw
    let s: String = s
        .chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect();
    if s.chars().count() > 80 {
        format!("{}…", s.chars().take(80).collect::<String>())
    } else {
        s
    }
}

fn resolve(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

fn check_url(r: &Reader<'_>, key: &str, url: &str, schemes: &[&str]) -> Result<(), CliError> {
    if schemes.iter().any(|s| url.starts_with(s)) {
        Ok(())
    } else {
        Err(r.err(
            key,
            &toml::Value::String(url.to_owned()),
            format!("must start with {}", schemes.join(" or ")),
        ))
    }
}

/// The top-level paths: the store, the templates directory and the log directory (default:
/// `pushguide-logs` beside the SQLite store, or beside the config file with PostgreSQL).
type Paths = (
    (PathBuf, Option<Duration>),
    Option<pushguide_postgres::PgConfig>,
    PathBuf,
    PathBuf,
);

fn read_paths(top: &mut Reader<'_>, base: &Path) -> Result<Paths, CliError> {
    let (store, postgres, ttl) = read_store(top, base)?;
    let templates = resolve(
        base,
        &top.required_string(
            "templates",
            "the templates directory, e.g. templates = \"templates\"",
        )?,
    );
    let log_dir = match top.string("log_dir")? {
        Some(p) => resolve(base, &p),
        None if postgres.is_some() => base.join("pushguide-logs"),
        None => store
            .parent()
            .unwrap_or(Path::new("."))
            .join("pushguide-logs"),
    };
    Ok(((store, ttl), postgres, templates, log_dir))
}

/// Whether `store` names a PostgreSQL database rather than a SQLite file.
fn is_postgres_url(s: &str) -> bool {
    let l = s.trim_start().to_ascii_lowercase();
    l.starts_with("postgres://") || l.starts_with("postgresql://")
}

/// `url` as an error message may show it: a password in its user part replaced by `***`.
fn redacted_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    match rest[..at].find(':') {
        Some(colon) => format!(
            "{}{}:***{}",
            &url[..scheme_end + 3],
            &rest[..colon],
            &rest[at..]
        ),
        None => url.to_owned(),
    }
}

/// `store` (required): a SQLite file path, a `postgres://` URL, or a `[store]` table (`path` with
/// an optional `lease_ttl_secs`, or `url` with `password_env` / `password_file`, `schema`,
/// `pool_size`, `lease_ttl_secs`, `ca_file`, `transaction_pooling`, `listen_url`).
fn read_store(
    top: &mut Reader<'_>,
    base: &Path,
) -> Result<
    (
        PathBuf,
        Option<pushguide_postgres::PgConfig>,
        Option<Duration>,
    ),
    CliError,
> {
    const WHAT: &str = "the SQLite file, e.g. store = \"pushguide.db\", a PostgreSQL URL \
                        (store = \"postgres://user@host:5432/db\") or a [store] table";
    if let Some(toml::Value::Table(_)) = top.table.get("store") {
        let mut r = top
            .section("store")?
            .ok_or_else(|| top.missing("store", WHAT))?;
        let path = r.string("path")?;
        let url = r.string("url")?;
        let pg_keys = [
            "password_env",
            "password_file",
            "schema",
            "pool_size",
            "ca_file",
            "transaction_pooling",
            "listen_url",
        ];
        return match (path, url) {
            (Some(p), None) => {
                if let Some(k) = pg_keys.iter().find(|k| r.table.contains_key(**k)) {
                    let v = r
                        .table
                        .get(*k)
                        .cloned()
                        .unwrap_or(toml::Value::Boolean(true));
                    return Err(r.err(
                        k,
                        &v,
                        "only for a PostgreSQL store (`url`), not with `path`",
                    ));
                }
                let ttl = lease_ttl(&mut r)?;
                r.finish("path, url, lease_ttl_secs")?;
                Ok((resolve(base, &p), None, ttl))
            }
            (None, Some(u)) => {
                let pg = read_postgres(&mut r, base, "url", &u)?;
                r.finish(
                    "path, url, password_env, password_file, schema, pool_size, lease_ttl_secs, ca_file, \
                     transaction_pooling, listen_url",
                )?;
                Ok((PathBuf::new(), Some(pg), None))
            }
            (Some(_), Some(u)) => Err(r.err(
                "url",
                &toml::Value::String(redacted_url(&u)),
                "give either `path` (SQLite) or `url` (PostgreSQL), not both",
            )),
            (None, None) => Err(r.missing(
                "path",
                "`path` (a SQLite file) or `url` (postgres://user@host:5432/db)",
            )),
        };
    }
    let s = top.required_string("store", WHAT)?;
    if is_postgres_url(&s) {
        // the string form has no password source: trust, peer or certificate authentication
        let pg = pg_from_url(top, "store", &s)?;
        return Ok((PathBuf::new(), Some(pg), None));
    }
    Ok((resolve(base, &s), None, None))
}

/// `[store] lease_ttl_secs`: 0.5 to 3600 seconds.
fn lease_ttl(r: &mut Reader<'_>) -> Result<Option<Duration>, CliError> {
    let Some(ttl) = r.secs("lease_ttl_secs")? else {
        return Ok(None);
    };
    if !(0.5..=3600.0).contains(&ttl.as_secs_f64()) {
        return Err(r.err(
            "lease_ttl_secs",
            &toml::Value::Float(ttl.as_secs_f64()),
            "must be between 0.5 and 3600 seconds",
        ));
    }
    Ok(Some(ttl))
}

fn pg_from_url(
    r: &Reader<'_>,
    key: &'static str,
    url: &str,
) -> Result<pushguide_postgres::PgConfig, CliError> {
    let shown = toml::Value::String(redacted_url(url));
    if !is_postgres_url(url) {
        return Err(r.err(key, &shown, "must start with postgres:// or postgresql://"));
    }
    pushguide_postgres::PgConfig::from_url(url).map_err(|e| r.err(key, &shown, e.to_string()))
}

/// The PostgreSQL settings of a `[store]` table with `url`.
fn read_postgres(
    r: &mut Reader<'_>,
    base: &Path,
    key: &'static str,
    url: &str,
) -> Result<pushguide_postgres::PgConfig, CliError> {
    let mut pg = pg_from_url(r, key, url)?;
    match (r.string("password_env")?, r.string("password_file")?) {
        (Some(_), Some(f)) => {
            return Err(r.err(
                "password_file",
                &toml::Value::String(f),
                "give either password_env or password_file, not both",
            ))
        }
        (Some(v), None) => pg = pg.password_env(v),
        (None, Some(f)) => pg = pg.password_file(resolve(base, &f)),
        (None, None) => {}
    }
    if let Some(schema) = r.string("schema")? {
        pg = pg
            .schema(schema.clone())
            .map_err(|e| r.err("schema", &toml::Value::String(schema), e.to_string()))?;
    }
    match r.get("pool_size") {
        None => {}
        Some(toml::Value::Integer(n)) if (1..=1024).contains(n) => {
            pg = pg.pool_size(*n as usize);
        }
        Some(v) => return Err(r.err("pool_size", v, "must be a whole number from 1 to 1024")),
    }
    if let Some(ttl) = lease_ttl(r)? {
        pg = pg.lease_ttl(ttl);
    }
    if let Some(ca) = r.string("ca_file")? {
        pg = pg.ca_file(resolve(base, &ca));
    }
    // behind PgBouncer in transaction mode; LISTEN then goes to `listen_url` (or waking polls)
    if let Some(on) = r.bool("transaction_pooling")? {
        pg = pg.transaction_pooling(on);
    }
    if let Some(listen) = r.string("listen_url")? {
        let shown = toml::Value::String(redacted_url(&listen));
        if !is_postgres_url(&listen) {
            return Err(r.err(
                "listen_url",
                &shown,
                "must start with postgres:// or postgresql://",
            ));
        }
        pg = pg
            .listen_url(&listen)
            .map_err(|e| r.err("listen_url", &shown, e.to_string()))?;
    }
    Ok(pg)
}

/// `[user]` (required): the acting user and groups.
fn read_user(top: &mut Reader<'_>) -> Result<Principal, CliError> {
    let mut u = top
        .section("user")?
        .ok_or_else(|| top.missing("user", "a [user] table with name = \"…\""))?;
    let name = u.required_string("name", "the acting user")?;
    let groups = u.strings("groups")?.unwrap_or_default();
    u.finish("name, groups")?;
    let mut principal = Principal::user(name);
    for g in groups {
        principal = principal.in_group(g);
    }
    Ok(principal)
}

/// `[salt]` (required): salt-api settings and where the password comes from.
fn read_salt(
    top: &mut Reader<'_>,
    base: &Path,
) -> Result<(SaltApiSettings, PasswordSource, bool), CliError> {
    let mut s = top
        .section("salt")?
        .ok_or_else(|| top.missing("salt", "a [salt] table with endpoints, eauth, user"))?;
    let mut salt = SaltApiSettings {
        endpoints: read_endpoints(&mut s)?,
        ..SaltApiSettings::default()
    };
    salt.eauth = s.required_string("eauth", "the eauth backend, e.g. eauth = \"pam\"")?;
    salt.user = s.required_string("user", "the salt-api user")?;
    let password = read_password(&mut s, base)?;
    read_salt_tuning(&mut s, &mut salt, base)?;
    let step_jobs = s.bool("step_jobs")?.unwrap_or(true);
    s.finish(
        "endpoints, eauth, user, password_env, password_file, connect_timeout, \
         request_timeout, job_timeout, poll_interval, endpoint_cooldown, token_expire, \
         use_events, ca_file, danger_accept_invalid_certs, step_jobs",
    )?;
    Ok((salt, password, step_jobs))
}

/// `salt.endpoints`: at least one `http(s)://` URL.
fn read_endpoints(s: &mut Reader<'_>) -> Result<Vec<String>, CliError> {
    let endpoints = s
        .strings("endpoints")?
        .ok_or_else(|| s.missing("endpoints", "e.g. endpoints = [\"http://salt:8000\"]"))?;
    if endpoints.is_empty() {
        return Err(s.err(
            "endpoints",
            &toml::Value::Array(Vec::new()),
            "needs at least one salt-api URL",
        ));
    }
    for e in &endpoints {
        check_url(s, "endpoints", e, &["http://", "https://"])?;
    }
    Ok(endpoints)
}

/// `salt.password_env` or `salt.password_file` (exactly one).
fn read_password(s: &mut Reader<'_>, base: &Path) -> Result<PasswordSource, CliError> {
    match (s.string("password_env")?, s.string("password_file")?) {
        (Some(v), None) => Ok(PasswordSource::Env(v)),
        (None, Some(p)) => Ok(PasswordSource::File(resolve(base, &p))),
        (Some(_), Some(p)) => Err(s.err(
            "password_file",
            &toml::Value::String(p),
            "give either password_env or password_file, not both",
        )),
        (None, None) => Err(s.missing(
            "password_env",
            "password_env = \"VAR\" (an environment variable) or password_file = \"path\"",
        )),
    }
}

/// The optional `[salt]` keys: timeouts, events, TLS.
fn read_salt_tuning(
    s: &mut Reader<'_>,
    salt: &mut SaltApiSettings,
    base: &Path,
) -> Result<(), CliError> {
    if let Some(d) = s.secs("connect_timeout")? {
        salt.connect_timeout = d;
    }
    if let Some(d) = s.secs("request_timeout")? {
        salt.request_timeout = d;
    }
    if let Some(d) = s.secs("job_timeout")? {
        salt.job_timeout = d;
    }
    if let Some(d) = s.secs("poll_interval")? {
        salt.poll_interval = d;
    }
    if let Some(d) = s.secs("endpoint_cooldown")? {
        salt.endpoint_cooldown = d;
    }
    salt.token_expire = s.secs("token_expire")?;
    if let Some(b) = s.bool("use_events")? {
        salt.use_events = b;
    }
    salt.ca_file = s.string("ca_file")?.map(|p| resolve(base, &p));
    if let Some(b) = s.bool("danger_accept_invalid_certs")? {
        salt.danger_accept_invalid_certs = b;
    }
    Ok(())
}

/// `[ci]` (optional): an HTTP index or a directory of artifacts.
fn read_ci(top: &mut Reader<'_>, base: &Path) -> Result<Option<CiConfig>, CliError> {
    let Some(mut c) = top.section("ci")? else {
        return Ok(None);
    };
    let ty = c.required_string("type", "type = \"http\", \"directory\" or \"maven\"")?;
    if ty == "maven" {
        return maven::read(c, base).map(Some);
    }
    let ci = match ty.as_str() {
        "http" => {
            let url = c.required_string("url", "the CI index base URL")?;
            check_url(&c, "url", &url, &["http://", "https://"])?;
            CiConfig::Http {
                url,
                token_env: c.string("token_env")?,
            }
        }
        "directory" => {
            let path = resolve(base, &c.required_string("path", "the artifacts root")?);
            let url_base = c.required_string(
                "url_base",
                "the URL minions fetch artifacts from, e.g. \"salt://artifacts/\"",
            )?;
            check_url(
                &c,
                "url_base",
                &url_base,
                &["http://", "https://", "salt://"],
            )?;
            CiConfig::Directory { path, url_base }
        }
        _ => return Err(c.bad_type(ty, "must be \"http\", \"directory\" or \"maven\"")),
    };
    c.finish("type, url, token_env (http); type, path, url_base (directory)")?;
    Ok(Some(ci))
}

/// `[cmdb]` (optional): an HTTP API or a static file.
fn read_cmdb(top: &mut Reader<'_>, base: &Path) -> Result<Option<CmdbConfig>, CliError> {
    let Some(mut c) = top.section("cmdb")? else {
        return Ok(None);
    };
    let ty = c.required_string("type", "type = \"http\", \"static\" or \"salt\"")?;
    let cmdb = match ty.as_str() {
        "http" => {
            let url = c.required_string("url", "the CMDB base URL")?;
            check_url(&c, "url", &url, &["http://", "https://"])?;
            CmdbConfig::Http {
                url,
                token_env: c.string("token_env")?,
            }
        }
        "static" => CmdbConfig::Static {
            path: resolve(base, &c.required_string("path", "the CMDB TOML file")?),
        },
        "salt" => read_salt_cmdb(&mut c)?,
        _ => return Err(c.bad_type(ty, "must be \"http\", \"static\" or \"salt\"")),
    };
    c.finish(
        "type, url, token_env (http); type, path (static); \
         type, pillar_key, grains, endpoints, batch, timeout_secs, unmask (salt)",
    )?;
    Ok(Some(cmdb))
}

/// `[cmdb] type = "salt"`: pillar key, grains, salt-api endpoints, batch and timeout.
fn read_salt_cmdb(c: &mut Reader<'_>) -> Result<CmdbConfig, CliError> {
    let name_ok = |v: &str| {
        !v.is_empty()
            && v.len() <= 256
            && v.chars()
                .all(|ch| ch.is_ascii_alphanumeric() || "_-.:<>".contains(ch))
    };
    let pillar_key = match c.get("pillar_key") {
        None => "pushguide:<template>".to_owned(),
        Some(toml::Value::String(k)) if name_ok(k) => k.clone(),
        Some(v) => return Err(c.err(
            "pillar_key",
            v,
            "must be 1 to 256 letters, digits or `_ - . : < >` (`<template>`: the template's name)",
        )),
    };
    let mut grains = std::collections::BTreeMap::new();
    for (setting, grain) in c.table("grains")?.into_iter().flatten() {
        match grain {
            toml::Value::String(g) if name_ok(g) && !setting.is_empty() => {
                grains.insert(setting.clone(), g.clone());
            }
            other => {
                return Err(c.err(
                    &format!("grains.{}", short(&toml::Value::String(setting.clone()))),
                    other,
                    "must be a grain name: 1 to 256 letters, digits or `_ - . :`",
                ))
            }
        }
    }
    let endpoints = match c.strings("endpoints")? {
        None => None,
        Some(list) => {
            if list.is_empty() {
                return Err(c.err(
                    "endpoints",
                    &toml::Value::Array(Vec::new()),
                    "must name at least one salt-api (or leave it out: [salt] endpoints)",
                ));
            }
            for e in &list {
                check_url(c, "endpoints", e, &["http://", "https://"])?;
            }
            Some(list)
        }
    };
    let batch = match c.get("batch") {
        None => 100,
        Some(v) => match v.as_integer() {
            Some(n @ 1..=10_000) => n as usize,
            _ => return Err(c.err("batch", v, "must be a whole number from 1 to 10000")),
        },
    };
    let timeout = c.secs("timeout_secs")?;
    let unmask = c.bool("unmask")?.unwrap_or(true);
    Ok(CmdbConfig::Salt {
        pillar_key,
        grains,
        endpoints,
        batch,
        timeout,
        unmask,
    })
}

/// `[monitor]` (optional): seconds between checks (default 30) and per ping (default 10).
fn read_monitor(top: &mut Reader<'_>) -> Result<(Duration, Duration), CliError> {
    let (mut interval, mut timeout) = (Duration::from_secs(30), Duration::from_secs(10));
    if let Some(mut m) = top.section("monitor")? {
        if let Some(d) = m.secs("interval_secs")? {
            interval = d;
        }
        if let Some(d) = m.secs("timeout_secs")? {
            timeout = d;
        }
        m.finish("interval_secs, timeout_secs")?;
    }
    Ok((interval, timeout))
}

/// `[stats]` (optional): the offset from UTC of hours and weekdays (default UTC).
fn read_stats(top: &mut Reader<'_>) -> Result<UtcOffset, CliError> {
    let mut stats_tz = UtcOffset::default();
    if let Some(mut st) = top.section("stats")? {
        if let Some(tz) = st.string("tz")? {
            stats_tz = UtcOffset::parse(&tz)
                .map_err(|reason| st.err("tz", &toml::Value::String(tz.clone()), reason))?;
        }
        st.finish("tz")?;
    }
    Ok(stats_tz)
}

/// `[server]` (optional): listen address, public URL, session limits, admin groups.
fn read_server(top: &mut Reader<'_>) -> Result<ServerSettings, CliError> {
    let mut settings = ServerSettings::default();
    let Some(mut r) = top.section("server")? else {
        return Ok(settings);
    };
    if let Some(listen) = r.string("listen")? {
        settings.listen = listen.trim().parse().map_err(|e| {
            r.err(
                "listen",
                &toml::Value::String(listen.clone()),
                format!("must be an address and port such as \"127.0.0.1:8080\" ({e})"),
            )
        })?;
    }
    if let Some(url) = r.string("public_url")? {
        check_url(&r, "public_url", &url, &["http://", "https://"])?;
        settings.public_url = Some(url);
    }
    if let Some(d) = r.secs("session_idle_secs")? {
        settings.session_idle = d;
    }
    if let Some(d) = r.secs("session_max_secs")? {
        settings.session_max = d;
    }
    if settings.session_idle > settings.session_max {
        return Err(r.err(
            "session_idle_secs",
            &toml::Value::Float(settings.session_idle.as_secs_f64()),
            format!(
                "must not exceed session_max_secs ({})",
                settings.session_max.as_secs_f64()
            ),
        ));
    }
    settings.admin_groups = r.strings("admin_groups")?.unwrap_or_default();
    if let Some(v) = r.get("workers") {
        settings.workers = match v.as_integer() {
            Some(n @ 1..=64) => n as usize,
            _ => return Err(r.err("workers", v, "must be a whole number from 1 to 64")),
        };
    }
    settings.auth = read_server_auth(&mut r)?;
    if let Some(v) = r.get("monitor_interval_secs") {
        let n = match v {
            toml::Value::Integer(i) => *i as f64,
            toml::Value::Float(f) => *f,
            _ => return Err(r.err("monitor_interval_secs", v, "must be a number of seconds")),
        };
        if n.is_nan() || !(0.0..=86_400.0).contains(&n) {
            return Err(r.err(
                "monitor_interval_secs",
                v,
                "must be between 0 (no monitor) and 86400 seconds",
            ));
        }
        settings.monitor_interval = Duration::from_secs_f64(n);
    }
    settings.webhooks = read_webhooks(&mut r)?;
    r.finish(
        "listen, public_url, session_idle_secs, session_max_secs, admin_groups, workers, auth, \
         trusted_proxies, proxy_user_header, proxy_groups_header, monitor_interval_secs, webhooks",
    )?;
    Ok(settings)
}

/// `[[server.webhooks]]` (optional): each with `url` (http or https), `format` (`"json"`, the
/// default, or `"slack"`) and `events` (default: every event).
fn read_webhooks(r: &mut Reader<'_>) -> Result<Vec<pushguide_server::WebhookConfig>, CliError> {
    use pushguide_server::{webhooks, WebhookConfig, WebhookEvent, WebhookFormat};
    let Some(v) = r.get("webhooks") else {
        return Ok(Vec::new());
    };
    let toml::Value::Array(items) = v else {
        return Err(r.err(
            "webhooks",
            v,
            "must be an array of tables ([[server.webhooks]])",
        ));
    };
    let mut hooks = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let toml::Value::Table(t) = item else {
            return Err(r.err(
                &format!("webhooks[{i}]"),
                item,
                "must be a table with url, format and events",
            ));
        };
        let mut h = Reader::new(r.file, &r.path(&format!("webhooks[{i}]")), t);
        let url = h.required_string("url", "the URL events are posted to")?;
        if let Err(why) = webhooks::check_url(&url) {
            // the URL may carry a secret: the error shows it without its query string
            return Err(h.err("url", &toml::Value::String(webhooks::redact(&url)), why));
        }
        let format = match h.string("format")? {
            None => WebhookFormat::Json,
            Some(f) => WebhookFormat::parse(&f).ok_or_else(|| {
                h.err(
                    "format",
                    &toml::Value::String(f.clone()),
                    "must be \"json\" or \"slack\"",
                )
            })?,
        };
        let events = match h.strings("events")? {
            None => WebhookEvent::ALL.to_vec(),
            Some(names) => {
                let mut events = Vec::new();
                for (j, name) in names.iter().enumerate() {
                    let e = WebhookEvent::parse(name).ok_or_else(|| {
                        h.err(
                            &format!("events[{j}]"),
                            &toml::Value::String(name.clone()),
                            format!(
                                "unknown event; known events: {}",
                                WebhookEvent::ALL.map(WebhookEvent::as_str).join(", ")
                            ),
                        )
                    })?;
                    if !events.contains(&e) {
                        events.push(e);
                    }
                }
                if events.is_empty() {
                    return Err(h.err(
                        "events",
                        &toml::Value::Array(Vec::new()),
                        "must name at least one event (leave it out for every event)",
                    ));
                }
                events
            }
        };
        h.finish("url, format, events")?;
        hooks.push(WebhookConfig {
            url,
            format,
            events,
        });
    }
    Ok(hooks)
}

/// `[server]` `auth` (`"local"` or `"proxy"`), `trusted_proxies` (addresses or networks; proxy
/// mode needs at least one), `proxy_user_header`, `proxy_groups_header`.
fn read_server_auth(r: &mut Reader<'_>) -> Result<pushguide_server::AuthConfig, CliError> {
    use pushguide_server::{proxy, AuthConfig, AuthMode};
    let mut auth = AuthConfig::default();
    if let Some(mode) = r.string("auth")? {
        auth.mode = match mode.as_str() {
            "local" => AuthMode::Local,
            "proxy" => AuthMode::Proxy,
            _ => {
                return Err(r.err(
                    "auth",
                    &toml::Value::String(mode),
                    "must be \"local\" (the login form) or \"proxy\" (a trusted reverse proxy's headers)",
                ))
            }
        };
    }
    let proxies = r.strings("trusted_proxies")?.unwrap_or_default();
    for (i, p) in proxies.iter().enumerate() {
        let cidr = p.trim().parse().map_err(|e: proxy::InvalidSetting| {
            r.err(
                &format!("trusted_proxies[{i}]"),
                &toml::Value::String(p.clone()),
                e.reason,
            )
        })?;
        auth.trusted_proxies.push(cidr);
    }
    for (key, slot) in [
        ("proxy_user_header", &mut auth.user_header),
        ("proxy_groups_header", &mut auth.groups_header),
    ] {
        if let Some(h) = r.string(key)? {
            *slot = proxy::header_name(h.trim())
                .map_err(|e| r.err(key, &toml::Value::String(h.clone()), e.reason))?;
        }
    }
    if auth.mode == AuthMode::Proxy && auth.trusted_proxies.is_empty() {
        return Err(r.missing(
            "trusted_proxies",
            "auth = \"proxy\" needs the proxies' addresses, e.g. trusted_proxies = [\"127.0.0.1\"]",
        ));
    }
    Ok(auth)
}

impl Config {
    /// Reads and checks `file`.
    pub fn load(file: &Path) -> Result<Config, CliError> {
        let text = std::fs::read_to_string(file).map_err(|e| CliError::ConfigFile {
            file: file.display().to_string(),
            reason: e.to_string(),
        })?;
        Self::parse(&text, file)
    }

    /// Parses configuration text; `file` names it in errors and anchors relative paths.
    ///
    /// Sections are read in the order of the file format (top-level paths, `[user]`, `[salt]`,
    /// `[ci]`, `[cmdb]`, `[monitor]`, `[stats]`, `[server]`); the first error found is returned.
    pub fn parse(text: &str, file: &Path) -> Result<Config, CliError> {
        let table: toml::Table = toml::from_str(text).map_err(|e| CliError::ConfigFile {
            file: file.display().to_string(),
            reason: e.to_string().trim_end().to_owned(),
        })?;
        let base = file
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        let mut top = Reader::new(file, "", &table);
        let ((store, store_lease_ttl), postgres, templates, log_dir) = read_paths(&mut top, &base)?;
        let principal = read_user(&mut top)?;
        let (salt, password, step_jobs) = read_salt(&mut top, &base)?;
        let ci = read_ci(&mut top, &base)?;
        let cmdb = read_cmdb(&mut top, &base)?;
        let (monitor_interval, monitor_timeout) = read_monitor(&mut top)?;
        let stats_tz = read_stats(&mut top)?;
        let server = read_server(&mut top)?;
        top.finish("store, templates, log_dir, user, salt, ci, cmdb, monitor, stats, server")?;
        Ok(Config {
            file: file.to_path_buf(),
            salt,
            password,
            step_jobs,
            store,
            postgres,
            store_lease_ttl,
            templates,
            log_dir,
            ci,
            cmdb,
            principal,
            monitor_interval,
            monitor_timeout,
            stats_tz,
            server,
        })
    }

    /// The salt-api settings with the password read from its source.
    pub fn salt_settings(&self) -> Result<SaltApiSettings, CliError> {
        let file = self.file.display().to_string();
        let password = match &self.password {
            PasswordSource::Env(var) => std::env::var(var)
                .ok()
                .filter(|v| !v.is_empty())
                .ok_or_else(|| CliError::Config {
                    file,
                    key: "salt.password_env".into(),
                    value: var.clone(),
                    reason: "this environment variable is not set or empty".into(),
                })?,
            PasswordSource::File(p) => std::fs::read_to_string(p)
                .map_err(|e| CliError::Config {
                    file: file.clone(),
                    key: "salt.password_file".into(),
                    value: p.display().to_string(),
                    reason: format!("cannot read the password file: {e}"),
                })
                .and_then(|s| {
                    let s = s.trim_end_matches(['\n', '\r']).to_owned();
                    if s.is_empty() {
                        Err(CliError::Config {
                            file: file.clone(),
                            key: "salt.password_file".into(),
                            value: p.display().to_string(),
                            reason: "the password file is empty".into(),
                        })
                    } else {
                        Ok(s)
                    }
                })?,
        };
        Ok(SaltApiSettings {
            password,
            ..self.salt.clone()
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const GOOD: &str = r#"
store = "state/pushguide.db"
templates = "templates"
[user]
name = "alice"
groups = ["ops"]
[salt]
endpoints = ["http://127.0.0.1:8123"]
eauth = "file"
user = "pushguide"
password_env = "PG_TEST_PW"
job_timeout = 60
[ci]
type = "directory"
path = "artifacts"
url_base = "salt://artifacts"
"#;

    #[test]
    fn reads_a_good_file_with_relative_paths() {
        let c = Config::parse(GOOD, Path::new("/etc/pg/pushguide.toml")).unwrap();
        assert_eq!(c.store, Path::new("/etc/pg/state/pushguide.db"));
        assert_eq!(c.templates, Path::new("/etc/pg/templates"));
        assert_eq!(c.salt.job_timeout, Duration::from_secs(60));
        assert_eq!(c.principal.user, "alice");
        assert!(matches!(c.ci, Some(CiConfig::Directory { .. })));
        assert!(!format!("{c:?}").contains("password\""));
    }

    #[test]
    fn errors_name_file_key_and_value() {
        let bad = GOOD.replace("job_timeout = 60", "job_timeot = 60");
        let e = Config::parse(&bad, Path::new("/etc/pg/pushguide.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/etc/pg/pushguide.toml"), "{e}");
        assert!(e.contains("salt.job_timeot"), "{e}");
        assert!(e.contains("60"), "{e}");
        let bad = GOOD.replace("type = \"directory\"", "type = \"ftp\"");
        let e = Config::parse(&bad, Path::new("p.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("ci.type") && e.contains("ftp"), "{e}");
        let bad = GOOD.replace("http://127.0.0.1:8123", "ftp://x");
        let e = Config::parse(&bad, Path::new("p.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("salt.endpoints") && e.contains("ftp://x"), "{e}");
    }

    #[test]
    fn a_nul_in_a_path_is_a_config_error_naming_the_key() {
        let bad = GOOD.replace(
            "store = \"state/pushguide.db\"",
            "store = \"state/pg\\u0000.db\"",
        );
        assert_ne!(bad, GOOD);
        let e = Config::parse(&bad, Path::new("p.toml")).unwrap_err();
        assert_eq!(e.exit_code(), crate::error::exit::USAGE);
        let msg = e.to_string();
        assert!(msg.contains("key `store`") && msg.contains("NUL"), "{msg}");
        assert!(
            msg.contains("state/pg\\u{0}.db") && !msg.contains('\0'),
            "{msg}"
        );
        let bad = GOOD.replace("\"http://127.0.0.1:8123\"", "\"http://a\\u0000b\"");
        let msg = Config::parse(&bad, Path::new("p.toml"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("salt.endpoints[0]"), "{msg}");
    }

    /// Every section's errors, word for word (the file is read section by section).
    #[test]
    fn each_section_names_its_errors() {
        let no_user = GOOD.replace("[user]\nname = \"alice\"\ngroups = [\"ops\"]\n", "");
        let no_salt = GOOD.replace("[salt]", "[salt_]");
        let cases = [
            (no_user, "key `user` = \"\": missing: a [user] table with name = \"…\""),
            (
                GOOD.replace("groups = [\"ops\"]", "groups = [\"ops\", \"\"]"),
                "key `user.groups[1]` = \"\": must be a non-empty string without NUL characters",
            ),
            (no_salt, "key `salt` = \"\": missing: a [salt] table with endpoints, eauth, user"),
            (
                GOOD.replace("[\"http://127.0.0.1:8123\"]", "[]"),
                "key `salt.endpoints` = \"[]\": needs at least one salt-api URL",
            ),
            (
                GOOD.replace("eauth = \"file\"\n", ""),
                "key `salt.eauth` = \"\": missing: the eauth backend, e.g. eauth = \"pam\"",
            ),
            (
                GOOD.replace("password_env = \"PG_TEST_PW\"", "password_env = \"A\"\npassword_file = \"p\""),
                "key `salt.password_file` = \"p\": give either password_env or password_file, not both",
            ),
            (
                GOOD.replace("password_env = \"PG_TEST_PW\"\n", ""),
                "key `salt.password_env` = \"\": missing: password_env = \"VAR\" (an environment \
                 variable) or password_file = \"path\"",
            ),
            (
                GOOD.replace("job_timeout = 60", "connect_timeout = 0"),
                "key `salt.connect_timeout` = \"0\": must be between 0 and 604800 seconds (excluded 0)",
            ),
            (
                GOOD.replace("job_timeout = 60", "use_events = \"yes\""),
                "key `salt.use_events` = \"yes\": must be true or false",
            ),
            (
                GOOD.replace("type = \"directory\"", "type = \"http\"\nurl = \"ftp://ci\""),
                "key `ci.url` = \"ftp://ci\": must start with http:// or https://",
            ),
            (
                GOOD.replace("url_base = \"salt://artifacts\"", "url_base = \"s3://a\""),
                "key `ci.url_base` = \"s3://a\": must start with http:// or https:// or salt://",
            ),
            (
                format!("{GOOD}[cmdb]\ntype = \"ldap\"\n"),
                "key `cmdb.type` = \"ldap\": must be \"http\", \"static\" or \"salt\"",
            ),
            (
                format!("{GOOD}[cmdb]\ntype = \"static\"\npath = \"c.toml\"\nurl = \"x\"\n"),
                "key `cmdb.url` = \"x\": unknown key; known keys here: type, url, token_env (http); \
                 type, path (static); type, pillar_key, grains, endpoints, batch, timeout_secs, unmask (salt)",
            ),
            (
                format!("{GOOD}[cmdb]\ntype = \"salt\"\npillar_key = \"a b\"\n"),
                "key `cmdb.pillar_key` = \"a b\": must be 1 to 256 letters, digits or `_ - . : < >` \
                 (`<template>`: the template's name)",
            ),
            (
                format!("{GOOD}[cmdb]\ntype = \"salt\"\n[cmdb.grains]\nroot = \"$(id)\"\n"),
                "key `cmdb.grains.root` = \"$(id)\": must be a grain name: 1 to 256 letters, digits \
                 or `_ - . :`",
            ),
            (
                format!("{GOOD}[cmdb]\ntype = \"salt\"\nendpoints = []\n"),
                "key `cmdb.endpoints` = \"[]\": must name at least one salt-api (or leave it out: \
                 [salt] endpoints)",
            ),
            (
                format!("{GOOD}[cmdb]\ntype = \"salt\"\nendpoints = [\"salt-a:8000\"]\n"),
                "key `cmdb.endpoints` = \"salt-a:8000\": must start with http:// or https://",
            ),
            (
                format!("{GOOD}[cmdb]\ntype = \"salt\"\nbatch = 0\n"),
                "key `cmdb.batch` = \"0\": must be a whole number from 1 to 10000",
            ),
            (
                format!("{GOOD}[cmdb]\ntype = \"salt\"\ntimeout_secs = -1\n"),
                "key `cmdb.timeout_secs` = \"-1\": must be between 0 and 604800 seconds (excluded 0)",
            ),
            (
                format!("{GOOD}[monitor]\ninterval_secs = -1\n"),
                "key `monitor.interval_secs` = \"-1\": must be between 0 and 604800 seconds \
                 (excluded 0)",
            ),
            (
                format!("{GOOD}[monitor]\nevery = 1\n"),
                "key `monitor.every` = \"1\": unknown key; known keys here: interval_secs, \
                 timeout_secs",
            ),
            (
                GOOD.replace("templates = \"templates\"", "templates = \"t\"\ntemplate = 1"),
                "key `template` = \"1\": unknown key; known keys here: store, templates, log_dir, \
                 user, salt, ci, cmdb, monitor, stats, server",
            ),
            (
                format!("{GOOD}[server]\nlisten = \"localhost\"\n"),
                "key `server.listen` = \"localhost\": must be an address and port such as \
                 \"127.0.0.1:8080\" (invalid socket address syntax)",
            ),
            (
                format!("{GOOD}[server]\npublic_url = \"deploy.example.com\"\n"),
                "key `server.public_url` = \"deploy.example.com\": must start with http:// or \
                 https://",
            ),
            (
                format!("{GOOD}[server]\nsession_idle_secs = 7200\nsession_max_secs = 3600\n"),
                "key `server.session_idle_secs` = \"7200.0\": must not exceed session_max_secs \
                 (3600)",
            ),
            (
                format!("{GOOD}[server]\nsession_max_secs = 0\n"),
                "key `server.session_max_secs` = \"0\": must be between 0 and 604800 seconds \
                 (excluded 0)",
            ),
            (
                format!("{GOOD}[server]\nadmin_groups = \"admins\"\n"),
                "key `server.admin_groups` = \"admins\": must be an array of strings",
            ),
            (
                format!("{GOOD}[server]\nworker = 2\n"),
                "key `server.worker` = \"2\": unknown key; known keys here: listen, public_url, \
                 session_idle_secs, session_max_secs, admin_groups, workers, auth, \
                 trusted_proxies, proxy_user_header, proxy_groups_header, monitor_interval_secs, \
                 webhooks",
            ),
            (
                format!("{GOOD}[server]\nworkers = 0\n"),
                "key `server.workers` = \"0\": must be a whole number from 1 to 64",
            ),
            (
                format!("{GOOD}[server]\nauth = \"ldap\"\n"),
                "key `server.auth` = \"ldap\": must be \"local\" (the login form) or \"proxy\" \
                 (a trusted reverse proxy's headers)",
            ),
            (
                format!("{GOOD}[server]\nauth = \"proxy\"\n"),
                "key `server.trusted_proxies` = \"\": missing: auth = \"proxy\" needs the proxies' \
                 addresses, e.g. trusted_proxies = [\"127.0.0.1\"]",
            ),
            (
                format!("{GOOD}[server]\ntrusted_proxies = [\"127.0.0.1\", \"10.0.0.1/8\"]\n"),
                "key `server.trusted_proxies[1]` = \"10.0.0.1/8\": has bits set beyond the prefix \
                 (the network is 10.0.0.0/8)",
            ),
            (
                format!("{GOOD}[server]\ntrusted_proxies = [\"proxy.local\"]\n"),
                "key `server.trusted_proxies[0]` = \"proxy.local\": must be an IP address or a \
                 network such as \"10.0.0.0/8\"",
            ),
            (
                format!("{GOOD}[server]\nproxy_user_header = \"X User\"\n"),
                "key `server.proxy_user_header` = \"X User\": must be an HTTP header name such as \
                 \"X-Forwarded-User\"",
            ),
            (
                format!("{GOOD}[server]\nmonitor_interval_secs = -1\n"),
                "key `server.monitor_interval_secs` = \"-1\": must be between 0 (no monitor) and \
                 86400 seconds",
            ),
            (
                format!("{GOOD}[server]\nmonitor_interval_secs = \"30\"\n"),
                "key `server.monitor_interval_secs` = \"30\": must be a number of seconds",
            ),
        ];
        for (text, want) in cases {
            let e = Config::parse(&text, Path::new("p.toml")).unwrap_err();
            assert_eq!(e.to_string(), format!("config p.toml: {want}"), "{text}");
            assert_eq!(e.exit_code(), crate::error::exit::USAGE);
        }
    }

    #[test]
    fn the_server_table_is_optional_and_read_key_by_key() {
        let c = Config::parse(GOOD, Path::new("p.toml")).unwrap();
        assert_eq!(c.server, ServerSettings::default());
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
        let text = format!(
            "{GOOD}[server]\nlisten = \"0.0.0.0:9443\"\npublic_url = \"https://d.example.com/\"\n\
             session_idle_secs = 60\nsession_max_secs = 120\nadmin_groups = [\"admins\", \"ops\"]\nworkers = 4\n"
        );
        let c = Config::parse(&text, Path::new("p.toml")).unwrap();
        assert_eq!(
            c.server,
            ServerSettings {
                listen: "0.0.0.0:9443".parse().unwrap(),
                public_url: Some("https://d.example.com/".into()),
                session_idle: Duration::from_secs(60),
                session_max: Duration::from_secs(120),
                admin_groups: vec!["admins".into(), "ops".into()],
                auth: pushguide_server::AuthConfig::default(),
                workers: 4,
                monitor_interval: Duration::from_secs(30),
                webhooks: Vec::new(),
            }
        );
        let c = Config::parse(
            &format!("{GOOD}[server]\nmonitor_interval_secs = 0\n"),
            Path::new("p.toml"),
        )
        .unwrap();
        assert_eq!(c.server.monitor_interval, Duration::ZERO, "0: no monitor");
        let c = Config::parse(
            &format!("{GOOD}[server]\nmonitor_interval_secs = 5\n"),
            Path::new("p.toml"),
        )
        .unwrap();
        assert_eq!(c.server.monitor_interval, Duration::from_secs(5));
    }

    #[test]
    fn webhooks_are_read_with_their_defaults() {
        use pushguide_server::{WebhookEvent, WebhookFormat};
        let c = Config::parse(
            &format!(
                "{GOOD}[server]\n[[server.webhooks]]\nurl = \"https://hooks.example.com/x\"\n\
                 [[server.webhooks]]\nurl = \"http://10.0.0.5:9000/hook\"\nformat = \"slack\"\n\
                 events = [\"deployment-paused\", \"minion-down\"]\n"
            ),
            Path::new("p.toml"),
        )
        .unwrap();
        let h = &c.server.webhooks;
        assert_eq!(h.len(), 2);
        assert_eq!(h[0].format, WebhookFormat::Json);
        assert_eq!(h[0].events, WebhookEvent::ALL.to_vec());
        assert_eq!(h[1].url, "http://10.0.0.5:9000/hook");
        assert_eq!(h[1].format, WebhookFormat::Slack);
        assert_eq!(
            h[1].events,
            vec![WebhookEvent::DeploymentPaused, WebhookEvent::MinionDown]
        );
    }

    #[test]
    fn bad_webhooks_are_refused_naming_key_and_file() {
        for (text, want) in [
            (
                "[[server.webhooks]]\nurl = \"ftp://x/y?token=s3cret\"\n",
                "key `server.webhooks[0].url` = \"ftp://x/y?…\": must start with http:// or https://",
            ),
            (
                "[[server.webhooks]]\nformat = \"json\"\n",
                "key `server.webhooks[0].url` = \"\": missing",
            ),
            (
                "[[server.webhooks]]\nurl = \"http://h/\"\nformat = \"teams\"\n",
                "key `server.webhooks[0].format` = \"teams\": must be \"json\" or \"slack\"",
            ),
            (
                "[[server.webhooks]]\nurl = \"http://h/\"\n[[server.webhooks]]\nurl = \"http://h/\"\n\
                 events = [\"deployment-started\", \"deployment-exploded\"]\n",
                "key `server.webhooks[1].events[1]` = \"deployment-exploded\": unknown event; \
                 known events: deployment-started, deployment-paused",
            ),
            (
                "[[server.webhooks]]\nurl = \"http://h/\"\nevents = []\n",
                "key `server.webhooks[0].events`",
            ),
            (
                "[[server.webhooks]]\nurl = \"http://h/\"\nsecret = \"x\"\n",
                "key `server.webhooks[0].secret` = \"x\": unknown key; known keys here: url, format, \
                 events",
            ),
            (
                "[server]\nwebhooks = \"http://h/\"\n",
                "key `server.webhooks` = \"http://h/\": must be an array of tables",
            ),
        ] {
            let e = Config::parse(&format!("{GOOD}{text}"), Path::new("/etc/p.toml"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{text}: {e}");
            assert!(e.contains("/etc/p.toml"), "{e}");
            assert!(!e.contains("s3cret"), "{e}");
        }
    }

    /// Every `[server]` key the reader knows is in the README's example, which parses.
    #[test]
    fn the_readme_documents_every_server_key() {
        let readme = include_str!("../README.md");
        let start = readme.find("```toml\n").unwrap() + 8;
        let example = &readme[start..start + readme[start..].find("```").unwrap()];
        let file = Path::new("/etc/pushguide/pushguide.toml");
        let parsed = Config::parse(example, file).unwrap();
        assert_eq!(parsed.server.auth.trusted_proxies.len(), 2);
        let table: toml::Table = toml::from_str(example).unwrap();
        let documented = table["server"].as_table().unwrap();
        let e = Config::parse(&format!("{GOOD}[server]\nno_such_key = 1\n"), file)
            .unwrap_err()
            .to_string();
        let known = e.split("known keys here: ").nth(1).unwrap();
        let known: Vec<&str> = known.split(", ").collect();
        assert!(known.len() >= 9, "{known:?}");
        for key in known {
            assert!(
                documented.contains_key(key),
                "[server] {key} is not in the README"
            );
        }
    }

    #[test]
    fn the_server_reads_its_proxy_settings() {
        let text = format!(
            "{GOOD}[server]\nauth = \"proxy\"\ntrusted_proxies = [\"127.0.0.1\", \"10.0.0.0/8\", \
             \"fd00::/8\"]\nproxy_user_header = \"X-Auth-Request-User\"\n\
             proxy_groups_header = \"X-Auth-Request-Groups\"\n"
        );
        let c = Config::parse(&text, Path::new("p.toml")).unwrap();
        let a = &c.server.auth;
        assert_eq!(a.mode, pushguide_server::AuthMode::Proxy);
        let shown: Vec<String> = a.trusted_proxies.iter().map(|p| p.to_string()).collect();
        assert_eq!(shown, ["127.0.0.1/32", "10.0.0.0/8", "fd00::/8"]);
        assert_eq!(a.user_header.as_str(), "x-auth-request-user");
        assert_eq!(a.groups_header.as_str(), "x-auth-request-groups");
        let c = Config::parse(
            &format!("{GOOD}[server]\nauth = \"local\"\n"),
            Path::new("p.toml"),
        )
        .unwrap();
        assert_eq!(c.server.auth, pushguide_server::AuthConfig::default());
        assert_eq!(c.server.auth.user_header.as_str(), "x-forwarded-user");
        assert_eq!(c.server.auth.groups_header.as_str(), "x-forwarded-groups");
    }

    #[test]
    fn a_missing_password_variable_is_named_but_no_password_is_printed() {
        let c = Config::parse(GOOD, Path::new("p.toml")).unwrap();
        let e = c.salt_settings().unwrap_err().to_string();
        assert!(
            e.contains("PG_TEST_PW") && e.contains("salt.password_env"),
            "{e}"
        );
    }

    #[test]
    fn utc_offsets_parse_and_print() {
        for (text, secs, shown) in [
            ("UTC", 0, "UTC"),
            ("utc", 0, "UTC"),
            ("+02:00", 7200, "+02:00"),
            ("-05:30", -19_800, "-05:30"),
            ("+0530", 19_800, "+05:30"),
            ("-03", -10_800, "-03:00"),
            ("+18:00", 64_800, "+18:00"),
        ] {
            let o = UtcOffset::parse(text).unwrap();
            assert_eq!((o.seconds, o.to_string().as_str()), (secs, shown), "{text}");
        }
        for bad in [
            "Europe/Berlin",
            "2",
            "+2:5",
            "+19:00",
            "+18:30",
            "+02:60",
            "",
            "+",
            "+ab:cd",
            // a multi-byte character where the hour/minute split falls: refused, no panic
            "+aé1",
            "-\u{202e}12",
        ] {
            let e = UtcOffset::parse(bad).unwrap_err();
            let shown = pushguide_core::validate::quote(bad);
            assert!(e.contains(&shown), "{bad}: {e}");
            assert!(!e.contains('\u{202e}'), "{e}");
        }
    }

    #[test]
    fn stats_tz_is_read_from_the_config() {
        let c = Config::parse(GOOD, Path::new("p.toml")).unwrap();
        assert_eq!(c.stats_tz, UtcOffset::default());
        let c = Config::parse(
            &format!("{GOOD}[stats]\ntz = \"-05:30\"\n"),
            Path::new("p.toml"),
        )
        .unwrap();
        assert_eq!(c.stats_tz.seconds, -19_800);
        let e = Config::parse(
            &format!("{GOOD}[stats]\ntz = \"CET\"\n"),
            Path::new("p.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("stats.tz") && e.contains("CET") && e.contains("p.toml"),
            "{e}"
        );
    }

    #[test]
    fn the_salt_cmdb_is_read_with_its_defaults() {
        let file = Path::new("/etc/p.toml");
        let c = Config::parse(&format!("{GOOD}[cmdb]\ntype = \"salt\"\n"), file).unwrap();
        assert_eq!(
            c.cmdb,
            Some(CmdbConfig::Salt {
                pillar_key: "pushguide:<template>".into(),
                grains: Default::default(),
                endpoints: None,
                batch: 100,
                timeout: None,
                unmask: true,
            })
        );
        let c = Config::parse(
            &format!(
                "{GOOD}[cmdb]\ntype = \"salt\"\npillar_key = \"apps:<template>\"\n\
                 endpoints = [\"http://salt-b:8000\"]\nbatch = 20\ntimeout_secs = 15\nunmask = false\n\
                 [cmdb.grains]\nroot = \"deploy_root\"\n"
            ),
            file,
        )
        .unwrap();
        let Some(CmdbConfig::Salt {
            pillar_key,
            grains,
            endpoints,
            batch,
            timeout,
            unmask,
        }) = c.cmdb
        else {
            panic!("{:?}", c.cmdb)
        };
        assert_eq!(pillar_key, "apps:<template>");
        assert_eq!(grains.get("root").map(String::as_str), Some("deploy_root"));
        assert_eq!(endpoints, Some(vec!["http://salt-b:8000".to_owned()]));
        assert_eq!((batch, timeout), (20, Some(Duration::from_secs(15))));
        assert!(!unmask);
    }

    /// Every `[cmdb] type = "salt"` key the reader knows is in the top-level README's example,
    /// which parses.
    #[test]
    fn the_readme_documents_every_salt_cmdb_key() {
        let readme = include_str!("../../README.md");
        let section = &readme[readme.find("## CMDB from salt").unwrap()..];
        let start = section.find("```toml\n").unwrap() + 8;
        let example = &section[start..start + section[start..].find("```").unwrap()];
        let file = Path::new("/etc/pushguide/pushguide.toml");
        let parsed = Config::parse(example, file).unwrap();
        assert!(matches!(parsed.cmdb, Some(CmdbConfig::Salt { .. })));
        let table: toml::Table = toml::from_str(example).unwrap();
        let documented = table["cmdb"].as_table().unwrap();
        let e = Config::parse(
            &format!("{GOOD}[cmdb]\ntype = \"salt\"\nno_such_key = 1\n"),
            file,
        )
        .unwrap_err()
        .to_string();
        let known = e.split("; type, pillar_key").nth(1).unwrap();
        let known = format!("type, pillar_key{}", known.trim_end_matches(" (salt)"));
        let known: Vec<&str> = known.split(", ").collect();
        assert!(known.len() >= 7, "{known:?}");
        for key in known {
            assert!(
                documented.contains_key(key),
                "[cmdb] {key} is not in the README"
            );
        }
    }
}
