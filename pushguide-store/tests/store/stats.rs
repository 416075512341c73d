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
        s.append_events(&events).unwrap();
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
