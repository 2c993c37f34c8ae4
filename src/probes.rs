//! What the health service says, and why.
//!
//! - **Readiness** (`maestro.v1.GenerationService`) means "can take work": SERVING while memory
//!   pressure is below CRITICAL (the monitor's readiness), the generation queue has room, and the warm
//!   model (`--warm-model`), when there is one, is loaded. [`follow_readiness`] re-decides on every
//!   change and at least every [`RECHECK`] (the queue has no change feed), until the drain begins.
//! - **Liveness** (`""`) is NOT_SERVING only when the process is wedged: the sampler has not published
//!   a sample, or the async runtime has not run its heartbeat task, for [`Watchdog::wedged_after`],
//!   or an inference worker has held work without progress for `--worker-stuck-after-s`.
//!   The watchdog is an OS thread, so it still judges when the runtime is stuck.
//!
//! The decisions are the pure [`readiness`] and [`liveness`]; the tasks only feed them.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{
    engine::Engine,
    grpc::{health_service::HealthTable, GENERATION_SERVICE},
    monitor,
};

/// How often readiness is decided again without a change notice.
pub const RECHECK: Duration = Duration::from_millis(200);

/// What readiness is decided from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadyInputs {
    /// The monitor's readiness: memory pressure below CRITICAL (with its hysteresis).
    pub memory_ok: bool,
    /// The generation queue has a free slot.
    pub queue_has_room: bool,
    /// The warm model is loaded (true when none is configured).
    pub warm: bool,
}

/// `Ok` when the server can take work, else why not.
pub fn readiness(i: ReadyInputs) -> Result<(), &'static str> {
    if !i.warm {
        return Err("the warm model (--warm-model) is not loaded yet");
    }
    if !i.memory_ok {
        return Err("memory pressure is critical");
    }
    if !i.queue_has_room {
        return Err("the generation queue is full (--queue-capacity)");
    }
    Ok(())
}

/// `Ok` unless the sampler's last sample or the runtime's last heartbeat is older than `wedged_after`,
/// or a worker is `stuck` (the engine's description of it).
pub fn liveness(
    now: SystemTime,
    last_sample: Option<SystemTime>,
    last_heartbeat: SystemTime,
    wedged_after: Duration,
    stuck: Option<String>,
) -> Result<(), String> {
    if let Some(worker) = stuck {
        return Err(worker);
    }
    let age = |t: SystemTime| now.duration_since(t).unwrap_or_default();
    match last_sample {
        Some(t) if age(t) > wedged_after => {
            return Err(format!("the sampler has published nothing for {:.1} s", age(t).as_secs_f64()));
        }
        _ => {}
    }
    if age(last_heartbeat) > wedged_after {
        return Err(format!(
            "the async runtime has not ticked for {:.1} s",
            age(last_heartbeat).as_secs_f64()
        ));
    }
    Ok(())
}

/// Readiness from the inputs as they stand (marking the watches seen).
pub fn decide(
    memory: &mut watch::Receiver<bool>,
    queue_has_room: &(dyn Fn() -> bool + Send + Sync),
    warm: &mut watch::Receiver<bool>,
) -> Result<(), &'static str> {
    readiness(ReadyInputs {
        memory_ok: *memory.borrow_and_update(),
        queue_has_room: queue_has_room(),
        warm: *warm.borrow_and_update(),
    })
}

/// Keeps the generation service's health in step with [`readiness`] until `draining` is cancelled
/// (the drain then owns the table). Logs each change with its reason.
pub async fn follow_readiness(
    table: HealthTable,
    mut memory: watch::Receiver<bool>,
    queue_has_room: Arc<dyn Fn() -> bool + Send + Sync>,
    mut warm: watch::Receiver<bool>,
    draining: CancellationToken,
) {
    let mut last: Option<Result<(), &str>> = None;
    // A closed feed (its sender gone: a warm flag that will never change) stays as it last was.
    let (mut memory_open, mut warm_open) = (true, true);
    loop {
        let now = decide(&mut memory, queue_has_room.as_ref(), &mut warm);
        if last != Some(now) {
            match now {
                Ok(()) => tracing::info!("generation service SERVING"),
                Err(why) => tracing::info!(reason = why, "generation service NOT_SERVING"),
            }
            table.set(GENERATION_SERVICE, now.is_ok());
            last = Some(now);
        }
        tokio::select! {
            () = draining.cancelled() => return,
            changed = memory.changed(), if memory_open => memory_open = changed.is_ok(),
            changed = warm.changed(), if warm_open => warm_open = changed.is_ok(),
            () = tokio::time::sleep(RECHECK) => {}
        }
    }
}

/// The liveness watchdog: a heartbeat task on the runtime and an OS thread that judges it.
pub struct Watchdog {
    /// How long without a sample or a heartbeat counts as wedged.
    pub wedged_after: Duration,
    /// The engine whose workers are watched, and how long one may hold work without progress.
    workers: Option<(Arc<dyn Engine>, Duration)>,
}

impl Watchdog {
    /// For a sampler ticking every `interval`: wedged after ten missed samples, and never under 3 s
    /// (a slow NVML read is not a wedge).
    pub fn for_interval(interval: Duration) -> Self {
        Self { wedged_after: (interval * 10).max(Duration::from_secs(3)), workers: None }
    }

    /// Also watches `engine`'s workers: stuck after `stuck_after` without progress.
    pub fn with_workers(self, engine: Arc<dyn Engine>, stuck_after: Duration) -> Self {
        Self { workers: Some((engine, stuck_after)), ..self }
    }

    /// Starts the heartbeat task and the judging thread; both stop when `stop` is cancelled.
    pub fn spawn(
        self,
        table: HealthTable,
        monitor: monitor::Handle,
        stop: CancellationToken,
    ) -> std::io::Result<()> {
        let beat = Arc::new(AtomicU64::new(millis(SystemTime::now())));
        let (beating, stopping) = (beat.clone(), stop.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tokio::select! {
                    () = stopping.cancelled() => return,
                    _ = tick.tick() => beating.store(millis(SystemTime::now()), Ordering::Relaxed),
                }
            }
        });
        std::thread::Builder::new().name("maestro-watchdog".into()).spawn(move || {
            let mut was_alive = true;
            while !stop.is_cancelled() {
                let heartbeat = UNIX_EPOCH + Duration::from_millis(beat.load(Ordering::Relaxed));
                let now = SystemTime::now();
                let stuck = self.workers.as_ref().and_then(|(engine, after)| engine.stuck(now, *after));
                let verdict = liveness(now, monitor.latest().sampled_at, heartbeat, self.wedged_after, stuck);
                if verdict.is_ok() != was_alive {
                    match &verdict {
                        Ok(()) => tracing::warn!("liveness SERVING again"),
                        Err(why) => {
                            tracing::error!(reason = %why, "liveness NOT_SERVING: the process is wedged")
                        }
                    }
                    was_alive = verdict.is_ok();
                }
                table.set("", was_alive);
                std::thread::sleep(Duration::from_millis(500));
            }
        })?;
        Ok(())
    }
}

fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_needs_the_warm_model_memory_and_room_in_the_queue() {
        let all = ReadyInputs { memory_ok: true, queue_has_room: true, warm: true };
        assert_eq!(readiness(all), Ok(()));
        assert!(readiness(ReadyInputs { warm: false, ..all }).unwrap_err().contains("warm model"));
        assert!(readiness(ReadyInputs { memory_ok: false, ..all }).unwrap_err().contains("critical"));
        assert!(readiness(ReadyInputs { queue_has_room: false, ..all })
            .unwrap_err()
            .contains("queue is full"));
    }

    #[test]
    fn liveness_fails_only_when_the_sampler_or_the_runtime_stops() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000);
        let ago = |s: u64| now - Duration::from_secs(s);
        let limit = Duration::from_secs(10);
        assert_eq!(liveness(now, Some(ago(1)), ago(1), limit, None), Ok(()));
        let no_sample = liveness(now, None, ago(1), limit, None);
        assert_eq!(no_sample, Ok(()), "no sample yet is the start, not a wedge");
        assert!(liveness(now, Some(ago(11)), ago(1), limit, None).unwrap_err().contains("sampler"));
        assert!(liveness(now, Some(ago(1)), ago(11), limit, None).unwrap_err().contains("runtime"));
        let stuck = "inference worker 0 (cpu) has held its work for 700 s".to_owned();
        assert_eq!(liveness(now, Some(ago(1)), ago(1), limit, Some(stuck.clone())), Err(stuck));
    }
}
