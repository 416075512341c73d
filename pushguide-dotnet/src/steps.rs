//! The salt calls of `dotnet-iis`, one small function each, plus the grouping helpers the stages share.
//!
//! Function names and argument shapes are those of salt's own modules (`win_iis`, `archive`, `file`,
//! `http`); `docs.md` cites each signature.

use std::collections::BTreeMap;

use pushguide_core::{MinionId, SaltCall, StageContext, StageError};
use serde_json::{json, Value};

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

/// `file.directory_exists <dir>` (read): a bool.
pub(crate) fn directory_exists(dir: &str) -> SaltCall {
    SaltCall::read("file.directory_exists").arg(dir)
}

/// `file.file_exists <path>` (read): a bool.
pub(crate) fn file_exists(path: &str) -> SaltCall {
    SaltCall::read("file.file_exists").arg(path)
}

/// `archive.unzip <zip> <dest> trim_output=true`: the extracted names (at most 100 listed).
pub(crate) fn unzip(zip: &str, dest: &str) -> SaltCall {
    SaltCall::mutate("archive.unzip")
        .arg(zip)
        .arg(dest)
        .kwarg("trim_output", true)
}

/// `http.query <url> status=true` (read): `{"status": <code>}` or `{"error": "<text>"}`.
pub(crate) fn warm_up(url: &str) -> SaltCall {
    SaltCall::read("http.query").arg(url).kwarg("status", true)
}

/// Calls `make(key)` once per distinct `key(host)` over those of `hosts` that are still live: ONE request
/// per group of hosts sharing the value (one for the batch when all share it). Returns every successful
/// host's value.
pub(crate) async fn call_by<K: Ord>(
    cx: &mut StageContext<'_>,
    hosts: &[MinionId],
    key: impl Fn(&MinionId) -> K,
    make: impl Fn(&K) -> SaltCall,
) -> Result<Vec<(MinionId, Value)>, StageError> {
    let mut groups: BTreeMap<K, Vec<MinionId>> = BTreeMap::new();
    for h in hosts.iter().filter(|h| cx.minions().contains(h)) {
        groups.entry(key(h)).or_default().push(h.clone());
    }
    let mut out = Vec::new();
    for (k, group) in groups {
        let r = if group.len() == cx.minions().len() {
            cx.call(make(&k)).await?
        } else {
            cx.call_on(&group, make(&k)).await?
        };
        out.extend(r.iter().map(|(h, v)| (h.clone(), v.clone())));
    }
    Ok(out)
}

/// Whether a returned value was really answered by a minion (not a dry-run or plan placeholder).
pub(crate) fn answered(cx: &StageContext<'_>, v: &Value) -> bool {
    !cx.is_dry_run() && !v.is_null()
}

/// Fails every host whose answer is not `true` (salt's `win_iis` and `file` functions report many
/// failures as `false` with retcode 0).
pub(crate) fn expect_true(cx: &mut StageContext<'_>, results: &[(MinionId, Value)], what: &str) {
    for (h, v) in results {
        if answered(cx, v) && v.as_bool() != Some(true) {
            cx.fail(h, format!("{what} returned {v}"));
        }
    }
}
