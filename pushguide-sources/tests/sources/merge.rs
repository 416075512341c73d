use pushguide_core::{MinionId, Template};
use pushguide_sources::{apply_cmdb, apply_from, Error, HostSettings, StaticCmdb};
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
