//! The records conformance suite (`pushguide_store::conformance::records`), run unchanged against
//! PostgreSQL (SQLite runs it in pushguide-store's tests), one schema per check.

use std::time::Duration;

use pushguide_store::conformance::records as suite;

use crate::support::{config, store};
use crate::TTL;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_journal_and_results() {
    let Some(c) = config("rec_journal") else {
        return;
    };
    suite::journal_and_results(&store(&c, TTL).await, "j").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_history_pages() {
    let Some(c) = config("rec_history") else {
        return;
    };
    suite::history_pages(&store(&c, TTL).await, "h").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_statistics() {
    let Some(c) = config("rec_stats") else {
        return;
    };
    suite::statistics(&store(&c, TTL).await, "s").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_fleet_and_minions() {
    let Some(c) = config("rec_fleet") else {
        return;
    };
    suite::fleet_and_minions(&store(&c, TTL).await, "f").await;
}

/// Two instances on one schema: the first stops its heartbeat (its process "died"), the second
/// recovers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_recover_interrupted() {
    let Some(c) = config("rec_recover") else {
        return;
    };
    let ttl = Duration::from_millis(500);
    let (dead, live) = (store(&c, ttl).await, store(&c, TTL).await);
    dead.stop_heartbeat();
    suite::recover_interrupted(&dead, &live, ttl, "r").await;
}
