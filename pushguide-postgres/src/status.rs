//! Each minion's last seen / up / down state, shared by every instance.

use crate::sql::Sql;
use std::collections::HashMap;
use std::time::SystemTime;

use async_trait::async_trait;
use pushguide_core::{MinionId, MinionStatus, MinionStatusStore, StatusChange};

use crate::error::Error;
use crate::store::PgStore;

impl PgStore {
    /// [`MinionStatusStore::record`] with this crate's error: in one transaction, reads the minions'
    /// states (locked), applies the checks in order and writes the result.
    pub async fn record_checks(
        &self,
        checks: &[(MinionId, bool)],
        at: SystemTime,
    ) -> Result<Vec<StatusChange>, Error> {
        if checks.is_empty() {
            return Ok(Vec::new());
        }
        let mut names: Vec<&str> = checks.iter().map(|(m, _)| m.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        let mut client = self.client("recording minion status").await?;
        let tx = client
            .transaction()
            .await
            .map_err(|e| self.db("recording minion status", e))?;
        let rows = tx
            .rows(
                "SELECT minion, up, last_seen, checked, since FROM minion_status
                 WHERE minion = ANY($1) ORDER BY minion FOR UPDATE",
                &[&names],
            )
            .await
            .map_err(|e| self.db("reading minion status", e))?;
        // (up, last_seen, checked, since)
        let mut state: HashMap<String, (bool, Option<SystemTime>, SystemTime, SystemTime)> = rows
            .into_iter()
            .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3), r.get(4))))
            .collect();
        let mut changes = Vec::new();
        for (m, up) in checks {
            match state.get_mut(m.as_str()) {
                None => {
                    state.insert(m.as_str().to_owned(), (*up, up.then_some(at), at, at));
                    changes.push(StatusChange {
                        minion: m.clone(),
                        up: *up,
                        was_up: None,
                        at,
                    });
                }
                Some(s) => {
                    if s.0 != *up {
                        changes.push(StatusChange {
                            minion: m.clone(),
                            up: *up,
                            was_up: Some(s.0),
                            at,
                        });
                        s.3 = at;
                    }
                    s.0 = *up;
                    s.2 = at;
                    if *up {
                        s.1 = Some(at);
                    }
                }
            }
        }
        let (mut ms, mut ups, mut seen, mut checked, mut since) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for n in &names {
            if let Some(s) = state.get(*n) {
                ms.push(*n);
                ups.push(s.0);
                seen.push(s.1);
                checked.push(s.2);
                since.push(s.3);
            }
        }
        tx.exec(
            "INSERT INTO minion_status (minion, up, last_seen, checked, since)
             SELECT * FROM unnest($1::text[], $2::boolean[], $3::timestamptz[], $4::timestamptz[],
                                  $5::timestamptz[])
             ON CONFLICT (minion) DO UPDATE SET up = excluded.up, last_seen = excluded.last_seen,
               checked = excluded.checked, since = excluded.since",
            &[&ms, &ups, &seen, &checked, &since],
        )
        .await
        .map_err(|e| self.db("recording minion status", e))?;
        tx.commit()
            .await
            .map_err(|e| self.db("committing minion status", e))?;
        Ok(changes)
    }

    /// [`MinionStatusStore::status`] with this crate's error, in the order asked.
    pub async fn minion_status(&self, minions: &[MinionId]) -> Result<Vec<MinionStatus>, Error> {
        let names: Vec<&str> = minions.iter().map(MinionId::as_str).collect();
        let client = self.client("reading minion status").await?;
        let rows = client
            .rows(
                "SELECT minion, up, last_seen, checked, since FROM minion_status
                 WHERE minion = ANY($1)",
                &[&names],
            )
            .await
            .map_err(|e| self.db("reading minion status", e))?;
        let mut found: HashMap<String, MinionStatus> = HashMap::with_capacity(rows.len());
        for r in rows {
            let name: String = r.get(0);
            let Ok(minion) = MinionId::new(&name) else {
                tracing::warn!(minion = %name, "skipping a stored minion id that is not valid");
                continue;
            };
            found.insert(
                name,
                MinionStatus {
                    minion,
                    up: r.get(1),
                    last_seen: r.get(2),
                    checked: r.get(3),
                    since: r.get(4),
                },
            );
        }
        Ok(minions
            .iter()
            .filter_map(|m| found.get(m.as_str()).cloned())
            .collect())
    }
}

#[async_trait]
impl MinionStatusStore for PgStore {
    async fn record(
        &self,
        checks: &[(MinionId, bool)],
        at: SystemTime,
    ) -> Result<Vec<StatusChange>, pushguide_core::Error> {
        self.record_checks(checks, at)
            .await
            .map_err(|e| e.into_core("recording minion status"))
    }

    async fn status(
        &self,
        minions: &[MinionId],
    ) -> Result<Vec<MinionStatus>, pushguide_core::Error> {
        self.minion_status(minions)
            .await
            .map_err(|e| e.into_core("reading minion status"))
    }
}
