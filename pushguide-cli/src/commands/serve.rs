//! `user add` and `serve`: the web service's accounts, and the service itself.

use std::io::BufRead;
use std::sync::Arc;
use std::time::SystemTime;

use pushguide_server::{Catalog, CatalogEntry, CatalogError, ServerConfig};
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
pub fn user_add<R: BufRead>(
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
    let store = app.store()?;
    let existed = store.user(name)?.is_some();
    if existed && !replace {
        return Err(exists(name, &store));
    }
    let password = read_password(password)?;
    let hash = pushguide_server::auth::hash_password(&password)
        .map_err(|e| CliError::Internal(e.to_string()))?;
    match store.put_user(name, &hash, groups, replace, SystemTime::now()) {
        Err(pushguide_store::Error::UserExists { .. }) => return Err(exists(name, &store)),
        other => other?,
    }
    Ok(UserAdded {
        user: name.to_owned(),
        groups: groups.to_vec(),
        replaced: existed,
    })
}

fn exists(name: &str, store: &pushguide_store::SqliteStore) -> CliError {
    CliError::Usage(format!(
        "user `{name}` exists already in {}; add --replace to replace its password and groups",
        store.path().display()
    ))
}

/// `token add USER --label L [--expires-days N]`: an API token acting as USER, printed once; the
/// store keeps its SHA-256.
pub fn token_add(
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
    let store = app.store()?;
    if store.user(user)?.is_none() {
        return Err(CliError::Usage(format!(
            "no user {} in {}; add it with `pushguide user add`",
            pushguide_core::validate::quote(user),
            store.path().display()
        )));
    }
    let new = tokens::new_api_token().map_err(|e| CliError::Internal(e.to_string()))?;
    let now = SystemTime::now();
    let row = store.create_api_token(
        &new.id,
        &tokens::token_sha256(&new.token),
        user,
        label.trim(),
        now,
        lifetime.map(|l| now + l),
    )?;
    // the actor is the command line's user (`[user] name`), the target the new token
    store.append_audit(&pushguide_store::AuditEntry::new(
        &app.config.principal.user,
        None,
        "token.create",
        &row.id,
        &format!("{} of {} (pushguide token add)", row.label, row.user),
    ))?;
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
}

/// `serve`: the web service on `[server] listen` until Ctrl-C, SIGTERM or SIGHUP; requests under
/// way are finished first.
pub async fn serve(app: &mut App) -> Result<(), CliError> {
    let settings = app.config.server.clone();
    let store = app.store()?;
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
    });
    let mut server = pushguide_server::Server::new(store, catalog, config)
        .launcher(launcher)
        .workers(settings.workers);
    if let Ok(salt) = app.salt() {
        server = server.transport(salt);
    }
    let (router, workers) = server.start();
    let served =
        pushguide_server::serve(listener, router, async move { signals.recv().await }).await;
    tracing::info!("pushguide serve: stopping the workers");
    workers.stop().await;
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
