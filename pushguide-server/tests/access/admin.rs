//! The admin page and its JSON twins: users, groups, tokens, the audit log.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use pushguide_store::AuditEntry;

use crate::support::*;

const HOSTILE: &str = "<script>alert('x')</script>";

fn post_from(addr: &str, path: &str, session: &str, body: &str) -> Request<Body> {
    from(addr, form(path, session, body))
}

#[tokio::test]
async fn admins_add_regroup_and_delete_users_each_audited_with_the_address() {
    let e = env();
    let (root, csrf) = user(&e.app, "root").await;
    let res = send(
        &e.app,
        post_from(
            "192.0.2.7",
            "/admin/users",
            &root,
            &format!("csrf={csrf}&name=dave&password=dave-pw&groups=ops%2C+qa"),
        ),
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()[header::LOCATION], "/admin");
    let dave = e.store.user("dave").unwrap().unwrap();
    assert_eq!(dave.groups, ["ops", "qa"]);
    assert!(dave.password_hash.starts_with("$argon2id$"));
    login(&e.app, "dave").await;
    // taken names, bad names and bad groups are answers on the page
    for bad in [
        "name=dave&password=x",
        "name=a+b&password=x",
        "name=eve&password=",
        "name=eve&password=x&groups=a+b",
    ] {
        let res = send(
            &e.app,
            post_from(
                "192.0.2.7",
                "/admin/users",
                &root,
                &format!("csrf={csrf}&{bad}"),
            ),
        )
        .await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{bad}");
        assert!(text(res).await.contains("role=\"alert\""));
    }
    assert_eq!(e.store.user("eve").unwrap(), None);
    let res = send(
        &e.app,
        post_from(
            "192.0.2.7",
            "/admin/users/dave/groups",
            &root,
            &format!("csrf={csrf}&groups=devs"),
        ),
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(e.store.user("dave").unwrap().unwrap().groups, ["devs"]);
    let res = send(
        &e.app,
        post_from(
            "192.0.2.7",
            "/admin/users/nobody/groups",
            &root,
            &format!("csrf={csrf}&groups=x"),
        ),
    )
    .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    // without the CSRF token nothing happens
    let res = send(
        &e.app,
        post_from("192.0.2.7", "/admin/users/dave/delete", &root, ""),
    )
    .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(e.store.user("dave").unwrap().is_some());
    let res = send(
        &e.app,
        post_from(
            "192.0.2.7",
            "/admin/users/dave/delete",
            &root,
            &format!("csrf={csrf}"),
        ),
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(e.store.user("dave").unwrap(), None);
    // an admin does not delete themselves
    let res = send(
        &e.app,
        post_from(
            "192.0.2.7",
            "/admin/users/root/delete",
            &root,
            &format!("csrf={csrf}"),
        ),
    )
    .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(e.store.user("root").unwrap().is_some());

    let log: Vec<_> = audit(&e)
        .into_iter()
        .filter(|a| a.0 == "root" && a.2.starts_with("user."))
        .collect();
    let got: Vec<(&str, &str, &str, &str)> = log
        .iter()
        .map(|a| {
            (
                a.1.as_deref().unwrap(),
                a.2.as_str(),
                a.3.as_str(),
                a.4.as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("192.0.2.7", "user.delete", "dave", ""),
            ("192.0.2.7", "user.groups", "dave", "groups: devs"),
            ("192.0.2.7", "user.add", "dave", "groups: ops,qa"),
        ]
    );
}

#[tokio::test]
async fn hostile_names_labels_and_audit_details_are_escaped_on_the_admin_page() {
    let e = env();
    let now = std::time::SystemTime::now();
    e.store
        .put_user(
            HOSTILE,
            &hash("x"),
            &["\"><img src=x onerror=alert(1)>".into()],
            false,
            now,
        )
        .unwrap();
    e.store
        .create_api_token("t1", "h1", HOSTILE, HOSTILE, now, None)
        .unwrap();
    e.store
        .append_audit(&AuditEntry::new(
            HOSTILE,
            Some(HOSTILE.into()),
            HOSTILE,
            HOSTILE,
            HOSTILE,
        ))
        .unwrap();
    let root = login(&e.app, "root").await;
    let res = send(&e.app, get("/admin", Some(&root))).await;
    assert_eq!(res.status(), StatusCode::OK);
    let page = text(res).await;
    assert!(!page.contains("<script>alert"), "{page}");
    assert!(!page.contains("<img"), "{page}");
    assert!(
        page.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"),
        "{page}"
    );
    assert!(
        page.contains("&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"),
        "{page}"
    );
    // the user's forms name them percent-encoded in the path
    assert!(
        page.contains("/admin/users/%3Cscript%3Ealert%28%27x%27%29%3C%2Fscript%3E/delete"),
        "{page}"
    );
    // and the JSON has the raw values
    let res = send(&e.app, get("/api/v1/admin/users", Some(&root))).await;
    let v = json(res).await;
    let row = v
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == HOSTILE)
        .unwrap();
    assert_eq!(row["password"], true);
    // deleting the hostile user through its encoded path works
    let csrf = csrf(&e.app, &root).await;
    let res = send(
        &e.app,
        form(
            "/admin/users/%3Cscript%3Ealert%28%27x%27%29%3C%2Fscript%3E/delete",
            &root,
            &format!("csrf={csrf}"),
        ),
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(e.store.user(HOSTILE).unwrap(), None);
}

#[tokio::test]
async fn admins_see_and_revoke_every_users_tokens() {
    let e = env();
    let (alice, alice_csrf) = user(&e.app, "alice").await;
    let (id, token) = make_token(&e.app, &alice, &alice_csrf, "alice-ci").await;
    let (root, csrf) = user(&e.app, "root").await;
    let page = text(send(&e.app, get("/admin", Some(&root))).await).await;
    assert!(page.contains(&id) && page.contains("alice-ci"), "{page}");
    assert!(!page.contains(&token));
    let v = json(send(&e.app, get("/api/v1/admin/tokens", Some(&root))).await).await;
    assert_eq!(v[0]["user"], "alice");
    assert_eq!(v[0]["id"], id.as_str());
    assert!(!v.to_string().contains(&token));
    let res = send(
        &e.app,
        form(
            &format!("/admin/tokens/{id}/revoke"),
            &root,
            &format!("csrf={csrf}"),
        ),
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let res = send(&e.app, bearer("GET", "/api/v1/templates", &token, "")).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let log = audit(&e);
    assert_eq!(
        (log[0].0.as_str(), log[0].2.as_str(), log[0].3.as_str()),
        ("root", "token.revoke", id.as_str())
    );
    assert_eq!(log[0].4, "alice-ci of alice");
    // through the API: an admin revokes another user's token too
    let (id2, _) = make_token(&e.app, &alice, &alice_csrf, "second").await;
    let res = send(
        &e.app,
        api("DELETE", &format!("/api/v1/tokens/{id2}"), &root, &csrf, ""),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(e.store.api_tokens(None).unwrap().is_empty());
}

#[tokio::test]
async fn the_audit_log_pages_by_key_newest_first_and_filters_by_user() {
    let e = env();
    for n in 0..120 {
        let who = if n % 3 == 0 { "bob" } else { "alice" };
        e.store
            .append_audit(&AuditEntry::new(
                who,
                Some("192.0.2.1".into()),
                "publish",
                "shop",
                &n.to_string(),
            ))
            .unwrap();
    }
    let root = login(&e.app, "root").await;
    // the API: all entries, 50 at a time, newest first, no entry twice
    let mut seen = Vec::new();
    let mut before: Option<i64> = None;
    loop {
        let path = match before {
            Some(b) => format!("/api/v1/admin/audit?limit=50&before={b}"),
            None => "/api/v1/admin/audit?limit=50".into(),
        };
        let v = json(send(&e.app, get(&path, Some(&root))).await).await;
        for entry in v["entries"].as_array().unwrap() {
            seen.push(entry["seq"].as_i64().unwrap());
        }
        match v["next_before"].as_i64() {
            Some(b) => before = Some(b),
            None => break,
        }
    }
    // 120 entries and root's login
    assert_eq!(seen.len(), 121);
    assert!(seen.windows(2).all(|w| w[0] > w[1]), "{seen:?}");
    let v = json(
        send(
            &e.app,
            get("/api/v1/admin/audit?user=bob&limit=500", Some(&root)),
        )
        .await,
    )
    .await;
    let entries = v["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 40);
    assert!(entries.iter().all(|x| x["user"] == "bob"));
    assert_eq!(entries[0]["detail"], "117");
    assert_eq!(entries[0]["address"], "192.0.2.1");
    assert_eq!(v["next_before"], serde_json::Value::Null);

    // the page: 50 entries, a link to the older ones keeping the filter
    let page = text(send(&e.app, get("/admin?user=alice", Some(&root))).await).await;
    assert!(
        page.contains("<td>alice</td><td>192.0.2.1</td><td>publish</td><td>shop</td><td>119</td>"),
        "{page}"
    );
    assert!(!page.contains("<td>shop</td><td>117</td>"), "bob's: {page}");
    let start = page
        .find("href=\"/admin?before=")
        .expect("an older-entries link")
        + 6;
    let href = &page[start..start + page[start..].find('"').unwrap()];
    assert!(href.ends_with("&amp;user=alice#audit"), "{href}");
    let href = href.replace("&amp;", "&").replace("#audit", "");
    let older = text(send(&e.app, get(&href, Some(&root))).await).await;
    // alice's 80 entries: the 30 oldest on the second page, which is the last
    assert!(!older.contains("<td>shop</td><td>119</td>"), "{older}");
    assert!(older.contains("<td>shop</td><td>1</td>"), "{older}");
    assert_eq!(older.matches("<td>publish</td>").count(), 30, "{older}");
    assert!(!older.contains("Older entries"), "{older}");
}
