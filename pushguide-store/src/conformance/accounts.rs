//! Conformance checks of the accounts part of [`crate::ServerStore`].
