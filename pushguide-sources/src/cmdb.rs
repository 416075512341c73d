//! Per-host settings from a CMDB: the `Cmdb` trait, `HttpCmdb`, `StaticCmdb`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pushguide_core::MinionId;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::artifact::check_template;
use crate::error::{shown, Error};
use crate::http::JsonGetter;

/// Per host, the settings a CMDB holds for one template (keys of the kind's `[project.hosts.<id>]`).
pub type HostSettings = BTreeMap<MinionId, Map<String, Value>>;

/// Where per-host settings come from (a CMDB's API, a file kept by ops).
///
/// `template` is the template's name. With a non-empty `hosts`, only those hosts are returned (a host
/// the CMDB does not know is simply absent); with an empty `hosts`, every host the CMDB knows for the
/// template. Host ids from the CMDB are validated as minion ids.
///
/// The settings are merged into a template by [`crate::apply_cmdb`].
#[async_trait]
pub trait Cmdb: Send + Sync + fmt::Debug {
    /// A short description for messages: the URL or the file.
    fn name(&self) -> &str;

    /// The settings of `hosts` for `template`.
    async fn host_settings(
        &self,
        template: &str,
        hosts: &[MinionId],
    ) -> Result<HostSettings, Error>;
}

#[async_trait]
impl<T: Cmdb + ?Sized> Cmdb for Box<T> {
    fn name(&self) -> &str {
        (**self).name()
    }
    async fn host_settings(
        &self,
        template: &str,
        hosts: &[MinionId],
    ) -> Result<HostSettings, Error> {
        (**self).host_settings(template, hosts).await
    }
}

#[async_trait]
impl<T: Cmdb + ?Sized> Cmdb for Arc<T> {
    fn name(&self) -> &str {
        (**self).name()
    }
    async fn host_settings(
        &self,
        template: &str,
        hosts: &[MinionId],
    ) -> Result<HostSettings, Error> {
        (**self).host_settings(template, hosts).await
    }
}

/// Validates host ids and keeps the wanted ones.
fn collect_hosts(
    source: &str,
    raw: impl IntoIterator<Item = (String, Map<String, Value>)>,
    wanted: &[MinionId],
) -> Result<HostSettings, Error> {
    let mut out = HostSettings::new();
    for (host, settings) in raw {
        let id = MinionId::new(&host).map_err(|error| Error::InvalidHost {
            source_name: source.to_owned(),
            host: shown(&host),
            error: Box::new(error),
        })?;
        if wanted.is_empty() || wanted.contains(&id) {
            out.insert(id, settings);
        }
    }
    Ok(out)
}

/// The body of `GET <base>/hosts?template=<template>`.
#[derive(Deserialize)]
struct HostsDoc {
    hosts: BTreeMap<String, Value>,
}

/// Per-host settings from a CMDB's HTTP JSON API; see the [crate docs](crate) for the format.
///
/// ```no_run
/// # async fn f() -> Result<(), pushguide_sources::Error> {
/// use pushguide_sources::{Cmdb, HttpCmdb};
///
/// let cmdb = HttpCmdb::new("https://cmdb.example.com/api/pushguide")?;
/// let settings = cmdb.host_settings("shop-web", &[]).await?;
/// # let _ = settings; Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct HttpCmdb {
    http: JsonGetter,
}

impl HttpCmdb {
    /// A CMDB API below `base` (`http://` or `https://`; `hosts?template=<t>` is appended).
    pub fn new(base: &str) -> Result<Self, Error> {
        Ok(HttpCmdb {
            http: JsonGetter::new(base)?,
        })
    }

    /// Limit of one request, connect to last byte (default 30 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.http.timeout = timeout;
        self
    }

    /// Sends `Authorization: Bearer <token>` (the token is never printed by `Debug`).
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        self.http.bearer = Some(token.into());
        self
    }

    /// Uses `client` (proxies, custom roots, a shared connection pool).
    pub fn client(mut self, client: reqwest::Client) -> Self {
        self.http.client = client;
        self
    }
}

#[async_trait]
impl Cmdb for HttpCmdb {
    fn name(&self) -> &str {
        &self.http.name
    }

    async fn host_settings(
        &self,
        template: &str,
        hosts: &[MinionId],
    ) -> Result<HostSettings, Error> {
        check_template(&self.http.name, template)?;
        let mut url = self.http.url("hosts")?;
        url.query_pairs_mut().append_pair("template", template);
        let doc: HostsDoc = self.http.get(&url).await?;
        let mut raw = Vec::with_capacity(doc.hosts.len());
        for (host, v) in doc.hosts {
            match v {
                Value::Object(m) => raw.push((host, m)),
                other => {
                    return Err(Error::Malformed {
                        source_name: self.http.name.clone(),
                        location: url.to_string(),
                        message: format!(
                            "hosts.{}: expected an object of settings, got {}",
                            shown(&host),
                            kind_of(&other)
                        ),
                    })
                }
            }
        }
        collect_hosts(&self.http.name, raw, hosts)
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The TOML file of a [`StaticCmdb`].
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StaticDoc {
    #[serde(default)]
    hosts: BTreeMap<String, Map<String, Value>>,
    #[serde(default)]
    templates: BTreeMap<String, StaticTemplate>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StaticTemplate {
    #[serde(default)]
    hosts: BTreeMap<String, Map<String, Value>>,
}

/// Per-host settings from a TOML file kept by ops; see the [crate docs](crate) for the format.
///
/// A template's own section (`[templates.<t>.hosts.<id>]`) overrides the shared `[hosts.<id>]` key by
/// key.
///
/// ```
/// # async fn f() -> Result<(), pushguide_sources::Error> {
/// use pushguide_sources::{Cmdb, StaticCmdb};
///
/// let cmdb = StaticCmdb::from_toml_str(r#"
///     [hosts.web-01]
///     catalina_base = "/opt/tomcat-a"
///     service = "tomcat-a"
///     [templates.shop-web.hosts.web-01]
///     service = "tomcat-shop"
/// "#, "cmdb.toml")?;
/// let s = cmdb.host_settings("shop-web", &[]).await?;
/// let web01 = s.values().next().unwrap();
/// assert_eq!(web01["service"], "tomcat-shop");
/// assert_eq!(web01["catalina_base"], "/opt/tomcat-a");
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct StaticCmdb {
    name: String,
    hosts: BTreeMap<String, Map<String, Value>>,
    templates: BTreeMap<String, BTreeMap<String, Map<String, Value>>>,
}

impl StaticCmdb {
    /// Parses the TOML `text`; `source_name` appears in errors. Host ids and template names are checked.
    pub fn from_toml_str(text: &str, source_name: &str) -> Result<Self, Error> {
        let doc: StaticDoc = toml::from_str(text).map_err(|e| Error::Malformed {
            source_name: source_name.to_owned(),
            location: source_name.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        let check_hosts = |hosts: &BTreeMap<String, Map<String, Value>>| {
            hosts.keys().try_for_each(|h| {
                MinionId::new(h)
                    .map(drop)
                    .map_err(|error| Error::InvalidHost {
                        source_name: source_name.to_owned(),
                        host: shown(h),
                        error: Box::new(error),
                    })
            })
        };
        check_hosts(&doc.hosts)?;
        let mut templates = BTreeMap::new();
        for (t, section) in doc.templates {
            check_template(source_name, &t)?;
            check_hosts(&section.hosts)?;
            templates.insert(t, section.hosts);
        }
        Ok(StaticCmdb {
            name: source_name.to_owned(),
            hosts: doc.hosts,
            templates,
        })
    }

    /// Reads and parses a TOML file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|error| Error::Io {
            source_name: name.clone(),
            path: name.clone(),
            error,
        })?;
        Self::from_toml_str(&text, &name)
    }
}

#[async_trait]
impl Cmdb for StaticCmdb {
    fn name(&self) -> &str {
        &self.name
    }

    async fn host_settings(
        &self,
        template: &str,
        hosts: &[MinionId],
    ) -> Result<HostSettings, Error> {
        let mut merged = self.hosts.clone();
        if let Some(own) = self.templates.get(template) {
            for (host, settings) in own {
                let entry = merged.entry(host.clone()).or_default();
                for (k, v) in settings {
                    entry.insert(k.clone(), v.clone());
                }
            }
        }
        collect_hosts(&self.name, merged, hosts)
    }
}
