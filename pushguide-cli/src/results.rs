//! The typed results of the commands: the rows and summaries a command returns and
//! [`crate::output`] prints (human text or `--json`). Both [`crate::commands`] and
//! [`crate::output`] import them from here; nothing here runs a command or prints.

use pushguide_core::{DeploymentOutcome, HostFailure, HostStatus, Report};
use serde::Serialize;

use crate::outcome;

pub use pushguide_server::rfc3339;

pub(crate) use pushguide_server::records::millis;

/// The shapes of recorded deployments (`history`, `show`, `log`, `watch`, `stats`), shared with the
/// web service's JSON API.
pub use pushguide_server::records::{
    CallLine, DeploymentRow, HostLog, LogResult, RateRow, SeriesRow, StageLine, StatsResult,
};

/// One project type (`kinds`).
#[derive(Debug, Serialize)]
pub struct KindRow {
    /// The `kind` tag.
    pub kind: String,
    /// One line.
    pub summary: String,
    /// `linux`, `windows`.
    pub platforms: Vec<String>,
    /// An example `[project]` table.
    pub example: String,
}

/// A template (`templates`; shared with the web service's `GET /api/v1/templates`).
pub use pushguide_server::TemplateRow;

/// `user add`.
#[derive(Debug, Serialize)]
pub struct UserAdded {
    /// The user.
    pub user: String,
    /// Their groups.
    pub groups: Vec<String>,
    /// Whether an existing user was replaced.
    pub replaced: bool,
}

/// `token add`: the token, printed this once (hidden from `Debug`).
#[derive(Serialize)]
pub struct TokenAdded {
    /// Its id (to revoke it).
    pub id: String,
    /// The user it acts as.
    pub user: String,
    /// Its label.
    pub label: String,
    /// When it stops working (RFC 3339), if ever.
    pub expires: Option<String>,
    /// The token.
    pub token: String,
}

impl std::fmt::Debug for TokenAdded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenAdded")
            .field("id", &self.id)
            .field("user", &self.user)
            .field("label", &self.label)
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

/// The version one host runs (`show`).
#[derive(Debug, Serialize)]
pub struct HostVersionRow {
    /// Host.
    pub host: String,
    /// Current version (`null`: never deployed, or unknown — see `state`).
    pub version: Option<String>,
    /// What is known of it.
    pub state: HostState,
    /// Since, RFC 3339.
    pub since: Option<String>,
    /// The rollback target: the last version that ran successfully before the current one.
    pub previous: Option<String>,
}

/// What is known of what a host runs (`show`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostState {
    /// Nothing recorded.
    NeverDeployed,
    /// It runs `version` as released.
    Running,
    /// A release failed on it; it runs `version`, which is not healthy.
    Failed,
    /// A release or rollback failed in the middle of switching: what it runs is unknown.
    Unknown,
}

impl HostState {
    /// The state's name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            HostState::NeverDeployed => "never-deployed",
            HostState::Running => "running",
            HostState::Failed => "failed",
            HostState::Unknown => "unknown",
        }
    }
}

/// `show`.
#[derive(Debug, Serialize)]
pub struct ShowResult {
    /// Name.
    pub name: String,
    /// The file.
    pub file: String,
    /// Project type.
    pub kind: String,
    /// Whether the user may deploy.
    pub may_deploy: bool,
    /// The whole template, as JSON.
    pub config: serde_json::Value,
    /// The template as TOML (for people).
    #[serde(skip)]
    pub toml: String,
    /// The newest non-dry-run deployment.
    pub last_deployment: Option<DeploymentRow>,
    /// Per host: the version it runs.
    pub hosts: Vec<HostVersionRow>,
}

/// `versions`.
#[derive(Debug, Serialize)]
pub struct VersionsResult {
    /// Template.
    pub template: String,
    /// The CI source.
    pub source: String,
    /// Newest first.
    pub versions: Vec<String>,
}

/// One host of a finished deployment.
#[derive(Debug, Serialize)]
pub struct HostSummary {
    /// Host.
    pub host: String,
    /// Batch (0-based).
    pub batch: Option<usize>,
    /// Final status (`succeeded`, `failed`, `rolled-back`, …).
    pub status: HostStatus,
    /// Why it failed.
    pub failure: Option<HostFailure>,
    /// Why its rollback failed.
    pub rollback_failure: Option<HostFailure>,
    /// The version it was rolled back to.
    pub rolled_back_to: Option<String>,
}

/// The result of `deploy` and `rollback` (not detached).
#[derive(Debug, Serialize)]
pub struct DeploymentSummary {
    /// Id.
    pub id: String,
    /// `deploy` or `rollback`.
    pub mode: &'static str,
    /// Template.
    pub template: String,
    /// Version.
    pub version: String,
    /// User.
    pub user: String,
    /// Dry run.
    pub dry_run: bool,
    /// Outcome.
    pub outcome: DeploymentOutcome,
    /// The exit code.
    pub exit_code: u8,
    /// Why it stopped early.
    pub reason: Option<String>,
    /// Start, RFC 3339.
    pub started: String,
    /// Duration in ms.
    pub duration_ms: u64,
    /// Hosts per batch.
    pub batches: Vec<Vec<String>>,
    /// Per host.
    pub hosts: Vec<HostSummary>,
    /// Dry run: the mutating calls recorded without sending (`stage: call`).
    pub unsent_calls: Vec<String>,
    /// The history store failed to record it.
    pub history_error: Option<String>,
}

impl DeploymentSummary {
    /// The summary of the engine's report (`rollback`: of a rollback request).
    pub(crate) fn new(r: &Report, rollback: bool) -> Self {
        DeploymentSummary {
            id: r.id.clone(),
            mode: if rollback { "rollback" } else { "deploy" },
            template: r.template.clone(),
            version: r.version.clone(),
            user: r.user.clone(),
            dry_run: r.dry_run,
            exit_code: outcome::exit_code(r.outcome, rollback),
            outcome: r.outcome,
            reason: r.reason.clone(),
            started: rfc3339(r.started),
            duration_ms: millis(r.duration),
            batches: r
                .batches
                .iter()
                .map(|b| b.iter().map(ToString::to_string).collect())
                .collect(),
            hosts: r
                .hosts
                .iter()
                .map(|h| HostSummary {
                    host: h.host.to_string(),
                    batch: h.batch,
                    status: h.status,
                    failure: h.failure.clone(),
                    rollback_failure: h.rollback_failure.clone(),
                    rolled_back_to: h.rolled_back_to.clone(),
                })
                .collect(),
            unsent_calls: r
                .unsent_calls()
                .map(|c| format!("{}: {}", c.stage, c.call))
                .collect(),
            history_error: r.history_error.clone(),
        }
    }
}

/// What `deploy --detach` started.
#[derive(Debug, Serialize)]
pub struct Detached {
    /// The deployment id.
    pub id: String,
    /// The child process.
    pub pid: u32,
    /// Its output.
    pub log: String,
}

/// A host of an interrupted deployment and what was done to it.
#[derive(Debug, Serialize)]
pub struct HostProgressRow {
    /// Host.
    pub host: String,
    /// Batch (`null`: never in a batch).
    pub batch: Option<usize>,
    /// Last stage recorded for it (`null`: not reached).
    pub stage: Option<String>,
    /// `succeeded`, `failed`, `interrupted`, `rolled-back`, `rollback-failed`, or `not-reached`.
    pub status: String,
    /// Whether its batch started (the deployment touched it).
    pub touched: bool,
    /// The stages of its batch that finished for it.
    pub stages_done: Vec<String>,
    /// For an interrupted host: the salt functions of the stage under way that returned.
    pub calls_done: Vec<String>,
    /// Per stage of its batch that started: the salt functions that returned (for at least one host
    /// of the batch).
    pub stage_calls: Vec<(String, Vec<String>)>,
    /// What was done to it, in words (`not reached`, `batch finished: runs 3.0.0`, …).
    pub done: String,
}

/// An interrupted deployment (`recover`).
#[derive(Debug, Serialize)]
pub struct InterruptedRow {
    /// Id.
    pub id: String,
    /// Template.
    pub template: String,
    /// `deploy` or `rollback`.
    pub mode: &'static str,
    /// Version.
    pub version: String,
    /// User.
    pub user: String,
    /// Dry run.
    pub dry_run: bool,
    /// Start.
    pub started: String,
    /// Last recorded event.
    pub last_event: String,
    /// Batch it was in.
    pub batch: Option<usize>,
    /// Stage it was in.
    pub stage: String,
    /// Hosts still live then.
    pub live_hosts: usize,
    /// Hosts planned in batches (`null`: interrupted during prepare).
    pub planned_hosts: Option<usize>,
    /// Whether this run of `recover` marked it (else: marked earlier).
    pub newly_marked: bool,
    /// Every target host: those of started batches, those left out at prepare, and those never
    /// reached.
    pub hosts: Vec<HostProgressRow>,
    /// Planned hosts never reached whose names the journal does not hold (the template's host list
    /// no longer tells them apart, e.g. a deployment to some hosts only, or target expressions).
    pub unnamed_not_reached: usize,
    /// The command that rolls back exactly the hosts it touched (`null`: it touched none, or was a
    /// dry run or a rollback).
    pub rollback_command: Option<String>,
    /// The command that resumes it (`null` for rollbacks and dry runs).
    pub resume_command: Option<String>,
}

/// A connectivity change (`monitor`).
#[derive(Debug, Serialize)]
pub struct ChangeRow {
    /// Minion.
    pub minion: String,
    /// Up now.
    pub up: bool,
    /// Before (`null`: first check).
    pub was_up: Option<bool>,
    /// When.
    pub at: String,
}

/// One check of `monitor`.
#[derive(Debug, Serialize)]
pub struct MonitorCheck {
    /// Minions checked.
    pub checked: usize,
    /// Of which up.
    pub up: Vec<String>,
    /// Of which down.
    pub down: Vec<String>,
    /// Changes since the previous check (every minion on the first).
    pub changes: Vec<ChangeRow>,
    /// Templates whose target expression could not be resolved this round (their minions were
    /// not checked; the next round tries again).
    pub errors: Vec<String>,
    /// Template files that do not load (skipped).
    pub broken: Vec<crate::app::BrokenTemplate>,
}

/// One master of `install-module`.
#[derive(Debug, Serialize)]
pub struct ModuleWriteRow {
    /// The master's salt-api.
    pub endpoint: String,
    /// Where the master wrote the module (`null` when it did not).
    pub written: Option<String>,
    /// Why it did not (`null` when it did).
    pub error: Option<String>,
}

/// One minion of `install-module`.
#[derive(Debug, Serialize)]
pub struct ModuleMinionRow {
    /// Minion id.
    pub minion: String,
    /// Whether it answers this pushguide's protocol version.
    pub installed: bool,
    /// The protocol version it answered (`null` when it did not answer one).
    pub protocol: Option<u64>,
    /// `installed (protocol 1)`, or what went wrong.
    pub state: String,
}

/// `install-module`.
#[derive(Debug, Serialize)]
pub struct ModuleInstallResult {
    /// Where the module goes in file_roots.
    pub path: String,
    /// The protocol version of the module this pushguide ships.
    pub protocol: u64,
    /// The target expression (glob).
    pub target: String,
    /// One row per configured salt-api endpoint.
    pub endpoints: Vec<ModuleWriteRow>,
    /// One row per targeted minion.
    pub minions: Vec<ModuleMinionRow>,
    /// Every targeted minion installed (and at least one was targeted).
    pub all_installed: bool,
    /// The exit code: 0, or 8 when a minion did not install the module.
    pub exit_code: u8,
}
