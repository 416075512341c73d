//! The conformance suite every project type runs.

use pushguide_core::conformance::{run, Subject};
use pushguide_dotnet as _;
use serde_json::json;

fn hostile(pairs: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
    pairs
        .iter()
        .map(|(a, b, c)| ((*a).into(), (*b).into(), (*c).into()))
        .collect()
}

#[tokio::test]
async fn dotnet_iis_conforms() {
    run(&Subject {
        project: "kind = \"dotnet-iis\"\nroot = 'D:\\Sites\\shop'\nsite = \"shop\"\napp_pool = \"shop\"\napp_offline = true\nwarmup_url = \"http://127.0.0.1/shop/\"\n[project.hosts.web-02]\nsite = \"shop2\"\n".into(),
        required: vec!["web.config".into()],
        stop_fun: "win_iis.stop_apppool".into(),
        post_deploy_check: "http.query".into(),
        answers: vec![
            (
                "win_iis.get_container_setting".into(),
                json!({"physicalPath": "D:\\Sites\\shop\\releases\\0.9.0"}),
            ),
            (
                "win_iis.list_apppools".into(),
                json!({"shop": {"state": "Started", "applications": ["shop"]},
                       "shop2": {"state": "Stopped", "applications": ["shop2"]}}),
            ),
        ],
        hostile: hostile(&[
            ("root = 'D:\\Sites\\shop'", "root = 'D:\\Sites\\..\\Windows'", "project.root"),
            ("site = \"shop\"", "site = \"shop;calc\"", "project.site"),
            ("app_pool = \"shop\"", "app_pool = \"shop pool\"", "project.app_pool"),
            ("warmup_url = \"http://", "warmup_url = \"file://", "project.warmup_url"),
            ("[project.hosts.web-02]", "[project.hosts.\"web-02;x\"]", "project.hosts.web-02;x"),
            ("site = \"shop2\"", "site = \"../shop2\"", "project.hosts.web-02.site"),
        ]),
        sep: '\\',
    })
    .await;
}
