//! An engine over an instant transport that fails chosen hosts in the deploy stage, and event helpers.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pushguide_core::{
    Deployer, DeployerConfig, Engine, Error, Event, EventKind, KindInfo, MinionId, Outcome,
    Returns, SaltCall, Stage, StageContext, StageError, Template, Transport, TransportError,
};
use pushguide_store::SqliteStore;

/// Answers at once: `true` for every target, except `file.symlink` on the hosts in `fail`.
#[derive(Debug, Default)]
pub(crate) struct InstantTransport {
    pub(crate) fail: HashSet<String>,
    /// Hosts that do not answer `test.ping`.
    pub(crate) down: HashSet<String>,
    pub(crate) jobs: AtomicU64,
}

#[async_trait::async_trait]
impl Transport for InstantTransport {
    async fn call(&self, targets: &[MinionId], call: &SaltCall) -> Result<Returns, TransportError> {
        let n = self.jobs.fetch_add(1, Ordering::Relaxed);
        let mut r = Returns::with_jid(format!("2026{n:06}"));
        for t in targets {
            let outcome = if call.fun == "file.symlink" && self.fail.contains(t.as_str()) {
                Outcome::failed(Some(1), "disk full")
            } else if call.fun == "test.ping" && self.down.contains(t.as_str()) {
                Outcome::NoReturn
            } else {
                Outcome::ok(true)
            };
            r = r.with(t, outcome);
        }
        Ok(r)
    }
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct StoreTestConfig {}

#[derive(Debug)]
struct StoreTestDeployer;

#[async_trait::async_trait]
impl Deployer for StoreTestDeployer {
    async fn pre_deploy(&self, cx: &mut StageContext<'_>) -> Result<(), StageError> {
        cx.call(SaltCall::mutate("file.makedirs").arg("/srv/t/releases/"))
            .await?;
        Ok(())
    }
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

#[typetag::serde(name = "store-test")]
impl DeployerConfig for StoreTestConfig {
    fn build(&self) -> Result<Box<dyn Deployer>, Error> {
        Ok(Box::new(StoreTestDeployer))
    }
}

inventory::submit! {
    KindInfo { kind: "store-test", summary: "store tests", platforms: &[], example: "kind = \"store-test\"\n" }
}

/// A template `name` over `hosts` web-01.. in batches of `batch`, with `extra` TOML appended.
pub(crate) fn template(name: &str, hosts: usize, batch: usize, extra: &str) -> Arc<Template> {
    let list: Vec<String> = (1..=hosts).map(|i| format!("\"web-{i:02}\"")).collect();
    let text = format!(
        "name = \"{name}\"\n[acl.deployers]\nusers = [\"alice\"]\n[targets]\nminions = [{}]\n\
         [rollout]\nbatch = {batch}\n{extra}\n[project]\nkind = \"store-test\"\n",
        list.join(",")
    );
    Arc::new(Template::from_toml_str(&text, "<test>").unwrap())
}

/// An engine whose history, fleet state and leases are all `store`.
pub(crate) fn engine(store: &SqliteStore, fail: &[&str]) -> Engine {
    let transport = InstantTransport {
        fail: fail.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    let store = Arc::new(store.clone());
    Engine::builder(Arc::new(transport))
        .history(store.clone())
        .fleet_state(store.clone())
        .leases(store)
        .build()
}

/// `t` seconds after 2026-01-05 00:00 UTC (a Monday).
pub(crate) fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_767_571_200 + secs)
}

pub(crate) fn ev(id: &str, at: SystemTime, kind: EventKind) -> Event {
    Event {
        at,
        deployment: Arc::from(id),
        kind,
    }
}

pub(crate) fn host(h: &str) -> MinionId {
    MinionId::new(h).unwrap()
}

/// The events of a whole deployment of one batch: start at `start`, every stage 10 s, hosts in `ok`
/// succeed, hosts in `failed` fail at (`stage`), end after `secs` with `outcome`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn deployment(
    id: &str,
    template: &str,
    start: SystemTime,
    secs: u64,
    ok: &[&str],
    failed: &[(&str, Stage)],
    outcome: pushguide_core::DeploymentOutcome,
    dry_run: bool,
) -> Vec<Event> {
    let t = |s: u64| start + Duration::from_secs(s);
    let n = ok.len() + failed.len();
    let mut v = vec![
        ev(
            id,
            t(0),
            EventKind::DeploymentStarted {
                template: template.into(),
                version: "1.0".into(),
                user: "alice".into(),
                dry_run,
                rollback: false,
            },
        ),
        ev(
            id,
            t(0),
            EventKind::BatchStarted {
                batch: 0,
                hosts: n,
                minions: ok
                    .iter()
                    .copied()
                    .chain(failed.iter().map(|(h, _)| *h))
                    .map(|h| pushguide_core::MinionId::new(h).unwrap())
                    .collect(),
            },
        ),
    ];
    for (i, stage) in Stage::BATCH.into_iter().enumerate() {
        let i = i as u64;
        v.push(ev(
            id,
            t(i * 10),
            EventKind::StageStarted {
                batch: Some(0),
                stage,
                hosts: n,
            },
        ));
        let mut f = 0;
        for (h, s) in failed {
            if *s == stage {
                f += 1;
                v.push(ev(
                    id,
                    t(i * 10 + 5),
                    EventKind::HostFailed {
                        host: host(h),
                        stage,
                        fun: Some("file.symlink".into()),
                        reason: "disk full".into(),
                    },
                ));
            }
        }
        v.push(ev(
            id,
            t(i * 10 + 10),
            EventKind::StageFinished {
                batch: Some(0),
                stage,
                ok: n - f,
                failed: f,
            },
        ));
    }
    for h in ok {
        v.push(ev(id, t(30), EventKind::HostSucceeded { host: host(h) }));
    }
    v.push(ev(
        id,
        t(30),
        EventKind::BatchFinished {
            batch: 0,
            ok: ok.len(),
            failed: failed.len(),
        },
    ));
    v.push(ev(id, t(secs), EventKind::DeploymentFinished { outcome }));
    v
}

/// Release `id` of template `shop` at [`at`]`(0)`, one minute long: web-01 succeeds.
pub(crate) fn web_01_release(id: &str) -> Vec<Event> {
    let ok = pushguide_core::DeploymentOutcome::Succeeded;
    deployment(id, "shop", at(0), 60, &["web-01"], &[], ok, false)
}

/// The report the engine would record after `events` (one deployment's whole journal, ending with
/// `DeploymentFinished`): its outcome, start, duration and plan, and no host logs. `None` when the
/// journal has no end.
pub(crate) fn report_of(events: &[Event]) -> Option<pushguide_core::Report> {
    let mut started = None;
    let mut plan: Vec<Vec<MinionId>> = Vec::new();
    for e in events {
        match &e.kind {
            EventKind::DeploymentStarted {
                template,
                version,
                user,
                dry_run,
                ..
            } => started = Some((e, template, version, user, *dry_run)),
            EventKind::Prepared { plan: p, .. } => plan = p.clone(),
            EventKind::DeploymentFinished { outcome } => {
                let (s, template, version, user, dry_run) = started?;
                let duration = e.at.duration_since(s.at).unwrap_or_default();
                return Some(
                    serde_json::from_value(serde_json::json!({
                        "id": &*e.deployment,
                        "template": template,
                        "version": version,
                        "user": user,
                        "dry_run": dry_run,
                        "outcome": outcome,
                        "reason": null,
                        "started": s.at,
                        "duration": duration,
                        "batches": plan,
                        "hosts": [],
                        "calls": [],
                        "events": [],
                        "history_error": null,
                    }))
                    .expect("a report"),
                );
            }
            _ => {}
        }
    }
    None
}

/// Appends `events` and, when they end the deployment, records its report, as the engine does.
pub(crate) fn record(store: &SqliteStore, events: &[Event]) {
    store.append_events(events).unwrap();
    if let Some(r) = report_of(events) {
        store.finish_report(&r).unwrap();
    }
}
