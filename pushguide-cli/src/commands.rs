//! The commands, as functions returning typed (serializable) results. Nothing here prints: progress
//! goes through [`Progress`], results are rendered by [`crate::output`].

use std::collections::{BTreeMap, BTreeSet};
use std::io::IsTerminal as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use pushguide_core::{
    Decision, DeploymentOutcome, EventKind, HostFailure, HostStatus, MinionId, Mode, Monitor, Plan,
    Report, Request, RollbackPolicy, Template, Threshold, Transport,
};
use pushguide_store::{SqliteStore, Window};
use serde::Serialize;

use crate::app::App;
use crate::cli::{DeployArgs, OnPause};
use crate::config::UtcOffset;
use crate::error::{exit, CliError};
use crate::output::Progress;

/// A time as RFC 3339 UTC (`2026-11-27T09:42:46Z`).
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The exit code of a deployment outcome. For a rollback request, `rolled-back` is success (0).
pub fn outcome_exit_code(outcome: &str, rollback: bool) -> u8 {
    match outcome {
        "succeeded" => exit::OK,
        "rolled-back" if rollback => exit::OK,
        "partially-applied" => exit::PARTIALLY_APPLIED,
        "failed" => exit::FAILED,
        "rolled-back" => exit::ROLLED_BACK,
        "rollback-failed" => exit::ROLLBACK_FAILED,
        "cancelled" => exit::CANCELLED,
        "interrupted" => exit::INTERRUPTED,
        _ => exit::INTERNAL,
    }
}

fn outcome_name(o: DeploymentOutcome) -> String {
    serde_json::to_value(o)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{o:?}"))
}

// ---------------------------------------------------------------------------------------------
// kinds, templates, show, versions, plan

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

/// `kinds`.
pub fn kinds() -> Vec<KindRow> {
    pushguide_core::registered_kinds()
        .into_iter()
        .map(|k| KindRow {
            kind: k.kind.to_owned(),
            summary: k.summary.to_owned(),
            platforms: k.platforms.iter().map(ToString::to_string).collect(),
            example: k.example.to_owned(),
        })
        .collect()
}

fn kind_of(t: &Template) -> String {
    serde_json::to_value(&t.project)
        .ok()
        .and_then(|v| v.get("kind").and_then(|k| k.as_str()).map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

fn targets_text(t: &Template) -> String {
    match &t.targets.expression {
        Some(e) => format!(
            "{} ({})",
            e,
            t.targets.tgt_type.map(|x| x.as_str()).unwrap_or("glob")
        ),
        None => t.targets.minions.join(","),
    }
}

/// One template (`templates`).
#[derive(Debug, Serialize)]
pub struct TemplateRow {
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Project type.
    pub kind: String,
    /// Minion list or target expression.
    pub targets: String,
    /// Whether the user may deploy it.
    pub may_deploy: bool,
    /// The file.
    pub file: String,
    /// Why the file does not load (`null` for a good template). A broken file is listed with its
    /// file name (without `.toml`) as name, empty kind, description and targets, and no deploy
    /// permission; the other templates are listed as usual.
    pub error: Option<String>,
}

/// `templates`: those the user may view, then the files that do not load.
pub fn templates(app: &App) -> Result<Vec<TemplateRow>, CliError> {
    let (good, broken) = app.scan_templates()?;
    let mut rows: Vec<TemplateRow> = good
        .into_iter()
        .filter(|t| t.template.acl.may_view(app.principal()))
        .map(|t| TemplateRow {
            name: t.template.name.clone(),
            description: t.template.description.clone(),
            kind: kind_of(&t.template),
            targets: targets_text(&t.template),
            may_deploy: t.template.acl.may_deploy(app.principal()),
            file: t.file.display().to_string(),
            error: None,
        })
        .collect();
    rows.extend(broken.into_iter().map(|b| {
        TemplateRow {
            name: Path::new(&b.file)
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            description: String::new(),
            kind: String::new(),
            targets: String::new(),
            may_deploy: false,
            file: b.file,
            error: Some(b.error),
        }
    }));
    Ok(rows)
}

/// A recorded deployment (`history`, `show`, `log`).
#[derive(Debug, Serialize)]
pub struct DeploymentRow {
    /// Id.
    pub id: String,
    /// Template.
    pub template: String,
    /// `deploy` or `rollback`.
    pub mode: &'static str,
    /// Version (`previous` or the target for rollbacks).
    pub version: String,
    /// Acting user.
    pub user: String,
    /// Dry run.
    pub dry_run: bool,
    /// Start, RFC 3339.
    pub started: String,
    /// End, RFC 3339 (`null` while running).
    pub ended: Option<String>,
    /// Duration in ms (`null` while running).
    pub duration_ms: Option<u64>,
    /// Outcome (`null` while running).
    pub outcome: Option<String>,
    /// Why it stopped early.
    pub reason: Option<String>,
}

impl From<pushguide_store::DeploymentRecord> for DeploymentRow {
    fn from(r: pushguide_store::DeploymentRecord) -> Self {
        DeploymentRow {
            id: r.id,
            template: r.template,
            mode: if r.rollback { "rollback" } else { "deploy" },
            version: r.version,
            user: r.principal,
            dry_run: r.dry_run,
            started: rfc3339(r.started),
            ended: r.ended.map(rfc3339),
            duration_ms: r.duration.map(millis),
            outcome: r.outcome,
            reason: r.reason,
        }
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

/// `show TEMPLATE`.
pub fn show(app: &mut App, name: &str) -> Result<ShowResult, CliError> {
    let t = app.template(name)?;
    app.check_view(&t)?;
    let store = app.store()?;
    let mut last = None;
    for id in store.deployments(name, 50)? {
        if let Some(r) = store.deployment(&id)? {
            if !r.dry_run {
                last = Some(r.into());
                break;
            }
        }
    }
    let mut hosts: BTreeMap<String, HostVersionRow> = t
        .template
        .targets
        .minions
        .iter()
        .map(|m| {
            (
                m.clone(),
                HostVersionRow {
                    host: m.clone(),
                    version: None,
                    state: HostState::NeverDeployed,
                    since: None,
                    previous: None,
                },
            )
        })
        .collect();
    for v in store.fleet(name)? {
        hosts.insert(
            v.host.clone(),
            HostVersionRow {
                state: match (&v.version, v.healthy) {
                    (None, _) => HostState::Unknown,
                    (Some(_), true) => HostState::Running,
                    (Some(_), false) => HostState::Failed,
                },
                host: v.host,
                version: v.version,
                since: Some(rfc3339(v.since)),
                previous: v.previous,
            },
        );
    }
    Ok(ShowResult {
        name: t.template.name.clone(),
        file: t.file.display().to_string(),
        kind: kind_of(&t.template),
        may_deploy: t.template.acl.may_deploy(app.principal()),
        config: serde_json::to_value(&t.template).map_err(|e| CliError::Internal(e.to_string()))?,
        toml: t.template.to_toml_string()?,
        last_deployment: last,
        hosts: hosts.into_values().collect(),
    })
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

/// `versions TEMPLATE`.
pub async fn versions(app: &App, name: &str) -> Result<VersionsResult, CliError> {
    let t = app.template(name)?;
    app.check_view(&t)?;
    let source = app.artifact_source()?.ok_or_else(|| CliError::NoCiSource {
        file: app.config.file.display().to_string(),
        command: "versions".into(),
    })?;
    Ok(VersionsResult {
        template: name.to_owned(),
        source: source.name().to_owned(),
        versions: source.versions(name).await?,
    })
}

/// Resolves `version` from the CI source (when configured) into an artifact; an unknown version is
/// [`CliError::UnknownVersion`].
async fn artifact(
    app: &App,
    template: &str,
    version: &str,
) -> Result<Option<pushguide_core::Artifact>, CliError> {
    let Some(source) = app.artifact_source()? else {
        return Ok(None);
    };
    match source.resolve(template, version).await {
        Ok(a) => Ok(Some(a)),
        Err(
            pushguide_sources::Error::VersionNotFound { .. }
            | pushguide_sources::Error::TemplateNotFound { .. },
        ) => {
            let known = source
                .versions(template)
                .await
                .map(|v| v.into_iter().take(5).collect())
                .unwrap_or_default();
            Err(CliError::UnknownVersion {
                template: template.to_owned(),
                version: version.to_owned(),
                source_name: source.name().to_owned(),
                known,
            })
        }
        Err(e) => Err(e.into()),
    }
}

fn parse_batch(s: &str) -> Result<Threshold, CliError> {
    let v = match s.trim().parse::<i64>() {
        Ok(n) => toml::Value::Integer(n),
        Err(_) => toml::Value::String(s.trim().to_owned()),
    };
    let t: Threshold = v.try_into().map_err(|e: toml::de::Error| {
        CliError::Usage(format!(
            "--batch {}: {} (give a count like 2 or a percentage like 25%)",
            pushguide_core::validate::quote(s),
            pushguide_core::validate::clean(e.message(), 300)
        ))
    })?;
    Ok(t)
}

/// `plan TEMPLATE VERSION`.
pub async fn plan(app: &mut App, name: &str, version: &str) -> Result<Plan, CliError> {
    let t = app.template(name)?;
    app.check_view(&t)?;
    let artifact = artifact(app, name, version).await?;
    let t = app.with_cmdb(t).await?;
    let engine = app.engine()?;
    let mut req = Request::new(Arc::new(t.template), version, app.principal().clone());
    if let Some(a) = artifact {
        req = req.artifact(a);
    }
    Ok(engine.plan(&req).await?)
}

// ---------------------------------------------------------------------------------------------
// deploy, rollback

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
    pub outcome: String,
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
    fn new(r: &Report, rollback: bool) -> Self {
        let outcome = outcome_name(r.outcome);
        DeploymentSummary {
            id: r.id.clone(),
            mode: if rollback { "rollback" } else { "deploy" },
            template: r.template.clone(),
            version: r.version.clone(),
            user: r.user.clone(),
            dry_run: r.dry_run,
            exit_code: outcome_exit_code(&outcome, rollback),
            outcome,
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

/// The signals that ask a deployment to stop: Ctrl-C (SIGINT), and on Unix SIGTERM and SIGHUP (the
/// terminal was closed). Their handlers are installed when this is made, so make it before anything
/// that must not be killed outright starts; from then on none of them ends the process by itself,
/// and one that arrives while nobody waits is kept for the next [`StopSignals::recv`].
#[derive(Debug)]
pub struct StopSignals {
    #[cfg(unix)]
    unix: Option<[tokio::signal::unix::Signal; 3]>,
}

impl Default for StopSignals {
    fn default() -> Self {
        Self::new()
    }
}

impl StopSignals {
    /// Installs the handlers.
    pub fn new() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let unix = match (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
                signal(SignalKind::hangup()),
            ) {
                (Ok(int), Ok(term), Ok(hup)) => Some([int, term, hup]),
                (int, term, hup) => {
                    for e in [int.err(), term.err(), hup.err()].into_iter().flatten() {
                        tracing::warn!(error = %e, "cannot install a signal handler");
                    }
                    None
                }
            };
            StopSignals { unix }
        }
        #[cfg(not(unix))]
        {
            StopSignals {}
        }
    }

    /// Resolves at the next stop signal.
    pub async fn recv(&mut self) {
        #[cfg(unix)]
        {
            if let Some([int, term, hup]) = &mut self.unix {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                    _ = hup.recv() => {}
                }
                return;
            }
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn run(
    app: &mut App,
    req: Request,
    id_file: Option<&Path>,
    on_pause: Option<OnPause>,
    progress: &mut Progress,
) -> Result<DeploymentSummary, CliError> {
    let rollback = matches!(req.mode, Mode::Rollback { .. });
    // Without an answer given (or a terminal to ask on), a pause rolls back when the template has a
    // rollback policy, else aborts.
    let fallback = if req.template.rollback == RollbackPolicy::None {
        Decision::Abort
    } else {
        Decision::Rollback
    };
    let on_pause = match on_pause {
        Some(OnPause::Ask) => None,
        Some(OnPause::Exclude) => Some(Decision::Exclude),
        Some(OnPause::Rollback) => Some(Decision::Rollback),
        Some(OnPause::Abort) => Some(Decision::Abort),
        None if std::io::stdin().is_terminal() => None,
        None => Some(fallback),
    };
    let mut answers = None;
    let engine = app.engine()?;
    // from here on Ctrl-C, SIGTERM and SIGHUP cancel the deployment instead of killing the process
    let mut signals = StopSignals::new();
    let handle = engine.start(req).await?;
    if let Some(path) = id_file {
        // the deployment runs already: a failed write must not stop it (the parent of a detached
        // deployment then reports the child's end instead of its start)
        if let Err(e) = std::fs::write(path, handle.id()) {
            progress.note(&format!("cannot write the id file {}: {e}", path.display()));
        }
    }
    progress.started(handle.id());
    let mut events = handle.events();
    let stop = signals.recv();
    tokio::pin!(stop);
    let mut cancelled = false;
    loop {
        tokio::select! {
            e = events.next() => match e {
                Some(e) => {
                    progress.event(&e);
                    if let EventKind::DecisionNeeded { batch, stage, failed } = &e.kind {
                        let decision = match on_pause {
                            Some(d) => {
                                progress.note(&format!("answering the pause with {d:?} (--on-pause)"));
                                d
                            }
                            None => {
                                let question = format!(
                                    "{} failed {stage} in batch {} ({}), over the failure \
                                     budget. retry, exclude, rollback or abort? ",
                                    crate::output::count(
                                        failed.len() as u64,
                                        "host",
                                        "hosts"
                                    ),
                                    batch + 1,
                                    failed.iter().map(MinionId::as_str).collect::<Vec<_>>().join(", ")
                                );
                                let answers = answers.get_or_insert_with(stdin_lines);
                                tokio::select! {
                                    d = ask(progress, answers, &question) => d.unwrap_or_else(|| {
                                        progress.prompt(&format!("\nno answer on stdin: {fallback:?}\n"));
                                        fallback
                                    }),
                                    _ = &mut stop, if !cancelled => {
                                        cancelled = true;
                                        progress.note("cancel requested: applying the rollback policy");
                                        handle.cancel();
                                        continue;
                                    }
                                }
                            }
                        };
                        if let Err(err) = handle.decide(decision) {
                            progress.note(&format!("cannot answer the pause: {err}"));
                        }
                    }
                }
                None => break,
            },
            _ = &mut stop, if !cancelled => {
                cancelled = true;
                progress.note("cancel requested: finishing the running call, then applying the rollback policy");
                handle.cancel();
            }
        }
    }
    progress.finish();
    let report = handle.wait().await?;
    Ok(DeploymentSummary::new(&report, rollback))
}

/// Lines of stdin, read on a thread of their own (a blocked read never holds the process up).
fn stdin_lines() -> tokio::sync::mpsc::UnboundedReceiver<String> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let spawned = std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            for line in std::io::stdin().lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot read stdin");
    }
    rx
}

/// Asks `question` until a line of `answers` names a decision (a word or its unique start:
/// `ret`, `e`, `ro`, `a`); `None` at the end of input.
async fn ask(
    progress: &mut Progress,
    answers: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
    question: &str,
) -> Option<Decision> {
    loop {
        progress.prompt(question);
        let line = answers.recv().await?;
        let word = line.trim().to_ascii_lowercase();
        let choices = [
            ("retry", Decision::Retry),
            ("exclude", Decision::Exclude),
            ("rollback", Decision::Rollback),
            ("abort", Decision::Abort),
        ];
        let matching: Vec<Decision> = choices
            .iter()
            .filter(|(name, _)| !word.is_empty() && name.starts_with(word.as_str()))
            .map(|(_, d)| *d)
            .collect();
        match matching.as_slice() {
            [d] => return Some(*d),
            _ => progress.prompt(&format!(
                "`{}` is not one of retry, exclude, rollback, abort\n",
                line.trim()
            )),
        }
    }
}

/// `deploy TEMPLATE VERSION` (not detached; see [`detach`]).
pub async fn deploy(
    app: &mut App,
    args: &DeployArgs,
    progress: &mut Progress,
) -> Result<DeploymentSummary, CliError> {
    let t = app.template(&args.template)?;
    app.check_deploy(&t)?;
    if !args.dry_run {
        app.check_not_busy(&args.template)?;
    }
    pushguide_core::validate::version("version", &args.version)?;
    let hosts = match &args.hosts {
        Some(h) => Some(check_hosts(app, &t.template, h).await?),
        None => None,
    };
    let artifact = artifact(app, &args.template, &args.version).await?;
    let mut t = app.with_cmdb(t).await?;
    if let Some(b) = &args.batch {
        t.template.rollout.batch = parse_batch(b)?;
    }
    let mut req = Request::new(
        Arc::new(t.template),
        args.version.clone(),
        app.principal().clone(),
    )
    .dry_run(args.dry_run);
    if let Some(a) = artifact {
        req = req.artifact(a);
    }
    if let Some(h) = hosts {
        req = req.hosts(h);
    }
    run(app, req, args.id_file.as_deref(), args.on_pause, progress).await
}

/// Checks `--hosts` against the template's targets before the deployment starts, so that a host
/// that is not a target is a usage error: nothing is sent, nothing recorded. A minion list (or a
/// `list` expression) is checked without salt; a glob refuses a host it cannot match without salt;
/// any other host of an expression template is looked up with the read-only resolve of the target
/// expression, before any other call. Returns the hosts, trimmed.
async fn check_hosts(app: &App, t: &Template, given: &[String]) -> Result<Vec<String>, CliError> {
    let hosts: Vec<String> = given.iter().map(|h| h.trim().to_owned()).collect();
    if hosts.is_empty() {
        return Err(CliError::Usage(
            "--hosts: give at least one host of the template".into(),
        ));
    }
    for h in &hosts {
        if let Err(e) = pushguide_core::validate::minion_id("--hosts", h) {
            return Err(CliError::Usage(e.to_string()));
        }
    }
    let not_target = |h: &str, targets: &str| {
        CliError::Usage(format!(
            "--hosts {h}: not a target of template `{}` (targets: {targets})",
            t.name
        ))
    };
    let targets: Vec<String> = match t.targets.expression() {
        None => t.targets.minions.clone(),
        Some(expr) if expr.tgt_type == pushguide_core::TargetType::List => {
            pushguide_core::resolve_list(&expr)
                .map_err(|e| CliError::Usage(format!("template `{}`: {e}", t.name)))?
                .iter()
                .map(ToString::to_string)
                .collect()
        }
        Some(expr) => {
            if expr.tgt_type == pushguide_core::TargetType::Glob {
                if let Some(h) = hosts.iter().find(|h| !glob_match(&expr.expression, h)) {
                    return Err(not_target(h, &targets_text(t)));
                }
            }
            let salt = app.salt()?;
            let found = salt.resolve(&expr).await.map_err(|source| {
                CliError::Core(pushguide_core::Error::Transport {
                    during: "resolving the template's targets for --hosts",
                    source,
                })
            })?;
            found.iter().map(ToString::to_string).collect()
        }
    };
    if let Some(h) = hosts.iter().find(|h| !targets.contains(h)) {
        let mut shown: Vec<&str> = targets.iter().map(String::as_str).take(20).collect();
        if targets.len() > shown.len() {
            shown.push("…");
        }
        let shown = if shown.is_empty() {
            "none".to_owned()
        } else {
            shown.join(", ")
        };
        return Err(not_target(h, &shown));
    }
    Ok(hosts)
}

/// Whether salt's glob (`fnmatch`: `*`, `?`, `[abc]`, `[a-z]`, `[!abc]`) `pattern` matches `text`.
fn glob_match(pattern: &str, text: &str) -> bool {
    /// A `[…]` class: its length in the pattern, its ranges (`a-z`; a lone `c` is `c-c`) and
    /// whether it is negated (`[!…]`).
    struct Class {
        len: usize,
        ranges: Vec<(char, char)>,
        negated: bool,
    }
    fn class(p: &[char]) -> Option<Class> {
        // p[0] == '['; `None` when the class is not closed (then `[` is itself)
        let mut i = 1;
        let negated = p.get(i) == Some(&'!');
        if negated {
            i += 1;
        }
        let mut ranges = Vec::new();
        let first = i;
        while i < p.len() {
            if p[i] == ']' && i > first {
                return Some(Class {
                    len: i + 1,
                    ranges,
                    negated,
                });
            }
            if i + 2 < p.len() && p[i + 1] == '-' && p[i + 2] != ']' {
                ranges.push((p[i], p[i + 2]));
                i += 3;
            } else {
                ranges.push((p[i], p[i]));
                i += 1;
            }
        }
        None
    }
    /// Whether `p[pi..]` matches `t[ti..]`. `tried` holds the states already explored: a state seen
    /// twice failed the first time (a success ends the search), so the work is bounded by
    /// pattern length × text length however many `*` the pattern has.
    fn go(
        p: &[char],
        t: &[char],
        pi: usize,
        ti: usize,
        tried: &mut std::collections::HashSet<(usize, usize)>,
    ) -> bool {
        if !tried.insert((pi, ti)) {
            return false;
        }
        match p.get(pi) {
            None => ti == t.len(),
            Some('*') => (ti..=t.len()).any(|k| go(p, t, pi + 1, k, tried)),
            Some('?') => ti < t.len() && go(p, t, pi + 1, ti + 1, tried),
            Some('[') => match class(&p[pi..]) {
                Some(class) => match t.get(ti) {
                    Some(c) => {
                        let inside = class.ranges.iter().any(|(lo, hi)| lo <= c && c <= hi);
                        inside != class.negated && go(p, t, pi + class.len, ti + 1, tried)
                    }
                    None => false,
                },
                None => t.get(ti) == Some(&'[') && go(p, t, pi + 1, ti + 1, tried),
            },
            Some(c) => t.get(ti) == Some(c) && go(p, t, pi + 1, ti + 1, tried),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    go(&p, &t, 0, 0, &mut std::collections::HashSet::new())
}

/// `deploy --detach`: checks what can be checked here, then re-executes `pushguide deploy …` in a
/// child process (own process group, output to a log file) and returns once the child has started the
/// deployment (its id) — or fails with the child's exit code and output when it could not.
pub async fn detach(
    app: &mut App,
    args: &DeployArgs,
    json: bool,
) -> Result<Result<Detached, (u8, String)>, CliError> {
    let t = app.template(&args.template)?;
    app.check_deploy(&t)?;
    if !args.dry_run {
        app.check_not_busy(&args.template)?;
    }
    let dir = &app.config.log_dir;
    std::fs::create_dir_all(dir).map_err(|e| CliError::Config {
        file: app.config.file.display().to_string(),
        key: "log_dir".into(),
        value: dir.display().to_string(),
        reason: format!("cannot create it: {e}"),
    })?;
    let stamp = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let base = format!("{}-{stamp}-{}", args.template, std::process::id());
    let log_path = dir.join(format!("{base}.log"));
    let id_path = dir.join(format!("{base}.id"));
    let log = std::fs::File::create(&log_path)
        .map_err(|e| CliError::Internal(format!("cannot create {}: {e}", log_path.display())))?;
    let log2 = log
        .try_clone()
        .map_err(|e| CliError::Internal(e.to_string()))?;
    let exe = std::env::current_exe().map_err(|e| CliError::Internal(e.to_string()))?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("--config").arg(&app.config.file);
    if json {
        cmd.arg("--json");
    }
    cmd.arg("deploy")
        .arg(&args.template)
        .arg(&args.version)
        .arg("--id-file")
        .arg(&id_path);
    if args.dry_run {
        cmd.arg("--dry-run");
    }
    if let Some(h) = &args.hosts {
        cmd.arg("--hosts").arg(h.join(","));
    }
    if let Some(b) = &args.batch {
        cmd.arg("--batch").arg(b);
    }
    match args.on_pause {
        // nobody to ask in the background: the default answer
        Some(OnPause::Ask) | None => {}
        Some(p) => {
            cmd.arg("--on-pause")
                .arg(format!("{p:?}").to_ascii_lowercase());
        }
    }
    cmd.stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(log2);
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| CliError::Internal(format!("cannot start the detached deployment: {e}")))?;
    let pid = child.id();
    loop {
        if let Ok(id) = std::fs::read_to_string(&id_path) {
            if !id.is_empty() {
                let _ = std::fs::remove_file(&id_path);
                return Ok(Ok(Detached {
                    id,
                    pid,
                    log: log_path.display().to_string(),
                }));
            }
        }
        if let Some(status) = child
            .try_wait()
            .map_err(|e| CliError::Internal(e.to_string()))?
        {
            // Ended before starting a deployment (or too fast to notice): hand its output over.
            let out = std::fs::read_to_string(&log_path).unwrap_or_default();
            if let Ok(id) = std::fs::read_to_string(&id_path) {
                let _ = std::fs::remove_file(&id_path);
                if !id.is_empty() {
                    return Ok(Ok(Detached {
                        id,
                        pid,
                        log: log_path.display().to_string(),
                    }));
                }
            }
            let code = status
                .code()
                .and_then(|c| u8::try_from(c).ok())
                .unwrap_or(exit::INTERNAL);
            return Ok(Err((code, out)));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `rollback TEMPLATE [--to VERSION | --deployment ID]`.
///
/// With `--deployment ID`: only the hosts that deployment touched (those whose batch started) are
/// rolled back, each to the version it ran before that deployment (see [`undo_request`]). Refused
/// with a usage error when the deployment is still running, belongs to another template, is a dry
/// run or a rollback itself, or touched no host.
pub async fn rollback(
    app: &mut App,
    name: &str,
    to: Option<String>,
    deployment: Option<&str>,
    dry_run: bool,
    progress: &mut Progress,
) -> Result<DeploymentSummary, CliError> {
    let t = app.template(name)?;
    app.check_deploy(&t)?;
    if to.is_some() && deployment.is_some() {
        return Err(CliError::Usage(
            "--to and --deployment exclude each other: --deployment rolls each host back to the \
             version it ran before that deployment"
                .into(),
        ));
    }
    let undo = match deployment {
        Some(id) => Some(undo_target(app, name, id)?),
        None => None,
    };
    if !dry_run {
        app.check_not_busy(name)?;
    }
    if let Some(v) = &to {
        pushguide_core::validate::version("--to", v)?;
    }
    let t = app.with_cmdb(t).await?;
    let template = Arc::new(t.template);
    let req = match undo {
        Some(u) => undo_request(template, &u.version, app.principal().clone(), u.touched),
        None => Request::rollback(template, to, app.principal().clone()),
    }
    .dry_run(dry_run);
    run(app, req, None, None, progress).await
}

/// What `rollback --deployment ID` undoes, read from the store.
#[derive(Debug)]
struct UndoTarget {
    /// The version that deployment released.
    version: String,
    /// The hosts whose batch started.
    touched: Vec<String>,
}

/// Reads deployment `id` of template `name` and the hosts it touched; refuses (usage error) a
/// deployment that is still running, of another template, a dry run or a rollback, or one that
/// touched no host.
fn undo_target(app: &mut App, name: &str, id: &str) -> Result<UndoTarget, CliError> {
    let store = app.store()?;
    // A deployment whose process died is marked interrupted first (idempotent).
    store.recover()?;
    let rec = store
        .deployment(id)?
        .ok_or_else(|| CliError::UnknownDeployment {
            id: id.to_owned(),
            store: store.path().display().to_string(),
        })?;
    if rec.template != name {
        return Err(CliError::Usage(format!(
            "--deployment {id}: it is a deployment of template `{}`, not of `{name}`; run \
             `pushguide rollback {} --deployment {id}`",
            rec.template, rec.template
        )));
    }
    if rec.ended.is_none() {
        return Err(CliError::Usage(format!(
            "--deployment {id}: it is still running (its process is alive; a process that died \
             is known as such once its liveness expires, after the store's lease TTL, 30 s: see \
             `pushguide recover`); cancel it or wait for it to end (`pushguide watch {id}`)"
        )));
    }
    if rec.rollback {
        return Err(CliError::Usage(format!(
            "--deployment {id}: it is itself a rollback; roll back to a version with \
             `pushguide rollback {name} --to VERSION`"
        )));
    }
    if rec.dry_run {
        return Err(CliError::Usage(format!(
            "--deployment {id}: it was a dry run and changed no host"
        )));
    }
    // only the newest deployment of the template can be undone host by host: a later one changed
    // what the hosts run since, and undoing the older one would undo the later one's work instead
    for later in store.deployments(name, 1000)? {
        if later == id {
            break;
        }
        if let Some(d) = store.deployment(&later)? {
            if !d.dry_run {
                return Err(CliError::Usage(format!(
                    "--deployment {id}: deployment {later} of `{name}` came after it and changed \
                     the hosts since; only the newest deployment can be undone this way: roll back \
                     with `pushguide rollback {name}` or `--to VERSION`"
                )));
            }
        }
    }
    let touched = store.touched_hosts(id)?;
    if touched.is_empty() {
        return Err(CliError::Usage(format!(
            "--deployment {id}: it touched no host (it ended before its first batch); nothing to \
             roll back"
        )));
    }
    Ok(UndoTarget {
        version: rec.version,
        touched,
    })
}

/// The engine request of `rollback --deployment`: roll back the effects of the release of
/// `version` on `touched` only — each host back to the version it ran before that release (its
/// recorded current version when the release never recorded it there, else its previous good
/// version); a host with nothing recorded is skipped, not a failure (see [`Request::undo`]).
pub fn undo_request(
    template: Arc<Template>,
    version: &str,
    principal: pushguide_core::Principal,
    touched: Vec<String>,
) -> Request {
    Request::rollback(template, None, principal)
        .hosts(touched)
        .undo(version)
}

// ---------------------------------------------------------------------------------------------
// history, log, watch, stats, recover, monitor

/// `history [TEMPLATE]`: newest first.
///
/// Without a template: the deployments of every template the user may view, and the template files
/// that do not load (skipped: whether the user may view them is unknown).
pub fn history(
    app: &mut App,
    template: Option<&str>,
    limit: usize,
) -> Result<(Vec<DeploymentRow>, Vec<crate::app::BrokenTemplate>), CliError> {
    let (names, broken): (Vec<String>, _) = match template {
        Some(n) => {
            let t = app.template(n)?;
            app.check_view(&t)?;
            (vec![t.template.name], Vec::new())
        }
        None => {
            let (good, broken) = app.scan_templates()?;
            let names = good
                .into_iter()
                .filter(|t| t.template.acl.may_view(app.principal()))
                .map(|t| t.template.name)
                .collect();
            (names, broken)
        }
    };
    let store = app.store()?;
    let mut rows = Vec::new();
    for n in names {
        for id in store.deployments(&n, limit)? {
            if let Some(r) = store.deployment(&id)? {
                rows.push((r.started, DeploymentRow::from(r)));
            }
        }
    }
    rows.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| b.1.id.cmp(&a.1.id)));
    Ok((rows.into_iter().map(|(_, r)| r).collect(), broken))
}

/// One salt request of a deployment (`log`).
#[derive(Debug, Serialize)]
pub struct CallLine {
    /// Batch (`null`: prepare).
    pub batch: Option<usize>,
    /// Stage.
    pub stage: String,
    /// Salt function.
    pub fun: String,
    /// Job id.
    pub jid: Option<String>,
    /// Hosts ok.
    pub ok: u64,
    /// Hosts failed.
    pub failed: u64,
    /// Elapsed ms.
    pub millis: u64,
}

/// One stage of one host (`log`).
#[derive(Debug, Serialize)]
pub struct StageLine {
    /// Batch.
    pub batch: Option<usize>,
    /// Stage.
    pub stage: String,
    /// `ok` or `failed`.
    pub status: String,
    /// ms.
    pub duration_ms: Option<u64>,
    /// Failing salt function.
    pub fun: Option<String>,
    /// Failure reason, or the version rolled back to.
    pub detail: Option<String>,
}

/// One host of a deployment (`log`).
#[derive(Debug, Serialize)]
pub struct HostLog {
    /// Host.
    pub host: String,
    /// Status from the journal (`succeeded`, `failed`, `rolled-back`, …), final once the
    /// deployment has an outcome.
    pub status: Option<String>,
    /// Per stage.
    pub stages: Vec<StageLine>,
    /// The report's log lines.
    pub log: Vec<String>,
}

/// `log ID` and the final result of `watch ID`.
#[derive(Debug, Serialize)]
pub struct LogResult {
    /// The deployment.
    pub deployment: DeploymentRow,
    /// Exit code of its outcome (`null` while running).
    pub exit_code: Option<u8>,
    /// Its salt requests.
    pub calls: Vec<CallLine>,
    /// Per host.
    pub hosts: Vec<HostLog>,
}

fn deployment_log(store: &SqliteStore, id: &str) -> Result<LogResult, CliError> {
    let rec = store
        .deployment(id)?
        .ok_or_else(|| CliError::UnknownDeployment {
            id: id.to_owned(),
            store: store.path().display().to_string(),
        })?;
    let rollback = rec.rollback;
    let calls = store
        .calls(id)?
        .into_iter()
        .map(|c| CallLine {
            batch: c.batch,
            stage: c.stage,
            fun: c.fun,
            jid: c.jid,
            ok: c.ok,
            failed: c.failed,
            millis: c.millis,
        })
        .collect();
    let mut by_host: BTreeMap<String, Vec<StageLine>> = BTreeMap::new();
    for r in store.host_stage_results(id)? {
        by_host.entry(r.host).or_default().push(StageLine {
            batch: r.batch,
            stage: r.stage,
            status: r.status,
            duration_ms: r.duration.map(millis),
            fun: r.fun,
            detail: r.detail,
        });
    }
    let mut hosts = Vec::new();
    for (host, stages) in by_host {
        hosts.push(HostLog {
            status: store.host_status(id, &host)?,
            log: store.host_log(id, &host)?,
            host,
            stages,
        });
    }
    let exit_code = rec
        .outcome
        .as_deref()
        .map(|o| outcome_exit_code(o, rollback));
    Ok(LogResult {
        deployment: rec.into(),
        exit_code,
        calls,
        hosts,
    })
}

/// `log ID`.
pub fn log(app: &mut App, id: &str) -> Result<LogResult, CliError> {
    let store = app.store()?;
    let r = deployment_log(&store, id)?;
    let t = app.template(&r.deployment.template)?;
    app.check_view(&t)?;
    Ok(r)
}

/// `watch ID`: follows the store's journal until the deployment has an end.
pub async fn watch(
    app: &mut App,
    id: &str,
    interval: Duration,
    progress: &mut Progress,
) -> Result<LogResult, CliError> {
    let store = app.store()?;
    let begun = std::time::Instant::now();
    let mut seen_calls = 0;
    let mut seen_failures = BTreeSet::new();
    let mut announced = false;
    loop {
        let Some(rec) = store.deployment(id)? else {
            if begun.elapsed() > Duration::from_secs(10) {
                return Err(CliError::UnknownDeployment {
                    id: id.to_owned(),
                    store: store.path().display().to_string(),
                });
            }
            tokio::time::sleep(interval).await;
            continue;
        };
        if !announced {
            let t = app.template(&rec.template)?;
            app.check_view(&t)?;
            progress.watching(id, &rec.template, &rec.version);
            announced = true;
        }
        let calls = store.calls(id)?;
        for c in calls.iter().skip(seen_calls) {
            progress.call_row(c);
        }
        seen_calls = calls.len();
        for r in store.host_stage_results(id)? {
            if r.status == "failed" && seen_failures.insert((r.host.clone(), r.stage.clone())) {
                progress.host_failed_row(&r);
            }
        }
        if rec.outcome.is_some() {
            // The outcome is recorded in the same transaction as the report: host statuses and
            // logs are there already.
            progress.finish();
            return deployment_log(&store, id);
        }
        tokio::time::sleep(interval).await;
    }
}

/// Deployments per hour/weekday.
#[derive(Debug, Serialize)]
pub struct RateRow {
    /// Hour (0–23) or weekday (0 = Monday), at the offset `tz`.
    pub at: usize,
    /// Deployments.
    pub count: u64,
    /// Of which succeeded.
    pub succeeded: u64,
}

/// Count, success rate and durations of one series (`stats`: rollbacks).
#[derive(Debug, Serialize)]
pub struct SeriesRow {
    /// Counted (dry runs excluded).
    pub count: u64,
    /// Of which succeeded (for rollbacks: every host rolled back).
    pub succeeded: u64,
    /// succeeded / count.
    pub success_rate: Option<f64>,
    /// Mean duration ms.
    pub mean_ms: Option<u64>,
    /// Median duration ms.
    pub p50_ms: Option<u64>,
    /// 95th percentile ms.
    pub p95_ms: Option<u64>,
}

impl From<&pushguide_store::Summary> for SeriesRow {
    fn from(s: &pushguide_store::Summary) -> Self {
        SeriesRow {
            count: s.count,
            succeeded: s.succeeded,
            success_rate: s.success_rate,
            mean_ms: s.mean.map(millis),
            p50_ms: s.p50.map(millis),
            p95_ms: s.p95.map(millis),
        }
    }
}

/// `stats`.
#[derive(Debug, Serialize)]
pub struct StatsResult {
    /// Template (`null`: every template the user may view).
    pub template: Option<String>,
    /// The templates counted (those the user may view).
    pub templates: Vec<String>,
    /// Window start.
    pub from: String,
    /// Window end.
    pub to: String,
    /// The offset from UTC of `by_hour` and `by_weekday` (`UTC`, `+02:00`).
    pub tz: String,
    /// Releases counted (dry runs and rollbacks excluded).
    pub count: u64,
    /// Of which succeeded.
    pub succeeded: u64,
    /// succeeded / count.
    pub success_rate: Option<f64>,
    /// Mean duration ms.
    pub mean_ms: Option<u64>,
    /// Median duration ms.
    pub p50_ms: Option<u64>,
    /// 95th percentile ms.
    pub p95_ms: Option<u64>,
    /// Rollback requests (`pushguide rollback`): their own count, success rate and durations.
    pub rollbacks: SeriesRow,
    /// Releases per hour of the start at `tz` (only hours with releases).
    pub by_hour: Vec<RateRow>,
    /// Releases per weekday at `tz` (only days with releases).
    pub by_weekday: Vec<RateRow>,
    /// Hosts by failed stages, most first.
    pub failing_hosts: Vec<(String, u64)>,
    /// Stages by failures, most first.
    pub failing_stages: Vec<(String, u64)>,
    /// Incidents in the window.
    pub incidents: u64,
    /// Of which recovered.
    pub recovered: u64,
    /// Mean time to recover, ms.
    pub mttr_ms: Option<u64>,
}

/// `stats [TEMPLATE] [--since DAYS] [--tz OFFSET]`: over one template, or every template the user
/// may view.
pub fn stats(
    app: &mut App,
    template: Option<&str>,
    days: u64,
    tz: Option<&str>,
) -> Result<StatsResult, CliError> {
    let tz = match tz {
        Some(text) => UtcOffset::parse(text).map_err(|e| CliError::Usage(format!("--tz: {e}")))?,
        None => app.config.stats_tz,
    };
    let visible: Vec<String> = match template {
        Some(n) => {
            let t = app.template(n)?;
            app.check_view(&t)?;
            vec![t.template.name]
        }
        None => app
            .templates()?
            .into_iter()
            .filter(|t| t.template.acl.may_view(app.principal()))
            .map(|t| t.template.name)
            .collect(),
    };
    let to = SystemTime::now() + Duration::from_secs(1);
    let from = to
        .checked_sub(Duration::from_secs(days.saturating_mul(86_400)))
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let w = Window::new(from, to)
        .templates(visible.iter().cloned())
        .utc_offset(tz.seconds);
    let s = app.store()?.stats(&w)?;
    let rates = |v: &[pushguide_store::Rate]| -> Vec<RateRow> {
        v.iter()
            .enumerate()
            .filter(|(_, r)| r.count > 0)
            .map(|(at, r)| RateRow {
                at,
                count: r.count,
                succeeded: r.succeeded,
            })
            .collect()
    };
    Ok(StatsResult {
        template: template.map(str::to_owned),
        templates: visible,
        from: rfc3339(from),
        to: rfc3339(to),
        tz: tz.to_string(),
        count: s.summary.count,
        succeeded: s.summary.succeeded,
        success_rate: s.summary.success_rate,
        mean_ms: s.summary.mean.map(millis),
        p50_ms: s.summary.p50.map(millis),
        p95_ms: s.summary.p95.map(millis),
        rollbacks: SeriesRow::from(&s.rollbacks),
        by_hour: rates(&s.by_hour),
        by_weekday: rates(&s.by_weekday),
        failing_hosts: s.hosts,
        failing_stages: s
            .stages
            .into_iter()
            .map(|(st, n)| (st.as_str().to_owned(), n))
            .collect(),
        incidents: s.recovery.incidents,
        recovered: s.recovery.recovered,
        mttr_ms: s.recovery.mean.map(millis),
    })
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

/// What was done to a host, in words, from the journal.
fn host_done(h: &pushguide_store::HostProgress, version: &str) -> String {
    use pushguide_core::Stage;
    let calls_of = |stage: Stage| -> &[String] {
        h.stage_calls
            .iter()
            .find(|(s, _)| *s == stage)
            .map(|(_, c)| c.as_slice())
            .unwrap_or_default()
    };
    let done: Vec<String> = h
        .stages_done
        .iter()
        .map(|s| match calls_of(*s) {
            [] => format!("{s} done"),
            calls => format!("{s} done ({})", calls.join(", ")),
        })
        .collect();
    let done = if done.is_empty() {
        String::new()
    } else {
        format!("{}; ", done.join("; "))
    };
    match h.status.as_str() {
        "succeeded" if h.batch_finished => format!("batch finished: runs {version}"),
        "succeeded" => format!("every stage done: runs {version} (its batch did not finish)"),
        "failed" if h.batch.is_none() => format!(
            "left out at {}: {}",
            h.stage,
            h.detail.as_deref().unwrap_or("failed")
        ),
        "failed" => format!(
            "{done}failed at {}{}: {}",
            h.stage,
            h.fun
                .as_deref()
                .map(|f| format!(" ({f})"))
                .unwrap_or_default(),
            h.detail.as_deref().unwrap_or("no reason recorded")
        ),
        "rolled-back" => format!(
            "rolled back to {}",
            h.detail.as_deref().unwrap_or("its previous version")
        ),
        "rollback-failed" => format!(
            "rollback failed: {}",
            h.detail.as_deref().unwrap_or("no reason recorded")
        ),
        "interrupted" if h.stages_done.is_empty() && h.calls_done.is_empty() => {
            "batch started, nothing changed yet (no call returned)".to_owned()
        }
        "interrupted" => {
            let at = if h.calls_done.is_empty() {
                format!("{} interrupted before any call returned", h.stage)
            } else {
                format!("{} interrupted after {}", h.stage, h.calls_done.join(", "))
            };
            let not_run: Vec<&str> = Stage::BATCH
                .iter()
                .filter(|s| **s > h.stage)
                .map(|s| s.as_str())
                .collect();
            let rest = if not_run.is_empty() {
                String::new()
            } else {
                format!("; {} not run", not_run.join(", "))
            };
            format!("{done}{at}{rest}")
        }
        other => format!("{done}{other} at {}", h.stage),
    }
}

/// `recover`: marks deployments of dead processes interrupted, then lists every interrupted
/// deployment of the templates the user may view, each target host with what was done to it.
pub fn recover(app: &mut App) -> Result<Vec<InterruptedRow>, CliError> {
    let store = app.store()?;
    let marked: BTreeSet<String> = store.recover()?.into_iter().map(|d| d.id).collect();
    let templates: BTreeMap<String, crate::app::LoadedTemplate> = app
        .templates()?
        .into_iter()
        .map(|t| (t.template.name.clone(), t))
        .collect();
    let mut rows = Vec::new();
    for d in store.interrupted()? {
        // Only templates the user may view; a template whose file is gone cannot be checked.
        let Some(t) = templates.get(&d.template) else {
            tracing::debug!(deployment = %d.id, template = %d.template, "template file gone: not listed");
            continue;
        };
        if !t.template.acl.may_view(app.principal()) {
            continue;
        }
        let named: BTreeSet<&str> = d.hosts.iter().map(|h| h.host.as_str()).collect();
        let in_batches = d.hosts.iter().filter(|h| h.batch.is_some()).count();
        let never = d.planned_hosts.map(|n| n.saturating_sub(in_batches));
        // The journal names planned hosts only once their batch starts: the others are the
        // template's hosts the journal does not name, when the count agrees.
        let candidates: Vec<String> = if !d.planned.is_empty() {
            // the journal's plan names every host (expression templates and --hosts subsets too)
            d.planned
                .iter()
                .filter(|m| !named.contains(m.as_str()))
                .cloned()
                .collect()
        } else if t.template.targets.expression().is_none() {
            t.template
                .targets
                .minions
                .iter()
                .filter(|m| !named.contains(m.as_str()))
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        let (not_reached, unnamed) = match never {
            Some(n) if n == candidates.len() => (candidates, 0),
            Some(n) => (Vec::new(), n),
            // interrupted during prepare: no host was touched
            None => (candidates, 0),
        };
        let mut hosts: Vec<HostProgressRow> = d
            .hosts
            .iter()
            .map(|h| HostProgressRow {
                host: h.host.clone(),
                batch: h.batch,
                stage: Some(h.stage.as_str().to_owned()),
                status: h.status.clone(),
                touched: h.batch.is_some(),
                stages_done: h
                    .stages_done
                    .iter()
                    .map(|s| s.as_str().to_owned())
                    .collect(),
                calls_done: h.calls_done.clone(),
                stage_calls: h
                    .stage_calls
                    .iter()
                    .map(|(s, c)| (s.as_str().to_owned(), c.clone()))
                    .collect(),
                done: host_done(h, &d.version),
            })
            .collect();
        hosts.extend(not_reached.into_iter().map(|host| HostProgressRow {
            host,
            batch: None,
            stage: None,
            status: "not-reached".to_owned(),
            touched: false,
            stages_done: Vec::new(),
            calls_done: Vec::new(),
            stage_calls: Vec::new(),
            done: "not reached".to_owned(),
        }));
        hosts.sort_by(|a, b| a.host.cmp(&b.host));
        let touched = hosts.iter().any(|h| h.touched);
        let plain = !d.dry_run && !d.rollback;
        rows.push(InterruptedRow {
            newly_marked: marked.contains(&d.id),
            rollback_command: (plain && touched)
                .then(|| format!("pushguide rollback {} --deployment {}", d.template, d.id)),
            resume_command: plain.then(|| format!("pushguide deploy {} {}", d.template, d.version)),
            mode: if d.rollback { "rollback" } else { "deploy" },
            planned_hosts: d.planned_hosts,
            unnamed_not_reached: unnamed,
            hosts,
            id: d.id,
            template: d.template,
            version: d.version,
            user: d.principal,
            dry_run: d.dry_run,
            started: rfc3339(d.started),
            last_event: rfc3339(d.last_event),
            batch: d.batch,
            stage: d.stage.as_str().to_owned(),
            live_hosts: d.live_hosts,
        });
    }
    Ok(rows)
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

/// The minions of every template the user may view, target expressions resolved through salt now
/// (a template's minions may change between rounds), the templates that could not be resolved,
/// and the broken template files.
async fn monitored_minions(
    app: &App,
    salt: &dyn Transport,
) -> Result<(Vec<MinionId>, Vec<String>, Vec<crate::app::BrokenTemplate>), CliError> {
    let (templates, broken) = app.scan_templates()?;
    let mut all = BTreeSet::new();
    let mut errors = Vec::new();
    for t in templates {
        if !t.template.acl.may_view(app.principal()) {
            continue;
        }
        match t.template.targets.expression() {
            Some(expr) => match salt.resolve(&expr).await {
                Ok(found) => all.extend(found),
                Err(e) => errors.push(format!(
                    "template `{}`: cannot resolve its targets `{}`: {e}",
                    t.template.name, expr.expression
                )),
            },
            None => {
                for m in &t.template.targets.minions {
                    all.insert(MinionId::new(m)?);
                }
            }
        }
    }
    Ok((all.into_iter().collect(), errors, broken))
}

/// `monitor`: the monitor and the salt-api client it pings through (targets are resolved at every
/// check, see [`monitor_check`]).
pub async fn monitor_setup(app: &mut App) -> Result<(Monitor, Arc<dyn Transport>), CliError> {
    let salt: Arc<dyn Transport> = app.salt()?;
    // minion states live in the store: kept across runs and shared with the engine's pre-flight
    let store = app.store()?;
    let monitor = Monitor::new(salt.clone(), store, app.config.monitor_timeout);
    Ok((monitor, salt))
}

/// One check of `monitor`: reads the templates, resolves their targets and pings the minions. A
/// salt-api error is an `Err` for this check only; the caller decides whether to go on.
pub async fn monitor_check(
    app: &App,
    monitor: &Monitor,
    salt: &dyn Transport,
) -> Result<MonitorCheck, CliError> {
    let (minions, errors, broken) = monitored_minions(app, salt).await?;
    let changes = monitor.check_once(&minions).await?;
    let states = monitor.store().status(&minions).await?;
    let (mut up, mut down) = (Vec::new(), Vec::new());
    for s in states {
        if s.up {
            up.push(s.minion.to_string());
        } else {
            down.push(s.minion.to_string());
        }
    }
    Ok(MonitorCheck {
        checked: minions.len(),
        up,
        down,
        changes: changes
            .into_iter()
            .map(|c| ChangeRow {
                minion: c.minion.to_string(),
                up: c.up,
                was_up: c.was_up,
                at: rfc3339(c.at),
            })
            .collect(),
        errors,
        broken,
    })
}

/// Waits for a stop signal (Ctrl-C, SIGTERM, SIGHUP) or `d`, whichever is first; `true` when a stop
/// was asked for (also one that came before this call, since `signals` were made).
pub async fn sleep_or_stop(d: Duration, signals: &mut StopSignals) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = signals.recv() => true,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn rfc3339_formats_utc() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_772_566);
        assert_eq!(rfc3339(t), "2026-11-27T09:42:46Z");
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn batch_override_parses_counts_and_percentages() {
        assert!(parse_batch("2").is_ok());
        assert!(parse_batch("25%").is_ok());
        let e = parse_batch("lots").unwrap_err().to_string();
        assert!(e.contains("--batch") && e.contains("lots"), "{e}");
    }

    #[test]
    fn globs_match_like_fnmatch() {
        assert!(glob_match("web-*", "web-01"));
        assert!(glob_match("*", "db-01"));
        assert!(!glob_match("web-*", "db-01"));
        assert!(glob_match("web-0?", "web-07"));
        assert!(!glob_match("web-0?", "web-107"));
        assert!(glob_match("web-0[12]", "web-02"));
        assert!(!glob_match("web-0[12]", "web-03"));
        assert!(glob_match("web-0[!12]", "web-03"));
        assert!(glob_match("web-[0-1][0-9]", "web-17"));
        assert!(!glob_match("web-[0-1][0-9]", "web-27"));
        assert!(glob_match("web-[", "web-["));
        assert!(glob_match("*-0[]]", "a-0]"));
        // many stars against a long id: bounded work, not exponential backtracking
        let pattern = format!("{}b", "*a".repeat(30));
        let begun = std::time::Instant::now();
        assert!(!glob_match(&pattern, &"a".repeat(200)));
        assert!(begun.elapsed() < std::time::Duration::from_secs(2));
    }

    /// `log` reads host statuses from the journal; the outcome (and exit code) appears only with
    /// the report, together with the host logs, so `watch` never waits for them.
    #[test]
    fn log_shows_journal_statuses_and_the_outcome_only_with_the_report() {
        use pushguide_core::{Event, EventKind, MinionId, Report, Stage};
        let store = SqliteStore::open_in_memory().unwrap();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_772_566);
        let host = |h: &str| MinionId::new(h).unwrap();
        let ev = |secs: u64, kind: EventKind| Event {
            at: t0 + Duration::from_secs(secs),
            deployment: Arc::from("d1"),
            kind,
        };
        let hosts = vec![host("web-01"), host("web-02")];
        let events = vec![
            ev(
                0,
                EventKind::DeploymentStarted {
                    template: "shop".into(),
                    version: "2.0".into(),
                    user: "alice".into(),
                    dry_run: false,
                    rollback: false,
                },
            ),
            ev(
                1,
                EventKind::Prepared {
                    hosts: 2,
                    batches: 1,
                    excluded: Vec::new(),
                    plan: vec![hosts.clone()],
                    left_out: vec![],
                },
            ),
            ev(
                2,
                EventKind::BatchStarted {
                    batch: 0,
                    hosts: 2,
                    minions: hosts.clone(),
                },
            ),
            ev(
                2,
                EventKind::StageStarted {
                    batch: Some(0),
                    stage: Stage::Deploy,
                    hosts: 2,
                },
            ),
            ev(
                3,
                EventKind::HostFailed {
                    host: host("web-02"),
                    stage: Stage::Deploy,
                    fun: "file.symlink".into(),
                    reason: "disk full".into(),
                },
            ),
            ev(
                4,
                EventKind::StageFinished {
                    batch: Some(0),
                    stage: Stage::Deploy,
                    ok: 1,
                    failed: 1,
                },
            ),
            ev(
                4,
                EventKind::HostSucceeded {
                    host: host("web-01"),
                },
            ),
            ev(
                5,
                EventKind::DeploymentFinished {
                    outcome: DeploymentOutcome::PartiallyApplied,
                },
            ),
        ];
        store.append_events(&events).unwrap();
        let r = deployment_log(&store, "d1").unwrap();
        assert_eq!((r.deployment.outcome.as_deref(), r.exit_code), (None, None));
        let status: Vec<_> = r.hosts.iter().map(|h| h.status.as_deref()).collect();
        assert_eq!(status, [Some("succeeded"), Some("failed")]);
        assert!(r.hosts.iter().all(|h| h.log.is_empty()));
        let report: Report = serde_json::from_value(serde_json::json!({
            "id": "d1", "template": "shop", "version": "2.0", "user": "alice", "dry_run": false,
            "outcome": "partially-applied", "reason": "web-02 failed",
            "started": t0, "duration": {"secs": 5, "nanos": 0},
            "batches": [["web-01", "web-02"]],
            "hosts": [
                {"host": "web-01", "batch": 0, "status": "succeeded", "failure": null,
                 "rollback_failure": null, "rolled_back_to": null,
                 "log": [{"type": "message", "stage": "deploy", "text": "linked"}]},
                {"host": "web-02", "batch": 0, "status": "failed", "failure": null,
                 "rollback_failure": null, "rolled_back_to": null,
                 "log": [{"type": "message", "stage": "deploy", "text": "disk full"}]}
            ],
            "calls": [], "events": [], "history_error": null
        }))
        .unwrap();
        store.finish_report(&report).unwrap();
        let r = deployment_log(&store, "d1").unwrap();
        assert_eq!(r.deployment.outcome.as_deref(), Some("partially-applied"));
        assert_eq!(r.exit_code, Some(2));
        let status: Vec<_> = r.hosts.iter().map(|h| h.status.as_deref()).collect();
        assert_eq!(status, [Some("succeeded"), Some("failed")]);
        let logs: Vec<_> = r.hosts.iter().map(|h| h.log.concat()).collect();
        assert_eq!(logs, ["[deploy] linked", "[deploy] disk full"]);
    }

    #[test]
    fn exit_codes_follow_outcomes() {
        assert_eq!(outcome_exit_code("succeeded", false), 0);
        assert_eq!(outcome_exit_code("partially-applied", false), 2);
        assert_eq!(outcome_exit_code("failed", false), 3);
        assert_eq!(outcome_exit_code("rolled-back", false), 4);
        assert_eq!(outcome_exit_code("rolled-back", true), 0);
        assert_eq!(outcome_exit_code("rollback-failed", true), 5);
        assert_eq!(outcome_exit_code("cancelled", false), 6);
    }
}
