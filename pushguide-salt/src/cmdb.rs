//! Salt's pillar and grains as a CMDB (feature `cmdb`): [`SaltCmdb`] implements
//! [`pushguide_sources::Cmdb`], so its settings merge into a template exactly like the other CMDB
//! sources' ([`pushguide_sources::apply_cmdb`]).

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use pushguide_core::{validate, MinionId, Outcome, SaltCall, TargetExpr, TargetType};
use pushguide_sources::{Cmdb, Error, HostSettings};
use serde_json::{Map, Value};

use crate::{SaltApi, SaltError};

/// The placeholder of [`SaltCmdb::pillar_key`] replaced by the template's name.
pub const TEMPLATE_PLACEHOLDER: &str = "<template>";

/// The default pillar key: `pushguide:<template>` (salt's `:` walks into nested pillar).
pub const DEFAULT_PILLAR_KEY: &str = "pushguide:<template>";

/// Hosts asked in one salt job by default.
pub const DEFAULT_BATCH: usize = 100;

/// Longest pillar key or grain name accepted (bytes).
const MAX_NAME_BYTES: usize = 256;

/// Per-host settings from salt: each minion's pillar under one key (`pillar.item`) and, optionally,
/// some of its grains (`grains.item`), read through salt-api.
///
/// * **One salt job per batch of hosts**: both functions run as salt's compound command in one
///   `local_async` job with list targeting ([`SaltApi::run_compound`]); hosts are asked
///   [`batch`](SaltCmdb::batch) at a time (default [`DEFAULT_BATCH`]).
/// * **Pillar**: `pillar.item <key> unmask=True` (see [`unmask`](SaltCmdb::unmask)) where the key is [`pillar_key`](SaltCmdb::pillar_key) with
///   `<template>` replaced by the template's name (default `pushguide:<template>`, i.e. the table
///   `shop` below the pillar key `pushguide`). The value must be a table of the kind's per-host keys;
///   a minion without it (salt answers `""`) has no settings from the pillar.
/// * **Grains**: each `(setting, grain)` of [`grain`](SaltCmdb::grain) sets the per-host key
///   `setting` to the minion's grain `grain` (`""` or missing: unset). Key by key the pillar wins
///   over a grain: the pillar is what ops wrote for pushguide, grains are what the minion reports.
/// * **Missing minions**: a minion that does not answer in time (down, or unknown to the master) is
///   reported by name with [`Error::Unanswered`] after every batch was asked — never merged as if it
///   had no settings. A function that fails on a minion (salt's message instead of a table) is
///   [`Error::Malformed`] naming the minion and the function.
/// * Values are data: they are checked by [`pushguide_sources::apply_cmdb`] with the bounds of a
///   template file and by the kind, like every CMDB value, and travel to minions as salt arguments.
///
/// The salt-api user needs eauth rights for `pillar.item` and `grains.item` on the minions (e.g.
/// `pushguide: ['pillar.item', 'grains.item', …]` in `external_auth`).
///
/// ```
/// use pushguide_salt::{SaltApi, SaltApiSettings, SaltCmdb};
/// # fn f(settings: SaltApiSettings) -> Result<(), pushguide_sources::Error> {
/// let cmdb = SaltCmdb::new(SaltApi::new(settings).unwrap())
///     .pillar_key("pushguide:<template>")?
///     .grain("root", "deploy_root")?;
/// # let _ = cmdb; Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct SaltCmdb {
    api: SaltApi,
    name: String,
    pillar_key: String,
    grains: BTreeMap<String, String>,
    batch: usize,
    timeout: Option<Duration>,
    unmask: bool,
}

impl SaltCmdb {
    /// Pillar and grains read through `api`, with the default pillar key and no grains.
    pub fn new(api: SaltApi) -> Self {
        let mut cmdb = SaltCmdb {
            api,
            name: String::new(),
            pillar_key: DEFAULT_PILLAR_KEY.to_owned(),
            grains: BTreeMap::new(),
            batch: DEFAULT_BATCH,
            timeout: None,
            unmask: true,
        };
        cmdb.rename();
        cmdb
    }

    fn rename(&mut self) {
        let endpoints = self.api.settings().endpoints.join(", ");
        self.name = format!("salt pillar {} via {endpoints}", self.pillar_key);
    }

    /// The pillar key to read; `<template>` is replaced by the template's name. Letters, digits and
    /// `_ - . : < >` only, at most 256 bytes.
    pub fn pillar_key(mut self, key: &str) -> Result<Self, Error> {
        check_name(&self.name, "pillar_key", key)?;
        self.pillar_key = key.to_owned();
        self.rename();
        Ok(self)
    }

    /// Sets the per-host key `setting` from the minion's grain `grain` (`:` walks into nested grains).
    pub fn grain(mut self, setting: &str, grain: &str) -> Result<Self, Error> {
        check_name(&self.name, "grains", grain)?;
        validate::text("grains", setting, validate::MAX_KEY_BYTES, false).map_err(|error| {
            Error::Invalid {
                source_name: self.name.clone(),
                error: Box::new(error),
            }
        })?;
        self.grains.insert(setting.to_owned(), grain.to_owned());
        Ok(self)
    }

    /// Hosts asked in one salt job (at least 1; default [`DEFAULT_BATCH`]).
    pub fn batch(mut self, hosts: usize) -> Self {
        self.batch = hosts.max(1);
        self
    }

    /// Whether `pillar.item` is asked for the values themselves (`unmask=True`, the default): salt
    /// 3008 masks pillar values in returns (`**********`) unless asked. Salt before 3008 has no
    /// `unmask` argument and refuses it: turn this off there.
    pub fn unmask(mut self, unmask: bool) -> Self {
        self.unmask = unmask;
        self
    }

    /// How long one job waits for the minions (default: the client's `job_timeout`).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The pillar key for `template`.
    pub fn key_for(&self, template: &str) -> Result<String, Error> {
        validate::name("template", template).map_err(|error| Error::Invalid {
            source_name: self.name.clone(),
            error: Box::new(error),
        })?;
        let key = self.pillar_key.replace(TEMPLATE_PLACEHOLDER, template);
        check_name(&self.name, "pillar_key", &key)?;
        Ok(key)
    }

    /// The compound call's functions: `pillar.item <key>`, then `grains.item <grains…>` when grains
    /// are read.
    fn calls(&self, key: &str) -> Vec<SaltCall> {
        let mut pillar = SaltCall::read("pillar.item").arg(key);
        if self.unmask {
            pillar = pillar.kwarg("unmask", true);
        }
        let mut calls = vec![self.read_call(pillar)];
        if !self.grains.is_empty() {
            let mut grains = SaltCall::read("grains.item");
            let mut names: Vec<&str> = self.grains.values().map(String::as_str).collect();
            names.sort_unstable();
            names.dedup();
            for g in names {
                grains = grains.arg(g);
            }
            calls.push(self.read_call(grains));
        }
        calls
    }

    fn read_call(&self, call: SaltCall) -> SaltCall {
        match self.timeout {
            Some(t) => call.timeout(t),
            None => call,
        }
    }

    /// One minion's settings from its compound return (`None`: nothing set).
    fn settings_of(
        &self,
        minion: &MinionId,
        key: &str,
        value: &Value,
    ) -> Result<Option<Map<String, Value>>, Error> {
        let part = |fun: &str| -> Result<&Map<String, Value>, Error> {
            match value.get(fun) {
                Some(Value::Object(m)) => Ok(m),
                Some(Value::String(s)) => Err(self.malformed(minion, fun, format!("salt: {s}"))),
                other => Err(self.malformed(
                    minion,
                    fun,
                    format!(
                        "expected a table, got {}",
                        kind_of(other.unwrap_or(&Value::Null))
                    ),
                )),
            }
        };
        let mut settings = match part("pillar.item")?.get(key) {
            None | Some(Value::Null) => Map::new(),
            Some(Value::String(s)) if s.is_empty() => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(other) => {
                return Err(self.malformed(
                    minion,
                    "pillar.item",
                    format!(
                        "pillar `{key}` must be a table of per-host settings, got {}",
                        kind_of(other)
                    ),
                ))
            }
        };
        if !self.grains.is_empty() {
            let grains = part("grains.item")?;
            for (setting, grain) in &self.grains {
                let v = match grains.get(grain) {
                    None | Some(Value::Null) => continue,
                    Some(Value::String(s)) if s.is_empty() => continue,
                    Some(v) => v,
                };
                if settings.get(setting).is_none_or(Value::is_null) {
                    settings.insert(setting.clone(), v.clone());
                }
            }
        }
        Ok((!settings.is_empty()).then_some(settings))
    }

    fn malformed(&self, minion: &MinionId, fun: &str, message: String) -> Error {
        Error::Malformed {
            source_name: self.name.clone(),
            location: format!("minion {minion}, {fun}"),
            message: shown(&message, 300),
        }
    }

    fn salt_error(&self, e: SaltError) -> Error {
        let source_name = self.name.clone();
        match e {
            SaltError::Unreachable { endpoint, message } => Error::Unreachable {
                source_name,
                url: endpoint,
                message,
            },
            SaltError::Timeout {
                endpoint, after, ..
            } => Error::Timeout {
                source_name,
                url: endpoint,
                timeout: after,
            },
            SaltError::Api {
                endpoint, status, ..
            } => Error::Status {
                source_name,
                url: endpoint,
                status,
            },
            SaltError::AllEndpointsDown { errors } => Error::Unreachable {
                source_name,
                url: self.api.settings().endpoints.join(", "),
                message: errors.join("; "),
            },
            SaltError::Protocol { .. } => Error::Malformed {
                source_name,
                location: "salt-api".into(),
                message: e.to_string(),
            },
            other => Error::Config {
                source_name,
                message: format!(
                    "{other} (the salt-api user needs eauth rights for pillar.item and grains.item)"
                ),
            },
        }
    }
}

#[async_trait]
impl Cmdb for SaltCmdb {
    fn name(&self) -> &str {
        &self.name
    }

    async fn host_settings(
        &self,
        template: &str,
        hosts: &[MinionId],
    ) -> Result<HostSettings, Error> {
        let key = self.key_for(template)?;
        let all;
        let hosts = if hosts.is_empty() {
            let every = TargetExpr {
                expression: "*".into(),
                tgt_type: TargetType::Glob,
            };
            all = self
                .api
                .resolve_targets(&every)
                .await
                .map_err(|e| self.salt_error(e))?;
            &all[..]
        } else {
            hosts
        };
        let calls = self.calls(&key);
        let mut out = HostSettings::new();
        let mut unanswered = Vec::new();
        for batch in hosts.chunks(self.batch) {
            let returns = self
                .api
                .run_compound(batch, &calls)
                .await
                .map_err(|e| self.salt_error(e))?;
            for m in batch {
                match returns.minions.get(m) {
                    Some(Outcome::Ok { value }) => {
                        if let Some(s) = self.settings_of(m, &key, value)? {
                            out.insert(m.clone(), s);
                        } else {
                            tracing::debug!(minion = %m, pillar = %key, "no pushguide settings in salt");
                        }
                    }
                    Some(Outcome::Failed { message, .. }) => {
                        return Err(self.malformed(m, "pillar.item", message.clone()))
                    }
                    Some(Outcome::NoReturn) | None => unanswered.push(m.to_string()),
                }
            }
        }
        if !unanswered.is_empty() {
            unanswered.sort();
            tracing::warn!(cmdb = %self.name, hosts = ?unanswered, "minions did not answer the CMDB read");
            return Err(Error::Unanswered {
                source_name: self.name.clone(),
                hosts: unanswered,
            });
        }
        tracing::debug!(cmdb = %self.name, template, hosts = out.len(), "read settings from salt");
        Ok(out)
    }
}

/// A pillar key or grain name: letters, digits, `_ - . : < >`, 1 to 256 bytes.
fn check_name(source: &str, field: &str, value: &str) -> Result<(), Error> {
    let ok = !value.is_empty()
        && value.len() <= MAX_NAME_BYTES
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.:<>".contains(c));
    if ok {
        return Ok(());
    }
    Err(Error::Invalid {
        source_name: source.to_owned(),
        error: Box::new(pushguide_core::Error::invalid(
            field,
            shown(value, 80),
            "must be 1 to 256 letters, digits or `_ - . : < >`",
        )),
    })
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a table",
    }
}

/// `text` escaped and cut after `max` characters, for messages.
fn shown(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .take(max)
        .flat_map(char::escape_debug)
        .collect();
    if text.chars().count() > max {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmdb() -> SaltCmdb {
        let settings = crate::SaltApiSettings {
            endpoints: vec!["http://127.0.0.1:9".into()],
            ..crate::SaltApiSettings::default()
        };
        SaltCmdb::new(SaltApi::new(settings).unwrap_or_else(|e| panic!("{e}")))
    }

    #[test]
    fn the_pillar_key_takes_the_template_name_and_refuses_odd_names() {
        let c = cmdb();
        assert_eq!(
            c.key_for("shop-web").ok().as_deref(),
            Some("pushguide:shop-web")
        );
        assert!(c.key_for("../x").is_err());
        for bad in ["", "a b", "a;b", "x$(id)", "pillar\n", &"k".repeat(300)] {
            let e = cmdb().pillar_key(bad).err().map(|e| e.to_string());
            assert!(e.is_some_and(|e| e.contains("pillar_key")), "{bad:?}");
            assert!(cmdb().grain("root", bad).is_err(), "{bad:?}");
        }
        let c = cmdb()
            .pillar_key("apps:<template>:hosts")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.key_for("shop").ok().as_deref(), Some("apps:shop:hosts"));
        assert!(c.name().contains("apps:<template>:hosts"));
    }

    #[test]
    fn pillar_wins_over_grains_and_empty_values_are_unset() {
        let c = cmdb()
            .grain("root", "deploy_root")
            .and_then(|c| c.grain("service", "svc"))
            .and_then(|c| c.grain("health_url", "nope"))
            .unwrap_or_else(|e| panic!("{e}"));
        let m = MinionId::new("web-01").unwrap_or_else(|e| panic!("{e}"));
        let v = serde_json::json!({
            "pillar.item": {"pushguide:shop": {"service": "tomcat-a", "root": null}},
            "grains.item": {"deploy_root": "/srv/a", "svc": "from-grain", "nope": ""},
        });
        let s = c
            .settings_of(&m, "pushguide:shop", &v)
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_default();
        assert_eq!(s.get("service"), Some(&Value::from("tomcat-a")));
        assert_eq!(s.get("root"), Some(&Value::from("/srv/a")));
        assert!(!s.contains_key("health_url"));
        let none = serde_json::json!({"pillar.item": {"pushguide:shop": ""}, "grains.item": {}});
        assert!(matches!(
            c.settings_of(&m, "pushguide:shop", &none),
            Ok(None)
        ));
        let failed = serde_json::json!({"pillar.item": "'pillar.item' is not available.", "grains.item": {}});
        let e = c
            .settings_of(&m, "pushguide:shop", &failed)
            .err()
            .map(|e| e.to_string());
        assert!(
            e.as_deref()
                .is_some_and(|e| e.contains("web-01") && e.contains("not available")),
            "{e:?}"
        );
        let list = serde_json::json!({"pillar.item": {"pushguide:shop": ["a"]}, "grains.item": {}});
        let e = c
            .settings_of(&m, "pushguide:shop", &list)
            .err()
            .map(|e| e.to_string());
        assert!(
            e.as_deref().is_some_and(|e| e.contains("must be a table")),
            "{e:?}"
        );
    }
}
