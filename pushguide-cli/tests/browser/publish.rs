//! Publishing in a real browser, on `serve --demo`: a deployer publishes and watches the grid turn
//! green live, 2.0.0 pauses on web-07, "Exclude failed hosts" lets it finish, a rollback follows; a
//! viewer sees the same pages without any button that acts.

use std::time::Duration;

use crate::support::{Browser, Demo};

const LIVE: Duration = Duration::from_secs(90);

/// Publishes `version` of shop from its page; lands on the deployment page.
async fn publish(b: &Browser, version: &str) {
    b.goto("/t/shop").await;
    b.fill("#publish input[name=version]", version).await;
    b.click_button("Publish").await;
    // the request's page reloads until the deployment starts, then shows it
    b.wait_for_within("#hosts", LIVE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployer_publishes_watches_it_live_excludes_a_failed_host_and_rolls_back() {
    let demo = Demo::start().await;
    let Some(b) = Browser::start_at("publish", &demo.base).await else {
        return;
    };
    b.login("dora", demo.password("dora")).await;
    b.goto("/t/shop").await;
    assert!(b.exists("#publish").await && b.exists("#rollback").await);
    b.screenshot("publish-page").await;

    publish(&b, "1.0.0").await;
    assert!(
        b.path().await.starts_with("/deployments/"),
        "{}",
        b.path().await
    );
    // the grid is updated in place over server-sent events until the outcome shows
    b.wait_for_within("#status .state-succeeded", LIVE).await;
    let cells = b.texts("#hosts tbody tr td:nth-child(5)").await;
    assert_eq!(cells.len(), 20, "{cells:?}");
    assert!(
        cells.iter().all(|c| c == "ok"),
        "post-deploy of every host: {cells:?}"
    );
    b.screenshot("deployment-succeeded").await;

    publish(&b, "2.0.0").await;
    b.wait_for_within("#decide-exclude", LIVE).await;
    let alert = b.text("#status [role=alert]").await;
    assert!(alert.contains("web-07"), "{alert}");
    b.screenshot("deployment-paused").await;
    b.click_button("Exclude failed hosts").await;
    b.wait_for_within("#status .state-partially-applied", LIVE)
        .await;
    assert!(b.text("#hosts").await.contains("permission denied"));
    b.screenshot("deployment-partially-applied").await;

    b.goto("/t/shop").await;
    b.click_button("Roll back").await;
    b.wait_for_within("#hosts", LIVE).await;
    b.wait_for_within("#status .state-rolled-back", LIVE).await;
    b.screenshot("rollback-done").await;
    b.goto("/t/shop").await;
    let versions = b
        .texts("main table:nth-of-type(2) tbody tr td:nth-child(2)")
        .await;
    assert_eq!(versions.len(), 20, "{versions:?}");
    assert!(versions.iter().all(|v| v == "1.0.0"), "{versions:?}");
    // the statistics page draws its charts from these three deployments
    b.goto("/stats?template=shop").await;
    let charts = b
        .client()
        .find_all(fantoccini::Locator::Css("main svg"))
        .await
        .unwrap();
    assert!(charts.len() >= 3, "{} charts", charts.len());
    assert!(b.text("main").await.contains("shop"));
    b.screenshot("statistics").await;
    b.goto("/history").await;
    assert_eq!(b.texts("main table tbody tr").await.len(), 3);
    b.close().await;

    // the viewer sees the template and its deployments, and no button that acts
    let Some(v) = Browser::start_at("publish-viewer", &demo.base).await else {
        return;
    };
    v.login("victor", demo.password("victor")).await;
    v.goto("/t/shop").await;
    assert!(!v.exists("#publish").await && !v.exists("#rollback").await);
    let last = v.wait_for("main a[href^='/deployments/']").await;
    last.click().await.unwrap();
    v.wait_for("#hosts").await;
    assert!(
        !v.exists("#status form").await,
        "no stop or decision for a viewer"
    );
    v.screenshot("viewer-deployment").await;
    v.close().await;
}

/// The admin makes a template in the editor: a mistake is shown at its field and nothing is
/// saved; the fixed text is saved and listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_fixes_a_validation_error_in_the_editor_and_saves() {
    let demo = Demo::start().await;
    let Some(b) = Browser::start_at("editor", &demo.base).await else {
        return;
    };
    b.login("ada", demo.password("ada")).await;
    b.goto("/templates/new").await;
    b.goto("/templates/new?kind=java-tomcat").await;
    // (admins manage template files; like anyone, they see the templates whose ACL names them)
    let good = "name = \"newapp\"\n[acl.viewers]\ngroups = [\"admins\"]\n\
                [acl.deployers]\ngroups = [\"ops\"]\n[targets]\n\
                minions = [\"web-01\"]\n[project]\nkind = \"java-tomcat\"\ncontext = \"newapp\"\n\
                root = \"/srv/newapp\"\ncatalina_base = \"/var/lib/tomcat10\"\n\
                service = \"tomcat10\"\n";
    b.fill("textarea[name=text]", &format!("{good}colour = \"blue\"\n"))
        .await;
    b.click_button("Save").await;
    let errors = b.text("main table").await;
    assert!(errors.contains("colour"), "{errors}");
    b.screenshot("validation-error").await;
    b.goto("/").await;
    assert!(
        !b.text("main").await.contains("newapp"),
        "nothing was saved"
    );
    b.goto("/templates/new?kind=java-tomcat").await;
    b.fill("textarea[name=text]", good).await;
    b.click_button("Save").await;
    b.goto("/").await;
    assert!(b.text("main").await.contains("newapp"));
    b.screenshot("saved").await;
    b.close().await;
}
