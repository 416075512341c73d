//! Conformance checks of the queue part of [`crate::ServerStore`].
