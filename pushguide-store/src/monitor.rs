//! Minion connectivity kept in the database: core's [`MinionStatusStore`] for the monitor and the
//! engine's pre-flight check, shared by every process using the file.

use std::time::SystemTime;

use pushguide_core::{MinionId, MinionStatus, MinionStatusStore, StatusChange};
use rusqlite::OptionalExtension;

use crate::store::{from_ms, to_ms, SqliteStore};

impl SqliteStore {
    /// Records one check of `checks` in one transaction and returns the state changes (a minion seen
    /// for the first time is a change with `was_up: None`).
    pub fn record_minion_checks(
        &self,
        checks: &[(MinionId, bool)],
        at: SystemTime,
    ) -> Result<Vec<StatusChange>, crate::Error> {
        let at_ms = to_ms(at);
        let mut conn = self.conn();
        let tx = conn
            .transaction()
            .map_err(|e| self.err("recording minion status", e))?;
        let mut changes = Vec::new();
        {
            let mut get = tx
                .prepare_cached("SELECT up FROM minion_status WHERE minion = ?1")
                .map_err(|e| self.err("reading minion status", e))?;
            let mut put = tx
                .prepare_cached(
                    "INSERT INTO minion_status (minion, up, last_seen_ms, checked_ms, since_ms)
                     VALUES (?1, ?2, CASE WHEN ?2 THEN ?3 END, ?3, ?3)
                     ON CONFLICT (minion) DO UPDATE SET
                         since_ms = CASE WHEN up <> excluded.up THEN excluded.checked_ms ELSE since_ms END,
                         up = excluded.up,
                         last_seen_ms = CASE WHEN excluded.up THEN excluded.checked_ms ELSE last_seen_ms END,
                         checked_ms = excluded.checked_ms",
                )
                .map_err(|e| self.err("recording minion status", e))?;
            for (m, up) in checks {
                let was: Option<bool> = get
                    .query_row([m.as_str()], |r| r.get(0))
                    .optional()
                    .map_err(|e| self.err("reading minion status", e))?;
                put.execute(rusqlite::params![m.as_str(), *up, at_ms])
                    .map_err(|e| self.err("recording minion status", e))?;
                if was != Some(*up) {
                    changes.push(StatusChange {
                        minion: m.clone(),
                        up: *up,
                        was_up: was,
                        at,
                    });
                }
            }
        }
        tx.commit()
            .map_err(|e| self.err("recording minion status", e))?;
        Ok(changes)
    }

    /// The recorded states of `minions` (unknown minions are absent).
    pub fn minion_states(&self, minions: &[MinionId]) -> Result<Vec<MinionStatus>, crate::Error> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT up, last_seen_ms, checked_ms, since_ms FROM minion_status WHERE minion = ?1",
            )
            .map_err(|e| self.err("reading minion status", e))?;
        let mut out = Vec::new();
        for m in minions {
            let row = stmt
                .query_row([m.as_str()], |r| {
                    Ok(MinionStatus {
                        minion: m.clone(),
                        up: r.get(0)?,
                        last_seen: r.get::<_, Option<i64>>(1)?.map(from_ms),
                        checked: from_ms(r.get(2)?),
                        since: from_ms(r.get(3)?),
                    })
                })
                .optional()
                .map_err(|e| self.err("reading minion status", e))?;
            out.extend(row);
        }
        Ok(out)
    }
}

#[async_trait::async_trait]
impl MinionStatusStore for SqliteStore {
    async fn record(
        &self,
        checks: &[(MinionId, bool)],
        at: SystemTime,
    ) -> Result<Vec<StatusChange>, pushguide_core::Error> {
        let (store, checks) = (self.clone(), checks.to_vec());
        crate::store::blocking("recording minion status", move || {
            store.record_minion_checks(&checks, at)
        })
        .await
    }

    async fn status(
        &self,
        minions: &[MinionId],
    ) -> Result<Vec<MinionStatus>, pushguide_core::Error> {
        let (store, minions) = (self.clone(), minions.to_vec());
        crate::store::blocking("reading minion status", move || {
            store.minion_states(&minions)
        })
        .await
    }
}
