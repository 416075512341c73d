//! `deploy --detach`: the deployment runs in a background `pushguide deploy` process of its own.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, SystemTime};

use crate::app::App;
use crate::cli::{DeployArgs, OnPause};
use crate::error::{exit, CliError};
use crate::results::Detached;

/// `deploy --detach`: checks what can be checked here, then re-executes `pushguide deploy …` in a
/// child process (own process group, output to a log file) and returns once the child has started the
/// deployment (its id) — or fails with the child's exit code and output when it could not.
pub async fn detach(
    app: &mut App,
    args: &DeployArgs,
    json: bool,
) -> Result<Result<Detached, (u8, String)>, CliError> {
    let t = app.template(&args.template)?;
    app.check_deploy(&t)?;
    if !args.dry_run {
        app.check_not_busy(&args.template)?;
    }
    let (log_path, id_path) = log_paths(app, &args.template)?;
    let log = std::fs::File::create(&log_path)
        .map_err(|e| CliError::Internal(format!("cannot create {}: {e}", log_path.display())))?;
    let log2 = log
        .try_clone()
        .map_err(|e| CliError::Internal(e.to_string()))?;
    let exe = std::env::current_exe().map_err(|e| CliError::Internal(e.to_string()))?;
    let mut cmd = std::process::Command::new(exe);
    child_args(&mut cmd, app, args, json, &id_path);
    cmd.stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(log2);
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
    }
    let child = cmd
        .spawn()
        .map_err(|e| CliError::Internal(format!("cannot start the detached deployment: {e}")))?;
    wait_for_start(child, &log_path, &id_path).await
}

/// The child's log file and the file it writes the deployment id to, in the configured `log_dir`
/// (created when missing).
fn log_paths(app: &App, template: &str) -> Result<(PathBuf, PathBuf), CliError> {
    let dir = &app.config.log_dir;
    std::fs::create_dir_all(dir).map_err(|e| CliError::Config {
        file: app.config.file.display().to_string(),
        key: "log_dir".into(),
        value: dir.display().to_string(),
        reason: format!("cannot create it: {e}"),
    })?;
    let stamp = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let base = format!("{template}-{stamp}-{}", std::process::id());
    Ok((
        dir.join(format!("{base}.log")),
        dir.join(format!("{base}.id")),
    ))
}

/// The child's command line: `pushguide --config … deploy …` with this command's options, and
/// `--id-file id_path`.
fn child_args(cmd: &mut Command, app: &App, args: &DeployArgs, json: bool, id_path: &Path) {
    cmd.arg("--config").arg(&app.config.file);
    if json {
        cmd.arg("--json");
    }
    cmd.arg("deploy")
        .arg(&args.template)
        .arg(&args.version)
        .arg("--id-file")
        .arg(id_path);
    if args.dry_run {
        cmd.arg("--dry-run");
    }
    if let Some(h) = &args.hosts {
        cmd.arg("--hosts").arg(h.join(","));
    }
    if let Some(b) = &args.batch {
        cmd.arg("--batch").arg(b);
    }
    match args.on_pause {
        // nobody to ask in the background: the default answer
        Some(OnPause::Ask) | None => {}
        Some(p) => {
            cmd.arg("--on-pause")
                .arg(format!("{p:?}").to_ascii_lowercase());
        }
    }
}

/// Waits until the child has written the deployment id (it started the deployment), or has ended
/// without (its exit code and output).
async fn wait_for_start(
    mut child: Child,
    log_path: &Path,
    id_path: &Path,
) -> Result<Result<Detached, (u8, String)>, CliError> {
    let pid = child.id();
    let detached = |id| Detached {
        id,
        pid,
        log: log_path.display().to_string(),
    };
    loop {
        if let Ok(id) = std::fs::read_to_string(id_path) {
            if !id.is_empty() {
                let _ = std::fs::remove_file(id_path);
                return Ok(Ok(detached(id)));
            }
        }
        if let Some(status) = child
            .try_wait()
            .map_err(|e| CliError::Internal(e.to_string()))?
        {
            // Ended before starting a deployment (or too fast to notice): hand its output over.
            let out = std::fs::read_to_string(log_path).unwrap_or_default();
            if let Ok(id) = std::fs::read_to_string(id_path) {
                let _ = std::fs::remove_file(id_path);
                if !id.is_empty() {
                    return Ok(Ok(detached(id)));
                }
            }
            let code = status
                .code()
                .and_then(|c| u8::try_from(c).ok())
                .unwrap_or(exit::INTERNAL);
            return Ok(Err((code, out)));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
