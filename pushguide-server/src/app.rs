//! The router: one [`ROUTES`] table, the session check, CSRF, and the handlers.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use axum::body::Body;
use axum::extract::{ConnectInfo, Extension, FromRequest, Request, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::{Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::{Form, Json, Router};
use pushguide_core::Principal;
use pushguide_store::{SessionLimits, SqliteStore};
use serde::Deserialize;

use crate::auth::{dummy_hash, new_token, same, token_hash, verify_password, Throttle};
use crate::catalog::Catalog;
use crate::status::template_statuses;
use crate::{html, Error};

/// The session cookie.
pub const SESSION_COOKIE: &str = "pushguide_session";
/// The login form's CSRF cookie (double submit: the form carries the same value).
pub const LOGIN_CSRF_COOKIE: &str = "pushguide_login_csrf";
/// The header an API client sends its session's CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The largest form body read (login, logout).
const FORM_LIMIT: usize = 16 * 1024;
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
        }
    }
}

impl ServerConfig {
    fn secure(&self) -> bool {
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Handler {
    LoginForm,
    Login,
    Logout,
    Templates,
    ApiTemplates,
    ApiSession,
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
    handler: Handler,
}

/// Every route; [`router`] is built from this table alone. State-changing routes (any method but
/// `GET`) that are not [`Access::Public`] require the session's CSRF token.
pub const ROUTES: &[Route] = &[
    Route {
        method: Method::GET,
        path: "/login",
        access: Access::Public,
        handler: Handler::LoginForm,
    },
    Route {
        method: Method::POST,
        path: "/login",
        access: Access::Public,
        handler: Handler::Login,
    },
    Route {
        method: Method::POST,
        path: "/logout",
        access: Access::Page,
        handler: Handler::Logout,
    },
    Route {
        method: Method::GET,
        path: "/",
        access: Access::Page,
        handler: Handler::Templates,
    },
    Route {
        method: Method::GET,
        path: "/api/v1/templates",
        access: Access::Api,
        handler: Handler::ApiTemplates,
    },
    Route {
        method: Method::GET,
        path: "/api/v1/session",
        access: Access::Api,
        handler: Handler::ApiSession,
    },
];

struct Inner {
    store: Arc<SqliteStore>,
    catalog: Arc<dyn Catalog>,
    config: ServerConfig,
    throttle: Mutex<Throttle>,
}

#[derive(Clone)]
struct AppState(Arc<Inner>);

/// The logged-in user of a request (set by the session check).
#[derive(Clone)]
struct AuthSession {
    user: String,
    groups: Vec<String>,
    csrf: String,
    token_sha256: String,
}

impl fmt::Debug for AuthSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthSession")
            .field("user", &self.user)
            .field("groups", &self.groups)
            .finish_non_exhaustive()
    }
}

/// The service's router over `store` (users, sessions, history, fleet) and `catalog` (templates).
pub fn router(store: Arc<SqliteStore>, catalog: Arc<dyn Catalog>, config: ServerConfig) -> Router {
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
    }));
    let mut r = Router::new();
    for route in ROUTES {
        let h: MethodRouter<AppState> = match route.handler {
            Handler::LoginForm => get(login_form),
            Handler::Login => post(login),
            Handler::Logout => post(logout),
            Handler::Templates => get(templates_page),
            Handler::ApiTemplates => get(api_templates),
            Handler::ApiSession => get(api_session),
        };
        let h = match route.access {
            Access::Public => h,
            access => h.route_layer(middleware::from_fn_with_state(
                (state.clone(), access),
                authenticate,
            )),
        };
        r = r.route(route.path, h);
    }
    r.fallback(not_found)
        .layer(middleware::map_response(security_headers))
        .with_state(state)
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

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}

/// Runs `f` (store access, password hashing) off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Task(e.to_string()))?
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

fn set_cookie(name: &str, value: &str, path: &str, max_age: Option<u64>, secure: bool) -> String {
    let mut c = format!("{name}={value}; Path={path}; HttpOnly; SameSite=Lax");
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    if secure {
        c.push_str("; Secure");
    }
    c
}

fn with_cookies(mut res: Response, cookies: &[String]) -> Response {
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

fn api_error(status: StatusCode, kind: &str, message: &str) -> Response {
    (
        status,
        Json(serde_json::json!({"error": {"kind": kind, "message": message}})),
    )
        .into_response()
}

fn refused(access: Access, status: StatusCode, kind: &str, message: &str) -> Response {
    match access {
        Access::Api => api_error(status, kind, message),
        _ => (status, format!("{message}\n")).into_response(),
    }
}

fn internal(access: Access, e: &Error) -> Response {
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

/// The session check of every non-public route: a live session, and on state-changing requests
/// its CSRF token (header [`CSRF_HEADER`], or form field `csrf`).
async fn authenticate(
    State((app, access)): State<(AppState, Access)>,
    mut req: Request,
    next: Next,
) -> Response {
    let Some(token) = cookie(req.headers(), SESSION_COOKIE) else {
        return anonymous(access);
    };
    let token_sha256 = token_hash(&token);
    let inner = app.0.clone();
    let key = token_sha256.clone();
    let found = blocking(move || {
        inner
            .store
            .session(&key, inner.config.session, SystemTime::now())
            .map_err(Error::from)
    })
    .await;
    let session = match found {
        Ok(Some(s)) => s,
        Ok(None) => return anonymous(access),
        Err(e) => return internal(access, &e),
    };
    if req.method() != Method::GET && req.method() != Method::HEAD {
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
    req.extensions_mut().insert(AuthSession {
        user: session.user,
        groups: session.groups,
        csrf: session.csrf,
        token_sha256,
    });
    next.run(req).await
}

fn anonymous(access: Access) -> Response {
    match access {
        Access::Api => api_error(StatusCode::UNAUTHORIZED, "unauthenticated", "log in first"),
        _ => see_other("/login"),
    }
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
    let addr: Option<IpAddr> = connect.map(|Extension(ConnectInfo(a))| a.ip());
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
    let checked = blocking(move || {
        let bounded = name.len() <= FIELD_LIMIT && password.len() <= FIELD_LIMIT;
        let found = if bounded {
            inner.store.user(&name)?
        } else {
            None
        };
        let hash = found
            .as_ref()
            .map_or_else(|| dummy_hash().to_owned(), |u| u.password_hash.clone());
        let ok = verify_password(&password, &hash) && found.is_some();
        if !ok {
            return Ok(None);
        }
        let token = new_token()?;
        let csrf = new_token()?;
        let now = SystemTime::now();
        inner.store.purge_sessions(inner.config.session, now)?;
        inner
            .store
            .create_session(&token_hash(&token), &name, &csrf, now)?;
        Ok(Some(token))
    })
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
    let inner = app.0.clone();
    let key = s.token_sha256.clone();
    match blocking(move || inner.store.delete_session(&key).map_err(Error::from)).await {
        Ok(_) => {
            tracing::info!(user = s.user, "logged out");
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
    let who = Principal {
        user: s.user.clone(),
        groups: s.groups.clone(),
    };
    let admin = s
        .groups
        .iter()
        .any(|g| inner.config.admin_groups.contains(g));
    blocking(move || {
        let entries = inner.catalog.scan().map_err(Error::Catalog)?;
        template_statuses(&inner.store, entries, &who, admin)
    })
    .await
}

async fn templates_page(
    State(app): State<AppState>,
    Extension(s): Extension<AuthSession>,
) -> Response {
    match statuses(&app, &s).await {
        Ok(rows) => with_cookies(
            Html(html::templates(&s.user, &s.csrf, &rows)).into_response(),
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
