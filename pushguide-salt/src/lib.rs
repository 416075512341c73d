//! # pushguide-salt
//!
//! The salt-api transport of pushguide. This crate currently provides the settings of a salt-api
//! connection; the HTTP client implementing [`pushguide_core::Transport`] is built on top of it.

use std::fmt;

/// Settings of one salt-api connection. The password never appears in `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct SaltApiSettings {
    /// Base URL of salt-api, e.g. `http://127.0.0.1:8123`.
    pub url: String,
    /// eauth backend (`pam`, `file`, `ldap`, …).
    pub eauth: String,
    /// User name.
    pub user: String,
    /// Password.
    pub password: String,
}

impl fmt::Debug for SaltApiSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SaltApiSettings")
            .field("url", &self.url)
            .field("eauth", &self.eauth)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_password() {
        let s = SaltApiSettings {
            url: "http://127.0.0.1:8123".into(),
            eauth: "file".into(),
            user: "pushguide".into(),
            password: "hunter2-secret".into(),
        };
        let shown = format!("{s:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }
}
