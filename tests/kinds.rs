//! Every bundled project type is registered, its example config parses and builds. (Each plugin crate
//! tests its salt calls call by call and runs the conformance suite.)
#![allow(clippy::unwrap_used)]

use pushguide::Template;

fn template_for(kind_example: &str, hosts: &[&str], extra: &str) -> Template {
    let minions: Vec<String> = hosts.iter().map(|h| format!("\"{h}\"")).collect();
    let text = format!(
        "name = \"app\"\n[acl.deployers]\nusers = [\"ops\"]\n[targets]\nminions = [{}]\n[rollback]\npolicy = \"previous\"\n{extra}\n[project]\n{kind_example}",
        minions.join(", ")
    );
    Template::from_toml_str(&text, "<kinds test>").unwrap_or_else(|e| panic!("{e}\n{text}"))
}

#[test]
fn all_bundled_kinds_are_registered_with_one_tag_each() {
    let registered: Vec<&str> = pushguide::registered_kinds()
        .iter()
        .map(|k| k.kind)
        .collect();
    for kind in pushguide::bundled_kinds() {
        assert!(
            registered.contains(&kind),
            "{kind} not registered: {registered:?}"
        );
    }
    assert_eq!(pushguide::bundled_kinds().len(), 3);
    let mut dedup = registered.clone();
    dedup.dedup();
    assert_eq!(dedup, registered, "duplicate kind tags");
    for info in pushguide::registered_kinds() {
        assert!(!info.summary.is_empty());
        assert!(!info.platforms.is_empty());
        let t = template_for(info.example, &["h1"], "");
        assert_eq!(
            t.project.typetag_name(),
            info.kind,
            "example of {} has another tag",
            info.kind
        );
        t.project.build().unwrap();
    }
}

#[test]
fn unknown_kind_lists_the_bundled_kinds() {
    let text = "name = \"a\"\n[targets]\nminions = [\"h1\"]\n[project]\nkind = \"php-fpm\"\n";
    let err = Template::from_toml_str(text, "<t>")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`php-fpm`") && err.contains("dotnet-iis, java-tomcat, windows-task"),
        "{err}"
    );
}

#[test]
fn hostile_plugin_config_values_are_rejected() {
    let java = pushguide::kind_info("java-tomcat").unwrap().example;
    for (from, to, field) in [
        (
            "context = \"shop\"",
            "context = \"shop;reboot\"",
            "project.context",
        ),
        (
            "root = \"/srv/shop\"",
            "root = \"/srv/../etc\"",
            "project.root",
        ),
        (
            "artifact_url = \"https://",
            "artifact_url = \"ftp://",
            "project.artifact_url",
        ),
        (
            "service = \"tomcat10\"",
            "service = \"tomcat10 && id\"",
            "project.service",
        ),
    ] {
        let text = format!(
            "name = \"a\"\n[targets]\nminions = [\"h1\"]\n[project]\n{}",
            java.replace(from, to)
        );
        let err = Template::from_toml_str(&text, "<t>")
            .unwrap_err()
            .to_string();
        assert!(err.contains(field), "{to}: {err}");
    }
}
