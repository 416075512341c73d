//! API tokens for CI pipelines (schema version 10, table `api_tokens`).
//!
//! The store keeps a token's SHA-256 (hex) computed by the caller, never the token. A token acts as
//! its user with the user's groups at the time of each request; deleting the user deletes their
//! tokens.

use std::time::SystemTime;

use rusqlite::{params, OptionalExtension};

use crate::store::{from_ms, to_ms};
use crate::{Error, SqliteStore};

/// An API token as listed (no secret: neither the token nor its hash).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ApiToken {
    /// Its id (shown in lists, used to revoke it).
    pub id: String,
    /// The user it acts as.
    pub user: String,
    /// What it is for, as its creator named it.
    pub label: String,
    /// When it was made.
    pub created: SystemTime,
    /// When it last authenticated a request.
    pub last_used: Option<SystemTime>,
    /// When it stops working, if ever.
    pub expires: Option<SystemTime>,
}

/// What a valid token authenticates: its user with the user's groups now.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TokenUser {
    /// The token (its id and label).
    pub token: ApiToken,
    /// The user's groups now.
    pub groups: Vec<String>,
}

/// Uses of a token closer together than this update `last_used` once.
const LAST_USED_STEP_MS: i64 = 60_000;

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ApiToken> {
    Ok(ApiToken {
        id: r.get(0)?,
        user: r.get(1)?,
        label: r.get(2)?,
        created: from_ms(r.get(3)?),
        last_used: r.get::<_, Option<i64>>(4)?.map(from_ms),
        expires: r.get::<_, Option<i64>>(5)?.map(from_ms),
    })
}

const COLUMNS: &str = "id, user, label, created_ms, last_used_ms, expires_ms";

impl SqliteStore {
    /// Records a token `id` of `user` under the SHA-256 (hex) of its value. The user must exist
    /// ([`Error::NoSuchUser`]).
    pub fn create_api_token(
        &self,
        id: &str,
        token_sha256: &str,
        user: &str,
        label: &str,
        created: SystemTime,
        expires: Option<SystemTime>,
    ) -> Result<ApiToken, Error> {
        let mut conn = self.conn();
        // IMMEDIATE: the write lock is taken before the existence check, so another process
        // adding at the same moment waits (busy timeout) and then sees the row; a deferred
        // transaction would fail its upgrade to a writer with "database is locked" instead
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| self.err("creating an API token", e))?;
        let exists = tx
            .query_row("SELECT 1 FROM users WHERE name = ?1", [user], |_| Ok(()))
            .optional()
            .map_err(|e| self.err("creating an API token", e))?
            .is_some();
        if !exists {
            return Err(self.no_such_user(user));
        }
        tx.execute(
            "INSERT INTO api_tokens (id, token_sha256, user, label, created_ms, expires_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                id,
                token_sha256,
                user,
                label,
                to_ms(created),
                expires.map(to_ms)
            ],
        )
        .map_err(|e| self.err("creating an API token", e))?;
        tx.commit()
            .map_err(|e| self.err("creating an API token", e))?;
        tracing::info!(user, id, label, "API token created");
        Ok(ApiToken {
            id: id.to_owned(),
            user: user.to_owned(),
            label: label.to_owned(),
            created: from_ms(to_ms(created)),
            last_used: None,
            expires: expires.map(|e| from_ms(to_ms(e))),
        })
    }

    /// The tokens of `user`, or of every user; newest first.
    pub fn api_tokens(&self, user: Option<&str>) -> Result<Vec<ApiToken>, Error> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM api_tokens WHERE ?1 IS NULL OR user = ?1
                 ORDER BY created_ms DESC, id"
            ))
            .map_err(|e| self.err("listing API tokens", e))?;
        let rows = stmt
            .query_map([user], row)
            .map_err(|e| self.err("listing API tokens", e))?;
        rows.collect::<Result<_, _>>()
            .map_err(|e| self.err("listing API tokens", e))
    }

    /// The token `id`, if there is one.
    pub fn api_token(&self, id: &str) -> Result<Option<ApiToken>, Error> {
        self.conn()
            .query_row(
                &format!("SELECT {COLUMNS} FROM api_tokens WHERE id = ?1"),
                [id],
                row,
            )
            .optional()
            .map_err(|e| self.err("reading an API token", e))
    }

    /// The token whose value hashes to `token_sha256`, with its user's groups, if it exists and
    /// has not expired at `now`; marks it used.
    pub fn api_token_user(
        &self,
        token_sha256: &str,
        now: SystemTime,
    ) -> Result<Option<TokenUser>, Error> {
        let conn = self.conn();
        let found: Option<(ApiToken, String)> = conn
            .query_row(
                "SELECT t.id, t.user, t.label, t.created_ms, t.last_used_ms, t.expires_ms, u.groups
                 FROM api_tokens t JOIN users u ON u.name = t.user WHERE t.token_sha256 = ?1",
                [token_sha256],
                |r| Ok((row(r)?, r.get(6)?)),
            )
            .optional()
            .map_err(|e| self.err("reading an API token", e))?;
        let Some((token, groups)) = found else {
            return Ok(None);
        };
        let now_ms = to_ms(now);
        if token.expires.is_some_and(|e| to_ms(e) <= now_ms) {
            tracing::debug!(id = token.id, user = token.user, "API token expired");
            return Ok(None);
        }
        conn.execute(
            "UPDATE api_tokens SET last_used_ms = ?2
             WHERE id = ?1 AND (last_used_ms IS NULL OR last_used_ms <= ?2 - ?3)",
            params![token.id, now_ms, LAST_USED_STEP_MS],
        )
        .map_err(|e| self.err("marking an API token used", e))?;
        drop(conn);
        let groups = serde_json::from_str(&groups).map_err(|e| Error::Damaged {
            path: self.path().to_path_buf(),
            what: "user",
            key: token.user.clone(),
            reason: format!("groups are not a JSON list of names: {e}"),
        })?;
        Ok(Some(TokenUser { token, groups }))
    }

    /// Deletes (revokes) the token `id`; whether there was one.
    pub fn delete_api_token(&self, id: &str) -> Result<bool, Error> {
        let n = self
            .conn()
            .execute("DELETE FROM api_tokens WHERE id = ?1", [id])
            .map_err(|e| self.err("revoking an API token", e))?;
        if n > 0 {
            tracing::info!(id, "API token revoked");
        }
        Ok(n > 0)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use super::*;

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    #[test]
    fn tokens_authenticate_until_revoked_expired_or_their_user_goes() {
        let s = SqliteStore::open_in_memory().unwrap();
        s.put_user("alice", "h", &["ops".into()], false, t(0))
            .unwrap();
        s.put_user("bob", "h", &["devs".into()], false, t(0))
            .unwrap();
        let err = s
            .create_api_token("x", "hx", "carol", "ci", t(0), None)
            .unwrap_err();
        assert!(matches!(err, Error::NoSuchUser { .. }), "{err:?}");

        let a = s
            .create_api_token("a1", "ha1", "alice", "ci", t(1), None)
            .unwrap();
        s.create_api_token("a2", "ha2", "alice", "short", t(2), Some(t(100)))
            .unwrap();
        s.create_api_token("b1", "hb1", "bob", "bob's", t(3), None)
            .unwrap();
        assert_eq!(s.api_token("a1").unwrap().unwrap(), a);
        let ids = |v: Vec<ApiToken>| v.into_iter().map(|t| t.id).collect::<Vec<_>>();
        assert_eq!(ids(s.api_tokens(None).unwrap()), ["b1", "a2", "a1"]);
        assert_eq!(ids(s.api_tokens(Some("alice")).unwrap()), ["a2", "a1"]);

        let got = s.api_token_user("ha1", t(10)).unwrap().unwrap();
        assert_eq!(
            (got.token.user.as_str(), got.groups.clone()),
            ("alice", vec!["ops".to_owned()])
        );
        assert_eq!(s.api_token("a1").unwrap().unwrap().last_used, Some(t(10)));
        // groups are the user's now
        s.set_user_groups("alice", &["admins".into()]).unwrap();
        assert_eq!(
            s.api_token_user("ha1", t(11)).unwrap().unwrap().groups,
            ["admins"]
        );
        assert_eq!(s.api_token_user("nope", t(10)).unwrap(), None);

        assert!(s.api_token_user("ha2", t(99)).unwrap().is_some());
        assert_eq!(s.api_token_user("ha2", t(100)).unwrap(), None, "expired");

        assert!(s.delete_api_token("a1").unwrap());
        assert!(!s.delete_api_token("a1").unwrap());
        assert_eq!(s.api_token_user("ha1", t(12)).unwrap(), None, "revoked");

        s.delete_user("bob").unwrap();
        assert_eq!(s.api_token_user("hb1", t(12)).unwrap(), None);
        assert_eq!(s.api_tokens(Some("bob")).unwrap(), []);
        let dbg = format!("{:?}", s.api_tokens(None).unwrap());
        assert!(!dbg.contains("ha2"), "{dbg}");
    }
}
