//! The queue checks of the web service's store conformance suite (`pushguide_store::conformance::
//! queue`), run unchanged against SQLite; pushguide-postgres runs the same checks against
//! PostgreSQL. "Instances" are several stores opened on one database file.

use std::sync::Arc;
use std::time::Duration;

use pushguide_store::conformance::queue as suite;
use pushguide_store::{SqliteStore, StoreOptions};

fn file(dir: &tempfile::TempDir) -> std::path::PathBuf {
    dir.path().join("queue.db")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_per_template() {
    suite::order_per_template(&SqliteStore::open_in_memory().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_running_per_template() {
    suite::one_running_per_template(&SqliteStore::open_in_memory().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel() {
    suite::cancel(&SqliteStore::open_in_memory().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_claimer_writes() {
    let dir = tempfile::tempdir().unwrap();
    let a = SqliteStore::open(file(&dir)).unwrap();
    let b = SqliteStore::open(file(&dir)).unwrap();
    suite::only_the_claimer_writes(&a, &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupt_dead_publishes() {
    let dir = tempfile::tempdir().unwrap();
    let ttl = Duration::from_secs(1);
    let opts = StoreOptions::default().lease_ttl(ttl);
    let live = SqliteStore::open_with(file(&dir), opts.clone()).unwrap();
    let dead = SqliteStore::open_with(file(&dir), opts).unwrap();
    suite::interrupt_dead_publishes(&live, &dead, || dead.stop_heartbeat(), ttl).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_claimers_each_request_once() {
    let dir = tempfile::tempdir().unwrap();
    let stores: Vec<Arc<SqliteStore>> = (0..3)
        .map(|_| Arc::new(SqliteStore::open(file(&dir)).unwrap()))
        .collect();
    suite::concurrent_claimers_each_request_once(&stores, 4, 30, 5).await;
}
