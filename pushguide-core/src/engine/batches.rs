//! The rolling batches: each batch's three stages under the failure budget, decisions at a paused
//! stage, what is recorded after each batch, and the outcome.

use std::sync::PoisonError;

use tokio::sync::oneshot;
use tracing::Instrument;

use super::count;
use super::prepare::Prepared;
use super::request::Mode;
use super::run::Run;
use crate::hook::context::{Release, StageContext};
use crate::hook::deployer::run_hook;
use crate::hook::journal::Journal;
use crate::hook::template::{FailedHosts, OnFailure, RollbackPolicy};
use crate::model::event::EventKind;
use crate::model::report::HostStatus;
use crate::ports::fleet::HostChange;
use crate::vocab::call::MinionId;
use crate::vocab::error::StageError;
use crate::vocab::outcome::{Decision, DeploymentOutcome};
use crate::vocab::stage::Stage;

/// Why the batches stopped before the end.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Stop {
    Budget {
        failed: usize,
        allowed: usize,
    },
    RollbackDecided,
    Aborted,
    Cancelled,
    /// The lease was lost (or a fenced write refused).
    LeaseLost,
    /// A batch's results could not be made durable.
    NotRecorded,
}

impl Run {
    pub(super) async fn run_stage(
        &self,
        parent: &tracing::Span,
        release: &Release,
        journal: &mut Journal,
        batch: usize,
        stage: Stage,
        live: Vec<MinionId>,
    ) -> (Vec<MinionId>, Vec<MinionId>, bool) {
        self.shared.emit(EventKind::StageStarted {
            batch: Some(batch),
            stage,
            hosts: live.len(),
        });
        let mut cx = StageContext::new(&self.shared, release, journal, stage, Some(batch), live);
        let span = tracing::info_span!(parent: parent, "stage", stage = %stage, batch);
        let result = run_hook(&*self.deployer, stage, &mut cx)
            .instrument(span)
            .await;
        let mut cancelled = false;
        match result {
            Ok(()) => {}
            Err(StageError::Cancelled) => cancelled = true,
            Err(e) => {
                let live = cx.live.clone();
                let why = format!("{stage} hook failed: {e}");
                cx.fail_hosts(&live, "-", &|_| why.clone());
            }
        }
        let (live, failed) = (cx.live, cx.failed);
        self.shared.emit(EventKind::StageFinished {
            batch: Some(batch),
            stage,
            ok: live.len(),
            failed: failed.len(),
        });
        (live, failed, cancelled)
    }

    pub(super) async fn wait_decision(
        &self,
        batch: usize,
        stage: Stage,
        failed: Vec<MinionId>,
    ) -> Option<Decision> {
        let (tx, rx) = oneshot::channel();
        *self
            .control
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(tx);
        tracing::warn!(batch, stage = %stage, failed = failed.len(), "paused: decision needed");
        self.shared.emit(EventKind::DecisionNeeded {
            batch,
            stage,
            failed,
        });
        let mut cancel = self.shared.cancel.clone();
        let decision = tokio::select! {
            d = rx => d.ok(),
            _ = cancel.wait_for(|c| *c) => None,
        };
        self.control
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(d) = decision {
            self.shared.emit(EventKind::DecisionTaken { decision: d });
        }
        decision
    }

    pub(super) async fn run_batches(
        &self,
        prepared: Prepared,
    ) -> (DeploymentOutcome, Option<String>, Journal) {
        let Prepared {
            release,
            batches,
            max_failed,
            mut journal,
            ..
        } = prepared;
        let t = &release.template;
        let mut stop = None;
        if batches.iter().all(Vec::is_empty) {
            let reason = format!(
                "no host left to deploy to: {} did not pass pre-flight or prepare",
                count(journal.hosts.len(), "host")
            );
            return (DeploymentOutcome::Failed, Some(reason), journal);
        }
        if let Mode::Rollback { .. } = self.req.mode {
            for (b, hosts) in batches.iter().enumerate() {
                for h in hosts {
                    if let Some(r) = journal.get_mut(h) {
                        r.batch = Some(b);
                    }
                }
            }
            let rolled = self.rollback(&release, &mut journal, &batches).await;
            let outcome = if rolled.complete() {
                DeploymentOutcome::RolledBack
            } else {
                DeploymentOutcome::RollbackFailed
            };
            let mut reason = match (&self.req.mode, &self.req.undo) {
                (Mode::Rollback { to: Some(v) }, _) => {
                    format!("rollback of every host to {v} requested")
                }
                (_, Some(v)) => format!("rollback of the hosts release {v} reached requested"),
                _ => "rollback of every host to its previous version requested".to_owned(),
            };
            reason.push_str(&rolled.summary());
            return (outcome, Some(reason), journal);
        }
        if journal.count_failed() > max_failed {
            // Pre-flight or prepare already failed more hosts than allowed: touch nothing.
            let failed = journal.count_failed();
            self.shared.emit(EventKind::BudgetExceeded {
                failed,
                allowed: max_failed,
            });
            let reason = format!(
                "{} failed pre-flight or prepare, {max_failed} allowed; nothing was changed",
                count(failed, "host")
            );
            return (DeploymentOutcome::Failed, Some(reason), journal);
        }
        let mut halted: Option<String> = None;
        let mut restored = 0usize;
        // the batch and stage under way when the loop stopped in the middle of a batch
        let mut cut: Option<(Vec<MinionId>, Stage)> = None;
        'batches: for (b, hosts) in batches.iter().enumerate() {
            if self.shared.is_cancelled() {
                stop = Some(Stop::Cancelled);
                break;
            }
            if let Err(e) = self.check_lease().await {
                halted = Some(format!(
                    "stopped before batch {b}, touching nothing more (not rolling back either): {e}"
                ));
                stop = Some(Stop::LeaseLost);
                break;
            }
            let span = tracing::info_span!("batch", batch = b, hosts = hosts.len());
            self.shared.emit(EventKind::BatchStarted {
                batch: b,
                hosts: hosts.len(),
                minions: hosts.clone(),
            });
            for h in hosts {
                if let Some(r) = journal.get_mut(h) {
                    r.batch = Some(b);
                    r.status = HostStatus::Interrupted;
                }
            }
            // the batch's start is durable before any of its hosts is touched
            if let Err(e) = self.journal_barrier().await {
                halted = Some(format!(
                    "stopped before batch {b}: the journal cannot record it: {e}"
                ));
                stop = Some(Stop::NotRecorded);
                break;
            }
            self.set_under_way(hosts);
            let mut live = hosts.clone();
            for stage in Stage::BATCH {
                let mut to_run = std::mem::take(&mut live);
                loop {
                    let (ok, failed, cancelled) = self
                        .run_stage(&span, &release, &mut journal, b, stage, to_run)
                        .await;
                    live.extend(ok);
                    if cancelled {
                        stop = Some(Stop::Cancelled);
                        cut = Some((hosts.clone(), stage));
                        break 'batches;
                    }
                    let over = journal.count_failed() > max_failed;
                    if failed.is_empty() || !over || t.failure.on_failure != OnFailure::Pause {
                        break;
                    }
                    match self.wait_decision(b, stage, failed.clone()).await {
                        Some(Decision::Retry) => {
                            journal.set_status(&failed, HostStatus::Interrupted);
                            for h in &failed {
                                if let Some(r) = journal.get_mut(h) {
                                    r.failure = None;
                                }
                            }
                            to_run = failed;
                        }
                        Some(Decision::Exclude) => {
                            journal.set_status(&failed, HostStatus::Excluded);
                            break;
                        }
                        Some(Decision::Rollback) => {
                            stop = Some(Stop::RollbackDecided);
                            cut = Some((hosts.clone(), stage));
                            break 'batches;
                        }
                        Some(Decision::Abort) => {
                            stop = Some(Stop::Aborted);
                            cut = Some((hosts.clone(), stage));
                            break 'batches;
                        }
                        None => {
                            stop = Some(Stop::Cancelled);
                            cut = Some((hosts.clone(), stage));
                            break 'batches;
                        }
                    }
                }
            }
            journal.set_status(&live, HostStatus::Succeeded);
            let failed = journal.count_failed();
            let over = failed > max_failed && t.failure.on_failure == OnFailure::Halt;
            // what this batch's hosts run now, made durable before the next batch
            let mut written = self
                .record(
                    &live,
                    &HostChange::Deployed {
                        version: release.version.clone(),
                    },
                )
                .await;
            let broken: Vec<MinionId> = hosts
                .iter()
                .filter(|h| {
                    journal.get(h).is_some_and(|r| {
                        matches!(r.status, HostStatus::Failed | HostStatus::Excluded)
                    })
                })
                .cloned()
                .collect();
            if written.is_ok() {
                written = self.record_failed(&release, &journal, &broken).await;
            }
            if written.is_ok() {
                self.set_under_way(&[]);
            }
            for h in &live {
                self.shared
                    .emit(EventKind::HostSucceeded { host: h.clone() });
            }
            self.shared.emit(EventKind::BatchFinished {
                batch: b,
                ok: live.len(),
                failed: hosts.len() - live.len(),
            });
            let journaled = self.journal_barrier().await;
            if let Err(e) = written {
                halted = Some(format!(
                    "stopped after batch {b}: its hosts' versions cannot be recorded, so nothing \
                     more is touched (not rolling back either): {e}"
                ));
                stop = Some(Stop::NotRecorded);
                break;
            }
            if let Err(e) = journaled {
                halted = Some(format!(
                    "stopped after batch {b}: the journal cannot record it, so nothing more is \
                     touched (not rolling back either): {e}"
                ));
                stop = Some(Stop::NotRecorded);
                break;
            }
            if over {
                self.shared.emit(EventKind::BudgetExceeded {
                    failed,
                    allowed: max_failed,
                });
                stop = Some(Stop::Budget {
                    failed,
                    allowed: max_failed,
                });
                break;
            }
            // hosts that failed while the deployment goes on: back to their rollback target
            if !broken.is_empty()
                && t.failure.failed_hosts == FailedHosts::Restore
                && !self.shared.is_cancelled()
            {
                let outcome = self.restore(&release, &mut journal, b, &broken).await;
                restored += outcome.ok;
                if let Some(e) = outcome.stopped {
                    halted = Some(format!(
                        "stopped after batch {b} while restoring its failed hosts: {e}"
                    ));
                    stop = Some(Stop::NotRecorded);
                    break;
                }
            }
        }

        let Some(stop) = stop else {
            return self.completed(journal, max_failed, restored);
        };
        // a batch cut short: what its hosts run now is recorded before anything else happens
        if let Some((hosts, stage)) = cut {
            if let Err(e) = self.record_cut(&release, &journal, &hosts, stage).await {
                tracing::error!(error = %e, "what the batch under way left is not recorded");
                halted = Some(match halted.take() {
                    Some(h) => format!("{h}; the batch under way is not recorded: {e}"),
                    None => format!("the batch under way is not recorded: {e}"),
                });
            }
        }
        let reason = match stop {
            Stop::Budget { failed, allowed } => {
                format!(
                    "failure budget exceeded: {} failed, {allowed} allowed",
                    count(failed, "host")
                )
            }
            Stop::RollbackDecided => "rollback decided after a failure".to_owned(),
            Stop::Aborted => "aborted by decision after a failure".to_owned(),
            Stop::Cancelled => "cancelled".to_owned(),
            Stop::LeaseLost | Stop::NotRecorded => halted.take().unwrap_or_default(),
        };
        let reason = match halted {
            Some(h) => format!("{reason}; {h}"),
            None => reason,
        };
        let roll_back = match stop {
            Stop::RollbackDecided => true,
            Stop::Aborted | Stop::LeaseLost | Stop::NotRecorded => false,
            Stop::Budget { .. } | Stop::Cancelled => t.rollback != RollbackPolicy::None,
        };
        if !roll_back {
            let outcome = match stop {
                Stop::Cancelled => DeploymentOutcome::Cancelled,
                _ => DeploymentOutcome::Failed,
            };
            return (outcome, Some(reason), journal);
        }
        let rolled = self.rollback(&release, &mut journal, &batches).await;
        let outcome = match (rolled.complete(), stop) {
            (false, _) => DeploymentOutcome::RollbackFailed,
            (true, Stop::Cancelled) => DeploymentOutcome::Cancelled,
            (true, _) => DeploymentOutcome::RolledBack,
        };
        (
            outcome,
            Some(format!("{reason}{}", rolled.summary())),
            journal,
        )
    }

    /// The outcome of a deployment whose batches all ran: the reason always agrees with the figures.
    pub(super) fn completed(
        &self,
        journal: Journal,
        max_failed: usize,
        restored: usize,
    ) -> (DeploymentOutcome, Option<String>, Journal) {
        let total = journal.hosts.len();
        // hosts left out before any batch (pre-flight, prepare) are told apart from hosts that
        // failed in their batch
        let n = |s: HostStatus, in_batch: bool| {
            journal
                .hosts
                .iter()
                .filter(|h| h.status == s && h.batch.is_some() == in_batch)
                .count()
        };
        let succeeded = n(HostStatus::Succeeded, true);
        let (failed, excluded) = (n(HostStatus::Failed, true), n(HostStatus::Excluded, true));
        let left_out = n(HostStatus::Failed, false) + n(HostStatus::Excluded, false);
        let unrestored = journal
            .hosts
            .iter()
            .filter(|h| h.batch.is_some() && h.rollback_failure.is_some())
            .count();
        if failed + excluded + left_out == 0 {
            return (DeploymentOutcome::Succeeded, None, journal);
        }
        let budget = format!("failed within the budget of {max_failed}");
        let parts: Vec<String> = [
            (left_out, "host", "left out at pre-flight or prepare"),
            (failed, "host", budget.as_str()),
            (excluded, "host", "failed and excluded by decision"),
            (restored, "failed host", "restored to the rollback target"),
            (
                unrestored,
                "failed host",
                "could not be restored (state unknown)",
            ),
        ]
        .into_iter()
        .filter(|(n, _, _)| *n > 0)
        .map(|(n, noun, what)| format!("{} {what}", count(n, noun)))
        .collect();
        if succeeded == 0 {
            let reason = format!("no host succeeded: {}", parts.join("; "));
            let outcome = if unrestored > 0 {
                DeploymentOutcome::RollbackFailed
            } else {
                DeploymentOutcome::Failed
            };
            return (outcome, Some(reason), journal);
        }
        let reason = format!(
            "{succeeded} of {} succeeded; {}",
            count(total, "host"),
            parts.join("; ")
        );
        let outcome = if unrestored > 0 {
            // a human must look at the hosts whose restore failed
            DeploymentOutcome::RollbackFailed
        } else {
            DeploymentOutcome::PartiallyApplied
        };
        (outcome, Some(reason), journal)
    }
}
