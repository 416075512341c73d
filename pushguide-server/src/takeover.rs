//! Takeover of deployments whose instance died: once the store marks such a deployment
//! `interrupted` (its lease expired), an instance applies the template's `takeover` policy
//! ([`pushguide_core::TakeoverPolicy`]): `mark` leaves it as marked, `rollback` queues one request
//! rolling the hosts it touched back to their rollback targets, `resume` queues one request
//! releasing the same version on the hosts of the batches it had not completed.
//!
//! Exactly once: the store records the takeover and queues its request in one transaction keyed by
//! the interrupted deployment ([`ServerStore::take_over`]), so two instances recovering at once
//! queue one request. What to take over is read from the store each round
//! ([`ServerStore::untaken_interrupted`]), not from what this instance marked, so an instance that
//! died between marking and taking over leaves the work to the next round of any instance.

use pushguide_core::{TakeoverPolicy, Template};
use pushguide_store::{InterruptedDeployment, ServerStore, Takeover, TakeoverRequest};

use crate::catalog::{Catalog, CatalogEntry};
use crate::launch::{PublishMode, PublishRequest};

/// What an interrupted deployment did, as far as the takeover decision needs it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Progress {
    /// The version it released (for a rollback: the target's label).
    pub(crate) version: String,
    /// Whether it was a dry run.
    pub(crate) dry_run: bool,
    /// Whether it was itself a rollback.
    pub(crate) rollback: bool,
    /// Every planned host in batch order; empty when it was interrupted before its plan was
    /// recorded (prepare).
    pub(crate) planned: Vec<String>,
    /// The hosts of the batches that started: (host, whether its batch finished).
    pub(crate) started: Vec<(String, bool)>,
}

impl From<&InterruptedDeployment> for Progress {
    fn from(d: &InterruptedDeployment) -> Self {
        Progress {
            version: d.version.clone(),
            dry_run: d.dry_run,
            rollback: d.rollback,
            planned: d.planned.clone(),
            started: d
                .hosts
                .iter()
                .filter(|h| h.batch.is_some())
                .map(|h| (h.host.clone(), h.batch_finished))
                .collect(),
        }
    }
}

/// What to do with one interrupted deployment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Leave it marked, for this reason.
    Mark(String),
    /// Queue this request.
    Queue(PublishRequest),
}

/// The decision for a deployment that did `p`, under `policy`.
pub(crate) fn decide(policy: TakeoverPolicy, p: &Progress) -> Decision {
    if policy == TakeoverPolicy::Mark {
        return Decision::Mark("the template's takeover policy is mark".into());
    }
    if p.dry_run {
        return Decision::Mark("a dry run changed no host".into());
    }
    if p.rollback {
        // the hosts it rolled back already have new rollback targets, and its own target is a
        // label: neither "back to the targets" nor "continue" is defined without an operator
        return Decision::Mark("an interrupted rollback is left to an operator".into());
    }
    match policy {
        TakeoverPolicy::Mark => Decision::Mark("the template's takeover policy is mark".into()),
        TakeoverPolicy::Rollback => {
            let touched: Vec<String> = p.started.iter().map(|(h, _)| h.clone()).collect();
            if touched.is_empty() {
                return Decision::Mark(
                    "it touched no host (it ended before its first batch)".into(),
                );
            }
            Decision::Queue(PublishRequest {
                mode: PublishMode::Undo {
                    version: p.version.clone(),
                },
                dry_run: false,
                batch: None,
                hosts: Some(touched),
            })
        }
        TakeoverPolicy::Resume => {
            let hosts = if p.planned.is_empty() {
                // ended in prepare: no batch ran, the whole release starts again
                None
            } else {
                let done: std::collections::HashSet<&str> = p
                    .started
                    .iter()
                    .filter(|(_, finished)| *finished)
                    .map(|(h, _)| h.as_str())
                    .collect();
                let left: Vec<String> = p
                    .planned
                    .iter()
                    .filter(|h| !done.contains(h.as_str()))
                    .cloned()
                    .collect();
                if left.is_empty() {
                    return Decision::Mark("every batch had completed".into());
                }
                Some(left)
            };
            Decision::Queue(PublishRequest {
                mode: PublishMode::Deploy {
                    version: p.version.clone(),
                },
                dry_run: false,
                batch: None,
                hosts,
            })
        }
    }
}

/// The template `name` as `catalog` loads it now, if it loads.
fn template_of(catalog: &dyn Catalog, name: &str) -> Option<Box<Template>> {
    let entries = match catalog.scan() {
        Ok(e) => e,
        Err(e) => {
            tracing::error!(error = %e, "cannot list templates for a takeover");
            return None;
        }
    };
    entries.into_iter().find_map(|e| match e {
        CatalogEntry::Loaded { template, .. } if template.name == name => Some(template),
        _ => None,
    })
}

/// Takes over every interrupted deployment no instance has taken over yet, each by its template's
/// policy; returns the takeovers this call recorded (another instance's are not repeated).
pub(crate) async fn take_over_interrupted(
    store: &dyn ServerStore,
    catalog: &dyn Catalog,
) -> Result<Vec<Takeover>, pushguide_store::Error> {
    let mut recorded = Vec::new();
    for d in store.untaken_interrupted().await? {
        let (policy, decision) = match template_of(catalog, &d.template) {
            Some(t) => {
                let policy = t.takeover();
                (policy, decide(policy, &Progress::from(&d)))
            }
            None => (
                TakeoverPolicy::Mark,
                Decision::Mark("its template does not load".into()),
            ),
        };
        // the request runs with the rights of the user who started the interrupted deployment
        let groups = match store.user(&d.principal).await {
            Ok(Some(u)) => u.groups,
            Ok(None) => Vec::new(),
            Err(e) => {
                tracing::error!(error = %e, user = d.principal, "cannot read a user's groups");
                continue;
            }
        };
        let t = match &decision {
            Decision::Mark(why) => {
                TakeoverRequest::new(&d.id, &d.template, "mark", None, groups, why.clone())
            }
            Decision::Queue(r) => {
                let json = match serde_json::to_string(r) {
                    Ok(j) => j,
                    Err(e) => {
                        tracing::error!(error = %e, "a takeover request does not serialize");
                        continue;
                    }
                };
                TakeoverRequest::new(
                    &d.id,
                    &d.template,
                    policy.as_str(),
                    Some(json),
                    groups,
                    r.summary(),
                )
            }
        };
        if let Some(done) = store.take_over(&t).await? {
            tracing::warn!(
                deployment = d.id,
                template = d.template,
                policy = done.policy,
                request = ?done.request,
                note = done.note,
                "took over an interrupted deployment"
            );
            recorded.push(done);
        }
    }
    Ok(recorded)
}

/// The takeover of deployment `id` as JSON (`null` when none is recorded or the store records
/// none): the policy, the request it queued, that request's state and deployment.
pub(crate) async fn takeover_json(store: &dyn ServerStore, id: &str) -> serde_json::Value {
    match store.takeover(id).await {
        Ok(Some(t)) => serde_json::json!({
            "policy": t.policy,
            "request": t.request,
            "request_state": t.request_state,
            "deployment": t.request_deployment,
            "note": t.note,
            "by": t.by,
            "at": crate::status::rfc3339(t.at),
        }),
        Ok(None) => serde_json::Value::Null,
        Err(e) => {
            tracing::debug!(error = %e, deployment = id, "no takeover record");
            serde_json::Value::Null
        }
    }
}

/// The takeover of deployment `id` as a page section (empty when none is recorded).
pub(crate) async fn takeover_html(store: &dyn ServerStore, id: &str) -> String {
    use crate::html::escape;
    let Ok(Some(t)) = store.takeover(id).await else {
        return String::new();
    };
    let request = match (t.request, &t.request_deployment) {
        (Some(_), Some(d)) => format!(
            " · its deployment: <a href=\"/deployments/{}\">{}</a>",
            crate::html::path_segment(d),
            escape(d)
        ),
        (Some(r), None) => format!(
            " · request {r} ({})",
            escape(t.request_state.as_deref().unwrap_or("?"))
        ),
        (None, _) => String::new(),
    };
    format!(
        "<h2>Takeover</h2><p id=\"takeover\">Taken over by {} ({}): {}{}</p>",
        escape(&t.by),
        escape(&t.policy),
        escape(&t.note),
        request
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// 4 planned hosts in batches of 1: web-01 done, web-02 interrupted, web-03/04 never started.
    fn half_done() -> Progress {
        Progress {
            version: "2.0".into(),
            planned: ["web-01", "web-02", "web-03", "web-04"]
                .map(String::from)
                .to_vec(),
            started: vec![("web-01".into(), true), ("web-02".into(), false)],
            ..Progress::default()
        }
    }

    fn queued(d: Decision) -> PublishRequest {
        match d {
            Decision::Queue(r) => r,
            Decision::Mark(why) => panic!("marked: {why}"),
        }
    }

    #[test]
    fn rollback_undoes_the_release_on_every_host_whose_batch_started() {
        let r = queued(decide(TakeoverPolicy::Rollback, &half_done()));
        assert_eq!(
            r.mode,
            PublishMode::Undo {
                version: "2.0".into()
            }
        );
        assert_eq!(r.hosts.unwrap(), ["web-01", "web-02"]);
        assert!(!r.dry_run);
    }

    #[test]
    fn resume_releases_the_same_version_on_the_batches_not_completed() {
        let r = queued(decide(TakeoverPolicy::Resume, &half_done()));
        assert_eq!(
            r.mode,
            PublishMode::Deploy {
                version: "2.0".into()
            }
        );
        assert_eq!(r.hosts.unwrap(), ["web-02", "web-03", "web-04"]);
        // interrupted in prepare (no plan recorded): the whole release again
        let p = Progress {
            version: "2.0".into(),
            ..Progress::default()
        };
        assert_eq!(queued(decide(TakeoverPolicy::Resume, &p)).hosts, None);
        // every batch done (died before its end was recorded): nothing to resume
        let mut p = half_done();
        p.planned.truncate(1);
        p.started.truncate(1);
        assert!(matches!(
            decide(TakeoverPolicy::Resume, &p),
            Decision::Mark(_)
        ));
    }

    #[test]
    fn mark_dry_runs_rollbacks_and_untouched_deployments_queue_nothing() {
        assert!(matches!(
            decide(TakeoverPolicy::Mark, &half_done()),
            Decision::Mark(_)
        ));
        for policy in [TakeoverPolicy::Rollback, TakeoverPolicy::Resume] {
            let mut p = half_done();
            p.dry_run = true;
            assert!(matches!(decide(policy, &p), Decision::Mark(w) if w.contains("dry run")));
            let mut p = half_done();
            p.rollback = true;
            assert!(matches!(decide(policy, &p), Decision::Mark(w) if w.contains("rollback")));
        }
        let mut p = half_done();
        p.started.clear();
        assert!(
            matches!(decide(TakeoverPolicy::Rollback, &p), Decision::Mark(w) if w.contains("no host"))
        );
    }
}
