//! The fake's HTTP side. hyper serves the connections (HTTP/1.1 parsing, chunked bodies, keep-alive,
//! `Connection: close`, a 400 for what does not parse) and axum turns each request into one call of a
//! single fallback handler: the fake routes by itself, because it counts every request per route and
//! applies its faults before any route is chosen. This module only converts between axum's types and
//! the fake's own [`Request`] and [`Response`], and builds the streamed `/events` answer.

use std::io;

use axum::body::{Body, Bytes};
use axum::http::header::{HeaderName, HeaderValue, CACHE_CONTROL, CONTENT_TYPE, SERVER};
use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;

/// Largest request body.
const BODY_MAX: usize = 16 * 1024 * 1024;
/// The `Server` header of every answer.
const SERVER_NAME: &str = "pushguide-fake-salt-api";

/// One request, its body read whole.
#[derive(Debug)]
pub(super) struct Request {
    pub(super) method: String,
    /// The path without the query string.
    pub(super) path: String,
    headers: HeaderMap,
    pub(super) body: Bytes,
    /// When the server started on the request (after any injected latency): simulated fleet latency
    /// counts from here.
    pub(super) received: std::time::Instant,
}

impl Request {
    /// Reads the whole body of `req`; one over [`BODY_MAX`] or one that breaks off answers 400.
    pub(super) async fn read(req: axum::extract::Request) -> Result<Self, Response> {
        let (parts, body) = req.into_parts();
        let body = match axum::body::to_bytes(body, BODY_MAX).await {
            Ok(b) => b,
            Err(e) => {
                tracing::debug!(error = %e, "fake salt-api: unreadable request body");
                return Err(Response::html_error(400, "Malformed request"));
            }
        };
        Ok(Request {
            method: parts.method.as_str().to_owned(),
            path: parts.uri.path().to_owned(),
            headers: parts.headers,
            body,
            received: std::time::Instant::now(),
        })
    }

    /// A header's value (names are case-insensitive); `None` when absent or not visible ASCII.
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A complete (non-streaming) response.
#[derive(Debug, Clone)]
pub(super) struct Response {
    pub(super) status: u16,
    pub(super) content_type: &'static str,
    pub(super) headers: Vec<(&'static str, String)>,
    pub(super) body: Vec<u8>,
}

impl Response {
    /// A JSON answer.
    pub(super) fn json(status: u16, v: &Value) -> Self {
        Response {
            status,
            content_type: "application/json",
            headers: Vec::new(),
            body: v.to_string().into_bytes(),
        }
    }

    /// CherryPy's HTML error page with `message` in its `<p>`, as salt-api sends for 4xx and 5xx.
    pub(super) fn html_error(status: u16, message: &str) -> Self {
        let title = format!("{status} {}", reason(status));
        let body = format!(
            "<!DOCTYPE html PUBLIC\n\"-//W3C//DTD XHTML 1.0 Transitional//EN\"\n\
             \"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd\">\n<html>\n<head>\n    \
             <meta http-equiv=\"Content-Type\" content=\"text/html; charset=utf-8\"></meta>\n    \
             <title>{title}</title>\n</head>\n    <body>\n        <h2>{title}</h2>\n        \
             <p>{}</p>\n        <pre id=\"traceback\"></pre>\n    <div id=\"powered_by\">\n      \
             <span>\n        Powered by pushguide's fake salt-api\n      </span>\n    </div>\n    \
             </body>\n</html>\n",
            html_escape(message)
        );
        Response {
            status,
            content_type: "text/html;charset=utf-8",
            headers: Vec::new(),
            body: body.into_bytes(),
        }
    }
}

impl axum::response::IntoResponse for Response {
    fn into_response(self) -> axum::response::Response {
        // a status outside 100..=999 (only a fault set by a test can ask for one) is a 500
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = axum::response::Response::new(Body::from(self.body));
        *resp.status_mut() = status;
        let headers = resp.headers_mut();
        headers.insert(SERVER, HeaderValue::from_static(SERVER_NAME));
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(self.content_type));
        for (name, value) in self.headers {
            match (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::try_from(value),
            ) {
                (Ok(n), Ok(v)) => {
                    headers.insert(n, v);
                }
                _ => tracing::debug!(%name, "fake salt-api: header left out (not a valid header)"),
            }
        }
        resp
    }
}

/// The head of a streamed `text/event-stream` answer; `body` yields its chunks.
pub(super) fn event_stream(body: Body) -> axum::response::Response {
    let mut resp = axum::response::Response::new(body);
    let headers = resp.headers_mut();
    headers.insert(SERVER, HeaderValue::from_static(SERVER_NAME));
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream;charset=utf-8"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

/// The error that ends an `/events` body on purpose: hyper then closes the connection without the
/// last chunk, so the client sees the stream drop rather than end.
pub(super) fn stream_dropped() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "event stream dropped (fault injected)",
    )
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The reason phrase of `status` (`Unknown` for one without).
fn reason(status: u16) -> &'static str {
    StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Unknown")
}
