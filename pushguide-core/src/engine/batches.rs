//! The rolling batches: each batch's three stages under the failure budget, decisions at a paused
//! stage, what is recorded after each batch, and the outcome.

use std::collections::HashSet;
use std::sync::PoisonError;

use tokio::sync::oneshot;
use tracing::Instrument;

use super::prepare::Prepared;
use super::request::{Mode, RollbackTo};
use super::run::Run;
use super::{count, stages_ahead};
use crate::hook::context::{Release, StageContext};
use crate::hook::deployer::run_hook;
use crate::hook::jobs::{send_jobs, Queue};
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

/// One batch of the plan.
pub(super) struct Batch<'a> {
    index: usize,
    hosts: &'a [MinionId],
    /// The deployment's failure budget.
    max_failed: usize,
}

/// Why and where the batches stopped early.
pub(super) struct Halt {
    stop: Stop,
    /// What went wrong, for stops that are not a plain decision.
    halted: Option<String>,
    /// The batch under way and the stage it was in, when the stop came in the middle of a batch.
    cut: Option<(Vec<MinionId>, Stage)>,
}

impl Halt {
    fn new(stop: Stop) -> Self {
        Halt {
            stop,
            halted: None,
            cut: None,
        }
    }

    fn because(mut self, why: String) -> Self {
        self.halted = Some(why);
        self
    }

    fn cut(mut self, hosts: &[MinionId], stage: Stage) -> Self {
        self.cut = Some((hosts.to_vec(), stage));
        self
    }
}

impl Run {
    pub(super) async fn run_stage(
        &self,
        parent: &tracing::Span,
        release: &Release,
        journal: &mut Journal,
        batch: Option<usize>,
        stage: Stage,
        live: Vec<MinionId>,
    ) -> (Vec<MinionId>, Vec<MinionId>, bool) {
        self.shared.emit(EventKind::StageStarted {
            batch,
            stage,
            hosts: live.len(),
        });
        let mut cx = StageContext::new(&self.shared, release, journal, stage, batch, live);
        let span = tracing::info_span!(parent: parent, "stage", stage = %stage, batch = ?batch);
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
                cx.fail_hosts(&live, None, &|_| why.clone());
            }
        }
        let (live, failed) = (cx.live, cx.failed);
        self.shared.emit(EventKind::StageFinished {
            batch,
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

    /// Runs the prepared batches in order and says how the deployment ended.
    pub(super) async fn run_batches(
        &self,
        prepared: Prepared,
    ) -> (DeploymentOutcome, Option<String>, Journal) {
        let Prepared {
            mut release,
            batches,
            max_failed,
            mut journal,
            ..
        } = prepared;
        if batches.iter().all(Vec::is_empty) {
            let reason = format!(
                "no host left to deploy to: {} did not pass pre-flight or prepare",
                count(journal.hosts.len(), "host")
            );
            return (DeploymentOutcome::Failed, Some(reason), journal);
        }
        if let Mode::Rollback { .. } = self.req.mode {
            return self.requested_rollback(&release, journal, &batches).await;
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
        let batches = if stages_ahead(&self.req, &*self.deployer) {
            match self
                .stage_ahead(&release, &mut journal, batches, max_failed)
                .await
            {
                Ok(batches) => {
                    release.staged = true;
                    batches
                }
                Err(stopped) => return (stopped.0, Some(stopped.1), journal),
            }
        } else {
            batches
        };
        let mut restored = 0usize;
        for (b, hosts) in batches.iter().enumerate() {
            if hosts.is_empty() {
                // every host of this batch failed staging
                continue;
            }
            let batch = Batch {
                index: b,
                hosts,
                max_failed,
            };
            if let Err(halt) = self
                .run_batch(&release, &mut journal, &batch, &mut restored)
                .await
            {
                return self.halted(&release, journal, &batches, halt).await;
            }
        }
        self.completed(journal, max_failed, restored)
    }

    /// Staging ahead of the batches: the kind's staging hook on every host of every batch at once. Returns the batches without the hosts
    /// that failed staging; `Err` with the outcome and reason when the deployment stops before any
    /// host is touched (cancelled, or more hosts failed than the budget allows).
    async fn stage_ahead(
        &self,
        release: &Release,
        journal: &mut Journal,
        batches: Vec<Vec<MinionId>>,
        max_failed: usize,
    ) -> Result<Vec<Vec<MinionId>>, (DeploymentOutcome, String)> {
        if self.shared.is_cancelled() {
            return Err((DeploymentOutcome::Cancelled, "cancelled".to_owned()));
        }
        let hosts: Vec<MinionId> = batches.concat();
        let span = tracing::info_span!("staging", hosts = hosts.len());
        let (_, failed, cancelled) = self
            .run_stage(&span, release, journal, None, Stage::Staging, hosts)
            .await;
        // a cancel during staging's last call (which finishes) stops here too
        if cancelled || self.shared.is_cancelled() {
            let reason = "cancelled while staging; no host was touched".to_owned();
            return Err((DeploymentOutcome::Cancelled, reason));
        }
        let failed_now = journal.count_failed();
        if failed_now > max_failed {
            self.shared.emit(EventKind::BudgetExceeded {
                failed: failed_now,
                allowed: max_failed,
            });
            let reason = format!(
                "{} failed pre-flight, prepare or staging, {max_failed} allowed; no host was \
                 touched (staged releases stay beside the running ones)",
                count(failed_now, "host")
            );
            return Err((DeploymentOutcome::Failed, reason));
        }
        let failed: HashSet<&MinionId> = failed.iter().collect();
        Ok(batches
            .into_iter()
            .map(|b| b.into_iter().filter(|h| !failed.contains(h)).collect())
            .collect())
    }

    /// A rollback a user asked for: every batch through the rollback hook.
    async fn requested_rollback(
        &self,
        release: &Release,
        mut journal: Journal,
        batches: &[Vec<MinionId>],
    ) -> (DeploymentOutcome, Option<String>, Journal) {
        for (b, hosts) in batches.iter().enumerate() {
            for h in hosts {
                if let Some(r) = journal.get_mut(h) {
                    r.batch = Some(b);
                }
            }
        }
        let rolled = self.rollback(release, &mut journal, batches).await;
        let outcome = if rolled.complete() {
            DeploymentOutcome::RolledBack
        } else {
            DeploymentOutcome::RollbackFailed
        };
        let mut reason = match &self.req.mode {
            Mode::Rollback {
                to: RollbackTo::Version(v),
            } => format!("rollback of every host to {v} requested"),
            Mode::Rollback {
                to: RollbackTo::Undo(v),
            } => format!("rollback of the hosts release {v} reached requested"),
            _ => "rollback of every host to its previous version requested".to_owned(),
        };
        reason.push_str(&rolled.summary());
        (outcome, Some(reason), journal)
    }

    /// One batch: its start made durable, its three stages, its results recorded, and its failed
    /// hosts restored. `Err` says why the deployment stops here.
    async fn run_batch(
        &self,
        release: &Release,
        journal: &mut Journal,
        batch: &Batch<'_>,
        restored: &mut usize,
    ) -> Result<(), Halt> {
        let b = batch.index;
        self.begin_batch(journal, batch).await?;
        let span = tracing::info_span!("batch", batch = b, hosts = batch.hosts.len());
        let live = self
            .run_batch_stages(&span, release, journal, batch)
            .await?;
        let broken = self.end_batch(release, journal, batch, &live).await?;
        // hosts that failed while the deployment goes on: back to their rollback target
        if !broken.is_empty()
            && release.template.failure.failed_hosts == FailedHosts::Restore
            && !self.shared.is_cancelled()
        {
            let outcome = self.restore(release, journal, b, &broken).await;
            *restored += outcome.ok;
            if let Some(e) = outcome.stopped {
                return Err(Halt::new(Stop::NotRecorded).because(format!(
                    "stopped after batch {b} while restoring its failed hosts: {e}"
                )));
            }
        }
        Ok(())
    }

    /// Before a batch touches anything: not cancelled, the lease still held, and the batch's start
    /// durable in the journal.
    async fn begin_batch(&self, journal: &mut Journal, batch: &Batch<'_>) -> Result<(), Halt> {
        let b = batch.index;
        if self.shared.is_cancelled() {
            return Err(Halt::new(Stop::Cancelled));
        }
        if let Err(e) = self.check_lease().await {
            return Err(Halt::new(Stop::LeaseLost).because(format!(
                "stopped before batch {b}, touching nothing more (not rolling back either): {e}"
            )));
        }
        self.shared.emit(EventKind::BatchStarted {
            batch: b,
            hosts: batch.hosts.len(),
            minions: batch.hosts.to_vec(),
        });
        for h in batch.hosts {
            if let Some(r) = journal.get_mut(h) {
                r.batch = Some(b);
                r.status = HostStatus::Interrupted;
            }
        }
        // the batch's start is durable before any of its hosts is touched
        if let Err(e) = self.journal_barrier().await {
            return Err(Halt::new(Stop::NotRecorded).because(format!(
                "stopped before batch {b}: the journal cannot record it: {e}"
            )));
        }
        self.set_under_way(batch.hosts);
        Ok(())
    }

    /// The batch's three stages in order; returns the hosts still live after the last one.
    async fn run_batch_stages(
        &self,
        span: &tracing::Span,
        release: &Release,
        journal: &mut Journal,
        batch: &Batch<'_>,
    ) -> Result<Vec<MinionId>, Halt> {
        if self.batch_as_one_job(release) {
            return self.run_batch_job(span, release, journal, batch).await;
        }
        let mut live = batch.hosts.to_vec();
        for stage in Stage::BATCH {
            live = self
                .run_stage_decided(span, release, journal, batch, stage, live)
                .await?;
        }
        Ok(live)
    }

    /// Whether this batch's three stages go to each host as one salt job
    /// ([`crate::Deployer::batch_in_one_job`]).
    fn batch_as_one_job(&self, release: &Release) -> bool {
        self.shared.step_jobs
            && !release.dry_run
            && self.deployer.batch_in_one_job()
            && release.template.failure.on_failure != OnFailure::Pause
    }

    /// A batch as one job: each stage hook queues its steps, the steps of all three go to each host
    /// as one salt job, and what it did is recorded stage by stage, each with its events. A cancel
    /// that comes while the job runs lets it run to its end on the minions (a salt job cannot be
    /// taken back); what it did is recorded, then the batch stops as cancelled.
    async fn run_batch_job(
        &self,
        span: &tracing::Span,
        release: &Release,
        journal: &mut Journal,
        batch: &Batch<'_>,
    ) -> Result<Vec<MinionId>, Halt> {
        let b = batch.index;
        let cut = |stop, stage| Err(Halt::new(stop).cut(batch.hosts, stage));
        let mut queue = Queue::default();
        let mut live = batch.hosts.to_vec();
        let mut failed_collecting: Vec<Vec<MinionId>> = Vec::new();
        for stage in Stage::BATCH {
            let mut cx =
                StageContext::new(&self.shared, release, journal, stage, Some(b), live.clone());
            cx.queue = std::mem::take(&mut queue);
            cx.collect = true;
            let span = tracing::info_span!(parent: span, "stage", stage = %stage, batch = b);
            match run_hook(&*self.deployer, stage, &mut cx)
                .instrument(span)
                .await
            {
                Ok(()) => {}
                Err(StageError::Cancelled) => return cut(Stop::Cancelled, Stage::PreDeploy),
                Err(e) => {
                    let live = cx.live.clone();
                    let why = format!("{stage} hook failed: {e}");
                    cx.fail_hosts(&live, None, &|_| why.clone());
                }
            }
            queue = std::mem::take(&mut cx.queue);
            for h in &cx.failed {
                queue.drop_from(h, stage);
            }
            failed_collecting.push(cx.failed.clone());
            live = cx.live.clone();
        }
        if self.shared.is_cancelled() {
            return cut(Stop::Cancelled, Stage::PreDeploy);
        }
        let sent = send_jobs(
            &self.shared,
            Some(b),
            queue.first_stage().unwrap_or(Stage::PreDeploy),
            &queue,
            &live,
        )
        .await;
        let mut live = batch.hosts.to_vec();
        for (stage, failed_before) in Stage::BATCH.into_iter().zip(failed_collecting) {
            self.shared.emit(EventKind::StageStarted {
                batch: Some(b),
                stage,
                hosts: live.len(),
            });
            live.retain(|h| !failed_before.contains(h));
            let mut cx = StageContext::new(&self.shared, release, journal, stage, Some(b), live);
            cx.record_sent(&sent);
            let failed = failed_before.len() + cx.failed.len();
            live = cx.live;
            self.shared.emit(EventKind::StageFinished {
                batch: Some(b),
                stage,
                ok: live.len(),
                failed,
            });
        }
        if self.shared.is_cancelled() {
            return cut(Stop::Cancelled, Stage::PostDeploy);
        }
        Ok(live)
    }

    /// One stage of a batch, run again for the failed hosts for as long as a user decides to retry
    /// (with `on_failure = "pause"` and the budget exceeded). Returns the hosts that passed it.
    async fn run_stage_decided(
        &self,
        span: &tracing::Span,
        release: &Release,
        journal: &mut Journal,
        batch: &Batch<'_>,
        stage: Stage,
        mut to_run: Vec<MinionId>,
    ) -> Result<Vec<MinionId>, Halt> {
        let b = batch.index;
        let mut live = Vec::new();
        loop {
            let (ok, failed, cancelled) = self
                .run_stage(span, release, journal, Some(b), stage, to_run)
                .await;
            live.extend(ok);
            let cut = |stop| Err(Halt::new(stop).cut(batch.hosts, stage));
            if cancelled {
                return cut(Stop::Cancelled);
            }
            let over = journal.count_failed() > batch.max_failed;
            if failed.is_empty() || !over || release.template.failure.on_failure != OnFailure::Pause
            {
                return Ok(live);
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
                    return Ok(live);
                }
                Some(Decision::Rollback) => return cut(Stop::RollbackDecided),
                Some(Decision::Abort) => return cut(Stop::Aborted),
                None => return cut(Stop::Cancelled),
            }
        }
    }

    /// After a batch's stages: what its hosts run now is durable (fleet state and journal) before
    /// the next batch, and the failure budget is checked. Returns the batch's failed or excluded
    /// hosts.
    async fn end_batch(
        &self,
        release: &Release,
        journal: &mut Journal,
        batch: &Batch<'_>,
        live: &[MinionId],
    ) -> Result<Vec<MinionId>, Halt> {
        let (b, hosts) = (batch.index, batch.hosts);
        journal.set_status(live, HostStatus::Succeeded);
        let failed = journal.count_failed();
        let over =
            failed > batch.max_failed && release.template.failure.on_failure == OnFailure::Halt;
        let mut written = self
            .record(
                live,
                &HostChange::Deployed {
                    version: release.version.clone(),
                },
            )
            .await;
        let broken: Vec<MinionId> = hosts
            .iter()
            .filter(|h| {
                journal
                    .get(h)
                    .is_some_and(|r| matches!(r.status, HostStatus::Failed | HostStatus::Excluded))
            })
            .cloned()
            .collect();
        if written.is_ok() {
            written = self.record_failed(release, journal, &broken).await;
        }
        if written.is_ok() {
            self.set_under_way(&[]);
        }
        for h in live {
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
            return Err(Halt::new(Stop::NotRecorded).because(format!(
                "stopped after batch {b}: its hosts' versions cannot be recorded, so nothing \
                 more is touched (not rolling back either): {e}"
            )));
        }
        if let Err(e) = journaled {
            return Err(Halt::new(Stop::NotRecorded).because(format!(
                "stopped after batch {b}: the journal cannot record it, so nothing more is \
                 touched (not rolling back either): {e}"
            )));
        }
        if over {
            let allowed = batch.max_failed;
            self.shared
                .emit(EventKind::BudgetExceeded { failed, allowed });
            return Err(Halt::new(Stop::Budget { failed, allowed }));
        }
        Ok(broken)
    }

    /// The batches stopped early: what the batch under way left is recorded, then the template's
    /// rollback policy (or the decision) says whether the touched hosts go back.
    async fn halted(
        &self,
        release: &Release,
        mut journal: Journal,
        batches: &[Vec<MinionId>],
        halt: Halt,
    ) -> (DeploymentOutcome, Option<String>, Journal) {
        let Halt {
            stop,
            mut halted,
            cut,
        } = halt;
        // a batch cut short: what its hosts run now is recorded before anything else happens
        if let Some((hosts, stage)) = cut {
            if let Err(e) = self.record_cut(release, &journal, &hosts, stage).await {
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
            Stop::Budget { .. } | Stop::Cancelled => {
                release.template.rollback != RollbackPolicy::None
            }
        };
        if !roll_back {
            let outcome = match stop {
                Stop::Cancelled => DeploymentOutcome::Cancelled,
                _ => DeploymentOutcome::Failed,
            };
            return (outcome, Some(reason), journal);
        }
        let rolled = self.rollback(release, &mut journal, batches).await;
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
