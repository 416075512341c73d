//! API tokens for CI pipelines: `GET /account/tokens` (a user's own tokens, a form to make one,
//! revoke buttons) and its JSON twin `/api/v1/tokens`.
//!
//! A token is `pgt_` and 64 hex digits (256 random bits), shown once when it is made; the store
//! keeps its SHA-256. `Authorization: Bearer <token>` authenticates API routes as its user, with
//! the user's groups at the time of each request. A request authenticated by a token cannot make
//! or revoke tokens (a leaked token cannot outlive its revocation); admins revoke anyone's tokens
//! (here or on the admin page).

use std::fmt;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::{Form, Json};
use pushguide_store::ApiToken;
use serde::{Deserialize, Serialize};

use crate::app::{api_error, internal, with_cookies, Access, AppState, AuthSession};
use crate::auth::{new_token, token_hash};
use crate::credentials::Via;
use crate::html::{escape, layout};
use crate::status::rfc3339;
use crate::Error;

/// The prefix of every API token (so secret scanners can find leaked ones).
pub const TOKEN_PREFIX: &str = "pgt_";
/// The longest token label.
const LABEL_MAX: usize = 100;
/// The longest lifetime, in days.
const EXPIRES_DAYS_MAX: u32 = 3650;

/// A new API token: its id (16 hex digits) and its value (shown once; store only its SHA-256, see
/// [`token_sha256`]).
pub struct NewToken {
    /// The id.
    pub id: String,
    /// The token itself.
    pub token: String,
}

impl fmt::Debug for NewToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewToken")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// A fresh random API token.
pub fn new_api_token() -> Result<NewToken, Error> {
    let id = new_token()?[..16].to_owned();
    Ok(NewToken {
        id,
        token: format!("{TOKEN_PREFIX}{}", new_token()?),
    })
}

/// The SHA-256 (hex) of an API token: what the store keeps.
pub fn token_sha256(token: &str) -> String {
    token_hash(token)
}

/// Checks a token label: 1 to 100 characters, no control characters.
pub fn check_label(label: &str) -> Result<(), String> {
    if label.trim().is_empty() || label.chars().count() > LABEL_MAX {
        return Err(format!("the label must be 1 to {LABEL_MAX} characters"));
    }
    if label.chars().any(char::is_control) {
        return Err("the label must not contain control characters".into());
    }
    Ok(())
}

/// Checks a lifetime in days (1 to 3650).
pub fn check_expires_days(days: u32) -> Result<Duration, String> {
    if (1..=EXPIRES_DAYS_MAX).contains(&days) {
        Ok(Duration::from_secs(u64::from(days) * 86_400))
    } else {
        Err(format!(
            "expires_days must be 1 to {EXPIRES_DAYS_MAX} (or left out: no expiry)"
        ))
    }
}

/// A token as the API shows it (never its value, except once in [`Created`]).
#[derive(Debug, Serialize)]
pub(crate) struct TokenRow {
    id: String,
    user: String,
    label: String,
    created: String,
    last_used: Option<String>,
    expires: Option<String>,
}

impl From<&ApiToken> for TokenRow {
    fn from(t: &ApiToken) -> Self {
        TokenRow {
            id: t.id.clone(),
            user: t.user.clone(),
            label: t.label.clone(),
            created: rfc3339(t.created),
            last_used: t.last_used.map(rfc3339),
            expires: t.expires.map(rfc3339),
        }
    }
}

/// `POST /api/v1/tokens`'s answer: the token row and, this once, the token.
#[derive(Serialize)]
struct Created {
    #[serde(flatten)]
    row: TokenRow,
    token: String,
}

/// Refuses token management through a token.
fn by_token(s: &AuthSession) -> bool {
    matches!(s.via, Via::Token(_))
}

const NO_TOKEN_MANAGEMENT: &str =
    "an API token cannot make or revoke API tokens: log in (or use the page) to manage them";

/// Makes a token for the request's user; the stored row and the token.
async fn create(
    app: &AppState,
    s: &AuthSession,
    label: &str,
    expires_days: Option<u32>,
) -> Result<Result<(ApiToken, String), String>, Error> {
    let label = label.trim().to_owned();
    if let Err(e) = check_label(&label) {
        return Ok(Err(e));
    }
    let lifetime = match expires_days.map(check_expires_days).transpose() {
        Ok(l) => l,
        Err(e) => return Ok(Err(e)),
    };
    let new = new_api_token()?;
    let now = SystemTime::now();
    let row = app
        .0
        .store
        .create_api_token(
            &new.id,
            &token_sha256(&new.token),
            &s.user,
            &label,
            now,
            lifetime.map(|l| now + l),
        )
        .await?;
    let made = (row, new.token);
    let detail = match expires_days {
        Some(d) => format!("{label} (expires in {d} days)"),
        None => label,
    };
    app.audit(s, "token.create", &made.0.id, &detail).await;
    Ok(Ok(made))
}

/// What revoking a token found.
pub(crate) enum Revoked {
    Done(ApiToken),
    /// No such token, or (for a non-admin) not theirs.
    NotFound,
}

/// Revokes the token `id` if it is the user's or the user is an admin.
pub(crate) async fn revoke(app: &AppState, s: &AuthSession, id: String) -> Result<Revoked, Error> {
    let store = &app.0.store;
    let done = match store.api_token(&id).await? {
        Some(t) if t.user == s.user || s.admin => {
            store.delete_api_token(&t.id).await?;
            Revoked::Done(t)
        }
        _ => Revoked::NotFound,
    };
    if let Revoked::Done(t) = &done {
        app.audit(
            s,
            "token.revoke",
            &t.id,
            &format!("{} of {}", t.label, t.user),
        )
        .await;
    }
    Ok(done)
}

async fn own_tokens(app: &AppState, user: &str) -> Result<Vec<ApiToken>, Error> {
    Ok(app.0.store.api_tokens(Some(user)).await?)
}

/// The tokens table (with a revoke button per row posting to `revoke_base/<id>/revoke`).
pub(crate) fn tokens_table(
    tokens: &[ApiToken],
    csrf: &str,
    revoke_base: &str,
    with_user: bool,
) -> String {
    let mut t = String::from("<table><thead><tr><th>Id</th>");
    if with_user {
        t.push_str("<th>User</th>");
    }
    t.push_str("<th>Label</th><th>Created</th><th>Last used</th><th>Expires</th><th></th></tr></thead><tbody>");
    if tokens.is_empty() {
        let _ = write!(
            t,
            "<tr><td colspan=\"{}\">No API tokens.</td></tr>",
            if with_user { 7 } else { 6 }
        );
    }
    for tok in tokens {
        let _ = write!(t, "<tr><td><code>{}</code></td>", escape(&tok.id));
        if with_user {
            let _ = write!(t, "<td>{}</td>", escape(&tok.user));
        }
        let _ = write!(
            t,
            "<td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><form method=\"post\" \
             action=\"{}/{}/revoke\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <button type=\"submit\">Revoke</button></form></td></tr>",
            escape(&tok.label),
            rfc3339(tok.created),
            tok.last_used.map_or_else(|| "never".into(), rfc3339),
            tok.expires.map_or_else(|| "never".into(), rfc3339),
            revoke_base,
            escape(&tok.id),
            escape(csrf),
        );
    }
    t.push_str("</tbody></table>");
    t
}

fn account_page(s: &AuthSession, tokens: &[ApiToken], note: &str) -> String {
    let mut body = String::from("<h1>API tokens</h1>");
    body.push_str(note);
    body.push_str(
        "<p>A token acts as you, with your groups at the time of each request, on the \
         <code>/api/v1/…</code> routes: send it as <code>Authorization: Bearer &lt;token&gt;</code>.</p>",
    );
    body.push_str(&tokens_table(tokens, &s.csrf, "/account/tokens", false));
    let _ = write!(
        body,
        "<h2>New token</h2><form method=\"post\" action=\"/account/tokens\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <label>Label <input name=\"label\" maxlength=\"{LABEL_MAX}\" required></label>\
         <label>Expires after (days, empty: never) <input name=\"expires_days\" type=\"number\" \
         min=\"1\" max=\"{EXPIRES_DAYS_MAX}\"></label>\
         <button type=\"submit\">Create</button></form>",
        escape(&s.csrf)
    );
    layout("API tokens", Some(&s.viewer()), &body)
}

/// `GET /account/tokens`.
pub(crate) async fn page(
    State(app): State<AppState>,
    Extension(s): Extension<AuthSession>,
) -> Response {
    match own_tokens(&app, &s.user).await {
        Ok(tokens) => with_cookies(Html(account_page(&s, &tokens, "")).into_response(), &[]),
        Err(e) => internal(Access::Page, &e),
    }
}

/// The new-token form.
#[derive(Deserialize)]
pub(crate) struct CreateForm {
    #[serde(default)]
    label: String,
    #[serde(default)]
    expires_days: String,
}

/// `POST /account/tokens`: makes a token and shows it once.
pub(crate) async fn page_create(
    State(app): State<AppState>,
    Extension(s): Extension<AuthSession>,
    Form(f): Form<CreateForm>,
) -> Response {
    let days = match f.expires_days.trim() {
        "" => Ok(None),
        d => d.parse::<u32>().map(Some).map_err(|_| {
            format!("expires_days {d:?}: must be a whole number of days (or empty: no expiry)")
        }),
    };
    let made = match days {
        Ok(days) => create(&app, &s, &f.label, days).await,
        Err(why) => Ok(Err(why)),
    };
    let (status, note) = match made {
        Err(e) => return internal(Access::Page, &e),
        Ok(Err(why)) => (
            StatusCode::BAD_REQUEST,
            format!("<p role=\"alert\">{}</p>", escape(&why)),
        ),
        Ok(Ok((row, token))) => (
            StatusCode::OK,
            format!(
                "<div class=\"new-token\"><p>Your new token <code>{}</code> ({}). Copy it now: \
                 it is not shown again.</p><p><input readonly size=\"72\" value=\"{}\"></p></div>",
                escape(&row.id),
                escape(&row.label),
                escape(&token)
            ),
        ),
    };
    match own_tokens(&app, &s.user).await {
        Ok(tokens) => with_cookies(
            (status, Html(account_page(&s, &tokens, &note))).into_response(),
            &[],
        ),
        Err(e) => internal(Access::Page, &e),
    }
}

/// `POST /account/tokens/{token}/revoke`.
pub(crate) async fn page_revoke(
    State(app): State<AppState>,
    Extension(s): Extension<AuthSession>,
    Path(id): Path<String>,
) -> Response {
    match revoke(&app, &s, id).await {
        Ok(Revoked::Done(_)) => Redirect::to("/account/tokens").into_response(),
        Ok(Revoked::NotFound) => {
            (StatusCode::NOT_FOUND, "no such token of yours\n").into_response()
        }
        Err(e) => internal(Access::Page, &e),
    }
}

/// `GET /api/v1/tokens`: the user's tokens.
pub(crate) async fn api_list(
    State(app): State<AppState>,
    Extension(s): Extension<AuthSession>,
) -> Response {
    match own_tokens(&app, &s.user).await {
        Ok(tokens) => with_cookies(
            Json(tokens.iter().map(TokenRow::from).collect::<Vec<_>>()).into_response(),
            &[],
        ),
        Err(e) => internal(Access::Api, &e),
    }
}

/// `POST /api/v1/tokens`'s body.
#[derive(Deserialize)]
pub(crate) struct CreateJson {
    label: String,
    #[serde(default)]
    expires_days: Option<u32>,
}

/// `POST /api/v1/tokens` (`{"label", "expires_days"}`): `201` with the token, shown this once.
pub(crate) async fn api_create(
    State(app): State<AppState>,
    Extension(s): Extension<AuthSession>,
    body: Result<Json<CreateJson>, axum::extract::rejection::JsonRejection>,
) -> Response {
    if by_token(&s) {
        return api_error(StatusCode::FORBIDDEN, "forbidden", NO_TOKEN_MANAGEMENT);
    }
    let Ok(Json(body)) = body else {
        return api_error(
            StatusCode::BAD_REQUEST,
            "bad-request",
            "expected a JSON body {\"label\": \"…\", \"expires_days\": N}",
        );
    };
    match create(&app, &s, &body.label, body.expires_days).await {
        Err(e) => internal(Access::Api, &e),
        Ok(Err(why)) => api_error(StatusCode::BAD_REQUEST, "bad-request", &why),
        Ok(Ok((row, token))) => with_cookies(
            (
                StatusCode::CREATED,
                Json(Created {
                    row: TokenRow::from(&row),
                    token,
                }),
            )
                .into_response(),
            &[],
        ),
    }
}

/// `DELETE /api/v1/tokens/{token}`: the user's own token, or any token for an admin.
pub(crate) async fn api_revoke(
    State(app): State<AppState>,
    Extension(s): Extension<AuthSession>,
    Path(id): Path<String>,
) -> Response {
    if by_token(&s) {
        return api_error(StatusCode::FORBIDDEN, "forbidden", NO_TOKEN_MANAGEMENT);
    }
    match revoke(&app, &s, id).await {
        Ok(Revoked::Done(t)) => {
            Json(serde_json::json!({"revoked": TokenRow::from(&t)})).into_response()
        }
        Ok(Revoked::NotFound) => {
            api_error(StatusCode::NOT_FOUND, "not-found", "no such token of yours")
        }
        Err(e) => internal(Access::Api, &e),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn tokens_are_prefixed_random_and_hidden_from_debug() {
        let a = new_api_token().unwrap();
        let b = new_api_token().unwrap();
        assert!(
            a.token.starts_with(TOKEN_PREFIX) && a.token.len() == 68,
            "{}",
            a.token
        );
        assert_eq!(a.id.len(), 16);
        assert_ne!((&a.id, &a.token), (&b.id, &b.token));
        assert!(!format!("{a:?}").contains(&a.token));
        assert_eq!(token_sha256(&a.token).len(), 64);
        assert!(check_label("ci").is_ok());
        for bad in ["", " ", "a\nb", &"x".repeat(101)] {
            assert!(check_label(bad).is_err(), "{bad:?}");
        }
        assert!(check_expires_days(0).is_err() && check_expires_days(3651).is_err());
        assert_eq!(check_expires_days(1).unwrap(), Duration::from_secs(86_400));
    }
}
