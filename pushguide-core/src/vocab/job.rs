//! Steps that travel as ONE salt job: a host's steps, run in order on the minion by the `pushguide`
//! salt execution module (`pushguide.steps`), which stops at the first failing step and returns every
//! step's result, duration and output.
//!
//! The wire format (protocol [`PROTOCOL`]) is documented in the `pushguide-salt` crate, which ships the
//! module; this file holds what the engine needs of it: the [`Step`] a hook describes, how a step is
//! judged ([`Check`]), the job's request ([`steps_call`]) and a pure decoder of one minion's answer
//! ([`decode_steps`]).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::vocab::call::{Effect, MinionId, Outcome, SaltCall};

/// The salt function that runs a job of steps.
pub const STEPS_FUN: &str = "pushguide.steps";

/// The protocol version the `pushguide` salt module speaks.
pub const PROTOCOL: u64 = 1;

/// How long a step without a timeout of its own may take, when a job's timeout is computed
/// ([`steps_call`]).
pub const STEP_DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// Longest error text kept from a minion (characters).
const MAX_ERROR_CHARS: usize = 500;

/// How a step's return is judged on the minion, after the call itself succeeded (no exception, no
/// non-zero retcode, no failed state).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Check {
    /// The call succeeding is enough.
    Succeeds,
    /// The return must be exactly `true` (`file.directory_exists`, `service.stop`).
    True,
    /// The return must be a non-empty string (`cp.get_url` answers the destination path).
    Nonempty,
    /// The return must be this text, ignoring ASCII case (`file.get_hash`).
    Equals(String),
    /// An `http.query` answer with this status and, when set, this text in the body.
    Http {
        /// Expected HTTP status.
        status: u16,
        /// Text the body must contain.
        body: Option<String>,
    },
}

impl Check {
    /// Judges a value the call returned: `Err` says why the step failed. The same rules as the salt
    /// module's, for the simulated fleet and for steps sent call by call.
    ///
    /// ```
    /// use pushguide_core::Check;
    /// use serde_json::json;
    /// assert!(Check::True.judge(&json!(true)).is_ok());
    /// assert_eq!(Check::True.judge(&json!("yes")).unwrap_err(), "expected true, got \"yes\"");
    /// let http = Check::Http { status: 200, body: None };
    /// assert_eq!(http.judge(&json!({"status": 503})).unwrap_err(), "HTTP 503");
    /// ```
    pub fn judge(&self, value: &Value) -> Result<(), String> {
        match self {
            Check::Succeeds => Ok(()),
            Check::True if value == &Value::Bool(true) => Ok(()),
            Check::True => Err(format!("expected true, got {}", json_text(value))),
            Check::Nonempty if value.as_str().is_some_and(|s| !s.is_empty()) => Ok(()),
            Check::Nonempty => Err(format!("expected a path, got {}", json_text(value))),
            Check::Equals(want)
                if value
                    .as_str()
                    .is_some_and(|got| got.eq_ignore_ascii_case(want)) =>
            {
                Ok(())
            }
            Check::Equals(want) => Err(format!("expected {want}, got {}", json_text(value))),
            Check::Http { status, body } => {
                // salt's http.query answers status 0 (and an error) when it could not connect
                let got = value
                    .get("status")
                    .and_then(Value::as_u64)
                    .filter(|s| *s != 0);
                let body_ok = body.as_deref().is_none_or(|want| {
                    value
                        .get("text")
                        .and_then(Value::as_str)
                        .is_some_and(|t| t.contains(want))
                });
                match got {
                    Some(s) if s == u64::from(*status) && body_ok => Ok(()),
                    Some(s) if s == u64::from(*status) => {
                        Err(format!("HTTP {s} without the expected body text"))
                    }
                    Some(s) => Err(format!("HTTP {s}")),
                    None => Err(value
                        .get("error")
                        .and_then(Value::as_str)
                        .map_or_else(|| format!("no status in {}", json_text(value)), cut)),
                }
            }
        }
    }
}

/// A step's JSON text, cut to a readable length.
fn json_text(value: &Value) -> String {
    cut(&value.to_string())
}

fn cut(text: &str) -> String {
    match text.char_indices().nth(MAX_ERROR_CHARS) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}

/// Trying a failed step again on the minion: at most `attempts` attempts in all, `interval` apart,
/// doubling up to `max_interval`, while the time taken plus the next wait stays within `within`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Retry {
    /// Attempts in all (at least 1).
    pub attempts: u32,
    /// The first wait.
    pub interval: Duration,
    /// The longest wait.
    pub max_interval: Duration,
    /// The longest time all attempts and waits may take.
    pub within: Duration,
}

/// One step of a job: a salt call, how its return is judged, an optional condition that skips it and
/// an optional retry.
///
/// ```
/// use pushguide_core::{Check, SaltCall, Step};
/// let download = Step::new(SaltCall::mutate("cp.get_url").arg("https://ci/shop.war").arg("/srv/shop/shop.war"))
///     .check(Check::Nonempty)
///     .unless(SaltCall::read("file.directory_exists").arg("/srv/shop/releases/1.4.2"));
/// assert!(download.call.is_mutating());
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Step {
    /// The call.
    pub call: SaltCall,
    /// How its return is judged.
    pub check: Check,
    /// A read-only call whose truthy answer skips the step ("the release is already there"); a
    /// condition that fails runs the step.
    pub unless: Option<SaltCall>,
    /// Whether and how a failed step is tried again.
    pub retry: Option<Retry>,
    /// What the step is for, put before the reason when it fails ("cannot roll back"). Not sent.
    pub what: Option<String>,
}

impl Step {
    /// A step judged by its call succeeding.
    pub fn new(call: SaltCall) -> Self {
        Step {
            call,
            check: Check::Succeeds,
            unless: None,
            retry: None,
            what: None,
        }
    }

    /// Says what the step is for: a failure reads `<what>: <reason>`.
    pub fn what(mut self, what: impl Into<String>) -> Self {
        self.what = Some(what.into());
        self
    }

    /// The reason a failure of this step is recorded with.
    pub fn failure(&self, why: &str) -> String {
        match &self.what {
            Some(w) => format!("{w}: {why}"),
            None => why.to_owned(),
        }
    }

    /// Marks the step's call mutating (a step read back with [`Step::from_wire`] is read-only).
    pub fn mutating(mut self) -> Self {
        self.call.effect = Effect::Mutating;
        self
    }

    /// Sets how the return is judged.
    pub fn check(mut self, check: Check) -> Self {
        self.check = check;
        self
    }

    /// Skips the step where `condition` (read-only) answers a truthy value.
    pub fn unless(mut self, condition: SaltCall) -> Self {
        self.unless = Some(condition);
        self
    }

    /// Tries a failed step again.
    pub fn retry(mut self, retry: Retry) -> Self {
        self.retry = Some(retry);
        self
    }

    /// The step as the salt module reads it.
    pub fn to_wire(&self) -> Value {
        let call = |c: &SaltCall| {
            json!({
                "fun": c.fun,
                "arg": c.arg,
                "kwarg": c.kwarg,
            })
        };
        let mut v = call(&self.call);
        let obj = v.as_object_mut().expect("a step is an object");
        obj.insert(
            "check".into(),
            serde_json::to_value(&self.check).unwrap_or(Value::Null),
        );
        obj.insert(
            "unless".into(),
            self.unless.as_ref().map_or(Value::Null, call),
        );
        obj.insert(
            "retry".into(),
            self.retry.as_ref().map_or(Value::Null, |r| {
                json!({
                    "attempts": r.attempts.max(1),
                    "interval": r.interval.as_secs_f64(),
                    "max_interval": r.max_interval.as_secs_f64(),
                    "within": r.within.as_secs_f64(),
                })
            }),
        );
        v
    }

    /// Reads a step back from the wire ([`Step::to_wire`]); `Err` names what is wrong. Every step
    /// read back is read-only unless its call is marked mutating by the caller: the wire does not
    /// carry the effect (the minion does not need it).
    pub fn from_wire(v: &Value) -> Result<Step, String> {
        let obj = v.as_object().ok_or("a step is not an object")?;
        let call = wire_call(obj)?;
        let check = match obj.get("check") {
            None | Some(Value::Null) => Check::Succeeds,
            Some(c) => serde_json::from_value(c.clone())
                .map_err(|e| format!("unknown check {}: {e}", json_text(c)))?,
        };
        let unless = match obj.get("unless") {
            None | Some(Value::Null) => None,
            Some(Value::Object(c)) => Some(wire_call(c)?),
            Some(other) => return Err(format!("`unless` is {}", json_text(other))),
        };
        let retry = match obj.get("retry") {
            None | Some(Value::Null) => None,
            Some(r) => {
                let secs = |k: &str| {
                    r.get(k)
                        .and_then(Value::as_f64)
                        .filter(|f| f.is_finite() && *f >= 0.0 && *f < 1e9)
                        .map(Duration::from_secs_f64)
                        .ok_or_else(|| format!("retry `{k}` is not a number of seconds"))
                };
                Some(Retry {
                    attempts: r
                        .get("attempts")
                        .and_then(Value::as_u64)
                        .and_then(|a| u32::try_from(a).ok())
                        .ok_or("retry `attempts` is not a count")?,
                    interval: secs("interval")?,
                    max_interval: secs("max_interval")?,
                    within: secs("within")?,
                })
            }
        };
        Ok(Step {
            call,
            check,
            unless,
            retry,
            what: None,
        })
    }

    /// The longest this step may take on the minion: its call's timeout (or
    /// [`STEP_DEFAULT_TIMEOUT`]), times its attempts, bounded by its retry's `within` plus one call.
    pub fn budget(&self) -> Duration {
        let one = self.call.timeout.unwrap_or(STEP_DEFAULT_TIMEOUT);
        let cond = self.unless.as_ref().map_or(Duration::ZERO, |c| {
            c.timeout.unwrap_or(STEP_DEFAULT_TIMEOUT)
        });
        match &self.retry {
            None => one + cond,
            Some(r) => (one * r.attempts.max(1)).min(r.within + one) + cond,
        }
    }
}

/// The request of a job: `pushguide.steps` with each group of hosts' steps (hosts with equal steps
/// share a plan). Mutating when any step (or condition) is; its timeout is the sum of the longest
/// plan's step budgets ([`Step::budget`]).
pub fn steps_call(groups: &[(Vec<MinionId>, Vec<Step>)]) -> SaltCall {
    let mut plans = Vec::with_capacity(groups.len());
    let mut hosts = Map::new();
    let mut mutating = false;
    let mut longest = Duration::ZERO;
    for (i, (members, steps)) in groups.iter().enumerate() {
        plans.push(Value::Array(steps.iter().map(Step::to_wire).collect()));
        for h in members {
            hosts.insert(h.as_str().to_owned(), Value::from(i));
        }
        mutating |= steps.iter().any(|s| s.call.is_mutating());
        longest = longest.max(steps.iter().map(Step::budget).sum());
    }
    let effect = if mutating {
        Effect::Mutating
    } else {
        Effect::ReadOnly
    };
    SaltCall::new(STEPS_FUN, effect)
        .kwarg("plans", Value::Array(plans))
        .kwarg("hosts", Value::Object(hosts))
        .timeout(longest)
}

fn wire_call(obj: &Map<String, Value>) -> Result<SaltCall, String> {
    let fun = obj
        .get("fun")
        .and_then(Value::as_str)
        .ok_or("a step has no `fun`")?;
    let mut call = SaltCall::read(fun);
    match obj.get("arg") {
        None | Some(Value::Null) => {}
        Some(Value::Array(a)) => call.arg = a.clone(),
        Some(other) => return Err(format!("`arg` of {fun} is {}", json_text(other))),
    }
    match obj.get("kwarg") {
        None | Some(Value::Null) => {}
        Some(Value::Object(k)) => {
            call.kwarg = k.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        }
        Some(other) => return Err(format!("`kwarg` of {fun} is {}", json_text(other))),
    }
    Ok(call)
}

/// Reads a job of steps ([`steps_call`]) back: each minion with its steps. For simulated fleets and
/// tests that look at the steps a job carried; `Err` names what is wrong.
///
/// ```
/// use pushguide_core::{job_steps, steps_call, MinionId, SaltCall, Step};
/// let web = MinionId::new("web-01").unwrap();
/// let call = steps_call(&[(vec![web.clone()], vec![Step::new(SaltCall::mutate("service.stop").arg("tomcat"))])]);
/// let steps = job_steps(&call).unwrap();
/// assert_eq!(steps[&web][0].call.fun, "service.stop");
/// ```
pub fn job_steps(call: &SaltCall) -> Result<BTreeMap<MinionId, Vec<Step>>, String> {
    if call.fun != STEPS_FUN {
        return Err(format!("`{}` is not a job of steps", call.fun));
    }
    let plans = call
        .kwarg
        .get("plans")
        .and_then(Value::as_array)
        .ok_or("the job has no `plans` list")?;
    let plans: Vec<Vec<Step>> = plans
        .iter()
        .enumerate()
        .map(|(i, p)| {
            p.as_array()
                .ok_or_else(|| format!("plan {i} is not a list"))?
                .iter()
                .map(Step::from_wire)
                .collect::<Result<Vec<Step>, String>>()
                .map_err(|e| format!("plan {i}: {e}"))
        })
        .collect::<Result<_, _>>()?;
    let hosts = call
        .kwarg
        .get("hosts")
        .and_then(Value::as_object)
        .ok_or("the job has no `hosts` map")?;
    let mut out = BTreeMap::new();
    for (id, i) in hosts {
        let minion = MinionId::new(id).map_err(|e| e.to_string())?;
        let plan = i
            .as_u64()
            .and_then(|i| plans.get(usize::try_from(i).ok()?))
            .ok_or_else(|| format!("minion {id}: no plan {}", json_text(i)))?;
        out.insert(minion, plan.clone());
    }
    Ok(out)
}

/// Python's truth of a JSON value, as the salt module judges an `unless` condition.
pub(crate) fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// What one step did on one minion.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepReturn {
    /// The step's outcome: `Ok` with its return, or `Failed` with why.
    pub outcome: Outcome,
    /// Whether its `unless` condition held and the step did not run.
    pub skipped: bool,
    /// Its duration on the minion, in milliseconds (condition, attempts and waits included).
    pub millis: u64,
    /// How many times it was tried.
    pub attempts: u32,
}

/// One minion's answer to a job: the steps it ran (or skipped) in order, up to and including the
/// first failing one.
#[derive(Clone, Debug, PartialEq)]
pub enum HostSteps {
    /// The module ran the minion's steps.
    Ran(Vec<StepReturn>),
    /// The module ran nothing (no steps for this minion, malformed job): why.
    Refused(String),
}

/// Reads one minion's answer to a job of `expected` steps ([`STEPS_FUN`]). Pure; `Err` says what is
/// wrong with an answer that is not the module's (an older module, another function's output).
///
/// ```
/// use pushguide_core::{decode_steps, HostSteps, Outcome};
/// use serde_json::json;
/// let answer = json!({"pushguide": 1, "minion": "web-01", "steps": [
///     {"fun": "service.stop", "ok": true, "skipped": false, "ret": true, "retcode": 0,
///      "error": null, "ms": 812.5, "attempts": 1},
///     {"fun": "file.symlink", "ok": false, "skipped": false, "ret": null, "retcode": 1,
///      "error": "CommandExecutionError: bad path", "ms": 3.1, "attempts": 1}]});
/// let HostSteps::Ran(steps) = decode_steps(&answer, 3).unwrap() else { panic!() };
/// assert_eq!(steps.len(), 2); // stopped at the failing step
/// assert_eq!(steps[0].millis, 813);
/// assert_eq!(steps[1].outcome, Outcome::failed(Some(1), "CommandExecutionError: bad path"));
/// ```
pub fn decode_steps(value: &Value, expected: usize) -> Result<HostSteps, String> {
    let obj = value.as_object().ok_or_else(|| {
        format!(
            "`{STEPS_FUN}` answered {}, not the module's report (is the pushguide salt module \
             installed and current?)",
            json_text(value)
        )
    })?;
    match obj.get("pushguide").and_then(Value::as_u64) {
        Some(PROTOCOL) => {}
        Some(other) => {
            return Err(format!(
                "the pushguide salt module on the minion speaks protocol {other}, this pushguide \
                 {PROTOCOL}: install the current module (`pushguide install-module`)"
            ))
        }
        None => {
            return Err(format!(
                "`{STEPS_FUN}` answered {} without a protocol version",
                json_text(value)
            ))
        }
    }
    if let Some(err) = obj.get("error").filter(|e| !e.is_null()) {
        return Ok(HostSteps::Refused(cut(err
            .as_str()
            .unwrap_or(&err.to_string()))));
    }
    let steps = obj
        .get("steps")
        .and_then(Value::as_array)
        .ok_or("the module's report has no `steps` list")?;
    if steps.len() > expected {
        return Err(format!(
            "the module reported {} steps for a job of {expected}",
            steps.len()
        ));
    }
    let mut out = Vec::with_capacity(steps.len());
    for (i, s) in steps.iter().enumerate() {
        out.push(decode_step(s).map_err(|e| format!("step {}: {e}", i + 1))?);
    }
    // every step before the last one listed succeeded: the module stops at the first failure
    if let Some(i) = out[..out.len().saturating_sub(1)]
        .iter()
        .position(|s| !s.outcome.is_ok())
    {
        return Err(format!(
            "step {} failed but the module went on to step {}",
            i + 1,
            i + 2
        ));
    }
    Ok(HostSteps::Ran(out))
}

fn decode_step(s: &Value) -> Result<StepReturn, String> {
    let obj = s.as_object().ok_or("not an object")?;
    let ok = obj
        .get("ok")
        .and_then(Value::as_bool)
        .ok_or("no `ok` flag")?;
    let skipped = obj.get("skipped").and_then(Value::as_bool).unwrap_or(false);
    let ms = obj.get("ms").and_then(Value::as_f64).unwrap_or(0.0);
    let millis = if ms.is_finite() && ms > 0.0 {
        ms.round().min(u64::MAX as f64) as u64
    } else {
        0
    };
    let attempts = obj
        .get("attempts")
        .and_then(Value::as_u64)
        .map_or(1, |a| u32::try_from(a).unwrap_or(u32::MAX));
    let ret = obj.get("ret").cloned().unwrap_or(Value::Null);
    let outcome = if ok {
        Outcome::Ok { value: ret }
    } else {
        // a step that failed its check returned normally: its retcode (0) says nothing
        let retcode = obj
            .get("retcode")
            .and_then(Value::as_i64)
            .filter(|rc| *rc != 0);
        let message = match obj.get("error").and_then(Value::as_str) {
            // the retcode is shown once: `retcode 3: starting`, not `retcode 3: retcode 3: …`
            Some(e) if !e.trim().is_empty() => {
                let e = match retcode {
                    Some(rc) => {
                        let head = format!("retcode {rc}");
                        match e.strip_prefix(&head) {
                            Some("") => "failed".to_owned(),
                            Some(rest) => rest.trim_start_matches(':').trim_start().to_owned(),
                            None => e.to_owned(),
                        }
                    }
                    None => e.to_owned(),
                };
                cut(&e)
            }
            _ => format!("failed, returned {}", json_text(&ret)),
        };
        Outcome::Failed { retcode, message }
    };
    Ok(StepReturn {
        outcome,
        skipped,
        millis,
        attempts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> MinionId {
        MinionId::new(s).unwrap()
    }

    #[test]
    fn a_job_carries_each_plan_once_and_maps_every_host_to_it() {
        let a = vec![Step::new(SaltCall::mutate("service.stop").arg("tomcat"))];
        let b = vec![Step::new(SaltCall::mutate("service.stop").arg("tomcat-2"))];
        let groups = vec![
            (vec![id("web-01"), id("web-03")], a),
            (vec![id("web-02")], b),
        ];
        let call = steps_call(&groups);
        assert_eq!(call.fun, STEPS_FUN);
        assert!(call.is_mutating());
        assert_eq!(call.kwarg["plans"].as_array().unwrap().len(), 2);
        assert_eq!(
            call.kwarg["hosts"],
            json!({"web-01": 0, "web-02": 1, "web-03": 0})
        );
        assert_eq!(
            call.kwarg["plans"][1][0],
            json!({"fun": "service.stop", "arg": ["tomcat-2"], "kwarg": {}, "check": "succeeds",
                   "unless": null, "retry": null})
        );
        assert_eq!(call.timeout, Some(STEP_DEFAULT_TIMEOUT));
    }

    #[test]
    fn checks_and_retries_reach_the_wire() {
        let s = Step::new(SaltCall::read("http.query").arg("http://x/"))
            .check(Check::Http {
                status: 200,
                body: Some("ok".into()),
            })
            .retry(Retry {
                attempts: 3,
                interval: Duration::from_secs(1),
                max_interval: Duration::from_secs(30),
                within: Duration::from_secs(30),
            })
            .unless(SaltCall::read("file.file_exists").arg("/x"));
        let w = s.to_wire();
        assert_eq!(w["check"], json!({"http": {"status": 200, "body": "ok"}}));
        assert_eq!(
            w["retry"],
            json!({"attempts": 3, "interval": 1.0, "max_interval": 30.0, "within": 30.0})
        );
        assert_eq!(w["unless"]["fun"], "file.file_exists");
        assert_eq!(
            Step::new(SaltCall::read("file.get_hash"))
                .check(Check::Equals("AB".into()))
                .to_wire()["check"],
            json!({"equals": "AB"})
        );
        assert!(!steps_call(&[(vec![id("a")], vec![s])]).is_mutating());
    }

    #[test]
    fn checks_judge_as_the_module_does() {
        assert!(Check::Nonempty.judge(&json!("/srv/x.war")).is_ok());
        assert!(Check::Nonempty.judge(&json!("")).is_err());
        assert!(Check::Nonempty.judge(&json!(false)).is_err());
        assert!(Check::Equals("abc".into()).judge(&json!("ABC")).is_ok());
        assert_eq!(
            Check::Equals("abc".into())
                .judge(&json!("abd"))
                .unwrap_err(),
            "expected abc, got \"abd\""
        );
        let h = Check::Http {
            status: 200,
            body: Some("up".into()),
        };
        assert!(h.judge(&json!({"status": 200, "text": "all up"})).is_ok());
        assert_eq!(
            h.judge(&json!({"status": 200, "text": "down"}))
                .unwrap_err(),
            "HTTP 200 without the expected body text"
        );
        assert_eq!(
            h.judge(&json!({"error": "connection refused"}))
                .unwrap_err(),
            "connection refused"
        );
        assert_eq!(h.judge(&json!(true)).unwrap_err(), "no status in true");
        assert_eq!(
            h.judge(&json!({"status": 0, "error": "[Errno 111] Connection refused"}))
                .unwrap_err(),
            "[Errno 111] Connection refused"
        );
    }

    #[test]
    fn answers_that_are_not_the_modules_are_named() {
        let e = decode_steps(&json!("'pushguide.steps' is not available."), 2).unwrap_err();
        assert!(e.contains("is the pushguide salt module installed"), "{e}");
        let e = decode_steps(&json!({"pushguide": 2, "steps": []}), 2).unwrap_err();
        assert!(e.contains("protocol 2"), "{e}");
        let e = decode_steps(&json!({"pushguide": 1, "steps": [{}, {}, {}]}), 2).unwrap_err();
        assert!(e.contains("3 steps for a job of 2"), "{e}");
        let e = decode_steps(
            &json!({"pushguide": 1, "steps": [{"ok": false}, {"ok": true}]}),
            2,
        )
        .unwrap_err();
        assert!(e.contains("went on"), "{e}");
        assert_eq!(
            decode_steps(
                &json!({"pushguide": 1, "error": "no steps for this minion", "steps": []}),
                2
            )
            .unwrap(),
            HostSteps::Refused("no steps for this minion".into())
        );
    }

    #[test]
    fn a_retcode_is_shown_once() {
        let v = json!({"pushguide": 1, "steps": [
            {"fun": "cmd.run_all", "ok": false, "retcode": 3, "error": "retcode 3: starting"}]});
        let HostSteps::Ran(s) = decode_steps(&v, 1).unwrap() else {
            panic!()
        };
        assert_eq!(s[0].outcome.reason().unwrap(), "retcode 3: starting");
        let v = json!({"pushguide": 1, "steps": [
            {"fun": "test.x", "ok": false, "retcode": 5, "error": "retcode 5"}]});
        let HostSteps::Ran(s) = decode_steps(&v, 1).unwrap() else {
            panic!()
        };
        assert_eq!(s[0].outcome.reason().unwrap(), "retcode 5: failed");
    }

    #[test]
    fn skipped_steps_and_durations_are_read() {
        let v = json!({"pushguide": 1, "steps": [
            {"fun": "cp.get_url", "ok": true, "skipped": true, "ret": null, "ms": 0.4},
            {"fun": "x", "ok": false, "error": "", "ret": false, "ms": -3, "attempts": 3}]});
        let HostSteps::Ran(s) = decode_steps(&v, 2).unwrap() else {
            panic!()
        };
        assert!(s[0].skipped && s[0].outcome.is_ok());
        assert_eq!(s[0].millis, 0);
        assert_eq!(s[1].attempts, 3);
        assert_eq!(
            s[1].outcome,
            Outcome::failed(None, "failed, returned false")
        );
    }

    #[test]
    fn decoding_never_panics_on_arbitrary_json() {
        // a small deterministic fuzz over shapes the decoder must refuse or read, never panic on
        let atoms = [
            json!(null),
            json!(1),
            json!(-1.5e308),
            json!("x"),
            json!([]),
            json!({}),
            json!(true),
            json!(f64::MAX),
        ];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..5000 {
            let mut step = Map::new();
            for key in ["ok", "skipped", "ret", "retcode", "error", "ms", "attempts"] {
                if next() % 3 != 0 {
                    let v = if key == "ok" && next() % 2 == 0 {
                        json!(next() % 2 == 0)
                    } else {
                        atoms[(next() % atoms.len() as u64) as usize].clone()
                    };
                    step.insert(key.into(), v);
                }
            }
            let n = (next() % 4) as usize;
            let steps: Vec<Value> = (0..n).map(|_| Value::Object(step.clone())).collect();
            let mut report = Map::new();
            if next() % 5 != 0 {
                report.insert("pushguide".into(), json!(1));
            }
            report.insert(
                "steps".into(),
                if next() % 6 == 0 {
                    atoms[(next() % atoms.len() as u64) as usize].clone()
                } else {
                    Value::Array(steps)
                },
            );
            if next() % 7 == 0 {
                report.insert(
                    "error".into(),
                    atoms[(next() % atoms.len() as u64) as usize].clone(),
                );
            }
            let _ = decode_steps(&Value::Object(report), (next() % 4) as usize);
        }
    }
}
