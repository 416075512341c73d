//! Webhooks: the service tells other systems when a deployment starts, pauses, succeeds, fails or
//! is rolled back, and when a minion goes down or comes back up.
//!
//! - [`Webhooks::notify`] never blocks and never fails: events go into a bounded queue; when it is
//!   full the event is dropped with a warning and counted ([`Webhooks::dropped`]).
//! - A background task sends each event to every hook that wants it, each delivery in its own task,
//!   through a [`WebhookSender`] (by default [`HttpSender`]: plain `http://` over hyper; the CLI
//!   passes one that speaks `https://` too). A delivery is tried [`Delivery::tries`] times with a
//!   doubling delay, each try bounded by [`Delivery::timeout`].
//! - The last [`FAILURES_KEPT`] failed deliveries are kept in memory (URL without its query
//!   string, event, error, time) and shown on `/admin` and `GET /api/v1/admin/webhooks`.
//! - Payloads: [`WebhookFormat::Json`] posts
//!   `{"event","template","deployment","version","user","outcome","url","at","hosts"}`;
//!   [`WebhookFormat::Slack`] posts `{"text": "…"}` with the same facts on one line and the
//!   deployment page as `<url|deployment>`.

use std::collections::VecDeque;
use std::fmt;
use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::app::AppState;
use crate::html::escape;
use crate::status::rfc3339;

/// How many failed deliveries are kept.
pub const FAILURES_KEPT: usize = 50;

/// What a hook can be told.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum WebhookEvent {
    /// A deployment started.
    DeploymentStarted,
    /// A deployment paused over its failure budget and waits for a decision.
    DeploymentPaused,
    /// A deployment succeeded on every host.
    DeploymentSucceeded,
    /// A deployment failed, was partially applied, cancelled, or its rollback failed.
    DeploymentFailed,
    /// A deployment was rolled back.
    DeploymentRolledBack,
    /// A minion stopped answering.
    MinionDown,
    /// A minion answers again.
    MinionUp,
}

impl WebhookEvent {
    /// Every event (a hook's default).
    pub const ALL: [WebhookEvent; 7] = [
        WebhookEvent::DeploymentStarted,
        WebhookEvent::DeploymentPaused,
        WebhookEvent::DeploymentSucceeded,
        WebhookEvent::DeploymentFailed,
        WebhookEvent::DeploymentRolledBack,
        WebhookEvent::MinionDown,
        WebhookEvent::MinionUp,
    ];

    /// The kebab-case name (`deployment-started`).
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookEvent::DeploymentStarted => "deployment-started",
            WebhookEvent::DeploymentPaused => "deployment-paused",
            WebhookEvent::DeploymentSucceeded => "deployment-succeeded",
            WebhookEvent::DeploymentFailed => "deployment-failed",
            WebhookEvent::DeploymentRolledBack => "deployment-rolled-back",
            WebhookEvent::MinionDown => "minion-down",
            WebhookEvent::MinionUp => "minion-up",
        }
    }

    /// The event named `name`, if there is one.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.as_str() == name)
    }

    /// The event a deployment's outcome is.
    pub fn for_outcome(outcome: pushguide_core::DeploymentOutcome) -> Self {
        use pushguide_core::DeploymentOutcome as O;
        match outcome {
            O::Succeeded => WebhookEvent::DeploymentSucceeded,
            O::RolledBack => WebhookEvent::DeploymentRolledBack,
            O::Failed | O::PartiallyApplied | O::Cancelled | O::RollbackFailed => {
                WebhookEvent::DeploymentFailed
            }
        }
    }
}

/// The body a hook gets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WebhookFormat {
    /// The generic JSON object.
    #[default]
    Json,
    /// A Slack-compatible `{"text": "…"}`.
    Slack,
}

impl WebhookFormat {
    /// The format named `name` (`json`, `slack`).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "json" => Some(WebhookFormat::Json),
            "slack" => Some(WebhookFormat::Slack),
            _ => None,
        }
    }
}

/// One `[[server.webhooks]]` entry.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    /// Where the events are posted (`http://` or `https://`; see [`check_url`]).
    pub url: String,
    /// The body's shape.
    pub format: WebhookFormat,
    /// The events this hook gets.
    pub events: Vec<WebhookEvent>,
}

impl fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // a hook URL often carries its secret (Slack's path, a `?token=`): never printed whole
        f.debug_struct("WebhookConfig")
            .field("url", &redact(&self.url))
            .field("format", &self.format)
            .field("events", &self.events)
            .finish()
    }
}

/// Checks a hook URL: `http://` or `https://`, a host, no spaces or control characters.
pub fn check_url(url: &str) -> Result<(), String> {
    let rest = if let Some(r) = strip_prefix_ci(url, "http://") {
        r
    } else if let Some(r) = strip_prefix_ci(url, "https://") {
        r
    } else {
        return Err("must start with http:// or https://".into());
    };
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain spaces or control characters".into());
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or("");
    if host.is_empty() || host.starts_with(':') {
        return Err("has no host".into());
    }
    Ok(())
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    (s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix))
        .then(|| &s[prefix.len()..])
}

/// `url` without its query string, fragment and user info (where secrets hide).
pub fn redact(url: &str) -> String {
    let cut = url.find(['?', '#']).unwrap_or(url.len());
    let base = &url[..cut];
    let mut out = match base.find("://") {
        Some(i) => {
            let (scheme, rest) = base.split_at(i + 3);
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let host = authority.rsplit('@').next().unwrap_or("");
            let user = if host.len() < authority.len() {
                "***@"
            } else {
                ""
            };
            format!("{scheme}{user}{host}{path}")
        }
        None => base.to_owned(),
    };
    if cut < url.len() {
        out.push_str("?…");
    }
    out
}

/// What happened, as a hook is told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    /// The event.
    pub event: WebhookEvent,
    /// The template (deployment events).
    pub template: Option<String>,
    /// The deployment id (deployment events).
    pub deployment: Option<String>,
    /// The version released.
    pub version: Option<String>,
    /// Who started the deployment.
    pub user: Option<String>,
    /// The outcome (finished deployments).
    pub outcome: Option<String>,
    /// The failed hosts of a pause; the minion of a minion event.
    pub hosts: Vec<String>,
    /// When.
    pub at: SystemTime,
}

impl Notification {
    /// An event with nothing known yet but its kind and time (now).
    pub fn new(event: WebhookEvent) -> Self {
        Notification {
            event,
            template: None,
            deployment: None,
            version: None,
            user: None,
            outcome: None,
            hosts: Vec::new(),
            at: SystemTime::now(),
        }
    }
}

#[derive(Serialize)]
struct JsonPayload<'a> {
    event: &'static str,
    template: Option<&'a str>,
    deployment: Option<&'a str>,
    version: Option<&'a str>,
    user: Option<&'a str>,
    outcome: Option<&'a str>,
    url: Option<String>,
    at: String,
    hosts: &'a [String],
}

/// The deployment page of `deployment` under `public_url`.
fn page_url(public_url: Option<&str>, deployment: Option<&str>) -> Option<String> {
    let (base, id) = (public_url?, deployment?);
    Some(format!(
        "{}/deployments/{}",
        base.trim_end_matches('/'),
        crate::admin::query_escape(id)
    ))
}

/// The body `format` gives `n` (`public_url` makes the deployment page link).
pub fn payload(format: WebhookFormat, n: &Notification, public_url: Option<&str>) -> Vec<u8> {
    let url = page_url(public_url, n.deployment.as_deref());
    match format {
        WebhookFormat::Json => serde_json::to_vec(&JsonPayload {
            event: n.event.as_str(),
            template: n.template.as_deref(),
            deployment: n.deployment.as_deref(),
            version: n.version.as_deref(),
            user: n.user.as_deref(),
            outcome: n.outcome.as_deref(),
            url,
            at: rfc3339(n.at),
            hosts: &n.hosts,
        })
        .unwrap_or_default(),
        WebhookFormat::Slack => {
            let mut text = format!("pushguide: {}", n.event.as_str());
            for (key, v) in [
                ("template", &n.template),
                ("version", &n.version),
                ("user", &n.user),
                ("outcome", &n.outcome),
            ] {
                if let Some(v) = v {
                    let _ = write!(text, " · {key} {}", slack_escape(v));
                }
            }
            if !n.hosts.is_empty() {
                let hosts: Vec<String> = n.hosts.iter().map(|h| slack_escape(h)).collect();
                let _ = write!(text, " · hosts {}", hosts.join(", "));
            }
            let _ = write!(text, " · at {}", rfc3339(n.at));
            if let Some(u) = url {
                let _ = write!(text, " · <{}|deployment>", slack_escape(&u));
            } else if let Some(d) = &n.deployment {
                let _ = write!(text, " · deployment {}", slack_escape(d));
            }
            serde_json::to_vec(&serde_json::json!({ "text": text })).unwrap_or_default()
        }
    }
}

/// Slack's control characters in message text.
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A boxed future of a send.
pub type SendFuture<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

/// Posts a JSON body to a URL; `Err` with a message (no secret in it) when the receiver did not
/// answer with a 2xx status.
pub trait WebhookSender: Send + Sync {
    /// Posts `body` (`application/json`) to `url`.
    fn post<'a>(&'a self, url: &'a str, body: Vec<u8>) -> SendFuture<'a>;
}

/// Sends over plain `http://` with hyper; an `https://` URL is refused with an error (pass an
/// https-capable sender to [`Webhooks::start`] for those).
pub struct HttpSender {
    client: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        http_body_util::Full<axum::body::Bytes>,
    >,
}

impl Default for HttpSender {
    fn default() -> Self {
        HttpSender {
            client: hyper_util::client::legacy::Client::builder(
                hyper_util::rt::TokioExecutor::new(),
            )
            .build_http(),
        }
    }
}

impl fmt::Debug for HttpSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HttpSender")
    }
}

impl WebhookSender for HttpSender {
    fn post<'a>(&'a self, url: &'a str, body: Vec<u8>) -> SendFuture<'a> {
        Box::pin(async move {
            if strip_prefix_ci(url, "https://").is_some() {
                return Err("https is not supported by this sender".into());
            }
            let req = axum::http::Request::post(url)
                .header(axum::http::header::CONTENT_TYPE, "application/json")
                .header(axum::http::header::USER_AGENT, "pushguide-webhooks")
                .body(http_body_util::Full::new(axum::body::Bytes::from(body)))
                .map_err(|e| format!("bad request: {e}"))?;
            let res = self
                .client
                .request(req)
                .await
                .map_err(|e| format!("cannot post: {}", error_chain(&e)))?;
            let status = res.status();
            if status.is_success() {
                Ok(())
            } else {
                Err(format!("answered {status}"))
            }
        })
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let _ = write!(out, ": {s}");
        src = s.source();
    }
    out
}

/// How deliveries are tried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// Tries per delivery (at least 1).
    pub tries: u32,
    /// The delay after the first failed try; doubled after each.
    pub backoff: Duration,
    /// The longest a try may take.
    pub timeout: Duration,
    /// Events waiting to be sent; more are dropped.
    pub queue: usize,
}

impl Default for Delivery {
    fn default() -> Self {
        Delivery {
            tries: 3,
            backoff: Duration::from_secs(1),
            timeout: Duration::from_secs(10),
            queue: 1024,
        }
    }
}

/// A delivery that failed all its tries.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct WebhookFailure {
    /// The hook's URL without its query string.
    pub url: String,
    /// The event.
    pub event: WebhookEvent,
    /// The last try's error.
    pub error: String,
    /// When the delivery gave up (RFC 3339).
    pub at: String,
    /// Tries made.
    pub tries: u32,
}

/// The webhook notifier of the service (see the module documentation).
pub struct Webhooks {
    hooks: Arc<Vec<WebhookConfig>>,
    tx: Option<mpsc::Sender<Notification>>,
    dropped: AtomicU64,
    failures: Arc<Mutex<VecDeque<WebhookFailure>>>,
}

impl fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhooks")
            .field("hooks", &self.hooks)
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

impl Default for Webhooks {
    fn default() -> Self {
        Webhooks::disabled()
    }
}

impl Webhooks {
    /// No hooks: every event is ignored.
    pub fn disabled() -> Self {
        Webhooks {
            hooks: Arc::new(Vec::new()),
            tx: None,
            dropped: AtomicU64::new(0),
            failures: Arc::new(Mutex::new(VecDeque::new())),
        }
    }

    /// Starts the delivery task for `hooks` (none: nothing started), posting through `sender`;
    /// `public_url` makes the deployment page links. Outside the Tokio runtime the hooks are off
    /// (logged as an error).
    pub fn start(
        hooks: Vec<WebhookConfig>,
        public_url: Option<String>,
        delivery: Delivery,
        sender: Arc<dyn WebhookSender>,
    ) -> Arc<Self> {
        if hooks.is_empty() {
            return Arc::new(Webhooks::disabled());
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::error!("webhooks need the Tokio runtime: they are off");
            return Arc::new(Webhooks::disabled());
        };
        let (tx, mut rx) = mpsc::channel::<Notification>(delivery.queue.max(1));
        let hooks = Arc::new(hooks);
        let failures = Arc::new(Mutex::new(VecDeque::new()));
        let this = Arc::new(Webhooks {
            hooks: hooks.clone(),
            tx: Some(tx),
            dropped: AtomicU64::new(0),
            failures: failures.clone(),
        });
        runtime.spawn(async move {
            while let Some(n) = rx.recv().await {
                for hook in hooks.iter().filter(|h| h.events.contains(&n.event)) {
                    let body = payload(hook.format, &n, public_url.as_deref());
                    let (url, sender, failures) =
                        (hook.url.clone(), sender.clone(), failures.clone());
                    let event = n.event;
                    tokio::spawn(async move {
                        deliver(&*sender, &url, event, body, delivery, &failures).await;
                    });
                }
            }
        });
        this
    }

    /// Queues `n` for the hooks that want it; never waits. A full queue drops it with a warning.
    pub fn notify(&self, n: Notification) {
        let Some(tx) = &self.tx else { return };
        if !self.hooks.iter().any(|h| h.events.contains(&n.event)) {
            return;
        }
        let event = n.event;
        match tx.try_send(n) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::warn!(
                    event = event.as_str(),
                    dropped,
                    "the webhook queue is full: event dropped"
                );
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    event = event.as_str(),
                    "the webhook task has stopped: event dropped"
                );
            }
        }
    }

    /// Events dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The last failed deliveries, newest first.
    pub fn failures(&self) -> Vec<WebhookFailure> {
        self.failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .rev()
            .cloned()
            .collect()
    }

    /// How many hooks there are.
    pub fn len(&self) -> usize {
        self.hooks.len()
    }

    /// Whether there is no hook.
    pub fn is_empty(&self) -> bool {
        self.hooks.is_empty()
    }
}

async fn deliver(
    sender: &dyn WebhookSender,
    url: &str,
    event: WebhookEvent,
    body: Vec<u8>,
    delivery: Delivery,
    failures: &Mutex<VecDeque<WebhookFailure>>,
) {
    let tries = delivery.tries.max(1);
    let mut wait = delivery.backoff;
    let mut last = String::new();
    for n in 1..=tries {
        let sent = tokio::time::timeout(delivery.timeout, sender.post(url, body.clone())).await;
        match sent {
            Ok(Ok(())) => {
                tracing::debug!(url = redact(url), event = event.as_str(), "webhook sent");
                return;
            }
            Ok(Err(e)) => last = e,
            Err(_) => last = format!("no answer within {} ms", delivery.timeout.as_millis()),
        }
        // an error message may quote the URL: never its query string
        last = last.replace(url, &redact(url));
        tracing::warn!(
            url = redact(url),
            event = event.as_str(),
            try_ = n,
            error = last,
            "webhook try failed"
        );
        if n < tries {
            tokio::time::sleep(wait).await;
            wait = wait.saturating_mul(2);
        }
    }
    let mut f = failures.lock().unwrap_or_else(PoisonError::into_inner);
    if f.len() == FAILURES_KEPT {
        f.pop_front();
    }
    f.push_back(WebhookFailure {
        url: redact(url),
        event,
        error: last,
        at: rfc3339(SystemTime::now()),
        tries,
    });
}

/// The "Webhook failures" section of the admin page.
pub(crate) fn failures_html(hooks: &Webhooks) -> String {
    let mut body = format!(
        "<h2 id=\"webhooks\">Webhook failures</h2><p>{} hook(s); {} event(s) dropped because the \
         queue was full.</p><table><thead><tr><th>When</th><th>URL</th><th>Event</th><th>Tries</th>\
         <th>Error</th></tr></thead><tbody>",
        hooks.len(),
        hooks.dropped()
    );
    let failures = hooks.failures();
    if failures.is_empty() {
        body.push_str("<tr><td colspan=\"5\">No failures.</td></tr>");
    }
    for f in &failures {
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&f.at),
            escape(&f.url),
            f.event.as_str(),
            f.tries,
            escape(&f.error)
        );
    }
    body.push_str("</tbody></table>");
    body
}

/// `GET /api/v1/admin/webhooks`: the hooks' count, dropped events and last failures.
pub(crate) async fn api(State(app): State<AppState>) -> Response {
    let hooks = &app.0.webhooks;
    Json(serde_json::json!({
        "hooks": hooks.len(),
        "dropped": hooks.dropped(),
        "failures": hooks.failures(),
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_the_runtime_hooks_are_off_without_a_panic() {
        let hooks = Webhooks::start(
            vec![WebhookConfig {
                url: "http://127.0.0.1:9/".into(),
                format: WebhookFormat::Json,
                events: WebhookEvent::ALL.to_vec(),
            }],
            None,
            Delivery::default(),
            Arc::new(HttpSender::default()),
        );
        assert!(hooks.is_empty());
        hooks.notify(Notification::new(WebhookEvent::MinionUp));
        assert_eq!(hooks.dropped(), 0);
    }

    #[test]
    fn urls_are_checked() {
        assert!(check_url("http://127.0.0.1:9/x").is_ok());
        assert!(check_url("https://hooks.slack.com/services/T/B/C").is_ok());
        assert!(check_url("ftp://x").is_err());
        assert!(check_url("http://").is_err());
        assert!(check_url("http://a b").is_err());
        assert!(check_url("javascript:alert(1)").is_err());
    }

    #[test]
    fn redaction_drops_query_and_user_info() {
        assert_eq!(redact("https://h/p?token=s3cret"), "https://h/p?…");
        assert_eq!(redact("http://u:pw@h:8/p"), "http://***@h:8/p");
        assert_eq!(redact("http://h/p"), "http://h/p");
        let c = WebhookConfig {
            url: "https://h/p?token=s3cret".into(),
            format: WebhookFormat::Json,
            events: WebhookEvent::ALL.to_vec(),
        };
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[test]
    fn events_parse_and_map_outcomes() {
        for e in WebhookEvent::ALL {
            assert_eq!(WebhookEvent::parse(e.as_str()), Some(e));
        }
        assert_eq!(WebhookEvent::parse("deployment-exploded"), None);
        use pushguide_core::DeploymentOutcome as O;
        assert_eq!(
            WebhookEvent::for_outcome(O::Cancelled),
            WebhookEvent::DeploymentFailed
        );
        assert_eq!(
            WebhookEvent::for_outcome(O::RolledBack),
            WebhookEvent::DeploymentRolledBack
        );
    }

    #[test]
    fn slack_text_escapes_and_links() {
        let mut n = Notification::new(WebhookEvent::DeploymentPaused);
        n.template = Some("<web>".into());
        n.deployment = Some("d1".into());
        n.hosts = vec!["m1".into()];
        let body: serde_json::Value =
            serde_json::from_slice(&payload(WebhookFormat::Slack, &n, Some("https://pg/")))
                .unwrap();
        let text = body["text"].as_str().unwrap();
        assert!(text.contains("&lt;web&gt;"), "{text}");
        assert!(
            text.contains("<https://pg/deployments/d1|deployment>"),
            "{text}"
        );
        assert!(text.contains("hosts m1"), "{text}");
    }
}
