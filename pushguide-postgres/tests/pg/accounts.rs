//! The accounts part of the web service's store conformance suite
//! (`pushguide_store::conformance::accounts`), run unchanged against PostgreSQL, one schema per
//! check; "two instances" are two `PgStore`s (two pools) on one schema. Plus what only PostgreSQL
//! shows: errors name the endpoint and never the password, and the tables keep token hashes only.

use pushguide_postgres::PgStore;
use pushguide_store::conformance::accounts as suite;
use pushguide_store::{AccountStore, Error};

use crate::support::{config, raw, store};
use crate::TTL;

async fn fresh(test: &str) -> Option<PgStore> {
    let c = config(test)?;
    Some(store(&c, TTL).await)
}

async fn two_instances(test: &str) -> Option<(PgStore, PgStore)> {
    let c = config(test)?;
    let (a, b) = (store(&c, TTL).await, store(&c, TTL).await);
    assert_ne!(a.owner(), b.owner(), "two instances");
    Some((a, b))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_users() {
    let Some(s) = fresh("acc_users").await else {
        return;
    };
    suite::users(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_external_users() {
    let Some(s) = fresh("acc_external").await else {
        return;
    };
    suite::external_users(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_sessions_expire() {
    let Some(s) = fresh("acc_sessions").await else {
        return;
    };
    suite::sessions_expire(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_api_tokens() {
    let Some(s) = fresh("acc_tokens").await else {
        return;
    };
    suite::api_tokens(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_audit_log() {
    let Some(s) = fresh("acc_audit").await else {
        return;
    };
    suite::audit_log(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_template_revisions() {
    let Some(s) = fresh("acc_revisions").await else {
        return;
    };
    suite::template_revisions(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_user_creation_race() {
    let Some((a, b)) = two_instances("acc_user_race").await else {
        return;
    };
    suite::user_creation_race(&a, &b, 40).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_revision_race() {
    let Some((a, b)) = two_instances("acc_rev_race").await else {
        return;
    };
    suite::revision_race(&a, &b, 40).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_sessions_are_shared() {
    let Some((a, b)) = two_instances("acc_shared").await else {
        return;
    };
    suite::sessions_are_shared(&a, &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_token_creation_race() {
    let Some((a, b)) = two_instances("acc_token_race").await else {
        return;
    };
    suite::token_creation_race(&a, &b, 40).await;
}

/// `NoSuchUser`/`UserExists` name the endpoint (`host:port/database`), never the password; a
/// failing statement comes back as `Backend` naming PostgreSQL; the tables hold only what the
/// caller passed as hashes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_errors_name_the_endpoint_and_tables_keep_hashes_only() {
    let Some(c) = config("acc_errors") else {
        return;
    };
    let s = store(&c, TTL).await;
    let endpoint = c.endpoint();
    let password = std::env::var("PUSHGUIDE_PG_PASSWORD_FILE")
        .ok()
        .and_then(|f| std::fs::read_to_string(f).ok())
        .or_else(|| std::env::var("PUSHGUIDE_PG_PASSWORD").ok())
        .map(|p| p.lines().next().unwrap_or_default().to_owned())
        .filter(|p| !p.is_empty());

    let err = s.set_user_groups("carol", &[]).await.unwrap_err();
    match &err {
        Error::NoSuchUser { path, name } => {
            assert_eq!(path.to_str(), Some(endpoint.as_str()), "{err:?}");
            assert_eq!(name, "carol");
        }
        other => panic!("expected NoSuchUser, got {other:?}"),
    }
    let now = std::time::SystemTime::now();
    s.put_user("alice", "$argon2id$h", &[], false, now)
        .await
        .unwrap();
    let exists = s.put_user("alice", "x", &[], false, now).await.unwrap_err();
    assert!(
        matches!(&exists, Error::UserExists { path, .. } if path.to_str() == Some(endpoint.as_str())),
        "{exists:?}"
    );
    // a session of an unknown user trips the foreign key: a Backend error from PostgreSQL
    let backend = s
        .create_session("h-s", "nobody", "c", now)
        .await
        .unwrap_err();
    assert!(
        matches!(
            &backend,
            Error::Backend {
                backend: "postgres",
                retryable: false,
                ..
            }
        ),
        "{backend:?}"
    );
    for e in [&err, &exists, &backend] {
        let text = format!("{e} {e:?}");
        assert!(text.contains(&endpoint), "{text}");
        if let Some(p) = &password {
            assert!(!text.contains(p.as_str()), "an error shows the password");
        }
    }

    s.create_session("sha-of-session", "alice", "csrf", now)
        .await
        .unwrap();
    s.create_api_token("t1", "sha-of-token", "alice", "ci", now, None)
        .await
        .unwrap();
    let db = raw(&c).await;
    let sessions: Vec<String> = db
        .query("SELECT token_sha256 FROM sessions", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(sessions, ["sha-of-session"]);
    let tokens: Vec<String> = db
        .query("SELECT token_sha256 FROM api_tokens", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(tokens, ["sha-of-token"]);
}
