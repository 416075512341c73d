//! What every command needs: the configuration, templates, the store, salt-api and the sources.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use pushguide_core::{
    Engine, MinionId, Principal, Returns, SaltCall, TargetExpr, Template, Transport, TransportError,
};
use pushguide_postgres::PgStore;
use pushguide_salt::SaltApi;
use pushguide_sources::{
    ArtifactSource, Cmdb, DirectorySource, HttpCmdb, HttpIndexSource, StaticCmdb,
};
use pushguide_store::{ServerStore, SqliteStore};

// Link every bundled project type (they register through `inventory`).
use pushguide_dotnet as _;
use pushguide_java as _;
use pushguide_wintask as _;

use crate::config::{CiConfig, CmdbConfig, Config};
use crate::error::CliError;
use crate::fence::{FencedTransport, LeaseWatch};

/// A loaded template and the file it came from.
#[derive(Debug)]
pub struct LoadedTemplate {
    /// The file.
    pub file: PathBuf,
    /// The template.
    pub template: Template,
}

/// A template file that does not load: listed as broken by `templates`, skipped by the commands
/// that go over every template (`history`, `monitor`), so one bad file breaks nothing else.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BrokenTemplate {
    /// The file.
    pub file: String,
    /// Why it does not load: one line, control characters escaped, cut after 300 characters.
    pub error: String,
}

impl BrokenTemplate {
    fn new(file: &std::path::Path, error: &CliError) -> Self {
        let error = match error {
            CliError::TemplateFile { error, .. } => error.to_string(),
            other => other.to_string(),
        };
        BrokenTemplate {
            file: file.display().to_string(),
            error: one_line(&error, 300),
        }
    }
}

/// `text` on one line: control characters (line ends included) escaped, cut after `max`
/// characters with `…`.
pub fn one_line(text: &str, max: usize) -> String {
    let mut out = String::new();
    for (n, c) in text.trim().chars().enumerate() {
        if n == max {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// The command context: configuration plus lazily opened backends.
#[derive(Debug)]
pub struct App {
    /// The configuration.
    pub config: Config,
    store: Option<Arc<SqliteStore>>,
    /// The PostgreSQL store, once connected ([`App::connect`]).
    pg: Option<PgStore>,
    /// The lease watch of the last engine built on PostgreSQL ([`App::lease_lost`]).
    watch: Option<Arc<LeaseWatch>>,
    /// The command being run (named by [`CliError::SqliteOnly`]).
    pub command: &'static str,
    /// Target expressions resolved for the CMDB merge and what they resolved to.
    resolved: ResolvedTargets,
}

impl App {
    /// A context over `config`.
    pub fn new(config: Config) -> Self {
        App {
            config,
            store: None,
            pg: None,
            watch: None,
            command: "",
            resolved: Arc::default(),
        }
    }

    /// The acting user.
    pub fn principal(&self) -> &Principal {
        &self.config.principal
    }

    /// The SQLite store (opened on first use; the directory is created). With a PostgreSQL store
    /// configured: [`CliError::SqliteOnly`] naming [`App::command`] — commands that need the
    /// SQLite-only tables (users, tokens, statistics, the web service) never fall back to a local
    /// file.
    pub fn store(&mut self) -> Result<Arc<SqliteStore>, CliError> {
        if let Some(s) = &self.store {
            return Ok(s.clone());
        }
        if let Some(pg) = &self.config.postgres {
            return Err(CliError::SqliteOnly {
                command: if self.command.is_empty() {
                    "this command"
                } else {
                    self.command
                },
                store: pg.endpoint(),
            });
        }
        if let Some(dir) = self
            .config
            .store
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir).map_err(|e| CliError::Config {
                file: self.config.file.display().to_string(),
                key: "store".into(),
                value: self.config.store.display().to_string(),
                reason: format!("cannot create its directory: {e}"),
            })?;
        }
        let mut options = pushguide_store::StoreOptions::default();
        if let Some(ttl) = self.config.store_lease_ttl {
            options = options.lease_ttl(ttl);
        }
        let store = Arc::new(SqliteStore::open_with(&self.config.store, options)?);
        self.store = Some(store.clone());
        Ok(store)
    }

    /// The configured store as the web service and the commands over its records use it
    /// (`serve`, `user add`, `token add`, `stats`, `log`, `watch`, `monitor`): the SQLite file
    /// (opened on first use, see [`App::store`]) or PostgreSQL.
    pub async fn server_store(&mut self) -> Result<Arc<dyn ServerStore>, CliError> {
        match self.postgres().await? {
            None => Ok(self.store()?),
            Some(pg) => Ok(Arc::new(pg)),
        }
    }

    /// The configured store as messages name it: the SQLite file's path, or PostgreSQL's
    /// `host:port/database` (no user, no password).
    pub fn store_name(&self) -> String {
        match &self.config.postgres {
            Some(pg) => format!("PostgreSQL {}", pg.endpoint()),
            None => self.config.store.display().to_string(),
        }
    }

    /// Whether the configured store is PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        self.config.postgres.is_some()
    }

    /// Opens the configured store: connects to PostgreSQL (migrating it, see
    /// [`PgStore::connect`]) or opens the SQLite file. Commands that run on either call this before
    /// [`App::engine`].
    pub async fn connect(&mut self) -> Result<(), CliError> {
        match &self.config.postgres {
            None => self.store().map(drop),
            Some(_) if self.pg.is_some() => Ok(()),
            Some(cfg) => {
                self.pg = Some(PgStore::connect(cfg).await?);
                Ok(())
            }
        }
    }

    /// Uses `pg`, connected already, as the configured PostgreSQL store (the web service's
    /// deployments share the service's pool instead of connecting each).
    pub fn share_postgres(&mut self, pg: PgStore) {
        self.pg = Some(pg);
    }

    /// The PostgreSQL store, connected ([`App::connect`]); `None` with SQLite.
    pub async fn postgres(&mut self) -> Result<Option<PgStore>, CliError> {
        if self.config.postgres.is_none() {
            return Ok(None);
        }
        self.connect().await?;
        Ok(self.pg.clone())
    }

    /// Why the deployment of the last engine built on PostgreSQL lost its lease, if it did.
    pub fn lease_lost(&self) -> Option<String> {
        self.watch.as_ref().and_then(|w| w.lost())
    }

    /// Gives back the PostgreSQL store's leases and removes this instance's record (at the end of
    /// a command; a process that dies instead leaves them to expire).
    pub async fn close(&mut self) {
        if let Some(pg) = self.pg.take() {
            if let Err(e) = pg.close().await {
                tracing::warn!(error = %e, "closing the PostgreSQL store");
            }
        }
    }

    /// The salt-api client.
    pub fn salt(&self) -> Result<Arc<SaltApi>, CliError> {
        let settings = self.config.salt_settings()?;
        SaltApi::new(settings)
            .map(Arc::new)
            .map_err(|e| CliError::Salt(e.to_string()))
    }

    /// An engine over salt-api and the store (history, fleet state, leases, minion status). A target
    /// expression that [`App::with_cmdb`] resolved resolves to the same hosts for the engine.
    ///
    /// On PostgreSQL ([`App::connect`] first) every salt call of the engine's deployment first
    /// checks its lease ([`crate::fence`]).
    pub fn engine(&mut self) -> Result<Engine, CliError> {
        let salt = Arc::new(Resolved {
            salt: self.salt()?,
            resolved: self.resolved.clone(),
        });
        if self.config.postgres.is_some() {
            let pg = self.pg.clone().ok_or_else(|| {
                CliError::Internal("the PostgreSQL store is not connected".into())
            })?;
            let ttl = self
                .config
                .postgres
                .as_ref()
                .map_or(Duration::from_secs(30), |c| c.lease_ttl);
            let watch = Arc::new(LeaseWatch::new(pg, ttl));
            self.watch = Some(watch.clone());
            let transport = Arc::new(FencedTransport::new(salt, watch.clone()));
            return Ok(Engine::builder(transport)
                .history(watch.clone())
                .fleet_state(watch.clone())
                .leases(watch.clone())
                .minion_status(watch)
                .step_jobs(self.config.step_jobs)
                .build());
        }
        let store = self.store()?;
        Ok(Engine::builder(salt)
            .history(store.clone())
            .fleet_state(store.clone())
            .leases(store.clone())
            .minion_status(store)
            .step_jobs(self.config.step_jobs)
            .build())
    }

    /// The CI source, if configured.
    pub fn artifact_source(&self) -> Result<Option<Box<dyn ArtifactSource>>, CliError> {
        Ok(match &self.config.ci {
            None => None,
            Some(CiConfig::Http { url, token_env }) => {
                let mut s = HttpIndexSource::new(url)?;
                if let Some(t) = token_env.as_deref().and_then(|v| std::env::var(v).ok()) {
                    s = s.bearer_token(t);
                }
                Some(Box::new(s))
            }
            Some(CiConfig::Directory { path, url_base }) => {
                Some(Box::new(DirectorySource::new(path.clone(), url_base)?))
            }
            Some(CiConfig::Maven(m)) => Some(Box::new(m.source(&self.config.file)?)),
        })
    }

    /// The CMDB, if configured.
    pub fn cmdb(&self) -> Result<Option<Box<dyn Cmdb>>, CliError> {
        Ok(match &self.config.cmdb {
            None => None,
            Some(CmdbConfig::Http { url, token_env }) => {
                let mut c = HttpCmdb::new(url)?;
                if let Some(t) = token_env.as_deref().and_then(|v| std::env::var(v).ok()) {
                    c = c.bearer_token(t);
                }
                Some(Box::new(c))
            }
            Some(CmdbConfig::Static { path }) => Some(Box::new(StaticCmdb::load(path)?)),
            Some(CmdbConfig::Salt {
                pillar_key,
                grains,
                endpoints,
                batch,
                timeout,
                unmask,
            }) => {
                let mut settings = self.config.salt_settings()?;
                if let Some(e) = endpoints {
                    settings.endpoints.clone_from(e);
                }
                let api = SaltApi::new(settings).map_err(|e| CliError::Salt(e.to_string()))?;
                let mut c = pushguide_salt::SaltCmdb::new(api)
                    .pillar_key(pillar_key)?
                    .batch(*batch)
                    .unmask(*unmask);
                for (setting, grain) in grains {
                    c = c.grain(setting, grain)?;
                }
                if let Some(t) = timeout {
                    c = c.timeout(*t);
                }
                Some(Box::new(c))
            }
        })
    }

    fn template_files(&self) -> Result<Vec<PathBuf>, CliError> {
        let dir = &self.config.templates;
        let entries = std::fs::read_dir(dir).map_err(|e| CliError::Config {
            file: self.config.file.display().to_string(),
            key: "templates".into(),
            value: dir.display().to_string(),
            reason: format!("cannot read the templates directory: {e}"),
        })?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
            .collect();
        files.sort();
        Ok(files)
    }

    fn load_file(file: PathBuf) -> Result<LoadedTemplate, CliError> {
        let template = Template::load(&file).map_err(|error| CliError::TemplateFile {
            file: file.display().to_string(),
            error,
        })?;
        Ok(LoadedTemplate { file, template })
    }

    /// Every template of the templates directory, sorted by name, and the files that do not load
    /// (sorted by file). Only an unreadable templates directory is an error.
    pub fn scan_templates(&self) -> Result<(Vec<LoadedTemplate>, Vec<BrokenTemplate>), CliError> {
        let mut all = Vec::new();
        let mut broken = Vec::new();
        for file in self.template_files()? {
            match Self::load_file(file.clone()) {
                Ok(t) => all.push(t),
                Err(e) => {
                    tracing::warn!(file = %file.display(), error = %e, "skipping a broken template file");
                    broken.push(BrokenTemplate::new(&file, &e));
                }
            }
        }
        all.sort_by(|a, b| a.template.name.cmp(&b.template.name));
        Ok((all, broken))
    }

    /// Every template of the templates directory that loads, sorted by name (broken files are
    /// skipped: see [`App::scan_templates`]).
    pub fn templates(&self) -> Result<Vec<LoadedTemplate>, CliError> {
        Ok(self.scan_templates()?.0)
    }

    /// The template `name`: `<templates>/<name>.toml`, else the file whose `name` is `name`.
    pub fn template(&self, name: &str) -> Result<LoadedTemplate, CliError> {
        let direct = self.config.templates.join(format!("{name}.toml"));
        let ok_name = !name.contains(['/', '\\']) && !name.starts_with('.');
        if ok_name && direct.is_file() {
            let t = Self::load_file(direct)?;
            if t.template.name == name {
                return Ok(t);
            }
        }
        let all = self.templates()?;
        let known: Vec<String> = all.iter().map(|t| t.template.name.clone()).collect();
        all.into_iter()
            .find(|t| t.template.name == name)
            .ok_or_else(|| CliError::UnknownTemplate {
                name: name.to_owned(),
                dir: self.config.templates.display().to_string(),
                known,
            })
    }

    /// Fails unless the user may view the template.
    pub fn check_view(&self, t: &LoadedTemplate) -> Result<(), CliError> {
        if t.template.acl.may_view(self.principal()) {
            Ok(())
        } else {
            Err(self.forbidden(t, "view"))
        }
    }

    /// Fails unless the user may deploy the template.
    pub fn check_deploy(&self, t: &LoadedTemplate) -> Result<(), CliError> {
        if t.template.acl.may_deploy(self.principal()) {
            Ok(())
        } else {
            Err(self.forbidden(t, "deploy"))
        }
    }

    fn forbidden(&self, t: &LoadedTemplate, action: &str) -> CliError {
        CliError::Forbidden {
            user: self.principal().user.clone(),
            action: action.into(),
            template: t.template.name.clone(),
            file: t.file.display().to_string(),
        }
    }

    /// Fails with [`CliError::Busy`] when a live lease is held on the template.
    pub fn check_not_busy(&mut self, template: &str) -> Result<(), CliError> {
        if let Some(lease) = self.store()?.lease(template)? {
            if lease.expires > SystemTime::now() {
                return Err(CliError::Busy {
                    template: template.to_owned(),
                    holder: lease.holder,
                    owner: lease.owner,
                });
            }
        }
        Ok(())
    }

    /// Fails with [`CliError::Busy`] when a live lease is held on the template, in the configured
    /// store (SQLite or PostgreSQL).
    pub async fn check_free(&mut self, template: &str) -> Result<(), CliError> {
        let Some(pg) = self.postgres().await? else {
            return self.check_not_busy(template);
        };
        match pg.lease(template).await? {
            Some(lease) => Err(CliError::Busy {
                template: template.to_owned(),
                holder: lease.holder,
                owner: lease.owner,
            }),
            None => Ok(()),
        }
    }

    /// The template with the CMDB settings of its targets merged in (unchanged without a CMDB). A
    /// target expression is resolved through salt first (read-only), and the engine later gets the
    /// same hosts for it ([`App::engine`]): the deployment reaches exactly the hosts whose settings
    /// were merged, and no other host's settings are read.
    pub async fn with_cmdb(&self, t: LoadedTemplate) -> Result<LoadedTemplate, CliError> {
        let Some(cmdb) = self.cmdb()? else {
            return Ok(t);
        };
        let hosts: Vec<MinionId> = match t.template.targets.expression() {
            None => t
                .template
                .targets
                .minions
                .iter()
                .filter_map(|m| MinionId::new(m).ok())
                .collect(),
            Some(expr) => {
                let hosts = self.salt()?.resolve(&expr).await.map_err(|source| {
                    CliError::Core(pushguide_core::Error::Transport {
                        during: "resolving the template's targets for the CMDB",
                        source,
                    })
                })?;
                self.resolved
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push((expr, hosts.clone()));
                hosts
            }
        };
        if hosts.is_empty() {
            // nothing matched: the engine says so; an empty list would ask the CMDB for every host
            return Ok(t);
        }
        let template = pushguide_sources::apply_from(&*cmdb, &t.template, &hosts).await?;
        Ok(LoadedTemplate {
            file: t.file,
            template,
        })
    }
}

/// Target expressions and the hosts each resolved to, shared by [`App`] and its engine's transport.
type ResolvedTargets = Arc<Mutex<Vec<(TargetExpr, Vec<MinionId>)>>>;

/// The salt-api client, answering a target expression that [`App::with_cmdb`] resolved with the
/// hosts it resolved to.
struct Resolved {
    salt: Arc<SaltApi>,
    resolved: ResolvedTargets,
}

#[pushguide_core::async_trait]
impl Transport for Resolved {
    async fn call(&self, targets: &[MinionId], call: &SaltCall) -> Result<Returns, TransportError> {
        self.salt.call(targets, call).await
    }

    async fn resolve(&self, target: &TargetExpr) -> Result<Vec<MinionId>, TransportError> {
        let known = self
            .resolved
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|(e, _)| e == target)
            .map(|(_, hosts)| hosts.clone());
        match known {
            Some(hosts) => Ok(hosts),
            None => self.salt.resolve(target).await,
        }
    }
}
