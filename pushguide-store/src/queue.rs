//! The web service's queue of publish and rollback requests (schema version 10).
//!
//! A request is `queued` until a worker claims it (`running`), then `done` (its deployment ran to
//! an end, whatever the outcome), `failed` (it could not start: the reason is kept), `cancelled`
//! (withdrawn while queued) or `interrupted` (the process running it died). A template's requests
//! run strictly one at a time, in the order they were queued: a worker only claims a template's
//! oldest queued request, and only while none of that template's requests runs.

use std::time::SystemTime;

use rusqlite::{params, OptionalExtension, TransactionBehavior};

use crate::store::{from_ms, now_ms, to_ms};
use crate::{Error, SqliteStore};

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
    /// The user's groups when they asked (the deployment runs with these rights).
    pub groups: Vec<String>,
    /// The request, as JSON written by the service.
    pub request: String,
    /// `queued`, `running`, `done`, `failed`, `cancelled` or `interrupted`.
    pub state: String,
    /// When it was queued.
    pub queued: SystemTime,
    /// When a worker claimed it.
    pub started: Option<SystemTime>,
    /// When it ended.
    pub ended: Option<SystemTime>,
    /// The deployment it started.
    pub deployment: Option<String>,
    /// Why it failed or was interrupted.
    pub error: Option<String>,
    /// The store instance (its owner id) that claimed it.
    pub worker: Option<String>,
}

impl QueuedPublish {
    /// A request `id` of `template`, `queued` at that time, with everything else empty: for other
    /// backends of [`crate::PublishQueue`], which fill in the public fields they read.
    pub fn new(id: i64, template: impl Into<String>, queued: SystemTime) -> Self {
        QueuedPublish {
            id,
            template: template.into(),
            user: String::new(),
            groups: Vec::new(),
            request: String::new(),
            state: "queued".to_owned(),
            queued,
            started: None,
            ended: None,
            deployment: None,
            error: None,
            worker: None,
        }
    }
}

const COLUMNS: &str = "id, template, user, groups, request, state, queued_ms, started_ms, \
                       ended_ms, deployment, error, worker";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(QueuedPublish, String)> {
    let groups: String = r.get(3)?;
    Ok((
        QueuedPublish {
            id: r.get(0)?,
            template: r.get(1)?,
            user: r.get(2)?,
            groups: Vec::new(),
            request: r.get(4)?,
            state: r.get(5)?,
            queued: from_ms(r.get(6)?),
            started: r.get::<_, Option<i64>>(7)?.map(from_ms),
            ended: r.get::<_, Option<i64>>(8)?.map(from_ms),
            deployment: r.get(9)?,
            error: r.get(10)?,
            worker: r.get(11)?,
        },
        groups,
    ))
}

impl SqliteStore {
    fn with_groups(
        &self,
        (mut q, groups): (QueuedPublish, String),
    ) -> Result<QueuedPublish, Error> {
        q.groups = serde_json::from_str(&groups).map_err(|e| Error::Damaged {
            path: self.path().to_path_buf(),
            what: "publish request",
            key: q.id.to_string(),
            reason: format!("groups are not a JSON list: {e}"),
        })?;
        Ok(q)
    }

    /// Queues a request of `user` (with `groups`) for `template`; returns its id.
    pub fn enqueue_publish(
        &self,
        template: &str,
        user: &str,
        groups: &[String],
        request: &str,
    ) -> Result<i64, Error> {
        let groups = serde_json::to_string(groups).map_err(|e| Error::Damaged {
            path: self.path().to_path_buf(),
            what: "publish request",
            key: template.to_owned(),
            reason: format!("groups do not serialize: {e}"),
        })?;
        let conn = self.conn();
        conn.execute(
            "INSERT INTO publish_requests (template, user, groups, request, state, queued_ms)
             VALUES (?1, ?2, ?3, ?4, 'queued', ?5)",
            params![template, user, groups, request, now_ms()],
        )
        .map_err(|e| self.err("queueing a publish request", e))?;
        Ok(conn.last_insert_rowid())
    }

    /// Claims the oldest request that may run now (its template's oldest queued one, while none of
    /// that template's requests runs) for this store's owner: it becomes `running`.
    pub fn claim_publish(&self) -> Result<Option<QueuedPublish>, Error> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.err("claiming a publish request", e))?;
        let found = tx
            .query_row(
                &format!(
                    "SELECT {COLUMNS} FROM publish_requests q WHERE q.state = 'queued'
                       AND NOT EXISTS (SELECT 1 FROM publish_requests r
                                       WHERE r.template = q.template AND r.state = 'running')
                       AND NOT EXISTS (SELECT 1 FROM publish_requests e
                                       WHERE e.template = q.template AND e.state = 'queued'
                                         AND e.id < q.id)
                     ORDER BY q.id LIMIT 1"
                ),
                [],
                row,
            )
            .optional()
            .map_err(|e| self.err("claiming a publish request", e))?;
        let Some(found) = found else {
            return Ok(None);
        };
        let now = now_ms();
        tx.execute(
            "UPDATE publish_requests SET state = 'running', started_ms = ?2, worker = ?3
             WHERE id = ?1",
            params![found.0.id, now, self.owner()],
        )
        .map_err(|e| self.err("claiming a publish request", e))?;
        tx.commit()
            .map_err(|e| self.err("claiming a publish request", e))?;
        let mut q = self.with_groups(found)?;
        q.state = "running".into();
        q.started = Some(from_ms(now));
        q.worker = Some(self.owner().to_owned());
        Ok(Some(q))
    }

    /// Records the deployment a running request started; [`Error::NotClaimed`] unless this
    /// store's owner claimed it and it still runs.
    pub fn publish_started(&self, id: i64, deployment: &str) -> Result<(), Error> {
        let n = self
            .conn()
            .execute(
                "UPDATE publish_requests SET deployment = ?2
                 WHERE id = ?1 AND state = 'running' AND worker = ?3",
                params![id, deployment, self.owner()],
            )
            .map_err(|e| self.err("recording a publish request's deployment", e))?;
        if n == 0 {
            return Err(self.not_claimed(id));
        }
        Ok(())
    }

    /// Ends a running request: `done`, or `failed` with `error`; [`Error::NotClaimed`] unless this
    /// store's owner claimed it and it still runs.
    pub fn finish_publish(&self, id: i64, error: Option<&str>) -> Result<(), Error> {
        let state = if error.is_some() { "failed" } else { "done" };
        let n = self
            .conn()
            .execute(
                "UPDATE publish_requests SET state = ?2, ended_ms = ?3, error = ?4
                 WHERE id = ?1 AND state = 'running' AND worker = ?5",
                params![id, state, now_ms(), error, self.owner()],
            )
            .map_err(|e| self.err("ending a publish request", e))?;
        if n == 0 {
            return Err(self.not_claimed(id));
        }
        Ok(())
    }

    /// The refusal of a write about request `id`, saying what it is now.
    fn not_claimed(&self, id: i64) -> Error {
        let found = self.publish_request(id).ok().flatten();
        Error::NotClaimed {
            id,
            state: found.as_ref().map(|q| q.state.clone()),
            worker: found.and_then(|q| q.worker),
        }
    }

    /// Withdraws a request that is still queued; `false` when it is not (any more).
    pub fn cancel_publish(&self, id: i64) -> Result<bool, Error> {
        let n = self
            .conn()
            .execute(
                "UPDATE publish_requests SET state = 'cancelled', ended_ms = ?2
                 WHERE id = ?1 AND state = 'queued'",
                params![id, now_ms()],
            )
            .map_err(|e| self.err("withdrawing a publish request", e))?;
        Ok(n == 1)
    }

    /// The request `id`.
    pub fn publish_request(&self, id: i64) -> Result<Option<QueuedPublish>, Error> {
        let found = self
            .conn()
            .query_row(
                &format!("SELECT {COLUMNS} FROM publish_requests WHERE id = ?1"),
                [id],
                row,
            )
            .optional()
            .map_err(|e| self.err("reading a publish request", e))?;
        found.map(|f| self.with_groups(f)).transpose()
    }

    /// The requests queued or running (of `template` only, when given), oldest first.
    pub fn publish_queue(&self, template: Option<&str>) -> Result<Vec<QueuedPublish>, Error> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM publish_requests
                 WHERE state IN ('queued', 'running') AND (?1 IS NULL OR template = ?1)
                 ORDER BY id"
            ))
            .map_err(|e| self.err("reading the publish queue", e))?;
        let rows = stmt
            .query_map(params![template], row)
            .and_then(|r| r.collect::<Result<Vec<_>, _>>())
            .map_err(|e| self.err("reading the publish queue", e))?;
        drop(stmt);
        drop(conn);
        rows.into_iter().map(|r| self.with_groups(r)).collect()
    }

    /// Requests left `running` by a process that is gone (another owner whose heartbeat expired,
    /// or this store's owner before a restart never holds them): they become `interrupted`, with
    /// why. Returns them. Their deployments are found by [`SqliteStore::recover`].
    ///
    /// A request stays `running` while its template's lease is live: the deployment it started
    /// runs with a store (and heartbeat) of its own, whose lease can outlive the worker's heartbeat
    /// by up to a third of the TTL; ending the request earlier would let the next request of the
    /// template be claimed and refused as busy.
    pub fn interrupt_dead_publishes(&self) -> Result<Vec<QueuedPublish>, Error> {
        let now = now_ms();
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.err("finding interrupted publish requests", e))?;
        let ids: Vec<i64> = {
            let mut stmt = tx
                .prepare(
                    "SELECT q.id FROM publish_requests q
                     LEFT JOIN owners o ON o.owner = q.worker
                     WHERE q.state = 'running' AND q.worker != ?1
                       AND (o.owner IS NULL OR o.heartbeat_ms + o.ttl_ms <= ?2)
                       AND NOT EXISTS (SELECT 1 FROM leases l
                                       WHERE l.template = q.template AND l.holder IS NOT NULL
                                         AND l.expires_ms > ?2)",
                )
                .map_err(|e| self.err("finding interrupted publish requests", e))?;
            let ids = stmt
                .query_map(params![self.owner(), now], |r| r.get(0))
                .and_then(|r| r.collect::<Result<Vec<_>, _>>())
                .map_err(|e| self.err("finding interrupted publish requests", e))?;
            ids
        };
        for id in &ids {
            tx.execute(
                "UPDATE publish_requests SET state = 'interrupted', ended_ms = ?2,
                   error = CASE WHEN deployment IS NULL
                     THEN 'the service running it stopped before its deployment started'
                     ELSE 'the service running it stopped while its deployment ran' END
                 WHERE id = ?1",
                params![id, now],
            )
            .map_err(|e| self.err("marking interrupted publish requests", e))?;
        }
        tx.commit()
            .map_err(|e| self.err("marking interrupted publish requests", e))?;
        // `publish_request` takes the connection again
        drop(conn);
        ids.into_iter()
            .filter_map(|id| self.publish_request(id).transpose())
            .collect()
    }

    /// The newest requests that ended `failed` or `interrupted` (for the service's pages), newest
    /// first.
    pub fn failed_publishes(
        &self,
        since: SystemTime,
        limit: usize,
    ) -> Result<Vec<QueuedPublish>, Error> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM publish_requests
                 WHERE state IN ('failed', 'interrupted') AND ended_ms >= ?1
                 ORDER BY id DESC LIMIT ?2"
            ))
            .map_err(|e| self.err("reading failed publish requests", e))?;
        let rows = stmt
            .query_map(
                params![to_ms(since), i64::try_from(limit).unwrap_or(i64::MAX)],
                row,
            )
            .and_then(|r| r.collect::<Result<Vec<_>, _>>())
            .map_err(|e| self.err("reading failed publish requests", e))?;
        drop(stmt);
        drop(conn);
        rows.into_iter().map(|r| self.with_groups(r)).collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn g() -> Vec<String> {
        vec!["ops".into()]
    }

    #[test]
    fn a_templates_requests_run_one_at_a_time_in_order() {
        let s = SqliteStore::open_in_memory().unwrap();
        let a1 = s.enqueue_publish("a", "alice", &g(), "{}").unwrap();
        let a2 = s.enqueue_publish("a", "bob", &g(), "{}").unwrap();
        let b1 = s.enqueue_publish("b", "bob", &g(), "{}").unwrap();
        let first = s.claim_publish().unwrap().unwrap();
        assert_eq!((first.id, first.state.as_str()), (a1, "running"));
        assert_eq!(first.groups, g());
        // a1 runs: a2 waits, b1 may run
        assert_eq!(s.claim_publish().unwrap().unwrap().id, b1);
        assert!(s.claim_publish().unwrap().is_none());
        s.publish_started(a1, "dep-1").unwrap();
        s.finish_publish(a1, None).unwrap();
        let done = s.publish_request(a1).unwrap().unwrap();
        assert_eq!(
            (done.state.as_str(), done.deployment.as_deref()),
            ("done", Some("dep-1"))
        );
        assert_eq!(s.claim_publish().unwrap().unwrap().id, a2);
        assert!(s.claim_publish().unwrap().is_none());
        s.finish_publish(a2, Some("no such version")).unwrap();
        let failed = s.publish_request(a2).unwrap().unwrap();
        assert_eq!(failed.state, "failed");
        assert_eq!(failed.error.as_deref(), Some("no such version"));
    }

    #[test]
    fn a_queued_request_can_be_withdrawn_and_a_cancelled_one_blocks_nothing() {
        let s = SqliteStore::open_in_memory().unwrap();
        let a1 = s.enqueue_publish("a", "alice", &g(), "{}").unwrap();
        let a2 = s.enqueue_publish("a", "alice", &g(), "{}").unwrap();
        assert!(s.cancel_publish(a1).unwrap());
        assert!(!s.cancel_publish(a1).unwrap());
        assert_eq!(s.claim_publish().unwrap().unwrap().id, a2);
        assert!(
            !s.cancel_publish(a2).unwrap(),
            "a running request is not withdrawn"
        );
        assert_eq!(s.publish_queue(Some("a")).unwrap().len(), 1);
    }

    #[test]
    fn two_stores_on_one_file_never_claim_the_same_request() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.db");
        let s1 = SqliteStore::open(&path).unwrap();
        let s2 = SqliteStore::open(&path).unwrap();
        for n in 0..20 {
            s1.enqueue_publish(&format!("t{n}"), "alice", &g(), "{}")
                .unwrap();
        }
        let (a, b) = std::thread::scope(|sc| {
            let h1 = sc.spawn(|| {
                let mut got = Vec::new();
                while let Some(q) = s1.claim_publish().unwrap() {
                    got.push(q.id);
                }
                got
            });
            let h2 = sc.spawn(|| {
                let mut got = Vec::new();
                while let Some(q) = s2.claim_publish().unwrap() {
                    got.push(q.id);
                }
                got
            });
            (h1.join().unwrap(), h2.join().unwrap())
        });
        let mut all: Vec<i64> = a.iter().chain(&b).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (1..=20).collect::<Vec<_>>());
    }

    #[test]
    fn a_dead_services_request_waits_for_its_templates_lease_to_expire() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.db");
        let dead = SqliteStore::open(&path).unwrap();
        let id = dead.enqueue_publish("a", "alice", &g(), "{}").unwrap();
        dead.claim_publish().unwrap().unwrap();
        dead.publish_started(id, "a-dep").unwrap();
        let live = SqliteStore::open(&path).unwrap();
        dead.conn()
            .execute(
                "UPDATE owners SET heartbeat_ms = 0 WHERE owner = ?1",
                [dead.owner()],
            )
            .unwrap();
        // its deployment's lease (kept by a store of its own) is still live
        live.conn()
            .execute(
                "INSERT INTO leases (template, holder, owner, reason, acquired_ms, expires_ms, token)
                 VALUES ('a', 'a-dep', 'other', 'deploy', ?1, ?2, 1)",
                params![now_ms(), now_ms() + 60_000],
            )
            .unwrap();
        assert!(
            live.interrupt_dead_publishes().unwrap().is_empty(),
            "the template is still leased"
        );
        assert_eq!(live.publish_request(id).unwrap().unwrap().state, "running");
        live.conn()
            .execute("UPDATE leases SET expires_ms = 0 WHERE template = 'a'", [])
            .unwrap();
        let found = live.interrupt_dead_publishes().unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].state, "interrupted");
        assert!(found[0]
            .error
            .as_deref()
            .unwrap()
            .contains("while its deployment ran"));
    }

    #[test]
    fn requests_of_a_dead_service_are_interrupted_and_live_ones_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.db");
        let dead = SqliteStore::open(&path).unwrap();
        let id = dead.enqueue_publish("a", "alice", &g(), "{}").unwrap();
        dead.claim_publish().unwrap().unwrap();
        let live = SqliteStore::open(&path).unwrap();
        assert!(
            live.interrupt_dead_publishes().unwrap().is_empty(),
            "its owner still beats"
        );
        dead.conn()
            .execute(
                "UPDATE owners SET heartbeat_ms = 0 WHERE owner = ?1",
                [dead.owner()],
            )
            .unwrap();
        let found = live.interrupt_dead_publishes().unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].id, id);
        assert_eq!(found[0].state, "interrupted");
        assert!(found[0]
            .error
            .as_deref()
            .unwrap()
            .contains("before its deployment started"));
        assert_eq!(
            live.failed_publishes(SystemTime::UNIX_EPOCH, 10)
                .unwrap()
                .len(),
            1
        );
    }
}
