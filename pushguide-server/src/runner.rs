//! The service's workers: they claim queued publish requests from the store, one template at a
//! time, start them through the [`Launcher`], keep each running deployment's handle for the pages
//! (live events, decisions, stop), and record how each request ended.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use pushguide_core::{Decision, DeploymentHandle, EventKind, Principal};
use pushguide_store::{QueuedPublish, ServerStore};
use tokio::sync::Notify;

use crate::grid::Grid;
use crate::launch::{Launcher, PublishMode, PublishRequest};
use crate::live::{Feed, Panel, Remote};
use crate::webhooks::{Notification, WebhookEvent};

/// A deployment a worker of this service runs.
pub(crate) struct Running {
    /// The template.
    pub(crate) template: String,
    /// The request it runs.
    pub(crate) request: i64,
    handle: Mutex<Option<DeploymentHandle>>,
    /// The last decision taken through the service: who, what, when.
    pub(crate) decided: Mutex<Option<(String, Decision, SystemTime)>>,
    /// Who asked for a stop, and whether the touched hosts are to be rolled back after it.
    pub(crate) stopped: Mutex<Option<(String, bool)>>,
    /// Its live view: the grid folded from its events and the frames its clients share.
    pub(crate) feed: Arc<Feed>,
}

impl Running {
    /// Runs `f` on the handle while the deployment runs; `None` once it has ended.
    pub(crate) fn with_handle<T>(&self, f: impl FnOnce(&DeploymentHandle) -> T) -> Option<T> {
        self.handle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(f)
    }

    /// What its status panel shows besides the grid.
    pub(crate) fn panel(&self) -> Panel {
        Panel {
            here: true,
            decided: self
                .decided
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        }
    }
}

/// The deployments this service runs, by id, and the workers' wake-up call.
#[derive(Default)]
pub(crate) struct Live {
    running: Mutex<HashMap<String, Arc<Running>>>,
    /// Woken when a request is queued or a deployment ends.
    pub(crate) wake: Notify,
    /// Where deployment and stage durations are counted.
    pub(crate) metrics: Arc<crate::Metrics>,
    /// Where deployment events are announced.
    pub(crate) webhooks: Arc<crate::webhooks::Webhooks>,
    /// The live views of deployments other processes run.
    pub(crate) remote: Arc<Remote>,
}

impl Live {
    /// No deployment yet; durations counted into `metrics`.
    pub(crate) fn new(
        metrics: Arc<crate::Metrics>,
        webhooks: Arc<crate::webhooks::Webhooks>,
    ) -> Self {
        Live {
            metrics,
            webhooks,
            ..Live::default()
        }
    }

    /// How many deployments this service runs now.
    pub(crate) fn len(&self) -> usize {
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// The running deployment `id`, if this service runs it.
    pub(crate) fn get(&self, id: &str) -> Option<Arc<Running>> {
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .cloned()
    }

    fn insert(&self, id: &str, r: Arc<Running>) {
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id.to_owned(), r);
    }

    fn remove(&self, id: &str) {
        self.running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
    }
}

/// How often an idle worker looks at the queue without being woken (a request queued by another
/// process sharing the store is found this way, unless the store wakes the workers first: see
/// [`pushguide_store::PublishQueue::wait_for_publishes`]).
const POLL: Duration = Duration::from_secs(2);

/// Runs `workers` workers until `stop` is notified (running deployments are cancelled then, and
/// waited for).
pub(crate) async fn run_workers(
    store: Arc<dyn ServerStore>,
    launcher: Arc<dyn Launcher>,
    live: Arc<Live>,
    workers: usize,
    stop: Arc<Notify>,
    catalog: Arc<dyn crate::Catalog>,
) {
    let mut tasks = tokio::task::JoinSet::new();
    {
        let (store, live, stop) = (store.clone(), live.clone(), stop.clone());
        tasks.spawn(async move { recover_dead(store, live, stop, catalog).await });
    }
    for n in 0..workers.max(1) {
        let (store, launcher, live, stop) =
            (store.clone(), launcher.clone(), live.clone(), stop.clone());
        tasks.spawn(async move { worker(n, store, launcher, live, stop).await });
    }
    while tasks.join_next().await.is_some() {}
}

async fn worker(
    n: usize,
    store: Arc<dyn ServerStore>,
    launcher: Arc<dyn Launcher>,
    live: Arc<Live>,
    stop: Arc<Notify>,
) {
    let stopping = stop.notified();
    tokio::pin!(stopping);
    loop {
        match store.claim_publish().await {
            Ok(Some(q)) => {
                tracing::info!(
                    worker = n,
                    request = q.id,
                    template = q.template,
                    "claimed a publish request"
                );
                let finished = run_one(&store, &*launcher, &live, q);
                tokio::pin!(finished);
                tokio::select! {
                    () = &mut finished => {}
                    () = &mut stopping => {
                        // cancel every deployment of this service, then let this one end
                        for id in live.running.lock().unwrap_or_else(PoisonError::into_inner).keys() {
                            tracing::info!(deployment = id, "the service stops: cancelling");
                        }
                        cancel_all(&live);
                        finished.await;
                        return;
                    }
                }
                live.wake.notify_waiters();
                continue;
            }
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "cannot read the publish queue"),
        }
        tokio::select! {
            () = live.wake.notified() => {}
            () = store.wait_for_publishes(POLL) => {}
            () = &mut stopping => return,
        }
    }
}

/// How often the service looks for deployments and requests of a process that died (its
/// deployments are interrupted once its heartbeat is older than the store's lease TTL).
const RECOVER_EVERY: Duration = Duration::from_secs(5);

/// Marks the deployments and publish requests of dead processes interrupted, and takes the
/// deployments over by their templates' policies ([`crate::takeover`]), every [`RECOVER_EVERY`]
/// until `stop`.
async fn recover_dead(
    store: Arc<dyn ServerStore>,
    live: Arc<Live>,
    stop: Arc<Notify>,
    catalog: Arc<dyn crate::Catalog>,
) {
    let stopping = stop.notified();
    tokio::pin!(stopping);
    loop {
        let found = async {
            Ok::<_, pushguide_store::Error>((
                store.recover().await?,
                store.interrupt_dead_publishes().await?,
            ))
        }
        .await;
        match found {
            Ok((deployments, requests)) => {
                for d in &deployments {
                    tracing::warn!(
                        deployment = d.id,
                        template = d.template,
                        "a deployment of a process that stopped is interrupted"
                    );
                }
                for q in &requests {
                    tracing::warn!(request = q.id, template = q.template, error = ?q.error, "a publish request of a process that stopped is interrupted");
                }
                if !requests.is_empty() {
                    live.wake.notify_waiters();
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot recover interrupted deployments"),
        }
        match crate::takeover::take_over_interrupted(&*store, &*catalog).await {
            Ok(t) if t.iter().any(|t| t.request.is_some()) => live.wake.notify_waiters(),
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "cannot take over interrupted deployments"),
        }
        tokio::select! {
            () = tokio::time::sleep(RECOVER_EVERY) => {}
            () = &mut stopping => return,
        }
    }
}

fn cancel_all(live: &Live) {
    let all: Vec<Arc<Running>> = live
        .running
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .values()
        .cloned()
        .collect();
    for r in all {
        r.with_handle(DeploymentHandle::cancel);
    }
}

/// The value of a store write, or `None` with the error logged (`during`: what was written).
fn logged<T>(written: Result<T, pushguide_store::Error>, during: &str) -> Option<T> {
    match written {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::error!(error = %e, during, "store write failed");
            None
        }
    }
}

/// Runs one claimed request to its end.
async fn run_one(
    store: &Arc<dyn ServerStore>,
    launcher: &dyn Launcher,
    live: &Live,
    q: QueuedPublish,
) {
    let id = q.id;
    let request: PublishRequest = match serde_json::from_str(&q.request) {
        Ok(r) => r,
        Err(e) => {
            let why = format!("the queued request does not read: {e}");
            logged(
                store.finish_publish(id, Some(&why)).await,
                "ending a publish request",
            );
            return;
        }
    };
    let who = Principal {
        user: q.user.clone(),
        groups: q.groups.clone(),
    };
    let handle = match launcher.start(&q.template, &request, &who).await {
        Ok(h) => h,
        Err(e) => {
            let why = pushguide_core::validate::quote(&e.to_string());
            tracing::warn!(request = id, template = q.template, error = %e, "a publish request did not start");
            logged(
                store.finish_publish(id, Some(&why)).await,
                "ending a publish request",
            );
            return;
        }
    };
    let dep = handle.id().to_owned();
    logged(
        store.publish_started(id, &dep).await,
        "recording a publish request's deployment",
    );
    let mut events = handle.events();
    let running = Arc::new(Running {
        template: q.template.clone(),
        request: id,
        handle: Mutex::new(Some(handle)),
        decided: Mutex::new(None),
        stopped: Mutex::new(None),
        feed: Feed::new(Grid::new(&dep)),
    });
    live.insert(&dep, running.clone());
    let mut touched = Vec::new();
    let mut version = String::new();
    let mut stages = HashMap::new();
    let mut user = q.user.clone();
    let announce = |event: WebhookEvent, version: &str, user: &str| {
        let mut n = Notification::new(event);
        n.template = Some(q.template.clone());
        n.deployment = Some(dep.clone());
        n.version = (!version.is_empty()).then(|| version.to_owned());
        n.user = Some(user.to_owned());
        n
    };
    while let Some(e) = events.next().await {
        // rendered here once for every client of the page
        running.feed.push(&e, || running.panel());
        match &e.kind {
            EventKind::DeploymentStarted {
                version: v,
                user: u,
                ..
            } => {
                version = v.clone();
                user = u.clone();
                live.webhooks
                    .notify(announce(WebhookEvent::DeploymentStarted, &version, &user));
            }
            EventKind::DecisionNeeded { failed, .. } => {
                let mut n = announce(WebhookEvent::DeploymentPaused, &version, &user);
                n.hosts = failed.iter().map(|m| m.to_string()).collect();
                live.webhooks.notify(n);
            }
            EventKind::DeploymentFinished { outcome } => {
                let mut n = announce(WebhookEvent::for_outcome(*outcome), &version, &user);
                n.outcome = Some(outcome.as_str().to_owned());
                live.webhooks.notify(n);
            }
            EventKind::BatchStarted { minions, .. } => {
                touched.extend(minions.iter().map(|m| m.to_string()));
            }
            EventKind::StageStarted { batch, stage, .. } => {
                stages.insert((*batch, *stage), std::time::Instant::now());
            }
            EventKind::StageFinished { batch, stage, .. } => {
                if let Some(begun) = stages.remove(&(*batch, *stage)) {
                    live.metrics
                        .stage_finished(stage.as_str(), begun.elapsed().as_secs_f64());
                }
            }
            _ => {}
        }
    }
    let handle = running
        .handle
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    running.feed.end();
    let report = match handle {
        Some(h) => h.wait().await,
        None => Err(pushguide_core::Error::Lost(dep.clone(), "no handle".into())),
    };
    live.remove(&dep);
    let ended = match &report {
        Ok(r) => {
            tracing::info!(deployment = dep, outcome = ?r.outcome, "deployment ended");
            live.metrics
                .deployment_finished(r.outcome.as_str(), r.duration.as_secs_f64());
            None
        }
        Err(e @ pushguide_core::Error::LeaseLost { .. }) => {
            // fenced: another instance took the template over (this one was paused or cut off);
            // the deployment wrote nothing more and the taker decides what becomes of it
            tracing::warn!(deployment = dep, error = %e,
                "deployment ended lease-lost: another instance took its template over");
            Some(format!("lease-lost: {e}"))
        }
        Err(e) => {
            tracing::warn!(deployment = dep, error = %e, "deployment ended without a report");
            Some(e.to_string())
        }
    };
    logged(
        store.finish_publish(id, ended.as_deref()).await,
        "ending a publish request",
    );
    // Stop and roll back: the touched hosts go back to what they ran before this release, unless
    // the template's own policy already rolled them back.
    let stop = running
        .stopped
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let rolled_back = report
        .as_ref()
        .is_ok_and(|r| r.outcome == pushguide_core::DeploymentOutcome::RolledBack);
    if let Some((user, true)) = stop {
        if !rolled_back && !touched.is_empty() && matches!(request.mode, PublishMode::Deploy { .. })
        {
            let undo = PublishRequest {
                mode: PublishMode::Undo { version },
                dry_run: request.dry_run,
                batch: None,
                hosts: Some(touched),
            };
            if let Ok(json) = serde_json::to_string(&undo) {
                let queued = logged(
                    store
                        .enqueue_publish(&q.template, &user, &q.groups, &json)
                        .await,
                    "queueing the rollback of a stopped deployment",
                );
                tracing::info!(deployment = dep, request = ?queued, "stopped: its touched hosts are queued for rollback");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::atomic::{AtomicUsize, Ordering};

    use pushguide_core::async_trait;
    use pushguide_store::SqliteStore;

    use super::*;
    use crate::launch::{LaunchError, VersionInfo};
    use crate::woken::Woken;

    /// Counts the requests it is asked to start, and starts none.
    #[derive(Default)]
    struct Counting(AtomicUsize);

    #[async_trait]
    impl Launcher for Counting {
        async fn start(
            &self,
            _template: &str,
            _request: &PublishRequest,
            _who: &Principal,
        ) -> Result<DeploymentHandle, LaunchError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Err("not in this test".into())
        }

        async fn versions(&self, _template: &str) -> Result<Vec<VersionInfo>, LaunchError> {
            Ok(Vec::new())
        }
    }

    async fn started(launcher: &Counting, n: usize, within: Duration) -> bool {
        let until = std::time::Instant::now() + within;
        while std::time::Instant::now() < until {
            if launcher.0.load(Ordering::SeqCst) >= n {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    /// A catalog without templates (nothing to take over).
    struct NoTemplates;

    impl crate::Catalog for NoTemplates {
        fn scan(&self) -> Result<Vec<crate::CatalogEntry>, crate::CatalogError> {
            Ok(Vec::new())
        }
    }

    /// A request queued by another instance (straight into the store, no local wake) is claimed
    /// when the store wakes the workers, and not by a poll of their own: the workers wait on
    /// `wait_for_publishes`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn idle_workers_wake_when_the_store_says_a_request_waits() {
        let store = Arc::new(Woken::new(SqliteStore::open_in_memory().unwrap()));
        let launcher = Arc::new(Counting::default());
        let live = Arc::new(Live::default());
        let stop = Arc::new(Notify::new());
        let task = tokio::spawn(run_workers(
            store.clone(),
            launcher.clone(),
            live,
            1,
            stop.clone(),
            Arc::new(NoTemplates),
        ));
        // the worker found the queue empty and waits
        tokio::time::sleep(Duration::from_millis(300)).await;
        let json = serde_json::to_string(&PublishRequest::deploy("2.0")).unwrap();
        store
            .inner
            .enqueue_publish("shop", "alice", &[], &json)
            .unwrap();
        assert!(
            !started(&launcher, 1, POLL + Duration::from_secs(1)).await,
            "claimed without a wake-up: the worker polled on its own"
        );
        store.publishes.notify_one();
        assert!(
            started(&launcher, 1, Duration::from_secs(5)).await,
            "the store's wake-up did not reach the worker"
        );
        stop.notify_waiters();
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .unwrap()
            .unwrap();
    }
}
