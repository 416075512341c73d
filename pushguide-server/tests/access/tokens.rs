//! API tokens: made by a user, shown once, stored hashed, bearer on API routes only, revoked.

use axum::http::{header, StatusCode};

use crate::support::*;

fn names(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_token_acts_as_its_user_on_the_api_until_revoked() {
    let e = env();
    let (alice, csrf) = user(&e.app, "alice").await;
    let (id, token) = make_token(&e.app, &alice, &csrf, "jenkins").await;
    assert!(token.starts_with("pgt_"), "{token}");

    let res = send(&e.app, bearer("GET", "/api/v1/templates", &token, "")).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(names(&json(res).await), ["shop", "billing"]);
    // pages are for browsers: a bearer token does not open them
    let mut page = bearer("GET", "/", &token, "");
    page.headers_mut().remove(header::CONTENT_TYPE);
    let res = send(&e.app, page).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    // the list shows it without its value; the store keeps only its hash
    let res = send(&e.app, get("/api/v1/tokens", Some(&alice))).await;
    let listed = text(res).await;
    assert!(
        listed.contains(&id) && listed.contains("jenkins"),
        "{listed}"
    );
    assert!(!listed.contains(&token), "{listed}");
    let stored: String = e
        .conn()
        .query_row(
            "SELECT token_sha256 FROM api_tokens WHERE id = ?1",
            [&id],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(stored, pushguide_server::tokens::token_sha256(&token));
    for file in [e.db.clone(), e.db.with_extension("db-wal")] {
        let raw = std::fs::read(&file).unwrap_or_default();
        assert!(
            !raw.windows(token.len()).any(|w| w == token.as_bytes()),
            "{file:?}"
        );
    }
    // a token cannot make or revoke tokens
    let res = send(
        &e.app,
        bearer("POST", "/api/v1/tokens", &token, r#"{"label": "more"}"#),
    )
    .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = send(
        &e.app,
        bearer("DELETE", &format!("/api/v1/tokens/{id}"), &token, ""),
    )
    .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);

    // revoked: refused with 401 JSON
    let res = send(
        &e.app,
        api("DELETE", &format!("/api/v1/tokens/{id}"), &alice, &csrf, ""),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let res = send(&e.app, bearer("GET", "/api/v1/templates", &token, "")).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(json(res).await["error"]["kind"], "unauthenticated");
    let actions: Vec<(String, String)> = audit(&e)
        .into_iter()
        .map(|a| (a.2, a.3))
        .filter(|(a, _)| a.starts_with("token."))
        .collect();
    assert_eq!(
        actions,
        [
            ("token.revoke".to_owned(), id.clone()),
            ("token.create".to_owned(), id)
        ]
    );
}

#[tokio::test]
async fn a_token_has_its_users_groups_of_now_and_no_csrf_token_is_needed() {
    let e = env();
    let (bob, bob_csrf) = user(&e.app, "bob").await;
    let (_, bob_token) = make_token(&e.app, &bob, &bob_csrf, "ci").await;
    let res = send(&e.app, bearer("GET", "/api/v1/templates", &bob_token, "")).await;
    assert_eq!(names(&json(res).await), ["shop"]);
    // bob's token cannot do admin things …
    let res = send(&e.app, bearer("GET", "/api/v1/admin/users", &bob_token, "")).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    // … root's can, state changes included, without a CSRF token (no cookie involved)
    let (root, root_csrf) = user(&e.app, "root").await;
    let (_, root_token) = make_token(&e.app, &root, &root_csrf, "automation").await;
    let res = send(
        &e.app,
        bearer(
            "POST",
            "/api/v1/admin/users/bob/groups",
            &root_token,
            r#"{"groups": ["ops"]}"#,
        ),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    // bob's token now acts with bob's new groups
    let res = send(&e.app, bearer("GET", "/api/v1/templates", &bob_token, "")).await;
    let v = json(res).await;
    assert_eq!(names(&v), ["shop", "billing"]);
    assert_eq!(v[0]["may_deploy"], true);
    // an expired or unknown token is refused
    e.conn()
        .execute(
            "UPDATE api_tokens SET expires_ms = 1 WHERE user = 'bob'",
            [],
        )
        .unwrap();
    for t in [bob_token.as_str(), "pgt_nope", ""] {
        let res = send(&e.app, bearer("GET", "/api/v1/templates", t, "")).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{t:?}");
    }
}

#[tokio::test]
async fn the_account_page_shows_a_new_token_once_and_revokes_only_ones_own() {
    let e = env();
    let (alice, csrf) = user(&e.app, "alice").await;
    // without the CSRF token nothing is made
    let res = send(&e.app, form("/account/tokens", &alice, "label=x")).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(e.store.api_tokens(None).unwrap().is_empty());
    let res = send(
        &e.app,
        form(
            "/account/tokens",
            &alice,
            &format!("csrf={csrf}&label=%3Cscript%3Ex%3C%2Fscript%3E&expires_days=30"),
        ),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[header::CACHE_CONTROL], "no-store");
    let page = text(res).await;
    let t = &e.store.api_tokens(Some("alice")).unwrap()[0];
    assert!(t.expires.is_some());
    let start = page.find("value=\"pgt_").expect("the token is shown") + 7;
    let token = &page[start..start + 68];
    assert!(!page.contains("<script>x"), "{page}");
    assert!(page.contains("&lt;script&gt;x&lt;/script&gt;"), "{page}");
    // shown once
    let again = text(send(&e.app, get("/account/tokens", Some(&alice))).await).await;
    assert!(again.contains(&t.id) && !again.contains(token), "{again}");
    let res = send(&e.app, bearer("GET", "/api/v1/tokens", token, "")).await;
    assert_eq!(res.status(), StatusCode::OK);
    // bad input is an answer, not a token
    for (bad, why) in [
        ("label=", "label must be"),
        ("label=ok&expires_days=0", "expires_days must be 1 to 3650"),
        ("label=ok&expires_days=x", "whole number of days"),
    ] {
        let res = send(
            &e.app,
            form("/account/tokens", &alice, &format!("csrf={csrf}&{bad}")),
        )
        .await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{bad}");
        let page = text(res).await;
        assert!(page.contains(why), "{bad}: {page}");
    }
    assert_eq!(e.store.api_tokens(None).unwrap().len(), 1);
    // bob cannot revoke alice's token; alice can
    let (bob, bob_csrf) = user(&e.app, "bob").await;
    let revoke = format!("/account/tokens/{}/revoke", t.id);
    let res = send(&e.app, form(&revoke, &bob, &format!("csrf={bob_csrf}"))).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = send(
        &e.app,
        api(
            "DELETE",
            &format!("/api/v1/tokens/{}", t.id),
            &bob,
            &bob_csrf,
            "",
        ),
    )
    .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(e.store.api_tokens(None).unwrap().len(), 1);
    let res = send(&e.app, form(&revoke, &alice, &format!("csrf={csrf}"))).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()[header::LOCATION], "/account/tokens");
    assert!(e.store.api_tokens(None).unwrap().is_empty());
    let res = send(&e.app, bearer("GET", "/api/v1/tokens", token, "")).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}
