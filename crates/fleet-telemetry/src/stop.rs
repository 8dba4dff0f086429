//! The signals that stop a binary, installed before it announces that it is ready.
//!
//! Scripts and tests read a binary's ready line and may signal it at once. tokio installs a
//! signal handler only when its stream is made, and `tokio::signal::ctrl_c()` only when its
//! future is first polled, so a stop signal made lazily inside the serving future can arrive
//! before the handler exists and kill the process with the signal's default action instead
//! of a graceful stop. [`stop_signal`] makes every stream when it is called.

use std::future::Future;

/// Installs the stop handlers now and returns a future that completes on the first of them:
/// SIGINT or SIGTERM on Unix; Ctrl+C, the console closed or the machine shutting down on
/// Windows. Call it inside the runtime, before printing the ready line.
pub fn stop_signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => tracing::info!("SIGINT: stopping"),
                _ = terminate.recv() => tracing::info!("SIGTERM: stopping"),
            }
        })
    }
    #[cfg(windows)]
    {
        use tokio::signal::windows::{ctrl_c, ctrl_close, ctrl_shutdown};
        let mut interrupt = ctrl_c()?;
        let mut close = ctrl_close()?;
        let mut shutdown = ctrl_shutdown()?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => tracing::info!("Ctrl+C: stopping"),
                _ = close.recv() => tracing::info!("console closed: stopping"),
                _ = shutdown.recv() => tracing::info!("machine shutting down: stopping"),
            }
        })
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_sigterm_sent_before_the_future_is_polled_stops_it() {
        let stop = stop_signal().unwrap();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &std::process::id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        tokio::time::timeout(std::time::Duration::from_secs(10), stop)
            .await
            .expect("the SIGTERM sent before the first poll stops the future");
    }
}
