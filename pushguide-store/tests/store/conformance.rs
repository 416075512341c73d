//! The store conformance suite (`pushguide_core::store_conformance`), run unchanged against SQLite;
//! pushguide-postgres runs the same checks against PostgreSQL. "Two instances" are two stores opened
//! on one database file. `journal_fencing` is not run here: the SQLite journal is not fenced (as
//! `HistoryStore` documents); only its fleet state writes are, which `takeover_fences` checks.

use std::time::Duration;

use async_trait::async_trait;
use pushguide_core::store_conformance::{self as suite, JournalView, Recorded};
use pushguide_core::{Event, HistoryStore, Report};
use pushguide_store::{SqliteStore, StoreOptions};

// short, yet long against a loaded machine's scheduling delays between two steps of a check
const SHORT_TTL: Duration = Duration::from_secs(1);

fn open(dir: &tempfile::TempDir, ttl: Duration) -> SqliteStore {
    SqliteStore::open_with(
        dir.path().join("h.db"),
        StoreOptions::default().lease_ttl(ttl),
    )
    .unwrap()
}

/// The SQLite store read back for `journal_order`.
#[derive(Debug)]
struct View(SqliteStore);

#[async_trait]
impl HistoryStore for View {
    async fn append(&self, events: &[Event]) -> Result<(), pushguide_core::Error> {
        self.0.append(events).await
    }
    async fn finish(&self, report: &Report) -> Result<(), pushguide_core::Error> {
        self.0.finish(report).await
    }
}

#[async_trait]
impl JournalView for View {
    async fn recorded(&self, id: &str) -> Result<Option<Recorded>, String> {
        let Some(d) = self.0.deployment(id).map_err(|e| e.to_string())? else {
            return Ok(None);
        };
        let calls = self.0.calls(id).map_err(|e| e.to_string())?;
        Ok(Some(Recorded {
            template: d.template,
            version: d.version,
            outcome: d.outcome,
            events: d.events,
            calls: calls.into_iter().map(|c| c.fun).collect(),
        }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_journal_order() {
    let dir = tempfile::tempdir().unwrap();
    suite::journal_order(&View(open(&dir, Duration::from_secs(30))), "j").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_fleet_state() {
    let dir = tempfile::tempdir().unwrap();
    suite::fleet_state(&open(&dir, Duration::from_secs(30)), "f").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_leases() {
    let dir = tempfile::tempdir().unwrap();
    suite::leases(&open(&dir, Duration::from_secs(30)), "l").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_lease_race() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (
        open(&dir, Duration::from_secs(30)),
        open(&dir, Duration::from_secs(30)),
    );
    assert_ne!(a.owner(), b.owner(), "two instances");
    suite::lease_race(&a, &b, "r", 40).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_takeover_fences() {
    let dir = tempfile::tempdir().unwrap();
    // only the old instance's TTL matters; the new one keeps what it takes
    let (old, new) = (open(&dir, SHORT_TTL), open(&dir, Duration::from_secs(30)));
    old.stop_heartbeat();
    suite::takeover_fences(&old, &new, SHORT_TTL, "t").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_minion_status() {
    let dir = tempfile::tempdir().unwrap();
    suite::minion_status(&open(&dir, Duration::from_secs(30)), "m").await;
}
