//! The store conformance suite (feature `store-conformance`): the checks every durable store passes,
//! run unchanged against each backend (SQLite in `pushguide-store`, PostgreSQL in
//! `pushguide-postgres`), like object_store's integration suite.
//!
//! ```text
//! #[tokio::test]
//! async fn fleet_state() {
//!     let store = open_a_fresh_store().await;
//!     pushguide_core::store_conformance::fleet_state(&store, "t").await;
//! }
//! ```
//! Every check is an async function over the ports ([`HistoryStore`], [`FleetState`],
//! [`LeaseManager`], [`MinionStatusStore`]) and panics with a message saying what went wrong.
//! `prefix` is put in front of every template and deployment id, so checks may share a database.
//! Reading a journal back is not part of the ports: a backend's test implements [`JournalView`] with
//! its own read functions.
//!
//! - [`journal_order`] — events appended in uneven batches, two deployments interleaved in one
//!   append, read back in order with the report's outcome; events of an unknown deployment refused;
//! - [`fleet_state`] — current versions and rollback targets through releases, failures and
//!   rollbacks, per template, for few and many hosts;
//! - [`leases`] — one holder per template, tokens that only grow, release of stale leases a no-op;
//! - [`lease_race`] — two instances asking for one lease at the same moment: exactly one gets it;
//! - [`takeover_fences`] — a lease whose instance stopped renewing expires; another instance takes
//!   it over with the next token and the old holder's fleet state writes are refused;
//! - [`journal_fencing`] — for stores that fence the journal too (PostgreSQL): a taken-over
//!   deployment's journal and report are refused, while a merely expired one still records its end;
//! - [`minion_status`] — state changes and last seen times.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use crate::model::event::{Event, EventKind};
use crate::model::report::Report;
use crate::ports::fleet::{FleetState, HostChange};
use crate::ports::history::HistoryStore;
use crate::ports::lease::LeaseManager;
use crate::ports::status::MinionStatusStore;
use crate::vocab::call::MinionId;
use crate::vocab::error::Error;
use crate::vocab::outcome::DeploymentOutcome;
use crate::vocab::stage::Stage;

/// What a store recorded of one deployment, as [`journal_order`] checks it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recorded {
    /// Template.
    pub template: String,
    /// Version.
    pub version: String,
    /// The outcome of its report (`None` before [`HistoryStore::finish`]).
    pub outcome: Option<String>,
    /// How many events were recorded.
    pub events: u64,
    /// The salt functions of its `CallFinished` events, in journal order.
    pub calls: Vec<String>,
}

/// Reads a recorded deployment back (each backend's test implements it with its read functions).
#[async_trait]
pub trait JournalView: Send + Sync {
    /// The deployment `id`, if recorded.
    async fn recorded(&self, id: &str) -> Result<Option<Recorded>, String>;
}

fn at(ms: u64) -> SystemTime {
    // whole milliseconds: every backend keeps at least that precision
    SystemTime::UNIX_EPOCH + Duration::from_millis(1_760_000_000_000 + ms)
}

fn minion(name: &str) -> MinionId {
    MinionId::new(name).unwrap_or_else(|e| panic!("test minion id {name}: {e}"))
}

fn event(id: &Arc<str>, ms: u64, kind: EventKind) -> Event {
    Event {
        at: at(ms),
        deployment: id.clone(),
        kind,
    }
}

/// A release of two batches (one host each), with the salt functions `funs[batch]`, in order.
fn release_events(id: &Arc<str>, template: &str, t0: u64, funs: &[[&str; 2]; 2]) -> Vec<Event> {
    let hosts = [minion("web-01"), minion("web-02")];
    let mut ms = t0;
    let mut next = || {
        ms += 1;
        ms
    };
    let mut v = vec![
        event(
            id,
            next(),
            EventKind::DeploymentStarted {
                template: template.to_owned(),
                version: "2.0".to_owned(),
                user: "alice".to_owned(),
                dry_run: false,
                rollback: false,
            },
        ),
        event(
            id,
            next(),
            EventKind::Prepared {
                hosts: 2,
                batches: 2,
                excluded: Vec::new(),
                plan: vec![vec![hosts[0].clone()], vec![hosts[1].clone()]],
                left_out: Vec::new(),
            },
        ),
    ];
    for (b, host) in hosts.iter().enumerate() {
        v.push(event(
            id,
            next(),
            EventKind::BatchStarted {
                batch: b,
                hosts: 1,
                minions: vec![host.clone()],
            },
        ));
        for (stage, fun) in [Stage::Deploy, Stage::PostDeploy].into_iter().zip(funs[b]) {
            v.push(event(
                id,
                next(),
                EventKind::StageStarted {
                    batch: Some(b),
                    stage,
                    hosts: 1,
                },
            ));
            v.push(event(
                id,
                next(),
                EventKind::CallFinished {
                    batch: Some(b),
                    stage,
                    fun: fun.to_owned(),
                    jid: Some(format!("2026{b}{}", stage.as_str().len())),
                    ok: 1,
                    failed: 0,
                    millis: 5,
                },
            ));
            v.push(event(
                id,
                next(),
                EventKind::StageFinished {
                    batch: Some(b),
                    stage,
                    ok: 1,
                    failed: 0,
                },
            ));
        }
        v.push(event(
            id,
            next(),
            EventKind::HostSucceeded { host: host.clone() },
        ));
        v.push(event(
            id,
            next(),
            EventKind::BatchFinished {
                batch: b,
                ok: 1,
                failed: 0,
            },
        ));
    }
    v
}

fn report(id: &str, template: &str, outcome: DeploymentOutcome, t0: u64) -> Report {
    Report {
        id: id.to_owned(),
        template: template.to_owned(),
        version: "2.0".to_owned(),
        user: "alice".to_owned(),
        dry_run: false,
        outcome,
        reason: None,
        started: at(t0 + 1),
        duration: Duration::from_millis(40),
        batches: vec![vec![minion("web-01")], vec![minion("web-02")]],
        hosts: Vec::new(),
        calls: Vec::new(),
        events: Vec::new(),
        history_error: None,
    }
}

async fn read(view: &impl JournalView, id: &str) -> Recorded {
    view.recorded(id)
        .await
        .unwrap_or_else(|e| panic!("reading deployment {id} back: {e}"))
        .unwrap_or_else(|| panic!("deployment {id} is not recorded"))
}

/// The journal keeps every event of a deployment in the order appended, across uneven append
/// batches and with two deployments interleaved in one append; the report adds the outcome; events
/// of a deployment whose start was never appended are refused.
pub async fn journal_order<S: HistoryStore + JournalView>(store: &S, prefix: &str) {
    let template = format!("{prefix}-shop");
    let a: Arc<str> = format!("{prefix}-a").into();
    let b: Arc<str> = format!("{prefix}-b").into();
    let mut ea = release_events(
        &a,
        &template,
        0,
        &[["cmd.run", "http.query"], ["file.copy", "service.restart"]],
    );
    let mut eb = release_events(
        &b,
        &template,
        1000,
        &[["state.apply", "test.ping"], ["cp.get_file", "file.remove"]],
    );
    ea.push(event(
        &a,
        100,
        EventKind::DeploymentFinished {
            outcome: DeploymentOutcome::Succeeded,
        },
    ));
    eb.push(event(
        &b,
        1100,
        EventKind::DeploymentFinished {
            outcome: DeploymentOutcome::Failed,
        },
    ));
    // a: 1, then 4; then a's next 5 and b's first 7 in one append; then the rest of each
    let appends: Vec<Vec<Event>> = vec![
        ea[..1].to_vec(),
        ea[1..5].to_vec(),
        [&ea[5..10], &eb[..7]].concat(),
        eb[7..].to_vec(),
        ea[10..].to_vec(),
    ];
    for (i, batch) in appends.iter().enumerate() {
        store
            .append(batch)
            .await
            .unwrap_or_else(|e| panic!("append {i} ({} events): {e}", batch.len()));
    }
    let ra = read(store, &a).await;
    assert_eq!(ra.template, template);
    assert_eq!(ra.version, "2.0");
    assert_eq!(ra.events, ea.len() as u64, "events recorded for {a}");
    assert_eq!(
        ra.calls,
        ["cmd.run", "http.query", "file.copy", "service.restart"],
        "the calls of {a} in journal order"
    );
    assert_eq!(ra.outcome, None, "no outcome before the report");
    let rb = read(store, &b).await;
    assert_eq!(rb.events, eb.len() as u64, "events recorded for {b}");
    assert_eq!(
        rb.calls,
        ["state.apply", "test.ping", "cp.get_file", "file.remove"],
        "the calls of {b} in journal order"
    );
    store
        .finish(&report(&a, &template, DeploymentOutcome::Succeeded, 0))
        .await
        .unwrap_or_else(|e| panic!("report of {a}: {e}"));
    store
        .finish(&report(&b, &template, DeploymentOutcome::Failed, 1000))
        .await
        .unwrap_or_else(|e| panic!("report of {b}: {e}"));
    assert_eq!(read(store, &a).await.outcome.as_deref(), Some("succeeded"));
    let rb = read(store, &b).await;
    assert_eq!(rb.outcome.as_deref(), Some("failed"));
    assert_eq!(rb.events, eb.len() as u64, "the report adds no events");
    // a deployment nobody started
    let ghost: Arc<str> = format!("{prefix}-ghost").into();
    let orphan = event(
        &ghost,
        5,
        EventKind::BatchFinished {
            batch: 0,
            ok: 1,
            failed: 0,
        },
    );
    assert!(
        store.append(&[orphan]).await.is_err(),
        "events of a deployment whose start was never appended must be refused"
    );
    assert!(
        store
            .recorded(&ghost)
            .await
            .unwrap_or_else(|e| panic!("reading {ghost}: {e}"))
            .is_none(),
        "a refused append leaves nothing behind"
    );
}

fn deployed(v: &str) -> HostChange {
    HostChange::Deployed { version: v.into() }
}

/// Current versions and rollback targets through releases, a failure and rollbacks; templates are
/// kept apart; unrecorded hosts are absent; 40 hosts at once.
pub async fn fleet_state<S: FleetState + LeaseManager>(store: &S, prefix: &str) {
    let shop = format!("{prefix}-shop");
    let other = format!("{prefix}-other");
    let (w1, w2, w3) = (minion("web-01"), minion("web-02"), minion("web-03"));
    let both = [w1.clone(), w2.clone()];
    let lease = store
        .acquire(&shop, &format!("{prefix}-d1"))
        .await
        .unwrap_or_else(|e| panic!("lease on {shop}: {e}"));
    let record = |hosts: &'static str, change: HostChange| {
        let hosts: Vec<MinionId> = match hosts {
            "both" => both.to_vec(),
            "web-01" => vec![w1.clone()],
            _ => vec![w2.clone()],
        };
        let lease = lease.clone();
        async move {
            store
                .record(&lease, &hosts, &change)
                .await
                .unwrap_or_else(|e| panic!("recording {change:?}: {e}"));
        }
    };
    for v in ["1.0", "2.0", "3.0"] {
        record("both", deployed(v)).await;
    }
    // 4.0 failed on web-02 after switching
    record(
        "web-02",
        HostChange::Failed {
            runs: Some("4.0".into()),
        },
    )
    .await;
    let all = [w1.clone(), w2.clone(), w3.clone()];
    let h = store
        .versions(&shop, &all)
        .await
        .unwrap_or_else(|e| panic!("versions: {e}"));
    assert_eq!(h.len(), 2, "web-03 was never recorded: {h:?}");
    assert_eq!(h[&w1].current.as_deref(), Some("3.0"));
    assert!(h[&w1].healthy);
    assert_eq!(h[&w1].previous.as_deref(), Some("2.0"));
    assert_eq!(h[&w2].current.as_deref(), Some("4.0"));
    assert!(
        !h[&w2].healthy,
        "a failed release leaves the host unhealthy"
    );
    assert_eq!(
        h[&w2].previous.as_deref(),
        Some("3.0"),
        "the target of a failed host is its last good version"
    );
    // web-02 rolled back to 3.0, then both back to 2.0: the next target is 1.0, never 3.0 or 4.0
    record("web-02", HostChange::RolledBack { to: "3.0".into() }).await;
    record("both", HostChange::RolledBack { to: "2.0".into() }).await;
    let h = store
        .versions(&shop, &both)
        .await
        .unwrap_or_else(|e| panic!("versions: {e}"));
    for w in &both {
        assert_eq!(h[w].current.as_deref(), Some("2.0"), "{w}");
        assert!(h[w].healthy, "{w}");
        assert_eq!(h[w].previous.as_deref(), Some("1.0"), "{w}");
    }
    // another template knows nothing of these hosts
    let h = store
        .versions(&other, &both)
        .await
        .unwrap_or_else(|e| panic!("versions: {e}"));
    assert!(h.is_empty(), "{other} shares nothing with {shop}: {h:?}");
    // many hosts at once
    let many: Vec<MinionId> = (0..40).map(|i| minion(&format!("app-{i:02}"))).collect();
    store
        .record(&lease, &many, &deployed("7.0"))
        .await
        .unwrap_or_else(|e| panic!("recording 40 hosts: {e}"));
    store
        .record(&lease, &many[..10], &deployed("8.0"))
        .await
        .unwrap_or_else(|e| panic!("recording 10 hosts: {e}"));
    let h = store
        .versions(&shop, &many)
        .await
        .unwrap_or_else(|e| panic!("versions of 40 hosts: {e}"));
    assert_eq!(h.len(), 40);
    for (i, m) in many.iter().enumerate() {
        let (cur, prev) = if i < 10 {
            ("8.0", Some("7.0"))
        } else {
            ("7.0", None)
        };
        assert_eq!(h[m].current.as_deref(), Some(cur), "{m}");
        assert_eq!(h[m].previous.as_deref(), prev, "{m}");
    }
    store
        .release(&lease)
        .await
        .unwrap_or_else(|e| panic!("release: {e}"));
}

/// One holder per template; tokens grow with every acquisition; releasing a stale or foreign lease
/// does nothing; a released lease is lost for good.
pub async fn leases<S: LeaseManager>(store: &S, prefix: &str) {
    let shop = format!("{prefix}-shop");
    let id = |n: u32| format!("{prefix}-d{n}");
    let d1 = store
        .acquire(&shop, &id(1))
        .await
        .unwrap_or_else(|e| panic!("first lease: {e}"));
    match store.acquire(&shop, &id(2)).await {
        Err(Error::Busy { holder, .. }) => assert_eq!(holder, id(1), "Busy names the holder"),
        other => panic!("a second holder must be refused with Busy: {other:?}"),
    }
    assert!(
        store.acquire(&shop, &id(1)).await.is_err(),
        "a lease has one owner: the same holder name is refused too"
    );
    store
        .check(&d1)
        .await
        .unwrap_or_else(|e| panic!("check of a held lease: {e}"));
    // someone else's lease, or a stale token: no-ops
    let mut foreign = d1.clone();
    foreign.holder = id(2);
    store
        .release(&foreign)
        .await
        .unwrap_or_else(|e| panic!("releasing a foreign lease must be a no-op: {e}"));
    let mut stale = d1.clone();
    stale.token += 7;
    store
        .release(&stale)
        .await
        .unwrap_or_else(|e| panic!("releasing a stale token must be a no-op: {e}"));
    assert!(
        store.acquire(&shop, &id(3)).await.is_err(),
        "the lease is still held"
    );
    store
        .release(&d1)
        .await
        .unwrap_or_else(|e| panic!("release: {e}"));
    match store.check(&d1).await {
        Err(Error::LeaseLost { .. }) => {}
        other => panic!("a released lease must be lost: {other:?}"),
    }
    let d3 = store
        .acquire(&shop, &id(3))
        .await
        .unwrap_or_else(|e| panic!("lease after release: {e}"));
    assert!(
        d3.token > d1.token,
        "tokens only grow: {} then {}",
        d1.token,
        d3.token
    );
    assert!(store.check(&d1).await.is_err(), "the old lease stays lost");
    store
        .check(&d3)
        .await
        .unwrap_or_else(|e| panic!("check of the new lease: {e}"));
    let other = store
        .acquire(&format!("{prefix}-other"), &id(4))
        .await
        .unwrap_or_else(|e| panic!("templates are leased independently: {e}"));
    store
        .release(&other)
        .await
        .unwrap_or_else(|e| panic!("release: {e}"));
    store
        .release(&d3)
        .await
        .unwrap_or_else(|e| panic!("release: {e}"));
}

/// Two instances (`a`, `b`: two stores on one database) ask for the same template's lease at the
/// same moment, `rounds` times: each time exactly one gets it, the other is told who holds it, and
/// tokens grow from round to round.
pub async fn lease_race<S: LeaseManager>(a: &S, b: &S, prefix: &str, rounds: u32) {
    let template = format!("{prefix}-race");
    let mut last = 0;
    for round in 0..rounds {
        let (ha, hb) = (format!("{prefix}-a{round}"), format!("{prefix}-b{round}"));
        let (ra, rb) = tokio::join!(a.acquire(&template, &ha), b.acquire(&template, &hb));
        let (won, lost_err, winner) = match (ra, rb) {
            (Ok(l), Err(e)) => (l, e, &ha),
            (Err(e), Ok(l)) => (l, e, &hb),
            (Ok(_), Ok(_)) => panic!("round {round}: both instances got the lease"),
            (Err(x), Err(y)) => panic!("round {round}: neither got the lease: {x} / {y}"),
        };
        match lost_err {
            Error::Busy { holder, .. } => assert_eq!(&holder, winner, "round {round}"),
            other => panic!("round {round}: the loser must get Busy: {other}"),
        }
        assert!(
            won.token > last,
            "round {round}: token {} after {last}",
            won.token
        );
        last = won.token;
        let owner: &S = if *winner == ha { a } else { b };
        owner
            .release(&won)
            .await
            .unwrap_or_else(|e| panic!("round {round}: release: {e}"));
    }
}

/// `old`'s lease expires because its instance stopped renewing (the caller stopped `old`'s
/// heartbeat before calling; `ttl` is its lease TTL): once expired, `old`'s fleet writes are refused
/// even before anyone takes over and its check reports the loss; `new` (another instance) then takes
/// the lease over with the next token, its writes go through, and `old`'s writes and release change
/// nothing.
pub async fn takeover_fences<S: LeaseManager + FleetState>(
    old: &S,
    new: &S,
    ttl: Duration,
    prefix: &str,
) {
    let shop = format!("{prefix}-shop");
    let web = [minion("web-01")];
    let l1 = old
        .acquire(&shop, &format!("{prefix}-old"))
        .await
        .unwrap_or_else(|e| panic!("old lease: {e}"));
    old.record(&l1, &web, &deployed("1.0"))
        .await
        .unwrap_or_else(|e| panic!("a write under a live lease: {e}"));
    match new.acquire(&shop, &format!("{prefix}-new")).await {
        Err(Error::Busy { .. }) => {}
        other => panic!("a live lease must not be taken over: {other:?}"),
    }
    tokio::time::sleep(ttl + ttl / 2 + Duration::from_millis(50)).await;
    match old.record(&l1, &web, &deployed("1.1")).await {
        Err(Error::Fenced { token, .. }) => assert_eq!(token, l1.token),
        other => panic!("a write under an expired lease must be fenced: {other:?}"),
    }
    match old.check(&l1).await {
        Err(Error::LeaseLost { .. }) => {}
        other => panic!("the check of an expired lease must report it lost: {other:?}"),
    }
    let l2 = new
        .acquire(&shop, &format!("{prefix}-new"))
        .await
        .unwrap_or_else(|e| panic!("taking over an expired lease: {e}"));
    assert_eq!(l2.token, l1.token + 1, "a takeover takes the next token");
    new.record(&l2, &web, &deployed("2.0"))
        .await
        .unwrap_or_else(|e| panic!("the new holder writes: {e}"));
    match old.record(&l1, &web, &deployed("1.2")).await {
        Err(Error::Fenced { token, .. }) => assert_eq!(token, l1.token),
        other => panic!("the old holder must be fenced after the takeover: {other:?}"),
    }
    old.release(&l1)
        .await
        .unwrap_or_else(|e| panic!("releasing a lost lease must be a no-op: {e}"));
    new.check(&l2)
        .await
        .unwrap_or_else(|e| panic!("the old holder's release must not touch the new lease: {e}"));
    let h = new
        .versions(&shop, &web)
        .await
        .unwrap_or_else(|e| panic!("versions: {e}"));
    assert_eq!(h[&web[0]].current.as_deref(), Some("2.0"));
    assert_eq!(h[&web[0]].previous.as_deref(), Some("1.0"));
    new.release(&l2)
        .await
        .unwrap_or_else(|e| panic!("release: {e}"));
}

/// For stores that fence the journal (PostgreSQL; the SQLite journal is not fenced): a deployment
/// whose lease merely expired still records its events and report (its own end, nobody else's);
/// once another deployment took the template's lease, the old deployment's appends and report are
/// refused with [`Error::Fenced`]. The caller stopped `old`'s heartbeat before calling.
pub async fn journal_fencing<S: LeaseManager + HistoryStore>(
    old: &S,
    new: &S,
    ttl: Duration,
    prefix: &str,
) {
    let shop = format!("{prefix}-shop");
    let run = |id: &str, t0: u64| {
        let id: Arc<str> = id.into();
        release_events(
            &id,
            &shop,
            t0,
            &[["cmd.run", "http.query"], ["file.copy", "service.restart"]],
        )
    };
    // expired, nobody took over: the journal still takes the deployment's end
    let d1 = format!("{prefix}-d1");
    let l1 = old
        .acquire(&shop, &d1)
        .await
        .unwrap_or_else(|e| panic!("lease: {e}"));
    let e1 = run(&d1, 0);
    old.append(&e1[..3])
        .await
        .unwrap_or_else(|e| panic!("append under a live lease: {e}"));
    tokio::time::sleep(ttl + ttl / 2 + Duration::from_millis(50)).await;
    old.append(&e1[3..]).await.unwrap_or_else(|e| {
        panic!("an expired lease nobody took must not refuse the journal: {e}")
    });
    old.finish(&report(&d1, &shop, DeploymentOutcome::Failed, 0))
        .await
        .unwrap_or_else(|e| panic!("report after expiry: {e}"));
    // taken over: refused
    let d2 = format!("{prefix}-d2");
    let l2 = old
        .acquire(&shop, &d2)
        .await
        .unwrap_or_else(|e| panic!("lease after the expired one: {e}"));
    assert!(l2.token > l1.token);
    let e2 = run(&d2, 1000);
    old.append(&e2[..3])
        .await
        .unwrap_or_else(|e| panic!("append under a live lease: {e}"));
    tokio::time::sleep(ttl + ttl / 2 + Duration::from_millis(50)).await;
    let l3 = new
        .acquire(&shop, &format!("{prefix}-d3"))
        .await
        .unwrap_or_else(|e| panic!("takeover: {e}"));
    assert_eq!(l3.token, l2.token + 1);
    match old.append(&e2[3..]).await {
        Err(Error::Fenced { token, .. }) => assert_eq!(token, l2.token),
        other => panic!("the journal of a taken-over deployment must be fenced: {other:?}"),
    }
    match old
        .finish(&report(&d2, &shop, DeploymentOutcome::Failed, 1000))
        .await
    {
        Err(Error::Fenced { .. }) => {}
        other => panic!("the report of a taken-over deployment must be fenced: {other:?}"),
    }
    new.release(&l3)
        .await
        .unwrap_or_else(|e| panic!("release: {e}"));
}

/// State changes and last seen times of minions.
pub async fn minion_status<S: MinionStatusStore>(store: &S, prefix: &str) {
    let (a, b) = (
        minion(&format!("{prefix}-m1")),
        minion(&format!("{prefix}-m2")),
    );
    let changes = store
        .record(&[(a.clone(), true), (b.clone(), false)], at(10))
        .await
        .unwrap_or_else(|e| panic!("first check: {e}"));
    assert_eq!(changes.len(), 2, "first sight is a change: {changes:?}");
    assert!(changes.iter().all(|c| c.was_up.is_none()));
    let changes = store
        .record(&[(a.clone(), true), (b.clone(), true)], at(20))
        .await
        .unwrap_or_else(|e| panic!("second check: {e}"));
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(changes[0].minion, b);
    assert_eq!(changes[0].was_up, Some(false));
    assert!(changes[0].up);
    assert_eq!(changes[0].at, at(20));
    let changes = store
        .record(&[(a.clone(), false)], at(30))
        .await
        .unwrap_or_else(|e| panic!("third check: {e}"));
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].was_up, Some(true));
    let ghost = minion(&format!("{prefix}-never"));
    let s = store
        .status(&[a.clone(), b.clone(), ghost])
        .await
        .unwrap_or_else(|e| panic!("status: {e}"));
    assert_eq!(s.len(), 2, "a minion never checked is absent: {s:?}");
    let sa = s
        .iter()
        .find(|x| x.minion == a)
        .unwrap_or_else(|| panic!("{a} missing"));
    assert!(!sa.up);
    assert_eq!(sa.last_seen, Some(at(20)));
    assert_eq!(sa.checked, at(30));
    assert_eq!(sa.since, at(30));
    let sb = s
        .iter()
        .find(|x| x.minion == b)
        .unwrap_or_else(|| panic!("{b} missing"));
    assert!(sb.up);
    assert_eq!(sb.last_seen, Some(at(20)));
    assert_eq!(sb.since, at(20));
    assert!(store
        .record(&[], at(40))
        .await
        .unwrap_or_else(|e| panic!("an empty check: {e}"))
        .is_empty());
}
