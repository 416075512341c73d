//! The salt calls of the `java-tomcat` kind, one function each.

use pushguide_core::steps::PathStyle;
use pushguide_core::SaltCall;
use std::time::Duration;

/// How Tomcat is stopped and started on a host.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Control {
    /// A service (`service.stop` / `service.start`).
    Service(String),
    /// Commands run without a shell (`cmd.run_all`).
    Commands {
        start: Vec<String>,
        stop: Vec<String>,
    },
}

/// Stops Tomcat: `service.stop <name>` or `cmd.run_all <argv> python_shell=False`.
pub(crate) fn stop(c: &Control) -> SaltCall {
    match c {
        Control::Service(name) => SaltCall::mutate("service.stop").arg(name.as_str()),
        Control::Commands { stop, .. } => run(stop),
    }
}

/// Starts Tomcat.
pub(crate) fn start(c: &Control) -> SaltCall {
    match c {
        Control::Service(name) => SaltCall::mutate("service.start").arg(name.as_str()),
        Control::Commands { start, .. } => run(start),
    }
}

/// `cmd.run_all <argv> python_shell=False`. No timeout of its own: like `service.stop`/`service.start`
/// it waits the salt connection's `job_timeout` (one rule for stopping and starting Tomcat, whichever
/// way it is controlled).
fn run(argv: &[String]) -> SaltCall {
    SaltCall::mutate("cmd.run_all")
        .arg(serde_json::Value::from(argv.to_vec()))
        .kwarg("python_shell", false)
}

/// `archive.unzip <war> <release dir>`.
pub(crate) fn unzip(war: &str, dir: &str) -> SaltCall {
    SaltCall::mutate("archive.unzip")
        .arg(war)
        .arg(dir)
        .timeout(Duration::from_secs(600))
}

/// Points the context at `release_dir`: on Linux `file.symlink <dir> <webapps>/<context>` (atomic
/// rename); on Windows `file.write <conf>\Catalina\localhost\<context>.xml <Context docBase=…/>`.
pub(crate) fn switch(style: PathStyle, base: &str, context: &str, release_dir: &str) -> SaltCall {
    match style {
        PathStyle::Posix => SaltCall::mutate("file.symlink")
            .arg(release_dir)
            .arg(style.join(base, &["webapps", context]))
            .kwarg("force", true)
            .kwarg("atomic", true),
        PathStyle::Windows => SaltCall::mutate("file.write")
            .arg(style.join(
                base,
                &["conf", "Catalina", "localhost", &format!("{context}.xml")],
            ))
            .arg(format!("<Context docBase=\"{release_dir}\" />")),
    }
}

/// Removes Tomcat's compiled pages of the context (`work/Catalina/localhost/<context>`), so the new
/// release's JSPs are compiled afresh.
pub(crate) fn clear_work(style: PathStyle, base: &str, context: &str) -> SaltCall {
    SaltCall::mutate("file.remove")
        .arg(style.join(base, &["work", "Catalina", "localhost", context]))
}

/// `file.directory_exists <dir>`.
pub(crate) fn dir_exists(dir: &str) -> SaltCall {
    SaltCall::read("file.directory_exists").arg(dir)
}
