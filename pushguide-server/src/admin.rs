//! The admin page (`GET /admin`, members of an admin group only) and its JSON twins under
//! `/api/v1/admin/…`: users with their groups (add, change groups, delete), every user's API
//! tokens (revoke), and the audit log (newest first, by key: `?before=SEQ`, `?user=NAME`). Every
//! change is written to the audit log.

use std::fmt;
use std::fmt::Write as _;
use std::time::SystemTime;

use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::{Form, Json};
use pushguide_store::{ApiToken, AuditEntry, User};
use serde::{Deserialize, Serialize};

use crate::app::{api_error, blocking, internal, with_cookies, Access, AppState, AuthSession};
use crate::auth::hash_password;
use crate::html::{escape, layout};
use crate::status::rfc3339;
use crate::tokens::{revoke, tokens_table, Revoked, TokenRow};
use crate::Error;

/// Audit entries per page.
const AUDIT_PAGE: usize = 50;
/// The most audit entries one API call returns.
const AUDIT_MAX: usize = 500;
/// The longest password accepted.
const PASSWORD_MAX: usize = 1024;

/// Checks a user or group name: 1 to 128 characters, no spaces or control characters (the rule
/// of `pushguide user add`).
pub(crate) fn check_name(what: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.chars().count() <= 128
        && !name.chars().any(|c| c.is_control() || c.is_whitespace());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} {:?}: must be 1 to 128 characters without spaces or control characters",
            name
        ))
    }
}

/// Groups from a comma-separated list (a form field), each checked, duplicates dropped.
fn parse_groups(list: &str) -> Result<Vec<String>, String> {
    groups(list.split(',').map(str::trim).filter(|g| !g.is_empty()))
}

fn groups<'a>(names: impl Iterator<Item = &'a str>) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for g in names {
        check_name("group", g)?;
        if !out.iter().any(|have| have == g) {
            out.push(g.to_owned());
        }
    }
    Ok(out)
}

/// A user as the API shows it.
#[derive(Debug, Serialize)]
struct UserRow {
    name: String,
    groups: Vec<String>,
    created: String,
    /// Whether the account has a password (`false`: made for a reverse proxy's user).
    password: bool,
}

impl From<&User> for UserRow {
    fn from(u: &User) -> Self {
        UserRow {
            name: u.name.clone(),
            groups: u.groups.clone(),
            created: rfc3339(u.created),
            password: u.password_hash != pushguide_store::NO_PASSWORD,
        }
    }
}

/// An audit entry as the API shows it.
#[derive(Debug, Serialize)]
struct AuditRow {
    seq: i64,
    at: String,
    user: String,
    address: Option<String>,
    action: String,
    target: String,
    detail: String,
}

impl From<&AuditEntry> for AuditRow {
    fn from(e: &AuditEntry) -> Self {
        AuditRow {
            seq: e.seq,
            at: rfc3339(e.at),
            user: e.user.clone(),
            address: e.address.clone(),
            action: e.action.clone(),
            target: e.target.clone(),
            detail: e.detail.clone(),
        }
    }
}

/// The audit log's query: `?before=SEQ&user=NAME&limit=N`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct AuditQuery {
    #[serde(default)]
    before: Option<i64>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
}

impl AuditQuery {
    fn user(&self) -> Option<String> {
        self.user.clone().filter(|u| !u.is_empty())
    }
}

struct Overview {
    users: Vec<User>,
    tokens: Vec<ApiToken>,
    audit: Vec<AuditEntry>,
}

async fn overview(app: &AppState, q: &AuditQuery, limit: usize) -> Result<Overview, Error> {
    let store = &app.0.store;
    let user = q.user();
    Ok(Overview {
        users: store.users().await?,
        tokens: store.api_tokens(None).await?,
        audit: store.audit_log(q.before, user.as_deref(), limit).await?,
    })
}

/// `text` for a URL's query (RFC 3986 unreserved characters kept).
pub(crate) fn query_escape(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn hidden_csrf(s: &AuthSession) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        escape(&s.csrf)
    )
}

fn admin_page(s: &AuthSession, o: &Overview, q: &AuditQuery, note: &str, hooks: &str) -> String {
    let csrf = hidden_csrf(s);
    let mut body = String::from("<h1>Admin</h1>");
    body.push_str(note);
    body.push_str(
        "<h2>Users</h2><table><thead><tr><th>User</th><th>Groups</th><th>Created</th>\
         <th>Password</th><th></th></tr></thead><tbody>",
    );
    for u in &o.users {
        let name = escape(&u.name);
        let path = escape(&query_escape(&u.name));
        let _ = write!(
            body,
            "<tr><td>{name}</td><td><form method=\"post\" action=\"/admin/users/{path}/groups\">\
             {csrf}<input name=\"groups\" value=\"{}\" aria-label=\"groups of {name}\">\
             <button type=\"submit\">Set groups</button></form></td><td>{}</td><td>{}</td>\
             <td><form method=\"post\" action=\"/admin/users/{path}/delete\">{csrf}\
             <button type=\"submit\">Delete</button></form></td></tr>",
            escape(&u.groups.join(", ")),
            rfc3339(u.created),
            if u.password_hash == pushguide_store::NO_PASSWORD {
                "none (reverse proxy)"
            } else {
                "set"
            },
        );
    }
    let _ = write!(
        body,
        "</tbody></table><h3>Add a user</h3><form method=\"post\" action=\"/admin/users\">{csrf}\
         <label>Name <input name=\"name\" required></label>\
         <label>Password <input name=\"password\" type=\"password\" autocomplete=\"new-password\" \
         required></label><label>Groups (comma separated) <input name=\"groups\"></label>\
         <button type=\"submit\">Add</button></form>"
    );
    body.push_str("<h2>API tokens</h2>");
    body.push_str(&tokens_table(&o.tokens, &s.csrf, "/admin/tokens", true));
    body.push_str(hooks);
    let filter = q.user().unwrap_or_default();
    let _ = write!(
        body,
        "<h2 id=\"audit\">Audit log</h2><form method=\"get\" action=\"/admin\">\
         <label>User <input name=\"user\" value=\"{}\"></label>\
         <button type=\"submit\">Filter</button></form><table><thead><tr><th>#</th><th>When</th>\
         <th>User</th><th>Address</th><th>Action</th><th>Target</th><th>Detail</th></tr></thead>\
         <tbody>",
        escape(&filter)
    );
    if o.audit.is_empty() {
        body.push_str("<tr><td colspan=\"7\">No entries.</td></tr>");
    }
    for e in &o.audit {
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            e.seq,
            rfc3339(e.at),
            escape(&e.user),
            escape(e.address.as_deref().unwrap_or("")),
            escape(&e.action),
            escape(&e.target),
            escape(&e.detail),
        );
    }
    body.push_str("</tbody></table>");
    if let Some(last) = o.audit.last().filter(|_| o.audit.len() == AUDIT_PAGE) {
        let mut href = format!("/admin?before={}", last.seq);
        if !filter.is_empty() {
            let _ = write!(href, "&user={}", query_escape(&filter));
        }
        let _ = write!(
            body,
            "<p><a href=\"{}#audit\">Older entries</a></p>",
            escape(&href)
        );
    }
    layout("Admin", Some(&s.viewer()), &body)
}

/// `GET /admin`.
pub(crate) async fn page(
    State(app): State<AppState>,
    Extension(s): Extension<AuthSession>,
    Query(q): Query<AuditQuery>,
) -> Response {
    render(&app, &s, &q, StatusCode::OK, "").await
}

async fn render(
    app: &AppState,
    s: &AuthSession,
    q: &AuditQuery,
    status: StatusCode,
    note: &str,
) -> Response {
    match overview(app, q, AUDIT_PAGE).await {
        Ok(o) => with_cookies(
            (
                status,
                Html(admin_page(
                    s,
                    &o,
                    q,
                    note,
                    &crate::webhooks::failures_html(&app.0.webhooks),
                )),
            )
                .into_response(),
            &[],
        ),
        Err(e) => internal(Access::Page, &e),
    }
}

async fn refuse_page(app: &AppState, s: &AuthSession, status: StatusCode, why: &str) -> Response {
    let note = format!("<p role=\"alert\">{}</p>", escape(why));
    render(app, s, &AuditQuery::default(), status, &note).await
}

/// What an admin action found.
enum Outcome {
    Done,
    Bad(String),
    NotFound(String),
}

async fn add_user(
    app: &AppState,
    s: &AuthSession,
    name: &str,
    password: String,
    groups: Vec<String>,
) -> Result<Outcome, Error> {
    if let Err(e) = check_name("user name", name) {
        return Ok(Outcome::Bad(e));
    }
    if password.is_empty() || password.len() > PASSWORD_MAX {
        return Ok(Outcome::Bad(format!(
            "the password must be 1 to {PASSWORD_MAX} bytes"
        )));
    }
    // argon2: CPU work, off the async threads
    let hash = blocking(move || hash_password(&password)).await?;
    let added = match app
        .0
        .store
        .put_user(name, &hash, &groups, false, SystemTime::now())
        .await
    {
        Ok(()) => true,
        Err(pushguide_store::Error::UserExists { .. }) => false,
        Err(e) => return Err(e.into()),
    };
    if !added {
        return Ok(Outcome::Bad(format!("user {name:?} exists already")));
    }
    app.audit(
        s,
        "user.add",
        name,
        &format!("groups: {}", groups.join(",")),
    )
    .await;
    Ok(Outcome::Done)
}

async fn set_groups(
    app: &AppState,
    s: &AuthSession,
    name: String,
    groups: Vec<String>,
) -> Result<Outcome, Error> {
    let found = match app.0.store.set_user_groups(&name, &groups).await {
        Ok(()) => true,
        Err(pushguide_store::Error::NoSuchUser { .. }) => false,
        Err(e) => return Err(e.into()),
    };
    if !found {
        return Ok(Outcome::NotFound(format!("no user {name:?}")));
    }
    app.audit(
        s,
        "user.groups",
        &name,
        &format!("groups: {}", groups.join(",")),
    )
    .await;
    Ok(Outcome::Done)
}

async fn delete_user(app: &AppState, s: &AuthSession, name: String) -> Result<Outcome, Error> {
    if name == s.user {
        return Ok(Outcome::Bad(
            "you cannot delete yourself (another admin can)".into(),
        ));
    }
    if !app.0.store.delete_user(&name).await? {
        return Ok(Outcome::NotFound(format!("no user {name:?}")));
    }
    app.audit(s, "user.delete", &name, "").await;
    Ok(Outcome::Done)
}

/// The add-user form.
#[derive(Deserialize)]
pub(crate) struct AddUserForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    groups: String,
}

impl fmt::Debug for AddUserForm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AddUserForm")
            .field("name", &self.name)
            .field("groups", &self.groups)
            .finish_non_exhaustive()
    }
}

async fn page_outcome(app: &AppState, s: &AuthSession, r: Result<Outcome, Error>) -> Response {
    match r {
        Ok(Outcome::Done) => Redirect::to("/admin").into_response(),
        Ok(Outcome::Bad(why)) => refuse_page(app, s, StatusCode::BAD_REQUEST, &why).await,
        Ok(Outcome::NotFound(why)) => refuse_page(app, s, StatusCode::NOT_FOUND, &why).await,
        Err(e) => internal(Access::Page, &e),
    }
}

fn api_outcome(r: Result<Outcome, Error>, done: StatusCode, body: serde_json::Value) -> Response {
    match r {
        Ok(Outcome::Done) => (done, Json(body)).into_response(),
        Ok(Outcome::Bad(why)) => api_error(StatusCode::BAD_REQUEST, "bad-request", &why),
        Ok(Outcome::NotFound(why)) => api_error(StatusCode::NOT_FOUND, "not-found", &why),
        Err(e) => internal(Access::Api, &e),
    }
}

/// `POST /admin/users`.
pub(crate) async fn page_add_user(
    State(app): State<AppState>,
    Extension(s): Extension<AuthSession>,
    Form(f): Form<AddUserForm>,
) -> Response {
    let r = match parse_groups(&f.groups) {
        Ok(g) => add_user(&app, &s, f.name.trim(), f.password, g).await,
        Err(why) => Ok(Outcome::Bad(why)),
    };
    page_outcome(&app, &s, r).await
}

/// The groups form.
#[derive(Debug, Deserialize)]
pub(crate) struct GroupsForm {
    #[serde(default)]
    groups: String,
}

/// `POST /admin/users/{user}/groups`.
pub(crate) async fn page_set_groups(
    State(app): State<AppState>,
    Extension(s): Extension<AuthSession>,
    Path(user): Path<String>,
    Form(f): Form<GroupsForm>,
) -> Response {
    let r = match parse_groups(&f.groups) {
        Ok(g) => set_groups(&app, &s, user, g).await,
        Err(why) => Ok(Outcome::Bad(why)),
    };
    page_outcome(&app, &s, r).await
}

/// `POST /admin/users/{user}/delete`.
pub(crate) async fn page_delete_user(
    State(app): State<AppState>,
    Extension(s): Extension<AuthSession>,
    Path(user): Path<String>,
) -> Response {
    let r = delete_user(&app, &s, user).await;
    page_outcome(&app, &s, r).await
}

/// `POST /admin/tokens/{token}/revoke`.
pub(crate) async fn page_revoke_token(
    State(app): State<AppState>,
    Extension(s): Extension<AuthSession>,
    Path(id): Path<String>,
) -> Response {
    let r = match revoke(&app, &s, id.clone()).await {
        Ok(Revoked::Done(_)) => Ok(Outcome::Done),
        Ok(Revoked::NotFound) => Ok(Outcome::NotFound(format!("no token {id:?}"))),
        Err(e) => Err(e),
    };
    page_outcome(&app, &s, r).await
}

/// `GET /api/v1/admin/users`.
pub(crate) async fn api_users(State(app): State<AppState>) -> Response {
    match app.0.store.users().await.map_err(Error::from) {
        Ok(users) => with_cookies(
            Json(users.iter().map(UserRow::from).collect::<Vec<_>>()).into_response(),
            &[],
        ),
        Err(e) => internal(Access::Api, &e),
    }
}

/// `POST /api/v1/admin/users`'s body.
#[derive(Deserialize)]
pub(crate) struct AddUserJson {
    name: String,
    password: String,
    #[serde(default)]
    groups: Vec<String>,
}

fn bad_json(expected: &str) -> Response {
    api_error(
        StatusCode::BAD_REQUEST,
        "bad-request",
        &format!("expected a JSON body {expected}"),
    )
}

/// `POST /api/v1/admin/users` (`{"name", "password", "groups"}`).
pub(crate) async fn api_add_user(
    State(app): State<AppState>,
    Extension(s): Extension<AuthSession>,
    body: Result<Json<AddUserJson>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(b)) = body else {
        return bad_json("{\"name\": \"…\", \"password\": \"…\", \"groups\": [\"…\"]}");
    };
    let r = match groups(b.groups.iter().map(String::as_str)) {
        Ok(g) => add_user(&app, &s, &b.name, b.password, g).await,
        Err(why) => Ok(Outcome::Bad(why)),
    };
    api_outcome(r, StatusCode::CREATED, serde_json::json!({"added": b.name}))
}

/// `POST /api/v1/admin/users/{user}/groups`'s body.
#[derive(Debug, Deserialize)]
pub(crate) struct GroupsJson {
    groups: Vec<String>,
}

/// `POST /api/v1/admin/users/{user}/groups` (`{"groups": […]}`).
pub(crate) async fn api_set_groups(
    State(app): State<AppState>,
    Extension(s): Extension<AuthSession>,
    Path(user): Path<String>,
    body: Result<Json<GroupsJson>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(b)) = body else {
        return bad_json("{\"groups\": [\"…\"]}");
    };
    let r = match groups(b.groups.iter().map(String::as_str)) {
        Ok(g) => set_groups(&app, &s, user.clone(), g).await,
        Err(why) => Ok(Outcome::Bad(why)),
    };
    api_outcome(
        r,
        StatusCode::OK,
        serde_json::json!({"user": user, "groups": b.groups}),
    )
}

/// `DELETE /api/v1/admin/users/{user}`.
pub(crate) async fn api_delete_user(
    State(app): State<AppState>,
    Extension(s): Extension<AuthSession>,
    Path(user): Path<String>,
) -> Response {
    let r = delete_user(&app, &s, user.clone()).await;
    api_outcome(r, StatusCode::OK, serde_json::json!({"deleted": user}))
}

/// `GET /api/v1/admin/tokens`: every user's tokens.
pub(crate) async fn api_tokens(State(app): State<AppState>) -> Response {
    match app.0.store.api_tokens(None).await.map_err(Error::from) {
        Ok(t) => with_cookies(
            Json(t.iter().map(TokenRow::from).collect::<Vec<_>>()).into_response(),
            &[],
        ),
        Err(e) => internal(Access::Api, &e),
    }
}

/// `GET /api/v1/admin/audit?before=SEQ&user=NAME&limit=N`: `{"entries": […], "next_before"}`
/// (`next_before`: the `before` of the next page, `null` on the last).
pub(crate) async fn api_audit(
    State(app): State<AppState>,
    Query(q): Query<AuditQuery>,
) -> Response {
    let limit = q.limit.unwrap_or(AUDIT_PAGE).clamp(1, AUDIT_MAX);
    let user = q.user();
    match app
        .0
        .store
        .audit_log(q.before, user.as_deref(), limit)
        .await
        .map_err(Error::from)
    {
        Ok(entries) => {
            let next = entries
                .last()
                .filter(|_| entries.len() == limit)
                .map(|e| e.seq);
            with_cookies(
                Json(serde_json::json!({
                    "entries": entries.iter().map(AuditRow::from).collect::<Vec<_>>(),
                    "next_before": next,
                }))
                .into_response(),
                &[],
            )
        }
        Err(e) => internal(Access::Api, &e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_groups_and_queries_are_checked() {
        assert!(check_name("user", "alice").is_ok());
        for bad in ["", "a b", "a\u{7}", &"x".repeat(129)] {
            assert!(check_name("user", bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            parse_groups(" ops, devs ,,ops").ok(),
            Some(vec!["ops".to_owned(), "devs".to_owned()])
        );
        assert!(parse_groups("a b").is_err());
        assert_eq!(query_escape("a b&c=é"), "a%20b%26c%3D%C3%A9");
    }
}
