//! An attached deployment or rollback run to its end: engine events to the live progress, pauses
//! answered (from `--on-pause`, or asked on the terminal), Ctrl-C/SIGTERM/SIGHUP turned into a
//! cancel.

use std::io::IsTerminal as _;
use std::path::Path;

use pushguide_core::{Decision, EventKind, MinionId, Mode, Request, RollbackPolicy};

use crate::app::App;
use crate::cli::OnPause;
use crate::error::CliError;
use crate::output::count;
use crate::progress::Progress;
use crate::results::DeploymentSummary;
use crate::signals::StopSignals;

pub(super) async fn run(
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
                                    count(
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
