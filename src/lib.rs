//! # pushguide
//!
//! Release applications to mixed Linux/Windows fleets through SaltStack's salt-api.
//!
//! This facade re-exports [`pushguide_core`] (the engine and domain model) and links every bundled
//! project type so that their `inventory`/`typetag` registrations exist in your binary:
//!
//! ```
//! let kinds: Vec<&str> = pushguide::registered_kinds().iter().map(|k| k.kind).collect();
//! assert!(kinds.contains(&"java-tomcat"));
//! ```
//!
//! The four stages of a release (preparation, before release, release, after release) and rollback are
//! described on [`Deployer`]; run `cargo run --example quickstart` for a deployment on a simulated fleet.
//!
//! A project type needs nothing but this crate: [`async_trait`] is re-exported for implementing
//! [`Deployer`], and the features `mock` (`MockTransport`), `sim` (`sim::SimFleet`) and
//! `conformance` (`conformance::run`) switch on the test tools of `pushguide-core`. A project type
//! used straight from Rust needs no registration either: hand it to the engine with
//! [`Request::deployer`].
//!
//! ```
//! use std::sync::Arc;
//! use pushguide::{Deployer, SaltCall, StageContext, StageError};
//!
//! #[derive(Debug)]
//! struct Touch;
//!
//! #[pushguide::async_trait]
//! impl Deployer for Touch {
//!     async fn deploy(&self, cx: &mut StageContext<'_>) -> Result<(), StageError> {
//!         cx.call(SaltCall::mutate("file.touch").arg("/srv/app/deployed")).await?;
//!         Ok(())
//!     }
//!     async fn rollback(&self, _cx: &mut StageContext<'_>) -> Result<(), StageError> {
//!         Ok(())
//!     }
//! }
//!
//! let deployer: Arc<dyn Deployer> = Arc::new(Touch);
//! # let _ = deployer;
//! ```

pub use pushguide_core::*;

/// The salt-api transport.
pub use pushguide_salt as salt;

/// The `java-tomcat` project type.
#[cfg(feature = "java")]
pub use pushguide_java as java;

/// The `dotnet-iis` project type.
#[cfg(feature = "dotnet")]
pub use pushguide_dotnet as dotnet;

/// The `windows-task` project type.
#[cfg(feature = "wintask")]
pub use pushguide_wintask as wintask;

/// The kinds bundled with this build of the facade (by enabled feature).
#[allow(clippy::vec_init_then_push)] // pushes depend on features
pub fn bundled_kinds() -> Vec<&'static str> {
    let mut kinds = Vec::new();
    #[cfg(feature = "java")]
    kinds.push(pushguide_java::KIND);
    #[cfg(feature = "dotnet")]
    kinds.push(pushguide_dotnet::KIND);
    #[cfg(feature = "wintask")]
    kinds.push(pushguide_wintask::KIND);
    kinds
}
