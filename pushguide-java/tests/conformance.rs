//! The conformance suite every project type runs.

use pushguide_core::conformance::{run, Subject};
use pushguide_java as _;

fn hostile(pairs: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
    pairs
        .iter()
        .map(|(a, b, c)| ((*a).into(), (*b).into(), (*c).into()))
        .collect()
}

#[tokio::test]
async fn java_tomcat_linux_conforms() {
    run(&Subject {
        project: "kind = \"java-tomcat\"\ncontext = \"shop\"\nroot = \"/srv/shop\"\ncatalina_base = \"/var/lib/tomcat10\"\nservice = \"tomcat10\"\n".into(),
        required: vec!["WEB-INF/web.xml".into()],
        stop_fun: "service.stop".into(),
        post_deploy_check: "http.query".into(),
        answers: vec![],
        hostile: hostile(&[
            ("context = \"shop\"", "context = \"shop;reboot\"", "project.context"),
            ("root = \"/srv/shop\"", "root = \"/srv/../etc\"", "project.root"),
            ("service = \"tomcat10\"", "service = \"tomcat10 && id\"", "project.service"),
            ("catalina_base = \"/var/lib/tomcat10\"", "catalina_base = \"var/lib\"", "project.catalina_base"),
        ]),
        sep: '/',
    })
    .await;
}

#[tokio::test]
async fn java_tomcat_windows_conforms() {
    run(&Subject {
        project: "kind = \"java-tomcat\"\nplatform = \"windows\"\ncontext = \"shop\"\nroot = 'D:\\apps\\shop'\ncatalina_base = 'C:\\Tomcat10'\nservice = \"Tomcat10\"\n".into(),
        required: vec!["WEB-INF/web.xml".into()],
        stop_fun: "service.stop".into(),
        post_deploy_check: "http.query".into(),
        answers: vec![],
        hostile: hostile(&[
            ("root = 'D:\\apps\\shop'", "root = 'D:\\apps\\..\\Windows'", "project.root"),
            ("service = \"Tomcat10\"", "service = \"Tomcat10|calc\"", "project.service"),
        ]),
        sep: '\\',
    })
    .await;
}
