//! Hostile `[project]` values are rejected with the field path; the example parses and round-trips.
#![allow(clippy::unwrap_used)]

use pushguide_core::Template;
use pushguide_dotnet as _;

const BASE: &str =
    "kind = \"dotnet-iis\"\nroot = 'D:\\Sites\\shop'\nsite = \"shop\"\napp_pool = \"shop\"\n";

fn parse(extra: &str) -> Result<Template, String> {
    let text = format!("name = \"a\"\n[targets]\nminions = [\"web-01\"]\n[project]\n{BASE}{extra}");
    Template::from_toml_str(&text, "<t>").map_err(|e| e.to_string())
}

#[test]
fn hostile_values_name_their_field() {
    for (extra, field) in [
        (
            "artifact_url = \"ftp://x/{version}.zip\"\n",
            "project.artifact_url",
        ),
        (
            "artifact_url = \"https://x/$(id).zip\"\n",
            "project.artifact_url",
        ),
        ("sha256 = \"ABC\"\n", "project.sha256"),
        (
            "app_offline_text = \"a\\u0007b\"\n",
            "project.app_offline_text",
        ),
        ("warmup_url = \"http://x/ a\"\n", "project.warmup_url"),
        ("keep_releases = 0\n", "project.keep_releases"),
        (
            "[project.conventions]\nforbidden = [\"\"]\n",
            "project.conventions[0]",
        ),
        (
            "[project.hosts.web-01]\nroot = 'D:\\a\\..\\b'\n",
            "project.hosts.web-01.root",
        ),
        (
            "[project.hosts.web-01]\napp_pool = \"p|q\"\n",
            "project.hosts.web-01.app_pool",
        ),
        (
            "[project.hosts.web-01]\nhealth_url = \"javascript:x\"\n",
            "project.hosts.web-01.health_url",
        ),
        (
            "[project.hosts.\"web 01\"]\nsite = \"s\"\n",
            "project.hosts.web 01",
        ),
    ] {
        let err = parse(extra)
            .err()
            .unwrap_or_else(|| panic!("accepted: {extra}"));
        assert!(err.contains(field), "{extra}: {err}");
    }
}

#[test]
fn full_config_round_trips() {
    let t = parse(
        "app_offline = true\nwarmup_url = \"http://127.0.0.1/\"\n[project.conventions]\nforbidden = [\"*.pdb\"]\n\
         [project.hosts.web-01]\nroot = 'E:\\Sites\\shop'\n",
    )
    .unwrap();
    let again = Template::from_toml_str(&t.to_toml_string().unwrap(), "<again>").unwrap();
    assert_eq!(again.to_toml_string().unwrap(), t.to_toml_string().unwrap());
}

/// Right-to-left overrides, zero-width characters, BOMs and other invisible characters are refused in
/// every name, path and URL; the message shows them escaped.
#[test]
fn invisible_characters_are_refused_everywhere() {
    for c in [
        "\\u202E", "\\u2066", "\\u200B", "\\uFEFF", "\\u00AD", "\\uFE0F", "\\u0085",
    ] {
        for (extra, field) in [
            (
                format!("artifact_url = \"https://x/{c}{{version}}.zip\"\n"),
                "project.artifact_url",
            ),
            (
                format!("warmup_url = \"http://x/{c}\"\n"),
                "project.warmup_url",
            ),
            (
                format!("app_offline_text = \"down{c}\"\n"),
                "project.app_offline_text",
            ),
            (
                format!("[project.hosts.web-01]\nroot = \"D:\\\\Sites\\\\s{c}\"\n"),
                "project.hosts.web-01.root",
            ),
            (
                format!("[project.hosts.web-01]\nhealth_url = \"http://x/{c}\"\n"),
                "project.hosts.web-01.health_url",
            ),
            (
                format!("[project.conventions]\nforbidden = [\"*.log{c}\"]\n"),
                "project.conventions[0]",
            ),
            (
                format!("[project.hosts.web-01]\nsite = \"s{c}\"\n"),
                "project.hosts.web-01.site",
            ),
        ] {
            let err = parse(&extra)
                .err()
                .unwrap_or_else(|| panic!("accepted: {extra}"));
            assert!(err.contains(field), "{extra}: {err}");
            assert!(
                !err.chars().any(pushguide_core::validate::is_hidden),
                "{err:?}"
            );
        }
    }
}
