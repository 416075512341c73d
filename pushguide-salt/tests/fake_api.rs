//! `SaltApi` (and the engine through it) against the fake salt-api: wire format, faults, request counts.
#![cfg(feature = "fake")]
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use pushguide_core::sim::SimFleet;
use pushguide_core::{
    Deployer, DeployerConfig, DeploymentOutcome, Engine, Error, HostStatus, KindInfo, MinionId,
    Outcome, Platform, Principal, Request, SaltCall, StageContext, StageError, Template, Transport,
    TransportErrorKind,
};
use pushguide_salt::fake::FakeSaltApi;
use pushguide_salt::{SaltApi, SaltApiSettings, SaltError};
use serde::{Deserialize, Serialize};

// ------------------------------------------------------------------------------------- helpers

fn hosts(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("web-{i:03}")).collect()
}

fn fleet(n: usize) -> Arc<SimFleet> {
    Arc::new(SimFleet::new(hosts(n)).unwrap())
}

fn id(s: &str) -> MinionId {
    MinionId::new(s).unwrap()
}

/// Client settings with a short poll interval, so that fallbacks show within a test's patience.
fn settings(fake: &FakeSaltApi) -> SaltApiSettings {
    SaltApiSettings {
        poll_interval: Duration::from_millis(100),
        request_timeout: Duration::from_secs(10),
        ..fake.settings()
    }
}

async fn started(n: usize) -> (FakeSaltApi, SaltApi) {
    let fake = FakeSaltApi::start(fleet(n)).await.unwrap();
    let api = SaltApi::new(settings(&fake)).unwrap();
    (fake, api)
}

/// One successful call, so that the client is logged in and its event stream is connected.
async fn warm_up(api: &SaltApi, fake: &FakeSaltApi) {
    let all = fake.fleet().minions().to_vec();
    let mut r = api.call(&all, &SaltCall::read("test.ping")).await.unwrap();
    assert!(all.iter().all(|m| r.take(m).is_ok()));
    assert!(api.endpoint_health()[0].events_connected);
}

async fn within<T>(secs: u64, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .expect("no hang")
}

// ------------------------------------------------------------------------------------- client

/// A job of steps (`pushguide.steps`) through the fake salt-api: ONE request and one salt job for
/// three minions whose steps differ per host; a fault on one step's function stops that minion
/// there and the others run every step; the client decodes each minion's report.
#[tokio::test]
async fn a_job_of_steps_with_a_fault_on_one_step_of_one_minion() {
    use pushguide_core::{decode_steps, steps_call, Check, HostSteps, Step};
    let (fake, api) = started(3).await;
    warm_up(&api, &fake).await;
    fake.fleet().clear_requests();
    fake.reset_request_count();
    let all = fake.fleet().minions().to_vec();
    fake.fleet().add_rule(
        all[1].as_str(),
        "file.symlink",
        Outcome::failed(Some(1), "read-only file system"),
        None,
    );
    let groups: Vec<(Vec<MinionId>, Vec<Step>)> = all
        .iter()
        .map(|m| {
            let dir = format!("/srv/{m}/releases/1.0.0");
            (
                vec![m.clone()],
                vec![
                    Step::new(SaltCall::mutate("service.stop").arg("tomcat")).check(Check::True),
                    Step::new(
                        SaltCall::mutate("file.symlink")
                            .arg(dir)
                            .arg("/srv/current"),
                    ),
                    Step::new(SaltCall::mutate("service.start").arg("tomcat")),
                ],
            )
        })
        .collect();
    let mut r = within(10, api.call(&all, &steps_call(&groups)))
        .await
        .unwrap();
    assert_eq!(fake.request_count().get("POST /"), 1);
    assert_eq!(fake.fleet().requests().len(), 1, "one job");
    for (i, m) in all.iter().enumerate() {
        let Outcome::Ok { value } = r.take(m) else {
            panic!("{m}: no report")
        };
        let HostSteps::Ran(steps) = decode_steps(&value, 3).unwrap() else {
            panic!("{m}: refused")
        };
        if i == 1 {
            assert_eq!(steps.len(), 2, "{m} stopped at the symlink");
            assert_eq!(
                steps[1].outcome.reason().as_deref(),
                Some("retcode 1: read-only file system")
            );
        } else {
            assert_eq!(steps.len(), 3, "{m}");
            assert!(steps.iter().all(|s| s.outcome.is_ok()));
        }
    }
    // the fleet saw each minion's own steps in the one job
    let per_step = fake.fleet().step_requests();
    let symlinks: Vec<_> = per_step
        .iter()
        .filter(|q| q.fun == "file.symlink")
        .collect();
    assert_eq!(symlinks.len(), 3, "one per host path");
}

#[tokio::test]
async fn login_and_one_request_for_a_list_of_minions() {
    let (fake, api) = started(5).await;
    api.login().await.unwrap();
    let all = fake.fleet().minions().to_vec();
    let mut r = within(
        10,
        api.call(&all, &SaltCall::mutate("cmd.run").arg("echo hi")),
    )
    .await
    .unwrap();
    let jid = r.jid.clone().unwrap();
    assert_eq!(jid.len(), 20, "salt-like jid: {jid}");
    for m in &all {
        assert_eq!(r.take(m), Outcome::ok(true), "{m}");
    }
    let n = fake.request_count();
    assert_eq!(n.get("POST /login"), 1, "{n:?}");
    assert_eq!(n.get("POST /"), 1, "one request for five minions: {n:?}");
    assert_eq!(n.get("GET /events"), 1, "{n:?}");
    let h = &api.endpoint_health()[0];
    assert_eq!(h.returns_from_events, 5, "returns came from /events: {h:?}");
    // the fleet saw the call with the arguments the client sent, for the whole list
    let reqs = fake.fleet().requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].targets, all);
    assert_eq!(reqs[0].call.arg, vec![serde_json::json!("echo hi")]);
    // runner manage.status and resolve through the fake
    let up = api.ping(&all[..2]).await.unwrap();
    assert!(up.values().all(|u| *u), "{up:?}");
    let status = api.manage_status().await.unwrap();
    assert_eq!(status.up.len(), 5);
    let e = api
        .runner("nosuch.runner", serde_json::Map::new())
        .await
        .unwrap_err();
    assert!(
        matches!(e, SaltError::Api { status: 500, .. }),
        "unknown runner: {e:?}"
    );
    let glob = pushguide_core::TargetExpr {
        expression: "web-00*".into(),
        tgt_type: pushguide_core::TargetType::Glob,
    };
    assert_eq!(api.resolve(&glob).await.unwrap().len(), 5);
}

/// Many jobs at once share one event stream: their returns arrive interleaved (several jobs in one
/// chunk) and each call gets exactly its own, all from events, none by polling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_jobs_each_get_their_own_returns_from_one_stream() {
    let fleet = Arc::new(
        SimFleet::new(hosts(40))
            .unwrap()
            .with_latency(Duration::from_millis(20))
            .on("web-007", "cmd.run", Outcome::failed(Some(2), "exit 2")),
    );
    let fake = FakeSaltApi::start(fleet).await.unwrap();
    let api = Arc::new(SaltApi::new(settings(&fake)).unwrap());
    warm_up(&api, &fake).await;
    let all = fake.fleet().minions().to_vec();
    let before = api.endpoint_health()[0].returns_from_events;
    let mut calls = tokio::task::JoinSet::new();
    for k in 0..10usize {
        // overlapping subsets: minions k, k+10, k+20, k+30 and the next one
        let mine: Vec<MinionId> = all
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 10 == k || i % 10 == (k + 1) % 10)
            .map(|(_, m)| m.clone())
            .collect();
        let api = api.clone();
        calls.spawn(async move {
            let r = api
                .call(&mine, &SaltCall::mutate("cmd.run").arg(format!("job {k}")))
                .await
                .unwrap();
            (mine, r)
        });
    }
    let mut returned = 0;
    while let Some(done) = within(10, calls.join_next()).await {
        let (mine, mut r) = done.unwrap();
        assert_eq!(r.minions.len(), mine.len());
        for m in &mine {
            let want = if m.as_str() == "web-007" {
                Outcome::failed(Some(2), "exit 2")
            } else {
                Outcome::ok(true)
            };
            assert_eq!(r.take(m), want, "{m}");
        }
        returned += mine.len() as u64;
    }
    assert_eq!(returned, 80);
    let h = &api.endpoint_health()[0];
    assert_eq!(h.returns_from_events - before, 80, "{h:?}");
    assert_eq!(fake.request_count().get("GET /jobs/*"), 0, "no polling");
}

#[tokio::test]
async fn wrong_credentials_are_an_auth_error() {
    let fake = FakeSaltApi::builder(fleet(1))
        .credentials("deploy", "s3cret-pw")
        .eauth("file")
        .start()
        .await
        .unwrap();
    let good = SaltApi::new(fake.settings()).unwrap();
    good.login().await.unwrap();
    let bad = SaltApi::new(SaltApiSettings {
        password: "wrong-4711".into(),
        ..fake.settings()
    })
    .unwrap();
    let e = bad.login().await.unwrap_err();
    match &e {
        SaltError::Auth { message, .. } => {
            assert!(message.contains("Could not authenticate"), "{message}")
        }
        other => panic!("expected Auth, got {other:?}"),
    }
    assert!(!e.to_string().contains("4711"));
    let t = bad
        .call(&[id("web-001")], &SaltCall::read("test.ping"))
        .await
        .unwrap_err();
    assert_eq!(t.kind, TransportErrorKind::Auth);
}

#[tokio::test]
async fn failed_minion_keeps_its_retcode_and_message() {
    let fleet = Arc::new(
        SimFleet::new(hosts(3))
            .unwrap()
            .on("web-002", "cmd.run", Outcome::failed(Some(7), "partial"))
            .on(
                "web-003",
                "cmd.run",
                Outcome::failed(None, "no retcode here"),
            ),
    );
    let fake = FakeSaltApi::start(fleet).await.unwrap();
    let api = SaltApi::new(settings(&fake)).unwrap();
    let all = fake.fleet().minions().to_vec();
    let mut r = within(10, api.call(&all, &SaltCall::mutate("cmd.run").arg("x")))
        .await
        .unwrap();
    assert_eq!(r.take(&all[0]), Outcome::ok(true));
    assert_eq!(r.take(&all[1]), Outcome::failed(Some(7), "partial"));
    assert_eq!(r.take(&all[2]), Outcome::failed(None, "no retcode here"));

    // the same through polling only (GET /jobs/<jid>)
    let polling = SaltApi::new(SaltApiSettings {
        use_events: false,
        ..settings(&fake)
    })
    .unwrap();
    let mut r = within(10, polling.call(&all, &SaltCall::mutate("cmd.run")))
        .await
        .unwrap();
    assert_eq!(r.take(&all[1]), Outcome::failed(Some(7), "partial"));
    assert!(fake.request_count().get("GET /jobs/*") >= 1);
}

#[tokio::test]
async fn a_minion_that_never_returns_is_no_return_after_the_call_timeout() {
    let (fake, api) = started(3).await;
    fake.fleet()
        .add_rule("web-002", "*", Outcome::NoReturn, None);
    let all = fake.fleet().minions().to_vec();
    let started = Instant::now();
    let mut r = within(
        10,
        api.call(
            &all,
            &SaltCall::read("test.ping").timeout(Duration::from_millis(800)),
        ),
    )
    .await
    .unwrap();
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(800), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(r.take(&all[0]).is_ok());
    assert_eq!(r.take(&all[1]), Outcome::NoReturn);
    assert!(r.take(&all[2]).is_ok());
    // unknown minions are left out by the master: no job, no hang
    let mut r = within(10, api.call(&[id("db-99")], &SaltCall::read("test.ping")))
        .await
        .unwrap();
    assert_eq!(r.take(&id("db-99")), Outcome::NoReturn);
}

#[tokio::test]
async fn http_500_fails_the_call_at_once_without_resending() {
    let (fake, api) = started(2).await;
    warm_up(&api, &fake).await;
    let before = fake.request_count().get("POST /");
    fake.faults().fail_next(1);
    let all = fake.fleet().minions().to_vec();
    let e = within(10, api.call(&all, &SaltCall::read("test.ping")))
        .await
        .unwrap_err();
    assert_eq!(e.kind, TransportErrorKind::Api, "{e}");
    assert!(!e.is_retryable());
    assert!(e.message.contains("500"), "{e}");
    assert_eq!(fake.request_count().get("POST /"), before + 1, "not resent");
    assert!(fake.fleet().requests().len() == 1, "the 500 started no job");
    // the fault is used up: the next call works, and the endpoint is not marked down
    let mut r = api.call(&all, &SaltCall::read("test.ping")).await.unwrap();
    assert!(r.take(&all[0]).is_ok());
    assert!(api.endpoint_health()[0].available);
}

#[tokio::test]
async fn http_503_fails_over_for_read_only_calls_but_never_resends_mutating_ones() {
    let fleet = fleet(2);
    let a = FakeSaltApi::start(Arc::clone(&fleet)).await.unwrap();
    let b = FakeSaltApi::start(Arc::clone(&fleet)).await.unwrap();
    let two = |a: &FakeSaltApi, b: &FakeSaltApi| SaltApiSettings {
        endpoints: vec![a.url(), b.url()],
        ..settings(a)
    };
    let all = fleet.minions().to_vec();

    let api = SaltApi::new(two(&a, &b)).unwrap();
    warm_up(&api, &a).await;
    a.faults().fail_next_with(1, 503);
    let mut r = within(10, api.call(&all, &SaltCall::read("test.ping")))
        .await
        .unwrap();
    assert!(all.iter().all(|m| r.take(m).is_ok()));
    assert_eq!(a.request_count().get("POST /"), 2, "warm-up + the 503");
    assert_eq!(b.request_count().get("POST /"), 1, "resent to b");
    let h = api.endpoint_health();
    assert!(!h[0].available && h[1].available, "{h:?}");

    let api = SaltApi::new(two(&a, &b)).unwrap();
    warm_up(&api, &a).await;
    a.faults().fail_next_with(1, 503);
    let e = within(10, api.call(&all, &SaltCall::mutate("cmd.run").arg("x")))
        .await
        .unwrap_err();
    assert_eq!(e.kind, TransportErrorKind::Api, "{e}");
    assert_eq!(
        b.request_count().get("POST /"),
        1,
        "mutating call not resent"
    );
}

#[tokio::test]
async fn a_job_whose_endpoint_dies_while_waiting_is_reissued_on_the_next_one() {
    // a's minions never answer in time; b's answer at once (same ids: two masters, one fleet)
    let slow = Arc::new(
        SimFleet::new(hosts(2))
            .unwrap()
            .with_latency(Duration::from_secs(60)),
    );
    let a = FakeSaltApi::start(slow).await.unwrap();
    let b = FakeSaltApi::start(fleet(2)).await.unwrap();
    let api = SaltApi::new(SaltApiSettings {
        endpoints: vec![a.url(), b.url()],
        ..settings(&a)
    })
    .unwrap();
    let all = b.fleet().minions().to_vec();
    let call = {
        let api = api.clone();
        let all = all.clone();
        tokio::spawn(async move { api.call(&all, &SaltCall::read("test.ping")).await })
    };
    within(10, async {
        while a.request_count().get("POST /") == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    a.shutdown();
    let mut r = within(20, call).await.unwrap().unwrap();
    assert!(all.iter().all(|m| r.take(m).is_ok()), "{r:?}");
    assert_eq!(a.request_count().get("POST /"), 1, "started once on a");
    assert_eq!(b.request_count().get("POST /"), 1, "re-issued once on b");
    assert_eq!(b.fleet().requests().len(), 1, "b ran the job");
    let h = api.endpoint_health();
    assert!(!h[0].available && h[1].available, "{h:?}");
}

#[tokio::test]
async fn an_expired_or_refused_token_means_a_transparent_new_login() {
    let (fake, api) = started(2).await;
    warm_up(&api, &fake).await;
    let all = fake.fleet().minions().to_vec();
    assert_eq!(fake.request_count().get("POST /login"), 1);

    fake.faults().expire_tokens();
    let mut r = within(10, api.call(&all, &SaltCall::read("test.ping")))
        .await
        .unwrap();
    assert!(r.take(&all[0]).is_ok());
    assert_eq!(
        fake.request_count().get("POST /login"),
        2,
        "logged in again"
    );

    fake.faults().unauthorized_next(1);
    api.call(&all, &SaltCall::read("test.ping")).await.unwrap();
    assert_eq!(fake.request_count().get("POST /login"), 3);

    // tokens the server forgets before their announced expiry
    fake.faults().token_ttl(Some(Duration::from_millis(200)));
    fake.faults().expire_tokens();
    api.call(&all, &SaltCall::read("test.ping")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    api.call(&all, &SaltCall::read("test.ping")).await.unwrap();
    assert_eq!(fake.request_count().get("POST /login"), 5);

    // a refused fresh token is an Auth error, not a loop
    fake.faults().unauthorized_next(2);
    let e = api
        .call(&all, &SaltCall::read("test.ping"))
        .await
        .unwrap_err();
    assert_eq!(e.kind, TransportErrorKind::Auth, "{e}");
}

#[tokio::test]
async fn short_token_lifetimes_are_renewed_before_they_expire() {
    let fake = FakeSaltApi::builder(fleet(1))
        .token_lifetime(Duration::from_millis(500))
        .start()
        .await
        .unwrap();
    let api = SaltApi::new(settings(&fake)).unwrap();
    let all = fake.fleet().minions().to_vec();
    api.call(&all, &SaltCall::read("test.ping")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    api.call(&all, &SaltCall::read("test.ping")).await.unwrap();
    let n = fake.request_count();
    assert!(n.get("POST /login") >= 2, "{n:?}");
}

#[tokio::test]
async fn a_dropped_event_stream_means_completion_by_polling() {
    let (fake, api) = started(4).await;
    warm_up(&api, &fake).await;
    fake.faults().refuse_event_streams(true);
    fake.faults().drop_event_streams();
    let deadline = Instant::now() + Duration::from_secs(5);
    while api.endpoint_health()[0].events_connected {
        assert!(Instant::now() < deadline, "the client saw the drop");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let before = api.endpoint_health()[0].returns_from_events;
    let all = fake.fleet().minions().to_vec();
    let mut r = within(10, api.call(&all, &SaltCall::read("test.ping")))
        .await
        .unwrap();
    assert!(all.iter().all(|m| r.take(m).is_ok()));
    assert!(fake.request_count().get("GET /jobs/*") >= 1, "polled");
    assert_eq!(api.endpoint_health()[0].returns_from_events, before);

    // the stream comes back once the endpoint accepts it again
    fake.faults().refuse_event_streams(false);
    let deadline = Instant::now() + Duration::from_secs(15);
    while !api.endpoint_health()[0].events_connected {
        assert!(Instant::now() < deadline, "reconnected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn malformed_json_is_a_protocol_error_never_a_panic() {
    let (fake, api) = started(2).await;
    warm_up(&api, &fake).await;
    let all = fake.fleet().minions().to_vec();
    fake.faults().malformed_next(1);
    let e = within(10, api.call(&all, &SaltCall::read("test.ping")))
        .await
        .unwrap_err();
    assert_eq!(e.kind, TransportErrorKind::Protocol, "{e}");

    let fresh = SaltApi::new(settings(&fake)).unwrap();
    fake.faults().malformed_next(1);
    let e = fresh.login().await.unwrap_err();
    assert!(matches!(e, SaltError::Protocol { .. }), "{e:?}");

    // a malformed /jobs answer while polling
    let polling = SaltApi::new(SaltApiSettings {
        use_events: false,
        ..settings(&fake)
    })
    .unwrap();
    polling.login().await.unwrap();
    fake.fleet()
        .add_rule("*", "test.ping", Outcome::NoReturn, Some(2));
    let ping = SaltCall::read("test.ping");
    let call = polling.call(&all, &ping);
    let fault = async {
        // after the first poll of /jobs/<jid>: the next answer is another poll
        while fake.request_count().get("GET /jobs/*") < 1 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        fake.faults().malformed_next(1);
    };
    let (r, ()) = within(10, async { tokio::join!(call, fault) }).await;
    let e = r.unwrap_err();
    assert_eq!(e.kind, TransportErrorKind::Protocol, "{e}");
    assert!(fake.request_count().get("GET /jobs/*") >= 1);
}

#[tokio::test]
async fn faults_can_be_cleared_and_latency_added() {
    let (fake, api) = started(1).await;
    let all = fake.fleet().minions().to_vec();
    warm_up(&api, &fake).await;
    fake.faults().fail_next(3);
    fake.faults().clear();
    fake.faults().extra_latency(Duration::from_millis(100));
    let t = Instant::now();
    api.call(&all, &SaltCall::read("test.ping")).await.unwrap();
    assert!(t.elapsed() >= Duration::from_millis(100));
    fake.faults().extra_latency(Duration::ZERO);
    fake.reset_request_count();
    assert_eq!(fake.request_count().total(), 0);
    let url = fake.url();
    drop(fake);
    let after = SaltApi::new(SaltApiSettings {
        endpoints: vec![url],
        ..SaltApiSettings::default()
    })
    .unwrap();
    let e = after.login().await.unwrap_err();
    assert!(e.is_retryable(), "server gone after drop: {e:?}");
}

// ------------------------------------------------------------------------------------- engine

/// Release directory + symlink + read-only probe: three calls per batch.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FakeAppConfig {
    root: String,
}

#[derive(Debug)]
struct FakeApp {
    root: String,
}

inventory::submit! {
    KindInfo {
        kind: "fake-api-app",
        summary: "Release directory and symlink, for the fake salt-api tests.",
        platforms: &[Platform::Linux],
        example: "kind = \"fake-api-app\"\nroot = \"/srv/app\"\n",
    }
}

#[typetag::serde(name = "fake-api-app")]
impl DeployerConfig for FakeAppConfig {
    fn build(&self) -> Result<Box<dyn Deployer>, Error> {
        Ok(Box::new(FakeApp {
            root: self.root.clone(),
        }))
    }
}

#[async_trait::async_trait]
impl Deployer for FakeApp {
    async fn pre_deploy(&self, cx: &mut StageContext<'_>) -> Result<(), StageError> {
        let dir = format!("{}/releases/{}/", self.root, cx.version());
        cx.call(SaltCall::mutate("file.makedirs").arg(dir)).await?;
        Ok(())
    }
    async fn deploy(&self, cx: &mut StageContext<'_>) -> Result<(), StageError> {
        let dir = format!("{}/releases/{}", self.root, cx.version());
        cx.call(
            SaltCall::mutate("file.symlink")
                .arg(dir)
                .arg(format!("{}/current", self.root))
                .kwarg("force", true),
        )
        .await?;
        Ok(())
    }
    async fn post_deploy(&self, cx: &mut StageContext<'_>) -> Result<(), StageError> {
        cx.call(SaltCall::read("http.query").arg("http://127.0.0.1:8080/health"))
            .await?;
        Ok(())
    }
    async fn rollback(&self, _cx: &mut StageContext<'_>) -> Result<(), StageError> {
        Ok(())
    }
}

fn template(hosts: &[String], batch: usize, extra: &str) -> Arc<Template> {
    let list: Vec<String> = hosts.iter().map(|h| format!("\"{h}\"")).collect();
    let text = format!(
        "name = \"fake-shop\"\n[acl.deployers]\nusers = [\"alice\"]\n[targets]\nminions = [{}]\n\
         [rollout]\nbatch = {batch}\n{extra}\n[project]\nkind = \"fake-api-app\"\nroot = \"/srv/shop\"\n",
        list.join(", ")
    );
    Arc::new(Template::from_toml_str(&text, "<fake test>").unwrap())
}

async fn deploy(fake: &FakeSaltApi, t: &Arc<Template>) -> pushguide_core::Report {
    let api = Arc::new(SaltApi::new(settings(fake)).unwrap());
    let engine = Engine::builder(api).build();
    within(
        60,
        engine.deploy(Request::new(t.clone(), "2.0.0", Principal::user("alice"))),
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_deploys_50_hosts_through_the_fake() {
    let fake = FakeSaltApi::start(fleet(50)).await.unwrap();
    let t = template(&hosts(50), 10, "");
    let report = deploy(&fake, &t).await;
    assert_eq!(report.outcome, DeploymentOutcome::Succeeded, "{report:?}");
    assert_eq!(report.batches.len(), 5);
    assert!(report
        .hosts
        .iter()
        .all(|h| h.status == HostStatus::Succeeded));
    let n = fake.request_count();
    assert_eq!(
        n.get("POST /"),
        1 + 5 * 3,
        "ping + 3 calls per batch: {n:?}"
    );
    assert_eq!(n.get("POST /login"), 1, "{n:?}");
    assert!(
        report.calls.iter().all(|c| c.jid.is_some()),
        "jids recorded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_records_a_failed_host_with_salts_retcode() {
    let fleet = Arc::new(SimFleet::new(hosts(50)).unwrap().on(
        "web-007",
        "file.symlink",
        Outcome::failed(Some(1), "link failed"),
    ));
    let fake = FakeSaltApi::start(fleet).await.unwrap();
    let t = template(&hosts(50), 10, "[failure]\nmax_failed = 1");
    let report = deploy(&fake, &t).await;
    assert_eq!(report.outcome, DeploymentOutcome::PartiallyApplied);
    let h = report.host("web-007").unwrap();
    assert_eq!(h.status, HostStatus::Failed);
    let f = h.failure.as_ref().unwrap();
    assert_eq!(f.fun.as_deref(), Some("file.symlink"));
    assert!(f.reason.contains("link failed"), "{}", f.reason);
    assert!(f.reason.contains("retcode 1"), "{}", f.reason);
    // the failed host is dropped from its batch's later call
    let probes: Vec<_> = fake
        .fleet()
        .requests()
        .into_iter()
        .filter(|r| r.fun == "http.query" && r.targets.contains(&id("web-001")))
        .collect();
    assert_eq!(probes.len(), 1);
    assert!(!probes[0].targets.contains(&id("web-007")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_per_deployment_do_not_grow_with_batch_width() {
    let mut counts = Vec::new();
    for width in [5usize, 50] {
        let n = width * 10;
        let fake = FakeSaltApi::start(fleet(n)).await.unwrap();
        let report = deploy(&fake, &template(&hosts(n), width, "")).await;
        assert_eq!(report.outcome, DeploymentOutcome::Succeeded);
        assert_eq!(report.batches.len(), 10);
        let c = fake.request_count();
        assert_eq!(c.get("POST /"), 10 * 3 + 1, "batches × steps + ping: {c:?}");
        assert_eq!(c.get("POST /login"), 1, "{c:?}");
        assert_eq!(c.get("GET /events"), 1, "{c:?}");
        counts.push(c.get("POST /") + c.get("POST /login") + c.get("GET /events"));
    }
    assert_eq!(counts[0], counts[1], "width 5 vs 50: {counts:?}");
}

// ------------------------------------------------------------------------------------- durations

/// A timeout too large for `Instant + Duration` is refused with an error naming the call and its
/// `timeout`, before anything is sent; it never panics the task.
#[tokio::test]
async fn a_call_timeout_beyond_the_maximum_is_an_error_not_a_panic() {
    let (fake, api) = started(2).await;
    let all = fake.fleet().minions().to_vec();
    let huge = Duration::from_secs(9_223_372_036_854_775_807);
    let call = SaltCall::read("http.query")
        .arg("http://127.0.0.1/")
        .timeout(huge);
    let api2 = api.clone();
    let targets = all.clone();
    let joined = tokio::spawn(async move { api2.call(&targets, &call).await }).await;
    let err = joined.expect("the task does not panic").unwrap_err();
    assert!(
        err.message.contains("timeout") && err.message.contains("http.query"),
        "{err}"
    );
    assert_eq!(fake.request_count().get("POST /"), 0);
    // the maximum itself is accepted
    let mut r = within(
        10,
        api.call(
            &all,
            &SaltCall::read("test.ping").timeout(pushguide_salt::MAX_CALL_TIMEOUT),
        ),
    )
    .await
    .unwrap();
    assert!(r.take(&all[0]).is_ok());
}

#[tokio::test]
async fn settings_durations_beyond_the_maximum_are_refused_naming_the_key() {
    let fake = FakeSaltApi::start(fleet(1)).await.unwrap();
    let huge = Duration::from_secs(9_223_372_036_854_775_807);
    for (key, s) in [
        (
            "job_timeout",
            SaltApiSettings {
                job_timeout: huge,
                ..settings(&fake)
            },
        ),
        (
            "poll_interval",
            SaltApiSettings {
                poll_interval: huge,
                ..settings(&fake)
            },
        ),
        (
            "endpoint_cooldown",
            SaltApiSettings {
                endpoint_cooldown: huge,
                ..settings(&fake)
            },
        ),
        (
            "request_timeout",
            SaltApiSettings {
                request_timeout: huge,
                ..settings(&fake)
            },
        ),
        (
            "connect_timeout",
            SaltApiSettings {
                connect_timeout: huge,
                ..settings(&fake)
            },
        ),
        (
            "token_expire",
            SaltApiSettings {
                token_expire: Some(huge),
                ..settings(&fake)
            },
        ),
    ] {
        let err = SaltApi::new(s)
            .err()
            .unwrap_or_else(|| panic!("{key} accepted"));
        assert!(err.to_string().contains(key), "{key}: {err}");
    }
    let ok = SaltApiSettings {
        job_timeout: pushguide_salt::MAX_SETTING_DURATION,
        ..settings(&fake)
    };
    SaltApi::new(ok).unwrap();
    // from TOML too (the CLI's `[salt]` table): parsed, then refused by `SaltApi::new`
    let s: SaltApiSettings = toml::from_str(&format!(
        "endpoints = [\"{}\"]\njob_timeout = 9223372036854775807\n",
        settings(&fake).endpoints[0]
    ))
    .unwrap();
    let err = SaltApi::new(s).err().unwrap();
    assert!(err.to_string().contains("job_timeout"), "{err}");
}

/// Jobs longer than the poll interval, the stream healthy all along (from a fresh client's first
/// call on): no `GET /jobs` (each is a `jobs.list_job` runner job on a real master).
#[tokio::test]
async fn a_long_job_with_a_healthy_stream_is_never_polled() {
    let fleet = Arc::new(
        SimFleet::new(hosts(3))
            .unwrap()
            .with_latency(Duration::from_millis(700)),
    );
    let fake = FakeSaltApi::start(fleet).await.unwrap();
    // a fresh client: its first call waits for the event stream before publishing the job
    let api = SaltApi::new(settings(&fake)).unwrap();
    let all = fake.fleet().minions().to_vec();
    for _ in 0..2 {
        let mut r = within(10, api.call(&all, &SaltCall::read("test.ping")))
            .await
            .unwrap();
        assert!(all.iter().all(|m| r.take(m).is_ok()));
    }
    let n = fake.request_count();
    assert_eq!(n.get("GET /jobs/*"), 0, "{n:?}");
    assert_eq!(n.get("POST /"), 2, "{n:?}");
}

/// Returns the stream never delivered, the stream still connected: one look at the job at the
/// deadline finds them.
#[tokio::test]
async fn returns_a_healthy_stream_lost_are_found_at_the_deadline() {
    let (fake, api) = started(2).await;
    warm_up(&api, &fake).await;
    fake.reset_request_count();
    fake.faults().lose_return_events(1);
    let all = fake.fleet().minions().to_vec();
    let started = Instant::now();
    let call = SaltCall::read("test.ping").timeout(Duration::from_secs(1));
    let mut r = within(10, api.call(&all, &call)).await.unwrap();
    assert!(all.iter().all(|m| r.take(m).is_ok()));
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited for the stream first"
    );
    assert_eq!(
        fake.request_count().get("GET /jobs/*"),
        1,
        "one look, at the deadline"
    );
    // the next job's returns come through the stream again
    fake.reset_request_count();
    let mut r = within(10, api.call(&all, &SaltCall::read("test.ping")))
        .await
        .unwrap();
    assert!(all.iter().all(|m| r.take(m).is_ok()));
    assert_eq!(fake.request_count().get("GET /jobs/*"), 0);
}

/// The stream drops in the middle of a wait and comes back: returns sent in the gap may be lost, so
/// the job is polled from then on.
#[tokio::test]
async fn a_stream_that_drops_during_a_wait_turns_to_polling() {
    let fleet = Arc::new(
        SimFleet::new(hosts(2))
            .unwrap()
            .with_latency(Duration::from_millis(900)),
    );
    let fake = FakeSaltApi::start(fleet).await.unwrap();
    let api = SaltApi::new(settings(&fake)).unwrap();
    warm_up(&api, &fake).await;
    fake.reset_request_count();
    fake.faults().lose_return_events(1);
    let all = fake.fleet().minions().to_vec();
    let call = SaltCall::read("test.ping").timeout(Duration::from_secs(20));
    let dropper = {
        let faults = fake.faults().clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            faults.drop_event_streams();
        })
    };
    let started = Instant::now();
    let mut r = within(10, api.call(&all, &call)).await.unwrap();
    dropper.await.unwrap();
    assert!(all.iter().all(|m| r.take(m).is_ok()));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "not left to the deadline"
    );
    assert!(
        fake.request_count().get("GET /jobs/*") >= 1,
        "polled after the drop"
    );
}
