//! Shared mechanics that project types compose: the release layout, artifact fetch with checksum
//! verification, the layout-conventions gate, the HTTP health check and pruning of old releases.
//!
//! Every helper acts on the live hosts of a [`StageContext`] with as few salt requests as possible: one
//! request for the batch when the arguments are the same for every host, one per group of hosts
//! otherwise. Values travel as separate salt arguments.
//!
//! Results come as [`CallResults`]: each host's [`Answer`](crate::Answer) says whether the call was sent, so helpers
//! and hooks judge [`CallResults::returned`] and never a dry run's or a plan's recorded call.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use crate::hook::context::ManifestEntry;
use crate::hook::context::{Answer, Artifact, CallResults, StageContext};
use crate::hook::template::HealthCheck;
use crate::vocab::call::{MinionId, SaltCall};
use crate::vocab::error::Error;
use crate::vocab::error::StageError;
use crate::vocab::job::{Check, Retry, Step};

/// Path separator style of the minions a layout lives on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PathStyle {
    /// `/` separated (Linux).
    #[default]
    Posix,
    /// `\` separated (Windows).
    Windows,
}

impl PathStyle {
    /// The separator.
    pub fn sep(self) -> char {
        match self {
            PathStyle::Posix => '/',
            PathStyle::Windows => '\\',
        }
    }

    /// `base` joined with `parts`.
    pub fn join(self, base: &str, parts: &[&str]) -> String {
        let sep = self.sep();
        let mut out = base.trim_end_matches(['/', '\\']).to_owned();
        for p in parts {
            out.push(sep);
            out.push_str(p);
        }
        out
    }
}

/// `releases/<version>` directories under a root, plus where archives are downloaded.
///
/// ```
/// use pushguide_core::steps::{PathStyle, ReleaseLayout};
/// let l = ReleaseLayout::new("/srv/shop", PathStyle::Posix);
/// assert_eq!(l.release_dir("1.2.0"), "/srv/shop/releases/1.2.0");
/// assert_eq!(l.archive("1.2.0", "war"), "/srv/shop/archives/1.2.0.war");
/// let w = ReleaseLayout::new(r"D:\Sites\shop", PathStyle::Windows);
/// assert_eq!(w.release_dir("1.2.0"), r"D:\Sites\shop\releases\1.2.0");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReleaseLayout {
    /// The root directory.
    pub root: String,
    /// Path style.
    pub style: PathStyle,
}

impl ReleaseLayout {
    /// A layout under `root`.
    pub fn new(root: impl Into<String>, style: PathStyle) -> Self {
        ReleaseLayout {
            root: root.into(),
            style,
        }
    }

    /// The directory holding every release.
    pub fn releases(&self) -> String {
        self.style.join(&self.root, &["releases"])
    }

    /// The directory of one release.
    pub fn release_dir(&self, version: &str) -> String {
        self.style.join(&self.root, &["releases", version])
    }

    /// Where the archive of `version` is downloaded.
    pub fn archive(&self, version: &str, ext: &str) -> String {
        self.style
            .join(&self.root, &["archives", &format!("{version}.{ext}")])
    }
}

/// Runs `make(key)` once per distinct `key(host)` over the live hosts, each call targeting the hosts of
/// that group. With one group (the usual case) this is one request for the batch; several groups (per-host
/// settings) are sent at once ([`StageContext::call_each`]), so they take as long as one request.
/// Returns the answers of every group.
pub async fn call_grouped<K: Ord>(
    cx: &mut StageContext<'_>,
    key: impl Fn(&MinionId) -> K,
    make: impl Fn(&K) -> SaltCall,
) -> Result<CallResults, StageError> {
    let live = cx.minions().to_vec();
    call_by(cx, &live, key, make).await
}

/// Like [`call_grouped`], over those of `hosts` that are still live.
pub async fn call_by<K: Ord>(
    cx: &mut StageContext<'_>,
    hosts: &[MinionId],
    key: impl Fn(&MinionId) -> K,
    make: impl Fn(&K) -> SaltCall,
) -> Result<CallResults, StageError> {
    let live: BTreeSet<&MinionId> = cx.minions().iter().collect();
    let mut groups: BTreeMap<K, Vec<MinionId>> = BTreeMap::new();
    for h in hosts.iter().filter(|h| live.contains(h)) {
        groups.entry(key(h)).or_default().push(h.clone());
    }
    // groups with different calls are in flight together, not one after another
    let calls = groups
        .into_iter()
        .map(|(k, group)| (group, make(&k)))
        .collect();
    cx.call_each(calls).await
}

/// Fails every host whose answer is not `true` (many salt functions report failure as `false` with
/// retcode 0). Only real answers are judged ([`CallResults::returned`]): a call a dry run or a plan
/// only recorded has none.
pub fn expect_true(cx: &mut StageContext<'_>, results: &CallResults, what: &str) {
    for (h, v) in results.returned() {
        if v.as_bool() != Some(true) {
            cx.fail(h, format!("{what} returned {v}"));
        }
    }
}

/// A kind's prepare: the artifact ([`artifact_from_config`]), each live host's settings (`host_check`
/// fails the hosts whose settings are incomplete, with the error as the reason), then the layout
/// conventions gate ([`Conventions::gate`]). Read-only, like prepare itself.
pub fn prepare_release(
    cx: &mut StageContext<'_>,
    artifact_url: Option<&str>,
    sha256: Option<&str>,
    conventions: &Conventions,
    host_check: impl Fn(&MinionId) -> Result<(), Error>,
) -> Result<(), StageError> {
    artifact_from_config(cx, artifact_url, sha256)?;
    for h in cx.minions().to_vec() {
        if let Err(e) = host_check(&h) {
            cx.fail(&h, e.to_string());
        }
    }
    conventions.gate(cx)
}

/// In prepare: when the request brings no artifact, sets it from the kind's `artifact_url` config
/// (`{version}` replaced) and optional checksum; with neither, the deployment stops here, before any
/// change, naming the missing setting.
pub fn artifact_from_config(
    cx: &mut StageContext<'_>,
    artifact_url: Option<&str>,
    sha256: Option<&str>,
) -> Result<(), StageError> {
    if let Some(a) = cx.artifact() {
        return check_artifact(a);
    }
    let Some(url) = artifact_url else {
        return Err(StageError::Failed(format!(
            "no artifact for version {}: the request brings none and `project.artifact_url` is not set",
            cx.version()
        )));
    };
    let url = url.replace("{version}", cx.version());
    cx.set_artifact(Artifact::new(url, sha256.map(str::to_owned)))
}

/// The one check of where an artifact comes from, for a template's `artifact_url` and `sha256` as for
/// the artifact a request brings (e.g. from a CI source): the URL follows
/// [`crate::validate::url`] with [`crate::validate::ARTIFACT_SCHEMES`], the checksum is 64 hex digits
/// (either case; compared without regard to case). `url_field` and `sha256_field` name the values in
/// the error.
///
/// ```
/// use pushguide_core::steps::validate_artifact_source;
/// let sha = "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae";
/// let ok = validate_artifact_source("project.artifact_url", Some("salt://a/{version}.zip"), "project.sha256", Some(sha));
/// assert!(ok.is_ok());
/// let err = validate_artifact_source("project.artifact_url", None, "project.sha256", Some("ABC")).unwrap_err();
/// assert!(err.to_string().contains("project.sha256"));
/// assert!(validate_artifact_source("artifact.url", Some("ftp://ci/a.zip"), "artifact.sha256", None).is_err());
/// ```
pub fn validate_artifact_source(
    url_field: &str,
    url: Option<&str>,
    sha256_field: &str,
    sha256: Option<&str>,
) -> Result<(), Error> {
    if let Some(u) = url {
        crate::vocab::validate::url(url_field, u, crate::vocab::validate::ARTIFACT_SCHEMES)?;
    }
    if let Some(h) = sha256 {
        if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::invalid(sha256_field, h, "must be 64 hex digits"));
        }
    }
    Ok(())
}

/// [`validate_artifact_source`] for a template's `project.artifact_url` and `project.sha256`: every kind
/// that fetches its artifact from a configured URL checks them with it.
pub fn validate_project_artifact(
    artifact_url: Option<&str>,
    sha256: Option<&str>,
) -> Result<(), Error> {
    validate_artifact_source(
        "project.artifact_url",
        artifact_url,
        "project.sha256",
        sha256,
    )
}

/// [`validate_artifact_source`] for the artifact of a release.
fn check_artifact(a: &Artifact) -> Result<(), StageError> {
    validate_artifact_source(
        "artifact.url",
        Some(&a.url),
        "artifact.sha256",
        a.sha256.as_deref(),
    )
    .map_err(|e| StageError::Failed(e.to_string()))
}

/// Downloads the release's artifact to each host's `dest(host)` unless the release directory already
/// exists there (a redeploy or a release kept on disk needs no download), then verifies its SHA-256 on
/// the minion (`file.get_hash`). A host whose file does not match fails here, before anything is
/// stopped. Returns the live hosts that downloaded the archive (and so need it unpacked); failed hosts
/// are dropped from the batch.
pub async fn fetch_artifact(
    cx: &mut StageContext<'_>,
    release_dir: impl Fn(&MinionId) -> String,
    dest: impl Fn(&MinionId) -> String,
) -> Result<Vec<MinionId>, StageError> {
    let Some(artifact) = cx.artifact().cloned() else {
        return Err(StageError::Failed(format!(
            "no artifact for version {}: set the project's artifact URL or resolve it from CI",
            cx.version()
        )));
    };
    check_artifact(&artifact)?;
    let present = call_grouped(cx, &release_dir, |dir| {
        SaltCall::read("file.directory_exists").arg(dir.as_str())
    })
    .await?;
    // only a real run trusts a release directory to be there: a dry run downloads nowhere, so it
    // records the download for every host
    let missing: Vec<MinionId> = present
        .iter()
        .filter(|(_, a)| a.returned().and_then(Value::as_bool) != Some(true))
        .map(|(h, _)| h.clone())
        .collect();
    for h in present.hosts() {
        if !missing.contains(h) {
            cx.log(h, "release directory already present: no download");
        }
    }
    if missing.is_empty() {
        return Ok(Vec::new());
    }
    let mut groups: BTreeMap<String, Vec<MinionId>> = BTreeMap::new();
    for h in &missing {
        groups.entry(dest(h)).or_default().push(h.clone());
    }
    // hosts with different destinations download at once
    let downloads = groups
        .iter()
        .map(|(path, hosts)| {
            let call = SaltCall::mutate("cp.get_url")
                .arg(artifact.url.as_str())
                .arg(path.as_str())
                .kwarg("makedirs", true)
                .timeout(Duration::from_secs(600));
            (hosts.clone(), call)
        })
        .collect();
    let r = cx.call_each(downloads).await?;
    // cp.get_url answers the destination path, or `False`/"" when the download failed
    let failed: Vec<(MinionId, Value)> = r
        .returned()
        .filter(|(_, v)| v.as_str().is_none_or(str::is_empty))
        .map(|(h, v)| (h.clone(), v.clone()))
        .collect();
    for (h, v) in failed {
        let path = dest(&h);
        cx.fail(
            &h,
            format!(
                "download of {} to {path} failed (cp.get_url answered {v})",
                artifact.url
            ),
        );
    }
    let Some(expected) = artifact.sha256.clone() else {
        return Ok(still_live(cx, missing));
    };
    // a download a dry run only recorded left no file to hash
    let recorded_only: BTreeSet<MinionId> = if cx.is_dry_run() {
        r.iter()
            .filter(|(_, a)| matches!(a, Answer::NotSent))
            .map(|(h, _)| h.clone())
            .collect()
    } else {
        BTreeSet::new()
    };
    let hashes = groups
        .iter()
        .filter_map(|(path, hosts)| {
            let hosts: Vec<MinionId> = hosts
                .iter()
                .filter(|h| !recorded_only.contains(*h))
                .cloned()
                .collect();
            let call = SaltCall::read("file.get_hash")
                .arg(path.as_str())
                .kwarg("form", "sha256");
            (!hosts.is_empty()).then_some((hosts, call))
        })
        .collect();
    let r = cx.call_each(hashes).await?;
    let bad: Vec<(MinionId, String)> = r
        .returned()
        .filter(|(_, v)| {
            !v.as_str()
                .is_some_and(|got| got.eq_ignore_ascii_case(&expected))
        })
        .map(|(h, v)| (h.clone(), v.as_str().unwrap_or("?").to_owned()))
        .collect();
    for (h, got) in bad {
        let path = dest(&h);
        cx.fail(
            &h,
            format!("checksum mismatch for {path}: expected sha256 {expected}, got {got}"),
        );
    }
    Ok(still_live(cx, missing))
}

fn still_live(cx: &StageContext<'_>, mut hosts: Vec<MinionId>) -> Vec<MinionId> {
    let live: BTreeSet<&MinionId> = cx.minions().iter().collect();
    hosts.retain(|h| live.contains(h));
    hosts
}

/// The steps that bring the release's artifact to a host, each skipped when `release_dir` is
/// already there (a redeploy, a release kept on disk): where the minions run the pushguide module
/// and the artifact's size is known, a check that the disk holds it (`pushguide.free_space`: the
/// archive plus its unpacked entries); the download to `dest` (`cp.get_url`, the destination path
/// answered); its SHA-256 on the minion (`file.get_hash`, when the release has one). Unpacking is the
/// kind's own step, after these.
pub fn fetch_steps(
    cx: &StageContext<'_>,
    release_dir: &str,
    dest: &str,
) -> Result<Vec<Step>, StageError> {
    let Some(artifact) = cx.artifact().cloned() else {
        return Err(StageError::Failed(format!(
            "no artifact for version {}: set the project's artifact URL or resolve it from CI",
            cx.version()
        )));
    };
    check_artifact(&artifact)?;
    let there = SaltCall::read("file.directory_exists").arg(release_dir);
    let mut steps = Vec::new();
    if let (true, Some(size)) = (cx.runs_module(), artifact.size) {
        let unpacked: u64 = artifact
            .manifest
            .iter()
            .flatten()
            .map(|e| e.size)
            .fold(0u64, u64::saturating_add);
        steps.push(
            Step::new(
                SaltCall::read("pushguide.free_space")
                    .arg(release_dir)
                    .arg(size.saturating_add(unpacked)),
            )
            .unless(there.clone())
            .what("not enough disk space for the release"),
        );
    }
    steps.push(
        Step::new(
            SaltCall::mutate("cp.get_url")
                .arg(artifact.url.as_str())
                .arg(dest)
                .kwarg("makedirs", true)
                .timeout(Duration::from_secs(600)),
        )
        .check(Check::Nonempty)
        .unless(there.clone())
        .what(format!("download of {} to {dest} failed", artifact.url)),
    );
    if let Some(sha) = &artifact.sha256 {
        steps.push(
            Step::new(
                SaltCall::read("file.get_hash")
                    .arg(dest)
                    .kwarg("form", "sha256"),
            )
            .check(Check::Equals(sha.to_ascii_lowercase()))
            .unless(there)
            .what(format!("checksum mismatch for {dest}")),
        );
    }
    Ok(steps)
}

/// Queues, for every live host, the steps of [`fetch_steps`] (to `dest(host)`, skipped where
/// `release_dir(host)` is there): with jobs, one salt job fetches and verifies on every host, sent with
/// the hook's other queued steps or before its next call.
pub fn queue_fetch(
    cx: &mut StageContext<'_>,
    release_dir: impl Fn(&MinionId) -> String,
    dest: impl Fn(&MinionId) -> String,
) -> Result<(), StageError> {
    let mut per_host = Vec::with_capacity(cx.minions().len());
    for h in cx.minions() {
        per_host.push((h.clone(), fetch_steps(cx, &release_dir(h), &dest(h))?));
    }
    cx.steps(per_host)
}

/// The health check as one step: `http.query <url>` until it answers the expected status (and body),
/// tried again on the minion with a doubling interval (at most 30 s) within the check's timeout.
pub fn health_step(health: &HealthCheck, url: &str) -> Step {
    Step::new(
        SaltCall::read("http.query")
            .arg(url)
            .kwarg("status", true)
            .kwarg("text", health.body_contains.is_some())
            .timeout(health.timeout().max(Duration::from_secs(1))),
    )
    .check(Check::Http {
        status: health.expect_status,
        body: health.body_contains.clone(),
    })
    .retry(Retry {
        attempts: health.retries.max(1),
        interval: Duration::from_secs(health.interval_secs.max(1)),
        max_interval: Duration::from_secs(30),
        within: health.timeout(),
    })
    .what(format!(
        "health check of {url} failed (expected HTTP {})",
        health.expect_status
    ))
}

/// Pruning as one step on the minion (`pushguide.prune`, needs the module): keeps the newest `keep`
/// releases under `releases` in natural version order ([`version_cmp`]) and every one in `protect`.
pub fn prune_step(releases: &str, keep: usize, protect: Vec<String>) -> Step {
    Step::new(
        SaltCall::mutate("pushguide.prune")
            .arg(releases)
            .arg(keep)
            .kwarg("protect", protect),
    )
    .what(format!("pruning old releases under {releases} failed"))
}

/// The versions a host's pruning keeps whatever their age: the release, the host's current one and
/// its rollback target.
pub fn protected_versions(cx: &StageContext<'_>, host: &MinionId) -> Vec<String> {
    [
        Some(cx.version()),
        cx.current_version(host),
        cx.rollback_target(host),
    ]
    .into_iter()
    .flatten()
    .map(str::to_owned)
    .collect()
}

/// Unpacks `archive(host)` into `release_dir(host)` (`archive.unzip <archive> <dir> trim_output=True`)
/// on the live hosts whose release directory does not exist yet (`file.directory_exists`); hosts that
/// already have it are logged and left alone. Calls are grouped by their arguments.
pub async fn unpack_missing(
    cx: &mut StageContext<'_>,
    release_dir: impl Fn(&MinionId) -> String,
    archive: impl Fn(&MinionId) -> String,
) -> Result<(), StageError> {
    let present = call_grouped(cx, &release_dir, |d| {
        SaltCall::read("file.directory_exists").arg(d.as_str())
    })
    .await?;
    let mut unpack = Vec::new();
    for (h, exists) in present {
        // what the host has now, in a dry run too (a redeploy unpacks nothing)
        if exists.value().and_then(Value::as_bool) == Some(true) {
            cx.log(&h, "release directory already present: not unpacked again");
        } else {
            unpack.push(h);
        }
    }
    call_by(
        cx,
        &unpack,
        |h| (archive(h), release_dir(h)),
        |(zip, dir)| {
            SaltCall::mutate("archive.unzip")
                .arg(zip.as_str())
                .arg(dir.as_str())
                .kwarg("trim_output", true)
        },
    )
    .await?;
    Ok(())
}

/// Layout conventions an artifact must follow, checked in prepare against its manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Conventions {
    /// Largest total size in bytes.
    pub max_size: Option<u64>,
    /// Most entries.
    pub max_files: Option<usize>,
    /// Patterns no entry may match: `dir/` matches a directory anywhere, `*.ext` a file name anywhere,
    /// other patterns (with `*` and `?`) the whole path.
    pub forbidden: Vec<String>,
    /// Paths that must be present.
    pub required: Vec<String>,
}

impl Default for Conventions {
    fn default() -> Self {
        Conventions {
            max_size: Some(512 * 1024 * 1024),
            max_files: Some(50_000),
            forbidden: [
                "*.log",
                "logs/",
                "tmp/",
                "temp/",
                "*.tmp",
                "*.swp",
                ".DS_Store",
            ]
            .map(String::from)
            .to_vec(),
            required: Vec::new(),
        }
    }
}

/// One broken rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The entry at fault (or `-` for whole-artifact rules).
    pub path: String,
    /// What is wrong.
    pub rule: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.rule)
    }
}

/// `*` and `?` matching in linear time per star (the iterative two-pointer algorithm: on a mismatch,
/// resume after the last `*`), so no pattern can make it backtrack exponentially.
fn glob(p: &[u8], t: &[u8]) -> bool {
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == b'?' || c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

fn matches(pattern: &str, path: &str) -> bool {
    if let Some(dir) = pattern.strip_suffix('/') {
        let parts: Vec<&str> = path.split('/').collect();
        let dirs = if path.ends_with('/') {
            &parts[..parts.len() - 1]
        } else {
            &parts[..parts.len().saturating_sub(1)]
        };
        return dirs.iter().any(|d| glob(dir.as_bytes(), d.as_bytes()));
    }
    if !pattern.contains('/') {
        let name = path
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or(path);
        return glob(pattern.as_bytes(), name.as_bytes());
    }
    glob(pattern.as_bytes(), path.as_bytes())
}

impl Conventions {
    /// These conventions with `required` entries added (a kind's own requirements).
    pub fn requiring(mut self, paths: &[&str]) -> Self {
        for p in paths {
            if !self.required.iter().any(|r| r == p) {
                self.required.push((*p).to_owned());
            }
        }
        self
    }

    /// Every rule the manifest breaks, in manifest order.
    pub fn check(&self, manifest: &[ManifestEntry]) -> Vec<Violation> {
        let mut out = Vec::new();
        let total: u64 = manifest.iter().map(|e| e.size).sum();
        if let Some(max) = self.max_size {
            if total > max {
                out.push(Violation {
                    path: "-".into(),
                    rule: format!("artifact is {total} bytes, more than the {max} allowed"),
                });
            }
        }
        if let Some(max) = self.max_files {
            if manifest.len() > max {
                out.push(Violation {
                    path: "-".into(),
                    rule: format!(
                        "artifact has {} entries, more than the {max} allowed",
                        manifest.len()
                    ),
                });
            }
        }
        for e in manifest {
            if let Some(p) = self.forbidden.iter().find(|p| matches(p, &e.path)) {
                out.push(Violation {
                    path: e.path.clone(),
                    rule: format!("forbidden by `{p}`"),
                });
            }
            if e.path.split('/').any(|c| c == "..") || e.path.starts_with('/') {
                out.push(Violation {
                    path: e.path.clone(),
                    rule: "escapes the release directory".into(),
                });
            }
        }
        for r in &self.required {
            let r = r.trim_start_matches('/');
            if !manifest
                .iter()
                .any(|e| e.path.trim_end_matches('/') == r.trim_end_matches('/'))
            {
                out.push(Violation {
                    path: r.to_owned(),
                    rule: "required entry is missing".into(),
                });
            }
        }
        out
    }

    /// Checks the release's artifact manifest in prepare; every violation is listed in the error.
    /// Without a manifest nothing can be checked: each host's log says so.
    pub fn gate(&self, cx: &mut StageContext<'_>) -> Result<(), StageError> {
        let Some(manifest) = cx.artifact().and_then(|a| a.manifest.clone()) else {
            cx.log_all("layout conventions not checked: the artifact has no manifest");
            return Ok(());
        };
        let v = self.check(&manifest);
        if v.is_empty() {
            return Ok(());
        }
        let list: Vec<String> = v.iter().map(ToString::to_string).collect();
        Err(StageError::Failed(format!(
            "artifact {} breaks {} layout convention(s):\n  {}",
            cx.version(),
            v.len(),
            list.join("\n  ")
        )))
    }
}

/// Validates conventions from a template (`field` is e.g. `project.conventions`).
pub fn validate_conventions(field: &str, c: &Conventions) -> Result<(), Error> {
    for (i, p) in c.forbidden.iter().chain(&c.required).enumerate() {
        if p.is_empty() || p.chars().any(crate::vocab::validate::is_hidden) || p.len() > 256 {
            return Err(Error::invalid(
                format!("{field}[{i}]"),
                p,
                "must be a non-empty pattern of at most 256 bytes without control or invisible characters",
            ));
        }
    }
    Ok(())
}

/// Probes `url(host)` from each live host with `http.query` until it answers the expected status (and
/// body), with retries and a doubling interval, within the overall timeout. Hosts that never pass fail
/// with the last status seen. Not evaluated in dry runs (the new release is not running).
pub async fn health_check(
    cx: &mut StageContext<'_>,
    health: &HealthCheck,
    url: impl Fn(&MinionId) -> Option<String>,
) -> Result<(), StageError> {
    let started = Instant::now();
    let mut pending: Vec<MinionId> = cx
        .minions()
        .iter()
        .filter(|h| url(h).is_some())
        .cloned()
        .collect();
    let mut last: HashMap<MinionId, String> = HashMap::new();
    let mut interval = Duration::from_secs(health.interval_secs.max(1));
    let attempts = health.retries.max(1);
    for attempt in 1..=attempts {
        let mut groups: BTreeMap<String, Vec<MinionId>> = BTreeMap::new();
        for h in &pending {
            if let Some(u) = url(h) {
                groups.entry(u).or_default().push(h.clone());
            }
        }
        let remaining = health.timeout().saturating_sub(started.elapsed());
        let mut passed = BTreeSet::new();
        for (u, hosts) in &groups {
            let r = cx
                .call_on(
                    hosts,
                    SaltCall::read("http.query")
                        .arg(u.as_str())
                        .kwarg("status", true)
                        .kwarg("text", health.body_contains.is_some())
                        .timeout(remaining.max(Duration::from_secs(1))),
                )
                .await?;
            // the new release does not run in a dry run or a plan: only real answers are judged
            passed.extend(
                r.iter()
                    .filter(|(_, a)| a.returned().is_none())
                    .map(|(h, _)| h.clone()),
            );
            for (h, v) in r.returned() {
                let status = v.get("status").and_then(Value::as_u64);
                let body_ok = match &health.body_contains {
                    None => true,
                    Some(want) => v
                        .get("text")
                        .and_then(Value::as_str)
                        .is_some_and(|t| t.contains(want.as_str())),
                };
                if status == Some(u64::from(health.expect_status)) && body_ok {
                    passed.insert(h.clone());
                } else {
                    let why = match (status, body_ok) {
                        (Some(s), true) => format!("HTTP {s}"),
                        (Some(s), false) => format!("HTTP {s} without the expected body text"),
                        (None, _) => v
                            .get("error")
                            .and_then(Value::as_str)
                            .map_or_else(|| format!("no status in {v}"), str::to_owned),
                    };
                    last.insert(h.clone(), why);
                }
            }
        }
        // hosts dropped by the call itself (failed outcome) are no longer live
        let live: BTreeSet<&MinionId> = cx.minions().iter().collect();
        pending.retain(|h| !passed.contains(h) && live.contains(h));
        if pending.is_empty() {
            return Ok(());
        }
        let left = health.timeout().saturating_sub(started.elapsed());
        if attempt == attempts || left.is_zero() {
            break;
        }
        for h in pending.clone() {
            cx.log(
                &h,
                format!(
                    "health check attempt {attempt}/{attempts}: {}",
                    last.get(&h).map_or("-", String::as_str)
                ),
            );
        }
        tokio::time::sleep(interval.min(left)).await;
        interval = (interval * 2).min(Duration::from_secs(30));
    }
    for h in pending {
        let why = last.remove(&h).unwrap_or_else(|| "no answer".into());
        cx.fail(
            &h,
            format!(
                "health check failed after {:.1?}: expected HTTP {}, got {why}",
                started.elapsed(),
                health.expect_status
            ),
        );
    }
    Ok(())
}

/// Natural order of version strings: numeric runs compare as numbers (`1.10` after `1.9`).
pub fn version_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    fn parts(s: &str) -> Vec<Result<u64, String>> {
        let mut out = Vec::new();
        let mut cur = String::new();
        let mut digits = false;
        for c in s.chars() {
            if c.is_ascii_digit() != digits && !cur.is_empty() {
                out.push(if digits {
                    cur.parse().map_err(|_| cur.clone())
                } else {
                    Err(cur.clone())
                });
                cur.clear();
            }
            digits = c.is_ascii_digit();
            cur.push(c);
        }
        if !cur.is_empty() {
            out.push(if digits {
                cur.parse().map_err(|_| cur.clone())
            } else {
                Err(cur)
            });
        }
        out
    }
    parts(a).cmp(&parts(b))
}

/// Removes releases beyond the newest `keep` (natural version order) under each host's releases
/// directory, never the release being deployed, the host's current release or its rollback target.
/// One `file.readdir` per group of hosts sharing a layout, then one `file.remove` per directory.
pub async fn prune_releases(
    cx: &mut StageContext<'_>,
    keep: usize,
    layout: impl Fn(&MinionId) -> ReleaseLayout,
) -> Result<(), StageError> {
    let listed = call_grouped(
        cx,
        |h| layout(h).releases(),
        |dir| SaltCall::read("file.readdir").arg(dir.as_str()),
    )
    .await?;
    let version = cx.version().to_owned();
    let mut removals: BTreeMap<String, Vec<MinionId>> = BTreeMap::new();
    // a dry run prunes nothing (nor records it): only real listings are acted on
    for (h, v) in listed.returned() {
        let mut names: Vec<String> = v
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        names.retain(|n| {
            n != "." && n != ".." && crate::vocab::validate::version("release", n).is_ok()
        });
        names.sort_by(|a, b| version_cmp(b, a));
        let protect: Vec<&str> = [
            Some(version.as_str()),
            cx.current_version(h),
            cx.rollback_target(h),
        ]
        .into_iter()
        .flatten()
        .collect();
        let l = layout(h);
        for name in names.iter().skip(keep) {
            if !protect.contains(&name.as_str()) {
                removals
                    .entry(l.release_dir(name))
                    .or_default()
                    .push(h.clone());
            }
        }
    }
    for (dir, hosts) in removals {
        cx.call_on(&hosts, SaltCall::mutate("file.remove").arg(dir.as_str()))
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn glob_matches_in_linear_time() {
        assert!(super::glob(b"*.jar", b"lib.jar"));
        assert!(super::glob(b"WEB-INF/*", b"WEB-INF/web.xml"));
        assert!(super::glob(b"a?c*", b"abcdef"));
        assert!(!super::glob(b"a?c", b"ac"));
        assert!(super::glob(b"**", b""));
        assert!(!super::glob(b"*x", b"abc"));
        // would take ages with backtracking
        let p = format!("{}b", "*a".repeat(40));
        let t = "a".repeat(5000);
        let begun = std::time::Instant::now();
        assert!(!super::glob(p.as_bytes(), t.as_bytes()));
        assert!(begun.elapsed() < std::time::Duration::from_secs(2));
    }

    use super::*;

    fn m(paths: &[(&str, u64)]) -> Vec<ManifestEntry> {
        paths
            .iter()
            .map(|(p, s)| ManifestEntry {
                path: (*p).into(),
                size: *s,
            })
            .collect()
    }

    #[test]
    fn conventions_list_every_violation_with_its_path() {
        let c = Conventions::default().requiring(&["WEB-INF/web.xml"]);
        let v = c.check(&m(&[
            ("index.html", 10),
            ("logs/", 0),
            ("logs/catalina.out", 5),
            ("WEB-INF/classes/app.log", 3),
            ("tmp/x", 1),
            ("../evil", 1),
        ]));
        let text: Vec<String> = v.iter().map(ToString::to_string).collect();
        assert!(
            text.contains(&"logs/: forbidden by `logs/`".to_string()),
            "{text:?}"
        );
        assert!(
            text.contains(&"logs/catalina.out: forbidden by `logs/`".to_string()),
            "{text:?}"
        );
        assert!(
            text.contains(&"WEB-INF/classes/app.log: forbidden by `*.log`".to_string()),
            "{text:?}"
        );
        assert!(
            text.contains(&"tmp/x: forbidden by `tmp/`".to_string()),
            "{text:?}"
        );
        assert!(
            text.contains(&"../evil: escapes the release directory".to_string()),
            "{text:?}"
        );
        assert!(
            text.contains(&"WEB-INF/web.xml: required entry is missing".to_string()),
            "{text:?}"
        );
        let ok = c.check(&m(&[
            ("WEB-INF/web.xml", 100),
            ("index.jsp", 50),
            ("catalog/", 0),
        ]));
        assert!(ok.is_empty(), "{ok:?}");
        let big = Conventions {
            max_size: Some(10),
            max_files: Some(1),
            ..Conventions::default()
        };
        assert_eq!(big.check(&m(&[("a", 8), ("b", 8)])).len(), 2);
    }

    #[test]
    fn natural_version_order() {
        let mut v = vec!["1.10.0", "1.9.0", "1.9.1-rc1", "2.0", "1.2"];
        v.sort_by(|a, b| version_cmp(a, b));
        assert_eq!(v, vec!["1.2", "1.9.0", "1.9.1-rc1", "1.10.0", "2.0"]);
    }
}
