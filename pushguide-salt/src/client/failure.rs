//! The salt-api errors an endpoint's requests and its event stream both build.

use crate::decode;
use crate::error::SaltError;

/// No connection could be made to `endpoint` (refused, DNS, TLS, reset).
pub(super) fn unreachable(endpoint: &str, e: &reqwest::Error) -> SaltError {
    SaltError::Unreachable {
        endpoint: endpoint.to_owned(),
        message: error_chain(e),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    crate::error::snippet(&s)
}

pub(super) fn api_error(endpoint: &str, status: u16, body: &[u8]) -> SaltError {
    SaltError::Api {
        endpoint: endpoint.to_owned(),
        status,
        message: decode::error_message(body),
    }
}
