//! Every bundled project type is registered, its example config parses and builds, and a release through
//! the simulated fleet sends the documented salt calls.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use pushguide::sim::SimFleet;
use pushguide::{DeploymentOutcome, Effect, Engine, Principal, Request, Template};

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

async fn release(example: &str) -> (Vec<(String, Effect)>, Vec<String>) {
    let t = Arc::new(template_for(example, &["h1", "h2"], "[rollout]\nbatch = 2"));
    let fleet = Arc::new(SimFleet::new(["h1", "h2"]).unwrap());
    let engine = Engine::builder(fleet.clone()).build();
    let r = engine
        .deploy(Request::new(t.clone(), "1.0.0", Principal::user("ops")))
        .await
        .unwrap();
    assert_eq!(r.outcome, DeploymentOutcome::Succeeded, "{r}");
    fleet.clear_requests();
    // a failing last step makes the engine roll back to 1.0.0
    let last = fleet_last_fun(example);
    fleet.add_rule(
        "h2",
        &last,
        pushguide::Outcome::failed(Some(1), "boom"),
        Some(1),
    );
    let r = engine
        .deploy(Request::new(t, "1.1.0", Principal::user("ops")))
        .await
        .unwrap();
    assert_eq!(r.outcome, DeploymentOutcome::RolledBack, "{r}");
    let funs = fleet
        .requests()
        .into_iter()
        .map(|r| (r.fun, r.effect))
        .collect();
    let args = fleet
        .requests()
        .into_iter()
        .map(|r| r.call.to_string())
        .collect();
    (funs, args)
}

fn fleet_last_fun(example: &str) -> String {
    if example.contains("java-tomcat") {
        "service.start".into()
    } else if example.contains("dotnet-iis") {
        "win_iis.start_apppool".into()
    } else {
        "file.symlink".into()
    }
}

fn funs(list: &[(String, Effect)]) -> Vec<&str> {
    list.iter().map(|(f, _)| f.as_str()).collect()
}

#[tokio::test]
async fn java_tomcat_calls() {
    let (calls, args) = release(pushguide::kind_info("java-tomcat").unwrap().example).await;
    assert_eq!(
        funs(&calls),
        vec![
            "test.ping",
            "file.makedirs",
            "cp.get_url",
            "service.stop",
            "archive.unzip",
            "file.symlink",
            "service.start", // fails on h2 → rollback
            "service.stop",
            "file.symlink",
            "service.start",
        ]
    );
    assert!(
        args[2].contains(
            "\"https://ci.example.com/shop/1.1.0/shop.war\" \"/srv/shop/releases/1.1.0.war\""
        ),
        "{args:?}"
    );
    assert!(
        args[8].contains("\"/srv/shop/releases/1.0.0\" \"/var/lib/tomcat10/webapps/shop\""),
        "{args:?}"
    );
}

#[tokio::test]
async fn dotnet_iis_calls() {
    let (calls, args) = release(pushguide::kind_info("dotnet-iis").unwrap().example).await;
    assert_eq!(
        funs(&calls),
        vec![
            "test.ping",
            "file.makedirs",
            "cp.get_url",
            "win_iis.stop_apppool",
            "archive.unzip",
            "win_iis.set_container_setting",
            "win_iis.start_apppool",
            "win_iis.set_container_setting",
            "win_iis.restart_apppool",
        ]
    );
    assert!(
        args[7].contains(r#"D:\\Sites\\shop\\releases\\1.0.0"#),
        "{args:?}"
    );
}

#[tokio::test]
async fn windows_task_calls() {
    let (calls, _) = release(pushguide::kind_info("windows-task").unwrap().example).await;
    assert_eq!(
        funs(&calls),
        vec![
            "test.ping",
            "file.makedirs",
            "cp.get_url",
            "task.edit_task",
            "task.stop",
            "archive.unzip",
            "file.symlink",   // fails on h2; h1 goes on
            "task.edit_task", // then rollback of both
            "task.edit_task",
            "file.symlink",
            "task.edit_task",
        ]
    );
    assert!(calls
        .iter()
        .all(|(f, e)| (f == "test.ping") == (*e == Effect::ReadOnly)));
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
