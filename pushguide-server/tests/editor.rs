//! The template editor through the router: kinds, validation errors at field paths, atomic
//! writes, revisions with diff and restore, the optimistic lock, names that would leave the
//! templates directory, delete, audit.
#![allow(clippy::unwrap_used)]

mod support;

use axum::http::{header, StatusCode};
use axum::Router;
use serde_json::{json, Value};
use support::{json, login, send, template, text, Env, User, ACL};

fn app(env: &Env) -> Router {
    pushguide_server::router(env.store.clone(), env.catalog(), support::config())
}

fn shop() -> String {
    template("shop", ACL, "minions = [\"web-01\"]")
}

async fn setup() -> (Env, Router, User) {
    let env = Env::new();
    env.write("shop.toml", &shop());
    let app = app(&env);
    let root = login(&app, "root", "root-pw").await;
    (env, app, root)
}

async fn source(app: &Router, root: &User, name: &str) -> Value {
    let res = send(app, root.get(&format!("/api/v1/templates/{name}/source"))).await;
    assert_eq!(res.status(), StatusCode::OK);
    json(res).await
}

async fn save(app: &Router, root: &User, name: &str, text: &str, base: i64) -> (StatusCode, Value) {
    let res = send(
        app,
        root.post_json(
            &format!("/api/v1/templates/{name}/source"),
            &json!({"text": text, "base_revision": base}),
        ),
    )
    .await;
    (res.status(), json(res).await)
}

fn audit(env: &Env) -> Vec<(String, String, String)> {
    env.store
        .audit_log(None, None, 100)
        .unwrap()
        .into_iter()
        .filter(|e| e.action.starts_with("template."))
        .map(|e| (e.action, e.target, e.detail))
        .rev()
        .collect()
}

#[tokio::test]
async fn a_new_template_starts_from_a_registered_kind() {
    let (env, app, root) = setup().await;
    let page = text(send(&app, root.get("/templates/new")).await).await;
    assert!(page.contains("/templates/new?kind=java-tomcat"), "{page}");
    assert!(
        page.contains("Tomcat") && page.contains("linux, windows"),
        "{page}"
    );
    let kinds = json(send(&app, root.get("/api/v1/kinds")).await).await;
    let java = kinds
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kind"] == "java-tomcat")
        .unwrap()
        .clone();
    assert_eq!(java["platforms"], json!(["linux", "windows"]));
    assert!(java["example"].as_str().unwrap().contains("catalina_base"));
    let skeleton = java["template"].as_str().unwrap().to_owned();

    // the editor opens with it; an unknown kind is refused with the known ones
    let res = send(&app, root.get("/templates/new?kind=java-tomcat")).await;
    assert_eq!(res.status(), StatusCode::OK);
    let page = text(res).await;
    assert!(
        page.contains("name = &quot;new-java-tomcat&quot;"),
        "{page}"
    );
    let res = send(&app, root.get("/templates/new?kind=%3Cb%3Ecobol")).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let page = text(res).await;
    assert!(
        page.contains("java-tomcat") && !page.contains("<b>cobol"),
        "{page}"
    );

    // the prefilled text is a valid template: saved as it is, through the form
    let res = send(&app, root.form("/templates/new", &[("text", &skeleton)])).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        res.headers()[header::LOCATION],
        "/templates/new-java-tomcat/revisions"
    );
    assert_eq!(env.read("new-java-tomcat.toml"), skeleton);
    let v = source(&app, &root, "new-java-tomcat").await;
    assert_eq!(v["revision"], 1);
    assert_eq!(v["file"], "new-java-tomcat.toml");
    // and loads as the CLI loads it
    let t = pushguide_core::Template::load(env.templates().join("new-java-tomcat.toml")).unwrap();
    assert_eq!(t.name, "new-java-tomcat");
    // creating it again is refused at `name`
    let res = send(
        &app,
        root.post_json("/api/v1/templates/new", &json!({"text": skeleton})),
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let v = json(res).await;
    assert_eq!(v["errors"][0]["field"], "name");
    assert!(v["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("exists already"));
    assert_eq!(
        audit(&env),
        [(
            "template.create".into(),
            "new-java-tomcat".into(),
            "revision 1".into()
        )]
    );
}

#[tokio::test]
async fn validation_errors_are_shown_at_their_field_and_nothing_is_written() {
    let (env, app, root) = setup().await;
    let before = env.read("shop.toml");
    let cases: Vec<(String, &str, &str)> = vec![
        (
            shop().replace("[targets]", "[rollout]\nbatch = \"150%\"\n[targets]"),
            "rollout.batch",
            "150%",
        ),
        (
            shop().replace(
                "service = \"tomcat10\"",
                "service = \"tomcat10\"\ncolour = 1",
            ),
            "project.colour",
            "colour",
        ),
        (
            shop().replace("kind = \"java-tomcat\"", "kind = \"<script>x</script>\""),
            "project.kind",
            "java-tomcat",
        ),
        (
            shop().replace("name = \"shop\"", "name = \"shop2\""),
            "name",
            "must stay",
        ),
        (
            shop().replace("minions = [\"web-01\"]", "minions = [\"web 01\"]"),
            "targets.minions[0]",
            "web 01",
        ),
        (shop().replace("[targets]", "[targets"), "targets", "line "),
    ];
    for (bad, field, mention) in &cases {
        let (status, v) = save(&app, &root, "shop", bad, 0).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{field}: {v}");
        assert_eq!(v["error"]["kind"], "invalid");
        assert_eq!(v["errors"][0]["field"], *field, "{v}");
        let message = v["errors"][0]["message"].as_str().unwrap();
        assert!(message.contains(mention), "{field}: {message}");
        assert!(message.chars().count() <= 300, "{message}");
        // the page shows the same, escaped, with the text kept in the editor
        let res = send(
            &app,
            root.form("/templates/shop/edit", &[("text", bad), ("base", "0")]),
        )
        .await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{field}");
        let page = text(res).await;
        assert!(page.contains(&format!("<code>{field}</code>")), "{page}");
        assert!(!page.contains("<script>"), "{page}");
        assert!(page.contains("Not saved"), "{page}");
    }
    assert_eq!(env.read("shop.toml"), before);
    assert_eq!(env.listing(), ["shop.toml"]);
    assert_eq!(source(&app, &root, "shop").await["revision"], 0);
    assert!(audit(&env).is_empty());
}

#[tokio::test]
async fn a_stale_base_is_refused_and_loses_nobodys_work() {
    let (env, app, root) = setup().await;
    let other = login(&app, "root", "root-pw").await;
    let base = source(&app, &root, "shop").await["revision"]
        .as_i64()
        .unwrap();
    assert_eq!(base, 0);
    // both admins opened revision 0; the first save wins
    let mine = shop().replace("description = \"d\"", "description = \"mine\"");
    let theirs = shop().replace("description = \"d\"", "description = \"theirs\"");
    let (status, v) = save(&app, &root, "shop", &mine, base).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v, json!({"name": "shop", "revision": 1}));
    let (status, v) = save(&app, &other, "shop", &theirs, base).await;
    assert_eq!(status, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"]["kind"], "stale");
    assert_eq!(v["current_revision"], 1);
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("saved by someone else"));
    assert_eq!(env.read("shop.toml"), mine);
    // the page answers 409 too, with the loser's text still in the editor
    let res = send(
        &app,
        other.form("/templates/shop/edit", &[("text", &theirs), ("base", "0")]),
    )
    .await;
    assert_eq!(res.status(), StatusCode::CONFLICT);
    let page = text(res).await;
    assert!(page.contains("description = &quot;theirs&quot;"), "{page}");
    assert!(page.contains("revision 1 is newer"), "{page}");
    // with the current base it goes through
    let (status, v) = save(&app, &other, "shop", &theirs, 1).await;
    assert_eq!((status, v["revision"].clone()), (StatusCode::OK, json!(2)));
    assert_eq!(env.read("shop.toml"), theirs);
}

#[tokio::test]
async fn revisions_keep_every_save_with_a_diff_and_restore_makes_a_new_one() {
    let (env, app, root) = setup().await;
    let one = shop().replace("description = \"d\"", "description = \"one\"");
    let two = shop().replace("description = \"d\"", "description = \"<two>\"");
    assert_eq!(save(&app, &root, "shop", &one, 0).await.0, StatusCode::OK);
    assert_eq!(save(&app, &root, "shop", &two, 1).await.0, StatusCode::OK);
    let list = json(send(&app, root.get("/api/v1/templates/shop/revisions")).await).await;
    let revs: Vec<(i64, String)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["revision"].as_i64().unwrap(),
                r["user"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(revs, [(2, "root".into()), (1, "root".into())]);
    assert!(list[0]["at"].as_str().unwrap().ends_with('Z'));

    // revision 1 against the current file
    let v = json(send(&app, root.get("/api/v1/templates/shop/revisions/1")).await).await;
    assert_eq!(v["content"], one);
    assert_eq!(v["current_revision"], 2);
    let changed: Vec<(String, String)> = v["diff"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["op"] != "same")
        .map(|l| {
            (
                l["op"].as_str().unwrap().to_owned(),
                l["text"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        changed,
        [
            ("removed".into(), "description = \"one\"".into()),
            ("added".into(), "description = \"<two>\"".into())
        ]
    );
    let page = text(send(&app, root.get("/templates/shop/revisions/1")).await).await;
    assert!(
        page.contains("<span class=\"added\">+ description = &quot;&lt;two&gt;&quot;</span>"),
        "{page}"
    );
    assert!(page.contains("name=\"base\" value=\"2\""), "{page}");
    let page = text(send(&app, root.get("/templates/shop/revisions")).await).await;
    assert!(page.contains("/templates/shop/revisions/2"), "{page}");

    // restore revision 1 (through the form): it becomes revision 3
    let res = send(
        &app,
        root.form("/templates/shop/revisions/1/restore", &[("base", "2")]),
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(env.read("shop.toml"), one);
    let v = source(&app, &root, "shop").await;
    assert_eq!(v["revision"], 3);
    // a restore on a stale base is refused
    let res = send(
        &app,
        root.post_json(
            "/api/v1/templates/shop/revisions/2/restore",
            &json!({"base_revision": 2}),
        ),
    )
    .await;
    assert_eq!(res.status(), StatusCode::CONFLICT);
    assert_eq!(env.read("shop.toml"), one);
    let res = send(&app, root.get("/api/v1/templates/shop/revisions/9")).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);

    // delete: the file goes, the revisions stay, and a restore brings it back
    let res = send(
        &app,
        root.post_json("/api/v1/templates/shop/delete", &json!({})),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(env.listing().is_empty());
    let res = send(&app, root.get("/api/v1/templates/shop/source")).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let list = json(send(&app, root.get("/api/v1/templates/shop/revisions")).await).await;
    assert_eq!(list.as_array().unwrap().len(), 3);
    let v = json(send(&app, root.get("/api/v1/templates/shop/revisions/2")).await).await;
    assert!(v["diff"]
        .as_array()
        .unwrap()
        .iter()
        .all(|l| l["op"] == "removed"));
    let res = send(
        &app,
        root.post_json(
            "/api/v1/templates/shop/revisions/2/restore",
            &json!({"base_revision": 3}),
        ),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(json(res).await["revision"], 4);
    assert_eq!(env.read("shop.toml"), two);

    let actions: Vec<(String, String)> = audit(&env).into_iter().map(|(a, _, d)| (a, d)).collect();
    assert_eq!(
        actions,
        [
            ("template.save".into(), "revision 1".into()),
            ("template.save".into(), "revision 2".into()),
            (
                "template.restore".into(),
                "revision 3 (restored revision 1)".into()
            ),
            (
                "template.delete".into(),
                "file removed, revisions kept".into()
            ),
            (
                "template.restore".into(),
                "revision 4 (restored revision 2)".into()
            ),
        ]
    );
}

#[tokio::test]
async fn names_that_would_leave_the_templates_directory_are_refused() {
    let (env, app, root) = setup().await;
    std::fs::write(env.dir.path().join("secret.toml"), shop()).unwrap();
    let long = "x".repeat(65);
    for name in [
        "..",
        "..%2Fsecret",
        "%2E%2E",
        "a%2Fb",
        "a%00b",
        "%C3%BCml",
        "shop%E2%80%AE",
        ".shop",
        "a%5Cb",
        long.as_str(),
    ] {
        for path in [
            format!("/api/v1/templates/{name}/source"),
            format!("/api/v1/templates/{name}/revisions"),
        ] {
            let res = send(&app, root.get(&path)).await;
            assert!(
                res.status() == StatusCode::BAD_REQUEST || res.status() == StatusCode::NOT_FOUND,
                "{path}: {}",
                res.status()
            );
            if res.status() == StatusCode::BAD_REQUEST {
                let v = json(res).await;
                assert_eq!(v["error"]["kind"], "bad-name", "{path}");
            }
        }
        let res = send(
            &app,
            root.post_json(
                &format!("/api/v1/templates/{name}/source"),
                &json!({"text": shop(), "base_revision": 0}),
            ),
        )
        .await;
        assert_ne!(res.status(), StatusCode::OK, "{name}");
        let res = send(&app, root.form(&format!("/templates/{name}/delete"), &[])).await;
        assert_ne!(res.status(), StatusCode::SEE_OTHER, "{name}");
    }
    // the ones that reach the handler get 400 with a typed error
    for name in ["..%2Fsecret", "a%00b", "%C3%BCml", long.as_str()] {
        let res = send(&app, root.get(&format!("/api/v1/templates/{name}/source"))).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{name}");
        let res = send(&app, root.get(&format!("/templates/{name}/edit"))).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{name}");
    }
    // a name inside the text is checked the same way
    for bad in ["../secret", "a/b", "sh\u{f6}p"] {
        let text = shop().replace("name = \"shop\"", &format!("name = \"{bad}\""));
        let res = send(
            &app,
            root.post_json("/api/v1/templates/new", &json!({"text": text})),
        )
        .await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        assert_eq!(json(res).await["errors"][0]["field"], "name");
    }
    assert_eq!(env.listing(), ["shop.toml"]);
    assert_eq!(
        std::fs::read_to_string(env.dir.path().join("secret.toml")).unwrap(),
        shop()
    );
}

#[tokio::test]
async fn a_failed_write_leaves_no_file_and_no_revision() {
    let (env, app, root) = setup().await;
    // `blocked.toml` is a directory that is not empty: the rename onto it fails
    std::fs::create_dir(env.templates().join("blocked.toml")).unwrap();
    std::fs::write(env.templates().join("blocked.toml").join("keep"), "k").unwrap();
    let text = template("blocked", ACL, "minions = [\"web-01\"]");
    let res = send(
        &app,
        root.post_json("/api/v1/templates/new", &json!({"text": text})),
    )
    .await;
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(json(res).await["error"]["kind"], "write");
    assert_eq!(
        env.listing(),
        ["blocked.toml", "shop.toml"],
        "no temporary file"
    );
    assert!(env.templates().join("blocked.toml").is_dir());
    assert!(env
        .store
        .template_revisions("blocked", 10)
        .unwrap()
        .is_empty());
    assert!(audit(&env).is_empty());
}

#[tokio::test]
async fn only_admins_reach_the_editor() {
    let (env, app, _) = setup().await;
    let bob = login(&app, "bob", "bob-pw").await;
    for path in ["/templates/new", "/templates/shop/edit", "/api/v1/kinds"] {
        assert_eq!(
            send(&app, bob.get(path)).await.status(),
            StatusCode::FORBIDDEN,
            "{path}"
        );
    }
    let (status, _) = save(&app, &bob, "shop", &shop(), 0).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(env.read("shop.toml"), shop());
}

#[tokio::test]
async fn a_read_only_catalog_refuses_to_save() {
    struct Fixed;
    impl pushguide_server::Catalog for Fixed {
        fn scan(
            &self,
        ) -> Result<Vec<pushguide_server::CatalogEntry>, pushguide_server::CatalogError> {
            Ok(Vec::new())
        }
    }
    let env = Env::new();
    let app = pushguide_server::router(
        env.store.clone(),
        std::sync::Arc::new(Fixed),
        support::config(),
    );
    let root = login(&app, "root", "root-pw").await;
    let res = send(
        &app,
        root.post_json("/api/v1/templates/new", &json!({"text": shop()})),
    )
    .await;
    assert_eq!(res.status(), StatusCode::CONFLICT);
    assert_eq!(json(res).await["error"]["kind"], "read-only");
}

#[tokio::test]
async fn two_admins_saving_at_once_one_wins_the_other_gets_409() {
    let (env, app, root) = setup().await;
    let other = login(&app, "root", "root-pw").await;
    for round in 0..5i64 {
        let a = shop().replace(
            "description = \"d\"",
            &format!("description = \"a{round}\""),
        );
        let b = shop().replace(
            "description = \"d\"",
            &format!("description = \"b{round}\""),
        );
        let ((sa, va), (sb, vb)) = tokio::join!(
            save(&app, &root, "shop", &a, round),
            save(&app, &other, "shop", &b, round)
        );
        let mut statuses = [sa, sb];
        statuses.sort();
        assert_eq!(
            statuses,
            [StatusCode::OK, StatusCode::CONFLICT],
            "{va} {vb}"
        );
        let winner = if sa == StatusCode::OK { &a } else { &b };
        assert_eq!(&env.read("shop.toml"), winner);
        assert_eq!(source(&app, &root, "shop").await["revision"], round + 1);
    }
    assert_eq!(env.listing(), ["shop.toml"]);
}

#[tokio::test]
async fn a_viewer_is_refused_every_admin_route_and_a_template_may_be_called_new() {
    let (env, app, root) = setup().await;
    let bob = login(&app, "bob", "bob-pw").await;
    let admin_routes: Vec<_> = pushguide_server::ROUTES
        .iter()
        .filter(|r| r.need == pushguide_server::Need::Admin)
        .collect();
    assert!(admin_routes.len() >= 14, "{admin_routes:?}");
    for r in admin_routes {
        let path = r
            .path
            .replace("{template}", "shop")
            .replace("{revision}", "1");
        let req = axum::http::Request::builder()
            .method(r.method.clone())
            .uri(&path)
            .header(header::COOKIE, &bob.cookie)
            .header("x-csrf-token", &bob.csrf)
            .header(header::CONTENT_TYPE, "application/json")
            .body(axum::body::Body::from("{}"))
            .unwrap();
        assert_eq!(
            send(&app, req).await.status(),
            StatusCode::FORBIDDEN,
            "{} {path}",
            r.method
        );
    }
    assert_eq!(env.read("shop.toml"), shop());
    // `new` is a template name like another
    let new = template("new", ACL, "minions = [\"web-01\"]");
    let res = send(
        &app,
        root.post_json("/api/v1/templates/new", &json!({"text": new})),
    )
    .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(source(&app, &root, "new").await["file"], "new.toml");
    let res = send(&app, root.get("/templates/new/edit")).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(text(res).await.contains("Edit new (new.toml)"));
}

#[tokio::test]
async fn the_form_saves_a_browsers_crlf_text_with_lf_line_ends() {
    let (env, app, root) = setup().await;
    let edited = shop().replace("description = \"d\"", "description = \"crlf\"");
    let res = send(
        &app,
        root.form(
            "/templates/shop/edit",
            &[("text", &edited.replace('\n', "\r\n")), ("base", "0")],
        ),
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(env.read("shop.toml"), edited);
    // and the pages link the editor for admins only: the header, and each row (a broken file too)
    env.write("broken.toml", "name = ");
    let page = text(send(&app, root.get("/")).await).await;
    assert!(page.contains("href=\"/templates/new\""), "{page}");
    assert!(page.contains("href=\"/templates/broken/edit\""), "{page}");
    let res = send(&app, root.get("/templates/broken/edit")).await;
    assert_eq!(res.status(), StatusCode::OK);
    let bob = login(&app, "bob", "bob-pw").await;
    let page = text(send(&app, bob.get("/")).await).await;
    assert!(page.contains("shop"), "{page}");
    assert!(!page.contains("href=\"/templates/"), "{page}");
}
