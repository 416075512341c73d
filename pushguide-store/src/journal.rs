//! The journal's events by sequence: what a deployment page folds, kept while the deployment runs
//! so that another process (a second `pushguide serve` on the same store) can follow it live.

use pushguide_core::{Event, EventKind};
use rusqlite::{params, Transaction};

use crate::error::Error;
use crate::store::SqliteStore;

/// Whether the page of a deployment needs `kind`: every event but host successes and salt calls
/// (their effects show in the stage events), which are most of a large deployment's events.
fn kept(kind: &EventKind) -> bool {
    !matches!(
        kind,
        EventKind::HostSucceeded { .. }
            | EventKind::CallStarted { .. }
            | EventKind::CallFinished { .. }
    )
}

/// Records event number `seq` of deployment `id` (1 is its first event) if pages need it.
pub(crate) fn record(tx: &Transaction<'_>, id: &str, seq: i64, e: &Event) -> rusqlite::Result<()> {
    if !kept(&e.kind) {
        return Ok(());
    }
    let json = serde_json::to_string(e)
        .map_err(|err| rusqlite::Error::ToSqlConversionFailure(Box::new(err)))?;
    tx.prepare_cached(
        "INSERT OR REPLACE INTO journal (deployment, seq, event) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![id, seq, json])
    .map(drop)
}

impl SqliteStore {
    /// At most `limit` journaled events of deployment `id` after sequence `after`, in order, each
    /// with its sequence (the number of events the deployment had emitted up to and including
    /// it; host successes and salt calls are not kept, so numbers may be skipped). An event a
    /// newer build wrote in a shape this one does not read is an error naming its sequence.
    pub fn journal_after(
        &self,
        id: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Event)>, Error> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT seq, event FROM journal WHERE deployment = ?1 AND seq > ?2
                 ORDER BY seq LIMIT ?3",
            )
            .map_err(|e| self.err("reading the journal", e))?;
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt
            .query_map(params![id, after, limit], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
            })
            .and_then(|r| r.collect::<Result<Vec<_>, _>>())
            .map_err(|e| self.err("reading the journal", e))?;
        rows.into_iter()
            .map(|(seq, json)| {
                let event = serde_json::from_str(&json).map_err(|e| {
                    self.err(
                        "reading the journal",
                        rusqlite::Error::FromSqlConversionFailure(
                            1,
                            rusqlite::types::Type::Text,
                            Box::new(JournalRow { seq, error: e }),
                        ),
                    )
                })?;
                Ok((u64::try_from(seq).unwrap_or(0), event))
            })
            .collect()
    }
}

/// A journal row that does not read.
#[derive(Debug)]
struct JournalRow {
    seq: i64,
    error: serde_json::Error,
}

impl std::fmt::Display for JournalRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "journal event {}: {}", self.seq, self.error)
    }
}

impl std::error::Error for JournalRow {}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;
    use std::time::SystemTime;

    use pushguide_core::{MinionId, Stage};

    use super::*;

    fn ev(kind: EventKind) -> Event {
        Event {
            at: SystemTime::now(),
            deployment: Arc::from("d1"),
            kind,
        }
    }

    #[test]
    fn the_page_events_are_kept_by_sequence_and_read_after_one() {
        let s = SqliteStore::open_in_memory().unwrap();
        let m = MinionId::new("web-01").unwrap();
        let first = vec![
            ev(EventKind::DeploymentStarted {
                template: "shop".into(),
                version: "1.0".into(),
                user: "alice".into(),
                dry_run: false,
                rollback: false,
            }),
            ev(EventKind::BatchStarted {
                batch: 0,
                hosts: 1,
                minions: vec![m.clone()],
            }),
            ev(EventKind::HostSucceeded { host: m.clone() }),
        ];
        s.append_events(&first).unwrap();
        s.append_events(&[ev(EventKind::StageStarted {
            batch: Some(0),
            stage: Stage::Deploy,
            hosts: 1,
        })])
        .unwrap();
        let all = s.journal_after("d1", 0, 100).unwrap();
        let seqs: Vec<u64> = all.iter().map(|(n, _)| *n).collect();
        assert_eq!(seqs, [1, 2, 4], "the host success (3) is not kept");
        assert_eq!(all[0].1, first[0], "an event reads back as it was written");
        let after = s.journal_after("d1", 2, 100).unwrap();
        assert_eq!(after.len(), 1);
        assert!(matches!(after[0].1.kind, EventKind::StageStarted { .. }));
        assert_eq!(s.journal_after("d1", 0, 1).unwrap().len(), 1);
        assert!(s.journal_after("other", 0, 100).unwrap().is_empty());
    }
}
