//! Browsing the history (the web service's history and statistics pages): a page of deployments
//! found by key, newest first, and the statistics the CLI does not print (per day, per hour of the
//! week).
//!
//! A history page is found by its key — the start and id of the row next to it — never by an
//! offset, so page 10,000 costs what page 1 costs: the `deployments_history` indexes (schema 11)
//! hold start, id, template, user and outcome, and the query walks one of them from the key.

use std::time::{Duration, SystemTime};

use pushguide_core::DeploymentOutcome;
use rusqlite::types::Value;

use crate::error::Error;
use crate::query::DeploymentRecord;
use crate::stats::{bind, nearest_rank, Rate, Window, COUNTED};
use crate::store::{from_ms, to_ms, SqliteStore};

/// Up to this many templates a page is merged from one index walk per template (each finds its
/// rows at once); with more, one walk over all deployments by start filters them.
const MERGE_MAX: usize = 32;

/// Where a history row sits in the order of the history (newest first): its start, then its id.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HistoryKey {
    /// The start, in milliseconds since the Unix epoch.
    pub started_ms: i64,
    /// The deployment id (orders deployments that started in the same millisecond).
    pub id: String,
}

impl HistoryKey {
    /// The key of `r`.
    pub fn of(r: &DeploymentRecord) -> Self {
        HistoryKey {
            started_ms: to_ms(r.started),
            id: r.id.clone(),
        }
    }
}

/// Which page of the history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PageAt {
    /// The newest rows.
    Newest,
    /// The rows just older than the key (the next page).
    Older(HistoryKey),
    /// The rows just newer than the key (the previous page).
    Newer(HistoryKey),
}

/// The outcome a history row must have.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutcomeFilter {
    /// Still running (no outcome recorded).
    Running,
    /// This recorded outcome (`succeeded`, `failed`, …, `interrupted`).
    Is(String),
}

/// What a history page shows.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HistoryQuery {
    /// The templates whose deployments may be listed (those the user may view; narrowed to one
    /// to filter by template). Empty: nothing is listed.
    pub templates: Vec<String>,
    /// Only deployments by this user.
    pub user: Option<String>,
    /// Only deployments with this outcome.
    pub outcome: Option<OutcomeFilter>,
    /// Only deployments that started at or after this time.
    pub from: Option<SystemTime>,
    /// Only deployments that started before this time.
    pub to: Option<SystemTime>,
    /// The page.
    pub page: PageAt,
    /// Rows per page (at least 1).
    pub limit: usize,
}

impl HistoryQuery {
    /// The newest `limit` deployments of `templates`, unfiltered.
    pub fn new<I: IntoIterator<Item = S>, S: Into<String>>(templates: I, limit: usize) -> Self {
        HistoryQuery {
            templates: templates.into_iter().map(Into::into).collect(),
            user: None,
            outcome: None,
            from: None,
            to: None,
            page: PageAt::Newest,
            limit,
        }
    }
}

/// A page of the history, newest first.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HistoryPage {
    /// The rows, newest first.
    pub rows: Vec<DeploymentRecord>,
    /// Whether newer rows match the query (a previous page exists).
    pub newer: bool,
    /// Whether older rows match the query (a next page exists).
    pub older: bool,
}

/// One day of releases (the same series as [`crate::Summary`]: finished, non-dry-run releases).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DayStats {
    /// The day's first instant at the window's UTC offset.
    pub day: SystemTime,
    /// Releases that started that day.
    pub count: u64,
    /// Of which succeeded.
    pub succeeded: u64,
    /// Median wall time (nearest rank).
    pub p50: Option<Duration>,
    /// 95th percentile wall time (nearest rank).
    pub p95: Option<Duration>,
}

const DAY_MS: i64 = 86_400_000;

/// The columns of a [`DeploymentRecord`].
const RECORD: &str = "id, template, version, principal, dry_run, started_ms, ended_ms, duration_ms,
                      outcome, reason, events, rollback";

fn record(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeploymentRecord> {
    Ok(DeploymentRecord {
        id: r.get(0)?,
        template: r.get(1)?,
        version: r.get(2)?,
        principal: r.get(3)?,
        dry_run: r.get(4)?,
        started: from_ms(r.get(5)?),
        ended: r.get::<_, Option<i64>>(6)?.map(from_ms),
        duration: r
            .get::<_, Option<i64>>(7)?
            .map(|d| Duration::from_millis(d.max(0) as u64)),
        outcome: r.get(8)?,
        reason: r.get(9)?,
        events: r.get::<_, i64>(10)? as u64,
        rollback: r.get(11)?,
    })
}

/// The direction an index is walked from a key.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Walk {
    /// Newest first, from before the key (or from the newest).
    Older,
    /// Oldest first, from after the key.
    Newer,
}

/// The templates of one index walk.
#[derive(Clone, Copy)]
enum Templates<'a> {
    /// One template (its own index).
    One(&'a str),
    /// A JSON list of templates (the index by start).
    List(&'a str),
}

/// The SQL and parameters of one index walk of the history.
fn page_sql(
    q: &HistoryQuery,
    walk: Walk,
    key: Option<&HistoryKey>,
    n: usize,
    templates: Templates<'_>,
) -> (String, Vec<Value>) {
    let mut p: Vec<Value> = Vec::new();
    let mut cond: Vec<String> = Vec::new();
    let index = match templates {
        Templates::One(t) => {
            cond.push(format!("template = {}", bind(&mut p, t)));
            "deployments_history_by_template"
        }
        Templates::List(json) => {
            cond.push(format!(
                "template IN (SELECT value FROM json_each({}))",
                bind(&mut p, json)
            ));
            "deployments_history"
        }
    };
    if let Some(u) = &q.user {
        cond.push(format!("principal = {}", bind(&mut p, u)));
    }
    match &q.outcome {
        None => {}
        Some(OutcomeFilter::Running) => cond.push("outcome IS NULL".into()),
        Some(OutcomeFilter::Is(o)) => cond.push(format!("outcome = {}", bind(&mut p, o))),
    }
    let int = |p: &mut Vec<Value>, v: i64| {
        p.push(Value::Integer(v));
        format!("?{}", p.len())
    };
    if let Some(from) = q.from {
        cond.push(format!("started_ms >= {}", int(&mut p, to_ms(from))));
    }
    if let Some(to) = q.to {
        cond.push(format!("started_ms < {}", int(&mut p, to_ms(to))));
    }
    if let Some(k) = key {
        let ms = int(&mut p, k.started_ms);
        let id = bind(&mut p, &k.id);
        let op = if walk == Walk::Older { "<" } else { ">" };
        cond.push(format!("(started_ms, id) {op} ({ms}, {id})"));
    }
    let order = if walk == Walk::Older { "DESC" } else { "ASC" };
    let limit = int(&mut p, i64::try_from(n).unwrap_or(i64::MAX));
    let sql = format!(
        "SELECT {RECORD} FROM deployments INDEXED BY {index} WHERE {}
         ORDER BY started_ms {order}, id {order} LIMIT {limit}",
        cond.join(" AND ")
    );
    (sql, p)
}

impl SqliteStore {
    /// A page of the history (see [`HistoryQuery`]), newest first.
    pub fn history_page(&self, q: &HistoryQuery) -> Result<HistoryPage, Error> {
        let limit = q.limit.max(1);
        let (walk, key) = match &q.page {
            PageAt::Newest => (Walk::Older, None),
            PageAt::Older(k) => (Walk::Older, Some(k)),
            PageAt::Newer(k) => (Walk::Newer, Some(k)),
        };
        let mut rows = self.walk(q, walk, key, limit + 1)?;
        let more = rows.len() > limit;
        rows.truncate(limit);
        // whether rows lie on the other side of the key
        let back = match key {
            None => false,
            Some(k) => {
                let other = if walk == Walk::Older {
                    Walk::Newer
                } else {
                    Walk::Older
                };
                let mut edge = k.clone();
                if let Some(first) = rows.first() {
                    edge = HistoryKey::of(first);
                }
                !self.walk(q, other, Some(&edge), 1)?.is_empty()
            }
        };
        let (newer, older) = match walk {
            Walk::Older => (back, more),
            Walk::Newer => {
                rows.reverse();
                (more, back)
            }
        };
        Ok(HistoryPage { rows, newer, older })
    }

    /// Up to `n` rows matching `q` from `key` in direction `walk`, in that direction's order.
    fn walk(
        &self,
        q: &HistoryQuery,
        walk: Walk,
        key: Option<&HistoryKey>,
        n: usize,
    ) -> Result<Vec<DeploymentRecord>, Error> {
        if q.templates.is_empty() {
            return Ok(Vec::new());
        }
        if q.templates.len() > MERGE_MAX {
            let json = serde_json::to_string(&q.templates).unwrap_or_else(|_| "[]".to_owned());
            return self.walk_index(q, walk, key, n, Templates::List(&json));
        }
        let mut all = Vec::new();
        for t in &q.templates {
            all.extend(self.walk_index(q, walk, key, n, Templates::One(t))?);
        }
        all.sort_by_cached_key(HistoryKey::of);
        if walk == Walk::Older {
            all.reverse();
        }
        all.truncate(n);
        Ok(all)
    }

    /// One index walk: over all deployments by start with the templates as a JSON list, or over
    /// one template's.
    fn walk_index(
        &self,
        q: &HistoryQuery,
        walk: Walk,
        key: Option<&HistoryKey>,
        n: usize,
        templates: Templates<'_>,
    ) -> Result<Vec<DeploymentRecord>, Error> {
        let (sql, p) = page_sql(q, walk, key, n, templates);
        let conn = self.conn();
        let err = |e| Error::sqlite(self.path(), "reading a page of the history", e);
        let mut stmt = conn.prepare_cached(&sql).map_err(err)?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(p), record)
            .and_then(|r| r.collect::<Result<Vec<_>, _>>())
            .map_err(err)?;
        Ok(rows)
    }

    /// The plan SQLite chooses for each index walk of the history page of `q` (the `detail` of
    /// `EXPLAIN QUERY PLAN`, one string per step), to check that a page is read through an index.
    pub fn history_plan(&self, q: &HistoryQuery) -> Result<Vec<String>, Error> {
        let (walk, key) = match &q.page {
            PageAt::Newest => (Walk::Older, None),
            PageAt::Older(k) => (Walk::Older, Some(k)),
            PageAt::Newer(k) => (Walk::Newer, Some(k)),
        };
        let json;
        let templates = if q.templates.len() > MERGE_MAX {
            json = serde_json::to_string(&q.templates).unwrap_or_else(|_| "[]".to_owned());
            Templates::List(&json)
        } else {
            Templates::One(q.templates.first().map(String::as_str).unwrap_or_default())
        };
        let (sql, p) = page_sql(q, walk, key, q.limit.max(1) + 1, templates);
        let conn = self.conn();
        let err = |e| Error::sqlite(self.path(), "explaining the history query", e);
        let mut stmt = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .map_err(err)?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(p), |r| r.get::<_, String>(3))
            .and_then(|r| r.collect::<Result<Vec<_>, _>>())
            .map_err(err)?;
        Ok(rows)
    }

    /// Releases per day of the window (days at the window's UTC offset; only days with releases),
    /// oldest first: count, successes, p50 and p95 wall time.
    pub fn daily(&self, w: &Window) -> Result<Vec<DayStats>, Error> {
        let (filter, mut p) = w.filter();
        let succeeded = bind(&mut p, DeploymentOutcome::Succeeded.as_str());
        let conn = self.conn();
        let err = |e| Error::sqlite(self.path(), "computing the daily series", e);
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT started_ms, duration_ms, outcome = {succeeded} FROM deployments
                 WHERE {filter} AND {COUNTED} ORDER BY started_ms"
            ))
            .map_err(err)?;
        let mut rows = stmt.query(rusqlite::params_from_iter(p)).map_err(err)?;
        let offset = w.offset_ms();
        let mut days: Vec<(i64, Vec<i64>, u64)> = Vec::new();
        while let Some(r) = rows.next().map_err(err)? {
            let started: i64 = r.get(0).map_err(err)?;
            let duration: i64 = r.get(1).map_err(err)?;
            let ok: bool = r.get(2).map_err(err)?;
            let day = (started + offset).div_euclid(DAY_MS);
            match days.last_mut() {
                Some((d, durations, n)) if *d == day => {
                    durations.push(duration);
                    *n += u64::from(ok);
                }
                _ => days.push((day, vec![duration], u64::from(ok))),
            }
        }
        Ok(days
            .into_iter()
            .map(|(day, mut durations, succeeded)| {
                durations.sort_unstable();
                DayStats {
                    day: from_ms(day * DAY_MS - offset),
                    count: durations.len() as u64,
                    succeeded,
                    p50: nearest_rank(&durations, 0.5),
                    p95: nearest_rank(&durations, 0.95),
                }
            })
            .collect())
    }

    /// Releases' success by hour of the week at the window's UTC offset: 168 buckets, index
    /// `weekday * 24 + hour` (Monday 0 to Sunday 6, hour 0 to 23).
    pub fn by_hour_of_week(&self, w: &Window) -> Result<Vec<Rate>, Error> {
        let local = format!("(started_ms + {})", w.offset_ms());
        self.buckets(
            w,
            &format!(
                "((({local} / {DAY_MS} + 3) % 7 + 7) % 7) * 24 + (({local} / 3600000) % 24 + 24) % 24"
            ),
            168,
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// `n` deployments of each template, three starting in each millisecond (ties on start), ids
    /// not in start order; every fifth by `bob`, every third failed, the last one running.
    fn store_with(templates: &[&str], n: usize) -> SqliteStore {
        let s = SqliteStore::open_in_memory().unwrap();
        {
            let mut conn = s.conn();
            let tx = conn.transaction().unwrap();
            for (ti, t) in templates.iter().enumerate() {
                for i in 0..n {
                    let started = 1_000_000 + (i as i64 / 3) * 1000;
                    let (outcome, ended) = if i + 1 == n {
                        (None, None)
                    } else if i % 3 == 0 {
                        (Some("failed"), Some(started + 500))
                    } else {
                        (Some("succeeded"), Some(started + 500))
                    };
                    tx.execute(
                        "INSERT INTO deployments (id, template, version, principal, dry_run,
                            started_ms, ended_ms, duration_ms, outcome, owner, last_event_ms)
                         VALUES (?1, ?2, '1.0', ?3, 0, ?4, ?5, ?6, ?7, 'o', ?4)",
                        rusqlite::params![
                            format!("{t}-{:04}-{ti}", (i * 7919) % 10_000),
                            t,
                            if i % 5 == 0 { "bob" } else { "alice" },
                            started,
                            ended,
                            ended.map(|e| e - started),
                            outcome
                        ],
                    )
                    .unwrap();
                }
            }
            tx.commit().unwrap();
        }
        s
    }

    fn ids(rows: &[DeploymentRecord]) -> Vec<String> {
        rows.iter().map(|r| r.id.clone()).collect()
    }

    /// Every row of `q`, page by page to the oldest and back to the newest.
    fn walk_all(s: &SqliteStore, q: &HistoryQuery) -> (Vec<String>, Vec<String>) {
        let mut q = q.clone();
        q.page = PageAt::Newest;
        let mut forward = Vec::new();
        let mut pages = Vec::new();
        loop {
            let p = s.history_page(&q).unwrap();
            assert_eq!(p.newer, !forward.is_empty(), "{q:?}");
            forward.extend(ids(&p.rows));
            pages.push(p.clone());
            if !p.older {
                break;
            }
            q.page = PageAt::Older(HistoryKey::of(p.rows.last().unwrap()));
        }
        // back from the last page
        let mut backward: Vec<String> = ids(&pages.last().unwrap().rows);
        let mut first = HistoryKey::of(pages.last().unwrap().rows.first().unwrap());
        loop {
            q.page = PageAt::Newer(first);
            let p = s.history_page(&q).unwrap();
            assert!(p.older);
            let mut v = ids(&p.rows);
            v.extend(backward);
            backward = v;
            if !p.newer {
                break;
            }
            first = HistoryKey::of(p.rows.first().unwrap());
        }
        (forward, backward)
    }

    #[test]
    fn pages_by_key_have_no_duplicates_and_no_gaps_across_equal_starts() {
        let s = store_with(&["shop", "billing"], 50);
        // what one query sorted in full gives
        let conn_rows: Vec<String> = {
            let conn = s.conn();
            let mut stmt = conn
                .prepare("SELECT id FROM deployments ORDER BY started_ms DESC, id DESC")
                .unwrap();
            let v = stmt
                .query_map([], |r| r.get(0))
                .unwrap()
                .collect::<Result<Vec<String>, _>>()
                .unwrap();
            v
        };
        for limit in [1, 2, 3, 7, 100] {
            let q = HistoryQuery::new(["shop", "billing"], limit);
            let (forward, backward) = walk_all(&s, &q);
            assert_eq!(forward, conn_rows, "limit {limit}");
            assert_eq!(backward, conn_rows, "limit {limit} backwards");
        }
        // over the merge limit: one walk of the index by start
        let many: Vec<String> = (0..40)
            .map(|i| format!("t{i}"))
            .chain(["shop".into(), "billing".into()])
            .collect();
        let (forward, _) = walk_all(&s, &HistoryQuery::new(many, 4));
        assert_eq!(forward, conn_rows);
    }

    #[test]
    fn filters_narrow_the_pages() {
        let s = store_with(&["shop", "billing", "secret"], 30);
        let mut q = HistoryQuery::new(["shop", "billing"], 4);
        q.user = Some("bob".into());
        q.outcome = Some(OutcomeFilter::Is("failed".into()));
        let (rows, _) = walk_all(&s, &q);
        // i % 5 == 0 and i % 3 == 0 and not the last: i in {0, 15}, per template
        assert_eq!(rows.len(), 4, "{rows:?}");
        assert!(rows.iter().all(|r| !r.starts_with("secret")));
        for id in &rows {
            let r = s.deployment(id).unwrap().unwrap();
            assert_eq!(
                (r.principal.as_str(), r.outcome.as_deref()),
                ("bob", Some("failed"))
            );
        }
        let mut q = HistoryQuery::new(["shop"], 10);
        q.outcome = Some(OutcomeFilter::Running);
        let p = s.history_page(&q).unwrap();
        assert_eq!(p.rows.len(), 1);
        assert_eq!(p.rows[0].outcome, None);
        // a date range: starts at 1,000,000 + k·1000 ms, from inclusive, to exclusive
        let mut q = HistoryQuery::new(["shop"], 100);
        q.from = Some(from_ms(1_002_000));
        q.to = Some(from_ms(1_004_000));
        let p = s.history_page(&q).unwrap();
        assert_eq!(p.rows.len(), 6);
        assert!(p.rows.iter().all(|r| {
            let ms = to_ms(r.started);
            (1_002_000..1_004_000).contains(&ms)
        }));
        assert!(!p.newer && !p.older);
        // nothing viewable, nothing listed
        let p = s
            .history_page(&HistoryQuery::new(Vec::<String>::new(), 10))
            .unwrap();
        assert!(p.rows.is_empty() && !p.older && !p.newer);
    }

    /// Every page is read through a history index, walked in order: no sort of the matching rows
    /// (`TEMP B-TREE`), for the first page and from a key, in both directions and with filters.
    #[test]
    fn history_pages_are_read_through_an_index_without_sorting() {
        let s = store_with(&["shop", "billing"], 30);
        let key = HistoryKey {
            started_ms: 1_005_000,
            id: "shop-0001-0".into(),
        };
        let many: Vec<String> = (0..40).map(|i| format!("t{i}")).collect();
        for templates in [vec!["shop".to_owned()], many] {
            for page in [
                PageAt::Newest,
                PageAt::Older(key.clone()),
                PageAt::Newer(key.clone()),
            ] {
                for user in [None, Some("bob".to_owned())] {
                    let mut q = HistoryQuery::new(templates.clone(), 50);
                    q.page = page.clone();
                    q.user = user;
                    q.outcome = Some(OutcomeFilter::Is("failed".into()));
                    let plan = s.history_plan(&q).unwrap().join(" | ");
                    assert!(plan.contains("USING INDEX deployments_history"), "{plan}");
                    assert!(!plan.contains("TEMP B-TREE"), "{plan}");
                    if page != PageAt::Newest {
                        assert!(
                            plan.contains("(started_ms,id)"),
                            "the key bounds the walk: {plan}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn daily_series_and_hour_of_week() {
        let s = SqliteStore::open_in_memory().unwrap();
        // 2026-11-30 is a Monday; three releases that day (one failed), one on Tuesday at 23:30
        let monday = 1_795_996_800_000_i64; // 2026-11-30T00:00:00Z
        {
            let conn = s.conn();
            for (id, start, dur, outcome) in [
                ("a", monday + 3_600_000, 1000, "succeeded"),
                ("b", monday + 7_200_000, 3000, "failed"),
                ("c", monday + 7_300_000, 2000, "succeeded"),
                ("d", monday + 86_400_000 + 84_600_000, 5000, "succeeded"),
            ] {
                conn.execute(
                    "INSERT INTO deployments (id, template, version, principal, dry_run,
                        started_ms, ended_ms, duration_ms, outcome, owner, last_event_ms)
                     VALUES (?1, 'shop', '1', 'a', 0, ?2, ?2 + ?3, ?3, ?4, 'o', ?2)",
                    rusqlite::params![id, start, dur, outcome],
                )
                .unwrap();
            }
        }
        let w = Window::new(from_ms(monday - 1), from_ms(monday + 7 * 86_400_000));
        let days = s.daily(&w).unwrap();
        assert_eq!(days.len(), 2);
        assert_eq!(days[0].day, from_ms(monday));
        assert_eq!((days[0].count, days[0].succeeded), (3, 2));
        assert_eq!(days[0].p50, Some(Duration::from_millis(2000)));
        assert_eq!(days[0].p95, Some(Duration::from_millis(3000)));
        assert_eq!(days[1].day, from_ms(monday + 86_400_000));
        let week = s.by_hour_of_week(&w).unwrap();
        assert_eq!(week.len(), 168);
        assert_eq!((week[1].count, week[1].succeeded), (1, 1));
        assert_eq!((week[2].count, week[2].succeeded), (2, 1));
        assert_eq!(week[24 + 23].count, 1);
        // at +01:00 Tuesday 23:30 is Wednesday 00:30, and the day boundaries move
        let w = w.utc_offset(3600);
        let week = s.by_hour_of_week(&w).unwrap();
        assert_eq!(week[48].count, 1);
        assert_eq!(week[3].count, 2);
        let days = s.daily(&w).unwrap();
        assert_eq!(days.len(), 2);
        assert_eq!(days[1].day, from_ms(monday + 2 * 86_400_000 - 3_600_000));
    }
}
