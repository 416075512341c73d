//! The service's queue of publish and rollback requests, shared by every instance: the API of
//! `pushguide-store`'s queue, on PostgreSQL.
//!
//! A request is `queued` until a worker of some instance claims it (`running`), then `done`,
//! `failed` (with the reason), `cancelled` (withdrawn while queued) or `interrupted` (the instance
//! running it died). A template's requests run strictly one at a time, in the order queued: the
//! claim only considers each template's oldest queued request, and only while none of that
//! template's requests runs; workers claim with `FOR UPDATE SKIP LOCKED`, so they never wait on
//! each other's candidates; and a partial unique index (one `running` row per template) refuses
//! any claim that would still overlap.
//!
//! Queueing, finishing, withdrawing and interrupting a request send `NOTIFY pushguide_publish`
//! (delivered at commit); the store's one listening connection ([`PgStore::listen_publishes`],
//! `PublishQueue::wait_for_publishes`) wakes idle workers with it, and their poll interval is the
//! backstop for a missed notification. Every write (queue, claim, deployment, end, withdrawal) is
//! retried on a fresh connection when the connection breaks, and applied once: the instance
//! generates a key per write, which finds the result of an attempt whose answer was lost. Writes
//! about a running request (its deployment, its end) are fenced by the claiming instance: another
//! instance's write is refused with [`Error::NotClaimed`].

use crate::sql::Sql;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use crate::error::Error;
use crate::store::PgStore;

/// The channel of queue notifications (the payload is the template).
pub const PUBLISH_CHANNEL: &str = "pushguide_publish";

/// A queued (or claimed, or ended) publish request: the type of the web service's store
/// (`pushguide_store`), so that the same value comes back from either backend.
pub use pushguide_store::QueuedPublish;

const COLUMNS: &str = "id, template, requested_by, groups, request, state, queued_at, started_at, \
                       ended_at, deployment, error, worker";

pub(crate) fn row(r: &tokio_postgres::Row) -> QueuedPublish {
    let mut q = QueuedPublish::new(r.get(0), r.get::<_, String>(1), r.get(6));
    q.user = r.get(2);
    q.groups = r.get(3);
    q.request = r.get(4);
    q.state = r.get(5);
    q.started = r.get(7);
    q.ended = r.get(8);
    q.deployment = r.get(9);
    q.error = r.get(10);
    q.worker = r.get(11);
    q
}

impl PgStore {
    /// Queues a request of `user` (with `groups`) for `template`; returns its id. Notifies idle
    /// workers at commit. Retried on a fresh connection when the connection breaks; the request is
    /// queued once (its key, generated here, finds the row of an attempt whose answer was lost).
    pub async fn enqueue_publish(
        &self,
        template: &str,
        user: &str,
        groups: &[String],
        request: &str,
    ) -> Result<i64, Error> {
        let key = self.write_key();
        crate::retry::on_fresh_connection("queueing a publish request", |_| {
            self.enqueue_once(template, user, groups, request, &key)
        })
        .await
    }

    /// One attempt of [`PgStore::enqueue_publish`] under `key`.
    pub(crate) async fn enqueue_once(
        &self,
        template: &str,
        user: &str,
        groups: &[String],
        request: &str,
        key: &str,
    ) -> Result<i64, Error> {
        let client = self.client("queueing a publish request").await?;
        let row = client
            .opt(
                "WITH q AS (
                   INSERT INTO publish_requests (template, requested_by, groups, request, state,
                                                 queued_at, enqueue_key)
                   VALUES ($1, $2, $3, $4, 'queued', now(), $6)
                   ON CONFLICT (enqueue_key) DO NOTHING RETURNING id)
                 SELECT id, pg_notify($5, $1) FROM q",
                &[
                    &template,
                    &user,
                    &groups,
                    &request,
                    &self.inner.channels.publish,
                    &key,
                ],
            )
            .await
            .map_err(|e| self.db("queueing a publish request", e))?;
        if let Some(row) = row {
            return Ok(row.get(0));
        }
        // queued by an attempt whose answer was lost
        let row = client
            .one(
                "SELECT id FROM publish_requests WHERE enqueue_key = $1",
                &[&key],
            )
            .await
            .map_err(|e| self.db("queueing a publish request", e))?;
        tracing::info!(
            request = row.get::<_, i64>(0),
            "publish request already queued by the attempt whose answer was lost"
        );
        Ok(row.get(0))
    }

    /// Claims the oldest request that may run now (its template's oldest queued one, while none of
    /// that template's requests runs) for this instance: it becomes `running`. `None` when nothing
    /// may run now. Retried on a fresh connection when the connection breaks, under one claim key
    /// generated here: a retry returns the request an attempt whose answer was lost claimed (and
    /// waits for an attempt still in flight), so it never claims two nor loses one.
    pub async fn claim_publish(&self) -> Result<Option<QueuedPublish>, Error> {
        let key = self.write_key();
        crate::retry::on_fresh_connection("claiming a publish request", |attempt| {
            self.claim_once(&key, attempt > 0)
        })
        .await
    }

    /// One attempt of [`PgStore::claim_publish`] under `key`; `retried`: look for the claim of an
    /// earlier attempt first.
    pub(crate) async fn claim_once(
        &self,
        key: &str,
        retried: bool,
    ) -> Result<Option<QueuedPublish>, Error> {
        let client = self.client("claiming a publish request").await?;
        let claimed = format!("SELECT {COLUMNS} FROM publish_requests WHERE claim_key = $1");
        if retried {
            if let Some(found) = client
                .opt(&claimed, &[&key])
                .await
                .map_err(|e| self.db("claiming a publish request", e))?
            {
                tracing::info!(
                    request = found.get::<_, i64>(0),
                    "publish request already claimed by the attempt whose answer was lost"
                );
                return Ok(Some(row(&found)));
            }
        }
        let sql = format!(
            "WITH next AS (
               SELECT q.id FROM publish_requests q
               WHERE q.state = 'queued'
                 AND NOT EXISTS (SELECT 1 FROM publish_requests r
                                 WHERE r.template = q.template AND r.state = 'running')
                 AND NOT EXISTS (SELECT 1 FROM publish_requests e
                                 WHERE e.template = q.template AND e.state = 'queued'
                                   AND e.id < q.id)
               ORDER BY q.id
               LIMIT 1
               FOR UPDATE SKIP LOCKED)
             UPDATE publish_requests p SET state = 'running', started_at = now(), worker = $1,
               claim_key = $2
             FROM next WHERE p.id = next.id AND p.state = 'queued'
             RETURNING {}",
            COLUMNS
                .split(", ")
                .map(|c| format!("p.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        // a claim racing another one for the same template trips the one-running index: nothing
        // may run for that template now, so ask again (other templates may be free)
        for _ in 0..5 {
            match client.opt(&sql, &[&self.inner.owner, &key]).await {
                Ok(found) => return Ok(found.as_ref().map(row)),
                Err(e)
                    if e.as_db_error().and_then(|d| d.constraint())
                        == Some("publish_requests_by_claim_key") =>
                {
                    // an earlier attempt under this key committed meanwhile: that is the claim
                    let found = client
                        .opt(&claimed, &[&key])
                        .await
                        .map_err(|e| self.db("claiming a publish request", e))?;
                    return Ok(found.as_ref().map(row));
                }
                Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) => {
                    tracing::debug!("a publish claim raced another for the same template");
                }
                Err(e) => return Err(self.db("claiming a publish request", e)),
            }
        }
        Ok(None)
    }

    /// Records the deployment a running request started; [`Error::NotClaimed`] unless this
    /// instance runs it. Retried on a fresh connection when the connection breaks (writing the
    /// same deployment again changes nothing).
    pub async fn publish_started(&self, id: i64, deployment: &str) -> Result<(), Error> {
        crate::retry::on_fresh_connection("recording a publish request's deployment", |_| {
            self.started_once(id, deployment)
        })
        .await
    }

    async fn started_once(&self, id: i64, deployment: &str) -> Result<(), Error> {
        let client = self
            .client("recording a publish request's deployment")
            .await?;
        let n = client
            .exec(
                "UPDATE publish_requests SET deployment = $2
                 WHERE id = $1 AND state = 'running' AND worker = $3",
                &[&id, &deployment, &self.inner.owner],
            )
            .await
            .map_err(|e| self.db("recording a publish request's deployment", e))?;
        if n == 0 {
            return Err(self.not_claimed(id).await);
        }
        Ok(())
    }

    /// Ends a running request of this instance: `done`, or `failed` with `error`;
    /// [`Error::NotClaimed`] unless this instance runs it. Notifies idle workers (the template's
    /// next request may run). Retried on a fresh connection when the connection breaks; an attempt
    /// whose answer was lost is recognised by its key (the retry then succeeds, not
    /// `NotClaimed`).
    pub async fn finish_publish(&self, id: i64, error: Option<&str>) -> Result<(), Error> {
        let key = self.write_key();
        crate::retry::on_fresh_connection("ending a publish request", |_| {
            self.finish_publish_once(id, error, &key)
        })
        .await
    }

    /// One attempt of [`PgStore::finish_publish`] under `key`.
    pub(crate) async fn finish_publish_once(
        &self,
        id: i64,
        error: Option<&str>,
        key: &str,
    ) -> Result<(), Error> {
        let state = if error.is_some() { "failed" } else { "done" };
        let client = self.client("ending a publish request").await?;
        let rows = client
            .rows(
                "WITH d AS (
                   UPDATE publish_requests SET state = $2, ended_at = now(), error = $3,
                     end_key = $6
                   WHERE id = $1 AND state = 'running' AND worker = $5 RETURNING template)
                 SELECT pg_notify($4, template) FROM d",
                &[
                    &id,
                    &state,
                    &error,
                    &self.inner.channels.publish,
                    &self.inner.owner,
                    &key,
                ],
            )
            .await
            .map_err(|e| self.db("ending a publish request", e))?;
        if rows.is_empty() && !self.ended_by(&client, id, key).await? {
            return Err(self.not_claimed(id).await);
        }
        Ok(())
    }

    /// Whether request `id` was ended (finished or withdrawn) by the write under `key`.
    async fn ended_by(
        &self,
        client: &crate::conn::Conn,
        id: i64,
        key: &str,
    ) -> Result<bool, Error> {
        let found = client
            .opt(
                "SELECT 1 FROM publish_requests WHERE id = $1 AND end_key = $2",
                &[&id, &key],
            )
            .await
            .map_err(|e| self.db("reading a publish request", e))?;
        if found.is_some() {
            tracing::info!(
                request = id,
                "publish request already ended by the attempt whose answer was lost"
            );
        }
        Ok(found.is_some())
    }

    async fn not_claimed(&self, id: i64) -> Error {
        let found = self.publish_request(id).await.ok().flatten();
        Error::NotClaimed {
            id,
            state: found.as_ref().map(|q| q.state.clone()),
            worker: found.and_then(|q| q.worker),
        }
    }

    /// Withdraws a request that is still queued; `false` when it is not (any more). Retried on a
    /// fresh connection when the connection breaks; an attempt whose answer was lost is recognised
    /// by its key (the retry answers `true`).
    pub async fn cancel_publish(&self, id: i64) -> Result<bool, Error> {
        let key = self.write_key();
        crate::retry::on_fresh_connection("withdrawing a publish request", |_| {
            self.cancel_once(id, &key)
        })
        .await
    }

    /// One attempt of [`PgStore::cancel_publish`] under `key`.
    pub(crate) async fn cancel_once(&self, id: i64, key: &str) -> Result<bool, Error> {
        let client = self.client("withdrawing a publish request").await?;
        let rows = client
            .rows(
                "WITH c AS (
                   UPDATE publish_requests SET state = 'cancelled', ended_at = now(), end_key = $3
                   WHERE id = $1 AND state = 'queued' RETURNING template)
                 SELECT pg_notify($2, template) FROM c",
                &[&id, &self.inner.channels.publish, &key],
            )
            .await
            .map_err(|e| self.db("withdrawing a publish request", e))?;
        Ok(!rows.is_empty() || self.ended_by(&client, id, key).await?)
    }

    /// A key no other write of any instance uses: this instance's id and a counter.
    pub(crate) fn write_key(&self) -> String {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        format!(
            "{}#{}",
            self.inner.owner,
            SEQ.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// The request `id`.
    pub async fn publish_request(&self, id: i64) -> Result<Option<QueuedPublish>, Error> {
        let client = self.client("reading a publish request").await?;
        let found = client
            .opt(
                &format!("SELECT {COLUMNS} FROM publish_requests WHERE id = $1"),
                &[&id],
            )
            .await
            .map_err(|e| self.db("reading a publish request", e))?;
        Ok(found.as_ref().map(row))
    }

    /// The requests queued or running (of `template` only, when given), oldest first.
    pub async fn publish_queue(&self, template: Option<&str>) -> Result<Vec<QueuedPublish>, Error> {
        let client = self.client("reading the publish queue").await?;
        let rows = client
            .rows(
                &format!(
                    "SELECT {COLUMNS} FROM publish_requests
                     WHERE state IN ('queued', 'running') AND ($1::text IS NULL OR template = $1)
                     ORDER BY id"
                ),
                &[&template],
            )
            .await
            .map_err(|e| self.db("reading the publish queue", e))?;
        Ok(rows.iter().map(row).collect())
    }

    /// Requests left `running` by an instance that is gone (its record is missing or its heartbeat
    /// is older than its TTL, on the database clock): they become `interrupted`, with why. Returns
    /// them. This instance's own requests are never touched.
    pub async fn interrupt_dead_publishes(&self) -> Result<Vec<QueuedPublish>, Error> {
        let client = self.client("finding interrupted publish requests").await?;
        let rows = client
            .rows(
                &format!(
                    "WITH dead AS (
                       SELECT q.id FROM publish_requests q
                       LEFT JOIN owners o ON o.owner = q.worker
                       WHERE q.state = 'running' AND q.worker IS DISTINCT FROM $1
                         AND (o.owner IS NULL
                              OR o.heartbeat_at + o.ttl_ms * interval '1 millisecond' <= now())
                         AND NOT EXISTS (SELECT 1 FROM leases l
                                         WHERE l.template = q.template AND l.holder IS NOT NULL
                                           AND l.expires_at > now())
                       FOR UPDATE OF q SKIP LOCKED)
                     UPDATE publish_requests p SET state = 'interrupted', ended_at = now(),
                       error = CASE WHEN p.deployment IS NULL
                         THEN 'the service running it stopped before its deployment started'
                         ELSE 'the service running it stopped while its deployment ran' END
                     FROM dead WHERE p.id = dead.id
                     RETURNING {}",
                    COLUMNS
                        .split(", ")
                        .map(|c| format!("p.{c}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                &[&self.inner.owner],
            )
            .await
            .map_err(|e| self.db("marking interrupted publish requests", e))?;
        let mut out: Vec<QueuedPublish> = rows.iter().map(row).collect();
        out.sort_by_key(|q| q.id);
        if !out.is_empty() {
            // their templates' next requests may run now: wake every instance's idle workers
            let templates: Vec<&str> = out.iter().map(|q| q.template.as_str()).collect();
            client
                .exec(
                    "SELECT pg_notify($1, t) FROM unnest($2::text[]) AS t",
                    &[&self.inner.channels.publish, &templates],
                )
                .await
                .map_err(|e| self.db("notifying idle workers", e))?;
        }
        Ok(out)
    }

    /// The newest requests that ended `failed` or `interrupted` since `since`, newest first.
    pub async fn failed_publishes(
        &self,
        since: SystemTime,
        limit: usize,
    ) -> Result<Vec<QueuedPublish>, Error> {
        let client = self.client("reading failed publish requests").await?;
        let rows = client
            .rows(
                &format!(
                    "SELECT {COLUMNS} FROM publish_requests
                     WHERE state IN ('failed', 'interrupted') AND ended_at >= $1
                     ORDER BY id DESC LIMIT $2"
                ),
                &[&since, &i64::try_from(limit).unwrap_or(i64::MAX)],
            )
            .await
            .map_err(|e| self.db("reading failed publish requests", e))?;
        Ok(rows.iter().map(row).collect())
    }
}
