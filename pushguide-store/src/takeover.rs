//! Takeover records: what another instance did with an interrupted deployment (the template's
//! `takeover` policy), recorded once per deployment together with the request it queued.

use std::time::SystemTime;

use rusqlite::{params, OptionalExtension, TransactionBehavior};

use crate::error::Error;
use crate::recover::{InterruptedDeployment, INTERRUPTED};
use crate::store::{from_ms, now_ms, SqliteStore};

/// The user that takeover requests run as and that the audit log names for them.
pub const TAKEOVER_USER: &str = "takeover";

/// What was done with an interrupted deployment, recorded once ([`SqliteStore::take_over`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Takeover {
    /// The interrupted deployment.
    pub deployment: String,
    /// The policy applied: `mark`, `rollback` or `resume` (`mark` also when a rollback or resume
    /// was superseded, see [`Takeover::note`]).
    pub policy: String,
    /// The publish request it queued (`None` for `mark`).
    pub request: Option<i64>,
    /// That request's state (`queued`, `running`, `done`, …), when there is one.
    pub request_state: Option<String>,
    /// The deployment that request started, once it started.
    pub request_deployment: Option<String>,
    /// Why a rollback or resume was not queued (another deployment or request of the template
    /// came first), or what the request asks.
    pub note: String,
    /// The store owner (instance) that took it over.
    pub by: String,
    /// When.
    pub at: SystemTime,
}

impl Takeover {
    /// A takeover of `deployment` by `policy`, recorded by store owner `by` at `at`, with no
    /// request and an empty note (for other backends, which fill in the rest).
    pub fn new(
        deployment: impl Into<String>,
        policy: impl Into<String>,
        by: impl Into<String>,
        at: SystemTime,
    ) -> Self {
        Takeover {
            deployment: deployment.into(),
            policy: policy.into(),
            request: None,
            request_state: None,
            request_deployment: None,
            note: String::new(),
            by: by.into(),
            at,
        }
    }
}

/// What [`SqliteStore::take_over`] is asked to record.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TakeoverRequest {
    /// The interrupted deployment.
    pub deployment: String,
    /// Its template.
    pub template: String,
    /// `mark`, `rollback` or `resume`.
    pub policy: String,
    /// The groups the queued request runs with (those of the interrupted deployment's request).
    pub groups: Vec<String>,
    /// The publish request to queue (JSON, as the web service writes it); `None` for `mark`.
    pub request: Option<String>,
    /// One line saying what it does (for the audit log and the deployment page).
    pub summary: String,
}

impl TakeoverRequest {
    /// A takeover of `deployment` (of `template`) by `policy`, queueing `request` (JSON) with
    /// `groups`; `summary` says what it does.
    pub fn new(
        deployment: impl Into<String>,
        template: impl Into<String>,
        policy: impl Into<String>,
        request: Option<String>,
        groups: Vec<String>,
        summary: impl Into<String>,
    ) -> Self {
        TakeoverRequest {
            deployment: deployment.into(),
            template: template.into(),
            policy: policy.into(),
            groups,
            request,
            summary: summary.into(),
        }
    }
}

const SELECT: &str = "SELECT t.deployment, t.policy, t.request, q.state, q.deployment, t.note,
                             t.by_owner, t.at_ms
                      FROM takeovers t LEFT JOIN publish_requests q ON q.id = t.request";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Takeover> {
    Ok(Takeover {
        deployment: r.get(0)?,
        policy: r.get(1)?,
        request: r.get(2)?,
        request_state: r.get(3)?,
        request_deployment: r.get(4)?,
        note: r.get(5)?,
        by: r.get(6)?,
        at: from_ms(r.get(7)?),
    })
}

impl SqliteStore {
    /// Interrupted deployments no instance has taken over yet, oldest first: those
    /// [`SqliteStore::recover`] just marked, and those whose taker died between marking and
    /// [`SqliteStore::take_over`]. Only the newest deployment of its template qualifies: once
    /// another deployment of the template started, an older interrupted one is left as marked.
    pub fn untaken_interrupted(&self) -> Result<Vec<InterruptedDeployment>, Error> {
        let ids: Vec<String> = {
            let conn = self.conn();
            let mut stmt = conn
                .prepare(
                    "SELECT d.id FROM deployments d
                     WHERE d.outcome = ?1
                       AND NOT EXISTS (SELECT 1 FROM takeovers t WHERE t.deployment = d.id)
                       AND NOT EXISTS (SELECT 1 FROM deployments e WHERE e.template = d.template
                                       AND e.id != d.id AND e.started_ms >= d.started_ms)
                     ORDER BY d.started_ms, d.id",
                )
                .map_err(|e| self.err("listing interrupted deployments to take over", e))?;
            let ids = stmt
                .query_map([INTERRUPTED], |r| r.get(0))
                .and_then(|r| r.collect::<Result<Vec<_>, _>>())
                .map_err(|e| self.err("listing interrupted deployments to take over", e))?;
            ids
        };
        ids.iter()
            .filter_map(|id| self.interrupted_deployment(id).transpose())
            .collect()
    }

    /// Records the takeover of an interrupted deployment, exactly once: in one transaction it
    /// checks that no takeover of it is recorded, queues `t.request` (as [`TAKEOVER_USER`] with
    /// `t.groups`), records the takeover with the request's id, and appends the audit entry
    /// (user [`TAKEOVER_USER`], action `takeover`). Two instances taking over the same deployment
    /// at once get one record and one request: the second gets `None`; so does a deployment that
    /// is not `interrupted`.
    ///
    /// A rollback or resume is recorded as `mark` (with a note, nothing queued) when, by then,
    /// another deployment of the template started or another request of it is queued or running:
    /// acting on the hosts after those would undo or repeat newer work.
    pub fn take_over(&self, t: &TakeoverRequest) -> Result<Option<Takeover>, Error> {
        let during = "recording a takeover";
        let groups = serde_json::to_string(&t.groups).map_err(|e| Error::Damaged {
            path: self.path().to_path_buf(),
            what: "takeover",
            key: t.deployment.clone(),
            reason: format!("groups do not serialize: {e}"),
        })?;
        {
            let mut conn = self.conn();
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|e| self.err(during, e))?;
            let taken: bool = tx
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM takeovers WHERE deployment = ?1)",
                    [&t.deployment],
                    |r| r.get(0),
                )
                .map_err(|e| self.err(during, e))?;
            let started: Option<i64> = tx
                .query_row(
                    "SELECT started_ms FROM deployments WHERE id = ?1 AND outcome = ?2",
                    params![t.deployment, INTERRUPTED],
                    |r| r.get(0),
                )
                .optional()
                .map_err(|e| self.err(during, e))?;
            let Some(started) = started else {
                return Ok(None);
            };
            if taken {
                return Ok(None);
            }
            let mut policy = t.policy.clone();
            let mut note = t.summary.clone();
            let mut request_id = None;
            if let Some(request) = &t.request {
                let newer: Option<String> = tx
                    .query_row(
                        "SELECT id FROM deployments WHERE template = ?1 AND id != ?2
                           AND started_ms >= ?3 LIMIT 1",
                        params![t.template, t.deployment, started],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(|e| self.err(during, e))?;
                let pending: Option<i64> = tx
                    .query_row(
                        "SELECT id FROM publish_requests WHERE template = ?1
                           AND state IN ('queued', 'running')
                           AND (deployment IS NULL OR deployment != ?2) LIMIT 1",
                        params![t.template, t.deployment],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(|e| self.err(during, e))?;
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
                    tx.execute(
                        "INSERT INTO publish_requests (template, user, groups, request, state,
                            queued_ms)
                         VALUES (?1, ?2, ?3, ?4, 'queued', ?5)",
                        params![t.template, TAKEOVER_USER, groups, request, now_ms()],
                    )
                    .map_err(|e| self.err(during, e))?;
                    request_id = Some(tx.last_insert_rowid());
                }
            }
            let now = now_ms();
            tx.execute(
                "INSERT INTO takeovers (deployment, policy, request, note, by_owner, at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![t.deployment, policy, request_id, note, self.owner(), now],
            )
            .map_err(|e| self.err(during, e))?;
            let detail = match request_id {
                Some(id) => format!("{policy}: request {id}: {note}"),
                None => format!("{policy}: {note}"),
            };
            tx.execute(
                "INSERT INTO audit (at_ms, user, address, action, target, detail)
                 VALUES (?1, ?2, NULL, 'takeover', ?3, ?4)",
                params![now, TAKEOVER_USER, t.deployment, detail],
            )
            .map_err(|e| self.err(during, e))?;
            tx.commit().map_err(|e| self.err(during, e))?;
        }
        self.takeover(&t.deployment)
    }

    /// The takeover recorded for deployment `id`, with its request's state and deployment.
    pub fn takeover(&self, id: &str) -> Result<Option<Takeover>, Error> {
        self.conn()
            .query_row(&format!("{SELECT} WHERE t.deployment = ?1"), [id], row)
            .optional()
            .map_err(|e| self.err("reading a takeover", e))
    }

    /// The takeover that queued publish request `request`, if one did (the deployment page of a
    /// takeover's own deployment names the deployment it took over).
    pub fn takeover_by_request(&self, request: i64) -> Result<Option<Takeover>, Error> {
        self.conn()
            .query_row(&format!("{SELECT} WHERE t.request = ?1"), [request], row)
            .optional()
            .map_err(|e| self.err("reading a takeover", e))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn dead(s: &SqliteStore, id: &str, template: &str, started: i64) {
        s.conn()
            .execute(
                "INSERT INTO deployments (id, template, version, principal, dry_run, started_ms,
                    owner, last_event_ms, outcome, ended_ms)
                 VALUES (?1, ?2, '2.0', 'alice', 0, ?3, 'gone', ?3, 'interrupted', ?3)",
                params![id, template, started],
            )
            .unwrap();
    }

    fn req(id: &str) -> TakeoverRequest {
        TakeoverRequest::new(
            id,
            "shop",
            "rollback",
            Some(r#"{"mode":{"kind":"undo","version":"2.0"},"hosts":["web-01"]}"#.into()),
            vec!["ops".into()],
            "undo 2.0 on web-01",
        )
    }

    #[test]
    fn a_takeover_is_recorded_once_with_one_request_and_one_audit_entry() {
        let s = SqliteStore::open_in_memory().unwrap();
        dead(&s, "d1", "shop", 1000);
        assert_eq!(s.untaken_interrupted().unwrap().len(), 1);
        let t = s.take_over(&req("d1")).unwrap().unwrap();
        assert_eq!(t.policy, "rollback");
        let id = t.request.unwrap();
        assert_eq!(t.request_state.as_deref(), Some("queued"));
        let q = s.publish_request(id).unwrap().unwrap();
        assert_eq!(
            (q.user.as_str(), q.groups.clone()),
            ("takeover", vec!["ops".to_owned()])
        );
        // the second attempt records nothing and queues nothing
        assert_eq!(s.take_over(&req("d1")).unwrap(), None);
        assert_eq!(s.publish_queue(None).unwrap().len(), 1);
        assert!(s.untaken_interrupted().unwrap().is_empty());
        let audit = s.audit_log(None, Some("takeover"), 10).unwrap();
        assert_eq!(audit.len(), 1);
        assert_eq!(
            (audit[0].action.as_str(), audit[0].target.as_str()),
            ("takeover", "d1")
        );
        assert!(
            audit[0].detail.contains(&format!("request {id}")),
            "{:?}",
            audit[0]
        );
        assert_eq!(s.takeover_by_request(id).unwrap().unwrap().deployment, "d1");
        // not interrupted: nothing
        assert_eq!(s.take_over(&req("nope")).unwrap(), None);
    }

    #[test]
    fn a_newer_deployment_or_a_pending_request_turns_the_takeover_into_a_mark() {
        let s = SqliteStore::open_in_memory().unwrap();
        dead(&s, "d1", "shop", 1000);
        dead(&s, "d2", "shop", 2000);
        // d1 is not the newest: not listed, and a takeover of it queues nothing
        let listed: Vec<String> = s
            .untaken_interrupted()
            .unwrap()
            .into_iter()
            .map(|d| d.id)
            .collect();
        assert_eq!(listed, ["d2"]);
        let t = s.take_over(&req("d1")).unwrap().unwrap();
        assert_eq!((t.policy.as_str(), t.request), ("mark", None));
        assert!(t.note.contains("d2"), "{}", t.note);
        // a request of the template queued first
        let first = s.enqueue_publish("shop", "bob", &[], "{}").unwrap();
        let t = s.take_over(&req("d2")).unwrap().unwrap();
        assert_eq!((t.policy.as_str(), t.request), ("mark", None));
        assert!(t.note.contains(&format!("request {first}")), "{}", t.note);
    }

    /// Deployments interrupted before takeovers were recorded are recorded as marked by the
    /// migration: no instance acts on them after an upgrade.
    #[test]
    fn the_migration_records_older_interrupted_deployments_as_marked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v12.db");
        {
            let conn = crate::schema::database_at_version(&path, 12);
            conn.execute_batch(
                "INSERT INTO deployments (id, template, version, principal, dry_run, started_ms,
                    owner, last_event_ms, outcome, ended_ms)
                 VALUES ('old', 'shop', '2.0', 'alice', 0, 1000, 'gone', 2000, 'interrupted', 2000)",
            )
            .unwrap();
        }
        let s = SqliteStore::open(&path).unwrap();
        assert!(s.untaken_interrupted().unwrap().is_empty());
        let t = s.takeover("old").unwrap().unwrap();
        assert_eq!(
            (t.policy.as_str(), t.request, t.by.as_str()),
            ("mark", None, "migration")
        );
        assert_eq!(s.take_over(&req("old")).unwrap(), None);
    }

    #[test]
    fn two_stores_taking_over_at_once_queue_one_request() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let s = SqliteStore::open(&path).unwrap();
        for round in 0..20 {
            let id = format!("d{round}");
            dead(&s, &id, &format!("t{round}"), 1000);
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
            let handles: Vec<_> = (0..2)
                .map(|_| {
                    let (path, barrier, id) = (path.clone(), barrier.clone(), id.clone());
                    std::thread::spawn(move || {
                        let s = SqliteStore::open(&path).unwrap();
                        let mut r = req(&id);
                        r.template = format!("t{round}");
                        barrier.wait();
                        s.take_over(&r).unwrap()
                    })
                })
                .collect();
            let won: Vec<_> = handles
                .into_iter()
                .filter_map(|h| h.join().unwrap())
                .collect();
            assert_eq!(won.len(), 1, "round {round}: {won:?}");
            assert_eq!(
                s.publish_queue(Some(&format!("t{round}"))).unwrap().len(),
                1,
                "round {round}"
            );
        }
    }
}
