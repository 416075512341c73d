//! Merging CMDB settings into a template's `[project.hosts.<id>]` tables.

use pushguide_core::{MinionId, Template};

use crate::cmdb::{Cmdb, HostSettings};
use crate::error::Error;

/// Merges per-host CMDB `settings` into `template` and re-validates the result.
///
/// Each host's settings become keys of the project's `[project.hosts.<id>]` table — the per-host
/// overrides every bundled kind reads (`java-tomcat`, `dotnet-iis`, `windows-task`). Precedence, key by
/// key, highest first:
///
/// 1. the template's explicit `[project.hosts.<id>]` value;
/// 2. the CMDB's value;
/// 3. the template's `[project]` default (the kind applies it to hosts that set nothing).
///
/// A JSON `null` from the CMDB means "no value" and is skipped. When the template lists its minions
/// (`targets.minions`), settings of other hosts are ignored; with a target expression every host's
/// settings are merged.
///
/// The merge is generic: the template is serialized (the project config carries its `kind` tag),
/// merged as TOML, and parsed again through [`Template::from_toml_str`], so the kind's own
/// deserialization and validation run. When the kind rejects the result, the error names the CMDB
/// (`source_name`), the host and the key ([`Error::Setting`]), or says that the kind takes no
/// per-host settings at all ([`Error::NoHostSettings`]).
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
    let base = to_table(template)?;
    let kind = base
        .get("project")
        .and_then(|p| p.get("kind"))
        .and_then(toml::Value::as_str)
        .unwrap_or("?")
        .to_owned();
    let wanted: Vec<(&MinionId, Vec<(&String, toml::Value)>)> = settings
        .iter()
        .filter(|(h, _)| {
            template.targets.minions.is_empty()
                || template.targets.minions.iter().any(|m| m == h.as_str())
        })
        .map(|(h, map)| {
            let mut kv = Vec::with_capacity(map.len());
            for (k, v) in map {
                if v.is_null() {
                    continue;
                }
                let tv = toml::Value::try_from(v).map_err(|e| Error::Setting {
                    source_name: source_name.to_owned(),
                    host: h.to_string(),
                    key: k.clone(),
                    kind: kind.clone(),
                    error: Box::new(pushguide_core::Error::invalid(
                        format!("project.hosts.{h}.{k}"),
                        v,
                        format!("cannot be written as TOML: {e}"),
                    )),
                })?;
                kv.push((k, tv));
            }
            Ok((h, kv))
        })
        .collect::<Result<_, Error>>()?;
    if wanted.iter().all(|(_, kv)| kv.is_empty()) {
        return reparse(template, source_name, base);
    }
    let mut merged = base.clone();
    for (host, kv) in &wanted {
        merge_host(&mut merged, host, kv.iter().map(|(k, v)| (*k, v)));
    }
    match reparse(template, source_name, merged) {
        Ok(t) => Ok(t),
        Err(Error::Template(combined)) => Err(diagnose(
            template,
            source_name,
            &kind,
            &base,
            &wanted,
            combined,
        )),
        Err(other) => Err(other),
    }
}

/// Fetches `hosts`' settings for `template` from `cmdb` and merges them with [`apply_cmdb`].
pub async fn apply_from(
    cmdb: &dyn Cmdb,
    template: &Template,
    hosts: &[MinionId],
) -> Result<Template, Error> {
    let settings = cmdb.host_settings(&template.name, hosts).await?;
    apply_cmdb(template, cmdb.name(), &settings)
}

fn to_table(template: &Template) -> Result<toml::Table, Error> {
    let text = template.to_toml_string()?;
    toml::from_str(&text).map_err(|e| {
        Error::from(pushguide_core::Error::Parse {
            source_name: format!("template {}", template.name),
            message: e.to_string(),
        })
    })
}

fn reparse(template: &Template, source_name: &str, doc: toml::Table) -> Result<Template, Error> {
    let text = toml::to_string(&doc).map_err(|e| {
        Error::from(pushguide_core::Error::Parse {
            source_name: format!("template {}", template.name),
            message: e.to_string(),
        })
    })?;
    Template::from_toml_str(
        &text,
        &format!("{} (with CMDB {source_name})", template.name),
    )
    .map_err(|e| match e {
        // The parser quotes the generated text by line number, which means nothing to the reader: keep
        // its last line, the deserializer's message (`unknown field …`, `invalid type …`).
        pushguide_core::Error::Parse {
            source_name,
            message,
        } => Error::from(pushguide_core::Error::Parse {
            source_name,
            message: message
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or_default()
                .trim()
                .to_owned(),
        }),
        other => Error::from(other),
    })
}

/// Adds `kv` to `project.hosts.<host>`, keeping keys the template already sets there.
fn merge_host<'a>(
    doc: &mut toml::Table,
    host: &MinionId,
    kv: impl IntoIterator<Item = (&'a String, &'a toml::Value)>,
) {
    let Some(toml::Value::Table(project)) = doc.get_mut("project") else {
        return;
    };
    let hosts = project
        .entry("hosts")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    let Some(hosts) = hosts.as_table_mut() else {
        return;
    };
    let own = hosts
        .entry(host.as_str())
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    let Some(own) = own.as_table_mut() else {
        return;
    };
    for (k, v) in kv {
        if !own.contains_key(k.as_str()) {
            own.insert(k.clone(), v.clone());
        }
    }
}

/// Finds which host and key the kind rejects, re-parsing only on this failure path.
fn diagnose(
    template: &Template,
    source_name: &str,
    kind: &str,
    base: &toml::Table,
    wanted: &[(&MinionId, Vec<(&String, toml::Value)>)],
    combined: Box<pushguide_core::Error>,
) -> Error {
    let has_hosts = base.get("project").and_then(|p| p.get("hosts")).is_some();
    if !has_hosts {
        if let Some((host, _)) = wanted.first() {
            let mut probe = base.clone();
            merge_host(&mut probe, host, std::iter::empty());
            if let Err(Error::Template(error)) = reparse(template, source_name, probe) {
                return Error::NoHostSettings {
                    source_name: source_name.to_owned(),
                    template: template.name.clone(),
                    kind: kind.to_owned(),
                    error,
                };
            }
        }
    }
    for (host, kv) in wanted {
        for (k, v) in kv {
            let mut probe = base.clone();
            merge_host(&mut probe, host, [(*k, v)]);
            if let Err(Error::Template(error)) = reparse(template, source_name, probe) {
                return Error::Setting {
                    source_name: source_name.to_owned(),
                    host: host.to_string(),
                    key: (*k).clone(),
                    kind: kind.to_owned(),
                    error,
                };
            }
        }
    }
    // Only the combination fails (e.g. two keys that exclude each other): name the host.
    for (host, kv) in wanted {
        let mut probe = base.clone();
        merge_host(&mut probe, host, kv.iter().map(|(k, v)| (*k, v)));
        if let Err(Error::Template(error)) = reparse(template, source_name, probe) {
            let keys: Vec<&str> = kv.iter().map(|(k, _)| k.as_str()).collect();
            return Error::Setting {
                source_name: source_name.to_owned(),
                host: host.to_string(),
                key: keys.join(", "),
                kind: kind.to_owned(),
                error,
            };
        }
    }
    Error::Template(combined)
}
