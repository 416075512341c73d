use pushguide_core::sim::SimFleet;
use pushguide_core::{Deployer, DeployerConfig, KindInfo, MinionId, Template, Transport};
use pushguide_sources::{apply_cmdb, apply_cmdb_to, apply_from, Error, HostSettings, StaticCmdb};
use serde_json::{json, Value};

fn template(extra_hosts: &str) -> Template {
    Template::from_toml_str(
        &format!(
            r#"
name = "shop-web"
[targets]
minions = ["web-01", "web-02", "web-03"]
[rollout]
batch = "50%"
[project]
kind = "java-tomcat"
context = "shop"
root = "/srv/shop"
catalina_base = "/var/lib/tomcat10"
service = "tomcat10"
[project.hosts.web-01]
service = "tomcat-blue"
{extra_hosts}
"#
        ),
        "shop-web.toml",
    )
    .unwrap()
}

fn settings(v: Value) -> HostSettings {
    v.as_object()
        .unwrap()
        .iter()
        .map(|(h, s)| (MinionId::new(h).unwrap(), s.as_object().unwrap().clone()))
        .collect()
}

/// The merged `[project]` table, as JSON, for assertions.
fn project(t: &Template) -> Value {
    let table: toml::Table = toml::from_str(&t.to_toml_string().unwrap()).unwrap();
    serde_json::to_value(&table["project"]).unwrap()
}

#[test]
fn template_host_values_beat_cmdb_values_which_beat_project_defaults() {
    let t = template("");
    let merged = apply_cmdb(
        &t,
        "cmdb.toml",
        &settings(json!({
            "web-01": {"service": "from-cmdb", "catalina_base": "/opt/tomcat-a"},
            "web-02": {"catalina_base": "/opt/tomcat-b", "health_url": null},
            "web-99": {"service": "not-a-target"}
        })),
    )
    .unwrap();
    let p = project(&merged);
    // 1. the template's explicit host value wins over the CMDB.
    assert_eq!(p["hosts"]["web-01"]["service"], "tomcat-blue");
    // 2. the CMDB fills keys the template's host table leaves open ...
    assert_eq!(p["hosts"]["web-01"]["catalina_base"], "/opt/tomcat-a");
    assert_eq!(p["hosts"]["web-02"]["catalina_base"], "/opt/tomcat-b");
    // ... and null means unset.
    assert!(p["hosts"]["web-02"].get("health_url").is_none());
    // 3. project defaults stay for what nobody sets.
    assert_eq!(p["catalina_base"], "/var/lib/tomcat10");
    assert!(p["hosts"].get("web-03").is_none());
    // Hosts outside the template's minion list are ignored.
    assert!(p["hosts"].get("web-99").is_none());
    // Everything else survives the round trip.
    assert_eq!(merged.name, "shop-web");
    assert_eq!(merged.targets.minions, t.targets.minions);
    assert_eq!(merged.rollout, t.rollout);
    // The kind builds a deployer from the merged config.
    merged.project.build().unwrap();
}

#[test]
fn no_settings_returns_an_equal_template() {
    let t = template("");
    let merged = apply_cmdb(&t, "cmdb", &HostSettings::new()).unwrap();
    assert_eq!(
        merged.to_toml_string().unwrap(),
        t.to_toml_string().unwrap()
    );
}

#[test]
fn unknown_key_names_cmdb_host_and_key() {
    let t = template("");
    let err = apply_cmdb(
        &t,
        "https://cmdb.example.com/api",
        &settings(json!({
            "web-01": {"catalina_base": "/opt/tomcat-a"},
            "web-02": {"catalina_base": "/opt/tomcat-b", "jvm_heap": "2g"}
        })),
    )
    .unwrap_err();
    match &err {
        Error::Setting {
            host, key, kind, ..
        } => {
            assert_eq!(
                (host.as_str(), key.as_str(), kind.as_str()),
                ("web-02", "jvm_heap", "java-tomcat")
            );
        }
        other => panic!("{other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.contains("https://cmdb.example.com/api")
            && text.contains("web-02")
            && text.contains("jvm_heap")
            && text.contains("unknown field"),
        "{text}"
    );
}

#[test]
fn invalid_value_names_cmdb_host_key_and_field() {
    let t = template("");
    let err = apply_cmdb(
        &t,
        "cmdb.toml",
        &settings(json!({"web-03": {"catalina_base": "/opt/../etc"}})),
    )
    .unwrap_err();
    assert!(matches!(err, Error::Setting { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("cmdb.toml")
            && text.contains("web-03")
            && text.contains("project.hosts.web-03.catalina_base"),
        "{text}"
    );

    let err = apply_cmdb(
        &t,
        "cmdb.toml",
        &settings(json!({"web-03": {"start_command": "not a list"}})),
    )
    .unwrap_err();
    assert!(err.to_string().contains("start_command"), "{err}");
}

#[tokio::test]
async fn apply_from_a_static_cmdb() {
    let cmdb = StaticCmdb::from_toml_str(
        r#"
[hosts.web-03]
service = "tomcat-green"
[templates.other.hosts.web-03]
service = "not-for-shop"
"#,
        "cmdb.toml",
    )
    .unwrap();
    let t = template("");
    let merged = apply_from(&cmdb, &t, &[]).await.unwrap();
    assert_eq!(
        project(&merged)["hosts"]["web-03"]["service"],
        "tomcat-green"
    );
}

/// The shop template over the salt target `expression` (`type` given when not `None`).
fn expression_template(expression: &str, tgt_type: Option<&str>) -> Template {
    let t = template("");
    let text = t.to_toml_string().unwrap().replace(
        "minions = [\"web-01\", \"web-02\", \"web-03\"]",
        &match tgt_type {
            None => format!("expression = \"{expression}\""),
            Some(ty) => format!("expression = \"{expression}\"\ntype = \"{ty}\""),
        },
    );
    Template::from_toml_str(&text, "shop-web.toml").unwrap()
}

fn id(s: &str) -> MinionId {
    MinionId::new(s).unwrap()
}

/// CMDB settings of the targets and of db-01, a host no shop template targets, whose settings the
/// java-tomcat kind refuses (a key it does not know, a control character).
fn with_db01() -> HostSettings {
    settings(json!({
        "web-01": {"service": "from-cmdb", "catalina_base": "/opt/tomcat-a"},
        "web-02": {"catalina_base": "/opt/tomcat-b"},
        "db-01": {"jvm_heap": "2g", "service": "db\u{1b}[2J"}
    }))
}

#[tokio::test]
async fn an_expression_template_gets_the_settings_of_the_hosts_it_resolves_to() {
    let t = expression_template("web-*", None);
    let fleet = SimFleet::new(["web-01", "web-02", "db-01"]).unwrap();
    let resolved = fleet
        .resolve(&t.targets.expression().unwrap())
        .await
        .unwrap();
    assert_eq!(resolved, [id("web-01"), id("web-02")]);

    let merged = apply_cmdb_to(&t, "cmdb.toml", &with_db01(), &resolved).unwrap();
    let p = project(&merged);
    // the same precedence as with a minion list
    assert_eq!(p["hosts"]["web-01"]["service"], "tomcat-blue");
    assert_eq!(p["hosts"]["web-01"]["catalina_base"], "/opt/tomcat-a");
    assert_eq!(p["hosts"]["web-02"]["catalina_base"], "/opt/tomcat-b");
    assert_eq!(p["catalina_base"], "/var/lib/tomcat10");
    // the host the expression does not match: its settings are left out, refusable as they are
    assert!(p["hosts"].get("db-01").is_none(), "{p}");
    assert_eq!(merged.targets, t.targets);
    merged.project.build().unwrap();

    // the same through a CMDB, asked for the resolved hosts only
    let cmdb = StaticCmdb::from_toml_str(
        "[hosts.web-02]\nservice = \"tomcat-green\"\n[hosts.db-01]\njvm_heap = \"2g\"\n",
        "cmdb.toml",
    )
    .unwrap();
    let merged = apply_from(&cmdb, &t, &resolved).await.unwrap();
    let p = project(&merged);
    assert_eq!(p["hosts"]["web-02"]["service"], "tomcat-green");
    assert!(p["hosts"].get("db-01").is_none(), "{p}");

    // without the resolved hosts, every host of the settings is a candidate: db-01 is refused
    let err = apply_cmdb(&t, "cmdb.toml", &with_db01()).unwrap_err();
    assert!(
        matches!(&err, Error::Setting { host, .. } if host == "db-01"),
        "{err:?}"
    );
}

#[test]
fn a_list_expression_names_its_hosts_itself() {
    let t = expression_template("web-01, web-02", Some("list"));
    let merged = apply_cmdb(&t, "cmdb.toml", &with_db01()).unwrap();
    let p = project(&merged);
    assert_eq!(p["hosts"]["web-02"]["catalina_base"], "/opt/tomcat-b");
    assert!(p["hosts"].get("db-01").is_none(), "{p}");
}

#[test]
fn resolved_hosts_outside_the_minion_list_are_left_out() {
    let t = template("");
    let merged =
        apply_cmdb_to(&t, "cmdb.toml", &with_db01(), &[id("web-02"), id("db-01")]).unwrap();
    let p = project(&merged);
    assert_eq!(p["hosts"]["web-02"]["catalina_base"], "/opt/tomcat-b");
    // web-01 is a target but not among the hosts asked for; db-01 is not a target
    assert!(p["hosts"]["web-01"].get("catalina_base").is_none(), "{p}");
    assert!(p["hosts"].get("db-01").is_none(), "{p}");
}

#[test]
fn hostile_values_are_refused_naming_cmdb_host_and_key() {
    let t = template("");
    let refused = |v: Value| {
        let err = apply_cmdb(&t, "https://cmdb.example.com/api", &settings(v)).unwrap_err();
        match &err {
            Error::Setting {
                source_name,
                host,
                kind,
                ..
            } => {
                assert_eq!(source_name, "https://cmdb.example.com/api");
                assert_eq!(host, "web-02");
                assert_eq!(kind, "java-tomcat");
            }
            other => panic!("{other:?}"),
        }
        let text = err.to_string();
        assert!(
            !text.contains(['\u{1b}', '\n', '\u{202e}']) && text.len() < 2000,
            "{text:?}"
        );
        (err, text)
    };

    // control characters, in a value the kind would check, and in one it takes as it is
    let (_, text) = refused(json!({"web-02": {"service": "tomcat\u{1b}[2J\nrm -rf /"}}));
    assert!(
        text.contains("`service`") && text.contains("control"),
        "{text}"
    );
    let (_, text) = refused(json!({"web-02": {"start_command": ["/bin/start", "a\u{202e}b"]}}));
    assert!(text.contains("start_command"), "{text}");
    // an oversized value: bounded before the kind reads it, and cut in the message
    let (_, text) =
        refused(json!({"web-02": {"catalina_base": format!("/{}", "a".repeat(20_000))}}));
    assert!(
        text.contains("catalina_base") && text.contains("longer than 16384 bytes"),
        "{text}"
    );
    // a key with control characters is shown escaped
    let (err, text) = refused(json!({"web-02": {"serv\u{1b}ice": "x"}}));
    assert!(
        matches!(&err, Error::Setting { key, .. } if key == "serv\\u{1b}ice"),
        "{err:?}"
    );
    assert!(text.contains("control"), "{text}");
    // nesting deeper than a template may
    let mut deep = json!("x");
    for _ in 0..20 {
        deep = json!({ "a": deep });
    }
    let (_, text) = refused(json!({"web-02": {"service": deep}}));
    assert!(text.contains("nested deeper than"), "{text}");

    // the same values on a host the template does not target are not looked at
    let merged = apply_cmdb(
        &t,
        "cmdb",
        &settings(json!({"web-99": {"service": "tomcat\u{1b}[2J", "jvm_heap": 1}})),
    )
    .unwrap();
    assert!(project(&merged)["hosts"].get("web-99").is_none());
}

/// Registers `$config` as the test kind `$kind`, which validates nothing and builds no deployer.
macro_rules! test_kind {
    ($config:ty, $kind:literal, $summary:literal) => {
        #[typetag::serde(name = $kind)]
        impl DeployerConfig for $config {
            fn build(&self) -> Result<Box<dyn Deployer>, pushguide_core::Error> {
                Err(pushguide_core::Error::invalid(
                    "project",
                    "",
                    "not buildable in this test",
                ))
            }
        }

        inventory::submit! {
            KindInfo { kind: $kind, summary: $summary, platforms: &[], example: "" }
        }
    };
}

/// A template of `kind` over web-01, with `project` the rest of its `[project]` table.
fn test_template(kind: &str, project: &str) -> Template {
    let text = format!(
        "name = \"{kind}\"\n[targets]\nminions = [\"web-01\"]\n\
         [project]\nkind = \"{kind}\"\n{project}\n"
    );
    Template::from_toml_str(&text, "test.toml").unwrap()
}

/// A kind that takes no per-host settings.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PlainConfig {
    greeting: String,
}

test_kind!(
    PlainConfig,
    "sources-test-plain",
    "A kind without per-host settings (tests)."
);

/// A kind whose `hosts` is a list of names, not a table of per-host settings.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ListedConfig {
    hosts: Vec<String>,
}

test_kind!(
    ListedConfig,
    "sources-test-listed",
    "A kind whose `hosts` is a list (tests)."
);

#[test]
fn a_kind_without_per_host_settings_is_named() {
    let t = test_template("sources-test-plain", "greeting = \"hi\"");
    let err = apply_cmdb(&t, "cmdb.toml", &settings(json!({"web-01": {"x": "1"}}))).unwrap_err();
    match &err {
        Error::NoHostSettings { template, kind, .. } => {
            assert_eq!(
                (template.as_str(), kind.as_str()),
                ("sources-test-plain", "sources-test-plain")
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("cmdb.toml"), "{err}");
    // nothing set for it: the template comes back as it was
    let same = apply_cmdb(&t, "cmdb.toml", &settings(json!({"web-01": {"x": null}}))).unwrap();
    assert_eq!(same.to_toml_string().unwrap(), t.to_toml_string().unwrap());
}

/// Settings for a kind whose `hosts` is no table are an error, never silently dropped.
#[test]
fn settings_for_a_hosts_entry_that_is_no_table_are_refused() {
    let t = test_template("sources-test-listed", "hosts = [\"web-01\"]");
    let err = apply_cmdb(&t, "cmdb.toml", &settings(json!({"web-01": {"x": "1"}}))).unwrap_err();
    assert!(
        matches!(&err, Error::NoHostSettings { kind, .. } if kind == "sources-test-listed"),
        "{err:?}"
    );
    assert!(err.to_string().contains("project.hosts"), "{err}");
}
