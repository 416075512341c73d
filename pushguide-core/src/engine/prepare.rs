//! Preparation: resolve the targets, read what each host runs, pre-flight ping, the kind's prepare
//! hook, and the batch plan.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::SystemTime;

use super::request::{Mode, Request};
use super::Engine;
use crate::hook::context::{HostVersions, Release, StageContext};
use crate::hook::deployer::{run_hook, Deployer};
use crate::hook::journal::{Journal, RunShared};
use crate::hook::template::RollbackPolicy;
use crate::model::event::EventKind;
use crate::model::report::HostStatus;
use crate::vocab::call::{MinionId, SaltCall};
use crate::vocab::error::Error;
use crate::vocab::stage::Stage;

/// The output of preparation.
pub(super) struct Prepared {
    pub(super) release: Release,
    pub(super) batches: Vec<Vec<MinionId>>,
    pub(super) excluded: Vec<(MinionId, String)>,
    /// Hosts pre-flight left out by `on_down = "exclude"`.
    pub(super) left_out: Vec<MinionId>,
    pub(super) max_failed: usize,
    pub(super) journal: Journal,
}

impl Engine {
    pub(super) async fn prepare(
        &self,
        shared: &RunShared,
        deployer: &dyn Deployer,
        req: &Request,
        id: Arc<str>,
    ) -> Result<Prepared, Error> {
        let t = &req.template;
        let all =
            match t.targets.expression() {
                None => t
                    .targets
                    .minions
                    .iter()
                    .map(|m| MinionId::new(m))
                    .collect::<Result<Vec<_>, _>>()?,
                Some(expr) => {
                    let mut ids = shared.transport.resolve(&expr).await.map_err(|source| {
                        Error::Transport {
                            during: "resolving the template's targets",
                            source,
                        }
                    })?;
                    ids.sort();
                    ids.dedup();
                    ids
                }
            };
        let hosts = match &req.hosts {
            None => all,
            Some(subset) => {
                let known: HashSet<&str> = all.iter().map(MinionId::as_str).collect();
                let mut picked = Vec::with_capacity(subset.len());
                for (i, h) in subset.iter().enumerate() {
                    if !known.contains(h.as_str()) {
                        return Err(Error::invalid(
                            format!("hosts[{i}]"),
                            h,
                            format!("not a target of template `{}`", t.name),
                        ));
                    }
                    let id = MinionId::new(h)?;
                    if !picked.contains(&id) {
                        picked.push(id);
                    }
                }
                picked
            }
        };
        if hosts.is_empty() {
            return Err(Error::NoHosts {
                template: t.name.clone(),
                reason: "the target expression matched no minion".into(),
            });
        }
        let total = hosts.len();
        let max_failed = t.failure.max_failed.floor_of(total);

        let history = self
            .inner
            .fleet
            .versions(&t.name, &hosts)
            .await
            .map_err(|e| Error::StoreFailed {
                during: "reading the hosts' recorded versions",
                source: Box::new(e),
            })?;
        let host_versions: HashMap<MinionId, HostVersions> = hosts
            .iter()
            .map(|h| {
                let rec = history.get(h).cloned().unwrap_or_default();
                let rollback_to = match (&req.mode, &t.rollback) {
                    (Mode::Rollback { to: Some(to) }, _) => Some(to.clone()),
                    (Mode::Rollback { to: None }, _) => match &req.undo {
                        // the release being undone never recorded itself here: restore what the
                        // host ran (its batch may have stopped the service)
                        Some(undo)
                            if rec.current.is_some() && rec.current.as_ref() != Some(undo) =>
                        {
                            rec.current.clone()
                        }
                        _ => rec.previous.clone(),
                    },
                    (Mode::Deploy, RollbackPolicy::Version { to }) => Some(to.clone()),
                    (Mode::Deploy, RollbackPolicy::None | RollbackPolicy::Previous) => {
                        // a healthy current version is what a failure restores (also when it is
                        // the version being redeployed: the host ran it before); an unhealthy or
                        // unknown one never is
                        if rec.healthy {
                            rec.current.clone()
                        } else {
                            rec.previous.clone()
                        }
                    }
                };
                (
                    h.clone(),
                    HostVersions {
                        current: rec.current,
                        rollback_to,
                    },
                )
            })
            .collect();
        let mut release = Release {
            deployment: id,
            template: t.clone(),
            version: req.version.clone(),
            artifact: req.artifact.clone(),
            hosts: host_versions,
            dry_run: req.dry_run,
        };
        let mut journal = Journal::new(&hosts);

        shared.emit(EventKind::StageStarted {
            batch: None,
            stage: Stage::Prepare,
            hosts: total,
        });
        let (live, artifact, down) = {
            let mut cx = StageContext::new(
                shared,
                &release,
                &mut journal,
                Stage::Prepare,
                None,
                hosts.clone(),
            );
            // Pre-flight: every host must answer before anything else happens.
            let ping = SaltCall::read("test.ping").timeout(std::time::Duration::from_secs(10));
            let pinged = cx.call(ping).await;
            let down: Vec<MinionId> = cx.failed().to_vec();
            if let (Some(status), Ok(_)) = (&self.inner.status, &pinged) {
                let checks: Vec<(MinionId, bool)> = hosts
                    .iter()
                    .map(|h| (h.clone(), !down.contains(h)))
                    .collect();
                if let Err(e) = status.record(&checks, SystemTime::now()).await {
                    tracing::warn!(error = %e, "pre-flight result not recorded in the minion status store");
                }
            }
            if t.preflight.on_down == crate::hook::template::OnDown::Exclude && !down.is_empty() {
                tracing::warn!(
                    hosts = down.len(),
                    "pre-flight: hosts that do not answer are excluded"
                );
            }
            let result = match (pinged, &req.mode) {
                (Ok(_), Mode::Deploy) => run_hook(deployer, Stage::Prepare, &mut cx).await,
                (Ok(_), Mode::Rollback { .. }) => Ok(()),
                (Err(e), _) => Err(e),
            };
            result.map_err(|e| Error::Prepare {
                template: t.name.clone(),
                source: Box::new(e),
            })?;
            (cx.live, cx.artifact, down)
        };
        if t.preflight.on_down == crate::hook::template::OnDown::Exclude {
            journal.set_status(&down, HostStatus::Excluded);
        }
        if artifact.is_some() {
            release.artifact = artifact;
        }
        let excluded: Vec<(MinionId, String)> = journal
            .hosts
            .iter()
            .filter_map(|h| {
                h.failure
                    .as_ref()
                    .map(|f| (h.host.clone(), format!("{}: {}", f.fun, f.reason)))
            })
            .collect();
        shared.emit(EventKind::StageFinished {
            batch: None,
            stage: Stage::Prepare,
            ok: live.len(),
            failed: excluded.len(),
        });

        let size = t.rollout.batch.ceil_of(total).max(1);
        let mut batches = Vec::new();
        let mut rest: &[MinionId] = &live;
        if t.rollout.canary && rest.len() > 1 {
            batches.push(vec![rest[0].clone()]);
            rest = &rest[1..];
        }
        batches.extend(rest.chunks(size).map(<[MinionId]>::to_vec));
        let left_out = journal
            .hosts
            .iter()
            .filter(|h| h.status == HostStatus::Excluded)
            .map(|h| h.host.clone())
            .collect();
        Ok(Prepared {
            release,
            batches,
            excluded,
            left_out,
            max_failed,
            journal,
        })
    }
}
