//! The `pushguide` binary: parses the command line and hands over to [`pushguide_cli::run`].

use clap::Parser;
use pushguide_cli::error::{exit, CliError};

fn main() -> std::process::ExitCode {
    let cli = match pushguide_cli::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return std::process::ExitCode::from(usage_error(&e)),
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PUSHGUIDE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        // a log line never panics on a closed stderr (nor reports its own failure there)
        .with_writer(pushguide_cli::output::QuietStderr)
        .log_internal_errors(false)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let err = CliError::Internal(format!("cannot start tokio: {e}"));
            pushguide_cli::output::error(&err, cli.json);
            return std::process::ExitCode::from(err.exit_code());
        }
    };
    let code = runtime.block_on(pushguide_cli::run(cli));
    std::process::ExitCode::from(code)
}

/// What clap could not parse: `--help` and `--version` print on stdout and exit 0; a usage error is
/// exit 64 like every other usage error, with the JSON error document on stdout under `--json`.
fn usage_error(e: &clap::Error) -> u8 {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            pushguide_cli::output::stdout_text(&e.render().to_string());
            exit::OK
        }
        _ => {
            // the command line did not parse, so look for --json by hand (not after `--`)
            let json = std::env::args_os()
                .skip(1)
                .take_while(|a| a != "--")
                .any(|a| a == "--json");
            let err = CliError::from_clap(e);
            if json {
                pushguide_cli::output::error(&err, true);
            } else {
                // clap's own text: the error, the usage line and the hint at --help
                pushguide_cli::output::stderr_text(&format!(
                    "{}\n",
                    pushguide_cli::error::clap_text(e).trim_end()
                ));
            }
            err.exit_code()
        }
    }
}
