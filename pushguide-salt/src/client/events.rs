//! The `/events` server-sent-event stream of each endpoint: one reader per endpoint, shared by every
//! job started there, handing each job's returns to the call waiting for them.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use pushguide_core::Outcome;
use tokio::sync::mpsc;

use super::failure::{api_error, unreachable};
use super::{from_now, Inner};
use crate::decode;
use crate::error::SaltError;

/// Returns of one job as they arrive: every return a stream chunk carried for it, in one message.
pub(super) type ReturnBatch = Vec<(String, Outcome)>;
type ReturnTx = mpsc::UnboundedSender<ReturnBatch>;

/// The `/events` stream of one endpoint, shared by every job started there.
#[derive(Default)]
pub(super) struct EventsState {
    task: Option<tokio::task::JoinHandle<()>>,
    /// Whether the stream is connected now.
    pub(super) connected: bool,
    /// How many times the stream connected: a job whose wait saw no new connection (and no
    /// disconnection) missed none of its returns.
    pub(super) connects: u64,
    /// Calls waiting for returns, by jid.
    waiters: HashMap<String, ReturnTx>,
    /// Returns of jobs nobody waits for (yet): a return can arrive before `local_async` answered.
    early: VecDeque<(Instant, String, String, Outcome)>,
    /// How many returns were handed to a waiting call.
    pub(super) from_events: u64,
}

/// How long returns of unclaimed jobs are kept, and how many.
const EARLY_KEEP: Duration = Duration::from_secs(30);
const EARLY_MAX: usize = 10_000;

pub(super) fn lock_events(m: &Mutex<EventsState>) -> MutexGuard<'_, EventsState> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl EventsState {
    /// Keeps the return of a job nobody waits for, forgetting the oldest beyond [`EARLY_KEEP`] and
    /// [`EARLY_MAX`].
    fn keep_early(&mut self, now: Instant, ret: decode::JobReturnEvent) {
        while self
            .early
            .front()
            .is_some_and(|(at, ..)| now.duration_since(*at) > EARLY_KEEP)
            || self.early.len() >= EARLY_MAX
        {
            self.early.pop_front();
        }
        self.early
            .push_back((now, ret.jid, ret.minion, ret.outcome));
    }
}

impl Inner {
    /// Starts the `/events` reader of endpoint `idx` unless it runs; waits a moment for a new one to
    /// connect so that the first job's returns are not missed (polling catches them otherwise).
    pub(super) async fn ensure_events(self: &Arc<Self>, idx: usize) {
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

    /// Stops the reader of every endpoint.
    pub(super) fn stop_events(&self) {
        for e in &self.endpoints {
            if let Some(task) = lock_events(&e.events).task.take() {
                task.abort();
            }
        }
    }

    /// Waits for the returns of job `jid` on endpoint `idx`, starting with those that came early.
    pub(super) fn subscribe(&self, idx: usize, jid: &str) -> mpsc::UnboundedReceiver<ReturnBatch> {
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

    pub(super) fn unsubscribe(&self, idx: usize, jid: &str) {
        lock_events(&self.endpoints[idx].events).waiters.remove(jid);
    }

    /// Reads the `/events` stream of endpoint `idx` for as long as the client lives, reconnecting
    /// (with a fresh token when needed) after a failure.
    async fn events_loop(self: Arc<Self>, idx: usize) {
        let ep = &self.endpoints[idx];
        let mut backoff = Duration::from_secs(1);
        loop {
            match self.open_events(idx).await {
                Ok(resp) => {
                    backoff = Duration::from_secs(1);
                    self.read_events(idx, resp).await;
                }
                Err(e) => {
                    tracing::debug!(endpoint = %ep.url, error = %e, ?backoff, "cannot open the event stream");
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
    }

    /// Reads one connected stream until it ends, dispatching the job returns of each chunk.
    async fn read_events(&self, idx: usize, mut resp: reqwest::Response) {
        let ep = &self.endpoints[idx];
        tracing::debug!(endpoint = %ep.url, "event stream connected");
        {
            let mut ev = lock_events(&ep.events);
            ev.connected = true;
            ev.connects += 1;
        }
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

    /// `GET /events` on endpoint `idx`; on 401 logs in again once.
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
                .map_err(|e| unreachable(&ep.url, &e))?;
            match resp.status().as_u16() {
                200..=299 => return Ok(resp),
                401 if attempt == 0 => ep.forget_token(),
                status => {
                    let body = resp.bytes().await.unwrap_or_default();
                    return Err(api_error(&ep.url, status, &body));
                }
            }
        }
        Err(self.auth_error(idx, "event stream refused a fresh token".into()))
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
            } else {
                ev.keep_early(now, ret);
            }
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
}
