//! The permission sweep: every route of [`ROUTES`], whoever adds it.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use pushguide_server::{Access, Need, Route, ROUTES, SESSION_COOKIE};

use crate::support::*;

/// An existing value for each path parameter a route may have (`{id}` after `requests` is a
/// publish request's, elsewhere a deployment's).
fn value(before: &str, param: &str, token: &str) -> String {
    match param {
        "template" => "shop".into(),
        "id" if before == "requests" => REQUEST.into(),
        "id" | "deployment" => DEPLOYMENT.into(),
        "request" => REQUEST.into(),
        "user" => "alice".into(),
        "token" => token.into(),
        "host" | "minion" => "web-01".into(),
        "version" => "1.0".into(),
        "kind" => "java-tomcat".into(),
        "stage" => "deploy".into(),
        "seq" | "revision" | "n" => "1".into(),
        other => panic!(
            "the permission sweep has no value for the path parameter `{{{other}}}`: add one to \
             `value` in pushguide-server/tests/access/sweep.rs"
        ),
    }
}

/// `route`'s path with every `{param}` replaced by an existing value.
fn concrete(route: &Route, token: &str) -> String {
    let mut before = "";
    let mut out = Vec::new();
    for seg in route.path.split('/') {
        match seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some(p) => out.push(value(before, p.trim_start_matches('*'), token)),
            None => out.push(seg.to_owned()),
        }
        before = seg;
    }
    out.join("/")
}

fn what(route: &Route) -> String {
    format!(
        "{} {} ({:?}, {:?})",
        route.method, route.path, route.access, route.need
    )
}

#[tokio::test]
async fn anonymous_callers_get_401_or_the_login_page_on_every_protected_route() {
    let e = env();
    let (alice, alice_csrf) = user(&e.app, "alice").await;
    let (token, _) = make_token(&e.app, &alice, &alice_csrf, "ci").await;
    let protected: Vec<&Route> = ROUTES
        .iter()
        .filter(|r| r.access != Access::Public)
        .collect();
    assert!(protected.len() >= 20, "{protected:?}");
    for route in protected {
        let path = concrete(route, &token);
        for credential in [None, Some("cookie"), Some("bearer")] {
            let mut req = Request::builder().method(route.method.clone()).uri(&path);
            match credential {
                Some("cookie") => {
                    req = req.header(header::COOKIE, format!("{SESSION_COOKIE}=0123"))
                }
                Some(_) => req = req.header(header::AUTHORIZATION, "Bearer pgt_0123"),
                None => {}
            }
            let res = send(&e.app, req.body(Body::empty()).unwrap()).await;
            let at = format!("{} {path} with {credential:?}", what(route));
            match route.access {
                Access::Api => {
                    assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{at}");
                    assert_eq!(json(res).await["error"]["kind"], "unauthenticated", "{at}");
                }
                _ => {
                    assert_eq!(res.status(), StatusCode::SEE_OTHER, "{at}");
                    assert_eq!(res.headers()[header::LOCATION], "/login", "{at}");
                }
            }
        }
    }
}

/// bob may view `shop` but deploy nothing and is no admin: every deploy/act/admin route refuses
/// him with 403 — through his session (with a valid CSRF token, so the refusal is the
/// permission's) and, on API routes, through his API token.
#[tokio::test]
async fn a_viewer_gets_403_on_every_deploy_and_admin_route() {
    let e = env();
    let (alice, alice_csrf) = user(&e.app, "alice").await;
    let (alice_token, _) = make_token(&e.app, &alice, &alice_csrf, "alice's").await;
    let (bob, bob_csrf) = user(&e.app, "bob").await;
    let (_, bob_token) = make_token(&e.app, &bob, &bob_csrf, "bob's").await;
    // bob may view shop (the template every `{template}` names)
    let v = json(send(&e.app, get("/api/v1/templates", Some(&bob))).await).await;
    assert_eq!(v[0]["name"], "shop");
    assert_eq!(v[0]["may_deploy"], false);

    let guarded: Vec<&Route> = ROUTES
        .iter()
        .filter(|r| matches!(r.need, Need::Admin | Need::Deploy))
        .collect();
    assert!(guarded.len() >= 11, "{guarded:?}");
    // the admin pages and API are all marked admin-only
    for r in ROUTES {
        if r.path == "/admin"
            || r.path.starts_with("/admin/")
            || r.path.starts_with("/api/v1/admin/")
        {
            assert_eq!(r.need, Need::Admin, "{}", what(r));
        }
    }
    for route in guarded {
        let path = concrete(route, &alice_token);
        let reading = route.method == "GET" || route.method == "HEAD";
        let mut req = Request::builder()
            .method(route.method.clone())
            .uri(&path)
            .header(header::COOKIE, format!("{SESSION_COOKIE}={bob}"))
            .header("x-csrf-token", &bob_csrf);
        let body = match (route.access, reading) {
            (_, true) => String::new(),
            (Access::Api, false) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                "{}".to_owned()
            }
            (_, false) => {
                req = req.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
                format!("csrf={bob_csrf}")
            }
        };
        let res = send(&e.app, req.body(Body::from(body.clone())).unwrap()).await;
        let at = what(route);
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{at} as bob");
        let answer = text(res).await;
        assert!(
            !answer.contains("CSRF"),
            "{at}: refused for CSRF, not permission: {answer}"
        );
        if route.access == Access::Api {
            let v: serde_json::Value = serde_json::from_str(&answer).unwrap();
            assert_eq!(v["error"]["kind"], "forbidden", "{at}: {answer}");
            // and bob's API token is refused the same way
            let res = send(
                &e.app,
                bearer(
                    route.method.as_str(),
                    &path,
                    &bob_token,
                    if reading { "" } else { "{}" },
                ),
            )
            .await;
            assert_eq!(res.status(), StatusCode::FORBIDDEN, "{at} with bob's token");
        }
    }
    // nothing changed: alice is still there with her groups and her token
    let alice_now = e.store.user("alice").unwrap().unwrap();
    assert_eq!(alice_now.groups, ["ops"]);
    assert_eq!(e.store.api_tokens(Some("alice")).unwrap().len(), 1);
}
