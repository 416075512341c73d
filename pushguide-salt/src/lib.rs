//! # pushguide-salt
//!
//! The salt-api (rest_cherrypy) transport of pushguide: [`SaltApi`] implements
//! [`pushguide_core::Transport`] by starting one `local_async` job per call (list targeting, so a
//! whole batch is one request) and collecting the minions' returns from `GET /jobs/<jid>` until they
//! all answered or the call's timeout passed. It logs in with eauth, keeps and renews its token, and
//! fails over between several salt-api endpoints.
//!
//! [`module`] is the salt execution module `pushguide` that runs a host's steps in one job, and
//! [`SaltApi::install_module`] installs it on the masters and minions.
//!
//! With the feature `cmdb`, [`SaltCmdb`] reads per-host settings from pillar and grains (one
//! compound salt job per batch of hosts, [`SaltApi::run_compound`]) as a
//! [`pushguide_sources::Cmdb`].
//!
//! [`decode`] holds the pure decoders of salt-api's answers (tested on captured real exchanges).
//! With the feature `fake`, `fake::FakeSaltApi` is an in-process salt-api in front of a simulated
//! fleet, for tests and benchmarks.
//!
//! ```
//! use pushguide_salt::{SaltApi, SaltApiSettings};
//!
//! // Settings come from TOML/JSON (or `SaltApiSettings::from_env`); the password never shows in Debug.
//! let settings: SaltApiSettings = serde_json::from_str(
//!     r#"{"endpoints": ["http://salt-a:8000", "http://salt-b:8000"], "eauth": "pam",
//!         "user": "deploy", "password": "s3cret", "job_timeout": 120}"#,
//! ).unwrap();
//! assert!(!format!("{settings:?}").contains("s3cret"));
//! let api = SaltApi::new(settings).unwrap(); // no request is sent before the first call
//! assert_eq!(api.endpoint_health().len(), 2);
//! ```

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

mod client;
#[cfg(feature = "cmdb")]
pub mod cmdb;
pub mod decode;
mod error;
#[cfg(feature = "fake")]
pub mod fake;
pub mod module;

pub use client::{
    EndpointHealth, EndpointWrite, MinionInstall, ModuleInstall, SaltApi, MAX_CALL_TIMEOUT,
    MAX_SETTING_DURATION,
};
#[cfg(feature = "cmdb")]
pub use cmdb::SaltCmdb;
pub use decode::ManageStatus;
pub use error::{snippet, SaltError, SNIPPET_MAX};

/// Settings of a salt-api connection. The password never appears in `Debug` output.
///
/// Deserializes from a table where every key is optional (durations in seconds):
///
/// ```
/// # use pushguide_salt::SaltApiSettings;
/// # use std::time::Duration;
/// let s: SaltApiSettings = serde_json::from_str(
///     r#"{"endpoints": ["http://salt-a:8000", "http://salt-b:8000"], "user": "deploy",
///         "password": "pw", "job_timeout": 120, "connect_timeout": 0.5}"#,
/// ).unwrap();
/// assert_eq!(s.eauth, "pam");
/// assert_eq!(s.job_timeout, Duration::from_secs(120));
/// assert_eq!(s.connect_timeout, Duration::from_millis(500));
/// ```
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SaltApiSettings {
    /// Base URLs of salt-api, in order of preference, e.g. `http://127.0.0.1:8123`.
    pub endpoints: Vec<String>,
    /// eauth backend (`pam`, `file`, `ldap`, …).
    pub eauth: String,
    /// User name.
    pub user: String,
    /// Password. Never logged, never in errors or `Debug`.
    pub password: String,
    /// Time allowed to open a connection.
    #[serde(deserialize_with = "de_secs")]
    pub connect_timeout: Duration,
    /// Time allowed for one HTTP request.
    #[serde(deserialize_with = "de_secs")]
    pub request_timeout: Duration,
    /// How long a call waits for minions' returns when the call has no timeout of its own.
    #[serde(deserialize_with = "de_secs")]
    pub job_timeout: Duration,
    /// Interval between two `GET /jobs/<jid>` polls of a job whose `/events` stream is broken (not
    /// connected, or dropped or reconnected during the wait); a healthy stream is never polled.
    #[serde(deserialize_with = "de_secs")]
    pub poll_interval: Duration,
    /// How long an endpoint that failed (connection, timeout, 502-504) is skipped.
    #[serde(deserialize_with = "de_secs")]
    pub endpoint_cooldown: Duration,
    /// Token lifetime to ask for at login (`token_expire`, needs `token_expire_user_override` on the
    /// master); `None` takes the master's default.
    #[serde(deserialize_with = "de_opt_secs")]
    pub token_expire: Option<Duration>,
    /// Collect returns from salt-api's `/events` stream (one per endpoint, shared by every job), with
    /// `GET /jobs/<jid>` as a slower safety net; `false` polls only.
    pub use_events: bool,
    /// Extra CA certificate (PEM file) trusted for `https://` endpoints, besides the system roots.
    pub ca_file: Option<std::path::PathBuf>,
    /// Accept any TLS certificate. Only for labs: anyone on the path can read the password.
    pub danger_accept_invalid_certs: bool,
}

impl Default for SaltApiSettings {
    fn default() -> Self {
        SaltApiSettings {
            endpoints: Vec::new(),
            eauth: "pam".to_owned(),
            user: String::new(),
            password: String::new(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            job_timeout: Duration::from_secs(300),
            poll_interval: Duration::from_millis(200),
            endpoint_cooldown: Duration::from_secs(30),
            token_expire: None,
            use_events: true,
            ca_file: None,
            danger_accept_invalid_certs: false,
        }
    }
}

fn secs(v: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(v).map_err(|e| format!("invalid duration {v}: {e}"))
}

fn de_secs<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    secs(f64::deserialize(d)?).map_err(serde::de::Error::custom)
}

fn de_opt_secs<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    match Option::<f64>::deserialize(d)? {
        None => Ok(None),
        Some(v) => secs(v).map(Some).map_err(serde::de::Error::custom),
    }
}

/// Why [`SaltApiSettings::from_env`] failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SettingsError {
    /// A required variable is not set (or empty).
    #[error("environment variable {0} is not set")]
    Missing(&'static str),
    /// A variable has a value that cannot be used.
    #[error("environment variable {var} is invalid: {reason}")]
    Invalid {
        /// The variable.
        var: &'static str,
        /// Why (never the value of a password).
        reason: String,
    },
}

impl SaltApiSettings {
    /// Settings from `PUSHGUIDE_SALT_URL` (+ optional `PUSHGUIDE_SALT_URL_2` as second endpoint),
    /// `PUSHGUIDE_SALT_USER`, `PUSHGUIDE_SALT_PASSWORD` and `PUSHGUIDE_SALT_EAUTH`; other fields keep
    /// their defaults.
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`SaltApiSettings::from_env`], reading variables through `get`.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let required = |var: &'static str| {
            get(var)
                .filter(|v| !v.is_empty())
                .ok_or(SettingsError::Missing(var))
        };
        let mut endpoints = vec![required("PUSHGUIDE_SALT_URL")?];
        if let Some(u2) = get("PUSHGUIDE_SALT_URL_2").filter(|v| !v.is_empty()) {
            endpoints.push(u2);
        }
        for (var, url) in ["PUSHGUIDE_SALT_URL", "PUSHGUIDE_SALT_URL_2"]
            .iter()
            .zip(&endpoints)
        {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(SettingsError::Invalid {
                    var,
                    reason: format!("`{url}` is not an http(s) URL"),
                });
            }
        }
        Ok(SaltApiSettings {
            endpoints,
            user: required("PUSHGUIDE_SALT_USER")?,
            password: required("PUSHGUIDE_SALT_PASSWORD")?,
            eauth: required("PUSHGUIDE_SALT_EAUTH")?,
            ..SaltApiSettings::default()
        })
    }
}

impl fmt::Debug for SaltApiSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SaltApiSettings")
            .field("endpoints", &self.endpoints)
            .field("eauth", &self.eauth)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("job_timeout", &self.job_timeout)
            .field("poll_interval", &self.poll_interval)
            .field("endpoint_cooldown", &self.endpoint_cooldown)
            .field("token_expire", &self.token_expire)
            .field("use_events", &self.use_events)
            .field("ca_file", &self.ca_file)
            .field(
                "danger_accept_invalid_certs",
                &self.danger_accept_invalid_certs,
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn debug_hides_the_password() {
        let s = SaltApiSettings {
            endpoints: vec!["http://127.0.0.1:8123".into()],
            eauth: "file".into(),
            user: "pushguide".into(),
            password: "hunter2-secret".into(),
            ..SaltApiSettings::default()
        };
        let shown = format!("{s:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }

    #[test]
    fn a_missing_or_bad_ca_file_is_a_settings_error() {
        let mut s = SaltApiSettings {
            endpoints: vec!["https://127.0.0.1:8123".into()],
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..SaltApiSettings::default()
        };
        let err = SaltApi::new(s.clone())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("/nonexistent/ca.pem"), "{err}");
        let dir = std::env::temp_dir().join(format!("pg-ca-{}", std::process::id()));
        std::fs::write(&dir, "not a certificate").unwrap();
        s.ca_file = Some(dir.clone());
        let err = SaltApi::new(s)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        std::fs::remove_file(&dir).ok();
        assert!(err.contains("ca_file"), "{err}");
    }

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn from_env_reads_both_urls_and_names_missing_variables() {
        let full = [
            ("PUSHGUIDE_SALT_URL", "http://127.0.0.1:8123"),
            ("PUSHGUIDE_SALT_URL_2", "http://127.0.0.2:8124"),
            ("PUSHGUIDE_SALT_USER", "pushguide"),
            ("PUSHGUIDE_SALT_PASSWORD", "pw"),
            ("PUSHGUIDE_SALT_EAUTH", "file"),
        ];
        let s = SaltApiSettings::from_lookup(env(&full)).expect("complete");
        assert_eq!(
            s.endpoints,
            ["http://127.0.0.1:8123", "http://127.0.0.2:8124"]
        );
        assert_eq!(s.eauth, "file");
        for skip in [0, 2, 3, 4] {
            let partial: Vec<_> = full
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != skip)
                .map(|(_, p)| *p)
                .collect();
            let e = SaltApiSettings::from_lookup(env(&partial)).expect_err("incomplete");
            assert_eq!(e, SettingsError::Missing(full[skip].0));
            assert!(e.to_string().contains(full[skip].0));
        }
        let one = SaltApiSettings::from_lookup(env(&[
            ("PUSHGUIDE_SALT_URL", "http://h:1"),
            ("PUSHGUIDE_SALT_USER", "u"),
            ("PUSHGUIDE_SALT_PASSWORD", "secret-pw"),
            ("PUSHGUIDE_SALT_EAUTH", "pam"),
        ]))
        .expect("one url");
        assert_eq!(one.endpoints.len(), 1);
        let bad = SaltApiSettings::from_lookup(env(&[
            ("PUSHGUIDE_SALT_URL", "127.0.0.1:8123"),
            ("PUSHGUIDE_SALT_USER", "u"),
            ("PUSHGUIDE_SALT_PASSWORD", "secret-pw"),
            ("PUSHGUIDE_SALT_EAUTH", "pam"),
        ]))
        .expect_err("not a url");
        assert!(matches!(
            bad,
            SettingsError::Invalid {
                var: "PUSHGUIDE_SALT_URL",
                ..
            }
        ));
    }

    #[test]
    fn deserializes_from_toml_with_defaults() {
        let s: SaltApiSettings = toml::from_str(
            "endpoints = [\"http://a:8000\"]\nuser = \"deploy\"\npassword = \"pw\"\neauth = \"ldap\"\n\
             request_timeout = 10\npoll_interval = 0.25\ntoken_expire = 3600\n",
        )
        .expect("valid toml");
        assert_eq!(s.request_timeout, Duration::from_secs(10));
        assert_eq!(s.poll_interval, Duration::from_millis(250));
        assert_eq!(s.token_expire, Some(Duration::from_secs(3600)));
        assert_eq!(s.job_timeout, SaltApiSettings::default().job_timeout);
        let empty: SaltApiSettings = toml::from_str("").expect("all optional");
        assert_eq!(empty, SaltApiSettings::default());
        assert!(toml::from_str::<SaltApiSettings>("job_timeout = -1").is_err());
        assert!(toml::from_str::<SaltApiSettings>("nope = 1").is_err());
    }
}
