//! The salt calls of `dotnet-iis`, one small function each, plus the grouping helpers the stages share.
//!
//! Function names and argument shapes are those of salt's own modules (`win_iis`, `archive`, `file`,
//! `http`); `docs.md` cites each signature.

use pushguide_core::SaltCall;
use serde_json::json;

/// `win_iis.get_container_setting name=<site> container=Sites settings=["physicalPath"]` (read):
/// returns `{"physicalPath": "<dir>"}`.
pub(crate) fn get_physical_path(site: &str) -> SaltCall {
    SaltCall::read("win_iis.get_container_setting")
        .kwarg("name", site)
        .kwarg("container", "Sites")
        .kwarg("settings", json!(["physicalPath"]))
}

/// `win_iis.set_container_setting name=<site> container=Sites settings={"physicalPath": <dir>}`:
/// returns `true` when the new value reads back, `false` otherwise.
pub(crate) fn set_physical_path(site: &str, dir: &str) -> SaltCall {
    SaltCall::mutate("win_iis.set_container_setting")
        .kwarg("name", site)
        .kwarg("container", "Sites")
        .kwarg("settings", json!({ "physicalPath": dir }))
}

/// `win_iis.stop_apppool name=<pool>`: `true` when `Stop-WebAppPool` exited 0.
pub(crate) fn stop_apppool(pool: &str) -> SaltCall {
    SaltCall::mutate("win_iis.stop_apppool").kwarg("name", pool)
}

/// `win_iis.start_apppool name=<pool>`: `true` when `Start-WebAppPool` exited 0.
pub(crate) fn start_apppool(pool: &str) -> SaltCall {
    SaltCall::mutate("win_iis.start_apppool").kwarg("name", pool)
}

/// `win_iis.restart_apppool name=<pool>`: `true` when `Restart-WebAppPool` exited 0.
pub(crate) fn restart_apppool(pool: &str) -> SaltCall {
    SaltCall::mutate("win_iis.restart_apppool").kwarg("name", pool)
}

/// `win_iis.list_apppools` (read): `{"<pool>": {"state": "Started"|"Stopped", "applications": [..]}}`.
pub(crate) fn list_apppools() -> SaltCall {
    SaltCall::read("win_iis.list_apppools")
}

/// `file.write <path> args=[<text>]`: overwrites the file; returns `Wrote 1 lines to "<path>"`.
/// The text travels as the `args` keyword so that an `=` in it is never parsed as a keyword argument.
pub(crate) fn write_file(path: &str, text: &str) -> SaltCall {
    SaltCall::mutate("file.write")
        .arg(path)
        .kwarg("args", json!([text]))
}

/// `file.remove <path>`: `true`.
pub(crate) fn remove(path: &str) -> SaltCall {
    SaltCall::mutate("file.remove").arg(path)
}

/// `file.file_exists <path>` (read): a bool.
pub(crate) fn file_exists(path: &str) -> SaltCall {
    SaltCall::read("file.file_exists").arg(path)
}

/// `http.query <url> status=true` (read): `{"status": <code>}` or `{"error": "<text>"}`.
pub(crate) fn warm_up(url: &str) -> SaltCall {
    SaltCall::read("http.query").arg(url).kwarg("status", true)
}

pub(crate) use pushguide_core::steps::{call_by, expect_true};
