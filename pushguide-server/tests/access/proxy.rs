//! `auth = "proxy"`: the user and groups headers count only from a trusted proxy's address.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use pushguide_server::{AuthMode, ServerConfig, LOGIN_CSRF_COOKIE, SESSION_COOKIE};

use crate::support::*;

fn proxy_config() -> ServerConfig {
    let mut c = config();
    c.auth.mode = AuthMode::Proxy;
    c.auth.trusted_proxies = vec!["127.0.0.1".parse().unwrap(), "10.0.0.0/8".parse().unwrap()];
    c
}

fn named(method: &str, path: &str, user: &str, groups: &str) -> axum::http::request::Builder {
    Request::builder()
        .method(method)
        .uri(path)
        .header("X-Forwarded-User", user)
        .header("X-Forwarded-Groups", groups)
}

#[tokio::test]
async fn a_trusted_proxy_names_the_user_and_groups() {
    let e = env_with(proxy_config());
    let req = named("GET", "/api/v1/session", "carol", "devs, qa")
        .body(Body::empty())
        .unwrap();
    let res = send(&e.app, from("10.1.2.3", req)).await;
    assert_eq!(res.status(), StatusCode::OK);
    let session = cookie_value(&res, SESSION_COOKIE).expect("a session for the proxy user");
    let v = json(res).await;
    assert_eq!(v["user"], "carol");
    assert_eq!(v["groups"], serde_json::json!(["devs", "qa"]));
    // the groups decide what carol sees
    let req = named("GET", "/api/v1/templates", "carol", "devs")
        .body(Body::empty())
        .unwrap();
    let v = json(send(&e.app, from("127.0.0.1", req)).await).await;
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["name"], "shop");
    // the account is recorded with no password, and the session cookie keeps working with the
    // header
    let u = e.store.user("carol").unwrap().unwrap();
    assert_eq!(u.password_hash, pushguide_store::NO_PASSWORD);
    let req = named("GET", "/", "carol", "devs")
        .header(header::COOKIE, format!("{SESSION_COOKIE}={session}"))
        .body(Body::empty())
        .unwrap();
    let res = send(&e.app, from("10.0.0.1", req)).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(cookie_value(&res, SESSION_COOKIE), None, "no new session");
    // the proxy's groups header is authoritative: an admin group there makes an admin
    let req = named("GET", "/admin", "carol", "admins")
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        send(&e.app, from("10.0.0.1", req)).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_forged_header_from_anywhere_else_is_refused() {
    let e = env_with(proxy_config());
    for (peer, path) in [
        (Some("192.0.2.66"), "/api/v1/session"),
        (Some("11.0.0.1"), "/"),
        (Some("::1"), "/api/v1/templates"),
        (None, "/api/v1/session"),
    ] {
        let req = named("GET", path, "root", "admins")
            .header("x-forwarded-for", "127.0.0.1")
            .body(Body::empty())
            .unwrap();
        let req = match peer {
            Some(p) => from(p, req),
            None => req,
        };
        let res = send(&e.app, req).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{peer:?} {path}");
        assert_eq!(cookie_value(&res, SESSION_COOKIE), None);
    }
    // from the proxy without the user header: refused too
    let req = Request::get("/api/v1/session").body(Body::empty()).unwrap();
    let res = send(&e.app, from("127.0.0.1", req)).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(json(res).await["error"]["kind"], "unauthenticated");
    // nobody was recorded, no session made
    assert_eq!(e.store.users().unwrap().len(), 3);
    let n: i64 = e
        .conn()
        .query_row("SELECT count(*) FROM sessions", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 0);
    // a local user's cookie does not help either, and the login form is off
    let res = send(&e.app, get("/login", None)).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert!(text(res).await.contains("reverse proxy"));
}

#[tokio::test]
async fn state_changes_behind_the_proxy_need_the_sessions_csrf_token() {
    let e = env_with(proxy_config());
    let post = |cookie: Option<&str>, csrf: Option<&str>, user: &str| {
        let mut b = named("POST", "/api/v1/tokens", user, "devs")
            .header(header::CONTENT_TYPE, "application/json")
            .header("x-forwarded-for", "203.0.113.9, 10.0.0.5");
        if let Some(c) = cookie {
            b = b.header(header::COOKIE, format!("{SESSION_COOKIE}={c}"));
        }
        if let Some(c) = csrf {
            b = b.header("x-csrf-token", c);
        }
        from(
            "127.0.0.1",
            b.body(Body::from(r#"{"label": "ci"}"#)).unwrap(),
        )
    };
    // the proxy's header alone does not make a cross-site POST work
    let res = send(&e.app, post(None, None, "carol")).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(json(res).await["error"]["kind"], "csrf");
    // a GET makes the session; its CSRF token then works
    let req = named("GET", "/api/v1/session", "carol", "devs")
        .body(Body::empty())
        .unwrap();
    let res = send(&e.app, from("127.0.0.1", req)).await;
    let session = cookie_value(&res, SESSION_COOKIE).unwrap();
    let csrf = json(res).await["csrf"].as_str().unwrap().to_owned();
    let res = send(&e.app, post(Some(&session), None, "carol")).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN, "no token");
    let res = send(&e.app, post(Some(&session), Some(&"0".repeat(64)), "carol")).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN, "wrong token");
    // carol's session and token do not work for another user the proxy names
    let res = send(&e.app, post(Some(&session), Some(&csrf), "dave")).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN, "another user");
    let req = named("GET", "/api/v1/session", "carol", "devs")
        .body(Body::empty())
        .unwrap();
    let res = send(&e.app, from("127.0.0.1", req)).await;
    let session = cookie_value(&res, SESSION_COOKIE).expect("carol's old session went with dave");
    let csrf = json(res).await["csrf"].as_str().unwrap().to_owned();
    let res = send(&e.app, post(Some(&session), Some(&csrf), "carol")).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    // audited with the client's address from X-Forwarded-For (not the proxy's)
    let log = audit(&e);
    assert_eq!(log[0].0, "carol");
    assert_eq!(log[0].1.as_deref(), Some("203.0.113.9"));
    assert_eq!(log[0].2, "token.create");
}

#[tokio::test]
async fn behind_a_trusted_proxy_local_logins_are_audited_with_the_forwarded_address() {
    let mut c = config();
    c.auth.trusted_proxies = vec!["10.0.0.0/8".parse().unwrap()];
    let e = env_with(c);
    // the login itself, through the proxy: audited (and throttled) by the forwarded address
    let res = send(&e.app, get("/login", None)).await;
    let login_csrf = cookie_value(&res, LOGIN_CSRF_COOKIE).unwrap();
    let res = send(
        &e.app,
        from(
            "10.0.0.3",
            Request::post("/login")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header(header::COOKIE, format!("{LOGIN_CSRF_COOKIE}={login_csrf}"))
                .header("x-forwarded-for", "198.51.100.77")
                .body(Body::from(format!(
                    "user=root&password=root-pw&csrf={login_csrf}"
                )))
                .unwrap(),
        ),
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let root = cookie_value(&res, SESSION_COOKIE).unwrap();
    let log = audit(&e);
    assert_eq!(
        (log[0].0.as_str(), log[0].1.as_deref(), log[0].2.as_str()),
        ("root", Some("198.51.100.77"), "login")
    );
    let csrf = csrf(&e.app, &root).await;
    let post = |peer: &str, xff: &str| {
        from(
            peer,
            Request::post("/admin/users/bob/groups")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header(header::COOKIE, format!("{SESSION_COOKIE}={root}"))
                .header("x-forwarded-for", xff)
                .body(Body::from(format!("csrf={csrf}&groups=devs")))
                .unwrap(),
        )
    };
    // from a trusted proxy: the right-most address it did not add itself
    let res = send(&e.app, post("10.9.9.9", "6.6.6.6, 198.51.100.4, 10.0.0.2")).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    // from anyone else: their own address, whatever they claim
    let res = send(&e.app, post("192.0.2.44", "198.51.100.4")).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let log = audit(&e);
    assert_eq!(
        (log[0].1.as_deref(), log[1].1.as_deref()),
        (Some("192.0.2.44"), Some("198.51.100.4"))
    );
    assert_eq!(
        (log[0].2.as_str(), log[0].3.as_str()),
        ("user.groups", "bob")
    );
}
