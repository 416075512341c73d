//! Conformance checks of the records part of [`crate::ServerStore`] ([`RecordStore`]).
//!
//! Each check first records deployments through core's store ports ([`HistoryStore`],
//! [`FleetState`], [`MinionStatusStore`]) — as an engine would — then reads them back through
//! [`RecordStore`] and compares with what the check computes on its own. A check panics with a
//! message naming what differed. Templates are named after `prefix`, so checks may share a store.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pushguide_core::{
    DeploymentOutcome, Event, EventKind, FleetState, HistoryStore, HostChange, LeaseManager,
    MinionId, MinionStatusStore, Report, Stage,
};

use crate::{
    CallRow, DayStats, HistoryKey, HistoryPage, HistoryQuery, HostProgress, HostResult,
    HostStageResult, InterruptedDeployment, OutcomeFilter, PageAt, Rate, RecordStore, Recovery,
    Summary, Window,
};

/// 2026-11-30T00:00:00Z, a Monday.
const MONDAY_MS: i64 = 1_795_996_800_000;
const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 86_400_000;

fn at(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms as u64)
}

fn ms_of(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn minion(name: &str) -> MinionId {
    MinionId::new(name).unwrap_or_else(|e| panic!("test minion id {name}: {e}"))
}

fn ev(id: &str, ms: i64, kind: EventKind) -> Event {
    Event {
        at: at(ms),
        deployment: Arc::from(id),
        kind,
    }
}

fn started(id: &str, ms: i64, template: &str, user: &str, dry_run: bool, rollback: bool) -> Event {
    ev(
        id,
        ms,
        EventKind::DeploymentStarted {
            template: template.to_owned(),
            version: "2.0".to_owned(),
            user: user.to_owned(),
            dry_run,
            rollback,
        },
    )
}

/// A host's part of a report: (host, batch, status, log messages).
type HostLine<'a> = (&'a str, Option<usize>, &'a str, &'a [(Stage, &'a str)]);

/// A report (built from JSON: core's `Report` is not constructible outside core).
#[allow(clippy::too_many_arguments)]
fn report(
    id: &str,
    template: &str,
    user: &str,
    dry_run: bool,
    outcome: DeploymentOutcome,
    start_ms: i64,
    duration_ms: i64,
    hosts: &[HostLine<'_>],
) -> Report {
    let hosts: Vec<serde_json::Value> = hosts
        .iter()
        .map(|(host, batch, status, log)| {
            let log: Vec<serde_json::Value> = log
                .iter()
                .map(|(stage, text)| {
                    serde_json::json!({"type": "message", "stage": stage.as_str(), "text": text})
                })
                .collect();
            serde_json::json!({
                "host": host, "batch": batch, "status": status, "failure": null,
                "rollback_failure": null, "rolled_back_to": null, "log": log,
            })
        })
        .collect();
    let json = serde_json::json!({
        "id": id, "template": template, "version": "2.0", "user": user, "dry_run": dry_run,
        "outcome": outcome.as_str(), "reason": null,
        "started": serde_json::to_value(at(start_ms)).unwrap_or_default(),
        "duration": serde_json::to_value(Duration::from_millis(duration_ms as u64))
            .unwrap_or_default(),
        "batches": [], "hosts": hosts, "calls": [], "events": [], "history_error": null,
    });
    serde_json::from_value(json).unwrap_or_else(|e| panic!("test report {id}: {e}"))
}

async fn append<S: HistoryStore>(store: &S, events: &[Event]) {
    store
        .append(events)
        .await
        .unwrap_or_else(|e| panic!("appending {} events: {e}", events.len()));
}

async fn finish<S: HistoryStore>(store: &S, r: &Report) {
    store
        .finish(r)
        .await
        .unwrap_or_else(|e| panic!("recording the report of {}: {e}", r.id));
}

/// The journal of one release of three hosts in two batches: web-01 succeeds, web-02 fails in
/// deploy, web-03 (batch 1) succeeds; calls in every stage.
fn release(id: &str, template: &str, t: i64) -> Vec<Event> {
    let (w1, w2, w3) = (minion("web-01"), minion("web-02"), minion("web-03"));
    let mut v = vec![
        started(id, t, template, "alice", false, false),
        ev(
            id,
            t + 1,
            EventKind::Prepared {
                hosts: 3,
                batches: 2,
                excluded: Vec::new(),
                plan: vec![vec![w1.clone(), w2.clone()], vec![w3.clone()]],
                left_out: Vec::new(),
            },
        ),
    ];
    let mut ms = t + 10;
    for (b, hosts) in [vec![w1.clone(), w2.clone()], vec![w3.clone()]]
        .into_iter()
        .enumerate()
    {
        v.push(ev(
            id,
            ms,
            EventKind::BatchStarted {
                batch: b,
                hosts: hosts.len(),
                minions: hosts.clone(),
            },
        ));
        let mut live = hosts.len();
        for (si, stage) in Stage::BATCH.into_iter().enumerate() {
            // each stage takes (si + 1) * 10 ms
            let start = ms + 1;
            let end = start + (si as i64 + 1) * 10;
            let fun = format!("step.{}", stage.as_str());
            let fails = b == 0 && stage == Stage::Deploy;
            v.push(ev(
                id,
                start,
                EventKind::StageStarted {
                    batch: Some(b),
                    stage,
                    hosts: live,
                },
            ));
            v.push(ev(
                id,
                start,
                EventKind::CallStarted {
                    batch: Some(b),
                    stage,
                    fun: fun.clone(),
                    targets: live,
                    sent: true,
                },
            ));
            v.push(ev(
                id,
                end,
                EventKind::CallFinished {
                    batch: Some(b),
                    stage,
                    fun: fun.clone(),
                    jid: Some(format!("2026{b}{si}")),
                    ok: if fails { live - 1 } else { live },
                    failed: usize::from(fails),
                    millis: 7 + si as u64,
                },
            ));
            if fails {
                v.push(ev(
                    id,
                    end,
                    EventKind::HostFailed {
                        host: w2.clone(),
                        stage,
                        fun: Some(fun.clone()),
                        reason: "disk full".to_owned(),
                    },
                ));
                live -= 1;
            }
            v.push(ev(
                id,
                end,
                EventKind::StageFinished {
                    batch: Some(b),
                    stage,
                    ok: live,
                    failed: usize::from(fails),
                },
            ));
            ms = end;
        }
        for h in hosts.iter().filter(|h| !(b == 0 && **h == w2)) {
            v.push(ev(id, ms, EventKind::HostSucceeded { host: h.clone() }));
        }
        v.push(ev(
            id,
            ms + 1,
            EventKind::BatchFinished {
                batch: b,
                ok: live,
                failed: hosts.len() - live,
            },
        ));
        ms += 10;
    }
    v.push(ev(
        id,
        ms,
        EventKind::DeploymentFinished {
            outcome: DeploymentOutcome::PartiallyApplied,
        },
    ));
    v
}

/// The journal keeps events in append order across uneven appends; `journal_after` pages through
/// the events a deployment page needs (not host successes or salt calls), numbered by their place
/// in the journal; the record, each host's result, its stages, the calls and the host logs read
/// back as the events and report left them.
pub async fn journal_and_results<S: HistoryStore + RecordStore>(store: &S, prefix: &str) {
    let template = format!("{prefix}-shop");
    let id = format!("{prefix}-d1");
    let t = MONDAY_MS + 10 * HOUR_MS;
    let events = release(&id, &template, t);
    // uneven appends, with another deployment interleaved in one of them
    let other = format!("{prefix}-d2");
    append(store, &events[..1]).await;
    let mut mixed = events[1..7].to_vec();
    mixed.push(started(&other, t + 5, &template, "bob", false, false));
    append(store, &mixed).await;
    append(store, &events[7..]).await;

    let kept: Vec<(u64, &Event)> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| {
            !matches!(
                e.kind,
                EventKind::HostSucceeded { .. }
                    | EventKind::CallStarted { .. }
                    | EventKind::CallFinished { .. }
            )
        })
        .map(|(i, e)| (i as u64 + 1, e))
        .collect();
    let all = store
        .journal_after(&id, 0, 10_000)
        .await
        .unwrap_or_else(|e| panic!("journal_after: {e}"));
    let got: Vec<(u64, &Event)> = all.iter().map(|(n, e)| (*n, e)).collect();
    assert_eq!(
        got, kept,
        "journal_after(0): events and their sequence numbers"
    );
    // paging by the last sequence seen, two at a time
    let mut paged = Vec::new();
    let mut after = 0;
    loop {
        let page = store
            .journal_after(&id, after, 2)
            .await
            .unwrap_or_else(|e| panic!("journal_after({after}, 2): {e}"));
        assert!(
            page.len() <= 2,
            "journal_after returned more than its limit"
        );
        let Some((last, _)) = page.last() else { break };
        after = *last;
        paged.extend(page);
    }
    assert_eq!(paged, all, "journal_after paged two at a time");
    let other_journal = store
        .journal_after(&other, 0, 100)
        .await
        .unwrap_or_default();
    assert_eq!(
        other_journal.len(),
        1,
        "the interleaved deployment's journal"
    );
    assert!(
        store
            .journal_after("no-such-deployment", 0, 100)
            .await
            .unwrap_or_else(|e| panic!("journal_after of an unknown deployment: {e}"))
            .is_empty(),
        "an unknown deployment has no journal"
    );

    // before the report: running
    let r = store
        .deployment(&id)
        .await
        .unwrap_or_else(|e| panic!("deployment: {e}"))
        .unwrap_or_else(|| panic!("deployment {id} is not recorded"));
    assert_eq!(r.outcome, None, "outcome before the report");
    assert_eq!(r.ended, None, "end before the report");
    assert_eq!(r.events, events.len() as u64, "events counted");

    let log1: &[(Stage, &str)] = &[(Stage::Deploy, "unpacked"), (Stage::PostDeploy, "healthy")];
    let log2: &[(Stage, &str)] = &[(Stage::Deploy, "disk full")];
    let rep = report(
        &id,
        &template,
        "alice",
        false,
        DeploymentOutcome::PartiallyApplied,
        t,
        1234,
        &[
            ("web-01", Some(0), "succeeded", log1),
            ("web-02", Some(0), "failed", log2),
            ("web-03", Some(1), "succeeded", log1),
        ],
    );
    finish(store, &rep).await;

    let r = store
        .deployment(&id)
        .await
        .unwrap_or_else(|e| panic!("deployment: {e}"))
        .unwrap_or_else(|| panic!("deployment {id} is not recorded"));
    assert_eq!(
        (
            r.id.as_str(),
            r.template.as_str(),
            r.version.as_str(),
            r.principal.as_str(),
            r.dry_run,
            r.rollback
        ),
        (id.as_str(), template.as_str(), "2.0", "alice", false, false),
        "record: id, template, version, user, dry run, rollback"
    );
    assert_eq!(ms_of(r.started), t, "record: start");
    assert_eq!(r.ended.map(ms_of), Some(t + 1234), "record: end");
    assert_eq!(
        r.duration,
        Some(Duration::from_millis(1234)),
        "record: duration"
    );
    assert_eq!(
        r.outcome.as_deref(),
        Some("partially-applied"),
        "record: outcome"
    );
    assert_eq!(r.events, events.len() as u64, "record: events");
    assert_eq!(
        store
            .last_deployment(&template)
            .await
            .unwrap_or_else(|e| panic!("last_deployment: {e}"))
            .map(|r| r.id),
        Some(other.clone()),
        "last deployment of the template (the newest started, running or not)"
    );
    assert!(
        store.deployment("no-such").await.ok().flatten().is_none(),
        "an unknown deployment"
    );

    // host results, from the journal
    let hr =
        |host: &str, batch: usize, status: &str, failed: Option<(&str, &str, &str)>| HostResult {
            host: host.to_owned(),
            batch: Some(batch),
            status: status.to_owned(),
            failed_stage: failed.map(|f| f.0.to_owned()),
            fun: failed.map(|f| f.1.to_owned()),
            failure: failed.map(|f| f.2.to_owned()),
            rolled_back_to: None,
        };
    let expected = vec![
        hr("web-01", 0, "succeeded", None),
        hr(
            "web-02",
            0,
            "failed",
            Some(("deploy", "step.deploy", "disk full")),
        ),
        hr("web-03", 1, "succeeded", None),
    ];
    let got = store
        .host_results(&id)
        .await
        .unwrap_or_else(|e| panic!("host_results: {e}"));
    assert_eq!(got, expected, "host results");
    for h in &expected {
        assert_eq!(
            store.host_status(&id, &h.host).await.ok().flatten(),
            Some(h.status.clone()),
            "host_status of {}",
            h.host
        );
    }
    assert_eq!(
        store.host_status(&id, "web-99").await.ok().flatten(),
        None,
        "host_status of a host not in the deployment"
    );

    // per stage: a succeeded host went through the three batch stages, the failed one up to deploy
    let stage_row = |host: &str, batch: usize, si: usize, failed: bool| HostStageResult {
        host: host.to_owned(),
        batch: Some(batch),
        stage: Stage::BATCH[si].as_str().to_owned(),
        status: if failed { "failed" } else { "ok" }.to_owned(),
        duration: Some(Duration::from_millis((si as u64 + 1) * 10)),
        fun: failed.then(|| "step.deploy".to_owned()),
        detail: failed.then(|| "disk full".to_owned()),
    };
    let expected = vec![
        stage_row("web-01", 0, 0, false),
        stage_row("web-01", 0, 1, false),
        stage_row("web-01", 0, 2, false),
        stage_row("web-02", 0, 0, false),
        stage_row("web-02", 0, 1, true),
        stage_row("web-03", 1, 0, false),
        stage_row("web-03", 1, 1, false),
        stage_row("web-03", 1, 2, false),
    ];
    let got = store
        .host_stage_results(&id)
        .await
        .unwrap_or_else(|e| panic!("host_stage_results: {e}"));
    assert_eq!(got, expected, "host stage results");

    // calls, in order
    let expected: Vec<CallRow> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::CallFinished {
                batch,
                stage,
                fun,
                jid,
                ok,
                failed,
                millis,
            } => Some(CallRow {
                batch: *batch,
                stage: stage.as_str().to_owned(),
                fun: fun.clone(),
                jid: jid.clone(),
                ok: *ok as u64,
                failed: *failed as u64,
                millis: *millis,
            }),
            _ => None,
        })
        .collect();
    assert_eq!(expected.len(), 6, "the test's own calls");
    let got = store
        .calls(&id)
        .await
        .unwrap_or_else(|e| panic!("calls: {e}"));
    assert_eq!(got, expected, "calls");

    // logs, as the report printed them
    let log = store
        .host_log(&id, "web-02")
        .await
        .unwrap_or_else(|e| panic!("host_log: {e}"));
    assert_eq!(log, ["[deploy] disk full"], "host log of web-02");
    let log = store
        .host_log(&id, "web-01")
        .await
        .unwrap_or_else(|e| panic!("host_log: {e}"));
    assert_eq!(
        log,
        ["[deploy] unpacked", "[post-deploy] healthy"],
        "host log of web-01"
    );
    assert!(
        store
            .host_log(&id, "web-99")
            .await
            .unwrap_or_default()
            .is_empty(),
        "log of a host not in the report"
    );
}

/// One generated deployment of the history and statistics checks.
#[derive(Clone, Debug)]
struct Gen {
    id: String,
    template: String,
    user: &'static str,
    start: i64,
    duration: i64,
    outcome: Option<DeploymentOutcome>,
    dry_run: bool,
    rollback: bool,
    failures: Vec<(String, Stage)>,
}

async fn record_gen<S: HistoryStore>(store: &S, d: &Gen) {
    let mut events = vec![started(
        &d.id,
        d.start,
        &d.template,
        d.user,
        d.dry_run,
        d.rollback,
    )];
    for (i, (host, stage)) in d.failures.iter().enumerate() {
        let t = d.start + 1 + i as i64;
        events.push(ev(
            &d.id,
            t,
            EventKind::StageStarted {
                batch: Some(0),
                stage: *stage,
                hosts: 1,
            },
        ));
        events.push(ev(
            &d.id,
            t,
            EventKind::HostFailed {
                host: minion(host),
                stage: *stage,
                fun: None,
                reason: "broken".to_owned(),
            },
        ));
    }
    append(store, &events).await;
    if let Some(o) = d.outcome {
        let r = report(
            &d.id,
            &d.template,
            d.user,
            d.dry_run,
            o,
            d.start,
            d.duration,
            &[],
        );
        finish(store, &r).await;
    }
}

/// The history's order: newest first, then by id (bytes), descending.
fn newest_first(v: &mut [Gen]) {
    v.sort_by(|a, b| (b.start, b.id.as_bytes()).cmp(&(a.start, a.id.as_bytes())));
}

fn ids(p: &HistoryPage) -> Vec<String> {
    p.rows.iter().map(|r| r.id.clone()).collect()
}

/// Every row of `q`, page by page to the oldest, then back to the newest; checks the `newer` /
/// `older` flags on the way.
async fn walk_all<S: RecordStore>(store: &S, q: &HistoryQuery, what: &str) -> Vec<String> {
    let mut q = q.clone();
    q.page = PageAt::Newest;
    let mut forward: Vec<String> = Vec::new();
    let mut last: Option<HistoryPage> = None;
    for _ in 0..1000 {
        let p = store
            .history_page(&q)
            .await
            .unwrap_or_else(|e| panic!("history_page ({what}): {e}"));
        assert_eq!(
            p.newer,
            !forward.is_empty(),
            "{what}: `newer` of a page reached going older"
        );
        assert!(
            p.rows.len() <= q.limit.max(1),
            "{what}: page over its limit"
        );
        forward.extend(ids(&p));
        let older = p.older;
        if older {
            let key = HistoryKey::of(
                p.rows
                    .last()
                    .unwrap_or_else(|| panic!("{what}: empty page with `older`")),
            );
            q.page = PageAt::Older(key);
        }
        last = Some(p);
        if !older {
            break;
        }
    }
    // back to the newest
    let Some(last) = last else { return forward };
    let mut backward = ids(&last);
    if let Some(first) = last.rows.first() {
        let mut key = HistoryKey::of(first);
        let mut newer = last.newer;
        while newer {
            q.page = PageAt::Newer(key.clone());
            let p = store
                .history_page(&q)
                .await
                .unwrap_or_else(|e| panic!("history_page ({what}, newer): {e}"));
            assert!(p.older, "{what}: `older` of a page reached going newer");
            let mut v = ids(&p);
            v.extend(backward);
            backward = v;
            newer = p.newer;
            match p.rows.first() {
                Some(f) => key = HistoryKey::of(f),
                None => break,
            }
        }
    }
    assert_eq!(
        backward, forward,
        "{what}: pages going newer give the same rows"
    );
    forward
}

/// History pages by key, newest first, with every filter (templates, user, outcome, running,
/// start range), across deployments that started in the same millisecond, in both directions.
pub async fn history_pages<S: HistoryStore + RecordStore>(store: &S, prefix: &str) {
    let templates: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|t| format!("{prefix}-{t}"))
        .collect();
    let mut all: Vec<Gen> = Vec::new();
    for (ti, t) in templates.iter().enumerate() {
        for i in 0..14usize {
            // three deployments per millisecond; ids not in start order
            let start = MONDAY_MS + (i as i64 / 3) * 1000 + ti as i64 * 17;
            let outcome = if i == 13 {
                None
            } else if i % 3 == 0 {
                Some(DeploymentOutcome::Failed)
            } else {
                Some(DeploymentOutcome::Succeeded)
            };
            all.push(Gen {
                id: format!("{prefix}-{t}-{:04}", (i * 7919) % 10_000),
                template: t.clone(),
                user: if i % 5 == 0 { "bob" } else { "alice" },
                start,
                duration: 500,
                outcome,
                dry_run: false,
                rollback: false,
                failures: Vec::new(),
            });
        }
    }
    for d in &all {
        record_gen(store, d).await;
    }
    let expect = |f: &dyn Fn(&Gen) -> bool| -> Vec<String> {
        let mut v: Vec<Gen> = all.iter().filter(|d| f(d)).cloned().collect();
        newest_first(&mut v);
        v.into_iter().map(|d| d.id).collect()
    };
    let two = templates[..2].to_vec();
    for limit in [1, 4, 7, 100] {
        let q = HistoryQuery::new(two.clone(), limit);
        let got = walk_all(store, &q, &format!("two templates, limit {limit}")).await;
        assert_eq!(
            got,
            expect(&|d| two.contains(&d.template)),
            "two templates, limit {limit}"
        );
    }
    let one = vec![templates[2].clone()];
    let got = walk_all(store, &HistoryQuery::new(one.clone(), 5), "one template").await;
    assert_eq!(got, expect(&|d| d.template == one[0]), "one template");

    let mut q = HistoryQuery::new(templates.clone(), 3);
    q.user = Some("bob".into());
    let got = walk_all(store, &q, "by user").await;
    assert_eq!(got, expect(&|d| d.user == "bob"), "filter by user");

    let mut q = HistoryQuery::new(templates.clone(), 4);
    q.outcome = Some(OutcomeFilter::Is("failed".into()));
    let got = walk_all(store, &q, "by outcome").await;
    assert_eq!(
        got,
        expect(&|d| d.outcome == Some(DeploymentOutcome::Failed)),
        "filter by outcome"
    );

    let mut q = HistoryQuery::new(templates.clone(), 2);
    q.outcome = Some(OutcomeFilter::Running);
    let got = walk_all(store, &q, "running").await;
    assert_eq!(got, expect(&|d| d.outcome.is_none()), "filter: running");

    let (from, to) = (MONDAY_MS + 1000, MONDAY_MS + 3000);
    let mut q = HistoryQuery::new(templates.clone(), 4);
    q.from = Some(at(from));
    q.to = Some(at(to));
    q.user = Some("alice".into());
    let got = walk_all(store, &q, "start range and user").await;
    assert_eq!(
        got,
        expect(&|d| d.start >= from && d.start < to && d.user == "alice"),
        "filter: start range (from inclusive, to exclusive) and user"
    );

    let p = store
        .history_page(&HistoryQuery::new(Vec::<String>::new(), 10))
        .await
        .unwrap_or_else(|e| panic!("history_page with no templates: {e}"));
    assert!(
        p.rows.is_empty() && !p.newer && !p.older,
        "no viewable template: nothing listed"
    );
    // a record on a page is the deployment's record
    let p = store
        .history_page(&HistoryQuery::new(one.clone(), 1))
        .await
        .unwrap_or_else(|e| panic!("history_page: {e}"));
    let row = p.rows.first().cloned();
    let rec = match &row {
        Some(r) => store.deployment(&r.id).await.ok().flatten(),
        None => None,
    };
    assert_eq!(row, rec, "a history row equals the deployment's record");
}

fn nearest_rank(sorted: &[i64], q: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(Duration::from_millis(
        sorted[rank.clamp(1, sorted.len()) - 1].max(0) as u64,
    ))
}

fn summary_of(v: &[&Gen], success: DeploymentOutcome) -> Summary {
    let mut d: Vec<i64> = v.iter().map(|g| g.duration).collect();
    d.sort_unstable();
    let count = d.len() as u64;
    let ok = v.iter().filter(|g| g.outcome == Some(success)).count() as u64;
    let total: i64 = d.iter().sum();
    Summary {
        count,
        succeeded: ok,
        success_rate: (count > 0).then(|| ok as f64 / count as f64),
        mean: (count > 0).then(|| Duration::from_micros((total.max(0) as u64 * 1000) / count)),
        p50: nearest_rank(&d, 0.5),
        p95: nearest_rank(&d, 0.95),
    }
}

fn is_failed(o: DeploymentOutcome) -> bool {
    !matches!(
        o,
        DeploymentOutcome::Succeeded | DeploymentOutcome::Cancelled
    )
}

/// The expected figures of `w` over `all`, computed here.
struct Expected {
    summary: Summary,
    rollbacks: Summary,
    week: Vec<Rate>,
    hosts: Vec<(String, u64)>,
    stages: Vec<(Stage, u64)>,
    recovery: Recovery,
    days: Vec<DayStats>,
}

fn expected(all: &[Gen], w: &Window) -> Expected {
    let (from, to) = (ms_of(w.from), ms_of(w.to));
    let off = i64::from(w.utc_offset_secs) * 1000;
    let inside = |g: &&Gen| {
        g.start >= from
            && g.start < to
            && w.template.as_ref().is_none_or(|t| *t == g.template)
            && w.templates.as_ref().is_none_or(|l| l.contains(&g.template))
    };
    let finished: Vec<&Gen> = all
        .iter()
        .filter(inside)
        .filter(|g| !g.dry_run && g.outcome.is_some())
        .collect();
    let releases: Vec<&Gen> = finished.iter().copied().filter(|g| !g.rollback).collect();
    let rollbacks: Vec<&Gen> = finished.iter().copied().filter(|g| g.rollback).collect();
    let mut week = vec![Rate::default(); 168];
    let mut days: BTreeMap<i64, Vec<&Gen>> = BTreeMap::new();
    for g in &releases {
        let local = g.start + off;
        let b = (local.div_euclid(DAY_MS) + 3).rem_euclid(7) * 24 + local.div_euclid(HOUR_MS) % 24;
        week[b as usize].count += 1;
        week[b as usize].succeeded += u64::from(g.outcome == Some(DeploymentOutcome::Succeeded));
        days.entry(local.div_euclid(DAY_MS)).or_default().push(g);
    }
    let days = days
        .into_iter()
        .map(|(day, v)| {
            let s = summary_of(&v, DeploymentOutcome::Succeeded);
            DayStats {
                day: at(day * DAY_MS - off),
                count: s.count,
                succeeded: s.succeeded,
                p50: s.p50,
                p95: s.p95,
            }
        })
        .collect();
    let mut hosts: BTreeMap<String, u64> = BTreeMap::new();
    let mut stages: BTreeMap<Stage, u64> = BTreeMap::new();
    for g in all.iter().filter(inside).filter(|g| !g.dry_run) {
        for (h, s) in &g.failures {
            *hosts.entry(h.clone()).or_default() += 1;
            *stages.entry(*s).or_default() += 1;
        }
    }
    let mut hosts: Vec<(String, u64)> = hosts.into_iter().collect();
    hosts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    hosts.truncate(20);
    let mut stages: Vec<(Stage, u64)> = stages.into_iter().collect();
    stages.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    // time to recover, per template in start order
    let mut by_template: BTreeMap<&str, Vec<&Gen>> = BTreeMap::new();
    for g in &releases {
        by_template.entry(&g.template).or_default().push(g);
    }
    let mut recovery = Recovery::default();
    let (mut total, mut max) = (0i64, None::<i64>);
    for v in by_template.values_mut() {
        v.sort_by_key(|g| g.start);
        let mut open: Option<i64> = None;
        for g in v.iter() {
            let Some(o) = g.outcome else { continue };
            let ok = o == DeploymentOutcome::Succeeded;
            if !ok && !is_failed(o) {
                continue;
            }
            let end = g.start + g.duration;
            match (open, ok) {
                (None, false) => {
                    recovery.incidents += 1;
                    open = Some(end);
                }
                (Some(since), true) => {
                    recovery.recovered += 1;
                    total += end - since;
                    max = max.max(Some(end - since));
                    open = None;
                }
                _ => {}
            }
        }
    }
    recovery.mean = (recovery.recovered > 0)
        .then(|| Duration::from_millis((total / recovery.recovered as i64).max(0) as u64));
    recovery.max = max.map(|m| Duration::from_millis(m.max(0) as u64));
    Expected {
        summary: summary_of(&releases, DeploymentOutcome::Succeeded),
        rollbacks: summary_of(&rollbacks, DeploymentOutcome::RolledBack),
        week,
        hosts,
        stages,
        recovery,
        days,
    }
}

/// Statistics over a small generated set (two templates over two weeks: releases of every outcome,
/// rollback requests, dry runs, running deployments, failed hosts in several stages), for every
/// template and one, at UTC and at +01:00 and -05:30, compared with figures computed here: count,
/// success rate, mean, p50 / p95, by hour of day / weekday / hour of week, daily, failing hosts and
/// stages, time to recover, outcome counts.
pub async fn statistics<S: HistoryStore + RecordStore>(store: &S, prefix: &str) {
    let templates = [format!("{prefix}-shop"), format!("{prefix}-billing")];
    let outcomes = [
        DeploymentOutcome::Succeeded,
        DeploymentOutcome::Failed,
        DeploymentOutcome::Succeeded,
        DeploymentOutcome::PartiallyApplied,
        DeploymentOutcome::Failed,
        DeploymentOutcome::Succeeded,
        DeploymentOutcome::Cancelled,
        DeploymentOutcome::Succeeded,
        DeploymentOutcome::RolledBack,
        DeploymentOutcome::Succeeded,
        DeploymentOutcome::RollbackFailed,
    ];
    let hosts = ["web-01", "web-02", "web-03", "db-01"];
    let mut all = Vec::new();
    for (ti, t) in templates.iter().enumerate() {
        for i in 0..40usize {
            // spread over 14 days and every hour, some near midnight
            let start = MONDAY_MS
                + (i as i64 * 37 + ti as i64 * 5) % 14 * DAY_MS
                + (i as i64 * 7 + ti as i64) % 24 * HOUR_MS
                + (i as i64 * 611) % HOUR_MS
                + ti as i64;
            let mut outcome = Some(outcomes[(i + ti) % outcomes.len()]);
            let rollback = i % 9 == 4;
            if rollback {
                outcome = Some(if i % 2 == 0 {
                    DeploymentOutcome::RolledBack
                } else {
                    DeploymentOutcome::RollbackFailed
                });
            }
            if i % 17 == 16 {
                outcome = None; // still running
            }
            let failures = if outcome.is_some_and(is_failed) || outcome.is_none() {
                (0..(i % 3 + 1))
                    .map(|k| {
                        (
                            hosts[(i + k) % hosts.len()].to_owned(),
                            Stage::BATCH[(i + 2 * k) % 3],
                        )
                    })
                    .collect()
            } else {
                Vec::new()
            };
            all.push(Gen {
                id: format!("{prefix}-{ti}-{i:03}"),
                template: t.clone(),
                user: "alice",
                start,
                duration: 1000 + (i as i64 * 7919 + ti as i64 * 31) % 90_000,
                outcome,
                dry_run: i % 13 == 6,
                rollback,
                failures,
            });
        }
    }
    for d in &all {
        record_gen(store, d).await;
    }
    let from = at(MONDAY_MS - DAY_MS);
    let to = at(MONDAY_MS + 13 * DAY_MS); // leaves the last day out
    let windows = [
        Window::new(from, to).templates(templates.clone()),
        Window::new(from, to).template(templates[0].clone()),
        Window::new(from, to)
            .templates(templates.clone())
            .utc_offset(3600),
        Window::new(from, to)
            .template(templates[1].clone())
            .utc_offset(-5 * 3600 - 1800),
    ];
    for w in &windows {
        let what = format!(
            "window {:?} / {:?} at {} s",
            w.template, w.templates, w.utc_offset_secs
        );
        let e = expected(&all, w);
        assert!(e.summary.count > 10, "{what}: the test's own set");
        let s = store
            .stats(w)
            .await
            .unwrap_or_else(|e| panic!("stats ({what}): {e}"));
        assert_eq!(s.summary, e.summary, "{what}: release summary");
        assert_eq!(s.rollbacks, e.rollbacks, "{what}: rollback summary");
        let by_hour: Vec<Rate> = (0..24)
            .map(|h| {
                let mut r = Rate::default();
                for d in 0..7 {
                    r.count += e.week[d * 24 + h].count;
                    r.succeeded += e.week[d * 24 + h].succeeded;
                }
                r
            })
            .collect();
        let by_weekday: Vec<Rate> = (0..7)
            .map(|d| {
                let mut r = Rate::default();
                for h in 0..24 {
                    r.count += e.week[d * 24 + h].count;
                    r.succeeded += e.week[d * 24 + h].succeeded;
                }
                r
            })
            .collect();
        assert_eq!(s.by_hour, by_hour, "{what}: by hour of day");
        assert_eq!(s.by_weekday, by_weekday, "{what}: by weekday");
        assert_eq!(s.hosts, e.hosts, "{what}: hosts ranked by failures");
        assert_eq!(s.stages, e.stages, "{what}: stages ranked by failures");
        assert_eq!(s.recovery, e.recovery, "{what}: time to recover");
        assert!(e.recovery.recovered > 0, "{what}: the test's own incidents");
        let week = store
            .by_hour_of_week(w)
            .await
            .unwrap_or_else(|e| panic!("by_hour_of_week ({what}): {e}"));
        assert_eq!(week, e.week, "{what}: by hour of week");
        let days = store
            .daily(w)
            .await
            .unwrap_or_else(|e| panic!("daily ({what}): {e}"));
        assert_eq!(days, e.days, "{what}: daily series");
    }
    // outcome counts: over every deployment of the store (this check's are the only ones with
    // its prefix, so compare the store's counts with at least these)
    let counts = store
        .deployment_outcome_counts()
        .await
        .unwrap_or_else(|e| panic!("deployment_outcome_counts: {e}"));
    let mut mine: BTreeMap<String, u64> = BTreeMap::new();
    for g in &all {
        if let Some(o) = g.outcome {
            *mine.entry(o.as_str().to_owned()).or_default() += 1;
        }
    }
    let names: Vec<&String> = counts.iter().map(|(o, _)| o).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "outcome counts are ordered by outcome");
    for (o, n) in &mine {
        let got = counts.iter().find(|(c, _)| c == o).map_or(0, |(_, n)| *n);
        assert!(got >= *n, "outcome count of {o}: {got} < {n}");
    }
}

/// Fleet versions and rollback targets recorded through [`FleetState`], and minion states through
/// [`MinionStatusStore`], read back through [`RecordStore`].
pub async fn fleet_and_minions<S: FleetState + LeaseManager + MinionStatusStore + RecordStore>(
    store: &S,
    prefix: &str,
) {
    let template = format!("{prefix}-shop");
    let (w1, w2) = (minion("web-01"), minion("web-02"));
    let lease = store
        .acquire(&template, &format!("{prefix}-d1"))
        .await
        .unwrap_or_else(|e| panic!("lease on {template}: {e}"));
    let both = [w1.clone(), w2.clone()];
    for (hosts, change) in [
        (
            &both[..],
            HostChange::Deployed {
                version: "1.0".into(),
            },
        ),
        (
            &both[..],
            HostChange::Deployed {
                version: "2.0".into(),
            },
        ),
        (&both[1..], HostChange::Failed { runs: None }),
    ] {
        FleetState::record(store, &lease, hosts, &change)
            .await
            .unwrap_or_else(|e| panic!("recording {change:?}: {e}"));
    }
    let fleet = store
        .fleet(&template)
        .await
        .unwrap_or_else(|e| panic!("fleet: {e}"));
    type Row<'a> = (
        &'a str,
        Option<&'a str>,
        bool,
        Option<&'a str>,
        Vec<&'a str>,
    );
    let got: Vec<Row<'_>> = fleet
        .iter()
        .map(|h| {
            (
                h.host.as_str(),
                h.version.as_deref(),
                h.healthy,
                h.previous.as_deref(),
                h.good.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("web-01", Some("2.0"), true, Some("1.0"), vec!["1.0", "2.0"]),
            ("web-02", None, false, Some("2.0"), vec!["1.0", "2.0"]),
        ],
        "fleet: host, version, healthy, rollback target, good versions"
    );
    assert!(
        store
            .fleet(&format!("{prefix}-other"))
            .await
            .unwrap_or_else(|e| panic!("fleet: {e}"))
            .is_empty(),
        "another template's fleet"
    );

    let t = at(MONDAY_MS);
    MinionStatusStore::record(store, &[(w1.clone(), true), (w2.clone(), false)], t)
        .await
        .unwrap_or_else(|e| panic!("recording minion checks: {e}"));
    let t2 = at(MONDAY_MS + 60_000);
    MinionStatusStore::record(store, &[(w1.clone(), true)], t2)
        .await
        .unwrap_or_else(|e| panic!("recording minion checks: {e}"));
    let unknown = minion(&format!("{prefix}-nobody"));
    let states = store
        .minion_states(&[w2.clone(), unknown, w1.clone()])
        .await
        .unwrap_or_else(|e| panic!("minion_states: {e}"));
    let got: Vec<(&str, bool, Option<SystemTime>, SystemTime, SystemTime)> = states
        .iter()
        .map(|s| (s.minion.as_str(), s.up, s.last_seen, s.checked, s.since))
        .collect();
    assert_eq!(
        got,
        [
            ("web-02", false, None, t, t),
            ("web-01", true, Some(t2), t2, t),
        ],
        "minion states in the order asked, unknown minions absent"
    );
}

/// A deployment whose process died mid-batch: `recover` (by another store instance) marks it
/// `interrupted` and names each host's last stage, the stages done and the calls that returned;
/// `interrupted_deployment` reads the same back. `dead` recorded it and has stopped its heartbeat
/// (TTL `ttl`); `live` recovers.
pub async fn recover_interrupted<S: HistoryStore + RecordStore>(
    dead: &S,
    live: &S,
    ttl: Duration,
    prefix: &str,
) {
    let template = format!("{prefix}-shop");
    let id = format!("{prefix}-dead");
    let (w1, w2) = (minion("web-01"), minion("web-02"));
    let t = MONDAY_MS + 5 * HOUR_MS;
    let mut events = vec![
        started(&id, t, &template, "alice", false, false),
        ev(
            &id,
            t + 1,
            EventKind::Prepared {
                hosts: 2,
                batches: 2,
                excluded: Vec::new(),
                plan: vec![vec![w1.clone()], vec![w2.clone()]],
                left_out: Vec::new(),
            },
        ),
    ];
    let mut ms = t + 2;
    let mut stage = |events: &mut Vec<Event>, b: usize, s: Stage, finish: bool| {
        ms += 10;
        events.push(ev(
            &id,
            ms,
            EventKind::StageStarted {
                batch: Some(b),
                stage: s,
                hosts: 1,
            },
        ));
        events.push(ev(
            &id,
            ms + 1,
            EventKind::CallFinished {
                batch: Some(b),
                stage: s,
                fun: format!("step.{}", s.as_str()),
                jid: None,
                ok: 1,
                failed: 0,
                millis: 1,
            },
        ));
        if finish {
            events.push(ev(
                &id,
                ms + 2,
                EventKind::StageFinished {
                    batch: Some(b),
                    stage: s,
                    ok: 1,
                    failed: 0,
                },
            ));
        }
    };
    events.push(ev(
        &id,
        t + 2,
        EventKind::BatchStarted {
            batch: 0,
            hosts: 1,
            minions: vec![w1.clone()],
        },
    ));
    for s in Stage::BATCH {
        stage(&mut events, 0, s, true);
    }
    events.push(ev(
        &id,
        t + 50,
        EventKind::HostSucceeded { host: w1.clone() },
    ));
    events.push(ev(
        &id,
        t + 51,
        EventKind::BatchFinished {
            batch: 0,
            ok: 1,
            failed: 0,
        },
    ));
    events.push(ev(
        &id,
        t + 52,
        EventKind::BatchStarted {
            batch: 1,
            hosts: 1,
            minions: vec![w2.clone()],
        },
    ));
    stage(&mut events, 1, Stage::PreDeploy, true);
    stage(&mut events, 1, Stage::Deploy, false);
    let last = events.iter().map(|e| ms_of(e.at)).max().unwrap_or(t);
    append(dead, &events).await;
    tokio::time::sleep(ttl * 3).await;

    let calls = |stages: &[Stage]| -> Vec<(Stage, Vec<String>)> {
        stages
            .iter()
            .map(|s| (*s, vec![format!("step.{}", s.as_str())]))
            .collect()
    };
    let expected = InterruptedDeployment {
        id: id.clone(),
        template: template.clone(),
        version: "2.0".into(),
        principal: "alice".into(),
        dry_run: false,
        started: at(t),
        last_event: at(last),
        batch: Some(1),
        stage: Stage::Deploy,
        live_hosts: 1,
        rollback: false,
        planned_hosts: Some(2),
        planned_batches: Some(2),
        planned: vec!["web-01".into(), "web-02".into()],
        hosts: vec![
            HostProgress {
                host: "web-01".into(),
                batch: Some(0),
                stage: Stage::PostDeploy,
                status: "succeeded".into(),
                detail: None,
                fun: None,
                stages_done: Stage::BATCH.to_vec(),
                calls_done: Vec::new(),
                stage_calls: calls(&Stage::BATCH),
                batch_finished: true,
            },
            HostProgress {
                host: "web-02".into(),
                batch: Some(1),
                stage: Stage::Deploy,
                status: "interrupted".into(),
                detail: None,
                fun: None,
                stages_done: vec![Stage::PreDeploy],
                calls_done: vec!["step.deploy".into()],
                stage_calls: calls(&[Stage::PreDeploy, Stage::Deploy]),
                batch_finished: false,
            },
        ],
    };
    let found = live
        .recover()
        .await
        .unwrap_or_else(|e| panic!("recover: {e}"));
    let mine: Vec<&InterruptedDeployment> = found.iter().filter(|d| d.id == id).collect();
    assert_eq!(
        mine,
        [&expected],
        "recover: the dead deployment and its hosts"
    );
    let again = live
        .interrupted_deployment(&id)
        .await
        .unwrap_or_else(|e| panic!("interrupted_deployment: {e}"));
    assert_eq!(again.as_ref(), Some(&expected), "interrupted_deployment");
    let r = live
        .deployment(&id)
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("{id} is recorded"));
    assert_eq!(
        r.outcome.as_deref(),
        Some("interrupted"),
        "outcome after recover"
    );
    assert_eq!(r.ended.map(ms_of), Some(last), "end: the last event");
    let statuses: Vec<(String, String)> = live
        .host_results(&id)
        .await
        .unwrap_or_else(|e| panic!("host_results: {e}"))
        .into_iter()
        .map(|h| (h.host, h.status))
        .collect();
    assert_eq!(
        statuses,
        [
            ("web-01".to_owned(), "succeeded".to_owned()),
            ("web-02".to_owned(), "interrupted".to_owned())
        ],
        "host results of the interrupted deployment"
    );
    assert!(
        live.recover()
            .await
            .unwrap_or_else(|e| panic!("recover again: {e}"))
            .iter()
            .all(|d| d.id != id),
        "a second recover finds nothing more of it"
    );
}
