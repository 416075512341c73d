//! Statistics over a small hand-computed history.

use std::time::Duration;

use pushguide_core::DeploymentOutcome::{Cancelled, Failed, RolledBack, Succeeded};
use pushguide_core::Stage;
use pushguide_store::{SqliteStore, Window};

use crate::support::*;

const H: u64 = 3600;
const D: u64 = 86_400;

/// Week of Monday 2026-01-05 (UTC):
/// a1 Mon 09:00  60 s ok          a2 Mon 10:00 120 s failed (web-02 deploy)
/// a3 Tue 10:00 180 s failed (web-02 deploy, web-01 pre-deploy)   a4 Tue 11:00 240 s ok
/// b1 Wed 09:00 300 s rolled back (web-03 post-deploy)   b2 Wed 09:30 600 s ok
/// b3 Thu 09:00  30 s cancelled   b4 Thu 10:00 dry run (web-09 deploy)   b5 next Monday, ok
fn history() -> SqliteStore {
    let s = SqliteStore::open_in_memory().unwrap();
    let runs = [
        deployment(
            "a1",
            "a",
            at(9 * H),
            60,
            &["web-01", "web-02"],
            &[],
            Succeeded,
            false,
        ),
        deployment(
            "a2",
            "a",
            at(10 * H),
            120,
            &["web-01"],
            &[("web-02", Stage::Deploy)],
            Failed,
            false,
        ),
        deployment(
            "a3",
            "a",
            at(D + 10 * H),
            180,
            &[],
            &[("web-02", Stage::Deploy), ("web-01", Stage::PreDeploy)],
            Failed,
            false,
        ),
        deployment(
            "a4",
            "a",
            at(D + 11 * H),
            240,
            &["web-01", "web-02"],
            &[],
            Succeeded,
            false,
        ),
        deployment(
            "b1",
            "b",
            at(2 * D + 9 * H),
            300,
            &[],
            &[("web-03", Stage::PostDeploy)],
            RolledBack,
            false,
        ),
        deployment(
            "b2",
            "b",
            at(2 * D + 9 * H + 1800),
            600,
            &["web-03"],
            &[],
            Succeeded,
            false,
        ),
        deployment(
            "b3",
            "b",
            at(3 * D + 9 * H),
            30,
            &["web-03"],
            &[],
            Cancelled,
            false,
        ),
        deployment(
            "b4",
            "b",
            at(3 * D + 10 * H),
            60,
            &[],
            &[("web-09", Stage::Deploy)],
            Failed,
            true,
        ),
        deployment("b5", "b", at(7 * D), 60, &["web-03"], &[], Succeeded, false),
    ];
    for events in runs {
        record(&s, &events);
    }
    s
}

fn week() -> Window {
    Window::new(at(0), at(7 * D))
}

#[test]
fn summary_overall_and_per_template() {
    let s = history();
    let all = s.summary(&week()).unwrap();
    assert_eq!((all.count, all.succeeded), (7, 3));
    assert_eq!(all.success_rate, Some(3.0 / 7.0));
    // (30 + 60 + 120 + 180 + 240 + 300 + 600) s / 7
    assert_eq!(all.mean, Some(Duration::from_micros(218_571_428)));
    assert_eq!(all.p50, Some(Duration::from_secs(180)));
    assert_eq!(all.p95, Some(Duration::from_secs(600)));

    let a = s.summary(&week().template("a")).unwrap();
    assert_eq!((a.count, a.succeeded, a.success_rate), (4, 2, Some(0.5)));
    assert_eq!(a.mean, Some(Duration::from_secs(150)));
    assert_eq!(a.p50, Some(Duration::from_secs(120)));
    assert_eq!(a.p95, Some(Duration::from_secs(240)));

    let none = s.summary(&Window::new(at(30 * D), at(31 * D))).unwrap();
    assert_eq!((none.count, none.success_rate, none.p50), (0, None, None));
}

#[test]
fn success_by_hour_and_weekday() {
    let s = history();
    let h = s.by_hour(&week()).unwrap();
    assert_eq!(h.len(), 24);
    assert_eq!((h[9].count, h[9].succeeded), (4, 2));
    assert_eq!((h[10].count, h[10].succeeded), (2, 0));
    assert_eq!((h[11].count, h[11].succeeded), (1, 1));
    assert_eq!(h.iter().map(|r| r.count).sum::<u64>(), 7);
    assert_eq!(h[9].rate(), Some(0.5));
    assert_eq!(h[0].rate(), None);

    let w = s.by_weekday(&week()).unwrap();
    let got: Vec<_> = w.iter().map(|r| (r.count, r.succeeded)).collect();
    assert_eq!(
        got,
        [(2, 1), (2, 1), (2, 1), (1, 0), (0, 0), (0, 0), (0, 0)]
    );
    let b = s.by_weekday(&week().template("b")).unwrap();
    assert_eq!((b[2].count, b[2].succeeded, b[3].count), (2, 1, 1));
}

#[test]
fn hosts_and_stages_ranked_by_failures() {
    let s = history();
    assert_eq!(
        s.host_failures(&week(), 10).unwrap(),
        [
            ("web-02".to_owned(), 2),
            ("web-01".to_owned(), 1),
            ("web-03".to_owned(), 1)
        ]
    );
    assert_eq!(s.host_failures(&week(), 1).unwrap().len(), 1);
    assert_eq!(
        s.stage_failures(&week()).unwrap(),
        [
            (Stage::Deploy, 2),
            (Stage::PreDeploy, 1),
            (Stage::PostDeploy, 1)
        ]
    );
    assert_eq!(
        s.stage_failures(&week().template("b")).unwrap(),
        [(Stage::PostDeploy, 1)]
    );
}

#[test]
fn time_to_recover() {
    let s = history();
    let r = s.time_to_recover(&week()).unwrap();
    // a: a2 ended Mon 10:02, a4 ended Tue 11:04 -> 25 h 2 min; b: b1 ended 09:05, b2 09:40 -> 35 min.
    assert_eq!((r.incidents, r.recovered), (2, 2));
    assert_eq!(r.max, Some(Duration::from_secs(90_120)));
    assert_eq!(r.mean, Some(Duration::from_secs((90_120 + 2_100) / 2)));
    let a = s.time_to_recover(&week().template("a")).unwrap();
    assert_eq!(
        (a.incidents, a.recovered, a.mean),
        (1, 1, Some(Duration::from_secs(90_120)))
    );
    // A window ending before the recovery: an open incident.
    let open = s
        .time_to_recover(&Window::new(at(0), at(D)).template("a"))
        .unwrap();
    assert_eq!((open.incidents, open.recovered, open.mean), (1, 0, None));
    let all = s.stats(&week()).unwrap();
    assert_eq!(all.recovery, r);
    assert_eq!(all.summary.count, 7);
}

/// `events` as a rollback request (its `DeploymentStarted` says so).
fn as_rollback(mut events: Vec<pushguide_core::Event>) -> Vec<pushguide_core::Event> {
    for e in &mut events {
        if let pushguide_core::EventKind::DeploymentStarted { rollback, .. } = &mut e.kind {
            *rollback = true;
        }
    }
    events
}

/// 4 of 6 releases succeeded and 3 rollback requests rolled every host back: the releases' success
/// rate is 4/6 (it was 4/9, the rollbacks counted as failed releases), the rollbacks are a series of
/// their own, and a rollback neither opens nor closes an incident.
#[test]
fn rollbacks_are_their_own_series() {
    let s = SqliteStore::open_in_memory().unwrap();
    let outcomes = [Succeeded, Failed, Succeeded, Succeeded, Failed, Succeeded];
    for (i, o) in outcomes.into_iter().enumerate() {
        let i = i as u64;
        let ok: &[&str] = if o == Succeeded { &["web-01"] } else { &[] };
        let failed: &[(&str, Stage)] = if o == Succeeded {
            &[]
        } else {
            &[("web-01", Stage::Deploy)]
        };
        record(
            &s,
            &deployment(&format!("r{i}"), "a", at(i * H), 60, ok, failed, o, false),
        );
    }
    for i in 0..3u64 {
        record(
            &s,
            &as_rollback(deployment(
                &format!("rb{i}"),
                "a",
                at(10 * H + i * H),
                20 + 10 * i,
                &["web-01"],
                &[],
                RolledBack,
                false,
            )),
        );
    }
    let st = s.stats(&week()).unwrap();
    assert_eq!((st.summary.count, st.summary.succeeded), (6, 4));
    assert_eq!(st.summary.success_rate, Some(4.0 / 6.0));
    assert_eq!(st.summary.p95, Some(Duration::from_secs(60)));
    assert_eq!((st.rollbacks.count, st.rollbacks.succeeded), (3, 3));
    assert_eq!(st.rollbacks.success_rate, Some(1.0));
    assert_eq!(st.rollbacks.mean, Some(Duration::from_secs(30)));
    assert_eq!(st.rollbacks.p50, Some(Duration::from_secs(30)));
    assert_eq!(s.rollback_summary(&week().template("b")).unwrap().count, 0);
    // hours count releases only: the rollbacks at 10:00–12:00 are not there
    assert_eq!(st.by_hour.iter().map(|r| r.count).sum::<u64>(), 6);
    assert_eq!(st.by_hour[10].count, 0);
    // r1 failed, r2 recovered; r4 failed, r5 recovered: two incidents, no rollback involved
    assert_eq!((st.recovery.incidents, st.recovery.recovered), (2, 2));
}

/// Hours and weekdays at a fixed UTC offset: a1 Mon 09:00 UTC is 11:00 at +02:00 and 03:30 at
/// -05:30; a deployment at Mon 02:00 UTC is Sunday 20:30 at -05:30.
#[test]
fn hours_and_weekdays_at_a_utc_offset() {
    let s = history();
    let plus2 = s.by_hour(&week().utc_offset(2 * 3600)).unwrap();
    let utc = s.by_hour(&week()).unwrap();
    for h in 0..24 {
        assert_eq!(plus2[(h + 2) % 24], utc[h], "hour {h}");
    }
    assert_eq!((plus2[11].count, plus2[11].succeeded), (4, 2));
    assert_eq!(plus2[9].count, 0);
    let minus = week().utc_offset(-(5 * 3600 + 1800));
    // 09:00 -> 03:30, 09:30 -> 04:00, 10:00 -> 04:30, 11:00 -> 05:30
    let h = s.by_hour(&minus).unwrap();
    let got: Vec<_> = h.iter().map(|r| r.count).collect();
    let mut want = vec![0; 24];
    want[3] = 3; // a1, b1, b3 at 09:00 UTC
    want[4] = 3; // b2 at 09:30, a2 and a3 at 10:00
    want[5] = 1; // a4 at 11:00
    assert_eq!(got, want);
    let early = SqliteStore::open_in_memory().unwrap();
    record(
        &early,
        &deployment("e1", "a", at(2 * H), 60, &["web-01"], &[], Succeeded, false),
    );
    let w = early.by_weekday(&week()).unwrap();
    assert_eq!(w[0].count, 1, "Monday in UTC");
    let w = early
        .by_weekday(&Window::new(at(0), at(D)).utc_offset(-(5 * 3600 + 1800)))
        .unwrap();
    assert_eq!((w[6].count, w[0].count), (1, 0), "Sunday at -05:30");
    // offsets beyond ±18 h are clamped
    assert_eq!(week().utc_offset(100_000).utc_offset_secs, 18 * 3600);
}

/// A list of templates (those a user may view) restricts every statistic; an empty list matches
/// nothing.
#[test]
fn window_restricted_to_a_list_of_templates() {
    let s = history();
    let only_a = week().templates(["a"]);
    assert_eq!(
        s.summary(&only_a).unwrap(),
        s.summary(&week().template("a")).unwrap()
    );
    let st = s.stats(&only_a).unwrap();
    assert_eq!(st.summary.count, 4);
    assert_eq!(st.by_hour.iter().map(|r| r.count).sum::<u64>(), 4);
    assert!(
        st.hosts.iter().all(|(h, _)| h != "web-03"),
        "{:?}",
        st.hosts
    );
    assert_eq!(st.recovery.incidents, 1);
    let both = s.stats(&week().templates(["a", "b"])).unwrap();
    assert_eq!(both, s.stats(&week()).unwrap());
    let none = s.stats(&week().templates(Vec::<String>::new())).unwrap();
    assert_eq!((none.summary.count, none.recovery.incidents), (0, 0));
    assert!(none.hosts.is_empty() && none.stages.is_empty());
}

/// Every outcome name the store can hold is counted as before, whoever wrote it: `succeeded` is a
/// success; `failed`, `partially-applied`, `rolled-back`, `rollback-failed` and `interrupted` open an
/// incident; `cancelled` does neither. A name this build does not know (written by a newer one) is
/// kept as text, counted as a release that did not succeed, and opens no incident.
#[test]
fn every_stored_outcome_name_is_counted_and_an_unknown_one_is_kept_as_text() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outcomes.db");
    let s = SqliteStore::open(&path).unwrap();
    let opens_incident = [
        "failed",
        "partially-applied",
        "rolled-back",
        "rollback-failed",
        "interrupted",
    ];
    let names: Vec<String> = pushguide_core::DeploymentOutcome::ALL
        .iter()
        .map(|o| o.to_string())
        .chain([
            "interrupted".to_owned(),
            "paused-by-a-newer-build".to_owned(),
        ])
        .collect();
    for (i, name) in names.iter().enumerate() {
        // template `t<i>`: a deployment ending with `name`, then a success an hour later
        let (t, i) = (format!("t{i}"), i as u64);
        let first = deployment(
            &format!("{t}-1"),
            &t,
            at(i * 2 * H),
            60,
            &[],
            &[],
            Succeeded,
            false,
        );
        record(&s, &first);
        let raw = rusqlite::Connection::open(&path).unwrap();
        raw.execute(
            "UPDATE deployments SET outcome = ?2 WHERE id = ?1",
            [format!("{t}-1"), name.clone()],
        )
        .unwrap();
        let next = deployment(
            &format!("{t}-2"),
            &t,
            at(i * 2 * H + H),
            60,
            &["web-01"],
            &[],
            Succeeded,
            false,
        );
        record(&s, &next);
    }
    for name in &names {
        let i = names.iter().position(|n| n == name).unwrap();
        let w = week().template(format!("t{i}"));
        let d = s.deployment(&format!("t{i}-1")).unwrap().unwrap();
        assert_eq!(d.outcome.as_deref(), Some(name.as_str()), "kept as text");
        let sum = s.summary(&w).unwrap();
        let succeeded = u64::from(name == "succeeded");
        assert_eq!((sum.count, sum.succeeded), (2, 1 + succeeded), "{name}");
        let r = s.time_to_recover(&w).unwrap();
        let opens = u64::from(opens_incident.contains(&name.as_str()));
        assert_eq!((r.incidents, r.recovered), (opens, opens), "{name}");
    }
    assert_eq!(s.rollback_summary(&week()).unwrap().count, 0);
    assert_eq!(
        s.interrupted().unwrap().len(),
        1,
        "only the `interrupted` one"
    );
    let all = s.stats(&week()).unwrap();
    assert_eq!(all.summary.count, 2 * names.len() as u64);
    assert_eq!(all.recovery.incidents, opens_incident.len() as u64);
}
