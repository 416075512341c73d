//! Template parsing, validation and round trip.

use pushguide_core::{Error, OnFailure, RollbackPolicy, Template, Threshold};

const FULL: &str = r#"
name = "shop-web"
description = "The shop"

[acl.viewers]
groups = ["devs"]

[acl.deployers]
users = ["alice"]
groups = ["ops"]

[targets]
expression = "G@role:web and web-*"
type = "compound"

[rollout]
batch = "10%"
canary = true

[failure]
max_failed = "5%"
on_failure = "pause"

[health]
url = "http://127.0.0.1:8080/shop/health"
expect_status = 200
body_contains = "UP"

[rollback]
policy = "version"
to = "1.2.3"

[project]
kind = "test-app"
root = "/srv/shop"
"#;

fn parse(text: &str) -> Result<Template, Error> {
    Template::from_toml_str(text, "t.toml")
}

#[test]
fn full_template_parses_and_round_trips() {
    let t = parse(FULL).unwrap();
    assert_eq!(t.rollout.batch, Threshold::Percent(10.0));
    assert!(t.rollout.canary);
    assert_eq!(t.failure.max_failed, Threshold::Percent(5.0));
    assert_eq!(t.failure.on_failure, OnFailure::Pause);
    assert_eq!(t.rollback, RollbackPolicy::Version { to: "1.2.3".into() });
    assert_eq!(t.project.typetag_name(), "test-app");
    let text = t.to_toml_string().unwrap();
    let again = parse(&text).unwrap();
    assert_eq!(again.to_toml_string().unwrap(), text);
    assert_eq!(again.acl, t.acl);
    assert_eq!(again.targets, t.targets);
    assert_eq!(again.health, t.health);
}

#[test]
fn unknown_kind_lists_the_known_kinds() {
    let text = FULL.replace("kind = \"test-app\"", "kind = \"cobol-mainframe\"");
    let err = parse(&text).unwrap_err();
    match &err {
        Error::UnknownKind { kind, known, field } => {
            assert_eq!(kind, "cobol-mainframe");
            assert_eq!(field, "project.kind");
            assert!(known.contains(&"test-app".to_string()));
        }
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("known kinds: "), "{err}");
    let err = parse(&FULL.replace("kind = \"test-app\"\n", "")).unwrap_err();
    assert!(err.to_string().contains("project.kind"), "{err}");
}

#[test]
fn invalid_fields_name_the_path_and_value() {
    let cases: &[(&str, &str, &str)] = &[
        ("name = \"shop-web\"", "name = \"shop web\"", "`name`"),
        (
            "users = [\"alice\"]",
            "users = [\"al;ice\"]",
            "acl.deployers.users[0]",
        ),
        ("batch = \"10%\"", "batch = 0", "rollout.batch"),
        ("batch = \"10%\"", "batch = \"150%\"", "150%"),
        ("batch = \"10%\"", "batch = \"ten\"", "ten"),
        ("to = \"1.2.3\"", "to = \"1.2;3\"", "rollback.to"),
        (
            "root = \"/srv/shop\"",
            "root = \"srv/shop\"",
            "project.root",
        ),
        (
            "root = \"/srv/shop\"",
            "root = \"/srv/../etc\"",
            "project.root",
        ),
        (
            "expect_status = 200",
            "expect_status = 99",
            "health.expect_status",
        ),
        (
            "url = \"http://127.0.0.1:8080/shop/health\"",
            "url = \"file:///etc/passwd\"",
            "health.url",
        ),
        (
            "expression = \"G@role:web and web-*\"",
            "expression = \"web-*; reboot\"",
            "targets.expression",
        ),
        ("canary = true", "canary = true\nbatchsize = 3", "batchsize"),
        (
            "policy = \"version\"",
            "policy = \"sometimes\"",
            "sometimes",
        ),
    ];
    for (from, to, expect) in cases {
        assert!(FULL.contains(from), "{from}");
        let err = parse(&FULL.replacen(from, to, 1)).unwrap_err().to_string();
        assert!(err.contains(expect), "{to}: {err}");
    }
}

#[test]
fn targets_need_exactly_one_form_and_unique_ids() {
    let base = "name = \"a\"\n[project]\nkind = \"test-app\"\nroot = \"/srv/a\"\n[targets]\n";
    let err = parse(base).unwrap_err().to_string();
    assert!(err.contains("`targets`"), "{err}");
    let err = parse(&format!("{base}minions = [\"a\", \"a\"]"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("targets.minions[1]") && err.contains("twice"),
        "{err}"
    );
    let err = parse(&format!("{base}minions = [\"a\"]\nexpression = \"b*\""))
        .unwrap_err()
        .to_string();
    assert!(err.contains("not both"), "{err}");
    let err = parse(&format!("{base}minions = [\"a b\"]"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("targets.minions[0]"), "{err}");
}

#[test]
fn syntax_errors_say_where() {
    let err = parse("name = \n").unwrap_err().to_string();
    assert!(err.contains("t.toml") && err.contains("line 1"), "{err}");
    let err = Template::load("/nonexistent/x.toml")
        .unwrap_err()
        .to_string();
    assert!(err.contains("/nonexistent/x.toml"), "{err}");
}
