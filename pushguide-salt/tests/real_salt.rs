//! Integration tests against a REAL salt stack (`scripts/salt-lab up`, then
//! `. "$(scripts/salt-lab env --path)"`). Without the `PUSHGUIDE_SALT_*` variables each test prints a
//! skip message, unless `PUSHGUIDE_REQUIRE_SALT=1`, where it fails naming the missing variable.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use pushguide_core::{
    Deployer, DeployerConfig, DeploymentOutcome, Engine, Error, HostStatus, KindInfo, MinionId,
    Outcome, Platform, Principal, Request, SaltCall, StageContext, StageError, TargetExpr,
    TargetType, Template, Transport, TransportErrorKind,
};
use pushguide_salt::{SaltApi, SaltApiSettings, SaltError};
use serde::{Deserialize, Serialize};

/// The lab's settings and minions, or `None` (skip) when the lab is not configured.
fn lab(test: &str) -> Option<(SaltApiSettings, Vec<MinionId>)> {
    let required = std::env::var("PUSHGUIDE_REQUIRE_SALT").as_deref() == Ok("1");
    let settings =
        SaltApiSettings::from_env().and_then(|s| match std::env::var("PUSHGUIDE_SALT_MINIONS") {
            Ok(m) if !m.trim().is_empty() => Ok((s, m)),
            _ => Err(pushguide_salt::SettingsError::Missing(
                "PUSHGUIDE_SALT_MINIONS",
            )),
        });
    match settings {
        Ok((mut s, minions)) => {
            // one master: jobs are only visible through the master that published them
            s.endpoints.truncate(1);
            s.request_timeout = Duration::from_secs(20);
            let minions = minions
                .split_whitespace()
                .map(|m| MinionId::new(m).expect("valid minion id in PUSHGUIDE_SALT_MINIONS"))
                .collect();
            Some((s, minions))
        }
        Err(e) if required => panic!("PUSHGUIDE_REQUIRE_SALT=1 but {e}"),
        Err(e) => {
            eprintln!(
                "skipping {test}: no salt lab ({e}); run scripts/salt-lab up and source its env"
            );
            None
        }
    }
}

fn client(s: SaltApiSettings) -> SaltApi {
    SaltApi::new(s).expect("valid settings")
}

fn id(s: &str) -> MinionId {
    MinionId::new(s).unwrap()
}

#[tokio::test]
async fn login_works_and_a_wrong_password_is_an_auth_error() {
    let Some((s, _)) = lab("login") else { return };
    let api = client(s.clone());
    api.login().await.expect("lab credentials log in");
    assert!(api.endpoint_health()[0].logged_in);

    let bad = client(SaltApiSettings {
        password: "definitely-wrong-pw-4711".into(),
        ..s
    });
    let e = bad.login().await.expect_err("wrong password");
    assert!(matches!(e, SaltError::Auth { .. }), "{e:?}");
    assert!(!e.to_string().contains("4711"), "password leaked: {e}");
    let t = bad
        .call(&[id("web-01")], &SaltCall::read("test.ping"))
        .await
        .expect_err("no call without login");
    assert_eq!(t.kind, TransportErrorKind::Auth, "{t}");
    assert!(!t.is_retryable());
    assert!(!t.message.contains("4711"));
}

#[tokio::test]
async fn list_target_ping_answers_for_every_minion_in_one_request() {
    let Some((s, minions)) = lab("ping") else {
        return;
    };
    let api = client(s);
    let started = Instant::now();
    let mut r = api
        .call(
            &minions,
            &SaltCall::read("test.ping").timeout(Duration::from_secs(30)),
        )
        .await
        .expect("ping");
    eprintln!(
        "test.ping to {minions:?}: {:?} in {:?}",
        r.jid,
        started.elapsed()
    );
    assert!(r.jid.is_some());
    assert_eq!(r.minions.len(), minions.len());
    for m in &minions {
        assert_eq!(r.take(m), Outcome::ok(true), "{m}");
    }
    let h = api.endpoint_health()[0].clone();
    assert!(h.events_connected, "{h:?}");
    // The first call opens the stream: salt-api subscribes to the master's event bus as it answers,
    // so a return published in that moment reaches the client by polling (seen once in CI on a slow
    // machine). Once the stream runs, every return comes through it.
    let first = h.returns_from_events;
    assert!(first <= minions.len() as u64, "{h:?}");
    // a second call: logged in, stream connected
    let started = Instant::now();
    let mut r = api
        .call(&minions, &SaltCall::read("test.ping"))
        .await
        .expect("ping");
    eprintln!("second test.ping (events): {:?}", started.elapsed());
    assert!(minions.iter().all(|m| r.take(m).is_ok()));
    let h = &api.endpoint_health()[0];
    assert_eq!(
        h.returns_from_events - first,
        minions.len() as u64,
        "the second call's returns came from /events: {h:?}"
    );
    let up = api.ping(&minions).await.expect("ping via runner");
    assert!(up.values().all(|u| *u), "{up:?}");
}

#[tokio::test]
async fn failing_cmd_run_all_is_failed_with_its_retcode() {
    let Some((s, minions)) = lab("cmd.run_all") else {
        return;
    };
    let api = client(s);
    let call = SaltCall::read("cmd.run_all")
        .arg("echo to-stderr >&2; exit 3")
        .kwarg("python_shell", true)
        .timeout(Duration::from_secs(30));
    let mut r = api.call(&minions, &call).await.expect("call");
    for m in &minions {
        match r.take(m) {
            Outcome::Failed { retcode, message } => {
                assert_eq!(retcode, Some(3), "{m}");
                assert!(message.contains("to-stderr"), "{m}: {message}");
            }
            other => panic!("{m}: expected Failed, got {other:?}"),
        }
    }
    // an unknown function is a per-minion failure too
    let mut r = api
        .call(
            &minions[..1],
            &SaltCall::read("nosuch.function").timeout(Duration::from_secs(30)),
        )
        .await
        .expect("call");
    assert!(matches!(r.take(&minions[0]), Outcome::Failed { .. }));
}

#[tokio::test]
async fn unknown_minion_is_no_return_while_the_others_answer() {
    let Some((s, minions)) = lab("unknown minion") else {
        return;
    };
    // this one collects returns by polling GET /jobs/<jid> only
    let api = client(SaltApiSettings {
        use_events: false,
        ..s
    });
    let mut targets = minions.clone();
    targets.push(id("ghost-01"));
    let started = Instant::now();
    let mut r = api
        .call(
            &targets,
            &SaltCall::read("test.ping").timeout(Duration::from_secs(20)),
        )
        .await
        .expect("call");
    let took = started.elapsed();
    eprintln!("test.ping with ghost-01 (polling): {took:?}");
    assert_eq!(r.take(&id("ghost-01")), Outcome::NoReturn);
    for m in &minions {
        assert_eq!(r.take(m), Outcome::ok(true), "{m}");
    }
    assert_eq!(api.endpoint_health()[0].returns_from_events, 0);
    // the unknown id is not waited for
    assert!(took < Duration::from_secs(10), "took {took:?}");
    // only unknown ids: salt starts no job
    let mut r = api
        .call(&[id("ghost-01")], &SaltCall::read("test.ping"))
        .await
        .expect("call");
    assert_eq!(r.jid, None);
    assert_eq!(r.take(&id("ghost-01")), Outcome::NoReturn);
}

#[tokio::test]
async fn a_call_outliving_its_timeout_is_no_return_without_hanging() {
    let Some((s, minions)) = lab("timeout") else {
        return;
    };
    let api = client(s);
    let started = Instant::now();
    let mut r = api
        .call(
            &minions,
            &SaltCall::read("test.sleep")
                .arg(10)
                .timeout(Duration::from_secs(2)),
        )
        .await
        .expect("call");
    let took = started.elapsed();
    eprintln!("test.sleep 10 with a 2 s timeout came back after {took:?}");
    assert!(took < Duration::from_secs(4), "took {took:?}");
    for m in &minions {
        assert_eq!(r.take(m), Outcome::NoReturn, "{m}");
    }
}

#[tokio::test]
async fn manage_status_and_resolve() {
    let Some((s, minions)) = lab("manage.status") else {
        return;
    };
    let api = client(s);
    let st = api.manage_status().await.expect("manage.status");
    for m in &minions {
        assert!(st.up.iter().any(|u| u == m.as_str()), "{m} not up: {st:?}");
    }
    assert!(st.down.is_empty(), "{st:?}");
    let glob = TargetExpr {
        expression: "web-*".into(),
        tgt_type: TargetType::Glob,
    };
    let mut want = minions.clone();
    want.sort();
    assert_eq!(api.resolve(&glob).await.expect("glob"), want);
    let grain = TargetExpr {
        expression: "G@roles:nonexistent-role".into(),
        tgt_type: TargetType::Compound,
    };
    assert_eq!(
        api.resolve(&grain).await.expect("compound"),
        Vec::<MinionId>::new()
    );
    let list = TargetExpr {
        expression: "web-01,ghost-01".into(),
        tgt_type: TargetType::List,
    };
    assert_eq!(api.resolve(&list).await.expect("list").len(), 2);
}

#[tokio::test]
async fn expired_and_refused_tokens_are_renewed_transparently() {
    let Some((mut s, minions)) = lab("token refresh") else {
        return;
    };
    s.token_expire = Some(Duration::from_secs(3));
    let api = client(s);
    let ping = SaltCall::read("test.ping").timeout(Duration::from_secs(30));
    let mut r = api.call(&minions[..1], &ping).await.expect("first call");
    assert!(r.take(&minions[0]).is_ok());
    // the token is dead on the server after 3 s
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut r = api.call(&minions[..1], &ping).await.expect("after expiry");
    assert!(r.take(&minions[0]).is_ok());
    // a token salt-api does not know (e.g. salt-api restarted): 401, log in again, resend
    api.test_only_replace_tokens("0123456789abcdef0123456789abcdef01234567");
    let mut r = api.call(&minions[..1], &ping).await.expect("after 401");
    assert!(r.take(&minions[0]).is_ok());
}

// ------------------------------------------------------------------ deployment through the engine

/// A release directory and a `current` symlink, checked with `file.readlink`; a health step fails on
/// `fail_minion` when deploying `fail_version`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LabAppConfig {
    root: String,
    #[serde(default)]
    fail_version: Option<String>,
    #[serde(default)]
    fail_minion: Option<String>,
}

#[derive(Debug)]
struct LabApp {
    cfg: LabAppConfig,
}

inventory::submit! {
    KindInfo {
        kind: "salt-lab-app",
        summary: "Release directory and symlink on the salt lab, for pushguide-salt's tests.",
        platforms: &[Platform::Linux],
        example: "kind = \"salt-lab-app\"\nroot = \"/tmp/app\"\n",
    }
}

#[typetag::serde(name = "salt-lab-app")]
impl DeployerConfig for LabAppConfig {
    fn validate(&self) -> Result<(), Error> {
        pushguide_core::validate::path("project.root", &self.root)
    }
    fn build(&self) -> Result<Box<dyn Deployer>, Error> {
        Ok(Box::new(LabApp { cfg: self.clone() }))
    }
}

impl LabApp {
    fn release(&self, version: &str) -> String {
        format!("{}/releases/{version}", self.cfg.root)
    }
    fn current(&self) -> String {
        format!("{}/current", self.cfg.root)
    }
    fn switch(&self, version: &str) -> SaltCall {
        SaltCall::mutate("file.symlink")
            .arg(self.release(version))
            .arg(self.current())
            .kwarg("force", true)
            .kwarg("atomic", true)
            .timeout(Duration::from_secs(30))
    }
}

#[async_trait::async_trait]
impl Deployer for LabApp {
    async fn pre_deploy(&self, cx: &mut StageContext<'_>) -> Result<(), StageError> {
        let dir = self.release(cx.version());
        cx.call(
            SaltCall::mutate("file.makedirs")
                .arg(format!("{dir}/"))
                .timeout(Duration::from_secs(30)),
        )
        .await?;
        Ok(())
    }

    async fn deploy(&self, cx: &mut StageContext<'_>) -> Result<(), StageError> {
        let call = self.switch(cx.version());
        cx.call(call).await?;
        Ok(())
    }

    async fn post_deploy(&self, cx: &mut StageContext<'_>) -> Result<(), StageError> {
        let want = self.release(cx.version());
        let links = cx
            .call(
                SaltCall::read("file.readlink")
                    .arg(self.current())
                    .timeout(Duration::from_secs(30)),
            )
            .await?;
        for (host, value) in links
            .returned()
            .map(|(h, v)| (h.clone(), v.clone()))
            .collect::<Vec<_>>()
        {
            if value.as_str() != Some(want.as_str()) {
                cx.fail(&host, format!("current points at {value}, not {want}"));
            }
        }
        let failing = self.cfg.fail_version.as_deref() == Some(cx.version());
        let minion = self.cfg.fail_minion.clone().unwrap_or_default();
        let script = if failing {
            format!("[ \"{{{{ grains['id'] }}}}\" != \"{minion}\" ] || exit 1")
        } else {
            "true".to_owned()
        };
        cx.call(
            SaltCall::read("cmd.run_all")
                .arg(script)
                .kwarg("template", "jinja")
                .kwarg("python_shell", true)
                .timeout(Duration::from_secs(30)),
        )
        .await?;
        Ok(())
    }

    async fn rollback(&self, cx: &mut StageContext<'_>) -> Result<(), StageError> {
        for (version, hosts) in cx.rollback_groups() {
            cx.call_on(&hosts, self.switch(&version)).await?;
        }
        Ok(())
    }
}

async fn readlinks(api: &SaltApi, minions: &[MinionId], path: &str) -> Vec<Outcome> {
    let mut r = api
        .call(
            minions,
            &SaltCall::read("file.readlink")
                .arg(path)
                .timeout(Duration::from_secs(30)),
        )
        .await
        .expect("readlink");
    minions.iter().map(|m| r.take(m)).collect()
}

#[tokio::test]
async fn engine_deploys_through_salt_and_rolls_back_a_failing_release() {
    let Some((s, minions)) = lab("engine deployment") else {
        return;
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    // both minions run on this machine: one directory per test run, the same for both
    let root = format!("/tmp/pg-salt-deploy/{}-{nanos}", std::process::id());
    std::fs::create_dir_all(&root).expect("create the test root");
    let hosts: Vec<String> = minions.iter().map(|m| format!("\"{m}\"")).collect();
    let text = format!(
        "name = \"salt-lab-app\"\n[acl.deployers]\nusers = [\"alice\"]\n[targets]\nminions = [{}]\n\
         [rollout]\nbatch = {}\n[rollback]\npolicy = \"previous\"\n\
         [project]\nkind = \"salt-lab-app\"\nroot = \"{root}\"\nfail_version = \"3.0.0\"\nfail_minion = \"{}\"\n",
        hosts.join(", "),
        minions.len(),
        minions[minions.len() - 1],
    );
    let template = Arc::new(Template::from_toml_str(&text, "<test>").expect("template"));
    let api = Arc::new(client(s));
    let engine = Engine::builder(api.clone()).build();
    let release = |v: &str| format!("{root}/releases/{v}");

    let report = engine
        .deploy(Request::new(
            template.clone(),
            "2.0.0",
            Principal::user("alice"),
        ))
        .await
        .expect("deploy 2.0.0");
    assert_eq!(report.outcome, DeploymentOutcome::Succeeded, "{report}");
    for o in readlinks(&api, &minions, &format!("{root}/current")).await {
        assert_eq!(o, Outcome::ok(release("2.0.0")));
    }
    assert_eq!(
        std::fs::read_link(format!("{root}/current")).unwrap(),
        std::path::PathBuf::from(release("2.0.0"))
    );

    let report = engine
        .deploy(Request::new(
            template.clone(),
            "3.0.0",
            Principal::user("alice"),
        ))
        .await
        .expect("deploy 3.0.0");
    eprintln!("{report}");
    assert_eq!(report.outcome, DeploymentOutcome::RolledBack, "{report}");
    let last = minions[minions.len() - 1].as_str();
    let h = report.host(last).unwrap();
    assert!(
        matches!(h.status, HostStatus::RolledBack),
        "{last}: {:?}",
        h.status
    );
    assert_eq!(h.rolled_back_to.as_deref(), Some("2.0.0"));
    assert!(
        std::path::Path::new(&release("3.0.0")).is_dir(),
        "3.0.0 was created"
    );
    for o in readlinks(&api, &minions, &format!("{root}/current")).await {
        assert_eq!(o, Outcome::ok(release("2.0.0")), "rolled back to 2.0.0");
    }
    let _ = std::fs::remove_dir_all(&root);
}

#[tokio::test]
async fn manage_up_lookup_jid_and_key_list_all() {
    let Some((s, minions)) = lab("runner and wheel") else {
        return;
    };
    let api = client(s);
    let mut up = api.manage_up().await.expect("manage.up");
    up.sort();
    let mut want: Vec<String> = minions.iter().map(|m| m.to_string()).collect();
    want.sort();
    assert_eq!(up, want);
    let keys = api.key_list_all().await.expect("key.list_all");
    for m in &minions {
        assert!(
            keys.minions.iter().any(|k| k == m.as_str()),
            "{m} not accepted: {keys:?}"
        );
    }
    let r = api
        .call(
            &minions,
            &SaltCall::read("test.echo")
                .arg("lookup-me")
                .timeout(Duration::from_secs(30)),
        )
        .await
        .expect("echo");
    let jid = r.jid.clone().expect("a jid");
    let looked = api
        .lookup_jid(&jid, "test.echo")
        .await
        .expect("jobs.lookup_jid");
    for m in &minions {
        assert_eq!(
            looked.get(m.as_str()),
            Some(&Outcome::ok("lookup-me")),
            "{looked:?}"
        );
    }
}
