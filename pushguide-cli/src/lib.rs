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
//! # endpoint_cooldown, token_expire; booleans: use_events, danger_accept_invalid_certs; ca_file
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
//! | 64 | usage or configuration error (a command line that does not parse, a bad value, a `--hosts` host that is not a target, bad config key or value, the broken template file asked for) |
//! | 65 | forbidden (the user is not in the template's ACL) |
//! | 66 | busy (another deployment of the template holds its lease) |
//! | 67 | unknown template, version or deployment id |
//! | 69 | salt-api, the CI source or the CMDB unreachable or answering badly |
//! | 70 | internal error (store, unexpected) |
//!
//! ## `--json` shapes (one document on stdout; `monitor` without `--once`: one line per check)
//!
//! - error (any command): `{"error": {"kind": "unknown-template", "code": 67, "message": "…"}}`;
//!   kinds: `usage`, `config`, `template-file`, `unknown-template`, `unknown-version`,
//!   `unknown-deployment`, `forbidden`, `busy`, `invalid`, `prepare-failed`, `unavailable`,
//!   `engine`, `source`, `store`, `internal`.
//! - `kinds`: `[{"kind", "summary", "platforms": ["linux"], "example"}]`
//! - `templates`: `[{"name", "description", "kind", "targets", "may_deploy", "file", "error"}]`
//!   (`error` is `null`, or why the file does not load: a broken file is listed after the others)
//! - `show`: `{"name", "file", "kind", "may_deploy", "config": {template as JSON},
//!   "last_deployment": deployment|null, "hosts": [{"host", "version", "since", "previous"}]}`
//! - `versions`: `{"template", "source", "versions": ["2.0.0", "1.0.0"]}`
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
//!   "status", "duration_ms", "fun", "detail"}], "log": ["…"]}]}`
//! - `stats`: `{"template", "templates", "from", "to", "tz", "count", "succeeded", "success_rate",
//!   "mean_ms", "p50_ms", "p95_ms", "rollbacks": {"count", "succeeded", "success_rate", "mean_ms",
//!   "p50_ms", "p95_ms"}, "by_hour": [{"at", "count", "succeeded"}], "by_weekday": [...],
//!   "failing_hosts": [["web-07", 3]], "failing_stages": [["post-deploy", 3]], "incidents",
//!   "recovered", "mttr_ms"}` (releases and rollbacks apart; templates the user may view)
//! - `monitor`: `{"checked", "up": [...], "down": [...], "changes": [{"minion", "up", "was_up",
//!   "at"}], "errors": ["…"], "broken": [{"file", "error"}]}`; a failed round is an error line
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
//! and only [`output`] prints.

pub mod app;
pub mod cli;
pub mod commands;
pub mod config;
pub mod error;
pub mod output;

use std::time::Duration;

use cli::{Cli, Command};
use config::Config;
use error::{exit, CliError};
use output::Progress;

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
    let mut app = app::App::new(Config::load(&cli.config)?);
    match cli.command {
        Command::Kinds => {}
        Command::Templates => print(json, &commands::templates(&app)?, |t| output::templates(t)),
        Command::Show { template } => {
            print(json, &commands::show(&mut app, &template)?, output::show);
        }
        Command::Versions { template } => {
            print(
                json,
                &commands::versions(&app, &template).await?,
                output::versions,
            );
        }
        Command::Plan { template, version } => {
            print(
                json,
                &commands::plan(&mut app, &template, &version).await?,
                output::plan,
            );
        }
        Command::Deploy(args) => {
            if args.detach {
                return match commands::detach(&mut app, &args, json).await? {
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
            let s = commands::deploy(&mut app, &args, &mut progress).await?;
            print(json, &s, output::summary);
            return Ok(s.exit_code);
        }
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
            return Ok(s.exit_code);
        }
        Command::Watch { id, interval } => {
            if !(interval.is_finite() && interval > 0.0 && interval <= 3600.0) {
                return Err(CliError::Usage(format!(
                    "--interval {interval}: give seconds between 0 and 3600"
                )));
            }
            let mut progress = Progress::new(json);
            let l = commands::watch(
                &mut app,
                &id,
                Duration::from_secs_f64(interval),
                &mut progress,
            )
            .await?;
            print(json, &l, output::log);
            return Ok(l.exit_code.unwrap_or(exit::INTERNAL));
        }
        Command::History { template, limit } => {
            let (rows, broken) = commands::history(&mut app, template.as_deref(), limit)?;
            output::broken_templates(&broken);
            print(json, &rows, |r| output::history(r));
        }
        Command::Log { id } => print(json, &commands::log(&mut app, &id)?, output::log),
        Command::Stats {
            template,
            since,
            tz,
        } => {
            print(
                json,
                &commands::stats(&mut app, template.as_deref(), since, tz.as_deref())?,
                output::stats,
            );
        }
        Command::Recover => print(json, &commands::recover(&mut app)?, |r| output::recover(r)),
        Command::Monitor { once } => return monitor(&mut app, json, once).await,
    }
    Ok(exit::OK)
}

/// `monitor`: one check per round until Ctrl-C/SIGTERM/SIGHUP (or one with `--once`). A round that
/// fails (salt-api unreachable or answering badly) is reported and the next round comes as usual;
/// with `--once` it is the command's error. Templates and target expressions are read again at
/// every round.
async fn monitor(app: &mut app::App, json: bool, once: bool) -> Result<u8, CliError> {
    let mut signals = commands::StopSignals::new();
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
        if commands::sleep_or_stop(app.config.monitor_interval, &mut signals).await {
            return Ok(exit::OK);
        }
    }
}
