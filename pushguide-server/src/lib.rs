//! # pushguide-server
//!
//! The pushguide web service (`pushguide serve`), first part: users log in with a name and password
//! (argon2id hashes in the store; `pushguide user add`), get a session cookie, and see the templates
//! their groups may view — with each one's last deployment and the versions its hosts run — as a
//! page (`GET /`) and as JSON (`GET /api/v1/templates`).
//!
//! - Sessions: a random 256-bit token in the `pushguide_session` cookie (`HttpOnly`,
//!   `SameSite=Lax`, `Path=/`, `Secure` behind an `https://` public URL); the store keeps only its
//!   SHA-256. Sessions end after [`ServerConfig::session`]'s idle or absolute limit, or at logout.
//! - CSRF: every state-changing request carries the session's token (form field `csrf` or header
//!   `X-CSRF-Token`, see `GET /api/v1/session`); the login form uses a double-submit cookie.
//! - Failed logins: an unknown user and a wrong password get the same answer; each failure doubles
//!   the delay before the next attempt of that user from that address.
//! - Every answer carries a restrictive `Content-Security-Policy`, `X-Frame-Options: DENY`,
//!   `X-Content-Type-Options: nosniff` and `Referrer-Policy: same-origin`; pages escape every value.
//!
//! - Reverse proxy ([`AuthMode::Proxy`], `[server] auth = "proxy"`): a request from an address in
//!   [`AuthConfig::trusted_proxies`] carrying the user header (`X-Forwarded-User`) is that user,
//!   with the groups of the groups header (`X-Forwarded-Groups`, comma separated); from any other
//!   address, or without the header, it is refused with `401` (the headers are never believed
//!   from elsewhere) and the login form is off. CSRF in this mode: the first `GET` of a user makes
//!   a server-side session (cookie as above) whose CSRF token state-changing requests must carry;
//!   the session must belong to the user the proxy names on each request. The user's account is
//!   recorded without a password, its groups set to the proxy's (what their API tokens act with).
//! - Client addresses (audit log, failed-login delay): the TCP peer, or behind a trusted proxy the
//!   right-most `X-Forwarded-For` address that is not a trusted proxy.
//! - API tokens (see [`tokens`]): `Authorization: Bearer pgt_…` authenticates the `/api/v1/…`
//!   routes as the token's user with the user's groups of now; such requests need no CSRF token
//!   (no cookie is involved). Pages ignore the header (a browser's cookie is their only
//!   credential), and a token cannot make or revoke tokens. Unknown, revoked and expired tokens
//!   get `401` with a JSON error.
//! - Admin page (`/admin`, [`Need::Admin`]): users with their groups (add, change groups,
//!   delete), every user's API tokens (revoke), and the audit log (newest first, `?before=SEQ`,
//!   `?user=NAME`); JSON twins under `/api/v1/admin/…`. Every change is audited with the client's
//!   address.
//! - Admins edit templates ([`editor`]: validation at field paths, atomic writes, revisions with
//!   diff and restore, an optimistic lock); a background task watches the minions ([`monitor`],
//!   started by [`Server::spawn_monitor`]); `/healthz` and `/metrics` watch the service itself
//!   ([`health`], [`Metrics`]).
//! - Webhooks ([`webhooks`], [`Server::webhooks`]): deployment started, paused, succeeded,
//!   failed, rolled back and minions going down or up are posted (generic JSON or Slack) from a
//!   bounded queue that never blocks a deployment, retried with backoff; the last failures are on
//!   `/admin` and `GET /api/v1/admin/webhooks`.
//!
//! The routes are the [`ROUTES`] table; [`router`] builds the service from it and [`serve`] runs it.

mod admin;
mod app;
pub mod auth;
pub mod catalog;
mod credentials;
mod deployment_log;
pub mod diff;
pub mod editor;
mod error;
pub mod grid;
pub mod health;
mod history;
pub mod html;
pub mod launch;
mod live;
pub mod metrics;
pub mod monitor;
pub mod outcome;
mod params;
pub mod proxy;
mod publish;
pub mod records;
mod runner;
pub mod stats_page;
pub mod status;
pub mod svg;
mod takeover;
pub mod tokens;
pub mod webhooks;
#[cfg(test)]
mod woken;

pub use app::{
    router, serve, Access, Need, Route, Server, ServerConfig, Workers, CSRF_HEADER,
    LOGIN_CSRF_COOKIE, ROUTES, SESSION_COOKIE,
};
pub use catalog::{Catalog, CatalogEntry, CatalogError, TemplateRow};
pub use error::Error;
pub use health::{EndpointCheck, SaltHealth};
pub use launch::{LaunchError, Launcher, PublishMode, PublishRequest, VersionInfo};
pub use metrics::Metrics;
pub use monitor::MonitorTask;
pub use proxy::{AuthConfig, AuthMode, Cidr};
pub use status::{rfc3339, template_statuses, LastDeployment, RunningVersion, TemplateStatus};
pub use webhooks::{
    Delivery, HttpSender, Notification, WebhookConfig, WebhookEvent, WebhookFormat, WebhookSender,
    Webhooks,
};
