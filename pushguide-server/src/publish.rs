//! Publishing: the template's publish page, the queue, the deployment page with its live grid
//! (server-sent events), decisions and stop.

use std::fmt::Write;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::{Extension, Form, Json};
use pushguide_core::{Action, Decision, Template};
use serde::Deserialize;

use crate::app::{api_error, blocking, internal, with_cookies, Access, AppState, AuthSession};
use crate::catalog::CatalogEntry;
use crate::grid::{batches_table, decision_name, hosts_table, Grid, InterruptedHost};
use crate::html::{escape, layout};
use crate::launch::{PublishMode, PublishRequest, VersionInfo};
use crate::live::{act_form, sse_response, status_panel, Feed, Panel};
use crate::runner::Running;
use crate::status::rfc3339;
use crate::Error;

/// The longest field of a publish form (a version, a batch size, the hosts list).
const FIELD_MAX: usize = 4096;

/// A refusal in the page or API form.
fn refuse(access: Access, status: StatusCode, kind: &str, message: &str) -> Response {
    match access {
        Access::Api => api_error(status, kind, message),
        _ => with_cookies(
            (
                status,
                Html(layout(
                    "Refused",
                    None,
                    &format!("<p role=\"alert\">{}</p>", escape(message)),
                )),
            )
                .into_response(),
            &[],
        ),
    }
}

/// The template `name` if `s` may do `action` on it: else the refusal (404 when it may not even
/// view it, so that names do not leak; 403 when it may view but not deploy).
async fn template_for(
    app: &AppState,
    s: &AuthSession,
    name: &str,
    action: Action,
    access: Access,
) -> Result<Arc<Template>, Response> {
    let inner = app.0.clone();
    let scanned = blocking(move || inner.catalog.scan().map_err(Error::Catalog)).await;
    let entries = scanned.map_err(|e| internal(access, &e))?;
    let who = s.principal();
    let found = entries.into_iter().find_map(|e| match e {
        CatalogEntry::Loaded { template, .. } if template.name == name => Some(template),
        _ => None,
    });
    let not_found = || {
        refuse(
            access,
            StatusCode::NOT_FOUND,
            "not-found",
            &format!("no template {}", pushguide_core::validate::quote(name)),
        )
    };
    let Some(t) = found else {
        return Err(not_found());
    };
    if !t.acl.allows(&who, Action::View) {
        return Err(not_found());
    }
    if !t.acl.allows(&who, action) {
        return Err(refuse(
            access,
            StatusCode::FORBIDDEN,
            "forbidden",
            &format!(
                "{} may not deploy template {}",
                pushguide_core::validate::quote(&s.user),
                pushguide_core::validate::quote(name)
            ),
        ));
    }
    Ok(Arc::from(*t))
}

/// The form of a publish or rollback.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct PublishForm {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    dry_run: Option<String>,
    #[serde(default)]
    batch: String,
    #[serde(default)]
    hosts: String,
}

/// Checks a form into a request: every value bounded, the version and hosts validated as the CLI
/// does, before anything is queued.
fn check_form(f: &PublishForm) -> Result<PublishRequest, String> {
    for (name, v) in [
        ("version", &f.version),
        ("batch", &f.batch),
        ("hosts", &f.hosts),
    ] {
        if v.len() > FIELD_MAX {
            return Err(format!("{name}: longer than {FIELD_MAX} bytes"));
        }
    }
    let version = f.version.trim();
    let mode = match f.kind.as_str() {
        "deploy" | "" => {
            pushguide_core::validate::version("version", version).map_err(|e| e.to_string())?;
            PublishMode::Deploy {
                version: version.to_owned(),
            }
        }
        "rollback" if version.is_empty() || version == "previous" => {
            PublishMode::Rollback { to: None }
        }
        "rollback" => {
            pushguide_core::validate::version("version", version).map_err(|e| e.to_string())?;
            PublishMode::Rollback {
                to: Some(version.to_owned()),
            }
        }
        other => {
            return Err(format!(
                "kind {}: expected deploy or rollback",
                pushguide_core::validate::quote(other)
            ))
        }
    };
    let batch = match f.batch.trim() {
        "" => None,
        b => {
            let ok = b.strip_suffix('%').unwrap_or(b);
            if ok.is_empty() || !ok.bytes().all(|c| c.is_ascii_digit()) || ok.len() > 6 {
                return Err(format!(
                    "batch {}: expected a number of hosts or a percentage (3, 25%)",
                    pushguide_core::validate::quote(b)
                ));
            }
            Some(b.to_owned())
        }
    };
    let hosts: Vec<String> = f
        .hosts
        .split([',', ' ', '\n', '\r', '\t'])
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(str::to_owned)
        .collect();
    for h in &hosts {
        pushguide_core::validate::minion_id("hosts", h).map_err(|e| e.to_string())?;
    }
    Ok(PublishRequest {
        mode,
        dry_run: f
            .dry_run
            .as_deref()
            .is_some_and(|v| !v.is_empty() && v != "false"),
        batch,
        hosts: (!hosts.is_empty()).then_some(hosts),
    })
}

async fn queue(
    app: &AppState,
    s: &AuthSession,
    template: &str,
    request: &PublishRequest,
) -> Result<i64, Error> {
    let json = serde_json::to_string(request).map_err(|e| Error::Task(e.to_string()))?;
    let id = app
        .0
        .store
        .enqueue_publish(template, &s.user, &s.groups, &json)
        .await?;
    app.0.live.wake.notify_waiters();
    app.audit(
        s,
        "publish",
        template,
        &format!("request {id}: {}", request.summary()),
    )
    .await;
    Ok(id)
}

/// `POST /t/{template}/publish`: queues the form's request, then the request's page.
pub(crate) async fn publish_form(
    State(app): State<AppState>,
    Extension(s): Extension<AuthSession>,
    Path(name): Path<String>,
    form: Result<Form<PublishForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let access = Access::Page;
    if let Err(r) = template_for(&app, &s, &name, Action::Deploy, access).await {
        return r;
    }
    let Ok(Form(form)) = form else {
        return refuse(
            access,
            StatusCode::BAD_REQUEST,
            "bad-request",
            "expected a publish form",
        );
    };
    let req = match check_form(&form) {
        Ok(r) => r,
        Err(e) => return refuse(access, StatusCode::BAD_REQUEST, "invalid", &e),
    };
    match queue(&app, &s, &name, &req).await {
        Ok(id) => (
            StatusCode::SEE_OTHER,
            [(header::LOCATION, format!("/requests/{id}"))],
        )
            .into_response(),
        Err(e) => internal(access, &e),
    }
}

/// `POST /api/v1/templates/{template}/publish`: queues a JSON [`PublishRequest`]; `202` with the
/// request's id and URL.
pub(crate) async fn publish_api(
    State(app): State<AppState>,
    Extension(s): Extension<AuthSession>,
    Path(name): Path<String>,
    body: Result<Json<PublishRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let access = Access::Api;
    if let Err(r) = template_for(&app, &s, &name, Action::Deploy, access).await {
        return r;
    }
    let req = match body {
        Ok(Json(r)) => r,
        Err(e) => return api_error(StatusCode::BAD_REQUEST, "invalid", &e.body_text()),
    };
    // the same checks as the form
    let form = PublishForm {
        kind: match &req.mode {
            PublishMode::Deploy { .. } => "deploy".into(),
            PublishMode::Rollback { .. } => "rollback".into(),
            PublishMode::Undo { .. } => {
                return api_error(
                    StatusCode::BAD_REQUEST,
                    "invalid",
                    "mode undo is queued by the service itself (stop and roll back)",
                )
            }
        },
        version: match &req.mode {
            PublishMode::Deploy { version } => version.clone(),
            PublishMode::Rollback { to } => to.clone().unwrap_or_default(),
            PublishMode::Undo { version } => version.clone(),
        },
        dry_run: req.dry_run.then(|| "on".into()),
        batch: req.batch.clone().unwrap_or_default(),
        hosts: req.hosts.clone().unwrap_or_default().join(","),
    };
    let checked = match check_form(&form) {
        Ok(r) => r,
        Err(e) => return api_error(StatusCode::BAD_REQUEST, "invalid", &e),
    };
    match queue(&app, &s, &name, &checked).await {
        Ok(id) => (
            StatusCode::ACCEPTED,
            Json(serde_json::json!({"request": id, "url": format!("/requests/{id}")})),
        )
            .into_response(),
        Err(e) => internal(access, &e),
    }
}

/// The request `id` if `s` may view its template.
async fn request_for(
    app: &AppState,
    s: &AuthSession,
    id: i64,
    access: Access,
) -> Result<pushguide_store::QueuedPublish, Response> {
    let found = app
        .0
        .store
        .publish_request(id)
        .await
        .map_err(|e| internal(access, &e.into()))?;
    let none = || {
        refuse(
            access,
            StatusCode::NOT_FOUND,
            "not-found",
            &format!("no request {id}"),
        )
    };
    let q = found.ok_or_else(none)?;
    template_for(app, s, &q.template, Action::View, access)
        .await
        .map_err(|_| none())?;
    Ok(q)
}

fn request_json(q: &pushguide_store::QueuedPublish) -> serde_json::Value {
    let req: Option<PublishRequest> = serde_json::from_str(&q.request).ok();
    serde_json::json!({
        "id": q.id,
        "template": q.template,
        "user": q.user,
        "request": req,
        "state": q.state,
        "queued": rfc3339(q.queued),
        "started": q.started.map(rfc3339),
        "ended": q.ended.map(rfc3339),
        "deployment": q.deployment,
        "error": q.error,
    })
}

/// `GET /requests/{id}`: the deployment's page once it started; else where the request stands.
pub(crate) async fn request_page(
    State(app): State<AppState>,
    Extension(s): Extension<AuthSession>,
    Path(id): Path<i64>,
) -> Response {
    let q = match request_for(&app, &s, id, Access::Page).await {
        Ok(q) => q,
        Err(r) => return r,
    };
    if let Some(d) = &q.deployment {
        return (
            StatusCode::SEE_OTHER,
            [(header::LOCATION, format!("/deployments/{d}"))],
        )
            .into_response();
    }
    let req: Option<PublishRequest> = serde_json::from_str(&q.request).ok();
    let mut body = format!(
        "<h1>Request {} · {}</h1><p>{}</p><p>State: <strong class=\"state-{}\">{}</strong></p>",
        q.id,
        escape(&q.template),
        escape(&req.map(|r| r.summary()).unwrap_or_default()),
        escape(&q.state),
        escape(&q.state)
    );
    if let Some(e) = &q.error {
        let _ = write!(body, "<p role=\"alert\">{}</p>", escape(e));
    }
    let mut head = String::new();
    if q.state == "queued" || q.state == "running" {
        head = "<meta http-equiv=\"refresh\" content=\"1\">".into();
        body.push_str("<p class=\"muted\">This page reloads until the deployment starts.</p>");
        if q.state == "queued" {
            let _ = write!(
                body,
                "<form method=\"post\" action=\"/requests/{}/cancel\"><input type=\"hidden\" \
                 name=\"csrf\" value=\"{}\"><button type=\"submit\">Withdraw</button></form>",
                q.id,
                escape(&s.csrf)
            );
        }
    }
    let _ = write!(
        body,
        "<p><a href=\"/t/{}\">Back to {}</a></p>",
        crate::html::path_segment(&q.template),
        escape(&q.template)
    );
    let page = layout(&format!("Request {}", q.id), Some(&s.viewer()), &body).replacen(
        "<title>",
        &format!("{head}<title>"),
        1,
    );
    with_cookies(Html(page).into_response(), &[])
}

/// `GET /api/v1/requests/{id}`.
pub(crate) async fn request_api(
    State(app): State<AppState>,
    Extension(s): Extension<AuthSession>,
    Path(id): Path<i64>,
) -> Response {
    match request_for(&app, &s, id, Access::Api).await {
        Ok(q) => with_cookies(Json(request_json(&q)).into_response(), &[]),
        Err(r) => r,
    }
}

/// `POST /requests/{id}/cancel`: withdraws a queued request.
pub(crate) async fn request_cancel(
    State(app): State<AppState>,
    Extension(s): Extension<AuthSession>,
    Path(id): Path<i64>,
) -> Response {
    let q = match request_for(&app, &s, id, Access::Page).await {
        Ok(q) => q,
        Err(r) => return r,
    };
    if let Err(r) = template_for(&app, &s, &q.template, Action::Deploy, Access::Page).await {
        return r;
    }
    match app.0.store.cancel_publish(id).await.map_err(Error::from) {
        Ok(true) => {
            app.audit(&s, "withdraw", &q.template, &format!("request {id}"))
                .await;
            (
                StatusCode::SEE_OTHER,
                [(header::LOCATION, format!("/requests/{id}"))],
            )
                .into_response()
        }
        Ok(false) => refuse(
            Access::Page,
            StatusCode::CONFLICT,
            "conflict",
            &format!("request {id} is not queued any more (it started or ended)"),
        ),
        Err(e) => internal(Access::Page, &e),
    }
}

/// The publish page's data.
async fn publish_data(
    app: &AppState,
    t: &Template,
) -> Result<(Vec<VersionInfo>, Option<String>, serde_json::Value), Error> {
    let (versions, versions_error) = match &app.0.launcher {
        Some(l) => match l.versions(&t.name).await {
            Ok(v) => (v, None),
            Err(e) => (Vec::new(), Some(e.to_string())),
        },
        None => (Vec::new(), Some("this service has no CI source".into())),
    };
    let store = &app.0.store;
    let name = &t.name;
    let fleet = store.fleet(name).await?;
    let last = store.last_deployment(name).await?;
    let queue = store.publish_queue(Some(name)).await?;
    let data = serde_json::json!({
            "hosts": fleet.iter().map(|h| serde_json::json!({
                "host": h.host, "version": h.version, "healthy": h.healthy,
                "since": rfc3339(h.since), "previous": h.previous,
            })).collect::<Vec<_>>(),
            "last_deployment": last.map(|d| serde_json::json!({
                "id": d.id, "version": d.version, "user": d.principal,
                "started": rfc3339(d.started), "outcome": d.outcome, "rollback": d.rollback,
            })),
            "queue": queue.iter().map(request_json).collect::<Vec<_>>(),
    });
    Ok((versions, versions_error, data))
}

/// `GET /t/{template}`: the publish page.
pub(crate) async fn publish_page(
    State(app): State<AppState>,
    Extension(s): Extension<AuthSession>,
    Path(name): Path<String>,
) -> Response {
    let t = match template_for(&app, &s, &name, Action::View, Access::Page).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let may_deploy = t.acl.allows(&s.principal(), Action::Deploy);
    let (versions, versions_error, data) = match publish_data(&app, &t).await {
        Ok(d) => d,
        Err(e) => return internal(Access::Page, &e),
    };
    let mut body = format!(
        "<h1>{}</h1><p>{}</p>",
        escape(&t.name),
        escape(&t.description)
    );
    if may_deploy {
        let mut options = String::new();
        for v in &versions {
            let _ = write!(
                options,
                "<option value=\"{}\">{}{}</option>",
                escape(&v.version),
                escape(&v.version),
                v.size
                    .map(|s| format!(" · {} KiB", s / 1024))
                    .unwrap_or_default()
            );
        }
        let _ = write!(
            body,
            "<section><h2>Publish</h2><form method=\"post\" action=\"/t/{seg}/publish\" \
             id=\"publish\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <input type=\"hidden\" name=\"kind\" value=\"deploy\">\
             <label>Version <input name=\"version\" list=\"versions\" required \
             value=\"{first}\"></label><datalist id=\"versions\">{options}</datalist>\
             <label><input type=\"checkbox\" name=\"dry_run\" value=\"on\"> Dry run</label>\
             <label>Batch size (this run only) <input name=\"batch\" placeholder=\"3 or 25%\">\
             </label><label>Only these hosts <input name=\"hosts\" placeholder=\"web-01, web-02\">\
             </label><button type=\"submit\">Publish</button></form>\
             <h2>Preview the plan</h2><form method=\"get\" action=\"/t/{seg}/plan\" id=\"plan\">\
             <label>Version <input name=\"version\" list=\"versions\" required value=\"{first}\">\
             </label><label>Batch size <input name=\"batch\" placeholder=\"3 or 25%\"></label>\
             <button type=\"submit\">Preview</button></form>\
             <h2>Roll back</h2><form method=\"post\" action=\"/t/{seg}/publish\" id=\"rollback\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <input type=\"hidden\" name=\"kind\" value=\"rollback\">\
             <label>To version (empty: each host's previous) <input name=\"version\"></label>\
             <button type=\"submit\">Roll back</button></form></section>",
            seg = crate::html::path_segment(&t.name),
            csrf = escape(&s.csrf),
            first = escape(versions.first().map(|v| v.version.as_str()).unwrap_or("")),
        );
    } else {
        body.push_str("<p class=\"muted\">You may view this template but not publish it.</p>");
    }
    body.push_str("<h2>Versions from CI</h2>");
    if let Some(e) = &versions_error {
        let _ = write!(body, "<p role=\"alert\">{}</p>", escape(e));
    }
    body.push_str(
        "<table><thead><tr><th>Version</th><th>Size</th><th>SHA-256</th></tr></thead><tbody>",
    );
    for v in &versions {
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td><small>{}</small></td></tr>",
            escape(&v.version),
            v.size.map(|s| s.to_string()).unwrap_or_default(),
            escape(v.sha256.as_deref().unwrap_or(""))
        );
    }
    body.push_str(
        "</tbody></table><h2>Hosts</h2><table><thead><tr><th>Host</th><th>Version</th>\
                   <th>Since</th><th>Previous</th></tr></thead><tbody>",
    );
    for h in data["hosts"].as_array().into_iter().flatten() {
        let _ = write!(
            body,
            "<tr><td>{}</td><td class=\"{}\">{}</td><td>{}</td><td>{}</td></tr>",
            escape(h["host"].as_str().unwrap_or("")),
            if h["healthy"].as_bool() == Some(false) {
                "state-failed"
            } else {
                ""
            },
            escape(h["version"].as_str().unwrap_or("unknown")),
            escape(h["since"].as_str().unwrap_or("")),
            escape(h["previous"].as_str().unwrap_or(""))
        );
    }
    body.push_str("</tbody></table><h2>Queue</h2><ul>");
    for q in data["queue"].as_array().into_iter().flatten() {
        let _ = write!(
            body,
            "<li><a href=\"/requests/{}\">request {}</a> by {}: {}</li>",
            q["id"],
            q["id"],
            escape(q["user"].as_str().unwrap_or("")),
            escape(q["state"].as_str().unwrap_or(""))
        );
    }
    body.push_str("</ul>");
    if let Some(d) = data["last_deployment"].as_object() {
        let id = d["id"].as_str().unwrap_or("");
        let _ = write!(
            body,
            "<h2>Last deployment</h2><p><a href=\"/deployments/{}\">{}</a> · {} by {} · {}</p>",
            crate::html::path_segment(id),
            escape(id),
            escape(d["version"].as_str().unwrap_or("")),
            escape(d["user"].as_str().unwrap_or("")),
            escape(d["outcome"].as_str().unwrap_or("running"))
        );
    }
    with_cookies(
        Html(layout(&t.name, Some(&s.viewer()), &body)).into_response(),
        &[],
    )
}

/// `GET /api/v1/templates/{template}`: the publish page's data.
pub(crate) async fn publish_page_api(
    State(app): State<AppState>,
    Extension(s): Extension<AuthSession>,
    Path(name): Path<String>,
) -> Response {
    let t = match template_for(&app, &s, &name, Action::View, Access::Api).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    match publish_data(&app, &t).await {
        Ok((versions, versions_error, mut data)) => {
            data["template"] = serde_json::json!(t.name);
            data["may_deploy"] = serde_json::json!(t.acl.allows(&s.principal(), Action::Deploy));
            data["versions"] = serde_json::json!(versions);
            data["versions_error"] = serde_json::json!(versions_error);
            with_cookies(Json(data).into_response(), &[])
        }
        Err(e) => internal(Access::Api, &e),
    }
}

/// A deployment as its page shows it.
struct View {
    grid: Grid,
    /// This service runs it.
    running: Option<Arc<Running>>,
    /// The session may deploy its template.
    may_deploy: bool,
    /// Its live view, while it runs (here, or followed in the store's journal).
    feed: Option<Arc<Feed>>,
}

/// A deployment's grid, if `s` may view its template: live when this service runs it, or when
/// another process runs it and `follow` (then its journal is followed by a shared poller).
async fn grid_for(
    app: &AppState,
    s: &AuthSession,
    id: &str,
    access: Access,
    follow: bool,
) -> Result<View, Response> {
    let none = || {
        refuse(
            access,
            StatusCode::NOT_FOUND,
            "not-found",
            &format!("no deployment {}", pushguide_core::validate::quote(id)),
        )
    };
    if id.len() > 200 {
        return Err(none());
    }
    // a deployment this service runs: its page is the live view's grid (the store is not read:
    // its rows would be thrown away)
    let running = app.0.live.get(id);
    if let Some(r) = &running {
        if r.with_handle(|_| ()).is_some() {
            let t = template_for(app, s, &r.template, Action::View, access)
                .await
                .map_err(|_| none())?;
            return Ok(View {
                grid: r.feed.snapshot(),
                may_deploy: t.acl.allows(&s.principal(), Action::Deploy),
                feed: Some(r.feed.clone()),
                running,
            });
        }
    }
    let found = app
        .0
        .store
        .deployment(id)
        .await
        .map_err(|e| internal(access, &e.into()))?;
    let Some(d) = found else {
        return Err(none());
    };
    let t = template_for(app, s, &d.template, Action::View, access)
        .await
        .map_err(|_| none())?;
    let may_deploy = t.acl.allows(&s.principal(), Action::Deploy);
    if follow && d.outcome.is_none() && running.is_none() {
        // another process runs it: the grid of its journal, followed live
        let feed = app
            .0
            .live
            .remote
            .feed(&app.0.store, id)
            .await
            .map_err(|e| internal(access, &e))?;
        if let Some(feed) = feed {
            return Ok(View {
                grid: feed.snapshot(),
                running,
                may_deploy,
                feed: Some(feed),
            });
        }
    }
    let store = &app.0.store;
    let rows = async {
        let hosts = store.host_results(id).await?;
        let stages = store.host_stage_results(id).await?;
        let interrupted = if d.outcome.as_deref() == Some("interrupted") {
            store.interrupted_deployment(id).await?
        } else {
            None
        };
        Ok::<_, Error>((hosts, stages, interrupted))
    }
    .await
    .map_err(|e| internal(access, &e))?;
    let (hosts, stages, interrupted) = rows;
    let mut grid = Grid::from_store(&d, &hosts, &stages);
    grid.seq = d.events;
    if let Some(i) = interrupted {
        grid.interrupted = InterruptedHost::of(&i);
    }
    // the handle ended while the store was read: the page shows the store's state
    Ok(View {
        grid,
        running,
        may_deploy,
        feed: None,
    })
}

fn panel_of(running: Option<&Running>) -> Panel {
    running.map(Running::panel).unwrap_or_default()
}

/// `GET /deployments/{id}`: the visual flow.
pub(crate) async fn deployment_page(
    State(app): State<AppState>,
    Extension(s): Extension<AuthSession>,
    Path(id): Path<String>,
) -> Response {
    let View {
        grid: g,
        running,
        may_deploy,
        feed,
    } = match grid_for(&app, &s, &id, Access::Page, true).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let live = feed.is_some() && g.outcome.is_none();
    let mut body = format!(
        "<h1>{} {} · <a href=\"/t/{}\">{}</a></h1><p>by {}{}{}{} · <a href=\"/deployments/{}/log\">log</a></p>",
        if g.rollback { "Rollback to" } else { "Release" },
        escape(&g.version),
        crate::html::path_segment(&g.template),
        escape(&g.template),
        escape(&g.user),
        if g.dry_run { " · dry run" } else { "" },
        if live { " · live" } else { "" },
        if live && running.is_none() {
            " · run by another process"
        } else {
            ""
        },
        crate::html::path_segment(&g.id),
    );
    if live {
        // the stream goes on from this page's state
        let _ = write!(
            body,
            "<div hx-ext=\"sse\" sse-connect=\"/deployments/{}/events?after={}\" \
             sse-swap=\"update\" hx-swap=\"none\" id=\"live\"></div>",
            crate::html::path_segment(&g.id),
            g.seq
        );
    }
    let panel = panel_of(running.as_deref());
    if may_deploy && panel.here {
        body.push_str(&act_form(&g, &s.csrf));
    }
    let _ = write!(
        body,
        "<div id=\"status\">{}</div>",
        status_panel(&g, &panel, may_deploy)
    );
    let _ = write!(
        body,
        "<h2>Batches</h2>{}<h2>Hosts</h2>{}",
        batches_table(&g, false),
        hosts_table(&g, false)
    );
    if !g.interrupted.is_empty() {
        body.push_str(
            "<h2>Interrupted</h2><p role=\"alert\">The process running this deployment stopped \
             before it finished. Each host as the journal left it:</p><table id=\"interrupted\">\
             <thead><tr><th>Host</th><th>Batch</th><th>Last stage</th><th>Status</th>\
             <th>Calls that returned</th></tr></thead><tbody>",
        );
        for h in &g.interrupted {
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"state-{}\">{}</td><td>{}</td></tr>",
                escape(&h.host),
                h.batch.map_or_else(|| "–".to_owned(), |b| (b + 1).to_string()),
                escape(&h.stage),
                escape(&h.status),
                escape(&h.status),
                escape(&h.calls_done.join(", "))
            );
        }
        body.push_str("</tbody></table>");
        body.push_str(&crate::takeover::takeover_html(&*app.0.store, &g.id).await);
    }
    let mut page = layout(&format!("Deployment {}", g.id), Some(&s.viewer()), &body);
    if live {
        page = page.replacen(
            "</head>",
            "<meta name=\"htmx-config\" content='{\"includeIndicatorStyles\":false}'>\
             <script src=\"/static/htmx.min.js\"></script><script src=\"/static/sse.min.js\"></script></head>",
            1,
        );
    }
    with_cookies(Html(page).into_response(), &[])
}

/// `GET /api/v1/deployments/{id}`: the grid as JSON.
pub(crate) async fn deployment_api(
    State(app): State<AppState>,
    Extension(s): Extension<AuthSession>,
    Path(id): Path<String>,
) -> Response {
    match grid_for(&app, &s, &id, Access::Api, true).await {
        Ok(View {
            grid: g, running, ..
        }) => {
            let mut v = serde_json::json!(g);
            v["live"] = serde_json::json!(running.is_some());
            v["request"] = serde_json::json!(running.map(|r| r.request));
            if g.outcome.as_deref() == Some("interrupted") {
                v["takeover"] = crate::takeover::takeover_json(&*app.0.store, &g.id).await;
            }
            with_cookies(Json(v).into_response(), &[])
        }
        Err(r) => r,
    }
}

/// Where a live view client starts: `?after=SEQ` (the page's state).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct EventsQuery {
    #[serde(default)]
    after: Option<u64>,
}

/// `GET /deployments/{id}/events`: the live grid as server-sent events, one per journal event
/// that changes the page (its id is the journal sequence), each rendered once and shared by
/// every client (see [`crate::live`]); `Last-Event-ID` (or `?after=`, the page's sequence)
/// replays what a reconnecting client missed. Deployments another process runs are followed in
/// the store's journal. `204` once the deployment no longer runs (the browser stops
/// reconnecting; the page reloads from the store).
pub(crate) async fn deployment_events(
    State(app): State<AppState>,
    Extension(s): Extension<AuthSession>,
    Path(id): Path<String>,
    query: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let feed = match feed_for(&app, &s, &id).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let Some((feed, may_deploy)) = feed else {
        return StatusCode::NO_CONTENT.into_response();
    };
    let after = query.ok().and_then(|q| q.0.after).unwrap_or(0);
    let last: u64 = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(after);
    if feed.ended() && last >= feed.seq() {
        return StatusCode::NO_CONTENT.into_response();
    }
    sse_response(feed.subscribe(last, may_deploy), app.0.metrics.clone())
}

/// The live view of deployment `id` and whether `s` may deploy it; `None` once it ended.
async fn feed_for(
    app: &AppState,
    s: &AuthSession,
    id: &str,
) -> Result<Option<(Arc<Feed>, bool)>, Response> {
    let access = Access::Api;
    let none = || {
        refuse(
            access,
            StatusCode::NOT_FOUND,
            "not-found",
            &format!("no deployment {}", pushguide_core::validate::quote(id)),
        )
    };
    if id.len() > 200 {
        return Err(none());
    }
    if let Some(r) = app.0.live.get(id) {
        if r.with_handle(|_| ()).is_some() {
            let t = template_for(app, s, &r.template, Action::View, access)
                .await
                .map_err(|_| none())?;
            return Ok(Some((
                r.feed.clone(),
                t.acl.allows(&s.principal(), Action::Deploy),
            )));
        }
    }
    let found = app
        .0
        .store
        .deployment(id)
        .await
        .map_err(|e| internal(access, &e.into()))?;
    let Some(d) = found else {
        return Err(none());
    };
    let t = template_for(app, s, &d.template, Action::View, access)
        .await
        .map_err(|_| none())?;
    if d.outcome.is_some() || app.0.live.get(id).is_some() {
        return Ok(None);
    }
    let feed = app
        .0
        .live
        .remote
        .feed(&app.0.store, id)
        .await
        .map_err(|e| internal(access, &e))?;
    Ok(feed.map(|f| (f, t.acl.allows(&s.principal(), Action::Deploy))))
}

#[derive(Debug, Deserialize)]
pub(crate) struct DecideForm {
    #[serde(default)]
    decision: String,
}

fn parse_decision(s: &str) -> Option<Decision> {
    match s {
        "retry" => Some(Decision::Retry),
        "exclude" => Some(Decision::Exclude),
        "rollback" => Some(Decision::Rollback),
        "abort" => Some(Decision::Abort),
        _ => None,
    }
}

async fn decide(
    app: &AppState,
    s: &AuthSession,
    id: &str,
    decision: Result<DecideForm, String>,
    access: Access,
) -> Response {
    let View {
        grid: g,
        running,
        may_deploy,
        ..
    } = match grid_for(app, s, id, access, false).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    if !may_deploy {
        return refuse(
            access,
            StatusCode::FORBIDDEN,
            "forbidden",
            "you may not deploy this template",
        );
    }
    let decision = match decision {
        Ok(f) => f.decision,
        Err(why) => return refuse(access, StatusCode::BAD_REQUEST, "invalid", &why),
    };
    let decision = decision.as_str();
    let Some(d) = parse_decision(decision) else {
        return refuse(
            access,
            StatusCode::BAD_REQUEST,
            "invalid",
            &format!(
                "decision {}: expected retry, exclude, rollback or abort",
                pushguide_core::validate::quote(decision)
            ),
        );
    };
    let Some(running) = running else {
        return refuse(
            access,
            StatusCode::CONFLICT,
            "conflict",
            "this deployment does not run here (any more)",
        );
    };
    // one decision wins: the handle takes one answer per pause
    let answered = {
        let mut decided = running
            .decided
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match running.with_handle(|h| h.decide(d)) {
            Some(Ok(())) => {
                *decided = Some((s.user.clone(), d, std::time::SystemTime::now()));
                Ok(())
            }
            _ => Err(decided.clone()),
        }
    };
    match answered {
        Ok(()) => {
            app.audit(s, "decide", &g.id, decision_name(d)).await;
            done(access, &g.id)
        }
        Err(prev) => {
            let msg = match prev {
                Some((who, d, at)) => format!(
                    "no decision is pending: {} decided {} at {}",
                    who,
                    decision_name(d),
                    rfc3339(at)
                ),
                None => "no decision is pending".into(),
            };
            refuse(access, StatusCode::CONFLICT, "conflict", &msg)
        }
    }
}

fn done(access: Access, id: &str) -> Response {
    match access {
        Access::Api => {
            (StatusCode::ACCEPTED, Json(serde_json::json!({"ok": true}))).into_response()
        }
        _ => (
            StatusCode::SEE_OTHER,
            [(
                header::LOCATION,
                format!("/deployments/{}", crate::html::path_segment(id)),
            )],
        )
            .into_response(),
    }
}

/// The body of a form or JSON action: its fields, or why it does not read (checked after the
/// permission, so that a viewer learns nothing from a bad body).
fn body<T>(read: Result<T, impl std::fmt::Display>) -> Result<T, String> {
    read.map_err(|e| pushguide_core::validate::clean(&e.to_string(), 300))
}

/// `POST /deployments/{id}/decide` (`decision=exclude`).
pub(crate) async fn decide_form(
    State(app): State<AppState>,
    Extension(s): Extension<AuthSession>,
    Path(id): Path<String>,
    form: Result<Form<DecideForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    decide(&app, &s, &id, body(form.map(|f| f.0)), Access::Page).await
}

/// `POST /api/v1/deployments/{id}/decide` with `{"decision": "exclude"}`.
pub(crate) async fn decide_api(
    State(app): State<AppState>,
    Extension(s): Extension<AuthSession>,
    Path(id): Path<String>,
    json: Result<Json<DecideForm>, axum::extract::rejection::JsonRejection>,
) -> Response {
    decide(&app, &s, &id, body(json.map(|j| j.0)), Access::Api).await
}

#[derive(Debug, Deserialize)]
pub(crate) struct StopForm {
    #[serde(default)]
    mode: String,
}

async fn stop(
    app: &AppState,
    s: &AuthSession,
    id: &str,
    body: Result<StopForm, String>,
    access: Access,
) -> Response {
    let View {
        grid: g,
        running,
        may_deploy,
        ..
    } = match grid_for(app, s, id, access, false).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    if !may_deploy {
        return refuse(
            access,
            StatusCode::FORBIDDEN,
            "forbidden",
            "you may not deploy this template",
        );
    }
    let mode = match body {
        Ok(f) => f.mode,
        Err(why) => return refuse(access, StatusCode::BAD_REQUEST, "invalid", &why),
    };
    // an explicit mode only: a request that lost its body must not stop a deployment
    let rollback = match mode.as_str() {
        "stop" => false,
        "rollback" => true,
        other => {
            return refuse(
                access,
                StatusCode::BAD_REQUEST,
                "invalid",
                &format!(
                    "mode {}: expected stop or rollback",
                    pushguide_core::validate::quote(other)
                ),
            )
        }
    };
    let Some(running) = running else {
        return refuse(
            access,
            StatusCode::CONFLICT,
            "conflict",
            "this deployment does not run here (any more)",
        );
    };
    {
        let mut stopped = running
            .stopped
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let rollback = rollback || stopped.as_ref().is_some_and(|(_, r)| *r);
        *stopped = Some((s.user.clone(), rollback));
    }
    if running.with_handle(|h| h.cancel()).is_none() {
        return refuse(
            access,
            StatusCode::CONFLICT,
            "conflict",
            "this deployment has ended",
        );
    }
    app.audit(
        s,
        "stop",
        &g.id,
        if rollback {
            "stop and roll back"
        } else {
            "stop"
        },
    )
    .await;
    done(access, &g.id)
}

/// `POST /deployments/{id}/stop` (`mode=stop` or `mode=rollback`).
pub(crate) async fn stop_form(
    State(app): State<AppState>,
    Extension(s): Extension<AuthSession>,
    Path(id): Path<String>,
    form: Result<Form<StopForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    stop(&app, &s, &id, body(form.map(|f| f.0)), Access::Page).await
}

/// `POST /api/v1/deployments/{id}/stop` with `{"mode": "stop"}` or `{"mode": "rollback"}`.
pub(crate) async fn stop_api(
    State(app): State<AppState>,
    Extension(s): Extension<AuthSession>,
    Path(id): Path<String>,
    json: Result<Json<StopForm>, axum::extract::rejection::JsonRejection>,
) -> Response {
    stop(&app, &s, &id, body(json.map(|j| j.0)), Access::Api).await
}

/// A vendored script (compiled in; cached for a week: the file name carries the version).
pub(crate) async fn htmx() -> Response {
    script(include_str!("../assets/vendor/htmx-2.0.11.min.js"))
}

/// The htmx SSE extension.
pub(crate) async fn htmx_sse() -> Response {
    script(include_str!("../assets/vendor/htmx-ext-sse-2.2.4.min.js"))
}

fn script(body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=604800"),
        ],
        body,
    )
        .into_response()
}

/// The plan of the query's request, for `s`: a clear refusal when it cannot be computed.
async fn plan_of(
    app: &AppState,
    s: &AuthSession,
    name: &str,
    form: &PublishForm,
    access: Access,
) -> Result<(Arc<Template>, PublishRequest, pushguide_core::Plan), Response> {
    let t = template_for(app, s, name, Action::View, access).await?;
    let req =
        check_form(form).map_err(|e| refuse(access, StatusCode::BAD_REQUEST, "invalid", &e))?;
    let Some(launcher) = &app.0.launcher else {
        return Err(refuse(
            access,
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "this service cannot compute plans (no salt)",
        ));
    };
    match launcher.plan(name, &req, &s.principal()).await {
        Ok(p) => Ok((t, req, p)),
        Err(e) => Err(refuse(
            access,
            StatusCode::UNPROCESSABLE_ENTITY,
            "plan",
            &pushguide_core::validate::clean(&e.to_string(), 600),
        )),
    }
}

/// `GET /t/{template}/plan?version=…&batch=…`: what a release would do, changing nothing.
pub(crate) async fn plan_page(
    State(app): State<AppState>,
    Extension(s): Extension<AuthSession>,
    Path(name): Path<String>,
    query: Result<axum::extract::Query<PublishForm>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(axum::extract::Query(form)) = query else {
        return refuse(
            Access::Page,
            StatusCode::BAD_REQUEST,
            "invalid",
            "expected version, batch",
        );
    };
    let (t, req, plan) = match plan_of(&app, &s, &name, &form, Access::Page).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let body = format!(
        "<h1>Plan · <a href=\"/t/{}\">{}</a></h1><p>{}: nothing is changed by this page.</p>\
         <pre id=\"plan-text\">{}</pre>",
        crate::html::path_segment(&t.name),
        escape(&t.name),
        escape(&req.summary()),
        escape(&plan.to_string())
    );
    with_cookies(
        Html(layout(
            &format!("Plan of {}", t.name),
            Some(&s.viewer()),
            &body,
        ))
        .into_response(),
        &[],
    )
}

/// `GET /api/v1/templates/{template}/plan?version=…`: the plan as `plan --json` shows it.
pub(crate) async fn plan_api(
    State(app): State<AppState>,
    Extension(s): Extension<AuthSession>,
    Path(name): Path<String>,
    query: Result<axum::extract::Query<PublishForm>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(axum::extract::Query(form)) = query else {
        return api_error(
            StatusCode::BAD_REQUEST,
            "invalid",
            "expected version, batch",
        );
    };
    match plan_of(&app, &s, &name, &form, Access::Api).await {
        Ok((_, _, plan)) => with_cookies(Json(plan).into_response(), &[]),
        Err(r) => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(kind: &str, version: &str, batch: &str, hosts: &str) -> PublishForm {
        PublishForm {
            kind: kind.into(),
            version: version.into(),
            dry_run: None,
            batch: batch.into(),
            hosts: hosts.into(),
        }
    }

    #[test]
    fn forms_are_checked_before_anything_is_queued() {
        assert!(check_form(&form("deploy", "2.0", "25%", "web-01, web-02")).is_ok());
        assert_eq!(
            check_form(&form("rollback", "", "", ""))
                .map(|r| r.mode)
                .ok(),
            Some(PublishMode::Rollback { to: None })
        );
        for bad in [
            form("deploy", "", "", ""),
            form("deploy", "1.0; rm -rf /", "", ""),
            form("deploy", "../../etc", "", ""),
            form("deploy", "2.0", "ten", ""),
            form("deploy", "2.0", "", "web 01$(id)"),
            form("shell", "2.0", "", ""),
            form("deploy", &"9".repeat(5000), "", ""),
        ] {
            assert!(check_form(&bad).is_err(), "{bad:?}");
        }
    }
}
