//! Statistics over a time window, per template or overall.
//!
//! Every query counts *finished, non-dry-run* deployments that *started* inside the window
//! (`from <= start < to`). Releases and rollback requests are two separate series: the success rate,
//! durations, hours, weekdays and time to recover count releases only (`pushguide deploy`);
//! [`Stats::rollbacks`] counts rollback requests (`pushguide rollback`).
//!
//! A release succeeded when its outcome is `succeeded`; it failed when its outcome is `failed`,
//! `partially-applied`, `rolled-back`, `rollback-failed` or `interrupted`; `cancelled` is neither (a
//! person stopped it). A rollback request succeeded when its outcome is `rolled-back` (every host went
//! back). Hours and weekdays are those of a fixed UTC offset ([`Window::utc_offset`], default UTC).

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use pushguide_core::{DeploymentOutcome, Stage};
use rusqlite::types::Value;

use crate::error::Error;
use crate::recover::INTERRUPTED;
use crate::store::{to_ms, SqliteStore, StageCode};

/// A time window, optionally restricted to one template.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Window {
    /// Inclusive start.
    pub from: SystemTime,
    /// Exclusive end.
    pub to: SystemTime,
    /// Only this template (`None`: every template).
    pub template: Option<String>,
    /// Only these templates (`None`: every template).
    pub templates: Option<Vec<String>>,
    /// The fixed offset from UTC, in seconds, that hours of day and weekdays are taken in (east
    /// positive: `+02:00` is 7200). Default 0 (UTC).
    pub utc_offset_secs: i32,
}

impl Window {
    /// Every template, `from <= start < to`.
    pub fn new(from: SystemTime, to: SystemTime) -> Self {
        Window {
            from,
            to,
            template: None,
            templates: None,
            utc_offset_secs: 0,
        }
    }

    /// Takes hours of day and weekdays at `seconds` east of UTC (`-5 * 3600 - 1800` for `-05:30`).
    /// Offsets are clamped to ±18 hours. Only [`SqliteStore::by_hour`] and
    /// [`SqliteStore::by_weekday`] depend on it.
    pub fn utc_offset(mut self, seconds: i32) -> Self {
        self.utc_offset_secs = seconds.clamp(-18 * 3600, 18 * 3600);
        self
    }

    /// The offset in milliseconds.
    pub(crate) fn offset_ms(&self) -> i64 {
        i64::from(self.utc_offset_secs.clamp(-18 * 3600, 18 * 3600)) * 1000
    }

    /// Restricts the window to `template`.
    pub fn template(mut self, template: impl Into<String>) -> Self {
        self.template = Some(template.into());
        self
    }

    /// Restricts the window to these templates (e.g. those a user may view); an empty list matches
    /// nothing. Combines with [`Window::template`].
    pub fn templates<I: IntoIterator<Item = S>, S: Into<String>>(mut self, templates: I) -> Self {
        self.templates = Some(templates.into_iter().map(Into::into).collect());
        self
    }

    /// The SQL condition and its parameters (`?1` from, `?2` to, `?3` template, `?4` the template
    /// list as a JSON array).
    pub(crate) fn filter(&self) -> (String, Vec<Value>) {
        let mut p = vec![
            Value::Integer(to_ms(self.from)),
            Value::Integer(to_ms(self.to)),
        ];
        let mut cond = String::from("started_ms >= ?1 AND started_ms < ?2");
        if let Some(t) = &self.template {
            p.push(Value::Text(t.clone()));
            cond = format!("template = ?{} AND {cond}", p.len());
        }
        if let Some(list) = &self.templates {
            let json = serde_json::to_string(list).unwrap_or_else(|_| "[]".to_owned());
            p.push(Value::Text(json));
            cond = format!(
                "template IN (SELECT value FROM json_each(?{})) AND {cond}",
                p.len()
            );
        }
        (cond, p)
    }
}

/// Count, success rate and durations.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct Summary {
    /// Deployments counted.
    pub count: u64,
    /// Of which succeeded.
    pub succeeded: u64,
    /// `succeeded / count` (`None` when nothing was counted).
    pub success_rate: Option<f64>,
    /// Mean wall time.
    pub mean: Option<Duration>,
    /// Median wall time (nearest rank: the `ceil(0.5 n)`-th shortest).
    pub p50: Option<Duration>,
    /// 95th percentile wall time (nearest rank: the `ceil(0.95 n)`-th shortest).
    pub p95: Option<Duration>,
}

/// Count and successes in one bucket (an hour of day, a weekday).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Rate {
    /// Deployments counted.
    pub count: u64,
    /// Of which succeeded.
    pub succeeded: u64,
}

impl Rate {
    /// `succeeded / count`, `None` for an empty bucket.
    pub fn rate(&self) -> Option<f64> {
        (self.count > 0).then(|| self.succeeded as f64 / self.count as f64)
    }
}

/// Time to recover: from a failed deployment to the next successful one of the same template.
///
/// An *incident* starts at the end of a failed deployment that follows a success (or opens the window)
/// and ends at the end of the template's next successful deployment; further failures in between belong
/// to the same incident.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Recovery {
    /// Incidents that started in the window.
    pub incidents: u64,
    /// Of which recovered (a later success in the window).
    pub recovered: u64,
    /// Mean time to recover over the recovered incidents.
    pub mean: Option<Duration>,
    /// Longest time to recover.
    pub max: Option<Duration>,
}

/// Everything at once.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct Stats {
    /// Releases: count, success rate, durations (rollback requests not included).
    pub summary: Summary,
    /// Rollback requests: count, success rate (every host rolled back), durations.
    pub rollbacks: Summary,
    /// Releases per hour of the start (at [`Window::utc_offset`]), 0 to 23.
    pub by_hour: Vec<Rate>,
    /// Releases per weekday of the start (at [`Window::utc_offset`]), Monday (0) to Sunday (6).
    pub by_weekday: Vec<Rate>,
    /// Hosts by failed host·stages, most first (top 20).
    pub hosts: Vec<(String, u64)>,
    /// Stages by failed host·stages, most first.
    pub stages: Vec<(Stage, u64)>,
    /// Time to recover.
    pub recovery: Recovery,
}

/// Finished, non-dry-run releases.
pub(crate) const COUNTED: &str = "dry_run = 0 AND duration_ms IS NOT NULL AND rollback = 0";
/// Finished, non-dry-run rollback requests.
const ROLLBACKS: &str = "dry_run = 0 AND duration_ms IS NOT NULL AND rollback = 1";

/// Whether a release with outcome `o` counts as failed (besides the store's own `interrupted`);
/// `succeeded` is a success, `cancelled` neither.
fn failed(o: DeploymentOutcome) -> bool {
    match o {
        DeploymentOutcome::Succeeded | DeploymentOutcome::Cancelled => false,
        DeploymentOutcome::Failed
        | DeploymentOutcome::PartiallyApplied
        | DeploymentOutcome::RolledBack
        | DeploymentOutcome::RollbackFailed => true,
    }
}

/// The stored names of the outcomes of failed releases.
fn failed_names() -> impl Iterator<Item = &'static str> {
    DeploymentOutcome::ALL
        .into_iter()
        .filter(|o| failed(*o))
        .map(DeploymentOutcome::as_str)
        .chain([INTERRUPTED])
}

/// Appends `name` to the parameters `p` and returns its placeholder.
pub(crate) fn bind(p: &mut Vec<Value>, name: &str) -> String {
    p.push(Value::Text(name.to_owned()));
    format!("?{}", p.len())
}

fn ms(d: i64) -> Duration {
    Duration::from_millis(d.max(0) as u64)
}

pub(crate) fn nearest_rank(sorted: &[i64], q: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(ms(sorted[rank.clamp(1, sorted.len()) - 1]))
}

impl SqliteStore {
    /// Releases (not rollback requests): count, success rate, mean, p50 and p95 duration.
    pub fn summary(&self, w: &Window) -> Result<Summary, Error> {
        self.summary_of(w, COUNTED, DeploymentOutcome::Succeeded)
    }

    /// Rollback requests: count, success rate (outcome `rolled-back`), mean, p50 and p95 duration.
    pub fn rollback_summary(&self, w: &Window) -> Result<Summary, Error> {
        self.summary_of(w, ROLLBACKS, DeploymentOutcome::RolledBack)
    }

    fn summary_of(
        &self,
        w: &Window,
        counted: &str,
        success: DeploymentOutcome,
    ) -> Result<Summary, Error> {
        let (filter, mut p) = w.filter();
        let success = bind(&mut p, success.as_str());
        let conn = self.conn();
        let err = |e| Error::sqlite(self.path(), "computing the summary", e);
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT duration_ms, outcome = {success} FROM deployments
                 WHERE {filter} AND {counted}"
            ))
            .map_err(err)?;
        let mut rows = stmt.query(rusqlite::params_from_iter(p)).map_err(err)?;
        let mut durations = Vec::new();
        let mut succeeded = 0u64;
        while let Some(r) = rows.next().map_err(err)? {
            durations.push(r.get::<_, i64>(0).map_err(err)?);
            succeeded += u64::from(r.get::<_, bool>(1).map_err(err)?);
        }
        durations.sort_unstable();
        let count = durations.len() as u64;
        let total: i64 = durations.iter().sum();
        Ok(Summary {
            count,
            succeeded,
            success_rate: (count > 0).then(|| succeeded as f64 / count as f64),
            mean: (count > 0).then(|| Duration::from_micros((total.max(0) as u64 * 1000) / count)),
            p50: nearest_rank(&durations, 0.5),
            p95: nearest_rank(&durations, 0.95),
        })
    }

    pub(crate) fn buckets(&self, w: &Window, bucket: &str, n: usize) -> Result<Vec<Rate>, Error> {
        let (filter, mut p) = w.filter();
        let succeeded = bind(&mut p, DeploymentOutcome::Succeeded.as_str());
        let conn = self.conn();
        let err = |e| Error::sqlite(self.path(), "computing success rates", e);
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {bucket} AS b, count(*), sum(outcome = {succeeded}) FROM deployments
                 WHERE {filter} AND {COUNTED} GROUP BY b"
            ))
            .map_err(err)?;
        let mut out = vec![Rate::default(); n];
        let rows = stmt
            .query_map(rusqlite::params_from_iter(p), |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })
            .map_err(err)?;
        for row in rows {
            let (b, count, ok) = row.map_err(err)?;
            if let Some(slot) = usize::try_from(b).ok().and_then(|b| out.get_mut(b)) {
                *slot = Rate {
                    count: count as u64,
                    succeeded: ok as u64,
                };
            }
        }
        Ok(out)
    }

    /// Releases' success rate by hour of day of the start at the window's UTC offset (24 buckets,
    /// hour 0 first).
    pub fn by_hour(&self, w: &Window) -> Result<Vec<Rate>, Error> {
        // the offset is an integer of this crate's making, not text from a user
        let local = format!("(started_ms + {})", w.offset_ms());
        self.buckets(w, &format!("(({local} / 3600000) % 24 + 24) % 24"), 24)
    }

    /// Releases' success rate by weekday of the start at the window's UTC offset (7 buckets, Monday
    /// first; 1970-01-01 was a Thursday).
    pub fn by_weekday(&self, w: &Window) -> Result<Vec<Rate>, Error> {
        let local = format!("(started_ms + {})", w.offset_ms());
        self.buckets(w, &format!("(({local} / 86400000 + 3) % 7 + 7) % 7"), 7)
    }

    /// Hosts ranked by failures (each `HostFailed` event of a non-dry-run deployment counts once),
    /// most first, ties by name; at most `limit`.
    pub fn host_failures(&self, w: &Window, limit: usize) -> Result<Vec<(String, u64)>, Error> {
        let (filter, mut p) = w.filter();
        p.push(Value::Integer(limit as i64));
        let limit_param = p.len();
        let conn = self.conn();
        let err = |e| Error::sqlite(self.path(), "ranking hosts by failures", e);
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT host, count(*) AS n FROM host_results
                 WHERE status = 'failed' AND dry_run = 0 AND {filter}
                 GROUP BY host ORDER BY n DESC, host LIMIT ?{limit_param}"
            ))
            .map_err(err)?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(p), |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
            })
            .and_then(|r| r.collect::<Result<Vec<_>, _>>())
            .map_err(err)?;
        Ok(rows)
    }

    /// Stages ranked by failures (`HostFailed` events), most first, ties in stage order.
    pub fn stage_failures(&self, w: &Window) -> Result<Vec<(Stage, u64)>, Error> {
        let (filter, p) = w.filter();
        let conn = self.conn();
        let err = |e| Error::sqlite(self.path(), "ranking stages by failures", e);
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT stage, count(*) AS n FROM host_results
                 WHERE status = 'failed' AND dry_run = 0 AND {filter}
                 GROUP BY stage ORDER BY n DESC, stage"
            ))
            .map_err(err)?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(p), |r| {
                Ok((r.get::<_, StageCode>(0)?.0, r.get::<_, i64>(1)? as u64))
            })
            .and_then(|r| r.collect::<Result<Vec<_>, _>>())
            .map_err(err)?;
        Ok(rows)
    }

    /// Time to recover per template (see [`Recovery`]), over all templates of the window or one;
    /// releases only (a rollback request neither opens nor closes an incident).
    pub fn time_to_recover(&self, w: &Window) -> Result<Recovery, Error> {
        let (filter, mut p) = w.filter();
        let succeeded = bind(&mut p, DeploymentOutcome::Succeeded.as_str());
        let failed = failed_names()
            .map(|n| bind(&mut p, n))
            .collect::<Vec<_>>()
            .join(", ");
        let conn = self.conn();
        let err = |e| Error::sqlite(self.path(), "computing time to recover", e);
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT template, started_ms + duration_ms, outcome = {succeeded},
                        outcome IN ({failed})
                 FROM deployments INDEXED BY deployments_by_template
                 WHERE {filter} AND {COUNTED} ORDER BY template, started_ms"
            ))
            .map_err(err)?;
        let mut rows = stmt.query(rusqlite::params_from_iter(p)).map_err(err)?;
        // Rows come per template in start order; the end of the failure that opened each open incident.
        let mut open: HashMap<String, i64> = HashMap::new();
        let mut r = Recovery::default();
        let mut total = 0i64;
        let mut max = None;
        while let Some(row) = rows.next().map_err(err)? {
            let ended: i64 = row.get(1).map_err(err)?;
            let ok: bool = row.get(2).map_err(err)?;
            let failed: bool = row.get(3).map_err(err)?;
            if !ok && !failed {
                continue;
            }
            let template = row.get_ref(0).map_err(err)?.as_str().unwrap_or_default();
            match (open.get(template), ok) {
                (None, false) => {
                    r.incidents += 1;
                    open.insert(template.to_owned(), ended);
                }
                (Some(&since), true) => {
                    let ttr = ended - since;
                    r.recovered += 1;
                    total += ttr;
                    max = max.max(Some(ttr));
                    open.remove(template);
                }
                _ => {}
            }
        }
        r.mean = (r.recovered > 0).then(|| ms(total / r.recovered as i64));
        r.max = max.map(ms);
        Ok(r)
    }

    /// Every statistic of the window.
    pub fn stats(&self, w: &Window) -> Result<Stats, Error> {
        Ok(Stats {
            summary: self.summary(w)?,
            rollbacks: self.rollback_summary(w)?,
            by_hour: self.by_hour(w)?,
            by_weekday: self.by_weekday(w)?,
            hosts: self.host_failures(w, 20)?,
            stages: self.stage_failures(w)?,
            recovery: self.time_to_recover(w)?,
        })
    }
}
