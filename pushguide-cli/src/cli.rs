//! The command line (clap derive).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Release applications to Linux/Windows fleets through salt-api.
#[derive(Debug, Parser)]
#[command(name = "pushguide", version, about, long_about = None)]
pub struct Cli {
    /// The configuration file.
    #[arg(
        long,
        short = 'c',
        global = true,
        env = "PUSHGUIDE_CONFIG",
        default_value = "pushguide.toml"
    )]
    pub config: PathBuf,
    /// Print one JSON document on stdout (shapes in the crate documentation).
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the project types this binary links.
    Kinds,
    /// List the templates the user may view.
    Templates,
    /// A template's configuration, last deployment and the version each host runs.
    Show {
        /// Template name.
        template: String,
    },
    /// The template's versions from the CI source, newest first.
    Versions {
        /// Template name.
        template: String,
    },
    /// What deploying VERSION would do (nothing is changed).
    Plan {
        /// Template name.
        template: String,
        /// Version.
        version: String,
    },
    /// Release VERSION of TEMPLATE.
    Deploy(DeployArgs),
    /// Follow a deployment (e.g. a detached one) until it ends.
    Watch {
        /// Deployment id.
        id: String,
        /// Seconds between two looks at the store.
        #[arg(long, default_value_t = 0.5)]
        interval: f64,
    },
    /// Roll every host of TEMPLATE back (to its previous version, or to --to), or only the hosts
    /// one deployment touched (--deployment).
    Rollback {
        /// Template name.
        template: String,
        /// Roll every host back to this version.
        #[arg(long)]
        to: Option<String>,
        /// Undo deployment ID (e.g. an interrupted one, see `recover`): roll back only the hosts
        /// whose batch started, each to the version it ran before that deployment; hosts with
        /// nothing recorded are skipped.
        #[arg(long, value_name = "ID")]
        deployment: Option<String>,
        /// Record mutating calls without sending them.
        #[arg(long)]
        dry_run: bool,
    },
    /// Recorded deployments, newest first.
    History {
        /// Only this template.
        template: Option<String>,
        /// At most this many per template.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// A deployment's salt calls and each host's stages and log.
    Log {
        /// Deployment id.
        id: String,
    },
    /// Statistics: count, success rate, durations, failing hours, hosts and stages.
    Stats {
        /// Only this template.
        template: Option<String>,
        /// Over the last DAYS days.
        #[arg(long, default_value_t = 30)]
        since: u64,
        /// Hours and weekdays at this fixed offset from UTC: `UTC`, `+02:00`, `-05:30`
        /// (default: the config's `[stats] tz`, else UTC).
        #[arg(long, value_name = "OFFSET", allow_hyphen_values = true)]
        tz: Option<String>,
    },
    /// Ping every template's minions and print connectivity changes.
    Monitor {
        /// Check once and exit.
        #[arg(long)]
        once: bool,
    },
    /// Mark deployments of dead processes interrupted and list them.
    Recover,
    /// Install the pushguide salt module: write it into every master's file_roots
    /// (`_modules/pushguide.py`, wheel `file_roots.write`), sync it to the minions
    /// (`saltutil.sync_modules`) and check its protocol version on each.
    InstallModule {
        /// The minions to sync and check (a salt glob).
        #[arg(long, default_value = "*")]
        target: String,
        /// Print the module's source on stdout (for a manual install) and change nothing.
        #[arg(long)]
        print: bool,
    },
    /// The web service's accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// Run the web service (`[server]` in the configuration) until Ctrl-C, SIGTERM or SIGHUP.
    Serve {
        /// Run on an embedded demo instead of the configuration: 20 simulated minions behind a fake
        /// salt-api, a fresh store in a temporary directory, demo users (passwords printed).
        #[arg(long)]
        demo: bool,
        /// With `--demo`: the address to listen on (default 127.0.0.1:8080).
        #[arg(long, requires = "demo")]
        listen: Option<std::net::SocketAddr>,
    },
}

/// `user` commands.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a web service user. The password is the first line of stdin, or the value of
    /// `--password-env VAR`; never a command line argument.
    Add {
        /// User name (as in templates' ACLs).
        name: String,
        /// The user's groups (comma separated; as in templates' ACLs).
        #[arg(long, value_delimiter = ',')]
        groups: Vec<String>,
        /// Read the password from this environment variable instead of stdin.
        #[arg(long, value_name = "VAR")]
        password_env: Option<String>,
        /// Replace an existing user's password and groups (and end their sessions).
        #[arg(long)]
        replace: bool,
    },
}

/// `deploy` options.
#[derive(Debug, Clone, clap::Args)]
pub struct DeployArgs {
    /// Template name.
    pub template: String,
    /// Version (must exist in the CI source when one is configured).
    pub version: String,
    /// Run in a background process; print its id, pid and log file, and exit.
    #[arg(long)]
    pub detach: bool,
    /// Send read-only calls only; record the mutating ones.
    #[arg(long)]
    pub dry_run: bool,
    /// Only these hosts of the template (comma separated).
    #[arg(long, value_delimiter = ',')]
    pub hosts: Option<Vec<String>>,
    /// Override the template's batch size: a count (`2`) or a percentage (`25%`).
    #[arg(long)]
    pub batch: Option<String>,
    /// How to answer a pause (a template with `on_failure = "pause"` over its failure budget):
    /// `ask` prompts on the terminal (retry, exclude, rollback or abort); `exclude`, `rollback` or
    /// `abort` answer at once. Default: `ask` when stdin is a terminal, else `rollback` when the
    /// template has a rollback policy and `abort` when not (always so with `--detach`).
    #[arg(long, value_enum)]
    pub on_pause: Option<OnPause>,
    /// Internal: the detached child writes its deployment id here.
    #[arg(long, hide = true)]
    pub id_file: Option<PathBuf>,
}

/// `deploy --on-pause`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OnPause {
    /// Prompt on the terminal (reads answers from stdin).
    Ask,
    /// Leave the failed hosts out and go on.
    Exclude,
    /// Stop and roll every touched host back.
    Rollback,
    /// Stop without rolling back.
    Abort,
}
