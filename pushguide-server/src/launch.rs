//! What the service asks of the program that embeds it to run a deployment: the [`Launcher`].
//!
//! The service queues [`PublishRequest`]s in the store; its workers hand each one, with the
//! template's name and the user who asked, to the launcher, which builds the engine request (the
//! template, its CMDB settings, the artifact from CI) and starts it. `pushguide serve` implements it
//! over the configuration's salt-api, CI source and CMDB.

use pushguide_core::{async_trait, DeploymentHandle, Plan, Principal};
use serde::{Deserialize, Serialize};

/// Why a launcher could not do what was asked (shown to the user as is: one line, no secret).
pub type LaunchError = Box<dyn std::error::Error + Send + Sync>;

/// What a publish or rollback asks for; queued as JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    /// A release or a rollback.
    pub mode: PublishMode,
    /// Only record the changing calls.
    #[serde(default)]
    pub dry_run: bool,
    /// A batch size for this run instead of the template's (`3` or `25%`).
    #[serde(default)]
    pub batch: Option<String>,
    /// Only these hosts of the template.
    #[serde(default)]
    pub hosts: Option<Vec<String>>,
}

/// A release or a rollback.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum PublishMode {
    /// Release `version`.
    Deploy {
        /// The version.
        version: String,
    },
    /// Roll back to `to`, or each host to its previous version.
    Rollback {
        /// The version; `None`: each host's previous one.
        #[serde(default)]
        to: Option<String>,
    },
    /// Undo a release of `version` on the hosts it reached (each back to what it ran before).
    Undo {
        /// The release undone.
        version: String,
    },
}

impl PublishRequest {
    /// A release of `version`.
    pub fn deploy(version: impl Into<String>) -> Self {
        PublishRequest {
            mode: PublishMode::Deploy {
                version: version.into(),
            },
            dry_run: false,
            batch: None,
            hosts: None,
        }
    }

    /// One line saying what it asks (`deploy 2.0 (dry run) on web-01, web-02`).
    pub fn summary(&self) -> String {
        let mut s = match &self.mode {
            PublishMode::Deploy { version } => format!("deploy {version}"),
            PublishMode::Rollback { to: Some(v) } => format!("roll back to {v}"),
            PublishMode::Rollback { to: None } => {
                "roll back to each host's previous version".into()
            }
            PublishMode::Undo { version } => format!("undo {version}"),
        };
        if self.dry_run {
            s.push_str(" (dry run)");
        }
        if let Some(b) = &self.batch {
            s.push_str(&format!(", batches of {b}"));
        }
        if let Some(h) = &self.hosts {
            s.push_str(&format!(" on {}", h.join(", ")));
        }
        s
    }
}

/// A version the CI source offers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VersionInfo {
    /// The version.
    pub version: String,
    /// The artifact's size in bytes, when the source says (looked up for the newest few only).
    pub size: Option<u64>,
    /// The artifact's SHA-256, when the source says (looked up for the newest few only).
    pub sha256: Option<String>,
}

/// Starts deployments for the service's workers, and lists what can be released.
#[async_trait]
pub trait Launcher: Send + Sync + 'static {
    /// Starts `request` on `template` for `who` (checks are the launcher's too: a version the CI
    /// source does not have, a host that is not a target, a busy template are errors here, before
    /// any salt job).
    async fn start(
        &self,
        template: &str,
        request: &PublishRequest,
        who: &Principal,
    ) -> Result<DeploymentHandle, LaunchError>;

    /// The versions the CI source offers for `template`, newest first; empty without a source.
    async fn versions(&self, template: &str) -> Result<Vec<VersionInfo>, LaunchError>;

    /// What `request` would do (batches, the salt calls of each stage, each host's rollback
    /// target), computed read-only for `who` (who needs the view permission only). A launcher
    /// that cannot compute plans answers an error saying so.
    async fn plan(
        &self,
        template: &str,
        request: &PublishRequest,
        who: &Principal,
    ) -> Result<Plan, LaunchError> {
        let _ = (request, who);
        Err(format!("no plan preview for template `{template}` on this service").into())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn requests_round_trip_and_unknown_fields_are_refused() {
        let mut r = PublishRequest::deploy("2.0");
        r.hosts = Some(vec!["web-01".into()]);
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<PublishRequest>(&json).unwrap(), r);
        assert_eq!(r.summary(), "deploy 2.0 on web-01");
        let bad = r#"{"mode":{"kind":"deploy","version":"1"},"shell":"rm -rf /"}"#;
        let e = serde_json::from_str::<PublishRequest>(bad).unwrap_err();
        assert!(e.to_string().contains("shell"), "{e}");
    }
}
