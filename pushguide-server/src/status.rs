//! The templates page's rows: each template the user may view with its last deployment and the
//! versions its hosts run.

use std::collections::BTreeMap;
use std::time::SystemTime;

use pushguide_core::Principal;
use pushguide_store::RecordStore;
use serde::Serialize;

use crate::catalog::{CatalogEntry, TemplateRow};
use crate::Error;

/// A time as RFC 3339 UTC (`2026-11-27T09:42:46Z`).
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// A template's newest deployment that was not a dry run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LastDeployment {
    /// Deployment id.
    pub id: String,
    /// `deploy` or `rollback`.
    pub mode: &'static str,
    /// Version (for a rollback: its target, or `previous`).
    pub version: String,
    /// Who ran it.
    pub user: String,
    /// Start, RFC 3339 UTC.
    pub started: String,
    /// Outcome; `null` while it runs.
    pub outcome: Option<String>,
}

/// How many of a template's hosts run one version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunningVersion {
    /// The version; `null` when the hosts' state is unknown (a switch failed half-way).
    pub version: Option<String>,
    /// Whether it runs as released (`false`: a release or rollback failed on these hosts).
    pub healthy: bool,
    /// How many hosts.
    pub hosts: usize,
}

/// One row of `GET /` and `GET /api/v1/templates`: the keys of `pushguide templates --json` plus
/// `last_deployment` and `running`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TemplateStatus {
    /// The row `pushguide templates` lists.
    #[serde(flatten)]
    pub template: TemplateRow,
    /// The newest deployment that was not a dry run (`null`: never deployed, or a broken file).
    pub last_deployment: Option<LastDeployment>,
    /// The versions the template's hosts run, most hosts first.
    pub running: Vec<RunningVersion>,
}

/// The rows `who` may see among `entries`: the templates whose ACL lets them view, and, for an
/// admin, the files that do not load.
pub async fn template_statuses(
    store: &dyn RecordStore,
    entries: Vec<CatalogEntry>,
    who: &Principal,
    admin: bool,
) -> Result<Vec<TemplateStatus>, Error> {
    let mut rows = Vec::new();
    let mut broken = Vec::new();
    for entry in entries {
        match entry {
            CatalogEntry::Loaded { file, template } => {
                let Some(row) = TemplateRow::viewable(&file, &template, who) else {
                    continue;
                };
                rows.push(status_of(store, row).await?);
            }
            CatalogEntry::Broken { file, error } if admin => broken.push(TemplateStatus {
                template: TemplateRow::broken(&file, &error),
                last_deployment: None,
                running: Vec::new(),
            }),
            CatalogEntry::Broken { .. } => {}
        }
    }
    rows.extend(broken);
    Ok(rows)
}

async fn status_of(
    store: &dyn RecordStore,
    template: TemplateRow,
) -> Result<TemplateStatus, Error> {
    let last_deployment = store
        .last_deployment(&template.name)
        .await?
        .map(|d| LastDeployment {
            mode: if d.rollback { "rollback" } else { "deploy" },
            id: d.id,
            version: d.version,
            user: d.principal,
            started: rfc3339(d.started),
            outcome: d.outcome,
        });
    let mut counts: BTreeMap<(Option<String>, bool), usize> = BTreeMap::new();
    for h in store.fleet(&template.name).await? {
        *counts.entry((h.version, h.healthy)).or_default() += 1;
    }
    let mut running: Vec<RunningVersion> = counts
        .into_iter()
        .map(|((version, healthy), hosts)| RunningVersion {
            version,
            healthy,
            hosts,
        })
        .collect();
    running.sort_by_key(|r| std::cmp::Reverse(r.hosts));
    Ok(TemplateStatus {
        template,
        last_deployment,
        running,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rfc3339_formats_utc() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_772_566);
        assert_eq!(rfc3339(t), "2026-11-27T09:42:46Z");
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00Z");
    }
}
