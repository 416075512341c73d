//! Where the database is and how to log in.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::error::Error;

/// Where the password comes from. It is read when the store connects and kept only in the
/// connection settings; it never appears in `Debug` output, logs or errors.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PasswordSource {
    /// No password (trust, peer or certificate authentication).
    None,
    /// The value of this environment variable.
    Env(String),
    /// The first line of this file.
    File(PathBuf),
}

/// How to reach the PostgreSQL store.
///
/// ```
/// use pushguide_postgres::PgConfig;
///
/// let c = PgConfig::from_url("postgres://pushguide@db.internal:5432/pushguide?sslmode=require")?
///     .password_env("PUSHGUIDE_PG_PASSWORD");
/// assert_eq!(c.endpoint(), "db.internal:5432/pushguide");
/// // a password in the URL is refused: it would end up in config files and process lists
/// assert!(PgConfig::from_url("postgres://u:secret@db/pushguide").is_err());
/// # Ok::<(), pushguide_postgres::Error>(())
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct PgConfig {
    /// The parsed URL (no password in it).
    pub(crate) pg: tokio_postgres::Config,
    /// Where the password comes from.
    pub password: PasswordSource,
    /// The schema pushguide's tables live in (created when missing); `None`: the server's default
    /// `search_path` (usually `public`). One database can hold several pushguide installations, one
    /// per schema (the tests use one schema each).
    pub schema: Option<String>,
    /// Connections in the pool (default 16).
    pub pool_size: usize,
    /// How long a lease lives unless its instance renews it (default 30 s; renewed every third).
    pub lease_ttl: Duration,
    /// Extra trusted CA certificates (PEM) for TLS, besides the webpki roots.
    pub ca_file: Option<PathBuf>,
    /// The URL is a transaction-pooling proxy (PgBouncer `pool_mode = transaction`): consecutive
    /// transactions of one connection may run on different server connections, and startup
    /// `options` are refused. Then the store sends no `options`; it sets the schema and the
    /// idle-in-transaction limit with `SET LOCAL` in every transaction (a statement outside one runs
    /// in a transaction of its own), and listens for queue notifications only through
    /// [`PgConfig::listen_url`] (without it, idle queue workers wake by their poll). Default `false`.
    pub transaction_pooling: bool,
    /// Where the queue listener (`LISTEN`, session state) connects instead of the URL: the server
    /// directly or a session-mode pool. Same user and password source as the URL.
    pub(crate) listen_pg: Option<tokio_postgres::Config>,
}

impl PgConfig {
    /// Parses a `postgres://user@host:port/database?sslmode=...` URL (or a `key=value` connection
    /// string). TLS follows `sslmode` (`disable`, `prefer` — the default — or `require`) through rustls.
    /// A password in the URL is refused: give it with [`PgConfig::password_env`] or
    /// [`PgConfig::password_file`].
    pub fn from_url(url: &str) -> Result<PgConfig, Error> {
        let pg = parse_url(url, "url")?;
        Ok(PgConfig {
            pg,
            password: PasswordSource::None,
            schema: None,
            pool_size: 16,
            lease_ttl: Duration::from_secs(30),
            ca_file: None,
            transaction_pooling: false,
            listen_pg: None,
        })
    }

    /// Sets [`PgConfig::transaction_pooling`].
    pub fn transaction_pooling(mut self, on: bool) -> Self {
        self.transaction_pooling = on;
        self
    }

    /// Sets the URL the queue listener connects to (see [`PgConfig::transaction_pooling`]): a URL as
    /// for [`PgConfig::from_url`], without a password; the password comes from the same source.
    pub fn listen_url(mut self, url: &str) -> Result<Self, Error> {
        self.listen_pg = Some(parse_url(url, "listen_url")?);
        Ok(self)
    }

    /// `host:port/database` of [`PgConfig::listen_url`], if set.
    pub fn listen_endpoint(&self) -> Option<String> {
        self.listen_pg.as_ref().map(endpoint_of)
    }

    /// The `SET LOCAL` statements that put the session settings in force in one transaction
    /// (transaction pooling), or `None` when the connection's startup `options` carry them.
    pub(crate) fn session_sql(&self) -> Option<String> {
        if !self.transaction_pooling {
            return None;
        }
        let mut sql = format!(
            "SET LOCAL idle_in_transaction_session_timeout = {}",
            self.lease_ttl.as_millis().max(1)
        );
        if let Some(schema) = &self.schema {
            // validated by `schema()`: a plain identifier
            sql.push_str(&format!("; SET LOCAL search_path = {schema}"));
        }
        Some(sql)
    }

    /// The queue listener's settings with the password: [`PgConfig::listen_url`]; else the URL's
    /// own settings when connecting directly; `None` behind a transaction-pooling proxy without a
    /// listen URL (`LISTEN` cannot work there).
    pub(crate) fn resolved_listen(&self) -> Result<Option<tokio_postgres::Config>, Error> {
        match &self.listen_pg {
            Some(pg) => {
                let mut pg = pg.clone();
                if let Some(pw) = self.resolved()?.get_password() {
                    pg.password(pw);
                }
                if pg.get_application_name().is_none() {
                    pg.application_name("pushguide");
                }
                if pg.get_connect_timeout().is_none() {
                    pg.connect_timeout(Duration::from_secs(10));
                }
                Ok(Some(pg))
            }
            None if self.transaction_pooling => Ok(None),
            None => self.resolved().map(Some),
        }
    }
}

/// Parses a URL or connection string for `setting`: refuses a password in it and requires host and
/// user.
fn parse_url(url: &str, setting: &'static str) -> Result<tokio_postgres::Config, Error> {
    {
        // the driver's parse error may quote the string, and the string may hold a password
        let pg = tokio_postgres::Config::from_str(url).map_err(|_| Error::Config {
            setting,
            reason:
                "not a PostgreSQL URL (postgres://user@host:port/database) or connection string"
                    .to_owned(),
        })?;
        if pg.get_password().is_some() {
            return Err(Error::Config {
                setting,
                reason: "it carries a password: give the password through an environment variable \
                         or a file instead"
                    .to_owned(),
            });
        }
        if pg.get_hosts().is_empty() {
            return Err(Error::Config {
                setting,
                reason: "no host".to_owned(),
            });
        }
        if pg.get_user().is_none() {
            return Err(Error::Config {
                setting,
                reason: "no user name (postgres://USER@host/database)".to_owned(),
            });
        }
        Ok(pg)
    }
}

impl PgConfig {
    /// Takes the password from environment variable `name` when connecting.
    pub fn password_env(mut self, name: impl Into<String>) -> Self {
        self.password = PasswordSource::Env(name.into());
        self
    }

    /// Takes the password from the first line of `path` when connecting.
    pub fn password_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.password = PasswordSource::File(path.into());
        self
    }

    /// Sets [`PgConfig::schema`]: a lowercase SQL identifier (`[a-z_][a-z0-9_]*`, at most 63 bytes).
    pub fn schema(mut self, schema: impl Into<String>) -> Result<Self, Error> {
        let schema = schema.into();
        let ok = schema.len() <= 63
            && schema.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
            && schema
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !ok {
            return Err(Error::Config {
                setting: "schema",
                reason: format!(
                    "`{schema}` is not a lowercase SQL identifier ([a-z_][a-z0-9_]*, at most 63 bytes)"
                ),
            });
        }
        self.schema = Some(schema);
        Ok(self)
    }

    /// Sets [`PgConfig::pool_size`] (at least 1).
    pub fn pool_size(mut self, n: usize) -> Self {
        self.pool_size = n.max(1);
        self
    }

    /// Sets [`PgConfig::lease_ttl`] (at least 100 ms).
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl.max(Duration::from_millis(100));
        self
    }

    /// Sets [`PgConfig::ca_file`].
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// `host:port/database`, for messages (no user, no password).
    pub fn endpoint(&self) -> String {
        endpoint_of(&self.pg)
    }

    /// The driver's settings with the password read from its source.
    pub(crate) fn resolved(&self) -> Result<tokio_postgres::Config, Error> {
        let mut pg = self.pg.clone();
        match &self.password {
            PasswordSource::None => {}
            PasswordSource::Env(name) => {
                let from = || format!("environment variable {name}");
                let v = std::env::var(name).map_err(|e| Error::Password {
                    from: from(),
                    reason: match e {
                        std::env::VarError::NotPresent => "it is not set".to_owned(),
                        std::env::VarError::NotUnicode(_) => "it is not valid UTF-8".to_owned(),
                    },
                })?;
                if v.is_empty() {
                    return Err(Error::Password {
                        from: from(),
                        reason: "it is empty".to_owned(),
                    });
                }
                pg.password(v);
            }
            PasswordSource::File(path) => {
                let from = || format!("file {}", path.display());
                let text = std::fs::read_to_string(path).map_err(|e| Error::Password {
                    from: from(),
                    reason: e.to_string(),
                })?;
                let line = text
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .trim_end_matches('\r');
                if line.is_empty() {
                    return Err(Error::Password {
                        from: from(),
                        reason: "its first line is empty".to_owned(),
                    });
                }
                pg.password(line);
            }
        }
        if self.transaction_pooling {
            // the proxy refuses `options`, and they would hold only on the server connection the
            // proxy opened them with: the settings go with every transaction (`session_sql`)
            return Ok(finish(pg));
        }
        // A transaction left open by a paused or cut-off instance (SIGSTOP, a frozen VM) would hold
        // its row locks — the lease row taken FOR SHARE by a fenced write — and block the takeover
        // of the template forever: the server ends such a session after the lease TTL.
        let mut options = match pg.get_options() {
            Some(given) if !given.trim().is_empty() => format!("{given} "),
            _ => String::new(),
        };
        options.push_str(&format!(
            "-c idle_in_transaction_session_timeout={}",
            self.lease_ttl.as_millis().max(1)
        ));
        if let Some(schema) = &self.schema {
            // validated by `schema()`: a plain identifier
            options.push_str(&format!(" -c search_path={schema}"));
        }
        pg.options(options);
        Ok(finish(pg))
    }
}

/// `host:port/database` of `pg`.
fn endpoint_of(pg: &tokio_postgres::Config) -> String {
    let host = match pg.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => String::from("?"),
    };
    let port = pg.get_ports().first().copied().unwrap_or(5432);
    let db = pg.get_dbname().or(pg.get_user()).unwrap_or_default();
    format!("{host}:{port}/{db}")
}

/// The application name and connect timeout, unless the URL gives them.
fn finish(mut pg: tokio_postgres::Config) -> tokio_postgres::Config {
    if pg.get_application_name().is_none() {
        pg.application_name("pushguide");
    }
    if pg.get_connect_timeout().is_none() {
        pg.connect_timeout(Duration::from_secs(10));
    }
    pg
}

impl fmt::Debug for PgConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgConfig")
            .field("endpoint", &self.endpoint())
            .field("user", &self.pg.get_user())
            .field("ssl_mode", &self.pg.get_ssl_mode())
            .field("password", &self.password)
            .field("schema", &self.schema)
            .field("pool_size", &self.pool_size)
            .field("lease_ttl", &self.lease_ttl)
            .field("ca_file", &self.ca_file)
            .field("transaction_pooling", &self.transaction_pooling)
            .field("listen", &self.listen_endpoint())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_password_never_shows() {
        let dir = std::env::temp_dir().join(format!("pg-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("pw");
        std::fs::write(&file, "s3cret-from-file\nignored\n").unwrap();
        let c = PgConfig::from_url("postgres://pushguide@127.0.0.1:5/db")
            .unwrap()
            .password_file(&file);
        let pg = c.resolved().unwrap();
        assert_eq!(pg.get_password(), Some(&b"s3cret-from-file"[..]));
        for text in [format!("{c:?}"), format!("{c:#?}")] {
            assert!(!text.contains("s3cret"), "{text}");
        }
        // a URL with a password is refused, and the error does not repeat it
        let e = PgConfig::from_url("postgres://u:hunter2@db:5432/x").unwrap_err();
        assert!(matches!(e, Error::Config { setting: "url", .. }));
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert!(!format!("{e:?}").contains("hunter2"));
        // an unparsable URL does not quote itself either
        let e = PgConfig::from_url("postgres://u:hunter2@db:notaport/x").unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_password_source_is_named() {
        let c = PgConfig::from_url("postgres://pushguide@127.0.0.1/db")
            .unwrap()
            .password_env("PUSHGUIDE_TEST_SURELY_UNSET_VARIABLE");
        let e = c.resolved().unwrap_err();
        assert!(
            e.to_string().contains(
                "environment variable PUSHGUIDE_TEST_SURELY_UNSET_VARIABLE: it is not set"
            ),
            "{e}"
        );
        let c = PgConfig::from_url("postgres://pushguide@127.0.0.1/db")
            .unwrap()
            .password_file("/nonexistent/pushguide/pw");
        assert!(matches!(c.resolved(), Err(Error::Password { .. })));
    }

    #[test]
    fn schema_names_are_identifiers() {
        let c = PgConfig::from_url("postgres://pushguide@127.0.0.1/db").unwrap();
        assert!(c.clone().schema("t_1").is_ok());
        for bad in ["", "1a", "A", "a;drop table x", "a b", &"x".repeat(64)] {
            assert!(c.clone().schema(bad).is_err(), "{bad}");
        }
        assert_eq!(c.endpoint(), "127.0.0.1:5432/db");
        // the URL's own options are kept; the idle-in-transaction limit (the lease TTL, 30 s by
        // default) and the schema are added
        let c = PgConfig::from_url("postgres://pushguide@127.0.0.1/db?options=-c%20work_mem%3D8MB")
            .unwrap()
            .schema("tenant_a")
            .unwrap();
        assert_eq!(
            c.resolved().unwrap().get_options(),
            Some("-c work_mem=8MB -c idle_in_transaction_session_timeout=30000 -c search_path=tenant_a")
        );
    }

    #[test]
    fn transaction_pooling_sends_no_options_and_sets_the_session_per_transaction() {
        let direct = PgConfig::from_url("postgres://pushguide@127.0.0.1:6432/db")
            .unwrap()
            .schema("tenant_a")
            .unwrap()
            .lease_ttl(Duration::from_secs(5));
        assert_eq!(direct.session_sql(), None);
        assert!(
            direct.resolved_listen().unwrap().is_some(),
            "listens directly"
        );
        let pooled = direct.clone().transaction_pooling(true);
        let pg = pooled.resolved().unwrap();
        assert_eq!(pg.get_options(), None, "PgBouncer refuses `options`");
        assert_eq!(pg.get_application_name(), Some("pushguide"));
        assert_eq!(
            pooled.session_sql().as_deref(),
            Some(
                "SET LOCAL idle_in_transaction_session_timeout = 5000; \
                 SET LOCAL search_path = tenant_a"
            )
        );
        // no LISTEN through the proxy, unless a listen URL says where
        assert!(pooled.resolved_listen().unwrap().is_none());
        let dir = std::env::temp_dir().join(format!("pg-listen-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("pw");
        std::fs::write(&file, "pw-for-both\n").unwrap();
        let pooled = pooled
            .password_file(&file)
            .listen_url("postgres://pushguide@db.internal:5432/db")
            .unwrap();
        let listen = pooled.resolved_listen().unwrap().unwrap();
        assert_eq!(listen.get_password(), Some(&b"pw-for-both"[..]));
        assert_eq!(
            pooled.listen_endpoint().as_deref(),
            Some("db.internal:5432/db")
        );
        assert!(!format!("{pooled:?}").contains("pw-for-both"));
        std::fs::remove_dir_all(&dir).unwrap();
        // a listen URL is checked like the URL
        let e = direct.listen_url("postgres://u:hunter2@db/x").unwrap_err();
        assert!(matches!(
            e,
            Error::Config {
                setting: "listen_url",
                ..
            }
        ));
        assert!(!e.to_string().contains("hunter2"));
    }
}
