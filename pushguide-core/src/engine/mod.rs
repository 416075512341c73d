//! The rolling deploy engine: plan, start (non-blocking), batches, failure budget, decisions, rollback.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{oneshot, watch};
use tracing::Instrument;

use crate::hook::context::{HostVersions, Release, StageContext};
use crate::hook::deployer::{run_hook, Deployer};
use crate::hook::journal::{Journal, RunShared};
use crate::hook::template::{FailedHosts, OnFailure, Principal, RollbackPolicy, Template};
use crate::model::event::{EventBus, EventKind, EventStream};
use crate::model::report::{HostReport, HostStatus, LogEntry, Plan, Report};
use crate::ports::fleet::{FleetState, HostChange, MemoryFleetState};
use crate::ports::lease::{Lease, LeaseManager, MemoryLeases};
use crate::ports::transport::Transport;
use crate::vocab::call::{MinionId, SaltCall};
use crate::vocab::error::Error;
use crate::vocab::error::StageError;
use crate::vocab::outcome::{Decision, DeploymentOutcome};
use crate::vocab::stage::Stage;
use crate::vocab::validate;

/// A request to release `version` of `template`.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Request {
    /// The template.
    pub template: Arc<Template>,
    /// The version (validated before anything runs).
    pub version: String,
    /// Who asks.
    pub principal: Principal,
    /// Deploy only to these hosts of the template.
    pub hosts: Option<Vec<String>>,
    /// Record mutating calls instead of sending them.
    pub dry_run: bool,
    /// The artifact, when resolved by the caller (e.g. from CI); a project type may also resolve it in
    /// prepare.
    pub artifact: Option<crate::hook::context::Artifact>,
    /// Deploy `version`, or roll back.
    pub mode: Mode,
    /// For a rollback: the version of a release whose effects it undoes (see [`Request::undo`]).
    pub undo: Option<String>,
}

/// What a [`Request`] asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Release `version` in rolling batches.
    Deploy,
    /// Roll every host back through the `rollback` hook, in batches: to `to` when given, else each
    /// host to the version it ran before its current one (from recorded history).
    Rollback {
        /// The version for every host, or `None` for each host's previous version.
        to: Option<String>,
    },
}

impl Request {
    /// A request for every host of the template.
    pub fn new(template: Arc<Template>, version: impl Into<String>, principal: Principal) -> Self {
        Request {
            template,
            version: version.into(),
            principal,
            hosts: None,
            dry_run: false,
            artifact: None,
            mode: Mode::Deploy,
            undo: None,
        }
    }

    /// A rollback of every host of the template to `to`, or to each host's previous version.
    pub fn rollback(template: Arc<Template>, to: Option<String>, principal: Principal) -> Self {
        Request {
            version: to.clone().unwrap_or_else(|| "previous".to_owned()),
            mode: Mode::Rollback { to },
            ..Request::new(template, "", principal)
        }
    }

    /// Makes a rollback undo the effects of a release of `version` (say, an interrupted deployment):
    /// each host goes back to the version it ran before that release — its recorded current version
    /// when the release never recorded itself there, else its previous good version. A host with
    /// nothing recorded is skipped, which is not a failure. Combine with [`Request::hosts`] to touch
    /// only the hosts the release reached.
    pub fn undo(mut self, version: impl Into<String>) -> Self {
        self.undo = Some(version.into());
        self
    }

    /// Sets the artifact (builder style).
    pub fn artifact(mut self, artifact: crate::hook::context::Artifact) -> Self {
        self.artifact = Some(artifact);
        self
    }

    /// Sets the dry-run flag.
    pub fn dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    /// Restricts the deployment to some of the template's hosts.
    pub fn hosts<I: IntoIterator<Item = S>, S: Into<String>>(mut self, hosts: I) -> Self {
        self.hosts = Some(hosts.into_iter().map(Into::into).collect());
        self
    }
}

/// Builds an [`Engine`].
#[derive(Debug)]
pub struct EngineBuilder {
    transport: Arc<dyn Transport>,
    leases: Arc<dyn LeaseManager>,
    fleet: Arc<dyn FleetState>,
    history: Option<Arc<dyn crate::ports::history::HistoryStore>>,
    status: Option<Arc<dyn crate::ports::status::MinionStatusStore>>,
}

impl fmt::Debug for dyn Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Transport")
    }
}

impl EngineBuilder {
    /// Uses `leases` instead of in-memory leases.
    pub fn leases(mut self, leases: Arc<dyn LeaseManager>) -> Self {
        self.leases = leases;
        self
    }

    /// Uses `fleet` instead of in-memory fleet state.
    pub fn fleet_state(mut self, fleet: Arc<dyn FleetState>) -> Self {
        self.fleet = fleet;
        self
    }

    /// Records every deployment in `history` (events as they happen, then the report).
    pub fn history(mut self, history: Arc<dyn crate::ports::history::HistoryStore>) -> Self {
        self.history = Some(history);
        self
    }

    /// Records every pre-flight check in `status` (the connectivity monitor's store).
    pub fn minion_status(
        mut self,
        status: Arc<dyn crate::ports::status::MinionStatusStore>,
    ) -> Self {
        self.status = Some(status);
        self
    }

    /// Builds the engine.
    pub fn build(self) -> Engine {
        Engine {
            inner: Arc::new(EngineInner {
                transport: self.transport,
                leases: self.leases,
                fleet: self.fleet,
                history: self.history,
                status: self.status,
            }),
        }
    }
}

#[derive(Debug)]
struct EngineInner {
    transport: Arc<dyn Transport>,
    leases: Arc<dyn LeaseManager>,
    fleet: Arc<dyn FleetState>,
    history: Option<Arc<dyn crate::ports::history::HistoryStore>>,
    status: Option<Arc<dyn crate::ports::status::MinionStatusStore>>,
}

/// Runs deployments. Cheap to clone; clones share leases and fleet state.
///
/// See [`crate::Deployer`] for a complete example.
#[derive(Clone, Debug)]
pub struct Engine {
    inner: Arc<EngineInner>,
}

/// The output of preparation.
struct Prepared {
    release: Release,
    batches: Vec<Vec<MinionId>>,
    excluded: Vec<(MinionId, String)>,
    /// Hosts pre-flight left out by `on_down = "exclude"`.
    left_out: Vec<MinionId>,
    max_failed: usize,
    journal: Journal,
}

impl Engine {
    /// An engine over `transport` with in-memory leases and fleet state.
    pub fn builder(transport: Arc<dyn Transport>) -> EngineBuilder {
        EngineBuilder {
            transport,
            leases: Arc::new(MemoryLeases::default()),
            fleet: Arc::new(MemoryFleetState::default()),
            history: None,
            status: None,
        }
    }

    /// The fleet state the engine records into.
    pub fn fleet_state(&self) -> &Arc<dyn FleetState> {
        &self.inner.fleet
    }

    /// A deployment id unique across processes and machines: the template, the time in
    /// milliseconds, and 64 bits drawn from the operating system's randomness (through the standard
    /// library's randomly keyed hasher) mixed with the process id and a counter.
    fn next_id(&self, template: &str) -> Arc<str> {
        Arc::from(format!("{template}-{}", unique_suffix()))
    }

    fn check(&self, req: &Request, action: &'static str) -> Result<Box<dyn Deployer>, Error> {
        validate::version("version", &req.version)?;
        req.template.validate()?;
        if let Some(hosts) = &req.hosts {
            if hosts.is_empty() {
                return Err(Error::invalid(
                    "hosts",
                    "[]",
                    "an empty host subset deploys nowhere",
                ));
            }
            for (i, h) in hosts.iter().enumerate() {
                validate::minion_id(&format!("hosts[{i}]"), h)?;
            }
        }
        let allowed = match action {
            "deploy" => req.template.acl.may_deploy(&req.principal),
            _ => req.template.acl.may_view(&req.principal),
        };
        if !allowed {
            return Err(Error::Forbidden {
                user: req.principal.user.clone(),
                action,
                template: req.template.name.clone(),
            });
        }
        req.template.project.build()
    }

    /// Computes what a deployment would do: resolves targets, runs pre-flight and `prepare` (read-only),
    /// splits batches, records the calls of every stage without sending them, and looks up each host's
    /// rollback target. Needs view permission; takes no lease.
    pub async fn plan(&self, req: &Request) -> Result<Plan, Error> {
        let deployer = self.check(req, "view")?;
        let id = self.next_id(&req.template.name);
        let (_tx, cancel) = watch::channel(false);
        let shared = RunShared {
            transport: self.inner.transport.clone(),
            bus: None,
            planning: false,
            cancel: cancel.clone(),
        };
        let prepared = self.prepare(&shared, &*deployer, req, id).await?;
        let planning = RunShared {
            transport: self.inner.transport.clone(),
            bus: None,
            planning: true,
            cancel,
        };
        let sample: Vec<MinionId> = prepared.batches.first().cloned().unwrap_or_default();
        let mut steps = Vec::new();
        for stage in Stage::BATCH.into_iter().chain([Stage::Rollback]) {
            let mut scratch = Journal::new(&sample);
            let mut cx = StageContext::new(
                &planning,
                &prepared.release,
                &mut scratch,
                stage,
                Some(0),
                sample.clone(),
            );
            run_hook(&*deployer, stage, &mut cx)
                .await
                .map_err(|e| Error::Prepare {
                    template: req.template.name.clone(),
                    source: Box::new(e),
                })?;
            drop(cx);
            steps.push((stage, scratch.calls.into_iter().map(|c| c.call).collect()));
        }
        let mut rollback_targets: Vec<_> = prepared
            .release
            .hosts
            .iter()
            .map(|(h, v)| (h.clone(), v.current.clone(), v.rollback_to.clone()))
            .collect();
        rollback_targets.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Plan {
            template: req.template.name.clone(),
            version: req.version.clone(),
            dry_run: req.dry_run,
            batches: prepared.batches,
            excluded: prepared.excluded,
            steps,
            rollback_targets,
            max_failed: prepared.max_failed,
        })
    }

    /// Starts a deployment and returns at once with its handle. Validation, the permission check and the
    /// template lease happen before this returns, so a forbidden user or a busy template is an `Err` here
    /// and no call is sent. Everything else (preparation, batches, rollback) runs in a spawned task whose
    /// progress the handle's [`DeploymentHandle::events`] shows. Dry runs take no lease.
    ///
    /// Must be called within a tokio runtime.
    pub async fn start(&self, req: Request) -> Result<DeploymentHandle, Error> {
        let deployer = self.check(&req, "deploy")?;
        let id = self.next_id(&req.template.name);
        let lease = if req.dry_run {
            None
        } else {
            Some(self.inner.leases.acquire(&req.template.name, &id).await?)
        };
        let bus = Arc::new(EventBus::new(id.clone()));
        let journal = self.inner.history.clone().map(|store| {
            let (tx, rx) = watch::channel(Written::Events(0));
            let task = tokio::spawn(write_history(store, bus.clone(), tx));
            JournalWriter { progress: rx, task }
        });
        let (cancel_tx, cancel_rx) = watch::channel(false);
        let control = Arc::new(Control {
            bus: bus.clone(),
            cancel: cancel_tx,
            pending: Mutex::new(None),
        });
        let run = Arc::new(Run {
            engine: self.clone(),
            shared: RunShared {
                transport: self.inner.transport.clone(),
                bus: Some(bus),
                planning: false,
                cancel: cancel_rx,
            },
            control: control.clone(),
            deployer,
            req,
            id: id.clone(),
            lease,
            journal_progress: journal.as_ref().map(|j| j.progress.clone()),
            under_way: Mutex::new(Vec::new()),
        });
        let span = tracing::info_span!("deployment", id = %id, template = %run.req.template.name,
            version = %run.req.version);
        let task = tokio::spawn(
            async move {
                let started = SystemTime::now();
                // The run itself is a task of its own: a panic anywhere in it (a hook, a transport,
                // the engine) ends the deployment as failed with the panic as its reason, and the
                // journal, the fleet state and the lease are still looked after below.
                let inner = run.clone();
                let report = match tokio::spawn(
                    async move { inner.execute().await }.instrument(tracing::Span::current()),
                )
                .await
                {
                    Ok(report) => report,
                    Err(e) => run.crashed(e, started).await,
                };
                run.finish(report, journal).await
            }
            .instrument(span),
        );
        Ok(DeploymentHandle { id, control, task })
    }

    /// [`Engine::start`] and [`DeploymentHandle::wait`].
    pub async fn deploy(&self, req: Request) -> Result<Report, Error> {
        self.start(req).await?.wait().await
    }

    async fn prepare(
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

/// Shared between a running deployment and its handle.
#[derive(Debug)]
struct Control {
    bus: Arc<EventBus>,
    cancel: watch::Sender<bool>,
    pending: Mutex<Option<oneshot::Sender<Decision>>>,
}

/// A running deployment.
#[derive(Debug)]
pub struct DeploymentHandle {
    id: Arc<str>,
    control: Arc<Control>,
    task: tokio::task::JoinHandle<Report>,
}

impl DeploymentHandle {
    /// The deployment's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Every event so far, then live events until the deployment ends. Each call gives an independent
    /// stream; no event is lost however late it is called.
    pub fn events(&self) -> EventStream {
        self.control.bus.subscribe()
    }

    /// Asks the deployment to stop: the running salt call finishes, no further call or batch starts,
    /// then the template's rollback policy applies to every touched host.
    pub fn cancel(&self) {
        if !*self.control.cancel.borrow() {
            self.control.bus.emit(EventKind::CancelRequested);
            self.control.cancel.send_replace(true);
        }
    }

    /// Answers a [`EventKind::DecisionNeeded`] pause.
    pub fn decide(&self, decision: Decision) -> Result<(), Error> {
        let tx = self
            .control
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .ok_or_else(|| Error::NoDecisionPending(self.id.to_string()))?;
        tx.send(decision)
            .map_err(|_| Error::Finished(self.id.to_string()))
    }

    /// Whether the deployment has ended.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Waits for the end and returns the report.
    pub async fn wait(self) -> Result<Report, Error> {
        self.task
            .await
            .map_err(|e| Error::Lost(self.id.to_string(), e.to_string()))
    }
}

/// Why the batches stopped before the end.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Stop {
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

/// What a rollback (or a restore of failed hosts) did.
#[derive(Debug, Default)]
struct Restored {
    /// Hosts back on their target.
    ok: usize,
    /// Why it stopped early (fleet state refused a write).
    stopped: Option<Error>,
}

/// What a rollback of a deployment's hosts did.
#[derive(Debug, Default)]
struct Rolled {
    ok: usize,
    failed: usize,
    /// Hosts without a rollback target; a failure when restoring a failed release, not when a user
    /// asked to roll back.
    without_target: usize,
    without_target_fails: bool,
}

impl Rolled {
    fn complete(&self) -> bool {
        self.failed == 0 && (self.without_target == 0 || !self.without_target_fails)
    }

    fn summary(&self) -> String {
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

/// `1 host`, `2 hosts`.
pub(crate) fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

struct Run {
    engine: Engine,
    shared: RunShared,
    control: Arc<Control>,
    deployer: Box<dyn Deployer>,
    req: Request,
    id: Arc<str>,
    /// The template's lease (none for dry runs).
    lease: Option<Lease>,
    /// How far the journal writer got (none without a history store).
    journal_progress: Option<watch::Receiver<Written>>,
    /// Hosts being changed right now whose result is not recorded yet (a batch, a restore, a rollback
    /// batch): what a panic leaves in an unknown state.
    under_way: Mutex<Vec<MinionId>>,
}

/// The journal writer's progress: events appended so far, or why it stopped.
#[derive(Clone, Debug)]
enum Written {
    Events(usize),
    Failed(String),
}

/// The task appending a deployment's events to the history store.
struct JournalWriter {
    progress: watch::Receiver<Written>,
    task: tokio::task::JoinHandle<Result<(), String>>,
}

impl Run {
    fn empty_report(&self, started: SystemTime) -> Report {
        let t = &self.req.template;
        Report {
            id: self.id.to_string(),
            template: t.name.clone(),
            version: self.req.version.clone(),
            user: self.req.principal.user.clone(),
            dry_run: self.req.dry_run,
            outcome: DeploymentOutcome::Failed,
            reason: None,
            started,
            duration: Default::default(),
            batches: Vec::new(),
            hosts: Vec::new(),
            calls: Vec::new(),
            events: Vec::new(),
            history_error: None,
        }
    }

    async fn execute(&self) -> Report {
        let started = SystemTime::now();
        let clock = Instant::now();
        let t = self.req.template.clone();
        self.shared.emit(EventKind::DeploymentStarted {
            template: t.name.clone(),
            version: self.req.version.clone(),
            user: self.req.principal.user.clone(),
            dry_run: self.req.dry_run,
            rollback: matches!(self.req.mode, Mode::Rollback { .. }),
        });
        let mut report = self.empty_report(started);
        match self
            .engine
            .prepare(&self.shared, &*self.deployer, &self.req, self.id.clone())
            .await
        {
            Err(e) => {
                tracing::warn!(error = %e, "preparation failed");
                report.reason = Some(e.to_string());
            }
            Ok(prepared) => {
                self.shared.emit(EventKind::Prepared {
                    hosts: prepared.batches.iter().map(Vec::len).sum(),
                    batches: prepared.batches.len(),
                    excluded: prepared.excluded.iter().map(|(h, _)| h.clone()).collect(),
                    plan: prepared.batches.clone(),
                    left_out: prepared.left_out.clone(),
                });
                report.batches = prepared.batches.clone();
                let (outcome, reason, journal) = self.run_batches(prepared).await;
                report.outcome = outcome;
                report.reason = reason;
                report.calls = journal.calls;
                report.hosts = journal
                    .hosts
                    .into_iter()
                    .map(|h| HostReport {
                        host: h.host,
                        batch: h.batch,
                        status: h.status,
                        failure: h.failure,
                        rollback_failure: h.rollback_failure,
                        rolled_back_to: h.rolled_back_to,
                        log: h.log,
                    })
                    .collect();
            }
        }
        report.duration = clock.elapsed();
        report
    }

    /// The report of a run that panicked: failed, with the panic as its reason; hosts of the batch
    /// under way are recorded as in an unknown state (the fleet state says so too), hosts of finished
    /// batches as their events say.
    async fn crashed(&self, e: tokio::task::JoinError, started: SystemTime) -> Report {
        let why = if e.is_panic() {
            let payload = e.into_panic();
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".to_owned());
            format!("internal error: the deployment task panicked: {msg}")
        } else {
            format!("internal error: the deployment task ended: {e}")
        };
        tracing::error!(reason = %why, "deployment ended abnormally");
        let mut report = self.empty_report(started);
        report.duration = started.elapsed().unwrap_or_default();
        let events = self.control.bus.snapshot();
        let mut hosts: Vec<HostReport> = Vec::new();
        let under_way = std::mem::take(
            &mut *self
                .under_way
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for ev in &events {
            match &ev.kind {
                EventKind::BatchStarted { batch, minions, .. } => {
                    for m in minions {
                        hosts.push(HostReport {
                            host: m.clone(),
                            batch: Some(*batch),
                            status: HostStatus::Interrupted,
                            failure: None,
                            rollback_failure: None,
                            rolled_back_to: None,
                            log: Vec::new(),
                        });
                    }
                }
                EventKind::HostSucceeded { host } => {
                    if let Some(h) = hosts.iter_mut().find(|h| h.host == *host) {
                        h.status = HostStatus::Succeeded;
                    }
                }
                EventKind::HostFailed { host, .. } => {
                    if let Some(h) = hosts.iter_mut().find(|h| h.host == *host) {
                        h.status = HostStatus::Failed;
                    }
                }
                _ => {}
            }
        }
        let mut reason = why;
        if !under_way.is_empty() && !self.req.dry_run {
            reason.push_str(&format!(
                "; {} being changed left in an unknown state",
                count(under_way.len(), "host")
            ));
            if let Err(e) = self
                .record(&under_way, &HostChange::Failed { runs: None })
                .await
            {
                reason.push_str(&format!(" (not recorded: {e})"));
            }
        }
        report.reason = Some(reason);
        report.hosts = hosts;
        report
    }

    /// Ends a deployment: announces the outcome, waits for the journal to take every event, records
    /// the report, and gives the lease back.
    async fn finish(&self, mut report: Report, journal: Option<JournalWriter>) -> Report {
        self.shared.emit(EventKind::DeploymentFinished {
            outcome: report.outcome,
        });
        tracing::info!(outcome = ?report.outcome, "deployment finished");
        // the journal takes the last events before anyone is told the deployment ended
        if let Err(e) = self.journal_barrier().await {
            tracing::error!(error = %e, "the journal did not take the deployment's last events");
        }
        report.events = self.control.bus.close();
        if let Some(journal) = journal {
            let written = journal
                .task
                .await
                .unwrap_or_else(|e| Err(format!("history writer ended: {e}")));
            let finished = match (&written, &self.engine.inner.history) {
                (Ok(()), Some(store)) => store.finish(&report).await.map_err(|e| e.to_string()),
                _ => Ok(()),
            };
            if let Err(e) = written.and(finished) {
                tracing::error!(error = %e, "deployment not fully recorded in history");
                report.history_error = Some(e);
            }
        }
        if let Some(lease) = &self.lease {
            if let Err(e) = self.engine.inner.leases.release(lease).await {
                tracing::warn!(error = %e, "cannot give the lease back; it expires on its own");
            }
        }
        report
    }

    fn set_under_way(&self, hosts: &[MinionId]) {
        let mut u = self
            .under_way
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        u.clear();
        u.extend_from_slice(hosts);
    }

    /// Records `change` for `hosts` in the fleet state, durably and fenced by the lease (nothing in dry
    /// runs).
    async fn record(&self, hosts: &[MinionId], change: &HostChange) -> Result<(), Error> {
        if self.req.dry_run || hosts.is_empty() {
            return Ok(());
        }
        let Some(lease) = &self.lease else {
            return Ok(());
        };
        self.engine.inner.fleet.record(lease, hosts, change).await
    }

    /// Waits until the journal holds every event emitted so far (a batch's results are durable before
    /// the next batch touches a host).
    async fn journal_barrier(&self) -> Result<(), String> {
        let Some(progress) = &self.journal_progress else {
            return Ok(());
        };
        let emitted = self.control.bus.len();
        let mut progress = progress.clone();
        let seen = progress
            .wait_for(|w| {
                matches!(w, Written::Failed(_)) || matches!(w, Written::Events(n) if *n >= emitted)
            })
            .await
            .map(|w| w.clone());
        match seen {
            Ok(Written::Events(_)) => Ok(()),
            Ok(Written::Failed(e)) => Err(e),
            Err(_) => Err("the history writer stopped".to_owned()),
        }
    }

    async fn run_stage(
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

    async fn wait_decision(
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

    async fn run_batches(
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
    fn completed(
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

    /// Records what the failed `hosts` of a batch run now: the old version when they failed before
    /// the deploy stage (the service may be stopped), the new one when they failed after it (the
    /// health check, say), unknown when they failed in the deploy stage itself.
    async fn record_failed(
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
    async fn record_cut(
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
                Stage::Prepare | Stage::PreDeploy => {
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
    async fn restore(
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
            .run_stage(&span, release, journal, batch, Stage::Rollback, with_target)
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
    async fn rolled_back(
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
    fn not_rolled_back(
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

    /// Asks the lease manager whether this deployment still holds its template's lease (dry runs
    /// hold none).
    async fn check_lease(&self) -> Result<(), Error> {
        let Some(lease) = &self.lease else {
            return Ok(());
        };
        let r = self.engine.inner.leases.check(lease).await;
        if let Err(e) = &r {
            tracing::error!(error = %e, "lease lost: this deployment stops touching hosts");
        }
        r
    }

    /// Rolls back every touched host not already restored through the deployer's `rollback` hook, in
    /// batches of the same size, recording each batch's result before the next.
    async fn rollback(
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
        if requested {
            // nothing recorded to go back to: not a failure of the rollback a user asked for
            journal.set_status(&without, HostStatus::NoRollbackTarget);
            for h in &without {
                if let Some(r) = journal.get_mut(h) {
                    r.log.push(LogEntry::Message {
                        stage: Stage::Rollback,
                        text: "nothing to roll back: no earlier version recorded; left as it is"
                            .to_owned(),
                    });
                }
            }
        } else {
            self.not_rolled_back(
                journal,
                &without,
                HostStatus::NoRollbackTarget,
                "no previous version recorded for this host",
            );
        }
        let mut done = 0;
        for (i, chunk) in with_target.chunks(size).enumerate() {
            let stopped = match self.check_lease().await {
                Err(e) => Some(e),
                Ok(()) => {
                    let span = tracing::info_span!(
                        "batch",
                        batch = i,
                        hosts = chunk.len(),
                        rollback = true
                    );
                    self.set_under_way(chunk);
                    let (ok, failed, _) = self
                        .run_stage(&span, release, journal, i, Stage::Rollback, chunk.to_vec())
                        .await;
                    journal.set_status(&ok, HostStatus::RolledBack);
                    journal.set_status(&failed, HostStatus::RollbackFailed);
                    rolled.ok += ok.len();
                    rolled.failed += failed.len();
                    done += chunk.len();
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
}

/// Appends a deployment's events to the history store in batches as they arrive, until the stream
/// ends, telling `progress` how many are durable. Stops at the first error (later events are not
/// appended after a gap).
async fn write_history(
    store: Arc<dyn crate::ports::history::HistoryStore>,
    bus: Arc<EventBus>,
    progress: watch::Sender<Written>,
) -> Result<(), String> {
    let mut events = bus.subscribe_journal();
    let mut written = 0usize;
    while let Some(first) = events.next().await {
        let mut batch = vec![first];
        while let Some(e) = events.try_next() {
            batch.push(e);
            if batch.len() >= 1024 {
                break;
            }
        }
        if let Err(e) = store.append(&batch).await {
            let e = e.to_string();
            progress.send_replace(Written::Failed(e.clone()));
            bus.ungate();
            return Err(e);
        }
        written += batch.len();
        bus.release(written);
        progress.send_replace(Written::Events(written));
    }
    Ok(())
}

/// `{ms}-{16 hex digits}`: sortable by time, and unique across processes started in the same
/// millisecond (the random part comes from a hasher keyed by the OS's randomness, per process).
fn unique_suffix() -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u128(now.as_nanos());
    format!("{}-{:016x}", now.as_millis(), h.finish())
}
