//! The router: one [`ROUTES`] table, the session check, CSRF, and the handlers.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use axum::body::Body;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Extension, FromRequest, Request, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::{Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{delete, get, post, MethodRouter};
use axum::{Form, Json, Router};
use pushguide_core::{Principal, Transport};
use pushguide_store::{ServerStore, SessionLimits};
use serde::Deserialize;

use crate::auth::{dummy_hash, new_token, same, token_hash, verify_password, Throttle};
use crate::catalog::Catalog;
use crate::health::SaltHealth;
use crate::launch::Launcher;
use crate::metrics::Metrics;
use crate::monitor::{MonitorStatus, MonitorTask, Rounds};
use crate::runner::{run_workers, Live};
use crate::status::template_statuses;
use crate::{editor, health, monitor};
use crate::{html, Error};

/// The session cookie.
pub const SESSION_COOKIE: &str = "pushguide_session";
/// The login form's CSRF cookie (double submit: the form carries the same value).
pub const LOGIN_CSRF_COOKIE: &str = "pushguide_login_csrf";
/// The header an API client sends its session's CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The largest form body read for its CSRF field (the template editor's form holds a whole
/// template).
const FORM_LIMIT: usize = crate::editor::BODY_LIMIT;
/// Longer user names or passwords are refused without hashing.
const FIELD_LIMIT: usize = 1024;

/// The web service's settings (the `[server]` table of the CLI's configuration, less `listen`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Where users reach the service (`https://…` makes the cookies `Secure`).
    pub public_url: Option<String>,
    /// Session lifetime: idle and absolute.
    pub session: SessionLimits,
    /// Members of these groups are admins: they also see template files that do not load.
    pub admin_groups: Vec<String>,
    /// Delay after the first failed login of a user from an address; doubled per failure.
    pub login_delay: Duration,
    /// The longest delay.
    pub login_delay_max: Duration,
    /// How many user and address pairs the failed-login delay remembers.
    pub login_throttle_capacity: usize,
    /// Local logins or a trusted reverse proxy's headers; which proxies are believed.
    pub auth: crate::proxy::AuthConfig,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            public_url: None,
            session: SessionLimits {
                idle: Duration::from_secs(30 * 60),
                max: Duration::from_secs(12 * 3600),
            },
            admin_groups: Vec::new(),
            login_delay: Duration::from_millis(250),
            login_delay_max: Duration::from_secs(8),
            login_throttle_capacity: 10_000,
            auth: crate::proxy::AuthConfig::default(),
        }
    }
}

impl ServerConfig {
    pub(crate) fn secure(&self) -> bool {
        self.public_url
            .as_deref()
            .is_some_and(|u| u.len() >= 8 && u[..8].eq_ignore_ascii_case("https://"))
    }
}

/// Who may call a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone (the login form).
    Public,
    /// A logged-in user; anonymous requests are redirected to `/login`.
    Page,
    /// A logged-in user; anonymous requests get `401` with a JSON error.
    Api,
}

/// What a logged-in user must be allowed to call a route (checked on the server, on every call).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Nothing beyond a login (or nothing at all on a [`Access::Public`] route); pages filter
    /// what they show by the templates' view permission.
    Login,
    /// The deploy permission on the template the route names (checked by its handler: a viewer
    /// gets `403`).
    Deploy,
    /// Membership of an admin group (checked before the handler runs: others get `403`).
    Admin,
}

/// One route of the service.
#[derive(Clone, Debug)]
pub struct Route {
    /// The method.
    pub method: Method,
    /// The path.
    pub path: &'static str,
    /// Who may call it.
    pub access: Access,
    /// What the caller must be allowed.
    pub need: Need,
    handler: fn() -> MethodRouter<AppState>,
}

/// Every route; [`router`] is built from this table alone. State-changing routes (any method but
/// `GET`) that are not [`Access::Public`] require the session's CSRF token.
pub const ROUTES: &[Route] = &[
    Route {
        method: Method::GET,
        path: "/login",
        access: Access::Public,
        need: Need::Login,
        handler: || get(login_form),
    },
    Route {
        method: Method::POST,
        path: "/login",
        access: Access::Public,
        need: Need::Login,
        handler: || post(login),
    },
    Route {
        method: Method::POST,
        path: "/logout",
        access: Access::Page,
        need: Need::Login,
        handler: || post(logout),
    },
    Route {
        method: Method::GET,
        path: "/",
        access: Access::Page,
        need: Need::Login,
        handler: || get(templates_page),
    },
    Route {
        method: Method::GET,
        path: "/api/v1/templates",
        access: Access::Api,
        need: Need::Login,
        handler: || get(api_templates),
    },
    Route {
        method: Method::GET,
        path: "/static/htmx.min.js",
        access: Access::Public,
        need: Need::Login,
        handler: || get(crate::publish::htmx),
    },
    Route {
        method: Method::GET,
        path: "/static/sse.min.js",
        access: Access::Public,
        need: Need::Login,
        handler: || get(crate::publish::htmx_sse),
    },
    // publishing and the deployment page (publish.rs)
    Route {
        method: Method::GET,
        path: "/t/{template}",
        access: Access::Page,
        need: Need::Login,
        handler: || get(crate::publish::publish_page),
    },
    Route {
        method: Method::GET,
        path: "/api/v1/templates/{template}",
        access: Access::Api,
        need: Need::Login,
        handler: || get(crate::publish::publish_page_api),
    },
    Route {
        method: Method::GET,
        path: "/t/{template}/plan",
        access: Access::Page,
        need: Need::Login,
        handler: || get(crate::publish::plan_page),
    },
    Route {
        method: Method::GET,
        path: "/api/v1/templates/{template}/plan",
        access: Access::Api,
        need: Need::Login,
        handler: || get(crate::publish::plan_api),
    },
    Route {
        method: Method::POST,
        path: "/t/{template}/publish",
        access: Access::Page,
        need: Need::Deploy,
        handler: || post(crate::publish::publish_form),
    },
    Route {
        method: Method::POST,
        path: "/api/v1/templates/{template}/publish",
        access: Access::Api,
        need: Need::Deploy,
        handler: || post(crate::publish::publish_api),
    },
    Route {
        method: Method::GET,
        path: "/requests/{id}",
        access: Access::Page,
        need: Need::Login,
        handler: || get(crate::publish::request_page),
    },
    Route {
        method: Method::GET,
        path: "/api/v1/requests/{id}",
        access: Access::Api,
        need: Need::Login,
        handler: || get(crate::publish::request_api),
    },
    Route {
        method: Method::POST,
        path: "/requests/{id}/cancel",
        access: Access::Page,
        need: Need::Deploy,
        handler: || post(crate::publish::request_cancel),
    },
    Route {
        method: Method::GET,
        path: "/deployments/{id}",
        access: Access::Page,
        need: Need::Login,
        handler: || get(crate::publish::deployment_page),
    },
    Route {
        method: Method::GET,
        path: "/api/v1/deployments/{id}",
        access: Access::Api,
        need: Need::Login,
        handler: || get(crate::publish::deployment_api),
    },
    Route {
        method: Method::GET,
        path: "/deployments/{id}/events",
        access: Access::Api,
        need: Need::Login,
        handler: || get(crate::publish::deployment_events),
    },
    Route {
        method: Method::POST,
        path: "/deployments/{id}/decide",
        access: Access::Page,
        need: Need::Deploy,
        handler: || post(crate::publish::decide_form),
    },
    Route {
        method: Method::POST,
        path: "/api/v1/deployments/{id}/decide",
        access: Access::Api,
        need: Need::Deploy,
        handler: || post(crate::publish::decide_api),
    },
    Route {
        method: Method::POST,
        path: "/deployments/{id}/stop",
        access: Access::Page,
        need: Need::Deploy,
        handler: || post(crate::publish::stop_form),
    },
    Route {
        method: Method::POST,
        path: "/api/v1/deployments/{id}/stop",
        access: Access::Api,
        need: Need::Deploy,
        handler: || post(crate::publish::stop_api),
    },
    Route {
        method: Method::GET,
        path: "/static/app.css",
        access: Access::Public,
        need: Need::Login,
        handler: || get(stylesheet),
    },
    Route {
        method: Method::GET,
        path: "/api/v1/session",
        access: Access::Api,
        need: Need::Login,
        handler: || get(api_session),
    },
    Route {
        method: Method::GET,
        path: "/account/tokens",
        access: Access::Page,
        need: Need::Login,
        handler: || get(crate::tokens::page),
    },
    Route {
        method: Method::POST,
        path: "/account/tokens",
        access: Access::Page,
        need: Need::Login,
        handler: || post(crate::tokens::page_create),
    },
    Route {
        method: Method::POST,
        path: "/account/tokens/{token}/revoke",
        access: Access::Page,
        need: Need::Login,
        handler: || post(crate::tokens::page_revoke),
    },
    Route {
        method: Method::GET,
        path: "/api/v1/tokens",
        access: Access::Api,
        need: Need::Login,
        handler: || get(crate::tokens::api_list),
    },
    Route {
        method: Method::POST,
        path: "/api/v1/tokens",
        access: Access::Api,
        need: Need::Login,
        handler: || post(crate::tokens::api_create),
    },
    Route {
        method: Method::DELETE,
        path: "/api/v1/tokens/{token}",
        access: Access::Api,
        need: Need::Login,
        handler: || delete(crate::tokens::api_revoke),
    },
    Route {
        method: Method::GET,
        path: "/admin",
        access: Access::Page,
        need: Need::Admin,
        handler: || get(crate::admin::page),
    },
    Route {
        method: Method::POST,
        path: "/admin/users",
        access: Access::Page,
        need: Need::Admin,
        handler: || post(crate::admin::page_add_user),
    },
    Route {
        method: Method::POST,
        path: "/admin/users/{user}/groups",
        access: Access::Page,
        need: Need::Admin,
        handler: || post(crate::admin::page_set_groups),
    },
    Route {
        method: Method::POST,
        path: "/admin/users/{user}/delete",
        access: Access::Page,
        need: Need::Admin,
        handler: || post(crate::admin::page_delete_user),
    },
    Route {
        method: Method::POST,
        path: "/admin/tokens/{token}/revoke",
        access: Access::Page,
        need: Need::Admin,
        handler: || post(crate::admin::page_revoke_token),
    },
    Route {
        method: Method::GET,
        path: "/api/v1/admin/users",
        access: Access::Api,
        need: Need::Admin,
        handler: || get(crate::admin::api_users),
    },
    Route {
        method: Method::POST,
        path: "/api/v1/admin/users",
        access: Access::Api,
        need: Need::Admin,
        handler: || post(crate::admin::api_add_user),
    },
    Route {
        method: Method::POST,
        path: "/api/v1/admin/users/{user}/groups",
        access: Access::Api,
        need: Need::Admin,
        handler: || post(crate::admin::api_set_groups),
    },
    Route {
        method: Method::DELETE,
        path: "/api/v1/admin/users/{user}",
        access: Access::Api,
        need: Need::Admin,
        handler: || delete(crate::admin::api_delete_user),
    },
    Route {
        method: Method::GET,
        path: "/api/v1/admin/tokens",
        access: Access::Api,
        need: Need::Admin,
        handler: || get(crate::admin::api_tokens),
    },
    Route {
        method: Method::GET,
        path: "/api/v1/admin/audit",
        access: Access::Api,
        need: Need::Admin,
        handler: || get(crate::admin::api_audit),
    },
    Route {
        method: Method::GET,
        path: "/api/v1/admin/webhooks",
        access: Access::Api,
        need: Need::Admin,
        handler: || get(crate::webhooks::api),
    },
    // the template editor (admins)
    Route {
        method: Method::GET,
        path: "/templates/new",
        access: Access::Page,
        need: Need::Admin,
        handler: || get(editor::new_page),
    },
    Route {
        method: Method::POST,
        path: "/templates/new",
        access: Access::Page,
        need: Need::Admin,
        handler: || post(editor::create_page).layer(DefaultBodyLimit::max(editor::BODY_LIMIT)),
    },
    Route {
        method: Method::GET,
        path: "/templates/{template}/edit",
        access: Access::Page,
        need: Need::Admin,
        handler: || get(editor::edit_page),
    },
    Route {
        method: Method::POST,
        path: "/templates/{template}/edit",
        access: Access::Page,
        need: Need::Admin,
        handler: || post(editor::save_page).layer(DefaultBodyLimit::max(editor::BODY_LIMIT)),
    },
    Route {
        method: Method::POST,
        path: "/templates/{template}/delete",
        access: Access::Page,
        need: Need::Admin,
        handler: || post(editor::delete_page),
    },
    Route {
        method: Method::GET,
        path: "/templates/{template}/revisions",
        access: Access::Page,
        need: Need::Admin,
        handler: || get(editor::revisions_page),
    },
    Route {
        method: Method::GET,
        path: "/templates/{template}/revisions/{revision}",
        access: Access::Page,
        need: Need::Admin,
        handler: || get(editor::revision_page),
    },
    Route {
        method: Method::POST,
        path: "/templates/{template}/revisions/{revision}/restore",
        access: Access::Page,
        need: Need::Admin,
        handler: || post(editor::restore_page),
    },
    Route {
        method: Method::GET,
        path: "/api/v1/kinds",
        access: Access::Api,
        need: Need::Admin,
        handler: || get(editor::api_kinds),
    },
    Route {
        method: Method::POST,
        path: "/api/v1/templates/new",
        access: Access::Api,
        need: Need::Admin,
        handler: || post(editor::api_create).layer(DefaultBodyLimit::max(editor::BODY_LIMIT)),
    },
    Route {
        method: Method::GET,
        path: "/api/v1/templates/{template}/source",
        access: Access::Api,
        need: Need::Admin,
        handler: || get(editor::api_source),
    },
    Route {
        method: Method::POST,
        path: "/api/v1/templates/{template}/source",
        access: Access::Api,
        need: Need::Admin,
        handler: || post(editor::api_save).layer(DefaultBodyLimit::max(editor::BODY_LIMIT)),
    },
    Route {
        method: Method::POST,
        path: "/api/v1/templates/{template}/delete",
        access: Access::Api,
        need: Need::Admin,
        handler: || post(editor::api_delete),
    },
    Route {
        method: Method::GET,
        path: "/api/v1/templates/{template}/revisions",
        access: Access::Api,
        need: Need::Admin,
        handler: || get(editor::api_revisions),
    },
    Route {
        method: Method::GET,
        path: "/api/v1/templates/{template}/revisions/{revision}",
        access: Access::Api,
        need: Need::Admin,
        handler: || get(editor::api_revision),
    },
    Route {
        method: Method::POST,
        path: "/api/v1/templates/{template}/revisions/{revision}/restore",
        access: Access::Api,
        need: Need::Admin,
        handler: || post(editor::api_restore),
    },
    // the minion monitor
    Route {
        method: Method::GET,
        path: "/monitor",
        access: Access::Page,
        need: Need::Login,
        handler: || get(monitor::monitor_page),
    },
    Route {
        method: Method::GET,
        path: "/api/v1/monitor",
        access: Access::Api,
        need: Need::Login,
        handler: || get(monitor::api_monitor),
    },
    // the service itself (public: see the `health` module)
    Route {
        method: Method::GET,
        path: "/healthz",
        access: Access::Public,
        need: Need::Login,
        handler: || get(health::healthz),
    },
    Route {
        method: Method::GET,
        path: "/metrics",
        access: Access::Public,
        need: Need::Login,
        handler: || get(health::metrics),
    },
    Route {
        method: Method::GET,
        path: "/history",
        access: Access::Page,
        need: Need::Login,
        handler: || get(crate::history::page_html),
    },
    Route {
        method: Method::GET,
        path: "/api/v1/history",
        access: Access::Api,
        need: Need::Login,
        handler: || get(crate::history::api),
    },
    Route {
        method: Method::GET,
        path: "/deployments/{id}/log",
        access: Access::Page,
        need: Need::Login,
        handler: || get(crate::deployment_log::page),
    },
    Route {
        method: Method::GET,
        path: "/api/v1/deployments/{id}/log",
        access: Access::Api,
        need: Need::Login,
        handler: || get(crate::deployment_log::api),
    },
    Route {
        method: Method::GET,
        path: "/stats",
        access: Access::Page,
        need: Need::Login,
        handler: || get(crate::stats_page::page),
    },
    Route {
        method: Method::GET,
        path: "/api/v1/stats",
        access: Access::Api,
        need: Need::Login,
        handler: || get(crate::stats_page::api),
    },
];

/// What every handler shares.
pub(crate) struct Inner {
    pub(crate) store: Arc<dyn ServerStore>,
    pub(crate) catalog: Arc<dyn Catalog>,
    pub(crate) config: ServerConfig,
    pub(crate) throttle: Mutex<Throttle>,
    /// What reaches salt, when the service has it.
    pub(crate) transport: Option<Arc<dyn Transport>>,
    /// The service's measurements (`/metrics`).
    pub(crate) metrics: Arc<Metrics>,
    /// What the minion monitor learned (`/monitor`).
    pub(crate) monitor: Arc<MonitorStatus>,
    /// Probes each salt-api endpoint for `/healthz`.
    pub(crate) salt_health: Option<Arc<dyn SaltHealth>>,
    /// What starts deployments, when the service has it.
    pub(crate) launcher: Option<Arc<dyn Launcher>>,
    /// The deployments this service runs.
    pub(crate) live: Arc<Live>,
    /// Where events are announced.
    pub(crate) webhooks: Arc<crate::webhooks::Webhooks>,
}

/// The router's state.
#[derive(Clone)]
pub(crate) struct AppState(pub(crate) Arc<Inner>);

impl AppState {
    /// Appends an action of the request's user to the audit log. A failed write is logged and
    /// does not fail the action (which has happened already).
    pub(crate) async fn audit(&self, s: &AuthSession, action: &str, target: &str, detail: &str) {
        let entry = pushguide_store::AuditEntry::new(
            &s.user,
            s.address.map(|a| a.to_string()),
            action,
            target,
            detail,
        );
        if let Err(e) = self.0.store.append_audit(&entry).await {
            tracing::error!(error = %e, user = s.user, action, target, "cannot write the audit log");
        }
    }

    /// Whether `groups` holds an admin group.
    pub(crate) fn is_admin(&self, groups: &[String]) -> bool {
        groups
            .iter()
            .any(|g| self.0.config.admin_groups.contains(g))
    }
}

/// The logged-in user of a request (set by the session check).
#[derive(Clone)]
pub(crate) struct AuthSession {
    pub(crate) user: String,
    pub(crate) groups: Vec<String>,
    pub(crate) csrf: String,
    pub(crate) token_sha256: String,
    /// The client's address.
    pub(crate) address: Option<IpAddr>,
    /// Whether the user is in an admin group.
    pub(crate) admin: bool,
    /// How the request was authenticated (session, proxy, API token).
    pub(crate) via: crate::credentials::Via,
}

impl AuthSession {
    /// The user as the templates' ACLs see them.
    pub(crate) fn principal(&self) -> Principal {
        Principal {
            user: self.user.clone(),
            groups: self.groups.clone(),
        }
    }

    /// What the page layout needs to know of the user.
    pub(crate) fn viewer(&self) -> html::Viewer<'_> {
        html::Viewer {
            user: &self.user,
            csrf: &self.csrf,
            admin: self.admin,
        }
    }
}

impl fmt::Debug for AuthSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthSession")
            .field("user", &self.user)
            .field("groups", &self.groups)
            .finish_non_exhaustive()
    }
}

/// The service's router over `store` (users, sessions, history, fleet) and `catalog` (templates),
/// without salt: pages that need salt say so. [`Server`] adds the rest.
pub fn router(
    store: Arc<dyn ServerStore>,
    catalog: Arc<dyn Catalog>,
    config: ServerConfig,
) -> Router {
    Server::new(store, catalog, config).router()
}

/// The service's parts: the store, the templates, the settings, and what reaches salt.
pub struct Server {
    store: Arc<dyn ServerStore>,
    catalog: Arc<dyn Catalog>,
    config: ServerConfig,
    transport: Option<Arc<dyn Transport>>,
    metrics: Arc<Metrics>,
    monitor: Arc<MonitorStatus>,
    salt_health: Option<Arc<dyn SaltHealth>>,
    launcher: Option<Arc<dyn Launcher>>,
    workers: usize,
    webhooks: Arc<crate::webhooks::Webhooks>,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("config", &self.config)
            .field("transport", &self.transport.is_some())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// A service over `store` (users, sessions, history, fleet) and `catalog` (templates).
    pub fn new(
        store: Arc<dyn ServerStore>,
        catalog: Arc<dyn Catalog>,
        config: ServerConfig,
    ) -> Self {
        Server {
            store,
            catalog,
            config,
            transport: None,
            metrics: Arc::new(Metrics::new()),
            monitor: Arc::new(MonitorStatus::default()),
            salt_health: None,
            launcher: None,
            workers: 2,
            webhooks: Arc::new(crate::webhooks::Webhooks::disabled()),
        }
    }

    /// Probes the salt-api endpoints with `probe` for `/healthz` (without one, `/healthz` asks the
    /// transport; see [`crate::health`]).
    pub fn salt_health(mut self, probe: Arc<dyn SaltHealth>) -> Self {
        self.salt_health = Some(probe);
        self
    }

    /// The service's measurements, for the parts that feed them (workers, the live view).
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Starts the minion monitor: a round every `interval` (the first at once), pinging with
    /// `timeout`, until [`MonitorTask::stop`]. `None` (and nothing started) when the service has no
    /// transport or `interval` is zero. Call it inside the Tokio runtime.
    pub fn spawn_monitor(&self, interval: Duration, timeout: Duration) -> Option<MonitorTask> {
        let transport = self.transport.clone()?;
        if interval.is_zero() {
            tracing::info!("minion monitor disabled (interval 0)");
            return None;
        }
        Some(
            Rounds {
                store: self.store.clone(),
                catalog: self.catalog.clone(),
                transport,
                status: self.monitor.clone(),
                metrics: self.metrics.clone(),
                webhooks: self.webhooks.clone(),
                timeout,
            }
            .spawn(interval),
        )
    }

    /// Runs publish requests through `launcher` (without one, publishing is refused).
    pub fn launcher(mut self, launcher: Arc<dyn Launcher>) -> Self {
        self.launcher = Some(launcher);
        self
    }

    /// Announces deployment and minion events through `webhooks` (see [`crate::webhooks`];
    /// without, nothing is announced).
    pub fn webhooks(mut self, webhooks: Arc<crate::webhooks::Webhooks>) -> Self {
        self.webhooks = webhooks;
        self
    }

    /// How many deployments of different templates may run at once (default 2; at least 1).
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = workers.max(1);
        self
    }

    /// The router and the workers that run the queue (started now). Deployments and requests of a
    /// process that died are marked interrupted, at the start and every few seconds after (see
    /// [`RecordStore::recover`](pushguide_store::RecordStore::recover): once the dead process's heartbeat is older than the lease TTL).
    pub fn start(self) -> (Router, Workers) {
        let store = self.store.clone();
        let launcher = self.launcher.clone();
        let workers = self.workers;
        let catalog = self.catalog.clone();
        let (router, live) = build(self);
        let stop = Arc::new(tokio::sync::Notify::new());
        let task = launcher.map(|launcher| {
            let stop = stop.clone();
            tokio::spawn(async move {
                run_workers(store, launcher, live, workers, stop, catalog).await;
            })
        });
        (router, Workers { stop, task })
    }

    /// Reaches salt through `transport` (read-only uses: health checks, target resolution).
    pub fn transport(mut self, transport: Arc<dyn Transport>) -> Self {
        self.transport = Some(transport);
        self
    }

    /// The router alone (no workers: queued requests wait; see [`Server::start`]).
    pub fn router(self) -> Router {
        build(self).0
    }
}

/// The workers of a started [`Server`].
#[derive(Debug)]
pub struct Workers {
    stop: Arc<tokio::sync::Notify>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Workers {
    /// Stops the workers: running deployments are cancelled (their running call finishes, then
    /// their template's rollback policy applies) and waited for.
    pub async fn stop(self) {
        self.stop.notify_waiters();
        if let Some(t) = self.task {
            if let Err(e) = t.await {
                tracing::error!(error = %e, "a worker task failed");
            }
        }
    }
}

fn build(server: Server) -> (Router, Arc<Live>) {
    let Server {
        store,
        catalog,
        config,
        transport,
        metrics,
        monitor,
        salt_health,
        launcher,
        workers: _,
        webhooks,
    } = server;
    let live = Arc::new(Live::new(metrics.clone(), webhooks.clone()));
    let throttle = Throttle::new(
        config.login_throttle_capacity,
        config.login_delay,
        config.login_delay_max,
    );
    let state = AppState(Arc::new(Inner {
        store,
        catalog,
        config,
        throttle: Mutex::new(throttle),
        transport,
        metrics,
        monitor,
        salt_health,
        launcher,
        live: live.clone(),
        webhooks,
    }));
    let mut r = Router::new();
    for route in ROUTES {
        let h = (route.handler)();
        let h = match route.access {
            Access::Public => h,
            access => h.route_layer(middleware::from_fn_with_state(
                (state.clone(), access, route.need),
                authenticate,
            )),
        };
        r = r.route(route.path, h);
    }
    let router = r
        .fallback(not_found)
        .layer(middleware::map_response(security_headers))
        .with_state(state);
    (router, live)
}

/// Serves `app` on `listener` until `shutdown` completes, then finishes the requests under way.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "listener".into());
    tracing::info!(%addr, "serving");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
    .map_err(|source| Error::Io { addr, source })
}

async fn security_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; script-src 'self'; frame-ancestors 'none'"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    res
}

/// The stylesheet (compiled in; cached for a day).
async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        include_str!("../assets/app.css"),
    )
        .into_response()
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}

/// Runs `f` (password hashing, catalog scans, file work) off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Task(e.to_string()))?
}

pub(crate) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

pub(crate) fn set_cookie(
    name: &str,
    value: &str,
    path: &str,
    max_age: Option<u64>,
    secure: bool,
) -> String {
    let mut c = format!("{name}={value}; Path={path}; HttpOnly; SameSite=Lax");
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    if secure {
        c.push_str("; Secure");
    }
    c
}

pub(crate) fn with_cookies(mut res: Response, cookies: &[String]) -> Response {
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            res.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

fn see_other(to: &'static str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response()
}

pub(crate) fn api_error(status: StatusCode, kind: &str, message: &str) -> Response {
    (
        status,
        Json(serde_json::json!({"error": {"kind": kind, "message": message}})),
    )
        .into_response()
}

pub(crate) fn refused(access: Access, status: StatusCode, kind: &str, message: &str) -> Response {
    match access {
        Access::Api => api_error(status, kind, message),
        _ => (status, format!("{message}\n")).into_response(),
    }
}

pub(crate) fn internal(access: Access, e: &Error) -> Response {
    tracing::error!(error = %e, "request failed");
    refused(
        access,
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "internal error (see the service's log)",
    )
}

#[derive(Deserialize)]
struct CsrfField {
    #[serde(default)]
    csrf: String,
}

/// The session check of every non-public route: a live session (or an API token, or a trusted
/// proxy's headers: see `credentials`), on state-changing requests its CSRF token (header
/// [`CSRF_HEADER`], or form field `csrf`; not with an API token), and on [`Need::Admin`] routes an
/// admin group.
async fn authenticate(
    State((app, access, need)): State<(AppState, Access, Need)>,
    mut req: Request,
    next: Next,
) -> Response {
    let session =
        match crate::credentials::identify(&app, access, crate::credentials::Ask::of(&req)).await {
            Ok(found) => found,
            Err(res) => return res,
        };
    let needs_csrf = !matches!(session.via, crate::credentials::Via::Token(_));
    if needs_csrf && req.method() != Method::GET && req.method() != Method::HEAD {
        let header = req
            .headers()
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let (ok, rebuilt) = match header {
            Some(h) => (same(&h, &session.csrf), req),
            None => {
                let (parts, body) = req.into_parts();
                let bytes = match axum::body::to_bytes(body, FORM_LIMIT).await {
                    Ok(b) => b,
                    Err(_) => {
                        return refused(
                            access,
                            StatusCode::PAYLOAD_TOO_LARGE,
                            "too-large",
                            "request body too large",
                        )
                    }
                };
                let probe = Request::from_parts(parts.clone(), Body::from(bytes.clone()));
                let field = Form::<CsrfField>::from_request(probe, &())
                    .await
                    .map(|f| f.0.csrf)
                    .unwrap_or_default();
                (
                    same(&field, &session.csrf),
                    Request::from_parts(parts, Body::from(bytes)),
                )
            }
        };
        if !ok {
            tracing::warn!(user = session.user, path = %rebuilt.uri().path(), "CSRF token missing or wrong");
            return refused(
                access,
                StatusCode::FORBIDDEN,
                "csrf",
                "missing or wrong CSRF token",
            );
        }
        req = rebuilt;
    }
    let admin = app.is_admin(&session.groups);
    if need == Need::Admin && !admin {
        tracing::warn!(user = session.user, path = %req.uri().path(), "refused: not an admin");
        return refused(
            access,
            StatusCode::FORBIDDEN,
            "forbidden",
            "only members of an admin group may do this",
        );
    }
    let address = crate::proxy::client_address(
        &app.0.config.auth,
        crate::credentials::peer(&req),
        req.headers(),
    );
    req.extensions_mut().insert(AuthSession {
        user: session.user,
        groups: session.groups,
        csrf: session.csrf,
        token_sha256: session.token_sha256,
        address,
        admin,
        via: session.via,
    });
    let res = next.run(req).await;
    match session.set_cookie {
        Some(c) => with_cookies(res, &[c]),
        None => res,
    }
}

pub(crate) fn anonymous(access: Access) -> Response {
    match access {
        Access::Api => api_error(StatusCode::UNAUTHORIZED, "unauthenticated", "log in first"),
        _ => see_other("/login"),
    }
}

/// The login form's answer when a reverse proxy authenticates users.
fn no_login_form() -> Response {
    (
        StatusCode::NOT_FOUND,
        "this service authenticates users through its reverse proxy: there is no login form\n",
    )
        .into_response()
}

fn login_page(app: &AppState, status: StatusCode, error: Option<&str>) -> Response {
    let token = match new_token() {
        Ok(t) => t,
        Err(e) => return internal(Access::Page, &e),
    };
    let cookie = set_cookie(
        LOGIN_CSRF_COOKIE,
        &token,
        "/login",
        None,
        app.0.config.secure(),
    );
    with_cookies(
        (status, Html(html::login(&token, error))).into_response(),
        &[cookie],
    )
}

async fn login_form(State(app): State<AppState>) -> Response {
    if app.0.config.auth.mode == crate::proxy::AuthMode::Proxy {
        return no_login_form();
    }
    login_page(&app, StatusCode::OK, None)
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    user: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
}

impl fmt::Debug for LoginForm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginForm")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

async fn login(
    State(app): State<AppState>,
    connect: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    if app.0.config.auth.mode == crate::proxy::AuthMode::Proxy {
        return no_login_form();
    }
    let Ok(Form(form)) = form else {
        return (StatusCode::BAD_REQUEST, "expected a login form\n").into_response();
    };
    let expected = cookie(&headers, LOGIN_CSRF_COOKIE).unwrap_or_default();
    if form.csrf.is_empty() || !same(&form.csrf, &expected) {
        tracing::warn!(
            user = form.user,
            "login refused: CSRF token missing or wrong"
        );
        return (StatusCode::FORBIDDEN, "missing or wrong CSRF token\n").into_response();
    }
    let addr: Option<IpAddr> = crate::proxy::client_address(
        &app.0.config.auth,
        connect.map(|Extension(ConnectInfo(a))| a.ip()),
        &headers,
    );
    let delay = app
        .0
        .throttle
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .delay(&form.user, addr);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let inner = app.0.clone();
    let LoginForm { user, password, .. } = form;
    let name = user.clone();
    let checked = async {
        let bounded = name.len() <= FIELD_LIMIT && password.len() <= FIELD_LIMIT;
        let found = if bounded {
            inner.store.user(&name).await?
        } else {
            None
        };
        let hash = found
            .as_ref()
            .map_or_else(|| dummy_hash().to_owned(), |u| u.password_hash.clone());
        // argon2: CPU work, off the async threads
        let verified = blocking(move || Ok(verify_password(&password, &hash))).await?;
        if !(verified && found.is_some()) {
            return Ok(None);
        }
        let token = new_token()?;
        let csrf = new_token()?;
        let now = SystemTime::now();
        inner
            .store
            .purge_sessions(inner.config.session, now)
            .await?;
        inner
            .store
            .create_session(&token_hash(&token), &name, &csrf, now)
            .await?;
        Ok::<_, Error>(Some(token))
    }
    .await;
    let secure = app.0.config.secure();
    match checked {
        Err(e) => internal(Access::Page, &e),
        Ok(None) => {
            app.0
                .throttle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .failed(&user, addr, Instant::now());
            app.0.metrics.login_failed();
            tracing::warn!(user, addr = ?addr, "login failed");
            login_page(
                &app,
                StatusCode::UNAUTHORIZED,
                Some("Unknown user or wrong password."),
            )
        }
        Ok(Some(token)) => {
            app.0
                .throttle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .succeeded(&user, addr);
            tracing::info!(user, "logged in");
            let entry = pushguide_store::AuditEntry::new(
                &user,
                addr.map(|a| a.to_string()),
                "login",
                "",
                "",
            );
            if let Err(e) = app.0.store.append_audit(&entry).await {
                tracing::error!(error = %e, "cannot write the audit log");
            }
            with_cookies(
                see_other("/"),
                &[
                    set_cookie(SESSION_COOKIE, &token, "/", None, secure),
                    set_cookie(LOGIN_CSRF_COOKIE, "", "/login", Some(0), secure),
                ],
            )
        }
    }
}

async fn logout(State(app): State<AppState>, Extension(s): Extension<AuthSession>) -> Response {
    match app
        .0
        .store
        .delete_session(&s.token_sha256)
        .await
        .map_err(Error::from)
    {
        Ok(_) => {
            tracing::info!(user = s.user, "logged out");
            app.audit(&s, "logout", "", "").await;
            with_cookies(
                see_other("/login"),
                &[set_cookie(
                    SESSION_COOKIE,
                    "",
                    "/",
                    Some(0),
                    app.0.config.secure(),
                )],
            )
        }
        Err(e) => internal(Access::Page, &e),
    }
}

async fn statuses(
    app: &AppState,
    s: &AuthSession,
) -> Result<Vec<crate::status::TemplateStatus>, Error> {
    let inner = app.0.clone();
    let who = s.principal();
    let entries = blocking(move || inner.catalog.scan().map_err(Error::Catalog)).await?;
    template_statuses(app.0.store.as_ref(), entries, &who, s.admin).await
}

async fn templates_page(
    State(app): State<AppState>,
    Extension(s): Extension<AuthSession>,
) -> Response {
    match statuses(&app, &s).await {
        Ok(rows) => with_cookies(
            Html(html::templates(&s.viewer(), &rows)).into_response(),
            &[],
        ),
        Err(e) => internal(Access::Page, &e),
    }
}

async fn api_templates(
    State(app): State<AppState>,
    Extension(s): Extension<AuthSession>,
) -> Response {
    match statuses(&app, &s).await {
        Ok(rows) => with_cookies(Json(rows).into_response(), &[]),
        Err(e) => internal(Access::Api, &e),
    }
}

async fn api_session(Extension(s): Extension<AuthSession>) -> Response {
    let body: HashMap<&str, serde_json::Value> = [
        ("user", serde_json::json!(s.user)),
        ("groups", serde_json::json!(s.groups)),
        ("csrf", serde_json::json!(s.csrf)),
    ]
    .into_iter()
    .collect();
    with_cookies(Json(body).into_response(), &[])
}
