//! What a caller asks the engine for: a [`Request`] to release or roll back, and its [`Mode`].

use std::sync::Arc;

use crate::hook::deployer::Deployer;
use crate::hook::template::{Principal, Template};

/// A request to release `version` of `template`.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Request {
    /// The template.
    pub template: Arc<Template>,
    /// The version (validated before anything runs).
    pub version: String,
    /// Who asks.
    pub principal: Principal,
    /// Deploy only to these hosts of the template.
    pub hosts: Option<Vec<String>>,
    /// Record mutating calls instead of sending them.
    pub dry_run: bool,
    /// The artifact, when resolved by the caller (e.g. from CI); a project type may also resolve it in
    /// prepare.
    pub artifact: Option<crate::hook::context::Artifact>,
    /// Deploy `version`, or roll back.
    pub mode: Mode,
    /// The project type to run, instead of the one the template's `[project]` config builds (see
    /// [`Request::deployer`]).
    pub deployer: Option<Arc<dyn Deployer>>,
}

/// What a [`Request`] asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Release `version` in rolling batches.
    Deploy,
    /// Roll every host back through the `rollback` hook, in batches, to `to`.
    Rollback {
        /// Where each host goes.
        to: RollbackTo,
    },
}

/// Where a requested rollback takes each host.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RollbackTo {
    /// Every host to this version.
    Version(String),
    /// Each host to the good version it ran before its current one (from recorded history).
    Previous,
    /// Each host back to what it ran before the release of this version reached it (see
    /// [`Request::undo`]).
    Undo(String),
}

impl RollbackTo {
    /// What the deployment's history shows as its version: the version, or `previous` when each
    /// host goes to its own.
    pub fn label(&self) -> &str {
        match self {
            RollbackTo::Version(v) => v,
            RollbackTo::Previous | RollbackTo::Undo(_) => "previous",
        }
    }
}

impl Request {
    /// A request for every host of the template.
    pub fn new(template: Arc<Template>, version: impl Into<String>, principal: Principal) -> Self {
        Request {
            template,
            version: version.into(),
            principal,
            hosts: None,
            dry_run: false,
            artifact: None,
            mode: Mode::Deploy,
            deployer: None,
        }
    }

    /// A rollback of every host of the template to `to`, or to each host's previous version.
    pub fn rollback(template: Arc<Template>, to: Option<String>, principal: Principal) -> Self {
        let to = to.map_or(RollbackTo::Previous, RollbackTo::Version);
        Request {
            version: to.label().to_owned(),
            mode: Mode::Rollback { to },
            ..Request::new(template, "", principal)
        }
    }

    /// Makes a rollback undo the effects of a release of `version` (say, an interrupted deployment):
    /// each host goes back to the version it ran before that release — its recorded current version
    /// when the release never recorded itself there, else its previous good version. A host with
    /// nothing recorded is skipped, which is not a failure. Combine with [`Request::hosts`] to touch
    /// only the hosts the release reached. Makes any request a rollback.
    pub fn undo(mut self, version: impl Into<String>) -> Self {
        let to = RollbackTo::Undo(version.into());
        self.version = to.label().to_owned();
        self.mode = Mode::Rollback { to };
        self
    }

    /// Sets the artifact (builder style).
    pub fn artifact(mut self, artifact: crate::hook::context::Artifact) -> Self {
        self.artifact = Some(artifact);
        self
    }

    /// Runs `deployer`'s hooks instead of those the template's `[project]` config builds: a project
    /// type used straight from Rust (embedded in a tool, or under test) needs no `typetag`
    /// registration. The template's settings (targets, rollout, failure budget, rollback) still
    /// apply.
    pub fn deployer(mut self, deployer: Arc<dyn Deployer>) -> Self {
        self.deployer = Some(deployer);
        self
    }

    /// Sets the dry-run flag.
    pub fn dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    /// Restricts the deployment to some of the template's hosts.
    pub fn hosts<I: IntoIterator<Item = S>, S: Into<String>>(mut self, hosts: I) -> Self {
        self.hosts = Some(hosts.into_iter().map(Into::into).collect());
        self
    }
}
