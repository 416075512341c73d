//! Web service accounts and sessions (schema version 9).
//!
//! The store keeps what it is given: a password as an argon2id PHC string hashed by the caller, a
//! session token as its SHA-256 (hex) computed by the caller. Neither a password nor a session token
//! ever reaches the database, a log line or a `Debug` output.

use std::fmt;
use std::time::{Duration, SystemTime};

use rusqlite::{params, OptionalExtension};

use crate::store::{from_ms, to_ms};
use crate::{Error, SqliteStore};

/// A web service account.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct User {
    /// The user name (the principal's name in templates' ACLs).
    pub name: String,
    /// The password as an argon2id PHC string (`$argon2id$v=19$…`).
    pub password_hash: String,
    /// The user's groups (the principal's groups in templates' ACLs).
    pub groups: Vec<String>,
    /// When the account was added (or last replaced).
    pub created: SystemTime,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("password_hash", &"<hidden>")
            .field("groups", &self.groups)
            .field("created", &self.created)
            .finish()
    }
}

/// A live session, as [`SqliteStore::session`] found it.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Session {
    /// The user.
    pub user: String,
    /// The user's groups now (read with the session, so a changed account takes effect at once).
    pub groups: Vec<String>,
    /// The session's CSRF token (sent back with every state-changing request).
    pub csrf: String,
    /// When the session was created (the login).
    pub created: SystemTime,
    /// When the session was last used (before this lookup).
    pub last_seen: SystemTime,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("user", &self.user)
            .field("groups", &self.groups)
            .field("csrf", &"<hidden>")
            .field("created", &self.created)
            .field("last_seen", &self.last_seen)
            .finish()
    }
}

/// How long a session lives: `idle` since it was last used, `max` since the login.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionLimits {
    /// Unused this long, a session ends.
    pub idle: Duration,
    /// This long after the login, a session ends however much it is used.
    pub max: Duration,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl SqliteStore {
    /// Adds the user `name` with an argon2id PHC `password_hash` and `groups`. An existing user is
    /// [`Error::UserExists`] unless `replace` (then its password and groups are replaced and its
    /// sessions end).
    pub fn put_user(
        &self,
        name: &str,
        password_hash: &str,
        groups: &[String],
        replace: bool,
        now: SystemTime,
    ) -> Result<(), Error> {
        let groups_json = serde_json::to_string(groups).map_err(|e| Error::Damaged {
            path: self.path().to_path_buf(),
            what: "user",
            key: name.to_owned(),
            reason: format!("groups do not serialize: {e}"),
        })?;
        let mut conn = self.conn();
        // IMMEDIATE: the write lock is taken before the existence check, so another process
        // adding at the same moment waits (busy timeout) and then sees the row; a deferred
        // transaction would fail its upgrade to a writer with "database is locked" instead
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| self.err("adding a user", e))?;
        let exists: bool = tx
            .query_row("SELECT 1 FROM users WHERE name = ?1", [name], |_| Ok(()))
            .optional()
            .map_err(|e| self.err("adding a user", e))?
            .is_some();
        if exists && !replace {
            return Err(Error::UserExists {
                path: self.path().to_path_buf(),
                name: name.to_owned(),
            });
        }
        tx.execute("DELETE FROM sessions WHERE user = ?1", [name])
            .map_err(|e| self.err("ending a replaced user's sessions", e))?;
        tx.execute(
            "INSERT INTO users (name, password, groups, created_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (name) DO UPDATE SET password = excluded.password,
                 groups = excluded.groups, created_ms = excluded.created_ms",
            params![name, password_hash, groups_json, to_ms(now)],
        )
        .map_err(|e| self.err("adding a user", e))?;
        tx.commit().map_err(|e| self.err("adding a user", e))?;
        tracing::info!(user = name, replaced = exists, "web user stored");
        Ok(())
    }

    /// The user `name`, if there is one.
    pub fn user(&self, name: &str) -> Result<Option<User>, Error> {
        let row: Option<(String, String, String, i64)> = self
            .conn()
            .query_row(
                "SELECT name, password, groups, created_ms FROM users WHERE name = ?1",
                [name],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()
            .map_err(|e| self.err("reading a user", e))?;
        row.map(|(name, password_hash, groups, created)| {
            Ok(User {
                groups: self.groups(&name, &groups)?,
                name,
                password_hash,
                created: from_ms(created),
            })
        })
        .transpose()
    }

    fn groups(&self, user: &str, json: &str) -> Result<Vec<String>, Error> {
        serde_json::from_str(json).map_err(|e| Error::Damaged {
            path: self.path().to_path_buf(),
            what: "user",
            key: user.to_owned(),
            reason: format!("groups are not a JSON list of names: {e}"),
        })
    }

    /// Records a new session of `user` under the SHA-256 (hex) of its token, with its CSRF token.
    pub fn create_session(
        &self,
        token_sha256: &str,
        user: &str,
        csrf: &str,
        now: SystemTime,
    ) -> Result<(), Error> {
        let now = to_ms(now);
        self.conn()
            .execute(
                "INSERT INTO sessions (token_sha256, user, csrf, created_ms, last_seen_ms)
                 VALUES (?1, ?2, ?3, ?4, ?4)",
                params![token_sha256, user, csrf, now],
            )
            .map_err(|e| self.err("creating a session", e))?;
        Ok(())
    }

    /// The live session whose token hashes to `token_sha256`, marked as seen `now`. A session unused
    /// for longer than `limits.idle`, or older than `limits.max`, is refused (`None`) and deleted;
    /// so is one whose user no longer exists.
    pub fn session(
        &self,
        token_sha256: &str,
        limits: SessionLimits,
        now: SystemTime,
    ) -> Result<Option<Session>, Error> {
        let now_ms = to_ms(now);
        let conn = self.conn();
        let row: Option<(String, String, String, i64, i64)> = conn
            .query_row(
                "SELECT s.user, u.groups, s.csrf, s.created_ms, s.last_seen_ms
                 FROM sessions s JOIN users u ON u.name = s.user
                 WHERE s.token_sha256 = ?1",
                [token_sha256],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .optional()
            .map_err(|e| self.err("reading a session", e))?;
        let Some((user, groups, csrf, created, last_seen)) = row else {
            return Ok(None);
        };
        let idle_over = now_ms.saturating_sub(last_seen) > ms(limits.idle);
        let max_over = now_ms.saturating_sub(created) > ms(limits.max);
        if idle_over || max_over {
            conn.execute(
                "DELETE FROM sessions WHERE token_sha256 = ?1",
                [token_sha256],
            )
            .map_err(|e| self.err("ending an expired session", e))?;
            tracing::debug!(user, idle_over, max_over, "session expired");
            return Ok(None);
        }
        conn.execute(
            "UPDATE sessions SET last_seen_ms = max(last_seen_ms, ?2) WHERE token_sha256 = ?1",
            params![token_sha256, now_ms],
        )
        .map_err(|e| self.err("marking a session seen", e))?;
        drop(conn);
        Ok(Some(Session {
            groups: self.groups(&user, &groups)?,
            user,
            csrf,
            created: from_ms(created),
            last_seen: from_ms(last_seen),
        }))
    }

    /// Ends the session whose token hashes to `token_sha256`; whether there was one.
    pub fn delete_session(&self, token_sha256: &str) -> Result<bool, Error> {
        let n = self
            .conn()
            .execute(
                "DELETE FROM sessions WHERE token_sha256 = ?1",
                [token_sha256],
            )
            .map_err(|e| self.err("ending a session", e))?;
        Ok(n > 0)
    }

    /// Deletes every session past `limits` at `now`; how many.
    pub fn purge_sessions(&self, limits: SessionLimits, now: SystemTime) -> Result<usize, Error> {
        let now = to_ms(now);
        self.conn()
            .execute(
                "DELETE FROM sessions WHERE ?1 - last_seen_ms > ?2 OR ?1 - created_ms > ?3",
                params![now, ms(limits.idle), ms(limits.max)],
            )
            .map_err(|e| self.err("purging expired sessions", e))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::schema::database_at_version;
    use crate::SCHEMA_VERSION;

    const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA";

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    const LIMITS: SessionLimits = SessionLimits {
        idle: Duration::from_secs(600),
        max: Duration::from_secs(3600),
    };

    #[test]
    fn users_are_added_once_unless_replaced() {
        let s = SqliteStore::open_in_memory().unwrap();
        assert_eq!(s.user("alice").unwrap(), None);
        s.put_user("alice", HASH, &["ops".into()], false, t(0))
            .unwrap();
        let u = s.user("alice").unwrap().unwrap();
        assert_eq!(
            (u.name.as_str(), u.groups.clone()),
            ("alice", vec!["ops".into()])
        );
        assert_eq!(u.password_hash, HASH);
        let dbg = format!("{u:?}");
        assert!(
            !dbg.contains("argon2id") && dbg.contains("<hidden>"),
            "{dbg}"
        );

        let err = s.put_user("alice", "other", &[], false, t(1)).unwrap_err();
        assert!(
            matches!(err, Error::UserExists { ref name, .. } if name == "alice"),
            "{err:?}"
        );
        assert_eq!(s.user("alice").unwrap().unwrap().password_hash, HASH);

        s.create_session("tok", "alice", "csrf", t(1)).unwrap();
        s.put_user("alice", "new", &["dev".into(), "qa".into()], true, t(2))
            .unwrap();
        let u = s.user("alice").unwrap().unwrap();
        assert_eq!((u.password_hash.as_str(), u.groups.len()), ("new", 2));
        // replacing a user ends their sessions
        assert_eq!(s.session("tok", LIMITS, t(3)).unwrap(), None);
    }

    #[test]
    fn a_session_ends_after_idle_or_absolute_expiry() {
        let s = SqliteStore::open_in_memory().unwrap();
        s.put_user("alice", HASH, &["ops".into()], false, t(0))
            .unwrap();
        s.create_session("a", "alice", "csrf-a", t(0)).unwrap();
        // used every 500 s (under idle), it lives until the absolute limit
        let mut at = 0;
        while at + 500 <= 3600 {
            at += 500;
            let got = s.session("a", LIMITS, t(at)).unwrap().unwrap();
            assert_eq!((got.user.as_str(), got.csrf.as_str()), ("alice", "csrf-a"));
            assert_eq!(got.groups, ["ops"]);
            assert!(!format!("{got:?}").contains("csrf-a"));
        }
        assert_eq!(s.session("a", LIMITS, t(3601)).unwrap(), None, "past max");
        // and is gone for good
        assert_eq!(s.session("a", LIMITS, t(0)).unwrap(), None);

        s.create_session("b", "alice", "csrf-b", t(0)).unwrap();
        assert!(s.session("b", LIMITS, t(600)).unwrap().is_some(), "at idle");
        assert_eq!(s.session("b", LIMITS, t(1201)).unwrap(), None, "past idle");

        assert_eq!(s.session("unknown", LIMITS, t(0)).unwrap(), None);
        s.create_session("c", "alice", "x", t(0)).unwrap();
        assert!(s.delete_session("c").unwrap());
        assert!(!s.delete_session("c").unwrap());
        assert_eq!(s.session("c", LIMITS, t(1)).unwrap(), None);

        s.create_session("d", "alice", "x", t(0)).unwrap();
        s.create_session("e", "alice", "x", t(900)).unwrap();
        assert_eq!(s.purge_sessions(LIMITS, t(1000)).unwrap(), 1);
        assert!(s.session("e", LIMITS, t(1000)).unwrap().is_some());
    }

    #[test]
    fn damaged_groups_are_a_typed_error() {
        let s = SqliteStore::open_in_memory().unwrap();
        s.conn()
            .execute_batch(
                "INSERT INTO users (name, password, groups, created_ms) VALUES ('bob', 'h', '{', 0)",
            )
            .unwrap();
        let err = s.user("bob").unwrap_err();
        assert!(
            matches!(err, Error::Damaged { what: "user", .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("`bob`"), "{err}");
    }

    /// A schema 8 database (the version before accounts) keeps its history and gains the tables.
    #[test]
    fn schema_8_keeps_its_data_and_gains_users() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v8.db");
        {
            let conn = database_at_version(&path, 8);
            conn.execute_batch(
                "INSERT INTO deployments (id, template, version, principal, dry_run, started_ms,
                    owner, last_event_ms, ended_ms, duration_ms, outcome)
                 VALUES ('d1', 'shop', '2.0', 'alice', 0, 1000, 'old', 9000, 9000, 8000,
                         'succeeded');",
            )
            .unwrap();
        }
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
        let d = s.deployment("d1").unwrap().unwrap();
        assert_eq!(
            (d.version.as_str(), d.outcome.as_deref()),
            ("2.0", Some("succeeded"))
        );
        s.put_user("alice", HASH, &[], false, t(0)).unwrap();
        assert!(s.user("alice").unwrap().is_some());
    }
}
