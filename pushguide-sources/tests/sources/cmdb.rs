use std::time::Duration;

use pushguide_core::MinionId;
use pushguide_sources::{Cmdb, Error, HttpCmdb, StaticCmdb};

use crate::support::{dead_address, serve, temp_dir, Reply};

fn id(s: &str) -> MinionId {
    MinionId::new(s).unwrap()
}

const HOSTS: &str = r#"{"hosts": {
    "web-01": {"catalina_base": "/opt/tomcat-a", "service": "tomcat-a"},
    "web-02": {"catalina_base": "/opt/tomcat-b", "health_url": null},
    "web-03": {}
}}"#;

#[tokio::test]
async fn http_cmdb_returns_the_settings_of_the_wanted_hosts() {
    let s = serve(&[("/api/hosts?template=shop-web", Reply::json(HOSTS))]).await;
    let cmdb = HttpCmdb::new(&format!("{}/api", s.base)).unwrap();
    let all = cmdb.host_settings("shop-web", &[]).await.unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[&id("web-01")]["service"], "tomcat-a");

    let some = cmdb
        .host_settings("shop-web", &[id("web-02"), id("web-09")])
        .await
        .unwrap();
    assert_eq!(
        some.keys().map(MinionId::as_str).collect::<Vec<_>>(),
        ["web-02"]
    );
}

#[tokio::test]
async fn http_cmdb_errors_name_the_source_and_host() {
    let s = serve(&[
        (
            "/hosts?template=a",
            Reply::json(r#"{"hosts": {"web-01;reboot": {}}}"#),
        ),
        (
            "/hosts?template=b",
            Reply::json(r#"{"hosts": {"web-01": "x"}}"#),
        ),
        ("/hosts?template=c", Reply::json("[]")),
        (
            "/hosts?template=d",
            Reply::json(HOSTS).delayed(Duration::from_secs(5)),
        ),
    ])
    .await;
    let cmdb = HttpCmdb::new(&s.base)
        .unwrap()
        .timeout(Duration::from_millis(300));

    let err = cmdb.host_settings("a", &[]).await.unwrap_err();
    assert!(matches!(err, Error::InvalidHost { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains(&s.base) && text.contains("web-01;reboot"),
        "{text}"
    );

    let err = cmdb.host_settings("b", &[]).await.unwrap_err();
    assert!(
        err.to_string().contains("hosts.web-01: expected an object"),
        "{err}"
    );

    let err = cmdb.host_settings("c", &[]).await.unwrap_err();
    assert!(matches!(err, Error::Malformed { .. }), "{err:?}");

    let err = cmdb.host_settings("d", &[]).await.unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");

    let err = cmdb.host_settings("e", &[]).await.unwrap_err();
    assert!(matches!(err, Error::Status { status: 404, .. }), "{err:?}");

    let dead = dead_address().await;
    let err = HttpCmdb::new(&dead)
        .unwrap()
        .host_settings("a", &[])
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unreachable { .. }), "{err:?}");
    assert!(err.to_string().contains(&dead), "{err}");
}

const STATIC: &str = r#"
[hosts.web-01]
catalina_base = "/opt/tomcat-a"
service = "tomcat-a"

[hosts.web-02]
catalina_base = "/opt/tomcat-b"

[templates.shop-web.hosts.web-01]
service = "tomcat-shop"

[templates.shop-web.hosts.web-03]
root = "/srv/shop3"
"#;

#[tokio::test]
async fn static_cmdb_per_template_overrides_shared_hosts_key_by_key() {
    let dir = temp_dir("static-cmdb");
    let path = dir.join("cmdb.toml");
    std::fs::write(&path, STATIC).unwrap();
    let cmdb = StaticCmdb::load(&path).unwrap();
    assert_eq!(cmdb.name(), path.display().to_string());

    let shop = cmdb.host_settings("shop-web", &[]).await.unwrap();
    assert_eq!(shop.len(), 3);
    assert_eq!(shop[&id("web-01")]["service"], "tomcat-shop");
    assert_eq!(shop[&id("web-01")]["catalina_base"], "/opt/tomcat-a");
    assert_eq!(shop[&id("web-03")]["root"], "/srv/shop3");

    let other = cmdb.host_settings("other", &[id("web-01")]).await.unwrap();
    assert_eq!(other.len(), 1);
    assert_eq!(other[&id("web-01")]["service"], "tomcat-a");
}

#[test]
fn static_cmdb_errors_name_the_file() {
    let err = StaticCmdb::from_toml_str("[hosts.\"web 01\"]\nx = 1\n", "cmdb.toml").unwrap_err();
    assert!(matches!(err, Error::InvalidHost { .. }), "{err:?}");
    assert!(err.to_string().contains("cmdb.toml"), "{err}");

    let err = StaticCmdb::from_toml_str("[host.web-01]\nx = 1\n", "cmdb.toml").unwrap_err();
    assert!(matches!(err, Error::Malformed { .. }), "{err:?}");
    assert!(err.to_string().contains("cmdb.toml"), "{err}");

    let err = StaticCmdb::load("/nonexistent/cmdb.toml").unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
}
