//! The orchestrator's policy against a scripted engine, over the real resource manager and monitor
//! (a fixed reading of a roomy machine) and the tiny checkpoint's files: admission, fit, leases,
//! load and unload ordering, a full queue, cancellation. No libtorch.

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Client, GenerateParams, Generation, GenerationError, GenerationSettings, Progress};
use crate::resources::model_id::ModelRoots;
use crate::{
    config::Config,
    engine::{
        event_channel, AudioChunkOut, CheckpointFacts, Engine, EngineError, Event, EventSender, Finished,
        GenerationStats, LoadOrder, Loaded, ModelFacts, ModelHandle, Refusing, Reservation, Submission,
        Submitted,
    },
    error::Error,
    monitor::{
        self,
        sampler::{Reading, Sampler},
        snapshot::{GpuStats, HostStats, ProcessStats},
        MonitorSettings,
    },
    resources::{
        cache::CacheError,
        device::{Device, RequestedDevice},
        ledger::LeaseKind,
        manager::{self, FitQuestion, ManagerSettings},
        requirements::{DType, Registry},
    },
};

const MODEL: &str = "musicgen-tiny";

/// A machine that never changes (`memory` bytes, a tenth used), and the stall timeout its server
/// runs with.
#[derive(Clone, Copy)]
struct Machine {
    memory: u64,
    stall_timeout: Duration,
    max_queued_per_token: usize,
    /// The monitor's sampling interval.
    sampling: Duration,
}

/// A roomy machine: 64 GiB, clients get ten seconds, and the monitor samples every 50 ms.
const ROOMY: Machine = Machine {
    memory: 64 << 30,
    stall_timeout: Duration::from_secs(10),
    max_queued_per_token: 8,
    sampling: Duration::from_millis(50),
};

impl Sampler for Machine {
    fn sample(&mut self) -> Reading {
        let total = self.memory;
        Reading {
            host: Ok(HostStats {
                memory_total_bytes: total,
                memory_available_bytes: total / 10 * 9,
                memory_used_bytes: total / 10,
                cpu_per_core_percent: vec![0.0, 0.0],
                ..HostStats::default()
            }),
            container: Ok(None),
            process: Ok(ProcessStats { pid: 1, rss_bytes: 100 << 20, ..ProcessStats::default() }),
            gpu: Ok(GpuStats::default()),
        }
    }
}

/// An engine that keeps its "weights" as names, counts loads, can hold a load or an unload for a
/// while, refuse unloads, and has a queue of `queue` generations whose events the test drives.
#[derive(Default)]
struct Scripted {
    loads: AtomicUsize,
    /// The folder of each load, in order.
    load_dirs: Mutex<Vec<PathBuf>>,
    resident: Mutex<HashSet<String>>,
    load_delay: Duration,
    unload_delay: Duration,
    refuse_unloads: AtomicUsize,
    fail_loads: bool,
    queue: usize,
    submitted: Mutex<Vec<(ModelHandle, EventSender, CancellationToken)>>,
}

impl Scripted {
    fn resident(&self) -> HashSet<String> {
        self.resident.lock().unwrap().clone()
    }

    /// What a real engine reports: the checkpoint's facts, on the CPU, 1 MiB measured.
    fn facts(dir: &Path) -> ModelFacts {
        let checkpoint = CheckpointFacts::read(dir).expect("the fixture's configs");
        ModelFacts { checkpoint, device: Device::Cpu, measured_bytes: 1 << 20 }
    }
}

#[tonic::async_trait]
impl Engine for Scripted {
    fn devices(&self) -> Vec<Device> {
        vec![Device::Cpu]
    }

    fn has_room(&self) -> bool {
        self.submitted.lock().unwrap().len() < self.queue
    }

    async fn load(&self, order: LoadOrder) -> Result<Loaded, EngineError> {
        let LoadOrder { model, dir, device, .. } = order;
        let model = model.as_str();
        assert_eq!(device, Device::Cpu, "placement resolves auto before the engine");
        if self.fail_loads {
            return Err(EngineError::LoadFailed { model: model.into(), reason: "scripted".into() });
        }
        self.loads.fetch_add(1, Ordering::SeqCst);
        self.load_dirs.lock().unwrap().push(dir.clone());
        self.resident.lock().unwrap().insert(model.into());
        tokio::time::sleep(self.load_delay).await;
        Ok(Loaded { handle: ModelHandle { model: model.into(), slot: 0 }, facts: Self::facts(&dir) })
    }

    async fn unload(&self, handle: &ModelHandle) -> Result<(), EngineError> {
        let refuse =
            self.refuse_unloads.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        if refuse.is_ok() {
            return Err(EngineError::WorkerQueueFull {
                worker: 0,
                queued: 9,
                queue_capacity: 1,
                control_jobs: 8,
            });
        }
        tokio::time::sleep(self.unload_delay).await;
        self.resident.lock().unwrap().remove(&handle.model);
        Ok(())
    }

    fn reserve(&self, handle: &ModelHandle) -> Result<Reservation, EngineError> {
        if self.submitted.lock().unwrap().len() >= self.queue {
            return Err(EngineError::GenerationQueueFull { capacity: self.queue });
        }
        Ok(Reservation { handle: handle.clone(), slot: None })
    }

    fn submit(&self, reservation: Reservation, s: Submission) -> Result<Submitted, EngineError> {
        let mut submitted = self.submitted.lock().unwrap();
        let handle = reservation.handle;
        assert!(self.resident().contains(&handle.model), "submitted to a model the engine does not hold");
        let (events, rx) = event_channel();
        submitted.push((handle, events, s.cancel));
        Ok(Submitted { queue_position: submitted.len() - 1, events: rx })
    }

    async fn empty_cache(&self, _: bool) -> Result<u64, String> {
        Err("no device cache".into())
    }

    async fn shutdown(&self, _: Duration) -> Result<(), EngineError> {
        Ok(())
    }
}

/// The orchestrator over `engine`, the real manager and monitor of a roomy machine, and the fixtures'
/// model root.
async fn orchestrator(engine: Arc<dyn Engine>) -> (Generation, manager::Handle) {
    orchestrator_on(engine, ROOMY).await
}

/// [`orchestrator`] on `machine`.
async fn orchestrator_on(engine: Arc<dyn Engine>, machine: Machine) -> (Generation, manager::Handle) {
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    orchestrator_over(engine, machine, ModelRoots::dirs(vec![fixtures])).await
}

/// [`orchestrator_on`] finding models in `roots`.
async fn orchestrator_over(
    engine: Arc<dyn Engine>,
    machine: Machine,
    roots: ModelRoots,
) -> (Generation, manager::Handle) {
    let config = Config::default();
    let shutdown = CancellationToken::new();
    let settings = MonitorSettings {
        interval: machine.sampling,
        history: Duration::from_secs(10),
        health: config.health.thresholds(),
        alerts: config.alerts.rules(),
    };
    let monitor = monitor::spawn(settings, Box::new(machine), shutdown.clone()).await.unwrap();
    let settings = ManagerSettings {
        safety_margin: 0.2,
        roots,
        registry: Arc::new(Registry::new(config.resources.requirements.clone())),
        max_ttl: Duration::from_secs(3600),
        min_lease_bytes: 1,
        suggest_evict_idle: Duration::from_secs(600),
        placeable_gpus: Vec::new(),
        max_duration_s: 30.0,
        token_share: Default::default(),
    };
    let manager = manager::spawn(settings, monitor, shutdown);
    let settings = GenerationSettings {
        max_duration_s: 30.0,
        unload_wait: Duration::from_millis(300),
        dtype: DType::F32,
        stall_timeout: machine.stall_timeout,
        max_queued_per_token: machine.max_queued_per_token,
    };
    let (emergency, _) = mpsc::channel(4);
    (Generation::new(engine, manager.clone(), settings, emergency), manager)
}

/// A plain request for the tiny fixture: 1 s, seed 1.
pub(super) fn params() -> GenerateParams {
    GenerateParams {
        model: MODEL.into(),
        prompt: "drums".into(),
        negative_prompt: String::new(),
        duration_s: 1.0,
        temperature: None,
        top_k: None,
        top_p: None,
        guidance_scale: None,
        seed: Some(1),
        greedy: false,
        chunk_ms: 0,
        audiocraft_sampling: false,
        audio_prompt: None,
        include_prompt: false,
        melody: None,
    }
}

async fn leases_of(manager: &manager::Handle, kind: LeaseKind) -> usize {
    manager.leases().await.unwrap().iter().filter(|l| l.kind == kind).count()
}

/// Polls `check` every 20 ms for up to 10 s.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..500 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what} did not happen within 10 s");
}

#[tokio::test]
async fn a_generation_takes_its_holds_in_order_and_gives_every_one_back() {
    let engine = Arc::new(Scripted { queue: 4, ..Scripted::default() });
    let (generation, manager) = orchestrator(engine.clone()).await;
    let mut admitted = generation.start(params(), CancellationToken::new(), Client::default()).await.unwrap();
    assert_eq!((admitted.model.as_str(), admitted.device), (MODEL, Device::Cpu));
    assert_eq!(admitted.request.frames, 50, "1 s at 50 frames/s");
    assert_eq!(leases_of(&manager, LeaseKind::Generation).await, 1);
    assert_eq!(manager.cached_model(MODEL).unwrap().in_flight, 1);
    let (handle, events, cancel) = engine.submitted.lock().unwrap().pop().unwrap();
    assert_eq!(handle, ModelHandle { model: MODEL.into(), slot: 0 });
    let stats = GenerationStats { frames: 50, steps: 53, ..GenerationStats::default() };
    events.send(Event::Done(Finished { stats, batch: 1, peak_gpu_delta_bytes: None })).unwrap();
    let Some(Progress::Finished(summary)) = admitted.next().await else { panic!("no summary") };
    assert_eq!((summary.frames, summary.batch_size), (50, 1));
    assert!(admitted.next().await.is_none(), "nothing follows the summary");
    assert!(!cancel.is_cancelled());
    drop(admitted);
    assert!(cancel.is_cancelled(), "a dropped generation cancels its work");
    assert_eq!(leases_of(&manager, LeaseKind::Generation).await, 0);
    eventually("the model use ends", || manager.cached_model(MODEL).unwrap().in_flight == 0).await;
    assert_eq!(engine.loads.load(Ordering::SeqCst), 1);
}

/// A stream that stops taking its events is stopped after the stall timeout: the engine's work is
/// cancelled, the lease and the model use come back while the stream still exists, and the stream
/// ends RESOURCE_EXHAUSTED naming the flag. A stream waiting on a slow engine is never stalled.
#[tokio::test]
async fn a_client_that_takes_nothing_is_stopped_and_gives_everything_back() {
    let engine = Arc::new(Scripted { queue: 4, ..Scripted::default() });
    let machine = Machine { stall_timeout: Duration::from_millis(200), ..ROOMY };
    let (generation, manager) = orchestrator_on(engine.clone(), machine).await;
    let mut waiting = generation.start(params(), CancellationToken::new(), Client::default()).await.unwrap();
    let mut stalled = generation.start(params(), CancellationToken::new(), Client::default()).await.unwrap();
    let (_, quiet_events, quiet_cancel) = engine.submitted.lock().unwrap().remove(0);
    let (_, events, cancel) = engine.submitted.lock().unwrap().remove(0);
    // The first waits on an engine that says nothing for three timeouts: that is no stall.
    let slow = tokio::time::timeout(Duration::from_millis(600), waiting.next()).await;
    assert!(slow.is_err() && !quiet_cancel.is_cancelled(), "a waiting stream was stopped");
    // The second's engine makes audio nobody takes.
    for index in 0..3 {
        let chunk = AudioChunkOut {
            request: 0,
            index,
            start_frame: index * 5,
            frames: 5,
            channels: 1,
            samples: vec![0.0; 3200],
            is_last: false,
        };
        events.send(Event::Chunk(chunk)).unwrap();
    }
    eventually("the stalled generation cancelled", || cancel.is_cancelled()).await;
    assert_eq!(
        leases_of(&manager, LeaseKind::Generation).await,
        1,
        "only the waiting stream's lease is left"
    );
    assert_eq!(manager.cached_model(MODEL).unwrap().in_flight, 1);
    let Some(Progress::Failed(err)) = stalled.next().await else { panic!("the stalled stream went on") };
    assert!(matches!(err, Error::Generation(GenerationError::Stalled { .. })), "{err:?}");
    assert!(err.to_string().contains("--stall-timeout-s"), "{err}");
    assert!(stalled.next().await.is_none());
    drop((waiting, quiet_events));
}

#[tokio::test]
async fn a_full_engine_queue_refuses_and_keeps_no_lease_or_use() {
    let engine = Arc::new(Scripted { queue: 0, ..Scripted::default() });
    let (generation, manager) = orchestrator(engine.clone()).await;
    let err = generation.start(params(), CancellationToken::new(), Client::default()).await.err().unwrap();
    assert!(
        matches!(
            err,
            Error::Generation(GenerationError::Engine(EngineError::GenerationQueueFull { capacity: 0 }))
        ),
        "{err:?}"
    );
    assert_eq!(leases_of(&manager, LeaseKind::Generation).await, 0);
    eventually("the model use ends", || manager.cached_model(MODEL).unwrap().in_flight == 0).await;
}

#[tokio::test]
async fn a_model_that_does_not_fit_is_refused_before_the_engine_loads_it() {
    let engine = Arc::new(Scripted { queue: 4, ..Scripted::default() });
    let (generation, manager) = orchestrator_on(engine.clone(), Machine { memory: 64 << 20, ..ROOMY }).await;
    let err = generation.start(params(), CancellationToken::new(), Client::default()).await.err().unwrap();
    let Error::Generation(GenerationError::DoesNotFit(summary)) = err else { panic!("{err:?}") };
    assert!(summary.starts_with(&format!("{MODEL} does not fit on cpu: ")), "{summary}");
    assert_eq!(engine.loads.load(Ordering::SeqCst), 0);
    assert!(manager.leases().await.unwrap().is_empty() && manager.cached_model(MODEL).is_none());
}

#[tokio::test]
async fn a_failed_load_records_nothing_and_gives_its_lease_back() {
    let engine = Arc::new(Scripted { fail_loads: true, ..Scripted::default() });
    let (generation, manager) = orchestrator(engine.clone()).await;
    let err = generation.load_model(MODEL, DType::F32, Device::Cpu.into(), false).await.unwrap_err();
    assert!(
        matches!(err, Error::Generation(GenerationError::Engine(EngineError::LoadFailed { .. }))),
        "{err:?}"
    );
    assert!(manager.cached_model(MODEL).is_none());
    assert_eq!(leases_of(&manager, LeaseKind::ModelLoad).await, 0);
}

#[tokio::test]
async fn a_load_its_caller_abandons_is_finished_recorded_and_leased_until_measured() {
    let engine = Arc::new(Scripted { load_delay: Duration::from_millis(300), ..Scripted::default() });
    // Sampling every 2 s: the first sample after the load comes well after it is recorded (with
    // 50 ms, one could land between the record and the lease count, and release the lease first).
    let machine = Machine { sampling: Duration::from_secs(2), ..ROOMY };
    let (generation, manager) = orchestrator_on(engine.clone(), machine).await;
    let abandoned = generation.load_model(MODEL, DType::F32, Device::Cpu.into(), false);
    assert!(tokio::time::timeout(Duration::from_millis(50), abandoned).await.is_err());
    // The weights are resident and the caller is gone: the load's task records them.
    assert!(engine.resident().contains(MODEL));
    eventually("the abandoned load is recorded", || manager.cached_model(MODEL).is_some()).await;
    let entry = manager.cached_model(MODEL).unwrap();
    assert_eq!((entry.measured_bytes, entry.loaded.unwrap().handle.slot), (Some(1 << 20), 0));
    let loads = leases_of(&manager, LeaseKind::ModelLoad);
    assert_eq!(loads.await, 1, "the load lease lasts until a sample shows the weights");
    // The next sample releases it.
    for _ in 0..500 {
        if leases_of(&manager, LeaseKind::ModelLoad).await == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the load lease outlived the samples after the load by 10 s");
}

#[tokio::test]
async fn requests_racing_an_abandoned_load_join_it_and_the_model_loads_once() {
    let engine =
        Arc::new(Scripted { load_delay: Duration::from_millis(300), queue: 4, ..Scripted::default() });
    let (generation, _manager) = orchestrator(engine.clone()).await;
    let abandoned = generation.load_model(MODEL, DType::F32, Device::Cpu.into(), false);
    assert!(tokio::time::timeout(Duration::from_millis(50), abandoned).await.is_err());
    let (a, b) = tokio::join!(
        generation.load_model(MODEL, DType::F32, RequestedDevice::Auto, true),
        generation.start(params(), CancellationToken::new(), Client::default()),
    );
    assert_eq!(a.unwrap().device, Device::Cpu);
    assert!(b.is_ok());
    assert_eq!(engine.loads.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_load_joined_for_another_device_is_refused_as_a_second_copy() {
    let engine = Arc::new(Scripted { load_delay: Duration::from_millis(200), ..Scripted::default() });
    let (generation, _manager) = orchestrator(engine.clone()).await;
    let (cpu, gpu) = tokio::join!(
        generation.load_model(MODEL, DType::F32, Device::Cpu.into(), false),
        generation.load_model(MODEL, DType::F32, Device::Cuda(0).into(), false),
    );
    cpu.unwrap();
    let cpu = Device::Cpu;
    assert!(
        matches!(gpu, Err(Error::Generation(GenerationError::OnAnotherDevice { at, .. })) if at == cpu),
        "{gpu:?}"
    );
    assert_eq!(engine.loads.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_unload_the_engine_refuses_leaves_the_model_recorded_and_usable() {
    let engine = Arc::new(Scripted { queue: 4, refuse_unloads: AtomicUsize::new(1), ..Scripted::default() });
    let (generation, manager) = orchestrator(engine.clone()).await;
    generation.load_model(MODEL, DType::F32, Device::Cpu.into(), false).await.unwrap();
    let err = generation.unload(MODEL, false).await.unwrap_err();
    assert!(
        matches!(err, Error::Generation(GenerationError::Engine(EngineError::WorkerQueueFull { .. }))),
        "{err:?}"
    );
    let entry = manager.cached_model(MODEL).expect("still recorded");
    assert!(!entry.unloading);
    assert!(engine.resident().contains(MODEL));
    drop(
        generation.start(params(), CancellationToken::new(), Client::default()).await.expect("still usable"),
    );
    eventually("the model use ends", || manager.cached_model(MODEL).unwrap().in_flight == 0).await;
    let freed = generation.unload(MODEL, false).await.unwrap();
    assert_eq!(freed.bytes(), 1 << 20);
    assert!(manager.cached_model(MODEL).is_none() && engine.resident().is_empty());
}

#[tokio::test]
async fn an_unload_its_caller_abandons_still_drops_the_weights_and_the_record() {
    let engine = Arc::new(Scripted { unload_delay: Duration::from_millis(300), ..Scripted::default() });
    let (generation, manager) = orchestrator(engine.clone()).await;
    generation.load_model(MODEL, DType::F32, Device::Cpu.into(), false).await.unwrap();
    let abandoned = generation.unload(MODEL, false);
    assert!(tokio::time::timeout(Duration::from_millis(50), abandoned).await.is_err());
    // Marked while the engine works: no use may start on it.
    assert!(manager.cached_model(MODEL).unwrap().unloading);
    let err = manager.use_model(MODEL).await.err().unwrap();
    assert!(matches!(err, Error::Cache(CacheError::Unloading(_))), "{err:?}");
    eventually("the abandoned unload is finished", || manager.cached_model(MODEL).is_none()).await;
    assert!(engine.resident().is_empty());
    assert_eq!(engine.loads.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_request_for_a_model_being_unloaded_waits_for_the_unload_then_loads_it_again() {
    let engine =
        Arc::new(Scripted { queue: 4, unload_delay: Duration::from_millis(300), ..Scripted::default() });
    let (generation, manager) = orchestrator(engine.clone()).await;
    generation.load_model(MODEL, DType::F32, Device::Cpu.into(), false).await.unwrap();
    let evicting = tokio::spawn({
        let generation = generation.clone();
        async move { generation.unload(MODEL, false).await }
    });
    eventually("the unload begun", || manager.cached_model(MODEL).is_some_and(|e| e.unloading)).await;
    let admitted =
        generation.start(params(), CancellationToken::new(), Client::default()).await.expect("loaded again");
    evicting.await.unwrap().expect("the unload finished first");
    assert_eq!(engine.loads.load(Ordering::SeqCst), 2);
    assert_eq!(manager.cached_model(MODEL).unwrap().in_flight, 1);
    drop(admitted);
}

#[tokio::test]
async fn a_model_in_use_is_unloaded_only_by_a_forced_unload_once_it_is_free() {
    let engine = Arc::new(Scripted { queue: 4, ..Scripted::default() });
    let (generation, manager) = orchestrator(engine.clone()).await;
    let admitted = generation.start(params(), CancellationToken::new(), Client::default()).await.unwrap();
    let err = generation.unload(MODEL, false).await.unwrap_err();
    assert!(matches!(err, Error::Cache(CacheError::InUse { in_flight: 1, .. })), "{err:?}");
    let err = generation.unload(MODEL, true).await.unwrap_err();
    assert!(matches!(err, Error::Cache(CacheError::InUse { .. })), "past the unload wait: {err:?}");
    let forced = tokio::spawn({
        let generation = generation.clone();
        async move { generation.unload(MODEL, true).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(admitted);
    forced.await.unwrap().expect("the forced unload waited for the use to end");
    assert!(manager.cached_model(MODEL).is_none() && engine.resident().is_empty());
}

#[tokio::test]
async fn an_engine_that_refuses_answers_unimplemented_before_any_other_check() {
    let (generation, manager) = orchestrator(Arc::new(Refusing { reason: "generation (test)" })).await;
    let bad = GenerateParams { model: "../nowhere".into(), ..params() };
    let err = generation.start(bad, CancellationToken::new(), Client::default()).await.err().unwrap();
    assert!(
        matches!(
            err,
            Error::Generation(GenerationError::Engine(EngineError::Unimplemented("generation (test)")))
        ),
        "{err:?}"
    );
    let err = generation.load_model(MODEL, DType::F32, Device::Cpu.into(), false).await.unwrap_err();
    assert!(
        matches!(err, Error::Generation(GenerationError::Engine(EngineError::Unimplemented(_)))),
        "{err:?}"
    );
    let err = generation.unload(MODEL, false).await.unwrap_err();
    assert!(
        matches!(err, Error::Generation(GenerationError::Engine(EngineError::Unimplemented(_)))),
        "{err:?}"
    );
    assert!(manager.cached().await.unwrap().is_empty());
}

#[path = "hub_models.rs"]
mod hub_models;

#[path = "audio_admission.rs"]
mod audio_admission;
