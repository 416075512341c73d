//! The log page of a deployment (`GET /deployments/{id}/log`) and its JSON twin
//! (`GET /api/v1/deployments/{id}/log`, the shape of `pushguide log --json`): per host, per stage,
//! the salt calls of that stage with their jids and durations, and the host's output lines of that
//! stage. `?host=` shows one host. A deployment of a template the user may not view is `404`, as
//! an unknown id is.

use std::fmt::Write;

use axum::extract::{Extension, Path, RawQuery, State};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;

use crate::app::{with_cookies, Access, AppState, AuthSession};
use crate::history::{viewable, Refusal};
use crate::html::{escape, layout};
use crate::params::{encode, shown, url, BadParam, Params, MAX_VALUE};
use crate::records::{CallLine, HostLog, LogResult};

/// A line of output is shown from its end, at most this many characters.
const TAIL_CHARS: usize = 2000;
/// At most this many output lines per host and stage are shown (the last ones).
const TAIL_LINES: usize = 50;

/// The log of deployment `id` if the user may view its template, with only `host` when given.
async fn read(
    app: &AppState,
    s: &AuthSession,
    id: String,
    raw: Option<String>,
) -> Result<(LogResult, Option<String>), Refusal> {
    let p = Params::parse(raw.as_deref(), &["host"])?;
    let host = p.get("host").map(str::to_owned);
    if id.chars().count() > MAX_VALUE {
        return Err(BadParam::new("id", format!("longer than {MAX_VALUE} characters")).into());
    }
    let visible = viewable(app, s).await?;
    let store = app.0.store.as_ref();
    let unknown = format!("no deployment `{}` you may view", shown(&id));
    let log = async {
        let Some(rec) = store.deployment(&id).await? else {
            return Ok(None);
        };
        if !visible.contains(&rec.template) {
            return Ok(None);
        }
        Ok::<_, crate::Error>(Some(LogResult::read(store, rec).await?))
    }
    .await?;
    let Some(mut log) = log else {
        return Err(Refusal::NotFound(unknown));
    };
    if let Some(h) = &host {
        log.hosts.retain(|x| x.host == *h);
    }
    Ok((log, host))
}

/// `GET /api/v1/deployments/{id}/log`.
pub(crate) async fn api(
    State(app): State<AppState>,
    Extension(s): Extension<AuthSession>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    match read(&app, &s, id, raw).await {
        Ok((log, _)) => with_cookies(Json(log).into_response(), &[]),
        Err(r) => r.response(Access::Api),
    }
}

/// `GET /deployments/{id}/log`.
pub(crate) async fn page(
    State(app): State<AppState>,
    Extension(s): Extension<AuthSession>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    match read(&app, &s, id, raw).await {
        Ok((log, host)) => with_cookies(
            Html(layout(
                &format!("Log of {}", log.deployment.id),
                Some(&s.viewer()),
                &body(&log, host.as_deref()),
            ))
            .into_response(),
            &[],
        ),
        Err(r) => r.response(Access::Page),
    }
}

/// The last [`TAIL_CHARS`] characters of `line`, marked when cut.
fn tail(line: &str) -> String {
    let n = line.chars().count();
    if n <= TAIL_CHARS {
        return line.to_owned();
    }
    let cut: String = line.chars().skip(n - TAIL_CHARS).collect();
    format!("… ({} characters before) {cut}", n - TAIL_CHARS)
}

fn ms(v: Option<u64>) -> String {
    v.map(|m| format!("{m} ms")).unwrap_or_default()
}

fn body(l: &LogResult, host: Option<&str>) -> String {
    let d = &l.deployment;
    let id = encode(&d.id);
    let mut b = String::new();
    let _ = write!(
        b,
        "<h1>Log of {}</h1><p><a href=\"/deployments/{id}\">deployment page</a> · \
         <a href=\"{}\">history of {}</a></p><table><tbody>\
         <tr><th>Template</th><td>{}</td></tr><tr><th>Mode</th><td>{}</td></tr>\
         <tr><th>Version</th><td>{}</td></tr><tr><th>User</th><td>{}</td></tr>\
         <tr><th>Started</th><td>{}</td></tr><tr><th>Ended</th><td>{}</td></tr>\
         <tr><th>Duration</th><td>{}</td></tr><tr><th>Outcome</th><td>{}{}</td></tr>",
        escape(&d.id),
        escape(&url("/history", &[("template", &d.template)])),
        escape(&d.template),
        escape(&d.template),
        d.mode,
        escape(&d.version),
        escape(&d.user),
        escape(&d.started),
        escape(d.ended.as_deref().unwrap_or("")),
        ms(d.duration_ms),
        escape(d.outcome.as_deref().unwrap_or("running")),
        if d.dry_run { " (dry run)" } else { "" },
    );
    if let Some(r) = &d.reason {
        let _ = write!(b, "<tr><th>Reason</th><td>{}</td></tr>", escape(r));
    }
    if let Some(e) = &l.outcome_error {
        let _ = write!(
            b,
            "<tr><th>Warning</th><td role=\"alert\">{}</td></tr>",
            escape(e)
        );
    }
    b.push_str("</tbody></table>");
    let _ = write!(
        b,
        "<form method=\"get\" action=\"/deployments/{id}/log\"><label>Host \
         <input name=\"host\" value=\"{}\"></label><button type=\"submit\">Show</button> \
         <a href=\"/deployments/{id}/log\">all hosts</a></form>",
        escape(host.unwrap_or("")),
    );
    if l.hosts.is_empty() {
        let _ = write!(
            b,
            "<p>{}</p>",
            match host {
                Some(h) => format!("No host `{}` in this deployment.", escape(h)),
                None => "No host results recorded.".to_owned(),
            }
        );
    }
    for h in &l.hosts {
        host_section(&mut b, h, &l.calls);
    }
    b
}

fn host_section(b: &mut String, h: &HostLog, calls: &[CallLine]) {
    let status = h.status.as_deref().unwrap_or("running");
    let _ = write!(
        b,
        "<section><h2>{} — <span class=\"state-{}\">{}</span></h2>",
        escape(&h.host),
        escape(status),
        escape(status)
    );
    let mut shown_stages: Vec<&str> = Vec::new();
    for st in &h.stages {
        shown_stages.push(&st.stage);
        let _ = write!(
            b,
            "<h3>{} {} — <span class=\"state-{}\">{}</span> {}</h3>",
            st.batch
                .map(|x| format!("batch {}", x + 1))
                .unwrap_or_else(|| "prepare".into()),
            escape(&st.stage),
            escape(&st.status),
            escape(&st.status),
            ms(st.duration_ms),
        );
        if st.fun.is_some() || st.detail.is_some() {
            let _ = write!(
                b,
                "<p>{}{}</p>",
                st.fun
                    .as_deref()
                    .map(|f| format!("<code>{}</code>: ", escape(f)))
                    .unwrap_or_default(),
                escape(st.detail.as_deref().unwrap_or(""))
            );
        }
        let mine: Vec<&CallLine> = calls
            .iter()
            .filter(|c| c.batch == st.batch && c.stage == st.stage)
            .collect();
        if !mine.is_empty() {
            b.push_str(
                "<table><thead><tr><th>Salt call</th><th>jid</th><th>Hosts ok</th>\
                 <th>Hosts failed</th><th>Duration</th></tr></thead><tbody>",
            );
            for c in mine {
                let _ = write!(
                    b,
                    "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{} ms</td></tr>",
                    escape(&c.fun),
                    escape(c.jid.as_deref().unwrap_or("-")),
                    c.ok,
                    c.failed,
                    c.millis
                );
            }
            b.push_str("</tbody></table>");
        }
        output(b, h.log.iter().filter(|l| stage_of(l) == Some(&st.stage)));
    }
    // lines of stages without a stage row (messages of prepare, staging)
    let rest = h
        .log
        .iter()
        .filter(|l| !stage_of(l).is_some_and(|s| shown_stages.contains(&s)));
    let rest: Vec<&String> = rest.collect();
    if !rest.is_empty() {
        b.push_str("<h3>Other output</h3>");
        output(b, rest.into_iter());
    }
    b.push_str("</section>");
}

/// The stage a log line is of (`[deploy] …`).
fn stage_of(line: &str) -> Option<&str> {
    line.strip_prefix('[')?.split_once("] ").map(|(s, _)| s)
}

fn output<'a>(b: &mut String, lines: impl Iterator<Item = &'a String>) {
    let lines: Vec<&String> = lines.collect();
    if lines.is_empty() {
        return;
    }
    b.push_str("<pre>");
    let skip = lines.len().saturating_sub(TAIL_LINES);
    if skip > 0 {
        let _ = writeln!(b, "… {skip} earlier lines");
    }
    for l in &lines[skip..] {
        let _ = writeln!(b, "{}", escape(&tail(l)));
    }
    b.push_str("</pre>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_keep_their_end() {
        let line = format!("[deploy] x → ok {}END", "a".repeat(5000));
        let t = tail(&line);
        assert!(t.ends_with("END") && t.starts_with('…'), "{t}");
        assert!(t.chars().count() < TAIL_CHARS + 40);
        assert_eq!(tail("short"), "short");
        assert_eq!(stage_of("[post-deploy] a → b"), Some("post-deploy"));
        assert_eq!(stage_of("no stage"), None);
    }
}
