//! Who a request is: an API token (`Authorization: Bearer`, API routes only), a trusted reverse
//! proxy's headers ([`AuthMode::Proxy`]), or a session cookie (local login).
//!
//! - A bearer token authenticates [`Access::Api`] routes only; pages, which browsers reach with
//!   cookies, ignore the header. A request with a bearer token needs no CSRF token: no browser
//!   sends an `Authorization` header on its own.
//! - In proxy mode each user gets a server-side session on their first `GET`; its cookie and its
//!   CSRF token then work like a local login's, and the session must belong to the user the
//!   proxy names on every request (otherwise a `GET` starts a new session and anything else is
//!   refused as a CSRF failure).

use std::net::{IpAddr, SocketAddr};
use std::time::SystemTime;

use axum::extract::{ConnectInfo, Request};
use axum::http::header::{self, HeaderMap};
use axum::http::{Method, StatusCode};
use axum::response::Response;

use crate::app::{
    anonymous, cookie, internal, refused, set_cookie, Access, AppState, SESSION_COOKIE,
};
use crate::auth::{new_token, token_hash};
use crate::proxy::{proxy_user, AuthMode};
use crate::Error;

/// How a request was authenticated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Via {
    /// A session cookie from the login form.
    Session,
    /// A trusted proxy's headers (and the session made for them).
    Proxy,
    /// An API token (its id).
    Token(String),
}

/// An authenticated request's user.
pub(crate) struct Found {
    pub(crate) user: String,
    pub(crate) groups: Vec<String>,
    /// The session's CSRF token (empty for a token).
    pub(crate) csrf: String,
    /// The SHA-256 of the session token (empty for an API token).
    pub(crate) token_sha256: String,
    pub(crate) via: Via,
    /// A session cookie to set on the answer (a proxy user's new session).
    pub(crate) set_cookie: Option<String>,
}

/// The TCP peer's address.
pub(crate) fn peer(req: &Request) -> Option<IpAddr> {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(a)| a.ip())
}

/// The token of an `Authorization: Bearer …` header, if there is one.
fn bearer(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

fn unauthenticated(access: Access, message: &str) -> Response {
    refused(access, StatusCode::UNAUTHORIZED, "unauthenticated", message)
}

/// What identifying a request looks at (borrowed from it: a request body is not `Sync`).
pub(crate) struct Ask<'a> {
    method: &'a Method,
    path: &'a str,
    headers: &'a HeaderMap,
    peer: Option<IpAddr>,
}

impl<'a> Ask<'a> {
    /// What of `req` identifies it.
    pub(crate) fn of(req: &'a Request) -> Self {
        Ask {
            method: req.method(),
            path: req.uri().path(),
            headers: req.headers(),
            peer: peer(req),
        }
    }
}

/// Who `ask` is, or the answer refusing it.
pub(crate) async fn identify(
    app: &AppState,
    access: Access,
    ask: Ask<'_>,
) -> Result<Found, Response> {
    if access == Access::Api {
        if let Some(token) = bearer(ask.headers) {
            return by_token(app, token).await;
        }
    }
    match app.0.config.auth.mode {
        AuthMode::Proxy => by_proxy(app, access, ask).await,
        _ => by_cookie(app, access, ask.headers).await,
    }
}

async fn by_token(app: &AppState, token: String) -> Result<Found, Response> {
    const REFUSED: &str = "unknown, revoked or expired API token";
    if token.is_empty() || token.len() > 256 {
        return Err(unauthenticated(Access::Api, REFUSED));
    }
    let hash = token_hash(&token);
    let found = app
        .0
        .store
        .api_token_user(&hash, SystemTime::now())
        .await
        .map_err(Error::from);
    match found {
        Ok(Some(t)) => Ok(Found {
            user: t.token.user,
            groups: t.groups,
            csrf: String::new(),
            token_sha256: String::new(),
            via: Via::Token(t.token.id),
            set_cookie: None,
        }),
        Ok(None) => {
            tracing::warn!("refused: {REFUSED}");
            Err(unauthenticated(Access::Api, REFUSED))
        }
        Err(e) => Err(internal(Access::Api, &e)),
    }
}

async fn by_cookie(app: &AppState, access: Access, headers: &HeaderMap) -> Result<Found, Response> {
    let Some(token) = cookie(headers, SESSION_COOKIE) else {
        return Err(anonymous(access));
    };
    let token_sha256 = token_hash(&token);
    let found = app
        .0
        .store
        .session(&token_sha256, app.0.config.session, SystemTime::now())
        .await
        .map_err(Error::from);
    match found {
        Ok(Some(s)) => Ok(Found {
            user: s.user,
            groups: s.groups,
            csrf: s.csrf,
            token_sha256,
            via: Via::Session,
            set_cookie: None,
        }),
        Ok(None) => Err(anonymous(access)),
        Err(e) => Err(internal(access, &e)),
    }
}

async fn by_proxy(app: &AppState, access: Access, req: Ask<'_>) -> Result<Found, Response> {
    let named = proxy_user(&app.0.config.auth, req.peer, req.headers)
        .map_err(|why| unauthenticated(access, why))?;
    let reading = req.method == Method::GET || req.method == Method::HEAD;
    let cookie_token = cookie(req.headers, SESSION_COOKIE);
    let inner = app.0.clone();
    let pu = &named;
    let found = async {
        let now = SystemTime::now();
        inner.store.external_user(&pu.user, &pu.groups, now).await?;
        if let Some(token) = cookie_token {
            let hash = token_hash(&token);
            if let Some(s) = inner
                .store
                .session(&hash, inner.config.session, now)
                .await?
            {
                if s.user == pu.user {
                    return Ok(Some((s.csrf, hash, None)));
                }
                // another user's session in this browser: the proxy's word wins
                tracing::info!(
                    session_user = s.user,
                    proxy_user = pu.user,
                    "proxy user changed"
                );
                inner.store.delete_session(&hash).await?;
            }
        }
        if !reading {
            return Ok(None);
        }
        let (token, csrf) = (new_token()?, new_token()?);
        let hash = token_hash(&token);
        inner
            .store
            .purge_sessions(inner.config.session, now)
            .await?;
        inner
            .store
            .create_session(&hash, &pu.user, &csrf, now)
            .await?;
        tracing::info!(user = pu.user, "session started for a proxy user");
        Ok::<_, Error>(Some((csrf, hash, Some(token))))
    }
    .await;
    match found {
        Ok(Some((csrf, token_sha256, new))) => Ok(Found {
            user: named.user,
            groups: named.groups,
            csrf,
            token_sha256,
            via: Via::Proxy,
            set_cookie: new
                .map(|t| set_cookie(SESSION_COOKIE, &t, "/", None, app.0.config.secure())),
        }),
        Ok(None) => {
            tracing::warn!(
                user = named.user,
                path = req.path,
                "refused: no session (CSRF token) for the proxy user yet"
            );
            Err(refused(
                access,
                StatusCode::FORBIDDEN,
                "csrf",
                "missing or wrong CSRF token",
            ))
        }
        Err(e) => Err(internal(access, &e)),
    }
}
