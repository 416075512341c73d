//! Hostile `[project]` values are rejected with the field path; the example parses and round-trips.
#![allow(clippy::unwrap_used)]

use pushguide_core::Template;
use pushguide_wintask as _;

const BASE: &str = "kind = \"windows-task\"\nroot = 'D:\\Jobs\\nightly'\ntask = \"nightly\"\n";

fn parse(extra: &str) -> Result<Template, String> {
    let text = format!("name = \"a\"\n[targets]\nminions = [\"web-01\"]\n[project]\n{BASE}{extra}");
    Template::from_toml_str(&text, "<t>").map_err(|e| e.to_string())
}

#[test]
fn hostile_values_name_their_field() {
    for (extra, field) in [
        (
            "artifact_url = \"file:///etc/passwd\"\n",
            "project.artifact_url",
        ),
        (
            "artifact_url = \"https://x/a;b.zip\"\n",
            "project.artifact_url",
        ),
        ("folder = 'Shop'\n", "project.folder"),
        ("folder = '\\Shop\\..'\n", "project.folder"),
        ("sha256 = \"0\"\n", "project.sha256"),
        ("poll_interval_secs = 0\n", "project.poll_interval_secs"),
        ("run_timeout_secs = 0\n", "project.run_timeout_secs"),
        ("keep_releases = 1000\n", "project.keep_releases"),
        (
            "[project.hosts.web-01]\ntask = \"a b\"\n",
            "project.hosts.web-01.task",
        ),
        (
            "[project.hosts.web-01]\nfolder = '\\a\\\\b'\n",
            "project.hosts.web-01.folder",
        ),
        (
            "[project.hosts.\"-rf\"]\nroot = 'D:\\x'\n",
            "project.hosts.-rf",
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
        "folder = '\\Shop'\nstop_running = true\nrun_now = true\n[project.hosts.web-01]\nroot = 'E:\\Jobs\\nightly'\n",
    )
    .unwrap();
    let again = Template::from_toml_str(&t.to_toml_string().unwrap(), "<again>").unwrap();
    assert_eq!(again.to_toml_string().unwrap(), t.to_toml_string().unwrap());
}

/// Durations are bounded (a value that would overflow a deadline is refused naming the key), and
/// invisible characters are refused in every name, path and URL.
#[test]
fn durations_are_bounded_and_invisible_characters_refused() {
    for (extra, field) in [
        (
            "wait_timeout_secs = 9223372036854775807\n",
            "project.wait_timeout_secs",
        ),
        ("run_timeout_secs = 86401\n", "project.run_timeout_secs"),
        ("poll_interval_secs = 3601\n", "project.poll_interval_secs"),
        (
            "artifact_url = \"https://x/\\u202E{version}.zip\"\n",
            "project.artifact_url",
        ),
        (
            "artifact_url = \"https://x/$(id).zip\"\n",
            "project.artifact_url",
        ),
        (
            "[project.hosts.web-01]\ntask = \"t\\u200B\"\n",
            "project.hosts.web-01.task",
        ),
        (
            "[project.hosts.web-01]\nroot = \"D:\\\\Jobs\\\\\\u2067x\"\n",
            "project.hosts.web-01.root",
        ),
        (
            "[project.hosts.web-01]\nfolder = \"\\\\Sh\\uFEFFop\"\n",
            "project.hosts.web-01.folder",
        ),
    ] {
        let err = parse(extra)
            .err()
            .unwrap_or_else(|| panic!("accepted: {extra}"));
        assert!(err.contains(field), "{extra}: {err}");
        assert!(
            !err.chars().any(pushguide_core::validate::is_hidden),
            "{err:?}"
        );
    }
    parse("wait_timeout_secs = 86400\nrun_timeout_secs = 86400\npoll_interval_secs = 3600\n")
        .unwrap();
}
