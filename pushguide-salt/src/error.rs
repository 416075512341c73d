//! The error type of the salt-api client.

use std::time::Duration;

use pushguide_core::{TransportError, TransportErrorKind};

/// Longest body excerpt kept in a [`SaltError::Protocol`] or [`SaltError::Api`] message.
pub const SNIPPET_MAX: usize = 200;

/// A failure of one salt-api request (as opposed to one minion's failed return).
///
/// Messages never contain the password or a token.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SaltError {
    /// salt-api refused the credentials (or a fresh token) with HTTP 401/403.
    #[error("salt-api at {endpoint} refused the credentials of user `{user}`: {message}")]
    Auth {
        /// Base URL of the endpoint.
        endpoint: String,
        /// User name (never the password).
        user: String,
        /// What salt-api said.
        message: String,
    },
    /// No connection could be made (refused, DNS, TLS, reset).
    #[error("salt-api at {endpoint} is unreachable: {message}")]
    Unreachable {
        /// Base URL of the endpoint.
        endpoint: String,
        /// The cause.
        message: String,
    },
    /// A request (or, for [`SaltApi::call`](crate::SaltApi), the request that starts a job) timed out.
    #[error("salt-api at {endpoint} did not answer {what} within {after:?}")]
    Timeout {
        /// Base URL of the endpoint.
        endpoint: String,
        /// The request that timed out.
        what: String,
        /// The time waited.
        after: Duration,
    },
    /// salt-api answered something this client cannot understand.
    #[error("unexpected salt-api answer ({context}): {message}; body: {snippet:?}")]
    Protocol {
        /// Which answer (`login`, `local_async`, `jobs`, …).
        context: String,
        /// What was wrong with it.
        message: String,
        /// The start of the body, at most [`SNIPPET_MAX`] characters.
        snippet: String,
    },
    /// salt-api answered with an error status other than 401.
    #[error("salt-api at {endpoint} answered HTTP {status}: {message}")]
    Api {
        /// Base URL of the endpoint.
        endpoint: String,
        /// HTTP status.
        status: u16,
        /// The message of the answer (from CherryPy's HTML page or salt's JSON), shortened.
        message: String,
    },
    /// A master did not write the pushguide salt module into its file_roots (see
    /// [`SaltApi::install_module`](crate::SaltApi::install_module)).
    #[error("salt-api at {endpoint} did not install the pushguide module: {message}")]
    ModuleWrite {
        /// Base URL of the endpoint (the master's salt-api).
        endpoint: String,
        /// Why: the master's answer, or the refused request.
        message: String,
    },
    /// No configured master wrote the pushguide salt module; carries each one's error (each names
    /// its endpoint).
    #[error("no master wrote the pushguide module: {}", .errors.join("; "))]
    ModuleNotWritten {
        /// One line per endpoint.
        errors: Vec<String>,
    },
    /// Every endpoint is marked down or failed; carries the last error of each.
    #[error("no salt-api endpoint is available: {}", .errors.join("; "))]
    AllEndpointsDown {
        /// One line per endpoint.
        errors: Vec<String>,
    },
}

impl SaltError {
    /// A protocol error with a short excerpt of `body`.
    pub fn protocol(context: &str, message: impl Into<String>, body: &[u8]) -> Self {
        SaltError::Protocol {
            context: context.to_owned(),
            message: message.into(),
            snippet: snippet(&String::from_utf8_lossy(body)),
        }
    }

    /// Whether sending the same request again (possibly to another endpoint) may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            SaltError::Unreachable { .. }
            | SaltError::Timeout { .. }
            | SaltError::AllEndpointsDown { .. } => true,
            SaltError::Api { status, .. } => matches!(status, 502..=504),
            SaltError::Auth { .. }
            | SaltError::Protocol { .. }
            | SaltError::ModuleWrite { .. }
            | SaltError::ModuleNotWritten { .. } => false,
        }
    }

    /// The matching [`TransportErrorKind`].
    pub fn kind(&self) -> TransportErrorKind {
        match self {
            SaltError::Auth { .. } => TransportErrorKind::Auth,
            SaltError::Unreachable { .. } | SaltError::AllEndpointsDown { .. } => {
                TransportErrorKind::Unreachable
            }
            SaltError::Timeout { .. } => TransportErrorKind::Timeout,
            SaltError::Protocol { .. } => TransportErrorKind::Protocol,
            SaltError::Api { .. }
            | SaltError::ModuleWrite { .. }
            | SaltError::ModuleNotWritten { .. } => TransportErrorKind::Api,
        }
    }
}

impl From<SaltError> for TransportError {
    fn from(e: SaltError) -> Self {
        TransportError::new(e.kind(), e.to_string()).with_source(e)
    }
}

/// The first [`SNIPPET_MAX`] characters of `text` (on a char boundary), with `…` when cut.
pub fn snippet(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(SNIPPET_MAX) {
        None => text.to_owned(),
        Some((cut, _)) => {
            let mut s = text[..cut].to_owned();
            s.push('…');
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippet_is_short_and_cuts_on_char_boundaries() {
        let long = "é".repeat(1000);
        let s = snippet(&long);
        assert_eq!(s.chars().count(), SNIPPET_MAX + 1);
        assert_eq!(snippet("  short \n"), "short");
    }

    #[test]
    fn kinds_map_to_transport_errors() {
        let e = SaltError::Unreachable {
            endpoint: "http://x".into(),
            message: "refused".into(),
        };
        assert!(e.is_retryable());
        let t: TransportError = e.into();
        assert_eq!(t.kind, TransportErrorKind::Unreachable);
        assert!(t.is_retryable());
        let e = SaltError::protocol("login", "no token", &[b'x'; 5000]);
        assert!(!e.is_retryable());
        assert!(e.to_string().len() < 400, "{e}");
        assert_eq!(TransportError::from(e).kind, TransportErrorKind::Protocol);
        let e = SaltError::Api {
            endpoint: "http://x".into(),
            status: 503,
            message: "busy".into(),
        };
        assert!(e.is_retryable());
        let e = SaltError::Api {
            endpoint: "http://x".into(),
            status: 500,
            message: "An unexpected error occurred".into(),
        };
        assert!(!e.is_retryable());
        assert_eq!(TransportError::from(e).kind, TransportErrorKind::Api);
    }

    #[test]
    fn a_transport_error_keeps_the_salt_error_as_its_source() {
        let salt = SaltError::Api {
            endpoint: "http://master-a:8000".into(),
            status: 503,
            message: "busy".into(),
        };
        let t = TransportError::from(salt.clone());
        let source = std::error::Error::source(&t).expect("the salt error is kept");
        assert_eq!(source.downcast_ref::<SaltError>(), Some(&salt));
        // and through the core error that wraps it
        let core = pushguide_core::Error::Transport {
            during: "sending a call",
            source: t,
        };
        let chain: Vec<String> =
            std::iter::successors(Some(&core as &dyn std::error::Error), |e| e.source())
                .map(ToString::to_string)
                .collect();
        assert_eq!(chain.len(), 3, "{chain:?}");
        assert!(chain[2].contains("503"), "{chain:?}");
    }
}
