//! The history page (`GET /history`) and its JSON twin (`GET /api/v1/history`): the deployments
//! of the templates the user may view, newest first, filtered by template, outcome, user and start
//! date, paged by key (`?after=` / `?before=` a row's cursor, never an offset).
//!
//! The twin answers with `pushguide history --json`'s shape (an array of deployments) and names
//! the neighbouring pages in a `Link` header (`rel="next"`: older, `rel="prev"`: newer).

use std::fmt::Write;

use axum::extract::{Extension, RawQuery, State};
use axum::http::header::{self, HeaderValue};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use pushguide_core::{Action, DeploymentOutcome};
use pushguide_store::{HistoryKey, HistoryPage, HistoryQuery, OutcomeFilter, PageAt};

use crate::app::{blocking, internal, with_cookies, Access, AppState, AuthSession};
use crate::catalog::CatalogEntry;
use crate::html::{escape, layout};
use crate::params::{encode, shown, url, BadParam, Params};
use crate::records::DeploymentRow;
use crate::Error;

/// Rows per page unless `?limit=` says otherwise.
const DEFAULT_LIMIT: u64 = 50;
/// The most rows per page.
const MAX_LIMIT: u64 = 500;

const PARAMS: &[&str] = &[
    "template", "outcome", "user", "from", "to", "after", "before", "limit",
];

/// The names of the templates `s`'s user may view (loaded templates whose ACL lets them view).
pub(crate) async fn viewable(app: &AppState, s: &AuthSession) -> Result<Vec<String>, Error> {
    let inner = app.0.clone();
    let who = s.principal();
    blocking(move || {
        let entries = inner.catalog.scan().map_err(Error::Catalog)?;
        Ok(entries
            .into_iter()
            .filter_map(|e| match e {
                CatalogEntry::Loaded { template, .. }
                    if template.acl.allows(&who, Action::View) =>
                {
                    Some(template.name)
                }
                _ => None,
            })
            .collect())
    })
    .await
}

/// The outcomes the history may be filtered by: the stored ones and `running`.
fn outcomes() -> Vec<&'static str> {
    DeploymentOutcome::ALL
        .iter()
        .map(|o| o.as_str())
        .chain(["interrupted", "running"])
        .collect()
}

/// A row's cursor: its start in milliseconds and its id, `<ms>.<id>`.
fn cursor(k: &HistoryKey) -> String {
    format!("{}.{}", k.started_ms, k.id)
}

fn parse_cursor(name: &str, v: &str) -> Result<HistoryKey, BadParam> {
    let bad = || {
        BadParam::new(
            name,
            format!(
                "expected a cursor from a page's link (<start ms>.<id>), got `{}`",
                shown(v)
            ),
        )
    };
    let (ms, id) = v.split_once('.').ok_or_else(bad)?;
    let started_ms: i64 = ms.parse().map_err(|_| bad())?;
    if id.is_empty() {
        return Err(bad());
    }
    Ok(HistoryKey {
        started_ms,
        id: id.to_owned(),
    })
}

/// The filters of a request, as given (for the links and the form).
#[derive(Debug, Default, Clone)]
struct Filters {
    template: String,
    outcome: String,
    user: String,
    from: String,
    to: String,
    limit: u64,
}

impl Filters {
    fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut v = vec![
            ("template", self.template.clone()),
            ("outcome", self.outcome.clone()),
            ("user", self.user.clone()),
            ("from", self.from.clone()),
            ("to", self.to.clone()),
        ];
        if self.limit != DEFAULT_LIMIT {
            v.push(("limit", self.limit.to_string()));
        }
        v
    }

    fn link(&self, path: &str, page: Option<(&'static str, String)>) -> String {
        let mut pairs = self.pairs();
        pairs.extend(page);
        let refs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        url(path, &refs)
    }
}

/// What a request asks: the store's query and the filters as given.
fn query(raw: Option<&str>, visible: Vec<String>) -> Result<(HistoryQuery, Filters), Refusal> {
    let p = Params::parse(raw, PARAMS)?;
    let limit = p.number("limit", 1, MAX_LIMIT, DEFAULT_LIMIT)?;
    let mut q = HistoryQuery::new(visible, limit as usize);
    let mut f = Filters {
        limit,
        ..Filters::default()
    };
    if let Some(t) = p.get("template") {
        if !q.templates.iter().any(|v| v == t) {
            return Err(Refusal::NotFound(format!(
                "no template `{}` you may view",
                shown(t)
            )));
        }
        q.templates = vec![t.to_owned()];
        f.template = t.to_owned();
    }
    if let Some(o) = p.get("outcome") {
        let known = outcomes();
        if !known.contains(&o) {
            return Err(BadParam::new(
                "outcome",
                format!(
                    "unknown outcome `{}` (known: {})",
                    shown(o),
                    known.join(", ")
                ),
            )
            .into());
        }
        q.outcome = Some(if o == "running" {
            OutcomeFilter::Running
        } else {
            OutcomeFilter::Is(o.to_owned())
        });
        f.outcome = o.to_owned();
    }
    if let Some(u) = p.get("user") {
        q.user = Some(u.to_owned());
        f.user = u.to_owned();
    }
    q.from = p.time("from", false)?;
    q.to = p.time("to", true)?;
    if let (Some(from), Some(to)) = (q.from, q.to) {
        if from >= to {
            return Err(BadParam::new("from", "must be before `to`").into());
        }
    }
    f.from = p.get("from").unwrap_or_default().to_owned();
    f.to = p.get("to").unwrap_or_default().to_owned();
    q.page = match (p.get("after"), p.get("before")) {
        (Some(_), Some(_)) => {
            return Err(BadParam::new("before", "give `after` or `before`, not both").into())
        }
        (Some(a), None) => PageAt::Older(parse_cursor("after", a)?),
        (None, Some(b)) => PageAt::Newer(parse_cursor("before", b)?),
        (None, None) => PageAt::Newest,
    };
    Ok((q, f))
}

/// Why a request gets no page.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// A bad query parameter (`400`).
    Bad(BadParam),
    /// Nothing the user may see by that name (`404`).
    NotFound(String),
    /// The service failed (`500`).
    Internal(Error),
}

impl From<BadParam> for Refusal {
    fn from(b: BadParam) -> Self {
        Refusal::Bad(b)
    }
}

impl From<Error> for Refusal {
    fn from(e: Error) -> Self {
        Refusal::Internal(e)
    }
}

impl Refusal {
    pub(crate) fn response(&self, access: Access) -> Response {
        match self {
            Refusal::Bad(b) => b.response(access),
            Refusal::NotFound(m) => {
                crate::app::refused(access, axum::http::StatusCode::NOT_FOUND, "not-found", m)
            }
            Refusal::Internal(e) => internal(access, e),
        }
    }
}

async fn page(
    app: &AppState,
    s: &AuthSession,
    raw: Option<String>,
) -> Result<(HistoryPage, Filters, Vec<String>), Refusal> {
    let visible = viewable(app, s).await?;
    let (q, f) = query(raw.as_deref(), visible.clone())?;
    let page = app.0.store.history_page(&q).await.map_err(Error::from)?;
    Ok((page, f, visible))
}

/// The links to the newer and older pages.
fn links(path: &str, page: &HistoryPage, f: &Filters) -> (Option<String>, Option<String>) {
    let newer = page
        .rows
        .first()
        .filter(|_| page.newer)
        .map(|r| f.link(path, Some(("before", cursor(&HistoryKey::of(r))))));
    let older = page
        .rows
        .last()
        .filter(|_| page.older)
        .map(|r| f.link(path, Some(("after", cursor(&HistoryKey::of(r))))));
    (newer, older)
}

/// `GET /api/v1/history`.
pub(crate) async fn api(
    State(app): State<AppState>,
    Extension(s): Extension<AuthSession>,
    RawQuery(raw): RawQuery,
) -> Response {
    let (page, f, _) = match page(&app, &s, raw).await {
        Ok(p) => p,
        Err(r) => return r.response(Access::Api),
    };
    let (newer, older) = links("/api/v1/history", &page, &f);
    let rows: Vec<DeploymentRow> = page.rows.into_iter().map(DeploymentRow::from).collect();
    let mut res = with_cookies(Json(rows).into_response(), &[]);
    let link: Vec<String> = [(older, "next"), (newer, "prev")]
        .into_iter()
        .filter_map(|(u, rel)| u.map(|u| format!("<{u}>; rel=\"{rel}\"")))
        .collect();
    if !link.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&link.join(", ")) {
            res.headers_mut().insert(header::LINK, v);
        }
    }
    res
}

/// `GET /history`.
pub(crate) async fn page_html(
    State(app): State<AppState>,
    Extension(s): Extension<AuthSession>,
    RawQuery(raw): RawQuery,
) -> Response {
    let (page, f, visible) = match page(&app, &s, raw).await {
        Ok(p) => p,
        Err(r) => return r.response(Access::Page),
    };
    let (newer, older) = links("/history", &page, &f);
    let mut body = String::from("<h1>History</h1>");
    filter_form(&mut body, &f, &visible);
    body.push_str(
        "<table><thead><tr><th>Started</th><th>Template</th><th>Mode</th><th>Version</th>\
         <th>User</th><th>Outcome</th><th>Duration</th><th>Ended</th><th></th></tr></thead><tbody>",
    );
    if page.rows.is_empty() {
        body.push_str("<tr><td colspan=\"9\">No deployment matches.</td></tr>");
    }
    for r in page.rows {
        let d = DeploymentRow::from(r);
        let outcome = d.outcome.clone().unwrap_or_else(|| "running".into());
        let id = encode(&d.id);
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td class=\"state-{}\">{}{}</td><td>{}</td><td>{}</td>\
             <td><a href=\"/deployments/{id}\">deployment</a> · \
             <a href=\"/deployments/{id}/log\">log</a></td></tr>",
            escape(&d.started),
            escape(&d.template),
            d.mode,
            escape(&d.version),
            escape(&d.user),
            escape(&outcome),
            escape(&outcome),
            if d.dry_run { " (dry run)" } else { "" },
            d.duration_ms
                .map(|m| format!("{:.1} s", m as f64 / 1000.0))
                .unwrap_or_default(),
            escape(d.ended.as_deref().unwrap_or("")),
        );
    }
    body.push_str("</tbody></table><nav class=\"pages\">");
    if let Some(u) = newer {
        let _ = write!(body, "<a rel=\"prev\" href=\"{}\">← Newer</a> ", escape(&u));
    }
    if let Some(u) = older {
        let _ = write!(body, "<a rel=\"next\" href=\"{}\">Older →</a>", escape(&u));
    }
    body.push_str("</nav>");
    with_cookies(
        Html(layout("History", Some(&s.viewer()), &body)).into_response(),
        &[],
    )
}

fn filter_form(body: &mut String, f: &Filters, visible: &[String]) {
    body.push_str("<form method=\"get\" action=\"/history\" class=\"filters\"><label>Template <select name=\"template\"><option value=\"\">all</option>");
    for t in visible {
        let _ = write!(
            body,
            "<option{}>{}</option>",
            if *t == f.template { " selected" } else { "" },
            escape(t)
        );
    }
    body.push_str(
        "</select></label><label>Outcome <select name=\"outcome\"><option value=\"\">any</option>",
    );
    for o in outcomes() {
        let _ = write!(
            body,
            "<option{}>{o}</option>",
            if o == f.outcome { " selected" } else { "" }
        );
    }
    let _ = write!(
        body,
        "</select></label><label>User <input name=\"user\" value=\"{}\"></label>\
         <label>From <input name=\"from\" type=\"date\" value=\"{}\"></label>\
         <label>To <input name=\"to\" type=\"date\" value=\"{}\"></label>\
         <button type=\"submit\">Filter</button></form>",
        escape(&f.user),
        escape(&f.from),
        escape(&f.to),
    );
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn cursors_read_back() {
        let k = HistoryKey {
            started_ms: 1_795_772_566_000,
            id: "shop-1.2.3/<x>".into(),
        };
        assert_eq!(parse_cursor("after", &cursor(&k)).unwrap(), k);
        for bad in ["", "12", "x.y", "12.", ".id"] {
            let e = parse_cursor("after", bad).unwrap_err();
            assert_eq!(e.name, "after", "{bad}");
        }
    }
}
