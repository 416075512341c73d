//! Salt's compound command in the fake: `client: local_async` with `fun` a list of functions and
//! `arg` a list of argument lists. Each function runs through the fleet (its rules apply per
//! function); a minion's return is `{fun: value}` with `retcode` and `success` keyed by function, as
//! a real minion publishes it. A minion that does not return one of the functions returns nothing.

use std::sync::Arc;
use std::time::SystemTime;

use pushguide_core::{MinionId, Outcome, SaltCall};
use serde_json::{json, Map, Value};

use super::http::{Request, Response};
use super::JOBS_KEPT;
use super::{lock, return_records, salt_call, salt_time, stopped, targets, Job, JobReturn, State};

/// Starts a compound job: `{"jid","minions"}` at once, the functions run in the background.
pub(super) async fn local_async(
    state: &Arc<State>,
    req: &Request,
    low: &Map<String, Value>,
) -> Result<Value, Response> {
    let funs: Vec<String> = match low.get("fun") {
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|f| f.as_str().map(str::to_owned))
            .collect::<Option<_>>()
            .ok_or_else(|| Response::html_error(400, "`fun` must list function names"))?,
        _ => return Err(Response::html_error(400, "`fun` must list function names")),
    };
    let args: Vec<Value> = match low.get("arg") {
        None | Some(Value::Null) => vec![Value::Array(Vec::new()); funs.len()],
        Some(Value::Array(a)) if a.len() == funs.len() => a.clone(),
        Some(_) => {
            return Err(Response::html_error(
                400,
                "a compound command needs one argument list per function",
            ))
        }
    };
    let calls: Vec<SaltCall> = funs
        .iter()
        .zip(&args)
        .map(|(fun, a)| call_of(fun, a))
        .collect();
    let minions = targets(state, low).await?;
    if minions.is_empty() {
        return Ok(json!({}));
    }
    let jid = state.new_jid();
    let names: Vec<String> = minions.iter().map(ToString::to_string).collect();
    let fun = Value::Array(funs.iter().cloned().map(Value::String).collect());
    let fun_args = Value::Array(args);
    {
        let mut jobs = lock(&state.jobs);
        if jobs.order.len() >= JOBS_KEPT {
            if let Some(old) = jobs.order.pop_front() {
                jobs.by_jid.remove(&old);
            }
        }
        jobs.order.push_back(jid.clone());
        jobs.by_jid.insert(
            jid.clone(),
            Job {
                fun: fun.clone(),
                args: fun_args.as_array().cloned().unwrap_or_default(),
                tgt: low.get("tgt").cloned().unwrap_or(Value::Null),
                tgt_type: "list".to_owned(),
                minions: names.clone(),
                start: salt_time(SystemTime::now(), false),
                result: Vec::new(),
            },
        );
    }
    state.publish(
        &format!("salt/job/{jid}/new"),
        &json!({
            "jid": jid, "tgt_type": "list", "tgt": low.get("tgt"), "user": state.user, "fun": fun,
            "arg": fun_args, "minions": names, "missing": [],
            "_stamp": salt_time(SystemTime::now(), true),
        }),
    );
    let st = Arc::clone(state);
    let j = jid.clone();
    let received = req.received;
    let shutdown = state.shutdown.clone();
    tokio::spawn(async move {
        tokio::select! {
            () = run(&st, &j, received, minions, calls, (fun, fun_args)) => {}
            () = stopped(shutdown.clone()) => {}
        }
    });
    Ok(json!({"jid": jid, "minions": names}))
}

/// One function of the compound command, its `{"__kwarg__": true, …}` entries as keyword arguments.
fn call_of(fun: &str, args: &Value) -> SaltCall {
    let mut low = Map::new();
    let mut positional = Vec::new();
    let mut kwarg = Map::new();
    for a in args.as_array().map(Vec::as_slice).unwrap_or_default() {
        match a {
            Value::Object(o) if o.get("__kwarg__") == Some(&Value::Bool(true)) => {
                kwarg.extend(
                    o.iter()
                        .filter(|(k, _)| *k != "__kwarg__")
                        .map(|(k, v)| (k.clone(), v.clone())),
                );
            }
            other => positional.push(other.clone()),
        }
    }
    low.insert("arg".into(), Value::Array(positional));
    low.insert("kwarg".into(), Value::Object(kwarg));
    salt_call(&low, fun)
}

async fn run(
    state: &State,
    jid: &str,
    received: std::time::Instant,
    minions: Vec<MinionId>,
    calls: Vec<SaltCall>,
    (fun, fun_args): (Value, Value),
) {
    let mut per_call = Vec::with_capacity(calls.len());
    for call in &calls {
        match state.fleet.call_since(received, &minions, call).await {
            Ok(r) => per_call.push(r),
            Err(e) => {
                tracing::debug!(%jid, error = %e, "fake salt-api: the fleet failed the job");
                return;
            }
        }
    }
    let mut entries: Vec<JobReturn> = Vec::with_capacity(minions.len());
    'minions: for m in &minions {
        let (mut ret, mut rcs, mut oks) = (Map::new(), Map::new(), Map::new());
        for (call, returns) in calls.iter().zip(&per_call) {
            let (value, rc, ok) = match returns.minions.get(m) {
                None | Some(Outcome::NoReturn) => continue 'minions,
                Some(Outcome::Ok { value }) => (value.clone(), 0, true),
                Some(Outcome::Failed { retcode, message }) => {
                    (Value::String(message.clone()), retcode.unwrap_or(1), false)
                }
            };
            ret.insert(call.fun.clone(), value);
            rcs.insert(call.fun.clone(), rc.into());
            oks.insert(call.fun.clone(), ok.into());
        }
        entries.push((
            m.clone(),
            Value::Object(ret),
            Value::Object(rcs),
            Value::Object(oks),
        ));
    }
    let lost = !entries.is_empty() && state.faults.take_lost_returns();
    if state.events.receiver_count() > 0 && !entries.is_empty() && !lost {
        let stamp = salt_time(SystemTime::now(), true);
        let records = return_records(jid, (&fun, &fun_args), &state.user, &stamp, &entries);
        let _ = state.events.send(Arc::from(records));
    }
    if let Some(job) = lock(&state.jobs).by_jid.get_mut(jid) {
        job.result.extend(entries);
    }
}
