//! Typed answers: a call a dry run or a plan only recorded has no answer, and judging helpers such as
//! `steps::expect_true` see only the answers of a real run.

use std::sync::Arc;

use pushguide_core::sim::SimFleet;
use pushguide_core::{
    steps, Answer, Deployer, DeployerConfig, DeploymentOutcome, Error, HostStatus, KindInfo,
    Outcome, Platform, SaltCall, StageContext, StageError, Template,
};
use serde::{Deserialize, Serialize};

use crate::support::{alice, engine, req};

/// Writes a marker file, then reads it back; both answers must be `true`. Each host's log shows the
/// answers the hook got, as typed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AnswerProbeConfig {}

#[derive(Debug)]
struct AnswerProbe;

inventory::submit! {
    KindInfo {
        kind: "answer-probe",
        summary: "Writes a marker and checks both answers, for the typed-answer tests.",
        platforms: &[Platform::Linux],
        example: "kind = \"answer-probe\"\n",
    }
}

#[typetag::serde(name = "answer-probe")]
impl DeployerConfig for AnswerProbeConfig {
    fn build(&self) -> Result<Box<dyn Deployer>, Error> {
        Ok(Box::new(AnswerProbe))
    }
}

fn log_answers(cx: &mut StageContext<'_>, fun: &str, r: &pushguide_core::CallResults) {
    let seen: Vec<(pushguide_core::MinionId, Answer)> =
        r.iter().map(|(h, a)| (h.clone(), a.clone())).collect();
    for (h, a) in seen {
        cx.log(&h, format!("{fun}: {a:?}"));
    }
}

#[async_trait::async_trait]
impl Deployer for AnswerProbe {
    async fn deploy(&self, cx: &mut StageContext<'_>) -> Result<(), StageError> {
        let written = cx
            .call(SaltCall::mutate("file.write").arg("/srv/probe/marker"))
            .await?;
        log_answers(cx, "file.write", &written);
        steps::expect_true(cx, &written, "file.write");
        let read = cx
            .call(SaltCall::read("file.file_exists").arg("/srv/probe/marker"))
            .await?;
        log_answers(cx, "file.file_exists", &read);
        steps::expect_true(cx, &read, "file.file_exists");
        Ok(())
    }

    async fn rollback(&self, _cx: &mut StageContext<'_>) -> Result<(), StageError> {
        Ok(())
    }
}

fn template() -> Arc<Template> {
    let text = "name = \"shop\"\n[acl.deployers]\nusers = [\"alice\"]\n[targets]\nminions = [\"web-01\", \"web-02\"]\n[rollout]\nbatch = 2\n[project]\nkind = \"answer-probe\"\n";
    Arc::new(Template::from_toml_str(text, "<answers>").expect("test template parses"))
}

/// Every host answers `false` to both calls: a failure in a real run.
fn refusing_fleet() -> Arc<SimFleet> {
    Arc::new(
        SimFleet::new(["web-01", "web-02"])
            .expect("valid ids")
            .on("*", "file.write", Outcome::ok(false))
            .on("*", "file.file_exists", Outcome::ok(false)),
    )
}

#[tokio::test]
async fn a_real_answer_is_judged() {
    let r = engine(refusing_fleet())
        .deploy(req(&template(), "1.0.0"))
        .await
        .unwrap();
    assert_eq!(r.outcome, DeploymentOutcome::Failed, "{r}");
    for h in ["web-01", "web-02"] {
        let host = r.host(h).unwrap();
        assert_eq!(host.status, HostStatus::Failed, "{r}");
        assert_eq!(
            host.failure.as_ref().unwrap().reason,
            "file.write returned false"
        );
        assert!(
            r.host_log(h)
                .contains(&"[deploy] file.write: Returned(Bool(false))".to_owned()),
            "{:?}",
            r.host_log(h)
        );
    }
}

#[tokio::test]
async fn a_not_sent_answer_is_not_judged() {
    let fleet = refusing_fleet();
    let r = engine(fleet.clone())
        .deploy(req(&template(), "1.0.0").dry_run(true))
        .await
        .unwrap();
    assert_eq!(r.outcome, DeploymentOutcome::Succeeded, "{r}");
    for h in ["web-01", "web-02"] {
        assert_eq!(r.host(h).unwrap().status, HostStatus::Succeeded, "{r}");
        let log = r.host_log(h);
        // the write was recorded, not sent: no answer, nothing judged
        assert!(
            log.contains(&"[deploy] file.write: NotSent".to_owned()),
            "{log:?}"
        );
        // the read was sent and answered, but about a host the dry run did not change
        assert!(
            log.contains(&"[deploy] file.file_exists: DryRun(Bool(false))".to_owned()),
            "{log:?}"
        );
    }
    let sent: Vec<String> = fleet.requests().into_iter().map(|q| q.fun).collect();
    assert_eq!(sent, ["test.ping", "file.file_exists"]);
}

#[tokio::test]
async fn a_plan_sends_nothing_and_judges_nothing() {
    let fleet = refusing_fleet();
    let plan = engine(fleet.clone())
        .plan(&pushguide_core::Request::new(template(), "1.0.0", alice()))
        .await
        .unwrap();
    assert!(plan.excluded.is_empty(), "{plan}");
    let deploy: Vec<String> = plan
        .steps
        .iter()
        .filter(|(s, _)| *s == pushguide_core::Stage::Deploy)
        .flat_map(|(_, calls)| calls.iter().map(|c| c.fun.clone()))
        .collect();
    // had the write's placeholder been judged, the hosts would have been dropped before the read
    assert_eq!(deploy, ["file.write", "file.file_exists"], "{plan}");
}

/// A minion answering `null` (salt's `None`) in a real run has answered: the answer is judged like any
/// other (before answers were typed, `null` also stood for "not sent" and went unjudged).
#[tokio::test]
async fn a_real_null_answer_is_judged() {
    let fleet = Arc::new(SimFleet::new(["web-01", "web-02"]).expect("valid ids").on(
        "*",
        "file.write",
        Outcome::ok(serde_json::Value::Null),
    ));
    let r = engine(fleet)
        .deploy(req(&template(), "1.0.0"))
        .await
        .unwrap();
    assert_eq!(r.outcome, DeploymentOutcome::Failed, "{r}");
    for h in ["web-01", "web-02"] {
        assert_eq!(
            r.host(h).unwrap().failure.as_ref().unwrap().reason,
            "file.write returned null",
            "{r}"
        );
    }
}
