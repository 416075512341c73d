//! The accounts part of the web service's store conformance suite
//! (`pushguide_store::conformance::accounts`), run unchanged against SQLite; pushguide-postgres runs
//! the same checks against PostgreSQL. "Two instances" are two stores opened on one database file.

use pushguide_store::conformance::accounts as suite;
use pushguide_store::SqliteStore;

fn fresh() -> SqliteStore {
    SqliteStore::open_in_memory().unwrap()
}

/// Two stores (two connections, as two processes have) on one fresh file.
fn two_instances(dir: &tempfile::TempDir) -> (SqliteStore, SqliteStore) {
    let path = dir.path().join("accounts.db");
    (
        SqliteStore::open(&path).unwrap(),
        SqliteStore::open(&path).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_users() {
    suite::users(&fresh()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_external_users() {
    suite::external_users(&fresh()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_sessions_expire() {
    suite::sessions_expire(&fresh()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_api_tokens() {
    suite::api_tokens(&fresh()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_audit_log() {
    suite::audit_log(&fresh()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_template_revisions() {
    suite::template_revisions(&fresh()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_user_creation_race() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = two_instances(&dir);
    suite::user_creation_race(&a, &b, 40).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_revision_race() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = two_instances(&dir);
    suite::revision_race(&a, &b, 40).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_sessions_are_shared() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = two_instances(&dir);
    suite::sessions_are_shared(&a, &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_token_creation_race() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = two_instances(&dir);
    suite::token_creation_race(&a, &b, 40).await;
}
