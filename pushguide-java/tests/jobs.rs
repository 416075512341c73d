//! `java-tomcat` with steps sent as salt jobs (`pushguide.steps`) to a simulated fleet that runs them
//! as the pushguide salt module does: one job for staging, one per batch, per-step failures attributed
//! to their stage and salt function, retries, cancel, dry runs, a missing module — and after each, the
//! next release and its rollback.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use pushguide_core::sim::SimFleet;
use pushguide_core::{
    job_steps, Artifact, DeploymentOutcome, Engine, EventKind, HostStatus, LogEntry, MinionId,
    Outcome, Principal, Request, Stage, Template, STEPS_FUN,
};
use pushguide_java as _;
use serde_json::json;

const SHA: &str = "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae";
const HOSTS: [&str; 4] = ["web-01", "web-02", "web-03", "web-04"];

fn template(extra: &str) -> Arc<Template> {
    template_with(extra, "previous")
}

fn template_with(extra: &str, rollback: &str) -> Arc<Template> {
    let text = format!(
        "name = \"shop\"\n[acl.deployers]\nusers = [\"ops\"]\n[targets]\nminions = {HOSTS:?}\n\
         [rollout]\nbatch = 2\n[rollback]\npolicy = \"{rollback}\"\n[health]\n\
         url = \"http://127.0.0.1:8080/shop/\"\nretries = 3\ninterval_secs = 1\n{extra}\n\
         [project]\nkind = \"java-tomcat\"\ncontext = \"shop\"\nroot = \"/srv/shop\"\n\
         catalina_base = \"/var/lib/tomcat10\"\nservice = \"tomcat10\"\n\
         [project.hosts.web-02]\nroot = \"/srv/shop-2\"\n"
    );
    Arc::new(Template::from_toml_str(&text, "<test>").unwrap_or_else(|e| panic!("{e}")))
}

fn req(t: &Arc<Template>, v: &str) -> Request {
    let mut a = Artifact::new(
        format!("https://ci.example.com/shop/{v}/shop.war"),
        Some(SHA.into()),
    );
    a.size = Some(1000);
    Request::new(t.clone(), v, Principal::user("ops")).artifact(a)
}

/// A fleet where releases are not on disk yet, downloads and hashes answer right, Tomcat is healthy.
fn fleet() -> Arc<SimFleet> {
    Arc::new(healthy(SimFleet::new(HOSTS).unwrap()))
}

/// The rules of a healthy fleet with the release not on disk yet.
fn healthy(f: SimFleet) -> SimFleet {
    f.on("*", "file.directory_exists", Outcome::ok(false))
        .on("*", "cp.get_url", Outcome::ok("/srv/shop/archives/x.war"))
        .on("*", "file.get_hash", Outcome::ok(SHA))
        .on("*", "http.query", Outcome::ok(json!({"status": 200})))
}

/// A release to go back to, on every host's disk.
fn on_disk(fleet: &SimFleet, version: &str) {
    fleet.add_rule_for_arg(
        "*",
        "file.directory_exists",
        &format!("/releases/{version}"),
        Outcome::ok(true),
    );
}

fn engine(fleet: &Arc<SimFleet>) -> Engine {
    Engine::builder(fleet.clone()).step_jobs(true).build()
}

fn id(s: &str) -> MinionId {
    MinionId::new(s).unwrap()
}

async fn versions(engine: &Engine) -> Vec<Option<String>> {
    let all: Vec<MinionId> = HOSTS.iter().map(|h| id(h)).collect();
    let v = engine.fleet_state().versions("shop", &all).await.unwrap();
    all.iter()
        .map(|h| v.get(h).and_then(|r| r.current.clone()))
        .collect()
}

fn funs(fleet: &SimFleet) -> Vec<String> {
    fleet.requests().into_iter().map(|r| r.fun).collect()
}

#[tokio::test]
async fn a_release_is_one_job_for_staging_and_one_per_batch_and_stages_stay_visible() {
    let fleet = fleet();
    let engine = engine(&fleet);
    let t = template("");
    let handle = engine.start(req(&t, "1.0.0")).await.unwrap();
    let mut events = handle.events();
    let report = handle.wait().await.unwrap();
    assert_eq!(report.outcome, DeploymentOutcome::Succeeded, "{report}");
    // pre-flight, then one job for staging and one per batch (2 batches)
    assert_eq!(
        funs(&fleet),
        vec!["test.ping", STEPS_FUN, STEPS_FUN, STEPS_FUN]
    );
    // per-host values share the job: web-02's own root travels in the same staging job
    let staging = &fleet.requests()[1];
    assert_eq!(staging.targets.len(), 4);
    let steps = job_steps(&staging.call).unwrap();
    let own: Vec<String> = steps[&id("web-02")]
        .iter()
        .map(|s| s.call.to_string())
        .collect();
    assert!(
        own.iter()
            .any(|c| c.contains("\"/srv/shop-2/releases/1.0.0\"")),
        "{own:?}"
    );
    assert_eq!(
        steps[&id("web-01")]
            .iter()
            .map(|s| s.call.fun.as_str())
            .collect::<Vec<_>>(),
        vec![
            "pushguide.free_space",
            "cp.get_url",
            "file.get_hash",
            "archive.unzip"
        ]
    );
    // the batch job carries the three stages in order
    let batch = job_steps(&fleet.requests()[2].call).unwrap();
    assert_eq!(
        batch[&id("web-01")]
            .iter()
            .map(|s| s.call.fun.as_str())
            .collect::<Vec<_>>(),
        vec![
            "service.stop",
            "file.symlink",
            "file.remove",
            "service.start",
            "http.query",
            "pushguide.prune"
        ]
    );
    // each step is a call record under its own stage, all of a batch with the batch's job id
    let stage_of = |fun: &str| {
        report
            .calls
            .iter()
            .filter(|c| c.call.fun == fun)
            .map(|c| (c.batch, c.stage))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        stage_of("service.stop"),
        vec![(Some(0), Stage::PreDeploy), (Some(1), Stage::PreDeploy)]
    );
    assert_eq!(stage_of("file.symlink")[0], (Some(0), Stage::Deploy));
    assert_eq!(stage_of("http.query")[1], (Some(1), Stage::PostDeploy));
    assert_eq!(stage_of("cp.get_url")[0], (None, Stage::Staging));
    let jids: std::collections::BTreeSet<_> = report
        .calls
        .iter()
        .filter(|c| c.batch == Some(0))
        .map(|c| c.jid.clone().unwrap())
        .collect();
    assert_eq!(jids.len(), 1, "one job for batch 0: {jids:?}");
    // every host's log holds each stage's steps
    let log = &report.host("web-03").unwrap().log;
    for stage in [
        Stage::Staging,
        Stage::PreDeploy,
        Stage::Deploy,
        Stage::PostDeploy,
    ] {
        assert!(
            log.iter()
                .any(|e| matches!(e, LogEntry::Call { stage: s, .. } if *s == stage)),
            "{stage}: {log:?}"
        );
    }
    // the events show the three stages of each batch, in order
    let mut stages = Vec::new();
    while let Some(e) = events.next().await {
        if let EventKind::StageStarted {
            batch: Some(b),
            stage,
            ..
        } = e.kind
        {
            stages.push((b, stage));
        }
    }
    assert_eq!(
        stages,
        vec![
            (0, Stage::PreDeploy),
            (0, Stage::Deploy),
            (0, Stage::PostDeploy),
            (1, Stage::PreDeploy),
            (1, Stage::Deploy),
            (1, Stage::PostDeploy)
        ]
    );
    assert_eq!(versions(&engine).await, vec![Some("1.0.0".into()); 4]);

    // the next release and its rollback, the rollback one job for every host
    fleet.clear_requests();
    let r = engine.deploy(req(&t, "1.1.0")).await.unwrap();
    assert_eq!(r.outcome, DeploymentOutcome::Succeeded, "{r}");
    assert_eq!(versions(&engine).await, vec![Some("1.1.0".into()); 4]);
    fleet.clear_requests();
    fleet.add_rule("*", "file.directory_exists", Outcome::ok(true), None);
    let r = engine
        .deploy(Request::rollback(t.clone(), None, Principal::user("ops")))
        .await
        .unwrap();
    assert_eq!(r.outcome, DeploymentOutcome::RolledBack, "{r}");
    assert_eq!(versions(&engine).await, vec![Some("1.0.0".into()); 4]);
    assert_eq!(
        funs(&fleet)
            .iter()
            .filter(|f| f.as_str() == STEPS_FUN)
            .count(),
        2,
        "one rollback job per batch: {:?}",
        funs(&fleet)
    );
}

#[tokio::test]
async fn a_failing_step_is_the_hosts_failure_at_its_stage_and_function_and_the_batch_rolls_back() {
    let fleet = fleet();
    let engine = engine(&fleet);
    let t = template("");
    let r = engine.deploy(req(&t, "1.0.0")).await.unwrap();
    assert_eq!(r.outcome, DeploymentOutcome::Succeeded, "{r}");
    // the release to go back to is on disk
    on_disk(&fleet, "1.0.0");
    fleet.add_rule(
        "web-02",
        "file.symlink",
        Outcome::failed(Some(1), "CommandExecutionError: read-only file system"),
        Some(1),
    );
    fleet.clear_requests();
    let r = engine.deploy(req(&t, "2.0.0")).await.unwrap();
    assert_eq!(r.outcome, DeploymentOutcome::RolledBack, "{r}");
    let f = r.host("web-02").unwrap().failure.clone().unwrap();
    assert_eq!(f.stage, Stage::Deploy);
    assert_eq!(f.fun.as_deref(), Some("file.symlink"));
    assert!(f.reason.contains("read-only file system"), "{}", f.reason);
    // the steps after the failing one did not run on web-02: no start in its log
    let started = r.host("web-02").unwrap().log.iter().any(|e| match e {
        LogEntry::Call { call, stage, .. } => {
            *stage == Stage::PostDeploy && r.calls[*call].call.fun == "service.start"
        }
        _ => false,
    });
    assert!(!started);
    // web-01 went through all three stages in the same job
    assert_eq!(r.host("web-01").unwrap().status, HostStatus::RolledBack);
    // the budget (0) stopped the release after batch 0: batch 1 was never sent
    let jobs = funs(&fleet)
        .iter()
        .filter(|f| f.as_str() == STEPS_FUN)
        .count();
    assert_eq!(jobs, 3, "staging, batch 0, rollback: {:?}", funs(&fleet));
    assert_eq!(versions(&engine).await, vec![Some("1.0.0".into()); 4]);
    // the fault was for one symlink only: the next release goes through
    let r = engine.deploy(req(&t, "2.0.1")).await.unwrap();
    assert_eq!(r.outcome, DeploymentOutcome::Succeeded, "{r}");
    assert_eq!(versions(&engine).await, vec![Some("2.0.1".into()); 4]);
}

#[tokio::test]
async fn the_health_check_is_tried_again_inside_the_job() {
    let fleet = fleet();
    fleet.add_rule(
        "web-01",
        "http.query",
        Outcome::ok(json!({"status": 503})),
        Some(2),
    );
    let engine = engine(&fleet);
    let r = engine.deploy(req(&template(""), "1.0.0")).await.unwrap();
    assert_eq!(r.outcome, DeploymentOutcome::Succeeded, "{r}");
    let lines = r.host_log("web-01");
    assert!(
        lines.iter().any(|l| l.contains("http.query: 3 attempts")),
        "{lines:?}"
    );
    assert_eq!(
        funs(&fleet)
            .iter()
            .filter(|f| f.as_str() == STEPS_FUN)
            .count(),
        3
    );
}

#[tokio::test]
async fn pausing_for_a_decision_sends_each_stage_as_its_own_job() {
    let fleet = fleet();
    let engine = engine(&fleet);
    let r = engine
        .deploy(req(&template("[failure]\non_failure = \"pause\""), "1.0.0"))
        .await
        .unwrap();
    assert_eq!(r.outcome, DeploymentOutcome::Succeeded, "{r}");
    // staging, then three jobs per batch
    assert_eq!(
        funs(&fleet)
            .iter()
            .filter(|f| f.as_str() == STEPS_FUN)
            .count(),
        1 + 2 * 3
    );
}

#[tokio::test]
async fn a_dry_run_sends_no_job_and_no_mutating_call() {
    let fleet = fleet();
    let engine = engine(&fleet);
    let r = engine
        .deploy(req(&template(""), "1.0.0").dry_run(true))
        .await
        .unwrap();
    assert_eq!(r.outcome, DeploymentOutcome::Succeeded, "{r}");
    for q in fleet.requests() {
        assert_ne!(q.fun, STEPS_FUN);
        assert!(!q.call.is_mutating(), "{}", q.call);
    }
    // read-only steps were sent: the disk check, the release directory condition, the probes
    let sent = funs(&fleet);
    assert!(sent.iter().any(|f| f == "pushguide.free_space"), "{sent:?}");
    assert!(
        sent.iter().any(|f| f == "file.directory_exists"),
        "{sent:?}"
    );
    // the download was only recorded, so its hash was not asked for
    assert!(!sent.iter().any(|f| f == "file.get_hash"), "{sent:?}");
    assert_eq!(versions(&engine).await, vec![None; 4]);
    // a minion without the module is told how to get it, in a dry run too
    fleet.add_rule(
        "web-01",
        "pushguide.free_space",
        Outcome::failed(None, "'pushguide.free_space' is not available."),
        None,
    );
    let r = engine
        .deploy(req(&template("[failure]\nmax_failed = 1"), "1.0.0").dry_run(true))
        .await
        .unwrap();
    let f = r.host("web-01").unwrap().failure.clone().unwrap();
    assert!(
        f.reason.contains("pushguide install-module"),
        "{}",
        f.reason
    );
}

#[tokio::test]
async fn without_the_module_every_host_fails_staging_with_the_install_hint_and_nothing_is_touched()
{
    let fleet = fleet();
    fleet.add_rule(
        "*",
        STEPS_FUN,
        Outcome::failed(None, "'pushguide.steps' is not available."),
        None,
    );
    let engine = engine(&fleet);
    let r = engine
        .deploy(req(&template("[failure]\nmax_failed = 1"), "1.0.0"))
        .await
        .unwrap();
    assert_eq!(r.outcome, DeploymentOutcome::Failed, "{r}");
    let f = r.host("web-03").unwrap().failure.clone().unwrap();
    assert_eq!(f.stage, Stage::Staging);
    assert!(
        f.reason.contains("pushguide install-module"),
        "{}",
        f.reason
    );
    assert_eq!(
        funs(&fleet)
            .iter()
            .filter(|f| f.as_str() == STEPS_FUN)
            .count(),
        1,
        "only the staging job"
    );
}

#[tokio::test]
async fn a_cancel_while_a_batch_job_runs_lets_it_finish_records_it_and_rolls_back() {
    let fleet = Arc::new(healthy(
        SimFleet::new(HOSTS)
            .unwrap()
            .with_latency(std::time::Duration::from_millis(300)),
    ));
    let engine = engine(&fleet);
    let t = template("");
    let r = engine.deploy(req(&t, "1.0.0")).await.unwrap();
    assert_eq!(r.outcome, DeploymentOutcome::Succeeded, "{r}");
    on_disk(&fleet, "1.0.0");
    let handle = engine.start(req(&t, "2.0.0")).await.unwrap();
    let mut events = handle.events();
    while let Some(e) = events.next().await {
        if let EventKind::CallStarted {
            batch: Some(0),
            fun,
            ..
        } = &e.kind
        {
            if fun == STEPS_FUN {
                break;
            }
        }
    }
    handle.cancel();
    let r = handle.wait().await.unwrap();
    // the job ran to its end on batch 0's hosts and was recorded; batch 1 was never sent; the
    // touched hosts went back
    assert_eq!(r.outcome, DeploymentOutcome::Cancelled, "{r}");
    assert_eq!(r.host("web-01").unwrap().status, HostStatus::RolledBack);
    assert!(r.calls.iter().any(|c| c.batch == Some(0)
        && c.stage == Stage::PostDeploy
        && c.call.fun == "service.start"));
    assert!(!r.calls.iter().any(|c| c.batch == Some(1)));
    assert_eq!(versions(&engine).await, vec![Some("1.0.0".into()); 4]);
    // and the next release goes through
    let r = engine.deploy(req(&t, "2.0.1")).await.unwrap();
    assert_eq!(r.outcome, DeploymentOutcome::Succeeded, "{r}");
    assert_eq!(versions(&engine).await, vec![Some("2.0.1".into()); 4]);
}

/// A unit test with `MockTransport` sees each step a job carries: the batch's job is opened with
/// `job_steps`, checked, and answered with the module's report.
#[tokio::test]
async fn a_mocked_transport_sees_each_step_of_a_job() {
    use pushguide_core::{MockTransport, Returns};
    let t = Arc::new(
        Template::from_toml_str(
            "name = \"shop\"\n[acl.deployers]\nusers = [\"ops\"]\n[targets]\nminions = [\"web-01\"]\n\
             [rollout]\nstage_ahead = false\n[project]\nkind = \"java-tomcat\"\ncontext = \"shop\"\n\
             root = \"/srv/shop\"\ncatalina_base = \"/var/lib/tomcat10\"\nservice = \"tomcat10\"\n",
            "<test>",
        )
        .unwrap(),
    );
    let mut mock = MockTransport::new();
    mock.expect_call()
        .withf(|_, c| c.fun == "test.ping")
        .times(1)
        .returning(|tg, _| Ok(Returns::uniform(tg, Outcome::ok(true))));
    mock.expect_call()
        .withf(|_, c| c.fun == STEPS_FUN)
        .times(1)
        .returning(|tg, call| {
            let steps = job_steps(call).unwrap();
            let mine = &steps[&tg[0]];
            let funs: Vec<&str> = mine.iter().map(|s| s.call.fun.as_str()).collect();
            // no staging ahead: the batch's job fetches, unpacks, stops, switches and starts
            assert_eq!(
                funs,
                [
                    "pushguide.free_space",
                    "cp.get_url",
                    "file.get_hash",
                    "archive.unzip",
                    "service.stop",
                    "file.symlink",
                    "file.remove",
                    "service.start",
                    "pushguide.prune"
                ]
            );
            // the module's report: the release directory is not there, every step passes
            let report: Vec<serde_json::Value> = mine
                .iter()
                .map(|s| {
                    let ret = match s.call.fun.as_str() {
                        "cp.get_url" => json!("/srv/shop/archives/1.0.0.war"),
                        "file.get_hash" => json!(SHA),
                        _ => json!(true),
                    };
                    json!({"fun": s.call.fun, "ok": true, "skipped": false, "ret": ret,
                           "retcode": 0, "error": null, "ms": 5.0, "attempts": 1})
                })
                .collect();
            Ok(Returns::uniform(
                tg,
                Outcome::ok(json!({"pushguide": 1, "minion": tg[0].as_str(), "steps": report})),
            ))
        });
    let r = Engine::builder(Arc::new(mock))
        .step_jobs(true)
        .build()
        .deploy(req(&t, "1.0.0"))
        .await
        .unwrap();
    assert_eq!(r.outcome, DeploymentOutcome::Succeeded, "{r}");
    assert_eq!(
        r.calls
            .iter()
            .filter(|c| c.stage == Stage::PreDeploy)
            .count(),
        5
    );
}

/// A minion that gives no answer to its batch's job may have run any part of it: it fails at the
/// release (deploy) and what it runs is recorded as unknown — neither the old nor the new version.
#[tokio::test]
async fn a_host_whose_batch_job_never_answers_is_recorded_as_unknown() {
    let fleet = fleet();
    let engine = engine(&fleet);
    let t = template_with("", "none");
    let r = engine.deploy(req(&t, "1.0.0")).await.unwrap();
    assert_eq!(r.outcome, DeploymentOutcome::Succeeded, "{r}");
    // web-02's staging job answers; its batch job never does
    on_disk(&fleet, "2.0.0");
    fleet.add_rule("web-02", "service.stop", Outcome::NoReturn, Some(1));
    let r = engine.deploy(req(&t, "2.0.0")).await.unwrap();
    assert_eq!(r.outcome, DeploymentOutcome::Failed, "{r}");
    let f = r.host("web-02").unwrap().failure.clone().unwrap();
    assert_eq!(f.stage, Stage::Deploy, "{r}");
    assert!(f.reason.contains("unknown"), "{}", f.reason);
    let v = engine
        .fleet_state()
        .versions("shop", &[id("web-01"), id("web-02")])
        .await
        .unwrap();
    assert_eq!(v[&id("web-01")].current.as_deref(), Some("2.0.0"));
    assert_eq!(
        v[&id("web-02")].current,
        None,
        "unknown, not 1.0.0 or 2.0.0"
    );
    assert!(!v[&id("web-02")].healthy);
}

/// Oversized input: 3,000 hosts, each with its own long release root, in one batch. The steps do not
/// fit one request of reasonable size, so they go as several jobs, all at once, each under the size
/// limit (plus one host's plan); every host is in exactly one job of each kind and the release
/// succeeds everywhere.
#[tokio::test]
async fn thousands_of_hosts_with_their_own_paths_go_as_several_jobs_of_bounded_size() {
    let ids: Vec<String> = (0..3000).map(|i| format!("w{i:04}")).collect();
    let mut hosts = String::new();
    for id in &ids {
        hosts.push_str(&format!(
            "[project.hosts.{id}]\nroot = \"/srv/{}/{id}\"\n",
            "deep".repeat(30)
        ));
    }
    let text = format!(
        "name = \"shop\"\n[acl.deployers]\nusers = [\"ops\"]\n[targets]\nminions = {ids:?}\n\
         [rollout]\nbatch = 3000\n[health]\nurl = \"http://127.0.0.1:8080/shop/\"\n\
         [project]\nkind = \"java-tomcat\"\ncontext = \"shop\"\nroot = \"/srv/shop\"\n\
         catalina_base = \"/var/lib/tomcat10\"\nservice = \"tomcat10\"\n{hosts}"
    );
    let t = Arc::new(Template::from_toml_str(&text, "<big>").unwrap());
    let fleet = Arc::new(healthy(SimFleet::new(&ids).unwrap()));
    let r = engine(&fleet).deploy(req(&t, "1.0.0")).await.unwrap();
    assert_eq!(
        r.outcome,
        DeploymentOutcome::Succeeded,
        "{}",
        r.reason.clone().unwrap_or_default()
    );
    assert_eq!(
        r.hosts
            .iter()
            .filter(|h| h.status == HostStatus::Succeeded)
            .count(),
        3000
    );
    let jobs: Vec<_> = fleet
        .requests()
        .into_iter()
        .filter(|q| q.fun == STEPS_FUN)
        .collect();
    assert!(
        jobs.len() > 2,
        "one staging and one batch job could not hold it all: {}",
        jobs.len()
    );
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    for j in &jobs {
        let bytes = serde_json::to_string(&j.call.kwarg).unwrap().len();
        assert!(bytes < 256 * 1024 + 8 * 1024, "a job of {bytes} bytes");
        for m in &j.targets {
            *seen.entry(m.to_string()).or_default() += 1;
        }
    }
    // every host: one staging job and one batch job
    assert_eq!(seen.len(), 3000);
    assert!(seen.values().all(|n| *n == 2), "{seen:?}");
}
