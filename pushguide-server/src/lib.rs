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
//! The routes are the [`ROUTES`] table; [`router`] builds the service from it and [`serve`] runs it.

mod app;
pub mod auth;
pub mod catalog;
mod deployment_log;
mod error;
mod history;
pub mod html;
pub mod outcome;
mod params;
pub mod records;
pub mod stats_page;
pub mod status;
pub mod svg;

pub use app::{
    router, serve, Access, Need, Route, Server, ServerConfig, CSRF_HEADER, LOGIN_CSRF_COOKIE,
    ROUTES, SESSION_COOKIE,
};
pub use catalog::{Catalog, CatalogEntry, CatalogError, TemplateRow};
pub use error::Error;
pub use status::{rfc3339, template_statuses, LastDeployment, RunningVersion, TemplateStatus};
