//! The JSON shapes of recorded deployments, written once and shared: `pushguide history`, `log`,
//! `watch` and `stats --json` print them (the CLI re-exports them), and the web service's
//! `/api/v1/history`, `/api/v1/deployments/{id}/log` and `/api/v1/stats` answer with them.

use std::collections::BTreeMap;
use std::time::Duration;

use pushguide_store::{DeploymentRecord, RecordStore};
use serde::Serialize;

use crate::outcome::recorded_exit_code;
use crate::status::rfc3339;

/// A duration in whole milliseconds (`u64::MAX` beyond).
pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A recorded deployment (`history`, `show`, `log`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeploymentRow {
    /// Id.
    pub id: String,
    /// Template.
    pub template: String,
    /// `deploy` or `rollback`.
    pub mode: &'static str,
    /// Version (`previous` or the target for rollbacks).
    pub version: String,
    /// Acting user.
    pub user: String,
    /// Dry run.
    pub dry_run: bool,
    /// Start, RFC 3339.
    pub started: String,
    /// End, RFC 3339 (`null` while running).
    pub ended: Option<String>,
    /// Duration in ms (`null` while running).
    pub duration_ms: Option<u64>,
    /// Outcome (`null` while running).
    pub outcome: Option<String>,
    /// Why it stopped early.
    pub reason: Option<String>,
}

impl From<DeploymentRecord> for DeploymentRow {
    fn from(r: DeploymentRecord) -> Self {
        DeploymentRow {
            id: r.id,
            template: r.template,
            mode: if r.rollback { "rollback" } else { "deploy" },
            version: r.version,
            user: r.principal,
            dry_run: r.dry_run,
            started: rfc3339(r.started),
            ended: r.ended.map(rfc3339),
            duration_ms: r.duration.map(millis),
            outcome: r.outcome,
            reason: r.reason,
        }
    }
}

/// One salt request of a deployment (`log`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CallLine {
    /// Batch (`null`: prepare).
    pub batch: Option<usize>,
    /// Stage.
    pub stage: String,
    /// Salt function.
    pub fun: String,
    /// Job id.
    pub jid: Option<String>,
    /// Hosts ok.
    pub ok: u64,
    /// Hosts failed.
    pub failed: u64,
    /// Elapsed ms.
    pub millis: u64,
}

impl From<&pushguide_store::CallRow> for CallLine {
    fn from(c: &pushguide_store::CallRow) -> Self {
        CallLine {
            batch: c.batch,
            stage: c.stage.clone(),
            fun: c.fun.clone(),
            jid: c.jid.clone(),
            ok: c.ok,
            failed: c.failed,
            millis: c.millis,
        }
    }
}

/// One stage of one host (`log`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StageLine {
    /// Batch.
    pub batch: Option<usize>,
    /// Stage.
    pub stage: String,
    /// `ok` or `failed`.
    pub status: String,
    /// ms.
    pub duration_ms: Option<u64>,
    /// Failing salt function.
    pub fun: Option<String>,
    /// Failure reason, or the version rolled back to.
    pub detail: Option<String>,
}

/// One host of a deployment (`log`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostLog {
    /// Host.
    pub host: String,
    /// Status from the journal (`succeeded`, `failed`, `rolled-back`, …), final once the
    /// deployment has an outcome.
    pub status: Option<String>,
    /// Per stage.
    pub stages: Vec<StageLine>,
    /// The report's log lines.
    pub log: Vec<String>,
}

/// `log ID` and the final result of `watch ID`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogResult {
    /// The deployment.
    pub deployment: DeploymentRow,
    /// Exit code of its outcome (`null` while running; 70 for an outcome this pushguide does not
    /// know).
    pub exit_code: Option<u8>,
    /// Why the recorded outcome is not understood (a name this pushguide does not know); left out
    /// of the JSON when the outcome is known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome_error: Option<String>,
    /// Its salt requests.
    pub calls: Vec<CallLine>,
    /// Per host.
    pub hosts: Vec<HostLog>,
}

impl LogResult {
    /// The log of the recorded deployment `rec`: its salt requests, and per host (by name) its
    /// stages and log lines, as the store holds them.
    pub async fn read(
        store: &dyn RecordStore,
        rec: DeploymentRecord,
    ) -> Result<Self, pushguide_store::Error> {
        let id = rec.id.clone();
        let rollback = rec.rollback;
        let calls = store.calls(&id).await?.iter().map(CallLine::from).collect();
        let mut by_host: BTreeMap<String, Vec<StageLine>> = BTreeMap::new();
        // hosts that failed before any batch (prepare, staging) have no batch stage rows
        for r in store.host_results(&id).await? {
            if r.batch.is_none() && r.status == "failed" {
                by_host.entry(r.host).or_default().push(StageLine {
                    batch: None,
                    stage: r.failed_stage.unwrap_or_default(),
                    status: r.status,
                    duration_ms: None,
                    fun: r.fun,
                    detail: r.failure,
                });
            }
        }
        for r in store.host_stage_results(&id).await? {
            by_host.entry(r.host).or_default().push(StageLine {
                batch: r.batch,
                stage: r.stage,
                status: r.status,
                duration_ms: r.duration.map(millis),
                fun: r.fun,
                detail: r.detail,
            });
        }
        let mut hosts = Vec::new();
        for (host, stages) in by_host {
            hosts.push(HostLog {
                status: store.host_status(&id, &host).await?,
                log: store.host_log(&id, &host).await?,
                host,
                stages,
            });
        }
        let (exit_code, outcome_error) = match rec.outcome.as_deref() {
            None => (None, None),
            Some(o) => {
                let (code, unknown) = recorded_exit_code(o, rollback);
                if let Some(e) = &unknown {
                    tracing::warn!(deployment = %id, error = %e, "unknown recorded outcome");
                }
                (Some(code), unknown.map(|e| e.to_string()))
            }
        };
        Ok(LogResult {
            deployment: rec.into(),
            exit_code,
            outcome_error,
            calls,
            hosts,
        })
    }
}

/// Deployments per hour/weekday.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RateRow {
    /// Hour (0–23) or weekday (0 = Monday), at the offset `tz`.
    pub at: usize,
    /// Deployments.
    pub count: u64,
    /// Of which succeeded.
    pub succeeded: u64,
}

impl RateRow {
    /// The non-empty buckets of `rates`, each with its index.
    pub fn non_empty(rates: &[pushguide_store::Rate]) -> Vec<RateRow> {
        rates
            .iter()
            .enumerate()
            .filter(|(_, r)| r.count > 0)
            .map(|(at, r)| RateRow {
                at,
                count: r.count,
                succeeded: r.succeeded,
            })
            .collect()
    }
}

/// Count, success rate and durations of one series (`stats`: releases, rollbacks).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeriesRow {
    /// Counted (dry runs excluded).
    pub count: u64,
    /// Of which succeeded (for rollbacks: every host rolled back).
    pub succeeded: u64,
    /// succeeded / count.
    pub success_rate: Option<f64>,
    /// Mean duration ms.
    pub mean_ms: Option<u64>,
    /// Median duration ms.
    pub p50_ms: Option<u64>,
    /// 95th percentile ms.
    pub p95_ms: Option<u64>,
}

impl From<&pushguide_store::Summary> for SeriesRow {
    fn from(s: &pushguide_store::Summary) -> Self {
        SeriesRow {
            count: s.count,
            succeeded: s.succeeded,
            success_rate: s.success_rate,
            mean_ms: s.mean.map(millis),
            p50_ms: s.p50.map(millis),
            p95_ms: s.p95.map(millis),
        }
    }
}

/// `stats`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatsResult {
    /// Template (`null`: every template the user may view).
    pub template: Option<String>,
    /// The templates counted (those the user may view).
    pub templates: Vec<String>,
    /// Window start.
    pub from: String,
    /// Window end.
    pub to: String,
    /// The offset from UTC of `by_hour` and `by_weekday` (`UTC`, `+02:00`).
    pub tz: String,
    /// Releases (dry runs and rollbacks excluded): count, success rate and durations, as fields
    /// of the result itself in JSON (`count`, `succeeded`, `success_rate`, `mean_ms`, …).
    #[serde(flatten)]
    pub releases: SeriesRow,
    /// Rollback requests (`pushguide rollback`): their own count, success rate and durations.
    pub rollbacks: SeriesRow,
    /// Releases per hour of the start at `tz` (only hours with releases).
    pub by_hour: Vec<RateRow>,
    /// Releases per weekday at `tz` (only days with releases).
    pub by_weekday: Vec<RateRow>,
    /// Hosts by failed stages, most first.
    pub failing_hosts: Vec<(String, u64)>,
    /// Stages by failures, most first.
    pub failing_stages: Vec<(String, u64)>,
    /// Incidents in the window.
    pub incidents: u64,
    /// Of which recovered.
    pub recovered: u64,
    /// Mean time to recover, ms.
    pub mttr_ms: Option<u64>,
}

impl StatsResult {
    /// The result of `stats` over `w` as `s` holds it; `template` is the one asked for (if any),
    /// `templates` those counted, `tz` the offset's name.
    pub fn new(
        template: Option<String>,
        templates: Vec<String>,
        w: &pushguide_store::Window,
        tz: String,
        s: pushguide_store::Stats,
    ) -> Self {
        StatsResult {
            template,
            templates,
            from: rfc3339(w.from),
            to: rfc3339(w.to),
            tz,
            releases: SeriesRow::from(&s.summary),
            rollbacks: SeriesRow::from(&s.rollbacks),
            by_hour: RateRow::non_empty(&s.by_hour),
            by_weekday: RateRow::non_empty(&s.by_weekday),
            failing_hosts: s.hosts,
            failing_stages: s
                .stages
                .into_iter()
                .map(|(st, n)| (st.as_str().to_owned(), n))
                .collect(),
            incidents: s.recovery.incidents,
            recovered: s.recovery.recovered,
            mttr_ms: s.recovery.mean.map(millis),
        }
    }
}
