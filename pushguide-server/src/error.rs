//! The crate's error type.

/// What can go wrong in the web service. Handlers turn it into a 500 answer that names no
/// internals; the full error is logged.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] pushguide_store::Error),
    /// The templates could not be listed.
    #[error("cannot list templates: {0}")]
    Catalog(#[source] crate::catalog::CatalogError),
    /// The system's random number source failed.
    #[error("no random numbers from the system: {0}")]
    Random(String),
    /// A password could not be hashed.
    #[error("cannot hash a password: {0}")]
    Hash(String),
    /// A blocking task (store access, password check) panicked or was cancelled.
    #[error("a background task failed: {0}")]
    Task(String),
    /// The listening socket failed.
    #[error("{addr}: {source}")]
    Io {
        /// The address.
        addr: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}
