//! Passwords (argon2id), random tokens, and the delay after failed logins.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::Error;

/// `password` hashed with argon2id (the crate's default parameters) and a random salt, as a PHC
/// string for [`pushguide_store::AccountStore::put_user`].
pub fn hash_password(password: &str) -> Result<String, Error> {
    let mut salt = [0u8; 16];
    getrandom::getrandom(&mut salt).map_err(|e| Error::Random(e.to_string()))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| Error::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::Hash(e.to_string()))
}

/// Whether `password` matches the PHC string `hash`. A hash that does not parse matches nothing.
pub fn verify_password(password: &str, hash: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(e) => {
            tracing::warn!(error = %e, "a stored password hash does not parse");
            false
        }
    }
}

/// A hash of a password nobody has, verified when the user is unknown so an unknown user takes as
/// long to refuse as a wrong password.
pub(crate) fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| {
        hash_password("pushguide: no such user").unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot hash the dummy password");
            String::new()
        })
    })
}

/// 256 random bits as 64 hex digits.
pub fn new_token() -> Result<String, Error> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).map_err(|e| Error::Random(e.to_string()))?;
    Ok(hex(&bytes))
}

/// The SHA-256 of `token`, hex: what the store keeps of a session token.
pub(crate) fn token_hash(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// Whether `a` and `b` are equal, in time independent of where they differ.
pub(crate) fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Failed logins per user and client address, and the delay the next attempt waits: `base`
/// doubled per failure, at most `max`. Kept in memory, at most `capacity` entries (the oldest go
/// first); a successful login forgets its entry.
#[derive(Debug)]
pub(crate) struct Throttle {
    failures: HashMap<(String, Option<IpAddr>), (u32, Instant)>,
    capacity: usize,
    base: Duration,
    max: Duration,
}

impl Throttle {
    pub(crate) fn new(capacity: usize, base: Duration, max: Duration) -> Self {
        Throttle {
            failures: HashMap::new(),
            capacity: capacity.max(1),
            base,
            max,
        }
    }

    /// How long an attempt by `user` from `addr` waits before its password is checked.
    pub(crate) fn delay(&self, user: &str, addr: Option<IpAddr>) -> Duration {
        match self.failures.get(&(user.to_owned(), addr)) {
            None | Some((0, _)) => Duration::ZERO,
            Some((n, _)) => {
                let factor = 1u32 << (n - 1).min(16);
                self.base.saturating_mul(factor).min(self.max)
            }
        }
    }

    pub(crate) fn failed(&mut self, user: &str, addr: Option<IpAddr>, now: Instant) {
        let key = (user.to_owned(), addr);
        if !self.failures.contains_key(&key) && self.failures.len() >= self.capacity {
            if let Some(oldest) = self
                .failures
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(k, _)| k.clone())
            {
                self.failures.remove(&oldest);
            }
        }
        let e = self.failures.entry(key).or_insert((0, now));
        *e = (e.0.saturating_add(1), now);
    }

    pub(crate) fn succeeded(&mut self, user: &str, addr: Option<IpAddr>) {
        self.failures.remove(&(user.to_owned(), addr));
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.failures.len()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn passwords_verify_only_themselves() {
        let h = hash_password("s3cret").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify_password("s3cret", &h));
        assert!(!verify_password("s3cret ", &h));
        assert!(!verify_password("s3cret", "not a hash"));
        assert_ne!(h, hash_password("s3cret").unwrap(), "salted");
        assert!(!verify_password("", dummy_hash()));
    }

    #[test]
    fn tokens_are_random_and_hashed() {
        let a = new_token().unwrap();
        assert_eq!(a.len(), 64);
        assert_ne!(a, new_token().unwrap());
        assert_eq!(
            token_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
    }

    #[test]
    fn the_delay_grows_per_failure_is_capped_and_bounded_in_memory() {
        let ms = Duration::from_millis;
        let mut t = Throttle::new(3, ms(100), ms(1000));
        let ip: Option<IpAddr> = Some([10, 0, 0, 1].into());
        let now = Instant::now();
        assert_eq!(t.delay("alice", ip), Duration::ZERO);
        let mut seen = Vec::new();
        for _ in 0..6 {
            t.failed("alice", ip, now);
            seen.push(t.delay("alice", ip));
        }
        assert_eq!(
            seen,
            [ms(100), ms(200), ms(400), ms(800), ms(1000), ms(1000)]
        );
        // another address or user is not slowed down
        assert_eq!(t.delay("alice", None), Duration::ZERO);
        assert_eq!(t.delay("bob", ip), Duration::ZERO);
        t.succeeded("alice", ip);
        assert_eq!(t.delay("alice", ip), Duration::ZERO);
        for (i, u) in ["a", "b", "c", "d"].iter().enumerate() {
            t.failed(u, ip, now + ms(i as u64));
        }
        assert_eq!(t.len(), 3);
        assert_eq!(t.delay("a", ip), Duration::ZERO, "the oldest went");
        assert_eq!(t.delay("d", ip), ms(100));
    }
}
