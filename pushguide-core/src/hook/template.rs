//! Deploy templates: configured once per application by ops, loaded from TOML.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::hook::registry::{kind_info, unknown_kind, DeployerConfig};
use crate::vocab::action::Action;
use crate::vocab::error::Error;
use crate::vocab::target::{TargetExpr, TargetType};
use crate::vocab::validate;

use crate::vocab::validate::MAX_ARRAY_LEN;
use crate::vocab::validate::{
    MAX_BODY_CONTAINS_LEN, MAX_DEPTH, MAX_DESCRIPTION_LEN, MAX_HEALTH_INTERVAL_SECS,
    MAX_HEALTH_RETRIES, MAX_HEALTH_TIMEOUT_SECS, MAX_HOSTS, MAX_KEY_BYTES, MAX_TEMPLATE_BYTES,
    MAX_VALUE_BYTES,
};

/// A number of hosts, absolute or as a percentage of the deployment's hosts.
///
/// In TOML: an integer (`3`) or a string with a percent sign (`"10%"`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Threshold {
    /// An absolute number of hosts.
    Count(u32),
    /// A percentage (0–100) of the hosts.
    Percent(f64),
}

impl Threshold {
    /// The threshold as a host count out of `total`, rounding percentages down.
    pub fn floor_of(self, total: usize) -> usize {
        match self {
            Threshold::Count(n) => n as usize,
            Threshold::Percent(p) => ((total as f64) * p / 100.0 + 1e-9).floor() as usize,
        }
    }

    /// The threshold as a host count out of `total`, rounding percentages up.
    pub fn ceil_of(self, total: usize) -> usize {
        match self {
            Threshold::Count(n) => n as usize,
            Threshold::Percent(p) => ((total as f64) * p / 100.0 - 1e-9).ceil() as usize,
        }
    }
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Threshold::Count(n) => write!(f, "{n}"),
            Threshold::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl Serialize for Threshold {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Threshold::Count(n) => s.serialize_u32(*n),
            Threshold::Percent(_) => s.serialize_str(&self.to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for Threshold {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Threshold;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a host count (e.g. 3) or a percentage string (e.g. \"10%\")")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Threshold, E> {
                u32::try_from(v)
                    .map(Threshold::Count)
                    .map_err(|_| E::custom(format!("host count {v} is out of range")))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Threshold, E> {
                u32::try_from(v)
                    .map(Threshold::Count)
                    .map_err(|_| E::custom(format!("host count {v} is out of range")))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Threshold, E> {
                let num = v.trim().strip_suffix('%').ok_or_else(|| {
                    E::custom(format!("\"{v}\" is not a percentage (write e.g. \"10%\")"))
                })?;
                let p: f64 = num
                    .trim()
                    .parse()
                    .map_err(|_| E::custom(format!("\"{v}\" is not a percentage")))?;
                if !(0.0..=100.0).contains(&p) || p.is_nan() {
                    return Err(E::custom(format!(
                        "percentage \"{v}\" is not within 0–100%"
                    )));
                }
                Ok(Threshold::Percent(p))
            }
        }
        d.deserialize_any(V)
    }
}

/// Users and groups.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Members {
    /// User names.
    pub users: Vec<String>,
    /// Group names.
    pub groups: Vec<String>,
}

impl Members {
    fn admits(&self, who: &Principal) -> bool {
        self.users.contains(&who.user) || self.groups.iter().any(|g| who.groups.contains(g))
    }
}

/// Who may see and who may deploy a template. Deployers may also view.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Acl {
    /// May view the template, its plans and history.
    pub viewers: Members,
    /// May deploy and roll back.
    pub deployers: Members,
}

/// The acting user and their groups.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    /// User name.
    pub user: String,
    /// Group names.
    #[serde(default)]
    pub groups: Vec<String>,
}

impl Principal {
    /// A user without groups.
    pub fn user(user: impl Into<String>) -> Self {
        Principal {
            user: user.into(),
            groups: Vec::new(),
        }
    }

    /// Adds a group (builder style).
    pub fn in_group(mut self, group: impl Into<String>) -> Self {
        self.groups.push(group.into());
        self
    }
}

impl Acl {
    /// Whether `who` may deploy.
    pub fn may_deploy(&self, who: &Principal) -> bool {
        self.deployers.admits(who)
    }

    /// Whether `who` may view.
    pub fn may_view(&self, who: &Principal) -> bool {
        self.viewers.admits(who) || self.deployers.admits(who)
    }

    /// Whether `who` may do `action`.
    pub fn allows(&self, who: &Principal, action: Action) -> bool {
        match action {
            Action::Deploy => self.may_deploy(who),
            Action::View => self.may_view(who),
        }
    }
}

/// Which minions a template deploys to: an explicit list, or a salt target expression.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Targets {
    /// Explicit minion ids.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub minions: Vec<String>,
    /// A salt target expression (instead of `minions`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expression: Option<String>,
    /// How to read `expression` (default `glob`).
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub tgt_type: Option<TargetType>,
}

impl Targets {
    /// The target as an expression for [`crate::Transport::resolve`], or `None` for an explicit list.
    pub fn expression(&self) -> Option<TargetExpr> {
        self.expression.as_ref().map(|e| TargetExpr {
            expression: e.clone(),
            tgt_type: self.tgt_type.unwrap_or(TargetType::Glob),
        })
    }
}

/// How hosts are split into rolling batches.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Rollout {
    /// Batch size: a count or a percentage of the hosts (rounded up, at least one host).
    pub batch: Threshold,
    /// Run a first batch of a single host before the others.
    pub canary: bool,
    /// Stage the release on every host before the first batch, for kinds that can
    /// ([`crate::Deployer::stages_ahead`]): the rolling window then holds only stop, switch, start
    /// and check. Default: on.
    pub stage_ahead: bool,
}

impl Default for Rollout {
    fn default() -> Self {
        Rollout {
            batch: Threshold::Percent(25.0),
            canary: false,
            stage_ahead: true,
        }
    }
}

/// What the engine does when the failure budget is exceeded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnFailure {
    /// Start no further batch and apply the rollback policy.
    #[default]
    Halt,
    /// Wait at the failing stage for a [`crate::Decision`].
    Pause,
}

/// How many hosts may fail before the deployment stops.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FailureBudget {
    /// Most hosts that may fail, as a count or a percentage of the deployment's hosts (rounded down).
    pub max_failed: Threshold,
    /// What happens when more fail.
    pub on_failure: OnFailure,
    /// What happens to hosts that fail while the deployment goes on (within the budget, or excluded
    /// by a decision): restored to their rollback target (default) or left as they are.
    pub failed_hosts: FailedHosts,
}

impl Default for FailureBudget {
    fn default() -> Self {
        FailureBudget {
            max_failed: Threshold::Count(0),
            on_failure: OnFailure::Halt,
            failed_hosts: FailedHosts::Restore,
        }
    }
}

/// What the engine does with a host that failed while the deployment goes on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailedHosts {
    /// Roll the host back to its rollback target right after its batch (a per-host rollback through
    /// the `rollback` hook, logged under the rollback stage). A host without a target is left as is.
    #[default]
    Restore,
    /// Leave the host as the failed stage left it (for inspection).
    Leave,
}

/// An HTTP health check, run on each minion after deploy by project types that support it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthCheck {
    /// URL probed from the minion itself, e.g. `http://127.0.0.1:8080/shop/health` ([`validate::url`]
    /// with [`validate::HTTP_SCHEMES`]). `None` disables (unless the project type sets one per host).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Expected HTTP status.
    pub expect_status: u16,
    /// Substring the body must contain (at most [`MAX_BODY_CONTAINS_LEN`] bytes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_contains: Option<String>,
    /// Attempts before the host fails (0 and 1 both mean one attempt), at most
    /// [`MAX_HEALTH_RETRIES`].
    pub retries: u32,
    /// Seconds between attempts (doubling, capped at 30 s; 0 counts as 1), at most
    /// [`MAX_HEALTH_INTERVAL_SECS`].
    pub interval_secs: u64,
    /// Overall limit in seconds, 1 to [`MAX_HEALTH_TIMEOUT_SECS`].
    pub timeout_secs: u64,
}

impl Default for HealthCheck {
    fn default() -> Self {
        HealthCheck {
            url: None,
            expect_status: 200,
            body_contains: None,
            retries: 5,
            interval_secs: 2,
            timeout_secs: 60,
        }
    }
}

impl HealthCheck {
    /// The overall limit (at most [`MAX_HEALTH_TIMEOUT_SECS`], even on a template that was not
    /// validated).
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs.min(MAX_HEALTH_TIMEOUT_SECS))
    }
}

/// What the pre-flight check does with minions that do not answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnDown {
    /// They count as failed hosts: over the failure budget, the deployment stops before any change.
    #[default]
    Fail,
    /// They are left out of the deployment (and said so in the plan and report).
    Exclude,
}

/// Pre-flight settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Preflight {
    /// What to do with minions that do not answer the pre-flight `test.ping`.
    pub on_down: OnDown,
}

/// Whether and where to roll back automatically when a deployment fails.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "policy", rename_all = "kebab-case", deny_unknown_fields)]
pub enum RollbackPolicy {
    /// No automatic rollback of the deployment when it stops (budget exceeded, cancelled); hosts that
    /// fail while it goes on are still restored unless `[failure] failed_hosts = "leave"`.
    #[default]
    None,
    /// Each host back to the version it ran before (its last good version).
    Previous,
    /// Every host to one given version.
    Version {
        /// The version.
        to: String,
    },
}

/// What another instance does with a deployment whose instance died (its lease expired before it
/// finished): the template's `takeover` key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TakeoverPolicy {
    /// Only mark it `interrupted`, each host listed with its last stage.
    Mark,
    /// Roll the hosts it touched back to their rollback targets (one queued request).
    Rollback,
    /// Continue the same version on the hosts of the batches it had not completed (one queued
    /// request; the steps of every bundled kind are idempotent).
    Resume,
}

impl TakeoverPolicy {
    /// Every policy, in the order the docs list them.
    pub const ALL: [TakeoverPolicy; 3] = [
        TakeoverPolicy::Mark,
        TakeoverPolicy::Rollback,
        TakeoverPolicy::Resume,
    ];

    /// Its name in templates (`mark`, `rollback`, `resume`).
    pub fn as_str(self) -> &'static str {
        match self {
            TakeoverPolicy::Mark => "mark",
            TakeoverPolicy::Rollback => "rollback",
            TakeoverPolicy::Resume => "resume",
        }
    }

    /// The policy named `name`, if any.
    pub fn parse(name: &str) -> Option<TakeoverPolicy> {
        Self::ALL.into_iter().find(|p| p.as_str() == name)
    }
}

/// A deploy template: which project type, which minions, how to roll out, who may deploy.
///
/// ```
/// # use pushguide_core::Template;
/// # #[derive(Debug, serde::Serialize, serde::Deserialize)] struct C {}
/// # #[typetag::serde(name = "tmpl-doc")]
/// # impl pushguide_core::DeployerConfig for C {
/// #   fn build(&self) -> Result<Box<dyn pushguide_core::Deployer>, pushguide_core::Error> { unreachable!() }
/// # }
/// # inventory::submit! { pushguide_core::KindInfo { kind: "tmpl-doc", summary: "", platforms: &[], example: "" } }
/// let t = Template::from_toml_str(r#"
///     name = "shop-web"
///     description = "The shop's web front"
///     [acl.deployers]
///     groups = ["ops"]
///     [targets]
///     expression = "web-*"
///     type = "glob"
///     [rollout]
///     batch = "10%"
///     canary = true
///     stage_ahead = true
///     [failure]
///     max_failed = 2
///     on_failure = "pause"
///     [rollback]
///     policy = "previous"
///     [project]
///     kind = "tmpl-doc"
/// "#, "shop-web.toml").unwrap();
/// assert_eq!(t.name, "shop-web");
/// ```
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Template {
    /// Unique name.
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Permissions.
    #[serde(default)]
    pub acl: Acl,
    /// Target minions.
    pub targets: Targets,
    /// Batching.
    #[serde(default)]
    pub rollout: Rollout,
    /// Failure budget and policy.
    #[serde(default)]
    pub failure: FailureBudget,
    /// Health check settings.
    #[serde(default)]
    pub health: HealthCheck,
    /// Automatic rollback policy.
    #[serde(default)]
    pub rollback: RollbackPolicy,
    /// Pre-flight connectivity policy.
    #[serde(default)]
    pub preflight: Preflight,
    /// What another instance does with a deployment of this template whose instance died
    /// (`takeover = "mark" | "rollback" | "resume"`); `None`: see [`Template::takeover`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub takeover: Option<TakeoverPolicy>,
    /// The project type's configuration (`kind` selects the type).
    pub project: Box<dyn DeployerConfig>,
}

impl Template {
    /// Parses and validates a template from TOML. `source_name` appears in errors.
    ///
    /// Bounds, checked before the typed parse so that their cost stays small: at most
    /// [`MAX_TEMPLATE_BYTES`] of text, [`MAX_HOSTS`] host tables (`[project.hosts.<id>]`), strings of at
    /// most [`MAX_VALUE_BYTES`], keys of at most [`MAX_KEY_BYTES`], arrays of at most
    /// [`MAX_ARRAY_LEN`] elements, [`MAX_DEPTH`] levels of nesting. Parse errors give the line and
    /// column and an escaped, cut excerpt of the line, never the raw line.
    pub fn from_toml_str(text: &str, source_name: &str) -> Result<Template, Error> {
        if text.len() > MAX_TEMPLATE_BYTES {
            return Err(too_big(source_name, text.len() as u64));
        }
        let parse_err = |e: toml::de::Error| Error::parse(source_name, toml_message(&e, text));
        let raw: toml::Table = toml::from_str(text).map_err(parse_err)?;
        check_limits(&raw)?;
        match raw.get("project").and_then(|p| p.get("kind")) {
            None => {
                return Err(Error::invalid(
                    "project.kind",
                    "",
                    "missing: a `[project]` table with `kind = \"…\"` is required",
                ))
            }
            Some(toml::Value::String(kind)) => {
                if kind_info(kind).is_none() {
                    return Err(unknown_kind("project.kind", kind));
                }
            }
            Some(other) => return Err(Error::invalid("project.kind", other, "must be a string")),
        }
        match raw.get("takeover") {
            None => {}
            Some(toml::Value::String(p)) if TakeoverPolicy::parse(p).is_some() => {}
            Some(toml::Value::String(p)) => {
                return Err(Error::invalid(
                    "takeover",
                    p,
                    "must be one of \"mark\", \"rollback\", \"resume\"",
                ))
            }
            Some(other) => {
                return Err(Error::invalid(
                    "takeover",
                    other,
                    "must be one of \"mark\", \"rollback\", \"resume\"",
                ))
            }
        }
        let template: Template = toml::from_str(text).map_err(parse_err)?;
        template.validate()?;
        Ok(template)
    }

    /// Reads, parses and validates a template file (at most [`MAX_TEMPLATE_BYTES`]; a bigger file is
    /// refused without being read).
    pub fn load(path: impl AsRef<Path>) -> Result<Template, Error> {
        use std::io::Read as _;
        let path = path.as_ref();
        let name = path.display().to_string();
        let io_err = |e: std::io::Error| Error::parse(&name, e.to_string());
        let file = std::fs::File::open(path).map_err(io_err)?;
        let size = file.metadata().map_err(io_err)?.len();
        if size > MAX_TEMPLATE_BYTES as u64 {
            return Err(too_big(&name, size));
        }
        let mut bytes = Vec::with_capacity(size as usize);
        file.take(MAX_TEMPLATE_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(io_err)?;
        if bytes.len() > MAX_TEMPLATE_BYTES {
            return Err(too_big(&name, bytes.len() as u64));
        }
        let text = String::from_utf8(bytes).map_err(|e| {
            Error::parse(
                &name,
                format!(
                    "not UTF-8 text (invalid byte at offset {})",
                    e.utf8_error().valid_up_to()
                ),
            )
        })?;
        Self::from_toml_str(&text, &name)
    }

    /// This template with `project` as its project config, every other field copied; `project` is
    /// validated first ([`DeployerConfig::validate`]), so that the result is as checked as a loaded
    /// template. This is how a tool changes the opaque project config without a text round trip,
    /// e.g. `pushguide-sources` merging a CMDB's per-host settings into `[project.hosts.<id>]`.
    ///
    /// ```
    /// # use pushguide_core::{DeployerConfig, Template};
    /// # #[derive(Debug, serde::Serialize, serde::Deserialize)] struct C { port: u16 }
    /// # #[typetag::serde(name = "with-project-doc")]
    /// # impl DeployerConfig for C {
    /// #   fn validate(&self) -> Result<(), pushguide_core::Error> {
    /// #     if self.port == 0 { Err(pushguide_core::Error::invalid("project.port", 0, "must not be 0")) } else { Ok(()) }
    /// #   }
    /// #   fn build(&self) -> Result<Box<dyn pushguide_core::Deployer>, pushguide_core::Error> { unreachable!() }
    /// # }
    /// # inventory::submit! { pushguide_core::KindInfo { kind: "with-project-doc", summary: "", platforms: &[], example: "" } }
    /// let t = Template::from_toml_str(r#"
    ///     name = "shop-web"
    ///     [targets]
    ///     minions = ["web-01"]
    ///     [project]
    ///     kind = "with-project-doc"
    ///     port = 8080
    /// "#, "shop-web.toml")?;
    /// let other: Box<dyn DeployerConfig> =
    ///     serde_json::from_value(serde_json::json!({"kind": "with-project-doc", "port": 8081}))?;
    /// let changed = t.with_project(other)?;
    /// assert_eq!(changed.name, "shop-web");
    /// assert!(changed.to_toml_string()?.contains("8081"));
    ///
    /// let zero: Box<dyn DeployerConfig> =
    ///     serde_json::from_value(serde_json::json!({"kind": "with-project-doc", "port": 0}))?;
    /// assert!(t.with_project(zero).unwrap_err().to_string().contains("project.port"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_project(&self, project: Box<dyn DeployerConfig>) -> Result<Template, Error> {
        project.validate()?;
        Ok(Template {
            name: self.name.clone(),
            description: self.description.clone(),
            acl: self.acl.clone(),
            targets: self.targets.clone(),
            rollout: self.rollout.clone(),
            failure: self.failure.clone(),
            health: self.health.clone(),
            rollback: self.rollback.clone(),
            preflight: self.preflight.clone(),
            takeover: self.takeover,
            project,
        })
    }

    /// The takeover policy in effect: the `takeover` key, else `rollback` when the template has a
    /// rollback policy (`[rollback] policy` other than `none`), else `mark`.
    pub fn takeover(&self) -> TakeoverPolicy {
        match (self.takeover, &self.rollback) {
            (Some(p), _) => p,
            (None, RollbackPolicy::None) => TakeoverPolicy::Mark,
            (None, _) => TakeoverPolicy::Rollback,
        }
    }

    /// Serializes to TOML.
    pub fn to_toml_string(&self) -> Result<String, Error> {
        toml::to_string(self)
            .map_err(|e| Error::parse(format!("template {}", self.name), e.to_string()))
    }

    /// Checks every field; errors name the field path and the bad value.
    pub fn validate(&self) -> Result<(), Error> {
        validate::name("name", &self.name)?;
        validate::text("description", &self.description, MAX_DESCRIPTION_LEN, true)?;
        self.acl.validate()?;
        self.targets.validate()?;
        self.rollout.validate()?;
        self.health.validate()?;
        if let RollbackPolicy::Version { to } = &self.rollback {
            validate::version("rollback.to", to)?;
        }
        self.project.validate()
    }
}

impl Acl {
    /// Checks every user and group name.
    fn validate(&self) -> Result<(), Error> {
        for (role, m) in [("viewers", &self.viewers), ("deployers", &self.deployers)] {
            for (i, u) in m.users.iter().enumerate() {
                validate::name(&format!("acl.{role}.users[{i}]"), u)?;
            }
            for (i, g) in m.groups.iter().enumerate() {
                validate::name(&format!("acl.{role}.groups[{i}]"), g)?;
            }
        }
        Ok(())
    }
}

impl Targets {
    /// Either a minion list (each id valid, none twice, at most `MAX_HOSTS`) or one expression.
    fn validate(&self) -> Result<(), Error> {
        match (&self.minions.is_empty(), &self.expression) {
            (true, None) => {
                return Err(Error::invalid(
                    "targets",
                    "",
                    "give either `minions = [...]` or `expression = \"...\"`",
                ))
            }
            (false, Some(e)) => {
                return Err(Error::invalid(
                    "targets.expression",
                    e,
                    "give either `minions` or `expression`, not both",
                ))
            }
            _ => {}
        }
        if !self.minions.is_empty() && self.tgt_type.is_some() {
            return Err(Error::invalid(
                "targets.type",
                "",
                "only meaningful with `expression`",
            ));
        }
        if self.minions.len() > MAX_HOSTS {
            return Err(Error::invalid(
                "targets.minions",
                format!("{} minions", self.minions.len()),
                format!("more than {MAX_HOSTS} minions"),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, m) in self.minions.iter().enumerate() {
            // the field path (with its index) is built only for an error: 100,000 minions are
            // checked on every deployment
            if validate::minion_id("targets.minions", m).is_err() {
                validate::minion_id(&format!("targets.minions[{i}]"), m)?;
            }
            if !seen.insert(m) {
                return Err(Error::invalid(
                    format!("targets.minions[{i}]"),
                    m,
                    "listed twice",
                ));
            }
        }
        if let Some(e) = &self.expression {
            validate::target_expression("targets.expression", e)?;
        }
        Ok(())
    }
}

impl Rollout {
    /// A batch holds at least one host.
    fn validate(&self) -> Result<(), Error> {
        match self.batch {
            Threshold::Count(0) => {
                return Err(Error::invalid(
                    "rollout.batch",
                    0,
                    "must be at least 1 host",
                ))
            }
            Threshold::Percent(p) if p <= 0.0 => {
                return Err(Error::invalid(
                    "rollout.batch",
                    format!("{p}%"),
                    "must be above 0%",
                ))
            }
            _ => {}
        }
        Ok(())
    }
}

impl HealthCheck {
    /// The URL, body, status and timing bounds of the health check.
    fn validate(&self) -> Result<(), Error> {
        if let Some(url) = &self.url {
            validate::url("health.url", url, validate::HTTP_SCHEMES)?;
        }
        if let Some(body) = &self.body_contains {
            validate::text("health.body_contains", body, MAX_BODY_CONTAINS_LEN, false)?;
        }
        if !(100..=599).contains(&self.expect_status) {
            return Err(Error::invalid(
                "health.expect_status",
                self.expect_status,
                "must be an HTTP status (100–599)",
            ));
        }
        validate::range(
            "health.retries",
            u64::from(self.retries),
            0,
            u64::from(MAX_HEALTH_RETRIES),
        )?;
        validate::duration_secs(
            "health.interval_secs",
            self.interval_secs,
            0,
            MAX_HEALTH_INTERVAL_SECS,
        )?;
        validate::duration_secs(
            "health.timeout_secs",
            self.timeout_secs,
            1,
            MAX_HEALTH_TIMEOUT_SECS,
        )?;
        Ok(())
    }
}

fn too_big(source_name: &str, size: u64) -> Error {
    Error::parse(
        source_name,
        format!("the template is {size} bytes; at most {MAX_TEMPLATE_BYTES} bytes are accepted"),
    )
}

/// A parser error as `line L, column C: message` plus an escaped excerpt of the line around the
/// column (the toml crate's own rendering repeats the whole source line).
fn toml_message(e: &toml::de::Error, text: &str) -> String {
    let message = e.message().trim_end();
    let Some(span) = e.span() else {
        return message.to_owned();
    };
    let at = span.start.min(text.len());
    let at = (0..=at)
        .rev()
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(0);
    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[at..].find('\n').map_or(text.len(), |i| at + i);
    let line_no = text[..line_start].matches('\n').count() + 1;
    let col = text[line_start..at].chars().count() + 1;
    let before: String = {
        let mut v: Vec<char> = text[line_start..at].chars().rev().take(40).collect();
        v.reverse();
        v.into_iter().collect()
    };
    let after: String = text[at..line_end].chars().take(40).collect();
    let cut_before = before.len() < at - line_start;
    let cut_after = after.len() < line_end - at;
    format!(
        "line {line_no}, column {col}: {message}; near {}{}{}",
        if cut_before { "…" } else { "" },
        validate::quote(&format!("{before}{after}")),
        if cut_after { "…" } else { "" },
    )
}

/// The size bounds of a template, on the parsed (untyped) TOML.
fn check_limits(raw: &toml::Table) -> Result<(), Error> {
    if let Some(hosts) = raw
        .get("project")
        .and_then(|p| p.get("hosts"))
        .and_then(toml::Value::as_table)
    {
        if hosts.len() > MAX_HOSTS {
            return Err(Error::invalid(
                "project.hosts",
                format!("{} host tables", hosts.len()),
                format!("more than {MAX_HOSTS} `[project.hosts.<id>]` tables"),
            ));
        }
    }
    let mut path = Vec::new();
    check_table(raw, &mut path)
}

fn field_path(path: &[&str]) -> String {
    path.join(".")
}

fn check_table<'a>(table: &'a toml::Table, path: &mut Vec<&'a str>) -> Result<(), Error> {
    if path.len() >= MAX_DEPTH {
        return Err(Error::invalid(
            field_path(path),
            "",
            format!("nested deeper than {MAX_DEPTH} levels"),
        ));
    }
    for (key, value) in table {
        if key.len() > MAX_KEY_BYTES {
            return Err(Error::invalid(
                field_path(path),
                key,
                format!("a key longer than {MAX_KEY_BYTES} bytes"),
            ));
        }
        path.push(key);
        check_value(value, path)?;
        path.pop();
    }
    Ok(())
}

fn check_value<'a>(value: &'a toml::Value, path: &mut Vec<&'a str>) -> Result<(), Error> {
    match value {
        toml::Value::String(s) if s.len() > MAX_VALUE_BYTES => Err(Error::invalid(
            field_path(path),
            s,
            format!("longer than {MAX_VALUE_BYTES} bytes"),
        )),
        toml::Value::Array(items) => {
            if items.len() > MAX_ARRAY_LEN {
                return Err(Error::invalid(
                    field_path(path),
                    format!("{} elements", items.len()),
                    format!("more than {MAX_ARRAY_LEN} elements"),
                ));
            }
            if path.len() >= MAX_DEPTH {
                return Err(Error::invalid(
                    field_path(path),
                    "",
                    format!("nested deeper than {MAX_DEPTH} levels"),
                ));
            }
            for item in items {
                path.push("[]");
                check_value(item, path)?;
                path.pop();
            }
            Ok(())
        }
        toml::Value::Table(t) => check_table(t, path),
        _ => Ok(()),
    }
}
