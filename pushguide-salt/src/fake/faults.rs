//! Faults injected into a running [`FakeSaltApi`](super::FakeSaltApi).

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::watch;

#[derive(Debug, Default)]
struct State {
    fail_next: usize,
    fail_status: u16,
    malformed_next: usize,
    unauthorized_next: usize,
    tokens_valid_from: Option<Instant>,
    token_ttl: Option<Duration>,
    refuse_events: bool,
    extra_latency: Duration,
    lose_returns: usize,
}

/// A handle on the faults of a [`FakeSaltApi`](super::FakeSaltApi); cheap to clone, settable while
/// the server runs. Each setter takes effect for the requests that arrive after it.
///
/// "Requests" below means every request except `GET /events`, whose faults are
/// [`Faults::drop_event_streams`] and [`Faults::refuse_event_streams`].
///
/// A minion that never returns is scripted on the fleet, not here:
/// `fake.fleet().add_rule("web-07", "*", Outcome::NoReturn, None)`.
#[derive(Clone, Debug)]
pub struct Faults {
    state: Arc<Mutex<State>>,
    drop_streams: Arc<watch::Sender<u64>>,
}

/// What the server does with one request, decided when it arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Answer normally.
    Serve,
    /// Answer this status (an HTML page) without doing anything.
    Fail(u16),
    /// Answer 401 whatever the token.
    Unauthorized,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            state: Arc::new(Mutex::new(State {
                fail_status: 500,
                ..State::default()
            })),
            drop_streams: Arc::new(watch::channel(0).0),
        }
    }
}

impl Faults {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next `n` requests answer HTTP 500 (CherryPy's HTML page) without any effect.
    pub fn fail_next(&self, n: usize) {
        self.fail_next_with(n, 500);
    }

    /// The next `n` requests answer `status` (e.g. 503, which the client treats as an endpoint fault)
    /// without any effect.
    pub fn fail_next_with(&self, n: usize, status: u16) {
        let mut s = self.lock();
        s.fail_next = n;
        s.fail_status = status;
    }

    /// The next `n` responses carry a truncated JSON body (status 200, `application/json`). The
    /// requests themselves take effect: a `local_async` job still starts.
    pub fn malformed_next(&self, n: usize) {
        self.lock().malformed_next = n;
    }

    /// The next `n` requests that need a token answer 401, whatever the token.
    pub fn unauthorized_next(&self, n: usize) {
        self.lock().unauthorized_next = n;
    }

    /// Every token issued so far stops working (as after a master restart); the next request with one
    /// answers 401.
    pub fn expire_tokens(&self) {
        self.lock().tokens_valid_from = Some(Instant::now());
    }

    /// Tokens issued from now on stop working after `ttl`, whatever the login answer announced
    /// (`None`: they live as announced).
    pub fn token_ttl(&self, ttl: Option<Duration>) {
        self.lock().token_ttl = ttl;
    }

    /// Closes every open `/events` stream now (the client sees the connection drop).
    pub fn drop_event_streams(&self) {
        self.drop_streams.send_modify(|n| *n += 1);
    }

    /// Whether new `GET /events` requests are refused with HTTP 503.
    pub fn refuse_event_streams(&self, refuse: bool) {
        self.lock().refuse_events = refuse;
    }

    /// The returns of the next `jobs` jobs are never published on `/events` (as if the stream lost
    /// them without dropping); `GET /jobs/<jid>` still has them.
    pub fn lose_return_events(&self, jobs: usize) {
        self.lock().lose_returns = jobs;
    }

    /// Whether this job's return events are lost (counts one down).
    pub(super) fn take_lost_returns(&self) -> bool {
        let mut s = self.lock();
        if s.lose_returns == 0 {
            return false;
        }
        s.lose_returns -= 1;
        true
    }

    /// Every request (including `GET /events`) waits `latency` before it is handled.
    pub fn extra_latency(&self, latency: Duration) {
        self.lock().extra_latency = latency;
    }

    /// Removes every fault (open streams stay open, expired tokens stay expired).
    pub fn clear(&self) {
        let mut s = self.lock();
        *s = State {
            fail_status: 500,
            tokens_valid_from: s.tokens_valid_from,
            ..State::default()
        };
    }

    // ---------------------------------------------------------------- server side

    pub(super) fn latency(&self) -> Duration {
        self.lock().extra_latency
    }

    pub(super) fn verdict(&self, needs_token: bool) -> Verdict {
        let mut s = self.lock();
        if s.fail_next > 0 {
            s.fail_next -= 1;
            return Verdict::Fail(s.fail_status);
        }
        if needs_token && s.unauthorized_next > 0 {
            s.unauthorized_next -= 1;
            return Verdict::Unauthorized;
        }
        Verdict::Serve
    }

    pub(super) fn take_malformed(&self) -> bool {
        let mut s = self.lock();
        if s.malformed_next > 0 {
            s.malformed_next -= 1;
            true
        } else {
            false
        }
    }

    pub(super) fn refuses_events(&self) -> bool {
        self.lock().refuse_events
    }

    /// Whether a token issued at `issued` is still accepted (besides its own expiry).
    pub(super) fn token_alive(&self, issued: Instant) -> bool {
        self.lock()
            .tokens_valid_from
            .is_none_or(|from| issued > from)
    }

    pub(super) fn server_ttl(&self) -> Option<Duration> {
        self.lock().token_ttl
    }

    pub(super) fn stream_drops(&self) -> watch::Receiver<u64> {
        self.drop_streams.subscribe()
    }
}
