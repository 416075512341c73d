//! What a stage hook sees: the batch's live hosts, the release, and `call()`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::hook::journal::{Journal, RunShared};
use crate::hook::template::Template;
use crate::model::event::EventKind;
use crate::model::report::{CallRecord, LogEntry};
use crate::vocab::call::{MinionId, Outcome, Returns, SaltCall};
use crate::vocab::error::StageError;
use crate::vocab::stage::Stage;

/// One entry of an artifact's manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// Path inside the archive, `/` separated; directories end with `/`.
    pub path: String,
    /// Size in bytes.
    #[serde(default)]
    pub size: u64,
}

/// The artifact being released, as resolved from CI.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Artifact {
    /// Where minions fetch it (`http://`, `https://` or `salt://`).
    pub url: String,
    /// Expected SHA-256, lower-case hex.
    pub sha256: Option<String>,
    /// Size in bytes.
    pub size: Option<u64>,
    /// The archive's entries, for the layout-conventions gate.
    pub manifest: Option<Vec<ManifestEntry>>,
}

impl Artifact {
    /// Sets the manifest (builder style).
    pub fn with_manifest(mut self, manifest: Vec<ManifestEntry>) -> Self {
        self.manifest = Some(manifest);
        self
    }

    /// An artifact at `url` with an optional checksum.
    pub fn new(url: impl Into<String>, sha256: Option<String>) -> Self {
        Artifact {
            url: url.into(),
            sha256,
            size: None,
            manifest: None,
        }
    }
}

/// Which version a host runs and where it goes back to on rollback.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostVersions {
    /// The version the host ran when the deployment started (from recorded history).
    pub current: Option<String>,
    /// The version a rollback restores on this host.
    pub rollback_to: Option<String>,
}

/// One release: the template, the version and each host's versions. Shared by every stage.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Release {
    /// Deployment id.
    pub deployment: Arc<str>,
    /// The template.
    pub template: Arc<Template>,
    /// The version being released (validated).
    pub version: String,
    /// The artifact, if resolved (set during prepare).
    pub artifact: Option<Artifact>,
    /// Per host: current and rollback versions.
    pub hosts: HashMap<MinionId, HostVersions>,
    /// Whether mutating calls are only recorded.
    pub dry_run: bool,
    /// Whether staging ran before the batches: every host in a batch passed it
    /// ([`crate::Deployer::stage`]).
    pub staged: bool,
}

/// What one host answered to a call that did not fail, typed by whether there is an answer to judge.
///
/// A dry run sends read-only calls and only records mutating ones; a plan sends nothing. The type says
/// which case a value comes from, so that a hook cannot mistake a recorded call for one a minion
/// confirmed, nor fail a host over what it reported while the dry run changed nothing on it:
/// [`Answer::returned`] (and [`CallResults::returned`]) yield only the answers of a real run.
///
/// ```
/// use pushguide_core::Answer;
/// use serde_json::json;
/// let real = Answer::Returned(json!(false));
/// assert_eq!(real.returned(), Some(&json!(false))); // to judge: this host failed
/// let recorded = Answer::NotSent;
/// assert_eq!(recorded.returned(), None); // nothing to judge
/// let observed = Answer::DryRun(json!({"physicalPath": "D:\\Sites\\shop"}));
/// assert_eq!(observed.returned(), None); // not a verdict on the release...
/// assert!(observed.value().is_some()); // ...but the host's real state, to shape later calls
/// ```
#[derive(Clone, Debug, PartialEq)]
pub enum Answer {
    /// The minion returned this value in a real run: the answer to judge.
    Returned(Value),
    /// A read-only call sent during a dry run: the minion's real answer, about a host on which the dry
    /// run changed nothing (its mutating calls were only recorded). Use it to shape later calls, not
    /// as a verdict on the release.
    DryRun(Value),
    /// The call was recorded and not sent (a mutating call in a dry run, any call in a plan): there is
    /// no answer.
    NotSent,
}

impl Answer {
    /// The value of a real run's answer: the one to judge (`None` in dry runs and plans).
    pub fn returned(&self) -> Option<&Value> {
        match self {
            Answer::Returned(v) => Some(v),
            Answer::DryRun(_) | Answer::NotSent => None,
        }
    }

    /// The value the minion sent, in a real run or a dry run (`None` when the call was not sent).
    pub fn value(&self) -> Option<&Value> {
        match self {
            Answer::Returned(v) | Answer::DryRun(v) => Some(v),
            Answer::NotSent => None,
        }
    }

    /// Whether the call was sent to the minion.
    pub fn is_sent(&self) -> bool {
        !matches!(self, Answer::NotSent)
    }
}

/// The hosts that did not fail one or more calls, each with its [`Answer`].
#[derive(Clone, Debug, Default)]
pub struct CallResults {
    pub(crate) jids: Vec<String>,
    pub(crate) answers: Vec<(MinionId, Answer)>,
}

impl CallResults {
    /// The salt job ids of the requests sent, in order (none when nothing was sent).
    pub fn jids(&self) -> &[String] {
        &self.jids
    }

    /// The answer of `host`, if it did not fail.
    pub fn get(&self, host: &MinionId) -> Option<&Answer> {
        self.answers.iter().find(|(h, _)| h == host).map(|(_, a)| a)
    }

    /// Every host that did not fail, with its answer.
    pub fn iter(&self) -> impl Iterator<Item = (&MinionId, &Answer)> {
        self.answers.iter().map(|(h, a)| (h, a))
    }

    /// Every host that did not fail (whether or not the call was sent).
    pub fn hosts(&self) -> impl Iterator<Item = &MinionId> {
        self.answers.iter().map(|(h, _)| h)
    }

    /// The hosts that answered in a real run, with their values: the answers to judge. Empty in dry
    /// runs and plans.
    pub fn returned(&self) -> impl Iterator<Item = (&MinionId, &Value)> {
        self.answers
            .iter()
            .filter_map(|(h, a)| Some((h, a.returned()?)))
    }

    /// Number of hosts that did not fail.
    pub fn len(&self) -> usize {
        self.answers.len()
    }

    /// Whether every host failed (or there was none).
    pub fn is_empty(&self) -> bool {
        self.answers.is_empty()
    }

    /// Adds the results of another call (e.g. to another group of hosts).
    pub fn extend(&mut self, other: CallResults) {
        self.jids.extend(other.jids);
        self.answers.extend(other.answers);
    }
}

impl IntoIterator for CallResults {
    type Item = (MinionId, Answer);
    type IntoIter = std::vec::IntoIter<(MinionId, Answer)>;

    fn into_iter(self) -> Self::IntoIter {
        self.answers.into_iter()
    }
}

/// The context of one stage hook for one batch (or, for `prepare`, for the whole deployment).
///
/// [`StageContext::call`] sends one salt request to every live host; hosts that fail are recorded
/// (with the call and the reason), logged, reported as events and dropped from later calls.
pub struct StageContext<'a> {
    pub(crate) shared: &'a RunShared,
    pub(crate) release: &'a Release,
    pub(crate) journal: &'a mut Journal,
    pub(crate) stage: Stage,
    pub(crate) batch: Option<usize>,
    pub(crate) live: Vec<MinionId>,
    pub(crate) failed: Vec<MinionId>,
    pub(crate) artifact: Option<Artifact>,
    /// Steps queued and not sent yet ([`StageContext::steps`]).
    pub(crate) queue: crate::hook::jobs::Queue,
    /// Whether the engine sends the queue after the batch's last stage (a batch as one job): then
    /// the hooks may not call.
    pub(crate) collect: bool,
}

impl std::fmt::Debug for StageContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StageContext")
            .field("deployment", &self.release.deployment)
            .field("stage", &self.stage)
            .field("batch", &self.batch)
            .field("live", &self.live.len())
            .field("failed", &self.failed.len())
            .finish()
    }
}

impl<'a> StageContext<'a> {
    pub(crate) fn new(
        shared: &'a RunShared,
        release: &'a Release,
        journal: &'a mut Journal,
        stage: Stage,
        batch: Option<usize>,
        live: Vec<MinionId>,
    ) -> Self {
        StageContext {
            shared,
            release,
            journal,
            stage,
            batch,
            live,
            failed: Vec::new(),
            artifact: None,
            queue: crate::hook::jobs::Queue::default(),
            collect: false,
        }
    }

    /// The stage being run.
    pub fn stage(&self) -> Stage {
        self.stage
    }

    /// Zero-based batch index (`None` during prepare).
    pub fn batch(&self) -> Option<usize> {
        self.batch
    }

    /// The hosts still live in this batch.
    pub fn minions(&self) -> &[MinionId] {
        &self.live
    }

    /// Hosts that failed during this hook so far.
    pub fn failed(&self) -> &[MinionId] {
        &self.failed
    }

    /// The release.
    pub fn release(&self) -> &Release {
        self.release
    }

    /// The template.
    pub fn template(&self) -> &Template {
        &self.release.template
    }

    /// The version being released.
    pub fn version(&self) -> &str {
        &self.release.version
    }

    /// The artifact, if prepare resolved one.
    pub fn artifact(&self) -> Option<&Artifact> {
        self.artifact.as_ref().or(self.release.artifact.as_ref())
    }

    /// Sets the release's artifact. Only during prepare.
    pub fn set_artifact(&mut self, artifact: Artifact) -> Result<(), StageError> {
        if self.stage != Stage::Prepare {
            return Err(StageError::Misuse(
                "the artifact can only be set during prepare".into(),
            ));
        }
        self.artifact = Some(artifact);
        Ok(())
    }

    /// Whether mutating calls are recorded instead of sent — in a dry run, and while `plan()` records
    /// the steps (then no call is sent). Answers say so themselves ([`Answer`]); this is for hooks
    /// that skip local work (such as waiting) in that case.
    pub fn is_dry_run(&self) -> bool {
        self.release.dry_run || self.shared.planning
    }

    /// Whether this deployment's staging ran on every host of the batch before the batches
    /// ([`crate::Deployer::stage`]): then the batch stages skip what staging did.
    pub fn is_staged(&self) -> bool {
        self.release.staged
    }

    /// Whether the minions run the pushguide salt module: the engine sends queued steps as jobs
    /// ([`crate::EngineBuilder::step_jobs`]), so steps may call the module's own functions
    /// (`pushguide.free_space`, `pushguide.prune`). In a dry run too (its read-only steps are sent).
    pub fn runs_module(&self) -> bool {
        self.shared.step_jobs
    }

    /// Whether cancel was requested (hooks doing long local work may check it).
    pub fn is_cancelled(&self) -> bool {
        self.stage != Stage::Rollback && self.shared.is_cancelled()
    }

    /// The version `host` ran when the deployment started.
    pub fn current_version(&self, host: &MinionId) -> Option<&str> {
        self.release.hosts.get(host)?.current.as_deref()
    }

    /// The version a rollback restores on `host`.
    pub fn rollback_target(&self, host: &MinionId) -> Option<&str> {
        self.release.hosts.get(host)?.rollback_to.as_deref()
    }

    /// Live hosts grouped by rollback target, sorted by version; hosts without a target are left out.
    pub fn rollback_groups(&self) -> Vec<(String, Vec<MinionId>)> {
        let mut groups: BTreeMap<&str, Vec<MinionId>> = BTreeMap::new();
        for h in &self.live {
            if let Some(v) = self.rollback_target(h) {
                groups.entry(v).or_default().push(h.clone());
            }
        }
        groups
            .into_iter()
            .map(|(v, hs)| (v.to_owned(), hs))
            .collect()
    }

    /// Sends `call` to every live host in ONE request. Returns the hosts that succeeded with their
    /// [`Answer`]s; the others are recorded as failed and dropped from the batch.
    ///
    /// In a dry run a mutating call is recorded and not sent (every host's answer is
    /// [`Answer::NotSent`]) and a read-only call answers [`Answer::DryRun`]; in a plan nothing is sent.
    /// After a cancel, returns [`StageError::Cancelled`] without sending (except during rollback).
    pub async fn call(&mut self, call: SaltCall) -> Result<CallResults, StageError> {
        self.before_call().await?;
        let targets = self.live.clone();
        self.send(targets, call).await
    }

    /// Like [`StageContext::call`], restricted to `hosts` (those not live are ignored).
    pub async fn call_on(
        &mut self,
        hosts: &[MinionId],
        call: SaltCall,
    ) -> Result<CallResults, StageError> {
        self.before_call().await?;
        let wanted: HashSet<&MinionId> = hosts.iter().collect();
        let targets: Vec<MinionId> = self
            .live
            .iter()
            .filter(|h| wanted.contains(h))
            .cloned()
            .collect();
        self.send(targets, call).await
    }

    /// Sends several calls AT ONCE, each to its own hosts (those not live are ignored): one request
    /// per call, all in flight together, so hosts whose calls differ (per-host paths or settings) take
    /// as long as one request, not one after another. The answers of every call, in the order given;
    /// results are recorded in that order too.
    pub async fn call_each(
        &mut self,
        calls: Vec<(Vec<MinionId>, SaltCall)>,
    ) -> Result<CallResults, StageError> {
        self.before_call().await?;
        self.call_each_now(calls).await
    }

    /// [`StageContext::call_each`] without sending queued steps first.
    pub(crate) async fn call_each_now(
        &mut self,
        calls: Vec<(Vec<MinionId>, SaltCall)>,
    ) -> Result<CallResults, StageError> {
        let live: HashSet<&MinionId> = self.live.iter().collect();
        let calls: Vec<(Vec<MinionId>, SaltCall)> = calls
            .into_iter()
            .map(|(hosts, call)| {
                let targets = hosts.into_iter().filter(|h| live.contains(h)).collect();
                (targets, call)
            })
            .collect();
        let mut begun = Vec::with_capacity(calls.len());
        for (targets, call) in calls {
            let sent = self.begin(&targets, &call)?;
            begun.push((targets, call, sent));
        }
        let shared = self.shared;
        let answers = futures_util::future::join_all(
            begun
                .iter()
                .map(|(targets, call, sent)| transmit(shared, targets, call, *sent)),
        )
        .await;
        let mut out = CallResults::default();
        for ((targets, call, sent), (returns, millis)) in begun.into_iter().zip(answers) {
            if sent.is_some() {
                out.extend(self.finish(targets, call, sent, returns, millis));
            }
        }
        Ok(out)
    }

    /// Marks `host` failed at this stage with `reason` (for checks on returned values).
    pub fn fail(&mut self, host: &MinionId, reason: impl Into<String>) {
        let reason = reason.into();
        self.fail_hosts(std::slice::from_ref(host), None, &|_| reason.clone());
    }

    /// Adds a line to `host`'s log for this stage.
    pub fn log(&mut self, host: &MinionId, text: impl Into<String>) {
        if let Some(&i) = self.journal.index.get(host) {
            self.journal.hosts[i].log.push(LogEntry::Message {
                stage: self.stage,
                text: text.into(),
            });
        }
    }

    /// Adds a line to the log of every live host.
    pub fn log_all(&mut self, text: impl Into<String>) {
        let text = text.into();
        for h in self.live.clone() {
            self.log(&h, text.clone());
        }
    }

    /// Before an immediate call: steps queued before it are sent first (their order is kept); a
    /// batch sent as one job allows no call.
    async fn before_call(&mut self) -> Result<(), StageError> {
        if self.collect {
            return Err(StageError::Misuse(
                "this kind sends its batch as one job: its batch hooks queue steps \
                 (`StageContext::steps`) and make no calls"
                    .into(),
            ));
        }
        if !self.queue.is_empty() {
            self.flush_steps().await?;
        }
        Ok(())
    }

    async fn send(
        &mut self,
        targets: Vec<MinionId>,
        call: SaltCall,
    ) -> Result<CallResults, StageError> {
        let sent = self.begin(&targets, &call)?;
        if sent.is_none() {
            return Ok(CallResults::default());
        }
        let (returns, millis) = transmit(self.shared, &targets, &call, sent).await;
        Ok(self.finish(targets, call, sent, returns, millis))
    }

    /// Before a call: refused after a cancel and (mutating) in prepare; `None` without targets,
    /// else whether it is really sent (not in a plan, not mutating in a dry run), announced by a
    /// `CallStarted` event.
    fn begin(&mut self, targets: &[MinionId], call: &SaltCall) -> Result<Option<bool>, StageError> {
        if self.is_cancelled() {
            return Err(StageError::Cancelled);
        }
        if self.stage == Stage::Prepare && call.is_mutating() {
            return Err(StageError::Misuse(format!(
                "mutating call `{}` during prepare: prepare must be read-only",
                call.fun
            )));
        }
        if targets.is_empty() {
            return Ok(None);
        }
        let sent = !(self.shared.planning || (self.release.dry_run && call.is_mutating()));
        self.shared.emit(EventKind::CallStarted {
            batch: self.batch,
            stage: self.stage,
            fun: call.fun.clone(),
            targets: targets.len(),
            sent,
        });
        Ok(Some(sent))
    }

    /// After a call: the call and each host's outcome in the journal, failed hosts dropped from the
    /// batch, a `CallFinished` event; the answers of the hosts that succeeded.
    fn finish(
        &mut self,
        targets: Vec<MinionId>,
        call: SaltCall,
        sent: Option<bool>,
        mut returns: Returns,
        millis: u64,
    ) -> CallResults {
        let sent = sent.unwrap_or(false);
        let jid = returns.jid.take();
        let call_index = self.journal.calls.len();
        let fun = call.fun.clone();
        self.journal.calls.push(CallRecord {
            batch: self.batch,
            stage: self.stage,
            call,
            targets: targets.len(),
            sent,
            jid: jid.clone(),
            millis,
        });

        let dry = self.is_dry_run();
        let answer = |value| match (sent, dry) {
            (false, _) => Answer::NotSent,
            (true, true) => Answer::DryRun(value),
            (true, false) => Answer::Returned(value),
        };
        let mut answers = Vec::with_capacity(targets.len());
        let mut failures: Vec<(MinionId, String)> = Vec::new();
        for host in targets {
            let outcome = returns.take(&host);
            if let Some(reason) = outcome.reason() {
                failures.push((host.clone(), crate::hook::jobs::module_hint(reason)));
            }
            if let Some(&i) = self.journal.index.get(&host) {
                self.journal.hosts[i].log.push(LogEntry::Call {
                    stage: self.stage,
                    call: call_index,
                    outcome: outcome.clone(),
                });
            }
            if let Outcome::Ok { value } = outcome {
                answers.push((host, answer(value)));
            }
        }
        let failed_count = failures.len();
        if !failures.is_empty() {
            let hosts: Vec<MinionId> = failures.iter().map(|(h, _)| h.clone()).collect();
            let reasons: HashMap<MinionId, String> = failures.into_iter().collect();
            self.fail_hosts(&hosts, Some(&fun), &|h| reasons[h].clone());
        }
        self.shared.emit(EventKind::CallFinished {
            batch: self.batch,
            stage: self.stage,
            fun,
            jid: jid.clone(),
            ok: answers.len(),
            failed: failed_count,
            millis,
        });
        CallResults {
            jids: jid.into_iter().collect(),
            answers,
        }
    }

    /// Records failures of live hosts and drops them from the live set; hosts not live are ignored.
    pub(crate) fn fail_hosts(
        &mut self,
        hosts: &[MinionId],
        fun: Option<&str>,
        reason: &dyn Fn(&MinionId) -> String,
    ) {
        let live: HashSet<&MinionId> = self.live.iter().collect();
        let to_fail: Vec<MinionId> = hosts.iter().filter(|h| live.contains(h)).cloned().collect();
        if to_fail.is_empty() {
            return;
        }
        let dropped: HashSet<&MinionId> = to_fail.iter().collect();
        self.live.retain(|h| !dropped.contains(h));
        for host in to_fail {
            let why = reason(&host);
            if fun.is_none() {
                if let Some(&i) = self.journal.index.get(&host) {
                    self.journal.hosts[i].log.push(LogEntry::Message {
                        stage: self.stage,
                        text: format!("FAILED {why}"),
                    });
                }
            }
            tracing::info!(host = %host, stage = %self.stage, fun = fun.unwrap_or("(hook)"), reason = %why, "host failed");
            self.journal
                .record_failure(&host, self.stage, self.batch, fun, &why);
            self.shared.emit(EventKind::HostFailed {
                host: host.clone(),
                stage: self.stage,
                fun: fun.map(str::to_owned),
                reason: why,
            });
            self.failed.push(host);
        }
    }
}

/// Sends `call` to `targets` when it is `sent`; a placeholder answer for each host otherwise. A
/// transport error fails every target with the reason. Returns the answers and the milliseconds taken.
async fn transmit(
    shared: &RunShared,
    targets: &[MinionId],
    call: &SaltCall,
    sent: Option<bool>,
) -> (Returns, u64) {
    let started = Instant::now();
    let returns = match sent {
        None => Returns::default(),
        Some(false) => Returns::uniform(targets, Outcome::ok(Value::Null)),
        Some(true) => {
            let span = tracing::debug_span!("call", fun = %call.fun, targets = targets.len());
            let result =
                tracing::Instrument::instrument(shared.transport.call(targets, call), span).await;
            match result {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(fun = %call.fun, error = %e, "salt request failed");
                    Returns::uniform(
                        targets,
                        Outcome::failed(None, format!("transport error: {e}")),
                    )
                }
            }
        }
    };
    (returns, started.elapsed().as_millis() as u64)
}
