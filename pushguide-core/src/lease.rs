//! One deployment per template at a time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::error::Error;

/// Grants exclusive use of a template to one deployment. The in-memory [`MemoryLeases`] serves one
/// process; a durable implementation can serve several processes sharing a database.
pub trait LeaseManager: Send + Sync + std::fmt::Debug {
    /// Takes the lease on `template` for `holder`, or fails with [`Error::Busy`] naming the holder.
    fn acquire(&self, template: &str, holder: &str) -> Result<(), Error>;
    /// Gives the lease back; a no-op when `holder` does not hold it.
    fn release(&self, template: &str, holder: &str);
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
