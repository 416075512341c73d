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
//! Queueing, finishing and withdrawing a request send `NOTIFY pushguide_publish` (delivered at
//! commit); [`PgStore::listen_publishes`] wakes idle workers with it, and their poll interval is the
//! backstop for a missed notification. Writes about a running request (its deployment, its end) are
//! fenced by the claiming instance: another instance's write is refused with
//! [`Error::NotClaimed`].

use crate::sql::Sql;
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use tokio::sync::watch;
use tokio_postgres::AsyncMessage;

use crate::error::Error;
use crate::store::PgStore;

/// The channel of queue notifications (the payload is the template).
pub const PUBLISH_CHANNEL: &str = "pushguide_publish";

/// A queued (or claimed, or ended) publish request.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueuedPublish {
    /// Its id (increasing).
    pub id: i64,
    /// The template.
    pub template: String,
    /// Who asked.
    pub user: String,
    /// The user's groups when they asked.
    pub groups: Vec<String>,
    /// The request, as JSON written by the service.
    pub request: String,
    /// `queued`, `running`, `done`, `failed`, `cancelled` or `interrupted`.
    pub state: String,
    /// When it was queued (database clock).
    pub queued: SystemTime,
    /// When a worker claimed it.
    pub started: Option<SystemTime>,
    /// When it ended.
    pub ended: Option<SystemTime>,
    /// The deployment it started.
    pub deployment: Option<String>,
    /// Why it failed or was interrupted.
    pub error: Option<String>,
    /// The instance ([`PgStore::owner`]) that claimed it.
    pub worker: Option<String>,
}

const COLUMNS: &str = "id, template, requested_by, groups, request, state, queued_at, started_at, \
                       ended_at, deployment, error, worker";

fn row(r: &tokio_postgres::Row) -> QueuedPublish {
    QueuedPublish {
        id: r.get(0),
        template: r.get(1),
        user: r.get(2),
        groups: r.get(3),
        request: r.get(4),
        state: r.get(5),
        queued: r.get(6),
        started: r.get(7),
        ended: r.get(8),
        deployment: r.get(9),
        error: r.get(10),
        worker: r.get(11),
    }
}

impl PgStore {
    /// Queues a request of `user` (with `groups`) for `template`; returns its id. Notifies idle
    /// workers at commit.
    pub async fn enqueue_publish(
        &self,
        template: &str,
        user: &str,
        groups: &[String],
        request: &str,
    ) -> Result<i64, Error> {
        let client = self.client("queueing a publish request").await?;
        let row = client
            .one(
                "WITH q AS (
                   INSERT INTO publish_requests (template, requested_by, groups, request, state,
                                                 queued_at)
                   VALUES ($1, $2, $3, $4, 'queued', now()) RETURNING id)
                 SELECT id, pg_notify($5, $1) FROM q",
                &[&template, &user, &groups, &request, &PUBLISH_CHANNEL],
            )
            .await
            .map_err(|e| self.db("queueing a publish request", e))?;
        Ok(row.get(0))
    }

    /// Claims the oldest request that may run now (its template's oldest queued one, while none of
    /// that template's requests runs) for this instance: it becomes `running`. `None` when nothing
    /// may run now.
    pub async fn claim_publish(&self) -> Result<Option<QueuedPublish>, Error> {
        let client = self.client("claiming a publish request").await?;
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
             UPDATE publish_requests p SET state = 'running', started_at = now(), worker = $1
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
            match client.opt(&sql, &[&self.inner.owner]).await {
                Ok(found) => return Ok(found.as_ref().map(row)),
                Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) => {
                    tracing::debug!("a publish claim raced another for the same template");
                }
                Err(e) => return Err(self.db("claiming a publish request", e)),
            }
        }
        Ok(None)
    }

    /// Records the deployment a running request started; [`Error::NotClaimed`] unless this
    /// instance runs it.
    pub async fn publish_started(&self, id: i64, deployment: &str) -> Result<(), Error> {
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
    /// next request may run).
    pub async fn finish_publish(&self, id: i64, error: Option<&str>) -> Result<(), Error> {
        let state = if error.is_some() { "failed" } else { "done" };
        let client = self.client("ending a publish request").await?;
        let rows = client
            .rows(
                "WITH d AS (
                   UPDATE publish_requests SET state = $2, ended_at = now(), error = $3
                   WHERE id = $1 AND state = 'running' AND worker = $5 RETURNING template)
                 SELECT pg_notify($4, template) FROM d",
                &[&id, &state, &error, &PUBLISH_CHANNEL, &self.inner.owner],
            )
            .await
            .map_err(|e| self.db("ending a publish request", e))?;
        if rows.is_empty() {
            return Err(self.not_claimed(id).await);
        }
        Ok(())
    }

    async fn not_claimed(&self, id: i64) -> Error {
        let found = self.publish_request(id).await.ok().flatten();
        Error::NotClaimed {
            id,
            state: found.as_ref().map(|q| q.state.clone()),
            worker: found.and_then(|q| q.worker),
        }
    }

    /// Withdraws a request that is still queued; `false` when it is not (any more).
    pub async fn cancel_publish(&self, id: i64) -> Result<bool, Error> {
        let client = self.client("withdrawing a publish request").await?;
        let rows = client
            .rows(
                "WITH c AS (
                   UPDATE publish_requests SET state = 'cancelled', ended_at = now()
                   WHERE id = $1 AND state = 'queued' RETURNING template)
                 SELECT pg_notify($2, template) FROM c",
                &[&id, &PUBLISH_CHANNEL],
            )
            .await
            .map_err(|e| self.db("withdrawing a publish request", e))?;
        Ok(!rows.is_empty())
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

    /// Starts listening for queue notifications on a connection of its own (outside the pool: `LISTEN`
    /// is session state, so behind PgBouncer this connection must go to a session-mode pool or to
    /// the server directly). The listener reconnects by itself and ends when every
    /// [`PublishWaiter`] clone is dropped.
    pub async fn listen_publishes(&self) -> Result<PublishWaiter, Error> {
        let (pg, tls) = self.inner.listen.parts();
        // the first connection is made here, so a caller learns at once when it cannot listen
        let (client, conn) = pg
            .connect(tls.clone())
            .await
            .map_err(|e| self.db("connecting the queue listener", e))?;
        let (tx, rx) = watch::channel(0u64);
        let endpoint = self.inner.endpoint.clone();
        tokio::spawn(async move {
            let mut first = Some((client, conn));
            let mut backoff = Duration::from_millis(100);
            loop {
                let (client, conn) = match first.take() {
                    Some(c) => c,
                    None => match pg.connect(tls.clone()).await {
                        Ok(c) => c,
                        Err(e) => {
                            tracing::warn!(%endpoint, error = %e, "queue listener cannot connect; retrying");
                            tokio::select! {
                                _ = tokio::time::sleep(backoff) => {}
                                _ = tx.closed() => return,
                            }
                            backoff = (backoff * 2).min(Duration::from_secs(10));
                            continue;
                        }
                    },
                };
                match listen(client, conn, &tx).await {
                    Ok(true) => return,
                    Ok(false) => {
                        tracing::warn!(%endpoint, "queue listener connection closed; reconnecting");
                    }
                    Err(e) => {
                        tracing::warn!(%endpoint, error = %e, "queue listener connection lost; reconnecting");
                        backoff = Duration::from_millis(100);
                    }
                }
            }
        });
        Ok(PublishWaiter { rx })
    }
}

/// Runs `LISTEN` and counts notifications until every waiter is gone (`Ok(true)`) or the connection
/// ends (`Ok(false)`) or fails. After (re)connecting it counts once: notifications may have been
/// missed meanwhile.
async fn listen<S, T>(
    client: tokio_postgres::Client,
    mut conn: tokio_postgres::Connection<S, T>,
    tx: &watch::Sender<u64>,
) -> Result<bool, tokio_postgres::Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut messages = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
    let sql = format!("LISTEN {PUBLISH_CHANNEL}");
    let subscribe = client.batch_execute(&sql);
    tokio::pin!(subscribe);
    let mut subscribed = false;
    loop {
        tokio::select! {
            r = &mut subscribe, if !subscribed => {
                r?;
                subscribed = true;
                tx.send_modify(|n| *n += 1);
            }
            m = messages.next() => match m {
                Some(Ok(AsyncMessage::Notification(_))) => tx.send_modify(|n| *n += 1),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => return Ok(false),
            },
            _ = tx.closed() => return Ok(true),
        }
    }
}

/// Wakes an idle worker when the queue may have a request for it. Clone one per worker.
#[derive(Clone, Debug)]
pub struct PublishWaiter {
    rx: watch::Receiver<u64>,
}

impl PublishWaiter {
    /// Waits until a notification arrived since this waiter's last wait, or `poll` passed (the
    /// backstop for a missed notification). `true` when woken by a notification.
    pub async fn wait(&mut self, poll: Duration) -> bool {
        match tokio::time::timeout(poll, self.rx.changed()).await {
            Ok(Ok(())) => true,
            Ok(Err(_)) => {
                // the listener ended: polling is all that is left
                tokio::time::sleep(poll).await;
                false
            }
            Err(_) => false,
        }
    }
}
