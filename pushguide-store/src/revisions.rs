//! Template revisions (schema version 10's `template_revisions`): every text the web service's
//! template editor saved, with who and when, numbered per template from 1. Rows are kept when the
//! template is deleted. Also the two small queries the service's health check and metrics need.

use std::time::SystemTime;

use rusqlite::{params, OptionalExtension};

use crate::store::{from_ms, to_ms};
use crate::{Error, SqliteStore};

/// One saved text of a template.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TemplateRevision {
    /// The template's name.
    pub template: String,
    /// Its number (1, 2, … per template).
    pub revision: i64,
    /// Who saved it.
    pub user: String,
    /// When.
    pub at: SystemTime,
    /// The file it was written to (its name inside the templates directory).
    pub file: String,
    /// The TOML text.
    pub content: String,
}

/// What [`SqliteStore::add_template_revision`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RevisionWrite {
    /// Stored under this number.
    Added(i64),
    /// Not stored: the template's newest revision is `current`, not the base the caller edited.
    Stale {
        /// The newest revision (0: none).
        current: i64,
    },
}

impl SqliteStore {
    /// The newest revision number of `template` (0 when it has none).
    pub fn latest_template_revision(&self, template: &str) -> Result<i64, Error> {
        self.conn()
            .query_row(
                "SELECT COALESCE(MAX(revision), 0) FROM template_revisions WHERE template = ?1",
                [template],
                |r| r.get(0),
            )
            .map_err(|e| self.err("reading template revisions", e))
    }

    /// Stores `content` as the next revision of `template`. With `base`, only when the newest
    /// revision is still `base` (0: none yet) — checked and written in one transaction, so of two
    /// writers editing the same base one gets [`RevisionWrite::Stale`].
    pub fn add_template_revision(
        &self,
        template: &str,
        base: Option<i64>,
        user: &str,
        file: &str,
        content: &str,
        at: SystemTime,
    ) -> Result<RevisionWrite, Error> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| self.err("saving a template revision", e))?;
        let current: i64 = tx
            .query_row(
                "SELECT COALESCE(MAX(revision), 0) FROM template_revisions WHERE template = ?1",
                [template],
                |r| r.get(0),
            )
            .map_err(|e| self.err("saving a template revision", e))?;
        if base.is_some_and(|b| b != current) {
            return Ok(RevisionWrite::Stale { current });
        }
        let revision = current + 1;
        tx.execute(
            "INSERT INTO template_revisions (template, revision, user, at_ms, file, content)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![template, revision, user, to_ms(at), file, content],
        )
        .map_err(|e| self.err("saving a template revision", e))?;
        tx.commit()
            .map_err(|e| self.err("saving a template revision", e))?;
        Ok(RevisionWrite::Added(revision))
    }

    /// Removes revision `revision` of `template` (a save whose file could not be written takes its
    /// revision back). Whether it existed.
    pub fn remove_template_revision(&self, template: &str, revision: i64) -> Result<bool, Error> {
        self.conn()
            .execute(
                "DELETE FROM template_revisions WHERE template = ?1 AND revision = ?2",
                params![template, revision],
            )
            .map(|n| n > 0)
            .map_err(|e| self.err("removing a template revision", e))
    }

    /// Up to `limit` revisions of `template`, newest first.
    pub fn template_revisions(
        &self,
        template: &str,
        limit: usize,
    ) -> Result<Vec<TemplateRevision>, Error> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT template, revision, user, at_ms, file, content FROM template_revisions
                 WHERE template = ?1 ORDER BY revision DESC LIMIT ?2",
            )
            .map_err(|e| self.err("reading template revisions", e))?;
        let rows = stmt
            .query_map(
                params![template, i64::try_from(limit).unwrap_or(i64::MAX)],
                revision_row,
            )
            .map_err(|e| self.err("reading template revisions", e))?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.err("reading template revisions", e))
    }

    /// Revision `revision` of `template`.
    pub fn template_revision(
        &self,
        template: &str,
        revision: i64,
    ) -> Result<Option<TemplateRevision>, Error> {
        self.conn()
            .query_row(
                "SELECT template, revision, user, at_ms, file, content FROM template_revisions
                 WHERE template = ?1 AND revision = ?2",
                params![template, revision],
                revision_row,
            )
            .optional()
            .map_err(|e| self.err("reading template revisions", e))
    }

    /// Checks that the database takes writes: a row written and rolled back (the file, its
    /// directory and the lock must all allow it).
    pub fn check_writable(&self) -> Result<(), Error> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| self.err("checking that the store takes writes", e))?;
        tx.execute(
            "INSERT INTO template_revisions (template, revision, user, at_ms, file, content)
             VALUES ('', -1, '', 0, '', '')",
            [],
        )
        .map_err(|e| self.err("checking that the store takes writes", e))?;
        tx.rollback()
            .map_err(|e| self.err("checking that the store takes writes", e))
    }

    /// How many finished deployments (dry runs included) ended with each outcome, by outcome.
    pub fn deployment_outcome_counts(&self) -> Result<Vec<(String, u64)>, Error> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT outcome, COUNT(*) FROM deployments WHERE outcome IS NOT NULL
                 GROUP BY outcome ORDER BY outcome",
            )
            .map_err(|e| self.err("counting deployments by outcome", e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?.max(0) as u64))
            })
            .map_err(|e| self.err("counting deployments by outcome", e))?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.err("counting deployments by outcome", e))
    }
}

fn revision_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TemplateRevision> {
    Ok(TemplateRevision {
        template: r.get(0)?,
        revision: r.get(1)?,
        user: r.get(2)?,
        at: from_ms(r.get(3)?),
        file: r.get(4)?,
        content: r.get(5)?,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn revisions_are_numbered_per_template_and_a_stale_base_is_refused() {
        let s = SqliteStore::open_in_memory().unwrap();
        let now = SystemTime::now();
        assert_eq!(s.latest_template_revision("shop").unwrap(), 0);
        let add = |base, user, text| {
            s.add_template_revision("shop", base, user, "shop.toml", text, now)
                .unwrap()
        };
        assert_eq!(add(Some(0), "alice", "a"), RevisionWrite::Added(1));
        assert_eq!(add(Some(1), "bob", "b"), RevisionWrite::Added(2));
        // bob and carol both edited revision 2: the second one to save is refused
        assert_eq!(add(Some(2), "carol", "c"), RevisionWrite::Added(3));
        assert_eq!(
            add(Some(2), "bob", "b2"),
            RevisionWrite::Stale { current: 3 }
        );
        assert_eq!(add(None, "dave", "d"), RevisionWrite::Added(4));
        s.add_template_revision("other", Some(0), "x", "other.toml", "o", now)
            .unwrap();
        let all = s.template_revisions("shop", 10).unwrap();
        assert_eq!(
            all.iter()
                .map(|r| (r.revision, r.user.as_str(), r.content.as_str()))
                .collect::<Vec<_>>(),
            [
                (4, "dave", "d"),
                (3, "carol", "c"),
                (2, "bob", "b"),
                (1, "alice", "a")
            ]
        );
        assert_eq!(
            s.template_revision("shop", 2).unwrap().unwrap().content,
            "b"
        );
        assert!(s.template_revision("shop", 9).unwrap().is_none());
        assert!(s.remove_template_revision("shop", 4).unwrap());
        assert_eq!(s.latest_template_revision("shop").unwrap(), 3);
        s.check_writable().unwrap();
        assert_eq!(s.latest_template_revision("").unwrap(), 0, "rolled back");
    }
}
