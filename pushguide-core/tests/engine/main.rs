//! Engine behaviour against `MockTransport` and the simulated fleet.
#![allow(clippy::unwrap_used)]

mod answers;
mod correctness;
mod support;
mod template;

use std::sync::Arc;
use std::time::Duration;

use mockall::Sequence;
use pushguide_core::{
    Decision, DeploymentOutcome, Effect, Error, EventKind, HostStatus, MinionId, MockTransport,
    Outcome, Returns, Stage,
};
use support::*;

fn ids(names: &[&str]) -> Vec<MinionId> {
    names.iter().map(|n| MinionId::new(n).unwrap()).collect()
}

fn ok_all(targets: &[MinionId]) -> Result<Returns, pushguide_core::TransportError> {
    Ok(Returns::uniform(targets, Outcome::ok(true)))
}

#[tokio::test]
async fn exact_call_sequence_per_stage_one_request_per_batch() {
    let t = template(4, "[rollout]\nbatch = 2");
    let mut mock = MockTransport::new();
    let mut seq = Sequence::new();
    let all = ids(&["web-01", "web-02", "web-03", "web-04"]);
    let expect = |mock: &mut MockTransport,
                  seq: &mut Sequence,
                  fun: &'static str,
                  effect: Effect,
                  targets: Vec<MinionId>,
                  first_arg: Option<&'static str>| {
        mock.expect_call()
            .withf(move |tg, call| {
                tg == targets.as_slice()
                    && call.fun == fun
                    && call.effect == effect
                    && first_arg
                        .is_none_or(|a| call.arg.first().and_then(|v| v.as_str()) == Some(a))
            })
            .times(1)
            .in_sequence(seq)
            .returning(|tg, _| ok_all(tg));
    };
    expect(
        &mut mock,
        &mut seq,
        "test.ping",
        Effect::ReadOnly,
        all.clone(),
        None,
    );
    for batch in [&all[..2], &all[2..]] {
        expect(
            &mut mock,
            &mut seq,
            "file.makedirs",
            Effect::Mutating,
            batch.to_vec(),
            Some("/srv/shop/releases/2.0.0/"),
        );
        expect(
            &mut mock,
            &mut seq,
            "file.symlink",
            Effect::Mutating,
            batch.to_vec(),
            Some("/srv/shop/releases/2.0.0"),
        );
        expect(
            &mut mock,
            &mut seq,
            "http.query",
            Effect::ReadOnly,
            batch.to_vec(),
            None,
        );
    }
    let report = engine(Arc::new(mock))
        .deploy(req(&t, "2.0.0"))
        .await
        .unwrap();
    assert_eq!(report.outcome, DeploymentOutcome::Succeeded, "{report}");
    assert_eq!(report.batches.len(), 2);
    assert_eq!(report.calls.len(), 7);
    assert!(report
        .hosts
        .iter()
        .all(|h| h.status == HostStatus::Succeeded));
    // per-host, per-stage log
    let log = report.host_log("web-03");
    assert_eq!(log.len(), 4, "{log:?}");
    assert!(log[1].starts_with("[pre-deploy] file.makedirs"), "{log:?}");
    assert!(log[2].starts_with("[deploy] file.symlink"), "{log:?}");
}

#[tokio::test]
async fn one_request_per_step_whatever_the_batch_width() {
    for n in [10, 200] {
        let t = template(n, "[rollout]\nbatch = \"20%\"");
        let fleet = fleet(n);
        let report = engine(fleet.clone())
            .deploy(req(&t, "1.0.0"))
            .await
            .unwrap();
        assert_eq!(report.outcome, DeploymentOutcome::Succeeded);
        assert_eq!(report.batches.len(), 5);
        // 1 pre-flight ping + 5 batches x 3 steps, whatever the width.
        assert_eq!(fleet.requests().len(), 16, "n = {n}");
        for r in fleet.requests().iter().skip(1) {
            assert_eq!(r.targets.len(), n / 5);
        }
    }
}

#[tokio::test]
async fn failed_host_is_dropped_from_later_stages_within_budget() {
    let t = template(4, "[rollout]\nbatch = 4\n[failure]\nmax_failed = 1");
    let fleet = Arc::new(pushguide_core::sim::SimFleet::new(hosts(4)).unwrap().on(
        "web-02",
        "file.makedirs",
        Outcome::failed(Some(1), "disk full"),
    ));
    let report = engine(fleet.clone())
        .deploy(req(&t, "1.0.0"))
        .await
        .unwrap();
    assert_eq!(
        report.outcome,
        DeploymentOutcome::PartiallyApplied,
        "{report}"
    );
    let c = calls(&fleet);
    assert_eq!(c[1].0, "file.makedirs");
    assert_eq!(c[1].1.len(), 4);
    assert_eq!(c[2].0, "file.symlink");
    assert_eq!(c[2].1, vec!["web-01", "web-03", "web-04"]);
    assert_eq!(c[3].1, vec!["web-01", "web-03", "web-04"]);
    let h = report.host("web-02").unwrap();
    assert_eq!(h.status, HostStatus::Failed);
    let f = h.failure.as_ref().unwrap();
    assert_eq!(
        (f.stage, f.fun.as_deref()),
        (Stage::PreDeploy, Some("file.makedirs"))
    );
    assert_eq!(f.reason, "retcode 1: disk full");
    assert!(report.events.iter().any(|e| matches!(&e.kind,
        EventKind::HostFailed { host, stage: Stage::PreDeploy, .. } if host.as_str() == "web-02")));
}

#[tokio::test]
async fn budget_exceeded_stops_batches_and_rolls_back_every_touched_host() {
    let t = template(6, "[rollout]\nbatch = 2\n[rollback]\npolicy = \"previous\"");
    let fleet = fleet(6);
    let engine = engine(fleet.clone());
    let first = engine.deploy(req(&t, "1.0.0")).await.unwrap();
    assert_eq!(first.outcome, DeploymentOutcome::Succeeded);
    fleet.clear_requests();
    // the second batch's first host fails its health probe
    fleet.add_rule(
        "web-03",
        "http.query",
        Outcome::failed(None, "HTTP 503"),
        None,
    );
    let report = engine.deploy(req(&t, "2.0.0")).await.unwrap();
    assert_eq!(report.outcome, DeploymentOutcome::RolledBack, "{report}");
    assert!(report
        .reason
        .as_deref()
        .unwrap()
        .contains("failure budget exceeded"));
    let c = calls(&fleet);
    // batch 3 (web-05, web-06) never started
    assert!(
        c.iter()
            .skip(1)
            .all(|(_, t)| !t.iter().any(|h| h == "web-05" || h == "web-06")),
        "{c:?}"
    );
    let rollback: Vec<_> = c
        .iter()
        .filter(|(f, _)| f == "file.symlink")
        .skip(2)
        .collect();
    let rolled: Vec<&str> = rollback
        .iter()
        .flat_map(|(_, t)| t.iter().map(String::as_str))
        .collect();
    assert_eq!(rolled, vec!["web-01", "web-02", "web-03", "web-04"]);
    for (_, targets) in &rollback {
        assert!(!targets.is_empty());
    }
    let rb_call = fleet
        .requests()
        .into_iter()
        .filter(|r| r.fun == "file.symlink")
        .last()
        .unwrap();
    assert_eq!(rb_call.call.arg[0], "/srv/shop/releases/1.0.0");
    for h in ["web-01", "web-02", "web-03", "web-04"] {
        let hr = report.host(h).unwrap();
        assert_eq!(hr.status, HostStatus::RolledBack, "{h}");
        assert_eq!(hr.rolled_back_to.as_deref(), Some("1.0.0"));
    }
    assert_eq!(report.host("web-05").unwrap().status, HostStatus::Pending);
    // the fleet state follows: rolled-back hosts run 1.0.0 again
    let v = engine
        .fleet_state()
        .versions("shop", &ids(&["web-01", "web-05"]))
        .await
        .unwrap();
    assert_eq!(v[&ids(&["web-01"])[0]].current.as_deref(), Some("1.0.0"));
    assert_eq!(v[&ids(&["web-05"])[0]].current.as_deref(), Some("1.0.0"));
}

#[tokio::test]
async fn no_return_counts_as_a_failure() {
    let t = template(3, "[rollout]\nbatch = 3");
    let fleet = Arc::new(pushguide_core::sim::SimFleet::new(hosts(3)).unwrap().on(
        "web-03",
        "file.symlink",
        Outcome::NoReturn,
    ));
    let report = engine(fleet).deploy(req(&t, "1.0.0")).await.unwrap();
    assert_eq!(report.outcome, DeploymentOutcome::Failed, "{report}");
    let f = report.host("web-03").unwrap().failure.clone().unwrap();
    assert!(f.reason.contains("no return"), "{f:?}");
    assert_eq!(report.host("web-01").unwrap().status, HostStatus::Succeeded);
}

#[tokio::test]
async fn transport_error_fails_the_whole_batch_with_the_reason() {
    let t = template(2, "[rollout]\nbatch = 2");
    let mut mock = MockTransport::new();
    mock.expect_call()
        .withf(|_, c| c.fun == "test.ping")
        .returning(|tg, _| ok_all(tg));
    mock.expect_call()
        .withf(|_, c| c.fun == "file.makedirs")
        .times(1)
        .returning(|_, _| {
            Err(pushguide_core::TransportError::new(
                pushguide_core::TransportErrorKind::Unreachable,
                "connection refused",
            ))
        });
    let report = engine(Arc::new(mock))
        .deploy(req(&t, "1.0.0"))
        .await
        .unwrap();
    assert_eq!(report.outcome, DeploymentOutcome::Failed);
    for h in &report.hosts {
        assert!(h
            .failure
            .as_ref()
            .unwrap()
            .reason
            .contains("connection refused"));
    }
}

#[tokio::test]
async fn failing_rollback_gives_rollback_failed_with_per_host_detail() {
    let t = template(2, "[rollout]\nbatch = 1\n[rollback]\npolicy = \"previous\"");
    let fleet = fleet(2);
    let engine = engine(fleet.clone());
    engine.deploy(req(&t, "1.0.0")).await.unwrap();
    fleet.add_rule(
        "web-01",
        "http.query",
        Outcome::failed(None, "HTTP 500"),
        None,
    );
    // rollback's symlink on web-01 fails; the deploy's symlink must succeed, so fail only the 2nd one
    fleet.add_rule(
        "web-01",
        "file.symlink",
        Outcome::failed(Some(2), "read-only file system"),
        None,
    );
    fleet.add_rule("web-01", "file.symlink", Outcome::ok(true), Some(1));
    let report = engine.deploy(req(&t, "2.0.0")).await.unwrap();
    assert_eq!(
        report.outcome,
        DeploymentOutcome::RollbackFailed,
        "{report}"
    );
    let h = report.host("web-01").unwrap();
    assert_eq!(h.status, HostStatus::RollbackFailed);
    assert!(h
        .rollback_failure
        .as_ref()
        .unwrap()
        .reason
        .contains("read-only"));
    assert_eq!(h.failure.as_ref().unwrap().stage, Stage::PostDeploy);
    assert_eq!(report.host("web-02").unwrap().status, HostStatus::Pending);
    assert!(report.to_string().contains("rollback (file.symlink)"));
}

#[tokio::test]
async fn first_deployment_without_previous_version_reports_hosts_it_cannot_roll_back() {
    let t = template(2, "[rollout]\nbatch = 2\n[rollback]\npolicy = \"previous\"");
    let fleet = Arc::new(pushguide_core::sim::SimFleet::new(hosts(2)).unwrap().on(
        "web-02",
        "http.query",
        Outcome::failed(None, "HTTP 500"),
    ));
    let report = engine(fleet).deploy(req(&t, "1.0.0")).await.unwrap();
    assert_eq!(report.outcome, DeploymentOutcome::RollbackFailed);
    assert_eq!(
        report.host("web-01").unwrap().status,
        HostStatus::NoRollbackTarget
    );
}

#[tokio::test]
async fn rollback_to_a_given_version() {
    let t = template(
        2,
        "[rollout]\nbatch = 2\n[rollback]\npolicy = \"version\"\nto = \"0.9.0\"",
    );
    let fleet = Arc::new(pushguide_core::sim::SimFleet::new(hosts(2)).unwrap().on(
        "web-02",
        "http.query",
        Outcome::failed(None, "HTTP 500"),
    ));
    let report = engine(fleet.clone())
        .deploy(req(&t, "1.0.0"))
        .await
        .unwrap();
    assert_eq!(report.outcome, DeploymentOutcome::RolledBack, "{report}");
    let last = fleet.requests().pop().unwrap();
    assert_eq!(last.call.arg[0], "/srv/shop/releases/0.9.0");
    assert_eq!(last.targets.len(), 2);
}

#[tokio::test]
async fn cancel_finishes_the_running_call_then_rolls_back() {
    let t = template(6, "[rollout]\nbatch = 2\n[rollback]\npolicy = \"previous\"");
    let fleet = Arc::new(
        pushguide_core::sim::SimFleet::new(hosts(6))
            .unwrap()
            .with_latency(Duration::from_millis(30)),
    );
    let engine = engine(fleet.clone());
    engine.deploy(req(&t, "1.0.0")).await.unwrap();
    fleet.clear_requests();
    let handle = engine.start(req(&t, "2.0.0")).await.unwrap();
    let mut events = handle.events();
    while let Some(e) = events.next().await {
        if let EventKind::CallStarted {
            batch: Some(1),
            stage: Stage::Deploy,
            ..
        } = e.kind
        {
            handle.cancel();
            break;
        }
    }
    let report = handle.wait().await.unwrap();
    assert_eq!(report.outcome, DeploymentOutcome::Cancelled, "{report}");
    let c = calls(&fleet);
    // the running symlink of batch 2 finished; its post-deploy and batch 3 never ran
    let after: Vec<_> = c
        .iter()
        .skip_while(|(f, t)| !(f == "file.symlink" && t[0] == "web-03"))
        .collect();
    assert_eq!(
        after[1].0, "file.symlink",
        "rollback follows at once: {c:?}"
    );
    assert!(
        !c.iter()
            .skip(1)
            .any(|(_, t)| t.contains(&"web-05".to_string())),
        "{c:?}"
    );
    assert_eq!(
        report.host("web-03").unwrap().status,
        HostStatus::RolledBack
    );
    assert_eq!(
        report.host("web-01").unwrap().status,
        HostStatus::RolledBack
    );
    assert!(report
        .events
        .iter()
        .any(|e| e.kind == EventKind::CancelRequested));
}

#[tokio::test]
async fn cancel_without_rollback_policy_leaves_hosts_interrupted() {
    let t = template(4, "[rollout]\nbatch = 2");
    let fleet = Arc::new(
        pushguide_core::sim::SimFleet::new(hosts(4))
            .unwrap()
            .with_latency(Duration::from_millis(20)),
    );
    let handle = engine(fleet.clone()).start(req(&t, "1.0.0")).await.unwrap();
    let mut events = handle.events();
    while let Some(e) = events.next().await {
        if let EventKind::CallStarted {
            stage: Stage::PreDeploy,
            ..
        } = e.kind
        {
            handle.cancel();
        }
    }
    let report = handle.wait().await.unwrap();
    assert_eq!(report.outcome, DeploymentOutcome::Cancelled);
    assert_eq!(
        report.host("web-01").unwrap().status,
        HostStatus::Interrupted
    );
    assert_eq!(report.host("web-03").unwrap().status, HostStatus::Pending);
}

#[tokio::test]
async fn two_concurrent_starts_on_one_template_second_is_busy() {
    let t = template(2, "");
    let fleet = Arc::new(
        pushguide_core::sim::SimFleet::new(hosts(2))
            .unwrap()
            .with_latency(Duration::from_millis(20)),
    );
    let engine = engine(fleet);
    let first = engine.start(req(&t, "1.0.0")).await.unwrap();
    let second = engine.start(req(&t, "1.0.1")).await.unwrap_err();
    assert!(
        matches!(&second, Error::Busy { template, holder } if template == "shop" && holder == first.id()),
        "{second}"
    );
    // a dry run does not need the lease
    engine
        .start(req(&t, "1.0.1").dry_run(true))
        .await
        .unwrap()
        .wait()
        .await
        .unwrap();
    first.wait().await.unwrap();
    // released afterwards
    engine.deploy(req(&t, "1.0.1")).await.unwrap();
}

#[tokio::test]
async fn dry_run_sends_no_mutating_call_and_records_them() {
    let t = template(5, "[rollout]\nbatch = 2");
    let fleet = fleet(5);
    let report = engine(fleet.clone())
        .deploy(req(&t, "1.0.0").dry_run(true))
        .await
        .unwrap();
    assert_eq!(report.outcome, DeploymentOutcome::Succeeded);
    assert!(fleet
        .requests()
        .iter()
        .all(|r| r.effect == Effect::ReadOnly));
    assert!(!fleet.requests().is_empty());
    assert_eq!(report.unsent_calls().count(), 6);
    assert!(report.unsent_calls().all(|c| c.call.is_mutating()));
    assert!(report
        .host_log("web-01")
        .iter()
        .any(|l| l.contains("recorded (dry run)")));
}

#[tokio::test]
async fn hostile_inputs_are_rejected_before_any_call() {
    let t = template(2, "");
    let fleet = fleet(2);
    let engine = engine(fleet.clone());
    for bad in [
        "1.0;reboot",
        "$(id)",
        "../../etc/passwd",
        "1.0\n",
        "",
        "v 1",
    ] {
        let err = engine.start(req(&t, bad)).await.unwrap_err();
        assert!(
            matches!(err, Error::Invalid { ref field, .. } if field == "version"),
            "{err}"
        );
    }
    let err = engine
        .start(req(&t, "1.0").hosts(["web-01;id"]))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("hosts[0]"), "{err}");
    let err = engine
        .deploy(req(&t, "1.0").hosts(["web-09"]))
        .await
        .unwrap();
    assert_eq!(err.outcome, DeploymentOutcome::Failed);
    assert!(err.reason.unwrap().contains("not a target"));
    assert_eq!(fleet.requests().len(), 0);
}

#[tokio::test]
async fn forbidden_user_gets_a_typed_error_and_no_call() {
    let t = template(2, "[acl.viewers]\nusers = [\"bob\"]");
    let fleet = fleet(2);
    let engine = engine(fleet.clone());
    let bob = pushguide_core::Principal::user("bob");
    let err = engine
        .start(pushguide_core::Request::new(t.clone(), "1.0", bob.clone()))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Forbidden {
                action: pushguide_core::Action::Deploy,
                ..
            }
        ),
        "{err}"
    );
    // bob may view, so he may plan
    engine
        .plan(&pushguide_core::Request::new(t.clone(), "1.0", bob))
        .await
        .unwrap();
    let eve = pushguide_core::Principal::user("eve").in_group("devs");
    let err = engine
        .plan(&pushguide_core::Request::new(t.clone(), "1.0", eve))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        Error::Forbidden {
            action: pushguide_core::Action::View,
            ..
        }
    ));
    assert_eq!(
        err.to_string(),
        "user `eve` may not view template `shop`",
        "the action reads as a verb"
    );
    let ops = pushguide_core::Principal::user("carol").in_group("ops");
    assert!(engine
        .start(pushguide_core::Request::new(t, "1.0", ops.clone()))
        .await
        .is_err());
    assert_eq!(fleet.requests().len(), 1, "only bob's plan pinged");
    // group membership grants deploy
    let text = "name = \"grp\"\n[acl.deployers]\ngroups = [\"ops\"]\n[targets]\nminions = [\"web-01\"]\n[project]\nkind = \"test-app\"\nroot = \"/srv/g\"\n";
    let t = Arc::new(pushguide_core::Template::from_toml_str(text, "<t>").unwrap());
    let report = engine
        .deploy(pushguide_core::Request::new(t, "1.0", ops))
        .await
        .unwrap();
    assert_eq!(report.outcome, DeploymentOutcome::Succeeded);
}

#[tokio::test]
async fn pause_then_retry_the_failed_stage() {
    let t = template(4, "[rollout]\nbatch = 2\n[failure]\non_failure = \"pause\"");
    let fleet = Arc::new(
        pushguide_core::sim::SimFleet::new(hosts(4))
            .unwrap()
            .on_times(
                "web-02",
                "file.symlink",
                Outcome::failed(Some(1), "busy"),
                1,
            ),
    );
    let handle = engine(fleet.clone()).start(req(&t, "1.0.0")).await.unwrap();
    let mut events = handle.events();
    while let Some(e) = events.next().await {
        if let EventKind::DecisionNeeded {
            batch,
            stage,
            failed,
        } = &e.kind
        {
            assert_eq!((*batch, *stage), (0, Stage::Deploy));
            assert_eq!(failed.len(), 1);
            handle.decide(Decision::Abort).unwrap();
            break;
        }
    }
    let report = handle.wait().await.unwrap();
    // abort (no rollback): batch 1's web-01 had not finished, so nothing succeeded
    assert_eq!(report.outcome, DeploymentOutcome::Failed, "{report}");

    // again, and retry this time
    let fleet = Arc::new(
        pushguide_core::sim::SimFleet::new(hosts(4))
            .unwrap()
            .on_times(
                "web-02",
                "file.symlink",
                Outcome::failed(Some(1), "busy"),
                1,
            ),
    );
    let handle = engine(fleet.clone()).start(req(&t, "1.0.0")).await.unwrap();
    let mut events = handle.events();
    while let Some(e) = events.next().await {
        if let EventKind::DecisionNeeded { .. } = e.kind {
            handle.decide(Decision::Retry).unwrap();
        }
    }
    let report = handle.wait().await.unwrap();
    assert_eq!(report.outcome, DeploymentOutcome::Succeeded, "{report}");
    let c = calls(&fleet);
    assert_eq!(
        c[3],
        ("file.symlink".into(), vec!["web-02".to_string()]),
        "{c:?}"
    );
    assert_eq!(c[4].1, vec!["web-01", "web-02"], "post-deploy for both");
}

#[tokio::test]
async fn pause_then_exclude_goes_on_and_rollback_decision_rolls_back() {
    let t = template(4, "[rollout]\nbatch = 2\n[failure]\non_failure = \"pause\"");
    let fleet = Arc::new(pushguide_core::sim::SimFleet::new(hosts(4)).unwrap().on(
        "web-02",
        "file.makedirs",
        Outcome::failed(Some(1), "disk full"),
    ));
    let handle = engine(fleet.clone()).start(req(&t, "1.0.0")).await.unwrap();
    assert!(matches!(
        handle.decide(Decision::Retry),
        Err(Error::NoDecisionPending(_))
    ));
    let mut events = handle.events();
    while let Some(e) = events.next().await {
        if let EventKind::DecisionNeeded { .. } = e.kind {
            handle.decide(Decision::Exclude).unwrap();
        }
    }
    let report = handle.wait().await.unwrap();
    assert_eq!(
        report.outcome,
        DeploymentOutcome::PartiallyApplied,
        "{report}"
    );
    assert_eq!(report.host("web-02").unwrap().status, HostStatus::Excluded);
    assert_eq!(report.hosts_with(HostStatus::Succeeded).len(), 3);

    let engine2 = engine(fleet.clone());
    seed(&engine2, &["web-01", "web-02", "web-03", "web-04"], "0.9.0").await;
    let handle = engine2.start(req(&t, "1.0.0")).await.unwrap();
    let mut events = handle.events();
    while let Some(e) = events.next().await {
        if let EventKind::DecisionNeeded { .. } = e.kind {
            handle.decide(Decision::Rollback).unwrap();
        }
    }
    let report = handle.wait().await.unwrap();
    assert_eq!(report.outcome, DeploymentOutcome::RolledBack, "{report}");
    assert_eq!(
        report.host("web-01").unwrap().rolled_back_to.as_deref(),
        Some("0.9.0")
    );
    assert_eq!(report.host("web-03").unwrap().status, HostStatus::Pending);
}

#[tokio::test]
async fn events_are_ordered_and_replayed_to_late_subscribers() {
    let t = template(2, "[rollout]\nbatch = 1");
    let handle = engine(fleet(2)).start(req(&t, "1.0.0")).await.unwrap();
    let mut early = handle.events();
    let mut seen = Vec::new();
    while let Some(e) = early.next().await {
        seen.push(e);
    }
    let mut late = handle.events();
    let mut replay = Vec::new();
    while let Some(e) = late.next().await {
        replay.push(e);
    }
    let report = handle.wait().await.unwrap();
    assert_eq!(seen, report.events);
    assert_eq!(replay, report.events);
    let k = kinds(&seen);
    assert!(matches!(k[0], EventKind::DeploymentStarted { .. }));
    assert!(matches!(
        k.last().unwrap(),
        EventKind::DeploymentFinished {
            outcome: DeploymentOutcome::Succeeded
        }
    ));
    let batches = k
        .iter()
        .filter(|e| matches!(e, EventKind::BatchStarted { .. }))
        .count();
    assert_eq!(batches, 2);
    assert!(seen.windows(2).all(|w| w[0].at <= w[1].at));
    assert_eq!(
        k.iter()
            .filter(|e| matches!(e, EventKind::HostSucceeded { .. }))
            .count(),
        2
    );
}

#[tokio::test]
async fn plan_lists_batches_steps_and_rollback_targets_without_changing_anything() {
    let t = template(
        5,
        "[rollout]\nbatch = 2\ncanary = true\n[rollback]\npolicy = \"previous\"",
    );
    let fleet = fleet(5);
    let engine = engine(fleet.clone());
    seed(&engine, &["web-01", "web-02"], "1.0.0").await;
    let plan = engine.plan(&req(&t, "2.0.0")).await.unwrap();
    assert_eq!(
        plan.batches.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![1, 2, 2]
    );
    assert!(fleet
        .requests()
        .iter()
        .all(|r| r.effect == Effect::ReadOnly));
    let text = plan.to_string();
    assert!(
        text.contains("deploy: [change] file.symlink \"/srv/shop/releases/2.0.0\""),
        "{text}"
    );
    assert!(
        text.contains("running 1.0.0, back to 1.0.0: web-01, web-02"),
        "{text}"
    );
    assert!(
        text.contains("back to none (no recorded version): web-03"),
        "{text}"
    );
    assert!(text.contains("batch 1: web-01\n"), "{text}");
}

#[tokio::test]
async fn preflight_failures_beyond_budget_stop_before_any_change() {
    let t = template(3, "");
    let fleet = Arc::new(
        pushguide_core::sim::SimFleet::new(hosts(3))
            .unwrap()
            .down("web-02"),
    );
    let report = engine(fleet.clone())
        .deploy(req(&t, "1.0.0"))
        .await
        .unwrap();
    assert_eq!(report.outcome, DeploymentOutcome::Failed);
    assert!(report.reason.unwrap().contains("nothing was changed"));
    assert_eq!(fleet.requests().len(), 1);
    // with a budget of one, the down host is left out and the others deploy
    let t = template(3, "[failure]\nmax_failed = 1");
    let report = engine(fleet.clone())
        .deploy(req(&t, "1.0.0"))
        .await
        .unwrap();
    assert_eq!(report.outcome, DeploymentOutcome::PartiallyApplied);
    assert_eq!(
        report
            .host("web-02")
            .unwrap()
            .failure
            .as_ref()
            .unwrap()
            .stage,
        Stage::Prepare
    );
}

#[tokio::test]
async fn glob_targets_resolve_through_the_transport() {
    let text = "name = \"g\"\n[acl.deployers]\nusers = [\"alice\"]\n[targets]\nexpression = \"web-0*\"\n[project]\nkind = \"test-app\"\nroot = \"/srv/g\"\n";
    let t = Arc::new(pushguide_core::Template::from_toml_str(text, "<t>").unwrap());
    let fleet = fleet(12);
    let report = engine(fleet).deploy(req(&t, "1.0")).await.unwrap();
    assert_eq!(report.hosts.len(), 9);
}

#[tokio::test]
async fn explicit_rollback_to_a_version_or_to_each_hosts_previous() {
    let t = template(4, "[rollout]\nbatch = 2");
    let fleet = fleet(4);
    let engine = engine(fleet.clone());
    engine.deploy(req(&t, "1.0.0")).await.unwrap();
    engine.deploy(req(&t, "2.0.0")).await.unwrap();
    engine
        .deploy(req(&t, "3.0.0").hosts(["web-01"]))
        .await
        .unwrap();
    fleet.clear_requests();

    // each host to its previous version: web-01 → 2.0.0, the others → 1.0.0
    let report = engine
        .deploy(pushguide_core::Request::rollback(t.clone(), None, alice()))
        .await
        .unwrap();
    assert_eq!(report.outcome, DeploymentOutcome::RolledBack, "{report}");
    assert_eq!(
        report.host("web-01").unwrap().rolled_back_to.as_deref(),
        Some("2.0.0")
    );
    assert_eq!(
        report.host("web-04").unwrap().rolled_back_to.as_deref(),
        Some("1.0.0")
    );
    let c = calls(&fleet);
    assert_eq!(c[0].0, "test.ping");
    assert!(c.iter().skip(1).all(|(f, _)| f == "file.symlink"), "{c:?}");
    assert!(
        !c.iter().any(|(f, _)| f == "file.makedirs"),
        "no prepare/deploy hooks ran"
    );

    // every host to 1.0.0 explicitly
    let report = engine
        .deploy(pushguide_core::Request::rollback(
            t.clone(),
            Some("1.0.0".into()),
            alice(),
        ))
        .await
        .unwrap();
    assert_eq!(report.outcome, DeploymentOutcome::RolledBack);
    let v = engine
        .fleet_state()
        .versions("shop", &ids(&["web-01"]))
        .await
        .unwrap();
    assert_eq!(v[&ids(&["web-01"])[0]].current.as_deref(), Some("1.0.0"));

    // a hostile target version is rejected before any call
    fleet.clear_requests();
    let err = engine
        .start(pushguide_core::Request::rollback(
            t.clone(),
            Some("1.0;id".into()),
            alice(),
        ))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("version"), "{err}");
    assert!(fleet.requests().is_empty());
}

#[tokio::test]
async fn rollback_without_history_reports_hosts_without_a_target() {
    let t = template(2, "");
    let report = engine(fleet(2))
        .deploy(pushguide_core::Request::rollback(t, None, alice()))
        .await
        .unwrap();
    // nothing recorded to roll back to is not a failure of a requested rollback
    assert_eq!(report.outcome, DeploymentOutcome::RolledBack, "{report}");
    assert_eq!(report.hosts_with(HostStatus::NoRollbackTarget).len(), 2);
    assert!(report
        .reason
        .as_deref()
        .unwrap()
        .contains("2 hosts without a rollback target left as they are"));
}

#[derive(Debug, Default)]
struct MemoryHistory {
    events: std::sync::Mutex<Vec<pushguide_core::Event>>,
    reports: std::sync::Mutex<Vec<String>>,
    fail: bool,
}

#[pushguide_core::async_trait]
impl pushguide_core::HistoryStore for MemoryHistory {
    async fn append(&self, events: &[pushguide_core::Event]) -> Result<(), Error> {
        if self.fail {
            return Err(Error::StoreFailed {
                during: "appending to the journal",
                source: "disk full".into(),
            });
        }
        self.events.lock().unwrap().extend_from_slice(events);
        Ok(())
    }
    async fn finish(&self, report: &pushguide_core::Report) -> Result<(), Error> {
        self.reports.lock().unwrap().push(report.id.clone());
        Ok(())
    }
}

#[tokio::test]
async fn history_receives_every_event_in_order_then_the_report() {
    let t = template(3, "[rollout]\nbatch = 1");
    let store = Arc::new(MemoryHistory::default());
    let engine = pushguide_core::Engine::builder(fleet(3))
        .history(store.clone())
        .build();
    let report = engine.deploy(req(&t, "1.0.0")).await.unwrap();
    assert_eq!(report.history_error, None);
    assert_eq!(*store.events.lock().unwrap(), report.events);
    assert_eq!(*store.reports.lock().unwrap(), vec![report.id.clone()]);

    let failing = Arc::new(MemoryHistory {
        fail: true,
        ..Default::default()
    });
    let sim = fleet(3);
    let engine = pushguide_core::Engine::builder(sim.clone())
        .history(failing.clone())
        .build();
    let report = engine.deploy(req(&t, "1.0.0")).await.unwrap();
    // a journal that cannot record the first batch's start: no host is touched
    assert_eq!(report.outcome, DeploymentOutcome::Failed, "{report}");
    assert!(
        report
            .reason
            .as_deref()
            .unwrap()
            .contains("journal cannot record"),
        "{report}"
    );
    assert!(
        calls(&sim).iter().all(|(f, _)| f == "test.ping"),
        "{:?}",
        calls(&sim)
    );
    assert!(report
        .history_error
        .as_deref()
        .unwrap()
        .contains("disk full"));
    assert!(report.to_string().contains("NOT fully recorded in history"));
    assert!(
        failing.reports.lock().unwrap().is_empty(),
        "no report after a gap"
    );
}

#[tokio::test]
async fn preflight_exclude_leaves_down_hosts_out_and_records_their_state() {
    let t = template(3, "[preflight]\non_down = \"exclude\"");
    let fleet = Arc::new(
        pushguide_core::sim::SimFleet::new(hosts(3))
            .unwrap()
            .down("web-02"),
    );
    let status = Arc::new(pushguide_core::MemoryMinionStatus::default());
    let engine = pushguide_core::Engine::builder(fleet.clone())
        .minion_status(status.clone())
        .build();
    let plan = engine.plan(&req(&t, "1.0.0")).await.unwrap();
    assert!(
        plan.to_string()
            .contains("excluded web-02: test.ping: no return"),
        "{plan}"
    );
    fleet.clear_requests();
    let report = engine.deploy(req(&t, "1.0.0")).await.unwrap();
    assert_eq!(
        report.outcome,
        DeploymentOutcome::PartiallyApplied,
        "{report}"
    );
    assert_eq!(report.host("web-02").unwrap().status, HostStatus::Excluded);
    assert_eq!(report.hosts_with(HostStatus::Succeeded).len(), 2);
    assert!(fleet
        .requests()
        .iter()
        .skip(1)
        .all(|r| !r.targets.iter().any(|m| m.as_str() == "web-02")));
    let st = pushguide_core::MinionStatusStore::status(&*status, &ids(&["web-01", "web-02"]))
        .await
        .unwrap();
    assert!(st[0].up && !st[1].up);
    assert!(st[0].last_seen.is_some() && st[1].last_seen.is_none());

    // every host down: nothing to deploy is a failure, not a success
    let all_down = Arc::new(pushguide_core::sim::SimFleet::new(hosts(3)).unwrap().on(
        "*",
        "test.ping",
        Outcome::NoReturn,
    ));
    let report = engine_for(all_down).deploy(req(&t, "1.0.0")).await.unwrap();
    assert_eq!(report.outcome, DeploymentOutcome::Failed, "{report}");
    assert!(report.reason.unwrap().contains("no host left"));
}

fn engine_for(f: Arc<pushguide_core::sim::SimFleet>) -> pushguide_core::Engine {
    pushguide_core::Engine::builder(f).build()
}

#[tokio::test]
async fn monitor_records_state_and_reports_changes() {
    use pushguide_core::{MinionStatusStore, Monitor};
    let fleet = fleet(3);
    let store = Arc::new(pushguide_core::MemoryMinionStatus::default());
    let monitor = Monitor::new(fleet.clone(), store.clone(), Duration::from_secs(5));
    let all = ids(&["web-01", "web-02", "web-03"]);
    let first = monitor.check_once(&all).await.unwrap();
    assert_eq!(first.len(), 3, "first sight of every minion");
    assert!(first.iter().all(|c| c.up && c.was_up.is_none()));
    assert_eq!(fleet.requests().len(), 1, "one request for all minions");
    assert!(
        monitor.check_once(&all).await.unwrap().is_empty(),
        "no change"
    );

    let mut changes = monitor.changes();
    fleet.add_rule("web-03", "test.ping", Outcome::NoReturn, None);
    let c = monitor.check_once(&all).await.unwrap();
    assert_eq!(c.len(), 1);
    assert_eq!(
        (c[0].minion.as_str(), c[0].up, c[0].was_up),
        ("web-03", false, Some(true))
    );
    assert_eq!(changes.recv().await.unwrap().minion.as_str(), "web-03");
    let s = store.status(&all).await.unwrap();
    assert!(!s[2].up && s[2].last_seen.is_some() && s[2].since >= s[2].last_seen.unwrap());

    // the periodic loop keeps checking until stopped
    fleet.clear_rules();
    fleet.clear_requests();
    let handle = monitor.spawn(Duration::from_millis(20), move || all.clone());
    tokio::time::sleep(Duration::from_millis(110)).await;
    handle.stop().await;
    let n = fleet.requests().len();
    assert!(n >= 3, "{n} checks");
    assert!(
        store.status(&ids(&["web-03"])).await.unwrap()[0].up,
        "web-03 came back"
    );
}

/// Leases whose `check` fails from the `fail_from`-th check on (counting from 0), as when another
/// process took an expired lease over.
#[derive(Debug, Default)]
struct LosingLeases {
    inner: pushguide_core::MemoryLeases,
    checks: std::sync::atomic::AtomicUsize,
    fail_from: std::sync::atomic::AtomicUsize,
}

#[pushguide_core::async_trait]
impl pushguide_core::LeaseManager for LosingLeases {
    async fn acquire(&self, template: &str, holder: &str) -> Result<pushguide_core::Lease, Error> {
        self.inner.acquire(template, holder).await
    }
    async fn release(&self, lease: &pushguide_core::Lease) -> Result<(), Error> {
        self.inner.release(lease).await
    }
    async fn check(&self, lease: &pushguide_core::Lease) -> Result<(), Error> {
        use std::sync::atomic::Ordering::SeqCst;
        if self.checks.fetch_add(1, SeqCst) >= self.fail_from.load(SeqCst) {
            return Err(Error::LeaseLost {
                template: lease.template.clone(),
                holder: lease.holder.clone(),
                reason: "deployment other-1 holds it now".into(),
            });
        }
        self.inner.check(lease).await
    }
}

fn losing_engine(
    fleet: Arc<pushguide_core::sim::SimFleet>,
) -> (pushguide_core::Engine, Arc<LosingLeases>) {
    let leases = Arc::new(LosingLeases {
        fail_from: usize::MAX.into(),
        ..LosingLeases::default()
    });
    let engine = pushguide_core::Engine::builder(fleet)
        .leases(leases.clone())
        .build();
    (engine, leases)
}

#[tokio::test]
async fn a_lost_lease_stops_the_release_before_the_next_batch_without_rolling_back() {
    use std::sync::atomic::Ordering::SeqCst;
    let t = template(6, "[rollout]\nbatch = 2\n[rollback]\npolicy = \"previous\"");
    let fleet = fleet(6);
    let (engine, leases) = losing_engine(fleet.clone());
    let first = engine.deploy(req(&t, "1.0.0")).await.unwrap();
    assert_eq!(first.outcome, DeploymentOutcome::Succeeded);
    assert_eq!(leases.checks.load(SeqCst), 3, "one check per batch");
    // the second deployment holds the lease for its first batch only
    leases.fail_from.store(4, SeqCst);
    fleet.clear_requests();
    let report = engine.deploy(req(&t, "2.0.0")).await.unwrap();
    assert_eq!(report.outcome, DeploymentOutcome::Failed, "{report}");
    let reason = report.reason.clone().unwrap();
    assert!(
        reason.contains("before batch 1") && reason.contains("other-1 holds it"),
        "{reason}"
    );
    let c = calls(&fleet);
    assert!(
        c.iter().skip(1).all(|(_, t)| t == &["web-01", "web-02"]),
        "only batch 0 was touched, nothing rolled back: {c:?}"
    );
    assert_eq!(report.host("web-01").unwrap().status, HostStatus::Succeeded);
    assert_ne!(
        report.host("web-03").unwrap().status,
        HostStatus::RolledBack
    );
    // the lease is given back all the same
    use pushguide_core::LeaseManager as _;
    leases.inner.acquire("shop", "after").await.unwrap();
}

#[tokio::test]
async fn a_lost_lease_stops_an_automatic_rollback_and_names_the_hosts_left() {
    use std::sync::atomic::Ordering::SeqCst;
    let t = template(
        4,
        "[rollout]\nbatch = 2\n[failure]\nmax_failed = 0\n[rollback]\npolicy = \"previous\"",
    );
    let fleet = fleet(4);
    let (engine, leases) = losing_engine(fleet.clone());
    engine.deploy(req(&t, "1.0.0")).await.unwrap();
    fleet.add_rule(
        "web-04",
        "http.query",
        Outcome::failed(None, "HTTP 500"),
        None,
    );
    // 2 checks so far; batches 0 and 1 of 2.0.0 pass theirs, the rollback's first check fails
    leases.fail_from.store(4, SeqCst);
    fleet.clear_requests();
    let report = engine.deploy(req(&t, "2.0.0")).await.unwrap();
    assert_eq!(
        report.outcome,
        DeploymentOutcome::RollbackFailed,
        "{report}"
    );
    for h in ["web-01", "web-02", "web-03"] {
        let host = report.host(h).unwrap();
        assert_eq!(host.status, HostStatus::RollbackFailed, "{h}");
    }
    assert!(report
        .host_log("web-01")
        .iter()
        .any(|l| l.contains("not rolled back") && l.contains("lost the lease")));
    let symlinks = calls(&fleet)
        .into_iter()
        .filter(|(f, _)| f == "file.symlink")
        .count();
    assert_eq!(symlinks, 2, "one per batch of 2.0.0, none to roll back");
}

/// Fleet state whose writes fail.
#[derive(Debug, Default)]
struct UnwritableFleet(pushguide_core::MemoryFleetState);

#[pushguide_core::async_trait]
impl pushguide_core::FleetState for UnwritableFleet {
    async fn versions(
        &self,
        template: &str,
        hosts: &[MinionId],
    ) -> Result<std::collections::HashMap<MinionId, pushguide_core::HostHistory>, Error> {
        self.0.versions(template, hosts).await
    }
    async fn record(
        &self,
        _lease: &pushguide_core::Lease,
        _hosts: &[MinionId],
        _change: &pushguide_core::HostChange,
    ) -> Result<(), Error> {
        Err(Error::StoreFailed {
            during: "recording fleet state",
            source: "/var/lib/pushguide/state.db: database is locked".into(),
        })
    }
}

#[tokio::test]
async fn a_batch_whose_versions_cannot_be_recorded_stops_the_release() {
    let t = template(4, "[rollout]\nbatch = 2\n[rollback]\npolicy = \"previous\"");
    let fleet = fleet(4);
    let engine = pushguide_core::Engine::builder(fleet.clone())
        .fleet_state(Arc::new(UnwritableFleet::default()))
        .build();
    let report = engine.deploy(req(&t, "1.0.0")).await.unwrap();
    assert_eq!(report.outcome, DeploymentOutcome::Failed, "{report}");
    let reason = report.reason.as_deref().unwrap();
    assert!(
        reason.contains("after batch 0") && reason.contains("database is locked"),
        "{reason}"
    );
    // the second batch was never touched
    assert!(calls(&fleet)
        .iter()
        .filter(|(f, _)| f != "test.ping")
        .all(|(_, t)| !t.iter().any(|h| h == "web-03" || h == "web-04")));
    assert_eq!(report.host("web-03").unwrap().status, HostStatus::Pending);
}

/// A project type handed to the engine as a value, never registered through typetag/inventory: its
/// deploy sends `deploy`; with `staging`, it stages ahead with that call.
#[derive(Debug)]
struct Scripted {
    staging: Option<&'static str>,
    deploy: &'static str,
}

#[async_trait::async_trait]
impl pushguide_core::Deployer for Scripted {
    fn stages_ahead(&self) -> bool {
        self.staging.is_some()
    }
    async fn stage(
        &self,
        cx: &mut pushguide_core::StageContext<'_>,
    ) -> Result<(), pushguide_core::StageError> {
        if let Some(fun) = self.staging {
            cx.call(pushguide_core::SaltCall::mutate(fun).arg("http://ci/app.war"))
                .await?;
        }
        Ok(())
    }
    async fn deploy(
        &self,
        cx: &mut pushguide_core::StageContext<'_>,
    ) -> Result<(), pushguide_core::StageError> {
        cx.call(pushguide_core::SaltCall::mutate(self.deploy).arg("/srv/app"))
            .await?;
        Ok(())
    }
    async fn rollback(
        &self,
        _cx: &mut pushguide_core::StageContext<'_>,
    ) -> Result<(), pushguide_core::StageError> {
        Ok(())
    }
}

#[tokio::test]
async fn a_deployer_value_replaces_the_one_the_template_config_builds() {
    let t = template(2, "");
    let fleet = fleet(2);
    let engine = engine(fleet.clone());
    let report = engine
        .deploy(req(&t, "1.0").deployer(Arc::new(Scripted {
            staging: None,
            deploy: "cmd.run",
        })))
        .await
        .unwrap();
    assert_eq!(report.outcome, pushguide_core::DeploymentOutcome::Succeeded);
    let funs: Vec<String> = calls(&fleet).into_iter().map(|(f, _)| f).collect();
    assert!(funs.contains(&"cmd.run".to_owned()), "{funs:?}");
    assert!(
        !funs.contains(&"file.symlink".to_owned()),
        "the template's own kind ran: {funs:?}"
    );
    // and the next deployment without it runs the template's kind again
    engine.deploy(req(&t, "1.1")).await.unwrap();
    let funs: Vec<String> = calls(&fleet).into_iter().map(|(f, _)| f).collect();
    assert!(funs.contains(&"file.symlink".to_owned()), "{funs:?}");
}

#[test]
fn a_rollback_says_in_its_type_where_hosts_go() {
    use pushguide_core::{Mode, Request, RollbackTo};
    let t = template(1, "");
    let previous = Request::rollback(t.clone(), None, alice());
    assert_eq!(
        previous.mode,
        Mode::Rollback {
            to: RollbackTo::Previous
        }
    );
    assert_eq!(previous.version, "previous", "the history's label");
    let to = Request::rollback(t.clone(), Some("1.0".into()), alice());
    assert_eq!(
        to.mode,
        Mode::Rollback {
            to: RollbackTo::Version("1.0".into())
        }
    );
    assert_eq!(to.version, "1.0");
    let undo = Request::rollback(t.clone(), None, alice()).undo("3.0");
    assert_eq!(
        undo.mode,
        Mode::Rollback {
            to: RollbackTo::Undo("3.0".into())
        }
    );
    // a deploy request that is asked to undo a release becomes a rollback
    let undo = req(&t, "4.0").undo("3.0");
    assert!(matches!(undo.mode, Mode::Rollback { .. }));
    assert_eq!(undo.version, "previous");
}

/// Answers every `file.touch` only once `n` of them are in flight together: calls sent one after
/// another never get there.
#[derive(Debug)]
struct AllAtOnce {
    together: tokio::sync::Barrier,
}

#[async_trait::async_trait]
impl pushguide_core::Transport for AllAtOnce {
    async fn call(
        &self,
        targets: &[MinionId],
        call: &pushguide_core::SaltCall,
    ) -> Result<Returns, pushguide_core::TransportError> {
        if call.fun == "file.touch" {
            self.together.wait().await;
        }
        ok_all(targets)
    }
}

/// A kind whose deploy step differs per host (its own path each): one call per host.
#[derive(Debug)]
struct PerHostPaths;

#[async_trait::async_trait]
impl pushguide_core::Deployer for PerHostPaths {
    async fn deploy(
        &self,
        cx: &mut pushguide_core::StageContext<'_>,
    ) -> Result<(), pushguide_core::StageError> {
        let r = pushguide_core::steps::call_grouped(
            cx,
            |h| format!("/srv/{h}/current"),
            |path| pushguide_core::SaltCall::mutate("file.touch").arg(path.as_str()),
        )
        .await?;
        pushguide_core::steps::expect_true(cx, &r, "file.touch");
        Ok(())
    }
    async fn rollback(
        &self,
        _cx: &mut pushguide_core::StageContext<'_>,
    ) -> Result<(), pushguide_core::StageError> {
        Ok(())
    }
}

#[tokio::test]
async fn calls_that_differ_per_host_are_in_flight_together() {
    let t = template(3, "[rollout]\nbatch = 3");
    let transport = Arc::new(AllAtOnce {
        together: tokio::sync::Barrier::new(3),
    });
    let engine = engine(transport);
    let report = tokio::time::timeout(
        Duration::from_secs(10),
        engine.deploy(req(&t, "1.0").deployer(Arc::new(PerHostPaths))),
    )
    .await
    .expect("the three per-host calls were sent together, not one after another")
    .unwrap();
    assert_eq!(report.outcome, DeploymentOutcome::Succeeded, "{report}");
    let touches: Vec<_> = report
        .calls
        .iter()
        .filter(|c| c.call.fun == "file.touch")
        .collect();
    assert_eq!(touches.len(), 3, "one call per host");
    // each host's log names its own call
    for h in ["web-01", "web-02", "web-03"] {
        let host = report.host(h).unwrap();
        assert_eq!(host.status, HostStatus::Succeeded);
    }
}

/// A kind that stages its release ahead: `cp.get_url` at staging, `file.symlink` at deploy.
const STAGED: Scripted = Scripted {
    staging: Some("cp.get_url"),
    deploy: "file.symlink",
};

fn staged(t: &Arc<pushguide_core::Template>, version: &str) -> pushguide_core::Request {
    req(t, version).deployer(Arc::new(STAGED))
}

#[tokio::test]
async fn staging_runs_once_on_every_host_before_the_first_batch() {
    let t = template(4, "[rollout]\nbatch = 2");
    let fleet = fleet(4);
    let engine = engine(fleet.clone());
    let report = engine.deploy(staged(&t, "1.0")).await.unwrap();
    assert_eq!(report.outcome, DeploymentOutcome::Succeeded, "{report}");
    let c = calls(&fleet);
    assert_eq!(c[0].0, "test.ping");
    assert_eq!(c[1].0, "cp.get_url");
    assert_eq!(c[1].1.len(), 4, "one request for every host: {c:?}");
    assert_eq!(
        c.iter().filter(|(f, _)| f == "cp.get_url").count(),
        1,
        "staged once, not per batch: {c:?}"
    );
    assert_eq!(c.iter().filter(|(f, _)| f == "file.symlink").count(), 2);
    // staging is its own stage in the journal, before the first batch
    let kinds = kinds(&report.events);
    let staging = kinds
        .iter()
        .position(|k| {
            matches!(
                k,
                EventKind::StageStarted {
                    stage: Stage::Staging,
                    batch: None,
                    hosts: 4
                }
            )
        })
        .expect("a staging stage");
    let first_batch = kinds
        .iter()
        .position(|k| matches!(k, EventKind::BatchStarted { batch: 0, .. }))
        .unwrap();
    assert!(staging < first_batch);
    // the next release stages again, and a rollback never stages
    engine.deploy(staged(&t, "1.1")).await.unwrap();
    let before = calls(&fleet).len();
    let rollback =
        pushguide_core::Request::rollback(t.clone(), None, alice()).deployer(Arc::new(STAGED));
    engine.deploy(rollback).await.unwrap();
    assert!(calls(&fleet)[before..]
        .iter()
        .all(|(f, _)| f != "cp.get_url"));
}

#[tokio::test]
async fn a_host_failing_staging_fails_before_any_host_is_touched() {
    let fail = || Outcome::failed(Some(1), "disk full");
    // within the budget: the host leaves its batch, the others deploy
    let t = template(4, "[rollout]\nbatch = 2\n[failure]\nmax_failed = 1");
    let fleet = Arc::new(pushguide_core::sim::SimFleet::new(hosts(4)).unwrap().on(
        "web-03",
        "cp.get_url",
        fail(),
    ));
    let engine = engine(fleet.clone());
    let report = engine.deploy(staged(&t, "1.0")).await.unwrap();
    assert_eq!(
        report.outcome,
        DeploymentOutcome::PartiallyApplied,
        "{report}"
    );
    let h = report.host("web-03").unwrap();
    assert_eq!(h.status, HostStatus::Failed);
    assert_eq!(h.failure.as_ref().unwrap().stage, Stage::Staging);
    let symlinked: Vec<String> = calls(&fleet)
        .into_iter()
        .filter(|(f, _)| f == "file.symlink")
        .flat_map(|(_, t)| t)
        .collect();
    assert_eq!(symlinked, ["web-01", "web-02", "web-04"]);
    let versions = engine
        .fleet_state()
        .versions("shop", &ids(&["web-03"]))
        .await
        .unwrap();
    assert!(
        versions
            .get(&ids(&["web-03"])[0])
            .is_none_or(|v| v.current.is_none()),
        "web-03 runs what it ran: {versions:?}"
    );

    // over the budget: nothing is touched at all
    let t = template(4, "[rollout]\nbatch = 2");
    let fleet = Arc::new(pushguide_core::sim::SimFleet::new(hosts(4)).unwrap().on(
        "web-03",
        "cp.get_url",
        fail(),
    ));
    let report = support::engine(fleet.clone())
        .deploy(staged(&t, "1.0"))
        .await
        .unwrap();
    assert_eq!(report.outcome, DeploymentOutcome::Failed, "{report}");
    assert!(
        report.reason.as_deref().unwrap().contains("staging"),
        "{report}"
    );
    assert!(calls(&fleet).iter().all(|(f, _)| f != "file.symlink"));
}

#[tokio::test]
async fn stage_ahead_off_leaves_staging_out_and_plans_show_it() {
    let fleet = fleet(4);
    let engine = engine(fleet.clone());
    let on = template(4, "[rollout]\nbatch = 2");
    let plan = engine.plan(&staged(&on, "1.0")).await.unwrap();
    assert_eq!(plan.steps[0].0, Stage::Staging, "{plan}");
    assert_eq!(plan.steps[0].1[0].fun, "cp.get_url");
    assert!(plan.to_string().contains("staging"), "{plan}");

    let off = template(4, "[rollout]\nbatch = 2\nstage_ahead = false");
    let plan = engine.plan(&staged(&off, "1.0")).await.unwrap();
    assert!(plan.steps.iter().all(|(s, _)| *s != Stage::Staging));
    let report = engine.deploy(staged(&off, "1.0")).await.unwrap();
    assert_eq!(report.outcome, DeploymentOutcome::Succeeded);
    assert!(calls(&fleet).iter().all(|(f, _)| f != "cp.get_url"));
    // a kind that does not stage never gets a staging stage
    let report = engine.deploy(req(&on, "1.1")).await.unwrap();
    assert!(report.events.iter().all(|e| !matches!(
        e.kind,
        EventKind::StageStarted {
            stage: Stage::Staging,
            ..
        }
    )));
}

/// A kind whose pre-deploy downloads the artifact to a path of each host's own.
#[derive(Debug)]
struct Fetching;

#[async_trait::async_trait]
impl pushguide_core::Deployer for Fetching {
    async fn pre_deploy(
        &self,
        cx: &mut pushguide_core::StageContext<'_>,
    ) -> Result<(), pushguide_core::StageError> {
        pushguide_core::steps::fetch_artifact(
            cx,
            |h| format!("/srv/{h}/releases/1.0"),
            |h| format!("/srv/{h}/archives/1.0.war"),
        )
        .await?;
        Ok(())
    }
    async fn deploy(
        &self,
        _cx: &mut pushguide_core::StageContext<'_>,
    ) -> Result<(), pushguide_core::StageError> {
        Ok(())
    }
    async fn rollback(
        &self,
        _cx: &mut pushguide_core::StageContext<'_>,
    ) -> Result<(), pushguide_core::StageError> {
        Ok(())
    }
}

#[tokio::test]
async fn a_dry_run_hashes_no_download_it_only_recorded() {
    let t = template(2, "[rollout]\nbatch = 2");
    // no file was downloaded: hashing it fails on a real minion
    let fleet = Arc::new(
        pushguide_core::sim::SimFleet::new(hosts(2))
            .unwrap()
            .on("*", "file.directory_exists", Outcome::ok(false))
            .on("*", "cp.get_url", Outcome::ok("/srv/archives/1.0.war"))
            .on(
                "*",
                "file.get_hash",
                Outcome::failed(Some(1), "no such file"),
            ),
    );
    let engine = engine(fleet.clone());
    let artifact = pushguide_core::Artifact::new("http://ci/app.war", Some("ab".repeat(32)));
    let dry = req(&t, "1.0")
        .deployer(Arc::new(Fetching))
        .artifact(artifact.clone())
        .dry_run(true);
    let report = engine.deploy(dry).await.unwrap();
    assert_eq!(report.outcome, DeploymentOutcome::Succeeded, "{report}");
    let funs: Vec<String> = calls(&fleet).into_iter().map(|(f, _)| f).collect();
    assert!(
        !funs
            .iter()
            .any(|f| f == "file.get_hash" || f == "cp.get_url"),
        "{funs:?}"
    );

    // a real run downloads to each host's own path at once and checks each hash
    let real = req(&t, "1.0")
        .deployer(Arc::new(Fetching))
        .artifact(artifact);
    let report = engine.deploy(real).await.unwrap();
    let c = calls(&fleet);
    assert_eq!(
        c.iter().filter(|(f, _)| f == "cp.get_url").count(),
        2,
        "{c:?}"
    );
    assert_eq!(
        c.iter().filter(|(f, _)| f == "file.get_hash").count(),
        2,
        "{c:?}\n{report}"
    );
    assert_ne!(report.outcome, DeploymentOutcome::Succeeded, "{report}");
    let f = report.host("web-02").unwrap().failure.clone().unwrap();
    assert_eq!(f.fun.as_deref(), Some("file.get_hash"), "{f:?}");
}

/// The simulated fleet, holding the staging download until told to go on.
#[derive(Debug)]
struct HoldStaging {
    fleet: Arc<pushguide_core::sim::SimFleet>,
    hold: std::sync::atomic::AtomicBool,
    arrived: tokio::sync::Notify,
    go: tokio::sync::Notify,
}

#[async_trait::async_trait]
impl pushguide_core::Transport for HoldStaging {
    async fn call(
        &self,
        targets: &[MinionId],
        call: &pushguide_core::SaltCall,
    ) -> Result<Returns, pushguide_core::TransportError> {
        if call.fun == "cp.get_url" && self.hold.load(std::sync::atomic::Ordering::SeqCst) {
            self.arrived.notify_one();
            self.go.notified().await;
        }
        self.fleet.call(targets, call).await
    }
}

#[tokio::test]
async fn a_cancel_during_staging_touches_no_host_and_the_next_release_and_rollback_work() {
    let t = template(4, "[rollout]\nbatch = 2");
    let transport = Arc::new(HoldStaging {
        fleet: fleet(4),
        hold: true.into(),
        arrived: tokio::sync::Notify::new(),
        go: tokio::sync::Notify::new(),
    });
    let engine = engine(transport.clone());
    let all = ["web-01", "web-02", "web-03", "web-04"];
    seed(&engine, &all, "1.0").await;
    let current = |engine: pushguide_core::Engine| async move {
        let v = engine
            .fleet_state()
            .versions("shop", &ids(&all))
            .await
            .unwrap();
        ids(&all)
            .iter()
            .map(|h| v.get(h).and_then(|r| r.current.clone()))
            .collect::<Vec<_>>()
    };

    let handle = engine.start(staged(&t, "2.0")).await.unwrap();
    transport.arrived.notified().await;
    handle.cancel();
    transport.go.notify_one();
    let report = handle.wait().await.unwrap();
    assert_eq!(report.outcome, DeploymentOutcome::Cancelled, "{report}");
    assert!(
        report.reason.as_deref().unwrap_or("").contains("staging"),
        "{report}"
    );
    let funs: Vec<String> = transport
        .fleet
        .requests()
        .into_iter()
        .map(|r| r.fun)
        .collect();
    assert!(!funs.iter().any(|f| f == "file.symlink"), "{funs:?}");
    assert_eq!(
        current(engine.clone()).await,
        vec![Some("1.0".to_owned()); 4],
        "every host still runs what it ran"
    );

    // the next release goes through, and rolling it back returns every host to 1.0
    transport
        .hold
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let report = engine.deploy(staged(&t, "2.0")).await.unwrap();
    assert_eq!(report.outcome, DeploymentOutcome::Succeeded, "{report}");
    assert_eq!(
        current(engine.clone()).await,
        vec![Some("2.0".to_owned()); 4]
    );
    let rollback =
        pushguide_core::Request::rollback(t.clone(), None, alice()).deployer(Arc::new(STAGED));
    let report = engine.deploy(rollback).await.unwrap();
    assert_eq!(report.outcome, DeploymentOutcome::RolledBack, "{report}");
    assert_eq!(current(engine).await, vec![Some("1.0".to_owned()); 4]);
}
