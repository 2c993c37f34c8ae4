//! The resource monitor: samples every interval on a dedicated thread, keeps the history, evaluates
//! the alert rules and publishes snapshots, alert events and readiness.
//!
//! Actor: [`Handle`] (cheap to clone) sends [`Command`]s to a task that owns the history and the alert
//! engine. Ticks come from a tokio interval (so tests can pause time); the blocking read itself runs on
//! the `maestro-sampler` thread. Snapshots fan out through a `watch` channel (a slow reader only ever
//! sees the latest), alert events through a bounded `broadcast`. [`Handle::measure`] reads through the
//! same sampler but records nothing: no history entry, no snapshot published, no alert evaluated, so
//! whoever measures an effect (a cleanup) leaves the schedule's samples as they were. The task stops
//! at shutdown or when every handle is gone; the thread stops with it.

pub mod devices;
pub mod health_level;
pub mod history;
pub mod sampler;
pub mod snapshot;

use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::{
    alerts::{Alert, AlertConfig, AlertEngine, AlertEvent, Severity},
    error::Error,
};
use health_level::{HealthThresholds, Readiness};
use history::History;
use sampler::{Reading, Sampler};
use snapshot::{EffectiveMemory, Snapshot, Source};

/// Monitor settings.
#[derive(Debug, Clone)]
pub struct MonitorSettings {
    /// Time between samples.
    pub interval: Duration,
    /// Length of the history.
    pub history: Duration,
    /// Health level thresholds.
    pub health: HealthThresholds,
    /// Alert rules.
    pub alerts: AlertConfig,
}

impl MonitorSettings {
    fn history_capacity(&self) -> usize {
        (self.history.as_millis() / self.interval.as_millis().max(1)).max(1) as usize
    }
}

enum Command {
    History { samples: usize, reply: oneshot::Sender<Vec<Arc<Snapshot>>> },
    Alerts { min: Severity, active_only: bool, limit: usize, reply: oneshot::Sender<Vec<Alert>> },
    WatchAlerts { reply: oneshot::Sender<(Vec<Alert>, broadcast::Receiver<AlertEvent>)> },
    Measure { reply: oneshot::Sender<Result<Reading, Error>> },
}

/// A handle on the monitor.
#[derive(Clone)]
pub struct Handle {
    commands: mpsc::Sender<Command>,
    snapshots: watch::Receiver<Arc<Snapshot>>,
    readiness: watch::Receiver<bool>,
    settings: Arc<MonitorSettings>,
}

fn stopped() -> Error {
    Error::Stopped("the resource monitor has stopped".into())
}

impl Handle {
    /// The latest snapshot.
    pub fn latest(&self) -> Arc<Snapshot> {
        self.snapshots.borrow().clone()
    }

    /// A receiver of every new snapshot (a slow reader sees only the latest).
    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.snapshots.clone()
    }

    /// Waits until a snapshot sampled after `after` is published, for at most `within`; false when
    /// none came (the monitor stopped, or fell behind). For holding a reservation until what it
    /// reserved shows in the measured usage.
    pub async fn sampled_after(&self, after: std::time::SystemTime, within: Duration) -> bool {
        let mut snapshots = self.snapshots.clone();
        let newer =
            async move { snapshots.wait_for(|s| s.sampled_at.is_some_and(|t| t > after)).await.is_ok() };
        tokio::time::timeout(within, newer).await.unwrap_or(false)
    }

    /// Readiness of the generation service (false at CRITICAL until recovery).
    pub fn readiness(&self) -> watch::Receiver<bool> {
        self.readiness.clone()
    }

    /// The settings the monitor runs with.
    pub fn settings(&self) -> &MonitorSettings {
        &self.settings
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, Error> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(make(tx)).await.map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())
    }

    /// The samples of the last `window`, oldest first.
    pub async fn history(&self, window: Duration) -> Result<Vec<Arc<Snapshot>>, Error> {
        let samples = (window.as_millis() / self.settings.interval.as_millis().max(1)).max(1) as usize;
        self.ask(|reply| Command::History { samples, reply }).await
    }

    /// The alert log, newest first.
    pub async fn alerts(&self, min: Severity, active_only: bool, limit: usize) -> Result<Vec<Alert>, Error> {
        self.ask(|reply| Command::Alerts { min, active_only, limit, reply }).await
    }

    /// The active alerts and a receiver of every later event, taken atomically.
    pub async fn watch_alerts(&self) -> Result<(Vec<Alert>, broadcast::Receiver<AlertEvent>), Error> {
        self.ask(|reply| Command::WatchAlerts { reply }).await
    }

    /// Reads every source now through the sampler and returns the raw reading, recording nothing:
    /// the history, the published snapshot, readiness and the alert engine are left as they were.
    /// For measuring an effect without adding off-schedule samples.
    pub async fn measure(&self) -> Result<Reading, Error> {
        self.ask(|reply| Command::Measure { reply }).await?
    }
}

/// Starts the sampler thread and the monitor task; returns once the first sample is published.
pub async fn spawn(
    settings: MonitorSettings,
    sampler: Box<dyn Sampler>,
    shutdown: CancellationToken,
) -> Result<Handle, Error> {
    let reader = SamplerThread::start(sampler)?;
    let mut state = State::new(settings.clone(), reader);
    let first = state.tick().await?;
    let (snap_tx, snap_rx) = watch::channel(first);
    let (ready_tx, ready_rx) = watch::channel(state.readiness.is_ready());
    let (cmd_tx, cmd_rx) = mpsc::channel(64);
    tokio::spawn(state.run(cmd_rx, snap_tx, ready_tx, shutdown));
    Ok(Handle { commands: cmd_tx, snapshots: snap_rx, readiness: ready_rx, settings: Arc::new(settings) })
}

/// The dedicated thread that owns the sampler.
struct SamplerThread {
    requests: mpsc::Sender<oneshot::Sender<(Reading, Duration)>>,
}

impl SamplerThread {
    fn start(mut sampler: Box<dyn Sampler>) -> Result<Self, Error> {
        let (tx, mut rx) = mpsc::channel::<oneshot::Sender<(Reading, Duration)>>(1);
        std::thread::Builder::new()
            .name("maestro-sampler".into())
            .spawn(move || {
                while let Some(reply) = rx.blocking_recv() {
                    let start = Instant::now();
                    let reading = sampler.sample();
                    let _ = reply.send((reading, start.elapsed()));
                }
            })
            .map_err(|e| Error::Internal(format!("cannot start the sampler thread: {e}")))?;
        Ok(Self { requests: tx })
    }

    async fn read(&self) -> Result<(Reading, Duration), Error> {
        let (tx, rx) = oneshot::channel();
        self.requests.send(tx).await.map_err(|_| stopped())?;
        rx.await.map_err(|_| Error::Internal("the sampler thread panicked".into()))
    }
}

struct State {
    settings: MonitorSettings,
    reader: SamplerThread,
    last: Snapshot,
    history: History,
    engine: AlertEngine,
    readiness: Readiness,
    events: broadcast::Sender<AlertEvent>,
}

impl State {
    fn new(settings: MonitorSettings, reader: SamplerThread) -> Self {
        let history = History::new(settings.history_capacity());
        let engine = AlertEngine::new(settings.alerts.clone());
        let (events, _) = broadcast::channel(1024);
        Self {
            settings,
            reader,
            last: Snapshot::default(),
            history,
            engine,
            readiness: Readiness::default(),
            events,
        }
    }

    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        snapshots: watch::Sender<Arc<Snapshot>>,
        readiness: watch::Sender<bool>,
        shutdown: CancellationToken,
    ) {
        let mut ticker = tokio::time::interval_at(
            tokio::time::Instant::now() + self.settings.interval,
            self.settings.interval,
        );
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = ticker.tick() => match self.tick().await {
                    Ok(s) => self.publish(s, &snapshots, &readiness),
                    Err(e) => { tracing::error!(error = %e, "sampling stopped"); break; }
                },
                cmd = commands.recv() => match cmd {
                    None => break,
                    Some(cmd) => self.handle(cmd).await,
                },
            }
        }
        tracing::debug!("monitor stopped");
    }

    async fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::History { samples, reply } => {
                let _ = reply.send(self.history.last(samples));
            }
            Command::Alerts { min, active_only, limit, reply } => {
                let _ = reply.send(self.engine.list(min, active_only, limit));
            }
            Command::WatchAlerts { reply } => {
                let _ = reply.send((self.engine.active(), self.events.subscribe()));
            }
            Command::Measure { reply } => {
                let _ = reply.send(self.reader.read().await.map(|(reading, _)| reading));
            }
        }
    }

    fn publish(
        &mut self,
        s: Arc<Snapshot>,
        snapshots: &watch::Sender<Arc<Snapshot>>,
        ready: &watch::Sender<bool>,
    ) {
        snapshots.send_replace(s);
        if let Some(now_ready) = self.readiness.update(&self.settings.health, &self.last) {
            tracing::warn!(ready = now_ready, level = ?self.last.health, "generation readiness changed");
            ready.send_replace(now_ready);
        }
    }

    /// Reads, derives, records and evaluates one sample.
    async fn tick(&mut self) -> Result<Arc<Snapshot>, Error> {
        let (reading, took) = self.reader.read().await?;
        let mut next = self.merge(reading);
        next.sample_duration_us = took.as_micros() as u64;
        let snap = Arc::new(next);
        self.history.push(snap.clone());
        let window = self.settings.alerts.leak_sustain.max(Duration::from_secs(60)) * 2;
        let samples = (window.as_millis() / self.settings.interval.as_millis().max(1)) as usize;
        for event in self.engine.evaluate(&snap, &self.history.last(samples)) {
            crate::metrics::record_alert_event(&event);
            tracing::warn!(rule = event.alert.rule.name(), resource = %event.alert.resource,
                severity = ?event.alert.severity, kind = ?event.kind, "{}", event.alert.message);
            let _ = self.events.send(event);
        }
        crate::metrics::record_active_alerts(&self.engine.active());
        self.last = (*snap).clone();
        Ok(snap)
    }

    /// Builds the next snapshot: good readings replace the last ones, failed ones are kept and
    /// marked stale.
    fn merge(&self, r: Reading) -> Snapshot {
        let mut s = self.last.clone();
        s.stale.clear();
        s.sequence += 1;
        s.sampled_at = Some(SystemTime::now());
        let mut stale = |source: Source, err: String| {
            tracing::debug!(source = source.name(), error = %err, "stale source");
            s.stale.push(source);
        };
        match r.host {
            Ok(h) => s.host = h,
            Err(e) => stale(Source::Host, e),
        }
        match r.container {
            Ok(c) => s.container = c,
            Err(e) => stale(Source::Container, e),
        }
        match r.process {
            Ok(p) => s.process = p,
            Err(e) => stale(Source::Process, e),
        }
        match r.gpu {
            Ok(g) => s.gpu = g,
            Err(e) => stale(Source::Gpu, e),
        }
        s.effective = EffectiveMemory::derive(&s.host, s.container.as_ref());
        s.health = self.settings.health.level(&s);
        s
    }
}
