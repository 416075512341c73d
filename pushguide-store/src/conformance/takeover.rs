//! Conformance checks of the takeover records of [`crate::ServerStore`] ([`PublishQueue`]'s
//! `untaken_interrupted`, `take_over`, `takeover`, `takeover_by_request`): a takeover is recorded
//! once with its request and one audit entry; a newer deployment or a pending request of the
//! template turns a rollback into a mark; two instances taking over at once queue one request.
//!
//! Each check takes a store whose given deployments are already `interrupted` (their instance died
//! and recovery marked them: how is the backend's business) and nothing else taken over or queued.

use crate::{AccountStore, PublishQueue, Takeover, TakeoverRequest, TAKEOVER_USER};

/// The takeover of `deployment` (of `template`) by `rollback`, queueing a request with group `ops`.
pub fn request(deployment: &str, template: &str) -> TakeoverRequest {
    TakeoverRequest::new(
        deployment,
        template,
        "rollback",
        Some(r#"{"mode":{"kind":"undo","version":"2.0"},"hosts":["web-01"]}"#.into()),
        vec!["ops".into()],
        "undo 2.0 on web-01",
    )
}

async fn take<S: PublishQueue + ?Sized>(s: &S, d: &str, template: &str) -> Option<Takeover> {
    s.take_over(&request(d, template))
        .await
        .unwrap_or_else(|e| panic!("taking {d} over: {e}"))
}

async fn untaken<S: PublishQueue + ?Sized>(s: &S) -> Vec<String> {
    s.untaken_interrupted()
        .await
        .unwrap_or_else(|e| panic!("listing untaken deployments: {e}"))
        .into_iter()
        .map(|d| d.id)
        .collect()
}

/// `deployment` (of `template`, the only interrupted one): recorded once with its request (queued
/// as [`TAKEOVER_USER`] with the takeover's groups) and one audit entry; a second attempt records
/// and queues nothing; it reads back by deployment and by request; a deployment that is not
/// interrupted is not taken over. Returns the takeover.
pub async fn recorded_once<S: PublishQueue + AccountStore + ?Sized>(
    s: &S,
    deployment: &str,
    template: &str,
) -> Takeover {
    assert_eq!(untaken(s).await, [deployment], "listed before the takeover");
    let t = take(s, deployment, template)
        .await
        .unwrap_or_else(|| panic!("{deployment} was not taken over"));
    assert_eq!(
        (t.deployment.as_str(), t.policy.as_str(), t.note.as_str()),
        (deployment, "rollback", "undo 2.0 on web-01")
    );
    let id = t.request.unwrap_or_else(|| panic!("no request: {t:?}"));
    assert_eq!(t.request_state.as_deref(), Some("queued"));
    let q = s
        .publish_request(id)
        .await
        .expect("reading the request")
        .expect("the queued request");
    assert_eq!(
        (q.user.as_str(), q.groups.clone(), q.template.as_str()),
        (TAKEOVER_USER, vec!["ops".to_owned()], template)
    );
    assert!(q.request.contains("undo"), "{}", q.request);
    assert_eq!(take(s, deployment, template).await, None, "a second time");
    assert_eq!(
        s.publish_queue(None).await.expect("the queue").len(),
        1,
        "one request"
    );
    assert!(untaken(s).await.is_empty(), "not listed once taken over");
    let audit: Vec<_> = s
        .audit_log(None, Some(TAKEOVER_USER), 10)
        .await
        .expect("the audit log")
        .into_iter()
        .filter(|a| a.action == "takeover")
        .collect();
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0].target, deployment);
    assert!(
        audit[0].detail.contains(&format!("request {id}")),
        "{:?}",
        audit[0]
    );
    assert_eq!(
        s.takeover(deployment)
            .await
            .expect("reading the takeover")
            .as_ref(),
        Some(&t)
    );
    assert_eq!(
        s.takeover_by_request(id)
            .await
            .expect("reading by request")
            .as_ref(),
        Some(&t)
    );
    assert_eq!(
        s.takeover_by_request(id + 1000)
            .await
            .expect("reading by request"),
        None
    );
    assert_eq!(
        s.takeover("no-such-deployment")
            .await
            .expect("reading the takeover"),
        None
    );
    assert_eq!(take(s, "no-such-deployment", template).await, None);
    t
}

/// `older` and `newer` of `template` both interrupted, `newer` started later: only `newer` is
/// listed; taking `older` over records a mark naming `newer`; once a request of the template is
/// queued, taking `newer` over records a mark naming that request. Nothing else is queued.
pub async fn newer_work_turns_it_into_a_mark<S: PublishQueue + AccountStore + ?Sized>(
    s: &S,
    older: &str,
    newer: &str,
    template: &str,
) {
    assert_eq!(untaken(s).await, [newer], "only the newest is listed");
    let t = take(s, older, template).await.expect("older taken over");
    assert_eq!((t.policy.as_str(), t.request), ("mark", None));
    assert!(t.note.contains(newer), "{}", t.note);
    let first = s
        .enqueue_publish(template, "bob", &[], "{}")
        .await
        .expect("queueing a request");
    let t = take(s, newer, template).await.expect("newer taken over");
    assert_eq!((t.policy.as_str(), t.request), ("mark", None));
    assert!(t.note.contains(&format!("request {first}")), "{}", t.note);
    assert_eq!(
        s.publish_queue(Some(template))
            .await
            .expect("the queue")
            .len(),
        1
    );
    let audit = s
        .audit_log(None, Some(TAKEOVER_USER), 10)
        .await
        .expect("the audit log");
    assert_eq!(audit.len(), 2, "{audit:?}");
    assert!(
        audit.iter().all(|a| a.detail.starts_with("mark: ")),
        "{audit:?}"
    );
}

/// Two instances (`a`, `b`: handles on one database) take each of `deployments` (id, template; each
/// the only deployment of its template) over at the same moment: exactly one records it, with a
/// request, and exactly one request is queued.
pub async fn two_at_once_queue_one_request<S: PublishQueue + AccountStore + ?Sized>(
    a: &S,
    b: &S,
    deployments: &[(String, String)],
) {
    for (id, template) in deployments {
        let r = request(id, template);
        let (x, y) = tokio::join!(a.take_over(&r), b.take_over(&r));
        let won: Vec<_> = [
            x.expect("instance a taking over"),
            y.expect("instance b taking over"),
        ]
        .into_iter()
        .flatten()
        .collect();
        assert_eq!(won.len(), 1, "{id}: {won:?}");
        assert!(won[0].request.is_some(), "{id}: {won:?}");
        assert_eq!(
            a.publish_queue(Some(template))
                .await
                .expect("the queue")
                .len(),
            1,
            "{id}"
        );
    }
    let audit = a
        .audit_log(None, Some(TAKEOVER_USER), 1000)
        .await
        .expect("the audit log");
    assert_eq!(audit.len(), deployments.len());
}
