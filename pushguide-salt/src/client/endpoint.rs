//! One salt master's salt-api: its URL, token (login, renewal, 401), sending a request, and failover
//! between endpoints (cool-down after a failure, trying the next one).

use std::future::Future;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::events::{lock_events, EventsState};
use super::failure::{api_error, unreachable};
use super::{after, from_now, EndpointHealth, Inner};
use crate::decode;
use crate::error::SaltError;

struct Token {
    value: String,
    refresh_at: Instant,
}

#[derive(Default)]
pub(super) struct EndpointState {
    token: Option<Token>,
    down_until: Option<Instant>,
    last_error: Option<String>,
}

/// One configured salt-api endpoint and what the client knows of it.
pub(super) struct Endpoint {
    /// Base URL, without a trailing `/`.
    pub(super) url: String,
    state: Mutex<EndpointState>,
    login_lock: tokio::sync::Mutex<()>,
    /// Its `/events` stream (see `events.rs`).
    pub(super) events: Mutex<EventsState>,
}

impl Endpoint {
    pub(super) fn new(url: &str) -> Self {
        Endpoint {
            url: url.trim_end_matches('/').to_owned(),
            state: Mutex::new(EndpointState::default()),
            login_lock: tokio::sync::Mutex::new(()),
            events: Mutex::new(EventsState::default()),
        }
    }

    /// The held token, unless it is due for renewal.
    fn fresh_token(&self) -> Option<String> {
        let s = lock(&self.state);
        s.token
            .as_ref()
            .filter(|t| Instant::now() < t.refresh_at)
            .map(|t| t.value.clone())
    }

    /// Drops the held token, so the next request logs in again.
    pub(super) fn forget_token(&self) {
        lock(&self.state).token = None;
    }
}

fn lock(m: &Mutex<EndpointState>) -> MutexGuard<'_, EndpointState> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A request to one endpoint: the path (and body) only; the base URL comes from the endpoint.
#[derive(Clone, Copy)]
pub(super) enum Req<'a> {
    Get(&'a str),
    Post(&'a str, &'a Value),
}

impl Req<'_> {
    fn path(&self) -> &str {
        match self {
            Req::Get(p) | Req::Post(p, _) => p,
        }
    }

    /// `GET /path` or `POST /path`, for messages.
    fn describe(&self) -> String {
        let method = if matches!(self, Req::Get(_)) {
            "GET"
        } else {
            "POST"
        };
        format!("{method} {}", self.path())
    }
}

impl Inner {
    /// The health of every endpoint, in configured order.
    pub(super) fn endpoint_health(&self) -> Vec<EndpointHealth> {
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

    /// Forgets the expiry of every held token so the next request uses it as is; with a token that
    /// salt-api no longer accepts this exercises the 401 → log in again path. For tests.
    pub(super) fn test_only_replace_tokens(&self, value: &str) {
        for e in &self.endpoints {
            let mut s = lock(&e.state);
            if let Some(t) = s.token.as_mut() {
                t.value = value.to_owned();
                t.refresh_at = from_now(Duration::from_secs(3600));
            }
        }
    }

    // ------------------------------------------------------------------ failover

    /// Available endpoints in configured order, then those in cool-down.
    pub(super) fn endpoint_order(&self) -> Vec<usize> {
        let now = Instant::now();
        let (mut up, down): (Vec<usize>, Vec<usize>) = (0..self.endpoints.len()).partition(|&i| {
            lock(&self.endpoints[i].state)
                .down_until
                .is_none_or(|t| t <= now)
        });
        up.extend(down);
        up
    }

    pub(super) fn mark_down(&self, idx: usize, e: &SaltError) {
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

    /// Runs `attempt` on each endpoint in [`Inner::endpoint_order`] until one succeeds, and says which
    /// one did. A failure that may be the endpoint's fault (unreachable, timeout, 502–504) marks it
    /// down; the next endpoint is tried when the request surely was not received (unreachable) or
    /// `resend_ok`. Any other failure ends the search.
    async fn first_answer<T, F, Fut>(
        &self,
        resend_ok: bool,
        mut attempt: F,
    ) -> Result<(usize, T), SaltError>
    where
        F: FnMut(usize) -> Fut,
        Fut: Future<Output = Result<T, SaltError>>,
    {
        let mut errors = Vec::new();
        for idx in self.endpoint_order() {
            match attempt(idx).await {
                Ok(v) => return Ok((idx, v)),
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

    /// Sends `req` to the first endpoint that takes it (see [`Inner::first_answer`]); the endpoint
    /// that answered is marked available again.
    pub(super) async fn request_any(
        &self,
        req: Req<'_>,
        timeout: Duration,
        resend_ok: bool,
    ) -> Result<(usize, Vec<u8>), SaltError> {
        let (idx, bytes) = self
            .first_answer(resend_ok, |idx| self.authed(idx, req, timeout))
            .await?;
        self.mark_ok(idx);
        Ok((idx, bytes))
    }

    // ------------------------------------------------------------------ login and token

    /// Logs in at the first endpoint that answers (checks credentials early).
    pub(super) async fn login(&self) -> Result<(), SaltError> {
        self.first_answer(true, |idx| self.login_at(idx))
            .await
            .map(|_| ())
    }

    /// A token for endpoint `idx`: the held one while fresh, else a new login.
    pub(super) async fn token(&self, idx: usize) -> Result<String, SaltError> {
        match self.endpoints[idx].fresh_token() {
            Some(t) => Ok(t),
            None => self.login_at(idx).await,
        }
    }

    /// Logs in at endpoint `idx` (once, however many tasks ask at the same time) and keeps the token
    /// until shortly before it expires.
    async fn login_at(&self, idx: usize) -> Result<String, SaltError> {
        let ep = &self.endpoints[idx];
        let _guard = ep.login_lock.lock().await;
        // another task may have logged in while this one waited
        if let Some(t) = ep.fresh_token() {
            return Ok(t);
        }
        let body = self.login_body();
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
            401 | 403 => return Err(self.auth_error(idx, decode::error_message(&bytes))),
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

    /// The body of `POST /login`: the credentials and, when set, the token lifetime to ask for.
    fn login_body(&self) -> Value {
        let mut body = json!({
            "username": self.settings.user,
            "password": self.settings.password,
            "eauth": self.settings.eauth,
        });
        if let Some(te) = self.settings.token_expire {
            body["token_expire"] = json!(te.as_secs_f64().ceil() as u64);
        }
        body
    }

    /// salt-api at endpoint `idx` refused the configured user.
    pub(super) fn auth_error(&self, idx: usize, message: String) -> SaltError {
        SaltError::Auth {
            endpoint: self.endpoints[idx].url.clone(),
            user: self.settings.user.clone(),
            message,
        }
    }

    // ------------------------------------------------------------------ requests

    /// One authenticated request to endpoint `idx`; on 401 logs in again once and resends.
    pub(super) async fn authed(
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
                    ep.forget_token();
                    token = self.login_at(idx).await?;
                }
                401 | 403 => return Err(self.auth_error(idx, decode::error_message(&bytes))),
                _ => return Err(api_error(&ep.url, status, &bytes)),
            }
        }
        Err(self.auth_error(idx, "token refused after a fresh login".into()))
    }

    /// Sends `req` to endpoint `idx` once and reads the whole answer: its status and body.
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
        let map = |e: reqwest::Error| {
            if e.is_timeout() {
                SaltError::Timeout {
                    endpoint: ep.url.clone(),
                    what: req.describe(),
                    after: timeout,
                }
            } else {
                unreachable(&ep.url, &e)
            }
        };
        let resp = rb.send().await.map_err(map)?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(map)?;
        Ok((status, bytes.to_vec()))
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
