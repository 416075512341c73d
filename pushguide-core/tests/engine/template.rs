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

/// No control or invisible character in a message, and a bounded size.
fn assert_clean(msg: &str, max: usize) {
    assert!(msg.len() <= max, "{} bytes: {}", msg.len(), &msg[..400]);
    assert!(
        !msg.chars().any(pushguide_core::validate::is_hidden),
        "raw control/invisible character in {msg:?}"
    );
}

#[test]
fn durations_are_bounded_with_a_typed_error_naming_the_key() {
    for (from, to, field) in [
        (
            "expect_status = 200",
            "expect_status = 200\ntimeout_secs = 9223372036854775807",
            "health.timeout_secs",
        ),
        (
            "expect_status = 200",
            "expect_status = 200\ninterval_secs = 9223372036854775807",
            "health.interval_secs",
        ),
        (
            "expect_status = 200",
            "expect_status = 200\nretries = 4000000000",
            "health.retries",
        ),
        (
            "expect_status = 200",
            "expect_status = 200\ntimeout_secs = 0",
            "health.timeout_secs",
        ),
    ] {
        let err = parse(&FULL.replacen(from, to, 1)).unwrap_err();
        match &err {
            Error::Invalid { field: f, .. } => assert_eq!(f, field, "{err}"),
            other => panic!("{to}: {other}"),
        }
    }
    let ok = FULL.replacen(
        "expect_status = 200",
        "expect_status = 200\ntimeout_secs = 3600\ninterval_secs = 300\nretries = 100",
        1,
    );
    parse(&ok).unwrap();
}

#[test]
fn health_url_uses_the_one_url_grammar() {
    for bad in [
        "http://127.0.0.1/$(id)",
        "http://127.0.0.1:8080/\u{202e}lmth.x",
        "http://127.0.0.1/a;reboot",
        "http://127.0.0.1/`id`",
        "http://",
    ] {
        let text = FULL.replacen(
            "url = \"http://127.0.0.1:8080/shop/health\"",
            &format!("url = \"{bad}\""),
            1,
        );
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("health.url"), "{bad}: {err}");
        assert_clean(&err, 1000);
    }
}

#[test]
fn invisible_characters_are_refused_in_every_template_value() {
    for (from, to, field) in [
        (
            "name = \"shop-web\"",
            "name = \"shop\u{202e}-web\"",
            "`name`",
        ),
        (
            "description = \"The shop\"",
            "description = \"The \u{2067}shop\"",
            "description",
        ),
        (
            "expression = \"G@role:web and web-*\"",
            "expression = \"web-\u{200b}*\"",
            "targets.expression",
        ),
        ("to = \"1.2.3\"", "to = \"1.2.3\u{feff}\"", "rollback.to"),
        (
            "body_contains = \"UP\"",
            "body_contains = \"U\u{202e}P\"",
            "health.body_contains",
        ),
        (
            "groups = [\"ops\"]",
            "groups = [\"o\u{200d}ps\"]",
            "acl.deployers.groups[0]",
        ),
    ] {
        assert!(FULL.contains(from), "{from}");
        let err = parse(&FULL.replacen(from, to, 1)).unwrap_err().to_string();
        assert!(err.contains(field), "{to}: {err}");
        assert_clean(&err, 1000);
    }
}

#[test]
fn echoed_values_are_quoted_escaped_and_cut() {
    // a 100 KB template name
    let name = "n".repeat(100 * 1024);
    let err = parse(&FULL.replacen("shop-web", &name, 1))
        .unwrap_err()
        .to_string();
    assert!(err.contains("(102400 bytes)"), "{err}");
    assert_clean(&err, 1000);
    // escape sequences and newlines in values
    let err = parse(&FULL.replacen("shop-web", "shop\\u001b[31m\\nweb\\u009b", 1))
        .unwrap_err()
        .to_string();
    assert!(err.contains(r"\u{1b}[31m\nweb"), "{err}");
    assert_clean(&err, 1000);
    // a parse error on a long line with an escape sequence: the excerpt is cut and escaped
    let line = format!("name = \"{}\u{1b}[2J\" junk", "x".repeat(500_000));
    let err = parse(&line).unwrap_err().to_string();
    assert!(err.contains("line 1, column"), "{err}");
    assert_clean(&err, 2000);
    // an unknown key as long as the file allows
    let err = parse(&FULL.replacen("canary = true", &format!("{} = 1", "k".repeat(200_000)), 1))
        .unwrap_err()
        .to_string();
    assert_clean(&err, 2000);
}

#[test]
fn a_ten_megabyte_one_line_template_gets_a_short_error() {
    let text = format!("name = \"{}\"", "\u{1b}[2J".repeat(10 * 1024 * 1024 / 4));
    assert!(text.len() >= 10 * 1024 * 1024);
    let started = std::time::Instant::now();
    let err = parse(&text).unwrap_err().to_string();
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    assert!(err.contains("at most 4194304 bytes"), "{err}");
    assert_clean(&err, 500);
    // the same through a file
    let file = std::env::temp_dir().join(format!("pushguide-big-{}.toml", std::process::id()));
    std::fs::write(&file, &text).unwrap();
    let err = Template::load(&file).unwrap_err().to_string();
    std::fs::remove_file(&file).unwrap();
    assert!(err.contains("at most 4194304 bytes"), "{err}");
    assert_clean(&err, 500);
}

#[test]
fn hundreds_of_thousands_of_host_tables_are_refused_quickly() {
    use std::fmt::Write as _;
    let mut text = FULL.to_owned();
    for i in 0..300_000 {
        let _ = write!(text, "[project.hosts.h{i:06}]\nroot = \"/srv/x\"\n");
    }
    assert!(text.len() > 9 * 1024 * 1024, "{}", text.len());
    let started = std::time::Instant::now();
    let err = parse(&text).unwrap_err().to_string();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(err.contains("bytes are accepted"), "{err}");
    // within the size bound but over the host-table bound
    let mut text = FULL.to_owned();
    for i in 0..=pushguide_core::validate::MAX_HOSTS {
        let _ = writeln!(text, "[project.hosts.h{i}]");
    }
    assert!(text.len() < pushguide_core::validate::MAX_TEMPLATE_BYTES);
    let started = std::time::Instant::now();
    let err = parse(&text).unwrap_err();
    // refused after one untyped parse of 100,001 tables (seconds in a debug build on a busy 2-core
    // machine), never after building and deploying them
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    match &err {
        Error::Invalid { field, reason, .. } => {
            assert_eq!(field, "project.hosts");
            assert!(reason.contains("more than 100000"), "{err}");
        }
        other => panic!("{other}"),
    }
    // one long value
    let err = parse(&FULL.replacen("The shop", &"d".repeat(20_000), 1))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`description`") && err.contains("longer than"),
        "{err}"
    );
}

#[test]
fn takeover_defaults_to_rollback_with_a_rollback_policy_else_mark_and_bad_values_are_named() {
    use pushguide_core::TakeoverPolicy;
    // FULL has a rollback policy and no takeover key
    let t = parse(FULL).unwrap();
    assert_eq!(t.takeover, None);
    assert_eq!(t.takeover(), TakeoverPolicy::Rollback);
    let none = FULL.replace("[rollback]\npolicy = \"version\"\nto = \"1.2.3\"\n", "");
    assert_eq!(parse(&none).unwrap().takeover(), TakeoverPolicy::Mark);
    for p in ["mark", "rollback", "resume"] {
        let text = FULL.replace(
            "description = \"The shop\"\n",
            &format!("description = \"The shop\"\ntakeover = \"{p}\"\n"),
        );
        let t = parse(&text).unwrap();
        assert_eq!(t.takeover().as_str(), p);
        // round trip keeps it
        let again = parse(&t.to_toml_string().unwrap()).unwrap();
        assert_eq!(again.takeover, t.takeover);
    }
    for (bad, shown) in [
        ("\"later\"", "(got \"later\")"),
        ("3", "(got \"3\")"),
        ("\"Mark\"", "(got \"Mark\")"),
    ] {
        let text = FULL.replace(
            "description = \"The shop\"\n",
            &format!("description = \"The shop\"\ntakeover = {bad}\n"),
        );
        let e = parse(&text).unwrap_err();
        assert!(matches!(e, Error::Invalid { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(
            msg.contains("takeover") && msg.contains(shown) && msg.contains("resume"),
            "{msg}"
        );
    }
}
