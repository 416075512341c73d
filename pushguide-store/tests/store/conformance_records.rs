//! The records conformance suite (`pushguide_store::conformance::records`), run unchanged against
//! SQLite; pushguide-postgres runs the same checks against PostgreSQL.

use std::time::Duration;

use pushguide_store::conformance::records as suite;
use pushguide_store::{SqliteStore, StoreOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_journal_and_results() {
    suite::journal_and_results(&SqliteStore::open_in_memory().unwrap(), "j").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_history_pages() {
    suite::history_pages(&SqliteStore::open_in_memory().unwrap(), "h").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_statistics() {
    suite::statistics(&SqliteStore::open_in_memory().unwrap(), "s").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_fleet_and_minions() {
    suite::fleet_and_minions(&SqliteStore::open_in_memory().unwrap(), "f").await;
}

/// Two stores on one file: the first stops its heartbeat (its process "died"), the second recovers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_recover_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.db");
    let ttl = Duration::from_millis(300);
    let opts = StoreOptions::default().lease_ttl(ttl);
    let dead = SqliteStore::open_with(&path, opts.clone()).unwrap();
    let live = SqliteStore::open_with(&path, opts).unwrap();
    dead.stop_heartbeat();
    suite::recover_interrupted(&dead, &live, ttl, "r").await;
}
