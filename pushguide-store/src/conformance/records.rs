//! Conformance checks of the records part of [`crate::ServerStore`].
