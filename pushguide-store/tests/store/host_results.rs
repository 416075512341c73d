//! One path for host results: the journal's events. The report adds only host logs, recorded with
//! the outcome in one transaction.

use std::time::Duration;

use pushguide_core::{EventKind, Principal, Report, Request, Stage};
use pushguide_store::{SqliteStore, StoreOptions};

use crate::support::*;

type Row = (
    String,
    Option<usize>,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// Each host's result as the engine's report states it, by host name.
fn from_report(r: &Report) -> Vec<Row> {
    let mut rows: Vec<Row> = r
        .hosts
        .iter()
        .map(|h| {
            let f = h.failure.as_ref().or(h.rollback_failure.as_ref());
            (
                h.host.as_str().to_owned(),
                h.batch,
                serde_json::to_value(h.status)
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_owned(),
                f.map(|f| f.stage.as_str().to_owned()),
                f.and_then(|f| f.fun.clone()),
                f.map(|f| f.reason.clone()),
                h.rolled_back_to.clone(),
            )
        })
        .collect();
    rows.sort();
    rows
}

/// Each host's result as the store's journal states it.
fn from_store(s: &SqliteStore, id: &str) -> Vec<Row> {
    s.host_results(id)
        .unwrap()
        .into_iter()
        .map(|h| {
            (
                h.host,
                h.batch,
                h.status,
                h.failed_stage,
                h.fun,
                h.failure,
                h.rolled_back_to,
            )
        })
        .collect()
}

/// Replays `r`'s events into a fresh store (the journal alone), checks the results equal the
/// report's before the report is recorded, and that the outcome appears only with the report.
fn journal_alone_matches(r: &Report) {
    let fresh = SqliteStore::open_in_memory().unwrap();
    fresh.append_events(&r.events).unwrap();
    assert!(matches!(
        r.events.last().map(|e| &e.kind),
        Some(EventKind::DeploymentFinished { .. })
    ));
    let want = from_report(r);
    assert_eq!(from_store(&fresh, &r.id), want, "journal alone, {}", r.id);
    // the end event is journaled, but no reader sees an outcome without the report
    let d = fresh.deployment(&r.id).unwrap().unwrap();
    assert_eq!((d.outcome, d.ended), (None, None));
    fresh.finish_report(r).unwrap();
    let d = fresh.deployment(&r.id).unwrap().unwrap();
    assert!(d.outcome.is_some());
    assert_eq!(
        from_store(&fresh, &r.id),
        want,
        "after the report, {}",
        r.id
    );
    for h in &r.hosts {
        assert_eq!(
            fresh.host_log(&r.id, h.host.as_str()).unwrap(),
            r.host_log(h.host.as_str())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_results_come_from_the_journal_and_equal_the_reports() {
    let store = SqliteStore::open_in_memory().unwrap();
    let alice = || Principal::user("alice");
    let budget = template("shop", 4, 2, "[failure]\nmax_failed = 1\n");
    let halt = template(
        "shop",
        4,
        2,
        "[failure]\nmax_failed = 0\n[rollback]\npolicy = \"previous\"\n",
    );
    let mut reports = Vec::new();
    // every host succeeds
    let e = engine(&store, &[]);
    reports.push(
        e.deploy(Request::new(budget.clone(), "1.0", alice()))
            .await
            .unwrap(),
    );
    // web-03 fails within the budget; restoring it fails too: it stays failed
    let e = engine(&store, &["web-03"]);
    reports.push(
        e.deploy(Request::new(budget.clone(), "2.0", alice()))
            .await
            .unwrap(),
    );
    // a good release, then one where web-01 fails over the budget: batch 0 is rolled back (web-02 to
    // 3.0, web-01's rollback fails), batch 1 never starts (pending)
    let e = engine(&store, &[]);
    reports.push(
        e.deploy(Request::new(halt.clone(), "3.0", alice()))
            .await
            .unwrap(),
    );
    let e = engine(&store, &["web-01"]);
    reports.push(
        e.deploy(Request::new(halt.clone(), "4.0", alice()))
            .await
            .unwrap(),
    );
    // a requested rollback: each host back to its previous version
    let e = engine(&store, &[]);
    reports.push(
        e.deploy(Request::rollback(budget.clone(), None, alice()))
            .await
            .unwrap(),
    );
    // a requested rollback where nothing earlier is recorded
    let fresh = template("fresh", 2, 2, "");
    reports.push(
        e.deploy(Request::rollback(fresh, None, alice()))
            .await
            .unwrap(),
    );
    // a first release that fails over the budget: nothing earlier to roll back to
    let first = template(
        "first",
        2,
        2,
        "[failure]\nmax_failed = 0\n[rollback]\npolicy = \"previous\"\n",
    );
    let e = engine(&store, &["web-01"]);
    reports.push(e.deploy(Request::new(first, "1.0", alice())).await.unwrap());
    let statuses: Vec<Vec<String>> = reports
        .iter()
        .map(|r| from_report(r).into_iter().map(|h| h.2).collect())
        .collect();
    assert_eq!(statuses[0], ["succeeded"; 4]);
    assert!(statuses[1].contains(&"failed".to_owned()), "{statuses:?}");
    assert!(
        statuses[3].contains(&"rolled-back".to_owned()),
        "{statuses:?}"
    );
    assert!(
        statuses[3].contains(&"rollback-failed".to_owned()),
        "{statuses:?}"
    );
    assert!(statuses[3].contains(&"pending".to_owned()), "{statuses:?}");
    assert!(
        statuses[5].contains(&"no-rollback-target".to_owned()),
        "{statuses:?}"
    );
    assert_eq!(statuses[6], ["no-rollback-target"; 2], "{statuses:?}");
    for r in &reports {
        assert_eq!(r.history_error, None);
        assert_eq!(from_store(&store, &r.id), from_report(r), "{}", r.id);
        for h in &r.hosts {
            assert_eq!(
                store.host_status(&r.id, h.host.as_str()).unwrap(),
                Some(
                    from_report(r)
                        .into_iter()
                        .find(|x| x.0 == h.host.as_str())
                        .unwrap()
                        .2
                )
            );
        }
        journal_alone_matches(r);
    }
}

/// A decision to exclude failed hosts is journaled: they read as excluded, as in the report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn excluded_by_a_decision_reads_from_the_journal() {
    let store = SqliteStore::open_in_memory().unwrap();
    let t = template(
        "shop",
        4,
        2,
        "[failure]\nmax_failed = 0\non_failure = \"pause\"\n",
    );
    let e = engine(&store, &["web-02"]);
    let h = e
        .start(Request::new(t, "1.0", Principal::user("alice")))
        .await
        .unwrap();
    let mut events = h.events();
    while let Some(ev) = events.next().await {
        if let EventKind::DecisionNeeded { .. } = ev.kind {
            h.decide(pushguide_core::Decision::Exclude).unwrap();
        }
    }
    let r = h.wait().await.unwrap();
    let rows = from_report(&r);
    assert!(
        rows.iter().any(|x| x.0 == "web-02" && x.2 == "excluded"),
        "{rows:?}"
    );
    assert_eq!(from_store(&store, &r.id), rows);
    journal_alone_matches(&r);
}

/// The end event alone shows no outcome; a reader that sees the outcome sees every host's status and
/// log with it (one transaction), so nobody waits for the report.
#[test]
fn the_outcome_is_seen_only_with_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.db");
    let writer = SqliteStore::open(&path).unwrap();
    let reader = SqliteStore::open(&path).unwrap();
    let events = deployment(
        "d1",
        "shop",
        at(0),
        60,
        &["web-01"],
        &[("web-02", Stage::Deploy)],
        pushguide_core::DeploymentOutcome::Failed,
        false,
    );
    writer.append_events(&events).unwrap();
    let d = reader.deployment("d1").unwrap().unwrap();
    assert_eq!(d.outcome, None, "the end event does not set the outcome");
    // the host results are there from the journal already
    assert_eq!(
        reader.host_status("d1", "web-01").unwrap().as_deref(),
        Some("succeeded")
    );
    assert_eq!(
        reader.host_status("d1", "web-02").unwrap().as_deref(),
        Some("failed")
    );
    let mut report = report_of(&events).unwrap();
    report.hosts = serde_json::from_value(serde_json::json!([
        {"host": "web-01", "batch": 0, "status": "succeeded", "failure": null,
         "rollback_failure": null, "rolled_back_to": null,
         "log": [{"type": "message", "stage": "deploy", "text": "all good"}]},
    ]))
    .unwrap();
    writer.finish_report(&report).unwrap();
    let d = reader.deployment("d1").unwrap().unwrap();
    assert_eq!(d.outcome.as_deref(), Some("failed"));
    assert_eq!(d.ended, Some(at(60)));
    assert_eq!(reader.host_log("d1", "web-01").unwrap().len(), 1);
}

/// The process died after journaling the end but before recording the report: recovery finds the
/// deployment and marks it interrupted, naming the outcome the journal recorded.
#[test]
fn recover_finds_a_deployment_ended_in_the_journal_without_a_report() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.db");
    let opts = StoreOptions::default().lease_ttl(Duration::from_millis(200));
    let dead = SqliteStore::open_with(&path, opts.clone()).unwrap();
    let alive = SqliteStore::open_with(&path, opts).unwrap();
    let events = deployment(
        "d1",
        "shop",
        at(0),
        60,
        &["web-01", "web-02"],
        &[],
        pushguide_core::DeploymentOutcome::Succeeded,
        false,
    );
    dead.append_events(&events).unwrap();
    dead.stop_heartbeat();
    std::mem::forget(dead); // like a killed process: no clean close
    std::thread::sleep(Duration::from_millis(300));
    let found = alive.recover().unwrap();
    assert_eq!(found.len(), 1);
    let rec = alive.deployment("d1").unwrap().unwrap();
    assert_eq!(rec.outcome.as_deref(), Some("interrupted"));
    let reason = rec.reason.unwrap();
    assert!(
        reason.contains("after the deployment finished (succeeded)"),
        "{reason}"
    );
    // its hosts' results are the journal's
    assert_eq!(
        alive.host_status("d1", "web-02").unwrap().as_deref(),
        Some("succeeded")
    );
}

/// A host pre-flight leaves out (`on_down = "exclude"`) reads as excluded from the journal, as in
/// the report, not as failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn left_out_at_pre_flight_reads_excluded_from_the_journal() {
    let store = SqliteStore::open_in_memory().unwrap();
    let t = template("shop", 3, 1, "[preflight]\non_down = \"exclude\"\n");
    let transport = crate::support::InstantTransport {
        down: ["web-02".to_owned()].into(),
        ..Default::default()
    };
    let shared = std::sync::Arc::new(store.clone());
    let e = pushguide_core::Engine::builder(std::sync::Arc::new(transport))
        .history(shared.clone())
        .fleet_state(shared.clone())
        .leases(shared)
        .build();
    let r = e
        .deploy(Request::new(t, "1.0", Principal::user("alice")))
        .await
        .unwrap();
    let rows = from_report(&r);
    assert!(
        rows.iter().any(|x| x.0 == "web-02" && x.2 == "excluded"),
        "{rows:?} {r}"
    );
    assert_eq!(from_store(&store, &r.id), rows);
    journal_alone_matches(&r);
}
