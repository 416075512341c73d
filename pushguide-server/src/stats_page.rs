//! The statistics page (`GET /stats`) and its JSON twin (`GET /api/v1/stats`) over one template
//! (`?template=`) or every template the user may view, for the last `?days=` days (default 30):
//! count, success rate and p50/p95 duration per day, success by hour of day × weekday, failing
//! hosts and stages, time to recover. Charts are inline SVG ([`crate::svg`]), each with its table.
//!
//! The twin is `pushguide stats --json`'s shape (hours and weekdays in UTC) plus `by_day`,
//! `by_hour_of_week` and `max_time_to_recover_ms`.

use std::collections::HashMap;
use std::fmt::Write;
use std::time::{Duration, SystemTime};

use axum::extract::{Extension, RawQuery, State};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use pushguide_store::{DayStats, Window};
use serde::Serialize;

use crate::app::{with_cookies, Access, AppState, AuthSession};
use crate::history::{viewable, Refusal};
use crate::html::{escape, layout};
use crate::params::{shown, Params};
use crate::records::{millis, StatsResult};
use crate::status::rfc3339;
use crate::svg::{BarChart, Heatmap, LineChart, Series};

/// The window unless `?days=` says otherwise.
const DEFAULT_DAYS: u64 = 30;
/// The longest window.
const MAX_DAYS: u64 = 3660;
const DAY: Duration = Duration::from_secs(86_400);
const WEEKDAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// One day of the window (`by_day`): releases that started that day (UTC).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DayRow {
    /// The day, `2026-11-27`.
    pub day: String,
    /// Releases.
    pub count: u64,
    /// Of which succeeded.
    pub succeeded: u64,
    /// succeeded / count (`null`: none that day).
    pub success_rate: Option<f64>,
    /// Median duration ms.
    pub p50_ms: Option<u64>,
    /// 95th percentile ms.
    pub p95_ms: Option<u64>,
}

/// One hour of the week (`by_hour_of_week`, only hours with releases).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HourOfWeekRow {
    /// 0 = Monday … 6 = Sunday (UTC).
    pub weekday: usize,
    /// 0 … 23 (UTC).
    pub hour: usize,
    /// Releases.
    pub count: u64,
    /// Of which succeeded.
    pub succeeded: u64,
}

/// `GET /api/v1/stats`: the CLI's `stats` result and the series the page draws.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatsPage {
    /// What `pushguide stats --json` prints.
    #[serde(flatten)]
    pub stats: StatsResult,
    /// Every day of the window, oldest first (days without releases too).
    pub by_day: Vec<DayRow>,
    /// Success by hour of the week.
    pub by_hour_of_week: Vec<HourOfWeekRow>,
    /// The longest time to recover, ms.
    pub max_time_to_recover_ms: Option<u64>,
}

/// Every day from `from`'s to `to`'s (UTC), with the store's days filled in.
fn days(from: SystemTime, to: SystemTime, stored: &[DayStats]) -> Vec<DayRow> {
    let secs = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    };
    let first = secs(from) / 86_400;
    let last = secs(to).saturating_sub(1) / 86_400;
    let by_day: HashMap<SystemTime, &DayStats> = stored.iter().map(|s| (s.day, s)).collect();
    (first..=last.max(first))
        .map(|d| {
            let day = SystemTime::UNIX_EPOCH + DAY * u32::try_from(d).unwrap_or(u32::MAX);
            let s = by_day.get(&day).copied();
            DayRow {
                day: rfc3339(day)[..10].to_owned(),
                count: s.map_or(0, |s| s.count),
                succeeded: s.map_or(0, |s| s.succeeded),
                success_rate: s
                    .filter(|s| s.count > 0)
                    .map(|s| s.succeeded as f64 / s.count as f64),
                p50_ms: s.and_then(|s| s.p50).map(millis),
                p95_ms: s.and_then(|s| s.p95).map(millis),
            }
        })
        .collect()
}

async fn read(
    app: &AppState,
    s: &AuthSession,
    raw: Option<String>,
) -> Result<(StatsPage, u64, Vec<String>), Refusal> {
    let p = Params::parse(raw.as_deref(), &["template", "days"])?;
    let days_asked = p.number("days", 1, MAX_DAYS, DEFAULT_DAYS)?;
    let all = viewable(app, s).await?;
    let mut visible = all.clone();
    let template = p.get("template").map(str::to_owned);
    if let Some(t) = &template {
        if !all.contains(t) {
            return Err(Refusal::NotFound(format!(
                "no template `{}` you may view",
                shown(t)
            )));
        }
        visible = vec![t.clone()];
    }
    let to = SystemTime::now() + Duration::from_secs(1);
    let from = to
        .checked_sub(DAY * u32::try_from(days_asked).unwrap_or(u32::MAX))
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let w = Window::new(from, to).templates(visible.iter().cloned());
    let store = &app.0.store;
    let stats = store.stats(&w).await.map_err(crate::Error::from)?;
    let daily = store.daily(&w).await.map_err(crate::Error::from)?;
    let week = store
        .by_hour_of_week(&w)
        .await
        .map_err(crate::Error::from)?;
    let max_ttr = stats.recovery.max.map(millis);
    let page = StatsPage {
        stats: StatsResult::new(template, visible, &w, "UTC".into(), stats),
        by_day: days(from, to, &daily),
        by_hour_of_week: week
            .iter()
            .enumerate()
            .filter(|(_, r)| r.count > 0)
            .map(|(i, r)| HourOfWeekRow {
                weekday: i / 24,
                hour: i % 24,
                count: r.count,
                succeeded: r.succeeded,
            })
            .collect(),
        max_time_to_recover_ms: max_ttr,
    };
    Ok((page, days_asked, all))
}

/// `GET /api/v1/stats`.
pub(crate) async fn api(
    State(app): State<AppState>,
    Extension(s): Extension<AuthSession>,
    RawQuery(raw): RawQuery,
) -> Response {
    match read(&app, &s, raw).await {
        Ok((page, _, _)) => with_cookies(Json(page).into_response(), &[]),
        Err(r) => r.response(Access::Api),
    }
}

/// `GET /stats`.
pub(crate) async fn page(
    State(app): State<AppState>,
    Extension(s): Extension<AuthSession>,
    RawQuery(raw): RawQuery,
) -> Response {
    match read(&app, &s, raw).await {
        Ok((page, days, all)) => with_cookies(
            Html(layout(
                "Statistics",
                Some(&s.viewer()),
                &body(&page, days, &all),
            ))
            .into_response(),
            &[],
        ),
        Err(r) => r.response(Access::Page),
    }
}

fn pct(r: Option<f64>) -> String {
    r.map(|r| format!("{:.1} %", r * 100.0))
        .unwrap_or_else(|| "–".into())
}

fn secs(ms: Option<u64>) -> String {
    ms.map(|m| format!("{:.1} s", m as f64 / 1000.0))
        .unwrap_or_else(|| "–".into())
}

/// The unit durations are drawn in: seconds, minutes or hours, whichever keeps the numbers short.
fn duration_unit(max_ms: u64) -> (&'static str, f64) {
    if max_ms >= 2 * 3_600_000 {
        ("h", 3_600_000.0)
    } else if max_ms >= 2 * 60_000 {
        ("min", 60_000.0)
    } else {
        ("s", 1000.0)
    }
}

/// A chart and its table (in a `<details>`, open without JavaScript on a click).
fn figure(b: &mut String, svg: &str, table: &str) {
    let _ = write!(
        b,
        "<figure>{svg}<details><summary>Table</summary>{table}</details></figure>"
    );
}

fn body(p: &StatsPage, days: u64, all: &[String]) -> String {
    let s = &p.stats;
    let mut b = String::from("<h1>Statistics</h1>");
    // the form
    b.push_str("<form method=\"get\" action=\"/stats\"><label>Template <select name=\"template\"><option value=\"\">all you may view</option>");
    for t in all {
        let _ = write!(
            b,
            "<option{}>{}</option>",
            if s.template.as_ref() == Some(t) {
                " selected"
            } else {
                ""
            },
            escape(t)
        );
    }
    let _ = write!(
        b,
        "</select></label><label>Days <input name=\"days\" type=\"number\" min=\"1\" \
         max=\"{MAX_DAYS}\" value=\"{days}\"></label><button type=\"submit\">Show</button></form>"
    );
    let _ = write!(
        b,
        "<p>{} from {} to {} (hours and days in UTC). Dry runs are not counted; rollbacks are \
         their own series.</p>",
        match &s.template {
            Some(t) => format!("Template <strong>{}</strong>", escape(t)),
            None => format!("{} templates you may view", s.templates.len()),
        },
        escape(&s.from),
        escape(&s.to),
    );
    let r = &s.releases;
    let _ = write!(
        b,
        "<table><thead><tr><th></th><th>Count</th><th>Succeeded</th><th>Success rate</th>\
         <th>Mean</th><th>p50</th><th>p95</th></tr></thead><tbody>\
         <tr><th>Releases</th><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\
         <tr><th>Rollbacks</th><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\
         </tbody></table>",
        r.count,
        r.succeeded,
        pct(r.success_rate),
        secs(r.mean_ms),
        secs(r.p50_ms),
        secs(r.p95_ms),
        s.rollbacks.count,
        s.rollbacks.succeeded,
        pct(s.rollbacks.success_rate),
        secs(s.rollbacks.mean_ms),
        secs(s.rollbacks.p50_ms),
        secs(s.rollbacks.p95_ms),
    );
    let _ = write!(
        b,
        "<p>Time to recover: {} incidents, {} recovered, mean {}, longest {}.</p>",
        s.incidents,
        s.recovered,
        secs(s.mttr_ms),
        secs(p.max_time_to_recover_ms)
    );

    // per day
    let labels: Vec<String> = p.by_day.iter().map(|d| d.day[5..].to_owned()).collect();
    let mut table = String::from(
        "<table><thead><tr><th>Day</th><th>Releases</th><th>Succeeded</th><th>Success rate</th>\
         <th>p50</th><th>p95</th></tr></thead><tbody>",
    );
    for d in &p.by_day {
        let _ = write!(
            table,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&d.day),
            d.count,
            d.succeeded,
            pct(d.success_rate),
            secs(d.p50_ms),
            secs(d.p95_ms)
        );
    }
    table.push_str("</tbody></table>");
    let count = BarChart {
        title: "Releases per day".into(),
        labels: labels.clone(),
        values: p.by_day.iter().map(|d| d.count as f64).collect(),
        y_label: "releases".into(),
    };
    figure(&mut b, &count.svg("chart-count"), &table);
    let rate = LineChart {
        title: "Success rate per day".into(),
        x_labels: labels.clone(),
        y_label: "success rate (%)".into(),
        series: vec![Series {
            label: "success rate".into(),
            values: p
                .by_day
                .iter()
                .map(|d| d.success_rate.map(|r| r * 100.0))
                .collect(),
        }],
        y_max: Some(100.0),
    };
    figure(&mut b, &rate.svg("chart-rate"), &table);
    let max = p
        .by_day
        .iter()
        .filter_map(|d| d.p95_ms.max(d.p50_ms))
        .max()
        .unwrap_or(0);
    let (unit, div) = duration_unit(max);
    let dur = |v: Option<u64>| v.map(|m| m as f64 / div);
    let durations = LineChart {
        title: "Release duration per day".into(),
        x_labels: labels,
        y_label: format!("duration ({unit})"),
        series: vec![
            Series {
                label: "p50".into(),
                values: p.by_day.iter().map(|d| dur(d.p50_ms)).collect(),
            },
            Series {
                label: "p95".into(),
                values: p.by_day.iter().map(|d| dur(d.p95_ms)).collect(),
            },
        ],
        y_max: None,
    };
    figure(&mut b, &durations.svg("chart-duration"), &table);

    // hour × weekday
    let mut cells = Vec::with_capacity(168);
    let mut table = String::from("<table><thead><tr><th>UTC</th>");
    for h in 0..24 {
        let _ = write!(table, "<th>{h:02}</th>");
    }
    table.push_str("</tr></thead><tbody>");
    for (wd, name) in WEEKDAYS.iter().enumerate() {
        let _ = write!(table, "<tr><th>{name}</th>");
        for h in 0..24 {
            let r = p
                .by_hour_of_week
                .iter()
                .find(|r| r.weekday == wd && r.hour == h);
            match r {
                Some(r) => {
                    let share = r.succeeded as f64 / r.count as f64;
                    cells.push((
                        Some(share),
                        format!(
                            "{name} {h:02}:00 UTC: {} releases, {} succeeded ({:.0} %)",
                            r.count,
                            r.succeeded,
                            share * 100.0
                        ),
                    ));
                    let _ = write!(table, "<td>{:.0} % of {}</td>", share * 100.0, r.count);
                }
                None => {
                    cells.push((None, format!("{name} {h:02}:00 UTC: no releases")));
                    table.push_str("<td>–</td>");
                }
            }
        }
        table.push_str("</tr>");
    }
    table.push_str("</tbody></table>");
    let heat = Heatmap {
        title: "Success by hour of day and weekday (UTC)".into(),
        rows: WEEKDAYS.iter().map(|d| (*d).to_owned()).collect(),
        columns: (0..24).map(|h| format!("{h:02}")).collect(),
        cells,
    };
    figure(&mut b, &heat.svg("chart-heatmap"), &table);

    // failing stages and hosts
    let mut table = String::from(
        "<table><thead><tr><th>Stage</th><th>Failed host·stages</th></tr></thead><tbody>",
    );
    for (st, n) in &s.failing_stages {
        let _ = write!(table, "<tr><td>{}</td><td>{n}</td></tr>", escape(st));
    }
    if s.failing_stages.is_empty() {
        table.push_str("<tr><td colspan=\"2\">No failures.</td></tr>");
    }
    table.push_str("</tbody></table>");
    let stages = BarChart {
        title: "Failures by stage".into(),
        labels: s.failing_stages.iter().map(|(st, _)| st.clone()).collect(),
        values: s.failing_stages.iter().map(|(_, n)| *n as f64).collect(),
        y_label: "failed host·stages".into(),
    };
    figure(&mut b, &stages.svg("chart-stages"), &table);
    b.push_str(
        "<h2>Failing hosts</h2><table><thead><tr><th>Host</th><th>Failed stages</th>\
         </tr></thead><tbody>",
    );
    for (h, n) in &s.failing_hosts {
        let _ = write!(b, "<tr><td>{}</td><td>{n}</td></tr>", escape(h));
    }
    if s.failing_hosts.is_empty() {
        b.push_str("<tr><td colspan=\"2\">No failing host.</td></tr>");
    }
    b.push_str("</tbody></table>");
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_has_every_day() {
        let t = |s: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
        let d = days(t(86_400 * 10 + 5), t(86_400 * 13 + 1), &[]);
        let names: Vec<&str> = d.iter().map(|d| d.day.as_str()).collect();
        assert_eq!(
            names,
            ["1970-01-11", "1970-01-12", "1970-01-13", "1970-01-14"]
        );
        assert!(d.iter().all(|d| d.count == 0 && d.success_rate.is_none()));
        assert_eq!(duration_unit(90_000), ("s", 1000.0));
        assert_eq!(duration_unit(600_000).0, "min");
        assert_eq!(duration_unit(10 * 3_600_000).0, "h");
    }
}
