//! Rollback: a whole deployment's touched hosts (on failure, decision, cancel or request), and the
//! restore of hosts that failed within the budget.

use std::collections::HashMap;

use super::count;
use super::request::Mode;
use super::run::Run;
use crate::hook::context::Release;
use crate::hook::journal::Journal;
use crate::model::event::EventKind;
use crate::model::report::{HostStatus, LogEntry};
use crate::ports::fleet::HostChange;
use crate::vocab::call::MinionId;
use crate::vocab::error::Error;
use crate::vocab::stage::Stage;

/// What a rollback (or a restore of failed hosts) did.
#[derive(Debug, Default)]
pub(super) struct Restored {
    /// Hosts back on their target.
    pub(super) ok: usize,
    /// Why it stopped early (fleet state refused a write).
    pub(super) stopped: Option<Error>,
}

/// What a rollback of a deployment's hosts did.
#[derive(Debug, Default)]
pub(super) struct Rolled {
    pub(super) ok: usize,
    pub(super) failed: usize,
    /// Hosts without a rollback target; a failure when restoring a failed release, not when a user
    /// asked to roll back.
    pub(super) without_target: usize,
    pub(super) without_target_fails: bool,
}

impl Rolled {
    pub(super) fn complete(&self) -> bool {
        self.failed == 0 && (self.without_target == 0 || !self.without_target_fails)
    }

    pub(super) fn summary(&self) -> String {
        let mut s = format!("; {} rolled back", count(self.ok, "host"));
        if self.failed > 0 {
            s.push_str(&format!(
                ", {} failed to roll back",
                count(self.failed, "host")
            ));
        }
        if self.without_target > 0 {
            s.push_str(&format!(
                ", {} without a rollback target{}",
                count(self.without_target, "host"),
                if self.without_target_fails {
                    ""
                } else {
                    " left as they are"
                }
            ));
        }
        s
    }
}

impl Run {
    /// Records what the failed `hosts` of a batch run now: the old version when they failed before
    /// the deploy stage (the service may be stopped), the new one when they failed after it (the
    /// health check, say), unknown when they failed in the deploy stage itself.
    pub(super) async fn record_failed(
        &self,
        release: &Release,
        journal: &Journal,
        hosts: &[MinionId],
    ) -> Result<(), Error> {
        let mut by_runs: HashMap<Option<String>, Vec<MinionId>> = HashMap::new();
        for h in hosts {
            let stage = journal
                .get(h)
                .and_then(|r| r.failure.as_ref())
                .map(|f| f.stage);
            let runs = match stage {
                Some(Stage::Prepare | Stage::PreDeploy) => {
                    release.hosts.get(h).and_then(|v| v.current.clone())
                }
                Some(Stage::PostDeploy) => Some(release.version.clone()),
                _ => None,
            };
            by_runs.entry(runs).or_default().push(h.clone());
        }
        for (runs, hosts) in by_runs {
            self.record(&hosts, &HostChange::Failed { runs }).await?;
        }
        Ok(())
    }

    /// Records what the hosts of a batch cut short (cancel, abort, a rollback decision) run now: its
    /// failed hosts as [`Run::record_failed`] says; the others by the stage under way — the old version
    /// (not healthy: the service may be stopped) during pre-deploy, unknown during deploy, the new
    /// version (not healthy: its checks did not finish) during post-deploy.
    pub(super) async fn record_cut(
        &self,
        release: &Release,
        journal: &Journal,
        hosts: &[MinionId],
        stage: Stage,
    ) -> Result<(), Error> {
        let (failed, rest): (Vec<MinionId>, Vec<MinionId>) = hosts.iter().cloned().partition(|h| {
            journal
                .get(h)
                .is_some_and(|r| matches!(r.status, HostStatus::Failed | HostStatus::Excluded))
        });
        self.record_failed(release, journal, &failed).await?;
        let mut by_runs: HashMap<Option<String>, Vec<MinionId>> = HashMap::new();
        for h in rest {
            let runs = match stage {
                // staging touches nothing that serves
                Stage::Prepare | Stage::Staging | Stage::PreDeploy => {
                    release.hosts.get(&h).and_then(|v| v.current.clone())
                }
                Stage::PostDeploy => Some(release.version.clone()),
                Stage::Deploy | Stage::Rollback => None,
            };
            by_runs.entry(runs).or_default().push(h);
        }
        for (runs, hosts) in by_runs {
            self.record(&hosts, &HostChange::Failed { runs }).await?;
        }
        Ok(())
    }

    /// Restores the failed `hosts` of batch `batch` to their rollback targets through the `rollback`
    /// hook (one call for all of them), logged under the rollback stage of each host.
    pub(super) async fn restore(
        &self,
        release: &Release,
        journal: &mut Journal,
        batch: usize,
        hosts: &[MinionId],
    ) -> Restored {
        let (with_target, without): (Vec<MinionId>, Vec<MinionId>) =
            hosts.iter().cloned().partition(|h| {
                release
                    .hosts
                    .get(h)
                    .is_some_and(|v| v.rollback_to.is_some())
            });
        for h in &without {
            if let Some(r) = journal.get_mut(h) {
                r.log.push(LogEntry::Message {
                    stage: Stage::Rollback,
                    text: "left as the failure left it: no rollback target recorded".to_owned(),
                });
            }
        }
        if with_target.is_empty() {
            return Restored::default();
        }
        tracing::warn!(
            hosts = with_target.len(),
            "restoring failed hosts to their rollback targets"
        );
        let span = tracing::info_span!("restore", batch, hosts = with_target.len());
        self.set_under_way(&with_target);
        let (ok, failed, _) = self
            .run_stage(
                &span,
                release,
                journal,
                Some(batch),
                Stage::Rollback,
                with_target,
            )
            .await;
        let written = self.rolled_back(release, journal, &ok, &failed).await;
        if written.is_ok() {
            self.set_under_way(&[]);
        }
        Restored {
            ok: ok.len(),
            stopped: written.err(),
        }
    }

    /// Books the result of a rollback call: `ok` hosts run their target again, `failed` ones are in an
    /// unknown state; both are announced and recorded in the fleet state.
    pub(super) async fn rolled_back(
        &self,
        release: &Release,
        journal: &mut Journal,
        ok: &[MinionId],
        failed: &[MinionId],
    ) -> Result<(), Error> {
        let mut by_version: HashMap<String, Vec<MinionId>> = HashMap::new();
        for h in ok {
            let to = release
                .hosts
                .get(h)
                .and_then(|v| v.rollback_to.clone())
                .unwrap_or_default();
            if let Some(r) = journal.get_mut(h) {
                r.rolled_back_to = Some(to.clone());
            }
            self.shared.emit(EventKind::HostRolledBack {
                host: h.clone(),
                to: to.clone(),
            });
            by_version.entry(to).or_default().push(h.clone());
        }
        for h in failed {
            let reason = journal
                .get_mut(h)
                .and_then(|r| r.rollback_failure.as_ref().map(|f| f.reason.clone()))
                .unwrap_or_default();
            self.shared.emit(EventKind::HostRollbackFailed {
                host: h.clone(),
                reason,
            });
        }
        for (to, hosts) in by_version {
            self.record(&hosts, &HostChange::RolledBack { to }).await?;
        }
        self.record(failed, &HostChange::Failed { runs: None })
            .await
    }

    /// Marks `hosts` as left out of the rollback with `status`, logging and announcing `reason`.
    pub(super) fn not_rolled_back(
        &self,
        journal: &mut Journal,
        hosts: &[MinionId],
        status: HostStatus,
        reason: &str,
    ) {
        journal.set_status(hosts, status);
        for h in hosts {
            if let Some(r) = journal.get_mut(h) {
                r.log.push(LogEntry::Message {
                    stage: Stage::Rollback,
                    text: reason.to_owned(),
                });
            }
            self.shared.emit(EventKind::HostRollbackFailed {
                host: h.clone(),
                reason: reason.to_owned(),
            });
        }
    }

    /// Rolls back every touched host not already restored through the deployer's `rollback` hook, in
    /// batches of the same size, recording each batch's result before the next.
    pub(super) async fn rollback(
        &self,
        release: &Release,
        journal: &mut Journal,
        batches: &[Vec<MinionId>],
    ) -> Rolled {
        let size = batches.iter().map(Vec::len).max().unwrap_or(1).max(1);
        let requested = matches!(self.req.mode, Mode::Rollback { .. });
        let touched: Vec<MinionId> = journal
            .hosts
            .iter()
            .filter(|h| h.batch.is_some() && h.rolled_back_to.is_none())
            .map(|h| h.host.clone())
            .collect();
        let (with_target, without): (Vec<MinionId>, Vec<MinionId>) =
            touched.into_iter().partition(|h| {
                release
                    .hosts
                    .get(h)
                    .is_some_and(|v| v.rollback_to.is_some())
            });
        self.shared.emit(EventKind::RollbackStarted {
            hosts: with_target.len() + without.len(),
        });
        tracing::warn!(
            hosts = with_target.len(),
            without_target = without.len(),
            "rolling back"
        );
        let mut rolled = Rolled {
            without_target: without.len(),
            without_target_fails: !requested,
            ..Rolled::default()
        };
        self.without_target(journal, &without, requested);
        let mut done = 0;
        for (i, chunk) in with_target.chunks(size).enumerate() {
            let stopped = match self.check_lease().await {
                Err(e) => Some(e),
                Ok(()) => {
                    done += chunk.len();
                    self.rollback_batch(release, journal, i, chunk, &mut rolled)
                        .await
                }
            };
            if let Some(e) = stopped {
                // the hosts not rolled back yet stay as they are: someone else may own them now
                let rest = &with_target[done..];
                let reason = format!("not rolled back: {e}");
                self.not_rolled_back(journal, rest, HostStatus::RollbackFailed, &reason);
                rolled.failed += rest.len();
                break;
            }
        }
        self.shared.emit(EventKind::RollbackFinished {
            ok: rolled.ok,
            failed: rolled.failed + if requested { 0 } else { without.len() },
        });
        rolled
    }

    /// Touched hosts with nothing recorded to go back to: left as they are when a user asked for the
    /// rollback, a failure when a failed release is being undone.
    fn without_target(&self, journal: &mut Journal, without: &[MinionId], requested: bool) {
        if !requested {
            self.not_rolled_back(
                journal,
                without,
                HostStatus::NoRollbackTarget,
                "no previous version recorded for this host",
            );
            return;
        }
        // nothing recorded to go back to: not a failure of the rollback a user asked for
        journal.set_status(without, HostStatus::NoRollbackTarget);
        for h in without {
            if let Some(r) = journal.get_mut(h) {
                r.log.push(LogEntry::Message {
                    stage: Stage::Rollback,
                    text: "nothing to roll back: no earlier version recorded; left as it is"
                        .to_owned(),
                });
            }
        }
    }

    /// One batch of a rollback through the kind's rollback hook, its result recorded in the fleet
    /// state and the journal. Returns why the rollback must stop, if it must.
    async fn rollback_batch(
        &self,
        release: &Release,
        journal: &mut Journal,
        index: usize,
        chunk: &[MinionId],
        rolled: &mut Rolled,
    ) -> Option<Error> {
        let span =
            tracing::info_span!("batch", batch = index, hosts = chunk.len(), rollback = true);
        self.set_under_way(chunk);
        let (ok, failed, _) = self
            .run_stage(
                &span,
                release,
                journal,
                Some(index),
                Stage::Rollback,
                chunk.to_vec(),
            )
            .await;
        journal.set_status(&ok, HostStatus::RolledBack);
        journal.set_status(&failed, HostStatus::RollbackFailed);
        rolled.ok += ok.len();
        rolled.failed += failed.len();
        let written = self.rolled_back(release, journal, &ok, &failed).await;
        if written.is_ok() {
            self.set_under_way(&[]);
        }
        let journaled = self.journal_barrier().await;
        match (written, journaled) {
            (Err(e), _) => Some(e),
            (_, Err(e)) => Some(Error::StoreFailed {
                during: "journaling a rollback batch",
                source: e.into(),
            }),
            _ => None,
        }
    }
}
