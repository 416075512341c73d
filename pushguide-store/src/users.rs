//! Managing web service accounts (the admin page): listing, changing groups, deleting, and the
//! accounts a trusted reverse proxy names.

use std::time::SystemTime;

use rusqlite::{params, OptionalExtension};

use crate::auth::User;
use crate::store::{from_ms, to_ms};
use crate::{Error, SqliteStore};

/// The password column of an account made for a reverse proxy's user: not a PHC string, so no
/// password ever matches it.
pub const NO_PASSWORD: &str = "!no-password";

impl SqliteStore {
    /// Every user, by name.
    pub fn users(&self) -> Result<Vec<User>, Error> {
        let rows: Vec<(String, String, String, i64)> = {
            let conn = self.conn();
            let mut stmt = conn
                .prepare_cached(
                    "SELECT name, password, groups, created_ms FROM users ORDER BY name",
                )
                .map_err(|e| self.err("listing users", e))?;
            let rows = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .map_err(|e| self.err("listing users", e))?;
            rows.collect::<Result<_, _>>()
                .map_err(|e| self.err("listing users", e))?
        };
        rows.into_iter()
            .map(|(name, password_hash, groups, created)| {
                Ok(User {
                    groups: self.user_groups(&name, &groups)?,
                    name,
                    password_hash,
                    created: from_ms(created),
                })
            })
            .collect()
    }

    /// Replaces the groups of the user `name` ([`Error::NoSuchUser`] when there is none). Sessions
    /// and API tokens read the groups on every request, so the change takes effect at once.
    pub fn set_user_groups(&self, name: &str, groups: &[String]) -> Result<(), Error> {
        let json = self.groups_json(name, groups)?;
        let n = self
            .conn()
            .execute(
                "UPDATE users SET groups = ?2 WHERE name = ?1",
                params![name, json],
            )
            .map_err(|e| self.err("changing a user's groups", e))?;
        if n == 0 {
            return Err(self.no_such_user(name));
        }
        tracing::info!(user = name, ?groups, "web user's groups changed");
        Ok(())
    }

    /// Deletes the user `name` with their sessions and API tokens; whether there was one.
    pub fn delete_user(&self, name: &str) -> Result<bool, Error> {
        let n = self
            .conn()
            .execute("DELETE FROM users WHERE name = ?1", [name])
            .map_err(|e| self.err("deleting a user", e))?;
        if n > 0 {
            tracing::info!(user = name, "web user deleted");
        }
        Ok(n > 0)
    }

    /// The account of a user a trusted reverse proxy authenticated: added with no usable password
    /// ([`NO_PASSWORD`]) when new, its groups set to `groups` when they differ (the proxy's
    /// groups are authoritative; API tokens of the user act with the last ones it sent). An
    /// existing account keeps its password.
    pub fn external_user(
        &self,
        name: &str,
        groups: &[String],
        now: SystemTime,
    ) -> Result<(), Error> {
        let json = self.groups_json(name, groups)?;
        let conn = self.conn();
        let stored: Option<String> = conn
            .query_row("SELECT groups FROM users WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| self.err("reading a user", e))?;
        if stored.as_deref() == Some(json.as_str()) {
            return Ok(());
        }
        conn.execute(
            "INSERT INTO users (name, password, groups, created_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (name) DO UPDATE SET groups = excluded.groups",
            params![name, NO_PASSWORD, json, to_ms(now)],
        )
        .map_err(|e| self.err("recording a proxy user", e))?;
        tracing::info!(user = name, new = stored.is_none(), "proxy user recorded");
        Ok(())
    }

    fn groups_json(&self, name: &str, groups: &[String]) -> Result<String, Error> {
        serde_json::to_string(groups).map_err(|e| Error::Damaged {
            path: self.path().to_path_buf(),
            what: "user",
            key: name.to_owned(),
            reason: format!("groups do not serialize: {e}"),
        })
    }

    fn user_groups(&self, user: &str, json: &str) -> Result<Vec<String>, Error> {
        serde_json::from_str(json).map_err(|e| Error::Damaged {
            path: self.path().to_path_buf(),
            what: "user",
            key: user.to_owned(),
            reason: format!("groups are not a JSON list of names: {e}"),
        })
    }

    pub(crate) fn no_such_user(&self, name: &str) -> Error {
        Error::NoSuchUser {
            path: self.path().to_path_buf(),
            name: name.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use super::*;
    use crate::SessionLimits;

    const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA";
    const LIMITS: SessionLimits = SessionLimits {
        idle: Duration::from_secs(600),
        max: Duration::from_secs(3600),
    };

    #[test]
    fn users_are_listed_regrouped_and_deleted_with_their_sessions() {
        let s = SqliteStore::open_in_memory().unwrap();
        let now = SystemTime::now();
        s.put_user("bob", HASH, &["devs".into()], false, now)
            .unwrap();
        s.put_user("alice", HASH, &["ops".into()], false, now)
            .unwrap();
        let names: Vec<String> = s.users().unwrap().into_iter().map(|u| u.name).collect();
        assert_eq!(names, ["alice", "bob"]);

        s.create_session("tok", "bob", "c", now).unwrap();
        s.set_user_groups("bob", &["ops".into(), "qa".into()])
            .unwrap();
        // the session lives on and sees the new groups
        let sess = s.session("tok", LIMITS, now).unwrap().unwrap();
        assert_eq!(sess.groups, ["ops", "qa"]);
        let err = s.set_user_groups("carol", &[]).unwrap_err();
        assert!(
            matches!(err, Error::NoSuchUser { ref name, .. } if name == "carol"),
            "{err:?}"
        );
        assert!(err.to_string().contains("`carol`"), "{err}");

        assert!(s.delete_user("bob").unwrap());
        assert!(!s.delete_user("bob").unwrap());
        assert_eq!(s.user("bob").unwrap(), None);
        assert_eq!(s.session("tok", LIMITS, now).unwrap(), None);
    }

    #[test]
    fn a_proxy_user_gets_an_account_without_a_password() {
        let s = SqliteStore::open_in_memory().unwrap();
        let now = SystemTime::now();
        s.external_user("carol", &["devs".into()], now).unwrap();
        let u = s.user("carol").unwrap().unwrap();
        assert_eq!(
            (u.password_hash.as_str(), u.groups.clone()),
            (NO_PASSWORD, vec!["devs".to_owned()])
        );
        s.external_user("carol", &["ops".into()], now).unwrap();
        assert_eq!(s.user("carol").unwrap().unwrap().groups, ["ops"]);
        // a local account keeps its password
        s.put_user("alice", HASH, &[], false, now).unwrap();
        s.external_user("alice", &["ops".into()], now).unwrap();
        let a = s.user("alice").unwrap().unwrap();
        assert_eq!((a.password_hash.as_str(), a.groups.len()), (HASH, 1));
    }
}
