//! The journal: every event as JSON in append order, then the final report.
//!
//! Fenced like fleet state, with one difference: a deployment's journal records the fencing token of
//! the lease it started under, and a write is refused ([`Error::Fenced`]) once the template's lease
//! has been taken with a newer token — the deployment was taken over and may no longer speak for
//! itself. A lease that merely expired, with nobody taking it, does not refuse the journal: the
//! deployment then records its own end (`lease lost`), which nobody else would.
//!
//! Every append sends `NOTIFY pushguide_journal` with the deployment's id (delivered at commit), so
//! that every instance's live views of it read the new events ([`PgStore::wait_journal`]).

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use pushguide_core::{Event, EventKind, HistoryStore, Report};

use crate::error::Error;
use crate::notify::JOURNAL_CHANNEL;
use crate::sql::Sql;
use crate::store::PgStore;

/// A recorded deployment.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeploymentRecord {
    /// Deployment id.
    pub id: String,
    /// Template.
    pub template: String,
    /// Version.
    pub version: String,
    /// Acting user.
    pub principal: String,
    /// Whether it was a dry run.
    pub dry_run: bool,
    /// Whether it was a rollback request.
    pub rollback: bool,
    /// Start (the engine's clock).
    pub started: SystemTime,
    /// End, once the report is recorded.
    pub ended: Option<SystemTime>,
    /// Wall time, once the report is recorded.
    pub duration: Option<Duration>,
    /// The outcome (`succeeded`, `failed`, …), once the report is recorded.
    pub outcome: Option<String>,
    /// Why it stopped early.
    pub reason: Option<String>,
    /// Events recorded.
    pub events: u64,
    /// The store instance that recorded its start.
    pub owner: String,
    /// The fencing token of the lease it started under (`None`: a dry run).
    pub lease_token: Option<u64>,
}

fn kind_name(e: &Event) -> Result<(String, String), Error> {
    let json = serde_json::to_value(e).map_err(|err| Error::Corrupt {
        what: "an event to append",
        reason: err.to_string(),
    })?;
    let kind = json
        .get("kind")
        .and_then(|k| k.get("event"))
        .and_then(|k| k.as_str())
        .unwrap_or("unknown")
        .to_owned();
    Ok((kind, json.to_string()))
}

impl PgStore {
    /// Appends `events` in one transaction (see [`HistoryStore::append`]). A write that fails
    /// because the connection broke is retried on a fresh connection for a few seconds; a retry
    /// first checks whether the events are already the journal's last ones (a commit whose answer
    /// was lost) and then records nothing twice.
    pub async fn append_events(&self, events: &[Event]) -> Result<(), Error> {
        if events.is_empty() {
            return Ok(());
        }
        crate::retry::on_fresh_connection("appending events", |attempt| {
            self.append_once(events, attempt > 0)
        })
        .await
    }

    pub(crate) async fn append_once(&self, events: &[Event], retried: bool) -> Result<(), Error> {
        let mut client = self.client("appending events").await?;
        let tx = client
            .transaction()
            .await
            .map_err(|e| self.db("appending events", e))?;
        let mut start = 0;
        while start < events.len() {
            let id = &events[start].deployment;
            let end = events[start..]
                .iter()
                .position(|e| e.deployment != *id)
                .map_or(events.len(), |n| start + n);
            self.append_run(&tx, &events[start..end], retried).await?;
            start = end;
        }
        // every instance's live views of these deployments wake at commit (payload: the id only)
        let mut ids: Vec<&str> = events.iter().map(|e| &*e.deployment).collect();
        ids.sort_unstable();
        ids.dedup();
        tx.exec(
            "SELECT pg_notify($1, d) FROM unnest($2::text[]) AS d",
            &[&JOURNAL_CHANNEL, &ids],
        )
        .await
        .map_err(|e| self.db("notifying the journal's readers", e))?;
        tx.commit()
            .await
            .map_err(|e| self.db("committing appended events", e))
    }

    /// Consecutive events of one deployment.
    async fn append_run(
        &self,
        tx: &impl GenericClient,
        events: &[Event],
        retried: bool,
    ) -> Result<(), Error> {
        let Some(first) = events.first() else {
            return Ok(());
        };
        let id: &str = &first.deployment;
        if let EventKind::DeploymentStarted {
            template,
            version,
            user,
            dry_run,
            rollback,
        } = &first.kind
        {
            tx.execute(
                "INSERT INTO deployments (id, template, version, principal, dry_run, rollback,
                   started_at, owner, last_event_at, lease_token)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $7,
                   (SELECT token FROM leases WHERE template = $2 AND holder = $1 AND NOT $5))
                 ON CONFLICT (id) DO NOTHING",
                &[
                    &id,
                    template,
                    version,
                    user,
                    dry_run,
                    rollback,
                    &first.at,
                    &self.inner.owner,
                ],
            )
            .await
            .map_err(|e| self.db("recording a deployment start", e))?;
        }
        let row = tx
            .query_opt(
                "SELECT template, events, lease_token FROM deployments WHERE id = $1 FOR UPDATE",
                &[&id],
            )
            .await
            .map_err(|e| self.db("reading a deployment", e))?
            .ok_or_else(|| Error::UnknownDeployment {
                deployment: id.to_owned(),
            })?;
        let template: String = row.get(0);
        let seen: i64 = row.get(1);
        if let Some(token) = row.get::<_, Option<i64>>(2) {
            self.check_journal_fence(tx, id, &template, token as u64)
                .await?;
        }
        let mut seqs = Vec::with_capacity(events.len());
        let mut ats = Vec::with_capacity(events.len());
        let mut kinds = Vec::with_capacity(events.len());
        let mut jsons = Vec::with_capacity(events.len());
        for (i, e) in events.iter().enumerate() {
            let (kind, json) = kind_name(e)?;
            seqs.push(seen + 1 + i as i64);
            ats.push(e.at);
            kinds.push(kind);
            jsons.push(json);
        }
        if retried && self.already_appended(tx, id, seen, &jsons).await? {
            tracing::info!(
                deployment = id,
                events = events.len(),
                "events already recorded by the attempt whose commit answer was lost"
            );
            return Ok(());
        }
        tx.execute(
            "INSERT INTO events (deployment, seq, at, kind, event)
             SELECT $1, s, a, k, e::jsonb
             FROM unnest($2::bigint[], $3::timestamptz[], $4::text[], $5::text[]) AS t(s, a, k, e)",
            &[&id, &seqs, &ats, &kinds, &jsons],
        )
        .await
        .map_err(|e| self.db("appending events", e))?;
        let last = events.iter().map(|e| e.at).max().unwrap_or(first.at);
        tx.execute(
            "UPDATE deployments SET events = events + $2,
               last_event_at = greatest(last_event_at, $3) WHERE id = $1",
            &[&id, &(events.len() as i64), &last],
        )
        .await
        .map_err(|e| self.db("updating a deployment", e))?;
        for e in events {
            match &e.kind {
                EventKind::Prepared { hosts, batches, .. } => {
                    tx.execute(
                        "UPDATE deployments SET hosts = $2, batches = $3 WHERE id = $1",
                        &[&id, &(*hosts as i64), &(*batches as i64)],
                    )
                    .await
                    .map_err(|e| self.db("updating a deployment", e))?;
                }
                EventKind::DeploymentFinished { outcome } => {
                    tx.execute(
                        "UPDATE deployments SET finished_at = $2, finished_outcome = $3
                         WHERE id = $1",
                        &[&id, &e.at, &outcome.as_str()],
                    )
                    .await
                    .map_err(|e| self.db("updating a deployment", e))?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Whether the last `jsons.len()` events of deployment `id` (of `seen`) are `jsons`, in order:
    /// a retried append whose first attempt committed.
    async fn already_appended(
        &self,
        tx: &impl GenericClient,
        id: &str,
        seen: i64,
        jsons: &[String],
    ) -> Result<bool, Error> {
        let n = jsons.len() as i64;
        if seen < n {
            return Ok(false);
        }
        let seqs: Vec<i64> = (seen - n + 1..=seen).collect();
        let row = tx
            .query_one(
                "SELECT count(*) FROM unnest($2::bigint[], $3::text[]) AS t(s, j)
                 JOIN events e ON e.deployment = $1 AND e.seq = t.s AND e.event = t.j::jsonb",
                &[&id, &seqs, &jsons],
            )
            .await
            .map_err(|e| self.db("checking for events already recorded", e))?;
        Ok(row.get::<_, i64>(0) == n)
    }

    /// Refuses the journal of a deployment whose template's lease was taken with a newer token.
    async fn check_journal_fence(
        &self,
        tx: &impl GenericClient,
        id: &str,
        template: &str,
        token: u64,
    ) -> Result<(), Error> {
        let row = tx
            .query_opt(
                "SELECT holder, token, expires_at > now() FROM leases WHERE template = $1 FOR SHARE",
                &[&template],
            )
            .await
            .map_err(|e| self.db("checking the fencing token", e))?;
        let Some(row) = row else { return Ok(()) };
        let current = row.get::<_, i64>(1) as u64;
        if current == token {
            return Ok(());
        }
        let holder: Option<String> = row.get(0);
        let live: bool = row.get(2);
        Err(Error::Fenced {
            template: template.to_owned(),
            holder: id.to_owned(),
            token,
            current: holder.filter(|_| live).map(|h| (h, current)),
        })
    }

    /// Records the end of a deployment (see [`HistoryStore::finish`]), fenced like the journal;
    /// retried like [`PgStore::append_events`] when the connection breaks (recording the same
    /// report again changes nothing).
    pub async fn finish_report(&self, report: &Report) -> Result<(), Error> {
        crate::retry::on_fresh_connection("recording a report", |_| self.finish_once(report)).await
    }

    async fn finish_once(&self, report: &Report) -> Result<(), Error> {
        let json = serde_json::to_string(report).map_err(|e| Error::Corrupt {
            what: "a report to record",
            reason: e.to_string(),
        })?;
        let mut client = self.client("recording a report").await?;
        let tx = client
            .transaction()
            .await
            .map_err(|e| self.db("recording a report", e))?;
        let ended = report.started + report.duration;
        tx.execute(
            "INSERT INTO deployments (id, template, version, principal, dry_run, started_at,
               owner, last_event_at, hosts, batches)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (id) DO NOTHING",
            &[
                &report.id,
                &report.template,
                &report.version,
                &report.user,
                &report.dry_run,
                &report.started,
                &self.inner.owner,
                &ended,
                &(report.batches.iter().map(Vec::len).sum::<usize>() as i64),
                &(report.batches.len() as i64),
            ],
        )
        .await
        .map_err(|e| self.db("recording a report", e))?;
        let row = tx
            .query_one(
                "SELECT template, lease_token FROM deployments WHERE id = $1 FOR UPDATE",
                &[&report.id],
            )
            .await
            .map_err(|e| self.db("recording a report", e))?;
        if let Some(token) = row.get::<_, Option<i64>>(1) {
            self.check_journal_fence(&tx, &report.id, &row.get::<_, String>(0), token as u64)
                .await?;
        }
        tx.execute(
            "UPDATE deployments SET ended_at = $2, duration_ms = $3, outcome = $4, reason = $5,
               started_at = $6 WHERE id = $1",
            &[
                &report.id,
                &ended,
                &(report.duration.as_millis() as i64),
                &report.outcome.as_str(),
                &report.reason,
                &report.started,
            ],
        )
        .await
        .map_err(|e| self.db("recording a report", e))?;
        tx.execute(
            "INSERT INTO reports (deployment, report) VALUES ($1, $2::text::jsonb)
             ON CONFLICT (deployment) DO UPDATE SET report = excluded.report",
            &[&report.id, &json],
        )
        .await
        .map_err(|e| self.db("recording a report", e))?;
        tx.commit()
            .await
            .map_err(|e| self.db("committing a report", e))
    }

    /// The deployment `id`, if recorded.
    pub async fn deployment(&self, id: &str) -> Result<Option<DeploymentRecord>, Error> {
        let client = self.client("reading a deployment").await?;
        let row = client
            .query_opt(
                "SELECT id, template, version, principal, dry_run, rollback, started_at, ended_at,
                        duration_ms, outcome, reason, events, owner, lease_token
                 FROM deployments WHERE id = $1",
                &[&id],
            )
            .await
            .map_err(|e| self.db("reading a deployment", e))?;
        Ok(row.map(|r| DeploymentRecord {
            id: r.get(0),
            template: r.get(1),
            version: r.get(2),
            principal: r.get(3),
            dry_run: r.get(4),
            rollback: r.get(5),
            started: r.get(6),
            ended: r.get(7),
            duration: r
                .get::<_, Option<i64>>(8)
                .map(|ms| Duration::from_millis(ms.max(0) as u64)),
            outcome: r.get(9),
            reason: r.get(10),
            events: r.get::<_, i64>(11) as u64,
            owner: r.get(12),
            lease_token: r.get::<_, Option<i64>>(13).map(|t| t as u64),
        }))
    }

    /// The journal of deployment `id`, in the order it was appended.
    pub async fn events(&self, id: &str) -> Result<Vec<Event>, Error> {
        let client = self.client("reading a journal").await?;
        let rows = client
            .query(
                "SELECT event FROM events WHERE deployment = $1 ORDER BY seq",
                &[&id],
            )
            .await
            .map_err(|e| self.db("reading a journal", e))?;
        rows.into_iter()
            .map(|r| {
                serde_json::from_value(r.get(0)).map_err(|e| Error::Corrupt {
                    what: "a journal event",
                    reason: e.to_string(),
                })
            })
            .collect()
    }

    /// The final report of deployment `id`, once recorded.
    pub async fn report(&self, id: &str) -> Result<Option<Report>, Error> {
        let client = self.client("reading a report").await?;
        let row = client
            .query_opt("SELECT report FROM reports WHERE deployment = $1", &[&id])
            .await
            .map_err(|e| self.db("reading a report", e))?;
        row.map(|r| {
            serde_json::from_value(r.get(0)).map_err(|e| Error::Corrupt {
                what: "a report",
                reason: e.to_string(),
            })
        })
        .transpose()
    }

    /// Ids of the newest `limit` deployments of `template`, newest first.
    pub async fn deployments(&self, template: &str, limit: usize) -> Result<Vec<String>, Error> {
        let client = self.client("listing deployments").await?;
        let rows = client
            .query(
                "SELECT id FROM deployments WHERE template = $1
                 ORDER BY started_at DESC, id DESC LIMIT $2",
                &[&template, &(limit as i64)],
            )
            .await
            .map_err(|e| self.db("listing deployments", e))?;
        Ok(rows.into_iter().map(|r| r.get(0)).collect())
    }
}

#[async_trait]
impl HistoryStore for PgStore {
    async fn append(&self, events: &[Event]) -> Result<(), pushguide_core::Error> {
        self.append_events(events)
            .await
            .map_err(|e| e.into_core("appending to the journal"))
    }

    async fn finish(&self, report: &Report) -> Result<(), pushguide_core::Error> {
        self.finish_report(report)
            .await
            .map_err(|e| e.into_core("recording a report"))
    }
}
