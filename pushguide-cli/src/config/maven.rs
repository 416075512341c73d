//! `[ci] type = "maven"`: a Maven repository as the CI source.

use std::path::{Path, PathBuf};

use pushguide_sources::{MavenArtifact, Packaging};

use super::{check_url, resolve, CiConfig, PasswordSource, Reader};
use crate::error::CliError;

/// The repository's credentials and where their secret comes from (the secret itself is read
/// when the source is built, never kept in the configuration, never printed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MavenCredentials {
    /// `username` with `password_env` / `password_file`: HTTP basic authentication.
    Basic {
        /// The user.
        user: String,
        /// Where the password is.
        password: PasswordSource,
    },
    /// `token_env` / `token_file`: `Authorization: Bearer …`.
    Bearer(PasswordSource),
}

/// `[ci] type = "maven"`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MavenCi {
    /// `url`: the repository (`https://nexus.example.com/repository/releases/`).
    pub url: String,
    /// `group`, `artifact`, `packaging`, `classifier`, `versions`: every template's coordinates
    /// (`artifact` unset: the template's name).
    pub default: MavenArtifact,
    /// `[ci.templates.<name>]`: a template's own coordinates (unset keys: the defaults above).
    pub templates: Vec<(String, MavenArtifact)>,
    /// The credentials, if the repository needs them.
    pub credentials: Option<MavenCredentials>,
    /// `stage_dir`, `stage_url`: where artifacts are copied before a deployment, and the URL the
    /// minions fetch that copy from (`salt://…`). Required with credentials.
    pub stage: Option<(PathBuf, String)>,
}

/// Reads the coordinate keys of `r`, on top of `base` (the `[ci]` defaults) when given.
fn coordinates(
    r: &mut Reader<'_>,
    base: Option<&MavenArtifact>,
) -> Result<MavenArtifact, CliError> {
    let group = match (r.string("group")?, base) {
        (Some(g), _) => g,
        (None, Some(b)) => b.group.clone(),
        (None, None) => {
            return Err(r.missing("group", "the Maven groupId, e.g. group = \"com.example\""))
        }
    };
    let packaging = match r.string("packaging")? {
        Some(p) => Packaging::parse(&p).map_err(|e| invalid(r, "packaging", &p, &e))?,
        None => base.map_or(Packaging::War, |b| b.packaging),
    };
    let mut a = MavenArtifact::new(group, packaging);
    a.artifact = r
        .string("artifact")?
        .or_else(|| base.and_then(|b| b.artifact.clone()));
    a.classifier = r
        .string("classifier")?
        .or_else(|| base.and_then(|b| b.classifier.clone()));
    a.versions = r
        .string("versions")?
        .or_else(|| base.and_then(|b| b.versions.clone()));
    if let Err(e) = a.validate() {
        let field = match &e {
            pushguide_core::Error::Invalid { field, .. } => field.clone(),
            _ => "group".to_owned(),
        };
        let value = match field.as_str() {
            "artifact" => a.artifact.clone(),
            "classifier" => a.classifier.clone(),
            "versions" => a.versions.clone(),
            _ => Some(a.group.clone()),
        }
        .unwrap_or_default();
        return Err(invalid(r, &field, &value, &e));
    }
    Ok(a)
}

fn invalid(r: &Reader<'_>, key: &str, value: &str, e: &pushguide_core::Error) -> CliError {
    let reason = match e {
        pushguide_core::Error::Invalid { reason, .. } => reason.clone(),
        other => other.to_string(),
    };
    r.err(key, &toml::Value::String(value.to_owned()), reason)
}

/// One secret: `<name>_env` or `<name>_file` (not both); `None` when neither is given.
fn secret(
    r: &mut Reader<'_>,
    base: &Path,
    env: &'static str,
    file: &'static str,
) -> Result<Option<PasswordSource>, CliError> {
    match (r.string(env)?, r.string(file)?) {
        (Some(v), None) => Ok(Some(PasswordSource::Env(v))),
        (None, Some(p)) => Ok(Some(PasswordSource::File(resolve(base, &p)))),
        (Some(_), Some(p)) => Err(r.err(
            file,
            &toml::Value::String(p),
            format!("give either {env} or {file}, not both"),
        )),
        (None, None) => Ok(None),
    }
}

/// `[ci] type = "maven"` (the `type` key already read).
pub(super) fn read(mut c: Reader<'_>, base: &Path) -> Result<CiConfig, CliError> {
    let url = c.required_string(
        "url",
        "the repository URL, e.g. \"https://nexus.example.com/repository/releases/\"",
    )?;
    check_url(&c, "url", &url, &["http://", "https://"])?;
    let default = coordinates(&mut c, None)?;
    let user = c.string("username")?;
    let password = secret(&mut c, base, "password_env", "password_file")?;
    let token = secret(&mut c, base, "token_env", "token_file")?;
    let credentials =
        match (user, password, token) {
            (None, None, None) => None,
            (Some(user), Some(password), None) => Some(MavenCredentials::Basic { user, password }),
            (None, None, Some(t)) => Some(MavenCredentials::Bearer(t)),
            (Some(u), None, _) => {
                return Err(c.err(
                    "username",
                    &toml::Value::String(u),
                    "needs password_env or password_file",
                ))
            }
            (None, Some(_), _) => {
                return Err(c.missing("username", "password_env/password_file need a username"))
            }
            (Some(_), Some(_), Some(_)) => return Err(c.err(
                "token_env",
                &toml::Value::String(String::new()),
                "give either username with password_env/password_file or token_env/token_file, \
                 not both",
            )),
        };
    let stage = match (c.string("stage_dir")?, c.string("stage_url")?) {
        (Some(d), Some(u)) => {
            check_url(&c, "stage_url", &u, &["salt://", "http://", "https://"])?;
            Some((resolve(base, &d), u))
        }
        (None, None) => None,
        (Some(_), None) => {
            return Err(c.missing(
                "stage_url",
                "the URL minions fetch stage_dir from, e.g. \"salt://pushguide-maven/\"",
            ))
        }
        (None, Some(u)) => {
            return Err(c.err(
                "stage_url",
                &toml::Value::String(u),
                "needs stage_dir (the directory it serves)",
            ))
        }
    };
    if credentials.is_some() && stage.is_none() {
        return Err(c.missing(
            "stage_dir",
            "the repository needs credentials the minions do not have: set stage_dir (a \
             directory of the salt master's file roots) and stage_url (its salt:// URL)",
        ));
    }
    let mut templates = Vec::new();
    if let Some(t) = c.table("templates")? {
        for (name, v) in t {
            let key = format!("templates.{name}");
            pushguide_core::validate::name("template", name)
                .map_err(|e| invalid(&c, &key, name, &e))?;
            let toml::Value::Table(table) = v else {
                return Err(c.err(
                    &key,
                    v,
                    "must be a table of group, artifact, packaging, classifier, versions",
                ));
            };
            let prefix = c.path(&key);
            let mut r = Reader::new(c.file, &prefix, table);
            let a = coordinates(&mut r, Some(&default))?;
            r.finish("group, artifact, packaging, classifier, versions")?;
            templates.push((name.clone(), a));
        }
    }
    c.finish(
        "type, url, group, artifact, packaging, classifier, versions, username, password_env, \
         password_file, token_env, token_file, stage_dir, stage_url, templates (maven)",
    )?;
    Ok(CiConfig::Maven(Box::new(MavenCi {
        url,
        default,
        templates,
        credentials,
        stage,
    })))
}

/// The secret from `source`; errors name `ci.<key>` (never the secret).
fn read_secret(
    config_file: &Path,
    source: &PasswordSource,
    env_key: &str,
    file_key: &str,
) -> Result<String, CliError> {
    let err = |key: &str, value: String, reason: String| CliError::Config {
        file: config_file.display().to_string(),
        key: format!("ci.{key}"),
        value,
        reason,
    };
    match source {
        PasswordSource::Env(var) => std::env::var(var)
            .ok()
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                err(
                    env_key,
                    var.clone(),
                    "this environment variable is not set or empty".into(),
                )
            }),
        PasswordSource::File(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| {
                err(
                    file_key,
                    p.display().to_string(),
                    format!("cannot read the file: {e}"),
                )
            })?;
            let text = text.trim_end_matches(['\n', '\r']).to_owned();
            if text.is_empty() {
                return Err(err(
                    file_key,
                    p.display().to_string(),
                    "the file is empty".into(),
                ));
            }
            Ok(text)
        }
    }
}

impl MavenCi {
    /// The source, with its credentials read from their environment variable or file.
    /// `config_file` names the configuration in errors.
    pub fn source(&self, config_file: &Path) -> Result<pushguide_sources::MavenSource, CliError> {
        use pushguide_sources::{MavenAuth, MavenSource};
        let mut s = MavenSource::new(&self.url, self.default.clone())?;
        for (name, a) in &self.templates {
            s = s.template(name.clone(), a.clone())?;
        }
        match &self.credentials {
            None => {}
            Some(MavenCredentials::Basic { user, password }) => {
                let password = read_secret(config_file, password, "password_env", "password_file")?;
                s = s.auth(MavenAuth::Basic {
                    user: user.clone(),
                    password,
                });
            }
            Some(MavenCredentials::Bearer(token)) => {
                let token = read_secret(config_file, token, "token_env", "token_file")?;
                s = s.auth(MavenAuth::Bearer(token));
            }
        }
        if let Some((dir, url)) = &self.stage {
            s = s.stage_into(dir.clone(), url)?;
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::config::Config;

    const HEAD: &str = "store = \"s.db\"\ntemplates = \"t\"\n[user]\nname = \"a\"\n\
        [salt]\nendpoints = [\"http://s:8000\"]\neauth = \"pam\"\nuser = \"u\"\npassword_env = \"P\"\n";

    fn parse(ci: &str) -> Result<Config, String> {
        Config::parse(
            &format!("{HEAD}[ci]\ntype = \"maven\"\n{ci}"),
            Path::new("/etc/pg/pushguide.toml"),
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn a_complete_maven_section() {
        let c = parse(
            "url = \"https://nexus.example.com/repository/releases/\"\ngroup = \"com.example\"\n\
             packaging = \"war\"\nversions = \"2.*\"\nusername = \"deploy\"\n\
             password_file = \"maven.pw\"\nstage_dir = \"/srv/salt/pushguide-maven\"\n\
             stage_url = \"salt://pushguide-maven/\"\n\
             [ci.templates.shop-web]\nartifact = \"shop\"\nclassifier = \"dist\"\npackaging = \"zip\"\n",
        )
        .unwrap();
        let Some(CiConfig::Maven(m)) = c.ci else {
            panic!("{:?}", c.ci)
        };
        assert_eq!(m.url, "https://nexus.example.com/repository/releases/");
        assert_eq!(m.default.group, "com.example");
        assert_eq!(m.default.versions.as_deref(), Some("2.*"));
        assert_eq!(
            m.credentials,
            Some(MavenCredentials::Basic {
                user: "deploy".into(),
                password: PasswordSource::File("/etc/pg/maven.pw".into()),
            })
        );
        assert_eq!(
            m.stage,
            Some((
                "/srv/salt/pushguide-maven".into(),
                "salt://pushguide-maven/".into()
            ))
        );
        let (name, shop) = &m.templates[0];
        assert_eq!(name, "shop-web");
        assert_eq!(shop.group, "com.example");
        assert_eq!(shop.artifact.as_deref(), Some("shop"));
        assert_eq!(shop.packaging, Packaging::Zip);
        assert_eq!(shop.versions.as_deref(), Some("2.*"));
    }

    #[test]
    fn every_bad_value_names_its_key() {
        let url = "url = \"https://repo/\"\n";
        for (ci, key, says) in [
            ("group = \"com.example\"\n", "ci.url", "missing"),
            (url, "ci.group", "missing"),
            (
                "url = \"ftp://repo/\"\ngroup = \"g\"\n",
                "ci.url",
                "http://",
            ),
            ("group = \"com..x\"\n", "ci.group", "dot-separated"),
            (
                "group = \"g\"\npackaging = \"ear\"\n",
                "ci.packaging",
                "\"war\"",
            ),
            ("group = \"g\"\nartifact = \"../x\"\n", "ci.artifact", ".."),
            (
                "group = \"g\"\nclassifier = \"a;b\"\n",
                "ci.classifier",
                "shell metacharacter",
            ),
            (
                "group = \"g\"\nversions = \"$(x)\"\n",
                "ci.versions",
                "pattern",
            ),
            (
                "group = \"g\"\nusername = \"u\"\n",
                "ci.username",
                "password_env",
            ),
            (
                "group = \"g\"\npassword_env = \"P\"\n",
                "ci.username",
                "missing",
            ),
            (
                "group = \"g\"\ntoken_env = \"T\"\n",
                "ci.stage_dir",
                "credentials",
            ),
            (
                "group = \"g\"\ntoken_env = \"T\"\ntoken_file = \"f\"\n",
                "ci.token_file",
                "not both",
            ),
            (
                "group = \"g\"\nstage_dir = \"d\"\n",
                "ci.stage_url",
                "missing",
            ),
            (
                "group = \"g\"\nstage_dir = \"d\"\nstage_url = \"ftp://x/\"\n",
                "ci.stage_url",
                "salt://",
            ),
            (
                "group = \"g\"\ngroupid = \"g\"\n",
                "ci.groupid",
                "unknown key",
            ),
            (
                "group = \"g\"\n[ci.templates.web]\nclassifier = \"a b\"\n",
                "ci.templates.web.classifier",
                "not allowed",
            ),
            (
                "group = \"g\"\n[ci.templates.web]\nurl = \"x\"\n",
                "ci.templates.web.url",
                "unknown key",
            ),
            (
                "group = \"g\"\n[ci.templates.\"a/b\"]\ngroup = \"g\"\n",
                "ci.templates.a/b",
                "not allowed",
            ),
        ] {
            let text = if ci.starts_with("url") || ci.starts_with("group = \"com.example\"") {
                ci.to_owned()
            } else {
                format!("{url}{ci}")
            };
            let e = parse(&text).unwrap_err();
            assert!(
                e.contains(&format!("key `{key}`")) && e.contains(says),
                "{ci}: {e}"
            );
        }
    }

    #[test]
    fn secrets_come_from_env_or_file_and_are_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "tok-3x4mple\n").unwrap();
        let file = dir.path().join("pushguide.toml");
        let text = format!(
            "{HEAD}[ci]\ntype = \"maven\"\nurl = \"https://repo/\"\ngroup = \"g\"\n\
             token_file = \"token\"\nstage_dir = \"stage\"\nstage_url = \"salt://stage/\"\n"
        );
        let c = Config::parse(&text, &file).unwrap();
        let Some(CiConfig::Maven(m)) = &c.ci else {
            panic!()
        };
        let s = m.source(&file).unwrap();
        let shown = format!("{s:?} {c:?}");
        assert!(!shown.contains("tok-3x4mple"), "{shown}");
        let text = text.replace(
            "token_file = \"token\"",
            "token_env = \"PG_TEST_UNSET_MAVEN_TOKEN\"",
        );
        let c = Config::parse(&text, &file).unwrap();
        let Some(CiConfig::Maven(m)) = &c.ci else {
            panic!()
        };
        let e = m.source(&file).unwrap_err().to_string();
        assert!(
            e.contains("ci.token_env") && e.contains("PG_TEST_UNSET_MAVEN_TOKEN"),
            "{e}"
        );
    }
}
