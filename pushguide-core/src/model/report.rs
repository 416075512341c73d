//! What a deployment did: per host, per stage, per call; and plans, rendered for people.

use std::fmt;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::model::event::Event;
use crate::vocab::call::{MinionId, Outcome, SaltCall};
use crate::vocab::outcome::DeploymentOutcome;
use crate::vocab::stage::Stage;

/// One salt request made (or, in a dry run, recorded) by a stage hook.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    /// Batch index (`None` for prepare).
    pub batch: Option<usize>,
    /// Stage.
    pub stage: Stage,
    /// The call.
    pub call: SaltCall,
    /// Number of target hosts.
    pub targets: usize,
    /// Whether it was sent (`false`: recorded only, dry run or plan).
    pub sent: bool,
    /// Salt job id.
    pub jid: Option<String>,
    /// Elapsed milliseconds.
    pub millis: u64,
}

/// A line of a host's log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum LogEntry {
    /// The host's outcome of a call (index into [`Report::calls`]).
    Call {
        /// Stage.
        stage: Stage,
        /// Index into [`Report::calls`].
        call: usize,
        /// The host's outcome.
        outcome: Outcome,
    },
    /// A message from a hook or the engine.
    Message {
        /// Stage.
        stage: Stage,
        /// Text.
        text: String,
    },
}

impl LogEntry {
    /// How much of a call's returned value a log line keeps: up to this many characters of its JSON
    /// text; a longer value is cut there and followed by `… (N bytes)`, N its full length.
    pub const MAX_VALUE_CHARS: usize = 4096;

    /// The entry as a readable line, `[stage] fun args → outcome` ([`Report::host_log`]); `calls`
    /// are the report's calls the entry points into. A returned value longer than
    /// [`LogEntry::MAX_VALUE_CHARS`] characters is cut (see there).
    pub fn line(&self, calls: &[CallRecord]) -> String {
        let (stage, call, outcome) = match self {
            LogEntry::Message { stage, text } => return format!("[{stage}] {text}"),
            LogEntry::Call {
                stage,
                call,
                outcome,
            } => (stage, *call, outcome),
        };
        let Some(c) = calls.get(call) else {
            return format!("[{stage}] call #{call} (not in the report)");
        };
        let what = match outcome {
            Outcome::Ok { .. } if !c.sent => "recorded (dry run)".to_owned(),
            Outcome::Ok { value } => {
                let v = value.to_string();
                match v.char_indices().nth(LogEntry::MAX_VALUE_CHARS) {
                    Some((cut, _)) => format!("ok {}… ({} bytes)", &v[..cut], v.len()),
                    None => format!("ok {v}"),
                }
            }
            other => format!("FAILED {}", other.reason().unwrap_or_default()),
        };
        format!("[{stage}] {} → {what}", c.call)
    }

    /// The stage the entry belongs to.
    pub fn stage(&self) -> Stage {
        match self {
            LogEntry::Call { stage, .. } | LogEntry::Message { stage, .. } => *stage,
        }
    }
}

/// Where a host ended up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostStatus {
    /// Not reached (its batch never started).
    Pending,
    /// Its batch was under way when the deployment was cancelled or aborted; not rolled back.
    Interrupted,
    /// Every stage succeeded.
    Succeeded,
    /// A stage failed.
    Failed,
    /// Failed, then excluded by a decision; the deployment went on without it.
    Excluded,
    /// Rolled back to its rollback target.
    RolledBack,
    /// The rollback of this host failed.
    RollbackFailed,
    /// Should have been rolled back but has no recorded previous version.
    NoRollbackTarget,
}

/// Why a host failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostFailure {
    /// The stage.
    pub stage: Stage,
    /// Batch index.
    pub batch: Option<usize>,
    /// The salt call whose answer failed the host, or `None` when the hook failed it (a check on
    /// an answer, a stage error). Journals written before this was typed say `"-"`, read as `None`.
    #[serde(default, deserialize_with = "crate::vocab::call::fun_or_none")]
    pub fun: Option<String>,
    /// The reason.
    pub reason: String,
}

impl fmt::Display for HostFailure {
    /// `fun: reason`, or the reason alone when no salt call failed the host.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.fun {
            Some(fun) => write!(f, "{fun}: {}", self.reason),
            None => f.write_str(&self.reason),
        }
    }
}

/// ` (fun)` for a failure a salt call caused, nothing otherwise.
fn by(failure: &HostFailure) -> String {
    failure
        .fun
        .as_ref()
        .map(|fun| format!(" ({fun})"))
        .unwrap_or_default()
}

/// Everything about one host in one deployment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HostReport {
    /// The host.
    pub host: MinionId,
    /// Its batch (`None` if it was never in one).
    pub batch: Option<usize>,
    /// Final status.
    pub status: HostStatus,
    /// Why it failed during the release.
    pub failure: Option<HostFailure>,
    /// Why its rollback failed.
    pub rollback_failure: Option<HostFailure>,
    /// The version it was rolled back to.
    pub rolled_back_to: Option<String>,
    /// Its log, per stage.
    pub log: Vec<LogEntry>,
}

/// The result of a deployment.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Report {
    /// Deployment id.
    pub id: String,
    /// Template name.
    pub template: String,
    /// Version released.
    pub version: String,
    /// Acting user.
    pub user: String,
    /// Whether mutating calls were only recorded.
    pub dry_run: bool,
    /// The outcome.
    pub outcome: DeploymentOutcome,
    /// Why the deployment stopped early (budget, decision, cancel, prepare error).
    pub reason: Option<String>,
    /// Start time.
    pub started: SystemTime,
    /// Wall time.
    pub duration: Duration,
    /// Hosts per batch.
    pub batches: Vec<Vec<MinionId>>,
    /// Per host.
    pub hosts: Vec<HostReport>,
    /// Every call, in order.
    pub calls: Vec<CallRecord>,
    /// Every event, in order.
    pub events: Vec<Event>,
    /// Why the deployment could not be fully recorded in the history store (the journal or the
    /// final report), if it could not. Fleet state writes that fail stop the deployment instead (see
    /// [`crate::FleetState::record`] and the report's reason).
    pub history_error: Option<String>,
}

impl Report {
    /// The report of `host`.
    pub fn host(&self, host: &str) -> Option<&HostReport> {
        self.hosts.iter().find(|h| h.host.as_str() == host)
    }

    /// Hosts with the given status.
    pub fn hosts_with(&self, status: HostStatus) -> Vec<&MinionId> {
        self.hosts
            .iter()
            .filter(|h| h.status == status)
            .map(|h| &h.host)
            .collect()
    }

    /// Calls recorded but not sent because they were mutating and this was a dry run.
    pub fn unsent_calls(&self) -> impl Iterator<Item = &CallRecord> {
        self.calls.iter().filter(|c| !c.sent)
    }

    /// `host`'s log as readable lines: `[stage] fun args → outcome`.
    pub fn host_log(&self, host: &str) -> Vec<String> {
        let Some(h) = self.host(host) else {
            return Vec::new();
        };
        h.log.iter().map(|e| e.line(&self.calls)).collect()
    }
}

fn list_hosts(f: &mut fmt::Formatter<'_>, hosts: &[MinionId]) -> fmt::Result {
    const SHOWN: usize = 8;
    for (i, h) in hosts.iter().take(SHOWN).enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{h}")?;
    }
    if hosts.len() > SHOWN {
        write!(f, " … (+{} more)", hosts.len() - SHOWN)?;
    }
    Ok(())
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Deployment {} of {} {}{}: {:?} in {:.1?}",
            self.id,
            self.template,
            self.version,
            if self.dry_run { " (dry run)" } else { "" },
            self.outcome,
            self.duration
        )?;
        if let Some(r) = &self.reason {
            writeln!(f, "  reason: {r}")?;
        }
        if let Some(e) = &self.history_error {
            writeln!(f, "  NOT fully recorded in history: {e}")?;
        }
        for (i, b) in self.batches.iter().enumerate() {
            write!(f, "  batch {}: ", i + 1)?;
            list_hosts(f, b)?;
            writeln!(f)?;
        }
        let count = |s| self.hosts.iter().filter(|h| h.status == s).count();
        writeln!(
            f,
            "  hosts: {} succeeded, {} failed, {} excluded, {} rolled back, {} rollback failed, {} not reached",
            count(HostStatus::Succeeded),
            count(HostStatus::Failed),
            count(HostStatus::Excluded),
            count(HostStatus::RolledBack),
            count(HostStatus::RollbackFailed) + count(HostStatus::NoRollbackTarget),
            count(HostStatus::Pending)
        )?;
        for h in &self.hosts {
            if let Some(fl) = &h.failure {
                writeln!(f, "  ✗ {} at {}{}: {}", h.host, fl.stage, by(fl), fl.reason)?;
            }
            if let Some(fl) = &h.rollback_failure {
                writeln!(f, "  ✗ {} rollback{}: {}", h.host, by(fl), fl.reason)?;
            }
            if h.status == HostStatus::NoRollbackTarget {
                writeln!(
                    f,
                    "  ✗ {} not rolled back: no previous version recorded",
                    h.host
                )?;
            }
        }
        let sent = self.calls.iter().filter(|c| c.sent).count();
        let unsent = self.calls.len() - sent;
        // the steps of one job share its job id: count jobs, and steps where they differ
        let jobs = self
            .calls
            .iter()
            .filter(|c| c.sent)
            .map(|c| c.jid.as_deref())
            .collect::<std::collections::BTreeSet<_>>()
            .len()
            + self
                .calls
                .iter()
                .filter(|c| c.sent && c.jid.is_none())
                .count()
                .saturating_sub(1);
        if jobs < sent {
            write!(f, "  salt jobs: {jobs} sent, carrying {sent} steps")?;
        } else {
            write!(f, "  salt requests: {sent} sent")?;
        }
        if unsent > 0 {
            write!(f, ", {unsent} recorded without sending (dry run)")?;
        }
        writeln!(f)
    }
}

/// What a deployment will do, computed before anything changes.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Plan {
    /// Template name.
    pub template: String,
    /// Version.
    pub version: String,
    /// Whether it is a dry run.
    pub dry_run: bool,
    /// Hosts per batch.
    pub batches: Vec<Vec<MinionId>>,
    /// Hosts left out, with the reason (pre-flight, prepare).
    pub excluded: Vec<(MinionId, String)>,
    /// The calls each stage runs per batch (recorded on the first batch, assuming success).
    pub steps: Vec<(Stage, Vec<SaltCall>)>,
    /// Per host: current version and rollback target.
    pub rollback_targets: Vec<(MinionId, Option<String>, Option<String>)>,
    /// Allowed failed hosts.
    pub max_failed: usize,
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hosts: usize = self.batches.iter().map(Vec::len).sum();
        writeln!(
            f,
            "Plan: {} {}{} — {hosts} host{} in {} batch{}, at most {} may fail",
            self.template,
            self.version,
            if self.dry_run { " (dry run)" } else { "" },
            if hosts == 1 { "" } else { "s" },
            self.batches.len(),
            if self.batches.len() == 1 { "" } else { "es" },
            self.max_failed
        )?;
        for (i, b) in self.batches.iter().enumerate() {
            write!(f, "  batch {}: ", i + 1)?;
            list_hosts(f, b)?;
            writeln!(f)?;
        }
        for (h, why) in &self.excluded {
            writeln!(f, "  excluded {h}: {why}")?;
        }
        if self.steps.iter().any(|(s, _)| *s == Stage::Staging) {
            writeln!(
                f,
                "Staging ahead: once, on every host, before the first batch (nothing that serves is touched)"
            )?;
        }
        writeln!(f, "Steps per batch:")?;
        for (stage, calls) in &self.steps {
            if calls.is_empty() {
                writeln!(f, "  {stage}: (nothing)")?;
            }
            for c in calls {
                let tag = if c.is_mutating() { "change" } else { "read" };
                writeln!(f, "  {stage}: [{tag}] {c}")?;
            }
        }
        writeln!(f, "Rollback targets:")?;
        let mut groups: std::collections::BTreeMap<(String, String), Vec<MinionId>> =
            Default::default();
        for (h, cur, to) in &self.rollback_targets {
            groups
                .entry((
                    cur.clone().unwrap_or_else(|| "none".into()),
                    to.clone()
                        .unwrap_or_else(|| "none (no recorded version)".into()),
                ))
                .or_default()
                .push(h.clone());
        }
        for ((cur, to), hs) in groups {
            write!(f, "  running {cur}, back to {to}: ")?;
            list_hosts(f, &hs)?;
            writeln!(f)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_no_salt_call_caused_has_no_function_also_in_old_journals() {
        let old: HostFailure = serde_json::from_str(
            r#"{"stage":"deploy","batch":0,"fun":"-","reason":"health check returned 500"}"#,
        )
        .unwrap();
        assert_eq!(old.fun, None);
        assert_eq!(old.to_string(), "health check returned 500");
        let by_call: HostFailure = serde_json::from_str(
            r#"{"stage":"deploy","batch":0,"fun":"file.symlink","reason":"disk full"}"#,
        )
        .unwrap();
        assert_eq!(by_call.fun.as_deref(), Some("file.symlink"));
        assert_eq!(by_call.to_string(), "file.symlink: disk full");
        let json = serde_json::to_value(&old).unwrap();
        assert_eq!(json["fun"], serde_json::Value::Null);
        let back: HostFailure = serde_json::from_value(json).unwrap();
        assert_eq!(back, old);
        let kind: crate::EventKind = serde_json::from_str(
            r#"{"event":"host-failed","host":"web-01","stage":"deploy","fun":"-","reason":"x"}"#,
        )
        .unwrap();
        assert!(matches!(
            kind,
            crate::EventKind::HostFailed { fun: None, .. }
        ));
    }
}
