//! A simulated fleet: an in-process [`Transport`] with scripted per-minion, per-function outcomes,
//! latency and minions that never answer. For quickstarts, benchmarks and users' own tests.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use crate::ports::transport::Transport;
use crate::vocab::call::{Effect, MinionId, Outcome, Returns, SaltCall};
use crate::vocab::error::Error;
use crate::vocab::error::{TransportError, TransportErrorKind};
use crate::vocab::job::{job_steps, truthy, Step, PROTOCOL, STEPS_FUN};
use crate::vocab::target::{resolve_list, TargetExpr, TargetType};

/// One request the fleet received.
#[derive(Clone, Debug, PartialEq)]
pub struct SimRequest {
    /// Salt function.
    pub fun: String,
    /// Target minions, in the order sent.
    pub targets: Vec<MinionId>,
    /// Its effect.
    pub effect: Effect,
    /// The whole call.
    pub call: SaltCall,
}

#[derive(Debug)]
struct Rule {
    minion: Option<String>,
    fun: String,
    needle: Option<String>,
    outcome: Outcome,
    remaining: Option<usize>,
}

/// A scripted fleet. Every known minion answers `true` to every function unless a rule says otherwise;
/// unknown minions never answer.
///
/// ```
/// use pushguide_core::{sim::SimFleet, MinionId, Outcome, SaltCall, Transport};
/// # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
/// # rt.block_on(async {
/// let fleet = SimFleet::new(["web-01", "web-02"]).unwrap()
///     .on("web-02", "cmd.run_all", Outcome::failed(Some(1), "exit 1"));
/// let hosts = fleet.minions().to_vec();
/// let mut r = fleet.call(&hosts, &SaltCall::mutate("cmd.run_all").arg("true")).await.unwrap();
/// assert!(r.take(&hosts[0]).is_ok());
/// assert!(!r.take(&hosts[1]).is_ok());
/// assert_eq!(fleet.requests().len(), 1); // one request for both minions
/// # });
/// ```
#[derive(Debug)]
pub struct SimFleet {
    minions: Vec<MinionId>,
    known: crate::vocab::call::MinionMap<()>,
    latency: Duration,
    record: bool,
    rules: Mutex<Vec<Rule>>,
    requests: Mutex<Vec<SimRequest>>,
    jid: std::sync::atomic::AtomicU64,
}

impl SimFleet {
    /// A fleet of the given minion ids (validated).
    pub fn new<I: IntoIterator<Item = S>, S: AsRef<str>>(ids: I) -> Result<Self, Error> {
        let minions = ids
            .into_iter()
            .map(|s| MinionId::new(s.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SimFleet {
            known: minions.iter().map(|m| (m.clone(), ())).collect(),
            minions,
            latency: Duration::ZERO,
            record: true,
            rules: Mutex::new(Vec::new()),
            requests: Mutex::new(Vec::new()),
            jid: std::sync::atomic::AtomicU64::new(20_260_000_000_000_000),
        })
    }

    /// Every request waits `latency` before returning (one wait per request, whatever its width).
    ///
    /// The wait is precise to a fraction of a millisecond (tokio's timer alone overshoots by about
    /// 1 ms); under tokio's paused test clock it advances virtual time only.
    pub fn with_latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    /// [`Transport::call`] with the latency counted from `since` (when the request reached whatever
    /// fronts the fleet, such as a fake salt-api) instead of from now.
    pub async fn call_since(
        &self,
        since: std::time::Instant,
        targets: &[MinionId],
        call: &SaltCall,
    ) -> Result<Returns, TransportError> {
        if self.record {
            self.requests
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(SimRequest {
                    fun: call.fun.clone(),
                    targets: targets.to_vec(),
                    effect: call.effect,
                    call: call.clone(),
                });
        }
        if !self.latency.is_zero() {
            wait_precisely(since, self.latency).await;
        }
        if call.fun == STEPS_FUN {
            return self.run_job(targets, call).await;
        }
        let jid = self.jid.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut returns = Returns::with_jid(jid.to_string());
        returns.minions.reserve(targets.len());
        let mut rules = self.rules.lock().unwrap_or_else(PoisonError::into_inner);
        for m in targets {
            if !self.known.contains_key(m) {
                continue; // unknown minions never answer
            }
            let outcome = if rules.is_empty() {
                Outcome::Ok {
                    value: Value::Bool(true),
                }
            } else {
                Self::outcome_for(&mut rules, m, call).unwrap_or(Outcome::Ok {
                    value: Value::Bool(true),
                })
            };
            if outcome != Outcome::NoReturn {
                returns.minions.insert(m.clone(), outcome);
            }
        }
        Ok(returns)
    }

    /// A job of steps ([`STEPS_FUN`]) as the pushguide salt module runs it: each minion's steps in
    /// order, each answered by the rules of its own function (so a rule on `service.stop` fails that
    /// step of a job), judged by the step's check, skipped where its `unless` condition answers a
    /// truthy value, tried again per its retry (the waits are slept once, after), stopped at the
    /// first failing step. A step ruled `NoReturn` makes the minion give no return at all; a rule on
    /// [`STEPS_FUN`] itself or on every function (`"*"`) answers for the whole job.
    async fn run_job(
        &self,
        targets: &[MinionId],
        call: &SaltCall,
    ) -> Result<Returns, TransportError> {
        let jid = self.jid.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut returns = Returns::with_jid(jid.to_string());
        let plans = job_steps(call);
        let mut slept = Duration::ZERO;
        {
            let mut rules = self.rules.lock().unwrap_or_else(PoisonError::into_inner);
            for m in targets {
                if !self.known.contains_key(m) {
                    continue;
                }
                // a rule on the job itself (or on every function) answers for the whole job: a
                // minion that is down, a module that is missing
                if let Some(whole) = Self::outcome_for(&mut rules, m, call) {
                    if whole != Outcome::NoReturn {
                        returns.minions.insert(m.clone(), whole);
                    }
                    continue;
                }
                let answer = match &plans {
                    Err(e) => Some(serde_json::json!({
                        "pushguide": PROTOCOL, "minion": m.as_str(), "error": e, "steps": []
                    })),
                    Ok(plans) => match plans.get(m) {
                        None => Some(serde_json::json!({
                            "pushguide": PROTOCOL, "minion": m.as_str(),
                            "error": "no steps for this minion", "steps": []
                        })),
                        Some(steps) => {
                            let (answer, waited) = Self::run_steps(&mut rules, m, steps);
                            slept = slept.max(waited);
                            answer
                        }
                    },
                };
                if let Some(value) = answer {
                    returns.minions.insert(m.clone(), Outcome::Ok { value });
                }
            }
        }
        if !slept.is_zero() {
            tokio::time::sleep(slept).await;
        }
        Ok(returns)
    }

    /// One minion's steps; `None` when a step never answers. Returns the module's report and the
    /// time its retries waited.
    fn run_steps(rules: &mut [Rule], m: &MinionId, steps: &[Step]) -> (Option<Value>, Duration) {
        let mut out = Vec::new();
        let mut waited = Duration::ZERO;
        let answer = |rules: &mut [Rule], c: &SaltCall| {
            if rules.is_empty() {
                Outcome::ok(true)
            } else {
                Self::outcome_for(rules, m, c).unwrap_or(Outcome::ok(true))
            }
        };
        for step in steps {
            if let Some(cond) = &step.unless {
                if let Outcome::Ok { value } = answer(rules, cond) {
                    if truthy(&value) {
                        out.push(serde_json::json!({
                            "fun": step.call.fun, "ok": true, "skipped": true, "ret": null,
                            "retcode": null, "error": null, "ms": 0.0, "attempts": 1
                        }));
                        continue;
                    }
                }
            }
            let mut attempts = 1u32;
            let mut spent = Duration::ZERO;
            let mut interval = step.retry.as_ref().map_or(Duration::ZERO, |r| r.interval);
            let (ret, retcode, error) = loop {
                let judged = match answer(rules, &step.call) {
                    Outcome::NoReturn => return (None, waited),
                    Outcome::Failed { retcode, message } => (Value::Null, retcode, Some(message)),
                    Outcome::Ok { value } => {
                        let error = step.check.judge(&value).err();
                        (value, Some(0), error)
                    }
                };
                let more = judged.2.is_some()
                    && step.retry.as_ref().is_some_and(|r| {
                        attempts < r.attempts.max(1) && spent + interval <= r.within
                    });
                if !more {
                    break judged;
                }
                spent += interval;
                attempts += 1;
                if let Some(r) = &step.retry {
                    interval = (interval * 2).min(r.max_interval);
                }
            };
            waited += spent;
            let ok = error.is_none();
            out.push(serde_json::json!({
                "fun": step.call.fun, "ok": ok, "skipped": false, "ret": ret,
                "retcode": retcode, "error": error, "ms": spent.as_secs_f64() * 1000.0,
                "attempts": attempts
            }));
            if !ok {
                break;
            }
        }
        (
            Some(serde_json::json!({"pushguide": PROTOCOL, "minion": m.as_str(), "steps": out})),
            waited,
        )
    }

    /// The requests received with every job of steps ([`STEPS_FUN`]) opened up: one entry per step
    /// and per group of minions with that same step, in the order of the job (a job's condition
    /// calls are not listed). What the minions were asked to run, whether each call came alone or
    /// in a job.
    pub fn step_requests(&self) -> Vec<SimRequest> {
        let mut out = Vec::new();
        for r in self.requests() {
            if r.fun != STEPS_FUN {
                out.push(r);
                continue;
            }
            let Ok(plans) = job_steps(&r.call) else {
                out.push(r);
                continue;
            };
            // each distinct step, with the minions that have it, in order of first appearance
            let mut steps: Vec<(SaltCall, Vec<MinionId>)> = Vec::new();
            for m in &r.targets {
                for step in plans.get(m).into_iter().flatten() {
                    match steps.iter_mut().find(|(c, _)| c == &step.call) {
                        Some((_, ms)) => ms.push(m.clone()),
                        None => steps.push((step.call.clone(), vec![m.clone()])),
                    }
                }
            }
            for (call, targets) in steps {
                out.push(SimRequest {
                    fun: call.fun.clone(),
                    targets,
                    effect: call.effect,
                    call,
                });
            }
        }
        out
    }

    /// Whether to keep a log of requests (default on; turn off for long benchmarks).
    pub fn recording(mut self, record: bool) -> Self {
        self.record = record;
        self
    }

    /// `minion` (or `"*"` for all) answers `outcome` to `fun` (or `"*"` for any function).
    pub fn on(self, minion: &str, fun: &str, outcome: Outcome) -> Self {
        self.add_rule(minion, fun, outcome, None);
        self
    }

    /// Like [`SimFleet::on`], for the next `times` matching calls only.
    pub fn on_times(self, minion: &str, fun: &str, outcome: Outcome, times: usize) -> Self {
        self.add_rule(minion, fun, outcome, Some(times));
        self
    }

    /// `minion` never answers anything.
    pub fn down(self, minion: &str) -> Self {
        self.on(minion, "*", Outcome::NoReturn)
    }

    /// Adds a rule at run time (newest rules win).
    pub fn add_rule(&self, minion: &str, fun: &str, outcome: Outcome, times: Option<usize>) {
        self.push_rule(minion, fun, None, outcome, times);
    }

    /// Like [`SimFleet::add_rule`], for calls of `fun` with a positional argument containing `needle`
    /// (e.g. one release directory).
    pub fn add_rule_for_arg(&self, minion: &str, fun: &str, needle: &str, outcome: Outcome) {
        self.push_rule(minion, fun, Some(needle.to_owned()), outcome, None);
    }

    fn push_rule(
        &self,
        minion: &str,
        fun: &str,
        needle: Option<String>,
        outcome: Outcome,
        times: Option<usize>,
    ) {
        let minion = (minion != "*").then(|| minion.to_owned());
        self.rules
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Rule {
                minion,
                needle,
                fun: fun.to_owned(),
                outcome,
                remaining: times,
            });
    }

    /// Removes every rule.
    pub fn clear_rules(&self) {
        self.rules
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// The fleet's minions.
    pub fn minions(&self) -> &[MinionId] {
        &self.minions
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<SimRequest> {
        self.requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Forgets the request log.
    pub fn clear_requests(&self) {
        self.requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    fn outcome_for(rules: &mut [Rule], minion: &MinionId, call: &SaltCall) -> Option<Outcome> {
        let fun = call.fun.as_str();
        let rule = rules.iter_mut().rev().find(|r| {
            r.remaining != Some(0)
                && (r.fun == "*" || r.fun == fun)
                && r.needle.as_deref().is_none_or(|n| {
                    call.arg
                        .iter()
                        .any(|a| a.as_str().is_some_and(|s| s.contains(n)))
                })
                && r.minion.as_deref().is_none_or(|m| m == minion.as_str())
        })?;
        if let Some(n) = rule.remaining.as_mut() {
            *n -= 1;
        }
        Some(rule.outcome.clone())
    }
}

/// The part of a simulated latency left to a thread's sleep instead of tokio's millisecond timer.
const FINE_WAIT: Duration = Duration::from_millis(2);

/// Waits until `latency` after `since`: tokio's timer for all but the last [`FINE_WAIT`] (it never
/// wakes early, and it honours a paused test clock), then a blocking-pool thread for what is left by
/// the real clock. Under a paused clock the real clock has not moved, so the rest is waited in
/// virtual time too.
async fn wait_precisely(since: std::time::Instant, latency: Duration) {
    let left = latency.saturating_sub(since.elapsed());
    let coarse = left.saturating_sub(FINE_WAIT);
    let before = std::time::Instant::now();
    tokio::time::sleep(coarse).await;
    if before.elapsed() < coarse {
        tokio::time::sleep(left - coarse).await; // virtual clock
        return;
    }
    let until = since + latency;
    if std::time::Instant::now() >= until {
        return;
    }
    if tokio::task::spawn_blocking(move || finish_wait(until))
        .await
        .is_err()
    {
        // the runtime is shutting down: the coarse timer still keeps the order of magnitude
        tokio::time::sleep_until(until.into()).await;
    }
}

/// Blocks until `until`: a thread sleep to within [`SPIN_WAIT`] (sleeps overshoot by some tens of
/// microseconds), then checks of the clock. Runs on the blocking pool, never on a runtime worker.
fn finish_wait(until: std::time::Instant) {
    let now = std::time::Instant::now();
    if until > now + SPIN_WAIT {
        std::thread::sleep(until - now - SPIN_WAIT);
    }
    while std::time::Instant::now() < until {
        std::hint::spin_loop();
    }
}

/// The end of a simulated latency watched on the clock rather than slept.
const SPIN_WAIT: Duration = Duration::from_micros(150);

fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    match (pattern.first(), text.first()) {
        (None, None) => true,
        (Some(b'*'), _) => {
            glob_match(&pattern[1..], text) || (!text.is_empty() && glob_match(pattern, &text[1..]))
        }
        (Some(b'?'), Some(_)) => glob_match(&pattern[1..], &text[1..]),
        (Some(p), Some(t)) if p == t => glob_match(&pattern[1..], &text[1..]),
        _ => false,
    }
}

#[async_trait]
impl Transport for SimFleet {
    async fn call(&self, targets: &[MinionId], call: &SaltCall) -> Result<Returns, TransportError> {
        self.call_since(std::time::Instant::now(), targets, call)
            .await
    }

    async fn resolve(&self, target: &TargetExpr) -> Result<Vec<MinionId>, TransportError> {
        match target.tgt_type {
            TargetType::Glob => Ok(self
                .minions
                .iter()
                .filter(|m| glob_match(target.expression.as_bytes(), m.as_str().as_bytes()))
                .cloned()
                .collect()),
            TargetType::List => Ok(resolve_list(target)?
                .into_iter()
                .filter(|m| self.known.contains_key(m))
                .collect()),
            other => Err(TransportError::new(
                TransportErrorKind::Unsupported,
                format!(
                    "the simulated fleet resolves glob and list targets, not {}",
                    other.as_str()
                ),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match(b"web-*", b"web-01"));
        assert!(glob_match(b"*", b"x"));
        assert!(glob_match(b"w?b-0*", b"web-01"));
        assert!(!glob_match(b"db-*", b"web-01"));
    }

    /// The latency is never cut short, whatever mix of timers serves it.
    #[tokio::test]
    async fn latency_is_waited_in_full() {
        for ms in [1u64, 2, 3, 7, 25] {
            let latency = Duration::from_millis(ms);
            let t = std::time::Instant::now();
            wait_precisely(t, latency).await;
            assert!(t.elapsed() >= latency, "{ms} ms waited {:?}", t.elapsed());
        }
    }

    /// Under tokio's paused clock the latency is virtual time: it completes at once in real time.
    #[tokio::test(start_paused = true)]
    async fn latency_follows_a_paused_clock() {
        let real = std::time::Instant::now();
        let virt = tokio::time::Instant::now();
        wait_precisely(real, Duration::from_secs(30)).await;
        assert!(virt.elapsed() >= Duration::from_secs(30));
        assert!(
            real.elapsed() < Duration::from_secs(10),
            "{:?}",
            real.elapsed()
        );
    }
}
