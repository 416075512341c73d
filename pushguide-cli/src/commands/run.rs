//! An attached deployment or rollback run to its end: engine events to the live progress, pauses
//! answered (from `--on-pause`, or asked on the terminal), Ctrl-C/SIGTERM/SIGHUP turned into a
//! cancel.

use std::io::IsTerminal as _;
use std::path::Path;

use pushguide_core::{
    Decision, DeploymentHandle, EventKind, MinionId, Mode, Request, RollbackPolicy, Stage,
};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::app::App;
use crate::cli::OnPause;
use crate::error::CliError;
use crate::output::count;
use crate::progress::Progress;
use crate::results::DeploymentSummary;
use crate::signals::StopSignals;

/// Starts `req` and follows it to its end: the summary of the engine's report. `id_file` receives
/// the deployment id once it runs (for the parent of a detached deployment).
pub(super) async fn run(
    app: &mut App,
    req: Request,
    id_file: Option<&Path>,
    on_pause: Option<OnPause>,
    progress: &mut Progress,
) -> Result<DeploymentSummary, CliError> {
    let rollback = matches!(req.mode, Mode::Rollback { .. });
    let mut pauses = Pauses::new(&req.template.rollback, on_pause);
    app.connect().await?;
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
    follow(&handle, &mut signals, &mut pauses, progress).await;
    progress.finish();
    let report = handle.wait().await;
    let lost = app.lease_lost();
    app.close().await;
    let report = report?;
    if let Some(reason) = lost {
        // taken over on the shared store: what the engine concluded was not recorded (fenced)
        return Err(CliError::LeaseLost {
            id: report.id.clone(),
            template: report.template.clone(),
            reason,
            outcome: report.outcome.to_string(),
        });
    }
    Ok(DeploymentSummary::new(&report, rollback))
}

/// How the pauses of one run are answered.
struct Pauses {
    /// The answer given by `--on-pause` (or the fallback without a terminal); `None`: ask.
    given: Option<Decision>,
    /// The answer when stdin ends.
    fallback: Decision,
    /// The lines of stdin, read from the first question on.
    answers: Option<UnboundedReceiver<String>>,
}

impl Pauses {
    fn new(policy: &RollbackPolicy, on_pause: Option<OnPause>) -> Self {
        // Without an answer given (or a terminal to ask on), a pause rolls back when the template
        // has a rollback policy, else aborts.
        let fallback = if *policy == RollbackPolicy::None {
            Decision::Abort
        } else {
            Decision::Rollback
        };
        let given = match on_pause {
            Some(OnPause::Ask) => None,
            Some(OnPause::Exclude) => Some(Decision::Exclude),
            Some(OnPause::Rollback) => Some(Decision::Rollback),
            Some(OnPause::Abort) => Some(Decision::Abort),
            None if std::io::stdin().is_terminal() => None,
            None => Some(fallback),
        };
        Pauses {
            given,
            fallback,
            answers: None,
        }
    }

    /// Asks `question` on the terminal; the fallback at the end of stdin.
    async fn ask(&mut self, progress: &mut Progress, question: &str) -> Decision {
        let answers = self.answers.get_or_insert_with(stdin_lines);
        match ask(progress, answers, question).await {
            Some(d) => d,
            None => {
                let fallback = self.fallback;
                progress.prompt(&format!("\nno answer on stdin: {fallback:?}\n"));
                fallback
            }
        }
    }
}

/// The question of a pause: `failed` hosts failed `stage` in `batch`.
fn pause_question(batch: usize, stage: Stage, failed: &[MinionId]) -> String {
    format!(
        "{} failed {stage} in batch {} ({}), over the failure budget. retry, exclude, rollback or \
         abort? ",
        count(failed.len() as u64, "host", "hosts"),
        batch + 1,
        failed
            .iter()
            .map(MinionId::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// Passes the deployment's events to `progress` and answers its pauses until it ends; the first
/// stop signal cancels it (the running call finishes, then the template's rollback policy).
async fn follow(
    handle: &DeploymentHandle,
    signals: &mut StopSignals,
    pauses: &mut Pauses,
    progress: &mut Progress,
) {
    let mut events = handle.events();
    let stop = signals.recv();
    tokio::pin!(stop);
    let mut cancelled = false;
    loop {
        tokio::select! {
            e = events.next() => {
                let Some(e) = e else { break };
                progress.event(&e);
                let EventKind::DecisionNeeded { batch, stage, failed } = &e.kind else {
                    continue;
                };
                let decision = match pauses.given {
                    Some(d) => {
                        progress.note(&format!("answering the pause with {d:?} (--on-pause)"));
                        d
                    }
                    None => {
                        let question = pause_question(*batch, *stage, failed);
                        tokio::select! {
                            d = pauses.ask(progress, &question) => d,
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
            _ = &mut stop, if !cancelled => {
                cancelled = true;
                progress.note(
                    "cancel requested: finishing the running call, then applying the rollback policy",
                );
                handle.cancel();
            }
        }
    }
}

/// Lines of stdin, read on a thread of their own (a blocked read never holds the process up).
fn stdin_lines() -> UnboundedReceiver<String> {
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
    answers: &mut UnboundedReceiver<String>,
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
