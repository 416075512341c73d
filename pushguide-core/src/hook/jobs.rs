//! Steps on the stage context: a hook queues each host's steps ([`StageContext::steps`]); they are sent
//! as ONE salt job per group of jobs (`pushguide.steps`, run in order on each minion by the pushguide
//! salt module, which stops at the first failing step) — or, where the engine sends no jobs (a dry run,
//! a plan, a transport without the module), call by call with the same meaning.
//!
//! What is recorded is the same either way: one call record per step (per group of hosts with equal
//! steps), each host's outcome of each step it ran in its log, a skipped step as a log line, and a
//! failing step as the host's failure with its salt function and reason, under the stage that queued
//! the step.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::Value;

use crate::hook::context::{Answer, CallResults, StageContext};
use crate::hook::journal::RunShared;
use crate::model::event::EventKind;
use crate::model::report::{CallRecord, LogEntry};
use crate::vocab::call::{MinionId, Outcome, Returns, SaltCall};
use crate::vocab::error::StageError;
use crate::vocab::job::{decode_steps, steps_call, truthy, HostSteps, Step, StepReturn, STEPS_FUN};
use crate::vocab::stage::Stage;

/// Largest request of one job, in bytes of JSON: hosts past it go in another job, sent at the same
/// time (a job's arguments reach every minion it targets).
const MAX_JOB_BYTES: usize = 256 * 1024;

/// Steps queued by the hooks of one stage (or, for a batch sent as one job, of a batch's stages), per
/// host, in the order queued.
#[derive(Debug, Default)]
pub(crate) struct Queue {
    hosts: Vec<(MinionId, Vec<(Stage, Step)>)>,
    index: HashMap<MinionId, usize>,
}

impl Queue {
    fn push(&mut self, host: MinionId, stage: Stage, steps: Vec<Step>) {
        let i = match self.index.get(&host) {
            Some(&i) => i,
            None => {
                self.index.insert(host.clone(), self.hosts.len());
                self.hosts.push((host, Vec::new()));
                self.hosts.len() - 1
            }
        };
        self.hosts[i]
            .1
            .extend(steps.into_iter().map(|s| (stage, s)));
    }

    /// Drops `host`'s steps queued at `stage` or later (the host failed while its batch was
    /// collected).
    pub(crate) fn drop_from(&mut self, host: &MinionId, stage: Stage) {
        if let Some(&i) = self.index.get(host) {
            let order = |st: Stage| Stage::BATCH.iter().position(|s| *s == st);
            self.hosts[i].1.retain(|(st, _)| order(*st) < order(stage));
        }
    }

    /// The first stage with a queued step.
    pub(crate) fn first_stage(&self) -> Option<Stage> {
        Stage::BATCH
            .into_iter()
            .find(|st| {
                self.hosts
                    .iter()
                    .any(|(_, s)| s.iter().any(|(x, _)| x == st))
            })
            .or_else(|| {
                self.hosts
                    .iter()
                    .find_map(|(_, s)| s.first().map(|(st, _)| *st))
            })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.hosts.iter().all(|(_, s)| s.is_empty())
    }

    /// Hosts with equal steps together, in the order their first host was queued.
    fn groups(&self, live: &HashSet<&MinionId>) -> Vec<Group> {
        let mut index: BTreeMap<String, usize> = BTreeMap::new();
        let mut groups: Vec<Group> = Vec::new();
        for (host, steps) in &self.hosts {
            if steps.is_empty() || !live.contains(host) {
                continue;
            }
            // each step's wire text, made once: the group's key, the job's size, equal steps
            let wires: Vec<String> = steps.iter().map(|(_, s)| s.to_wire().to_string()).collect();
            let key = steps
                .iter()
                .zip(&wires)
                .map(|((st, _), w)| format!("{}:{w}", st.index()))
                .collect::<Vec<_>>()
                .join("\n");
            match index.get(&key) {
                Some(&i) => groups[i].hosts.push(host.clone()),
                None => {
                    index.insert(key, groups.len());
                    groups.push(Group {
                        hosts: vec![host.clone()],
                        steps: steps.clone(),
                        wires,
                    });
                }
            }
        }
        groups
    }
}

/// Hosts that share their steps.
#[derive(Debug)]
struct Group {
    hosts: Vec<MinionId>,
    steps: Vec<(Stage, Step)>,
    /// Each step as the module reads it ([`Step::to_wire`]), as JSON text.
    wires: Vec<String>,
}

/// What a sent job left for each host of each group.
#[derive(Debug)]
pub(crate) struct Sent {
    groups: Vec<Group>,
    /// Per host: its steps' returns, or why it has none.
    runs: HashMap<MinionId, Result<Vec<StepReturn>, String>>,
    /// The job id of each host's job.
    jids: HashMap<MinionId, String>,
}

impl StageContext<'_> {
    /// Queues each host's steps, to run in order after the steps queued before them. They are sent
    /// when the hook returns (for a kind whose batch is one job, [`crate::Deployer::batch_in_one_job`],
    /// when the batch's last stage hook returns), or before the hook's next [`StageContext::call`].
    /// Hosts not live are left out. After a cancel, returns [`StageError::Cancelled`].
    ///
    /// ```
    /// use pushguide_core::{Check, SaltCall, StageContext, StageError, Step};
    /// async fn restart(cx: &mut StageContext<'_>) -> Result<(), StageError> {
    ///     let steps = cx.minions().iter().map(|h| {
    ///         let service = format!("tomcat-{h}"); // per-host values share the job
    ///         (h.clone(), vec![
    ///             Step::new(SaltCall::mutate("service.restart").arg(service)).check(Check::True),
    ///         ])
    ///     }).collect();
    ///     cx.steps(steps)
    /// }
    /// ```
    pub fn steps(&mut self, per_host: Vec<(MinionId, Vec<Step>)>) -> Result<(), StageError> {
        if self.is_cancelled() {
            return Err(StageError::Cancelled);
        }
        if self.stage == Stage::Prepare {
            if let Some(s) = per_host
                .iter()
                .flat_map(|(_, s)| s)
                .find(|s| s.call.is_mutating())
            {
                return Err(StageError::Misuse(format!(
                    "mutating step `{}` during prepare: prepare must be read-only",
                    s.call.fun
                )));
            }
        }
        let live: HashSet<MinionId> = self.live.iter().cloned().collect();
        for (host, steps) in per_host {
            if live.contains(&host) && !steps.is_empty() {
                self.queue.push(host, self.stage, steps);
            }
        }
        Ok(())
    }

    /// Sends the queued steps now and records what they did ([`StageContext::steps`]); returns the
    /// live hosts that passed every step. Nothing to do when nothing is queued.
    pub async fn send_steps(&mut self) -> Result<Vec<MinionId>, StageError> {
        if self.collect {
            return Err(StageError::Misuse(
                "this kind sends its batch as one job: its batch hooks queue steps and the engine \
                 sends them after the last stage"
                    .into(),
            ));
        }
        self.flush_steps().await?;
        Ok(self.live.clone())
    }

    /// Sends what is queued, if anything (after every hook, before an immediate call); never while
    /// a batch is collected.
    pub(crate) async fn flush_steps(&mut self) -> Result<(), StageError> {
        if self.collect || self.queue.is_empty() {
            return Ok(());
        }
        let queue = std::mem::take(&mut self.queue);
        if self.shared.step_jobs && !self.is_dry_run() {
            if self.is_cancelled() {
                return Err(StageError::Cancelled);
            }
            let sent = send_jobs(self.shared, self.batch, self.stage, &queue, &self.live).await;
            self.record_sent(&sent);
        } else {
            self.emulate(&queue).await?;
        }
        Ok(())
    }

    /// Records, under this context's stage, what a job did in it: each step's call (hosts whose steps
    /// differ only elsewhere share the record of an equal step) and the hosts' outcomes; a failing
    /// step fails its host.
    pub(crate) fn record_sent(&mut self, sent: &Sent) {
        let stage = self.stage;
        let live: HashSet<MinionId> = self.live.iter().cloned().collect();
        // hosts whose job gave no usable answer: how far it got on them is unknown, so they fail at
        // the release (deploy) when the job reached into it — what they run is then recorded as
        // unknown, never as the old or the new version — else at the job's first stage
        let mut refused: Vec<(MinionId, String)> = Vec::new();
        // each step of this stage with the hosts that have it at some index
        let mut items: Vec<(&Step, Vec<(MinionId, usize)>)> = Vec::new();
        let mut same: HashMap<String, usize> = HashMap::new();
        for group in &sent.groups {
            let hosts: Vec<&MinionId> = group.hosts.iter().filter(|h| live.contains(*h)).collect();
            if hosts.is_empty() {
                continue;
            }
            let fail_at = if group.steps.iter().any(|(st, _)| *st == Stage::Deploy) {
                Some(Stage::Deploy)
            } else {
                group.steps.first().map(|(st, _)| *st)
            };
            if fail_at == Some(stage) {
                for h in &hosts {
                    if let Some(Err(why)) = sent.runs.get(*h) {
                        let unknown = if stage == Stage::Deploy {
                            "; what its job did on this host is unknown"
                        } else {
                            ""
                        };
                        refused.push(((*h).clone(), format!("{why}{unknown}")));
                    }
                }
            }
            for (i, (st, step)) in group.steps.iter().enumerate() {
                if *st != stage {
                    continue;
                }
                let key = group.wires[i].clone();
                let at = *same.entry(key).or_insert_with(|| {
                    items.push((step, Vec::new()));
                    items.len() - 1
                });
                items[at].1.extend(hosts.iter().map(|h| ((*h).clone(), i)));
            }
        }
        if !refused.is_empty() {
            let hs: Vec<MinionId> = refused.iter().map(|(h, _)| h.clone()).collect();
            let reasons: HashMap<MinionId, String> = refused.into_iter().collect();
            self.fail_hosts(&hs, Some(STEPS_FUN), &|h| reasons[h].clone());
        }
        for (step, hosts) in items {
            self.record_step(sent, step, &hosts);
        }
    }

    /// Records one step for the hosts that have it (each at its own index in its job).
    fn record_step(&mut self, sent: &Sent, step: &Step, hosts: &[(MinionId, usize)]) {
        // (host, its return, or None when the answer ended before it without a failure)
        let mut reached: Vec<(MinionId, Option<&StepReturn>)> = Vec::new();
        for (h, i) in hosts {
            let Some(Ok(returns)) = sent.runs.get(h) else {
                continue;
            };
            match returns.get(*i) {
                Some(r) => reached.push((h.clone(), Some(r))),
                // stopped at an earlier failing step: this one never ran
                None if returns.iter().any(|r| !r.outcome.is_ok()) => {}
                None => reached.push((h.clone(), None)),
            }
        }
        if reached.is_empty() {
            return;
        }
        let jid = reached.iter().find_map(|(h, _)| sent.jids.get(h).cloned());
        let millis = reached
            .iter()
            .filter_map(|(_, r)| r.map(|r| r.millis))
            .max()
            .unwrap_or(0);
        let call_index = self.journal.calls.len();
        self.journal.calls.push(CallRecord {
            batch: self.batch,
            stage: self.stage,
            call: step.call.clone(),
            targets: reached.len(),
            sent: true,
            jid: jid.clone(),
            millis,
        });
        let mut failures: Vec<(MinionId, String)> = Vec::new();
        let mut ok = 0usize;
        for (h, ret) in &reached {
            let Some(ret) = ret else {
                failures.push((
                    h.clone(),
                    format!(
                        "no result for `{}`: the job's answer ended before it",
                        step.call.fun
                    ),
                ));
                continue;
            };
            if ret.skipped {
                let cond = step
                    .unless
                    .as_ref()
                    .map_or_else(String::new, |c| format!(": `{c}` held"));
                self.log(h, format!("skipped {}{cond}", step.call.fun));
                ok += 1;
                continue;
            }
            if let Some(&j) = self.journal.index.get(h) {
                self.journal.hosts[j].log.push(LogEntry::Call {
                    stage: self.stage,
                    call: call_index,
                    outcome: ret.outcome.clone(),
                });
            }
            if ret.attempts > 1 {
                self.log(h, format!("{}: {} attempts", step.call.fun, ret.attempts));
            }
            match ret.outcome.reason() {
                Some(why) => failures.push((h.clone(), step.failure(&why))),
                None => ok += 1,
            }
        }
        let failed = failures.len();
        if !failures.is_empty() {
            let hs: Vec<MinionId> = failures.iter().map(|(h, _)| h.clone()).collect();
            let reasons: HashMap<MinionId, String> = failures.into_iter().collect();
            self.fail_hosts(&hs, Some(&step.call.fun), &|h| reasons[h].clone());
        }
        self.shared.emit(EventKind::CallFinished {
            batch: self.batch,
            stage: self.stage,
            fun: step.call.fun.clone(),
            jid,
            ok,
            failed,
            millis,
        });
    }

    /// The queued steps call by call (a dry run, a plan, or a transport the engine sends no jobs to):
    /// step by step, each group's call sent at once with the other groups'; a condition that holds
    /// skips the step (each condition is asked once per host and job, the first time a step needs
    /// it, as the module does); the check judges real answers; a retry sends the call again to the hosts
    /// whose answer failed the check. In a dry run, once a host's mutating step was only recorded,
    /// its later steps are recorded too (they would read what the dry run did not do).
    async fn emulate(&mut self, queue: &Queue) -> Result<(), StageError> {
        let everyone: HashSet<&MinionId> = queue.hosts.iter().map(|(h, _)| h).collect();
        let live: Vec<MinionId> = self
            .live
            .iter()
            .filter(|h| everyone.contains(h))
            .cloned()
            .collect();
        let live_set: HashSet<&MinionId> = live.iter().collect();
        let groups = queue.groups(&live_set);
        let longest = groups.iter().map(|g| g.steps.len()).max().unwrap_or(0);
        let mut recorded_only: HashSet<MinionId> = HashSet::new();
        // each host's answer to each condition, asked once per job (as the module does)
        let mut held: HashMap<(MinionId, String), bool> = HashMap::new();
        for i in 0..longest {
            // step i of every group; groups whose step i is the same share its request
            let mut work: Vec<(Vec<MinionId>, &Step)> = Vec::new();
            let mut same: HashMap<String, usize> = HashMap::new();
            let alive: HashSet<MinionId> = self.live.iter().cloned().collect();
            for g in &groups {
                let Some((_, step)) = g.steps.get(i) else {
                    continue;
                };
                let hosts: Vec<MinionId> = g
                    .hosts
                    .iter()
                    .filter(|h| alive.contains(*h))
                    .cloned()
                    .collect();
                if hosts.is_empty() {
                    continue;
                }
                let key = &g.wires[i];
                match same.get(key) {
                    Some(&w) => work[w].0.extend(hosts),
                    None => {
                        same.insert(key.clone(), work.len());
                        work.push((hosts, step));
                    }
                }
            }
            if work.is_empty() {
                break;
            }
            // conditions not asked yet in this job, all groups at once
            let conds: Vec<(Vec<MinionId>, SaltCall)> = work
                .iter()
                .filter_map(|(hs, s)| {
                    let c = s.unless.clone()?;
                    let key = c.to_string();
                    let hs: Vec<MinionId> = hs
                        .iter()
                        .filter(|h| {
                            !recorded_only.contains(*h)
                                && !held.contains_key(&((*h).clone(), key.clone()))
                        })
                        .cloned()
                        .collect();
                    (!hs.is_empty()).then_some((hs, c))
                })
                .collect();
            if !conds.is_empty() {
                let keys: Vec<(Vec<MinionId>, String)> = conds
                    .iter()
                    .map(|(hs, c)| (hs.clone(), c.to_string()))
                    .collect();
                let answers = self.call_each_lenient(conds).await?;
                let yes: HashSet<MinionId> = answers
                    .into_iter()
                    .filter(|(_, a)| a.value().is_some_and(truthy))
                    .map(|(h, _)| h)
                    .collect();
                for (hs, key) in keys {
                    for h in hs {
                        let holds = yes.contains(&h);
                        held.insert((h, key.clone()), holds);
                    }
                }
            }
            let mut skip: HashSet<MinionId> = HashSet::new();
            for (hs, s) in &work {
                let Some(c) = &s.unless else { continue };
                let key = c.to_string();
                for h in hs {
                    if held.get(&(h.clone(), key.clone())) == Some(&true) {
                        skip.insert(h.clone());
                    }
                }
            }
            for (hs, s) in &work {
                for h in hs.iter().filter(|h| skip.contains(*h)) {
                    self.log(
                        h,
                        format!("skipped {}: `{}` held", s.call.fun, cond_text(s)),
                    );
                }
            }
            let mut pending: Vec<(Vec<MinionId>, &Step)> = work
                .into_iter()
                .map(|(hs, s)| (hs.into_iter().filter(|h| !skip.contains(h)).collect(), s))
                .filter(|(hs, _): &(Vec<MinionId>, &Step)| !hs.is_empty())
                .collect();
            let started = Instant::now();
            let mut attempt = 1u32;
            loop {
                let (sendable, recorded): (Vec<_>, Vec<_>) = pending
                    .iter()
                    .map(|(hs, s)| {
                        let (a, b): (Vec<MinionId>, Vec<MinionId>) =
                            hs.iter().cloned().partition(|h| !recorded_only.contains(h));
                        ((a, *s), (b, *s))
                    })
                    .unzip();
                // hosts whose earlier mutating step a dry run only recorded: record, do not read
                let mut calls: Vec<(Vec<MinionId>, SaltCall)> = Vec::new();
                for (hs, s) in sendable.iter().filter(|(hs, _)| !hs.is_empty()) {
                    calls.push((hs.clone(), s.call.clone()));
                }
                let mut answers = self.call_each_now(calls).await?;
                for (hs, s) in recorded.iter().filter(|(hs, _)| !hs.is_empty()) {
                    answers.extend(self.record_only(hs, &s.call));
                }
                if self.is_dry_run() {
                    for (h, a) in answers.iter() {
                        if matches!(a, Answer::NotSent) {
                            recorded_only.insert(h.clone());
                        }
                    }
                }
                // judge real answers; hosts failing the check may be tried again
                let mut again: Vec<(Vec<MinionId>, &Step)> = Vec::new();
                for (hs, s) in &pending {
                    let mut retry_hosts = Vec::new();
                    for h in hs {
                        let Some(Answer::Returned(v)) = answers.get(h) else {
                            continue;
                        };
                        if let Err(why) = s.check.judge(v).map_err(|w| s.failure(&w)) {
                            let more = s.retry.as_ref().is_some_and(|r| {
                                attempt < r.attempts.max(1)
                                    && started.elapsed() + wait(r, attempt) <= r.within
                            });
                            if more {
                                self.log(
                                    h,
                                    format!(
                                        "{} attempt {attempt}/{}: {why}",
                                        s.call.fun,
                                        s.retry.as_ref().map_or(1, |r| r.attempts)
                                    ),
                                );
                                retry_hosts.push(h.clone());
                            } else {
                                let why = if attempt > 1 {
                                    format!("{why} (after {attempt} attempts)")
                                } else {
                                    why
                                };
                                self.fail_hosts(
                                    std::slice::from_ref(h),
                                    Some(&s.call.fun),
                                    &|_| why.clone(),
                                );
                            }
                        }
                    }
                    if !retry_hosts.is_empty() {
                        again.push((retry_hosts, *s));
                    }
                }
                if again.is_empty() {
                    break;
                }
                let pause = again
                    .iter()
                    .filter_map(|(_, s)| s.retry.as_ref())
                    .map(|r| wait(r, attempt))
                    .max()
                    .unwrap_or_default();
                if self.is_cancelled() {
                    return Err(StageError::Cancelled);
                }
                tokio::time::sleep(pause).await;
                attempt += 1;
                pending = again;
            }
        }
        Ok(())
    }

    /// Sends read-only conditions; a host whose condition fails is NOT failed (the step runs).
    async fn call_each_lenient(
        &mut self,
        calls: Vec<(Vec<MinionId>, SaltCall)>,
    ) -> Result<Vec<(MinionId, Answer)>, StageError> {
        if self.shared.planning {
            return Ok(Vec::new());
        }
        let shared = self.shared;
        let answers = join_all(calls.iter().map(|(hs, c)| async move {
            let r = shared.transport.call(hs, c).await;
            (hs, r)
        }))
        .await;
        let dry = self.is_dry_run();
        let mut out = Vec::new();
        for (hs, r) in answers {
            let Ok(mut returns) = r else { continue };
            for h in hs {
                if let Outcome::Ok { value } = returns.take(h) {
                    out.push((
                        h.clone(),
                        if dry {
                            Answer::DryRun(value)
                        } else {
                            Answer::Returned(value)
                        },
                    ));
                }
            }
        }
        Ok(out)
    }

    /// Records `call` for `hosts` as not sent.
    fn record_only(&mut self, hosts: &[MinionId], call: &SaltCall) -> CallResults {
        let call_index = self.journal.calls.len();
        self.journal.calls.push(CallRecord {
            batch: self.batch,
            stage: self.stage,
            call: call.clone(),
            targets: hosts.len(),
            sent: false,
            jid: None,
            millis: 0,
        });
        for h in hosts {
            if let Some(&j) = self.journal.index.get(h) {
                self.journal.hosts[j].log.push(LogEntry::Call {
                    stage: self.stage,
                    call: call_index,
                    outcome: Outcome::ok(Value::Null),
                });
            }
        }
        CallResults {
            jids: Vec::new(),
            answers: hosts.iter().map(|h| (h.clone(), Answer::NotSent)).collect(),
        }
    }
}

fn cond_text(s: &Step) -> String {
    s.unless
        .as_ref()
        .map_or_else(String::new, ToString::to_string)
}

/// The wait before attempt `attempt + 1`.
fn wait(r: &crate::vocab::job::Retry, attempt: u32) -> Duration {
    let mut w = r.interval;
    for _ in 1..attempt {
        w = (w * 2).min(r.max_interval);
    }
    w.min(r.max_interval)
}

/// Sends the queued steps of the `live` hosts as jobs (one per [`MAX_JOB_BYTES`] of plans, all in
/// flight together) and reads every host's answer. A `CallStarted` event announces each job.
pub(crate) async fn send_jobs(
    shared: &RunShared,
    batch: Option<usize>,
    stage: Stage,
    queue: &Queue,
    live: &[MinionId],
) -> Sent {
    let live: HashSet<&MinionId> = live.iter().collect();
    let groups = queue.groups(&live);
    // cut into jobs by size
    let mut jobs: Vec<Vec<usize>> = Vec::new();
    let mut size = 0usize;
    for (i, g) in groups.iter().enumerate() {
        let bytes: usize = g.wires.iter().map(String::len).sum::<usize>()
            + g.hosts.iter().map(|h| h.as_str().len() + 8).sum::<usize>();
        if jobs.is_empty() || size + bytes > MAX_JOB_BYTES {
            jobs.push(Vec::new());
            size = 0;
        }
        size += bytes;
        jobs.last_mut().expect("a job was pushed").push(i);
    }
    let requests: Vec<(Vec<MinionId>, SaltCall, Vec<usize>)> = jobs
        .into_iter()
        .map(|members| {
            let plans: Vec<(Vec<MinionId>, Vec<Step>)> = members
                .iter()
                .map(|&i| {
                    let g = &groups[i];
                    (
                        g.hosts.clone(),
                        g.steps.iter().map(|(_, s)| s.clone()).collect(),
                    )
                })
                .collect();
            let targets: Vec<MinionId> = plans.iter().flat_map(|(h, _)| h.clone()).collect();
            (targets, steps_call(&plans), members)
        })
        .collect();
    for (targets, _, _) in &requests {
        shared.emit(EventKind::CallStarted {
            batch,
            stage,
            fun: STEPS_FUN.to_owned(),
            targets: targets.len(),
            sent: true,
        });
    }
    let answers: Vec<Result<Returns, String>> =
        join_all(requests.iter().map(|(targets, call, _)| {
            let span = tracing::debug_span!("job", fun = STEPS_FUN, targets = targets.len());
            tracing::Instrument::instrument(
                async move {
                    shared
                        .transport
                        .call(targets, call)
                        .await
                        .map_err(|e| format!("transport error: {e}"))
                },
                span,
            )
        }))
        .await;
    let mut runs = HashMap::new();
    let mut jids = HashMap::new();
    for ((targets, _, members), answer) in requests.iter().zip(answers) {
        let mut returns = match answer {
            Ok(r) => r,
            Err(why) => {
                tracing::warn!(error = %why, "salt job of steps failed");
                for h in targets {
                    runs.insert(h.clone(), Err(why.clone()));
                }
                continue;
            }
        };
        for &gi in members {
            let g = &groups[gi];
            for h in &g.hosts {
                if let Some(jid) = &returns.jid {
                    jids.insert(h.clone(), jid.clone());
                }
                let run = match returns.take(h) {
                    Outcome::Ok { value } => match decode_steps(&value, g.steps.len()) {
                        Ok(HostSteps::Ran(r)) => Ok(r),
                        Ok(HostSteps::Refused(why)) => {
                            Err(format!("the pushguide salt module ran nothing: {why}"))
                        }
                        Err(why) => Err(why),
                    },
                    other => Err(module_hint(other.reason().unwrap_or_default())),
                };
                runs.insert(h.clone(), run);
            }
        }
    }
    Sent { groups, runs, jids }
}

/// A failure naming a function of the pushguide module the minion does not have: with the hint
/// to install it.
pub(crate) fn module_hint(reason: String) -> String {
    // `'pushguide.steps' is not available.`, `'pushguide.free_space' is not available.`, …
    let missing = reason
        .split("'pushguide.")
        .nth(1)
        .is_some_and(|rest| rest.contains("' is not available"));
    if missing {
        format!(
            "{reason}: the pushguide salt module is not installed on this minion (run \
             `pushguide install-module`)"
        )
    } else {
        reason
    }
}
