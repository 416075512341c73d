//! `pushguide serve` in a real browser (headless Chromium through chromedriver): logging in through
//! the form, what a viewer sees, a wrong password, logging out; publishing on `serve --demo`
//! (`publish.rs`) and on the real salt lab and Tomcat (`real_lab.rs`). Screenshots of every page
//! visited go to `target/screenshots/`. See `support.rs` for the harness and for when these tests
//! skip.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

mod publish;
mod real_lab;
mod support;
#[path = "../support/tomcat.rs"]
mod tomcat;

use support::{template, Browser, Site};

const VERA_PW: &str = "vera-pw-4-browser";

/// Three templates: `shop` and `billing` viewable by `devs`, `payroll` only by `hr`; vera is in
/// `devs`.
async fn three_templates() -> Site {
    let hosts = ["web-01", "web-02"];
    Site::builder()
        .template("shop", &template("shop", &["devs"], &["ops"], &hosts))
        .template(
            "billing",
            &template("billing", &["devs", "qa"], &["ops"], &hosts),
        )
        .template("payroll", &template("payroll", &["hr"], &["hr"], &hosts))
        .user("vera", &["devs"], VERA_PW)
        .start()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_logs_in_sees_only_the_templates_she_may_view_and_logs_out() {
    let site = three_templates().await;
    let Some(b) = Browser::start("viewer", &site).await else {
        return;
    };
    b.goto("/").await;
    assert_eq!(
        b.path().await,
        "/login",
        "anonymous: sent to the login form"
    );

    b.login("vera", VERA_PW).await;
    assert_eq!(b.path().await, "/", "{}", site.log());
    assert!(
        b.title().await.starts_with("Templates"),
        "{}",
        b.title().await
    );
    assert_eq!(b.text("header .who").await, "vera");
    // each row's first cell: the name, then the description on its own line
    let mut names: Vec<String> = b
        .texts("main table tbody tr td:first-child")
        .await
        .iter()
        .map(|cell| cell.lines().next().unwrap_or_default().to_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["billing", "shop"]);
    let source = b.client().source().await.unwrap();
    assert!(!source.contains("payroll"), "payroll is not vera's to see");
    // a viewer is no admin: no link to the admin page
    let nav = b.texts("header nav a").await;
    assert!(nav.iter().any(|l| l == "Templates"), "{nav:?}");
    assert!(!nav.iter().any(|l| l == "Admin"), "{nav:?}");

    b.click_button("Log out").await;
    assert_eq!(b.path().await, "/login");
    b.goto("/").await;
    assert_eq!(b.path().await, "/login", "the session is gone");
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_shows_the_error_and_logs_nobody_in() {
    let site = three_templates().await;
    let Some(b) = Browser::start("wrong-password", &site).await else {
        return;
    };
    b.login("vera", "not-her-password").await;
    assert_eq!(b.path().await, "/login");
    assert_eq!(
        b.text("p[role=alert]").await,
        "Unknown user or wrong password."
    );
    // the form is offered again, and nothing behind the login opens
    assert!(b.exists("input[name=password]").await);
    b.goto("/").await;
    assert_eq!(b.path().await, "/login");

    // the right password then works
    b.login("vera", VERA_PW).await;
    assert_eq!(b.path().await, "/", "{}", site.log());
    assert!(!b.exists("p[role=alert]").await);
    b.close().await;
}
