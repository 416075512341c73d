//! The rolling deploy engine: plan, start (non-blocking), batches, failure budget, decisions, rollback.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use tracing::Instrument;

use crate::hook::context::StageContext;
use crate::hook::deployer::{run_hook, Deployer};
use crate::hook::journal::{Journal, RunShared};
use crate::model::event::EventBus;
use crate::model::report::{Plan, Report};
use crate::ports::fleet::{FleetState, MemoryFleetState};
use crate::ports::lease::{LeaseManager, MemoryLeases};
use crate::ports::transport::Transport;
use crate::vocab::action::Action;
use crate::vocab::call::MinionId;
use crate::vocab::error::Error;
use crate::vocab::stage::Stage;
use crate::vocab::validate;

mod batches;
mod handle;
mod prepare;
mod request;
mod rollback;
mod run;

use handle::Control;
pub use handle::DeploymentHandle;
pub use request::{Mode, Request, RollbackTo};
use run::{write_history, JournalWriter, Run, Written};

/// Builds an [`Engine`].
#[derive(Debug)]
pub struct EngineBuilder {
    transport: Arc<dyn Transport>,
    leases: Arc<dyn LeaseManager>,
    fleet: Arc<dyn FleetState>,
    history: Option<Arc<dyn crate::ports::history::HistoryStore>>,
    status: Option<Arc<dyn crate::ports::status::MinionStatusStore>>,
    step_jobs: bool,
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

    /// Sends the steps hooks queue ([`StageContext::steps`]) as salt jobs of steps
    /// ([`crate::STEPS_FUN`], run by the pushguide salt module on each minion: one job for a host's
    /// steps) in real runs, instead of one request per step. Needs a transport whose minions run the
    /// module (the salt-api client after `pushguide install-module`, or [`crate::sim::SimFleet`]).
    /// Off by default; dry runs and plans always go call by call.
    pub fn step_jobs(mut self, on: bool) -> Self {
        self.step_jobs = on;
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
                step_jobs: self.step_jobs,
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
    step_jobs: bool,
}

/// Runs deployments. Cheap to clone; clones share leases and fleet state.
///
/// See [`crate::Deployer`] for a complete example.
#[derive(Clone, Debug)]
pub struct Engine {
    inner: Arc<EngineInner>,
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
            step_jobs: false,
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

    fn check(&self, req: &Request, action: Action) -> Result<Arc<dyn Deployer>, Error> {
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
        if !req.template.acl.allows(&req.principal, action) {
            return Err(Error::Forbidden {
                user: req.principal.user.clone(),
                action,
                template: req.template.name.clone(),
            });
        }
        match &req.deployer {
            Some(deployer) => Ok(deployer.clone()),
            None => Ok(Arc::from(req.template.project.build()?)),
        }
    }

    /// Computes what a deployment would do: resolves targets, runs pre-flight and `prepare` (read-only),
    /// splits batches, records the calls of every stage without sending them (staging first, when the
    /// kind stages ahead and the template lets it), and looks up each host's rollback target. Needs view permission; takes no lease.
    pub async fn plan(&self, req: &Request) -> Result<Plan, Error> {
        let deployer = self.check(req, Action::View)?;
        let id = self.next_id(&req.template.name);
        let (_tx, cancel) = watch::channel(false);
        let shared = RunShared {
            transport: self.inner.transport.clone(),
            bus: None,
            planning: false,
            step_jobs: self.inner.step_jobs,
            cancel: cancel.clone(),
        };
        let mut prepared = self.prepare(&shared, &*deployer, req, id).await?;
        let planning = RunShared {
            transport: self.inner.transport.clone(),
            bus: None,
            planning: true,
            step_jobs: self.inner.step_jobs,
            cancel,
        };
        let sample: Vec<MinionId> = prepared.batches.first().cloned().unwrap_or_default();
        let everyone: Vec<MinionId> = prepared.batches.concat();
        let staging = stages_ahead(req, &*deployer);
        // the batch stages are shown as they run after staging
        prepared.release.staged = staging;
        let mut steps = Vec::new();
        for stage in staging
            .then_some(Stage::Staging)
            .into_iter()
            .chain(Stage::BATCH)
            .chain([Stage::Rollback])
        {
            // staging runs once for every host; the other stages are shown for the first batch
            let (hosts, batch) = match stage {
                Stage::Staging => (&everyone, None),
                _ => (&sample, Some(0)),
            };
            let mut scratch = Journal::new(hosts);
            let mut cx = StageContext::new(
                &planning,
                &prepared.release,
                &mut scratch,
                stage,
                batch,
                hosts.clone(),
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
        let deployer = self.check(&req, Action::Deploy)?;
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
                step_jobs: self.inner.step_jobs,
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
}

/// `1 host`, `2 hosts`.
pub(crate) fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// Whether a run of `req` stages ahead: a release (not a rollback), of a kind that stages, with the
/// template's `rollout.stage_ahead` on.
fn stages_ahead(req: &Request, deployer: &dyn Deployer) -> bool {
    matches!(req.mode, Mode::Deploy) && req.template.rollout.stage_ahead && deployer.stages_ahead()
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
