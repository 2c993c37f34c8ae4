//! Shutdown requests: SIGINT / SIGTERM (or a test's sender) become a stream the server reads. The
//! first starts the drain; the next one skips its waiting.

use tokio::sync::mpsc;

/// The shutdown requests a server follows.
pub struct Signals {
    requests: mpsc::Receiver<&'static str>,
}

/// Where a test (or an embedding program) sends shutdown requests; each send is one signal.
#[derive(Clone)]
pub struct Trigger(mpsc::Sender<&'static str>);

impl Trigger {
    /// Asks the server to shut down (a second call skips the drain's waiting).
    pub fn request(&self) {
        let _ = self.0.try_send("a shutdown request");
    }
}

impl Signals {
    /// Signals fed by [`Trigger`] only.
    pub fn channel() -> (Trigger, Self) {
        let (tx, requests) = mpsc::channel(8);
        (Trigger(tx), Self { requests })
    }

    /// Registers the SIGINT and SIGTERM handlers now (so a signal that arrives before the server
    /// reads is not lost to the default action) and forwards every one of them.
    pub fn os() -> std::io::Result<Self> {
        let (trigger, signals) = Self::channel();
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let mut interrupt = signal(SignalKind::interrupt())?;
            let mut terminate = signal(SignalKind::terminate())?;
            tokio::spawn(async move {
                loop {
                    let name = tokio::select! {
                        Some(()) = interrupt.recv() => "SIGINT",
                        Some(()) = terminate.recv() => "SIGTERM",
                        else => return,
                    };
                    if trigger.0.send(name).await.is_err() {
                        return;
                    }
                }
            });
        }
        #[cfg(not(unix))]
        tokio::spawn(async move {
            while tokio::signal::ctrl_c().await.is_ok() {
                if trigger.0.send("Ctrl-C").await.is_err() {
                    return;
                }
            }
        });
        Ok(signals)
    }

    /// The next request, by name. Once every [`Trigger`] is gone, every call returns at once: whoever
    /// could ask has left, which asks for the server to stop without waiting.
    pub async fn next(&mut self) -> &'static str {
        self.requests.recv().await.unwrap_or("the shutdown trigger's owner leaving")
    }
}
