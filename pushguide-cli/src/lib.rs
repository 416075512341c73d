//! # pushguide-cli
//!
//! The `pushguide` command: list project types and templates, plan, deploy (attached with progress
//! bars, or detached in a background process), watch, roll back, and read history, logs and
//! statistics from the SQLite store. `pushguide-cli/README.md` is the full reference; this page
//! repeats the configuration format, the exit codes and the `--json` shapes.
//!
//! ## Configuration (`--config FILE`, `PUSHGUIDE_CONFIG`, default `./pushguide.toml`)
//!
//! ```toml
//! store = "state/pushguide.db"        # SQLite store (history, fleet state, leases); created if missing
//! templates = "templates"             # directory, one *.toml per template
//! log_dir = "state/logs"              # optional: output of detached deployments
//!                                     #   (default: pushguide-logs beside the store)
//! [user]                              # who acts (checked against each template's [acl])
//! name = "alice"
//! groups = ["ops"]
//!
//! [salt]
//! endpoints = ["http://salt-a:8000", "http://salt-b:8000"]   # failover in this order
//! eauth = "pam"
//! user = "deploy"
//! password_env = "PUSHGUIDE_SALT_PASSWORD"   # or: password_file = "/etc/pushguide/salt.pw"
//! # optional, seconds: connect_timeout, request_timeout, job_timeout, poll_interval,
//! # endpoint_cooldown, token_expire; booleans: use_events, danger_accept_invalid_certs,
//! # step_jobs (default true: each host's steps as one job, `pushguide install-module`); ca_file
//!
//! [ci]                                # optional: where versions and artifacts come from
//! type = "directory"                  # <path>/<template>/<version>/<one archive>
//! path = "artifacts"
//! url_base = "salt://artifacts/"      # what minions fetch from
//! # type = "http"; url = "https://ci.example.com/artifacts/"; token_env = "CI_TOKEN"
//!
//! [cmdb]                              # optional: per-host settings merged into templates
//! type = "static"
//! path = "cmdb.toml"
//! # type = "http"; url = "https://cmdb.example.com/api/"; token_env = "CMDB_TOKEN"
//!
//! [monitor]                           # optional
//! interval_secs = 30
//! timeout_secs = 10
//!
//! [stats]                             # optional: hours and weekdays of `stats` at a fixed offset
//! tz = "+02:00"                       #   from UTC: "UTC" (default), "+02:00", "-05:30"
//!
//! [server]                            # optional: the web service (`serve`)
//! listen = "127.0.0.1:8080"           # default 127.0.0.1:8080
//! public_url = "https://deploy.example.com/"   # https:// makes its cookies Secure
//! session_idle_secs = 1800            # defaults: 1800 idle, 43200 absolute
//! session_max_secs = 43200
//! admin_groups = ["admins"]           # also see template files that do not load; the admin page
//! auth = "local"                      # or "proxy": a trusted reverse proxy names the user
//! trusted_proxies = ["127.0.0.1"]     # addresses or networks (e.g. "10.0.0.0/8") of the proxies
//! proxy_user_header = "X-Forwarded-User"     # defaults
//! proxy_groups_header = "X-Forwarded-Groups" # comma separated
//! ```
//!
//! Relative paths are relative to the configuration file. Unknown keys are errors. Every error names
//! the file, the key and the value (`config ./pushguide.toml: key `salt.job_timeot` = "60": unknown
//! key; …`). The password is read only when salt-api is needed and never printed.
//!
//! ## Exit codes
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success (a deployment succeeded; a `rollback` rolled every host back) |
//! | 2 | deployment partially applied (failures within the budget, excluded hosts) |
//! | 3 | deployment failed (stopped early, not rolled back; also a refused `prepare`) |
//! | 4 | deployment failed and was rolled back |
//! | 5 | rollback failed on at least one host |
//! | 6 | cancelled (Ctrl-C / SIGTERM / SIGHUP: the running call finishes, then the template's rollback policy) |
//! | 7 | `watch`: the deployment's process died (marked `interrupted` by `recover`) |
//! | 8 | `install-module`: a targeted minion did not install the pushguide salt module (or none matched) |
//! | 64 | usage or configuration error (a command line that does not parse, a bad value, a `--hosts` host that is not a target, bad config key or value, the broken template file asked for; `sqlite-only`: a command needing the SQLite store on a PostgreSQL store) |
//! | 65 | forbidden (the user is not in the template's ACL) |
//! | 66 | busy (another deployment of the template holds its lease); `lease-lost`: on PostgreSQL, the deployment lost its lease to another one |
//! | 67 | unknown template, version or deployment id |
//! | 69 | salt-api, the CI source or the CMDB unreachable or answering badly |
//! | 70 | internal error (store, unexpected) |
//!
//! ## `--json` shapes (one document on stdout; `monitor` without `--once`: one line per check)
//!
//! - error (any command): `{"error": {"kind": "unknown-template", "code": 67, "message": "…"}}`;
//!   kinds: `usage`, `config`, `template-file`, `unknown-template`, `unknown-version`,
//!   `unknown-deployment`, `forbidden`, `busy`, `invalid`, `prepare-failed`, `unavailable`,
//!   `engine`, `source`, `store`, `internal`, `lease-lost`, `sqlite-only`.
//! - `kinds`: `[{"kind", "summary", "platforms": ["linux"], "example"}]`
//! - `templates`: `[{"name", "description", "kind", "targets", "may_deploy", "file", "error"}]`
//!   (`error` is `null`, or why the file does not load: a broken file is listed after the others)
//! - `show`: `{"name", "file", "kind", "may_deploy", "config": {template as JSON},
//!   "last_deployment": deployment|null, "hosts": [{"host", "version", "state", "since", "previous"}]}`
//! - `versions`: `{"template", "source", "versions": ["2.0.0", "1.0.0"]}`
//! - `user add`: `{"user", "groups": ["ops"], "replaced"}`
//! - `plan`: core's `Plan`: `{"template", "version", "dry_run", "batches": [["web-01"]], "excluded":
//!   [["host", "why"]], "steps": [["pre-deploy", [salt call]]], "rollback_targets": [["host",
//!   current|null, target|null]], "max_failed"}`
//! - `deploy`, `rollback`: `{"id", "mode": "deploy"|"rollback", "template", "version", "user",
//!   "dry_run", "outcome", "exit_code", "reason", "started", "duration_ms", "batches": [["web-01"]],
//!   "hosts": [{"host", "batch", "status", "failure": {"stage", "batch", "fun", "reason"}|null,
//!   "rollback_failure", "rolled_back_to"}], "unsent_calls": ["deploy: file.symlink …"],
//!   "history_error"}`
//! - `deploy --detach`: `{"id", "pid", "log"}`
//! - deployment (in `history`, `show`, `log`): `{"id", "template", "mode", "version", "user",
//!   "dry_run", "started", "ended", "duration_ms", "outcome", "reason"}` (times RFC 3339 UTC;
//!   `mode` is `deploy` or `rollback`; `outcome` is `null` while running)
//! - `history`: `[deployment]`, newest first
//! - `log`, `watch`: `{"deployment": deployment, "exit_code", "calls": [{"batch", "stage", "fun",
//!   "jid", "ok", "failed", "millis"}], "hosts": [{"host", "status", "stages": [{"batch", "stage",
//!   "status", "duration_ms", "fun", "detail"}], "log": ["…"]}]}` (plus `"outcome_error"` when the
//!   recorded outcome is a name this pushguide does not know: `exit_code` is then 70)
//! - `stats`: `{"template", "templates", "from", "to", "tz", "count", "succeeded", "success_rate",
//!   "mean_ms", "p50_ms", "p95_ms", "rollbacks": {"count", "succeeded", "success_rate", "mean_ms",
//!   "p50_ms", "p95_ms"}, "by_hour": [{"at", "count", "succeeded"}], "by_weekday": [...],
//!   "failing_hosts": [["web-07", 3]], "failing_stages": [["post-deploy", 3]], "incidents",
//!   "recovered", "mttr_ms"}` (releases and rollbacks apart; templates the user may view)
//! - `monitor`: `{"checked", "up": [...], "down": [...], "changes": [{"minion", "up", "was_up",
//!   "at"}], "errors": ["…"], "broken": [{"file", "error"}]}`; a failed round is an error line
//! - `install-module`: `{"path", "protocol", "target", "endpoints": [{"endpoint", "written",
//!   "error"}], "minions": [{"minion", "installed", "protocol", "state"}], "all_installed",
//!   "exit_code"}`; `install-module --print` prints the module's Python source instead (no JSON)
//! - `recover`: `[{"id", "template", "mode", "version", "user", "dry_run", "started", "last_event",
//!   "batch", "stage", "live_hosts", "planned_hosts", "newly_marked", "hosts": [{"host", "batch",
//!   "stage", "status", "touched", "stages_done", "calls_done", "stage_calls", "done"}],
//!   "unnamed_not_reached", "rollback_command", "resume_command"}]`
//!
//! `--help` and `--version` exit 0; a command line that does not parse exits 64 (with the error
//! document under `--json`). Output never stops a command: writes to a closed stdout/stderr are
//! dropped (see [`output`]).
//!
//! The library API ([`run`], [`commands`]) is what the binary uses; commands return typed results
//! ([`results`]) and only [`output`] (results, errors) and [`progress`] (a running deployment)
//! print.
//!
//! ## Where things are
//!
//! | module | what |
//! |---|---|
//! | [`cli`] | the command line (clap) |
//! | [`config`] | `pushguide.toml` |
//! | [`app`] | what commands share: config, store, salt-api, templates, permission checks |
//! | [`commands`] | one file per command or group of commands |
//! | [`results`] | the rows and summaries commands return and [`output`] prints |
//! | [`outcome`] | deployment outcomes: exit codes, names recorded in the store |
//! | [`output`] | printing results and errors (human or `--json`) |
//! | [`progress`] | live progress of a running deployment on stderr |
//! | [`signals`] | Ctrl-C, SIGTERM, SIGHUP |
//! | [`error`] | [`error::CliError`] and the exit codes |

#[macro_use]
mod macros;

pub mod app;
pub mod cli;
pub mod commands;
pub mod config;
pub mod error;
pub mod fence;
pub mod outcome;
pub mod output;
pub mod progress;
pub mod results;
pub mod signals;

use std::time::Duration;

use app::App;
use cli::{Cli, Command, DeployArgs, TokenCommand, UserCommand};
use config::Config;
use error::{exit, CliError};
use progress::Progress;

/// Runs a parsed command line and returns the process exit code.
pub async fn run(cli: Cli) -> u8 {
    let json = cli.json;
    match dispatch(cli).await {
        Ok(code) => code,
        Err(e) => {
            output::error(&e, json);
            e.exit_code()
        }
    }
}

fn print<T: serde::Serialize + ?Sized>(json: bool, value: &T, human: impl FnOnce(&T)) {
    if json {
        output::json(value);
    } else {
        human(value);
    }
}

async fn dispatch(cli: Cli) -> Result<u8, CliError> {
    let json = cli.json;
    if let Command::Kinds = cli.command {
        print(json, &commands::kinds(), |k| output::kinds(k));
        return Ok(exit::OK);
    }
    if let Command::InstallModule { print: true, .. } = cli.command {
        // the manual path needs no configuration: the source as it is
        output::stdout_text(pushguide_salt::module::SOURCE);
        return Ok(exit::OK);
    }
    if let Command::Serve { demo: true, listen } = cli.command {
        commands::demo(listen).await?;
        return Ok(exit::OK);
    }
    let mut app = App::new(Config::load(&cli.config)?);
    app.command = command_name(&cli.command);
    match cli.command {
        Command::Deploy(args) => deploy(&mut app, &args, json).await,
        Command::Rollback {
            template,
            to,
            deployment,
            dry_run,
        } => {
            let mut progress = Progress::new(json);
            let s = commands::rollback(
                &mut app,
                &template,
                to,
                deployment.as_deref(),
                dry_run,
                &mut progress,
            )
            .await?;
            print(json, &s, output::summary);
            Ok(s.exit_code)
        }
        Command::Watch { id, interval } => watch(&mut app, &id, interval, json).await,
        Command::Monitor { once } => monitor(&mut app, json, once).await,
        Command::InstallModule { target, .. } => {
            let r = commands::install_module(&app, &target).await?;
            print(json, &r, output::module_install);
            Ok(r.exit_code)
        }
        Command::User(UserCommand::Add {
            name,
            groups,
            password_env,
            replace,
        }) => {
            let input = match password_env {
                Some(var) => commands::PasswordInput::Env(var),
                None => commands::PasswordInput::Reader(std::io::stdin().lock()),
            };
            let r = commands::user_add(&mut app, &name, &groups, input, replace).await?;
            print(json, &r, output::user_added);
            Ok(exit::OK)
        }
        Command::Serve { .. } => {
            commands::serve(&mut app).await?;
            Ok(exit::OK)
        }
        Command::Token(TokenCommand::Add {
            user,
            label,
            expires_days,
        }) => {
            let r = commands::token_add(&mut app, &user, &label, expires_days).await?;
            print(json, &r, output::token_added);
            Ok(exit::OK)
        }
        other => {
            report(&mut app, other, json).await?;
            Ok(exit::OK)
        }
    }
}

/// The command's name, as errors name it.
fn command_name(command: &Command) -> &'static str {
    match command {
        Command::Kinds => "kinds",
        Command::Templates => "templates",
        Command::Show { .. } => "show",
        Command::Versions { .. } => "versions",
        Command::Plan { .. } => "plan",
        Command::Deploy(_) => "deploy",
        Command::Rollback { .. } => "rollback",
        Command::History { .. } => "history",
        Command::Log { .. } => "log",
        Command::Watch { .. } => "watch",
        Command::Stats { .. } => "stats",
        Command::Recover => "recover",
        Command::Monitor { .. } => "monitor",
        Command::InstallModule { .. } => "install-module",
        Command::User(_) => "user add",
        Command::Token(_) => "token add",
        Command::Serve { .. } => "serve",
    }
}

/// The commands that only read and print (exit 0 unless they fail).
async fn report(app: &mut App, command: Command, json: bool) -> Result<(), CliError> {
    match command {
        Command::Templates => print(json, &commands::templates(app)?, |t| output::templates(t)),
        Command::Show { template } => {
            print(json, &commands::show(app, &template).await?, output::show);
        }
        Command::Versions { template } => {
            print(
                json,
                &commands::versions(app, &template).await?,
                output::versions,
            );
        }
        Command::Plan { template, version } => {
            print(
                json,
                &commands::plan(app, &template, &version).await?,
                output::plan,
            );
        }
        Command::History { template, limit } => {
            let (rows, broken) = commands::history(app, template.as_deref(), limit).await?;
            output::broken_templates(&broken);
            print(json, &rows, |r| output::history(r));
        }
        Command::Log { id } => print(json, &commands::log(app, &id).await?, output::log),
        Command::Stats {
            template,
            since,
            tz,
        } => {
            print(
                json,
                &commands::stats(app, template.as_deref(), since, tz.as_deref()).await?,
                output::stats,
            );
        }
        Command::Recover => print(json, &commands::recover(app).await?, |r| output::recover(r)),
        // handled by `dispatch`
        Command::Kinds
        | Command::Deploy(_)
        | Command::Rollback { .. }
        | Command::Watch { .. }
        | Command::Monitor { .. }
        | Command::InstallModule { .. }
        | Command::User(_)
        | Command::Token(_)
        | Command::Serve { .. } => {}
    }
    Ok(())
}

/// `deploy`: attached with live progress, or `--detach`ed (the exit code of a child that could not
/// start the deployment is the command's).
async fn deploy(app: &mut App, args: &DeployArgs, json: bool) -> Result<u8, CliError> {
    if args.detach {
        return match commands::detach(app, args, json).await? {
            Ok(d) => {
                print(json, &d, output::detached);
                Ok(exit::OK)
            }
            Err((code, out)) => {
                output::child_output(&out, json);
                Ok(code)
            }
        };
    }
    let mut progress = Progress::new(json);
    let s = commands::deploy(app, args, &mut progress).await?;
    print(json, &s, output::summary);
    Ok(s.exit_code)
}

/// `watch ID`: follows the deployment, prints its log, exits with its outcome's code.
async fn watch(app: &mut App, id: &str, interval: f64, json: bool) -> Result<u8, CliError> {
    if !(interval.is_finite() && interval > 0.0 && interval <= 3600.0) {
        return Err(CliError::Usage(format!(
            "--interval {interval}: give seconds between 0 and 3600"
        )));
    }
    let mut progress = Progress::new(json);
    let l = commands::watch(app, id, Duration::from_secs_f64(interval), &mut progress).await?;
    print(json, &l, output::log);
    Ok(l.exit_code.unwrap_or(exit::INTERNAL))
}

/// `monitor`: one check per round until Ctrl-C/SIGTERM/SIGHUP (or one with `--once`). A round that
/// fails (salt-api unreachable or answering badly) is reported and the next round comes as usual;
/// with `--once` it is the command's error. Templates and target expressions are read again at
/// every round.
async fn monitor(app: &mut App, json: bool, once: bool) -> Result<u8, CliError> {
    let mut signals = signals::StopSignals::new();
    let (monitor, salt) = commands::monitor_setup(app).await?;
    let mut first = true;
    loop {
        match commands::monitor_check(app, &monitor, &*salt).await {
            Ok(check) => {
                if json && once {
                    output::json(&check);
                } else if json {
                    output::json_line(&check);
                } else {
                    output::monitor(&check, first);
                }
                first = false;
                if once {
                    return Ok(if check.errors.is_empty() {
                        exit::OK
                    } else {
                        exit::UNAVAILABLE
                    });
                }
            }
            Err(e) if once => return Err(e),
            Err(e) => output::monitor_error(&e, json, app.config.monitor_interval),
        }
        if signals::sleep_or_stop(app.config.monitor_interval, &mut signals).await {
            return Ok(exit::OK);
        }
    }
}

#[cfg(test)]
mod tests {
    /// The printing side never reaches back into the commands: results, outcomes, progress and
    /// output import nothing from `commands` (commands and output once imported each other).
    #[test]
    fn printing_does_not_import_commands() {
        for (file, text) in [
            ("output.rs", include_str!("output.rs")),
            ("progress.rs", include_str!("progress.rs")),
            ("results.rs", include_str!("results.rs")),
            ("outcome.rs", include_str!("outcome.rs")),
        ] {
            let uses: Vec<&str> = text
                .lines()
                .filter(|l| l.trim_start().starts_with("use ") || l.contains("crate::commands::"))
                .filter(|l| l.contains("commands"))
                .collect();
            assert!(uses.is_empty(), "{file} imports from commands: {uses:?}");
        }
    }
}
