//! Shutdown signals: SIGINT / SIGTERM become one future the server awaits.

use std::future::Future;

/// Registers the SIGINT and SIGTERM handlers now (so a signal that arrives before the future is first
/// polled is not lost to the default action) and returns a future that completes on the first one.
pub fn signals() -> std::io::Result<impl Future<Output = ()> + Send> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => tracing::info!("SIGINT received; shutting down"),
                _ = terminate.recv() => tracing::info!("SIGTERM received; shutting down"),
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("Ctrl-C received; shutting down");
        })
    }
}
