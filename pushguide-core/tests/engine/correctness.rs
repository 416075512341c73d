//! Which version runs where, after failed releases, exclusions, restores, panics and batch ends.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use pushguide_core::sim::SimFleet;
use pushguide_core::{
    async_trait, Decision, DeploymentOutcome, Engine, Error, Event, EventKind, FleetState,
    HistoryStore, HostStatus, MemoryFleetState, MinionId, Outcome, Report, Request, Returns,
    SaltCall, TargetExpr, Transport, TransportError,
};

use crate::support::*;

fn id(h: &str) -> MinionId {
    MinionId::new(h).unwrap()
}

async fn version_of(engine: &Engine, host: &str) -> pushguide_core::HostHistory {
    engine
        .fleet_state()
        .versions("shop", &[id(host)])
        .await
        .unwrap()
        .remove(&id(host))
        .unwrap_or_default()
}

fn health_fails(fleet: &SimFleet, host: &str) {
    fleet.add_rule(host, "http.query", Outcome::failed(None, "HTTP 500"), None);
}

/// v1 and v2 succeed; v3 fails and rolls back to v2; the next rollback takes every host to v1, and
/// the one after finds nothing older (never v3).
#[tokio::test]
async fn a_failed_release_never_becomes_a_rollback_target() {
    let t = template(
        4,
        "[rollout]\nbatch = 2\n[failure]\nmax_failed = 0\n[rollback]\npolicy = \"previous\"",
    );
    let fleet = fleet(4);
    let engine = engine(fleet.clone());
    for v in ["1.0", "2.0"] {
        let r = engine.deploy(req(&t, v)).await.unwrap();
        assert_eq!(r.outcome, DeploymentOutcome::Succeeded, "{r}");
    }
    // batch 0 (web-01, web-02) succeeds with 3.0, batch 1 fails on web-04
    health_fails(&fleet, "web-04");
    let r = engine.deploy(req(&t, "3.0")).await.unwrap();
    assert_eq!(r.outcome, DeploymentOutcome::RolledBack, "{r}");
    for h in ["web-01", "web-02", "web-03", "web-04"] {
        let v = version_of(&engine, h).await;
        assert_eq!(v.current.as_deref(), Some("2.0"), "{h}");
        assert_eq!(v.previous.as_deref(), Some("1.0"), "{h}: never 3.0");
    }
    fleet.clear_rules();
    let r = engine
        .deploy(Request::rollback(t.clone(), None, alice()))
        .await
        .unwrap();
    assert_eq!(r.outcome, DeploymentOutcome::RolledBack, "{r}");
    for h in r.hosts.iter() {
        assert_eq!(h.rolled_back_to.as_deref(), Some("1.0"), "{}", h.host);
    }
    // rolling back from 2.0 to 1.0 leaves nothing older: 2.0 is not a target
    let plan = engine
        .plan(&Request::rollback(t.clone(), None, alice()))
        .await
        .unwrap();
    assert!(
        plan.rollback_targets
            .iter()
            .all(|(_, cur, to)| cur.as_deref() == Some("1.0") && to.is_none()),
        "{:?}",
        plan.rollback_targets
    );
}

/// A pause template whose health check fails everywhere, every failure excluded: the outcome is
/// `failed`, the reason agrees with the figures, and what the hosts run is recorded as it is.
#[tokio::test]
async fn excluding_every_failed_host_is_a_failed_release_recorded_as_it_is() {
    for (policy, expect_current, expect_healthy) in
        [("restore", "1.0", true), ("leave", "2.0", false)]
    {
        let t = template(
            2,
            &format!(
                "[rollout]\nbatch = 1\n[failure]\nmax_failed = 0\non_failure = \"pause\"\nfailed_hosts = \"{policy}\""
            ),
        );
        let fleet = fleet(2);
        let engine = engine(fleet.clone());
        engine.deploy(req(&t, "1.0")).await.unwrap();
        health_fails(&fleet, "web-01");
        health_fails(&fleet, "web-02");
        let handle = engine.start(req(&t, "2.0")).await.unwrap();
        let mut events = handle.events();
        while let Some(e) = events.next().await {
            if let EventKind::DecisionNeeded { .. } = e.kind {
                handle.decide(Decision::Exclude).unwrap();
            }
        }
        let r = handle.wait().await.unwrap();
        assert_eq!(r.outcome, DeploymentOutcome::Failed, "{policy}: {r}");
        let reason = r.reason.clone().unwrap();
        assert!(reason.starts_with("no host succeeded"), "{reason}");
        assert!(reason.contains("2 hosts failed and excluded"), "{reason}");
        assert!(!reason.contains("within the budget"), "{reason}");
        for h in ["web-01", "web-02"] {
            assert_eq!(r.host(h).unwrap().status, HostStatus::Excluded);
            let v = version_of(&engine, h).await;
            assert_eq!(v.current.as_deref(), Some(expect_current), "{policy} {h}");
            assert_eq!(v.healthy, expect_healthy, "{policy} {h}");
        }
        // the next rollback goes to the last good version, never the excluded release
        fleet.clear_rules();
        let plan = engine
            .plan(&Request::rollback(t.clone(), None, alice()))
            .await
            .unwrap();
        for (h, _, to) in &plan.rollback_targets {
            let want = if policy == "leave" { Some("1.0") } else { None };
            assert_eq!(to.as_deref(), want, "{policy} {h}");
        }
    }
}

/// A host failing within the budget is restored to its rollback target by default (logged under
/// the rollback stage), or left with `failed_hosts = "leave"`.
#[tokio::test]
async fn hosts_failing_within_the_budget_are_restored_unless_left() {
    for policy in ["restore", "leave"] {
        let t = template(
            4,
            &format!(
                "[rollout]\nbatch = 2\n[failure]\nmax_failed = 1\nfailed_hosts = \"{policy}\""
            ),
        );
        let fleet = fleet(4);
        let engine = engine(fleet.clone());
        engine.deploy(req(&t, "1.0")).await.unwrap();
        health_fails(&fleet, "web-02");
        fleet.clear_requests();
        let r = engine.deploy(req(&t, "2.0")).await.unwrap();
        assert_eq!(r.outcome, DeploymentOutcome::PartiallyApplied, "{r}");
        let w2 = r.host("web-02").unwrap();
        assert_eq!(w2.status, HostStatus::Failed);
        let v = version_of(&engine, "web-02").await;
        let restores: Vec<_> = calls(&fleet)
            .into_iter()
            .filter(|(f, t)| f == "file.symlink" && t == &["web-02"])
            .collect();
        if policy == "restore" {
            assert_eq!(w2.rolled_back_to.as_deref(), Some("1.0"));
            assert_eq!(restores.len(), 1, "one restore call");
            assert!(
                r.host_log("web-02").iter().any(|l| l.contains("rollback")),
                "{:?}",
                r.host_log("web-02")
            );
            assert_eq!((v.current.as_deref(), v.healthy), (Some("1.0"), true));
            assert!(r
                .reason
                .as_deref()
                .unwrap()
                .contains("1 failed host restored"));
        } else {
            assert_eq!(w2.rolled_back_to, None);
            assert!(restores.is_empty());
            assert_eq!((v.current.as_deref(), v.healthy), (Some("2.0"), false));
            assert_eq!(v.previous.as_deref(), Some("1.0"));
        }
        // the other hosts run 2.0
        assert_eq!(
            version_of(&engine, "web-04").await.current.as_deref(),
            Some("2.0")
        );
    }
}

/// A transport that panics on one salt function (a bug somewhere below the engine).
#[derive(Debug)]
struct Panicking {
    inner: Arc<SimFleet>,
    fun: &'static str,
}

#[async_trait]
impl Transport for Panicking {
    async fn call(&self, targets: &[MinionId], call: &SaltCall) -> Result<Returns, TransportError> {
        if call.fun == self.fun && targets.iter().any(|t| t.as_str() == "web-03") {
            panic!("injected bug in {}", self.fun);
        }
        self.inner.call(targets, call).await
    }
    async fn resolve(&self, expr: &TargetExpr) -> Result<Vec<MinionId>, TransportError> {
        self.inner.resolve(expr).await
    }
}

/// A panic in the run ends the deployment as failed with the panic as its reason, records the
/// batch under way as unknown, gives the lease back and lets the next deployment run.
#[tokio::test]
async fn a_panic_in_the_run_fails_the_deployment_and_frees_the_template() {
    let t = template(4, "[rollout]\nbatch = 2");
    let sim = fleet(4);
    let fleet_state = Arc::new(MemoryFleetState::default());
    let engine = Engine::builder(Arc::new(Panicking {
        inner: sim.clone(),
        fun: "file.symlink",
    }))
    .fleet_state(fleet_state.clone())
    .build();
    let r = engine.deploy(req(&t, "1.0")).await.unwrap();
    assert_eq!(r.outcome, DeploymentOutcome::Failed, "{r}");
    let reason = r.reason.clone().unwrap();
    assert!(
        reason.contains("panicked") && reason.contains("injected bug in file.symlink"),
        "{reason}"
    );
    assert!(
        reason.contains("2 hosts being changed left in an unknown state"),
        "{reason}"
    );
    assert_eq!(r.host("web-01").unwrap().status, HostStatus::Succeeded);
    assert_eq!(r.host("web-03").unwrap().status, HostStatus::Interrupted);
    assert!(matches!(
        r.events.last().map(|e| &e.kind),
        Some(EventKind::DeploymentFinished {
            outcome: DeploymentOutcome::Failed
        })
    ));
    let v = fleet_state
        .versions("shop", &[id("web-01"), id("web-03")])
        .await
        .unwrap();
    assert_eq!(v[&id("web-01")].current.as_deref(), Some("1.0"));
    assert_eq!(v[&id("web-03")].current, None, "unknown");
    // the lease was given back: the same template deploys again (and panics again, but runs)
    let again = engine.start(req(&t, "1.0")).await;
    assert!(again.is_ok(), "{:?}", again.err());
}

/// A journal that remembers what it holds.
#[derive(Debug, Default)]
struct Journal {
    events: Mutex<Vec<Event>>,
}

#[async_trait]
impl HistoryStore for Journal {
    async fn append(&self, events: &[Event]) -> Result<(), Error> {
        // a slow disk: the engine must wait for it
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        self.events.lock().unwrap().extend_from_slice(events);
        Ok(())
    }
    async fn finish(&self, _report: &Report) -> Result<(), Error> {
        Ok(())
    }
}

/// Checks, whenever batch 1's host is touched, that batch 0 is durable in the journal and the
/// fleet state already.
#[derive(Debug)]
struct Watchful {
    inner: Arc<SimFleet>,
    journal: Arc<Journal>,
    fleet: Arc<MemoryFleetState>,
    violated: AtomicBool,
}

#[async_trait]
impl Transport for Watchful {
    async fn call(&self, targets: &[MinionId], call: &SaltCall) -> Result<Returns, TransportError> {
        if call.fun != "test.ping" && targets.iter().any(|t| t.as_str() == "web-02") {
            let journaled = self.journal.events.lock().unwrap().iter().any(|e| {
                matches!(&e.kind, EventKind::HostSucceeded { host } if host.as_str() == "web-01")
            }) && self.journal.events.lock().unwrap().iter().any(|e| {
                matches!(&e.kind, EventKind::BatchStarted { batch: 1, .. })
            });
            let recorded = self
                .fleet
                .versions("shop", &[MinionId::new("web-01").unwrap()])
                .await
                .unwrap()
                .values()
                .any(|v| v.current.as_deref() == Some("2.0"));
            if !(journaled && recorded) {
                self.violated.store(true, Ordering::SeqCst);
            }
        }
        self.inner.call(targets, call).await
    }
    async fn resolve(&self, expr: &TargetExpr) -> Result<Vec<MinionId>, TransportError> {
        self.inner.resolve(expr).await
    }
}

/// A batch's results are durable (journal and fleet state) before the next batch touches a host.
#[tokio::test]
async fn a_finished_batch_is_durable_before_the_next_batch_starts() {
    let t = template(2, "[rollout]\nbatch = 1");
    let journal = Arc::new(Journal::default());
    let fleet_state = Arc::new(MemoryFleetState::default());
    let watch = Arc::new(Watchful {
        inner: fleet(2),
        journal: journal.clone(),
        fleet: fleet_state.clone(),
        violated: AtomicBool::new(false),
    });
    let engine = Engine::builder(watch.clone())
        .fleet_state(fleet_state)
        .history(journal.clone())
        .build();
    let handle = engine.start(req(&t, "2.0")).await.unwrap();
    // what a watcher sees (say "batch 1/2 done") is already in the journal
    let mut events = handle.events();
    let mut seen = 0;
    while let Some(e) = events.next().await {
        let held = journal.events.lock().unwrap().iter().any(|j| j == &e);
        let last = matches!(e.kind, EventKind::DeploymentFinished { .. });
        assert!(held || last, "seen before journaled: {:?}", e.kind);
        seen += 1;
    }
    let r = handle.wait().await.unwrap();
    assert_eq!(r.outcome, DeploymentOutcome::Succeeded, "{r}");
    assert_eq!(seen, r.events.len());
    assert!(!watch.violated.load(Ordering::SeqCst));
}

/// `undo`: a rollback of the hosts an interrupted release reached: hosts whose batch finished go
/// back to what they ran before it, a host it stopped mid-batch goes back to its recorded version,
/// a host with nothing recorded is skipped without failing the rollback.
#[tokio::test]
async fn undo_rolls_back_what_a_release_reached_and_nothing_else() {
    let t = template(3, "[rollout]\nbatch = 1");
    let sim = fleet(3);
    let engine = engine(sim.clone());
    seed(&engine, &["web-01", "web-02"], "1.0").await;
    seed(&engine, &["web-01", "web-02"], "2.0").await;
    // the interrupted release of 3.0 finished web-01; web-02 was mid-batch; web-03 has no record
    seed(&engine, &["web-01"], "3.0").await;
    let r = engine
        .deploy(
            Request::rollback(t.clone(), None, alice())
                .undo("3.0")
                .hosts(["web-01", "web-02", "web-03"]),
        )
        .await
        .unwrap();
    assert_eq!(r.outcome, DeploymentOutcome::RolledBack, "{r}");
    assert_eq!(
        r.host("web-01").unwrap().rolled_back_to.as_deref(),
        Some("2.0")
    );
    assert_eq!(
        r.host("web-02").unwrap().rolled_back_to.as_deref(),
        Some("2.0")
    );
    assert_eq!(
        r.host("web-03").unwrap().status,
        HostStatus::NoRollbackTarget
    );
}

/// A cancel in the middle of a batch (no rollback policy) records what the batch left: the hosts
/// whose post-deploy stage was cut run the new version, not healthy; never "the old one, healthy".
#[tokio::test]
async fn a_cancel_mid_batch_records_what_the_batch_left() {
    let t = template(2, "[rollout]\nbatch = 2");
    let sim = Arc::new(
        SimFleet::new(hosts(2))
            .unwrap()
            .with_latency(std::time::Duration::from_millis(50)),
    );
    let engine = engine(sim.clone());
    engine.deploy(req(&t, "1.0")).await.unwrap();
    let handle = engine.start(req(&t, "2.0")).await.unwrap();
    let mut events = handle.events();
    while let Some(e) = events.next().await {
        if let EventKind::StageStarted {
            stage: pushguide_core::Stage::Deploy,
            ..
        } = e.kind
        {
            handle.cancel();
        }
    }
    let r = handle.wait().await.unwrap();
    assert_eq!(r.outcome, DeploymentOutcome::Cancelled, "{r}");
    for h in ["web-01", "web-02"] {
        let v = version_of(&engine, h).await;
        assert_eq!(v.current.as_deref(), Some("2.0"), "{h}: switched in deploy");
        assert!(!v.healthy, "{h}: its post-deploy never ran");
        assert_eq!(v.previous.as_deref(), Some("1.0"), "{h}");
    }
}

/// A failed host whose restore fails too is not "partially applied": the outcome says a rollback
/// failed, and the reason names it.
#[tokio::test]
async fn a_failed_restore_is_a_failed_rollback() {
    let t = template(4, "[rollout]\nbatch = 2\n[failure]\nmax_failed = 1");
    let sim = fleet(4);
    let engine = engine(sim.clone());
    engine.deploy(req(&t, "1.0")).await.unwrap();
    health_fails(&sim, "web-02");
    sim.add_rule_for_arg(
        "web-02",
        "file.symlink",
        "releases/1.0",
        Outcome::failed(Some(1), "disk full"),
    );
    let r = engine.deploy(req(&t, "2.0")).await.unwrap();
    assert_eq!(r.outcome, DeploymentOutcome::RollbackFailed, "{r}");
    let reason = r.reason.clone().unwrap();
    assert!(
        reason.contains("3 of 4 hosts succeeded")
            && reason.contains("1 failed host could not be restored"),
        "{reason}"
    );
    let v = version_of(&engine, "web-02").await;
    assert_eq!((v.current, v.healthy), (None, false));
    assert_eq!(v.previous.as_deref(), Some("1.0"));
}

/// Redeploying the version a host runs: a host that fails is restored to that version (what it
/// ran before), never downgraded to the one before it.
#[tokio::test]
async fn a_failed_redeploy_restores_the_same_version() {
    let t = template(2, "[rollout]\nbatch = 2\n[failure]\nmax_failed = 1");
    let sim = fleet(2);
    let engine = engine(sim.clone());
    engine.deploy(req(&t, "1.0")).await.unwrap();
    engine.deploy(req(&t, "2.0")).await.unwrap();
    health_fails(&sim, "web-02");
    let r = engine.deploy(req(&t, "2.0")).await.unwrap();
    assert_eq!(
        r.host("web-02").unwrap().rolled_back_to.as_deref(),
        Some("2.0")
    );
    let v = version_of(&engine, "web-02").await;
    assert_eq!((v.current.as_deref(), v.healthy), (Some("2.0"), true));
    assert_eq!(v.previous.as_deref(), Some("1.0"));
}
