//! Ctrl-C (SIGINT) and SIGTERM during `apply`, as cargo and kubectl treat them: the first signal
//! cancels gracefully (the steps in flight finish, the rest are skipped, and `apply` exits 130
//! with "interrupted" in its summary); a second signal exits the process at once with 130,
//! leaving the steps in flight to the platform.

use std::io::Write;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Exit code of an interrupted run: 128 + SIGINT, the shell's and cargo's convention.
pub const INTERRUPTED: u8 = 130;

/// Watches for interrupts while it is alive; dropping it stops watching.
pub struct Interrupts {
    task: JoinHandle<()>,
}

impl Interrupts {
    /// Installs the handlers now, so that a signal that arrives as soon as this returns is
    /// already seen (tokio installs a `ctrl_c()` handler only when it is first polled).
    pub fn watch(cancel: CancellationToken) -> std::io::Result<Interrupts> {
        let mut signals = Signals::install()?;
        let task = tokio::spawn(async move {
            let name = signals.next().await;
            eprintln!(
                "interrupted ({name}): letting the steps in flight finish and skipping the rest; \
                 press Ctrl-C again to abort at once"
            );
            cancel.cancel();
            let name = signals.next().await;
            eprintln!(
                "interrupted again ({name}): aborting at once; steps in flight may still be \
                 running on the platform"
            );
            let _ = std::io::stdout().flush();
            std::process::exit(i32::from(INTERRUPTED));
        });
        Ok(Interrupts { task })
    }
}

impl Drop for Interrupts {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(unix)]
struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Signals {
    fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
        })
    }

    /// The name of the next signal received.
    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.int.recv() => "SIGINT",
            _ = self.term.recv() => "SIGTERM",
        }
    }
}

#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
impl Signals {
    fn install() -> std::io::Result<Signals> {
        Ok(Signals)
    }

    async fn next(&mut self) -> &'static str {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}
