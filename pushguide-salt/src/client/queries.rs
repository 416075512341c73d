//! Calls answered by one request: runners (`manage.*`, `jobs.lookup_jid`), wheel (`key.*`) and target
//! resolution.

use std::collections::{BTreeMap, HashSet};

use pushguide_core::{resolve_list, MinionId, Outcome, TargetExpr, TargetType};
use serde_json::{json, Map, Value};

use super::endpoint::Req;
use super::{Inner, SaltApi};
use crate::decode::{self, ManageStatus};
use crate::error::SaltError;

impl Inner {
    /// Sends one lowstate chunk `client`/`fun` with `kwargs` to the first endpoint that takes it and
    /// returns the raw answer; `resend_ok` as in [`Inner::request_any`].
    async fn lowstate(
        &self,
        client: &str,
        fun: &str,
        kwargs: Map<String, Value>,
        resend_ok: bool,
    ) -> Result<Vec<u8>, SaltError> {
        let mut low = kwargs;
        low.insert("client".into(), client.into());
        low.insert("fun".into(), fun.into());
        let body = Value::Array(vec![Value::Object(low)]);
        let (_, bytes) = self
            .request_any(
                Req::Post("/", &body),
                self.settings.request_timeout,
                resend_ok,
            )
            .await?;
        Ok(bytes)
    }

    /// A runner function (read-only: may be resent to another endpoint).
    async fn runner_raw(
        &self,
        fun: &str,
        kwargs: Map<String, Value>,
    ) -> Result<Vec<u8>, SaltError> {
        self.lowstate("runner", fun, kwargs, true).await
    }

    /// A wheel function (may change keys: never resent once received).
    async fn wheel_raw(&self, fun: &str, kwargs: Map<String, Value>) -> Result<Vec<u8>, SaltError> {
        self.lowstate("wheel", fun, kwargs, false).await
    }
}

impl SaltApi {
    /// Resolves a target expression to minion ids: `list` locally; the other types by asking the master
    /// which minions a `local_async` `test.ping` with that `tgt_type` is sent to (the master matches ids
    /// against accepted keys and grains against its cache, so minions that are down are included).
    pub async fn resolve_targets(&self, target: &TargetExpr) -> Result<Vec<MinionId>, SaltError> {
        if target.tgt_type == TargetType::List {
            return resolve_list(target).map_err(|e| SaltError::Protocol {
                context: "target".into(),
                message: e.message,
                snippet: String::new(),
            });
        }
        let body = json!([{
            "client": "local_async",
            "tgt": target.expression,
            "tgt_type": target.tgt_type.as_str(),
            "fun": "test.ping",
        }]);
        let inner = &self.inner;
        let (_, bytes) = inner
            .request_any(Req::Post("/", &body), inner.settings.request_timeout, true)
            .await?;
        let mut ids = match decode::local_async(&bytes)? {
            None => Vec::new(),
            Some(job) => job.minions,
        };
        ids.sort();
        ids.dedup();
        ids.iter()
            .map(|m| {
                MinionId::new(m)
                    .map_err(|e| SaltError::protocol("resolve", e.to_string(), m.as_bytes()))
            })
            .collect()
    }

    /// Runs a runner function (`client: runner`) with keyword arguments and returns its value.
    pub async fn runner(&self, fun: &str, kwargs: Map<String, Value>) -> Result<Value, SaltError> {
        let bytes = self.inner.runner_raw(fun, kwargs).await?;
        decode::runner(&bytes)
    }

    /// The `manage.status` runner: which minions with accepted keys answer.
    pub async fn manage_status(&self) -> Result<ManageStatus, SaltError> {
        let bytes = self.inner.runner_raw("manage.status", Map::new()).await?;
        decode::manage_status(&bytes)
    }

    /// The `manage.up` runner: the minions that answer.
    pub async fn manage_up(&self) -> Result<Vec<String>, SaltError> {
        let v = self.runner("manage.up", Map::new()).await?;
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .ok_or_else(|| {
                SaltError::protocol(
                    "manage.up",
                    "the return is not a list",
                    v.to_string().as_bytes(),
                )
            })
    }

    /// The `jobs.lookup_jid` runner: each minion's normalized outcome of job `jid` (of function `fun`,
    /// used to read its return shape). Sent to the first available endpoint: a master only knows its
    /// own jobs.
    pub async fn lookup_jid(
        &self,
        jid: &str,
        fun: &str,
    ) -> Result<BTreeMap<String, Outcome>, SaltError> {
        let mut kw = Map::new();
        kw.insert("jid".into(), jid.into());
        let bytes = self.inner.runner_raw("jobs.lookup_jid", kw).await?;
        decode::lookup_jid(fun, &bytes)
    }

    /// Runs a wheel function (`client: wheel`) and returns its value.
    pub async fn wheel(&self, fun: &str, kwargs: Map<String, Value>) -> Result<Value, SaltError> {
        let bytes = self.inner.wheel_raw(fun, kwargs).await?;
        decode::wheel(&bytes)
    }

    /// The wheel `key.list_all`: accepted, pending, rejected and denied minion keys.
    pub async fn key_list_all(&self) -> Result<decode::KeyList, SaltError> {
        let bytes = self.inner.wheel_raw("key.list_all", Map::new()).await?;
        decode::key_list_all(&bytes)
    }

    /// Whether each of `minions` answers, through the `manage.status` runner restricted to them (list
    /// target). Unknown ids are `false`.
    pub async fn ping(&self, minions: &[MinionId]) -> Result<BTreeMap<MinionId, bool>, SaltError> {
        if minions.is_empty() {
            return Ok(BTreeMap::new());
        }
        let tgt: Vec<&str> = minions.iter().map(MinionId::as_str).collect();
        let mut kw = Map::new();
        kw.insert("tgt".into(), tgt.join(",").into());
        kw.insert("tgt_type".into(), "list".into());
        let bytes = self.inner.runner_raw("manage.status", kw).await?;
        let status = decode::manage_status(&bytes)?;
        let up: HashSet<&str> = status.up.iter().map(String::as_str).collect();
        Ok(minions
            .iter()
            .map(|m| (m.clone(), up.contains(m.as_str())))
            .collect())
    }
}
