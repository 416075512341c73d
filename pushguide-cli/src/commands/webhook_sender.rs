//! The webhook sender of `pushguide serve`: posts over `http://` and `https://` (rustls) with
//! reqwest, for the service's [`pushguide_server::Webhooks`].

use pushguide_server::webhooks::{redact, SendFuture};
use pushguide_server::WebhookSender;

/// Posts webhook bodies with a reqwest client (the per-try timeout is the service's).
#[derive(Debug, Default)]
pub(crate) struct ReqwestSender {
    client: reqwest::Client,
}

impl WebhookSender for ReqwestSender {
    fn post<'a>(&'a self, url: &'a str, body: Vec<u8>) -> SendFuture<'a> {
        Box::pin(async move {
            let res = self
                .client
                .post(url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(reqwest::header::USER_AGENT, "pushguide-webhooks")
                .body(body)
                .send()
                .await
                // reqwest's message names the URL: without it (its query may hold a token)
                .map_err(|e| format!("cannot post to {}: {}", redact(url), e.without_url()))?;
            let status = res.status();
            if status.is_success() {
                Ok(())
            } else {
                Err(format!("answered {status}"))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[tokio::test]
    async fn a_closed_port_is_an_error_without_the_query_string() {
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let url = format!("http://{closed}/hook?token=s3cret");
        let e = ReqwestSender::default()
            .post(&url, b"{}".to_vec())
            .await
            .unwrap_err();
        assert!(e.contains("cannot post to"), "{e}");
        assert!(!e.contains("s3cret"), "{e}");
    }

    struct NoTemplates;

    impl pushguide_server::Catalog for NoTemplates {
        fn scan(
            &self,
        ) -> Result<Vec<pushguide_server::CatalogEntry>, pushguide_server::CatalogError> {
            Ok(Vec::new())
        }
    }

    #[tokio::test]
    async fn a_receiver_answering_an_error_status_is_a_failed_try() {
        // a real HTTP server: the service itself refuses an anonymous API request with 401
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(
            pushguide_store::SqliteStore::open(dir.path().join("s.db")).unwrap(),
        );
        let app = pushguide_server::router(
            store,
            std::sync::Arc::new(NoTemplates),
            pushguide_server::ServerConfig::default(),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(pushguide_server::serve(
            listener,
            app,
            std::future::pending(),
        ));
        let e = ReqwestSender::default()
            .post(&format!("http://{addr}/api/v1/templates"), b"{}".to_vec())
            .await
            .unwrap_err();
        assert!(e.starts_with("answered 4"), "{e}");
    }
}
