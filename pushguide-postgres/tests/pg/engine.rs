//! The engine on the PostgreSQL store: a release journaled, fleet state and lease as the engine uses
//! them; a deployment whose lease is taken over mid-run stops and writes nothing more.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pushguide_core::{
    Deployer, DeployerConfig, DeploymentOutcome, Engine, Error as CoreError, KindInfo, MinionId,
    Outcome, Principal, Request, Returns, SaltCall, StageContext, StageError, Template, Transport,
    TransportError,
};
use pushguide_postgres::{PgConfig, PgStore};
use tokio::sync::Notify;

use crate::support::{config, store};
use crate::TTL;

/// Answers `true` at once, except that with `gate` set, the deploy call of a batch holding `web-02`
/// waits (telling `reached`) until `open` is notified.
#[derive(Debug, Default)]
struct GatedTransport {
    gate: AtomicBool,
    reached: Notify,
    open: Notify,
    jobs: AtomicU64,
}

#[async_trait::async_trait]
impl Transport for GatedTransport {
    async fn call(&self, targets: &[MinionId], call: &SaltCall) -> Result<Returns, TransportError> {
        if self.gate.load(Ordering::SeqCst)
            && call.fun == "file.symlink"
            && targets.iter().any(|t| t.as_str() == "web-02")
        {
            self.reached.notify_one();
            self.open.notified().await;
        }
        let n = self.jobs.fetch_add(1, Ordering::Relaxed);
        let mut r = Returns::with_jid(format!("2026{n:06}"));
        for t in targets {
            r = r.with(t, Outcome::ok(true));
        }
        Ok(r)
    }
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct PgTestConfig {}

#[derive(Debug)]
struct PgTestDeployer;

#[async_trait::async_trait]
impl Deployer for PgTestDeployer {
    async fn deploy(&self, cx: &mut StageContext<'_>) -> Result<(), StageError> {
        cx.call(
            SaltCall::mutate("file.symlink")
                .arg("/srv/t/r")
                .arg("/srv/t/current"),
        )
        .await?;
        Ok(())
    }
    async fn post_deploy(&self, cx: &mut StageContext<'_>) -> Result<(), StageError> {
        cx.call(SaltCall::read("test.ping")).await?;
        Ok(())
    }
    async fn rollback(&self, cx: &mut StageContext<'_>) -> Result<(), StageError> {
        cx.call(
            SaltCall::mutate("file.symlink")
                .arg("/srv/t/prev")
                .arg("/srv/t/current"),
        )
        .await?;
        Ok(())
    }
}

#[typetag::serde(name = "pg-test")]
impl DeployerConfig for PgTestConfig {
    fn build(&self) -> Result<Box<dyn Deployer>, CoreError> {
        Ok(Box::new(PgTestDeployer))
    }
}

inventory::submit! {
    KindInfo { kind: "pg-test", summary: "pushguide-postgres tests", platforms: &[], example: "kind = \"pg-test\"\n" }
}

fn template() -> Arc<Template> {
    let text = "name = \"shop\"\n[acl.deployers]\nusers = [\"alice\"]\n[targets]\n\
                minions = [\"web-01\", \"web-02\", \"web-03\"]\n[rollout]\nbatch = 1\n\
                [project]\nkind = \"pg-test\"\n";
    Arc::new(Template::from_toml_str(text, "<test>").unwrap())
}

fn engine(store: &PgStore, transport: Arc<GatedTransport>) -> Engine {
    let store = Arc::new(store.clone());
    Engine::builder(transport)
        .history(store.clone())
        .fleet_state(store.clone())
        .leases(store)
        .build()
}

fn version_of(fleet: &[pushguide_postgres::HostVersion], host: &str) -> Option<String> {
    fleet
        .iter()
        .find(|h| h.host == host)
        .and_then(|h| h.version.clone())
}

/// Two releases through the engine: the journal holds the report's events in order, the fleet state
/// the versions and rollback targets, and the lease is given back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_releases_are_journaled_with_fleet_state_and_lease() {
    if let Some(c) = config("engine_release") {
        engine_releases_are_journaled_with_fleet_state_and_lease_on(c).await;
    }
}

/// [`engine_releases_are_journaled_with_fleet_state_and_lease`] on the store `c` reaches (directly or through PgBouncer).
pub(crate) async fn engine_releases_are_journaled_with_fleet_state_and_lease_on(c: PgConfig) {
    let s = store(&c, TTL).await;
    let e = engine(&s, Arc::default());
    let t = template();
    for v in ["1.0", "2.0"] {
        let report = e
            .deploy(Request::new(t.clone(), v, Principal::user("alice")))
            .await
            .unwrap();
        assert_eq!(report.outcome, DeploymentOutcome::Succeeded, "{report:?}");
        assert_eq!(report.history_error, None);
        let d = s.deployment(&report.id).await.unwrap().unwrap();
        assert_eq!(d.outcome.as_deref(), Some("succeeded"));
        assert_eq!(d.version, v);
        assert!(d.lease_token.is_some(), "a release runs under a lease");
        let journal = s.events(&report.id).await.unwrap();
        assert_eq!(
            journal, report.events,
            "the journal is the report's events, in order"
        );
        let kept = s.report(&report.id).await.unwrap().unwrap();
        assert_eq!(kept.id, report.id);
    }
    let fleet = s.fleet("shop").await.unwrap();
    assert_eq!(fleet.len(), 3);
    for h in &fleet {
        assert_eq!(h.version.as_deref(), Some("2.0"), "{}", h.host);
        assert_eq!(h.previous.as_deref(), Some("1.0"), "{}", h.host);
    }
    assert!(
        s.lease("shop").await.unwrap().is_none(),
        "the lease was given back"
    );
}

/// The instance running a deployment stops renewing (a paused VM); another instance takes the
/// template's lease over. When the paused deployment resumes, its fleet state write is refused, it
/// stops, and nothing more of it lands in the journal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_whose_lease_is_taken_over_writes_nothing_more() {
    if let Some(c) = config("engine_takeover") {
        a_deployment_whose_lease_is_taken_over_writes_nothing_more_on(c).await;
    }
}

/// [`a_deployment_whose_lease_is_taken_over_writes_nothing_more`] on the store `c` reaches (directly or through PgBouncer).
pub(crate) async fn a_deployment_whose_lease_is_taken_over_writes_nothing_more_on(c: PgConfig) {
    // long enough that a starved heartbeat on a loaded machine does not lose the first deployment
    let short = Duration::from_secs(2);
    let (a, b) = (store(&c, short).await, store(&c, TTL).await);
    let transport = Arc::new(GatedTransport::default());
    let e = engine(&a, transport.clone());
    let t = template();
    let first = e
        .deploy(Request::new(t.clone(), "1.0", Principal::user("alice")))
        .await
        .unwrap();
    assert_eq!(first.outcome, DeploymentOutcome::Succeeded);
    transport.gate.store(true, Ordering::SeqCst);
    let run = {
        let (e, t) = (e.clone(), t.clone());
        tokio::spawn(async move {
            e.deploy(Request::new(t, "2.0", Principal::user("alice")))
                .await
        })
    };
    transport.reached.notified().await;
    // paused: its heartbeat stops, the lease expires on the database clock, b takes it over
    a.stop_heartbeat();
    tokio::time::sleep(short * 2).await;
    let taken = b.acquire_lease("shop", "taker", "takeover").await.unwrap();
    let journaled_before = {
        let ids = a.deployments("shop", 1).await.unwrap();
        a.deployment(&ids[0]).await.unwrap().unwrap()
    };
    transport.open.notify_one();
    let report = run.await.unwrap().unwrap();
    assert_ne!(report.outcome, DeploymentOutcome::Succeeded, "{report:?}");
    let reason = report.reason.clone().unwrap_or_default();
    assert!(reason.contains("is no longer current"), "{reason}");
    // web-01 (batch 0) was recorded before the takeover; web-02's write was fenced; web-03 untouched
    let fleet = b.fleet("shop").await.unwrap();
    assert_eq!(version_of(&fleet, "web-01").as_deref(), Some("2.0"));
    assert_eq!(version_of(&fleet, "web-02").as_deref(), Some("1.0"));
    assert_eq!(version_of(&fleet, "web-03").as_deref(), Some("1.0"));
    assert_eq!(
        transport.jobs.load(Ordering::SeqCst),
        // 1.0: pre-flight ping + 3 × (deploy + post-deploy); 2.0: ping, then batches 0 and 1 (web-02's
        // fleet write after its post-deploy is the one refused), nothing for web-03
        7 + 5,
        "no call after the fenced write"
    );
    // the journal holds nothing the deployment did after the takeover
    let after = a.deployment(&report.id).await.unwrap().unwrap();
    assert_eq!(after.id, journaled_before.id);
    assert_eq!(
        after.events, journaled_before.events,
        "no event appended after the takeover"
    );
    assert_eq!(after.outcome, None, "its report was refused");
    assert!(
        report.history_error.is_some(),
        "the engine was told: {report:?}"
    );
    // the new holder is untouched
    assert_eq!(b.lease("shop").await.unwrap().unwrap().token, taken.token);
}
