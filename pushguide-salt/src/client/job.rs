//! One call as a salt job: a `local_async` request with list targeting for the whole batch, then the
//! minions' returns from the `/events` stream and `GET /jobs/<jid>` until all arrived or the call's
//! timeout passed; re-issued on the next endpoint when the one running it dies. Also the
//! [`Transport`] impl of [`SaltApi`].

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pushguide_core::{
    resolve_list, MinionId, Outcome, Returns, SaltCall, TargetExpr, TargetType, Transport,
    TransportError,
};
use serde_json::{Map, Value};
use tokio::sync::mpsc;

use super::endpoint::Req;
use super::events::{lock_events, ReturnBatch};
use super::{from_now, Inner, SaltApi, MAX_CALL_TIMEOUT};
use crate::decode::{self, AsyncJob};
use crate::error::SaltError;

/// How one round of a job ended.
enum Round {
    /// Every expected return arrived, or the deadline passed (`None`: no job was started).
    Done(Option<String>),
    /// The endpoint that ran the job stopped answering before every return arrived.
    EndpointDied {
        jid: String,
        idx: usize,
        error: SaltError,
    },
}

/// The returns one round still waits for, and where they go.
struct Tally<'a> {
    /// The minions this round was started for; returns of others are ignored.
    wanted: HashSet<&'a str>,
    /// Those of them salt sent the job to.
    expected: HashSet<&'a str>,
    /// Expected minions still without a return (kept as a count: no rescan per event).
    missing: usize,
    /// Every return of the call so far, by minion.
    returned: &'a mut HashMap<String, Outcome>,
}

impl<'a> Tally<'a> {
    fn new(
        pending: &[&'a str],
        job: &'a AsyncJob,
        returned: &'a mut HashMap<String, Outcome>,
    ) -> Self {
        let wanted: HashSet<&str> = pending.iter().copied().collect();
        let expected: HashSet<&str> = job
            .minions
            .iter()
            .map(String::as_str)
            .filter(|m| wanted.contains(m))
            .collect();
        let missing = expected
            .iter()
            .filter(|m| !returned.contains_key(**m))
            .count();
        Tally {
            wanted,
            expected,
            missing,
            returned,
        }
    }

    /// Records the returns of wanted minions.
    fn take(&mut self, rets: impl IntoIterator<Item = (String, Outcome)>) {
        for (m, o) in rets {
            if self.wanted.contains(m.as_str()) {
                let counts = self.expected.contains(m.as_str());
                if self.returned.insert(m, o).is_none() && counts {
                    self.missing -= 1;
                }
            }
        }
    }
}

/// One job to run: its lowstate without `tgt`, how long it waits for returns, whether it only reads
/// (then its start may be resent to another endpoint), and the function(s) for logs.
pub(super) struct Job<'a> {
    pub(super) low: Map<String, Value>,
    pub(super) wait: Duration,
    pub(super) read_only: bool,
    pub(super) label: &'a str,
}

/// The lowstate of `call` for a `local_async` job with list targeting, without its `tgt`.
fn job_lowstate(call: &SaltCall) -> Map<String, Value> {
    let mut low = Map::new();
    low.insert("client".into(), "local_async".into());
    low.insert("tgt_type".into(), "list".into());
    low.insert("fun".into(), call.fun.clone().into());
    if !call.arg.is_empty() {
        low.insert("arg".into(), Value::Array(call.arg.clone()));
    }
    if !call.kwarg.is_empty() {
        let kw: Map<String, Value> = call
            .kwarg
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        low.insert("kwarg".into(), Value::Object(kw));
    }
    low
}

/// The next batch of returns from the event stream, or `None` once `wake` passed (at once without a
/// stream).
async fn next_event(
    rx: Option<&mut mpsc::UnboundedReceiver<ReturnBatch>>,
    wake: Instant,
) -> Option<ReturnBatch> {
    match rx {
        Some(rx) => tokio::select! {
            ev = rx.recv() => ev,
            () = tokio::time::sleep_until(wake.into()) => None,
        },
        None => {
            tokio::time::sleep_until(wake.into()).await;
            None
        }
    }
}

impl Inner {
    /// Runs `call` on `targets` with ONE `local_async` request (list targeting) and collects the
    /// returns; see [`SaltApi`].
    pub(super) async fn run(
        self: &Arc<Self>,
        targets: &[MinionId],
        call: &SaltCall,
    ) -> Result<Returns, SaltError> {
        let job = Job {
            low: job_lowstate(call),
            wait: self.call_wait(call)?,
            read_only: !call.is_mutating(),
            label: &call.fun,
        };
        self.run_job(targets, &job).await
    }

    /// Runs the lowstate of `job` on `targets` as ONE `local_async` job (list targeting) and collects
    /// the returns; a plain call ([`Inner::run`]) or a compound one.
    pub(super) async fn run_job(
        self: &Arc<Self>,
        targets: &[MinionId],
        job: &Job<'_>,
    ) -> Result<Returns, SaltError> {
        if targets.is_empty() {
            return Ok(Returns::default());
        }
        let deadline = from_now(job.wait);
        let tgt: Vec<&str> = targets.iter().map(MinionId::as_str).collect();
        let low = &job.low;
        let mut returned: HashMap<String, Outcome> = HashMap::new();
        let mut last_jid = None;
        // Each round starts the job on the first available endpoint. When that endpoint dies before
        // every return arrived, the job is re-issued on the next endpoint for the minions that have not
        // returned yet: steps must therefore be idempotent (the bundled project types' are).
        for round in 0..self.endpoints.len() {
            let pending: Vec<&str> = tgt
                .iter()
                .copied()
                .filter(|m| !returned.contains_key(*m))
                .collect();
            if pending.is_empty() {
                break;
            }
            let mut low = low.clone();
            low.insert("tgt".into(), pending.join(",").into());
            let body = Value::Array(vec![Value::Object(low)]);
            match self
                .run_round(&body, job, &pending, deadline, &mut returned)
                .await?
            {
                Round::Done(jid) => {
                    last_jid = jid;
                    break;
                }
                Round::EndpointDied { jid, idx, error } => {
                    tracing::warn!(jid = %jid, error = %error, round,
                        "salt-api endpoint died while waiting for returns; re-issuing the job elsewhere");
                    self.mark_down(idx, &error);
                    last_jid = Some(jid);
                }
            }
        }
        let mut out = Returns {
            jid: last_jid,
            ..Returns::default()
        };
        for m in targets {
            let o = returned.remove(m.as_str()).unwrap_or(Outcome::NoReturn);
            out.minions.insert(m.clone(), o);
        }
        Ok(out)
    }

    /// How long `call` waits for returns: its own timeout or the settings' `job_timeout`, at most
    /// [`MAX_CALL_TIMEOUT`].
    pub(super) fn call_wait(&self, call: &SaltCall) -> Result<Duration, SaltError> {
        let wait = call.timeout.unwrap_or(self.settings.job_timeout);
        if wait > MAX_CALL_TIMEOUT {
            return Err(SaltError::Protocol {
                context: "call".into(),
                message: format!(
                    "`timeout` of {} is {} s; at most {} s is accepted",
                    call.fun,
                    wait.as_secs(),
                    MAX_CALL_TIMEOUT.as_secs()
                ),
                snippet: String::new(),
            });
        }
        Ok(wait)
    }

    /// Starts one job for `pending` and collects its returns into `returned` until all arrived, the
    /// deadline passed, or the endpoint died.
    async fn run_round(
        self: &Arc<Self>,
        body: &Value,
        spec: &Job<'_>,
        pending: &[&str],
        deadline: Instant,
        returned: &mut HashMap<String, Outcome>,
    ) -> Result<Round, SaltError> {
        // which streams were connected before the job was published: only those saw all its returns
        // (the first endpoint's stream is started, and waited for, before that)
        if self.settings.use_events {
            if let Some(&first) = self.endpoint_order().first() {
                self.ensure_events(first).await;
            }
        }
        let streams: Vec<Option<u64>> = (0..self.endpoints.len())
            .map(|i| self.stream_connects(i))
            .collect();
        let Some((idx, job)) = self.start_job(body, spec).await? else {
            return Ok(Round::Done(None));
        };
        let stream = if self.settings.use_events {
            streams[idx]
        } else {
            None
        };
        let mut rx = if self.settings.use_events {
            self.ensure_events(idx).await;
            Some(self.subscribe(idx, &job.jid))
        } else {
            None
        };
        let mut tally = Tally::new(pending, &job, returned);
        let outcome = self
            .collect(idx, &job.jid, deadline, stream, rx.as_mut(), &mut tally)
            .await;
        if rx.is_some() {
            self.unsubscribe(idx, &job.jid);
        }
        outcome
    }

    /// Sends the `local_async` request that starts a job, to the first endpoint that takes it (a
    /// mutating call only elsewhere when surely not received); `None` when salt matched no minion.
    /// The caller (`run_round`) has started the first endpoint's event stream.
    async fn start_job(
        self: &Arc<Self>,
        body: &Value,
        spec: &Job<'_>,
    ) -> Result<Option<(usize, AsyncJob)>, SaltError> {
        let (idx, bytes) = self
            .request_any(
                Req::Post("/", body),
                self.settings.request_timeout,
                spec.read_only,
            )
            .await?;
        let Some(job) = decode::local_async(&bytes)? else {
            tracing::debug!(fun = %spec.label, "salt matched none of the targets: no job started");
            return Ok(None);
        };
        tracing::debug!(jid = %job.jid, fun = %spec.label, minions = job.minions.len(), "job started");
        Ok(Some((idx, job)))
    }

    /// Waits for the returns of job `jid` on endpoint `idx`: from the event stream `rx` as they come,
    /// until none is missing or `deadline` passed. `GET /jobs/<jid>` (which makes salt-api run a
    /// `jobs.list_job` runner job) is the fallback of a broken stream only: it polls every
    /// `poll_interval` when there is no stream, when the stream (`stream`: its connection count) was
    /// not connected as the job was published, or once it dropped or reconnected since (returns may
    /// have been missed in the gap). While the
    /// stream stays connected, the only poll is one at the deadline, for returns still missing.
    async fn collect(
        &self,
        idx: usize,
        jid: &str,
        deadline: Instant,
        stream: Option<u64>,
        mut rx: Option<&mut mpsc::UnboundedReceiver<ReturnBatch>>,
        tally: &mut Tally<'_>,
    ) -> Result<Round, SaltError> {
        let path = format!("/jobs/{jid}");
        let mut next_poll = from_now(self.settings.poll_interval);
        let mut last_poll = false;
        while tally.missing > 0 {
            if Instant::now() >= deadline {
                if last_poll || !self.stream_unbroken(idx, stream) {
                    tracing::debug!(jid = %jid, "job timeout passed");
                    break;
                }
                // the stream looked healthy all along: one look at the job before giving up
                last_poll = true;
            } else {
                if let Some(batch) = next_event(rx.as_deref_mut(), next_poll.min(deadline)).await {
                    tally.take(batch);
                    continue;
                }
                if Instant::now() < next_poll {
                    continue;
                }
                next_poll = from_now(self.settings.poll_interval);
                if self.stream_unbroken(idx, stream) {
                    continue;
                }
            }
            match self.poll_job(idx, &path, deadline).await {
                Ok(bytes) => tally.take(decode::job(&bytes)?.returned),
                Err(e @ SaltError::Unreachable { .. }) if self.endpoints.len() > 1 => {
                    return Ok(Round::EndpointDied {
                        jid: jid.to_owned(),
                        idx,
                        error: e,
                    });
                }
                Err(e) if e.is_retryable() => {
                    tracing::warn!(jid = %jid, error = %e, "polling the job failed; retrying");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(Round::Done(Some(jid.to_owned())))
    }

    /// The stream's connection count when it is connected now, `None` when it is not.
    fn stream_connects(&self, idx: usize) -> Option<u64> {
        let ev = lock_events(&self.endpoints[idx].events);
        ev.connected.then_some(ev.connects)
    }

    /// Whether the stream that was connected (`since`) at the start of a wait still is, without a
    /// reconnection in between: then it missed no return.
    fn stream_unbroken(&self, idx: usize, since: Option<u64>) -> bool {
        since.is_some() && self.stream_connects(idx) == since
    }

    /// One `GET /jobs/<jid>` on endpoint `idx`, given no longer than the call has left (but at least
    /// half a second).
    async fn poll_job(
        &self,
        idx: usize,
        path: &str,
        deadline: Instant,
    ) -> Result<Vec<u8>, SaltError> {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let budget = self
            .settings
            .request_timeout
            .min(remaining.max(Duration::from_millis(500)));
        self.authed(idx, Req::Get(path), budget).await
    }
}

#[async_trait]
impl Transport for SaltApi {
    async fn call(&self, targets: &[MinionId], call: &SaltCall) -> Result<Returns, TransportError> {
        self.run(targets, call).await.map_err(Into::into)
    }

    async fn resolve(&self, target: &TargetExpr) -> Result<Vec<MinionId>, TransportError> {
        if target.tgt_type == TargetType::List {
            return resolve_list(target);
        }
        self.resolve_targets(target).await.map_err(Into::into)
    }
}
