//! The pool itself, the libtorch [`Engine`]: worker threads, routing by the handle a load gave, the
//! admission semaphore, and the shutdown that stops the threads and joins them. It keeps no record
//! of what is loaded: the resource manager's cache holds each model's handle (its worker's index).
//!
//! Each worker's queue is a bounded channel. The admission semaphore already bounds generations, so
//! a queue holds at most `queue_capacity` of them plus [`CONTROL_JOBS`] loads and unloads; a job past
//! that is refused with RESOURCE_EXHAUSTED instead of queueing without bound.

use std::{
    sync::{
        atomic::Ordering,
        mpsc::{self as std_mpsc, TrySendError},
        Arc, Mutex,
    },
    thread::JoinHandle,
    time::Duration,
};

use tokio::sync::{oneshot, Semaphore};

use super::worker::{self, GenerateJob, Job, WorkerLoad};
use crate::{
    engine::{
        event_channel, Engine, EngineError, LoadOrder, Loaded, ModelHandle, Reservation, Submission,
        Submitted,
    },
    inventory::{Executor, WorkerDevice},
    resources::device::Device,
};

/// Where a worker for `device` runs under `executor`.
pub fn pin(executor: Executor, device: WorkerDevice) -> worker::Pinned {
    let compute = match (executor, device.cuda_ordinal) {
        (Executor::Native, Some(n)) => tch::Device::Cuda(n),
        _ => tch::Device::Cpu,
    };
    worker::Pinned { device: device.device, compute }
}

/// Pool settings.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    /// The devices worker sets are pinned to (the inventory's [`crate::inventory::Inventory::worker_devices`]).
    pub devices: Vec<worker::Pinned>,
    /// Worker threads per device (default 1).
    pub workers_per_device: usize,
    /// libtorch intra-op threads (default: every core).
    pub torch_threads: usize,
    /// Requests queued or running at most (default 16).
    pub queue_capacity: usize,
    /// Fault injection (chaos tests only; off by default).
    pub faults: worker::Faults,
    /// Most requests decoded together in one batch (dynamic batching; default 4).
    pub max_batch: usize,
    /// Seconds each window past a model's first adds to a long generation (default 18).
    pub extend_stride_s: f64,
}

/// Loads and unloads a worker's queue holds besides a full generation queue.
pub const CONTROL_JOBS: usize = 8;

struct WorkerSlot {
    /// The device it is pinned to.
    pinned: worker::Pinned,
    /// The queue; `None` once the pool shuts down, which closes it.
    jobs: Mutex<Option<std_mpsc::SyncSender<Job>>>,
    /// Jobs the queue holds at most.
    capacity: usize,
    load: Arc<WorkerLoad>,
    /// The thread, until shutdown joins it.
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// A handle on the pool.
#[derive(Clone)]
pub struct Pool {
    workers: Arc<Vec<WorkerSlot>>,
    admission: Arc<Semaphore>,
    capacity: usize,
}

impl Pool {
    /// Starts the worker threads.
    pub fn start(settings: &PoolSettings) -> Result<Self, EngineError> {
        // Intra-op threads are process-wide in libtorch: set once, before any worker runs.
        tch::set_num_threads(settings.torch_threads.max(1) as i32);
        let capacity = settings.queue_capacity.max(1);
        let mut workers = Vec::new();
        let per_device = settings.workers_per_device.max(1);
        for pinned in settings.devices.iter().flat_map(|p| std::iter::repeat_n(*p, per_device)) {
            let index = workers.len();
            let (tx, rx) = std_mpsc::sync_channel(capacity + CONTROL_JOBS);
            let load = Arc::new(WorkerLoad::default());
            let thread = worker::spawn(
                index,
                pinned,
                rx,
                load.clone(),
                (settings.max_batch, settings.faults, settings.extend_stride_s),
            )
            .map_err(|e| EngineError::Failed(format!("cannot start inference worker {index}: {e}")))?;
            workers.push(WorkerSlot {
                pinned,
                jobs: Mutex::new(Some(tx)),
                capacity: capacity + CONTROL_JOBS,
                load,
                thread: Mutex::new(Some(thread)),
            });
        }
        if workers.is_empty() {
            return Err(EngineError::Failed("the inference pool was given no device".into()));
        }
        Ok(Self::over(workers, capacity))
    }

    fn over(workers: Vec<WorkerSlot>, capacity: usize) -> Self {
        Self { workers: Arc::new(workers), admission: Arc::new(Semaphore::new(capacity)), capacity }
    }

    /// Stops the workers and waits for their threads to end: closes every queue, so no job is taken
    /// any more; the jobs still queued are dropped unrun (their callers see the worker stopped) and
    /// a running job ends on its own or on its cancellation. Waits at most `deadline`; an error
    /// names the workers still running then. A second call has nothing left to join.
    async fn stop(&self, deadline: Duration) -> Result<(), EngineError> {
        let mut threads = Vec::new();
        for (index, slot) in self.workers.iter().enumerate() {
            slot.load.stopping.store(true, Ordering::Relaxed);
            slot.jobs.lock().expect("queue lock").take();
            threads.extend(slot.thread.lock().expect("thread lock").take().map(|t| (index, t)));
        }
        // Workers not joined yet, for the error when the deadline passes first.
        let running = Arc::new(Mutex::new(threads.iter().map(|(i, _)| *i).collect::<Vec<_>>()));
        let joining = running.clone();
        let joined = tokio::task::spawn_blocking(move || {
            for (index, thread) in threads {
                if thread.join().is_err() {
                    tracing::error!(index, "inference worker thread panicked");
                }
                joining.lock().expect("running lock").retain(|i| *i != index);
            }
        });
        match tokio::time::timeout(deadline, joined).await {
            Ok(joined) => {
                joined.map_err(|e| EngineError::Failed(format!("joining the inference workers: {e}")))
            }
            Err(_) => {
                let left = running.lock().expect("running lock").clone();
                Err(EngineError::StillRunning { workers: left, deadline })
            }
        }
    }

    /// Where the workers are pinned, each once, in start order.
    pub fn pinned(&self) -> Vec<worker::Pinned> {
        let mut devices: Vec<worker::Pinned> = Vec::new();
        for slot in self.workers.iter() {
            if !devices.contains(&slot.pinned) {
                devices.push(slot.pinned);
            }
        }
        devices
    }

    /// Queues `job` on worker `index` without waiting: a full queue is RESOURCE_EXHAUSTED, a closed
    /// one UNAVAILABLE.
    fn send(&self, index: usize, job: Job) -> Result<(), EngineError> {
        let slot = &self.workers[index];
        let jobs = slot.jobs.lock().expect("queue lock");
        let stopped = || EngineError::WorkerStopped { worker: index };
        let jobs = jobs.as_ref().ok_or_else(stopped)?;
        slot.load.pending.fetch_add(1, Ordering::Relaxed);
        jobs.try_send(job).map_err(|e| {
            slot.load.pending.fetch_sub(1, Ordering::Relaxed);
            match e {
                TrySendError::Full(_) => EngineError::WorkerQueueFull {
                    worker: index,
                    queued: slot.capacity,
                    queue_capacity: self.capacity,
                    control_jobs: CONTROL_JOBS,
                },
                TrySendError::Disconnected(_) => stopped(),
            }
        })
    }

    /// The least busy worker pinned to `device`; a device no worker is pinned to is INVALID_ARGUMENT
    /// naming those that are.
    fn least_busy(&self, device: Device) -> Result<usize, EngineError> {
        (0..self.workers.len())
            .filter(|&i| self.workers[i].pinned.device == device)
            .min_by_key(|&i| self.workers[i].load.pending.load(Ordering::Relaxed))
            .ok_or_else(|| EngineError::NotPlaced { device, served: self.devices() })
    }
}

#[tonic::async_trait]
impl Engine for Pool {
    fn devices(&self) -> Vec<Device> {
        self.pinned().iter().map(|p| p.device).collect()
    }

    fn has_room(&self) -> bool {
        self.admission.available_permits() > 0
    }

    fn stuck(&self, now: std::time::SystemTime, after: Duration) -> Option<String> {
        self.workers.iter().enumerate().find_map(|(index, w)| {
            let stalled = w.load.stalled_for(now).filter(|s| *s > after)?;
            Some(format!(
                "inference worker {index} ({}) has held its work for {:.0} s without progress \
                 (--worker-stuck-after-s {})",
                w.pinned.device.name(),
                stalled.as_secs_f64(),
                after.as_secs_f64()
            ))
        })
    }

    /// Loads a model on the least busy worker pinned to `device`; its handle is that worker.
    async fn load(&self, order: LoadOrder) -> Result<Loaded, EngineError> {
        let LoadOrder { model, dir, dtype, device } = order;
        let index = self.least_busy(device)?;
        let (reply, answer) = oneshot::channel();
        self.send(index, Job::Load { model: model.clone(), dir, dtype, reply })?;
        let facts = answer
            .await
            .map_err(|_| EngineError::Failed("inference worker stopped while loading".into()))??;
        Ok(Loaded { handle: ModelHandle { model, slot: index }, facts })
    }

    /// Drops a model's tensors from the worker that holds them; a full queue refuses at once.
    async fn unload(&self, handle: &ModelHandle) -> Result<(), EngineError> {
        let (reply, answer) = oneshot::channel();
        self.send(handle.slot, Job::Unload { model: handle.model.clone(), reply })?;
        answer.await.map_err(|_| EngineError::Failed("inference worker stopped while unloading".into()))
    }

    /// Takes an admission permit; RESOURCE_EXHAUSTED at once when the queue is full.
    fn reserve(&self, handle: &ModelHandle) -> Result<Reservation, EngineError> {
        let permit = self
            .admission
            .clone()
            .try_acquire_owned()
            .map_err(|_| EngineError::GenerationQueueFull { capacity: self.capacity })?;
        Ok(Reservation { handle: handle.clone(), slot: Some(permit) })
    }

    /// Queues a generation on the worker that holds the model, in the slot `reservation` holds.
    fn submit(&self, reservation: Reservation, submission: Submission) -> Result<Submitted, EngineError> {
        let Reservation { handle, slot } = reservation;
        let permit =
            slot.ok_or_else(|| EngineError::Failed("a generation came without its queue slot".into()))?;
        let index = handle.slot;
        let ahead = self.workers[index].load.pending.load(Ordering::Relaxed);
        let (events, rx) = event_channel();
        let Submission { request, audio_prompt, cancel, fault } = submission;
        self.send(
            index,
            Job::Generate(Box::new(GenerateJob {
                model: handle.model,
                request,
                audio_prompt,
                events,
                cancel,
                fault,
                admission: std::sync::Mutex::new(Some(worker::Admission::queued(permit))),
            })),
        )?;
        Ok(Submitted { queue_position: ahead, events: rx })
    }

    async fn empty_cache(&self, dry_run: bool) -> Result<u64, String> {
        use crate::cuda_alloc;
        let reserved = || -> Result<Vec<cuda_alloc::AllocatorStats>, String> {
            let stats: Vec<_> = (0..cuda_alloc::device_count()).map(cuda_alloc::stats).collect();
            if let Some(Err(why)) = stats.iter().find(|s| s.is_err()) {
                return Err(why.to_string());
            }
            Ok(stats.into_iter().flatten().collect())
        };
        let before = reserved()?;
        if before.is_empty() {
            return Err("libtorch sees no CUDA device".into());
        }
        if dry_run {
            return Ok(before.iter().map(cuda_alloc::AllocatorStats::cached_bytes).sum());
        }
        cuda_alloc::empty_cache().map_err(|e| e.to_string())?;
        let sum = |s: &[cuda_alloc::AllocatorStats]| s.iter().map(|s| s.reserved_bytes).sum::<u64>();
        Ok(sum(&before).saturating_sub(sum(&reserved()?)))
    }

    async fn shutdown(&self, deadline: Duration) -> Result<(), EngineError> {
        self.stop(deadline).await
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::musicgen::DType;

    fn settings(workers: usize) -> PoolSettings {
        let cpu = worker::Pinned { device: Device::Cpu, compute: tch::Device::Cpu };
        PoolSettings {
            devices: vec![cpu],
            workers_per_device: workers,
            torch_threads: 1,
            queue_capacity: 2,
            faults: worker::Faults::default(),
            max_batch: 1,
            extend_stride_s: crate::musicgen::DEFAULT_EXTEND_STRIDE_S,
        }
    }

    /// A one-worker pool whose queue nobody reads: the test holds the receiving end.
    fn unread_pool(queue_capacity: usize) -> (Pool, std_mpsc::Receiver<Job>) {
        let (tx, rx) = std_mpsc::sync_channel(queue_capacity + CONTROL_JOBS);
        let slot = WorkerSlot {
            pinned: worker::Pinned { device: Device::Cpu, compute: tch::Device::Cpu },
            jobs: Mutex::new(Some(tx)),
            capacity: queue_capacity + CONTROL_JOBS,
            load: Arc::default(),
            thread: Mutex::new(None),
        };
        (Pool::over(vec![slot], queue_capacity), rx)
    }

    fn unload(model: &str) -> Job {
        Job::Unload { model: model.into(), reply: oneshot::channel().0 }
    }

    #[tokio::test]
    async fn shutdown_returns_after_every_worker_thread_has_ended() {
        let pool = Pool::start(&settings(3)).unwrap();
        pool.stop(Duration::from_secs(60)).await.unwrap();
        for slot in pool.workers.iter() {
            // The thread's clone of its counters is gone only once the thread has returned.
            assert_eq!(Arc::strong_count(&slot.load), 1, "a worker thread is still running");
        }
        let order =
            LoadOrder { model: "m".into(), dir: "/nowhere".into(), dtype: DType::F32, device: Device::Cpu };
        let err = pool.load(order).await.unwrap_err();
        assert!(matches!(err, EngineError::WorkerStopped { worker: 0 }), "{err}");
        pool.stop(Duration::from_secs(60)).await.expect("a second shutdown has nothing to join");
    }

    #[test]
    fn a_stopping_worker_drops_its_queued_jobs_unrun() {
        let (tx, rx) = std_mpsc::sync_channel(4);
        let load = Arc::new(WorkerLoad::default());
        load.stopping.store(true, Ordering::Relaxed);
        let (reply, answer) = oneshot::channel();
        load.pending.fetch_add(1, Ordering::Relaxed);
        tx.send(Job::Load { model: "m".into(), dir: PathBuf::from("/nowhere"), dtype: DType::F32, reply })
            .unwrap();
        drop(tx);
        let cpu = worker::Pinned { device: Device::Cpu, compute: tch::Device::Cpu };
        let defaults = (1, worker::Faults::default(), crate::musicgen::DEFAULT_EXTEND_STRIDE_S);
        let thread = worker::spawn(0, cpu, rx, load.clone(), defaults).unwrap();
        thread.join().unwrap();
        // Run, the load would have answered "cannot load"; dropped, it never answers.
        assert!(answer.blocking_recv().is_err(), "the queued load ran");
        assert_eq!(load.pending.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_worker_that_does_not_stop_is_named_after_the_deadline() {
        let (pool, _jobs) = unread_pool(1);
        let (release, held) = std_mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let _ = held.recv();
        });
        *pool.workers[0].thread.lock().unwrap() = Some(thread);
        let err = pool.stop(Duration::from_millis(50)).await.unwrap_err();
        assert!(matches!(err, EngineError::StillRunning { ref workers, .. } if workers == &[0]), "{err}");
        release.send(()).unwrap();
    }

    #[test]
    fn a_full_queue_refuses_with_resource_exhausted_and_takes_jobs_again_once_read() {
        let (pool, jobs) = unread_pool(1);
        for i in 0..1 + CONTROL_JOBS {
            pool.send(0, unload(&format!("m{i}"))).unwrap();
        }
        let err = pool.send(0, unload("one too many")).unwrap_err();
        assert!(
            matches!(err, EngineError::WorkerQueueFull { worker: 0, queued, queue_capacity: 1, .. } if queued == 1 + CONTROL_JOBS),
            "{err}"
        );
        assert_eq!(pool.workers[0].load.pending.load(Ordering::Relaxed), 1 + CONTROL_JOBS);
        jobs.recv().unwrap();
        pool.send(0, unload("room again")).unwrap();
    }
}
