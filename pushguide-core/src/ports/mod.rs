//! Floor 3, the ports: the traits the engine reaches the world through — minions ([`transport`]) and
//! the stores of fleet state, leases, history and minion status — each with an in-memory implementation.

pub(crate) mod fleet;
pub(crate) mod history;
pub(crate) mod lease;
pub(crate) mod status;
pub(crate) mod transport;
