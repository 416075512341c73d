//! Several execution functions in ONE salt job: salt's compound command (`fun` a list, `arg` a list
//! of argument lists), sent as one `local_async` request with list targeting like any other call.

use std::collections::HashSet;

use pushguide_core::{MinionId, Returns, SaltCall};
use serde_json::{Map, Value};

use super::job::Job;
use super::SaltApi;
use crate::error::SaltError;

impl SaltApi {
    /// Runs every call of `calls` on `targets` in ONE salt job (salt's compound command: one
    /// `local_async` request, list targeting) and collects the returns like [`SaltApi::run`].
    ///
    /// Each minion that answered has [`Outcome::Ok`](pushguide_core::Outcome::Ok) whose value is an
    /// object keyed by function name (`{"pillar.item": …, "grains.item": …}`); a function that failed
    /// on that minion holds salt's message (a string) there. Minions without a return are
    /// [`Outcome::NoReturn`](pushguide_core::Outcome::NoReturn). Keyword arguments travel packed in
    /// their function's argument list (`{"__kwarg__": true, …}`), as salt's own client sends them.
    ///
    /// The job waits for the longest timeout of `calls` (else the settings' `job_timeout`); it is
    /// read-only (its start may be resent to another endpoint) only when every call is. An empty
    /// `calls`, a function named twice (salt keys the returns by name) or an empty name is refused
    /// with [`SaltError::Protocol`] before anything is sent.
    pub async fn run_compound(
        &self,
        targets: &[MinionId],
        calls: &[SaltCall],
    ) -> Result<Returns, SaltError> {
        let refuse = |message: String| SaltError::Protocol {
            context: "compound call".into(),
            message,
            snippet: String::new(),
        };
        if calls.is_empty() {
            return Err(refuse("no function to run".into()));
        }
        let mut seen = HashSet::new();
        let mut wait = None;
        let mut funs = Vec::with_capacity(calls.len());
        let mut args = Vec::with_capacity(calls.len());
        for call in calls {
            if call.fun.is_empty() || call.fun.contains([',', ' ']) {
                return Err(refuse(format!("bad function name {:?}", call.fun)));
            }
            if !seen.insert(call.fun.as_str()) {
                return Err(refuse(format!(
                    "function {} is named twice (salt keys the returns by function)",
                    call.fun
                )));
            }
            let w = self.inner.call_wait(call)?;
            wait = Some(wait.map_or(w, |old: std::time::Duration| old.max(w)));
            funs.push(Value::String(call.fun.clone()));
            let mut a = call.arg.clone();
            if !call.kwarg.is_empty() {
                let mut kw: Map<String, Value> = call
                    .kwarg
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                kw.insert("__kwarg__".into(), Value::Bool(true));
                a.push(Value::Object(kw));
            }
            args.push(Value::Array(a));
        }
        let label: Vec<&str> = calls.iter().map(|c| c.fun.as_str()).collect();
        let label = label.join(",");
        let mut low = Map::new();
        low.insert("client".into(), "local_async".into());
        low.insert("tgt_type".into(), "list".into());
        low.insert("fun".into(), Value::Array(funs));
        low.insert("arg".into(), Value::Array(args));
        let job = Job {
            low,
            wait: wait.unwrap_or(self.inner.settings.job_timeout),
            read_only: calls.iter().all(|c| !c.is_mutating()),
            label: &label,
        };
        self.inner.run_job(targets, &job).await
    }
}
