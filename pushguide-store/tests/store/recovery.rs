//! Recovery of an interrupted deployment: every host with what was done to it, the hosts it touched,
//! and full log lines.

use std::time::{Duration, SystemTime};

use pushguide_core::{
    CallRecord, DeploymentOutcome, EventKind, HostReport, HostStatus, LogEntry, Outcome, Report,
    SaltCall, Stage,
};
use pushguide_store::{SqliteStore, StoreOptions};

use crate::support::*;

fn started(id: &str, t: SystemTime) -> pushguide_core::Event {
    ev(
        id,
        t,
        EventKind::DeploymentStarted {
            template: "shop".into(),
            version: "2.0.0".into(),
            user: "alice".into(),
            dry_run: false,
            rollback: false,
        },
    )
}

fn stage(
    id: &str,
    t: SystemTime,
    batch: usize,
    stage: Stage,
    n: usize,
    end: bool,
) -> Vec<pushguide_core::Event> {
    let mut v = vec![ev(
        id,
        t,
        EventKind::StageStarted {
            batch: Some(batch),
            stage,
            hosts: n,
        },
    )];
    if end {
        v.push(ev(
            id,
            t + Duration::from_secs(1),
            EventKind::StageFinished {
                batch: Some(batch),
                stage,
                ok: n,
                failed: 0,
            },
        ));
    }
    v
}

fn call(id: &str, t: SystemTime, batch: usize, stage: Stage, fun: &str) -> pushguide_core::Event {
    ev(
        id,
        t,
        EventKind::CallFinished {
            batch: Some(batch),
            stage,
            fun: fun.into(),
            jid: Some("20260101".into()),
            ok: 1,
            failed: 0,
            millis: 5,
        },
    )
}

/// Four planned hosts in batches of one: web-01's batch finished, web-02's batch died in the deploy
/// stage after `service.stop` returned, web-03 and web-04 were never reached.
fn interrupted_journal(id: &str) -> Vec<pushguide_core::Event> {
    let t = |s: u64| at(s);
    let mut v = vec![
        started(id, t(0)),
        ev(
            id,
            t(1),
            EventKind::Prepared {
                hosts: 4,
                batches: 4,
                excluded: vec![],
                plan: ["web-01", "web-02", "web-03", "web-04"]
                    .iter()
                    .map(|h| vec![pushguide_core::MinionId::new(h).unwrap()])
                    .collect(),
                left_out: vec![],
            },
        ),
        ev(
            id,
            t(2),
            EventKind::BatchStarted {
                batch: 0,
                hosts: 1,
                minions: vec![host("web-01")],
            },
        ),
    ];
    for (i, s) in Stage::BATCH.into_iter().enumerate() {
        v.extend(stage(id, t(3 + 2 * i as u64), 0, s, 1, true));
    }
    v.push(ev(
        id,
        t(9),
        EventKind::HostSucceeded {
            host: host("web-01"),
        },
    ));
    v.push(ev(
        id,
        t(9),
        EventKind::BatchFinished {
            batch: 0,
            ok: 1,
            failed: 0,
        },
    ));
    v.push(ev(
        id,
        t(10),
        EventKind::BatchStarted {
            batch: 1,
            hosts: 1,
            minions: vec![host("web-02")],
        },
    ));
    v.extend(stage(id, t(11), 1, Stage::PreDeploy, 1, true));
    v.extend(stage(id, t(13), 1, Stage::Deploy, 1, false));
    v.push(call(id, t(14), 1, Stage::Deploy, "service.stop"));
    v
}

#[test]
fn interrupted_deployment_names_what_each_reached_host_finished() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.db");
    let opts = StoreOptions::default().lease_ttl(Duration::from_millis(200));
    let dead = SqliteStore::open_with(&path, opts.clone()).unwrap();
    let alive = SqliteStore::open_with(&path, opts).unwrap();
    dead.append_events(&interrupted_journal("d1")).unwrap();
    dead.stop_heartbeat();
    std::mem::forget(dead);
    std::thread::sleep(Duration::from_millis(300));
    let found = alive.recover().unwrap();
    assert_eq!(found.len(), 1);
    let d = &found[0];
    assert_eq!((d.planned_hosts, d.planned_batches), (Some(4), Some(4)));
    // the plan names every host, also those whose batch never started
    assert_eq!(d.planned, ["web-01", "web-02", "web-03", "web-04"]);
    assert!(!d.rollback);
    assert_eq!(d.hosts.len(), 2, "{:?}", d.hosts);
    let (w1, w2) = (&d.hosts[0], &d.hosts[1]);
    assert_eq!(
        (w1.host.as_str(), w1.status.as_str()),
        ("web-01", "succeeded")
    );
    assert!(w1.batch_finished);
    assert_eq!(w1.stages_done, Stage::BATCH.to_vec());
    assert_eq!(
        (w2.host.as_str(), w2.status.as_str()),
        ("web-02", "interrupted")
    );
    assert!(!w2.batch_finished);
    assert_eq!(w2.stage, Stage::Deploy);
    assert_eq!(w2.stages_done, vec![Stage::PreDeploy]);
    assert_eq!(w2.calls_done, vec!["service.stop".to_owned()]);
    assert_eq!(
        w2.stage_calls,
        vec![(Stage::Deploy, vec!["service.stop".to_owned()])]
    );
    // only the hosts of started batches were touched
    assert_eq!(alive.touched_hosts("d1").unwrap(), ["web-01", "web-02"]);
    assert_eq!(alive.interrupted().unwrap(), found);
}

#[test]
fn touched_hosts_of_a_finished_deployment_are_its_batches_hosts() {
    let s = SqliteStore::open_in_memory().unwrap();
    let events = deployment(
        "d2",
        "shop",
        at(0),
        60,
        &["web-01", "web-03"],
        &[("web-02", Stage::Deploy)],
        DeploymentOutcome::Failed,
        false,
    );
    s.append_events(&events).unwrap();
    assert_eq!(
        s.touched_hosts("d2").unwrap(),
        ["web-01", "web-02", "web-03"]
    );
    assert!(s.touched_hosts("nope").unwrap().is_empty());
}

/// A log line keeps a long returned value whole (it was cut at 120 characters); beyond
/// `LogEntry::MAX_VALUE_CHARS` it is cut and says how long the value was.
#[test]
fn stored_log_lines_keep_long_values() {
    let s = SqliteStore::open_in_memory().unwrap();
    let medium = "x".repeat(1000);
    let huge = "y".repeat(10_000);
    let calls = vec![
        CallRecord {
            stage: Stage::Deploy,
            batch: Some(0),
            call: SaltCall::mutate("cmd.run_all").arg("/opt/x"),
            targets: 1,
            sent: true,
            jid: Some("1".into()),
            millis: 3,
        },
        CallRecord {
            stage: Stage::PostDeploy,
            batch: Some(0),
            call: SaltCall::read("cmd.run_all").arg("/opt/y"),
            targets: 1,
            sent: true,
            jid: Some("2".into()),
            millis: 3,
        },
    ];
    let report = report_with(
        "d3",
        calls,
        vec![
            LogEntry::Call {
                stage: Stage::Deploy,
                call: 0,
                outcome: Outcome::ok(medium.as_str()),
            },
            LogEntry::Call {
                stage: Stage::PostDeploy,
                call: 1,
                outcome: Outcome::ok(huge.as_str()),
            },
        ],
    );
    s.append_events(&[started("d3", at(0))]).unwrap();
    s.finish_report(&report).unwrap();
    let log = s.host_log("d3", "web-01").unwrap();
    assert_eq!(log.len(), 2, "{log:?}");
    assert!(
        log[0].contains(&format!("ok \"{medium}\"")),
        "{}",
        &log[0][..200]
    );
    assert!(!log[0].contains('…'));
    // 10 000 characters plus two quotes: cut at 4096 characters, full length named
    let cut = format!("ok \"{}… (10002 bytes)", "y".repeat(4095));
    assert!(log[1].ends_with(&cut), "{}", &log[1][log[1].len() - 60..]);
    assert_eq!(LogEntry::MAX_VALUE_CHARS, 4096);
}

/// A finished report of deployment `id` on web-01 with `calls` and web-01's `log` (a `Report` is
/// built by the engine; here from its serialized form).
fn report_with(id: &str, calls: Vec<CallRecord>, log: Vec<LogEntry>) -> Report {
    let host = HostReport {
        host: host("web-01"),
        batch: Some(0),
        status: HostStatus::Succeeded,
        failure: None,
        rollback_failure: None,
        rolled_back_to: None,
        log,
    };
    let started = serde_json::to_value(at(0)).unwrap();
    serde_json::from_value(serde_json::json!({
        "id": id,
        "template": "shop",
        "version": "2.0.0",
        "user": "alice",
        "dry_run": false,
        "outcome": DeploymentOutcome::Succeeded,
        "reason": null,
        "started": started,
        "duration": {"secs": 5, "nanos": 0},
        "batches": [["web-01"]],
        "hosts": [host],
        "calls": calls,
        "events": [],
        "history_error": null,
    }))
    .unwrap()
}
