//! One deployment per template at a time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::error::Error;

/// Grants exclusive use of a template to one deployment. The in-memory [`MemoryLeases`] serves one
/// process; a durable implementation can serve several processes sharing a database.
///
/// ```
/// use pushguide_core::{Error, LeaseManager, MemoryLeases};
///
/// let leases = MemoryLeases::default();
/// leases.acquire("shop", "shop-1").unwrap();
/// assert!(matches!(leases.acquire("shop", "shop-2"), Err(Error::Busy { .. })));
/// leases.check("shop", "shop-1").unwrap(); // the engine asks before every batch
/// leases.release("shop", "shop-1");
/// assert!(matches!(leases.check("shop", "shop-1"), Err(Error::LeaseLost { .. })));
/// ```
pub trait LeaseManager: Send + Sync + std::fmt::Debug {
    /// Takes the lease on `template` for `holder`, or fails with [`Error::Busy`] naming the holder.
    fn acquire(&self, template: &str, holder: &str) -> Result<(), Error>;
    /// Gives the lease back; a no-op when `holder` does not hold it.
    fn release(&self, template: &str, holder: &str);
    /// Whether `holder` still holds the lease on `template` (a durable manager may renew it here).
    /// The engine asks before every batch, of the release and of a rollback: on an error (say
    /// [`Error::LeaseLost`]) the deployment stops touching hosts, since another deployment may own
    /// the template now. The default (for managers whose leases cannot be lost) answers `Ok`.
    fn check(&self, template: &str, holder: &str) -> Result<(), Error> {
        let _ = (template, holder);
        Ok(())
    }
}

/// Leases kept in this process's memory.
#[derive(Debug, Default)]
pub struct MemoryLeases {
    held: Mutex<HashMap<String, String>>,
}

impl LeaseManager for MemoryLeases {
    fn acquire(&self, template: &str, holder: &str) -> Result<(), Error> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(current) = held.get(template) {
            return Err(Error::Busy {
                template: template.to_owned(),
                holder: current.clone(),
            });
        }
        held.insert(template.to_owned(), holder.to_owned());
        Ok(())
    }

    fn release(&self, template: &str, holder: &str) {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        if held.get(template).is_some_and(|h| h == holder) {
            held.remove(template);
        }
    }

    fn check(&self, template: &str, holder: &str) -> Result<(), Error> {
        let held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        match held.get(template) {
            Some(h) if h == holder => Ok(()),
            other => Err(Error::LeaseLost {
                template: template.to_owned(),
                holder: holder.to_owned(),
                reason: match other {
                    Some(h) => format!("deployment {h} holds it"),
                    None => "nobody holds it".to_owned(),
                },
            }),
        }
    }
}

/// Releases the lease when dropped, however the deployment ends.
#[derive(Debug)]
pub(crate) struct LeaseGuard {
    pub(crate) manager: Arc<dyn LeaseManager>,
    pub(crate) template: String,
    pub(crate) holder: String,
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        self.manager.release(&self.template, &self.holder);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_until_release() {
        let l = MemoryLeases::default();
        l.acquire("shop", "d1").unwrap();
        let err = l.acquire("shop", "d2").unwrap_err();
        assert!(matches!(err, Error::Busy { ref holder, .. } if holder == "d1"));
        l.release("shop", "d2");
        assert!(l.acquire("shop", "d3").is_err());
        l.release("shop", "d1");
        l.acquire("shop", "d3").unwrap();
        l.acquire("other", "d4").unwrap();
    }
}
