//! The salt-api HTTP client.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pushguide_core::{
    resolve_list, MinionId, Outcome, Returns, SaltCall, TargetExpr, TargetType, Transport,
    TransportError,
};
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;

use crate::decode::{self, ManageStatus};
use crate::error::SaltError;
use crate::{SaltApiSettings, SettingsError};

/// Longest duration a [`SaltApiSettings`] duration may hold (one day): `connect_timeout`,
/// `request_timeout`, `job_timeout`, `poll_interval`, `endpoint_cooldown` and `token_expire`. A larger
/// value is refused by [`SaltApi::new`] with [`SettingsError::Invalid`] naming the key.
pub const MAX_SETTING_DURATION: Duration = Duration::from_secs(86_400);

/// Longest timeout a [`SaltCall`] may ask for (one day); a call asking more is refused with a
/// protocol error naming the call and its `timeout`, before anything is sent.
pub const MAX_CALL_TIMEOUT: Duration = Duration::from_secs(86_400);

/// `now + d`, never overflowing: a deadline too far to represent is as good as never.
fn after(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .or_else(|| now.checked_add(MAX_CALL_TIMEOUT))
        .unwrap_or(now)
}

/// `Instant::now() + d`, never overflowing.
fn from_now(d: Duration) -> Instant {
    after(Instant::now(), d)
}

/// Refuses a settings duration above [`MAX_SETTING_DURATION`].
fn check_setting(var: &'static str, d: Option<Duration>) -> Result<(), SettingsError> {
    match d {
        Some(d) if d > MAX_SETTING_DURATION => Err(SettingsError::Invalid {
            var,
            reason: format!(
                "{} s is longer than the maximum of {} s",
                d.as_secs(),
                MAX_SETTING_DURATION.as_secs()
            ),
        }),
        _ => Ok(()),
    }
}

/// Health of one salt-api endpoint, as seen by this client.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct EndpointHealth {
    /// Base URL.
    pub url: String,
    /// Whether the endpoint is used first (not in its cool-down after a failure).
    pub available: bool,
    /// Remaining cool-down, when marked down.
    pub down_for: Option<Duration>,
    /// The last failure seen on this endpoint (cleared by the next success).
    pub last_error: Option<String>,
    /// Whether the client holds a token for it.
    pub logged_in: bool,
    /// Whether the `/events` stream of this endpoint is connected.
    pub events_connected: bool,
    /// How many minion returns arrived through the `/events` stream (the rest came from polling).
    pub returns_from_events: u64,
}

struct Token {
    value: String,
    refresh_at: Instant,
}

#[derive(Default)]
struct EndpointState {
    token: Option<Token>,
    down_until: Option<Instant>,
    last_error: Option<String>,
}

struct Endpoint {
    url: String,
    state: Mutex<EndpointState>,
    login_lock: tokio::sync::Mutex<()>,
    events: Mutex<EventsState>,
}

/// A minion's return delivered to the call waiting for its job.
/// Returns of one job as they arrive: every return a stream chunk carried for it, in one message.
type ReturnBatch = Vec<(String, Outcome)>;
type ReturnTx = mpsc::UnboundedSender<ReturnBatch>;

/// The `/events` stream of one endpoint, shared by every job started there.
#[derive(Default)]
struct EventsState {
    task: Option<tokio::task::JoinHandle<()>>,
    connected: bool,
    /// Calls waiting for returns, by jid.
    waiters: HashMap<String, ReturnTx>,
    /// Returns of jobs nobody waits for (yet): a return can arrive before `local_async` answered.
    early: VecDeque<(Instant, String, String, Outcome)>,
    from_events: u64,
}

/// How long returns of unclaimed jobs are kept, and how many.
const EARLY_KEEP: Duration = Duration::from_secs(30);
const EARLY_MAX: usize = 10_000;

fn lock_events(m: &Mutex<EventsState>) -> std::sync::MutexGuard<'_, EventsState> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[derive(Clone, Copy)]
enum Req<'a> {
    Get(&'a str),
    Post(&'a str, &'a Value),
}

impl Req<'_> {
    fn path(&self) -> &str {
        match self {
            Req::Get(p) | Req::Post(p, _) => p,
        }
    }
}

struct Inner {
    settings: SaltApiSettings,
    http: reqwest::Client,
    endpoints: Vec<Endpoint>,
}

fn lock(m: &Mutex<EndpointState>) -> std::sync::MutexGuard<'_, EndpointState> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Inner {
    fn new(settings: SaltApiSettings) -> Result<Self, SettingsError> {
        if settings.endpoints.is_empty() {
            return Err(SettingsError::Invalid {
                var: "endpoints",
                reason: "no salt-api endpoint configured".to_owned(),
            });
        }
        for (var, d) in [
            ("connect_timeout", Some(settings.connect_timeout)),
            ("request_timeout", Some(settings.request_timeout)),
            ("job_timeout", Some(settings.job_timeout)),
            ("poll_interval", Some(settings.poll_interval)),
            ("endpoint_cooldown", Some(settings.endpoint_cooldown)),
            ("token_expire", settings.token_expire),
        ] {
            check_setting(var, d)?;
        }
        let mut builder = reqwest::Client::builder().connect_timeout(settings.connect_timeout);
        if let Some(path) = &settings.ca_file {
            let pem = std::fs::read(path).map_err(|e| SettingsError::Invalid {
                var: "ca_file",
                reason: format!("cannot read {}: {e}", path.display()),
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .ok()
                .filter(|c| !c.is_empty())
                .ok_or_else(|| SettingsError::Invalid {
                    var: "ca_file",
                    reason: format!("{} holds no PEM certificate", path.display()),
                })?;
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        if settings.danger_accept_invalid_certs {
            tracing::warn!("TLS certificate verification is disabled for salt-api");
            builder = builder.danger_accept_invalid_certs(true);
        }
        let http = builder.build().map_err(|e| SettingsError::Invalid {
            var: "endpoints",
            reason: format!("cannot build the HTTP client: {e}"),
        })?;
        let endpoints = settings
            .endpoints
            .iter()
            .map(|u| Endpoint {
                url: u.trim_end_matches('/').to_owned(),
                state: Mutex::new(EndpointState::default()),
                login_lock: tokio::sync::Mutex::new(()),
                events: Mutex::new(EventsState::default()),
            })
            .collect();
        Ok(Inner {
            settings,
            http,
            endpoints,
        })
    }

    /// The health of every endpoint, in configured order.
    fn endpoint_health(&self) -> Vec<EndpointHealth> {
        let now = Instant::now();
        self.endpoints
            .iter()
            .map(|e| {
                let s = lock(&e.state);
                let down_for = s
                    .down_until
                    .and_then(|t| t.checked_duration_since(now))
                    .filter(|d| !d.is_zero());
                let ev = lock_events(&e.events);
                EndpointHealth {
                    url: e.url.clone(),
                    available: down_for.is_none(),
                    down_for,
                    last_error: s.last_error.clone(),
                    logged_in: s.token.is_some(),
                    events_connected: ev.connected,
                    returns_from_events: ev.from_events,
                }
            })
            .collect()
    }

    /// Logs in at the first endpoint that answers (checks credentials early).
    async fn login(&self) -> Result<(), SaltError> {
        let mut errors = Vec::new();
        for idx in self.endpoint_order() {
            match self.login_at(idx).await {
                Ok(_) => return Ok(()),
                Err(e) if e.is_retryable() => {
                    self.mark_down(idx, &e);
                    errors.push(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(all_down(errors))
    }

    /// Forgets the expiry of every held token so the next request uses it as is; with a token that
    /// salt-api no longer accepts this exercises the 401 → log in again path. For tests.
    #[doc(hidden)]
    fn test_only_replace_tokens(&self, value: &str) {
        for e in &self.endpoints {
            let mut s = lock(&e.state);
            if let Some(t) = s.token.as_mut() {
                t.value = value.to_owned();
                t.refresh_at = from_now(Duration::from_secs(3600));
            }
        }
    }

    /// Runs `call` on `targets` with ONE `local_async` request (list targeting) and collects the
    /// returns; see [`SaltApi`].
    async fn run(
        self: &Arc<Self>,
        targets: &[MinionId],
        call: &SaltCall,
    ) -> Result<Returns, SaltError> {
        if targets.is_empty() {
            return Ok(Returns::default());
        }
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
        let deadline = from_now(wait);
        let tgt: Vec<&str> = targets.iter().map(MinionId::as_str).collect();
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
                .run_round(&body, call, &pending, deadline, &mut returned)
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

    /// Starts one job for `pending` and collects its returns into `returned` until all arrived, the
    /// deadline passed, or the endpoint died.
    async fn run_round(
        self: &Arc<Self>,
        body: &Value,
        call: &SaltCall,
        pending: &[&str],
        deadline: Instant,
        returned: &mut HashMap<String, Outcome>,
    ) -> Result<Round, SaltError> {
        if self.settings.use_events {
            if let Some(&first) = self.endpoint_order().first() {
                self.ensure_events(first).await;
            }
        }
        let (idx, bytes) = self
            .request_any(
                Req::Post("/", body),
                self.settings.request_timeout,
                !call.is_mutating(),
            )
            .await?;
        let Some(job) = decode::local_async(&bytes)? else {
            tracing::debug!(fun = %call.fun, "salt matched none of the targets: no job started");
            return Ok(Round::Done(None));
        };
        tracing::debug!(jid = %job.jid, fun = %call.fun, minions = job.minions.len(), "job started");
        let wanted: HashSet<&str> = pending.iter().copied().collect();
        let expected: HashSet<&str> = job
            .minions
            .iter()
            .map(String::as_str)
            .filter(|m| wanted.contains(m))
            .collect();
        let path = format!("/jobs/{}", job.jid);
        let mut rx = if self.settings.use_events {
            self.ensure_events(idx).await;
            Some(self.subscribe(idx, &job.jid))
        } else {
            None
        };
        let mut next_poll = from_now(self.settings.poll_interval);
        let mut outcome = Round::Done(Some(job.jid.clone()));
        // expected minions still without a return (kept as a count: no rescan per event)
        let mut missing = expected
            .iter()
            .filter(|m| !returned.contains_key(**m))
            .count();
        while missing > 0 {
            let now = Instant::now();
            if now >= deadline {
                tracing::debug!(jid = %job.jid, "job timeout passed");
                break;
            }
            let wake = next_poll.min(deadline);
            let event = match rx.as_mut() {
                Some(rx) => tokio::select! {
                    ev = rx.recv() => ev,
                    () = tokio::time::sleep_until(wake.into()) => None,
                },
                None => {
                    tokio::time::sleep_until(wake.into()).await;
                    None
                }
            };
            if let Some(batch) = event {
                for (m, o) in batch {
                    if wanted.contains(m.as_str()) {
                        let counts = expected.contains(m.as_str());
                        if returned.insert(m, o).is_none() && counts {
                            missing -= 1;
                        }
                    }
                }
                continue;
            }
            if Instant::now() < next_poll {
                continue;
            }
            // while the event stream is connected, polling is only a safety net
            let every = if rx.is_some() && lock_events(&self.endpoints[idx].events).connected {
                self.settings.poll_interval.max(Duration::from_secs(2))
            } else {
                self.settings.poll_interval
            };
            let remaining = deadline.saturating_duration_since(Instant::now());
            let budget = self
                .settings
                .request_timeout
                .min(remaining.max(Duration::from_millis(500)));
            match self.authed(idx, Req::Get(&path), budget).await {
                Ok(bytes) => {
                    let status = decode::job(&bytes)?;
                    for (m, o) in status.returned {
                        if wanted.contains(m.as_str()) {
                            let counts = expected.contains(m.as_str());
                            if returned.insert(m, o).is_none() && counts {
                                missing -= 1;
                            }
                        }
                    }
                }
                Err(e @ SaltError::Unreachable { .. }) if self.endpoints.len() > 1 => {
                    outcome = Round::EndpointDied {
                        jid: job.jid.clone(),
                        idx,
                        error: e,
                    };
                    break;
                }
                Err(e) if e.is_retryable() => {
                    tracing::warn!(jid = %job.jid, error = %e, "polling the job failed; retrying");
                }
                Err(e) => {
                    self.unsubscribe(idx, &job.jid);
                    return Err(e);
                }
            }
            next_poll = from_now(every);
        }
        if rx.is_some() {
            self.unsubscribe(idx, &job.jid);
        }
        Ok(outcome)
    }

    /// Resolves a target expression to minion ids: `list` locally; the other types by asking the master
    /// which minions a `local_async` `test.ping` with that `tgt_type` is sent to (the master matches ids
    /// against accepted keys and grains against its cache, so minions that are down are included).
    async fn resolve_targets(&self, target: &TargetExpr) -> Result<Vec<MinionId>, SaltError> {
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
        let (_, bytes) = self
            .request_any(Req::Post("/", &body), self.settings.request_timeout, true)
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
    async fn runner(&self, fun: &str, kwargs: Map<String, Value>) -> Result<Value, SaltError> {
        let bytes = self.runner_raw(fun, kwargs).await?;
        decode::runner(&bytes)
    }

    async fn runner_raw(
        &self,
        fun: &str,
        kwargs: Map<String, Value>,
    ) -> Result<Vec<u8>, SaltError> {
        let mut low = kwargs;
        low.insert("client".into(), "runner".into());
        low.insert("fun".into(), fun.into());
        let body = Value::Array(vec![Value::Object(low)]);
        let (_, bytes) = self
            .request_any(Req::Post("/", &body), self.settings.request_timeout, true)
            .await?;
        Ok(bytes)
    }

    async fn wheel_raw(&self, fun: &str, kwargs: Map<String, Value>) -> Result<Vec<u8>, SaltError> {
        let mut low = kwargs;
        low.insert("client".into(), "wheel".into());
        low.insert("fun".into(), fun.into());
        let body = Value::Array(vec![Value::Object(low)]);
        let (_, bytes) = self
            .request_any(Req::Post("/", &body), self.settings.request_timeout, false)
            .await?;
        Ok(bytes)
    }

    /// The `manage.status` runner: which minions with accepted keys answer.
    async fn manage_status(&self) -> Result<ManageStatus, SaltError> {
        let bytes = self.runner_raw("manage.status", Map::new()).await?;
        decode::manage_status(&bytes)
    }

    /// Whether each of `minions` answers, through the `manage.status` runner restricted to them (list
    /// target). Unknown ids are `false`.
    async fn ping(&self, minions: &[MinionId]) -> Result<BTreeMap<MinionId, bool>, SaltError> {
        if minions.is_empty() {
            return Ok(BTreeMap::new());
        }
        let tgt: Vec<&str> = minions.iter().map(MinionId::as_str).collect();
        let mut kw = Map::new();
        kw.insert("tgt".into(), tgt.join(",").into());
        kw.insert("tgt_type".into(), "list".into());
        let bytes = self.runner_raw("manage.status", kw).await?;
        let status = decode::manage_status(&bytes)?;
        let up: HashSet<&str> = status.up.iter().map(String::as_str).collect();
        Ok(minions
            .iter()
            .map(|m| (m.clone(), up.contains(m.as_str())))
            .collect())
    }

    // ------------------------------------------------------------------ events

    /// Starts the `/events` reader of endpoint `idx` unless it runs; waits a moment for a new one to
    /// connect so that the first job's returns are not missed (polling catches them otherwise).
    async fn ensure_events(self: &Arc<Self>, idx: usize) {
        let started = {
            let mut ev = lock_events(&self.endpoints[idx].events);
            if ev.task.as_ref().is_some_and(|t| !t.is_finished()) {
                false
            } else {
                let me = Arc::clone(self);
                ev.task = Some(tokio::spawn(async move { me.events_loop(idx).await }));
                true
            }
        };
        if started {
            let until = from_now(Duration::from_secs(2));
            while Instant::now() < until && !lock_events(&self.endpoints[idx].events).connected {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    fn subscribe(&self, idx: usize, jid: &str) -> mpsc::UnboundedReceiver<ReturnBatch> {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut ev = lock_events(&self.endpoints[idx].events);
        let early = std::mem::take(&mut ev.early);
        let mut mine = Vec::new();
        for (at, j, m, o) in early {
            if j == jid {
                mine.push((m, o));
            } else {
                ev.early.push_back((at, j, m, o));
            }
        }
        if !mine.is_empty() {
            ev.from_events += mine.len() as u64;
            let _ = tx.send(mine);
        }
        ev.waiters.insert(jid.to_owned(), tx);
        rx
    }

    fn unsubscribe(&self, idx: usize, jid: &str) {
        lock_events(&self.endpoints[idx].events).waiters.remove(jid);
    }

    /// Reads the `/events` stream of endpoint `idx` for as long as the client lives, reconnecting
    /// (with a fresh token when needed) after a failure.
    async fn events_loop(self: Arc<Self>, idx: usize) {
        let ep = &self.endpoints[idx];
        let mut backoff = Duration::from_secs(1);
        loop {
            match self.open_events(idx).await {
                Ok(mut resp) => {
                    backoff = Duration::from_secs(1);
                    tracing::debug!(endpoint = %ep.url, "event stream connected");
                    lock_events(&ep.events).connected = true;
                    let mut parser = decode::SseParser::new();
                    while let Ok(Some(chunk)) = resp.chunk().await {
                        let mut rets = Vec::new();
                        parser.push_each(&chunk, |rec| match decode::job_return_event_ref(&rec) {
                            Ok(Some(ret)) => rets.push(ret),
                            Ok(None) => {}
                            Err(e) => tracing::debug!(error = %e, "unreadable event"),
                        });
                        if !rets.is_empty() {
                            self.dispatch(idx, rets);
                        }
                    }
                    lock_events(&ep.events).connected = false;
                    tracing::debug!(endpoint = %ep.url, "event stream closed");
                }
                Err(e) => {
                    tracing::debug!(endpoint = %ep.url, error = %e, ?backoff, "cannot open the event stream");
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
    }

    async fn open_events(&self, idx: usize) -> Result<reqwest::Response, SaltError> {
        let ep = &self.endpoints[idx];
        for attempt in 0..2 {
            let token = self.token(idx).await?;
            let resp = self
                .http
                .get(format!("{}/events", ep.url))
                .header("Accept", "text/event-stream")
                .header("X-Auth-Token", token)
                .send()
                .await
                .map_err(|e| SaltError::Unreachable {
                    endpoint: ep.url.clone(),
                    message: error_chain(&e),
                })?;
            match resp.status().as_u16() {
                200..=299 => return Ok(resp),
                401 if attempt == 0 => lock(&ep.state).token = None,
                status => {
                    let body = resp.bytes().await.unwrap_or_default();
                    return Err(api_error(&ep.url, status, &body));
                }
            }
        }
        Err(SaltError::Auth {
            endpoint: ep.url.clone(),
            user: self.settings.user.clone(),
            message: "event stream refused a fresh token".into(),
        })
    }

    /// Hands the returns a stream chunk carried to the jobs waiting for them (one message per job, so
    /// one wake-up per chunk); keeps the others a while for jobs that subscribe late.
    fn dispatch(&self, idx: usize, rets: Vec<decode::JobReturnEvent>) {
        let mut per_job: HashMap<String, ReturnBatch> = HashMap::new();
        let mut ev = lock_events(&self.endpoints[idx].events);
        let now = Instant::now();
        for ret in rets {
            if ev.waiters.contains_key(&ret.jid) {
                per_job
                    .entry(ret.jid)
                    .or_default()
                    .push((ret.minion, ret.outcome));
                continue;
            }
            while ev
                .early
                .front()
                .is_some_and(|(at, ..)| now.duration_since(*at) > EARLY_KEEP)
                || ev.early.len() >= EARLY_MAX
            {
                ev.early.pop_front();
            }
            ev.early.push_back((now, ret.jid, ret.minion, ret.outcome));
        }
        for (jid, batch) in per_job {
            let n = batch.len() as u64;
            let sent = ev.waiters.get(&jid).map(|tx| tx.send(batch));
            match sent {
                Some(Ok(())) => ev.from_events += n,
                // the job stopped waiting (timeout, error): its late returns are of no use
                _ => {
                    ev.waiters.remove(&jid);
                }
            }
        }
    }

    // ------------------------------------------------------------------ plumbing

    /// Available endpoints in configured order, then those in cool-down.
    fn endpoint_order(&self) -> Vec<usize> {
        let now = Instant::now();
        let (mut up, down): (Vec<usize>, Vec<usize>) = (0..self.endpoints.len()).partition(|&i| {
            lock(&self.endpoints[i].state)
                .down_until
                .is_none_or(|t| t <= now)
        });
        up.extend(down);
        up
    }

    fn mark_down(&self, idx: usize, e: &SaltError) {
        let ep = &self.endpoints[idx];
        tracing::warn!(endpoint = %ep.url, error = %e, cooldown = ?self.settings.endpoint_cooldown, "salt-api endpoint marked down");
        let mut s = lock(&ep.state);
        s.down_until = Some(from_now(self.settings.endpoint_cooldown));
        s.last_error = Some(e.to_string());
    }

    fn mark_ok(&self, idx: usize) {
        let mut s = lock(&self.endpoints[idx].state);
        s.down_until = None;
        s.last_error = None;
    }

    /// Sends `req` to the first endpoint that takes it. Failures that may be an endpoint's fault
    /// (unreachable, timeout, 502–504) mark it down; the request goes on to the next endpoint when it
    /// surely was not received (unreachable) or `resend_ok`.
    async fn request_any(
        &self,
        req: Req<'_>,
        timeout: Duration,
        resend_ok: bool,
    ) -> Result<(usize, Vec<u8>), SaltError> {
        let mut errors = Vec::new();
        for idx in self.endpoint_order() {
            match self.authed(idx, req, timeout).await {
                Ok(b) => {
                    self.mark_ok(idx);
                    return Ok((idx, b));
                }
                Err(e) if e.is_retryable() => {
                    self.mark_down(idx, &e);
                    let never_sent = matches!(e, SaltError::Unreachable { .. });
                    if !(never_sent || resend_ok) {
                        return Err(e);
                    }
                    errors.push(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(all_down(errors))
    }

    async fn token(&self, idx: usize) -> Result<String, SaltError> {
        {
            let s = lock(&self.endpoints[idx].state);
            if let Some(t) = &s.token {
                if Instant::now() < t.refresh_at {
                    return Ok(t.value.clone());
                }
            }
        }
        self.login_at(idx).await
    }

    async fn login_at(&self, idx: usize) -> Result<String, SaltError> {
        let ep = &self.endpoints[idx];
        let _guard = ep.login_lock.lock().await;
        // another task may have logged in while this one waited
        {
            let s = lock(&ep.state);
            if let Some(t) = &s.token {
                if Instant::now() < t.refresh_at {
                    return Ok(t.value.clone());
                }
            }
        }
        let mut body = json!({
            "username": self.settings.user,
            "password": self.settings.password,
            "eauth": self.settings.eauth,
        });
        if let Some(te) = self.settings.token_expire {
            body["token_expire"] = json!(te.as_secs_f64().ceil() as u64);
        }
        let sent = Instant::now();
        let (status, bytes) = self
            .send(
                idx,
                None,
                Req::Post("/login", &body),
                self.settings.request_timeout,
            )
            .await?;
        match status {
            200..=299 => {}
            401 | 403 => {
                return Err(SaltError::Auth {
                    endpoint: ep.url.clone(),
                    user: self.settings.user.clone(),
                    message: decode::error_message(&bytes),
                })
            }
            _ => return Err(api_error(&ep.url, status, &bytes)),
        }
        let t = decode::login(&bytes)?;
        let lifetime = Duration::from_secs_f64(t.lifetime_secs().min(1.0e9));
        let margin = (lifetime / 5).min(Duration::from_secs(60));
        tracing::debug!(endpoint = %ep.url, user = %self.settings.user, ?lifetime, "logged in to salt-api");
        let mut s = lock(&ep.state);
        s.token = Some(Token {
            value: t.token.clone(),
            refresh_at: after(sent, lifetime.saturating_sub(margin)),
        });
        Ok(t.token)
    }

    /// One authenticated request to endpoint `idx`; on 401 logs in again once and resends.
    async fn authed(
        &self,
        idx: usize,
        req: Req<'_>,
        timeout: Duration,
    ) -> Result<Vec<u8>, SaltError> {
        let ep = &self.endpoints[idx];
        let mut token = self.token(idx).await?;
        for attempt in 0..2 {
            let (status, bytes) = self.send(idx, Some(&token), req, timeout).await?;
            match status {
                200..=299 => return Ok(bytes),
                401 if attempt == 0 => {
                    tracing::debug!(endpoint = %ep.url, path = req.path(), "token refused (401); logging in again");
                    lock(&ep.state).token = None;
                    token = self.login_at(idx).await?;
                }
                401 | 403 => {
                    return Err(SaltError::Auth {
                        endpoint: ep.url.clone(),
                        user: self.settings.user.clone(),
                        message: decode::error_message(&bytes),
                    })
                }
                _ => return Err(api_error(&ep.url, status, &bytes)),
            }
        }
        Err(SaltError::Auth {
            endpoint: ep.url.clone(),
            user: self.settings.user.clone(),
            message: "token refused after a fresh login".into(),
        })
    }

    async fn send(
        &self,
        idx: usize,
        token: Option<&str>,
        req: Req<'_>,
        timeout: Duration,
    ) -> Result<(u16, Vec<u8>), SaltError> {
        let ep = &self.endpoints[idx];
        let url = format!("{}{}", ep.url, req.path());
        let mut rb = match req {
            Req::Get(_) => self.http.get(&url),
            Req::Post(_, body) => self.http.post(&url).json(body),
        };
        rb = rb.header("Accept", "application/json").timeout(timeout);
        if let Some(t) = token {
            rb = rb.header("X-Auth-Token", t);
        }
        let what = || {
            format!(
                "{} {}",
                if matches!(req, Req::Get(_)) {
                    "GET"
                } else {
                    "POST"
                },
                req.path()
            )
        };
        let map = |e: reqwest::Error| {
            if e.is_timeout() {
                SaltError::Timeout {
                    endpoint: ep.url.clone(),
                    what: what(),
                    after: timeout,
                }
            } else {
                SaltError::Unreachable {
                    endpoint: ep.url.clone(),
                    message: error_chain(&e),
                }
            }
        };
        let resp = rb.send().await.map_err(map)?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(map)?;
        Ok((status, bytes.to_vec()))
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    crate::error::snippet(&s)
}

fn api_error(endpoint: &str, status: u16, body: &[u8]) -> SaltError {
    SaltError::Api {
        endpoint: endpoint.to_owned(),
        status,
        message: decode::error_message(body),
    }
}

fn all_down(mut errors: Vec<SaltError>) -> SaltError {
    if errors.len() == 1 {
        if let Some(e) = errors.pop() {
            return e;
        }
    }
    SaltError::AllEndpointsDown {
        errors: errors.iter().map(ToString::to_string).collect(),
    }
}

/// A salt-api (rest_cherrypy) client implementing [`Transport`].
///
/// * logs in with eauth at first use, keeps the token and logs in again shortly before it expires,
///   and once more (transparently) when salt-api answers 401;
/// * [`Transport::call`] is one `local_async` request with list targeting for all the targets, then
///   `GET /jobs/<jid>` every [`SaltApiSettings::poll_interval`] until every targeted minion returned or
///   the call's timeout (or [`SaltApiSettings::job_timeout`]) passed; minions without a return are
///   [`Outcome::NoReturn`];
/// * with several endpoints, one that cannot be reached, times out or answers 502–504 is skipped for
///   [`SaltApiSettings::endpoint_cooldown`] and the next one is used. A job is polled on the endpoint
///   that started it (a master only knows its own jobs). A mutating call is only sent elsewhere when the
///   first endpoint surely did not receive it (connection failure). When the endpoint running a job
///   stops answering before every return arrived, the job is re-issued on the next endpoint for the
///   minions that have not returned: **steps must be idempotent** (the bundled project types' are).
///
/// Cheap to clone; clones share tokens, endpoint health and event streams.
#[derive(Clone)]
pub struct SaltApi {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SaltApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaltApi")
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

impl Drop for SaltApi {
    fn drop(&mut self) {
        for e in &self.inner.endpoints {
            if let Some(task) = lock_events(&e.events).task.take() {
                task.abort();
            }
        }
    }
}

impl SaltApi {
    /// A client for `settings` (nothing is sent yet).
    pub fn new(settings: SaltApiSettings) -> Result<Self, SettingsError> {
        Ok(SaltApi {
            inner: Arc::new(Inner::new(settings)?),
        })
    }

    /// The settings.
    pub fn settings(&self) -> &SaltApiSettings {
        &self.inner.settings
    }

    /// The health of every endpoint, in configured order.
    pub fn endpoint_health(&self) -> Vec<EndpointHealth> {
        self.inner.endpoint_health()
    }

    /// Logs in at the first endpoint that answers (checks credentials early).
    pub async fn login(&self) -> Result<(), SaltError> {
        self.inner.login().await
    }

    /// Replaces every held token by `value` and forgets its expiry, so the next request uses it as is;
    /// with a token salt-api does not know this exercises the 401 → log in again path. For tests.
    #[doc(hidden)]
    pub fn test_only_replace_tokens(&self, value: &str) {
        self.inner.test_only_replace_tokens(value);
    }

    /// Runs `call` on `targets` with ONE `local_async` request (list targeting) and collects the
    /// returns; see [`SaltApi`].
    pub async fn run(&self, targets: &[MinionId], call: &SaltCall) -> Result<Returns, SaltError> {
        Inner::run(&self.inner, targets, call).await
    }

    /// Resolves a target expression to minion ids: `list` locally; the other types by asking the master
    /// which minions a `local_async` `test.ping` with that `tgt_type` is sent to (the master matches ids
    /// against accepted keys and grains against its cache, so minions that are down are included).
    pub async fn resolve_targets(&self, target: &TargetExpr) -> Result<Vec<MinionId>, SaltError> {
        self.inner.resolve_targets(target).await
    }

    /// Runs a runner function (`client: runner`) with keyword arguments and returns its value.
    pub async fn runner(&self, fun: &str, kwargs: Map<String, Value>) -> Result<Value, SaltError> {
        self.inner.runner(fun, kwargs).await
    }

    /// The `manage.status` runner: which minions with accepted keys answer.
    pub async fn manage_status(&self) -> Result<ManageStatus, SaltError> {
        self.inner.manage_status().await
    }

    /// The `manage.up` runner: the minions that answer.
    pub async fn manage_up(&self) -> Result<Vec<String>, SaltError> {
        let v = self.inner.runner("manage.up", Map::new()).await?;
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
        self.inner.ping(minions).await
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
