//! The `pushguide` binary: parses the command line and hands over to [`pushguide_cli::run`].

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = pushguide_cli::cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PUSHGUIDE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let err = pushguide_cli::error::CliError::Internal(format!("cannot start tokio: {e}"));
            pushguide_cli::output::error(&err, cli.json);
            return std::process::ExitCode::from(err.exit_code());
        }
    };
    let code = runtime.block_on(pushguide_cli::run(cli));
    std::process::ExitCode::from(code)
}
