//! Takeover records on PostgreSQL: what an instance did with a dead instance's interrupted
//! deployment (the template's `takeover` policy), recorded exactly once per deployment together
//! with the publish request it queued — the semantics of `pushguide-store`'s takeovers.
//!
//! [`PgStore::take_over`] runs in one transaction: it locks the interrupted deployment's row
//! (`FOR UPDATE`), inserts the takeover row (`ON CONFLICT (deployment) DO NOTHING`: of two
//! instances taking the same deployment over, the second finds the first's row and stops), queues
//! the request as [`TAKEOVER_USER`] (with `NOTIFY`, delivered at commit) unless a newer deployment
//! or a pending request of the template came first (then it is recorded as `mark` with the
//! reason), and appends the audit entry.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pushguide_store::{InterruptedDeployment, Takeover, TakeoverRequest, TAKEOVER_USER};

use crate::error::Error;
use crate::recover::INTERRUPTED;
use crate::sql::Sql;
use crate::store::PgStore;

const SELECT: &str = "SELECT t.deployment, t.policy, t.request, q.state, q.deployment, t.note,
                             t.by_owner, t.at
                      FROM takeovers t LEFT JOIN publish_requests q ON q.id = t.request";

fn row(r: &tokio_postgres::Row) -> Takeover {
    let mut t = Takeover::new(
        r.get::<_, String>(0),
        r.get::<_, String>(1),
        r.get::<_, String>(6),
        r.get::<_, SystemTime>(7),
    );
    t.request = r.get(2);
    t.request_state = r.get(3);
    t.request_deployment = r.get(4);
    t.note = r.get(5);
    t
}

/// Now, in whole milliseconds (as the audit log and the SQLite store keep times).
fn now_ms() -> (SystemTime, i64) {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    (UNIX_EPOCH + Duration::from_millis(ms.unsigned_abs()), ms)
}

impl PgStore {
    /// Interrupted deployments no instance has taken over yet, oldest first: those recovery just
    /// marked, and those whose taker died between marking and [`PgStore::take_over`]. Only the
    /// newest deployment of its template qualifies: once another deployment of the template
    /// started, an older interrupted one is left as marked.
    pub async fn untaken_interrupted(&self) -> Result<Vec<InterruptedDeployment>, Error> {
        let during = "listing interrupted deployments to take over";
        let client = self.client(during).await?;
        let ids: Vec<String> = client
            .rows(
                "SELECT d.id FROM deployments d
                 WHERE d.outcome = $1
                   AND NOT EXISTS (SELECT 1 FROM takeovers t WHERE t.deployment = d.id)
                   AND NOT EXISTS (SELECT 1 FROM deployments e WHERE e.template = d.template
                                   AND e.id != d.id AND e.started_ms >= d.started_ms)
                 ORDER BY d.started_ms, d.id COLLATE \"C\"",
                &[&INTERRUPTED],
            )
            .await
            .map_err(|e| self.db(during, e))?
            .into_iter()
            .map(|r| r.get(0))
            .collect();
        drop(client);
        let mut out = Vec::with_capacity(ids.len());
        for id in &ids {
            if let Some(d) = self.interrupted_one(id).await? {
                out.push(d);
            }
        }
        Ok(out)
    }

    /// Records the takeover of an interrupted deployment, exactly once (see the module docs):
    /// `None` when another instance recorded it first, or when the deployment is not
    /// `interrupted`. A rollback or resume is recorded as `mark` (with a note, nothing queued)
    /// when another deployment of the template started or another request of it is queued or
    /// running. Retried on a fresh connection when the connection breaks; a retry finds the
    /// takeover of an attempt whose answer was lost (by its key) instead of reporting it lost.
    pub async fn take_over(&self, t: &TakeoverRequest) -> Result<Option<Takeover>, Error> {
        let key = self.write_key();
        let won = crate::retry::on_fresh_connection("recording a takeover", |attempt| {
            self.take_over_once(t, &key, attempt > 0)
        })
        .await?;
        if !won {
            return Ok(None);
        }
        self.takeover(&t.deployment).await
    }

    /// One attempt of [`PgStore::take_over`] under `key`; whether this instance recorded it.
    async fn take_over_once(
        &self,
        t: &TakeoverRequest,
        key: &str,
        retried: bool,
    ) -> Result<bool, Error> {
        let during = "recording a takeover";
        let mut client = self.client(during).await?;
        if retried {
            let mine = client
                .opt(
                    "SELECT 1 FROM takeovers WHERE deployment = $1 AND write_key = $2",
                    &[&t.deployment, &key],
                )
                .await
                .map_err(|e| self.db(during, e))?;
            if mine.is_some() {
                tracing::info!(deployment = %t.deployment,
                    "takeover already recorded by the attempt whose answer was lost");
                return Ok(true);
            }
        }
        let tx = client.transaction().await.map_err(|e| self.db(during, e))?;
        let Some(started) = tx
            .opt(
                "SELECT started_ms FROM deployments WHERE id = $1 AND outcome = $2 FOR UPDATE",
                &[&t.deployment, &INTERRUPTED],
            )
            .await
            .map_err(|e| self.db(during, e))?
            .map(|r| r.get::<_, i64>(0))
        else {
            return Ok(false);
        };
        let (at, at_ms) = now_ms();
        let inserted = tx
            .opt(
                "INSERT INTO takeovers (deployment, policy, request, note, by_owner, at, write_key)
                 VALUES ($1, $2, NULL, $3, $4, $5, $6)
                 ON CONFLICT (deployment) DO NOTHING RETURNING deployment",
                &[
                    &t.deployment,
                    &t.policy,
                    &t.summary,
                    &self.inner.owner,
                    &at,
                    &key,
                ],
            )
            .await
            .map_err(|e| self.db(during, e))?;
        if inserted.is_none() {
            // another instance took it over first
            return Ok(false);
        }
        let mut policy = t.policy.clone();
        let mut note = t.summary.clone();
        let mut request_id: Option<i64> = None;
        if let Some(request) = &t.request {
            let newer: Option<String> = tx
                .opt(
                    "SELECT id FROM deployments WHERE template = $1 AND id != $2
                       AND started_ms >= $3 LIMIT 1",
                    &[&t.template, &t.deployment, &started],
                )
                .await
                .map_err(|e| self.db(during, e))?
                .map(|r| r.get(0));
            let pending: Option<i64> = tx
                .opt(
                    "SELECT id FROM publish_requests WHERE template = $1
                       AND state IN ('queued', 'running')
                       AND (deployment IS NULL OR deployment != $2) LIMIT 1",
                    &[&t.template, &t.deployment],
                )
                .await
                .map_err(|e| self.db(during, e))?
                .map(|r| r.get(0));
            if let Some(newer) = newer {
                note = format!(
                    "{} not queued: deployment {newer} of the template started since",
                    t.policy
                );
                policy = "mark".into();
            } else if let Some(pending) = pending {
                note = format!(
                    "{} not queued: request {pending} of the template came first",
                    t.policy
                );
                policy = "mark".into();
            } else {
                let id: i64 = tx
                    .one(
                        "WITH q AS (
                           INSERT INTO publish_requests (template, requested_by, groups, request,
                                                         state, queued_at, enqueue_key)
                           VALUES ($1, $2, $3, $4, 'queued', now(), $6) RETURNING id)
                         SELECT id, pg_notify($5, $1) FROM q",
                        &[
                            &t.template,
                            &TAKEOVER_USER,
                            &t.groups,
                            request,
                            &self.inner.channels.publish,
                            &key,
                        ],
                    )
                    .await
                    .map_err(|e| self.db(during, e))?
                    .get(0);
                request_id = Some(id);
            }
        }
        tx.exec(
            "UPDATE takeovers SET policy = $2, request = $3, note = $4 WHERE deployment = $1",
            &[&t.deployment, &policy, &request_id, &note],
        )
        .await
        .map_err(|e| self.db(during, e))?;
        let detail = match request_id {
            Some(id) => format!("{policy}: request {id}: {note}"),
            None => format!("{policy}: {note}"),
        };
        tx.exec(
            "INSERT INTO audit (at_ms, user_name, address, action, target, detail)
             VALUES ($1, $2, NULL, 'takeover', $3, $4)",
            &[&at_ms, &TAKEOVER_USER, &t.deployment, &detail],
        )
        .await
        .map_err(|e| self.db(during, e))?;
        tx.commit().await.map_err(|e| self.db(during, e))?;
        tracing::info!(deployment = %t.deployment, %policy, request = ?request_id,
            "interrupted deployment taken over");
        Ok(true)
    }

    /// The takeover recorded for deployment `id`, with its request's state and deployment.
    pub async fn takeover(&self, id: &str) -> Result<Option<Takeover>, Error> {
        let during = "reading a takeover";
        let client = self.client(during).await?;
        let found = client
            .opt(&format!("{SELECT} WHERE t.deployment = $1"), &[&id])
            .await
            .map_err(|e| self.db(during, e))?;
        Ok(found.as_ref().map(row))
    }

    /// The takeover that queued publish request `request`, if one did.
    pub async fn takeover_by_request(&self, request: i64) -> Result<Option<Takeover>, Error> {
        let during = "reading a takeover";
        let client = self.client(during).await?;
        let found = client
            .opt(&format!("{SELECT} WHERE t.request = $1"), &[&request])
            .await
            .map_err(|e| self.db(during, e))?;
        Ok(found.as_ref().map(row))
    }
}

#[cfg(test)]
#[path = "takeover_retry_tests.rs"]
mod retry_tests;
