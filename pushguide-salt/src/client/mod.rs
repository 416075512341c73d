//! The salt-api HTTP client, [`SaltApi`].
//!
//! Where to look:
//!
//! * this file: the public [`SaltApi`] handle, its settings checks and the shared state (`Inner`);
//! * `endpoint.rs`: one salt master's URL — login and token, sending a request, 401 handling, and
//!   failover between masters (cool-down, trying the next one);
//! * `events.rs`: the `/events` server-sent-event stream of each master, shared by every job;
//! * `job.rs`: one call as a `local_async` job — starting it, collecting the batch's returns (events,
//!   polling `/jobs/<jid>`, re-issuing on another master) — and the `Transport` impl;
//! * `compound.rs`: several functions in one job (salt's compound command);
//! * `queries.rs`: one-request calls — runners, wheel, target resolution, ping;
//! * `install.rs`: installing the pushguide salt module on every master and its minions;
//! * `failure.rs`: the errors a request and an event stream both build (unreachable, API status).

use std::sync::Arc;
use std::time::{Duration, Instant};

use pushguide_core::{MinionId, Returns, SaltCall};

use crate::error::SaltError;
use crate::{SaltApiSettings, SettingsError};

mod compound;
mod endpoint;
mod events;
mod failure;
mod install;
mod job;
mod queries;

use endpoint::Endpoint;
pub use install::{EndpointWrite, MinionInstall, ModuleInstall};

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

/// What every clone of a [`SaltApi`] shares: the settings, the HTTP client and the endpoints (with
/// their tokens, health and event streams). Its methods live in the files named in this module's
/// documentation, by concern.
struct Inner {
    settings: SaltApiSettings,
    http: reqwest::Client,
    endpoints: Vec<Endpoint>,
}

impl Inner {
    fn new(settings: SaltApiSettings) -> Result<Self, SettingsError> {
        if settings.endpoints.is_empty() {
            return Err(SettingsError::Invalid {
                var: "endpoints",
                reason: "no salt-api endpoint configured".to_owned(),
            });
        }
        check_durations(&settings)?;
        let http = http_client(&settings)?;
        let endpoints = settings
            .endpoints
            .iter()
            .map(|u| Endpoint::new(u))
            .collect();
        Ok(Inner {
            settings,
            http,
            endpoints,
        })
    }
}

/// Refuses every settings duration above [`MAX_SETTING_DURATION`], naming its key.
fn check_durations(settings: &SaltApiSettings) -> Result<(), SettingsError> {
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
    Ok(())
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

/// The HTTP client every endpoint shares: connect timeout, extra CA certificates, TLS checks.
fn http_client(settings: &SaltApiSettings) -> Result<reqwest::Client, SettingsError> {
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
    builder.build().map_err(|e| SettingsError::Invalid {
        var: "endpoints",
        reason: format!("cannot build the HTTP client: {e}"),
    })
}

/// A salt-api (rest_cherrypy) client implementing [`Transport`](pushguide_core::Transport).
///
/// * logs in with eauth at first use, keeps the token and logs in again shortly before it expires,
///   and once more (transparently) when salt-api answers 401;
/// * [`Transport::call`](pushguide_core::Transport::call) is one `local_async` request with list targeting for all the targets, then
///   the returns as the `/events` stream brings them, until every targeted minion returned or the
///   call's timeout (or [`SaltApiSettings::job_timeout`]) passed; minions without a return are
///   [`Outcome::NoReturn`](pushguide_core::Outcome::NoReturn). `GET /jobs/<jid>` (a `jobs.list_job`
///   runner job on the master) is only the fallback of a broken stream — every
///   [`SaltApiSettings::poll_interval`] while the stream is down or after it dropped or reconnected
///   during the wait — plus one look at the deadline for returns still missing;
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
        self.inner.stop_events();
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
}
