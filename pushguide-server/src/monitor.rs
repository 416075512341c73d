//! The minion monitor: a background task of the service that every round reads the templates
//! again, resolves each one's targets through salt (an expression's minions may change between
//! rounds), pings the minions with one request (core's [`Monitor`]) and records up/down and since
//! when in the store. A failed round (salt-api unreachable, the templates directory unreadable) is
//! logged, shown on `/monitor` as the last error, and the next round goes on.
//!
//! `GET /monitor` and `GET /api/v1/monitor` show every template the user may view with its
//! minions' states.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use axum::extract::{Extension, State};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use pushguide_core::{MinionId, MinionStatusStore, Monitor, Transport};
use pushguide_store::ServerStore;
use serde::Serialize;
use tokio::sync::watch;

use crate::app::{blocking, internal, with_cookies, Access, AppState, AuthSession};
use crate::catalog::{targets_text, Catalog, CatalogEntry};
use crate::html::{escape, layout};
use crate::metrics::Metrics;
use crate::status::rfc3339;
use crate::Error;

/// Characters of an error message kept.
const MAX_ERROR_CHARS: usize = 500;

/// What one template resolved to at the last round.
#[derive(Clone, Debug, Default)]
struct Resolved {
    minions: Vec<MinionId>,
    error: Option<String>,
}

#[derive(Clone, Debug, Default)]
struct Snapshot {
    interval: Option<Duration>,
    rounds: u64,
    last_round: Option<SystemTime>,
    last_round_ok: bool,
    last_error: Option<(SystemTime, String)>,
    templates: BTreeMap<String, Resolved>,
}

/// What the monitor learned, shared between its task and the pages.
#[derive(Debug, Default)]
pub struct MonitorStatus {
    snapshot: Mutex<Snapshot>,
}

impl MonitorStatus {
    fn with<T>(&self, f: impl FnOnce(&mut Snapshot) -> T) -> T {
        f(&mut self.snapshot.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn failed(&self, message: String) {
        tracing::warn!(error = message, "minion monitor round failed");
        let now = SystemTime::now();
        self.with(|s| {
            s.rounds += 1;
            s.last_round = Some(now);
            s.last_round_ok = false;
            s.last_error = Some((now, message));
        });
    }
}

/// A running monitor task; [`MonitorTask::stop`] ends it (dropping it does too).
#[derive(Debug)]
#[must_use = "dropping the task stops the monitor"]
pub struct MonitorTask {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl MonitorTask {
    /// Stops the task and waits for it (a round under way is abandoned).
    pub async fn stop(self) {
        self.stop.send_replace(true);
        let _ = self.task.await;
        tracing::info!("minion monitor stopped");
    }
}

/// What a round uses.
pub(crate) struct Rounds {
    pub(crate) store: Arc<dyn ServerStore>,
    pub(crate) catalog: Arc<dyn Catalog>,
    pub(crate) transport: Arc<dyn Transport>,
    pub(crate) status: Arc<MonitorStatus>,
    pub(crate) metrics: Arc<Metrics>,
    /// Where minions going down or up are announced.
    pub(crate) webhooks: Arc<crate::webhooks::Webhooks>,
    pub(crate) timeout: Duration,
}

impl Rounds {
    /// Runs a round every `interval` (the first at once) until stopped.
    pub(crate) fn spawn(self, interval: Duration) -> MonitorTask {
        self.status.with(|s| s.interval = Some(interval));
        let statuses: Arc<dyn MinionStatusStore> = self.store.clone();
        let monitor = Monitor::new(self.transport.clone(), statuses, self.timeout);
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            tracing::info!(interval_secs = interval.as_secs(), "minion monitor started");
            loop {
                tokio::select! {
                    _ = self.round(&monitor) => {}
                    _ = stopped.wait_for(|s| *s) => break,
                }
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    _ = stopped.wait_for(|s| *s) => break,
                }
            }
            self.status.with(|s| s.interval = None);
        });
        MonitorTask { stop, task }
    }

    /// One round: read the templates, resolve their targets, ping, record.
    pub(crate) async fn round(&self, monitor: &Monitor) {
        let catalog = self.catalog.clone();
        let entries = match blocking(move || catalog.scan().map_err(Error::Catalog)).await {
            Ok(e) => e,
            Err(e) => return self.status.failed(clean(&e.to_string())),
        };
        let mut resolved = BTreeMap::new();
        let mut errors = Vec::new();
        for entry in entries {
            let CatalogEntry::Loaded { template, .. } = entry else {
                continue;
            };
            let r = match template.targets.expression() {
                Some(expr) => match self.transport.resolve(&expr).await {
                    Ok(minions) => Resolved {
                        minions,
                        error: None,
                    },
                    Err(e) => {
                        let message = clean(&format!(
                            "cannot resolve the targets {}: {e}",
                            pushguide_core::validate::quote(&expr.expression)
                        ));
                        errors.push(format!("template `{}`: {message}", template.name));
                        Resolved {
                            minions: Vec::new(),
                            error: Some(message),
                        }
                    }
                },
                None => {
                    let mut minions = Vec::new();
                    let mut error = None;
                    for m in &template.targets.minions {
                        match MinionId::new(m) {
                            Ok(id) => minions.push(id),
                            Err(e) => error = Some(clean(&e.to_string())),
                        }
                    }
                    Resolved { minions, error }
                }
            };
            resolved.insert(template.name.clone(), r);
        }
        let all: Vec<MinionId> = resolved
            .values()
            .flat_map(|r| r.minions.iter().cloned())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let checked = monitor.check_once(&all).await;
        if let Ok(changes) = &checked {
            // a minion seen for the first time is no change worth announcing
            for c in changes.iter().filter(|c| c.was_up == Some(!c.up)) {
                let event = if c.up {
                    crate::webhooks::WebhookEvent::MinionUp
                } else {
                    crate::webhooks::WebhookEvent::MinionDown
                };
                let mut n = crate::webhooks::Notification::new(event);
                n.hosts = vec![c.minion.to_string()];
                n.at = c.at;
                self.webhooks.notify(n);
            }
        }
        // a template whose expression could not be resolved keeps its minions of the last round
        self.status.with(|s| {
            for (name, r) in &mut resolved {
                if r.error.is_some() && r.minions.is_empty() {
                    if let Some(old) = s.templates.get(name) {
                        r.minions = old.minions.clone();
                    }
                }
            }
        });
        let known: Vec<MinionId> = resolved
            .values()
            .flat_map(|r| r.minions.iter().cloned())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        match self.store.minion_states(&known).await {
            Ok(states) => {
                let up = states.iter().filter(|s| s.up).count() as u64;
                self.metrics.minions_set(up, states.len() as u64 - up);
            }
            Err(e) => tracing::warn!(error = %e, "cannot read minion states"),
        }
        let now = SystemTime::now();
        let error = match checked {
            Err(e) => Some(clean(&e.to_string())),
            Ok(_) if !errors.is_empty() => Some(clean(&errors.join("; "))),
            Ok(_) => None,
        };
        if let Some(e) = &error {
            tracing::warn!(error = e, "minion monitor round failed");
        }
        self.status.with(|s| {
            s.rounds += 1;
            s.last_round = Some(now);
            s.templates = resolved;
            s.last_round_ok = error.is_none();
            if let Some(e) = error {
                s.last_error = Some((now, e));
            }
        });
    }
}

fn clean(text: &str) -> String {
    pushguide_core::validate::clean(text, MAX_ERROR_CHARS)
}

/// One minion of a template on the monitor page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MinionRow {
    /// The minion id.
    pub minion: String,
    /// Whether it answered the last check (`null`: not checked yet).
    pub up: Option<bool>,
    /// Since when it has been in that state (RFC 3339 UTC).
    pub since: Option<String>,
    /// When it last answered.
    pub last_seen: Option<String>,
}

/// One template on the monitor page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MonitoredTemplate {
    /// The template.
    pub name: String,
    /// Its targets as written.
    pub targets: String,
    /// Why its targets could not be resolved at the last round.
    pub error: Option<String>,
    /// Whether the monitor has resolved it yet.
    pub checked: bool,
    /// Minions up.
    pub up: usize,
    /// Minions down.
    pub down: usize,
    /// Its minions.
    pub minions: Vec<MinionRow>,
}

/// The last error of the monitor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MonitorError {
    /// When (RFC 3339 UTC).
    pub at: String,
    /// What.
    pub message: String,
}

/// `GET /api/v1/monitor`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MonitorView {
    /// Whether the monitor task runs.
    pub running: bool,
    /// Its interval in seconds (`null` when it does not run).
    pub interval_secs: Option<u64>,
    /// Rounds done.
    pub rounds: u64,
    /// When the last round ended.
    pub last_round: Option<String>,
    /// Whether the last round went through without an error.
    pub last_round_ok: bool,
    /// The last error (kept after later good rounds).
    pub last_error: Option<MonitorError>,
    /// The templates the user may view.
    pub templates: Vec<MonitoredTemplate>,
}

async fn view(app: &AppState, s: &AuthSession) -> Result<MonitorView, Error> {
    let snapshot = app.0.monitor.with(|s| s.clone());
    let catalog = app.0.catalog.clone();
    let entries = blocking(move || catalog.scan().map_err(Error::Catalog)).await?;
    let who = s.principal();
    {
        let mut templates = Vec::new();
        for entry in entries {
            let CatalogEntry::Loaded { template, .. } = entry else {
                continue;
            };
            if !template.acl.may_view(&who) {
                continue;
            }
            let resolved = snapshot.templates.get(&template.name);
            let minions = resolved.map(|r| r.minions.clone()).unwrap_or_default();
            let states: BTreeMap<MinionId, pushguide_core::MinionStatus> = app
                .0
                .store
                .minion_states(&minions)
                .await?
                .into_iter()
                .map(|s| (s.minion.clone(), s))
                .collect();
            let rows: Vec<MinionRow> = minions
                .iter()
                .map(|m| {
                    let s = states.get(m);
                    MinionRow {
                        minion: m.to_string(),
                        up: s.map(|s| s.up),
                        since: s.map(|s| rfc3339(s.since)),
                        last_seen: s.and_then(|s| s.last_seen).map(rfc3339),
                    }
                })
                .collect();
            templates.push(MonitoredTemplate {
                name: template.name.clone(),
                targets: targets_text(&template),
                error: resolved.and_then(|r| r.error.clone()),
                checked: resolved.is_some(),
                up: rows.iter().filter(|r| r.up == Some(true)).count(),
                down: rows.iter().filter(|r| r.up == Some(false)).count(),
                minions: rows,
            });
        }
        Ok(MonitorView {
            running: snapshot.interval.is_some(),
            interval_secs: snapshot.interval.map(|i| i.as_secs()),
            rounds: snapshot.rounds,
            last_round: snapshot.last_round.map(rfc3339),
            last_round_ok: snapshot.last_round_ok,
            last_error: snapshot.last_error.map(|(at, message)| MonitorError {
                at: rfc3339(at),
                message,
            }),
            templates,
        })
    }
}

/// `GET /api/v1/monitor`.
pub(crate) async fn api_monitor(
    State(app): State<AppState>,
    Extension(s): Extension<AuthSession>,
) -> Response {
    match view(&app, &s).await {
        Ok(v) => with_cookies(Json(v).into_response(), &[]),
        Err(e) => internal(Access::Api, &e),
    }
}

/// `GET /monitor`.
pub(crate) async fn monitor_page(
    State(app): State<AppState>,
    Extension(s): Extension<AuthSession>,
) -> Response {
    let v = match view(&app, &s).await {
        Ok(v) => v,
        Err(e) => return internal(Access::Page, &e),
    };
    let mut body = String::from("<h1>Monitor</h1>");
    match v.interval_secs {
        Some(i) => {
            let _ = write!(
                body,
                "<p>Minions are checked every {i} s; {} round{} so far, the last at {}.</p>",
                v.rounds,
                if v.rounds == 1 { "" } else { "s" },
                escape(v.last_round.as_deref().unwrap_or("—"))
            );
        }
        None => body.push_str("<p>The minion monitor does not run in this service.</p>"),
    }
    if let Some(e) = &v.last_error {
        let _ = write!(
            body,
            "<p role=\"alert\" class=\"{}\">Last error ({}): {}</p>",
            if v.last_round_ok { "past" } else { "current" },
            escape(&e.at),
            escape(&e.message)
        );
    }
    body.push_str(
        "<table><thead><tr><th>Template</th><th>Targets</th><th>Up</th><th>Down</th>\
         <th>Minions</th></tr></thead><tbody>",
    );
    if v.templates.is_empty() {
        body.push_str("<tr><td colspan=\"5\">No template you may view.</td></tr>");
    }
    for t in &v.templates {
        let mut minions = String::new();
        if !t.checked {
            minions.push_str("not checked yet");
        }
        if let Some(e) = &t.error {
            let _ = write!(minions, "<p role=\"alert\">{}</p>", escape(e));
        }
        if !t.minions.is_empty() {
            minions.push_str("<ul>");
            for m in &t.minions {
                let (class, state) = match m.up {
                    Some(true) => ("up", "up"),
                    Some(false) => ("down", "down"),
                    None => ("unknown", "not checked"),
                };
                let since = m
                    .since
                    .as_deref()
                    .map(|s| format!(" since {}", escape(s)))
                    .unwrap_or_default();
                let _ = write!(
                    minions,
                    "<li class=\"{class}\">{} {state}{since}</li>",
                    escape(&m.minion)
                );
            }
            minions.push_str("</ul>");
        }
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{minions}</td></tr>",
            escape(&t.name),
            escape(&t.targets),
            t.up,
            t.down
        );
    }
    body.push_str("</tbody></table>");
    with_cookies(
        Html(layout("Monitor", Some(&s.viewer()), &body)).into_response(),
        &[],
    )
}
