//! The conformance suite every project type runs.

use pushguide_core::conformance::{run, Subject};
use pushguide_wintask as _;
use serde_json::json;

fn hostile(pairs: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
    pairs
        .iter()
        .map(|(a, b, c)| ((*a).into(), (*b).into(), (*c).into()))
        .collect()
}

#[tokio::test]
async fn windows_task_conforms() {
    run(&Subject {
        project: "kind = \"windows-task\"\nroot = 'D:\\Jobs\\nightly'\ntask = \"nightly\"\nfolder = '\\Shop'\nrun_now = true\npoll_interval_secs = 1\n[project.hosts.web-02]\nroot = 'E:\\Jobs\\nightly'\n".into(),
        required: vec![],
        stop_fun: "task.edit_task".into(),
        post_deploy_check: "task.info".into(),
        answers: vec![
            ("task.status".into(), json!("Ready")),
            (
                "task.info".into(),
                json!({"enabled": true, "last_run": "2026-11-27 09:00:00", "last_run_result": pushguide_wintask::SUCCESS,
                       "missed_runs": 0, "next_run": "2026-11-28 02:00:00", "status": "Ready",
                       "settings": {}, "conditions": {}, "actions": [], "triggers": []}),
            ),
        ],
        hostile: hostile(&[
            ("root = 'D:\\Jobs\\nightly'", "root = 'D:\\Jobs\\..\\Windows'", "project.root"),
            ("task = \"nightly\"", "task = \"nightly&calc\"", "project.task"),
            ("folder = '\\Shop'", "folder = '\\Shop\\..\\x'", "project.folder"),
            ("poll_interval_secs = 1", "poll_interval_secs = 0", "project.poll_interval_secs"),
            ("root = 'E:\\Jobs\\nightly'", "root = 'E:\\Jobs\\$(calc)'", "project.hosts.web-02.root"),
        ]),
        sep: '\\',
    })
    .await;
}
