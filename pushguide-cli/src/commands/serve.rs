//! `user add` and `serve`: the web service's accounts, and the service itself.

use std::io::BufRead;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use pushguide_core::{MinionId, Returns, SaltCall, TargetExpr, Transport, TransportError};
use pushguide_salt::{SaltApi, SaltApiSettings};
use pushguide_server::{
    Catalog, CatalogEntry, CatalogError, EndpointCheck, Metrics, SaltHealth, Server, ServerConfig,
};
use pushguide_store::SessionLimits;

use crate::app::App;
use crate::config::Config;
use crate::error::CliError;
use crate::results::{TokenAdded, UserAdded};
use crate::signals::StopSignals;

/// Where `user add` reads the password.
#[derive(Debug)]
pub enum PasswordInput<R> {
    /// The first line of this reader (stdin).
    Reader(R),
    /// The value of this environment variable.
    Env(String),
}

/// The longest password accepted.
const PASSWORD_MAX: usize = 1024;

fn check_name(name: &str) -> Result<(), CliError> {
    let ok = !name.is_empty()
        && name.chars().count() <= 128
        && !name.chars().any(|c| c.is_control() || c.is_whitespace());
    if ok {
        Ok(())
    } else {
        Err(CliError::Usage(format!(
            "user name {}: must be 1 to 128 characters without spaces or control characters",
            pushguide_core::validate::quote(name)
        )))
    }
}

fn read_password<R: BufRead>(input: PasswordInput<R>) -> Result<String, CliError> {
    let password = match input {
        PasswordInput::Env(var) => std::env::var(&var).map_err(|_| {
            CliError::Usage(format!(
                "--password-env {}: this environment variable is not set or not UTF-8",
                pushguide_core::validate::quote(&var)
            ))
        })?,
        PasswordInput::Reader(mut r) => {
            let mut line = String::new();
            r.read_line(&mut line).map_err(|e| {
                CliError::Usage(format!("cannot read the password from stdin: {e}"))
            })?;
            line.trim_end_matches(['\n', '\r']).to_owned()
        }
    };
    if password.is_empty() {
        return Err(CliError::Usage("the password is empty".into()));
    }
    if password.len() > PASSWORD_MAX {
        return Err(CliError::Usage(format!(
            "the password is longer than {PASSWORD_MAX} bytes"
        )));
    }
    Ok(password)
}

/// `user add NAME --groups a,b [--password-env VAR] [--replace]`: stores NAME with an argon2id
/// hash of the password (never taken from the command line). An existing user is refused unless
/// `replace`; replacing ends the user's sessions.
pub async fn user_add<R: BufRead>(
    app: &mut App,
    name: &str,
    groups: &[String],
    password: PasswordInput<R>,
    replace: bool,
) -> Result<UserAdded, CliError> {
    check_name(name)?;
    for g in groups {
        check_name(g).map_err(|_| {
            CliError::Usage(format!(
                "group {}: must be 1 to 128 characters without spaces or control characters",
                pushguide_core::validate::quote(g)
            ))
        })?;
    }
    let store = app.server_store().await?;
    let existed = store.user(name).await?.is_some();
    if existed && !replace {
        return Err(exists(name, app));
    }
    let password = read_password(password)?;
    let hash = pushguide_server::auth::hash_password(&password)
        .map_err(|e| CliError::Internal(e.to_string()))?;
    match store
        .put_user(name, &hash, groups, replace, SystemTime::now())
        .await
    {
        Err(pushguide_store::Error::UserExists { .. }) => return Err(exists(name, app)),
        other => other?,
    }
    Ok(UserAdded {
        user: name.to_owned(),
        groups: groups.to_vec(),
        replaced: existed,
    })
}

fn exists(name: &str, app: &App) -> CliError {
    CliError::Usage(format!(
        "user `{name}` exists already in {}; add --replace to replace its password and groups",
        app.store_name()
    ))
}

/// `token add USER --label L [--expires-days N]`: an API token acting as USER, printed once; the
/// store keeps its SHA-256.
pub async fn token_add(
    app: &mut App,
    user: &str,
    label: &str,
    expires_days: Option<u32>,
) -> Result<TokenAdded, CliError> {
    use pushguide_server::tokens;
    tokens::check_label(label).map_err(|e| CliError::Usage(format!("--label: {e}")))?;
    let lifetime = expires_days
        .map(tokens::check_expires_days)
        .transpose()
        .map_err(|e| CliError::Usage(format!("--expires-days: {e}")))?;
    let store = app.server_store().await?;
    if store.user(user).await?.is_none() {
        return Err(CliError::Usage(format!(
            "no user {} in {}; add it with `pushguide user add`",
            pushguide_core::validate::quote(user),
            app.store_name()
        )));
    }
    let new = tokens::new_api_token().map_err(|e| CliError::Internal(e.to_string()))?;
    let now = SystemTime::now();
    let row = store
        .create_api_token(
            &new.id,
            &tokens::token_sha256(&new.token),
            user,
            label.trim(),
            now,
            lifetime.map(|l| now + l),
        )
        .await?;
    // the actor is the command line's user (`[user] name`), the target the new token
    store
        .append_audit(&pushguide_store::AuditEntry::new(
            &app.config.principal.user,
            None,
            "token.create",
            &row.id,
            &format!("{} of {} (pushguide token add)", row.label, row.user),
        ))
        .await?;
    Ok(TokenAdded {
        id: row.id,
        user: row.user,
        label: row.label,
        expires: row.expires.map(pushguide_server::rfc3339),
        token: new.token,
    })
}

/// The templates directory of a configuration, read again on every request.
#[derive(Debug)]
struct TemplateDir {
    config: Config,
}

impl Catalog for TemplateDir {
    fn scan(&self) -> Result<Vec<CatalogEntry>, CatalogError> {
        let (good, broken) = App::new(self.config.clone()).scan_templates()?;
        Ok(good
            .into_iter()
            .map(|t| CatalogEntry::Loaded {
                file: t.file,
                template: Box::new(t.template),
            })
            .chain(broken.into_iter().map(|b| CatalogEntry::Broken {
                file: b.file,
                error: b.error,
            }))
            .collect())
    }

    fn dir(&self) -> Option<std::path::PathBuf> {
        Some(self.config.templates.clone())
    }
}

/// The service's salt-api client, timing each request into the salt request latency metric under
/// the endpoint it goes to first (the first one not cooling down after a failure).
struct TimedSalt {
    salt: Arc<SaltApi>,
    metrics: Arc<Metrics>,
}

impl TimedSalt {
    fn endpoint(&self) -> String {
        let health = self.salt.endpoint_health();
        health
            .iter()
            .find(|e| e.available)
            .or(health.first())
            .map(|e| e.url.clone())
            .unwrap_or_default()
    }
}

#[pushguide_core::async_trait]
impl Transport for TimedSalt {
    async fn call(&self, targets: &[MinionId], call: &SaltCall) -> Result<Returns, TransportError> {
        let (endpoint, begun) = (self.endpoint(), Instant::now());
        let r = self.salt.call(targets, call).await;
        self.metrics
            .salt_request(&endpoint, begun.elapsed().as_secs_f64());
        r
    }

    async fn resolve(&self, target: &TargetExpr) -> Result<Vec<MinionId>, TransportError> {
        let (endpoint, begun) = (self.endpoint(), Instant::now());
        let r = self.salt.resolve(target).await;
        self.metrics
            .salt_request(&endpoint, begun.elapsed().as_secs_f64());
        r
    }
}

/// How long `/healthz` reuses its last probe of the salt-api endpoints (a load balancer asking
/// every second does not log in to salt every second).
const HEALTH_REUSE: Duration = Duration::from_secs(5);

/// The health probe of `/healthz`: each configured salt-api endpoint on its own, with a new client
/// (no held token), logs in.
struct EndpointLogins {
    settings: SaltApiSettings,
    last: Mutex<Option<(Instant, Vec<EndpointCheck>)>>,
}

impl EndpointLogins {
    async fn probe(settings: SaltApiSettings) -> EndpointCheck {
        let endpoint = settings.endpoints.first().cloned().unwrap_or_default();
        let begun = Instant::now();
        let result = match SaltApi::new(settings) {
            Ok(client) => client.login().await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        EndpointCheck {
            endpoint,
            ok: result.is_ok(),
            error: result.err(),
            secs: begun.elapsed().as_secs_f64(),
        }
    }
}

#[pushguide_core::async_trait]
impl SaltHealth for EndpointLogins {
    async fn check(&self) -> Vec<EndpointCheck> {
        if let Some((at, checks)) = &*self.last.lock().unwrap_or_else(PoisonError::into_inner) {
            if at.elapsed() < HEALTH_REUSE {
                return checks.clone();
            }
        }
        let probes = self.settings.endpoints.iter().map(|e| {
            let mut one = self.settings.clone();
            one.endpoints = vec![e.clone()];
            Self::probe(one)
        });
        let mut checks = Vec::new();
        for p in probes {
            checks.push(p.await);
        }
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((Instant::now(), checks.clone()));
        checks
    }
}

/// The health probe when the salt-api settings are unusable: one failing check saying why.
struct Unconfigured(String);

#[pushguide_core::async_trait]
impl SaltHealth for Unconfigured {
    async fn check(&self) -> Vec<EndpointCheck> {
        vec![EndpointCheck {
            endpoint: "salt-api".into(),
            ok: false,
            error: Some(self.0.clone()),
            secs: 0.0,
        }]
    }
}

/// `serve`: the web service on `[server] listen` until Ctrl-C, SIGTERM or SIGHUP; requests under
/// way are finished first.
pub async fn serve(app: &mut App) -> Result<(), CliError> {
    let settings = app.config.server.clone();
    let store = app.server_store().await?;
    let mut config = ServerConfig::default();
    config.public_url = settings.public_url.clone();
    config.session = SessionLimits {
        idle: settings.session_idle,
        max: settings.session_max,
    };
    config.admin_groups = settings.admin_groups.clone();
    config.auth = settings.auth.clone();
    let catalog = Arc::new(TemplateDir {
        config: app.config.clone(),
    });
    let mut signals = StopSignals::new();
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .map_err(|e| CliError::Config {
            file: app.config.file.display().to_string(),
            key: "server.listen".into(),
            value: settings.listen.to_string(),
            reason: format!("cannot listen there: {e}"),
        })?;
    tracing::info!(listen = %settings.listen, "pushguide serve: listening");
    let launcher = Arc::new(super::launch::ConfigLauncher {
        config: app.config.clone(),
        pg: app.postgres().await?,
    });
    let hooks = pushguide_server::Webhooks::start(
        settings.webhooks.clone(),
        settings.public_url.clone(),
        pushguide_server::Delivery::default(),
        Arc::new(super::webhook_sender::ReqwestSender::default()),
    );
    if !hooks.is_empty() {
        tracing::info!(hooks = hooks.len(), "webhooks on");
    }
    let mut server = Server::new(store, catalog, config)
        .launcher(launcher)
        .workers(settings.workers)
        .webhooks(hooks);
    // salt-api: the monitor pings through it, /healthz logs in to each endpoint
    match app.config.salt_settings() {
        Ok(salt_settings) => {
            let salt: Arc<dyn Transport> = Arc::new(TimedSalt {
                salt: app.salt()?,
                metrics: server.metrics(),
            });
            server = server.transport(salt).salt_health(Arc::new(EndpointLogins {
                settings: salt_settings,
                last: Mutex::new(None),
            }));
        }
        Err(e) => {
            tracing::warn!(error = %e, "no salt-api: the minion monitor is off and /healthz fails");
            server = server.salt_health(Arc::new(Unconfigured(e.to_string())));
        }
    }
    let monitor = server.spawn_monitor(settings.monitor_interval, app.config.monitor_timeout);
    let (router, workers) = server.start();
    let served =
        pushguide_server::serve(listener, router, async move { signals.recv().await }).await;
    tracing::info!("pushguide serve: stopping the workers");
    workers.stop().await;
    if let Some(m) = monitor {
        m.stop().await;
    }
    // PostgreSQL: this instance's record goes, its leases are given back
    app.close().await;
    served.map_err(|e| match e {
        pushguide_server::Error::Store(e) => CliError::Store(e),
        other => CliError::Internal(other.to_string()),
    })?;
    tracing::info!("pushguide serve: stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_password_is_the_first_line_and_not_empty() {
        let r = |s: &'static str| read_password(PasswordInput::Reader(s.as_bytes()));
        assert_eq!(r("pw one\nignored\n").unwrap(), "pw one");
        assert_eq!(r("pw\r\n").unwrap(), "pw");
        assert!(matches!(r("\n"), Err(CliError::Usage(_))));
        assert!(matches!(r(""), Err(CliError::Usage(_))));
        let long: &'static str = Box::leak("x".repeat(2000).into_boxed_str());
        assert!(matches!(r(long), Err(CliError::Usage(_))));
        let e =
            read_password::<&[u8]>(PasswordInput::Env("PG_NO_SUCH_VAR_9431".into())).unwrap_err();
        assert!(e.to_string().contains("PG_NO_SUCH_VAR_9431"), "{e}");
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("alice").is_ok());
        for bad in ["", "a b", "a\nb", &"x".repeat(129)] {
            assert!(
                matches!(check_name(bad), Err(CliError::Usage(_))),
                "{bad:?}"
            );
        }
    }
}
