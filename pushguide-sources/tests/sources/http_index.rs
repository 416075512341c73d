use std::time::Duration;

use pushguide_sources::{ArtifactSource, Error, HttpIndexSource};

use crate::support::{dead_address, serve, Reply};

const SHA: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

fn index() -> String {
    format!(
        r#"{{"versions": [
            {{"version": "1.9.0", "url": "1.9.0/shop.war", "sha256": "{SHA}", "size": 10}},
            {{"version": "1.10.0", "url": "https://cdn.example.com/shop/1.10.0/shop.war", "size": 20,
              "manifest": [{{"path": "WEB-INF/web.xml", "size": 612}}, {{"path": "index.jsp"}}],
              "built_by": "jenkins"}},
            {{"version": "1.2.0", "url": "/abs/1.2.0.war"}}
        ]}}"#
    )
}

#[tokio::test]
async fn versions_newest_first_in_natural_order_without_published() {
    let s = serve(&[("/ci/shop-web/index.json", Reply::json(index()))]).await;
    let src = HttpIndexSource::new(&format!("{}/ci", s.base)).unwrap();
    assert_eq!(
        src.versions("shop-web").await.unwrap(),
        ["1.10.0", "1.9.0", "1.2.0"]
    );
}

#[tokio::test]
async fn versions_by_published_when_every_entry_has_it() {
    let body = r#"{"versions": [
        {"version": "2.0.0", "url": "a.war", "published": "2025-01-01T00:00:00Z"},
        {"version": "1.9.9-hotfix", "url": "b.war", "published": "2025-02-01T10:00:00+02:00"},
        {"version": "1.9.9", "url": "c.war", "published": "2025-02-01T09:00:00Z"}
    ]}"#;
    let s = serve(&[("/shop-web/index.json", Reply::json(body))]).await;
    let src = HttpIndexSource::new(&s.base).unwrap();
    // 10:00+02:00 is 08:00Z, before 09:00Z.
    assert_eq!(
        src.versions("shop-web").await.unwrap(),
        ["1.9.9", "1.9.9-hotfix", "2.0.0"]
    );
}

#[tokio::test]
async fn resolve_makes_relative_urls_absolute_and_carries_manifest() {
    let s = serve(&[("/ci/shop-web/index.json", Reply::json(index()))]).await;
    let src = HttpIndexSource::new(&format!("{}/ci/", s.base))
        .unwrap()
        .bearer_token("t0ken");
    let a = src.resolve("shop-web", "1.9.0").await.unwrap();
    assert_eq!(a.url, format!("{}/ci/shop-web/1.9.0/shop.war", s.base));
    assert_eq!(a.sha256.as_deref(), Some(SHA));
    assert_eq!(a.size, Some(10));
    assert_eq!(a.manifest, None);

    let a = src.resolve("shop-web", "1.10.0").await.unwrap();
    assert_eq!(a.url, "https://cdn.example.com/shop/1.10.0/shop.war");
    let m = a.manifest.unwrap();
    assert_eq!(m[0].path, "WEB-INF/web.xml");
    assert_eq!(m[0].size, 612);
    assert_eq!(m[1].size, 0);

    let a = src.resolve("shop-web", "1.2.0").await.unwrap();
    assert_eq!(a.url, format!("{}/abs/1.2.0.war", s.base));

    let seen = s.requests.lock().unwrap();
    assert!(
        seen[0]
            .to_ascii_lowercase()
            .contains("authorization: bearer t0ken"),
        "{}",
        seen[0]
    );
    assert!(!format!("{src:?}").contains("t0ken"));
}

#[tokio::test]
async fn missing_version_names_it() {
    let s = serve(&[("/shop-web/index.json", Reply::json(index()))]).await;
    let src = HttpIndexSource::new(&s.base).unwrap();
    let err = src.resolve("shop-web", "3.0.0").await.unwrap_err();
    assert!(matches!(err, Error::VersionNotFound { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("3.0.0") && text.contains("shop-web") && text.contains(&s.base),
        "{text}"
    );
}

#[tokio::test]
async fn unknown_template_is_not_found() {
    let s = serve(&[]).await;
    let src = HttpIndexSource::new(&s.base).unwrap();
    let err = src.versions("other").await.unwrap_err();
    assert!(matches!(err, Error::TemplateNotFound { .. }), "{err:?}");
    assert!(err.to_string().contains("`other`"), "{err}");
}

#[tokio::test]
async fn hostile_versions_are_rejected_naming_source_and_version() {
    for hostile in ["1.0;rm -rf /", "../../etc", "$(reboot)", "1.0\n2.0"] {
        let body = serde_json::json!({"versions": [
            {"version": "1.0.0", "url": "ok.war"},
            {"version": hostile, "url": "x.war"}
        ]})
        .to_string();
        let s = serve(&[("/shop-web/index.json", Reply::json(body))]).await;
        let src = HttpIndexSource::new(&s.base).unwrap();
        let err = src.versions("shop-web").await.unwrap_err();
        assert!(matches!(err, Error::InvalidVersion { .. }), "{err:?}");
        let text = err.to_string();
        let shown: String = hostile.escape_debug().collect();
        assert!(text.contains(&s.base) && text.contains(&shown), "{text}");
        // A hostile version asked for is rejected before any request.
        let err = src.resolve("shop-web", hostile).await.unwrap_err();
        assert!(matches!(err, Error::InvalidVersion { .. }), "{err:?}");
    }
    // A hostile template name never becomes part of a URL.
    let src = HttpIndexSource::new("http://127.0.0.1:9").unwrap();
    let err = src.versions("../admin").await.unwrap_err();
    assert!(matches!(err, Error::Invalid { .. }), "{err:?}");
}

#[tokio::test]
async fn bad_urls_and_checksums_are_rejected() {
    for (entry, needle) in [
        (
            r#"{"version": "1.0.0", "url": "file:///etc/passwd"}"#,
            "versions[1.0.0].url",
        ),
        (
            r#"{"version": "1.0.0", "url": "a.war", "sha256": "abc"}"#,
            "versions[1.0.0].sha256",
        ),
        (
            r#"{"version": "1.0.0", "url": "a.war", "published": "last tuesday"}"#,
            "published",
        ),
    ] {
        let body = format!(r#"{{"versions": [{entry}]}}"#);
        let s = serve(&[("/t/index.json", Reply::json(body))]).await;
        let err = HttpIndexSource::new(&s.base)
            .unwrap()
            .versions("t")
            .await
            .unwrap_err();
        assert!(err.to_string().contains(needle), "{err}");
    }
    let body =
        r#"{"versions": [{"version": "1.0.0", "url": "a"}, {"version": "1.0.0", "url": "b"}]}"#;
    let s = serve(&[("/t/index.json", Reply::json(body))]).await;
    let err = HttpIndexSource::new(&s.base)
        .unwrap()
        .versions("t")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("listed twice"), "{err}");
}

#[tokio::test]
async fn malformed_json_is_an_error_with_the_location() {
    for body in [
        "{not json",
        r#"{"items": []}"#,
        r#"{"versions": [{"version": "1.0.0"}]}"#,
    ] {
        let s = serve(&[("/t/index.json", Reply::json(body))]).await;
        let err = HttpIndexSource::new(&s.base)
            .unwrap()
            .versions("t")
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Malformed { .. }), "{err:?}");
        assert!(err.to_string().contains("/t/index.json"), "{err}");
        assert!(!err.is_retryable());
    }
}

#[tokio::test]
async fn server_errors_are_typed_and_retryable() {
    let s = serve(&[("/t/index.json", Reply::status(503))]).await;
    let err = HttpIndexSource::new(&s.base)
        .unwrap()
        .versions("t")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Status { status: 503, .. }), "{err:?}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn unreachable_index_is_an_error_naming_it() {
    let base = dead_address().await;
    let err = HttpIndexSource::new(&base)
        .unwrap()
        .versions("shop-web")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unreachable { .. }), "{err:?}");
    assert!(err.to_string().contains(&base), "{err}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn slow_index_times_out() {
    let s = serve(&[(
        "/t/index.json",
        Reply::json(index()).delayed(Duration::from_secs(5)),
    )])
    .await;
    let started = std::time::Instant::now();
    let err = HttpIndexSource::new(&s.base)
        .unwrap()
        .timeout(Duration::from_millis(300))
        .versions("t")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(err.to_string().contains("300ms"), "{err}");
}

#[tokio::test]
async fn oversized_index_is_refused() {
    let s = serve(&[("/t/index.json", Reply::json(index()))]).await;
    let err = HttpIndexSource::new(&s.base)
        .unwrap()
        .max_body(64)
        .versions("t")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("larger than 64 bytes"), "{err}");
}

#[test]
fn bad_base_urls_are_config_errors() {
    for base in ["not a url", "ftp://ci.example.com/"] {
        let err = HttpIndexSource::new(base).unwrap_err();
        assert!(matches!(err, Error::Config { .. }), "{err:?}");
    }
}

#[test]
fn errors_convert_to_core_errors_naming_the_source() {
    let err = Error::VersionNotFound {
        source_name: "http://ci".into(),
        template: "t".into(),
        version: "9.9".into(),
    };
    let core: pushguide_core::Error = err.into();
    let text = core.to_string();
    assert!(text.contains("http://ci") && text.contains("9.9"), "{text}");
}
