//! Recovery: deployments whose instance died (SIGKILL, a crash, a lost machine) become
//! `interrupted`, as the SQLite store's recovery does.
//!
//! A deployment with no recorded end is dead when the lease it started under is no longer live
//! on the database clock: expired, taken over (another token) or released. A dry run holds no lease:
//! it is dead when its instance stopped renewing its heartbeat. In one transaction the candidate
//! templates' lease rows are locked first (so a heartbeat renewing in the same moment is either
//! seen or refused afterwards), then the dead deployments are marked (`ended` = their last event)
//! and the leases they still name are released. A live deployment (its lease held and renewed) is
//! never marked.

use crate::error::Error;
use crate::sql::Sql;
use crate::store::PgStore;

/// The outcome recorded for a deployment whose instance ended before it did.
pub const INTERRUPTED: &str = "interrupted";

impl PgStore {
    /// Marks the dead deployments of `template` (every template: `None`) `interrupted` (see the
    /// module docs); returns their ids, oldest first.
    pub async fn recover(&self, template: Option<&str>) -> Result<Vec<String>, Error> {
        let during = "recovering interrupted deployments";
        let mut client = self.client(during).await?;
        let tx = client.transaction().await.map_err(|e| self.db(during, e))?;
        tx.exec(
            "SELECT 1 FROM leases WHERE $1::text IS NULL OR template = $1
             ORDER BY template FOR UPDATE",
            &[&template],
        )
        .await
        .map_err(|e| self.db(during, e))?;
        let rows = tx
            .rows(
                "UPDATE deployments d SET outcome = $2, ended_at = d.last_event_at,
                   duration_ms = greatest(0, (extract(epoch FROM d.last_event_at - d.started_at)
                                               * 1000)::bigint),
                   reason = CASE WHEN d.finished_outcome IS NULL
                     THEN 'the process running it ended before it finished (instance '
                          || d.owner || ')'
                     ELSE 'the process running it ended after the deployment finished ('
                          || d.finished_outcome || ') but before its report was recorded (instance '
                          || d.owner || ')' END
                 WHERE d.ended_at IS NULL AND ($1::text IS NULL OR d.template = $1)
                   AND CASE WHEN d.lease_token IS NOT NULL THEN NOT EXISTS (
                         SELECT 1 FROM leases l WHERE l.template = d.template
                           AND l.holder = d.id AND l.token = d.lease_token AND l.expires_at > now())
                       ELSE NOT EXISTS (
                         SELECT 1 FROM owners o WHERE o.owner = d.owner
                           AND o.heartbeat_at + o.ttl_ms * interval '1 millisecond' > now())
                       END
                 RETURNING d.id, d.template, d.lease_token, d.started_at",
                &[&template, &INTERRUPTED],
            )
            .await
            .map_err(|e| self.db(during, e))?;
        let mut marked: Vec<(std::time::SystemTime, String)> = Vec::with_capacity(rows.len());
        for r in &rows {
            let id: String = r.get(0);
            let tmpl: String = r.get(1);
            if let Some(token) = r.get::<_, Option<i64>>(2) {
                // its expired lease, if nobody took it since: free the template at once
                tx.exec(
                    "UPDATE leases SET holder = NULL, owner = NULL, expires_at = '-infinity'
                     WHERE template = $1 AND holder = $2 AND token = $3",
                    &[&tmpl, &id, &token],
                )
                .await
                .map_err(|e| self.db(during, e))?;
            }
            marked.push((r.get(3), id));
        }
        tx.commit().await.map_err(|e| self.db(during, e))?;
        marked.sort();
        for (_, id) in &marked {
            tracing::warn!(deployment = %id, "deployment interrupted: its instance ended");
        }
        Ok(marked.into_iter().map(|(_, id)| id).collect())
    }

    /// Ids of the deployments marked `interrupted` of `templates`, newest first.
    pub async fn interrupted(&self, templates: &[String]) -> Result<Vec<String>, Error> {
        let during = "listing interrupted deployments";
        let client = self.client(during).await?;
        let rows = client
            .rows(
                "SELECT id FROM deployments WHERE outcome = $1 AND template = ANY($2)
                 ORDER BY started_at DESC, id DESC",
                &[&INTERRUPTED, &templates],
            )
            .await
            .map_err(|e| self.db(during, e))?;
        Ok(rows.into_iter().map(|r| r.get(0)).collect())
    }
}
