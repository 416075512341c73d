//! The salt calls of `windows-task`, one small function each, plus the grouping helpers the stages share.
//!
//! Function names and argument shapes are those of salt's own modules (`task` = `win_task`, `archive`,
//! `file`); `docs.md` cites each signature.

use pushguide_core::SaltCall;
use serde_json::Value;

/// `task.info` `last_run_result` text of a run that exited 0 (salt's `results[0x0]`).
pub const SUCCESS: &str = "The operation completed successfully";

/// `task.status` values while an instance is active.
pub(crate) fn is_active(status: &Value) -> bool {
    matches!(status.as_str(), Some("Running" | "Queued"))
}

/// `task.status` values of an existing task (anything else is salt's "`<name>` not found in ..." text).
pub(crate) fn is_known_status(status: &str) -> bool {
    matches!(
        status,
        "Unknown" | "Disabled" | "Queued" | "Ready" | "Running"
    )
}

fn task_call(call: SaltCall, task: &str, folder: &str) -> SaltCall {
    call.kwarg("name", task).kwarg("location", folder)
}

/// `task.edit_task name=<task> location=<folder> enabled=<bool>`: `true`, or an error text such as
/// `"<task> not found"` / `"Failed to modify task: ..."`.
pub(crate) fn set_enabled(task: &str, folder: &str, enabled: bool) -> SaltCall {
    task_call(SaltCall::mutate("task.edit_task"), task, folder).kwarg("enabled", enabled)
}

/// `task.status name=<task> location=<folder>` (read): `Unknown|Disabled|Queued|Ready|Running`.
pub(crate) fn status(task: &str, folder: &str) -> SaltCall {
    task_call(SaltCall::read("task.status"), task, folder)
}

/// `task.stop name=<task> location=<folder>`: `true`/`false`.
pub(crate) fn stop(task: &str, folder: &str) -> SaltCall {
    task_call(SaltCall::mutate("task.stop"), task, folder)
}

/// `task.run name=<task> location=<folder>`: `true`/`false` (starts it and returns at once).
pub(crate) fn run(task: &str, folder: &str) -> SaltCall {
    task_call(SaltCall::mutate("task.run"), task, folder)
}

/// `task.info name=<task> location=<folder>` (read): `{"enabled", "last_run", "last_run_result",
/// "missed_runs", "next_run", "status", "settings", "conditions", "actions", "triggers"}`.
pub(crate) fn info(task: &str, folder: &str) -> SaltCall {
    task_call(SaltCall::read("task.info"), task, folder)
}

/// `file.symlink <release dir> <link> force=true`: `true` (the source must exist).
pub(crate) fn symlink(target: &str, link: &str) -> SaltCall {
    SaltCall::mutate("file.symlink")
        .arg(target)
        .arg(link)
        .kwarg("force", true)
}

/// `file.path_exists_glob <glob>` (read): whether anything matches.
pub(crate) fn path_exists_glob(glob: &str) -> SaltCall {
    SaltCall::read("file.path_exists_glob").arg(glob)
}

pub(crate) use pushguide_core::steps::{call_by, expect_true};
