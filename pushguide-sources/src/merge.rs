//! Merging CMDB settings into a template's `[project.hosts.<id>]` tables, on the typed template.

use std::collections::HashSet;

use pushguide_core::validate::{self, MAX_ARRAY_LEN, MAX_DEPTH, MAX_HOSTS, MAX_KEY_BYTES};
use pushguide_core::{DeployerConfig, MinionId, TargetType, Template};
use serde_json::{Map, Value};

use crate::cmdb::{Cmdb, HostSettings};
use crate::error::{shown, Error};

/// Merges per-host CMDB `settings` into `template` and validates the result.
///
/// Each host's settings become keys of the project's `[project.hosts.<id>]` table — the per-host
/// overrides every bundled kind reads (`java-tomcat`, `dotnet-iis`, `windows-task`). Precedence, key by
/// key, highest first:
///
/// 1. the template's explicit `[project.hosts.<id>]` value;
/// 2. the CMDB's value;
/// 3. the template's `[project]` default (the kind applies it to hosts that set nothing).
///
/// A JSON `null` from the CMDB means "no value" and is skipped. Which hosts' settings are merged:
/// with a minion list (`targets.minions`) or a `list` expression, those hosts' only; with any other
/// target expression (a glob, a grain, …) the template alone does not say which hosts it targets,
/// so every host of `settings` — pass the hosts the expression resolves to
/// ([`Transport::resolve`](pushguide_core::Transport::resolve)) to [`apply_cmdb_to`] or
/// [`apply_from`] to leave the others out.
///
/// The merge works on the typed template: only the project config (opaque to core, tagged by its
/// `kind`) goes through serde — serialized to a JSON value, its `hosts` map merged value by value,
/// deserialized by the kind and checked by its [`DeployerConfig::validate`]; every other part of
/// the template is copied ([`Template::with_project`]).
///
/// Every CMDB value is untrusted. Before the kind sees it, each key and string must be text without
/// control characters, a key at most [`MAX_KEY_BYTES`](pushguide_core::validate::MAX_KEY_BYTES), a
/// string at most [`MAX_VALUE_BYTES`](pushguide_core::validate::MAX_VALUE_BYTES) long, an array at
/// most [`MAX_ARRAY_LEN`](pushguide_core::validate::MAX_ARRAY_LEN) elements, nested at most
/// [`MAX_DEPTH`](pushguide_core::validate::MAX_DEPTH) levels below the template's root; the merged
/// config holds at most [`MAX_HOSTS`](pushguide_core::validate::MAX_HOSTS) host tables — the same
/// bounds as a template file. When a value breaks a bound or the kind rejects it, the error names
/// the CMDB (`source_name`), the host and the key ([`Error::Setting`]); a kind that takes no
/// per-host settings at all gives [`Error::NoHostSettings`].
///
/// ```
/// use pushguide_sources::{apply_cmdb, HostSettings};
/// use pushguide_core::{MinionId, Template};
/// # use pushguide_java as _;
///
/// let template = Template::from_toml_str(r#"
///     name = "shop-web"
///     [targets]
///     minions = ["web-01", "web-02"]
///     [project]
///     kind = "java-tomcat"
///     context = "shop"
///     root = "/srv/shop"
///     catalina_base = "/var/lib/tomcat10"
///     service = "tomcat10"
///     [project.hosts.web-01]
///     service = "tomcat-blue"
/// "#, "shop-web.toml")?;
///
/// let mut settings = HostSettings::new();
/// settings.insert(
///     MinionId::new("web-01")?,
///     serde_json::json!({"service": "from-cmdb", "catalina_base": "/opt/tomcat-a"})
///         .as_object().cloned().unwrap(),
/// );
/// let merged = apply_cmdb(&template, "cmdb.toml", &settings)?;
/// let text = merged.to_toml_string()?;
/// assert!(text.contains("tomcat-blue"));     // the template's own host value wins
/// assert!(text.contains("/opt/tomcat-a"));   // the CMDB fills what the template leaves open
/// assert!(!text.contains("from-cmdb"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn apply_cmdb(
    template: &Template,
    source_name: &str,
    settings: &HostSettings,
) -> Result<Template, Error> {
    let targets = own_targets(template);
    merge(
        template,
        source_name,
        settings
            .iter()
            .filter(|(h, _)| targets.as_ref().is_none_or(|t| t.contains(h.as_str()))),
    )
}

/// Like [`apply_cmdb`], but merges only the settings of `hosts`: the deployment's targets, which for a
/// template with a target expression are the minions the transport resolved it to
/// ([`Transport::resolve`](pushguide_core::Transport::resolve)). Settings of any other host are left
/// out, whatever they hold; so are hosts of `hosts` outside the template's own minion list.
///
/// ```
/// use pushguide_sources::{apply_cmdb_to, HostSettings};
/// use pushguide_core::{MinionId, Template};
/// # use pushguide_java as _;
///
/// let template = Template::from_toml_str(r#"
///     name = "shop-web"
///     [targets]
///     expression = "web-*"
///     [project]
///     kind = "java-tomcat"
///     context = "shop"
///     root = "/srv/shop"
///     catalina_base = "/var/lib/tomcat10"
///     service = "tomcat10"
/// "#, "shop-web.toml")?;
/// let web01 = MinionId::new("web-01")?;
/// let mut settings = HostSettings::new();
/// settings.insert(web01.clone(), serde_json::json!({"service": "tomcat-a"}).as_object().cloned().unwrap());
/// settings.insert(MinionId::new("db-01")?, serde_json::json!({"jvm_heap": "2g"}).as_object().cloned().unwrap());
///
/// // web-* resolved to web-01: db-01's settings (a key java-tomcat does not know) stay out
/// let merged = apply_cmdb_to(&template, "cmdb.toml", &settings, &[web01])?;
/// assert!(merged.to_toml_string()?.contains("tomcat-a"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn apply_cmdb_to(
    template: &Template,
    source_name: &str,
    settings: &HostSettings,
    hosts: &[MinionId],
) -> Result<Template, Error> {
    let targets = own_targets(template);
    let wanted: HashSet<&str> = hosts.iter().map(MinionId::as_str).collect();
    merge(
        template,
        source_name,
        settings.iter().filter(|(h, _)| {
            wanted.contains(h.as_str()) && targets.as_ref().is_none_or(|t| t.contains(h.as_str()))
        }),
    )
}

/// Fetches `hosts`' settings for `template` from `cmdb` and merges them: with [`apply_cmdb_to`] when
/// `hosts` is given (the deployment's targets, resolved for an expression template), else with
/// [`apply_cmdb`] (every host the CMDB holds for the template, filtered by the template's minion list).
pub async fn apply_from(
    cmdb: &dyn Cmdb,
    template: &Template,
    hosts: &[MinionId],
) -> Result<Template, Error> {
    let settings = cmdb.host_settings(&template.name, hosts).await?;
    if hosts.is_empty() {
        apply_cmdb(template, cmdb.name(), &settings)
    } else {
        apply_cmdb_to(template, cmdb.name(), &settings, hosts)
    }
}

/// The hosts the template names itself (a minion list or a `list` expression, read as salt and
/// [`pushguide_core::resolve_list`] read it); `None` when only the transport can tell.
fn own_targets(template: &Template) -> Option<HashSet<&str>> {
    match template.targets.expression.as_deref() {
        None => Some(
            template
                .targets
                .minions
                .iter()
                .map(String::as_str)
                .collect(),
        ),
        Some(list) if template.targets.tgt_type == Some(TargetType::List) => {
            Some(list.split(',').map(str::trim).collect())
        }
        Some(_) => None,
    }
}

/// One host's CMDB settings that are set (not `null`).
type Wanted<'a> = (&'a MinionId, Vec<(&'a String, &'a Value)>);

fn merge<'a>(
    template: &Template,
    source_name: &str,
    settings: impl Iterator<Item = (&'a MinionId, &'a Map<String, Value>)>,
) -> Result<Template, Error> {
    let kind = template.project.typetag_name();
    let mut wanted: Vec<Wanted<'a>> = Vec::new();
    for (host, map) in settings {
        let mut kv = Vec::with_capacity(map.len());
        for (key, value) in map.iter().filter(|(_, v)| !v.is_null()) {
            check_untrusted(host, key, value).map_err(|error| Error::Setting {
                source_name: source_name.to_owned(),
                host: host.to_string(),
                key: shown(key),
                kind: kind.to_owned(),
                error: Box::new(error),
            })?;
            kv.push((key, value));
        }
        if !kv.is_empty() {
            wanted.push((host, kv));
        }
    }
    let base = project_value(template)?;
    if wanted.is_empty() {
        return Ok(template.with_project(config(template, source_name, base)?)?);
    }
    let mut merged = base.clone();
    for (host, kv) in &wanted {
        merge_host(&mut merged, host, kv).map_err(|error| Error::NoHostSettings {
            source_name: source_name.to_owned(),
            template: template.name.clone(),
            kind: kind.to_owned(),
            error: Box::new(error),
        })?;
    }
    let tables = merged
        .get("hosts")
        .and_then(Value::as_object)
        .map_or(0, Map::len);
    if tables > MAX_HOSTS {
        return Err(Error::Invalid {
            source_name: source_name.to_owned(),
            error: Box::new(pushguide_core::Error::invalid(
                "project.hosts",
                format!("{tables} host tables"),
                format!("more than {MAX_HOSTS} `[project.hosts.<id>]` tables with the CMDB's"),
            )),
        });
    }
    let combined = match config(template, source_name, merged) {
        Ok(project) => match template.with_project(project) {
            Ok(t) => {
                tracing::debug!(
                    template = %template.name,
                    cmdb = source_name,
                    hosts = wanted.len(),
                    "merged CMDB settings"
                );
                return Ok(t);
            }
            Err(e) => e,
        },
        Err(e) => e,
    };
    Err(diagnose(
        template,
        source_name,
        kind,
        &base,
        &wanted,
        combined,
    ))
}

/// The bounds of a template file, applied to one CMDB value before the kind reads it.
fn check_untrusted(host: &MinionId, key: &str, value: &Value) -> Result<(), pushguide_core::Error> {
    let table = format!("project.hosts.{host}");
    validate::text(&table, key, MAX_KEY_BYTES, false)?;
    // `project`, `hosts`, the host and the key are the first levels of the template's nesting
    check_value(&format!("{table}.{key}"), value, 4)
}

fn check_value(field: &str, value: &Value, depth: usize) -> Result<(), pushguide_core::Error> {
    let too_deep = || {
        pushguide_core::Error::invalid(field, "", format!("nested deeper than {MAX_DEPTH} levels"))
    };
    match value {
        Value::String(s) => validate::text(field, s, validate::MAX_VALUE_BYTES, false),
        Value::Array(items) => {
            if items.len() > MAX_ARRAY_LEN {
                return Err(pushguide_core::Error::invalid(
                    field,
                    format!("{} elements", items.len()),
                    format!("more than {MAX_ARRAY_LEN} elements"),
                ));
            }
            if depth >= MAX_DEPTH {
                return Err(too_deep());
            }
            items
                .iter()
                .try_for_each(|item| check_value(field, item, depth + 1))
        }
        Value::Object(table) => {
            if depth >= MAX_DEPTH {
                return Err(too_deep());
            }
            table.iter().try_for_each(|(k, v)| {
                validate::text(field, k, MAX_KEY_BYTES, false)?;
                check_value(&format!("{field}.{k}"), v, depth + 1)
            })
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => Ok(()),
    }
}

/// The template's project config as a JSON object (its `kind` tag included).
fn project_value(template: &Template) -> Result<Map<String, Value>, Error> {
    let fail = |message: String| {
        Error::from(pushguide_core::Error::parse(
            format!("template {}", template.name),
            message,
        ))
    };
    match serde_json::to_value(&template.project) {
        Ok(Value::Object(project)) => Ok(project),
        Ok(_) => Err(fail(format!(
            "the config of kind `{}` does not serialize to a table",
            template.project.typetag_name()
        ))),
        Err(e) => Err(fail(e.to_string())),
    }
}

/// The kind's config read back from `project` (not yet validated).
fn config(
    template: &Template,
    source_name: &str,
    project: Map<String, Value>,
) -> Result<Box<dyn DeployerConfig>, pushguide_core::Error> {
    let config: Box<dyn DeployerConfig> =
        serde_json::from_value(Value::Object(project)).map_err(|e| {
            pushguide_core::Error::parse(
                format!("{} (with CMDB {source_name})", template.name),
                e.to_string(),
            )
        })?;
    Ok(config)
}

/// Adds `kv` to `project.hosts.<host>`, keeping the keys the template sets there (a `null` there is
/// unset). Fails, changing nothing, when the config's `hosts` or the host's entry is not a table.
fn merge_host(
    project: &mut Map<String, Value>,
    host: &MinionId,
    kv: &[(&String, &Value)],
) -> Result<(), pushguide_core::Error> {
    let not_a_table = |field: String| {
        pushguide_core::Error::invalid(field, "", "is not a table of per-host settings")
    };
    let hosts = project
        .entry("hosts")
        .or_insert_with(|| Value::Object(Map::new()));
    if hosts.is_null() {
        *hosts = Value::Object(Map::new());
    }
    let hosts = hosts
        .as_object_mut()
        .ok_or_else(|| not_a_table("project.hosts".into()))?;
    let own = hosts
        .entry(host.as_str())
        .or_insert_with(|| Value::Object(Map::new()));
    if own.is_null() {
        *own = Value::Object(Map::new());
    }
    let own = own
        .as_object_mut()
        .ok_or_else(|| not_a_table(format!("project.hosts.{host}")))?;
    for (k, v) in kv {
        if own.get(k.as_str()).is_none_or(Value::is_null) {
            own.insert((*k).clone(), (*v).clone());
        }
    }
    Ok(())
}

/// Finds which host and key the kind rejects, trying them one by one on this failure path only.
fn diagnose(
    template: &Template,
    source_name: &str,
    kind: &str,
    base: &Map<String, Value>,
    wanted: &[Wanted<'_>],
    combined: pushguide_core::Error,
) -> Error {
    let rejects = |host: &MinionId, kv: &[(&String, &Value)]| {
        let mut probe = base.clone();
        merge_host(&mut probe, host, kv)
            .and_then(|()| config(template, source_name, probe))
            .and_then(|c| c.validate())
            .err()
    };
    if base.get("hosts").is_none_or(Value::is_null) {
        if let Some((host, _)) = wanted.first() {
            if let Some(error) = rejects(host, &[]) {
                return Error::NoHostSettings {
                    source_name: source_name.to_owned(),
                    template: template.name.clone(),
                    kind: kind.to_owned(),
                    error: Box::new(error),
                };
            }
        }
    }
    let setting = |host: &MinionId, key: String, error| Error::Setting {
        source_name: source_name.to_owned(),
        host: host.to_string(),
        key,
        kind: kind.to_owned(),
        error: Box::new(error),
    };
    for (host, kv) in wanted {
        let Some(error) = rejects(host, kv) else {
            continue;
        };
        for (k, v) in kv {
            if let Some(error) = rejects(host, &[(k, v)]) {
                return setting(host, (*k).clone(), error);
            }
        }
        // Only the combination fails (e.g. two keys that exclude each other): name them all.
        let keys: Vec<&str> = kv.iter().map(|(k, _)| k.as_str()).collect();
        return setting(host, keys.join(", "), error);
    }
    // No host fails alone (a rule across hosts): the kind's error, naming the CMDB.
    Error::Invalid {
        source_name: source_name.to_owned(),
        error: Box::new(combined),
    }
}
