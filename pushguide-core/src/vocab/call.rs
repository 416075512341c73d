//! Salt calls and their per-minion outcomes.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::vocab::error::Error;

/// A validated salt minion id. Cheap to clone (shared string) and cheap to hash (the hash of the id is
/// computed once, when the id is created).
#[derive(Clone)]
pub struct MinionId {
    id: Arc<str>,
    hash: u64,
}

/// FNV-1a over the id's bytes: stable, fast, and only used to seed `Hash`.
fn id_hash(id: &str) -> u64 {
    id.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

impl MinionId {
    /// Validates `id` with [`crate::vocab::validate::minion_id`].
    pub fn new(id: &str) -> Result<Self, Error> {
        crate::vocab::validate::minion_id("minion id", id)?;
        Ok(MinionId {
            hash: id_hash(id),
            id: Arc::from(id),
        })
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.id
    }
}

impl PartialEq for MinionId {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && (Arc::ptr_eq(&self.id, &other.id) || self.id == other.id)
    }
}

impl Eq for MinionId {}

impl std::hash::Hash for MinionId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl PartialOrd for MinionId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for MinionId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.id.cmp(&other.id)
    }
}

impl Serialize for MinionId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.id)
    }
}

impl<'de> Deserialize<'de> for MinionId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        MinionId::new(&s).map_err(serde::de::Error::custom)
    }
}

impl fmt::Debug for MinionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.id, f)
    }
}

impl fmt::Display for MinionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id)
    }
}

/// A hasher for maps keyed by [`MinionId`]: the id's hash is computed once when the id is created,
/// so hashing it again only mixes that number. Not for untrusted keys of other types.
#[derive(Default, Clone, Copy, Debug)]
pub struct MinionHasher(u64);

impl std::hash::Hasher for MinionHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    fn write_u64(&mut self, n: u64) {
        // fold and multiply so that both the low (bucket) and high (tag) bits vary
        self.0 = (self.0 ^ n ^ (n >> 29)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// A map keyed by minion id, hashed with [`MinionHasher`].
pub type MinionMap<V> = HashMap<MinionId, V, std::hash::BuildHasherDefault<MinionHasher>>;

pub(crate) type IdMap<V> = MinionMap<V>;

/// Whether a call can change a host. Dry runs send read-only calls and only record mutating ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Effect {
    /// Reads state only (`test.ping`, `file.file_exists`, an `http.query` probe).
    ReadOnly,
    /// May change the host.
    Mutating,
}

/// One salt execution-module call: `fun`, positional `arg`, keyword `kwarg`, a timeout and its [`Effect`].
///
/// Build it with [`SaltCall::read`] or [`SaltCall::mutate`] and the chained setters:
///
/// ```
/// use pushguide_core::{Effect, SaltCall};
/// use std::time::Duration;
/// let call = SaltCall::mutate("file.symlink")
///     .arg("/srv/shop/releases/1.4.2")
///     .arg("/srv/shop/current")
///     .kwarg("force", true)
///     .timeout(Duration::from_secs(30));
/// assert_eq!(call.effect, Effect::Mutating);
/// assert_eq!(call.to_string(), r#"file.symlink "/srv/shop/releases/1.4.2" "/srv/shop/current" force=true"#);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SaltCall {
    /// Execution-module function, e.g. `cmd.run_all`.
    pub fun: String,
    /// Positional arguments, each sent as its own JSON value.
    pub arg: Vec<Value>,
    /// Keyword arguments.
    pub kwarg: BTreeMap<String, Value>,
    /// How long to wait for minions' returns; `None` lets the transport decide.
    pub timeout: Option<Duration>,
    /// Read-only or mutating.
    pub effect: Effect,
}

impl SaltCall {
    /// A call with the given effect and no arguments.
    pub fn new(fun: impl Into<String>, effect: Effect) -> Self {
        SaltCall {
            fun: fun.into(),
            arg: Vec::new(),
            kwarg: BTreeMap::new(),
            timeout: None,
            effect,
        }
    }

    /// A read-only call.
    pub fn read(fun: impl Into<String>) -> Self {
        Self::new(fun, Effect::ReadOnly)
    }

    /// A mutating call.
    pub fn mutate(fun: impl Into<String>) -> Self {
        Self::new(fun, Effect::Mutating)
    }

    /// Appends a positional argument.
    pub fn arg(mut self, value: impl Into<Value>) -> Self {
        self.arg.push(value.into());
        self
    }

    /// Sets a keyword argument.
    pub fn kwarg(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.kwarg.insert(key.into(), value.into());
        self
    }

    /// Sets the timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Whether the call is mutating.
    pub fn is_mutating(&self) -> bool {
        self.effect == Effect::Mutating
    }
}

impl fmt::Display for SaltCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.fun)?;
        for a in &self.arg {
            write!(f, " {a}")?;
        }
        for (k, v) in &self.kwarg {
            write!(f, " {k}={v}")?;
        }
        Ok(())
    }
}

/// What one minion answered to one call, normalized from salt's many shapes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum Outcome {
    /// The call succeeded; the function's return value.
    Ok {
        /// The returned value.
        value: Value,
    },
    /// The call ran and failed (non-zero retcode, state `result: false`, exception, unknown function).
    Failed {
        /// Salt's retcode, where there was one.
        retcode: Option<i64>,
        /// A human-readable reason.
        message: String,
    },
    /// The minion did not answer in time.
    NoReturn,
}

impl Outcome {
    /// `Ok` with the given value.
    pub fn ok(value: impl Into<Value>) -> Self {
        Outcome::Ok {
            value: value.into(),
        }
    }

    /// `Failed` with a retcode and message.
    pub fn failed(retcode: Option<i64>, message: impl Into<String>) -> Self {
        Outcome::Failed {
            retcode,
            message: message.into(),
        }
    }

    /// Whether this is `Ok`.
    pub fn is_ok(&self) -> bool {
        matches!(self, Outcome::Ok { .. })
    }

    /// A one-line reason for a failure (`None` for `Ok`).
    pub fn reason(&self) -> Option<String> {
        match self {
            Outcome::Ok { .. } => None,
            Outcome::Failed {
                retcode: Some(rc),
                message,
            } => Some(format!("retcode {rc}: {message}")),
            Outcome::Failed {
                retcode: None,
                message,
            } => Some(message.clone()),
            Outcome::NoReturn => Some("no return (minion did not answer in time)".to_owned()),
        }
    }
}

/// The per-minion outcomes of one salt request, plus the job id where the transport has one.
///
/// A targeted minion that is missing from `minions` is treated as [`Outcome::NoReturn`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Returns {
    /// Salt job id.
    pub jid: Option<String>,
    /// Outcome per minion.
    pub minions: MinionMap<Outcome>,
}

impl Returns {
    /// Empty returns with a job id.
    pub fn with_jid(jid: impl Into<String>) -> Self {
        Returns {
            jid: Some(jid.into()),
            minions: MinionMap::default(),
        }
    }

    /// Adds one minion's outcome (builder style).
    pub fn with(mut self, minion: &MinionId, outcome: Outcome) -> Self {
        self.minions.insert(minion.clone(), outcome);
        self
    }

    /// The same outcome for every target.
    pub fn uniform(targets: &[MinionId], outcome: Outcome) -> Self {
        Returns {
            jid: None,
            minions: targets
                .iter()
                .map(|m| (m.clone(), outcome.clone()))
                .collect(),
        }
    }

    /// Takes one minion's outcome out; a missing minion is `NoReturn`.
    pub fn take(&mut self, minion: &MinionId) -> Outcome {
        self.minions.remove(minion).unwrap_or(Outcome::NoReturn)
    }
}

/// Reads the salt function of a host failure: a name, or `None` when no call failed the host.
/// Journals written before the type said so hold `"-"` for `None`; it is read as `None`.
pub(crate) fn fun_or_none<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<String>, D::Error> {
    let fun: Option<String> = Option::deserialize(d)?;
    Ok(fun.filter(|f| f != "-"))
}
