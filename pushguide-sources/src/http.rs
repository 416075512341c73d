//! The HTTP plumbing shared by the HTTP index and the HTTP CMDB: timeouts, a body limit, typed errors.

use std::fmt;
use std::time::Duration;

use reqwest::{Client, StatusCode, Url};
use serde::de::DeserializeOwned;

use crate::error::Error;

/// Default limit of one request, connect to last byte.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default limit of a response body.
pub(crate) const DEFAULT_MAX_BODY: usize = 16 * 1024 * 1024;

/// A JSON-over-HTTP reader for one source.
#[derive(Clone)]
pub(crate) struct JsonGetter {
    pub(crate) name: String,
    pub(crate) base: Url,
    pub(crate) client: Client,
    pub(crate) timeout: Duration,
    pub(crate) max_body: usize,
    pub(crate) bearer: Option<String>,
}

impl fmt::Debug for JsonGetter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonGetter")
            .field("base", &self.base.as_str())
            .field("timeout", &self.timeout)
            .field("max_body", &self.max_body)
            .field("bearer", &self.bearer.as_ref().map(|_| "<hidden>"))
            .finish()
    }
}

impl JsonGetter {
    /// `base` must be an absolute http(s) URL; a missing trailing `/` is added so that relative
    /// paths resolve below it.
    pub(crate) fn new(base: &str) -> Result<Self, Error> {
        let name = base.to_owned();
        let mut text = base.to_owned();
        if !text.ends_with('/') {
            text.push('/');
        }
        let base = Url::parse(&text).map_err(|e| Error::Config {
            source_name: name.clone(),
            message: format!("not a URL: {e}"),
        })?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(Error::Config {
                source_name: name,
                message: "the base URL must be http:// or https://".into(),
            });
        }
        let client = Client::builder().build().map_err(|e| Error::Config {
            source_name: name.clone(),
            message: format!("cannot set up the HTTP client: {e}"),
        })?;
        Ok(JsonGetter {
            name,
            base,
            client,
            timeout: DEFAULT_TIMEOUT,
            max_body: DEFAULT_MAX_BODY,
            bearer: None,
        })
    }

    /// `path` (already validated: no `..`, no `?`) below the base URL.
    pub(crate) fn url(&self, path: &str) -> Result<Url, Error> {
        self.base.join(path).map_err(|e| Error::Config {
            source_name: self.name.clone(),
            message: format!("cannot build a URL for {path}: {e}"),
        })
    }

    /// GETs `url` and decodes the JSON body as `T`. HTTP errors (including 404) are [`Error::Status`].
    pub(crate) async fn get<T: DeserializeOwned>(&self, url: &Url) -> Result<T, Error> {
        let unreachable = |e: reqwest::Error| {
            if e.is_timeout() {
                Error::Timeout {
                    source_name: self.name.clone(),
                    url: url.to_string(),
                    timeout: self.timeout,
                }
            } else {
                Error::Unreachable {
                    source_name: self.name.clone(),
                    url: url.to_string(),
                    message: error_chain(&e),
                }
            }
        };
        tracing::debug!(source = %self.name, %url, "GET");
        let mut req = self
            .client
            .get(url.clone())
            .timeout(self.timeout)
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(token) = &self.bearer {
            req = req.bearer_auth(token);
        }
        let mut resp = req.send().await.map_err(unreachable)?;
        let status = resp.status();
        if status != StatusCode::OK {
            return Err(Error::Status {
                source_name: self.name.clone(),
                url: url.to_string(),
                status: status.as_u16(),
            });
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(unreachable)? {
            if body.len() + chunk.len() > self.max_body {
                return Err(Error::Malformed {
                    source_name: self.name.clone(),
                    location: url.to_string(),
                    message: format!("response larger than {} bytes", self.max_body),
                });
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|e| Error::Malformed {
            source_name: self.name.clone(),
            location: url.to_string(),
            message: e.to_string(),
        })
    }
}

/// The error and its causes on one line (reqwest's top-level message alone says little).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = s.source();
    }
    out
}
