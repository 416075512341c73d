//! Installing the pushguide salt module: written into every master's file_roots through that
//! master's salt-api (wheel `file_roots.write`), synced to the minions (`saltutil.sync_modules`) and
//! checked (`pushguide.version`).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use pushguide_core::{MinionId, Outcome, SaltCall, TargetExpr, Transport};
use serde_json::{json, Value};

use super::endpoint::Req;
use super::{Inner, SaltApi};
use crate::decode::{self, FileRootsWrite};
use crate::error::SaltError;
use crate::module;

/// How long the minions get to sync and answer `pushguide.version`.
const MINION_TIMEOUT: Duration = Duration::from_secs(60);

/// What [`SaltApi::install_module`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ModuleInstall {
    /// One entry per configured endpoint (master), in configured order: where the master wrote the
    /// module, or why it did not.
    pub endpoints: Vec<EndpointWrite>,
    /// Each targeted minion's state after the sync.
    pub minions: BTreeMap<MinionId, MinionInstall>,
}

impl ModuleInstall {
    /// Whether every targeted minion answers with this crate's [`module::PROTOCOL`].
    pub fn all_installed(&self) -> bool {
        !self.minions.is_empty() && self.minions.values().all(MinionInstall::is_current)
    }
}

/// One master's write of the module.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct EndpointWrite {
    /// Base URL of the master's salt-api.
    pub endpoint: String,
    /// The path the master wrote (`<file_roots>/_modules/pushguide.py`), or the error (a
    /// [`SaltError::ModuleWrite`] when the master refused, else the request's failure).
    pub result: Result<String, SaltError>,
}

/// A minion's state after [`SaltApi::install_module`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MinionInstall {
    /// `pushguide.version` answered this protocol version.
    Installed {
        /// The protocol version the minion's module speaks.
        protocol: u64,
    },
    /// The sync or the version check failed.
    Failed {
        /// What went wrong.
        error: String,
    },
}

impl MinionInstall {
    /// Installed with this crate's [`module::PROTOCOL`].
    pub fn is_current(&self) -> bool {
        matches!(self, MinionInstall::Installed { protocol } if *protocol == module::PROTOCOL)
    }
}

impl fmt::Display for MinionInstall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MinionInstall::Installed { protocol } if *protocol == module::PROTOCOL => {
                write!(f, "installed (protocol {protocol})")
            }
            MinionInstall::Installed { protocol } => write!(
                f,
                "installed with protocol {protocol}, but this pushguide speaks protocol {}",
                module::PROTOCOL
            ),
            MinionInstall::Failed { error } => f.write_str(error),
        }
    }
}

/// A minion's `pushguide.version` answer.
fn version_outcome(outcome: Outcome) -> MinionInstall {
    match outcome {
        Outcome::Ok { value } => match value.get("pushguide").and_then(Value::as_u64) {
            Some(protocol) => MinionInstall::Installed { protocol },
            None => MinionInstall::Failed {
                error: format!(
                    "pushguide.version answered {}, not {{\"pushguide\": <protocol>}}",
                    crate::snippet(&value.to_string())
                ),
            },
        },
        other => MinionInstall::Failed {
            error: format!("pushguide.version: {}", other.reason().unwrap_or_default()),
        },
    }
}

impl Inner {
    /// Writes the module through endpoint `idx` (never resent: each master is written through its
    /// own salt-api).
    async fn write_module(&self, idx: usize) -> Result<String, SaltError> {
        let body = json!([{
            "client": "wheel",
            "fun": "file_roots.write",
            "data": module::SOURCE,
            "path": module::PATH,
            "saltenv": "base",
        }]);
        let url = &self.endpoints[idx].url;
        let bytes = self
            .authed(idx, Req::Post("/", &body), self.settings.request_timeout)
            .await
            .map_err(|e| match e {
                SaltError::Auth { message, .. } => SaltError::ModuleWrite {
                    endpoint: url.clone(),
                    message: format!(
                        "salt-api refused the wheel call file_roots.write for user `{}` (the \
                         eauth user needs the `@wheel` permission): {message}",
                        self.settings.user
                    ),
                },
                other => other,
            })?;
        match decode::file_roots_write(&bytes)? {
            FileRootsWrite::Written { path } => Ok(path),
            FileRootsWrite::Refused { message } => Err(SaltError::ModuleWrite {
                endpoint: url.clone(),
                message: format!("file_roots.write answered: {message}"),
            }),
        }
    }
}

impl SaltApi {
    /// Installs the pushguide salt module ([`module::SOURCE`]) for the minions of `target`:
    ///
    /// 1. writes it to [`module::PATH`] in the `base` file_roots of every configured master, with the
    ///    wheel `file_roots.write` through each endpoint (the eauth user needs `@wheel`);
    /// 2. runs `saltutil.sync_modules` on the targets (one job, the normal call path);
    /// 3. asks them `pushguide.version`.
    ///
    /// A master that does not write it is listed in [`ModuleInstall::endpoints`]; when none does,
    /// the call fails (nothing to sync): with that master's error when there is one, else
    /// [`SaltError::ModuleNotWritten`]. A minion that does not sync or answer is
    /// [`MinionInstall::Failed`].
    pub async fn install_module(&self, target: &TargetExpr) -> Result<ModuleInstall, SaltError> {
        let inner = &self.inner;
        let mut endpoints = Vec::with_capacity(inner.endpoints.len());
        for idx in 0..inner.endpoints.len() {
            let url = inner.endpoints[idx].url.clone();
            let result = inner.write_module(idx).await;
            match &result {
                Ok(path) => tracing::info!(endpoint = %url, %path, "pushguide module written"),
                Err(e) => {
                    tracing::warn!(endpoint = %url, error = %e, "pushguide module not written")
                }
            }
            endpoints.push(EndpointWrite {
                endpoint: url,
                result,
            });
        }
        if endpoints.iter().all(|e| e.result.is_err()) {
            let mut errors: Vec<SaltError> = endpoints
                .into_iter()
                .filter_map(|e| e.result.err())
                .collect();
            return Err(if errors.len() == 1 {
                errors.remove(0)
            } else {
                SaltError::ModuleNotWritten {
                    errors: errors.iter().map(ToString::to_string).collect(),
                }
            });
        }
        let targets = Transport::resolve(self, target)
            .await
            .map_err(|e| SaltError::protocol("target", e.message, b""))?;
        let mut minions = BTreeMap::new();
        if targets.is_empty() {
            return Ok(ModuleInstall { endpoints, minions });
        }
        let mut synced = self
            .run(
                &targets,
                &SaltCall::mutate("saltutil.sync_modules").timeout(MINION_TIMEOUT),
            )
            .await?;
        let mut ready = Vec::new();
        for m in &targets {
            match synced.take(m) {
                Outcome::Ok { value } => {
                    tracing::debug!(minion = %m, synced = %value, "saltutil.sync_modules");
                    ready.push(m.clone());
                }
                other => {
                    minions.insert(
                        m.clone(),
                        MinionInstall::Failed {
                            error: format!(
                                "saltutil.sync_modules: {}",
                                other.reason().unwrap_or_default()
                            ),
                        },
                    );
                }
            }
        }
        if !ready.is_empty() {
            let mut versions = self
                .run(
                    &ready,
                    &SaltCall::read("pushguide.version").timeout(MINION_TIMEOUT),
                )
                .await?;
            for m in ready {
                let state = version_outcome(versions.take(&m));
                minions.insert(m, state);
            }
        }
        Ok(ModuleInstall { endpoints, minions })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_answers_become_install_states() {
        assert_eq!(
            version_outcome(Outcome::ok(json!({"pushguide": 1}))),
            MinionInstall::Installed { protocol: 1 }
        );
        assert!(version_outcome(Outcome::ok(json!({"pushguide": 1}))).is_current());
        let newer = version_outcome(Outcome::ok(json!({"pushguide": 2})));
        assert!(!newer.is_current());
        assert!(newer.to_string().contains("protocol 2"), "{newer}");
        assert_eq!(
            MinionInstall::Installed { protocol: 1 }.to_string(),
            "installed (protocol 1)"
        );
        let missing = version_outcome(Outcome::failed(
            None,
            "'pushguide.version' is not available.",
        ));
        assert!(!missing.is_current());
        assert!(
            missing.to_string().contains("is not available"),
            "{missing}"
        );
        let odd = version_outcome(Outcome::ok(json!("1")));
        assert!(odd.to_string().contains("not {\"pushguide\""), "{odd}");
        assert!(!version_outcome(Outcome::NoReturn).is_current());
    }
}
