//! The CLI's error type and its exit codes.

use serde::Serialize;

/// Exit codes (see the crate documentation for the table).
pub mod exit {
    /// The command succeeded (a deployment succeeded; a rollback rolled every host back).
    pub const OK: u8 = pushguide_server::outcome::exit::OK;
    /// A deployment was partially applied (failures within the budget, or excluded hosts).
    pub const PARTIALLY_APPLIED: u8 = pushguide_server::outcome::exit::PARTIALLY_APPLIED;
    /// A deployment failed (stopped early, not rolled back).
    pub const FAILED: u8 = pushguide_server::outcome::exit::FAILED;
    /// A deployment failed and was rolled back.
    pub const ROLLED_BACK: u8 = pushguide_server::outcome::exit::ROLLED_BACK;
    /// A rollback failed on at least one host.
    pub const ROLLBACK_FAILED: u8 = pushguide_server::outcome::exit::ROLLBACK_FAILED;
    /// The deployment was cancelled (Ctrl-C, SIGTERM).
    pub const CANCELLED: u8 = pushguide_server::outcome::exit::CANCELLED;
    /// The deployment's process died (`watch` of a deployment marked interrupted by `recover`).
    pub const INTERRUPTED: u8 = pushguide_server::outcome::exit::INTERRUPTED;
    /// `install-module`: a targeted minion did not install the pushguide salt module (or no minion
    /// matched the target).
    pub const MODULE_NOT_INSTALLED: u8 = 8;
    /// Usage or configuration error (bad option, bad config key, bad template file, bad value).
    pub const USAGE: u8 = 64;
    /// The user may not do this.
    pub const FORBIDDEN: u8 = 65;
    /// Another deployment of the template is running (lease held).
    pub const BUSY: u8 = 66;
    /// Unknown template, version or deployment id.
    pub const UNKNOWN: u8 = 67;
    /// salt-api, the CI source or the CMDB could not be reached or answered badly.
    pub const UNAVAILABLE: u8 = 69;
    /// Internal error (store, unexpected failure).
    pub const INTERNAL: u8 = pushguide_server::outcome::exit::INTERNAL;
}

/// A value from the command line or a file as an error message shows it: control and invisible
/// characters escaped, cut after 200 characters (see `pushguide_core::validate::clean`).
fn shown(value: &str) -> String {
    pushguide_core::validate::clean(value, pushguide_core::validate::MAX_SHOWN_CHARS)
}

/// Everything a command can fail with. The message names the file, key, template, version or id at
/// fault; [`CliError::exit_code`] maps it to the documented exit code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// A bad command line.
    #[error("{0}")]
    Usage(String),
    /// The configuration file cannot be read or parsed.
    #[error("config {file}: {reason}")]
    ConfigFile {
        /// The file.
        file: String,
        /// Why.
        reason: String,
    },
    /// A configuration key has a bad value (or is unknown or missing).
    #[error("config {file}: key `{}` = \"{}\": {reason}", shown(key), shown(value))]
    Config {
        /// The file.
        file: String,
        /// The key's path, e.g. `salt.job_timeout`.
        key: String,
        /// The value found (empty when missing; never a password).
        value: String,
        /// Why.
        reason: String,
    },
    /// A template file is broken.
    #[error("template file {file}: {error}")]
    TemplateFile {
        /// The file.
        file: String,
        /// The template error (names the field and value).
        error: pushguide_core::Error,
    },
    /// No template of that name in the templates directory.
    #[error("unknown template `{}` in {dir}; known templates: {}", shown(name), if known.is_empty() { "(none)".to_owned() } else { known.join(", ") })]
    UnknownTemplate {
        /// The name asked for.
        name: String,
        /// The templates directory.
        dir: String,
        /// Templates found.
        known: Vec<String>,
    },
    /// The CI source has no such version.
    #[error("unknown version `{}` of template `{}` in {source_name}{}", shown(version), shown(template), if known.is_empty() { String::new() } else { format!("; newest versions: {}", known.join(", ")) })]
    UnknownVersion {
        /// The template.
        template: String,
        /// The version asked for.
        version: String,
        /// The CI source.
        source_name: String,
        /// Some known versions, newest first.
        known: Vec<String>,
    },
    /// No deployment with that id in the store.
    #[error("unknown deployment `{}` in store {store}", shown(id))]
    UnknownDeployment {
        /// The id.
        id: String,
        /// The store file.
        store: String,
    },
    /// The user may not perform the action.
    #[error("user `{user}` may not {action} template `{template}` (see its [acl] in {file})")]
    Forbidden {
        /// The user.
        user: String,
        /// What was attempted.
        action: String,
        /// The template.
        template: String,
        /// The template file.
        file: String,
    },
    /// Another deployment holds the template's lease.
    #[error("template `{template}` is busy: deployment {holder} is running{}; try again when it ends (`pushguide watch {holder}`)", if owner.is_empty() { String::new() } else { format!(" (process {owner})") })]
    Busy {
        /// The template.
        template: String,
        /// The holding deployment.
        holder: String,
        /// The holding process, when known.
        owner: String,
    },
    /// No CI source is configured but the command needs one.
    #[error("config {file}: no [ci] table: `{command}` needs a CI source")]
    NoCiSource {
        /// The config file.
        file: String,
        /// The command.
        command: String,
    },
    /// An error of the engine.
    #[error("{0}")]
    Core(pushguide_core::Error),
    /// An error of a CI source or the CMDB.
    #[error("{0}")]
    Source(pushguide_sources::Error),
    /// An error of the store.
    #[error("store: {0}")]
    Store(pushguide_store::Error),
    /// salt-api client settings.
    #[error("salt-api: {0}")]
    Salt(String),
    /// Anything else.
    #[error("{0}")]
    Internal(String),
    /// The command needs tables only the SQLite store has, and the configured store is PostgreSQL.
    #[error(
        "`pushguide {command}` needs a SQLite store in this version; the configured store is \
         PostgreSQL {store} (on PostgreSQL: deploy, rollback without --deployment, plan, history, \
         show, log, watch, stats, recover, monitor, user add, token add, serve)"
    )]
    SqliteOnly {
        /// The command (`serve`, `stats`, `user add`, …).
        command: &'static str,
        /// The PostgreSQL endpoint (`host:port/database`, no user or password).
        store: String,
    },
    /// An error of the PostgreSQL store (never shows the password).
    #[error("store: {0}")]
    Postgres(pushguide_postgres::Error),
    /// A deployment on the PostgreSQL store lost its template's lease (it expired while the
    /// process was paused or cut off, and another deployment took it over): it stopped touching
    /// hosts and its writes were refused.
    #[error(
        "deployment {id} of template `{template}` lost its lease: {reason}; it touched no host and \
         wrote nothing after that (the engine ended it as {outcome})"
    )]
    LeaseLost {
        /// The deployment.
        id: String,
        /// The template.
        template: String,
        /// What the store said.
        reason: String,
        /// The outcome the engine reached (not recorded: its writes are fenced).
        outcome: String,
    },
}

impl CliError {
    /// The documented exit code.
    pub fn exit_code(&self) -> u8 {
        use pushguide_core::Error as E;
        match self {
            CliError::Usage(_)
            | CliError::ConfigFile { .. }
            | CliError::Config { .. }
            | CliError::TemplateFile { .. }
            | CliError::NoCiSource { .. } => exit::USAGE,
            CliError::UnknownTemplate { .. }
            | CliError::UnknownVersion { .. }
            | CliError::UnknownDeployment { .. } => exit::UNKNOWN,
            CliError::Forbidden { .. } => exit::FORBIDDEN,
            CliError::Busy { .. } => exit::BUSY,
            CliError::Core(e) => match e {
                E::Invalid { .. } | E::Parse { .. } | E::UnknownKind { .. } => exit::USAGE,
                E::Forbidden { .. } => exit::FORBIDDEN,
                E::Busy { .. } => exit::BUSY,
                E::NoHosts { .. } => exit::UNKNOWN,
                E::Transport { .. } => exit::UNAVAILABLE,
                E::Prepare { .. } => exit::FAILED,
                E::Fenced { .. } | E::LeaseLost { .. } => exit::BUSY,
                _ => exit::INTERNAL,
            },
            CliError::Source(e) => match e {
                pushguide_sources::Error::VersionNotFound { .. }
                | pushguide_sources::Error::TemplateNotFound { .. } => exit::UNKNOWN,
                pushguide_sources::Error::InvalidVersion { .. } => exit::USAGE,
                pushguide_sources::Error::Setting { .. }
                | pushguide_sources::Error::NoHostSettings { .. }
                | pushguide_sources::Error::Config { .. }
                | pushguide_sources::Error::Template(_) => exit::USAGE,
                _ => exit::UNAVAILABLE,
            },
            CliError::Salt(_) => exit::UNAVAILABLE,
            CliError::Store(_) | CliError::Internal(_) => exit::INTERNAL,
            CliError::SqliteOnly { .. } => exit::USAGE,
            CliError::LeaseLost { .. } => exit::BUSY,
            CliError::Postgres(e) => match e {
                pushguide_postgres::Error::Config { .. }
                | pushguide_postgres::Error::Password { .. } => exit::USAGE,
                pushguide_postgres::Error::Busy { .. } => exit::BUSY,
                pushguide_postgres::Error::LeaseLost { .. }
                | pushguide_postgres::Error::Fenced { .. } => exit::BUSY,
                e if e.is_retryable() => exit::UNAVAILABLE,
                _ => exit::INTERNAL,
            },
        }
    }

    /// A command line clap could not parse: a [`CliError::Usage`] with clap's message (the error,
    /// the usage line and the hint at `--help`), without its `error: ` prefix.
    pub fn from_clap(e: &clap::Error) -> Self {
        let text = clap_text(e);
        let text = text.trim();
        CliError::Usage(text.strip_prefix("error: ").unwrap_or(text).to_owned())
    }

    /// A stable kebab-case name of the error kind, for `--json`.
    pub fn kind(&self) -> &'static str {
        match self {
            CliError::Usage(_) => "usage",
            CliError::ConfigFile { .. } | CliError::Config { .. } => "config",
            CliError::TemplateFile { .. } => "template-file",
            CliError::UnknownTemplate { .. } => "unknown-template",
            CliError::UnknownVersion { .. } => "unknown-version",
            CliError::UnknownDeployment { .. } => "unknown-deployment",
            CliError::Forbidden { .. } => "forbidden",
            CliError::Busy { .. } => "busy",
            CliError::NoCiSource { .. } => "config",
            CliError::Core(pushguide_core::Error::Forbidden { .. }) => "forbidden",
            CliError::Core(pushguide_core::Error::Busy { .. }) => "busy",
            CliError::Core(pushguide_core::Error::Invalid { .. }) => "invalid",
            CliError::Core(pushguide_core::Error::Prepare { .. }) => "prepare-failed",
            CliError::Core(pushguide_core::Error::Transport { .. }) => "unavailable",
            CliError::Core(pushguide_core::Error::StoreFailed { .. }) => "store",
            CliError::Core(
                pushguide_core::Error::Fenced { .. } | pushguide_core::Error::LeaseLost { .. },
            ) => "lease-lost",
            CliError::Core(_) => "engine",
            CliError::Source(pushguide_sources::Error::VersionNotFound { .. }) => "unknown-version",
            CliError::Source(pushguide_sources::Error::TemplateNotFound { .. }) => {
                "unknown-template"
            }
            CliError::Source(_) => "source",
            CliError::Store(_) => "store",
            CliError::Salt(_) => "unavailable",
            CliError::Internal(_) => "internal",
            CliError::SqliteOnly { .. } => "sqlite-only",
            CliError::LeaseLost { .. } => "lease-lost",
            CliError::Postgres(
                pushguide_postgres::Error::Config { .. }
                | pushguide_postgres::Error::Password { .. },
            ) => "config",
            CliError::Postgres(pushguide_postgres::Error::Busy { .. }) => "busy",
            CliError::Postgres(
                pushguide_postgres::Error::LeaseLost { .. }
                | pushguide_postgres::Error::Fenced { .. },
            ) => "lease-lost",
            CliError::Postgres(e) if e.is_retryable() => "unavailable",
            CliError::Postgres(_) => "store",
        }
    }

    /// The `--json` form: `{"error": {"kind", "code", "message"}}`.
    pub fn to_json(&self) -> ErrorJson {
        ErrorJson {
            error: ErrorBody {
                kind: self.kind(),
                code: self.exit_code(),
                message: self.to_string(),
            },
        }
    }
}

/// `--json` error document.
#[derive(Debug, Serialize)]
pub struct ErrorJson {
    /// The error.
    pub error: ErrorBody,
}

/// The body of an [`ErrorJson`].
#[derive(Debug, Serialize)]
pub struct ErrorBody {
    /// Kind, e.g. `unknown-template`.
    pub kind: &'static str,
    /// The exit code.
    pub code: u8,
    /// The message.
    pub message: String,
}

impl From<pushguide_store::Error> for CliError {
    fn from(e: pushguide_store::Error) -> Self {
        CliError::Store(e)
    }
}

impl From<pushguide_postgres::Error> for CliError {
    fn from(e: pushguide_postgres::Error) -> Self {
        CliError::Postgres(e)
    }
}

impl From<pushguide_sources::Error> for CliError {
    fn from(e: pushguide_sources::Error) -> Self {
        CliError::Source(e)
    }
}

impl From<pushguide_core::Error> for CliError {
    fn from(e: pushguide_core::Error) -> Self {
        CliError::Core(e)
    }
}

/// clap's rendered message with every line escaped and cut (an unknown argument is echoed by clap:
/// a 10 MB or escape-laden argument must not reach the terminal or the JSON document as it is).
pub fn clap_text(e: &clap::Error) -> String {
    e.render()
        .to_string()
        .lines()
        .take(40)
        .map(|l| pushguide_core::validate::clean(l, 300))
        .collect::<Vec<_>>()
        .join("\n")
}
