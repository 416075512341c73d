//! Who may do what, through the router (tower `oneshot`): the permission sweep over every route,
//! trusted reverse proxies, API tokens, and the admin page.
#![allow(clippy::unwrap_used)]

mod admin;
mod proxy;
mod support;
mod sweep;
mod tokens;
