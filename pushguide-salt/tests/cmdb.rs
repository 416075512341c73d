//! `SaltCmdb` (pillar and grains as a CMDB) against the fake salt-api: one compound job per batch,
//! merging with the other CMDB sources' precedence, minions that do not answer, salt-api errors,
//! hostile values.
#![cfg(all(feature = "fake", feature = "cmdb"))]
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use pushguide_core::sim::SimFleet;
use pushguide_core::{MinionId, Outcome, SaltCall, Template};
use pushguide_java as _;
use pushguide_salt::fake::FakeSaltApi;
use pushguide_salt::{SaltApi, SaltApiSettings, SaltCmdb};
use pushguide_sources::{apply_from, Cmdb, Error};
use serde_json::{json, Value};

fn id(s: &str) -> MinionId {
    MinionId::new(s).unwrap()
}

fn ids(n: usize) -> Vec<MinionId> {
    (1..=n).map(|i| id(&format!("web-{i:02}"))).collect()
}

/// A fleet of `n` minions whose pillar `pushguide:shop` is empty and whose grain `deploy_root` is
/// `/srv/<id>`.
async fn lab(n: usize) -> (FakeSaltApi, SaltApi) {
    let names: Vec<String> = ids(n).iter().map(ToString::to_string).collect();
    let fleet = SimFleet::new(&names).unwrap().on(
        "*",
        "pillar.item",
        Outcome::ok(json!({"pushguide:shop": ""})),
    );
    for m in &names {
        fleet.add_rule(
            m,
            "grains.item",
            Outcome::ok(json!({"deploy_root": format!("/srv/{m}"), "svc": ""})),
            None,
        );
    }
    let fake = FakeSaltApi::start(Arc::new(fleet)).await.unwrap();
    let api = SaltApi::new(SaltApiSettings {
        poll_interval: Duration::from_millis(100),
        job_timeout: Duration::from_secs(3),
        ..fake.settings()
    })
    .unwrap();
    (fake, api)
}

fn pillar(fake: &FakeSaltApi, minion: &str, value: Value) {
    fake.fleet().add_rule(
        minion,
        "pillar.item",
        Outcome::ok(json!({ "pushguide:shop": value })),
        None,
    );
}

fn template(minions: &[&str], hosts: &str) -> Template {
    let list: Vec<String> = minions.iter().map(|m| format!("\"{m}\"")).collect();
    Template::from_toml_str(
        &format!(
            "name = \"shop\"\n[targets]\nminions = [{}]\n[project]\nkind = \"java-tomcat\"\n\
             context = \"shop\"\nroot = \"/srv/default\"\ncatalina_base = \"/var/lib/tomcat10\"\n\
             service = \"tomcat10\"\n{hosts}",
            list.join(", ")
        ),
        "shop.toml",
    )
    .unwrap()
}

/// The settings the merged template gives `host` (the kind's view, after precedence).
fn host_table(t: &Template, host: &str) -> Value {
    let v = serde_json::to_value(&t.project).unwrap();
    v["hosts"][host].clone()
}

#[tokio::test]
async fn pillar_and_grains_come_in_one_job_per_batch_and_merge_with_the_cmdb_precedence() {
    let (fake, api) = lab(5).await;
    pillar(
        &fake,
        "web-01",
        json!({"service": "tomcat-a", "catalina_base": "/opt/tomcat-a"}),
    );
    pillar(&fake, "web-02", json!({"root": "/srv/pillar-02"}));
    let cmdb = SaltCmdb::new(api)
        .grain("root", "deploy_root")
        .unwrap()
        .grain("service", "svc")
        .unwrap()
        .batch(2);
    let hosts = ids(5);
    fake.reset_request_count();
    fake.fleet().clear_requests();
    let got = cmdb.host_settings("shop", &hosts).await.unwrap();

    // 5 hosts, 2 per batch: 3 salt jobs (POST /), each running both functions on its batch
    assert_eq!(fake.request_count().get("POST /"), 3);
    let reqs = fake.fleet().requests();
    let pillar_reqs: Vec<_> = reqs.iter().filter(|r| r.fun == "pillar.item").collect();
    let grain_reqs: Vec<_> = reqs.iter().filter(|r| r.fun == "grains.item").collect();
    assert_eq!(pillar_reqs.len(), 3);
    assert_eq!(grain_reqs.len(), 3);
    assert_eq!(pillar_reqs[0].targets, hosts[..2]);
    assert_eq!(pillar_reqs[2].targets, hosts[4..]);
    assert_eq!(pillar_reqs[0].call.arg, [json!("pushguide:shop")]);
    // salt 3008 masks pillar values unless asked for them
    assert_eq!(pillar_reqs[0].call.kwarg.get("unmask"), Some(&json!(true)));
    assert_eq!(grain_reqs[0].call.arg, [json!("deploy_root"), json!("svc")]);

    // pillar wins over a grain key by key; an empty grain is unset; a minion without pillar still
    // gets its grains
    assert_eq!(
        Value::Object(got[&id("web-01")].clone()),
        json!({"service": "tomcat-a", "catalina_base": "/opt/tomcat-a", "root": "/srv/web-01"})
    );
    assert_eq!(
        Value::Object(got[&id("web-02")].clone()),
        json!({"root": "/srv/pillar-02"})
    );
    assert_eq!(
        Value::Object(got[&id("web-05")].clone()),
        json!({"root": "/srv/web-05"})
    );

    // merged like every CMDB: the template's own host value > the CMDB's > the [project] default
    let t = template(
        &["web-01", "web-02", "web-03"],
        "[project.hosts.web-01]\nservice = \"tomcat-own\"\n",
    );
    let merged = apply_from(&cmdb, &t, &hosts[..3]).await.unwrap();
    let w1 = host_table(&merged, "web-01");
    assert_eq!(w1["service"], "tomcat-own");
    assert_eq!(w1["catalina_base"], "/opt/tomcat-a");
    assert_eq!(w1["root"], "/srv/web-01");
    assert_eq!(host_table(&merged, "web-02")["root"], "/srv/pillar-02");
    assert_eq!(host_table(&merged, "web-03")["service"], Value::Null);
}

#[tokio::test]
async fn without_grains_only_the_pillar_is_read_and_a_missing_pillar_means_no_settings() {
    let (fake, api) = lab(2).await;
    pillar(&fake, "web-02", json!({"service": "tomcat-b"}));
    let cmdb = SaltCmdb::new(api).unmask(false);
    fake.fleet().clear_requests();
    let got = cmdb.host_settings("shop", &ids(2)).await.unwrap();
    let reqs = fake.fleet().requests();
    let funs: Vec<&str> = reqs.iter().map(|r| r.fun.as_str()).collect();
    assert_eq!(funs, ["pillar.item"]);
    // salt before 3008 refuses `unmask`: off, it is not sent
    assert!(reqs[0].call.kwarg.is_empty(), "{:?}", reqs[0].call);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[&id("web-02")]["service"], "tomcat-b");
}

#[tokio::test]
async fn minions_that_do_not_answer_are_reported_by_name_not_given_the_defaults() {
    let (fake, api) = lab(4).await;
    pillar(&fake, "web-01", json!({"service": "tomcat-a"}));
    fake.fleet()
        .add_rule("web-03", "*", Outcome::NoReturn, None);
    let cmdb = SaltCmdb::new(api).batch(2).timeout(Duration::from_secs(1));
    // web-03 is down, ghost-9 is not known to the master at all
    let mut hosts = ids(4);
    hosts.push(id("ghost-9"));
    fake.reset_request_count();
    let e = cmdb.host_settings("shop", &hosts).await.unwrap_err();
    match &e {
        Error::Unanswered { hosts, .. } => assert_eq!(hosts, &["ghost-9", "web-03"]),
        other => panic!("{other}"),
    }
    assert!(e.is_retryable());
    let text = e.to_string();
    assert!(
        text.contains("web-03") && text.contains("ghost-9"),
        "{text}"
    );
    // every batch was still asked, so that the error names every missing minion at once
    assert_eq!(fake.request_count().get("POST /"), 3);

    // the deployment does not go on with defaults for them
    let t = template(&["web-01", "web-03"], "");
    let e = apply_from(&cmdb, &t, &[id("web-01"), id("web-03")])
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Unanswered { .. }), "{e}");
}

#[tokio::test]
async fn salt_api_errors_are_typed_cmdb_errors() {
    let (fake, api) = lab(2).await;
    let cmdb = SaltCmdb::new(api.clone());
    // logged in first: the failure hits the job's request
    cmdb.host_settings("shop", &ids(2)).await.unwrap();
    fake.faults().fail_next(1);
    let e = cmdb.host_settings("shop", &ids(2)).await.unwrap_err();
    assert!(matches!(e, Error::Status { status: 500, .. }), "{e:?}");
    assert!(
        e.to_string().contains("salt pillar pushguide:<template>"),
        "{e}"
    );

    // wrong credentials: a configuration error that says what the salt-api user needs
    let bad = SaltApi::new(SaltApiSettings {
        password: "wrong".into(),
        ..fake.settings()
    })
    .unwrap();
    let e = SaltCmdb::new(bad)
        .host_settings("shop", &ids(1))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Config { .. }), "{e:?}");
    assert!(e.to_string().contains("pillar.item"), "{e}");
    assert!(!e.to_string().contains("wrong"), "{e}");

    // nobody listens: unreachable
    let gone = SaltApi::new(SaltApiSettings {
        endpoints: vec!["http://127.0.0.1:9".into()],
        connect_timeout: Duration::from_millis(500),
        ..fake.settings()
    })
    .unwrap();
    let e = SaltCmdb::new(gone)
        .host_settings("shop", &ids(1))
        .await
        .unwrap_err();
    assert!(e.is_retryable(), "{e:?}");

    // a function failing on a minion names the minion
    fake.fleet().add_rule(
        "web-02",
        "pillar.item",
        Outcome::failed(Some(1), "Rendering SLS 'pushguide' failed"),
        None,
    );
    let e = cmdb.host_settings("shop", &ids(2)).await.unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, Error::Malformed { .. }), "{e:?}");
    assert!(
        text.contains("web-02") && text.contains("Rendering SLS"),
        "{text}"
    );

    // a pillar value that is not a table
    fake.fleet().clear_rules();
    pillar(&fake, "web-01", json!("tomcat-a"));
    let e = cmdb.host_settings("shop", &ids(1)).await.unwrap_err();
    assert!(e.to_string().contains("must be a table"), "{e}");
}

#[tokio::test]
async fn hostile_pillar_values_are_refused_like_any_cmdb_value() {
    let (fake, api) = lab(1).await;
    let cmdb = SaltCmdb::new(api);
    let t = template(&["web-01"], "");
    let huge = "a".repeat(1 << 20);
    let cases: [(&str, Value); 7] = [
        ("service", json!("tomcat; rm -rf /")),
        ("service", json!("$(reboot)")),
        ("root", json!("/srv/../etc")),
        ("root", json!(huge)),
        ("catalina_base", json!("/srv/a\u{0}b")),
        ("service", json!("\u{1b}[31mred")),
        ("start_command", json!("/bin/sh -c 'evil'")),
    ];
    for (key, value) in cases {
        fake.fleet().clear_rules();
        pillar(&fake, "web-01", json!({ key: value }));
        let e = apply_from(&cmdb, &t, &[id("web-01")]).await.unwrap_err();
        match &e {
            Error::Setting { host, key: k, .. } => {
                assert_eq!(host, "web-01");
                assert_eq!(k, key);
            }
            other => panic!("{key}: {other}"),
        }
        assert!(e.to_string().len() < 2000, "the message stays bounded");
    }
    // an unknown key the kind does not take
    fake.fleet().clear_rules();
    pillar(&fake, "web-01", json!({"jvm_opts": "-Xmx1g"}));
    let e = apply_from(&cmdb, &t, &[id("web-01")]).await.unwrap_err();
    assert!(matches!(e, Error::Setting { .. }), "{e}");
}

#[tokio::test]
async fn a_compound_call_is_one_job_whose_returns_are_keyed_by_function() {
    let (fake, api) = lab(2).await;
    fake.fleet().add_rule(
        "web-02",
        "grains.item",
        Outcome::failed(Some(1), "boom"),
        None,
    );
    fake.reset_request_count();
    let hosts = ids(2);
    let calls = [
        SaltCall::read("pillar.item").arg("pushguide:shop"),
        SaltCall::read("grains.item")
            .arg("deploy_root")
            .kwarg("delimiter", ":"),
    ];
    let r = api.run_compound(&hosts, &calls).await.unwrap();
    assert_eq!(fake.request_count().get("POST /"), 1);
    assert!(r.jid.is_some());
    let Outcome::Ok { value } = &r.minions[&hosts[0]] else {
        panic!("{r:?}")
    };
    assert_eq!(value["grains.item"]["deploy_root"], "/srv/web-01");
    assert_eq!(value["pillar.item"]["pushguide:shop"], "");
    let Outcome::Ok { value } = &r.minions[&hosts[1]] else {
        panic!("{r:?}")
    };
    assert_eq!(value["grains.item"], "boom");
    // keyword arguments travel packed into the function's arguments
    let grains = fake
        .fleet()
        .requests()
        .into_iter()
        .rfind(|q| q.fun == "grains.item")
        .unwrap();
    assert_eq!(grains.call.kwarg.get("delimiter"), Some(&json!(":")));

    // refused before anything is sent
    fake.reset_request_count();
    assert!(api.run_compound(&hosts, &[]).await.is_err());
    let twice = [SaltCall::read("test.ping"), SaltCall::read("test.ping")];
    assert!(api.run_compound(&hosts, &twice).await.is_err());
    assert_eq!(fake.request_count().get("POST /"), 0);
}

#[tokio::test]
async fn without_hosts_every_minion_salt_knows_is_asked() {
    let (fake, api) = lab(3).await;
    pillar(&fake, "web-03", json!({"service": "tomcat-c"}));
    let got = SaltCmdb::new(api).host_settings("shop", &[]).await.unwrap();
    assert_eq!(got.keys().cloned().collect::<Vec<_>>(), [id("web-03")]);
    drop(fake);
}
