//! The conformance suite every project type runs (feature `conformance`).
//!
//! ```text
//! #[tokio::test]
//! async fn conformance() {
//!     pushguide_core::conformance::run(&Subject { .. }).await;
//! }
//! ```
//! It drives the plugin through the engine on a [`SimFleet`]; [`run`] calls one function per check, in
//! this order (each may also be called on its own):
//!
//! - [`rollback_restores_the_previous_version`]
//! - [`dry_run_sends_no_mutating_call`]
//! - [`dry_runs_judge_no_answer`]
//! - [`conventions_stop_in_prepare`]
//! - [`checksum_mismatch_fails_before_stop`]
//! - [`hostile_config_is_rejected`]
//! - [`bad_artifact_source_is_refused`]
//!
//! Each check panics with a message naming the kind and what went wrong.

use std::sync::Arc;

use serde_json::json;

use crate::engine::{Engine, Request};
use crate::hook::context::Artifact;
use crate::hook::context::ManifestEntry;
use crate::hook::template::{Principal, Template};
use crate::model::report::HostStatus;
use crate::sim::SimFleet;
use crate::vocab::call::{Effect, Outcome};
use crate::vocab::outcome::DeploymentOutcome;

/// What the suite needs to know about a project type.
#[derive(Debug, Clone)]
pub struct Subject {
    /// The `[project]` table in TOML (including `kind = "…"`), valid for the hosts `web-01`, `web-02`.
    pub project: String,
    /// Entries the kind requires in an artifact (e.g. `WEB-INF/web.xml`).
    pub required: Vec<String>,
    /// The salt function that stops the application (e.g. `service.stop`).
    pub stop_fun: String,
    /// A read-only function of `post_deploy` whose failure fails the host (e.g. `http.query`).
    pub post_deploy_check: String,
    /// Extra answers the kind's read-only calls need: `(function, value)` for every host.
    pub answers: Vec<(String, serde_json::Value)>,
    /// `(text in project, replacement, field named in the error)` — each makes the config hostile.
    pub hostile: Vec<(String, String, String)>,
    /// Path separator of the kind's release directories (`/` or `\`).
    pub sep: char,
}

/// Whether any string inside the call's arguments contains `needle`.
fn mentions(call: &crate::SaltCall, needle: &str) -> bool {
    fn walk(v: &serde_json::Value, needle: &str) -> bool {
        match v {
            serde_json::Value::String(s) => s.contains(needle),
            serde_json::Value::Array(a) => a.iter().any(|x| walk(x, needle)),
            serde_json::Value::Object(o) => o.values().any(|x| walk(x, needle)),
            _ => false,
        }
    }
    call.arg
        .iter()
        .chain(call.kwarg.values())
        .any(|v| walk(v, needle))
}

const SHA: &str = "9f86d081884c7d659a2feb0be31f3d2bd0c4ba2bf5ba7d4cbf6a02d5a8ff0b08";

fn template(s: &Subject) -> Arc<Template> {
    let text = format!(
        "name = \"conformance\"\n[acl.deployers]\nusers = [\"ops\"]\n[targets]\nminions = [\"web-01\", \"web-02\"]\n\
         [rollout]\nbatch = 2\n[rollback]\npolicy = \"previous\"\n[health]\nurl = \"http://127.0.0.1:8080/health\"\n\
         retries = 1\ninterval_secs = 1\n[project]\n{}",
        s.project.trim_start_matches("[project]\n")
    );
    Arc::new(
        Template::from_toml_str(&text, "<conformance>").unwrap_or_else(|e| panic!("{e}\n{text}")),
    )
}

fn fleet(s: &Subject) -> Arc<SimFleet> {
    let mut f = SimFleet::new(["web-01", "web-02"])
        .unwrap_or_else(|e| panic!("{e}"))
        .on(
            "*",
            "http.query",
            Outcome::ok(json!({"status": 200, "text": "ok"})),
        )
        .on("*", "file.directory_exists", Outcome::ok(false))
        .on("*", "file.get_hash", Outcome::ok(SHA))
        .on("*", "cp.get_url", Outcome::ok("/downloaded/archive"))
        .on("*", "file.readdir", Outcome::ok(json!([".", ".."])));
    for (fun, v) in &s.answers {
        f = f.on("*", fun, Outcome::ok(v.clone()));
    }
    Arc::new(f)
}

fn artifact(version: &str, required: &[String], extra: &[&str]) -> Artifact {
    let mut manifest: Vec<ManifestEntry> = required
        .iter()
        .map(|p| ManifestEntry {
            path: p.clone(),
            size: 100,
        })
        .collect();
    manifest.push(ManifestEntry {
        path: "index.html".into(),
        size: 10,
    });
    manifest.extend(extra.iter().map(|p| ManifestEntry {
        path: (*p).into(),
        size: 1,
    }));
    Artifact::new(
        format!("https://ci.example.com/app/{version}/app.zip"),
        Some(SHA.into()),
    )
    .with_manifest(manifest)
}

fn req(t: &Arc<Template>, s: &Subject, version: &str) -> Request {
    req_with(t, version, artifact(version, &s.required, &[]))
}

/// A request of `version` by `ops` bringing `a`.
fn req_with(t: &Arc<Template>, version: &str, a: Artifact) -> Request {
    Request::new(t.clone(), version, Principal::user("ops")).artifact(a)
}

/// Runs `request` on a new engine over `f`.
async fn deploy_on(f: &Arc<SimFleet>, request: Request) -> crate::Report {
    engine_over(f)
        .build()
        .deploy(request)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

tokio::task_local! {
    /// Whether the checks' engines send queued steps as jobs of steps ([`run`]'s second pass).
    static STEP_JOBS: bool;
}

/// An engine builder over `f`, sending steps as jobs in [`run`]'s second pass.
fn engine_over(f: &Arc<SimFleet>) -> crate::EngineBuilder {
    Engine::builder(f.clone()).step_jobs(STEP_JOBS.try_with(|on| *on).unwrap_or(false))
}

/// Runs every check, in the order listed in the [module documentation](self), twice: with steps sent
/// call by call, then as jobs of steps (`pushguide.steps`, [`crate::EngineBuilder::step_jobs`], which
/// the simulated fleet runs as the pushguide salt module does); panics on the first that fails.
pub async fn run(s: &Subject) {
    checks(s).await;
    STEP_JOBS.scope(true, checks(s)).await;
}

/// Every check once, with the engines of the current pass.
async fn checks(s: &Subject) {
    rollback_restores_the_previous_version(s).await;
    dry_run_sends_no_mutating_call(s).await;
    dry_runs_judge_no_answer(s).await;
    conventions_stop_in_prepare(s).await;
    checksum_mismatch_fails_before_stop(s).await;
    hostile_config_is_rejected(s);
    bad_artifact_source_is_refused(s).await;
}

/// The `kind = "…"` line of the subject, for messages.
fn kind(s: &Subject) -> String {
    s.project
        .lines()
        .find(|l| l.starts_with("kind"))
        .unwrap_or("?")
        .to_owned()
}

/// A release of 1.0.0, then a release of 2.0.0 whose `post_deploy_check` fails on web-02: every host
/// goes back to 1.0.0, still on disk, with no download.
pub async fn rollback_restores_the_previous_version(s: &Subject) {
    let (kind, t) = (kind(s), template(s));
    let f = fleet(s);
    let engine = engine_over(&f).build();
    let r = engine
        .deploy(req(&t, s, "1.0.0"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        r.outcome,
        DeploymentOutcome::Succeeded,
        "{kind}: first release\n{r}"
    );
    f.clear_requests();
    // releases/1.0.0 is now on disk
    f.add_rule_for_arg(
        "*",
        "file.directory_exists",
        &format!("{}1.0.0", s.sep),
        Outcome::ok(true),
    );
    f.add_rule(
        "web-02",
        &s.post_deploy_check,
        Outcome::failed(Some(1), "conformance: broken"),
        None,
    );
    let r = engine
        .deploy(req(&t, s, "2.0.0"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        r.outcome,
        DeploymentOutcome::RolledBack,
        "{kind}: failing release must roll back\n{r}"
    );
    for h in ["web-01", "web-02"] {
        let hr = r
            .host(h)
            .unwrap_or_else(|| panic!("{kind}: no report for {h}"));
        assert_eq!(hr.status, HostStatus::RolledBack, "{kind}: {h}\n{r}");
        assert_eq!(hr.rolled_back_to.as_deref(), Some("1.0.0"), "{kind}: {h}");
    }
    let previous = format!("releases{}1.0.0", s.sep);
    let rollback_calls: Vec<_> = r
        .calls
        .iter()
        .filter(|c| c.stage == crate::Stage::Rollback && c.call.effect == Effect::Mutating)
        .collect();
    assert!(
        rollback_calls.iter().any(|c| mentions(&c.call, &previous)),
        "{kind}: rollback must switch back to {previous}: {:?}",
        rollback_calls
            .iter()
            .map(|c| c.call.to_string())
            .collect::<Vec<_>>()
    );
    assert!(
        !r.calls
            .iter()
            .any(|c| c.stage == crate::Stage::Rollback && c.call.fun == "cp.get_url"),
        "{kind}: rolling back to a release on disk needs no download"
    );
    // in the jobs pass, a kind whose batch is one job sent its steps as jobs
    if STEP_JOBS.try_with(|on| *on).unwrap_or(false)
        && t.project.build().is_ok_and(|d| d.batch_in_one_job())
    {
        assert!(
            f.requests().iter().any(|q| q.fun == crate::STEPS_FUN),
            "{kind}: no job of steps was sent"
        );
    }
    f.clear_rules();
}

/// A dry run succeeds, sends read-only calls only and records the mutating ones.
pub async fn dry_run_sends_no_mutating_call(s: &Subject) {
    let (kind, t) = (kind(s), template(s));
    let f = fleet(s);
    let r = deploy_on(&f, req(&t, s, "1.0.0").dry_run(true)).await;
    assert_eq!(
        r.outcome,
        DeploymentOutcome::Succeeded,
        "{kind}: dry run\n{r}"
    );
    assert!(
        f.requests().iter().all(|q| q.effect == Effect::ReadOnly),
        "{kind}: dry run sent {:?}",
        f.requests()
            .iter()
            .filter(|q| q.effect == Effect::Mutating)
            .map(|q| &q.fun)
            .collect::<Vec<_>>()
    );
    assert!(
        r.unsent_calls().count() > 0,
        "{kind}: dry run recorded no mutating call"
    );
}

/// Dry runs of a release and of a rollback fail no host, although every read-only call answers what
/// would fail a real run (`false` everywhere, a failing `post_deploy_check`): a dry run changes
/// nothing, so what hosts answer then says nothing about the release, and the answers of the mutating
/// calls it only records do not exist.
pub async fn dry_runs_judge_no_answer(s: &Subject) {
    let (kind, t) = (kind(s), template(s));
    // two real releases, so that every host has a version to roll back to
    let f = fleet(s);
    let engine = engine_over(&f).build();
    for v in ["1.0.0", "2.0.0"] {
        let r = engine
            .deploy(req(&t, s, v))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            r.outcome,
            DeploymentOutcome::Succeeded,
            "{kind}: release {v}\n{r}"
        );
    }
    let mut hostile = SimFleet::new(["web-01", "web-02"])
        .unwrap_or_else(|e| panic!("{e}"))
        .on("*", "*", Outcome::ok(false));
    for (fun, v) in &s.answers {
        hostile = hostile.on("*", fun, Outcome::ok(v.clone()));
    }
    let hostile = Arc::new(hostile.on(
        "*",
        &s.post_deploy_check,
        Outcome::ok(
            json!({"status": 500, "text": "down", "last_run_result": "conformance: failed"}),
        ),
    ));
    let engine = engine_over(&hostile)
        .fleet_state(engine.fleet_state().clone())
        .build();
    let release = req(&t, s, "3.0.0").dry_run(true);
    let rollback = Request::rollback(t.clone(), None, Principal::user("ops")).dry_run(true);
    for (what, request) in [("release", release), ("rollback", rollback)] {
        let r = engine
            .deploy(request)
            .await
            .unwrap_or_else(|e| panic!("{kind}: dry-run {what}: {e}"));
        let failed: Vec<String> = r
            .hosts
            .iter()
            .filter_map(|h| {
                let f = h.failure.as_ref().or(h.rollback_failure.as_ref())?;
                Some(format!("{}: {f}", h.host))
            })
            .collect();
        assert!(
            failed.is_empty(),
            "{kind}: a dry-run {what} judged answers: {failed:?}\n{r}"
        );
        assert!(
            !matches!(
                r.outcome,
                DeploymentOutcome::Failed | DeploymentOutcome::RollbackFailed
            ),
            "{kind}: dry-run {what}\n{r}"
        );
    }
    assert!(
        hostile
            .requests()
            .iter()
            .all(|q| q.effect == Effect::ReadOnly),
        "{kind}: dry runs sent a mutating call"
    );
}

/// An artifact breaking the layout conventions (forbidden entries, a missing required entry) stops the
/// deployment in prepare, before any mutating call, naming every offending entry.
pub async fn conventions_stop_in_prepare(s: &Subject) {
    let (kind, t) = (kind(s), template(s));
    let f = fleet(s);
    let bad = artifact("1.0.0", &s.required, &["logs/catalina.out", "debug.log"]);
    let r = deploy_on(&f, req_with(&t, "1.0.0", bad)).await;
    assert_eq!(
        r.outcome,
        DeploymentOutcome::Failed,
        "{kind}: conventions\n{r}"
    );
    let why = r.reason.clone().unwrap_or_default();
    assert!(
        why.contains("logs/catalina.out") && why.contains("debug.log"),
        "{kind}: {why}"
    );
    assert!(
        f.requests().iter().all(|q| q.effect == Effect::ReadOnly),
        "{kind}: conventions"
    );
    if let Some(req_entry) = s.required.first() {
        let missing = artifact("1.0.0", &[], &[]);
        let r = deploy_on(&fleet(s), req_with(&t, "1.0.0", missing)).await;
        assert_eq!(
            r.outcome,
            DeploymentOutcome::Failed,
            "{kind}: required entry\n{r}"
        );
        assert!(
            r.reason.unwrap_or_default().contains(req_entry.as_str()),
            "{kind}"
        );
    }
}

/// A host whose download does not match the checksum fails in staging (a kind that stages ahead) or
/// pre-deploy, and the application on it is never stopped.
pub async fn checksum_mismatch_fails_before_stop(s: &Subject) {
    let (kind, t) = (kind(s), template(s));
    let f = fleet(s);
    f.add_rule("web-02", "file.get_hash", Outcome::ok("0".repeat(64)), None);
    let r = deploy_on(&f, req(&t, s, "1.0.0")).await;
    let h = r
        .host("web-02")
        .unwrap_or_else(|| panic!("{kind}: no web-02"));
    let fail = h
        .failure
        .clone()
        .unwrap_or_else(|| panic!("{kind}: checksum mismatch did not fail\n{r}"));
    // the download is checked where it happens: staging for a kind that stages ahead
    let staged = t.rollout.stage_ahead && t.project.build().is_ok_and(|d| d.stages_ahead());
    let want = if staged {
        crate::Stage::Staging
    } else {
        crate::Stage::PreDeploy
    };
    assert_eq!(fail.stage, want, "{kind}");
    assert!(fail.reason.contains("checksum"), "{kind}: {}", fail.reason);
    let stopped_web02 = f
        .step_requests()
        .iter()
        .any(|q| q.fun == s.stop_fun && q.targets.iter().any(|m| m.as_str() == "web-02"));
    assert!(
        !stopped_web02,
        "{kind}: {} was sent to web-02 after its checksum mismatch",
        s.stop_fun
    );
}

/// Each of the subject's hostile replacements makes the template fail to load, naming the field.
pub fn hostile_config_is_rejected(s: &Subject) {
    let kind = kind(s);
    for (from, to, field) in &s.hostile {
        assert!(
            s.project.contains(from.as_str()),
            "{kind}: `{from}` not in the project table"
        );
        let text = format!(
            "name = \"x\"\n[targets]\nminions = [\"web-01\"]\n[project]\n{}",
            s.project.replacen(from.as_str(), to, 1)
        );
        let err = Template::from_toml_str(&text, "<hostile>")
            .err()
            .unwrap_or_else(|| panic!("{kind}: `{to}` was accepted"));
        assert!(
            err.to_string().contains(field.as_str()),
            "{kind}: `{to}`: {err}"
        );
    }
}

/// Artifact URLs and checksums every kind refuses, with [`crate::steps::validate_artifact_source`]'s
/// error: `(artifact_url, sha256)`.
pub const BAD_ARTIFACT_SOURCES: &[(Option<&str>, Option<&str>)] = &[
    (Some("ftp://ci.example.com/app/{version}/app.zip"), None),
    (Some("https://ci.example.com/app/$(id)/app.zip"), None),
    (Some("https://ci.example.com/app/{version}/a pp.zip"), None),
    (Some("salt:///app.zip"), None),
    (None, Some("9f86d081")),
    (
        None,
        Some("9f86d081884c7d659a2feb0be31f3d2bd0c4ba2bf5ba7d4cbf6a02d5a8ff0b0g"),
    ),
    (
        Some("https://ci.example.com/app/{version}/app.zip"),
        Some("9f86d081884c7d659a2feb0be31f3d2bd0c4ba2bf5ba7d4cbf6a02d5a8ff0b08 "),
    ),
];

/// Every row of [`BAD_ARTIFACT_SOURCES`] is refused the same way, with the same message: as the
/// template's `artifact_url`/`sha256` (the template does not load) and as the artifact a request
/// brings (the deployment fails in prepare, before any mutating call). A checksum in upper case is
/// accepted and matches the minion's lower-case hash.
pub async fn bad_artifact_source_is_refused(s: &Subject) {
    let kind = kind(s);
    // the subject's own artifact settings, if any, give way to the row's
    let project: String = s
        .project
        .lines()
        .filter(|l| !l.starts_with("artifact_url") && !l.starts_with("sha256"))
        .map(|l| format!("{l}\n"))
        .collect();
    let toml = |url: Option<&str>, sha: Option<&str>| {
        let mut keys = String::new();
        if let Some(u) = url {
            keys.push_str(&format!("artifact_url = {}\n", json!(u)));
        }
        if let Some(h) = sha {
            keys.push_str(&format!("sha256 = {}\n", json!(h)));
        }
        format!(
            "name = \"conformance\"\n[acl.deployers]\nusers = [\"ops\"]\n[targets]\nminions = [\"web-01\", \"web-02\"]\n\
             [project]\n{keys}{}",
            project.trim_start_matches("[project]\n")
        )
    };
    let t = template(s);
    for &(url, sha) in BAD_ARTIFACT_SOURCES {
        let want = crate::steps::validate_artifact_source(
            "project.artifact_url",
            url,
            "project.sha256",
            sha,
        )
        .expect_err("a bad row")
        .to_string();
        let err = Template::from_toml_str(&toml(url, sha), "<artifact>")
            .err()
            .unwrap_or_else(|| panic!("{kind}: artifact_url {url:?}, sha256 {sha:?} accepted"));
        assert!(
            err.to_string().contains(&want),
            "{kind}: template refused with `{err}`, not `{want}`"
        );

        let url = url.unwrap_or("https://ci.example.com/app/1.0.0/app.zip");
        let want = crate::steps::validate_artifact_source(
            "artifact.url",
            Some(url),
            "artifact.sha256",
            sha,
        )
        .expect_err("a bad row")
        .to_string();
        let f = fleet(s);
        let bad = Artifact::new(url, sha.map(str::to_owned));
        let r = deploy_on(&f, req_with(&t, "1.0.0", bad)).await;
        assert_eq!(
            r.outcome,
            DeploymentOutcome::Failed,
            "{kind}: artifact {url} {sha:?}\n{r}"
        );
        let why = r.reason.clone().unwrap_or_default();
        assert!(
            why.contains(&want),
            "{kind}: request refused with `{why}`, not `{want}`"
        );
        assert!(
            f.requests().iter().all(|q| q.effect == Effect::ReadOnly),
            "{kind}: a bad artifact reached a mutating call"
        );
    }

    let upper = SHA.to_ascii_uppercase();
    Template::from_toml_str(
        &toml(
            Some("https://ci.example.com/app/{version}/app.zip"),
            Some(&upper),
        ),
        "<artifact>",
    )
    .unwrap_or_else(|e| panic!("{kind}: an upper-case sha256 refused: {e}"));
    let mut a = artifact("1.0.0", &s.required, &[]);
    a.sha256 = Some(upper);
    let r = deploy_on(&fleet(s), req_with(&t, "1.0.0", a)).await;
    assert_eq!(
        r.outcome,
        DeploymentOutcome::Succeeded,
        "{kind}: an upper-case sha256 must match the minion's hash\n{r}"
    );
}
