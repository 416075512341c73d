//! The web service's audit log (schema version 10): every action a user took through the service,
//! with who, what, when and from which address. Rows are only ever appended.

use std::time::SystemTime;

use rusqlite::params;

use crate::store::{from_ms, to_ms};
use crate::{Error, SqliteStore};

/// One action, as the service records it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuditEntry {
    /// Its place in the log (increasing; `0` before it is stored).
    pub seq: i64,
    /// When.
    pub at: SystemTime,
    /// Who (a user name).
    pub user: String,
    /// From which address (the client's, or the one a trusted proxy named).
    pub address: Option<String>,
    /// What, as a short verb phrase (`login`, `publish`, `decide`, `template.save`, …).
    pub action: String,
    /// On what (a template, a deployment id, a user name); empty when nothing.
    pub target: String,
    /// Details (one line: a version, a decision, a token label). Never a secret.
    pub detail: String,
}

impl AuditEntry {
    /// An entry for `user` doing `action` on `target` now.
    pub fn new(
        user: &str,
        address: Option<String>,
        action: &str,
        target: &str,
        detail: &str,
    ) -> Self {
        AuditEntry {
            seq: 0,
            at: SystemTime::now(),
            user: user.to_owned(),
            address,
            action: action.to_owned(),
            target: target.to_owned(),
            detail: detail.to_owned(),
        }
    }
}

impl SqliteStore {
    /// Appends `entry` to the audit log; returns its sequence number.
    pub fn append_audit(&self, entry: &AuditEntry) -> Result<i64, Error> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO audit (at_ms, user, address, action, target, detail)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                to_ms(entry.at),
                entry.user,
                entry.address,
                entry.action,
                entry.target,
                entry.detail
            ],
        )
        .map_err(|e| self.err("appending to the audit log", e))?;
        Ok(conn.last_insert_rowid())
    }

    /// Up to `limit` audit entries, newest first, older than `before` (a sequence number) when
    /// given, of `user` only when given.
    pub fn audit_log(
        &self,
        before: Option<i64>,
        user: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, Error> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT seq, at_ms, user, address, action, target, detail FROM audit
                 WHERE seq < ?1 AND (?2 IS NULL OR user = ?2)
                 ORDER BY seq DESC LIMIT ?3",
            )
            .map_err(|e| self.err("reading the audit log", e))?;
        let rows = stmt
            .query_map(
                params![
                    before.unwrap_or(i64::MAX),
                    user,
                    i64::try_from(limit).unwrap_or(i64::MAX)
                ],
                |r| {
                    Ok(AuditEntry {
                        seq: r.get(0)?,
                        at: from_ms(r.get(1)?),
                        user: r.get(2)?,
                        address: r.get(3)?,
                        action: r.get(4)?,
                        target: r.get(5)?,
                        detail: r.get(6)?,
                    })
                },
            )
            .map_err(|e| self.err("reading the audit log", e))?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.err("reading the audit log", e))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn entries_come_back_newest_first_by_key() {
        let s = SqliteStore::open_in_memory().unwrap();
        for n in 0..5 {
            let who = if n % 2 == 0 { "alice" } else { "bob" };
            let e = AuditEntry::new(
                who,
                Some("127.0.0.1".into()),
                "publish",
                "shop",
                &n.to_string(),
            );
            assert_eq!(s.append_audit(&e).unwrap(), n + 1);
        }
        let page = s.audit_log(None, None, 2).unwrap();
        assert_eq!(
            page.iter().map(|e| e.detail.as_str()).collect::<Vec<_>>(),
            ["4", "3"]
        );
        let next = s.audit_log(Some(page[1].seq), None, 10).unwrap();
        assert_eq!(
            next.iter().map(|e| e.detail.as_str()).collect::<Vec<_>>(),
            ["2", "1", "0"]
        );
        let alice = s.audit_log(None, Some("alice"), 10).unwrap();
        assert_eq!(alice.len(), 3);
        assert!(alice.iter().all(|e| e.user == "alice"));
        assert_eq!(alice[0].address.as_deref(), Some("127.0.0.1"));
    }
}
