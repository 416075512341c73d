//! The web service's accounts on PostgreSQL: [`AccountStore`] for [`PgStore`] — users, sessions,
//! API tokens, the audit log and template revisions, shared by every instance on the database.
//!
//! The semantics are the SQLite store's (`pushguide-store`'s `auth`, `users`, `tokens`, `audit` and
//! `revisions` modules), checked by the same conformance suite. Times are kept as the milliseconds
//! the caller passed, as SQLite keeps them, so session expiry is decided on the caller's `now` and
//! compares exactly as there. Where SQLite relies on its single writer, this module relies on
//! constraints: a user is added with `INSERT … ON CONFLICT DO NOTHING` on its primary key (of two
//! instances adding one name at once, exactly one row is inserted), and a revision is inserted under
//! the next number only while the newest is still the caller's base, the primary key turning the
//! loser of a race into a stale save.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use pushguide_store::{
    AccountStore, ApiToken, AuditEntry, Error, RevisionWrite, Session, SessionLimits,
    TemplateRevision, TokenUser, User,
};
use tokio_postgres::error::SqlState;
use tokio_postgres::Row;

use crate::sql::Sql;
use crate::store::PgStore;

/// Uses of a token closer together than this update `last_used` once (as in SQLite).
const LAST_USED_STEP_MS: i64 = 60_000;

/// How often a save of the next revision is tried again after another instance took the number
/// (each retry follows another instance's stored revision, so this bounds a pathological run only).
const REVISION_ATTEMPTS: u32 = 100;

fn to_ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

fn from_ms(ms: i64) -> SystemTime {
    if ms >= 0 {
        UNIX_EPOCH + Duration::from_millis(ms.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_millis(ms.unsigned_abs())
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

const USER_COLUMNS: &str = "name, password, groups, created_ms";

fn user_row(r: &Row) -> User {
    User::new(r.get(0), r.get(1), r.get(2), from_ms(r.get(3)))
}

const TOKEN_COLUMNS: &str = "id, user_name, label, created_ms, last_used_ms, expires_ms";

fn token_row(r: &Row) -> ApiToken {
    ApiToken::new(
        r.get(0),
        r.get(1),
        r.get(2),
        from_ms(r.get(3)),
        r.get::<_, Option<i64>>(4).map(from_ms),
        r.get::<_, Option<i64>>(5).map(from_ms),
    )
}

fn revision_row(r: &Row) -> TemplateRevision {
    TemplateRevision::new(
        r.get(0),
        r.get(1),
        r.get(2),
        from_ms(r.get(3)),
        r.get(4),
        r.get(5),
    )
}

impl PgStore {
    /// The web service's error for a failed statement.
    fn fail(&self, during: &'static str, e: tokio_postgres::Error) -> Error {
        self.db(during, e).into()
    }

    /// Where the store errors of this module say the database is: `host:port/database` (never a
    /// password).
    fn where_(&self) -> PathBuf {
        PathBuf::from(&self.inner.endpoint)
    }

    fn no_such_user(&self, name: &str) -> Error {
        Error::NoSuchUser {
            path: self.where_(),
            name: name.to_owned(),
        }
    }

    async fn latest_revision(&self, template: &str) -> Result<i64, Error> {
        let during = "reading template revisions";
        let client = self.client(during).await?;
        let row = client
            .one(
                "SELECT COALESCE(MAX(revision), 0)::int8 FROM template_revisions
                 WHERE template = $1",
                &[&template],
            )
            .await
            .map_err(|e| self.fail(during, e))?;
        Ok(row.get(0))
    }
}

#[async_trait]
impl AccountStore for PgStore {
    async fn user(&self, name: &str) -> Result<Option<User>, Error> {
        let during = "reading a user";
        let client = self.client(during).await?;
        let row = client
            .opt(
                &format!("SELECT {USER_COLUMNS} FROM users WHERE name = $1"),
                &[&name],
            )
            .await
            .map_err(|e| self.fail(during, e))?;
        Ok(row.as_ref().map(user_row))
    }

    async fn put_user(
        &self,
        name: &str,
        password_hash: &str,
        groups: &[String],
        replace: bool,
        now: SystemTime,
    ) -> Result<(), Error> {
        let during = "adding a user";
        let now = to_ms(now);
        let mut client = self.client(during).await?;
        if !replace {
            // one statement on the primary key: of two instances adding the name at once, exactly
            // one inserts; the other waits for its commit and inserts nothing
            let n = client
                .exec(
                    "INSERT INTO users (name, password, groups, created_ms)
                     VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING",
                    &[&name, &password_hash, &groups, &now],
                )
                .await
                .map_err(|e| self.fail(during, e))?;
            if n == 0 {
                return Err(Error::UserExists {
                    path: self.where_(),
                    name: name.to_owned(),
                });
            }
            tracing::info!(user = name, replaced = false, "web user stored");
            return Ok(());
        }
        let tx = client
            .transaction()
            .await
            .map_err(|e| self.fail(during, e))?;
        let inserted: bool = tx
            .one(
                "INSERT INTO users (name, password, groups, created_ms) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (name) DO UPDATE SET password = excluded.password,
                     groups = excluded.groups, created_ms = excluded.created_ms
                 RETURNING xmax = 0",
                &[&name, &password_hash, &groups, &now],
            )
            .await
            .map_err(|e| self.fail(during, e))?
            .get(0);
        tx.exec("DELETE FROM sessions WHERE user_name = $1", &[&name])
            .await
            .map_err(|e| self.fail("ending a replaced user's sessions", e))?;
        tx.commit().await.map_err(|e| self.fail(during, e))?;
        tracing::info!(user = name, replaced = !inserted, "web user stored");
        Ok(())
    }

    async fn users(&self) -> Result<Vec<User>, Error> {
        let during = "listing users";
        let client = self.client(during).await?;
        // byte order, as SQLite's BINARY collation (the database's collation may differ)
        let rows = client
            .rows(
                &format!("SELECT {USER_COLUMNS} FROM users ORDER BY name COLLATE \"C\""),
                &[],
            )
            .await
            .map_err(|e| self.fail(during, e))?;
        Ok(rows.iter().map(user_row).collect())
    }

    async fn set_user_groups(&self, name: &str, groups: &[String]) -> Result<(), Error> {
        let during = "changing a user's groups";
        let client = self.client(during).await?;
        let n = client
            .exec(
                "UPDATE users SET groups = $2 WHERE name = $1",
                &[&name, &groups],
            )
            .await
            .map_err(|e| self.fail(during, e))?;
        if n == 0 {
            return Err(self.no_such_user(name));
        }
        tracing::info!(user = name, ?groups, "web user's groups changed");
        Ok(())
    }

    async fn delete_user(&self, name: &str) -> Result<bool, Error> {
        let during = "deleting a user";
        let client = self.client(during).await?;
        // sessions and API tokens go with it (ON DELETE CASCADE)
        let n = client
            .exec("DELETE FROM users WHERE name = $1", &[&name])
            .await
            .map_err(|e| self.fail(during, e))?;
        if n > 0 {
            tracing::info!(user = name, "web user deleted");
        }
        Ok(n > 0)
    }

    async fn external_user(
        &self,
        name: &str,
        groups: &[String],
        now: SystemTime,
    ) -> Result<(), Error> {
        let during = "recording a proxy user";
        let client = self.client(during).await?;
        // one statement: added when new, regrouped when the groups differ, untouched otherwise (no
        // row comes back); an existing account keeps its password and creation time
        let row = client
            .opt(
                "INSERT INTO users (name, password, groups, created_ms) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (name) DO UPDATE SET groups = excluded.groups
                     WHERE users.groups IS DISTINCT FROM excluded.groups
                 RETURNING xmax = 0",
                &[&name, &pushguide_store::NO_PASSWORD, &groups, &to_ms(now)],
            )
            .await
            .map_err(|e| self.fail(during, e))?;
        if let Some(row) = row {
            let new: bool = row.get(0);
            tracing::info!(user = name, new, "proxy user recorded");
        }
        Ok(())
    }

    async fn create_session(
        &self,
        token_sha256: &str,
        user: &str,
        csrf: &str,
        now: SystemTime,
    ) -> Result<(), Error> {
        let during = "creating a session";
        let client = self.client(during).await?;
        client
            .exec(
                "INSERT INTO sessions (token_sha256, user_name, csrf, created_ms, last_seen_ms)
                 VALUES ($1, $2, $3, $4, $4)",
                &[&token_sha256, &user, &csrf, &to_ms(now)],
            )
            .await
            .map_err(|e| self.fail(during, e))?;
        Ok(())
    }

    async fn session(
        &self,
        token_sha256: &str,
        limits: SessionLimits,
        now: SystemTime,
    ) -> Result<Option<Session>, Error> {
        let during = "reading a session";
        let now_ms = to_ms(now);
        let client = self.client(during).await?;
        let Some(row) = client
            .opt(
                "SELECT s.user_name, u.groups, s.csrf, s.created_ms, s.last_seen_ms
                 FROM sessions s JOIN users u ON u.name = s.user_name
                 WHERE s.token_sha256 = $1",
                &[&token_sha256],
            )
            .await
            .map_err(|e| self.fail(during, e))?
        else {
            return Ok(None);
        };
        let user: String = row.get(0);
        let created: i64 = row.get(3);
        let last_seen: i64 = row.get(4);
        let idle_over = now_ms.saturating_sub(last_seen) > ms(limits.idle);
        let max_over = now_ms.saturating_sub(created) > ms(limits.max);
        if idle_over || max_over {
            client
                .exec(
                    "DELETE FROM sessions WHERE token_sha256 = $1",
                    &[&token_sha256],
                )
                .await
                .map_err(|e| self.fail("ending an expired session", e))?;
            tracing::debug!(user, idle_over, max_over, "session expired");
            return Ok(None);
        }
        let n = client
            .exec(
                "UPDATE sessions SET last_seen_ms = GREATEST(last_seen_ms, $2)
                 WHERE token_sha256 = $1",
                &[&token_sha256, &now_ms],
            )
            .await
            .map_err(|e| self.fail("marking a session seen", e))?;
        if n == 0 {
            // another instance ended it between the two statements (a logout, a purge)
            return Ok(None);
        }
        Ok(Some(Session::new(
            user,
            row.get(1),
            row.get(2),
            from_ms(created),
            from_ms(last_seen),
        )))
    }

    async fn delete_session(&self, token_sha256: &str) -> Result<bool, Error> {
        let during = "ending a session";
        let client = self.client(during).await?;
        let n = client
            .exec(
                "DELETE FROM sessions WHERE token_sha256 = $1",
                &[&token_sha256],
            )
            .await
            .map_err(|e| self.fail(during, e))?;
        Ok(n > 0)
    }

    async fn purge_sessions(&self, limits: SessionLimits, now: SystemTime) -> Result<usize, Error> {
        let during = "purging expired sessions";
        let client = self.client(during).await?;
        let n = client
            .exec(
                "DELETE FROM sessions WHERE $1 - last_seen_ms > $2 OR $1 - created_ms > $3",
                &[&to_ms(now), &ms(limits.idle), &ms(limits.max)],
            )
            .await
            .map_err(|e| self.fail(during, e))?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    async fn create_api_token(
        &self,
        id: &str,
        token_sha256: &str,
        user: &str,
        label: &str,
        created: SystemTime,
        expires: Option<SystemTime>,
    ) -> Result<ApiToken, Error> {
        let during = "creating an API token";
        let created = to_ms(created);
        let expires = expires.map(to_ms);
        let client = self.client(during).await?;
        // inserted only for an existing user; a user deleted at the same moment trips the foreign
        // key, which means the same
        let n = client
            .exec(
                "INSERT INTO api_tokens (id, token_sha256, user_name, label, created_ms,
                                         expires_ms)
                 SELECT $1, $2, name, $4, $5, $6 FROM users WHERE name = $3",
                &[&id, &token_sha256, &user, &label, &created, &expires],
            )
            .await
            .map_err(|e| {
                if e.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION) {
                    self.no_such_user(user)
                } else {
                    self.fail(during, e)
                }
            })?;
        if n == 0 {
            return Err(self.no_such_user(user));
        }
        tracing::info!(user, id, label, "API token created");
        Ok(ApiToken::new(
            id.to_owned(),
            user.to_owned(),
            label.to_owned(),
            from_ms(created),
            None,
            expires.map(from_ms),
        ))
    }

    async fn api_tokens(&self, user: Option<&str>) -> Result<Vec<ApiToken>, Error> {
        let during = "listing API tokens";
        let client = self.client(during).await?;
        let rows = client
            .rows(
                &format!(
                    "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE $1 IS NULL OR user_name = $1
                     ORDER BY created_ms DESC, id COLLATE \"C\""
                ),
                &[&user],
            )
            .await
            .map_err(|e| self.fail(during, e))?;
        Ok(rows.iter().map(token_row).collect())
    }

    async fn api_token(&self, id: &str) -> Result<Option<ApiToken>, Error> {
        let during = "reading an API token";
        let client = self.client(during).await?;
        let row = client
            .opt(
                &format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = $1"),
                &[&id],
            )
            .await
            .map_err(|e| self.fail(during, e))?;
        Ok(row.as_ref().map(token_row))
    }

    async fn api_token_user(
        &self,
        token_sha256: &str,
        now: SystemTime,
    ) -> Result<Option<TokenUser>, Error> {
        let during = "reading an API token";
        let client = self.client(during).await?;
        let Some(row) = client
            .opt(
                "SELECT t.id, t.user_name, t.label, t.created_ms, t.last_used_ms, t.expires_ms,
                        u.groups
                 FROM api_tokens t JOIN users u ON u.name = t.user_name
                 WHERE t.token_sha256 = $1",
                &[&token_sha256],
            )
            .await
            .map_err(|e| self.fail(during, e))?
        else {
            return Ok(None);
        };
        let token = token_row(&row);
        let now_ms = to_ms(now);
        if token.expires.is_some_and(|e| to_ms(e) <= now_ms) {
            tracing::debug!(id = token.id, user = token.user, "API token expired");
            return Ok(None);
        }
        client
            .exec(
                "UPDATE api_tokens SET last_used_ms = $2
                 WHERE id = $1 AND (last_used_ms IS NULL OR last_used_ms <= $2 - $3)",
                &[&token.id, &now_ms, &LAST_USED_STEP_MS],
            )
            .await
            .map_err(|e| self.fail("marking an API token used", e))?;
        Ok(Some(TokenUser::new(token, row.get(6))))
    }

    async fn delete_api_token(&self, id: &str) -> Result<bool, Error> {
        let during = "revoking an API token";
        let client = self.client(during).await?;
        let n = client
            .exec("DELETE FROM api_tokens WHERE id = $1", &[&id])
            .await
            .map_err(|e| self.fail(during, e))?;
        if n > 0 {
            tracing::info!(id, "API token revoked");
        }
        Ok(n > 0)
    }

    async fn append_audit(&self, entry: &AuditEntry) -> Result<i64, Error> {
        let during = "appending to the audit log";
        let client = self.client(during).await?;
        let row = client
            .one(
                "INSERT INTO audit (at_ms, user_name, address, action, target, detail)
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING seq",
                &[
                    &to_ms(entry.at),
                    &entry.user,
                    &entry.address,
                    &entry.action,
                    &entry.target,
                    &entry.detail,
                ],
            )
            .await
            .map_err(|e| self.fail(during, e))?;
        Ok(row.get(0))
    }

    async fn audit_log(
        &self,
        before: Option<i64>,
        user: Option<&str>,
        limit_to: usize,
    ) -> Result<Vec<AuditEntry>, Error> {
        let during = "reading the audit log";
        let client = self.client(during).await?;
        let rows = client
            .rows(
                "SELECT seq, at_ms, user_name, address, action, target, detail FROM audit
                 WHERE seq < $1 AND ($2 IS NULL OR user_name = $2)
                 ORDER BY seq DESC LIMIT $3",
                &[&before.unwrap_or(i64::MAX), &user, &limit(limit_to)],
            )
            .await
            .map_err(|e| self.fail(during, e))?;
        Ok(rows
            .iter()
            .map(|r| {
                let user: String = r.get(2);
                let action: String = r.get(4);
                let target: String = r.get(5);
                let detail: String = r.get(6);
                let mut e = AuditEntry::new(&user, r.get(3), &action, &target, &detail);
                e.seq = r.get(0);
                e.at = from_ms(r.get(1));
                e
            })
            .collect())
    }

    async fn add_template_revision(
        &self,
        template: &str,
        base: Option<i64>,
        user: &str,
        file: &str,
        content: &str,
        at: SystemTime,
    ) -> Result<RevisionWrite, Error> {
        let during = "saving a template revision";
        let at = to_ms(at);
        let client = self.client(during).await?;
        let mut current = 0;
        for _ in 0..REVISION_ATTEMPTS {
            // the next number, only while the newest is still the base; a concurrent save of the
            // same number waits for the other's commit and then inserts nothing
            let added = client
                .opt(
                    "INSERT INTO template_revisions (template, revision, user_name, at_ms, file,
                                                     content)
                     SELECT $1, c.cur + 1, $3, $4, $5, $6
                     FROM (SELECT COALESCE(MAX(revision), 0)::int8 AS cur FROM template_revisions
                           WHERE template = $1) c
                     WHERE $2 IS NULL OR c.cur = $2
                     ON CONFLICT (template, revision) DO NOTHING
                     RETURNING revision",
                    &[&template, &base, &user, &at, &file, &content],
                )
                .await
                .map_err(|e| self.fail(during, e))?;
            if let Some(row) = added {
                return Ok(RevisionWrite::Added(row.get(0)));
            }
            current = self.latest_revision(template).await?;
            if base.is_some_and(|b| b != current) {
                return Ok(RevisionWrite::Stale { current });
            }
            // another instance took the number and then removed it again, or no base was given:
            // try the next number
            tracing::debug!(template, current, "a template revision raced another save");
        }
        tracing::warn!(
            template,
            current,
            "saving a template revision kept racing other saves; reporting it stale"
        );
        Ok(RevisionWrite::Stale { current })
    }

    async fn template_revisions(
        &self,
        template: &str,
        limit_to: usize,
    ) -> Result<Vec<TemplateRevision>, Error> {
        let during = "reading template revisions";
        let client = self.client(during).await?;
        let rows = client
            .rows(
                "SELECT template, revision, user_name, at_ms, file, content
                 FROM template_revisions WHERE template = $1 ORDER BY revision DESC LIMIT $2",
                &[&template, &limit(limit_to)],
            )
            .await
            .map_err(|e| self.fail(during, e))?;
        Ok(rows.iter().map(revision_row).collect())
    }

    async fn latest_template_revision(&self, template: &str) -> Result<i64, Error> {
        self.latest_revision(template).await
    }

    async fn remove_template_revision(&self, template: &str, revision: i64) -> Result<bool, Error> {
        let during = "removing a template revision";
        let client = self.client(during).await?;
        let n = client
            .exec(
                "DELETE FROM template_revisions WHERE template = $1 AND revision = $2",
                &[&template, &revision],
            )
            .await
            .map_err(|e| self.fail(during, e))?;
        Ok(n > 0)
    }

    async fn check_writable(&self) -> Result<(), Error> {
        let during = "checking that the store takes writes";
        let mut client = self.client(during).await?;
        // a row written and rolled back: a read-only database (a standby, a read-only
        // transaction default, missing privileges) refuses it
        let tx = client
            .transaction()
            .await
            .map_err(|e| self.fail(during, e))?;
        tx.exec(
            "INSERT INTO template_revisions (template, revision, user_name, at_ms, file, content)
             VALUES ('', -1, '', 0, '', '')",
            &[],
        )
        .await
        .map_err(|e| self.fail(during, e))?;
        tx.rollback().await.map_err(|e| self.fail(during, e))
    }
}
