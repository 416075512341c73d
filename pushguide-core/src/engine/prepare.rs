//! Preparation: resolve the targets, read what each host runs, pre-flight ping, the kind's prepare
//! hook, and the batch plan.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::SystemTime;

use super::request::{Mode, Request, RollbackTo};
use super::Engine;
use crate::hook::context::{Artifact, HostVersions, Release, StageContext};
use crate::hook::deployer::{run_hook, Deployer};
use crate::hook::journal::{Journal, RunShared};
use crate::hook::template::{OnDown, RollbackPolicy, Template};
use crate::model::event::EventKind;
use crate::model::report::HostStatus;
use crate::ports::fleet::HostHistory;
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
    /// Prepares a run: the hosts, what each runs, pre-flight and the kind's prepare hook, the batches.
    pub(super) async fn prepare(
        &self,
        shared: &RunShared,
        deployer: &dyn Deployer,
        req: &Request,
        id: Arc<str>,
    ) -> Result<Prepared, Error> {
        let t = &req.template;
        let hosts = pick_hosts(req, resolve_targets(shared, req).await?)?;
        let total = hosts.len();
        let max_failed = t.failure.max_failed.floor_of(total);
        let mut release = Release {
            deployment: id,
            template: t.clone(),
            version: req.version.clone(),
            artifact: req.artifact.clone(),
            hosts: self.host_versions(req, &hosts).await?,
            dry_run: req.dry_run,
            staged: false,
        };
        let mut journal = Journal::new(&hosts);

        shared.emit(EventKind::StageStarted {
            batch: None,
            stage: Stage::Prepare,
            hosts: total,
        });
        let (live, artifact) = self
            .preflight(shared, deployer, req, &release, &mut journal, &hosts)
            .await?;
        if artifact.is_some() {
            release.artifact = artifact;
        }
        let excluded: Vec<(MinionId, String)> = journal
            .hosts
            .iter()
            .filter_map(|h| h.failure.as_ref().map(|f| (h.host.clone(), f.to_string())))
            .collect();
        shared.emit(EventKind::StageFinished {
            batch: None,
            stage: Stage::Prepare,
            ok: live.len(),
            failed: excluded.len(),
        });
        let left_out = journal
            .hosts
            .iter()
            .filter(|h| h.status == HostStatus::Excluded)
            .map(|h| h.host.clone())
            .collect();
        Ok(Prepared {
            batches: plan_batches(t, &live, total),
            release,
            excluded,
            left_out,
            max_failed,
            journal,
        })
    }

    /// Each host's recorded versions and the version a rollback takes it to.
    async fn host_versions(
        &self,
        req: &Request,
        hosts: &[MinionId],
    ) -> Result<HashMap<MinionId, HostVersions>, Error> {
        let history = self
            .inner
            .fleet
            .versions(&req.template.name, hosts)
            .await
            .map_err(|e| Error::StoreFailed {
                during: "reading the hosts' recorded versions",
                source: Box::new(e),
            })?;
        Ok(hosts
            .iter()
            .map(|h| {
                let rec = history.get(h).cloned().unwrap_or_default();
                let rollback_to = rollback_target(req, &rec);
                (
                    h.clone(),
                    HostVersions {
                        current: rec.current,
                        rollback_to,
                    },
                )
            })
            .collect())
    }

    /// Pre-flight (every host must answer a ping; the answers go to the minion status store) and,
    /// for a release, the kind's prepare hook. Returns the hosts still live and the artifact the hook
    /// settled on.
    async fn preflight(
        &self,
        shared: &RunShared,
        deployer: &dyn Deployer,
        req: &Request,
        release: &Release,
        journal: &mut Journal,
        hosts: &[MinionId],
    ) -> Result<(Vec<MinionId>, Option<Artifact>), Error> {
        let t = &req.template;
        let exclude_down = t.preflight.on_down == OnDown::Exclude;
        let mut cx = StageContext::new(
            shared,
            release,
            journal,
            Stage::Prepare,
            None,
            hosts.to_vec(),
        );
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
        if exclude_down && !down.is_empty() {
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
        let (live, artifact) = (cx.live, cx.artifact);
        if exclude_down {
            journal.set_status(&down, HostStatus::Excluded);
        }
        Ok((live, artifact))
    }
}

/// The template's hosts: its minion list, or what the transport resolves its expression to.
async fn resolve_targets(shared: &RunShared, req: &Request) -> Result<Vec<MinionId>, Error> {
    let t = &req.template;
    let Some(expr) = t.targets.expression() else {
        return t.targets.minions.iter().map(|m| MinionId::new(m)).collect();
    };
    let mut ids = shared
        .transport
        .resolve(&expr)
        .await
        .map_err(|source| Error::Transport {
            during: "resolving the template's targets",
            source,
        })?;
    ids.sort();
    ids.dedup();
    Ok(ids)
}

/// The request's hosts: every target, or the subset it names (each must be a target).
fn pick_hosts(req: &Request, all: Vec<MinionId>) -> Result<Vec<MinionId>, Error> {
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
                        format!("not a target of template `{}`", req.template.name),
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
            template: req.template.name.clone(),
            reason: "the target expression matched no minion".into(),
        });
    }
    Ok(hosts)
}

/// The version a rollback takes a host to, from its recorded history.
fn rollback_target(req: &Request, rec: &HostHistory) -> Option<String> {
    match (&req.mode, &req.template.rollback) {
        (
            Mode::Rollback {
                to: RollbackTo::Version(to),
            },
            _,
        ) => Some(to.clone()),
        (
            Mode::Rollback {
                to: RollbackTo::Undo(undo),
            },
            _,
        ) if rec.current.is_some() && rec.current.as_ref() != Some(undo) => {
            // the release being undone never recorded itself here: restore what the host ran (its
            // batch may have stopped the service)
            rec.current.clone()
        }
        (Mode::Rollback { .. }, _) => rec.previous.clone(),
        (Mode::Deploy, RollbackPolicy::Version { to }) => Some(to.clone()),
        (Mode::Deploy, RollbackPolicy::None | RollbackPolicy::Previous) => {
            // a healthy current version is what a failure restores (also when it is the version
            // being redeployed: the host ran it before); an unhealthy or unknown one never is
            if rec.healthy {
                rec.current.clone()
            } else {
                rec.previous.clone()
            }
        }
    }
}

/// The batches: a canary of one host first when asked, then batches of the rollout's size.
fn plan_batches(t: &Template, live: &[MinionId], total: usize) -> Vec<Vec<MinionId>> {
    let size = t.rollout.batch.ceil_of(total).max(1);
    let mut batches = Vec::new();
    let mut rest: &[MinionId] = live;
    if t.rollout.canary && rest.len() > 1 {
        batches.push(vec![rest[0].clone()]);
        rest = &rest[1..];
    }
    batches.extend(rest.chunks(size).map(<[MinionId]>::to_vec));
    batches
}
