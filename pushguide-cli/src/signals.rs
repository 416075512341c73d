//! The signals that ask a running command to stop (Ctrl-C, SIGTERM, SIGHUP), and a sleep that
//! ends early on one.

use std::time::Duration;

/// The signals that ask a deployment to stop: Ctrl-C (SIGINT), and on Unix SIGTERM and SIGHUP (the
/// terminal was closed). Their handlers are installed when this is made, so make it before anything
/// that must not be killed outright starts; from then on none of them ends the process by itself,
/// and one that arrives while nobody waits is kept for the next [`StopSignals::recv`].
#[derive(Debug)]
pub struct StopSignals {
    #[cfg(unix)]
    unix: Option<[tokio::signal::unix::Signal; 3]>,
}

impl Default for StopSignals {
    fn default() -> Self {
        Self::new()
    }
}

impl StopSignals {
    /// Installs the handlers.
    pub fn new() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let unix = match (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
                signal(SignalKind::hangup()),
            ) {
                (Ok(int), Ok(term), Ok(hup)) => Some([int, term, hup]),
                (int, term, hup) => {
                    for e in [int.err(), term.err(), hup.err()].into_iter().flatten() {
                        tracing::warn!(error = %e, "cannot install a signal handler");
                    }
                    None
                }
            };
            StopSignals { unix }
        }
        #[cfg(not(unix))]
        {
            StopSignals {}
        }
    }

    /// Resolves at the next stop signal.
    pub async fn recv(&mut self) {
        #[cfg(unix)]
        {
            if let Some([int, term, hup]) = &mut self.unix {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                    _ = hup.recv() => {}
                }
                return;
            }
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Waits for a stop signal (Ctrl-C, SIGTERM, SIGHUP) or `d`, whichever is first; `true` when a stop
/// was asked for (also one that came before this call, since `signals` were made).
pub async fn sleep_or_stop(d: Duration, signals: &mut StopSignals) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = signals.recv() => true,
    }
}
